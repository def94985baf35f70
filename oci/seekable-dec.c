/* oci/seekable-dec.c - bounded decompression of a run of gzip members or zstd frames from a
 * buffer, and the few tar header checks the seekable readers need.
 *
 * Owns: struct ossb_seek_dec's zlib/zstd contexts.  Input is untrusted: every read is bounded
 * by the caller's buffer, corrupt data is -EBADMSG, and nothing is read past the input.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "oci/seekable-dec.h"

int ossb_seek_dec_init(struct ossb_seek_dec *d, bool zstd, const void *in, size_t len)
{
        memset(d, 0, sizeof(*d));
        d->zstd = zstd;
        d->in = in;
        d->in_len = len;
        if (zstd) {
                d->zd = ZSTD_createDCtx();
                return d->zd ? 0 : -ENOMEM;
        }
        if (inflateInit2(&d->z, 15 + 16) != Z_OK)
                return -ENOMEM;
        d->z_init = true;
        return 0;
}

void ossb_seek_dec_free(struct ossb_seek_dec *d)
{
        if (d->z_init)
                inflateEnd(&d->z);
        d->z_init = false;
        ZSTD_freeDCtx(d->zd);
        d->zd = NULL;
}

static int gunzip_read(struct ossb_seek_dec *d, unsigned char *out, size_t want, size_t *got)
{
        size_t n = 0;
        while (n < want) {
                if (d->member_end) {
                        if (d->pos == d->in_len)
                                break;
                        if (inflateReset(&d->z) != Z_OK)
                                return -EIO;
                        d->member_end = false;
                }
                size_t in_left = d->in_len - d->pos, out_left = want - n;
                d->z.next_in = (Bytef *) d->in + d->pos;
                d->z.avail_in = (uInt) (in_left > UINT_MAX / 2 ? UINT_MAX / 2 : in_left);
                d->z.next_out = out + n;
                d->z.avail_out = (uInt) (out_left > UINT_MAX / 2 ? UINT_MAX / 2 : out_left);
                uInt before_in = d->z.avail_in, before_out = d->z.avail_out;
                int zr = inflate(&d->z, Z_NO_FLUSH);
                d->pos += before_in - d->z.avail_in;
                n += before_out - d->z.avail_out;
                if (zr == Z_STREAM_END)
                        d->member_end = true;
                else if (zr == Z_BUF_ERROR && d->pos == d->in_len)
                        break; /* input ends inside a member */
                else if (zr != Z_OK && zr != Z_BUF_ERROR)
                        return -EBADMSG;
                else if (before_in == d->z.avail_in && before_out == d->z.avail_out)
                        break;
        }
        *got = n;
        return 0;
}

static int unzstd_read(struct ossb_seek_dec *d, unsigned char *out, size_t want, size_t *got)
{
        ZSTD_inBuffer in = { d->in, d->in_len, d->pos };
        ZSTD_outBuffer o = { out, want, 0 };
        while (o.pos < o.size) {
                size_t before_in = in.pos, before_out = o.pos;
                size_t zr = ZSTD_decompressStream(d->zd, &o, &in);
                if (ZSTD_isError(zr))
                        return -EBADMSG;
                d->frame_open = zr != 0;
                if (in.pos == before_in && o.pos == before_out)
                        break;
        }
        d->pos = in.pos;
        *got = o.pos;
        return 0;
}

int ossb_seek_dec_read(struct ossb_seek_dec *d, void *out, size_t want, size_t *got)
{
        *got = 0;
        if (want == 0)
                return 0;
        return d->zstd ? unzstd_read(d, out, want, got) : gunzip_read(d, out, want, got);
}

int ossb_seek_dec_skip(struct ossb_seek_dec *d, int64_t n)
{
        unsigned char buf[16384];
        while (n > 0) {
                size_t got, want = n > (int64_t) sizeof(buf) ? sizeof(buf) : (size_t) n;
                int r = ossb_seek_dec_read(d, buf, want, &got);
                if (r < 0)
                        return r;
                if (got < want)
                        return -EBADMSG;
                n -= (int64_t) got;
        }
        return 0;
}

bool ossb_seek_dec_complete(const struct ossb_seek_dec *d)
{
        return d->pos == d->in_len && (d->zstd ? !d->frame_open : d->member_end);
}

/* ---- tar headers ---- */

bool ossb_tar_header_valid(const unsigned char *b)
{
        int64_t want = ossb_tar_number(b + 148, 8);
        uint64_t sum = 0;
        if (want < 0)
                return false;
        for (size_t i = 0; i < 512; i++)
                sum += i >= 148 && i < 156 ? ' ' : b[i];
        return sum == (uint64_t) want && sum != 8 * ' ';
}

int64_t ossb_tar_number(const unsigned char *f, size_t n)
{
        uint64_t v = 0;
        size_t i = 0;
        if (f[0] & 0x80) { /* base-256, positive only */
                if (f[0] != 0x80)
                        return -1;
                for (i = 1; i < n; i++) {
                        if (v >> 55)
                                return -1;
                        v = (v << 8) | f[i];
                }
                return (int64_t) v;
        }
        while (i < n && f[i] == ' ')
                i++;
        size_t digits = 0;
        for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
                if (v >> 60)
                        return -1;
                v = (v << 3) | (uint64_t) (f[i] - '0');
        }
        for (; i < n; i++)
                if (f[i] != ' ' && f[i] != '\0')
                        return -1;
        return digits ? (int64_t) v : -1;
}

void ossb_tar_name(const unsigned char *b, char out[257])
{
        size_t pl = 0, nl = strnlen((const char *) b, 100);
        if (memcmp(b + 257, "ustar", 5) == 0) {
                pl = strnlen((const char *) b + 345, 155);
                memcpy(out, b + 345, pl);
                if (pl > 0)
                        out[pl++] = '/';
        }
        memcpy(out + pl, b, nl);
        out[pl + nl] = '\0';
}
