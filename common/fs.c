/* common/fs.c - see fs.h. */
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
#include <unistd.h>

#ifdef HAVE_LINUX_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"

static bool openat2_disabled;

void ossb_fs_disable_openat2(bool disable)
{
        openat2_disabled = disable;
}

char *ossb_tmp_name(const char *path)
{
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        unsigned char rnd[6];
        char suffix[7];
        char *r = NULL;

        if (getentropy(rnd, sizeof(rnd)) < 0)
                return NULL;
        for (size_t i = 0; i < 6; i++)
                suffix[i] = chars[rnd[i] % (sizeof(chars) - 1)];
        suffix[6] = '\0';
        if (asprintf(&r, "%s.tmp-%s", path, suffix) < 0)
                return NULL;
        return r;
}

int ossb_fsync_dir(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

static int dir_of(const char *path, char **ret)
{
        const char *slash = strrchr(path, '/');
        char *d;
        if (!slash)
                d = strdup(".");
        else if (slash == path)
                d = strdup("/");
        else
                d = strndup(path, (size_t) (slash - path));
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int ossb_write_all(int fd, const void *data, size_t len)
{
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int ossb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, struct ossb_error **err)
{
        _cleanup_free_ char *tmp = ossb_tmp_name(path);
        _cleanup_free_ char *dir = NULL;
        int r;

        if (!tmp)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", tmp);
        r = ossb_write_all(fd, data, len);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return ossb_error_set(err, r, "cannot write `%s`: %s", tmp, strerror(-r));
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                unlink(tmp);
                return ossb_error_set(err, r, "cannot rename `%s` to `%s`: %s", tmp, path, strerror(-r));
        }
        if (dir_of(path, &dir) >= 0)
                (void) ossb_fsync_dir(dir);
        return 0;
}

int ossb_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        char buf[65536];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        ossb_strbuf_free(&sb);
                        return r;
                }
                if (n == 0)
                        break;
                if (sb.len + (size_t) n > max) {
                        ossb_strbuf_free(&sb);
                        return -EFBIG;
                }
                if (ossb_strbuf_append_n(&sb, buf, (size_t) n) < 0) {
                        ossb_strbuf_free(&sb);
                        return -ENOMEM;
                }
        }
        size_t len = sb.len;
        char *s = ossb_strbuf_steal(&sb);
        if (!s)
                return -ENOMEM;
        *ret = s;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int ossb_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct ossb_error **err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", path);
        int r = ossb_read_fd(fd, max, ret, ret_len);
        if (r == -EFBIG)
                return ossb_error_set(err, r, "`%s` is larger than %zu bytes", path, max);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read `%s`: %s", path, strerror(-r));
        return 0;
}

int ossb_mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        size_t len = strlen(p);
        for (size_t i = 1; i <= len; i++) {
                if (p[i] != '/' && p[i] != '\0')
                        continue;
                char saved = p[i];
                p[i] = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                p[i] = saved;
        }
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int ossb_rm_rf_at(int parent, const char *name)
{
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;

        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                /* an unreadable directory: make it readable first */
                if (errno == EACCES && fchmodat(parent, name, 0700, 0) == 0)
                        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
        }
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int q = ossb_rm_rf_at(dirfd(d), de->d_name);
                if (q < 0 && r == 0)
                        r = q;
        }
        closedir(d);
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int ossb_rm_rf(const char *path)
{
        return ossb_rm_rf_at(AT_FDCWD, path);
}

int ossb_copy_fd(int in, int out)
{
        bool use_cfr = true;
        char buf[131072];
        for (;;) {
                if (use_cfr) {
                        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
                        if (n > 0)
                                continue;
                        if (n == 0)
                                return 0;
                        if (errno == EINTR)
                                continue;
                        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                            errno == EBADF) {
                                use_cfr = false;
                                continue;
                        }
                        return -errno;
                }
                ssize_t n = read(in, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return 0;
                int r = ossb_write_all(out, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

char *ossb_path_clean(const char *path)
{
        bool rooted = path[0] == '/';
        size_t n = strlen(path);
        char *out = malloc(n + 2);
        if (!out)
                return NULL;
        size_t w = 0, r = 0, dotdot = 0;
        if (rooted) {
                out[w++] = '/';
                r = 1;
                dotdot = 1;
        }
        while (r < n) {
                if (path[r] == '/') {
                        r++;
                } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
                        r++;
                } else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
                        r += 2;
                        if (w > dotdot) {
                                w--;
                                while (w > dotdot && out[w] != '/')
                                        w--;
                        } else if (!rooted) {
                                if (w > 0)
                                        out[w++] = '/';
                                out[w++] = '.';
                                out[w++] = '.';
                                dotdot = w;
                        }
                } else {
                        if ((rooted && w != 1) || (!rooted && w != 0))
                                out[w++] = '/';
                        for (; r < n && path[r] != '/'; r++)
                                out[w++] = path[r];
                }
        }
        if (w == 0)
                out[w++] = '.';
        out[w] = '\0';
        return out;
}

char *ossb_path_join(const char *a, const char *b)
{
        char *r = NULL;
        while (*b == '/')
                b++;
        size_t la = strlen(a);
        bool slash = la > 0 && a[la - 1] == '/';
        if (asprintf(&r, "%s%s%s", a, (slash || la == 0 || !*b) ? "" : "/", b) < 0)
                return NULL;
        return r;
}

#ifdef HAVE_LINUX_OPENAT2_H
static int open_in_root_openat2(int rootfd, const char *path, int flags, mode_t mode)
{
        struct open_how how = {
                .flags = (unsigned long long) (flags | O_CLOEXEC),
                .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int) syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}
#endif

/* Userspace fallback: walk components with O_PATH|O_NOFOLLOW, expanding symlinks against the
 * root ourselves, keeping a stack of directory fds so that ".." never climbs above root. */
#define MAX_SYMLINKS 40

static int open_in_root_fallback(int rootfd, const char *path, int flags, mode_t mode)
{
        struct ossb_strbuf todo = OSSB_STRBUF_INIT;
        int stack[PATH_MAX / 2];
        size_t depth = 0;
        int links = 0, r;

        if (ossb_strbuf_append(&todo, path) < 0)
                return -ENOMEM;
        stack[0] = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (stack[0] < 0) {
                ossb_strbuf_free(&todo);
                return -errno;
        }

        size_t pos = 0;
        for (;;) {
                while (pos < todo.len && todo.buf[pos] == '/')
                        pos++;
                if (pos >= todo.len) {
                        /* path names the current directory */
                        r = openat(stack[depth], ".", (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
                        r = r < 0 ? -errno : r;
                        goto out;
                }
                size_t end = pos;
                while (end < todo.len && todo.buf[end] != '/')
                        end++;
                _cleanup_free_ char *comp = strndup(todo.buf + pos, end - pos);
                if (!comp) {
                        r = -ENOMEM;
                        goto out;
                }
                bool last = true;
                for (size_t k = end; k < todo.len; k++)
                        if (todo.buf[k] != '/') {
                                last = false;
                                break;
                        }
                pos = end;

                if (streq(comp, ".")) {
                        if (last) {
                                pos = todo.len;
                        }
                        continue;
                }
                if (streq(comp, "..")) {
                        if (depth > 0)
                                close(stack[depth--]);
                        continue;
                }

                struct stat st;
                if (fstatat(stack[depth], comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT && last && (flags & O_CREAT)) {
                                r = openat(stack[depth], comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
                                r = r < 0 ? -errno : r;
                                goto out;
                        }
                        r = -errno;
                        goto out;
                }
                if (S_ISLNK(st.st_mode) && !(last && (flags & O_NOFOLLOW))) {
                        char target[PATH_MAX];
                        ssize_t n = readlinkat(stack[depth], comp, target, sizeof(target) - 1);
                        if (n < 0) {
                                r = -errno;
                                goto out;
                        }
                        target[n] = '\0';
                        if (++links > MAX_SYMLINKS) {
                                r = -ELOOP;
                                goto out;
                        }
                        /* replace the consumed part with the link target */
                        struct ossb_strbuf nt = OSSB_STRBUF_INIT;
                        if (ossb_strbuf_append(&nt, target) < 0 || ossb_strbuf_append_c(&nt, '/') < 0 ||
                            ossb_strbuf_append(&nt, todo.buf + pos) < 0) {
                                ossb_strbuf_free(&nt);
                                r = -ENOMEM;
                                goto out;
                        }
                        ossb_strbuf_free(&todo);
                        todo = nt;
                        pos = 0;
                        if (target[0] == '/')
                                while (depth > 0)
                                        close(stack[depth--]);
                        continue;
                }
                if (last) {
                        r = openat(stack[depth], comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
                        r = r < 0 ? -errno : r;
                        goto out;
                }
                if (!S_ISDIR(st.st_mode)) {
                        r = -ENOTDIR;
                        goto out;
                }
                if (depth + 1 >= ELEMENTSOF(stack)) {
                        r = -ENAMETOOLONG;
                        goto out;
                }
                int nfd = openat(stack[depth], comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0) {
                        r = -errno;
                        goto out;
                }
                stack[++depth] = nfd;
        }
out:
        for (size_t i = 0; i <= depth; i++)
                close(stack[i]);
        ossb_strbuf_free(&todo);
        return r;
}

int ossb_open_in_root(int rootfd, const char *path, int flags, mode_t mode)
{
#ifdef HAVE_LINUX_OPENAT2_H
        if (!openat2_disabled) {
                int fd = open_in_root_openat2(rootfd, path, flags, mode);
                if (fd != -ENOSYS && fd != -EPERM)
                        return fd;
        }
#endif
        return open_in_root_fallback(rootfd, path, flags, mode);
}
