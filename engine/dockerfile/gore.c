/* engine/dockerfile/gore.c - Go regexp (RE2 syntax, Perl flags) as far as moby/patternmatcher
 * can produce it: parsed into a small tree, compiled to a Thompson program and run as a Pike
 * VM (see gore.h).
 *
 * Owns: struct gore and its program and classes.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/cleanup.h"
#include "engine/dockerfile/gore.h"
#include "engine/dockerfile/gorune.h"

#define MAX_NEST 1000
#define MAX_RUNE 0x10FFFF

struct range {
        int32_t lo, hi;
};

struct cls {
        struct range *r;
        size_t n, cap;
        bool neg;
};

enum op { OP_CLASS, OP_ANY, OP_BEGIN, OP_END, OP_WORDB, OP_NWORDB, OP_SPLIT, OP_JMP, OP_MATCH };

struct inst {
        enum op op;
        size_t x, y;
};

struct gore {
        struct inst *prog;
        size_t n, cap;
        struct cls *cls;
        size_t ncls, capcls;
};

/* The tree: nodes in one array, children as sibling lists. */
enum node_kind { N_CLASS, N_ANY, N_ASSERT, N_CAT, N_ALT, N_STAR, N_PLUS, N_QUEST };

struct node {
        enum node_kind kind;
        size_t arg; /* class index, or assertion op */
        ssize_t first, last, next;
};

struct parser {
        const char *s;
        size_t pos, len;
        struct gore *re;
        struct node *nodes;
        size_t nn, capn;
        unsigned depth;
        const char *reason;
};

/* ---- building blocks ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
        if (need <= *cap)
                return 0;
        size_t c = *cap ? *cap : 16;
        while (c < need) {
                if (c > SIZE_MAX / 2 / elem)
                        return -ENOMEM;
                c *= 2;
        }
        void *n = realloc(*p, c * elem);
        if (!n)
                return -ENOMEM;
        *p = n;
        *cap = c;
        return 0;
}

static int cls_add(struct cls *c, int32_t lo, int32_t hi)
{
        if (grow((void **) &c->r, &c->cap, c->n + 1, sizeof(*c->r)) < 0)
                return -ENOMEM;
        c->r[c->n++] = (struct range){ lo, hi };
        return 0;
}

static int range_cmp(const void *a, const void *b)
{
        const struct range *x = a, *y = b;
        return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Add the complement of ranges r[0..n) (they are sorted here). */
static int cls_add_negated(struct cls *c, struct range *r, size_t n)
{
        qsort(r, n, sizeof(*r), range_cmp);
        int32_t next = 0;
        for (size_t i = 0; i < n; i++) {
                if (r[i].lo > next && cls_add(c, next, r[i].lo - 1) < 0)
                        return -ENOMEM;
                if (r[i].hi + 1 > next)
                        next = r[i].hi + 1;
        }
        return next <= MAX_RUNE ? cls_add(c, next, MAX_RUNE) : 0;
}

static bool cls_match(const struct cls *c, int32_t r)
{
        bool in = false;
        for (size_t i = 0; i < c->n && !in; i++)
                in = r >= c->r[i].lo && r <= c->r[i].hi;
        return in != c->neg;
}

static ssize_t new_class(struct parser *p)
{
        struct gore *re = p->re;
        if (grow((void **) &re->cls, &re->capcls, re->ncls + 1, sizeof(*re->cls)) < 0)
                return -ENOMEM;
        re->cls[re->ncls] = (struct cls){ 0 };
        return (ssize_t) re->ncls++;
}

static ssize_t new_node(struct parser *p, enum node_kind kind, size_t arg)
{
        if (grow((void **) &p->nodes, &p->capn, p->nn + 1, sizeof(*p->nodes)) < 0)
                return -ENOMEM;
        p->nodes[p->nn] = (struct node){ kind, arg, -1, -1, -1 };
        return (ssize_t) p->nn++;
}

static void add_child(struct parser *p, ssize_t parent, ssize_t child)
{
        struct node *n = &p->nodes[parent];
        if (n->last < 0)
                n->first = child;
        else
                p->nodes[n->last].next = child;
        p->nodes[parent].last = child;
}

static int syntax(struct parser *p, const char *reason)
{
        p->reason = reason;
        return -EINVAL;
}

static ssize_t literal(struct parser *p, int32_t r)
{
        ssize_t c = new_class(p);
        if (c < 0 || cls_add(&p->re->cls[c], r, r) < 0)
                return -ENOMEM;
        return new_node(p, N_CLASS, (size_t) c);
}

/* ---- escapes and classes -------------------------------------------------------------------- */

static int32_t next_rune(struct parser *p)
{
        size_t w;
        if (p->pos >= p->len)
                return GORUNE_EOF;
        int32_t r = gorune_decode(p->s + p->pos, p->len - p->pos, &w);
        p->pos += w;
        return r;
}

static bool is_alnum(int32_t c)
{
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int hex_escape(struct parser *p, int32_t *ret)
{
        int32_t c = next_rune(p);
        if (c == GORUNE_EOF)
                return syntax(p, "invalid escape sequence");
        if (c != '{') {
                int x = gorune_unhex(c), y = gorune_unhex(next_rune(p));
                if (x < 0 || y < 0)
                        return syntax(p, "invalid escape sequence");
                *ret = x * 16 + y;
                return 0;
        }
        int32_t r = 0;
        int nhex = 0;
        for (;;) {
                c = next_rune(p);
                if (c == '}')
                        break;
                int v = gorune_unhex(c);
                if (v < 0 || (r = r * 16 + v) > MAX_RUNE)
                        return syntax(p, "invalid escape sequence");
                nhex++;
        }
        if (nhex == 0)
                return syntax(p, "invalid escape sequence");
        *ret = r;
        return 0;
}

/* Go's parseEscape; p->pos is on the backslash. */
static int parse_escape(struct parser *p, int32_t *ret)
{
        p->pos++;
        int32_t c = next_rune(p);
        if (c == GORUNE_EOF)
                return syntax(p, "trailing backslash at end of expression");
        if (c < 0x80 && !is_alnum(c)) {
                *ret = c;
                return 0;
        }
        if (c >= '1' && c <= '7' && (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '7'))
                return syntax(p, "invalid escape sequence"); /* a backreference */
        if (c >= '0' && c <= '7') {
                int32_t r = c - '0';
                for (int i = 1; i < 3 && p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '7'; i++)
                        r = r * 8 + (p->s[p->pos++] - '0');
                *ret = r;
                return 0;
        }
        switch (c) {
        case 'x': return hex_escape(p, ret);
        case 'a': *ret = '\a'; return 0;
        case 'f': *ret = '\f'; return 0;
        case 'n': *ret = '\n'; return 0;
        case 'r': *ret = '\r'; return 0;
        case 't': *ret = '\t'; return 0;
        case 'v': *ret = '\v'; return 0;
        default: return syntax(p, "invalid escape sequence");
        }
}

struct group {
        const char *name;
        const char *ranges; /* pairs of bytes lo,hi */
};

static const struct group posix_groups[] = {
        { "alnum", "09AZaz" },   { "alpha", "AZaz" },      { "ascii", "\x01\x7f" }, { "blank", "\t\t  " },
        { "cntrl", "\x01\x1f\x7f\x7f" }, { "digit", "09" }, { "graph", "!~" },     { "lower", "az" },
        { "print", " ~" },       { "punct", "!/:@[`{~" },  { "space", "\t\r  " },   { "upper", "AZ" },
        { "word", "09AZaz__" },  { "xdigit", "09AFaf" },
};


/* Add a group (negated or not) to class c. */
static int add_group(struct cls *c, const char *ranges, bool neg, bool with_nul)
{
        struct range r[8];
        size_t n = 0;
        for (const char *s = ranges; *s && n < ELEMENTSOF(r); s += 2)
                r[n++] = (struct range){ (unsigned char) s[0], (unsigned char) s[1] };
        if (with_nul)
                r[0].lo = 0; /* "ascii" and "cntrl" start at NUL, which a C string cannot hold */
        if (neg)
                return cls_add_negated(c, r, n);
        for (size_t i = 0; i < n; i++)
                if (cls_add(c, r[i].lo, r[i].hi) < 0)
                        return -ENOMEM;
        return 0;
}

/* \d \D \s \S \w \W at p->pos: 1 when one was added, 0 when not there. */
static int perl_class(struct parser *p, struct cls *c)
{
        if (p->pos + 1 >= p->len || p->s[p->pos] != '\\')
                return 0;
        const char *ranges;
        switch (p->s[p->pos + 1]) {
        case 'd': case 'D': ranges = "09"; break;
        case 's': case 'S': ranges = "\t\n\f\r  "; break;
        case 'w': case 'W': ranges = "09AZaz__"; break;
        default: return 0;
        }
        bool neg = p->s[p->pos + 1] < 'a';
        p->pos += 2;
        return add_group(c, ranges, neg, false) < 0 ? -ENOMEM : 1;
}

/* [:name:] or [:^name:] at p->pos: 1 when added, 0 when not a named class. */
static int named_class(struct parser *p, struct cls *c)
{
        const char *t = p->s + p->pos;
        if (p->len - p->pos < 3 || t[0] != '[' || t[1] != ':')
                return 0;
        const char *end = strstr(t + 2, ":]");
        if (!end)
                return 0;
        size_t nlen = (size_t) (end - (t + 2));
        const char *name = t + 2;
        bool neg = nlen > 0 && name[0] == '^';
        for (size_t i = 0; i < ELEMENTSOF(posix_groups); i++) {
                const char *g = posix_groups[i].name;
                if (strlen(g) == nlen - neg && strncmp(g, name + neg, nlen - neg) == 0) {
                        p->pos += nlen + 4;
                        bool nul = streq(g, "ascii") || streq(g, "cntrl");
                        return add_group(c, posix_groups[i].ranges, neg, nul) < 0 ? -ENOMEM : 1;
                }
        }
        return syntax(p, "invalid character class range");
}

static int class_char(struct parser *p, int32_t *ret)
{
        if (p->pos >= p->len)
                return syntax(p, "missing closing ]");
        if (p->s[p->pos] == '\\')
                return parse_escape(p, ret);
        *ret = next_rune(p);
        return 0;
}

static int class_item(struct parser *p, struct cls *c)
{
        int r = named_class(p, c);
        if (r != 0)
                return r < 0 ? r : 0;
        if (p->pos + 1 < p->len && p->s[p->pos] == '\\' && (p->s[p->pos + 1] == 'p' || p->s[p->pos + 1] == 'P')) {
                p->reason = "Unicode classes (\\p) are not supported";
                return -EOPNOTSUPP;
        }
        r = perl_class(p, c);
        if (r != 0)
                return r < 0 ? r : 0;
        int32_t lo, hi;
        if ((r = class_char(p, &lo)) < 0)
                return r;
        hi = lo;
        if (p->len - p->pos >= 2 && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
                p->pos++;
                if ((r = class_char(p, &hi)) < 0)
                        return r;
                if (hi < lo)
                        return syntax(p, "invalid character class range");
        }
        return cls_add(c, lo, hi);
}

/* Go's parseClass; p->pos is on '['. */
static ssize_t parse_class(struct parser *p)
{
        ssize_t ci = new_class(p);
        if (ci < 0)
                return ci;
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] == '^') {
                p->re->cls[ci].neg = true;
                p->pos++;
        }
        for (bool first = true; p->pos >= p->len || p->s[p->pos] != ']' || first; first = false) {
                int r = class_item(p, &p->re->cls[ci]);
                if (r < 0)
                        return r;
        }
        p->pos++;
        return new_node(p, N_CLASS, (size_t) ci);
}

/* ---- the expression ------------------------------------------------------------------------- */

static ssize_t parse_alt(struct parser *p);

/* An escape outside a class: appends its atoms to `cat`. */
static int parse_backslash(struct parser *p, ssize_t cat, ssize_t *last)
{
        char c = p->pos + 1 < p->len ? p->s[p->pos + 1] : '\0';
        ssize_t n;
        static const struct { char c; enum op op; } asserts[] = {
                { 'A', OP_BEGIN }, { 'z', OP_END }, { 'b', OP_WORDB }, { 'B', OP_NWORDB },
        };
        for (size_t i = 0; i < ELEMENTSOF(asserts); i++) {
                if (c == asserts[i].c) {
                        p->pos += 2;
                        if ((n = new_node(p, N_ASSERT, asserts[i].op)) < 0)
                                return -ENOMEM;
                        add_child(p, cat, n);
                        *last = n;
                        return 0;
                }
        }
        if (c == 'C')
                return syntax(p, "invalid escape sequence");
        if (c == 'Q') {
                const char *lit = p->s + p->pos + 2, *e = strstr(lit, "\\E");
                size_t end = e ? (size_t) (e - p->s) : p->len;
                p->pos += 2;
                while (p->pos < end) {
                        size_t w;
                        int32_t r = gorune_decode(p->s + p->pos, end - p->pos, &w);
                        p->pos += w;
                        if ((n = literal(p, r)) < 0)
                                return -ENOMEM;
                        add_child(p, cat, n);
                        *last = n;
                }
                if (e)
                        p->pos += 2;
                return 0;
        }
        if (c == 'p' || c == 'P') {
                p->reason = "Unicode classes (\\p) are not supported";
                return -EOPNOTSUPP;
        }
        ssize_t ci = new_class(p);
        if (ci < 0)
                return -ENOMEM;
        int r = perl_class(p, &p->re->cls[ci]);
        if (r == 0) {
                int32_t lit;
                if ((r = parse_escape(p, &lit)) < 0)
                        return r;
                r = cls_add(&p->re->cls[ci], lit, lit);
        }
        if (r < 0 || (n = new_node(p, N_CLASS, (size_t) ci)) < 0)
                return r < 0 ? r : -ENOMEM;
        add_child(p, cat, n);
        *last = n;
        return 0;
}

/* `*`, `+`, `?` (and a lazy `?` after them) on the last atom. */
static int parse_repeat(struct parser *p, ssize_t cat, ssize_t *last, bool *last_repeat)
{
        char c = p->s[p->pos++];
        if (p->pos < p->len && p->s[p->pos] == '?')
                p->pos++; /* non-greedy: the same language */
        if (*last < 0)
                return syntax(p, "missing argument to repetition operator");
        if (*last_repeat)
                return syntax(p, "invalid nested repetition operator");
        ssize_t n = new_node(p, c == '*' ? N_STAR : c == '+' ? N_PLUS : N_QUEST, 0);
        if (n < 0)
                return -ENOMEM;
        /* replace *last (the final child of cat) by n, with *last as n's child */
        struct node *parent = &p->nodes[cat];
        if (parent->first == *last) {
                parent->first = n;
        } else {
                ssize_t k = parent->first;
                while (p->nodes[k].next != *last)
                        k = p->nodes[k].next;
                p->nodes[k].next = n;
        }
        parent->last = n;
        p->nodes[*last].next = -1;
        p->nodes[n].first = p->nodes[n].last = *last;
        *last = n;
        *last_repeat = true;
        return 0;
}

static int parse_atom(struct parser *p, ssize_t cat, ssize_t *last)
{
        char c = p->s[p->pos];
        ssize_t n;
        if (c == '\\')
                return parse_backslash(p, cat, last);
        if (c == '(') {
                if (p->pos + 1 < p->len && p->s[p->pos + 1] == '?')
                        return syntax(p, "group flags are not supported");
                if (++p->depth > MAX_NEST)
                        return syntax(p, "expression nests too deeply");
                p->pos++;
                n = parse_alt(p);
                p->depth--;
                if (n < 0)
                        return (int) n;
                if (p->pos >= p->len || p->s[p->pos] != ')')
                        return syntax(p, "missing closing )");
                p->pos++;
        } else if (c == '[') {
                n = parse_class(p);
        } else if (c == '.') {
                p->pos++;
                n = new_node(p, N_ANY, 0);
        } else if (c == '^' || c == '$') {
                p->pos++;
                n = new_node(p, N_ASSERT, c == '^' ? OP_BEGIN : OP_END);
        } else {
                size_t w;
                int32_t r = gorune_decode(p->s + p->pos, p->len - p->pos, &w);
                p->pos += w;
                n = literal(p, r);
        }
        if (n < 0)
                return (int) n;
        add_child(p, cat, n);
        *last = n;
        return 0;
}

static ssize_t parse_concat(struct parser *p)
{
        ssize_t cat = new_node(p, N_CAT, 0), last = -1;
        bool last_repeat = false;
        if (cat < 0)
                return cat;
        while (p->pos < p->len && p->s[p->pos] != '|' && p->s[p->pos] != ')') {
                char c = p->s[p->pos];
                int r;
                if (c == '*' || c == '+' || c == '?') {
                        r = parse_repeat(p, cat, &last, &last_repeat);
                } else {
                        last_repeat = false;
                        r = parse_atom(p, cat, &last);
                }
                if (r < 0)
                        return r;
        }
        return cat;
}

static ssize_t parse_alt(struct parser *p)
{
        ssize_t alt = new_node(p, N_ALT, 0);
        if (alt < 0)
                return alt;
        for (;;) {
                ssize_t c = parse_concat(p);
                if (c < 0)
                        return c;
                add_child(p, alt, c);
                if (p->pos >= p->len || p->s[p->pos] != '|')
                        return alt;
                p->pos++;
        }
}

/* ---- compilation ---------------------------------------------------------------------------- */

static ssize_t emit(struct gore *re, enum op op, size_t x, size_t y)
{
        if (grow((void **) &re->prog, &re->cap, re->n + 1, sizeof(*re->prog)) < 0)
                return -ENOMEM;
        re->prog[re->n] = (struct inst){ op, x, y };
        return (ssize_t) re->n++;
}

static int compile_node(struct parser *p, ssize_t idx);

/* Alternatives from child k on: SPLIT k, rest; k; JMP end; rest... */
static int compile_alt(struct parser *p, ssize_t k)
{
        struct gore *re = p->re;
        ssize_t rest = p->nodes[k].next, a, b;
        if (rest < 0)
                return compile_node(p, k);
        if ((a = emit(re, OP_SPLIT, 0, 0)) < 0 || compile_node(p, k) < 0 || (b = emit(re, OP_JMP, 0, 0)) < 0)
                return -ENOMEM;
        re->prog[a].x = (size_t) a + 1;
        re->prog[a].y = re->n;
        if (compile_alt(p, rest) < 0)
                return -ENOMEM;
        re->prog[b].x = re->n;
        return 0;
}

static int compile_node(struct parser *p, ssize_t idx)
{
        struct gore *re = p->re;
        const struct node nd = p->nodes[idx];
        ssize_t a, b;
        switch (nd.kind) {
        case N_CLASS:
                return emit(re, OP_CLASS, nd.arg, 0) < 0 ? -ENOMEM : 0;
        case N_ANY:
                return emit(re, OP_ANY, 0, 0) < 0 ? -ENOMEM : 0;
        case N_ASSERT:
                return emit(re, (enum op) nd.arg, 0, 0) < 0 ? -ENOMEM : 0;
        case N_CAT:
                for (ssize_t k = nd.first; k >= 0; k = p->nodes[k].next)
                        if (compile_node(p, k) < 0)
                                return -ENOMEM;
                return 0;
        case N_ALT:
                return compile_alt(p, nd.first);
        case N_STAR:
        case N_QUEST:
                if ((a = emit(re, OP_SPLIT, 0, 0)) < 0 || compile_node(p, nd.first) < 0)
                        return -ENOMEM;
                if (nd.kind == N_STAR && emit(re, OP_JMP, (size_t) a, 0) < 0)
                        return -ENOMEM;
                re->prog[a].x = (size_t) a + 1;
                re->prog[a].y = re->n;
                return 0;
        case N_PLUS:
                a = (ssize_t) re->n;
                if (compile_node(p, nd.first) < 0 || (b = emit(re, OP_SPLIT, (size_t) a, 0)) < 0)
                        return -ENOMEM;
                re->prog[b].y = re->n;
                return 0;
        }
        return -EINVAL;
}

void gore_free(struct gore *re)
{
        if (!re)
                return;
        for (size_t i = 0; i < re->ncls; i++)
                free(re->cls[i].r);
        free(re->cls);
        free(re->prog);
        free(re);
}

OSSB_DEFINE_CLEANUP(struct gore *, gore_free)

int gore_compile(const char *expr, struct gore **ret, const char **ret_reason)
{
        _cleanup_(gore_freep) struct gore *re = calloc(1, sizeof(*re));
        struct parser p = { .s = expr, .len = strlen(expr), .reason = "out of memory" };
        if (!re)
                return -ENOMEM;
        p.re = re;
        ssize_t root = parse_alt(&p);
        int r = root < 0 ? (int) root : 0;
        if (r >= 0 && p.pos < p.len)
                r = syntax(&p, "unexpected )");
        if (r >= 0)
                r = compile_node(&p, root);
        if (r >= 0 && emit(re, OP_MATCH, 0, 0) < 0)
                r = -ENOMEM;
        free(p.nodes);
        if (r < 0) {
                if (ret_reason)
                        *ret_reason = r == -ENOMEM ? "out of memory" : p.reason;
                return r;
        }
        *ret = TAKE_PTR(re);
        return 0;
}

/* ---- matching: a Pike VM without captures --------------------------------------------------- */

struct ctx {
        size_t pos, len;
        int32_t prev, cur; /* runes around the position, GORUNE_EOF at the ends */
};

struct tlist {
        size_t *pc;
        size_t n;
        unsigned *mark; /* mark[pc] == gen: already on the list */
        unsigned gen;
};

static bool is_word(int32_t r)
{
        return r == '_' || (r < 0x80 && r >= 0 && is_alnum(r));
}

static void add_thread(const struct gore *re, struct tlist *l, size_t *stack, size_t pc0, const struct ctx *c)
{
        size_t sp = 0;
        stack[sp++] = pc0;
        while (sp > 0) {
                size_t pc = stack[--sp];
                if (l->mark[pc] == l->gen)
                        continue;
                l->mark[pc] = l->gen;
                const struct inst *in = &re->prog[pc];
                bool pass;
                switch (in->op) {
                case OP_JMP:
                        stack[sp++] = in->x;
                        continue;
                case OP_SPLIT:
                        stack[sp++] = in->y;
                        stack[sp++] = in->x;
                        continue;
                case OP_BEGIN:
                        pass = c->pos == 0;
                        break;
                case OP_END:
                        pass = c->pos == c->len;
                        break;
                case OP_WORDB:
                case OP_NWORDB:
                        pass = (is_word(c->prev) != is_word(c->cur)) == (in->op == OP_WORDB);
                        break;
                default:
                        l->pc[l->n++] = pc;
                        continue;
                }
                if (pass)
                        stack[sp++] = pc + 1;
        }
}

static int32_t rune_at(const char *s, size_t len, size_t pos, size_t *w)
{
        *w = 0;
        return pos < len ? gorune_decode(s + pos, len - pos, w) : GORUNE_EOF;
}

int gore_match(const struct gore *re, const char *s)
{
        size_t len = strlen(s), n = re->n, w;
        _cleanup_free_ size_t *buf = calloc(4 * n + 2, sizeof(size_t));
        _cleanup_free_ unsigned *marks = calloc(2 * n, sizeof(unsigned));
        if (!buf || !marks)
                return -ENOMEM;
        struct tlist a = { buf, 0, marks, 1 }, b = { buf + n, 0, marks + n, 1 };
        struct tlist *cl = &a, *nl = &b;
        size_t *stack = buf + 2 * n;
        struct ctx c = { 0, len, GORUNE_EOF, rune_at(s, len, 0, &w) };

        add_thread(re, cl, stack, 0, &c);
        for (;;) {
                size_t width;
                int32_t r = rune_at(s, len, c.pos, &width);
                struct ctx nc = { c.pos + width, len, r, GORUNE_EOF };
                nc.cur = rune_at(s, len, nc.pos, &w);
                nl->n = 0;
                nl->gen++;
                for (size_t i = 0; i < cl->n; i++) {
                        const struct inst *in = &re->prog[cl->pc[i]];
                        if (in->op == OP_MATCH)
                                return 1;
                        if (r == GORUNE_EOF)
                                continue;
                        if (in->op == OP_ANY ? r != '\n' : cls_match(&re->cls[in->x], r))
                                add_thread(re, nl, stack, cl->pc[i] + 1, &nc);
                }
                if (r == GORUNE_EOF)
                        return 0;
                add_thread(re, nl, stack, 0, &nc); /* unanchored: a match may start here */
                struct tlist *t = cl;
                cl = nl;
                nl = t;
                c = nc;
        }
}
