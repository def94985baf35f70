/* oci/compress.c - gzip (parallel, oci/pgzip.c), zstd (libzstd streaming) and pass-through
 * compressors, the compression names and media types, and an auto-detecting streaming
 * decompressor.
 *
 * Owns: the pgzip/zstd contexts inside struct ossb_compressor and the zlib context of the
 * decompressor; library error codes are turned into -errno with a message here (or in pgzip.c)
 * and never leave the oci module.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "common/cleanup.h"
#include "oci/compress.h"
#include "oci/image.h"
#include "oci/pgzip.h"

#define CHUNK (128 * 1024)

struct ossb_compressor {
        enum ossb_compression kind;
        ossb_sink_fn sink;
        void *userdata;
        struct ossb_pgzip *pg;
        ZSTD_CCtx *zc;
        bool finished;
        unsigned char *out;
};

int ossb_compression_from_string(const char *s, enum ossb_compression *ret)
{
        if (!s)
                return -EINVAL;
        if (streq(s, "gzip"))
                *ret = OSSB_COMPRESSION_GZIP;
        else if (streq(s, "zstd"))
                *ret = OSSB_COMPRESSION_ZSTD;
        else if (streq(s, "uncompressed"))
                *ret = OSSB_COMPRESSION_NONE;
        else if (streq(s, "estargz"))
                *ret = OSSB_COMPRESSION_ESTARGZ;
        else if (streq(s, "zstd:chunked"))
                *ret = OSSB_COMPRESSION_ZSTD_CHUNKED;
        else
                return -EINVAL;
        return 0;
}

const char *ossb_compression_to_string(enum ossb_compression c)
{
        switch (c) {
        case OSSB_COMPRESSION_GZIP:
                return "gzip";
        case OSSB_COMPRESSION_ZSTD:
                return "zstd";
        case OSSB_COMPRESSION_NONE:
                return "uncompressed";
        case OSSB_COMPRESSION_ESTARGZ:
                return "estargz";
        case OSSB_COMPRESSION_ZSTD_CHUNKED:
                return "zstd:chunked";
        }
        return NULL;
}

const char *ossb_compression_media_type(enum ossb_compression c)
{
        switch (c) {
        case OSSB_COMPRESSION_GZIP:
        case OSSB_COMPRESSION_ESTARGZ:
                return OSSB_MT_OCI_LAYER_GZIP;
        case OSSB_COMPRESSION_ZSTD:
        case OSSB_COMPRESSION_ZSTD_CHUNKED:
                return OSSB_MT_OCI_LAYER_ZSTD;
        case OSSB_COMPRESSION_NONE:
                return OSSB_MT_OCI_LAYER;
        }
        return NULL;
}

static int zstd_init(struct ossb_compressor *c, int level, struct ossb_error **err)
{
        if (level == -1)
                level = 3;
        else if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel() || level == 0)
                return ossb_error_set(err, -EINVAL, "zstd level %d is out of range (%d-%d, not 0)", level,
                                      ZSTD_minCLevel(), ZSTD_maxCLevel());
        c->zc = ZSTD_createCCtx();
        if (!c->zc)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        size_t z = ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(z))
                z = ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1);
        if (ZSTD_isError(z))
                return ossb_error_set(err, -EINVAL, "cannot configure zstd: %s", ZSTD_getErrorName(z));
        return 0;
}

int ossb_compressor_new(enum ossb_compression kind, int level, ossb_sink_fn sink, void *userdata,
                        struct ossb_compressor **ret, struct ossb_error **err)
{
        return ossb_compressor_new_threads(kind, level, 0, sink, userdata, ret, err);
}

int ossb_compressor_new_threads(enum ossb_compression kind, int level, unsigned threads, ossb_sink_fn sink,
                                void *userdata, struct ossb_compressor **ret, struct ossb_error **err)
{
        struct ossb_compressor *c = calloc(1, sizeof(*c));
        int r = 0;

        if (!c)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        c->kind = kind;
        c->sink = sink;
        c->userdata = userdata;
        if (kind == OSSB_COMPRESSION_ZSTD) {
                c->out = malloc(CHUNK);
                if (!c->out)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (r >= 0 && kind == OSSB_COMPRESSION_GZIP)
                r = ossb_pgzip_new(level, threads, sink, userdata, &c->pg, err);
        else if (r >= 0 && kind == OSSB_COMPRESSION_ZSTD)
                r = zstd_init(c, level, err);
        else if (r >= 0 && kind != OSSB_COMPRESSION_NONE)
                r = ossb_error_set(err, -EINVAL, "unknown compression %d", (int) kind);
        if (r < 0) {
                ossb_compressor_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

static int zstd_run(struct ossb_compressor *c, const void *data, size_t len, ZSTD_EndDirective mode,
                    struct ossb_error **err)
{
        ZSTD_inBuffer in = { data, len, 0 };
        size_t remaining;

        do {
                ZSTD_outBuffer out = { c->out, CHUNK, 0 };
                remaining = ZSTD_compressStream2(c->zc, &out, &in, mode);
                if (ZSTD_isError(remaining))
                        return ossb_error_set(err, -EIO, "zstd compression failed: %s", ZSTD_getErrorName(remaining));
                if (out.pos > 0) {
                        int r = c->sink(c->userdata, c->out, out.pos, err);
                        if (r < 0)
                                return r;
                }
        } while (mode == ZSTD_e_end ? remaining != 0 : in.pos < in.size);
        return 0;
}

int ossb_compressor_write(struct ossb_compressor *c, const void *data, size_t len, struct ossb_error **err)
{
        if (c->finished)
                return ossb_error_set(err, -EINVAL, "write after the end of a compressed stream");
        if (len == 0)
                return 0;
        switch (c->kind) {
        case OSSB_COMPRESSION_GZIP:
                return ossb_pgzip_write(c->pg, data, len, err);
        case OSSB_COMPRESSION_ZSTD:
                return zstd_run(c, data, len, ZSTD_e_continue, err);
        case OSSB_COMPRESSION_NONE:
                return c->sink(c->userdata, data, len, err);
        case OSSB_COMPRESSION_ESTARGZ: /* per-file formats: oci/seekable-write.c, never a stream */
        case OSSB_COMPRESSION_ZSTD_CHUNKED:
                break;
        }
        return -EINVAL;
}

int ossb_compressor_finish(struct ossb_compressor *c, struct ossb_error **err)
{
        if (c->finished)
                return ossb_error_set(err, -EINVAL, "compressed stream finished twice");
        c->finished = true;
        switch (c->kind) {
        case OSSB_COMPRESSION_GZIP:
                return ossb_pgzip_finish(c->pg, err);
        case OSSB_COMPRESSION_ZSTD:
                return zstd_run(c, NULL, 0, ZSTD_e_end, err);
        case OSSB_COMPRESSION_NONE:
                return 0;
        case OSSB_COMPRESSION_ESTARGZ:
        case OSSB_COMPRESSION_ZSTD_CHUNKED:
                break;
        }
        return -EINVAL;
}

void ossb_compressor_free(struct ossb_compressor *c)
{
        if (!c)
                return;
        ossb_pgzip_free(c->pg);
        ZSTD_freeCCtx(c->zc);
        free(c->out);
        free(c);
}

/* ---- decompression ---- */

enum ossb_compression ossb_compression_detect(const void *head, size_t len)
{
        const unsigned char *h = head;
        if (len >= 2 && h[0] == 0x1f && h[1] == 0x8b)
                return OSSB_COMPRESSION_GZIP;
        if (len >= 4 && h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd)
                return OSSB_COMPRESSION_ZSTD;
        return OSSB_COMPRESSION_NONE;
}

struct decompressor {
        enum ossb_compression kind;
        z_stream z;
        bool z_init;
        bool z_end; /* the last gzip member ended */
        ZSTD_DCtx *zd;
        size_t zstd_hint; /* 0 when the last frame is complete */
        unsigned char *out;
        ossb_sink_fn sink;
        void *userdata;
};

static int gunzip_chunk(struct decompressor *d, const unsigned char *buf, size_t len, struct ossb_error **err)
{
        d->z.next_in = (Bytef *) buf;
        d->z.avail_in = (uInt) len;
        for (;;) {
                if (d->z_end) {
                        if (d->z.avail_in == 0)
                                return 0;
                        /* another gzip member follows */
                        if (inflateReset(&d->z) != Z_OK)
                                return ossb_error_set(err, -EIO, "cannot reset zlib");
                        d->z_end = false;
                }
                d->z.next_out = d->out;
                d->z.avail_out = CHUNK;
                int zr = inflate(&d->z, Z_NO_FLUSH);
                if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
                        return ossb_error_set(err, -EBADMSG, "corrupt gzip data: %s", d->z.msg ? d->z.msg : "?");
                size_t have = CHUNK - d->z.avail_out;
                if (have > 0) {
                        int r = d->sink(d->userdata, d->out, have, err);
                        if (r < 0)
                                return r;
                }
                if (zr == Z_STREAM_END)
                        d->z_end = true;
                else if (d->z.avail_in == 0 && d->z.avail_out != 0)
                        return 0; /* all input used and no output pending */
        }
}

static int unzstd_chunk(struct decompressor *d, const unsigned char *buf, size_t len, struct ossb_error **err)
{
        ZSTD_inBuffer in = { buf, len, 0 };
        for (;;) {
                ZSTD_outBuffer out = { d->out, CHUNK, 0 };
                size_t zr = ZSTD_decompressStream(d->zd, &out, &in);
                if (ZSTD_isError(zr))
                        return ossb_error_set(err, -EBADMSG, "corrupt zstd data: %s", ZSTD_getErrorName(zr));
                d->zstd_hint = zr;
                if (out.pos > 0) {
                        int r = d->sink(d->userdata, d->out, out.pos, err);
                        if (r < 0)
                                return r;
                }
                if (in.pos == in.size && out.pos < out.size)
                        return 0;
        }
}

static int decompress_chunk(struct decompressor *d, const unsigned char *buf, size_t len, struct ossb_error **err)
{
        switch (d->kind) {
        case OSSB_COMPRESSION_GZIP:
                return gunzip_chunk(d, buf, len, err);
        case OSSB_COMPRESSION_ZSTD:
                return unzstd_chunk(d, buf, len, err);
        case OSSB_COMPRESSION_NONE:
                return d->sink(d->userdata, buf, len, err);
        case OSSB_COMPRESSION_ESTARGZ: /* never detected: they are gzip and zstd */
        case OSSB_COMPRESSION_ZSTD_CHUNKED:
                break;
        }
        return -EINVAL;
}

static int decompressor_start(struct decompressor *d, const unsigned char *head, size_t len, struct ossb_error **err)
{
        d->kind = ossb_compression_detect(head, len);
        if (d->kind == OSSB_COMPRESSION_GZIP) {
                if (inflateInit2(&d->z, 15 + 16) != Z_OK)
                        return ossb_error_set(err, -ENOMEM, "cannot initialise zlib");
                d->z_init = true;
        } else if (d->kind == OSSB_COMPRESSION_ZSTD) {
                d->zd = ZSTD_createDCtx();
                if (!d->zd)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int decompressor_end(struct decompressor *d, struct ossb_error **err)
{
        if (d->kind == OSSB_COMPRESSION_GZIP && !d->z_end)
                return ossb_error_set(err, -EBADMSG, "truncated gzip data");
        if (d->kind == OSSB_COMPRESSION_ZSTD && d->zstd_hint != 0)
                return ossb_error_set(err, -EBADMSG, "truncated zstd data");
        return 0;
}

static ssize_t read_full(int fd, unsigned char *buf, size_t len)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        return (ssize_t) got;
}

int ossb_decompress_fd(int fd, ossb_sink_fn sink, void *userdata, struct ossb_error **err)
{
        struct decompressor d = { .sink = sink, .userdata = userdata };
        _cleanup_free_ unsigned char *in = malloc(CHUNK);
        int r = 0;
        bool started = false;

        d.out = malloc(CHUNK);
        if (!in || !d.out) {
                free(d.out);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (;;) {
                ssize_t n = read_full(fd, in, CHUNK);
                if (n < 0) {
                        r = ossb_error_set(err, (int) n, "read failed: %s", strerror((int) -n));
                        break;
                }
                if (n == 0)
                        break;
                if (!started) {
                        started = true;
                        r = decompressor_start(&d, in, (size_t) n, err);
                        if (r < 0)
                                break;
                }
                r = decompress_chunk(&d, in, (size_t) n, err);
                if (r < 0)
                        break;
        }
        if (r >= 0 && started)
                r = decompressor_end(&d, err);
        if (d.z_init)
                inflateEnd(&d.z);
        ZSTD_freeDCtx(d.zd);
        free(d.out);
        return r;
}
