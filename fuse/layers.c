/* fuse/layers.c - the merged view: looking a name up through the upper directory and the
 * lower layers (whiteouts and opaque directories honoured), the attributes a node serves, the
 * nodes for entries found, and small helpers on upper entries (xattrs through /proc without
 * following the last symlink, whiteouts, opaque markers). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <dirent.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "fuse/fusefs-internal.h"

bool is_whiteout(const struct stat *st)
{
        return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

bool xattr_private(const char *name)
{
        return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0 ||
               streq(name, OSSB_FS_OVERRIDE_XATTR);
}

/* "/proc/self/fd/DIRFD/NAME" (or the fd alone when name is NULL). */
static void proc_path(char *buf, size_t size, int dirfd, const char *name)
{
        if (name)
                snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, name);
        else
                snprintf(buf, size, "/proc/self/fd/%d", dirfd);
}

ssize_t xat_get(int dirfd, const char *name, const char *attr, void *buf, size_t size)
{
        char p[64 + NAME_MAX];
        ssize_t n;
        if (!name)
                n = fgetxattr(dirfd, attr, buf, size);
        else {
                proc_path(p, sizeof(p), dirfd, name);
                n = lgetxattr(p, attr, buf, size);
        }
        return n < 0 ? -errno : n;
}

int xat_set(int dirfd, const char *name, const char *attr, const void *val, size_t size, int flags)
{
        char p[64 + NAME_MAX];
        int r;
        if (!name)
                r = fsetxattr(dirfd, attr, val, size, flags);
        else {
                proc_path(p, sizeof(p), dirfd, name);
                r = lsetxattr(p, attr, val, size, flags);
        }
        return r < 0 ? -errno : 0;
}

int xat_remove(int dirfd, const char *name, const char *attr)
{
        char p[64 + NAME_MAX];
        int r;
        if (!name)
                r = fremovexattr(dirfd, attr);
        else {
                proc_path(p, sizeof(p), dirfd, name);
                r = lremovexattr(p, attr);
        }
        return r < 0 ? -errno : 0;
}

ssize_t xat_list(int dirfd, const char *name, char *buf, size_t size)
{
        char p[64 + NAME_MAX];
        ssize_t n;
        if (!name)
                n = flistxattr(dirfd, buf, size);
        else {
                proc_path(p, sizeof(p), dirfd, name);
                n = llistxattr(p, buf, size);
        }
        return n < 0 ? -errno : n;
}

void work_tmp_name(struct ossb_fusefs *fs, char buf[64])
{
        uint64_t seq = atomic_fetch_add(&fs->tmp_seq, 1);
        snprintf(buf, 64, WORK_TMP_PREFIX "%d-%llu", (int) getpid(), (unsigned long long) seq);
}

int make_whiteout(struct ossb_fusefs *fs, int dirfd, const char *name, bool replace)
{
        char tmp[64];
        if (!replace) {
                if (mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0)) == 0)
                        return 0;
                if (errno != EEXIST)
                        return -errno;
        }
        work_tmp_name(fs, tmp);
        if (mknodat(fs->work_fd, tmp, S_IFCHR | 0, makedev(0, 0)) < 0)
                return -errno;
        if (renameat(fs->work_fd, tmp, dirfd, name) == 0)
                return 0;
        if (errno != EISDIR) {
                int r = -errno;
                (void) unlinkat(fs->work_fd, tmp, 0);
                return r;
        }
        /* a directory is there: exchange, then remove the old directory from the work dir */
        if (renameat2(fs->work_fd, tmp, dirfd, name, RENAME_EXCHANGE) < 0) {
                int r = -errno;
                (void) unlinkat(fs->work_fd, tmp, 0);
                return r;
        }
        int r = ossb_rm_rf_at(fs->work_fd, tmp);
        if (r < 0)
                fs_fail(fs, r, "cannot remove a replaced directory from the work directory: %s", strerror(-r));
        return 0;
}

bool upper_is_opaque(struct ossb_fusefs *fs, int dirfd, const char *name)
{
        char v[2];
        return xat_get(dirfd, name, fs->opaque_xattr, v, sizeof(v)) == 1 && v[0] == 'y';
}

int remove_whiteouts(struct ossb_fusefs *fs, int fd)
{
        _cleanup_close_ int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d)
                return -errno;
        TAKE_FD(dfd);
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_type != DT_CHR && de->d_type != DT_UNKNOWN)
                        continue;
                if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !is_whiteout(&st))
                        continue;
                if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
                        r = -errno;
        }
        closedir(d);
        return r;
}

int upper_stat(struct ossb_fusefs *fs, int dirfd, const char *name, struct stat *ret, bool *ret_override)
{
        int r = name ? fstatat(dirfd, name, ret, AT_SYMLINK_NOFOLLOW) : fstat(dirfd, ret);
        if (r < 0)
                return -errno;
        if (ret_override)
                *ret_override = false;
        if ((fs->userxattr || atomic_load(&fs->override_seen)) && !is_whiteout(ret)) {
                char v[128];
                ssize_t n = xat_get(dirfd, name, OSSB_FS_OVERRIDE_XATTR, v, sizeof(v));
                if (n > 0 && ossb_fs_override_parse(v, (size_t) n, ret) == 0 && ret_override)
                        *ret_override = true;
        }
        return 0;
}

void lentry_clear(struct lentry *e)
{
        free(e->dl);
        e->dl = NULL;
        e->n_dl = 0;
        if (e->ufd >= 0)
                close(e->ufd);
        e->ufd = -1;
}

int node_dl_copy(struct fnode *n, int **ret, size_t *ret_n)
{
        pthread_mutex_lock(&n->lock);
        size_t cnt = n->n_dl;
        int *dl = cnt ? malloc(cnt * sizeof(*dl)) : NULL;
        if (cnt && !dl) {
                pthread_mutex_unlock(&n->lock);
                return -ENOMEM;
        }
        if (cnt)
                memcpy(dl, n->dl, cnt * sizeof(*dl));
        pthread_mutex_unlock(&n->lock);
        *ret = dl;
        *ret_n = cnt;
        return 0;
}

/* The upper part of a lookup; *ret_stop: the lowers are hidden (a non-directory, an opaque
 * directory, or a whiteout: then -ENOENT). */
static int lookup_upper(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *e, bool *ret_stop)
{
        int pfd = dirfd_get(fs, dir);
        if (pfd < 0)
                return pfd;
        bool ov = false;
        int r = upper_stat(fs, pfd, name, &e->st, &ov);
        if (r < 0) {
                dirfd_put(fs, dir);
                return r == -ENOENT ? 0 : r;
        }
        if (is_whiteout(&e->st)) {
                dirfd_put(fs, dir);
                *ret_stop = true;
                return -ENOENT;
        }
        e->layer = LAYER_UPPER;
        e->in_upper = true;
        e->override = ov;
        e->uino = e->st.st_ino;
        *ret_stop = true;
        if (S_ISDIR(e->st.st_mode)) {
                e->ufd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (e->ufd < 0)
                        r = -errno;
                else
                        *ret_stop = upper_is_opaque(fs, e->ufd, NULL);
        }
        dirfd_put(fs, dir);
        return r;
}

static int dl_push(struct lentry *e, int layer)
{
        int *dl = realloc(e->dl, (e->n_dl + 1) * sizeof(*dl));
        if (!dl)
                return -ENOMEM;
        dl[e->n_dl++] = layer;
        e->dl = dl;
        return 0;
}

/* The lower part: walk dir's layers; `found` says whether the upper had a directory. */
static int lookup_lowers(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *e, bool found)
{
        _cleanup_free_ int *dl = NULL;
        size_t n_dl;
        int r = node_dl_copy(dir, &dl, &n_dl);
        if (r < 0 || n_dl == 0)
                return r;
        _cleanup_free_ char *path = path_join2(dir->lpath ? dir->lpath : "", name);
        if (!path)
                return -ENOMEM;
        for (size_t i = 0; i < n_dl; i++) {
                struct ossb_fs_source *src = fs->lowers[dl[i]];
                struct stat st;
                unsigned fl = 0;
                r = src->ops->getattr(src->ctx, path, &st, &fl);
                if (r == -ENOENT || r == -ENOTDIR)
                        continue;
                if (r < 0)
                        return r;
                if (fl & OSSB_FS_WHITEOUT)
                        break;
                if (!found) {
                        found = true;
                        e->layer = dl[i];
                        e->st = st;
                        e->lower_has = true;
                } else if (!S_ISDIR(st.st_mode))
                        break;
                else
                        e->lower_has = true;
                if (!S_ISDIR(st.st_mode))
                        break;
                if (dl_push(e, dl[i]) < 0)
                        return -ENOMEM;
                if (fl & OSSB_FS_OPAQUE)
                        break;
        }
        return found ? 0 : -ENOENT;
}

int merged_lookup(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *ret)
{
        struct lentry e = { .layer = LAYER_UPPER, .ufd = -1 };
        bool stop = false;
        int r = 0;

        pthread_mutex_lock(&dir->lock);
        bool dupper = dir->upper, removed = dir->removed;
        pthread_mutex_unlock(&dir->lock);
        if (removed && dir != fs->root)
                return -ENOENT;
        if (dupper) {
                r = lookup_upper(fs, dir, name, &e, &stop);
                if (r < 0) {
                        lentry_clear(&e);
                        return r;
                }
        }
        if (!stop) {
                r = lookup_lowers(fs, dir, name, &e, e.in_upper);
                if (r < 0 && !(r == -ENOENT && e.in_upper)) {
                        lentry_clear(&e);
                        return r;
                }
        }
        if (!e.in_upper && e.n_dl == 0 && e.layer == LAYER_UPPER) {
                lentry_clear(&e);
                return -ENOENT;
        }
        if (e.layer == LAYER_UPPER)
                e.st.st_ino = ino_for_upper(fs, e.uino);
        else
                e.st.st_ino = ino_for_lower(fs, e.layer, e.st.st_ino);
        if (S_ISDIR(e.st.st_mode) && (e.in_upper ? e.n_dl > 0 : e.n_dl > 1))
                e.st.st_nlink = 1;
        *ret = e;
        return 0;
}

int lower_has_name(struct ossb_fusefs *fs, struct fnode *dir, const char *name, bool *ret)
{
        _cleanup_free_ int *dl = NULL;
        size_t n_dl;
        *ret = false;
        int r = node_dl_copy(dir, &dl, &n_dl);
        if (r < 0 || n_dl == 0)
                return r;
        _cleanup_free_ char *path = path_join2(dir->lpath ? dir->lpath : "", name);
        if (!path)
                return -ENOMEM;
        for (size_t i = 0; i < n_dl; i++) {
                struct ossb_fs_source *src = fs->lowers[dl[i]];
                struct stat st;
                unsigned fl = 0;
                r = src->ops->getattr(src->ctx, path, &st, &fl);
                if (r == -ENOENT || r == -ENOTDIR)
                        continue;
                if (r < 0)
                        return r;
                *ret = !(fl & OSSB_FS_WHITEOUT);
                return 0;
        }
        return 0;
}

static struct fnode *node_from_entry(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *e)
{
        struct fnode *n = node_new(fs, e->st.st_ino, e->st.st_mode);
        if (!n)
                return NULL;
        n->upper = e->in_upper;
        n->uino = e->uino;
        n->override = e->override;
        n->src = e->layer;
        n->lower_multi = e->layer != LAYER_UPPER && !S_ISDIR(e->st.st_mode) && e->st.st_nlink > 1;
        if (e->layer != LAYER_UPPER || e->n_dl > 0) {
                n->lpath = path_join2(dir->lpath ? dir->lpath : "", name);
                if (!n->lpath) {
                        node_discard(fs, n);
                        return NULL;
                }
        }
        n->dl = TAKE_PTR(e->dl);
        n->n_dl = e->n_dl;
        e->n_dl = 0;
        return n;
}

/* A live node with the number that no longer fits (removed, or another type): take it out of
 * the table so that the new entry gets its own node. */
static bool node_stale(struct fnode *n, const struct lentry *e)
{
        pthread_mutex_lock(&n->lock);
        bool stale = n->type != (e->st.st_mode & S_IFMT) || (n->removed && n->n_al == 0);
        pthread_mutex_unlock(&n->lock);
        return stale;
}

int node_for_entry(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *e,
                   struct fnode **ret)
{
        struct fnode *n = node_find(fs, e->st.st_ino);
        if (n && node_stale(n, e)) {
                node_unhash(fs, n);
                node_unref(fs, n);
                n = NULL;
        }
        if (!n) {
                struct fnode *fresh = node_from_entry(fs, dir, name, e);
                if (!fresh)
                        return -ENOMEM;
                n = node_insert(fs, fresh);
                if (!n)
                        return -ENOMEM;
                if (n == fresh && e->ufd >= 0 && S_ISDIR(e->st.st_mode))
                        dirfd_seed(fs, n, TAKE_FD(e->ufd));
        }
        int r = node_add_alias(n, dir, name);
        if (r < 0) {
                node_unref(fs, n);
                return r;
        }
        pthread_mutex_lock(&n->lock);
        bool need_link_up = n->upper && e->layer != LAYER_UPPER && !S_ISDIR(e->st.st_mode);
        pthread_mutex_unlock(&n->lock);
        if (need_link_up) {
                r = link_up(fs, n, dir, name);
                if (r < 0) {
                        node_unref(fs, n);
                        return r;
                }
        }
        *ret = n;
        return 0;
}

static int stat_upper_dir(struct ossb_fusefs *fs, struct fnode *n, struct stat *st)
{
        int fd = dirfd_get(fs, n);
        if (fd < 0)
                return fd;
        int r = upper_stat(fs, fd, NULL, st, NULL);
        dirfd_put(fs, n);
        return r;
}

static int stat_cb(struct ossb_fusefs *fs, int pfd, const char *name, void *ud)
{
        return upper_stat(fs, pfd, name, ud, NULL);
}

int node_stat(struct ossb_fusefs *fs, struct fnode *n, struct stat *ret)
{
        pthread_mutex_lock(&n->lock);
        bool upper = n->upper, removed = n->n_al == 0 && n != fs->root, orphan = n->orphan != NULL;
        size_t n_dl = n->n_dl;
        pthread_mutex_unlock(&n->lock);
        int r;

        if (removed && (upper || !n->lpath))
                return -ENOENT; /* an unlinked upper file that nobody has open */
        if (upper && S_ISDIR(n->type))
                r = stat_upper_dir(fs, n, ret);
        else if (upper)
                r = with_parent(fs, n, stat_cb, ret);
        else {
                /* a lower file unlinked while open still reads from the lower */
                struct ossb_fs_source *src = fs->lowers[n->src];
                r = src->ops->getattr(src->ctx, n->lpath, ret, NULL);
        }
        if (r < 0)
                return r;
        ret->st_ino = n->ino;
        if (removed)
                ret->st_nlink = 0;
        else if (orphan) /* its name in the work directory is no link of the merged view */
                ret->st_nlink = ret->st_nlink > 0 ? ret->st_nlink - 1 : 0;
        if (S_ISDIR(n->type) && (upper ? n_dl > 0 : n_dl > 1))
                ret->st_nlink = 1;
        return 0;
}
