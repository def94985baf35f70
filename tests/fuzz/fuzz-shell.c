/* tests/fuzz/fuzz-shell.c - libFuzzer target for engine/dockerfile shell expansion.
 *
 * Input: one byte of options (bits 0-3: enum ossb_shell_flags, bit 4: backtick escape), the
 * word up to the first NUL, then "K=V" lines for the environment.  Checks that ProcessWord and
 * ProcessWords agree on success and failure, and that errors carry a message.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/shell.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char **env_lines(const char *s, size_t n)
{
        char **v = ossb_strv_new_empty();
        for (size_t i = 0; v && i < n && ossb_strv_length(v) < 64;) {
                const char *nl = memchr(s + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (s + i)) : n - i;
                char *line = strndup(s + i, len);
                if (!line || ossb_strv_consume(&v, line) < 0) {
                        ossb_strv_free(v);
                        return NULL;
                }
                i += len + 1;
        }
        return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 1 << 16)
                return 0;
        unsigned flags = data[0] & 15;
        char escape = (data[0] & 16) ? '`' : '\\';
        const char *rest = (const char *) data + 1;
        size_t n = size - 1;
        const char *nul = memchr(rest, '\0', n);
        size_t wlen = nul ? (size_t) (nul - rest) : n;
        _cleanup_free_ char *word = strndup(rest, wlen);
        _cleanup_strv_free_ char **env = nul ? env_lines(nul + 1, n - wlen - 1) : ossb_strv_new_empty();
        if (!word || !env)
                return 0;

        _cleanup_free_ char *one = NULL, *alone = NULL;
        _cleanup_strv_free_ char **words = NULL;
        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL;
        int r1 = ossb_shell_expand_full(word, escape, flags, ossb_shell_lookup_strv, env, &one, &words, &e1);
        int r2 = ossb_shell_expand_full(word, escape, flags, ossb_shell_lookup_strv, env, &alone, NULL, &e2);
        if ((r1 < 0) != (r2 < 0))
                abort();
        if (r1 < 0) {
                if (!e1 || !e1->msg || !e2 || one || words)
                        abort();
                return 0;
        }
        if (!one || !words || strcmp(one, alone) != 0)
                abort();
        for (size_t i = 0; words[i]; i++)
                if (!words[i][0])
                        abort(); /* BuildKit never yields an empty word */
        return 0;
}
