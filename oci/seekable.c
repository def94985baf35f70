/* oci/seekable.c - reading eStargz and zstd:chunked tables of contents, and single chunks.
 *
 * Owns: struct ossb_toc and everything it points to.  The TOC is decompressed with a bound,
 * checked against its digests, parsed with json-c (oci/image.h's strict parser) and every
 * entry checked (seekable.h says what) before the caller sees it; the TOC's entry fields are
 * read in seekable-entry.c.  Chunks are decompressed into the caller's buffer and verified
 * against their digest.  The formats: see seekable.h and seekable-write.c.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci/image.h"
#include "oci/oci-internal.h"
#include "oci/seekable-dec.h"
#include "oci/seekable-internal.h"
#include "oci/seekable-toc.h"
#include "oci/seekable.h"

void ossb_toc_free(struct ossb_toc *toc)
{
        if (!toc)
                return;
        for (size_t i = 0; i < toc->n; i++)
                ossb_toc_entry_clear(&toc->entries[i]);
        free(toc->entries);
        free(toc);
}

static const char *kind_name(enum ossb_seekable_kind k)
{
        return k == OSSB_SEEKABLE_ESTARGZ ? "eStargz" : k == OSSB_SEEKABLE_ZSTD_CHUNKED ? "zstd:chunked" : "unknown";
}

/* ---- the TOC's bytes ---- */

static int check_digest(const char *what, const void *data, size_t len, const char *want, struct ossb_error **err)
{
        char got[OSSB_DIGEST_STR_LEN + 1];
        if (!want[0])
                return 0;
        if (ossb_sha256_digest(data, len, got) < 0)
                return ossb_error_set(err, -EIO, "sha256 failed");
        if (!streq(got, want))
                return ossb_error_set(err, -EBADMSG, "%s digest mismatch: got %s, expected %s", what, got, want);
        return 0;
}

/* Decompress everything (at most `max` bytes) into a new buffer. */
static int decompress_all(bool zstd, const void *data, size_t len, size_t max, char **ret, size_t *ret_len,
                          struct ossb_error **err)
{
        struct ossb_seek_dec d;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;
        int r = ossb_seek_dec_init(&d, zstd, data, len);
        while (r >= 0) {
                if (cap - n < 65536) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        if (ncap > max + 65536)
                                ncap = max + 65536;
                        if (ncap <= cap) {
                                r = ossb_error_set(err, -EBADMSG, "the TOC is larger than %zu bytes", max);
                                break;
                        }
                        char *b = realloc(buf, ncap + 1);
                        if (!b) {
                                r = ossb_error_set(err, -ENOMEM, "out of memory");
                                break;
                        }
                        buf = b;
                        cap = ncap;
                }
                size_t got;
                r = ossb_seek_dec_read(&d, buf + n, cap - n, &got);
                if (r < 0) {
                        r = ossb_error_set(err, r, "corrupt %s data in the TOC", zstd ? "zstd" : "gzip");
                        break;
                }
                n += got;
                if (n > max) {
                        r = ossb_error_set(err, -EBADMSG, "the TOC is larger than %zu bytes", max);
                        break;
                }
                if (got == 0)
                        break;
        }
        if (r >= 0 && n == 0)
                r = ossb_error_set(err, -EBADMSG, "the TOC is empty or truncated");
        ossb_seek_dec_free(&d);
        if (r < 0)
                return r;
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

/* eStargz: the member holds a tar whose first file is stargz.index.json (extension headers
 * before it are skipped); the JSON is that file's content. */
static int estargz_json(const char *tar, size_t len, const char **ret, size_t *ret_len, struct ossb_error **err)
{
        size_t pos = 0;
        for (int i = 0; i < 8 && len - pos >= 512; i++) {
                const unsigned char *h = (const unsigned char *) tar + pos;
                char name[257];
                if (!ossb_tar_header_valid(h))
                        return ossb_error_set(err, -EBADMSG, "the eStargz TOC does not start with a valid tar header");
                int64_t size = ossb_tar_number(h + 124, 12);
                if (size < 0 || (uint64_t) size > len - pos - 512)
                        return ossb_error_set(err, -EBADMSG, "the eStargz TOC's tar entry is truncated");
                pos += 512;
                if (h[156] == 'x' || h[156] == 'g') {
                        pos += ((size_t) size + 511) / 512 * 512;
                        if (pos > len)
                                return ossb_error_set(err, -EBADMSG, "the eStargz TOC's tar entry is truncated");
                        continue;
                }
                ossb_tar_name(h, name);
                if ((h[156] != '0' && h[156] != '\0') ||
                    (!streq(name, OSSB_ESTARGZ_TOC_NAME) && !streq(name, "./" OSSB_ESTARGZ_TOC_NAME)))
                        return ossb_error_set(err, -EBADMSG, "the eStargz TOC's tar entry is `%s`, not %s", name,
                                              OSSB_ESTARGZ_TOC_NAME);
                *ret = tar + pos;
                *ret_len = (size_t) size;
                return 0;
        }
        return ossb_error_set(err, -EBADMSG, "no %s entry in the eStargz TOC", OSSB_ESTARGZ_TOC_NAME);
}

static int toc_json(const struct ossb_toc_location *loc, const void *data, size_t len, char **ret_buf,
                    const char **ret_json, size_t *ret_len, struct ossb_error **err)
{
        bool zstd = loc->kind == OSSB_SEEKABLE_ZSTD_CHUNKED;
        size_t max = OSSB_TOC_MAX_JSON + (zstd ? 0 : 64 * 1024);
        _cleanup_free_ char *buf = NULL;
        size_t n;

        if (zstd && (loc->uncompressed_length < 0 || (uint64_t) loc->uncompressed_length > OSSB_TOC_MAX_JSON))
                return ossb_error_set(err, -EBADMSG, "the TOC is larger than %u bytes", OSSB_TOC_MAX_JSON);
        int r = decompress_all(zstd, data, len, max, &buf, &n, err);
        if (r < 0)
                return r;
        if (!zstd) {
                r = estargz_json(buf, n, ret_json, ret_len, err);
                if (r < 0)
                        return r;
        } else {
                if (loc->uncompressed_length > 0 && (uint64_t) loc->uncompressed_length != n)
                        return ossb_error_set(err, -EBADMSG, "the TOC is %zu bytes, its position says %" PRId64, n,
                                              loc->uncompressed_length);
                *ret_json = buf;
                *ret_len = n;
        }
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

int ossb_toc_decode(const struct ossb_toc_location *loc, const void *data, size_t len, struct ossb_toc **ret,
                    struct ossb_error **err)
{
        _cleanup_free_ char *buf = NULL;
        const char *json = NULL;
        size_t json_len = 0;
        int r;

        if (!loc || (loc->kind != OSSB_SEEKABLE_ESTARGZ && loc->kind != OSSB_SEEKABLE_ZSTD_CHUNKED))
                return ossb_error_set(err, -EINVAL, "not a seekable layer's TOC location");
        if (!data || loc->length <= 0 || (uint64_t) loc->length != len)
                return ossb_error_set(err, -EINVAL, "%zu TOC bytes given, the location says %" PRId64, len, loc->length);
        r = check_digest("compressed TOC", data, len, loc->compressed_digest, err);
        if (r >= 0)
                r = toc_json(loc, data, len, &buf, &json, &json_len, err);
        if (r >= 0)
                r = check_digest("TOC", json, json_len, loc->digest, err);
        if (r >= 0)
                r = ossb_toc_parse(loc, json, json_len, ret, err);
        if (r < 0) {
                ossb_error_wrap(err, "%s TOC at blob offset %" PRId64, kind_name(loc->kind), loc->offset);
                return r;
        }
        return 0;
}

/* ---- chunks ---- */

/* Whether the peeked bytes are tar headers ending with this entry's own (a writer that put
 * the header in the file's first member); *ret_skip: their length. */
static bool leading_header(const struct ossb_toc_entry *e, const unsigned char *b, size_t len, size_t *ret_skip)
{
        size_t pos = 0;
        for (int i = 0; i < 8 && len - pos >= 512; i++) {
                const unsigned char *h = b + pos;
                char name[257];
                if (!ossb_tar_header_valid(h))
                        return false;
                int64_t size = ossb_tar_number(h + 124, 12);
                if (size < 0)
                        return false;
                pos += 512;
                if (h[156] == 'x' || h[156] == 'g' || h[156] == 'L' || h[156] == 'K') {
                        if ((uint64_t) size > len - pos)
                                return false;
                        pos += ((size_t) size + 511) / 512 * 512;
                        if (pos > len)
                                return false;
                        continue;
                }
                ossb_tar_name(h, name);
                if ((h[156] != '0' && h[156] != '\0') || size != e->size || !ossb_toc_path_equal(name, e->path))
                        return false;
                *ret_skip = pos;
                return true;
        }
        return false;
}

#define PEEK_MAX (64 * 1024)

/* A file's first chunk: read ahead, skip a tar header naming the entry if there is one, and
 * put the rest of what was read at the start of `out`.  *ret_n: bytes of out filled. */
static int first_chunk_start(struct ossb_seek_dec *d, const struct ossb_toc_entry *e, const struct ossb_toc_chunk *c,
                             unsigned char *out, size_t *ret_n)
{
        unsigned char first[512];
        size_t got, skip = 0;
        int r = ossb_seek_dec_read(d, first, sizeof(first), &got);
        if (r < 0 || got < sizeof(first) || !ossb_tar_header_valid(first)) {
                size_t n = got < (size_t) c->size ? got : (size_t) c->size;
                memcpy(out, first, n);
                *ret_n = n;
                return r;
        }
        _cleanup_free_ unsigned char *peek = malloc(PEEK_MAX);
        if (!peek)
                return -ENOMEM;
        memcpy(peek, first, got);
        size_t more;
        r = ossb_seek_dec_read(d, peek + got, PEEK_MAX - got, &more);
        if (r < 0)
                return r;
        got += more;
        if (!leading_header(e, peek, got, &skip))
                skip = 0;
        size_t n = got - skip < (size_t) c->size ? got - skip : (size_t) c->size;
        memcpy(out, peek + skip, n);
        *ret_n = n;
        return 0;
}

static bool chunk_of(const struct ossb_toc_entry *e, const struct ossb_toc_chunk *c)
{
        return e->n_chunks > 0 && c >= e->chunks && c < e->chunks + e->n_chunks;
}

int ossb_toc_chunk_read(const struct ossb_toc *toc, const struct ossb_toc_entry *e, const struct ossb_toc_chunk *c,
                        const void *comp, size_t comp_len, void *out, struct ossb_error **err)
{
        struct ossb_seek_dec d;
        size_t n = 0, got;
        int r;

        if (!toc || !e || !c || !chunk_of(e, c) || (comp_len > 0 && !comp) || (c->size > 0 && !out))
                return ossb_error_set(err, -EINVAL, "invalid chunk read");
        if ((uint64_t) comp_len > (uint64_t) (c->end - c->offset))
                comp_len = (size_t) (c->end - c->offset);
        r = ossb_seek_dec_init(&d, toc->kind == OSSB_SEEKABLE_ZSTD_CHUNKED, comp, comp_len);
        if (r >= 0)
                r = ossb_seek_dec_skip(&d, c->inner_offset);
        if (r >= 0 && c->file_offset == 0 && c->inner_offset == 0 && c->size > 0)
                r = first_chunk_start(&d, e, c, out, &n);
        if (r >= 0 && n < (size_t) c->size) {
                r = ossb_seek_dec_read(&d, (unsigned char *) out + n, (size_t) c->size - n, &got);
                n += got;
        }
        ossb_seek_dec_free(&d);
        if (r == -ENOMEM)
                return ossb_error_set(err, r, "out of memory");
        if (r < 0 || n < (size_t) c->size)
                return ossb_error_set(err, -EBADMSG, "`%s`: the chunk at blob offset %" PRId64 " is %s", e->path,
                                      c->offset, r < 0 ? "corrupt" : "truncated");
        r = check_digest("chunk", out, (size_t) c->size, c->digest, err);
        if (r < 0) {
                ossb_error_wrap(err, "`%s` (bytes %" PRId64 "-%" PRId64 ")", e->path, c->file_offset,
                                c->file_offset + c->size);
                return r;
        }
        return 0;
}
