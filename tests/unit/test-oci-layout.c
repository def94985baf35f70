/* tests/unit/test-oci-layout.c - oci/image.c, oci/layout.c, oci/docker-archive.c: descriptors
 * and manifests in JSON (with hostile input), image writing, OCI layout directories (fresh,
 * merged, refused), layout tars and docker archives (content, determinism, zstd conversion).
 *
 * `test-oci-layout mkimage DIR` instead writes the test image into DIR (a store and every
 * export) for tests/unit/test-oci-tools.sh, which checks them with skopeo, umoci and podman.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/oci.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-layout-XXXXXX";
static struct ossb_store *store;

static inline void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

static char *sub(const char *name)
{
        return ossb_path_join(tmpdir, name);
}

/* ---- building the test image ---- */

static int write_test_layer(struct ossb_store *s, enum ossb_compression c, struct ossb_descriptor *ret,
                            char diff_id[OSSB_DIGEST_STR_LEN + 1])
{
        struct ossb_layer_opts opts = { .compression = c, .level = -1, .source_date_epoch = 0 };
        struct ossb_layer_writer *w = NULL;
        static const char hello[] = "hello world\n";
        const struct ossb_layer_entry dir = { .path = "app", .type = OSSB_ENTRY_DIR, .mode = 0755, .mtime_sec = 10 };
        const struct ossb_layer_entry file = { .path = "app/hello.txt", .type = OSSB_ENTRY_FILE, .mode = 0644,
                                               .size = sizeof(hello) - 1, .mtime_sec = 10 };
        const struct ossb_layer_entry link = { .path = "app/link", .type = OSSB_ENTRY_SYMLINK, .mode = 0777,
                                               .linkname = "hello.txt", .mtime_sec = 10 };
        const struct ossb_layer_entry hard = { .path = "app/hard", .type = OSSB_ENTRY_HARDLINK, .mode = 0644,
                                               .linkname = "app/hello.txt", .mtime_sec = 10 };
        int r = ossb_layer_writer_new(s, &opts, &w, NULL);
        if (r >= 0)
                r = ossb_layer_writer_add(w, &dir, -1, NULL);
        if (r >= 0)
                r = ossb_layer_writer_add_data(w, &file, hello, sizeof(hello) - 1, NULL);
        if (r >= 0)
                r = ossb_layer_writer_add(w, &link, -1, NULL);
        if (r >= 0)
                r = ossb_layer_writer_add(w, &hard, -1, NULL);
        if (r >= 0)
                r = ossb_layer_writer_finish(w, ret->digest, &ret->size, diff_id, NULL);
        ossb_layer_writer_free(w);
        if (r >= 0) {
                ret->media_type = strdup(ossb_compression_media_type(c));
                ret->annotations = NULL;
        }
        return r;
}

static json_object *test_config(const char *diff_id, const char *cmd)
{
        char *s = NULL;
        if (asprintf(&s,
                     "{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"amd64\",\"os\":\"linux\","
                     "\"config\":{\"Env\":[\"PATH=/usr/bin:/bin\"],\"Cmd\":[\"%s\"]},"
                     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},"
                     "\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"ossb test\"}]}",
                     cmd, diff_id) < 0)
                return NULL;
        json_object *o = json_tokener_parse(s);
        free(s);
        return o;
}

/* A one-layer image; its manifest descriptor in *ret (cleared by the caller). */
static int make_image(struct ossb_store *s, enum ossb_compression c, const char *cmd, struct ossb_descriptor *ret)
{
        struct ossb_descriptor layer = { 0 };
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        int r = write_test_layer(s, c, &layer, diff_id);
        if (r < 0)
                return r;
        _cleanup_json_ json_object *cfg = test_config(diff_id, cmd);
        _cleanup_json_ json_object *ann = json_tokener_parse("{\"org.opencontainers.image.title\":\"test\"}");
        r = cfg && ann ? ossb_image_write(s, cfg, &layer, 1, ann, ret, NULL, NULL) : -ENOMEM;
        ossb_descriptor_clear(&layer);
        return r;
}

static json_object *read_json(const char *path)
{
        _cleanup_free_ char *data = NULL;
        json_object *o = NULL;
        size_t len;
        if (ossb_read_file(path, 1 << 24, &data, &len, NULL) < 0)
                return NULL;
        if (ossb_json_parse(data, len, 1 << 24, &o, NULL) < 0)
                return NULL;
        return o;
}

static const char *index_ref(json_object *idx, size_t i, const char *key)
{
        json_object *m, *e, *a, *v;
        if (!json_object_object_get_ex(idx, "manifests", &m) || !(e = json_object_array_get_idx(m, i)) ||
            !json_object_object_get_ex(e, key ? "annotations" : "digest", &a))
                return NULL;
        if (!key)
                return json_object_get_string(a);
        return json_object_object_get_ex(a, key, &v) ? json_object_get_string(v) : NULL;
}

static size_t index_len(json_object *idx)
{
        json_object *m;
        return json_object_object_get_ex(idx, "manifests", &m) ? json_object_array_length(m) : 0;
}

/* ---- JSON model ---- */

static void test_json_to_string(void)
{
        _cleanup_json_ json_object *o = json_tokener_parse("{ \"a\" : \"x/y\", \"b\": [1, 2] }");
        ASSERT(o);
        ASSERT_STREQ(ossb_json_to_string(o), "{\"a\":\"x/y\",\"b\":[1,2]}");
}

static void test_json_parse_hostile(void)
{
        static const struct {
                const char *in;
                size_t len;
                const char *msg;
        } cases[] = {
                { "", 0, "empty" },
                { "{\"a\":1", 6, "truncated" },
                { "{\"a\":1}x", 8, "invalid JSON at byte 7" },
                { "{\"a\":1}\0", 8, "NUL byte" },
                { "{\"a\":\"\xff\"}", 9, "invalid JSON" },
                { "{'a':1}", 7, "invalid JSON at byte 1" },
                { "[NaN]", 5, "invalid JSON" },
                { "[-Infinity]", 11, "invalid JSON" },
                { "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]", (size_t) -1, "invalid JSON" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                json_object *o = NULL;
                size_t len = cases[i].len == (size_t) -1 ? strlen(cases[i].in) : cases[i].len;
                if (ossb_json_parse(cases[i].in, len, 100, &o, &e) != -EPROTO)
                        fprintf(stderr, "# case %zu accepted\n", i);
                ASSERT(e && e->code == -EPROTO);
                if (!strstr(e->msg, cases[i].msg))
                        fprintf(stderr, "# case %zu: %s\n", i, e->msg);
                ASSERT(strstr(e->msg, cases[i].msg));
        }
        _cleanup_error_ struct ossb_error *e = NULL;
        json_object *o = NULL;
        ASSERT_INTEQ(ossb_json_parse("{}", 2, 1, &o, &e), -EPROTO);
        ASSERT(strstr(e->msg, "too large"));
        ASSERT(ossb_json_parse(" {} \n", 5, 10, &o, NULL) == 0);
        json_object_put(o);
        /* quotes and letters inside strings are fine */
        ASSERT(ossb_json_parse("{\"a\\\"'NaN\":1}", 13, 100, &o, NULL) == 0);
        json_object_put(o);
}

static void test_descriptor_json(void)
{
        _cleanup_json_ json_object *ann = json_tokener_parse("{\"k\":\"v\"}");
        struct ossb_descriptor d = { .media_type = (char *) OSSB_MT_OCI_LAYER_GZIP, .size = 42, .annotations = ann };
        struct ossb_descriptor back = { 0 }, copy = { 0 };
        memcpy(d.digest, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               OSSB_DIGEST_STR_LEN + 1);
        _cleanup_json_ json_object *o = ossb_descriptor_to_json(&d);
        ASSERT(o);
        ASSERT_STREQ(ossb_json_to_string(o),
                     "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:"
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":42,"
                     "\"annotations\":{\"k\":\"v\"}}");
        ASSERT(ossb_descriptor_from_json(o, &back, NULL) == 0);
        ASSERT_STREQ(back.media_type, d.media_type);
        ASSERT_STREQ(back.digest, d.digest);
        ASSERT_INTEQ(back.size, 42);
        ASSERT(back.annotations);
        ASSERT(ossb_descriptor_copy(&back, &copy) == 0);
        ASSERT_STREQ(copy.media_type, d.media_type);
        ossb_descriptor_clear(&back);
        ossb_descriptor_clear(&copy);
        ossb_descriptor_clear(NULL);

        static const char *bad[] = {
                "[]",
                "{\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1}",
                "{\"mediaType\":1,\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1}",
                "{\"mediaType\":\"nope\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:../../etc\",\"size\":1}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha512:ab\",\"size\":1}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":\"1\"}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":-1}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1.5}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":99999999999999999999}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1,\"annotations\":[]}",
                "{\"mediaType\":\"a/b\",\"digest\":\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\"size\":1,\"annotations\":{\"a\":1}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_object *b = json_tokener_parse(bad[i]);
                _cleanup_error_ struct ossb_error *e = NULL;
                struct ossb_descriptor x = { 0 };
                ASSERT(b);
                if (ossb_descriptor_from_json(b, &x, &e) != -EPROTO)
                        fprintf(stderr, "# accepted: %s\n", bad[i]);
                ASSERT(e && e->code == -EPROTO);
        }
        _cleanup_error_ struct ossb_error *e = NULL;
        struct ossb_descriptor x = { 0 };
        ASSERT_INTEQ(ossb_descriptor_from_json(NULL, &x, &e), -EPROTO);
}

static void test_image_write(void)
{
        struct ossb_descriptor m = { 0 }, c = { 0 };
        struct ossb_descriptor layer = { 0 };
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *data = NULL, *cdata = NULL;
        size_t len = 0, clen = 0;
        struct ossb_manifest *pm = NULL;

        ASSERT(write_test_layer(store, OSSB_COMPRESSION_GZIP, &layer, diff_id) == 0);
        _cleanup_json_ json_object *cfg = test_config(diff_id, "/bin/sh");
        _cleanup_json_ json_object *ann = json_tokener_parse("{\"a\":\"b/c\"}");
        ASSERT(ossb_image_write(store, cfg, &layer, 1, ann, &m, &c, NULL) == 0);
        ASSERT_STREQ(m.media_type, OSSB_MT_OCI_MANIFEST);
        ASSERT_STREQ(c.media_type, OSSB_MT_OCI_CONFIG);
        ASSERT(ossb_store_read_blob(store, c.digest, 1 << 20, &cdata, &clen, NULL) == 0);
        ASSERT_INTEQ(clen, c.size);
        ASSERT(!strstr(cdata, "\\/") && !strstr(cdata, ": ") && !strstr(cdata, ", "));
        ASSERT(strstr(cdata, "\"PATH=/usr/bin:/bin\""));
        ASSERT(ossb_store_read_blob(store, m.digest, 1 << 20, &data, &len, NULL) == 0);
        ASSERT_INTEQ(len, m.size);
        ASSERT(strncmp(data, "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
                             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"",
                       150) == 0);
        ASSERT(strstr(data, "\"annotations\":{\"a\":\"b/c\"}}"));
        ASSERT(ossb_manifest_parse(data, len, &pm, NULL) == 0);
        ASSERT_STREQ(pm->media_type, OSSB_MT_OCI_MANIFEST);
        ASSERT_STREQ(pm->config.digest, c.digest);
        ASSERT_INTEQ(pm->config.size, c.size);
        ASSERT_INTEQ(pm->n_layers, 1);
        ASSERT_STREQ(pm->layers[0].digest, layer.digest);
        ASSERT_STREQ(pm->layers[0].media_type, OSSB_MT_OCI_LAYER_GZIP);
        ossb_manifest_free(pm);
        ossb_manifest_free(NULL);

        /* the same inputs give the same manifest */
        struct ossb_descriptor m2 = { 0 };
        ASSERT(ossb_image_write(store, cfg, &layer, 1, ann, &m2, NULL, NULL) == 0);
        ASSERT_STREQ(m2.digest, m.digest);
        ossb_descriptor_clear(&m2);
        /* no layers, no annotations, no return descriptors */
        ASSERT(ossb_image_write(store, cfg, NULL, 0, NULL, NULL, NULL, NULL) == 0);

        /* errors */
        _cleanup_json_ json_object *arr = json_object_new_array();
        _cleanup_json_ json_object *badann = json_tokener_parse("{\"a\":1}");
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
        ASSERT_INTEQ(ossb_image_write(store, arr, NULL, 0, NULL, &m2, NULL, &e1), -EINVAL);
        ASSERT_INTEQ(ossb_image_write(store, cfg, NULL, 1, NULL, &m2, NULL, &e2), -EINVAL);
        ASSERT_INTEQ(ossb_image_write(store, cfg, &layer, 1, badann, &m2, NULL, &e3), -EINVAL);
        struct ossb_descriptor bl = layer;
        memcpy(bl.digest, "sha256:x", 9);
        ASSERT_INTEQ(ossb_image_write(store, cfg, &bl, 1, NULL, &m2, NULL, &e4), -EINVAL);
        bl = layer;
        bl.media_type = NULL;
        ASSERT_INTEQ(ossb_image_write(store, cfg, &bl, 1, NULL, &m2, NULL, &e5), -EINVAL);
        _cleanup_error_ struct ossb_error *e6 = NULL, *e7 = NULL;
        bl = layer;
        bl.size = -1;
        ASSERT_INTEQ(ossb_image_write(store, cfg, &bl, 1, NULL, &m2, NULL, &e6), -EINVAL);
        ASSERT(strstr(e6->msg, "negative size"));
        bl = layer;
        bl.annotations = badann;
        ASSERT_INTEQ(ossb_image_write(store, cfg, &bl, 1, NULL, &m2, NULL, &e7), -EINVAL);
        ASSERT(strstr(e7->msg, "annotations must be strings"));
        ossb_descriptor_clear(&m);
        ossb_descriptor_clear(&c);
        ossb_descriptor_clear(&layer);
}

#define D1 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define CFG "{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1 "\",\"size\":3}"
#define LAYER "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D1 "\",\"size\":3}"

static void test_manifest_parse(void)
{
        static const char docker[] = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution."
                                     "manifest.v2+json\",\"config\":" CFG ",\"layers\":[" LAYER "," LAYER "]}";
        static const char oci_no_mt[] = "{\"schemaVersion\":2,\"config\":" CFG ",\"layers\":[]}";
        struct ossb_manifest *m = NULL;
        ASSERT(ossb_manifest_parse(docker, strlen(docker), &m, NULL) == 0);
        ASSERT_STREQ(m->media_type, OSSB_MT_DOCKER_MANIFEST);
        ASSERT_INTEQ(m->n_layers, 2);
        ASSERT_STREQ(m->layers[1].media_type, OSSB_MT_DOCKER_LAYER_GZIP);
        ossb_manifest_free(m);
        ASSERT(ossb_manifest_parse(oci_no_mt, strlen(oci_no_mt), &m, NULL) == 0);
        ASSERT_STREQ(m->media_type, OSSB_MT_OCI_MANIFEST);
        ASSERT_INTEQ(m->n_layers, 0);
        ossb_manifest_free(m);

        static const struct {
                const char *json;
                const char *msg;
        } bad[] = {
                { "[]", "not a JSON object" },
                { "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
                  "image index" },
                { "{\"schemaVersion\":1,\"config\":" CFG ",\"layers\":[]}", "schemaVersion 1" },
                { "{\"schemaVersion\":\"2\",\"config\":" CFG ",\"layers\":[]}", "schemaVersion" },
                { "{\"schemaVersion\":2,\"mediaType\":\"text/plain\",\"config\":" CFG ",\"layers\":[]}",
                  "unsupported manifest media type" },
                { "{\"schemaVersion\":2,\"mediaType\":7,\"config\":" CFG ",\"layers\":[]}", "not a string" },
                { "{\"schemaVersion\":2,\"layers\":[]}", "`config` is missing" },
                { "{\"schemaVersion\":2,\"config\":" CFG "}", "`layers` is missing" },
                { "{\"schemaVersion\":2,\"config\":" CFG ",\"layers\":{}}", "not an array" },
                { "{\"schemaVersion\":2,\"config\":[],\"layers\":[]}", "config" },
                { "{\"schemaVersion\":2,\"config\":" CFG ",\"layers\":[1]}", "layer 0" },
                { "{\"schemaVersion\":2,\"config\":" CFG ",\"layers\":[" LAYER ",{\"mediaType\":\"a/b\"}]}",
                  "layer 1" },
                { "{\"schemaVersion\":2,", "truncated" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                m = NULL;
                ASSERT_INTEQ(ossb_manifest_parse(bad[i].json, strlen(bad[i].json), &m, &e), -EPROTO);
                if (!strstr(e->msg, bad[i].msg))
                        fprintf(stderr, "# case %zu: %s\n", i, e->msg);
                ASSERT(strstr(e->msg, bad[i].msg) && strstr(e->msg, "invalid manifest"));
        }

        /* too many layers, too large */
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT(ossb_strbuf_append(&sb, "{\"schemaVersion\":2,\"config\":" CFG ",\"layers\":[") == 0);
        for (int i = 0; i <= OSSB_MANIFEST_MAX_LAYERS; i++)
                ASSERT(ossb_strbuf_appendf(&sb, "%s" LAYER, i ? "," : "") == 0);
        ASSERT(ossb_strbuf_append(&sb, "]}") == 0);
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL;
        ASSERT_INTEQ(ossb_manifest_parse(sb.buf, sb.len, &m, &e1), -EPROTO);
        ASSERT(strstr(e1->msg, "too many layers"));
        ASSERT_INTEQ(ossb_manifest_parse(sb.buf, OSSB_MANIFEST_MAX_SIZE + 1, &m, &e2), -EPROTO);
        ASSERT(strstr(e2->msg, "too large"));
}

/* ---- layout directory ---- */

static bool is_file(const char *dir, const char *name)
{
        _cleanup_free_ char *p = ossb_path_join(dir, name);
        struct stat st;
        return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool has_blob(const char *dir, const char *digest)
{
        char name[100];
        snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
        return is_file(dir, name);
}

static void test_ref_names(void)
{
        static const char *good[] = { "1.0", "latest", "app:1.0", "localhost:5000/app:1.0", "a--b", "A_b", "a@b+c" };
        static const char *bad[] = { "", "app:", ":x", "a b", "a//b", "/a", "a/", "a---b", "a..b", "é" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT(ossb_layout_ref_name_is_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT(!ossb_layout_ref_name_is_valid(bad[i]));
        ASSERT(!ossb_layout_ref_name_is_valid(NULL));

        static const char *dgood[] = { "app:1.0", "localhost:5000/app:1.0", "Registry.Example/me/app:v1", "a/b/c:T_1" };
        static const char *dbad[] = { "app", "app:", "App:1", ("app@sha256:" D1), "a b:1", "/app:1", "app:-x", "app:.x",
                                      "localhost:5000/app", "x/:1", "app:1/x" };
        for (size_t i = 0; i < ELEMENTSOF(dgood); i++)
                ASSERT(ossb_docker_repo_tag_is_valid(dgood[i]));
        for (size_t i = 0; i < ELEMENTSOF(dbad); i++) {
                if (ossb_docker_repo_tag_is_valid(dbad[i]))
                        fprintf(stderr, "# accepted %s\n", dbad[i]);
                ASSERT(!ossb_docker_repo_tag_is_valid(dbad[i]));
        }
        ASSERT(!ossb_docker_repo_tag_is_valid(NULL));
}

static void test_layout_dir(void)
{
        struct ossb_descriptor a = { 0 }, b = { 0 };
        _cleanup_free_ char *dest = sub("layout/nested");
        const struct ossb_layout_tag ta[] = { { "a:1", NULL }, { "a:2", "docker.io/library/a:2" }, { "a:1", NULL } };
        const struct ossb_layout_tag tb[] = { { "a:2", NULL }, { "b:1", "example.com/b:1" } };

        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        ASSERT(make_image(store, OSSB_COMPRESSION_ZSTD, "b", &b) == 0);
        ASSERT(ossb_layout_write_dir(store, dest, &a, ta, 3, NULL) == 0);
        _cleanup_free_ char *layout = NULL;
        _cleanup_free_ char *lp = ossb_path_join(dest, "oci-layout");
        ASSERT(ossb_read_file(lp, 100, &layout, NULL, NULL) == 0);
        ASSERT_STREQ(layout, "{\"imageLayoutVersion\":\"1.0.0\"}");
        ASSERT(has_blob(dest, a.digest));

        /* the manifest blob is a hard link to the store's (same file system) */
        _cleanup_free_ char *sp = NULL;
        char name[300];
        struct stat s1, s2;
        ASSERT(ossb_store_blob_path(store, a.digest, &sp, NULL) == 0);
        snprintf(name, sizeof(name), "%s/blobs/sha256/%s", dest, a.digest + 7);
        if (stat(sp, &s1) < 0 || stat(name, &s2) < 0)
                fprintf(stderr, "# %s / %s: %m\n", sp, name);
        ASSERT(stat(sp, &s1) == 0 && stat(name, &s2) == 0);
        ASSERT(s1.st_ino == s2.st_ino);

        _cleanup_free_ char *ip = ossb_path_join(dest, "index.json");
        _cleanup_free_ char *raw = NULL;
        ASSERT(ossb_read_file(ip, 1 << 20, &raw, NULL, NULL) == 0);
        ASSERT(strncmp(raw, "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
                            "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"",
                       140) == 0);
        {
                _cleanup_json_ json_object *idx = read_json(ip);
                ASSERT(idx);
                ASSERT_INTEQ(index_len(idx), 2); /* the repeated tag counts once */
                ASSERT_STREQ(index_ref(idx, 0, OSSB_ANNOTATION_REF_NAME), "a:1");
                ASSERT(index_ref(idx, 0, OSSB_ANNOTATION_CONTAINERD_NAME) == NULL);
                ASSERT_STREQ(index_ref(idx, 1, OSSB_ANNOTATION_CONTAINERD_NAME), "docker.io/library/a:2");
        }

        /* merge: a:2 moves to b, b:1 is added, a:1 stays */
        ASSERT(ossb_layout_write_dir(store, dest, &b, tb, 2, NULL) == 0);
        {
                _cleanup_json_ json_object *idx = read_json(ip);
                ASSERT(idx);
                ASSERT_INTEQ(index_len(idx), 3);
                ASSERT_STREQ(index_ref(idx, 0, OSSB_ANNOTATION_REF_NAME), "a:1");
                ASSERT_STREQ(index_ref(idx, 0, NULL), a.digest);
                ASSERT_STREQ(index_ref(idx, 1, OSSB_ANNOTATION_REF_NAME), "a:2");
                ASSERT_STREQ(index_ref(idx, 1, NULL), b.digest);
                ASSERT_STREQ(index_ref(idx, 2, OSSB_ANNOTATION_REF_NAME), "b:1");
        }
        ASSERT(has_blob(dest, a.digest) && has_blob(dest, b.digest));

        /* untagged, twice: one entry */
        ASSERT(ossb_layout_write_dir(store, dest, &b, NULL, 0, NULL) == 0);
        ASSERT(ossb_layout_write_dir(store, dest, &b, NULL, 0, NULL) == 0);
        {
                _cleanup_json_ json_object *idx = read_json(ip);
                ASSERT_INTEQ(index_len(idx), 4);
                ASSERT(index_ref(idx, 3, OSSB_ANNOTATION_REF_NAME) == NULL);
        }
        /* again into an empty existing directory */
        _cleanup_free_ char *empty = sub("empty");
        ASSERT(mkdir(empty, 0755) == 0);
        ASSERT(ossb_layout_write_dir(store, empty, &a, NULL, 0, NULL) == 0);
        ASSERT(is_file(empty, "index.json") && has_blob(empty, a.digest));
        ossb_descriptor_clear(&a);
        ossb_descriptor_clear(&b);
}

static void test_layout_concurrent(void)
{
        /* two processes adding tags to one layout: no entry is lost */
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *dest = sub("concurrent");
        _cleanup_free_ char *ip = ossb_path_join(dest, "index.json");
        pid_t pids[2];
        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        for (int p = 0; p < 2; p++) {
                pids[p] = fork();
                ASSERT(pids[p] >= 0);
                if (pids[p] == 0) {
                        int bad = 0;
                        for (int i = 0; i < 8; i++) {
                                char ref[32];
                                snprintf(ref, sizeof(ref), "p%d:%d", p, i);
                                const struct ossb_layout_tag t = { ref, NULL };
                                if (ossb_layout_write_dir(store, dest, &a, &t, 1, NULL) < 0)
                                        bad = 1;
                        }
                        _exit(bad);
                }
        }
        for (int p = 0; p < 2; p++) {
                int status = 0;
                ASSERT(waitpid(pids[p], &status, 0) == pids[p]);
                ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        _cleanup_json_ json_object *idx = read_json(ip);
        ASSERT(idx);
        ASSERT_INTEQ(index_len(idx), 16);
        ossb_descriptor_clear(&a);
}

static void test_layout_refused(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *dir = sub("notlayout");
        _cleanup_free_ char *f = sub("notlayout/README");
        _cleanup_free_ char *file = sub("plainfile");
        const struct ossb_layout_tag t = { "x:1", NULL };
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;

        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        ASSERT(mkdir(dir, 0755) == 0);
        ASSERT(ossb_write_file_atomic(f, "hi", 2, 0644, NULL) == 0);
        ASSERT_INTEQ(ossb_layout_write_dir(store, dir, &a, &t, 1, &e1), -EEXIST);
        ASSERT(strstr(e1->msg, "not an OCI image layout") && strstr(e1->msg, "refusing"));
        ASSERT_INTEQ(e1->exit_code, OSSB_EXIT_USAGE);
        ASSERT(!is_file(dir, "index.json"));
        _cleanup_free_ char *blobs = sub("notlayout/blobs");
        ASSERT(access(blobs, F_OK) < 0);

        ASSERT(ossb_write_file_atomic(file, "x", 1, 0644, NULL) == 0);
        ASSERT_INTEQ(ossb_layout_write_dir(store, file, &a, &t, 1, &e2), -ENOTDIR);

        /* invalid ref name */
        const struct ossb_layout_tag bad = { "a b", NULL };
        _cleanup_free_ char *d2 = sub("badref");
        ASSERT_INTEQ(ossb_layout_write_dir(store, d2, &a, &bad, 1, &e3), -EINVAL);
        ASSERT(strstr(e3->msg, "invalid OCI reference name `a b`"));
        ASSERT(access(d2, F_OK) < 0);
        _cleanup_error_ struct ossb_error *e4 = NULL;
        ASSERT_INTEQ(ossb_layout_write_dir(store, d2, &a, NULL, 1, &e4), -EINVAL);
        ossb_descriptor_clear(&a);
}

static void test_layout_bad_existing(void)
{
        struct ossb_descriptor a = { 0 };
        static const struct {
                const char *layout, *index, *msg;
        } cases[] = {
                { "{\"imageLayoutVersion\":\"2.0.0\"}", NULL, "unsupported image layout version" },
                { "{}", NULL, "no imageLayoutVersion" },
                { "not json", NULL, "invalid JSON" },
                { "{\"imageLayoutVersion\":\"1.0.0\"}", "{\"manifests\":{}}", "`manifests` is not an array" },
                { "{\"imageLayoutVersion\":\"1.0.0\"}", "[]", "not a JSON object" },
                { "{\"imageLayoutVersion\":\"1.0.0\"}", "{", "truncated" },
        };
        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char name[32];
                _cleanup_error_ struct ossb_error *e = NULL;
                snprintf(name, sizeof(name), "badlayout%zu", i);
                _cleanup_free_ char *d = sub(name);
                _cleanup_free_ char *l = ossb_path_join(d, "oci-layout");
                _cleanup_free_ char *ix = ossb_path_join(d, "index.json");
                ASSERT(mkdir(d, 0755) == 0);
                ASSERT(ossb_write_file_atomic(l, cases[i].layout, strlen(cases[i].layout), 0644, NULL) == 0);
                if (cases[i].index)
                        ASSERT(ossb_write_file_atomic(ix, cases[i].index, strlen(cases[i].index), 0644, NULL) == 0);
                ASSERT_INTEQ(ossb_layout_write_dir(store, d, &a, NULL, 0, &e), -EPROTO);
                if (!strstr(e->msg, cases[i].msg))
                        fprintf(stderr, "# case %zu: %s\n", i, e->msg);
                ASSERT(strstr(e->msg, cases[i].msg));
        }
        /* a layout without index.json gets one */
        _cleanup_free_ char *d = sub("noindex");
        _cleanup_free_ char *l = ossb_path_join(d, "oci-layout");
        ASSERT(mkdir(d, 0755) == 0);
        ASSERT(ossb_write_file_atomic(l, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644, NULL) == 0);
        ASSERT(ossb_layout_write_dir(store, d, &a, NULL, 0, NULL) == 0);
        ASSERT(is_file(d, "index.json"));
        ossb_descriptor_clear(&a);
}

static void test_missing_blob(void)
{
        struct ossb_descriptor layer = { .media_type = (char *) OSSB_MT_OCI_LAYER, .size = 3 };
        struct ossb_descriptor m = { 0 };
        _cleanup_json_ json_object *cfg = json_tokener_parse("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
        _cleanup_free_ char *d = sub("missing");
        _cleanup_free_ char *t = sub("missing.tar");
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
        memcpy(layer.digest, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
               OSSB_DIGEST_STR_LEN + 1);
        ASSERT(ossb_image_write(store, cfg, &layer, 1, NULL, &m, NULL, NULL) == 0);
        ASSERT_INTEQ(ossb_layout_write_dir(store, d, &m, NULL, 0, &e1), -ENOENT);
        ASSERT(strstr(e1->msg, layer.digest) && strstr(e1->msg, "(layer) is not in the content store"));
        ASSERT_INTEQ(ossb_layout_write_tar(store, t, &m, NULL, 0, &e2), -ENOENT);
        ASSERT(access(t, F_OK) < 0);
        /* a descriptor whose size does not match */
        m.size++;
        ASSERT_INTEQ(ossb_layout_write_dir(store, d, &m, NULL, 0, &e3), -EINVAL);
        ASSERT(strstr(e3->msg, "its descriptor says"));
        /* not a digest; not in the store */
        memcpy(m.digest, "sha256:zz", 10);
        ASSERT_INTEQ(ossb_layout_write_dir(store, d, &m, NULL, 0, &e4), -EINVAL);
        memcpy(m.digest, layer.digest, sizeof(m.digest));
        ASSERT_INTEQ(ossb_layout_write_dir(store, d, &m, NULL, 0, &e5), -ENOENT);
        ossb_descriptor_clear(&m);
}

static void test_layout_copy_fallback(void)
{
        /* link() fails across file systems: blobs are copied then */
        struct stat st1, st2;
        struct ossb_descriptor a = { 0 };
        char dest[] = "/dev/shm/ossb-test-layout-XXXXXX";
        if (stat("/dev/shm", &st1) < 0 || stat(tmpdir, &st2) < 0 || st1.st_dev == st2.st_dev || !mkdtemp(dest)) {
                printf("# no second file system; copy fallback not exercised\n");
                return;
        }
        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        int r = ossb_layout_write_dir(store, dest, &a, NULL, 0, NULL);
        bool ok = has_blob(dest, a.digest);
        char p[200];
        snprintf(p, sizeof(p), "%s/blobs/sha256/%s", dest, a.digest + 7);
        struct stat st;
        bool mode_ok = stat(p, &st) == 0 && (st.st_mode & 0777) == 0444;
        ossb_rm_rf(dest);
        ossb_descriptor_clear(&a);
        ASSERT(r == 0 && ok && mode_ok);
}

/* ---- tars ---- */

struct tar_listing {
        char names[32][128];
        size_t sizes[32];
        int n;
        char *manifest_json, *index_json, *repositories;
};

static void listing_free(struct tar_listing *l)
{
        free(l->manifest_json);
        free(l->index_json);
        free(l->repositories);
}

static int list_tar(const char *path, struct tar_listing *l)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r;
        memset(l, 0, sizeof(*l));
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK) {
                archive_read_free(a);
                return -EIO;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK && l->n < 32) {
                const char *n = archive_entry_pathname(e);
                snprintf(l->names[l->n], sizeof(l->names[0]), "%s", n);
                l->sizes[l->n++] = (size_t) archive_entry_size(e);
                char **slot = streq(n, "manifest.json") ? &l->manifest_json
                              : streq(n, "index.json")  ? &l->index_json
                              : streq(n, "repositories") ? &l->repositories
                                                          : NULL;
                if (slot && !*slot) {
                        size_t sz = (size_t) archive_entry_size(e);
                        *slot = calloc(1, sz + 1);
                        if (*slot && archive_read_data(a, *slot, sz) != (la_ssize_t) sz)
                                r = ARCHIVE_FATAL;
                }
                if (archive_entry_uid(e) != 0 || archive_entry_mtime(e) != 0)
                        r = ARCHIVE_FATAL;
        }
        archive_read_free(a);
        return r == ARCHIVE_EOF ? 0 : -EIO;
}

static int count_prefix(const char *dir, const char *prefix)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                        n++;
        closedir(d);
        return n;
}

static bool files_equal(const char *a, const char *b)
{
        _cleanup_free_ char *da = NULL, *db = NULL;
        size_t la = 0, lb = 0;
        return ossb_read_file(a, 1 << 26, &da, &la, NULL) == 0 && ossb_read_file(b, 1 << 26, &db, &lb, NULL) == 0 &&
               la == lb && memcmp(da, db, la) == 0;
}

static void test_layout_tar(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *t1 = sub("oci1.tar");
        _cleanup_free_ char *t2 = sub("oci2.tar");
        const struct ossb_layout_tag tags[] = { { "app:1.0", "docker.io/library/app:1.0" } };
        struct tar_listing l;

        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        ASSERT(ossb_layout_write_tar(store, t1, &a, tags, 1, NULL) == 0);
        ASSERT(ossb_layout_write_tar(store, t2, &a, tags, 1, NULL) == 0);
        ASSERT(files_equal(t1, t2));
        ASSERT(list_tar(t1, &l) == 0);
        ASSERT_INTEQ(l.n, 7); /* oci-layout, blobs/, blobs/sha256/, 3 blobs, index.json */
        ASSERT_STREQ(l.names[0], "oci-layout");
        ASSERT_STREQ(l.names[1], "blobs/");
        ASSERT_STREQ(l.names[2], "blobs/sha256/");
        ASSERT(strcmp(l.names[3], l.names[4]) < 0 && strcmp(l.names[4], l.names[5]) < 0);
        ASSERT_STREQ(l.names[6], "index.json");
        ASSERT(strstr(l.index_json, "\"org.opencontainers.image.ref.name\":\"app:1.0\""));
        ASSERT(strstr(l.index_json, "\"io.containerd.image.name\":\"docker.io/library/app:1.0\""));
        listing_free(&l);
        /* replaced atomically on a second write; no temp files left */
        ASSERT(ossb_layout_write_tar(store, t1, &a, NULL, 0, NULL) == 0);
        ASSERT(!files_equal(t1, t2));

        /* errors: no such directory; invalid tag; a directory at dest */
        _cleanup_free_ char *bad = sub("nodir/x.tar");
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
        ASSERT_INTEQ(ossb_layout_write_tar(store, bad, &a, NULL, 0, &e1), -ENOENT);
        const struct ossb_layout_tag badtag = { "", NULL };
        ASSERT_INTEQ(ossb_layout_write_tar(store, t1, &a, &badtag, 1, &e2), -EINVAL);
        _cleanup_free_ char *dirdest = sub("adir");
        ASSERT(mkdir(dirdest, 0755) == 0);
        ASSERT(ossb_layout_write_tar(store, dirdest, &a, NULL, 0, &e3) < 0);
        ASSERT(strstr(e3->msg, "cannot rename"));
        ossb_descriptor_clear(&a);
}

static void test_tar_corrupt_blob(void)
{
        struct ossb_descriptor a = { 0 };
        struct ossb_manifest *m = NULL;
        _cleanup_free_ char *data = NULL, *p = NULL;
        _cleanup_free_ char *t = sub("corrupt.tar");
        _cleanup_error_ struct ossb_error *e = NULL;
        size_t len;
        ASSERT(make_image(store, OSSB_COMPRESSION_NONE, "corrupt-me", &a) == 0);
        ASSERT(ossb_store_read_blob(store, a.digest, 1 << 20, &data, &len, NULL) == 0);
        ASSERT(ossb_manifest_parse(data, len, &m, NULL) == 0);
        ASSERT(ossb_store_blob_path(store, m->config.digest, &p, NULL) == 0);
        ossb_manifest_free(m);
        /* flip the config's content (same size) */
        _cleanup_free_ char *cfg = NULL;
        size_t clen;
        ASSERT(ossb_read_file(p, 1 << 20, &cfg, &clen, NULL) == 0);
        cfg[clen - 2] ^= 1;
        ASSERT(chmod(p, 0644) == 0);
        int fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT(fd >= 0);
        ASSERT(write(fd, cfg, clen) == (ssize_t) clen);
        close(fd);
        ASSERT_INTEQ(ossb_layout_write_tar(store, t, &a, NULL, 0, &e), -EBADMSG);
        ASSERT(strstr(e->msg, "corrupt"));
        ASSERT(access(t, F_OK) < 0);
        unlink(p); /* leave the store clean for the next tests */
        ossb_descriptor_clear(&a);
}

/* ---- docker archive ---- */

static void test_docker_archive(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *t = sub("docker.tar");
        _cleanup_free_ char *t2 = sub("docker2.tar");
        char *tags[] = { (char *) "app:1.0", (char *) "localhost:5000/team/app:2", (char *) "other/app:1.0", NULL };
        struct tar_listing l;
        struct ossb_manifest *m = NULL;
        _cleanup_free_ char *data = NULL;
        size_t len;
        char want[600];

        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "d", &a) == 0);
        ASSERT(ossb_store_read_blob(store, a.digest, 1 << 20, &data, &len, NULL) == 0);
        ASSERT(ossb_manifest_parse(data, len, &m, NULL) == 0);
        ASSERT(ossb_docker_archive_write(store, t, &a, tags, NULL) == 0);
        ASSERT(ossb_docker_archive_write(store, t2, &a, tags, NULL) == 0);
        ASSERT(files_equal(t, t2));
        ASSERT(list_tar(t, &l) == 0);
        snprintf(want, sizeof(want),
                 "[{\"Config\":\"blobs/sha256/%s\",\"RepoTags\":[\"app:1.0\",\"localhost:5000/team/app:2\",\"other/app:1.0\"],"
                 "\"Layers\":[\"blobs/sha256/%s\"]}]",
                 m->config.digest + 7, m->layers[0].digest + 7);
        ASSERT_STREQ(l.manifest_json, want);
        ASSERT(strstr(l.index_json, "{\"io.containerd.image.name\":\"docker.io/library/app:1.0\","
                                    "\"org.opencontainers.image.ref.name\":\"1.0\"}"));
        ASSERT(strstr(l.index_json, "{\"io.containerd.image.name\":\"localhost:5000/team/app:2\","
                                    "\"org.opencontainers.image.ref.name\":\"2\"}"));
        /* the same tag in two repositories: two entries */
        ASSERT(strstr(l.index_json, "{\"io.containerd.image.name\":\"docker.io/other/app:1.0\","
                                    "\"org.opencontainers.image.ref.name\":\"1.0\"}"));
        snprintf(want, sizeof(want),
                 "{\"app\":{\"1.0\":\"%s\"},\"localhost:5000/team/app\":{\"2\":\"%s\"},\"other/app\":{\"1.0\":\"%s\"}}",
                 m->layers[0].digest + 7, m->layers[0].digest + 7, m->layers[0].digest + 7);
        ASSERT_STREQ(l.repositories, want);
        ASSERT_STREQ(l.names[0], "blobs/");
        listing_free(&l);

        /* untagged */
        ASSERT(ossb_docker_archive_write(store, t2, &a, NULL, NULL) == 0);
        ASSERT(list_tar(t2, &l) == 0);
        ASSERT(strstr(l.manifest_json, "\"RepoTags\":[]"));
        ASSERT(l.repositories == NULL);
        ASSERT(!strstr(l.index_json, "annotations"));
        listing_free(&l);

        /* errors */
        char *bad[] = { (char *) "app", NULL };
        _cleanup_error_ struct ossb_error *e1 = NULL;
        ASSERT_INTEQ(ossb_docker_archive_write(store, t2, &a, bad, &e1), -EINVAL);
        ASSERT(strstr(e1->msg, "invalid tag `app`"));
        ossb_manifest_free(m);
        ossb_descriptor_clear(&a);
}

static void test_docker_archive_zstd(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *t = sub("docker-zstd.tar");
        char *tags[] = { (char *) "z:1", NULL };
        struct tar_listing l;
        struct ossb_manifest *m = NULL;
        _cleanup_free_ char *data = NULL, *cfg = NULL;
        size_t len, clen;

        ASSERT(make_image(store, OSSB_COMPRESSION_ZSTD, "z", &a) == 0);
        ASSERT(ossb_store_read_blob(store, a.digest, 1 << 20, &data, &len, NULL) == 0);
        ASSERT(ossb_manifest_parse(data, len, &m, NULL) == 0);
        ASSERT(ossb_store_read_blob(store, m->config.digest, 1 << 20, &cfg, &clen, NULL) == 0);
        const char *diff = strstr(cfg, "\"diff_ids\":[\"sha256:");
        ASSERT(diff);
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        memcpy(diff_id, diff + 13, OSSB_DIGEST_STR_LEN);
        diff_id[OSSB_DIGEST_STR_LEN] = '\0';
        ASSERT(ossb_digest_is_valid(diff_id));

        ASSERT(ossb_docker_archive_write(store, t, &a, tags, NULL) == 0);
        ASSERT(ossb_store_has(store, diff_id)); /* the uncompressed layer went to the store */
        ASSERT(list_tar(t, &l) == 0);
        char want[200];
        snprintf(want, sizeof(want), "\"Layers\":[\"blobs/sha256/%s\"]", diff_id + 7);
        ASSERT(strstr(l.manifest_json, want));
        ASSERT(!strstr(l.index_json, a.digest)); /* a rewritten manifest */
        bool zstd_blob = false;
        for (int i = 0; i < l.n; i++)
                if (strstr(l.names[i], m->layers[0].digest + 7))
                        zstd_blob = true;
        ASSERT(!zstd_blob);
        listing_free(&l);
        /* again: the uncompressed blob is reused */
        ASSERT(ossb_docker_archive_write(store, t, &a, tags, NULL) == 0);
        ossb_manifest_free(m);
        ossb_descriptor_clear(&a);
}

static void test_docker_archive_bad_config(void)
{
        struct ossb_descriptor layer = { 0 }, m1 = { 0 }, m2 = { 0 }, m3 = { 0 };
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *t = sub("bad-docker.tar");
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
        ASSERT(write_test_layer(store, OSSB_COMPRESSION_GZIP, &layer, diff_id) == 0);
        _cleanup_json_ json_object *c1 = json_tokener_parse("{\"os\":\"linux\"}");
        _cleanup_json_ json_object *c2 = json_tokener_parse("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}");
        _cleanup_json_ json_object *c3 = json_tokener_parse("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[1]}}");
        ASSERT(ossb_image_write(store, c1, &layer, 1, NULL, &m1, NULL, NULL) == 0);
        ASSERT(ossb_image_write(store, c2, &layer, 1, NULL, &m2, NULL, NULL) == 0);
        ASSERT(ossb_image_write(store, c3, &layer, 1, NULL, &m3, NULL, NULL) == 0);
        ASSERT_INTEQ(ossb_docker_archive_write(store, t, &m1, NULL, &e1), -EINVAL);
        ASSERT(strstr(e1->msg, "no rootfs.diff_ids"));
        ASSERT_INTEQ(ossb_docker_archive_write(store, t, &m2, NULL, &e2), -EINVAL);
        ASSERT(strstr(e2->msg, "lists 0 diff_ids for 1 layers"));
        ASSERT_INTEQ(ossb_docker_archive_write(store, t, &m3, NULL, &e3), -EINVAL);
        ASSERT(strstr(e3->msg, "diff_ids[0] is not a sha256 digest"));
        ASSERT(access(t, F_OK) < 0);
        ossb_descriptor_clear(&layer);
        ossb_descriptor_clear(&m1);
        ossb_descriptor_clear(&m2);
        ossb_descriptor_clear(&m3);
}

static void test_docker_archive_zstd_mismatch(void)
{
        /* a zstd layer whose content does not match the config's diff_id is refused */
        struct ossb_descriptor layer = { 0 }, m = { 0 };
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *t = sub("mismatch.tar");
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(write_test_layer(store, OSSB_COMPRESSION_ZSTD, &layer, diff_id) == 0);
        _cleanup_json_ json_object *c = test_config(
                "sha256:1111111111111111111111111111111111111111111111111111111111111111", "x");
        ASSERT(ossb_image_write(store, c, &layer, 1, NULL, &m, NULL, NULL) == 0);
        ASSERT_INTEQ(ossb_docker_archive_write(store, t, &m, NULL, &e), -EBADMSG);
        ASSERT(strstr(e->msg, "digest mismatch") && strstr(e->msg, "uncompressed"));
        ASSERT(access(t, F_OK) < 0);
        ossb_descriptor_clear(&layer);
        ossb_descriptor_clear(&m);
}

static void test_layout_dir_errors(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);

        /* dest below a regular file */
        _cleanup_free_ char *file = sub("errfile");
        _cleanup_free_ char *below = sub("errfile/layout");
        ASSERT(ossb_write_file_atomic(file, "x", 1, 0644, NULL) == 0);
        ASSERT_INTEQ(ossb_layout_write_dir(store, below, &a, NULL, 0, &e1), -ENOTDIR);
        ASSERT(strstr(e1->msg, "cannot access"));

        /* a layout whose blobs/ is a file */
        _cleanup_free_ char *d = sub("blobsfile");
        _cleanup_free_ char *l = ossb_path_join(d, "oci-layout");
        _cleanup_free_ char *b = ossb_path_join(d, "blobs");
        ASSERT(mkdir(d, 0755) == 0);
        ASSERT(ossb_write_file_atomic(l, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644, NULL) == 0);
        ASSERT(ossb_write_file_atomic(b, "x", 1, 0644, NULL) == 0);
        ASSERT(ossb_layout_write_dir(store, d, &a, NULL, 0, &e2) < 0);
        ASSERT(strstr(e2->msg, "cannot create"));
        ASSERT(access(l, F_OK) == 0);
        _cleanup_free_ char *ix = ossb_path_join(d, "index.json");
        ASSERT(access(ix, F_OK) < 0); /* no index.json naming blobs that are not there */

        /* a directory where the manifest blob goes: the rename fails */
        _cleanup_free_ char *d2 = sub("blobisdir");
        char p[300];
        snprintf(p, sizeof(p), "%s/blobs/sha256/%s/x", d2, a.digest + 7);
        ASSERT(ossb_mkdir_p(p, 0755) == 0);
        _cleanup_free_ char *l2 = ossb_path_join(d2, "oci-layout");
        ASSERT(ossb_write_file_atomic(l2, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644, NULL) == 0);
        ASSERT(ossb_layout_write_dir(store, d2, &a, NULL, 0, &e3) < 0);
        ASSERT(strstr(e3->msg, "cannot rename"));
        ossb_descriptor_clear(&a);
}

static int with_fsize_limit(rlim_t limit, int (*fn)(void *), void *arg)
{
        struct rlimit old, lim;
        if (getrlimit(RLIMIT_FSIZE, &old) < 0)
                return -errno;
        lim = old;
        lim.rlim_cur = limit;
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
                return -errno;
        int r = fn(arg);
        setrlimit(RLIMIT_FSIZE, &old);
        return r;
}

struct tar_job {
        const struct ossb_descriptor *m;
        const char *dest;
        bool docker;
        struct ossb_error *e;
};

static int tar_job_run(void *arg)
{
        struct tar_job *j = arg;
        char *tags[] = { (char *) "app:1", NULL };
        if (j->docker)
                return ossb_docker_archive_write(store, j->dest, j->m, tags, &j->e);
        return ossb_layout_write_tar(store, j->dest, j->m, NULL, 0, &j->e);
}

static void test_tar_write_failure(void)
{
        struct ossb_descriptor a = { 0 };
        _cleanup_free_ char *t = sub("full.tar");
        ASSERT(make_image(store, OSSB_COMPRESSION_GZIP, "a", &a) == 0);
        for (int docker = 0; docker < 2; docker++) {
                for (rlim_t lim = 100; lim <= 4000; lim += 1300) {
                        struct tar_job j = { .m = &a, .dest = t, .docker = docker };
                        int r = with_fsize_limit(lim, tar_job_run, &j);
                        if (r != -EFBIG)
                                fprintf(stderr, "# docker %d limit %ld: %d %s\n", docker, (long) lim, r,
                                        j.e ? j.e->msg : "");
                        bool msg = j.e && strstr(j.e->msg, "cannot write");
                        ossb_error_free(j.e);
                        ASSERT_INTEQ(r, -EFBIG);
                        ASSERT(msg);
                        ASSERT(access(t, F_OK) < 0);
                }
        }
        /* no temp file left beside dest */
        ASSERT_INTEQ(count_prefix(tmpdir, "full.tar"), 0);
        ossb_descriptor_clear(&a);
}

static void test_docker_archive_config_not_json(void)
{
        char cfg[OSSB_DIGEST_STR_LEN + 1], md[OSSB_DIGEST_STR_LEN + 1];
        struct ossb_descriptor layer = { 0 };
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *manifest = NULL;
        _cleanup_free_ char *t = sub("cfg.tar");
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(write_test_layer(store, OSSB_COMPRESSION_GZIP, &layer, diff_id) == 0);
        ASSERT(ossb_store_put(store, "not json", 8, NULL, cfg, NULL) == 0);
        ASSERT(asprintf(&manifest,
                        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":8},"
                        "\"layers\":[{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":%lld}]}",
                        cfg, layer.digest, (long long) layer.size) > 0);
        ASSERT(ossb_store_put(store, manifest, strlen(manifest), NULL, md, NULL) == 0);
        struct ossb_descriptor m = { .media_type = (char *) OSSB_MT_OCI_MANIFEST, .size = (int64_t) strlen(manifest) };
        memcpy(m.digest, md, sizeof(md));
        ASSERT_INTEQ(ossb_docker_archive_write(store, t, &m, NULL, &e), -EPROTO);
        ASSERT(strstr(e->msg, "image config"));
        /* the layout writers do not read the config: fine for them */
        _cleanup_free_ char *t2 = sub("cfg-oci.tar");
        ASSERT(ossb_layout_write_tar(store, t2, &m, NULL, 0, NULL) == 0);
        ossb_descriptor_clear(&layer);
}

/* ---- mkimage: fixtures for tests/unit/test-oci-tools.sh ---- */

static int mkimage(const char *dir)
{
        _cleanup_free_ char *root = ossb_path_join(dir, "store");
        _cleanup_free_ char *layout = ossb_path_join(dir, "layout");
        _cleanup_free_ char *layout_tar = ossb_path_join(dir, "layout.tar");
        _cleanup_free_ char *zlayout = ossb_path_join(dir, "layout-zstd");
        _cleanup_free_ char *docker = ossb_path_join(dir, "docker.tar");
        _cleanup_free_ char *docker_zstd = ossb_path_join(dir, "docker-zstd.tar");
        _cleanup_free_ char *docker_1tag = ossb_path_join(dir, "docker-1tag.tar");
        _cleanup_free_ char *layout_1tag = ossb_path_join(dir, "layout-1tag.tar");
        _cleanup_error_ struct ossb_error *e = NULL;
        struct ossb_store *s = NULL;
        struct ossb_descriptor g = { 0 }, z = { 0 };
        const struct ossb_layout_tag tags[] = {
                { "app:1.0", "docker.io/library/app:1.0" },
                { "localhost:5000/app:1.0", "localhost:5000/app:1.0" },
                { "1.0", "docker.io/library/app:1.0" },
                { "latest", NULL },
        };
        char *repo_tags[] = { (char *) "app:1.0", (char *) "localhost:5000/app:1.0", NULL };
        char *one_tag[] = { (char *) "app:1.0", NULL };
        int r = ossb_store_open(root, &s, &e);
        if (r >= 0)
                r = make_image(s, OSSB_COMPRESSION_GZIP, "/bin/sh", &g) < 0 ? -EIO : 0;
        if (r >= 0)
                r = make_image(s, OSSB_COMPRESSION_ZSTD, "/bin/sh", &z) < 0 ? -EIO : 0;
        if (r >= 0)
                r = ossb_layout_write_dir(s, layout, &g, tags, ELEMENTSOF(tags), &e);
        if (r >= 0)
                r = ossb_layout_write_tar(s, layout_tar, &g, tags, ELEMENTSOF(tags), &e);
        if (r >= 0)
                r = ossb_layout_write_dir(s, zlayout, &z, tags, 1, &e);
        if (r >= 0)
                r = ossb_docker_archive_write(s, docker, &g, repo_tags, &e);
        if (r >= 0)
                r = ossb_docker_archive_write(s, docker_zstd, &z, repo_tags, &e);
        if (r >= 0)
                r = ossb_docker_archive_write(s, docker_1tag, &g, one_tag, &e);
        if (r >= 0)
                r = ossb_layout_write_tar(s, layout_1tag, &g, tags, 1, &e);
        if (r < 0)
                fprintf(stderr, "mkimage: %s\n", e && e->msg ? e->msg : strerror(-r));
        ossb_descriptor_clear(&g);
        ossb_descriptor_clear(&z);
        ossb_store_free(s);
        return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
        if (argc == 3 && streq(argv[1], "mkimage"))
                return mkimage(argv[2]);
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        _cleanup_free_ char *root = sub("store");
        if (ossb_store_open(root, &store, NULL) < 0)
                return 1;
        RUN_TEST(test_json_to_string);
        RUN_TEST(test_json_parse_hostile);
        RUN_TEST(test_descriptor_json);
        RUN_TEST(test_image_write);
        RUN_TEST(test_manifest_parse);
        RUN_TEST(test_ref_names);
        RUN_TEST(test_layout_dir);
        RUN_TEST(test_layout_concurrent);
        RUN_TEST(test_layout_refused);
        RUN_TEST(test_layout_bad_existing);
        RUN_TEST(test_missing_blob);
        RUN_TEST(test_layout_copy_fallback);
        RUN_TEST(test_layout_tar);
        RUN_TEST(test_tar_corrupt_blob);
        RUN_TEST(test_docker_archive);
        RUN_TEST(test_docker_archive_zstd);
        RUN_TEST(test_docker_archive_bad_config);
        RUN_TEST(test_docker_archive_zstd_mismatch);
        RUN_TEST(test_layout_dir_errors);
        RUN_TEST(test_tar_write_failure);
        RUN_TEST(test_docker_archive_config_not_json);
        ossb_store_free(store);
        ossb_rm_rf(tmpdir);
        TAP_END();
}
