/* fuse/copyup.c - copy-up: making a lower entry exist in the upper directory before it
 * changes.  The copy is built in the work directory (data by FICLONE, else copy_file_range
 * over the data segments so holes stay holes, else read/write; then owner, xattrs, mode,
 * times) and renamed into place, so the upper never holds a half-copied file; the parent's
 * times are kept as they were (as kernel overlayfs does).  Parents are copied up first, with
 * their metadata.  A lower file with several links keeps them: the names known so far are
 * linked to the copy at once, the others when they are looked up (link_up).  Also: reaching
 * an upper non-directory by (parent fd, name) under its parent's lock (with_parent). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "fuse/fusefs-internal.h"

#define COPY_CHUNK (1024 * 1024)

int with_parent(struct ossb_fusefs *fs, struct fnode *n,
                int (*fn)(struct ossb_fusefs *fs, int pfd, const char *name, void *ud), void *ud)
{
        for (int attempt = 0; attempt < 16; attempt++) {
                struct fnode *p;
                _cleanup_free_ char *name = NULL;
                int r = node_first_alias(n, &p, &name);
                if (r < 0)
                        return r;
                pthread_rwlock_rdlock(&p->dlock);
                if (!node_has_alias(n, p, name)) {
                        pthread_rwlock_unlock(&p->dlock);
                        node_unref(fs, p);
                        continue;
                }
                int pfd = dirfd_get(fs, p);
                r = pfd < 0 ? pfd : fn(fs, pfd, name, ud);
                if (pfd >= 0)
                        dirfd_put(fs, p);
                pthread_rwlock_unlock(&p->dlock);
                node_unref(fs, p);
                return r;
        }
        return -ESTALE;
}

/* ---- metadata ---- */

static int write_override(struct ossb_fusefs *fs, int dirfd, const char *name, const struct stat *st, bool with_type)
{
        char v[128];
        int r = ossb_fs_override_format(st, with_type, v, sizeof(v));
        if (r < 0)
                return r;
        r = xat_set(dirfd, name, OSSB_FS_OVERRIDE_XATTR, v, (size_t) r, 0);
        if (r == 0)
                atomic_store(&fs->override_seen, true);
        return r;
}

static int copy_xattrs(struct ossb_fusefs *fs, struct ossb_fs_source *src, const char *path, int dirfd,
                       const char *name)
{
        ssize_t len = src->ops->listxattr(src->ctx, path, NULL, 0);
        if (len <= 0)
                return len == -ENOTSUP || len == -ENODATA ? 0 : (int) len;
        _cleanup_free_ char *list = malloc((size_t) len);
        if (!list)
                return -ENOMEM;
        len = src->ops->listxattr(src->ctx, path, list, (size_t) len);
        if (len < 0)
                return (int) len;
        for (ssize_t i = 0; i < len; i += (ssize_t) strlen(list + i) + 1) {
                const char *attr = list + i;
                ssize_t vl = src->ops->getxattr(src->ctx, path, attr, NULL, 0);
                if (vl == -ENODATA)
                        continue;
                if (vl < 0)
                        return (int) vl;
                _cleanup_free_ char *val = malloc(vl ? (size_t) vl : 1);
                if (!val)
                        return -ENOMEM;
                vl = src->ops->getxattr(src->ctx, path, attr, val, (size_t) vl);
                if (vl < 0)
                        return (int) vl;
                int r = xat_set(dirfd, name, attr, val, (size_t) vl, 0);
                if (r == -EPERM || r == -ENOTSUP || r == -EOPNOTSUPP) {
                        log_debug("fusefs: copy-up of `%s`: attribute %s not copied: %s", path, attr, strerror(-r));
                        continue;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Owner, xattrs, mode and times of the copy dirfd/name from the lower entry. */
static int copy_meta(struct ossb_fusefs *fs, struct ossb_fs_source *src, const char *path, int dirfd,
                     const char *name, const struct stat *st, bool *ret_override)
{
        bool ov = false;
        if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != EPERM && errno != EINVAL)
                        return -errno;
                ov = !S_ISLNK(st->st_mode);
        }
        int r = copy_xattrs(fs, src, path, dirfd, name);
        if (r < 0)
                return r;
        if (!S_ISLNK(st->st_mode) && fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
                return -errno;
        struct stat real;
        if (fstatat(dirfd, name, &real, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        bool typed = (real.st_mode & S_IFMT) != (st->st_mode & S_IFMT); /* a device made a file */
        if (ov || typed) {
                r = write_override(fs, dirfd, name, st, typed);
                if (r < 0)
                        return r;
                ov = true;
        }
        struct timespec t[2] = { st->st_atim, st->st_mtim };
        if (utimensat(dirfd, name, t, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        *ret_override = ov;
        return 0;
}

/* ---- data ---- */

static int copy_range(int in, int out, off_t start, off_t end)
{
        off_t ioff = start, ooff = start;
        while (ioff < end) {
                ssize_t n = copy_file_range(in, &ioff, out, &ooff, (size_t) (end - ioff), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
                        break;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
        }
        _cleanup_free_ char *buf = ioff < end ? malloc(COPY_CHUNK) : NULL;
        if (ioff < end && !buf)
                return -ENOMEM;
        while (ioff < end) {
                size_t want = (size_t) (end - ioff) < COPY_CHUNK ? (size_t) (end - ioff) : COPY_CHUNK;
                ssize_t n = pread(in, buf, want, ioff);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                for (ssize_t w = 0; w < n;) {
                        ssize_t m = pwrite(out, buf + w, (size_t) (n - w), ioff + w);
                        if (m < 0 && errno == EINTR)
                                continue;
                        if (m < 0)
                                return -errno;
                        w += m;
                }
                ioff += n;
        }
        return 0;
}

static int copy_fd_data(int in, int out, off_t size)
{
        if (size == 0 || ioctl(out, FICLONE, in) == 0)
                return 0;
        for (off_t off = 0; off < size;) {
                off_t data = lseek(in, off, SEEK_DATA);
                if (data < 0 && errno == ENXIO)
                        break;
                if (data < 0)
                        return copy_range(in, out, off, size); /* no SEEK_DATA: copy it all */
                off_t hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0 || hole > size)
                        hole = size;
                int r = copy_range(in, out, data, hole);
                if (r < 0)
                        return r;
                off = hole;
        }
        return ftruncate(out, size) < 0 ? -errno : 0;
}

static int copy_source_data(struct ossb_fs_source *src, void *h, int out, off_t size)
{
        _cleanup_free_ char *buf = malloc(COPY_CHUNK);
        if (!buf)
                return -ENOMEM;
        for (off_t off = 0; off < size;) {
                ssize_t n = src->ops->read(src->ctx, h, buf, COPY_CHUNK, off);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        break;
                for (ssize_t w = 0; w < n;) {
                        ssize_t m = pwrite(out, buf + w, (size_t) (n - w), off + w);
                        if (m < 0 && errno == EINTR)
                                continue;
                        if (m < 0)
                                return -errno;
                        w += m;
                }
                off += n;
        }
        return ftruncate(out, size) < 0 ? -errno : 0;
}

static int copy_file(struct ossb_fusefs *fs, struct ossb_fs_source *src, const char *path, const char *tmp,
                     off_t size, bool data)
{
        _cleanup_close_ int out = openat(fs->work_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        if (!data || size == 0)
                return 0;
        void *h = NULL;
        int r = src->ops->open(src->ctx, path, &h);
        if (r < 0)
                return r;
        int in = src->ops->handle_fd ? src->ops->handle_fd(src->ctx, h) : -1;
        r = in >= 0 ? copy_fd_data(in, out, size) : copy_source_data(src, h, out, size);
        src->ops->release(src->ctx, h);
        if (r == 0) {
                atomic_fetch_add(&fs->st_copy_up_bytes, (uint64_t) size);
                atomic_fetch_add(&fs->st_lower_bytes, (uint64_t) size);
        }
        return r;
}

/* Make the node type at work/tmp (a device the process may not create becomes a regular
 * file whose override attribute names the type). */
static int copy_node(struct ossb_fusefs *fs, struct ossb_fs_source *src, const char *path, const char *tmp,
                     const struct stat *st, bool data)
{
        if (S_ISREG(st->st_mode))
                return copy_file(fs, src, path, tmp, st->st_size, data);
        if (S_ISLNK(st->st_mode)) {
                char target[PATH_MAX];
                ssize_t n = src->ops->readlink(src->ctx, path, target, sizeof(target));
                if (n < 0)
                        return (int) n;
                return symlinkat(target, fs->work_fd, tmp) < 0 ? -errno : 0;
        }
        if (S_ISDIR(st->st_mode))
                return mkdirat(fs->work_fd, tmp, 0700) < 0 ? -errno : 0;
        if (mknodat(fs->work_fd, tmp, st->st_mode & S_IFMT, st->st_rdev) == 0)
                return 0;
        if (errno != EPERM || !(S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)))
                return -errno;
        int fd = openat(fs->work_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

/* ---- installing a copy ---- */

struct install {
        struct ossb_fusefs *fs;
        struct fnode *n;
        const char *tmp;
        uint64_t uino;
        int dirfd; /* directories: an fd of the installed directory */
};

/* With the parent's dlock written: rename work/tmp to pfd/name, keeping the parent's times. */
static int install_at(struct ossb_fusefs *fs, int pfd, const char *name, struct install *in)
{
        struct stat pst, st;
        if (fstat(pfd, &pst) < 0)
                return -errno;
        if (renameat2(fs->work_fd, in->tmp, pfd, name, RENAME_NOREPLACE) < 0)
                return -errno;
        struct timespec t[2] = { pst.st_atim, pst.st_mtim };
        (void) futimens(pfd, t);
        if (S_ISDIR(in->n->type)) {
                in->dirfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (in->dirfd < 0 || fstat(in->dirfd, &st) < 0)
                        return fs_fail(fs, -errno, "cannot open the copied-up directory `%s`: %m", name);
        } else if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return fs_fail(fs, -errno, "cannot stat the copied-up `%s`: %m", name);
        in->uino = st.st_ino;
        return 0;
}

/* Rename the finished copy into the node's parent, under the parent's dlock. */
static int install(struct ossb_fusefs *fs, struct fnode *n, struct fnode *p, const char *name, struct install *in)
{
        pthread_rwlock_wrlock(&p->dlock);
        int r = -ENOENT;
        if (node_has_alias(n, p, name)) {
                int pfd = dirfd_get(fs, p);
                r = pfd < 0 ? pfd : install_at(fs, pfd, name, in);
                if (pfd >= 0)
                        dirfd_put(fs, p);
        }
        if (r == 0) {
                pthread_mutex_lock(&n->lock);
                n->upper = true;
                n->uino = in->uino;
                pthread_mutex_unlock(&n->lock);
        }
        pthread_rwlock_unlock(&p->dlock);
        if (r < 0)
                return r;
        ino_record_copy_up(fs, in->uino, n->ino);
        if (in->dirfd >= 0)
                dirfd_seed(fs, n, TAKE_FD(in->dirfd));
        atomic_fetch_add(&fs->st_copy_ups, 1);
        return 0;
}

/* Copy node n (whose alias is p/name and which is not upper yet) up; culock held. */
static int copy_up_locked(struct ossb_fusefs *fs, struct fnode *n, struct fnode *p, const char *name, bool data)
{
        struct ossb_fs_source *src = fs->lowers[n->src];
        struct stat st;
        bool ov = false;
        char tmp[64];
        int r = src->ops->getattr(src->ctx, n->lpath, &st, NULL);
        if (r < 0)
                return r;
        work_tmp_name(fs, tmp);
        r = copy_node(fs, src, n->lpath, tmp, &st, data);
        if (r == 0)
                r = copy_meta(fs, src, n->lpath, fs->work_fd, tmp, &st, &ov);
        if (r == 0) {
                struct install in = { fs, n, tmp, 0, -1 };
                r = install(fs, n, p, name, &in);
                if (in.dirfd >= 0)
                        close(in.dirfd);
        }
        if (r < 0) {
                (void) unlinkat(fs->work_fd, tmp, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
                return r;
        }
        pthread_mutex_lock(&n->lock);
        n->override = ov;
        pthread_mutex_unlock(&n->lock);
        return 0;
}

int ensure_upper_dir(struct ossb_fusefs *fs, struct fnode *dir)
{
        if (node_is_upper(dir))
                return 0;
        struct fnode *p;
        _cleanup_free_ char *name = NULL;
        int r = node_first_alias(dir, &p, &name);
        if (r < 0)
                return r;
        r = ensure_upper_dir(fs, p);
        if (r == 0) {
                pthread_mutex_lock(&dir->culock);
                if (!node_is_upper(dir))
                        r = copy_up_locked(fs, dir, p, name, false);
                pthread_mutex_unlock(&dir->culock);
        }
        node_unref(fs, p);
        return r;
}

struct link_src {
        int fd; /* O_PATH fd of the upper file */
};

static int open_opath(struct ossb_fusefs *fs, int pfd, const char *name, void *ud)
{
        struct link_src *ls = ud;
        ls->fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        return ls->fd < 0 ? -errno : 0;
}

/* Link the upper file (O_PATH fd) at dir/name, which must hold nothing in the upper. */
static int link_at(struct ossb_fusefs *fs, int fd, struct fnode *n, struct fnode *dir, const char *name)
{
        int r = ensure_upper_dir(fs, dir);
        if (r < 0)
                return r;
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        pthread_rwlock_wrlock(&dir->dlock);
        int dfd = dirfd_get(fs, dir);
        r = dfd;
        if (dfd >= 0) {
                struct stat pst;
                r = fstat(dfd, &pst) < 0 ? -errno : 0;
                if (r == 0 && linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) < 0)
                        r = errno == EEXIST ? 0 : -errno;
                struct timespec t[2] = { pst.st_atim, pst.st_mtim };
                if (r == 0)
                        (void) futimens(dfd, t);
                dirfd_put(fs, dir);
        }
        pthread_rwlock_unlock(&dir->dlock);
        if (r == 0) /* the name now shows the copy's content */
                journal_add_child(fs, dir, name, OSSB_FS_CHANGE_MODIFIED);
        return r;
}

int link_up(struct ossb_fusefs *fs, struct fnode *n, struct fnode *dir, const char *name)
{
        struct link_src ls = { -1 };
        int r = with_parent(fs, n, open_opath, &ls);
        if (r < 0)
                return r;
        r = link_at(fs, ls.fd, n, dir, name);
        close(ls.fd);
        return r;
}

/* A multi-link lower file was copied up at p/name: link its other known names to the copy
 * and keep the node for the mount's life (later lookups of other names link up too). */
static int link_up_known(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&n->lock);
        bool pin = !n->pinned;
        n->pinned = true;
        size_t cnt = n->n_al;
        struct falias *al = calloc(cnt ? cnt : 1, sizeof(*al));
        for (size_t i = 0; al && i < cnt; i++) {
                al[i].parent = n->al[i].parent;
                al[i].name = strdup(n->al[i].name);
                node_ref(al[i].parent);
        }
        pthread_mutex_unlock(&n->lock);
        if (pin)
                node_ref(n);
        if (!al)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 1; i < cnt; i++)
                if (r == 0)
                        r = al[i].name ? link_up(fs, n, al[i].parent, al[i].name) : -ENOMEM;
        for (size_t i = 0; i < cnt; i++) {
                free(al[i].name);
                node_unref(fs, al[i].parent);
        }
        free(al);
        return r;
}

int copy_up(struct ossb_fusefs *fs, struct fnode *n, bool data)
{
        if (S_ISDIR(n->type))
                return ensure_upper_dir(fs, n);
        if (node_is_upper(n))
                return 0;
        pthread_mutex_lock(&n->culock);
        int r = 0;
        if (!node_is_upper(n)) {
                struct fnode *p;
                _cleanup_free_ char *name = NULL;
                r = node_first_alias(n, &p, &name);
                if (r == 0) {
                        r = ensure_upper_dir(fs, p);
                        if (r == 0)
                                r = copy_up_locked(fs, n, p, name, data);
                        node_unref(fs, p);
                }
                if (r == 0 && n->lower_multi)
                        r = link_up_known(fs, n);
        }
        pthread_mutex_unlock(&n->culock);
        return r;
}

/* ---- copying a whole directory up (rename of a directory with lower content) ---- */

static int copy_up_child(struct ossb_fusefs *fs, struct fnode *dir, const char *name, unsigned depth);

static int copy_up_tree_depth(struct ossb_fusefs *fs, struct fnode *dir, unsigned depth)
{
        if (depth > 4096)
                return -ELOOP;
        int r = ensure_upper_dir(fs, dir);
        if (r < 0)
                return r;
        pthread_mutex_lock(&dir->lock);
        size_t n_dl = dir->n_dl;
        pthread_mutex_unlock(&dir->lock);
        if (n_dl == 0)
                return 0;

        struct dlist *l;
        r = dir_listing(fs, dir, &l);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n && r == 0; i++)
                r = copy_up_child(fs, dir, l->e[i].name, depth);
        dlist_unref(l);
        if (r < 0)
                return r;

        /* everything visible is in the upper now: make it opaque, drop the lowers */
        pthread_rwlock_wrlock(&dir->dlock);
        int fd = dirfd_get(fs, dir);
        r = fd < 0 ? fd : xat_set(fd, NULL, fs->opaque_xattr, "y", 1, 0);
        if (r == 0) {
                pthread_mutex_lock(&dir->lock);
                free(dir->dl);
                dir->dl = NULL;
                dir->n_dl = 0;
                pthread_mutex_unlock(&dir->lock);
                r = remove_whiteouts(fs, fd);
        }
        if (fd >= 0)
                dirfd_put(fs, dir);
        pthread_rwlock_unlock(&dir->dlock);
        return r;
}

static int copy_up_child(struct ossb_fusefs *fs, struct fnode *dir, const char *name, unsigned depth)
{
        struct lentry e;
        struct fnode *c;
        int r = merged_lookup(fs, dir, name, &e);
        if (r == -ENOENT)
                return 0; /* removed meanwhile */
        if (r < 0)
                return r;
        r = node_for_entry(fs, dir, name, &e, &c);
        lentry_clear(&e);
        if (r < 0)
                return r;
        r = S_ISDIR(c->type) ? copy_up_tree_depth(fs, c, depth + 1) : copy_up(fs, c, true);
        node_unref(fs, c);
        return r;
}

int copy_up_tree(struct ossb_fusefs *fs, struct fnode *dir)
{
        return copy_up_tree_depth(fs, dir, 0);
}
