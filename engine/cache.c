/* engine/cache.c - the step cache's on-disk index (see cache.h): one JSON file per key under
 * CACHE_DIR/cache/keys/, written atomically, validated strictly when read, its mtime the last
 * use; and prune, which evicts least recently used entries and the layer blobs only they
 * referenced. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "engine/cache.h"
#include "oci/image.h"

#define ENTRY_VERSION 1
#define ENTRY_VERSION_ANNOTATED 2     /* version 1 plus the layer's annotations (cache.h) */
#define ENTRY_MAX (128 * 1024)        /* an entry file, at most */
#define EXTRA_MAX (64 * 1024)         /* its `extra` JSON text, at most */
#define ANNOTATIONS_MAX (64 * 1024)   /* its annotations as JSON text, at most */
#define ANNOTATION_KEY_MAX 255
#define MEDIA_TYPE_MAX 255
#define STALE_TMP_SECONDS 3600        /* temp files of interrupted writes older than this go */

struct ossb_cache {
        char *dir;  /* CACHE_DIR/cache */
        char *keys; /* CACHE_DIR/cache/keys */
        char *lock; /* CACHE_DIR/cache/lock */
};

static void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

void ossb_cache_entry_clear(struct ossb_cache_entry *e)
{
        if (!e)
                return;
        free(e->media_type);
        free(e->extra);
        if (e->annotations)
                json_object_put(e->annotations);
        *e = (struct ossb_cache_entry) { .empty = false };
}

int ossb_cache_open(const char *cache_dir, struct ossb_cache **ret, struct ossb_error **err)
{
        _cleanup_(ossb_cache_freep) struct ossb_cache *c = calloc(1, sizeof(*c));
        if (!c)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        c->dir = ossb_path_join(cache_dir, "cache");
        c->keys = c->dir ? ossb_path_join(c->dir, "keys") : NULL;
        c->lock = c->dir ? ossb_path_join(c->dir, "lock") : NULL;
        if (!c->keys || !c->lock)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_mkdir_p(c->keys, 0700);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create the cache index `%s`: %s", c->keys, strerror(-r));
        *ret = TAKE_PTR(c);
        return 0;
}

void ossb_cache_free(struct ossb_cache *c)
{
        if (!c)
                return;
        free(c->dir);
        free(c->keys);
        free(c->lock);
        free(c);
}

const char *ossb_cache_dir(const struct ossb_cache *c)
{
        return c->dir;
}

static int entry_path(const struct ossb_cache *c, const char *key_hex, char **ret, struct ossb_error **err)
{
        if (!ossb_cache_key_is_valid(key_hex))
                return ossb_error_set(err, -EINVAL, "invalid cache key `%.80s`", key_hex ? key_hex : "(null)");
        if (asprintf(ret, "%s/%s.json", c->keys, key_hex) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- encoding ------------------------------------------------------------------------------ */

static bool media_type_ok(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > MEDIA_TYPE_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

static int add_field(json_object *o, const char *name, json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* Layer annotations: an object of at most ANNOTATIONS_MAX bytes as JSON whose keys are
 * printable (1..255 bytes) and whose values are strings. */
static bool annotations_ok(json_object *a)
{
        if (!json_object_is_type(a, json_type_object))
                return false;
        json_object_object_foreach(a, k, v) {
                size_t n = strlen(k);
                if (n == 0 || n > ANNOTATION_KEY_MAX || !json_object_is_type(v, json_type_string))
                        return false;
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) k[i] <= 0x20 || (unsigned char) k[i] >= 0x7f)
                                return false;
        }
        const char *text = ossb_json_to_string(a);
        return text && strlen(text) <= ANNOTATIONS_MAX;
}

static int check_entry(const struct ossb_cache_entry *e, json_object **ret_extra, struct ossb_error **err)
{
        if (e->annotations && (e->empty || !annotations_ok(e->annotations)))
                return ossb_error_set(err, -EINVAL, "cache entry: invalid layer annotations");
        if (!e->empty) {
                if (!ossb_digest_is_valid(e->digest) || !ossb_digest_is_valid(e->diff_id))
                        return ossb_error_set(err, -EINVAL, "cache entry: invalid layer digest or diff_id");
                if (e->size < 0 || !media_type_ok(e->media_type))
                        return ossb_error_set(err, -EINVAL, "cache entry: invalid layer size or media type");
        }
        *ret_extra = NULL;
        if (!e->extra)
                return 0;
        int r = ossb_json_parse(e->extra, strlen(e->extra), EXTRA_MAX, ret_extra, err);
        if (r < 0) {
                (void) ossb_error_wrap(err, "cache entry: invalid extra JSON");
                return -EINVAL;
        }
        return 0;
}

static int entry_to_json(const char *key_hex, const struct ossb_cache_entry *e, json_object *extra, char **ret)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        int r = o ? 0 : -ENOMEM;
        int version = e->annotations ? ENTRY_VERSION_ANNOTATED : ENTRY_VERSION;
        if (r >= 0)
                r = add_field(o, "version", json_object_new_int(version));
        if (r >= 0)
                r = add_field(o, "key", json_object_new_string(key_hex));
        if (r >= 0)
                r = add_field(o, "empty", json_object_new_boolean(e->empty));
        if (r >= 0 && !e->empty) {
                r = add_field(o, "mediaType", json_object_new_string(e->media_type));
                if (r >= 0)
                        r = add_field(o, "digest", json_object_new_string(e->digest));
                if (r >= 0)
                        r = add_field(o, "size", json_object_new_int64(e->size));
                if (r >= 0)
                        r = add_field(o, "diffID", json_object_new_string(e->diff_id));
                if (r >= 0 && e->annotations) {
                        json_object *a = NULL;
                        r = json_object_deep_copy(e->annotations, &a, NULL) < 0 ? -ENOMEM : 0;
                        if (r >= 0)
                                r = add_field(o, "annotations", a);
                }
        }
        if (r >= 0 && extra)
                r = add_field(o, "extra", json_object_get(extra));
        const char *s = r >= 0 ? ossb_json_to_string(o) : NULL;
        *ret = s ? strdup(s) : NULL;
        return *ret ? 0 : -ENOMEM;
}

/* ---- decoding (entries are untrusted: another process, a crash, a person may have written them) */

static const char *const entry_fields[] = {
        "version", "key", "empty", "mediaType", "digest", "size", "diffID", "extra", "annotations",
};

static int field_string(json_object *o, const char *name, const char **ret)
{
        json_object *v;
        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                return -EPROTO;
        *ret = json_object_get_string(v);
        return 0;
}

static int decode_layer(json_object *o, struct ossb_cache_entry *e)
{
        const char *mt, *digest, *diff_id;
        json_object *size;
        if (field_string(o, "mediaType", &mt) < 0 || field_string(o, "digest", &digest) < 0 ||
            field_string(o, "diffID", &diff_id) < 0 || !json_object_object_get_ex(o, "size", &size) ||
            !json_object_is_type(size, json_type_int))
                return -EPROTO;
        int64_t sz = json_object_get_int64(size);
        if (!media_type_ok(mt) || !ossb_digest_is_valid(digest) || !ossb_digest_is_valid(diff_id) || sz < 0 ||
            sz == INT64_MAX)
                return -EPROTO;
        e->media_type = strdup(mt);
        if (!e->media_type)
                return -ENOMEM;
        memcpy(e->digest, digest, sizeof(e->digest));
        memcpy(e->diff_id, diff_id, sizeof(e->diff_id));
        e->size = sz;
        return 0;
}

/* 0 ok; -EPROTO malformed; -EPROTONOSUPPORT another format version; -ENOMEM. */
static int decode_entry(const char *key_hex, const char *data, size_t len, struct ossb_cache_entry *ret)
{
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(ossb_cache_entry_clear) struct ossb_cache_entry e = { .empty = false };
        json_object *v;
        const char *key;

        if (ossb_json_parse(data, len, ENTRY_MAX, &o, NULL) < 0 || !json_object_is_type(o, json_type_object))
                return -EPROTO;
        if (!json_object_object_get_ex(o, "version", &v) || !json_object_is_type(v, json_type_int))
                return -EPROTO;
        int64_t version = json_object_get_int64(v);
        if (version != ENTRY_VERSION && version != ENTRY_VERSION_ANNOTATED)
                return -EPROTONOSUPPORT;
        json_object_object_foreach(o, name, val) {
                bool known = false;
                (void) val;
                for (size_t i = 0; i < ELEMENTSOF(entry_fields) && !known; i++)
                        known = streq(name, entry_fields[i]);
                if (!known)
                        return -EPROTO;
        }
        if (field_string(o, "key", &key) < 0 || !streq(key, key_hex))
                return -EPROTO;
        if (!json_object_object_get_ex(o, "empty", &v) || !json_object_is_type(v, json_type_boolean))
                return -EPROTO;
        e.empty = json_object_get_boolean(v);
        if (e.empty && (json_object_object_get_ex(o, "mediaType", NULL) ||
                        json_object_object_get_ex(o, "digest", NULL) || json_object_object_get_ex(o, "size", NULL) ||
                        json_object_object_get_ex(o, "diffID", NULL)))
                return -EPROTO;
        int r = e.empty ? 0 : decode_layer(o, &e);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "annotations", &v)) { /* version 2 and a layer only */
                if (version != ENTRY_VERSION_ANNOTATED || e.empty || !annotations_ok(v))
                        return -EPROTO;
                e.annotations = json_object_get(v);
        } else if (version == ENTRY_VERSION_ANNOTATED)
                return -EPROTO;
        if (json_object_object_get_ex(o, "extra", &v)) {
                const char *s = ossb_json_to_string(v);
                if (!s)
                        return -ENOMEM;
                if (strlen(s) > EXTRA_MAX)
                        return -EPROTO;
                e.extra = strdup(s);
                if (!e.extra)
                        return -ENOMEM;
        }
        *ret = e;
        e = (struct ossb_cache_entry) { .empty = false };
        return 0;
}

/* Read and decode the entry file open at fd. */
static int load_entry(int fd, const char *key_hex, struct ossb_cache_entry *ret)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EPROTO;
        int r = ossb_read_fd(fd, ENTRY_MAX, &data, &len);
        if (r == -EFBIG)
                return -EPROTO;
        if (r < 0)
                return r;
        return decode_entry(key_hex, data, len, ret);
}

/* Remove a bad entry file, unless a writer has replaced it since we opened it. */
static void drop_if_same(const char *path, int fd)
{
        struct stat a, b;
        if (fd >= 0 && (fstat(fd, &a) < 0 || lstat(path, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino))
                return;
        if (unlink(path) == 0 || (errno == EISDIR && rmdir(path) == 0))
                log_debug("cache: removed malformed entry `%s`", path);
}

/* ---- get, put, remove ---------------------------------------------------------------------- */

int ossb_cache_get(struct ossb_cache *c, const char *key_hex, struct ossb_cache_entry *ret, bool *ret_hit,
                   struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_(ossb_cache_entry_clear) struct ossb_cache_entry e = { .empty = false };
        int r = entry_path(c, key_hex, &path, err);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
                *ret_hit = false;
                return 0;
        }
        if (fd < 0 && errno != ELOOP)
                return ossb_error_set(err, -errno, "cannot open cache entry `%s`: %m", path);
        r = fd >= 0 ? load_entry(fd, key_hex, &e) : -EPROTO; /* ELOOP: a symlink planted there */
        if (r == -EPROTO) {
                drop_if_same(path, fd);
                *ret_hit = false;
                return 0;
        }
        if (r == -EPROTONOSUPPORT) {
                *ret_hit = false;
                return 0;
        }
        if (r < 0)
                return ossb_error_set(err, r, "cannot read cache entry `%s`: %s", path, strerror(-r));
        if (futimens(fd, NULL) < 0)
                log_debug("cache: cannot mark `%s` used: %m", path);
        *ret = e;
        e = (struct ossb_cache_entry) { .empty = false };
        *ret_hit = true;
        return 0;
}

int ossb_cache_put(struct ossb_cache *c, const char *key_hex, const struct ossb_cache_entry *e,
                   struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ char *text = NULL;
        _cleanup_json_ json_object *extra = NULL;
        int r = entry_path(c, key_hex, &path, err);
        if (r < 0)
                return r;
        r = check_entry(e, &extra, err);
        if (r < 0)
                return r;
        r = entry_to_json(key_hex, e, extra, &text);
        if (r < 0)
                return ossb_error_set(err, r, "out of memory");
        r = ossb_write_file_atomic(path, text, strlen(text), 0644, err);
        if (r < 0) {
                (void) ossb_error_wrap(err, "cannot store cache entry");
                return r;
        }
        return 0;
}

int ossb_cache_remove(struct ossb_cache *c, const char *key_hex, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int r = entry_path(c, key_hex, &path, err);
        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return ossb_error_set(err, -errno, "cannot remove cache entry `%s`: %m", path);
        return 0;
}

/* ---- prune --------------------------------------------------------------------------------- */

struct prune_rec {
        char key[OSSB_CACHE_HEX_LEN + 1];
        struct timespec mtime;               /* the last use */
        char digest[OSSB_DIGEST_STR_LEN + 1]; /* "" for an empty step */
};

struct prune_blob {
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        size_t refs; /* entries not evicted that reference it */
};

struct prune {
        struct ossb_cache *c;
        int keys_fd;
        struct prune_rec *recs;
        size_t n_recs;
        struct prune_blob *blobs;
        size_t n_blobs;
};

static void prune_clear(struct prune *p)
{
        if (p->keys_fd >= 0)
                close(p->keys_fd);
        free(p->recs);
        free(p->blobs);
}

static bool is_entry_name(const char *name, char key[OSSB_CACHE_HEX_LEN + 1])
{
        size_t n = strlen(name);
        if (n != OSSB_CACHE_HEX_LEN + 5 || !streq(name + OSSB_CACHE_HEX_LEN, ".json"))
                return false;
        memcpy(key, name, OSSB_CACHE_HEX_LEN);
        key[OSSB_CACHE_HEX_LEN] = '\0';
        return ossb_cache_key_is_valid(key);
}

/* Look at one directory entry of keys/: record it, drop it when malformed, drop a stale temp. */
static int prune_scan_one(struct prune *p, const char *name)
{
        struct prune_rec rec = { .digest = "" };
        struct stat st;
        if (!is_entry_name(name, rec.key)) {
                if (strstr(name, ".json.tmp-") && fstatat(p->keys_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    st.st_mtime < time(NULL) - STALE_TMP_SECONDS)
                        (void) unlinkat(p->keys_fd, name, 0);
                return 0;
        }
        _cleanup_close_ int fd = openat(p->keys_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                if (r == -ELOOP)
                        (void) unlinkat(p->keys_fd, name, 0); /* a symlink planted there */
                return r == -ENOENT || r == -ELOOP ? 0 : r;
        }
        _cleanup_(ossb_cache_entry_clear) struct ossb_cache_entry e = { .empty = false };
        if (fstat(fd, &st) < 0)
                return -errno;
        int r = load_entry(fd, rec.key, &e);
        if (r == -EPROTO) {
                if (unlinkat(p->keys_fd, name, 0) < 0 && errno == EISDIR)
                        (void) unlinkat(p->keys_fd, name, AT_REMOVEDIR); /* when empty */
                return 0;
        }
        if (r == -EPROTONOSUPPORT)
                return 0; /* another version's: not ours to judge */
        if (r < 0)
                return r;
        if (!e.empty)
                memcpy(rec.digest, e.digest, sizeof(rec.digest));
        rec.mtime = st.st_mtim;
        struct prune_rec *nr = realloc(p->recs, (p->n_recs + 1) * sizeof(*nr));
        if (!nr)
                return -ENOMEM;
        p->recs = nr;
        p->recs[p->n_recs++] = rec;
        return 0;
}

static int prune_scan(struct prune *p)
{
        int dfd = fcntl(p->keys_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        struct dirent *de;
        int r = 0;
        while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        r = prune_scan_one(p, de->d_name);
        closedir(d);
        return r;
}

static int cmp_rec(const void *a, const void *b)
{
        const struct prune_rec *x = a, *y = b;
        if (x->mtime.tv_sec != y->mtime.tv_sec)
                return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
        if (x->mtime.tv_nsec != y->mtime.tv_nsec)
                return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
        return strcmp(x->key, y->key);
}

static int cmp_blob(const void *a, const void *b)
{
        return strcmp(((const struct prune_blob *) a)->digest, ((const struct prune_blob *) b)->digest);
}

static struct prune_blob *find_blob(struct prune *p, const char *digest)
{
        struct prune_blob key;
        memcpy(key.digest, digest, sizeof(key.digest));
        return bsearch(&key, p->blobs, p->n_blobs, sizeof(*p->blobs), cmp_blob);
}

/* The distinct blobs the entries reference, with their sizes and reference counts; returns
 * the total size. */
static int prune_count(struct prune *p, struct ossb_store *store, int64_t *ret_total)
{
        int64_t total = 0;
        p->blobs = calloc(p->n_recs + 1, sizeof(*p->blobs));
        if (!p->blobs)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_recs; i++)
                if (p->recs[i].digest[0])
                        memcpy(p->blobs[p->n_blobs++].digest, p->recs[i].digest, sizeof(p->recs[i].digest));
        qsort(p->blobs, p->n_blobs, sizeof(*p->blobs), cmp_blob);
        size_t n = 0;
        for (size_t i = 0; i < p->n_blobs; i++)
                if (n == 0 || !streq(p->blobs[n - 1].digest, p->blobs[i].digest))
                        p->blobs[n++] = p->blobs[i];
        p->n_blobs = n;
        for (size_t i = 0; i < p->n_recs; i++)
                if (p->recs[i].digest[0])
                        find_blob(p, p->recs[i].digest)->refs++;
        for (size_t i = 0; i < p->n_blobs; i++) {
                if (ossb_store_blob_size(store, p->blobs[i].digest, &p->blobs[i].size, NULL) < 0)
                        p->blobs[i].size = 0; /* already gone */
                total += p->blobs[i].size;
        }
        *ret_total = total;
        return 0;
}

/* Evict one entry; false when it was used or rewritten since the scan (then it stays). */
static bool prune_evict(struct prune *p, const struct prune_rec *rec)
{
        char name[OSSB_CACHE_HEX_LEN + 6];
        struct stat st;
        snprintf(name, sizeof(name), "%s.json", rec->key);
        if (fstatat(p->keys_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT; /* someone else removed it: as good as evicted */
        if (st.st_mtim.tv_sec != rec->mtime.tv_sec || st.st_mtim.tv_nsec != rec->mtime.tv_nsec)
                return false;
        return unlinkat(p->keys_fd, name, 0) == 0 || errno == ENOENT;
}

static int prune_blob_delete(struct ossb_store *store, const char *digest)
{
        _cleanup_free_ char *path = NULL;
        int r = ossb_store_blob_path(store, digest, &path, NULL);
        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        log_debug("cache prune: deleted layer %s", digest);
        return 0;
}

static int prune_evict_lru(struct prune *p, struct ossb_store *store, int64_t keep_bytes, int64_t total,
                           int64_t *ret_freed)
{
        int64_t freed = 0;
        if (p->n_recs > 0)
                qsort(p->recs, p->n_recs, sizeof(*p->recs), cmp_rec);
        for (size_t i = 0; i < p->n_recs; i++) {
                if (keep_bytes > 0 && total <= keep_bytes)
                        break;
                if (!prune_evict(p, &p->recs[i]))
                        continue;
                if (!p->recs[i].digest[0])
                        continue;
                struct prune_blob *b = find_blob(p, p->recs[i].digest);
                if (--b->refs > 0)
                        continue;
                int r = prune_blob_delete(store, b->digest);
                if (r < 0)
                        return r;
                total -= b->size;
                freed += b->size;
        }
        *ret_freed = freed;
        return 0;
}

static int lock_exclusive(const char *path, int *ret_fd)
{
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        while (flock(fd, LOCK_EX) < 0) {
                if (errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
        }
        *ret_fd = fd;
        return 0;
}

int ossb_cache_prune(struct ossb_cache *c, struct ossb_store *store, int64_t keep_bytes, int64_t *ret_freed,
                     struct ossb_error **err)
{
        _cleanup_close_ int lock_fd = -1;
        _cleanup_(prune_clear) struct prune p = { .c = c, .keys_fd = -1 };
        int64_t total = 0, freed = 0;
        int r;

        if (!store || keep_bytes < 0)
                return ossb_error_set(err, -EINVAL, "cache prune: a store and a size >= 0 are needed");
        r = lock_exclusive(c->lock, &lock_fd);
        if (r < 0)
                return ossb_error_set(err, r, "cannot lock `%s`: %s", c->lock, strerror(-r));
        p.keys_fd = open(c->keys, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (p.keys_fd < 0)
                return ossb_error_set(err, -errno, "cannot open the cache index `%s`: %m", c->keys);
        r = prune_scan(&p);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read the cache index `%s`: %s", c->keys, strerror(-r));
        r = prune_count(&p, store, &total);
        if (r < 0)
                return ossb_error_set(err, r, "out of memory");
        r = prune_evict_lru(&p, store, keep_bytes, total, &freed);
        if (r < 0)
                return ossb_error_set(err, r, "cache prune: cannot delete a layer blob: %s", strerror(-r));
        if (ret_freed)
                *ret_freed = freed;
        log_debug("cache prune: %zu entries, %zu layers, %lld bytes freed", p.n_recs, p.n_blobs, (long long) freed);
        return 0;
}
