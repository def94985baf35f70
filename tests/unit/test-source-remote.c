/* tests/unit/test-source-remote.c - the chunk cache (fuse/chunkcache.h) and the remote layer
 * source (fuse/source-remote.h) on eStargz and zstd:chunked layers made by ossb's own layer
 * writer, decoded through oci/seekable.h: metadata from the TOC, reads with a fake fetch
 * function serving the blob from memory (with fault injection: a corrupted chunk must give
 * EIO, never wrong bytes), the shared cache, prefetch, background completion, concurrent
 * readers, a mount of the FUSE filesystem over the source (when this process may mount), and,
 * with OSSB_TEST_REGISTRY set (test-ranged.sh), reads through a real registry with
 * registry/ranged.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sha256.h"
#include "fuse/chunkcache.h"
#include "fuse/fusefs.h"
#include "fuse/source-remote.h"
#include "oci/layer.h"
#include "oci/seekable.h"
#include "oci/store.h"
#include "registry/client.h"
#include "registry/ranged.h"
#include "registry/reference.h"
#include "registry/regconf.h"
#include "tests/unit/tap.h"

#define BIG_LEN (9 * 1024 * 1024 + 4321) /* three chunks of eStargz's 4 MiB */
#define MID_LEN (300 * 1024)

static char *tmp;
static int seq;
static unsigned char *big, *mid;
static const char os_release[] = "PRETTY_NAME=\"Test Linux\"\nID=test\n";
static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n";

static char *tmp_dir(const char *what)
{
        char *d = NULL;
        if (asprintf(&d, "%s/%s-%d", tmp, what, ++seq) < 0 || ossb_mkdir_p(d, 0755) < 0) {
                free(d);
                return NULL;
        }
        return d;
}

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
        uint64_t x = seed | 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (unsigned char) x;
        }
}

/* --- layers -------------------------------------------------------------------------------- */

struct layer {
        enum ossb_compression kind;
        char *data; /* the blob */
        size_t len;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        json_object *annotations;
};

static void layer_clear(struct layer *l)
{
        free(l->data);
        json_object_put(l->annotations);
        memset(l, 0, sizeof(*l));
}

static int add(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, const void *data)
{
        if (e->type == OSSB_ENTRY_FILE)
                return ossb_layer_writer_add_data(w, e, data ? data : "", (size_t) e->size, NULL);
        return ossb_layer_writer_add(w, e, -1, NULL);
}

#define FILE_E(p, m, d, n) { .path = (p), .type = OSSB_ENTRY_FILE, .mode = (m), .size = (n), .mtime_sec = 1700000000 }

/* The test layer: see the asserts of test_metadata for what it holds. */
static int write_entries(struct ossb_layer_writer *w)
{
        static const char wh[] = "";
        const struct ossb_xattr xs[] = {
                { "user.test", "value", 5 },
                { "user.overlay.hidden", "y", 1 },
        };
        struct ossb_layer_entry etc = { .path = "etc", .type = OSSB_ENTRY_DIR, .mode = 0755, .mtime_sec = 1700000000 };
        struct ossb_layer_entry osr = FILE_E("etc/os-release", 0644, os_release, (int64_t) strlen(os_release));
        struct ossb_layer_entry pw = FILE_E("etc/passwd", 0600, passwd, (int64_t) strlen(passwd));
        pw.uid = 7;
        pw.gid = 8;
        pw.xattrs = xs;
        pw.n_xattrs = ELEMENTSOF(xs);
        struct ossb_layer_entry lm = FILE_E(".prefetch.landmark", 0644, "\x0f", 1);
        struct ossb_layer_entry bigf = FILE_E("usr/bin/big", 0755, big, BIG_LEN);
        struct ossb_layer_entry hl = { .path = "usr/bin/hl", .type = OSSB_ENTRY_HARDLINK, .linkname = "usr/bin/big",
                                       .mode = 0755 };
        struct ossb_layer_entry sl = { .path = "usr/lib/link", .type = OSSB_ENTRY_SYMLINK, .linkname = "../bin/big",
                                       .mode = 0777 };
        struct ossb_layer_entry midf = FILE_E("a/b/c/mid", 0640, mid, MID_LEN);
        struct ossb_layer_entry empty = FILE_E("empty", 0644, "", 0);
        struct ossb_layer_entry gone = FILE_E("var/.wh.gone", 0644, wh, 0);
        struct ossb_layer_entry opq = FILE_E("opq/.wh..wh..opq", 0644, wh, 0);
        struct ossb_layer_entry keep = FILE_E("opq/keep", 0644, "k", 1);
        struct ossb_layer_entry dev = { .path = "dev/null", .type = OSSB_ENTRY_CHAR, .mode = 0666, .rdev = makedev(1, 3) };
        const struct ossb_layer_entry *all[] = { &etc, &osr, &pw, &lm, &bigf, &hl, &sl, &midf, &empty, &gone, &opq, &keep, &dev };
        const void *data[] = { NULL, os_release, passwd, "\x0f", big, NULL, NULL, mid, "", wh, wh, "k", NULL };
        int k = 0;
        for (size_t i = 0; k >= 0 && i < ELEMENTSOF(all); i++)
                k = add(w, all[i], data[i]);
        return k;
}

static int make_layer(enum ossb_compression kind, struct layer *l)
{
        memset(l, 0, sizeof(*l));
        l->kind = kind;
        _cleanup_free_ char *root = tmp_dir("store");
        struct ossb_store *s = NULL;
        struct ossb_layer_writer *w = NULL;
        struct ossb_error *e = NULL;
        struct ossb_layer_opts o = { .compression = kind, .level = 1, .source_date_epoch = -1, .threads = 1 };
        char diff[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        int k = root ? ossb_store_open(root, &s, &e) : -ENOMEM;
        if (k >= 0)
                k = ossb_layer_writer_new(s, &o, &w, &e);
        if (k >= 0)
                k = write_entries(w);
        if (k >= 0)
                k = ossb_layer_writer_finish(w, l->digest, &size, diff, &e);
        if (k >= 0)
                k = ossb_layer_writer_annotations(w, &l->annotations);
        if (k >= 0)
                k = ossb_store_read_blob(s, l->digest, 64 * 1024 * 1024, &l->data, &l->len, &e);
        if (k < 0)
                fprintf(stderr, "# make_layer: %s\n", e && e->msg ? e->msg : strerror(-k));
        ossb_error_free(e);
        ossb_layer_writer_free(w);
        ossb_store_free(s);
        return k;
}

static struct ossb_toc *decode(const struct layer *l)
{
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        struct ossb_error *e = NULL;
        size_t tail = l->len < OSSB_SEEKABLE_TAIL_SIZE ? l->len : OSSB_SEEKABLE_TAIL_SIZE;
        int k = ossb_toc_locate(l->annotations, (int64_t) l->len, l->data + l->len - tail, tail, &loc, &e);
        if (k >= 0 && (loc.offset < 0 || loc.length < 0 || (uint64_t) (loc.offset + loc.length) > l->len))
                k = -EBADMSG;
        if (k >= 0)
                k = ossb_toc_decode(&loc, l->data + loc.offset, (size_t) loc.length, &toc, &e);
        if (k < 0)
                fprintf(stderr, "# decode: %s\n", e && e->msg ? e->msg : strerror(-k));
        ossb_error_free(e);
        return k < 0 ? NULL : toc;
}

static struct layer estargz, zchunked;

/* --- a fake fetch function ----------------------------------------------------------------- */

struct fake {
        const struct layer *l;
        pthread_mutex_t lock;
        int calls;
        size_t ranges;
        int64_t corrupt_at; /* >= 0: flip this blob byte in what is served (once per call) */
        int corrupt_times;  /* how many calls still get it (-1: always) */
        bool fail;
};

static void fake_init(struct fake *f, const struct layer *l)
{
        memset(f, 0, sizeof(*f));
        f->l = l;
        f->corrupt_at = -1;
        pthread_mutex_init(&f->lock, NULL);
}

static int fake_fetch(void *ud, const struct ossb_range *r, size_t n, ossb_range_cb cb, void *cb_ud,
                      struct ossb_error **err)
{
        struct fake *f = ud;
        pthread_mutex_lock(&f->lock);
        f->calls++;
        f->ranges += n;
        bool corrupt = f->corrupt_at >= 0 && f->corrupt_times != 0;
        if (corrupt && f->corrupt_times > 0)
                f->corrupt_times--;
        bool fail = f->fail;
        pthread_mutex_unlock(&f->lock);
        if (fail)
                return ossb_error_set(err, -EIO, "fake fetch: the network is down");
        for (size_t i = 0; i < n; i++) {
                if (r[i].offset < 0 || r[i].offset + r[i].length > (int64_t) f->l->len)
                        return ossb_error_set(err, -EINVAL, "fake fetch: range outside the blob");
                _cleanup_free_ unsigned char *copy = malloc((size_t) r[i].length + 1);
                if (!copy)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                memcpy(copy, f->l->data + r[i].offset, (size_t) r[i].length);
                if (corrupt && f->corrupt_at >= r[i].offset && f->corrupt_at < r[i].offset + r[i].length)
                        copy[f->corrupt_at - r[i].offset] ^= 0x40;
                int k = cb(cb_ud, i, copy, (size_t) r[i].length);
                if (k < 0)
                        return ossb_error_set(err, k, "fake fetch: stopped");
        }
        return 0;
}

static struct ossb_fs_source *source_new(const struct layer *l, struct fake *f, const char *cache, bool prefetch,
                                         bool background)
{
        struct ossb_fs_remote_opts o = {
                .name = l->kind == OSSB_COMPRESSION_ESTARGZ ? "test-estargz" : "test-zstd-chunked",
                .blob_size = (int64_t) l->len, .toc = decode(l), .fetch = fake_fetch, .fetch_userdata = f,
                .cache_dir = cache, .prefetch = prefetch, .background = background, .max_fetch = 1024 * 1024,
        };
        struct ossb_fs_source *src = NULL;
        struct ossb_error *e = NULL;
        if (!o.toc || ossb_fs_source_remote_new(&o, &src, &e) < 0) {
                fprintf(stderr, "# source: %s\n", e && e->msg ? e->msg : "no TOC");
                src = NULL;
        }
        ossb_error_free(e);
        return src;
}

/* Read a whole file through the source into a new buffer (*ret_len bytes), in `step` pieces. */
static ssize_t read_all(struct ossb_fs_source *src, const char *path, size_t step, unsigned char **ret)
{
        void *h = NULL;
        int k = src->ops->open(src->ctx, path, &h);
        if (k < 0)
                return k;
        struct stat st;
        src->ops->getattr(src->ctx, path, &st, NULL);
        unsigned char *buf = malloc((size_t) st.st_size + 1);
        ssize_t off = 0;
        while (buf) {
                ssize_t n = src->ops->read(src->ctx, h, buf + off, step, off);
                if (n <= 0) {
                        if (n < 0)
                                off = n;
                        break;
                }
                off += n;
        }
        src->ops->release(src->ctx, h);
        if (!buf)
                return -ENOMEM;
        if (off < 0)
                free(buf);
        else
                *ret = buf;
        return off;
}

static ssize_t read_at(struct ossb_fs_source *src, const char *path, void *buf, size_t size, off_t off)
{
        void *h = NULL;
        int k = src->ops->open(src->ctx, path, &h);
        if (k < 0)
                return k;
        ssize_t n = src->ops->read(src->ctx, h, buf, size, off);
        src->ops->release(src->ctx, h);
        return n;
}

/* --- the chunk cache ----------------------------------------------------------------------- */

static void test_chunkcache_basics(void)
{
        _cleanup_free_ char *dir = tmp_dir("cache");
        struct ossb_chunkcache *cc = NULL;
        ASSERT(dir && ossb_chunkcache_open(dir, &cc, NULL) == 0);
        char d1[OSSB_DIGEST_STR_LEN + 1], d2[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_digest("hello chunk", 11, d1);
        ossb_sha256_digest("other", 5, d2);
        struct ossb_error *e = NULL;
        char buf[32] = "";
        int bad = ossb_chunkcache_put(cc, d1, "hello chunX", 11, true, &e);
        bool bad_has = ossb_chunkcache_has(cc, d1, -1);
        int ok = ossb_chunkcache_put(cc, d1, "hello chunk", 11, true, NULL);
        int again = ossb_chunkcache_put(cc, d1, "hello chunk", 11, false, NULL);
        ssize_t n = ossb_chunkcache_pread(cc, d1, 11, buf, sizeof(buf), 6);
        ssize_t wrong_size = ossb_chunkcache_pread(cc, d1, 12, buf, sizeof(buf), 0);
        ssize_t absent = ossb_chunkcache_pread(cc, d2, 5, buf, sizeof(buf), 0);
        ASSERT_INTEQ(bad, -EBADMSG);
        ASSERT(e && strstr(e->msg, d1));
        ossb_error_free(e);
        ASSERT(!bad_has);
        ASSERT_INTEQ(ok, 0);
        ASSERT_INTEQ(again, 0);
        ASSERT_INTEQ(n, 5);
        ASSERT(memcmp(buf, "chunk", 5) == 0);
        ASSERT_INTEQ(wrong_size, -EBADMSG); /* and the chunk is gone */
        ASSERT(!ossb_chunkcache_has(cc, d1, -1));
        ASSERT_INTEQ(absent, -ENOENT);
        /* a chunk damaged on disk is found by verify and removed */
        ASSERT_INTEQ(ossb_chunkcache_put(cc, d2, "other", 5, true, NULL), 0);
        _cleanup_free_ char *p = NULL;
        ASSERT(asprintf(&p, "%s/%s", ossb_chunkcache_path(cc), d2 + 7) > 0);
        ASSERT(chmod(p, 0600) == 0 && ossb_write_file_atomic(p, "OTHER", 5, 0600, NULL) == 0);
        ASSERT(ossb_chunkcache_has(cc, d2, 5));
        ASSERT_INTEQ(ossb_chunkcache_verify(cc, d2, NULL), -EBADMSG);
        ASSERT(!ossb_chunkcache_has(cc, d2, -1));
        ASSERT_INTEQ(ossb_chunkcache_verify(cc, d2, NULL), -ENOENT);
        ossb_chunkcache_free(cc);
}

static int put_n(struct ossb_chunkcache *cc, int i, size_t size, time_t mtime, char digest[OSSB_DIGEST_STR_LEN + 1])
{
        _cleanup_free_ char *data = malloc(size);
        if (!data)
                return -ENOMEM;
        memset(data, 'a' + i, size);
        ossb_sha256_digest(data, size, digest);
        int k = ossb_chunkcache_put(cc, digest, data, size, true, NULL);
        _cleanup_free_ char *p = NULL;
        if (k < 0 || asprintf(&p, "%s/%s", ossb_chunkcache_path(cc), digest + 7) < 0)
                return k < 0 ? k : -ENOMEM;
        struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };
        return utimensat(AT_FDCWD, p, ts, 0) < 0 ? -errno : 0;
}

static void test_chunkcache_prune(void)
{
        _cleanup_free_ char *dir = tmp_dir("cache");
        struct ossb_chunkcache *cc = NULL;
        ASSERT(dir && ossb_chunkcache_open(dir, &cc, NULL) == 0);
        char d[5][OSSB_DIGEST_STR_LEN + 1];
        time_t now = time(NULL);
        for (int i = 0; i < 5; i++)
                ASSERT(put_n(cc, i, 1000, now - 1000 + i * 10, d[i]) == 0);
        ossb_chunkcache_touch(cc, d[0]); /* used last now */
        _cleanup_free_ char *old_tmp = NULL, *new_tmp = NULL;
        ASSERT(asprintf(&old_tmp, "%s/tmp-abc.1", ossb_chunkcache_path(cc)) > 0);
        ASSERT(asprintf(&new_tmp, "%s/tmp-abc.2", ossb_chunkcache_path(cc)) > 0);
        ASSERT(ossb_write_file_atomic(old_tmp, "x", 1, 0600, NULL) == 0);
        ASSERT(ossb_write_file_atomic(new_tmp, "x", 1, 0600, NULL) == 0);
        struct timespec old[2] = { { now - 7200, 0 }, { now - 7200, 0 } };
        ASSERT(utimensat(AT_FDCWD, old_tmp, old, 0) == 0);
        int64_t bytes = 0, chunks = 0, freed = 0;
        ASSERT(ossb_chunkcache_usage(dir, &bytes, &chunks, NULL) == 0);
        ASSERT_INTEQ(bytes, 5000);
        ASSERT_INTEQ(chunks, 5);
        ASSERT(ossb_chunkcache_prune(dir, 2500, &freed, NULL) == 0);
        ASSERT_INTEQ(freed, 3000);
        /* the least recently used went: 1, 2, 3; 0 was touched, 4 is the newest */
        ASSERT(ossb_chunkcache_has(cc, d[0], 1000));
        ASSERT(!ossb_chunkcache_has(cc, d[1], -1) && !ossb_chunkcache_has(cc, d[2], -1));
        ASSERT(!ossb_chunkcache_has(cc, d[3], -1));
        ASSERT(ossb_chunkcache_has(cc, d[4], 1000));
        ASSERT(access(old_tmp, F_OK) != 0);
        ASSERT(access(new_tmp, F_OK) == 0);
        ASSERT(ossb_chunkcache_prune(dir, 0, &freed, NULL) == 0);
        ASSERT_INTEQ(freed, 2000);
        ASSERT(ossb_chunkcache_usage(dir, &bytes, &chunks, NULL) == 0);
        ASSERT_INTEQ(chunks, 0);
        ossb_chunkcache_free(cc);
        _cleanup_free_ char *none = tmp_dir("nocache");
        ASSERT(ossb_chunkcache_prune(none, 0, &freed, NULL) == 0);
        ASSERT_INTEQ(freed, 0);
}

struct put_arg {
        struct ossb_chunkcache *cc;
        const char *digest;
        const char *data;
        size_t len;
        int result;
};

static void *put_thread(void *p)
{
        struct put_arg *a = p;
        a->result = 0;
        for (int i = 0; i < 50 && a->result == 0; i++)
                a->result = ossb_chunkcache_put(a->cc, a->digest, a->data, a->len, false, NULL);
        return NULL;
}

static void test_chunkcache_concurrent_put(void)
{
        _cleanup_free_ char *dir = tmp_dir("cache");
        struct ossb_chunkcache *cc = NULL;
        ASSERT(dir && ossb_chunkcache_open(dir, &cc, NULL) == 0);
        char d[OSSB_DIGEST_STR_LEN + 1];
        size_t len = 256 * 1024;
        _cleanup_free_ char *data = malloc(len);
        ASSERT(data);
        fill_random((unsigned char *) data, len, 99);
        ossb_sha256_digest(data, len, d);
        pthread_t t[4];
        struct put_arg a[4];
        for (int i = 0; i < 4; i++) {
                a[i] = (struct put_arg) { cc, d, data, len, 0 };
                ASSERT(pthread_create(&t[i], NULL, put_thread, &a[i]) == 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 4; i++)
                ASSERT_INTEQ(a[i].result, 0);
        ASSERT_INTEQ(ossb_chunkcache_verify(cc, d, NULL), 0);
        int64_t chunks = 0;
        ASSERT(ossb_chunkcache_usage(dir, NULL, &chunks, NULL) == 0);
        ASSERT_INTEQ(chunks, 1);
        DIR *dd = opendir(ossb_chunkcache_path(cc));
        int entries = 0;
        for (struct dirent *de; dd && (de = readdir(dd));)
                entries += de->d_name[0] != '.';
        if (dd)
                closedir(dd);
        ASSERT_INTEQ(entries, 1); /* no temp file left */
        ossb_chunkcache_free(cc);
}

/* --- the remote source: metadata ----------------------------------------------------------- */

struct listing {
        char names[1024];
        int whiteouts, dirs;
        uint64_t ino_sum;
};

static int list_cb(void *ud, const char *name, unsigned char type, uint64_t ino)
{
        struct listing *l = ud;
        size_t len = strlen(l->names);
        snprintf(l->names + len, sizeof(l->names) - len, "%s%s", len ? "," : "", name);
        l->whiteouts += type == DT_CHR;
        l->dirs += type == DT_DIR;
        l->ino_sum += ino;
        return 0;
}

static int list_noino(void *ud, const char *name, unsigned char type)
{
        return list_cb(ud, name, type, 0);
}

static void check_metadata(struct ossb_fs_source *src)
{
        const struct ossb_fs_source_ops *o = src->ops;
        void *c = src->ctx;
        struct stat st, st2;
        unsigned fl = 99;
        ASSERT(o->getattr(c, "", &st, &fl) == 0 && S_ISDIR(st.st_mode) && fl == 0);
        ASSERT(o->getattr(c, "etc/os-release", &st, &fl) == 0);
        ASSERT(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644 && st.st_size == (off_t) strlen(os_release));
        ASSERT_INTEQ(st.st_mtim.tv_sec, 1700000000);
        ASSERT(o->getattr(c, "etc/passwd", &st, NULL) == 0 && st.st_uid == 7 && st.st_gid == 8);
        /* implied parents */
        ASSERT(o->getattr(c, "a/b", &st, NULL) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755);
        ASSERT(o->getattr(c, "a/b/c/mid", &st, NULL) == 0 && st.st_size == MID_LEN);
        /* hard link: the same inode, two links */
        ASSERT(o->getattr(c, "usr/bin/big", &st, NULL) == 0 && o->getattr(c, "usr/bin/hl", &st2, NULL) == 0);
        ASSERT(st.st_ino == st2.st_ino && st.st_nlink == 2 && st2.st_nlink == 2 && st2.st_size == BIG_LEN);
        /* symlink */
        char target[64];
        ASSERT(o->getattr(c, "usr/lib/link", &st, NULL) == 0 && S_ISLNK(st.st_mode) && st.st_size == 10);
        ASSERT_INTEQ(o->readlink(c, "usr/lib/link", target, sizeof(target)), 10);
        ASSERT_STREQ(target, "../bin/big");
        ASSERT_INTEQ(o->readlink(c, "usr/lib/link", target, 5), -ERANGE);
        ASSERT_INTEQ(o->readlink(c, "etc/passwd", target, sizeof(target)), -EINVAL);
        /* whiteouts and opaque directories */
        ASSERT(o->getattr(c, "var/gone", &st, &fl) == 0 && fl == OSSB_FS_WHITEOUT && S_ISCHR(st.st_mode) &&
               st.st_rdev == 0);
        ASSERT_INTEQ(o->getattr(c, "var/.wh.gone", &st, &fl), -ENOENT);
        ASSERT(o->getattr(c, "opq", &st, &fl) == 0 && fl == OSSB_FS_OPAQUE);
        ASSERT(o->getattr(c, "dev/null", &st, NULL) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
        ASSERT_INTEQ(o->getattr(c, ".prefetch.landmark", &st, NULL), -ENOENT);
        ASSERT_INTEQ(o->getattr(c, "nope", &st, NULL), -ENOENT);
        ASSERT_INTEQ(o->getattr(c, "etc/os-release/x", &st, NULL), -ENOENT);
        /* listings */
        struct listing root = { 0 }, var = { 0 }, opq = { 0 };
        ASSERT(o->readdir_ino(c, "", list_cb, &root) == 0);
        ASSERT_STREQ(root.names, "etc,usr,a,empty,var,opq,dev");
        ASSERT(root.ino_sum > 0);
        ASSERT(o->readdir(c, "var", list_noino, &var) == 0);
        ASSERT_STREQ(var.names, "gone");
        ASSERT_INTEQ(var.whiteouts, 1);
        ASSERT(o->readdir(c, "opq", list_noino, &opq) == 0);
        ASSERT_STREQ(opq.names, "keep");
        ASSERT_INTEQ(o->readdir(c, "etc/passwd", list_noino, &opq), -ENOTDIR);
        ASSERT_INTEQ(o->readdir(c, "nope", list_noino, &opq), -ENOENT);
        /* xattrs: overlay-private names hidden */
        char xb[64];
        ASSERT_INTEQ(o->getxattr(c, "etc/passwd", "user.test", NULL, 0), 5);
        ASSERT_INTEQ(o->getxattr(c, "etc/passwd", "user.test", xb, sizeof(xb)), 5);
        ASSERT(memcmp(xb, "value", 5) == 0);
        ASSERT_INTEQ(o->getxattr(c, "etc/passwd", "user.test", xb, 2), -ERANGE);
        ASSERT_INTEQ(o->getxattr(c, "etc/passwd", "user.overlay.hidden", xb, sizeof(xb)), -ENODATA);
        ASSERT_INTEQ(o->listxattr(c, "etc/passwd", NULL, 0), 10);
        ASSERT_INTEQ(o->listxattr(c, "etc/passwd", xb, sizeof(xb)), 10);
        ASSERT_STREQ(xb, "user.test");
        ASSERT_INTEQ(o->listxattr(c, "etc/os-release", xb, sizeof(xb)), 0);
        ASSERT_INTEQ(o->getxattr(c, "nope", "user.test", xb, sizeof(xb)), -ENOENT);
        /* open */
        void *h = NULL;
        ASSERT_INTEQ(o->open(c, "etc", &h), -EISDIR);
        ASSERT_INTEQ(o->open(c, "var/gone", &h), -ENOENT);
        ASSERT_INTEQ(o->handle_fd ? 0 : 1, 0);
}

static void metadata_case(const struct layer *l)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, l);
        struct ossb_fs_source *src = source_new(l, &f, cache, false, false);
        ASSERT(src);
        ASSERT(ossb_fs_source_is_remote(src));
        int failed_before = tap_current_failed;
        check_metadata(src);
        bool ok = tap_current_failed == failed_before;
        int calls = f.calls;
        ossb_fs_source_free(src);
        ASSERT(ok);
        ASSERT_INTEQ(calls, 0); /* metadata never fetches */
}

static void test_metadata_estargz(void)
{
        metadata_case(&estargz);
}

static void test_metadata_zstd_chunked(void)
{
        metadata_case(&zchunked);
}

/* --- the remote source: reads -------------------------------------------------------------- */

static void reads_case(const struct layer *l)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, l);
        struct ossb_fs_source *src = source_new(l, &f, cache, false, false);
        ASSERT(src);
        unsigned char *got = NULL, *got_hl = NULL, *got_mid = NULL;
        unsigned char piece[200000];
        ssize_t n = read_all(src, "usr/bin/big", 128 * 1024, &got);
        struct ossb_fs_remote_stats st1, st2;
        ossb_fs_source_remote_get_stats(src, &st1);
        ssize_t n_hl = read_all(src, "usr/bin/hl", 1000000, &got_hl); /* from the cache */
        ossb_fs_source_remote_get_stats(src, &st2);
        ssize_t n_mid = read_all(src, "a/b/c/mid", 4096, &got_mid);
        /* across a chunk boundary, and past the end */
        ssize_t nb = read_at(src, "usr/bin/big", piece, sizeof(piece), 4 * 1024 * 1024 - 100000);
        bool bound_ok = nb == sizeof(piece) && memcmp(piece, big + 4 * 1024 * 1024 - 100000, sizeof(piece)) == 0;
        ssize_t tail = read_at(src, "usr/bin/big", piece, sizeof(piece), BIG_LEN - 10);
        ssize_t past = read_at(src, "usr/bin/big", piece, sizeof(piece), BIG_LEN + 10);
        ssize_t empty = read_at(src, "empty", piece, sizeof(piece), 0);
        ssize_t osr = read_at(src, "etc/os-release", piece, sizeof(piece), 0);
        bool osr_ok = osr == (ssize_t) strlen(os_release) && memcmp(piece, os_release, (size_t) osr) == 0;
        bool big_ok = n == BIG_LEN && memcmp(got, big, BIG_LEN) == 0;
        bool hl_ok = n_hl == BIG_LEN && memcmp(got_hl, big, BIG_LEN) == 0;
        bool mid_ok = n_mid == MID_LEN && memcmp(got_mid, mid, MID_LEN) == 0;
        free(got);
        free(got_hl);
        free(got_mid);
        ossb_fs_source_free(src);
        ASSERT(big_ok && hl_ok && mid_ok && bound_ok && osr_ok);
        ASSERT_INTEQ(tail, 10);
        ASSERT_INTEQ(past, 0);
        ASSERT_INTEQ(empty, 0);
        ASSERT(st1.chunks_fetched >= 1 && st1.fetched_bytes > 0 && st1.bad_chunks == 0);
        ASSERT_INTEQ(st1.bytes_read, BIG_LEN);
        /* each chunk came once: reading the hard link fetched nothing */
        ASSERT_INTEQ(st2.fetches, st1.fetches);
        ASSERT_INTEQ(st2.chunks_fetched, st1.chunks_fetched);
        if (l->kind == OSSB_COMPRESSION_ESTARGZ)
                ASSERT_INTEQ(st1.chunks_fetched, 3); /* 9 MiB: 4 + 4 + 1 */
}

static void test_reads_estargz(void)
{
        reads_case(&estargz);
}

static void test_reads_zstd_chunked(void)
{
        reads_case(&zchunked);
}

/* One read spanning two chunks: one fetch call with both; no read-ahead past them. */
static void test_merged_fetch(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &estargz);
        struct ossb_fs_remote_opts o = {
                .name = "merged", .blob_size = (int64_t) estargz.len, .toc = decode(&estargz), .fetch = fake_fetch,
                .fetch_userdata = &f, .cache_dir = cache, .readahead = -1,
        };
        struct ossb_fs_source *src = NULL;
        ASSERT(o.toc && ossb_fs_source_remote_new(&o, &src, NULL) == 0);
        static unsigned char buf[300000];
        ssize_t n = read_at(src, "usr/bin/big", buf, sizeof(buf), 4 * 1024 * 1024 - 1000);
        struct ossb_fs_remote_stats st;
        ossb_fs_source_remote_get_stats(src, &st);
        ossb_fs_source_free(src);
        ASSERT_INTEQ(n, sizeof(buf));
        ASSERT(memcmp(buf, big + 4 * 1024 * 1024 - 1000, sizeof(buf)) == 0);
        ASSERT_INTEQ(f.calls, 1);
        ASSERT_INTEQ(f.ranges, 2);
        ASSERT_INTEQ(st.chunks_fetched, 2);
}

/* Files read one after another in blob order: the first read of the second one fetches the
 * files after it in the same call, so reading the next ones costs no fetch; the same reads
 * out of order, or with read-ahead off, fetch file by file. */
static void seq_case(int64_t readahead, const char *const *order, size_t n, int *ret_calls)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &zchunked);
        struct ossb_fs_remote_opts o = {
                .name = "seq", .blob_size = (int64_t) zchunked.len, .toc = decode(&zchunked), .fetch = fake_fetch,
                .fetch_userdata = &f, .cache_dir = cache, .readahead = readahead,
        };
        struct ossb_fs_source *src = NULL;
        *ret_calls = -1;
        if (!o.toc || ossb_fs_source_remote_new(&o, &src, NULL) < 0)
                return;
        unsigned char buf[4096];
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
                ssize_t r = read_at(src, order[i], buf, sizeof(buf), 0);
                if (r < 0)
                        fprintf(stderr, "# %s: %s\n", order[i], strerror((int) -r));
                ok = ok && r >= 0;
        }
        ssize_t osr = read_at(src, "etc/os-release", buf, sizeof(buf), 0);
        ok = ok && osr == (ssize_t) strlen(os_release) && memcmp(buf, os_release, (size_t) osr) == 0;
        ossb_fs_source_free(src);
        *ret_calls = ok ? f.calls : -1;
}

static void test_sequential_readahead(void)
{
        /* blob order: etc/os-release, etc/passwd, (the landmark,) usr/bin/big */
        static const char *const in_order[] = { "etc/os-release", "etc/passwd", "usr/bin/big" };
        static const char *const reversed[] = { "usr/bin/big", "etc/passwd", "etc/os-release" };
        int in_seq = 0, rev = 0, off = 0;
        seq_case(0, in_order, ELEMENTSOF(in_order), &in_seq);
        seq_case(0, reversed, ELEMENTSOF(reversed), &rev);
        seq_case(-1, in_order, ELEMENTSOF(in_order), &off);
        fprintf(stderr, "# fetch calls: in order %d, reversed %d, read-ahead off %d\n", in_seq, rev, off);
        ASSERT(in_seq > 0 && rev > 0 && off > 0);
        ASSERT_INTEQ(in_seq, 2); /* os-release, then passwd with big's first chunk after it */
        ASSERT_INTEQ(rev, 3);
        ASSERT_INTEQ(off, 3);
}

/* A corrupted chunk: EIO and a message naming the layer and the file; never wrong bytes;
 * nothing cached; served once the bytes are right again. */
static void test_corrupt_chunk(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct ossb_toc *toc = decode(&estargz);
        int64_t at = -1;
        for (size_t i = 0; toc && i < toc->n; i++)
                if (streq(toc->entries[i].path, "usr/bin/big"))
                        at = (toc->entries[i].chunks[1].offset + toc->entries[i].chunks[1].end) / 2;
        ossb_toc_free(toc);
        ASSERT(at > 0);
        struct fake f;
        fake_init(&f, &estargz);
        f.corrupt_at = at;
        f.corrupt_times = -1;
        struct ossb_fs_source *src = source_new(&estargz, &f, cache, false, false);
        ASSERT(src);
        static unsigned char buf[65536];
        memset(buf, 0x55, sizeof(buf));
        ssize_t first = read_at(src, "usr/bin/big", buf, 4096, 0);                 /* chunk 0: fine */
        ssize_t n = read_at(src, "usr/bin/big", buf, sizeof(buf), 5 * 1024 * 1024); /* chunk 1: damaged */
        ssize_t n2 = read_at(src, "usr/bin/hl", buf, sizeof(buf), 5 * 1024 * 1024);
        _cleanup_free_ char *msg = ossb_fs_source_remote_error(src);
        struct ossb_fs_remote_stats st;
        ossb_fs_source_remote_get_stats(src, &st);
        f.corrupt_at = -1; /* the network heals */
        ssize_t n3 = read_at(src, "usr/bin/big", buf, sizeof(buf), 5 * 1024 * 1024);
        bool right = n3 == sizeof(buf) && memcmp(buf, big + 5 * 1024 * 1024, sizeof(buf)) == 0;
        ossb_fs_source_free(src);
        ASSERT_INTEQ(first, 4096);
        ASSERT_INTEQ(n, -EIO);
        ASSERT_INTEQ(n2, -EIO);
        ASSERT(msg && strstr(msg, "test-estargz") && strstr(msg, "usr/bin/big"));
        ASSERT(st.bad_chunks >= 2);
        ASSERT(right);
        /* only verified chunks reached the cache */
        struct ossb_chunkcache *cc = NULL;
        ASSERT(ossb_chunkcache_open(cache, &cc, NULL) == 0);
        DIR *d = opendir(ossb_chunkcache_path(cc));
        int bad = 0;
        for (struct dirent *de; d && (de = readdir(d));) {
                char dg[OSSB_DIGEST_STR_LEN + 1];
                snprintf(dg, sizeof(dg), "sha256:%.64s", de->d_name);
                if (de->d_name[0] != '.' && ossb_chunkcache_verify(cc, dg, NULL) != 0)
                        bad++;
        }
        if (d)
                closedir(d);
        ossb_chunkcache_free(cc);
        ASSERT_INTEQ(bad, 0);
}

static void test_fetch_failure(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &zchunked);
        f.fail = true;
        struct ossb_fs_source *src = source_new(&zchunked, &f, cache, false, false);
        ASSERT(src);
        char buf[64];
        ssize_t n = read_at(src, "etc/os-release", buf, sizeof(buf), 0);
        _cleanup_free_ char *msg = ossb_fs_source_remote_error(src);
        f.fail = false;
        ssize_t n2 = read_at(src, "etc/os-release", buf, sizeof(buf), 0);
        ossb_fs_source_free(src);
        ASSERT_INTEQ(n, -EIO);
        ASSERT(msg && strstr(msg, "network is down") && strstr(msg, "test-zstd-chunked"));
        ASSERT_INTEQ(n2, (ssize_t) strlen(os_release));
        ASSERT(memcmp(buf, os_release, (size_t) n2) == 0);
}

/* Two sources (two builds) share the cache; a chunk pruned under a source is fetched again. */
static void test_shared_cache(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f1, f2;
        fake_init(&f1, &estargz);
        fake_init(&f2, &estargz);
        struct ossb_fs_source *a = source_new(&estargz, &f1, cache, false, false);
        struct ossb_fs_source *b = source_new(&estargz, &f2, cache, false, false);
        ASSERT(a && b);
        unsigned char *x = NULL, *y = NULL, *z = NULL;
        ssize_t na = read_all(a, "a/b/c/mid", 65536, &x);
        ssize_t nb = read_all(b, "a/b/c/mid", 65536, &y);
        struct ossb_fs_remote_stats sb;
        ossb_fs_source_remote_get_stats(b, &sb);
        int64_t freed = 0;
        int pr = ossb_chunkcache_prune(cache, 0, &freed, NULL);
        ssize_t nz = read_all(a, "a/b/c/mid", 65536, &z);
        bool ok = na == MID_LEN && nb == MID_LEN && nz == MID_LEN && !memcmp(x, mid, MID_LEN) && !memcmp(y, mid, MID_LEN) &&
                  !memcmp(z, mid, MID_LEN);
        free(x);
        free(y);
        free(z);
        int calls_a = f1.calls;
        ossb_fs_source_free(a);
        ossb_fs_source_free(b);
        ASSERT(ok);
        ASSERT_INTEQ(f2.calls, 0);
        ASSERT(sb.cache_hits >= 1);
        ASSERT_INTEQ(pr, 0);
        ASSERT(freed >= MID_LEN);
        ASSERT_INTEQ(calls_a, 2); /* fetched again after the prune */
}

static void test_prefetch(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &estargz);
        struct ossb_fs_source *src = source_new(&estargz, &f, cache, true, false);
        ASSERT(src);
        int k = ossb_fs_source_remote_wait(src, NULL);
        struct ossb_fs_remote_stats st;
        ossb_fs_source_remote_get_stats(src, &st);
        int calls = f.calls;
        char buf[128];
        ssize_t n = read_at(src, "etc/passwd", buf, sizeof(buf), 0);
        int calls2 = f.calls;
        ossb_fs_source_free(src);
        ASSERT_INTEQ(k, 0);
        ASSERT(st.prefetch_done);
        ASSERT_INTEQ(calls, 1);                 /* the landmark's files in one fetch */
        ASSERT_INTEQ(st.prefetched_chunks, 2);  /* etc/os-release, etc/passwd */
        ASSERT_INTEQ(n, (ssize_t) strlen(passwd));
        ASSERT(memcmp(buf, passwd, (size_t) n) == 0);
        ASSERT_INTEQ(calls2, 1); /* served from the prefetch */
}

static void test_background(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &zchunked);
        struct ossb_fs_source *src = source_new(&zchunked, &f, cache, true, true);
        ASSERT(src);
        int k = ossb_fs_source_remote_wait(src, NULL);
        int calls = f.calls;
        unsigned char *got = NULL;
        ssize_t n = read_all(src, "usr/bin/big", 1 << 20, &got);
        bool ok = n == BIG_LEN && memcmp(got, big, BIG_LEN) == 0;
        free(got);
        struct ossb_fs_remote_stats st;
        ossb_fs_source_remote_get_stats(src, &st);
        int calls2 = f.calls;
        ossb_fs_source_free(src);
        ASSERT_INTEQ(k, 0);
        ASSERT(ok);
        ASSERT(calls > 2); /* in pieces of max_fetch */
        ASSERT_INTEQ(calls2, calls);
        ASSERT_INTEQ(st.prefetched_chunks, st.chunks_fetched);
}

/* Freeing a source while its background work runs stops it. */
static void test_free_while_background(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &estargz);
        struct ossb_fs_source *src = source_new(&estargz, &f, cache, false, true);
        ASSERT(src);
        ossb_fs_source_free(src);
}

struct reader {
        struct ossb_fs_source *src;
        int64_t off;
        bool ok;
};

static void *reader_main(void *p)
{
        struct reader *r = p;
        static const size_t len = 1500000;
        unsigned char *buf = malloc(len);
        r->ok = buf && read_at(r->src, "usr/bin/big", buf, len, r->off) == (ssize_t) len &&
                memcmp(buf, big + r->off, len) == 0;
        free(buf);
        return NULL;
}

static void test_concurrent_readers(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &estargz);
        struct ossb_fs_remote_opts o = {
                .name = "concurrent", .blob_size = (int64_t) estargz.len, .toc = decode(&estargz), .fetch = fake_fetch,
                .fetch_userdata = &f, .cache_dir = cache, .readahead = -1,
        };
        struct ossb_fs_source *src = NULL;
        ASSERT(o.toc && ossb_fs_source_remote_new(&o, &src, NULL) == 0);
        pthread_t t[8];
        struct reader r[8];
        for (int i = 0; i < 8; i++) {
                r[i] = (struct reader) { src, (int64_t) i * 1000000, false };
                ASSERT(pthread_create(&t[i], NULL, reader_main, &r[i]) == 0);
        }
        for (int i = 0; i < 8; i++)
                pthread_join(t[i], NULL);
        struct ossb_fs_remote_stats st;
        ossb_fs_source_remote_get_stats(src, &st);
        ossb_fs_source_free(src);
        for (int i = 0; i < 8; i++)
                ASSERT(r[i].ok);
        ASSERT_INTEQ(st.chunks_fetched, 3); /* each chunk once */
}

static void test_fetch_paths(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &zchunked);
        struct ossb_fs_source *src = source_new(&zchunked, &f, cache, false, false);
        ASSERT(src);
        char *paths[] = { (char *) "a/b/c/mid", (char *) "usr/bin/hl", (char *) "nope", (char *) "etc" };
        int k = ossb_fs_source_remote_fetch_paths(src, paths, ELEMENTSOF(paths), NULL);
        int calls = f.calls;
        unsigned char *got = NULL;
        ssize_t n = read_all(src, "usr/bin/big", 1 << 20, &got);
        free(got);
        int calls2 = f.calls;
        ossb_fs_source_free(src);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(calls, 1);
        ASSERT_INTEQ(n, BIG_LEN);
        ASSERT_INTEQ(calls2, 1);
}

/* A TOC that says what cannot be checked or what lies outside the blob is refused. */
static void test_bad_toc(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, &estargz);
        for (int variant = 0; variant < 3; variant++) {
                struct ossb_toc *toc = decode(&estargz);
                ASSERT(toc);
                for (size_t i = 0; i < toc->n; i++) {
                        struct ossb_toc_entry *e = &toc->entries[i];
                        if (!streq(e->path, "usr/bin/big"))
                                continue;
                        if (variant == 0)
                                e->chunks[1].digest[0] = 0;
                        else if (variant == 1)
                                e->chunks[2].end = (int64_t) estargz.len + 10;
                        else
                                e->chunks[1].file_offset += 1;
                }
                struct ossb_fs_remote_opts o = { .name = "bad", .blob_size = (int64_t) estargz.len, .toc = toc,
                                                 .fetch = fake_fetch, .fetch_userdata = &f, .cache_dir = cache };
                struct ossb_fs_source *src = NULL;
                struct ossb_error *e = NULL;
                int k = ossb_fs_source_remote_new(&o, &src, &e);
                bool named = e && strstr(e->msg, "usr/bin/big");
                ossb_error_free(e);
                ossb_fs_source_free(src);
                ASSERT_INTEQ(k, -EBADMSG);
                ASSERT(named);
        }
}

/* --- through the FUSE filesystem ----------------------------------------------------------- */

static char *slurp(const char *path, size_t *ret_len)
{
        char *data = NULL;
        size_t len = 0;
        if (ossb_read_file(path, 64 * 1024 * 1024, &data, &len, NULL) < 0)
                return NULL;
        *ret_len = len;
        return data;
}

static void test_fuse_mount(void)
{
        if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
                printf("# skipped: mounting needs root and /dev/fuse\n");
                return;
        }
        _cleanup_free_ char *root = tmp_dir("mnt"), *cache = NULL, *upper = NULL, *work = NULL, *mnt = NULL;
        ASSERT(root);
        cache = ossb_path_join(root, "cache");
        upper = ossb_path_join(root, "upper");
        work = ossb_path_join(root, "work");
        mnt = ossb_path_join(root, "mnt");
        ASSERT(mkdir(upper, 0755) == 0 && mkdir(work, 0755) == 0 && mkdir(mnt, 0755) == 0);
        struct fake f;
        fake_init(&f, &estargz);
        struct ossb_fs_source *src = source_new(&estargz, &f, cache, false, false);
        ASSERT(src);
        struct ossb_fusefs_opts o = { .lowers = &src, .n_lowers = 1, .upper = upper, .work = work, .mountpoint = mnt,
                                      .threads = 2 };
        struct ossb_fusefs *fs = NULL;
        struct ossb_error *e = NULL;
        if (ossb_fusefs_mount(&o, &fs, &e) < 0) {
                printf("# skipped: cannot mount: %s\n", e && e->msg ? e->msg : "?");
                ossb_error_free(e);
                return;
        }
        _cleanup_free_ char *p_os = ossb_path_join(mnt, "etc/os-release"), *p_big = ossb_path_join(mnt, "usr/bin/hl");
        _cleanup_free_ char *p_gone = ossb_path_join(mnt, "var/gone"), *p_lm = ossb_path_join(mnt, ".prefetch.landmark");
        size_t l_os = 0, l_big = 0;
        char *os = slurp(p_os, &l_os);
        char *bg = slurp(p_big, &l_big);
        bool gone = access(p_gone, F_OK) != 0 && access(p_lm, F_OK) != 0;
        int uk = ossb_fusefs_unmount(fs, &e);
        ossb_fusefs_free(fs);
        bool ok = os && l_os == strlen(os_release) && !memcmp(os, os_release, l_os) && bg && l_big == BIG_LEN &&
                  !memcmp(bg, big, BIG_LEN);
        free(os);
        free(bg);
        ossb_error_free(e);
        ASSERT(ok);
        ASSERT(gone);
        ASSERT_INTEQ(uk, 0);
}

/* --- through a registry -------------------------------------------------------------------- */

struct regsetup {
        struct ossb_regconf *conf;
        struct ossb_registry *r;
        struct ossb_repo *repo;
        struct ossb_ranged *rr;
};

static void reg_close(struct regsetup *s)
{
        ossb_ranged_free(s->rr);
        ossb_repo_free(s->repo);
        ossb_registry_free(s->r);
        ossb_regconf_free(s->conf);
}

static int reg_open(const char *host, struct regsetup *s, struct ossb_error **e)
{
        memset(s, 0, sizeof(*s));
        char ref_s[256];
        snprintf(ref_s, sizeof(ref_s), "%s/lazy/layer", host);
        struct ossb_reference *ref = NULL;
        int k = ossb_regconf_new(NULL, NULL, NULL, NULL, &s->conf, e);
        if (k >= 0) {
                struct ossb_registry_opts ro = { .conf = s->conf };
                k = ossb_registry_new(&ro, &s->r, e);
        }
        if (k >= 0)
                k = ossb_reference_parse(ref_s, &ref, e);
        if (k >= 0)
                k = ossb_repo_open(s->r, ref, false, &s->repo, e);
        if (k >= 0)
                k = ossb_ranged_new(s->repo, NULL, &s->rr, e);
        ossb_reference_free(ref);
        return k;
}

static int push_layer(struct regsetup *s, const struct layer *l, struct ossb_error **e)
{
        _cleanup_free_ char *root = tmp_dir("pushstore");
        struct ossb_store *st = NULL;
        char d[OSSB_DIGEST_STR_LEN + 1];
        int k = ossb_store_open(root, &st, e);
        if (k >= 0)
                k = ossb_store_put(st, l->data, l->len, l->digest, d, e);
        if (k >= 0) {
                struct ossb_descriptor desc = { .media_type = (char *) "application/vnd.oci.image.layer.v1.tar+gzip",
                                                .size = (int64_t) l->len };
                memcpy(desc.digest, l->digest, sizeof(desc.digest));
                k = ossb_repo_push_blobs(s->repo, st, &desc, 1, e);
        }
        ossb_store_free(st);
        return k;
}

static void test_registry(void)
{
        const char *reg = getenv("OSSB_TEST_REGISTRY");
        if (!reg) {
                printf("# skipped: no test registry (run through test-ranged.sh)\n");
                return;
        }
        struct regsetup s;
        struct ossb_error *e = NULL;
        int k = reg_open(reg, &s, &e);
        if (k >= 0)
                k = push_layer(&s, &estargz, &e);
        if (k < 0)
                fprintf(stderr, "# registry: %s\n", e && e->msg ? e->msg : "?");
        ossb_error_free(e);
        ASSERT_INTEQ(k, 0);
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct ossb_ranged_stats acct = { 0 };
        struct ossb_ranged_blob blob = { .rr = s.rr, .digest = estargz.digest, .size = (int64_t) estargz.len,
                                         .acct = &acct };
        struct ossb_fs_remote_opts o = {
                .name = "registry-layer", .blob_size = (int64_t) estargz.len, .toc = decode(&estargz),
                .fetch = ossb_ranged_blob_fetch, .fetch_userdata = &blob, .cache_dir = cache, .prefetch = true,
        };
        struct ossb_fs_source *src = NULL;
        k = o.toc ? ossb_fs_source_remote_new(&o, &src, NULL) : -EBADMSG;
        int kw = src ? ossb_fs_source_remote_wait(src, NULL) : -1;
        struct ossb_ranged_stats after_prefetch = acct;
        char buf[128];
        ssize_t n = src ? read_at(src, "etc/os-release", buf, sizeof(buf), 0) : -1;
        uint64_t small_bytes = acct.bytes;
        unsigned char *got = NULL;
        ssize_t nb = src ? read_all(src, "a/b/c/mid", 128 * 1024, &got) : -1;
        bool mid_ok = nb == MID_LEN && got && memcmp(got, mid, MID_LEN) == 0;
        free(got);
        ossb_fs_source_free(src);
        reg_close(&s);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(kw, 0);
        ASSERT_INTEQ(after_prefetch.requests, 2); /* resolve + the landmark's files in one request */
        ASSERT_INTEQ(n, (ssize_t) strlen(os_release));
        ASSERT(memcmp(buf, os_release, (size_t) n) == 0);
        ASSERT(small_bytes < estargz.len / 20); /* under 5% of the layer */
        ASSERT(mid_ok);
}

int main(void)
{
        ossb_log_setup(OSSB_LOG_ERROR, false);
        char t[] = "/tmp/ossb-test-source-remote-XXXXXX";
        const char *base = getenv("OSSB_TEST_TMP");
        if (base)
                tmp = ossb_path_join(base, "source-remote");
        else if (mkdtemp(t))
                tmp = strdup(t);
        big = malloc(BIG_LEN);
        mid = malloc(MID_LEN);
        if (!tmp || ossb_mkdir_p(tmp, 0755) < 0 || !big || !mid) {
                printf("Bail out! cannot set up\n");
                return 1;
        }
        fill_random(big, BIG_LEN, 12345);
        fill_random(mid, MID_LEN, 777);
        memset(mid + 1000, 0, 100000); /* something compressible */
        if (make_layer(OSSB_COMPRESSION_ESTARGZ, &estargz) < 0 || make_layer(OSSB_COMPRESSION_ZSTD_CHUNKED, &zchunked) < 0) {
                printf("Bail out! cannot make the test layers\n");
                return 1;
        }
        if (getenv("OSSB_TEST_REGISTRY_ONLY")) {
                RUN_TEST(test_registry);
        } else {
                RUN_TEST(test_chunkcache_basics);
                RUN_TEST(test_chunkcache_prune);
                RUN_TEST(test_chunkcache_concurrent_put);
                RUN_TEST(test_metadata_estargz);
                RUN_TEST(test_metadata_zstd_chunked);
                RUN_TEST(test_reads_estargz);
                RUN_TEST(test_reads_zstd_chunked);
                RUN_TEST(test_merged_fetch);
                RUN_TEST(test_sequential_readahead);
                RUN_TEST(test_corrupt_chunk);
                RUN_TEST(test_fetch_failure);
                RUN_TEST(test_shared_cache);
                RUN_TEST(test_prefetch);
                RUN_TEST(test_background);
                RUN_TEST(test_free_while_background);
                RUN_TEST(test_concurrent_readers);
                RUN_TEST(test_fetch_paths);
                RUN_TEST(test_bad_toc);
                RUN_TEST(test_fuse_mount);
                RUN_TEST(test_registry);
        }
        layer_clear(&estargz);
        layer_clear(&zchunked);
        free(big);
        free(mid);
        if (!base)
                ossb_rm_rf(tmp);
        free(tmp);
        TAP_END();
}
