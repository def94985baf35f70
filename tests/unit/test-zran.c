/* tests/unit/test-zran.c - oci/zran.c: indexes of gzip layers built from tars libarchive
 * writes, compressed by zlib (one member, with full flushes), as concatenated members and by
 * ossb's pgzip; random reads at many offsets compared with a full decompression; the member
 * table compared with what libarchive reads; encode/decode round trips; corrupt indexes and
 * blobs refused. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "fuse/fusefs.h"
#include "fuse/source-remote.h"
#include "fuse/source-zran.h"
#include "oci/compress.h"
#include "oci/zran.h"
#include "tap.h"

struct mem {
        unsigned char *p;
        size_t len, cap;
};

static int mem_put(struct mem *m, const void *d, size_t n)
{
        if (m->len + n > m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 65536;
                while (cap < m->len + n)
                        cap *= 2;
                unsigned char *p = realloc(m->p, cap);
                if (!p)
                        return -ENOMEM;
                m->p = p;
                m->cap = cap;
        }
        memcpy(m->p + m->len, d, n);
        m->len += n;
        return 0;
}

static la_ssize_t ar_write(struct archive *a, void *ud, const void *buf, size_t n)
{
        return mem_put(ud, buf, n) < 0 ? -1 : (la_ssize_t) n;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void add(struct archive *a, const char *path, mode_t mode, const void *data, size_t size, const char *link,
                bool hard)
{
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, path);
        archive_entry_set_mode(e, mode);
        archive_entry_set_uid(e, 1000);
        archive_entry_set_gid(e, 100);
        archive_entry_set_mtime(e, 1700000000, 5);
        if (hard)
                archive_entry_set_hardlink(e, link);
        else if (link)
                archive_entry_set_symlink(e, link);
        if (S_ISREG(mode) && !hard)
                archive_entry_set_size(e, (la_int64_t) size);
        if (streq(path, "etc/xattr"))
                archive_entry_xattr_add_entry(e, "user.test", "value", 5);
        archive_write_header(a, e);
        if (size && !hard)
                archive_write_data(a, data, size);
        archive_entry_free(e);
}

/* A tar of about `total` bytes: directories, files of mixed compressibility, links, a
 * whiteout, an opaque marker, an xattr. */
static void make_tar(struct mem *out, size_t total)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_open(a, out, NULL, ar_write, NULL);
        add(a, "etc/", S_IFDIR | 0755, NULL, 0, NULL, false);
        add(a, "etc/os-release", S_IFREG | 0644, "ID=test\n", 8, NULL, false);
        add(a, "etc/xattr", S_IFREG | 0600, "x", 1, NULL, false);
        add(a, "etc/link", S_IFLNK | 0777, NULL, 0, "os-release", false);
        add(a, "etc/hard", S_IFREG | 0644, NULL, 0, "etc/os-release", true);
        add(a, "etc/.wh.gone", S_IFREG | 0, NULL, 0, NULL, false);
        add(a, "var/.wh..wh..opq", S_IFREG | 0, NULL, 0, NULL, false);
        size_t cap = 3u << 20;
        unsigned char *buf = malloc(cap);
        size_t written = 0;
        for (int i = 0; written < total; i++) {
                size_t n = rnd() % (i % 7 == 0 ? cap : 40000);
                bool random = i % 3 == 0;
                for (size_t j = 0; j < n; j++)
                        buf[j] = random ? (unsigned char) rnd() : (unsigned char) ("abcdefgh\n"[(j / 13 + i) % 9]);
                char name[64];
                snprintf(name, sizeof(name), "data/d%d/file-%d", i % 10, i);
                add(a, name, S_IFREG | 0644, buf, n, NULL, false);
                written += n + 512;
        }
        free(buf);
        archive_write_close(a);
        archive_write_free(a);
}

/* gzip `in`: members of `member` input bytes each (0: one member), full flushes every
 * `flush` bytes (0: none). */
static void gz(const struct mem *in, size_t member, size_t flush, struct mem *out)
{
        size_t at = 0;
        do {
                size_t n = member ? (in->len - at < member ? in->len - at : member) : in->len;
                z_stream s = { 0 };
                deflateInit2(&s, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
                size_t cap = deflateBound(&s, n) + 1024 + (flush ? n / flush * 16 : 0);
                unsigned char *o = malloc(cap);
                s.next_out = o;
                s.avail_out = (uInt) cap;
                size_t done = 0;
                while (done < n) {
                        size_t k = flush && n - done > flush ? flush : n - done;
                        s.next_in = in->p + at + done;
                        s.avail_in = (uInt) k;
                        done += k;
                        deflate(&s, done == n ? Z_FINISH : flush ? Z_FULL_FLUSH : Z_NO_FLUSH);
                }
                if (n == 0) {
                        s.avail_in = 0;
                        deflate(&s, Z_FINISH);
                }
                mem_put(out, o, cap - s.avail_out);
                deflateEnd(&s);
                free(o);
                at += n;
        } while (at < in->len);
}

static int sink(void *ud, const void *d, size_t n, struct ossb_error **err)
{
        return mem_put(ud, d, n);
}

static void pgz(const struct mem *in, struct mem *out)
{
        struct ossb_compressor *c = NULL;
        ossb_compressor_new_threads(OSSB_COMPRESSION_GZIP, 6, 2, sink, out, &c, NULL);
        ossb_compressor_write(c, in->p, in->len, NULL);
        ossb_compressor_finish(c, NULL);
        ossb_compressor_free(c);
}

struct reader {
        const struct mem *m;
        size_t at;
        int preads;
        int64_t pread_bytes;
};

static ssize_t seq_read(void *ud, void *buf, size_t len, struct ossb_error **err)
{
        struct reader *r = ud;
        size_t n = r->m->len - r->at < len ? r->m->len - r->at : len;
        n = n > 100000 ? 100000 : n; /* odd sizes: the builder must not depend on them */
        memcpy(buf, r->m->p + r->at, n);
        r->at += n;
        return (ssize_t) n;
}

static int mem_pread(void *ud, void *buf, size_t len, int64_t off, struct ossb_error **err)
{
        struct reader *r = ud;
        if (off < 0 || (size_t) off + len > r->m->len)
                return ossb_error_set(err, -EINVAL, "pread past the end");
        memcpy(buf, r->m->p + off, len);
        r->preads++;
        r->pread_bytes += (int64_t) len;
        return 0;
}

static int build(const struct mem *blob, int64_t span, struct ossb_zran **ret, struct ossb_error **err)
{
        char digest[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_digest(blob->p, blob->len, digest);
        struct ossb_zran_build_opts o = { .name = "test layer", .digest = digest, .size = (int64_t) blob->len,
                                          .span = span };
        struct reader r = { .m = blob };
        return ossb_zran_build(&o, seq_read, &r, ret, err);
}

/* Random reads at many offsets (and across span ends) equal the tar's bytes. */
static void check_reads(const struct ossb_zran *z, const struct mem *tar, const struct mem *blob, int tries)
{
        struct reader r = { .m = blob };
        unsigned char *buf = malloc(300000);
        for (int i = 0; i < tries; i++) {
                int64_t off = (int64_t) (rnd() % tar->len);
                if (i % 4 == 0 && z->n_cps > 1) /* just before a checkpoint */
                        off = z->cps[1 + rnd() % (z->n_cps - 1)].out - (int64_t) (rnd() % 100) - 1;
                size_t len = (size_t) (rnd() % 300000);
                struct ossb_error *e = NULL;
                ssize_t n = ossb_zran_read(z, mem_pread, &r, buf, len, off, &e);
                size_t want = (size_t) off + len > tar->len ? tar->len - (size_t) off : len;
                if (n != (ssize_t) want || memcmp(buf, tar->p + off, want) != 0) {
                        fprintf(stderr, "# read at %lld len %zu: got %zd (%s)\n", (long long) off, len, n,
                                e && e->msg ? e->msg : "data differs");
                        tap_current_failed = 1;
                        break;
                }
                ossb_error_free(e);
        }
        free(buf);
}

/* Every regular file's bytes at its offset are what libarchive reads for it. */
static void check_entries(const struct ossb_zran *z, const struct mem *tar)
{
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        archive_read_open_memory(a, tar->p, tar->len);
        struct archive_entry *ae;
        size_t i = 0, files = 0, multi = 0;
        while (archive_read_next_header(a, &ae) == ARCHIVE_OK && i < z->n_entries) {
                const struct ossb_zran_entry *e = &z->entries[i++];
                _cleanup_free_ char *want = ossb_path_clean(archive_entry_pathname(ae));
                if (!streq(e->path, want) || e->uid != 1000 || e->mtime.tv_sec != 1700000000) {
                        fprintf(stderr, "# entry %zu: %s vs %s\n", i, e->path, want);
                        tap_current_failed = 1;
                        break;
                }
                if (S_ISREG(e->mode) && !e->hardlink && e->size > 0) {
                        _cleanup_free_ char *data = malloc((size_t) e->size);
                        la_ssize_t n = archive_read_data(a, data, (size_t) e->size);
                        if (n != e->size || memcmp(data, tar->p + e->offset, (size_t) e->size)) {
                                fprintf(stderr, "# file %s: data at %lld differs\n", e->path, (long long) e->offset);
                                tap_current_failed = 1;
                                break;
                        }
                        files++;
                        /* the per-span digests are those of the file's bytes in each span */
                        size_t first, ns = ossb_zran_file_spans(z, e, &first);
                        int64_t at = e->offset, end = e->offset + e->size;
                        for (size_t s = 0; s < ns; s++) {
                                int64_t stop = first + s + 1 < z->n_cps ? z->cps[first + s + 1].out : end;
                                stop = stop < end ? stop : end;
                                char d[OSSB_DIGEST_STR_LEN + 1];
                                ossb_sha256_digest(tar->p + at, (size_t) (stop - at), d);
                                if (ns != e->n_digests || !streq(d, e->digests[s])) {
                                        fprintf(stderr, "# file %s: span digest %zu differs\n", e->path, s);
                                        tap_current_failed = 1;
                                        break;
                                }
                                at = stop;
                        }
                        multi += ns > 1;
                }
        }
        if (i != z->n_entries || files < 10 || multi < 1)
                tap_current_failed = 1;
        archive_read_free(a);
}

static struct mem tar;

static void check_variant(const struct mem *blob, int64_t span, size_t min_cps)
{
        struct ossb_zran *z = NULL;
        struct ossb_error *e = NULL;
        int k = build(blob, span, &z, &e);
        if (k < 0)
                fprintf(stderr, "# build: %s\n", e && e->msg ? e->msg : "?");
        ossb_error_free(e);
        ASSERT(k == 0);
        ASSERT_INTEQ(z->size, tar.len);
        fprintf(stderr, "# blob %zu bytes, %zu checkpoints, %zu entries\n", blob->len, z->n_cps, z->n_entries);
        if (z->n_cps < min_cps)
                tap_current_failed = 1;
        check_entries(z, &tar);
        check_reads(z, &tar, blob, 300);
        /* round trip, deterministic */
        void *enc = NULL, *enc2 = NULL;
        size_t len = 0, len2 = 0;
        struct ossb_zran *z2 = NULL;
        if (ossb_zran_encode(z, &enc, &len, NULL) < 0 || ossb_zran_decode(enc, len, &z2, NULL) < 0 ||
            ossb_zran_encode(z2, &enc2, &len2, NULL) < 0 || len != len2 || memcmp(enc, enc2, len))
                tap_current_failed = 1;
        else
                check_reads(z2, &tar, blob, 50);
        free(enc);
        free(enc2);
        ossb_zran_free(z2);
        ossb_zran_free(z);
}

static void test_single_member(void)
{
        struct mem blob = { 0 };
        gz(&tar, 0, 0, &blob);
        check_variant(&blob, 1 << 20, 4);
        free(blob.p);
}

static void test_full_flush(void)
{
        struct mem blob = { 0 };
        gz(&tar, 0, 100000, &blob);
        check_variant(&blob, 300000, 8);
        free(blob.p);
}

static void test_multi_member(void)
{
        struct mem blob = { 0 };
        gz(&tar, 777777, 0, &blob);
        check_variant(&blob, 1 << 20, 4);
        free(blob.p);
        /* many small members: checkpoints at member starts */
        struct mem blob2 = { 0 };
        gz(&tar, 50000, 0, &blob2);
        check_variant(&blob2, 200000, 8);
        free(blob2.p);
}

static void test_pgzip(void)
{
        struct mem blob = { 0 };
        pgz(&tar, &blob);
        check_variant(&blob, 1 << 20, 4);
        free(blob.p);
}

static void test_corrupt_blob(void)
{
        struct mem blob = { 0 };
        gz(&tar, 0, 0, &blob);
        struct ossb_zran *z = NULL;
        ASSERT(build(&blob, 1 << 20, &z, NULL) == 0);
        ASSERT(z->n_cps > 2);
        /* a wrong byte inside span 1: its read fails, never wrong bytes */
        int64_t in, in_len, out, out_len;
        ossb_zran_span(z, 1, &in, &in_len, &out, &out_len);
        struct mem bad = { 0 };
        mem_put(&bad, blob.p, blob.len);
        bad.p[in + in_len / 2] ^= 0x10;
        struct reader r = { .m = &bad };
        unsigned char *buf = malloc((size_t) out_len);
        struct ossb_error *e = NULL;
        ssize_t n = ossb_zran_read(z, mem_pread, &r, buf, (size_t) out_len, out, &e);
        ASSERT(n == -EBADMSG);
        ASSERT(e && strstr(e->msg, "span 1"));
        ossb_error_free(e);
        /* span 0 still reads */
        ASSERT(ossb_zran_read(z, mem_pread, &r, buf, 1000, 0, NULL) == 1000);
        free(buf);
        /* building from a corrupt or truncated blob fails; a wrong digest too */
        struct ossb_zran *z2 = NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_digest(blob.p, blob.len, digest);
        struct ossb_zran_build_opts o = { .name = "t", .digest = digest, .size = -1 };
        struct reader rb = { .m = &bad };
        ASSERT(ossb_zran_build(&o, seq_read, &rb, &z2, NULL) < 0);
        struct mem trunc = { .p = blob.p, .len = blob.len - 100 };
        struct reader rt = { .m = &trunc };
        e = NULL;
        ASSERT(ossb_zran_build(&o, seq_read, &rt, &z2, &e) == -EBADMSG);
        ossb_error_free(e);
        struct reader rg = { .m = &blob };
        e = NULL;
        o.digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        ASSERT(ossb_zran_build(&o, seq_read, &rg, &z2, &e) == -EBADMSG);
        ASSERT(e && strstr(e->msg, "digest"));
        ossb_error_free(e);
        free(bad.p);
        free(blob.p);
        ossb_zran_free(z);
}

static void test_corrupt_index(void)
{
        struct mem blob = { 0 };
        gz(&tar, 0, 0, &blob);
        struct ossb_zran *z = NULL;
        ASSERT(build(&blob, 1 << 20, &z, NULL) == 0);
        void *enc = NULL;
        size_t len = 0;
        ASSERT(ossb_zran_encode(z, &enc, &len, NULL) == 0);
        unsigned char *p = enc;
        for (int i = 0; i < 200; i++) { /* flipped bytes: the checksum catches them */
                size_t at = rnd() % len;
                p[at] ^= 1;
                struct ossb_zran *bad = NULL;
                struct ossb_error *e = NULL;
                ASSERT(ossb_zran_decode(enc, len, &bad, &e) == -EBADMSG);
                ossb_error_free(e);
                p[at] ^= 1;
        }
        for (size_t cut = 0; cut < len; cut += len / 50 + 1) {
                struct ossb_zran *bad = NULL;
                ASSERT(ossb_zran_decode(enc, cut, &bad, NULL) == -EBADMSG);
        }
        struct ossb_zran *ok = NULL;
        ASSERT(ossb_zran_decode(enc, len, &ok, NULL) == 0);
        ossb_zran_free(ok);
        /* a valid checksum over hostile fields: a file past the end */
        struct ossb_zran *good = NULL;
        ASSERT(ossb_zran_decode(enc, len, &good, NULL) == 0);
        for (size_t i = 0; i < good->n_entries; i++)
                if (S_ISREG(good->entries[i].mode) && !good->entries[i].hardlink) {
                        good->entries[i].size = good->size;
                        break;
                }
        void *enc2 = NULL;
        size_t len2 = 0;
        ASSERT(ossb_zran_encode(good, &enc2, &len2, NULL) == 0);
        struct ossb_zran *bad = NULL;
        struct ossb_error *e = NULL;
        ASSERT(ossb_zran_decode(enc2, len2, &bad, &e) == -EBADMSG);
        ASSERT(e && strstr(e->msg, "outside"));
        ossb_error_free(e);
        free(enc2);
        ossb_zran_free(good);
        free(enc);
        free(blob.p);
        ossb_zran_free(z);
}

static void test_cache(void)
{
        char dir[] = "/tmp/test-zran-XXXXXX";
        ASSERT(mkdtemp(dir));
        struct mem blob = { 0 };
        gz(&tar, 0, 0, &blob);
        struct ossb_zran *z = NULL;
        ASSERT(build(&blob, 1 << 20, &z, NULL) == 0);
        void *enc = NULL;
        size_t len = 0;
        ASSERT(ossb_zran_encode(z, &enc, &len, NULL) == 0);
        char *path = NULL;
        ASSERT(ossb_zran_cache_store(dir, enc, len, &path, NULL) == 0);
        struct ossb_zran *z2 = NULL;
        ASSERT(ossb_zran_cache_load(dir, z->layer_digest, (int64_t) blob.len, &z2, NULL) == 0);
        ASSERT_INTEQ(z2->n_cps, z->n_cps);
        ossb_zran_free(z2);
        ASSERT(ossb_zran_cache_load(dir, z->layer_digest, 5, &z2, NULL) == -ENOENT); /* wrong size: removed */
        ASSERT(access(path, F_OK) < 0);
        free(path);
        free(enc);
        free(blob.p);
        ossb_zran_free(z);
        ossb_rm_rf(dir);
}

/* ---- the FUSE source (fuse/source-zran.c) ---- */

struct fake {
        const struct mem *blob;
        int calls;
        int64_t bytes;
};

static int fake_fetch(void *ud, const struct ossb_range *r, size_t n, ossb_range_cb cb, void *cb_ud,
                      struct ossb_error **err)
{
        struct fake *f = ud;
        f->calls++;
        for (size_t i = 0; i < n; i++) {
                if (r[i].offset < 0 || (size_t) (r[i].offset + r[i].length) > f->blob->len)
                        return ossb_error_set(err, -EINVAL, "range past the blob");
                f->bytes += r[i].length;
                int k = cb(cb_ud, i, f->blob->p + r[i].offset, (size_t) r[i].length);
                if (k < 0)
                        return ossb_error_set(err, k, "callback failed");
        }
        return 0;
}

static struct ossb_fs_source *zsource(const struct mem *blob, const struct mem *served, struct fake *f,
                                      const char *cache)
{
        struct ossb_zran *z = NULL;
        if (build(blob, 1 << 20, &z, NULL) < 0)
                return NULL;
        *f = (struct fake) { .blob = served };
        struct ossb_fs_zran_opts o = { .name = "test:1 layer 1", .index = z, .fetch = fake_fetch,
                                       .fetch_userdata = f, .cache_dir = cache };
        struct ossb_fs_source *src = NULL;
        struct ossb_error *e = NULL;
        if (ossb_fs_source_zran_new(&o, &src, &e) < 0)
                fprintf(stderr, "# source: %s\n", e && e->msg ? e->msg : "?");
        ossb_error_free(e);
        return src;
}

static ssize_t read_file(struct ossb_fs_source *src, const char *path, unsigned char *buf, size_t size)
{
        void *h = NULL;
        int k = src->ops->open(src->ctx, path, &h);
        if (k < 0)
                return k;
        size_t done = 0;
        for (;;) {
                ssize_t n = src->ops->read(src->ctx, h, buf + done, size - done < 70000 ? size - done : 70000,
                                           (off_t) done);
                if (n <= 0) {
                        src->ops->release(src->ctx, h);
                        return n < 0 ? n : (ssize_t) done;
                }
                done += (size_t) n;
        }
}

static void test_source(void)
{
        char cache[] = "/tmp/test-zran-src-XXXXXX";
        ASSERT(mkdtemp(cache));
        struct mem blob = { 0 };
        pgz(&tar, &blob);
        struct fake f;
        struct ossb_fs_source *src = zsource(&blob, &blob, &f, cache);
        ASSERT(src);
        ASSERT(ossb_fs_source_is_remote(src));
        struct stat st;
        unsigned flags = 0;
        ASSERT(src->ops->getattr(src->ctx, "etc/os-release", &st, &flags) == 0);
        ASSERT(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644 && st.st_uid == 1000 && st.st_size == 8);
        ASSERT(src->ops->getattr(src->ctx, "etc/gone", &st, &flags) == 0 && (flags & OSSB_FS_WHITEOUT));
        ASSERT(src->ops->getattr(src->ctx, "var", &st, &flags) == 0 && (flags & OSSB_FS_OPAQUE));
        ASSERT(src->ops->getattr(src->ctx, "etc/.wh.gone", &st, &flags) == -ENOENT);
        char buf[64];
        ASSERT(src->ops->readlink(src->ctx, "etc/link", buf, sizeof(buf)) == 10 && streq(buf, "os-release"));
        ASSERT(src->ops->getxattr(src->ctx, "etc/xattr", "user.test", buf, sizeof(buf)) == 5);
        ASSERT(f.calls == 0); /* metadata costs no fetch */
        unsigned char *data = malloc(4u << 20);
        ASSERT(read_file(src, "etc/hard", data, 100) == 8 && !memcmp(data, "ID=test\n", 8));
        /* every file reads back as the tar has it */
        struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        archive_read_open_memory(a, tar.p, tar.len);
        struct archive_entry *ae;
        int files = 0;
        unsigned char *want = malloc(4u << 20);
        while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
                const char *path = archive_entry_pathname(ae);
                if (!S_ISREG(archive_entry_mode(ae)) || archive_entry_hardlink(ae) || strncmp(path, "data/", 5))
                        continue;
                la_ssize_t n = archive_read_data(a, want, 4u << 20);
                ssize_t got = read_file(src, path, data, 4u << 20);
                if (got != n || memcmp(want, data, (size_t) n)) {
                        fprintf(stderr, "# %s: got %zd bytes, want %zd\n", path, got, (ssize_t) n);
                        tap_current_failed = 1;
                        break;
                }
                files++;
        }
        archive_read_free(a);
        struct ossb_fs_remote_stats rst;
        ossb_fs_source_remote_get_stats(src, &rst);
        fprintf(stderr, "# %d files, %d fetches, %lld blob bytes (blob %zu), %llu chunks\n", files, f.calls,
                (long long) f.bytes, blob.len, (unsigned long long) rst.chunks_fetched);
        ASSERT(files > 20);
        ASSERT(f.calls < 10); /* the spans are decompressed once, not once per file */
        ossb_fs_source_free(src);
        ossb_fs_zran_span_cache_clear();
        /* a second source on the same cache: served from the chunk cache, nothing fetched */
        src = zsource(&blob, &blob, &f, cache);
        ASSERT(src);
        ASSERT(read_file(src, "etc/os-release", data, 100) == 8);
        ASSERT(f.calls == 0);
        ossb_fs_source_free(src);
        free(want);
        free(data);
        free(blob.p);
        ossb_rm_rf(cache);
}

static void test_source_corrupt(void)
{
        char cache[] = "/tmp/test-zran-src-XXXXXX";
        ASSERT(mkdtemp(cache));
        struct mem blob = { 0 };
        gz(&tar, 0, 0, &blob);
        struct ossb_zran *z = NULL;
        ASSERT(build(&blob, 1 << 20, &z, NULL) == 0);
        /* a file that lies wholly in span 1 */
        const char *victim = NULL;
        int64_t in, in_len, s_out, s_len;
        ossb_zran_span(z, 1, &in, &in_len, &s_out, &s_len);
        for (size_t i = 0; i < z->n_entries && !victim; i++)
                if (S_ISREG(z->entries[i].mode) && z->entries[i].size > 0 && z->entries[i].offset >= s_out &&
                    z->entries[i].offset + z->entries[i].size <= s_out + s_len)
                        victim = strdupa(z->entries[i].path);
        ossb_zran_free(z);
        ASSERT(victim);
        struct mem bad = { 0 };
        mem_put(&bad, blob.p, blob.len);
        bad.p[in + in_len / 2] ^= 0x55;
        struct fake f;
        struct ossb_fs_source *src = zsource(&blob, &bad, &f, cache);
        ASSERT(src);
        ossb_fs_zran_span_cache_clear();
        unsigned char *data = malloc(4u << 20);
        ASSERT(read_file(src, victim, data, 4u << 20) == -EIO);
        char *msg = ossb_fs_source_remote_error(src);
        fprintf(stderr, "# %s\n", msg ? msg : "(none)");
        ASSERT(msg && strstr(msg, victim) && strstr(msg, "test:1 layer 1"));
        free(msg);
        ASSERT(read_file(src, "etc/os-release", data, 100) == 8 && !memcmp(data, "ID=test\n", 8));
        ossb_fs_source_free(src);
        free(data);
        free(bad.p);
        free(blob.p);
        ossb_rm_rf(cache);
}

int main(void)
{
        make_tar(&tar, 12u << 20);
        RUN_TEST(test_single_member);
        RUN_TEST(test_full_flush);
        RUN_TEST(test_multi_member);
        RUN_TEST(test_pgzip);
        RUN_TEST(test_corrupt_blob);
        RUN_TEST(test_corrupt_index);
        RUN_TEST(test_cache);
        RUN_TEST(test_source);
        RUN_TEST(test_source_corrupt);
        free(tar.p);
        ossb_fs_zran_span_cache_clear();
        TAP_END();
}
