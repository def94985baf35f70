/* oci/pgzip.h - a parallel gzip writer (pigz-style), private to the oci module.
 *
 * Owns: struct ossb_pgzip, its worker threads and its block buffers.
 * The output is one gzip member: the header compress.h describes (mtime 0, no name, OS 255),
 * then raw deflate data cut into blocks of OSSB_PGZIP_BLOCK input bytes, each compressed on its
 * own with the previous 32 KiB of input as its dictionary and ended by a sync flush (the last one
 * by Z_FINISH), then the CRC-32 and the input size.  A block whose byte histogram is as flat as
 * random data's (already compressed files) is stored (level 0) instead: deflate could not
 * shrink it and would spend most of its time trying.  The bytes depend only on the input and the
 * level, never on the number of threads, the caller's chunk sizes or timing.
 *
 * Threads: the caller's thread copies input into blocks and writes output, in order, through the
 * sink; only it ever calls the sink.  Workers only compress.  With one thread no thread is
 * started and blocks are compressed in the caller.  At most 2 blocks per worker (plus one being
 * filled) are in memory.  ossb_pgzip_free() stops and joins every worker, finished or not.
 */
#ifndef OSSB_OCI_PGZIP_H
#define OSSB_OCI_PGZIP_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "oci/compress.h"

#define OSSB_PGZIP_BLOCK (128 * 1024) /* input bytes per deflate block */
#define OSSB_PGZIP_MAX_THREADS 8

struct ossb_pgzip;

/* The default thread count: online CPUs usable by this process, capped at
 * OSSB_PGZIP_MAX_THREADS; the environment variable OSSB_COMPRESS_THREADS (1..64), if set,
 * overrides it (for benchmarks and debugging). */
unsigned ossb_pgzip_default_threads(void);

/* level 0..9 or -1 (6); threads 0 means ossb_pgzip_default_threads(), otherwise 1..64.
 * -EINVAL for an out-of-range argument, -ENOMEM, or -errno from pthread_create. */
int ossb_pgzip_new(int level, unsigned threads, ossb_sink_fn sink, void *userdata, struct ossb_pgzip **ret,
                   struct ossb_error **err);
/* Once write or finish failed, every later call fails with the same code. */
int ossb_pgzip_write(struct ossb_pgzip *p, const void *data, size_t len, struct ossb_error **err);
int ossb_pgzip_finish(struct ossb_pgzip *p, struct ossb_error **err);
/* Accepts NULL and an unfinished stream; joins the workers. */
void ossb_pgzip_free(struct ossb_pgzip *p);

/* The number of worker threads running (0 when compressing in the caller). */
unsigned ossb_pgzip_threads(const struct ossb_pgzip *p);

/* For tests: make the compression of block number `seq` (0-based) fail as zlib would. */
void ossb_pgzip_inject_failure(struct ossb_pgzip *p, uint64_t seq);

#endif
