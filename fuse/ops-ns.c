/* fuse/ops-ns.c - namespace handlers that create names: create, mknod, mkdir, symlink, link.
 * A new name replaces a whiteout in the upper; a directory made where a lower layer has the
 * name is opaque.  New entries get the caller's owner (the parent's group when it is setgid)
 * and the exact mode asked for (umask applied unless the parent has a default ACL); where the
 * process may not give that owner, or create that device, the override attribute keeps the
 * real one.  Removal and rename are in ops-rename.c. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

struct newent {
        mode_t mode;       /* type and permission bits asked for */
        dev_t rdev;
        const char *link;  /* symlink target */
        int oflags;        /* create: open flags */
        int fd;            /* create: the open file (out) */
        bool override;     /* (out) */
        bool device_file;  /* (out) a device stood in for by a regular file */
};

/* Make the node itself at pfd/name. */
static int make_node(int pfd, const char *name, struct newent *ne)
{
        mode_t perm = ne->mode & 07777;
        switch (ne->mode & S_IFMT) {
        case S_IFREG:
                if (ne->oflags < 0)
                        ne->fd = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, perm);
                else
                        ne->fd = openat(pfd, name, ne->oflags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
                return ne->fd < 0 ? -errno : 0;
        case S_IFDIR:
                return mkdirat(pfd, name, perm) < 0 ? -errno : 0;
        case S_IFLNK:
                return symlinkat(ne->link, pfd, name) < 0 ? -errno : 0;
        default:
                break;
        }
        if (mknodat(pfd, name, ne->mode, ne->rdev) == 0)
                return 0;
        if (errno != EPERM || !(S_ISCHR(ne->mode) || S_ISBLK(ne->mode)))
                return -errno;
        int fd = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        close(fd);
        ne->device_file = true;
        return 0;
}

int set_new_owner(struct ossb_fusefs *fs, fuse_req_t req, struct fnode *dir, int pfd, const char *name,
                  mode_t mode, bool *ret_override)
{
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        struct stat pst, cur;
        int r = upper_stat(fs, pfd, NULL, &pst, NULL);
        if (r < 0)
                return r;
        struct stat want = { .st_mode = mode, .st_uid = ctx->uid, .st_gid = ctx->gid };
        if (pst.st_mode & S_ISGID) {
                want.st_gid = pst.st_gid;
                if (S_ISDIR(mode))
                        want.st_mode |= S_ISGID;
        }
        bool ov = fchownat(pfd, name, want.st_uid, want.st_gid, AT_SYMLINK_NOFOLLOW) < 0;
        if (ov && errno != EPERM && errno != EINVAL)
                return -errno;
        if (fstatat(pfd, name, &cur, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISLNK(mode)) {
                bool acl = fgetxattr(pfd, "system.posix_acl_default", NULL, 0) > 0;
                if (acl)
                        want.st_mode = (mode & S_IFMT) | (cur.st_mode & 07777);
                else
                        want.st_mode = (want.st_mode & ~(ctx->umask & 0777)) | (mode & S_IFMT);
                if ((cur.st_mode & 07777) != (want.st_mode & 07777) &&
                    fchmodat(pfd, name, want.st_mode & 07777, 0) < 0)
                        return -errno;
        }
        bool typed = (cur.st_mode & S_IFMT) != (mode & S_IFMT);
        if ((ov || typed) && !S_ISLNK(mode)) {
                char v[128];
                want.st_rdev = 0;
                r = ossb_fs_override_format(&want, typed, v, sizeof(v));
                if (r < 0)
                        return r;
                r = xat_set(pfd, name, OSSB_FS_OVERRIDE_XATTR, v, (size_t) r, 0);
                if (r < 0)
                        return r;
                atomic_store(&fs->override_seen, true);
                ov = true;
        }
        *ret_override = ov && !S_ISLNK(mode);
        return 0;
}

/* A device stood in for by a file: its override names the type and the device number. */
static int device_override(struct ossb_fusefs *fs, fuse_req_t req, int pfd, const char *name, struct newent *ne)
{
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        struct stat want = { .st_mode = ne->mode & ~(ctx->umask & 0777), .st_uid = ctx->uid, .st_gid = ctx->gid,
                             .st_rdev = ne->rdev };
        char v[128];
        int r = ossb_fs_override_format(&want, true, v, sizeof(v));
        if (r < 0)
                return r;
        r = xat_set(pfd, name, OSSB_FS_OVERRIDE_XATTR, v, (size_t) r, 0);
        if (r == 0)
                atomic_store(&fs->override_seen, true);
        return r;
}

static int remove_failed(int pfd, const char *name, mode_t mode)
{
        return unlinkat(pfd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
}

/* With dir's dlock written: create pfd/name (over a whiteout when there is one). */
static int create_at(struct ossb_fusefs *fs, fuse_req_t req, struct fnode *dir, int pfd, const char *name,
                     struct newent *ne, bool opaque)
{
        struct stat st;
        bool whiteout = false;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (!is_whiteout(&st))
                        return -EEXIST;
                whiteout = true;
                if (unlinkat(pfd, name, 0) < 0)
                        return -errno;
        }
        int r = make_node(pfd, name, ne);
        if (r == 0 && S_ISDIR(ne->mode) && opaque)
                r = xat_set(pfd, name, fs->opaque_xattr, "y", 1, 0);
        if (r == 0)
                r = ne->device_file ? device_override(fs, req, pfd, name, ne)
                                    : set_new_owner(fs, req, dir, pfd, name, ne->mode, &ne->override);
        if (ne->device_file)
                ne->override = true;
        if (r < 0) {
                if (ne->fd >= 0)
                        close(ne->fd);
                ne->fd = -1;
                if (r != -EEXIST && fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        (void) remove_failed(pfd, name, st.st_mode);
                if (whiteout && make_whiteout(fs, pfd, name, false) < 0)
                        fs_fail(fs, -EIO, "cannot restore the whiteout of `%s` after a failed create", name);
        }
        return r;
}

/* Create dir/name; *ret referenced, *ret_st as served. */
static int new_entry(struct ossb_fusefs *fs, fuse_req_t req, struct fnode *dir, const char *name, struct newent *ne,
                     struct fnode **ret, struct stat *ret_st)
{
        bool lower_has;
        if (bad_name(name))
                return strlen(name) > NAME_MAX ? -ENAMETOOLONG : -EEXIST;
        int r = ensure_upper_dir(fs, dir);
        if (r == 0)
                r = lower_has_name(fs, dir, name, &lower_has);
        if (r < 0)
                return r;

        pthread_rwlock_wrlock(&dir->dlock);
        int pfd = dirfd_get(fs, dir);
        r = pfd < 0 ? pfd : create_at(fs, req, dir, pfd, name, ne, lower_has);
        struct lentry e = { .layer = LAYER_UPPER, .in_upper = true, .ufd = -1 };
        if (r == 0)
                r = upper_stat(fs, pfd, name, &e.st, &e.override);
        if (pfd >= 0)
                dirfd_put(fs, dir);
        pthread_rwlock_unlock(&dir->dlock);
        node_invalidate_dir(fs, dir);
        if (r < 0)
                return r;

        e.uino = e.st.st_ino;
        ino_forget_upper(fs, e.uino); /* a reused inode number carries no old record */
        e.st.st_ino = ino_for_upper(fs, e.uino);
        r = node_for_entry(fs, dir, name, &e, ret);
        *ret_st = e.st;
        lentry_clear(&e);
        if (r < 0)
                return fs_fail(fs, r, "out of memory after creating `%s`", name);
        unsigned flags = lower_has ? OSSB_FS_CHANGE_MODIFIED : OSSB_FS_CHANGE_CREATED;
        if (S_ISDIR(ne->mode) && lower_has)
                flags |= OSSB_FS_CHANGE_OPAQUE;
        journal_add_child(fs, dir, name, flags);
        return 0;
}

static void reply_new(fuse_req_t req, struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct newent *ne)
{
        struct fnode *n;
        struct stat st;
        int r = new_entry(fs, req, dir, name, ne, &n, &st);
        if (r < 0)
                reply_change_err(req, fs, r);
        else
                reply_entry_for(req, fs, n, &st);
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct newent ne = { .mode = mode, .rdev = rdev, .oflags = -1, .fd = -1 };
        if (S_ISCHR(mode) && rdev == 0) { /* a whiteout of our own would read as a deletion */
                fuse_reply_err(req, EPERM);
                return;
        }
        reply_new(req, fs, node_of(fs, parent), name, &ne);
        if (ne.fd >= 0)
                close(ne.fd);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct newent ne = { .mode = S_IFDIR | (mode & 07777), .oflags = -1, .fd = -1 };
        reply_new(req, fs, node_of(fs, parent), name, &ne);
}

void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct newent ne = { .mode = S_IFLNK | 0777, .link = link, .oflags = -1, .fd = -1 };
        reply_new(req, fs, node_of(fs, parent), name, &ne);
}

/* Open flags for an upper file: write-only becomes read-write and append is dropped (the
 * writeback cache reads pages and places appends itself); O_DIRECT is the kernel's business
 * (our buffers are not aligned for it). */
int upper_open_flags(int flags)
{
        flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_APPEND | O_TRUNC | O_DIRECT);
        if ((flags & O_ACCMODE) == O_WRONLY)
                flags = (flags & ~O_ACCMODE) | O_RDWR;
        return flags | O_CLOEXEC | O_NOFOLLOW;
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct newent ne = { .mode = S_IFREG | (mode & 07777), .oflags = upper_open_flags(fi->flags), .fd = -1 };
        struct fnode *n;
        struct stat st;
        int r = new_entry(fs, req, node_of(fs, parent), name, &ne, &n, &st);
        if (r == 0) {
                r = file_handle_new_upper(fs, n, TAKE_FD(ne.fd), fi);
                if (r < 0)
                        node_unref(fs, n);
        }
        if (ne.fd >= 0)
                close(ne.fd);
        if (r < 0) {
                reply_change_err(req, fs, r);
                return;
        }
        struct fuse_entry_param e = { .ino = node_id(fs, n), .attr = st, .attr_timeout = FUSEFS_TIMEOUT,
                                      .entry_timeout = FUSEFS_TIMEOUT };
        if (fuse_reply_create(req, &e, fi) == 0)
                node_lookup_done(fs, n);
        else {
                node_unref(fs, n);
                file_handle_drop(fs, fi);
        }
}

/* ---- link ---- */

static int link_open(struct ossb_fusefs *fs, int pfd, const char *name, void *ud)
{
        int *fd = ud;
        *fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        return *fd < 0 ? -errno : 0;
}

static int link_at_locked(struct ossb_fusefs *fs, int srcfd, int pfd, const char *name)
{
        char proc[64];
        struct stat st;
        bool whiteout = false;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", srcfd);
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (!is_whiteout(&st))
                        return -EEXIST;
                whiteout = true;
                if (unlinkat(pfd, name, 0) < 0)
                        return -errno;
        }
        if (linkat(AT_FDCWD, proc, pfd, name, AT_SYMLINK_FOLLOW) == 0)
                return 0;
        int r = -errno;
        if (whiteout && make_whiteout(fs, pfd, name, false) < 0)
                fs_fail(fs, -EIO, "cannot restore the whiteout of `%s` after a failed link", name);
        return r;
}

static int do_link(struct ossb_fusefs *fs, struct fnode *n, struct fnode *dir, const char *name)
{
        bool lower_has;
        int srcfd = -1;
        if (S_ISDIR(n->type))
                return -EPERM;
        if (bad_name(name))
                return strlen(name) > NAME_MAX ? -ENAMETOOLONG : -EEXIST;
        int r = copy_up(fs, n, true);
        if (r == 0)
                r = ensure_upper_dir(fs, dir);
        if (r == 0)
                r = lower_has_name(fs, dir, name, &lower_has);
        if (r == 0)
                r = with_parent(fs, n, link_open, &srcfd);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&dir->dlock);
        int pfd = dirfd_get(fs, dir);
        r = pfd < 0 ? pfd : link_at_locked(fs, srcfd, pfd, name);
        if (pfd >= 0)
                dirfd_put(fs, dir);
        pthread_rwlock_unlock(&dir->dlock);
        close(srcfd);
        node_invalidate_dir(fs, dir);
        if (r < 0)
                return r;
        r = node_add_alias(n, dir, name);
        if (r < 0)
                return fs_fail(fs, r, "out of memory after linking `%s`", name);
        journal_add_child(fs, dir, name, lower_has ? OSSB_FS_CHANGE_MODIFIED : OSSB_FS_CHANGE_CREATED);
        return 0;
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n = node_of(fs, ino);
        struct stat st;
        int r = do_link(fs, n, node_of(fs, newparent), newname);
        if (r == 0)
                r = node_stat(fs, n, &st);
        if (r < 0) {
                reply_change_err(req, fs, r);
                return;
        }
        node_ref(n);
        reply_entry_for(req, fs, n, &st);
}
