/* oci/store.h - the content-addressed store (CAS) under the cache dir.
 *
 * Owns: ROOT/blobs/sha256/<hex> (complete, verified blobs only) and ROOT/ingest/ (temp files
 * of blobs being written).  A blob appears under blobs/ only after it was fully written,
 * hashed, verified against the expected digest (if any), fsynced and renamed.  An ingest that
 * is freed without a commit removes its temp file.
 */
#ifndef OSSB_OCI_STORE_H
#define OSSB_OCI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"

struct ossb_store;
struct ossb_store_ingest;

/* Open (creating the directories) a store rooted at `root`. */
int ossb_store_open(const char *root, struct ossb_store **ret, struct ossb_error **err);
void ossb_store_free(struct ossb_store *s);
const char *ossb_store_root(const struct ossb_store *s);

/* Path of a blob (whether or not it exists); -EINVAL for an invalid digest.  Caller frees. */
int ossb_store_blob_path(const struct ossb_store *s, const char *digest, char **ret, struct ossb_error **err);
bool ossb_store_has(const struct ossb_store *s, const char *digest);
/* Open a blob read-only; -ENOENT with a message naming the digest when missing. */
int ossb_store_open_blob(const struct ossb_store *s, const char *digest, int *ret_fd, struct ossb_error **err);
/* Read a whole (small) blob into memory, verifying its digest; at most `max` bytes. */
int ossb_store_read_blob(const struct ossb_store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                         struct ossb_error **err);
/* Size of a stored blob (-ENOENT with a message when missing). */
int ossb_store_blob_size(const struct ossb_store *s, const char *digest, int64_t *ret_size, struct ossb_error **err);

/* Store a buffer.  `expected` may be NULL; *ret_digest (OSSB_DIGEST_STR_LEN+1) receives the digest. */
int ossb_store_put(struct ossb_store *s, const void *data, size_t len, const char *expected,
                   char ret_digest[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err);

/* Verify every blob under blobs/: its bytes must hash to its name.  Bad blobs are counted and
 * named in *ret_bad (NULL-terminated digests, caller frees with ossb_strv_free; may be NULL);
 * with `remove_bad` they are deleted.  Leftover ingest temp files older than an hour are
 * removed.  Returns 0 when the walk completed (whatever it found). */
int ossb_store_verify(struct ossb_store *s, bool remove_bad, int64_t *ret_ok, char ***ret_bad, struct ossb_error **err);

/* Streaming ingest. */
int ossb_store_ingest_new(struct ossb_store *s, struct ossb_store_ingest **ret, struct ossb_error **err);
/* A failed write leaves the ingest unusable: a later commit fails (and removes the temp file). */
int ossb_store_ingest_write(struct ossb_store_ingest *in, const void *data, size_t len, struct ossb_error **err);
/* Bytes written so far. */
int64_t ossb_store_ingest_size(const struct ossb_store_ingest *in);
/* Finish: verify against `expected` (if non-NULL; a mismatch removes the temp file and returns
 * -EBADMSG), fsync, rename into place.  An already-present blob is kept (the temp removed).
 * Whatever the outcome, the ingest is finished afterwards (only ossb_store_ingest_free remains).
 * Blobs are stored read-only (0444). */
int ossb_store_ingest_commit(struct ossb_store_ingest *in, const char *expected,
                             char ret_digest[OSSB_DIGEST_STR_LEN + 1], int64_t *ret_size,
                             struct ossb_error **err);
/* Abort (if not committed) and free. Accepts NULL. */
void ossb_store_ingest_free(struct ossb_store_ingest *in);

#endif
