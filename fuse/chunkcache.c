/* fuse/chunkcache.c - the on-disk chunk cache of lazily pulled layers (see chunkcache.h):
 * content-addressed files under CACHE_DIR/chunks/sha256, atomic writes, LRU prune. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sha256.h"
#include "fuse/chunkcache.h"

#define TMP_MAX_AGE_S 3600
#define VERIFY_BUF (256 * 1024)

struct ossb_chunkcache {
        char *path;
        int dirfd;
};

static char *chunks_dir(const char *cache_dir)
{
        return ossb_path_join(cache_dir, "chunks/sha256");
}

int ossb_chunkcache_open(const char *cache_dir, struct ossb_chunkcache **ret, struct ossb_error **err)
{
        _cleanup_free_ char *path = chunks_dir(cache_dir);
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int k = ossb_mkdir_p(path, 0700);
        if (k < 0)
                return ossb_error_set(err, k, "cannot create the chunk cache `%s`: %s", path, strerror(-k));
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open the chunk cache `%s`: %m", path);
        struct ossb_chunkcache *cc = calloc(1, sizeof(*cc));
        if (!cc) {
                close(fd);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        cc->path = TAKE_PTR(path);
        cc->dirfd = fd;
        *ret = cc;
        return 0;
}

void ossb_chunkcache_free(struct ossb_chunkcache *cc)
{
        if (!cc)
                return;
        if (cc->dirfd >= 0)
                close(cc->dirfd);
        free(cc->path);
        free(cc);
}

const char *ossb_chunkcache_path(const struct ossb_chunkcache *cc)
{
        return cc->path;
}

/* The file name of a chunk: its hex digest. */
static const char *chunk_name(const char *digest)
{
        return digest && ossb_digest_is_valid(digest) ? digest + 7 : NULL;
}

int ossb_chunkcache_open_chunk(struct ossb_chunkcache *cc, const char *digest, int64_t size)
{
        const char *name = chunk_name(digest);
        if (!name)
                return -EINVAL;
        int fd = openat(cc->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ELOOP ? -EBADMSG : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int k = -errno;
                close(fd);
                return k;
        }
        if (!S_ISREG(st.st_mode) || (size >= 0 && st.st_size != size)) {
                close(fd);
                log_debug("chunk cache: %s has %" PRId64 " bytes, %" PRId64 " expected: removed", name,
                          (int64_t) st.st_size, size);
                (void) unlinkat(cc->dirfd, name, 0);
                return -EBADMSG;
        }
        return fd;
}

bool ossb_chunkcache_has(struct ossb_chunkcache *cc, const char *digest, int64_t size)
{
        const char *name = chunk_name(digest);
        struct stat st;
        if (!name || fstatat(cc->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return false;
        return size < 0 || st.st_size == size;
}

ssize_t ossb_chunkcache_pread(struct ossb_chunkcache *cc, const char *digest, int64_t size, void *buf, size_t len,
                              int64_t off)
{
        _cleanup_close_ int fd = ossb_chunkcache_open_chunk(cc, digest, size);
        if (fd < 0)
                return fd;
        size_t done = 0;
        while (done < len) {
                ssize_t n = pread(fd, (char *) buf + done, len - done, (off_t) (off + (int64_t) done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

void ossb_chunkcache_touch(struct ossb_chunkcache *cc, const char *digest)
{
        const char *name = chunk_name(digest);
        if (name)
                (void) utimensat(cc->dirfd, name, NULL, AT_SYMLINK_NOFOLLOW);
}

static int tmp_name(const char *name, char *out, size_t size)
{
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                r = (uint64_t) ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t) getpid();
        }
        int n = snprintf(out, size, "tmp-%s.%016" PRIx64, name, r);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

static int write_tmp(struct ossb_chunkcache *cc, const char *tmp, const void *data, size_t len)
{
        _cleanup_close_ int fd = openat(cc->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        int k = ossb_write_all(fd, data, len);
        if (k >= 0 && fchmod(fd, 0400) < 0)
                k = -errno;
        return k;
}

int ossb_chunkcache_put(struct ossb_chunkcache *cc, const char *digest, const void *data, size_t len, bool verify,
                        struct ossb_error **err)
{
        const char *name = chunk_name(digest);
        if (!name)
                return ossb_error_set(err, -EINVAL, "chunk cache: `%s` is not a sha256 digest", digest ? digest : "");
        if (verify) {
                char got[OSSB_DIGEST_STR_LEN + 1];
                if (ossb_sha256_digest(data, len, got) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (!streq(got, digest))
                        return ossb_error_set(err, -EBADMSG, "chunk cache: the bytes of chunk %s hash to %s", digest, got);
        }
        if (ossb_chunkcache_has(cc, digest, (int64_t) len))
                return 0;
        char tmp[128];
        int k = tmp_name(name, tmp, sizeof(tmp));
        if (k >= 0)
                k = write_tmp(cc, tmp, data, len);
        if (k >= 0 && renameat(cc->dirfd, tmp, cc->dirfd, name) < 0)
                k = -errno;
        if (k < 0) {
                (void) unlinkat(cc->dirfd, tmp, 0);
                return ossb_error_set(err, k, "cannot store chunk %s in `%s`: %s", digest, cc->path, strerror(-k));
        }
        return 0;
}

static int hash_fd(int fd, char out[OSSB_DIGEST_STR_LEN + 1])
{
        _cleanup_free_ char *buf = malloc(VERIFY_BUF);
        struct ossb_sha256 *h = NULL;
        if (!buf || ossb_sha256_new(&h) < 0)
                return -ENOMEM;
        int k = 0;
        for (;;) {
                ssize_t n = read(fd, buf, VERIFY_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        k = -errno;
                        break;
                }
                if (n == 0)
                        break;
                k = ossb_sha256_update(h, buf, (size_t) n);
                if (k < 0)
                        break;
        }
        if (k >= 0)
                ossb_sha256_final(h, out);
        ossb_sha256_free(h);
        return k;
}

int ossb_chunkcache_verify(struct ossb_chunkcache *cc, const char *digest, struct ossb_error **err)
{
        _cleanup_close_ int fd = ossb_chunkcache_open_chunk(cc, digest, -1);
        if (fd == -ENOENT)
                return -ENOENT;
        if (fd < 0)
                return ossb_error_set(err, fd, "cannot open chunk %s in `%s`: %s", digest ? digest : "", cc->path,
                                      strerror(-fd));
        char got[OSSB_DIGEST_STR_LEN + 1];
        int k = hash_fd(fd, got);
        if (k < 0)
                return ossb_error_set(err, k, "cannot read chunk %s in `%s`: %s", digest, cc->path, strerror(-k));
        if (!streq(got, digest)) {
                (void) unlinkat(cc->dirfd, chunk_name(digest), 0);
                return ossb_error_set(err, -EBADMSG, "chunk %s in `%s` was damaged (its bytes hash to %s): removed",
                                      digest, cc->path, got);
        }
        return 0;
}

/* ---- prune and usage ---- */

struct cand {
        char name[OSSB_SHA256_HEX_LEN + 1];
        int64_t size;
        struct timespec used;
};

struct scan {
        struct cand *v;
        size_t n, cap;
        int64_t total;
};

static bool hex_name(const char *s)
{
        if (strlen(s) != OSSB_SHA256_HEX_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static int scan_add(struct scan *s, const char *name, const struct stat *st)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 256;
                struct cand *v = reallocarray(s->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                s->v = v;
                s->cap = cap;
        }
        struct cand *c = &s->v[s->n++];
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->size = (int64_t) st->st_size;
        c->used = st->st_mtim;
        s->total += c->size;
        return 0;
}

/* Every chunk (and, with `clean_tmp`, old temp files removed on the way). */
static int scan_dir(int dirfd, bool clean_tmp, struct scan *s)
{
        int fd = dup(dirfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return -errno;
        }
        struct dirent *de;
        int k = 0;
        time_t now = time(NULL);
        while (k >= 0 && (de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.' || fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (!strncmp(de->d_name, "tmp-", 4)) {
                        if (clean_tmp && now - st.st_mtime > TMP_MAX_AGE_S)
                                (void) unlinkat(dirfd, de->d_name, 0);
                        continue;
                }
                if (S_ISREG(st.st_mode) && hex_name(de->d_name))
                        k = scan_add(s, de->d_name, &st);
        }
        closedir(d);
        return k;
}

static int by_use(const void *a, const void *b)
{
        const struct cand *x = a, *y = b;
        if (x->used.tv_sec != y->used.tv_sec)
                return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
        if (x->used.tv_nsec != y->used.tv_nsec)
                return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
        return strcmp(x->name, y->name);
}

/* Remove a chunk unless it was used since the scan. */
static bool evict(int dirfd, const struct cand *c)
{
        struct stat st;
        if (fstatat(dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return false; /* gone already (another prune) */
        if (st.st_mtim.tv_sec != c->used.tv_sec || st.st_mtim.tv_nsec != c->used.tv_nsec)
                return false;
        return unlinkat(dirfd, c->name, 0) == 0;
}

static int open_existing(const char *cache_dir, int *ret_fd, char **ret_path)
{
        char *path = chunks_dir(cache_dir);
        if (!path)
                return -ENOMEM;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int k = -errno;
                free(path);
                return k;
        }
        *ret_fd = fd;
        *ret_path = path;
        return 0;
}

int ossb_chunkcache_prune(const char *cache_dir, int64_t keep_bytes, int64_t *ret_freed, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int dirfd = -1;
        struct scan s = { 0 };
        int64_t freed = 0;
        int k = open_existing(cache_dir, &dirfd, &path);
        if (k == -ENOENT) {
                if (ret_freed)
                        *ret_freed = 0;
                return 0;
        }
        if (k >= 0)
                k = scan_dir(dirfd, true, &s);
        if (k >= 0 && s.n > 0)
                qsort(s.v, s.n, sizeof(*s.v), by_use);
        for (size_t i = 0; k >= 0 && i < s.n && (keep_bytes == 0 || s.total > keep_bytes); i++)
                if (evict(dirfd, &s.v[i])) {
                        s.total -= s.v[i].size;
                        freed += s.v[i].size;
                }
        free(s.v);
        if (k < 0)
                return ossb_error_set(err, k, "cannot prune the chunk cache `%s`: %s", path ? path : cache_dir,
                                      strerror(-k));
        if (ret_freed)
                *ret_freed = freed;
        return 0;
}

int ossb_chunkcache_usage(const char *cache_dir, int64_t *ret_bytes, int64_t *ret_chunks, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int dirfd = -1;
        struct scan s = { 0 };
        int k = open_existing(cache_dir, &dirfd, &path);
        if (k >= 0)
                k = scan_dir(dirfd, false, &s);
        free(s.v);
        if (k < 0 && k != -ENOENT)
                return ossb_error_set(err, k, "cannot read the chunk cache of `%s`: %s", cache_dir, strerror(-k));
        if (ret_bytes)
                *ret_bytes = k < 0 ? 0 : s.total;
        if (ret_chunks)
                *ret_chunks = k < 0 ? 0 : (int64_t) s.n;
        return 0;
}
