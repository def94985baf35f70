/* engine/dockerfile/parser-json.c - the exec-form reader: BuildKit's parseJSON, i.e. Go's
 * json.Unmarshal into []any followed by "every item must be a string".
 *
 * Exactly what Go accepts: RFC 8259 syntax, only ' ', \t, \r, \n as white space, nesting up to
 * 10000 levels, numbers that overflow a float64 make the whole document invalid (Go reports an
 * UnmarshalTypeError), invalid UTF-8 and lone surrogates in strings decode to U+FFFD.  It never
 * recurses, so hostile nesting costs only a bounded stack array.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "engine/dockerfile/gorune.h"
#include "engine/dockerfile/parser-internal.h"

#define MAX_DEPTH 10000

struct jp {
        const char *s;
        size_t n, i;
        size_t depth;
        char stack[MAX_DEPTH + 1]; /* 'a' array, 'o' object */
        bool overflow;             /* a number beyond float64 */
        bool not_strings;          /* a top-level item that is not a string */
        bool nul;                  /* a top-level string holding U+0000 */
        char **items;
        size_t n_items;
};

static void skip_ws(struct jp *p)
{
        while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' || p->s[p->i] == '\n'))
                p->i++;
}

/* Four hex digits at s[i..]; -1 when not. */
static long hex4(const char *s, size_t n, size_t i)
{
        long v = 0;
        if (i + 4 > n)
                return -1;
        for (size_t k = 0; k < 4; k++) {
                int h = gorune_unhex((unsigned char) s[i + k]);
                if (h < 0)
                        return -1;
                v = v * 16 + h;
        }
        return v;
}

/* Validate a string starting at p->i (on the quote); on success p->i is past the closing
 * quote and [*start, *end) is the raw body. */
static bool scan_string(struct jp *p, size_t *start, size_t *end)
{
        p->i++;
        *start = p->i;
        while (p->i < p->n) {
                unsigned char c = (unsigned char) p->s[p->i];
                if (c == '"') {
                        *end = p->i++;
                        return true;
                }
                if (c < 0x20)
                        return false;
                if (c == '\\') {
                        if (p->i + 1 >= p->n)
                                return false;
                        char e = p->s[p->i + 1];
                        if (e == 'u') {
                                if (hex4(p->s, p->n, p->i + 2) < 0)
                                        return false;
                                p->i += 6;
                                continue;
                        }
                        if (!strchr("\"\\/bfnrt", e) || e == '\0')
                                return false;
                        p->i += 2;
                        continue;
                }
                p->i++;
        }
        return false;
}

/* Go's unquote of a validated body. */
static int decode_string(const char *s, size_t n, char **ret, bool *ret_nul)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int r = ossb_strbuf_append(&sb, "");
        for (size_t i = 0; r >= 0 && i < n;) {
                if (s[i] != '\\') {
                        uint32_t c;
                        size_t w = df_utf8_decode(s + i, n - i, &c);
                        r = c == DF_RUNE_ERROR && w == 1 ? df_utf8_put(&sb, c) : ossb_strbuf_append_n(&sb, s + i, w);
                        i += w;
                        continue;
                }
                char e = s[i + 1];
                if (e != 'u') {
                        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
                        r = ossb_strbuf_append_c(&sb, to[strchr(from, e) - from]);
                        i += 2;
                        continue;
                }
                uint32_t c = (uint32_t) hex4(s, n, i + 2);
                i += 6;
                if (c >= 0xD800 && c < 0xE000) {
                        long lo = (c < 0xDC00 && i + 1 < n && s[i] == '\\' && s[i + 1] == 'u') ? hex4(s, n, i + 2) : -1;
                        if (lo >= 0xDC00 && lo < 0xE000) {
                                c = 0x10000 + ((c - 0xD800) << 10) + ((uint32_t) lo - 0xDC00);
                                i += 6;
                        } else {
                                c = DF_RUNE_ERROR;
                        }
                }
                if (c == 0)
                        *ret_nul = true;
                r = df_utf8_put(&sb, c);
        }
        if (r < 0)
                return r;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

/* Does the number with these significant digits and decimal exponent overflow a float64?
 * value = 0.<digits> x 10^exp10, digits without leading zeros. */
static bool number_overflows(const char *digits, size_t nd, long exp10)
{
        static const char half_past_max[] =
                "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664901797758720"
                "70963302864166928879109465555478519404026306574886715058206819089020007083836762738548458177115317"
                "64475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880"
                "177904174497792";
        if (nd == 0 || exp10 < 309)
                return false;
        if (exp10 > 309)
                return true;
        size_t nh = sizeof(half_past_max) - 1;
        for (size_t k = 0; k < nd || k < nh; k++) {
                char a = k < nd ? digits[k] : '0', b = k < nh ? half_past_max[k] : '0';
                if (a != b)
                        return a > b;
        }
        return true; /* exactly half way: rounds to even, which is +Inf */
}

static bool scan_number(struct jp *p)
{
        _cleanup_strbuf_ struct ossb_strbuf digits = OSSB_STRBUF_INIT;
        const char *s = p->s;
        long int_digits = 0, exp = 0;
        bool seen_nonzero = false;

        if (s[p->i] == '-')
                p->i++;
        if (p->i >= p->n || s[p->i] < '0' || s[p->i] > '9')
                return false;
        if (s[p->i] == '0') {
                p->i++;
        } else {
                for (; p->i < p->n && s[p->i] >= '0' && s[p->i] <= '9'; p->i++) {
                        int_digits++;
                        if (ossb_strbuf_append_c(&digits, s[p->i]) < 0)
                                return false;
                }
                seen_nonzero = true;
        }
        if (p->i < p->n && s[p->i] == '.') {
                size_t start = ++p->i;
                for (; p->i < p->n && s[p->i] >= '0' && s[p->i] <= '9'; p->i++) {
                        if (!seen_nonzero && s[p->i] == '0') {
                                int_digits--;
                                continue;
                        }
                        seen_nonzero = true;
                        if (ossb_strbuf_append_c(&digits, s[p->i]) < 0)
                                return false;
                }
                if (p->i == start)
                        return false;
        }
        if (p->i < p->n && (s[p->i] == 'e' || s[p->i] == 'E')) {
                bool neg = false;
                p->i++;
                if (p->i < p->n && (s[p->i] == '+' || s[p->i] == '-'))
                        neg = s[p->i++] == '-';
                size_t start = p->i;
                for (; p->i < p->n && s[p->i] >= '0' && s[p->i] <= '9'; p->i++)
                        if (exp < 100000000)
                                exp = exp * 10 + (s[p->i] - '0');
                if (p->i == start)
                        return false;
                if (neg)
                        exp = -exp;
        }
        /* trailing zeros of the digits do not change the value */
        size_t nd = digits.len;
        while (nd > 0 && digits.buf[nd - 1] == '0')
                nd--;
        if (nd > 0 && number_overflows(digits.buf, nd, int_digits + exp))
                p->overflow = true;
        return true;
}

static bool scan_literal(struct jp *p)
{
        static const char *const lits[] = { "true", "false", "null" };
        for (size_t k = 0; k < ELEMENTSOF(lits); k++) {
                size_t l = strlen(lits[k]);
                if (p->n - p->i >= l && memcmp(p->s + p->i, lits[k], l) == 0) {
                        p->i += l;
                        return true;
                }
        }
        return false;
}

/* A scalar or the opening of a container at p->i.  Returns 1 when a container was opened,
 * 0 for a complete scalar, -1 invalid, -ENOMEM. */
static int scan_value(struct jp *p)
{
        bool top_item = p->depth == 1;
        if (p->i >= p->n)
                return -1;
        char c = p->s[p->i];
        if (c == '[' || c == '{') {
                if (p->depth >= MAX_DEPTH)
                        return -1; /* Go: "exceeded max depth" */
                p->stack[p->depth++] = c == '[' ? 'a' : 'o';
                p->i++;
                p->not_strings |= top_item;
                return 1;
        }
        if (c == '"') {
                size_t a, b;
                if (!scan_string(p, &a, &b))
                        return -1;
                if (top_item) {
                        char *item = NULL;
                        int r = decode_string(p->s + a, b - a, &item, &p->nul);
                        if (r < 0)
                                return r;
                        r = df_strv_add(&p->items, &p->n_items, item);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        p->not_strings |= top_item;
        if (c == '-' || (c >= '0' && c <= '9'))
                return scan_number(p) ? 0 : -1;
        return scan_literal(p) ? 0 : -1;
}

/* After '{' or ',' in an object: "key" ws ':' */
static bool scan_key(struct jp *p)
{
        size_t a, b;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"' || !scan_string(p, &a, &b))
                return false;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':')
                return false;
        p->i++;
        return true;
}

/* Returns 0 valid, -1 invalid, -ENOMEM. */
static int scan_document(struct jp *p)
{
        skip_ws(p);
        for (;;) {
                /* expecting a value */
                skip_ws(p);
                int r = scan_value(p);
                if (r < 0)
                        return r;
                if (r == 1) {
                        skip_ws(p);
                        char close = p->stack[p->depth - 1] == 'a' ? ']' : '}';
                        if (p->i < p->n && p->s[p->i] == close) {
                                p->i++;
                                p->depth--;
                        } else if (close == '}' && !scan_key(p)) {
                                return -1;
                        } else {
                                continue;
                        }
                }
                /* after a value: close containers or move to the next item */
                for (;;) {
                        skip_ws(p);
                        if (p->depth == 0)
                                return p->i == p->n ? 0 : -1;
                        if (p->i >= p->n)
                                return -1;
                        char top = p->stack[p->depth - 1], c = p->s[p->i];
                        if ((c == ']' && top == 'a') || (c == '}' && top == 'o')) {
                                p->i++;
                                p->depth--;
                                continue;
                        }
                        if (c != ',')
                                return -1;
                        p->i++;
                        if (top == 'o' && !scan_key(p))
                                return -1;
                        break;
                }
        }
}

int df_json_parse_strings(const char *s, size_t n, char ***ret_items)
{
        size_t lead = df_space_prefix(s, n);
        if (lead >= n || s[lead] != '[')
                return DF_JSON_INVALID;

        _cleanup_free_ struct jp *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->s = s + lead;
        p->n = n - lead;
        int r = scan_document(p);
        _cleanup_strv_free_ char **items = TAKE_PTR(p->items);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || p->overflow)
                return DF_JSON_INVALID;
        if (p->not_strings)
                return DF_JSON_NOT_STRINGS;
        if (p->nul)
                return DF_JSON_NUL;
        if (!items) {
                items = ossb_strv_new_empty();
                if (!items)
                        return -ENOMEM;
        }
        *ret_items = TAKE_PTR(items);
        return DF_JSON_OK;
}
