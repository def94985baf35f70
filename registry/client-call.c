/* registry/client-call.c - one logical registry request (struct call): the scheme (https, or
 * plain http for insecure hosts that do not speak TLS), retries with backoff and jitter
 * (Retry-After honoured, bounded by attempts and a time budget), redirects followed without
 * credentials to other hosts, the auth flow (401 -> WWW-Authenticate -> Basic or a Bearer
 * token, cached per scope), and the error messages for what went wrong.  See
 * client-internal.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "registry/client-internal.h"

#define MAX_REDIRECTS 10
#define TOKEN_BODY_MAX (1024 * 1024)
#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 10000

static bool schedule_retry(struct call *c, const char *reason, int64_t retry_after_ms);

static void strv_free_wipe(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                explicit_bzero(v[i], strlen(v[i]));
        ossb_strv_free(v);
}

static void free_wipe(char *s)
{
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

/* --- building ------------------------------------------------------------------------------ */

void call_init(struct call *c, struct ossb_repo *repo, struct endpoint *ep, const char *method, const char *what)
{
        memset(c, 0, sizeof(*c));
        c->repo = repo;
        c->ep = ep;
        c->what = what;
        c->body_fd = -1;
        snprintf(c->method, sizeof(c->method), "%s", method);
}

int call_set_url(struct call *c, const char *fmt, ...)
{
        char *u = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&u, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        free(c->url);
        c->url = u;
        return 0;
}

int call_add_header(struct call *c, const char *fmt, ...)
{
        char *h = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&h, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        return ossb_strv_consume(&c->headers, h);
}

static void reset_request(struct call *c)
{
        free(c->url);
        c->url = NULL;
        strv_free_wipe(c->headers);
        c->headers = NULL;
        ossb_strv_free(c->scopes);
        c->scopes = NULL;
        c->body = NULL;
        c->body_fd = -1;
        c->body_off = c->body_len = 0;
        c->sink = NULL;
        c->sink_userdata = NULL;
}

void call_reset_request(struct call *c)
{
        reset_request(c);
}

bool call_retry(struct call *c, const char *reason)
{
        return schedule_retry(c, reason, -1);
}

void call_reset(struct call *c)
{
        reset_request(c);
        ossb_http_xfer_free(c->x);
        c->x = NULL;
        ossb_error_free(c->err);
        c->err = NULL;
        free(c->redirect_url);
        free(c->challenge_scope);
        free(c->token_key);
        c->redirect_url = c->challenge_scope = c->token_key = NULL;
        c->state = CALL_IDLE;
        c->attempt = 0;
        c->waited_ms = c->not_before_ms = 0;
        c->after_failure = c->auth_retried = c->exhausted = false;
        c->redirects = 0;
        c->fail_code = 0;
}

void call_clear(struct call *c)
{
        call_reset(c);
}

long call_status(const struct call *c)
{
        return c->x ? ossb_http_xfer_status(c->x) : 0;
}

char *call_resolve(const struct call *c, const char *ref)
{
        return c->x ? ossb_http_url_resolve(ossb_http_xfer_url(c->x), ref) : NULL;
}

static int fail(struct call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct call *c, int code, const char *fmt, ...)
{
        if (fmt && !c->err) {
                char *msg = NULL;
                va_list ap;
                va_start(ap, fmt);
                int k = vasprintf(&msg, fmt, ap);
                va_end(ap);
                ossb_error_setx(&c->err, OSSB_EXIT_REGISTRY, code, "%s", k < 0 ? "out of memory" : msg);
                free(msg);
        }
        c->state = CALL_FAILED;
        c->fail_code = code;
        return code;
}

int call_take_error(struct call *c, struct ossb_error **err)
{
        int code = c->err ? c->err->code : (c->fail_code < 0 ? c->fail_code : -EIO);
        if (c->err && err && !*err)
                *err = TAKE_PTR(c->err);
        else if (!c->err)
                ossb_error_setx(err, OSSB_EXIT_REGISTRY, code, "%s %s failed", c->method, c->what);
        ossb_error_free(c->err);
        c->err = NULL;
        return code;
}

void call_abort(struct call *c)
{
        ossb_http_xfer_free(c->x);
        c->x = NULL;
        if (c->state == CALL_RUNNING || c->state == CALL_WAITING || c->state == CALL_IDLE)
                c->state = CALL_FAILED;
}

/* --- tokens -------------------------------------------------------------------------------- */

void tokens_free(struct token *t)
{
        while (t) {
                struct token *next = t->next;
                free(t->key);
                free_wipe(t->value);
                free(t);
                t = next;
        }
}

static void token_drop(struct ossb_registry *r, const char *key)
{
        for (struct token **p = &r->tokens; *p; p = &(*p)->next)
                if (streq((*p)->key, key)) {
                        struct token *t = *p;
                        *p = t->next;
                        t->next = NULL;
                        tokens_free(t);
                        return;
                }
}

static const char *token_lookup(struct ossb_registry *r, const char *key)
{
        for (struct token *t = r->tokens; t; t = t->next)
                if (streq(t->key, key))
                        return t->expires_ms > now_ms() ? t->value : NULL;
        return NULL;
}

static int token_store(struct ossb_registry *r, const char *key, char *value, int64_t expires_in)
{
        token_drop(r, key);
        struct token *t = calloc(1, sizeof(*t));
        if (!t || !(t->key = strdup(key))) {
                free(t);
                free_wipe(value);
                return -ENOMEM;
        }
        if (expires_in <= 0)
                expires_in = 60;
        /* renew a little early: a token must not expire between use and arrival */
        int64_t margin = expires_in > 20 ? 10 : expires_in / 2;
        t->value = value;
        t->expires_ms = now_ms() + (expires_in - margin) * 1000;
        t->next = r->tokens;
        r->tokens = t;
        return 0;
}

/* The scopes a token for this call needs: the session's, the call's extras, and what the
 * registry's challenge named. */
static int call_scopes(struct call *c, char ***ret)
{
        _cleanup_strv_free_ char **v = NULL;
        char *base = ossb_auth_scope(c->ep->path, c->repo->push ? "pull,push" : "pull");
        if (!base || ossb_strv_consume(&v, base) < 0)
                return -ENOMEM;
        for (size_t i = 0; c->scopes && c->scopes[i]; i++)
                if (!ossb_strv_contains(v, c->scopes[i]) && ossb_strv_push(&v, c->scopes[i]) < 0)
                        return -ENOMEM;
        for (const char *p = c->challenge_scope; p && *p;) {
                size_t n = strcspn(p, " ");
                _cleanup_free_ char *s = strndup(p, n);
                if (!s)
                        return -ENOMEM;
                if (*s && !ossb_strv_contains(v, s) && ossb_strv_push(&v, s) < 0)
                        return -ENOMEM;
                p += n;
                p += strspn(p, " ");
        }
        *ret = TAKE_PTR(v);
        return 0;
}

static int add_param(struct ossb_strbuf *sb, const char *name, const char *value)
{
        _cleanup_free_ char *e = ossb_http_escape(value);
        if (!e)
                return -ENOMEM;
        return ossb_strbuf_appendf(sb, "%s%s=%s", sb->len ? "&" : "", name, e);
}

/* The token request: GET realm?service=&scope=... (Basic auth with a password), or for an
 * identity token the OAuth2 refresh-token grant as a POST form. */
static int token_request(struct call *t, const struct host *h, const struct ossb_credential *cred, char **scopes,
                         struct ossb_strbuf *form)
{
        struct ossb_strbuf q = OSSB_STRBUF_INIT;
        bool oauth = cred->username && cred->identity_token;
        int k = 0;
        if (h->service)
                k = add_param(oauth ? form : &q, "service", h->service);
        if (oauth) {
                _cleanup_free_ char *joined = NULL;
                struct ossb_strbuf sc = OSSB_STRBUF_INIT;
                for (size_t i = 0; k >= 0 && scopes[i]; i++)
                        k = ossb_strbuf_appendf(&sc, "%s%s", i ? " " : "", scopes[i]);
                joined = ossb_strbuf_steal(&sc);
                if (k >= 0 && joined)
                        k = add_param(form, "scope", joined);
                if (k >= 0)
                        k = add_param(form, "grant_type", "refresh_token");
                if (k >= 0)
                        k = add_param(form, "refresh_token", cred->secret ? cred->secret : "");
                if (k >= 0)
                        k = add_param(form, "client_id", "ossb");
        } else {
                for (size_t i = 0; k >= 0 && scopes[i]; i++)
                        k = add_param(&q, "scope", scopes[i]);
                if (k >= 0 && cred->username)
                        k = add_param(&q, "account", cred->username);
        }
        if (k >= 0 && oauth) {
                snprintf(t->method, sizeof(t->method), "POST");
                k = call_set_url(t, "%s", h->realm);
                if (k >= 0)
                        k = call_add_header(t, "Content-Type: application/x-www-form-urlencoded");
        } else if (k >= 0)
                k = call_set_url(t, "%s%s%s", h->realm, strchr(h->realm, '?') ? "&" : "?", q.buf ? q.buf : "");
        if (k >= 0 && cred->username && !oauth) {
                char *basic = ossb_auth_basic_header(cred->username, cred->secret ? cred->secret : "");
                k = basic ? call_add_header(t, "Authorization: %s", basic) : -ENOMEM;
                free_wipe(basic);
        }
        ossb_strbuf_free(&q);
        return k;
}

static int token_answer(struct call *c, struct call *t, const struct ossb_credential *cred, char **ret_token,
                        int64_t *ret_expires)
{
        long st = call_status(t);
        size_t len = 0;
        const char *body = ossb_http_xfer_body(t->x, &len);
        if (st == 200) {
                char *refresh = NULL;
                int k = ossb_auth_token_parse(body, len, ret_token, ret_expires, &refresh, &c->err);
                free_wipe(refresh);
                if (k < 0) {
                        ossb_error_wrap(&c->err, "the token server for %s", c->ep->host);
                        return fail(c, k, NULL);
                }
                return 0;
        }
        _cleanup_free_ char *detail = distribution_errors(body, len, false);
        _cleanup_free_ char *hp = NULL;
        bool https = false;
        if (ossb_http_url_hostport(t->url, &hp, &https) < 0)
                hp = NULL;
        if (st == 401 || st == 403) {
                if (cred->username)
                        return fail(c, -EACCES, "authentication to %s failed for %s (credentials from %s): the token "
                                                "server %s answered HTTP %ld%s%s", c->ep->host, c->ep->repository,
                                    cred->source ? cred->source : "?", hp ? hp : "?", st, detail ? ": " : "",
                                    detail ? detail : "");
                return fail(c, -EACCES, "authentication to %s failed for %s (anonymous: no credentials found for %s): "
                                        "the token server %s answered HTTP %ld%s%s", c->ep->host, c->ep->repository,
                            c->ep->host, hp ? hp : "?", st, detail ? ": " : "", detail ? detail : "");
        }
        return fail(c, -EPROTO, "the token server %s for registry %s answered HTTP %ld%s%s", hp ? hp : "?", c->ep->host,
                    st, detail ? ": " : "", detail ? detail : "");
}

static int token_fetch(struct call *c, const struct host *h, const struct ossb_credential *cred, char **scopes,
                       char **ret_token, int64_t *ret_expires)
{
        struct call t;
        struct ossb_strbuf form = OSSB_STRBUF_INIT;
        call_init(&t, c->repo, NULL, "GET", "token");
        t.no_auth = true;
        t.follow = true;
        t.max_body = TOKEN_BODY_MAX;
        int k = token_request(&t, h, cred, scopes, &form);
        if (k < 0) {
                call_clear(&t);
                explicit_bzero(form.buf ? form.buf : "", form.len);
                ossb_strbuf_free(&form);
                return fail(c, -ENOMEM, "out of memory");
        }
        t.body = form.buf;
        t.body_len = (int64_t) form.len;
        log_debug("registry: fetching a token for %s from %s (%s)", c->ep->repository, h->realm,
                  cred->username ? cred->source : "anonymous");
        k = call_run(&t, &c->err);
        if (k < 0)
                fail(c, k, NULL);
        else
                k = token_answer(c, &t, cred, ret_token, ret_expires);
        if (form.buf)
                explicit_bzero(form.buf, form.len);
        ossb_strbuf_free(&form);
        call_clear(&t);
        return k;
}

static char *token_key(const struct host *h, const struct ossb_credential *cred, char **scopes)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = ossb_strbuf_appendf(&sb, "%s\n%s\n%s\n%s\n", h->realm, h->service ? h->service : "",
                                    cred->source ? cred->source : "-", cred->username ? cred->username : "");
        for (size_t i = 0; k >= 0 && scopes[i]; i++)
                k = ossb_strbuf_appendf(&sb, "%s ", scopes[i]);
        if (k < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static int bearer_header(struct call *c, struct host *h, char ***headers)
{
        const struct ossb_credential *cred = NULL;
        _cleanup_strv_free_ char **scopes = NULL;
        int k = endpoint_cred(c->repo->r, c->ep, &cred, &c->err);
        if (k < 0)
                return fail(c, k, NULL);
        if (call_scopes(c, &scopes) < 0)
                return fail(c, -ENOMEM, "out of memory");
        _cleanup_free_ char *key = token_key(h, cred, scopes);
        if (!key)
                return fail(c, -ENOMEM, "out of memory");
        const char *tok = token_lookup(c->repo->r, key);
        if (!tok) {
                char *fresh = NULL;
                int64_t expires = 0;
                k = token_fetch(c, h, cred, scopes, &fresh, &expires);
                if (k < 0)
                        return k;
                if (token_store(c->repo->r, key, fresh, expires) < 0)
                        return fail(c, -ENOMEM, "out of memory");
                tok = token_lookup(c->repo->r, key);
                if (!tok) /* expired at once (expires_in of a few ms): use it this once anyway */
                        tok = c->repo->r->tokens->value;
        }
        free(c->token_key);
        c->token_key = TAKE_PTR(key);
        char *line = NULL;
        if (asprintf(&line, "Authorization: Bearer %s", tok) < 0 || ossb_strv_consume(headers, line) < 0)
                return fail(c, -ENOMEM, "out of memory");
        return 0;
}

static int auth_header(struct call *c, char ***headers)
{
        struct host *h = registry_host(c->repo->r, c->ep->host, &c->err);
        if (!h)
                return fail(c, -ENOMEM, NULL);
        if (h->auth == OSSB_AUTH_BEARER && h->realm)
                return bearer_header(c, h, headers);
        if (h->auth != OSSB_AUTH_BASIC)
                return 0;
        const struct ossb_credential *cred = NULL;
        int k = endpoint_cred(c->repo->r, c->ep, &cred, &c->err);
        if (k < 0)
                return fail(c, k, NULL);
        if (!cred->username || cred->identity_token)
                return 0;
        char *basic = ossb_auth_basic_header(cred->username, cred->secret ? cred->secret : "");
        char *line = NULL;
        k = basic && asprintf(&line, "Authorization: %s", basic) >= 0 ? ossb_strv_consume(headers, line) : -ENOMEM;
        free_wipe(basic);
        return k < 0 ? fail(c, -ENOMEM, "out of memory") : 0;
}

/* --- issuing ------------------------------------------------------------------------------- */

/* The URL of this attempt, its host, and whether the registry's credentials may go there. */
static int target(struct call *c, char **ret_url, struct host **ret_host, bool *ret_home, bool *ret_https)
{
        struct ossb_registry *r = c->repo->r;
        if (!c->redirect_url && c->url && c->url[0] == '/') {
                struct host *h = registry_host(r, c->ep->host, &c->err);
                if (!h)
                        return fail(c, -ENOMEM, NULL);
                bool https = h->scheme != SCHEME_HTTP;
                if (asprintf(ret_url, "%s://%s%s", https ? "https" : "http", c->ep->host, c->url) < 0)
                        return fail(c, -ENOMEM, "out of memory");
                *ret_host = h;
                *ret_home = true;
                *ret_https = https;
                return 0;
        }
        const char *u = c->redirect_url ? c->redirect_url : c->url;
        _cleanup_free_ char *hp = NULL;
        if (!u || ossb_http_url_hostport(u, &hp, ret_https) < 0)
                return fail(c, -EPROTO, "%s: `%s` is not an http(s) URL", c->what, u ? u : "");
        *ret_host = registry_host(r, hp, &c->err);
        if (!*ret_host)
                return fail(c, -ENOMEM, NULL);
        *ret_url = strdup(u);
        if (!*ret_url)
                return fail(c, -ENOMEM, "out of memory");
        *ret_home = c->ep && streq(hp, c->ep->host);
        return 0;
}

int call_issue(struct call *c)
{
        struct ossb_registry *r = c->repo->r;
        bool after = c->after_failure;
        c->after_failure = false;
        if (c->attempt == 0)
                c->attempt = 1;
        ossb_http_xfer_free(c->x);
        c->x = NULL;
        if (c->prepare) {
                int k = c->prepare(c, after, &c->err);
                if (k < 0)
                        return fail(c, k, NULL);
        }
        _cleanup_free_ char *url = NULL;
        struct host *h = NULL;
        bool home = false, https = false;
        int k = target(c, &url, &h, &home, &https);
        if (k < 0)
                return k;
        char **headers = ossb_strv_copy(c->headers);
        if (c->headers && !headers)
                return fail(c, -ENOMEM, "out of memory");
        if (home && c->ep && !c->no_auth && (k = auth_header(c, &headers)) < 0) {
                strv_free_wipe(headers);
                return k;
        }
        struct ossb_http_tls tls = { 0 };
        if (https && (k = host_tls(r, h, &tls, &c->err)) < 0) {
                strv_free_wipe(headers);
                return fail(c, k, NULL);
        }
        struct ossb_http_request rq = {
                .method = c->method, .url = url, .headers = headers, .tls = https ? &tls : NULL,
                .body = c->body, .body_fd = c->body_fd, .body_off = c->body_off, .body_len = c->body_len,
                .max_body = c->max_body, .sink = c->sink, .sink_userdata = c->sink_userdata,
        };
        k = ossb_http_xfer_new(r->http, &rq, &c->x, &c->err);
        strv_free_wipe(headers);
        if (k >= 0)
                k = ossb_http_xfer_start(c->x, &c->err);
        if (k < 0)
                return fail(c, k, NULL);
        c->state = CALL_RUNNING;
        return 0;
}

/* Another attempt at once, not counted as a retry (auth, redirect, scheme fallback). */
static void reissue(struct call *c)
{
        call_issue(c);
}

/* --- outcomes ------------------------------------------------------------------------------ */

static const char *call_host(const struct call *c)
{
        return c->ep ? c->ep->host : "the token server";
}

static bool schedule_retry(struct call *c, const char *reason, int64_t retry_after_ms)
{
        struct ossb_registry *r = c->repo->r;
        int64_t left = r->retry_budget_ms - c->waited_ms;
        if (c->attempt >= r->max_attempts || left <= 0)
                return false;
        if (c->ep && c->ep->mirror)
                return false; /* a mirror that fails is passed over at once */
        int64_t delay = retry_after_ms;
        if (delay < 0) {
                int shift = c->attempt - 1 < 10 ? c->attempt - 1 : 10;
                int64_t cap = (int64_t) BACKOFF_BASE_MS << (shift > 0 ? shift : 0);
                if (cap > BACKOFF_CAP_MS)
                        cap = BACKOFF_CAP_MS;
                delay = (int64_t) (registry_random(r) % (uint64_t) (cap + 1)); /* full jitter */
        }
        if (delay > left)
                delay = left;
        c->waited_ms += delay;
        c->not_before_ms = now_ms() + delay;
        c->state = CALL_WAITING;
        c->after_failure = true;
        c->attempt++;
        free(c->redirect_url);
        c->redirect_url = NULL;
        c->redirects = 0;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s%s%s, retrying in %.1f s (attempt %d/%d)", c->event_digest ? "" : c->what,
                 c->event_digest ? "" : ": ", reason, (double) delay / 1000.0, c->attempt, r->max_attempts);
        log_debug("registry: %s %s", c->ep ? c->ep->repository : "token", msg);
        registry_emit(r, OSSB_TRANSFER_RETRY, c->event_push, c->event_digest, 0, 0, msg);
        return true;
}

static void retry_or_fail(struct call *c, int code, const char *reason)
{
        if (schedule_retry(c, reason, -1))
                return;
        if (c->attempt > 1)
                fail(c, code, "%s (gave up after %d attempts)", reason, c->attempt);
        else
                fail(c, code, "%s", reason);
}

static void tls_failure(struct call *c, struct host *h, enum ossb_http_fail f, const char *msg)
{
        _cleanup_free_ char *cas = host_ca_description(h);
        if (f == OSSB_HTTP_TLS_VERIFY)
                fail(c, -EPROTO, "cannot verify the TLS certificate of registry %s: %s (trusted: %s; put its CA in "
                                 "a cert dir as %s/ca.crt, or use --insecure-registry %s)", h->name, msg,
                     cas ? cas : "?", h->name, h->name);
        else if (f == OSSB_HTTP_TLS_FILES)
                fail(c, -EINVAL, "TLS files for registry %s cannot be used: %s (CAs: %s; client certificate %s, key %s)",
                     h->name, msg, cas ? cas : "?", h->cert ? h->cert : "none", h->key ? h->key : "none");
        else
                fail(c, -EPROTO, "TLS handshake with registry %s failed: %s (trusted: %s; client certificate: %s)",
                     h->name, msg, cas ? cas : "?", h->cert ? h->cert : "none");
}

static void transport_failure(struct call *c, enum ossb_http_fail f)
{
        const char *msg = ossb_http_xfer_error(c->x);
        _cleanup_free_ char *hp = NULL;
        bool https = false;
        if (ossb_http_url_hostport(ossb_http_xfer_url(c->x), &hp, &https) < 0 && !(hp = strdup(call_host(c))))
                return (void) fail(c, -ENOMEM, "out of memory");
        struct host *h = registry_host(c->repo->r, hp, &c->err);
        if (!h)
                return (void) fail(c, -ENOMEM, NULL);
        bool own = !c->redirect_url && c->url && c->url[0] == '/';
        if ((f == OSSB_HTTP_CONNECT || f == OSSB_HTTP_TLS) && own && https && h->insecure) {
                /* an insecure registry may not speak TLS at all: plain HTTP, as Docker does */
                log_debug("registry %s: https failed (%s); trying plain http (insecure registry)", h->name, msg);
                h->scheme = SCHEME_HTTP;
                h->http_tentative = true;
                return reissue(c);
        }
        if (f == OSSB_HTTP_CONNECT && own && h->http_tentative)
                h->scheme = SCHEME_UNKNOWN; /* neither answered: try https again next time */
        char reason[768];
        switch (f) {
        case OSSB_HTTP_CONNECT:
                snprintf(reason, sizeof(reason), "cannot connect to registry %s: %s", hp, msg);
                return retry_or_fail(c, -ECONNREFUSED, reason);
        case OSSB_HTTP_BROKEN:
                if (https && ossb_http_xfer_status(c->x) == 0 && ossb_http_xfer_tls_up(c->x))
                        snprintf(reason, sizeof(reason), "the TLS connection to %s closed without an answer: %s (does "
                                 "the registry require a client certificate? client certificate: %s)", hp, msg,
                                 h->cert ? h->cert : "none");
                else
                        snprintf(reason, sizeof(reason), "transfer from %s broke: %s", hp, msg);
                return retry_or_fail(c, -EIO, reason);
        case OSSB_HTTP_TLS:
        case OSSB_HTTP_TLS_VERIFY:
        case OSSB_HTTP_TLS_FILES:
                return tls_failure(c, h, f, msg);
        case OSSB_HTTP_TOO_BIG:
                return (void) fail(c, -EFBIG, "the answer of %s to %s %s is larger than %zu bytes", hp, c->method,
                                   c->what, c->max_body);
        case OSSB_HTTP_ABORTED:
                if (ossb_http_xfer_sink_error(c->x) == -EAGAIN)
                        return retry_or_fail(c, -EIO, "the download could not be resumed");
                return (void) fail(c, ossb_http_xfer_sink_error(c->x), NULL);
        default:
                return (void) fail(c, -EIO, "%s %s: request to %s failed: %s", c->method, c->what, hp, msg);
        }
}

static int pick_challenge(struct call *c, struct ossb_auth_challenge *ret)
{
        struct ossb_auth_challenge best = { 0 };
        const char *v;
        for (size_t i = 0; (v = ossb_http_xfer_header_n(c->x, "WWW-Authenticate", i)); i++) {
                struct ossb_auth_challenge ch = { 0 };
                if (ossb_auth_challenge_parse(v, &ch, NULL) < 0)
                        continue;
                if (best.scheme == OSSB_AUTH_NONE || (ch.scheme == OSSB_AUTH_BEARER && best.scheme != OSSB_AUTH_BEARER)) {
                        ossb_auth_challenge_clear(&best);
                        best = ch;
                } else
                        ossb_auth_challenge_clear(&ch);
        }
        if (best.scheme == OSSB_AUTH_NONE || (best.scheme == OSSB_AUTH_BEARER && !best.realm)) {
                ossb_auth_challenge_clear(&best);
                return -EPROTO;
        }
        *ret = best;
        return 0;
}

static void learn_challenge(struct host *h, struct ossb_auth_challenge *ch)
{
        h->auth = ch->scheme;
        if (ch->scheme == OSSB_AUTH_BEARER) {
                free(h->realm);
                free(h->service);
                h->realm = TAKE_PTR(ch->realm);
                h->service = TAKE_PTR(ch->service);
        }
}

static void unauthorized(struct call *c)
{
        if (c->auth_retried) {
                if (c->auth_soft) {
                        c->state = CALL_DONE;
                        return;
                }
                call_auth_error(c, &c->err);
                return (void) fail(c, -EACCES, NULL);
        }
        struct ossb_auth_challenge ch = { 0 };
        if (pick_challenge(c, &ch) < 0)
                return (void) fail(c, -EACCES, "registry %s answered HTTP 401 to %s %s without a usable "
                                               "WWW-Authenticate challenge", c->ep->host, c->method, c->what);
        struct host *h = registry_host(c->repo->r, c->ep->host, &c->err);
        if (!h) {
                ossb_auth_challenge_clear(&ch);
                return (void) fail(c, -ENOMEM, NULL);
        }
        learn_challenge(h, &ch);
        if (ch.scope) {
                free(c->challenge_scope);
                c->challenge_scope = TAKE_PTR(ch.scope);
        }
        ossb_auth_challenge_clear(&ch);
        if (c->token_key)
                token_drop(c->repo->r, c->token_key);
        if (h->auth == OSSB_AUTH_BASIC) {
                const struct ossb_credential *cred = NULL;
                if (endpoint_cred(c->repo->r, c->ep, &cred, &c->err) < 0)
                        return (void) fail(c, c->err ? c->err->code : -EIO, NULL);
                if (!cred->username) {
                        call_auth_error(c, &c->err);
                        return (void) fail(c, -EACCES, NULL);
                }
        }
        c->auth_retried = true;
        reissue(c);
}

static bool retryable_status(long st)
{
        return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

static void follow(struct call *c)
{
        const char *loc = ossb_http_xfer_header(c->x, "Location");
        if (!loc) {
                c->state = CALL_DONE;
                return;
        }
        if (++c->redirects > MAX_REDIRECTS)
                return (void) fail(c, -ELOOP, "%s %s: more than %d redirects", c->method, c->what, MAX_REDIRECTS);
        char *next = call_resolve(c, loc);
        if (!next)
                return (void) fail(c, -EPROTO, "%s %s: cannot follow the redirect to `%s`", c->method, c->what, loc);
        free(c->redirect_url);
        c->redirect_url = next;
        reissue(c);
}

void call_complete(struct call *c)
{
        enum ossb_http_fail f = ossb_http_xfer_fail(c->x);
        if (f != OSSB_HTTP_OK)
                return transport_failure(c, f);
        long st = ossb_http_xfer_status(c->x);
        struct host *h = c->ep ? registry_host(c->repo->r, c->ep->host, NULL) : NULL;
        if (h && h->http_tentative && !c->redirect_url) {
                h->http_tentative = false; /* plain http answered: keep it */
                log_debug("registry %s: speaking plain http (insecure registry)", h->name);
        }
        if (st == 401 && c->ep && !c->no_auth && !c->redirect_url)
                return unauthorized(c);
        c->auth_retried = false;
        if ((st == 401 || st == 403) && c->redirect_url) {
                /* a storage redirect that expired or was refused: ask the registry again */
                char reason[64];
                snprintf(reason, sizeof(reason), "HTTP %ld from the redirect target", st);
                if (schedule_retry(c, reason, -1))
                        return;
        }
        if (c->follow && (st == 301 || st == 302 || st == 303 || st == 307 || st == 308))
                return follow(c);
        if (retryable_status(st)) {
                char reason[32];
                snprintf(reason, sizeof(reason), "HTTP %ld", st);
                if (schedule_retry(c, reason, ossb_http_retry_after_ms(ossb_http_xfer_header(c->x, "Retry-After"))))
                        return;
                c->exhausted = true;
        }
        c->state = CALL_DONE;
}

int call_run(struct call *c, struct ossb_error **err)
{
        struct ossb_http *http = c->repo->r->http;
        for (;;) {
                int k;
                switch (c->state) {
                case CALL_IDLE:
                        call_issue(c);
                        break;
                case CALL_WAITING: {
                        int64_t left = c->not_before_ms - now_ms();
                        k = ossb_http_sleep(http, left > 0 ? left : 0, &c->err);
                        if (k < 0)
                                fail(c, k, NULL);
                        else
                                call_issue(c);
                        break;
                }
                case CALL_RUNNING:
                        k = ossb_http_wait(http, c->x, &c->err);
                        if (k < 0) {
                                call_abort(c);
                                fail(c, k, NULL);
                        } else
                                call_complete(c);
                        break;
                case CALL_DONE:
                        return 0;
                case CALL_FAILED:
                        return call_take_error(c, err);
                }
        }
}

/* --- messages ------------------------------------------------------------------------------ */

char *distribution_errors(const char *body, size_t len, bool codes_only)
{
        json_object *o = NULL, *errs = NULL;
        if (!body || len == 0 || ossb_json_parse(body, len, 64 * 1024, &o, NULL) < 0)
                return NULL;
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "errors", &errs) &&
            json_object_is_type(errs, json_type_array)) {
                size_t n = json_object_array_length(errs);
                for (size_t i = 0; i < n && i < 8; i++) {
                        json_object *e = json_object_array_get_idx(errs, i), *code = NULL, *msg = NULL;
                        json_object_object_get_ex(e, "code", &code);
                        json_object_object_get_ex(e, "message", &msg);
                        const char *cs = json_object_is_type(code, json_type_string) ? json_object_get_string(code) : NULL;
                        const char *ms = json_object_is_type(msg, json_type_string) ? json_object_get_string(msg) : NULL;
                        if (!cs && !ms)
                                continue;
                        if (codes_only && cs)
                                ossb_strbuf_appendf(&sb, "%s%.64s", sb.len ? ", " : "", cs);
                        else if (!codes_only)
                                ossb_strbuf_appendf(&sb, "%s%.64s%s%.200s", sb.len ? "; " : "", cs ? cs : "",
                                                    cs && ms ? ": " : "", ms ? ms : "");
                }
        }
        json_object_put(o);
        if (sb.len == 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static int status_errno(long st)
{
        switch (st) {
        case 404:
                return -ENOENT;
        case 401:
        case 403:
                return -EACCES;
        case 416:
                return -ERANGE;
        default:
                return st >= 500 ? -EIO : -EPROTO;
        }
}

int call_http_error(struct call *c, struct ossb_error **err)
{
        long st = call_status(c);
        size_t len = 0;
        const char *body = ossb_http_xfer_body(c->x, &len);
        _cleanup_free_ char *detail = distribution_errors(body, len, false);
        char attempts[48] = "";
        if (c->exhausted)
                snprintf(attempts, sizeof(attempts), " (gave up after %d attempts)", c->attempt);
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, status_errno(st), "%s %s of %s: registry %s answered HTTP %ld%s%s%s",
                               c->method, c->what, c->ep ? c->ep->repository : "?", call_host(c), st, attempts,
                               detail ? ": " : "", detail ? detail : "");
}

int call_auth_error(struct call *c, struct ossb_error **err)
{
        const struct ossb_credential *cred = NULL;
        if (c->ep && endpoint_cred(c->repo->r, c->ep, &cred, NULL) < 0)
                cred = NULL;
        size_t len = 0;
        const char *body = c->x ? ossb_http_xfer_body(c->x, &len) : NULL;
        _cleanup_free_ char *detail = distribution_errors(body, len, false);
        bool writing = c->repo->push && !streq(c->method, "GET") && !streq(c->method, "HEAD");
        const char *host = call_host(c), *repo = c->ep ? c->ep->repository : c->repo->name;
        char hint[256] = "";
        if (writing)
                snprintf(hint, sizeof(hint), ": push to %s refused (does the account have push permission?)", repo);
        if (cred && cred->username)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES,
                                       "authentication to %s failed for %s (credentials from %s)%s%s%s", host, repo,
                                       cred->source ? cred->source : "?", hint, detail ? ": " : "", detail ? detail : "");
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES,
                               "authentication to %s failed for %s (anonymous: no credentials found for %s)%s%s%s", host,
                               repo, host, hint, detail ? ": " : "", detail ? detail : "");
}
