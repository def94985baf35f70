/* snapshotter/snapshotter-internal.h - what the snapshotter's files share; never included from
 * outside snapshotter/.
 *
 * Owns: struct ossb_snapshot and the backend vtable; the change walk's vocabulary:
 *   snap_item     one path as a walk found it (stat, link target, xattrs that go into layers)
 *   snap_sink     where changes go: the layer writer (diff.c) or the root directory (commit.c)
 *   snap_emitter  orders a walk's changes for a sink: a directory is held back ("pending") until
 *                 something beneath it changes or it changed itself, so that a directory whose
 *                 only upper content was excluded mount points (or whose copy-up changed nothing
 *                 but its mtime) never reaches the layer or the root.
 * The walks (upper.c for overlay, native.c) visit each directory's names byte-sorted, parents
 * first, depth first (Go's filepath.Walk order); a whiteout takes the place of the name it
 * deletes.
 */
#ifndef OSSB_SNAPSHOTTER_SNAPSHOTTER_INTERNAL_H
#define OSSB_SNAPSHOTTER_SNAPSHOTTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/error.h"
#include "oci/layer.h"
#include "snapshotter/snapshotter.h"

/* Deeper trees are refused (-ELOOP) rather than exhausting file descriptors (a walk holds up
 * to three directory fds per level: upper, lower, and the commit's root side). */
#define SNAP_MAX_DEPTH 200

#define SNAP_WHITEOUT_PREFIX ".wh."
#define SNAP_OPAQUE_MARKER ".wh..wh..opq"

/* ---- excluded paths ---- */

struct snap_exclude {
        char *path;          /* relative, clean, e.g. "etc/hosts" */
        bool parent_emitted; /* native diff: its nearest ancestor that stays (not a new directory
                              * left out for holding only excluded paths) went into the layer */
};

/* ---- the snapshot and its backends ---- */

struct nat_node;

struct snap_backend_ops;

struct ossb_snapshot {
        enum ossb_snapshot_backend backend;
        const struct snap_backend_ops *ops;
        char *root;    /* absolute */
        char *scratch; /* absolute */
        char *view;    /* what the step uses as its root */
        bool userxattr;
        bool committed;
        /* overlay */
        char *upper;
        char *work;
        bool mounted;
        /* overlay or fuse over a stage's layers (layered.c) */
        struct ossb_stagefs *stage;    /* borrowed */
        struct snap_mount *view_mnt;   /* the step's mount at s->view */
        struct snap_mount *lower_mnt;  /* the read-only view of the lowers at s->root */
        /* native */
        struct nat_node *tree;
        bool diffed;
        /* sorted by path */
        struct snap_exclude *excl;
        size_t n_excl;
};

struct snap_sink;

struct snap_backend_ops {
        int (*prepare)(struct ossb_snapshot *s, struct ossb_error **err);
        int (*unmount)(struct ossb_snapshot *s, struct ossb_error **err);
        /* Walk the step's changes into `sink`. */
        int (*changes)(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err);
        int (*commit)(struct ossb_snapshot *s, struct ossb_error **err);
        void (*release)(struct ossb_snapshot *s);
};

extern const struct snap_backend_ops snap_overlay_ops;
extern const struct snap_backend_ops snap_native_ops;
extern const struct snap_backend_ops snap_layered_ops;

/* What messages call the snapshot: the stage's directory, or the root it views. */
const char *snap_name(const struct ossb_snapshot *s);

/* Index of `path` in s->excl, or -1. */
ssize_t snap_excluded(const struct ossb_snapshot *s, const char *path);

/* ---- overlay mount helpers (overlay.c) ---- */

/* Mount an overlay of lower/upper/work at `target` with ossb's options (index, metacopy and
 * redirect_dir off; volatile where the kernel has it; userxattr on request).  Paths holding
 * ',' ':' or '\' are escaped; over-long option strings are -ENAMETOOLONG. */
int snap_overlay_mount(const char *lower, const char *upper, const char *work, const char *target, bool userxattr,
                       struct ossb_error **err);
int snap_overlay_umount(const char *target, struct ossb_error **err);
/* The overlay backends' unmount of s->view and their change walk (the upper dir). */
int snap_overlay_unmount_view(struct ossb_snapshot *s, struct ossb_error **err);
int snap_overlay_changes(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err);
/* An overlay of lowers (top first) + upper (NULL: read-only) at target, by kernel overlayfs
 * (kind OVERLAY, see snap_overlay_mount_layers) or ossb's FUSE filesystem (kind FUSE).
 * `shared` (may be NULL) parallels `lowers`: a non-NULL entry is a data source (a lazily read
 * layer) served instead of the directory, lowers[i] then only naming it; FUSE only. */
struct snap_mount;
struct ossb_fs_shared;
int snap_mount_open(enum ossb_snapshot_backend kind, const char *const *lowers, struct ossb_fs_shared *const *shared,
                    size_t n, const char *upper, const char *work, const char *target, bool userxattr,
                    bool allow_volatile, struct snap_mount **ret, struct ossb_error **err);
/* A read-only overlay of lowers with the empty directory `empty` beneath them (kernel
 * overlayfs wants two lowers when there is no upper). */
int snap_mount_open_ro(enum ossb_snapshot_backend kind, const char *const *lowers, struct ossb_fs_shared *const *shared,
                       size_t n, const char *empty, const char *target, bool userxattr, struct snap_mount **ret,
                       struct ossb_error **err);
/* Unmount and free (*m set to NULL); NULL is fine.  A kernel mount that cannot be detached
 * stays (-errno, *m kept); a FUSE mount is always gone afterwards, an error saying what its
 * filesystem reported. */
int snap_mount_close(struct snap_mount **m, struct ossb_error **err);

/* Give the upper directory the lower root's mode, owner and times (overlay shows the upper's). */
int snap_copy_root_attrs(const char *root, const char *upper, struct ossb_error **err);
/* The same over several lowers (top first); upper NULL mounts read-only (then n >= 2).  Lower
 * paths too long for a page of options are passed as /proc/self/fd/N.  `allow_volatile`: the
 * upper is used once (a remount of an upper once mounted volatile is refused). */
int snap_overlay_mount_layers(const char *const *lowers, size_t n, const char *upper, const char *work,
                              const char *target, bool userxattr, bool allow_volatile, struct ossb_error **err);

/* ---- xattrs (walk.c) ---- */

/* Overlay-private attributes found on a path. */
enum {
        SNAP_OVL_OPAQUE = 1 << 0,   /* overlay.opaque = "y" */
        SNAP_OVL_REDIRECT = 1 << 1, /* overlay.redirect */
        SNAP_OVL_METACOPY = 1 << 2, /* overlay.metacopy */
        SNAP_OVL_ANY = 1 << 3,      /* any trusted.overlay.* / user.overlay.* */
};

struct snap_xattrs {
        struct ossb_xattr *v; /* sorted by name; names and values owned */
        size_t n;
};

/* Whether an attribute belongs in a layer: not overlay-private (trusted.overlay.*,
 * user.overlay.*) and not the host's SELinux label (security.selinux). */
bool snap_xattr_in_layer(const char *name);
/* Read the layer-worthy attributes of `abs` (not followed); *ret_ovl (may be NULL) gets the
 * SNAP_OVL_* flags for the prefix in use (user.overlay. when `userxattr`, else
 * trusted.overlay.).  A file system without xattr support yields an empty set. */
int snap_xattrs_read(const char *abs, bool userxattr, struct snap_xattrs *ret, unsigned *ret_ovl);
bool snap_xattrs_equal(const struct snap_xattrs *a, const struct snap_xattrs *b);
void snap_xattrs_clear(struct snap_xattrs *x);
/* Remove every overlay-private attribute of `abs` (not followed). */
int snap_xattrs_strip_overlay(const char *abs);

/* ---- items, directory listings (walk.c) ---- */

struct snap_item {
        char *path;     /* relative to the tree, owned */
        char *abs;      /* absolute path of the source, owned */
        int dirfd;      /* the source's parent directory (borrowed; valid during the visit only) */
        const char *name; /* the source's name in dirfd (points into path) */
        struct stat st;
        char *link;     /* symlink target, owned */
        struct snap_xattrs xattrs;
        unsigned ovl;   /* SNAP_OVL_* */
};

/* Fill `it` for dirfd/name, whose relative path is `path` and absolute path `abs`: lstat, link
 * target, xattrs.  -ENOENT when it vanished. */
int snap_item_load(struct snap_item *it, int dirfd, const char *path, const char *abs, bool userxattr,
                   struct ossb_error **err);
void snap_item_clear(struct snap_item *it);

/* The names in a directory (without "." and ".."), byte-sorted.  Caller frees with
 * ossb_strv_free. */
int snap_list_dir(int dirfd, char ***ret, size_t *ret_n);

/* Join a relative parent (may be "") and a name. */
char *snap_join(const char *parent, const char *name);

/* Whether two regular files (fds) hold the same bytes. */
int snap_same_content(int fd1, int fd2);

/* ---- inode map: (dev, ino) -> path (walk.c) ---- */

struct snap_inomap {
        struct snap_inoent *v;
        size_t n, cap;
};

/* The path recorded for dev/ino, or NULL. */
const char *snap_inomap_get(const struct snap_inomap *m, dev_t dev, ino_t ino);
int snap_inomap_put(struct snap_inomap *m, dev_t dev, ino_t ino, const char *path);
void snap_inomap_clear(struct snap_inomap *m);

/* ---- sinks and the emitter (walk.c) ---- */

struct snap_sink {
        /* A directory (before its children) or a non-directory. */
        int (*item)(struct snap_sink *s, const struct snap_item *it, struct ossb_error **err);
        /* `path` was deleted; mtime: of the whiteout, for its tar entry. */
        int (*whiteout)(struct snap_sink *s, const char *path, const struct timespec *mtime, struct ossb_error **err);
        /* The directory just given to item() hides what lower layers had in it. */
        int (*opaque)(struct snap_sink *s, const struct snap_item *dir, struct ossb_error **err);
        /* Every child of a directory given to item() was given. */
        int (*leave)(struct snap_sink *s, const struct snap_item *dir, struct ossb_error **err);
};

enum {
        SNAP_DIR_NEW = 1 << 0,    /* absent from the lower tree: emitted unless it only held excluded paths */
        SNAP_DIR_CHANGED = 1 << 1, /* emitted whatever happens beneath it */
        SNAP_DIR_OPAQUE = 1 << 2, /* emitted, followed by the opaque marker */
};

struct snap_level {
        struct snap_item item;
        unsigned flags;
        bool flushed;
        bool saw_excluded;
        size_t *excl; /* indexes of excluded children (native: parent_emitted bookkeeping) */
        size_t n_excl;
};

struct snap_emitter {
        struct snap_sink *sink;
        struct ossb_snapshot *snap;
        struct snap_level *levels; /* levels[i]: the directory at depth i+1 (the root is not a level) */
        size_t n, cap;
        size_t n_emitted;
};

/* Enter a directory: takes over `it` (cleared on return, also on failure). */
int snap_emit_push_dir(struct snap_emitter *e, struct snap_item *it, unsigned flags, struct ossb_error **err);
int snap_emit_pop_dir(struct snap_emitter *e, struct ossb_error **err);
int snap_emit_item(struct snap_emitter *e, const struct snap_item *it, struct ossb_error **err);
int snap_emit_whiteout(struct snap_emitter *e, const char *path, const struct timespec *mtime,
                       struct ossb_error **err);
/* An excluded path (index in snap->excl) was skipped in the current directory. */
int snap_emit_excluded(struct snap_emitter *e, size_t idx);
/* Free what is left (after a failure); no sink calls. */
void snap_emitter_clear(struct snap_emitter *e);

/* ---- the commit sink (commit.c) ---- */

int snap_overlay_commit(struct ossb_snapshot *s, struct ossb_error **err);

/* ---- the upper-dir walk (upper.c) ---- */

int snap_upper_walk(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err);

#endif
