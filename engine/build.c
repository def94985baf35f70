/* engine/build.c - a build from start to end: parse, plan the stages the target needs, run
 * them in dependency order, write the image to the store, export it to every output. */
#include "config.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/run-mounts.h"
#include "engine/dockerfile/shell.h"
#include "registry/reference.h"
#include "oci/layout.h"

int ossb_arg_resolve(struct build *b, char *const *env, char *const *global, const struct ossb_df_kv *kv, char **ret,
                     struct ossb_error **err);

/* --- outputs and platforms ---------------------------------------------------------------- */

void ossb_output_clear(struct ossb_output *o)
{
        free(o->dest);
        o->dest = NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);
        return n >= m && streq(s + n - m, suffix);
}

/* Append "a" to a comma-separated list in *list. */
static int list_add(char **list, const char *a)
{
        char *n = NULL;
        if (asprintf(&n, "%s%s%s", *list ? *list : "", *list ? "," : "", a) < 0)
                return -ENOMEM;
        free(*list);
        *list = n;
        return 0;
}

struct output_kv {
        bool have_type, tar_set, push, push_set;
        char *names;
};

static int output_key(const char *spec, const char *k, const char *v, struct ossb_output *o, struct output_kv *kv,
                      struct ossb_error **err)
{
        if (streq(k, "type")) {
                kv->have_type = true;
                if (streq(v, "oci"))
                        o->type = OSSB_OUTPUT_OCI;
                else if (streq(v, "docker"))
                        o->type = OSSB_OUTPUT_DOCKER;
                else if (streq(v, "registry") || streq(v, "image"))
                        o->type = OSSB_OUTPUT_REGISTRY;
                else
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "--output %s: unsupported type `%s` (supported: oci, docker, registry)", spec, v);
                if (streq(v, "registry"))
                        kv->push = kv->push_set = true;
        } else if (streq(k, "dest")) {
                free(o->dest);
                o->dest = strdup(v);
                if (!o->dest)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        } else if (streq(k, "tar") || streq(k, "push")) {
                if (!streq(v, "true") && !streq(v, "false"))
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: %s= takes true or false", spec, k);
                if (streq(k, "tar")) {
                        o->tar = streq(v, "true");
                        kv->tar_set = true;
                } else {
                        kv->push = streq(v, "true");
                        kv->push_set = true;
                }
        } else if (streq(k, "name")) {
                /* several names: name=a,name=b or name="a,b" (buildx); for oci/docker the tags come from -t */
                if (list_add(&kv->names, v) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        } else
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: unknown key `%s`", spec, k);
        return 0;
}

int ossb_output_parse(const char *spec, struct ossb_output *ret, struct ossb_error **err)
{
        struct ossb_output o = { .type = OSSB_OUTPUT_OCI };
        struct output_kv kv = { 0 };
        _cleanup_free_ char *copy = strdup(spec);
        int r = 0;
        if (!copy)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!strchr(spec, '=')) {
                o.dest = strdup(spec);
                if (!o.dest)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                o.tar = ends_with(spec, ".tar");
                *ret = o;
                return 0;
        }
        for (char *p = copy, *next; p && r >= 0; p = next) {
                next = strchr(p, ',');
                if (next)
                        *next++ = '\0';
                char *eq = strchr(p, '=');
                if (!eq) {
                        /* a bare word after name=: another name ("name=a,b") */
                        if (kv.names && *p) {
                                r = list_add(&kv.names, p) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
                                continue;
                        }
                        r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                            "--output %s: expected type=oci|docker,dest=PATH[,tar=true|false] or "
                                            "type=registry[,name=NAME]", spec);
                        break;
                }
                *eq = '\0';
                r = output_key(spec, p, eq + 1, &o, &kv, err);
        }
        if (r >= 0 && !kv.have_type)
                r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: `type=` is required", spec);
        if (r >= 0 && o.type == OSSB_OUTPUT_REGISTRY) {
                if (!kv.push)
                        r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: type=image needs push=true (ossb "
                                                                            "has no local image store)", spec);
                else if (o.dest)
                        r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: type=registry takes name=, not dest=",
                                            spec);
                else
                        o.dest = TAKE_PTR(kv.names);
        } else if (r >= 0 && (!o.dest || !*o.dest))
                r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--output %s: `type=` and `dest=` are required", spec);
        free(kv.names);
        if (r < 0) {
                free(o.dest);
                return r;
        }
        if (o.type == OSSB_OUTPUT_DOCKER)
                o.tar = true;
        else if (o.type == OSSB_OUTPUT_OCI && !kv.tar_set)
                o.tar = ends_with(o.dest, ".tar");
        *ret = o;
        return 0;
}

static const char *normalize_arch(const char *a)
{
        if (streq(a, "x86_64") || streq(a, "x86-64"))
                return "amd64";
        if (streq(a, "aarch64"))
                return "arm64";
        if (streq(a, "i386") || streq(a, "i486") || streq(a, "i586") || streq(a, "i686"))
                return "386";
        if (strncmp(a, "armv", 4) == 0 || streq(a, "armhf") || streq(a, "armel"))
                return "arm";
        return a;
}

const char *ossb_host_platform(void)
{
        static char buf[64];
        struct utsname u;
        if (!buf[0]) {
                if (uname(&u) < 0)
                        snprintf(buf, sizeof(buf), "linux/amd64");
                else
                        snprintf(buf, sizeof(buf), "linux/%s", normalize_arch(u.machine));
        }
        return buf;
}

static int platform_parse(const char *s, struct ossb_platform_spec *ret, struct ossb_error **err)
{
        _cleanup_free_ char *copy = strdup(s);
        struct ossb_platform_spec p = { .os = "" };
        if (!copy)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        char *os = copy, *arch = strchr(copy, '/'), *variant = NULL;
        if (arch) {
                *arch++ = '\0';
                variant = strchr(arch, '/');
                if (variant)
                        *variant++ = '\0';
        }
        for (char *c = copy; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char) (*c - 'A' + 'a');
        if (!*os || !arch || !*arch || (variant && (!*variant || strchr(variant, '/'))) || strlen(os) >= 32 ||
            strlen(arch) >= 32 || (variant && strlen(variant) >= 32))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                       "invalid platform `%s`: expected OS/ARCH[/VARIANT], e.g. linux/amd64", s);
        if (!streq(os, "linux"))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "unsupported platform `%s`: only linux images are built",
                                       s);
        snprintf(p.os, sizeof(p.os), "%s", os);
        snprintf(p.architecture, sizeof(p.architecture), "%s", normalize_arch(arch));
        if (variant)
                snprintf(p.variant, sizeof(p.variant), "%s", variant);
        /* containerd's normalisation: arm64/v8 -> arm64, arm -> arm/v7 */
        if (streq(p.architecture, "arm64") && streq(p.variant, "v8"))
                p.variant[0] = '\0';
        if (streq(p.architecture, "arm") && !p.variant[0])
                snprintf(p.variant, sizeof(p.variant), "v7");
        *ret = p;
        return 0;
}

static int platform_string(const struct ossb_platform_spec *p, char *buf, size_t size)
{
        return snprintf(buf, size, "%s/%s%s%s", p->os, p->architecture, p->variant[0] ? "/" : "", p->variant);
}

/* --- global args ------------------------------------------------------------------------- */

static int push_kv(char ***v, const char *k, const char *value)
{
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", k, value) < 0)
                return -ENOMEM;
        return ossb_strv_consume(v, kv);
}

static int automatic_args(struct build *b)
{
        char tp[128], bp[128];
        platform_string(&b->target_platform, tp, sizeof(tp));
        platform_string(&b->build_platform, bp, sizeof(bp));
        if (push_kv(&b->meta_env, "TARGETPLATFORM", tp) < 0 || push_kv(&b->meta_env, "TARGETOS", b->target_platform.os) < 0 ||
            push_kv(&b->meta_env, "TARGETARCH", b->target_platform.architecture) < 0 ||
            push_kv(&b->meta_env, "TARGETVARIANT", b->target_platform.variant) < 0 ||
            push_kv(&b->meta_env, "BUILDPLATFORM", bp) < 0 || push_kv(&b->meta_env, "BUILDOS", b->build_platform.os) < 0 ||
            push_kv(&b->meta_env, "BUILDARCH", b->build_platform.architecture) < 0 ||
            push_kv(&b->meta_env, "BUILDVARIANT", b->build_platform.variant) < 0)
                return -ENOMEM;
        return 0;
}

static int global_args(struct build *b, struct ossb_error **err)
{
        if (automatic_args(b) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < b->plan->n_meta_args; i++) {
                const struct ossb_df_inst *inst = &b->plan->meta_args[i];
                for (size_t k = 0; k < inst->n_kvs; k++) {
                        _cleanup_free_ char *value = NULL;
                        int r = ossb_arg_resolve(b, b->meta_env, NULL, &inst->kvs[k], &value, err);
                        if (r < 0)
                                return ossb_wrap_inst(b, inst, err);
                        if (value && push_kv(&b->meta_env, inst->kvs[k].key, value) < 0)
                                return ossb_error_set(err, -ENOMEM, "out of memory");
                }
        }
        return 0;
}

/* --- planning: which stages the target needs --------------------------------------------- */

static int stage_deps(struct build *b, struct stage_state *s, struct ossb_error **err);

static int need_stage(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        if (s->needed)
                return 0;
        if (s->visiting)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ELOOP, "%s: circular dependency between build stages at stage `%s`",
                                       b->df->path, s->stage->name ? s->stage->name : "?");
        s->visiting = true;
        int r = stage_deps(b, s, err);
        s->visiting = false;
        s->needed = r >= 0;
        return r;
}

static int add_dep(struct build *b, struct stage_state *s, struct stage_state *dep, struct ossb_error **err)
{
        int r = need_stage(b, dep, err);
        if (r < 0)
                return r;
        struct stage_state **nd = realloc(s->deps, (s->n_deps + 1) * sizeof(*nd));
        if (!nd)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        s->deps = nd;
        nd[s->n_deps++] = dep;
        return 0;
}

/* RUN --mount=from=STAGE: an earlier stage the RUN needs (`from` takes no variables; a later
 * stage, the stage itself or an image is left to the RUN, which says what is wrong).  Specs
 * without variables are checked here, so that a bad one fails the build before any work; the
 * others once the RUN expands them. */
static int run_mount_deps(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                          struct ossb_error **err)
{
        _cleanup_strv_free_ char **names = NULL;
        for (size_t i = 0; inst->run_mounts && inst->run_mounts[i]; i++) {
                struct ossb_run_mount m;
                if (strchr(inst->run_mounts[i], '$'))
                        continue;
                if (ossb_run_mount_parse(inst->run_mounts[i], NULL, NULL, &m, err) < 0)
                        return ossb_wrap_inst(b, inst, err);
                ossb_run_mount_clear(&m);
        }
        if (ossb_run_mounts_from_names(inst->run_mounts, &names) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; names[i]; i++) {
                struct stage_state *dep = ossb_find_stage(b, names[i]);
                if (!dep || dep->stage->index >= s->stage->index)
                        continue;
                int r = add_dep(b, s, dep, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int stage_deps(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        const struct ossb_df_stage *st = s->stage;
        _cleanup_free_ char *image = NULL;
        int r = ossb_expand(b, b->meta_env, st->from.from_image, &image, err);
        if (r < 0)
                return ossb_wrap_inst(b, &st->from, err);
        if (!*image) {
                ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "base name (%s) should not be blank", st->from.from_image);
                return ossb_wrap_inst(b, &st->from, err);
        }
        const struct ossb_df_stage *base = ossb_df_plan_find_stage(b->plan, image);
        /* a stage name refers to an earlier stage only; an index never resolves in FROM */
        if (base && base->index < st->index && base->name && strcasecmp(base->name, image) == 0) {
                s->base = &b->stages[base->index];
                r = need_stage(b, s->base, err);
                if (r < 0)
                        return r;
        }
        s->base_image = TAKE_PTR(image);
        for (size_t i = 0; i < st->n_insts; i++) {
                const struct ossb_df_inst *inst = &st->insts[i];
                if (inst->kind == OSSB_DF_RUN) {
                        r = run_mount_deps(b, s, inst, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if ((inst->kind != OSSB_DF_COPY && inst->kind != OSSB_DF_ADD) || !inst->copy_from)
                        continue;
                _cleanup_free_ char *from = NULL;
                r = ossb_expand(b, b->meta_env, inst->copy_from, &from, err);
                if (r < 0)
                        return ossb_wrap_inst(b, inst, err);
                struct stage_state *dep = ossb_find_stage(b, from);
                if (dep == s) {
                        ossb_error_setx(err, OSSB_EXIT_USAGE, -ELOOP, "a stage cannot copy from itself (--from=%s)", from);
                        return ossb_wrap_inst(b, inst, err);
                }
                if (!dep)
                        continue;
                r = add_dep(b, s, dep, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* --- running a stage --------------------------------------------------------------------- */

/* FROM <stage>: the stage's layer list, annotations included. */
static int inherit_layers(struct stage_state *s, struct ossb_error **err)
{
        s->layers = calloc(s->base->n_layers + 1, sizeof(*s->layers));
        if (!s->layers)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < s->base->n_layers; i++) {
                if (ossb_descriptor_copy(&s->base->layers[i], &s->layers[i]) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                s->n_layers++;
        }
        return 0;
}

static int stage_init(struct build *b, struct stage_state *s, size_t idx, struct ossb_error **err)
{
        _cleanup_free_ char *dir = NULL;
        int r;
        if (asprintf(&dir, "%s/stage-%zu", b->workdir, idx) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        s->platform = b->target_platform;
        if (s->stage->from.from_platform) {
                _cleanup_free_ char *p = NULL;
                r = ossb_expand(b, b->meta_env, s->stage->from.from_platform, &p, err);
                if (r >= 0)
                        r = platform_parse(p, &s->platform, err);
                if (r < 0)
                        return ossb_wrap_inst(b, &s->stage->from, err);
        }
        if (b->layers && (r = ossb_stage_fs_new(b, s, dir, err)) < 0)
                return r;
        if (s->base) {
                if (!s->fs && (r = ossb_tree_clone(s->base->root.path, dir, err)) < 0)
                        return r;
                s->img = ossb_config_copy(s->base->img);
                if (!s->img)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if ((r = inherit_layers(s, err)) < 0)
                        return r;
                s->platform = s->base->platform;
        } else if (strcasecmp(s->base_image, "scratch") == 0) {
                if (!s->fs && mkdir(dir, 0755) < 0)
                        return ossb_error_set(err, -errno, "cannot create `%s`: %m", dir);
                s->img = ossb_config_new(&s->platform);
                if (!s->img || ossb_config_env_set(s->img, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") < 0 ||
                    ossb_config_set_str(s->img, "WorkingDir", "/") < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        } else {
                r = ossb_stage_from_image(b, s, dir, err);
                if (r < 0)
                        return ossb_wrap_inst(b, &s->stage->from, err);
        }
        r = ossb_stepcache_from(b, s, s->base ? "stage" : s->from_digest[0] ? s->from_digest : "scratch", err);
        if (r < 0)
                return r;
        return s->fs ? ossb_stage_root_ready(b, s, err) : ossb_tree_open(dir, &s->root, err);
}

/* One instruction: its step key, the step, the cache chain after it. */
static int dispatch_step(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, int id,
                         struct ossb_error **err)
{
        s->step_id = id;
        uint64_t fetched = b->n_lazy ? ossb_lazy_fetched_bytes(b) : 0;
        int r = ossb_stage_root_ready(b, s, err);
        if (r >= 0)
                r = ossb_stepcache_step_key(b, s, inst, err);
        if (r >= 0)
                r = ossb_dispatch(b, s, inst, err);
        if (b->n_lazy) { /* stages run in parallel: bytes of another's reads may count here */
                uint64_t now = ossb_lazy_fetched_bytes(b);
                if (now > fetched)
                        ossb_progress_note(b, id, "fetched %" PRIu64 " bytes of lazily read base layers", now - fetched);
        }
        if (r >= 0)
                r = ossb_stepcache_advance(b, s, inst, err);
        return r;
}

static int run_onbuild(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        _cleanup_strv_free_ char **triggers = NULL;
        if (ossb_config_get_strv(s->img, "OnBuild", &triggers) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!triggers || !triggers[0])
                return 0;
        /* the triggers run once, in this stage, and are not inherited further */
        if (ossb_config_set_strv(s->img, "OnBuild", NULL) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; triggers[i]; i++) {
                struct ossb_dockerfile *tdf = NULL;
                struct ossb_df_inst *inst = NULL;
                int r = ossb_df_parse_trigger(triggers[i], &tdf, &inst, err);
                if (r >= 0) {
                        int64_t t0 = ossb_now_ns();
                        int id = ossb_progress_start(b, "onbuild", triggers[i]);
                        r = dispatch_step(b, s, inst, id, err);
                        ossb_progress_done(b, id, t0, r < 0);
                }
                if (r < 0)
                        ossb_error_wrap(err, "ONBUILD trigger `%s` of the base", triggers[i]);
                ossb_df_inst_free(inst);
                ossb_dockerfile_free(tdf);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int run_stage(struct build *b, struct stage_state *s, size_t idx, struct ossb_error **err)
{
        const struct ossb_df_stage *st = s->stage;
        char label[96], idxs[24];
        snprintf(idxs, sizeof(idxs), "%zu", idx);
        snprintf(label, sizeof(label), "%s%s %zu/%zu", st->name ? st->name : "stage-", st->name ? "" : idxs, (size_t) 1, st->n_insts + 1);
        int64_t t0 = ossb_now_ns();
        int id = ossb_progress_start(b, label, st->from.node ? st->from.node->original : "FROM");
        int r = stage_init(b, s, idx, err);
        ossb_progress_done(b, id, t0, r < 0);
        if (r < 0)
                return r;
        r = run_onbuild(b, s, err);
        if (r < 0)
                return ossb_wrap_inst(b, &st->from, err);
        for (size_t i = 0; i < st->n_insts; i++) {
                const struct ossb_df_inst *inst = &st->insts[i];
                if (ossb_interrupted())
                        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted by signal %d",
                                               ossb_interrupted());
                snprintf(label, sizeof(label), "%s%s %zu/%zu", st->name ? st->name : "stage-", st->name ? "" : idxs, i + 2,
                         st->n_insts + 1);
                t0 = ossb_now_ns();
                id = ossb_progress_start(b, label, inst->node ? inst->node->original : "?");
                r = dispatch_step(b, s, inst, id, err);
                ossb_progress_done(b, id, t0, r < 0);
                if (r < 0)
                        return ossb_wrap_inst(b, inst, err);
        }
        r = ossb_stage_finish(b, s, err);
        if (r < 0)
                return r;
        s->done = true;
        return 0;
}

/* Stages run as soon as their base and every stage they copy from are done, up to
 * opts->jobs at once (default: the CPUs ossb may use), each in its own thread.  The first
 * failure stops new stages from starting; running ones finish their current step. */
struct sched {
        struct build *b;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int running;
        bool failed;
        struct ossb_error *err;
};

struct stage_job {
        struct sched *sc;
        struct stage_state *s;
};

static bool stage_ready(const struct stage_state *s)
{
        if (!s->needed || s->started)
                return false;
        if (s->base && !s->base->done)
                return false;
        for (size_t i = 0; i < s->n_deps; i++)
                if (!s->deps[i]->done)
                        return false;
        return true;
}

static void *stage_thread(void *arg)
{
        struct stage_job *j = arg;
        struct sched *sc = j->sc;
        struct ossb_error *e = NULL;
        int r = run_stage(sc->b, j->s, (size_t) (j->s - sc->b->stages), &e);
        pthread_mutex_lock(&sc->lock);
        if (r < 0 && !sc->failed) {
                sc->failed = true;
                sc->err = TAKE_PTR(e);
        }
        sc->running--;
        pthread_cond_broadcast(&sc->cond);
        pthread_mutex_unlock(&sc->lock);
        ossb_error_free(e);
        free(j);
        return NULL;
}

static int default_jobs(void)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
                return CPU_COUNT(&set);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int) n : 1;
}

/* Start every ready stage the job limit allows; called with sc->lock held. */
static int start_ready(struct sched *sc, int jobs)
{
        struct build *b = sc->b;
        for (size_t i = 0; i < b->n_stages && sc->running < jobs && !sc->failed; i++) {
                struct stage_state *s = &b->stages[i];
                if (!stage_ready(s))
                        continue;
                struct stage_job *j = calloc(1, sizeof(*j));
                pthread_t th;
                if (!j)
                        return -ENOMEM;
                *j = (struct stage_job) { .sc = sc, .s = s };
                s->started = true;
                sc->running++;
                int r = pthread_create(&th, NULL, stage_thread, j);
                if (r != 0) {
                        s->started = false;
                        sc->running--;
                        free(j);
                        return -r;
                }
                pthread_detach(th);
        }
        return 0;
}

static int run_needed(struct build *b, struct stage_state *target, struct ossb_error **err)
{
        struct sched sc = { .b = b };
        int jobs = b->opts->jobs > 0 ? b->opts->jobs : default_jobs();
        int r = 0;
        pthread_mutex_init(&sc.lock, NULL);
        pthread_cond_init(&sc.cond, NULL);
        pthread_mutex_lock(&sc.lock);
        while (!target->done && !sc.failed) {
                r = start_ready(&sc, jobs);
                if (r < 0) {
                        ossb_error_set(err, r, "cannot start a build thread: %s", strerror(-r));
                        break;
                }
                if (sc.running == 0) { /* nothing runs and nothing can start: a bug in planning */
                        r = ossb_error_set(err, -EDEADLK, "no build stage can start");
                        break;
                }
                pthread_cond_wait(&sc.cond, &sc.lock);
        }
        while (sc.running > 0) /* let running stages finish their step */
                pthread_cond_wait(&sc.cond, &sc.lock);
        pthread_mutex_unlock(&sc.lock);
        pthread_cond_destroy(&sc.cond);
        pthread_mutex_destroy(&sc.lock);
        if (sc.failed) {
                if (err && !*err)
                        *err = TAKE_PTR(sc.err);
                ossb_error_free(sc.err);
                return err && *err ? (*err)->code : -EIO;
        }
        return r;
}

/* --- export ------------------------------------------------------------------------------ */

static int apply_labels(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        for (size_t i = 0; b->opts->labels && b->opts->labels[i]; i++) {
                const char *kv = b->opts->labels[i];
                const char *eq = strchr(kv, '=');
                _cleanup_free_ char *k = eq ? strndup(kv, (size_t) (eq - kv)) : strdup(kv);
                if (!k || ossb_config_label_set(s->img, k, eq ? eq + 1 : "") < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

struct tags {
        struct ossb_layout_tag *layout;
        char **refs;      /* ref names (OCI) */
        char **full;      /* full names */
        char **familiar;  /* docker-archive RepoTags */
        size_t n;
};

static void tags_free(struct tags *t)
{
        free(t->layout);
        ossb_strv_free(t->refs);
        ossb_strv_free(t->full);
        ossb_strv_free(t->familiar);
}

static int tags_prepare(struct build *b, struct tags *t, struct ossb_error **err)
{
        for (size_t i = 0; b->opts->tags && b->opts->tags[i]; i++) {
                struct ossb_reference *ref = NULL;
                int r = ossb_reference_parse(b->opts->tags[i], &ref, err);
                if (r < 0)
                        return ossb_error_wrap(err, "-t");
                char *full = ossb_reference_full(ref), *fam = ossb_reference_familiar(ref);
                ossb_reference_free(ref);
                if (ossb_strv_consume(&t->full, full) < 0 || ossb_strv_consume(&t->familiar, fam) < 0 ||
                    ossb_strv_push(&t->refs, fam) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                t->n++;
        }
        t->layout = calloc(t->n + 1, sizeof(*t->layout));
        if (!t->layout)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < t->n; i++)
                t->layout[i] = (struct ossb_layout_tag) { .ref_name = t->refs[i], .full_name = t->full[i] };
        return 0;
}

static int push_image(struct build *b, const struct ossb_descriptor *manifest, char *const *names,
                      struct ossb_error **err)
{
        int64_t t0 = ossb_now_ns();
        _cleanup_free_ char *list = ossb_strv_join(names, ", ");
        char text[4200];
        snprintf(text, sizeof(text), "pushing %s to %s", manifest->digest, list ? list : "?");
        int id = ossb_progress_start(b, "push", text);
        int r = ossb_push_result(b, manifest, names, err);
        ossb_progress_done(b, id, t0, r < 0);
        return r;
}

static int export_one(struct build *b, const struct ossb_output *o, const struct ossb_descriptor *manifest,
                      const struct tags *t, struct ossb_error **err)
{
        if (o->type == OSSB_OUTPUT_REGISTRY) {
                _cleanup_strv_free_ char **names = NULL;
                if (o->dest) {
                        for (char *p = o->dest, *next; p; p = next) {
                                next = strchr(p, ',');
                                _cleanup_free_ char *one = next ? strndup(p, (size_t) (next - p)) : strdup(p);
                                if (next)
                                        next++;
                                if (!one || ossb_strv_push(&names, one) < 0)
                                        return ossb_error_set(err, -ENOMEM, "out of memory");
                        }
                }
                return push_image(b, manifest, o->dest ? names : t->full, err);
        }
        int64_t t0 = ossb_now_ns();
        char text[4200];
        snprintf(text, sizeof(text), "exporting to %s %s", o->type == OSSB_OUTPUT_DOCKER ? "docker-archive" :
                                                             o->tar ? "OCI layout tar" : "OCI layout", o->dest);
        int id = ossb_progress_start(b, "export", text);
        int r;
        if (o->type == OSSB_OUTPUT_DOCKER)
                r = ossb_docker_archive_write(b->store, o->dest, manifest, t->familiar, err);
        else if (o->tar)
                r = ossb_layout_write_tar(b->store, o->dest, manifest, t->layout, t->n, err);
        else
                r = ossb_layout_write_dir(b->store, o->dest, manifest, t->layout, t->n, err);
        ossb_progress_done(b, id, t0, r < 0);
        if (r < 0)
                ossb_error_wrap(err, "--output %s", o->dest);
        return r;
}

static int export_image(struct build *b, struct stage_state *s, struct tags *tp, struct ossb_build_result *ret,
                        struct ossb_error **err)
{
        struct ossb_descriptor manifest = { 0 }, config = { 0 };
        struct tags t = *tp;
        int r = apply_labels(b, s, err);
        if (r < 0)
                goto out;
        ossb_config_set_created(s->img, b->created);
        if (ossb_config_finalize(&s->img) < 0) {
                r = ossb_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        r = ossb_image_write(b->store, s->img, s->layers, s->n_layers, NULL, &manifest, &config, err);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < b->opts->n_outputs && r >= 0; i++)
                r = export_one(b, &b->opts->outputs[i], &manifest, &t, err);
        if (r >= 0 && b->opts->push)
                r = push_image(b, &manifest, t.full, err);
        if (r < 0)
                goto out;
        memcpy(ret->manifest_digest, manifest.digest, sizeof(ret->manifest_digest));
        memcpy(ret->config_digest, config.digest, sizeof(ret->config_digest));
        ret->manifest_size = manifest.size;
        if (t.n) {
                _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
                for (size_t i = 0; i < t.n; i++)
                        if (ossb_strbuf_appendf(&sb, "%s%s", i ? "," : "", t.full[i]) < 0) {
                                r = ossb_error_set(err, -ENOMEM, "out of memory");
                                goto out;
                        }
                ret->image_names = ossb_strbuf_steal(&sb);
        }
out:
        ossb_descriptor_clear(&manifest);
        ossb_descriptor_clear(&config);
        return r;
}

void ossb_build_result_clear(struct ossb_build_result *r)
{
        free(r->image_names);
        r->image_names = NULL;
}

/* --- work directory ---------------------------------------------------------------------- */

/* Remove work dirs of builds whose process is gone (killed before it could clean up). */
static void cleanup_stale(const char *builds)
{
        DIR *d = opendir(builds);
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d))) {
                char *end = NULL;
                long pid = strtol(de->d_name, &end, 10);
                if (pid <= 0 || *end != '-')
                        continue;
                if (kill((pid_t) pid, 0) == 0 || errno != ESRCH)
                        continue;
                _cleanup_free_ char *p = ossb_path_join(builds, de->d_name);
                if (p)
                        (void) ossb_rm_rf(p);
        }
        closedir(d);
}

static int make_workdir(struct build *b, struct ossb_error **err)
{
        _cleanup_free_ char *builds = ossb_path_join(b->opts->cache_dir, "builds");
        if (!builds)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_mkdir_p(builds, 0700);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_INTERNAL, r, "cannot create `%s`: %s", builds, strerror(-r));
        cleanup_stale(builds);
        _cleanup_free_ char *tmpl = NULL;
        if (asprintf(&tmpl, "%s/%ld-XXXXXX", builds, (long) getpid()) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!mkdtemp(tmpl))
                return ossb_error_set(err, -errno, "cannot create a build directory under `%s`: %m", builds);
        b->workdir = TAKE_PTR(tmpl);
        return 0;
}

/* --- entry ------------------------------------------------------------------------------- */

static void build_free(struct build *b)
{
        /* every view unmounted before any stage directory goes (children stack their parents') */
        for (size_t i = 0; i < b->n_stages; i++) {
                struct stage_state *s = &b->stages[i];
                if (s->root.path)
                        ossb_tree_close(&s->root);
                if (s->fs && ossb_stagefs_unmount(s->fs, NULL) < 0)
                        log_warn("cannot unmount the root of stage %zu", i);
        }
        for (size_t i = 0; i < b->n_stages; i++) {
                struct stage_state *s = &b->stages[i];
                ossb_stagefs_free(s->fs);
                json_object_put(s->img);
                for (size_t k = 0; k < s->n_layers; k++)
                        ossb_descriptor_clear(&s->layers[k]);
                free(s->layers);
                ossb_strv_free(s->args);
                free(s->base_image);
                free(s->deps);
        }
        free(b->stages);
        ossb_lazy_free_all(b); /* after the stages: they hold references to the lazy sources */
        if (b->workdir) {
                (void) ossb_rm_rf(b->workdir);
                free(b->workdir);
        }
        if (b->context.path)
                ossb_tree_close(&b->context);
        ossb_dockerignore_free(b->ignore);
        ossb_strv_free(b->meta_env);
        ossb_strv_free(b->used_args);
        ossb_images_free(b);
        ossb_cache_free(b->cache);
        ossb_layerstore_free(b->layers);
        free(b->snapshotter_reason);
        ossb_df_plan_free(b->plan);
        ossb_dockerfile_free(b->df);
        ossb_store_free(b->store);
}

/* The ignore file: <Dockerfile>.dockerignore beside the Dockerfile when it exists (as
 * BuildKit reads it), else CONTEXT/.dockerignore. */
static int read_ignore_file(struct build *b, char **ret_path, char **ret_data, size_t *ret_len, struct ossb_error **err)
{
        _cleanup_free_ char *specific = NULL;
        const char *df = b->opts->dockerfile_name;
        int r;
        if (df && b->opts->dockerfile_path_is_file && asprintf(&specific, "%s.dockerignore", df) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (int i = 0; i < 2; i++) {
                _cleanup_free_ char *path = i == 0 ? TAKE_PTR(specific) : ossb_path_join(b->context.path, ".dockerignore");
                if (!path) {
                        if (i == 0)
                                continue;
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                }
                r = ossb_read_file(path, 16u << 20, ret_data, ret_len, NULL);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, r, "cannot read `%s`: %s", path, strerror(-r));
                *ret_path = TAKE_PTR(path);
                return 1;
        }
        return 0;
}

static int open_context(struct build *b, struct ossb_error **err)
{
        struct stat st;
        if (stat(b->opts->context_dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTDIR, "build context `%s` is not a directory",
                                       b->opts->context_dir);
        int r = ossb_tree_open(b->opts->context_dir, &b->context, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *path = NULL, *data = NULL;
        size_t len = 0;
        r = read_ignore_file(b, &path, &data, &len, err);
        if (r <= 0)
                return r;
        return ossb_dockerignore_parse(path, data, len, &b->ignore, err);
}

static int set_times(struct build *b)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (b->opts->source_date_epoch >= 0) {
                b->now = b->opts->source_date_epoch;
                ossb_format_time(b->now, 0, b->created, sizeof(b->created));
        } else {
                b->now = ts.tv_sec;
                ossb_format_time(ts.tv_sec, ts.tv_nsec, b->created, sizeof(b->created));
        }
        return 0;
}

static void warn_unused_args(struct build *b)
{
        static const char *const builtin[] = { "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                                               "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
                                               "SOURCE_DATE_EPOCH" };
        for (size_t i = 0; b->opts->build_args && b->opts->build_args[i]; i++) {
                const char *kv = b->opts->build_args[i];
                size_t n = strcspn(kv, "=");
                _cleanup_free_ char *k = strndup(kv, n);
                bool skip = false;
                if (!k)
                        return;
                for (size_t j = 0; j < ELEMENTSOF(builtin); j++)
                        skip |= streq(k, builtin[j]);
                for (size_t j = 0; b->meta_env && b->meta_env[j] && !skip; j++)
                        skip |= strncmp(b->meta_env[j], k, n) == 0 && b->meta_env[j][n] == '=';
                if (!skip && !ossb_strv_contains(b->used_args, k))
                        log_warn("build argument `%s` was not consumed by any ARG instruction", k);
        }
}

static int build_prepare(struct build *b, struct ossb_error **err)
{
        _cleanup_free_ char *store = ossb_path_join(b->opts->cache_dir, "store");
        int r;
        if (!store)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_dockerfile_parse(b->opts->dockerfile_name, b->opts->dockerfile_data, b->opts->dockerfile_len, &b->df, err);
        if (r >= 0)
                r = ossb_df_plan_new(b->df, &b->plan, err);
        if (r < 0)
                return r;
        r = platform_parse(ossb_host_platform(), &b->build_platform, err);
        if (r >= 0)
                r = platform_parse(b->opts->platform ? b->opts->platform : ossb_host_platform(), &b->target_platform, err);
        if (r >= 0)
                r = open_context(b, err);
        if (r >= 0)
                r = global_args(b, err);
        if (r < 0)
                return r;
        r = ossb_mkdir_p(b->opts->cache_dir, 0700);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_INTERNAL, r, "cannot create cache directory `%s`: %s", b->opts->cache_dir,
                                       strerror(-r));
        r = ossb_store_open(store, &b->store, err);
        if (r >= 0)
                r = make_workdir(b, err);
        if (r >= 0)
                r = ossb_build_snapshotter_init(b, err);
        if (r >= 0) {
                struct ossb_error *cerr = NULL;
                if (ossb_cache_open(b->opts->cache_dir, &b->cache, &cerr) < 0) {
                        log_warn("step cache unavailable: %s", cerr && cerr->msg ? cerr->msg : "?");
                        ossb_error_free(cerr);
                }
        }
        return r;
}

static int select_target(struct build *b, struct stage_state **ret, struct ossb_error **err)
{
        if (b->opts->target) {
                const struct ossb_df_stage *st = ossb_df_plan_find_stage(b->plan, b->opts->target);
                if (!st || !st->name || strcasecmp(st->name, b->opts->target) != 0)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOENT, "%s: target stage `%s` could not be found",
                                               b->df->path, b->opts->target);
                *ret = &b->stages[st->index];
                return 0;
        }
        *ret = &b->stages[b->n_stages - 1];
        return 0;
}

/* Whether an output holds the layer blobs themselves (an OCI layout or archive): a push
 * mounts what the registry already has. */
static bool outputs_hold_blobs(const struct build *b)
{
        for (size_t i = 0; i < b->opts->n_outputs; i++)
                if (b->opts->outputs[i].type != OSSB_OUTPUT_REGISTRY)
                        return true;
        return false;
}

int ossb_build(const struct ossb_build_opts *opts, struct ossb_build_result *ret, struct ossb_error **err)
{
        struct build b = { .opts = opts, .progress = { .mode = opts->progress }, .snapshotter = opts->snapshotter,
                           .lock = PTHREAD_MUTEX_INITIALIZER };
        struct stage_state *target = NULL;
        struct tags tags = { 0 };
        int r;

        if (b.progress.mode == OSSB_PROGRESS_AUTO)
                b.progress.mode = isatty(STDERR_FILENO) ? OSSB_PROGRESS_TTY : OSSB_PROGRESS_PLAIN;
        set_times(&b);
        r = tags_prepare(&b, &tags, err); /* bad tags fail before any work */
        if (r >= 0)
                r = build_prepare(&b, err);
        if (r < 0)
                goto out;
        b.n_stages = b.plan->n_stages;
        b.stages = calloc(b.n_stages, sizeof(*b.stages));
        if (!b.stages) {
                r = ossb_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < b.n_stages; i++) {
                b.stages[i].stage = &b.plan->stages[i];
                b.stages[i].root.fd = -1;
        }
        r = select_target(&b, &target, err);
        if (r >= 0)
                r = need_stage(&b, target, err);
        /* only these stages' layers are written; other stages just provide files */
        for (struct stage_state *e = r >= 0 ? target : NULL; e; e = e->base)
                e->exported = true;
        if (r >= 0)
                r = run_needed(&b, target, err);
        if (b.n_lazy) {
                ossb_lazy_report(&b);
                if (r >= 0)
                        r = ossb_lazy_check(&b, err);
        }
        if (r >= 0 && b.n_lazy && outputs_hold_blobs(&b))
                r = ossb_lazy_materialize(&b, err);
        if (r >= 0)
                r = export_image(&b, target, &tags, ret, err);
        if (r >= 0)
                warn_unused_args(&b);
out:
        tags_free(&tags);
        build_free(&b);
        return r;
}
