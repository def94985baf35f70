/* fuse/source-zran.c - a gzip layer served lazily through its checkpoint index
 * (ossb_fs_source_zran_new, see source-zran.h): the TOC made from the index, the fetch
 * function that turns virtual chunk ranges into verified span reads, and the allocation that
 * holds the fetch state beside the source.
 *
 * Threads: the fetch state is read-only once made; the fetch function keeps its state on the
 * stack, so FUSE threads and the background thread may call it at once. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "fuse/source-zran.h"
#include "oci/seekable.h"

#define VSTRIDE ((int64_t) 1 << 28) /* virtual blob bytes per chunk: more than a span's member */
#define STORED_MAX 65535u

/* A chunk: bytes [span_off, span_off + size) of span `span`'s uncompressed data. */
struct vchunk {
        size_t span;
        int64_t span_off;
        int64_t size;
};

struct adapter {
        const char *name;
        ossb_fs_remote_fetch_fn fetch;
        void *fetch_userdata;
        struct ossb_zran z; /* the spans only (no entries); arrays in the same allocation */
        struct vchunk *chunks;
        size_t n_chunks;
};

/* The returned source and the fetch state, freed together by ossb_fs_source_free. */
struct zsource {
        struct ossb_fs_source src; /* first: ossb_fs_source_free frees this allocation */
        struct adapter ad;
};

/* The size of a stored gzip member holding n bytes. */
static int64_t member_len(int64_t n)
{
        int64_t blocks = n == 0 ? 1 : (n + STORED_MAX - 1) / STORED_MAX;
        return 10 + n + 5 * blocks + 8;
}

/* A stored gzip member holding one pad byte (the chunk's inner offset) and data[0, n). */
static unsigned char *make_member(const unsigned char *data, size_t n, size_t *ret_len)
{
        size_t total = n + 1, len = (size_t) member_len((int64_t) total);
        unsigned char *m = malloc(len), *p = m;
        if (!m)
                return NULL;
        static const unsigned char hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
        memcpy(p, hdr, sizeof(hdr));
        p += sizeof(hdr);
        uLong crc = crc32(0L, Z_NULL, 0);
        const unsigned char pad = 0;
        crc = crc32(crc, &pad, 1);
        crc = crc32_z(crc, data, n);
        for (size_t at = 0; at < total;) {
                size_t k = total - at < STORED_MAX ? total - at : STORED_MAX;
                *p++ = at + k == total ? 1 : 0;
                *p++ = (unsigned char) k;
                *p++ = (unsigned char) (k >> 8);
                *p++ = (unsigned char) ~k;
                *p++ = (unsigned char) (~k >> 8);
                if (at == 0) {
                        *p++ = pad;
                        memcpy(p, data, k - 1);
                        p += k - 1;
                } else {
                        memcpy(p, data + at - 1, k);
                        p += k;
                }
                at += k;
        }
        uint32_t tail[2] = { (uint32_t) crc, (uint32_t) total };
        for (int i = 0; i < 2; i++)
                for (int b = 0; b < 4; b++)
                        *p++ = (unsigned char) (tail[i] >> (8 * b));
        *ret_len = (size_t) (p - m);
        return m;
}

/* ---- recently decompressed spans ----
 * Several files of a span are usually read one after the other: the last spans decompressed
 * (verified) are kept in memory, process-wide, keyed by their digest (content-addressed, so
 * layers and builds share them safely).  Protected by span_lock. */

#define SPAN_SLOTS 8
#define SPAN_CACHE_BYTES (128 * 1024 * 1024)

struct span_buf {
        unsigned refs; /* protected by span_lock */
        char digest[OSSB_DIGEST_STR_LEN + 1];
        size_t len;
        unsigned char data[];
};

static pthread_mutex_t span_lock = PTHREAD_MUTEX_INITIALIZER;
static struct span_buf *span_slots[SPAN_SLOTS]; /* most recently used first */

static void span_unref(struct span_buf *b)
{
        if (!b)
                return;
        pthread_mutex_lock(&span_lock);
        bool last = --b->refs == 0;
        pthread_mutex_unlock(&span_lock);
        if (last)
                free(b);
}

static void span_unrefp(struct span_buf **b)
{
        span_unref(*b);
}

/* Move slot i to the front. */
static void span_touch(size_t i)
{
        struct span_buf *b = span_slots[i];
        memmove(&span_slots[1], &span_slots[0], i * sizeof(span_slots[0]));
        span_slots[0] = b;
}

static struct span_buf *span_get(const char *digest)
{
        struct span_buf *b = NULL;
        pthread_mutex_lock(&span_lock);
        for (size_t i = 0; i < SPAN_SLOTS && span_slots[i]; i++)
                if (streq(span_slots[i]->digest, digest)) {
                        span_touch(i);
                        b = span_slots[0];
                        b->refs++;
                        break;
                }
        pthread_mutex_unlock(&span_lock);
        return b;
}

/* Drop slot i (span_lock held): the buffer when this was its last reference, else NULL. */
static struct span_buf *span_drop(size_t i)
{
        struct span_buf *b = span_slots[i];
        memmove(&span_slots[i], &span_slots[i + 1], (SPAN_SLOTS - 1 - i) * sizeof(span_slots[0]));
        span_slots[SPAN_SLOTS - 1] = NULL;
        return --b->refs == 0 ? b : NULL;
}

/* Keep `b` (the caller keeps its own reference) in front, evicting the least recently used
 * spans beyond the slot and byte bounds. */
static void span_put(struct span_buf *b)
{
        struct span_buf *drop[SPAN_SLOTS + 1] = { NULL };
        size_t n_drop = 0, bytes = b->len;
        if (b->len > SPAN_CACHE_BYTES / 2)
                return;
        pthread_mutex_lock(&span_lock);
        for (size_t i = 0; i < SPAN_SLOTS && span_slots[i];)
                if (streq(span_slots[i]->digest, b->digest))
                        drop[n_drop++] = span_drop(i);
                else
                        i++;
        if (span_slots[SPAN_SLOTS - 1])
                drop[n_drop++] = span_drop(SPAN_SLOTS - 1);
        memmove(&span_slots[1], &span_slots[0], (SPAN_SLOTS - 1) * sizeof(span_slots[0]));
        span_slots[0] = b;
        b->refs++;
        for (size_t i = 1; i < SPAN_SLOTS && span_slots[i];) {
                if (bytes + span_slots[i]->len > SPAN_CACHE_BYTES && n_drop < ELEMENTSOF(drop)) {
                        drop[n_drop++] = span_drop(i);
                        continue;
                }
                bytes += span_slots[i]->len;
                i++;
        }
        pthread_mutex_unlock(&span_lock);
        for (size_t i = 0; i < n_drop; i++)
                free(drop[i]);
}

void ossb_fs_zran_span_cache_clear(void)
{
        for (;;) {
                pthread_mutex_lock(&span_lock);
                bool any = span_slots[0] != NULL;
                struct span_buf *b = any ? span_drop(0) : NULL;
                pthread_mutex_unlock(&span_lock);
                free(b);
                if (!any)
                        return;
        }
}

/* ---- the fetch function ---- */

struct want {
        size_t span, index; /* index into the caller's ranges */
};

struct request {
        const struct adapter *ad;
        const struct ossb_range *ranges;
        const struct want *wants;
        const size_t *first; /* per unique span: its first want */
        const size_t *spans; /* per unique span: the span */
        const size_t *fetched;   /* per fetched range: the span */
        const size_t *fetched_u; /* per fetched range: the unique span's number */
        size_t n_wants;
        ossb_range_cb cb;
        void *cb_userdata;
};

static int want_cmp(const void *a, const void *b)
{
        const struct want *x = a, *y = b;
        return x->span < y->span ? -1 : x->span > y->span ? 1 : (x->index > y->index) - (x->index < y->index);
}

static int deliver(const struct request *rq, size_t u, const unsigned char *out)
{
        for (size_t w = rq->first[u]; w < rq->n_wants && rq->wants[w].span == rq->spans[u]; w++) {
                size_t idx = rq->wants[w].index;
                const struct vchunk *c = &rq->ad->chunks[rq->ranges[idx].offset / VSTRIDE];
                int k;
                if (!out) {
                        k = rq->cb(rq->cb_userdata, idx, "", 0); /* fails the chunk check: EIO */
                } else {
                        size_t len;
                        _cleanup_free_ unsigned char *m = make_member(out + c->span_off, (size_t) c->size, &len);
                        k = m ? rq->cb(rq->cb_userdata, idx, m, len) : -ENOMEM;
                }
                if (k < 0)
                        return k;
        }
        return 0;
}

static int on_span(void *userdata, size_t u, const void *data, size_t len)
{
        const struct request *rq = userdata;
        const struct adapter *ad = rq->ad;
        size_t s = rq->fetched[u];
        int64_t out_len;
        ossb_zran_span(&ad->z, s, NULL, NULL, NULL, &out_len);
        _cleanup_(span_unrefp) struct span_buf *b = malloc(sizeof(*b) + (size_t) out_len);
        if (!b)
                return -ENOMEM;
        *b = (struct span_buf) { .refs = 1, .len = (size_t) out_len };
        memcpy(b->digest, ad->z.cps[s].digest, sizeof(b->digest));
        struct ossb_error *e = NULL;
        int k = ossb_zran_span_read(&ad->z, s, data, len, b->data, &e);
        if (k < 0) {
                log_error("layer %s: %s", ad->name, e && e->msg ? e->msg : strerror(-k));
                ossb_error_free(e);
                return k == -ENOMEM ? k : deliver(rq, rq->fetched_u[u], NULL);
        }
        span_put(b);
        return deliver(rq, rq->fetched_u[u], b->data);
}

static int zran_fetch(void *userdata, const struct ossb_range *ranges, size_t n, ossb_range_cb cb, void *cb_userdata,
                      struct ossb_error **err)
{
        const struct adapter *ad = userdata;
        _cleanup_free_ struct want *wants = calloc(n ? n : 1, sizeof(*wants));
        _cleanup_free_ size_t *first = calloc(n ? n : 1, sizeof(*first));
        _cleanup_free_ size_t *spans = calloc(n ? n : 1, sizeof(*spans));
        _cleanup_free_ struct ossb_range *real = calloc(n ? n : 1, sizeof(*real));
        _cleanup_free_ size_t *fetched = calloc(n ? n : 1, sizeof(*fetched));
        _cleanup_free_ size_t *fetched_u = calloc(n ? n : 1, sizeof(*fetched_u));
        if (!wants || !first || !spans || !real || !fetched || !fetched_u)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int64_t g = ranges[i].offset / VSTRIDE;
                if (ranges[i].offset < 0 || ranges[i].offset % VSTRIDE || (uint64_t) g >= ad->n_chunks)
                        return ossb_error_set(err, -EINVAL, "layer %s: no chunk at %" PRId64, ad->name, ranges[i].offset);
                wants[i] = (struct want) { ad->chunks[g].span, i };
        }
        qsort(wants, n, sizeof(*wants), want_cmp);
        struct request rq = { .ad = ad, .ranges = ranges, .wants = wants, .first = first, .spans = spans,
                              .fetched = fetched, .fetched_u = fetched_u, .n_wants = n, .cb = cb,
                              .cb_userdata = cb_userdata };
        size_t u = 0, m = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && wants[i].span == wants[i - 1].span)
                        continue;
                first[u] = i;
                spans[u] = wants[i].span;
                _cleanup_(span_unrefp) struct span_buf *b = span_get(ad->z.cps[wants[i].span].digest);
                int k = b ? deliver(&rq, u, b->data) : 0;
                if (k < 0)
                        return ossb_error_set(err, k, "layer %s: %s", ad->name, strerror(-k));
                if (!b) {
                        fetched[m] = wants[i].span;
                        fetched_u[m] = u;
                        ossb_zran_span(&ad->z, wants[i].span, &real[m].offset, &real[m].length, NULL, NULL);
                        m++;
                }
                u++;
        }
        return m ? ad->fetch(ad->fetch_userdata, real, m, on_span, &rq, err) : 0;
}

/* ---- the TOC ---- */

/* Move entry `ze`'s strings into `te` and cut its data into chunks (numbered from *next). */
static int make_entry(const struct ossb_zran *z, struct ossb_zran_entry *ze, struct ossb_toc_entry *te,
                      struct vchunk *chunks, size_t *next)
{
        te->path = TAKE_PTR(ze->path);
        te->link = TAKE_PTR(ze->link);
        te->xattrs = TAKE_PTR(ze->xattrs);
        te->n_xattrs = ze->n_xattrs;
        ze->n_xattrs = 0;
        te->mode = ze->mode;
        te->hardlink = ze->hardlink;
        te->uid = ze->uid;
        te->gid = ze->gid;
        te->size = S_ISREG(ze->mode) && !ze->hardlink ? ze->size : 0;
        te->mtime = ze->mtime;
        te->rdev = ze->rdev;
        size_t first, n = ossb_zran_file_spans(z, ze, &first);
        if (n == 0)
                return 0;
        if (n != ze->n_digests)
                return -EBADMSG;
        te->chunks = calloc(n, sizeof(*te->chunks));
        if (!te->chunks)
                return -ENOMEM;
        int64_t at = ze->offset, end = ze->offset + ze->size;
        for (size_t i = 0; i < n; i++) {
                int64_t s_out, s_len;
                ossb_zran_span(z, first + i, NULL, NULL, &s_out, &s_len);
                int64_t stop = s_out + s_len < end ? s_out + s_len : end;
                struct vchunk *v = &chunks[*next];
                *v = (struct vchunk) { first + i, at - s_out, stop - at };
                struct ossb_toc_chunk *c = &te->chunks[i];
                c->offset = (int64_t) *next * VSTRIDE;
                c->end = c->offset + member_len(v->size + 1);
                c->file_offset = at - ze->offset;
                c->size = v->size;
                c->inner_offset = 1;
                memcpy(c->digest, ze->digests[i], sizeof(c->digest));
                (*next)++;
                at = stop;
        }
        te->n_chunks = n;
        return 0;
}

static int make_toc(struct ossb_zran *z, struct vchunk *chunks, struct ossb_toc **ret)
{
        struct ossb_toc *toc = calloc(1, sizeof(*toc));
        if (!toc)
                return -ENOMEM;
        toc->kind = OSSB_SEEKABLE_ESTARGZ;
        toc->entries = calloc(z->n_entries ? z->n_entries : 1, sizeof(*toc->entries));
        int k = toc->entries ? 0 : -ENOMEM;
        size_t next = 0;
        for (size_t i = 0; k >= 0 && i < z->n_entries; i++) {
                k = make_entry(z, &z->entries[i], &toc->entries[i], chunks, &next);
                toc->n = i + 1;
        }
        if (k < 0) {
                ossb_toc_free(toc);
                return k;
        }
        *ret = toc;
        return 0;
}

/* ---- the allocation ---- */

static size_t align8(size_t n)
{
        return (n + 7) & ~(size_t) 7;
}

/* One allocation: struct zsource, the checkpoints, the chunks, the windows, the name. */
static struct zsource *zsource_alloc(const struct ossb_zran *z, size_t n_chunks, const char *name)
{
        size_t win = 0;
        for (size_t i = 0; i < z->n_cps; i++)
                win += z->cps[i].window_len;
        size_t off_cps = align8(sizeof(struct zsource));
        size_t off_chunks = align8(off_cps + z->n_cps * sizeof(struct ossb_zran_checkpoint));
        size_t off_win = align8(off_chunks + n_chunks * sizeof(struct vchunk));
        size_t off_name = off_win + win;
        unsigned char *p = calloc(1, off_name + strlen(name) + 1);
        if (!p)
                return NULL;
        struct zsource *zs = (struct zsource *) p;
        struct adapter *ad = &zs->ad;
        ad->z = (struct ossb_zran) { .blob_size = z->blob_size, .size = z->size, .span = z->span, .n_cps = z->n_cps,
                                     .cps = (struct ossb_zran_checkpoint *) (p + off_cps) };
        memcpy(ad->z.layer_digest, z->layer_digest, sizeof(ad->z.layer_digest));
        ad->chunks = (struct vchunk *) (p + off_chunks);
        ad->n_chunks = n_chunks;
        unsigned char *w = p + off_win;
        for (size_t i = 0; i < z->n_cps; i++) {
                ad->z.cps[i] = z->cps[i];
                ad->z.cps[i].window = w;
                if (z->cps[i].window_len)
                        memcpy(w, z->cps[i].window, z->cps[i].window_len);
                w += z->cps[i].window_len;
        }
        memcpy(p + off_name, name, strlen(name) + 1);
        ad->name = (const char *) (p + off_name);
        return zs;
}

static int setup(const struct ossb_fs_zran_opts *o, struct ossb_zran *z, struct zsource **ret_zs,
                 struct ossb_toc **ret_toc, struct ossb_error **err)
{
        const char *name = o->name ? o->name : "(gzip layer)";
        size_t n_chunks = 0;
        for (size_t i = 0; i < z->n_entries; i++)
                n_chunks += ossb_zran_file_spans(z, &z->entries[i], NULL);
        if (n_chunks >= (size_t) (INT64_MAX / VSTRIDE) - 1)
                return ossb_error_set(err, -E2BIG, "layer %s: too many file pieces", name);
        struct zsource *zs = zsource_alloc(z, n_chunks, name);
        if (!zs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        zs->ad.fetch = o->fetch;
        zs->ad.fetch_userdata = o->fetch_userdata;
        int k = make_toc(z, zs->ad.chunks, ret_toc);
        if (k < 0) {
                free(zs);
                return k == -ENOMEM ? ossb_error_set(err, k, "out of memory")
                                    : ossb_error_set(err, k, "layer %s: its index's file digests are inconsistent", name);
        }
        *ret_zs = zs;
        return 0;
}

int ossb_fs_source_zran_new(const struct ossb_fs_zran_opts *o, struct ossb_fs_source **ret,
                            struct ossb_error **err)
{
        _cleanup_(ossb_zran_freep) struct ossb_zran *z = o->index;
        if (!z || !o->fetch || !o->cache_dir)
                return ossb_error_set(err, -EINVAL, "a gzip layer source needs an index, a fetch function and a cache dir");
        struct zsource *zs = NULL;
        struct ossb_toc *toc = NULL;
        int k = setup(o, z, &zs, &toc, err);
        if (k < 0)
                return k;
        size_t n_chunks = zs->ad.n_chunks;
        const struct ossb_fs_remote_opts ro = {
                .name = zs->ad.name,
                .blob_size = (int64_t) (n_chunks + 1) * VSTRIDE,
                .toc = toc,
                .fetch = zran_fetch,
                .fetch_userdata = &zs->ad,
                .cache_dir = o->cache_dir,
                .prefetch = false,
                .background = o->background,
                .verify_cache = o->verify_cache,
                .readahead = o->readahead,
        };
        struct ossb_fs_source *inner = NULL;
        k = ossb_fs_source_remote_new(&ro, &inner, err);
        if (k < 0) {
                free(zs);
                return k;
        }
        zs->src = *inner; /* the remote source's ops, ctx and name, in our allocation */
        free(inner);
        *ret = &zs->src;
        return 0;
}
