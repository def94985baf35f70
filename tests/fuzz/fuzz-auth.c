/* tests/fuzz/fuzz-auth.c - libFuzzer target for registry/auth.c: the WWW-Authenticate parser
 * (ossb_auth_challenge_parse), the token answer parser and the base64 decoder, on arbitrary bytes.
 *
 * Checks: a failure is -EPROTO (or -ENOMEM) with a message and leaves the output untouched; a
 * success gives Basic or Bearer (a Bearer always with a realm) with values free of control
 * characters; a token is header-safe and its lifetime positive; base64 that decodes re-encodes
 * to the same text (with padding).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "registry/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *s)
{
        for (; s && *s; s++)
                if (((unsigned char) *s < 0x20 && *s != '\t') || *s == 0x7f)
                        abort();
}

static void fuzz_challenge(const char *text)
{
        struct ossb_auth_challenge c = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_auth_challenge_parse(text, &c, &e);
        if (r < 0) {
                if ((r != -EPROTO && r != -ENOMEM) || !e || e->code != r || c.scheme != OSSB_AUTH_NONE || c.realm)
                        abort();
                return;
        }
        if (e || (c.scheme != OSSB_AUTH_BASIC && c.scheme != OSSB_AUTH_BEARER))
                abort();
        if (c.scheme == OSSB_AUTH_BEARER && (!c.realm || !c.realm[0]))
                abort();
        check_value(c.realm);
        check_value(c.service);
        check_value(c.scope);
        check_value(c.error);
        ossb_auth_challenge_clear(&c);
}

static void fuzz_token(const uint8_t *data, size_t size)
{
        char *token = NULL, *refresh = NULL;
        int64_t expires = 0;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_auth_token_parse((const char *) data, size, &token, &expires, &refresh, &e);
        if (r < 0) {
                if ((r != -EPROTO && r != -ENOMEM) || !e || token || refresh)
                        abort();
                return;
        }
        if (!token || !token[0] || expires <= 0)
                abort();
        for (const char *p = token; *p; p++)
                if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
                        abort();
        free(token);
        free(refresh);
}

static void fuzz_base64(const char *text, size_t len)
{
        char *plain = NULL;
        size_t n = 0;
        if (ossb_base64_decode(text, len, &plain, &n) < 0)
                return;
        _cleanup_free_ char *back = ossb_base64_encode(plain, n);
        free(plain);
        if (!back)
                return;
        size_t bl = strlen(back);
        if (bl < len || memcmp(back, text, len) != 0)
                abort();
        for (size_t i = len; i < bl; i++)
                if (back[i] != '=')
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        fuzz_challenge(text);
        fuzz_token(data, size);
        fuzz_base64(text, strlen(text));
        return 0;
}
