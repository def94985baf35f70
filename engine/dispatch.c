/* engine/dispatch.c - one Dockerfile instruction applied to a stage: variable expansion with
 * Docker's scoping, the image config fields each instruction sets (as BuildKit maps them),
 * the history entry it records, and COPY/ADD/WORKDIR layers. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/copy.h"
#include "engine/dockerfile/shell.h"
#include "engine/extract.h"

char **ossb_stage_env(const struct stage_state *s)
{
        char **env = ossb_strv_copy(s->args);
        _cleanup_strv_free_ char **cfg_env = NULL;
        if (!env)
                env = ossb_strv_new_empty();
        if (!env || ossb_config_get_strv(s->img, "Env", &cfg_env) < 0) {
                ossb_strv_free(env);
                return NULL;
        }
        for (size_t i = 0; cfg_env && cfg_env[i]; i++)
                if (ossb_strv_push(&env, cfg_env[i]) < 0) {
                        ossb_strv_free(env);
                        return NULL;
                }
        return env;
}

int ossb_expand(const struct build *b, char *const *env, const char *word, char **ret, struct ossb_error **err)
{
        return ossb_shell_expand(word, b->df->escape, ossb_shell_lookup_strv, (void *) env, ret, err);
}

int ossb_wrap_inst(const struct build *b, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        if (inst->node)
                return ossb_error_wrap(err, "%s:%d: %s", b->df->path, inst->node->line_start, inst->node->original);
        return ossb_error_wrap(err, "%s", b->df->path);
}

struct stage_state *ossb_find_stage(struct build *b, const char *name)
{
        const struct ossb_df_stage *st = ossb_df_plan_find_stage(b->plan, name);
        return st ? &b->stages[st->index] : NULL;
}

static int history(struct build *b, struct stage_state *s, const char *created_by, bool empty)
{
        return ossb_config_add_history(s->img, b->created, created_by, empty);
}

int ossb_stage_history(struct build *b, struct stage_state *s, const char *created_by, bool empty)
{
        return history(b, s, created_by, empty);
}

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

#define usage_error(err, fmt, ...) ossb_error_setx((err), OSSB_EXIT_USAGE, -EINVAL, fmt, __VA_ARGS__)

/* --- ENV, LABEL, ARG ---------------------------------------------------------------------- */

static int do_env_label(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, bool label,
                        struct ossb_error **err)
{
        _cleanup_strv_free_ char **env = ossb_stage_env(s); /* before this instruction */
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (!env || ossb_strbuf_append(&msg, label ? "LABEL" : "ENV") < 0)
                return oom(err);
        for (size_t i = 0; i < inst->n_kvs; i++) {
                _cleanup_free_ char *k = NULL, *v = NULL;
                int r = ossb_expand(b, env, inst->kvs[i].key, &k, err);
                if (r >= 0)
                        r = ossb_expand(b, env, inst->kvs[i].value ? inst->kvs[i].value : "", &v, err);
                if (r < 0)
                        return r;
                if (!*k)
                        return usage_error(err, "%s names must not be empty", label ? "LABEL" : "ENV");
                r = label ? ossb_config_label_set(s->img, k, v) : ossb_config_env_set(s->img, k, v);
                if (r < 0 || ossb_strbuf_appendf(&msg, " %s=%s", k, v) < 0)
                        return oom(err);
        }
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

static const char *build_arg_value(const struct build *b, const char *name)
{
        size_t n = strlen(name);
        const char *found = NULL;
        for (size_t i = 0; b->opts->build_args && b->opts->build_args[i]; i++)
                if (strncmp(b->opts->build_args[i], name, n) == 0 && b->opts->build_args[i][n] == '=')
                        found = b->opts->build_args[i] + n + 1;
        return found;
}

static int mark_used(struct build *b, const char *name)
{
        int r = 0;
        pthread_mutex_lock(&b->lock); /* stages run in parallel */
        if (!ossb_strv_contains(b->used_args, name))
                r = ossb_strv_push(&b->used_args, name);
        pthread_mutex_unlock(&b->lock);
        return r;
}

/* Resolve one ARG (stage or global): the build arg wins, then the (expanded) default, then
 * for a stage the global value of the same name. *ret is NULL when the ARG stays unset. */
int ossb_arg_resolve(struct build *b, char *const *env, char *const *global, const struct ossb_df_kv *kv, char **ret,
                     struct ossb_error **err);
int ossb_arg_resolve(struct build *b, char *const *env, char *const *global, const struct ossb_df_kv *kv, char **ret,
                     struct ossb_error **err)
{
        const char *override = build_arg_value(b, kv->key);
        *ret = NULL;
        if (override) {
                if (mark_used(b, kv->key) < 0)
                        return oom(err);
                *ret = strdup(override);
                return *ret ? 0 : oom(err);
        }
        if (kv->value)
                return ossb_expand(b, env, kv->value, ret, err);
        if (global) {
                const char *g = ossb_shell_lookup_strv((void *) global, kv->key);
                if (g) {
                        *ret = strdup(g);
                        return *ret ? 0 : oom(err);
                }
        }
        return 0;
}

static int set_kv(char ***v, const char *k, const char *value)
{
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", k, value) < 0)
                return -ENOMEM;
        return ossb_strv_consume(v, kv);
}

static int do_arg(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (ossb_strbuf_append(&msg, "ARG") < 0)
                return oom(err);
        for (size_t i = 0; i < inst->n_kvs; i++) {
                _cleanup_strv_free_ char **env = ossb_stage_env(s);
                _cleanup_free_ char *value = NULL, *shown = NULL;
                const struct ossb_df_kv *kv = &inst->kvs[i];
                if (!env)
                        return oom(err);
                int r = ossb_arg_resolve(b, env, b->meta_env, kv, &value, err);
                if (r >= 0 && kv->value)
                        r = ossb_expand(b, env, kv->value, &shown, err);
                if (r < 0)
                        return r;
                if (value && set_kv(&s->args, kv->key, value) < 0)
                        return oom(err);
                /* the history shows the Dockerfile's default, never a --build-arg value */
                if (ossb_strbuf_appendf(&msg, " %s%s%s", kv->key, shown ? "=" : "", shown ? shown : "") < 0)
                        return oom(err);
        }
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

/* --- CMD, ENTRYPOINT, SHELL, HEALTHCHECK ------------------------------------------------- */

static int default_shell(struct stage_state *s, char ***ret)
{
        int r = ossb_config_get_strv(s->img, "Shell", ret);
        if (r < 0)
                return r;
        if (*ret && (*ret)[0])
                return 0;
        ossb_strv_free(*ret);
        *ret = NULL;
        if (ossb_strv_push(ret, "/bin/sh") < 0 || ossb_strv_push(ret, "-c") < 0)
                return -ENOMEM;
        return 0;
}

/* exec form: the items; shell form: SHELL + [command] */
int ossb_command_argv(struct stage_state *s, const struct ossb_df_command *c, char ***ret)
{
        if (c->json) {
                *ret = c->argv ? ossb_strv_copy(c->argv) : ossb_strv_new_empty();
                return *ret ? 0 : -ENOMEM;
        }
        int r = default_shell(s, ret);
        if (r < 0)
                return r;
        return ossb_strv_push(ret, c->argv && c->argv[0] ? c->argv[0] : "");
}

/* Go's %q of a []string: ["a" "b"] */
static int append_quoted_list(struct ossb_strbuf *sb, char *const *v)
{
        if (ossb_strbuf_append_c(sb, '[') < 0)
                return -ENOMEM;
        for (size_t i = 0; v && v[i]; i++) {
                if (i && ossb_strbuf_append_c(sb, ' ') < 0)
                        return -ENOMEM;
                if (ossb_strbuf_append_c(sb, '"') < 0)
                        return -ENOMEM;
                for (const char *p = v[i]; *p; p++) {
                        int r;
                        unsigned char c = (unsigned char) *p;
                        if (c == '"' || c == '\\')
                                r = ossb_strbuf_appendf(sb, "\\%c", c);
                        else if (c == '\n')
                                r = ossb_strbuf_append(sb, "\\n");
                        else if (c == '\t')
                                r = ossb_strbuf_append(sb, "\\t");
                        else if (c < 0x20 || c == 0x7f)
                                r = ossb_strbuf_appendf(sb, "\\x%02x", c);
                        else
                                r = ossb_strbuf_append_c(sb, (char) c);
                        if (r < 0)
                                return -ENOMEM;
                }
                if (ossb_strbuf_append_c(sb, '"') < 0)
                        return -ENOMEM;
        }
        return ossb_strbuf_append_c(sb, ']');
}

/* Go's %v of a []string: [a b] */
static int append_plain_list(struct ossb_strbuf *sb, char *const *v)
{
        if (ossb_strbuf_append_c(sb, '[') < 0)
                return -ENOMEM;
        for (size_t i = 0; v && v[i]; i++)
                if ((i && ossb_strbuf_append_c(sb, ' ') < 0) || ossb_strbuf_append(sb, v[i]) < 0)
                        return -ENOMEM;
        return ossb_strbuf_append_c(sb, ']');
}

static int do_cmd_entrypoint(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                             struct ossb_error **err)
{
        bool entry = inst->kind == OSSB_DF_ENTRYPOINT;
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (ossb_command_argv(s, &inst->command, &argv) < 0)
                return oom(err);
        if (ossb_config_set_strv(s->img, entry ? "Entrypoint" : "Cmd", argv) < 0)
                return oom(err);
        if (entry && !s->cmd_set && ossb_config_set_strv(s->img, "Cmd", NULL) < 0)
                return oom(err);
        if (!entry) {
                s->cmd_set = true;
                /* BuildKit sets the (deprecated, Docker-compatible) ArgsEscaped on every CMD */
                json_object *cfg = ossb_config_container(s->img);
                if (!cfg)
                        return oom(err);
                json_object_object_add(cfg, "ArgsEscaped", json_object_new_boolean(1));
        }
        if (ossb_strbuf_append(&msg, entry ? "ENTRYPOINT " : "CMD ") < 0 || append_quoted_list(&msg, argv) < 0)
                return oom(err);
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

static int do_shell(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (!inst->words || !inst->words[0])
                return usage_error(err, "%s requires at least one argument", "SHELL");
        if (ossb_config_set_strv(s->img, "Shell", inst->words) < 0)
                return oom(err);
        if (ossb_strbuf_append(&msg, "SHELL ") < 0 || append_plain_list(&msg, inst->words) < 0)
                return oom(err);
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

/* Go time.ParseDuration for the forms Dockerfiles use: sequences of <number><unit>, units
 * ns, us, µs, ms, s, m, h; fractions allowed. */
int ossb_parse_duration(const char *s, int64_t *ret);
int ossb_parse_duration(const char *s, int64_t *ret)
{
        static const struct {
                const char *unit;
                double ns;
        } units[] = { { "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "ms", 1e6 }, { "s", 1e9 }, { "m", 60e9 }, { "h", 3600e9 } };
        double total = 0;
        const char *p = s;
        if (streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        if (!*p)
                return -EINVAL;
        while (*p) {
                char *end = NULL;
                if (!isdigit((unsigned char) *p) && *p != '.')
                        return -EINVAL;
                double v = strtod(p, &end);
                if (end == p)
                        return -EINVAL;
                p = end;
                size_t best = 0, best_len = 0;
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        size_t l = strlen(units[i].unit);
                        if (strncmp(p, units[i].unit, l) == 0 && l > best_len) {
                                best = i;
                                best_len = l;
                        }
                }
                if (!best_len)
                        return -EINVAL;
                total += v * units[best].ns;
                p += best_len;
        }
        if (total > 9.2e18)
                return -ERANGE;
        *ret = (int64_t) total;
        return 0;
}

/* Go's time.Duration.String(): "0s", "500ms", "1.5s", "1m30s", "1h0m0s". */
static void go_duration(int64_t d, char *buf, size_t size)
{
        char frac[16] = "";
        if (d == 0) {
                snprintf(buf, size, "0s");
                return;
        }
        if (d < 1000000000) {
                const char *unit = d < 1000 ? "ns" : d < 1000000 ? "\xc2\xb5s" : "ms";
                int64_t div = d < 1000 ? 1 : d < 1000000 ? 1000 : 1000000;
                if (div > 1 && d % div) {
                        int width = div == 1000 ? 3 : 6;
                        snprintf(frac, sizeof(frac), ".%0*lld", width, (long long) (d % div));
                        for (size_t l = strlen(frac); l > 1 && frac[l - 1] == '0'; l--)
                                frac[l - 1] = '\0';
                }
                snprintf(buf, size, "%lld%s%s", (long long) (d / div), frac, unit);
                return;
        }
        int64_t h = d / 3600000000000LL, m = (d / 60000000000LL) % 60, ns = d % 60000000000LL;
        if (ns % 1000000000) {
                snprintf(frac, sizeof(frac), ".%09lld", (long long) (ns % 1000000000));
                for (size_t l = strlen(frac); l > 1 && frac[l - 1] == '0'; l--)
                        frac[l - 1] = '\0';
        }
        if (h)
                snprintf(buf, size, "%lldh%lldm%lld%ss", (long long) h, (long long) m, (long long) (ns / 1000000000), frac);
        else if (m)
                snprintf(buf, size, "%lldm%lld%ss", (long long) m, (long long) (ns / 1000000000), frac);
        else
                snprintf(buf, size, "%lld%ss", (long long) (ns / 1000000000), frac);
}

/* Go's %q of an int (a rune literal): 'A', '\x03', '\\'. */
static void go_rune(long v, char *buf, size_t size)
{
        static const char esc_chars[] = "\a\b\f\n\r\t\v";
        static const char esc_names[] = "abfnrtv";
        const char *e = (v > 0 && v < 0x20) ? strchr(esc_chars, (int) v) : NULL;
        if (v >= 0x20 && v < 0x7f && v != '\'' && v != '\\')
                snprintf(buf, size, "'%c'", (char) v);
        else if (v == '\'' || v == '\\')
                snprintf(buf, size, "'\\%c'", (char) v);
        else if (e)
                snprintf(buf, size, "'\\%c'", esc_names[e - esc_chars]);
        else if (v < 0x80)
                snprintf(buf, size, "'\\x%02lx'", v);
        else if (v < 0x10000)
                snprintf(buf, size, "'\\u%04lx'", v);
        else
                snprintf(buf, size, "'\\U%08lx'", v);
}

static int hc_duration(const char *flag, const char *value, int64_t *ret, struct ossb_error **err)
{
        *ret = 0;
        if (!value)
                return 0;
        if (ossb_parse_duration(value, ret) < 0)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "HEALTHCHECK --%s: invalid duration `%s`", flag, value);
        if (*ret != 0 && *ret < 1000000)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "HEALTHCHECK --%s cannot be less than 1ms", flag);
        return 0;
}

static int do_healthcheck(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                          struct ossb_error **err)
{
        _cleanup_strv_free_ char **test = NULL;
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        int64_t interval = 0, timeout = 0, start_period = 0, start_interval = 0;
        long retries = 0;
        int r = 0;

        if (inst->hc_none) {
                if (ossb_strv_push(&test, "NONE") < 0)
                        return oom(err);
        } else {
                if (ossb_strv_push(&test, inst->command.json ? "CMD" : "CMD-SHELL") < 0)
                        return oom(err);
                for (size_t i = 0; inst->command.argv && inst->command.argv[i]; i++)
                        if (ossb_strv_push(&test, inst->command.argv[i]) < 0)
                                return oom(err);
                r = hc_duration("interval", inst->hc_interval, &interval, err);
                if (r >= 0)
                        r = hc_duration("timeout", inst->hc_timeout, &timeout, err);
                if (r >= 0)
                        r = hc_duration("start-period", inst->hc_start_period, &start_period, err);
                if (r >= 0)
                        r = hc_duration("start-interval", inst->hc_start_interval, &start_interval, err);
                if (r < 0)
                        return r;
                if (inst->hc_retries) {
                        char *end = NULL;
                        retries = strtol(inst->hc_retries, &end, 10);
                        if (!*inst->hc_retries || *end || retries < 0 || retries > 1000000000)
                                return usage_error(err, "HEALTHCHECK --retries: invalid value `%s`", inst->hc_retries);
                }
        }
        json_object *hc = json_object_new_object(), *t = json_object_new_array();
        if (!hc || !t) {
                json_object_put(hc);
                json_object_put(t);
                return oom(err);
        }
        for (size_t i = 0; test[i]; i++)
                json_object_array_add(t, json_object_new_string(test[i]));
        json_object_object_add(hc, "Test", t);
        if (interval)
                json_object_object_add(hc, "Interval", json_object_new_int64(interval));
        if (timeout)
                json_object_object_add(hc, "Timeout", json_object_new_int64(timeout));
        if (start_period)
                json_object_object_add(hc, "StartPeriod", json_object_new_int64(start_period));
        if (start_interval)
                json_object_object_add(hc, "StartInterval", json_object_new_int64(start_interval));
        if (retries)
                json_object_object_add(hc, "Retries", json_object_new_int((int) retries));
        if (ossb_config_set_json(s->img, "Healthcheck", hc) < 0)
                return oom(err);

        /* history as BuildKit prints the struct: HEALTHCHECK &{["CMD" "x"] "30s" "5s" "0s" '\x03'} */
        char d1[48], d2[48], d3[48], rune[24];
        go_duration(interval, d1, sizeof(d1));
        go_duration(timeout, d2, sizeof(d2));
        go_duration(start_period, d3, sizeof(d3));
        go_rune(retries, rune, sizeof(rune));
        if (ossb_strbuf_append(&msg, "HEALTHCHECK &{") < 0 || append_quoted_list(&msg, test) < 0 ||
            ossb_strbuf_appendf(&msg, " \"%s\" \"%s\" \"%s\" %s}", d1, d2, d3, rune) < 0)
                return oom(err);
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

/* --- USER, WORKDIR, STOPSIGNAL, EXPOSE, VOLUME, ONBUILD, MAINTAINER ------------------------- */

static int expand_str(struct build *b, struct stage_state *s, const char *word, char **ret, struct ossb_error **err)
{
        _cleanup_strv_free_ char **env = ossb_stage_env(s);
        if (!env)
                return oom(err);
        return ossb_expand(b, env, word, ret, err);
}

static int do_user(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_free_ char *u = NULL, *msg = NULL;
        int r = expand_str(b, s, inst->str, &u, err);
        if (r < 0)
                return r;
        if (ossb_config_set_str(s->img, "User", u) < 0 || asprintf(&msg, "USER %s", u) < 0)
                return oom(err);
        return history(b, s, msg, true) < 0 ? oom(err) : 0;
}

static bool valid_signal(const char *sig)
{
        static const char *const names[] = { "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE",
                                             "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT",
                                             "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU",
                                             "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS" };
        char *end = NULL;
        long n = strtol(sig, &end, 10);
        if (*sig && !*end)
                return n > 0 && n <= 64;
        const char *name = strncasecmp(sig, "SIG", 3) == 0 ? sig + 3 : sig;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(name, names[i]) == 0)
                        return true;
        if (strncasecmp(name, "RTMIN", 5) == 0 || strncasecmp(name, "RTMAX", 5) == 0) {
                const char *rest = name + 5;
                if (!*rest)
                        return true;
                if (*rest != '+' && *rest != '-')
                        return false;
                n = strtol(rest + 1, &end, 10);
                return rest[1] && !*end && n >= 1 && n <= 15;
        }
        return false;
}

static int do_stopsignal(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                         struct ossb_error **err)
{
        _cleanup_free_ char *sig = NULL, *msg = NULL;
        int r = expand_str(b, s, inst->str, &sig, err);
        if (r < 0)
                return r;
        if (!valid_signal(sig))
                return usage_error(err, "STOPSIGNAL: invalid signal `%s`", sig);
        if (ossb_config_set_str(s->img, "StopSignal", sig) < 0 || asprintf(&msg, "STOPSIGNAL %s", sig) < 0)
                return oom(err);
        return history(b, s, msg, true) < 0 ? oom(err) : 0;
}

static int cmp_strp(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int parse_port(const char *spec, unsigned *lo, unsigned *hi, char proto[8])
{
        const char *slash = strchr(spec, '/');
        _cleanup_free_ char *ports = slash ? strndup(spec, (size_t) (slash - spec)) : strdup(spec);
        if (!ports)
                return -ENOMEM;
        const char *p = slash ? slash + 1 : "tcp";
        if (!*p || strlen(p) >= 8)
                return -EINVAL;
        for (size_t i = 0; p[i]; i++)
                proto[i] = (char) tolower((unsigned char) p[i]);
        proto[strlen(p)] = '\0';
        if (!streq(proto, "tcp") && !streq(proto, "udp") && !streq(proto, "sctp"))
                return -EINVAL;
        char *end = NULL;
        if (!isdigit((unsigned char) ports[0]))
                return -EINVAL;
        unsigned long a = strtoul(ports, &end, 10), z = a;
        if (*end == '-') {
                const char *second = end + 1;
                if (!isdigit((unsigned char) *second))
                        return -EINVAL;
                z = strtoul(second, &end, 10);
        }
        if (*end || a > 65535 || z > 65535 || z < a)
                return -EINVAL;
        *lo = (unsigned) a;
        *hi = (unsigned) z;
        return 0;
}

static int do_expose(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_strv_free_ char **env = ossb_stage_env(s), **ports = NULL;
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (!env)
                return oom(err);
        for (size_t i = 0; inst->words && inst->words[i]; i++) {
                _cleanup_strv_free_ char **words = NULL;
                int r = ossb_shell_expand_words(inst->words[i], b->df->escape, ossb_shell_lookup_strv, env, &words, err);
                if (r < 0)
                        return r;
                for (size_t k = 0; words && words[k]; k++) {
                        unsigned lo, hi;
                        char proto[8];
                        r = parse_port(words[k], &lo, &hi, proto);
                        if (r == -ENOMEM)
                                return oom(err);
                        if (r < 0)
                                return usage_error(err, "EXPOSE: invalid port `%s` (expected PORT[-PORT][/tcp|udp|sctp])",
                                                   words[k]);
                        for (unsigned p = lo; p <= hi; p++) {
                                char key[32];
                                snprintf(key, sizeof(key), "%u/%s", p, proto);
                                if (ossb_config_set_add(s->img, "ExposedPorts", key) < 0 || ossb_strv_push(&ports, key) < 0)
                                        return oom(err);
                        }
                }
        }
        if (ports)
                qsort(ports, ossb_strv_length(ports), sizeof(char *), cmp_strp);
        if (ossb_strbuf_append(&msg, "EXPOSE map[") < 0)
                return oom(err);
        for (size_t i = 0; ports && ports[i]; i++) {
                if (i > 0 && streq(ports[i], ports[i - 1]))
                        continue;
                if (ossb_strbuf_appendf(&msg, "%s%s:{}", i ? " " : "", ports[i]) < 0)
                        return oom(err);
        }
        if (ossb_strbuf_append_c(&msg, ']') < 0)
                return oom(err);
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

static int do_volume(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_strv_free_ char **env = ossb_stage_env(s), **vols = NULL;
        _cleanup_strbuf_ struct ossb_strbuf msg = OSSB_STRBUF_INIT;
        if (!env)
                return oom(err);
        for (size_t i = 0; inst->words && inst->words[i]; i++) {
                _cleanup_free_ char *v = NULL;
                int r = ossb_expand(b, env, inst->words[i], &v, err);
                if (r < 0)
                        return r;
                if (!*v)
                        return usage_error(err, "%s", "VOLUME specified can not be an empty string");
                if (ossb_config_set_add(s->img, "Volumes", v) < 0 || ossb_strv_push(&vols, v) < 0)
                        return oom(err);
        }
        if (ossb_strbuf_append(&msg, "VOLUME ") < 0 || append_plain_list(&msg, vols) < 0)
                return oom(err);
        return history(b, s, msg.buf, true) < 0 ? oom(err) : 0;
}

static int do_onbuild(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_strv_free_ char **v = NULL;
        if (ossb_config_get_strv(s->img, "OnBuild", &v) < 0 || ossb_strv_push(&v, inst->onbuild) < 0 ||
            ossb_config_set_strv(s->img, "OnBuild", v) < 0)
                return oom(err);
        return 0; /* BuildKit records no history entry for ONBUILD */
}

static int do_maintainer(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                         struct ossb_error **err)
{
        _cleanup_free_ char *m = NULL, *msg = NULL;
        int r = expand_str(b, s, inst->str, &m, err);
        if (r < 0)
                return r;
        json_object_object_add(s->img, "author", json_object_new_string(m));
        if (asprintf(&msg, "MAINTAINER %s", m) < 0)
                return oom(err);
        return history(b, s, msg, true) < 0 ? oom(err) : 0;
}

/* --- layers ------------------------------------------------------------------------------ */

void ossb_build_layer_opts(const struct build *b, struct ossb_layer_opts *ret)
{
        *ret = (struct ossb_layer_opts) {
                .compression = b->opts->compression,
                .level = b->opts->compression_level,
                .source_date_epoch = b->opts->source_date_epoch,
        };
}

static int commit_layer(struct build *b, struct stage_state *s, struct ossb_changes *c, const char *created_by,
                        struct ossb_error **err)
{
        struct ossb_layer_opts lo;
        char digest[OSSB_DIGEST_STR_LEN + 1], diff_id[OSSB_DIGEST_STR_LEN + 1];
        int64_t size = 0;
        json_object *annotations = NULL;
        if (!s->exported) /* a stage only copied from: its files matter, not its layers */
                return history(b, s, created_by, false) < 0 ? oom(err) : 0;
        ossb_build_layer_opts(b, &lo);
        lo.ret_annotations = &annotations; /* seekable layers: their TOC's, for the manifest */
        int r = ossb_tree_write_layer(&s->root, c, b->store, &lo, digest, &size, diff_id, err);
        if (r >= 0)
                r = ossb_stage_add_layer_annotated(b, s, digest, size, diff_id, annotations, created_by, err);
        if (annotations)
                json_object_put(annotations);
        return r;
}

int ossb_stage_add_layer(struct build *b, struct stage_state *s, const char *digest, int64_t size, const char *diff_id,
                         const char *created_by, struct ossb_error **err)
{
        return ossb_stage_add_layer_annotated(b, s, digest, size, diff_id, NULL, created_by, err);
}

int ossb_stage_add_layer_annotated(struct build *b, struct stage_state *s, const char *digest, int64_t size,
                                   const char *diff_id, json_object *annotations, const char *created_by,
                                   struct ossb_error **err)
{
        struct ossb_descriptor *n = realloc(s->layers, (s->n_layers + 1) * sizeof(*n));
        if (!n)
                return oom(err);
        s->layers = n;
        struct ossb_descriptor d = { .size = size };
        d.media_type = strdup(ossb_compression_media_type(b->opts->compression));
        if (!d.media_type || (annotations && json_object_deep_copy(annotations, &d.annotations, NULL) < 0)) {
                ossb_descriptor_clear(&d);
                return oom(err);
        }
        memcpy(d.digest, digest, OSSB_DIGEST_STR_LEN + 1);
        n[s->n_layers++] = d;
        if (ossb_config_add_diff_id(s->img, diff_id) < 0 || history(b, s, created_by, false) < 0)
                return oom(err);
        return 0;
}

static int user_ids(struct stage_state *s, const char *user, uid_t *uid, gid_t *gid, struct ossb_error **err)
{
        *uid = 0;
        *gid = 0;
        if (!user || !*user)
                return 0;
        return ossb_chown_parse(&s->root, user, uid, gid, err);
}

static int do_workdir(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        _cleanup_free_ char *wd = NULL, *joined = NULL, *clean = NULL, *msg = NULL;
        struct ossb_changes c = { 0 };
        uid_t uid;
        gid_t gid;
        int r = expand_str(b, s, inst->str, &wd, err);
        if (r < 0)
                return r;
        const char *cur = ossb_config_get_str(s->img, "WorkingDir");
        if (wd[0] == '/' || !cur || !*cur)
                joined = ossb_path_join("/", wd);
        else
                joined = ossb_path_join(cur, wd);
        if (!joined || !(clean = ossb_path_clean(joined)))
                return oom(err);
        if (ossb_config_set_str(s->img, "WorkingDir", clean) < 0 || asprintf(&msg, "WORKDIR %s", clean) < 0)
                return oom(err);
        if (streq(clean, "/")) /* no layer for WORKDIR / */
                return history(b, s, msg, true) < 0 ? oom(err) : 0;
        char key[65];
        bool hit = false;
        r = ossb_stepcache_workdir_lookup(b, s, key, &hit, err);
        if (r < 0 || hit)
                return r;
        r = user_ids(s, ossb_config_get_str(s->img, "User"), &uid, &gid, err);
        if (r >= 0)
                r = ossb_tree_mkdir_p(&s->root, clean, uid, gid, b->now, &c, err);
        if (r >= 0)
                r = commit_layer(b, s, &c, msg, err);
        if (r >= 0)
                ossb_stepcache_copy_store(b, s, key, msg);
        ossb_changes_clear(&c);
        return r;
}

/* --- COPY / ADD -------------------------------------------------------------------------- */

static bool is_url(const char *s)
{
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static bool is_git(const char *s)
{
        return strncmp(s, "git@", 4) == 0 || strncmp(s, "git://", 6) == 0 ||
               (is_url(s) && (strstr(s, ".git#") || (strlen(s) > 4 && streq(s + strlen(s) - 4, ".git"))));
}

struct copy_job {
        struct build *b;
        struct stage_state *s;
        const struct ossb_df_inst *inst;
        char **env;
        char *dest;
        char *dest_written; /* expanded, as written (for the history) */
        bool dest_is_dir;
        int64_t uid, gid;
        struct ossb_chmod chmod;
        struct ossb_changes changes;
        const char *what;
};

static int dest_for_name(const struct copy_job *j, const char *name, size_t n_sources, char **ret)
{
        if (j->dest_is_dir || n_sources > 1)
                *ret = ossb_path_join(j->dest, name);
        else
                *ret = strdup(j->dest);
        return *ret ? 0 : -ENOMEM;
}

/* A COPY/ADD source written as a heredoc ("<<EOF", "<<-'EOF'"): its body (tabs removed for
 * <<-, variables expanded unless the delimiter was quoted) becomes a file named after it. */
static int copy_heredoc(struct copy_job *j, const struct ossb_df_heredoc *word, size_t n_sources,
                        struct ossb_error **err)
{
        const struct ossb_df_heredoc *h = ossb_df_instruction_find_heredoc(j->inst->node, word->name);
        _cleanup_free_ char *chomped = NULL, *content = NULL, *dest = NULL;
        int r;
        if (!h)
                return usage_error(err, "%s: no heredoc body named `%s`", j->what, word->name);
        const char *body = h->content ? h->content : "";
        if (word->chomp) {
                if (ossb_df_heredoc_chomp(body, &chomped) < 0)
                        return oom(err);
                body = chomped;
        }
        if (word->expand) {
                r = ossb_expand(j->b, j->env, body, &content, err);
                if (r < 0)
                        return r;
        } else if (!(content = strdup(body))) {
                return oom(err);
        }
        if (dest_for_name(j, word->name, n_sources, &dest) < 0)
                return oom(err);
        mode_t mode = ossb_chmod_apply(&j->chmod, 0644, false);
        uid_t uid = j->uid >= 0 ? (uid_t) j->uid : 0;
        gid_t gid = j->gid >= 0 ? (gid_t) j->gid : 0;
        return ossb_copy_write_file(&j->s->root, dest, content, strlen(content), mode, uid, gid, j->b->now, j->b->now,
                                    &j->changes, err);
}

static int copy_url(struct copy_job *j, const char *url, size_t n_sources, struct ossb_error **err)
{
        const char *checksum = j->inst->checksum;
        _cleanup_free_ char *expanded_sum = NULL, *tmp = NULL, *name = NULL, *dest = NULL, *data = NULL;
        char digest[72];
        int64_t mtime = -1;
        size_t len = 0;
        int r;

        if (checksum) {
                r = ossb_expand(j->b, j->env, checksum, &expanded_sum, err);
                if (r < 0)
                        return r;
                if (!ossb_digest_is_valid(expanded_sum))
                        return usage_error(err, "ADD --checksum=%s: expected sha256:<64 hex digits>", expanded_sum);
        }
        tmp = ossb_path_join(j->b->workdir, "download");
        if (!tmp)
                return oom(err);
        (void) unlink(tmp);
        r = ossb_url_download(url, tmp, &mtime, digest, err);
        if (r < 0)
                return r;
        if (expanded_sum && !streq(expanded_sum, digest)) {
                unlink(tmp);
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -EBADMSG, "ADD %s: checksum mismatch: expected %s, got %s", url,
                                       expanded_sum, digest);
        }
        r = ossb_read_file(tmp, SIZE_MAX / 2, &data, &len, err);
        unlink(tmp);
        if (r < 0)
                return r;
        /* the file name is the last path segment of the URL, query and fragment dropped */
        const char *start = strchr(url + 8, '/');
        _cleanup_free_ char *path = strdup(start ? start : "");
        if (!path)
                return oom(err);
        path[strcspn(path, "?#")] = '\0';
        const char *base = strrchr(path, '/');
        name = strdup(base && base[1] ? base + 1 : "__unnamed__");
        if (!name || dest_for_name(j, name, n_sources, &dest) < 0)
                return oom(err);
        uid_t uid = j->uid >= 0 ? (uid_t) j->uid : 0;
        gid_t gid = j->gid >= 0 ? (gid_t) j->gid : 0;
        mode_t mode = ossb_chmod_apply(&j->chmod, 0600, false);
        return ossb_copy_write_file(&j->s->root, dest, data, len, mode, uid, gid, mtime >= 0 ? mtime : 0, j->b->now,
                                    &j->changes, err);
}

static int copy_excludes(struct copy_job *j, struct ossb_dockerignore **ret, struct ossb_error **err)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        *ret = NULL;
        if (!j->inst->excludes || !j->inst->excludes[0])
                return 0;
        for (size_t i = 0; j->inst->excludes[i]; i++) {
                _cleanup_free_ char *e = NULL;
                int r = ossb_expand(j->b, j->env, j->inst->excludes[i], &e, err);
                if (r < 0)
                        return r;
                if (ossb_strbuf_appendf(&sb, "%s\n", e) < 0)
                        return oom(err);
        }
        return ossb_dockerignore_parse("--exclude", sb.buf, sb.len, ret, err);
}

static int copy_from_tree(struct copy_job *j, char **sources, const struct ossb_tree *src, bool from_context,
                          struct ossb_error **err)
{
        struct ossb_dockerignore *excludes = NULL;
        int r = copy_excludes(j, &excludes, err);
        if (r < 0)
                return r;
        struct ossb_copy_req req = {
                .src = src,
                .ignore = from_context ? j->b->ignore : NULL,
                .src_is_context = from_context,
                .sources = sources,
                .dest = j->dest,
                .dest_is_dir = j->dest_is_dir,
                .uid = j->uid,
                .gid = j->gid,
                .chmod = j->chmod,
                .parents = j->inst->parents,
                .excludes = excludes,
                .add = j->inst->kind == OSSB_DF_ADD,
                .now = j->b->now,
                .what = j->what,
        };
        r = ossb_copy_run(&j->s->root, &req, &j->changes, err);
        ossb_dockerignore_free(excludes);
        return r;
}

static int copy_history(struct copy_job *j, char **written, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (ossb_strbuf_append(&sb, j->what) < 0)
                return -ENOMEM;
        /* BuildKit's history drops every flag */
        for (size_t i = 0; written && written[i]; i++)
                if (ossb_strbuf_appendf(&sb, " %s", written[i]) < 0)
                        return -ENOMEM;
        if (ossb_strbuf_appendf(&sb, " %s # buildkit", j->dest_written) < 0)
                return -ENOMEM;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

static int copy_prepare(struct copy_job *j, struct ossb_error **err)
{
        const struct ossb_df_inst *inst = j->inst;
        _cleanup_free_ char *dest = NULL;
        int r = ossb_expand(j->b, j->env, inst->dest, &dest, err);
        if (r < 0)
                return r;
        size_t dl = strlen(dest);
        j->dest_is_dir = dl == 0 || dest[dl - 1] == '/' || streq(dest, ".") ||
                         (dl >= 2 && streq(dest + dl - 2, "/."));
        const char *cwd = ossb_config_get_str(j->s->img, "WorkingDir");
        _cleanup_free_ char *joined = dest[0] == '/' ? strdup(dest) : ossb_path_join(cwd && *cwd ? cwd : "/", dest);
        if (!joined || !(j->dest = ossb_path_clean(joined)))
                return oom(err);
        j->dest_written = TAKE_PTR(dest);
        j->uid = j->gid = -1;
        if (inst->chown) {
                _cleanup_free_ char *spec = NULL;
                uid_t u;
                gid_t g;
                r = ossb_expand(j->b, j->env, inst->chown, &spec, err);
                if (r >= 0)
                        r = ossb_chown_parse(&j->s->root, spec, &u, &g, err);
                if (r < 0)
                        return r;
                j->uid = u;
                j->gid = g;
        }
        if (inst->chmod) {
                _cleanup_free_ char *spec = NULL;
                r = ossb_expand(j->b, j->env, inst->chmod, &spec, err);
                if (r >= 0)
                        r = ossb_chmod_parse(spec, &j->chmod, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int source_tree(struct copy_job *j, const struct ossb_tree **ret, bool *from_context, struct ossb_error **err)
{
        *ret = &j->b->context;
        *from_context = true;
        if (!j->inst->copy_from)
                return 0;
        _cleanup_free_ char *from = NULL;
        int r = ossb_expand(j->b, j->b->meta_env, j->inst->copy_from, &from, err);
        if (r < 0)
                return r;
        struct stage_state *src = ossb_find_stage(j->b, from);
        if (!src) {
                /* not a stage: an image, pulled once per build */
                r = ossb_image_source(j->b, from, ret, err);
                if (r < 0)
                        return r;
                *from_context = false;
                return 0;
        }
        if (src == j->s)
                return usage_error(err, "%s --from: a stage cannot copy from itself (`%s`)", j->what, from);
        *ret = &src->root;
        *from_context = false;
        return 0;
}

static int do_copy(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        struct copy_job j = { .b = b, .s = s, .inst = inst, .what = inst->kind == OSSB_DF_ADD ? "ADD" : "COPY" };
        _cleanup_strv_free_ char **local = NULL, **written = NULL;
        _cleanup_free_ char *msg = NULL;
        const struct ossb_tree *src = NULL;
        bool from_context = true;
        size_t n = ossb_strv_length(inst->sources);
        int r;

        j.env = ossb_stage_env(s);
        if (!j.env)
                return oom(err);
        char ckey[65] = "";
        bool hit = false;
        r = ossb_stepcache_copy_lookup(b, s, inst, ckey, &hit, err);
        if (r < 0 || hit) {
                ossb_strv_free(j.env);
                return r;
        }
        r = copy_prepare(&j, err);
        if (r >= 0)
                r = source_tree(&j, &src, &from_context, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct ossb_df_heredoc hw = { 0 };
                _cleanup_free_ char *w = NULL;
                int is_heredoc = inst->node ? ossb_df_heredoc_parse_word(inst->sources[i], &hw, err) : 0;
                if (is_heredoc < 0) {
                        r = is_heredoc;
                        break;
                }
                if (is_heredoc) {
                        r = copy_heredoc(&j, &hw, n, err);
                        ossb_df_heredoc_clear(&hw);
                        if (r >= 0 && ossb_strv_push(&written, inst->sources[i]) < 0)
                                r = oom(err);
                        continue;
                }
                r = ossb_expand(b, j.env, inst->sources[i], &w, err);
                if (r < 0)
                        break;
                if (ossb_strv_push(&written, w) < 0) {
                        r = oom(err);
                        break;
                }
                if (inst->kind == OSSB_DF_ADD && is_git(w))
                        r = ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTSUP, "ADD %s: git sources are not supported yet", w);
                else if (inst->kind == OSSB_DF_ADD && is_url(w) && !inst->copy_from)
                        r = copy_url(&j, w, n, err);
                else if (inst->checksum)
                        r = usage_error(err, "ADD --checksum is only supported for http(s) sources, not `%s`", w);
                else if (ossb_strv_push(&local, w) < 0)
                        r = oom(err);
        }
        if (r >= 0 && local) {
                /* several sources, or one written with a trailing slash, mean a directory destination */
                j.dest_is_dir |= n > 1;
                r = copy_from_tree(&j, local, src, from_context, err);
        }
        if (r >= 0 && copy_history(&j, written, &msg) < 0)
                r = oom(err);
        if (r >= 0)
                r = commit_layer(b, s, &j.changes, msg, err);
        if (r >= 0)
                ossb_stepcache_copy_store(b, s, ckey, msg);
        ossb_changes_clear(&j.changes);
        ossb_strv_free(j.env);
        free(j.dest);
        free(j.dest_written);
        return r;
}

/* --- entry ------------------------------------------------------------------------------- */

int ossb_dispatch(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        switch (inst->kind) {
        case OSSB_DF_ENV:
                return do_env_label(b, s, inst, false, err);
        case OSSB_DF_LABEL:
                return do_env_label(b, s, inst, true, err);
        case OSSB_DF_ARG:
                return do_arg(b, s, inst, err);
        case OSSB_DF_CMD:
        case OSSB_DF_ENTRYPOINT:
                return do_cmd_entrypoint(b, s, inst, err);
        case OSSB_DF_SHELL:
                return do_shell(b, s, inst, err);
        case OSSB_DF_HEALTHCHECK:
                return do_healthcheck(b, s, inst, err);
        case OSSB_DF_USER:
                return do_user(b, s, inst, err);
        case OSSB_DF_WORKDIR:
                return do_workdir(b, s, inst, err);
        case OSSB_DF_STOPSIGNAL:
                return do_stopsignal(b, s, inst, err);
        case OSSB_DF_EXPOSE:
                return do_expose(b, s, inst, err);
        case OSSB_DF_VOLUME:
                return do_volume(b, s, inst, err);
        case OSSB_DF_ONBUILD:
                return do_onbuild(b, s, inst, err);
        case OSSB_DF_MAINTAINER:
                return do_maintainer(b, s, inst, err);
        case OSSB_DF_COPY:
        case OSSB_DF_ADD:
                return do_copy(b, s, inst, err);
        case OSSB_DF_RUN:
                return ossb_run_step(b, s, inst, err);
        case OSSB_DF_FROM:
                break;
        }
        return ossb_error_set(err, -EINVAL, "unexpected instruction");
}
