/* oci/seekable-dec.h - private to oci/: bounded decompression of gzip members or zstd frames
 * held in a buffer, and tar header helpers, for the seekable-format readers.
 *
 * Owns: struct ossb_seek_dec (zlib/zstd contexts; the input buffer stays the caller's).
 */
#ifndef OSSB_OCI_SEEKABLE_DEC_H
#define OSSB_OCI_SEEKABLE_DEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>
#include <zstd.h>

struct ossb_seek_dec {
        bool zstd;
        const unsigned char *in;
        size_t in_len, pos;
        z_stream z;
        bool z_init, member_end;
        ZSTD_DCtx *zd;
        bool frame_open;
};

/* -ENOMEM; on failure ossb_seek_dec_free is still safe. */
int ossb_seek_dec_init(struct ossb_seek_dec *d, bool zstd, const void *in, size_t len);
void ossb_seek_dec_free(struct ossb_seek_dec *d);
/* Up to `want` decompressed bytes (gzip members one after another, zstd frames, skippable
 * frames skipped); *got < want only when the input ends.  -EBADMSG for corrupt data. */
int ossb_seek_dec_read(struct ossb_seek_dec *d, void *out, size_t want, size_t *got);
/* Discard n decompressed bytes; -EBADMSG if there are fewer. */
int ossb_seek_dec_skip(struct ossb_seek_dec *d, int64_t n);
/* Whether all input was used and it ended at a member/frame boundary. */
bool ossb_seek_dec_complete(const struct ossb_seek_dec *d);

/* A 512-byte tar header whose checksum is right. */
bool ossb_tar_header_valid(const unsigned char *b);
/* A numeric field (octal, or base-256 with the high bit); -1 when malformed. */
int64_t ossb_tar_number(const unsigned char *f, size_t n);
/* The entry name of a header (ustar prefix + name). */
void ossb_tar_name(const unsigned char *b, char out[257]);

#endif
