/* engine/rootfs.h - a materialized file tree (a stage's root file system, or the build
 * context) and the operations the engine performs inside it, confined to it.
 *
 * Owns: struct ossb_tree (an absolute path plus an O_PATH fd of the directory), and struct
 * ossb_changes (the set of paths a step created or changed, from which the layer is made).
 */
#ifndef OSSB_ENGINE_ROOTFS_H
#define OSSB_ENGINE_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "oci/layer.h"
#include "oci/store.h"

struct ossb_tree {
        char *path; /* absolute, no trailing slash */
        int fd;     /* O_PATH | O_DIRECTORY */
};

int ossb_tree_open(const char *path, struct ossb_tree *ret, struct ossb_error **err);
void ossb_tree_close(struct ossb_tree *t);

/* Resolve `path` (relative to the tree root, or absolute meaning the same) to its canonical
 * relative form with every symlink resolved inside the tree.  The last component need not
 * exist; it is followed when it is a symlink and follow_last is set.  "" means the root.
 * Caller frees *ret. */
int ossb_tree_resolve(const struct ossb_tree *t, const char *path, bool follow_last, char **ret,
                      struct ossb_error **err);
/* Absolute host path of a canonical relative path (caller frees); NULL on ENOMEM. */
char *ossb_tree_abs(const struct ossb_tree *t, const char *rel);

struct ossb_changes {
        char **paths; /* canonical relative paths, unsorted, may repeat */
        size_t n;
        size_t cap;
};

int ossb_changes_add(struct ossb_changes *c, const char *rel);
void ossb_changes_clear(struct ossb_changes *c);

/* Write a layer of the changed paths (plus all their ancestor directories), sorted, read
 * from the tree: file data, modes, owners, mtimes, symlinks, hard links within the layer,
 * devices, xattrs. */
int ossb_tree_write_layer(const struct ossb_tree *t, struct ossb_changes *c, struct ossb_store *store,
                          const struct ossb_layer_opts *opts, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
                          int64_t *ret_size, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err);

/* Create the directory `rel` and its missing parents inside the tree, owned by uid/gid,
 * mode 0755, mtime (sec) when >= 0; created dirs are recorded in c (may be NULL). */
int ossb_tree_mkdir_p(const struct ossb_tree *t, const char *rel, uid_t uid, gid_t gid, int64_t mtime,
                      struct ossb_changes *c, struct ossb_error **err);

/* Copy the extended attributes of src to dst (neither followed if a symlink); overlay-private
 * ones are skipped, and attributes the destination file system or our privileges refuse are
 * left out. */
int ossb_copy_xattrs(const char *src, const char *dst);

/* Copy a whole tree (cp -a: modes, owners, mtimes, symlinks, hard links, xattrs). */
int ossb_tree_clone(const char *src, const char *dst, struct ossb_error **err);

#endif
