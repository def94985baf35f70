/* registry/push.h - pushing an image from the store: blobs first, then the manifest per tag.
 *
 * Owns: nothing beyond the call.  The blobs (config and layers of every manifest; for an
 * index, each child manifest) are pushed with ossb_repo_push_blobs (HEAD, cross-repository
 * mount, monolithic or chunked upload), child manifests by digest, then the top manifest or
 * index once per reference (its tag, or by digest when the reference has none).
 */
#ifndef OSSB_REGISTRY_PUSH_H
#define OSSB_REGISTRY_PUSH_H

#include "common/error.h"
#include "oci/image.h"
#include "oci/store.h"
#include "registry/client.h"
#include "registry/reference.h"

/* Push the manifest or index `top` (in the store) to every reference in refs[0..n).  The
 * references may name several repositories (each gets the blobs).  *ret_digest receives the
 * digest pushed (that of `top`). */
int ossb_push(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_descriptor *top,
              struct ossb_reference *const *refs, size_t n, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
              struct ossb_error **err);

#endif
