/* fuse/chunkcache.h - the on-disk cache of verified file chunks of lazily pulled layers,
 * shared by every build that uses the same cache dir.
 *
 * Owns: CACHE_DIR/chunks/sha256/:
 *   <hex>         the uncompressed bytes of a chunk whose sha256 is <hex> (a TOC's chunkDigest,
 *                 or a single-chunk file's digest), content-addressed, never changed once
 *                 there; its mtime is its last use (for prune)
 *   tmp-<hex>.*   writes in progress (renamed into place once complete)
 * Chunks only land here after their bytes were checked against their digest.  They are not
 * fsynced (one fsync per chunk made reading a whole layer 1.8x slower): after a crash a chunk
 * may be torn although its name says complete, so a reader that did not store a chunk itself
 * re-hashes it before its first use (ossb_chunkcache_verify; the remote source's
 * verify_cache, which the engine always sets), and a damaged chunk is removed and fetched
 * again; it is never served.
 *
 * Concurrency: builds and threads share the directory without locks.  Writers race
 * harmlessly (same name, same bytes: the last rename wins); a chunk may be pruned while a build
 * uses it, so readers treat -ENOENT as "fetch it again" (an fd already open stays readable).
 * All functions may be called from several threads at once.
 */
#ifndef OSSB_FUSE_CHUNKCACHE_H
#define OSSB_FUSE_CHUNKCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

struct ossb_chunkcache;

/* Open (creating) CACHE_DIR/chunks/sha256. */
int ossb_chunkcache_open(const char *cache_dir, struct ossb_chunkcache **ret, struct ossb_error **err);
/* Accepts NULL. */
void ossb_chunkcache_free(struct ossb_chunkcache *cc);
/* CACHE_DIR/chunks/sha256 (for messages). */
const char *ossb_chunkcache_path(const struct ossb_chunkcache *cc);

/* Whether chunk `digest` ("sha256:<hex>") is cached with `size` bytes (size < 0: any). */
bool ossb_chunkcache_has(struct ossb_chunkcache *cc, const char *digest, int64_t size);

/* Open chunk `digest` for reading (O_RDONLY|O_CLOEXEC): an fd, -ENOENT when absent, -EBADMSG
 * when its size is not `size` (size < 0: not checked; a chunk of the wrong size is removed). */
int ossb_chunkcache_open_chunk(struct ossb_chunkcache *cc, const char *digest, int64_t size);

/* Read up to len bytes of chunk `digest` from offset `off`: the count (short only at its end),
 * -ENOENT when absent, -EBADMSG when its size is not `size` (size < 0: not checked). */
ssize_t ossb_chunkcache_pread(struct ossb_chunkcache *cc, const char *digest, int64_t size, void *buf, size_t len,
                              int64_t off);

/* Store a chunk: a temp file, written and renamed into place (not fsynced); a chunk already there is
 * kept.  With `verify` the bytes are hashed first (-EBADMSG naming both digests when they do
 * not match: nothing is stored).  Without it the caller vouches for them. */
int ossb_chunkcache_put(struct ossb_chunkcache *cc, const char *digest, const void *data, size_t len, bool verify,
                        struct ossb_error **err);

/* Re-hash a cached chunk: 0 when its bytes match its name; -EBADMSG (and the chunk removed)
 * when not; -ENOENT when absent. */
int ossb_chunkcache_verify(struct ossb_chunkcache *cc, const char *digest, struct ossb_error **err);

/* Record a use of the chunk now (its mtime; prune evicts the least recently used first). */
void ossb_chunkcache_touch(struct ossb_chunkcache *cc, const char *digest);

/* Evict chunks, least recently used first, until those left take at most keep_bytes (0: all);
 * temp files older than an hour go too.  Safe while builds use the cache (see above): a chunk
 * used again after the scan is kept.  *ret_freed (may be NULL): bytes removed.  A cache dir
 * without chunks is not an error. */
int ossb_chunkcache_prune(const char *cache_dir, int64_t keep_bytes, int64_t *ret_freed, struct ossb_error **err);

/* The bytes and the number of chunks in the cache (either pointer may be NULL). */
int ossb_chunkcache_usage(const char *cache_dir, int64_t *ret_bytes, int64_t *ret_chunks, struct ossb_error **err);

#endif
