/* registry/client.h - talking to registries: one client per command, one session per repository.
 *
 * Owns: the HTTP transport (libcurl multi handle: connection reuse, HTTP/2 where offered, up to
 * max_parallel transfers in flight, User-Agent "ossb/<version>"), TLS setup per host (system CAs
 * plus the regconf cert dirs, client certs), the choice of plain HTTP (only for hosts
 * ossb_regconf_insecure allows: https is tried first, http used when the server does not speak
 * TLS), mirrors (tried in order for pulls, the origin last; pushes go to the origin), retries
 * (connection errors, 408/429/5xx, with exponential backoff and jitter, Retry-After honoured,
 * bounded by attempts and total time), resumption of interrupted blob downloads with Range,
 * the auth flow (401 -> WWW-Authenticate -> Basic, or a Bearer token fetched anonymously or
 * with the credential, a token cache per scope, one re-auth on 401), and digest verification
 * of everything read.  Authorization headers and secrets never reach logs or messages.
 *
 * All errors carry OSSB_EXIT_REGISTRY and name the registry, repository and object at fault;
 * auth failures also name the credential source used (ossb_credential.source) or say that
 * the request was anonymous.
 */
#ifndef OSSB_REGISTRY_CLIENT_H
#define OSSB_REGISTRY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/image.h"
#include "oci/store.h"
#include "registry/reference.h"
#include "registry/regconf.h"

enum ossb_transfer_kind {
        OSSB_TRANSFER_START = 0, /* a blob transfer begins (total = its size) */
        OSSB_TRANSFER_PROGRESS,  /* bytes moved (done/total), at most ~10 per second per blob */
        OSSB_TRANSFER_RETRY,     /* a retry is scheduled; message says why and when */
        OSSB_TRANSFER_DONE,      /* complete and verified */
        OSSB_TRANSFER_EXISTS,    /* pull: already in the store; push: already in the registry */
        OSSB_TRANSFER_MOUNTED,   /* push: cross-repository mount succeeded */
};

struct ossb_transfer_event {
        enum ossb_transfer_kind kind;
        bool push;
        const char *digest;
        int64_t done;
        int64_t total;
        const char *message; /* RETRY: "HTTP 503, retrying in 1.2 s (attempt 2/6)"; else NULL */
};

typedef void (*ossb_transfer_cb)(void *userdata, const struct ossb_transfer_event *ev);

struct ossb_registry_opts {
        const struct ossb_regconf *conf; /* required, borrowed for the client's life */
        const char *auth_file;           /* --registry-auth-file or NULL */
        int max_parallel;                /* blobs in flight; <= 0: 4 */
        int max_attempts;                /* per request; <= 0: 6 */
        int64_t retry_budget_ms;         /* total time spent waiting to retry, per request; <= 0: 60000 */
        int64_t chunk_size;              /* push: blobs larger than this go up in PATCH chunks of this
                                          * size; <= 0: $OSSB_PUSH_CHUNK_SIZE, else 64 MiB */
        ossb_transfer_cb progress;       /* may be NULL; called from the calling thread */
        void *progress_userdata;
};

struct ossb_registry;
struct ossb_repo;

int ossb_registry_new(const struct ossb_registry_opts *opts, struct ossb_registry **ret, struct ossb_error **err);
void ossb_registry_free(struct ossb_registry *r);

/* A session for the repository of `ref` (its domain and path; tag/digest ignored).  `push`
 * asks for pull,push scope and disables mirrors.  Nothing is sent yet. */
int ossb_repo_open(struct ossb_registry *r, const struct ossb_reference *ref, bool push, struct ossb_repo **ret,
                   struct ossb_error **err);
void ossb_repo_free(struct ossb_repo *repo);
/* "localhost:5000/app" (for messages). */
const char *ossb_repo_name(const struct ossb_repo *repo);

struct ossb_fetched_manifest {
        char *data;       /* the bytes as served (owned) */
        size_t len;
        char *media_type; /* from Content-Type, or the body's mediaType when the header is generic */
        char digest[OSSB_DIGEST_STR_LEN + 1];
};

/* GET a manifest or index by tag or digest, Accepting OCI and Docker schema 2 manifests and
 * indexes.  At most OSSB_MANIFEST_MAX_SIZE bytes.  The digest is computed from the bytes; for a
 * digest reference it must match, and a Docker-Content-Digest header must match too.  An unknown
 * tag or repository (404, MANIFEST_UNKNOWN, NAME_UNKNOWN) is -ENOENT with a clear message. */
int ossb_repo_get_manifest(struct ossb_repo *repo, const char *tag_or_digest, struct ossb_fetched_manifest *ret,
                           struct ossb_error **err);
void ossb_fetched_manifest_clear(struct ossb_fetched_manifest *m);

/* Called (from the calling thread) each time blob `index` of a fetch_blobs call is complete
 * and verified in the store (also when it was there already).  A negative return aborts. */
typedef int (*ossb_blob_ready_cb)(void *userdata, size_t index);

/* Download blobs into the store, up to max_parallel at once, skipping those the store has.
 * Each is verified against its digest and size (a mismatch stores nothing: -EBADMSG naming the
 * blob and registry); an interrupted download resumes with Range when the server allows, else
 * restarts.  Records where each blob came from (ossb_blob_source_add).  `ready` may be NULL. */
int ossb_repo_fetch_blobs(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *descs,
                          size_t n, ossb_blob_ready_cb ready, void *userdata, struct ossb_error **err);

/* HEAD a blob.  *ret_exists false on 404. */
int ossb_repo_blob_exists(struct ossb_repo *repo, const char *digest, bool *ret_exists, struct ossb_error **err);

/* Upload blobs from the store, up to max_parallel at once: for each, HEAD (exists: done), then
 * a cross-repository mount from a repository of the same registry it is known to come from
 * (ossb_blob_source_get), else an upload: monolithic (POST + PUT), or POST + PATCH chunks + PUT
 * for blobs larger than chunk_size.  A mount answered with 202 continues as an upload. */
int ossb_repo_push_blobs(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *descs,
                         size_t n, struct ossb_error **err);

/* Blobs that are not in the store but can be read from elsewhere (a base layer a build read
 * lazily from another registry): ossb_repo_push_blobs uploads such a blob in chunks, reading
 * each chunk from `read` just before its PATCH and hashing the bytes in order, so the blob is
 * never held whole (at most one chunk, in memory); a digest mismatch fails the push before the
 * upload is completed.  `has` says whether the reader serves a blob (its digest and size).
 * Both are called with the registry's lock held, from the thread pushing. */
struct ossb_blob_reader {
        bool (*has)(void *userdata, const char *digest, int64_t size);
        int (*read)(void *userdata, const char *digest, int64_t off, void *buf, size_t len, struct ossb_error **err);
        void *userdata;
};
/* Set (or with NULL clear) the registry client's blob reader. */
void ossb_registry_set_blob_reader(struct ossb_registry *r, const struct ossb_blob_reader *rd);

/* PUT a manifest or index under a tag or digest with its media type as Content-Type; the
 * registry's Docker-Content-Digest, when sent, must equal the bytes' digest. */
int ossb_repo_put_manifest(struct ossb_repo *repo, const char *tag_or_digest, const char *media_type,
                           const char *data, size_t len, struct ossb_error **err);

/* Blob provenance, kept in the store's root under sources/<hex> (one "HOST[:PORT]/path" line
 * per repository, written atomically); used to choose cross-repository mounts. */
int ossb_blob_source_add(struct ossb_store *store, const char *digest, const char *repository,
                         struct ossb_error **err);
/* NULL-terminated list of repositories (caller frees with ossb_strv_free); empty list when none. */
int ossb_blob_source_get(struct ossb_store *store, const char *digest, char ***ret, struct ossb_error **err);

#endif
