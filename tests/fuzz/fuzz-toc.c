/* tests/fuzz/fuzz-toc.c - libFuzzer target for oci/seekable.c: arbitrary bytes taken as a
 * whole layer blob (ossb_toc_locate from its tail, optionally with annotations), as an eStargz
 * TOC member and as a zstd:chunked TOC frame (ossb_toc_decode), and then every chunk the TOC
 * names read back from the same bytes (ossb_toc_chunk_read).
 *
 * Input: the first byte chooses the mode (0: blob + footer, 1: blob + position annotation
 * built from the next 12 bytes, 2: eStargz TOC, 3: zstd:chunked TOC); the rest is the data.
 * Checks: every failure is a negative errno with a message; a location lies inside the blob;
 * a decoded TOC's chunks cover each file in order and lie before the TOC; chunk reads never
 * write past c->size bytes (ASan) and fail only with -EBADMSG.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci/seekable.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHUNK_MAX (4u << 20) /* larger chunks are not read back (memory) */

static void check_err(int r, struct ossb_error *e)
{
        if (r < 0 && (!e || !e->msg || e->code != r))
                abort();
        if (r >= 0 && e)
                abort();
}

static void read_chunks(const struct ossb_toc *toc, const uint8_t *blob, size_t len)
{
        size_t budget = 64;
        for (size_t i = 0; i < toc->n; i++) {
                const struct ossb_toc_entry *e = &toc->entries[i];
                int64_t covered = 0;
                if (!e->path)
                        abort();
                for (size_t k = 0; k < e->n_chunks; k++) {
                        const struct ossb_toc_chunk *c = &e->chunks[k];
                        if (c->file_offset != covered || c->size <= 0 || c->offset < 0 || c->end <= c->offset)
                                abort();
                        covered += c->size;
                        if (budget == 0 || (uint64_t) c->end > len || (uint64_t) c->size > CHUNK_MAX)
                                continue;
                        budget--;
                        _cleanup_free_ unsigned char *out = malloc((size_t) c->size);
                        struct ossb_error *err = NULL;
                        if (!out)
                                abort();
                        int r = ossb_toc_chunk_read(toc, e, c, blob + c->offset, (size_t) (c->end - c->offset), out, &err);
                        check_err(r, err);
                        if (r < 0 && r != -EBADMSG && r != -ENOMEM)
                                abort();
                        ossb_error_free(err);
                }
                if (e->n_chunks > 0 && covered != e->size)
                        abort();
        }
}

static void decode(const struct ossb_toc_location *loc, const uint8_t *toc_bytes, size_t toc_len,
                   const uint8_t *blob, size_t blob_len)
{
        struct ossb_toc *toc = NULL;
        struct ossb_error *err = NULL;
        int r = ossb_toc_decode(loc, toc_bytes, toc_len, &toc, &err);
        check_err(r, err);
        ossb_error_free(err);
        if (r < 0) {
                if (toc)
                        abort();
                return;
        }
        read_chunks(toc, blob, blob_len);
        ossb_toc_free(toc);
}

static void as_blob(const uint8_t *data, size_t size, json_object *annotations)
{
        struct ossb_toc_location loc;
        struct ossb_error *err = NULL;
        size_t tail = size < OSSB_SEEKABLE_TAIL_SIZE ? size : OSSB_SEEKABLE_TAIL_SIZE;
        int r = ossb_toc_locate(annotations, (int64_t) size, data + size - tail, tail, &loc, &err);
        check_err(r, err);
        ossb_error_free(err);
        if (r < 0)
                return;
        if (loc.offset < 0 || loc.length <= 0 || (uint64_t) loc.offset + (uint64_t) loc.length > size)
                abort();
        decode(&loc, data + loc.offset, (size_t) loc.length, data, size);
}

static json_object *position(const uint8_t *p)
{
        char buf[128];
        uint32_t off = (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16;
        uint32_t len = (uint32_t) p[3] | (uint32_t) p[4] << 8 | (uint32_t) p[5] << 16;
        uint32_t ulen = (uint32_t) p[6] | (uint32_t) p[7] << 8 | (uint32_t) p[8] << 16;
        json_object *a = json_object_new_object();
        if (!a)
                abort();
        snprintf(buf, sizeof(buf), "%u:%u:%u:%u", off, len, ulen, p[9] & 1 ? 1u : p[9]);
        json_object_object_add(a, "io.github.containers.zstd-chunked.manifest-position", json_object_new_string(buf));
        if (p[10] & 1)
                json_object_object_add(a, "containerd.io/snapshot/stargz/toc.digest",
                                       json_object_new_string("sha256:0000000000000000000000000000000000000000000000000000000000000000"));
        return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        uint8_t mode = data[0] % 4;
        data++;
        size--;
        if (mode == 0) {
                as_blob(data, size, NULL);
        } else if (mode == 1) {
                if (size < 12)
                        return 0;
                json_object *a = position(data);
                as_blob(data + 12, size - 12, a);
                json_object_put(a);
        } else if (size > 0) {
                /* the whole input is the TOC; chunk offsets then point into a blob of zeros
                 * before it, which the chunk reads reject */
                struct ossb_toc_location loc = { .kind = mode == 2 ? OSSB_SEEKABLE_ESTARGZ : OSSB_SEEKABLE_ZSTD_CHUNKED,
                                                 .offset = 1 << 16, .length = (int64_t) size };
                static uint8_t zeros[1 << 16];
                decode(&loc, data, size, zeros, sizeof(zeros));
        }
        return 0;
}
