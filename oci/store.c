/* oci/store.c - the content-addressed store: blob paths, lookups, atomic verified ingest.
 *
 * Owns: ROOT/blobs/sha256/<hex> and ROOT/ingest/<random>.  A blob only ever reaches blobs/
 * through ossb_store_ingest_commit: written to an ingest file while hashed, verified, fsynced,
 * renamed, and the directory fsynced.  Every path built from a digest is built from a digest
 * that passed ossb_digest_is_valid (64 lower-case hex digits: no '/', no "..").
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/store.h"

#define BLOB_MODE 0444

struct ossb_store {
        char *root;
        char *blobs_dir;  /* ROOT/blobs/sha256 */
        char *ingest_dir; /* ROOT/ingest */
};

struct ossb_store_ingest {
        struct ossb_store *store;
        struct ossb_sha256 *hash;
        char *path; /* the temp file; NULL once committed or removed */
        int fd;
        int64_t size;
        int failed; /* a write failed: the content is unknown, commit refuses */
};

static int make_dir(const char *path, struct ossb_error **err)
{
        int r = ossb_mkdir_p(path, 0755);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create directory `%s`: %s", path, strerror(-r));
        return 0;
}

int ossb_store_open(const char *root, struct ossb_store **ret, struct ossb_error **err)
{
        struct ossb_store *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        s->root = strdup(root);
        s->blobs_dir = ossb_path_join(root, "blobs/sha256");
        s->ingest_dir = ossb_path_join(root, "ingest");
        if (!s->root || !s->blobs_dir || !s->ingest_dir) {
                ossb_store_free(s);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        r = make_dir(s->blobs_dir, err);
        if (r >= 0)
                r = make_dir(s->ingest_dir, err);
        if (r < 0) {
                ossb_store_free(s);
                return ossb_error_wrap(err, "cannot open the content store at `%s`", root);
        }
        *ret = s;
        return 0;
}

void ossb_store_free(struct ossb_store *s)
{
        if (!s)
                return;
        free(s->root);
        free(s->blobs_dir);
        free(s->ingest_dir);
        free(s);
}

const char *ossb_store_root(const struct ossb_store *s)
{
        return s->root;
}

int ossb_store_blob_path(const struct ossb_store *s, const char *digest, char **ret, struct ossb_error **err)
{
        char *p = NULL;

        if (!ossb_digest_is_valid(digest))
                return ossb_error_set(err, -EINVAL, "invalid digest `%s`", digest ? digest : "(null)");
        if (asprintf(&p, "%s/%s", s->blobs_dir, digest + 7) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret = p;
        return 0;
}

bool ossb_store_has(const struct ossb_store *s, const char *digest)
{
        _cleanup_free_ char *p = NULL;
        struct stat st;

        if (ossb_store_blob_path(s, digest, &p, NULL) < 0)
                return false;
        return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int ossb_store_open_blob(const struct ossb_store *s, const char *digest, int *ret_fd, struct ossb_error **err)
{
        _cleanup_free_ char *p = NULL;
        int r = ossb_store_blob_path(s, digest, &p, err);
        if (r < 0)
                return r;
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOENT)
                        return ossb_error_set(err, -ENOENT, "blob %s is not in the content store", digest);
                return ossb_error_set(err, -errno, "cannot open blob `%s`: %m", p);
        }
        *ret_fd = fd;
        return 0;
}

int ossb_store_blob_size(const struct ossb_store *s, const char *digest, int64_t *ret_size, struct ossb_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r = ossb_store_open_blob(s, digest, &fd, err);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat blob %s: %m", digest);
        *ret_size = (int64_t) st.st_size;
        return 0;
}

int ossb_store_read_blob(const struct ossb_store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                         struct ossb_error **err)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        char actual[OSSB_DIGEST_STR_LEN + 1];
        size_t len = 0;
        int r = ossb_store_open_blob(s, digest, &fd, err);
        if (r < 0)
                return r;
        r = ossb_read_fd(fd, max, &data, &len);
        if (r == -EFBIG)
                return ossb_error_set(err, r, "blob %s is larger than %zu bytes", digest, max);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read blob %s: %s", digest, strerror(-r));
        r = ossb_sha256_digest(data, len, actual);
        if (r < 0)
                return ossb_error_set(err, r, "cannot hash blob %s", digest);
        if (!streq(actual, digest))
                return ossb_error_set(err, -EBADMSG, "blob %s in the content store is corrupt (its content hashes to %s)",
                                      digest, actual);
        *ret = TAKE_PTR(data);
        if (ret_len)
                *ret_len = len;
        return 0;
}

int ossb_store_put(struct ossb_store *s, const void *data, size_t len, const char *expected,
                   char ret_digest[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err)
{
        struct ossb_store_ingest *in = NULL;
        int r = ossb_store_ingest_new(s, &in, err);
        if (r < 0)
                return r;
        r = ossb_store_ingest_write(in, data, len, err);
        if (r >= 0)
                r = ossb_store_ingest_commit(in, expected, ret_digest, NULL, err);
        ossb_store_ingest_free(in);
        return r;
}

/* ---- ingest ---- */

static int random_name(char out[33])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char rnd[16];
        if (getentropy(rnd, sizeof(rnd)) < 0)
                return -errno;
        for (size_t i = 0; i < sizeof(rnd); i++) {
                out[2 * i] = hex[rnd[i] >> 4];
                out[2 * i + 1] = hex[rnd[i] & 0xf];
        }
        out[32] = '\0';
        return 0;
}

static int create_ingest_file(const struct ossb_store *s, char **ret_path, int *ret_fd, struct ossb_error **err)
{
        for (int attempt = 0; attempt < 16; attempt++) {
                char name[33];
                char *p = NULL;
                int r = random_name(name);
                if (r < 0)
                        return ossb_error_set(err, r, "cannot get random bytes: %s", strerror(-r));
                if (asprintf(&p, "%s/%s", s->ingest_dir, name) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, BLOB_MODE);
                if (fd >= 0) {
                        *ret_path = p;
                        *ret_fd = fd;
                        return 0;
                }
                r = -errno;
                free(p);
                if (r != -EEXIST)
                        return ossb_error_set(err, r, "cannot create an ingest file in `%s`: %s", s->ingest_dir,
                                              strerror(-r));
        }
        return ossb_error_set(err, -EEXIST, "cannot create a unique ingest file in `%s`", s->ingest_dir);
}

int ossb_store_ingest_new(struct ossb_store *s, struct ossb_store_ingest **ret, struct ossb_error **err)
{
        struct ossb_store_ingest *in = calloc(1, sizeof(*in));
        int r;

        if (!in)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        in->store = s;
        in->fd = -1;
        r = ossb_sha256_new(&in->hash);
        if (r < 0) {
                free(in);
                return ossb_error_set(err, r, "cannot create a sha256 context");
        }
        r = create_ingest_file(s, &in->path, &in->fd, err);
        if (r < 0) {
                ossb_store_ingest_free(in);
                return r;
        }
        *ret = in;
        return 0;
}

int ossb_store_ingest_write(struct ossb_store_ingest *in, const void *data, size_t len, struct ossb_error **err)
{
        const char *p = data;
        if (!in->path || in->failed)
                return ossb_error_set(err, -EINVAL, "write to an ingest that is finished or failed");
        int r = ossb_sha256_update(in->hash, data, len);
        if (r < 0) {
                in->failed = 1;
                return ossb_error_set(err, r, "sha256 update failed");
        }
        while (len > 0) {
                ssize_t n = write(in->fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        in->failed = 1;
                        return ossb_error_set(err, -errno, "cannot write `%s`: %m", in->path);
                }
                p += n;
                len -= (size_t) n;
                in->size += n;
        }
        return 0;
}

static void ingest_remove(struct ossb_store_ingest *in)
{
        if (in->fd >= 0) {
                close(in->fd);
                in->fd = -1;
        }
        if (in->path) {
                (void) unlink(in->path);
                free(in->path);
                in->path = NULL;
        }
}

static int ingest_place(struct ossb_store_ingest *in, const char *digest, struct ossb_error **err)
{
        _cleanup_free_ char *dest = NULL;
        int r = ossb_store_blob_path(in->store, digest, &dest, err);
        if (r < 0)
                return r;
        if (ossb_store_has(in->store, digest))
                return 0; /* already present: keep it, the caller removes the temp file */
        if (fsync(in->fd) < 0)
                return ossb_error_set(err, -errno, "cannot fsync `%s`: %m", in->path);
        if (rename(in->path, dest) < 0)
                return ossb_error_set(err, -errno, "cannot rename `%s` to `%s`: %m", in->path, dest);
        free(in->path);
        in->path = NULL;
        r = ossb_fsync_dir(in->store->blobs_dir);
        if (r < 0)
                return ossb_error_set(err, r, "cannot fsync `%s`: %s", in->store->blobs_dir, strerror(-r));
        return 0;
}

int ossb_store_ingest_commit(struct ossb_store_ingest *in, const char *expected,
                             char ret_digest[OSSB_DIGEST_STR_LEN + 1], int64_t *ret_size,
                             struct ossb_error **err)
{
        char actual[OSSB_DIGEST_STR_LEN + 1];
        int r;

        if (!in->path || in->failed) {
                ingest_remove(in);
                return ossb_error_set(err, -EINVAL, "commit of an ingest that is finished or failed");
        }
        ossb_sha256_final(in->hash, actual);
        if (expected && !ossb_digest_is_valid(expected)) {
                ingest_remove(in);
                return ossb_error_set(err, -EINVAL, "invalid expected digest `%s`", expected);
        }
        if (expected && !streq(expected, actual)) {
                ingest_remove(in);
                return ossb_error_set(err, -EBADMSG, "digest mismatch: expected %s, got %s", expected, actual);
        }
        r = ingest_place(in, actual, err);
        ingest_remove(in); /* closes the fd; removes the temp file unless it was renamed */
        if (r < 0)
                return r;
        if (ret_digest)
                memcpy(ret_digest, actual, sizeof(actual));
        if (ret_size)
                *ret_size = in->size;
        return 0;
}

int64_t ossb_store_ingest_size(const struct ossb_store_ingest *in)
{
        return in->size;
}

void ossb_store_ingest_free(struct ossb_store_ingest *in)
{
        if (!in)
                return;
        ingest_remove(in);
        ossb_sha256_free(in->hash);
        free(in);
}

/* ---- verification ---- */

#define VERIFY_CHUNK (256 * 1024)
#define INGEST_STALE_SECONDS 3600

static bool hex_name(const char *s)
{
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == OSSB_SHA256_HEX_LEN;
}

/* Whether the regular file `name` in `dirfd` hashes to its name; -errno when it cannot be read. */
static int blob_is_good(int dirfd, const char *name, struct ossb_sha256 *h, unsigned char *buf, bool *ret)
{
        char actual[OSSB_DIGEST_STR_LEN + 1];
        struct stat st;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode)) {
                *ret = false;
                return 0;
        }
        int r = 0;
        for (;;) {
                ssize_t n = read(fd, buf, VERIFY_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : 0;
                        break;
                }
                r = ossb_sha256_update(h, buf, (size_t) n);
                if (r < 0)
                        break;
        }
        ossb_sha256_final(h, actual); /* also resets h for the next blob, whatever happened */
        *ret = r >= 0 && streq(actual + 7, name);
        return r;
}

static int verify_one(int dirfd, const char *name, bool remove_bad, struct ossb_sha256 *h, unsigned char *buf,
                      int64_t *ok, char ***bad)
{
        _cleanup_free_ char *digest = NULL;
        bool good = false;
        int r = 0;

        if (hex_name(name)) {
                r = blob_is_good(dirfd, name, h, buf, &good);
                if (r == -ENOENT)
                        return 0; /* removed meanwhile */
                if (r == -ENOMEM)
                        return r;
                /* unreadable (EIO, ELOOP for a symlink, ...): bad */
        }
        if (good) {
                (*ok)++;
                return 0;
        }
        if (asprintf(&digest, "sha256:%s", name) < 0 || ossb_strv_push(bad, digest) < 0)
                return -ENOMEM;
        if (remove_bad) {
                r = ossb_rm_rf_at(dirfd, name);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Remove ingest temp files older than an hour (left by crashed writers). */
static void clean_ingest(const struct ossb_store *s)
{
        DIR *d = opendir(s->ingest_dir);
        struct dirent *de;
        time_t now = time(NULL);
        if (!d)
                return;
        while ((de = readdir(d))) {
                struct stat st;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (now - st.st_mtime > INGEST_STALE_SECONDS)
                        (void) ossb_rm_rf_at(dirfd(d), de->d_name);
        }
        closedir(d);
}

int ossb_store_verify(struct ossb_store *s, bool remove_bad, int64_t *ret_ok, char ***ret_bad, struct ossb_error **err)
{
        _cleanup_strv_free_ char **bad = NULL;
        _cleanup_free_ unsigned char *buf = malloc(VERIFY_CHUNK);
        struct ossb_sha256 *h = NULL;
        int64_t ok = 0;
        int r = 0;

        if (!buf || ossb_sha256_new(&h) < 0) {
                ossb_sha256_free(h);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        DIR *d = opendir(s->blobs_dir);
        if (!d) {
                ossb_sha256_free(h);
                return ossb_error_set(err, -errno, "cannot read `%s`: %m", s->blobs_dir);
        }
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        r = verify_one(dirfd(d), de->d_name, remove_bad, h, buf, &ok, &bad);
        closedir(d);
        ossb_sha256_free(h);
        if (r < 0)
                return ossb_error_set(err, r, "cannot verify the content store at `%s`: %s", s->root, strerror(-r));
        clean_ingest(s);
        if (ret_ok)
                *ret_ok = ok;
        if (ret_bad)
                *ret_bad = bad ? TAKE_PTR(bad) : ossb_strv_new_empty();
        if (ret_bad && !*ret_bad)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}
