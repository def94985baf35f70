/* engine/dockerfile/parser-args.c - one logical line -> command, flags and arguments.
 *
 * BuildKit's splitCommand / extractBuilderFlags and its dispatch table of line parsers
 * (parseStringsWhitespaceDelimited, parseMaybeJSON, parseMaybeJSONToList, parseEnv/parseLabel
 * with parseWords, parseNameOrNameVal, parseString, parseHealthConfig, parseSubCommand).
 * Quotes and escapes stay in the arguments as written; nothing is expanded.
 *
 * Differences from BuildKit, on purpose: unknown instructions and a SHELL not in JSON form are
 * errors here already (BuildKit's parser keeps them and its instructions package rejects them);
 * flag words and the HEALTHCHECK type word are scanned as UTF-8 runes (BuildKit scans bytes, so
 * it takes bytes 0x85 and 0xA0 inside UTF-8 sequences for blanks, and re-encodes non-ASCII flag
 * bytes as Latin-1: `--chown=é` becomes "Ã©"); JSON strings holding \u0000 are refused (C
 * strings cannot carry them); ONBUILD nests at most OSSB_DF_MAX_ONBUILD_DEPTH.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "engine/dockerfile/parser-internal.h"

typedef int (*line_parser)(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst);

static bool is_ascii_ws(char c)
{
        return c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == ' ';
}

void df_instruction_clear(struct ossb_df_instruction *inst)
{
        if (!inst)
                return;
        free(inst->cmd);
        free(inst->original);
        ossb_strv_free(inst->flags);
        ossb_strv_free(inst->args);
        df_heredocs_free(inst->heredocs, inst->n_heredocs);
        if (inst->sub) {
                df_instruction_clear(inst->sub);
                free(inst->sub);
        }
        memset(inst, 0, sizeof(*inst));
}

/* Append a copy of s[0..len) to the vector *v of *n strings (see df_strv_add). */
static int push_n(char ***v, size_t *n, const char *s, size_t len)
{
        return df_strv_add(v, n, strndup(s, len));
}

static int push(char ***v, const char *s)
{
        size_t n = ossb_strv_length(*v);
        return df_strv_add(v, &n, strdup(s));
}

/* regexp `[\t\v\f\r ]+` Split(s, -1) of a non-empty string without leading/trailing blanks */
static int split_ws(const char *s, char ***v)
{
        size_t n = ossb_strv_length(*v);
        int r = 0;
        while (r >= 0 && *s) {
                size_t k = 0;
                while (s[k] && !is_ascii_ws(s[k]))
                        k++;
                r = push_n(v, &n, s, k);
                s += k;
                while (is_ascii_ws(*s))
                        s++;
        }
        return r;
}

/* Append the bytes of the rune at s (width w): valid runes as they are, a bad byte as U+FFFD
 * (Go's strings.Builder.WriteRune of utf8.RuneError). */
static int put_rune(struct ossb_strbuf *sb, const char *s, size_t w, uint32_t r)
{
        if (r == DF_RUNE_ERROR && w == 1)
                return df_utf8_put(sb, r);
        return ossb_strbuf_append_n(sb, s, w);
}

enum { IN_SPACES, IN_WORD, IN_QUOTE };

int df_parse_words(const char *s, char escape, char ***ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        _cleanup_strv_free_ char **words = NULL;
        size_t n = strlen(s), w = 0, nw = 0;
        int phase = IN_SPACES, r = 0;
        uint32_t ch = 0, quote = 0;
        bool blank_ok = false;

        for (size_t pos = 0; r >= 0 && pos <= n; pos += w) {
                if (pos != n)
                        w = df_utf8_decode(s + pos, n - pos, &ch);
                if (phase == IN_SPACES) {
                        if (pos == n)
                                break;
                        if (df_is_space(ch))
                                continue;
                        phase = IN_WORD;
                }
                if (pos == n) {
                        if (blank_ok || sb.len > 0)
                                r = push_n(&words, &nw, sb.buf ? sb.buf : "", sb.len);
                        break;
                }
                if (phase == IN_WORD) {
                        if (df_is_space(ch)) {
                                phase = IN_SPACES;
                                if (blank_ok || sb.len > 0)
                                        r = push_n(&words, &nw, sb.buf ? sb.buf : "", sb.len);
                                ossb_strbuf_reset(&sb);
                                blank_ok = false;
                                continue;
                        }
                        if (ch == '\'' || ch == '"') {
                                quote = ch;
                                blank_ok = true;
                                phase = IN_QUOTE;
                        }
                        if (ch == (uint32_t) escape) {
                                if (pos + w == n)
                                        continue;
                                r = put_rune(&sb, s + pos, w, ch);
                                pos += w;
                                w = df_utf8_decode(s + pos, n - pos, &ch);
                        }
                        if (r >= 0)
                                r = put_rune(&sb, s + pos, w, ch);
                        continue;
                }
                /* IN_QUOTE */
                if (ch == quote)
                        phase = IN_WORD;
                if (ch == (uint32_t) escape && quote != '\'') {
                        if (pos + w == n) {
                                phase = IN_WORD;
                                continue;
                        }
                        r = put_rune(&sb, s + pos, w, ch);
                        pos += w;
                        w = df_utf8_decode(s + pos, n - pos, &ch);
                }
                if (r >= 0)
                        r = put_rune(&sb, s + pos, w, ch);
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(words);
        return 0;
}

/* extractBuilderFlags: the leading --flags of s (quotes and escapes processed); *ret_rest
 * points into s at what follows them. */
static int extract_flags(const char *s, char escape, char ***ret_flags, const char **ret_rest)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        size_t n = strlen(s), w = 0, nf = 0;
        int phase = IN_SPACES, r = 0;
        uint32_t ch = 0, quote = 0;
        bool blank_ok = false;

        *ret_rest = s + n;
        for (size_t pos = 0; r >= 0 && pos <= n; pos += w) {
                if (pos != n)
                        w = df_utf8_decode(s + pos, n - pos, &ch);
                if (phase == IN_SPACES) {
                        if (pos == n)
                                break;
                        if (df_is_space(ch))
                                continue;
                        if (ch != '-' || pos + 1 == n || s[pos + 1] != '-') {
                                *ret_rest = s + pos;
                                break;
                        }
                        phase = IN_WORD;
                }
                if (pos == n) {
                        if (!(sb.len == 2 && streq(sb.buf, "--")) && (blank_ok || sb.len > 0))
                                r = push_n(ret_flags, &nf, sb.buf ? sb.buf : "", sb.len);
                        break;
                }
                if (phase == IN_WORD && df_is_space(ch)) {
                        phase = IN_SPACES;
                        if (sb.len == 2 && streq(sb.buf, "--")) {
                                *ret_rest = s + pos;
                                break;
                        }
                        if (blank_ok || sb.len > 0)
                                r = push_n(ret_flags, &nf, sb.buf ? sb.buf : "", sb.len);
                        ossb_strbuf_reset(&sb);
                        blank_ok = false;
                        continue;
                }
                if (phase == IN_WORD && (ch == '\'' || ch == '"')) {
                        quote = ch;
                        blank_ok = true;
                        phase = IN_QUOTE;
                        continue;
                }
                if (phase == IN_QUOTE && ch == quote) {
                        phase = IN_WORD;
                        continue;
                }
                if (ch == (uint32_t) escape) {
                        if (pos + 1 == n) {
                                phase = IN_WORD;
                                continue;
                        }
                        pos++;
                        w = df_utf8_decode(s + pos, n - pos, &ch);
                }
                r = ossb_strbuf_append_n(&sb, s + pos, w);
        }
        return r;
}

static int parse_string(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        if (!*rest)
                return 0;
        return push(&inst->args, rest) < 0 ? df_oom(ctx->err) : 0;
}

static int parse_ws_list(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        return split_ws(rest, &inst->args) < 0 ? df_oom(ctx->err) : 0;
}

/* parseJSON; returns 1 when rest was a JSON array of strings, 0 when not JSON. */
static int parse_json(const struct df_ctx *ctx, const char *rest, struct ossb_df_instruction *inst)
{
        char **items = NULL;
        int r = df_json_parse_strings(rest, strlen(rest), &items);
        switch (r) {
        case DF_JSON_OK:
                inst->json = true;
                size_t n = ossb_strv_length(inst->args);
                for (size_t i = 0; items[i]; i++) {
                        if (df_strv_add(&inst->args, &n, TAKE_PTR(items[i])) < 0) {
                                ossb_strv_free(items);
                                return df_oom(ctx->err);
                        }
                }
                free(items);
                return 1;
        case DF_JSON_INVALID:
                return 0;
        case DF_JSON_NOT_STRINGS:
                return df_fail(ctx, "when using JSON array syntax, arrays must be comprised of strings only");
        case DF_JSON_NUL:
                return df_fail(ctx, "JSON strings holding \\u0000 are not supported");
        default:
                return df_oom(ctx->err);
        }
}

static int parse_maybe_json(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        if (!*rest)
                return 0;
        int r = parse_json(ctx, rest, inst);
        if (r != 0)
                return r < 0 ? r : 0;
        if (streq(inst->cmd, "shell"))
                return df_fail(ctx, "SHELL requires the arguments to be in JSON form");
        return parse_string(ctx, rest, depth, inst);
}

static int parse_maybe_json_list(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        int r = parse_json(ctx, rest, inst);
        if (r != 0)
                return r < 0 ? r : 0;
        return parse_ws_list(ctx, rest, depth, inst);
}

static int parse_name_val(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        _cleanup_strv_free_ char **words = NULL;
        size_t na = 0;
        if (df_parse_words(rest, ctx->escape, &words) < 0)
                return df_oom(ctx->err);
        if (!words)
                return 0;
        if (!strchr(words[0], '=')) {
                size_t k = 0;
                while (rest[k] && !is_ascii_ws(rest[k]))
                        k++;
                if (!rest[k])
                        return df_fail(ctx, "%s must have two arguments", streq(inst->cmd, "env") ? "ENV" : "LABEL");
                const char *v = rest + k;
                while (is_ascii_ws(*v))
                        v++;
                inst->kv_legacy = true;
                if (push_n(&inst->args, &na, rest, k) < 0 || push_n(&inst->args, &na, v, strlen(v)) < 0)
                        return df_oom(ctx->err);
                return 0;
        }
        for (size_t i = 0; words[i]; i++) {
                char *eq = strchr(words[i], '=');
                if (!eq) {
                        _cleanup_free_ char *q = df_go_quoted(words[i]);
                        if (!q)
                                return df_oom(ctx->err);
                        return df_fail(ctx, "Syntax error - can't find = in %s. Must be of the form: name=value", q);
                }
                if (push_n(&inst->args, &na, words[i], (size_t) (eq - words[i])) < 0 ||
                    push_n(&inst->args, &na, eq + 1, strlen(eq + 1)) < 0)
                        return df_oom(ctx->err);
        }
        return 0;
}

static int parse_name_or_name_val(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        return df_parse_words(rest, ctx->escape, &inst->args) < 0 ? df_oom(ctx->err) : 0;
}

static int parse_health(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        size_t n = strlen(rest), sep = 0, nx;
        uint32_t ch;
        while (sep < n) {
                size_t w = df_utf8_decode(rest + sep, n - sep, &ch);
                if (df_is_space(ch))
                        break;
                sep += w;
        }
        if (sep == 0)
                return 0;
        nx = sep + df_space_prefix(rest + sep, n - sep);
        size_t na = 0;
        if (push_n(&inst->args, &na, rest, sep) < 0)
                return df_oom(ctx->err);
        return parse_maybe_json(ctx, rest + nx, depth, inst);
}

static int parse_sub(const struct df_ctx *ctx, const char *rest, int depth, struct ossb_df_instruction *inst)
{
        if (!*rest)
                return 0;
        if (depth + 1 >= OSSB_DF_MAX_ONBUILD_DEPTH)
                return df_fail(ctx, "ONBUILD nested more than %d deep", OSSB_DF_MAX_ONBUILD_DEPTH - 1);
        inst->sub = calloc(1, sizeof(*inst->sub));
        if (!inst->sub)
                return df_oom(ctx->err);
        return df_parse_line(ctx, rest, depth + 1, inst->sub);
}

static const struct {
        const char *name;
        line_parser fn;
} dispatch[] = {
        { "add", parse_maybe_json_list },     { "arg", parse_name_or_name_val }, { "cmd", parse_maybe_json },
        { "copy", parse_maybe_json_list },    { "entrypoint", parse_maybe_json }, { "env", parse_name_val },
        { "expose", parse_ws_list },          { "from", parse_ws_list },          { "healthcheck", parse_health },
        { "label", parse_name_val },          { "maintainer", parse_string },     { "onbuild", parse_sub },
        { "run", parse_maybe_json },          { "shell", parse_maybe_json },      { "stopsignal", parse_string },
        { "user", parse_string },             { "volume", parse_maybe_json_list }, { "workdir", parse_string },
};

static int unknown_instruction(const struct df_ctx *ctx, const char *cmd)
{
        const char *names[ELEMENTSOF(dispatch)];
        char buf[32];
        for (size_t i = 0; i < ELEMENTSOF(dispatch); i++)
                names[i] = dispatch[i].name;
        const char *m = df_suggest(cmd, names, ELEMENTSOF(names), false, buf, sizeof(buf));
        if (m)
                return df_fail(ctx, "unknown instruction: %s (did you mean %s?)", cmd, m);
        return df_fail(ctx, "unknown instruction: %s", cmd);
}

int df_parse_line(const struct df_ctx *ctx, const char *line, int depth, struct ossb_df_instruction *inst)
{
        size_t lead = df_space_prefix(line, strlen(line));
        const char *s = line + lead;
        size_t n = df_trim_right_len(s, strlen(s)), k = 0;
        _cleanup_free_ char *cmd = NULL, *rest = NULL;
        const char *args = "";

        inst->original = strdup(line);
        if (!inst->original)
                return df_oom(ctx->err);
        while (k < n && !is_ascii_ws(s[k]))
                k++;
        cmd = strndup(s, k);
        if (!cmd)
                return df_oom(ctx->err);
        if (k < n) {
                _cleanup_free_ char *tail = NULL;
                size_t a = k;
                while (is_ascii_ws(s[a]))
                        a++;
                tail = strndup(s + a, n - a);
                if (!tail || extract_flags(tail, ctx->escape, &inst->flags, &args) < 0)
                        return df_oom(ctx->err);
                size_t al = strlen(args), skip = df_space_prefix(args, al);
                rest = strndup(args + skip, df_trim_right_len(args + skip, al - skip));
        } else {
                rest = strdup("");
        }
        inst->cmd = df_go_lower(cmd, k);
        if (!rest || !inst->cmd)
                return df_oom(ctx->err);
        line_parser fn = NULL;
        for (size_t i = 0; i < ELEMENTSOF(dispatch); i++)
                if (streq(inst->cmd, dispatch[i].name))
                        fn = dispatch[i].fn;
        if (!fn)
                return unknown_instruction(ctx, cmd);
        int r = fn(ctx, rest, depth, inst);
        if (r < 0)
                return r;
        /* never NULL: "present and empty" when there are none */
        if ((!inst->args && !(inst->args = ossb_strv_new_empty())) ||
            (!inst->flags && !(inst->flags = ossb_strv_new_empty())))
                return df_oom(ctx->err);
        return 0;
}
