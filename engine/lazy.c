/* engine/lazy.c - base image layers read lazily (issue 6): with the fuse snapshotter, a FROM
 * layer in a seekable format whose TOC digest its descriptor carries is not pulled: its TOC is
 * fetched with two Range requests, checked, and served by a remote FUSE source
 * (fuse/source-remote.h) that fetches file chunks when a step reads them, each chunk checked
 * against the TOC.  A plain gzip layer with a checkpoint index (in the cache, or pushed as an
 * artifact referring to the image: engine/lazy-index.c) is served the same way through
 * fuse/source-zran.h.  Other layers are pulled and unpacked in full (layers.c).
 *
 * Owns: struct lazy_layer (one per lazily read layer of the build: its own registry client,
 * so that layers' reads overlap, its repository, ranged reader, counters and shared source),
 * the accounting of fetched bytes per layer and per step, fetching the blobs of lazy layers
 * an output needs in full (an OCI layout, a docker archive), and the blob reader that streams
 * them to a registry a push cannot mount them on. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "engine/build-internal.h"
#include "engine/lazy-index.h"
#include "engine/replay.h"
#include "fuse/fusefs.h"
#include "fuse/source-remote.h"
#include "oci/seekable.h"
#include "registry/pull.h"
#include "registry/ranged.h"

struct lazy_layer {
        struct ossb_registry *reg;
        struct ossb_repo *repo;
        struct ossb_ranged *rr;
        struct ossb_ranged_stats acct;
        struct ossb_ranged_blob blob;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        char *name;   /* "IMAGE layer N (sha256:...)" */
        struct ossb_reference *ref;
        struct ossb_fs_shared *shared;
        struct replay_group *replay; /* engine/replay.c: the group of its FROM image, or NULL */
};

int ossb_lazy_mode_parse(const char *s, enum ossb_lazy_mode *ret)
{
        static const char *const names[] = { "auto", "off", "on-demand", "background" };
        for (size_t i = 0; s && i < ELEMENTSOF(names); i++)
                if (streq(s, names[i])) {
                        *ret = (enum ossb_lazy_mode) i;
                        return 0;
                }
        return -EINVAL;
}

static void lazy_layer_free(struct lazy_layer *l)
{
        if (!l)
                return;
        ossb_fs_shared_unref(l->shared);
        ossb_ranged_free(l->rr);
        ossb_repo_free(l->repo);
        ossb_registry_free(l->reg);
        ossb_reference_free(l->ref);
        free(l->name);
        free(l);
}

void ossb_lazy_free_all(struct build *b)
{
        ossb_replay_free_all(b); /* its replays use the layers' registry clients */
        for (size_t i = 0; i < b->n_lazy; i++)
                lazy_layer_free(b->lazy[i]);
        free(b->lazy);
        b->lazy = NULL;
        b->n_lazy = 0;
}

bool ossb_lazy_enabled(const struct build *b)
{
        enum ossb_lazy_mode m = b->opts->lazy;
        return b->snapshotter == OSSB_SNAPSHOT_FUSE && m != OSSB_LAZY_OFF;
}

/* ---- reading a layer's TOC ---- */

struct buf_cb {
        void *buf;
        size_t len;
};

static int copy_range(void *userdata, size_t index, const void *data, size_t len)
{
        struct buf_cb *bc = userdata;
        (void) index;
        if (len != bc->len)
                return -EPROTO;
        memcpy(bc->buf, data, len);
        return 0;
}

static int read_bytes(struct lazy_layer *l, int64_t off, size_t len, void *buf, struct ossb_error **err)
{
        struct ossb_range rg = { .offset = off, .length = (int64_t) len };
        struct buf_cb bc = { .buf = buf, .len = len };
        return ossb_ranged_read(l->rr, l->digest, l->size, &rg, 1, copy_range, &bc, &l->acct, err);
}

/* The layer's TOC location, from the annotations and, when they do not say, the blob's tail.
 * -ENOENT: not seekable, or no TOC digest to check it against (pulled in full then). */
static int locate(struct lazy_layer *l, const struct ossb_descriptor *d, struct ossb_toc_location *loc,
                  struct ossb_error **err)
{
        int r = ossb_toc_locate(d->annotations, l->size, NULL, 0, loc, NULL);
        if (r == -ENODATA || (r == -ENOENT && d->annotations)) {
                unsigned char tail[OSSB_SEEKABLE_TAIL_SIZE];
                size_t n = l->size < (int64_t) sizeof(tail) ? (size_t) l->size : sizeof(tail);
                r = read_bytes(l, l->size - (int64_t) n, n, tail, err);
                if (r < 0)
                        return r;
                r = ossb_toc_locate(d->annotations, l->size, tail, n, loc, err);
        }
        if (r < 0)
                return r;
        if (!loc->digest[0] && !loc->compressed_digest[0])
                return -ENOENT; /* a TOC nothing vouches for is not trusted */
        return 0;
}

static int read_toc(struct lazy_layer *l, const struct ossb_descriptor *d, struct ossb_toc **ret,
                    struct ossb_error **err)
{
        struct ossb_toc_location loc = { 0 };
        int r = locate(l, d, &loc, err);
        if (r < 0)
                return r;
        if (loc.length <= 0 || loc.length > OSSB_TOC_MAX_JSON || loc.offset < 0 || loc.offset + loc.length > l->size)
                return ossb_error_set(err, -EBADMSG, "%s: its TOC lies outside the blob", l->name);
        _cleanup_free_ void *data = malloc((size_t) loc.length);
        if (!data)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = read_bytes(l, loc.offset, (size_t) loc.length, data, err);
        if (r >= 0)
                r = ossb_toc_decode(&loc, data, (size_t) loc.length, ret, err);
        return r;
}

/* ---- one lazily read layer ---- */

static int layer_open(struct build *b, struct lazy_layer *l, struct ossb_error **err)
{
        struct ossb_registry_opts o = { .conf = ossb_build_regconf(b), .auth_file = b->opts->registry_auth_file };
        int r = ossb_registry_new(&o, &l->reg, err);
        if (r >= 0)
                r = ossb_repo_open(l->reg, l->ref, false, &l->repo, err);
        if (r >= 0)
                r = ossb_ranged_new(l->repo, NULL, &l->rr, err);
        l->blob = (struct ossb_ranged_blob) { .rr = l->rr, .digest = l->digest, .size = l->size, .acct = &l->acct };
        return r;
}

static int layer_source(struct build *b, struct lazy_layer *l, struct ossb_toc *toc, struct ossb_error **err)
{
        const struct ossb_fs_remote_opts o = {
                .name = l->name,
                .blob_size = l->size,
                .toc = toc,
                .fetch = ossb_ranged_blob_fetch,
                .fetch_userdata = &l->blob,
                .cache_dir = b->opts->cache_dir,
                .prefetch = true,
                .background = b->opts->lazy == OSSB_LAZY_BACKGROUND,
                .verify_cache = true, /* chunks are stored without fsync (fuse/chunkcache.h) */
        };
        struct ossb_fs_source *src = NULL;
        int r = ossb_fs_source_remote_new(&o, &src, err);
        if (r < 0)
                return r;
        l->shared = ossb_fs_shared_new(src);
        return l->shared ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
}

static int remember(struct build *b, struct lazy_layer *l)
{
        struct lazy_layer **nv = reallocarray(b->lazy, b->n_lazy + 1, sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        b->lazy = nv;
        nv[b->n_lazy++] = l;
        return 0;
}

/* A lazily read layer for layer `i` of image `p`, or -ENOENT when it cannot be one. */
static int lazy_layer_new(struct build *b, const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                          size_t i, struct ossb_lazy_index *ix, struct lazy_layer **ret, struct ossb_error **err)
{
        const struct ossb_descriptor *d = &p->parsed->layers[i];
        struct lazy_layer *l = calloc(1, sizeof(*l));
        struct ossb_toc *toc = NULL;
        int r = l ? 0 : -ENOMEM;
        if (r >= 0) {
                memcpy(l->digest, d->digest, sizeof(l->digest));
                l->size = d->size;
                if (asprintf(&l->name, "%s layer %zu (%.19s)", p->name, i + 1, d->digest) < 0)
                        l->name = NULL;
                r = l->name ? 0 : -ENOMEM;
        }
        _cleanup_free_ char *full = r >= 0 ? ossb_reference_full(ref) : NULL;
        _cleanup_free_ char *repository = r >= 0 ? ossb_reference_repository(ref) : NULL;
        if (r >= 0 && (!full || !repository || ossb_reference_parse(full, &l->ref, NULL) < 0))
                r = -ENOMEM;
        if (r < 0) {
                lazy_layer_free(l);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        r = layer_open(b, l, err);
        if (r >= 0)
                r = read_toc(l, d, &toc, err);
        if (r >= 0)
                r = layer_source(b, l, TAKE_PTR(toc), err);
        else if (r == -ENOENT) { /* no TOC: a gzip layer with a checkpoint index? (lazy-index.c) */
                struct ossb_fs_source *src = NULL;
                ossb_error_free(err ? TAKE_PTR(*err) : NULL);
                r = ossb_lazy_index_source(ix, l->repo, d, l->name, ossb_ranged_blob_fetch, &l->blob,
                                           b->opts->lazy == OSSB_LAZY_BACKGROUND, &src, err);
                if (r >= 0 && !(l->shared = ossb_fs_shared_new(src)))
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (r >= 0)
                r = ossb_blob_source_add(b->store, d->digest, repository, err);
        if (r >= 0 && remember(b, l) < 0)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        ossb_toc_free(toc);
        if (r < 0) {
                lazy_layer_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

/* Each layer of `p` that can be read lazily gets its lazy layer in ret[i] (else NULL).  A layer
 * that cannot (not seekable, no TOC digest) is left to the full pull, saying why at debug
 * level; a failure to talk to the registry fails the build. */
int ossb_lazy_layers(struct build *b, const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                     struct lazy_layer **ret, struct ossb_error **err)
{
        _cleanup_(ossb_lazy_index_freep) struct ossb_lazy_index *ix = ossb_lazy_index_new(b->opts->cache_dir,
                                                                                          p->manifest.digest);
        for (size_t i = 0; i < p->parsed->n_layers; i++) {
                struct ossb_error *e = NULL;
                ret[i] = NULL;
                int r = lazy_layer_new(b, ref, p, i, ix, &ret[i], &e);
                if (r == -ENOENT || r == -EBADMSG) {
                        log_debug("%s layer %zu: pulled in full (%s)", p->name, i + 1,
                                  e && e->msg ? e->msg : "not in a seekable format with a TOC digest");
                        ossb_error_free(e);
                        continue;
                }
                if (r < 0) {
                        if (err)
                                *err = e;
                        else
                                ossb_error_free(e);
                        return r;
                }
                log_info("%s: read lazily", ret[i]->name);
        }
        ossb_replay_image(b, p, ret); /* record and replay (engine/replay.c) */
        return 0;
}

int ossb_lazy_push(struct ossb_stagefs *fs, struct lazy_layer *l, struct ossb_error **err)
{
        return ossb_stagefs_push_shared(fs, l->shared, l->name, err);
}

/* ---- for engine/replay.c ---- */

struct ossb_fs_source *ossb_lazy_source(struct lazy_layer *l)
{
        return ossb_fs_shared_source(l->shared);
}

const char *ossb_lazy_name(const struct lazy_layer *l)
{
        return l->name;
}

const char *ossb_lazy_digest(const struct lazy_layer *l)
{
        return l->digest;
}

struct replay_group **ossb_lazy_replay_group(struct lazy_layer *l)
{
        return &l->replay;
}

/* ---- counters ---- */

/* The chunk bytes reads fetched (a step's own): for remote (TOC) sources without the TOCs,
 * the prefetch, background completion and replays, which run beside the steps; for others
 * every byte received. */
uint64_t ossb_lazy_fetched_bytes(struct build *b)
{
        uint64_t n = 0;
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct ossb_fs_source *src = ossb_fs_shared_source(b->lazy[i]->shared);
                struct ossb_fs_remote_stats st;
                if (!ossb_fs_source_is_remote(src)) {
                        n += __atomic_load_n(&b->lazy[i]->acct.bytes, __ATOMIC_RELAXED);
                        continue;
                }
                ossb_fs_source_remote_get_stats(src, &st);
                n += st.fetched_bytes > st.prefetched_bytes ? st.fetched_bytes - st.prefetched_bytes : 0;
        }
        return n;
}

void ossb_lazy_report(struct build *b)
{
        ossb_replay_finish(b); /* replays stopped and reported, records written */
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct lazy_layer *l = b->lazy[i];
                struct ossb_fs_remote_stats st;
                ossb_fs_source_remote_get_stats(ossb_fs_shared_source(l->shared), &st);
                uint64_t got = __atomic_load_n(&l->acct.bytes, __ATOMIC_RELAXED);
                ossb_progress_lazy(b, l->name, l->digest, got, l->size, st.chunks_fetched, st.cache_hits);
                _cleanup_free_ char *e = ossb_fs_source_remote_error(ossb_fs_shared_source(l->shared));
                if (e)
                        log_warn("%s", e);
        }
}

/* The first read failure of a lazily read layer (a chunk that did not match the TOC, a fetch
 * that failed): the build must not use a result computed without those bytes. */
int ossb_lazy_check(struct build *b, struct ossb_error **err)
{
        for (size_t i = 0; i < b->n_lazy; i++) {
                _cleanup_free_ char *e = ossb_fs_source_remote_error(ossb_fs_shared_source(b->lazy[i]->shared));
                if (e)
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EIO, "%s", e);
        }
        return 0;
}

/* ---- outputs that need the whole blobs ---- */

/* Fetch into the store the blobs of lazily read layers that are not there. */
int ossb_lazy_materialize(struct build *b, struct ossb_error **err)
{
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct lazy_layer *l = b->lazy[i];
                if (ossb_store_has(b->store, l->digest))
                        continue;
                struct ossb_descriptor d = { .size = l->size, .media_type = (char *) OSSB_MT_OCI_LAYER_GZIP };
                memcpy(d.digest, l->digest, sizeof(d.digest));
                int r = ossb_repo_fetch_blobs(l->repo, b->store, &d, 1, NULL, NULL, err);
                if (r < 0)
                        return ossb_error_wrap(err, "fetching %s in full for the output", l->name);
        }
        return 0;
}

/* ---- pushing: the blobs of lazily read layers, streamed to another registry ---- */

static struct lazy_layer *lazy_find(struct build *b, const char *digest)
{
        for (size_t i = 0; i < b->n_lazy; i++)
                if (streq(b->lazy[i]->digest, digest))
                        return b->lazy[i];
        return NULL;
}

static bool reader_has(void *userdata, const char *digest, int64_t size)
{
        struct lazy_layer *l = lazy_find(userdata, digest);
        return l && l->size == size;
}

static int reader_read(void *userdata, const char *digest, int64_t off, void *buf, size_t len,
                       struct ossb_error **err)
{
        struct lazy_layer *l = lazy_find(userdata, digest);
        if (!l)
                return ossb_error_set(err, -ENOENT, "blob %s was not read lazily by this build", digest);
        int r = read_bytes(l, off, len, buf, err);
        return r < 0 ? ossb_error_wrap(err, "reading %s", l->name) : 0;
}

/* A push of the result to a registry that cannot mount the lazily read base blobs (another
 * registry) streams them from their registry: registry/client.h's blob reader. */
void ossb_lazy_set_blob_reader(struct build *b, struct ossb_registry *reg)
{
        if (b->n_lazy == 0)
                return;
        struct ossb_blob_reader rd = { .has = reader_has, .read = reader_read, .userdata = b };
        ossb_registry_set_blob_reader(reg, &rd);
}
