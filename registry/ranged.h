/* registry/ranged.h - ranged reads of registry blobs (lazy pulling).
 *
 * Owns: struct ossb_ranged, a reader of byte ranges of the blobs of one repository session
 * (struct ossb_repo), and what it learns about each blob it read: where the blob is served
 * from (the registry, or the storage URL the registry redirects to) and whether that server
 * honours single and multiple byte ranges.
 *
 * How a read goes:
 *   - The first read of a blob resolves it once: `GET /v2/NAME/blobs/DIGEST` with
 *     `Range: bytes=0-1`, following redirects (mirrors first, as pulls do).  The final URL is
 *     kept and used for every later read of the blob; the registry's Authorization header is
 *     only ever sent to the registry's own host, never to the redirected one.  A 401/403 from
 *     a kept URL (an expired pre-signed URL) resolves the blob again.
 *   - The wanted ranges are sorted and ranges closer than `merge_gap` are merged into spans;
 *     the spans go out in as few requests as possible: one multi-range request
 *     (`Range: bytes=a-b,c-d,...`, at most `max_spans` spans each) whose multipart/byteranges
 *     answer is parsed as it streams.  A server that answers a multi-range request with 400 or
 *     416, with a single range, or with the whole blob is marked as not doing multi-range for
 *     this blob, and the remaining spans go out as single-range requests, several at once.
 *   - A 200 answer is the whole blob: the wanted ranges are served from it as it streams, and
 *     the transfer stops as soon as they all arrived.  A server that ignores Range is
 *     remembered as such (later reads of the blob ask for it without a Range header).
 *   - Transient failures are retried as every request of the client is (registry/client.h);
 *     an interrupted transfer resumes with the bytes still missing.
 * Each wanted range is handed to the caller's callback exactly once, as one contiguous buffer,
 * as soon as all its bytes arrived (so the order is the order of arrival, not the caller's).
 *
 * Counters: every body byte received counts (per reader, and per call in a caller-supplied
 * struct ossb_ranged_stats, so that callers can attribute bytes to a layer or a build step).
 *
 * Threads: any thread may call ossb_ranged_read; reads of readers on the same struct
 * ossb_registry are serialised by its lock (as all of client.h is), and the callback runs
 * under that lock, so it must not call into the registry client.  Give each lazily read layer
 * its own struct ossb_registry when reads of different layers should overlap.
 */
#ifndef OSSB_REGISTRY_RANGED_H
#define OSSB_REGISTRY_RANGED_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "registry/client.h"

/* Bytes [offset, offset + length) of a blob. */
struct ossb_range {
        int64_t offset;
        int64_t length;
};

/* Called once per wanted range (`index` into the caller's array) with all of its bytes.
 * `data` is valid during the call only.  A negative return stops the read and is returned. */
typedef int (*ossb_range_cb)(void *userdata, size_t index, const void *data, size_t len);

/* Counters.  Readers update them with atomic adds; read them with ossb_ranged_get_stats, or
 * atomically (__atomic_load_n) for a caller-supplied struct. */
struct ossb_ranged_stats {
        uint64_t bytes;          /* response body bytes received (gaps merged in and multipart
                                  * framing included: what went over the network) */
        uint64_t requests;       /* answers that carried blob bytes (206 or 200; resolves and
                                  * retries included; redirects and 401s not) */
        uint64_t ranges;         /* wanted ranges delivered */
        uint64_t resolves;       /* blobs resolved (GET Range: bytes=0-1) */
        uint64_t multi_fallbacks; /* blobs found not to do multi-range */
        uint64_t whole_blobs;    /* 200 answers (the whole blob) */
};

struct ossb_ranged_opts {
        int64_t merge_gap; /* ranges at most this far apart share a span; <= 0: 64 KiB */
        int max_spans;     /* spans per multi-range request; <= 0: 64 */
        int max_parallel;  /* requests in flight at once; <= 0: the client's max_parallel */
};

struct ossb_ranged;

/* A reader for the blobs of `repo` (borrowed: it must outlive the reader).  `opts` may be
 * NULL (defaults). */
int ossb_ranged_new(struct ossb_repo *repo, const struct ossb_ranged_opts *opts, struct ossb_ranged **ret,
                    struct ossb_error **err);
/* Accepts NULL. */
void ossb_ranged_free(struct ossb_ranged *rr);

/* Read `n` ranges of blob `digest` (`blob_size` bytes, from its descriptor), calling `cb` once
 * per range.  Ranges may be in any order and may overlap; zero-length ranges are delivered at
 * once; a range past blob_size is -EINVAL.  `acct` (may be NULL) gets this read's counters
 * added.  On failure some ranges may have been delivered already; errors name the blob and the
 * repository and carry OSSB_EXIT_REGISTRY: -ENOENT (blob unknown), -EACCES, -EBADMSG (the
 * server's idea of the blob's size differs from blob_size), -EPROTO (answers that never carry
 * the wanted bytes), -EIO (transfers that kept failing), -EINTR (interrupted). */
int ossb_ranged_read(struct ossb_ranged *rr, const char *digest, int64_t blob_size, const struct ossb_range *ranges,
                     size_t n, ossb_range_cb cb, void *userdata, struct ossb_ranged_stats *acct,
                     struct ossb_error **err);

/* The reader's counters since it was made. */
void ossb_ranged_get_stats(struct ossb_ranged *rr, struct ossb_ranged_stats *ret);

/* Forget what was learnt about `digest` (its URL and range support): the next read resolves
 * it again.  For tests and for callers that know a kept URL went stale. */
void ossb_ranged_forget(struct ossb_ranged *rr, const char *digest);

/* One-shot convenience: a temporary reader on `repo` (the blob is resolved for this call
 * only).  Long-lived users (a lazily read layer) keep an ossb_ranged instead. */
int ossb_repo_read_ranges(struct ossb_repo *repo, const char *digest, int64_t blob_size,
                          const struct ossb_range *ranges, size_t n, ossb_range_cb cb, void *userdata,
                          struct ossb_error **err);

/* A blob of a reader, bound for use as a fetch function (the signature of
 * ossb_fs_remote_fetch_fn in fuse/source-remote.h): ossb_ranged_blob_fetch(blob, ...) reads
 * ranges of blob->digest with blob->acct as the accounting.  All fields borrowed. */
struct ossb_ranged_blob {
        struct ossb_ranged *rr;
        const char *digest;
        int64_t size;
        struct ossb_ranged_stats *acct; /* may be NULL */
};

int ossb_ranged_blob_fetch(void *blob, const struct ossb_range *ranges, size_t n, ossb_range_cb cb, void *userdata,
                           struct ossb_error **err);

#endif
