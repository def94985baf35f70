/* oci/seekable-internal.h - what the seekable-format files of oci/ share (never included from
 * outside oci/): the formats' constants and annotation keys, and the writer the layer writer
 * drives for OSSB_COMPRESSION_ESTARGZ and OSSB_COMPRESSION_ZSTD_CHUNKED.
 *
 * Owns: struct ossb_seek_writer (seekable-write.c, its TOC in seekable-toc-write.c).
 */
#ifndef OSSB_OCI_SEEKABLE_INTERNAL_H
#define OSSB_OCI_SEEKABLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/error.h"
#include "oci/compress.h"
#include "oci/layer.h"

#define OSSB_ESTARGZ_TOC_NAME "stargz.index.json"
#define OSSB_ESTARGZ_FOOTER_SIZE 51        /* gzip member, extra field "SG" + %016x + "STARGZ" */
#define OSSB_ESTARGZ_LEGACY_FOOTER_SIZE 47 /* the original stargz: extra field %016x + "STARGZ" */
#define OSSB_ZSTD_SKIPPABLE_HEADER 8       /* magic 0x184D2A50 (LE) + 32-bit frame size */
#define OSSB_ZSTD_CHUNKED_FOOTER_V1 40     /* offset, length, uncompressed length, type, magic */
#define OSSB_ZSTD_CHUNKED_FOOTER_V2 64     /* the same + tar-split offset and lengths */
#define OSSB_ZSTD_CHUNKED_MAGIC "GnUlInUx"
#define OSSB_ZSTD_CHUNKED_MANIFEST_TYPE 1 /* a CRFS-style TOC, the only type there is */
#define OSSB_SEEKABLE_CHUNK_SIZE (4 * 1024 * 1024) /* file bytes per member/frame, as eStargz's default */

#define OSSB_ANNOTATION_STARGZ_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
#define OSSB_ANNOTATION_ESTARGZ_USIZE "io.containers.estargz.uncompressed-size"
#define OSSB_ANNOTATION_ZC_CHECKSUM "io.github.containers.zstd-chunked.manifest-checksum"
#define OSSB_ANNOTATION_ZC_POSITION "io.github.containers.zstd-chunked.manifest-position"
#define OSSB_ANNOTATION_ZC_CHECKSUM_OLD "io.containers.zstd-chunked.manifest-checksum"
#define OSSB_ANNOTATION_ZC_POSITION_OLD "io.containers.zstd-chunked.manifest-position"

/* ---- the compression pipeline (seekable-pipe.c) ----
 * Bytes written go into the open segment; a cut closes it (an empty one is dropped); every
 * closed segment becomes one gzip member or zstd frame, compressed by `threads` threads (1: in
 * the caller's thread) and written to `sink` in order.  Segment indexes count the non-empty
 * segments from 0; a segment's compressed offset is known once it was written out. */
struct ossb_seek_pipe;
int ossb_seek_pipe_new(bool zstd, int level, unsigned threads, ossb_sink_fn sink, void *userdata,
                       struct ossb_seek_pipe **ret, struct ossb_error **err);
int ossb_seek_pipe_write(struct ossb_seek_pipe *p, const void *data, size_t len, struct ossb_error **err);
int ossb_seek_pipe_cut(struct ossb_seek_pipe *p, struct ossb_error **err);
/* The index the open segment gets once closed (if it is not empty). */
uint64_t ossb_seek_pipe_next_index(const struct ossb_seek_pipe *p);
size_t ossb_seek_pipe_open_len(const struct ossb_seek_pipe *p);
/* Cut, and write out every segment. */
int ossb_seek_pipe_flush(struct ossb_seek_pipe *p, struct ossb_error **err);
/* Flush, then write `data` as it is (skippable frames, footers). */
int ossb_seek_pipe_raw(struct ossb_seek_pipe *p, const void *data, size_t len, struct ossb_error **err);
/* Compressed offset and end of a segment written out (-1 otherwise); the end of the last one
 * is the bytes written so far, so ask before any raw write. */
int64_t ossb_seek_pipe_segment_offset(const struct ossb_seek_pipe *p, uint64_t idx);
int64_t ossb_seek_pipe_segment_end(const struct ossb_seek_pipe *p, uint64_t idx);
int64_t ossb_seek_pipe_written(const struct ossb_seek_pipe *p);
void ossb_seek_pipe_free(struct ossb_seek_pipe *p); /* accepts NULL; joins the threads */

/* ---- the writer (one per layer) ----
 * The layer writer feeds the uncompressed tar stream through ossb_seek_writer_write and tells
 * the seekable writer where entries and file chunks start; the stream is cut into segments,
 * each compressed on its own (a gzip member or a zstd frame) by a pool of threads, and written
 * to `sink` in order.  A segment starts with each regular file's data and each 4 MiB chunk of
 * it (the tar header stays in the previous segment, as upstream writers do), so the TOC can
 * point at it.  The bytes depend only on the input and the level, never on the threads. */
struct ossb_seek_writer;

/* kind: OSSB_COMPRESSION_ESTARGZ or OSSB_COMPRESSION_ZSTD_CHUNKED; level -1 for the default
 * (gzip 6, zstd 3); threads 0 for ossb_pgzip_default_threads(). */
int ossb_seek_writer_new(enum ossb_compression kind, int level, unsigned threads, ossb_sink_fn sink, void *userdata,
                         struct ossb_seek_writer **ret, struct ossb_error **err);
/* Uncompressed tar bytes (all of them: headers, data, padding, the end blocks). */
int ossb_seek_writer_write(struct ossb_seek_writer *sw, const void *data, size_t len, struct ossb_error **err);
/* Record an entry, right after its tar header went through ossb_seek_writer_write.  `name` is
 * the tar entry's name (directories with a trailing '/'), `mtime` the clamped one.  For a FILE
 * with data, its first chunk starts here: then ossb_seek_writer_room/_file_data/_next_chunk
 * for every data byte, then ossb_seek_writer_file_end. */
int ossb_seek_writer_entry(struct ossb_seek_writer *sw, const struct ossb_layer_entry *e, const char *name,
                           int64_t mtime, struct ossb_error **err);
/* File bytes the current chunk still takes (0: call ossb_seek_writer_next_chunk first). */
size_t ossb_seek_writer_room(const struct ossb_seek_writer *sw);
/* Hash `len` (<= room) file bytes, before they go through the tar writer. */
int ossb_seek_writer_file_data(struct ossb_seek_writer *sw, const void *data, size_t len, struct ossb_error **err);
int ossb_seek_writer_next_chunk(struct ossb_seek_writer *sw, struct ossb_error **err);
int ossb_seek_writer_file_end(struct ossb_seek_writer *sw, struct ossb_error **err);
/* eStargz only, after the last entry (its padding written): wait for every segment, return the
 * TOC JSON (caller frees) and start the segment its tar entry goes into. */
int ossb_seek_writer_toc_json(struct ossb_seek_writer *sw, char **ret_json, size_t *ret_len, struct ossb_error **err);
/* After the tar stream's end blocks: the last segments, then eStargz's footer or zstd:chunked's
 * TOC frame and footer. */
int ossb_seek_writer_finish(struct ossb_seek_writer *sw, struct ossb_error **err);
/* After finish: the descriptor annotations (a new reference). */
int ossb_seek_writer_annotations(struct ossb_seek_writer *sw, int64_t uncompressed_size, json_object **ret);
void ossb_seek_writer_free(struct ossb_seek_writer *sw); /* accepts NULL; joins the threads */

/* ---- shared by the writer and the reader ---- */

/* "YYYY-MM-DDTHH:MM:SSZ" (UTC) into buf (at least 32 bytes). */
void ossb_seekable_format_time(int64_t t, char buf[32]);
/* RFC 3339 as Go writes time.Time (fraction and offset optional); -EINVAL when malformed. */
int ossb_seekable_parse_time(const char *s, int64_t *ret_sec, long *ret_nsec);
/* Whether `s` (len bytes) is valid UTF-8 (JSON strings must be). */
bool ossb_seekable_utf8_valid(const char *s, size_t len);
/* Standard base64 with padding: encode (caller frees; NULL on ENOMEM) / strict decode. */
char *ossb_seekable_b64_encode(const void *data, size_t len);
int ossb_seekable_b64_decode(const char *s, size_t len, unsigned char **ret, size_t *ret_len);

#endif
