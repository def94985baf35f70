/* engine/cache-key.c - the step cache's key builder and the COPY/ADD source digest (see
 * cache.h): the unambiguous part encoding, and the walk that hashes selected sources by
 * content and metadata, never by time. */
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
#include "common/strbuf.h"
#include "engine/cache.h"

/* ---- encoding ------------------------------------------------------------------------------
 * part := u64 len(label) ‖ label ‖ kind ‖ value
 * value := (ABSENT) nothing | (BYTES) u64 len ‖ bytes | (VECTOR) u64 n ‖ n × (u64 len ‖ bytes)
 *        | (U64) 8 bytes
 * Every field's extent is known before it is read, so the stream is a prefix-free code of the
 * part list: different lists give different streams. */

enum part_kind {
        KIND_ABSENT = 0,
        KIND_BYTES = 1,
        KIND_VECTOR = 2,
        KIND_U64 = 3,
};

#define KEY_TAG "ossb-cache-key/v1"
#define DIGEST_TAG "ossb-source-digest/v1"

static void put_u64(struct ossb_cache_key *k, uint64_t v)
{
        unsigned char b[8];
        for (int i = 7; i >= 0; i--) {
                b[i] = (unsigned char) (v & 0xff);
                v >>= 8;
        }
        if (k->error == 0)
                k->error = ossb_sha256_update(k->h, b, sizeof(b));
}

static void put_bytes(struct ossb_cache_key *k, const void *data, size_t len)
{
        put_u64(k, (uint64_t) len);
        if (k->error == 0)
                k->error = ossb_sha256_update(k->h, data, len);
}

/* Label and kind; false when the key is unusable (not inited, or an earlier error). */
static bool part_begin(struct ossb_cache_key *k, const char *label, enum part_kind kind)
{
        if (!k->h) {
                if (k->error == 0)
                        k->error = -EINVAL;
                return false;
        }
        if (k->error < 0)
                return false;
        if (!label) {
                k->error = -EINVAL;
                return false;
        }
        unsigned char kb = (unsigned char) kind;
        put_bytes(k, label, strlen(label));
        if (k->error == 0)
                k->error = ossb_sha256_update(k->h, &kb, 1);
        return k->error == 0;
}

bool ossb_cache_key_is_valid(const char *s)
{
        size_t n = 0;
        if (!s)
                return false;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == OSSB_CACHE_HEX_LEN;
}

static int key_init_tagged(struct ossb_cache_key *k, const char *tag)
{
        *k = (struct ossb_cache_key) { .h = NULL, .error = 0 };
        int r = ossb_sha256_new(&k->h);
        if (r < 0) {
                k->h = NULL;
                return r;
        }
        r = ossb_cache_key_add_str(k, "format", tag);
        if (r < 0)
                ossb_cache_key_clear(k);
        return r;
}

int ossb_cache_key_init(struct ossb_cache_key *k, const char *parent_hex)
{
        if (parent_hex && !ossb_cache_key_is_valid(parent_hex)) {
                *k = (struct ossb_cache_key) { .h = NULL, .error = 0 };
                return -EINVAL;
        }
        int r = key_init_tagged(k, KEY_TAG);
        if (r < 0)
                return r;
        r = ossb_cache_key_add_str(k, "parent", parent_hex);
        if (r < 0)
                ossb_cache_key_clear(k);
        return r;
}

int ossb_cache_key_add(struct ossb_cache_key *k, const char *label, const void *data, size_t len)
{
        if (!data && len > 0) {
                if (k->error == 0)
                        k->error = -EINVAL;
                return k->error;
        }
        if (part_begin(k, label, KIND_BYTES))
                put_bytes(k, data, len);
        return k->error;
}

int ossb_cache_key_add_str(struct ossb_cache_key *k, const char *label, const char *s)
{
        if (!s) {
                (void) part_begin(k, label, KIND_ABSENT);
                return k->error;
        }
        return ossb_cache_key_add(k, label, s, strlen(s));
}

int ossb_cache_key_add_strv(struct ossb_cache_key *k, const char *label, char *const *v)
{
        if (!part_begin(k, label, v ? KIND_VECTOR : KIND_ABSENT) || !v)
                return k->error;
        size_t n = ossb_strv_length(v);
        put_u64(k, (uint64_t) n);
        for (size_t i = 0; i < n; i++)
                put_bytes(k, v[i], strlen(v[i]));
        return k->error;
}

int ossb_cache_key_add_u64(struct ossb_cache_key *k, const char *label, uint64_t v)
{
        if (part_begin(k, label, KIND_U64))
                put_u64(k, v);
        return k->error;
}

/* A vector of two byte strings (an xattr: name and value). */
static int key_add_pair(struct ossb_cache_key *k, const char *label, const void *a, size_t alen, const void *b,
                        size_t blen)
{
        if (part_begin(k, label, KIND_VECTOR)) {
                put_u64(k, 2);
                put_bytes(k, a, alen);
                put_bytes(k, b, blen);
        }
        return k->error;
}

int ossb_cache_key_final(struct ossb_cache_key *k, char out[OSSB_CACHE_HEX_LEN + 1])
{
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int r = k->error;
        if (r == 0 && !k->h)
                r = -EINVAL;
        if (r < 0) {
                ossb_cache_key_clear(k);
                return r;
        }
        ossb_sha256_final(k->h, digest);
        memcpy(out, digest + 7, OSSB_CACHE_HEX_LEN + 1);
        ossb_cache_key_clear(k);
        return 0;
}

void ossb_cache_key_clear(struct ossb_cache_key *k)
{
        ossb_sha256_free(k->h);
        k->h = NULL;
}

/* ---- source digests ---------------------------------------------------------------------- */

#define MAX_DEPTH 256
#define READ_BUF (128 * 1024)
#define MAX_XATTR_LIST (64 * 1024)

struct walk {
        struct ossb_cache_key k;
        ossb_cache_filter_fn filter;
        void *userdata;
        char *buf; /* READ_BUF bytes for file contents */
        struct ossb_error **err;
};

static int walk_error(struct walk *w, int r, const char *rel, const char *what)
{
        if (r == -ENOMEM)
                return ossb_error_set(w->err, r, "out of memory");
        return ossb_error_set(w->err, r, "source digest: cannot %s `%s`: %s", what, *rel ? rel : ".", strerror(-r));
}

static bool xattr_hashed(const char *name)
{
        return strncmp(name, "trusted.overlay.", 16) != 0 && strncmp(name, "user.overlay.", 13) != 0 &&
               !streq(name, "security.selinux");
}

/* Attribute access through an open fd, or (fd < 0) a path that is not followed. */
static ssize_t xa_list(int fd, const char *path, char *buf, size_t size)
{
        return fd >= 0 ? flistxattr(fd, buf, size) : llistxattr(path, buf, size);
}

static ssize_t xa_get(int fd, const char *path, const char *name, void *buf, size_t size)
{
        return fd >= 0 ? fgetxattr(fd, name, buf, size) : lgetxattr(path, name, buf, size);
}

static int cmp_strp(const void *a, const void *b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The attribute names (NUL-separated) in *ret; NULL/0 when there are none or the file system
 * has no attributes. */
static int xattr_names(int fd, const char *path, char **ret, size_t *ret_len)
{
        *ret = NULL;
        *ret_len = 0;
        for (int attempt = 0; attempt < 8; attempt++) {
                ssize_t len = xa_list(fd, path, NULL, 0);
                if (len < 0)
                        return (errno == ENOTSUP || errno == ENODATA) ? 0 : -errno;
                if (len == 0)
                        return 0;
                if (len > MAX_XATTR_LIST)
                        return -E2BIG;
                _cleanup_free_ char *buf = malloc((size_t) len);
                if (!buf)
                        return -ENOMEM;
                ssize_t got = xa_list(fd, path, buf, (size_t) len);
                if (got < 0 && errno == ERANGE)
                        continue; /* grew in between */
                if (got < 0)
                        return -errno;
                *ret = TAKE_PTR(buf);
                *ret_len = (size_t) got;
                return 0;
        }
        return -EAGAIN;
}

static int hash_xattr_value(struct walk *w, int fd, const char *path, const char *name)
{
        for (int attempt = 0; attempt < 8; attempt++) {
                ssize_t len = xa_get(fd, path, name, NULL, 0);
                if (len < 0)
                        return errno == ENODATA ? 0 : -errno; /* removed in between */
                _cleanup_free_ char *v = malloc(len > 0 ? (size_t) len : 1);
                if (!v)
                        return -ENOMEM;
                ssize_t got = xa_get(fd, path, name, v, (size_t) len);
                if (got < 0 && errno == ERANGE)
                        continue;
                if (got < 0)
                        return errno == ENODATA ? 0 : -errno;
                return key_add_pair(&w->k, "xattr", name, strlen(name), v, (size_t) got);
        }
        return -EAGAIN;
}

static int hash_xattrs(struct walk *w, int fd, const char *path)
{
        _cleanup_free_ char *names = NULL;
        _cleanup_free_ const char **sorted = NULL;
        size_t len = 0, n = 0;
        int r = xattr_names(fd, path, &names, &len);
        if (r < 0 || len == 0)
                return r;
        for (size_t i = 0; i < len; i++)
                n += names[i] == '\0';
        sorted = calloc(n + 1, sizeof(*sorted));
        if (!sorted)
                return -ENOMEM;
        n = 0;
        for (char *p = names; p < names + len; p += strlen(p) + 1)
                if (*p && xattr_hashed(p))
                        sorted[n++] = p;
        qsort(sorted, n, sizeof(*sorted), cmp_strp);
        for (size_t i = 0; i < n && r >= 0; i++)
                r = hash_xattr_value(w, fd, path, sorted[i]);
        return r;
}

/* Attributes of an entry we do not open (symlinks, devices, fifos, sockets): through the
 * directory fd's /proc path, the last component not followed.  Without /proc (a bare chroot)
 * these entries are hashed without their attributes rather than failing the build. */
static int hash_xattrs_at(struct walk *w, int dirfd, const char *name)
{
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/proc/self/fd/%d/%s", dirfd, name) < 0)
                return -ENOMEM;
        int r = hash_xattrs(w, -1, path);
        return r == -ENOENT ? 0 : r;
}

static void sha256_freep(struct ossb_sha256 **h)
{
        ossb_sha256_free(*h);
}

static int hash_content(struct walk *w, int fd)
{
        _cleanup_(sha256_freep) struct ossb_sha256 *h = NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int r = ossb_sha256_new(&h);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = read(fd, w->buf, READ_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                r = ossb_sha256_update(h, w->buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        ossb_sha256_final(h, digest);
        return ossb_cache_key_add_str(&w->k, "content", digest);
}

/* Open an entry whose lstat we have, checking it is still the same file. */
static int open_same(int dirfd, const char *name, int flags, const struct stat *st)
{
        struct stat now;
        int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &now) < 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino ||
            (now.st_mode & S_IFMT) != (st->st_mode & S_IFMT)) {
                close(fd);
                return -EAGAIN; /* replaced while we looked */
        }
        return fd;
}

static int hash_meta(struct walk *w, const char *rel, const struct stat *st)
{
        (void) ossb_cache_key_add_str(&w->k, "path", rel);
        (void) ossb_cache_key_add_u64(&w->k, "type", (uint64_t) (st->st_mode & S_IFMT));
        (void) ossb_cache_key_add_u64(&w->k, "mode", (uint64_t) (st->st_mode & 07777));
        (void) ossb_cache_key_add_u64(&w->k, "uid", (uint64_t) st->st_uid);
        return ossb_cache_key_add_u64(&w->k, "gid", (uint64_t) st->st_gid);
}

static int hash_node(struct walk *w, int dirfd, const char *name, const char *rel, const struct stat *st,
                     unsigned depth);

/* The sorted names of a directory (opened for reading). */
static int list_dir(int fd, char ***ret)
{
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        char **names = ossb_strv_new_empty();
        struct dirent *de;
        int r = names ? 0 : -ENOMEM;
        errno = 0;
        while (r >= 0 && (de = readdir(d))) {
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        r = ossb_strv_push(&names, de->d_name);
                errno = 0;
        }
        if (r >= 0 && errno != 0)
                r = -errno;
        closedir(d);
        if (r < 0) {
                ossb_strv_free(names);
                return r;
        }
        qsort(names, ossb_strv_length(names), sizeof(char *), cmp_strp);
        *ret = names;
        return 0;
}

static int hash_children(struct walk *w, int fd, const char *rel, unsigned depth)
{
        _cleanup_strv_free_ char **names = NULL;
        int r = list_dir(fd, &names);
        if (r < 0)
                return walk_error(w, r, rel, "read directory");
        for (size_t i = 0; names[i]; i++) {
                _cleanup_free_ char *crel = NULL;
                struct stat st;
                if (asprintf(&crel, "%s%s%s", rel, *rel ? "/" : "", names[i]) < 0)
                        return ossb_error_set(w->err, -ENOMEM, "out of memory");
                if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue; /* removed while we walk: as if it were not there */
                        return walk_error(w, -errno, crel, "stat");
                }
                int f = w->filter ? w->filter(crel, S_ISDIR(st.st_mode), w->userdata) : OSSB_CACHE_WALK_INCLUDE;
                if (f < 0)
                        return ossb_error_set(w->err, f, "source digest: filter failed on `%s`: %s", crel,
                                              strerror(-f));
                if (f == OSSB_CACHE_WALK_PRUNE || (f == OSSB_CACHE_WALK_SKIP && !S_ISDIR(st.st_mode)))
                        continue;
                if (f == OSSB_CACHE_WALK_SKIP) {
                        _cleanup_close_ int cfd = open_same(fd, names[i], O_RDONLY | O_DIRECTORY, &st);
                        if (cfd < 0)
                                return walk_error(w, cfd, crel, "open");
                        if (depth + 1 >= MAX_DEPTH)
                                return walk_error(w, -ELOOP, crel, "walk (too deep)");
                        r = hash_children(w, cfd, crel, depth + 1);
                } else
                        r = hash_node(w, fd, names[i], crel, &st, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int hash_node(struct walk *w, int dirfd, const char *name, const char *rel, const struct stat *st,
                     unsigned depth)
{
        int r;
        if (depth >= MAX_DEPTH)
                return walk_error(w, -ELOOP, rel, "walk (too deep)");
        r = hash_meta(w, rel, st);
        if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) {
                int flags = S_ISDIR(st->st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY;
                _cleanup_close_ int fd = open_same(dirfd, name, flags, st);
                if (fd < 0)
                        return walk_error(w, fd, rel, "open");
                r = hash_xattrs(w, fd, NULL);
                if (r < 0)
                        return walk_error(w, r, rel, "read extended attributes of");
                r = S_ISREG(st->st_mode) ? hash_content(w, fd) : hash_children(w, fd, rel, depth);
                if (r < 0 && S_ISREG(st->st_mode))
                        return walk_error(w, r, rel, "read");
                return r;
        }
        if (S_ISLNK(st->st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlinkat(dirfd, name, target, sizeof(target));
                if (n < 0)
                        return walk_error(w, -errno, rel, "read link");
                r = ossb_cache_key_add(&w->k, "link", target, (size_t) n);
        } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
                (void) ossb_cache_key_add_u64(&w->k, "major", major(st->st_rdev));
                r = ossb_cache_key_add_u64(&w->k, "minor", minor(st->st_rdev));
        }
        if (r >= 0)
                r = hash_xattrs_at(w, dirfd, name);
        return r < 0 ? walk_error(w, r, rel, "read extended attributes of") : 0;
}

/* "/x/../y/./" -> "y"; the root -> "".  Nothing can climb above the root. */
static int clean_rel(const char *p, char **ret)
{
        _cleanup_free_ char *abs = NULL;
        if (asprintf(&abs, "/%s", p) < 0)
                return -ENOMEM;
        _cleanup_free_ char *clean = ossb_path_clean(abs);
        if (!clean)
                return -ENOMEM;
        char *r = strdup(clean + 1);
        if (!r)
                return -ENOMEM;
        *ret = r;
        return 0;
}

static int hash_selected(struct walk *w, int rootfd, const char *rel)
{
        const char *slash = strrchr(rel, '/');
        _cleanup_free_ char *parent = slash ? strndup(rel, (size_t) (slash - rel)) : strdup(".");
        const char *name = *rel ? (slash ? slash + 1 : rel) : ".";
        struct stat st;
        if (!parent)
                return ossb_error_set(w->err, -ENOMEM, "out of memory");
        _cleanup_close_ int pfd = ossb_open_in_root(rootfd, parent, O_PATH | O_DIRECTORY, 0);
        if (pfd < 0 || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                int r = pfd < 0 ? pfd : -errno;
                if (r == -ENOENT || r == -ENOTDIR)
                        return ossb_error_set(w->err, -ENOENT, "source digest: `%s` not found", *rel ? rel : ".");
                return walk_error(w, r, rel, "stat");
        }
        return hash_node(w, pfd, name, rel, &st, 0);
}

int ossb_cache_digest_paths_at(int rootfd, char *const *rel_paths, ossb_cache_filter_fn filter, void *userdata,
                               char out_hex[OSSB_CACHE_HEX_LEN + 1], struct ossb_error **err)
{
        _cleanup_strv_free_ char **sel = ossb_strv_new_empty();
        _cleanup_free_ char *buf = malloc(READ_BUF);
        struct walk w = { .filter = filter, .userdata = userdata, .err = err };
        int r;

        if (!sel || !buf)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; rel_paths && rel_paths[i]; i++) {
                char *c = NULL;
                if (clean_rel(rel_paths[i], &c) < 0 || ossb_strv_consume(&sel, c) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        qsort(sel, ossb_strv_length(sel), sizeof(char *), cmp_strp);

        r = key_init_tagged(&w.k, DIGEST_TAG);
        if (r < 0)
                return ossb_error_set(err, r, "out of memory");
        w.buf = buf;
        for (size_t i = 0; sel[i] && r >= 0; i++) {
                if (i > 0 && streq(sel[i], sel[i - 1]))
                        continue;
                (void) ossb_cache_key_add_str(&w.k, "select", sel[i]);
                r = hash_selected(&w, rootfd, sel[i]);
        }
        if (r < 0) {
                ossb_cache_key_clear(&w.k);
                return r;
        }
        r = ossb_cache_key_final(&w.k, out_hex);
        if (r < 0)
                return ossb_error_set(err, r, "source digest: %s", strerror(-r));
        return 0;
}

int ossb_cache_digest_paths(const char *root, char *const *rel_paths, char out_hex[OSSB_CACHE_HEX_LEN + 1],
                            struct ossb_error **err)
{
        _cleanup_close_ int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "source digest: cannot open `%s`: %m", root);
        return ossb_cache_digest_paths_at(fd, rel_paths, NULL, NULL, out_hex, err);
}
