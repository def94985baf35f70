/* tests/unit/test-oci-compress.c - the parallel gzip compressor (oci/pgzip.c through
 * oci/compress.c): round trips through zlib at block boundaries and for several MiB, one gzip
 * member, the header bytes zlib would write, identical bytes for 1, 2 and 4 threads and any
 * write chunking, gzip(1) -t, levels, sink and zlib failures, and freeing unfinished streams. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/compress.h"
#include "oci/pgzip.h"
#include "tests/unit/tap.h"

#define B OSSB_PGZIP_BLOCK
#define MIB (1024 * 1024)

static unsigned char *random_data, *text_data; /* 6 MiB each */
#define DATA_SIZE (6 * MIB)

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t) (rng_state >> 16);
}

static void make_data(void)
{
        static const char *words[] = { "layer ", "image ", "the ", "digest ", "sha256 ", "tar ",
                                       "gzip\n", "a ", "of ", "ossb ", "content ", "store\n" };
        random_data = malloc(DATA_SIZE);
        text_data = malloc(DATA_SIZE);
        if (!random_data || !text_data)
                exit(99);
        for (size_t i = 0; i < DATA_SIZE; i++)
                random_data[i] = (unsigned char) rng();
        for (size_t i = 0; i < DATA_SIZE;) {
                const char *w = words[rng() % ELEMENTSOF(words)];
                for (; *w && i < DATA_SIZE; w++)
                        text_data[i++] = (unsigned char) *w;
        }
}

static int sb_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_strbuf_append_n(userdata, data, len) < 0 ? ossb_error_set(err, -ENOMEM, "oom") : 0;
}

/* Compress with `threads`; chunk 0 writes everything at once, otherwise pseudo-random chunks
 * of 1..chunk bytes. */
static int gz(const void *data, size_t len, int level, unsigned threads, size_t chunk, struct ossb_strbuf *out)
{
        struct ossb_compressor *c = NULL;
        const unsigned char *p = data;
        int r = ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, level, threads, sb_sink, out, &c, NULL);

        while (r >= 0 && len > 0) {
                size_t n = chunk ? 1 + rng() % chunk : len;
                if (n > len)
                        n = len;
                r = ossb_compressor_write(c, p, n, NULL);
                p += n;
                len -= n;
        }
        if (r >= 0)
                r = ossb_compressor_finish(c, NULL);
        ossb_compressor_free(c);
        return r;
}

/* Inflate `gz` as exactly one gzip member that must use all of the input. */
static int gunzip_one(const struct ossb_strbuf *in, unsigned char **ret, size_t *ret_len)
{
        z_stream z = { 0 };
        size_t cap = in->len * 4 + 1024, len = 0;
        unsigned char *out = malloc(cap);
        int zr = Z_OK;

        if (!out || inflateInit2(&z, 15 + 16) != Z_OK) {
                free(out);
                return -ENOMEM;
        }
        z.next_in = (Bytef *) in->buf;
        z.avail_in = (uInt) in->len;
        while (zr == Z_OK) {
                if (cap - len < 65536) {
                        unsigned char *o = realloc(out, cap * 2);
                        if (!o)
                                break;
                        out = o;
                        cap *= 2;
                }
                z.next_out = out + len;
                z.avail_out = (uInt) (cap - len);
                zr = inflate(&z, Z_NO_FLUSH);
                len = cap - z.avail_out;
        }
        inflateEnd(&z);
        if (zr != Z_STREAM_END || z.avail_in != 0) {
                free(out);
                return -EBADMSG;
        }
        *ret = out;
        *ret_len = len;
        return 0;
}

static bool round_trip(const void *data, size_t len, int level, unsigned threads, size_t chunk)
{
        _cleanup_strbuf_ struct ossb_strbuf out = OSSB_STRBUF_INIT;
        _cleanup_free_ unsigned char *back = NULL;
        size_t back_len = 0;

        if (gz(data, len, level, threads, chunk, &out) < 0 || gunzip_one(&out, &back, &back_len) < 0)
                return false;
        if (back_len != len || (len > 0 && memcmp(back, data, len) != 0))
                return false;
        return true;
}

static void test_round_trip_sizes(void)
{
        static const size_t sizes[] = { 0, 1, B - 1, B, B + 1, 2 * B, 3 * B + 17 };
        static const unsigned threads[] = { 1, 4 };
        for (size_t t = 0; t < ELEMENTSOF(threads); t++)
                for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                        ASSERT(round_trip(text_data, sizes[i], -1, threads[t], 0));
                        ASSERT(round_trip(random_data, sizes[i], -1, threads[t], 5000));
                }
}

static void test_round_trip_large(void)
{
        ASSERT(round_trip(random_data, DATA_SIZE, -1, 1, 0));
        ASSERT(round_trip(random_data, DATA_SIZE, -1, 3, 100000));
        ASSERT(round_trip(text_data, DATA_SIZE, -1, 4, 300000));
        ASSERT(round_trip(text_data, 4 * MIB + 3, 1, 2, 0));
        ASSERT(round_trip(text_data, 2 * MIB, 9, 2, 65536));
        ASSERT(round_trip(random_data, 2 * MIB, 0, 2, 65536)); /* stored blocks */
        ASSERT(round_trip(text_data, 2 * MIB + 5, 0, 1, 0));
}

/* The same bytes for any thread count, chunking and run; text compresses well. */
static void test_deterministic(void)
{
        _cleanup_strbuf_ struct ossb_strbuf ref = OSSB_STRBUF_INIT;
        _cleanup_free_ unsigned char *mixed = malloc(4 * MIB);
        static const unsigned threads[] = { 1, 2, 4, 1, 2, 4 };

        ASSERT(mixed);
        for (size_t i = 0; i < 4; i++)
                memcpy(mixed + i * MIB, i % 2 ? random_data + i * MIB : text_data + i * MIB, MIB);
        ASSERT(gz(mixed, 4 * MIB, -1, 1, 0, &ref) == 0);
        ASSERT(ref.len < 3 * MIB); /* the text half compressed */
        for (size_t i = 0; i < ELEMENTSOF(threads); i++) {
                _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
                ASSERT(gz(mixed, 4 * MIB, -1, threads[i], i < 3 ? 0 : 77777, &o) == 0);
                ASSERT_INTEQ(o.len, ref.len);
                ASSERT(memcmp(o.buf, ref.buf, ref.len) == 0);
        }
        /* the default thread count too */
        _cleanup_strbuf_ struct ossb_strbuf d = OSSB_STRBUF_INIT;
        ASSERT(gz(mixed, 4 * MIB, -1, 0, 4096, &d) == 0);
        ASSERT(d.len == ref.len && memcmp(d.buf, ref.buf, ref.len) == 0);
}

/* Blocks that look random are stored whatever the level: the deflate data is the same as at
 * level 0 (everything after the header, whose XFL byte names the level); text and a block
 * half text are compressed. */
static bool same_as_level0(const void *data, size_t len, int level)
{
        _cleanup_strbuf_ struct ossb_strbuf a = OSSB_STRBUF_INIT, b = OSSB_STRBUF_INIT;
        if (gz(data, len, level, 2, 0, &a) < 0 || gz(data, len, 0, 2, 0, &b) < 0)
                return false;
        return a.len == b.len && memcmp(a.buf + 10, b.buf + 10, a.len - 10) == 0;
}

static void test_random_blocks_stored(void)
{
        _cleanup_free_ unsigned char *half = malloc(B);
        _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
        ASSERT(half);
        memcpy(half, random_data, B / 2);
        memcpy(half + B / 2, text_data, B / 2);
        ASSERT(same_as_level0(random_data, 3 * B, -1));
        ASSERT(same_as_level0(random_data, 3 * B, 9));
        ASSERT(!same_as_level0(text_data, 3 * B, -1));
        ASSERT(!same_as_level0(half, B, -1));
        ASSERT(gz(half, B, -1, 2, 0, &o) == 0 && o.len < B * 3 / 4);
        ASSERT(round_trip(half, B, -1, 2, 0));
}

/* The header is the one zlib writes with our gz_header (mtime 0, OS 255, XFL by level). */
static void test_header(void)
{
        static const int levels[] = { -1, 0, 1, 2, 6, 9 };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
                unsigned char zh[64];
                z_stream z = { 0 };
                gz_header h = { .os = 255 };
                ASSERT(deflateInit2(&z, levels[i], Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
                ASSERT(deflateSetHeader(&z, &h) == Z_OK);
                z.next_in = (Bytef *) "x";
                z.avail_in = 1;
                z.next_out = zh;
                z.avail_out = sizeof(zh);
                int zr = deflate(&z, Z_FINISH);
                deflateEnd(&z);
                ASSERT(zr == Z_STREAM_END);
                ASSERT(gz("x", 1, levels[i], 1, 0, &o) == 0);
                ASSERT(o.len > 18);
                ASSERT(memcmp(o.buf, zh, 10) == 0);
                /* trailer: CRC-32 and ISIZE of "x" */
                uLong crc = crc32(0L, (const Bytef *) "x", 1);
                const unsigned char *t = (const unsigned char *) o.buf + o.len - 8;
                ASSERT_INTEQ(t[0] | t[1] << 8 | t[2] << 16 | (uLong) t[3] << 24, crc);
                ASSERT(t[4] == 1 && t[5] == 0 && t[6] == 0 && t[7] == 0);
        }
}

static void test_gzip_cli(void)
{
        _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
        char path[] = "/tmp/ossb-test-compress-XXXXXX";
        int fd;

        if (system("gzip --version >/dev/null 2>&1") != 0) {
                printf("# gzip(1) not found: skipped\n");
                return;
        }
        ASSERT(gz(text_data, 3 * MIB + 11, -1, 4, 0, &o) == 0);
        fd = mkstemp(path);
        ASSERT(fd >= 0);
        ASSERT(write(fd, o.buf, o.len) == (ssize_t) o.len);
        close(fd);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "gzip -t < %s", path);
        ASSERT_INTEQ(system(cmd), 0);
        snprintf(cmd, sizeof(cmd), "test \"$(gzip -dc < %s | wc -c)\" = %d", path, 3 * MIB + 11);
        ASSERT_INTEQ(system(cmd), 0);
        unlink(path);
}

static void test_invalid_args(void)
{
        struct ossb_compressor *c = NULL;
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
        ASSERT_INTEQ(ossb_compressor_new(OSSB_COMPRESSION_GZIP, 10, sb_sink, NULL, &c, &e1), -EINVAL);
        ASSERT(strstr(e1->msg, "out of range"));
        ASSERT_INTEQ(ossb_compressor_new(OSSB_COMPRESSION_GZIP, -2, sb_sink, NULL, &c, NULL), -EINVAL);
        ASSERT_INTEQ(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, -1, 65, sb_sink, NULL, &c, &e2), -EINVAL);
        ASSERT(strstr(e2->msg, "threads"));
        ASSERT(c == NULL);

        /* write or finish after finish */
        _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
        ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, -1, 2, sb_sink, &o, &c, NULL) == 0);
        ASSERT(ossb_compressor_finish(c, NULL) == 0);
        ASSERT_INTEQ(ossb_compressor_write(c, "x", 1, &e3), -EINVAL);
        ASSERT_INTEQ(ossb_compressor_finish(c, &e4), -EINVAL);
        ossb_compressor_free(c);

        /* the same guard inside pgzip */
        struct ossb_pgzip *p = NULL;
        _cleanup_error_ struct ossb_error *e5 = NULL;
        ASSERT(ossb_pgzip_new(-1, 1, sb_sink, &o, &p, NULL) == 0);
        ASSERT(ossb_pgzip_finish(p, NULL) == 0);
        ASSERT_INTEQ(ossb_pgzip_write(p, "x", 1, &e5), -EINVAL);
        ASSERT(strstr(e5->msg, "after the end"));
        ossb_pgzip_free(p);
}

static void test_threads_setting(void)
{
        struct ossb_pgzip *p = NULL;
        unsigned def;

        ASSERT(unsetenv("OSSB_COMPRESS_THREADS") == 0);
        def = ossb_pgzip_default_threads();
        ASSERT(def >= 1 && def <= OSSB_PGZIP_MAX_THREADS);
        ASSERT(setenv("OSSB_COMPRESS_THREADS", "3", 1) == 0);
        ASSERT_INTEQ(ossb_pgzip_default_threads(), 3);
        ASSERT(ossb_pgzip_new(-1, 0, sb_sink, NULL, &p, NULL) == 0);
        ASSERT_INTEQ(ossb_pgzip_threads(p), 3);
        ossb_pgzip_free(p);
        ASSERT(setenv("OSSB_COMPRESS_THREADS", "1", 1) == 0);
        ASSERT(ossb_pgzip_new(-1, 0, sb_sink, NULL, &p, NULL) == 0);
        ASSERT_INTEQ(ossb_pgzip_threads(p), 0);
        ossb_pgzip_free(p);
        ASSERT(setenv("OSSB_COMPRESS_THREADS", "lots", 1) == 0);
        ASSERT_INTEQ(ossb_pgzip_default_threads(), def);
        ASSERT(setenv("OSSB_COMPRESS_THREADS", "0", 1) == 0);
        ASSERT_INTEQ(ossb_pgzip_default_threads(), def);
        ASSERT(unsetenv("OSSB_COMPRESS_THREADS") == 0);
}

struct limited {
        size_t left;
        size_t calls;
};

/* Accepts `left` bytes, then fails with -ENOSPC. */
static int limited_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        struct limited *l = userdata;
        l->calls++;
        if (len > l->left)
                return ossb_error_set(err, -ENOSPC, "sink full");
        l->left -= len;
        return 0;
}

/* The sink fails at the header, in the middle and at the trailer; the error sticks. */
static void test_sink_failure(void)
{
        static const size_t limits[] = { 0, 5, 200000, 1000000 };
        static const unsigned threads[] = { 1, 4 };
        for (size_t t = 0; t < ELEMENTSOF(threads); t++)
                for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                        struct limited l = { .left = limits[i] };
                        struct ossb_compressor *c = NULL;
                        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
                        ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, -1, threads[t], limited_sink, &l,
                                                           &c, NULL) == 0);
                        /* with threads, whether write or finish sees it depends on timing */
                        int r = ossb_compressor_write(c, random_data, 2 * MIB, &e);
                        bool in_write = r < 0;
                        if (r == 0)
                                r = ossb_compressor_finish(c, &e);
                        ASSERT_INTEQ(r, -ENOSPC);
                        ASSERT(strstr(e->msg, "sink full"));
                        size_t calls = l.calls;
                        if (in_write) {
                                ASSERT_INTEQ(ossb_compressor_write(c, "x", 1, &e2), -ENOSPC);
                                ASSERT(strstr(e2->msg, "failed earlier"));
                        } else {
                                ASSERT_INTEQ(ossb_compressor_write(c, "x", 1, &e2), -EINVAL);
                        }
                        ossb_compressor_free(c);
                        ASSERT_INTEQ(l.calls, calls);
                }
        /* exactly at the trailer */
        _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
        ASSERT(gz(text_data, 3 * B, -1, 2, 0, &o) == 0);
        struct limited l = { .left = o.len - 8 };
        struct ossb_compressor *c = NULL;
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, -1, 2, limited_sink, &l, &c, NULL) == 0);
        ASSERT(ossb_compressor_write(c, text_data, 3 * B, NULL) == 0);
        ASSERT_INTEQ(ossb_compressor_finish(c, &e), -ENOSPC);
        ASSERT_INTEQ(ossb_compressor_finish(c, &e2), -EINVAL); /* the compress.c guard */
        ossb_compressor_free(c);
}

/* A block whose compression fails turns into -EIO with a message, in order, for both modes. */
static void test_zlib_failure(void)
{
        static const unsigned threads[] = { 1, 2, 4 };
        static const uint64_t fail_at[] = { 0, 2, 40 };
        for (size_t t = 0; t < ELEMENTSOF(threads); t++)
                for (size_t i = 0; i < ELEMENTSOF(fail_at); i++) {
                        struct ossb_pgzip *p = NULL;
                        _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
                        _cleanup_error_ struct ossb_error *e = NULL;
                        ASSERT(ossb_pgzip_new(-1, threads[t], sb_sink, &o, &p, NULL) == 0);
                        ossb_pgzip_inject_failure(p, fail_at[i]);
                        int r = ossb_pgzip_write(p, text_data, 2 * MIB, &e);
                        if (r == 0)
                                r = ossb_pgzip_finish(p, &e);
                        if (r < 0) {
                                _cleanup_error_ struct ossb_error *e2 = NULL;
                                ASSERT_INTEQ(ossb_pgzip_finish(p, &e2), r);
                                ASSERT(strstr(e2->msg, "failed earlier"));
                        }
                        ossb_pgzip_free(p);
                        if (fail_at[i] >= 2 * MIB / B) {
                                ASSERT_INTEQ(r, 0); /* there is no such block */
                                continue;
                        }
                        ASSERT_INTEQ(r, -EIO);
                        ASSERT(strstr(e->msg, "gzip compression failed: deflate failed"));
                        /* nothing of or after the failed block was written */
                        if (fail_at[i] == 0)
                                ASSERT_INTEQ(o.len, 0);
                }
}

/* Freeing in every state: just created, mid-stream with blocks in flight, after an error. */
static void test_early_free(void)
{
        static const unsigned threads[] = { 1, 2, 8 };
        for (size_t t = 0; t < ELEMENTSOF(threads); t++) {
                struct ossb_compressor *c = NULL;
                _cleanup_strbuf_ struct ossb_strbuf o = OSSB_STRBUF_INIT;
                ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, -1, threads[t], sb_sink, &o, &c, NULL) == 0);
                ossb_compressor_free(c);
                c = NULL;
                ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, 9, threads[t], sb_sink, &o, &c, NULL) == 0);
                ASSERT(ossb_compressor_write(c, text_data, 3 * MIB + 1, NULL) == 0);
                ossb_compressor_free(c);
                c = NULL;
                ASSERT(ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, 1, threads[t], sb_sink, &o, &c, NULL) == 0);
                ASSERT(ossb_compressor_write(c, text_data, 100, NULL) == 0);
                ossb_compressor_free(c);
        }
        ossb_pgzip_free(NULL);
}

int main(void)
{
        make_data();
        RUN_TEST(test_round_trip_sizes);
        RUN_TEST(test_round_trip_large);
        RUN_TEST(test_deterministic);
        RUN_TEST(test_header);
        RUN_TEST(test_random_blocks_stored);
        RUN_TEST(test_gzip_cli);
        RUN_TEST(test_invalid_args);
        RUN_TEST(test_threads_setting);
        RUN_TEST(test_sink_failure);
        RUN_TEST(test_zlib_failure);
        RUN_TEST(test_early_free);
        free(random_data);
        free(text_data);
        TAP_END();
}
