/* registry/regconf.c - see regconf.h.
 *
 * Owns: the registries.conf reader (a TOML subset: tables, arrays of tables, dotted and quoted
 * keys, basic/literal/multi-line strings, booleans; other values such as arrays, inline tables,
 * numbers and dates are read and skipped), the per-registry settings built from it and from the
 * command line, prefix matching, the insecure-host rules and the certs.d lookup.
 * The file is untrusted input for the parser (it is fuzzed): sizes, counts and nesting are
 * bounded and every error names the file and line, never quoting a value.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "registry/regconf.h"

#define VALUE_DEPTH_MAX 32
#define KEY_PARTS_MAX 16

/* ---- arrays ---- */

static size_t pow2ceil(size_t n)
{
        size_t c = 1;
        while (c < n)
                c *= 2;
        return c;
}

/* Make room for element n of an array holding n elements whose capacity is pow2ceil(n) (every
 * array of a regconf is allocated that way), so that appending one by one stays cheap. */
static int array_grow(void *arrp, size_t n, size_t elem_size)
{
        void **arr = arrp;
        if (n != 0 && (n & (n - 1)) != 0)
                return 0;
        void *na = reallocarray(*arr, n ? 2 * n : 1, elem_size);
        if (!na)
                return -ENOMEM;
        *arr = na;
        return 0;
}

static void mirror_clear(struct ossb_regconf_mirror *m)
{
        free(m->location);
        m->location = NULL;
}

static void registry_clear(struct ossb_regconf_registry *r)
{
        free(r->prefix);
        free(r->location);
        for (size_t i = 0; i < r->n_mirrors; i++)
                mirror_clear(&r->mirrors[i]);
        free(r->mirrors);
        *r = (struct ossb_regconf_registry) { 0 };
}

void ossb_regconf_free(struct ossb_regconf *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_registries; i++)
                registry_clear(&c->registries[i]);
        free(c->registries);
        ossb_strv_free(c->insecure_hosts);
        ossb_strv_free(c->cert_dirs);
        free(c);
}

/* ---- locations ---- */

/* Drop a scheme ("http://" sets *insecure) and trailing slashes, then check what is left is a
 * plausible HOST[:PORT][/path] (visible ASCII, none of ?#\"' and no leading '/').  Takes s. */
static int clean_location(char *s, bool *insecure, char **ret)
{
        size_t skip = 0;
        if (strncasecmp(s, "http://", 7) == 0) {
                skip = 7;
                if (insecure)
                        *insecure = true;
        } else if (strncasecmp(s, "https://", 8) == 0) {
                skip = 8;
        }
        memmove(s, s + skip, strlen(s + skip) + 1);
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == '/')
                s[--n] = '\0';
        bool ok = n > 0 && s[0] != '/';
        for (size_t i = 0; ok && i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f || strchr("?#\\\"'", s[i]))
                        ok = false;
        if (!ok) {
                free(s);
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

static bool is_wildcard(const char *prefix)
{
        return prefix[0] == '*';
}

/* A prefix is a location, or "*." followed by a host name without further '*'. */
static bool prefix_ok(const char *p)
{
        if (is_wildcard(p))
                return p[1] == '.' && p[2] && !strchr(p + 1, '*') && !strchr(p, '/');
        return !strchr(p, '*');
}

/* ---- the TOML reader ---- */

enum table {
        TABLE_ROOT = 0,
        TABLE_REGISTRY, /* after [[registry]] */
        TABLE_MIRROR,   /* after [[registry.mirror]] */
        TABLE_OTHER,    /* any other table: its keys are skipped */
};

enum seen {
        SEEN_PREFIX = 1 << 0,
        SEEN_LOCATION = 1 << 1,
        SEEN_INSECURE = 1 << 2,
        SEEN_BLOCKED = 1 << 3,
};

struct parser {
        const char *name;
        const char *s;
        size_t i, n;
        size_t line;
        struct ossb_regconf *c;
        size_t first_new;  /* registries before this index were there before this parse */
        enum table table;
        size_t table_line; /* line of the current table's header */
        unsigned seen;     /* enum seen: keys set in the current table */
        struct ossb_error **err;
};

enum value_type {
        VALUE_OTHER = 0, /* skipped: numbers, dates, arrays, inline tables */
        VALUE_STRING,
        VALUE_BOOL,
};

struct value {
        enum value_type type;
        char *s; /* VALUE_STRING */
        bool b;  /* VALUE_BOOL */
};

static int perr(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct parser *p, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return ossb_error_set(p->err, -ENOMEM, "out of memory");
        return ossb_error_setx(p->err, OSSB_EXIT_USAGE, -EINVAL, "%s:%zu: %s", p->name, p->line, msg);
}

static int oom(struct parser *p)
{
        return ossb_error_set(p->err, -ENOMEM, "out of memory");
}

static bool p_end(const struct parser *p)
{
        return p->i >= p->n;
}

/* The byte at offset k from the cursor, '\0' past the end (the text holds no NUL: checked). */
static char p_at(const struct parser *p, size_t k)
{
        return p->i + k < p->n ? p->s[p->i + k] : '\0';
}

static bool p_starts(const struct parser *p, const char *lit)
{
        size_t n = strlen(lit);
        return p->n - p->i >= n && memcmp(p->s + p->i, lit, n) == 0;
}

static void skip_ws(struct parser *p)
{
        while (!p_end(p) && (p_at(p, 0) == ' ' || p_at(p, 0) == '\t'))
                p->i++;
}

static void skip_comment(struct parser *p)
{
        if (p_at(p, 0) == '#')
                while (!p_end(p) && p_at(p, 0) != '\n')
                        p->i++;
}

/* A newline ("\n" or "\r\n") at the cursor: consumed, counted. */
static bool take_newline(struct parser *p)
{
        if (p_at(p, 0) == '\n' || (p_at(p, 0) == '\r' && p_at(p, 1) == '\n')) {
                p->i += p_at(p, 0) == '\r' ? 2 : 1;
                p->line++;
                return true;
        }
        return false;
}

/* Whitespace, newlines and comments (inside arrays). */
static void skip_blank(struct parser *p)
{
        for (;;) {
                skip_ws(p);
                skip_comment(p);
                if (!take_newline(p))
                        return;
        }
}

static bool is_bare_key_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool is_control(unsigned char u)
{
        return (u < 0x20 && u != '\t') || u == 0x7f;
}

static int append_utf8(struct ossb_strbuf *sb, uint32_t cp)
{
        char b[4];
        size_t n;
        if (cp < 0x80) {
                b[0] = (char) cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (char) (0xc0 | (cp >> 6));
                b[1] = (char) (0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (char) (0xe0 | (cp >> 12));
                b[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[2] = (char) (0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (char) (0xf0 | (cp >> 18));
                b[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
                b[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[3] = (char) (0x80 | (cp & 0x3f));
                n = 4;
        }
        return ossb_strbuf_append_n(sb, b, n);
}

/* \uXXXX or \UXXXXXXXX; the cursor is on the 'u' or 'U'. */
static int parse_unicode_escape(struct parser *p, struct ossb_strbuf *sb)
{
        size_t digits = p_at(p, 0) == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t k = 1; k <= digits; k++) {
                char c = p_at(p, k);
                if (!isxdigit((unsigned char) c))
                        return perr(p, "invalid \\u escape in a string");
                cp = cp * 16 + (uint32_t) (isdigit((unsigned char) c) ? c - '0' : (tolower((unsigned char) c) - 'a' + 10));
        }
        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return perr(p, "invalid Unicode scalar value in a string");
        p->i += digits + 1;
        return append_utf8(sb, cp) < 0 ? oom(p) : 0;
}

/* An escape in a basic string; the cursor is on the backslash. */
static int parse_escape(struct parser *p, struct ossb_strbuf *sb)
{
        static const char from[] = "btnfr\"\\e", to[] = "\b\t\n\f\r\"\\\033";
        p->i++;
        char c = p_at(p, 0);
        if (c == 'u' || c == 'U')
                return parse_unicode_escape(p, sb);
        const char *k = c ? strchr(from, c) : NULL;
        if (!k)
                return perr(p, "invalid escape sequence in a string");
        p->i++;
        return ossb_strbuf_append_c(sb, to[k - from]) < 0 ? oom(p) : 0;
}

/* In a multi-line string at a run of quote characters q: the closing delimiter when the run is
 * 3 to 5 long (up to two quotes before it belong to the content). */
static int multiline_close(struct parser *p, char q, struct ossb_strbuf *sb, bool *closed)
{
        size_t run = 0;
        while (p_at(p, run) == q)
                run++;
        *closed = run >= 3;
        if (run > 5)
                return perr(p, "too many quotes at the end of a multi-line string");
        if (!*closed)
                run = 1;
        else
                run -= 3;
        for (size_t k = 0; k < run; k++)
                if (ossb_strbuf_append_c(sb, q) < 0)
                        return oom(p);
        p->i += *closed ? run + 3 : 1;
        return 0;
}

/* A backslash at the end of a line in a """ string: it and all whitespace and newlines after it
 * are dropped.  Returns 1 when it was one, 0 when it is an ordinary escape. */
static int line_ending_backslash(struct parser *p)
{
        size_t k = 1;
        while (p_at(p, k) == ' ' || p_at(p, k) == '\t')
                k++;
        if (p_at(p, k) != '\n' && !(p_at(p, k) == '\r' && p_at(p, k + 1) == '\n'))
                return 0;
        p->i += k;
        for (;;) {
                skip_ws(p);
                if (!take_newline(p))
                        return 1;
        }
}

/* Strings; the cursor is on the opening quote.  `basic`: "..." with escapes, else '...'. */
static int parse_string(struct parser *p, bool basic, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        char q = basic ? '"' : '\'';
        bool multi = p_at(p, 1) == q && p_at(p, 2) == q;
        int r = 0;
        p->i += multi ? 3 : 1;
        if (multi)
                take_newline(p);
        for (;;) {
                if (p_end(p))
                        return perr(p, "unterminated string");
                unsigned char u = (unsigned char) p_at(p, 0);
                bool closed = false;
                if (u == (unsigned char) q && !multi) {
                        p->i++;
                        break;
                }
                if (u == (unsigned char) q) {
                        r = multiline_close(p, q, &sb, &closed);
                        if (r < 0 || closed)
                                break;
                        continue;
                }
                if (multi && (u == '\n' || u == '\r')) {
                        if (!take_newline(p))
                                return perr(p, "bare carriage return in a string");
                        if (ossb_strbuf_append_c(&sb, '\n') < 0)
                                return oom(p);
                        continue;
                }
                if (u == '\n' || u == '\r')
                        return perr(p, "unterminated string");
                if (is_control(u))
                        return perr(p, "control character in a string");
                if (u == '\\' && basic) {
                        if (multi && line_ending_backslash(p))
                                continue;
                        r = parse_escape(p, &sb);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (ossb_strbuf_append_c(&sb, (char) u) < 0)
                        return oom(p);
                p->i++;
        }
        if (r < 0)
                return r;
        char *s = ossb_strbuf_steal(&sb);
        if (!s)
                return oom(p);
        *ret = s;
        return 0;
}

static int parse_value(struct parser *p, unsigned depth, struct value *ret);
static int parse_key(struct parser *p, char ***ret);

static void value_clear(struct value *v)
{
        free(v->s);
        *v = (struct value) { 0 };
}

/* [ value, value, ... ] across lines, comments allowed, trailing comma allowed; skipped. */
static int skip_array(struct parser *p, unsigned depth)
{
        p->i++;
        for (;;) {
                skip_blank(p);
                if (p_at(p, 0) == ']')
                        break;
                struct value v = { 0 };
                int r = parse_value(p, depth + 1, &v);
                value_clear(&v);
                if (r < 0)
                        return r;
                skip_blank(p);
                if (p_at(p, 0) == ',') {
                        p->i++;
                        continue;
                }
                if (p_at(p, 0) != ']')
                        return perr(p, "expected ',' or ']' in an array");
                break;
        }
        p->i++;
        return 0;
}

/* { key = value, ... } on one line; skipped. */
static int skip_inline_table(struct parser *p, unsigned depth)
{
        p->i++;
        skip_ws(p);
        if (p_at(p, 0) == '}') {
                p->i++;
                return 0;
        }
        for (;;) {
                _cleanup_strv_free_ char **key = NULL;
                struct value v = { 0 };
                int r = parse_key(p, &key);
                if (r < 0)
                        return r;
                skip_ws(p);
                if (p_at(p, 0) != '=')
                        return perr(p, "expected '=' after a key");
                p->i++;
                skip_ws(p);
                r = parse_value(p, depth + 1, &v);
                value_clear(&v);
                if (r < 0)
                        return r;
                skip_ws(p);
                if (p_at(p, 0) == '}') {
                        p->i++;
                        return 0;
                }
                if (p_at(p, 0) != ',')
                        return perr(p, "expected ',' or '}' in an inline table");
                p->i++;
                skip_ws(p);
        }
}

static bool scalar_char(char c)
{
        return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

static int parse_value(struct parser *p, unsigned depth, struct value *ret)
{
        char c = p_at(p, 0);
        if (depth > VALUE_DEPTH_MAX)
                return perr(p, "values nested too deeply");
        if (c == '"' || c == '\'') {
                ret->type = VALUE_STRING;
                return parse_string(p, c == '"', &ret->s);
        }
        if (c == '[')
                return skip_array(p, depth);
        if (c == '{')
                return skip_inline_table(p, depth);
        if ((p_starts(p, "true") && !scalar_char(p_at(p, 4))) || (p_starts(p, "false") && !scalar_char(p_at(p, 5)))) {
                ret->type = VALUE_BOOL;
                ret->b = c == 't';
                p->i += ret->b ? 4 : 5;
                return 0;
        }
        size_t start = p->i;
        while (!p_end(p) && scalar_char(p_at(p, 0)))
                p->i++;
        if (p->i == start)
                return perr(p, "expected a value");
        return 0;
}

/* A key: bare or quoted parts joined by dots (whitespace allowed around the dots). */
static int parse_key(struct parser *p, char ***ret)
{
        _cleanup_strv_free_ char **parts = NULL;
        for (size_t count = 0;; count++) {
                char *part = NULL;
                skip_ws(p);
                if (count >= KEY_PARTS_MAX)
                        return perr(p, "key with too many parts");
                char c = p_at(p, 0);
                if (c == '"' || c == '\'') {
                        int r = parse_string(p, c == '"', &part);
                        if (r < 0)
                                return r;
                } else {
                        size_t start = p->i;
                        while (!p_end(p) && is_bare_key_char(p_at(p, 0)))
                                p->i++;
                        if (p->i == start)
                                return perr(p, "expected a key");
                        if (!(part = strndup(p->s + start, p->i - start)))
                                return oom(p);
                }
                if (ossb_strv_consume(&parts, part) < 0)
                        return oom(p);
                skip_ws(p);
                if (p_at(p, 0) != '.')
                        break;
                p->i++;
        }
        *ret = TAKE_PTR(parts);
        return 0;
}

static bool key_is(char **key, const char *a, const char *b)
{
        size_t n = ossb_strv_length(key);
        return n == (b ? 2u : 1u) && streq(key[0], a) && (!b || streq(key[1], b));
}

/* ---- tables ---- */

static struct ossb_regconf_registry *current_registry(struct parser *p)
{
        return p->c->n_registries > p->first_new ? &p->c->registries[p->c->n_registries - 1] : NULL;
}

/* Leaving a table: a registry needs a prefix or a location (each defaults to the other), a
 * wildcard prefix no location; a mirror needs a location. */
static int finish_table(struct parser *p)
{
        struct ossb_regconf_registry *r = current_registry(p);
        if (p->table == TABLE_MIRROR && !r->mirrors[r->n_mirrors - 1].location)
                return ossb_error_setx(p->err, OSSB_EXIT_USAGE, -EINVAL,
                                       "%s:%zu: [[registry.mirror]] without a `location`", p->name, p->table_line);
        if (p->table != TABLE_REGISTRY)
                return 0;
        if (!r->prefix && !r->location)
                return ossb_error_setx(p->err, OSSB_EXIT_USAGE, -EINVAL,
                                       "%s:%zu: [[registry]] without a `prefix` or `location`", p->name, p->table_line);
        if (r->prefix && is_wildcard(r->prefix) && r->location)
                return ossb_error_setx(p->err, OSSB_EXIT_USAGE, -EINVAL,
                                       "%s:%zu: [[registry]] with a wildcard `prefix` cannot have a `location`", p->name,
                                       p->table_line);
        if (!r->prefix && !(r->prefix = strdup(r->location)))
                return oom(p);
        if (!r->location && !is_wildcard(r->prefix) && !(r->location = strdup(r->prefix)))
                return oom(p);
        return 0;
}

static int start_registry(struct parser *p)
{
        struct ossb_regconf *c = p->c;
        if (c->n_registries >= OSSB_REGCONF_MAX_REGISTRIES)
                return perr(p, "more than %d [[registry]] tables", OSSB_REGCONF_MAX_REGISTRIES);
        if (array_grow(&c->registries, c->n_registries, sizeof(*c->registries)) < 0)
                return oom(p);
        c->registries[c->n_registries++] = (struct ossb_regconf_registry) { 0 };
        p->table = TABLE_REGISTRY;
        return 0;
}

static int start_mirror(struct parser *p)
{
        struct ossb_regconf_registry *r = current_registry(p);
        if (!r)
                return perr(p, "[[registry.mirror]] before any [[registry]]");
        if (r->n_mirrors >= OSSB_REGCONF_MAX_MIRRORS)
                return perr(p, "more than %d mirrors for one registry", OSSB_REGCONF_MAX_MIRRORS);
        if (array_grow(&r->mirrors, r->n_mirrors, sizeof(*r->mirrors)) < 0)
                return oom(p);
        r->mirrors[r->n_mirrors++] = (struct ossb_regconf_mirror) { 0 };
        p->table = TABLE_MIRROR;
        return 0;
}

/* "[name]" or "[[name]]"; the cursor is on the first '['. */
static int parse_header(struct parser *p)
{
        _cleanup_strv_free_ char **key = NULL;
        bool array = p_at(p, 1) == '[';
        size_t line = p->line;
        p->i += array ? 2 : 1;
        int r = parse_key(p, &key);
        if (r < 0)
                return r;
        if (p_at(p, 0) != ']' || (array && p_at(p, 1) != ']'))
                return perr(p, "expected '%s' to end a table header", array ? "]]" : "]");
        p->i += array ? 2 : 1;
        r = finish_table(p);
        if (r < 0)
                return r;
        p->table_line = line;
        p->seen = 0;
        if (array && key_is(key, "registry", NULL))
                return start_registry(p);
        if (array && key_is(key, "registry", "mirror"))
                return start_mirror(p);
        if (key_is(key, "registry", NULL) || key_is(key, "registry", "mirror"))
                return perr(p, "`%s` must be an array of tables ([[...]])", key[1] ? "registry.mirror" : "registry");
        p->table = TABLE_OTHER;
        return 0;
}

/* Store a string value as a location (or prefix) of the current table. */
static int set_location(struct parser *p, const char *key, struct value *v, char **slot, bool *insecure)
{
        if (v->type != VALUE_STRING)
                return perr(p, "`%s` must be a string", key);
        int r = clean_location(TAKE_PTR(v->s), insecure, slot);
        if (r == -EINVAL)
                return perr(p, "`%s` is not a valid registry location", key);
        return 0;
}

static int set_bool(struct parser *p, const char *key, const struct value *v, bool *slot)
{
        if (v->type != VALUE_BOOL)
                return perr(p, "`%s` must be true or false", key);
        *slot = *slot || v->b;
        return 0;
}

static int check_once(struct parser *p, const char *key, unsigned flag)
{
        if (p->seen & flag)
                return perr(p, "`%s` is set twice", key);
        p->seen |= flag;
        return 0;
}

static unsigned field_flag(enum table t, const char *key)
{
        if (streq(key, "location"))
                return SEEN_LOCATION;
        if (streq(key, "insecure"))
                return SEEN_INSECURE;
        if (t == TABLE_REGISTRY && streq(key, "prefix"))
                return SEEN_PREFIX;
        if (t == TABLE_REGISTRY && streq(key, "blocked"))
                return SEEN_BLOCKED;
        return 0;
}

/* A key = value line in [[registry]] or [[registry.mirror]]; other keys (and every key of
 * other tables) are skipped. */
static int apply(struct parser *p, char **key, struct value *v)
{
        if ((p->table != TABLE_REGISTRY && p->table != TABLE_MIRROR) || ossb_strv_length(key) != 1)
                return 0;
        unsigned flag = field_flag(p->table, key[0]);
        if (!flag)
                return 0;
        int r = check_once(p, key[0], flag);
        if (r < 0)
                return r;
        struct ossb_regconf_registry *reg = current_registry(p);
        char **location = &reg->location;
        bool *insecure = &reg->insecure;
        if (p->table == TABLE_MIRROR) {
                location = &reg->mirrors[reg->n_mirrors - 1].location;
                insecure = &reg->mirrors[reg->n_mirrors - 1].insecure;
        }
        switch (flag) {
        case SEEN_LOCATION:
                return set_location(p, key[0], v, location, insecure);
        case SEEN_INSECURE:
                return set_bool(p, key[0], v, insecure);
        case SEEN_BLOCKED:
                return set_bool(p, key[0], v, &reg->blocked);
        default:
                r = set_location(p, key[0], v, &reg->prefix, NULL);
                if (r < 0)
                        return r;
                return prefix_ok(reg->prefix) ? 0 : perr(p, "`prefix` is not a valid prefix");
        }
}

static int parse_keyval(struct parser *p)
{
        _cleanup_strv_free_ char **key = NULL;
        struct value v = { 0 };
        int r = parse_key(p, &key);
        if (r < 0)
                return r;
        if (p_at(p, 0) != '=')
                return perr(p, "expected '=' after a key");
        p->i++;
        skip_ws(p);
        r = parse_value(p, 0, &v);
        if (r >= 0)
                r = apply(p, key, &v);
        value_clear(&v);
        return r;
}

static int expect_eol(struct parser *p)
{
        skip_ws(p);
        skip_comment(p);
        if (p_end(p) || take_newline(p))
                return 0;
        return perr(p, "expected the end of the line");
}

static int parse_lines(struct parser *p)
{
        for (;;) {
                skip_ws(p);
                skip_comment(p);
                if (p_end(p))
                        return finish_table(p);
                if (take_newline(p))
                        continue;
                int r = p_at(p, 0) == '[' ? parse_header(p) : parse_keyval(p);
                if (r < 0)
                        return r;
                r = expect_eol(p);
                if (r < 0)
                        return r;
        }
}

int ossb_regconf_parse(struct ossb_regconf *c, const char *name, const char *text, size_t len,
                       struct ossb_error **err)
{
        struct parser p = { .name = name ? name : "registries.conf", .s = text, .n = len, .line = 1, .c = c,
                            .first_new = c->n_registries, .err = err };
        if (len > OSSB_REGCONF_MAX_SIZE)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EFBIG, "%s: larger than %d bytes", p.name,
                                       OSSB_REGCONF_MAX_SIZE);
        const char *nul = len ? memchr(text, '\0', len) : NULL;
        if (nul) {
                for (const char *q = text; q < nul; q++)
                        p.line += *q == '\n';
                return perr(&p, "NUL byte");
        }
        int r = parse_lines(&p);
        if (r < 0) {
                for (size_t i = p.first_new; i < c->n_registries; i++)
                        registry_clear(&c->registries[i]);
                c->n_registries = p.first_new;
        }
        return r;
}

/* ---- building from options ---- */

static void regconf_freep(struct ossb_regconf **c)
{
        ossb_regconf_free(*c);
}

static int add_insecure_hosts(struct ossb_regconf *c, char *const *hosts, struct ossb_error **err)
{
        if (!(c->insecure_hosts = ossb_strv_new_empty()))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; hosts && hosts[i]; i++) {
                char *s = strdup(hosts[i]), *clean = NULL;
                if (!s)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (clean_location(s, NULL, &clean) < 0)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--insecure-registry: invalid value `%s`",
                                               hosts[i]);
                if (ossb_strv_consume(&c->insecure_hosts, clean) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static struct ossb_regconf_registry *docker_hub_entry(struct ossb_regconf *c, struct ossb_error **err)
{
        for (size_t i = 0; i < c->n_registries; i++)
                if (streq(c->registries[i].prefix, "docker.io"))
                        return &c->registries[i];
        if (c->n_registries >= OSSB_REGCONF_MAX_REGISTRIES ||
            array_grow(&c->registries, c->n_registries, sizeof(*c->registries)) < 0) {
                ossb_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        struct ossb_regconf_registry r = { .prefix = strdup("docker.io"), .location = strdup("docker.io") };
        if (!r.prefix || !r.location) {
                registry_clear(&r);
                ossb_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        c->registries[c->n_registries] = r;
        return &c->registries[c->n_registries++];
}

/* --registry-mirror values go first among docker.io's mirrors. */
static int add_cli_mirrors(struct ossb_regconf *c, char *const *mirrors, struct ossb_error **err)
{
        size_t n = ossb_strv_length(mirrors);
        struct ossb_regconf_registry *hub = docker_hub_entry(c, err);
        if (!hub)
                return -ENOMEM;
        if (n + hub->n_mirrors > OSSB_REGCONF_MAX_MIRRORS)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "more than %d registry mirrors",
                                       OSSB_REGCONF_MAX_MIRRORS);
        size_t total = n + hub->n_mirrors;
        struct ossb_regconf_mirror *m = calloc(pow2ceil(total), sizeof(*m));
        if (!m)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                char *s = strdup(mirrors[i]);
                if (!s || clean_location(s, &m[i].insecure, &m[i].location) < 0) {
                        for (size_t k = 0; k < i; k++)
                                mirror_clear(&m[k]);
                        free(m);
                        if (!s)
                                return ossb_error_set(err, -ENOMEM, "out of memory");
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--registry-mirror: invalid value `%s`",
                                               mirrors[i]);
                }
        }
        if (hub->n_mirrors)
                memcpy(m + n, hub->mirrors, hub->n_mirrors * sizeof(*m));
        free(hub->mirrors);
        hub->mirrors = m;
        hub->n_mirrors = total;
        return 0;
}

static int add_cert_dirs(struct ossb_regconf *c, const char *cert_dir)
{
        if (!(c->cert_dirs = ossb_strv_new_empty()))
                return -ENOMEM;
        if (cert_dir && cert_dir[0] && ossb_strv_push(&c->cert_dirs, cert_dir) < 0)
                return -ENOMEM;
        if (ossb_strv_push(&c->cert_dirs, "/etc/containers/certs.d") < 0 ||
            ossb_strv_push(&c->cert_dirs, "/etc/docker/certs.d") < 0)
                return -ENOMEM;
        return 0;
}

static int read_conf(struct ossb_regconf *c, const char *path, struct ossb_error **err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = ossb_read_file(path, OSSB_REGCONF_MAX_SIZE, &text, &len, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_USAGE);
                return ossb_error_wrap(err, "--registries-conf");
        }
        return ossb_regconf_parse(c, path, text, len, err);
}

int ossb_regconf_new(char *const *insecure_hosts, char *const *mirrors, const char *conf_file, const char *cert_dir,
                     struct ossb_regconf **ret, struct ossb_error **err)
{
        _cleanup_(regconf_freep) struct ossb_regconf *c = calloc(1, sizeof(*c));
        if (!c)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = add_insecure_hosts(c, insecure_hosts, err);
        if (r < 0)
                return r;
        if (conf_file && (r = read_conf(c, conf_file, err)) < 0)
                return r;
        if (mirrors && mirrors[0] && (r = add_cli_mirrors(c, mirrors, err)) < 0)
                return r;
        if (add_cert_dirs(c, cert_dir) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- matching ---- */

/* "*.example.com" against the host of host[:port] (its first n bytes). */
static bool wildcard_host(const char *prefix, const char *host, size_t n)
{
        const char *colon = memchr(host, ':', n);
        size_t hn = colon ? (size_t) (colon - host) : n, sl = strlen(prefix + 1);
        return hn > sl && strncasecmp(host + hn - sl, prefix + 1, sl) == 0;
}

/* The length of repository matched by r's prefix, 0 when it does not match. */
static size_t matched_len(const struct ossb_regconf_registry *r, const char *repository)
{
        if (is_wildcard(r->prefix)) {
                size_t hn = strcspn(repository, "/");
                return wildcard_host(r->prefix, repository, hn) ? hn : 0;
        }
        size_t n = strlen(r->prefix);
        if (n == 0 || strncmp(repository, r->prefix, n) != 0 || (repository[n] != '\0' && repository[n] != '/'))
                return 0;
        return n;
}

const struct ossb_regconf_registry *ossb_regconf_match(const struct ossb_regconf *c, const char *repository)
{
        const struct ossb_regconf_registry *best = NULL;
        size_t best_len = 0;
        for (size_t i = 0; c && repository && i < c->n_registries; i++) {
                size_t score = strlen(c->registries[i].prefix);
                if (score > best_len && matched_len(&c->registries[i], repository) > 0) {
                        best = &c->registries[i];
                        best_len = score;
                }
        }
        return best;
}

int ossb_regconf_rewrite(const struct ossb_regconf_registry *r, const char *location, const char *repository,
                         char **ret)
{
        size_t n = matched_len(r, repository);
        char *s = NULL;
        if (n == 0)
                return -EINVAL;
        if (!location)
                s = strdup(repository);
        else if (asprintf(&s, "%s%s", location, repository + n) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- insecure hosts ---- */

/* "HOST[:PORT]", "[V6][:PORT]" or a bare IPv6 address: the host (brackets dropped) into
 * host[size] and the port (digits) or NULL.  false when malformed. */
static bool split_hostport(const char *hp, char *host, size_t size, const char **ret_port)
{
        const char *port = NULL, *h = hp;
        size_t hn;
        if (hp[0] == '[') {
                const char *e = strchr(hp, ']');
                if (!e || (e[1] && e[1] != ':'))
                        return false;
                port = e[1] ? e + 2 : NULL;
                h = hp + 1;
                hn = (size_t) (e - h);
        } else {
                const char *colon = strchr(hp, ':');
                if (colon && !strchr(colon + 1, ':'))
                        port = colon + 1;
                hn = port ? (size_t) (colon - hp) : strlen(hp);
        }
        if (hn == 0 || hn >= size)
                return false;
        if (port && (!port[0] || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port)))
                return false;
        memcpy(host, h, hn);
        host[hn] = '\0';
        *ret_port = port;
        return true;
}

static bool is_loopback(const char *hostport)
{
        char host[256];
        const char *port;
        struct in_addr a4;
        struct in6_addr a6;
        if (!split_hostport(hostport, host, sizeof(host), &port))
                return false;
        if (strcasecmp(host, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, host, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6);
        return false;
}

/* "NET/BITS" (IPv4 or IPv6) against the host of hostport. */
static bool cidr_contains(const char *cidr, const char *hostport)
{
        char net[64], host[256];
        const char *slash = strchr(cidr, '/'), *port;
        unsigned char a[16], b[16];
        size_t len, nl = (size_t) (slash - cidr);
        if (nl >= sizeof(net) || !slash[1] || strlen(slash + 1) > 3 || strspn(slash + 1, "0123456789") != strlen(slash + 1))
                return false;
        memcpy(net, cidr, nl);
        net[nl] = '\0';
        unsigned bits = (unsigned) strtoul(slash + 1, NULL, 10);
        if (!split_hostport(hostport, host, sizeof(host), &port))
                return false;
        if (inet_pton(AF_INET, net, a) == 1 && inet_pton(AF_INET, host, b) == 1)
                len = 4;
        else if (inet_pton(AF_INET6, net, a) == 1 && inet_pton(AF_INET6, host, b) == 1)
                len = 16;
        else
                return false;
        if (bits > len * 8)
                return false;
        for (size_t i = 0; i < len && bits > 0; i++, bits = bits > 8 ? bits - 8 : 0) {
                unsigned char mask = bits >= 8 ? 0xff : (unsigned char) (0xff << (8 - bits));
                if ((a[i] & mask) != (b[i] & mask))
                        return false;
        }
        return true;
}

/* A --insecure-registry entry: HOST:PORT exactly, HOST for any port, or a CIDR range. */
static bool insecure_entry_matches(const char *entry, const char *hostport)
{
        char eh[256], hh[256];
        const char *ep, *hpp;
        if (strchr(entry, '/'))
                return cidr_contains(entry, hostport);
        if (strcasecmp(entry, hostport) == 0)
                return true;
        if (!split_hostport(entry, eh, sizeof(eh), &ep) || ep || !split_hostport(hostport, hh, sizeof(hh), &hpp))
                return false;
        return strcasecmp(eh, hh) == 0;
}

static bool location_host_is(const char *location, const char *hostport)
{
        size_t n = strcspn(location, "/");
        return n == strlen(hostport) && strncasecmp(location, hostport, n) == 0;
}

static bool registry_insecure(const struct ossb_regconf_registry *r, const char *hostport)
{
        if (r->insecure && r->location && location_host_is(r->location, hostport))
                return true;
        if (r->insecure && !r->location && wildcard_host(r->prefix, hostport, strlen(hostport)))
                return true;
        for (size_t i = 0; i < r->n_mirrors; i++)
                if (r->mirrors[i].insecure && location_host_is(r->mirrors[i].location, hostport))
                        return true;
        return false;
}

bool ossb_regconf_insecure(const struct ossb_regconf *c, const char *hostport)
{
        if (!hostport || !hostport[0])
                return false;
        if (is_loopback(hostport))
                return true;
        for (size_t i = 0; c && c->insecure_hosts && c->insecure_hosts[i]; i++)
                if (insecure_entry_matches(c->insecure_hosts[i], hostport))
                        return true;
        for (size_t i = 0; c && i < c->n_registries; i++)
                if (registry_insecure(&c->registries[i], hostport))
                        return true;
        return false;
}

/* ---- certs.d ---- */

struct cert_dir {
        char **crts;  /* *.crt names */
        char **certs; /* NAME of NAME.cert */
        char **keys;  /* NAME of NAME.key */
};

static void cert_dir_clear(struct cert_dir *d)
{
        ossb_strv_free(d->crts);
        ossb_strv_free(d->certs);
        ossb_strv_free(d->keys);
}

static bool has_suffix(const char *s, const char *suffix, size_t *ret_base)
{
        size_t n = strlen(s), sl = strlen(suffix);
        if (n <= sl || strcmp(s + n - sl, suffix) != 0)
                return false;
        *ret_base = n - sl;
        return true;
}

static int cmp_crt(const void *a, const void *b)
{
        const char *x = *(char *const *) a, *y = *(char *const *) b;
        if (streq(x, "ca.crt") || streq(y, "ca.crt"))
                return streq(x, "ca.crt") ? (streq(y, "ca.crt") ? 0 : -1) : 1;
        return strcmp(x, y);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void sort_strv(char **v, int (*cmp)(const void *, const void *))
{
        if (v)
                qsort(v, ossb_strv_length(v), sizeof(char *), cmp);
}

/* Sort one directory entry into d (regular files only, dot files skipped). */
static int cert_dir_add(struct cert_dir *d, int dfd, const char *name)
{
        struct stat st;
        size_t base;
        char ***into = NULL;
        if (name[0] == '.' || fstatat(dfd, name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                return 0;
        if (has_suffix(name, ".crt", &base))
                return ossb_strv_push(&d->crts, name);
        if (has_suffix(name, ".cert", &base))
                into = &d->certs;
        else if (has_suffix(name, ".key", &base))
                into = &d->keys;
        if (!into)
                return 0;
        char *b = strndup(name, base);
        return b ? ossb_strv_consume(into, b) : -ENOMEM;
}

static int cert_dir_read(const char *path, struct cert_dir *d, struct ossb_error **err)
{
        DIR *dir = opendir(path);
        struct dirent *de;
        int r = 0;
        if (!dir)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -errno, "cannot open `%s`: %m", path);
        while (r >= 0) {
                errno = 0;
                if (!(de = readdir(dir))) {
                        r = errno ? -errno : 0;
                        break;
                }
                r = cert_dir_add(d, dirfd(dir), de->d_name);
        }
        closedir(dir);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "cannot read `%s`: %s", path, strerror(-r));
        sort_strv(d->crts, cmp_crt);
        sort_strv(d->certs, cmp_str);
        sort_strv(d->keys, cmp_str);
        return 0;
}

/* Every NAME.cert has its NAME.key and the reverse; the pair used: client, else the first. */
static int cert_pair(const char *path, const struct cert_dir *d, const char **ret, struct ossb_error **err)
{
        for (size_t i = 0; d->certs && d->certs[i]; i++)
                if (!ossb_strv_contains(d->keys, d->certs[i]))
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT,
                                               "`%s`: client certificate %s.cert has no key %s.key", path, d->certs[i],
                                               d->certs[i]);
        for (size_t i = 0; d->keys && d->keys[i]; i++)
                if (!ossb_strv_contains(d->certs, d->keys[i]))
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT,
                                               "`%s`: client key %s.key has no certificate %s.cert", path, d->keys[i],
                                               d->keys[i]);
        *ret = ossb_strv_contains(d->certs, "client") ? "client" : (d->certs ? d->certs[0] : NULL);
        return 0;
}

static int tls_from_dir(const char *path, char ***ret_cas, char **ret_cert, char **ret_key, struct ossb_error **err)
{
        _cleanup_(cert_dir_clear) struct cert_dir d = { 0 };
        _cleanup_strv_free_ char **cas = NULL;
        _cleanup_free_ char *cert = NULL, *key = NULL;
        const char *pair = NULL;
        int r = cert_dir_read(path, &d, err);
        if (r < 0 || (r = cert_pair(path, &d, &pair, err)) < 0)
                return r;
        for (size_t i = 0; d.crts && d.crts[i]; i++) {
                char *p = NULL;
                if (asprintf(&p, "%s/%s", path, d.crts[i]) < 0 || ossb_strv_consume(&cas, p) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (pair && (asprintf(&cert, "%s/%s.cert", path, pair) < 0 || asprintf(&key, "%s/%s.key", path, pair) < 0)) {
                cert = key = NULL;
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        *ret_cas = TAKE_PTR(cas);
        *ret_cert = TAKE_PTR(cert);
        *ret_key = TAKE_PTR(key);
        return 0;
}

/* A host[:port] usable as a directory name: no '/', no leading '.', printable. */
static bool dir_name_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 255 || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f || s[i] == '/')
                        return false;
        return true;
}

int ossb_regconf_tls_files(const struct ossb_regconf *c, const char *hostport, char ***ret_cas, char **ret_cert,
                           char **ret_key, struct ossb_error **err)
{
        if (!hostport || !dir_name_ok(hostport))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "invalid registry host name for certs.d");
        for (size_t i = 0; c && c->cert_dirs && c->cert_dirs[i]; i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;
                if (asprintf(&path, "%s/%s", c->cert_dirs[i], hostport) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (stat(path, &st) < 0) {
                        if (errno == ENOENT || errno == ENOTDIR)
                                continue;
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -errno, "cannot access `%s`: %m", path);
                }
                if (S_ISDIR(st.st_mode))
                        return tls_from_dir(path, ret_cas, ret_cert, ret_key, err);
        }
        *ret_cas = NULL;
        *ret_cert = NULL;
        *ret_key = NULL;
        return 0;
}
