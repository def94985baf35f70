/* common/sha256.c - see sha256.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "common/sha256.h"

struct ossb_sha256 {
        gnutls_hash_hd_t hd;
};

int ossb_sha256_new(struct ossb_sha256 **ret)
{
        struct ossb_sha256 *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        if (gnutls_hash_init(&h->hd, GNUTLS_DIG_SHA256) < 0) {
                free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

int ossb_sha256_update(struct ossb_sha256 *h, const void *data, size_t len)
{
        if (len == 0)
                return 0;
        return gnutls_hash(h->hd, data, len) < 0 ? -EIO : 0;
}

static void to_hex(const unsigned char *bin, size_t n, char *out)
{
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hex[bin[i] >> 4];
                out[2 * i + 1] = hex[bin[i] & 0xf];
        }
        out[2 * n] = '\0';
}

void ossb_sha256_final(struct ossb_sha256 *h, char out[OSSB_DIGEST_STR_LEN + 1])
{
        unsigned char bin[32];
        gnutls_hash_output(h->hd, bin); /* also resets the context */
        memcpy(out, "sha256:", 7);
        to_hex(bin, sizeof(bin), out + 7);
}

void ossb_sha256_free(struct ossb_sha256 *h)
{
        if (!h)
                return;
        gnutls_hash_deinit(h->hd, NULL);
        free(h);
}

int ossb_sha256_digest(const void *data, size_t len, char out[OSSB_DIGEST_STR_LEN + 1])
{
        unsigned char bin[32];
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, bin) < 0)
                return -EIO;
        memcpy(out, "sha256:", 7);
        to_hex(bin, sizeof(bin), out + 7);
        return 0;
}

int ossb_digest_is_valid(const char *s)
{
        if (!s || strncmp(s, "sha256:", 7) != 0)
                return 0;
        s += 7;
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return 0;
        return n == OSSB_SHA256_HEX_LEN;
}
