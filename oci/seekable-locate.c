/* oci/seekable-locate.c - ossb_toc_locate: where a layer's TOC is, from its descriptor's
 * annotations and the footer at the end of its blob.
 *
 * Owns: nothing.  Annotations and tails are untrusted: every number is parsed strictly and
 * checked against the blob's size before anything is computed from it.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci/seekable-internal.h"
#include "oci/seekable.h"

static const char *annotation(json_object *a, const char *key)
{
        json_object *v;
        if (!a || !json_object_object_get_ex(a, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* The new key's value, else the old one's; both present and different is an error. */
static int annotation_pair(json_object *a, const char *key, const char *old_key, const char **ret,
                           struct ossb_error **err)
{
        const char *v = annotation(a, key), *o = annotation(a, old_key);
        if (v && o && !streq(v, o))
                return ossb_error_set(err, -EBADMSG, "annotations `%s` and `%s` disagree", key, old_key);
        *ret = v ? v : o;
        return 0;
}

static int copy_digest(char dst[OSSB_DIGEST_STR_LEN + 1], const char *v, const char *key, struct ossb_error **err)
{
        if (!v) {
                dst[0] = '\0';
                return 0;
        }
        if (!ossb_digest_is_valid(v))
                return ossb_error_set(err, -EBADMSG, "annotation `%s` is not a sha256 digest", key);
        memcpy(dst, v, OSSB_DIGEST_STR_LEN + 1);
        return 0;
}

/* A decimal number of at most 18 digits (no sign, no spaces); returns the end or NULL. */
static const char *parse_dec(const char *s, int64_t *ret)
{
        int64_t v = 0;
        int n = 0;
        for (; *s >= '0' && *s <= '9'; s++, n++) {
                if (n == 18)
                        return NULL;
                v = v * 10 + (*s - '0');
        }
        if (n == 0)
                return NULL;
        *ret = v;
        return s;
}

/* "offset:length:uncompressedLength:type" */
static int parse_position(const char *pos, int64_t blob_size, struct ossb_toc_location *loc, struct ossb_error **err)
{
        int64_t v[4];
        const char *p = pos;
        for (int i = 0; i < 4; i++) {
                p = parse_dec(p, &v[i]);
                if (!p || *p != (i == 3 ? '\0' : ':'))
                        return ossb_error_set(err, -EBADMSG, "invalid zstd:chunked manifest position `%s`", pos);
                p++;
        }
        if (v[3] != OSSB_ZSTD_CHUNKED_MANIFEST_TYPE)
                return ossb_error_set(err, -EBADMSG, "zstd:chunked manifest position `%s`: unknown TOC type %" PRId64,
                                      pos, v[3]);
        if (v[0] < OSSB_ZSTD_SKIPPABLE_HEADER || v[1] == 0 || v[1] > blob_size || v[0] > blob_size - v[1])
                return ossb_error_set(err, -EBADMSG,
                                      "zstd:chunked manifest position `%s` lies outside the blob (%" PRId64 " bytes)",
                                      pos, blob_size);
        loc->kind = OSSB_SEEKABLE_ZSTD_CHUNKED;
        loc->offset = v[0];
        loc->length = v[1];
        loc->uncompressed_length = v[2];
        return 0;
}

static uint64_t get_le64(const unsigned char *b)
{
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = (v << 8) | b[i];
        return v;
}

static bool parse_hex16(const unsigned char *s, int64_t *ret)
{
        uint64_t v = 0;
        for (int i = 0; i < 16; i++) {
                unsigned c = s[i];
                unsigned d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 16;
                if (d == 16)
                        return false;
                v = (v << 4) | d;
        }
        if (v > INT64_MAX)
                return false;
        *ret = (int64_t) v;
        return true;
}

/* The gzip header of a footer with only FEXTRA set, its extra field `xlen` long. */
static bool gzip_footer_header(const unsigned char *f, unsigned xlen)
{
        return f[0] == 0x1f && f[1] == 0x8b && f[2] == 8 && f[3] == 4 && f[10] == (xlen & 0xff) && f[11] == xlen >> 8;
}

/* eStargz's 51-byte footer, or the original stargz's 47-byte one: the TOC offset. */
static bool estargz_footer(const unsigned char *tail, size_t len, int64_t *ret_off, int64_t *ret_footer)
{
        if (len >= OSSB_ESTARGZ_FOOTER_SIZE) {
                const unsigned char *f = tail + len - OSSB_ESTARGZ_FOOTER_SIZE;
                if (gzip_footer_header(f, 26) && f[12] == 'S' && f[13] == 'G' && f[14] == 22 && f[15] == 0 &&
                    memcmp(f + 32, "STARGZ", 6) == 0 && parse_hex16(f + 16, ret_off)) {
                        *ret_footer = OSSB_ESTARGZ_FOOTER_SIZE;
                        return true;
                }
        }
        if (len >= OSSB_ESTARGZ_LEGACY_FOOTER_SIZE) {
                const unsigned char *f = tail + len - OSSB_ESTARGZ_LEGACY_FOOTER_SIZE;
                if (gzip_footer_header(f, 22) && memcmp(f + 28, "STARGZ", 6) == 0 && parse_hex16(f + 12, ret_off)) {
                        *ret_footer = OSSB_ESTARGZ_LEGACY_FOOTER_SIZE;
                        return true;
                }
        }
        return false;
}

/* zstd:chunked's footer in its skippable frame (40 or 64 bytes of data, the magic last). */
static bool zstd_chunked_footer(const unsigned char *tail, size_t len, int64_t blob_size, struct ossb_toc_location *loc)
{
        static const size_t sizes[] = { OSSB_ZSTD_CHUNKED_FOOTER_V1, OSSB_ZSTD_CHUNKED_FOOTER_V2 };
        for (size_t i = 0; i < 2; i++) {
                size_t n = sizes[i], frame = n + OSSB_ZSTD_SKIPPABLE_HEADER;
                if (len < frame)
                        continue;
                const unsigned char *h = tail + len - frame, *f = h + OSSB_ZSTD_SKIPPABLE_HEADER;
                if (memcmp(h, "\x50\x2a\x4d\x18", 4) != 0 || h[4] != n || h[5] || h[6] || h[7] ||
                    memcmp(f + n - 8, OSSB_ZSTD_CHUNKED_MAGIC, 8) != 0)
                        continue;
                uint64_t off = get_le64(f), clen = get_le64(f + 8), ulen = get_le64(f + 16), type = get_le64(f + 24);
                uint64_t limit = (uint64_t) blob_size - frame;
                if (type != OSSB_ZSTD_CHUNKED_MANIFEST_TYPE || off < OSSB_ZSTD_SKIPPABLE_HEADER || clen == 0 ||
                    clen > limit || off > limit - clen || ulen > INT64_MAX)
                        return false;
                loc->kind = OSSB_SEEKABLE_ZSTD_CHUNKED;
                loc->offset = (int64_t) off;
                loc->length = (int64_t) clen;
                loc->uncompressed_length = (int64_t) ulen;
                return true;
        }
        return false;
}

static int locate_tail(const unsigned char *tail, size_t tail_len, int64_t blob_size, struct ossb_toc_location *loc,
                       struct ossb_error **err)
{
        int64_t off, footer;
        if (zstd_chunked_footer(tail, tail_len, blob_size, loc))
                return 1;
        if (!estargz_footer(tail, tail_len, &off, &footer))
                return 0;
        if (off >= blob_size - footer)
                return ossb_error_set(err, -EBADMSG,
                                      "eStargz footer: the TOC offset %" PRId64 " lies outside the blob (%" PRId64 " bytes)",
                                      off, blob_size);
        loc->kind = OSSB_SEEKABLE_ESTARGZ;
        loc->offset = off;
        loc->length = blob_size - footer - off;
        loc->uncompressed_length = 0;
        return 1;
}

int ossb_toc_locate(json_object *annotations, int64_t blob_size, const void *tail, size_t tail_len,
                    struct ossb_toc_location *ret, struct ossb_error **err)
{
        struct ossb_toc_location loc = { 0 };
        const char *pos, *sum, *toc = annotation(annotations, OSSB_ANNOTATION_STARGZ_TOC_DIGEST);
        int r;

        if (blob_size < 0 || (uint64_t) blob_size < tail_len || (tail_len > 0 && !tail))
                return ossb_error_set(err, -EINVAL, "invalid blob size %" PRId64 " or tail (%zu bytes)", blob_size, tail_len);
        if (annotations && !json_object_is_type(annotations, json_type_object))
                return ossb_error_set(err, -EINVAL, "layer annotations are not a JSON object");
        r = annotation_pair(annotations, OSSB_ANNOTATION_ZC_POSITION, OSSB_ANNOTATION_ZC_POSITION_OLD, &pos, err);
        if (r >= 0)
                r = annotation_pair(annotations, OSSB_ANNOTATION_ZC_CHECKSUM, OSSB_ANNOTATION_ZC_CHECKSUM_OLD, &sum, err);
        if (r >= 0)
                r = copy_digest(loc.digest, toc, OSSB_ANNOTATION_STARGZ_TOC_DIGEST, err);
        if (r >= 0)
                r = copy_digest(loc.compressed_digest, sum, OSSB_ANNOTATION_ZC_CHECKSUM, err);
        if (r < 0)
                return r;
        if (pos)
                r = parse_position(pos, blob_size, &loc, err);
        else
                r = locate_tail(tail, tail_len, blob_size, &loc, err);
        if (r < 0)
                return r;
        if (r == 0 && !pos) {
                if (toc && tail_len < OSSB_ESTARGZ_FOOTER_SIZE && (uint64_t) blob_size > tail_len)
                        return ossb_error_set(err, -ENODATA,
                                              "the layer's TOC offset is in its footer: need the blob's last %d bytes",
                                              OSSB_SEEKABLE_TAIL_SIZE);
                if (toc || sum)
                        return ossb_error_set(err, -EBADMSG, "the layer's annotations name a TOC but its blob has no "
                                                             "eStargz or zstd:chunked footer");
                return ossb_error_set(err, -ENOENT, "the layer is neither eStargz nor zstd:chunked");
        }
        *ret = loc;
        return 0;
}
