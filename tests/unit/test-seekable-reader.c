/* tests/unit/test-seekable-reader.c - oci/seekable.c on what others write and on hostile
 * input: the foreign samples in tests/unit/seekable-samples/ (made by skopeo and ctr-remote,
 * see make-samples.sh there) checked against their own tar; hostile TOC entries, position
 * annotations and footers; truncated and flipped footers; chunk reads with an inner offset
 * or a leading tar header; bad arguments. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <zlib.h>
#include <zstd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "oci/oci.h"
#include "oci/seekable.h"
#include "tests/unit/tap.h"
#include "tests/unit/test-seekable-util.h"

static const char *srcdir = ".";

/* ---- the foreign samples ---- */

static int sample_read(const char *name, struct blob *b, json_object **ret_desc)
{
        _cleanup_free_ char *p = NULL, *j = NULL, *data = NULL, *json = NULL;
        size_t len = 0, jlen = 0;
        char d[OSSB_DIGEST_STR_LEN + 1];
        json_object *v;
        if (asprintf(&p, "%s/tests/unit/seekable-samples/%s.blob", srcdir, name) < 0 ||
            asprintf(&j, "%s/tests/unit/seekable-samples/%s.json", srcdir, name) < 0)
                return -ENOMEM;
        if (ossb_read_file(p, 1 << 20, &data, &len, NULL) < 0 || ossb_read_file(j, 1 << 16, &json, &jlen, NULL) < 0)
                return -ENOENT;
        *ret_desc = json_tokener_parse(json);
        if (!*ret_desc || !json_object_object_get_ex(*ret_desc, "digest", &v))
                return -EINVAL;
        ossb_sha256_digest(data, len, d);
        if (strcmp(d, json_object_get_string(v)) != 0)
                return -EBADMSG;
        b->data = (unsigned char *) TAKE_PTR(data);
        b->len = len;
        return 0;
}

static json_object *annotations_of(json_object *desc)
{
        json_object *a = NULL;
        json_object_object_get_ex(desc, "annotations", &a);
        return a;
}

/* A sample, read with its annotations and with its footer alone. */
static void check_sample(const char *name, enum ossb_seekable_kind kind, int files)
{
        struct blob b = { 0 };
        json_object *desc = NULL;
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        struct ossb_error *err = NULL;
        size_t entries = 0;

        ASSERT_INTEQ(sample_read(name, &b, &desc), 0);
        int r = toc_open(&b, annotations_of(desc), &loc, &toc, &err);
        if (r < 0)
                fprintf(stderr, "# %s: %s\n", name, err && err->msg ? err->msg : "?");
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(loc.kind, kind);
        ASSERT(loc.digest[0] || loc.compressed_digest[0]); /* verified */
        ASSERT_INTEQ(verify_against_tar(&b, toc, &entries), files);
        ASSERT_INTEQ(entries, toc->n);
        const struct ossb_toc_entry *e = toc_find(toc, "etc/hello.txt");
        ASSERT(e && e->hardlink && strcmp(e->link, "etc/hard.txt") == 0);
        ASSERT(toc_find(toc, "etc/os-release") && (toc_find(toc, "etc/os-release")->mode & 07777) == 04755);
        ASSERT_INTEQ(toc_find(toc, "etc/os-release")->mtime.tv_sec, 1704164645); /* 2024-01-02T03:04:05Z */
        ASSERT(toc_find(toc, "") && S_ISDIR(toc_find(toc, "")->mode)); /* "./" */
        ossb_toc_free(toc);
        toc = NULL;
        struct ossb_toc_location floc;
        ASSERT_INTEQ(toc_open(&b, NULL, &floc, &toc, NULL), 0);
        ASSERT(floc.offset == loc.offset && floc.length == loc.length);
        ASSERT_INTEQ(verify_against_tar(&b, toc, NULL), files);
        ossb_toc_free(toc);
        json_object_put(desc);
        blob_clear(&b);
}

static void test_sample_zstd_chunked_skopeo(void)
{
        check_sample("zstd-chunked-skopeo", OSSB_SEEKABLE_ZSTD_CHUNKED, 6);
        /* containers/storage's rolling checksum cut the random file into chunks */
        struct blob b = { 0 };
        json_object *desc = NULL;
        struct ossb_toc_location loc;
        struct ossb_toc *toc = NULL;
        ASSERT_INTEQ(sample_read("zstd-chunked-skopeo", &b, &desc), 0);
        ASSERT_INTEQ(toc_open(&b, annotations_of(desc), &loc, &toc, NULL), 0);
        const struct ossb_toc_entry *e = toc_find(toc, "data/random.bin");
        ASSERT(e && e->n_chunks >= 2 && e->size == 24000);
        ASSERT(e->chunks[0].end <= e->chunks[1].offset);
        ossb_toc_free(toc);
        json_object_put(desc);
        blob_clear(&b);
}

static void test_sample_estargz_ctr_remote(void)
{
        check_sample("estargz-ctr-remote", OSSB_SEEKABLE_ESTARGZ, 7);
}

static void test_sample_zstd_chunked_ctr_remote(void)
{
        check_sample("zstd-chunked-ctr-remote", OSSB_SEEKABLE_ZSTD_CHUNKED, 7);
}

/* ---- hostile TOCs ---- */

#define PAD 4096 /* blob bytes before the TOC: chunk offsets must lie in [1, PAD) */

/* A zstd:chunked-like blob: PAD bytes, a skippable header, the compressed JSON. */
static int zstd_toc(const char *json, struct blob *b, struct ossb_toc_location *loc)
{
        size_t len = strlen(json), bound = ZSTD_compressBound(len);
        b->data = calloc(1, PAD + 8 + bound);
        if (!b->data)
                return -ENOMEM;
        size_t n = ZSTD_compress(b->data + PAD + 8, bound, json, len, 3);
        if (ZSTD_isError(n))
                return -EIO;
        b->len = PAD + 8 + n;
        *loc = (struct ossb_toc_location) { .kind = OSSB_SEEKABLE_ZSTD_CHUNKED, .offset = PAD + 8, .length = (int64_t) n };
        return 0;
}

static int decode_json(const char *json, struct ossb_toc **ret, struct ossb_error **err)
{
        struct blob b = { 0 };
        struct ossb_toc_location loc;
        int r = zstd_toc(json, &b, &loc);
        if (r >= 0)
                r = ossb_toc_decode(&loc, b.data + loc.offset, (size_t) loc.length, ret, err);
        blob_clear(&b);
        return r;
}

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_hostile_entries(void)
{
        static const struct {
                const char *json;
                int want;
        } cases[] = {
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"../x\"}]}", -EPERM },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a/../../x\"}]}", -EPERM },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"/etc/passwd\"}]}", -EPERM },
                { "{\"version\":1,\"entries\":[{\"type\":\"hardlink\",\"name\":\"a\",\"linkName\":\"../b\"}]}", -EPERM },
                { "{\"version\":1,\"entries\":[{\"type\":\"socket\",\"name\":\"a\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"name\":\"a\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\\u0000b\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"chunk\",\"name\":\"a\",\"offset\":5}]}", -EBADMSG },
                { "{\"version\":2,\"entries\":[]}", -EBADMSG },
                { "{\"version\":1}", -EBADMSG },
                { "[1,2]", -EBADMSG },
                { "{\"version\":1,\"entries\":[1]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":-1}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"uid\":4294967295}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":99999999999999999999}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":1.5}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"mode\":\"0644\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"modtime\":\"yesterday\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"modtime\":\"2024-02-30T00:00:00Z\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"digest\":\"md5:abc\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"xattrs\":{\"user.a\":\"!!\"}}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"xattrs\":{\"\":\"YQ==\"}}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"xattrs\":[1]}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"symlink\",\"name\":\"a\"}]}", -EBADMSG },
                /* data chunks: no offset, past the TOC, out of order, gaps, wrong sizes */
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":5000}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkOffset\":3}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkSize\":4},"
                  "{\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":6}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkSize\":4},"
                  "{\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":4,\"chunkSize\":7}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkSize\":4},"
                  "{\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":4},{\"type\":\"chunk\",\"offset\":300,\"chunkOffset\":4}]}",
                  -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkSize\":4},"
                  "{\"type\":\"chunk\",\"offset\":200,\"chunkOffset\":40}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":300},"
                  "{\"type\":\"reg\",\"name\":\"b\",\"size\":10,\"offset\":200}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"endOffset\":300},"
                  "{\"type\":\"reg\",\"name\":\"b\",\"size\":10,\"offset\":200}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"endOffset\":100}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"chunkDigest\":\"x\"}]}", -EBADMSG },
                { "{\"version\":1,\"entries\":[{\"type\":\"reg\",\"name\":\"a\",\"size\":10,\"offset\":100,\"innerOffset\":-1}]}", -EBADMSG },
                { "not json", -EBADMSG },
                { "{\"version\":1,\"entries\":[]} trailing", -EBADMSG },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct ossb_toc *toc = NULL;
                struct ossb_error *err = NULL;
                int r = decode_json(cases[i].json, &toc, &err);
                if (r != cases[i].want)
                        fprintf(stderr, "# case %zu: got %d (%s)\n", i, r, err && err->msg ? err->msg : "-");
                ASSERT_INTEQ(r, cases[i].want);
                ASSERT(toc == NULL && err && err->msg && err->code == r);
                ossb_error_free(err);
        }
}

static void test_good_entries(void)
{
        struct ossb_toc *toc = NULL;
        struct ossb_error *err = NULL;
        const char *json =
                "{\"version\":1,\"entries\":["
                "{\"type\":\"dir\",\"name\":\"./\",\"mode\":493},"
                "{\"type\":\"dir\",\"name\":\"./usr//bin/\",\"mode\":16877,\"modtime\":\"2024-01-02T04:04:05.5+01:00\"},"
                "{\"type\":\"reg\",\"name\":\"usr/bin/a\",\"size\":10,\"offset\":100,\"chunkSize\":4,\"digest\":\"" D64 "\"},"
                "{\"type\":\"chunk\",\"name\":\"usr/bin/a\",\"offset\":200,\"chunkOffset\":4},"
                "{\"type\":\"reg\",\"name\":\"b\",\"size\":3,\"offset\":200,\"innerOffset\":700,\"endOffset\":250},"
                "{\"type\":\"block\",\"name\":\"dev/sda\",\"devMajor\":8,\"devMinor\":1},"
                "{\"type\":\"reg\",\"name\":\".prefetch.landmark\",\"size\":1,\"offset\":300},"
                "{\"type\":\"symlink\",\"name\":\"c\",\"linkName\":\"/abs/../target\"},"
                "{\"type\":\"reg\",\"name\":\"z\",\"xattrs\":{\"user.k\":\"AAEC\"},\"modtime\":\"0001-01-01T00:00:00Z\"}]}";
        int r = decode_json(json, &toc, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(toc->n, 8);
        ASSERT_STREQ(toc->entries[0].path, "");
        ASSERT_STREQ(toc->entries[1].path, "usr/bin");
        ASSERT_INTEQ(toc->entries[1].mode, S_IFDIR | 0755);
        ASSERT_INTEQ(toc->entries[1].mtime.tv_sec, 1704164645);
        ASSERT_INTEQ(toc->entries[1].mtime.tv_nsec, 500000000);
        const struct ossb_toc_entry *a = &toc->entries[2];
        ASSERT(a->n_chunks == 2 && a->chunks[0].size == 4 && a->chunks[1].size == 6);
        ASSERT(a->chunks[0].end == 200 && a->chunks[1].end == 300); /* b shares offset 200 */
        ASSERT(a->chunks[0].digest[0] == '\0'); /* several chunks: no per-chunk digest given */
        const struct ossb_toc_entry *b = &toc->entries[3];
        ASSERT(b->n_chunks == 1 && b->chunks[0].inner_offset == 700 && b->chunks[0].end == 250);
        ASSERT_STREQ(b->chunks[0].digest, "");
        ASSERT(toc->entries[4].rdev == makedev(8, 1) && S_ISBLK(toc->entries[4].mode));
        ASSERT(toc->entries[5].chunks[0].end == PAD); /* the last chunk ends where the TOC's frame starts */
        ASSERT_STREQ(toc->entries[6].link, "/abs/../target"); /* symlink targets are kept as they are */
        ASSERT(toc->entries[7].n_xattrs == 1 && toc->entries[7].xattrs[0].size == 3);
        ASSERT_INTEQ(toc->entries[7].mtime.tv_sec, -62135596800LL);
        ASSERT_INTEQ(toc->prefetch_end, 0); /* landmarks are eStargz's */
        ossb_toc_free(toc);
}

/* ---- locate: annotations and footers ---- */

static void test_position_annotations(void)
{
        static const char *bad[] = { "1:2:3", "a:b:c:1", "-8:5:5:1", "8:0:5:1", "99999999999999999999:1:1:1",
                                     "8:5:5:2", "90:20:5:1", "8:5:5:1:", " 8:5:5:1", "4:5:5:1" };
        char tail[64] = { 0 };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *a = json_object_new_object();
                struct ossb_toc_location loc;
                json_object_object_add(a, "io.github.containers.zstd-chunked.manifest-position", json_object_new_string(bad[i]));
                ASSERT_INTEQ(ossb_toc_locate(a, 100, tail, sizeof(tail), &loc, NULL), -EBADMSG);
                json_object_put(a);
        }
        json_object *a = json_object_new_object();
        struct ossb_toc_location loc;
        json_object_object_add(a, "io.github.containers.zstd-chunked.manifest-position", json_object_new_string("8:5:5:1"));
        json_object_object_add(a, "io.containers.zstd-chunked.manifest-position", json_object_new_string("8:6:5:1"));
        ASSERT_INTEQ(ossb_toc_locate(a, 100, NULL, 0, &loc, NULL), -EBADMSG); /* old and new keys disagree */
        json_object_object_del(a, "io.containers.zstd-chunked.manifest-position");
        ASSERT_INTEQ(ossb_toc_locate(a, 100, NULL, 0, &loc, NULL), 0);
        ASSERT(loc.kind == OSSB_SEEKABLE_ZSTD_CHUNKED && loc.offset == 8 && loc.length == 5 && !loc.digest[0]);
        json_object_object_add(a, "io.github.containers.zstd-chunked.manifest-checksum", json_object_new_string("sha256:xyz"));
        ASSERT_INTEQ(ossb_toc_locate(a, 100, NULL, 0, &loc, NULL), -EBADMSG);
        json_object_put(a);
        /* eStargz: the digest alone needs the footer */
        a = json_object_new_object();
        json_object_object_add(a, "containerd.io/snapshot/stargz/toc.digest", json_object_new_string(D64));
        ASSERT_INTEQ(ossb_toc_locate(a, 1000, NULL, 0, &loc, NULL), -ENODATA);
        ASSERT_INTEQ(ossb_toc_locate(a, 1000, tail, sizeof(tail), &loc, NULL), -EBADMSG);
        json_object_put(a);
        ASSERT_INTEQ(ossb_toc_locate(NULL, 1000, tail, sizeof(tail), &loc, NULL), -ENOENT);
        ASSERT_INTEQ(ossb_toc_locate(NULL, 10, tail, sizeof(tail), &loc, NULL), -EINVAL);
        a = json_object_new_array();
        ASSERT_INTEQ(ossb_toc_locate(a, 1000, NULL, 0, &loc, NULL), -EINVAL);
        json_object_put(a);
}

/* Every shorter tail and every flipped footer byte of each sample: never a crash, never a
 * location outside the blob. */
static void test_footers_truncated_and_flipped(void)
{
        static const char *names[] = { "estargz-ctr-remote", "zstd-chunked-skopeo", "zstd-chunked-ctr-remote" };
        for (size_t s = 0; s < ELEMENTSOF(names); s++) {
                struct blob b = { 0 };
                json_object *desc = NULL;
                struct ossb_toc_location loc;
                ASSERT_INTEQ(sample_read(names[s], &b, &desc), 0);
                for (size_t t = 0; t < 48; t++)
                        ASSERT_INTEQ(ossb_toc_locate(NULL, (int64_t) b.len, b.data + b.len - t, t, &loc, NULL), -ENOENT);
                for (size_t i = b.len - 80; i < b.len; i++)
                        for (int bit = 0; bit < 8; bit++) {
                                b.data[i] ^= (unsigned char) (1 << bit);
                                int r = ossb_toc_locate(NULL, (int64_t) b.len, b.data + b.len - 100, 100, &loc, NULL);
                                ASSERT(r == 0 || r == -ENOENT || r == -EBADMSG);
                                if (r == 0)
                                        ASSERT(loc.offset >= 0 && loc.length > 0 && loc.offset + loc.length <= (int64_t) b.len);
                                b.data[i] ^= (unsigned char) (1 << bit);
                        }
                /* a shorter blob (the footer's offset now past its end) */
                for (int64_t cut = 0; cut < 64; cut++) {
                        int64_t size = (int64_t) b.len - (int64_t) b.len + 60 + cut;
                        int r = ossb_toc_locate(NULL, size, b.data + b.len - 60, 60, &loc, NULL);
                        ASSERT(r == -EBADMSG || r == -ENOENT);
                }
                json_object_put(desc);
                blob_clear(&b);
        }
}

/* ---- chunk reads on hand-made members ---- */

static size_t gzip_member(const void *in, size_t len, unsigned char *out, size_t cap)
{
        z_stream z = { 0 };
        if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return 0;
        z.next_in = (Bytef *) in;
        z.avail_in = (uInt) len;
        z.next_out = out;
        z.avail_out = (uInt) cap;
        int r = deflate(&z, Z_FINISH);
        size_t n = cap - z.avail_out;
        deflateEnd(&z);
        return r == Z_STREAM_END ? n : 0;
}

static void tar_header(unsigned char h[512], const char *name, size_t size)
{
        unsigned sum = 0;
        memset(h, 0, 512);
        strcpy((char *) h, name);
        strcpy((char *) h + 100, "0000644");
        snprintf((char *) h + 124, 12, "%011zo", size);
        strcpy((char *) h + 136, "00000000000");
        h[156] = '0';
        memcpy(h + 257, "ustar\0" "00", 8);
        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < 512; i++)
                sum += h[i];
        snprintf((char *) h + 148, 8, "%06o", sum);
}

static void test_chunk_tolerances(void)
{
        unsigned char raw[2048], comp[4096];
        struct ossb_toc_chunk c = { .offset = 100, .end = 0, .file_offset = 0, .size = 5 };
        struct ossb_toc_entry e = { .path = (char *) "dir/a", .mode = S_IFREG | 0644, .size = 5, .chunks = &c, .n_chunks = 1 };
        struct ossb_toc toc = { .kind = OSSB_SEEKABLE_ESTARGZ, .entries = &e, .n = 1 };
        char out[8];
        ossb_sha256_digest("hello", 5, c.digest);

        /* a member that starts with the entry's own header (PAX-less ustar) */
        tar_header(raw, "./dir/a", 5);
        memcpy(raw + 512, "hello", 5);
        memset(raw + 517, 0, 512 - 5);
        size_t n = gzip_member(raw, 1024, comp, sizeof(comp));
        ASSERT(n > 0);
        c.end = c.offset + (int64_t) n;
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, comp, n, out, NULL), 0);
        ASSERT(memcmp(out, "hello", 5) == 0);
        /* another entry's header is data, not skipped: the digest then fails */
        tar_header(raw, "dir/b", 5);
        n = gzip_member(raw, 1024, comp, sizeof(comp));
        c.end = c.offset + (int64_t) n;
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, comp, n, out, NULL), -EBADMSG);
        /* an inner offset: the data after 700 bytes of something else, in a second member */
        memset(raw, 'x', 700);
        memcpy(raw + 700, "hello", 5);
        size_t n1 = gzip_member(raw, 300, comp, sizeof(comp));
        size_t n2 = gzip_member(raw + 300, 405, comp + n1, sizeof(comp) - n1);
        ASSERT(n1 > 0 && n2 > 0);
        c.inner_offset = 700;
        c.end = c.offset + (int64_t) (n1 + n2);
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, comp, n1 + n2, out, NULL), 0);
        ASSERT(memcmp(out, "hello", 5) == 0);
        /* fewer bytes than the chunk: truncated */
        c.inner_offset = 702;
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, comp, n1 + n2, out, NULL), -EBADMSG);
        /* garbage */
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, "garbage!", 8, out, NULL), -EBADMSG);
        /* a chunk that is not the entry's */
        struct ossb_toc_chunk other = c;
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &other, comp, n1 + n2, out, NULL), -EINVAL);
        ASSERT_INTEQ(ossb_toc_chunk_read(NULL, &e, &c, comp, n1 + n2, out, NULL), -EINVAL);
        /* zstd: skippable frames and several frames are read through */
        toc.kind = OSSB_SEEKABLE_ZSTD_CHUNKED;
        c.inner_offset = 0;
        memcpy(comp, "\x50\x2a\x4d\x18\x03\x00\x00\x00" "abc", 11);
        n = 11 + ZSTD_compress(comp + 11, sizeof(comp) - 11, "he", 2, 3);
        n += ZSTD_compress(comp + n, sizeof(comp) - n, "llo", 3, 3);
        c.end = c.offset + (int64_t) n;
        ASSERT_INTEQ(ossb_toc_chunk_read(&toc, &e, &c, comp, n, out, NULL), 0);
        ASSERT(memcmp(out, "hello", 5) == 0);
}

/* An eStargz TOC member whose tar entry has another name, or is no tar at all. */
static void test_estargz_toc_member(void)
{
        unsigned char raw[2048], comp[4096];
        const char *json = "{\"version\":1,\"entries\":[]}";
        struct ossb_toc_location loc = { .kind = OSSB_SEEKABLE_ESTARGZ, .offset = 100 };
        struct ossb_toc *toc = NULL;
        memset(raw, 0, sizeof(raw));
        tar_header(raw, "stargz.index.json", strlen(json));
        memcpy(raw + 512, json, strlen(json));
        size_t n = gzip_member(raw, 2048, comp, sizeof(comp));
        loc.length = (int64_t) n;
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), 0);
        ASSERT_INTEQ(toc->n, 0);
        ossb_toc_free(toc);
        ossb_sha256_digest(json, strlen(json), loc.digest);
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), 0);
        ossb_toc_free(toc);
        loc.digest[0] = '\0';
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n - 1, &toc, NULL), -EINVAL); /* len != length */
        tar_header(raw, "other.json", strlen(json));
        n = gzip_member(raw, 2048, comp, sizeof(comp));
        loc.length = (int64_t) n;
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), -EBADMSG);
        raw[148] ^= 1; /* checksum */
        n = gzip_member(raw, 2048, comp, sizeof(comp));
        loc.length = (int64_t) n;
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), -EBADMSG);
        tar_header(raw, "stargz.index.json", 100000); /* size past the data */
        n = gzip_member(raw, 2048, comp, sizeof(comp));
        loc.length = (int64_t) n;
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), -EBADMSG);
        ASSERT_INTEQ(ossb_toc_decode(&loc, "not gzip", 8, &toc, NULL), -EINVAL);
        loc.length = 8;
        ASSERT_INTEQ(ossb_toc_decode(&loc, "not gzip", 8, &toc, NULL), -EBADMSG);
}

/* A decompression bomb: a TOC claiming more than the limit stops at the limit. */
static void test_toc_bomb(void)
{
        size_t big = OSSB_TOC_MAX_JSON + 1024;
        unsigned char *zeros = calloc(1, big);
        size_t bound = ZSTD_compressBound(big);
        unsigned char *comp = malloc(bound);
        ASSERT(zeros && comp);
        size_t n = ZSTD_compress(comp, bound, zeros, big, 1);
        ASSERT(!ZSTD_isError(n));
        struct ossb_toc_location loc = { .kind = OSSB_SEEKABLE_ZSTD_CHUNKED, .offset = 100, .length = (int64_t) n };
        struct ossb_toc *toc = NULL;
        ASSERT_INTEQ(ossb_toc_decode(&loc, comp, n, &toc, NULL), -EBADMSG);
        free(zeros);
        free(comp);
}

int main(void)
{
        const char *s = getenv("srcdir");
        if (s && *s)
                srcdir = s;
        setlocale(LC_ALL, "C.UTF-8");
        RUN_TEST(test_sample_zstd_chunked_skopeo);
        RUN_TEST(test_sample_estargz_ctr_remote);
        RUN_TEST(test_sample_zstd_chunked_ctr_remote);
        RUN_TEST(test_hostile_entries);
        RUN_TEST(test_good_entries);
        RUN_TEST(test_position_annotations);
        RUN_TEST(test_footers_truncated_and_flipped);
        RUN_TEST(test_chunk_tolerances);
        RUN_TEST(test_estargz_toc_member);
        RUN_TEST(test_toc_bomb);
        TAP_END();
}
