/* tests/fuzz/fuzz-dockerignore.c - libFuzzer target for .dockerignore parsing and matching and
 * for filepath.Match.
 *
 * Input: the .dockerignore content up to the first NUL, then paths, one per line.  Each path
 * is matched (excluded, must_descend), and each pattern line is also run through
 * ossb_path_match against each path.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "engine/dockerfile/dockerignore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void each_line(const char *s, size_t n, void (*fn)(const char *line, void *ud), void *ud)
{
        for (size_t i = 0, k = 0; i < n && k < 32; k++) {
                const char *nl = memchr(s + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (s + i)) : n - i;
                char *line = strndup(s + i, len);
                if (!line)
                        return;
                fn(line, ud);
                free(line);
                i += len + 1;
        }
}

struct ctx {
        const struct ossb_dockerignore *di;
        const char *pattern;
        const char *paths;
        size_t plen;
};

static void match_path(const char *path, void *ud)
{
        struct ctx *c = ud;
        if (c->di) {
                int m = ossb_dockerignore_match(c->di, path);
                if (m < 0 || (m > 0) != ossb_dockerignore_excluded(c->di, path))
                        abort();
                (void) ossb_dockerignore_must_descend(c->di, path);
        }
        if (c->pattern) {
                int r = ossb_path_match(c->pattern, path);
                if (r != 0 && r != 1 && r != -EINVAL)
                        abort();
                /* a bad pattern is bad whatever the name */
                if ((r == -EINVAL) != (ossb_path_match(c->pattern, "") == -EINVAL))
                        abort();
        }
}

static void per_pattern(const char *pattern, void *ud)
{
        struct ctx *c = ud, sub = { NULL, pattern, c->paths, c->plen };
        each_line(c->paths, c->plen, match_path, &sub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 1 << 16)
                return 0;
        const char *s = (const char *) data;
        const char *nul = memchr(s, '\0', size);
        size_t ilen = nul ? (size_t) (nul - s) : size;
        const char *paths = nul ? nul + 1 : "";
        size_t plen = nul ? size - ilen - 1 : 0;

        _cleanup_error_ struct ossb_error *e = NULL;
        struct ossb_dockerignore *di = NULL;
        int r = ossb_dockerignore_parse("fuzz", s, ilen, &di, &e);
        if (r < 0 && (!e || di))
                abort();
        struct ctx c = { di, NULL, paths, plen };
        each_line(paths, plen, match_path, &c);
        each_line(s, ilen, per_pattern, &c);
        ossb_dockerignore_free(di);
        return 0;
}
