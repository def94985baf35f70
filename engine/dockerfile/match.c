/* engine/dockerfile/match.c - Go's path/filepath.Match on Unix, faithfully: '*' and '?' never
 * match '/', [^...] classes with ranges and '\' escapes, byte-wise literals, and
 * ErrBadPattern (-EINVAL) for a malformed pattern even when the name already failed to match
 * (Go validates the whole pattern since 1.16).
 *
 * Owns: nothing.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "engine/dockerfile/dockerignore.h"
#include "engine/dockerfile/gorune.h"

struct span {
        const char *p;
        size_t n;
};

/* scanChunk: an optional run of stars, then everything up to the next unbracketed star. */
static bool scan_chunk(struct span *pat, struct span *chunk)
{
        bool star = false;
        while (pat->n > 0 && pat->p[0] == '*') {
                pat->p++;
                pat->n--;
                star = true;
        }
        bool inrange = false;
        size_t i;
        for (i = 0; i < pat->n; i++) {
                char c = pat->p[i];
                if (c == '\\') {
                        if (i + 1 < pat->n)
                                i++;
                } else if (c == '[') {
                        inrange = true;
                } else if (c == ']') {
                        inrange = false;
                } else if (c == '*' && !inrange) {
                        break;
                }
        }
        *chunk = (struct span){ pat->p, i };
        pat->p += i;
        pat->n -= i;
        return star;
}

/* getEsc: one possibly escaped character of a class. */
static int get_esc(struct span *c, int32_t *ret)
{
        if (c->n == 0 || c->p[0] == '-' || c->p[0] == ']')
                return -EINVAL;
        if (c->p[0] == '\\') {
                c->p++;
                c->n--;
                if (c->n == 0)
                        return -EINVAL;
        }
        size_t w;
        int32_t r = gorune_decode(c->p, c->n, &w);
        c->p += w;
        c->n -= w;
        if ((r == GORUNE_ERROR && w == 1) || c->n == 0)
                return -EINVAL;
        *ret = r;
        return 0;
}

/* A character class at the start of chunk (on '['); *failed is set when r is not in it. */
static int match_class(struct span *chunk, int32_t r, bool *failed)
{
        chunk->p++;
        chunk->n--;
        bool negated = chunk->n > 0 && chunk->p[0] == '^';
        if (negated) {
                chunk->p++;
                chunk->n--;
        }
        bool match = false;
        for (int nrange = 0;; nrange++) {
                if (chunk->n > 0 && chunk->p[0] == ']' && nrange > 0) {
                        chunk->p++;
                        chunk->n--;
                        break;
                }
                int32_t lo, hi;
                if (get_esc(chunk, &lo) < 0)
                        return -EINVAL;
                hi = lo;
                if (chunk->p[0] == '-') {
                        chunk->p++;
                        chunk->n--;
                        if (get_esc(chunk, &hi) < 0)
                                return -EINVAL;
                }
                if (lo <= r && r <= hi)
                        match = true;
        }
        if (match == negated)
                *failed = true;
        return 0;
}

/* matchChunk: does chunk match the start of s?  1 (s advanced past it), 0, or -EINVAL. */
static int match_chunk(struct span chunk, struct span *s)
{
        bool failed = false;
        struct span t = *s;
        while (chunk.n > 0) {
                if (!failed && t.n == 0)
                        failed = true;
                size_t w = 0;
                switch (chunk.p[0]) {
                case '[': {
                        int32_t r = 0;
                        if (!failed) {
                                r = gorune_decode(t.p, t.n, &w);
                                t.p += w;
                                t.n -= w;
                        }
                        if (match_class(&chunk, r, &failed) < 0)
                                return -EINVAL;
                        break;
                }
                case '?':
                        if (!failed) {
                                if (t.p[0] == '/')
                                        failed = true;
                                gorune_decode(t.p, t.n, &w);
                                t.p += w;
                                t.n -= w;
                        }
                        chunk.p++;
                        chunk.n--;
                        break;
                case '\\':
                        chunk.p++;
                        chunk.n--;
                        if (chunk.n == 0)
                                return -EINVAL;
                        /* fall through */
                default:
                        if (!failed) {
                                if (chunk.p[0] != t.p[0])
                                        failed = true;
                                t.p++;
                                t.n--;
                        }
                        chunk.p++;
                        chunk.n--;
                        break;
                }
        }
        if (failed)
                return 0;
        *s = t;
        return 1;
}

/* After a failed match: still ErrBadPattern if the rest of the pattern is malformed. */
static int check_rest(struct span pat)
{
        while (pat.n > 0) {
                struct span chunk, empty = { "", 0 };
                scan_chunk(&pat, &chunk);
                if (match_chunk(chunk, &empty) < 0)
                        return -EINVAL;
        }
        return 0;
}

int ossb_path_match(const char *pattern, const char *name)
{
        struct span pat = { pattern, strlen(pattern) }, s = { name, strlen(name) };

        while (pat.n > 0) {
                struct span chunk;
                bool star = scan_chunk(&pat, &chunk);
                if (star && chunk.n == 0)
                        return memchr(s.p, '/', s.n) == NULL; /* a trailing star: the rest, without '/' */
                struct span t = s;
                int r = match_chunk(chunk, &t);
                if (r > 0 && (t.n == 0 || pat.n > 0)) {
                        s = t;
                        continue;
                }
                if (r < 0)
                        return r;
                bool advanced = false;
                for (size_t i = 0; star && !advanced && i < s.n && s.p[i] != '/'; i++) {
                        t = (struct span){ s.p + i + 1, s.n - i - 1 };
                        r = match_chunk(chunk, &t);
                        if (r < 0)
                                return r;
                        if (r > 0 && !(pat.n == 0 && t.n > 0)) {
                                s = t;
                                advanced = true;
                        }
                }
                if (advanced)
                        continue;
                return check_rest(pat);
        }
        return s.n == 0;
}
