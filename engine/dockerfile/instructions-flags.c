/* engine/dockerfile/instructions-flags.c - instruction flags and the value parsers the
 * instructions need: BuildKit's BFlags (bool/string/repeatable string flags, "unknown flag"
 * with a suggestion, duplicates, boolean values), Go's time.ParseDuration and
 * strconv.ParseInt(s, 10, 32), with the messages those produce.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "engine/dockerfile/parser-internal.h"

void df_flag_values_clear(struct df_flag_value *vals, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                ossb_strv_free(vals[i].values);
                vals[i] = (struct df_flag_value) { 0 };
        }
}

static int unknown_flag(const struct df_ctx *ctx, const char *flag_name, const struct df_flag_spec *spec, size_t n)
{
        const char *names[16];
        char buf[32];
        size_t k = 0;
        for (size_t i = 0; i < n && k < ELEMENTSOF(names); i++)
                names[k++] = spec[i].name;
        const char *m = df_suggest(flag_name + 2, names, k, true, buf, sizeof(buf));
        if (m)
                return df_fail(ctx, "unknown flag: %s (did you mean %s?)", flag_name, m);
        return df_fail(ctx, "unknown flag: %s", flag_name);
}

static int set_value(const struct df_ctx *ctx, const struct df_flag_spec *sp, struct df_flag_value *v,
                     const char *flag_name, const char *value)
{
        switch (sp->type) {
        case DF_FLAG_BOOL:
                if (value && !*value)
                        return df_fail(ctx, "missing a value on flag: %s", flag_name);
                if (!value || strcasecmp(value, "true") == 0)
                        v->on = true;
                else if (strcasecmp(value, "false") == 0)
                        v->on = false;
                else
                        return df_fail(ctx, "expecting boolean value for flag %s, not: %s", flag_name, value);
                return 0;
        case DF_FLAG_STRING:
                if (!value)
                        return df_fail(ctx, "missing a value on flag: %s", flag_name);
                v->value = value;
                return 0;
        default:
                if (!value)
                        return df_fail(ctx, "missing a value on flag: %s", flag_name);
                return df_strv_add(&v->values, &v->n_values, strdup(value)) < 0 ? df_oom(ctx->err) : 0;
        }
}

int df_flags_parse(const struct df_ctx *ctx, char *const *flags, const struct df_flag_spec *spec, size_t n,
                   struct df_flag_value *vals)
{
        for (size_t f = 0; flags && flags[f]; f++) {
                const char *a = flags[f];
                if (streq(a, "--"))
                        return 0;
                if (strncmp(a, "--", 2) != 0)
                        return df_fail(ctx, "arg should start with -- : %s", a);
                const char *eq = strchr(a, '=');
                size_t name_len = eq ? (size_t) (eq - a) : strlen(a);
                _cleanup_free_ char *flag_name = strndup(a, name_len);
                if (!flag_name)
                        return df_oom(ctx->err);
                size_t i = 0;
                while (i < n && !streq(spec[i].name, flag_name + 2))
                        i++;
                if (i == n)
                        return unknown_flag(ctx, flag_name, spec, n);
                if (vals[i].used && spec[i].type != DF_FLAG_STRINGS)
                        return df_fail(ctx, "duplicate flag specified: %s", flag_name);
                vals[i].used = true;
                int r = set_value(ctx, &spec[i], &vals[i], flag_name, eq ? eq + 1 : NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The time package's quote(): non-ASCII and control bytes as \xHH. */
static char *time_quote(const char *s)
{
        static const char hex[] = "0123456789abcdef";
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int r = ossb_strbuf_append_c(&sb, '"');
        for (const unsigned char *p = (const unsigned char *) s; r >= 0 && *p; p++) {
                if (*p >= 0x80 || *p < ' ') {
                        char e[4] = { '\\', 'x', hex[*p >> 4], hex[*p & 0xF] };
                        r = ossb_strbuf_append_n(&sb, e, 4);
                        continue;
                }
                if (*p == '"' || *p == '\\')
                        r = ossb_strbuf_append_c(&sb, '\\');
                if (r >= 0)
                        r = ossb_strbuf_append_c(&sb, (char) *p);
        }
        if (r >= 0)
                r = ossb_strbuf_append_c(&sb, '"');
        return r < 0 ? NULL : ossb_strbuf_steal(&sb);
}

static int duration_fail(char **ret_msg, const char *what, const char *unit, const char *orig)
{
        _cleanup_free_ char *qo = time_quote(orig), *qu = unit ? time_quote(unit) : NULL;
        if (!qo || (unit && !qu))
                return -ENOMEM;
        int r = unit ? asprintf(ret_msg, "time: unknown unit %s in duration %s", qu, qo)
                     : asprintf(ret_msg, "time: %s %s", what, qo);
        return r < 0 ? -ENOMEM : -EINVAL;
}

static long long unit_ns(const char *u, size_t n)
{
        static const struct {
                const char *name;
                long long ns;
        } units[] = {
                { "ns", 1 },         { "us", 1000 },           { "\xC2\xB5s", 1000 }, { "\xCE\xBCs", 1000 },
                { "ms", 1000000 },   { "s", 1000000000LL },    { "m", 60000000000LL }, { "h", 3600000000000LL },
        };
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
                        return units[i].ns;
        return 0;
}

/* One "<number><unit>" element of a duration; adds its nanoseconds to *d. */
static int duration_element(const char **sp, const char *orig, unsigned long long *d, char **ret_msg)
{
        const char *s = *sp;
        unsigned long long v = 0, f = 0;
        double scale = 1;
        bool pre = false, post = false, f_overflow = false;
        const unsigned long long limit = 1ULL << 63;

        if (!(*s == '.' || (*s >= '0' && *s <= '9')))
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        for (; *s >= '0' && *s <= '9'; s++, pre = true) {
                if (v > limit / 10)
                        return duration_fail(ret_msg, "invalid duration", NULL, orig);
                v = v * 10 + (unsigned) (*s - '0');
                if (v > limit)
                        return duration_fail(ret_msg, "invalid duration", NULL, orig);
        }
        if (*s == '.') {
                for (s++; *s >= '0' && *s <= '9'; s++, post = true) {
                        if (f_overflow)
                                continue;
                        if (f > (limit - 1) / 10) {
                                f_overflow = true;
                                continue;
                        }
                        unsigned long long y = f * 10 + (unsigned) (*s - '0');
                        if (y > limit) {
                                f_overflow = true;
                                continue;
                        }
                        f = y;
                        scale *= 10;
                }
        }
        if (!pre && !post)
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        size_t i = 0;
        while (s[i] && s[i] != '.' && !(s[i] >= '0' && s[i] <= '9'))
                i++;
        if (i == 0)
                return duration_fail(ret_msg, "missing unit in duration", NULL, orig);
        long long unit = unit_ns(s, i);
        if (unit == 0) {
                _cleanup_free_ char *u = strndup(s, i);
                return u ? duration_fail(ret_msg, NULL, u, orig) : -ENOMEM;
        }
        if (v > limit / (unsigned long long) unit)
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        v *= (unsigned long long) unit;
        if (f > 0) {
                v += (unsigned long long) ((double) f * ((double) unit / scale));
                if (v > limit)
                        return duration_fail(ret_msg, "invalid duration", NULL, orig);
        }
        *d += v;
        if (*d > limit)
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        *sp = s + i;
        return 0;
}

int df_parse_duration(const char *orig, long long *ret_ns, char **ret_msg)
{
        const char *s = orig;
        unsigned long long d = 0;
        bool neg = false;

        if (*s == '-' || *s == '+')
                neg = *s++ == '-';
        if (streq(s, "0")) {
                *ret_ns = 0;
                return 0;
        }
        if (!*s)
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        while (*s) {
                int r = duration_element(&s, orig, &d, ret_msg);
                if (r < 0)
                        return r;
        }
        if (!neg && d > (1ULL << 63) - 1)
                return duration_fail(ret_msg, "invalid duration", NULL, orig);
        *ret_ns = neg ? (long long) (0 - d) : (long long) d;
        return 0;
}

int df_parse_int32(const char *s, long *ret, char **ret_msg)
{
        const char *p = s;
        bool neg = false, range = false;
        unsigned long long v = 0;

        /* strconv.ParseUint(s, 10, 32) stops at the first overflow, before looking further */
        if (*p == '+' || *p == '-')
                neg = *p++ == '-';
        if (!*p)
                goto fail;
        for (; *p; p++) {
                if (*p < '0' || *p > '9')
                        goto fail;
                v = v * 10 + (unsigned) (*p - '0');
                if (v > 0xFFFFFFFFULL) {
                        range = true;
                        goto fail;
                }
        }
        if ((!neg && v >= 2147483648ULL) || (neg && v > 2147483648ULL)) {
                range = true;
                goto fail;
        }
        *ret = neg ? (long) -(long long) v : (long) v;
        return 0;
fail:;
        _cleanup_free_ char *q = df_go_quoted(s);
        if (!q || asprintf(ret_msg, "strconv.ParseInt: parsing %s: %s", q,
                           range ? "value out of range" : "invalid syntax") < 0)
                return -ENOMEM;
        return range ? -ERANGE : -EINVAL;
}
