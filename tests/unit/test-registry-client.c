/* tests/unit/test-registry-client.c - registry/client.h against real registries started by
 * test-registry-client.sh: Debian's docker-registry (plain, Basic auth, TLS with a test CA)
 * and registry-fault-server.py in front of the plain one (faults, Bearer tokens, redirects).
 * Pushes (monolithic, chunked, mounts), manifests, downloads into fresh stores, retries and
 * resumption, digest and size checks, the auth flows and their messages, mirrors, TLS, and
 * blob provenance.  Without OSSB_TEST_REGISTRY (run outside the script) it skips. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "registry/client-internal.h"
#include "registry/client.h"
#include "registry/http.h"
#include "tests/unit/tap.h"
#include "tests/unit/registry-client-fixtures.h"

/* --- push, manifests, downloads ------------------------------------------------------------ */

static void test_push_and_fetch(void)
{
        struct client cl;
        struct image im;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new(), *s2 = store_new();
        size_t sizes[] = { 1024, 100 * 1024, 0 };
        char ref[256], byd[256];
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_strv_free_ char **src = NULL;
        ASSERT(s && s2);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(image_make(s, sizes, 3, 1, &im) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/app:1", reg_plain);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(cl.ev.done, 4);
        ASSERT_INTEQ(cl.ev.start, 4);

        /* HEAD */
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        bool exists = false;
        ASSERT(rf && ossb_repo_open(cl.r, rf, false, &repo, &e) >= 0);
        char name[256];
        snprintf(name, sizeof(name), "%s/test/app", reg_plain);
        ASSERT_STREQ(ossb_repo_name(repo), name);
        ASSERT(ossb_repo_blob_exists(repo, im.layers[1].digest, &exists, &e) >= 0 && exists);
        ASSERT(ossb_repo_blob_exists(repo, "sha256:0000000000000000000000000000000000000000000000000000000000000001",
                                     &exists, &e) >= 0 && !exists);
        ossb_repo_free(repo);
        ossb_reference_free(rf);

        /* the manifest by tag and by digest */
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT_INTEQ(m.len, strlen(im.manifest));
        ASSERT(memcmp(m.data, im.manifest, m.len) == 0);
        ASSERT_STREQ(m.digest, im.digest);
        ASSERT_STREQ(m.media_type, OSSB_MT_OCI_MANIFEST);
        ossb_fetched_manifest_clear(&m);
        snprintf(byd, sizeof(byd), "%s/test/app@%s", reg_plain, im.digest);
        ASSERT(get_manifest(cl.r, byd, &m, &e) >= 0);
        ASSERT_STREQ(m.digest, im.digest);
        ossb_fetched_manifest_clear(&m);

        /* into a fresh store; then nothing is downloaded again */
        ready_count = 0;
        ASSERT(fetch(cl.r, s2, ref, im.layers, im.n_layers, &e) >= 0);
        ASSERT_INTEQ(ready_count, 3);
        for (size_t i = 0; i < im.n_layers; i++)
                ASSERT(ossb_store_has(s2, im.layers[i].digest));
        ASSERT_INTEQ(cl.ev.exists, 0);
        ASSERT(fetch(cl.r, s2, ref, im.layers, im.n_layers, &e) >= 0);
        ASSERT_INTEQ(cl.ev.exists, 3);
        ASSERT_INTEQ(ready_count, 6);
        ASSERT(fetch(cl.r, s2, ref, im.layers, 0, &e) >= 0);
        ASSERT_INTEQ(ingest_count(s2), 0);

        /* where they came from */
        ASSERT(ossb_blob_source_get(s2, im.layers[0].digest, &src, &e) >= 0);
        char want[256];
        snprintf(want, sizeof(want), "%s/test/app", reg_plain);
        ASSERT(src[0] && streq(src[0], want) && !src[1]);
        image_clear(&im);
        client_close(&cl);
        ossb_store_free(s);
        ossb_store_free(s2);
}

static void test_push_chunked(void)
{
        struct client cl;
        struct image im;
        struct ossb_store *s = store_new(), *s2 = store_new();
        size_t sizes[] = { 300 * 1024 };
        char ref[256];
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(s && s2 && plan("{}") >= 0);
        setenv("OSSB_PUSH_CHUNK_SIZE", "65536", 1);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        unsetenv("OSSB_PUSH_CHUNK_SIZE");
        ASSERT(image_make(s, sizes, 1, 2, &im) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/chunked:1", reg_fault);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(seen("PATCH", "/v2/test/chunked/blobs/uploads/", NULL, NULL), 5);
        ASSERT_INTEQ(seen("PUT", "/v2/test/chunked/blobs/uploads/", NULL, NULL), 2); /* config + layer */
        ASSERT_INTEQ(cl.ev.done, 2);
        /* the registry has the right bytes */
        snprintf(ref, sizeof(ref), "%s/test/chunked:1", reg_plain);
        ASSERT(fetch(cl.r, s2, ref, im.layers, 1, &e) >= 0);
        ASSERT(ossb_store_has(s2, im.layers[0].digest));

        /* again: every blob is there already (HEAD only) */
        ASSERT(plan("{}") >= 0);
        snprintf(ref, sizeof(ref), "%s/test/chunked:1", reg_fault);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(cl.ev.exists, 2);
        ASSERT_INTEQ(seen("POST", "/blobs/uploads/", NULL, NULL), 0);
        ASSERT_INTEQ(seen("HEAD", "/v2/test/chunked/blobs/", NULL, NULL), 2);
        image_clear(&im);
        client_close(&cl);
        ossb_store_free(s);
        ossb_store_free(s2);
}

static void test_mount(void)
{
        struct client cl;
        struct image im;
        struct ossb_store *s = store_new();
        size_t sizes[] = { 4096, 8192 };
        char ref[256], want[256];
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_strv_free_ char **src = NULL;
        ASSERT(s);
        ASSERT(image_make(s, sizes, 2, 3, &im) >= 0);
        ASSERT(push_plain(s, &im, "test/source:1") >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/mounted:1", reg_plain);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(cl.ev.mounted, 3);
        ASSERT_INTEQ(cl.ev.done, 0);
        ASSERT(ossb_blob_source_get(s, im.layers[1].digest, &src, &e) >= 0);
        snprintf(want, sizeof(want), "%s/test/mounted", reg_plain);
        ASSERT_INTEQ(ossb_strv_length(src), 2);
        ASSERT_STREQ(src[1], want);

        /* a source the registry cannot mount from: it answers 202 and the upload goes on */
        struct ossb_descriptor d;
        ASSERT(make_blob(s, 777, 31, OSSB_MT_OCI_LAYER, &d) >= 0);
        snprintf(want, sizeof(want), "%s/test/never-existed", reg_plain);
        ASSERT(ossb_blob_source_add(s, d.digest, want, &e) >= 0);
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        ASSERT(rf && ossb_repo_open(cl.r, rf, true, &repo, &e) >= 0);
        ASSERT(ossb_repo_push_blobs(repo, s, &d, 1, &e) >= 0);
        ASSERT_INTEQ(cl.ev.mounted, 3);
        ASSERT_INTEQ(cl.ev.done, 1);
        bool exists = false;
        ASSERT(ossb_repo_blob_exists(repo, d.digest, &exists, &e) >= 0 && exists);
        ossb_repo_free(repo);
        ossb_reference_free(rf);
        ossb_descriptor_clear(&d);
        image_clear(&im);
        client_close(&cl);
        ossb_store_free(s);
}

static void test_not_found(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new();
        char ref[256], want[256];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL;
        ASSERT(s && client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/app:nope", reg_plain);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e), -ENOENT);
        snprintf(want, sizeof(want), "manifest for %s/test/app:nope not found (MANIFEST_UNKNOWN)", reg_plain);
        ASSERT_STREQ(msg(e), want);
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_REGISTRY);
        snprintf(ref, sizeof(ref), "%s/test/no-such-repo:latest", reg_plain);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e2), -ENOENT);
        snprintf(want, sizeof(want), "manifest for %s/test/no-such-repo:latest not found (", reg_plain);
        ASSERT(contains(e2, want));
        struct ossb_descriptor d = { .media_type = (char *) OSSB_MT_OCI_LAYER, .size = 10 };
        snprintf(d.digest, sizeof(d.digest), "sha256:%064d", 7);
        ASSERT_INTEQ(fetch(cl.r, s, ref, &d, 1, &e3), -ENOENT);
        ASSERT(contains(e3, "not found in"));
        ASSERT_INTEQ(ingest_count(s), 0);
        client_close(&cl);
        ossb_store_free(s);
}

static void test_bad_arguments(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL;
        char ref[256];
        bool exists;
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/app:1", reg_plain);
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        ASSERT(rf && ossb_repo_open(cl.r, rf, false, &repo, &e) >= 0);
        ASSERT_INTEQ(ossb_repo_get_manifest(repo, "a/b", &m, &e), -EINVAL);
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_USAGE);
        ASSERT_INTEQ(ossb_repo_blob_exists(repo, "sha256:abc", &exists, &e2), -EINVAL);
        ASSERT_INTEQ(ossb_repo_put_manifest(repo, "bad tag", OSSB_MT_OCI_MANIFEST, "{}", 2, &e3), -EINVAL);
        ossb_repo_free(repo);
        ossb_reference_free(rf);
        client_close(&cl);
        struct ossb_registry *r = NULL;
        struct ossb_registry_opts o = { 0 };
        ASSERT(ossb_registry_new(&o, &r, NULL) == -EINVAL);
}

static void test_registry_down(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        char ref[256], want[256];
        /* a port nobody listens on */
        int port = 0;
        {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                socklen_t l = sizeof(a);
                ASSERT(fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
                ASSERT(getsockname(fd, (struct sockaddr *) &a, &l) == 0);
                port = ntohs(a.sin_port);
                close(fd);
        }
        ASSERT(client_open(&cl, NULL, 3, 1500, 0) >= 0);
        snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/app:1", port);
        int64_t t0 = ms_now();
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e), -ECONNREFUSED);
        snprintf(want, sizeof(want), "cannot connect to registry 127.0.0.1:%d: Connection refused", port);
        ASSERT(e && strncmp(msg(e), want, strlen(want)) == 0);
        ASSERT(contains(e, "gave up after 3 attempts"));
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_REGISTRY);
        ASSERT_INTEQ(cl.ev.retry, 2);
        ASSERT(ms_now() - t0 < 5000);
        client_close(&cl);
}

/* --- faults -------------------------------------------------------------------------------- */

/* One image in the plain registry under test/faults:TAG, for fetching through the proxy. */
static struct image fault_image;
static struct ossb_store *fault_store;

static int fault_setup(void)
{
        size_t sizes[] = { 200 * 1024, 3000, 1024 * 1024 };
        fault_store = store_new();
        if (!fault_store || image_make(fault_store, sizes, 3, 9, &fault_image) < 0)
                return -EIO;
        return push_plain(fault_store, &fault_image, "test/faults:1");
}

/* Fetch layer i of the fault image through the proxy into a fresh store. */
static int fault_fetch(struct client *cl, size_t i, struct ossb_store **ret_store, struct ossb_error **err)
{
        char ref[256];
        struct ossb_store *s = store_new();
        if (!s)
                return -EIO;
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        int k = fetch(cl->r, s, ref, &fault_image.layers[i], 1, err);
        if (ret_store)
                *ret_store = s;
        else
                ossb_store_free(s);
        return k;
}

static void test_retry_503(void)
{
        struct client cl;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"status\",\"code\":503,"
                    "\"times\":2}]}", fault_image.layers[1].digest) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(fault_fetch(&cl, 1, NULL, &e) >= 0);
        ASSERT_INTEQ(cl.ev.retry, 2);
        ASSERT(strncmp(cl.ev.last_retry, "HTTP 503, retrying in ", 22) == 0);
        ASSERT(strstr(cl.ev.last_retry, "(attempt 3/6)"));
        ASSERT_INTEQ(seen("GET", fault_image.layers[1].digest, NULL, NULL), 3);
        client_close(&cl);
}

static void test_retry_after(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        char ref[256];
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"status\",\"code\":429,"
                    "\"headers\":{\"Retry-After\":\"1\"},\"body\":\"{\\\"errors\\\":[{\\\"code\\\":\\\"TOOMANYREQUESTS\\\"}]}\"}]}") >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        int64_t t0 = ms_now();
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT(ms_now() - t0 >= 900);
        ASSERT_INTEQ(cl.ev.retry, 1);
        ASSERT(strstr(cl.ev.last_retry, "HTTP 429, retrying in 1.0 s (attempt 2/6)"));
        ASSERT_STREQ(m.digest, fault_image.digest);
        ossb_fetched_manifest_clear(&m);

        /* an HTTP-date, capped by the budget */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"status\",\"code\":503,"
                    "\"headers\":{\"Retry-After\":\"Wed, 21 Oct 2099 07:28:00 GMT\"}}]}") >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 0, 300, 0) >= 0);
        t0 = ms_now();
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT(ms_now() - t0 < 3000);
        ASSERT(strstr(cl.ev.last_retry, "retrying in 0.3 s"));
        ossb_fetched_manifest_clear(&m);
        client_close(&cl);
}

static void test_500_gives_up(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        char ref[256];
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"status\",\"code\":500,"
                    "\"times\":-1,\"body\":\"{\\\"errors\\\":[{\\\"code\\\":\\\"UNKNOWN\\\",\\\"message\\\":\\\"boom\\\"}]}\"}]}") >= 0);
        ASSERT(client_open(&cl, NULL, 3, 2000, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e), -EIO);
        ASSERT(contains(e, "HTTP 500 (gave up after 3 attempts): UNKNOWN: boom"));
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_REGISTRY);
        ASSERT_INTEQ(seen("GET", "/manifests/", NULL, NULL), 3);
        client_close(&cl);
}

static void test_resume_range(void)
{
        struct client cl;
        struct ossb_store *s = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        const char *d = fault_image.layers[0].digest;
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"drop\",\"after\":50000}]}", d) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(fault_fetch(&cl, 0, &s, &e) >= 0);
        ASSERT(ossb_store_has(s, d));
        ASSERT_INTEQ(seen("GET", d, "range", "bytes=50000-"), 1);
        ASSERT_INTEQ(cl.ev.retry, 1);
        ASSERT(strstr(cl.ev.last_retry, "broke"));
        ASSERT_INTEQ(ingest_count(s), 0);
        ossb_store_free(s);
        s = NULL;

        /* the server ignores Range the second time: the download starts over */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"drop\",\"after\":70000},"
                    "{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"no_range\"}]}", d, d) >= 0);
        ASSERT(fault_fetch(&cl, 0, &s, &e) >= 0);
        ASSERT(ossb_store_has(s, d));
        ASSERT_INTEQ(seen("GET", d, "range", "bytes=70000-"), 1);
        ossb_store_free(s);
        s = NULL;

        /* a 206 that does not start where we asked: start over */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"drop\",\"after\":1000},"
                    "{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"bad_range\"}]}", d, d) >= 0);
        cl.ev.retry = 0;
        ASSERT(fault_fetch(&cl, 0, &s, &e) >= 0);
        ASSERT(ossb_store_has(s, d));
        ASSERT_INTEQ(cl.ev.retry, 2);
        ASSERT_INTEQ(seen("GET", d, "range", NULL), 2);
        ossb_store_free(s);
        s = NULL;

        /* a body cut short with a clean end (Content-Length lied) */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"truncate\",\"after\":1000}]}", d) >= 0);
        ASSERT(fault_fetch(&cl, 0, &s, &e) >= 0);
        ASSERT(ossb_store_has(s, d));
        ASSERT_INTEQ(seen("GET", d, "range", "bytes=1000-"), 1);
        ossb_store_free(s);
        client_close(&cl);
}

static void test_corrupt_blob(void)
{
        struct client cl;
        struct ossb_store *s = NULL;
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        const struct ossb_descriptor *d = &fault_image.layers[2];
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"corrupt\",\"times\":-1}]}",
                    d->digest) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT_INTEQ(fault_fetch(&cl, 2, &s, &e), -EBADMSG);
        ASSERT(contains(e, "does not match its digest"));
        ASSERT(contains(e, d->digest));
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_REGISTRY);
        ASSERT(!ossb_store_has(s, d->digest));
        ASSERT_INTEQ(ingest_count(s), 0);
        ossb_store_free(s);

        /* a descriptor smaller than the blob: refused as soon as the size is known */
        struct ossb_descriptor small = *d;
        small.size = d->size - 10;
        s = store_new();
        char ref[256];
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_plain);
        ASSERT_INTEQ(fetch(cl.r, s, ref, &small, 1, &e2), -EBADMSG);
        ASSERT(contains(e2, "larger"));
        ASSERT(!ossb_store_has(s, d->digest));
        ASSERT_INTEQ(ingest_count(s), 0);
        ossb_store_free(s);
        client_close(&cl);
}

static void test_manifest_faults(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
        char ref[256], byd[256];
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        snprintf(byd, sizeof(byd), "%s/test/faults@%s", reg_fault, fault_image.digest);
        ASSERT(client_open(&cl, NULL, 2, 200, 0) >= 0);

        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"header\",\"headers\":"
                    "{\"Docker-Content-Digest\":\"sha256:%064d\"}}]}", 0) >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e1), -EBADMSG);
        ASSERT(contains(e1, "Docker-Content-Digest"));

        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"corrupt\"}]}") >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, byd, &m, &e2), -EBADMSG);
        ASSERT(contains(e2, "does not match its digest"));

        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"big\",\"size\":5000000}]}") >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e3), -EFBIG);
        ASSERT(contains(e3, "larger than 4194304 bytes"));
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"big\",\"size\":5000000,"
                    "\"no_length\":true}]}") >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e4), -EFBIG);

        /* a generic Content-Type: the body's mediaType counts */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"header\",\"headers\":"
                    "{\"Content-Type\":\"application/json; charset=utf-8\"}}]}") >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e5) >= 0);
        ASSERT_STREQ(m.media_type, OSSB_MT_OCI_MANIFEST);
        ossb_fetched_manifest_clear(&m);
        client_close(&cl);
}

static void test_push_faults(void)
{
        struct client cl;
        struct image im;
        struct ossb_store *s = store_new();
        size_t sizes[] = { 150 * 1024 };
        char ref[256];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        ASSERT(s && image_make(s, sizes, 1, 11, &im) >= 0);
        /* a monolithic PUT that fails: the upload starts over */
        ASSERT(plan("{\"rules\":[{\"method\":\"PUT\",\"path\":\"/blobs/uploads/\",\"action\":\"status\",\"code\":503}]}") >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/pushfault:1", reg_fault);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(seen("POST", "/v2/test/pushfault/blobs/uploads/", NULL, NULL), 3); /* config, layer twice */
        ASSERT_INTEQ(cl.ev.retry, 1);
        client_close(&cl);

        /* a chunk that fails: the same */
        image_clear(&im);
        ASSERT(image_make(s, sizes, 1, 12, &im) >= 0);
        ASSERT(plan("{\"rules\":[{\"method\":\"PATCH\",\"path\":\"/blobs/uploads/\",\"action\":\"status\",\"code\":500}]}") >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 50 * 1024) >= 0);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT_INTEQ(seen("PATCH", "/v2/test/pushfault/blobs/uploads/", NULL, NULL), 4); /* 1 failed + 3 */

        /* the registry stores the manifest under another digest */
        ASSERT(plan("{\"rules\":[{\"method\":\"PUT\",\"path\":\"/manifests/\",\"action\":\"header\",\"headers\":"
                    "{\"Docker-Content-Digest\":\"sha256:%064d\"}}]}", 0) >= 0);
        ASSERT_INTEQ(image_push(cl.r, s, &im, ref, &e2), -EBADMSG);
        ASSERT(contains(e2, "but its bytes hash to"));
        image_clear(&im);
        client_close(&cl);
        ossb_store_free(s);
}

/* --- auth ---------------------------------------------------------------------------------- */

static const char BEARER_USERS[] =
        "\"users\":{\"alice\":{\"password\":\"alice-pw-1\",\"push\":true},\"bob\":{\"password\":\"bob-pw-2\"}}";

static void test_bearer_anonymous(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new();
        _cleanup_error_ struct ossb_error *e = NULL;
        char ref[256];
        no_docker_config();
        ASSERT(s && plan("{\"auth\":{\"type\":\"bearer\",%s,\"anonymous_pull\":true}}", BEARER_USERS) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ossb_fetched_manifest_clear(&m);
        ASSERT(fetch(cl.r, s, ref, fault_image.layers, fault_image.n_layers, &e) >= 0);
        /* one token, reused; only the very first request went without it */
        ASSERT_INTEQ(seen("GET", "/_fault/token", NULL, NULL), 1);
        ASSERT_INTEQ(seen("GET", "/_fault/token", "auth", NULL), 1);
        ASSERT_INTEQ(seen(NULL, "/v2/", "auth", NULL), 1);
        ASSERT_INTEQ(seen("GET", "/blobs/", "auth", "Bearer"), 3);

        /* a token that expires: fetched again */
        ASSERT(plan("{\"auth\":{\"type\":\"bearer\",%s,\"anonymous_pull\":true,\"expires_in\":2}}", BEARER_USERS) >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ossb_fetched_manifest_clear(&m);
        usleep(1300 * 1000);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ossb_fetched_manifest_clear(&m);
        ASSERT_INTEQ(seen("GET", "/_fault/token", NULL, NULL), 2);
        ASSERT_INTEQ(seen(NULL, "/v2/", "auth", NULL), 1);
        client_close(&cl);
        ossb_store_free(s);
}

static void test_redirect_drops_credentials(void)
{
        struct client cl;
        struct ossb_store *s = store_new();
        _cleanup_error_ struct ossb_error *e = NULL;
        char ref[256];
        const char *port = strrchr(reg_fault, ':') + 1;
        no_docker_config();
        ASSERT(s && plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"^/v2/test/faults/blobs/\",\"action\":\"redirect\","
                         "\"host\":\"localhost:%s\",\"times\":-1}],\"auth\":{\"type\":\"bearer\",%s,"
                         "\"anonymous_pull\":true}}", port, BEARER_USERS) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        ASSERT(fetch(cl.r, s, ref, fault_image.layers, 2, &e) >= 0);
        ASSERT(ossb_store_has(s, fault_image.layers[0].digest));
        ASSERT_INTEQ(seen("GET", "/_redirected/", NULL, NULL), 2);
        ASSERT_INTEQ(seen("GET", "/_redirected/", "auth", NULL), 2);
        ASSERT(seen("GET", "/v2/test/faults/blobs/", "auth", "Bearer") >= 2);
        client_close(&cl);
        ossb_store_free(s);
}

static void test_bearer_credentials(void)
{
        struct client cl;
        struct image im;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new();
        size_t sizes[] = { 2048 };
        char ref[256], auths[512], want[512];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
        _cleanup_free_ char *alice = b64("alice:alice-pw-1"), *bob = b64("bob:bob-pw-2"), *bad = b64("alice:wrong-pw");
        ASSERT(s && alice && bob && bad);
        ASSERT(image_make(s, sizes, 1, 21, &im) >= 0);
        ASSERT(plan("{\"auth\":{\"type\":\"bearer\",%s}}", BEARER_USERS) >= 0);

        /* alice may push */
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_fault, alice);
        _cleanup_free_ char *dir = docker_config("dc-alice", auths);
        ASSERT(dir && client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/bearer:1", reg_fault);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT(seen("GET", "/_fault/token", "auth", "Basic") >= 1);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ossb_fetched_manifest_clear(&m);
        client_close(&cl);

        /* bob may only pull */
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_fault, bob);
        _cleanup_free_ char *dir2 = docker_config("dc-bob", auths);
        ASSERT(dir2 && client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/bob:1", reg_fault);
        ASSERT_INTEQ(image_push(cl.r, s, &im, ref, &e2), -EACCES);
        snprintf(want, sizeof(want), "authentication to %s failed for %s/test/bob (credentials from %s/config.json)",
                 reg_fault, reg_fault, dir2);
        ASSERT(contains(e2, want));
        ASSERT(contains(e2, "push"));
        ASSERT(!strstr(msg(e2), "bob-pw-2") && !strstr(msg(e2), bob));
        ASSERT_INTEQ(e2->exit_code, OSSB_EXIT_REGISTRY);
        client_close(&cl);

        /* a wrong password: the token server says no */
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_fault, bad);
        _cleanup_free_ char *dir3 = docker_config("dc-bad", auths);
        ASSERT(dir3 && client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/bearer:1", reg_fault);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e3), -EACCES);
        snprintf(want, sizeof(want), "authentication to %s failed for %s/test/bearer (credentials from %s/config.json)",
                 reg_fault, reg_fault, dir3);
        ASSERT(contains(e3, want));
        ASSERT(!strstr(msg(e3), "wrong-pw") && !strstr(msg(e3), bad));
        client_close(&cl);

        /* nobody */
        no_docker_config();
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e4), -EACCES);
        snprintf(want, sizeof(want), "(anonymous: no credentials found for %s)", reg_fault);
        ASSERT(contains(e4, want));
        client_close(&cl);
        image_clear(&im);
        ossb_store_free(s);
}

static void test_identity_token(void)
{
        struct client cl;
        struct ossb_fetched_manifest m = { 0 };
        char ref[256], auths[512];
        _cleanup_error_ struct ossb_error *e = NULL;
        snprintf(auths, sizeof(auths), "{\"%s\":{\"identitytoken\":\"refresh-me-123\"}}", reg_fault);
        _cleanup_free_ char *dir = docker_config("dc-identity", auths);
        ASSERT(dir && plan("{\"auth\":{\"type\":\"bearer\",%s,\"refresh_tokens\":{\"refresh-me-123\":\"alice\"}}}",
                           BEARER_USERS) >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT_STREQ(m.digest, fault_image.digest);
        ossb_fetched_manifest_clear(&m);
        ASSERT_INTEQ(seen("POST", "/_fault/token", "auth", NULL), 1);
        ASSERT_INTEQ(seen("GET", "/_fault/token", NULL, NULL), 0);
        client_close(&cl);
        no_docker_config();
}

static void test_basic_fault_and_redaction(void)
{
        struct client cl;
        struct image im;
        struct ossb_store *s = store_new();
        size_t sizes[] = { 999 };
        char ref[256], auths[512];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        _cleanup_free_ char *alice = b64("alice:alice-pw-1"), *bob = b64("bob:bob-pw-2");
        ASSERT(s && alice && bob && image_make(s, sizes, 1, 41, &im) >= 0);
        ASSERT(plan("{\"auth\":{\"type\":\"basic\",%s}}", BEARER_USERS) >= 0);
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_fault, alice);
        _cleanup_free_ char *dir = docker_config("dc-basic-alice", auths);
        ASSERT(dir && client_open(&cl, NULL, 0, 0, 0) >= 0);

        /* debug logging on, stderr into a file */
        _cleanup_free_ char *logf = ossb_path_join(tmp, "debug.log");
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT(saved >= 0 && fd >= 0);
        dup2(fd, STDERR_FILENO);
        close(fd);
        ossb_log_setup(OSSB_LOG_DEBUG, false);
        snprintf(ref, sizeof(ref), "%s/test/basic:1", reg_fault);
        int k = image_push(cl.r, s, &im, ref, &e);
        ossb_log_setup(OSSB_LOG_INFO, false);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        ASSERT(k >= 0);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        ASSERT(ossb_read_file(logf, 16 << 20, &text, &len, NULL) >= 0);
        ASSERT(strstr(text, "Authorization: <redacted>"));
        ASSERT(strstr(text, "http: > PUT"));
        ASSERT(!strstr(text, alice) && !strstr(text, "alice-pw-1"));
        ASSERT(seen("PUT", "/blobs/uploads/", "auth", "Basic") >= 1);
        client_close(&cl);

        /* bob is refused pushes (403) */
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_fault, bob);
        _cleanup_free_ char *dir2 = docker_config("dc-basic-bob", auths);
        ASSERT(dir2 && client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT_INTEQ(image_push(cl.r, s, &im, ref, &e2), -EACCES);
        ASSERT(contains(e2, "push"));
        ASSERT(contains(e2, "DENIED"));
        client_close(&cl);
        no_docker_config();
        image_clear(&im);
        ossb_store_free(s);
}

static void test_basic_registry(void)
{
        struct client cl;
        struct image im;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new();
        size_t sizes[] = { 5000 };
        char ref[256], auths[512], want[512];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL;
        if (!reg_basic || !*reg_basic) {
                fprintf(stderr, "# no Basic-auth registry (htpasswd missing): skipped\n");
                ossb_store_free(s);
                return;
        }
        _cleanup_free_ char *good = b64("alice:alice-secret-pw"), *bad = b64("alice:not-the-pw");
        ASSERT(s && good && bad && image_make(s, sizes, 1, 51, &im) >= 0);
        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_basic, good);
        _cleanup_free_ char *dir = docker_config("dc-real-basic", auths);
        ASSERT(dir && client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/basic:1", reg_basic);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT_STREQ(m.digest, im.digest);
        ossb_fetched_manifest_clear(&m);
        client_close(&cl);

        snprintf(auths, sizeof(auths), "{\"%s\":{\"auth\":\"%s\"}}", reg_basic, bad);
        _cleanup_free_ char *dir2 = docker_config("dc-real-basic-bad", auths);
        ASSERT(dir2 && client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e2), -EACCES);
        snprintf(want, sizeof(want), "authentication to %s failed for %s/test/basic (credentials from %s/config.json)",
                 reg_basic, reg_basic, dir2);
        ASSERT(contains(e2, want));
        ASSERT(!strstr(msg(e2), "not-the-pw") && !strstr(msg(e2), bad));
        client_close(&cl);

        no_docker_config();
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e3), -EACCES);
        snprintf(want, sizeof(want), "authentication to %s failed for %s/test/basic (anonymous: no credentials found for %s)",
                 reg_basic, reg_basic, reg_basic);
        ASSERT(contains(e3, want));
        client_close(&cl);
        image_clear(&im);
        ossb_store_free(s);
}

/* --- mirrors ------------------------------------------------------------------------------- */

static void test_mirrors(void)
{
        struct client cl;
        struct image im, only;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new(), *s2 = store_new(), *s3 = store_new();
        size_t sizes[] = { 3333, 4444 };
        char conf[1024], ref[256];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL;
        ASSERT(s && s2 && s3);
        ASSERT(image_make(s, sizes, 2, 61, &im) >= 0 && image_make(s, sizes, 1, 62, &only) >= 0);
        ASSERT(push_plain(s, &im, "mirror-copy/app:m") >= 0);
        ASSERT(push_plain(s, &im, "mirrored/app:m") >= 0);
        ASSERT(push_plain(s, &only, "mirrored/app:only") >= 0);
        snprintf(conf, sizeof(conf),
                 "[[registry]]\nprefix = \"%s/mirrored\"\nlocation = \"%s/mirrored\"\n"
                 "[[registry.mirror]]\nlocation = \"127.0.0.1:1/dead\"\n"
                 "[[registry.mirror]]\nlocation = \"%s/mirror-copy\"\n"
                 "[[registry]]\nprefix = \"%s/blocked\"\nblocked = true\n",
                 reg_fault, reg_fault, reg_plain, reg_fault);
        ASSERT(plan("{}") >= 0);
        ASSERT(client_open(&cl, conf, 2, 500, 0) >= 0);

        /* all from the second mirror: the origin sees nothing */
        snprintf(ref, sizeof(ref), "%s/mirrored/app:m", reg_fault);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT_STREQ(m.digest, im.digest);
        ossb_fetched_manifest_clear(&m);
        ASSERT(fetch(cl.r, s2, ref, im.layers, im.n_layers, &e) >= 0);
        ASSERT(ossb_store_has(s2, im.layers[1].digest));
        ASSERT_INTEQ(seen(NULL, "/v2/", NULL, NULL), 0);

        /* the mirror lacks it: the origin serves it */
        snprintf(ref, sizeof(ref), "%s/mirrored/app:only", reg_fault);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ASSERT_STREQ(m.digest, only.digest);
        ossb_fetched_manifest_clear(&m);
        ASSERT_INTEQ(seen("GET", "/v2/mirrored/app/manifests/only", NULL, NULL), 1);
        ASSERT(fetch(cl.r, s3, ref, only.layers, 1, &e) >= 0);
        ASSERT(ossb_store_has(s3, only.layers[0].digest));
        ASSERT_INTEQ(seen("GET", "/v2/mirrored/app/blobs/", NULL, NULL), 1);
        /* provenance names the origin */
        _cleanup_strv_free_ char **src = NULL;
        char want[256];
        ASSERT(ossb_blob_source_get(s3, only.layers[0].digest, &src, &e) >= 0);
        snprintf(want, sizeof(want), "%s/mirrored/app", reg_fault);
        ASSERT(src[0] && streq(src[0], want));

        /* pushes never go to mirrors */
        ASSERT(plan("{}") >= 0);
        ASSERT(image_push(cl.r, s, &only, ref, &e) >= 0);
        ASSERT(seen("HEAD", "/v2/mirrored/app/blobs/", NULL, NULL) == 2);

        /* blocked */
        struct ossb_reference *rf = ref_of("%s/blocked/app:1", reg_fault);
        struct ossb_repo *repo = NULL;
        ASSERT(rf);
        ASSERT_INTEQ(ossb_repo_open(cl.r, rf, false, &repo, &e2), -EACCES);
        ASSERT(contains(e2, "blocked by the registries configuration"));
        ASSERT_INTEQ(e2->exit_code, OSSB_EXIT_REGISTRY);
        ossb_reference_free(rf);
        image_clear(&im);
        image_clear(&only);
        client_close(&cl);
        ossb_store_free(s);
        ossb_store_free(s2);
        ossb_store_free(s3);
}

/* --- TLS ----------------------------------------------------------------------------------- */

static int copy_file(const char *from_dir, const char *name, const char *to_dir, const char *to_name)
{
        _cleanup_free_ char *a = ossb_path_join(from_dir, name), *b = ossb_path_join(to_dir, to_name);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (!a || !b || ossb_read_file(a, 1 << 20, &data, &len, NULL) < 0)
                return -EIO;
        return ossb_write_file_atomic(b, data, len, 0600, NULL);
}

/* A cert dir holding reg_tls/ with the given files ("ca.crt", "client.cert", "client.key"). */
static char *tls_dir(const char *name, bool ca, bool client)
{
        _cleanup_free_ char *src = ossb_path_join(certs_dir, reg_tls);
        char *root = ossb_path_join(tmp, name);
        _cleanup_free_ char *dir = root ? ossb_path_join(root, reg_tls) : NULL;
        /* with the CA, also a second (unrelated) certificate: several CA files are bundled */
        if (!src || !dir || ossb_mkdir_p(dir, 0755) < 0 || (ca && copy_file(src, "ca.crt", dir, "ca.crt") < 0) ||
            (ca && client && copy_file(src, "client.cert", dir, "other.crt") < 0) ||
            (client && (copy_file(src, "client.cert", dir, "client.cert") < 0 ||
                        copy_file(src, "client.key", dir, "client.key") < 0))) {
                free(root);
                return NULL;
        }
        return root;
}

static int tls_client(struct client *cl, const char *dir, bool insecure)
{
        char *hosts[] = { (char *) reg_tls, NULL };
        memset(cl, 0, sizeof(*cl));
        cl->conf = conf_new(insecure ? hosts : NULL, dir, NULL);
        struct ossb_registry_opts o = { .conf = cl->conf, .max_attempts = 2, .retry_budget_ms = 200,
                                        .progress = on_event, .progress_userdata = &cl->ev };
        return cl->conf ? ossb_registry_new(&o, &cl->r, NULL) : -EINVAL;
}

static void test_tls(void)
{
        struct client cl;
        struct image im;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new(), *s2 = store_new();
        size_t sizes[] = { 70000, 80000, 90000, 100000 };
        char ref[256], want[256];
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
        if (!reg_tls || !*reg_tls) {
                fprintf(stderr, "# no TLS registry (certtool or a non-loopback address missing): skipped\n");
                ossb_store_free(s);
                ossb_store_free(s2);
                return;
        }
        _cleanup_free_ char *ok = tls_dir("tls-ok", true, true), *noca = tls_dir("tls-noca", false, true),
                            *nocert = tls_dir("tls-nocert", true, false);
        ASSERT(s && s2 && ok && noca && nocert);
        ASSERT(image_make(s, sizes, 4, 71, &im) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/tls:1", reg_tls);

        /* the CA and client identity from the cert dir: verified TLS, HTTP/2, one connection */
        ASSERT(tls_client(&cl, ok, false) >= 0);
        ASSERT(image_push(cl.r, s, &im, ref, &e) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e) >= 0);
        ossb_fetched_manifest_clear(&m);
        ASSERT(fetch(cl.r, s2, ref, im.layers, im.n_layers, &e) >= 0);
        ASSERT(ossb_http_h2_responses(cl.r->http) > 0);
        ASSERT(ossb_http_connects(cl.r->http) <= 2);
        client_close(&cl);

        /* no CA: the certificate is not trusted */
        ASSERT(tls_client(&cl, noca, false) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e2) < 0);
        snprintf(want, sizeof(want), "cannot verify the TLS certificate of registry %s", reg_tls);
        ASSERT(contains(e2, want));
        ASSERT(contains(e2, "system CAs"));
        ASSERT_INTEQ(e2->exit_code, OSSB_EXIT_REGISTRY);
        client_close(&cl);

        /* no client certificate: the registry ends the handshake */
        ASSERT(tls_client(&cl, nocert, false) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e3) < 0);
        /* (TLS 1.3: the refusal arrives after the handshake, as an alert or a closed connection) */
        ASSERT(contains(e3, reg_tls));
        ASSERT(contains(e3, "TLS"));
        ASSERT(contains(e3, "client certificate: none"));
        client_close(&cl);

        /* --insecure-registry: the certificate is not checked */
        ASSERT(tls_client(&cl, noca, true) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e4) >= 0);
        ASSERT_STREQ(m.digest, im.digest);
        ossb_fetched_manifest_clear(&m);
        client_close(&cl);
        image_clear(&im);
        ossb_store_free(s);
        ossb_store_free(s2);
}

/* --- connection reuse ---------------------------------------------------------------------- */

static void test_connection_reuse(void)
{
        struct client cl;
        struct image im;
        struct ossb_store *s = store_new(), *s2 = store_new();
        size_t sizes[] = { 10000, 10001, 10002, 10003 };
        char ref[256];
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(s && s2 && image_make(s, sizes, 4, 81, &im) >= 0);
        ASSERT(push_plain(s, &im, "test/reuse:1") >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/reuse:1", reg_plain);
        ASSERT(fetch(cl.r, s2, ref, &im.config, 1, &e) >= 0);
        long before = ossb_http_connects(cl.r->http);
        ASSERT(fetch(cl.r, s2, ref, im.layers, im.n_layers, &e) >= 0);
        /* four blobs in parallel: at most four connections, the first one reused */
        ASSERT(ossb_http_connects(cl.r->http) - before <= 3);
        client_close(&cl);
        image_clear(&im);
        ossb_store_free(s);
        ossb_store_free(s2);
}

/* --- provenance ---------------------------------------------------------------------------- */

static void test_sources(void)
{
        struct ossb_store *s = store_new();
        _cleanup_error_ struct ossb_error *e = NULL, *e2 = NULL, *e3 = NULL;
        _cleanup_strv_free_ char **v = NULL, **w = NULL, **x = NULL;
        const char *d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        ASSERT(s);
        ASSERT(ossb_blob_source_get(s, d, &v, &e) >= 0 && v && !v[0]);
        ASSERT(ossb_blob_source_add(s, d, "r.example/a", &e) >= 0);
        ASSERT(ossb_blob_source_add(s, d, "r.example/b", &e) >= 0);
        ASSERT(ossb_blob_source_add(s, d, "r.example/b", &e) >= 0);
        ASSERT(ossb_blob_source_add(s, d, "r.example/a", &e) >= 0);
        ASSERT(ossb_blob_source_get(s, d, &w, &e) >= 0);
        ASSERT_INTEQ(ossb_strv_length(w), 2);
        ASSERT_STREQ(w[0], "r.example/b");
        ASSERT_STREQ(w[1], "r.example/a");
        for (int i = 0; i < 40; i++) {
                char r[64];
                snprintf(r, sizeof(r), "r.example:5000/n%d", i);
                ASSERT(ossb_blob_source_add(s, d, r, &e) >= 0);
        }
        ASSERT(ossb_blob_source_get(s, d, &x, &e) >= 0);
        ASSERT_INTEQ(ossb_strv_length(x), 32);
        ASSERT_STREQ(x[31], "r.example:5000/n39");
        ASSERT_INTEQ(ossb_blob_source_add(s, d, "no-slash", &e2), -EINVAL);
        ASSERT_INTEQ(ossb_blob_source_add(s, "sha256:nope", "r.example/a", &e3), -EINVAL);
        ossb_store_free(s);
}

/* --- the transport's helpers --------------------------------------------------------------- */

static void test_http_helpers(void)
{
        _cleanup_free_ char *a = ossb_http_redact_url("https://s3.example/b/c?X-Amz-Signature=abc&part=2&token=zz#frag");
        ASSERT_STREQ(a, "https://s3.example/b/c?X-Amz-Signature=<redacted>&part=2&token=<redacted>");
        _cleanup_free_ char *b = ossb_http_redact_url("http://h/v2/");
        ASSERT_STREQ(b, "http://h/v2/");
        _cleanup_free_ char *c = ossb_http_url_resolve("http://h:5000/v2/a/blobs/uploads/x?_state=1", "/v2/a/blobs/uploads/y?z=2");
        ASSERT_STREQ(c, "http://h:5000/v2/a/blobs/uploads/y?z=2");
        _cleanup_free_ char *d = ossb_http_url_resolve("http://h:5000/v2/", "ftp://elsewhere/");
        ASSERT(d == NULL);
        char *hp = NULL;
        bool https = false;
        ASSERT(ossb_http_url_hostport("https://[::1]:5000/v2/", &hp, &https) >= 0 && https);
        ASSERT_STREQ(hp, "[::1]:5000");
        free(hp);
        ASSERT(ossb_http_url_hostport("https://example.com/v2/", &hp, &https) >= 0);
        ASSERT_STREQ(hp, "example.com");
        free(hp);
        ASSERT(ossb_http_url_hostport("file:///etc/passwd", &hp, &https) == -EINVAL);
        ASSERT_INTEQ(ossb_http_retry_after_ms("3"), 3000);
        ASSERT_INTEQ(ossb_http_retry_after_ms("Mon, 01 Jan 2001 00:00:00 GMT"), 0);
        ASSERT(ossb_http_retry_after_ms("Fri, 31 Dec 2099 23:59:59 GMT") > 1000);
        ASSERT_INTEQ(ossb_http_retry_after_ms("soon"), -1);
        ASSERT_INTEQ(ossb_http_retry_after_ms(NULL), -1);
        const char *errs = "{\"errors\":[{\"code\":\"A\",\"message\":\"m\"},{\"code\":\"B\"}]}";
        _cleanup_free_ char *x = distribution_errors(errs, strlen(errs), false);
        ASSERT_STREQ(x, "A: m; B");
        _cleanup_free_ char *y = distribution_errors(errs, strlen(errs), true);
        ASSERT_STREQ(y, "A, B");
        ASSERT(distribution_errors("not json", 8, false) == NULL);
}

/* --- interruption (last: the flag cannot be reset) ----------------------------------------- */

static void test_interrupt(void)
{
        struct client cl;
        struct ossb_store *s = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(plan("{}") >= 0);
        ASSERT(ossb_interrupt_setup() >= 0);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        cl.ev.interrupt_on_start = true;
        ASSERT_INTEQ(fault_fetch(&cl, 2, &s, &e), -EINTR);
        ASSERT_INTEQ(e->exit_code, OSSB_EXIT_INTERNAL);
        ASSERT(!ossb_store_has(s, fault_image.layers[2].digest));
        ASSERT_INTEQ(ingest_count(s), 0);
        ossb_store_free(s);
        client_close(&cl);
}

/* --- more failure paths -------------------------------------------------------------------- */

static int refuse_ready(void *ud, size_t index)
{
        return -ECANCELED;
}

static void test_more_failures(void)
{
        struct client cl;
        struct image im;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_store *s = store_new(), *s2 = store_new();
        size_t sizes[] = { 4000 };
        char ref[256];
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL, *e6 = NULL,
                                          *e7 = NULL, *e8 = NULL, *e9 = NULL;
        ASSERT(s && s2 && image_make(s, sizes, 1, 91, &im) >= 0);
        ASSERT(client_open(&cl, NULL, 2, 300, 0) >= 0);
        snprintf(ref, sizeof(ref), "%s/test/more:1", reg_fault);

        /* the registry refuses the upload */
        ASSERT(plan("{\"rules\":[{\"method\":\"POST\",\"path\":\"/blobs/uploads/\",\"action\":\"status\",\"code\":400,"
                    "\"body\":\"{\\\"errors\\\":[{\\\"code\\\":\\\"NAME_INVALID\\\",\\\"message\\\":\\\"bad name\\\"}]}\"}]}") >= 0);
        ASSERT_INTEQ(image_push(cl.r, s, &im, ref, &e1), -EPROTO);
        ASSERT(contains(e1, "answered HTTP 400: NAME_INVALID: bad name"));
        ASSERT(contains(e1, "POST blob sha256:"));

        /* the registry stored the blob under another digest */
        ASSERT(plan("{\"rules\":[{\"method\":\"PUT\",\"path\":\"/blobs/uploads/\",\"action\":\"header\",\"headers\":"
                    "{\"Docker-Content-Digest\":\"sha256:%064d\"}}]}", 5) >= 0);
        ASSERT_INTEQ(image_push(cl.r, s, &im, ref, &e2), -EBADMSG);
        ASSERT(contains(e2, "stored blob"));

        /* a 401 without a challenge */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/manifests/\",\"action\":\"status\",\"code\":401}]}") >= 0);
        snprintf(ref, sizeof(ref), "%s/test/faults:1", reg_fault);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e3), -EACCES);
        ASSERT(contains(e3, "without a usable WWW-Authenticate challenge"));

        /* a blob that keeps failing */
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/\",\"action\":\"status\",\"code\":502,\"times\":-1}]}") >= 0);
        ASSERT_INTEQ(fetch(cl.r, s2, ref, &fault_image.layers[1], 1, &e4), -EIO);
        ASSERT(contains(e4, "HTTP 502 (gave up after 2 attempts)"));
        ASSERT_INTEQ(ingest_count(s2), 0);

        /* 416 to a resumed download: start over */
        const char *d = fault_image.layers[0].digest;
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"drop\",\"after\":1000},"
                    "{\"method\":\"GET\",\"path\":\"/blobs/%s\",\"action\":\"status\",\"code\":416}]}", d, d) >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(fetch(cl.r, s2, ref, &fault_image.layers[0], 1, &e5) >= 0);
        ASSERT(ossb_store_has(s2, d));
        ASSERT_INTEQ(seen("GET", d, "range", NULL), 2);

        /* the caller stops the download */
        ASSERT(plan("{}") >= 0);
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        ASSERT(rf && ossb_repo_open(cl.r, rf, false, &repo, &e6) >= 0);
        ASSERT_INTEQ(ossb_repo_fetch_blobs(repo, s2, fault_image.layers, 3, refuse_ready, NULL, &e6), -ECANCELED);
        ASSERT(contains(e6, "stopped"));
        ossb_repo_free(repo);
        ossb_reference_free(rf);

        /* the token server fails */
        ASSERT(plan("{\"rules\":[{\"path\":\"/_fault/token\",\"action\":\"status\",\"code\":500,\"times\":-1}],"
                    "\"auth\":{\"type\":\"bearer\",%s,\"anonymous_pull\":true}}", BEARER_USERS) >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 2, 100, 0) >= 0);
        ASSERT_INTEQ(get_manifest(cl.r, ref, &m, &e7), -EPROTO);
        ASSERT(contains(e7, "the token server"));
        ASSERT(contains(e7, "answered HTTP 500"));

        /* a storage redirect that refuses once: the registry is asked again */
        const char *port = strrchr(reg_fault, ':') + 1;
        ASSERT(plan("{\"rules\":[{\"method\":\"GET\",\"path\":\"^/v2/test/faults/blobs/\",\"action\":\"redirect\","
                    "\"host\":\"localhost:%s\",\"times\":-1},{\"path\":\"/_redirected/\",\"action\":\"status\","
                    "\"code\":403}]}", port) >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        struct ossb_store *s3 = store_new();
        ASSERT(s3 && fetch(cl.r, s3, ref, &fault_image.layers[1], 1, &e8) >= 0);
        ASSERT_INTEQ(seen("GET", "/_redirected/", NULL, NULL), 2);
        ossb_store_free(s3);

        /* a credentials file that cannot be parsed: named in the error */
        _cleanup_free_ char *dir = docker_config("dc-broken", "[1, 2");
        ASSERT(dir && plan("{\"auth\":{\"type\":\"basic\",%s}}", BEARER_USERS) >= 0);
        client_close(&cl);
        ASSERT(client_open(&cl, NULL, 0, 0, 0) >= 0);
        ASSERT(get_manifest(cl.r, ref, &m, &e9) < 0);
        ASSERT(contains(e9, dir));
        ASSERT_INTEQ(e9->exit_code, OSSB_EXIT_REGISTRY);
        no_docker_config();
        image_clear(&im);
        client_close(&cl);
        ossb_store_free(s);
        ossb_store_free(s2);
}

/* OSSB_TEST_ONLY=test_name runs one test (debugging). */
static const char *only;
#define RUN(fn)                                   \
        do {                                      \
                if (!only || streq(only, #fn))    \
                        RUN_TEST(fn);             \
        } while (0)

int main(void)
{
        reg_plain = secure_getenv("OSSB_TEST_REGISTRY");
        reg_fault = secure_getenv("OSSB_TEST_FAULT");
        reg_basic = secure_getenv("OSSB_TEST_BASIC");
        reg_tls = secure_getenv("OSSB_TEST_TLS");
        certs_dir = secure_getenv("OSSB_TEST_CERTS");
        tmp = secure_getenv("OSSB_TEST_TMP");
        only = secure_getenv("OSSB_TEST_ONLY");
        if (!reg_plain || !*reg_plain || !reg_fault || !tmp) {
                printf("1..0 # SKIP run through test-registry-client.sh (needs the test registries)\n");
                return 77;
        }
        /* no credentials from the environment unless a test sets them */
        _cleanup_free_ char *home = ossb_path_join(tmp, "home");
        setenv("HOME", home, 1);
        unsetenv("REGISTRY_AUTH_FILE");
        unsetenv("XDG_RUNTIME_DIR");
        no_docker_config();
        curl_global_init(CURL_GLOBAL_DEFAULT);

        RUN(test_http_helpers);
        RUN(test_sources);
        RUN(test_push_and_fetch);
        RUN(test_push_chunked);
        RUN(test_mount);
        RUN(test_not_found);
        RUN(test_bad_arguments);
        RUN(test_registry_down);
        if (fault_setup() < 0) {
                printf("Bail out! cannot push the fault test image\n");
                return 1;
        }
        RUN(test_retry_503);
        RUN(test_retry_after);
        RUN(test_500_gives_up);
        RUN(test_resume_range);
        RUN(test_corrupt_blob);
        RUN(test_manifest_faults);
        RUN(test_push_faults);
        RUN(test_bearer_anonymous);
        RUN(test_redirect_drops_credentials);
        RUN(test_bearer_credentials);
        RUN(test_identity_token);
        RUN(test_basic_fault_and_redaction);
        RUN(test_basic_registry);
        RUN(test_more_failures);
        RUN(test_mirrors);
        RUN(test_tls);
        RUN(test_connection_reuse);
        RUN(test_interrupt);
        image_clear(&fault_image);
        ossb_store_free(fault_store);
        curl_global_cleanup();
        TAP_END();
}
