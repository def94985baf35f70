/* tests/unit/test-oci-layer.c - oci/layer.c and oci/compress.c: every entry type, xattrs,
 * special bits, long and non-ASCII names, mtime clamping, the three compressions, DiffID vs
 * digest, reproducibility (io_uring and pread give the same bytes), short files, invalid
 * entries, store write failures, aborted writers, and the decompressor on bad input. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/oci.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-layer-XXXXXX";
static struct ossb_store *store;

#define BIG_SIZE (600 * 1024 + 123) /* more than two 256 KiB read chunks */

static int count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int ingest_count(void)
{
        _cleanup_free_ char *p = ossb_path_join(tmpdir, "store/ingest");
        return count_entries(p);
}

/* A file of `size` pseudo-random bytes; returns an fd open for reading. */
static int make_file(const char *name, size_t size)
{
        _cleanup_free_ char *p = ossb_path_join(tmpdir, name);
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        unsigned x = 12345;
        if (!p || !buf)
                return -1;
        for (size_t i = 0; i < size; i++) {
                x = x * 1103515245 + 12345;
                buf[i] = (char) (x >> 16);
        }
        if (ossb_write_file_atomic(p, buf, size, 0644, NULL) < 0)
                return -1;
        return open(p, O_RDONLY | O_CLOEXEC);
}

static int sb_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_strbuf_append_n(userdata, data, len) < 0 ? ossb_error_set(err, -ENOMEM, "oom") : 0;
}

/* Decompress a stored blob into sb. */
static int blob_uncompressed(const char *digest, struct ossb_strbuf *sb)
{
        int fd = -1;
        int r = ossb_store_open_blob(store, digest, &fd, NULL);
        if (r < 0)
                return r;
        r = ossb_decompress_fd(fd, sb_sink, sb, NULL);
        close(fd);
        return r;
}

struct written {
        char digest[OSSB_DIGEST_STR_LEN + 1];
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
};

static const struct ossb_xattr xattrs[] = {
        { "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00", 8 },
        { "user.comment", "hello", 5 },
};

/* The standard test layer; returns 0 or -errno. */
static int write_layer(const struct ossb_layer_opts *opts, struct written *out)
{
        struct ossb_layer_writer *w = NULL;
        char longname[300];
        int r, fd;

        memset(longname, 'n', sizeof(longname) - 1);
        memcpy(longname, "dir/", 4);
        longname[sizeof(longname) - 1] = '\0';
        fd = make_file("big", BIG_SIZE);
        if (fd < 0)
                return -EIO;
        const struct ossb_layer_entry entries[] = {
                { .path = "dir", .type = OSSB_ENTRY_DIR, .mode = 0755, .mtime_sec = 1700000000 },
                { .path = "dir/big", .type = OSSB_ENTRY_FILE, .mode = 04755, .uid = 1000, .gid = 100,
                  .mtime_sec = 1700000001, .mtime_nsec = 999, .size = BIG_SIZE, .xattrs = xattrs, .n_xattrs = 2 },
                { .path = "dir/hard", .type = OSSB_ENTRY_HARDLINK, .mode = 04755, .linkname = "dir/big",
                  .mtime_sec = 1700000001 },
                { .path = "dir/link", .type = OSSB_ENTRY_SYMLINK, .mode = 0777, .linkname = "../etc/passwd",
                  .mtime_sec = 5 },
                { .path = "dev/null", .type = OSSB_ENTRY_CHAR, .mode = 0666, .rdev = makedev(1, 3) },
                { .path = "dev/sda", .type = OSSB_ENTRY_BLOCK, .mode = 0660, .gid = 6, .rdev = makedev(8, 0) },
                { .path = "fifo", .type = OSSB_ENTRY_FIFO, .mode = 0600 },
                { .path = "tmp/", .type = OSSB_ENTRY_DIR, .mode = 01777 },
                { .path = longname, .type = OSSB_ENTRY_FILE, .mode = 02644, .size = 0 },
                { .path = "caf\xc3\xa9-\xff", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = 0 },
        };
        r = ossb_layer_writer_new(store, opts, &w, NULL);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(entries); i++)
                r = ossb_layer_writer_add(w, &entries[i], entries[i].type == OSSB_ENTRY_FILE ? fd : -1, NULL);
        struct ossb_layer_entry data = { .path = "etc/data", .type = OSSB_ENTRY_FILE, .mode = 0600, .size = 5,
                                         .mtime_sec = 4000000000LL };
        if (r >= 0)
                r = ossb_layer_writer_add_data(w, &data, "hello", 5, NULL);
        if (r >= 0)
                r = ossb_layer_writer_finish(w, out->digest, &out->size, out->diff_id, NULL);
        ossb_layer_writer_free(w);
        close(fd);
        return r;
}

struct seen {
        int n;
        bool big_ok, hard_ok, link_ok, null_ok, sda_ok, fifo_ok, tmp_ok, long_ok, data_ok, utf_ok;
};

static void check_entry(struct archive *a, struct archive_entry *e, struct seen *s, int64_t sde)
{
        const char *p = archive_entry_pathname(e);
        char buf[8192];
        s->n++;
        const char *un = archive_entry_uname(e), *gn = archive_entry_gname(e);
        if ((un && *un) || (gn && *gn) || archive_entry_atime_is_set(e) || archive_entry_ctime_is_set(e))
                return;
        if (streq(p, "dir/big")) {
                const char *n, *v;
                size_t sz;
                int xn = 0;
                archive_entry_xattr_reset(e);
                while (archive_entry_xattr_next(e, &n, (const void **) &v, &sz) == ARCHIVE_OK)
                        if ((streq(n, "security.capability") && sz == 8) || (streq(n, "user.comment") && sz == 5 &&
                                                                             memcmp(v, "hello", 5) == 0))
                                xn++;
                int64_t total = 0;
                la_ssize_t k;
                while ((k = archive_read_data(a, buf, sizeof(buf))) > 0)
                        total += k;
                s->big_ok = xn == 2 && total == BIG_SIZE && (archive_entry_mode(e) & 07777) == 04755 &&
                            archive_entry_uid(e) == 1000 && archive_entry_gid(e) == 100 &&
                            archive_entry_mtime(e) == (sde >= 0 ? sde : 1700000001) && archive_entry_mtime_nsec(e) == 0;
        } else if (streq(p, "dir/hard"))
                s->hard_ok = archive_entry_hardlink(e) && streq(archive_entry_hardlink(e), "dir/big");
        else if (streq(p, "dir/link"))
                s->link_ok = archive_entry_filetype(e) == AE_IFLNK && streq(archive_entry_symlink(e), "../etc/passwd") &&
                             archive_entry_mtime(e) == 5;
        else if (streq(p, "dev/null"))
                s->null_ok = archive_entry_filetype(e) == AE_IFCHR && archive_entry_rdevmajor(e) == 1 &&
                             archive_entry_rdevminor(e) == 3;
        else if (streq(p, "dev/sda"))
                s->sda_ok = archive_entry_filetype(e) == AE_IFBLK && archive_entry_rdevmajor(e) == 8 &&
                            archive_entry_gid(e) == 6;
        else if (streq(p, "fifo"))
                s->fifo_ok = archive_entry_filetype(e) == AE_IFIFO && (archive_entry_mode(e) & 07777) == 0600;
        else if (streq(p, "tmp/"))
                s->tmp_ok = archive_entry_filetype(e) == AE_IFDIR && (archive_entry_mode(e) & 07777) == 01777;
        else if (strlen(p) == 299 && strncmp(p, "dir/nnn", 7) == 0)
                s->long_ok = (archive_entry_mode(e) & 07777) == 02644;
        else if (streq(p, "caf\xc3\xa9-\xff"))
                s->utf_ok = true;
        else if (streq(p, "etc/data"))
                s->data_ok = archive_read_data(a, buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0 &&
                             archive_entry_mtime(e) == (sde >= 0 ? sde : 4000000000LL);
}

static int read_tar(const char *data, size_t len, struct seen *s, int64_t sde)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r;
        archive_read_support_format_tar(a);
        archive_read_set_options(a, "hdrcharset=BINARY");
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
                archive_read_free(a);
                return -EIO;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
                check_entry(a, e, s, sde);
        archive_read_free(a);
        return r == ARCHIVE_EOF ? 0 : -EIO;
}

static void test_compression_names(void)
{
        enum ossb_compression c;
        ASSERT(ossb_compression_from_string("gzip", &c) == 0 && c == OSSB_COMPRESSION_GZIP);
        ASSERT(ossb_compression_from_string("zstd", &c) == 0 && c == OSSB_COMPRESSION_ZSTD);
        ASSERT(ossb_compression_from_string("uncompressed", &c) == 0 && c == OSSB_COMPRESSION_NONE);
        ASSERT_INTEQ(ossb_compression_from_string("lz4", &c), -EINVAL);
        ASSERT_INTEQ(ossb_compression_from_string(NULL, &c), -EINVAL);
        ASSERT_STREQ(ossb_compression_to_string(OSSB_COMPRESSION_ZSTD), "zstd");
        ASSERT_STREQ(ossb_compression_to_string(OSSB_COMPRESSION_GZIP), "gzip");
        ASSERT_STREQ(ossb_compression_to_string(OSSB_COMPRESSION_NONE), "uncompressed");
        ASSERT(ossb_compression_to_string((enum ossb_compression) 42) == NULL);
        ASSERT_STREQ(ossb_compression_media_type(OSSB_COMPRESSION_GZIP), OSSB_MT_OCI_LAYER_GZIP);
        ASSERT_STREQ(ossb_compression_media_type(OSSB_COMPRESSION_ZSTD), OSSB_MT_OCI_LAYER_ZSTD);
        ASSERT_STREQ(ossb_compression_media_type(OSSB_COMPRESSION_NONE), OSSB_MT_OCI_LAYER);
        ASSERT(ossb_compression_media_type((enum ossb_compression) 42) == NULL);
}

static void check_layer(enum ossb_compression c, int64_t sde)
{
        struct ossb_layer_opts opts = { .compression = c, .level = -1, .source_date_epoch = sde };
        struct written w1, w2;
        _cleanup_strbuf_ struct ossb_strbuf tar = OSSB_STRBUF_INIT;
        char d[OSSB_DIGEST_STR_LEN + 1];
        struct seen s = { 0 };

        ASSERT(write_layer(&opts, &w1) == 0);
        ASSERT(ossb_store_has(store, w1.digest));
        ASSERT(blob_uncompressed(w1.digest, &tar) == 0);
        ASSERT(ossb_sha256_digest(tar.buf, tar.len, d) == 0);
        ASSERT_STREQ(d, w1.diff_id);
        ASSERT_INTEQ(tar.len % 512, 0);
        if (c == OSSB_COMPRESSION_NONE) {
                ASSERT_STREQ(w1.digest, w1.diff_id);
                ASSERT_INTEQ(w1.size, tar.len);
        } else
                ASSERT(!streq(w1.digest, w1.diff_id));
        ASSERT(read_tar(tar.buf, tar.len, &s, sde) == 0);
        ASSERT_INTEQ(s.n, 11);
        if (!(s.big_ok && s.hard_ok && s.link_ok && s.null_ok && s.sda_ok && s.fifo_ok))
                fprintf(stderr, "# big %d hard %d link %d null %d sda %d fifo %d\n", s.big_ok, s.hard_ok, s.link_ok,
                        s.null_ok, s.sda_ok, s.fifo_ok);
        ASSERT(s.big_ok && s.hard_ok && s.link_ok && s.null_ok && s.sda_ok && s.fifo_ok);
        ASSERT(s.tmp_ok && s.long_ok && s.data_ok && s.utf_ok);

        /* reproducible, with the pread fallback and another process locale too */
        ossb_layer_disable_io_uring(true);
        setlocale(LC_ALL, "C.UTF-8");
        int r = write_layer(&opts, &w2);
        setlocale(LC_ALL, "C");
        ossb_layer_disable_io_uring(false);
        ASSERT(r == 0);
        ASSERT_STREQ(w1.digest, w2.digest);
        ASSERT_STREQ(w1.diff_id, w2.diff_id);
        ASSERT_INTEQ(w1.size, w2.size);
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_layer_gzip(void)
{
        check_layer(OSSB_COMPRESSION_GZIP, -1);
}

static void test_layer_zstd(void)
{
        check_layer(OSSB_COMPRESSION_ZSTD, -1);
}

static void test_layer_none(void)
{
        check_layer(OSSB_COMPRESSION_NONE, -1);
}

static void test_layer_clamped(void)
{
        check_layer(OSSB_COMPRESSION_GZIP, 1000);
}

static void test_gzip_header(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_GZIP, .level = 9, .source_date_epoch = -1 };
        struct written w;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        ASSERT(write_layer(&opts, &w) == 0);
        ASSERT(ossb_store_read_blob(store, w.digest, 1 << 24, &data, &len, NULL) == 0);
        ASSERT(len > 10);
        /* magic, deflate, no flags, mtime 0, (xfl), OS 255 */
        ASSERT(memcmp(data, "\x1f\x8b\x08\x00\x00\x00\x00\x00", 8) == 0);
        ASSERT_INTEQ((unsigned char) data[9], 255);
}

static void test_levels(void)
{
        struct ossb_layer_writer *w = NULL;
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
        struct ossb_layer_opts o1 = { .compression = OSSB_COMPRESSION_GZIP, .level = 10, .source_date_epoch = -1 };
        struct ossb_layer_opts o2 = { .compression = OSSB_COMPRESSION_ZSTD, .level = 1000, .source_date_epoch = -1 };
        struct ossb_layer_opts o3 = { .compression = (enum ossb_compression) 7, .level = -1, .source_date_epoch = -1 };
        ASSERT_INTEQ(ossb_layer_writer_new(store, &o1, &w, &e1), -EINVAL);
        ASSERT(strstr(e1->msg, "gzip level 10"));
        ASSERT_INTEQ(ossb_layer_writer_new(store, &o2, &w, &e2), -EINVAL);
        ASSERT(strstr(e2->msg, "zstd level 1000"));
        ASSERT_INTEQ(ossb_layer_writer_new(store, &o3, &w, &e3), -EINVAL);
        ASSERT_INTEQ(ingest_count(), 0);
        /* every zstd level that is allowed works */
        struct ossb_layer_opts o4 = { .compression = OSSB_COMPRESSION_ZSTD, .level = 19, .source_date_epoch = -1 };
        struct written wr;
        ASSERT(write_layer(&o4, &wr) == 0);
}

static void short_file(bool uring)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_ZSTD, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL;
        int fd = make_file("short", 300000);
        struct ossb_layer_entry ent = { .path = "f", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = 300001 };
        char d[OSSB_DIGEST_STR_LEN + 1];

        ASSERT(fd >= 0);
        ossb_layer_disable_io_uring(!uring);
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        int r = ossb_layer_writer_add(w, &ent, fd, &e);
        ossb_layer_disable_io_uring(false);
        close(fd);
        ASSERT_INTEQ(r, -EIO);
        ASSERT(strstr(e->msg, "shorter than its recorded size (300000 of 300001 bytes)"));
        ASSERT(strstr(e->msg, "`f`"));
        /* broken for good */
        struct ossb_layer_entry d2 = { .path = "g", .type = OSSB_ENTRY_DIR, .mode = 0755 };
        ASSERT_INTEQ(ossb_layer_writer_add(w, &d2, -1, &e2), -EIO);
        ASSERT(strstr(e2->msg, "failed earlier"));
        ASSERT_INTEQ(ossb_layer_writer_finish(w, d, NULL, NULL, &e3), -EIO);
        ASSERT_INTEQ(ingest_count(), 1);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_short_file_uring(void)
{
        short_file(true);
}

static void test_short_file_pread(void)
{
        short_file(false);
}

static void read_error(bool uring)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_free_ char *p = ossb_path_join(tmpdir, "wronly");
        struct ossb_layer_entry ent = { .path = "f", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = 10 };
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT(fd >= 0);
        ASSERT(write(fd, "0123456789", 10) == 10);
        ossb_layer_disable_io_uring(!uring);
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        int r = ossb_layer_writer_add(w, &ent, fd, &e);
        ossb_layer_disable_io_uring(false);
        close(fd);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(r, -EBADF);
        ASSERT(strstr(e->msg, "read failed"));
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_read_error_uring(void)
{
        read_error(true);
}

static void test_read_error_pread(void)
{
        read_error(false);
}

static void test_invalid_entries(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_GZIP, .level = 1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        static const char *bad_paths[] = { "", "/abs", "../x", "a/../b", "a//b", "./a", "a/.", "f/" };
        char d[OSSB_DIGEST_STR_LEN + 1], did[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;

        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        for (size_t i = 0; i < ELEMENTSOF(bad_paths); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                struct ossb_layer_entry ent = { .path = bad_paths[i], .type = OSSB_ENTRY_FILE, .size = 0 };
                ASSERT_INTEQ(ossb_layer_writer_add(w, &ent, -1, &e), -EINVAL);
                ASSERT(strstr(e->msg, "invalid layer path"));
        }
        const struct ossb_layer_entry bad[] = {
                { .path = NULL, .type = OSSB_ENTRY_DIR },
                { .path = "s", .type = OSSB_ENTRY_SYMLINK, .linkname = NULL },
                { .path = "s", .type = OSSB_ENTRY_SYMLINK, .linkname = "" },
                { .path = "h", .type = OSSB_ENTRY_HARDLINK, .linkname = "/abs" },
                { .path = "h", .type = OSSB_ENTRY_HARDLINK, .linkname = NULL },
                { .path = "f", .type = OSSB_ENTRY_FILE, .size = -1 },
                { .path = "x", .type = OSSB_ENTRY_FILE, .n_xattrs = 1 },
                { .path = "x", .type = OSSB_ENTRY_FILE, .n_xattrs = 1, .xattrs = &(struct ossb_xattr) { "", "", 0 } },
                { .path = "t", .type = (enum ossb_entry_type) 99 },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT_INTEQ(ossb_layer_writer_add(w, &bad[i], -1, &e), -EINVAL);
        }
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .size = 3 };
        ASSERT_INTEQ(ossb_layer_writer_add(w, &f, -1, &e1), -EBADF);
        ASSERT_INTEQ(ossb_layer_writer_add_data(w, &f, "ab", 2, &e2), -EINVAL);
        struct ossb_layer_entry dir = { .path = "d", .type = OSSB_ENTRY_DIR };
        ASSERT_INTEQ(ossb_layer_writer_add_data(w, &dir, "", 0, &e3), -EINVAL);
        struct ossb_layer_entry badp = { .path = "../f", .type = OSSB_ENTRY_FILE, .size = 3 };
        ASSERT_INTEQ(ossb_layer_writer_add_data(w, &badp, "abc", 3, &e4), -EINVAL);
        /* still usable */
        ASSERT(ossb_layer_writer_add_data(w, &f, "abc", 3, NULL) == 0);
        ASSERT(ossb_layer_writer_finish(w, d, &size, did, NULL) == 0);
        _cleanup_error_ struct ossb_error *e5 = NULL, *e6 = NULL;
        ASSERT_INTEQ(ossb_layer_writer_finish(w, d, &size, did, &e5), -EINVAL);
        ASSERT_INTEQ(ossb_layer_writer_add_data(w, &f, "abc", 3, &e6), -EINVAL);
        ossb_layer_writer_free(w);
        ossb_layer_writer_free(NULL);
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_abort(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_ZSTD, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .size = 3 };
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(ossb_layer_writer_add_data(w, &f, "abc", 3, NULL) == 0);
        ASSERT_INTEQ(ingest_count(), 1);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_empty_layer(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        char d[OSSB_DIGEST_STR_LEN + 1], did[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(ossb_layer_writer_finish(w, d, &size, did, NULL) == 0);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(size, 1024); /* two zero records, no block padding */
        ASSERT_STREQ(d, did);

        /* a plain entry is a bare ustar header: no PAX record */
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .mode = 0644, .size = 5 };
        w = NULL;
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(ossb_layer_writer_add_data(w, &f, "hello", 5, NULL) == 0);
        ASSERT(ossb_layer_writer_finish(w, d, &size, did, NULL) == 0);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(size, 2048);
}

static void store_full(enum ossb_compression c, bool uring)
{
        struct ossb_layer_opts opts = { .compression = c, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        struct rlimit old, lim;
        int fd = make_file("full", 2 * 1024 * 1024);
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .size = 2 * 1024 * 1024 };
        ASSERT(fd >= 0);
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = 64 * 1024;
        signal(SIGXFSZ, SIG_IGN);
        ossb_layer_disable_io_uring(!uring);
        ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        int r = ossb_layer_writer_add(w, &f, fd, &e);
        setrlimit(RLIMIT_FSIZE, &old);
        ossb_layer_disable_io_uring(false);
        close(fd);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(r, -EFBIG);
        ASSERT(e && strstr(e->msg, "cannot write"));
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_store_full(void)
{
        store_full(OSSB_COMPRESSION_NONE, true);
        store_full(OSSB_COMPRESSION_NONE, false);
        store_full(OSSB_COMPRESSION_GZIP, true);
        store_full(OSSB_COMPRESSION_ZSTD, true);
}

static void test_store_full_at_finish(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        struct rlimit old, lim;
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .size = 5 };
        char d[OSSB_DIGEST_STR_LEN + 1];
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(ossb_layer_writer_add_data(w, &f, "hello", 5, NULL) == 0);
        ASSERT(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = 100;
        signal(SIGXFSZ, SIG_IGN);
        ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        int r = ossb_layer_writer_finish(w, d, NULL, NULL, &e);
        setrlimit(RLIMIT_FSIZE, &old);
        ossb_layer_writer_free(w);
        ASSERT_INTEQ(r, -EFBIG);
        ASSERT(strstr(e->msg, "cannot write layer"));
        ASSERT_INTEQ(ingest_count(), 0);
}

static void test_uring_used(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        int fd = make_file("small", 10);
        struct ossb_layer_entry f = { .path = "f", .type = OSSB_ENTRY_FILE, .size = 10 };
        ASSERT(fd >= 0);
        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        ASSERT(!ossb_layer_writer_used_io_uring(w));
        ASSERT(ossb_layer_writer_add(w, &f, fd, NULL) == 0);
        printf("# io_uring %s\n", ossb_layer_writer_used_io_uring(w) ? "used" : "unavailable: pread fallback used");
        close(fd);
        ossb_layer_writer_free(w);
}

/* ---- compressor / decompressor ---- */

static int fd_of(const char *name, const void *data, size_t len)
{
        _cleanup_free_ char *p = ossb_path_join(tmpdir, name);
        if (ossb_write_file_atomic(p, data, len, 0644, NULL) < 0)
                return -1;
        return open(p, O_RDONLY | O_CLOEXEC);
}

static int compress_buf(enum ossb_compression c, const void *data, size_t len, struct ossb_strbuf *out)
{
        struct ossb_compressor *z = NULL;
        int r = ossb_compressor_new(c, -1, sb_sink, out, &z, NULL);
        if (r >= 0)
                r = ossb_compressor_write(z, data, len, NULL);
        if (r >= 0)
                r = ossb_compressor_finish(z, NULL);
        ossb_compressor_free(z);
        return r;
}

static int decompress_named(const char *name, const void *data, size_t len, struct ossb_strbuf *out,
                            struct ossb_error **err)
{
        int fd = fd_of(name, data, len);
        if (fd < 0)
                return -EIO;
        int r = ossb_decompress_fd(fd, sb_sink, out, err);
        close(fd);
        return r;
}

static void test_decompress(void)
{
        _cleanup_strbuf_ struct ossb_strbuf g1 = OSSB_STRBUF_INIT, g2 = OSSB_STRBUF_INIT, z = OSSB_STRBUF_INIT;
        _cleanup_strbuf_ struct ossb_strbuf out = OSSB_STRBUF_INIT, both = OSSB_STRBUF_INIT;
        ASSERT(compress_buf(OSSB_COMPRESSION_GZIP, "hello ", 6, &g1) == 0);
        ASSERT(compress_buf(OSSB_COMPRESSION_GZIP, "world", 5, &g2) == 0);
        ASSERT(ossb_compression_detect(g1.buf, g1.len) == OSSB_COMPRESSION_GZIP);
        /* two gzip members */
        ASSERT(ossb_strbuf_append_n(&both, g1.buf, g1.len) == 0);
        ASSERT(ossb_strbuf_append_n(&both, g2.buf, g2.len) == 0);
        ASSERT(decompress_named("two.gz", both.buf, both.len, &out, NULL) == 0);
        ASSERT_INTEQ(out.len, 11);
        ASSERT(memcmp(out.buf, "hello world", 11) == 0);
        /* zstd */
        ossb_strbuf_reset(&out);
        ASSERT(compress_buf(OSSB_COMPRESSION_ZSTD, "zzz", 3, &z) == 0);
        ASSERT(ossb_compression_detect(z.buf, z.len) == OSSB_COMPRESSION_ZSTD);
        ASSERT(decompress_named("a.zst", z.buf, z.len, &out, NULL) == 0);
        ASSERT(out.len == 3 && memcmp(out.buf, "zzz", 3) == 0);
        /* plain, and empty */
        ossb_strbuf_reset(&out);
        ASSERT(decompress_named("plain", "plain", 5, &out, NULL) == 0);
        ASSERT(out.len == 5 && memcmp(out.buf, "plain", 5) == 0);
        ossb_strbuf_reset(&out);
        ASSERT(decompress_named("empty", "", 0, &out, NULL) == 0);
        ASSERT_INTEQ(out.len, 0);

        /* truncated and corrupt input */
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
        ASSERT_INTEQ(decompress_named("t.gz", g1.buf, g1.len - 4, &out, &e1), -EBADMSG);
        ASSERT(strstr(e1->msg, "truncated gzip"));
        ASSERT_INTEQ(decompress_named("t.zst", z.buf, z.len - 2, &out, &e2), -EBADMSG);
        ASSERT(strstr(e2->msg, "truncated zstd"));
        char bad[32];
        memcpy(bad, g1.buf, 10);
        memset(bad + 10, 0xff, sizeof(bad) - 10);
        ASSERT_INTEQ(decompress_named("c.gz", bad, sizeof(bad), &out, &e3), -EBADMSG);
        ASSERT(strstr(e3->msg, "corrupt gzip"));
        memcpy(bad, z.buf, 4);
        ASSERT_INTEQ(decompress_named("c.zst", bad, sizeof(bad), &out, &e4), -EBADMSG);
        ASSERT(strstr(e4->msg, "corrupt zstd"));

        /* use after finish */
        struct ossb_compressor *c = NULL;
        _cleanup_error_ struct ossb_error *e5 = NULL, *e6 = NULL;
        ASSERT(ossb_compressor_new(OSSB_COMPRESSION_NONE, -1, sb_sink, &out, &c, NULL) == 0);
        ASSERT(ossb_compressor_write(c, "", 0, NULL) == 0);
        ASSERT(ossb_compressor_finish(c, NULL) == 0);
        ASSERT_INTEQ(ossb_compressor_finish(c, &e5), -EINVAL);
        ASSERT_INTEQ(ossb_compressor_write(c, "x", 1, &e6), -EINVAL);
        ossb_compressor_free(c);
        ossb_compressor_free(NULL);
}

static int fail_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_error_set(err, -ENOSPC, "sink full");
}

static void test_sink_failure(void)
{
        _cleanup_strbuf_ struct ossb_strbuf g = OSSB_STRBUF_INIT, z = OSSB_STRBUF_INIT;
        static const enum ossb_compression kinds[] = { OSSB_COMPRESSION_GZIP, OSSB_COMPRESSION_ZSTD,
                                                       OSSB_COMPRESSION_NONE };
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                struct ossb_compressor *c = NULL;
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT(ossb_compressor_new(kinds[i], 1, fail_sink, NULL, &c, NULL) == 0);
                int r = ossb_compressor_write(c, "data", 4, &e);
                if (r == 0)
                        r = ossb_compressor_finish(c, &e);
                ossb_compressor_free(c);
                ASSERT_INTEQ(r, -ENOSPC);
        }
        ASSERT(compress_buf(OSSB_COMPRESSION_GZIP, "abc", 3, &g) == 0);
        ASSERT(compress_buf(OSSB_COMPRESSION_ZSTD, "abc", 3, &z) == 0);
        const struct ossb_strbuf *in[] = { &g, &z };
        for (size_t i = 0; i < 2; i++) {
                int fd = fd_of("sinkfail", in[i]->buf, in[i]->len);
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT(fd >= 0);
                ASSERT_INTEQ(ossb_decompress_fd(fd, fail_sink, NULL, &e), -ENOSPC);
                close(fd);
        }
        _cleanup_error_ struct ossb_error *e = NULL;
        int fd = fd_of("sinkfail", "plain", 5);
        ASSERT_INTEQ(ossb_decompress_fd(fd, fail_sink, NULL, &e), -ENOSPC);
        close(fd);
        _cleanup_error_ struct ossb_error *e2 = NULL;
        ASSERT_INTEQ(ossb_decompress_fd(-1, fail_sink, NULL, &e2), -EBADF);
}

int main(void)
{
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        _cleanup_free_ char *root = ossb_path_join(tmpdir, "store");
        if (ossb_store_open(root, &store, NULL) < 0)
                return 1;
        RUN_TEST(test_compression_names);
        RUN_TEST(test_layer_gzip);
        RUN_TEST(test_layer_zstd);
        RUN_TEST(test_layer_none);
        RUN_TEST(test_layer_clamped);
        RUN_TEST(test_gzip_header);
        RUN_TEST(test_levels);
        RUN_TEST(test_short_file_uring);
        RUN_TEST(test_short_file_pread);
        RUN_TEST(test_read_error_uring);
        RUN_TEST(test_read_error_pread);
        RUN_TEST(test_invalid_entries);
        RUN_TEST(test_abort);
        RUN_TEST(test_empty_layer);
        RUN_TEST(test_store_full);
        RUN_TEST(test_store_full_at_finish);
        RUN_TEST(test_uring_used);
        RUN_TEST(test_decompress);
        RUN_TEST(test_sink_failure);
        ossb_store_free(store);
        ossb_rm_rf(tmpdir);
        TAP_END();
}
