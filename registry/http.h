/* registry/http.h - the registry client's transport: one libcurl multi handle per client,
 * transfers driven from the calling thread (internal to registry/, see client.h).
 *
 * Owns: struct ossb_http (the multi handle: its connection cache, DNS cache and HTTP/2
 * multiplexing are shared by every transfer of one client) and struct ossb_http_xfer (one
 * request and the last response it got: status, headers, body).  Nothing here retries,
 * follows redirects or authenticates: client-call.c does that.  libcurl's codes stop here:
 * a failed transfer is classified (enum ossb_http_fail) with a readable message.
 *
 * Use: ossb_http_xfer_new() with a request, ossb_http_xfer_start(), then ossb_http_poll()
 * (which marks finished transfers done, any of them) until ossb_http_xfer_done(); or
 * ossb_http_wait() for one transfer.  Response bodies of 2xx answers go to the request's
 * sink, or to memory (at most max_body bytes: a longer answer aborts with OSSB_HTTP_TOO_BIG);
 * other answers' bodies are kept in memory (first 64 KiB) for error messages.
 * Debug logs name each request and response; Authorization values are never logged.
 */
#ifndef OSSB_REGISTRY_HTTP_H
#define OSSB_REGISTRY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct ossb_http;
struct ossb_http_xfer;

/* Per-host TLS settings (strings borrowed for the transfer's life). */
struct ossb_http_tls {
        const char *ca_file; /* extra trusted CAs (PEM), on top of the system store; NULL: none */
        const char *cert;    /* client certificate (PEM) or NULL */
        const char *key;     /* its key (PEM) or NULL */
        bool insecure;       /* do not verify the server's certificate */
};

/* Called for each piece of a 2xx answer's body; a negative return aborts the transfer
 * (OSSB_HTTP_ABORTED, the code kept in ossb_http_xfer_sink_error). */
typedef int (*ossb_http_sink_fn)(void *userdata, struct ossb_http_xfer *x, const char *data, size_t len);

struct ossb_http_request {
        const char *method;         /* "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE" */
        const char *url;            /* absolute http:// or https:// URL */
        char *const *headers;       /* "Name: value" lines, NULL-terminated; may be NULL */
        const struct ossb_http_tls *tls; /* may be NULL */
        /* request body: body_fd >= 0 sends body_len bytes of that file from body_off; else
         * body/body_len (PUT, PATCH, POST; may be empty).  Borrowed until the transfer ends. */
        const void *body;
        int body_fd;
        int64_t body_off;
        int64_t body_len;
        /* response body */
        size_t max_body;            /* memory mode: larger answers abort (OSSB_HTTP_TOO_BIG) */
        ossb_http_sink_fn sink;     /* when set, 2xx bodies go here instead of memory */
        void *sink_userdata;
};

enum ossb_http_fail {
        OSSB_HTTP_OK = 0,         /* a complete response arrived (whatever its status) */
        OSSB_HTTP_CONNECT,        /* no connection: refused, unreachable, name not resolved */
        OSSB_HTTP_TLS,            /* the TLS handshake failed (also: the server does not speak TLS) */
        OSSB_HTTP_TLS_VERIFY,     /* the server's certificate was not trusted */
        OSSB_HTTP_TLS_FILES,      /* a CA file, client certificate or key could not be used */
        OSSB_HTTP_BROKEN,         /* the connection broke, timed out, or the body was cut short */
        OSSB_HTTP_TOO_BIG,        /* the body was larger than max_body */
        OSSB_HTTP_ABORTED,        /* the sink refused the body */
        OSSB_HTTP_OTHER,          /* anything else (bad URL, out of memory, ...) */
};

struct ossb_http_opts {
        const char *user_agent;   /* "ossb/<version>" */
        int max_host_connections; /* per host; <= 0: no bound */
        long connect_timeout_ms;  /* <= 0: 30 s */
        long stall_timeout_s;     /* abort when no byte moved for this long; <= 0: 60 s */
};

int ossb_http_new(const struct ossb_http_opts *opts, struct ossb_http **ret, struct ossb_error **err);
/* Aborts and frees nothing the caller owns: free transfers first. Accepts NULL. */
void ossb_http_free(struct ossb_http *h);

/* Prepare a transfer (not started).  The request's strings are copied, except the body. */
int ossb_http_xfer_new(struct ossb_http *h, const struct ossb_http_request *rq, struct ossb_http_xfer **ret,
                       struct ossb_error **err);
/* Hand it to the multi handle; it runs during ossb_http_poll. */
int ossb_http_xfer_start(struct ossb_http_xfer *x, struct ossb_error **err);
/* Remove from the multi handle if still running, and free.  Accepts NULL. */
void ossb_http_xfer_free(struct ossb_http_xfer *x);

/* Drive all started transfers for up to timeout_ms (returns early when one finished).
 * -EINTR (with a message) when the process was interrupted (common/interrupt.h). */
int ossb_http_poll(struct ossb_http *h, int timeout_ms, struct ossb_error **err);
/* Poll until x is done. */
int ossb_http_wait(struct ossb_http *h, struct ossb_http_xfer *x, struct ossb_error **err);
/* Sleep for ms milliseconds while driving the running transfers (interruptible: -EINTR). */
int ossb_http_sleep(struct ossb_http *h, int64_t ms, struct ossb_error **err);

/* Results (valid once done). */
bool ossb_http_xfer_done(const struct ossb_http_xfer *x);
enum ossb_http_fail ossb_http_xfer_fail(const struct ossb_http_xfer *x);
/* A readable reason for a failure ("Connection refused", libcurl's message), "" when none. */
const char *ossb_http_xfer_error(const struct ossb_http_xfer *x);
long ossb_http_xfer_status(const struct ossb_http_xfer *x); /* 0 when no response */
/* The value of the n-th (from 0) header `name` (case-insensitive) of the last response. */
const char *ossb_http_xfer_header_n(const struct ossb_http_xfer *x, const char *name, size_t n);
static inline const char *ossb_http_xfer_header(const struct ossb_http_xfer *x, const char *name)
{
        return ossb_http_xfer_header_n(x, name, 0);
}
/* The body kept in memory (NUL-terminated; "" when none). */
const char *ossb_http_xfer_body(const struct ossb_http_xfer *x, size_t *ret_len);
int ossb_http_xfer_sink_error(const struct ossb_http_xfer *x);
const char *ossb_http_xfer_url(const struct ossb_http_xfer *x);
const char *ossb_http_xfer_method(const struct ossb_http_xfer *x);
/* Whether a TLS session was established (a server that then closes without answering may
 * have refused the client certificate). */
bool ossb_http_xfer_tls_up(const struct ossb_http_xfer *x);
/* Request body bytes sent so far (for progress). */
int64_t ossb_http_xfer_sent(const struct ossb_http_xfer *x);
/* "HTTP/2", "HTTP/1.1" or "" - the protocol of the last response. */
const char *ossb_http_xfer_version(const struct ossb_http_xfer *x);
/* For tests: how many connections the multi handle opened, and how many responses came over
 * HTTP/2 (both summed over finished transfers). */
long ossb_http_connects(const struct ossb_http *h);
long ossb_http_h2_responses(const struct ossb_http *h);

/* URL helpers (libcurl's parser).  "HOST[:PORT]" of an absolute URL (default ports left
 * out), and whether it is https; -EINVAL for a URL that is not http(s). */
int ossb_http_url_hostport(const char *url, char **ret_hostport, bool *ret_https);
/* `ref` (absolute, or relative as in a Location header) resolved against `base`; caller frees;
 * NULL when it cannot be parsed or is not http(s). */
char *ossb_http_url_resolve(const char *base, const char *ref);
/* Percent-encode for a query value; caller frees; NULL on ENOMEM. */
char *ossb_http_escape(const char *s);
/* A Retry-After value (delay-seconds or an HTTP-date) in milliseconds from now; -1 when
 * absent or unreadable. */
int64_t ossb_http_retry_after_ms(const char *value);

/* A URL fit for a debug log: values of query parameters that may carry credentials
 * (signatures, tokens) replaced by "<redacted>".  Caller frees; NULL on ENOMEM. */
char *ossb_http_redact_url(const char *url);

#endif
