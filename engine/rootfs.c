/* engine/rootfs.c - see rootfs.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/strbuf.h"
#include "engine/rootfs.h"

#define MAX_LINK_DEPTH 40
#define MAX_XATTRS 64
#define MAX_XATTR_LIST 65536

int ossb_tree_open(const char *path, struct ossb_tree *ret, struct ossb_error **err)
{
        char *abs = realpath(path, NULL);
        if (!abs)
                return ossb_error_set(err, -errno, "cannot resolve `%s`: %m", path);
        int fd = open(abs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                free(abs);
                return ossb_error_set(err, r, "cannot open directory `%s`: %s", path, strerror(-r));
        }
        if (streq(abs, "/"))
                abs[0] = '\0'; /* so that abs + "/" + rel stays well-formed */
        ret->path = abs;
        ret->fd = fd;
        return 0;
}

void ossb_tree_close(struct ossb_tree *t)
{
        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
        free(t->path);
        t->path = NULL;
}

char *ossb_tree_abs(const struct ossb_tree *t, const char *rel)
{
        char *r = NULL;
        if (asprintf(&r, "%s%s%s", t->path, *rel ? "/" : "", rel) < 0)
                return NULL;
        if (!*t->path && !*rel) {
                free(r);
                return strdup("/");
        }
        return r;
}

/* "/"-prefixed clean, then the leading "/" dropped: "" for the root, no ".." left. */
static char *clean_rel(const char *path)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "/%s", path) < 0)
                return NULL;
        char *c = ossb_path_clean(p);
        if (!c)
                return NULL;
        memmove(c, c + 1, strlen(c)); /* drop the leading '/' */
        return c;
}

static int resolve(const struct ossb_tree *t, const char *path, bool follow_last, int depth, char **ret,
                   struct ossb_error **err)
{
        _cleanup_free_ char *clean = clean_rel(path);
        struct ossb_strbuf cur = OSSB_STRBUF_INIT;
        if (!clean)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (depth > MAX_LINK_DEPTH)
                return ossb_error_set(err, -ELOOP, "too many levels of symbolic links resolving `%s`", path);

        const char *p = clean;
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                bool last = !slash;
                size_t mark = cur.len;
                if ((cur.len && ossb_strbuf_append_c(&cur, '/') < 0) || ossb_strbuf_append_n(&cur, p, len) < 0)
                        goto oom;
                _cleanup_free_ char *abs = ossb_tree_abs(t, cur.buf);
                if (!abs)
                        goto oom;
                struct stat st;
                if (lstat(abs, &st) < 0) {
                        if (errno != ENOENT && errno != ENOTDIR) {
                                int r = -errno;
                                ossb_strbuf_free(&cur);
                                return ossb_error_set(err, r, "cannot stat `%s`: %s", abs, strerror(-r));
                        }
                        /* the rest does not exist: append it lexically */
                        if (!last && (ossb_strbuf_append_c(&cur, '/') < 0 || ossb_strbuf_append(&cur, slash + 1) < 0))
                                goto oom;
                        break;
                }
                if (S_ISLNK(st.st_mode) && (!last || follow_last)) {
                        char target[PATH_MAX];
                        ssize_t n = readlink(abs, target, sizeof(target) - 1);
                        if (n < 0) {
                                int r = -errno;
                                ossb_strbuf_free(&cur);
                                return ossb_error_set(err, r, "cannot read link `%s`: %s", abs, strerror(-r));
                        }
                        target[n] = '\0';
                        cur.len = mark;
                        cur.buf[mark] = '\0';
                        _cleanup_free_ char *next = NULL;
                        if (asprintf(&next, "%s/%s/%s", target[0] == '/' ? "" : cur.buf, target,
                                     last ? "" : slash + 1) < 0)
                                goto oom;
                        ossb_strbuf_free(&cur);
                        return resolve(t, next, follow_last, depth + 1, ret, err);
                }
                if (last)
                        break;
                p = slash + 1;
        }
        char *r = ossb_strbuf_steal(&cur);
        if (!r)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret = r;
        return 0;
oom:
        ossb_strbuf_free(&cur);
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

int ossb_tree_resolve(const struct ossb_tree *t, const char *path, bool follow_last, char **ret,
                      struct ossb_error **err)
{
        return resolve(t, path, follow_last, 0, ret, err);
}

int ossb_changes_add(struct ossb_changes *c, const char *rel)
{
        if (!c || !*rel)
                return 0;
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 64;
                char **n = realloc(c->paths, cap * sizeof(char *));
                if (!n)
                        return -ENOMEM;
                c->paths = n;
                c->cap = cap;
        }
        c->paths[c->n] = strdup(rel);
        if (!c->paths[c->n])
                return -ENOMEM;
        c->n++;
        return 0;
}

void ossb_changes_clear(struct ossb_changes *c)
{
        for (size_t i = 0; i < c->n; i++)
                free(c->paths[i]);
        free(c->paths);
        c->paths = NULL;
        c->n = c->cap = 0;
}

static int set_times(const char *abs, int64_t mtime, long nsec)
{
        struct timespec ts[2] = { { .tv_sec = mtime, .tv_nsec = nsec }, { .tv_sec = mtime, .tv_nsec = nsec } };
        return utimensat(AT_FDCWD, abs, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

int ossb_tree_mkdir_p(const struct ossb_tree *t, const char *rel, uid_t uid, gid_t gid, int64_t mtime,
                      struct ossb_changes *c, struct ossb_error **err)
{
        _cleanup_free_ char *canon = NULL;
        int r = ossb_tree_resolve(t, rel, true, &canon, err);
        if (r < 0)
                return r;
        for (char *p = canon; *p;) {
                char *slash = strchr(p, '/');
                if (slash)
                        *slash = '\0';
                _cleanup_free_ char *abs = ossb_tree_abs(t, canon);
                if (!abs)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                struct stat st;
                if (lstat(abs, &st) == 0) {
                        if (!S_ISDIR(st.st_mode))
                                return ossb_error_set(err, -ENOTDIR, "cannot create directory `/%s`: a file is in the way",
                                                      canon);
                } else if (mkdir(abs, 0755) < 0) {
                        return ossb_error_set(err, -errno, "cannot create directory `/%s`: %m", canon);
                } else {
                        if (chmod(abs, 0755) < 0 || (lchown(abs, uid, gid) < 0 && errno != EPERM && errno != EINVAL))
                                return ossb_error_set(err, -errno, "cannot set owner/mode of `/%s`: %m", canon);
                        if (mtime >= 0)
                                (void) set_times(abs, mtime, 0);
                        if (ossb_changes_add(c, canon) < 0)
                                return ossb_error_set(err, -ENOMEM, "out of memory");
                }
                if (!slash)
                        break;
                *slash = '/';
                p = slash + 1;
        }
        return 0;
}

/* --- layer from changes ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Add every ancestor directory of each path, sort (tar order: byte order of the path with
 * '/' sorting first so that a directory precedes its contents), and drop duplicates. */
static int changes_normalize(struct ossb_changes *c)
{
        size_t n0 = c->n;
        for (size_t i = 0; i < n0; i++) {
                _cleanup_free_ char *p = strdup(c->paths[i]);
                if (!p)
                        return -ENOMEM;
                for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
                        *s = '\0';
                        if (ossb_changes_add(c, p) < 0)
                                return -ENOMEM;
                }
        }
        /* sorting with '/' mapped below every other byte gives parent-before-child order */
        for (size_t i = 0; i < c->n; i++)
                for (char *s = c->paths[i]; *s; s++)
                        if (*s == '/')
                                *s = '\x01';
        if (c->n) /* paths is NULL when nothing changed: qsort(NULL, 0) is undefined */
                qsort(c->paths, c->n, sizeof(char *), cmp_str);
        size_t w = 0;
        for (size_t i = 0; i < c->n; i++) {
                if (w > 0 && strcmp(c->paths[w - 1], c->paths[i]) == 0) {
                        free(c->paths[i]);
                        continue;
                }
                c->paths[w++] = c->paths[i];
        }
        c->n = w;
        for (size_t i = 0; i < c->n; i++)
                for (char *s = c->paths[i]; *s; s++)
                        if (*s == '\x01')
                                *s = '/';
        return 0;
}

struct link_seen {
        dev_t dev;
        ino_t ino;
        char *path;
};

struct xattr_set {
        struct ossb_xattr x[MAX_XATTRS];
        size_t n;
        char *names;
        char *values[MAX_XATTRS];
};

static void xattr_set_free(struct xattr_set *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->values[i]);
        free(s->names);
        s->n = 0;
        s->names = NULL;
}

static int read_xattrs(const char *abs, struct xattr_set *s)
{
        ssize_t len = llistxattr(abs, NULL, 0);
        if (len <= 0)
                return (len < 0 && errno != ENOTSUP && errno != ENODATA) ? -errno : 0;
        if (len > MAX_XATTR_LIST)
                return -E2BIG;
        s->names = malloc((size_t) len);
        if (!s->names)
                return -ENOMEM;
        len = llistxattr(abs, s->names, (size_t) len);
        if (len < 0)
                return -errno;
        for (char *name = s->names; name < s->names + len && s->n < MAX_XATTRS; name += strlen(name) + 1) {
                /* overlay-private attributes never go into a layer */
                if (strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0)
                        continue;
                ssize_t vl = lgetxattr(abs, name, NULL, 0);
                if (vl < 0)
                        continue;
                char *v = malloc((size_t) vl + 1);
                if (!v)
                        return -ENOMEM;
                vl = lgetxattr(abs, name, v, (size_t) vl);
                if (vl < 0) {
                        free(v);
                        continue;
                }
                s->values[s->n] = v;
                s->x[s->n] = (struct ossb_xattr) { .name = name, .value = v, .size = (size_t) vl };
                s->n++;
        }
        return 0;
}

static int add_entry(const struct ossb_tree *t, const char *rel, struct ossb_layer_writer *w,
                     struct link_seen **seen, size_t *n_seen, struct ossb_error **err)
{
        _cleanup_free_ char *abs = ossb_tree_abs(t, rel);
        struct stat st;
        char target[PATH_MAX];
        struct xattr_set xs = { .n = 0 };
        int r;

        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (lstat(abs, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat `%s`: %m", abs);

        struct ossb_layer_entry e = {
                .path = rel,
                .mode = st.st_mode & 07777,
                .uid = st.st_uid,
                .gid = st.st_gid,
                .mtime_sec = st.st_mtim.tv_sec,
                .mtime_nsec = st.st_mtim.tv_nsec,
        };
        _cleanup_close_ int fd = -1;
        if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
                for (size_t i = 0; i < *n_seen; i++)
                        if ((*seen)[i].dev == st.st_dev && (*seen)[i].ino == st.st_ino) {
                                e.type = OSSB_ENTRY_HARDLINK;
                                e.linkname = (*seen)[i].path;
                                return ossb_layer_writer_add(w, &e, -1, err);
                        }
                struct link_seen *ns = realloc(*seen, (*n_seen + 1) * sizeof(**seen));
                if (!ns)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                *seen = ns;
                ns[*n_seen] = (struct link_seen) { .dev = st.st_dev, .ino = st.st_ino, .path = strdup(rel) };
                if (!ns[*n_seen].path)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                (*n_seen)++;
        }
        if (S_ISREG(st.st_mode)) {
                e.type = OSSB_ENTRY_FILE;
                e.size = st.st_size;
                fd = open(abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return ossb_error_set(err, -errno, "cannot open `%s`: %m", abs);
        } else if (S_ISDIR(st.st_mode)) {
                e.type = OSSB_ENTRY_DIR;
        } else if (S_ISLNK(st.st_mode)) {
                ssize_t n = readlink(abs, target, sizeof(target) - 1);
                if (n < 0)
                        return ossb_error_set(err, -errno, "cannot read link `%s`: %m", abs);
                target[n] = '\0';
                e.type = OSSB_ENTRY_SYMLINK;
                e.linkname = target;
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
                e.type = S_ISCHR(st.st_mode) ? OSSB_ENTRY_CHAR : OSSB_ENTRY_BLOCK;
                e.rdev = st.st_rdev;
        } else if (S_ISFIFO(st.st_mode)) {
                e.type = OSSB_ENTRY_FIFO;
        } else {
                return ossb_error_set(err, -EINVAL, "`%s`: sockets cannot be stored in a layer", abs);
        }
        r = read_xattrs(abs, &xs);
        if (r < 0) {
                xattr_set_free(&xs);
                return ossb_error_set(err, r, "cannot read extended attributes of `%s`: %s", abs, strerror(-r));
        }
        e.xattrs = xs.x;
        e.n_xattrs = xs.n;
        r = ossb_layer_writer_add(w, &e, fd, err);
        xattr_set_free(&xs);
        return r;
}

int ossb_tree_write_layer(const struct ossb_tree *t, struct ossb_changes *c, struct ossb_store *store,
                          const struct ossb_layer_opts *opts, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
                          int64_t *ret_size, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err)
{
        struct ossb_layer_writer *w = NULL;
        struct link_seen *seen = NULL;
        size_t n_seen = 0;
        int r;

        if (changes_normalize(c) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_layer_writer_new(store, opts, &w, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n && r >= 0; i++) {
                if (ossb_interrupted())
                        r = ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted by signal %d", ossb_interrupted());
                else
                        r = add_entry(t, c->paths[i], w, &seen, &n_seen, err);
        }
        if (r >= 0)
                r = ossb_layer_writer_finish(w, ret_digest, ret_size, ret_diff_id, err);
        ossb_layer_writer_free(w);
        for (size_t i = 0; i < n_seen; i++)
                free(seen[i].path);
        free(seen);
        return r;
}

/* --- clone ------------------------------------------------------------------------------- */

int ossb_copy_xattrs(const char *src, const char *dst)
{
        struct xattr_set xs = { .n = 0 };
        int r = read_xattrs(src, &xs);
        for (size_t i = 0; r >= 0 && i < xs.n; i++)
                if (lsetxattr(dst, xs.x[i].name, xs.x[i].value, xs.x[i].size, 0) < 0 && errno != ENOTSUP &&
                    errno != EPERM)
                        r = -errno;
        xattr_set_free(&xs);
        return r;
}

static int clone_meta(const char *dst, const struct stat *st)
{
        if (lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM && errno != EINVAL)
                return -errno;
        if (!S_ISLNK(st->st_mode) && chmod(dst, st->st_mode & 07777) < 0)
                return -errno;
        return set_times(dst, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
}

static int clone_file(const char *src, const char *dst)
{
        _cleanup_close_ int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return -errno;
        _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        return ossb_copy_fd(in, out);
}

static int clone_rec(const char *src, const char *dst, struct link_seen **seen, size_t *n_seen)
{
        struct stat st;
        int r = 0;
        if (lstat(src, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
                for (size_t i = 0; i < *n_seen; i++)
                        if ((*seen)[i].dev == st.st_dev && (*seen)[i].ino == st.st_ino)
                                return link((*seen)[i].path, dst) < 0 ? -errno : 0;
                struct link_seen *ns = realloc(*seen, (*n_seen + 1) * sizeof(**seen));
                if (!ns)
                        return -ENOMEM;
                *seen = ns;
                ns[*n_seen] = (struct link_seen) { .dev = st.st_dev, .ino = st.st_ino, .path = strdup(dst) };
                if (!ns[(*n_seen)++].path)
                        return -ENOMEM;
        }
        if (S_ISDIR(st.st_mode)) {
                if (mkdir(dst, 0700) < 0 && errno != EEXIST)
                        return -errno;
                DIR *d = opendir(src);
                if (!d)
                        return -errno;
                struct dirent *de;
                while (r >= 0 && (de = readdir(d))) {
                        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                                continue;
                        _cleanup_free_ char *s = ossb_path_join(src, de->d_name);
                        _cleanup_free_ char *t = ossb_path_join(dst, de->d_name);
                        r = (s && t) ? clone_rec(s, t, seen, n_seen) : -ENOMEM;
                }
                closedir(d);
        } else if (S_ISREG(st.st_mode)) {
                r = clone_file(src, dst);
        } else if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(src, target, sizeof(target) - 1);
                if (n < 0)
                        return -errno;
                target[n] = '\0';
                r = symlink(target, dst) < 0 ? -errno : 0;
        } else {
                r = mknod(dst, st.st_mode, st.st_rdev) < 0 ? -errno : 0;
        }
        if (r >= 0)
                r = ossb_copy_xattrs(src, dst);
        if (r >= 0)
                r = clone_meta(dst, &st);
        return r;
}

int ossb_tree_clone(const char *src, const char *dst, struct ossb_error **err)
{
        struct link_seen *seen = NULL;
        size_t n_seen = 0;
        int r = clone_rec(src, dst, &seen, &n_seen);
        for (size_t i = 0; i < n_seen; i++)
                free(seen[i].path);
        free(seen);
        if (r < 0)
                return ossb_error_set(err, r, "cannot copy `%s` to `%s`: %s", src, dst, strerror(-r));
        return 0;
}
