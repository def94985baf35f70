/* tests/unit/test-dockerfile-parser.c - engine/dockerfile parser: directives, comments,
 * continuations, JSON/shell forms, heredocs, every instruction's argument splitting, the dump
 * and JSON views, and every error path.  Expected values follow BuildKit's parser (its
 * testfiles and parser tests). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/parser.h"
#include "tests/unit/tap.h"

static struct ossb_dockerfile *parse(const char *text)
{
        struct ossb_dockerfile *df = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_dockerfile_parse("Dockerfile", text, strlen(text), &df, &err) < 0) {
                fprintf(stderr, "# unexpected parse error: %s\n", err && err->msg ? err->msg : "?");
                return NULL;
        }
        return df;
}

/* The Node.Dump of text, or NULL on error; caller frees. */
static char *dump(const char *text)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse(text);
        char *out = NULL;
        if (!df || ossb_dockerfile_dump(df, &out) < 0)
                return NULL;
        return out;
}

/* The error message parsing text gives (NULL if it parsed); caller frees. */
static char *parse_error(const char *text)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_dockerfile_parse("Dockerfile", text, strlen(text), &df, &err) >= 0)
                return NULL;
        if (!err || err->exit_code != OSSB_EXIT_USAGE || err->code >= 0)
                return strdup("(wrong error object)");
        return strdup(err->msg);
}

#define ASSERT_DUMP(text, expected)                     \
        do {                                            \
                _cleanup_free_ char *_d = dump(text);   \
                ASSERT_STREQ(_d, expected);             \
        } while (0)

#define ASSERT_PARSE_ERROR(text, expected)                      \
        do {                                                    \
                _cleanup_free_ char *_e = parse_error(text);    \
                ASSERT_STREQ(_e, expected);                     \
        } while (0)

static void test_basic_dump(void)
{
        ASSERT_DUMP("FROM ubuntu:14.04\nRUN echo hi\n", "(from \"ubuntu:14.04\")\n(run \"echo hi\")");
        ASSERT_DUMP("from\tbusybox AS  Build\n", "(from \"busybox\" \"AS\" \"Build\")");
        ASSERT_DUMP("  FROM x\r\nCMD [\"a\",\"b\"]\r\n", "(from \"x\")\n(cmd \"a\" \"b\")");
        ASSERT_DUMP("FROM x\nUSER docker:root\nWORKDIR /a b\nSTOPSIGNAL SIGKILL\nMAINTAINER Me <m@e>\n",
                    "(from \"x\")\n(user \"docker:root\")\n(workdir \"/a b\")\n(stopsignal \"SIGKILL\")\n"
                    "(maintainer \"Me <m@e>\")");
        ASSERT_DUMP("FROM x\nEXPOSE 80  443/tcp\nVOLUME /a /b\nVOLUME [\"/c\", \"/d e\"]\n",
                    "(from \"x\")\n(expose \"80\" \"443/tcp\")\n(volume \"/a\" \"/b\")\n(volume \"/c\" \"/d e\")");
        ASSERT_DUMP("FROM x\nUSER\nWORKDIR\nEXPOSE\nRUN\nCMD\n", "(from \"x\")\n(user)\n(workdir)\n(expose)\n(run)\n(cmd)");
        /* lines with only blanks and comments are skipped; the command keeps its case in
         * `original` and is lower-cased in cmd */
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("\n   \n# c\n  RuN  echo  a  \n");
        ASSERT(df);
        ASSERT_INTEQ(df->n_insts, 1);
        ASSERT_STREQ(df->insts[0].cmd, "run");
        ASSERT_STREQ(df->insts[0].original, "RuN  echo  a  ");
        ASSERT_STREQ(df->insts[0].args[0], "echo  a");
        ASSERT_INTEQ(df->insts[0].line_start, 4);
        ASSERT_INTEQ(df->insts[0].line_end, 4);
        ASSERT(df->insts[0].flags && !df->insts[0].flags[0]);
        ASSERT(!df->insts[0].json);
        ASSERT(df->escape == '\\');
        ASSERT(!df->syntax && !df->check && !df->warnings);
}

static void test_directives(void)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *a = parse("# syntax = docker/dockerfile:1 // x\n#check=skip=all\n"
                                                              "  # ESCAPE = `  \nFROM `\n  image\n");
        ASSERT(a);
        ASSERT_STREQ(a->syntax, "docker/dockerfile:1 // x");
        ASSERT_STREQ(a->check, "skip=all");
        ASSERT(a->escape == '`');
        ASSERT_STREQ(a->insts[0].args[0], "image");
        ASSERT_INTEQ(a->insts[0].line_start, 4);
        ASSERT_INTEQ(a->insts[0].line_end, 5);

        /* directives end at the first other line: comment, blank line, unknown key, or BOM'd file */
        _cleanup_dockerfile_ struct ossb_dockerfile *b = parse("# comment\n# escape=`\nFROM x\n");
        ASSERT(b && b->escape == '\\');
        _cleanup_dockerfile_ struct ossb_dockerfile *c = parse("\n# escape=`\nFROM x\n");
        ASSERT(c && c->escape == '\\');
        _cleanup_dockerfile_ struct ossb_dockerfile *d = parse("# foo=bar\n# escape=`\nFROM x\n");
        ASSERT(d && d->escape == '\\');
        _cleanup_dockerfile_ struct ossb_dockerfile *e = parse("\xEF\xBB\xBF# escape=`\nFROM x\n");
        ASSERT(e && e->escape == '`');
        _cleanup_dockerfile_ struct ossb_dockerfile *f = parse("FROM x\n# escape=`\nRUN a \\\n b\n");
        ASSERT(f && f->escape == '\\');
        ASSERT_STREQ(f->insts[1].args[0], "a  b");
        _cleanup_dockerfile_ struct ossb_dockerfile *g = parse("#escape\n#syntax = \nFROM x\n");
        ASSERT(g && !g->syntax);
        _cleanup_dockerfile_ struct ossb_dockerfile *h = parse("# 1escape=`\n# escape=`\nFROM x\n");
        ASSERT(h && h->escape == '\\');
        _cleanup_dockerfile_ struct ossb_dockerfile *i = parse("# escape x=`\nFROM x\n");
        ASSERT(i && i->escape == '\\');
        /* a shebang line is not a directive and ends them */
        _cleanup_dockerfile_ struct ossb_dockerfile *j = parse("#!/bin/sh\n# syntax=a\nFROM x\n");
        ASSERT(j && !j->syntax);

        ASSERT_PARSE_ERROR("# escape=`\n# Escape=\\\nFROM x\n", "Dockerfile:2: only one escape parser directive can be used");
        ASSERT_PARSE_ERROR("# syntax=a\n# syntax=b\nFROM x\n", "Dockerfile:2: only one syntax parser directive can be used");
        ASSERT_PARSE_ERROR("# check=a\n# check=b\nFROM x\n", "Dockerfile:2: only one check parser directive can be used");
        ASSERT_PARSE_ERROR("# escape=x\nFROM x\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\");
        ASSERT_PARSE_ERROR("# escape= \nFROM x\n", "Dockerfile:1: invalid escape token ' ' does not match ` or \\");
}

static void test_comments_and_continuations(void)
{
        ASSERT_DUMP("FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\n",
                    "(from \"ubuntu:14.04\")\n(run \"echo hello  world  goodnight    moon  lightning\")");
        ASSERT_DUMP("FROM x\nRUN echo hello  \\  \nworld\n", "(from \"x\")\n(run \"echo hello  world\")");
        ASSERT_DUMP("FROM x\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n",
                    "(from \"x\")\n(run \"echo hi   world  goodnight\")");
        ASSERT_DUMP("FROM x\nRUN echo hello \\\n# this is a comment\n\n# another\n\nthis is more\n",
                    "(from \"x\")\n(run \"echo hello this is more\")");
        /* an escaped escape token does not continue the line; a lone one at EOF continues
         * into nothing */
        ASSERT_DUMP("FROM x\nENV C trailing\\\\\nENV D next\n",
                    "(from \"x\")\n(env \"C\" \"trailing\\\\\\\\\" \"\")\n(env \"D\" \"next\" \"\")");
        ASSERT_DUMP("FROM x\nRUN something \\", "(from \"x\")\n(run \"something\")");
        ASSERT_DUMP("\\\nFROM x\n", "(from \"x\")");
        ASSERT_DUMP("# escape=`\nFROM x\nRUN a `\n b c:\\\n", "(from \"x\")\n(run \"a  b c:\\\\\")");
        /* comments inside continued lines, and # not at line start */
        ASSERT_DUMP("FROM x\nRUN a \\\n    # inner comment\n    b # not a comment\n",
                    "(from \"x\")\n(run \"a     b # not a comment\")");

        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("FROM x\nRUN a \\\n\n   b \\\n \t\n c\nRUN d \\\n e\n");
        ASSERT(df);
        ASSERT_INTEQ(df->insts[1].line_start, 2);
        ASSERT_INTEQ(df->insts[1].line_end, 6);
        ASSERT_INTEQ(df->insts[2].line_start, 7);
        ASSERT_INTEQ(df->insts[2].line_end, 8);
        ASSERT(df->warnings && df->warnings[0] && !df->warnings[1]);
        ASSERT_STREQ(df->warnings[0], "Dockerfile:6: Empty continuation line found in: RUN a    b  c");
}

static void test_json_forms(void)
{
        ASSERT_DUMP("CMD []\nCMD [\"\"]\nCMD [ \"a\", \"b\" ]\nCMD\t[\t\"a\",\t\"b\"\t]\t\n",
                    "(cmd)\n(cmd \"\")\n(cmd \"a\" \"b\")\n(cmd \"a\" \"b\")");
        ASSERT_DUMP("CMD [\"abc 123\", \"\xe2\x99\xa5\", \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00E9\"]\n",
                    "(cmd \"abc 123\" \"\xe2\x99\xa5\" \"\\\" \\\\ / \\b \\f \\n \\r \\t \xc3\xa9\")");
        /* invalid JSON falls back to the shell form */
        ASSERT_DUMP("CMD '[\"echo\", \"x\"]'\nCMD ['a']\nCMD [\"a\"\nCMD [\"a]\nCMD [\"a\"] x\nCMD [\"a\",]\n",
                    "(cmd \"'[\\\"echo\\\", \\\"x\\\"]'\")\n(cmd \"['a']\")\n(cmd \"[\\\"a\\\"\")\n(cmd \"[\\\"a]\")\n"
                    "(cmd \"[\\\"a\\\"] x\")\n(cmd \"[\\\"a\\\",]\")");
        ASSERT_DUMP("RUN [\"a\\q\"]\nRUN [\"\\u12\"]\nRUN [\"\t\"]\nRUN [01]\nRUN [1.]\nRUN [1e]\nRUN [-]\nRUN [tru]\n"
                    "RUN [{\"a\" 1}]\nRUN [{1:2}]\nRUN [{\"a\":1,}]\nRUN [\"a\" \"b\"]\nRUN [\n",
                    "(run \"[\\\"a\\\\q\\\"]\")\n(run \"[\\\"\\\\u12\\\"]\")\n(run \"[\\\"\\t\\\"]\")\n(run \"[01]\")\n"
                    "(run \"[1.]\")\n(run \"[1e]\")\n(run \"[-]\")\n(run \"[tru]\")\n(run \"[{\\\"a\\\" 1}]\")\n"
                    "(run \"[{1:2}]\")\n(run \"[{\\\"a\\\":1,}]\")\n(run \"[\\\"a\\\" \\\"b\\\"]\")\n(run \"[\")");
        /* a number beyond float64 makes Go's Unmarshal fail: shell form, not an error */
        ASSERT_DUMP("RUN [1e309]\nRUN [\"a\", {\"k\": [17976931348623159e292]}]\n",
                    "(run \"[1e309]\")\n(run \"[\\\"a\\\", {\\\"k\\\": [17976931348623159e292]}]\")");
        /* surrogates: pairs combine, lone halves become U+FFFD; bad UTF-8 too */
        ASSERT_DUMP("CMD [\"\\ud83d\\ude00\", \"\\ud83d\", \"\\ude00x\", \"\\ud83d\\u0041\", \"\xff\"]\n",
                    "(cmd \"\xf0\x9f\x98\x80\" \"\xef\xbf\xbd\" \"\xef\xbf\xbdx\" \"\xef\xbf\xbd" "A\" \"\xef\xbf\xbd\")");
        /* ADD/COPY JSON; "null" is a word, not JSON */
        ASSERT_DUMP("ADD\t\tnull /\nCOPY [ \"test file\", \"/tmp\" ]\n", "(add \"null\" \"/\")\n(copy \"test file\" \"/tmp\")");
        /* non-string items are an error, whatever else is there */
        ASSERT_PARSE_ERROR("CMD [ \"echo\", [ \"nested json\" ] ]\n",
                           "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_PARSE_ERROR("COPY [1, true, null, {\"a\": [1e5, -0.5E-3]}]\n",
                           "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_PARSE_ERROR("ENTRYPOINT [\"a\\u0000\"]\n", "Dockerfile:1: JSON strings holding \\u0000 are not supported");
        ASSERT_PARSE_ERROR("SHELL /bin/sh -c\n", "Dockerfile:1: SHELL requires the arguments to be in JSON form");
        ASSERT_DUMP("SHELL [\"/bin/bash\", \"-c\"]\nSHELL\n", "(shell \"/bin/bash\" \"-c\")\n(shell)");

        /* nesting up to Go's limit is valid JSON (so an error here); beyond, a shell form */
        size_t depth = 10000;
        _cleanup_free_ char *deep = malloc(2 * depth + 16);
        ASSERT(deep);
        memcpy(deep, "RUN ", 4);
        memset(deep + 4, '[', depth);
        memset(deep + 4 + depth, ']', depth);
        deep[4 + 2 * depth] = '\0';
        {
                _cleanup_free_ char *e = parse_error(deep);
                ASSERT_STREQ(e, "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        }
        memset(deep + 4, '[', depth + 1);
        memset(deep + 5 + depth, ']', depth + 1);
        deep[6 + 2 * depth] = '\0';
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse(deep);
        ASSERT(df && !df->insts[0].json);
}

static void test_numbers(void)
{
        /* exact float64 overflow threshold: MaxFloat64 + half an ULP rounds to +Inf */
        ASSERT_PARSE_ERROR("RUN [1.7976931348623157e308]\n", "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_PARSE_ERROR("RUN [179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791]\n",
                           "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_DUMP("RUN [179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792]\n",
                    "(run \"[179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792]\")");
        ASSERT_PARSE_ERROR("RUN [0.0000001e-999999999999, 0e999999, 12.5e+3, -0]\n",
                           "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_DUMP("RUN [0.1e310]\nRUN [0.18e309]\n", "(run \"[0.1e310]\")\n(run \"[0.18e309]\")");
        ASSERT_PARSE_ERROR("RUN [0.17e309]\n", "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
}

static void test_env_label_arg(void)
{
        ASSERT_DUMP("ENV name value\nENV name=value name2=value2\nENV name=\"value value1\"\nENV name=value\\ value2\n"
                    "ENV name='a\\'b'\nENV name=\"a\\\"b\"\n",
                    "(env \"name\" \"value\" \"\")\n(env \"name\" \"value\" \"=\" \"name2\" \"value2\" \"=\")\n"
                    "(env \"name\" \"\\\"value value1\\\"\" \"=\")\n(env \"name\" \"value\\\\ value2\" \"=\")\n"
                    "(env \"name\" \"'a\\\\'b'\" \"=\")\n(env \"name\" \"\\\"a\\\\\\\"b\\\"\" \"=\")");
        ASSERT_DUMP("ENV SCUBA 1 DUBA 3\nLABEL maintainer docker <docker@docker.io>\nLABEL a=b \"c d\"=\"e f\"\n",
                    "(env \"SCUBA\" \"1 DUBA 3\" \"\")\n(label \"maintainer\" \"docker <docker@docker.io>\" \"\")\n"
                    "(label \"a\" \"b\" \"=\" \"\\\"c d\\\"\" \"\\\"e f\\\"\" \"=\")");
        ASSERT_DUMP("ENV\nLABEL\n", "(env)\n(label)");
        ASSERT_PARSE_ERROR("ENV \\\\\n", "Dockerfile:1: ENV must have two arguments");
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("ENV a=1 b=\nENV k v w\n");
        ASSERT(df);
        ASSERT(!df->insts[0].kv_legacy && df->insts[1].kv_legacy);
        ASSERT_STREQ(df->insts[0].args[3], "");
        ASSERT_STREQ(df->insts[1].args[1], "v w");
        /* words: unterminated quotes, escapes at the end, bad UTF-8 becomes U+FFFD */
        ASSERT_DUMP("ENV a=\"x y\nENV a=x\\\\ b=y\nARG c='q\nARG d=\xff\n",
                    "(env \"a\" \"\\\"x y\" \"=\")\n(env \"a\" \"x\\\\\\\\\" \"=\" \"b\" \"y\" \"=\")\n(arg \"c='q\")\n"
                    "(arg \"d=\xef\xbf\xbd\")");
        /* an escape token ending the arguments (a no-break space after it stops it from
         * continuing the line, TrimSpace then removes the space) is dropped */
        ASSERT_DUMP("ENV a=\"x\\\xc2\xa0\nENV b=y\\\xc2\xa0\n", "(env \"a\" \"\\\"x\" \"=\")\n(env \"b\" \"y\" \"=\")");
        ASSERT_DUMP("ARG foo bar=baz\nARG abc=\"123 456\" def\nARG\n",
                    "(arg \"foo\" \"bar=baz\")\n(arg \"abc=\\\"123 456\\\"\" \"def\")\n(arg)");
        ASSERT_PARSE_ERROR("FROM busybox\nENV PATH\n", "Dockerfile:2: ENV must have two arguments");
        ASSERT_PARSE_ERROR("LABEL x\n", "Dockerfile:1: LABEL must have two arguments");
        ASSERT_PARSE_ERROR("ENV a=b c\n", "Dockerfile:1: Syntax error - can't find = in \"c\". Must be of the form: name=value");
}

static void test_flags(void)
{
        ASSERT_DUMP("COPY foo /tmp/\nCOPY --user=me --doit=true foo /tmp/\nCOPY --doit=true -- foo /tmp/\nCOPY -- foo /tmp/\n"
                    "CMD --doit [ \"a\", \"b\" ]\nCMD --doit=true -- [ \"a\", \"b\" ]\nCMD --doit -- [ ]\n",
                    "(copy \"foo\" \"/tmp/\")\n(copy [\"--user=me\" \"--doit=true\"] \"foo\" \"/tmp/\")\n"
                    "(copy [\"--doit=true\"] \"foo\" \"/tmp/\")\n(copy \"foo\" \"/tmp/\")\n(cmd [\"--doit\"] \"a\" \"b\")\n"
                    "(cmd [\"--doit=true\"] \"a\" \"b\")\n(cmd [\"--doit\"])");
        /* quotes and escapes inside flag words are processed; a - word ends the flags */
        ASSERT_DUMP("RUN --mount=\"type=cache,target=/a b\" --x='y' --e=a\\ b -n x\n",
                    "(run [\"--mount=type=cache,target=/a b\" \"--x=y\" \"--e=a b\"] \"-n x\")");
        ASSERT_DUMP("COPY --a=\"q\\\"r\" --b=\"\" --c=\"open\n", "(copy [\"--a=q\\\"r\" \"--b=\" \"--c=open\"])");
        ASSERT_DUMP("COPY --a=\"x\\\n", "(copy [\"--a=x\"])");
        ASSERT_DUMP("COPY --a \\\n", "(copy [\"--a\"])");
        ASSERT_DUMP("COPY --\n", "(copy)");
        ASSERT_DUMP("RUN --network=none\n", "(run [\"--network=none\"])");
        ASSERT_DUMP("RUN --x=\xc3\xa0 y\n", "(run [\"--x=\xc3\xa0\"] \"y\")");
        ASSERT_DUMP("COPY --a=\"x\\\xc2\xa0\n", "(copy [\"--a=x\"])");
}

static void test_healthcheck_onbuild(void)
{
        ASSERT_DUMP("HEALTHCHECK\nHEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n  CMD /app/check.sh --quiet\n"
                    "HEALTHCHECK CMD\nHEALTHCHECK   CMD   a b\nHEALTHCHECK --timeout=3s CMD [\"foo\"]\nHEALTHCHECK CONNECT TCP 7000\n"
                    "HEALTHCHECK NONE\n",
                    "(healthcheck)\n(healthcheck [\"--interval=5s\" \"--timeout=3s\" \"--retries=3\"] \"CMD\" \"/app/check.sh --quiet\")\n"
                    "(healthcheck \"CMD\")\n(healthcheck \"CMD\" \"a b\")\n(healthcheck [\"--timeout=3s\"] \"CMD\" \"foo\")\n"
                    "(healthcheck \"CONNECT\" \"TCP 7000\")\n(healthcheck \"NONE\")");
        ASSERT_PARSE_ERROR("HEALTHCHECK CMD [\"a\", 1]\n", "Dockerfile:1: when using JSON array syntax, arrays must be comprised of strings only");
        ASSERT_DUMP("ONBUILD RUN [\"echo\", \"test\"]\nONBUILD RUN echo test\nONBUILD --x COPY --from=a . /\nONBUILD\n"
                    "ONBUILD ONBUILD ENV a b\n",
                    "(onbuild (run \"echo\" \"test\"))\n(onbuild (run \"echo test\"))\n(onbuild [\"--x\"] (copy [\"--from=a\"] \".\" \"/\"))\n"
                    "(onbuild)\n(onbuild (onbuild (env \"a\" \"b\" \"\")))");
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("ONBUILD RUN echo x\n");
        ASSERT(df && df->insts[0].sub && !df->insts[0].sub->sub);
        ASSERT_STREQ(df->insts[0].sub->cmd, "run");
        ASSERT_STREQ(df->insts[0].sub->original, "RUN echo x");
        ASSERT_INTEQ(ossb_strv_length(df->insts[0].args), 0);
        ASSERT_PARSE_ERROR("ONBUILD ONBUILD ONBUILD ONBUILD ONBUILD ONBUILD ONBUILD ONBUILD RUN x\n",
                           "Dockerfile:1: ONBUILD nested more than 7 deep");
        ASSERT_PARSE_ERROR("ONBUILD FOO x\n", "Dockerfile:1: unknown instruction: FOO (did you mean FROM?)");
}

static void test_unknown_instruction(void)
{
        ASSERT_PARSE_ERROR("FROM x\nRUNN a\n", "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)");
        ASSERT_PARSE_ERROR("FROM x\ncopyy a b\n", "Dockerfile:2: unknown instruction: copyy (did you mean copy?)");
        ASSERT_PARSE_ERROR("FROM x\nWorkDIRR a\n", "Dockerfile:2: unknown instruction: WorkDIRR (did you mean workdir?)");
        ASSERT_PARSE_ERROR("FROM x\nbogus a\n", "Dockerfile:2: unknown instruction: bogus");
        /* strings.ToLower maps the Kelvin sign to k: BuildKit takes this as WORKDIR */
        ASSERT_DUMP("FROM x\nWOR\xe2\x84\xaa" "DIR /a\n",
                    "(from \"x\")\n(workdir \"/a\")");
        ASSERT_PARSE_ERROR("FROM x\n\xc3\x80\xc4\x80\xc5\xb8\xc4\xb0\xd0\x80\xc5\xb9\xc4\xb9\xe2\x84\xab\xce\x91\xd0\x96 a\n",
                           "Dockerfile:2: unknown instruction: \xc3\x80\xc4\x80\xc5\xb8\xc4\xb0\xd0\x80\xc5\xb9\xc4\xb9\xe2\x84\xab\xce\x91\xd0\x96");
        ASSERT_PARSE_ERROR("FROM x\nRUN\xc2\xa0x\n", "Dockerfile:2: unknown instruction: RUN\xc2\xa0x (did you mean run?)");
        ASSERT_PARSE_ERROR("FROM x\nthisisaverylonginstructionnamethatgoesonandonandonforeverandeverandever\n",
                           "Dockerfile:2: unknown instruction: thisisaverylonginstructionnamethatgoesonandonandonforeverandeverandever");
        ASSERT_PARSE_ERROR("\\\n\n", "Dockerfile:1: unknown instruction: ");
}

static const char heredoc_file[] =
        "FROM alpine\n"
        "RUN <<EMPTY\nEMPTY\n"                         /* 2 */
        "RUN 3<<EMPTY2\nEMPTY2\n"                      /* 3 */
        "RUN \"<<NOHEREDOC\"\n"                        /* 4 */
        "RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n" /* 5 */
        "RUN <<-'NOEXPAND'\n\tdon't $X\nNOEXPAND\n"    /* 6 */
        "COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n" /* 7 */
        "COPY <<X <<Y /dest\nY\nX\nX\nY\n"             /* 8 */
        "RUN <<eo'f'\necho foo\neof\n"                 /* 9 */
        "RUN <<eo\\'f\necho foo\neo'f\n"               /* 10 */
        "RUN <<'e'o\\'f\necho foo\neo'f\n"             /* 11 */
        "RUN <<'one two'\necho bar\none two\n"         /* 12 */
        "RUN <<$EOF\n$EOF\n"                           /* 13 */
        "RUN <<  EOF  > foo\nEOF\n"                    /* 14 */
        "RUN [\"<<EOF\"]\n"                            /* 15 */
        "ONBUILD RUN <<EOF\nhi\nEOF\n"                 /* 16 */
        "RUN --mount=type=cache,target=/x <<M\r\nwin\r\nM\r\n" /* 17 */
        "RUN <<A cat \\\n  <<B\na\nA\nb\nB\n"          /* 18 */
        "ENV X <<EOF\n"                                /* 19 */
        "RUN <<EOF${a:-b}\n"                           /* 20 */
        "RUN <<A'\n"                                   /* 21 */
        "RUN << -EOF\nx\n-EOF\n"                       /* 22 */
        "RUN <<\xef\xbb\xbf" "EOF\nEOF\n";             /* 23 */

static void test_heredocs(void)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse(heredoc_file);
        ASSERT(df);
        ASSERT_INTEQ(df->n_insts, 23);
        struct {
                size_t n;
                const char *name, *content;
                bool expand, chomp;
                int fd;
        } want[] = {
                { 0, NULL, NULL, 0, 0, 0 },
                { 1, "EMPTY", "", true, false, 0 },
                { 1, "EMPTY2", "", true, false, 3 },
                { 0, NULL, NULL, 0, 0, 0 },
                { 1, "UNINDENT2", "\tbaz\n\tquux\n", true, true, 0 },
                { 1, "NOEXPAND", "\tdon't $X\n", false, true, 0 },
                { 2, "FILE1", "content 1\n", true, false, 0 },
                { 2, "X", "Y\n", true, false, 0 },
                { 1, "eof", "echo foo\n", false, false, 0 },
                { 1, "eo'f", "echo foo\n", true, false, 0 },
                { 1, "eo'f", "echo foo\n", false, false, 0 },
                { 1, "one two", "echo bar\n", false, false, 0 },
                { 1, "$EOF", "", true, false, 0 },
                { 1, "EOF", "", true, false, 0 },
                { 0, NULL, NULL, 0, 0, 0 },
                { 1, "EOF", "hi\n", true, false, 0 },
                { 1, "M", "win\r\n", true, false, 0 },
                { 2, "A", "a\n", true, false, 0 },
                { 0, NULL, NULL, 0, 0, 0 },
                { 0, NULL, NULL, 0, 0, 0 },
                { 0, NULL, NULL, 0, 0, 0 },
                { 1, "-EOF", "x\n", true, false, 0 },
                { 1, "EOF", "", true, false, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                const struct ossb_df_instruction *in = &df->insts[i];
                if (in->n_heredocs != want[i].n)
                        fprintf(stderr, "# instruction %zu\n", i);
                ASSERT_INTEQ(in->n_heredocs, want[i].n);
                if (!want[i].n)
                        continue;
                ASSERT_STREQ(in->heredocs[0].name, want[i].name);
                ASSERT_STREQ(in->heredocs[0].content, want[i].content);
                ASSERT_INTEQ(in->heredocs[0].expand, want[i].expand);
                ASSERT_INTEQ(in->heredocs[0].chomp, want[i].chomp);
                ASSERT_INTEQ(in->heredocs[0].fd, want[i].fd);
        }
        ASSERT_STREQ(df->insts[6].heredocs[1].name, "FILE2");
        ASSERT_STREQ(df->insts[6].heredocs[1].content, "content 2\n");
        ASSERT_STREQ(df->insts[7].heredocs[1].content, "X\n");
        ASSERT_STREQ(df->insts[17].heredocs[1].name, "B");
        ASSERT_STREQ(df->insts[17].heredocs[1].content, "b\n");
        ASSERT_INTEQ(df->insts[4].line_start, 7);
        ASSERT_INTEQ(df->insts[4].line_end, 10);
        ASSERT_STREQ(df->insts[1].args[0], "<<EMPTY");
        /* a ONBUILD trigger's heredocs sit on the onbuild node */
        ASSERT(df->insts[15].sub && df->insts[15].sub->n_heredocs == 0);
        /* helpers */
        ASSERT(ossb_df_instruction_find_heredoc(&df->insts[6], "FILE2") == &df->insts[6].heredocs[1]);
        ASSERT(ossb_df_instruction_find_heredoc(&df->insts[6], "NOPE") == NULL);
}

static void test_heredoc_errors(void)
{
        ASSERT_PARSE_ERROR("FROM x\nRUN <<EOF\nabc\n", "Dockerfile:2: unterminated heredoc");
        ASSERT_PARSE_ERROR("FROM x\nCOPY <<A <<B /d\nA\n", "Dockerfile:2: unterminated heredoc");
        /* BuildKit's lexer splits the ${...} result at blanks: the second word is a heredoc
         * whose delimiter does not lex */
        ASSERT_PARSE_ERROR("FROM x\nRUN ${a:-\"x <<y\"}\n",
                           "Dockerfile:2: failed to process \"y\\\"}\": unexpected end of statement while looking for matching double-quote");
        ASSERT_PARSE_ERROR("RUN ${a:-'x <<y'}\n",
                           "Dockerfile:1: failed to process \"y'}\": unexpected end of statement while looking for matching single-quote");
        /* shapes the line lexer rejects: then no heredoc at all */
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("RUN <<EOF 'open\nRUN <<EOF ${\nRUN <<EOF ${}\n"
                                                               "RUN <<EOF ${a\nRUN <<EOF ${a:#b}\nRUN <<EOF ${a/b\n"
                                                               "RUN <<EOF ${a/b/c\nRUN <<EOF ${a:-b\nRUN <<EOF \"x\\\xc2\xa0\n"
                                                               "RUN <<EOF ${a.b}\nRUN <<EOF \"$\nRUN <<${a:-'}\n"
                                                               "RUN <<EOF ${a\nRUN <<EOF ${a:\n");
        ASSERT(df);
        ASSERT_INTEQ(df->n_insts, 14);
        for (size_t i = 0; i < df->n_insts; i++)
                ASSERT_INTEQ(df->insts[i].n_heredocs, 0);
}

static void test_heredoc_nesting(void)
{
        /* ${...} nests 128 deep at most in the heredoc lexer; deeper lines have no heredocs */
        for (size_t depth = 127; depth <= 129; depth++) {
                _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
                ASSERT(ossb_strbuf_append(&sb, "RUN <<EOF ") == 0);
                for (size_t k = 0; k < depth; k++)
                        ASSERT(ossb_strbuf_append(&sb, "${a:-") == 0);
                for (size_t k = 0; k < depth; k++)
                        ASSERT(ossb_strbuf_append_c(&sb, '}') == 0);
                ASSERT(ossb_strbuf_append(&sb, "\nEOF\nFROM x\n") == 0);
                if (depth <= 128) {
                        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse(sb.buf);
                        ASSERT(df && df->n_insts == 2 && df->insts[0].n_heredocs == 1);
                } else {
                        _cleanup_free_ char *e = parse_error(sb.buf);
                        ASSERT_STREQ(e, "Dockerfile:2: unknown instruction: EOF (did you mean ENV?)");
                }
        }
}

static void test_heredoc_lexer(void)
{
        /* the line lexer keeps ${...} forms as written; its words decide the names */
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse(
                "RUN <<A$x ${y} ${z:-1} ${z:+\"q\"} ${z#p} ${z%%p} ${z/a/b} ${z//a/b} ${z?m} $1 $@ $ \"$w\\$\\q\"\nA$x\n"
                "RUN x<<B \\\\ 2<<-C <<D'E' \"\\\"<<F\" <<G\\H\n\tC\nDE\nGH\n"
                "RUN <<H <H <<<I\nH\n"
                "RUN <<${J:-x}\n"
                "RUN <<\"K\\\"\"\nK\"\n"
                "RUN <<${L:x}\n"
                "RUN <<${M/a/b}\n"
                "RUN <<\"N$O\"\nN$O\n");
        ASSERT(df);
        ASSERT_INTEQ(df->n_insts, 8);
        ASSERT_INTEQ(df->insts[0].n_heredocs, 1);
        ASSERT_STREQ(df->insts[0].heredocs[0].name, "A$x");
        ASSERT_INTEQ(df->insts[1].n_heredocs, 3);
        ASSERT_STREQ(df->insts[1].heredocs[0].name, "C");
        ASSERT_INTEQ(df->insts[1].heredocs[0].fd, 2);
        ASSERT(df->insts[1].heredocs[0].chomp);
        ASSERT_STREQ(df->insts[1].heredocs[1].name, "DE");
        ASSERT(!df->insts[1].heredocs[1].expand);
        ASSERT_STREQ(df->insts[1].heredocs[2].name, "GH");
        ASSERT(df->insts[1].heredocs[2].expand);
        ASSERT_INTEQ(df->insts[2].n_heredocs, 1);
        /* a nested ${x<op>...} scan resets the words buffer Go shares: "<<" is lost */
        ASSERT_INTEQ(df->insts[3].n_heredocs, 0);
        ASSERT_STREQ(df->insts[4].heredocs[0].name, "K\"");
        ASSERT(!df->insts[4].heredocs[0].expand);
        ASSERT_INTEQ(df->insts[5].n_heredocs, 0);
        ASSERT_INTEQ(df->insts[6].n_heredocs, 0);
        ASSERT_STREQ(df->insts[7].heredocs[0].name, "N$O");
        ASSERT(!df->insts[7].heredocs[0].expand);

        /* names in ${...}: letters beyond ASCII count, punctuation does not */
        _cleanup_dockerfile_ struct ossb_dockerfile *u = parse("RUN <<${\xc3\xa9}\n${\xc3\xa9}\nRUN <<${\xe6\x97\xa5}\n"
                                                              "${\xe6\x97\xa5}\nRUN <<${\xe2\x80\x94}\nRUN <<${\xc3\x97}\n");
        ASSERT(u && u->n_insts == 4);
        ASSERT_STREQ(u->insts[0].heredocs[0].name, "${\xc3\xa9}");
        ASSERT_STREQ(u->insts[1].heredocs[0].name, "${\xe6\x97\xa5}");
        ASSERT_INTEQ(u->insts[2].n_heredocs, 0);
        ASSERT_INTEQ(u->insts[3].n_heredocs, 0);

        /* with ` as escape token a trailing backslash does not continue the line; the heredoc
         * lexer still treats it as an escape (at the very end: dropped, or an error in quotes) */
        _cleanup_dockerfile_ struct ossb_dockerfile *b = parse("# escape=`\nRUN <<EOF x\\\nEOF\nRUN <<EOF \"x\\\n");
        ASSERT(b && b->n_insts == 2);
        ASSERT_INTEQ(b->insts[0].n_heredocs, 1);
        ASSERT_INTEQ(b->insts[1].n_heredocs, 0);
}

static void test_heredoc_helpers(void)
{
        static const char *const valid[] = { "<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<-\"EOF\"",
                                             "<<EO\"F\"", "<< EOF", "<<- EOF" };
        static const char *const invalid[] = { "<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\"" };
        static const char *const not_heredocs[] = { "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "<<\"\"", "x<<EOF" };
        for (size_t i = 0; i < ELEMENTSOF(valid); i++) {
                struct ossb_df_heredoc h = { 0 };
                ASSERT_INTEQ(ossb_df_heredoc_parse_word(valid[i], &h, NULL), 1);
                ASSERT_STREQ(h.name, "EOF");
                ASSERT(!h.content);
                ossb_df_heredoc_clear(&h);
        }
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                struct ossb_df_heredoc h = { 0 };
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_df_heredoc_parse_word(invalid[i], &h, &err) < 0);
                ASSERT(err && err->exit_code == OSSB_EXIT_USAGE && strstr(err->msg, "failed to process"));
        }
        for (size_t i = 0; i < ELEMENTSOF(not_heredocs); i++) {
                struct ossb_df_heredoc h = { 0 };
                ASSERT_INTEQ(ossb_df_heredoc_parse_word(not_heredocs[i], &h, NULL), 0);
        }
        struct ossb_df_heredoc h = { 0 };
        ASSERT_INTEQ(ossb_df_heredoc_parse_word("99999999999999999999999<<E", &h, NULL), 1);
        ASSERT_INTEQ(h.fd, 2147483647);
        ossb_df_heredoc_clear(&h);
        ASSERT_INTEQ(ossb_df_heredoc_parse_word("4294967296<<E", &h, NULL), 1);
        ASSERT_INTEQ(h.fd, 2147483647);
        ossb_df_heredoc_clear(&h);
        ossb_df_heredoc_clear(NULL);

        _cleanup_free_ char *c = NULL;
        ASSERT(ossb_df_heredoc_chomp("\thello\n\t\tworld\n  \tx\t\n\t", &c) == 0);
        ASSERT_STREQ(c, "hello\nworld\n  \tx\t\n");
}

static void test_to_json(void)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = parse("# syntax=s\nFROM x\nRUN --m=\"a\\\"\" <<E\n\x01\xff\tq\r\nE\n"
                                                               "ONBUILD CMD [\"a\"]\n");
        _cleanup_free_ char *j = NULL;
        ASSERT(df);
        ASSERT(ossb_dockerfile_to_json(df, &j) == 0);
        ASSERT_STREQ(j,
                     "{\"path\":\"Dockerfile\",\"directives\":{\"escape\":\"\\\\\",\"syntax\":\"s\",\"check\":null},"
                     "\"instructions\":[{\"cmd\":\"from\",\"original\":\"FROM x\",\"line_start\":2,\"line_end\":2,"
                     "\"flags\":[],\"args\":[\"x\"],\"json\":false,\"heredocs\":[],\"sub\":null},"
                     "{\"cmd\":\"run\",\"original\":\"RUN --m=\\\"a\\\\\\\"\\\" <<E\",\"line_start\":3,\"line_end\":5,"
                     "\"flags\":[\"--m=a\\\"\"],\"args\":[\"<<E\"],\"json\":false,\"heredocs\":[{\"name\":\"E\","
                     "\"content\":\"\\u0001\xef\xbf\xbd\\tq\\r\\n\",\"expand\":true,\"chomp\":false,\"fd\":0}],\"sub\":null},"
                     "{\"cmd\":\"onbuild\",\"original\":\"ONBUILD CMD [\\\"a\\\"]\",\"line_start\":6,\"line_end\":6,"
                     "\"flags\":[],\"args\":[],\"json\":false,\"heredocs\":[],\"sub\":{\"cmd\":\"cmd\","
                     "\"original\":\"CMD [\\\"a\\\"]\",\"line_start\":6,\"line_end\":6,\"flags\":[],\"args\":[\"a\"],"
                     "\"json\":true,\"heredocs\":[],\"sub\":null}}],\"warnings\":[]}");
        _cleanup_dockerfile_ struct ossb_dockerfile *w = parse("FROM x\nRUN a \\\n\nb\n");
        _cleanup_free_ char *wj = NULL;
        ASSERT(w && ossb_dockerfile_to_json(w, &wj) == 0);
        ASSERT(strstr(wj, "\"warnings\":[\"Dockerfile:4: Empty continuation line found in: RUN a b\"]}"));
}

static void test_dump_quoting(void)
{
        /* strconv.Quote: control bytes, DEL, bad UTF-8, non-printable runes, astral runes */
        ASSERT_DUMP("LABEL a \x01\x07\x08\x0b\x0c\x7f\xc2\x85\xe2\x80\x8b\xf0\x9f\x98\x80\xee\x80\x80\xf3\xa0\x80\x81\n",
                    "(label \"a\" \"\\x01\\a\\b\\v\\f\\x7f\\u0085\\u200b\xf0\x9f\x98\x80\\ue000\\U000e0001\" \"\")");
        ASSERT_DUMP("LABEL a b\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\xe2\x82\n",
                    "(label \"a\" \"b\\xed\\xa0\\x80\\xc0\\xaf\\xf4\\x90\\x80\\x80\\xe2\\x82\" \"\")");
        ASSERT_DUMP("LABEL a b\xef\xbf\xbe\xf0\x9f\xbf\xbf\xef\xbf\xbd\n", "(label \"a\" \"b\\ufffe\\U0001ffff\xef\xbf\xbd\" \"\")");
}

static void test_limits(void)
{
        ASSERT_PARSE_ERROR("", "Dockerfile:1: file with no instructions");
        ASSERT_PARSE_ERROR("# only\n\n# comments\n", "Dockerfile:3: file with no instructions");
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse("D", "FROM x\nRUN a\0b\n", 14, &df, &err) < 0);
                ASSERT_STREQ(err->msg, "D:2: NUL byte in the Dockerfile");
        }
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse(NULL, NULL, 0, &df, &err) < 0);
                ASSERT_STREQ(err->msg, "Dockerfile:1: file with no instructions");
        }
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse("x", NULL, 3, &df, &err) == -EINVAL);
        }
        /* a line of 65535 bytes is fine, one more is too long (after or before instructions) */
        size_t big = OSSB_DF_MAX_LINE_LEN;
        _cleanup_free_ char *buf = malloc(big + 64);
        ASSERT(buf);
        memcpy(buf, "FROM x\nLABEL a=", 16);
        size_t pre = 15;
        memset(buf + pre, 'a', big - (pre - 7));
        buf[7 + big] = '\0';
        _cleanup_dockerfile_ struct ossb_dockerfile *ok = parse(buf);
        ASSERT(ok && ok->n_insts == 2);
        buf[7 + big] = 'a';
        buf[8 + big] = '\n';
        buf[9 + big] = '\0';
        ASSERT_PARSE_ERROR(buf, "Dockerfile:2: dockerfile line greater than max allowed size of 65535");
        ASSERT_PARSE_ERROR(buf + 7, "Dockerfile:1: file with no instructions");
        memcpy(buf, "FROM x\nRUN <<E\n", 15);
        memset(buf + 15, 'x', big + 1);
        memcpy(buf + 16 + big, "\nE\n", 4);
        ASSERT_PARSE_ERROR(buf, "Dockerfile:2: unterminated heredoc");

        /* too many lines, too many bytes */
        size_t nl = OSSB_DF_MAX_LINES + 1;
        _cleanup_free_ char *lines = malloc(nl + 16);
        ASSERT(lines);
        memcpy(lines, "FROM x", 6);
        memset(lines + 6, '\n', nl);
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse("D", lines, nl + 6, &df, &err) < 0);
                ASSERT_STREQ(err->msg, "D:1048577: more than 1048576 lines");
                ossb_error_free(TAKE_PTR(err));
                ASSERT(ossb_dockerfile_parse("D", lines, nl + 5, &df, &err) == 0);
        }
        {
                /* too many instructions */
                size_t n = OSSB_DF_MAX_INSTRUCTIONS + 1;
                _cleanup_free_ char *many = malloc(6 * n + 1);
                ASSERT(many);
                for (size_t k = 0; k < n; k++)
                        memcpy(many + 6 * k, "ARG a\n", 6);
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse("D", many, 6 * n, &df, &err) < 0);
                ASSERT_STREQ(err->msg, "D:65537: more than 65536 instructions");
                ossb_error_free(TAKE_PTR(err));
                ASSERT(ossb_dockerfile_parse("D", many, 6 * n - 6, &df, &err) == 0);
                ASSERT_INTEQ(df->n_insts, OSSB_DF_MAX_INSTRUCTIONS);
        }
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse("D", "FROM x", OSSB_DF_MAX_SIZE + 1, &df, &err) == -EFBIG);
                ASSERT(err && err->exit_code == OSSB_EXIT_USAGE);
        }
}

static void test_parse_file(void)
{
        char path[] = "/tmp/ossb-test-df-XXXXXX";
        int fd = mkstemp(path);
        ASSERT(fd >= 0);
        ASSERT(write(fd, "FROM a\n", 7) == 7);
        close(fd);
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse_file(path, &df, &err) == 0);
                ASSERT_STREQ(df->path, path);
        }
        {
                /* "-" reads stdin */
                int saved = dup(STDIN_FILENO), in = open(path, O_RDONLY | O_CLOEXEC);
                ASSERT(saved >= 0 && in >= 0);
                ASSERT(dup2(in, STDIN_FILENO) == STDIN_FILENO);
                close(in);
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                int r = ossb_dockerfile_parse_file("-", &df, &err);
                dup2(saved, STDIN_FILENO);
                close(saved);
                ASSERT(r == 0 && df->n_insts == 1);
        }
        unlink(path);
        {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                ASSERT(ossb_dockerfile_parse_file(path, &df, &err) < 0);
                ASSERT(err && err->exit_code == OSSB_EXIT_USAGE);
        }
        {
                int saved = dup(STDIN_FILENO), in = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT(saved >= 0 && in >= 0);
                ASSERT(dup2(in, STDIN_FILENO) == STDIN_FILENO);
                close(in);
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                int r = ossb_dockerfile_parse_file("-", &df, &err);
                dup2(saved, STDIN_FILENO);
                close(saved);
                ASSERT(r < 0 && err && err->exit_code == OSSB_EXIT_USAGE);
        }
        ossb_dockerfile_free(NULL);
}

int main(void)
{
        RUN_TEST(test_basic_dump);
        RUN_TEST(test_directives);
        RUN_TEST(test_comments_and_continuations);
        RUN_TEST(test_json_forms);
        RUN_TEST(test_numbers);
        RUN_TEST(test_env_label_arg);
        RUN_TEST(test_flags);
        RUN_TEST(test_healthcheck_onbuild);
        RUN_TEST(test_unknown_instruction);
        RUN_TEST(test_heredocs);
        RUN_TEST(test_heredoc_errors);
        RUN_TEST(test_heredoc_lexer);
        RUN_TEST(test_heredoc_nesting);
        RUN_TEST(test_heredoc_helpers);
        RUN_TEST(test_to_json);
        RUN_TEST(test_dump_quoting);
        RUN_TEST(test_limits);
        RUN_TEST(test_parse_file);
        TAP_END();
}
