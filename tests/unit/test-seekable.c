/* tests/unit/test-seekable.c - the eStargz and zstd:chunked writers (oci/layer.c +
 * oci/seekable-write.c) read back with oci/seekable.c: every entry type, xattrs, long and
 * non-ASCII names, files of 0 bytes, of exactly one chunk and of several chunks; the blob is
 * still one valid gzip/zstd stream whose tar has the DiffID; the TOC matches the tar as
 * libarchive reads it; the bytes do not depend on the thread count; annotations and footers
 * agree; corrupt chunks and wrong digests are -EBADMSG. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/compress.h"
#include "oci/oci.h"
#include "oci/seekable.h"
#include "tests/unit/tap.h"
#include "tests/unit/test-seekable-util.h"

static char tmpdir[] = "/tmp/ossb-test-seekable-XXXXXX";
static struct ossb_store *store;

#define MIB (1024 * 1024)
#define BIG (10 * MIB + 12345) /* three chunks */

static unsigned char *pattern(size_t n, unsigned seed, bool compressible)
{
        unsigned char *b = malloc(n ? n : 1);
        unsigned x = seed;
        for (size_t i = 0; b && i < n; i++) {
                x = x * 1103515245 + 12345;
                b[i] = compressible ? (unsigned char) ("abcdefgh"[(x >> 16) & 7]) : (unsigned char) (x >> 16);
        }
        return b;
}

static const struct ossb_xattr xattrs[] = {
        { "user.test", "value", 5 },
        { "security.capability", "\x01\x00\x00\x02\xff", 5 },
};

struct layer {
        char digest[OSSB_DIGEST_STR_LEN + 1], diff_id[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        json_object *annotations;
};

static void layer_clear(struct layer *l)
{
        json_object_put(l->annotations);
        l->annotations = NULL;
}

static int add(struct ossb_layer_writer *w, const char *path, enum ossb_entry_type t, mode_t mode, const void *data,
               size_t len, const char *link)
{
        struct ossb_layer_entry e = { .path = path, .type = t, .mode = mode, .uid = 1000, .gid = 100,
                                      .mtime_sec = 1700000000, .size = (int64_t) len, .linkname = link };
        if (t == OSSB_ENTRY_CHAR)
                e.rdev = makedev(1, 3);
        if (strcmp(path, "etc/xattrs") == 0) {
                e.xattrs = xattrs;
                e.n_xattrs = ELEMENTSOF(xattrs);
        }
        if (t == OSSB_ENTRY_FILE)
                return ossb_layer_writer_add_data(w, &e, data, len, NULL);
        return ossb_layer_writer_add(w, &e, -1, NULL);
}

/* The standard test layer; `big` adds the multi-chunk files. */
static int write_layer(enum ossb_compression c, unsigned threads, bool big, struct layer *out)
{
        struct ossb_layer_opts opts = { .compression = c, .level = -1, .source_date_epoch = -1, .threads = threads };
        struct ossb_layer_writer *w = NULL;
        _cleanup_free_ unsigned char *b1 = pattern(BIG, 1, false), *b2 = pattern(4 * MIB, 2, true),
                                     *b3 = pattern(200000, 3, true);
        char longname[300];
        int r = b1 && b2 && b3 ? ossb_layer_writer_new(store, &opts, &w, NULL) : -ENOMEM;
        snprintf(longname, sizeof(longname), "usr/share/%0250d", 7);
        if (r >= 0)
                r = add(w, "etc", OSSB_ENTRY_DIR, 0755, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "etc/hello.txt", OSSB_ENTRY_FILE, 0644, "hello world\n", 12, NULL);
        if (r >= 0)
                r = add(w, "etc/empty", OSSB_ENTRY_FILE, 0600, "", 0, NULL);
        if (r >= 0)
                r = add(w, "etc/xattrs", OSSB_ENTRY_FILE, 04755, "x", 1, NULL);
        if (r >= 0)
                r = add(w, "etc/link", OSSB_ENTRY_SYMLINK, 0777, NULL, 0, "hello.txt");
        if (r >= 0)
                r = add(w, "etc/hard", OSSB_ENTRY_HARDLINK, 0644, NULL, 0, "etc/hello.txt");
        if (r >= 0)
                r = add(w, "dev", OSSB_ENTRY_DIR, 0755, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "dev/null", OSSB_ENTRY_CHAR, 0666, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "dev/fifo", OSSB_ENTRY_FIFO, 0600, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "usr", OSSB_ENTRY_DIR, 0755, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "usr/share", OSSB_ENTRY_DIR, 0755, NULL, 0, NULL);
        if (r >= 0)
                r = add(w, "usr/share/caf\xc3\xa9.txt", OSSB_ENTRY_FILE, 0644, b3, 200000, NULL);
        if (r >= 0)
                r = add(w, longname, OSSB_ENTRY_FILE, 0644, "long", 4, NULL);
        if (r >= 0 && big)
                r = add(w, "usr/big.bin", OSSB_ENTRY_FILE, 0644, b1, BIG, NULL);
        if (r >= 0 && big)
                r = add(w, "usr/four.txt", OSSB_ENTRY_FILE, 0644, b2, 4 * MIB, NULL);
        if (r >= 0)
                r = add(w, "zz-last", OSSB_ENTRY_FILE, 0644, "last\n", 5, NULL);
        if (r >= 0)
                r = ossb_layer_writer_finish(w, out->digest, &out->size, out->diff_id, NULL);
        if (r >= 0)
                r = ossb_layer_writer_annotations(w, &out->annotations);
        ossb_layer_writer_free(w);
        return r;
}

static int sb_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_strbuf_append_n(userdata, data, len) < 0 ? ossb_error_set(err, -ENOMEM, "oom") : 0;
}

/* The blob decompresses as one stream (gzip members / zstd frames) whose sha256 is the DiffID. */
static int check_diff_id(const struct layer *l)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        _cleanup_close_ int fd = -1;
        char d[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_store_open_blob(store, l->digest, &fd, NULL) < 0 || ossb_decompress_fd(fd, sb_sink, &sb, NULL) < 0)
                return -1;
        ossb_sha256_digest(sb.buf, sb.len, d);
        return strcmp(d, l->diff_id) == 0 ? 0 : -1;
}

static void round_trip(enum ossb_compression c, bool big)
{
        struct layer l = { 0 };
        struct blob b = { 0 };
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        struct ossb_error *err = NULL;
        size_t entries = 0;

        ASSERT(write_layer(c, 0, big, &l) == 0);
        ASSERT(l.annotations != NULL);
        ASSERT(check_diff_id(&l) == 0);
        ASSERT(blob_read(store, l.digest, &b) == 0);
        int r = toc_open(&b, l.annotations, &loc, &toc, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err && err->msg ? err->msg : "?");
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(loc.kind, c == OSSB_COMPRESSION_ESTARGZ ? OSSB_SEEKABLE_ESTARGZ : OSSB_SEEKABLE_ZSTD_CHUNKED);
        ASSERT(loc.digest[0] || loc.compressed_digest[0]);
        ASSERT_INTEQ(toc->n, big ? 16 : 14);
        int files = verify_against_tar(&b, toc, &entries);
        ASSERT_INTEQ(files, big ? 8 : 6);
        ASSERT_INTEQ(entries, toc->n);
        ASSERT(toc_find(toc, "etc") && S_ISDIR(toc_find(toc, "etc")->mode));
        const struct ossb_toc_entry *e = toc_find(toc, "etc/xattrs");
        ASSERT(e && e->n_xattrs == 2 && (e->mode & 07777) == 04755);
        ASSERT(e->xattrs[1].size == 5 && memcmp(e->xattrs[1].value, "\x01\x00\x00\x02\xff", 5) == 0);
        ASSERT(toc_find(toc, "dev/null") && toc_find(toc, "dev/null")->rdev == makedev(1, 3));
        ASSERT(toc_find(toc, "etc/hard") && toc_find(toc, "etc/hard")->hardlink);
        ASSERT_STREQ(toc_find(toc, "etc/hard")->link, "etc/hello.txt");
        ASSERT(toc_find(toc, "etc/empty") && toc_find(toc, "etc/empty")->n_chunks == 0);
        ASSERT_INTEQ(toc_find(toc, "etc/hello.txt")->mtime.tv_sec, 1700000000);
        if (big) {
                e = toc_find(toc, "usr/big.bin");
                ASSERT(e && e->n_chunks == 3 && e->chunks[1].file_offset == 4 * MIB && e->chunks[2].size == BIG - 8 * MIB);
                for (size_t k = 0; k < 3; k++)
                        ASSERT(e->chunks[k].digest[0] && e->chunks[k].end > e->chunks[k].offset);
                ASSERT_INTEQ(toc_find(toc, "usr/four.txt")->n_chunks, 1);
        }
        ossb_toc_free(toc);
        blob_clear(&b);
        layer_clear(&l);
}

static void test_estargz_round_trip(void)
{
        round_trip(OSSB_COMPRESSION_ESTARGZ, true);
}

static void test_zstd_chunked_round_trip(void)
{
        round_trip(OSSB_COMPRESSION_ZSTD_CHUNKED, true);
}

static void test_small_layers(void)
{
        round_trip(OSSB_COMPRESSION_ESTARGZ, false);
        round_trip(OSSB_COMPRESSION_ZSTD_CHUNKED, false);
}

/* The same bytes whatever the thread count (1: no thread; 2, 3: workers). */
static void determinism(enum ossb_compression c)
{
        struct layer a = { 0 }, b = { 0 }, d = { 0 };
        ASSERT(write_layer(c, 1, true, &a) == 0);
        ASSERT(write_layer(c, 2, true, &b) == 0);
        ASSERT(write_layer(c, 3, true, &d) == 0);
        ASSERT_STREQ(a.digest, b.digest);
        ASSERT_STREQ(a.digest, d.digest);
        ASSERT_STREQ(a.diff_id, b.diff_id);
        ASSERT_STREQ(ossb_json_to_string(a.annotations), ossb_json_to_string(d.annotations));
        layer_clear(&a);
        layer_clear(&b);
        layer_clear(&d);
}

static void test_deterministic(void)
{
        determinism(OSSB_COMPRESSION_ESTARGZ);
        determinism(OSSB_COMPRESSION_ZSTD_CHUNKED);
}

/* zstd:chunked keeps the tar stream as the plain compressions write it: same DiffID. */
static void test_zstd_chunked_diff_id(void)
{
        struct layer z = { 0 }, g = { 0 }, e = { 0 };
        ASSERT(write_layer(OSSB_COMPRESSION_ZSTD_CHUNKED, 0, false, &z) == 0);
        ASSERT(write_layer(OSSB_COMPRESSION_GZIP, 0, false, &g) == 0);
        ASSERT(write_layer(OSSB_COMPRESSION_ESTARGZ, 0, false, &e) == 0);
        ASSERT_STREQ(z.diff_id, g.diff_id);
        ASSERT(strcmp(e.diff_id, g.diff_id) != 0); /* eStargz adds its TOC entry */
        ASSERT(g.annotations == NULL);
        layer_clear(&z);
        layer_clear(&g);
        layer_clear(&e);
}

static void test_annotations(void)
{
        struct layer l = { 0 };
        struct blob b = { 0 };
        json_object *v;
        ASSERT(write_layer(OSSB_COMPRESSION_ESTARGZ, 0, false, &l) == 0);
        ASSERT(json_object_object_get_ex(l.annotations, "containerd.io/snapshot/stargz/toc.digest", &v));
        ASSERT(ossb_digest_is_valid(json_object_get_string(v)));
        ASSERT(json_object_object_get_ex(l.annotations, "io.containers.estargz.uncompressed-size", &v));
        ASSERT(check_diff_id(&l) == 0);
        layer_clear(&l);
        ASSERT(write_layer(OSSB_COMPRESSION_ZSTD_CHUNKED, 0, false, &l) == 0);
        ASSERT(!json_object_object_get_ex(l.annotations, "containerd.io/snapshot/stargz/toc.digest", &v));
        ASSERT(json_object_object_get_ex(l.annotations, "io.github.containers.zstd-chunked.manifest-checksum", &v));
        ASSERT(json_object_object_get_ex(l.annotations, "io.containers.zstd-chunked.manifest-position", &v));
        /* the checksum is the compressed TOC's */
        ASSERT(blob_read(store, l.digest, &b) == 0);
        const char *pos = json_object_get_string(v);
        long long off = 0, len = 0;
        ASSERT(sscanf(pos, "%lld:%lld", &off, &len) == 2 && off > 0 && len > 0 && (size_t) (off + len) < b.len);
        char d[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_digest(b.data + off, (size_t) len, d);
        ASSERT(json_object_object_get_ex(l.annotations, "io.github.containers.zstd-chunked.manifest-checksum", &v));
        ASSERT_STREQ(d, json_object_get_string(v));
        blob_clear(&b);
        layer_clear(&l);
}

/* Without annotations the footer alone finds the TOC (unverified: no digest). */
static void footer_only(enum ossb_compression c)
{
        struct layer l = { 0 };
        struct blob b = { 0 };
        struct ossb_toc_location loc, loc2;
        struct ossb_toc *toc = NULL;
        ASSERT(write_layer(c, 0, false, &l) == 0);
        ASSERT(blob_read(store, l.digest, &b) == 0);
        ASSERT(toc_open(&b, NULL, &loc, &toc, NULL) == 0);
        ASSERT(loc.digest[0] == '\0' && loc.compressed_digest[0] == '\0');
        ASSERT(verify_against_tar(&b, toc, NULL) == 6);
        ossb_toc_free(toc);
        /* the same place as the annotations say */
        ASSERT(ossb_toc_locate(l.annotations, (int64_t) b.len, b.data + b.len - 100, 100, &loc2, NULL) == 0);
        ASSERT(loc.offset == loc2.offset && loc.length == loc2.length);
        blob_clear(&b);
        layer_clear(&l);
}

static void test_footer_only(void)
{
        footer_only(OSSB_COMPRESSION_ESTARGZ);
        footer_only(OSSB_COMPRESSION_ZSTD_CHUNKED);
}

/* A wrong TOC digest, a wrong compressed-TOC digest, a flipped byte in a chunk. */
static void corrupt(enum ossb_compression c)
{
        struct layer l = { 0 };
        struct blob b = { 0 };
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        struct ossb_error *err = NULL;
        ASSERT(write_layer(c, 0, true, &l) == 0);
        ASSERT(blob_read(store, l.digest, &b) == 0);
        ASSERT(toc_open(&b, l.annotations, &loc, &toc, NULL) == 0);
        struct ossb_toc_location bad = loc;
        if (bad.digest[0]) {
                bad.digest[10] = bad.digest[10] == 'a' ? 'b' : 'a';
                struct ossb_toc *t = NULL;
                ASSERT_INTEQ(ossb_toc_decode(&bad, b.data + loc.offset, (size_t) loc.length, &t, &err), -EBADMSG);
                ASSERT(err && strstr(err->msg, bad.digest));
                ossb_error_free(TAKE_PTR(err));
        }
        bad = loc;
        strcpy(bad.compressed_digest, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
        struct ossb_toc *t = NULL;
        ASSERT_INTEQ(ossb_toc_decode(&bad, b.data + loc.offset, (size_t) loc.length, &t, NULL), -EBADMSG);
        /* a flipped byte in each chunk of the big file */
        const struct ossb_toc_entry *e = toc_find(toc, "usr/big.bin");
        ASSERT(e && e->n_chunks == 3);
        unsigned char *out = malloc(4 * MIB);
        ASSERT(out);
        for (size_t k = 0; k < e->n_chunks; k++) {
                const struct ossb_toc_chunk *ch = &e->chunks[k];
                size_t n = (size_t) (ch->end - ch->offset);
                unsigned char *copy = malloc(n);
                ASSERT(copy);
                memcpy(copy, b.data + ch->offset, n);
                ASSERT_INTEQ(ossb_toc_chunk_read(toc, e, ch, copy, n, out, NULL), 0);
                copy[n / 2] ^= 0x40;
                int r = ossb_toc_chunk_read(toc, e, ch, copy, n, out, &err);
                ASSERT_INTEQ(r, -EBADMSG);
                ASSERT(err && strstr(err->msg, "usr/big.bin"));
                ossb_error_free(TAKE_PTR(err));
                /* truncated compressed bytes */
                ASSERT_INTEQ(ossb_toc_chunk_read(toc, e, ch, b.data + ch->offset, n / 3, out, NULL), -EBADMSG);
                free(copy);
        }
        free(out);
        ossb_toc_free(toc);
        blob_clear(&b);
        layer_clear(&l);
}

static void test_corrupt_estargz(void)
{
        corrupt(OSSB_COMPRESSION_ESTARGZ);
}

static void test_corrupt_zstd_chunked(void)
{
        corrupt(OSSB_COMPRESSION_ZSTD_CHUNKED);
}

static void test_names(void)
{
        enum ossb_compression c;
        ASSERT(ossb_compression_from_string("estargz", &c) == 0 && c == OSSB_COMPRESSION_ESTARGZ);
        ASSERT(ossb_compression_from_string("zstd:chunked", &c) == 0 && c == OSSB_COMPRESSION_ZSTD_CHUNKED);
        ASSERT_STREQ(ossb_compression_to_string(OSSB_COMPRESSION_ZSTD_CHUNKED), "zstd:chunked");
        ASSERT_STREQ(ossb_compression_media_type(OSSB_COMPRESSION_ESTARGZ), "application/vnd.oci.image.layer.v1.tar+gzip");
        ASSERT_STREQ(ossb_compression_media_type(OSSB_COMPRESSION_ZSTD_CHUNKED),
                     "application/vnd.oci.image.layer.v1.tar+zstd");
}

/* What the TOC cannot hold is refused before the header: the writer stays usable. */
static void test_refused_entries(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_ESTARGZ, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        struct layer l = { 0 };
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT_INTEQ(add(w, "bad\xff", OSSB_ENTRY_FILE, 0644, "x", 1, NULL), -EINVAL);
        ASSERT_INTEQ(add(w, "stargz.index.json", OSSB_ENTRY_FILE, 0644, "x", 1, NULL), -EINVAL);
        ASSERT_INTEQ(add(w, "ok", OSSB_ENTRY_FILE, 0644, "x", 1, NULL), 0);
        ASSERT(ossb_layer_writer_finish(w, l.digest, &l.size, l.diff_id, NULL) == 0);
        ASSERT(ossb_layer_writer_annotations(w, &l.annotations) == 0);
        ossb_layer_writer_free(w);
        ASSERT(check_diff_id(&l) == 0);
        layer_clear(&l);
}

/* An empty layer: a TOC with no entries. */
static void test_empty(void)
{
        enum ossb_compression kinds[] = { OSSB_COMPRESSION_ESTARGZ, OSSB_COMPRESSION_ZSTD_CHUNKED };
        for (size_t i = 0; i < 2; i++) {
                struct ossb_layer_opts opts = { .compression = kinds[i], .level = -1, .source_date_epoch = -1 };
                struct ossb_layer_writer *w = NULL;
                struct layer l = { 0 };
                struct blob b = { 0 };
                struct ossb_toc_location loc;
                struct ossb_toc *toc = NULL;
                ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
                ASSERT(ossb_layer_writer_finish(w, l.digest, &l.size, l.diff_id, NULL) == 0);
                ASSERT(ossb_layer_writer_annotations(w, &l.annotations) == 0);
                ossb_layer_writer_free(w);
                ASSERT(check_diff_id(&l) == 0);
                ASSERT(blob_read(store, l.digest, &b) == 0);
                ASSERT(toc_open(&b, l.annotations, &loc, &toc, NULL) == 0);
                ASSERT_INTEQ(toc->n, 0);
                ossb_toc_free(toc);
                blob_clear(&b);
                layer_clear(&l);
        }
}

int main(void)
{
        setlocale(LC_ALL, "C.UTF-8"); /* libarchive converts the UTF-8 names the tests read */
        if (!mkdtemp(tmpdir))
                return 1;
        _cleanup_free_ char *root = ossb_path_join(tmpdir, "store");
        if (!root || ossb_store_open(root, &store, NULL) < 0)
                return 1;
        RUN_TEST(test_names);
        RUN_TEST(test_estargz_round_trip);
        RUN_TEST(test_zstd_chunked_round_trip);
        RUN_TEST(test_small_layers);
        RUN_TEST(test_deterministic);
        RUN_TEST(test_zstd_chunked_diff_id);
        RUN_TEST(test_annotations);
        RUN_TEST(test_footer_only);
        RUN_TEST(test_corrupt_estargz);
        RUN_TEST(test_corrupt_zstd_chunked);
        RUN_TEST(test_refused_entries);
        RUN_TEST(test_empty);
        ossb_store_free(store);
        (void) ossb_rm_rf(tmpdir);
        TAP_END();
}
