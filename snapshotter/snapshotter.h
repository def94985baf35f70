/* snapshotter/snapshotter.h - where a RUN step runs and how its changes become a layer.
 *
 * Owns: struct ossb_snapshot, one per RUN step: a writable view of a stage's root file system
 * whose changes can be (1) streamed into a layer as tar entries with OCI whiteouts and
 * (2) committed back into the stage's root directory so later steps see them.
 *
 * Backends:
 *   overlay  kernel overlayfs: lowerdir = the stage root (read-only), a fresh upperdir and
 *            workdir beside it, mounted at `mountpoint`.  As root the overlay xattrs are
 *            trusted.overlay.*; in a user namespace the mount uses `userxattr` and
 *            user.overlay.*.  The diff reads only the upperdir: a 0/0 character device is a
 *            whiteout (.wh.NAME), an opaque directory (xattr overlay.opaque=y) gets
 *            .wh..wh..opq; hard links (by inode within the upperdir, and to lower files copied
 *            up), symlinks, xattrs (security.capability included, overlay.* never), setuid/
 *            sticky bits and device nodes are written as Docker writes them.
 *   fuse     the same on-disk formats and the same diff, with ossb's userspace overlay
 *            filesystem (fuse/fusefs.h) mounted instead of the kernel's: for where kernel
 *            overlayfs may not be mounted but /dev/fuse may be opened.  Stacked stages only
 *            (ossb_snapshot_new_stage).
 *   native   no mount: the stage root itself is the view; ossb_snapshot_new records every
 *            path's metadata (type, mode, owner, size, mtime, ctime, link target, xattrs,
 *            inode) and the diff compares against it (new, changed, deleted: whiteouts).  No
 *            content is kept, so a file whose size and mtime are equal counts as changed when
 *            its ctime or inode changed (a rewrite with identical bytes is written again;
 *            nothing changed is missed).  Details in native.c.
 * ossb_snapshot_backend_auto() picks overlay when a test mount works here, else fuse when a
 * test FUSE mount does, else native, and says why in *ret_reason.
 *
 * Both backends write the same layer for the same change: entries in Go's walk order (per
 * directory byte-sorted, parents first); every changed path comes with its parent
 * directories; a directory whose only change is its mtime is not written unless something
 * beneath it is (BuildKit's rule); excluded paths are left out with everything beneath them,
 * and so is a directory that only held excluded paths and is new or otherwise unchanged (the
 * executor's mount points and the directories made for them leave no trace, as BuildKit's
 * mount stubs).  Whiteouts and opaque markers are empty files, mode 0, owner 0:0.
 * xattrs: all but overlay-private ones (trusted.overlay.*, user.overlay.*) and
 * security.selinux (the host's label).
 */
#ifndef OSSB_SNAPSHOTTER_SNAPSHOTTER_H
#define OSSB_SNAPSHOTTER_SNAPSHOTTER_H

#include <stdbool.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/layer.h"
#include "oci/store.h"

enum ossb_snapshot_backend {
        OSSB_SNAPSHOT_AUTO = 0,
        OSSB_SNAPSHOT_OVERLAY,
        OSSB_SNAPSHOT_NATIVE,
        OSSB_SNAPSHOT_FUSE,
};

int ossb_snapshot_backend_parse(const char *s, enum ossb_snapshot_backend *ret);
const char *ossb_snapshot_backend_name(enum ossb_snapshot_backend b);
/* Resolve AUTO by probing (an overlay mount in `scratch_dir`, removed again; then a FUSE one). */
/* The probe also deletes a lower file through the mount (overlay whiteouts must work).
 * *ret_reason (may be NULL), e.g. "overlay: kernel overlayfs mounts here" or
 * "native: mount(overlay) failed: EPERM", stays valid until the next call in this thread.
 * The probe mounts with userxattr when ossb_snapshot_in_userns(). */
enum ossb_snapshot_backend ossb_snapshot_backend_auto(const char *scratch_dir, const char **ret_reason);
/* Whether this process is in a user namespace other than the initial one (its uid_map is not
 * the identity of all ids): the value to pass as `userxattr`. */
bool ossb_snapshot_in_userns(void);

struct ossb_snapshot;

/* Prepare a view of `root` (a directory) for one step.  `scratch_dir` is an empty directory
 * (created when missing) the snapshot may use (upper, work, mount point); it is removed by
 * ossb_snapshot_free.  Put it on root's file system: the overlay commit then renames instead
 * of copying.  AUTO resolves the backend as ossb_snapshot_backend_auto does.
 * `userxattr`: the overlay mount happens inside a user namespace.  *ret_path is the path the
 * step must use as its root (the overlay mount point, or root itself for native). */
int ossb_snapshot_new(enum ossb_snapshot_backend backend, const char *root, const char *scratch_dir, bool userxattr,
                      struct ossb_snapshot **ret, struct ossb_error **err);
/* Prepare a view of a stage's layers for one step (overlay only; see stagefs.h): the stage's
 * view is sealed, the step's upper lives in `scratch_dir` (put it on the stage's file system)
 * and commit makes it the stage's top-most layer, without copying.  The stage must outlive
 * the snapshot. */
struct ossb_stagefs;
int ossb_snapshot_new_stage(enum ossb_snapshot_backend backend, struct ossb_stagefs *stage, const char *scratch_dir,
                            struct ossb_snapshot **ret, struct ossb_error **err);
const char *ossb_snapshot_path(const struct ossb_snapshot *s);
/* The backend in use (never AUTO: ossb_snapshot_new resolves it). */
enum ossb_snapshot_backend ossb_snapshot_backend(const struct ossb_snapshot *s);

/* Paths (relative to the root, e.g. "etc/hosts") left out of the diff and the commit: mount
 * points the executor created.  Call before diff. */
int ossb_snapshot_exclude(struct ossb_snapshot *s, const char *rel, struct ossb_error **err);

/* Unmount (overlay) so the upperdir is stable; idempotent.  diff and commit call it. */
int ossb_snapshot_unmount(struct ossb_snapshot *s, struct ossb_error **err);

/* Write the step's changes as a layer (entries sorted, parents first, whiteouts as OCI
 * says; no temporary tar); *ret_empty is true when there were no changes (no layer written:
 * digests left empty). */
int ossb_snapshot_diff(struct ossb_snapshot *s, struct ossb_store *store, const struct ossb_layer_opts *opts,
                       bool *ret_empty, char ret_digest[OSSB_DIGEST_STR_LEN + 1], int64_t *ret_size,
                       char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err);

/* Apply the changes to the root directory (overlay: move the upperdir's entries into root,
 * deleting what whiteouts name and emptying opaque directories; native: nothing to do but
 * removing excluded paths that did not exist before the step).  Afterwards the root equals
 * its old content with the diff's layer applied.  Call diff first: a diff after a commit is
 * -EINVAL; a second commit does nothing.  A failed commit leaves the root partly updated. */
int ossb_snapshot_commit(struct ossb_snapshot *s, struct ossb_error **err);

/* Unmount if needed and remove the scratch directory.  Accepts NULL. */
void ossb_snapshot_free(struct ossb_snapshot *s);

#endif
