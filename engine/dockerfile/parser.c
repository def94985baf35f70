/* engine/dockerfile/parser.c - Dockerfile text -> struct ossb_dockerfile (BuildKit's
 * frontend/dockerfile/parser Parse()).
 *
 * Owns: the line loop: physical lines (64 KiB - 1 at most, as BuildKit's bufio.Scanner), a
 * leading byte order mark, parser directives (# syntax / escape / check, only before anything
 * else), comments, line continuations (the escape token as last non-blank character, comment
 * and empty lines inside them skipped, the latter with BuildKit's warning), heredoc bodies, line
 * numbers; plus the public free/read helpers.  Splitting one logical line into command, flags
 * and arguments is parser-args.c; heredoc words are parser-heredoc.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "engine/dockerfile/parser-internal.h"

struct state {
        struct ossb_dockerfile *df;
        struct df_ctx ctx;
        const char *data;
        size_t len, pos;
        bool too_long;        /* the scanner stopped at an over-long line */
        int line;             /* physical lines consumed */
        bool directives_done;
        bool seen_escape, seen_syntax, seen_check;
        size_t cap;           /* of df->insts */
        size_t n_warnings;
};

/* The next physical line, newline included (bufio.Scanner with BuildKit's scanLines). */
static bool scan(struct state *st, const char **ret, size_t *ret_n)
{
        if (st->too_long || st->pos >= st->len)
                return false;
        const char *s = st->data + st->pos;
        size_t left = st->len - st->pos;
        const char *nl = memchr(s, '\n', left);
        size_t n = nl ? (size_t) (nl - s) + 1 : left;
        if (n - (nl ? 1 : 0) > OSSB_DF_MAX_LINE_LEN) {
                st->too_long = true;
                return false;
        }
        st->pos += n;
        *ret = s;
        *ret_n = n;
        return true;
}

static size_t trim_newline(const char *s, size_t n)
{
        while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
                n--;
        return n;
}

static bool is_comment(const char *s, size_t n)
{
        size_t k = df_space_prefix(s, n);
        return k < n && s[k] == '#';
}

static bool is_re_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Record a directive value; 1 when the line was one. */
static int set_directive(struct state *st, const char *key, const char *v, size_t vn)
{
        bool *seen = streq(key, "escape") ? &st->seen_escape : streq(key, "syntax") ? &st->seen_syntax : &st->seen_check;
        if (*seen)
                return df_fail(&st->ctx, "only one %s parser directive can be used", key);
        *seen = true;
        _cleanup_free_ char *value = strndup(v, vn);
        if (!value)
                return df_oom(st->ctx.err);
        if (streq(key, "escape")) {
                if (!streq(value, "`") && !streq(value, "\\"))
                        return df_fail(&st->ctx, "invalid escape token '%s' does not match ` or \\", value);
                st->ctx.escape = value[0];
                st->df->escape = value[0];
        } else if (streq(key, "syntax")) {
                st->df->syntax = TAKE_PTR(value);
        } else {
                st->df->check = TAKE_PTR(value);
        }
        return 1;
}

/* DirectiveParser.ParseLine: `# key = value` before anything else.  Returns 1 for a directive,
 * 0 otherwise (and from then on never looks again), < 0 on error. */
static int directive(struct state *st, const char *s, size_t n)
{
        if (st->directives_done)
                return 0;
        st->directives_done = true;
        if (n == 0 || s[0] != '#')
                return 0;
        s++;
        n--;
        size_t k = df_space_prefix(s, n), key_start = k;
        if (k >= n || !is_alpha(s[k]))
                return 0;
        while (k < n && (is_alpha(s[k]) || (s[k] >= '0' && s[k] <= '9')))
                k++;
        size_t key_end = k;
        while (k < n && is_re_space(s[k]))
                k++;
        if (k >= n || s[k] != '=')
                return 0;
        const char *v = s + k + 1;
        size_t vn = n - k - 1, lead = 0, end;
        if (vn == 0)
                return 0;
        while (lead + 1 < vn && is_re_space(v[lead]))
                lead++;
        for (end = vn; end > lead + 1 && is_re_space(v[end - 1]); end--)
                ;
        _cleanup_free_ char *key = df_strndup_lower(s + key_start, key_end - key_start);
        if (!key)
                return df_oom(st->ctx.err);
        if (!streq(key, "escape") && !streq(key, "syntax") && !streq(key, "check"))
                return 0;
        st->directives_done = false;
        return set_directive(st, key, v + lead, end - lead);
}

/* trimContinuationCharacter: true when s[0..*n) ends in the escape token (not itself escaped)
 * and blanks; *n then excludes them. */
static bool continues(const struct state *st, const char *s, size_t *n)
{
        size_t k = *n;
        while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
                k--;
        if (k == 0 || s[k - 1] != st->ctx.escape)
                return false;
        if (k >= 2 && s[k - 2] == st->ctx.escape)
                return false;
        *n = k - 1;
        return true;
}

static int add_warning(struct state *st, const char *line)
{
        _cleanup_free_ char *w = NULL;
        if (asprintf(&w, "%s:%d: Empty continuation line found in: %s", st->ctx.path, st->line, line) < 0)
                return df_oom(st->ctx.err);
        return df_strv_add(&st->df->warnings, &st->n_warnings, TAKE_PTR(w)) < 0 ? df_oom(st->ctx.err) : 0;
}

/* The rest of a logical line after its first physical line (already in *buf). */
static int read_continuation(struct state *st, struct ossb_strbuf *buf)
{
        const char *s;
        size_t n;
        bool empty_seen = false;
        for (bool more = true; more && scan(st, &s, &n);) {
                st->line++;
                n = trim_newline(s, n);
                if (is_comment(s, n))
                        continue;
                if (df_space_prefix(s, n) == n) {
                        empty_seen = true;
                        continue;
                }
                more = continues(st, s, &n);
                if (ossb_strbuf_append_n(buf, s, n) < 0)
                        return df_oom(st->ctx.err);
        }
        if (ossb_strbuf_append(buf, "") < 0)
                return df_oom(st->ctx.err);
        return empty_seen ? add_warning(st, buf->buf) : 0;
}

static bool can_contain_heredoc(const struct ossb_df_instruction *inst)
{
        if (streq(inst->cmd, "onbuild") && inst->sub)
                inst = inst->sub;
        return (streq(inst->cmd, "run") || streq(inst->cmd, "copy") || streq(inst->cmd, "add")) && !inst->json;
}

static int read_heredoc_body(struct state *st, struct ossb_df_heredoc *h)
{
        _cleanup_strbuf_ struct ossb_strbuf content = OSSB_STRBUF_INIT;
        size_t name_len = strlen(h->name);
        const char *s;
        size_t n;

        if (ossb_strbuf_append(&content, "") < 0)
                return df_oom(st->ctx.err);
        while (scan(st, &s, &n)) {
                st->line++;
                size_t t = trim_newline(s, n), k = 0;
                if (h->chomp)
                        while (k < t && s[k] == '\t')
                                k++;
                if (t - k == name_len && memcmp(s + k, h->name, name_len) == 0) {
                        h->content = ossb_strbuf_steal(&content);
                        return h->content ? 0 : df_oom(st->ctx.err);
                }
                if (ossb_strbuf_append_n(&content, s, n) < 0)
                        return df_oom(st->ctx.err);
        }
        return df_fail(&st->ctx, "unterminated heredoc");
}

static int add_instruction(struct state *st, const char *line, int start)
{
        struct ossb_dockerfile *df = st->df;
        if (df->n_insts >= OSSB_DF_MAX_INSTRUCTIONS)
                return df_fail_at(st->ctx.err, st->ctx.path, start, "more than %u instructions", OSSB_DF_MAX_INSTRUCTIONS);
        if (df->n_insts == st->cap) {
                size_t cap = st->cap ? st->cap * 2 : 16;
                struct ossb_df_instruction *n = reallocarray(df->insts, cap, sizeof(*n));
                if (!n)
                        return df_oom(st->ctx.err);
                df->insts = n;
                st->cap = cap;
        }
        struct ossb_df_instruction *inst = &df->insts[df->n_insts];
        memset(inst, 0, sizeof(*inst));
        df->n_insts++;
        st->ctx.line = start;
        int r = df_parse_line(&st->ctx, line, 0, inst);
        if (r < 0)
                return r;
        if (can_contain_heredoc(inst) && strstr(line, "<<")) {
                r = df_heredocs_from_line(&st->ctx, line, &inst->heredocs, &inst->n_heredocs);
                for (size_t i = 0; r >= 0 && i < inst->n_heredocs; i++)
                        r = read_heredoc_body(st, &inst->heredocs[i]);
                if (r < 0)
                        return r;
        }
        for (struct ossb_df_instruction *i = inst; i; i = i->sub) {
                i->line_start = start;
                i->line_end = st->line;
        }
        return 0;
}

/* One logical line starting with the physical line s[0..n). */
static int process(struct state *st, const char *s, size_t n)
{
        _cleanup_strbuf_ struct ossb_strbuf buf = OSSB_STRBUF_INIT;
        if (st->line == 0 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
                s += 3;
                n -= 3;
        }
        n = trim_newline(s, n);
        size_t lead = df_space_prefix(s, n);
        s += lead;
        n -= lead;
        st->ctx.line = st->line + 1;
        int r = directive(st, s, n);
        if (r < 0)
                return r;
        if (is_comment(s, n))
                n = 0;
        st->line++;
        int start = st->line;
        bool more = continues(st, s, &n);
        if (!more && n == 0)
                return 0;
        if (ossb_strbuf_append_n(&buf, s, n) < 0 || ossb_strbuf_append(&buf, "") < 0)
                return df_oom(st->ctx.err);
        if (more && (r = read_continuation(st, &buf)) < 0)
                return r;
        return add_instruction(st, buf.buf, start);
}

static int check_input(const char *path, const char *data, size_t len, struct ossb_error **err)
{
        if (len > OSSB_DF_MAX_SIZE)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EFBIG, "%s: Dockerfile larger than %u bytes", path,
                                       OSSB_DF_MAX_SIZE);
        const char *nul = memchr(data, '\0', len);
        size_t end = nul ? (size_t) (nul - data) : len, lines = 0;
        for (const char *p = data; (p = memchr(p, '\n', end - (size_t) (p - data))); p++)
                lines++;
        if (nul)
                return df_fail_at(err, path, (int) lines + 1, "NUL byte in the Dockerfile");
        if (len > 0 && data[len - 1] != '\n')
                lines++;
        if (lines > OSSB_DF_MAX_LINES)
                return df_fail_at(err, path, OSSB_DF_MAX_LINES + 1, "more than %u lines", OSSB_DF_MAX_LINES);
        return 0;
}

int ossb_dockerfile_parse(const char *path, const char *data, size_t len, struct ossb_dockerfile **ret,
                          struct ossb_error **err)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        const char *s;
        size_t n;
        int r;

        if (!path)
                path = "Dockerfile";
        if (!data) {
                if (len > 0)
                        return ossb_error_set(err, -EINVAL, "no Dockerfile data");
                data = "";
        }
        if ((r = check_input(path, data, len, err)) < 0)
                return r;
        df = calloc(1, sizeof(*df));
        if (!df || !(df->path = strdup(path)))
                return df_oom(err);
        df->escape = '\\';
        struct state st = { .df = df, .ctx = { .path = df->path, .escape = '\\', .err = err }, .data = data, .len = len };
        while (scan(&st, &s, &n))
                if ((r = process(&st, s, n)) < 0)
                        return r;
        if (df->n_insts == 0)
                return df_fail_at(err, path, st.line > 0 ? st.line : 1, "file with no instructions");
        if (st.too_long)
                return df_fail_at(err, path, st.line + 1, "dockerfile line greater than max allowed size of %u",
                                  OSSB_DF_MAX_LINE_LEN);
        *ret = TAKE_PTR(df);
        return 0;
}

void ossb_dockerfile_free(struct ossb_dockerfile *df)
{
        if (!df)
                return;
        for (size_t i = 0; i < df->n_insts; i++)
                df_instruction_clear(&df->insts[i]);
        free(df->insts);
        free(df->path);
        free(df->syntax);
        free(df->check);
        ossb_strv_free(df->warnings);
        free(df);
}

int ossb_dockerfile_parse_file(const char *path, struct ossb_dockerfile **ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (streq(path, "-")) {
                r = ossb_read_fd(STDIN_FILENO, OSSB_DF_MAX_SIZE, &data, &len);
                if (r < 0)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, r, "reading the Dockerfile from stdin: %s",
                                               r == -EFBIG ? "larger than 16 MiB" : strerror(-r));
        } else {
                r = ossb_read_file(path, OSSB_DF_MAX_SIZE, &data, &len, err);
                if (r < 0) {
                        ossb_error_set_exit(err, OSSB_EXIT_USAGE);
                        return r;
                }
        }
        return ossb_dockerfile_parse(path, data, len, ret, err);
}
