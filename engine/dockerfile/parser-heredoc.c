/* engine/dockerfile/parser-heredoc.c - finding heredocs in an instruction line.
 *
 * BuildKit finds them by running its shell lexer (frontend/dockerfile/shell, with no variables
 * set and unset ones kept as written) over the whole line, then matching each word against
 * ^(\d*)<<(-?)\s*([^<]*)$ and lexing the delimiter word twice (with and without quotes) to learn
 * whether it was quoted.  This file reproduces that lexer's word splitting, including its
 * quirks (one words buffer shared by nested ${...} scans, "<<" plus following blanks kept in
 * the word, a leading U+FEFF ignored), because the heredoc names and whether content expands
 * depend on them.  Nothing is expanded here.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "engine/dockerfile/parser-internal.h"

#define L_EOF (-1)
/* ${...} may nest inside ${...}; each level recurses, so hostile input is cut off here (Go's
 * growable stacks have no such limit, real Dockerfiles never come near it). */
#define MAX_NESTING 128

struct lex {
        const char *s;
        size_t n, pos;
        bool raw_quotes;
        bool raw_escapes;
        struct ossb_strbuf wbuf; /* the words buffer, shared by nested scans (as in Go) */
        char *msg;               /* first error message */
        unsigned depth;          /* ${ nesting */
};

struct words {
        char **v;
        size_t n;
        bool in_word;
};

static int32_t peek(struct lex *l)
{
        uint32_t r;
        if (l->pos >= l->n)
                return L_EOF;
        df_utf8_decode(l->s + l->pos, l->n - l->pos, &r);
        return (int32_t) r;
}

static int32_t next(struct lex *l)
{
        uint32_t r;
        if (l->pos >= l->n)
                return L_EOF;
        l->pos += df_utf8_decode(l->s + l->pos, l->n - l->pos, &r);
        return (int32_t) r;
}

/* Record the message a + b + c. */
static int lex_fail(struct lex *l, const char *a, const char *b, const char *c)
{
        free(l->msg);
        if (asprintf(&l->msg, "%s%s%s", a, b, c) < 0) {
                l->msg = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static int put(struct ossb_strbuf *sb, int32_t r)
{
        return df_utf8_put(sb, r < 0 ? DF_RUNE_ERROR : (uint32_t) r);
}

static int words_flush(struct lex *l, struct words *w)
{
        if (l->wbuf.len == 0)
                return 0;
        char *s = strdup(l->wbuf.buf);
        ossb_strbuf_reset(&l->wbuf);
        w->in_word = false;
        if (!s)
                return -ENOMEM;
        return df_strv_add(&w->v, &w->n, s);
}

static int add_raw_char(struct lex *l, struct words *w, int32_t ch)
{
        w->in_word = true;
        return put(&l->wbuf, ch);
}

static int add_char(struct lex *l, struct words *w, int32_t ch)
{
        bool space = ch >= 0 && df_is_space((uint32_t) ch);
        if (space && w->in_word)
                return words_flush(l, w);
        if (!space)
                return add_raw_char(l, w, ch);
        return 0;
}

static int add_string(struct lex *l, struct words *w, const char *s, size_t n)
{
        int r = 0;
        for (size_t i = 0; r >= 0 && i < n;) {
                uint32_t c;
                i += df_utf8_decode(s + i, n - i, &c);
                r = add_char(l, w, (int32_t) c);
        }
        return r;
}

static int stop_on(struct lex *l, int32_t stop, bool raw_escapes, struct ossb_strbuf *result, char ***ret_words);

static int single_quote(struct lex *l, struct ossb_strbuf *out)
{
        int32_t ch = next(l);
        int r = l->raw_quotes ? put(out, ch) : 0;
        while (r >= 0) {
                ch = next(l);
                if (ch == L_EOF)
                        return lex_fail(l, "unexpected end of statement while looking for matching single-quote", "", "");
                if (ch == '\'')
                        return l->raw_quotes ? put(out, ch) : 0;
                r = put(out, ch);
        }
        return r;
}

static int dollar(struct lex *l, struct ossb_strbuf *out);

static int double_quote(struct lex *l, struct ossb_strbuf *out)
{
        int32_t ch = next(l);
        int r = l->raw_quotes ? put(out, ch) : 0;
        while (r >= 0) {
                int32_t p = peek(l);
                if (p == L_EOF)
                        return lex_fail(l, "unexpected end of statement while looking for matching double-quote", "", "");
                if (p == '"') {
                        ch = next(l);
                        return l->raw_quotes ? put(out, ch) : 0;
                }
                if (p == '$') {
                        r = dollar(l, out);
                        continue;
                }
                ch = next(l);
                if (ch == '\\') {
                        if (l->raw_escapes && (r = put(out, ch)) < 0)
                                return r;
                        p = peek(l);
                        if (p == L_EOF)
                                continue;
                        if (p == '"' || p == '$' || p == '\\')
                                ch = next(l);
                }
                r = put(out, ch);
        }
        return r;
}

static int name(struct lex *l, struct ossb_strbuf *out)
{
        int r = 0;
        while (r >= 0 && peek(l) != L_EOF) {
                int32_t ch = peek(l);
                if (out->len == 0 && df_is_digit((uint32_t) ch)) {
                        while (r >= 0 && peek(l) != L_EOF && df_is_digit((uint32_t) peek(l)))
                                r = put(out, next(l));
                        return r;
                }
                if (out->len == 0 && ch < 0x80 && strchr("@*#?-$!0", (char) ch) && ch != 0)
                        return put(out, next(l));
                if (!df_is_letter((uint32_t) ch) && !df_is_digit((uint32_t) ch) && ch != '_')
                        break;
                r = put(out, next(l));
        }
        if (r >= 0)
                r = ossb_strbuf_append(out, ""); /* make buf non-NULL */
        return r;
}

/* The ${name<op>word} forms; out gets them back as written (nothing is set). */
static int dollar_modifier(struct lex *l, const char *nm, int32_t ch, struct ossb_strbuf *out)
{
        _cleanup_strbuf_ struct ossb_strbuf chs = OSSB_STRBUF_INIT, word = OSSB_STRBUF_INIT;
        bool null_is_unset = false;
        int r = put(&chs, ch);
        if (r < 0)
                return r;
        if (ch == ':') {
                null_is_unset = true;
                ch = next(l);
                if ((r = put(&chs, ch)) < 0)
                        return r;
        }
        bool raw = ch == '#' || ch == '%';
        if (null_is_unset && raw)
                return lex_fail(l, "unsupported modifier (", chs.buf, ") in substitution");
        r = stop_on(l, '}', raw, &word, NULL);
        if (r == -EINVAL && peek(l) == L_EOF)
                return lex_fail(l, "syntax error: missing '}'", "", "");
        if (r < 0)
                return r;
        return ossb_strbuf_appendf(out, "${%s%s%s}", nm, chs.buf, word.buf ? word.buf : "");
}

static int dollar_replace(struct lex *l, const char *nm, struct ossb_strbuf *out)
{
        _cleanup_strbuf_ struct ossb_strbuf pattern = OSSB_STRBUF_INIT, repl = OSSB_STRBUF_INIT;
        if (peek(l) == '/')
                next(l);
        int r = stop_on(l, '/', true, &pattern, NULL);
        if (r == -EINVAL && peek(l) == L_EOF)
                return lex_fail(l, "syntax error: missing '/' in ${}", "", "");
        if (r < 0)
                return r;
        r = stop_on(l, '}', true, &repl, NULL);
        if (r == -EINVAL && peek(l) == L_EOF)
                return lex_fail(l, "syntax error: missing '}'", "", "");
        if (r < 0)
                return r;
        return ossb_strbuf_appendf(out, "${%s/%s/%s}", nm, pattern.buf ? pattern.buf : "", repl.buf ? repl.buf : "");
}

static int dollar_braced(struct lex *l, struct ossb_strbuf *out);

static int dollar(struct lex *l, struct ossb_strbuf *out)
{
        _cleanup_strbuf_ struct ossb_strbuf nm = OSSB_STRBUF_INIT;
        int r;
        next(l);
        if (peek(l) == '{') {
                if (l->depth >= MAX_NESTING)
                        return lex_fail(l, "${...} nested too deeply", "", "");
                l->depth++;
                r = dollar_braced(l, out);
                l->depth--;
                return r;
        }
        if ((r = name(l, &nm)) < 0)
                return r;
        return ossb_strbuf_appendf(out, "$%s", nm.buf);
}

/* ${name}, ${name<op>word}, ${name/pattern/replacement}: given back as written. */
static int dollar_braced(struct lex *l, struct ossb_strbuf *out)
{
        _cleanup_strbuf_ struct ossb_strbuf nm = OSSB_STRBUF_INIT;
        int r;
        next(l);
        int32_t p = peek(l);
        if (p == L_EOF)
                return lex_fail(l, "syntax error: missing '}'", "", "");
        if (p == '{' || p == '}' || p == ':')
                return lex_fail(l, "syntax error: bad substitution", "", "");
        if ((r = name(l, &nm)) < 0)
                return r;
        int32_t ch = next(l);
        switch (ch) {
        case '}':
                return ossb_strbuf_appendf(out, "${%s}", nm.buf);
        case ':': case '+': case '-': case '?': case '#': case '%':
                return dollar_modifier(l, nm.buf, ch, out);
        case '/':
                return dollar_replace(l, nm.buf, out);
        default: {
                _cleanup_strbuf_ struct ossb_strbuf chs = OSSB_STRBUF_INIT;
                if ((r = put(&chs, ch)) < 0)
                        return r;
                return lex_fail(l, "unsupported modifier (", chs.buf, ") in substitution");
        }
        }
}

static int possible_heredoc(struct lex *l, struct ossb_strbuf *out)
{
        next(l);
        if (peek(l) != '<')
                return ossb_strbuf_append(out, "<");
        next(l);
        int r = ossb_strbuf_append(out, "<<");
        while (r >= 0 && (peek(l) == '\t' || peek(l) == '\r' || peek(l) == ' '))
                r = put(out, next(l));
        return r;
}

static int special(struct lex *l, int32_t ch, struct ossb_strbuf *tmp)
{
        switch (ch) {
        case '$': return dollar(l, tmp);
        case '<': return possible_heredoc(l, tmp);
        case '\'': return single_quote(l, tmp);
        default: return double_quote(l, tmp);
        }
}

/* An ordinary character (or an escape and the character it escapes). */
static int plain(struct lex *l, struct words *w, struct ossb_strbuf *result, bool *ret_stop)
{
        int r;
        int32_t ch = next(l);
        if (ch == '\\') {
                if (l->raw_escapes && ((r = add_raw_char(l, w, ch)) < 0 || (r = put(result, ch)) < 0))
                        return r;
                ch = next(l);
                if (ch == L_EOF) {
                        *ret_stop = true;
                        return 0;
                }
                r = add_raw_char(l, w, ch);
        } else {
                r = add_char(l, w, ch);
        }
        return r < 0 ? r : put(result, ch);
}

static int stop_on(struct lex *l, int32_t stop, bool raw_escapes, struct ossb_strbuf *result, char ***ret_words)
{
        struct words w = { NULL, 0, false };
        bool saved = l->raw_escapes, at_end = false, found = false;
        int r = ossb_strbuf_append(result, "");

        ossb_strbuf_reset(&l->wbuf);
        l->raw_escapes = raw_escapes;
        while (r >= 0 && !at_end && peek(l) != L_EOF) {
                int32_t ch = peek(l);
                if (stop != L_EOF && ch == stop) {
                        next(l);
                        found = true;
                        break;
                }
                if (ch == '$' || ch == '<' || ch == '\'' || ch == '"') {
                        _cleanup_strbuf_ struct ossb_strbuf tmp = OSSB_STRBUF_INIT;
                        r = special(l, ch, &tmp);
                        if (r >= 0 && tmp.len > 0)
                                r = ossb_strbuf_append_n(result, tmp.buf, tmp.len);
                        if (r >= 0 && ch == '$') {
                                r = add_string(l, &w, tmp.buf, tmp.len);
                        } else if (r >= 0) {
                                w.in_word = true;
                                if (tmp.len > 0)
                                        r = ossb_strbuf_append_n(&l->wbuf, tmp.buf, tmp.len);
                        }
                        continue;
                }
                r = plain(l, &w, result, &at_end);
        }
        l->raw_escapes = saved;
        if (r >= 0 && stop != L_EOF && !found) {
                char c[2] = { (char) stop, 0 };
                r = lex_fail(l, "unexpected end of statement while looking for matching ", c, "");
        }
        if (r >= 0)
                r = words_flush(l, &w);
        if (r >= 0 && ret_words)
                *ret_words = TAKE_PTR(w.v);
        ossb_strv_free(w.v);
        return r;
}

/* ProcessWords: the words of s.  Errors leave a message in *ret_msg (unless ENOMEM). */
static int lex_words(const char *s, bool raw_quotes, bool raw_escapes, char ***ret, char **ret_msg)
{
        struct lex l = { .s = s, .n = strlen(s), .raw_quotes = raw_quotes, .raw_escapes = raw_escapes };
        _cleanup_strbuf_ struct ossb_strbuf result = OSSB_STRBUF_INIT;
        char **words = NULL;
        uint32_t first;

        if (l.n > 0 && df_utf8_decode(s, l.n, &first) == 3 && first == 0xFEFF)
                l.pos = 3; /* text/scanner drops a leading byte order mark */
        int r = stop_on(&l, L_EOF, raw_escapes, &result, &words);
        ossb_strbuf_free(&l.wbuf);
        if (r < 0) {
                ossb_strv_free(words);
                if (ret_msg)
                        *ret_msg = TAKE_PTR(l.msg);
                free(l.msg);
                return r;
        }
        free(l.msg);
        *ret = words;
        return 0;
}

static size_t count_quotes(const char *s)
{
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\'' || *s == '"';
        return n;
}

void df_heredocs_free(struct ossb_df_heredoc *h, size_t n)
{
        for (size_t i = 0; h && i < n; i++)
                ossb_df_heredoc_clear(&h[i]);
        free(h);
}

void ossb_df_heredoc_clear(struct ossb_df_heredoc *h)
{
        if (!h)
                return;
        free(h->name);
        free(h->content);
        h->name = h->content = NULL;
}

/* The file descriptor digits as strconv.ParseUint sees them (overflow saturates), clamped. */
static int parse_fd(const char *s, size_t n)
{
        unsigned long long v = 0;
        for (size_t i = 0; i < n; i++) {
                if (v > (ULLONG_MAX - 9) / 10)
                        return INT_MAX;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        return v > INT_MAX ? INT_MAX : (int) v;
}

/* Lex `rest` (the delimiter word); on failure put "failed to process ..." in *ret_msg. */
static int lex_delimiter(const char *rest, bool raw_quotes, char ***ret, char **ret_msg)
{
        _cleanup_free_ char *msg = NULL, *q = NULL;
        int r = lex_words(rest, raw_quotes, false, ret, &msg);
        if (r != -EINVAL)
                return r;
        q = df_go_quoted(rest);
        if (!q || asprintf(ret_msg, "failed to process %s: %s", q, msg ? msg : "syntax error") < 0)
                return -ENOMEM;
        return r;
}

int df_heredoc_word(const char *word, struct ossb_df_heredoc *ret, char **ret_msg)
{
        size_t d = 0;
        while (word[d] >= '0' && word[d] <= '9')
                d++;
        if (word[d] != '<' || word[d + 1] != '<')
                return 0;
        const char *p = word + d + 2;
        bool chomp = *p == '-';
        if (chomp)
                p++;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\f' || *p == '\r')
                p++;
        if (*p == '\0' || strchr(p, '<'))
                return 0;

        _cleanup_strv_free_ char **words = NULL, **raw = NULL;
        int r = lex_delimiter(p, false, &words, ret_msg);
        if (r < 0)
                return r;
        if (ossb_strv_length(words) != 1)
                return 0;
        r = lex_delimiter(p, true, &raw, ret_msg);
        if (r < 0)
                return r;
        if (ossb_strv_length(raw) != 1) {
                if (asprintf(ret_msg, "internal lexing of heredoc produced inconsistent results: %s", p) < 0)
                        return -ENOMEM;
                return -EINVAL;
        }
        bool expand = count_quotes(words[0]) == count_quotes(raw[0]);
        *ret = (struct ossb_df_heredoc) {
                .expand = expand,
                .chomp = chomp,
                .fd = parse_fd(word, d),
                .name = TAKE_PTR(words[0]),
        };
        return 1;
}

int df_heredocs_from_line(const struct df_ctx *ctx, const char *line, struct ossb_df_heredoc **ret, size_t *ret_n)
{
        _cleanup_strv_free_ char **words = NULL;
        struct ossb_df_heredoc *docs = NULL;
        size_t n = 0;

        int r = lex_words(line, true, true, &words, NULL);
        if (r == -ENOMEM)
                return df_oom(ctx->err);
        for (size_t i = 0; words && words[i]; i++) {
                struct ossb_df_heredoc h;
                _cleanup_free_ char *msg = NULL;
                r = df_heredoc_word(words[i], &h, &msg);
                if (r == 0)
                        continue;
                if (r < 0) {
                        df_heredocs_free(docs, n);
                        return r == -ENOMEM ? df_oom(ctx->err) : df_fail(ctx, "%s", msg);
                }
                struct ossb_df_heredoc *nd = df_grow(docs, n, sizeof(*docs));
                if (!nd) {
                        ossb_df_heredoc_clear(&h);
                        df_heredocs_free(docs, n);
                        return df_oom(ctx->err);
                }
                docs = nd;
                docs[n++] = h;
        }
        *ret = docs;
        *ret_n = n;
        return 0;
}

int ossb_df_heredoc_parse_word(const char *word, struct ossb_df_heredoc *ret, struct ossb_error **err)
{
        _cleanup_free_ char *msg = NULL;
        int r = df_heredoc_word(word, ret, &msg);
        if (r == -ENOMEM)
                return df_oom(err);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, r, "%s", msg);
        return r;
}

int ossb_df_heredoc_chomp(const char *content, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        bool line_start = true;
        int r = ossb_strbuf_append(&sb, "");
        for (const char *c = content; r >= 0 && *c; c++) {
                if (line_start && *c == '\t')
                        continue;
                line_start = *c == '\n';
                r = ossb_strbuf_append_c(&sb, *c);
        }
        if (r < 0)
                return r;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

const struct ossb_df_heredoc *ossb_df_instruction_find_heredoc(const struct ossb_df_instruction *inst,
                                                              const char *name)
{
        for (size_t i = inst->n_heredocs; i > 0; i--)
                if (streq(inst->heredocs[i - 1].name, name))
                        return &inst->heredocs[i - 1];
        return NULL;
}
