/* fuse/source-dir.c - a lower layer served from a local directory in kernel overlayfs's
 * lower-layer format (ossb_fs_source_dir_new).
 *
 * Every access is a path resolved beneath the layer's root fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): no symbolic link is followed
 * at all (a layer's path never goes through one: the merged lookup stops at a non-directory),
 * so a hostile link cannot lead out of the layer.  Where openat2 is missing, the path is walked
 * one component at a time with O_NOFOLLOW.  Paths longer than PATH_MAX are walked in pieces.
 * Extended attributes of O_PATH fds are read through /proc/self/fd/N (the magic link names
 * the exact inode, a symbolic link included).
 *
 * Overlay-private attributes (trusted.overlay.*, user.overlay.*) and OSSB_FS_OVERRIDE_XATTR
 * are never shown.  With `userxattr` (a rootless store), OSSB_FS_OVERRIDE_XATTR on an entry is
 * applied to the attributes getattr reports.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

struct src_dir {
        int rootfd;
        bool userxattr;
        char opaque[32];
};

struct src_handle {
        int fd;
};

static atomic_bool force_fallback;

void fsrc_dir_force_fallback(bool force)
{
        atomic_store(&force_fallback, force);
}

/* One component at a time, never following a symbolic link. */
static int open_walk(int dirfd, const char *path, int flags)
{
        _cleanup_close_ int cur = -1;
        const char *p = path;
        int at = dirfd;

        for (;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                char comp[NAME_MAX + 1];

                if (len == 0 || len > NAME_MAX)
                        return len == 0 ? -EINVAL : -ENAMETOOLONG;
                memcpy(comp, p, len);
                comp[len] = '\0';
                if (streq(comp, ".") || streq(comp, ".."))
                        return -EINVAL;
                if (!slash) {
                        int fd = openat(at, comp, flags | O_NOFOLLOW | O_CLOEXEC);
                        return fd < 0 ? -errno : fd;
                }
                int nfd = openat(at, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0)
                        return errno == ELOOP ? -ENOTDIR : -errno;
                if (cur >= 0)
                        close(cur);
                cur = nfd;
                at = cur;
                p = slash + 1;
        }
}

static int open_beneath(int dirfd, const char *path, int flags)
{
#ifdef HAVE_LINUX_OPENAT2_H
        if (!atomic_load(&force_fallback)) {
                struct open_how how = {
                        .flags = (uint64_t) (flags | O_NOFOLLOW | O_CLOEXEC),
                        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                   RESOLVE_NO_XDEV,
                };
                int fd = (int) syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
                if (fd >= 0)
                        return fd;
                if (errno != ENOSYS && errno != EPERM)
                        return errno == ELOOP ? -ENOENT : -errno;
        }
#endif
        return open_walk(dirfd, path, flags);
}

/* Whether a relative path has an empty, "." or ".." component (never ours: refused). */
static bool path_odd(const char *path)
{
        for (const char *p = path;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
                        return true;
                if (!slash)
                        return false;
                p = slash + 1;
        }
}

/* Open `path` beneath the layer root ("" is the root itself); long paths in pieces. */
static int sd_open(struct src_dir *sd, const char *path, int flags)
{
        if (path[0] != '\0' && path_odd(path))
                return -ENOENT;
        if (path[0] == '\0') {
                int fd = openat(sd->rootfd, ".", flags | O_CLOEXEC);
                return fd < 0 ? -errno : fd;
        }
        size_t len = strlen(path);
        if (len < PATH_MAX - 1)
                return open_beneath(sd->rootfd, path, flags);

        /* walk a prefix of at most ~PATH_MAX/2 bytes at a time */
        _cleanup_close_ int cur = -1;
        const char *p = path;
        while (strlen(p) >= PATH_MAX - 1) {
                const char *cut = p + PATH_MAX / 2;
                while (cut > p && *cut != '/')
                        cut--;
                if (cut == p)
                        return -ENAMETOOLONG;
                _cleanup_free_ char *prefix = strndup(p, (size_t) (cut - p));
                if (!prefix)
                        return -ENOMEM;
                int nfd = open_beneath(cur >= 0 ? cur : sd->rootfd, prefix, O_PATH | O_DIRECTORY);
                if (nfd < 0)
                        return nfd;
                if (cur >= 0)
                        close(cur);
                cur = nfd;
                p = cut + 1;
        }
        return open_beneath(cur, p, flags);
}

static ssize_t fd_getxattr(int fd, const char *name, void *buf, size_t size)
{
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ssize_t n = getxattr(proc, name, buf, size);
        return n < 0 ? -errno : n;
}

static ssize_t fd_listxattr(int fd, char *buf, size_t size)
{
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ssize_t n = listxattr(proc, buf, size);
        return n < 0 ? -errno : n;
}

static void apply_override(int fd, struct stat *st)
{
        char v[128];
        ssize_t n = fd_getxattr(fd, OSSB_FS_OVERRIDE_XATTR, v, sizeof(v));
        if (n > 0)
                (void) ossb_fs_override_parse(v, (size_t) n, st);
}

static int sd_getattr(void *ctx, const char *path, struct stat *st, unsigned *ret_flags)
{
        struct src_dir *sd = ctx;
        _cleanup_close_ int fd = sd_open(sd, path, O_PATH | O_NOFOLLOW);
        unsigned flags = 0;

        if (fd < 0)
                return fd;
        if (fstat(fd, st) < 0)
                return -errno;
        if (is_whiteout(st))
                flags |= OSSB_FS_WHITEOUT;
        else if (S_ISDIR(st->st_mode)) {
                char v[2];
                ssize_t n = fd_getxattr(fd, sd->opaque, v, sizeof(v));
                if (n == 1 && v[0] == 'y')
                        flags |= OSSB_FS_OPAQUE;
        }
        if (sd->userxattr && !(flags & OSSB_FS_WHITEOUT))
                apply_override(fd, st);
        if (ret_flags)
                *ret_flags = flags;
        return 0;
}

struct sd_iter {
        int fd;
        int (*cb)(void *ud, const char *name, unsigned char type);
        int (*cb_ino)(void *ud, const char *name, unsigned char type, uint64_t ino);
        void *ud;
};

static int sd_list(void *ctx, const char *path, struct sd_iter *it)
{
        struct src_dir *sd = ctx;
        _cleanup_close_ int fd = sd_open(sd, path, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return fd;
        _cleanup_free_ char *buf = malloc(32768);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                long n = syscall(SYS_getdents64, fd, buf, 32768);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
                for (long off = 0; off < n;) {
                        struct dirent64 *d = (struct dirent64 *) (buf + off);
                        off += d->d_reclen;
                        if (streq(d->d_name, ".") || streq(d->d_name, ".."))
                                continue;
                        unsigned char type = d->d_type;
                        if (type == DT_UNKNOWN) {
                                struct stat st;
                                if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                        continue;
                                type = (unsigned char) IFTODT(st.st_mode);
                        }
                        int r = it->cb_ino ? it->cb_ino(it->ud, d->d_name, type, d->d_ino)
                                           : it->cb(it->ud, d->d_name, type);
                        if (r != 0)
                                return r;
                }
        }
}

static int sd_readdir(void *ctx, const char *path, int (*cb)(void *ud, const char *name, unsigned char type), void *ud)
{
        struct sd_iter it = { .cb = cb, .ud = ud };
        return sd_list(ctx, path, &it);
}

static int sd_readdir_ino(void *ctx, const char *path,
                          int (*cb)(void *ud, const char *name, unsigned char type, uint64_t ino), void *ud)
{
        struct sd_iter it = { .cb_ino = cb, .ud = ud };
        return sd_list(ctx, path, &it);
}

static int sd_open_file(void *ctx, const char *path, void **ret_handle)
{
        struct src_dir *sd = ctx;
        struct stat st;
        _cleanup_close_ int pfd = sd_open(sd, path, O_PATH | O_NOFOLLOW);
        if (pfd < 0)
                return pfd;
        if (fstat(pfd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        _cleanup_close_ int fd = open(proc, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) /* no /proc: open the path again */
                fd = sd_open(sd, path, O_RDONLY);
        else if (fd < 0)
                fd = -errno;
        if (fd < 0)
                return fd;
        struct src_handle *h = malloc(sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->fd = TAKE_FD(fd);
        *ret_handle = h;
        return 0;
}

static ssize_t sd_read(void *ctx, void *handle, void *buf, size_t size, off_t off)
{
        struct src_handle *h = handle;
        size_t done = 0;
        while (done < size) {
                ssize_t n = pread(h->fd, (char *) buf + done, size - done, off + (off_t) done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return done > 0 ? (ssize_t) done : -errno;
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

static int sd_handle_fd(void *ctx, void *handle)
{
        struct src_handle *h = handle;
        return h->fd;
}

static void sd_release(void *ctx, void *handle)
{
        struct src_handle *h = handle;
        if (!h)
                return;
        close(h->fd);
        free(h);
}

static ssize_t sd_readlink(void *ctx, const char *path, char *buf, size_t size)
{
        struct src_dir *sd = ctx;
        _cleanup_close_ int fd = sd_open(sd, path, O_PATH | O_NOFOLLOW);
        if (fd < 0)
                return fd;
        if (size == 0)
                return -ERANGE;
        ssize_t n = readlinkat(fd, "", buf, size);
        if (n < 0)
                return errno == ENOENT ? -EINVAL : -errno;
        if ((size_t) n >= size)
                return -ERANGE;
        buf[n] = '\0';
        return n;
}

static ssize_t sd_getxattr(void *ctx, const char *path, const char *name, void *buf, size_t size)
{
        struct src_dir *sd = ctx;
        if (xattr_private(name))
                return -ENODATA;
        _cleanup_close_ int fd = sd_open(sd, path, O_PATH | O_NOFOLLOW);
        if (fd < 0)
                return fd;
        return fd_getxattr(fd, name, buf, size);
}

/* Drop private names from a NUL-separated list in place; returns the new length. */
static size_t filter_names(char *list, size_t len)
{
        size_t out = 0;
        for (size_t i = 0; i < len;) {
                size_t l = strnlen(list + i, len - i);
                if (!xattr_private(list + i)) {
                        memmove(list + out, list + i, l + 1 <= len - i ? l + 1 : l);
                        out += l + 1;
                }
                i += l + 1;
        }
        return out > len ? len : out;
}

static ssize_t sd_listxattr(void *ctx, const char *path, char *buf, size_t size)
{
        struct src_dir *sd = ctx;
        _cleanup_close_ int fd = sd_open(sd, path, O_PATH | O_NOFOLLOW);
        if (fd < 0)
                return fd;
        for (int tries = 0; tries < 8; tries++) {
                ssize_t n = fd_listxattr(fd, NULL, 0);
                if (n <= 0)
                        return n == -ENOTSUP ? 0 : n;
                _cleanup_free_ char *all = malloc((size_t) n);
                if (!all)
                        return -ENOMEM;
                ssize_t m = fd_listxattr(fd, all, (size_t) n);
                if (m == -ERANGE)
                        continue;
                if (m < 0)
                        return m;
                size_t len = filter_names(all, (size_t) m);
                if (size == 0)
                        return (ssize_t) len;
                if (len > size)
                        return -ERANGE;
                memcpy(buf, all, len);
                return (ssize_t) len;
        }
        return -EAGAIN;
}

static void sd_free(void *ctx)
{
        struct src_dir *sd = ctx;
        if (!sd)
                return;
        if (sd->rootfd >= 0)
                close(sd->rootfd);
        free(sd);
}

static const struct ossb_fs_source_ops sd_ops = {
        .getattr = sd_getattr,
        .readdir = sd_readdir,
        .open = sd_open_file,
        .read = sd_read,
        .handle_fd = sd_handle_fd,
        .release = sd_release,
        .readlink = sd_readlink,
        .getxattr = sd_getxattr,
        .listxattr = sd_listxattr,
        .free = sd_free,
        .readdir_ino = sd_readdir_ino,
};

int ossb_fs_source_dir_new(const char *dir, bool userxattr, struct ossb_fs_source **ret, struct ossb_error **err)
{
        struct stat st;
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open the lower layer directory `%s`: %m", dir);
        if (fstat(fd, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat the lower layer directory `%s`: %m", dir);

        struct src_dir *sd = calloc(1, sizeof(*sd));
        struct ossb_fs_source *src = calloc(1, sizeof(*src));
        char *name = strdup(dir);
        if (!sd || !src || !name) {
                free(sd);
                free(src);
                free(name);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        sd->rootfd = TAKE_FD(fd);
        sd->userxattr = userxattr;
        snprintf(sd->opaque, sizeof(sd->opaque), "%soverlay.opaque", userxattr ? "user." : "trusted.");
        src->ops = &sd_ops;
        src->ctx = sd;
        src->name = name;
        *ret = src;
        return 0;
}

void ossb_fs_source_free(struct ossb_fs_source *src)
{
        if (!src)
                return;
        if (src->ops && src->ops->free)
                src->ops->free(src->ctx);
        free(src->name);
        free(src);
}
