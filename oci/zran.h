/* oci/zran.h - checkpoint indexes of plain gzip layers (zran-style), for lazy pulling.
 *
 * Owns: struct ossb_zran (a layer's index), building it while the layer blob is decompressed
 * once, its serialized form (encode/decode), random reads of uncompressed bytes starting at the
 * nearest checkpoint, and the copies kept in the cache dir (CACHE/indexes/sha256/<hex>.zran).
 *
 * A gzip layer has no random access: decompressing byte N needs every byte before it.  The
 * index records, every ~span compressed bytes (4 MiB by default, and at least every 16 MiB of
 * uncompressed output), at a deflate block boundary, the decompressor's state: the compressed
 * position (byte + bit), the uncompressed position and the last 32 KiB of output (the window,
 * stored deflated).  Reading uncompressed bytes [off, off+len) then starts at the checkpoint
 * before `off` and decompresses one span or a few.  The bytes between two checkpoints form a
 * span; each span's sha256 is recorded while indexing a blob whose whole digest was checked, so
 * every later span read is verified (a span that does not match is -EBADMSG, never served).
 * Multi-member gzip (pigz, ossb's pgzip, concatenated members) is followed across members.
 * The tar member table (path, type, mode, owners, size, mtime, link target, hard link,
 * device numbers, xattrs, and the uncompressed offset of each regular file's data) is recorded
 * on the way, so metadata is answered from the index alone, with the sha256 of each file's
 * bytes in each span (a file inside one span: its whole digest), so that a file's piece can be
 * verified and cached (content-addressed) on its own.  Whiteouts keep their `.wh.` names
 * (the reader interprets them as OCI says).
 *
 * zstd layers are not indexed: ossb pulls plain zstd layers in full (zstd:chunked ones are
 * seekable through their TOC, oci/seekable.h).
 *
 * Serialized format, version 1 (all integers little-endian; deterministic: the same blob and
 * span give the same bytes with the same zlib):
 *   header   "OSSBZRAN" | u32 version=1 | u32 flags=0 | 32 bytes layer sha256 | u64 blob size
 *            | u64 uncompressed size | u64 span | u32 n_checkpoints | u32 n_entries
 *   checkpoints, n_checkpoints times:
 *            u64 in (compressed bytes consumed) | u8 bits (0..7 unused bits of byte in-1)
 *            | u8 kind (0: a gzip member starts at `in`, 1: inside a deflate stream)
 *            | u64 out (uncompressed offset) | 32 bytes sha256 of the span starting here
 *            | u32 window size (uncompressed, <= 32768; 0 for kind 0)
 *            | u32 deflated window length | that many bytes (raw deflate of the window)
 *   entries, n_entries times, in tar order:
 *            u32 mode (st_mode: type and permission bits) | u8 flags (1: hard link)
 *            | u32 uid | u32 gid | u64 size | i64 mtime seconds | u32 mtime nanoseconds
 *            | u64 data offset (uncompressed; regular files) | u32 rdev major | u32 rdev minor
 *            | u32 path length | path | u32 link length | link
 *            | u32 n_xattrs | n_xattrs times (u32 name length | name | u32 value length | value)
 *            | regular files (not hard links) of size > 0: 32 bytes sha256 of the file's bytes in
 *              each span its data crosses, in order (as many as ossb_zran_file_spans counts)
 *   trailer  32 bytes: sha256 of everything before it
 * The first checkpoint is (in 0, out 0, kind 0).  The decoder refuses anything else than this
 * (wrong magic/version, bounds, counts, non-increasing checkpoints, spans over
 * OSSB_ZRAN_MAX_SPAN_OUT bytes, entries whose data lies outside the uncompressed size, names
 * with NUL, "..", or a leading '/', trailing bytes, a wrong trailer): -EBADMSG naming the fault.
 *
 * Trust: an index found in the registry is as trustworthy as the repository it was pushed to
 * (whoever can push the image can push its index); span digests protect against corrupt or
 * substituted blob bytes, not against a hostile index author.
 */
#ifndef OSSB_OCI_ZRAN_H
#define OSSB_OCI_ZRAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/sha256.h"
#include "oci/layer.h"

#define OSSB_ZRAN_MEDIA_TYPE "application/vnd.ossb.zran.index.v1"   /* artifactType and layer type */
#define OSSB_ZRAN_ANNOTATION_LAYER "io.ossb.zran.layer.digest"       /* on each index blob: its layer */
#define OSSB_ZRAN_VERSION 1
#define OSSB_ZRAN_WINDOW 32768
#define OSSB_ZRAN_DEFAULT_SPAN (4 * 1024 * 1024)
#define OSSB_ZRAN_MAX_SPAN_OUT (64 * 1024 * 1024)       /* uncompressed bytes of one span, at most */
#define OSSB_ZRAN_MAX_INDEX (256u * 1024 * 1024)        /* serialized index, at most */
#define OSSB_ZRAN_MAX_ENTRIES (4u * 1024 * 1024)
#define OSSB_ZRAN_MAX_CHECKPOINTS (1u * 1024 * 1024)

enum {
        OSSB_ZRAN_MEMBER = 0, /* a gzip member (header first) starts at `in` */
        OSSB_ZRAN_INSIDE = 1, /* inside a deflate stream: prime `bits`, set the window */
};

struct ossb_zran_checkpoint {
        int64_t in;       /* compressed bytes consumed */
        uint8_t bits;     /* unused bits of byte in - 1 (0..7) */
        uint8_t kind;     /* OSSB_ZRAN_MEMBER or OSSB_ZRAN_INSIDE */
        int64_t out;      /* uncompressed offset */
        char digest[OSSB_DIGEST_STR_LEN + 1]; /* sha256 of the span starting here */
        uint32_t window_size;  /* uncompressed */
        unsigned char *window; /* deflated (raw), owned */
        size_t window_len;
};

struct ossb_zran_entry {
        char *path;        /* relative, as in the tar with "./" and leading '/' removed; "" root */
        mode_t mode;       /* type and permission bits */
        bool hardlink;     /* `link` names the entry holding the content */
        uid_t uid;
        gid_t gid;
        int64_t size;      /* regular files */
        struct timespec mtime;
        int64_t offset;    /* uncompressed offset of a regular file's data */
        dev_t rdev;
        char *link;        /* symlink or hard link target, NULL when none */
        struct ossb_xattr *xattrs; /* names and values owned */
        size_t n_xattrs;
        /* regular files: the sha256 of the file's bytes in each span its data crosses, in
         * order (ossb_zran_file_spans says which spans); owned */
        char (*digests)[OSSB_DIGEST_STR_LEN + 1];
        size_t n_digests;
};

struct ossb_zran {
        char layer_digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t blob_size; /* compressed */
        int64_t size;      /* uncompressed (the tar) */
        int64_t span;      /* the span asked for when built */
        struct ossb_zran_checkpoint *cps;
        size_t n_cps;
        struct ossb_zran_entry *entries;
        size_t n_entries;
};

void ossb_zran_free(struct ossb_zran *z);
OSSB_DEFINE_CLEANUP(struct ossb_zran *, ossb_zran_free)

/* Sequential reader of the compressed blob: up to len bytes into buf; 0 at the end; -errno
 * with *err set on failure. */
typedef ssize_t (*ossb_zran_read_fn)(void *userdata, void *buf, size_t len, struct ossb_error **err);

struct ossb_zran_build_opts {
        const char *name;        /* for messages ("IMAGE layer 2 (sha256:...)") */
        const char *digest;      /* the blob's digest: required, checked at the end */
        int64_t size;            /* the blob's size; < 0: not checked */
        int64_t span;            /* compressed bytes between checkpoints; <= 0: 4 MiB */
};

/* Decompress the blob once from `read`, recording checkpoints, span digests and the tar
 * member table.  The blob must hash to opts->digest (-EBADMSG otherwise: no index).  Errors:
 * -EBADMSG for corrupt gzip or tar, -ENOTSUP for what the index cannot describe (sparse
 * files, a span over OSSB_ZRAN_MAX_SPAN_OUT), -E2BIG past the count limits. */
int ossb_zran_build(const struct ossb_zran_build_opts *opts, ossb_zran_read_fn read, void *userdata,
                    struct ossb_zran **ret, struct ossb_error **err);

/* Serialize (format above).  *ret is malloc'd; caller frees. */
int ossb_zran_encode(const struct ossb_zran *z, void **ret, size_t *ret_len, struct ossb_error **err);

/* Parse and check serialized bytes (hostile input: see above). */
int ossb_zran_decode(const void *data, size_t len, struct ossb_zran **ret, struct ossb_error **err);

/* The spans a regular file's data [offset, offset + size) crosses: the count (0 for an empty
 * file), the first in *ret_first. */
size_t ossb_zran_file_spans(const struct ossb_zran *z, const struct ossb_zran_entry *e, size_t *ret_first);

/* The span holding uncompressed offset `off` (0 <= off < z->size; else the last span). */
size_t ossb_zran_span_at(const struct ossb_zran *z, int64_t off);

/* Span `i`: the compressed bytes to fetch [*ret_in, *ret_in + *ret_in_len) and the
 * uncompressed bytes it yields [*ret_out, *ret_out + *ret_out_len).  Any pointer may be NULL. */
void ossb_zran_span(const struct ossb_zran *z, size_t i, int64_t *ret_in, int64_t *ret_in_len, int64_t *ret_out,
                    int64_t *ret_out_len);

/* Decompress span `i` from its compressed bytes (`comp`, exactly the range ossb_zran_span
 * gives) into `out` (its uncompressed length) and check its digest: -EBADMSG naming the span
 * when the bytes are corrupt, too few, or do not match. */
int ossb_zran_span_read(const struct ossb_zran *z, size_t i, const void *comp, size_t comp_len, void *out,
                        struct ossb_error **err);

/* Random read through a positional reader of the compressed blob: uncompressed bytes
 * [off, off + len) into buf (short only at the end), every span verified.  The count or
 * -errno. */
typedef int (*ossb_zran_pread_fn)(void *userdata, void *buf, size_t len, int64_t off, struct ossb_error **err);
ssize_t ossb_zran_read(const struct ossb_zran *z, ossb_zran_pread_fn pread, void *userdata, void *buf, size_t len,
                       int64_t off, struct ossb_error **err);

/* CACHE_DIR/indexes/sha256/<hex>.zran for a layer digest; newly allocated, NULL on ENOMEM or
 * an invalid digest. */
char *ossb_zran_cache_path(const char *cache_dir, const char *layer_digest);

/* Load the cached index of `layer_digest` (blob of `blob_size` bytes, < 0: not checked):
 * -ENOENT when there is none; a cached file that does not parse or belongs to another blob is
 * removed and -ENOENT returned (logged at debug). */
int ossb_zran_cache_load(const char *cache_dir, const char *layer_digest, int64_t blob_size, struct ossb_zran **ret,
                         struct ossb_error **err);

/* Store serialized index bytes (checked by decoding first) in the cache: temp file, fsync,
 * rename.  *ret_path (may be NULL) gets the path, caller frees. */
int ossb_zran_cache_store(const char *cache_dir, const void *data, size_t len, char **ret_path,
                          struct ossb_error **err);

#endif
