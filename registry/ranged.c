/* registry/ranged.c - ranged blob reads (see ranged.h): resolving a blob's URL once, planning
 * spans from the wanted ranges, multi-range and single-range requests driven several at once
 * on the client's multi handle, streaming parsers for single-range, multipart/byteranges and
 * whole-blob answers that fill each wanted range and hand it over when complete, and the
 * fallbacks (multi-range refused or ignored, Range ignored, kept URL expired).
 *
 * Locking: every entry point that sends requests holds ossb_registry.lock for its duration
 * (as client.c does); struct target lists and the calls are protected by it.  The counters are
 * updated with atomic adds so that ossb_ranged_get_stats needs no lock. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "registry/client-internal.h"
#include "registry/ranged.h"

#define DEFAULT_MERGE_GAP (64 * 1024)
#define DEFAULT_MAX_SPANS 64
#define MP_LINE_MAX 1024
#define MP_JUNK_MAX (64 * 1024)
#define MP_HEADERS_MAX 32
#define MAX_RESOLVES 3 /* per read: the first one and re-resolves after 401/403 or a failed mirror */
#define MAX_IDLE_ROUNDS 3

enum cap {
        CAP_UNKNOWN = 0,
        CAP_YES,
        CAP_NO,
};

/* What the reader knows about one blob. */
struct target {
        char digest[OSSB_DIGEST_STR_LEN + 1];
        bool resolved;
        size_t ep_i;     /* the endpoint it is read from */
        size_t first_ep; /* resolve from this endpoint on (mirrors that failed are passed over) */
        char *url;       /* the final URL after redirects; NULL: the API path on the endpoint */
        enum cap range;  /* honours a single Range */
        enum cap multi;  /* honours several ranges in one request */
        struct target *next;
};

struct ossb_ranged {
        struct ossb_repo *repo;
        int64_t merge_gap;
        int max_spans;
        int max_parallel;
        struct target *targets; /* protected by repo->r->lock */
        struct ossb_ranged_stats stats; /* atomic adds */
};

/* One wanted range. */
struct want {
        int64_t start, end;
        int64_t have;       /* bytes [start, start + have) arrived */
        unsigned char *buf; /* allocated at the first byte, freed once delivered */
        size_t index;       /* in the caller's array */
        bool done;
};

/* One read. */
struct rd {
        struct ossb_ranged *rr;
        struct target *t;
        const char *digest;
        int64_t blob_size;
        struct want *w; /* sorted by start */
        size_t n, left;
        ossb_range_cb cb;
        void *userdata;
        struct ossb_ranged_stats *acct;
        struct ossb_error *err; /* the first failure of a callback or of an answer's checks */
        int64_t progress;       /* bytes stored into wants */
        bool stale;             /* the kept URL was refused, or its mirror failed: resolve again */
};

enum mp_state {
        MP_LINE = 0, /* preamble, boundary lines, the CRLF after a part */
        MP_HEADERS,
        MP_DATA,
        MP_END,
};

/* A multipart/byteranges answer being parsed. */
struct mp {
        enum mp_state state;
        char boundary[80];
        size_t blen;
        char line[MP_LINE_MAX];
        size_t llen;
        bool overflow; /* the line being read is longer than MP_LINE_MAX */
        size_t junk;
        int n_headers;
        int64_t part_start, part_end;
        int64_t pos, remaining;
};

/* One request for some of the wants (those in [lo, hi) of the sorted array). */
struct rcall {
        struct call call;
        struct rd *rd;
        size_t lo, hi;
        size_t cur;          /* wants before cur (from lo) are all done */
        bool whole;          /* no Range header: the whole blob */
        bool active;
        bool skipped;        /* a retry found nothing left to ask for */
        /* this attempt */
        bool first;          /* the next body byte is the first */
        bool multi_sent;     /* asked for several ranges */
        bool multipart;      /* the answer is multipart/byteranges */
        bool full;           /* the answer is the whole blob (200) */
        bool refused_multi;  /* stopped: the whole blob came for a multi-range request */
        bool stopped;        /* stopped: every want of the call arrived */
        int64_t pos, end;    /* plain answers: blob offset of the next byte, end of the answer */
        struct mp mp;
        char what[96];
};

static void stat_add(struct rd *rd, size_t field, uint64_t v)
{
        uint64_t *a = (uint64_t *) ((char *) &rd->rr->stats + field);
        __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
        if (rd->acct) {
                uint64_t *b = (uint64_t *) ((char *) rd->acct + field);
                __atomic_fetch_add(b, v, __ATOMIC_RELAXED);
        }
}

#define STAT_ADD(rd, f, v) stat_add((rd), offsetof(struct ossb_ranged_stats, f), (v))

static const char *repo_what(struct rd *rd)
{
        return repo_origin(rd->rr->repo)->repository;
}

/* --- the reader and its targets ------------------------------------------------------------ */

int ossb_ranged_new(struct ossb_repo *repo, const struct ossb_ranged_opts *opts, struct ossb_ranged **ret,
                    struct ossb_error **err)
{
        struct ossb_ranged *rr = calloc(1, sizeof(*rr));
        if (!rr)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        rr->repo = repo;
        rr->merge_gap = opts && opts->merge_gap > 0 ? opts->merge_gap : DEFAULT_MERGE_GAP;
        rr->max_spans = opts && opts->max_spans > 0 ? opts->max_spans : DEFAULT_MAX_SPANS;
        rr->max_parallel = opts && opts->max_parallel > 0 ? opts->max_parallel : repo->r->max_parallel;
        *ret = rr;
        return 0;
}

static void target_free(struct target *t)
{
        if (!t)
                return;
        free(t->url);
        free(t);
}

void ossb_ranged_free(struct ossb_ranged *rr)
{
        if (!rr)
                return;
        while (rr->targets) {
                struct target *t = rr->targets;
                rr->targets = t->next;
                target_free(t);
        }
        free(rr);
}

void ossb_ranged_get_stats(struct ossb_ranged *rr, struct ossb_ranged_stats *ret)
{
        ret->bytes = __atomic_load_n(&rr->stats.bytes, __ATOMIC_RELAXED);
        ret->requests = __atomic_load_n(&rr->stats.requests, __ATOMIC_RELAXED);
        ret->ranges = __atomic_load_n(&rr->stats.ranges, __ATOMIC_RELAXED);
        ret->resolves = __atomic_load_n(&rr->stats.resolves, __ATOMIC_RELAXED);
        ret->multi_fallbacks = __atomic_load_n(&rr->stats.multi_fallbacks, __ATOMIC_RELAXED);
        ret->whole_blobs = __atomic_load_n(&rr->stats.whole_blobs, __ATOMIC_RELAXED);
}

static struct target *target_get(struct ossb_ranged *rr, const char *digest)
{
        for (struct target *t = rr->targets; t; t = t->next)
                if (streq(t->digest, digest))
                        return t;
        struct target *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        snprintf(t->digest, sizeof(t->digest), "%s", digest);
        t->next = rr->targets;
        rr->targets = t;
        return t;
}

void ossb_ranged_forget(struct ossb_ranged *rr, const char *digest)
{
        pthread_mutex_lock(&rr->repo->r->lock);
        for (struct target **p = &rr->targets; *p; p = &(*p)->next)
                if (streq((*p)->digest, digest)) {
                        struct target *t = *p;
                        *p = t->next;
                        target_free(t);
                        break;
                }
        pthread_mutex_unlock(&rr->repo->r->lock);
}

/* --- header values ------------------------------------------------------------------------- */

/* "bytes A-B/TOTAL" (TOTAL may be "*": -1) -> [A, B + 1). */
static int parse_content_range(const char *v, int64_t *ret_start, int64_t *ret_end, int64_t *ret_total)
{
        while (*v == ' ' || *v == '\t')
                v++;
        if (strncasecmp(v, "bytes", 5) != 0)
                return -EPROTO;
        v += 5;
        while (*v == ' ' || *v == '\t')
                v++;
        char *end = NULL;
        errno = 0;
        long long a = strtoll(v, &end, 10);
        if (errno || end == v || *end != '-' || a < 0)
                return -EPROTO;
        v = end + 1;
        long long b = strtoll(v, &end, 10);
        if (errno || end == v || *end != '/' || b < a)
                return -EPROTO;
        v = end + 1;
        long long total = -1;
        if (*v != '*') {
                total = strtoll(v, &end, 10);
                if (errno || end == v || total <= b)
                        return -EPROTO;
        }
        *ret_start = a;
        *ret_end = b + 1;
        *ret_total = total;
        return 0;
}

/* The boundary parameter of a multipart/byteranges Content-Type; -EPROTO when not one. */
static int parse_boundary(const char *ct, char *out, size_t size, size_t *ret_len)
{
        static const char type[] = "multipart/byteranges";
        if (!ct || strncasecmp(ct, type, sizeof(type) - 1) != 0)
                return -EPROTO;
        for (const char *p = strchr(ct, ';'); p; p = strchr(p + 1, ';')) {
                const char *q = p + 1;
                while (*q == ' ' || *q == '\t')
                        q++;
                if (strncasecmp(q, "boundary=", 9) != 0)
                        continue;
                q += 9;
                bool quoted = *q == '"';
                q += quoted;
                size_t n = quoted ? strcspn(q, "\"") : strcspn(q, "; \t");
                if (n == 0 || n > 70 || n + 1 > size)
                        return -EPROTO;
                memcpy(out, q, n);
                out[n] = 0;
                *ret_len = n;
                return 0;
        }
        return -EPROTO;
}

/* --- filling the wants --------------------------------------------------------------------- */

static int deliver(struct rd *rd, struct want *w)
{
        size_t len = (size_t) (w->end - w->start);
        int k = rd->cb(rd->userdata, w->index, w->buf ? (const void *) w->buf : "", len);
        free(w->buf);
        w->buf = NULL;
        w->done = true;
        rd->left--;
        STAT_ADD(rd, ranges, 1);
        if (k < 0 && !rd->err)
                ossb_error_set(&rd->err, k, "reading blob %s of %s: the reader of range %zu stopped (%s)", rd->digest,
                               repo_what(rd), w->index, strerror(-k));
        return k < 0 ? k : 0;
}

static bool call_complete_wants(struct rcall *rc)
{
        while (rc->cur < rc->hi && rc->rd->w[rc->cur].done)
                rc->cur++;
        return rc->cur >= rc->hi;
}

/* Blob bytes [off, off + len) arrived for this call: store them into the wants that continue
 * exactly there. */
static int route(struct rcall *rc, int64_t off, const char *data, size_t len)
{
        struct rd *rd = rc->rd;
        int64_t end = off + (int64_t) len;
        (void) call_complete_wants(rc);
        for (size_t i = rc->cur; i < rc->hi; i++) {
                struct want *w = &rd->w[i];
                if (w->start >= end)
                        break;
                int64_t need = w->start + w->have;
                if (w->done || need < off || need >= end)
                        continue;
                int64_t take = (w->end < end ? w->end : end) - need;
                if (!w->buf && !(w->buf = malloc((size_t) (w->end - w->start))))
                        return ossb_error_set(&rd->err, -ENOMEM, "out of memory");
                memcpy(w->buf + w->have, data + (need - off), (size_t) take);
                w->have += take;
                rd->progress += take;
                if (w->start + w->have == w->end) {
                        int k = deliver(rd, w);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

/* --- multipart/byteranges ------------------------------------------------------------------ */

static int mp_error(struct rcall *rc, const char *what)
{
        return ossb_error_setx(&rc->rd->err, OSSB_EXIT_REGISTRY, -EPROTO,
                               "reading blob %s of %s: malformed multipart/byteranges answer (%s)", rc->rd->digest,
                               repo_what(rc->rd), what);
}

static int mp_header(struct rcall *rc, const char *line)
{
        struct mp *mp = &rc->mp;
        if (++mp->n_headers > MP_HEADERS_MAX)
                return mp_error(rc, "too many part headers");
        if (strncasecmp(line, "content-range:", 14) != 0)
                return 0;
        int64_t total = -1;
        if (parse_content_range(line + 14, &mp->part_start, &mp->part_end, &total) < 0)
                return mp_error(rc, "bad Content-Range of a part");
        if (total >= 0 && total != rc->rd->blob_size)
                return ossb_error_setx(&rc->rd->err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                       "blob %s of %s is %" PRId64 " bytes at the registry, its descriptor says %" PRId64,
                                       rc->rd->digest, repo_what(rc->rd), total, rc->rd->blob_size);
        return 0;
}

static int mp_line(struct rcall *rc)
{
        struct mp *mp = &rc->mp;
        size_t len = mp->llen;
        while (len > 0 && (mp->line[len - 1] == '\n' || mp->line[len - 1] == '\r' || mp->line[len - 1] == ' ' ||
                           mp->line[len - 1] == '\t'))
                len--;
        mp->line[len] = 0;
        mp->llen = 0;
        if (mp->state == MP_HEADERS) {
                if (len > 0)
                        return mp_header(rc, mp->line);
                if (mp->part_start < 0)
                        return mp_error(rc, "a part without Content-Range");
                mp->pos = mp->part_start;
                mp->remaining = mp->part_end - mp->part_start;
                mp->state = mp->remaining > 0 ? MP_DATA : MP_LINE;
                return 0;
        }
        bool delim = len >= 2 + mp->blen && mp->line[0] == '-' && mp->line[1] == '-' &&
                     memcmp(mp->line + 2, mp->boundary, mp->blen) == 0;
        if (delim && len == 2 + mp->blen) {
                mp->state = MP_HEADERS;
                mp->part_start = mp->part_end = -1;
                mp->n_headers = 0;
                return 0;
        }
        if (delim && len == 4 + mp->blen && memcmp(mp->line + 2 + mp->blen, "--", 2) == 0) {
                mp->state = MP_END;
                return 0;
        }
        mp->junk += len;
        return mp->junk > MP_JUNK_MAX ? mp_error(rc, "no boundary") : 0;
}

static int mp_feed(struct rcall *rc, const char *data, size_t len)
{
        struct mp *mp = &rc->mp;
        while (len > 0) {
                if (mp->state == MP_END)
                        return 0; /* the epilogue */
                if (mp->state == MP_DATA) {
                        size_t take = (int64_t) len < mp->remaining ? len : (size_t) mp->remaining;
                        int k = route(rc, mp->pos, data, take);
                        if (k < 0)
                                return k;
                        mp->pos += (int64_t) take;
                        mp->remaining -= (int64_t) take;
                        data += take;
                        len -= take;
                        if (mp->remaining == 0)
                                mp->state = MP_LINE;
                        continue;
                }
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t) (nl - data) + 1 : len;
                if (mp->llen + take >= sizeof(mp->line)) {
                        if (mp->state == MP_HEADERS)
                                return mp_error(rc, "a part header line is too long");
                        mp->overflow = true; /* preamble: skip it */
                        mp->junk += take;
                        if (mp->junk > MP_JUNK_MAX)
                                return mp_error(rc, "no boundary");
                } else if (!mp->overflow) {
                        memcpy(mp->line + mp->llen, data, take);
                        mp->llen += take;
                }
                data += take;
                len -= take;
                if (!nl)
                        continue;
                if (mp->overflow) {
                        mp->overflow = false;
                        mp->llen = 0;
                        continue;
                }
                int k = mp_line(rc);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* --- one request --------------------------------------------------------------------------- */

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

static int size_mismatch(struct rd *rd, int64_t total, struct ossb_error **err)
{
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                               "blob %s of %s is %" PRId64 " bytes at the registry, its descriptor says %" PRId64,
                               rd->digest, repo_what(rd), total, rd->blob_size);
}

/* The first body byte of an answer: how to read it. */
static int answer_begin(struct rcall *rc, struct ossb_http_xfer *x)
{
        struct rd *rd = rc->rd;
        long st = ossb_http_xfer_status(x);
        rc->first = false;
        STAT_ADD(rd, requests, 1);
        if (st == 200) {
                STAT_ADD(rd, whole_blobs, 1);
                if (rc->multi_sent && rd->t->range == CAP_YES) {
                        rc->refused_multi = true; /* it can do one range: ask again, range by range */
                        return -ECANCELED;
                }
                if (!rc->whole && rd->t->range != CAP_NO) {
                        log_debug("registry: %s ignores Range for %s: reading the whole blob from now on",
                                  rc->call.ep->host, rd->digest);
                        rd->t->range = CAP_NO;
                }
                int64_t cl = header_int(x, "Content-Length");
                if (cl >= 0 && cl != rd->blob_size)
                        return size_mismatch(rd, cl, &rd->err);
                rc->full = true;
                rc->pos = 0;
                rc->end = rd->blob_size;
                return 0;
        }
        const char *ct = ossb_http_xfer_header(x, "Content-Type");
        if (parse_boundary(ct, rc->mp.boundary, sizeof(rc->mp.boundary), &rc->mp.blen) == 0) {
                rc->multipart = true;
                return 0;
        }
        const char *cr = ossb_http_xfer_header(x, "Content-Range");
        int64_t total = -1;
        if (!cr || parse_content_range(cr, &rc->pos, &rc->end, &total) < 0)
                return ossb_error_setx(&rd->err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "reading blob %s of %s: HTTP 206 with %s Content-Range `%s`", rd->digest,
                                       repo_what(rd), cr ? "a malformed" : "no", cr ? cr : "");
        if (total >= 0 && total != rd->blob_size)
                return size_mismatch(rd, total, &rd->err);
        return 0;
}

static int rc_sink(void *userdata, struct ossb_http_xfer *x, const char *data, size_t len)
{
        struct rcall *rc = userdata;
        STAT_ADD(rc->rd, bytes, len);
        if (rc->first) {
                int k = answer_begin(rc, x);
                if (k < 0)
                        return k;
        }
        if (rc->multipart)
                return mp_feed(rc, data, len);
        int64_t avail = rc->end - rc->pos;
        size_t take = (int64_t) len < avail ? len : (size_t) (avail > 0 ? avail : 0);
        int k = route(rc, rc->pos, data, take);
        rc->pos += (int64_t) take;
        if (k < 0)
                return k;
        if (rc->full && call_complete_wants(rc) && rc->pos < rc->end) {
                rc->stopped = true; /* the rest of the blob is not wanted */
                return -ECANCELED;
        }
        return 0;
}

struct span {
        int64_t start, end;
};

/* The missing parts of the call's wants, merged into at most `max` spans (wants beyond them
 * are left to the next round: never a hull over gaps nobody asked for). */
static size_t call_spans(struct rcall *rc, struct span *out, size_t max)
{
        struct rd *rd = rc->rd;
        size_t n = 0;
        for (size_t i = rc->lo; i < rc->hi; i++) {
                struct want *w = &rd->w[i];
                if (w->done)
                        continue;
                int64_t s = w->start + w->have;
                if (n > 0 && s <= out[n - 1].end + rd->rr->merge_gap) {
                        if (s < out[n - 1].start)
                                out[n - 1].start = s;
                        if (w->end > out[n - 1].end)
                                out[n - 1].end = w->end;
                        continue;
                }
                if (n == max)
                        break;
                out[n++] = (struct span) { s, w->end };
        }
        return n;
}

static int range_header(struct rcall *rc)
{
        struct rd *rd = rc->rd;
        size_t max = rd->t->multi == CAP_NO ? 1 : (size_t) rd->rr->max_spans;
        _cleanup_free_ struct span *sp = calloc(max, sizeof(*sp));
        if (!sp)
                return -ENOMEM;
        size_t n = call_spans(rc, sp, max);
        if (n == 0)
                return -ECANCELED; /* nothing left to ask for */
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = ossb_strbuf_append(&sb, "Range: bytes=");
        for (size_t i = 0; k >= 0 && i < n; i++)
                k = ossb_strbuf_appendf(&sb, "%s%" PRId64 "-%" PRId64, i ? "," : "", sp[i].start, sp[i].end - 1);
        char *h = k >= 0 ? ossb_strbuf_steal(&sb) : NULL;
        ossb_strbuf_free(&sb);
        if (!h)
                return -ENOMEM;
        rc->multi_sent = n > 1;
        return ossb_strv_consume(&rc->call.headers, h);
}

static int rc_prepare(struct call *c, bool after_failure, struct ossb_error **err)
{
        struct rcall *rc = c->owner;
        ossb_strv_free(c->headers);
        c->headers = NULL;
        rc->first = true;
        rc->multi_sent = rc->multipart = rc->full = rc->refused_multi = rc->stopped = false;
        rc->pos = rc->end = 0;
        memset(&rc->mp, 0, sizeof(rc->mp));
        if (after_failure)
                log_debug("registry: %s: asking again for what is still missing", rc->what);
        if (rc->whole)
                return 0;
        int k = range_header(rc);
        if (k == -ECANCELED)
                return ossb_error_set(err, k, "nothing left to read");
        return k < 0 ? ossb_error_set(err, k, "out of memory") : 0;
}

static int rc_setup(struct rcall *rc, struct rd *rd, size_t lo, size_t hi, bool whole)
{
        struct target *t = rd->t;
        struct endpoint *ep = &rd->rr->repo->eps[t->ep_i];
        rc->rd = rd;
        rc->lo = rc->cur = lo;
        rc->hi = hi;
        rc->whole = whole;
        snprintf(rc->what, sizeof(rc->what), "blob %s", rd->digest);
        call_init(&rc->call, rd->rr->repo, ep, "GET", rc->what);
        rc->call.follow = true;
        rc->call.sink = rc_sink;
        rc->call.sink_userdata = rc;
        rc->call.prepare = rc_prepare;
        rc->call.owner = rc;
        if (t->url)
                return call_set_url(&rc->call, "%s", t->url);
        return call_set_url(&rc->call, "/v2/%s/blobs/%s", ep->path, rd->digest);
}

/* The call is DONE or FAILED: learn from the answer; errors only for what no other request can
 * mend. */
static int rc_finish(struct rcall *rc, struct ossb_error **err)
{
        struct rd *rd = rc->rd;
        struct target *t = rd->t;
        struct call *c = &rc->call;
        if (rd->err)
                return -1; /* the caller takes rd->err */
        bool complete = call_complete_wants(rc);
        if (c->state == CALL_FAILED) {
                if (rc->refused_multi || complete || (c->fail_code == -ECANCELED && rc->stopped)) {
                        if (rc->refused_multi && t->multi != CAP_NO) {
                                t->multi = CAP_NO;
                                STAT_ADD(rd, multi_fallbacks, 1);
                        }
                        ossb_error_free(c->err);
                        c->err = NULL;
                        return 0;
                }
                if (c->ep->mirror && c->fail_code != -EINTR) {
                        log_debug("mirror %s: reading %s failed; trying the next endpoint", c->ep->host, rd->digest);
                        t->first_ep = t->ep_i + 1;
                        rd->stale = true;
                        ossb_error_free(c->err);
                        c->err = NULL;
                        return 0;
                }
                return call_take_error(c, err);
        }
        long st = call_status(c);
        if (st == 200 || st == 206) {
                if (st == 206 && rc->multi_sent && !rc->multipart && !complete && t->multi != CAP_NO) {
                        log_debug("registry: %s answered a multi-range request with one range", c->ep->host);
                        t->multi = CAP_NO;
                        STAT_ADD(rd, multi_fallbacks, 1);
                }
                return 0;
        }
        if ((st == 400 || st == 416) && rc->multi_sent) {
                log_debug("registry: %s refused a multi-range request (HTTP %ld): single ranges", c->ep->host, st);
                if (t->multi != CAP_NO)
                        STAT_ADD(rd, multi_fallbacks, 1);
                t->multi = CAP_NO;
                return 0;
        }
        if ((st == 401 || st == 403) && t->url) {
                log_debug("registry: the kept URL of %s was refused (HTTP %ld): resolving it again", rd->digest, st);
                rd->stale = true;
                return 0;
        }
        if (c->ep->mirror) {
                log_debug("mirror %s: HTTP %ld for %s; trying the next endpoint", c->ep->host, st, rd->digest);
                t->first_ep = t->ep_i + 1;
                rd->stale = true;
                return 0;
        }
        if (st == 404)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "blob %s not found in %s (BLOB_UNKNOWN)",
                                       rd->digest, c->ep->repository);
        if (st == 401 || st == 403)
                return call_auth_error(c, err);
        return call_http_error(c, err);
}

/* --- resolving a blob ---------------------------------------------------------------------- */

struct resolve {
        struct rd *rd;
        int64_t got;
        bool stopped;
};

static int resolve_sink(void *userdata, struct ossb_http_xfer *x, const char *data, size_t len)
{
        struct resolve *rs = userdata;
        STAT_ADD(rs->rd, bytes, len);
        if (rs->got == 0)
                STAT_ADD(rs->rd, requests, 1);
        rs->got += (int64_t) len;
        if (ossb_http_xfer_status(x) == 200 || rs->got > 2) {
                rs->stopped = true; /* all we wanted is where the blob is, and how it answers */
                return -ECANCELED;
        }
        return 0;
}

static int resolve_prepare(struct call *c, bool after_failure, struct ossb_error **err)
{
        struct resolve *rs = c->owner;
        rs->got = 0;
        rs->stopped = false;
        ossb_strv_free(c->headers);
        c->headers = NULL;
        return call_add_header(c, "Range: bytes=0-1") < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* What the answer to the resolve request says about the blob and its URL. */
static int resolve_learn(struct rd *rd, struct call *c, struct ossb_error **err)
{
        struct target *t = rd->t;
        long st = call_status(c);
        if (st == 206) {
                const char *cr = ossb_http_xfer_header(c->x, "Content-Range");
                int64_t a = 0, b = 0, total = -1;
                if (cr && parse_content_range(cr, &a, &b, &total) == 0 && total >= 0 && total != rd->blob_size)
                        return size_mismatch(rd, total, err);
        }
        t->range = st == 206 ? CAP_YES : CAP_NO;
        if (st == 200)
                log_debug("registry: %s does not honour Range for %s: the whole blob will be read", c->ep->host,
                          rd->digest);
        free(t->url);
        t->url = NULL;
        if (c->redirects > 0) {
                t->url = strdup(ossb_http_xfer_url(c->x));
                if (!t->url)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                _cleanup_free_ char *shown = ossb_http_redact_url(t->url);
                log_debug("registry: %s of %s is served from %s", rd->digest, c->ep->repository, shown ? shown : "?");
        }
        t->resolved = true;
        return 0;
}

/* One endpoint: 1 resolved, 0 try the next one (a mirror that failed), < 0 error. */
static int resolve_at(struct rd *rd, size_t ep_i, struct ossb_error **err)
{
        struct ossb_repo *repo = rd->rr->repo;
        struct endpoint *ep = &repo->eps[ep_i];
        struct resolve rs = { .rd = rd };
        struct call c;
        char what[96];
        snprintf(what, sizeof(what), "blob %s", rd->digest);
        call_init(&c, repo, ep, "GET", what);
        c.follow = true;
        c.sink = resolve_sink;
        c.sink_userdata = &rs;
        c.prepare = resolve_prepare;
        c.owner = &rs;
        if (call_set_url(&c, "/v2/%s/blobs/%s", ep->path, rd->digest) < 0) {
                call_clear(&c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        STAT_ADD(rd, resolves, 1);
        struct ossb_error *e = NULL;
        int k = call_run(&c, &e);
        long st = call_status(&c);
        if (k < 0 && rs.stopped && (st == 200 || st == 206)) {
                ossb_error_free(e);
                e = NULL;
                k = 0;
        }
        if (k >= 0 && (st == 200 || st == 206)) {
                rd->t->ep_i = ep_i;
                k = resolve_learn(rd, &c, err);
                call_clear(&c);
                return k < 0 ? k : 1;
        }
        if (ep->mirror && k != -EINTR) {
                log_debug("mirror %s: cannot read %s (%s); trying the next endpoint", ep->host, rd->digest,
                          k < 0 ? (e && e->msg ? e->msg : "failed") : "unexpected answer");
                ossb_error_free(e);
                call_clear(&c);
                return 0;
        }
        if (k < 0) {
                if (err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
        } else if (st == 404)
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "blob %s not found in %s (BLOB_UNKNOWN)",
                                    rd->digest, ep->repository);
        else if (st == 416)
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG,
                                    "blob %s of %s: the registry refused bytes 0-1 (HTTP 416): is it empty?", rd->digest,
                                    ep->repository);
        else
                k = st == 401 || st == 403 ? call_auth_error(&c, err) : call_http_error(&c, err);
        call_clear(&c);
        return k;
}

static int resolve(struct rd *rd, struct ossb_error **err)
{
        struct ossb_repo *repo = rd->rr->repo;
        struct target *t = rd->t;
        t->resolved = false;
        t->range = t->multi = CAP_UNKNOWN;
        rd->stale = false;
        size_t i = t->first_ep < repo->n_eps ? t->first_ep : repo->n_eps - 1;
        for (; i < repo->n_eps; i++) {
                if (repo->eps[i].mirror && repo->eps[i].dead)
                        continue;
                int k = resolve_at(rd, i, err);
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "blob %s not found in %s", rd->digest, repo_what(rd));
}

/* --- rounds of requests -------------------------------------------------------------------- */

/* Group the missing wants into calls: the whole blob in one call, else spans of wants closer
 * than merge_gap, `per` spans to a call.  With calls NULL, only counts them. */
static size_t group(struct rd *rd, size_t per, struct rcall *calls)
{
        bool whole = rd->t->range == CAP_NO;
        size_t n = 0, spans = 0, lo = 0, hi = 0;
        int64_t end = -1;
        for (size_t i = 0; i < rd->n; i++) {
                struct want *w = &rd->w[i];
                if (w->done)
                        continue;
                int64_t s = w->start + w->have;
                bool same_span = n > 0 && (whole || s <= end + rd->rr->merge_gap);
                if (same_span || (n > 0 && spans < per)) {
                        spans += !same_span;
                        hi = i + 1;
                        end = w->end > end ? w->end : end;
                        if (calls)
                                calls[n - 1].hi = hi;
                        continue;
                }
                lo = i;
                hi = i + 1;
                if (calls)
                        calls[n] = (struct rcall) { .lo = lo, .hi = hi };
                n++;
                spans = 1;
                end = w->end;
        }
        return n;
}

/* The calls of one round. */
static int plan(struct rd *rd, struct rcall **ret, size_t *ret_n)
{
        size_t per = rd->t->multi == CAP_NO ? 1 : (size_t) rd->rr->max_spans;
        size_t n = group(rd, per, NULL);
        struct rcall *calls = calloc(n ? n : 1, sizeof(*calls));
        if (!calls)
                return -ENOMEM;
        (void) group(rd, per, calls);
        int k = 0;
        for (size_t i = 0; k >= 0 && i < n; i++)
                k = rc_setup(&calls[i], rd, calls[i].lo, calls[i].hi, rd->t->range == CAP_NO);
        if (k < 0) {
                for (size_t i = 0; i < n; i++)
                        call_clear(&calls[i].call);
                free(calls);
                return k;
        }
        *ret = calls;
        *ret_n = n;
        return 0;
}

/* Issue what is due; the poll timeout until the next retry is due. */
static int issue_due(struct rcall *calls, size_t n)
{
        int64_t now = now_ms(), wake = now + 100;
        for (size_t i = 0; i < n; i++) {
                struct call *c = &calls[i].call;
                if (!calls[i].active)
                        continue;
                if (c->state == CALL_IDLE || (c->state == CALL_WAITING && c->not_before_ms <= now)) {
                        if (call_complete_wants(&calls[i])) {
                                calls[i].skipped = true; /* a retry with nothing left to ask for */
                                c->state = CALL_DONE;
                                continue;
                        }
                        call_issue(c);
                }
                if (c->state == CALL_WAITING && c->not_before_ms < wake)
                        wake = c->not_before_ms;
        }
        return wake > now ? (int) (wake - now) : 0;
}

/* Complete finished transfers and evaluate ended calls. */
static int reap(struct rcall *calls, size_t n, int *active, struct ossb_error **err)
{
        for (size_t i = 0; i < n; i++) {
                struct rcall *rc = &calls[i];
                struct call *c = &rc->call;
                if (!rc->active)
                        continue;
                if (c->state == CALL_RUNNING && c->x && ossb_http_xfer_done(c->x))
                        call_complete(c);
                if (c->state != CALL_DONE && c->state != CALL_FAILED)
                        continue;
                rc->active = false;
                (*active)--;
                if (rc->skipped)
                        continue;
                int k = rc_finish(rc, err);
                if (k < 0)
                        return k;
        }
        return 0;
}

static bool any_ended(struct rcall *calls, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (calls[i].active && (calls[i].call.state == CALL_DONE || calls[i].call.state == CALL_FAILED))
                        return true;
        return false;
}

static int run_round(struct rd *rd, struct rcall *calls, size_t n, struct ossb_error **err)
{
        struct ossb_http *http = rd->rr->repo->r->http;
        size_t next = 0;
        int active = 0, k = 0;
        for (;;) {
                while (active < rd->rr->max_parallel && next < n) {
                        calls[next++].active = true;
                        active++;
                }
                if (active == 0)
                        break;
                int timeout = issue_due(calls, next);
                if (!any_ended(calls, next)) {
                        k = ossb_http_poll(http, timeout, err);
                        if (k < 0)
                                break;
                }
                k = reap(calls, next, &active, err);
                if (k < 0)
                        break;
        }
        for (size_t i = 0; i < n; i++) {
                if (calls[i].active)
                        call_abort(&calls[i].call);
                call_clear(&calls[i].call);
        }
        return k;
}

static int read_locked(struct rd *rd, struct ossb_error **err)
{
        int resolves = 0, idle = 0;
        while (rd->left > 0) {
                if (!rd->t->resolved || rd->stale) {
                        if (++resolves > MAX_RESOLVES)
                                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES,
                                                       "reading blob %s of %s: its URL kept being refused", rd->digest,
                                                       repo_what(rd));
                        int k = resolve(rd, err);
                        if (k < 0)
                                return k;
                }
                enum cap range = rd->t->range, multi = rd->t->multi;
                int64_t before = rd->progress;
                struct rcall *calls = NULL;
                size_t n = 0;
                int k = plan(rd, &calls, &n);
                if (k < 0)
                        return ossb_error_set(err, k, "out of memory");
                k = run_round(rd, calls, n, err);
                free(calls);
                if (rd->err) {
                        k = rd->err->code;
                        if (err && !*err)
                                *err = TAKE_PTR(rd->err);
                        return k;
                }
                if (k < 0)
                        return k;
                bool learnt = range != rd->t->range || multi != rd->t->multi || rd->stale;
                if (rd->progress == before && !learnt && ++idle >= MAX_IDLE_ROUNDS)
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                               "reading blob %s of %s: the answers do not carry the bytes asked for",
                                               rd->digest, repo_what(rd));
        }
        return 0;
}

/* --- entry points -------------------------------------------------------------------------- */

static int want_cmp(const void *a, const void *b)
{
        const struct want *x = a, *y = b;
        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        if (x->end != y->end)
                return x->end < y->end ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

static int check_args(const char *digest, int64_t blob_size, const struct ossb_range *ranges, size_t n,
                      struct ossb_error **err)
{
        if (!ossb_digest_is_valid(digest))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "`%s` is not a sha256 digest", digest);
        if (blob_size < 0)
                return ossb_error_set(err, -EINVAL, "blob %s: negative size", digest);
        for (size_t i = 0; i < n; i++)
                if (ranges[i].offset < 0 || ranges[i].length < 0 || ranges[i].offset > blob_size ||
                    ranges[i].length > blob_size - ranges[i].offset)
                        return ossb_error_set(err, -EINVAL,
                                              "blob %s: range %zu (%" PRId64 "+%" PRId64 ") is outside its %" PRId64 " bytes",
                                              digest, i, ranges[i].offset, ranges[i].length, blob_size);
        return 0;
}

static void rd_clear(struct rd *rd)
{
        for (size_t i = 0; i < rd->n; i++)
                free(rd->w[i].buf);
        free(rd->w);
        ossb_error_free(rd->err);
}

int ossb_ranged_read(struct ossb_ranged *rr, const char *digest, int64_t blob_size, const struct ossb_range *ranges,
                     size_t n, ossb_range_cb cb, void *userdata, struct ossb_ranged_stats *acct,
                     struct ossb_error **err)
{
        int k = check_args(digest, blob_size, ranges, n, err);
        if (k < 0)
                return k;
        struct rd rd = {
                .rr = rr, .digest = digest, .blob_size = blob_size, .cb = cb, .userdata = userdata, .acct = acct,
        };
        rd.w = calloc(n ? n : 1, sizeof(*rd.w));
        if (!rd.w)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                rd.w[i] = (struct want) { .start = ranges[i].offset, .end = ranges[i].offset + ranges[i].length, .index = i };
        qsort(rd.w, n, sizeof(*rd.w), want_cmp);
        rd.n = rd.left = n;
        for (size_t i = 0; k >= 0 && i < n; i++)
                if (rd.w[i].start == rd.w[i].end)
                        k = deliver(&rd, &rd.w[i]);
        if (k >= 0 && rd.left > 0) {
                pthread_mutex_lock(&rr->repo->r->lock);
                rd.t = target_get(rr, digest);
                k = rd.t ? read_locked(&rd, err) : ossb_error_set(err, -ENOMEM, "out of memory");
                pthread_mutex_unlock(&rr->repo->r->lock);
        }
        if (k < 0 && rd.err && err && !*err)
                *err = TAKE_PTR(rd.err);
        rd_clear(&rd);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        return k;
}

int ossb_repo_read_ranges(struct ossb_repo *repo, const char *digest, int64_t blob_size,
                          const struct ossb_range *ranges, size_t n, ossb_range_cb cb, void *userdata,
                          struct ossb_error **err)
{
        struct ossb_ranged *rr = NULL;
        int k = ossb_ranged_new(repo, NULL, &rr, err);
        if (k < 0)
                return k;
        k = ossb_ranged_read(rr, digest, blob_size, ranges, n, cb, userdata, NULL, err);
        ossb_ranged_free(rr);
        return k;
}

int ossb_ranged_blob_fetch(void *blob, const struct ossb_range *ranges, size_t n, ossb_range_cb cb, void *userdata,
                           struct ossb_error **err)
{
        struct ossb_ranged_blob *b = blob;
        return ossb_ranged_read(b->rr, b->digest, b->size, ranges, n, cb, userdata, b->acct, err);
}
