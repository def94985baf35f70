/* tests/unit/test-replay.c - record and replay (engine/replay.h, and the recording and replay
 * of fuse/source-remote.h): keys, the record (steps, dedup, caps, merging), its file format
 * and a parser that refuses every damaged or hostile variant without crashing, storage and
 * pruning under CACHE/replay, and on an eStargz layer made by ossb's layer writer: the paths a
 * source records, and a replay whose claimed chunks a concurrent reader waits for instead of
 * fetching them itself. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/replay.h"
#include "fuse/source-remote.h"
#include "oci/layer.h"
#include "oci/seekable.h"
#include "oci/store.h"
#include "tests/unit/tap.h"

static char *tmp;
static int seq;

static char *tmp_dir(const char *what)
{
        char *d = NULL;
        if (asprintf(&d, "%s/%s-%d", tmp, what, ++seq) < 0 || ossb_mkdir_p(d, 0755) < 0) {
                free(d);
                return NULL;
        }
        return d;
}

static const char KEY[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* --- keys ---------------------------------------------------------------------------------- */

static void test_keys(void)
{
        char a[65], b[65], c[65], d[65];
        const char *p1[] = { "ab", "c" }, *p2[] = { "a", "bc" }, *p3[] = { "ab", NULL }, *p4[] = { "ab", "" };
        ASSERT_INTEQ(ossb_replay_key("dom", p1, 2, a), 0);
        ASSERT_INTEQ(ossb_replay_key("dom", p2, 2, b), 0);
        ASSERT(strcmp(a, b) != 0); /* length-prefixed: no ambiguity */
        ASSERT_INTEQ(ossb_replay_key("other", p1, 2, c), 0);
        ASSERT(strcmp(a, c) != 0);
        ASSERT_INTEQ(ossb_replay_key("dom", p3, 2, c), 0);
        ASSERT_INTEQ(ossb_replay_key("dom", p4, 2, d), 0);
        ASSERT_STREQ(c, d); /* NULL is empty */
        ASSERT_INTEQ(ossb_replay_key("dom", p1, 2, d), 0);
        ASSERT_STREQ(a, d);
        ASSERT_INTEQ(strlen(a), 64);
        ASSERT_INTEQ(strspn(a, "0123456789abcdef"), 64);
}

/* --- the record ---------------------------------------------------------------------------- */

static void test_record_add(void)
{
        struct ossb_replay_record *r = ossb_replay_record_new();
        ASSERT(r);
        char *s1[] = { "etc/os-release", "bin/sh", "etc/os-release", "/abs", "a/../b", "", "a//b", "a/./b", "x/",
                       "./x", "..", "lib/libc.so.6", NULL };
        char *s2[] = { "bin/sh", "usr/bin/cat", NULL };
        char *s1b[] = { "lib/libc.so.6", "usr/lib/x", NULL };
        int k1 = ossb_replay_record_add(r, "0/1", "RUN one", s1);
        int k2 = ossb_replay_record_add(r, "0/2", "RUN two", s2);
        int k3 = ossb_replay_record_add(r, "0/1", "ignored", s1b);
        size_t n_steps = r->n_steps, n_paths = r->n_paths, n0 = r->steps[0].n_paths;
        _cleanup_free_ char *label = strdup(r->steps[0].label);
        _cleanup_strv_free_ char **all = NULL;
        int k4 = ossb_replay_record_paths(r, &all);
        _cleanup_free_ char *joined = all ? ossb_strv_join(all, ",") : NULL;
        ossb_replay_record_free(r);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT_INTEQ(k3, 0);
        ASSERT_INTEQ(k4, 0);
        ASSERT_INTEQ(n_steps, 2);
        ASSERT_INTEQ(n0, 4);
        ASSERT_INTEQ(n_paths, 6);
        ASSERT_STREQ(label, "RUN one");
        ASSERT_STREQ(joined, "etc/os-release,bin/sh,lib/libc.so.6,usr/lib/x,usr/bin/cat");
}

static void test_record_merge(void)
{
        struct ossb_replay_record *now = ossb_replay_record_new(), *old = ossb_replay_record_new();
        struct ossb_replay_record *base = ossb_replay_record_new();
        ASSERT(now && old && base);
        char *a[] = { "new/a", NULL }, *b[] = { "old/b", NULL }, *c[] = { "old/c", NULL };
        ossb_replay_record_add(now, "0/1", "RUN changed", a);
        ossb_replay_record_add(old, "0/1", "RUN before", b); /* replaced by now's 0/1 */
        ossb_replay_record_add(old, "0/2", "RUN hit", c);    /* kept: this build did not run it */
        old->capped = true;
        int k1 = ossb_replay_record_merge(now, old, NULL);
        int k2 = ossb_replay_record_merge(base, now, "k:");
        _cleanup_strv_free_ char **all = NULL;
        ossb_replay_record_paths(now, &all);
        _cleanup_free_ char *joined = all ? ossb_strv_join(all, ",") : NULL;
        _cleanup_free_ char *id = base->n_steps == 2 ? strdup(base->steps[1].id) : NULL;
        bool capped = now->capped;
        ossb_replay_record_free(now);
        ossb_replay_record_free(old);
        ossb_replay_record_free(base);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT_STREQ(joined, "new/a,old/c");
        ASSERT_STREQ(id, "k:0/2");
        ASSERT(capped);
}

static void test_record_caps(void)
{
        struct ossb_replay_record *r = ossb_replay_record_new();
        char **v = calloc(OSSB_REPLAY_MAX_PATHS + 11, sizeof(char *));
        ASSERT(r && v);
        for (size_t i = 0; i < OSSB_REPLAY_MAX_PATHS + 10; i++)
                if (asprintf(&v[i], "d/%zu", i) < 0)
                        v[i] = NULL;
        int k = ossb_replay_record_add(r, "0/1", "big", v);
        size_t n = r->n_paths;
        bool capped = r->capped;
        /* a full record parses back (quickly: this runs in make check) */
        _cleanup_free_ char *data = NULL;
        size_t len = 0, n_back = 0;
        struct ossb_replay_record *back = NULL;
        int kf = ossb_replay_record_format(r, KEY, 1, &data, &len);
        int kp = kf >= 0 ? ossb_replay_record_parse(data, len, KEY, &back, NULL) : -1;
        if (back)
                n_back = back->n_paths;
        ossb_replay_record_free(back);
        /* one path too long for a record */
        _cleanup_free_ char *lng = malloc(OSSB_REPLAY_MAX_PATH_LEN + 2);
        ASSERT(lng);
        memset(lng, 'x', OSSB_REPLAY_MAX_PATH_LEN + 1);
        lng[OSSB_REPLAY_MAX_PATH_LEN + 1] = 0;
        struct ossb_replay_record *r2 = ossb_replay_record_new();
        char *one[] = { lng, NULL };
        ossb_replay_record_add(r2, "0/1", "long", one);
        size_t n2 = r2->n_paths;
        ossb_replay_record_free(r);
        ossb_replay_record_free(r2);
        ossb_strv_free(v);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(n, OSSB_REPLAY_MAX_PATHS);
        ASSERT(capped);
        ASSERT_INTEQ(kf, 0);
        ASSERT_INTEQ(kp, 0);
        ASSERT_INTEQ(n_back, OSSB_REPLAY_MAX_PATHS);
        ASSERT_INTEQ(n2, 0);
}

/* --- the file format ----------------------------------------------------------------------- */

static struct ossb_replay_record *sample(void)
{
        struct ossb_replay_record *r = ossb_replay_record_new();
        char *s1[] = { "etc/os-release", "with space/and\nnewline", "per%cent", "tab\there", "caf\xc3\xa9", NULL };
        char *s2[] = { "usr/bin/cat", NULL };
        if (!r || ossb_replay_record_add(r, "0/1", "line 2: RUN cat /etc/os-release > /out", s1) < 0 ||
            ossb_replay_record_add(r, "1/onbuild-3", "", s2) < 0) {
                ossb_replay_record_free(r);
                return NULL;
        }
        return r;
}

static void test_format_roundtrip(void)
{
        struct ossb_replay_record *r = sample(), *back = NULL;
        ASSERT(r);
        _cleanup_free_ char *data = NULL, *again = NULL;
        size_t len = 0, len2 = 0;
        int k1 = ossb_replay_record_format(r, KEY, 1700000000, &data, &len);
        struct ossb_error *e = NULL;
        int k2 = k1 >= 0 ? ossb_replay_record_parse(data, len, KEY, &back, &e) : -1;
        if (e)
                fprintf(stderr, "# %s\n", e->msg);
        ossb_error_free(e);
        int k3 = back ? ossb_replay_record_format(back, KEY, back->created, &again, &len2) : -1;
        size_t n = back ? back->n_paths : 0;
        _cleanup_free_ char *p1 = back ? strdup(back->steps[0].paths[1]) : NULL;
        _cleanup_free_ char *lbl = back ? strdup(back->steps[1].label) : NULL;
        ossb_replay_record_free(r);
        ossb_replay_record_free(back);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT_INTEQ(k3, 0);
        ASSERT_INTEQ(n, 6);
        ASSERT_STREQ(p1, "with space/and\nnewline");
        ASSERT_STREQ(lbl, "");
        ASSERT_INTEQ(len, len2);
        ASSERT(memcmp(data, again, len) == 0);
        ASSERT(strstr(data, "path with%20space/and%0Anewline\n"));
        ASSERT(strstr(data, "path per%25cent\n"));
        ASSERT(strstr(data, "end 2 6\n"));
}

static int parse_str(const char *s, const char *key)
{
        struct ossb_replay_record *r = NULL;
        struct ossb_error *e = NULL;
        int k = ossb_replay_record_parse(s, strlen(s), key, &r, &e);
        if (k >= 0 ? e != NULL : !(e && e->msg))
                k = -1000; /* an error without a message, or a message with success */
        ossb_error_free(e);
        ossb_replay_record_free(r);
        return k;
}

#define HEAD "ossb-replay 1\nkey " "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\ncreated 5\ncapped 0\n"

static void test_parse_rejects(void)
{
        static const char *const bad[] = {
                "",
                "ossb-replay 2\n",
                HEAD,                                               /* no end */
                HEAD "end 0 0",                                     /* no final newline */
                HEAD "end 0 0\nx",                                  /* data after the end */
                HEAD "end 1 0\n",                                   /* counts */
                HEAD "path a\nend 0 1\n",                           /* a path before any step */
                HEAD "step 0/1 x\npath ../etc/shadow\nend 1 1\n",   /* escapes the root */
                HEAD "step 0/1 x\npath /etc/shadow\nend 1 1\n",     /* absolute */
                HEAD "step 0/1 x\npath a//b\nend 1 1\n",
                HEAD "step 0/1 x\npath a/./b\nend 1 1\n",
                HEAD "step 0/1 x\npath a\tb\nend 1 1\n",             /* a raw control byte */
                HEAD "step 0/1 x\npath a b\nend 1 1\n",              /* a raw space */
                HEAD "step 0/1 x\npath a%2\nend 1 1\n",              /* a cut escape */
                HEAD "step 0/1 x\npath a%zz\nend 1 1\n",
                HEAD "step 0/1 x\npath a%00b\nend 1 1\n",            /* NUL */
                HEAD "step 0/1 x\npath a\npath a\nend 1 2\n",        /* repeated in a step */
                HEAD "step 0/1 x\nstep 0/1 y\nend 2 0\n",            /* repeated step id */
                HEAD "step 0/1\nend 1 0\n",                          /* no label field */
                HEAD "step  x\nend 1 0\n",                           /* empty id */
                HEAD "step 0/1 x\npath \nend 1 1\n",                 /* empty path */
                HEAD "step 0/1 x\nbogus line\nend 1 0\n",
                HEAD "end 0 -1\n",
                HEAD "end 0 99999999999999999999\n",
                "ossb-replay 1\nkey 0000000000000000000000000000000000000000000000000000000000000000\ncreated 5\n"
                "capped 0\nend 0 0\n",                              /* another key */
                "ossb-replay 1\nkey " "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                "\ncreated -5\ncapped 0\nend 0 0\n",
                "ossb-replay 1\nkey " "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                "\ncreated 5\ncapped 2\nend 0 0\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int k = parse_str(bad[i], KEY);
                if (k != -EBADMSG)
                        fprintf(stderr, "# case %zu: %d\n", i, k);
                ASSERT_INTEQ(k, -EBADMSG);
        }
        ASSERT_INTEQ(parse_str(HEAD "end 0 0\n", KEY), 0);
        ASSERT_INTEQ(parse_str(HEAD "step 0/1 x\npath a%20b\nend 1 1\n", KEY), 0);
}

/* Every prefix of a valid file, and every single flipped byte, parses or is refused cleanly. */
static void test_parse_damaged(void)
{
        struct ossb_replay_record *r = sample();
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        ASSERT(r && ossb_replay_record_format(r, KEY, 1, &data, &len) >= 0);
        ossb_replay_record_free(r);
        int ok_prefix = 0, bad_flip = 0, ok_flip = 0;
        for (size_t n = 0; n < len; n++) {
                _cleanup_free_ char *cut = malloc(n + 1);
                ASSERT(cut);
                memcpy(cut, data, n);
                struct ossb_replay_record *x = NULL;
                if (ossb_replay_record_parse(cut, n, KEY, &x, NULL) >= 0)
                        ok_prefix++;
                ossb_replay_record_free(x);
        }
        for (size_t i = 0; i < len; i++)
                for (int bit = 0; bit < 8; bit += 3) {
                        data[i] ^= (char) (1 << bit);
                        struct ossb_replay_record *x = NULL;
                        int k = ossb_replay_record_parse(data, len, KEY, &x, NULL);
                        if (k == -EBADMSG)
                                bad_flip++;
                        else if (k == 0)
                                ok_flip++; /* e.g. a letter of a path changed: still a valid record */
                        ossb_replay_record_free(x);
                        data[i] ^= (char) (1 << bit);
                        ASSERT(k == 0 || k == -EBADMSG);
                }
        ASSERT_INTEQ(ok_prefix, 0);
        ASSERT(bad_flip > 0);
        ASSERT(ok_flip > 0);
}

/* --- storage ------------------------------------------------------------------------------- */

static void test_save_load_prune(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        _cleanup_free_ char *path = NULL, *old = NULL, *tmpf = NULL, *dir = NULL;
        char k2[65], k3[65];
        const char *p2[] = { "two" }, *p3[] = { "three" };
        ASSERT(cache);
        ossb_replay_key("t", p2, 1, k2);
        ossb_replay_key("t", p3, 1, k3);
        struct ossb_replay_record *r = sample(), *back = NULL;
        ASSERT(r);
        int k = ossb_replay_save(cache, KEY, r, NULL);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(ossb_replay_save(cache, k2, r, NULL), 0);
        ASSERT_INTEQ(ossb_replay_save(cache, k3, r, NULL), 0);
        ossb_replay_record_free(r);
        ASSERT_INTEQ(ossb_replay_load(cache, KEY, &back, NULL), 0);
        ASSERT_INTEQ(back->n_paths, 6);
        ASSERT(back->created > 0);
        ossb_replay_record_free(back);
        ASSERT(asprintf(&dir, "%s/replay", cache) > 0);
        struct stat st;
        ASSERT(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
        /* missing, bad key, damaged */
        back = NULL;
        ASSERT_INTEQ(ossb_replay_load(cache, "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &back, NULL),
                     -ENOENT);
        ASSERT_INTEQ(ossb_replay_load(cache, "../../etc/passwd", &back, NULL), -EINVAL);
        ASSERT(asprintf(&path, "%s/%s", dir, k2) > 0);
        ASSERT(truncate(path, 40) == 0);
        struct ossb_error *e = NULL;
        ASSERT_INTEQ(ossb_replay_load(cache, k2, &back, &e), -EBADMSG);
        ASSERT(e && strstr(e->msg, k2));
        ossb_error_free(e);
        /* a record stored under another key's name is refused (copied files, renames) */
        ASSERT(asprintf(&old, "%s/%s", dir, k3) > 0);
        _cleanup_free_ char *moved = NULL, *bytes = NULL;
        size_t blen = 0;
        ASSERT(asprintf(&moved, "%s/%.63s0", dir, KEY) > 0);
        ASSERT(ossb_read_file(old, 1 << 20, &bytes, &blen, NULL) == 0);
        ASSERT(ossb_write_file_atomic(moved, bytes, blen, 0600, NULL) == 0);
        e = NULL;
        ASSERT_INTEQ(ossb_replay_load(cache, strrchr(moved, '/') + 1, &back, &e), -EBADMSG);
        ASSERT(e && strstr(e->msg, "key"));
        ossb_error_free(e);
        ASSERT(unlink(moved) == 0);
        /* prune: k2 made old, a stale temp file, k3 and KEY recent; then a count limit of 1 */
        struct timespec ts[2] = { { .tv_sec = time(NULL) - 100 * 24 * 3600 }, { .tv_sec = time(NULL) - 100 * 24 * 3600 } };
        ASSERT(utimensat(AT_FDCWD, path, ts, 0) == 0);
        ASSERT(asprintf(&tmpf, "%s/%s.tmp-abcdef", dir, KEY) > 0);
        ASSERT(ossb_write_file_atomic(tmpf, "x", 1, 0600, NULL) == 0);
        ts[0].tv_sec = ts[1].tv_sec = time(NULL) - 7200;
        ASSERT(utimensat(AT_FDCWD, tmpf, ts, 0) == 0);
        ts[0].tv_sec = ts[1].tv_sec = time(NULL) - 60;
        ASSERT(utimensat(AT_FDCWD, old, ts, 0) == 0);
        size_t removed = 0;
        ASSERT_INTEQ(ossb_replay_prune(cache, OSSB_REPLAY_PRUNE_AGE, 0, &removed, NULL), 0);
        ASSERT_INTEQ(removed, 2);
        ASSERT(access(path, F_OK) < 0 && access(tmpf, F_OK) < 0 && access(old, F_OK) == 0);
        ASSERT_INTEQ(ossb_replay_prune(cache, OSSB_REPLAY_PRUNE_AGE, 1, &removed, NULL), 0);
        ASSERT_INTEQ(removed, 1);
        ASSERT(access(old, F_OK) < 0); /* the older of the two went */
        back = NULL;
        ASSERT_INTEQ(ossb_replay_load(cache, KEY, &back, NULL), 0);
        ossb_replay_record_free(back);
        /* a cache dir without records */
        _cleanup_free_ char *empty = tmp_dir("empty");
        ASSERT_INTEQ(ossb_replay_prune(empty, 1, 1, &removed, NULL), 0);
        ASSERT_INTEQ(removed, 0);
}

/* --- the remote source: recording and replay ------------------------------------------------ */

#define A_LEN (700 * 1024) /* one chunk (eStargz's are 4 MiB) */

static unsigned char *fa;
static const char fb[] = "bee\n";

struct layer {
        char *data;
        size_t len;
        json_object *annotations;
};
static struct layer lay;

static int make_layer(void)
{
        _cleanup_free_ char *root = tmp_dir("store");
        struct ossb_store *s = NULL;
        struct ossb_layer_writer *w = NULL;
        struct ossb_error *e = NULL;
        struct ossb_layer_opts o = { .compression = OSSB_COMPRESSION_ESTARGZ, .level = 1, .source_date_epoch = -1,
                                     .threads = 1 };
        char digest[OSSB_DIGEST_STR_LEN + 1], diff[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        const struct ossb_layer_entry ents[] = {
                { .path = "d", .type = OSSB_ENTRY_DIR, .mode = 0755, .mtime_sec = 1700000000 },
                { .path = "d/a", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = A_LEN, .mtime_sec = 1700000000 },
                { .path = "d/b", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = sizeof(fb) - 1, .mtime_sec = 1700000000 },
                { .path = "d/hl", .type = OSSB_ENTRY_HARDLINK, .linkname = "d/a", .mode = 0644 },
                { .path = "d/sl", .type = OSSB_ENTRY_SYMLINK, .linkname = "b", .mode = 0777 },
        };
        const void *data[] = { NULL, fa, fb, NULL, NULL };
        int k = root ? ossb_store_open(root, &s, &e) : -ENOMEM;
        if (k >= 0)
                k = ossb_layer_writer_new(s, &o, &w, &e);
        for (size_t i = 0; k >= 0 && i < ELEMENTSOF(ents); i++)
                k = ents[i].type == OSSB_ENTRY_FILE ? ossb_layer_writer_add_data(w, &ents[i], data[i], (size_t) ents[i].size, &e)
                                                    : ossb_layer_writer_add(w, &ents[i], -1, &e);
        if (k >= 0)
                k = ossb_layer_writer_finish(w, digest, &size, diff, &e);
        if (k >= 0)
                k = ossb_layer_writer_annotations(w, &lay.annotations);
        if (k >= 0)
                k = ossb_store_read_blob(s, digest, 64 * 1024 * 1024, &lay.data, &lay.len, &e);
        if (k < 0)
                fprintf(stderr, "# make_layer: %s\n", e && e->msg ? e->msg : strerror(-k));
        ossb_error_free(e);
        ossb_layer_writer_free(w);
        ossb_store_free(s);
        return k;
}

static struct ossb_toc *decode(void)
{
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        size_t tail = lay.len < OSSB_SEEKABLE_TAIL_SIZE ? lay.len : OSSB_SEEKABLE_TAIL_SIZE;
        int k = ossb_toc_locate(lay.annotations, (int64_t) lay.len, lay.data + lay.len - tail, tail, &loc, NULL);
        if (k >= 0)
                k = ossb_toc_decode(&loc, lay.data + loc.offset, (size_t) loc.length, &toc, NULL);
        return k < 0 ? NULL : toc;
}

/* A fetch function serving the blob from memory; with `gate` it waits until opened. */
struct fake {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int calls;
        bool gate, waiting;
};

static int fake_fetch(void *ud, const struct ossb_range *r, size_t n, ossb_range_cb cb, void *cb_ud,
                      struct ossb_error **err)
{
        struct fake *f = ud;
        pthread_mutex_lock(&f->lock);
        f->calls++;
        f->waiting = true;
        pthread_cond_broadcast(&f->cond);
        while (f->gate)
                pthread_cond_wait(&f->cond, &f->lock);
        f->waiting = false;
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++) {
                if (r[i].offset < 0 || r[i].offset + r[i].length > (int64_t) lay.len)
                        return ossb_error_set(err, -EINVAL, "range outside the blob");
                int k = cb(cb_ud, i, lay.data + r[i].offset, (size_t) r[i].length);
                if (k < 0)
                        return ossb_error_set(err, k, "stopped");
        }
        return 0;
}

static void fake_init(struct fake *f, bool gate)
{
        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        f->gate = gate;
}

static void fake_open_gate(struct fake *f)
{
        pthread_mutex_lock(&f->lock);
        while (!f->waiting) /* the replay is inside its fetch */
                pthread_cond_wait(&f->cond, &f->lock);
        f->gate = false;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static int fake_calls(struct fake *f)
{
        pthread_mutex_lock(&f->lock);
        int n = f->calls;
        pthread_mutex_unlock(&f->lock);
        return n;
}

static struct ossb_fs_source *source_new(struct fake *f, const char *cache, int64_t max_fetch)
{
        struct ossb_fs_remote_opts o = {
                .name = "test-replay", .blob_size = (int64_t) lay.len, .toc = decode(), .fetch = fake_fetch,
                .fetch_userdata = f, .cache_dir = cache, .max_fetch = max_fetch, .readahead = -1,
        };
        struct ossb_fs_source *src = NULL;
        if (!o.toc || ossb_fs_source_remote_new(&o, &src, NULL) < 0)
                return NULL;
        return src;
}

static ssize_t read_file(struct ossb_fs_source *src, const char *path, unsigned char *buf, size_t size)
{
        void *h = NULL;
        int k = src->ops->open(src->ctx, path, &h);
        if (k < 0)
                return k;
        ssize_t off = 0, n;
        while ((size_t) off < size && (n = src->ops->read(src->ctx, h, buf + off, size - (size_t) off, off)) > 0)
                off += n;
        src->ops->release(src->ctx, h);
        return off;
}

static void test_recording(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, false);
        struct ossb_fs_source *src = source_new(&f, cache, 0);
        ASSERT(src);
        unsigned char buf[16];
        char link[16];
        bool capped = true;
        size_t m0 = ossb_fs_source_remote_record_mark(src, &capped);
        ssize_t n1 = read_file(src, "d/b", buf, sizeof(buf));
        ssize_t n2 = src->ops->readlink(src->ctx, "d/sl", link, sizeof(link));
        size_t m1 = ossb_fs_source_remote_record_mark(src, NULL);
        read_file(src, "d/b", buf, sizeof(buf)); /* again: recorded once */
        void *h = NULL;
        int k = src->ops->open(src->ctx, "d/hl", &h);
        if (k >= 0)
                src->ops->release(src->ctx, h);
        int kn = src->ops->open(src->ctx, "d/nope", &h); /* a failed open records nothing */
        size_t m2 = ossb_fs_source_remote_record_mark(src, NULL);
        char **w1 = NULL, **w2 = NULL;
        ossb_fs_source_remote_record_paths(src, m0, m1, &w1);
        ossb_fs_source_remote_record_paths(src, m1, 1000, &w2);
        _cleanup_free_ char *j1 = w1 ? ossb_strv_join(w1, ",") : NULL, *j2 = w2 ? ossb_strv_join(w2, ",") : NULL;
        ossb_strv_free(w1);
        ossb_strv_free(w2);
        int kind_file = ossb_fs_source_remote_path_kind(src, "d/hl");
        int kind_dir = ossb_fs_source_remote_path_kind(src, "d");
        int kind_link = ossb_fs_source_remote_path_kind(src, "d/sl");
        int kind_none = ossb_fs_source_remote_path_kind(src, "x");
        ossb_fs_source_free(src);
        ASSERT_INTEQ(m0, 0);
        ASSERT(!capped);
        ASSERT_INTEQ(n1, 4);
        ASSERT_INTEQ(n2, 1);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(kn, -ENOENT);
        ASSERT_INTEQ(m1, 2);
        ASSERT_INTEQ(m2, 3);
        ASSERT_STREQ(j1, "d/b,d/sl");
        ASSERT_STREQ(j2, "d/hl");
        ASSERT_INTEQ(kind_file, OSSB_FS_REMOTE_FILE);
        ASSERT_INTEQ(kind_dir, OSSB_FS_REMOTE_HIDES);
        ASSERT_INTEQ(kind_link, OSSB_FS_REMOTE_HIDES);
        ASSERT_INTEQ(kind_none, -ENOENT);
}

struct reader {
        struct ossb_fs_source *src;
        unsigned char *buf;
        ssize_t n;
};

static void *reader_main(void *p)
{
        struct reader *r = p;
        r->n = read_file(r->src, "d/hl", r->buf, A_LEN + 1);
        return NULL;
}

/* The replay claims its chunks when it starts: a reader that comes while the replay's fetch is
 * still under way waits for it and fetches nothing itself. */
static void test_replay_reader_waits(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f;
        fake_init(&f, true);
        struct ossb_fs_source *src = source_new(&f, cache, 0);
        ASSERT(src);
        char *paths[] = { "d/b", "d/a", "d/hl", "nope", "d", "d/sl" };
        int k = ossb_fs_source_remote_replay_start(src, paths, ELEMENTSOF(paths), NULL);
        int k2 = ossb_fs_source_remote_replay_start(src, paths, 1, NULL);
        struct reader rd = { .src = src, .buf = malloc(A_LEN + 1) };
        pthread_t t;
        bool started = rd.buf && pthread_create(&t, NULL, reader_main, &rd) == 0;
        fake_open_gate(&f);
        if (started)
                pthread_join(t, NULL);
        ossb_fs_source_remote_replay_stop(src, true);
        struct ossb_fs_remote_replay_stats st;
        struct ossb_fs_remote_stats rst;
        ossb_fs_source_remote_replay_stats(src, &st);
        ossb_fs_source_remote_get_stats(src, &rst);
        int calls = fake_calls(&f);
        bool same = rd.n == A_LEN && memcmp(rd.buf, fa, A_LEN) == 0;
        free(rd.buf);
        ossb_fs_source_free(src);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(k2, -EBUSY);
        ASSERT(started);
        ASSERT(same);
        ASSERT_INTEQ(calls, 1); /* the replay's only: the reader waited */
        ASSERT_INTEQ(st.files, 2);
        ASSERT_INTEQ(st.file_bytes, A_LEN + sizeof(fb) - 1);
        ASSERT_INTEQ(st.fetched_chunks, st.chunks);
        ASSERT(st.fetched_bytes > 0 && st.fetched_bytes == st.compressed_bytes);
        ASSERT(st.done && !st.stopped && !st.failed);
        ASSERT_INTEQ(rst.prefetched_bytes, rst.fetched_bytes); /* none was the reader's */
}

/* In small fetch calls: stopped after the first, the rest is released (reads fetch it); a
 * second source on the same chunk cache replays from the cache without fetching. */
static void test_replay_stop_and_cache(void)
{
        _cleanup_free_ char *cache = tmp_dir("cache");
        struct fake f, f2;
        fake_init(&f, true);
        fake_init(&f2, false);
        struct ossb_fs_source *src = source_new(&f, cache, 1);
        ASSERT(src);
        char *paths[] = { "d/b", "d/a" };
        int k = ossb_fs_source_remote_replay_start(src, paths, ELEMENTSOF(paths), NULL);
        fake_open_gate(&f);
        ossb_fs_source_remote_replay_stop(src, false); /* after the call under way */
        struct ossb_fs_remote_replay_stats st;
        ossb_fs_source_remote_replay_stats(src, &st);
        _cleanup_free_ unsigned char *buf = malloc(A_LEN + 1);
        ssize_t n = buf ? read_file(src, "d/a", buf, A_LEN + 1) : -1;
        bool same = n == A_LEN && memcmp(buf, fa, A_LEN) == 0;
        ossb_fs_source_free(src);
        struct ossb_fs_source *src2 = source_new(&f2, cache, 0);
        ASSERT(src2);
        int k2 = ossb_fs_source_remote_replay_start(src2, paths, ELEMENTSOF(paths), NULL);
        ossb_fs_source_remote_replay_stop(src2, true);
        struct ossb_fs_remote_replay_stats st2;
        ossb_fs_source_remote_replay_stats(src2, &st2);
        int calls2 = fake_calls(&f2);
        ossb_fs_source_free(src2);
        ASSERT_INTEQ(k, 0);
        ASSERT(st.done);
        ASSERT(st.chunks >= 2);
        if (st.stopped) /* the thread may have seen the stop before its second call, or not */
                ASSERT(st.skipped_chunks > 0 && st.fetched_chunks < st.chunks);
        ASSERT(same);
        ASSERT_INTEQ(k2, 0);
        ASSERT_INTEQ(calls2, 0);
        ASSERT_INTEQ(st2.cache_hits, st2.chunks);
        ASSERT_INTEQ(st2.fetched_bytes, 0);
}

int main(void)
{
        ossb_log_setup(OSSB_LOG_ERROR, false);
        char t[] = "/tmp/ossb-test-replay-XXXXXX";
        const char *base = getenv("OSSB_TEST_TMP");
        if (base)
                tmp = ossb_path_join(base, "replay");
        else if (mkdtemp(t))
                tmp = strdup(t);
        fa = malloc(A_LEN);
        if (!tmp || ossb_mkdir_p(tmp, 0755) < 0 || !fa) {
                printf("Bail out! cannot set up\n");
                return 1;
        }
        for (size_t i = 0; i < A_LEN; i++)
                fa[i] = (unsigned char) ((i * 2654435761u) >> 13);
        if (make_layer() < 0) {
                printf("Bail out! cannot make the test layer\n");
                return 1;
        }
        RUN_TEST(test_keys);
        RUN_TEST(test_record_add);
        RUN_TEST(test_record_merge);
        RUN_TEST(test_record_caps);
        RUN_TEST(test_format_roundtrip);
        RUN_TEST(test_parse_rejects);
        RUN_TEST(test_parse_damaged);
        RUN_TEST(test_save_load_prune);
        RUN_TEST(test_recording);
        RUN_TEST(test_replay_reader_waits);
        RUN_TEST(test_replay_stop_and_cache);
        free(lay.data);
        json_object_put(lay.annotations);
        free(fa);
        if (!base)
                ossb_rm_rf(tmp);
        free(tmp);
        TAP_END();
}
