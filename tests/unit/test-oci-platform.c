/* tests/unit/test-oci-platform.c - oci/platform.c: parsing and normalising platforms, matching,
 * image indexes and Docker manifest lists from untrusted bytes, choosing a manifest (exact,
 * compatible variants, attestations, entries without a platform), and ossb_is_index. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "oci/platform.h"
#include "tests/unit/tap.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define D5 "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define D6 "sha256:6666666666666666666666666666666666666666666666666666666666666666"

static const char *norm(const char *s, char *buf)
{
        struct ossb_platform p;
        if (ossb_platform_parse(s, &p, NULL) < 0)
                return "(error)";
        return ossb_platform_format(&p, buf, 100);
}

static void test_parse_normalize(void)
{
        char b[100];
        ASSERT_STREQ(norm("linux/amd64", b), "linux/amd64");
        ASSERT_STREQ(norm("linux/x86_64", b), "linux/amd64");
        ASSERT_STREQ(norm("linux/x86-64", b), "linux/amd64");
        ASSERT_STREQ(norm("linux/amd64/v1", b), "linux/amd64");
        ASSERT_STREQ(norm("linux/amd64/v3", b), "linux/amd64/v3");
        ASSERT_STREQ(norm("Linux/AArch64", b), "linux/arm64");
        ASSERT_STREQ(norm("linux/arm64/v8", b), "linux/arm64");
        ASSERT_STREQ(norm("linux/arm64/8", b), "linux/arm64");
        ASSERT_STREQ(norm("linux/arm64/v9.0", b), "linux/arm64/v9");
        ASSERT_STREQ(norm("linux/arm", b), "linux/arm/v7");
        ASSERT_STREQ(norm("linux/arm/7", b), "linux/arm/v7");
        ASSERT_STREQ(norm("linux/arm/6", b), "linux/arm/v6");
        ASSERT_STREQ(norm("linux/armhf", b), "linux/arm/v7");
        ASSERT_STREQ(norm("linux/armel", b), "linux/arm/v6");
        ASSERT_STREQ(norm("linux/i686", b), "linux/386");
        ASSERT_STREQ(norm("linux/i386", b), "linux/386");
        ASSERT_STREQ(norm("macos/arm64", b), "darwin/arm64");
        ASSERT_STREQ(norm("s390x", b), "linux/s390x");
        ASSERT_STREQ(norm("arm64", b), "linux/arm64");
        ASSERT_STREQ(norm("windows/amd64", b), "windows/amd64");
        ASSERT_STREQ(norm("linux/riscv64", b), "linux/riscv64");
}

static void test_parse_invalid(void)
{
        static const char *const bad[] = { "", "linux/", "/amd64", "linux//amd64", "linux/amd64/v8/x",
                                           "linux/am d64", "linux/amd64/", "linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                           "linux/amd64\n" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct ossb_platform p;
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT_INTEQ(ossb_platform_parse(bad[i], &p, &e), -EINVAL);
                ASSERT(e && e->msg);
        }
        _cleanup_error_ struct ossb_error *e = NULL;
        struct ossb_platform p;
        ASSERT_INTEQ(ossb_platform_parse(NULL, &p, &e), -EINVAL);
}

static bool match(const char *want, const char *have)
{
        struct ossb_platform w, h;
        if (ossb_platform_parse(want, &w, NULL) < 0 || ossb_platform_parse(have, &h, NULL) < 0)
                return false;
        return ossb_platform_match(&w, &h);
}

static void test_match(void)
{
        ASSERT(match("linux/amd64", "linux/amd64"));
        ASSERT(match("linux/arm64", "linux/arm64/v8"));
        ASSERT(match("linux/arm64/v8", "linux/arm64"));
        ASSERT(match("linux/aarch64", "linux/arm64"));
        ASSERT(!match("linux/arm64", "linux/arm64/v9"));
        ASSERT(match("linux/arm64/v9", "linux/arm64"));
        ASSERT(match("linux/arm/v7", "linux/arm/v6"));
        ASSERT(match("linux/arm/v7", "linux/arm/v5"));
        ASSERT(!match("linux/arm/v6", "linux/arm/v7"));
        ASSERT(match("linux/arm", "linux/arm/v7"));
        ASSERT(match("linux/amd64/v3", "linux/amd64"));
        ASSERT(match("linux/amd64/v3", "linux/amd64/v2"));
        ASSERT(!match("linux/amd64", "linux/amd64/v2"));
        ASSERT(!match("linux/amd64", "linux/arm64"));
        ASSERT(!match("linux/amd64", "windows/amd64"));
        ASSERT(!match("linux/riscv64/a", "linux/riscv64/b"));
        ASSERT(!match("linux/arm/v7", "linux/arm/vx"));
        /* raw structs, not parsed: normalised inside */
        struct ossb_platform w = { "Linux", "x86_64", "" }, h = { "linux", "amd64", "v1" };
        ASSERT(ossb_platform_match(&w, &h));
}

static const char index_json[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2 "\",\"size\":11,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\",\"os.version\":\"x\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3 "\",\"size\":12,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D4 "\",\"size\":13,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v5\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D5 "\",\"size\":14,"
        "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"},"
        "\"annotations\":{\"vnd.docker.reference.digest\":\"" D1 "\",\"vnd.docker.reference.type\":"
        "\"attestation-manifest\"}}"
        "]}";

static const char *select_digest(const struct ossb_index *ix, const char *want, char *msg, size_t msg_size)
{
        struct ossb_platform p;
        const struct ossb_index_entry *e = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_platform_parse(want, &p, NULL) < 0)
                return "(bad platform)";
        if (ossb_index_select(ix, &p, "docker.io/library/x:1", &e, &err) < 0) {
                if (msg)
                        snprintf(msg, msg_size, "%s", err && err->msg ? err->msg : "");
                return "(none)";
        }
        return e->desc.digest;
}

static void test_index_select(void)
{
        struct ossb_index *ix = NULL;
        char msg[512] = "";
        ASSERT_INTEQ(ossb_index_parse(index_json, strlen(index_json), &ix, NULL), 0);
        ASSERT_INTEQ(ix->n_entries, 5);
        ASSERT_STREQ(ix->media_type, "application/vnd.oci.image.index.v1+json");
        ASSERT(ix->entries[1].has_platform);
        ASSERT_STREQ(ix->entries[1].platform.variant, "v8"); /* as written */
        ASSERT_STREQ(select_digest(ix, "linux/amd64", NULL, 0), D1);
        ASSERT_STREQ(select_digest(ix, "linux/x86_64", NULL, 0), D1);
        ASSERT_STREQ(select_digest(ix, "linux/arm64", NULL, 0), D2);
        ASSERT_STREQ(select_digest(ix, "linux/arm64/v8", NULL, 0), D2);
        ASSERT_STREQ(select_digest(ix, "linux/arm/v7", NULL, 0), D3); /* v6 before v5 */
        ASSERT_STREQ(select_digest(ix, "linux/arm/v6", NULL, 0), D3);
        ASSERT_STREQ(select_digest(ix, "linux/arm/v5", NULL, 0), D4);
        ASSERT_STREQ(select_digest(ix, "linux/s390x", msg, sizeof(msg)), "(none)");
        ASSERT_STREQ(msg, "no manifest for linux/s390x in docker.io/library/x:1; it offers linux/amd64, "
                          "linux/arm64/v8, linux/arm/v6, linux/arm/v5");
        /* the attestation is never chosen, even for unknown/unknown */
        ASSERT_STREQ(select_digest(ix, "unknown/unknown", NULL, 0), "(none)");
        ossb_index_free(ix);
}

static void test_docker_list_and_fallbacks(void)
{
        static const char list[] =
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
                "\"manifests\":[{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D1
                "\",\"size\":1,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
                "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D2
                "\",\"size\":1,\"platform\":{\"architecture\":\"weird/arch\",\"os\":\"linux\"}},"
                "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D3
                "\",\"size\":1,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":null}},"
                "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" D6
                "\",\"size\":1}]}";
        struct ossb_index *ix = NULL;
        ASSERT_INTEQ(ossb_index_parse(list, strlen(list), &ix, NULL), 0);
        ASSERT_INTEQ(ix->n_entries, 4);
        ASSERT(!ix->entries[1].has_platform && ix->entries[1].bad_platform); /* kept, never chosen */
        ASSERT(!ix->entries[3].has_platform);
        ASSERT_STREQ(select_digest(ix, "linux/arm64/v8", NULL, 0), D1);
        ASSERT_STREQ(select_digest(ix, "linux/amd64", NULL, 0), D3);
        /* nothing matches: the manifest without a platform */
        ASSERT_STREQ(select_digest(ix, "linux/ppc64le", NULL, 0), D6);
        ossb_index_free(ix);

        static const char only_attest[] =
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                "\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}}]}";
        char msg[512] = "";
        ASSERT_INTEQ(ossb_index_parse(only_attest, strlen(only_attest), &ix, NULL), 0);
        ASSERT_STREQ(ix->media_type, "application/vnd.oci.image.index.v1+json");
        ASSERT_STREQ(select_digest(ix, "linux/amd64", msg, sizeof(msg)), "(none)");
        ASSERT_STREQ(msg, "no manifest for linux/amd64 in docker.io/library/x:1; it offers no platform");
        ossb_index_free(ix);

        static const char empty[] = "{\"schemaVersion\":2,\"manifests\":[]}";
        ASSERT_INTEQ(ossb_index_parse(empty, strlen(empty), &ix, NULL), 0);
        ASSERT_INTEQ(ix->n_entries, 0);
        struct ossb_platform p = { "linux", "amd64", "" };
        const struct ossb_index_entry *e = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT_INTEQ(ossb_index_select(ix, &p, NULL, &e, &err), -ENOENT);
        ASSERT(strstr(err->msg, "in the image index"));
        ossb_index_free(ix);
}

static void test_index_invalid(void)
{
        static const char *const bad[] = {
                "",
                "[]",
                "{\"schemaVersion\":1,\"manifests\":[]}",
                "{\"manifests\":[]}",
                "{\"schemaVersion\":2}",
                "{\"schemaVersion\":2,\"manifests\":{}}",
                "{\"schemaVersion\":2,\"mediaType\":7,\"manifests\":[]}",
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"manifests\":[]}",
                "{\"schemaVersion\":2,\"mediaType\":\"text/plain\",\"manifests\":[]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" D1 "\",\"size\":1}]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"" D1
                "\",\"size\":1,\"platform\":[]}]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"" D1
                "\",\"size\":1,\"platform\":{\"os\":\"linux\"}}]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"" D1
                "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":5}}]}",
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"" D1
                "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":[]}}]}",
                "{\"schemaVersion\":2,\"manifests\":[]} x",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct ossb_index *ix = NULL;
                _cleanup_error_ struct ossb_error *e = NULL;
                int r = ossb_index_parse(bad[i], strlen(bad[i]), &ix, &e);
                if (r != -EPROTO)
                        fprintf(stderr, "# input %zu: %d\n", i, r);
                ASSERT_INTEQ(r, -EPROTO);
                ASSERT(!ix && e && e->msg);
        }
}

static void test_index_too_many(void)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT(ossb_strbuf_append(&sb, "{\"schemaVersion\":2,\"manifests\":[") >= 0);
        for (int i = 0; i < 4097; i++)
                ASSERT(ossb_strbuf_appendf(&sb, "%s{\"mediaType\":\"a/b\",\"digest\":\"" D1 "\",\"size\":1}",
                                           i ? "," : "") >= 0);
        ASSERT(ossb_strbuf_append(&sb, "]}") >= 0);
        struct ossb_index *ix = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT_INTEQ(ossb_index_parse(sb.buf, sb.len, &ix, &e), -EPROTO);
        ASSERT(strstr(e->msg, "too many manifests"));
        ossb_strbuf_free(&sb);
}

static void test_is_index(void)
{
        static const char manifest[] = "{\"schemaVersion\":2,\"config\":{},\"layers\":[]}";
        static const char idx_no_mt[] = "{\"schemaVersion\":2,\"manifests\":[]}";
        static const char list_mt[] =
                "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\"}";
        ASSERT(ossb_is_index(OSSB_MT_OCI_INDEX, NULL, 0));
        ASSERT(ossb_is_index(OSSB_MT_DOCKER_LIST, NULL, 0));
        ASSERT(!ossb_is_index(OSSB_MT_OCI_MANIFEST, idx_no_mt, strlen(idx_no_mt)));
        ASSERT(ossb_is_index("application/json", idx_no_mt, strlen(idx_no_mt)));
        ASSERT(ossb_is_index(NULL, idx_no_mt, strlen(idx_no_mt)));
        ASSERT(ossb_is_index(NULL, list_mt, strlen(list_mt)));
        ASSERT(!ossb_is_index(NULL, manifest, strlen(manifest)));
        ASSERT(!ossb_is_index(NULL, "not json", 8));
        ASSERT(!ossb_is_index(NULL, "[]", 2));
        ASSERT(!ossb_is_index(NULL, NULL, 0));
}

int main(void)
{
        RUN_TEST(test_parse_normalize);
        RUN_TEST(test_parse_invalid);
        RUN_TEST(test_match);
        RUN_TEST(test_index_select);
        RUN_TEST(test_docker_list_and_fallbacks);
        RUN_TEST(test_index_invalid);
        RUN_TEST(test_index_too_many);
        RUN_TEST(test_is_index);
        TAP_END();
}
