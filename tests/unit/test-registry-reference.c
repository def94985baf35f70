/* tests/unit/test-engine-reference.c - image reference grammar and normalisation. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "registry/reference.h"
#include "tests/unit/tap.h"

static int check(const char *in, const char *full, const char *familiar)
{
        struct ossb_reference *r = NULL;
        struct ossb_error *err = NULL;
        if (ossb_reference_parse(in, &r, &err) < 0) {
                fprintf(stderr, "# parse(%s) failed: %s\n", in, err ? err->msg : "?");
                ossb_error_free(err);
                return 0;
        }
        _cleanup_free_ char *f = ossb_reference_full(r), *fam = ossb_reference_familiar(r);
        ossb_reference_free(r);
        if (strcmp(f, full) != 0 || strcmp(fam, familiar) != 0) {
                fprintf(stderr, "# %s -> %s / %s, want %s / %s\n", in, f, fam, full, familiar);
                return 0;
        }
        return 1;
}

static int bad(const char *in, const char *why)
{
        struct ossb_reference *r = NULL;
        struct ossb_error *err = NULL;
        int rc = ossb_reference_parse(in, &r, &err);
        int ok = rc < 0 && err && err->exit_code == OSSB_EXIT_USAGE && strstr(err->msg, why) && strstr(err->msg, in);
        if (!ok)
                fprintf(stderr, "# %s: expected error containing `%s`, got %s\n", in, why, err ? err->msg : "success");
        ossb_reference_free(r);
        ossb_error_free(err);
        return ok;
}

static void test_normalise(void)
{
        ASSERT(check("alpine", "docker.io/library/alpine:latest", "alpine:latest"));
        ASSERT(check("alpine:3.19", "docker.io/library/alpine:3.19", "alpine:3.19"));
        ASSERT(check("user/app", "docker.io/user/app:latest", "user/app:latest"));
        ASSERT(check("localhost/app:1", "localhost/app:1", "localhost/app:1"));
        ASSERT(check("localhost:5000/a/b:v1.0-rc_1", "localhost:5000/a/b:v1.0-rc_1", "localhost:5000/a/b:v1.0-rc_1"));
        ASSERT(check("registry.example.com/x__y/z-w.q:t", "registry.example.com/x__y/z-w.q:t",
                     "registry.example.com/x__y/z-w.q:t"));
        ASSERT(check("app@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     "docker.io/library/app@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     "app@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        ASSERT(check("docker.io/library/app:1", "docker.io/library/app:1", "app:1"));
        ASSERT(check("index.docker.io/busybox:1", "docker.io/library/busybox:1", "busybox:1"));
        ASSERT(check("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"));
}

static void test_invalid(void)
{
        ASSERT(bad("", "empty"));
        ASSERT(bad("UPPER/Case", "lowercase"));
        ASSERT(bad("app:bad tag", "invalid tag"));
        ASSERT(bad("app:.x", "invalid tag"));
        ASSERT(bad("app@sha256:abc", "invalid digest"));
        ASSERT(bad("a//b", "invalid repository name"));
        ASSERT(bad("-app", "invalid repository name"));
        ASSERT(bad("host:port/app", "invalid registry host"));
        ASSERT(bad("reg.io/", "empty repository"));
        char long_name[300];
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        ASSERT(bad(long_name, "longer than 255"));
}

int main(void)
{
        RUN_TEST(test_normalise);
        RUN_TEST(test_invalid);
        TAP_END();
}
