/* engine/dockerfile/shell.c - word expansion with the semantics of BuildKit's shell lexer
 * (frontend/dockerfile/shell/lex.go): quotes, escapes, $V and ${V...} with every modifier
 * BuildKit has, and its word splitting.  Text is read rune by rune as Go's text/scanner reads
 * it (a leading BOM is skipped, invalid UTF-8 reads as U+FFFD), so results agree byte for
 * byte.  The ${V#p} / ${V%p} / ${V/p/r} patterns are matched by a table-driven matcher with
 * the priorities of Go's regexp (leftmost, then greedy or lazy stars), in O(|p|*|V|).
 *
 * Owns: nothing persistent; each call owns its lexer state.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "engine/dockerfile/gorune.h"
#include "engine/dockerfile/shell.h"

/* Pattern matching work (pattern tokens x value runes) allowed for one ${V#p} and the like. */
#define MAX_MATCH_CELLS ((size_t) 1 << 26)
/* All the bytes one expansion may produce, intermediate results included (bounds memory when
 * hostile input nests big values). */
#define MAX_TOTAL ((size_t) 4 * OSSB_SHELL_MAX_RESULT)

struct lexer {
        const char *s;
        size_t len;
        size_t pos;
        int32_t escape;
        unsigned flags;
        bool raw_escapes;     /* current RawEscapes (temporarily set inside ${V#..}, ${V/..}) */
        bool want_words;
        ossb_shell_lookup_fn lookup;
        void *userdata;
        unsigned depth;
        size_t total;          /* bytes produced so far, against MAX_TOTAL */
        struct ossb_strbuf wb; /* BuildKit's shellWord.wordsBuffer, shared by nested calls */
        int ecode;             /* first failure: negative errno */
        char *emsg;
};

struct words {
        char **v; /* NULL when the words are not wanted (nested calls) */
        bool keep;
        bool in_word;
};

/* ---- errors and bounded buffers ---------------------------------------------------------- */

static int fail(struct lexer *lx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct lexer *lx, int code, const char *fmt, ...)
{
        if (lx->ecode == -ENOMEM || lx->ecode == -E2BIG)
                return lx->ecode;
        char *m = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&m, fmt, ap);
        va_end(ap);
        free(lx->emsg);
        lx->emsg = r < 0 ? NULL : m;
        lx->ecode = r < 0 ? -ENOMEM : code;
        return lx->ecode;
}

static int put(struct lexer *lx, struct ossb_strbuf *sb, const char *s, size_t n)
{
        if (n > OSSB_SHELL_MAX_RESULT || sb->len > OSSB_SHELL_MAX_RESULT - n)
                return fail(lx, -E2BIG, "expansion result larger than %u bytes", OSSB_SHELL_MAX_RESULT);
        if (n > MAX_TOTAL - lx->total)
                return fail(lx, -E2BIG, "expansion produces more than %zu bytes", MAX_TOTAL);
        lx->total += n;
        if (ossb_strbuf_append_n(sb, s, n) < 0)
                return fail(lx, -ENOMEM, "out of memory");
        return 0;
}

static int put_str(struct lexer *lx, struct ossb_strbuf *sb, const char *s)
{
        return put(lx, sb, s, strlen(s));
}

static int put_rune(struct lexer *lx, struct ossb_strbuf *sb, int32_t r)
{
        char b[4];
        return put(lx, sb, b, gorune_encode(r, b));
}

/* Make sure a result buffer holds a string even when nothing was appended. */
static int finish(struct lexer *lx, struct ossb_strbuf *sb, char **ret)
{
        char *s = ossb_strbuf_steal(sb);
        if (!s)
                return fail(lx, -ENOMEM, "out of memory");
        *ret = s;
        return 0;
}

/* ---- the scanner: Go's text/scanner Peek/Next ----------------------------------------------- */

static int32_t peek(struct lexer *lx)
{
        size_t w;
        return lx->pos < lx->len ? gorune_decode(lx->s + lx->pos, lx->len - lx->pos, &w) : GORUNE_EOF;
}

static int32_t next(struct lexer *lx)
{
        size_t w;
        if (lx->pos >= lx->len)
                return GORUNE_EOF;
        int32_t r = gorune_decode(lx->s + lx->pos, lx->len - lx->pos, &w);
        lx->pos += w;
        return r;
}

/* ---- BuildKit's wordsStruct ----------------------------------------------------------------- */

static int words_push(struct lexer *lx, struct words *w)
{
        if (w->keep) {
                char *s = strndup(lx->wb.buf ? lx->wb.buf : "", lx->wb.len);
                if (!s || ossb_strv_consume(&w->v, s) < 0)
                        return fail(lx, -ENOMEM, "out of memory");
        }
        ossb_strbuf_reset(&lx->wb);
        w->in_word = false;
        return 0;
}

static int words_raw_rune(struct lexer *lx, struct words *w, int32_t r)
{
        if (!lx->want_words)
                return 0;
        w->in_word = true;
        return put_rune(lx, &lx->wb, r);
}

static int words_rune(struct lexer *lx, struct words *w, int32_t r)
{
        if (!lx->want_words)
                return 0;
        if (gorune_is_space(r)) {
                if (w->in_word && lx->wb.len != 0)
                        return words_push(lx, w);
                return 0;
        }
        return words_raw_rune(lx, w, r);
}

static int words_string(struct lexer *lx, struct words *w, const char *s, size_t n)
{
        for (size_t i = 0, width; i < n; i += width) {
                int r = words_rune(lx, w, gorune_decode(s + i, n - i, &width));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int words_raw_string(struct lexer *lx, struct words *w, const char *s, size_t n)
{
        if (!lx->want_words)
                return 0;
        w->in_word = true;
        return put(lx, &lx->wb, s, n);
}

static int words_end(struct lexer *lx, struct words *w)
{
        if (lx->want_words && lx->wb.len > 0)
                return words_push(lx, w);
        return 0;
}

/* ---- variables ------------------------------------------------------------------------------ */

static const char *get_env(struct lexer *lx, const char *name)
{
        return lx->lookup ? lx->lookup(lx->userdata, name) : NULL;
}

const char *ossb_shell_lookup_strv(void *userdata, const char *name)
{
        char **v = userdata;
        const char *found = NULL;
        size_t n = strlen(name);

        for (size_t i = 0; v && v[i]; i++) {
                /* Go's strings.Cut(e, "="): the key ends at the first '=', or is all of e. */
                const char *eq = strchr(v[i], '=');
                size_t klen = eq ? (size_t) (eq - v[i]) : strlen(v[i]);
                if (klen == n && strncmp(v[i], name, n) == 0)
                        found = eq ? eq + 1 : v[i] + klen;
        }
        return found;
}

static bool is_special_param(int32_t r)
{
        return r == '@' || r == '*' || r == '#' || r == '?' || r == '-' || r == '$' || r == '!' || r == '0';
}

/* processName: a run of digits, one special parameter, or letters/digits/underscores. */
static int process_name(struct lexer *lx, struct ossb_strbuf *name)
{
        int r = 0;
        while (r >= 0 && peek(lx) != GORUNE_EOF) {
                int32_t ch = peek(lx);
                if (name->len == 0 && gorune_is_digit(ch)) {
                        while (r >= 0 && peek(lx) != GORUNE_EOF && gorune_is_digit(peek(lx)))
                                r = put_rune(lx, name, next(lx));
                        break;
                }
                if (name->len == 0 && is_special_param(ch))
                        return put_rune(lx, name, next(lx));
                if (!gorune_is_letter(ch) && !gorune_is_digit(ch) && ch != '_')
                        break;
                r = put_rune(lx, name, next(lx));
        }
        if (r >= 0 && !name->buf)
                r = put(lx, name, "", 0);
        return r;
}

/* ---- patterns: BuildKit's convertShellPatternToRegex, matched without a regexp engine -------- */

enum { TOK_LIT, TOK_ANY, TOK_STAR };

struct ptok {
        int kind;
        int32_t r;
};

struct text {
        int32_t *r;  /* runes */
        size_t *off; /* byte offset of each rune, off[n] = length */
        size_t n;
};

static void text_free(struct text *t)
{
        free(t->r);
        free(t->off);
}

static int text_decode(struct lexer *lx, const char *s, size_t len, struct text *t)
{
        if (len > OSSB_SHELL_MAX_RESULT)
                return fail(lx, -E2BIG, "value larger than %u bytes in a pattern substitution", OSSB_SHELL_MAX_RESULT);
        t->r = malloc((len + 1) * sizeof(*t->r));
        t->off = malloc((len + 1) * sizeof(*t->off));
        t->n = 0;
        if (!t->r || !t->off)
                return fail(lx, -ENOMEM, "out of memory");
        for (size_t i = 0, w; i < len; i += w) {
                t->off[t->n] = i;
                t->r[t->n++] = gorune_decode(s + i, len - i, &w);
        }
        t->off[t->n] = len;
        return 0;
}

static int tokenize(struct lexer *lx, const char *pat, bool greedy, struct ptok **ret, size_t *ret_n)
{
        struct lexer sc = { .s = pat, .len = strlen(pat) };
        _cleanup_free_ struct ptok *t = malloc((sc.len + 1) * sizeof(*t));
        size_t n = 0;

        if (!t)
                return fail(lx, -ENOMEM, "out of memory");
        if (sc.len >= 3 && memcmp(pat, "\xEF\xBB\xBF", 3) == 0)
                sc.pos = 3; /* text/scanner skips a leading BOM */
        for (int32_t r = next(&sc); r != GORUNE_EOF; r = next(&sc)) {
                if (r == '*') {
                        t[n++] = (struct ptok){ TOK_STAR, greedy };
                        continue;
                }
                if (r == '?') {
                        t[n++] = (struct ptok){ TOK_ANY, 0 };
                        continue;
                }
                if (r == '\\') {
                        /* "\}" and "\/" only protect the delimiters of ${}: a plain character */
                        if (peek(&sc) == '}' || peek(&sc) == '/')
                                continue;
                        r = next(&sc);
                        if (r != '*' && r != '?' && r != '\\') {
                                char b[4];
                                size_t bl = gorune_encode(r == GORUNE_EOF ? GORUNE_ERROR : r, b);
                                return fail(lx, -EINVAL, "invalid pattern (%s) in substitution: invalid escape '\\%.*s'",
                                            pat, (int) bl, b);
                        }
                }
                t[n++] = (struct ptok){ TOK_LIT, r };
        }
        *ret = TAKE_PTR(t);
        *ret_n = n;
        return 0;
}

/* best[j] = end (rune index) of the match Go's regexp would prefer for the tokens at position j
 * of the text, or -1.  Rows are computed from the last token back; a star either takes one more
 * character and stays, or moves on, in the order its greediness prefers. */
static int match_table(struct lexer *lx, const struct ptok *p, size_t m, const struct text *t, int32_t **ret)
{
        size_t n = t->n;
        if ((m + 1) > MAX_MATCH_CELLS / (n + 1))
                return fail(lx, -E2BIG, "pattern too complex for a value of %zu characters", n);
        _cleanup_free_ int32_t *cur = malloc((n + 1) * sizeof(int32_t));
        _cleanup_free_ int32_t *nxt = malloc((n + 1) * sizeof(int32_t));
        if (!cur || !nxt)
                return fail(lx, -ENOMEM, "out of memory");

        for (size_t j = 0; j <= n; j++)
                nxt[j] = (int32_t) j;
        for (size_t i = m; i-- > 0;) {
                for (size_t j = n + 1; j-- > 0;) {
                        bool can = j < n && (p[i].kind == TOK_LIT ? t->r[j] == p[i].r : t->r[j] != '\n');
                        int32_t v = -1;
                        if (p[i].kind != TOK_STAR)
                                v = can ? nxt[j + 1] : -1;
                        else if (p[i].r) /* greedy */
                                v = can && cur[j + 1] >= 0 ? cur[j + 1] : nxt[j];
                        else
                                v = nxt[j] >= 0 ? nxt[j] : (can ? cur[j + 1] : -1);
                        cur[j] = v;
                }
                int32_t *tmp = cur;
                cur = nxt;
                nxt = tmp;
        }
        *ret = TAKE_PTR(nxt);
        return 0;
}

static int trim_prefix(struct lexer *lx, const char *pat, const char *value, bool greedy, struct ossb_strbuf *out)
{
        _cleanup_free_ struct ptok *p = NULL;
        _cleanup_free_ int32_t *best = NULL;
        _cleanup_(text_free) struct text t = { 0 };
        size_t m;

        int r = tokenize(lx, pat, greedy, &p, &m);
        if (r >= 0)
                r = text_decode(lx, value, strlen(value), &t);
        if (r >= 0)
                r = match_table(lx, p, m, &t, &best);
        if (r < 0)
                return r;
        return put_str(lx, out, value + (best[0] >= 0 ? t.off[best[0]] : 0));
}

/* BuildKit's reversePattern: reverse the runes but keep each "\x" pair in order. */
static int reverse_pattern(struct lexer *lx, const char *pat, char **ret)
{
        _cleanup_(text_free) struct text t = { 0 };
        int r = text_decode(lx, pat, strlen(pat), &t);
        if (r < 0)
                return r;
        _cleanup_free_ int32_t *out = malloc((t.n + 1) * sizeof(int32_t));
        if (!out)
                return fail(lx, -ENOMEM, "out of memory");
        for (size_t i = 0, last = t.n - 1; t.n > 0 && i <= last;) {
                size_t o = last - i;
                if (t.r[i] == '\\' && i != last) {
                        out[o - 1] = t.r[i];
                        out[o] = t.r[i + 1];
                        i += 2;
                } else {
                        out[o] = t.r[i++];
                }
        }
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (size_t i = 0; r >= 0 && i < t.n; i++)
                r = put_rune(lx, &sb, out[i]);
        return r < 0 ? r : finish(lx, &sb, ret);
}

/* trimSuffix: match the reversed pattern against the reversed value (as runes). */
static int trim_suffix(struct lexer *lx, const char *pat, const char *value, bool greedy, struct ossb_strbuf *out)
{
        _cleanup_free_ char *rpat = NULL;
        _cleanup_free_ struct ptok *p = NULL;
        _cleanup_free_ int32_t *best = NULL;
        _cleanup_(text_free) struct text t = { 0 };
        size_t m;

        int r = reverse_pattern(lx, pat, &rpat);
        if (r >= 0)
                r = tokenize(lx, rpat, greedy, &p, &m);
        if (r >= 0)
                r = text_decode(lx, value, strlen(value), &t);
        if (r < 0)
                return r;
        for (size_t i = 0; i < t.n / 2; i++) {
                int32_t tmp = t.r[i];
                t.r[i] = t.r[t.n - 1 - i];
                t.r[t.n - 1 - i] = tmp;
        }
        r = match_table(lx, p, m, &t, &best);
        size_t keep = t.n - (size_t) (r >= 0 && best[0] >= 0 ? best[0] : 0);
        for (size_t i = 0; r >= 0 && i < keep; i++)
                r = put_rune(lx, out, t.r[t.n - 1 - i]);
        return r < 0 ? r : put(lx, out, "", 0);
}

/* Go's regexp.Expand for a pattern without groups: $0 / ${0} is the match, $$ a dollar, any
 * other reference is empty, and a malformed one is literal text. */
static int expand_template(struct lexer *lx, const char *tpl, const char *m, size_t mlen, struct ossb_strbuf *out)
{
        int r = 0;
        while (r >= 0 && *tpl) {
                const char *d = strchr(tpl, '$');
                if (!d)
                        return put_str(lx, out, tpl);
                r = put(lx, out, tpl, (size_t) (d - tpl));
                tpl = d + 1;
                if (r < 0)
                        break;
                if (*tpl == '$') {
                        r = put(lx, out, "$", 1);
                        tpl++;
                        continue;
                }
                bool brace = *tpl == '{';
                const char *name = tpl + brace, *e = name;
                size_t w;
                while (*e) {
                        int32_t c = gorune_decode(e, strlen(e), &w);
                        if (!gorune_is_letter(c) && !gorune_is_digit(c) && c != '_')
                                break;
                        e += w;
                }
                if (e == name || (brace && *e != '}')) {
                        r = put(lx, out, "$", 1);
                        continue;
                }
                tpl = e + brace;
                if (e - name == 1 && name[0] == '0')
                        r = put(lx, out, m, mlen);
        }
        return r;
}

static int replace(struct lexer *lx, const char *pat, const char *repl, const char *value, bool all,
                   struct ossb_strbuf *out)
{
        _cleanup_free_ struct ptok *p = NULL;
        _cleanup_free_ int32_t *best = NULL;
        _cleanup_(text_free) struct text t = { 0 };
        size_t m, last = 0, search = 0;

        int r = tokenize(lx, pat, true, &p, &m);
        if (r >= 0)
                r = text_decode(lx, value, strlen(value), &t);
        if (r >= 0)
                r = match_table(lx, p, m, &t, &best);
        while (r >= 0 && search <= t.n) {
                size_t s = search;
                while (s <= t.n && best[s] < 0)
                        s++;
                if (s > t.n)
                        break;
                size_t e = (size_t) best[s];
                r = put(lx, out, value + t.off[last], t.off[s] - t.off[last]);
                if (r >= 0 && !all)
                        r = put_str(lx, out, repl);
                else if (r >= 0 && (e > last || s == 0))
                        r = expand_template(lx, repl, value + t.off[s], t.off[e] - t.off[s], out);
                last = e;
                if (!all)
                        break;
                search = e == search ? search + 1 : e;
        }
        return r < 0 ? r : put_str(lx, out, value + t.off[last]);
}

/* ---- the lexer ------------------------------------------------------------------------------ */

static int process_stop_on(struct lexer *lx, int32_t stop, bool raw, struct ossb_strbuf *result, struct words *w);

static int single_quote(struct lexer *lx, struct ossb_strbuf *out)
{
        int32_t ch = next(lx);
        int r = 0;
        if (lx->flags & OSSB_SHELL_RAW_QUOTES)
                r = put_rune(lx, out, ch);
        while (r >= 0) {
                ch = next(lx);
                if (ch == GORUNE_EOF)
                        return fail(lx, -EINVAL, "unexpected end of statement while looking for matching single-quote");
                if (ch == '\'')
                        return (lx->flags & OSSB_SHELL_RAW_QUOTES) ? put_rune(lx, out, ch) : 0;
                r = put_rune(lx, out, ch);
        }
        return r;
}

static int process_dollar(struct lexer *lx, struct ossb_strbuf *out);

static int double_quote(struct lexer *lx, struct ossb_strbuf *out)
{
        int32_t ch = next(lx);
        int r = 0;
        if (lx->flags & OSSB_SHELL_RAW_QUOTES)
                r = put_rune(lx, out, ch);
        while (r >= 0) {
                int32_t pk = peek(lx);
                if (pk == GORUNE_EOF)
                        return fail(lx, -EINVAL, "unexpected end of statement while looking for matching double-quote");
                if (pk == '"') {
                        ch = next(lx);
                        return (lx->flags & OSSB_SHELL_RAW_QUOTES) ? put_rune(lx, out, ch) : 0;
                }
                if (pk == '$') {
                        r = process_dollar(lx, out);
                        continue;
                }
                ch = next(lx);
                if (ch == lx->escape) {
                        if (lx->raw_escapes)
                                r = put_rune(lx, out, ch);
                        pk = peek(lx);
                        if (pk == GORUNE_EOF)
                                continue; /* the missing quote is reported next round */
                        if (pk == '"' || pk == '$' || pk == lx->escape)
                                ch = next(lx);
                }
                if (r >= 0)
                        r = put_rune(lx, out, ch);
        }
        return r;
}

static int possible_heredoc(struct lexer *lx, struct ossb_strbuf *out)
{
        next(lx);
        if (peek(lx) != '<')
                return put(lx, out, "<", 1);
        next(lx);
        int r = put(lx, out, "<<", 2);
        while (r >= 0 && (peek(lx) == '\t' || peek(lx) == '\r' || peek(lx) == ' '))
                r = put_rune(lx, out, next(lx));
        return r;
}

/* Run process_stop_on for a ${...} operand; at the end of input BuildKit reports `eof_msg`. */
static int operand(struct lexer *lx, int32_t stop, bool raw, const char *eof_msg, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        struct words w = { 0 };
        int r = process_stop_on(lx, stop, raw, &sb, &w);
        if (r == -EINVAL && peek(lx) == GORUNE_EOF)
                return fail(lx, -EINVAL, "%s", eof_msg);
        return r < 0 ? r : finish(lx, &sb, ret);
}

static int unsupported(struct lexer *lx, const char *chs)
{
        return fail(lx, -EINVAL, "unsupported modifier (%s) in substitution", chs);
}

/* ${name-word} ${name+word} ${name?word} ${name#word} ${name%word}, with or without ':'. */
static int dollar_modifier(struct lexer *lx, const char *name, int32_t op, bool null_is_unset, const char *chs,
                           struct ossb_strbuf *out)
{
        bool raw = op == '#' || op == '%';
        _cleanup_free_ char *word = NULL;

        if (null_is_unset && raw)
                return unsupported(lx, chs);
        int r = operand(lx, '}', raw, "syntax error: missing '}'", &word);
        if (r < 0)
                return r;
        const char *value = get_env(lx, name);
        if (!value && (lx->flags & OSSB_SHELL_SKIP_UNSET_ENV))
                return put_str(lx, out, "${") ?: put_str(lx, out, name) ?: put_str(lx, out, chs) ?:
                       put_str(lx, out, word) ?: put(lx, out, "}", 1);
        bool empty = !value || (null_is_unset && !*value);
        switch (op) {
        case '-':
                return put_str(lx, out, empty ? word : value);
        case '+':
                return put_str(lx, out, empty ? "" : word);
        case '?':
                if (!value)
                        return fail(lx, -EINVAL, "%s: %s", name, *word ? word : "is not allowed to be unset");
                if (empty)
                        return fail(lx, -EINVAL, "%s: %s", name, *word ? word : "is not allowed to be empty");
                return put_str(lx, out, value);
        case '#':
        case '%': {
                bool greedy = word[0] == op;
                const char *pat = word + greedy;
                if (op == '%')
                        return trim_suffix(lx, pat, value ?: "", greedy, out);
                return trim_prefix(lx, pat, value ?: "", greedy, out);
        }
        default:
                return unsupported(lx, chs);
        }
}

/* ${name/pattern/replacement} and ${name//pattern/replacement} */
static int dollar_replace(struct lexer *lx, const char *name, struct ossb_strbuf *out)
{
        _cleanup_free_ char *pat = NULL, *repl = NULL;
        bool all = peek(lx) == '/';
        if (all)
                next(lx);
        int r = operand(lx, '/', true, "syntax error: missing '/' in ${}", &pat);
        if (r >= 0)
                r = operand(lx, '}', true, "syntax error: missing '}'", &repl);
        if (r < 0)
                return r;
        const char *value = get_env(lx, name);
        if (!value && (lx->flags & OSSB_SHELL_SKIP_UNSET_ENV))
                return put_str(lx, out, "${") ?: put_str(lx, out, name) ?: put(lx, out, "/", 1) ?:
                       put_str(lx, out, pat) ?: put(lx, out, "/", 1) ?: put_str(lx, out, repl) ?:
                       put(lx, out, "}", 1);
        return replace(lx, pat, repl, value ?: "", all, out);
}

static int dollar_braced(struct lexer *lx, struct ossb_strbuf *out)
{
        _cleanup_strbuf_ struct ossb_strbuf name = OSSB_STRBUF_INIT;
        char chs[16];
        size_t cl;

        next(lx); /* '{' */
        int32_t pk = peek(lx);
        if (pk == GORUNE_EOF)
                return fail(lx, -EINVAL, "syntax error: missing '}'");
        if (pk == '{' || pk == '}' || pk == ':')
                return fail(lx, -EINVAL, "syntax error: bad substitution");
        int r = process_name(lx, &name);
        if (r < 0)
                return r;
        int32_t ch = next(lx);
        /* string(rune(-1)) is U+FFFD in Go */
        cl = gorune_encode(ch == GORUNE_EOF ? GORUNE_ERROR : ch, chs);
        chs[cl] = '\0';
        switch (ch) {
        case '}': {
                const char *value = get_env(lx, name.buf);
                if (!value && (lx->flags & OSSB_SHELL_SKIP_UNSET_ENV))
                        return put_str(lx, out, "${") ?: put_str(lx, out, name.buf) ?: put(lx, out, "}", 1);
                return put_str(lx, out, value ?: "");
        }
        case ':':
                ch = next(lx);
                cl += gorune_encode(ch == GORUNE_EOF ? GORUNE_ERROR : ch, chs + cl);
                chs[cl] = '\0';
                return dollar_modifier(lx, name.buf, ch, true, chs, out);
        case '+':
        case '-':
        case '?':
        case '#':
        case '%':
                return dollar_modifier(lx, name.buf, ch, false, chs, out);
        case '/':
                return dollar_replace(lx, name.buf, out);
        default:
                return unsupported(lx, chs);
        }
}

static int process_dollar(struct lexer *lx, struct ossb_strbuf *out)
{
        next(lx); /* '$' */
        if (peek(lx) == '{') {
                if (lx->depth >= OSSB_SHELL_MAX_DEPTH)
                        return fail(lx, -E2BIG, "substitutions nested deeper than %d levels", OSSB_SHELL_MAX_DEPTH);
                lx->depth++;
                int r = dollar_braced(lx, out);
                lx->depth--;
                return r;
        }
        _cleanup_strbuf_ struct ossb_strbuf name = OSSB_STRBUF_INIT;
        int r = process_name(lx, &name);
        if (r < 0)
                return r;
        if (name.len == 0)
                return put(lx, out, "$", 1);
        const char *value = get_env(lx, name.buf);
        if (!value && (lx->flags & OSSB_SHELL_SKIP_UNSET_ENV))
                return put(lx, out, "$", 1) ?: put_str(lx, out, name.buf);
        return put_str(lx, out, value ?: "");
}

/* One special character: '$', '<', or a quote.  The piece is added to the result and to the
 * words (an expansion is split on whitespace, quoted text is not). */
static int special(struct lexer *lx, int32_t ch, struct ossb_strbuf *result, struct words *w)
{
        _cleanup_strbuf_ struct ossb_strbuf tmp = OSSB_STRBUF_INIT;
        int r;
        if (ch == '$')
                r = process_dollar(lx, &tmp);
        else if (ch == '<')
                r = possible_heredoc(lx, &tmp);
        else if (ch == '\'')
                r = single_quote(lx, &tmp);
        else
                r = double_quote(lx, &tmp);
        if (r < 0)
                return r;
        const char *s = tmp.buf ? tmp.buf : "";
        r = put(lx, result, s, tmp.len);
        if (r >= 0)
                r = ch == '$' ? words_string(lx, w, s, tmp.len) : words_raw_string(lx, w, s, tmp.len);
        return r;
}

static bool is_special(struct lexer *lx, int32_t ch)
{
        if (ch == '$' || ch == '<')
                return true;
        return !(lx->flags & OSSB_SHELL_SKIP_PROCESS_QUOTES) && (ch == '\'' || ch == '"');
}

/* processStopOn: read up to `stop` (GORUNE_EOF: the end), with RawEscapes set to `raw`. */
static int process_stop_on(struct lexer *lx, int32_t stop, bool raw, struct ossb_strbuf *result, struct words *w)
{
        bool saved_raw = lx->raw_escapes;
        int r = 0;

        ossb_strbuf_reset(&lx->wb);
        lx->raw_escapes = raw;
        while (r >= 0 && peek(lx) != GORUNE_EOF) {
                int32_t ch = peek(lx);
                if (stop != GORUNE_EOF && ch == stop) {
                        next(lx);
                        r = words_end(lx, w);
                        lx->raw_escapes = saved_raw;
                        return r;
                }
                if (is_special(lx, ch)) {
                        r = special(lx, ch, result, w);
                        continue;
                }
                ch = next(lx);
                if (ch == lx->escape) {
                        if (lx->raw_escapes)
                                r = words_raw_rune(lx, w, ch) ?: put_rune(lx, result, ch);
                        ch = next(lx);
                        if (ch == GORUNE_EOF)
                                break; /* a trailing escape is dropped */
                        if (r >= 0)
                                r = words_raw_rune(lx, w, ch);
                } else {
                        r = words_rune(lx, w, ch);
                }
                if (r >= 0)
                        r = put_rune(lx, result, ch);
        }
        lx->raw_escapes = saved_raw;
        if (r < 0)
                return r;
        if (stop != GORUNE_EOF) {
                char b[4];
                size_t bl = gorune_encode(stop, b);
                return fail(lx, -EINVAL, "unexpected end of statement while looking for matching %.*s", (int) bl, b);
        }
        return words_end(lx, w);
}

/* Go's %q, shortened: the failing word in messages. */
static void quote_word(const char *s, struct ossb_strbuf *sb)
{
        size_t n = strlen(s);
        ossb_strbuf_append_c(sb, '"');
        for (size_t i = 0; i < n && i < 256; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '"' || c == '\\')
                        ossb_strbuf_appendf(sb, "\\%c", c);
                else if (c == '\n')
                        ossb_strbuf_append(sb, "\\n");
                else if (c == '\t')
                        ossb_strbuf_append(sb, "\\t");
                else if (c < 0x20 || c == 0x7f)
                        ossb_strbuf_appendf(sb, "\\x%02x", c);
                else
                        ossb_strbuf_append_c(sb, (char) c);
        }
        ossb_strbuf_append(sb, n > 256 ? "\"..." : "\"");
}

int ossb_shell_expand_full(const char *word, char escape, unsigned flags, ossb_shell_lookup_fn lookup,
                           void *userdata, char **ret_word, char ***ret_words, struct ossb_error **err)
{
        if (!word || (unsigned char) escape >= 0x80)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "invalid arguments to shell expansion");

        struct lexer lx = {
                .s = word,
                .len = strlen(word),
                .escape = (unsigned char) escape,
                .flags = flags,
                .raw_escapes = flags & OSSB_SHELL_RAW_ESCAPES,
                .want_words = ret_words != NULL,
                .lookup = lookup,
                .userdata = userdata,
                .wb = OSSB_STRBUF_INIT,
        };
        _cleanup_strbuf_ struct ossb_strbuf result = OSSB_STRBUF_INIT;
        struct words w = { .keep = true };
        _cleanup_free_ char *res = NULL;

        if (escape == 0)
                lx.escape = GORUNE_EOF - 1; /* no escape character */
        if (lx.len >= 3 && memcmp(word, "\xEF\xBB\xBF", 3) == 0)
                lx.pos = 3; /* text/scanner skips a leading BOM */
        int r = process_stop_on(&lx, GORUNE_EOF, lx.raw_escapes, &result, &w);
        if (r >= 0)
                r = finish(&lx, &result, &res);
        if (r >= 0 && ret_words && !w.v && !(w.v = ossb_strv_new_empty()))
                r = fail(&lx, -ENOMEM, "out of memory");
        ossb_strbuf_free(&lx.wb);
        if (r < 0) {
                ossb_strv_free(w.v);
                _cleanup_strbuf_ struct ossb_strbuf q = OSSB_STRBUF_INIT;
                quote_word(word, &q);
                r = ossb_error_setx(err, r == -ENOMEM ? OSSB_EXIT_INTERNAL : OSSB_EXIT_USAGE, r,
                                    "failed to process %s: %s", q.buf ? q.buf : "word",
                                    lx.emsg ? lx.emsg : "out of memory");
                free(lx.emsg);
                return r;
        }
        if (ret_word)
                *ret_word = TAKE_PTR(res);
        if (ret_words)
                *ret_words = w.v;
        return 0;
}

int ossb_shell_expand(const char *word, char escape, ossb_shell_lookup_fn lookup, void *userdata, char **ret,
                      struct ossb_error **err)
{
        return ossb_shell_expand_full(word, escape, 0, lookup, userdata, ret, NULL, err);
}

int ossb_shell_expand_words(const char *word, char escape, ossb_shell_lookup_fn lookup, void *userdata,
                            char ***ret, struct ossb_error **err)
{
        return ossb_shell_expand_full(word, escape, 0, lookup, userdata, NULL, ret, err);
}
