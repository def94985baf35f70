/* tests/unit/test-ranged.c - ranged blob reads (registry/ranged.h) against the distribution
 * registry and the proxy that tests/unit/test-ranged.sh starts (OSSB_TEST_REGISTRY,
 * OSSB_TEST_PROXY, OSSB_TEST_TMP).  Every range read is compared with the blob's bytes; the
 * proxy's request log shows what went over the wire. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/image.h"
#include "oci/store.h"
#include "registry/client.h"
#include "registry/ranged.h"
#include "registry/reference.h"
#include "registry/regconf.h"
#include "tests/unit/tap.h"

#define BLOB_LEN (3 * 1024 * 1024 + 12345)
#define REPO "ranged/test"

static const char *reg, *proxy, *tmp;
static unsigned char *blob;
static char digest[OSSB_DIGEST_STR_LEN + 1];

/* --- the proxy's control API --------------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *ud)
{
        return ossb_strbuf_append_n(ud, data, size * n) < 0 ? 0 : size * n;
}

static char *http(const char *method, const char *path, const char *body)
{
        CURL *c = curl_easy_init();
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        char url[256];
        snprintf(url, sizeof(url), "http://%s%s", proxy, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static int proxy_mode(const char *json)
{
        _cleanup_free_ char *r = http("POST", "/_ctl/mode", json);
        return r ? 0 : -EIO;
}

/* The proxy's log: requests whose path contains `part` and, if status > 0, with that status. */
struct logq {
        int n;            /* matching requests */
        int with_auth;    /* ... that carried Authorization */
        int multi;        /* ... whose Range named several ranges */
        char last_range[4096];
};

static int proxy_log(const char *part, int status, struct logq *q)
{
        memset(q, 0, sizeof(*q));
        _cleanup_free_ char *text = http("GET", "/_ctl/log", NULL);
        json_object *a = text ? json_tokener_parse(text) : NULL;
        if (!a)
                return -EIO;
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                json_object *e = json_object_array_get_idx(a, i), *v = NULL;
                json_object_object_get_ex(e, "path", &v);
                if (!strstr(json_object_get_string(v), part))
                        continue;
                json_object_object_get_ex(e, "status", &v);
                if (status > 0 && json_object_get_int(v) != status)
                        continue;
                q->n++;
                json_object_object_get_ex(e, "auth", &v);
                q->with_auth += json_object_get_boolean(v);
                json_object_object_get_ex(e, "range", &v);
                const char *rg = v ? json_object_get_string(v) : NULL;
                snprintf(q->last_range, sizeof(q->last_range), "%s", rg ? rg : "");
                q->multi += rg && strchr(rg, ',') != NULL;
        }
        json_object_put(a);
        return 0;
}

/* --- clients ------------------------------------------------------------------------------- */

struct client {
        struct ossb_regconf *conf;
        struct ossb_registry *r;
        struct ossb_repo *repo;
        struct ossb_ranged *rr;
};

static void client_close(struct client *cl)
{
        ossb_ranged_free(cl->rr);
        ossb_repo_free(cl->repo);
        ossb_registry_free(cl->r);
        ossb_regconf_free(cl->conf);
        memset(cl, 0, sizeof(*cl));
}

static int client_open_conf(struct client *cl, const char *host, const char *auth_file, const struct ossb_ranged_opts *o,
                            const char *conf_text)
{
        memset(cl, 0, sizeof(*cl));
        struct ossb_error *e = NULL;
        char ref_s[256];
        snprintf(ref_s, sizeof(ref_s), "%s/%s", host, REPO);
        struct ossb_reference *ref = NULL;
        int k = ossb_regconf_new(NULL, NULL, NULL, NULL, &cl->conf, &e);
        if (k >= 0 && conf_text)
                k = ossb_regconf_parse(cl->conf, "test.conf", conf_text, strlen(conf_text), &e);
        if (k >= 0) {
                struct ossb_registry_opts ro = { .conf = cl->conf, .auth_file = auth_file, .max_attempts = 4,
                                                 .retry_budget_ms = 5000 };
                k = ossb_registry_new(&ro, &cl->r, &e);
        }
        if (k >= 0)
                k = ossb_reference_parse(ref_s, &ref, &e);
        if (k >= 0)
                k = ossb_repo_open(cl->r, ref, false, &cl->repo, &e);
        if (k >= 0)
                k = ossb_ranged_new(cl->repo, o, &cl->rr, &e);
        ossb_reference_free(ref);
        if (k < 0) {
                fprintf(stderr, "# client: %s\n", e && e->msg ? e->msg : "?");
                client_close(cl);
        }
        ossb_error_free(e);
        return k;
}

static int client_open(struct client *cl, const char *host, const char *auth_file, const struct ossb_ranged_opts *o)
{
        return client_open_conf(cl, host, auth_file, o, NULL);
}

/* --- reading and checking ------------------------------------------------------------------ */

struct got {
        const struct ossb_range *ranges;
        size_t n;
        int *count;
        int bad;
        int fail_after; /* > 0: the callback fails (-E2BIG) on this call */
        int calls;
};

static int on_range(void *ud, size_t i, const void *data, size_t len)
{
        struct got *g = ud;
        g->calls++;
        if (g->fail_after > 0 && g->calls >= g->fail_after)
                return -E2BIG;
        if (i >= g->n) {
                g->bad++;
                return 0;
        }
        g->count[i]++;
        if ((int64_t) len != g->ranges[i].length || memcmp(data, blob + g->ranges[i].offset, len) != 0) {
                fprintf(stderr, "# range %zu (%" PRId64 "+%" PRId64 "): wrong bytes (len %zu)\n", i,
                        g->ranges[i].offset, g->ranges[i].length, len);
                g->bad++;
        }
        return 0;
}

/* Read and check every range arrived once with the right bytes; returns the read's result. */
static int read_check(struct client *cl, const struct ossb_range *r, size_t n, struct ossb_ranged_stats *acct,
                      bool *ret_ok)
{
        struct got g = { .ranges = r, .n = n, .count = calloc(n ? n : 1, sizeof(int)) };
        struct ossb_error *e = NULL;
        int k = ossb_ranged_read(cl->rr, digest, BLOB_LEN, r, n, on_range, &g, acct, &e);
        if (k < 0)
                fprintf(stderr, "# read: %s\n", e && e->msg ? e->msg : "?");
        bool ok = k >= 0 && g.bad == 0;
        for (size_t i = 0; ok && i < n; i++)
                ok = g.count[i] == 1;
        *ret_ok = ok;
        free(g.count);
        ossb_error_free(e);
        return k;
}

static int push_blob(void)
{
        blob = malloc(BLOB_LEN);
        if (!blob)
                return -ENOMEM;
        uint64_t x = 0x9E3779B97F4A7C15ULL;
        for (size_t i = 0; i < BLOB_LEN; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                blob[i] = (unsigned char) x;
        }
        _cleanup_free_ char *root = ossb_path_join(tmp, "store");
        struct ossb_store *s = NULL;
        struct ossb_error *e = NULL;
        struct client cl;
        int k = ossb_store_open(root, &s, &e);
        if (k >= 0)
                k = ossb_store_put(s, blob, BLOB_LEN, NULL, digest, &e);
        if (k >= 0)
                k = client_open(&cl, reg, NULL, NULL);
        if (k >= 0) {
                struct ossb_descriptor d = { .media_type = (char *) "application/octet-stream", .size = BLOB_LEN };
                memcpy(d.digest, digest, sizeof(d.digest));
                k = ossb_repo_push_blobs(cl.repo, s, &d, 1, &e);
                client_close(&cl);
        }
        if (k < 0)
                fprintf(stderr, "# push: %s\n", e && e->msg ? e->msg : "?");
        ossb_error_free(e);
        ossb_store_free(s);
        return k;
}

/* --- tests --------------------------------------------------------------------------------- */

static void test_direct_multi(void)
{
        struct client cl;
        ASSERT(client_open(&cl, reg, NULL, NULL) == 0);
        const struct ossb_range r[] = {
                { 2 * 1024 * 1024 + 7, 70000 }, { 0, 100 }, { 1000, 50 }, { 1024 * 1024, 4096 }, { BLOB_LEN - 10, 10 },
        };
        bool ok = false;
        struct ossb_ranged_stats st;
        int k = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok);
        ossb_ranged_get_stats(cl.rr, &st);
        const struct ossb_range r2[] = { { 500000, 1000 }, { 3000000, 3000 } };
        int k2 = read_check(&cl, r2, ELEMENTSOF(r2), NULL, &ok);
        struct ossb_ranged_stats st2;
        ossb_ranged_get_stats(cl.rr, &st2);
        client_close(&cl);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok);
        ASSERT_INTEQ(st.resolves, 1);
        ASSERT_INTEQ(st.requests, 2); /* resolve + one multi-range request */
        ASSERT_INTEQ(st.ranges, 5);
        ASSERT_INTEQ(st.whole_blobs, 0);
        ASSERT_INTEQ(st.multi_fallbacks, 0);
        ASSERT(st.bytes >= 100 + 1050 + 4096 + 70000 + 10 && st.bytes < 200000);
        ASSERT_INTEQ(st2.resolves, 1); /* kept */
        ASSERT_INTEQ(st2.requests, 3);
}

static void test_merge_spans(void)
{
        struct client cl;
        struct logq q;
        bool ok1 = false, ok2 = false;
        ASSERT(proxy_mode("{}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range close_r[] = { { 100, 10 }, { 20000, 10 }, { 60000, 100 } };
        int k1 = read_check(&cl, close_r, ELEMENTSOF(close_r), NULL, &ok1);
        int l1 = proxy_log("/blobs/", 206, &q);
        struct logq q1 = q;
        const struct ossb_range far_r[] = { { 100, 10 }, { 1000000, 10 }, { 2000000, 100 } };
        int k2 = read_check(&cl, far_r, ELEMENTSOF(far_r), NULL, &ok2);
        int l2 = proxy_log("/blobs/", 206, &q);
        client_close(&cl);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT(l1 == 0 && l2 == 0);
        ASSERT_INTEQ(q1.n, 2); /* resolve, one span */
        ASSERT_STREQ(q1.last_range, "bytes=100-60099");
        ASSERT_INTEQ(q.n, 3);
        ASSERT_STREQ(q.last_range, "bytes=100-109,1000000-1000009,2000000-2000099");
}

static void test_many_ranges(void)
{
        struct client cl;
        struct ossb_ranged_opts o = { .merge_gap = 1000, .max_spans = 64 };
        ASSERT(client_open(&cl, reg, NULL, &o) == 0);
        size_t n = 300;
        struct ossb_range *r = calloc(n, sizeof(*r));
        ASSERT(r);
        for (size_t i = 0; i < n; i++)
                r[n - 1 - i] = (struct ossb_range) { (int64_t) i * 9000 + 17, 100 + (int64_t) (i % 7) };
        bool ok = false;
        struct ossb_ranged_stats acct = { 0 }, st;
        int k = read_check(&cl, r, n, &acct, &ok);
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        free(r);
        ASSERT_INTEQ(k, 0);
        ASSERT(ok);
        ASSERT_INTEQ(st.requests, 1 + 5); /* ceil(300 / 64) multi-range requests */
        ASSERT_INTEQ(acct.requests, st.requests);
        ASSERT_INTEQ(acct.bytes, st.bytes);
        ASSERT_INTEQ(acct.ranges, 300);
}

static void test_edge_ranges(void)
{
        struct client cl;
        ASSERT(client_open(&cl, reg, NULL, NULL) == 0);
        const struct ossb_range r[] = {
                { 5000, 1000 }, { 5500, 1000 }, { 5000, 1000 }, { 7000, 0 }, { BLOB_LEN, 0 },
                { BLOB_LEN - 1, 1 }, { 5200, 10 }, { 0, BLOB_LEN },
        };
        bool ok = false;
        int k = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok);
        const struct ossb_range z[] = { { 0, 0 } };
        struct ossb_ranged_stats st;
        int kz = read_check(&cl, z, 1, NULL, &ok);
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ASSERT_INTEQ(k, 0);
        ASSERT_INTEQ(kz, 0);
        ASSERT(ok);
        ASSERT_INTEQ(st.requests, 2);
}

static void test_errors(void)
{
        struct client cl;
        ASSERT(client_open(&cl, reg, NULL, NULL) == 0);
        struct ossb_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *e5 = NULL;
        int counts[4] = { 0 };
        const struct ossb_range r[] = { { 0, 10 }, { 2000000, 10 } };
        const struct ossb_range past[] = { { BLOB_LEN - 5, 10 } };
        struct got g = { .ranges = r, .n = 2, .count = counts };
        int k1 = ossb_ranged_read(cl.rr, digest, BLOB_LEN, past, 1, on_range, &g, NULL, &e1);
        int k2 = ossb_ranged_read(cl.rr, "sha256:abc", BLOB_LEN, r, 2, on_range, &g, NULL, &e2);
        const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
        int k3 = ossb_ranged_read(cl.rr, missing, BLOB_LEN, r, 2, on_range, &g, NULL, &e3);
        int k4 = ossb_ranged_read(cl.rr, digest, BLOB_LEN + 1, r, 2, on_range, &g, NULL, &e4);
        g.fail_after = 1;
        int k5 = ossb_ranged_read(cl.rr, digest, BLOB_LEN, r, 2, on_range, &g, NULL, &e5);
        client_close(&cl);
        ASSERT_INTEQ(k1, -EINVAL);
        ASSERT_INTEQ(k2, -EINVAL);
        ASSERT_INTEQ(k3, -ENOENT);
        ASSERT(e3 && strstr(e3->msg, "not found") && strstr(e3->msg, REPO) && e3->exit_code == OSSB_EXIT_REGISTRY);
        ASSERT_INTEQ(k4, -EBADMSG);
        ASSERT(e4 && strstr(e4->msg, "descriptor says"));
        ASSERT_INTEQ(k5, -E2BIG);
        ASSERT(e5 && e5->msg);
        ossb_error_free(e1);
        ossb_error_free(e2);
        ossb_error_free(e3);
        ossb_error_free(e4);
        ossb_error_free(e5);
}

/* Through the proxy in `mode`: two reads of far-apart ranges; checks the fallback counters and
 * that the second read sends no multi-range request. */
static void fallback_case(const char *mode, int want_fallbacks, int want_whole)
{
        struct client cl;
        struct logq q1, q2;
        bool ok1 = false, ok2 = false;
        ASSERT(proxy_mode(mode) == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range r[] = { { 10, 100 }, { 1500000, 5000 }, { 3000000, 10 } };
        int k1 = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok1);
        ASSERT(proxy_log("/blobs/", 0, &q1) == 0);
        const struct ossb_range r2[] = { { 20, 100 }, { 1600000, 5000 } };
        int k2 = read_check(&cl, r2, ELEMENTSOF(r2), NULL, &ok2);
        ASSERT(proxy_log("/blobs/", 0, &q2) == 0);
        struct ossb_ranged_stats st;
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT_INTEQ(st.multi_fallbacks, want_fallbacks);
        ASSERT_INTEQ(st.whole_blobs, want_whole);
        ASSERT_INTEQ(q2.multi, q1.multi); /* learnt: no multi-range request in the second read */
        ASSERT(st.bytes < BLOB_LEN / 4);
}

static void test_multi_400(void)
{
        fallback_case("{\"multi\": \"400\"}", 1, 0);
}

static void test_multi_first_only(void)
{
        fallback_case("{\"multi\": \"first\"}", 1, 0);
}

static void test_multi_whole_blob(void)
{
        fallback_case("{\"multi\": \"full\"}", 1, 1);
}

static void test_no_range(void)
{
        struct client cl;
        bool ok1 = false, ok2 = false;
        ASSERT(proxy_mode("{\"norange\": true}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range early[] = { { 5000, 100 }, { 10, 100 } };
        int k1 = read_check(&cl, early, ELEMENTSOF(early), NULL, &ok1);
        struct ossb_ranged_stats st1, st2;
        ossb_ranged_get_stats(cl.rr, &st1);
        const struct ossb_range late[] = { { BLOB_LEN - 100, 100 }, { 2000000, 1000 }, { 1000, 10 } };
        int k2 = read_check(&cl, late, ELEMENTSOF(late), NULL, &ok2);
        ossb_ranged_get_stats(cl.rr, &st2);
        client_close(&cl);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT(st1.bytes < BLOB_LEN / 2); /* stopped once the early ranges arrived */
        ASSERT_INTEQ(st1.resolves, 1);
        ASSERT(st2.bytes - st1.bytes >= BLOB_LEN - 1000); /* the whole blob, once */
        ASSERT(st2.bytes - st1.bytes <= BLOB_LEN);
        ASSERT_INTEQ(st2.requests - st1.requests, 1);
        ASSERT_INTEQ(st2.resolves, 1);
}

static char *auth_file(void)
{
        char *path = ossb_path_join(tmp, "auth.json");
        char text[256];
        /* alice:alice-secret */
        snprintf(text, sizeof(text), "{\"auths\": {\"%s\": {\"auth\": \"YWxpY2U6YWxpY2Utc2VjcmV0\"}}}", proxy);
        if (!path || ossb_write_file_atomic(path, text, strlen(text), 0600, NULL) < 0) {
                free(path);
                return NULL;
        }
        return path;
}

static void test_redirect_auth(void)
{
        struct client cl;
        struct logq redirects, storage, leaks, unauth;
        bool ok1 = false, ok2 = false;
        _cleanup_free_ char *af = auth_file();
        ASSERT(af);
        ASSERT(proxy_mode("{\"auth\": true, \"redirect\": true}") == 0);
        ASSERT(client_open(&cl, proxy, af, NULL) == 0);
        const struct ossb_range r[] = { { 10, 100 }, { 1500000, 5000 }, { 3000000, 10 } };
        int k1 = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok1);
        const struct ossb_range r2[] = { { 20, 100 }, { 1600000, 5000 } };
        int k2 = read_check(&cl, r2, ELEMENTSOF(r2), NULL, &ok2);
        client_close(&cl);
        ASSERT(proxy_log("/blobs/", 307, &redirects) == 0);
        ASSERT(proxy_log("/_storage/", 0, &storage) == 0);
        ASSERT(proxy_log("/_storage/", 400, &leaks) == 0);
        ASSERT(proxy_log("/blobs/", 401, &unauth) == 0);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT_INTEQ(redirects.n, 1); /* resolved once, the storage URL reused */
        ASSERT_INTEQ(unauth.n, 1); /* the first request: then with credentials */
        ASSERT_INTEQ(storage.n, 3);       /* resolve's bytes=0-1, one request per read */
        ASSERT_INTEQ(storage.with_auth, 0);
        ASSERT_INTEQ(leaks.n, 0);
        ASSERT_INTEQ(storage.multi, 2);
}

static void test_expired_url(void)
{
        struct client cl;
        struct logq redirects, refused;
        bool ok1 = false, ok2 = false;
        ASSERT(proxy_mode("{\"redirect\": true}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range r[] = { { 10, 100 }, { 1500000, 5000 } };
        int k1 = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok1);
        _cleanup_free_ char *x = http("POST", "/_ctl/expire", "");
        int k2 = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok2);
        struct ossb_ranged_stats st;
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ASSERT(x);
        ASSERT(proxy_log("/blobs/", 307, &redirects) == 0);
        ASSERT(proxy_log("/_storage/", 403, &refused) == 0);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT_INTEQ(refused.n, 1);
        ASSERT_INTEQ(redirects.n, 2);
        ASSERT_INTEQ(st.resolves, 2);
}

static void test_resume_after_break(void)
{
        struct client cl;
        struct logq q;
        bool ok1 = false, ok2 = false;
        ASSERT(proxy_mode("{\"break\": 1}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range r[] = { { 1000, 1000000 } };
        int k1 = read_check(&cl, r, 1, NULL, &ok1);
        ASSERT(proxy_log("/blobs/", 206, &q) == 0);
        struct logq single = q;
        ASSERT(proxy_mode("{\"break\": 1}") == 0);
        const struct ossb_range m[] = { { 10, 300000 }, { 2000000, 300000 } };
        int k2 = read_check(&cl, m, 2, NULL, &ok2);
        ASSERT(proxy_log("/blobs/", 206, &q) == 0);
        client_close(&cl);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT_INTEQ(single.n, 3); /* resolve, the broken answer, the rest */
        /* the retry asks only for what is missing: it starts past the first byte */
        ASSERT(strncmp(single.last_range, "bytes=1000-", 11) != 0);
        ASSERT(strncmp(single.last_range, "bytes=", 6) == 0);
        ASSERT_INTEQ(q.n, 2); /* the broken multipart answer, then the rest */
        ASSERT(strncmp(q.last_range, "bytes=10-", 9) != 0);
}

static void test_adapters(void)
{
        struct client cl;
        ASSERT(client_open(&cl, reg, NULL, NULL) == 0);
        struct ossb_ranged_stats acct = { 0 };
        struct ossb_ranged_blob b = { .rr = cl.rr, .digest = digest, .size = BLOB_LEN, .acct = &acct };
        const struct ossb_range r[] = { { 77, 1000 }, { 3000000, 3 } };
        int counts[2] = { 0 }, counts2[2] = { 0 };
        struct got g = { .ranges = r, .n = 2, .count = counts };
        struct got g2 = { .ranges = r, .n = 2, .count = counts2 };
        struct ossb_error *e = NULL;
        int k1 = ossb_ranged_blob_fetch(&b, r, 2, on_range, &g, &e);
        int k2 = ossb_repo_read_ranges(cl.repo, digest, BLOB_LEN, r, 2, on_range, &g2, &e);
        struct ossb_ranged_stats st;
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ossb_error_free(e);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(g.bad == 0 && g2.bad == 0 && counts[0] == 1 && counts[1] == 1 && counts2[0] == 1 && counts2[1] == 1);
        ASSERT_INTEQ(acct.bytes, st.bytes);
        ASSERT_INTEQ(acct.ranges, 2);
}

/* Mirrors first, as pulls: one that does not have the blob is passed over for the origin; one
 * that has it serves every range. */
static void test_mirrors(void)
{
        char conf[512];
        struct client cl;
        struct logq via_mirror, at_mirror;
        bool ok1 = false, ok2 = false;
        const struct ossb_range r[] = { { 10, 100 }, { 2000000, 100 } };
        ASSERT(proxy_mode("{}") == 0);
        snprintf(conf, sizeof(conf), "[[registry]]\nprefix = \"%s\"\nlocation = \"%s\"\n[[registry.mirror]]\n"
                 "location = \"%s/elsewhere\"\n", reg, reg, proxy);
        ASSERT(client_open_conf(&cl, reg, NULL, NULL, conf) == 0);
        int k1 = read_check(&cl, r, 2, NULL, &ok1);
        client_close(&cl);
        ASSERT(proxy_log("/v2/elsewhere/", 404, &via_mirror) == 0);
        ASSERT(proxy_mode("{}") == 0);
        snprintf(conf, sizeof(conf), "[[registry]]\nprefix = \"%s\"\nlocation = \"%s\"\n[[registry.mirror]]\n"
                 "location = \"%s\"\n", reg, reg, proxy);
        ASSERT(client_open_conf(&cl, reg, NULL, NULL, conf) == 0);
        int k2 = read_check(&cl, r, 2, NULL, &ok2);
        client_close(&cl);
        ASSERT(proxy_log("/blobs/", 206, &at_mirror) == 0);
        ASSERT_INTEQ(k1, 0);
        ASSERT_INTEQ(k2, 0);
        ASSERT(ok1 && ok2);
        ASSERT_INTEQ(via_mirror.n, 1); /* asked the mirror once, then the origin */
        ASSERT_INTEQ(at_mirror.n, 2);  /* resolve and the ranges, all from the mirror */
}

static void test_forget(void)
{
        struct client cl;
        bool ok = false;
        ASSERT(client_open(&cl, reg, NULL, NULL) == 0);
        const struct ossb_range r[] = { { 10, 100 } };
        int k1 = read_check(&cl, r, 1, NULL, &ok);
        ossb_ranged_forget(cl.rr, digest);
        int k2 = read_check(&cl, r, 1, NULL, &ok);
        struct ossb_ranged_stats st;
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ASSERT(k1 == 0 && k2 == 0 && ok);
        ASSERT_INTEQ(st.resolves, 2);
}

/* Multipart answers as other servers write them: preamble, quoted boundary, padding, parts in
 * any order; and one whose parts do not say where they belong. */
static void test_crafted_multipart(void)
{
        struct client cl;
        bool ok = false;
        ASSERT(proxy_mode("{\"craft\": \"ok\"}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        const struct ossb_range r[] = { { 10, 100 }, { 1500000, 5000 }, { 3000000, 10 } };
        int k1 = read_check(&cl, r, ELEMENTSOF(r), NULL, &ok);
        struct ossb_ranged_stats st;
        ossb_ranged_get_stats(cl.rr, &st);
        client_close(&cl);
        ASSERT_INTEQ(k1, 0);
        ASSERT(ok);
        ASSERT_INTEQ(st.requests, 2);
        ASSERT_INTEQ(st.multi_fallbacks, 0);
        ASSERT(proxy_mode("{\"craft\": \"bad\"}") == 0);
        ASSERT(client_open(&cl, proxy, NULL, NULL) == 0);
        struct ossb_error *e = NULL;
        int counts[3] = { 0 };
        struct got g = { .ranges = r, .n = 3, .count = counts };
        int k2 = ossb_ranged_read(cl.rr, digest, BLOB_LEN, r, 3, on_range, &g, NULL, &e);
        client_close(&cl);
        bool named = e && strstr(e->msg, "multipart") && strstr(e->msg, digest);
        ossb_error_free(e);
        ASSERT_INTEQ(k2, -EPROTO);
        ASSERT(named);
        ASSERT_INTEQ(g.bad, 0);
}

int main(void)
{
        reg = getenv("OSSB_TEST_REGISTRY");
        proxy = getenv("OSSB_TEST_PROXY");
        tmp = getenv("OSSB_TEST_TMP");
        if (!reg || !proxy || !tmp) {
                printf("1..0 # SKIP run through test-ranged.sh (needs the test registry)\n");
                return 77;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (push_blob() < 0) {
                printf("Bail out! cannot push the test blob\n");
                return 1;
        }
        RUN_TEST(test_direct_multi);
        RUN_TEST(test_merge_spans);
        RUN_TEST(test_many_ranges);
        RUN_TEST(test_edge_ranges);
        RUN_TEST(test_errors);
        RUN_TEST(test_multi_400);
        RUN_TEST(test_multi_first_only);
        RUN_TEST(test_multi_whole_blob);
        RUN_TEST(test_no_range);
        RUN_TEST(test_redirect_auth);
        RUN_TEST(test_expired_url);
        RUN_TEST(test_resume_after_break);
        RUN_TEST(test_adapters);
        RUN_TEST(test_mirrors);
        RUN_TEST(test_forget);
        RUN_TEST(test_crafted_multipart);
        free(blob);
        curl_global_cleanup();
        TAP_END();
}
