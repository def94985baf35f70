/* engine/imageconfig.c - see imageconfig.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <stdlib.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "engine/imageconfig.h"

json_object *ossb_config_new(const struct ossb_platform_spec *p)
{
        json_object *img = json_object_new_object();
        if (!img)
                return NULL;
        json_object_object_add(img, "architecture", json_object_new_string(p->architecture));
        json_object_object_add(img, "os", json_object_new_string(p->os));
        if (p->variant[0])
                json_object_object_add(img, "variant", json_object_new_string(p->variant));
        json_object *cfg = json_object_new_object();
        json_object_object_add(img, "config", cfg);
        json_object *rootfs = json_object_new_object();
        json_object_object_add(rootfs, "type", json_object_new_string("layers"));
        json_object_object_add(rootfs, "diff_ids", json_object_new_array());
        json_object_object_add(img, "rootfs", rootfs);
        return img;
}

json_object *ossb_config_container(json_object *img)
{
        json_object *cfg = NULL;
        if (json_object_object_get_ex(img, "config", &cfg) && json_object_is_type(cfg, json_type_object))
                return cfg;
        cfg = json_object_new_object();
        if (!cfg)
                return NULL;
        json_object_object_add(img, "config", cfg);
        return cfg;
}

int ossb_config_get_strv(json_object *img, const char *field, char ***ret)
{
        json_object *cfg = ossb_config_container(img), *a = NULL;
        *ret = NULL;
        if (!cfg)
                return -ENOMEM;
        if (!json_object_object_get_ex(cfg, field, &a) || !json_object_is_type(a, json_type_array))
                return 0;
        char **v = ossb_strv_new_empty();
        if (!v)
                return -ENOMEM;
        size_t n = json_object_array_length(a);
        for (size_t i = 0; i < n; i++) {
                const char *s = json_object_get_string(json_object_array_get_idx(a, i));
                if (ossb_strv_push(&v, s ? s : "") < 0) {
                        ossb_strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

int ossb_config_set_strv(json_object *img, const char *field, char *const *v)
{
        json_object *cfg = ossb_config_container(img);
        if (!cfg)
                return -ENOMEM;
        if (!v) {
                /* Go's omitempty: an unset list is absent, not null */
                json_object_object_del(cfg, field);
                return 0;
        }
        json_object *a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; v[i]; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        json_object_object_add(cfg, field, a);
        return 0;
}

const char *ossb_config_get_str(json_object *img, const char *field)
{
        json_object *cfg = ossb_config_container(img), *s = NULL;
        if (!cfg || !json_object_object_get_ex(cfg, field, &s) || !json_object_is_type(s, json_type_string))
                return NULL;
        return json_object_get_string(s);
}

int ossb_config_set_str(json_object *img, const char *field, const char *v)
{
        json_object *cfg = ossb_config_container(img);
        if (!cfg)
                return -ENOMEM;
        json_object_object_add(cfg, field, v ? json_object_new_string(v) : NULL);
        return 0;
}

int ossb_config_set_json(json_object *img, const char *field, json_object *v)
{
        json_object *cfg = ossb_config_container(img);
        if (!cfg) {
                json_object_put(v);
                return -ENOMEM;
        }
        json_object_object_add(cfg, field, v);
        return 0;
}

int ossb_config_env_set(json_object *img, const char *name, const char *value)
{
        json_object *cfg = ossb_config_container(img), *env = NULL;
        _cleanup_free_ char *kv = NULL;
        if (!cfg || asprintf(&kv, "%s=%s", name, value) < 0)
                return -ENOMEM;
        if (!json_object_object_get_ex(cfg, "Env", &env) || !json_object_is_type(env, json_type_array)) {
                env = json_object_new_array();
                if (!env)
                        return -ENOMEM;
                json_object_object_add(cfg, "Env", env);
        }
        size_t nl = strlen(name), n = json_object_array_length(env);
        for (size_t i = 0; i < n; i++) {
                const char *e = json_object_get_string(json_object_array_get_idx(env, i));
                if (e && strncmp(e, name, nl) == 0 && e[nl] == '=')
                        return json_object_array_put_idx(env, i, json_object_new_string(kv)) < 0 ? -ENOMEM : 0;
        }
        return json_object_array_add(env, json_object_new_string(kv)) < 0 ? -ENOMEM : 0;
}

static json_object *sub_object(json_object *cfg, const char *field)
{
        json_object *o = NULL;
        if (json_object_object_get_ex(cfg, field, &o) && json_object_is_type(o, json_type_object))
                return o;
        o = json_object_new_object();
        if (o)
                json_object_object_add(cfg, field, o);
        return o;
}

int ossb_config_set_add(json_object *img, const char *field, const char *key)
{
        json_object *cfg = ossb_config_container(img);
        json_object *o = cfg ? sub_object(cfg, field) : NULL;
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, key, json_object_new_object());
        return 0;
}

int ossb_config_label_set(json_object *img, const char *key, const char *value)
{
        json_object *cfg = ossb_config_container(img);
        json_object *o = cfg ? sub_object(cfg, "Labels") : NULL;
        if (!o)
                return -ENOMEM;
        json_object_object_add(o, key, json_object_new_string(value));
        return 0;
}

int ossb_config_add_history(json_object *img, const char *created, const char *created_by, bool empty_layer)
{
        json_object *h = NULL;
        if (!json_object_object_get_ex(img, "history", &h) || !json_object_is_type(h, json_type_array)) {
                h = json_object_new_array();
                if (!h)
                        return -ENOMEM;
                json_object_object_add(img, "history", h);
        }
        json_object *e = json_object_new_object();
        if (!e)
                return -ENOMEM;
        if (created)
                json_object_object_add(e, "created", json_object_new_string(created));
        json_object_object_add(e, "created_by", json_object_new_string(created_by));
        json_object_object_add(e, "comment", json_object_new_string("buildkit.dockerfile.v0"));
        if (empty_layer)
                json_object_object_add(e, "empty_layer", json_object_new_boolean(1));
        return json_object_array_add(h, e) < 0 ? -ENOMEM : 0;
}

int ossb_config_add_diff_id(json_object *img, const char *diff_id)
{
        json_object *rootfs = NULL, *ids = NULL;
        if (!json_object_object_get_ex(img, "rootfs", &rootfs) || !json_object_is_type(rootfs, json_type_object)) {
                rootfs = json_object_new_object();
                if (!rootfs)
                        return -ENOMEM;
                json_object_object_add(rootfs, "type", json_object_new_string("layers"));
                json_object_object_add(img, "rootfs", rootfs);
        }
        if (!json_object_object_get_ex(rootfs, "diff_ids", &ids) || !json_object_is_type(ids, json_type_array)) {
                ids = json_object_new_array();
                if (!ids)
                        return -ENOMEM;
                json_object_object_add(rootfs, "diff_ids", ids);
        }
        return json_object_array_add(ids, json_object_new_string(diff_id)) < 0 ? -ENOMEM : 0;
}

int ossb_config_set_created(json_object *img, const char *created)
{
        json_object_object_add(img, "created", json_object_new_string(created));
        return 0;
}

json_object *ossb_config_copy(json_object *img)
{
        json_object *c = NULL;
        if (json_object_deep_copy(img, &c, NULL) < 0)
                return NULL;
        return c;
}

void ossb_format_time(int64_t sec, long nsec, char *buf, size_t size)
{
        struct tm tm;
        time_t t = (time_t) sec;
        char frac[32] = "";
        gmtime_r(&t, &tm);
        if (nsec > 0) {
                snprintf(frac, sizeof(frac), ".%09ld", nsec);
                size_t l = strlen(frac);
                while (l > 1 && frac[l - 1] == '0')
                        frac[--l] = '\0';
        }
        char base[32];
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s%sZ", base, frac);
}

/* Move `key` (if present) from `from` to the end of `to`. */
static void move_key(json_object *from, json_object *to, const char *key)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(from, key, &v))
                return;
        json_object_object_add(to, key, json_object_get(v));
        json_object_object_del(from, key);
}

static int cmp_keys(const void *a, const void *b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Rebuild an object with its keys sorted (Go marshals maps with sorted keys). */
static json_object *sorted_object(json_object *o)
{
        size_t n = (size_t) json_object_object_length(o), i = 0;
        const char **keys = calloc(n + 1, sizeof(char *));
        json_object *s = json_object_new_object();
        if (!keys || !s) {
                free(keys);
                json_object_put(s);
                return NULL;
        }
        json_object_object_foreach(o, k, v)
        {
                (void) v;
                keys[i++] = k;
        }
        qsort(keys, n, sizeof(char *), cmp_keys);
        for (i = 0; i < n; i++) {
                json_object *val = NULL;
                json_object_object_get_ex(o, keys[i], &val);
                json_object_object_add(s, keys[i], json_object_get(val));
        }
        free(keys);
        return s;
}

int ossb_config_finalize(json_object **img)
{
        static const char *const top[] = { "architecture", "author", "config", "created", "history", "os",
                                           "os.version", "os.features", "variant", "rootfs" };
        static const char *const cfg_keys[] = { "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                                                "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce",
                                                "Env", "Entrypoint", "Cmd", "Image", "Volumes",
                                                "WorkingDir", "Labels", "StopSignal", "Healthcheck", "ArgsEscaped",
                                                "OnBuild", "Shell" };
        static const char *const sorted[] = { "ExposedPorts", "Volumes", "Labels" };
        json_object *old = *img, *n = json_object_new_object(), *cfg = NULL, *ncfg = json_object_new_object();
        if (!n || !ncfg) {
                json_object_put(n);
                json_object_put(ncfg);
                return -ENOMEM;
        }
        if (json_object_object_get_ex(old, "config", &cfg) && json_object_is_type(cfg, json_type_object)) {
                for (size_t i = 0; i < ELEMENTSOF(sorted); i++) {
                        json_object *o = NULL;
                        if (json_object_object_get_ex(cfg, sorted[i], &o) && json_object_is_type(o, json_type_object)) {
                                json_object *s = sorted_object(o);
                                if (!s)
                                        goto oom;
                                json_object_object_add(cfg, sorted[i], s);
                        }
                }
                if (!json_object_object_get_ex(cfg, "OnBuild", NULL))
                        json_object_object_add(cfg, "OnBuild", NULL);
                for (size_t i = 0; i < ELEMENTSOF(cfg_keys); i++)
                        move_key(cfg, ncfg, cfg_keys[i]);
                json_object_object_foreach(cfg, k, v) json_object_object_add(ncfg, k, json_object_get(v));
                json_object_object_add(old, "config", ncfg);
        } else {
                json_object_put(ncfg);
        }
        for (size_t i = 0; i < ELEMENTSOF(top); i++)
                move_key(old, n, top[i]);
        json_object_object_foreach(old, k2, v2) json_object_object_add(n, k2, json_object_get(v2));
        json_object_put(old);
        *img = n;
        return 0;
oom:
        json_object_put(n);
        json_object_put(ncfg);
        return -ENOMEM;
}
