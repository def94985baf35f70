/* tests/unit/test-engine-copy.c - engine/copy.c, rootfs.c, extract.c: COPY/ADD into a tree,
 * destination rules, ownership and modes, globs, .dockerignore, symlinks that try to escape,
 * archives, and the layer made from the recorded changes. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "engine/copy.h"
#include "engine/extract.h"
#include "engine/rootfs.h"
#include "tests/unit/tap.h"

static char base[] = "/tmp/ossb-test-copy-XXXXXX";

static void put(const char *rel, const char *content, mode_t mode)
{
        _cleanup_free_ char *p = ossb_path_join(base, rel);
        _cleanup_free_ char *dir = strdup(p);
        *strrchr(dir, '/') = '\0';
        if (ossb_mkdir_p(dir, 0755) < 0 || ossb_write_file_atomic(p, content, strlen(content), mode, NULL) < 0)
                abort();
}

static char *slurp(const char *rel)
{
        _cleanup_free_ char *p = ossb_path_join(base, rel);
        char *data = NULL;
        if (ossb_read_file(p, 1 << 20, &data, NULL, NULL) < 0)
                return NULL;
        return data;
}

static mode_t mode_of(const char *rel, uid_t *uid)
{
        _cleanup_free_ char *p = ossb_path_join(base, rel);
        struct stat st;
        if (lstat(p, &st) < 0)
                return 0;
        if (uid)
                *uid = st.st_uid;
        return st.st_mode;
}

struct fixture {
        struct ossb_tree ctx, dst;
        struct ossb_changes c;
};

static int setup(struct fixture *f, const char *name)
{
        _cleanup_free_ char *ctx = NULL, *dst = NULL;
        if (asprintf(&ctx, "%s/%s/ctx", base, name) < 0 || asprintf(&dst, "%s/%s/dst", base, name) < 0)
                return -1;
        if (ossb_mkdir_p(ctx, 0755) < 0 || ossb_mkdir_p(dst, 0755) < 0)
                return -1;
        memset(f, 0, sizeof(*f));
        if (ossb_tree_open(ctx, &f->ctx, NULL) < 0 || ossb_tree_open(dst, &f->dst, NULL) < 0)
                return -1;
        return 0;
}

static void teardown(struct fixture *f)
{
        ossb_tree_close(&f->ctx);
        ossb_tree_close(&f->dst);
        ossb_changes_clear(&f->c);
}

static int copy(struct fixture *f, const char *const *srcs, const char *dest, bool dest_dir,
                const struct ossb_dockerignore *ignore, struct ossb_error **err)
{
        struct ossb_copy_req req = {
                .src = &f->ctx,
                .ignore = ignore,
                .src_is_context = true,
                .sources = (char *const *) srcs,
                .dest = dest,
                .dest_is_dir = dest_dir,
                .uid = -1,
                .gid = -1,
                .now = 1700000000,
                .what = "COPY",
        };
        return ossb_copy_run(&f->dst, &req, &f->c, err);
}

static void test_destination_rules(void)
{
        struct fixture f;
        ASSERT(setup(&f, "dest") == 0);
        put("dest/ctx/a.txt", "A", 0644);
        put("dest/ctx/dir/b.txt", "B", 0600);
        put("dest/ctx/dir/sub/c.txt", "C", 0755);
        const char *one[] = { "a.txt", NULL };
        ASSERT(copy(&f, one, "/renamed", false, NULL, NULL) == 0);
        ASSERT(copy(&f, one, "/into", true, NULL, NULL) == 0);
        const char *dir[] = { "dir", NULL };
        ASSERT(copy(&f, dir, "/contents", false, NULL, NULL) == 0);
        const char *glob[] = { "*.txt", "dir/*/c.txt", NULL };
        ASSERT(copy(&f, glob, "/g", false, NULL, NULL) == 0);
        _cleanup_free_ char *r1 = slurp("dest/dst/renamed"), *r2 = slurp("dest/dst/into/a.txt"),
                            *r3 = slurp("dest/dst/contents/sub/c.txt"), *r4 = slurp("dest/dst/g/c.txt"),
                            *r5 = slurp("dest/dst/g/a.txt");
        ASSERT_STREQ(r1, "A");
        ASSERT_STREQ(r2, "A");
        ASSERT_STREQ(r3, "C");
        ASSERT_STREQ(r4, "C");
        ASSERT_STREQ(r5, "A");
        ASSERT((mode_of("dest/dst/contents/b.txt", NULL) & 07777) == 0600);
        ASSERT(f.c.n >= 6);
        teardown(&f);
}

static void test_missing_and_escapes(void)
{
        struct fixture f;
        struct ossb_error *err = NULL;
        ASSERT(setup(&f, "esc") == 0);
        put("esc/ctx/ok.txt", "ok", 0644);
        put("esc/outside.txt", "secret", 0644);
        _cleanup_free_ char *lnk = ossb_path_join(base, "esc/ctx/escape");
        ASSERT(symlink("../outside.txt", lnk) == 0);
        _cleanup_free_ char *abs = ossb_path_join(base, "esc/ctx/abs");
        ASSERT(symlink("/etc/passwd", abs) == 0);

        const char *missing[] = { "nope.txt", NULL };
        ASSERT(copy(&f, missing, "/x", false, NULL, &err) == -ENOENT);
        ASSERT(err && err->exit_code == OSSB_EXIT_BUILD && strstr(err->msg, "nope.txt"));
        ossb_error_free(TAKE_PTR(err));

        const char *up[] = { "../outside.txt", NULL };
        ASSERT(copy(&f, up, "/x", false, NULL, &err) < 0);
        ASSERT(err && strstr(err->msg, "outside the build context"));
        ossb_error_free(TAKE_PTR(err));

        const char *esc[] = { "escape", NULL };
        ASSERT(copy(&f, esc, "/x", false, NULL, &err) < 0);
        ASSERT(err && strstr(err->msg, "outside the build context") && strstr(err->msg, "escape"));
        ossb_error_free(TAKE_PTR(err));

        const char *absl[] = { "abs", NULL };
        ASSERT(copy(&f, absl, "/x", false, NULL, &err) < 0);
        ossb_error_free(TAKE_PTR(err));

        const char *noglob[] = { "*.none", NULL };
        ASSERT(copy(&f, noglob, "/x/", true, NULL, &err) == -ENOENT);
        ASSERT(err && strstr(err->msg, "no files match"));
        ossb_error_free(TAKE_PTR(err));

        /* a symlink inside the destination root cannot redirect a write outside it */
        _cleanup_free_ char *dl = ossb_path_join(base, "esc/dst/out");
        ASSERT(symlink("../../", dl) == 0);
        const char *ok[] = { "ok.txt", NULL };
        ASSERT(copy(&f, ok, "/out/ok.txt", false, NULL, NULL) == 0);
        _cleanup_free_ char *inside = slurp("esc/dst/ok.txt");
        ASSERT_STREQ(inside, "ok");
        teardown(&f);
}

static void test_dockerignore_and_links(void)
{
        struct fixture f;
        struct ossb_dockerignore *di = NULL;
        ASSERT(setup(&f, "ign") == 0);
        put("ign/ctx/keep.txt", "k", 0644);
        put("ign/ctx/skip.log", "s", 0644);
        put("ign/ctx/logs/important.log", "i", 0644);
        _cleanup_free_ char *a = ossb_path_join(base, "ign/ctx/keep.txt"), *h = ossb_path_join(base, "ign/ctx/hard.txt"),
                            *s = ossb_path_join(base, "ign/ctx/sym");
        ASSERT(link(a, h) == 0);
        ASSERT(symlink("keep.txt", s) == 0);
        const char *pat = "*.log\nlogs\n!logs/important.log\n";
        ASSERT(ossb_dockerignore_parse(".dockerignore", pat, strlen(pat), &di, NULL) == 0);
        const char *all[] = { ".", NULL };
        ASSERT(copy(&f, all, "/app", true, di, NULL) == 0);
        ASSERT(mode_of("ign/dst/app/skip.log", NULL) == 0);
        _cleanup_free_ char *imp = slurp("ign/dst/app/logs/important.log");
        ASSERT_STREQ(imp, "i");
        ASSERT(S_ISLNK(mode_of("ign/dst/app/sym", NULL)));
        _cleanup_free_ char *p1 = ossb_path_join(base, "ign/dst/app/keep.txt"),
                            *p2 = ossb_path_join(base, "ign/dst/app/hard.txt");
        struct stat s1, s2;
        ASSERT(stat(p1, &s1) == 0 && stat(p2, &s2) == 0);
        ASSERT(s1.st_ino == s2.st_ino);

        /* the layer holds the changed paths with their ancestors, a hard link once */
        _cleanup_free_ char *storep = ossb_path_join(base, "ign/store");
        struct ossb_store *store = NULL;
        ASSERT(ossb_store_open(storep, &store, NULL) == 0);
        struct ossb_layer_opts lo = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = 1 };
        char digest[OSSB_DIGEST_STR_LEN + 1], diff[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        ASSERT(ossb_tree_write_layer(&f.dst, &f.c, store, &lo, digest, &size, diff, NULL) == 0);
        ASSERT_STREQ(digest, diff);
        ASSERT(size > 0);
        for (size_t i = 1; i < f.c.n; i++)
                ASSERT(strcmp(f.c.paths[i - 1], f.c.paths[i]) != 0);
        ASSERT_STREQ(f.c.paths[0], "app");
        ossb_store_free(store);
        ossb_dockerignore_free(di);
        teardown(&f);
}

static void test_chown_chmod(void)
{
        struct fixture f;
        struct ossb_error *err = NULL;
        uid_t u;
        gid_t g;
        ASSERT(setup(&f, "own") == 0);
        put("own/dst/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n", 0644);
        put("own/dst/etc/group", "root:x:0:\nstaff:x:50:\n", 0644);
        ASSERT(ossb_chown_parse(&f.dst, "app", &u, &g, NULL) == 0);
        ASSERT(u == 1000 && g == 1001);
        ASSERT(ossb_chown_parse(&f.dst, "app:staff", &u, &g, NULL) == 0);
        ASSERT(u == 1000 && g == 50);
        ASSERT(ossb_chown_parse(&f.dst, "42", &u, &g, NULL) == 0);
        ASSERT(u == 42 && g == 42);
        ASSERT(ossb_chown_parse(&f.dst, "42:7", &u, &g, NULL) == 0);
        ASSERT(u == 42 && g == 7);
        ASSERT(ossb_chown_parse(&f.dst, "ghost", &u, &g, &err) == -ENOENT);
        ASSERT(err && strstr(err->msg, "ghost"));
        ossb_error_free(TAKE_PTR(err));
        ASSERT(ossb_chown_parse(&f.dst, "app:nogroup", &u, &g, &err) == -ENOENT);
        ossb_error_free(TAKE_PTR(err));
        ASSERT(ossb_chown_parse(&f.dst, ":x", &u, &g, &err) < 0);
        ossb_error_free(TAKE_PTR(err));

        struct ossb_chmod c;
        ASSERT(ossb_chmod_parse("0750", &c, NULL) == 0);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0644, false), 0750);
        ASSERT(ossb_chmod_parse("u+x,go-w", &c, NULL) == 0);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0666, false), 0744);
        ASSERT(ossb_chmod_parse("a=rX", &c, NULL) == 0);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0600, false), 0444);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0700, true), 0555);
        ASSERT(ossb_chmod_parse("g=u", &c, NULL) == 0);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0640, false), 0660);
        ASSERT(ossb_chmod_parse("+t", &c, NULL) == 0);
        ASSERT_INTEQ(ossb_chmod_apply(&c, 0755, true), 01755);
        ASSERT(ossb_chmod_parse("99", &c, &err) < 0);
        ossb_error_free(TAKE_PTR(err));
        ASSERT(ossb_chmod_parse("u!x", &c, &err) < 0);
        ossb_error_free(TAKE_PTR(err));
        ASSERT(ossb_chmod_parse("", &c, &err) < 0);
        ossb_error_free(TAKE_PTR(err));
        teardown(&f);
}

static void make_tar(const char *path, int filter)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter(a, filter);
        if (archive_write_open_filename(a, path) != ARCHIVE_OK)
                abort();
        const char *names[] = { "top/", "top/f.txt", "../../evil.txt", "/abs.txt", "top/link" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, names[i]);
                archive_entry_set_uid(e, 1234);
                archive_entry_set_gid(e, 5678);
                archive_entry_set_mtime(e, 1600000000, 0);
                if (i == 0) {
                        archive_entry_set_filetype(e, AE_IFDIR);
                        archive_entry_set_perm(e, 0750);
                } else if (i == 4) {
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_perm(e, 0777);
                        archive_entry_set_symlink(e, "f.txt");
                } else {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0640);
                        archive_entry_set_size(e, 2);
                }
                archive_write_header(a, e);
                if (i > 0 && i < 4)
                        archive_write_data(a, "hi", 2);
                archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
}

static void test_add_archive(void)
{
        struct fixture f;
        const int filters[] = { ARCHIVE_FILTER_NONE, ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_BZIP2, ARCHIVE_FILTER_XZ,
                                ARCHIVE_FILTER_ZSTD };
        ASSERT(setup(&f, "add") == 0);
        for (size_t i = 0; i < ELEMENTSOF(filters); i++) {
                _cleanup_free_ char *tar = NULL, *dest = NULL, *rel = NULL, *abs = NULL;
                ASSERT(asprintf(&tar, "%s/add/ctx/a%zu.tar", base, i) >= 0);
                make_tar(tar, filters[i]);
                ASSERT(ossb_archive_detect(tar) == 1);
                ASSERT(asprintf(&rel, "a%zu.tar", i) >= 0);
                ASSERT(asprintf(&dest, "/x%zu/", i) >= 0);
                const char *srcs[] = { rel, NULL };
                struct ossb_copy_req req = {
                        .src = &f.ctx, .src_is_context = true, .sources = (char *const *) srcs, .dest = dest,
                        .dest_is_dir = true, .uid = -1, .gid = -1, .add = true, .now = 1, .what = "ADD",
                };
                ASSERT(ossb_copy_run(&f.dst, &req, &f.c, NULL) == 0);
                ASSERT(asprintf(&abs, "add/dst/x%zu/top/f.txt", i) >= 0);
                uid_t uid = 0;
                ASSERT((mode_of(abs, &uid) & 07777) == 0640);
                ASSERT(uid == 1234);
                _cleanup_free_ char *evil = NULL, *absf = NULL;
                ASSERT(asprintf(&evil, "add/dst/x%zu/evil.txt", i) >= 0);
                ASSERT(asprintf(&absf, "add/dst/x%zu/abs.txt", i) >= 0);
                ASSERT(mode_of(evil, NULL) != 0); /* "../../evil.txt" stays inside the destination */
                ASSERT(mode_of(absf, NULL) != 0);
        }
        ASSERT(mode_of("evil.txt", NULL) == 0);
        put("add/ctx/plain.txt", "not an archive", 0644);
        _cleanup_free_ char *plain = ossb_path_join(base, "add/ctx/plain.txt");
        ASSERT(ossb_archive_detect(plain) == 0);
        teardown(&f);
}

static void test_write_file_and_mkdir(void)
{
        struct fixture f;
        struct ossb_error *err = NULL;
        ASSERT(setup(&f, "wf") == 0);
        ASSERT(ossb_copy_write_file(&f.dst, "/a/b/c.txt", "data\n", 5, 0640, 0, 0, 1000, 1000, &f.c, NULL) == 0);
        _cleanup_free_ char *d = slurp("wf/dst/a/b/c.txt");
        ASSERT_STREQ(d, "data\n");
        ASSERT((mode_of("wf/dst/a/b/c.txt", NULL) & 07777) == 0640);
        ASSERT(ossb_tree_mkdir_p(&f.dst, "/a/b/c.txt/d", 0, 0, -1, &f.c, &err) == -ENOTDIR);
        ossb_error_free(TAKE_PTR(err));
        ASSERT(ossb_copy_write_file(&f.dst, "/a", "x", 1, 0644, 0, 0, 1, 1, &f.c, &err) < 0);
        ossb_error_free(TAKE_PTR(err));
        _cleanup_free_ char *rel = NULL;
        ASSERT(ossb_tree_resolve(&f.dst, "/a/../a/./b//c.txt", true, &rel, NULL) == 0);
        ASSERT_STREQ(rel, "a/b/c.txt");
        teardown(&f);
}

int main(void)
{
        if (!mkdtemp(base))
                return 99;
        RUN_TEST(test_destination_rules);
        RUN_TEST(test_missing_and_escapes);
        RUN_TEST(test_dockerignore_and_links);
        RUN_TEST(test_chown_chmod);
        RUN_TEST(test_add_archive);
        RUN_TEST(test_write_file_and_mkdir);
        ossb_rm_rf(base);
        TAP_END();
}
