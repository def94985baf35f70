/* engine/dockerfile/dockerignore.c - .dockerignore as Docker and BuildKit read and apply it:
 * moby/patternmatcher's ignorefile.ReadAll (line rules), New (validation), the compilation of
 * each pattern to an exact, prefix, suffix or regexp match, MatchesOrParentMatches, and the
 * decision of BuildKit's walker (tonistiigi/fsutil) whether an excluded directory must still
 * be walked because an exception could re-include something inside it.
 *
 * Owns: struct ossb_dockerignore and its patterns.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "engine/dockerfile/dockerignore.h"
#include "engine/dockerfile/gore.h"
#include "engine/dockerfile/gorune.h"

/* bufio.Scanner's limit: a longer line is an error (bufio.ErrTooLong). */
#define MAX_LINE 65535

enum match_type { MATCH_EXACT, MATCH_PREFIX, MATCH_SUFFIX, MATCH_REGEXP };

struct pattern {
        char *cleaned; /* the cleaned pattern, without its '!' */
        bool exclusion;
        enum match_type type;
        struct gore *re;
};

struct ossb_dockerignore {
        struct pattern *p;
        size_t n, cap;
        bool exclusions;             /* some pattern is an exception */
        bool only_prefix_exceptions; /* no exception has glob characters (fsutil) */
};

void ossb_dockerignore_free(struct ossb_dockerignore *di)
{
        if (!di)
                return;
        for (size_t i = 0; i < di->n; i++) {
                free(di->p[i].cleaned);
                gore_free(di->p[i].re);
        }
        free(di->p);
        free(di);
}

OSSB_DEFINE_CLEANUP(struct ossb_dockerignore *, ossb_dockerignore_free)

/* ---- text helpers --------------------------------------------------------------------------- */

/* strings.TrimSpace (Unicode white space) of s[0..n): the start and length of what remains. */
static void trim_space(const char **s, size_t *n)
{
        size_t start = *n, end = 0, w;
        for (size_t i = 0; i < *n; i += w) {
                if (!gorune_is_space(gorune_decode(*s + i, *n - i, &w))) {
                        if (start == *n)
                                start = i;
                        end = i + w;
                }
        }
        if (start == *n) {
                *n = 0;
                return;
        }
        *s += start;
        *n = end - start;
}

/* ---- patternmatcher's compile: a pattern becomes an exact, prefix, suffix or regexp match ---- */

static bool should_escape(int32_t r)
{
        return r > 0 && r < 0x80 && strchr(".+()|{}$", (int) r);
}

static int append_rune(struct ossb_strbuf *sb, int32_t r)
{
        char b[4];
        return ossb_strbuf_append_n(sb, b, gorune_encode(r, b));
}

/* text/scanner's Peek and Next over a string (a leading BOM is skipped). */
struct scan {
        const char *s;
        size_t len, pos;
};

static int32_t sc_peek(const struct scan *sc)
{
        size_t w;
        return sc->pos < sc->len ? gorune_decode(sc->s + sc->pos, sc->len - sc->pos, &w) : GORUNE_EOF;
}

static int32_t sc_next(struct scan *sc)
{
        size_t w;
        if (sc->pos >= sc->len)
                return GORUNE_EOF;
        int32_t r = gorune_decode(sc->s + sc->pos, sc->len - sc->pos, &w);
        sc->pos += w;
        return r;
}

/* A double star: at the end a prefix match (or dot-star), elsewhere any run of directories,
 * and at the very start a suffix match. */
static int double_star(struct scan *sc, size_t i, enum match_type *type, struct ossb_strbuf *re)
{
        int r = 0;
        sc_next(sc);
        if (sc_peek(sc) == '/')
                sc_next(sc);
        if (sc_peek(sc) == GORUNE_EOF) {
                if (*type == MATCH_EXACT) {
                        *type = MATCH_PREFIX;
                } else {
                        r = ossb_strbuf_append(re, ".*");
                        *type = MATCH_REGEXP;
                }
        } else {
                r = ossb_strbuf_append(re, "(.*/)?");
                *type = MATCH_REGEXP;
        }
        if (i == 0)
                *type = MATCH_SUFFIX;
        return r;
}

/* Pattern.compile: build the regexp (when one is needed) and choose the kind of match. */
static int compile_pattern(struct pattern *p, const char **reason)
{
        _cleanup_strbuf_ struct ossb_strbuf re = OSSB_STRBUF_INIT;
        struct scan sc = { p->cleaned, strlen(p->cleaned), 0 };
        enum match_type type = MATCH_EXACT;
        int r = ossb_strbuf_append(&re, "^");

        if (sc.len >= 3 && memcmp(sc.s, "\xEF\xBB\xBF", 3) == 0)
                sc.pos = 3;
        for (size_t i = 0; r >= 0 && sc_peek(&sc) != GORUNE_EOF; i++) {
                int32_t ch = sc_next(&sc);
                if (ch == '*' && sc_peek(&sc) == '*') {
                        r = double_star(&sc, i, &type, &re);
                } else if (ch == '*' || ch == '?') {
                        r = ossb_strbuf_append(&re, ch == '*' ? "[^/]*" : "[^/]");
                        type = MATCH_REGEXP;
                } else if (should_escape(ch)) {
                        r = ossb_strbuf_append_c(&re, '\\');
                        if (r >= 0)
                                r = append_rune(&re, ch);
                } else if (ch == '\\') {
                        r = ossb_strbuf_append_c(&re, '\\');
                        if (r >= 0 && sc_peek(&sc) != GORUNE_EOF) {
                                r = append_rune(&re, sc_next(&sc));
                                type = MATCH_REGEXP;
                        }
                } else {
                        if (ch == '[' || ch == ']')
                                type = MATCH_REGEXP;
                        r = append_rune(&re, ch);
                }
        }
        if (r < 0)
                return r;
        p->type = type;
        if (type != MATCH_REGEXP)
                return 0;
        if (ossb_strbuf_append_c(&re, '$') < 0)
                return -ENOMEM;
        return gore_compile(re.buf, &p->re, reason);
}

/* Pattern.match */
static int pattern_match(const struct pattern *p, const char *path)
{
        size_t cl = strlen(p->cleaned), pl = strlen(path);
        switch (p->type) {
        case MATCH_EXACT:
                return streq(path, p->cleaned);
        case MATCH_PREFIX:
                cl = cl >= 2 ? cl - 2 : 0;
                return strncmp(path, p->cleaned, cl) == 0;
        case MATCH_SUFFIX: {
                const char *suffix = p->cleaned + (cl >= 2 ? 2 : cl);
                size_t sl = strlen(suffix);
                if (pl >= sl && memcmp(path + pl - sl, suffix, sl) == 0)
                        return 1;
                return suffix[0] == '/' && streq(path, suffix + 1);
        }
        case MATCH_REGEXP:
                return gore_match(p->re, path);
        }
        return 0;
}

/* ---- reading the file: ignorefile.ReadAll, then patternmatcher.New -------------------------- */

static int parse_error(struct ossb_error **err, const char *path, unsigned line, const char *pat, const char *why)
{
        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s:%u: invalid pattern `%s`: %s", path, line, pat, why);
}

/* ReadAll's normalisation of one line (already trimmed, not empty): "!" kept, the rest cleaned
 * and a leading "/" dropped. */
static char *normalize(const char *s, size_t n)
{
        bool invert = s[0] == '!';
        if (invert) {
                s++;
                n--;
                trim_space(&s, &n);
        }
        _cleanup_free_ char *raw = strndup(s, n);
        if (!raw)
                return NULL;
        _cleanup_free_ char *clean = n > 0 ? ossb_path_clean(raw) : strdup("");
        if (!clean)
                return NULL;
        const char *c = clean;
        if (strlen(c) > 1 && c[0] == '/')
                c++;
        char *out = NULL;
        return asprintf(&out, "%s%s", invert ? "!" : "", c) < 0 ? NULL : out;
}

/* fsutil's patternWithoutTrailingGlob: the length without a final slash-star-star, then without
 * a final slash-star. */
static size_t without_trailing_glob(const char *p)
{
        size_t n = strlen(p);
        if (n >= 3 && memcmp(p + n - 3, "/**", 3) == 0)
                n -= 3;
        if (n >= 2 && memcmp(p + n - 2, "/*", 2) == 0)
                n -= 2;
        return n;
}

/* Does an exception use glob characters before its trailing glob?  Then BuildKit's walker
 * cannot tell which directories it may skip. */
static bool has_glob(const char *p)
{
        size_t n = without_trailing_glob(p);
        for (size_t i = 0; i < n; i++)
                if (strchr("*[]?^\\", p[i]))
                        return true;
        return false;
}

/* patternmatcher.New for one pattern (ReadAll's output). */
static int add_pattern(struct ossb_dockerignore *di, const char *path, unsigned line, const char *pat,
                       struct ossb_error **err)
{
        _cleanup_free_ char *p = ossb_path_clean(pat);
        if (!p)
                return -ENOMEM;
        bool exclusion = p[0] == '!';
        if (exclusion && p[1] == '\0')
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s:%u: illegal exclusion pattern: \"!\"", path, line);
        if (ossb_path_match(p + exclusion, ".") < 0)
                return parse_error(err, path, line, pat, "syntax error in pattern");
        if (di->n == di->cap) {
                size_t cap = di->cap ? 2 * di->cap : 16;
                struct pattern *np = reallocarray(di->p, cap, sizeof(*np));
                if (!np)
                        return -ENOMEM;
                di->p = np;
                di->cap = cap;
        }
        struct pattern *np = &di->p[di->n];
        *np = (struct pattern){ .exclusion = exclusion };
        if (!(np->cleaned = strdup(p + exclusion)))
                return -ENOMEM;
        di->n++;
        const char *reason = NULL;
        int r = compile_pattern(np, &reason);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return parse_error(err, path, line, pat, reason ? reason : "syntax error in pattern");
        if (exclusion) {
                di->exclusions = true;
                if (has_glob(np->cleaned))
                        di->only_prefix_exceptions = false;
        }
        return 0;
}

/* One line of the file (its number, its bytes without '\n'). */
static int parse_line(struct ossb_dockerignore *di, const char *path, unsigned line, const char *s, size_t n,
                      struct ossb_error **err)
{
        if (n > MAX_LINE)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s:%u: line longer than %u bytes", path, line,
                                       MAX_LINE);
        if (n > 0 && s[n - 1] == '\r')
                n--;
        if (line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
                s += 3;
                n -= 3;
        }
        if (n > 0 && s[0] == '#')
                return 0;
        if (memchr(s, '\0', n))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s:%u: NUL byte in pattern", path, line);
        trim_space(&s, &n);
        if (n == 0)
                return 0;
        _cleanup_free_ char *pat = normalize(s, n);
        if (!pat)
                return -ENOMEM;
        int r = add_pattern(di, path, line, pat, err);
        if (r == -ENOMEM)
                return ossb_error_set(err, r, "%s: out of memory", path);
        return r;
}

int ossb_dockerignore_parse(const char *path, const char *data, size_t len, struct ossb_dockerignore **ret,
                            struct ossb_error **err)
{
        _cleanup_(ossb_dockerignore_freep) struct ossb_dockerignore *di = calloc(1, sizeof(*di));
        if (!path)
                path = ".dockerignore";
        if (!di)
                return ossb_error_set(err, -ENOMEM, "%s: out of memory", path);
        di->only_prefix_exceptions = true;
        unsigned line = 0;
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(data + pos, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - (data + pos)) : len - pos;
                int r = parse_line(di, path, ++line, data + pos, n, err);
                if (r < 0)
                        return r;
                pos += n + 1;
        }
        *ret = TAKE_PTR(di);
        return 0;
}

int ossb_dockerignore_match(const struct ossb_dockerignore *di, const char *relpath)
{
        _cleanup_free_ char *file = ossb_path_clean(relpath);
        if (!file)
                return -ENOMEM;
        if (streq(file, "."))
                return 0; /* the context root itself is never excluded */

        /* filepath.Dir(file), whose prefixes at each '/' are the parents to try */
        const char *slash = strrchr(file, '/');
        _cleanup_free_ char *head = strndup(file, slash ? (size_t) (slash - file) + 1 : 0);
        _cleanup_free_ char *parent = head ? ossb_path_clean(head) : NULL;
        if (!parent)
                return -ENOMEM;
        bool has_parent = !streq(parent, ".");
        bool matched = false;

        for (size_t i = 0; i < di->n; i++) {
                const struct pattern *p = &di->p[i];
                if (p->exclusion != matched)
                        continue;
                int m = pattern_match(p, file);
                for (size_t k = 0; m == 0 && has_parent; k++) {
                        if (parent[k] != '/' && parent[k] != '\0')
                                continue;
                        char c = parent[k];
                        parent[k] = '\0';
                        m = pattern_match(p, parent);
                        parent[k] = c;
                        if (c == '\0')
                                break;
                }
                if (m < 0)
                        return m;
                if (m > 0)
                        matched = !p->exclusion;
        }
        return matched;
}

bool ossb_dockerignore_excluded(const struct ossb_dockerignore *di, const char *relpath)
{
        return ossb_dockerignore_match(di, relpath) > 0;
}

bool ossb_dockerignore_must_descend(const struct ossb_dockerignore *di, const char *reldir)
{
        if (!di->only_prefix_exceptions)
                return true;
        if (!di->exclusions)
                return false;
        size_t dl = strlen(reldir);
        for (size_t i = 0; i < di->n; i++) {
                const struct pattern *p = &di->p[i];
                if (!p->exclusion)
                        continue;
                /* HasPrefix(pattern + "/", dir + "/") */
                size_t pl = without_trailing_glob(p->cleaned);
                if (pl + 1 >= dl + 1 && strncmp(p->cleaned, reldir, dl) == 0 && (pl == dl || p->cleaned[dl] == '/'))
                        return true;
        }
        return false;
}
