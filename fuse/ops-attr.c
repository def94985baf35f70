/* fuse/ops-attr.c - handlers for names and attributes: lookup, forget, getattr, setattr
 * (copy-up first; owner changes the process may not make go to the override attribute),
 * readlink, statfs (the upper's), and extended attributes (overlay-private names hidden and
 * refused; POSIX ACLs passed through as system.posix_acl_*).  Every handler replies once. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

void reply_entry_for(fuse_req_t req, struct ossb_fusefs *fs, struct fnode *n, const struct stat *st)
{
        struct fuse_entry_param e = {
                .ino = node_id(fs, n),
                .attr = *st,
                .attr_timeout = FUSEFS_TIMEOUT,
                .entry_timeout = FUSEFS_TIMEOUT,
        };
        e.attr.st_ino = n->ino;
        if (fuse_reply_entry(req, &e) == 0)
                node_lookup_done(fs, n);
        else
                node_unref(fs, n);
}

bool bad_name(const char *name)
{
        return strlen(name) > NAME_MAX || streq(name, ".") || streq(name, "..") || strchr(name, '/');
}

int lookup_node(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct fnode **ret, struct stat *ret_st)
{
        struct lentry e;
        struct fnode *n;
        int r = merged_lookup(fs, dir, name, &e);
        if (r < 0)
                return r;
        r = node_for_entry(fs, dir, name, &e, &n);
        if (r < 0) {
                lentry_clear(&e);
                return r;
        }
        if (ret_st) {
                *ret_st = e.st;
                if (!e.in_upper && node_is_upper(n)) /* copied or linked up: serve the upper */
                        r = node_stat(fs, n, ret_st);
        }
        lentry_clear(&e);
        if (r < 0) {
                node_unref(fs, n);
                return r;
        }
        *ret = n;
        return 0;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n;
        struct stat st;

        atomic_fetch_add(&fs->st_lookups, 1);
        if (bad_name(name)) {
                fuse_reply_err(req, strlen(name) > NAME_MAX ? ENAMETOOLONG : ENOENT);
                return;
        }
        int r = lookup_node(fs, node_of(fs, parent), name, &n, &st);
        if (r == -ENOENT) {
                struct fuse_entry_param neg = { .entry_timeout = FUSEFS_TIMEOUT };
                fuse_reply_entry(req, &neg);
        } else if (r < 0)
                fuse_reply_err(req, -r);
        else
                reply_entry_for(req, fs, n, &st);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
        struct ossb_fusefs *fs = req_fs(req);
        if (ino != FUSE_ROOT_ID)
                node_forget(fs, node_of(fs, ino), nlookup);
        fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
        struct ossb_fusefs *fs = req_fs(req);
        for (size_t i = 0; i < count; i++)
                if (forgets[i].ino != FUSE_ROOT_ID)
                        node_forget(fs, node_of(fs, forgets[i].ino), forgets[i].nlookup);
        fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct stat st;
        int r = node_stat(fs, node_of(fs, ino), &st);
        if (r < 0)
                fuse_reply_err(req, -r);
        else
                fuse_reply_attr(req, &st, FUSEFS_TIMEOUT);
}

/* ---- setattr ---- */

struct setattr_req {
        const struct stat *attr;
        int to_set;
        int fd;              /* an open fd of the file, or -1 */
        struct stat want;    /* the attributes asked for (served owner and mode) */
        bool override;       /* the node carries an override attribute */
};

static int set_times(int dirfd, const char *name, struct setattr_req *s)
{
        struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
        if (s->to_set & FUSE_SET_ATTR_ATIME_NOW)
                t[0].tv_nsec = UTIME_NOW;
        else if (s->to_set & FUSE_SET_ATTR_ATIME)
                t[0] = s->attr->st_atim;
        if (s->to_set & FUSE_SET_ATTR_MTIME_NOW)
                t[1].tv_nsec = UTIME_NOW;
        else if (s->to_set & FUSE_SET_ATTR_MTIME)
                t[1] = s->attr->st_mtim;
        if (t[0].tv_nsec == UTIME_OMIT && t[1].tv_nsec == UTIME_OMIT)
                return 0;
        int r = name ? utimensat(dirfd, name, t, AT_SYMLINK_NOFOLLOW) : futimens(dirfd, t);
        return r < 0 ? -errno : 0;
}

static int truncate_at(int dirfd, const char *name, struct setattr_req *s)
{
        if (s->fd >= 0)
                return ftruncate(s->fd, s->attr->st_size) < 0 ? -errno : 0;
        if (!name)
                return -EISDIR;
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return ftruncate(fd, s->attr->st_size) < 0 ? -errno : 0;
}

static int owner_mode_at(struct ossb_fusefs *fs, int dirfd, const char *name, struct setattr_req *s)
{
        bool ov = s->override;
        if (s->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
                uid_t uid = (s->to_set & FUSE_SET_ATTR_UID) ? s->want.st_uid : (uid_t) -1;
                gid_t gid = (s->to_set & FUSE_SET_ATTR_GID) ? s->want.st_gid : (gid_t) -1;
                int r = name ? fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) : fchown(dirfd, uid, gid);
                if (r < 0 && errno != EPERM && errno != EINVAL)
                        return -errno;
                ov = ov || r < 0;
        }
        if ((s->to_set & FUSE_SET_ATTR_MODE) && !S_ISLNK(s->want.st_mode)) {
                int r = name ? fchmodat(dirfd, name, s->want.st_mode & 07777, 0) : fchmod(dirfd, s->want.st_mode & 07777);
                if (r < 0)
                        return -errno;
        }
        if (!ov || S_ISLNK(s->want.st_mode) || !(s->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE)))
                return 0;
        struct stat real;
        int r = name ? fstatat(dirfd, name, &real, AT_SYMLINK_NOFOLLOW) : fstat(dirfd, &real);
        if (r < 0)
                return -errno;
        char v[128];
        r = ossb_fs_override_format(&s->want, (real.st_mode & S_IFMT) != (s->want.st_mode & S_IFMT), v, sizeof(v));
        if (r < 0)
                return r;
        r = xat_set(dirfd, name, OSSB_FS_OVERRIDE_XATTR, v, (size_t) r, 0);
        if (r == 0)
                atomic_store(&fs->override_seen, true);
        return r;
}

static int setattr_at(struct ossb_fusefs *fs, int dirfd, const char *name, void *ud)
{
        struct setattr_req *s = ud;
        int r = owner_mode_at(fs, dirfd, name, s);
        if (r == 0 && (s->to_set & FUSE_SET_ATTR_SIZE))
                r = truncate_at(dirfd, name, s);
        if (r == 0)
                r = set_times(dirfd, name, s);
        return r;
}

/* With FUSE_HANDLE_KILLPRIV_V2 the filesystem clears setuid, and setgid of a group-executable
 * file, as the kernel would: on a chown of a file, and on a truncate, write or open(O_TRUNC)
 * by a caller without CAP_FSETID (the kernel flags those requests). */
static void kill_suidgid(struct setattr_req *s, bool flagged)
{
        mode_t m = s->want.st_mode & ~(mode_t) S_ISUID;
        /* setgid without group execute marks mandatory locking: the kernel keeps it unless a
         * flagged caller is outside the file's group */
        if ((m & S_IXGRP) || (flagged && (m & S_ISGID) && !req_caller_in_group(s->want.st_gid)))
                m &= ~(mode_t) S_ISGID;
        if (m != s->want.st_mode) {
                s->want.st_mode = m;
                s->to_set |= FUSE_SET_ATTR_MODE;
        }
}

static int do_setattr(struct ossb_fusefs *fs, struct fnode *n, struct setattr_req *s)
{
        const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                          FUSE_SET_ATTR_MTIME_NOW;
        /* the ctime alone (the writeback cache after a link count change) is not a change of
         * ours, and nothing but times can change on a lower file unlinked while open */
        s->to_set &= ~FUSE_SET_ATTR_CTIME;
        if (s->to_set == 0)
                return 0;
        pthread_mutex_lock(&n->lock);
        bool gone_lower = n->n_al == 0 && !n->upper && n != fs->root;
        pthread_mutex_unlock(&n->lock);
        if (gone_lower)
                return (s->to_set & ~times) ? -ENOENT : 0;
        bool trunc0 = (s->to_set & FUSE_SET_ATTR_SIZE) && s->attr->st_size == 0;
        int r = copy_up(fs, n, !trunc0);
        if (r < 0)
                return r;
        r = node_stat(fs, n, &s->want);
        if (r < 0)
                return r;
        pthread_mutex_lock(&n->lock);
        s->override = n->override;
        pthread_mutex_unlock(&n->lock);
        if (s->to_set & FUSE_SET_ATTR_UID)
                s->want.st_uid = s->attr->st_uid;
        if (s->to_set & FUSE_SET_ATTR_GID)
                s->want.st_gid = s->attr->st_gid;
        if (s->to_set & FUSE_SET_ATTR_MODE)
                s->want.st_mode = (s->want.st_mode & S_IFMT) | (s->attr->st_mode & 07777);
        else if (atomic_load(&fs->killpriv_v2) && S_ISREG(n->type) &&
                 (req_kill_suidgid() || (s->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))))
                kill_suidgid(s, req_kill_suidgid());
        if (S_ISDIR(n->type)) {
                int fd = dirfd_get(fs, n);
                if (fd < 0)
                        return fd;
                r = setattr_at(fs, fd, NULL, s);
                dirfd_put(fs, n);
        } else
                r = with_parent(fs, n, setattr_at, s);
        if (r == 0 && (s->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE))) {
                pthread_mutex_lock(&n->lock);
                n->override = n->override || atomic_load(&fs->override_seen);
                pthread_mutex_unlock(&n->lock);
        }
        return r;
}

int node_kill_suidgid(struct ossb_fusefs *fs, struct fnode *n)
{
        struct stat st;
        int r = node_stat(fs, n, &st);
        if (r < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & (S_ISUID | S_ISGID)))
                return r;
        struct setattr_req s = { .attr = &st, .to_set = 0, .fd = -1 };
        s.want = st;
        kill_suidgid(&s, true);
        if (s.to_set == 0)
                return 0;
        st.st_mode = s.want.st_mode;
        r = do_setattr(fs, n, &s);
        if (r == 0)
                journal_add_node(fs, n, OSSB_FS_CHANGE_MODIFIED);
        return r;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n = node_of(fs, ino);
        struct setattr_req s = { .attr = attr, .to_set = to_set, .fd = fi ? file_handle_fd(fi) : -1 };
        int r = do_setattr(fs, n, &s);
        struct stat st;
        if (r == 0 && s.to_set)
                journal_add_node(fs, n, OSSB_FS_CHANGE_MODIFIED);
        if (r == 0)
                r = node_stat(fs, n, &st);
        if (r < 0)
                reply_change_err(req, fs, r);
        else
                fuse_reply_attr(req, &st, FUSEFS_TIMEOUT);
}

/* ---- readlink, statfs ---- */

struct link_buf {
        char buf[PATH_MAX];
};

static int readlink_at(struct ossb_fusefs *fs, int dirfd, const char *name, void *ud)
{
        struct link_buf *b = ud;
        ssize_t n = readlinkat(dirfd, name, b->buf, sizeof(b->buf) - 1);
        if (n < 0)
                return -errno;
        b->buf[n] = '\0';
        return 0;
}

void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n = node_of(fs, ino);
        _cleanup_free_ struct link_buf *b = malloc(sizeof(*b));
        int r = b ? 0 : -ENOMEM;
        if (r == 0 && !S_ISLNK(n->type))
                r = -EINVAL;
        if (r == 0 && node_is_upper(n))
                r = with_parent(fs, n, readlink_at, b);
        else if (r == 0) {
                struct ossb_fs_source *src = fs->lowers[n->src];
                ssize_t len = src->ops->readlink(src->ctx, n->lpath, b->buf, sizeof(b->buf));
                r = len < 0 ? (int) len : 0;
        }
        if (r < 0)
                fuse_reply_err(req, -r);
        else
                fuse_reply_readlink(req, b->buf);
}

void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct statvfs sv;
        if (fstatvfs(fs->upper_fd, &sv) < 0)
                fuse_reply_err(req, errno);
        else
                fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ---- */

struct xattr_req {
        const char *name;
        const char *value;
        size_t size;
        int flags;
        char *buf;
        ssize_t result;
        enum { XA_GET, XA_LIST, XA_SET, XA_REMOVE } op;
};

static size_t filter_private(char *list, size_t len)
{
        size_t out = 0;
        for (size_t i = 0; i < len;) {
                size_t l = strnlen(list + i, len - i);
                if (!xattr_private(list + i)) {
                        memmove(list + out, list + i, l < len - i ? l + 1 : l);
                        out += l + 1;
                }
                i += l + 1;
        }
        return out > len ? len : out;
}

static int xattr_list_upper(int dirfd, const char *name, struct xattr_req *x)
{
        for (int tries = 0; tries < 8; tries++) {
                ssize_t n = xat_list(dirfd, name, NULL, 0);
                if (n == 0 || n == -ENOTSUP) {
                        x->result = 0;
                        return 0;
                }
                if (n < 0)
                        return (int) n;
                _cleanup_free_ char *all = malloc((size_t) n);
                if (!all)
                        return -ENOMEM;
                ssize_t m = xat_list(dirfd, name, all, (size_t) n);
                if (m == -ERANGE)
                        continue;
                if (m < 0)
                        return (int) m;
                size_t len = filter_private(all, (size_t) m);
                if (x->size && len > x->size)
                        return -ERANGE;
                if (x->size)
                        memcpy(x->buf, all, len);
                x->result = (ssize_t) len;
                return 0;
        }
        return -EAGAIN;
}

static int xattr_at(struct ossb_fusefs *fs, int dirfd, const char *name, void *ud)
{
        struct xattr_req *x = ud;
        switch (x->op) {
        case XA_GET:
                x->result = xat_get(dirfd, name, x->name, x->buf, x->size);
                return x->result < 0 ? (int) x->result : 0;
        case XA_LIST:
                return xattr_list_upper(dirfd, name, x);
        case XA_SET:
                return xat_set(dirfd, name, x->name, x->value, x->size, x->flags);
        case XA_REMOVE:
                return xat_remove(dirfd, name, x->name);
        }
        return -EINVAL;
}

static int xattr_upper(struct ossb_fusefs *fs, struct fnode *n, struct xattr_req *x)
{
        if (!S_ISDIR(n->type))
                return with_parent(fs, n, xattr_at, x);
        int fd = dirfd_get(fs, n);
        if (fd < 0)
                return fd;
        int r = xattr_at(fs, fd, NULL, x);
        dirfd_put(fs, n);
        return r;
}

static int xattr_read(struct ossb_fusefs *fs, struct fnode *n, struct xattr_req *x)
{
        if (x->size && !(x->buf = malloc(x->size)))
                return -ENOMEM;
        if (node_is_upper(n))
                return xattr_upper(fs, n, x);
        struct ossb_fs_source *src = fs->lowers[n->src];
        x->result = x->op == XA_GET ? src->ops->getxattr(src->ctx, n->lpath, x->name, x->buf, x->size)
                                    : src->ops->listxattr(src->ctx, n->lpath, x->buf, x->size);
        if (x->result == -ENOTSUP && x->op == XA_LIST)
                x->result = 0;
        return x->result < 0 ? (int) x->result : 0;
}

static void reply_xattr_read(fuse_req_t req, struct xattr_req *x, int r)
{
        if (r < 0)
                fuse_reply_err(req, -r);
        else if (x->size == 0)
                fuse_reply_xattr(req, (size_t) x->result);
        else
                fuse_reply_buf(req, x->buf, (size_t) x->result);
        free(x->buf);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct xattr_req x = { .name = name, .size = size, .op = XA_GET };
        int r = xattr_private(name) ? -ENODATA : xattr_read(fs, node_of(fs, ino), &x);
        reply_xattr_read(req, &x, r);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct xattr_req x = { .size = size, .op = XA_LIST };
        reply_xattr_read(req, &x, xattr_read(fs, node_of(fs, ino), &x));
}

static int xattr_change(struct ossb_fusefs *fs, struct fnode *n, struct xattr_req *x)
{
        if (xattr_private(x->name))
                return -EPERM;
        int r = copy_up(fs, n, true);
        if (r == 0)
                r = xattr_upper(fs, n, x);
        if (r == 0)
                journal_add_node(fs, n, OSSB_FS_CHANGE_MODIFIED);
        return r;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct xattr_req x = { .name = name, .value = value, .size = size, .flags = flags, .op = XA_SET };
        reply_change_err(req, fs, xattr_change(fs, node_of(fs, ino), &x));
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n = node_of(fs, ino);
        struct xattr_req x = { .name = name, .op = XA_REMOVE };
        int r = 0;
        if (!node_is_upper(n) && !xattr_private(name)) {
                /* nothing to copy up when the attribute is not there */
                struct xattr_req g = { .name = name, .op = XA_GET };
                r = xattr_read(fs, n, &g);
                free(g.buf);
        }
        if (r == 0)
                r = xattr_change(fs, n, &x);
        reply_change_err(req, fs, r);
}
