/* common/sha256.h - streaming SHA-256 (GnuTLS/nettle, SHA-NI where the CPU has it).
 *
 * Owns: struct ossb_sha256 contexts.  Digests are rendered "sha256:<64 hex>".
 */
#ifndef OSSB_COMMON_SHA256_H
#define OSSB_COMMON_SHA256_H

#include <stddef.h>

#define OSSB_SHA256_HEX_LEN 64
#define OSSB_DIGEST_STR_LEN (7 + OSSB_SHA256_HEX_LEN) /* "sha256:" + hex */

struct ossb_sha256;

int ossb_sha256_new(struct ossb_sha256 **ret);
int ossb_sha256_update(struct ossb_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" (OSSB_DIGEST_STR_LEN + 1 bytes) into out; the context may then be
 * reused for a new hash. */
void ossb_sha256_final(struct ossb_sha256 *h, char out[OSSB_DIGEST_STR_LEN + 1]);
void ossb_sha256_free(struct ossb_sha256 *h);
/* One-shot digest of a buffer. */
int ossb_sha256_digest(const void *data, size_t len, char out[OSSB_DIGEST_STR_LEN + 1]);
/* True when s is "sha256:" followed by exactly 64 lower-case hex digits. */
int ossb_digest_is_valid(const char *s);

#endif
