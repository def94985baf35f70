/* oci/seekable-write.c - the eStargz and zstd:chunked writers: where members/frames start,
 * the table of contents, the footers and the descriptor annotations.
 *
 * Owns: struct ossb_seek_writer, the TOC entries it records for a layer, and its compression
 * pipeline (seekable-pipe.c).  The layer writer (layer.c) drives it; the formats follow what
 * upstream writes (containerd/stargz-snapshotter's estargz package, containers/storage's
 * pkg/chunked): a regular file's data starts a new gzip member / zstd frame and every 4 MiB
 * of it another (the tar header stays in the member before; for eStargz the last chunk's
 * member goes on with the padding and the next headers, for zstd:chunked the data's last frame
 * ends with the data, its endOffset); eStargz's TOC is the tar entry stargz.index.json in
 * its own member before the 51-byte footer; zstd:chunked's TOC is a zstd frame inside a
 * skippable frame, followed by the 40-byte footer in another skippable frame (the layout
 * containers/storage before 1.44 and stargz-snapshotter read; newer readers take the position
 * from the annotations).  zstd:chunked chunks are fixed 4 MiB pieces, not containers/storage's
 * rolling-checksum ones (readers take any chunking), and there is no tar-split frame.
 * TOC names, link targets and xattr names must be UTF-8 (JSON strings): other bytes are
 * refused with -EINVAL before the entry's header is written.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <zstd.h>

#include "common/cleanup.h"
#include "common/sha256.h"
#include "oci/image.h"
#include "oci/oci-internal.h"
#include "oci/seekable-internal.h"

struct wchunk {
        uint64_t seg;      /* pipe segment the chunk's data starts */
        int64_t file_off, size;
        char digest[OSSB_DIGEST_STR_LEN + 1];
};

struct wxattr {
        char *name;
        char *b64; /* the value, base64 */
};

struct wentry {
        char *name; /* as in the tar (directories end in '/') */
        enum ossb_entry_type type;
        mode_t mode;
        uid_t uid;
        gid_t gid;
        int64_t size, mtime;
        char *link;
        dev_t rdev;
        struct wxattr *xattrs;
        size_t n_xattrs;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        struct wchunk *chunks;
        size_t n_chunks;
};

struct ossb_seek_writer {
        enum ossb_compression kind;
        int level;
        struct ossb_seek_pipe *pipe;
        struct wentry *entries;
        size_t n, cap;
        /* the file whose data is being written (entries[n - 1]) */
        bool in_file;
        int64_t file_written, chunk_left;
        struct ossb_sha256 *file_hash, *chunk_hash;
        /* the TOC, once written */
        uint64_t toc_seg;
        bool toc_started, finished;
        char toc_digest[OSSB_DIGEST_STR_LEN + 1];  /* of the JSON */
        char toc_cdigest[OSSB_DIGEST_STR_LEN + 1]; /* of the compressed TOC (zstd:chunked) */
        int64_t toc_offset, toc_len, toc_ulen;
};

int ossb_seek_writer_new(enum ossb_compression kind, int level, unsigned threads, ossb_sink_fn sink, void *userdata,
                         struct ossb_seek_writer **ret, struct ossb_error **err)
{
        if (kind != OSSB_COMPRESSION_ESTARGZ && kind != OSSB_COMPRESSION_ZSTD_CHUNKED)
                return ossb_error_set(err, -EINVAL, "not a seekable format: %d", (int) kind);
        struct ossb_seek_writer *sw = calloc(1, sizeof(*sw));
        if (!sw)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        sw->kind = kind;
        sw->level = level == -1 ? (kind == OSSB_COMPRESSION_ESTARGZ ? 6 : 3) : level;
        int r = ossb_seek_pipe_new(kind == OSSB_COMPRESSION_ZSTD_CHUNKED, level, threads, sink, userdata, &sw->pipe, err);
        if (r >= 0 && (ossb_sha256_new(&sw->file_hash) < 0 || ossb_sha256_new(&sw->chunk_hash) < 0))
                r = ossb_error_set(err, -ENOMEM, "cannot create a sha256 context");
        if (r < 0) {
                ossb_seek_writer_free(sw);
                return r;
        }
        *ret = sw;
        return 0;
}

static void wentry_clear(struct wentry *e)
{
        free(e->name);
        free(e->link);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                free(e->xattrs[i].name);
                free(e->xattrs[i].b64);
        }
        free(e->xattrs);
        free(e->chunks);
}

void ossb_seek_writer_free(struct ossb_seek_writer *sw)
{
        if (!sw)
                return;
        ossb_seek_pipe_free(sw->pipe);
        for (size_t i = 0; i < sw->n; i++)
                wentry_clear(&sw->entries[i]);
        free(sw->entries);
        ossb_sha256_free(sw->file_hash);
        ossb_sha256_free(sw->chunk_hash);
        free(sw);
}

int ossb_seek_writer_write(struct ossb_seek_writer *sw, const void *data, size_t len, struct ossb_error **err)
{
        int r = ossb_seek_pipe_write(sw->pipe, data, len, err);
        /* a long run of headers with no file data between them (thousands of directories)
         * is cut too, so that no segment grows without bound; nothing points there */
        if (r >= 0 && !sw->in_file && ossb_seek_pipe_open_len(sw->pipe) >= OSSB_SEEKABLE_CHUNK_SIZE)
                r = ossb_seek_pipe_cut(sw->pipe, err);
        return r;
}

/* ---- entries ---- */

static int utf8_check(const char *what, const char *s, const char *path, struct ossb_error **err)
{
        if (s && !ossb_seekable_utf8_valid(s, strlen(s)))
                return ossb_error_set(err, -EINVAL,
                                      "layer entry `%s`: its %s is not UTF-8, which eStargz and zstd:chunked "
                                      "tables of contents cannot hold", path, what);
        return 0;
}

static int record_xattrs(struct wentry *we, const struct ossb_layer_entry *e, struct ossb_error **err)
{
        if (e->n_xattrs == 0)
                return 0;
        we->xattrs = calloc(e->n_xattrs, sizeof(*we->xattrs));
        if (!we->xattrs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < e->n_xattrs; i++) {
                int r = utf8_check("xattr name", e->xattrs[i].name, e->path, err);
                if (r < 0)
                        return r;
                we->xattrs[i].name = strdup(e->xattrs[i].name);
                we->xattrs[i].b64 = ossb_seekable_b64_encode(e->xattrs[i].value, e->xattrs[i].size);
                we->n_xattrs++;
                if (!we->xattrs[i].name || !we->xattrs[i].b64)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int entries_grow(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        if (sw->n < sw->cap)
                return 0;
        size_t cap = sw->cap ? sw->cap * 2 : 256;
        struct wentry *e = reallocarray(sw->entries, cap, sizeof(*e));
        if (!e)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        sw->entries = e;
        sw->cap = cap;
        return 0;
}

int ossb_seek_writer_entry(struct ossb_seek_writer *sw, const struct ossb_layer_entry *e, const char *name,
                           int64_t mtime, struct ossb_error **err)
{
        struct wentry we = { .type = e->type, .mode = e->mode & 07777, .uid = e->uid, .gid = e->gid,
                             .mtime = mtime, .rdev = e->rdev };
        int r;

        if (sw->in_file || sw->toc_started)
                return ossb_error_set(err, -EINVAL, "seekable writer: entry `%s` out of order", e->path);
        if (sw->kind == OSSB_COMPRESSION_ESTARGZ && streq(e->path, OSSB_ESTARGZ_TOC_NAME))
                return ossb_error_set(err, -EINVAL, "layer entry `%s`: the name is reserved for the TOC of eStargz layers",
                                      e->path);
        r = utf8_check("name", name, e->path, err);
        if (r >= 0)
                r = utf8_check("link target", e->linkname, e->path, err);
        if (r >= 0)
                r = entries_grow(sw, err);
        if (r < 0)
                return r;
        we.name = strdup(name);
        if (e->linkname && (e->type == OSSB_ENTRY_SYMLINK || e->type == OSSB_ENTRY_HARDLINK))
                we.link = strdup(e->linkname);
        if (!we.name || (e->linkname && !we.link && (e->type == OSSB_ENTRY_SYMLINK || e->type == OSSB_ENTRY_HARDLINK)))
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0)
                r = record_xattrs(&we, e, err);
        if (r < 0) {
                wentry_clear(&we);
                return r;
        }
        if (e->type == OSSB_ENTRY_FILE) {
                we.size = e->size;
                if (e->size == 0 && sw->kind == OSSB_COMPRESSION_ESTARGZ) /* as upstream: the empty digest */
                        (void) ossb_sha256_digest("", 0, we.digest);
        }
        sw->entries[sw->n++] = we;
        if (e->type == OSSB_ENTRY_FILE && e->size > 0) {
                sw->in_file = true;
                sw->file_written = 0;
                sw->chunk_left = 0;
        }
        return 0;
}

size_t ossb_seek_writer_room(const struct ossb_seek_writer *sw)
{
        return sw->in_file ? (size_t) sw->chunk_left : 0;
}

int ossb_seek_writer_file_data(struct ossb_seek_writer *sw, const void *data, size_t len, struct ossb_error **err)
{
        struct wentry *e = &sw->entries[sw->n - 1];
        if (!sw->in_file || len > (size_t) sw->chunk_left)
                return ossb_error_set(err, -EINVAL, "seekable writer: file data out of its chunk");
        if (ossb_sha256_update(sw->file_hash, data, len) < 0 ||
            (e->size > OSSB_SEEKABLE_CHUNK_SIZE ? ossb_sha256_update(sw->chunk_hash, data, len) : 0) < 0)
                return ossb_error_set(err, -EIO, "sha256 update failed");
        sw->chunk_left -= (int64_t) len;
        sw->file_written += (int64_t) len;
        return 0;
}

static void chunk_done(struct ossb_seek_writer *sw, struct wentry *e)
{
        if (e->n_chunks > 0 && e->size > OSSB_SEEKABLE_CHUNK_SIZE)
                ossb_sha256_final(sw->chunk_hash, e->chunks[e->n_chunks - 1].digest);
}

int ossb_seek_writer_next_chunk(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        struct wentry *e = &sw->entries[sw->n - 1];
        if (!sw->in_file || sw->chunk_left > 0 || sw->file_written >= e->size)
                return ossb_error_set(err, -EINVAL, "seekable writer: no chunk to start");
        if (!e->chunks) {
                size_t n = (size_t) ((e->size + OSSB_SEEKABLE_CHUNK_SIZE - 1) / OSSB_SEEKABLE_CHUNK_SIZE);
                e->chunks = calloc(n, sizeof(*e->chunks));
                if (!e->chunks)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        chunk_done(sw, e);
        int r = ossb_seek_pipe_cut(sw->pipe, err);
        if (r < 0)
                return r;
        struct wchunk *c = &e->chunks[e->n_chunks++];
        c->seg = ossb_seek_pipe_next_index(sw->pipe);
        c->file_off = sw->file_written;
        c->size = e->size - sw->file_written < OSSB_SEEKABLE_CHUNK_SIZE ? e->size - sw->file_written
                                                                        : OSSB_SEEKABLE_CHUNK_SIZE;
        sw->chunk_left = c->size;
        return 0;
}

int ossb_seek_writer_file_end(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        struct wentry *e = &sw->entries[sw->n - 1];
        if (!sw->in_file || sw->file_written != e->size || sw->chunk_left != 0)
                return ossb_error_set(err, -EINVAL, "seekable writer: file `%s` ended early", e->name);
        chunk_done(sw, e);
        ossb_sha256_final(sw->file_hash, e->digest);
        if (e->n_chunks == 1)
                memcpy(e->chunks[0].digest, e->digest, sizeof(e->digest));
        sw->in_file = false;
        /* zstd:chunked: the data's last frame ends with the data (endOffset), as containers/storage
         * writes it; eStargz's last member goes on with the padding and the next headers */
        return sw->kind == OSSB_COMPRESSION_ZSTD_CHUNKED ? ossb_seek_pipe_cut(sw->pipe, err) : 0;
}

/* ---- the TOC ---- */

static const char *type_name(enum ossb_entry_type t)
{
        switch (t) {
        case OSSB_ENTRY_FILE:
                return "reg";
        case OSSB_ENTRY_DIR:
                return "dir";
        case OSSB_ENTRY_SYMLINK:
                return "symlink";
        case OSSB_ENTRY_HARDLINK:
                return "hardlink";
        case OSSB_ENTRY_CHAR:
                return "char";
        case OSSB_ENTRY_BLOCK:
                return "block";
        case OSSB_ENTRY_FIFO:
                return "fifo";
        }
        return "reg";
}

/* Add key: value to o; value NULL means out of memory. */
static int put(json_object *o, const char *key, json_object *v)
{
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int put_int(json_object *o, const char *key, int64_t v, bool omit_zero)
{
        return omit_zero && v == 0 ? 0 : put(o, key, json_object_new_int64(v));
}

static int put_str(json_object *o, const char *key, const char *v)
{
        return v && *v ? put(o, key, json_object_new_string(v)) : 0;
}

static int put_xattrs(json_object *o, const struct wentry *e)
{
        if (e->n_xattrs == 0)
                return 0;
        json_object *x = json_object_new_object();
        if (!x)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_xattrs; i++)
                if (put_str(x, e->xattrs[i].name, e->xattrs[i].b64) < 0) {
                        json_object_put(x);
                        return -ENOMEM;
                }
        return put(o, "xattrs", x);
}

/* Append o to list when r >= 0; o is consumed either way. */
static int append(json_object *list, json_object *o, int r)
{
        if (r >= 0 && json_object_array_add(list, o) < 0)
                r = -ENOMEM;
        if (r < 0)
                json_object_put(o);
        return r;
}

static bool is_dev(const struct wentry *e)
{
        return e->type == OSSB_ENTRY_CHAR || e->type == OSSB_ENTRY_BLOCK;
}

static int64_t chunk_offset(const struct ossb_seek_writer *sw, const struct wchunk *c)
{
        return ossb_seek_pipe_segment_offset(sw->pipe, c->seg);
}

/* eStargz's vocabulary and field order (estargz.TOCEntry). */
static int estargz_entry(const struct ossb_seek_writer *sw, const struct wentry *e, json_object *list)
{
        char t[32];
        int r = 0;
        for (size_t k = 0; r >= 0 && k < (e->n_chunks ? e->n_chunks : 1); k++) {
                const struct wchunk *c = e->n_chunks ? &e->chunks[k] : NULL;
                json_object *o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                r = put_str(o, "name", e->name);
                if (r >= 0 && k == 0) {
                        ossb_seekable_format_time(e->mtime, t);
                        r = put_str(o, "type", type_name(e->type));
                        r = r < 0 ? r : put_int(o, "size", e->size, true);
                        r = r < 0 ? r : put_str(o, "modtime", e->mtime == 0 ? NULL : t);
                        r = r < 0 ? r : put_str(o, "linkName", e->link);
                        r = r < 0 ? r : put_int(o, "mode", e->mode, true);
                        r = r < 0 ? r : put_int(o, "uid", e->uid, true);
                        r = r < 0 ? r : put_int(o, "gid", e->gid, true);
                } else if (r >= 0) {
                        r = put_str(o, "type", "chunk");
                }
                r = r < 0 || !c ? r : put_int(o, "offset", chunk_offset(sw, c), false);
                if (r >= 0 && k == 0 && is_dev(e)) {
                        r = put_int(o, "devMajor", major(e->rdev), true);
                        r = r < 0 ? r : put_int(o, "devMinor", minor(e->rdev), true);
                }
                r = r < 0 || k > 0 ? r : put_xattrs(o, e);
                r = r < 0 || k > 0 ? r : put_str(o, "digest", e->digest);
                if (r >= 0 && c) {
                        r = put_int(o, "chunkOffset", c->file_off, true);
                        r = r < 0 ? r : put_int(o, "chunkSize", c->size == OSSB_SEEKABLE_CHUNK_SIZE ? c->size : 0, true);
                        r = r < 0 ? r : put_str(o, "chunkDigest", c->digest);
                }
                r = append(list, o, r);
        }
        return r;
}

/* containers/storage's vocabulary and field order (minimal.FileMetadata). */
static int zstd_chunked_entry(const struct ossb_seek_writer *sw, const struct wentry *e, json_object *list)
{
        char t[32];
        int r = 0;
        for (size_t k = 0; r >= 0 && k < (e->n_chunks ? e->n_chunks : 1); k++) {
                const struct wchunk *c = e->n_chunks ? &e->chunks[k] : NULL;
                bool multi = e->n_chunks > 1;
                json_object *o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                r = put_str(o, "type", k == 0 ? type_name(e->type) : "chunk");
                r = r < 0 ? r : put_str(o, "name", e->name);
                if (r >= 0 && k == 0) {
                        ossb_seekable_format_time(e->mtime, t);
                        r = put_str(o, "linkName", e->link);
                        r = r < 0 ? r : put_int(o, "mode", e->mode, true);
                        r = r < 0 ? r : put_int(o, "size", e->size, true);
                        r = r < 0 ? r : put_int(o, "uid", e->uid, true);
                        r = r < 0 ? r : put_int(o, "gid", e->gid, true);
                        r = r < 0 ? r : put_str(o, "modtime", t);
                        r = r < 0 || !is_dev(e) ? r : put_int(o, "devMajor", major(e->rdev), true);
                        r = r < 0 || !is_dev(e) ? r : put_int(o, "devMinor", minor(e->rdev), true);
                        r = r < 0 ? r : put_xattrs(o, e);
                        r = r < 0 ? r : put_str(o, "digest", e->digest);
                }
                r = r < 0 || !c ? r : put_int(o, "offset", chunk_offset(sw, c), false);
                if (r >= 0 && c && k == 0)
                        r = put_int(o, "endOffset", ossb_seek_pipe_segment_end(sw->pipe, e->chunks[e->n_chunks - 1].seg),
                                    false);
                if (r >= 0 && multi) {
                        r = put_int(o, "chunkSize", c->size, false);
                        r = r < 0 ? r : put_int(o, "chunkOffset", c->file_off, true);
                        r = r < 0 ? r : put_str(o, "chunkDigest", c->digest);
                }
                r = append(list, o, r);
        }
        return r;
}

/* The TOC JSON (every segment written out, so offsets are known); caller frees. */
static int toc_json(struct ossb_seek_writer *sw, char **ret, size_t *ret_len, struct ossb_error **err)
{
        _cleanup_json_ json_object *root = json_object_new_object();
        json_object *list = json_object_new_array();
        int r = !root || !list ? -ENOMEM : 0;

        if (r >= 0 && put(root, "version", json_object_new_int(1)) < 0)
                r = -ENOMEM;
        if (r >= 0)
                r = put(root, "entries", list);
        else
                json_object_put(list);
        for (size_t i = 0; r >= 0 && i < sw->n; i++)
                r = sw->kind == OSSB_COMPRESSION_ESTARGZ ? estargz_entry(sw, &sw->entries[i], list)
                                                        : zstd_chunked_entry(sw, &sw->entries[i], list);
        const char *s = r >= 0 ? ossb_json_to_string(root) : NULL;
        if (!s || !(*ret = strdup(s)))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret_len = strlen(s);
        return 0;
}

int ossb_seek_writer_toc_json(struct ossb_seek_writer *sw, char **ret_json, size_t *ret_len, struct ossb_error **err)
{
        if (sw->kind != OSSB_COMPRESSION_ESTARGZ || sw->in_file || sw->toc_started)
                return ossb_error_set(err, -EINVAL, "seekable writer: no TOC entry to write now");
        int r = ossb_seek_pipe_flush(sw->pipe, err);
        if (r >= 0)
                r = toc_json(sw, ret_json, ret_len, err);
        if (r < 0)
                return r;
        (void) ossb_sha256_digest(*ret_json, *ret_len, sw->toc_digest);
        sw->toc_seg = ossb_seek_pipe_next_index(sw->pipe);
        sw->toc_started = true;
        return 0;
}

/* ---- footers ---- */

static void put_le(unsigned char *b, uint64_t v, int n)
{
        for (int i = 0; i < n; i++)
                b[i] = (unsigned char) (v >> (8 * i));
}

/* An empty gzip member whose extra field "SG" holds the TOC offset: 51 bytes. */
static int estargz_footer(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        unsigned char f[OSSB_ESTARGZ_FOOTER_SIZE] = { 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 26, 0, 'S', 'G', 22, 0 };
        char sub[23];
        snprintf(sub, sizeof(sub), "%016" PRIx64 "STARGZ", (uint64_t) sw->toc_offset);
        memcpy(f + 16, sub, 22);
        /* a final stored deflate block of length 0, then CRC-32 and size of nothing */
        memcpy(f + 38, "\x01\x00\x00\xff\xff", 5);
        return ossb_seek_pipe_raw(sw->pipe, f, sizeof(f), err);
}

static int skippable_frame(struct ossb_seek_writer *sw, const void *data, size_t len, struct ossb_error **err)
{
        unsigned char h[OSSB_ZSTD_SKIPPABLE_HEADER] = { 0x50, 0x2a, 0x4d, 0x18 };
        put_le(h + 4, len, 4);
        int r = ossb_seek_pipe_raw(sw->pipe, h, sizeof(h), err);
        return r < 0 ? r : ossb_seek_pipe_raw(sw->pipe, data, len, err);
}

static int zstd_chunked_toc(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        _cleanup_free_ char *json = NULL;
        _cleanup_free_ unsigned char *comp = NULL;
        size_t len, n;
        int r = toc_json(sw, &json, &len, err);
        if (r < 0)
                return r;
        (void) ossb_sha256_digest(json, len, sw->toc_digest);
        ZSTD_CCtx *zc = ZSTD_createCCtx();
        size_t bound = ZSTD_compressBound(len);
        comp = malloc(bound);
        if (!zc || !comp) {
                ZSTD_freeCCtx(zc);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        n = ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, sw->level);
        if (!ZSTD_isError(n))
                n = ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(n))
                n = ZSTD_compress2(zc, comp, bound, json, len);
        ZSTD_freeCCtx(zc);
        if (ZSTD_isError(n))
                return ossb_error_set(err, -EIO, "cannot compress the TOC: %s", ZSTD_getErrorName(n));
        if (n > UINT32_MAX)
                return ossb_error_set(err, -EFBIG, "the TOC is too large (%zu bytes compressed)", n);
        (void) ossb_sha256_digest(comp, n, sw->toc_cdigest);
        sw->toc_offset = ossb_seek_pipe_written(sw->pipe) + OSSB_ZSTD_SKIPPABLE_HEADER;
        sw->toc_len = (int64_t) n;
        sw->toc_ulen = (int64_t) len;
        r = skippable_frame(sw, comp, n, err);
        if (r < 0)
                return r;
        unsigned char f[OSSB_ZSTD_CHUNKED_FOOTER_V1];
        put_le(f, (uint64_t) sw->toc_offset, 8);
        put_le(f + 8, (uint64_t) sw->toc_len, 8);
        put_le(f + 16, (uint64_t) sw->toc_ulen, 8);
        put_le(f + 24, OSSB_ZSTD_CHUNKED_MANIFEST_TYPE, 8);
        memcpy(f + 32, OSSB_ZSTD_CHUNKED_MAGIC, 8);
        return skippable_frame(sw, f, sizeof(f), err);
}

int ossb_seek_writer_finish(struct ossb_seek_writer *sw, struct ossb_error **err)
{
        int r;
        if (sw->finished || sw->in_file || (sw->kind == OSSB_COMPRESSION_ESTARGZ && !sw->toc_started))
                return ossb_error_set(err, -EINVAL, "seekable writer: cannot finish now");
        r = ossb_seek_pipe_flush(sw->pipe, err);
        if (r < 0)
                return r;
        if (sw->kind == OSSB_COMPRESSION_ESTARGZ) {
                sw->toc_offset = ossb_seek_pipe_segment_offset(sw->pipe, sw->toc_seg);
                if (sw->toc_offset < 0)
                        return ossb_error_set(err, -EINVAL, "seekable writer: the TOC entry is missing");
                sw->toc_len = ossb_seek_pipe_written(sw->pipe) - sw->toc_offset;
                r = estargz_footer(sw, err);
        } else {
                r = zstd_chunked_toc(sw, err);
        }
        if (r >= 0)
                sw->finished = true;
        return r;
}

int ossb_seek_writer_annotations(struct ossb_seek_writer *sw, int64_t uncompressed_size, json_object **ret)
{
        char buf[128];
        if (!sw->finished)
                return -EINVAL;
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (sw->kind == OSSB_COMPRESSION_ESTARGZ) {
                snprintf(buf, sizeof(buf), "%" PRId64, uncompressed_size);
                if (put_str(o, OSSB_ANNOTATION_STARGZ_TOC_DIGEST, sw->toc_digest) < 0 ||
                    put_str(o, OSSB_ANNOTATION_ESTARGZ_USIZE, buf) < 0)
                        return -ENOMEM;
        } else {
                snprintf(buf, sizeof(buf), "%" PRId64 ":%" PRId64 ":%" PRId64 ":%d", sw->toc_offset, sw->toc_len,
                         sw->toc_ulen, OSSB_ZSTD_CHUNKED_MANIFEST_TYPE);
                if (put_str(o, OSSB_ANNOTATION_ZC_CHECKSUM, sw->toc_cdigest) < 0 ||
                    put_str(o, OSSB_ANNOTATION_ZC_POSITION, buf) < 0 ||
                    put_str(o, OSSB_ANNOTATION_ZC_CHECKSUM_OLD, sw->toc_cdigest) < 0 ||
                    put_str(o, OSSB_ANNOTATION_ZC_POSITION_OLD, buf) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}
