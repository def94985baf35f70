/* snapshotter/layerstore.h - image layers unpacked once and shared by every build as overlay
 * lower directories.
 *
 * Owns: CACHE_DIR/layers/FLAVOR/:
 *   <hex>/        a layer's files in kernel overlayfs's lower-layer format (whiteouts as 0/0
 *                 character devices, opaque directories by xattr), named by its DiffID; never
 *                 changed once renamed into place
 *   <hex>.lock    taken shared (flock) by every build using the layer for as long as it does,
 *                 exclusively by prune; its mtime is the layer's last use, its content the
 *                 layer's size in bytes (decimal)
 *   tmp-*         unpacks in progress (renamed into place when complete and synced)
 * FLAVOR is "root" outside a user namespace (trusted.overlay.* attributes, the ids the layer
 * names) and "userns-<12 hex>" inside one (user.overlay.*, `userxattr` mounts; the hex is a
 * hash of uid_map and gid_map), so builds whose id mappings differ never share files whose
 * owners would mean something else to them.
 *
 * Concurrency: builds sharing a cache dir may fill the same layer at once; each unpacks into
 * its own tmp dir and the first rename wins (the others drop theirs).  A lock file is checked
 * to still be the one at its path after locking, so prune's deletion never races a new user.
 */
#ifndef OSSB_SNAPSHOTTER_LAYERSTORE_H
#define OSSB_SNAPSHOTTER_LAYERSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct ossb_layerstore;

/* A layer in use: the directory and the shared lock that keeps prune away from it. */
struct ossb_layerdir {
        char *path;
        int lock_fd;
};

/* Open (creating) CACHE_DIR/layers/FLAVOR for this process's namespace. */
int ossb_layerstore_open(const char *cache_dir, struct ossb_layerstore **ret, struct ossb_error **err);
void ossb_layerstore_free(struct ossb_layerstore *ls);
/* Whether the layers use user.overlay.* attributes (mount with `userxattr`). */
bool ossb_layerstore_userxattr(const struct ossb_layerstore *ls);
const char *ossb_layerstore_path(const struct ossb_layerstore *ls);

/* Fills an empty directory with the layer's files (overlay format). */
typedef int (*ossb_layer_fill_fn)(const char *dir, void *userdata, struct ossb_error **err);

/* Whether the layer `diff_id` ("sha256:<hex>") is unpacked already (no lock taken). */
bool ossb_layerstore_has(struct ossb_layerstore *ls, const char *diff_id);

/* The layer `diff_id` unpacked, locked shared until ossb_layerdir_release: from the store when
 * present, else made by `fill` (may be NULL: then -ENOENT when absent) into a tmp dir that is
 * synced and renamed into place.  Safe to call from several threads and processes at once. */
int ossb_layerstore_get(struct ossb_layerstore *ls, const char *diff_id, ossb_layer_fill_fn fill, void *userdata,
                        struct ossb_layerdir *ret, struct ossb_error **err);
void ossb_layerdir_release(struct ossb_layerdir *d);

/* Evict unpacked layers nobody uses, least recently used first, until those left take at most
 * keep_bytes (0: all unused ones); unfinished tmp dirs older than an hour go too.  Every
 * flavor under CACHE_DIR/layers is pruned.  *ret_freed (may be NULL): bytes removed. */
int ossb_layerstore_prune(const char *cache_dir, int64_t keep_bytes, int64_t *ret_freed, struct ossb_error **err);

#endif
