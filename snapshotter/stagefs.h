/* snapshotter/stagefs.h - a build stage's root file system as a stack of overlay layers.
 *
 * Owns: struct ossb_stagefs and its directory DIR:
 *   DIR/root      the view: an overlay mount of the upper over every lower, which steps that
 *                 read or write files (COPY, ADD, USER lookups, COPY --from, bind mounts) use
 *                 as a plain directory
 *   DIR/upper-N   the current upper (overlay format): what COPY/ADD and applied cache hits
 *                 wrote since the last seal
 *   DIR/layer-N   uppers of finished steps (sealed uppers, RUN uppers), now read-only lowers
 *   DIR/work, DIR/empty, DIR/empty2
 * The lowers, top-most first: the stage's own sealed layers, then (FROM <stage>) the parent's
 * stack, then the image layers from the layer store (held locked), then DIR/empty.  Nothing
 * is ever copied between layers: a RUN seals the upper (a new upper starts), stacks its own
 * overlay on the lowers (ossb_snapshot_new_stage) and its upper becomes the next lower.
 * The view is mounted when a step asks for it (ossb_stagefs_mount) and unmounted before any
 * lower changes.  Not thread-safe: one stage, one thread.
 */
#ifndef OSSB_SNAPSHOTTER_STAGEFS_H
#define OSSB_SNAPSHOTTER_STAGEFS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "snapshotter/layerstore.h"
#include "snapshotter/snapshotter.h"

struct ossb_stagefs;

/* A stage in DIR (created; must not exist or be empty), mounted by `kind` (OVERLAY: kernel
 * overlayfs; FUSE: ossb's FUSE filesystem).  `userxattr`: mounts happen inside a user
 * namespace (user.overlay.* attributes). */
int ossb_stagefs_new(const char *dir, enum ossb_snapshot_backend kind, bool userxattr, struct ossb_stagefs **ret,
                     struct ossb_error **err);

/* Put `ld` on top of the lowers (its lock passes to the stage; *ld is cleared).  Seals first. */
int ossb_stagefs_push_layer(struct ossb_stagefs *fs, struct ossb_layerdir *ld, struct ossb_error **err);

/* FROM <stage>: start from the (finished) parent's stack: its lowers (locks shared) and its
 * upper as the top-most lower.  Call on a new stage before anything else. */
int ossb_stagefs_inherit(struct ossb_stagefs *fs, const struct ossb_stagefs *parent, struct ossb_error **err);

/* Unmount the view and, when the upper holds anything, make it the top-most lower and start a
 * new upper. */
int ossb_stagefs_seal(struct ossb_stagefs *fs, struct ossb_error **err);

/* Put a lazily read layer on top of the lowers (fuse stages only): `sh` serves it (a reference
 * is taken), `name` names it in messages.  Seals first. */
struct ossb_fs_shared;
int ossb_stagefs_push_shared(struct ossb_stagefs *fs, struct ossb_fs_shared *sh, const char *name,
                             struct ossb_error **err);

/* Put the directory `dir` (an upper of a RUN, same file system) on top of the lowers: it is
 * renamed into DIR.  Seals first. */
int ossb_stagefs_push_dir(struct ossb_stagefs *fs, const char *dir, struct ossb_error **err);

/* The stage's last step ran: seal, and from now on mount the view read-only (lowers only),
 * so children (ossb_stagefs_inherit) and COPY --from share the layers without an upper in
 * use.  Mounts the view. */
int ossb_stagefs_finish(struct ossb_stagefs *fs, struct ossb_error **err);

/* Mount the view at ossb_stagefs_root() (nothing when mounted); unmount it. */
int ossb_stagefs_mount(struct ossb_stagefs *fs, struct ossb_error **err);
int ossb_stagefs_unmount(struct ossb_stagefs *fs, struct ossb_error **err);

const char *ossb_stagefs_root(const struct ossb_stagefs *fs);
const char *ossb_stagefs_dir(const struct ossb_stagefs *fs);
bool ossb_stagefs_userxattr(const struct ossb_stagefs *fs);
enum ossb_snapshot_backend ossb_stagefs_backend(const struct ossb_stagefs *fs);
/* The lowers, top-most first (valid until the next change of the stack), and the sources of
 * those that are lazily read layers (parallel, NULL for directories). */
const char *const *ossb_stagefs_lowers(const struct ossb_stagefs *fs, size_t *ret_n);
struct ossb_fs_shared *const *ossb_stagefs_shared(const struct ossb_stagefs *fs);

/* Unmount, drop the locks and remove DIR.  Accepts NULL. */
void ossb_stagefs_free(struct ossb_stagefs *fs);

#endif
