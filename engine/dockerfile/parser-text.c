/* engine/dockerfile/parser-text.c - text helpers that let the parser see bytes the way
 * BuildKit's Go code does: UTF-8 decoding (bad bytes become U+FFFD, width 1), unicode.IsSpace,
 * strconv.Quote (for the Node.Dump format and messages), "did you mean" suggestions
 * (util/suggest: Levenshtein distance < 3), and the error helpers of the parse context.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "engine/dockerfile/parser-internal.h"

static int fail_v(struct ossb_error **err, const char *path, int line, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));

static int fail_v(struct ossb_error **err, const char *path, int line, const char *fmt, va_list ap)
{
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                return df_oom(err);
        ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s:%d: %s", path ? path : "Dockerfile", line, msg);
        return -EINVAL;
}

int df_fail(const struct df_ctx *ctx, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = fail_v(ctx->err, ctx->path, ctx->line, fmt, ap);
        va_end(ap);
        return r;
}

int df_fail_at(struct ossb_error **err, const char *path, int line, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = fail_v(err, path, line, fmt, ap);
        va_end(ap);
        return r;
}

int df_oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory while parsing the Dockerfile");
}

size_t df_utf8_decode(const char *str, size_t n, uint32_t *ret_rune)
{
        const unsigned char *s = (const unsigned char *) str;
        unsigned char c = s[0];
        uint32_t r, min;
        size_t w;

        if (c < 0x80) {
                *ret_rune = c;
                return 1;
        }
        if (c >= 0xC2 && c <= 0xDF) {
                w = 2;
                r = c & 0x1Fu;
                min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
                w = 3;
                r = c & 0x0Fu;
                min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
                w = 4;
                r = c & 0x07u;
                min = 0x10000;
        } else {
                *ret_rune = DF_RUNE_ERROR;
                return 1;
        }
        if (n < w)
                goto bad;
        for (size_t i = 1; i < w; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        goto bad;
                r = (r << 6) | (s[i] & 0x3Fu);
        }
        if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
                goto bad;
        *ret_rune = r;
        return w;
bad:
        *ret_rune = DF_RUNE_ERROR;
        return 1;
}

int df_utf8_put(struct ossb_strbuf *sb, uint32_t r)
{
        char b[4];
        size_t n;
        if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
                r = DF_RUNE_ERROR;
        if (r < 0x80) {
                b[0] = (char) r;
                n = 1;
        } else if (r < 0x800) {
                b[0] = (char) (0xC0 | (r >> 6));
                b[1] = (char) (0x80 | (r & 0x3F));
                n = 2;
        } else if (r < 0x10000) {
                b[0] = (char) (0xE0 | (r >> 12));
                b[1] = (char) (0x80 | ((r >> 6) & 0x3F));
                b[2] = (char) (0x80 | (r & 0x3F));
                n = 3;
        } else {
                b[0] = (char) (0xF0 | (r >> 18));
                b[1] = (char) (0x80 | ((r >> 12) & 0x3F));
                b[2] = (char) (0x80 | ((r >> 6) & 0x3F));
                b[3] = (char) (0x80 | (r & 0x3F));
                n = 4;
        }
        return ossb_strbuf_append_n(sb, b, n);
}

bool df_is_space(uint32_t r)
{
        switch (r) {
        case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
        case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
        case 0x3000:
                return true;
        default:
                return r >= 0x2000 && r <= 0x200A;
        }
}

bool df_is_digit(uint32_t r)
{
        return r >= '0' && r <= '9';
}

bool df_is_letter(uint32_t r)
{
        if (r < 0x80)
                return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z');
        if (r < 0x100)
                return r == 0xAA || r == 0xB5 || r == 0xBA || (r >= 0xC0 && r != 0xD7 && r != 0xF7);
        /* Beyond Latin-1: letters unless a space, general punctuation, CJK punctuation,
         * private use or a specials block (an approximation of the Unicode tables). */
        if (df_is_space(r) || (r >= 0x2000 && r <= 0x2BFF) || (r >= 0x3000 && r <= 0x303F) ||
            (r >= 0xE000 && r <= 0xF8FF) || (r >= 0xFE00 && r <= 0xFE0F) || r >= 0xFFF0)
                return false;
        return true;
}

size_t df_space_prefix(const char *s, size_t n)
{
        size_t i = 0;
        while (i < n) {
                uint32_t r;
                size_t w = df_utf8_decode(s + i, n - i, &r);
                if (!df_is_space(r))
                        break;
                i += w;
        }
        return i;
}

size_t df_trim_right_len(const char *s, size_t n)
{
        size_t i = 0, end = 0;
        while (i < n) {
                uint32_t r;
                size_t w = df_utf8_decode(s + i, n - i, &r);
                i += w;
                if (!df_is_space(r) || (r == DF_RUNE_ERROR && w == 1))
                        end = i;
        }
        return end;
}

/* Not printable for Go's strconv.IsPrint: controls, format characters, non-ASCII spaces,
 * surrogates, private use, noncharacters and the largest unassigned areas. */
static bool is_print(uint32_t r)
{
        static const uint32_t ranges[][2] = {
                { 0x80, 0xA0 },       { 0xAD, 0xAD },       { 0x378, 0x379 },     { 0x380, 0x383 },
                { 0x600, 0x605 },     { 0x61C, 0x61C },     { 0x6DD, 0x6DD },     { 0x70F, 0x70F },
                { 0x890, 0x891 },     { 0x8E2, 0x8E2 },     { 0x180E, 0x180E },   { 0x1680, 0x1680 },
                { 0x2000, 0x200F },   { 0x2028, 0x202F },   { 0x205F, 0x206F },   { 0x3000, 0x3000 },
                { 0xD800, 0xF8FF },   { 0xFDD0, 0xFDEF },   { 0xFEFF, 0xFEFF },   { 0xFFF0, 0xFFFB },
                { 0xFFFE, 0xFFFF },   { 0x110BD, 0x110BD }, { 0x110CD, 0x110CD }, { 0x13430, 0x1343F },
                { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A }, { 0x323B0, 0xE00FF }, { 0xE01F0, 0x10FFFF },
        };
        if (r < 0x80)
                return r >= 0x20 && r < 0x7F;
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++)
                if (r >= ranges[i][0] && r <= ranges[i][1])
                        return false;
        if ((r & 0xFFFE) == 0xFFFE)
                return false;
        return true;
}

static int quote_rune(struct ossb_strbuf *sb, uint32_t r)
{
        static const char hex[] = "0123456789abcdef";
        char b[11];
        size_t n = 0;
        switch (r) {
        case '\a': return ossb_strbuf_append(sb, "\\a");
        case '\b': return ossb_strbuf_append(sb, "\\b");
        case '\f': return ossb_strbuf_append(sb, "\\f");
        case '\n': return ossb_strbuf_append(sb, "\\n");
        case '\r': return ossb_strbuf_append(sb, "\\r");
        case '\t': return ossb_strbuf_append(sb, "\\t");
        case '\v': return ossb_strbuf_append(sb, "\\v");
        default: break;
        }
        b[n++] = '\\';
        int digits;
        if (r < ' ' || r == 0x7F) {
                b[n++] = 'x';
                digits = 2;
        } else if (r < 0x10000) {
                b[n++] = 'u';
                digits = 4;
        } else {
                b[n++] = 'U';
                digits = 8;
        }
        for (int i = digits - 1; i >= 0; i--)
                b[n++] = hex[(r >> (4 * i)) & 0xF];
        return ossb_strbuf_append_n(sb, b, n);
}

int df_go_quote(struct ossb_strbuf *sb, const char *s, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        int r = ossb_strbuf_append_c(sb, '"');
        for (size_t i = 0; r >= 0 && i < n;) {
                uint32_t c;
                size_t w = df_utf8_decode(s + i, n - i, &c);
                if (c == DF_RUNE_ERROR && w == 1) {
                        unsigned char b = (unsigned char) s[i];
                        char e[4] = { '\\', 'x', hex[b >> 4], hex[b & 0xF] };
                        r = ossb_strbuf_append_n(sb, e, 4);
                } else if (c == '"' || c == '\\') {
                        char e[2] = { '\\', (char) c };
                        r = ossb_strbuf_append_n(sb, e, 2);
                } else if (is_print(c)) {
                        r = ossb_strbuf_append_n(sb, s + i, w);
                } else {
                        r = quote_rune(sb, c);
                }
                i += w;
        }
        if (r >= 0)
                r = ossb_strbuf_append_c(sb, '"');
        return r;
}

char *df_go_quoted(const char *s)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (df_go_quote(&sb, s, strlen(s)) < 0)
                return NULL;
        return ossb_strbuf_steal(&sb);
}

void *df_grow(void *arr, size_t n, size_t size)
{
        if (arr && n != 0 && (n & (n - 1)) != 0)
                return arr; /* capacity is the next power of two >= n, so > n */
        size_t cap = n == 0 ? 1 : 2 * n;
        if (cap < n || cap > ((size_t) -1) / size)
                return NULL;
        return realloc(arr, cap * size);
}

int df_strv_add(char ***v, size_t *n, char *s)
{
        if (!s)
                return -ENOMEM;
        char **a = *v ? df_grow(*v, *n + 1, sizeof(char *)) : malloc(2 * sizeof(char *));
        if (!a) {
                free(s);
                return -ENOMEM;
        }
        a[*n] = s;
        a[*n + 1] = NULL;
        (*n)++;
        *v = a;
        return 0;
}

static uint32_t rune_upper(uint32_t r)
{
        if ((r >= 'a' && r <= 'z') || (r >= 0xE0 && r <= 0xFE && r != 0xF7) || (r >= 0x3B1 && r <= 0x3CB && r != 0x3C2) ||
            (r >= 0x430 && r <= 0x44F))
                return r - 0x20;
        if (r >= 0x450 && r <= 0x45F)
                return r - 0x50;
        if (r >= 0x100 && r <= 0x17F && r != 0x130 && r != 0x131 && r != 0x138 && r != 0x149 && r != 0x17F)
                return ((r >= 0x139 && r <= 0x148) || (r >= 0x179 && r <= 0x17E)) ? (r % 2 == 0 ? r - 1 : r)
                                                                                 : (r % 2 == 1 ? r - 1 : r);
        switch (r) {
        case 0xFF: return 0x178;
        case 0xB5: return 0x39C;
        case 0x3C2: return 0x3A3;
        case 0x17F: return 'S';
        case 0x131: return 'I';
        default: return r;
        }
}

static uint32_t rune_lower(uint32_t r)
{
        if ((r >= 'A' && r <= 'Z') || (r >= 0xC0 && r <= 0xDE && r != 0xD7) || (r >= 0x391 && r <= 0x3AB && r != 0x3A2) ||
            (r >= 0x410 && r <= 0x42F))
                return r + 0x20;
        if (r >= 0x400 && r <= 0x40F)
                return r + 0x50;
        if (r >= 0x100 && r <= 0x17F && r != 0x130 && r != 0x131 && r != 0x138 && r != 0x149 && r != 0x178 && r != 0x17F)
                return ((r >= 0x139 && r <= 0x148) || (r >= 0x179 && r <= 0x17E)) ? (r % 2 == 1 ? r + 1 : r)
                                                                                 : (r % 2 == 0 ? r + 1 : r);
        switch (r) {
        case 0x178: return 0xFF;
        case 0x130: return 'i';
        case 0x212A: return 'k';
        case 0x212B: return 0xE5;
        default: return r;
        }
}

static char *go_case(const char *s, size_t n, uint32_t (*map)(uint32_t))
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        bool ascii = true;
        int r = ossb_strbuf_append(&sb, "");
        for (size_t i = 0; i < n; i++)
                ascii &= (unsigned char) s[i] < 0x80;
        for (size_t i = 0; r >= 0 && i < n;) {
                uint32_t c;
                i += df_utf8_decode(s + i, n - i, &c);
                r = ascii ? ossb_strbuf_append_c(&sb, (char) map(c)) : df_utf8_put(&sb, map(c));
        }
        return r < 0 ? NULL : ossb_strbuf_steal(&sb);
}

char *df_go_lower(const char *s, size_t n)
{
        return go_case(s, n, rune_lower);
}

char *df_go_upper(const char *s, size_t n)
{
        return go_case(s, n, rune_upper);
}

char *df_strndup_lower(const char *s, size_t n)
{
        char *d = strndup(s, n);
        if (!d)
                return NULL;
        for (char *p = d; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return d;
}

/* Runes of s, at most max of them; returns the count. */
static size_t to_runes(const char *s, uint32_t *out, size_t max)
{
        size_t n = 0, len = strlen(s);
        for (size_t i = 0; i < len && n < max;)
                i += df_utf8_decode(s + i, len - i, &out[n++]);
        return n;
}

/* Levenshtein distance, but stops early (returns `limit`) once it cannot get below it. */
static size_t distance(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t limit)
{
        size_t row[64];
        if (nb + 1 > ELEMENTSOF(row) || (na > nb ? na - nb : nb - na) >= limit)
                return limit;
        for (size_t j = 0; j <= nb; j++)
                row[j] = j;
        for (size_t i = 1; i <= na; i++) {
                size_t diag = row[0], best = i;
                row[0] = i;
                for (size_t j = 1; j <= nb; j++) {
                        size_t up = row[j];
                        size_t v = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
                        if (up + 1 < v)
                                v = up + 1;
                        if (row[j - 1] + 1 < v)
                                v = row[j - 1] + 1;
                        row[j] = v;
                        diag = up;
                        if (v < best)
                                best = v;
                }
                if (best >= limit)
                        return limit;
        }
        return row[nb];
}

static void lower_runes(uint32_t *r, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (r[i] >= 'A' && r[i] <= 'Z')
                        r[i] += 'a' - 'A';
}

static bool all_case(const char *s, int (*conv)(int))
{
        for (; *s; s++)
                if (conv((unsigned char) *s) != (unsigned char) *s)
                        return false;
        return true;
}

const char *df_suggest(const char *val, const char *const *options, size_t n_options, bool case_sensitive,
                       char *buf, size_t bufsz)
{
        uint32_t v[64], o[64];
        size_t nv, best_dist = 3;
        const char *best = NULL;

        if (strlen(val) >= ELEMENTSOF(v))
                return NULL; /* no option is within distance 3 of something this long */
        nv = to_runes(val, v, ELEMENTSOF(v));
        if (!case_sensitive)
                lower_runes(v, nv);
        for (size_t k = 0; k < n_options; k++) {
                size_t no = to_runes(options[k], o, ELEMENTSOF(o));
                if (!case_sensitive)
                        lower_runes(o, no);
                if (no == nv && memcmp(o, v, nv * sizeof(*v)) == 0)
                        return NULL; /* an exact match: the error is about something else */
                size_t d = distance(v, nv, o, no, best_dist);
                if (d < best_dist) {
                        best_dist = d;
                        best = options[k];
                }
        }
        if (!best || strlen(best) >= bufsz)
                return NULL;
        bool lower = all_case(val, tolower), upper = all_case(val, toupper);
        for (size_t i = 0;; i++) {
                unsigned char c = (unsigned char) best[i];
                if (!case_sensitive)
                        c = (unsigned char) (upper && !lower ? toupper(c) : tolower(c));
                buf[i] = (char) c;
                if (!c)
                        break;
        }
        return buf;
}
