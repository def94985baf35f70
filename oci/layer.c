/* oci/layer.c - the layer writer: tar entries (libarchive, PAX) -> DiffID hash -> compressor ->
 * store ingest (whose hash is the blob digest).
 *
 * Owns: one libarchive writer, one compressor, one ingest and the read buffers per layer.
 * File contents are read with io_uring (two buffers: the next read is in flight while the
 * current buffer is archived), or with pread where io_uring_queue_init fails.
 * Reproducible output: pax_restricted (ustar headers, PAX records only where needed: long or
 * non-ASCII names, xattrs as SCHILY.xattr.*, large values), no uname/gname/atime/ctime,
 * one-second mtimes, the tar padded to 512-byte records only (no 10 KiB block padding).
 * libarchive converts names with the calling thread's locale, so every libarchive call that
 * may convert runs under the C.UTF-8 locale (uselocale): UTF-8 names become PAX path records,
 * other byte strings are stored as they are with hdrcharset=BINARY, whatever the process
 * locale is.
 * eStargz and zstd:chunked (oci/seekable-write.c) take the same tar stream unbuffered (one
 * callback per header and per data write), so that each file's data and each 4 MiB chunk of
 * it can start a gzip member / zstd frame of its own; eStargz adds its TOC as the last tar
 * entry (stargz.index.json, counted in the DiffID, as upstream does).
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <liburing.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "oci/compress.h"
#include "oci/layer.h"
#include "oci/oci-internal.h"
#include "oci/seekable-internal.h"

#define READ_CHUNK (256 * 1024)

static bool io_uring_disabled;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_loc;

static void utf8_init(void)
{
        utf8_loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t) 0);
        if (!utf8_loc)
                log_debug("no C.UTF-8 locale: tar names are converted with the process locale");
}

locale_t ossb_tar_locale_enter(void)
{
        pthread_once(&utf8_once, utf8_init);
        return utf8_loc ? uselocale(utf8_loc) : (locale_t) 0;
}

void ossb_tar_locale_leave(locale_t old)
{
        if (old)
                uselocale(old);
}

struct ossb_layer_writer {
        struct ossb_layer_opts opts;
        struct archive *a;
        struct archive_entry *entry;
        struct ossb_compressor *comp;     /* gzip, zstd, none */
        struct ossb_seek_writer *seek;    /* eStargz, zstd:chunked */
        int64_t tar_size;                 /* uncompressed bytes so far */
        struct ossb_store_ingest *ingest;
        struct ossb_sha256 *diff_hash;
        struct ossb_error *cb_err; /* set inside the libarchive write callback */
        int failed;                /* sticky: the first error's code */
        bool finished;
        bool aborting; /* being freed unfinished: the write callback discards */
        bool ring_tried, ring_ok, ring_used;
        struct io_uring ring;
        unsigned char *buf[2];
};

void ossb_layer_disable_io_uring(bool disable)
{
        io_uring_disabled = disable;
}

bool ossb_layer_writer_used_io_uring(const struct ossb_layer_writer *w)
{
        return w->ring_used;
}

/* ---- output path: libarchive -> diff hash -> compressor -> ingest ---- */

static int ingest_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        struct ossb_layer_writer *w = userdata;
        return ossb_store_ingest_write(w->ingest, data, len, err);
}

static la_ssize_t tar_write_cb(struct archive *a, void *userdata, const void *buf, size_t len)
{
        struct ossb_layer_writer *w = userdata;
        int r;

        if (w->aborting)
                return (la_ssize_t) len;
        r = ossb_sha256_update(w->diff_hash, buf, len);
        if (r < 0)
                r = ossb_error_set(&w->cb_err, r, "sha256 update failed");
        else if (w->seek)
                r = ossb_seek_writer_write(w->seek, buf, len, &w->cb_err);
        else
                r = ossb_compressor_write(w->comp, buf, len, &w->cb_err);
        w->tar_size += (int64_t) len;
        if (r < 0) {
                archive_set_error(a, -r, "%s", w->cb_err && w->cb_err->msg ? w->cb_err->msg : "write failed");
                return -1;
        }
        return (la_ssize_t) len;
}

/* An error from libarchive: prefer the one our callback recorded. */
static int archive_fail(struct ossb_layer_writer *w, const char *what, const char *path, struct ossb_error **err)
{
        int r;
        if (w->cb_err) {
                r = ossb_error_set(err, w->cb_err->code, "%s", w->cb_err->msg ? w->cb_err->msg : "write failed");
                ossb_error_free(w->cb_err);
                w->cb_err = NULL;
        } else {
                const char *m = archive_error_string(w->a);
                r = ossb_error_set(err, -EIO, "%s: %s", what, m ? m : "unknown libarchive error");
        }
        if (path)
                ossb_error_wrap(err, "layer entry `%s`", path);
        return r;
}

static bool is_seekable(enum ossb_compression c)
{
        return c == OSSB_COMPRESSION_ESTARGZ || c == OSSB_COMPRESSION_ZSTD_CHUNKED;
}

int ossb_layer_writer_new(struct ossb_store *store, const struct ossb_layer_opts *opts,
                          struct ossb_layer_writer **ret, struct ossb_error **err)
{
        struct ossb_layer_writer *w;
        int r;

        if (!ossb_compression_to_string(opts->compression))
                return ossb_error_set(err, -EINVAL, "unknown compression %d", (int) opts->compression);
        w = calloc(1, sizeof(*w));
        if (!w)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        w->opts = *opts;
        r = ossb_sha256_new(&w->diff_hash);
        if (r < 0) {
                r = ossb_error_set(err, r, "cannot create a sha256 context");
                goto fail;
        }
        r = ossb_store_ingest_new(store, &w->ingest, err);
        if (r < 0)
                goto fail;
        if (is_seekable(opts->compression))
                r = ossb_seek_writer_new(opts->compression, opts->level, opts->threads, ingest_sink, w, &w->seek, err);
        else
                r = ossb_compressor_new_threads(opts->compression, opts->level, opts->threads, ingest_sink, w,
                                                &w->comp, err);
        if (r < 0)
                goto fail;
        w->a = archive_write_new();
        w->entry = archive_entry_new();
        if (!w->a || !w->entry) {
                r = ossb_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
            archive_write_set_format_option(w->a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
            (w->seek && archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK) ||
            archive_write_open(w->a, w, NULL, tar_write_cb, NULL) != ARCHIVE_OK) {
                r = archive_fail(w, "cannot set up the tar writer", NULL, err);
                goto fail;
        }
        *ret = w;
        return 0;
fail:
        w->aborting = true;
        ossb_layer_writer_free(w);
        return r;
}

/* ---- entries ---- */

/* A layer path: relative, no empty, "." or ".." component (a DIR may end in one '/'). */
static bool path_is_valid(const char *p, bool allow_trailing_slash)
{
        if (!p || !*p || *p == '/')
                return false;
        for (const char *c = p; *c;) {
                const char *end = strchr(c, '/');
                size_t n = end ? (size_t) (end - c) : strlen(c);
                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                if (!end)
                        break;
                c = end + 1;
                if (!*c)
                        return allow_trailing_slash;
        }
        return true;
}

static int entry_validate(const struct ossb_layer_entry *e, struct ossb_error **err)
{
        const char *p = e->path ? e->path : "(null)";
        if (!path_is_valid(e->path, e->type == OSSB_ENTRY_DIR))
                return ossb_error_set(err, -EINVAL, "invalid layer path `%s`", p);
        if (e->type == OSSB_ENTRY_FILE && e->size < 0)
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: negative size", p);
        if (e->type == OSSB_ENTRY_SYMLINK && (!e->linkname || !*e->linkname))
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: symlink without a target", p);
        if (e->type == OSSB_ENTRY_HARDLINK && !path_is_valid(e->linkname, false))
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: invalid hard link target `%s`", p,
                                      e->linkname ? e->linkname : "(null)");
        if (e->n_xattrs > 0 && !e->xattrs)
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: xattrs missing", p);
        for (size_t i = 0; i < e->n_xattrs; i++)
                if (!e->xattrs[i].name || !*e->xattrs[i].name || (e->xattrs[i].size > 0 && !e->xattrs[i].value))
                        return ossb_error_set(err, -EINVAL, "layer entry `%s`: invalid xattr", p);
        return 0;
}

static int entry_filetype(enum ossb_entry_type t, unsigned *ret)
{
        switch (t) {
        case OSSB_ENTRY_FILE:
        case OSSB_ENTRY_HARDLINK:
                *ret = AE_IFREG;
                return 0;
        case OSSB_ENTRY_DIR:
                *ret = AE_IFDIR;
                return 0;
        case OSSB_ENTRY_SYMLINK:
                *ret = AE_IFLNK;
                return 0;
        case OSSB_ENTRY_CHAR:
                *ret = AE_IFCHR;
                return 0;
        case OSSB_ENTRY_BLOCK:
                *ret = AE_IFBLK;
                return 0;
        case OSSB_ENTRY_FIFO:
                *ret = AE_IFIFO;
                return 0;
        }
        return -EINVAL;
}

static int64_t entry_mtime(const struct ossb_layer_writer *w, const struct ossb_layer_entry *e)
{
        if (w->opts.source_date_epoch >= 0 && e->mtime_sec > w->opts.source_date_epoch)
                return w->opts.source_date_epoch;
        return e->mtime_sec;
}

static int fill_entry(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, struct ossb_error **err)
{
        struct archive_entry *ae = w->entry;
        unsigned ft;
        int64_t mtime = entry_mtime(w, e);

        if (entry_filetype(e->type, &ft) < 0)
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: unknown type %d", e->path, (int) e->type);
        archive_entry_clear(ae);
        archive_entry_copy_pathname(ae, e->path);
        archive_entry_set_filetype(ae, ft);
        archive_entry_set_perm(ae, e->mode & 07777);
        archive_entry_set_uid(ae, e->uid);
        archive_entry_set_gid(ae, e->gid);
        archive_entry_set_mtime(ae, (time_t) mtime, 0);
        archive_entry_set_size(ae, e->type == OSSB_ENTRY_FILE ? e->size : 0);
        if (e->type == OSSB_ENTRY_SYMLINK)
                archive_entry_copy_symlink(ae, e->linkname);
        else if (e->type == OSSB_ENTRY_HARDLINK)
                archive_entry_copy_hardlink(ae, e->linkname);
        else if (e->type == OSSB_ENTRY_CHAR || e->type == OSSB_ENTRY_BLOCK) {
                archive_entry_set_rdevmajor(ae, major(e->rdev));
                archive_entry_set_rdevminor(ae, minor(e->rdev));
        }
        for (size_t i = 0; i < e->n_xattrs; i++)
                archive_entry_xattr_add_entry(ae, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].size);
        return 0;
}

static int write_header(struct ossb_layer_writer *w, const char *path, struct ossb_error **err)
{
        locale_t old = ossb_tar_locale_enter();
        int r = archive_write_header(w->a, w->entry);
        ossb_tar_locale_leave(old);
        if (r < ARCHIVE_WARN)
                return archive_fail(w, "cannot write a tar header", path, err);
        return 0;
}

static int write_data_plain(struct ossb_layer_writer *w, const void *buf, size_t len, const char *path,
                            struct ossb_error **err)
{
        la_ssize_t n = archive_write_data(w->a, buf, len);
        if (n < 0 || (size_t) n != len)
                return archive_fail(w, "cannot write file data", path, err);
        return 0;
}

/* File data; for the seekable formats cut at chunk boundaries, each chunk starting a new
 * member/frame and hashed on the way. */
static int write_data(struct ossb_layer_writer *w, const void *buf, size_t len, const char *path,
                      struct ossb_error **err)
{
        const unsigned char *p = buf;
        if (!w->seek)
                return write_data_plain(w, buf, len, path, err);
        while (len > 0) {
                size_t room = ossb_seek_writer_room(w->seek);
                int r = room > 0 ? 0 : ossb_seek_writer_next_chunk(w->seek, err);
                if (r < 0)
                        return r;
                room = ossb_seek_writer_room(w->seek);
                size_t n = len < room ? len : room;
                r = ossb_seek_writer_file_data(w->seek, p, n, err);
                if (r >= 0)
                        r = write_data_plain(w, p, n, path, err);
                if (r < 0)
                        return r;
                p += n;
                len -= n;
        }
        return 0;
}

/* The TOC's record of an entry, before its header is written (so that what the TOC cannot
 * hold is refused while the writer is still usable). */
static int seek_entry(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, struct ossb_error **err)
{
        _cleanup_free_ char *name = NULL;
        if (!w->seek)
                return 0;
        size_t n = strlen(e->path);
        if (e->type == OSSB_ENTRY_DIR && e->path[n - 1] != '/' && asprintf(&name, "%s/", e->path) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ossb_seek_writer_entry(w->seek, e, name ? name : e->path, entry_mtime(w, e), err);
}

static int seek_file_end(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, struct ossb_error **err)
{
        if (!w->seek || e->type != OSSB_ENTRY_FILE || e->size == 0)
                return 0;
        return ossb_seek_writer_file_end(w->seek, err);
}

/* ---- file contents: io_uring double buffer, pread fallback ---- */

static int buffers_alloc(struct ossb_layer_writer *w, struct ossb_error **err)
{
        for (int i = 0; i < 2; i++)
                if (!w->buf[i]) {
                        w->buf[i] = malloc(READ_CHUNK);
                        if (!w->buf[i])
                                return ossb_error_set(err, -ENOMEM, "out of memory");
                }
        return 0;
}

static void ring_setup(struct ossb_layer_writer *w)
{
        if (w->ring_tried || io_uring_disabled)
                return;
        w->ring_tried = true;
        int r = io_uring_queue_init(2, &w->ring, 0);
        if (r < 0)
                log_debug("io_uring unavailable (%s), reading layer files with pread", strerror(-r));
        else
                w->ring_ok = true;
}

static int ring_submit(struct io_uring *ring, int fd, void *buf, size_t len, int64_t off)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe)
                return -EBUSY;
        io_uring_prep_read(sqe, fd, buf, (unsigned) len, (__u64) off);
        int r = io_uring_submit(ring);
        return r < 0 ? r : 0;
}

static int ring_wait(struct io_uring *ring, int *res)
{
        struct io_uring_cqe *cqe;
        int r;
        do
                r = io_uring_wait_cqe(ring, &cqe);
        while (r == -EINTR);
        if (r < 0)
                return r;
        *res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        return 0;
}

static size_t chunk_len(int64_t size, int64_t off)
{
        int64_t left = size - off;
        return left > READ_CHUNK ? READ_CHUNK : (size_t) left;
}

static int short_file(const char *path, int64_t got, int64_t size, struct ossb_error **err)
{
        return ossb_error_setx(err, OSSB_EXIT_BUILD, -EIO,
                               "layer entry `%s`: the file is shorter than its recorded size (%lld of %lld bytes)",
                               path, (long long) got, (long long) size);
}

/* One read in flight (into buf[1 - cur]) while buf[cur] is archived; nothing is left in
 * flight on return, so the buffers may be reused or freed. */
static int copy_uring(struct ossb_layer_writer *w, int fd, const char *path, int64_t size, struct ossb_error **err)
{
        int64_t off = 0;
        int cur = 0, r;
        bool inflight = false;

        r = ring_submit(&w->ring, fd, w->buf[0], chunk_len(size, 0), 0);
        if (r < 0)
                return ossb_error_set(err, r, "io_uring submit failed: %s", strerror(-r));
        inflight = true;
        while (off < size) {
                int res;
                r = ring_wait(&w->ring, &res);
                if (r < 0)
                        return ossb_error_set(err, r, "io_uring wait failed: %s", strerror(-r));
                inflight = false;
                if (res == -EAGAIN || res == -EINTR) {
                        r = ring_submit(&w->ring, fd, w->buf[cur], chunk_len(size, off), off);
                        if (r < 0)
                                return ossb_error_set(err, r, "io_uring submit failed: %s", strerror(-r));
                        inflight = true;
                        continue;
                }
                if (res < 0)
                        return ossb_error_set(err, res, "layer entry `%s`: read failed: %s", path, strerror(-res));
                if (res == 0)
                        return short_file(path, off, size, err);
                int64_t next = off + res;
                if (next < size) {
                        r = ring_submit(&w->ring, fd, w->buf[1 - cur], chunk_len(size, next), next);
                        if (r < 0)
                                return ossb_error_set(err, r, "io_uring submit failed: %s", strerror(-r));
                        inflight = true;
                }
                r = write_data(w, w->buf[cur], (size_t) res, path, err);
                if (r < 0)
                        break;
                cur = 1 - cur;
                off = next;
        }
        if (inflight) { /* only after a failed write: let the kernel finish with the buffer */
                int res;
                (void) ring_wait(&w->ring, &res);
        }
        return r;
}

static int copy_pread(struct ossb_layer_writer *w, int fd, const char *path, int64_t size, struct ossb_error **err)
{
        int64_t off = 0;
        while (off < size) {
                ssize_t n = pread(fd, w->buf[0], chunk_len(size, off), (off_t) off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return ossb_error_set(err, -errno, "layer entry `%s`: read failed: %m", path);
                }
                if (n == 0)
                        return short_file(path, off, size, err);
                int r = write_data(w, w->buf[0], (size_t) n, path, err);
                if (r < 0)
                        return r;
                off += n;
        }
        return 0;
}

static int copy_contents(struct ossb_layer_writer *w, int fd, const char *path, int64_t size, struct ossb_error **err)
{
        if (size == 0)
                return 0;
        int r = buffers_alloc(w, err);
        if (r < 0)
                return r;
        ring_setup(w);
        if (w->ring_ok && !io_uring_disabled) {
                w->ring_used = true;
                return copy_uring(w, fd, path, size, err);
        }
        return copy_pread(w, fd, path, size, err);
}

/* ---- public entry points ---- */

static int writer_usable(struct ossb_layer_writer *w, struct ossb_error **err)
{
        if (w->finished)
                return ossb_error_set(err, -EINVAL, "the layer writer is already finished");
        if (w->failed)
                return ossb_error_set(err, w->failed, "the layer writer failed earlier");
        return 0;
}

/* Errors found before anything is written (invalid entries) leave the writer usable; an error
 * once the header went out breaks the tar stream, so every later call fails. */
int ossb_layer_writer_add(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, int fd,
                          struct ossb_error **err)
{
        int r = writer_usable(w, err);
        if (r >= 0)
                r = entry_validate(e, err);
        if (r >= 0 && e->type == OSSB_ENTRY_FILE && e->size > 0 && fd < 0)
                r = ossb_error_set(err, -EBADF, "layer entry `%s`: no file descriptor for its content", e->path);
        if (r >= 0)
                r = fill_entry(w, e, err);
        if (r >= 0)
                r = seek_entry(w, e, err);
        if (r < 0)
                return r;
        r = write_header(w, e->path, err);
        if (r >= 0 && e->type == OSSB_ENTRY_FILE)
                r = copy_contents(w, fd, e->path, e->size, err);
        if (r >= 0)
                r = seek_file_end(w, e, err);
        if (r < 0)
                w->failed = r;
        return r;
}

int ossb_layer_writer_add_data(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, const void *data,
                               size_t len, struct ossb_error **err)
{
        int r = writer_usable(w, err);
        if (r >= 0 && (e->type != OSSB_ENTRY_FILE || e->size < 0 || (uint64_t) e->size != len || (len > 0 && !data)))
                r = ossb_error_set(err, -EINVAL, "layer entry `%s`: not a file, or data length %zu does not match its size",
                                   e->path ? e->path : "(null)", len);
        if (r >= 0)
                r = entry_validate(e, err);
        if (r >= 0)
                r = fill_entry(w, e, err);
        if (r >= 0)
                r = seek_entry(w, e, err);
        if (r < 0)
                return r;
        r = write_header(w, e->path, err);
        if (r >= 0 && len > 0)
                r = write_data(w, data, len, e->path, err);
        if (r >= 0)
                r = seek_file_end(w, e, err);
        if (r < 0)
                w->failed = r;
        return r;
}

/* eStargz: the TOC as the last tar entry, in a member of its own. */
static int estargz_toc_entry(struct ossb_layer_writer *w, struct ossb_error **err)
{
        _cleanup_free_ char *json = NULL;
        size_t len;
        if (archive_write_finish_entry(w->a) != ARCHIVE_OK) /* the last entry's padding */
                return archive_fail(w, "cannot finish the tar stream", NULL, err);
        int r = ossb_seek_writer_toc_json(w->seek, &json, &len, err);
        if (r < 0)
                return r;
        struct ossb_layer_entry e = { .path = OSSB_ESTARGZ_TOC_NAME, .type = OSSB_ENTRY_FILE, .mode = 0644,
                                      .size = (int64_t) len };
        r = fill_entry(w, &e, err);
        if (r >= 0)
                r = write_header(w, e.path, err);
        if (r >= 0)
                r = write_data_plain(w, json, len, e.path, err);
        return r;
}

int ossb_layer_writer_annotations(struct ossb_layer_writer *w, json_object **ret)
{
        if (!w->finished)
                return -EINVAL;
        if (!w->seek) {
                *ret = NULL;
                return 0;
        }
        return ossb_seek_writer_annotations(w->seek, w->tar_size, ret);
}

static int copy_stream(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, ossb_layer_read_fn read,
                       void *userdata, struct ossb_error **err)
{
        int64_t off = 0;
        int r = buffers_alloc(w, err);
        while (r >= 0 && off < e->size) {
                ssize_t n = read(userdata, w->buf[0], chunk_len(e->size, off), err);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return short_file(e->path, off, e->size, err);
                r = write_data(w, w->buf[0], (size_t) n, e->path, err);
                off += n;
        }
        return r;
}

int ossb_layer_writer_add_stream(struct ossb_layer_writer *w, const struct ossb_layer_entry *e, ossb_layer_read_fn read,
                                 void *userdata, struct ossb_error **err)
{
        int r = writer_usable(w, err);
        if (r >= 0 && (e->type != OSSB_ENTRY_FILE || e->size < 0 || !read))
                r = ossb_error_set(err, -EINVAL, "layer entry `%s`: not a file with a reader", e->path ? e->path : "(null)");
        if (r >= 0)
                r = entry_validate(e, err);
        if (r >= 0)
                r = fill_entry(w, e, err);
        if (r >= 0)
                r = seek_entry(w, e, err);
        if (r < 0)
                return r;
        r = write_header(w, e->path, err);
        if (r >= 0)
                r = copy_stream(w, e, read, userdata, err);
        if (r >= 0)
                r = seek_file_end(w, e, err);
        if (r < 0)
                w->failed = r;
        return r;
}

int ossb_layer_writer_finish(struct ossb_layer_writer *w, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
                             int64_t *ret_size, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1],
                             struct ossb_error **err)
{
        char digest[OSSB_DIGEST_STR_LEN + 1], diff_id[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        int r = writer_usable(w, err);
        if (r < 0)
                return r;
        if (w->seek && w->opts.compression == OSSB_COMPRESSION_ESTARGZ)
                r = estargz_toc_entry(w, err);
        if (r >= 0 && archive_write_close(w->a) != ARCHIVE_OK)
                r = archive_fail(w, "cannot finish the tar stream", NULL, err);
        if (r >= 0)
                r = w->seek ? ossb_seek_writer_finish(w->seek, err) : ossb_compressor_finish(w->comp, err);
        if (r >= 0)
                r = ossb_store_ingest_commit(w->ingest, NULL, digest, &size, err);
        if (r < 0) {
                w->failed = r;
                return ossb_error_wrap(err, "cannot write layer");
        }
        ossb_sha256_final(w->diff_hash, diff_id);
        w->finished = true;
        if (w->opts.ret_annotations && ossb_layer_writer_annotations(w, w->opts.ret_annotations) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (ret_digest)
                memcpy(ret_digest, digest, sizeof(digest));
        if (ret_size)
                *ret_size = size;
        if (ret_diff_id)
                memcpy(ret_diff_id, diff_id, sizeof(diff_id));
        return 0;
}

void ossb_layer_writer_free(struct ossb_layer_writer *w)
{
        if (!w)
                return;
        if (!w->finished)
                w->aborting = true;
        if (w->a)
                archive_write_free(w->a);
        archive_entry_free(w->entry);
        ossb_compressor_free(w->comp);
        ossb_seek_writer_free(w->seek);
        ossb_store_ingest_free(w->ingest); /* removes the temp file unless committed */
        ossb_sha256_free(w->diff_hash);
        ossb_error_free(w->cb_err);
        if (w->ring_ok)
                io_uring_queue_exit(&w->ring);
        free(w->buf[0]);
        free(w->buf[1]);
        free(w);
}
