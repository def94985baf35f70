/* engine/dockerfile/instructions.c - parse nodes -> typed instructions and stages (BuildKit's
 * frontend/dockerfile/instructions Parse/ParseInstruction).
 *
 * Owns: struct ossb_df_plan and struct ossb_df_inst.  Each instruction is checked as BuildKit
 * checks it and in the same order (argument counts, then flags, or the other way round where
 * BuildKit does so), so the first error reported is BuildKit's.  Nothing is expanded.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser-internal.h"

static const char *const kind_names[] = {
        [OSSB_DF_FROM] = "FROM",         [OSSB_DF_RUN] = "RUN",           [OSSB_DF_CMD] = "CMD",
        [OSSB_DF_LABEL] = "LABEL",       [OSSB_DF_MAINTAINER] = "MAINTAINER", [OSSB_DF_EXPOSE] = "EXPOSE",
        [OSSB_DF_ENV] = "ENV",           [OSSB_DF_ADD] = "ADD",           [OSSB_DF_COPY] = "COPY",
        [OSSB_DF_ENTRYPOINT] = "ENTRYPOINT", [OSSB_DF_VOLUME] = "VOLUME", [OSSB_DF_USER] = "USER",
        [OSSB_DF_WORKDIR] = "WORKDIR",   [OSSB_DF_ARG] = "ARG",           [OSSB_DF_ONBUILD] = "ONBUILD",
        [OSSB_DF_STOPSIGNAL] = "STOPSIGNAL", [OSSB_DF_HEALTHCHECK] = "HEALTHCHECK", [OSSB_DF_SHELL] = "SHELL",
};

const char *ossb_df_kind_name(enum ossb_df_kind kind)
{
        return (size_t) kind < ELEMENTSOF(kind_names) ? kind_names[kind] : "?";
}

static void inst_clear(struct ossb_df_inst *i)
{
        free(i->from_image);
        free(i->from_name);
        free(i->from_platform);
        ossb_strv_free(i->command.argv);
        ossb_strv_free(i->run_mounts);
        free(i->run_network);
        free(i->run_security);
        ossb_strv_free(i->run_devices);
        for (size_t k = 0; k < i->n_kvs; k++) {
                free(i->kvs[k].key);
                free(i->kvs[k].value);
        }
        free(i->kvs);
        ossb_strv_free(i->words);
        free(i->str);
        ossb_strv_free(i->sources);
        free(i->dest);
        free(i->copy_from);
        free(i->chown);
        free(i->chmod);
        ossb_strv_free(i->excludes);
        free(i->checksum);
        free(i->hc_interval);
        free(i->hc_timeout);
        free(i->hc_start_period);
        free(i->hc_start_interval);
        free(i->hc_retries);
        free(i->onbuild);
        memset(i, 0, sizeof(*i));
}

void ossb_df_inst_free(struct ossb_df_inst *i)
{
        if (!i)
                return;
        inst_clear(i);
        free(i);
}

/* A copy of a flag value, NULL when absent or empty (BuildKit's "" = unset). */
static int dup_opt(const struct df_ctx *ctx, const char *v, char **ret)
{
        if (!v || !*v)
                return 0;
        *ret = strdup(v);
        return *ret ? 0 : df_oom(ctx->err);
}

static int dup_str(const struct df_ctx *ctx, const char *v, char **ret)
{
        *ret = strdup(v);
        return *ret ? 0 : df_oom(ctx->err);
}

static int dup_strv(const struct df_ctx *ctx, char *const *v, char ***ret)
{
        *ret = v ? ossb_strv_copy(v) : ossb_strv_new_empty();
        return *ret ? 0 : df_oom(ctx->err);
}

static size_t nargs(const struct ossb_df_instruction *n)
{
        return ossb_strv_length(n->args);
}

static int parse_no_flags(const struct df_ctx *ctx, const struct ossb_df_instruction *n)
{
        return df_flags_parse(ctx, n->flags, NULL, 0, NULL);
}

static int err_at_least_one(const struct df_ctx *ctx, const char *cmd)
{
        return df_fail(ctx, "%s requires at least one argument", cmd);
}

static int err_exactly_one(const struct df_ctx *ctx, const char *cmd)
{
        return df_fail(ctx, "%s requires exactly one argument", cmd);
}

/* handleJSONArgs: exec form keeps the items, shell form joins them with spaces. */
static int command_from(const struct df_ctx *ctx, char *const *args, bool json, bool empty_as_nil,
                        struct ossb_df_command *c)
{
        c->json = json;
        if (!args || !args[0]) {
                if (empty_as_nil)
                        return 0;
                return dup_strv(ctx, NULL, &c->argv);
        }
        if (json)
                return dup_strv(ctx, args, &c->argv);
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (size_t i = 0; args[i]; i++)
                if ((i > 0 && ossb_strbuf_append_c(&sb, ' ') < 0) || ossb_strbuf_append(&sb, args[i]) < 0)
                        return df_oom(ctx->err);
        size_t n = 0;
        if (df_strv_add(&c->argv, &n, ossb_strbuf_steal(&sb)) < 0)
                return df_oom(ctx->err);
        return 0;
}

/* ---- ENV, LABEL, ARG --------------------------------------------------------------------- */

static int add_kv(const struct df_ctx *ctx, struct ossb_df_inst *i, const char *k, size_t kn, const char *v)
{
        struct ossb_df_kv *n = df_grow(i->kvs, i->n_kvs, sizeof(*n));
        if (!n)
                return df_oom(ctx->err);
        i->kvs = n;
        n[i->n_kvs] = (struct ossb_df_kv) { strndup(k, kn), v ? strdup(v) : NULL };
        i->n_kvs++;
        if (!n[i->n_kvs - 1].key || (v && !n[i->n_kvs - 1].value))
                return df_oom(ctx->err);
        return 0;
}

static int parse_kvps(const struct df_ctx *ctx, const struct ossb_df_instruction *n, const char *cmd,
                      struct ossb_df_inst *i)
{
        int r = parse_no_flags(ctx, n);
        if (r < 0)
                return r;
        size_t na = nargs(n);
        if (na == 0)
                return err_at_least_one(ctx, cmd);
        for (size_t k = 0; k + 1 < na; k += 2) {
                if (!*n->args[k])
                        return df_fail(ctx, "%s names can not be blank", cmd);
                if ((r = add_kv(ctx, i, n->args[k], strlen(n->args[k]), n->args[k + 1])) < 0)
                        return r;
        }
        return 0;
}

static int parse_env(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return parse_kvps(ctx, n, "ENV", i);
}

static int parse_label(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return parse_kvps(ctx, n, "LABEL", i);
}

static int parse_arg(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        if (nargs(n) == 0)
                return err_at_least_one(ctx, "ARG");
        for (size_t k = 0; n->args[k]; k++) {
                const char *a = n->args[k], *eq = strchr(a, '=');
                if (eq == a)
                        return df_fail(ctx, "ARG names can not be blank");
                int r = add_kv(ctx, i, a, eq ? (size_t) (eq - a) : strlen(a), eq ? eq + 1 : NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- single-string instructions --------------------------------------------------------- */

static int one_string(const struct df_ctx *ctx, const struct ossb_df_instruction *n, const char *cmd, bool flags,
                      struct ossb_df_inst *i)
{
        if (nargs(n) != 1)
                return err_exactly_one(ctx, cmd);
        int r = flags ? parse_no_flags(ctx, n) : 0;
        return r < 0 ? r : dup_str(ctx, n->args[0], &i->str);
}

static int parse_maintainer(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return one_string(ctx, n, "MAINTAINER", true, i);
}

static int parse_workdir(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return one_string(ctx, n, "WORKDIR", true, i);
}

static int parse_user(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return one_string(ctx, n, "USER", true, i);
}

static int parse_stopsignal(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        return one_string(ctx, n, "STOPSIGNAL", false, i);
}

/* ---- EXPOSE, VOLUME, SHELL --------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int parse_expose(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        if (nargs(n) == 0)
                return err_at_least_one(ctx, "EXPOSE");
        int r = parse_no_flags(ctx, n);
        if (r < 0 || (r = dup_strv(ctx, n->args, &i->words)) < 0)
                return r;
        qsort(i->words, ossb_strv_length(i->words), sizeof(char *), cmp_str);
        return 0;
}

static int parse_volume(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        if (nargs(n) == 0)
                return err_at_least_one(ctx, "VOLUME");
        int r = parse_no_flags(ctx, n);
        size_t nw = 0;
        if (r < 0)
                return r;
        for (size_t k = 0; n->args[k]; k++) {
                const char *v = n->args[k];
                size_t lead = df_space_prefix(v, strlen(v));
                size_t len = df_trim_right_len(v + lead, strlen(v + lead));
                if (len == 0)
                        return df_fail(ctx, "VOLUME specified can not be an empty string");
                if (df_strv_add(&i->words, &nw, strndup(v + lead, len)) < 0)
                        return df_oom(ctx->err);
        }
        return 0;
}

static int parse_shell(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        int r = parse_no_flags(ctx, n);
        if (r < 0)
                return r;
        if (nargs(n) == 0)
                return err_at_least_one(ctx, "SHELL");
        if (!n->json)
                return df_fail(ctx, "SHELL requires the arguments to be in JSON form");
        return dup_strv(ctx, n->args, &i->words);
}

/* ---- RUN, CMD, ENTRYPOINT ---------------------------------------------------------------- */

static int parse_run(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        static const struct df_flag_spec spec[] = {
                { "device", DF_FLAG_STRINGS }, { "mount", DF_FLAG_STRINGS },
                { "network", DF_FLAG_STRING }, { "security", DF_FLAG_STRING },
        };
        struct df_flag_value v[ELEMENTSOF(spec)] = { { 0 } };
        int r = df_flags_parse(ctx, n->flags, spec, ELEMENTSOF(spec), v);
        if (r >= 0)
                r = command_from(ctx, n->args, n->json, false, &i->command);
        if (r >= 0) {
                i->run_devices = TAKE_PTR(v[0].values);
                i->run_mounts = TAKE_PTR(v[1].values);
        }
        const char *net = v[2].used ? v[2].value : "default", *sec = v[3].used ? v[3].value : "sandbox";
        if (r >= 0 && !streq(net, "default") && !streq(net, "none") && !streq(net, "host")) {
                _cleanup_free_ char *q = df_go_quoted(net);
                r = q ? df_fail(ctx, "invalid network mode %s", q) : df_oom(ctx->err);
        }
        if (r >= 0 && !streq(sec, "sandbox") && !streq(sec, "insecure")) {
                _cleanup_free_ char *q = df_go_quoted(sec);
                r = q ? df_fail(ctx, "security %s is not valid", q) : df_oom(ctx->err);
        }
        if (r >= 0 && v[2].used)
                r = dup_str(ctx, net, &i->run_network);
        if (r >= 0 && v[3].used)
                r = dup_str(ctx, sec, &i->run_security);
        df_flag_values_clear(v, ELEMENTSOF(v));
        return r;
}

static int parse_cmd(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        int r = parse_no_flags(ctx, n);
        return r < 0 ? r : command_from(ctx, n->args, n->json, false, &i->command);
}

static int parse_entrypoint(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        int r = parse_no_flags(ctx, n);
        return r < 0 ? r : command_from(ctx, n->args, n->json, true, &i->command);
}

/* ---- HEALTHCHECK ------------------------------------------------------------------------- */

static int check_interval(const struct df_ctx *ctx, const char *name, const char *value, char **ret)
{
        _cleanup_free_ char *msg = NULL;
        long long ns;
        if (!value || !*value)
                return 0;
        int r = df_parse_duration(value, &ns, &msg);
        if (r == -ENOMEM)
                return df_oom(ctx->err);
        if (r < 0)
                return df_fail(ctx, "%s", msg);
        if (ns != 0 && ns < 1000000)
                return df_fail(ctx, "Interval \"%s\" cannot be less than 1ms", name);
        return dup_str(ctx, value, ret);
}

static int check_retries(const struct df_ctx *ctx, const char *value, char **ret)
{
        _cleanup_free_ char *msg = NULL;
        long v;
        if (!value || !*value)
                return 0;
        int r = df_parse_int32(value, &v, &msg);
        if (r == -ENOMEM)
                return df_oom(ctx->err);
        if (r < 0)
                return df_fail(ctx, "%s", msg);
        if (v < 0)
                return df_fail(ctx, "--retries cannot be negative (%ld)", v);
        return dup_str(ctx, value, ret);
}

static int healthcheck_cmd(const struct df_ctx *ctx, const struct ossb_df_instruction *n, const char *typ,
                           struct ossb_df_inst *i)
{
        if (strcasecmp(typ, "CMD") != 0) {
                _cleanup_free_ char *up = df_go_upper(typ, strlen(typ)), *q = NULL;
                q = up ? df_go_quoted(up) : NULL;
                return q ? df_fail(ctx, "Unknown type %s in HEALTHCHECK (try CMD)", q) : df_oom(ctx->err);
        }
        if (!n->args[1])
                return df_fail(ctx, "Missing command after HEALTHCHECK CMD");
        return command_from(ctx, n->args + 1, n->json, false, &i->command);
}

static int parse_healthcheck(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        static const struct df_flag_spec spec[] = {
                { "interval", DF_FLAG_STRING },       { "timeout", DF_FLAG_STRING }, { "start-period", DF_FLAG_STRING },
                { "start-interval", DF_FLAG_STRING }, { "retries", DF_FLAG_STRING },
        };
        struct df_flag_value v[ELEMENTSOF(spec)] = { { 0 } };

        if (nargs(n) == 0)
                return err_at_least_one(ctx, "HEALTHCHECK");
        if (strcasecmp(n->args[0], "NONE") == 0) {
                if (n->args[1])
                        return df_fail(ctx, "HEALTHCHECK NONE takes no arguments");
                i->hc_none = true;
                return 0;
        }
        int r = df_flags_parse(ctx, n->flags, spec, ELEMENTSOF(spec), v);
        if (r >= 0)
                r = healthcheck_cmd(ctx, n, n->args[0], i);
        if (r >= 0)
                r = check_interval(ctx, "interval", v[0].value, &i->hc_interval);
        if (r >= 0)
                r = check_interval(ctx, "timeout", v[1].value, &i->hc_timeout);
        if (r >= 0)
                r = check_interval(ctx, "start-period", v[2].value, &i->hc_start_period);
        if (r >= 0)
                r = check_interval(ctx, "start-interval", v[3].value, &i->hc_start_interval);
        if (r >= 0)
                r = check_retries(ctx, v[4].value, &i->hc_retries);
        df_flag_values_clear(v, ELEMENTSOF(v));
        return r;
}

/* ---- COPY, ADD --------------------------------------------------------------------------- */

static int sources_and_dest(const struct df_ctx *ctx, const struct ossb_df_instruction *n, const char *cmd,
                            struct ossb_df_inst *i)
{
        size_t na = nargs(n);
        struct ossb_df_heredoc h;
        _cleanup_free_ char *msg = NULL;
        int r = df_heredoc_word(n->args[na - 1], &h, &msg);
        if (r == -ENOMEM)
                return df_oom(ctx->err);
        if (r > 0) {
                ossb_df_heredoc_clear(&h);
                return df_fail(ctx, "%s cannot accept a heredoc as a destination", cmd);
        }
        size_t ns = 0;
        if (dup_str(ctx, n->args[na - 1], &i->dest) < 0 || !(i->sources = ossb_strv_new_empty()))
                return df_oom(ctx->err);
        for (size_t k = 0; k + 1 < na; k++)
                if (df_strv_add(&i->sources, &ns, strdup(n->args[k])) < 0)
                        return df_oom(ctx->err);
        i->sources_json = n->json;
        return 0;
}

static int parse_copy(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        static const struct df_flag_spec spec[] = {
                { "chown", DF_FLAG_STRING }, { "from", DF_FLAG_STRING },     { "chmod", DF_FLAG_STRING },
                { "link", DF_FLAG_BOOL },    { "exclude", DF_FLAG_STRINGS }, { "parents", DF_FLAG_BOOL },
        };
        struct df_flag_value v[ELEMENTSOF(spec)] = { { 0 } };

        if (nargs(n) < 2)
                return df_fail(ctx, "COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        int r = df_flags_parse(ctx, n->flags, spec, ELEMENTSOF(spec), v);
        if (r >= 0)
                r = sources_and_dest(ctx, n, "COPY", i);
        if (r >= 0 && (r = dup_opt(ctx, v[0].value, &i->chown)) >= 0 && (r = dup_opt(ctx, v[1].value, &i->copy_from)) >= 0)
                r = dup_opt(ctx, v[2].value, &i->chmod);
        i->link = v[3].on;
        i->excludes = TAKE_PTR(v[4].values);
        i->parents = v[5].on;
        df_flag_values_clear(v, ELEMENTSOF(v));
        return r;
}

static int parse_add(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        static const struct df_flag_spec spec[] = {
                { "chown", DF_FLAG_STRING },    { "chmod", DF_FLAG_STRING }, { "link", DF_FLAG_BOOL },
                { "keep-git-dir", DF_FLAG_BOOL }, { "checksum", DF_FLAG_STRING }, { "unpack", DF_FLAG_BOOL },
                { "exclude", DF_FLAG_STRINGS },
        };
        struct df_flag_value v[ELEMENTSOF(spec)] = { { 0 } };

        if (nargs(n) < 2)
                return df_fail(ctx, "ADD requires at least two arguments, but only one was provided. Destination could not be determined");
        int r = df_flags_parse(ctx, n->flags, spec, ELEMENTSOF(spec), v);
        if (r >= 0)
                r = sources_and_dest(ctx, n, "ADD", i);
        if (r >= 0 && (r = dup_opt(ctx, v[0].value, &i->chown)) >= 0 && (r = dup_opt(ctx, v[1].value, &i->chmod)) >= 0)
                r = dup_opt(ctx, v[4].value, &i->checksum);
        i->link = v[2].on;
        i->keep_git_dir = v[3].on;
        i->keep_git_dir_set = v[3].used;
        i->unpack = v[5].used ? v[5].on : -1;
        i->excludes = TAKE_PTR(v[6].values);
        df_flag_values_clear(v, ELEMENTSOF(v));
        return r;
}

/* ---- FROM, ONBUILD ----------------------------------------------------------------------- */

static bool valid_stage_name(const char *s)
{
        if (!(*s >= 'a' && *s <= 'z'))
                return false;
        for (s++; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
                        return false;
        return true;
}

static int parse_from(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        static const struct df_flag_spec spec[] = { { "platform", DF_FLAG_STRING } };
        struct df_flag_value v[1] = { { 0 } };
        size_t na = nargs(n);

        if (na == 3 && strcasecmp(n->args[1], "as") == 0) {
                i->from_name = df_strndup_lower(n->args[2], strlen(n->args[2]));
                if (!i->from_name)
                        return df_oom(ctx->err);
                if (!valid_stage_name(i->from_name)) {
                        _cleanup_free_ char *q = df_go_quoted(n->args[2]);
                        return q ? df_fail(ctx, "invalid name for build stage: %s, name can't start with a number or contain symbols", q)
                                 : df_oom(ctx->err);
                }
        } else if (na != 1) {
                return df_fail(ctx, "FROM requires either one or three arguments");
        }
        int r = df_flags_parse(ctx, n->flags, spec, 1, v);
        if (r >= 0 && (r = dup_str(ctx, n->args[0], &i->from_image)) >= 0)
                r = dup_opt(ctx, v[0].value, &i->from_platform);
        df_flag_values_clear(v, 1);
        return r;
}

/* `(?i)^\s*ONBUILD\s*` removed from the original line, heredocs appended as BuildKit does. */
static int onbuild_expression(const struct df_ctx *ctx, const struct ossb_df_instruction *n, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        const char *s = n->original;
        const char *ws = " \t\n\f\r";
        s += strspn(s, ws);
        if (strncasecmp(s, "onbuild", 7) == 0)
                s += 7 + strspn(s + 7, ws);
        int r = ossb_strbuf_append(&sb, s);
        for (size_t k = 0; r >= 0 && k < n->n_heredocs; k++) {
                r = ossb_strbuf_append_c(&sb, '\n');
                if (r >= 0)
                        r = ossb_strbuf_append(&sb, n->heredocs[k].content ? n->heredocs[k].content : "");
                if (r >= 0)
                        r = ossb_strbuf_append(&sb, n->heredocs[k].name);
        }
        if (r < 0 || !(*ret = ossb_strbuf_steal(&sb)))
                return df_oom(ctx->err);
        return 0;
}

static int check_trigger(const struct df_ctx *ctx, const char *cmd)
{
        if (strcasecmp(cmd, "onbuild") == 0)
                return df_fail(ctx, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
        if (strcasecmp(cmd, "maintainer") == 0 || strcasecmp(cmd, "from") == 0)
                return df_fail(ctx, "%s isn't allowed as an ONBUILD trigger", strcasecmp(cmd, "from") == 0 ? "FROM" : "MAINTAINER");
        return 0;
}

static int parse_onbuild(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        if (!n->sub)
                return err_at_least_one(ctx, "ONBUILD");
        int r = parse_no_flags(ctx, n);
        if (r < 0 || (r = check_trigger(ctx, n->sub->cmd)) < 0)
                return r;
        return onbuild_expression(ctx, n, &i->onbuild);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef int (*inst_parser)(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i);

static const struct {
        const char *cmd;
        enum ossb_df_kind kind;
        inst_parser fn;
} parsers[] = {
        { "from", OSSB_DF_FROM, parse_from },           { "run", OSSB_DF_RUN, parse_run },
        { "cmd", OSSB_DF_CMD, parse_cmd },              { "label", OSSB_DF_LABEL, parse_label },
        { "maintainer", OSSB_DF_MAINTAINER, parse_maintainer }, { "expose", OSSB_DF_EXPOSE, parse_expose },
        { "env", OSSB_DF_ENV, parse_env },              { "add", OSSB_DF_ADD, parse_add },
        { "copy", OSSB_DF_COPY, parse_copy },           { "entrypoint", OSSB_DF_ENTRYPOINT, parse_entrypoint },
        { "volume", OSSB_DF_VOLUME, parse_volume },     { "user", OSSB_DF_USER, parse_user },
        { "workdir", OSSB_DF_WORKDIR, parse_workdir },  { "arg", OSSB_DF_ARG, parse_arg },
        { "onbuild", OSSB_DF_ONBUILD, parse_onbuild },  { "stopsignal", OSSB_DF_STOPSIGNAL, parse_stopsignal },
        { "healthcheck", OSSB_DF_HEALTHCHECK, parse_healthcheck }, { "shell", OSSB_DF_SHELL, parse_shell },
};

/* Fill *i (zeroed by the caller) from node n; on failure *i holds what was built so far. */
static int typed(const struct df_ctx *ctx, const struct ossb_df_instruction *n, struct ossb_df_inst *i)
{
        i->node = n;
        i->unpack = -1;
        for (size_t k = 0; k < ELEMENTSOF(parsers); k++)
                if (streq(n->cmd, parsers[k].cmd)) {
                        i->kind = parsers[k].kind;
                        return parsers[k].fn(ctx, n, i);
                }
        return df_fail(ctx, "unknown instruction: %s", n->cmd);
}

/* ---- the plan ---------------------------------------------------------------------------- */

static void stage_clear(struct ossb_df_stage *s)
{
        free(s->name);
        inst_clear(&s->from);
        for (size_t k = 0; k < s->n_insts; k++)
                inst_clear(&s->insts[k]);
        free(s->insts);
}

void ossb_df_plan_free(struct ossb_df_plan *p)
{
        if (!p)
                return;
        for (size_t k = 0; k < p->n_meta_args; k++)
                inst_clear(&p->meta_args[k]);
        free(p->meta_args);
        for (size_t k = 0; k < p->n_stages; k++)
                stage_clear(&p->stages[k]);
        free(p->stages);
        free(p);
}

/* Room for element n of an array grown by df_grow; the new slot is zeroed. */
static void *grow(void *arr, size_t n, size_t size)
{
        char *a = df_grow(arr, n, size);
        if (a)
                memset(a + n * size, 0, size);
        return a;
}

static int add_stage(const struct df_ctx *ctx, struct ossb_df_plan *p, struct ossb_df_inst *from)
{
        for (size_t k = 0; from->from_name && k < p->n_stages; k++)
                if (p->stages[k].name && streq(p->stages[k].name, from->from_name))
                        return df_fail(ctx, "Duplicate stage name \"%s\", stage names should be unique", from->from_name);
        struct ossb_df_stage *s = grow(p->stages, p->n_stages, sizeof(*s));
        if (!s)
                return df_oom(ctx->err);
        p->stages = s;
        s = &p->stages[p->n_stages];
        s->index = p->n_stages++;
        if (from->from_name && !(s->name = strdup(from->from_name)))
                return df_oom(ctx->err);
        s->from = *from;
        memset(from, 0, sizeof(*from));
        return 0;
}

/* Move *i to the end of the array *arr (holding *n). */
static int append_inst(const struct df_ctx *ctx, struct ossb_df_inst **arr, size_t *n, struct ossb_df_inst *i)
{
        struct ossb_df_inst *a = grow(*arr, *n, sizeof(*a));
        if (!a)
                return df_oom(ctx->err);
        *arr = a;
        a[(*n)++] = *i;
        memset(i, 0, sizeof(*i));
        return 0;
}

static int plan_add(const struct df_ctx *ctx, struct ossb_df_plan *p, struct ossb_df_inst *i)
{
        if (p->n_stages == 0 && i->kind == OSSB_DF_ARG)
                return append_inst(ctx, &p->meta_args, &p->n_meta_args, i);
        if (i->kind == OSSB_DF_FROM)
                return add_stage(ctx, p, i);
        if (p->n_stages == 0)
                return df_fail(ctx, "no build stage in current context");
        struct ossb_df_stage *s = &p->stages[p->n_stages - 1];
        return append_inst(ctx, &s->insts, &s->n_insts, i);
}

int ossb_df_plan_new(const struct ossb_dockerfile *df, struct ossb_df_plan **ret, struct ossb_error **err)
{
        _cleanup_df_plan_ struct ossb_df_plan *p = calloc(1, sizeof(*p));
        struct df_ctx ctx = { .path = df->path, .escape = df->escape, .err = err };

        if (!p)
                return df_oom(err);
        for (size_t k = 0; k < df->n_insts; k++) {
                struct ossb_df_inst i = { 0 };
                ctx.line = df->insts[k].line_start;
                int r = typed(&ctx, &df->insts[k], &i);
                if (r >= 0)
                        r = plan_add(&ctx, p, &i);
                inst_clear(&i);
                if (r < 0)
                        return r;
        }
        if (p->n_stages == 0)
                return df_fail_at(err, df->path, df->n_insts > 0 ? df->insts[0].line_start : 1,
                                  "dockerfile contains no stages to build");
        *ret = TAKE_PTR(p);
        return 0;
}

const struct ossb_df_stage *ossb_df_plan_find_stage(const struct ossb_df_plan *p, const char *name_or_index)
{
        size_t idx = 0;
        bool digits = *name_or_index != '\0';

        for (size_t k = 0; k < p->n_stages; k++)
                if (p->stages[k].name && strcasecmp(p->stages[k].name, name_or_index) == 0)
                        return &p->stages[k];
        for (const char *c = name_or_index; digits && *c; c++) {
                if (*c < '0' || *c > '9' || idx > p->n_stages)
                        return NULL;
                idx = idx * 10 + (size_t) (*c - '0');
        }
        return digits && idx < p->n_stages ? &p->stages[idx] : NULL;
}

int ossb_df_parse_trigger(const char *trigger, struct ossb_dockerfile **ret_df, struct ossb_df_inst **ret,
                          struct ossb_error **err)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        int r = ossb_dockerfile_parse("ONBUILD trigger", trigger, strlen(trigger), &df, err);
        if (r < 0)
                return r;
        struct df_ctx ctx = { .path = df->path, .line = 1, .escape = df->escape, .err = err };
        if (df->n_insts != 1)
                return df_fail(&ctx, "onbuild trigger should be a single expression");
        if ((r = check_trigger(&ctx, df->insts[0].cmd)) < 0)
                return r;
        struct ossb_df_inst *i = calloc(1, sizeof(*i));
        if (!i)
                return df_oom(err);
        r = typed(&ctx, &df->insts[0], i);
        if (r < 0) {
                ossb_df_inst_free(i);
                return r;
        }
        *ret = i;
        *ret_df = TAKE_PTR(df);
        return 0;
}
