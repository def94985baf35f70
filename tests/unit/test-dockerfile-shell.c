/* tests/unit/test-dockerfile-shell.c - engine/dockerfile shell expansion against BuildKit's
 * lex_test.go cases, its quirks, the options, error paths and the limits on hostile input. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/shell.h"
#include "tests/unit/tap.h"

struct wcase {
        const char *input;
        const char *env[5];
        const char *want; /* NULL: an error */
};

/* Expand with the given env; returns NULL on error (message in *msg when wanted). */
static char *expand(const char *in, char **env, unsigned flags, char **msg)
{
        char *out = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        if (ossb_shell_expand_full(in, '\\', flags, ossb_shell_lookup_strv, env, &out, NULL, &e) < 0) {
                if (msg)
                        *msg = strdup(e->msg);
                return NULL;
        }
        return out;
}

static int run_cases(const struct wcase *c, size_t n, unsigned flags)
{
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *msg = NULL;
                _cleanup_free_ char *got = expand(c[i].input, (char **) c[i].env, flags, &msg);
                bool ok = c[i].want ? got && streq(got, c[i].want) : !got;
                if (!ok) {
                        fprintf(stderr, "# %s: got %s (%s), want %s\n", c[i].input, got ? got : "(error)",
                                msg ? msg : "", c[i].want ? c[i].want : "(error)");
                        bad++;
                }
        }
        return bad;
}

/* lex_test.go TestProcessWithMatches */
static void test_buildkit_process_with_matches(void)
{
        static const struct wcase c[] = {
                { "x", { "DUMMY=dummy" }, "x" },
                { "x ${UNUSED}", { "DUMMY=dummy" }, "x " },
                { "x ${FOO}", { "FOO=y" }, "x y" },
                { "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", { "FOO=xxx", "BAR=" }, "xxx  ccc" },
                { "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", { "FOO=xxx", "BAR=" }, "xxx bbb ccc" },
                { "${FOO:-}", { "FOO=xxx", "BAR=" }, "xxx" },
                { "${FOO:-}", { 0 }, "" },
                { "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", { "FOO=xxx", "BAR=" }, "aaa bbb " },
                { "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", { "FOO=xxx", "BAR=" }, "aaa  " },
                { "${FOO?aaa}", { "FOO=xxx", "BAR=" }, "xxx" },
                { "${BAR?bbb}", { "FOO=xxx", "BAR=" }, "" },
                { "${BAZ?ccc}", { "FOO=xxx", "BAR=" }, NULL },
                { "${FOO:?aaa}", { "FOO=xxx", "BAR=" }, "xxx" },
                { "${BAR:?bbb}", { "FOO=xxx", "BAR=" }, NULL },
                { "${BAZ:?ccc}", { "FOO=xxx", "BAR=" }, NULL },
                { "${BAZ:?}", { "FOO=xxx", "BAR=" }, NULL },
                { "${FOO=aaa}", { "FOO=xxx", "BAR=" }, NULL },
                { "${FOO=:aaa}", { "FOO=xxx", "BAR=" }, NULL },
                { "${FOO=}", { 0 }, NULL },
                { "${FOO#()[]{\\}^$.\\*\\?|\\\\}", { "FOO=()[]{}^$.*?|\\x" }, "x" },
                { "${FOO%%\\**}", { "FOO=xx**" }, "xx" },
                { "${FOO#*x*y}", { "FOO=xxyy" }, "y" },
                { "${FOO#*}", { "FOO=xxyy" }, "xxyy" },
                { "${FOO#$BAR}", { "FOO=xxyy", "BAR=x" }, "xyy" },
                { "${FOO#$BAR}", { "FOO=xxyy", "BAR=" }, "xxyy" },
                { "${FOO#}", { "FOO=xxyy" }, "xxyy" },
                { "${FOO##*x}", { "FOO=xxyy" }, "yy" },
                { "${FOO##}", { "FOO=xxyy" }, "xxyy" },
                { "${FOO#?\\?}", { "FOO=???y" }, "?y" },
                { "${ABC:-.}${FOO%x}${ABC:-.}", { "FOO=xxyy" }, ".xxyy." },
                { "${FOO%%\\**\\*}", { "FOO=a***yy*" }, "a" },
                { "${FOO%}", { "FOO=xxyy" }, "xxyy" },
                { "${FOO%%$BAR}", { "FOO=xxyy", "BAR=" }, "xxyy" },
                { "${FOO:#}", { 0 }, NULL },
                { "${FOO:##}", { 0 }, NULL },
                { "${FOO:%}", { 0 }, NULL },
                { "${FOO:%%}", { 0 }, NULL },
                { "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", { "FOO=/foo*/*/*.txt", "NEEDLE=\\*/" }, "/foo.*/*.txt - /foo..*.txt" },
                { "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", { "FOO=/tmp/tmp/bar.txt", "NEEDLE=/tmp" }, "/tmp/bar.txt - /bar.txt" },
                { "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                  { "FOO=/a/foo/b/c.txt", "NEEDLE=/?/", "REPLACEMENT=/" }, "/foo/b/c.txt - /foo/c.txt" },
                { "${FOO/$NEEDLE/$REPLACEMENT}", { "FOO=http://google.de", "NEEDLE=http://", "REPLACEMENT=https://" },
                  "https://google.de" },
                { "${FOO//\\//\\/}", { "FOO=/tmp/foo.txt" }, "\\/tmp\\/foo.txt" },
                { "${FOO/$BAR/ww}", { "FOO=xxyy", "BAR=" }, "wwxxyy" },
                { "${FOO//ww}", { "FOO=xxyy" }, NULL },
                { "${FOO//}", { "FOO=xxyy" }, NULL },
                { "${FOO///}", { "FOO=xxyy" }, "xxyy" },
                { "${FOO///}", { 0 }, "" },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c), 0), 0);
}

/* TestShellParserMandatoryEnvVars, TestProcessWithMatchesPlatform, and the pattern helpers'
 * own tests (convertShellPatternToRegex, reversePattern) seen through ${V#p} and ${V%p}. */
static void test_buildkit_misc(void)
{
        static const struct wcase c[] = {
                { "${VAR:?message here$ARG}", { "VAR=plain", "ARG=x" }, "plain" },
                { "${VAR:?message here$ARG}", { "VAR=", "ARG=x" }, NULL },
                { "${VAR:?message here$ARG}", { "ARG=x" }, NULL },
                { "${VAR?message here$ARG}", { "VAR=plain", "ARG=x" }, "plain" },
                { "${VAR?message here$ARG}", { "VAR=", "ARG=x" }, "" },
                { "${VAR?message here$ARG}", { "ARG=x" }, NULL },
                { "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
                  { "VERSION=v1.2.3", "TARGETOS=linux", "TARGETARCH=arm", "TARGETVARIANT=v7" },
                  "something-v1.2.3.linux-arm-v7.tar.gz" },
                { "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
                  { "VERSION=v1.2.3", "TARGETOS=linux", "TARGETARCH=arm64", "TARGETVARIANT=" },
                  "something-v1.2.3.linux-arm64.tar.gz" },
                { "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
                  { "VERSION=v1.2.3", "TARGETOS=linux", "TARGETARCH=arm64" }, "something-v1.2.3.linux-arm64.tar.gz" },
                { "${V#$P}", { "V=x", "P=\\" }, NULL },
                { "${V#$P}", { "V=x", "P=\\x" }, NULL },
                { "${V#$P}", { "V=\\x", "P=\\\\\\" }, NULL },
                { "${V%a\\*c}", { "V=za*c" }, "z" },
                { "${V%%$P}", { "V=b\\a\\\\x", "P=\\\\\\ab" }, NULL },
                { "${V%%$P}", { "V=xa\\b", "P=\\\\b" }, "xa" },
                { "${V%\\b}", { "V=ab" }, NULL },
                { "${V%🚀?}", { "V=x🚀👽" }, "x" },
                { "${V#?}", { "V=👽🚀🖖" }, "🚀🖖" },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c), 0), 0);
        _cleanup_free_ char *msg = NULL;
        char *env[] = { "ARG=x", NULL };
        ASSERT(!expand("${VAR:?message here$ARG}", env, 0, &msg));
        ASSERT(strstr(msg, "VAR: message herex"));
}

/* lex_test.go TestGetEnv through ossb_shell_lookup_strv */
static void test_lookup_strv(void)
{
        char *e0[] = { NULL }, *e1[] = { "foo", NULL }, *e2[] = { "foo=", NULL }, *e3[] = { "foo=bar", NULL };
        char *e4[] = { "foo=bar", "car=hat", "car=bike", "a=b=c", "=empty", NULL };
        ASSERT(ossb_shell_lookup_strv(e0, "foo") == NULL);
        ASSERT(ossb_shell_lookup_strv(NULL, "foo") == NULL);
        ASSERT_STREQ(ossb_shell_lookup_strv(e1, "foo"), "");
        ASSERT_STREQ(ossb_shell_lookup_strv(e2, "foo"), "");
        ASSERT_STREQ(ossb_shell_lookup_strv(e3, "foo"), "bar");
        ASSERT(ossb_shell_lookup_strv(e3, "fo") == NULL);
        ASSERT_STREQ(ossb_shell_lookup_strv(e4, "car"), "bike");
        ASSERT_STREQ(ossb_shell_lookup_strv(e4, "a"), "b=c");
        ASSERT_STREQ(ossb_shell_lookup_strv(e4, ""), "empty");
}

static void test_replace_and_trim(void)
{
        static const struct wcase c[] = {
                { "${V//b/'<$0>'}", { "V=abcb" }, "a<b>c<b>" },
                { "${V/b/'<$0>'}", { "V=abcb" }, "a<$0>cb" },
                { "${V//b/'$$|${0}|$1|$00|$0x|${x|$'}", { "V=b" }, "$|b||||${x|$" },
                { "${V//$E/-}", { "V=xy", "E=" }, "-x-y-" },
                { "${V//?/.}", { "V=a\xffz" }, "..." },
                { "${V//x*/-}", { "V=axbxc" }, "a-" },
                { "${V##*}", { "V=a\nb" }, "\nb" },
                { "${V%%*}", { "V=a\nb" }, "a\n" },
                { "${V#*}", { "V=ab" }, "ab" },
                { "${V%*}", { "V=ab" }, "ab" },
                { "${V%?}", { "V=a\xff" }, "a" },
                { "${V%x}", { "V=\xff" }, "\xEF\xBF\xBD" },
                { "${V#\xEF\xBB\xBF" "a}", { "V=ab" }, "b" },
                { "${V/*/x}${V/?/}", { "V=" }, "x" },
                { "${V//[}", { "V=[[" }, NULL },
                { "${V//[/(}", { "V=a[b" }, "a(b" },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c), 0), 0);
}

static void test_quotes_escapes(void)
{
        static const struct wcase c[] = {
                { "\"a\\\"b\\$c\\\\d\\e\"", { 0 }, "a\"b$c\\d\\e" },
                { "'a\\'", { 0 }, "a\\" },
                { "a\\", { 0 }, "a" },
                { "\"a\\", { 0 }, NULL },
                { "$", { 0 }, "$" },
                { "a$ b$-c", { 0 }, "a$ bc" },
                { "$안녕x", { "안녕x=k" }, "k" },
                { "$٣x", { "٣x=no", "٣=d" }, "dx" },
                { "\xEF\xBB\xBF" "a\xEF\xBB\xBF", { 0 }, "a\xEF\xBB\xBF" },
                { "a\xff\xc0", { 0 }, "a\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "\xF4\x8F\xBF\xBF\xF4\x90\x80", { 0 }, "\xF4\x8F\xBF\xBF\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "\xF0\x8F\xE0\x9F\xE1\x80", { 0 }, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "${V}\xed\xa0\x80", { "V=\xff" }, "\xff\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
                { "${#}${@:-x}${##}", { "#=n" }, "nxn" },
                { "${1abc}", { 0 }, NULL },
                { "${.}", { 0 }, NULL },
                { "${", { 0 }, NULL },
                { "${a", { 0 }, NULL },
                { "${a:", { 0 }, NULL },
                { "${a:}", { 0 }, NULL },
                { "${a:}x}", { 0 }, NULL },
                { "${a/x", { 0 }, NULL },
                { "${a/x/", { 0 }, NULL },
                { "${a:-'x}", { 0 }, NULL },
                { "${+x}", { 0 }, "" },
                { "${-x}", { 0 }, NULL },
                { "<<-  EOF <x", { 0 }, "<<-  EOF <x" },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c), 0), 0);

        /* backtick as the escape character; no escape character at all */
        _cleanup_free_ char *a = NULL, *b = NULL;
        ASSERT(ossb_shell_expand("a`$b\\c\"`\"\"", '`', NULL, NULL, &a, NULL) == 0);
        ASSERT_STREQ(a, "a$b\\c\"");
        ASSERT(ossb_shell_expand("a\\$b", 0, NULL, NULL, &b, NULL) == 0);
        ASSERT_STREQ(b, "a\\");
}

static void test_messages(void)
{
        static const struct {
                const char *in, *msg;
        } c[] = {
                { "'x", "unexpected end of statement while looking for matching single-quote" },
                { "\"x", "unexpected end of statement while looking for matching double-quote" },
                { "${x", "unsupported modifier (\xEF\xBF\xBD) in substitution" }, /* as BuildKit says it */
                { "${", "syntax error: missing '}'" },
                { "${x:-y", "syntax error: missing '}'" },
                { "${}", "syntax error: bad substitution" },
                { "${x:=y}", "unsupported modifier (:=) in substitution" },
                { "${x:#y}", "unsupported modifier (:#) in substitution" },
                { "${x^}", "unsupported modifier (^) in substitution" },
                { "${x/y", "syntax error: missing '/' in ${}" },
                { "${x?}", "x: is not allowed to be unset" },
                { "${x:-${y:-'a}b}", "syntax error: missing '}'" },
                { "${x:-${}}", "syntax error: bad substitution" },
                { "${x#\\a}", "invalid escape '\\a'" },
        };
        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                _cleanup_free_ char *out = NULL;
                char *env[] = { "E=", NULL };
                ASSERT_INTEQ(ossb_shell_expand(c[i].in, '\\', ossb_shell_lookup_strv, env, &out, &e), -EINVAL);
                if (!strstr(e->msg, c[i].msg))
                        fprintf(stderr, "# %s: %s\n", c[i].in, e->msg);
                ASSERT(strstr(e->msg, c[i].msg));
                ASSERT(strncmp(e->msg, "failed to process \"", 19) == 0);
                ASSERT_INTEQ(e->exit_code, OSSB_EXIT_USAGE);
                ASSERT(out == NULL);
        }
        _cleanup_error_ struct ossb_error *e = NULL;
        char *out = NULL;
        ASSERT_INTEQ(ossb_shell_expand("x", (char) 0xC3, NULL, NULL, &out, &e), -EINVAL);
        ASSERT(out == NULL);
        ASSERT_INTEQ(ossb_shell_expand(NULL, '\\', NULL, NULL, &out, NULL), -EINVAL);
        /* long words are shortened in the message */
        char big[600];
        memset(big, 'a', sizeof(big));
        big[0] = '\'';
        big[sizeof(big) - 1] = '\0';
        _cleanup_error_ struct ossb_error *e2 = NULL;
        ASSERT(ossb_shell_expand(big, '\\', NULL, NULL, &out, &e2) < 0);
        ASSERT(strstr(e2->msg, "\"...:"));
        _cleanup_error_ struct ossb_error *e3 = NULL;
        ASSERT(ossb_shell_expand("\"\t\n\x01\\\"", '\\', NULL, NULL, &out, &e3) < 0);
        ASSERT(strstr(e3->msg, "\"\\\"\\t\\n\\x01\\\\\\\"\""));
}

static int words_are(const char *in, char **env, const char *const *want)
{
        _cleanup_strv_free_ char **v = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        if (ossb_shell_expand_words(in, '\\', ossb_shell_lookup_strv, env, &v, &e) < 0)
                return want == NULL;
        for (size_t i = 0;; i++) {
                if (!want || !v[i] != !want[i] || (v[i] && !streq(v[i], want[i]))) {
                        fprintf(stderr, "# words(%s)[%zu] = %s\n", in, i, v[i] ? v[i] : "(end)");
                        return 0;
                }
                if (!v[i])
                        return 1;
        }
}

static void test_words(void)
{
        char *env[] = { "S=a  b", "L=  x ", "Q=\"q w\"", NULL };
        const char *w1[] = { "hello", "there", NULL }, *w2[] = { "helloa", "b", NULL };
        const char *w3[] = { "a  b", NULL }, *w4[] = { "x", NULL }, *w5[] = { NULL };
        const char *w6[] = { "\"q", "w\"", NULL }, *w7[] = { "a", NULL }, *w8[] = { "cat", "<<  EOF", NULL };
        const char *w9[] = { "a b", "c", NULL }, *w10[] = { "x", "y", NULL }, *w11[] = { "a\xEF\xBF\xBD", NULL };
        ASSERT(words_are("  hello   there  ", env, w1));
        ASSERT(words_are("hello$S", env, w2));
        ASSERT(words_are("\"$S\"", env, w3));
        ASSERT(words_are("$L", env, w4));
        ASSERT(words_are("\"\" ''  ", env, w5));
        ASSERT(words_are("", env, w5));
        ASSERT(words_are("$Q", env, w6));
        /* BuildKit shares one word buffer with the ${...} operand: a word in progress before a
         * ${V:-...} is lost (its result is kept). */
        ASSERT(words_are("hello${X:-a}", env, w7));
        ASSERT(words_are("cat <<  EOF", env, w8));
        ASSERT(words_are("a\\ b c", env, w9));
        ASSERT(words_are("x\xC2\xA0y", env, w10));
        ASSERT(words_are("$V", (char *[]){ "V=a\xff", NULL }, w11));
        ASSERT(words_are("'x", env, NULL));

        _cleanup_strv_free_ char **v = NULL;
        _cleanup_free_ char *one = NULL;
        ASSERT(ossb_shell_expand_full("a $S", '\\', 0, ossb_shell_lookup_strv, env, &one, &v, NULL) == 0);
        ASSERT_STREQ(one, "a a  b");
        ASSERT_INTEQ(ossb_strv_length(v), 3);
}

static void test_flags(void)
{
        static const struct wcase raw_quotes[] = {
                { "'a'\"b$X\"", { "X=1" }, "'a'\"b1\"" },
                { "${Y:-'q'}", { 0 }, "'q'" },
        };
        ASSERT_INTEQ(run_cases(raw_quotes, ELEMENTSOF(raw_quotes), OSSB_SHELL_RAW_QUOTES), 0);
        static const struct wcase raw_esc[] = {
                { "a\\b\\$X", { "X=1" }, "a\\b\\$X" },
                { "\"\\$X\\q\"", { "X=1" }, "\\$X\\\\q" },
                { "a\\", { 0 }, "a\\" },
        };
        ASSERT_INTEQ(run_cases(raw_esc, ELEMENTSOF(raw_esc), OSSB_SHELL_RAW_ESCAPES), 0);
        static const struct wcase skip_quotes[] = {
                { "'$X' \"$X\"", { "X=1" }, "'1' \"1\"" },
        };
        ASSERT_INTEQ(run_cases(skip_quotes, ELEMENTSOF(skip_quotes), OSSB_SHELL_SKIP_PROCESS_QUOTES), 0);
        static const struct wcase skip_unset[] = {
                { "$X $U ${U} ${U:-d} ${U##p} ${U//a/b} ${U?m} $1", { "X=1" }, "1 $U ${U} ${U:-d} ${U##p} ${U/a/b} ${U?m} $1" },
                { "${X:-d}${X/1/2}", { "X=1" }, "12" },
        };
        ASSERT_INTEQ(run_cases(skip_unset, ELEMENTSOF(skip_unset), OSSB_SHELL_SKIP_UNSET_ENV), 0);
        /* the heredoc detection of BuildKit's parser: raw quotes + raw escapes + skip unset */
        _cleanup_strv_free_ char **v = NULL;
        unsigned f = OSSB_SHELL_RAW_QUOTES | OSSB_SHELL_RAW_ESCAPES | OSSB_SHELL_SKIP_UNSET_ENV;
        ASSERT(ossb_shell_expand_full("cat <<\"EOF\" >$OUT", '\\', f, NULL, NULL, NULL, &v, NULL) == 0);
        ASSERT_INTEQ(ossb_strv_length(v), 3);
        ASSERT_STREQ(v[1], "<<\"EOF\"");
        ASSERT_STREQ(v[2], ">$OUT");
}

static const char *big_value(void *userdata, const char *name)
{
        (void) name;
        return userdata;
}

static void test_limits(void)
{
        /* nesting */
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (int i = 0; i < 200; i++)
                ossb_strbuf_append(&sb, "${a:-");
        for (int i = 0; i < 200; i++)
                ossb_strbuf_append(&sb, "}");
        _cleanup_error_ struct ossb_error *e = NULL;
        char *out = NULL;
        ASSERT_INTEQ(ossb_shell_expand(sb.buf, '\\', NULL, NULL, &out, &e), -E2BIG);
        ASSERT(strstr(e->msg, "nested deeper"));

        /* result size */
        size_t n = (1u << 20) + 1;
        _cleanup_free_ char *val = malloc(n + 1);
        ASSERT(val);
        memset(val, 'v', n);
        val[n] = '\0';
        _cleanup_error_ struct ossb_error *e2 = NULL;
        ASSERT_INTEQ(ossb_shell_expand("$A$A$A$A", '\\', big_value, val, &out, &e2), -E2BIG);
        ASSERT(strstr(e2->msg, "larger than"));
        _cleanup_error_ struct ossb_error *e3 = NULL;
        ASSERT_INTEQ(ossb_shell_expand_words("$A$A$A$A", '\\', big_value, val, (char ***) &out, &e3), -E2BIG);

        /* everything produced, discarded operands included */
        _cleanup_error_ struct ossb_error *e6 = NULL;
        const char *six = "${u:+$A$A$A}${u:+$A$A$A}${u:+$A$A$A}${u:+$A$A$A}${u:+$A$A$A}${u:+$A$A$A}";
        ASSERT_INTEQ(ossb_shell_expand(six, '\\', big_value, val, &out, &e6), -E2BIG);
        ASSERT(strstr(e6->msg, "produces more than"));

        /* pattern work */
        _cleanup_strbuf_ struct ossb_strbuf pat = OSSB_STRBUF_INIT;
        ossb_strbuf_append(&pat, "${A#");
        for (int i = 0; i < 100; i++)
                ossb_strbuf_append(&pat, "*?");
        ossb_strbuf_append(&pat, "x}");
        _cleanup_error_ struct ossb_error *e4 = NULL;
        ASSERT_INTEQ(ossb_shell_expand(pat.buf, '\\', big_value, val, &out, &e4), -E2BIG);
        ASSERT(strstr(e4->msg, "too complex"));
        /* a value beyond the limit in a pattern substitution */
        _cleanup_free_ char *huge = malloc(OSSB_SHELL_MAX_RESULT + 2);
        ASSERT(huge);
        memset(huge, 'h', OSSB_SHELL_MAX_RESULT + 1);
        huge[OSSB_SHELL_MAX_RESULT + 1] = '\0';
        _cleanup_error_ struct ossb_error *e5 = NULL;
        ASSERT_INTEQ(ossb_shell_expand("${A%x}", '\\', big_value, huge, &out, &e5), -E2BIG);
        /* a moderate one is fine and linear */
        _cleanup_free_ char *ok = NULL;
        ASSERT(ossb_shell_expand("${A%%*v}${A#v}", '\\', big_value, "vvv", &ok, NULL) == 0);
        ASSERT_STREQ(ok, "vv");
}

int main(void)
{
        RUN_TEST(test_buildkit_process_with_matches);
        RUN_TEST(test_buildkit_misc);
        RUN_TEST(test_lookup_strv);
        RUN_TEST(test_replace_and_trim);
        RUN_TEST(test_quotes_escapes);
        RUN_TEST(test_messages);
        RUN_TEST(test_words);
        RUN_TEST(test_flags);
        RUN_TEST(test_limits);
        TAP_END();
}
