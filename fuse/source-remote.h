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

/* The first failure of a read (a chunk that did not match its digest, a fetch that failed), as
 * a message naming the layer and the file; NULL when none.  Caller frees. */
char *ossb_fs_source_remote_error(struct ossb_fs_source *src);

#endif
