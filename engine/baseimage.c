/* engine/baseimage.c - images from registries in a build: FROM <image>, COPY --from=<image>,
 * and pushing the result.  The registry client is created on first use and shared by the
 * whole build; transfers are shown through the build's progress mode. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "registry/pull.h"
#include "registry/push.h"
#include "registry/reference.h"

const struct ossb_regconf *ossb_build_regconf(struct build *b)
{
        return b->opts->regconf ? b->opts->regconf : b->own_regconf;
}

static int registry(struct build *b, struct ossb_registry **ret, struct ossb_error **err)
{
        if (b->reg) {
                *ret = b->reg;
                return 0;
        }
        const struct ossb_regconf *conf = b->opts->regconf;
        if (!conf) {
                int r = ossb_regconf_new(NULL, NULL, NULL, NULL, &b->own_regconf, err);
                if (r < 0)
                        return r;
                conf = b->own_regconf;
        }
        ossb_transfer_display_init(&b->display, ossb_progress_display_mode(b->progress.mode));
        struct ossb_registry_opts o = {
                .conf = conf,
                .auth_file = b->opts->registry_auth_file,
                .progress = ossb_transfer_display_event,
                .progress_userdata = &b->display,
        };
        int r = ossb_registry_new(&o, &b->reg, err);
        if (r < 0)
                return r;
        *ret = b->reg;
        return 0;
}

static void to_platform(const struct ossb_platform_spec *s, struct ossb_platform *p)
{
        memset(p, 0, sizeof(*p));
        snprintf(p->os, sizeof(p->os), "%s", s->os);
        snprintf(p->architecture, sizeof(p->architecture), "%s", s->architecture);
        snprintf(p->variant, sizeof(p->variant), "%s", s->variant);
}

/* The base config as BuildKit carries it on: the image-spec fields and, inside "config", the
 * fields of the OCI/Docker image config it models; runtime leftovers of Docker-built images
 * (container_config, docker_version, Hostname, ...) are dropped. */
static json_object *inherit_config(json_object *base)
{
        static const char *const top[] = { "architecture", "author", "config", "created", "history", "os",
                                           "os.version", "os.features", "variant", "rootfs" };
        static const char *const cfg[] = { "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                                           "Labels", "StopSignal", "Healthcheck", "ArgsEscaped", "OnBuild", "Shell" };
        json_object *img = json_object_new_object(), *v = NULL;
        if (!img)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(top); i++)
                if (json_object_object_get_ex(base, top[i], &v) && !streq(top[i], "config"))
                        json_object_object_add(img, top[i], json_object_get(v));
        json_object *c = json_object_new_object(), *bc = NULL;
        if (!c) {
                json_object_put(img);
                return NULL;
        }
        if (json_object_object_get_ex(base, "config", &bc) && json_object_is_type(bc, json_type_object))
                for (size_t i = 0; i < ELEMENTSOF(cfg); i++)
                        if (json_object_object_get_ex(bc, cfg[i], &v) && v)
                                json_object_object_add(c, cfg[i], json_object_get(v));
        json_object_object_add(img, "config", c);
        json_object *copy = ossb_config_copy(img);
        json_object_put(img);
        return copy;
}

/* Layers keep their digests; Docker media types become the OCI ones (the manifest ossb writes
 * is an OCI manifest, as BuildKit's OCI exporter converts them). */
static int take_layers(struct stage_state *s, const struct ossb_manifest *m, struct ossb_error **err)
{
        s->layers = calloc(m->n_layers + 1, sizeof(*s->layers));
        if (!s->layers)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < m->n_layers; i++) {
                const struct ossb_descriptor *d = &m->layers[i];
                const char *mt = d->media_type;
                if (streq(mt, OSSB_MT_DOCKER_LAYER_GZIP))
                        mt = OSSB_MT_OCI_LAYER_GZIP;
                else if (streq(mt, "application/vnd.docker.image.rootfs.diff.tar"))
                        mt = OSSB_MT_OCI_LAYER;
                s->layers[i] = (struct ossb_descriptor) { .size = d->size };
                memcpy(s->layers[i].digest, d->digest, sizeof(d->digest));
                s->layers[i].media_type = strdup(mt);
                if (!s->layers[i].media_type)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                /* the blob is unchanged: what its annotations say (a seekable layer's TOC
                 * digest) stays true in the image built on it */
                if (d->annotations && json_object_deep_copy(d->annotations, &s->layers[i].annotations, NULL) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                s->n_layers++;
        }
        return 0;
}

static void platform_from_config(json_object *img, struct ossb_platform_spec *p)
{
        json_object *v = NULL;
        if (json_object_object_get_ex(img, "os", &v) && json_object_get_string(v))
                snprintf(p->os, sizeof(p->os), "%s", json_object_get_string(v));
        if (json_object_object_get_ex(img, "architecture", &v) && json_object_get_string(v))
                snprintf(p->architecture, sizeof(p->architecture), "%s", json_object_get_string(v));
        p->variant[0] = 0;
        if (json_object_object_get_ex(img, "variant", &v) && json_object_get_string(v))
                snprintf(p->variant, sizeof(p->variant), "%s", json_object_get_string(v));
}

/* Pull `name` for platform p and unpack it into dir, or with a stacked stage s, stack its
 * layers from the layer store. */
static int pull_into(struct build *b, struct stage_state *s, const char *name, const struct ossb_platform_spec *p,
                     const char *dir, struct ossb_pulled_image *ret, struct ossb_error **err)
{
        struct ossb_reference *ref = NULL;
        struct ossb_registry *reg = NULL;
        struct ossb_platform want;
        struct ossb_unpack_stats st = { 0 };
        to_platform(p, &want);
        int r = ossb_reference_parse(name, &ref, err);
        if (r >= 0)
                r = registry(b, &reg, err);
        if (r >= 0)
                r = ossb_pull(reg, b->store, ref, &want, false, ret, err);
        if (r >= 0) {
                if (s && s->fs)
                        r = ossb_stage_fs_from_pulled(b, s, reg, ref, ret, &st, err);
                else
                        r = ossb_pull_unpack(reg, b->store, ref, ret, dir, &st, err);
                if (r < 0)
                        ossb_pulled_image_clear(ret);
        }
        ossb_reference_free(ref);
        if (r < 0)
                return r;
        if (st.chown_skipped || st.devices_skipped)
                log_warn("%s: %lld file owners could not be kept and %lld device nodes were left out (not permitted "
                         "for this user)", name, (long long) st.chown_skipped, (long long) st.devices_skipped);
        log_debug("%s: %s unpacked, %lld entries", name, ret->manifest.digest, (long long) st.entries);
        return 0;
}

int ossb_stage_from_image(struct build *b, struct stage_state *s, const char *dir, struct ossb_error **err)
{
        struct ossb_pulled_image p = { 0 };
        /* one pull at a time: the registry client serves one caller (stages run in parallel) */
        pthread_mutex_lock(&b->lock);
        int r = pull_into(b, s, s->base_image, &s->platform, dir, &p, err);
        pthread_mutex_unlock(&b->lock);
        if (r < 0)
                return r;
        s->img = inherit_config(p.config);
        if (!s->img)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0)
                r = take_layers(s, p.parsed, err);
        if (r >= 0)
                platform_from_config(s->img, &s->platform);
        if (r >= 0)
                memcpy(s->from_digest, p.manifest.digest, sizeof(s->from_digest));
        ossb_pulled_image_clear(&p);
        return r;
}

static int image_source(struct build *b, const char *name, const struct ossb_tree **ret, struct ossb_error **err);

int ossb_image_source(struct build *b, const char *name, const struct ossb_tree **ret, struct ossb_error **err)
{
        pthread_mutex_lock(&b->lock);
        int r = image_source(b, name, ret, err);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int image_source(struct build *b, const char *name, const struct ossb_tree **ret, struct ossb_error **err)
{
        for (size_t i = 0; i < b->n_images; i++)
                if (streq(b->images[i]->name, name)) {
                        *ret = &b->images[i]->root;
                        return 0;
                }
        struct image_source **n = realloc(b->images, (b->n_images + 1) * sizeof(*n));
        if (!n)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        b->images = n;
        struct image_source *is = calloc(1, sizeof(*is));
        if (!is)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        is->root.fd = -1;
        n[b->n_images] = is;
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/image-%zu", b->workdir, b->n_images) < 0 || !(is->name = strdup(name))) {
                free(is);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        b->n_images++;
        struct ossb_pulled_image p = { 0 };
        int r = pull_into(b, NULL, name, &b->target_platform, dir, &p, err);
        ossb_pulled_image_clear(&p);
        if (r >= 0)
                r = ossb_tree_open(dir, &is->root, err);
        if (r < 0)
                return r;
        *ret = &is->root;
        return 0;
}

int ossb_push_result(struct build *b, const struct ossb_descriptor *manifest, char *const *refs,
                     struct ossb_error **err)
{
        size_t n = ossb_strv_length(refs);
        struct ossb_reference **parsed = calloc(n + 1, sizeof(*parsed));
        struct ossb_registry *reg = NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int r = parsed ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = ossb_reference_parse(refs[i], &parsed[i], err);
        if (r >= 0 && n == 0)
                r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "pushing needs a name: give -t NAME or "
                                                                    "--output type=registry,name=NAME");
        if (r >= 0)
                r = registry(b, &reg, err);
        if (r >= 0) {
                ossb_transfer_display_init(&b->display, ossb_progress_display_mode(b->progress.mode)); /* count the push alone */
                ossb_lazy_set_blob_reader(b, reg);
                r = ossb_push(reg, b->store, manifest, parsed, n, digest, err);
        }
        for (size_t i = 0; parsed && i < n; i++)
                ossb_reference_free(parsed[i]);
        free(parsed);
        if (r >= 0)
                ossb_transfer_display_finish(&b->display, "pushed");
        return r;
}

void ossb_images_free(struct build *b)
{
        for (size_t i = 0; i < b->n_images; i++) {
                free(b->images[i]->name);
                if (b->images[i]->root.fd >= 0)
                        ossb_tree_close(&b->images[i]->root);
                free(b->images[i]);
        }
        free(b->images);
        ossb_registry_free(b->reg);
        ossb_regconf_free(b->own_regconf);
}
