/* oci/layer.h - the layer writer pipeline: tar entries -> compressor -> blob in the store.
 *
 * Owns: one struct ossb_layer_writer per layer being written.  Entries go through libarchive
 * (PAX format) into a callback that hashes the uncompressed bytes (the DiffID), feeds the
 * compressor (gzip via zlib, zstd, or none), hashes the compressed bytes (the digest) and
 * writes them to a store ingest.  No uncompressed temporary tar is ever written.
 * Reproducible: entries are written in the order given (callers pass them sorted), mtimes are
 * clamped to SOURCE_DATE_EPOCH when opts.source_date_epoch >= 0, no atime/ctime, no uname/gname.
 * Mtimes are stored with one-second resolution (mtime_nsec is not recorded), as Go's
 * archive/tar does by default.  Names and link targets are bytes: UTF-8 ones are stored as PAX
 * path records, others as they are (hdrcharset=BINARY); the process locale does not matter.
 * The compressors live in oci/compress.h.
 */
#ifndef OSSB_OCI_LAYER_H
#define OSSB_OCI_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/store.h"

enum ossb_compression {
        OSSB_COMPRESSION_GZIP = 0,
        OSSB_COMPRESSION_ZSTD,
        OSSB_COMPRESSION_NONE,
        /* Seekable formats (oci/seekable.h): eStargz is gzip (gzip's media type), zstd:chunked
         * is zstd (zstd's media type); both carry a table of contents and need the layer
         * descriptor's annotations (ossb_layer_writer_annotations) to be lazily pullable. */
        OSSB_COMPRESSION_ESTARGZ,
        OSSB_COMPRESSION_ZSTD_CHUNKED,
};

/* Parse "gzip" | "zstd" | "uncompressed" | "estargz" | "zstd:chunked"; -EINVAL otherwise. */
int ossb_compression_from_string(const char *s, enum ossb_compression *ret);
const char *ossb_compression_to_string(enum ossb_compression c);
/* OCI layer media type for a compression. */
const char *ossb_compression_media_type(enum ossb_compression c);

struct ossb_layer_opts {
        enum ossb_compression compression;
        int level;                 /* -1: the compressor's default (gzip 6, zstd 3) */
        int64_t source_date_epoch; /* -1: unset; else clamp every mtime to it */
        unsigned threads;          /* compression threads: 0 the default (ossb_pgzip_default_threads) */
        /* Added: when set, a successful ossb_layer_writer_finish stores in *ret_annotations
         * what ossb_layer_writer_annotations returns (a new reference the caller puts; NULL
         * for compressions that need none).  For callers that do not hold the writer (a tree
         * or snapshot diff written through these options); set it to NULL before. */
        json_object **ret_annotations;
};

enum ossb_entry_type {
        OSSB_ENTRY_FILE = 0,
        OSSB_ENTRY_DIR,
        OSSB_ENTRY_SYMLINK,
        OSSB_ENTRY_HARDLINK,
        OSSB_ENTRY_CHAR,
        OSSB_ENTRY_BLOCK,
        OSSB_ENTRY_FIFO,
};

struct ossb_xattr {
        const char *name;
        const void *value;
        size_t size;
};

struct ossb_layer_entry {
        const char *path;      /* relative, '/'-separated, no leading "/" or "./", e.g. "app/x" */
        enum ossb_entry_type type;
        mode_t mode;           /* permission bits incl. setuid/setgid/sticky (07777) */
        uid_t uid;
        gid_t gid;
        int64_t mtime_sec;
        long mtime_nsec;
        int64_t size;          /* FILE only */
        const char *linkname;  /* SYMLINK target, or HARDLINK: path of the earlier entry */
        dev_t rdev;            /* CHAR/BLOCK */
        const struct ossb_xattr *xattrs;
        size_t n_xattrs;
};

struct ossb_layer_writer;

int ossb_layer_writer_new(struct ossb_store *store, const struct ossb_layer_opts *opts,
                          struct ossb_layer_writer **ret, struct ossb_error **err);
/* Add an entry; for FILE its content is read from `fd` (exactly e->size bytes, -EIO when the
 * file is shorter), otherwise fd is ignored (-1). */
int ossb_layer_writer_add(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, int fd,
                          struct ossb_error **err);
/* Add a FILE entry whose content is a buffer (len must equal e->size). */
int ossb_layer_writer_add_data(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, const void *data,
                               size_t len, struct ossb_error **err);
/* Reads up to `cap` bytes of an entry's content into `buf`: returns how many (0 at the end)
 * or -errno with *err set. */
typedef ssize_t (*ossb_layer_read_fn)(void *userdata, void *buf, size_t cap, struct ossb_error **err);
/* Add a FILE entry whose content comes from `read` (exactly e->size bytes: fewer is -EIO,
 * more are not read), e.g. from another archive being converted (ossb_layer_convert). */
int ossb_layer_writer_add_stream(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, ossb_layer_read_fn read,
                                 void *userdata, struct ossb_error **err);
/* Close the tar stream, flush the compressor, commit the blob. */
int ossb_layer_writer_finish(struct ossb_layer_writer *w, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
                             int64_t *ret_size, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1],
                             struct ossb_error **err);
/* After a successful finish: the annotations the layer's descriptor must carry (*ret a new
 * reference): for OSSB_COMPRESSION_ESTARGZ containerd.io/snapshot/stargz/toc.digest (the TOC
 * JSON's digest) and io.containers.estargz.uncompressed-size; for OSSB_COMPRESSION_ZSTD_CHUNKED
 * io.github.containers.zstd-chunked.manifest-checksum (the compressed TOC's digest) and
 * -manifest-position ("offset:length:uncompressedLength:1"), also under the older
 * io.containers.zstd-chunked.* keys that containers/storage before 1.44 reads.  *ret = NULL
 * for the other compressions.  -EINVAL before finish, -ENOMEM. */
int ossb_layer_writer_annotations(struct ossb_layer_writer *w, json_object **ret);
/* Free; an unfinished layer is aborted and its temp file removed.  Accepts NULL. */
void ossb_layer_writer_free(struct ossb_layer_writer *w);

/* Errors: an invalid entry (bad path, missing fd, size mismatch) returns -EINVAL/-EBADF and the
 * writer stays usable; any error after the entry's header was written (short file: -EIO, read
 * or store errors) breaks the stream and every later call on the writer fails. */

/* Force the pread fallback for file contents instead of io_uring (tests, debugging). */
void ossb_layer_disable_io_uring(bool disable);
/* Whether this writer read file contents with io_uring (false before the first file). */
bool ossb_layer_writer_used_io_uring(const struct ossb_layer_writer *w);

#endif
