/* registry/auth.c - see auth.h.
 *
 * Owns: the WWW-Authenticate parser (RFC 7235 section 2.1 and 4.1: challenges made of a scheme
 * and either a token68 or a list of auth-params whose values are tokens or quoted-strings), the
 * token server answer parser, scope strings, Basic credentials and the base64 codec they use.
 * Every input here comes from the network: lengths are bounded, nothing is trusted, and no
 * message quotes a value (a scheme name is quoted only after it has been checked to be a token).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "oci/image.h"
#include "registry/auth.h"

#define TOKEN_ANSWER_MAX (1024 * 1024)
#define TOKEN_DEFAULT_EXPIRY 60
#define TOKEN_MAX_EXPIRY (366LL * 24 * 3600)
#define SCHEME_NAME_MAX 64

/* ---- base64 ---- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *ossb_base64_encode(const void *data, size_t len)
{
        const unsigned char *in = data;
        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        char *out = malloc((len + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t) in[i + 1] << 8;
                if (i + 2 < len)
                        v |= in[i + 2];
                out[o++] = b64_alphabet[(v >> 18) & 63];
                out[o++] = b64_alphabet[(v >> 12) & 63];
                out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
        }
        out[o] = '\0';
        return out;
}

static int b64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int ossb_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len)
{
        size_t n = len;
        /* at most two '=' of padding, and only to complete a group of four */
        if (n > 0 && s[n - 1] == '=') {
                n--;
                if (n > 0 && s[n - 1] == '=')
                        n--;
                if (len % 4 != 0)
                        return -EINVAL;
        }
        if (n % 4 == 1)
                return -EINVAL;
        char *out = malloc(n / 4 * 3 + 3);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        uint32_t acc = 0;
        for (size_t i = 0; i < n; i++) {
                int v = b64_value(s[i]);
                if (v < 0) {
                        explicit_bzero(out, n / 4 * 3 + 3);
                        free(out);
                        return -EINVAL;
                }
                acc = (acc << 6) | (uint32_t) v;
                if (i % 4 == 3) {
                        out[o++] = (char) (acc >> 16);
                        out[o++] = (char) (acc >> 8);
                        out[o++] = (char) acc;
                        acc = 0;
                }
        }
        /* a trailing partial group: 2 chars -> 1 byte, 3 chars -> 2 bytes; the unused low bits
         * must be zero (canonical encoding) */
        bool bad = false;
        if (n % 4 == 2) {
                bad = (acc & 0xf) != 0;
                out[o++] = (char) (acc >> 4);
        } else if (n % 4 == 3) {
                bad = (acc & 0x3) != 0;
                out[o++] = (char) (acc >> 10);
                out[o++] = (char) (acc >> 2);
        }
        if (bad) {
                explicit_bzero(out, n / 4 * 3 + 3);
                free(out);
                return -EINVAL;
        }
        out[o] = '\0';
        *ret = out;
        if (ret_len)
                *ret_len = o;
        return 0;
}

/* ---- WWW-Authenticate ---- */

struct cursor {
        const char *s;
        size_t i, n;
};

static bool at_end(const struct cursor *c)
{
        return c->i >= c->n;
}

static char cur(const struct cursor *c)
{
        return at_end(c) ? '\0' : c->s[c->i];
}

/* tchar (RFC 7230 section 3.2.6) */
static bool is_tchar(char ch)
{
        unsigned char u = (unsigned char) ch;
        if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9'))
                return true;
        return u != 0 && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

static bool is_token68_char(char ch)
{
        unsigned char u = (unsigned char) ch;
        if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9'))
                return true;
        return u != 0 && strchr("-._~+/", u) != NULL;
}

static bool is_ows(char ch)
{
        return ch == ' ' || ch == '\t';
}

static void skip_ows(struct cursor *c)
{
        while (!at_end(c) && is_ows(cur(c)))
                c->i++;
}

static void skip_ows_commas(struct cursor *c)
{
        while (!at_end(c) && (is_ows(cur(c)) || cur(c) == ','))
                c->i++;
}

static int malformed(struct ossb_error **err, const struct cursor *c, const char *what)
{
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "malformed WWW-Authenticate header at byte %zu: %s",
                               c->i, what);
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; the cursor is on the opening quote */
static int parse_quoted(struct cursor *c, struct ossb_strbuf *out, struct ossb_error **err)
{
        c->i++;
        for (;;) {
                if (at_end(c))
                        return malformed(err, c, "unterminated quoted string");
                unsigned char u = (unsigned char) cur(c);
                if (u == '"') {
                        c->i++;
                        return 0;
                }
                if (u == '\\') {
                        c->i++;
                        if (at_end(c))
                                return malformed(err, c, "unterminated quoted string");
                        u = (unsigned char) cur(c);
                }
                if ((u < 0x20 && u != '\t') || u == 0x7f)
                        return malformed(err, c, "control character in a quoted string");
                if (ossb_strbuf_append_c(out, (char) u) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                c->i++;
        }
}

/* A parameter value: a quoted-string, or (leniently: some servers send unquoted URLs) a run of
 * visible characters other than ',' and '"'. */
static int parse_value(struct cursor *c, char **ret, struct ossb_error **err)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int r;
        if (cur(c) == '"') {
                r = parse_quoted(c, &sb, err);
                if (r < 0)
                        return r;
        } else {
                size_t start = c->i;
                while (!at_end(c)) {
                        unsigned char u = (unsigned char) cur(c);
                        if (u <= 0x20 || u == 0x7f || u == ',' || u == '"')
                                break;
                        c->i++;
                }
                if (c->i == start)
                        return malformed(err, c, "expected a parameter value");
                if (ossb_strbuf_append_n(&sb, c->s + start, c->i - start) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        char *v = ossb_strbuf_steal(&sb);
        if (!v)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret = v;
        return 0;
}

static bool name_is(const struct cursor *c, size_t start, size_t end, const char *name)
{
        return end - start == strlen(name) && strncasecmp(c->s + start, name, end - start) == 0;
}

/* Keep the value of a parameter ossb uses; the first of duplicates wins. */
static void store_param(struct ossb_auth_challenge *ch, const struct cursor *c, size_t ns, size_t ne, char **value)
{
        char **slot = NULL;
        if (name_is(c, ns, ne, "realm"))
                slot = &ch->realm;
        else if (name_is(c, ns, ne, "service"))
                slot = &ch->service;
        else if (name_is(c, ns, ne, "scope"))
                slot = &ch->scope;
        else if (name_is(c, ns, ne, "error"))
                slot = &ch->error;
        if (slot && !*slot)
                *slot = TAKE_PTR(*value);
}

/* After the scheme and its space: a token68 alone?  It is one when the run of token68 characters
 * and '=' padding is followed by the end or a comma. */
static bool try_token68(struct cursor *c)
{
        size_t j = c->i;
        while (j < c->n && is_token68_char(c->s[j]))
                j++;
        if (j == c->i)
                return false;
        while (j < c->n && c->s[j] == '=')
                j++;
        while (j < c->n && is_ows(c->s[j]))
                j++;
        if (j < c->n && c->s[j] != ',')
                return false;
        c->i = j;
        return true;
}

/* The auth-params of one challenge; stops at the end or before the scheme of the next one. */
static int parse_params(struct cursor *c, struct ossb_auth_challenge *ch, struct ossb_error **err)
{
        if (at_end(c) || cur(c) == ',')
                return 0;
        if (!is_ows(cur(c)))
                return malformed(err, c, "expected a space after the authentication scheme");
        skip_ows(c);
        if (at_end(c) || try_token68(c))
                return 0;
        for (bool first = true;; first = false) {
                if (!first) {
                        skip_ows(c);
                        if (at_end(c))
                                return 0;
                        if (cur(c) != ',')
                                return malformed(err, c, "expected ',' after a parameter");
                }
                skip_ows_commas(c);
                if (at_end(c))
                        return 0;
                size_t ns = c->i;
                while (!at_end(c) && is_tchar(cur(c)))
                        c->i++;
                size_t ne = c->i;
                if (ne == ns)
                        return malformed(err, c, "expected a parameter name");
                skip_ows(c);
                if (cur(c) != '=') {
                        if (first)
                                return malformed(err, c, "expected '=' after a parameter name");
                        c->i = ns; /* the next challenge's scheme */
                        return 0;
                }
                c->i++;
                skip_ows(c);
                _cleanup_free_ char *value = NULL;
                int r = parse_value(c, &value, err);
                if (r < 0)
                        return r;
                store_param(ch, c, ns, ne, &value);
        }
}

static enum ossb_auth_scheme scheme_of(const char *s, size_t n)
{
        if (n == 5 && strncasecmp(s, "basic", 5) == 0)
                return OSSB_AUTH_BASIC;
        if (n == 6 && strncasecmp(s, "bearer", 6) == 0)
                return OSSB_AUTH_BEARER;
        return OSSB_AUTH_NONE;
}

void ossb_auth_challenge_clear(struct ossb_auth_challenge *c)
{
        if (!c)
                return;
        free(c->realm);
        free(c->service);
        free(c->scope);
        free(c->error);
        *c = (struct ossb_auth_challenge) { 0 };
}

struct choice {
        struct ossb_auth_challenge best;
        bool bearer_without_realm;
        char unknown[SCHEME_NAME_MAX + 1]; /* the first unsupported scheme, a token */
};

/* Bearer (with a realm) beats Basic; the first of each kind wins. */
static void consider(struct choice *ch, struct ossb_auth_challenge *c, const char *name, size_t name_len)
{
        if (c->scheme == OSSB_AUTH_BEARER && (!c->realm || !c->realm[0])) {
                ch->bearer_without_realm = true;
        } else if (c->scheme == OSSB_AUTH_BEARER && ch->best.scheme != OSSB_AUTH_BEARER) {
                ossb_auth_challenge_clear(&ch->best);
                ch->best = *c;
                *c = (struct ossb_auth_challenge) { 0 };
        } else if (c->scheme == OSSB_AUTH_BASIC && ch->best.scheme == OSSB_AUTH_NONE) {
                ch->best = *c;
                *c = (struct ossb_auth_challenge) { 0 };
        } else if (c->scheme == OSSB_AUTH_NONE && !ch->unknown[0]) {
                size_t n = name_len < SCHEME_NAME_MAX ? name_len : SCHEME_NAME_MAX;
                memcpy(ch->unknown, name, n);
                ch->unknown[n] = '\0';
        }
        ossb_auth_challenge_clear(c);
}

static int choose(struct choice *ch, struct ossb_auth_challenge *ret, struct ossb_error **err)
{
        if (ch->best.scheme != OSSB_AUTH_NONE) {
                *ret = ch->best;
                ch->best = (struct ossb_auth_challenge) { 0 };
                return 0;
        }
        if (ch->bearer_without_realm)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "WWW-Authenticate: Bearer challenge without a realm");
        if (ch->unknown[0])
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "WWW-Authenticate: unsupported authentication scheme `%s`", ch->unknown);
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "empty WWW-Authenticate header");
}

int ossb_auth_challenge_parse(const char *value, struct ossb_auth_challenge *ret, struct ossb_error **err)
{
        if (!value)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "missing WWW-Authenticate header");
        struct cursor c = { .s = value, .i = 0, .n = strnlen(value, OSSB_AUTH_HEADER_MAX + 1) };
        if (c.n > OSSB_AUTH_HEADER_MAX)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "WWW-Authenticate header too long (more than %d bytes)", OSSB_AUTH_HEADER_MAX);
        struct choice ch = { 0 };
        for (;;) {
                skip_ows_commas(&c);
                if (at_end(&c))
                        break;
                size_t start = c.i;
                while (!at_end(&c) && is_tchar(cur(&c)))
                        c.i++;
                if (c.i == start) {
                        ossb_auth_challenge_clear(&ch.best);
                        return malformed(err, &c, "expected an authentication scheme");
                }
                size_t name_len = c.i - start;
                struct ossb_auth_challenge one = { .scheme = scheme_of(value + start, name_len) };
                int r = parse_params(&c, &one, err);
                if (r < 0) {
                        ossb_auth_challenge_clear(&one);
                        ossb_auth_challenge_clear(&ch.best);
                        return r;
                }
                consider(&ch, &one, value + start, name_len);
        }
        return choose(&ch, ret, err);
}

/* ---- token server answers ---- */

/* A token goes into an Authorization header: visible ASCII only (no CR/LF injection). */
static bool header_safe(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e)
                        return false;
        return true;
}

/* The string member `key` of o: *ret NULL when absent, null or empty; -EPROTO when it is not a
 * string or not header-safe.  *ret is borrowed from o. */
static int token_member(json_object *o, const char *key, const char **ret, struct ossb_error **err)
{
        json_object *v;
        *ret = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "token server answer: `%s` is not a string", key);
        size_t n = (size_t) json_object_get_string_len(v);
        if (n == 0)
                return 0;
        if (!header_safe(json_object_get_string(v), n))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                       "token server answer: `%s` holds characters not allowed in a header", key);
        *ret = json_object_get_string(v);
        return 0;
}

static int token_expiry(json_object *o, int64_t *ret, struct ossb_error **err)
{
        json_object *v;
        int64_t e = TOKEN_DEFAULT_EXPIRY;
        if (json_object_object_get_ex(o, "expires_in", &v) && v) {
                if (!json_object_is_type(v, json_type_int))
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO,
                                               "token server answer: `expires_in` is not an integer");
                e = json_object_get_int64(v);
                if (e <= 0)
                        e = TOKEN_DEFAULT_EXPIRY;
                if (e > TOKEN_MAX_EXPIRY)
                        e = TOKEN_MAX_EXPIRY;
        }
        *ret = e;
        return 0;
}

static void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}

int ossb_auth_token_parse(const char *json, size_t len, char **ret_token, int64_t *ret_expires_in,
                          char **ret_refresh, struct ossb_error **err)
{
        __attribute__((cleanup(json_putp))) json_object *o = NULL;
        const char *token, *access, *refresh;
        int64_t expires = TOKEN_DEFAULT_EXPIRY;
        int r = ossb_json_parse(json, len, TOKEN_ANSWER_MAX, &o, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                return ossb_error_wrap(err, "invalid token server answer");
        }
        if (!json_object_is_type(o, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "token server answer is not a JSON object");
        if ((r = token_member(o, "token", &token, err)) < 0 || (r = token_member(o, "access_token", &access, err)) < 0 ||
            (r = token_member(o, "refresh_token", &refresh, err)) < 0 || (r = token_expiry(o, &expires, err)) < 0)
                return r;
        if (!token)
                token = access;
        if (!token)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "token server answer holds no token");
        _cleanup_free_ char *t = strdup(token), *rt = refresh ? strdup(refresh) : NULL;
        if (!t || (refresh && !rt))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret_token = TAKE_PTR(t);
        if (ret_expires_in)
                *ret_expires_in = expires;
        if (ret_refresh)
                *ret_refresh = TAKE_PTR(rt);
        return 0;
}

/* ---- scope strings and Basic credentials ---- */

char *ossb_auth_scope(const char *path, const char *actions)
{
        char *s = NULL;
        if (asprintf(&s, "repository:%s:%s", path, actions) < 0)
                return NULL;
        return s;
}

char *ossb_auth_basic_header(const char *user, const char *secret)
{
        size_t ul = strlen(user), sl = strlen(secret);
        if (ul > SIZE_MAX / 2 || sl > SIZE_MAX / 2)
                return NULL;
        char *plain = malloc(ul + sl + 2);
        if (!plain)
                return NULL;
        memcpy(plain, user, ul);
        plain[ul] = ':';
        memcpy(plain + ul + 1, secret, sl + 1);
        char *b64 = ossb_base64_encode(plain, ul + sl + 1);
        explicit_bzero(plain, ul + sl + 2);
        free(plain);
        if (!b64)
                return NULL;
        size_t bl = strlen(b64);
        char *h = malloc(bl + sizeof("Basic "));
        if (h) {
                memcpy(h, "Basic ", 6);
                memcpy(h + 6, b64, bl + 1);
        }
        explicit_bzero(b64, bl);
        free(b64);
        return h;
}
