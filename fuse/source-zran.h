/* fuse/source-zran.h - a lower layer of the FUSE filesystem served lazily from a plain gzip
 * layer blob that stays in the registry, through its checkpoint index (oci/zran.h).
 *
 * Owns: turning an index into what the remote source (fuse/source-remote.h) serves, and the
 * fetch function that gives it verified bytes:
 *   - The index's member table becomes the remote source's TOC: the same metadata, whiteouts,
 *     opaque directories and hard links as an eStargz layer.  Each regular file is cut at the
 *     index's span boundaries into chunks (a file inside one span is one chunk), each with the
 *     sha256 the index recorded for those bytes, so the chunk cache (CACHE/chunks, shared with
 *     eStargz and zstd:chunked layers: content-addressed) keeps verified file pieces.
 *   - A chunk's blob offsets in that TOC are virtual (chunk number * 256 MiB): the fetch
 *     function maps them back to spans, reads the spans' compressed bytes through the caller's
 *     fetch function (one call per fetch, so the ranged reader merges them), decompresses each
 *     span once from its checkpoint, checks the span's digest, and hands each chunk over as a
 *     stored gzip member that the remote source decodes and checks against the chunk digest.
 *     A span that is corrupt or does not match its digest is logged (naming the layer, the span
 *     and its blob bytes) and its chunks fail the chunk check: the read fails with EIO, the
 *     remote source's first error names the layer and the file, and no wrong byte is served.
 *
 * So the returned source IS a remote source (ossb_fs_source_is_remote() is true) and every
 * ossb_fs_source_remote_* function applies to it (counters, errors, prefetch, record/replay).
 * Its counters count chunk bytes handed over, not network bytes: the caller's fetch function
 * accounts those (struct ossb_ranged_blob's acct).
 *
 * Lifetime: the fetch state (the index's spans and windows, in one allocation) lives in the
 * same allocation as the returned struct ossb_fs_source, which ossb_fs_source_free frees last
 * (after the remote source's free joined its background thread).
 */
#ifndef OSSB_FUSE_SOURCE_ZRAN_H
#define OSSB_FUSE_SOURCE_ZRAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "fuse/fusefs.h"
#include "fuse/source-remote.h"
#include "oci/zran.h"

struct ossb_fs_zran_opts {
        const char *name;              /* the layer, for messages; copied */
        struct ossb_zran *index;       /* ownership passes to the source, also on failure */
        ossb_fs_remote_fetch_fn fetch; /* reads of the real compressed blob */
        void *fetch_userdata;          /* borrowed: must outlive the source */
        const char *cache_dir;         /* chunks go to CACHE_DIR/chunks/sha256 */
        bool background;               /* fetch the whole layer in the background */
        bool verify_cache;             /* as struct ossb_fs_remote_opts */
        int64_t readahead;             /* as struct ossb_fs_remote_opts */
};

/* A data source for the gzip layer `opts->index` describes.  Free with ossb_fs_source_free. */
int ossb_fs_source_zran_new(const struct ossb_fs_zran_opts *opts, struct ossb_fs_source **ret,
                            struct ossb_error **err);

/* The last spans decompressed are kept in memory (process-wide, at most 8 spans and 128 MiB,
 * keyed by span digest) so that reading the files of a span one after the other decompresses
 * it once.  Drop them (tests, and before exit for leak checkers). */
void ossb_fs_zran_span_cache_clear(void);

#endif
