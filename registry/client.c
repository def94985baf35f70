/* registry/client.c - the registry client and its repository sessions: hosts (scheme, TLS
 * files), the credential cache, endpoints (mirrors, then the origin), manifests (GET with
 * verification, PUT) and blob HEAD.  Requests go through client-call.c; blob transfers are in
 * client-blobs.c.  See client.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "registry/client-internal.h"

#define DEFAULT_CHUNK_SIZE (64LL * 1024 * 1024)
#define SYSTEM_CA_DIR "/etc/ssl/certs"

static const char MANIFEST_ACCEPT[] = "Accept: " OSSB_MT_OCI_MANIFEST ", " OSSB_MT_OCI_INDEX ", "
                                      OSSB_MT_DOCKER_MANIFEST ", " OSSB_MT_DOCKER_LIST;

int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t registry_random(struct ossb_registry *r)
{
        /* xorshift64*: jitter only, not security */
        uint64_t x = r->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r->rng = x;
        return x * 0x2545F4914F6CDD1DULL;
}

void registry_emit(struct ossb_registry *r, enum ossb_transfer_kind kind, bool push, const char *digest, int64_t done,
                   int64_t total, const char *message)
{
        if (!r->progress)
                return;
        struct ossb_transfer_event ev = {
                .kind = kind, .push = push, .digest = digest, .done = done, .total = total, .message = message,
        };
        r->progress(r->progress_userdata, &ev);
}

/* --- the client ---------------------------------------------------------------------------- */

static int64_t env_chunk_size(void)
{
        const char *v = secure_getenv("OSSB_PUSH_CHUNK_SIZE");
        if (!v || !*v)
                return DEFAULT_CHUNK_SIZE;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || *end || n <= 0) {
                log_debug("ignoring OSSB_PUSH_CHUNK_SIZE=%s (not a positive number of bytes)", v);
                return DEFAULT_CHUNK_SIZE;
        }
        return n;
}

int ossb_registry_new(const struct ossb_registry_opts *opts, struct ossb_registry **ret, struct ossb_error **err)
{
        if (!opts || !opts->conf)
                return ossb_error_set(err, -EINVAL, "registry client: no registries configuration given");
        struct ossb_registry *r = calloc(1, sizeof(*r));
        if (!r)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        pthread_mutex_init(&r->lock, NULL);
        r->conf = opts->conf;
        r->max_parallel = opts->max_parallel > 0 ? opts->max_parallel : 4;
        r->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 6;
        r->retry_budget_ms = opts->retry_budget_ms > 0 ? opts->retry_budget_ms : 60000;
        r->chunk_size = opts->chunk_size > 0 ? opts->chunk_size : env_chunk_size();
        r->progress = opts->progress;
        r->progress_userdata = opts->progress_userdata;
        if (getrandom(&r->rng, sizeof(r->rng), GRND_NONBLOCK) != sizeof(r->rng))
                r->rng = (uint64_t) now_ms() * 0x9E3779B97F4A7C15ULL;
        r->rng |= 1;
        if (opts->auth_file && !(r->auth_file = strdup(opts->auth_file))) {
                ossb_registry_free(r);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        struct ossb_http_opts ho = {
                .user_agent = "ossb/" OSSB_VERSION,
                /* the blob transfers, plus room for a manifest or token request beside them */
                .max_host_connections = r->max_parallel + 2,
        };
        int k = ossb_http_new(&ho, &r->http, err);
        if (k < 0) {
                ossb_registry_free(r);
                return k;
        }
        *ret = r;
        return 0;
}

static void hosts_free(struct host *h)
{
        while (h) {
                struct host *next = h->next;
                free(h->name);
                free(h->ca_file);
                ossb_strv_free(h->cas);
                free(h->cert);
                free(h->key);
                free(h->realm);
                free(h->service);
                free(h);
                h = next;
        }
}

static void creds_free(struct cred_entry *c)
{
        while (c) {
                struct cred_entry *next = c->next;
                free(c->repository);
                ossb_credential_clear(&c->c);
                free(c);
                c = next;
        }
}

void ossb_registry_free(struct ossb_registry *r)
{
        if (!r)
                return;
        ossb_http_free(r->http);
        hosts_free(r->hosts);
        creds_free(r->creds);
        tokens_free(r->tokens);
        if (r->tmpdir) {
                ossb_rm_rf(r->tmpdir);
                free(r->tmpdir);
        }
        free(r->auth_file);
        pthread_mutex_destroy(&r->lock);
        free(r);
}

/* --- hosts and TLS ------------------------------------------------------------------------- */

struct host *registry_host(struct ossb_registry *r, const char *name, struct ossb_error **err)
{
        for (struct host *h = r->hosts; h; h = h->next)
                if (streq(h->name, name))
                        return h;
        struct host *h = calloc(1, sizeof(*h));
        if (!h || !(h->name = strdup(name))) {
                free(h);
                ossb_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        h->insecure = ossb_regconf_insecure(r->conf, name);
        h->next = r->hosts;
        r->hosts = h;
        return h;
}

static int make_tmpdir(struct ossb_registry *r, struct ossb_error **err)
{
        if (r->tmpdir)
                return 0;
        const char *base = secure_getenv("TMPDIR");
        _cleanup_free_ char *tmpl = ossb_path_join(base && *base ? base : "/tmp", "ossb-tls-XXXXXX");
        if (!tmpl)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!mkdtemp(tmpl))
                return ossb_error_set(err, -errno, "cannot create a temporary directory for CA files: %m");
        r->tmpdir = TAKE_PTR(tmpl);
        return 0;
}

/* Several CA files: one PEM bundle of all of them (libcurl takes one CAINFO file; the system
 * store stays in effect through its CAPATH). */
static int concat_cas(struct ossb_registry *r, struct host *h, struct ossb_error **err)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = make_tmpdir(r, err);
        for (size_t i = 0; k >= 0 && h->cas[i]; i++) {
                _cleanup_free_ char *pem = NULL;
                size_t len = 0;
                k = ossb_read_file(h->cas[i], 4 * 1024 * 1024, &pem, &len, err);
                if (k >= 0 && (ossb_strbuf_append_n(&sb, pem, len) < 0 || ossb_strbuf_append_c(&sb, '\n') < 0))
                        k = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        _cleanup_free_ char *file = NULL;
        if (k >= 0 && asprintf(&file, "%s/%s.pem", r->tmpdir, h->name) < 0)
                k = ossb_error_set(err, -ENOMEM, "out of memory");
        for (char *p = file ? strrchr(file, '/') + 1 : NULL; p && *p; p++)
                if (*p == ':' || *p == '[' || *p == ']')
                        *p = '_';
        if (k >= 0)
                k = ossb_write_file_atomic(file, sb.buf ? sb.buf : "", sb.len, 0600, err);
        ossb_strbuf_free(&sb);
        if (k < 0)
                return ossb_error_wrap(err, "TLS files for registry %s", h->name);
        h->ca_file = TAKE_PTR(file);
        return 0;
}

int host_tls(struct ossb_registry *r, struct host *h, struct ossb_http_tls *ret, struct ossb_error **err)
{
        if (!h->tls_loaded) {
                int k = ossb_regconf_tls_files(r->conf, h->name, &h->cas, &h->cert, &h->key, err);
                if (k < 0)
                        return ossb_error_wrap(err, "TLS files for registry %s", h->name);
                if (h->cas && h->cas[0] && !h->cas[1])
                        h->ca_file = strdup(h->cas[0]);
                else if (h->cas && h->cas[0])
                        k = concat_cas(r, h, err);
                if (k < 0)
                        return k;
                if (h->cas && h->cas[0] && !h->ca_file)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                h->tls_loaded = true;
        }
        *ret = (struct ossb_http_tls) { .ca_file = h->ca_file, .cert = h->cert, .key = h->key, .insecure = h->insecure };
        return 0;
}

char *host_ca_description(const struct host *h)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = ossb_strbuf_append(&sb, "system CAs (" SYSTEM_CA_DIR ")");
        for (size_t i = 0; k >= 0 && h->cas && h->cas[i]; i++)
                k = ossb_strbuf_appendf(&sb, " + %s", h->cas[i]);
        if (k < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

/* --- credentials --------------------------------------------------------------------------- */

int endpoint_cred(struct ossb_registry *r, struct endpoint *ep, const struct ossb_credential **ret,
                  struct ossb_error **err)
{
        if (ep->cred) {
                *ret = ep->cred;
                return 0;
        }
        for (struct cred_entry *c = r->creds; c; c = c->next)
                if (streq(c->repository, ep->repository)) {
                        *ret = ep->cred = &c->c;
                        return 0;
                }
        struct cred_entry *c = calloc(1, sizeof(*c));
        if (!c || !(c->repository = strdup(ep->repository))) {
                free(c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        int k = ossb_credentials_find(r->auth_file, ep->repository, &c->c, err);
        if (k < 0) {
                free(c->repository);
                free(c);
                ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                return k;
        }
        log_debug("credentials for %s: %s", ep->repository, c->c.username ? c->c.source : "none (anonymous)");
        c->next = r->creds;
        r->creds = c;
        *ret = ep->cred = &c->c;
        return 0;
}

/* --- sessions ------------------------------------------------------------------------------ */

static void endpoints_free(struct endpoint *eps, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(eps[i].host);
                free(eps[i].path);
                free(eps[i].repository);
        }
        free(eps);
}

void ossb_repo_free(struct ossb_repo *repo)
{
        if (!repo)
                return;
        endpoints_free(repo->eps, repo->n_eps);
        free(repo->name);
        free(repo);
}

const char *ossb_repo_name(const struct ossb_repo *repo)
{
        return repo->name;
}

/* "HOST[:PORT]/path" + rest ("/more/path" or "") -> an endpoint. */
static int add_endpoint(struct ossb_repo *repo, const char *location, const char *rest, bool mirror)
{
        _cleanup_free_ char *full = NULL;
        if (asprintf(&full, "%s%s", location, rest) < 0)
                return -ENOMEM;
        char *slash = strchr(full, '/');
        if (!slash || !slash[1])
                return -EINVAL;
        struct endpoint *n = realloc(repo->eps, (repo->n_eps + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        repo->eps = n;
        struct endpoint *ep = &n[repo->n_eps];
        memset(ep, 0, sizeof(*ep));
        ep->mirror = mirror;
        ep->repository = strdup(full);
        *slash = 0;
        /* Docker Hub's API is not served on its name */
        ep->host = strdup(streq(full, "docker.io") || streq(full, "index.docker.io") ? "registry-1.docker.io" : full);
        ep->path = strdup(slash + 1);
        repo->n_eps++;
        if (!ep->host || !ep->path || !ep->repository)
                return -ENOMEM;
        return 0;
}

static int build_endpoints(struct ossb_repo *repo, const struct ossb_regconf_registry *e, struct ossb_error **err)
{
        int k = 0;
        for (size_t i = 0; e && !repo->push && k >= 0 && i < e->n_mirrors; i++) {
                _cleanup_free_ char *loc = NULL;
                k = ossb_regconf_rewrite(e, e->mirrors[i].location, repo->name, &loc);
                if (k >= 0)
                        k = add_endpoint(repo, loc, "", true);
        }
        if (k >= 0 && e) {
                _cleanup_free_ char *loc = NULL;
                k = ossb_regconf_rewrite(e, e->location, repo->name, &loc);
                if (k >= 0)
                        k = add_endpoint(repo, loc, "", false);
        } else if (k >= 0)
                k = add_endpoint(repo, repo->name, "", false);
        if (k == -EINVAL)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, k, "registries configuration: cannot map %s to a "
                                                                   "repository (a location without a path?)", repo->name);
        if (k < 0)
                return ossb_error_set(err, k, "out of memory");
        return 0;
}

int ossb_repo_open(struct ossb_registry *r, const struct ossb_reference *ref, bool push, struct ossb_repo **ret,
                   struct ossb_error **err)
{
        struct ossb_repo *repo = calloc(1, sizeof(*repo));
        if (!repo)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        repo->r = r;
        repo->push = push;
        repo->name = ossb_reference_repository(ref);
        if (!repo->name) {
                ossb_repo_free(repo);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        const struct ossb_regconf_registry *e = ossb_regconf_match(r->conf, repo->name);
        if (e && e->blocked) {
                int k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES,
                                        "%s from %s is blocked by the registries configuration (prefix \"%s\")",
                                        push ? "pushing" : "pulling", repo->name, e->prefix);
                ossb_repo_free(repo);
                return k;
        }
        int k = build_endpoints(repo, e, err);
        if (k < 0) {
                ossb_repo_free(repo);
                return k;
        }
        for (size_t i = 0; i < repo->n_eps; i++)
                log_debug("registry: %s endpoint %zu: %s/%s%s", repo->name, i, repo->eps[i].host, repo->eps[i].path,
                          repo->eps[i].mirror ? " (mirror)" : "");
        *ret = repo;
        return 0;
}

/* --- manifests ----------------------------------------------------------------------------- */

static bool valid_tag(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128 || !(isalnum((unsigned char) s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
                        return false;
        return true;
}

static bool is_digest_ref(const char *s)
{
        return strncmp(s, "sha256:", 7) == 0;
}

static int check_object(const struct ossb_repo *repo, const char *tag_or_digest, struct ossb_error **err)
{
        if (is_digest_ref(tag_or_digest) ? ossb_digest_is_valid(tag_or_digest) : valid_tag(tag_or_digest))
                return 0;
        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "`%s` is not a valid tag or sha256 digest (for %s)",
                               tag_or_digest, repo->name);
}

static const char *object_sep(const char *tag_or_digest)
{
        return is_digest_ref(tag_or_digest) ? "@" : ":";
}

void ossb_fetched_manifest_clear(struct ossb_fetched_manifest *m)
{
        if (!m)
                return;
        free(m->data);
        free(m->media_type);
        memset(m, 0, sizeof(*m));
}

static bool generic_type(const char *ct)
{
        return !ct || !*ct || streq(ct, "application/json") || streq(ct, "text/plain") ||
               streq(ct, "application/octet-stream") || streq(ct, "binary/octet-stream");
}

/* The media type: Content-Type unless generic, else the body's mediaType, else a guess from
 * its shape (an index lists "manifests"). */
static char *manifest_type(const char *content_type, const char *data, size_t len)
{
        _cleanup_free_ char *ct = content_type ? strndup(content_type, strcspn(content_type, "; \t")) : NULL;
        if (!generic_type(ct))
                return TAKE_PTR(ct);
        json_object *o = NULL, *v = NULL;
        char *ret = NULL;
        if (ossb_json_parse(data, len, OSSB_MANIFEST_MAX_SIZE, &o, NULL) >= 0 && json_object_is_type(o, json_type_object)) {
                if (json_object_object_get_ex(o, "mediaType", &v) && json_object_is_type(v, json_type_string))
                        ret = strdup(json_object_get_string(v));
                else
                        ret = strdup(json_object_object_get_ex(o, "manifests", NULL) ? OSSB_MT_OCI_INDEX
                                                                                     : OSSB_MT_OCI_MANIFEST);
        } else
                ret = strdup(OSSB_MT_OCI_MANIFEST);
        json_object_put(o);
        return ret;
}

static int not_found(struct call *c, const char *name, const char *obj, struct ossb_error **err)
{
        size_t len = 0;
        const char *body = ossb_http_xfer_body(c->x, &len);
        _cleanup_free_ char *codes = distribution_errors(body, len, true);
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "manifest for %s%s%s not found (%s)", name,
                               object_sep(obj), obj, codes ? codes : "HTTP 404");
}

static int verify_manifest(const struct ossb_repo *repo, struct endpoint *ep, const char *obj, const char *data,
                           size_t len, const char *header, char digest[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err)
{
        if (ossb_sha256_digest(data, len, digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (is_digest_ref(obj) && !streq(obj, digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "manifest %s from %s does not match its digest (the bytes served hash to %s)",
                                       obj, ep->repository, digest);
        if (header && strncmp(header, "sha256:", 7) == 0 && !streq(header, digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "manifest %s%s%s: %s says Docker-Content-Digest %s, the bytes hash to %s",
                                       repo->name, object_sep(obj), obj, ep->host, header, digest);
        return 0;
}

static int get_from(struct ossb_repo *repo, struct endpoint *ep, const char *obj, struct ossb_fetched_manifest *ret,
                    struct ossb_error **err)
{
        struct call c;
        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "manifest %s", obj) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        call_init(&c, repo, ep, "GET", what);
        c.follow = true;
        c.max_body = OSSB_MANIFEST_MAX_SIZE;
        int k = call_set_url(&c, "/v2/%s/manifests/%s", ep->path, obj);
        if (k >= 0)
                k = call_add_header(&c, "%s", MANIFEST_ACCEPT);
        if (k < 0) {
                call_clear(&c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        k = call_run(&c, err);
        long st = call_status(&c);
        if (k >= 0 && st == 404)
                k = not_found(&c, ep->repository, obj, err);
        else if (k >= 0 && st != 200)
                k = st == 401 || st == 403 ? call_auth_error(&c, err) : call_http_error(&c, err);
        if (k < 0) {
                call_clear(&c);
                return k;
        }
        size_t len = 0;
        const char *body = ossb_http_xfer_body(c.x, &len);
        struct ossb_fetched_manifest m = { 0 };
        k = verify_manifest(repo, ep, obj, body, len, ossb_http_xfer_header(c.x, "Docker-Content-Digest"), m.digest, err);
        if (k >= 0) {
                m.data = malloc(len + 1);
                m.media_type = manifest_type(ossb_http_xfer_header(c.x, "Content-Type"), body, len);
                if (!m.data || !m.media_type)
                        k = ossb_error_set(err, -ENOMEM, "out of memory");
                else {
                        memcpy(m.data, body, len);
                        m.data[len] = 0;
                        m.len = len;
                }
        }
        call_clear(&c);
        if (k < 0) {
                ossb_fetched_manifest_clear(&m);
                return k;
        }
        *ret = m;
        return 0;
}

int ossb_repo_get_manifest(struct ossb_repo *repo, const char *tag_or_digest, struct ossb_fetched_manifest *ret,
                           struct ossb_error **err)
{
        int k = check_object(repo, tag_or_digest, err);
        if (k < 0)
                return k;
        pthread_mutex_lock(&repo->r->lock);
        for (size_t i = 0; i < repo->n_eps; i++) {
                struct endpoint *ep = &repo->eps[i];
                if (ep->mirror && ep->dead)
                        continue;
                struct ossb_error *e = NULL;
                k = get_from(repo, ep, tag_or_digest, ret, ep->mirror ? &e : err);
                if (k >= 0 || !ep->mirror || k == -EINTR) {
                        if (k == -EINTR && e && err && !*err)
                                *err = TAKE_PTR(e);
                        ossb_error_free(e);
                        break;
                }
                log_debug("mirror %s: %s; trying the next endpoint", ep->host, e ? e->msg : "failed");
                if (e && e->code != -ENOENT && e->code != -EBADMSG && e->code != -EACCES)
                        ep->dead = true;
                ossb_error_free(e);
        }
        pthread_mutex_unlock(&repo->r->lock);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        return k;
}

int ossb_repo_put_manifest(struct ossb_repo *repo, const char *tag_or_digest, const char *media_type,
                           const char *data, size_t len, struct ossb_error **err)
{
        int k = check_object(repo, tag_or_digest, err);
        if (k < 0)
                return k;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_sha256_digest(data, len, digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct endpoint *ep = repo_origin(repo);
        struct call c;
        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "manifest %s", tag_or_digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        call_init(&c, repo, ep, "PUT", what);
        c.body = data;
        c.body_len = (int64_t) len;
        c.max_body = 64 * 1024;
        k = call_set_url(&c, "/v2/%s/manifests/%s", ep->path, tag_or_digest);
        if (k >= 0)
                k = call_add_header(&c, "Content-Type: %s", media_type);
        if (k < 0) {
                call_clear(&c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&repo->r->lock);
        k = call_run(&c, err);
        long st = call_status(&c);
        if (k >= 0 && (st == 401 || st == 403))
                k = call_auth_error(&c, err);
        else if (k >= 0 && st != 201 && st != 200)
                k = call_http_error(&c, err);
        const char *hd = k >= 0 ? ossb_http_xfer_header(c.x, "Docker-Content-Digest") : NULL;
        if (hd && strncmp(hd, "sha256:", 7) == 0 && !streq(hd, digest))
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                    "%s stored manifest %s%s%s as %s, but its bytes hash to %s", ep->host, repo->name,
                                    object_sep(tag_or_digest), tag_or_digest, hd, digest);
        call_clear(&c);
        pthread_mutex_unlock(&repo->r->lock);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        else
                log_debug("registry: put manifest %s%s%s (%s)", repo->name, object_sep(tag_or_digest), tag_or_digest,
                          digest);
        return k;
}

/* --- blob HEAD ----------------------------------------------------------------------------- */

static int head_blob(struct ossb_repo *repo, struct endpoint *ep, const char *digest, bool *ret_exists,
                     struct ossb_error **err)
{
        struct call c;
        _cleanup_free_ char *what = NULL;
        if (asprintf(&what, "blob %s", digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        call_init(&c, repo, ep, "HEAD", what);
        c.follow = true;
        int k = call_set_url(&c, "/v2/%s/blobs/%s", ep->path, digest);
        if (k < 0) {
                call_clear(&c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        k = call_run(&c, err);
        long st = call_status(&c);
        if (k >= 0 && (st == 200 || st == 404))
                *ret_exists = st == 200;
        else if (k >= 0)
                k = st == 401 || st == 403 ? call_auth_error(&c, err) : call_http_error(&c, err);
        call_clear(&c);
        return k;
}

int ossb_repo_blob_exists(struct ossb_repo *repo, const char *digest, bool *ret_exists, struct ossb_error **err)
{
        if (!ossb_digest_is_valid(digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "`%s` is not a sha256 digest", digest);
        int k = 0;
        bool exists = false;
        pthread_mutex_lock(&repo->r->lock);
        for (size_t i = 0; i < repo->n_eps && !exists; i++) {
                struct endpoint *ep = &repo->eps[i];
                if (ep->mirror && ep->dead)
                        continue;
                struct ossb_error *e = NULL;
                k = head_blob(repo, ep, digest, &exists, ep->mirror ? &e : err);
                if (k < 0 && ep->mirror && k != -EINTR) {
                        log_debug("mirror %s: %s; trying the next endpoint", ep->host, e ? e->msg : "failed");
                        k = 0;
                } else if (k < 0 && e && err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
                if (k < 0)
                        break;
        }
        pthread_mutex_unlock(&repo->r->lock);
        if (k < 0) {
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
                return k;
        }
        *ret_exists = exists;
        return 0;
}
