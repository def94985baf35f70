/* fuse/source-remote.h - a lower layer of the FUSE filesystem served lazily from a seekable
 * (eStargz, zstd:chunked) layer blob that stays in the registry.
 *
 * Owns: the layer's path index (built from its decoded TOC, struct ossb_toc of
 * oci/seekable.h), the fetching of file chunks on first read, their verification, and the
 * background prefetch of the layer.
 *
 *   - Metadata (getattr, readdir, readlink, getxattr, listxattr) comes from the TOC alone:
 *     directories the TOC leaves out are implied (0755, root-owned), hard links answer with
 *     their target's attributes and content (one inode number, the link count counted),
 *     `.wh.NAME` entries are reported as whiteouts of NAME (OSSB_FS_WHITEOUT, a 0/0 character
 *     device, listed by readdir as DT_CHR), `.wh..wh..opq` marks its directory OSSB_FS_OPAQUE,
 *     and eStargz's landmark files (.prefetch.landmark, .no.prefetch.landmark) are not shown.
 *   - A read fetches the chunks it needs that are not in the chunk cache (fuse/chunkcache.h),
 *     all of them in one call of the fetch function (which merges them into few requests),
 *     plus some read-ahead for sequential readers.  Every chunk is decoded and checked with
 *     ossb_toc_chunk_read before it is stored or served: a chunk that does not match its digest
 *     is never served, the read fails with EIO and an error is logged naming the layer, the
 *     file and the chunk (ossb_fs_source_remote_error keeps the first such message).  Chunks
 *     come from the cache afterwards; one pruned meanwhile is fetched again.
 *   - Several threads reading the same missing chunk fetch it once.
 *   - Prefetch (opts.prefetch): a background thread fetches every chunk before the eStargz
 *     prefetch landmark (toc->prefetch_end) in one fetch call as soon as the source exists;
 *     with opts.background it then fetches the rest of the layer, in calls of at most
 *     opts.max_fetch compressed bytes, so that on-demand reads get their turn.
 *
 * The source does not know how bytes are fetched: the caller passes a fetch function (for a
 * registry, ossb_ranged_blob_fetch of registry/ranged.h with a struct ossb_ranged_blob).
 */
#ifndef OSSB_FUSE_SOURCE_REMOTE_H
#define OSSB_FUSE_SOURCE_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "fuse/fusefs.h"
#include "oci/seekable.h"
#include "registry/ranged.h"

/* Read `n` ranges of the layer blob, calling `cb` once per range with all of its bytes (in
 * any order); 0 when every range was delivered, else -errno with *err set.  Called from FUSE
 * threads and the background thread, possibly at once. */
typedef int (*ossb_fs_remote_fetch_fn)(void *userdata, const struct ossb_range *ranges, size_t n, ossb_range_cb cb,
                                       void *cb_userdata, struct ossb_error **err);

struct ossb_fs_remote_opts {
        const char *name;            /* the layer, for messages ("debian:12 layer sha256:..."); copied */
        int64_t blob_size;           /* the layer blob's size (chunk offsets are checked against it) */
        struct ossb_toc *toc;        /* the decoded, digest-checked TOC; ownership passes to the
                                      * source, also on failure */
        ossb_fs_remote_fetch_fn fetch;
        void *fetch_userdata;        /* borrowed: must outlive the source */
        const char *cache_dir;       /* the build cache dir: chunks go to CACHE_DIR/chunks/sha256 */
        bool prefetch;               /* fetch the files before the prefetch landmark at once */
        bool background;             /* then fetch the whole layer in the background */
        bool verify_cache;           /* re-hash a cached chunk on its first use (else trusted by name) */
        int64_t max_fetch;           /* background fetch calls: compressed bytes each; <= 0: 16 MiB */
        int64_t readahead;           /* sequential reads fetch this many more file bytes; 0: 1 MiB,
                                      * < 0: none */
};

/* Counters of one source (atomic snapshots). */
struct ossb_fs_remote_stats {
        uint64_t fetches;           /* fetch calls */
        uint64_t fetched_bytes;     /* compressed chunk bytes received */
        uint64_t chunks_fetched;    /* chunks received, verified and cached */
        uint64_t cache_hits;        /* chunks found in the chunk cache on their first use here */
        uint64_t bytes_read;        /* file bytes served by read */
        uint64_t bad_chunks;        /* chunks that did not match their digest (never served) */
        uint64_t prefetched_chunks; /* chunks fetched by prefetch and background completion */
        bool prefetch_done;         /* the prefetch (and background completion, when asked) ended */
        /* (Added for record and replay.) */
        uint64_t prefetched_bytes;  /* compressed bytes fetched by prefetch, background completion
                                     * and replay (the rest of fetched_bytes was fetched by reads) */
};

/* A data source for the layer; `ret`'s name is opts->name.  Free with ossb_fs_source_free
 * (stops and joins the background thread). */
int ossb_fs_source_remote_new(const struct ossb_fs_remote_opts *opts, struct ossb_fs_source **ret,
                              struct ossb_error **err);

/* Whether `src` is a remote source (the functions below accept only those). */
bool ossb_fs_source_is_remote(const struct ossb_fs_source *src);

void ossb_fs_source_remote_get_stats(struct ossb_fs_source *src, struct ossb_fs_remote_stats *ret);

/* Wait until the background prefetch ends; its error, if it failed (a prefetch that failed
 * only means later reads fetch on demand). */
int ossb_fs_source_remote_wait(struct ossb_fs_source *src, struct ossb_error **err);

/* Fetch every chunk of the regular files named (relative paths; names that are not regular
 * files of the layer are skipped) now, in one fetch call: for replaying the files a step read
 * in an earlier build. */
int ossb_fs_source_remote_fetch_paths(struct ossb_fs_source *src, char *const *paths, size_t n,
                                      struct ossb_error **err);

/* ---- record and replay (added; engine/replay.h keeps the records) ----
 *
 * Recording: every path of the layer opened (regular files: reads and copy-ups) or read with
 * readlink is appended to the source's log the first time it is used, so the log is the
 * layer's distinct used paths in first-use order.  The log is capped at
 * OSSB_FS_REMOTE_RECORD_MAX paths and OSSB_FS_REMOTE_RECORD_MAX_BYTES bytes of path text; later
 * paths are not recorded and the log says it was capped.  A caller marks windows (a build
 * step) by taking the log's length before and after. */
#define OSSB_FS_REMOTE_RECORD_MAX 100000
#define OSSB_FS_REMOTE_RECORD_MAX_BYTES (8 * 1024 * 1024)

/* The number of paths recorded so far; *ret_capped (may be NULL): whether some were not. */
size_t ossb_fs_source_remote_record_mark(struct ossb_fs_source *src, bool *ret_capped);

/* Copies of the recorded paths [from, to) (to is clamped to the log's length), as a
 * NULL-terminated vector the caller frees with ossb_strv_free; -ENOMEM. */
int ossb_fs_source_remote_record_paths(struct ossb_fs_source *src, size_t from, size_t to, char ***ret);

/* What the layer has at `path`: OSSB_FS_REMOTE_FILE (a regular file, or a hard link to one),
 * OSSB_FS_REMOTE_HIDES (anything else: a whiteout, a directory, a symlink... - lower layers'
 * `path` is not what a reader sees), or -ENOENT (lower layers decide). */
enum {
        OSSB_FS_REMOTE_FILE = 1,
        OSSB_FS_REMOTE_HIDES = 2,
};
int ossb_fs_source_remote_path_kind(struct ossb_fs_source *src, const char *path);

/* Replay: fetch the chunks of the regular files named (relative paths, e.g. those an earlier
 * build's steps read; others are skipped), in the order given, in the background, in calls of
 * at most opts.max_fetch compressed bytes.  The chunks of the first
 * OSSB_FS_REMOTE_REPLAY_CLAIM bytes (compressed) are claimed before this returns, the rest as
 * the work goes: a read of a claimed chunk waits for the replay's fetch instead of fetching it
 * again, so a step started after this call fetches none of those chunks itself.  Chunks in the
 * chunk cache are taken from it.  Its bytes count as prefetched_bytes.  One replay per source
 * (-EBUSY for a second); `paths` is copied. */
#define OSSB_FS_REMOTE_REPLAY_CLAIM (64 * 1024 * 1024)

struct ossb_fs_remote_replay_stats {
        uint64_t files;            /* regular files of the layer among the paths */
        uint64_t file_bytes;       /* their size */
        uint64_t chunks;           /* their chunks */
        uint64_t compressed_bytes; /* the chunks' compressed size */
        uint64_t fetched_bytes;    /* compressed bytes the replay fetched */
        uint64_t fetched_chunks;   /* chunks it fetched, verified and cached */
        uint64_t cache_hits;       /* chunks it found in the chunk cache */
        uint64_t skipped_chunks;   /* chunks others fetched or had fetched, or left when stopped */
        bool done;                 /* the replay ended (completed, failed or stopped) */
        bool stopped;              /* it was stopped before the end */
        bool failed;               /* a fetch failed (the chunks left are fetched on demand) */
};

int ossb_fs_source_remote_replay_start(struct ossb_fs_source *src, char *const *paths, size_t n,
                                       struct ossb_error **err);
/* Ask the replay to stop after its current fetch call and wait for it (nothing when none);
 * with `finish` wait for it to complete instead. */
void ossb_fs_source_remote_replay_stop(struct ossb_fs_source *src, bool finish);
/* Counters of the replay (zeros when none was started). */
void ossb_fs_source_remote_replay_stats(struct ossb_fs_source *src, struct ossb_fs_remote_replay_stats *ret);

/* The first failure of a read (a chunk that did not match its digest, a fetch that failed), as
 * a message naming the layer and the file; NULL when none.  Caller frees. */
char *ossb_fs_source_remote_error(struct ossb_fs_source *src);

#endif
