/* tests/unit/test-dockerignore.c - engine/dockerfile dockerignore, filepath.Match and the Go
 * regexp subset: moby/patternmatcher's and Go's documented cases, plus the corners of the
 * regexp syntax patternmatcher lets through. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/dockerignore.h"
#include "engine/dockerfile/gore.h"
#include "tests/unit/tap.h"

OSSB_DEFINE_CLEANUP(struct ossb_dockerignore *, ossb_dockerignore_free)
#define _cleanup_di_ _cleanup_(ossb_dockerignore_freep)

/* Parse patterns given one per element (NULL-terminated). */
static int parse_list(const char *const *pats, struct ossb_dockerignore **ret, struct ossb_error **err)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (size_t i = 0; pats[i]; i++) {
                ossb_strbuf_append(&sb, pats[i]);
                ossb_strbuf_append_c(&sb, '\n');
        }
        return ossb_dockerignore_parse("test.dockerignore", sb.buf ? sb.buf : "", sb.len, ret, err);
}

/* 1 matched, 0 not, -1 a pattern error. */
static int matches(const char *const *pats, const char *text)
{
        _cleanup_di_ struct ossb_dockerignore *di = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        if (parse_list(pats, &di, &e) < 0)
                return -1;
        return ossb_dockerignore_match(di, text);
}

struct mcase {
        const char *pattern, *text;
        int want; /* 1, 0, -1 for an error */
};

static int run_cases(const struct mcase *c, size_t n)
{
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
                const char *pats[] = { c[i].pattern, NULL };
                int got = matches(pats, c[i].text);
                if (got != c[i].want) {
                        fprintf(stderr, "# pattern %s text %s: got %d want %d\n", c[i].pattern, c[i].text, got, c[i].want);
                        bad++;
                }
        }
        return bad;
}

/* patternmatcher_test.go TestMatches (run through MatchesOrParentMatches) */
static void test_patternmatcher_matches(void)
{
        static const struct mcase c[] = {
                { "**", "file", 1 }, { "**", "file/", 1 }, { "**/", "file", 1 }, { "**/", "file/", 1 },
                { "**", "/", 1 }, { "**/", "/", 1 }, { "**", "dir/file", 1 }, { "**/", "dir/file", 1 },
                { "**", "dir/file/", 1 }, { "**/", "dir/file/", 1 }, { "**/**", "dir/file", 1 },
                { "**/**", "dir/file/", 1 }, { "dir/**", "dir/file", 1 }, { "dir/**", "dir/file/", 1 },
                { "dir/**", "dir/dir2/file", 1 }, { "dir/**", "dir/dir2/file/", 1 }, { "**/dir", "dir", 1 },
                { "**/dir", "dir/file", 1 }, { "**/dir2/*", "dir/dir2/file", 1 }, { "**/dir2/*", "dir/dir2/file/", 1 },
                { "**/dir2/**", "dir/dir2/dir3/file", 1 }, { "**/dir2/**", "dir/dir2/dir3/file/", 1 },
                { "**file", "file", 1 }, { "**file", "dir/file", 1 }, { "**/file", "dir/file", 1 },
                { "**file", "dir/dir/file", 1 }, { "**/file", "dir/dir/file", 1 }, { "**/file*", "dir/dir/file", 1 },
                { "**/file*", "dir/dir/file.txt", 1 }, { "**/file*txt", "dir/dir/file.txt", 1 },
                { "**/file*.txt", "dir/dir/file.txt", 1 }, { "**/file*.txt*", "dir/dir/file.txt", 1 },
                { "**/**/*.txt", "dir/dir/file.txt", 1 }, { "**/**/*.txt2", "dir/dir/file.txt", 0 },
                { "**/*.txt", "file.txt", 1 }, { "**/**/*.txt", "file.txt", 1 }, { "a**/*.txt", "a/file.txt", 1 },
                { "a**/*.txt", "a/dir/file.txt", 1 }, { "a**/*.txt", "a/dir/dir/file.txt", 1 },
                { "a/*.txt", "a/dir/file.txt", 0 }, { "a/*.txt", "a/file.txt", 1 }, { "a/*.txt**", "a/file.txt", 1 },
                { "a[b-d]e", "ae", 0 }, { "a[b-d]e", "ace", 1 }, { "a[b-d]e", "aae", 0 }, { "a[^b-d]e", "aze", 1 },
                { ".*", ".foo", 1 }, { ".*", "foo", 0 }, { "abc.def", "abcdef", 0 }, { "abc.def", "abc.def", 1 },
                { "abc.def", "abcZdef", 0 }, { "abc?def", "abcZdef", 1 }, { "abc?def", "abcdef", 0 },
                { "a\\\\", "a\\", 1 }, { "**/foo/bar", "foo/bar", 1 }, { "**/foo/bar", "dir/foo/bar", 1 },
                { "**/foo/bar", "dir/dir2/foo/bar", 1 }, { "abc/**", "abc", 0 }, { "abc/**", "abc/def", 1 },
                { "abc/**", "abc/def/ghi", 1 }, { "**/.foo", ".foo", 1 }, { "**/.foo", "bar.foo", 0 },
                { "a(b)c/def", "a(b)c/def", 1 }, { "a(b)c/def", "a(b)c/xyz", 0 }, { "a.|)$(}+{bc", "a.|)$(}+{bc", 1 },
                { "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                  "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", 1 },
                { "dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", 1 },
                { "a\\*b", "a*b", 1 },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c)), 0);
}

static void test_patternmatcher_multi(void)
{
        const char *p1[] = { "**", "!util/docker/web", NULL };
        const char *p2[] = { "**", "!util/docker/web", "util/docker/web/foo", NULL };
        const char *p3[] = { "**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", NULL };
        const char *p4[] = { "**", "!dist/*.whl", NULL };
        ASSERT_INTEQ(matches(p1, "util/docker/web/foo"), 0);
        ASSERT_INTEQ(matches(p2, "util/docker/web/foo"), 1);
        ASSERT_INTEQ(matches(p3, "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"), 0);
        ASSERT_INTEQ(matches(p4, "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"), 0);
        /* the small named tests of patternmatcher_test.go */
        const char *w[] = { "*", NULL }, *go[] = { "*.go", NULL };
        const char *ex1[] = { "!fileutils.go", "*.go", NULL }, *ex2[] = { "*.go", "!fileutils.go", NULL };
        const char *d1[] = { "docs", "!docs/README.md", NULL }, *d2[] = { "docs/", "!docs/README.md", NULL };
        const char *d3[] = { "docs/*", "!docs/README.md", NULL }, *none[] = { NULL };
        ASSERT_INTEQ(matches(w, "fileutils.go"), 1);
        ASSERT_INTEQ(matches(go, "fileutils.go"), 1);
        ASSERT_INTEQ(matches(ex1, "fileutils.go"), 1);
        ASSERT_INTEQ(matches(ex2, "fileutils.go"), 0);
        ASSERT_INTEQ(matches(d1, "docs/README.md"), 0);
        ASSERT_INTEQ(matches(d2, "docs/README.md"), 0);
        ASSERT_INTEQ(matches(d3, "docs/README.md"), 0);
        ASSERT_INTEQ(matches(go, "."), 0);
        ASSERT_INTEQ(matches(none, "/any/path/there"), 0);
        const char *bang[] = { "!", NULL }, *bracket[] = { "[", NULL };
        ASSERT_INTEQ(matches(bang, "fileutils.go"), -1);
        ASSERT_INTEQ(matches(bracket, "/any/path/there"), -1);
}

/* patternmatcher_test.go matchTests (Go's filepath cases, through Matches with parents) */
static void test_patternmatcher_match_tests(void)
{
        static const struct mcase c[] = {
                { "abc", "abc", 1 }, { "*", "abc", 1 }, { "*c", "abc", 1 }, { "a*", "a", 1 }, { "a*", "abc", 1 },
                { "a*", "ab/c", 1 }, { "a*/b", "abc/b", 1 }, { "a*/b", "a/c/b", 0 },
                { "a*b*c*d*e*/f", "axbxcxdxe/f", 1 }, { "a*b*c*d*e*/f", "axbxcxdxexxx/f", 1 },
                { "a*b*c*d*e*/f", "axbxcxdxe/xxx/f", 0 }, { "a*b*c*d*e*/f", "axbxcxdxexxx/fff", 0 },
                { "a*b?c*x", "abxbbxdbxebxczzx", 1 }, { "a*b?c*x", "abxbbxdbxebxczzy", 0 }, { "ab[c]", "abc", 1 },
                { "ab[b-d]", "abc", 1 }, { "ab[e-g]", "abc", 0 }, { "ab[^c]", "abc", 0 }, { "ab[^b-d]", "abc", 0 },
                { "ab[^e-g]", "abc", 1 }, { "a\\*b", "a*b", 1 }, { "a\\*b", "ab", 0 }, { "a?b", "a☺b", 1 },
                { "a[^a]b", "a☺b", 1 }, { "a???b", "a☺b", 0 }, { "a[^a][^a][^a]b", "a☺b", 0 }, { "[a-ζ]*", "α", 1 },
                { "*[a-ζ]", "A", 0 }, { "a?b", "a/b", 0 }, { "a*b", "a/b", 0 }, { "[\\]a]", "]", 1 }, { "[\\-]", "-", 1 },
                { "[x\\-]", "x", 1 }, { "[x\\-]", "-", 1 }, { "[x\\-]", "z", 0 }, { "[\\-x]", "x", 1 },
                { "[\\-x]", "-", 1 }, { "[\\-x]", "a", 0 }, { "[]a]", "]", -1 }, { "[-]", "-", -1 },
                { "[x-]", "x", -1 }, { "[x-]", "-", -1 }, { "[x-]", "z", -1 }, { "[-x]", "x", -1 },
                { "[-x]", "-", -1 }, { "[-x]", "a", -1 }, { "\\", "a", -1 }, { "[a-b-c]", "a", -1 },
                { "[", "a", -1 }, { "[^", "a", -1 }, { "[^bc", "a", -1 }, { "a[", "a", -1 }, { "a[", "ab", -1 },
                { "*x", "xxx", 1 },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c)), 0);
}

/* The regexps patternmatcher builds keep RE2's meaning for what it does not escape. */
static void test_regexp_corners(void)
{
        static const struct mcase c[] = {
                { "[[:digit:]]x", "7x", 1 },     { "[[:digit:]]x", "ax", 0 },     { "[[:^alpha:]]", "1", 1 },
                { "[[:^alpha:]]", "a", 0 },      { "[[:bogus:]]", "a", -1 },      { "[\\d]", "5", 1 },
                { "[\\d]", "d", 0 },             { "\\d*", "123", 1 },            { "\\d*", "d", 0 },
                { "\\w\\s?", "a b", 1 },         { "x\\S?", "xy", 0 },            { "\\x41*", "AB", 1 },
                { "\\x{42}?", "Bc", -1 },         { "\\101?", "Az", 1 },           { "\\n?", "\nx", 1 },
                { "a^*", "a", 0 },               { "a^b", "a^b", 1 },             { "[Local-Only]/", "x", -1 },
                { "[a-c]\\b*", "b", 1 },         { "\\Bq*", "q", 0 },             { "\\Ax*", "xy", 1 },
                { "\\y*", "y", -1 },             { "\\1*", "1", -1 },             { "\\C*", "C", -1 },
                { "\\pL*", "a", -1 },            { "[\\pL]", "a", -1 },           { "\\Q*", "[^/]*$", 1 },
                { "\\Q*", "[^/]*$/x", 1 },       { "\\Qa\\E*", "ab", 1 },         { "[*]", "[^/]", 1 },
                { "[*]", "]", 1 },               { "[?]", "/]", 1 },              { "[\\W]", "-", 1 },
                { "[\\D]x", "ax", 1 },           { "[\\S]", " ", 0 },             { "[[:word:][:space:]]", " ", 1 },
                { "\\t*", "\t", 1 },             { "\\v\\f\\a\\r?", "\v\f\a\rz", 1 }, { "\\x4*", "x", -1 },
                { "\\x{}*", "x", -1 },           { "\\x{110000}*", "x", -1 },     { "\\x", "x", -1 },
                { "[\\x{41}-\\x{43}]", "B", -1 }, { "[z-a]*", "a", -1 },           { "[a-]*", "-", -1 },
                { "[[:alpha:]", "a", -1 },       { "[[:ascii:]]?", "\x01x", 1 },  { "[[:cntrl:]]*", "\x7f", 1 },
                { "**/x\\Q", "a/xQ", 0 },        { "x\\S?", "xyz", 1 },           { "**/y", "a\n/y", 1 },
                { "a/**/b", "a/x\ny/b", 0 },
        };
        ASSERT_INTEQ(run_cases(c, ELEMENTSOF(c)), 0);
}

/* ignorefile_test.go TestReadAll, and the reader's other rules */
static void test_read_rules(void)
{
        static const char content[] = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
        _cleanup_di_ struct ossb_dockerignore *di = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(ossb_dockerignore_parse(".dockerignore", content, strlen(content), &di, &e) == 0);
        ASSERT(ossb_dockerignore_excluded(di, "test1"));
        ASSERT(ossb_dockerignore_excluded(di, "test2"));
        ASSERT(ossb_dockerignore_excluded(di, "test2/sub"));
        ASSERT(ossb_dockerignore_excluded(di, "a/file/here"));
        ASSERT(!ossb_dockerignore_excluded(di, "a/file"));
        ASSERT(ossb_dockerignore_excluded(di, "lastfile"));
        ASSERT(!ossb_dockerignore_excluded(di, "# this is a comment"));
        ASSERT(!ossb_dockerignore_excluded(di, "."));

        /* BOM on the first line, CRLF, trimming, comments only at column 0, cleaning */
        static const char more[] = "\xEF\xBB\xBF" "bom\r\n  # not a comment\r\n\t./x/../y/ \n!\xC2\xA0 keep \nlast";
        _cleanup_di_ struct ossb_dockerignore *d2 = NULL;
        ASSERT(ossb_dockerignore_parse(NULL, more, strlen(more), &d2, &e) == 0);
        ASSERT(ossb_dockerignore_excluded(d2, "bom"));
        ASSERT(ossb_dockerignore_excluded(d2, "# not a comment"));
        ASSERT(ossb_dockerignore_excluded(d2, "y"));
        ASSERT(ossb_dockerignore_excluded(d2, "last"));
        ASSERT(!ossb_dockerignore_excluded(d2, "keep"));
        ASSERT(!ossb_dockerignore_must_descend(d2, "y"));
        ASSERT(ossb_dockerignore_match(d2, "./y//z") == 1);

        /* a BOM on a later line stays in the pattern, but patternmatcher's scanner skips it */
        static const char bom2[] = "a\n\xEF\xBB\xBF*.go\n";
        _cleanup_di_ struct ossb_dockerignore *d4 = NULL;
        ASSERT(ossb_dockerignore_parse(NULL, bom2, strlen(bom2), &d4, &e) == 0);
        ASSERT(ossb_dockerignore_excluded(d4, "x.go"));

        /* "/!x" loses its slash and becomes an exception, as in Docker */
        static const char bang[] = "*\n/!x\n";
        _cleanup_di_ struct ossb_dockerignore *d3 = NULL;
        ASSERT(ossb_dockerignore_parse(NULL, bang, strlen(bang), &d3, &e) == 0);
        ASSERT(!ossb_dockerignore_excluded(d3, "x"));
        ASSERT(ossb_dockerignore_excluded(d3, "y"));
}

static void test_parse_errors(void)
{
        static const char *const bad[] = { "ok\n!\n", "ok\n! \n", "a\n!/\n", "[\n", "a\n\\\n", "x\n[a-\n", "[l-O]\n" };
        static const unsigned line[] = { 2, 2, 2, 1, 2, 2, 1 };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_di_ struct ossb_dockerignore *di = NULL;
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT_INTEQ(ossb_dockerignore_parse("ctx/.dockerignore", bad[i], strlen(bad[i]), &di, &e), -EINVAL);
                ASSERT(di == NULL);
                ASSERT_INTEQ(e->exit_code, OSSB_EXIT_USAGE);
                char want[64];
                snprintf(want, sizeof(want), "ctx/.dockerignore:%u: ", line[i]);
                ASSERT(strncmp(e->msg, want, strlen(want)) == 0);
        }
        /* a line longer than bufio.Scanner takes; NUL bytes */
        size_t n = 70000;
        _cleanup_free_ char *big = malloc(n);
        ASSERT(big);
        memset(big, 'a', n);
        _cleanup_di_ struct ossb_dockerignore *di = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT_INTEQ(ossb_dockerignore_parse("f", big, n, &di, &e), -EINVAL);
        ASSERT(strstr(e->msg, "longer than"));
        ossb_error_free(e);
        e = NULL;
        ASSERT_INTEQ(ossb_dockerignore_parse("f", big, 65535, &di, &e), 0);
        ossb_dockerignore_free(di);
        di = NULL;
        ASSERT_INTEQ(ossb_dockerignore_parse("f", "a\nb\0c\n", 6, &di, &e), -EINVAL);
        ASSERT(strstr(e->msg, "f:2: NUL"));
}

static void test_must_descend(void)
{
        const char *p1[] = { "docs", "!docs/README.md", NULL };
        _cleanup_di_ struct ossb_dockerignore *a = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT(parse_list(p1, &a, &e) == 0);
        ASSERT(ossb_dockerignore_excluded(a, "docs"));
        ASSERT(ossb_dockerignore_must_descend(a, "docs"));
        ASSERT(!ossb_dockerignore_must_descend(a, "doc"));
        ASSERT(!ossb_dockerignore_must_descend(a, "other"));
        ASSERT(!ossb_dockerignore_excluded(a, "docs/README.md"));
        ASSERT(ossb_dockerignore_excluded(a, "docs/other.md"));

        const char *p2[] = { "build", NULL };
        _cleanup_di_ struct ossb_dockerignore *b = NULL;
        ASSERT(parse_list(p2, &b, &e) == 0);
        ASSERT(!ossb_dockerignore_must_descend(b, "build"));

        /* a trailing glob does not prevent the prefix test; an inner one makes every dir walked */
        const char *p3[] = { "a", "!a/b/**", NULL };
        _cleanup_di_ struct ossb_dockerignore *c = NULL;
        ASSERT(parse_list(p3, &c, &e) == 0);
        ASSERT(ossb_dockerignore_must_descend(c, "a"));
        ASSERT(ossb_dockerignore_must_descend(c, "a/b"));
        ASSERT(!ossb_dockerignore_must_descend(c, "a/c"));
        ASSERT(!ossb_dockerignore_excluded(c, "a/b/x"));
        const char *p4[] = { "a", "!*/keep", NULL };
        _cleanup_di_ struct ossb_dockerignore *d = NULL;
        ASSERT(parse_list(p4, &d, &e) == 0);
        ASSERT(ossb_dockerignore_must_descend(d, "a"));
        ASSERT(ossb_dockerignore_must_descend(d, "z"));
        ASSERT(!ossb_dockerignore_excluded(d, "a/keep"));
        ASSERT(ossb_dockerignore_excluded(d, "a/drop"));
}

/* Go's path/filepath match_test.go */
static void test_path_match(void)
{
        static const struct mcase c[] = {
                { "abc", "abc", 1 }, { "*", "abc", 1 }, { "*c", "abc", 1 }, { "a*", "a", 1 }, { "a*", "abc", 1 },
                { "a*", "ab/c", 0 }, { "a*/b", "abc/b", 1 }, { "a*/b", "a/c/b", 0 }, { "a*b*c*d*e*/f", "axbxcxdxe/f", 1 },
                { "a*b*c*d*e*/f", "axbxcxdxexxx/f", 1 }, { "a*b*c*d*e*/f", "axbxcxdxe/xxx/f", 0 },
                { "a*b*c*d*e*/f", "axbxcxdxexxx/fff", 0 }, { "a*b?c*x", "abxbbxdbxebxczzx", 1 },
                { "a*b?c*x", "abxbbxdbxebxczzy", 0 }, { "ab[c]", "abc", 1 }, { "ab[b-d]", "abc", 1 },
                { "ab[e-g]", "abc", 0 }, { "ab[^c]", "abc", 0 }, { "ab[^b-d]", "abc", 0 }, { "ab[^e-g]", "abc", 1 },
                { "a\\*b", "a*b", 1 }, { "a\\*b", "ab", 0 }, { "a?b", "a☺b", 1 }, { "a[^a]b", "a☺b", 1 },
                { "a???b", "a☺b", 0 }, { "a[^a][^a][^a]b", "a☺b", 0 }, { "[a-ζ]*", "α", 1 }, { "*[a-ζ]", "A", 0 },
                { "a?b", "a/b", 0 }, { "a*b", "a/b", 0 }, { "[\\]a]", "]", 1 }, { "[\\-]", "-", 1 },
                { "[x\\-]", "x", 1 }, { "[x\\-]", "-", 1 }, { "[x\\-]", "z", 0 }, { "[\\-x]", "x", 1 },
                { "[\\-x]", "-", 1 }, { "[\\-x]", "a", 0 }, { "[]a]", "]", -1 }, { "[-]", "-", -1 },
                { "[x-]", "x", -1 }, { "[x-]", "-", -1 }, { "[x-]", "z", -1 }, { "[-x]", "x", -1 }, { "[-x]", "-", -1 },
                { "[-x]", "a", -1 }, { "\\", "a", -1 }, { "[a-b-c]", "a", -1 }, { "[", "a", -1 }, { "[^", "a", -1 },
                { "[^bc", "a", -1 }, { "a[", "a", -1 }, { "a[", "ab", -1 }, { "a[", "x", -1 }, { "a/b[", "x", -1 },
                { "*x", "xxx", 1 }, { "", "", 1 }, { "", "a", 0 }, { "*", "", 1 }, { "a/*", "a/", 1 },
                { "[\xff]", "a", -1 }, { "[a-\xff]", "a", -1 }, { "a*b\\", "acb", -1 }, { "x*\\", "y", -1 },
                { "?", "\xff", 1 }, { "*b", "a/b", 0 }, { "**", "ab", 1 }, { "a*", "a/", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                int got = ossb_path_match(c[i].pattern, c[i].text);
                int want = c[i].want < 0 ? -EINVAL : c[i].want;
                if (got != want)
                        fprintf(stderr, "# Match(%s, %s) = %d, want %d\n", c[i].pattern, c[i].text, got, want);
                ASSERT_INTEQ(got, want);
        }
}

static void test_gore_direct(void)
{
        struct gore *re = NULL;
        const char *why = NULL;
        ASSERT(gore_compile("^a|b$", &re, &why) == 0);
        ASSERT_INTEQ(gore_match(re, "ax"), 1);
        ASSERT_INTEQ(gore_match(re, "xb"), 1);
        ASSERT_INTEQ(gore_match(re, "xa"), 0);
        gore_free(re);
        ASSERT(gore_compile("^(ab)+c?$", &re, NULL) == 0);
        ASSERT_INTEQ(gore_match(re, "ababc"), 1);
        ASSERT_INTEQ(gore_match(re, "c"), 0);
        gore_free(re);
        ASSERT(gore_compile("x.y", &re, NULL) == 0);
        ASSERT_INTEQ(gore_match(re, "x\ny"), 0);
        ASSERT_INTEQ(gore_match(re, "x\xffy"), 1);
        gore_free(re);
        ASSERT(gore_compile("^\\bfoo\\B", &re, NULL) == 0);
        ASSERT_INTEQ(gore_match(re, "food"), 1);
        ASSERT_INTEQ(gore_match(re, "foo"), 0);
        gore_free(re);
        static const char *const bad[] = { "*a", "a**", "(a", "a)", "(?i)a", "\\", "[a", "x|*", "a\\8" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                re = NULL;
                why = NULL;
                ASSERT(gore_compile(bad[i], &re, &why) < 0);
                ASSERT(re == NULL && why != NULL);
        }
        /* \x{...} cannot come out of patternmatcher (it escapes '{'), but is RE2 syntax */
        ASSERT(gore_compile("^\\x{41}\\x{1F600}\\xaB$", &re, NULL) == 0);
        ASSERT_INTEQ(gore_match(re, "A\xF0\x9F\x98\x80\xC2\xAB"), 1);
        gore_free(re);
        static const char *const badx[] = { "\\x{}", "\\x{110000}", "\\x{4", "\\x{g}", "\\x" };
        for (size_t i = 0; i < ELEMENTSOF(badx); i++) {
                re = NULL;
                ASSERT(gore_compile(badx[i], &re, NULL) == -EINVAL);
        }
        _cleanup_free_ char *deep = malloc(2 * 1001 + 1);
        ASSERT(deep);
        memset(deep, '(', 1001);
        memset(deep + 1001, ')', 1001);
        deep[2002] = '\0';
        ASSERT(gore_compile(deep, &re, &why) == -EINVAL);
        ASSERT(strstr(why, "nests"));
        ASSERT(gore_compile("a*?b+?", &re, NULL) == 0);
        ASSERT_INTEQ(gore_match(re, "b"), 1);
        gore_free(re);
        gore_free(NULL);
}

int main(void)
{
        RUN_TEST(test_patternmatcher_matches);
        RUN_TEST(test_patternmatcher_multi);
        RUN_TEST(test_patternmatcher_match_tests);
        RUN_TEST(test_regexp_corners);
        RUN_TEST(test_read_rules);
        RUN_TEST(test_parse_errors);
        RUN_TEST(test_must_descend);
        RUN_TEST(test_path_match);
        RUN_TEST(test_gore_direct);
        TAP_END();
}
