/* fuse/source-remote-replay.c - record and replay for the remote source (source-remote.c):
 * the paths steps open, kept per source in first-use order (capped), and a replay thread that
 * claims and fetches the chunks of recorded paths in order while steps run, a step that needs a
 * claimed chunk waiting for it instead of fetching it twice. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "fuse/source-remote-internal.h"

/* ---- replay ---- */

static int64_t remote_ref_bytes(const struct remote *rs, struct cref r)
{
        const struct ossb_toc_chunk *c = remote_chunk_of(rs, r);
        return c->end - c->offset;
}

/* The first item at or after `from` where OSSB_FS_REMOTE_REPLAY_CLAIM compressed bytes from
 * `from` are reached (at least `min`). */
static size_t claim_window(const struct replay *rp, size_t from, size_t min)
{
        int64_t bytes = 0;
        size_t i = from;
        for (; i < rp->n && (i < min || bytes < OSSB_FS_REMOTE_REPLAY_CLAIM); i++)
                bytes += remote_ref_bytes(rp->rs, rp->list[i]);
        return i;
}

/* Claim the items [rp->claimed, end) nobody holds or has. */
static void replay_claim(struct replay *rp, size_t end)
{
        struct remote *rs = rp->rs;
        pthread_mutex_lock(&rs->lock);
        for (; rp->claimed < end; rp->claimed++) {
                uint8_t *s = &rs->cstate[remote_gid(rs, rp->list[rp->claimed])];
                if (*s == CH_UNKNOWN) {
                        *s = CH_INFLIGHT;
                        rp->ours[rp->claimed] = 1;
                } else
                        __atomic_fetch_add(&rp->st.skipped_chunks, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&rs->lock);
}

/* Give up the claims of items [from, rp->claimed) not settled yet. */
static void replay_release(struct replay *rp, size_t from)
{
        struct remote *rs = rp->rs;
        pthread_mutex_lock(&rs->lock);
        for (size_t i = from; i < rp->claimed; i++)
                if (rp->ours[i]) {
                        rs->cstate[remote_gid(rs, rp->list[i])] = CH_UNKNOWN;
                        rp->ours[i] = 0;
                        __atomic_fetch_add(&rp->st.skipped_chunks, 1, __ATOMIC_RELAXED);
                }
        pthread_cond_broadcast(&rs->cond);
        pthread_mutex_unlock(&rs->lock);
}

/* One fetch call's worth of items from `pos`: claimed (ahead too), looked up in the cache,
 * the rest fetched.  Returns the next position, or -errno when the fetch failed. */
static ssize_t replay_batch(struct replay *rp, size_t pos, struct cref *mine)
{
        struct remote *rs = rp->rs;
        size_t end = pos, m = 0;
        for (int64_t bytes = 0; end < rp->n && (end == pos || bytes + remote_ref_bytes(rs, rp->list[end]) <= rs->max_fetch);
             end++)
                bytes += remote_ref_bytes(rs, rp->list[end]);
        replay_claim(rp, claim_window(rp, pos, end));
        for (size_t i = pos; i < end; i++)
                if (rp->ours[i]) {
                        mine[m++] = rp->list[i];
                        rp->ours[i] = 0;
                }
        size_t left = remote_from_cache(rs, mine, m);
        __atomic_fetch_add(&rp->st.cache_hits, (uint64_t) (m - left), __ATOMIC_RELAXED);
        if (left == 0)
                return (ssize_t) end;
        struct ossb_error *e = NULL;
        int k = remote_fetch_claimed(rs, mine, left, FETCH_REPLAY, &e); /* settles them, fetched or not */
        ossb_error_free(e);
        return k < 0 ? k : (ssize_t) end;
}

static void *replay_main(void *arg)
{
        struct replay *rp = arg;
        struct cref *mine = calloc(rp->n ? rp->n : 1, sizeof(*mine));
        size_t pos = 0;
        while (mine && pos < rp->n && !atomic_load(&rp->stop) && !atomic_load(&rp->rs->stopping)) {
                ssize_t next = replay_batch(rp, pos, mine);
                if (next < 0) {
                        __atomic_store_n(&rp->st.failed, true, __ATOMIC_RELAXED);
                        break;
                }
                pos = (size_t) next;
        }
        free(mine);
        if (pos < rp->n)
                __atomic_store_n(&rp->st.stopped, true, __ATOMIC_RELAXED);
        replay_release(rp, pos);
        log_debug("layer %s: replay %s", rp->rs->name, pos < rp->n ? "stopped" : "done");
        __atomic_store_n(&rp->st.done, true, __ATOMIC_RELEASE);
        return NULL;
}

void remote_replay_free(struct replay *rp)
{
        if (!rp)
                return;
        free(rp->list);
        free(rp->ours);
        free(rp);
}

/* The chunks of the regular files among `paths` (each file once) into rp. */
static int replay_collect(struct replay *rp, char *const *paths, size_t n)
{
        struct remote *rs = rp->rs;
        _cleanup_free_ uint8_t *seen = calloc(rs->toc->n ? rs->toc->n : 1, 1);
        size_t cap = 0;
        if (!seen)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint32_t nd = paths[i] ? remote_lookup(rs, paths[i]) : NONE;
                const struct ossb_toc_entry *e = nd == NONE || (rs->nodes[nd].flags & OSSB_FS_WHITEOUT) ? NULL
                                                                                                         : remote_entry_of(rs, nd);
                if (!e || !S_ISREG(e->mode) || rs->nodes[rs->nodes[nd].target].dir)
                        continue;
                uint32_t ei = (uint32_t) rs->nodes[rs->nodes[nd].target].entry;
                if (seen[ei])
                        continue;
                seen[ei] = 1;
                rp->st.files++;
                rp->st.file_bytes += (uint64_t) e->size;
                for (size_t c = 0; c < e->n_chunks; c++) {
                        int k = remote_push_ref(&rp->list, &rp->n, &cap, (struct cref) { ei, (uint32_t) c });
                        if (k < 0)
                                return k;
                        rp->st.compressed_bytes += (uint64_t) (e->chunks[c].end - e->chunks[c].offset);
                }
        }
        rp->st.chunks = rp->n;
        rp->ours = calloc(rp->n ? rp->n : 1, 1);
        return rp->ours ? 0 : -ENOMEM;
}

/* ---- record and replay ---- */

size_t ossb_fs_source_remote_record_mark(struct ossb_fs_source *src, bool *ret_capped)
{
        struct remote *rs = src->ctx;
        pthread_mutex_lock(&rs->rec_lock);
        size_t n = rs->n_rec;
        if (ret_capped)
                *ret_capped = rs->rec_capped;
        pthread_mutex_unlock(&rs->rec_lock);
        return n;
}

int ossb_fs_source_remote_record_paths(struct ossb_fs_source *src, size_t from, size_t to, char ***ret)
{
        struct remote *rs = src->ctx;
        pthread_mutex_lock(&rs->rec_lock);
        if (to > rs->n_rec)
                to = rs->n_rec;
        size_t n = from < to ? to - from : 0;
        char **v = calloc(n + 1, sizeof(*v));
        for (size_t i = 0; v && i < n; i++)
                if (!(v[i] = strdup(rs->nodes[rs->rec[from + i]].path))) {
                        ossb_strv_free(v);
                        v = NULL;
                }
        pthread_mutex_unlock(&rs->rec_lock);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

int ossb_fs_source_remote_path_kind(struct ossb_fs_source *src, const char *path)
{
        struct remote *rs = src->ctx;
        uint32_t i = remote_lookup(rs, path);
        if (i == NONE)
                return -ENOENT;
        const struct ossb_toc_entry *e = (rs->nodes[i].flags & OSSB_FS_WHITEOUT) ? NULL : remote_entry_of(rs, i);
        return e && S_ISREG(e->mode) && !rs->nodes[rs->nodes[i].target].dir ? OSSB_FS_REMOTE_FILE : OSSB_FS_REMOTE_HIDES;
}

int ossb_fs_source_remote_replay_start(struct ossb_fs_source *src, char *const *paths, size_t n,
                                       struct ossb_error **err)
{
        struct remote *rs = src->ctx;
        if (__atomic_load_n(&rs->replay, __ATOMIC_ACQUIRE))
                return ossb_error_set(err, -EBUSY, "layer %s: a replay was already started", rs->name);
        struct replay *rp = calloc(1, sizeof(*rp));
        if (!rp)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        rp->rs = rs;
        int k = replay_collect(rp, paths, n);
        if (k < 0) {
                remote_replay_free(rp);
                return ossb_error_set(err, k, "out of memory");
        }
        __atomic_store_n(&rs->replay, rp, __ATOMIC_RELEASE);
        replay_claim(rp, claim_window(rp, 0, 0)); /* before any step can read them */
        k = rp->n ? -pthread_create(&rp->thread, NULL, replay_main, rp) : 0;
        rp->started = rp->n && k >= 0;
        if (!rp->started) {
                replay_release(rp, 0);
                __atomic_store_n(&rp->st.done, true, __ATOMIC_RELEASE);
        }
        if (k < 0)
                return ossb_error_set(err, k, "layer %s: cannot start the replay thread: %s", rs->name, strerror(-k));
        return 0;
}

void ossb_fs_source_remote_replay_stop(struct ossb_fs_source *src, bool finish)
{
        struct remote *rs = src->ctx;
        struct replay *rp = __atomic_load_n(&rs->replay, __ATOMIC_ACQUIRE);
        if (!rp || !rp->started || rp->joined)
                return;
        if (!finish)
                atomic_store(&rp->stop, true);
        pthread_join(rp->thread, NULL);
        rp->joined = true;
}

void ossb_fs_source_remote_replay_stats(struct ossb_fs_source *src, struct ossb_fs_remote_replay_stats *ret)
{
        struct remote *rs = src->ctx;
        struct replay *rp = __atomic_load_n(&rs->replay, __ATOMIC_ACQUIRE);
        memset(ret, 0, sizeof(*ret));
        if (!rp)
                return;
        ret->files = rp->st.files; /* set before the replay was published */
        ret->file_bytes = rp->st.file_bytes;
        ret->chunks = rp->st.chunks;
        ret->compressed_bytes = rp->st.compressed_bytes;
        ret->fetched_bytes = __atomic_load_n(&rp->st.fetched_bytes, __ATOMIC_RELAXED);
        ret->fetched_chunks = __atomic_load_n(&rp->st.fetched_chunks, __ATOMIC_RELAXED);
        ret->cache_hits = __atomic_load_n(&rp->st.cache_hits, __ATOMIC_RELAXED);
        ret->skipped_chunks = __atomic_load_n(&rp->st.skipped_chunks, __ATOMIC_RELAXED);
        ret->done = __atomic_load_n(&rp->st.done, __ATOMIC_ACQUIRE);
        ret->stopped = __atomic_load_n(&rp->st.stopped, __ATOMIC_RELAXED);
        ret->failed = __atomic_load_n(&rp->st.failed, __ATOMIC_RELAXED);
}
