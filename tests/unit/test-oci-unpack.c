/* tests/unit/test-oci-unpack.c - oci/unpack.c: layers from the layer writer (gzip, zstd, plain)
 * unpacked and compared entry by entry (types, modes incl. setuid, owners, times, xattrs,
 * devices, hard links), DiffIDs (the writer's, a padded libarchive tar's, a wrong one),
 * whiteouts and opaque directories (marker before and after the layer's own entries),
 * replacements, hostile entries ("..", absolute names, symlinks to "/", hard links leading
 * out, deep and over-long paths; with openat2 and with its fallback), corrupt and truncated
 * streams, and an unprivileged unpack (owners, devices and xattrs skipped and counted). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/oci.h"
#include "oci/unpack.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-unpack-XXXXXX";
static struct ossb_store *store;
static bool user_xattrs; /* the file system under tmpdir takes user.* xattrs */
static bool is_root;     /* owners, devices and security.capability can be checked */

static char *sub(const char *name)
{
        return ossb_path_join(tmpdir, name);
}

static char *at(const char *dir, const char *name)
{
        return ossb_path_join(dir, name);
}

/* ---- building tars with libarchive (for entries the layer writer refuses) ---- */

struct tb {
        struct archive *a;
        struct archive_entry *e;
        struct ossb_strbuf out;
};

static la_ssize_t tb_write(struct archive *a, void *userdata, const void *buf, size_t len)
{
        struct tb *t = userdata;
        return ossb_strbuf_append_n(&t->out, buf, len) < 0 ? -1 : (la_ssize_t) len;
}

static struct tb *tb_new(void)
{
        struct tb *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->a = archive_write_new();
        t->e = archive_entry_new();
        archive_write_set_format_pax_restricted(t->a);
        archive_write_open(t->a, t, NULL, tb_write, NULL);
        return t;
}

static void tb_add(struct tb *t, const char *path, unsigned type, mode_t perm, const char *data, const char *link)
{
        archive_entry_clear(t->e);
        archive_entry_copy_pathname(t->e, path);
        archive_entry_set_filetype(t->e, type);
        archive_entry_set_perm(t->e, perm);
        archive_entry_set_mtime(t->e, 1600000000, 0);
        archive_entry_set_size(t->e, type == AE_IFREG && data ? (la_int64_t) strlen(data) : 0);
        if (type == AE_IFLNK)
                archive_entry_copy_symlink(t->e, link);
        else if (link)
                archive_entry_copy_hardlink(t->e, link);
        archive_write_header(t->a, t->e);
        if (type == AE_IFREG && data && !link)
                archive_write_data(t->a, data, strlen(data));
}

static void tb_file(struct tb *t, const char *path, const char *data)
{
        tb_add(t, path, AE_IFREG, 0644, data, NULL);
}

static void tb_dir(struct tb *t, const char *path, mode_t perm)
{
        tb_add(t, path, AE_IFDIR, perm, NULL, NULL);
}

/* Finish the tar (libarchive pads it to 10 KiB blocks) and write it, compressed as asked, to
 * a file; returns an fd open for reading, or -1.  *ret_tar (may be NULL) gets the tar bytes. */
static int tb_blob(struct tb *t, enum ossb_compression c, const char *name, struct ossb_strbuf *ret_tar);

static int file_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_write_all(*(int *) userdata, data, len);
}

static int write_blob(const void *data, size_t len, enum ossb_compression c, const char *name)
{
        _cleanup_free_ char *p = sub(name);
        struct ossb_compressor *comp = NULL;
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -1;
        if (ossb_compressor_new_threads(c, -1, 1, file_sink, &fd, &comp, NULL) < 0 ||
            ossb_compressor_write(comp, data, len, NULL) < 0 || ossb_compressor_finish(comp, NULL) < 0) {
                ossb_compressor_free(comp);
                close(fd);
                return -1;
        }
        ossb_compressor_free(comp);
        close(fd);
        return open(p, O_RDONLY | O_CLOEXEC);
}

static int tb_blob(struct tb *t, enum ossb_compression c, const char *name, struct ossb_strbuf *ret_tar)
{
        archive_write_close(t->a);
        archive_write_free(t->a);
        archive_entry_free(t->e);
        int fd = write_blob(t->out.buf, t->out.len, c, name);
        if (ret_tar)
                *ret_tar = t->out;
        else
                ossb_strbuf_free(&t->out);
        free(t);
        return fd;
}

static int unpack_fd(int fd, const char *dest, const char *expected, char *diff_id, struct ossb_unpack_stats *st,
                     struct ossb_error **err)
{
        int r = ossb_layer_unpack(fd, "test-layer", dest, expected, diff_id, st, err);
        close(fd);
        return r;
}

static int unpack_tb(struct tb *t, const char *dest, struct ossb_error **err)
{
        int fd = tb_blob(t, OSSB_COMPRESSION_NONE, "blob", NULL);
        return fd < 0 ? -EIO : unpack_fd(fd, dest, NULL, NULL, NULL, err);
}

static bool file_is(const char *dir, const char *name, const char *content)
{
        _cleanup_free_ char *p = at(dir, name);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (ossb_read_file(p, 1 << 20, &data, &len, NULL) < 0)
                return false;
        return len == strlen(content) && memcmp(data, content, len) == 0;
}

static bool exists(const char *dir, const char *name)
{
        _cleanup_free_ char *p = at(dir, name);
        struct stat st;
        return lstat(p, &st) == 0;
}

static int lstat_at(const char *dir, const char *name, struct stat *st)
{
        _cleanup_free_ char *p = at(dir, name);
        return lstat(p, st);
}

/* ---- the layer writer's layers ---- */

static const struct ossb_xattr file_xattrs[] = {
        { "user.comment", "hello", 5 },
        { "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20 },
        { "trusted.overlay.opaque", "y", 1 }, /* never applied from a layer */
        { "system.posix_acl_access", "x", 1 }, /* not ours to set */
};

static const struct ossb_xattr link_xattrs[] = {
        { "trusted.ossb-test", "on the link", 11 },
};

static int write_standard_layer(enum ossb_compression c, char digest[OSSB_DIGEST_STR_LEN + 1],
                                char diff_id[OSSB_DIGEST_STR_LEN + 1])
{
        struct ossb_layer_opts opts = { .compression = c, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        static const char hello[] = "hello world\n";
        const struct ossb_layer_entry entries[] = {
                { .path = "etc", .type = OSSB_ENTRY_DIR, .mode = 0755, .mtime_sec = 1000 },
                { .path = "etc/ro", .type = OSSB_ENTRY_DIR, .mode = 0555, .uid = 7, .gid = 8, .mtime_sec = 2000 },
                { .path = "etc/ro/file", .type = OSSB_ENTRY_FILE, .mode = 04755, .uid = 1000, .gid = 100,
                  .size = sizeof(hello) - 1, .mtime_sec = 3000, .xattrs = file_xattrs,
                  .n_xattrs = ELEMENTSOF(file_xattrs) },
                { .path = "etc/ro/hard", .type = OSSB_ENTRY_HARDLINK, .mode = 04755, .linkname = "etc/ro/file" },
                { .path = "etc/link", .type = OSSB_ENTRY_SYMLINK, .mode = 0777, .uid = 5, .gid = 6,
                  .linkname = "ro/file", .mtime_sec = 4000, .xattrs = link_xattrs, .n_xattrs = 1 },
                { .path = "dev/null", .type = OSSB_ENTRY_CHAR, .mode = 0666, .rdev = makedev(1, 3), .mtime_sec = 5 },
                { .path = "dev/loop", .type = OSSB_ENTRY_BLOCK, .mode = 0660, .gid = 6, .rdev = makedev(7, 0) },
                { .path = "fifo", .type = OSSB_ENTRY_FIFO, .mode = 0620, .uid = 3, .mtime_sec = 6 },
                { .path = "tmp/", .type = OSSB_ENTRY_DIR, .mode = 01777, .mtime_sec = 7 },
                { .path = "g", .type = OSSB_ENTRY_FILE, .mode = 02711, .gid = 50, .size = 0, .mtime_sec = 8 },
        };
        int r = ossb_layer_writer_new(store, &opts, &w, NULL);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(entries); i++) {
                if (entries[i].type == OSSB_ENTRY_FILE)
                        r = ossb_layer_writer_add_data(w, &entries[i], hello, (size_t) entries[i].size, NULL);
                else
                        r = ossb_layer_writer_add(w, &entries[i], -1, NULL);
        }
        if (r >= 0)
                r = ossb_layer_writer_finish(w, digest, NULL, diff_id, NULL);
        ossb_layer_writer_free(w);
        return r;
}

static void check_standard(const char *d)
{
        struct stat st, st2;
        char buf[64];

        ASSERT(file_is(d, "etc/ro/file", "hello world\n"));
        ASSERT(lstat_at(d, "etc/ro/file", &st) == 0);
        ASSERT_INTEQ(st.st_mode & 07777, 04755);
        ASSERT(is_root || st.st_uid == getuid());
        if (!is_root)
                return; /* the rest needs owners and devices */
        ASSERT_INTEQ(st.st_uid, 1000);
        ASSERT_INTEQ(st.st_gid, 100);
        ASSERT_INTEQ(st.st_mtime, 3000);
        ASSERT_INTEQ(st.st_nlink, 2);
        ASSERT(lstat_at(d, "etc/ro/hard", &st2) == 0);
        ASSERT_INTEQ(st2.st_ino, st.st_ino);
        ASSERT(lstat_at(d, "etc/ro", &st) == 0);
        ASSERT(S_ISDIR(st.st_mode));
        ASSERT_INTEQ(st.st_mode & 07777, 0555);
        ASSERT_INTEQ(st.st_uid, 7);
        ASSERT_INTEQ(st.st_mtime, 2000); /* restored after its children were written */
        ASSERT(lstat_at(d, "etc", &st) == 0);
        ASSERT_INTEQ(st.st_mtime, 1000);
        ASSERT(lstat_at(d, "etc/link", &st) == 0);
        ASSERT(S_ISLNK(st.st_mode));
        ASSERT_INTEQ(st.st_uid, 5);
        ASSERT_INTEQ(st.st_mtime, 4000);
        _cleanup_free_ char *lp = at(d, "etc/link");
        ssize_t n = readlink(lp, buf, sizeof(buf) - 1);
        ASSERT(n == 7 && memcmp(buf, "ro/file", 7) == 0);
        ASSERT(lstat_at(d, "dev/null", &st) == 0);
        ASSERT(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
        ASSERT_INTEQ(st.st_mode & 07777, 0666);
        ASSERT(lstat_at(d, "dev/loop", &st) == 0);
        ASSERT(S_ISBLK(st.st_mode) && st.st_rdev == makedev(7, 0) && st.st_gid == 6);
        ASSERT(lstat_at(d, "fifo", &st) == 0);
        ASSERT(S_ISFIFO(st.st_mode));
        ASSERT_INTEQ(st.st_mode & 07777, 0620);
        ASSERT_INTEQ(st.st_uid, 3);
        ASSERT(lstat_at(d, "tmp", &st) == 0);
        ASSERT_INTEQ(st.st_mode & 07777, 01777);
        ASSERT(lstat_at(d, "g", &st) == 0);
        ASSERT_INTEQ(st.st_mode & 07777, 02711);
        ASSERT_INTEQ(st.st_gid, 50);

        ASSERT(lgetxattr(lp, "trusted.ossb-test", buf, sizeof(buf)) == 11);
        ASSERT(memcmp(buf, "on the link", 11) == 0);
        _cleanup_free_ char *fp = at(d, "etc/ro/file");
        ASSERT(lgetxattr(fp, "trusted.overlay.opaque", buf, sizeof(buf)) < 0);
        ASSERT(lgetxattr(fp, "security.capability", buf, sizeof(buf)) == 20);
        if (user_xattrs) {
                ASSERT(lgetxattr(fp, "user.comment", buf, sizeof(buf)) == 5);
                ASSERT(memcmp(buf, "hello", 5) == 0);
        }
}

static void unpack_standard(enum ossb_compression c, const char *destname)
{
        char digest[OSSB_DIGEST_STR_LEN + 1], diff_id[OSSB_DIGEST_STR_LEN + 1], got[OSSB_DIGEST_STR_LEN + 1];
        struct ossb_unpack_stats st = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_free_ char *d = sub(destname);
        int fd = -1;

        ASSERT(write_standard_layer(c, digest, diff_id) == 0);
        ASSERT(ossb_store_open_blob(store, digest, &fd, NULL) == 0);
        int r = unpack_fd(fd, d, diff_id, got, &st, &e);
        if (r < 0)
                fprintf(stderr, "# %s\n", e->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_STREQ(got, diff_id);
        ASSERT_INTEQ(st.entries, 10);
        ASSERT(st.bytes > 0 && st.bytes % 512 == 0);
        ASSERT(!is_root || st.chown_skipped == 0);
        ASSERT(!is_root || st.devices_skipped == 0);
        ASSERT(st.xattrs_skipped >= 2); /* trusted.overlay.*, system.* */
        check_standard(d);
        if (tap_current_failed)
                return;

        /* the same layer again on top: every entry replaces itself */
        ASSERT(ossb_store_open_blob(store, digest, &fd, NULL) == 0);
        ASSERT_INTEQ(unpack_fd(fd, d, diff_id, NULL, NULL, NULL), 0);
        check_standard(d);
}

static void test_gzip(void)
{
        unpack_standard(OSSB_COMPRESSION_GZIP, "std-gzip");
}

static void test_zstd(void)
{
        unpack_standard(OSSB_COMPRESSION_ZSTD, "std-zstd");
}

static void test_plain(void)
{
        unpack_standard(OSSB_COMPRESSION_NONE, "std-plain");
}

/* ---- DiffIDs ---- */

static void test_diff_id(void)
{
        _cleanup_strbuf_ struct ossb_strbuf tar = OSSB_STRBUF_INIT;
        _cleanup_free_ char *d = sub("diff");
        char want[OSSB_DIGEST_STR_LEN + 1], got[OSSB_DIGEST_STR_LEN + 1];
        struct tb *t = tb_new();
        ASSERT(t);
        tb_file(t, "a", "x");
        int fd = tb_blob(t, OSSB_COMPRESSION_GZIP, "diff.tgz", &tar);
        ASSERT(fd >= 0);
        ASSERT_INTEQ(tar.len, 10240); /* the whole block, most of it after the end marker */
        ASSERT(ossb_sha256_digest(tar.buf, tar.len, want) == 0);
        ASSERT_INTEQ(unpack_fd(fd, d, NULL, got, NULL, NULL), 0);
        ASSERT_STREQ(got, want);

        /* a wrong expected DiffID names both */
        _cleanup_error_ struct ossb_error *e = NULL;
        static const char wrong[] = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        fd = write_blob(tar.buf, tar.len, OSSB_COMPRESSION_ZSTD, "diff.zst");
        ASSERT(fd >= 0);
        ASSERT_INTEQ(unpack_fd(fd, d, wrong, got, NULL, &e), -EBADMSG);
        ASSERT(strstr(e->msg, wrong) && strstr(e->msg, want) && strstr(e->msg, "test-layer"));

        _cleanup_error_ struct ossb_error *e2 = NULL;
        fd = write_blob(tar.buf, tar.len, OSSB_COMPRESSION_NONE, "diff.tar");
        ASSERT_INTEQ(unpack_fd(fd, d, "sha256:xyz", got, NULL, &e2), -EINVAL);
        fd = write_blob(tar.buf, tar.len, OSSB_COMPRESSION_NONE, "diff.tar");
        ASSERT_INTEQ(unpack_fd(fd, d, want, NULL, NULL, NULL), 0);
}

static void test_empty_and_multi_member(void)
{
        _cleanup_free_ char *d = sub("empty");
        _cleanup_free_ char *p = sub("empty.blob");
        char got[OSSB_DIGEST_STR_LEN + 1], want[OSSB_DIGEST_STR_LEN + 1];
        struct ossb_unpack_stats st;

        /* an empty blob is an empty layer */
        ASSERT(ossb_write_file_atomic(p, "", 0, 0644, NULL) == 0);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        ASSERT_INTEQ(unpack_fd(fd, d, NULL, got, &st, NULL), 0);
        ASSERT(ossb_sha256_digest("", 0, want) == 0);
        ASSERT_STREQ(got, want);
        ASSERT_INTEQ(st.entries, 0);

        /* two gzip members: one stream */
        _cleanup_strbuf_ struct ossb_strbuf tar = OSSB_STRBUF_INIT;
        struct tb *t = tb_new();
        tb_file(t, "m1", "first");
        tb_file(t, "m2", "second");
        fd = tb_blob(t, OSSB_COMPRESSION_NONE, "mm.tar", &tar);
        close(fd);
        _cleanup_free_ char *ab = sub("both.gz");
        int f1 = write_blob(tar.buf, 1000, OSSB_COMPRESSION_GZIP, "part1.gz");
        int f2 = write_blob(tar.buf + 1000, tar.len - 1000, OSSB_COMPRESSION_GZIP, "part2.gz");
        ASSERT(f1 >= 0 && f2 >= 0);
        int out = open(ab, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT(out >= 0);
        ASSERT(ossb_copy_fd(f1, out) == 0 && ossb_copy_fd(f2, out) == 0);
        close(f1);
        close(f2);
        ASSERT(lseek(out, 0, SEEK_SET) == 0);
        ASSERT_INTEQ(unpack_fd(out, d, NULL, got, NULL, NULL), 0);
        ASSERT(ossb_sha256_digest(tar.buf, tar.len, want) == 0);
        ASSERT_STREQ(got, want);
        ASSERT(file_is(d, "m1", "first") && file_is(d, "m2", "second"));
}

/* ---- whiteouts ---- */

static void test_whiteouts(void)
{
        _cleanup_free_ char *d = sub("wh");
        _cleanup_error_ struct ossb_error *e = NULL;
        struct tb *t = tb_new();
        tb_dir(t, "./", 0700); /* the root itself: left as it is */
        tb_dir(t, "a", 0755);
        tb_file(t, "a/f", "f");
        tb_file(t, "a/g", "g");
        tb_dir(t, "b", 0755);
        tb_file(t, "b/x", "x");
        tb_dir(t, "c", 0755);
        tb_file(t, "c/y", "y");
        tb_dir(t, "c/sub", 0755);
        tb_file(t, "c/sub/z", "z");
        tb_dir(t, "c/sub/deep", 0755);
        tb_file(t, "c/sub/deep/lower", "l");
        tb_dir(t, "o", 0755);
        tb_file(t, "o/old", "old");
        tb_dir(t, "k", 0755);
        tb_file(t, "k/lower", "l");
        tb_dir(t, "r", 0755);
        tb_file(t, "r/lower", "l");
        tb_file(t, "top", "t");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);

        t = tb_new();
        tb_file(t, "a/.wh.f", NULL);          /* a file */
        tb_file(t, ".wh.b", NULL);            /* a directory tree */
        tb_file(t, "c/before", "1");          /* this layer, before the marker */
        tb_dir(t, "c/sub", 0700);             /* this layer's dir over a lower one */
        tb_file(t, "c/sub/deep/mine", "m");   /* beneath a lower dir, implicitly */
        tb_file(t, "c/.wh..wh..opq", NULL);   /* c is opaque */
        tb_file(t, "c/after", "2");           /* after the marker */
        tb_file(t, "o/.wh..wh..opq", NULL);   /* marker first */
        tb_file(t, "o/new", "n");
        tb_file(t, "k/mine", "m");
        tb_file(t, ".wh.k", NULL);            /* k holds this layer's k/mine: only lower content goes */
        tb_dir(t, "r", 0700);                 /* a directory of this layer over a lower one ... */
        tb_file(t, "r/mine", "m");
        tb_file(t, ".wh.r", NULL);            /* ... then whited out: the lower content goes */
        tb_file(t, "same", "s");
        tb_file(t, ".wh.same", NULL);         /* hides lower layers only: stays */
        tb_file(t, "nodir/.wh.x", NULL);      /* nothing there */
        tb_file(t, ".wh..wh.plnk", NULL);     /* aufs metadata: ignored */
        tb_file(t, "new/.wh..wh..opq", NULL); /* an opaque dir that did not exist */
        ASSERT_INTEQ(unpack_tb(t, d, &e), 0);

        ASSERT(!exists(d, "a/f") && file_is(d, "a/g", "g"));
        ASSERT(!exists(d, "b"));
        ASSERT(!exists(d, "c/y"));
        ASSERT(file_is(d, "c/before", "1") && file_is(d, "c/after", "2"));
        ASSERT(exists(d, "c/sub") && !exists(d, "c/sub/z"));
        ASSERT(!exists(d, "c/sub/deep/lower") && file_is(d, "c/sub/deep/mine", "m"));
        ASSERT(!exists(d, "o/old") && file_is(d, "o/new", "n"));
        ASSERT(!exists(d, "k/lower") && file_is(d, "k/mine", "m"));
        ASSERT(!exists(d, "r/lower") && file_is(d, "r/mine", "m"));
        ASSERT(file_is(d, "same", "s"));
        ASSERT(file_is(d, "top", "t"));
        ASSERT(!exists(d, "nodir"));
        ASSERT(exists(d, "new"));
        ASSERT(!exists(d, ".wh..wh.plnk") && !exists(d, "a/.wh.f") && !exists(d, "c/.wh..wh..opq"));
        struct stat st;
        ASSERT(stat(d, &st) == 0 && (st.st_mode & 07777) == 0755);

        /* ".wh.." is no whiteout */
        _cleanup_error_ struct ossb_error *e2 = NULL;
        t = tb_new();
        tb_file(t, "a/.wh..", NULL);
        ASSERT_INTEQ(unpack_tb(t, d, &e2), -EPERM);
        ASSERT(file_is(d, "a/g", "g"));
}

static void test_replace(void)
{
        _cleanup_free_ char *d = sub("replace");
        struct stat st;
        struct tb *t = tb_new();
        tb_dir(t, "p", 0755);
        tb_file(t, "p/child", "c");
        tb_file(t, "q", "q");
        tb_dir(t, "r", 0755);
        tb_file(t, "r/keep", "k");
        tb_add(t, "s", AE_IFLNK, 0777, NULL, "r");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);

        t = tb_new();
        tb_file(t, "p", "now a file");
        tb_dir(t, "q", 0711);
        tb_dir(t, "r", 0700);
        tb_dir(t, "s", 0755); /* a dir over a symlink to a dir: the symlink goes */
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(file_is(d, "p", "now a file"));
        ASSERT(lstat_at(d, "q", &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0711);
        ASSERT(lstat_at(d, "r", &st) == 0 && (st.st_mode & 07777) == 0700);
        ASSERT(file_is(d, "r/keep", "k"));
        ASSERT(lstat_at(d, "s", &st) == 0 && S_ISDIR(st.st_mode));
        ASSERT(file_is(d, "r/keep", "k"));
}

/* ---- hostile entries ---- */

static void hostile(bool fallback)
{
        _cleanup_free_ char *box = sub(fallback ? "box-fallback" : "box");
        _cleanup_free_ char *d = at(box, "root");
        struct stat st;

        ossb_fs_disable_openat2(fallback);
        static const char *const outside[] = { "../x", "a/../../x", "..", "./../x" };
        for (size_t i = 0; i < ELEMENTSOF(outside); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                struct tb *t = tb_new();
                tb_file(t, outside[i], "evil");
                ASSERT_INTEQ(unpack_tb(t, d, &e), -EPERM);
                ASSERT(strstr(e->msg, outside[i]));
        }
        ASSERT(!exists(box, "x"));

        /* an absolute name lands inside */
        struct tb *t = tb_new();
        tb_file(t, "/abs", "inside");
        tb_file(t, "//./abs2", "inside");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(file_is(d, "abs", "inside") && file_is(d, "abs2", "inside"));

        /* symlinks to "/" and out of the tree resolve inside */
        t = tb_new();
        tb_add(t, "a", AE_IFLNK, 0777, NULL, "/");
        tb_add(t, "up", AE_IFLNK, 0777, NULL, "../../..");
        tb_file(t, "a/etc/passwd", "not the host's");
        tb_file(t, "up/escaped", "inside");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(file_is(d, "etc/passwd", "not the host's"));
        ASSERT(file_is(d, "escaped", "inside"));
        ASSERT(!exists(box, "escaped"));
        ASSERT(lstat_at(d, "a", &st) == 0 && S_ISLNK(st.st_mode));

        /* hard links: leading out refused, through symlinks resolved inside */
        _cleanup_error_ struct ossb_error *e = NULL;
        t = tb_new();
        tb_add(t, "h", AE_IFREG, 0644, NULL, "../../x");
        ASSERT_INTEQ(unpack_tb(t, d, &e), -EPERM);
        ASSERT(strstr(e->msg, "../../x"));
        t = tb_new();
        tb_add(t, "hp", AE_IFREG, 0644, NULL, "a/etc/passwd");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        struct stat s1, s2;
        ASSERT(lstat_at(d, "hp", &s1) == 0 && lstat_at(d, "etc/passwd", &s2) == 0 && s1.st_ino == s2.st_ino);
        _cleanup_error_ struct ossb_error *e2 = NULL;
        t = tb_new();
        tb_add(t, "etcl", AE_IFLNK, 0777, NULL, "/etc");
        tb_add(t, "hs", AE_IFREG, 0644, NULL, "etcl/shadow"); /* not the host's /etc/shadow */
        ASSERT_INTEQ(unpack_tb(t, d, &e2), -ENOENT);
        ASSERT(!exists(d, "hs"));
        _cleanup_error_ struct ossb_error *e3 = NULL;
        t = tb_new();
        tb_add(t, "hd", AE_IFREG, 0644, NULL, "etc");
        ASSERT_INTEQ(unpack_tb(t, d, &e3), -EPERM);
        _cleanup_error_ struct ossb_error *e4 = NULL;
        t = tb_new();
        tb_add(t, "hr", AE_IFREG, 0644, NULL, "./");
        ASSERT_INTEQ(unpack_tb(t, d, &e4), -EPERM);
        t = tb_new();
        tb_file(t, "self", "s");
        tb_add(t, "self", AE_IFREG, 0644, NULL, "self");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(file_is(d, "self", "s"));

        /* a whiteout through a symlink stays inside too */
        t = tb_new();
        tb_file(t, "a/.wh.abs", NULL);
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(!exists(d, "abs"));

        /* a dangling symlink where a parent should be */
        _cleanup_error_ struct ossb_error *e5 = NULL;
        t = tb_new();
        tb_add(t, "dangling", AE_IFLNK, 0777, NULL, "/nowhere/at/all");
        tb_file(t, "dangling/f", "x");
        ASSERT(unpack_tb(t, d, &e5) < 0);
        _cleanup_error_ struct ossb_error *e6 = NULL;
        t = tb_new();
        tb_file(t, "plain", "x");
        tb_file(t, "plain/f", "x");
        ASSERT_INTEQ(unpack_tb(t, d, &e6), -ENOTDIR);

        ASSERT(!exists(box, "x") && !exists(box, "escaped") && !exists(box, "etc"));
        ossb_fs_disable_openat2(false);
}

static void test_hostile(void)
{
        hostile(false);
}

static void test_hostile_fallback(void)
{
        hostile(true);
}

static void test_deep_paths(void)
{
        _cleanup_free_ char *d = sub("deep");
        struct ossb_strbuf p = OSSB_STRBUF_INIT;
        for (int i = 0; i < 300; i++)
                ASSERT(ossb_strbuf_append(&p, "dd/") >= 0);
        ASSERT(ossb_strbuf_append(&p, "leaf") >= 0);
        struct tb *t = tb_new();
        tb_file(t, p.buf, "deep");
        ASSERT_INTEQ(unpack_tb(t, d, NULL), 0);
        ASSERT(file_is(d, p.buf, "deep"));
        ossb_strbuf_free(&p);

        /* longer than PATH_MAX */
        _cleanup_error_ struct ossb_error *e = NULL;
        for (int i = 0; i < 1500; i++)
                ASSERT(ossb_strbuf_append(&p, "ab/") >= 0);
        ASSERT(ossb_strbuf_append(&p, "leaf") >= 0);
        t = tb_new();
        tb_file(t, p.buf, "deep");
        ASSERT_INTEQ(unpack_tb(t, d, &e), -ENAMETOOLONG);
        ossb_strbuf_free(&p);
}

/* A ustar header block (type, name, size) with its checksum. */
static void ustar_header(char block[512], char type, const char *name, size_t size)
{
        unsigned sum = 0;
        memset(block, 0, 512);
        snprintf(block, 100, "%s", name);
        snprintf(block + 100, 8, "%07o", 0644);
        snprintf(block + 108, 8, "%07o", 0);
        snprintf(block + 116, 8, "%07o", 0);
        snprintf(block + 124, 12, "%011zo", size);
        snprintf(block + 136, 12, "%011o", 0);
        memset(block + 148, ' ', 8);
        block[156] = type;
        memcpy(block + 257, "ustar", 6);
        memcpy(block + 263, "00", 2);
        for (int i = 0; i < 512; i++)
                sum += (unsigned char) block[i];
        snprintf(block + 148, 8, "%06o", sum);
}

/* As Go's archive/tar writes a name that is not valid UTF-8: a PAX path record holding the
 * raw bytes, without hdrcharset=BINARY. */
static int go_style_tar(const char *name)
{
        static const char record[] = "19 path=go-\xff\xfe-name\n";
        char tar[512 * 6] = { 0 };
        ustar_header(tar, 'x', "PaxHeaders/x", strlen(record));
        memcpy(tar + 512, record, strlen(record));
        ustar_header(tar + 1024, '0', "placeholder", 2);
        memcpy(tar + 1536, "ok", 2);
        return write_blob(tar, sizeof(tar), OSSB_COMPRESSION_NONE, name);
}

static void test_byte_names(void)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_ZSTD, .level = -1, .source_date_epoch = -1 };
        struct ossb_layer_writer *w = NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *d = sub("bytes");
        static const char *const names[] = { "caf\xc3\xa9", "raw-\xff\xfe", "\xe6\x97\xa5\xe6\x9c\xac/\x80" };
        int fd = -1;

        ASSERT(ossb_layer_writer_new(store, &opts, &w, NULL) == 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const struct ossb_layer_entry e = { .path = names[i], .type = OSSB_ENTRY_FILE, .mode = 0644, .size = 1 };
                ASSERT(ossb_layer_writer_add_data(w, &e, "x", 1, NULL) == 0);
        }
        ASSERT(ossb_layer_writer_finish(w, digest, NULL, NULL, NULL) == 0);
        ossb_layer_writer_free(w);
        ASSERT(ossb_store_open_blob(store, digest, &fd, NULL) == 0);
        ASSERT_INTEQ(unpack_fd(fd, d, NULL, NULL, NULL, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                ASSERT(file_is(d, names[i], "x"));
        fd = go_style_tar("go.tar");
        ASSERT(fd >= 0);
        ASSERT_INTEQ(unpack_fd(fd, d, NULL, NULL, NULL, NULL), 0);
        ASSERT(file_is(d, "go-\xff\xfe-name", "ok"));
}

/* ---- corrupt streams ---- */

static int truncated(const char *src_name, const char *name, size_t keep, ssize_t flip)
{
        _cleanup_free_ char *src = sub(src_name), *dst = sub(name);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (ossb_read_file(src, 1 << 24, &data, &len, NULL) < 0 || keep > len)
                return -1;
        if (flip >= 0)
                for (size_t i = (size_t) flip; i < (size_t) flip + 64 && i < len; i++)
                        data[i] = (char) ~data[i];
        if (ossb_write_file_atomic(dst, data, keep, 0644, NULL) < 0)
                return -1;
        return open(dst, O_RDONLY | O_CLOEXEC);
}

static void test_corrupt(void)
{
        _cleanup_free_ char *d = sub("corrupt");
        struct ossb_strbuf tar = OSSB_STRBUF_INIT;
        struct tb *t = tb_new();
        /* incompressible content so that the compressed blobs are long */
        char big[20000];
        unsigned x = 7;
        for (size_t i = 0; i < sizeof(big) - 1; i++) {
                x = x * 1103515245 + 12345;
                big[i] = (char) ('a' + (x >> 16) % 26);
        }
        big[sizeof(big) - 1] = '\0';
        tb_file(t, "big", big);
        close(tb_blob(t, OSSB_COMPRESSION_NONE, "c.tar", &tar));
        close(write_blob(tar.buf, tar.len, OSSB_COMPRESSION_GZIP, "c.gz"));
        close(write_blob(tar.buf, tar.len, OSSB_COMPRESSION_ZSTD, "c.zst"));
        struct stat st;
        _cleanup_free_ char *gz = sub("c.gz"), *zst = sub("c.zst");
        ASSERT(stat(gz, &st) == 0 && st.st_size > 10000);
        size_t gz_len = (size_t) st.st_size;
        ASSERT(stat(zst, &st) == 0);
        size_t zst_len = (size_t) st.st_size;

        struct {
                const char *src;
                size_t keep;
                ssize_t flip;
                const char *msg;
        } cases[] = {
                { "c.gz", 0, -1, NULL }, /* set below */
                { "c.gz", 0, 5000, "corrupt gzip" },
                { "c.zst", 0, -1, "truncated zstd" },
                { "c.zst", 0, 5000, "corrupt zstd" },
                { "c.tar", 3000, -1, "ends inside the data of `big`" },
                { "c.tar", 10240, 0, NULL },
                /* a complete gzip stream of a tar cut inside a file (the bench's umoci layers) */
                { "cut-tar.gz", 0, -1, "the layer is damaged: its tar stream ends inside the data of `big`" },
        };
        cases[0].keep = gz_len / 2;
        cases[1].keep = gz_len;
        cases[2].keep = zst_len / 2;
        cases[3].keep = zst_len;
        close(write_blob(tar.buf, 3000, OSSB_COMPRESSION_GZIP, "cut-tar.gz"));
        _cleanup_free_ char *cutgz = sub("cut-tar.gz");
        ASSERT(stat(cutgz, &st) == 0);
        cases[6].keep = (size_t) st.st_size;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                int fd = truncated(cases[i].src, "cut", cases[i].keep, cases[i].flip);
                ASSERT(fd >= 0);
                int r = unpack_fd(fd, d, NULL, NULL, NULL, &e);
                if (r != -EBADMSG)
                        fprintf(stderr, "# case %zu: %d %s\n", i, r, e ? e->msg : "");
                ASSERT_INTEQ(r, -EBADMSG);
                ASSERT(strstr(e->msg, "test-layer"));
                if (cases[i].msg)
                        ASSERT(strstr(e->msg, cases[i].msg));
        }

        /* garbage after a complete gzip member */
        _cleanup_error_ struct ossb_error *e = NULL;
        int fd = open(gz, O_WRONLY | O_APPEND | O_CLOEXEC);
        ASSERT(fd >= 0 && write(fd, "garbage!", 8) == 8);
        close(fd);
        fd = open(gz, O_RDONLY | O_CLOEXEC);
        ASSERT_INTEQ(unpack_fd(fd, d, NULL, NULL, NULL, &e), -EBADMSG);
        ASSERT(strstr(e->msg, "gzip"));

        /* an unreadable fd */
        _cleanup_error_ struct ossb_error *e2 = NULL;
        ASSERT(ossb_layer_unpack(-1, NULL, d, NULL, NULL, NULL, &e2) < 0);
        ossb_strbuf_free(&tar);
}

/* ---- without privileges ---- */

static int child_checks(int fd, const char *d)
{
        struct ossb_unpack_stats st = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_layer_unpack(fd, "nonroot", d, NULL, NULL, &st, &e);
        if (r < 0) {
                fprintf(stderr, "# child: %s\n", e->msg);
                return 10;
        }
        if (st.chown_skipped < 3 || st.devices_skipped != 2 || st.xattrs_skipped < 3)
                return 11;
        if (!file_is(d, "etc/ro/file", "hello world\n"))
                return 12;
        struct stat s1, s2;
        if (lstat_at(d, "etc/ro/hard", &s1) < 0 || lstat_at(d, "etc/ro/file", &s2) < 0 || s1.st_ino != s2.st_ino)
                return 13;
        if (lstat_at(d, "etc/ro", &s1) < 0 || (s1.st_mode & 07777) != 0555 || s1.st_uid != getuid())
                return 14;
        if (exists(d, "dev/null"))
                return 15;
        return 0;
}

static void test_unprivileged(void)
{
        char digest[OSSB_DIGEST_STR_LEN + 1], diff_id[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *d = sub("nonroot");
        int fd = -1, status = 0;

        if (!is_root) {
                printf("# not root: the unprivileged case is the normal one here\n");
                return;
        }
        ASSERT(write_standard_layer(OSSB_COMPRESSION_GZIP, digest, diff_id) == 0);
        ASSERT(ossb_store_open_blob(store, digest, &fd, NULL) == 0);
        ASSERT(mkdir(d, 0755) == 0 && chown(d, 65534, 65534) == 0);
        ASSERT(chmod(tmpdir, 0755) == 0);
        fflush(stdout);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(9);
                exit(child_checks(fd, d)); /* exit, not _exit: coverage data is written at exit */
        }
        close(fd);
        ASSERT(waitpid(pid, &status, 0) == pid);
        ASSERT(WIFEXITED(status));
        ASSERT_INTEQ(WEXITSTATUS(status), 0);
}

int main(void)
{
        if (!mkdtemp(tmpdir))
                return 99;
        _cleanup_free_ char *sp = sub("store");
        _cleanup_free_ char *probe = sub("probe");
        if (ossb_store_open(sp, &store, NULL) < 0 || ossb_write_file_atomic(probe, "", 0, 0644, NULL) < 0)
                return 99;
        user_xattrs = setxattr(probe, "user.probe", "1", 1, 0) == 0;
        is_root = geteuid() == 0;
        umask(022);

        RUN_TEST(test_gzip);
        RUN_TEST(test_zstd);
        RUN_TEST(test_plain);
        RUN_TEST(test_diff_id);
        RUN_TEST(test_empty_and_multi_member);
        RUN_TEST(test_whiteouts);
        RUN_TEST(test_replace);
        RUN_TEST(test_hostile);
        RUN_TEST(test_hostile_fallback);
        RUN_TEST(test_deep_paths);
        RUN_TEST(test_byte_names);
        RUN_TEST(test_corrupt);
        RUN_TEST(test_unprivileged);

        ossb_store_free(store);
        if (!tap_failed_total)
                ossb_rm_rf(tmpdir);
        else
                fprintf(stderr, "# left %s for inspection\n", tmpdir);
        TAP_END();
}
