/* tests/unit/test-common.c - common/: errors, strbuf/strv, sha256, fs helpers. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "tests/unit/tap.h"

static void test_error_set_wrap(void)
{
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT_INTEQ(ossb_error_setx(&e, OSSB_EXIT_BUILD, -ENOENT, "no `%s`", "x"), -ENOENT);
        ASSERT_INTEQ(ossb_error_set(&e, -EIO, "second"), -EIO); /* first error wins */
        ASSERT_INTEQ(ossb_error_wrap(&e, "step %d", 3), -ENOENT);
        ASSERT_STREQ(e->msg, "step 3: no `x`");
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_BUILD);
        ASSERT_INTEQ(ossb_error_set(NULL, 5, "x"), -EIO);
}

static void test_strbuf_strv(void)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT(ossb_strbuf_append(&sb, "ab") == 0);
        ASSERT(ossb_strbuf_appendf(&sb, "%d-%s", 42, "z") == 0);
        ASSERT(ossb_strbuf_append_c(&sb, '!') == 0);
        ASSERT_STREQ(sb.buf, "ab42-z!");
        _cleanup_strv_free_ char **v = NULL;
        ASSERT(ossb_strv_push(&v, "a") == 0);
        ASSERT(ossb_strv_push(&v, "b") == 0);
        ASSERT_INTEQ(ossb_strv_length(v), 2);
        ASSERT(ossb_strv_contains(v, "b"));
        _cleanup_strv_free_ char **c = ossb_strv_copy(v);
        ASSERT_STREQ(c[1], "b");
        ASSERT(c[2] == NULL);
}

static void test_sha256(void)
{
        char d[OSSB_DIGEST_STR_LEN + 1];
        ASSERT(ossb_sha256_digest("abc", 3, d) == 0);
        ASSERT_STREQ(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        struct ossb_sha256 *h = NULL;
        ASSERT(ossb_sha256_new(&h) == 0);
        ossb_sha256_update(h, "a", 1);
        ossb_sha256_update(h, "bc", 2);
        char d2[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_final(h, d2);
        ossb_sha256_free(h);
        ASSERT_STREQ(d2, d);
        ASSERT(ossb_digest_is_valid(d));
        ASSERT(!ossb_digest_is_valid("sha256:abc"));
        ASSERT(!ossb_digest_is_valid("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

static void check_clean(const char *in, const char *want, int *ok)
{
        _cleanup_free_ char *c = ossb_path_clean(in);
        if (!c || strcmp(c, want) != 0) {
                fprintf(stderr, "# clean(%s) = %s, want %s\n", in, c ? c : "(null)", want);
                *ok = 0;
        }
}

static void test_path_clean(void)
{
        int ok = 1;
        check_clean("", ".", &ok);
        check_clean("a/b/../c", "a/c", &ok);
        check_clean("/../a", "/a", &ok);
        check_clean("../../a", "../../a", &ok);
        check_clean("a/../..", "..", &ok);
        check_clean("./a/./b/", "a/b", &ok);
        check_clean("/", "/", &ok);
        check_clean("//a//b", "/a/b", &ok);
        ASSERT(ok);
        _cleanup_free_ char *j = ossb_path_join("/x/", "/y");
        ASSERT_STREQ(j, "/x/y");
}

static void test_fs_atomic_and_rootfs(void)
{
        char tmpl[] = "/tmp/ossb-test-common-XXXXXX";
        ASSERT(mkdtemp(tmpl));
        _cleanup_free_ char *f = ossb_path_join(tmpl, "sub/dir/file");
        _cleanup_free_ char *d = ossb_path_join(tmpl, "sub/dir");
        ASSERT(ossb_mkdir_p(d, 0755) == 0);
        ASSERT(ossb_write_file_atomic(f, "hello", 5, 0644, NULL) == 0);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        ASSERT(ossb_read_file(f, 100, &data, &len, NULL) == 0);
        ASSERT_INTEQ(len, 5);
        ASSERT_STREQ(data, "hello");
        ASSERT(ossb_read_file(f, 2, &data, &len, NULL) == -EFBIG);

        /* a symlink escaping the root resolves inside it, with and without openat2 */
        _cleanup_free_ char *lnk = ossb_path_join(tmpl, "sub/escape");
        ASSERT(symlink("../../../../../etc/hostname", lnk) == 0);
        _cleanup_free_ char *lnk2 = ossb_path_join(tmpl, "sub/abs");
        ASSERT(symlink("/sub/dir/file", lnk2) == 0);
        _cleanup_close_ int root = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT(root >= 0);
        for (int pass = 0; pass < 2; pass++) {
                ossb_fs_disable_openat2(pass == 1);
                int fd = ossb_open_in_root(root, "sub/escape", O_RDONLY, 0);
                ASSERT(fd == -ENOENT);
                fd = ossb_open_in_root(root, "sub/abs", O_RDONLY, 0);
                ASSERT(fd >= 0);
                char buf[8] = { 0 };
                ASSERT(read(fd, buf, 5) == 5);
                close(fd);
                ASSERT_STREQ(buf, "hello");
                fd = ossb_open_in_root(root, "../../sub/./dir/../dir/file", O_RDONLY, 0);
                ASSERT(fd >= 0);
                close(fd);
        }
        ossb_fs_disable_openat2(false);
        ASSERT(ossb_rm_rf(tmpl) == 0);
        ASSERT(access(tmpl, F_OK) < 0 && errno == ENOENT);
}

int main(void)
{
        RUN_TEST(test_error_set_wrap);
        RUN_TEST(test_strbuf_strv);
        RUN_TEST(test_sha256);
        RUN_TEST(test_path_clean);
        RUN_TEST(test_fs_atomic_and_rootfs);
        TAP_END();
}
