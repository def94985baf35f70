/* tests/unit/test-oci-store.c - oci/store.c: blob paths, put/read, streaming ingest, digest
 * verification, aborted ingests, hostile digests, write failures. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "oci/store.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-store-XXXXXX";

static const char *ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char *EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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

static char *sub(const char *name)
{
        return ossb_path_join(tmpdir, name);
}

static struct ossb_store *open_store(const char *name)
{
        _cleanup_free_ char *root = sub(name);
        struct ossb_store *s = NULL;
        if (ossb_store_open(root, &s, NULL) < 0)
                return NULL;
        return s;
}

static void test_open_and_paths(void)
{
        _cleanup_free_ char *root = sub("s1");
        _cleanup_free_ char *p = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        struct ossb_store *s = NULL;
        struct stat st;

        ASSERT(ossb_store_open(root, &s, NULL) == 0);
        ASSERT_STREQ(ossb_store_root(s), root);
        _cleanup_free_ char *blobs = sub("s1/blobs/sha256");
        _cleanup_free_ char *ingest = sub("s1/ingest");
        ASSERT(stat(blobs, &st) == 0 && S_ISDIR(st.st_mode));
        ASSERT(stat(ingest, &st) == 0 && S_ISDIR(st.st_mode));
        ASSERT(ossb_store_blob_path(s, ABC, &p, NULL) == 0);
        ASSERT(strstr(p, "/blobs/sha256/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        ossb_store_free(s);
        ossb_store_free(NULL);

        /* a file where the store should be */
        _cleanup_free_ char *file = sub("afile");
        ASSERT(ossb_write_file_atomic(file, "x", 1, 0644, NULL) == 0);
        ASSERT(ossb_store_open(file, &s, &e) < 0);
        ASSERT(e && strstr(e->msg, "cannot open the content store"));
}

static void test_hostile_digests(void)
{
        struct ossb_store *s = open_store("s2");
        static const char *bad[] = {
                "sha256:../../../../etc/passwd",
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
                "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/..",
                "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "",
        };
        ASSERT(s);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *p = NULL;
                _cleanup_error_ struct ossb_error *e = NULL;
                int fd = -1;
                char *data = NULL;
                ASSERT_INTEQ(ossb_store_blob_path(s, bad[i], &p, &e), -EINVAL);
                ASSERT(e && strstr(e->msg, "invalid digest"));
                ASSERT(!ossb_store_has(s, bad[i]));
                ASSERT_INTEQ(ossb_store_open_blob(s, bad[i], &fd, NULL), -EINVAL);
                ASSERT_INTEQ(ossb_store_read_blob(s, bad[i], 100, &data, NULL, NULL), -EINVAL);
                ASSERT_INTEQ(ossb_store_put(s, "abc", 3, bad[i], NULL, NULL), -EINVAL);
        }
        ASSERT_INTEQ(ossb_store_blob_path(s, NULL, &(char *) { NULL }, NULL), -EINVAL);
        _cleanup_free_ char *ingest = sub("s2/ingest");
        ASSERT_INTEQ(count_entries(ingest), 0);
        ossb_store_free(s);
}

static void test_put_read(void)
{
        struct ossb_store *s = open_store("s3");
        char d[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int64_t size = -1;
        int fd = -1;

        ASSERT(s);
        ASSERT(!ossb_store_has(s, ABC));
        ASSERT(ossb_store_put(s, "abc", 3, NULL, d, NULL) == 0);
        ASSERT_STREQ(d, ABC);
        ASSERT(ossb_store_has(s, ABC));
        ASSERT(ossb_store_put(s, "abc", 3, ABC, d, NULL) == 0); /* again, with expected: kept */
        ASSERT(ossb_store_read_blob(s, ABC, 100, &data, &len, NULL) == 0);
        ASSERT_INTEQ(len, 3);
        ASSERT(memcmp(data, "abc", 3) == 0);
        ASSERT(ossb_store_blob_size(s, ABC, &size, NULL) == 0);
        ASSERT_INTEQ(size, 3);
        ASSERT(ossb_store_open_blob(s, ABC, &fd, NULL) == 0);
        struct stat st;
        ASSERT(fstat(fd, &st) == 0);
        close(fd);
        ASSERT_INTEQ(st.st_mode & 07777, 0444);
        ASSERT(ossb_store_put(s, "", 0, NULL, d, NULL) == 0);
        ASSERT_STREQ(d, EMPTY);

        /* too large for `max` */
        _cleanup_error_ struct ossb_error *e = NULL;
        char *big = NULL;
        ASSERT_INTEQ(ossb_store_read_blob(s, ABC, 2, &big, NULL, &e), -EFBIG);
        ASSERT(e && strstr(e->msg, "larger than 2 bytes"));

        _cleanup_free_ char *ingest = sub("s3/ingest");
        ASSERT_INTEQ(count_entries(ingest), 0);
        ossb_store_free(s);
}

static void test_missing(void)
{
        struct ossb_store *s = open_store("s4");
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
        int fd = -1;
        char *data = NULL;
        int64_t size;
        ASSERT(s);
        ASSERT_INTEQ(ossb_store_open_blob(s, ABC, &fd, &e1), -ENOENT);
        ASSERT(e1 && strstr(e1->msg, ABC) && strstr(e1->msg, "not in the content store"));
        ASSERT_INTEQ(ossb_store_read_blob(s, ABC, 10, &data, NULL, &e2), -ENOENT);
        ASSERT_INTEQ(ossb_store_blob_size(s, ABC, &size, &e3), -ENOENT);
        ossb_store_free(s);
}

static void test_mismatch(void)
{
        struct ossb_store *s = open_store("s5");
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_free_ char *ingest = sub("s5/ingest");
        _cleanup_free_ char *blobs = sub("s5/blobs/sha256");
        char d[OSSB_DIGEST_STR_LEN + 1] = "unchanged";

        ASSERT(s);
        ASSERT_INTEQ(ossb_store_put(s, "abd", 3, ABC, d, &e), -EBADMSG);
        ASSERT(e && strstr(e->msg, "digest mismatch"));
        ASSERT(strstr(e->msg, ABC)); /* expected */
        ASSERT(strstr(e->msg, "sha256:a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9")); /* actual */
        ASSERT_STREQ(d, "unchanged");
        ASSERT_INTEQ(count_entries(ingest), 0);
        ASSERT_INTEQ(count_entries(blobs), 0);
        ASSERT(!ossb_store_has(s, ABC));
        ossb_store_free(s);
}

static void test_ingest_stream(void)
{
        struct ossb_store *s = open_store("s6");
        struct ossb_store_ingest *in = NULL;
        _cleanup_free_ char *ingest = sub("s6/ingest");
        char d[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL;

        ASSERT(s);
        ASSERT(ossb_store_ingest_new(s, &in, NULL) == 0);
        ASSERT_INTEQ(count_entries(ingest), 1);
        ASSERT(ossb_store_ingest_write(in, "a", 1, NULL) == 0);
        ASSERT(ossb_store_ingest_write(in, "bc", 2, NULL) == 0);
        ASSERT_INTEQ(ossb_store_ingest_size(in), 3);
        ASSERT(!ossb_store_has(s, ABC)); /* not before the commit */
        ASSERT(ossb_store_ingest_commit(in, ABC, d, &size, NULL) == 0);
        ASSERT_STREQ(d, ABC);
        ASSERT_INTEQ(size, 3);
        ASSERT(ossb_store_has(s, ABC));
        ASSERT_INTEQ(count_entries(ingest), 0);
        /* finished: no more writes or commits */
        ASSERT_INTEQ(ossb_store_ingest_write(in, "x", 1, &e1), -EINVAL);
        ASSERT_INTEQ(ossb_store_ingest_commit(in, NULL, d, NULL, &e2), -EINVAL);
        ossb_store_ingest_free(in);

        /* aborted: the temp file goes away, nothing lands in blobs/ */
        in = NULL;
        ASSERT(ossb_store_ingest_new(s, &in, NULL) == 0);
        ASSERT(ossb_store_ingest_write(in, "partial", 7, NULL) == 0);
        ASSERT_INTEQ(count_entries(ingest), 1);
        ossb_store_ingest_free(in);
        ASSERT_INTEQ(count_entries(ingest), 0);
        ossb_store_ingest_free(NULL);

        /* an invalid expected digest */
        _cleanup_error_ struct ossb_error *e3 = NULL;
        in = NULL;
        ASSERT(ossb_store_ingest_new(s, &in, NULL) == 0);
        ASSERT_INTEQ(ossb_store_ingest_commit(in, "sha256:nothex", d, NULL, &e3), -EINVAL);
        ASSERT(strstr(e3->msg, "invalid expected digest"));
        ossb_store_ingest_free(in);
        ASSERT_INTEQ(count_entries(ingest), 0);
        ossb_store_free(s);
}

static void test_corrupt_blob(void)
{
        struct ossb_store *s = open_store("s7");
        _cleanup_free_ char *p = NULL, *data = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(s);
        ASSERT(ossb_store_put(s, "abc", 3, NULL, NULL, NULL) == 0);
        ASSERT(ossb_store_blob_path(s, ABC, &p, NULL) == 0);
        ASSERT(chmod(p, 0644) == 0);
        int fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT(fd >= 0);
        ASSERT(write(fd, "xyz", 3) == 3);
        close(fd);
        ASSERT_INTEQ(ossb_store_read_blob(s, ABC, 100, &data, NULL, &e), -EBADMSG);
        ASSERT(e && strstr(e->msg, "corrupt"));
        ossb_store_free(s);
}

static void test_write_failure(void)
{
        struct ossb_store *s = open_store("s8");
        struct ossb_store_ingest *in = NULL;
        _cleanup_free_ char *ingest = sub("s8/ingest");
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        struct rlimit old, lim;
        char buf[4096] = { 0 };
        int r;

        ASSERT(s);
        ASSERT(ossb_store_ingest_new(s, &in, NULL) == 0);
        ASSERT(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = 1024;
        signal(SIGXFSZ, SIG_IGN);
        ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        r = ossb_store_ingest_write(in, buf, sizeof(buf), &e);
        setrlimit(RLIMIT_FSIZE, &old);
        ASSERT_INTEQ(r, -EFBIG);
        ASSERT(e && strstr(e->msg, "cannot write"));
        /* the ingest is unusable: commit fails and removes the temp file */
        ASSERT_INTEQ(ossb_store_ingest_commit(in, NULL, NULL, NULL, &e2), -EINVAL);
        ASSERT_INTEQ(count_entries(ingest), 0);
        ossb_store_ingest_free(in);
        ossb_store_free(s);
}

static void test_unwritable_ingest_dir(void)
{
        struct ossb_store *s = open_store("s9");
        struct ossb_store_ingest *in = NULL;
        _cleanup_free_ char *ingest = sub("s9/ingest");
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(s);
        ASSERT(ossb_rm_rf(ingest) == 0);
        ASSERT_INTEQ(ossb_store_ingest_new(s, &in, &e), -ENOENT);
        ASSERT(e && strstr(e->msg, "cannot create an ingest file"));
        ossb_store_free(s);
}

int main(void)
{
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        RUN_TEST(test_open_and_paths);
        RUN_TEST(test_hostile_digests);
        RUN_TEST(test_put_read);
        RUN_TEST(test_missing);
        RUN_TEST(test_mismatch);
        RUN_TEST(test_ingest_stream);
        RUN_TEST(test_corrupt_blob);
        RUN_TEST(test_write_failure);
        RUN_TEST(test_unwritable_ingest_dir);
        ossb_rm_rf(tmpdir);
        TAP_END();
}
