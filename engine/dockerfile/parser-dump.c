/* engine/dockerfile/parser-dump.c - two views of a parse: BuildKit's Node.Dump() text (the
 * format of its parser testfiles' `result` files) and a stable JSON document for
 * `ossb debug parse` and tests.
 *
 * JSON layout (keys always present, in this order):
 *   {"path": str, "directives": {"escape": str, "syntax": str|null, "check": str|null},
 *    "instructions": [INST...], "warnings": [str...]}
 *   INST = {"cmd", "original", "line_start", "line_end", "flags": [str], "args": [str],
 *           "json": bool, "heredocs": [{"name", "content", "expand", "chomp", "fd"}],
 *           "sub": INST|null}
 * Strings are UTF-8; bytes that are not valid UTF-8 are written as U+FFFD.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "engine/dockerfile/parser-internal.h"

/* ---- Node.Dump ------------------------------------------------------------------------- */

static int dump_quoted(struct ossb_strbuf *sb, const char *s)
{
        return df_go_quote(sb, s, strlen(s));
}

static int dump_node(struct ossb_strbuf *sb, const struct ossb_df_instruction *inst)
{
        int r = ossb_strbuf_append(sb, inst->cmd);
        size_t nf = ossb_strv_length(inst->flags);
        bool kv = streq(inst->cmd, "env") || streq(inst->cmd, "label");

        if (r >= 0 && nf > 0) {
                r = ossb_strbuf_append(sb, " [");
                for (size_t i = 0; r >= 0 && i < nf; i++) {
                        if (i > 0)
                                r = ossb_strbuf_append_c(sb, ' ');
                        if (r >= 0)
                                r = dump_quoted(sb, inst->flags[i]);
                }
                if (r >= 0)
                        r = ossb_strbuf_append_c(sb, ']');
        }
        for (size_t i = 0; r >= 0 && inst->args && inst->args[i]; i++) {
                r = ossb_strbuf_append_c(sb, ' ');
                if (r >= 0)
                        r = dump_quoted(sb, inst->args[i]);
                if (r >= 0 && kv && i % 2 == 1)
                        r = ossb_strbuf_append(sb, inst->kv_legacy ? " \"\"" : " \"=\"");
        }
        if (r >= 0 && inst->sub) {
                r = ossb_strbuf_append(sb, " (");
                if (r >= 0)
                        r = dump_node(sb, inst->sub);
                if (r >= 0)
                        r = ossb_strbuf_append_c(sb, ')');
        }
        return r;
}

int ossb_dockerfile_dump(const struct ossb_dockerfile *df, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int r = ossb_strbuf_append(&sb, "");
        for (size_t i = 0; r >= 0 && i < df->n_insts; i++) {
                if (i > 0)
                        r = ossb_strbuf_append_c(&sb, '\n');
                if (r >= 0)
                        r = ossb_strbuf_append_c(&sb, '(');
                if (r >= 0)
                        r = dump_node(&sb, &df->insts[i]);
                if (r >= 0)
                        r = ossb_strbuf_append_c(&sb, ')');
        }
        if (r < 0)
                return r;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static int json_str(struct ossb_strbuf *sb, const char *s)
{
        static const char hex[] = "0123456789abcdef";
        if (!s)
                return ossb_strbuf_append(sb, "null");
        int r = ossb_strbuf_append_c(sb, '"');
        size_t n = strlen(s);
        for (size_t i = 0; r >= 0 && i < n;) {
                unsigned char c = (unsigned char) s[i];
                uint32_t rune;
                size_t w = df_utf8_decode(s + i, n - i, &rune);
                if (c == '"' || c == '\\') {
                        char e[2] = { '\\', (char) c };
                        r = ossb_strbuf_append_n(sb, e, 2);
                } else if (c == '\n') {
                        r = ossb_strbuf_append(sb, "\\n");
                } else if (c == '\t') {
                        r = ossb_strbuf_append(sb, "\\t");
                } else if (c == '\r') {
                        r = ossb_strbuf_append(sb, "\\r");
                } else if (c < 0x20 || c == 0x7F) {
                        char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF] };
                        r = ossb_strbuf_append_n(sb, e, 6);
                } else if (rune == DF_RUNE_ERROR && w == 1) {
                        r = df_utf8_put(sb, DF_RUNE_ERROR);
                } else {
                        r = ossb_strbuf_append_n(sb, s + i, w);
                }
                i += w;
        }
        return r < 0 ? r : ossb_strbuf_append_c(sb, '"');
}

static int json_strv(struct ossb_strbuf *sb, char *const *v)
{
        int r = ossb_strbuf_append_c(sb, '[');
        for (size_t i = 0; r >= 0 && v && v[i]; i++) {
                if (i > 0)
                        r = ossb_strbuf_append_c(sb, ',');
                if (r >= 0)
                        r = json_str(sb, v[i]);
        }
        return r < 0 ? r : ossb_strbuf_append_c(sb, ']');
}

static int json_heredocs(struct ossb_strbuf *sb, const struct ossb_df_instruction *inst)
{
        int r = ossb_strbuf_append_c(sb, '[');
        for (size_t i = 0; r >= 0 && i < inst->n_heredocs; i++) {
                const struct ossb_df_heredoc *h = &inst->heredocs[i];
                r = ossb_strbuf_append(sb, i > 0 ? ",{\"name\":" : "{\"name\":");
                if (r >= 0)
                        r = json_str(sb, h->name);
                if (r >= 0)
                        r = ossb_strbuf_append(sb, ",\"content\":");
                if (r >= 0)
                        r = json_str(sb, h->content ? h->content : "");
                if (r >= 0)
                        r = ossb_strbuf_appendf(sb, ",\"expand\":%s,\"chomp\":%s,\"fd\":%d}", h->expand ? "true" : "false",
                                                h->chomp ? "true" : "false", h->fd);
        }
        return r < 0 ? r : ossb_strbuf_append_c(sb, ']');
}

static int json_inst(struct ossb_strbuf *sb, const struct ossb_df_instruction *inst)
{
        int r = ossb_strbuf_append(sb, "{\"cmd\":");
        if (r >= 0)
                r = json_str(sb, inst->cmd);
        if (r >= 0)
                r = ossb_strbuf_append(sb, ",\"original\":");
        if (r >= 0)
                r = json_str(sb, inst->original);
        if (r >= 0)
                r = ossb_strbuf_appendf(sb, ",\"line_start\":%d,\"line_end\":%d,\"flags\":", inst->line_start,
                                        inst->line_end);
        if (r >= 0)
                r = json_strv(sb, inst->flags);
        if (r >= 0)
                r = ossb_strbuf_append(sb, ",\"args\":");
        if (r >= 0)
                r = json_strv(sb, inst->args);
        if (r >= 0)
                r = ossb_strbuf_appendf(sb, ",\"json\":%s,\"heredocs\":", inst->json ? "true" : "false");
        if (r >= 0)
                r = json_heredocs(sb, inst);
        if (r >= 0)
                r = ossb_strbuf_append(sb, ",\"sub\":");
        if (r >= 0)
                r = inst->sub ? json_inst(sb, inst->sub) : ossb_strbuf_append(sb, "null");
        return r < 0 ? r : ossb_strbuf_append_c(sb, '}');
}

int ossb_dockerfile_to_json(const struct ossb_dockerfile *df, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        char esc[2] = { df->escape, 0 };
        int r = ossb_strbuf_append(&sb, "{\"path\":");
        if (r >= 0)
                r = json_str(&sb, df->path);
        if (r >= 0)
                r = ossb_strbuf_append(&sb, ",\"directives\":{\"escape\":");
        if (r >= 0)
                r = json_str(&sb, esc);
        if (r >= 0)
                r = ossb_strbuf_append(&sb, ",\"syntax\":");
        if (r >= 0)
                r = json_str(&sb, df->syntax);
        if (r >= 0)
                r = ossb_strbuf_append(&sb, ",\"check\":");
        if (r >= 0)
                r = json_str(&sb, df->check);
        if (r >= 0)
                r = ossb_strbuf_append(&sb, "},\"instructions\":[");
        for (size_t i = 0; r >= 0 && i < df->n_insts; i++) {
                if (i > 0)
                        r = ossb_strbuf_append_c(&sb, ',');
                if (r >= 0)
                        r = json_inst(&sb, &df->insts[i]);
        }
        if (r >= 0)
                r = ossb_strbuf_append(&sb, "],\"warnings\":");
        if (r >= 0)
                r = json_strv(&sb, df->warnings);
        if (r >= 0)
                r = ossb_strbuf_append_c(&sb, '}');
        if (r < 0)
                return r;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}
