/* engine/lazy-index.h - plain gzip base layers read lazily through a checkpoint index
 * (oci/zran.h) found in the cache (CACHE/indexes) or in the registry, as an artifact that
 * refers to the image's manifest (registry/referrers.h; pushed by `ossb index --push`).
 *
 * Owns: struct ossb_lazy_index, what one FROM image's layers share: the image's manifest
 * digest and, after the first layer that needed it, the image's index artifacts as listed by
 * the registry (one lookup per image, not per layer).
 */
#ifndef OSSB_ENGINE_LAZY_INDEX_H
#define OSSB_ENGINE_LAZY_INDEX_H

#include <stdbool.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "fuse/fusefs.h"
#include "fuse/source-remote.h"
#include "oci/image.h"
#include "registry/client.h"

struct ossb_lazy_index;

/* For the image whose manifest has digest `manifest_digest` (copied); NULL on ENOMEM. */
struct ossb_lazy_index *ossb_lazy_index_new(const char *cache_dir, const char *manifest_digest);
void ossb_lazy_index_free(struct ossb_lazy_index *ix); /* accepts NULL */
OSSB_DEFINE_CLEANUP(struct ossb_lazy_index *, ossb_lazy_index_free)

/* A FUSE source (a remote source, fuse/source-zran.h) serving layer `d` through its
 * checkpoint index: from the cache, else from the registry's artifacts of the image
 * (fetched through `repo`, checked against the layer's digest and size, then cached).
 * `fetch`/`fetch_userdata` read the layer blob's compressed bytes.  -ENOENT (nothing in *err)
 * when the layer is not a gzip layer or has no index; a registry that cannot list referrers
 * or serves a bad index means -ENOENT too (logged): the layer is pulled in full then. */
int ossb_lazy_index_source(struct ossb_lazy_index *ix, struct ossb_repo *repo, const struct ossb_descriptor *d,
                           const char *name, ossb_fs_remote_fetch_fn fetch, void *fetch_userdata, bool background,
                           struct ossb_fs_source **ret, struct ossb_error **err);

#endif
