/* registry/client-internal.h - what client.c, client-call.c and client-blobs.c share (never
 * included from outside registry/).
 *
 * Owns: the layout of struct ossb_registry (hosts, credential and token caches, the transport)
 * and struct ossb_repo (its endpoints: mirrors first, the origin last), and struct call: one
 * logical request with its retries, redirects, scheme fallback and auth, driven either
 * synchronously (call_run) or by the blob scheduler (call_issue / call_complete).
 *
 * Threads: every public entry point of client.h takes ossb_registry.lock for its whole
 * duration, so all of this is used by one thread at a time; callbacks (progress, blob ready)
 * run under it and must not call back into the client.
 */
#ifndef OSSB_REGISTRY_CLIENT_INTERNAL_H
#define OSSB_REGISTRY_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry/auth.h"
#include "registry/client.h"
#include "registry/credentials.h"
#include "registry/http.h"

enum host_scheme {
        SCHEME_UNKNOWN = 0, /* https first; plain http after a TLS/connect failure if insecure */
        SCHEME_HTTPS,
        SCHEME_HTTP,
};

/* What the client knows about one HOST[:PORT]. */
struct host {
        char *name;
        bool insecure;           /* plain HTTP and unverified TLS allowed */
        enum host_scheme scheme; /* what worked */
        bool http_tentative;     /* scheme is HTTP only because https failed once */
        bool tls_loaded;
        char *ca_file;           /* CURLOPT_CAINFO: the one CA file, or a concatenation in tmpdir */
        char **cas;              /* the CA files from the cert dirs (messages) */
        char *cert, *key;        /* client identity */
        enum ossb_auth_scheme auth; /* learnt from its 401 answers */
        char *realm, *service;
        struct host *next;
};

struct cred_entry {
        char *repository;
        struct ossb_credential c;
        struct cred_entry *next;
};

struct token {
        char *key;   /* realm \n service \n identity \n scopes */
        char *value; /* wiped when freed */
        int64_t expires_ms;
        struct token *next;
};

struct ossb_registry {
        pthread_mutex_t lock;
        const struct ossb_regconf *conf;
        char *auth_file;
        int max_parallel;
        int max_attempts;
        int64_t retry_budget_ms;
        int64_t chunk_size;
        ossb_transfer_cb progress;
        void *progress_userdata;
        struct ossb_http *http;
        struct host *hosts;
        struct cred_entry *creds;
        struct token *tokens;
        char *tmpdir; /* private (0700) dir for concatenated CA files; NULL until needed */
        uint64_t rng;
        struct ossb_blob_reader reader; /* blobs pushed without being in the store (read == NULL: none) */
};

struct endpoint {
        char *host;       /* HOST[:PORT] the API is served on */
        char *path;       /* the repository path there */
        char *repository; /* "host/path" (credentials, provenance, messages) */
        bool mirror;
        bool dead;        /* a mirror that could not be reached: skipped from then on */
        const struct ossb_credential *cred; /* looked up on first need (cached in the registry) */
};

struct ossb_repo {
        struct ossb_registry *r;
        char *name; /* the repository as referenced: "localhost:5000/app" */
        bool push;
        struct endpoint *eps; /* pull: mirrors in order, then the origin; push: the origin */
        size_t n_eps;
};

static inline struct endpoint *repo_origin(struct ossb_repo *repo)
{
        return &repo->eps[repo->n_eps - 1];
}

enum call_state {
        CALL_IDLE = 0, /* not yet sent */
        CALL_RUNNING,  /* an attempt is in flight (x) */
        CALL_WAITING,  /* a retry is due at not_before_ms */
        CALL_DONE,     /* a final response is in x */
        CALL_FAILED,   /* err (or fail_code with err NULL: the sink's own error) */
};

struct call;
/* (Re)build the request before each attempt; after_failure: the previous attempt failed and
 * is being retried (a multi-step upload restarts, a download resumes). */
typedef int (*call_prepare_fn)(struct call *c, bool after_failure, struct ossb_error **err);

struct call {
        struct ossb_repo *repo;
        struct endpoint *ep;        /* NULL: not a registry API call (token server) */
        /* the request; strings owned */
        char method[8];
        char *url;                  /* absolute, or a path on ep->host ("/v2/...") */
        char **headers;             /* extra headers (never Authorization for registry calls) */
        const void *body;           /* borrowed */
        int body_fd;                /* >= 0: the body is body_len bytes of it from body_off */
        int64_t body_off, body_len;
        size_t max_body;
        ossb_http_sink_fn sink;
        void *sink_userdata;
        char **scopes;              /* extra Bearer scopes (cross-repository mount) */
        bool follow;                /* follow redirects */
        bool auth_soft;             /* a second 401 ends DONE, not FAILED */
        bool no_auth;               /* never send the registry credentials */
        call_prepare_fn prepare;
        void *owner;
        const char *what;           /* "manifest app:1", "blob sha256:..." (messages) */
        const char *event_digest;   /* RETRY events name this (NULL: none sent) */
        bool event_push;
        /* state */
        enum call_state state;
        int attempt;                /* attempts counted against max_attempts */
        int64_t waited_ms;
        int64_t not_before_ms;
        bool after_failure;
        bool auth_retried;
        int redirects;
        char *redirect_url;
        char *challenge_scope;
        char *token_key;            /* the cached token the last attempt used */
        bool exhausted;             /* DONE with a retryable status: no attempts left */
        int fail_code;
        struct ossb_http_xfer *x;
        struct ossb_error *err;
};

/* client.c */
int64_t now_ms(void);
struct host *registry_host(struct ossb_registry *r, const char *name, struct ossb_error **err);
int host_tls(struct ossb_registry *r, struct host *h, struct ossb_http_tls *ret, struct ossb_error **err);
/* "system CAs (/etc/ssl/certs) + /x/ca.crt" for messages; caller frees. */
char *host_ca_description(const struct host *h);
int endpoint_cred(struct ossb_registry *r, struct endpoint *ep, const struct ossb_credential **ret,
                  struct ossb_error **err);
void registry_emit(struct ossb_registry *r, enum ossb_transfer_kind kind, bool push, const char *digest, int64_t done,
                   int64_t total, const char *message);
uint64_t registry_random(struct ossb_registry *r);

/* client-call.c */
void call_init(struct call *c, struct ossb_repo *repo, struct endpoint *ep, const char *method, const char *what);
/* Set c->url (a path on ep, or an absolute URL). */
int call_set_url(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int call_add_header(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forget the request (url, headers, scopes, body, sink) but not the state: for prepare(). */
void call_reset_request(struct call *c);
/* A DONE call whose answer the owner finds wanting (a body cut short): schedule a retry as for
 * a broken transfer; false when no attempts or budget are left. */
bool call_retry(struct call *c, const char *reason);
/* Forget the request and its state (keeps repo, ep, prepare, owner, what). */
void call_reset(struct call *c);
void call_clear(struct call *c);
/* Start an attempt now. On failure the call is FAILED. */
int call_issue(struct call *c);
/* The attempt in flight finished: DONE, FAILED, or RUNNING/WAITING again. */
void call_complete(struct call *c);
/* Run to DONE (0) or FAILED (the error moves to *err). */
int call_run(struct call *c, struct ossb_error **err);
/* Move a FAILED call's error to *err; returns its code. */
int call_take_error(struct call *c, struct ossb_error **err);
/* Give up the attempt in flight (interrupt, abort). */
void call_abort(struct call *c);
long call_status(const struct call *c);
/* Errors for a DONE call with an unexpected answer: names the registry, the object, the
 * status and the distribution error codes. */
int call_http_error(struct call *c, struct ossb_error **err);
/* 401/403 answers: the auth failure message (credential source or anonymous). */
int call_auth_error(struct call *c, struct ossb_error **err);
/* "MANIFEST_UNKNOWN: manifest unknown; ..." from a distribution error body, or NULL; with
 * codes_only "MANIFEST_UNKNOWN". Caller frees. */
char *distribution_errors(const char *body, size_t len, bool codes_only);
/* Absolute URL of `ref` (a Location header) relative to the call's last URL; caller frees. */
char *call_resolve(const struct call *c, const char *ref);
void tokens_free(struct token *t);

/* client-blobs.c: the blob scheduler lives there (ossb_repo_fetch_blobs, ossb_repo_push_blobs). */

#endif
