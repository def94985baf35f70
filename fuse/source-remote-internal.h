/* fuse/source-remote-internal.h - what fuse/source-remote.c (the path index, metadata, chunk
 * fetches, reads, background prefetch) and fuse/source-remote-replay.c (recording the paths
 * steps use, replaying a record) share: the source's state and the chunk helpers. */
#ifndef OSSB_FUSE_SOURCE_REMOTE_INTERNAL_H
#define OSSB_FUSE_SOURCE_REMOTE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fuse/chunkcache.h"
#include "fuse/source-remote.h"

#define NONE UINT32_MAX
#define DEFAULT_MAX_FETCH (16 * 1024 * 1024)
#define DEFAULT_READAHEAD (1024 * 1024)
/* Files read one after another in blob order (tar, cp -r, a checksum of every file): the first
 * read of a file also fetches the files after it in the same request, SEQ_READAHEAD
 * compressed bytes the first time, twice as many each further time (up to SEQ_READAHEAD_MAX)
 * while the reads stay in order.  "In blob order": this file's entry follows the last file
 * whose first read came before, by at most SEQ_GAP entries. */
#define SEQ_READAHEAD (4 * 1024 * 1024)
#define SEQ_READAHEAD_MAX (32 * 1024 * 1024)
#define SEQ_GAP 16
#define MAX_LINK_DEPTH 16
#define MAX_PATH_LEN 4096
#define MAX_WAIT_ROUNDS 3

enum {
        CH_UNKNOWN = 0, /* not known to be cached */
        CH_INFLIGHT,    /* a thread is fetching (or looking it up in the cache) */
        CH_CACHED,      /* in the chunk cache, verified */
};

struct node {
        char *path;          /* relative to the layer root; "" is the root */
        uint32_t parent;
        uint32_t first_child, last_child, next;
        int32_t entry;       /* index in toc->entries; -1: an implied directory or a whiteout */
        uint32_t target;     /* hard links: the node holding the content and attributes; else itself */
        uint32_t nlink;
        uint8_t flags;       /* OSSB_FS_WHITEOUT, OSSB_FS_OPAQUE */
        bool dir;
        bool removed;        /* replaced or whited out later in the same layer */
};

/* A chunk: entry and chunk index. */
struct cref {
        uint32_t entry, chunk;
};

struct remote {
        char *name;
        int64_t blob_size;
        struct ossb_toc *toc;
        ossb_fs_remote_fetch_fn fetch;
        void *fetch_userdata;
        struct ossb_chunkcache *cache;
        bool verify_cache, prefetch, background;
        int64_t max_fetch, readahead;
        _Atomic uint32_t last_first_read; /* the entry whose first read came last (NONE: none) */
        _Atomic int64_t seq_window;       /* the next read-ahead across files, compressed bytes */
        /* the index: read-only once built */
        struct node *nodes;
        uint32_t n_nodes, cap_nodes;
        uint32_t *hash; /* node index + 1, 0: empty; open addressing */
        uint32_t hash_cap;
        size_t *cbase;  /* per TOC entry: the number of its first chunk */
        size_t n_chunks;
        /* chunk states */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *cstate;   /* protected by lock */
        char *first_error; /* protected by lock */
        /* the background thread */
        pthread_t thread;
        bool thread_started, thread_joined; /* owner thread only */
        atomic_bool stopping;
        struct ossb_error *bg_err; /* the thread's; read after join */
        struct ossb_fs_remote_stats st; /* atomic adds */
        /* recording (see the top) */
        pthread_mutex_t rec_lock;
        uint8_t *recorded; /* per node; atomic exchange */
        uint32_t *rec;     /* node indexes in first-use order; protected by rec_lock */
        size_t n_rec, cap_rec, rec_bytes;
        bool rec_capped;
        struct replay *replay; /* set once by ossb_fs_source_remote_replay_start (atomic load) */
};

/* A replay of recorded paths (ossb_fs_source_remote_replay_start). */
struct replay {
        struct remote *rs;
        struct cref *list; /* the chunks, in the order of the paths */
        size_t n;
        uint8_t *ours;     /* per item: claimed by the replay, not settled yet (replay thread only,
                            * and the starter before the thread exists) */
        size_t claimed;    /* items [0, claimed) were offered to claim */
        pthread_t thread;
        bool started, joined; /* owner thread only */
        atomic_bool stop;
        struct ossb_fs_remote_replay_stats st; /* atomic */
};

struct rhandle {
        uint32_t node;
        int64_t last_end; /* where the previous read ended (sequential read-ahead) */
};

#define ST_ADD(rs, f, v) __atomic_fetch_add(&(rs)->st.f, (uint64_t) (v), __ATOMIC_RELAXED)

/* Who fetches: a read, the prefetch or background completion, a replay. */
enum { FETCH_READ, FETCH_PREFETCH, FETCH_REPLAY };

/* source-remote.c */
uint32_t remote_lookup(const struct remote *rs, const char *path); /* a node, or NONE */
const struct ossb_toc_entry *remote_entry_of(const struct remote *rs, uint32_t node);
size_t remote_gid(const struct remote *rs, struct cref r); /* the chunk's index in cstate */
const struct ossb_toc_chunk *remote_chunk_of(const struct remote *rs, struct cref r);
/* Fetch claimed chunks (FETCH_* kind) into the cache and settle their states. */
int remote_fetch_claimed(struct remote *rs, const struct cref *refs, size_t n, int kind, struct ossb_error **err);
/* Claimed chunks found in the cache become CACHED; returns how many still need fetching
 * (moved to the front of refs). */
size_t remote_from_cache(struct remote *rs, struct cref *refs, size_t n);
int remote_push_ref(struct cref **v, size_t *n, size_t *cap, struct cref r);

/* source-remote-replay.c */
void remote_replay_free(struct replay *rp); /* accepts NULL */

#endif
