/* tests/unit/registry-client-fixtures.h - the fixtures of test-registry-client.c: the test
 * registries named by the environment, clients and stores, images made and pushed, the
 * fault server's control URL and request log, docker config files, and message checks.
 * Included by test-registry-client.c only (one translation unit, like tap.h). */
#ifndef OSSB_TESTS_REGISTRY_CLIENT_FIXTURES_H
#define OSSB_TESTS_REGISTRY_CLIENT_FIXTURES_H


static const char *reg_plain, *reg_fault, *reg_basic, *reg_tls, *certs_dir, *tmp;
static int store_seq;

/* --- helpers ------------------------------------------------------------------------------- */

struct events {
        int start, progress, retry, done, exists, mounted;
        char last_retry[512];
        bool interrupt_on_start;
};

static void on_event(void *ud, const struct ossb_transfer_event *ev)
{
        struct events *e = ud;
        switch (ev->kind) {
        case OSSB_TRANSFER_START:
                e->start++;
                if (e->interrupt_on_start)
                        raise(SIGINT);
                break;
        case OSSB_TRANSFER_PROGRESS:
                e->progress++;
                break;
        case OSSB_TRANSFER_RETRY:
                e->retry++;
                snprintf(e->last_retry, sizeof(e->last_retry), "%s", ev->message ? ev->message : "");
                break;
        case OSSB_TRANSFER_DONE:
                e->done++;
                break;
        case OSSB_TRANSFER_EXISTS:
                e->exists++;
                break;
        case OSSB_TRANSFER_MOUNTED:
                e->mounted++;
                break;
        }
}

static int64_t ms_now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct ossb_regconf *conf_new(char *const *insecure, const char *cert_dir, const char *text)
{
        struct ossb_regconf *c = NULL;
        if (ossb_regconf_new(insecure, NULL, NULL, cert_dir, &c, NULL) < 0)
                return NULL;
        if (text && ossb_regconf_parse(c, "test.conf", text, strlen(text), NULL) < 0) {
                ossb_regconf_free(c);
                return NULL;
        }
        return c;
}

struct client {
        struct ossb_regconf *conf;
        struct ossb_registry *r;
        struct events ev;
};

static int client_open(struct client *cl, const char *conf_text, int attempts, int64_t budget_ms, int64_t chunk)
{
        memset(cl, 0, sizeof(*cl));
        cl->conf = conf_new(NULL, NULL, conf_text);
        if (!cl->conf)
                return -EINVAL;
        struct ossb_registry_opts o = {
                .conf = cl->conf, .max_attempts = attempts, .retry_budget_ms = budget_ms, .chunk_size = chunk,
                .progress = on_event, .progress_userdata = &cl->ev,
        };
        return ossb_registry_new(&o, &cl->r, NULL);
}

static void client_close(struct client *cl)
{
        ossb_registry_free(cl->r);
        ossb_regconf_free(cl->conf);
        cl->r = NULL;
        cl->conf = NULL;
}

static struct ossb_store *store_new(void)
{
        char name[64];
        snprintf(name, sizeof(name), "store-%d", ++store_seq);
        _cleanup_free_ char *root = ossb_path_join(tmp, name);
        struct ossb_store *s = NULL;
        if (!root || ossb_store_open(root, &s, NULL) < 0)
                return NULL;
        return s;
}

static int count_dir(const char *dir)
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

static int ingest_count(struct ossb_store *s)
{
        _cleanup_free_ char *d = ossb_path_join(ossb_store_root(s), "ingest");
        return d ? count_dir(d) : -1;
}

/* A blob of `size` pseudo-random bytes (differs per seed) in the store. */
static int make_blob(struct ossb_store *s, size_t size, unsigned seed, const char *media_type,
                     struct ossb_descriptor *d)
{
        _cleanup_free_ unsigned char *buf = malloc(size ? size : 1);
        uint64_t x = 0x9E3779B97F4A7C15ULL * (seed + 1) + (uint64_t) time(NULL);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < size; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[i] = (unsigned char) x;
        }
        memset(d, 0, sizeof(*d));
        d->media_type = strdup(media_type);
        d->size = (int64_t) size;
        return ossb_store_put(s, buf, size, NULL, d->digest, NULL);
}

static struct ossb_reference *ref_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct ossb_reference *ref_of(const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&s, fmt, ap);
        va_end(ap);
        struct ossb_reference *r = NULL;
        if (k < 0)
                return NULL;
        if (ossb_reference_parse(s, &r, NULL) < 0)
                r = NULL;
        free(s);
        return r;
}

/* An OCI manifest for config + layers. */
static char *manifest_json(const struct ossb_descriptor *config, const struct ossb_descriptor *layers, size_t n)
{
        json_object *m = json_object_new_object(), *arr = json_object_new_array();
        json_object_object_add(m, "schemaVersion", json_object_new_int(2));
        json_object_object_add(m, "mediaType", json_object_new_string(OSSB_MT_OCI_MANIFEST));
        json_object_object_add(m, "config", ossb_descriptor_to_json(config));
        for (size_t i = 0; i < n; i++)
                json_object_array_add(arr, ossb_descriptor_to_json(&layers[i]));
        json_object_object_add(m, "layers", arr);
        char *s = strdup(ossb_json_to_string(m));
        json_object_put(m);
        return s;
}

/* Image = config + layers pushed to ref's repository under ref's tag; returns the manifest. */
struct image {
        struct ossb_descriptor config;
        struct ossb_descriptor layers[4];
        size_t n_layers;
        char *manifest;
        char digest[OSSB_DIGEST_STR_LEN + 1];
};

static void image_clear(struct image *im)
{
        ossb_descriptor_clear(&im->config);
        for (size_t i = 0; i < im->n_layers; i++)
                ossb_descriptor_clear(&im->layers[i]);
        free(im->manifest);
        memset(im, 0, sizeof(*im));
}

static int image_make(struct ossb_store *s, const size_t *sizes, size_t n, unsigned seed, struct image *im)
{
        memset(im, 0, sizeof(*im));
        int k = make_blob(s, 200, seed * 100, OSSB_MT_OCI_CONFIG, &im->config);
        for (size_t i = 0; k >= 0 && i < n; i++) {
                k = make_blob(s, sizes[i], seed * 100 + (unsigned) i + 1, OSSB_MT_OCI_LAYER_GZIP, &im->layers[i]);
                im->n_layers++;
        }
        if (k < 0)
                return k;
        im->manifest = manifest_json(&im->config, im->layers, n);
        if (!im->manifest)
                return -ENOMEM;
        return ossb_sha256_digest(im->manifest, strlen(im->manifest), im->digest);
}

static int image_push(struct ossb_registry *r, struct ossb_store *s, struct image *im, const char *ref,
                      struct ossb_error **err)
{
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        if (!rf)
                return -EINVAL;
        int k = ossb_repo_open(r, rf, true, &repo, err);
        if (k >= 0)
                k = ossb_repo_push_blobs(repo, s, &im->config, 1, err);
        if (k >= 0)
                k = ossb_repo_push_blobs(repo, s, im->layers, im->n_layers, err);
        if (k >= 0)
                k = ossb_repo_put_manifest(repo, rf->tag ? rf->tag : im->digest, OSSB_MT_OCI_MANIFEST, im->manifest,
                                           strlen(im->manifest), err);
        ossb_repo_free(repo);
        ossb_reference_free(rf);
        return k;
}

/* --- the fault server's control API ------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *ud)
{
        return ossb_strbuf_append_n(ud, data, size * n) < 0 ? 0 : size * n;
}

static int control(const char *path, const char *post, char **ret)
{
        CURL *e = curl_easy_init();
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        char url[256];
        long code = 0;
        snprintf(url, sizeof(url), "http://%s%s", reg_fault, path);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &sb);
        if (post)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, post);
        CURLcode c = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(e);
        if (c != CURLE_OK || code != 200) {
                ossb_strbuf_free(&sb);
                return -EIO;
        }
        if (ret)
                *ret = ossb_strbuf_steal(&sb);
        else
                ossb_strbuf_free(&sb);
        return 0;
}

static int plan(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int plan(const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        k = control("/_fault/plan", s, NULL);
        free(s);
        return k;
}

/* Requests the fault server saw with this method whose path contains `sub` and (when field is
 * given) whose field equals value (value NULL: the field is null). */
static int seen(const char *method, const char *sub, const char *field, const char *value)
{
        _cleanup_free_ char *log = NULL;
        if (control("/_fault/log", NULL, &log) < 0)
                return -1;
        json_object *a = json_tokener_parse(log);
        int n = 0;
        for (size_t i = 0; a && i < json_object_array_length(a); i++) {
                json_object *o = json_object_array_get_idx(a, i), *v = NULL;
                json_object_object_get_ex(o, "method", &v);
                if (method && !streq(json_object_get_string(v), method))
                        continue;
                json_object_object_get_ex(o, "path", &v);
                if (sub && !strstr(json_object_get_string(v), sub))
                        continue;
                if (field) {
                        json_object_object_get_ex(o, field, &v);
                        const char *s = v ? json_object_get_string(v) : NULL;
                        if (value ? !s || !streq(s, value) : s != NULL)
                                continue;
                }
                n++;
        }
        json_object_put(a);
        return n;
}

/* DOCKER_CONFIG pointing at a config.json with `auths` (JSON object text). */
static char *docker_config(const char *name, const char *auths_json)
{
        char *dir = NULL;
        if (asprintf(&dir, "%s/%s", tmp, name) < 0)
                return NULL;
        _cleanup_free_ char *file = ossb_path_join(dir, "config.json");
        _cleanup_free_ char *text = NULL;
        if (!file || ossb_mkdir_p(dir, 0700) < 0 || asprintf(&text, "{\"auths\": %s}", auths_json) < 0 ||
            ossb_write_file_atomic(file, text, strlen(text), 0600, NULL) < 0) {
                free(dir);
                return NULL;
        }
        setenv("DOCKER_CONFIG", dir, 1);
        return dir;
}

static void no_docker_config(void)
{
        _cleanup_free_ char *d = ossb_path_join(tmp, "no-docker-config");
        setenv("DOCKER_CONFIG", d, 1);
}

static char *b64(const char *s)
{
        const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = strlen(s), o = 0;
        char *out = malloc(4 * (n / 3 + 1) + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned char) s[i] << 16 | (i + 1 < n ? (unsigned char) s[i + 1] << 8 : 0) |
                             (i + 2 < n ? (unsigned char) s[i + 2] : 0);
                out[o++] = t[(v >> 18) & 63];
                out[o++] = t[(v >> 12) & 63];
                out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < n ? t[v & 63] : '=';
        }
        out[o] = 0;
        return out;
}

static int ready_count;
static int on_ready(void *ud, size_t index)
{
        ready_count++;
        return 0;
}

static int fetch(struct ossb_registry *r, struct ossb_store *s, const char *ref, const struct ossb_descriptor *d,
                 size_t n, struct ossb_error **err)
{
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        if (!rf)
                return -EINVAL;
        int k = ossb_repo_open(r, rf, false, &repo, err);
        if (k >= 0)
                k = ossb_repo_fetch_blobs(repo, s, d, n, on_ready, NULL, err);
        ossb_repo_free(repo);
        ossb_reference_free(rf);
        return k;
}

static int get_manifest(struct ossb_registry *r, const char *ref, struct ossb_fetched_manifest *m,
                        struct ossb_error **err)
{
        struct ossb_reference *rf = ref_of("%s", ref);
        struct ossb_repo *repo = NULL;
        if (!rf)
                return -EINVAL;
        int k = ossb_repo_open(r, rf, false, &repo, err);
        if (k >= 0)
                k = ossb_repo_get_manifest(repo, ossb_reference_object(rf), m, err);
        ossb_repo_free(repo);
        ossb_reference_free(rf);
        return k;
}

/* Push an image to the plain registry (a fresh client). */
static int push_plain(struct ossb_store *s, struct image *im, const char *repo_tag)
{
        struct client cl;
        char ref[256];
        snprintf(ref, sizeof(ref), "%s/%s", reg_plain, repo_tag);
        int k = client_open(&cl, NULL, 0, 0, 0);
        if (k >= 0)
                k = image_push(cl.r, s, im, ref, NULL);
        client_close(&cl);
        return k;
}

static const char *msg(const struct ossb_error *e)
{
        return e && e->msg ? e->msg : "(no error)";
}

static bool contains(const struct ossb_error *e, const char *s)
{
        bool ok = e && e->msg && strstr(e->msg, s);
        if (!ok)
                fprintf(stderr, "# message `%s` lacks `%s`\n", msg(e), s);
        return ok;
}

#endif
