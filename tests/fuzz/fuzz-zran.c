/* tests/fuzz/fuzz-zran.c - libFuzzer target for oci/zran.c on arbitrary bytes.
 *
 * Input: the first byte chooses the mode.  0: the rest is a serialized index
 * (ossb_zran_decode; a decoded index must encode back to the same bytes, and every span is
 * read from a blob of zeros of its size, which must fail or match the span digest, never
 * crash).  1: the rest is a layer blob (ossb_zran_build with its own digest, a tiny span;
 * a built index must round-trip through encode/decode and read back the first bytes).
 * 2: the rest is an index without its trailer: the target appends the right checksum, so that
 * mutations reach the field checks behind it (as mode 0 otherwise).
 * Checks: every failure is a negative errno with a message. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci/zran.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(int r, struct ossb_error *e)
{
        if (r < 0 && (!e || !e->msg || e->code != r))
                abort();
        ossb_error_free(e);
}

struct src {
        const uint8_t *p;
        size_t len, at;
};

static ssize_t src_read(void *ud, void *buf, size_t len, struct ossb_error **err)
{
        struct src *s = ud;
        size_t n = s->len - s->at < len ? s->len - s->at : len;
        memcpy(buf, s->p + s->at, n);
        s->at += n;
        return (ssize_t) n;
}

static int src_pread(void *ud, void *buf, size_t len, int64_t off, struct ossb_error **err)
{
        struct src *s = ud;
        if (off < 0 || (uint64_t) off + len > s->len)
                return ossb_error_set(err, -EINVAL, "out of range");
        memcpy(buf, s->p + off, len);
        return 0;
}

static void read_spans(const struct ossb_zran *z)
{
        for (size_t i = 0; i < z->n_cps && i < 8; i++) {
                int64_t in, in_len, out, out_len;
                ossb_zran_span(z, i, &in, &in_len, &out, &out_len);
                if (in_len < 0 || out_len < 0 || in_len > (1 << 20) || out_len > (4 << 20))
                        continue;
                unsigned char *comp = calloc(1, (size_t) in_len + 1), *dec = malloc((size_t) out_len + 1);
                struct ossb_error *e = NULL;
                if (comp && dec) {
                        int r = ossb_zran_span_read(z, i, comp, (size_t) in_len, dec, &e);
                        check_err(r, e);
                }
                free(comp);
                free(dec);
        }
}

static void mode_index(const uint8_t *data, size_t size)
{
        struct ossb_zran *z = NULL;
        struct ossb_error *e = NULL;
        int r = ossb_zran_decode(data, size, &z, &e);
        check_err(r, e);
        if (r < 0)
                return;
        void *enc = NULL;
        size_t len = 0;
        if (ossb_zran_encode(z, &enc, &len, NULL) < 0 || len != size || memcmp(enc, data, size))
                abort();
        free(enc);
        read_spans(z);
        ossb_zran_free(z);
}

static void mode_blob(const uint8_t *data, size_t size)
{
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_sha256_digest(data, size, digest) < 0)
                return;
        struct ossb_zran_build_opts o = { .name = "fuzz", .digest = digest, .size = (int64_t) size, .span = 512 };
        struct src s = { .p = data, .len = size };
        struct ossb_zran *z = NULL;
        struct ossb_error *e = NULL;
        int r = ossb_zran_build(&o, src_read, &s, &z, &e);
        check_err(r, e);
        if (r < 0)
                return;
        void *enc = NULL;
        size_t len = 0;
        struct ossb_zran *z2 = NULL;
        if (ossb_zran_encode(z, &enc, &len, NULL) < 0 || ossb_zran_decode(enc, len, &z2, NULL) < 0)
                abort();
        unsigned char buf[4096];
        s.at = 0;
        e = NULL;
        ssize_t n = ossb_zran_read(z2, src_pread, &s, buf, sizeof(buf), 0, &e);
        if (n < 0)
                abort(); /* the blob it was built from must read back */
        ossb_error_free(e);
        free(enc);
        ossb_zran_free(z2);
        ossb_zran_free(z);
}

static void mode_body(const uint8_t *data, size_t size)
{
        uint8_t *buf = malloc(size + 32);
        char hex[OSSB_DIGEST_STR_LEN + 1];
        if (!buf || ossb_sha256_digest(data, size, hex) < 0) {
                free(buf);
                return;
        }
        memcpy(buf, data, size);
        for (size_t i = 0; i < 32; i++) {
                char b[3] = { hex[7 + 2 * i], hex[8 + 2 * i], 0 };
                buf[size + i] = (uint8_t) strtoul(b, NULL, 16);
        }
        mode_index(buf, size + 32);
        free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        if (data[0] == 0)
                mode_index(data + 1, size - 1);
        else if (data[0] == 1)
                mode_blob(data + 1, size - 1);
        else if (data[0] == 2)
                mode_body(data + 1, size - 1);
        return 0;
}
