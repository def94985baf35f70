/* oci/compress.h - streaming compressors (gzip, zstd, none) and an auto-detecting decompressor.
 *
 * Owns: struct ossb_compressor.  Output goes to a sink callback as it is produced, so that a
 * caller can hash and store it without an intermediate buffer.  Reproducible: the gzip header
 * carries mtime 0, no name and OS byte 255 ("unknown", as Go's compress/gzip writes it); zstd
 * frames are written single-threaded with a content checksum and no pledged size.  The same
 * input, level and library versions give the same bytes.
 * gzip is compressed by several threads, pigz-style (oci/pgzip.h): one gzip member made of
 * 128 KiB deflate blocks, each primed with the previous 32 KiB; the bytes do not depend on the
 * thread count.  The sink is only ever called from the caller's thread, inside write/finish.
 * Used by oci/layer.c and the exporters; other modules may use it for decompression too.
 */
#ifndef OSSB_OCI_COMPRESS_H
#define OSSB_OCI_COMPRESS_H

#include <stddef.h>

#include "common/error.h"
#include "oci/layer.h"

/* Receives output bytes; returns 0 or -errno (and sets *err). */
typedef int (*ossb_sink_fn)(void *userdata, const void *data, size_t len, struct ossb_error **err);

struct ossb_compressor;

/* level: -1 for the default (gzip 6, zstd 3); gzip 0..9, zstd ZSTD_minCLevel()..ZSTD_maxCLevel();
 * ignored for OSSB_COMPRESSION_NONE.  -EINVAL for a level out of range. */
int ossb_compressor_new(enum ossb_compression c, int level, ossb_sink_fn sink, void *userdata,
                        struct ossb_compressor **ret, struct ossb_error **err);
/* The same, choosing the number of gzip threads: 0 for the default (usable CPUs, at most 8;
 * the environment variable OSSB_COMPRESS_THREADS overrides it), 1 to compress in the caller's
 * thread with no thread started, up to 64.  Ignored for zstd and none. */
int ossb_compressor_new_threads(enum ossb_compression c, int level, unsigned threads, ossb_sink_fn sink,
                                void *userdata, struct ossb_compressor **ret, struct ossb_error **err);
int ossb_compressor_write(struct ossb_compressor *c, const void *data, size_t len, struct ossb_error **err);
/* Flush and end the stream; no write may follow. */
int ossb_compressor_finish(struct ossb_compressor *c, struct ossb_error **err);
void ossb_compressor_free(struct ossb_compressor *c); /* accepts NULL */

/* Recognise a compressed stream by its first bytes (gzip 1f 8b, zstd 28 b5 2f fd); anything
 * else is OSSB_COMPRESSION_NONE. */
enum ossb_compression ossb_compression_detect(const void *head, size_t len);

/* Read `fd` to its end and feed the decompressed bytes to `sink` (gzip with several members,
 * zstd with several frames, or plain data passed through).  -EBADMSG for corrupt input. */
int ossb_decompress_fd(int fd, ossb_sink_fn sink, void *userdata, struct ossb_error **err);

#endif
