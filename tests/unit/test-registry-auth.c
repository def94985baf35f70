/* tests/unit/test-registry-auth.c - registry/auth.c: base64, WWW-Authenticate challenges
 * (well-formed, odd and hostile), token server answers, scopes and Basic headers. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "registry/auth.h"
#include "tests/unit/tap.h"

/* ---- base64 ---- */

static int b64_roundtrip(const char *plain, const char *encoded)
{
        _cleanup_free_ char *e = ossb_base64_encode(plain, strlen(plain));
        _cleanup_free_ char *d = NULL;
        size_t len = 0;
        if (!e || strcmp(e, encoded) != 0) {
                fprintf(stderr, "# encode(%s) = %s, want %s\n", plain, e ? e : "(null)", encoded);
                return 0;
        }
        if (ossb_base64_decode(encoded, strlen(encoded), &d, &len) < 0 || len != strlen(plain) || strcmp(d, plain) != 0) {
                fprintf(stderr, "# decode(%s) failed\n", encoded);
                return 0;
        }
        return 1;
}

static int b64_bad(const char *s)
{
        char *d = NULL;
        int r = ossb_base64_decode(s, strlen(s), &d, NULL);
        free(d);
        if (r != -EINVAL)
                fprintf(stderr, "# decode(%s) = %d, want -EINVAL\n", s, r);
        return r == -EINVAL && !d;
}

static void test_base64(void)
{
        /* RFC 4648 section 10 */
        ASSERT(b64_roundtrip("", ""));
        ASSERT(b64_roundtrip("f", "Zg=="));
        ASSERT(b64_roundtrip("fo", "Zm8="));
        ASSERT(b64_roundtrip("foo", "Zm9v"));
        ASSERT(b64_roundtrip("foob", "Zm9vYg=="));
        ASSERT(b64_roundtrip("fooba", "Zm9vYmE="));
        ASSERT(b64_roundtrip("foobar", "Zm9vYmFy"));
        ASSERT(b64_roundtrip("user:p@ss/word+?", "dXNlcjpwQHNzL3dvcmQrPw=="));
        /* padding is optional */
        _cleanup_free_ char *d = NULL;
        size_t len;
        ASSERT_INTEQ(ossb_base64_decode("Zm8", 3, &d, &len), 0);
        ASSERT_STREQ(d, "fo");
        ASSERT(b64_bad("Z"));
        ASSERT(b64_bad("Zm9v!"));
        ASSERT(b64_bad("Zm 9v"));
        ASSERT(b64_bad("Zg="));
        ASSERT(b64_bad("Zg==="));
        ASSERT(b64_bad("Zh=="));  /* non-zero unused bits */
        ASSERT(b64_bad("Zm9="));
        ASSERT(b64_bad("=Zg="));
        ASSERT(b64_bad("Zm9vYmFy\n"));
        /* binary data */
        const unsigned char bin[] = { 0, 0xff, 0x10, 0x80 };
        _cleanup_free_ char *e = ossb_base64_encode(bin, sizeof(bin));
        ASSERT_STREQ(e, "AP8QgA==");
        _cleanup_free_ char *back = NULL;
        ASSERT_INTEQ(ossb_base64_decode(e, strlen(e), &back, &len), 0);
        ASSERT_INTEQ(len, 4);
        ASSERT(memcmp(back, bin, 4) == 0);
}

/* ---- challenges ---- */

static int parse_ok(const char *header, enum ossb_auth_scheme scheme, const char *realm, const char *service,
                    const char *scope, const char *error)
{
        struct ossb_auth_challenge c = { 0 };
        struct ossb_error *err = NULL;
        int r = ossb_auth_challenge_parse(header, &c, &err);
        int ok = r == 0 && !err && c.scheme == scheme;
#define SAME(a, b) ((!(a) && !(b)) || ((a) && (b) && strcmp((a), (b)) == 0))
        ok = ok && SAME(c.realm, realm) && SAME(c.service, service) && SAME(c.scope, scope) && SAME(c.error, error);
#undef SAME
        if (!ok)
                fprintf(stderr, "# [%s]: r=%d %s scheme=%d realm=%s service=%s scope=%s error=%s\n", header, r,
                        err ? err->msg : "", c.scheme, c.realm ? c.realm : "(null)", c.service ? c.service : "(null)",
                        c.scope ? c.scope : "(null)", c.error ? c.error : "(null)");
        ossb_auth_challenge_clear(&c);
        ossb_error_free(err);
        return ok;
}

static int parse_bad(const char *header, const char *why)
{
        struct ossb_auth_challenge c = { 0 };
        struct ossb_error *err = NULL;
        int r = ossb_auth_challenge_parse(header, &c, &err);
        int ok = r == -EPROTO && err && err->code == -EPROTO && err->exit_code == OSSB_EXIT_REGISTRY && err->msg &&
                 strstr(err->msg, why) && c.scheme == OSSB_AUTH_NONE && !c.realm;
        if (!ok)
                fprintf(stderr, "# [%s]: expected an error with `%s`, got %d %s\n", header ? header : "(null)", why, r,
                        err && err->msg ? err->msg : "(none)");
        ossb_auth_challenge_clear(&c);
        ossb_error_free(err);
        return ok;
}

static void test_challenge_wellformed(void)
{
        ASSERT(parse_ok("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                        "scope=\"repository:library/alpine:pull\"",
                        OSSB_AUTH_BEARER, "https://auth.docker.io/token", "registry.docker.io",
                        "repository:library/alpine:pull", NULL));
        ASSERT(parse_ok("Basic realm=\"Registry Realm\"", OSSB_AUTH_BASIC, "Registry Realm", NULL, NULL, NULL));
        ASSERT(parse_ok("Basic", OSSB_AUTH_BASIC, NULL, NULL, NULL, NULL));
        ASSERT(parse_ok("Basic realm=x", OSSB_AUTH_BASIC, "x", NULL, NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"https://t/\",service=\"s\",scope=\"repository:a:pull,push repository:b:pull\","
                        "error=\"insufficient_scope\"",
                        OSSB_AUTH_BEARER, "https://t/", "s", "repository:a:pull,push repository:b:pull",
                        "insufficient_scope"));
}

static void test_challenge_lenient(void)
{
        /* case-insensitive scheme and parameter names, whitespace around '=' and ',' */
        ASSERT(parse_ok("bEaReR REALM=\"https://t\", Service=reg", OSSB_AUTH_BEARER, "https://t", "reg", NULL, NULL));
        ASSERT(parse_ok("  Bearer \t realm = \"https://t\" ,\tservice =\"s\"  ", OSSB_AUTH_BEARER, "https://t", "s",
                        NULL, NULL));
        /* an unquoted URL, as some registries send */
        ASSERT(parse_ok("Bearer realm=https://auth.example/token?x=1,service=svc", OSSB_AUTH_BEARER,
                        "https://auth.example/token?x=1", "svc", NULL, NULL));
        /* quoted-pair escapes */
        ASSERT(parse_ok("Bearer realm=\"a\\\"b\\\\c\\d\"", OSSB_AUTH_BEARER, "a\"b\\cd", NULL, NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"with, comma and = sign\"", OSSB_AUTH_BEARER, "with, comma and = sign", NULL,
                        NULL, NULL));
        /* the first of duplicate parameters wins; unknown parameters are skipped */
        ASSERT(parse_ok("Bearer realm=\"a\", realm=\"b\", foo=bar, service=\"x\", service=y", OSSB_AUTH_BEARER, "a", "x",
                        NULL, NULL));
        /* empty list elements */
        ASSERT(parse_ok(", ,Bearer realm=\"r\",, ,service=s,", OSSB_AUTH_BEARER, "r", "s", NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"\\\"\"", OSSB_AUTH_BEARER, "\"", NULL, NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"ü\"", OSSB_AUTH_BEARER, "ü", NULL, NULL, NULL));
}

static void test_challenge_several(void)
{
        /* Bearer is preferred over Basic, in any order */
        ASSERT(parse_ok("Basic realm=\"b\", Bearer realm=\"https://t\",service=\"s\"", OSSB_AUTH_BEARER, "https://t", "s",
                        NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"https://t\", Basic realm=\"b\"", OSSB_AUTH_BEARER, "https://t", NULL, NULL,
                        NULL));
        ASSERT(parse_ok("Bearer realm=\"1\", Bearer realm=\"2\"", OSSB_AUTH_BEARER, "1", NULL, NULL, NULL));
        ASSERT(parse_ok("Basic realm=\"1\", Basic realm=\"2\"", OSSB_AUTH_BASIC, "1", NULL, NULL, NULL));
        /* token68 challenges of other schemes are skipped */
        ASSERT(parse_ok("Negotiate abc==, Basic realm=\"b\"", OSSB_AUTH_BASIC, "b", NULL, NULL, NULL));
        ASSERT(parse_ok("Negotiate, NTLM, Basic realm=b", OSSB_AUTH_BASIC, "b", NULL, NULL, NULL));
        ASSERT(parse_ok("Basic YWxhZGRpbjpvcGVuc2VzYW1l", OSSB_AUTH_BASIC, NULL, NULL, NULL, NULL));
        ASSERT(parse_ok("Digest realm=\"d\", qop=\"auth,auth-int\", nonce=\"n\", Bearer realm=\"t\"", OSSB_AUTH_BEARER,
                        "t", NULL, NULL, NULL));
        /* a Bearer without a realm cannot be used: Basic is */
        ASSERT(parse_ok("Bearer service=\"s\", Basic realm=\"b\"", OSSB_AUTH_BASIC, "b", NULL, NULL, NULL));
        ASSERT(parse_ok("Bearer realm=\"\", Basic", OSSB_AUTH_BASIC, NULL, NULL, NULL, NULL));
        ASSERT(parse_ok("Basic, Bearer realm=\"t\"", OSSB_AUTH_BEARER, "t", NULL, NULL, NULL));
}

static void test_challenge_hostile(void)
{
        ASSERT(parse_bad(NULL, "missing"));
        ASSERT(parse_bad("", "empty"));
        ASSERT(parse_bad("   ", "empty"));
        ASSERT(parse_bad(",,, ,", "empty"));
        ASSERT(parse_bad("Negotiate", "unsupported authentication scheme `Negotiate`"));
        ASSERT(parse_bad("Negotiate abc==, NTLM", "`Negotiate`"));
        ASSERT(parse_bad("Bearer service=\"s\"", "without a realm"));
        ASSERT(parse_bad("Bearer", "without a realm"));
        ASSERT(parse_bad("Bearer realm=\"unterminated", "unterminated"));
        ASSERT(parse_bad("Bearer realm=\"x\\", "unterminated"));
        ASSERT(parse_bad("Bearer realm=", "without a realm")); /* "realm=" alone is a token68 */
        ASSERT(parse_bad("Bearer realm=\"x\", service=", "expected a parameter value"));
        ASSERT(parse_bad("Bearer realm=\"x\", service= ,", "expected a parameter value"));
        ASSERT(parse_bad("Bearer realm=\"x\" junk", "expected ','"));
        ASSERT(parse_bad("Bearer realm=\"x\" junk=1", "expected ','"));
        ASSERT(parse_bad("Bearer realm=\"a\tb\x01\"", "control character"));
        ASSERT(parse_bad("Bearer realm=\"a\x7f\"", "control character"));
        ASSERT(parse_bad("=", "expected an authentication scheme"));
        ASSERT(parse_bad("\"Bearer\"", "expected an authentication scheme"));
        ASSERT(parse_bad("Bearer=realm", "expected a space"));
        ASSERT(parse_bad("Bearer\"x\"", "expected a space"));
        ASSERT(parse_bad("Bearer !x", "expected '='"));
        ASSERT(parse_bad("Bearer realm=\"a\", =b", "expected a parameter name"));
        ASSERT(parse_bad("Bearer realm=\"a\", (x)", "expected a parameter name"));
        ASSERT(parse_bad("Bearer a=\"1\" \"2\"", "expected ','"));
        ASSERT(parse_bad("\x01\x02", "expected an authentication scheme"));
        ASSERT(parse_bad("Basic realm=\"a\", \xff", "expected a parameter name"));
        /* an unknown scheme's name is quoted only as a token, and at most 64 characters of it */
        char longname[300];
        memset(longname, 'A', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        ASSERT(parse_bad(longname, "`AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`"));
        /* too long */
        size_t n = OSSB_AUTH_HEADER_MAX + 10;
        _cleanup_free_ char *big = malloc(n + 1);
        ASSERT(big);
        memcpy(big, "Bearer realm=\"", 14);
        memset(big + 14, 'x', n - 15);
        big[n - 1] = '"';
        big[n] = '\0';
        ASSERT(parse_bad(big, "too long"));
        /* many parameters at the limit are fine */
        big[OSSB_AUTH_HEADER_MAX - 1] = '"';
        big[OSSB_AUTH_HEADER_MAX] = '\0';
        struct ossb_auth_challenge c = { 0 };
        ASSERT_INTEQ(ossb_auth_challenge_parse(big, &c, NULL), 0);
        ASSERT_INTEQ(strlen(c.realm), OSSB_AUTH_HEADER_MAX - 15);
        ossb_auth_challenge_clear(&c);
        ossb_auth_challenge_clear(&c);
        ossb_auth_challenge_clear(NULL);
}

/* ---- token answers ---- */

static int token_ok(const char *json, const char *token, int64_t expires, const char *refresh)
{
        char *t = NULL, *rt = (char *) "unset";
        int64_t e = -1;
        struct ossb_error *err = NULL;
        int r = ossb_auth_token_parse(json, strlen(json), &t, &e, &rt, &err);
        int ok = r == 0 && !err && t && strcmp(t, token) == 0 && e == expires &&
                 ((!refresh && !rt) || (refresh && rt && strcmp(rt, refresh) == 0));
        if (!ok)
                fprintf(stderr, "# %s: r=%d %s token=%s expires=%lld\n", json, r, err ? err->msg : "", t ? t : "(null)",
                        (long long) e);
        free(t);
        if (r == 0)
                free(rt);
        ossb_error_free(err);
        return ok;
}

static int token_bad(const char *json, const char *why, const char *secret)
{
        char *t = NULL, *rt = NULL;
        int64_t e = -1;
        struct ossb_error *err = NULL;
        int r = ossb_auth_token_parse(json, strlen(json), &t, &e, &rt, &err);
        int ok = r == -EPROTO && err && err->exit_code == OSSB_EXIT_REGISTRY && strstr(err->msg, why) && !t && !rt &&
                 e == -1 && (!secret || !strstr(err->msg, secret));
        if (!ok)
                fprintf(stderr, "# %s: expected an error with `%s`, got %d %s\n", json, why, r, err ? err->msg : "");
        free(t);
        free(rt);
        ossb_error_free(err);
        return ok;
}

static void test_token(void)
{
        ASSERT(token_ok("{\"token\":\"abc.def.ghi\"}", "abc.def.ghi", 60, NULL));
        ASSERT(token_ok("{\"access_token\":\"A\",\"expires_in\":300}", "A", 300, NULL));
        ASSERT(token_ok("{\"token\":\"T\",\"access_token\":\"A\",\"expires_in\":3600,\"issued_at\":\"2024-01-01T00:00:00Z\","
                        "\"refresh_token\":\"R\"}",
                        "T", 3600, "R"));
        ASSERT(token_ok("{\"token\":\"\",\"access_token\":\"A\"}", "A", 60, NULL));
        ASSERT(token_ok("{\"token\":\"T\",\"expires_in\":0}", "T", 60, NULL));
        ASSERT(token_ok("{\"token\":\"T\",\"expires_in\":-5}", "T", 60, NULL));
        ASSERT(token_ok("{\"token\":\"T\",\"expires_in\":99999999999}", "T", 366LL * 24 * 3600, NULL));
        ASSERT(token_ok("{\"token\":\"T\",\"expires_in\":null,\"refresh_token\":\"\"}", "T", 60, NULL));
        ASSERT(token_ok(" {\"token\":\"T\"}\n", "T", 60, NULL));
        ASSERT(token_bad("{}", "no token", NULL));
        ASSERT(token_bad("{\"token\":\"\"}", "no token", NULL));
        ASSERT(token_bad("{\"token\":5}", "`token` is not a string", NULL));
        ASSERT(token_bad("{\"token\":\"T\",\"expires_in\":\"60\"}", "`expires_in` is not an integer", NULL));
        ASSERT(token_bad("{\"token\":\"T\",\"expires_in\":1.5}", "`expires_in` is not an integer", NULL));
        ASSERT(token_bad("{\"token\":\"sec\\r\\nX-Injected: 1\"}", "not allowed in a header", "sec"));
        ASSERT(token_bad("{\"token\":\"a b\"}", "not allowed in a header", NULL));
        ASSERT(token_bad("{\"token\":\"T\",\"refresh_token\":\"r\\u0000\"}", "not allowed", NULL));
        ASSERT(token_bad("[\"token\"]", "not a JSON object", NULL));
        ASSERT(token_bad("{\"token\":\"secret-value\"", "invalid token server answer", "secret-value"));
        ASSERT(token_bad("", "invalid token server answer", NULL));
        ASSERT(token_bad("{\"token\":\"T\"} trailing", "invalid token server answer", NULL));
        /* the optional outputs may be NULL */
        char *t = NULL;
        ASSERT_INTEQ(ossb_auth_token_parse("{\"token\":\"T\",\"refresh_token\":\"R\"}", 33, &t, NULL, NULL, NULL), 0);
        ASSERT_STREQ(t, "T");
        free(t);
}

static void test_scope_basic(void)
{
        _cleanup_free_ char *s = ossb_auth_scope("library/alpine", "pull");
        ASSERT_STREQ(s, "repository:library/alpine:pull");
        _cleanup_free_ char *s2 = ossb_auth_scope("team/app", "pull,push");
        ASSERT_STREQ(s2, "repository:team/app:pull,push");
        _cleanup_free_ char *h = ossb_auth_basic_header("user", "pass");
        ASSERT_STREQ(h, "Basic dXNlcjpwYXNz");
        _cleanup_free_ char *h2 = ossb_auth_basic_header("u", "p:w:d");
        ASSERT_STREQ(h2, "Basic dTpwOnc6ZA==");
        _cleanup_free_ char *h3 = ossb_auth_basic_header("", "");
        ASSERT_STREQ(h3, "Basic Og==");
}

int main(void)
{
        RUN_TEST(test_base64);
        RUN_TEST(test_challenge_wellformed);
        RUN_TEST(test_challenge_lenient);
        RUN_TEST(test_challenge_several);
        RUN_TEST(test_challenge_hostile);
        RUN_TEST(test_token);
        RUN_TEST(test_scope_basic);
        TAP_END();
}
