/* registry/http.c - the transport under the registry client: libcurl easy handles on one multi
 * handle, response headers and bodies, failure classification, redacted debug logs.  See
 * http.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/gnutls.h>

#include "common/cleanup.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "registry/http.h"

#define ERROR_BODY_MAX (64 * 1024)
#define MAX_HEADERS 256

struct ossb_http {
        CURLM *multi;
        char *user_agent;
        long connect_timeout_ms;
        long stall_timeout_s;
        long connects; /* new connections opened, summed over finished transfers */
        long h2;       /* responses that came over HTTP/2 */
};

struct ossb_http_xfer {
        struct ossb_http *h;
        CURL *easy;
        struct curl_slist *headers;
        char errbuf[CURL_ERROR_SIZE];
        char method[8];
        char *url;
        bool added, done;
        CURLcode result;
        long os_errno;
        long status;
        bool tls_up; /* a TLS session was established */
        const char *version;
        char **hdrs; /* "name: value" of the last response */
        size_t n_hdrs;
        struct ossb_strbuf body;
        size_t max_body;
        bool too_big;
        ossb_http_sink_fn sink;
        void *sink_userdata;
        int sink_error;
        /* request body */
        const char *up_data;
        int up_fd;
        int64_t up_off, up_len, up_pos;
        int64_t sent;
        char message[CURL_ERROR_SIZE + 64];
};

int ossb_http_new(const struct ossb_http_opts *opts, struct ossb_http **ret, struct ossb_error **err)
{
        /* reference-counted by libcurl (thread-safe since 7.84); undone in ossb_http_free */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return ossb_error_set(err, -EIO, "cannot initialise libcurl");
        struct ossb_http *h = calloc(1, sizeof(*h));
        if (!h) {
                curl_global_cleanup();
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        h->user_agent = strdup(opts->user_agent ? opts->user_agent : "ossb");
        h->multi = curl_multi_init();
        if (!h->user_agent || !h->multi) {
                ossb_http_free(h);
                return ossb_error_set(err, -ENOMEM, "cannot set up libcurl: out of memory");
        }
        h->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 30000;
        h->stall_timeout_s = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : 60;
        /* HTTP/2 streams share one connection where the server offers h2 (ALPN) */
        curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
        if (opts->max_host_connections > 0)
                curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) opts->max_host_connections);
        *ret = h;
        return 0;
}

void ossb_http_free(struct ossb_http *h)
{
        if (!h)
                return;
        if (h->multi)
                curl_multi_cleanup(h->multi);
        free(h->user_agent);
        free(h);
        curl_global_cleanup();
}

long ossb_http_connects(const struct ossb_http *h)
{
        return h->connects;
}

long ossb_http_h2_responses(const struct ossb_http *h)
{
        return h->h2;
}

/* --- redaction ----------------------------------------------------------------------------- */

static bool secret_param(const char *name, size_t len)
{
        static const char *const words[] = { "sig", "signature", "token", "credential", "password", "secret",
                                             "key", "x-amz-", "x-goog-", "auth" };
        _cleanup_free_ char *low = strndup(name, len);
        if (!low)
                return true;
        for (char *p = low; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strstr(low, words[i]))
                        return true;
        return false;
}

char *ossb_http_redact_url(const char *url)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        const char *q = strchr(url, '?');
        if (!q)
                return strdup(url);
        int r = ossb_strbuf_append_n(&sb, url, (size_t) (q - url) + 1);
        const char *p = q + 1;
        while (r >= 0 && *p) {
                size_t n = strcspn(p, "&#");
                const char *eq = memchr(p, '=', n);
                if (eq && secret_param(p, (size_t) (eq - p))) {
                        r = ossb_strbuf_append_n(&sb, p, (size_t) (eq - p) + 1);
                        if (r >= 0)
                                r = ossb_strbuf_append(&sb, "<redacted>");
                } else
                        r = ossb_strbuf_append_n(&sb, p, n);
                p += n;
                if (r >= 0 && *p == '&')
                        r = ossb_strbuf_append_c(&sb, *p++);
                else if (*p)
                        break; /* drop a fragment */
        }
        if (r < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static void log_request(const struct ossb_http_xfer *x, char *const *headers)
{
        if (ossb_log_get_level() < OSSB_LOG_DEBUG)
                return;
        _cleanup_free_ char *u = ossb_http_redact_url(x->url);
        log_debug("http: > %s %s", x->method, u ? u : "?");
        for (size_t i = 0; headers && headers[i]; i++) {
                if (strncasecmp(headers[i], "Authorization:", 14) == 0)
                        log_debug("http: >   Authorization: <redacted>");
                else
                        log_debug("http: >   %s", headers[i]);
        }
}

/* --- callbacks ----------------------------------------------------------------------------- */

static void clear_headers(struct ossb_http_xfer *x)
{
        for (size_t i = 0; i < x->n_hdrs; i++)
                free(x->hdrs[i]);
        x->n_hdrs = 0;
}

static int add_header(struct ossb_http_xfer *x, const char *line, size_t len)
{
        if (x->n_hdrs >= MAX_HEADERS)
                return 0;
        if ((x->n_hdrs & 15) == 0) {
                char **n = realloc(x->hdrs, (x->n_hdrs + 16) * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                x->hdrs = n;
        }
        x->hdrs[x->n_hdrs] = strndup(line, len);
        if (!x->hdrs[x->n_hdrs])
                return -ENOMEM;
        x->n_hdrs++;
        return 0;
}

static bool body_too_big(struct ossb_http_xfer *x, const char *line, size_t len)
{
        if (x->sink || streq(x->method, "HEAD") || x->status < 200 || x->status > 299 || len < 15 ||
            strncasecmp(line, "content-length:", 15) != 0)
                return false;
        char buf[32];
        size_t n = len - 15 < sizeof(buf) - 1 ? len - 15 : sizeof(buf) - 1;
        memcpy(buf, line + 15, n);
        buf[n] = 0;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        return errno == 0 && end != buf && v > x->max_body;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
        struct ossb_http_xfer *x = userdata;
        size_t total = size * nitems, len = total;
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' ||
                           data[len - 1] == '\t'))
                len--;
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* a new response (after 1xx): forget the previous one's headers */
                clear_headers(x);
                long code = 0;
                const char *sp = memchr(data, ' ', len);
                for (const char *p = sp ? sp + 1 : data + len; p < data + len && isdigit((unsigned char) *p); p++)
                        code = code * 10 + (*p - '0');
                x->status = code;
                ossb_strbuf_reset(&x->body);
                return total;
        }
        if (len == 0 || data[0] == ' ' || data[0] == '\t')
                return total;
        if (body_too_big(x, data, len)) {
                x->too_big = true;
                return 0;
        }
        return add_header(x, data, len) < 0 ? 0 : total;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct ossb_http_xfer *x = userdata;
        size_t len = size * nmemb;
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        bool ok = status >= 200 && status <= 299;
        if (ok && x->sink) {
                int r = x->sink(x->sink_userdata, x, data, len);
                if (r < 0) {
                        x->sink_error = r;
                        return 0;
                }
                return len;
        }
        size_t cap = ok ? x->max_body : ERROR_BODY_MAX;
        if (x->body.len + len > cap) {
                if (ok) {
                        x->too_big = true;
                        return 0;
                }
                len = cap - x->body.len; /* keep the start of an error body, drop the rest */
                if (ossb_strbuf_append_n(&x->body, data, len) < 0)
                        return 0;
                return size * nmemb;
        }
        if (ossb_strbuf_append_n(&x->body, data, len) < 0)
                return 0;
        return len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
        struct ossb_http_xfer *x = userdata;
        size_t want = size * nitems;
        int64_t left = x->up_len - x->up_pos;
        if ((int64_t) want > left)
                want = (size_t) left;
        if (want == 0)
                return 0;
        if (x->up_fd < 0) {
                memcpy(buf, x->up_data + x->up_pos, want);
        } else {
                ssize_t n;
                do
                        n = pread(x->up_fd, buf, want, (off_t) (x->up_off + x->up_pos));
                while (n < 0 && errno == EINTR);
                if (n <= 0)
                        return CURL_READFUNC_ABORT; /* the file shrank or cannot be read */
                want = (size_t) n;
        }
        x->up_pos += (int64_t) want;
        if (x->up_pos > x->sent)
                x->sent = x->up_pos;
        return want;
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
        struct ossb_http_xfer *x = userdata;
        if (origin != SEEK_SET || offset < 0 || offset > x->up_len)
                return CURL_SEEKFUNC_CANTSEEK;
        x->up_pos = offset;
        return CURL_SEEKFUNC_OK;
}

/* --- setup --------------------------------------------------------------------------------- */

static int set_method(struct ossb_http_xfer *x, const struct ossb_http_request *rq)
{
        CURL *e = x->easy;
        CURLcode c = CURLE_OK;
        x->up_fd = rq->body_fd;
        x->up_data = rq->body ? rq->body : "";
        x->up_off = rq->body_off;
        x->up_len = rq->body_len;
        if (streq(rq->method, "GET"))
                c = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        else if (streq(rq->method, "HEAD"))
                c = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (streq(rq->method, "DELETE"))
                c = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        else if (streq(rq->method, "POST") || streq(rq->method, "PUT") || streq(rq->method, "PATCH")) {
                /* every body goes through the read callback (from memory or a file range) */
                if (streq(rq->method, "POST"))
                        c = curl_easy_setopt(e, CURLOPT_POST, 1L);
                else
                        c = curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
                if (c == CURLE_OK && streq(rq->method, "POST"))
                        c = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) rq->body_len);
                else if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) rq->body_len);
                if (c == CURLE_OK && streq(rq->method, "PATCH"))
                        c = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
                if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_READDATA, x);
                if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
                if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
        } else
                return -EINVAL;
        return c == CURLE_OK ? 0 : -EINVAL;
}

static int set_tls(CURL *e, const struct ossb_http_tls *tls)
{
        CURLcode c = CURLE_OK;
        if (!tls)
                return 0;
        if (tls->ca_file)
                c = curl_easy_setopt(e, CURLOPT_CAINFO, tls->ca_file);
        if (c == CURLE_OK && tls->cert)
                c = curl_easy_setopt(e, CURLOPT_SSLCERT, tls->cert);
        if (c == CURLE_OK && tls->key)
                c = curl_easy_setopt(e, CURLOPT_SSLKEY, tls->key);
        if (c == CURLE_OK && tls->insecure) {
                c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                if (c == CURLE_OK)
                        c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        return c == CURLE_OK ? 0 : -EINVAL;
}

static int set_common(struct ossb_http_xfer *x)
{
        CURL *e = x->easy;
        struct ossb_http *h = x->h;
        CURLcode c = curl_easy_setopt(e, CURLOPT_URL, x->url);
#define SET(opt, val)                                   \
        do {                                            \
                if (c == CURLE_OK)                      \
                        c = curl_easy_setopt(e, opt, val); \
        } while (0)
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_USERAGENT, h->user_agent);
        SET(CURLOPT_PRIVATE, x);
        SET(CURLOPT_ERRORBUFFER, x->errbuf);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_FOLLOWLOCATION, 0L); /* the client follows redirects itself (credentials stay home) */
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        SET(CURLOPT_PIPEWAIT, 1L);
        SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, h->stall_timeout_s);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_HEADERFUNCTION, on_header);
        SET(CURLOPT_HEADERDATA, x);
        SET(CURLOPT_WRITEFUNCTION, on_write);
        SET(CURLOPT_WRITEDATA, x);
        SET(CURLOPT_HTTPHEADER, x->headers);
#undef SET
        return c == CURLE_OK ? 0 : -EINVAL;
}

static int build_headers(struct ossb_http_xfer *x, char *const *headers, bool upload)
{
        for (size_t i = 0; headers && headers[i]; i++) {
                struct curl_slist *n = curl_slist_append(x->headers, headers[i]);
                if (!n)
                        return -ENOMEM;
                x->headers = n;
        }
        if (upload) {
                /* no "Expect: 100-continue" round trip */
                struct curl_slist *n = curl_slist_append(x->headers, "Expect:");
                if (!n)
                        return -ENOMEM;
                x->headers = n;
        }
        return 0;
}

int ossb_http_xfer_new(struct ossb_http *h, const struct ossb_http_request *rq, struct ossb_http_xfer **ret,
                       struct ossb_error **err)
{
        if (strlen(rq->method) >= sizeof(((struct ossb_http_xfer *) NULL)->method))
                return ossb_error_set(err, -EINVAL, "unsupported HTTP method %s", rq->method);
        struct ossb_http_xfer *x = calloc(1, sizeof(*x));
        if (!x)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        x->h = h;
        x->up_fd = -1;
        x->max_body = rq->max_body;
        x->sink = rq->sink;
        x->sink_userdata = rq->sink_userdata;
        x->version = "";
        memcpy(x->method, rq->method, strlen(rq->method) + 1);
        x->url = strdup(rq->url);
        x->easy = curl_easy_init();
        bool upload = streq(rq->method, "PUT") || streq(rq->method, "PATCH") || streq(rq->method, "POST");
        int r = (!x->url || !x->easy) ? -ENOMEM : build_headers(x, rq->headers, upload);
        if (r < 0) {
                ossb_http_xfer_free(x);
                return ossb_error_set(err, r, "out of memory");
        }
        r = set_common(x);
        if (r >= 0)
                r = set_method(x, rq);
        if (r >= 0)
                r = set_tls(x->easy, rq->tls);
        if (r < 0) {
                ossb_http_xfer_free(x);
                return ossb_error_set(err, -EINVAL, "cannot set up the HTTP request %s %s", rq->method, rq->url);
        }
        log_request(x, rq->headers);
        *ret = x;
        return 0;
}

int ossb_http_xfer_start(struct ossb_http_xfer *x, struct ossb_error **err)
{
        CURLMcode mc = curl_multi_add_handle(x->h->multi, x->easy);
        if (mc != CURLM_OK)
                return ossb_error_set(err, -EIO, "cannot start the HTTP request: %s", curl_multi_strerror(mc));
        x->added = true;
        return 0;
}

void ossb_http_xfer_free(struct ossb_http_xfer *x)
{
        if (!x)
                return;
        if (x->added && !x->done)
                curl_multi_remove_handle(x->h->multi, x->easy);
        if (x->easy)
                curl_easy_cleanup(x->easy);
        for (struct curl_slist *l = x->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data)); /* Authorization values */
        curl_slist_free_all(x->headers);
        clear_headers(x);
        free(x->hdrs);
        ossb_strbuf_free(&x->body);
        free(x->url);
        free(x);
}

/* --- driving ------------------------------------------------------------------------------- */

static const char *version_name(long v)
{
        switch (v) {
        case CURL_HTTP_VERSION_1_0:
                return "HTTP/1.0";
        case CURL_HTTP_VERSION_1_1:
                return "HTTP/1.1";
        case CURL_HTTP_VERSION_2_0:
                return "HTTP/2";
        case CURL_HTTP_VERSION_3:
                return "HTTP/3";
        default:
                return "";
        }
}

static void finish(struct ossb_http_xfer *x, CURLcode result)
{
        long v = 0, n = 0;
        x->result = result;
        x->done = true;
        curl_multi_remove_handle(x->h->multi, x->easy);
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &x->os_errno);
        curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &v);
        curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &n);
        curl_off_t app = 0;
        curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &app);
        x->tls_up = app > 0;
        x->h->connects += n;
        if (v == CURL_HTTP_VERSION_2_0)
                x->h->h2++;
        x->version = version_name(v);
        if (ossb_log_get_level() >= OSSB_LOG_DEBUG) {
                _cleanup_free_ char *u = ossb_http_redact_url(x->url);
                if (result == CURLE_OK)
                        log_debug("http: < %s %ld for %s %s", x->version, x->status, x->method, u ? u : "?");
                else
                        log_debug("http: < failed %s %s: %s (curl %d)", x->method, u ? u : "?", ossb_http_xfer_error(x),
                                  (int) result);
        }
}

static void collect(struct ossb_http *h, bool *ret_any)
{
        CURLMsg *m;
        int left = 0;
        while ((m = curl_multi_info_read(h->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                struct ossb_http_xfer *x = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &x);
                if (!x)
                        continue;
                finish(x, m->data.result); /* m is invalid from here */
                *ret_any = true;
        }
}

static int interrupted(struct ossb_error **err)
{
        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted");
}

int ossb_http_poll(struct ossb_http *h, int timeout_ms, struct ossb_error **err)
{
        int running = 0;
        bool any = false;
        if (ossb_interrupted())
                return interrupted(err);
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc == CURLM_OK)
                collect(h, &any);
        if (mc == CURLM_OK && !any && timeout_ms > 0) {
                mc = curl_multi_poll(h->multi, NULL, 0, timeout_ms, NULL);
                if (mc == CURLM_OK)
                        mc = curl_multi_perform(h->multi, &running);
                if (mc == CURLM_OK)
                        collect(h, &any);
        }
        if (mc != CURLM_OK)
                return ossb_error_set(err, -EIO, "HTTP transfer loop failed: %s", curl_multi_strerror(mc));
        if (ossb_interrupted())
                return interrupted(err);
        return 0;
}

int ossb_http_wait(struct ossb_http *h, struct ossb_http_xfer *x, struct ossb_error **err)
{
        while (!x->done) {
                int r = ossb_http_poll(h, 100, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ossb_http_sleep(struct ossb_http *h, int64_t ms, struct ossb_error **err)
{
        int64_t end = now_ms() + ms;
        for (;;) {
                int64_t left = end - now_ms();
                if (left <= 0)
                        return ossb_interrupted() ? interrupted(err) : 0;
                int r = ossb_http_poll(h, left > 100 ? 100 : (int) left, err);
                if (r < 0)
                        return r;
        }
}

/* --- results ------------------------------------------------------------------------------- */

bool ossb_http_xfer_done(const struct ossb_http_xfer *x)
{
        return x->done;
}

/* A TLS alert from the server before any response (TLS 1.3 reports a refused client
 * certificate after the handshake): a TLS failure, not a broken connection to retry. */
static bool tls_alert(const struct ossb_http_xfer *x)
{
        if (x->result == CURLE_OK || x->status != 0)
                return false;
        const char *p = strstr(x->errbuf, "GnuTLS");
        p = p ? strstr(p, "(-") : NULL;
        if (!p)
                return false;
        long code = strtol(p + 1, NULL, 10);
        return code == GNUTLS_E_INVALID_SESSION || code == GNUTLS_E_FATAL_ALERT_RECEIVED ||
               code == GNUTLS_E_CERTIFICATE_REQUIRED;
}

enum ossb_http_fail ossb_http_xfer_fail(const struct ossb_http_xfer *x)
{
        if (x->too_big)
                return OSSB_HTTP_TOO_BIG;
        if (x->sink_error < 0)
                return OSSB_HTTP_ABORTED;
        if (tls_alert(x))
                return OSSB_HTTP_TLS;
        switch (x->result) {
        case CURLE_OK:
                return OSSB_HTTP_OK;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return OSSB_HTTP_CONNECT;
        case CURLE_SSL_CONNECT_ERROR:
                return OSSB_HTTP_TLS;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                return OSSB_HTTP_TLS_VERIFY;
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_CRL_BADFILE:
                return OSSB_HTTP_TLS_FILES;
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_BAD_CONTENT_ENCODING:
                return OSSB_HTTP_BROKEN;
        default:
                return OSSB_HTTP_OTHER;
        }
}

const char *ossb_http_xfer_error(const struct ossb_http_xfer *x)
{
        struct ossb_http_xfer *w = (struct ossb_http_xfer *) x; /* the message is built lazily */
        if (x->result == CURLE_OK)
                return "";
        if (x->result == CURLE_COULDNT_CONNECT && x->os_errno > 0)
                return strerror((int) x->os_errno);
        if (x->errbuf[0])
                snprintf(w->message, sizeof(w->message), "%s", x->errbuf);
        else
                snprintf(w->message, sizeof(w->message), "%s", curl_easy_strerror(x->result));
        return w->message;
}

long ossb_http_xfer_status(const struct ossb_http_xfer *x)
{
        return x->status;
}

const char *ossb_http_xfer_header_n(const struct ossb_http_xfer *x, const char *name, size_t n)
{
        size_t len = strlen(name);
        for (size_t i = 0; i < x->n_hdrs; i++) {
                const char *h = x->hdrs[i];
                if (strncasecmp(h, name, len) != 0 || h[len] != ':')
                        continue;
                if (n-- > 0)
                        continue;
                h += len + 1;
                while (*h == ' ' || *h == '\t')
                        h++;
                return h;
        }
        return NULL;
}

const char *ossb_http_xfer_body(const struct ossb_http_xfer *x, size_t *ret_len)
{
        if (ret_len)
                *ret_len = x->body.len;
        return x->body.buf ? x->body.buf : "";
}

int ossb_http_xfer_sink_error(const struct ossb_http_xfer *x)
{
        return x->sink_error;
}

const char *ossb_http_xfer_url(const struct ossb_http_xfer *x)
{
        return x->url;
}

const char *ossb_http_xfer_method(const struct ossb_http_xfer *x)
{
        return x->method;
}

bool ossb_http_xfer_tls_up(const struct ossb_http_xfer *x)
{
        return x->tls_up;
}

int64_t ossb_http_xfer_sent(const struct ossb_http_xfer *x)
{
        return x->sent;
}

const char *ossb_http_xfer_version(const struct ossb_http_xfer *x)
{
        return x->version;
}

/* --- URLs ---------------------------------------------------------------------------------- */

int ossb_http_url_hostport(const char *url, char **ret_hostport, bool *ret_https)
{
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL;
        int k = -EINVAL;
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            (streq(scheme, "http") || streq(scheme, "https"))) {
                if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) != CURLUE_OK)
                        port = NULL;
                char *hp = NULL;
                k = (port ? asprintf(&hp, "%s:%s", host, port) : asprintf(&hp, "%s", host)) < 0 ? -ENOMEM : 0;
                if (k >= 0) {
                        *ret_hostport = hp;
                        *ret_https = streq(scheme, "https");
                }
        }
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return k;
}

char *ossb_http_url_resolve(const char *base, const char *ref)
{
        CURLU *u = curl_url();
        char *out = NULL, *scheme = NULL;
        if (!u)
                return NULL;
        if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK && curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && (streq(scheme, "http") || streq(scheme, "https")))
                curl_url_get(u, CURLUPART_URL, &out, 0);
        char *ret = out ? strdup(out) : NULL;
        curl_free(out);
        curl_free(scheme);
        curl_url_cleanup(u);
        return ret;
}

char *ossb_http_escape(const char *s)
{
        char *e = curl_easy_escape(NULL, s, 0);
        char *ret = e ? strdup(e) : NULL;
        curl_free(e);
        return ret;
}

int64_t ossb_http_retry_after_ms(const char *value)
{
        if (!value || !*value)
                return -1;
        if (isdigit((unsigned char) value[0])) {
                char *end = NULL;
                errno = 0;
                long long s = strtoll(value, &end, 10);
                if (errno || *end || s < 0)
                        return -1;
                return s > 86400 ? 86400000 : s * 1000;
        }
        time_t t = curl_getdate(value, NULL);
        if (t < 0)
                return -1;
        time_t now = time(NULL);
        if (t <= now)
                return 0;
        return t - now > 86400 ? 86400000 : (int64_t) (t - now) * 1000;
}
