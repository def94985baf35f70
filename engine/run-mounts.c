/* engine/run-mounts.c - parsing RUN --mount values and --secret values (see run-mounts.h for
 * the rules, which are BuildKit's and buildx's).
 *
 * Owns: struct ossb_run_mount and struct ossb_secret_spec values it fills.  Pure parsing: no
 * file system access, nothing logged (a secret's source may be named in an error, its content
 * is never seen here).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "engine/run-mounts.h"

#define usage_error(err, ...) ossb_error_setx((err), OSSB_EXIT_USAGE, -EINVAL, __VA_ARGS__)

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

/* ---- CSV (one record, Go's encoding/csv rules without LazyQuotes) ---- */

static int csv_quoted(const char **pp, const char *end, struct ossb_strbuf *f, struct ossb_error **err)
{
        const char *p = *pp + 1; /* past the opening quote */
        for (;;) {
                const char *q = memchr(p, '"', (size_t) (end - p));
                if (!q)
                        return usage_error(err, "extraneous or missing \" in quoted-field");
                if (ossb_strbuf_append_n(f, p, (size_t) (q - p)) < 0)
                        return oom(err);
                p = q + 1;
                if (p < end && *p == '"') { /* "" is one quote */
                        if (ossb_strbuf_append_c(f, '"') < 0)
                                return oom(err);
                        p++;
                        continue;
                }
                if (p < end && *p != ',')
                        return usage_error(err, "extraneous or missing \" in quoted-field");
                *pp = p;
                return 0;
        }
}

int ossb_csv_fields(const char *line, char ***ret, struct ossb_error **err)
{
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
                n -= (n > 1 && line[n - 2] == '\r') ? 2 : 1;
        if (n == 0)
                return usage_error(err, "EOF");
        const char *p = line, *end = line + n;
        _cleanup_strv_free_ char **v = ossb_strv_new_empty();
        if (!v)
                return oom(err);
        for (;;) {
                _cleanup_strbuf_ struct ossb_strbuf f = OSSB_STRBUF_INIT;
                if (p < end && *p == '"') {
                        int r = csv_quoted(&p, end, &f, err);
                        if (r < 0)
                                return r;
                } else {
                        const char *comma = memchr(p, ',', (size_t) (end - p));
                        const char *fe = comma ? comma : end;
                        if (memchr(p, '"', (size_t) (fe - p)))
                                return usage_error(err, "bare \" in non-quoted-field");
                        if (ossb_strbuf_append_n(&f, p, (size_t) (fe - p)) < 0)
                                return oom(err);
                        p = fe;
                }
                char *s = ossb_strbuf_steal(&f);
                if (!s && !(s = strdup("")))
                        return oom(err);
                if (ossb_strv_consume(&v, s) < 0)
                        return oom(err);
                if (p >= end)
                        break;
                p++; /* the comma: a record ending in one has an empty last field */
        }
        *ret = TAKE_PTR(v);
        return 0;
}

/* ---- Go's strconv and Docker's units ---- */

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (streq(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (streq(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

/* strconv.ParseUint(s, base, 32) for base 8 or 10. */
static int parse_u32(const char *s, unsigned base, uint32_t *ret)
{
        uint64_t v = 0;
        if (!*s)
                return -EINVAL;
        for (const char *c = s; *c; c++) {
                unsigned d = (unsigned) (*c - '0');
                if (*c < '0' || d >= base)
                        return -EINVAL;
                v = v * base + d;
                if (v > UINT32_MAX)
                        return -ERANGE;
        }
        *ret = (uint32_t) v;
        return 0;
}

int ossb_parse_ram_size(const char *s, int64_t *ret)
{
        /* ^(\d+(\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$, the number read as Go's ParseFloat
         * (correctly rounded: strtod on exactly those characters) */
        const char *p = s;
        if (!isdigit((unsigned char) *p))
                return -EINVAL;
        while (isdigit((unsigned char) *p))
                p++;
        if (*p == '.') {
                if (!isdigit((unsigned char) *++p))
                        return -EINVAL;
                while (isdigit((unsigned char) *p))
                        p++;
        }
        size_t n = (size_t) (p - s);
        _cleanup_free_ char *num = strndup(s, n);
        if (!num)
                return -ENOMEM;
        char *end = NULL;
        errno = 0;
        double v = strtod(num, &end);
        if (end != num + n || errno)
                return errno == ERANGE ? -ERANGE : -EINVAL;
        if (*p == ' ')
                p++;
        const char *units = "kmgtp", *u = *p ? strchr(units, tolower((unsigned char) *p)) : NULL;
        if (u) {
                for (const char *k = units; k <= u; k++)
                        v *= 1024;
                p++;
        }
        if (*p == 'i' || *p == 'I')
                p++;
        if (*p == 'b' || *p == 'B')
                p++;
        if (*p)
                return -EINVAL;
        if (v >= 9223372036854775807.0)
                return -ERANGE;
        *ret = (int64_t) v;
        return 0;
}

/* ---- --mount ---- */

const char *ossb_run_mount_type_name(enum ossb_mount_type t)
{
        static const char *const names[] = { "bind", "cache", "tmpfs", "secret", "ssh" };
        return (unsigned) t < ELEMENTSOF(names) ? names[t] : "?";
}

void ossb_run_mount_clear(struct ossb_run_mount *m)
{
        if (!m)
                return;
        free(m->target);
        free(m->source);
        free(m->from);
        free(m->id);
        free(m->env);
        *m = (struct ossb_run_mount) { 0 };
}

static void set_str(char **slot, char **value)
{
        free(*slot);
        *slot = TAKE_PTR(*value);
}

static bool file_info_allowed(enum ossb_mount_type t)
{
        return t == OSSB_MOUNT_SECRET || t == OSSB_MOUNT_SSH || t == OSSB_MOUNT_CACHE;
}

/* A field without '=': only the boolean flags. */
static int parse_flag(struct ossb_run_mount *m, const char *field, const char *key, bool *ro_auto,
                      struct ossb_error **err)
{
        if (streq(key, "readonly") || streq(key, "ro") || streq(key, "readwrite") || streq(key, "rw")) {
                m->readonly = streq(key, "readonly") || streq(key, "ro");
                *ro_auto = false;
                return 0;
        }
        if (streq(key, "required")) {
                if (m->type != OSSB_MOUNT_SECRET && m->type != OSSB_MOUNT_SSH)
                        return usage_error(err, "unexpected key '%s' for mount type '%s'", key, ossb_run_mount_type_name(m->type));
                m->required = true;
                return 0;
        }
        return usage_error(err, "invalid field '%s' must be a key=value pair", field);
}

static int parse_type(struct ossb_run_mount *m, const char *value, struct ossb_error **err)
{
        static const enum ossb_mount_type all[] = { OSSB_MOUNT_BIND, OSSB_MOUNT_CACHE, OSSB_MOUNT_TMPFS,
                                                    OSSB_MOUNT_SECRET, OSSB_MOUNT_SSH };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                if (strcasecmp(value, ossb_run_mount_type_name(all[i])) == 0) {
                        m->type = all[i];
                        return 0;
                }
        return usage_error(err, "unsupported mount type \"%s\" (bind, cache, tmpfs, secret or ssh)", value);
}

static int parse_sharing(struct ossb_run_mount *m, const char *value, struct ossb_error **err)
{
        static const char *const names[] = { "shared", "private", "locked" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(value, names[i]) == 0) {
                        m->sharing = (enum ossb_mount_sharing) (OSSB_SHARING_SHARED + i);
                        return 0;
                }
        return usage_error(err, "unsupported sharing value \"%s\" (shared, private or locked)", value);
}

static int parse_numeric(struct ossb_run_mount *m, const char *key, const char *value, struct ossb_error **err)
{
        uint32_t v;
        if (streq(key, "mode")) {
                if (parse_u32(value, 8, &v) < 0)
                        return usage_error(err, "invalid value %s for mode", value);
                m->mode = v;
                m->mode_set = true;
                return 0;
        }
        if (parse_u32(value, 10, &v) < 0)
                return usage_error(err, "invalid value %s for %s", value, key);
        if (streq(key, "uid")) {
                m->uid = v;
                m->uid_set = true;
        } else {
                m->gid = v;
                m->gid_set = true;
        }
        return 0;
}

static int parse_bool_key(struct ossb_run_mount *m, const char *key, const char *value, bool *ro_auto,
                          struct ossb_error **err)
{
        bool b;
        if (parse_bool(value, &b) < 0)
                return usage_error(err, "invalid value for %s: %s", key, value);
        if (streq(key, "required")) {
                if (m->type != OSSB_MOUNT_SECRET && m->type != OSSB_MOUNT_SSH)
                        return usage_error(err, "unexpected key '%s' for mount type '%s'", key, ossb_run_mount_type_name(m->type));
                m->required = b;
                return 0;
        }
        m->readonly = (streq(key, "readonly") || streq(key, "ro")) ? b : !b;
        *ro_auto = false;
        return 0;
}

/* key=value, value already expanded (owned by the caller until taken). */
static int parse_kv(struct ossb_run_mount *m, const char *field, const char *key, char **value, bool *ro_auto,
                    struct ossb_error **err)
{
        const char *v = *value;
        if (streq(key, "type"))
                return parse_type(m, v, err);
        if (streq(key, "from"))
                set_str(&m->from, value);
        else if (streq(key, "source") || streq(key, "src"))
                set_str(&m->source, value);
        else if (streq(key, "target") || streq(key, "dst") || streq(key, "destination"))
                set_str(&m->target, value);
        else if (streq(key, "id"))
                set_str(&m->id, value);
        else if (streq(key, "env"))
                set_str(&m->env, value);
        else if (streq(key, "readonly") || streq(key, "ro") || streq(key, "readwrite") || streq(key, "rw") ||
                 streq(key, "required"))
                return parse_bool_key(m, key, v, ro_auto, err);
        else if (streq(key, "sharing"))
                return parse_sharing(m, v, err);
        else if (streq(key, "mode") || streq(key, "uid") || streq(key, "gid"))
                return parse_numeric(m, key, v, err);
        else if (streq(key, "size")) {
                if (m->type != OSSB_MOUNT_TMPFS)
                        return usage_error(err, "unexpected key '%s' for mount type '%s'", key, ossb_run_mount_type_name(m->type));
                if (ossb_parse_ram_size(v, &m->size) < 0)
                        return usage_error(err, "invalid value for %s: %s", key, v);
        } else
                return usage_error(err, "unexpected key '%s' in '%s' (type, from, source, target, readonly, id, sharing, "
                                  "required, size, mode, uid, gid, src, dst, destination, ro, rw, readwrite, env)",
                             key, field);
        return 0;
}

static int parse_field(struct ossb_run_mount *m, const char *field, ossb_run_mount_expand_fn expand, void *userdata,
                       bool *ro_auto, struct ossb_error **err)
{
        const char *eq = strchr(field, '=');
        _cleanup_free_ char *key = strndup(field, eq ? (size_t) (eq - field) : strlen(field));
        if (!key)
                return oom(err);
        for (char *c = key; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        if (!eq)
                return parse_flag(m, field, key, ro_auto, err);
        const char *raw = eq + 1;
        if (streq(key, "from")) {
                const char *dollar = strchr(raw, '$');
                if (dollar && dollar[1])
                        return usage_error(err, "'%s' doesn't support variable expansion, define alias stage instead", key);
        }
        _cleanup_free_ char *value = NULL;
        if (expand) {
                int r = expand(userdata, raw, &value, err);
                if (r < 0)
                        return r;
        } else if (!(value = strdup(raw)))
                return oom(err);
        return parse_kv(m, field, key, &value, ro_auto, err);
}

static int validate(struct ossb_run_mount *m, bool ro_auto, struct ossb_error **err)
{
        const char *t = ossb_run_mount_type_name(m->type);
        if (!file_info_allowed(m->type)) {
                if (m->mode_set)
                        return usage_error(err, "mode not allowed for \"%s\" type mounts", t);
                if (m->uid_set)
                        return usage_error(err, "uid not allowed for \"%s\" type mounts", t);
                if (m->gid_set)
                        return usage_error(err, "gid not allowed for \"%s\" type mounts", t);
        }
        if (ro_auto)
                m->readonly = !(m->type == OSSB_MOUNT_CACHE || m->type == OSSB_MOUNT_TMPFS);
        if (m->type == OSSB_MOUNT_SECRET) {
                if (m->from && *m->from)
                        return usage_error(err, "secret mount should not have a from");
                if (m->sharing != OSSB_SHARING_UNSET)
                        return usage_error(err, "secret mount should not define sharing");
                bool src = m->source && *m->source, tgt = m->target && *m->target, id = m->id && *m->id;
                if (!src && !tgt && !id)
                        return usage_error(err, "invalid secret mount. one of source, target required");
                if (src && id)
                        return usage_error(err, "both source and id can't be set");
        }
        if (m->sharing != OSSB_SHARING_UNSET && m->type != OSSB_MOUNT_CACHE)
                return usage_error(err, "invalid cache sharing set for %s mount", t);
        return 0;
}

int ossb_run_mount_parse(const char *spec, ossb_run_mount_expand_fn expand, void *userdata,
                         struct ossb_run_mount *ret, struct ossb_error **err)
{
        _cleanup_strv_free_ char **fields = NULL;
        int r = ossb_csv_fields(spec, &fields, err);
        if (r < 0)
                return ossb_error_wrap(err, "failed to parse csv mounts");
        struct ossb_run_mount m = { .type = OSSB_MOUNT_BIND };
        bool ro_auto = true;
        for (size_t i = 0; r >= 0 && fields[i]; i++)
                r = parse_field(&m, fields[i], expand, userdata, &ro_auto, err);
        if (r >= 0)
                r = validate(&m, ro_auto, err);
        if (r < 0) {
                ossb_run_mount_clear(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int ossb_run_mounts_from_names(char *const *specs, char ***ret)
{
        _cleanup_strv_free_ char **v = ossb_strv_new_empty();
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; specs && specs[i]; i++) {
                struct ossb_run_mount m;
                struct ossb_error *e = NULL;
                if (ossb_run_mount_parse(specs[i], NULL, NULL, &m, &e) < 0) {
                        bool nomem = e && e->code == -ENOMEM;
                        ossb_error_free(e);
                        if (nomem)
                                return -ENOMEM;
                        continue;
                }
                int r = m.from && *m.from && !ossb_strv_contains(v, m.from) ? ossb_strv_push(&v, m.from) : 0;
                ossb_run_mount_clear(&m);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

/* ---- --secret ---- */

void ossb_secret_spec_clear(struct ossb_secret_spec *s)
{
        if (!s)
                return;
        free(s->id);
        free(s->file);
        free(s->env);
        *s = (struct ossb_secret_spec) { 0 };
}

static int secret_field(struct ossb_secret_spec *s, const char *field, const char **type, struct ossb_error **err)
{
        const char *eq = strchr(field, '=');
        if (!eq)
                return usage_error(err, "invalid field '%s' must be a key=value pair", field);
        _cleanup_free_ char *key = strndup(field, (size_t) (eq - field)), *value = strdup(eq + 1);
        if (!key || !value)
                return oom(err);
        for (char *c = key; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        if (streq(key, "type")) {
                if (!streq(value, "file") && !streq(value, "env"))
                        return usage_error(err, "unsupported secret type \"%s\" (file or env)", value);
                *type = streq(value, "file") ? "file" : "env";
        } else if (streq(key, "id"))
                set_str(&s->id, &value);
        else if (streq(key, "source") || streq(key, "src"))
                set_str(&s->file, &value);
        else if (streq(key, "env"))
                set_str(&s->env, &value);
        else
                return usage_error(err, "unexpected key '%s' in '%s' (id, src, source, env, type)", key, field);
        return 0;
}

static int secret_finish(struct ossb_secret_spec *s, const char *type, struct ossb_error **err)
{
        if (s->file && !*s->file)
                free(TAKE_PTR(s->file));
        if (s->env && !*s->env)
                free(TAKE_PTR(s->env));
        if (type && streq(type, "env") && !s->env) {
                s->env = TAKE_PTR(s->file);
        }
        if (!s->id || !*s->id)
                return usage_error(err, "secret missing ID (id=NAME)");
        if (s->file && s->env)
                return usage_error(err, "secret `%s`: give either src= (a file) or env= (a variable), not both", s->id);
        if (!s->file && !s->env) {
                /* as BuildKit's secrets provider: the variable ID when set, else the file ID */
                char **slot = secure_getenv(s->id) ? &s->env : &s->file;
                if (!(*slot = strdup(s->id)))
                        return oom(err);
        }
        return 0;
}

int ossb_secret_spec_parse(const char *spec, struct ossb_secret_spec *ret, struct ossb_error **err)
{
        _cleanup_strv_free_ char **fields = NULL;
        int r = ossb_csv_fields(spec, &fields, err);
        if (r < 0)
                return ossb_error_wrap(err, "failed to parse csv secret");
        struct ossb_secret_spec s = { 0 };
        const char *type = NULL;
        for (size_t i = 0; r >= 0 && fields[i]; i++)
                r = secret_field(&s, fields[i], &type, err);
        if (r >= 0)
                r = secret_finish(&s, type, err);
        if (r < 0) {
                ossb_secret_spec_clear(&s);
                return r;
        }
        *ret = s;
        return 0;
}
