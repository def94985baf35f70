/* tests/buildkit/shellexpand.c - runs BuildKit's shell lexer corpora (frontend/dockerfile/shell
 * envVarTest and wordsTest) against ossb_shell_expand / ossb_shell_expand_words, reading them
 * the way BuildKit's lex_test.go does.  Also expands one word from the command line, for
 * trying things by hand.
 *
 *   shellexpand envvar FILE     shellexpand words FILE     shellexpand [-w] WORD [K=V...]
 *
 * Prints each disagreement and a final "N passed, M failed, K skipped" line; exits 1 when
 * something failed.  Owns: nothing.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "engine/dockerfile/gorune.h"
#include "engine/dockerfile/shell.h"

struct tally {
        unsigned passed, failed, skipped;
};

/* Go's strings.TrimSpace (Unicode white space), in place; returns the start. */
static char *trim_space(char *s)
{
        size_t n = strlen(s), w, start = n, end = 0;
        for (size_t i = 0; i < n; i += w) {
                int32_t r = gorune_decode(s + i, n - i, &w);
                if (!gorune_is_space(r)) {
                        if (start == n)
                                start = i;
                        end = i + w;
                }
        }
        if (start == n)
                return s + n;
        s[end] = '\0';
        return s + start;
}

/* The next line of a bufio.Scanner: split on '\n', a trailing '\r' dropped. */
static char *next_line(char **cursor)
{
        char *s = *cursor;
        if (!s || !*s)
                return NULL;
        char *nl = strchr(s, '\n');
        if (nl) {
                *nl = '\0';
                *cursor = nl + 1;
        } else {
                *cursor = s + strlen(s);
        }
        size_t n = strlen(s);
        if (n > 0 && s[n - 1] == '\r')
                s[n - 1] = '\0';
        return s;
}

static int split(char *line, char **parts, int max)
{
        int n = 0;
        parts[n++] = line;
        for (char *p = line; *p; p++) {
                if (*p == '|') {
                        *p = '\0';
                        if (n == max)
                                return max + 1;
                        parts[n++] = p + 1;
                }
        }
        return n;
}

static void envvar_line(char *line, unsigned lineno, char **env, struct tally *t)
{
        char *parts[3];
        if (split(line, parts, 3) != 3) {
                printf("line %u: malformed (needs exactly two '|')\n", lineno);
                t->failed++;
                return;
        }
        const char *platform = trim_space(parts[0]), *source = trim_space(parts[1]);
        const char *expected = trim_space(parts[2]);
        if (!streq(platform, "A") && !streq(platform, "U")) {
                t->skipped++; /* "W": Windows only (case-insensitive variable names) */
                return;
        }
        _cleanup_free_ char *got = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_shell_expand(source, '\\', ossb_shell_lookup_strv, env, &got, &e);
        bool ok = streq(expected, "error") ? r < 0 : (r >= 0 && streq(got, expected));
        if (ok) {
                t->passed++;
                return;
        }
        t->failed++;
        printf("envVarTest:%u: %s -> %s, expected %s\n", lineno, source, r < 0 ? e->msg : got, expected);
}

static int run_envvar(char *data, struct tally *t)
{
        char *env[] = { "PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL=", NULL };
        unsigned lineno = 0;
        for (char *cur = data, *line; (line = next_line(&cur));) {
                lineno++;
                if (line[0] == '#')
                        continue;
                line = trim_space(line);
                if (*line)
                        envvar_line(line, lineno, env, t);
        }
        return 0;
}

static bool words_equal(char **got, char *expected)
{
        size_t i = 0;
        for (char *p = expected;; i++) {
                char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);
                if (!got[i] || strlen(got[i]) != n || strncmp(got[i], p, n) != 0)
                        return false;
                if (!comma)
                        return got[i + 1] == NULL;
                p = comma + 1;
        }
}

static void print_words(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                printf("%s%s", i ? "," : "", v[i]);
}

static int words_line(char *line, unsigned lineno, char **env, struct tally *t)
{
        char *parts[2];
        if (split(line, parts, 2) != 2) {
                printf("wordsTest:%u: malformed (needs exactly one '|')\n", lineno);
                t->failed++;
                return 0;
        }
        const char *test = trim_space(parts[0]);
        char *expected = parts[1] + strspn(parts[1], " ");
        _cleanup_strv_free_ char **got = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        if (ossb_shell_expand_words(test, '\\', ossb_shell_lookup_strv, env, &got, &e) < 0) {
                ossb_strv_free(got);
                got = NULL;
                if (ossb_strv_push(&got, "error") < 0)
                        return -1;
        }
        if (words_equal(got, expected)) {
                t->passed++;
                return 0;
        }
        t->failed++;
        printf("wordsTest:%u: %s -> ", lineno, test);
        print_words(got);
        printf(", expected %s\n", expected);
        return 0;
}

static int run_words(char *data, struct tally *t)
{
        _cleanup_strv_free_ char **env = ossb_strv_new_empty();
        unsigned lineno = 0;
        if (!env)
                return -1;
        for (char *cur = data, *line; (line = next_line(&cur));) {
                lineno++;
                if (line[0] == '#')
                        continue;
                if (strncmp(line, "ENV ", 4) == 0) {
                        if (ossb_strv_push(&env, line + 3 + strspn(line + 3, " ")) < 0)
                                return -1;
                        continue;
                }
                if (words_line(line, lineno, env, t) < 0)
                        return -1;
        }
        return 0;
}

static int expand_one(int argc, char **argv)
{
        bool words = argc > 1 && streq(argv[1], "-w");
        int i = words ? 2 : 1;
        if (i >= argc) {
                fprintf(stderr, "usage: shellexpand envvar|words FILE | [-w] WORD [K=V...]\n");
                return 2;
        }
        char **env = argv + i + 1;
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_free_ char *got = NULL;
        _cleanup_strv_free_ char **v = NULL;
        int r = ossb_shell_expand_full(argv[i], '\\', 0, ossb_shell_lookup_strv, env, words ? NULL : &got,
                                       words ? &v : NULL, &e);
        if (r < 0) {
                printf("error: %s\n", e->msg);
                return 1;
        }
        if (words) {
                for (size_t k = 0; v[k]; k++)
                        printf("[%s]\n", v[k]);
        } else {
                printf("%s\n", got);
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc != 3 || (!streq(argv[1], "envvar") && !streq(argv[1], "words")))
                return expand_one(argc, argv);

        _cleanup_free_ char *data = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        size_t len;
        if (ossb_read_file(argv[2], 1 << 24, &data, &len, &e) < 0) {
                fprintf(stderr, "shellexpand: %s\n", e->msg);
                return 2;
        }
        struct tally t = { 0 };
        int r = streq(argv[1], "envvar") ? run_envvar(data, &t) : run_words(data, &t);
        if (r < 0) {
                fprintf(stderr, "shellexpand: out of memory\n");
                return 2;
        }
        printf("%u passed, %u failed, %u skipped\n", t.passed, t.failed, t.skipped);
        return t.failed ? 1 : 0;
}
