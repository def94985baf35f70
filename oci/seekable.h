/* oci/seekable.h - seekable layer formats (eStargz, zstd:chunked): reading their table of
 * contents and single chunks, for lazy pulling.
 *
 * Owns: struct ossb_toc (a layer's TOC, decoded and checked) and the chunk decoder.  The
 * writers of these formats sit in the layer writer (oci/layer.h, OSSB_COMPRESSION_ESTARGZ and
 * OSSB_COMPRESSION_ZSTD_CHUNKED); `ossb convert` rewrites images with them.
 *
 * Formats (see ../shared/DESIGN.md "Formats and facts" and the upstream specs: containerd's
 * stargz-snapshotter docs/estargz.md, containers/storage pkg/chunked):
 *   eStargz       a gzip stream of members; each regular file (or each chunk of a large file)
 *                 starts a member; the last tar entry stargz.index.json is the TOC; a 51-byte
 *                 footer (a gzip member with extra field "SG" = %016x of the TOC's offset +
 *                 "STARGZ") ends the blob.  Descriptor annotations:
 *                 containerd.io/snapshot/stargz/toc.digest (the TOC JSON's digest) and
 *                 io.containers.estargz.uncompressed-size.
 *   zstd:chunked  zstd frames per file/chunk; the TOC (the same JSON vocabulary, entries with
 *                 offset/endOffset) in a zstd skippable frame, found through the annotations
 *                 io.github.containers.zstd-chunked.manifest-checksum / -manifest-position
 *                 ("offset:length:lengthUncompressed:type") or the blob's footer.
 * Every TOC is checked against its expected digest when one is known, and every chunk read
 * against its chunkDigest (a file's only chunk: the file's digest): a wrong byte is never
 * served.
 */
#ifndef OSSB_OCI_SEEKABLE_H
#define OSSB_OCI_SEEKABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/image.h"
#include "oci/layer.h"

enum ossb_seekable_kind {
        OSSB_SEEKABLE_NONE = 0,
        OSSB_SEEKABLE_ESTARGZ,
        OSSB_SEEKABLE_ZSTD_CHUNKED,
};

/* Where a layer's TOC is in its blob. */
struct ossb_toc_location {
        enum ossb_seekable_kind kind;
        int64_t offset;                          /* of the TOC's compressed bytes in the blob */
        int64_t length;                          /* their length */
        int64_t uncompressed_length;             /* 0 when unknown */
        char digest[OSSB_DIGEST_STR_LEN + 1];    /* expected digest of the TOC JSON; "" unknown */
        /* Added: expected digest of the TOC's compressed bytes (zstd:chunked's manifest-checksum
         * annotation is that one, not the JSON's); "" unknown.  ossb_toc_decode checks both. */
        char compressed_digest[OSSB_DIGEST_STR_LEN + 1];
};

/* How many bytes from the end of a blob ossb_toc_locate wants when the annotations do not
 * say where the TOC is (more than any footer). */
#define OSSB_SEEKABLE_TAIL_SIZE 512

/* Find the TOC of a layer from its descriptor's `annotations` (a JSON object, may be NULL)
 * and, when those do not suffice, the last `tail_len` bytes of the blob (`tail`, may be NULL
 * when tail_len is 0).  -ENOENT when the layer is in no seekable format (a plain gzip/zstd
 * layer); -EBADMSG naming what is inconsistent.
 * Details: zstd:chunked's position annotation (io.github.containers.zstd-chunked.* or the
 * older io.containers.zstd-chunked.* keys) suffices; eStargz always needs the tail (its TOC
 * offset is only in the footer): with the toc.digest annotation but fewer than 51 tail bytes
 * the answer is -ENODATA ("fetch the tail and ask again").  A footer alone (no annotations)
 * gives a location with no expected digest: the caller decides whether it trusts an
 * unverified TOC.  The footers recognised: eStargz's 51-byte one and the original stargz's
 * 47-byte one, zstd:chunked's 40-byte one (containers/storage < 1.44, stargz-snapshotter)
 * and its 64-byte one (later containers/storage), each in its skippable frame. */
int ossb_toc_locate(json_object *annotations, int64_t blob_size, const void *tail, size_t tail_len,
                    struct ossb_toc_location *ret, struct ossb_error **err);

/* One chunk of a regular file: decompressing blob bytes [offset, end) yields the file's bytes
 * [file_offset, file_offset + size) (after the tar header the member may start with). */
struct ossb_toc_chunk {
        int64_t offset, end;
        int64_t file_offset, size;
        char digest[OSSB_DIGEST_STR_LEN + 1]; /* sha256 of the chunk's bytes; "" when the format gives none */
        /* Added: decompressed bytes to skip before the chunk's data: eStargz's innerOffset
         * (writers with a minimum chunk size put several small files in one member; their
         * chunks then share `offset`).  0 almost always. */
        int64_t inner_offset;
};

struct ossb_toc_entry {
        char *path;          /* cleaned, relative ("etc/passwd"); whiteouts keep their ".wh." names */
        mode_t mode;         /* type and permission bits */
        uid_t uid;
        gid_t gid;
        int64_t size;        /* regular files */
        struct timespec mtime;
        char *link;          /* symlink target, or hard link target path (then `hardlink`) */
        bool hardlink;
        dev_t rdev;
        struct ossb_xattr *xattrs; /* names and values owned */
        size_t n_xattrs;
        char digest[OSSB_DIGEST_STR_LEN + 1]; /* of the whole content (regular files); "" unknown */
        struct ossb_toc_chunk *chunks;        /* in file order, covering [0, size) */
        size_t n_chunks;
};

struct ossb_toc {
        enum ossb_seekable_kind kind;
        struct ossb_toc_entry *entries; /* in the layer's order */
        size_t n;
        /* eStargz: the blob offset up to which the files before .prefetch.landmark lie (one
         * Range request prefetches them); 0 when there is no landmark */
        int64_t prefetch_end;
};

/* Decode the TOC from its compressed bytes (blob bytes [loc->offset, +loc->length)), checking
 * loc->digest when set (-EBADMSG on mismatch, naming both digests).  Entries with ".." or
 * absolute names are refused (-EPERM naming them).
 * Details: `len` must equal loc->length.  loc->compressed_digest is checked first when set.
 * The JSON is at most OSSB_TOC_MAX_JSON bytes with at most OSSB_TOC_MAX_ENTRIES entries.
 * Checked (-EBADMSG naming the entry): known types, names without NUL, hard link targets
 * cleaned like names (".." or absolute: -EPERM), chunks that follow their file and cover
 * [0, size) in order, inner offsets of at most 256 MiB, blob offsets that never go backwards and lie before the TOC, well-formed digests,
 * times and base64 xattr values.  Names are cleaned ("./a//b/" is "a/b"); the root directory,
 * when the layer has an entry for it ("./"), is the entry with path "".  A chunk's `end` is
 * the next larger chunk offset (eStargz, and zstd:chunked without endOffset), or the file's
 * endOffset for zstd:chunked's last chunk, or the TOC's offset. */
#define OSSB_TOC_MAX_JSON (128u * 1024 * 1024)
#define OSSB_TOC_MAX_ENTRIES (4u * 1024 * 1024)
int ossb_toc_decode(const struct ossb_toc_location *loc, const void *data, size_t len, struct ossb_toc **ret,
                    struct ossb_error **err);
void ossb_toc_free(struct ossb_toc *toc);

/* Decompress one chunk: `comp` holds blob bytes [c->offset, c->end); writes c->size bytes to
 * `out` and checks c->digest (-EBADMSG naming the entry and both digests on mismatch).
 * Details: the first c->inner_offset decompressed bytes are skipped; for a file's first chunk
 * a tar header naming this entry with its size, should the member start with one, is skipped
 * too (upstream writers put the header in the member before, so this is a tolerance, never
 * needed for what they write); bytes the members hold after the chunk are ignored; fewer
 * bytes than c->size, or corrupt compressed data, is -EBADMSG.  `comp_len` may be shorter
 * than end - offset when the chunk's bytes end earlier (it must hold them all). */
int ossb_toc_chunk_read(const struct ossb_toc *toc, const struct ossb_toc_entry *e, const struct ossb_toc_chunk *c,
                        const void *comp, size_t comp_len, void *out, struct ossb_error **err);

/* Added: rewrite the layer `src` (its blob in the store: gzip, zstd or plain tar, an eStargz
 * or zstd:chunked one too) with opts->compression into a new layer blob in the store, entry
 * by entry through the layer writer (oci/seekable-convert.c says what is kept).  eStargz's
 * own entries (stargz.index.json, .prefetch.landmark, .no.prefetch.landmark at the root) are
 * dropped when `src` carries the toc.digest annotation; the root directory entry and sockets
 * are dropped always.  The tar stream changes, so does the DiffID: *ret_diff_id is the new
 * one.  *ret: media type, digest, size and annotations (ossb_layer_writer_annotations) of
 * the new layer, caller clears.  -EBADMSG for a corrupt source or an entry leaving the root. */
int ossb_layer_convert(struct ossb_store *s, const struct ossb_descriptor *src, const struct ossb_layer_opts *opts,
                       struct ossb_descriptor *ret, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err);

#endif
