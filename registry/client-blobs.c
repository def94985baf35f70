/* registry/client-blobs.c - blob transfers, several at once on the client's multi handle:
 * downloads into the store (resumed with Range, verified, mirrors then the origin) and uploads
 * from it (HEAD, cross-repository mount, monolithic or chunked upload; a blob the store lacks
 * streamed chunk by chunk from the registry's blob reader).  One scheduler drives
 * both: each blob is a task whose current request is a struct call; the task's step function
 * looks at each final answer and issues the next request or finishes.  See client.h. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "registry/client-internal.h"

#define PROGRESS_INTERVAL_MS 100

struct task {
        struct call call;
        size_t index;
        bool active;   /* begun and not finished */
        bool finished; /* done, present, or mounted */
        char what[96];
        int64_t last_event_ms;
        int64_t last_event_bytes;
};

struct sched_ops {
        /* start task t (it may finish at once: already present) */
        int (*begin)(void *ctx, struct task *t, struct ossb_error **err);
        /* t's call is DONE or FAILED: issue the next request, or finish, or fail */
        int (*step)(void *ctx, struct task *t, struct ossb_error **err);
        /* t finished */
        int (*done)(void *ctx, struct task *t, struct ossb_error **err);
        /* bytes moved so far (progress events) */
        int64_t (*bytes)(void *ctx, struct task *t, int64_t *ret_total, const char **ret_digest);
        /* release t's resources (abort or end) */
        void (*release)(void *ctx, struct task *t);
        bool push;
};

static void progress_tick(struct ossb_registry *r, const struct sched_ops *ops, void *ctx, struct task *t)
{
        if (!r->progress)
                return;
        int64_t total = 0;
        const char *digest = NULL;
        int64_t done = ops->bytes(ctx, t, &total, &digest);
        int64_t now = now_ms();
        if (done == t->last_event_bytes || now - t->last_event_ms < PROGRESS_INTERVAL_MS)
                return;
        t->last_event_ms = now;
        t->last_event_bytes = done;
        registry_emit(r, OSSB_TRANSFER_PROGRESS, ops->push, digest, done, total, NULL);
}

static int start_tasks(struct ossb_registry *r, struct task **tasks, size_t n, size_t *next, int *active,
                       const struct sched_ops *ops, void *ctx, struct ossb_error **err)
{
        int k = 0;
        while (k >= 0 && *active < r->max_parallel && *next < n) {
                struct task *t = tasks[(*next)++];
                k = ops->begin(ctx, t, err);
                if (k >= 0 && t->finished)
                        k = ops->done(ctx, t, err);
                else if (k >= 0) {
                        t->active = true;
                        (*active)++;
                }
        }
        return k;
}

/* Issue the calls that are due; the poll timeout until the next due retry. */
static int issue_due(struct task **tasks, size_t next)
{
        int64_t now = now_ms(), wake = now + 100;
        for (size_t i = 0; i < next; i++) {
                struct call *c = &tasks[i]->call;
                if (!tasks[i]->active)
                        continue;
                if (c->state == CALL_IDLE || (c->state == CALL_WAITING && c->not_before_ms <= now))
                        call_issue(c);
                if (c->state == CALL_WAITING && c->not_before_ms < wake)
                        wake = c->not_before_ms;
        }
        return wake > now ? (int) (wake - now) : 0;
}

static int complete_tasks(struct ossb_registry *r, struct task **tasks, size_t next, int *active,
                          const struct sched_ops *ops, void *ctx, struct ossb_error **err)
{
        for (size_t i = 0; i < next; i++) {
                struct task *t = tasks[i];
                struct call *c = &t->call;
                if (!t->active)
                        continue;
                if (c->state == CALL_RUNNING && ossb_http_xfer_done(c->x))
                        call_complete(c);
                if (c->state == CALL_DONE || c->state == CALL_FAILED) {
                        int k = ops->step(ctx, t, err);
                        if (k < 0)
                                return k;
                        if (t->finished) {
                                t->active = false;
                                (*active)--;
                                k = ops->done(ctx, t, err);
                                if (k < 0)
                                        return k;
                                continue;
                        }
                }
                progress_tick(r, ops, ctx, t);
        }
        return 0;
}

static int schedule(struct ossb_registry *r, struct task **tasks, size_t n, const struct sched_ops *ops, void *ctx,
                    struct ossb_error **err)
{
        size_t next = 0;
        int active = 0, k = 0;
        for (;;) {
                k = start_tasks(r, tasks, n, &next, &active, ops, ctx, err);
                if (k < 0 || (active == 0 && next == n))
                        break;
                int timeout = issue_due(tasks, next);
                k = ossb_http_poll(r->http, timeout, err);
                if (k < 0)
                        break;
                k = complete_tasks(r, tasks, next, &active, ops, ctx, err);
                if (k < 0)
                        break;
        }
        for (size_t i = 0; i < n; i++) {
                if (tasks[i]->active)
                        call_abort(&tasks[i]->call);
                call_clear(&tasks[i]->call);
                ops->release(ctx, tasks[i]);
        }
        return k;
}

/* The error of a FAILED call, as the task's. */
static int task_error(struct task *t, struct ossb_error **own, struct ossb_error **err)
{
        int code = t->call.fail_code < 0 ? t->call.fail_code : -EIO;
        if (own && *own) {
                code = (*own)->code;
                if (err && !*err)
                        *err = TAKE_PTR(*own);
                ossb_error_free(*own);
                *own = NULL;
                ossb_error_free(t->call.err);
                t->call.err = NULL;
                return code;
        }
        return call_take_error(&t->call, err);
}

static void record_source(struct ossb_store *store, const char *digest, const char *repository)
{
        struct ossb_error *e = NULL;
        if (ossb_blob_source_add(store, digest, repository, &e) < 0)
                log_debug("cannot record that %s comes from %s: %s", digest, repository, e && e->msg ? e->msg : "?");
        ossb_error_free(e);
}

/* --- downloads ----------------------------------------------------------------------------- */

struct fetch_ctx {
        struct ossb_repo *repo;
        struct ossb_store *store;
        ossb_blob_ready_cb ready;
        void *userdata;
};

struct fetch_task {
        struct task t; /* first */
        struct fetch_ctx *ctx;
        const struct ossb_descriptor *d;
        size_t ep_i;
        struct ossb_store_ingest *in;
        int64_t received;
        bool fresh;       /* the next attempt starts from byte 0 */
        bool range_sent;  /* this attempt asked for bytes received- */
        bool first_write; /* this attempt has written nothing yet */
        struct ossb_error *err; /* the sink's own error */
};

static int fetch_new_ingest(struct fetch_task *ft, struct ossb_error **err)
{
        ossb_store_ingest_free(ft->in);
        ft->in = NULL;
        ft->received = 0;
        return ossb_store_ingest_new(ft->ctx->store, &ft->in, err);
}

static int fetch_prepare(struct call *c, bool after_failure, struct ossb_error **err)
{
        struct fetch_task *ft = c->owner;
        ossb_strv_free(c->headers);
        c->headers = NULL;
        if (ft->fresh || !ft->in) {
                int k = fetch_new_ingest(ft, err);
                if (k < 0)
                        return k;
                ft->fresh = false;
        }
        ft->range_sent = ft->received > 0;
        ft->first_write = true;
        if (ft->range_sent && call_add_header(c, "Range: bytes=%" PRId64 "-", ft->received) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (after_failure && ft->range_sent)
                log_debug("registry: resuming %s at byte %" PRId64, ft->d->digest, ft->received);
        return 0;
}

static int64_t header_int(struct ossb_http_xfer *x, const char *name)
{
        const char *v = ossb_http_xfer_header(x, name);
        char *end = NULL;
        if (!v)
                return -1;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        return errno || end == v || n < 0 ? -1 : n;
}

/* A 206 must continue exactly where we are: "bytes START-END/TOTAL". */
static bool range_matches(struct fetch_task *ft, struct ossb_http_xfer *x)
{
        const char *v = ossb_http_xfer_header(x, "Content-Range");
        long long start = -1;
        if (!v || strncmp(v, "bytes ", 6) != 0)
                return false;
        char *end = NULL;
        errno = 0;
        start = strtoll(v + 6, &end, 10);
        return errno == 0 && end != v + 6 && *end == '-' && start == ft->received;
}

static int fetch_first_write(struct fetch_task *ft, struct ossb_http_xfer *x)
{
        long st = ossb_http_xfer_status(x);
        ft->first_write = false;
        if (st == 206 && (!ft->range_sent || !range_matches(ft, x))) {
                log_debug("registry: %s: unexpected Content-Range `%s`; restarting the download", ft->d->digest,
                          ossb_http_xfer_header(x, "Content-Range") ?: "");
                ft->fresh = true;
                return -EAGAIN;
        }
        if (st != 206 && ft->received > 0) {
                log_debug("registry: %s: the server sent the whole blob; restarting", ft->d->digest);
                int k = fetch_new_ingest(ft, &ft->err);
                if (k < 0)
                        return k;
        }
        int64_t cl = header_int(x, "Content-Length");
        if (cl >= 0 && ft->received + cl > ft->d->size)
                return ossb_error_setx(&ft->err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "blob %s from %s is larger (%" PRId64 " bytes) than its descriptor says (%" PRId64 ")",
                                       ft->d->digest, ft->t.call.ep->repository, ft->received + cl, ft->d->size);
        return 0;
}

static int fetch_sink(void *userdata, struct ossb_http_xfer *x, const char *data, size_t len)
{
        struct fetch_task *ft = userdata;
        if (ft->first_write) {
                int k = fetch_first_write(ft, x);
                if (k < 0)
                        return k;
        }
        if (ft->received + (int64_t) len > ft->d->size)
                return ossb_error_setx(&ft->err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "blob %s from %s is larger than its descriptor says (%" PRId64 " bytes)",
                                       ft->d->digest, ft->t.call.ep->repository, ft->d->size);
        int k = ossb_store_ingest_write(ft->in, data, len, &ft->err);
        if (k < 0)
                return k;
        ft->received += (int64_t) len;
        return 0;
}

static void fetch_setup(struct fetch_task *ft)
{
        struct call *c = &ft->t.call;
        struct endpoint *ep = &ft->ctx->repo->eps[ft->ep_i];
        call_init(c, ft->ctx->repo, ep, "GET", ft->t.what);
        c->follow = true;
        c->max_body = 0;
        c->sink = fetch_sink;
        c->sink_userdata = ft;
        c->prepare = fetch_prepare;
        c->owner = ft;
        c->event_digest = ft->d->digest;
        ft->fresh = true;
}

static int fetch_setup_url(struct fetch_task *ft, struct ossb_error **err)
{
        struct call *c = &ft->t.call;
        if (call_set_url(c, "/v2/%s/blobs/%s", c->ep->path, ft->d->digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

static int fetch_begin(void *ctx, struct task *t, struct ossb_error **err)
{
        struct fetch_ctx *fc = ctx;
        struct fetch_task *ft = (struct fetch_task *) t;
        struct ossb_registry *r = fc->repo->r;
        if (!ossb_digest_is_valid(ft->d->digest) || ft->d->size < 0)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "invalid blob descriptor `%s` (size %" PRId64 ")",
                                       ft->d->digest, ft->d->size);
        if (ossb_store_has(fc->store, ft->d->digest)) {
                registry_emit(r, OSSB_TRANSFER_EXISTS, false, ft->d->digest, ft->d->size, ft->d->size, NULL);
                record_source(fc->store, ft->d->digest, repo_origin(fc->repo)->repository);
                t->finished = true;
                return 0;
        }
        ft->ep_i = 0;
        while (fc->repo->eps[ft->ep_i].mirror && fc->repo->eps[ft->ep_i].dead)
                ft->ep_i++;
        fetch_setup(ft);
        registry_emit(r, OSSB_TRANSFER_START, false, ft->d->digest, 0, ft->d->size, NULL);
        return fetch_setup_url(ft, err);
}

/* A mirror failed: the next endpoint (the origin last). */
static int fetch_next_endpoint(struct fetch_task *ft, struct ossb_error **err)
{
        struct ossb_repo *repo = ft->ctx->repo;
        call_clear(&ft->t.call);
        do
                ft->ep_i++;
        while (ft->ep_i + 1 < repo->n_eps && repo->eps[ft->ep_i].dead);
        fetch_setup(ft);
        return fetch_setup_url(ft, err);
}

static int fetch_failed_mirror(struct fetch_task *ft, int code, const char *why, struct ossb_error **err)
{
        struct endpoint *ep = ft->t.call.ep;
        log_debug("mirror %s: %s: %s; trying the next endpoint", ep->host, ft->d->digest, why);
        if (code == -ECONNREFUSED || code == -EPROTO)
                ep->dead = true;
        ossb_error_free(ft->err);
        ft->err = NULL;
        return fetch_next_endpoint(ft, err);
}

static int fetch_commit(struct fetch_task *ft, struct ossb_error **err)
{
        struct ossb_error *e = NULL;
        struct endpoint *ep = ft->t.call.ep;
        int k = ossb_store_ingest_commit(ft->in, ft->d->digest, NULL, NULL, &e);
        ossb_store_ingest_free(ft->in);
        ft->in = NULL;
        if (k < 0 && ep->mirror) {
                k = fetch_failed_mirror(ft, k, e && e->msg ? e->msg : "cannot store", err);
                ossb_error_free(e);
                return k;
        }
        if (k < 0) {
                if (err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
                if (k == -EBADMSG)
                        ossb_error_wrap(err, "blob %s from %s does not match its digest", ft->d->digest, ep->repository);
                ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                return k;
        }
        registry_emit(ft->ctx->repo->r, OSSB_TRANSFER_DONE, false, ft->d->digest, ft->d->size, ft->d->size, NULL);
        record_source(ft->ctx->store, ft->d->digest, repo_origin(ft->ctx->repo)->repository);
        ft->t.finished = true;
        return 0;
}

static int fetch_answer(struct fetch_task *ft, struct ossb_error **err)
{
        struct call *c = &ft->t.call;
        long st = call_status(c);
        if (st == 416 && ft->range_sent && ft->received == ft->d->size)
                return fetch_commit(ft, err); /* it broke after the last byte */
        if (st == 416 && ft->range_sent) {
                ft->fresh = true;
                if (call_retry(c, "HTTP 416 to a Range request"))
                        return 0;
        }
        if (st == 200 || st == 206) {
                if (ft->received < ft->d->size) {
                        char reason[160];
                        snprintf(reason, sizeof(reason), "the body ended after %" PRId64 " of %" PRId64 " bytes",
                                 ft->received, ft->d->size);
                        if (call_retry(c, reason))
                                return 0;
                        if (c->ep->mirror)
                                return fetch_failed_mirror(ft, -EIO, reason, err);
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EIO, "blob %s from %s: %s (gave up after %d attempts)",
                                               ft->d->digest, c->ep->repository, reason, c->attempt);
                }
                return fetch_commit(ft, err);
        }
        if (c->ep->mirror) {
                char why[32];
                snprintf(why, sizeof(why), "HTTP %ld", st);
                return fetch_failed_mirror(ft, -ENOENT, why, err);
        }
        if (st == 404)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "blob %s not found in %s (BLOB_UNKNOWN)",
                                       ft->d->digest, c->ep->repository);
        if (st == 401 || st == 403)
                return call_auth_error(c, err);
        return call_http_error(c, err);
}

static int fetch_step(void *ctx, struct task *t, struct ossb_error **err)
{
        struct fetch_task *ft = (struct fetch_task *) t;
        struct call *c = &t->call;
        if (c->state == CALL_FAILED) {
                if (c->ep->mirror && c->fail_code != -EINTR) {
                        struct ossb_error *e = c->err ? c->err : ft->err;
                        char why[512];
                        snprintf(why, sizeof(why), "%s", e && e->msg ? e->msg : "failed");
                        return fetch_failed_mirror(ft, c->fail_code, why, err);
                }
                return task_error(t, &ft->err, err);
        }
        return fetch_answer(ft, err);
}

static int fetch_done(void *ctx, struct task *t, struct ossb_error **err)
{
        struct fetch_ctx *fc = ctx;
        if (!fc->ready)
                return 0;
        int k = fc->ready(fc->userdata, t->index);
        if (k < 0)
                return ossb_error_set(err, k, "blob download stopped (%s)", strerror(-k));
        return 0;
}

static int64_t fetch_bytes(void *ctx, struct task *t, int64_t *ret_total, const char **ret_digest)
{
        struct fetch_task *ft = (struct fetch_task *) t;
        *ret_total = ft->d->size;
        *ret_digest = ft->d->digest;
        return ft->received;
}

static void fetch_release(void *ctx, struct task *t)
{
        struct fetch_task *ft = (struct fetch_task *) t;
        ossb_store_ingest_free(ft->in); /* an unfinished download leaves nothing behind */
        ft->in = NULL;
        ossb_error_free(ft->err);
        ft->err = NULL;
}

static const struct sched_ops fetch_ops = {
        .begin = fetch_begin, .step = fetch_step, .done = fetch_done, .bytes = fetch_bytes,
        .release = fetch_release, .push = false,
};

int ossb_repo_fetch_blobs(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *descs,
                          size_t n, ossb_blob_ready_cb ready, void *userdata, struct ossb_error **err)
{
        struct fetch_ctx fc = { .repo = repo, .store = store, .ready = ready, .userdata = userdata };
        struct fetch_task *ft = calloc(n ? n : 1, sizeof(*ft));
        struct task **tasks = calloc(n ? n : 1, sizeof(*tasks));
        if (!ft || !tasks) {
                free(ft);
                free(tasks);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                ft[i].ctx = &fc;
                ft[i].d = &descs[i];
                ft[i].t.index = i;
                ft[i].t.call.body_fd = -1;
                snprintf(ft[i].t.what, sizeof(ft[i].t.what), "blob %s", descs[i].digest);
                tasks[i] = &ft[i].t;
        }
        pthread_mutex_lock(&repo->r->lock);
        int k = schedule(repo->r, tasks, n, &fetch_ops, &fc, err);
        pthread_mutex_unlock(&repo->r->lock);
        free(tasks);
        free(ft);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        return k;
}

/* --- uploads ------------------------------------------------------------------------------- */

enum push_step {
        PUSH_HEAD = 0, /* is it there already? */
        PUSH_MOUNT,    /* POST ?mount=&from= */
        PUSH_POST,     /* start an upload */
        PUSH_PUT,      /* monolithic: the whole blob with ?digest= */
        PUSH_PATCH,    /* one chunk */
        PUSH_FINAL,    /* chunked: PUT ?digest= with no body */
};

struct push_ctx {
        struct ossb_repo *repo;
        struct ossb_store *store;
};

struct push_task {
        struct task t; /* first */
        struct push_ctx *ctx;
        const struct ossb_descriptor *d;
        int fd;
        enum push_step step;
        char **mounts; /* repository paths on this registry the blob is known in */
        size_t mount_i;
        char *location; /* the upload's URL */
        int64_t offset; /* bytes the registry has */
        int64_t chunk;  /* PATCH: this chunk's length */
        bool started;
        /* streamed from the registry's blob reader (not in the store): fd is a memfd holding
         * the current chunk; the bytes up to `hashed` went into `sha` */
        bool stream;
        bool absent; /* neither in the store nor readable: only HEAD and mounts can succeed */
        struct ossb_sha256 *sha;
        int64_t hashed;
};

#define STREAM_CHUNK_MAX (16 * 1024 * 1024)

static int64_t chunk_size(const struct push_task *pt)
{
        int64_t c = pt->ctx->repo->r->chunk_size;
        return pt->stream && c > STREAM_CHUNK_MAX ? STREAM_CHUNK_MAX : c;
}

static enum push_step upload_step(const struct push_task *pt)
{
        return pt->stream || pt->d->size > chunk_size(pt) ? PUSH_PATCH : PUSH_PUT;
}

/* Streaming: read the chunk [offset, offset+chunk) from the reader into the memfd, hashing
 * it when it is the next part of the blob (a retried PATCH re-reads, but hashes once). */
static int stream_fill(struct push_task *pt, struct ossb_error **err)
{
        const struct ossb_blob_reader *rd = &pt->ctx->repo->r->reader;
        if (pt->offset == 0 && pt->hashed != 0) { /* the upload restarted */
                ossb_sha256_free(pt->sha);
                pt->sha = NULL;
                pt->hashed = 0;
        }
        if (!pt->sha && ossb_sha256_new(&pt->sha) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        _cleanup_free_ char *buf = malloc((size_t) pt->chunk);
        if (!buf)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int k = rd->read(rd->userdata, pt->d->digest, pt->offset, buf, (size_t) pt->chunk, err);
        if (k < 0)
                return ossb_error_wrap(err, "streaming blob %s to %s", pt->d->digest,
                                       repo_origin(pt->ctx->repo)->repository);
        if (ftruncate(pt->fd, 0) < 0 || pwrite(pt->fd, buf, (size_t) pt->chunk, 0) != pt->chunk)
                return ossb_error_set(err, -errno, "cannot buffer a chunk of blob %s: %m", pt->d->digest);
        if (pt->offset == pt->hashed) {
                ossb_sha256_update(pt->sha, buf, (size_t) pt->chunk);
                pt->hashed += pt->chunk;
        }
        return 0;
}

/* Streaming, before the final PUT: the bytes sent must be the blob. */
static int stream_check(struct push_task *pt, struct ossb_error **err)
{
        char got[OSSB_DIGEST_STR_LEN + 1];
        if (pt->hashed != pt->d->size)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EIO, "streaming blob %s: %" PRId64 " of %" PRId64
                                       " bytes hashed", pt->d->digest, pt->hashed, pt->d->size);
        ossb_sha256_final(pt->sha, got);
        ossb_sha256_free(pt->sha);
        pt->sha = NULL;
        pt->hashed = 0; /* a restart hashes again */
        if (!streq(got, pt->d->digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG, "blob %s read from its source has digest %s: "
                                       "not pushed", pt->d->digest, got);
        return 0;
}

static int push_url_digest(struct call *c, const struct push_task *pt)
{
        _cleanup_free_ char *e = ossb_http_escape(pt->d->digest);
        if (!e)
                return -ENOMEM;
        return call_set_url(c, "%s%sdigest=%s", pt->location, strchr(pt->location, '?') ? "&" : "?", e);
}

static int push_prepare_mount(struct call *c, struct push_task *pt)
{
        const char *from = pt->mounts[pt->mount_i];
        _cleanup_free_ char *d = ossb_http_escape(pt->d->digest), *f = ossb_http_escape(from);
        char *scope = ossb_auth_scope(from, "pull");
        if (!d || !f || !scope || ossb_strv_consume(&c->scopes, scope) < 0)
                return -ENOMEM;
        c->auth_soft = true;
        return call_set_url(c, "/v2/%s/blobs/uploads/?mount=%s&from=%s", c->ep->path, d, f);
}

static int push_prepare(struct call *c, bool after_failure, struct ossb_error **err)
{
        struct push_task *pt = c->owner;
        int k = 0;
        if (after_failure && pt->step >= PUSH_PUT) {
                /* an upload broke: the registry's upload state is unknown, start a new one */
                log_debug("registry: restarting the upload of %s", pt->d->digest);
                pt->step = PUSH_POST;
                pt->offset = 0;
                free(pt->location);
                pt->location = NULL;
        }
        if (pt->absent && pt->step >= PUSH_POST)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "blob %s is not in the content store, and "
                                       "%s neither has it nor could mount it", pt->d->digest,
                                       repo_origin(pt->ctx->repo)->repository);
        call_reset_request(c);
        c->follow = pt->step == PUSH_HEAD;
        c->auth_soft = false;
        c->max_body = 64 * 1024;
        const char *m[] = { "HEAD", "POST", "POST", "PUT", "PATCH", "PUT" };
        snprintf(c->method, sizeof(c->method), "%s", m[pt->step]);
        switch (pt->step) {
        case PUSH_HEAD:
                k = call_set_url(c, "/v2/%s/blobs/%s", c->ep->path, pt->d->digest);
                break;
        case PUSH_MOUNT:
                k = push_prepare_mount(c, pt);
                break;
        case PUSH_POST:
                k = call_set_url(c, "/v2/%s/blobs/uploads/", c->ep->path);
                break;
        case PUSH_PUT:
                c->body_fd = pt->fd;
                c->body_len = pt->d->size;
                k = push_url_digest(c, pt);
                if (k >= 0)
                        k = call_add_header(c, "Content-Type: application/octet-stream");
                break;
        case PUSH_PATCH:
                pt->chunk = pt->d->size - pt->offset < chunk_size(pt) ? pt->d->size - pt->offset : chunk_size(pt);
                if (pt->stream && (k = stream_fill(pt, err)) < 0)
                        return k;
                c->body_fd = pt->fd;
                c->body_off = pt->stream ? 0 : pt->offset;
                c->body_len = pt->chunk;
                k = call_set_url(c, "%s", pt->location);
                if (k >= 0)
                        k = call_add_header(c, "Content-Type: application/octet-stream");
                if (k >= 0)
                        k = call_add_header(c, "Content-Range: %" PRId64 "-%" PRId64, pt->offset,
                                            pt->offset + pt->chunk - 1);
                break;
        case PUSH_FINAL:
                if (pt->stream && pt->sha && (k = stream_check(pt, err)) < 0)
                        return k;
                k = push_url_digest(c, pt);
                break;
        }
        return k < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

static void push_goto(struct push_task *pt, enum push_step step)
{
        struct ossb_registry *r = pt->ctx->repo->r;
        call_reset(&pt->t.call);
        pt->step = step;
        if ((step == PUSH_PUT || step == PUSH_PATCH) && !pt->started) {
                pt->started = true;
                registry_emit(r, OSSB_TRANSFER_START, true, pt->d->digest, 0, pt->d->size, NULL);
        }
}

/* Candidate mounts: repositories of the same registry (not this one) the blob came from. */
static int push_mounts(struct push_task *pt, struct ossb_error **err)
{
        struct endpoint *ep = repo_origin(pt->ctx->repo);
        _cleanup_strv_free_ char **all = NULL;
        int k = ossb_blob_source_get(pt->ctx->store, pt->d->digest, &all, err);
        if (k < 0)
                return k;
        /* sources name the registry as references do ("docker.io/...", not its API host) */
        size_t hl = strcspn(ep->repository, "/");
        for (size_t i = 0; all[i]; i++) {
                const char *s = all[i];
                if (strncmp(s, ep->repository, hl) != 0 || s[hl] != '/' || !s[hl + 1] || streq(s + hl + 1, ep->path))
                        continue;
                if (ossb_strv_push(&pt->mounts, s + hl + 1) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int push_begin(void *ctx, struct task *t, struct ossb_error **err)
{
        struct push_ctx *pc = ctx;
        struct push_task *pt = (struct push_task *) t;
        int64_t size = 0;
        if (!ossb_digest_is_valid(pt->d->digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "invalid blob digest `%s`", pt->d->digest);
        const struct ossb_blob_reader *rd = &pc->repo->r->reader;
        int k = 0;
        if (rd->read && !ossb_store_has(pc->store, pt->d->digest) && rd->has(rd->userdata, pt->d->digest, pt->d->size)) {
                pt->stream = true;
                pt->fd = memfd_create("ossb-push-chunk", MFD_CLOEXEC);
                if (pt->fd < 0)
                        return ossb_error_set(err, -errno, "cannot make a buffer for streaming blob %s: %m", pt->d->digest);
                log_debug("registry: %s is not in the store: streaming it from its source", pt->d->digest);
                goto opened;
        }
        if (!ossb_store_has(pc->store, pt->d->digest)) {
                /* the registry may hold it, or mount it: fail only if it must be uploaded */
                pt->absent = true;
                goto opened;
        }
        k = ossb_store_blob_size(pc->store, pt->d->digest, &size, err);
        if (k >= 0 && size != pt->d->size)
                k = ossb_error_set(err, -EBADMSG, "blob %s in the store is %" PRId64 " bytes, its descriptor says %" PRId64,
                                   pt->d->digest, size, pt->d->size);
        if (k >= 0)
                k = ossb_store_open_blob(pc->store, pt->d->digest, &pt->fd, err);
opened:
        if (k >= 0)
                k = push_mounts(pt, err);
        if (k < 0)
                return k;
        struct call *c = &t->call;
        call_init(c, pc->repo, repo_origin(pc->repo), "HEAD", t->what);
        c->prepare = push_prepare;
        c->owner = pt;
        c->event_digest = pt->d->digest;
        c->event_push = true;
        pt->step = PUSH_HEAD;
        return 0;
}

static int push_location(struct push_task *pt, struct ossb_error **err)
{
        struct call *c = &pt->t.call;
        const char *loc = ossb_http_xfer_header(c->x, "Location");
        if (!loc)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "uploading blob %s to %s: registry %s answered HTTP %ld without a Location",
                                       pt->d->digest, c->ep->repository, c->ep->host, call_status(c));
        char *abs = call_resolve(c, loc);
        if (!abs)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "uploading blob %s to %s: bad Location `%s`",
                                       pt->d->digest, c->ep->repository, loc);
        free(pt->location);
        pt->location = abs;
        return 0;
}

static int push_finished(struct push_task *pt, enum ossb_transfer_kind kind, struct ossb_error **err)
{
        struct call *c = &pt->t.call;
        const char *hd = kind == OSSB_TRANSFER_DONE ? ossb_http_xfer_header(c->x, "Docker-Content-Digest") : NULL;
        if (hd && strncmp(hd, "sha256:", 7) == 0 && !streq(hd, pt->d->digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "registry %s stored blob %s as %s", c->ep->host, pt->d->digest, hd);
        registry_emit(pt->ctx->repo->r, kind, true, pt->d->digest, pt->d->size, pt->d->size, NULL);
        if (kind != OSSB_TRANSFER_EXISTS)
                record_source(pt->ctx->store, pt->d->digest, c->ep->repository);
        pt->t.finished = true;
        return 0;
}

static int push_error(struct push_task *pt, struct ossb_error **err)
{
        struct call *c = &pt->t.call;
        long st = call_status(c);
        int k = st == 401 || st == 403 ? call_auth_error(c, err) : call_http_error(c, err);
        return k;
}

static int push_after_mount(struct push_task *pt, struct ossb_error **err)
{
        struct call *c = &pt->t.call;
        long st = call_status(c);
        if (st == 201)
                return push_finished(pt, OSSB_TRANSFER_MOUNTED, err);
        if (st == 202) {
                /* not mounted (the registry could not, or would not): it opened an upload */
                log_debug("registry: mount of %s from %s declined; uploading", pt->d->digest, pt->mounts[pt->mount_i]);
                int k = push_location(pt, err);
                if (k >= 0)
                        push_goto(pt, upload_step(pt));
                return k;
        }
        log_debug("registry: mount of %s from %s failed (HTTP %ld)", pt->d->digest, pt->mounts[pt->mount_i], st);
        pt->mount_i++;
        push_goto(pt, pt->mounts[pt->mount_i] ? PUSH_MOUNT : PUSH_POST);
        return 0;
}

static int push_step(void *ctx, struct task *t, struct ossb_error **err)
{
        struct push_task *pt = (struct push_task *) t;
        struct call *c = &t->call;
        if (c->state == CALL_FAILED)
                return call_take_error(c, err);
        long st = call_status(c);
        int k = 0;
        switch (pt->step) {
        case PUSH_HEAD:
                if (st == 200)
                        return push_finished(pt, OSSB_TRANSFER_EXISTS, err);
                if (st != 404)
                        return push_error(pt, err);
                push_goto(pt, pt->mounts && pt->mounts[0] ? PUSH_MOUNT : PUSH_POST);
                return 0;
        case PUSH_MOUNT:
                return push_after_mount(pt, err);
        case PUSH_POST:
                if (st != 202)
                        return push_error(pt, err);
                k = push_location(pt, err);
                if (k >= 0)
                        push_goto(pt, upload_step(pt));
                return k;
        case PUSH_PATCH:
                if (st != 202 && st != 204)
                        return push_error(pt, err);
                if (ossb_http_xfer_header(c->x, "Location"))
                        k = push_location(pt, err);
                pt->offset += pt->chunk;
                if (k >= 0)
                        push_goto(pt, pt->offset < pt->d->size ? PUSH_PATCH : PUSH_FINAL);
                return k;
        case PUSH_PUT:
        case PUSH_FINAL:
                if (st != 201 && st != 204)
                        return push_error(pt, err);
                return push_finished(pt, OSSB_TRANSFER_DONE, err);
        }
        return 0;
}

static int push_done(void *ctx, struct task *t, struct ossb_error **err)
{
        return 0;
}

static int64_t push_bytes(void *ctx, struct task *t, int64_t *ret_total, const char **ret_digest)
{
        struct push_task *pt = (struct push_task *) t;
        *ret_total = pt->d->size;
        *ret_digest = pt->d->digest;
        if (!pt->started || !t->call.x || (pt->step != PUSH_PUT && pt->step != PUSH_PATCH))
                return pt->offset;
        return pt->offset + ossb_http_xfer_sent(t->call.x);
}

static void push_release(void *ctx, struct task *t)
{
        struct push_task *pt = (struct push_task *) t;
        if (pt->fd >= 0)
                close(pt->fd);
        pt->fd = -1;
        ossb_strv_free(pt->mounts);
        pt->mounts = NULL;
        free(pt->location);
        pt->location = NULL;
        ossb_sha256_free(pt->sha);
        pt->sha = NULL;
}

static const struct sched_ops push_ops = {
        .begin = push_begin, .step = push_step, .done = push_done, .bytes = push_bytes,
        .release = push_release, .push = true,
};

int ossb_repo_push_blobs(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *descs,
                         size_t n, struct ossb_error **err)
{
        struct push_ctx pc = { .repo = repo, .store = store };
        struct push_task *pt = calloc(n ? n : 1, sizeof(*pt));
        struct task **tasks = calloc(n ? n : 1, sizeof(*tasks));
        if (!pt || !tasks) {
                free(pt);
                free(tasks);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                pt[i].ctx = &pc;
                pt[i].d = &descs[i];
                pt[i].fd = -1;
                pt[i].t.index = i;
                pt[i].t.call.body_fd = -1;
                snprintf(pt[i].t.what, sizeof(pt[i].t.what), "blob %s", descs[i].digest);
                tasks[i] = &pt[i].t;
        }
        pthread_mutex_lock(&repo->r->lock);
        int k = schedule(repo->r, tasks, n, &push_ops, &pc, err);
        pthread_mutex_unlock(&repo->r->lock);
        free(tasks);
        free(pt);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        return k;
}

void ossb_registry_set_blob_reader(struct ossb_registry *r, const struct ossb_blob_reader *rd)
{
        pthread_mutex_lock(&r->lock);
        if (rd && rd->read && rd->has)
                r->reader = *rd;
        else
                memset(&r->reader, 0, sizeof(r->reader));
        pthread_mutex_unlock(&r->lock);
}
