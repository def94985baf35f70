/* fuse/fusefs.h - OSSB's userspace overlay filesystem (libfuse3 low-level API).
 *
 * Owns: the merged view of N read-only lower layers plus one writable upper directory,
 * served by threads of the calling process (no daemon process, no setuid helper), and the
 * change journal of that mount.
 *
 * On-disk formats are kernel overlayfs's, so the snapshotter's upper-dir diff and commit work
 * on an upper this filesystem wrote exactly as on one the kernel wrote:
 *   - a deleted name is a 0/0 character device in the upper (a whiteout);
 *   - an opaque directory carries the xattr PREFIX "overlay.opaque" = "y", PREFIX being
 *     "user." when opts.userxattr, else "trusted.";
 *   - no redirect, no metacopy, no index: a renamed lower directory is copied up whole.
 * Lower layers are data sources behind struct ossb_fs_source_ops, so that a layer unpacked in
 * the store (ossb_fs_source_dir_new) and a remote lazily fetched layer are interchangeable.
 *
 * Ownership when the process cannot chown (an id outside the user namespace's map): the real
 * owner and mode are kept in the upper file's xattr OSSB_FS_OVERRIDE_XATTR and served from it
 * (stat, and the snapshotter's diff reads it: see ossb_fs_override_parse).
 */
#ifndef OSSB_FUSE_FUSEFS_H
#define OSSB_FUSE_FUSEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/error.h"

/* ---- lower-layer data sources ---- */

/* Flags a source reports with an entry's attributes. */
enum {
        OSSB_FS_WHITEOUT = 1 << 0, /* the name is deleted in this layer: hides lower layers' entry */
        OSSB_FS_OPAQUE = 1 << 1,   /* a directory that hides lower layers' content beneath it */
};

/* Paths are relative to the layer's root, without leading '/': "" is the root, "etc/passwd".
 * All functions return 0 / a count on success and -errno on failure (-ENOENT: not in this
 * layer).  Every function may be called from several threads at once. */
struct ossb_fs_source_ops {
        /* Attributes (never following the last symlink) and OSSB_FS_* flags. */
        int (*getattr)(void *ctx, const char *path, struct stat *st, unsigned *ret_flags);
        /* Each name of a directory (whiteouts included, "." and ".." not), with its DT_* type.
         * A non-zero return of `cb` stops the listing and is returned. */
        int (*readdir)(void *ctx, const char *path, int (*cb)(void *ud, const char *name, unsigned char type),
                       void *ud);
        int (*open)(void *ctx, const char *path, void **ret_handle);
        ssize_t (*read)(void *ctx, void *handle, void *buf, size_t size, off_t off);
        /* A file descriptor for the open file (copy-up uses FICLONE / copy_file_range, reads may
         * splice), or -1 when the source is not backed by a local file. */
        int (*handle_fd)(void *ctx, void *handle);
        void (*release)(void *ctx, void *handle);
        /* The link target, NUL-terminated, into buf (-ERANGE when size is too small). */
        ssize_t (*readlink)(void *ctx, const char *path, char *buf, size_t size);
        /* As getxattr(2)/listxattr(2) (size 0 asks for the size); overlay-private attributes of
         * the storage format are never shown. */
        ssize_t (*getxattr)(void *ctx, const char *path, const char *name, void *buf, size_t size);
        ssize_t (*listxattr)(void *ctx, const char *path, char *buf, size_t size);
        void (*free)(void *ctx);
        /* Optional (may be NULL; added after the first version of this header): as readdir, with
         * each entry's inode number (the st_ino getattr would report), so that a listing can
         * carry inode numbers without a getattr per entry. */
        int (*readdir_ino)(void *ctx, const char *path,
                           int (*cb)(void *ud, const char *name, unsigned char type, uint64_t ino), void *ud);
};

struct ossb_fs_source {
        const struct ossb_fs_source_ops *ops;
        void *ctx;
        char *name; /* for messages, e.g. the layer's DiffID or directory */
};

/* A source serving a directory in kernel overlayfs's lower-layer format (0/0 character
 * devices are whiteouts; PREFIX"overlay.opaque"="y" marks opaque directories, PREFIX per
 * `userxattr`).  Every access stays inside `dir` (openat2 RESOLVE_IN_ROOT or equivalent). */
int ossb_fs_source_dir_new(const char *dir, bool userxattr, struct ossb_fs_source **ret, struct ossb_error **err);
void ossb_fs_source_free(struct ossb_fs_source *src);

/* ---- one source, several mounts ---- */

/* A source (e.g. a lazily fetched layer with its index, chunk state and prefetch thread) that
 * several mounts serve at once: each mount gets its own struct ossb_fs_source forwarding to it
 * (ossb_fs_shared_mount_source), whose free drops a reference; the source is freed with the
 * last reference.  Thread-safe reference counting. */
struct ossb_fs_shared;
/* Takes `src` (freed on failure too); NULL on ENOMEM.  Holds one reference. */
struct ossb_fs_shared *ossb_fs_shared_new(struct ossb_fs_source *src);
struct ossb_fs_shared *ossb_fs_shared_ref(struct ossb_fs_shared *sh);
void ossb_fs_shared_unref(struct ossb_fs_shared *sh); /* accepts NULL */
/* The shared source itself (borrowed), e.g. for its counters. */
struct ossb_fs_source *ossb_fs_shared_source(struct ossb_fs_shared *sh);
/* A new source for one mount (its free drops the reference it holds); -ENOMEM. */
int ossb_fs_shared_mount_source(struct ossb_fs_shared *sh, struct ossb_fs_source **ret);

/* ---- ownership override ---- */

#define OSSB_FS_OVERRIDE_XATTR "user.containers.override_stat"

/* Parse an OSSB_FS_OVERRIDE_XATTR value ("UID:GID:MODE" with MODE in octal, permission bits
 * and setuid/setgid/sticky; an optional ":TYPE" of "file", "dir", "symlink", "pipe", "socket",
 * "block-MAJ-MIN" or "char-MAJ-MIN" for a node the process could not create) into st
 * (st_uid, st_gid, the permission bits of st_mode; type and st_rdev when given). */
int ossb_fs_override_parse(const char *value, size_t len, struct stat *st);

/* (Added.) Format st's owner and permission bits, and with `with_type` its node type and
 * device number, as an OSSB_FS_OVERRIDE_XATTR value into buf (NUL-terminated).  Returns the
 * length, -ERANGE when size is too small, -EINVAL for a type the format cannot name. */
int ossb_fs_override_format(const struct stat *st, bool with_type, char *buf, size_t size);

/* ---- the mount ---- */

struct ossb_fusefs_opts {
        struct ossb_fs_source **lowers; /* top-most first; ownership passes to the mount, also on failure */
        size_t n_lowers;                /* at least 1 */
        const char *upper;              /* writable directory, overlay format (may hold earlier changes) */
        const char *work;               /* empty directory on the upper's file system (atomic copy-up) */
        const char *mountpoint;
        bool userxattr;                 /* upper's overlay xattrs are user.overlay.* (else trusted.overlay.*) */
        unsigned threads;               /* session threads; 0: the number of CPUs, at least 2 */
};

/* Counters of one mount (for benchmarks and --log-level debug). */
#define OSSB_FUSEFS_N_OPCODES 64
struct ossb_fusefs_stats {
        uint64_t requests;
        uint64_t lookups;
        uint64_t copy_ups;
        uint64_t copy_up_bytes;
        uint64_t lower_bytes_read; /* bytes read from lower sources (reads and copy-ups) */
        /* (Added.) Requests read from the kernel by FUSE opcode (ossb_fusefs_opcode_name), the
         * ones libfuse answers itself included; opcodes >= OSSB_FUSEFS_N_OPCODES count in the last. */
        uint64_t by_opcode[OSSB_FUSEFS_N_OPCODES];
};

/* The kernel's name of a FUSE opcode ("GETXATTR"), or NULL for an unknown one. */
const char *ossb_fusefs_opcode_name(unsigned opcode);

struct ossb_fusefs;

/* Mount at opts->mountpoint (mount(2) on /dev/fuse directly: works as root and inside a user
 * namespace that owns the mount namespace; fusermount3 is not used) and serve it from
 * opts->threads threads of this process.  Returns once the mount answers requests.
 * Errors name what failed: /dev/fuse not openable (with its mode), mount refused, etc.
 * (Added details:) the mount is "fuse.ossb" with default_permissions and allow_other; the
 * process's soft RLIMIT_NOFILE is raised to its hard limit (upper directory fds are cached,
 * at most half of it); libfuse's log goes to ossb's debug log; the work directory must be on
 * the upper's file system and entries an earlier mount left there ("#ossb-*") are removed.
 * A process that touches the mount must not be the one blocked on it: the serving threads
 * are this process's, so a crash of the process (not a failed request) leaves the mount's
 * users waiting until the mount is aborted. */
int ossb_fusefs_mount(const struct ossb_fusefs_opts *opts, struct ossb_fusefs **ret, struct ossb_error **err);

/* Unmount (detaching lazily if still busy), stop and join the threads.  A handler that hit an
 * internal failure (e.g. I/O error on the upper) during the mount's life is reported here as
 * an error, so a build never commits a diff the filesystem may have got wrong.  Idempotent.
 * (Added details:) busy: retried for 2 s, then MNT_FORCE (aborts the connection where allowed:
 * its users get ENOTCONN), else MNT_DETACH and up to 60 s for the last user to go (-EBUSY
 * after that, the threads still serving; ossb_fusefs_free then keeps the memory).  Internal
 * failures: EIO/ESTALE/EUCLEAN from a change to the upper, a failed cleanup or whiteout
 * restore, out of memory in the journal or inode maps, the session ending before the unmount. */
int ossb_fusefs_unmount(struct ossb_fusefs *fs, struct ossb_error **err);

/* Unmount if needed and free.  Accepts NULL. */
void ossb_fusefs_free(struct ossb_fusefs *fs);

void ossb_fusefs_get_stats(const struct ossb_fusefs *fs, struct ossb_fusefs_stats *ret);

/* ---- the change journal ---- */

enum {
        OSSB_FS_CHANGE_CREATED = 1 << 0,  /* a name that did not exist in the lowers was created */
        OSSB_FS_CHANGE_MODIFIED = 1 << 1, /* content, metadata or xattrs of an existing entry */
        OSSB_FS_CHANGE_DELETED = 1 << 2,  /* removed (a whiteout, or an upper-only entry gone) */
        OSSB_FS_CHANGE_OPAQUE = 1 << 3,   /* a directory made opaque */
};

/* Every path changed since the mount (relative, byte-sorted, each once with the OR of its
 * OSSB_FS_CHANGE_* flags; a rename yields DELETED for the old path and CREATED/MODIFIED for
 * the new one and everything beneath it).  Call after ossb_fusefs_unmount.  A non-zero
 * return of `cb` stops and is returned.  (Added detail:) CREATED means no lower layer has the
 * name; a name re-created over a deleted lower entry is MODIFIED; later changes to an entry
 * created in this mount add nothing to its CREATED; an open for writing counts as MODIFIED. */
int ossb_fusefs_journal(const struct ossb_fusefs *fs, int (*cb)(void *ud, const char *path, unsigned flags),
                        void *ud);

#endif
