/* engine/build-internal.h - state shared by the files of the build (build.c, dispatch.c,
 * progress.c); never included from outside engine/. */
#ifndef OSSB_ENGINE_BUILD_INTERNAL_H
#define OSSB_ENGINE_BUILD_INTERNAL_H

#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>

#include <json-c/json.h>

#include "engine/cache.h"
#include "engine/imageconfig.h"
#include "engine/dockerfile/dockerignore.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"
#include "engine/engine.h"
#include "engine/rootfs.h"
#include "oci/image.h"
#include "oci/store.h"
#include "registry/client.h"
#include "registry/progress.h"
#include "snapshotter/layerstore.h"
#include "snapshotter/snapshotter.h"
#include "snapshotter/stagefs.h"

struct stage_state {
        const struct ossb_df_stage *stage;
        bool needed;
        bool exported;                /* its layers end up in the output: the target and its FROM chain */
        bool visiting;
        bool started;                 /* a thread runs it (parallel stages) */
        char from_digest[OSSB_DIGEST_STR_LEN + 1]; /* FROM <image>: the manifest pulled */
        char cache_key[65];           /* step cache chain (engine/stepcache.c) */
        char step_key[65];            /* the key of the step being run */
        char sources_digest[65];      /* COPY/ADD: its sources' digest, computed once per step */
        int step_id;                  /* its progress id */
        bool done;
        char *base_image;             /* FROM, expanded */
        struct stage_state *base;     /* FROM <stage>, or NULL */
        struct stage_state **deps;    /* stages its COPY/ADD --from name, found while planning */
        size_t n_deps;
        struct ossb_tree root;        /* the stage's root file system (with fs: its view, open while mounted) */
        struct ossb_stagefs *fs;      /* overlay snapshotter: the root as a stack of layers (layers.c) */
        json_object *img;             /* image config */
        struct ossb_descriptor *layers;
        size_t n_layers;
        char **args;                  /* "K=V" of the stage's ARGs that have a value */
        bool cmd_set;
        struct ossb_platform_spec platform;
};

struct progress {
        enum ossb_progress_mode mode;
        int next_id;
        int64_t started_ns;
};

/* An image used by COPY --from=<image>: pulled and unpacked once per build. */
struct image_source {
        char *name;            /* as written (expanded) */
        struct ossb_tree root;
};

struct build {
        const struct ossb_build_opts *opts;
        struct ossb_dockerfile *df;
        struct ossb_df_plan *plan;
        struct ossb_store *store;
        char *workdir;
        struct ossb_tree context;
        struct ossb_dockerignore *ignore;
        char **meta_env;   /* global ARG values and automatic platform args, "K=V" */
        char **used_args;  /* names of build args some ARG consumed */
        struct stage_state *stages;
        size_t n_stages;
        struct ossb_platform_spec target_platform;
        struct ossb_platform_spec build_platform;
        int64_t now;
        char created[64];
        struct progress progress;
        struct ossb_regconf *own_regconf;    /* defaults when opts->regconf is NULL */
        struct ossb_registry *reg;           /* created on first use */
        struct ossb_transfer_display display;
        struct image_source **images;       /* each allocated alone: trees stay put while stages run */
        size_t n_images;
        enum ossb_snapshot_backend snapshotter; /* opts->snapshotter, AUTO resolved when the build starts */
        char *snapshotter_reason;            /* why AUTO chose it (logged at the first RUN, then freed) */
        struct ossb_cache *cache;            /* the step cache (NULL: not available) */
        struct ossb_layerstore *layers;      /* overlay snapshotter: unpacked image layers (layers.c) */
        struct lazy_layer **lazy;            /* base layers read lazily (lazy.c) */
        size_t n_lazy;
        pthread_mutex_t lock;                /* stages run in parallel: guards the registry client and
                                              * image sources, used_args, the snapshotter choice */
};

/* dispatch.c */
int ossb_dispatch(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err);
/* Expansion env of a stage: its ARGs, then the config's Env (Env wins); caller frees. */
char **ossb_stage_env(const struct stage_state *s);
int ossb_expand(const struct build *b, char *const *env, const char *word, char **ret, struct ossb_error **err);
/* Resolve COPY --from / FROM names to a stage (by name or index); NULL when none. */
struct stage_state *ossb_find_stage(struct build *b, const char *name);
/* "<file>:<line>" context for errors about an instruction. */
int ossb_wrap_inst(const struct build *b, const struct ossb_df_inst *inst, struct ossb_error **err);

/* dispatch.c, shared with run.c */
void ossb_build_layer_opts(const struct build *b, struct ossb_layer_opts *ret);
/* Append a layer (in the store) with its DiffID and a history entry to the stage's image. */
int ossb_stage_add_layer(struct build *b, struct stage_state *s, const char *digest, int64_t size, const char *diff_id,
                         const char *created_by, struct ossb_error **err);
/* The same with the layer descriptor's annotations (a seekable layer's TOC digest; may be
 * NULL): a copy is kept, so that the manifest carries them. */
int ossb_stage_add_layer_annotated(struct build *b, struct stage_state *s, const char *digest, int64_t size,
                                   const char *diff_id, json_object *annotations, const char *created_by,
                                   struct ossb_error **err);
int ossb_stage_history(struct build *b, struct stage_state *s, const char *created_by, bool empty);
/* exec form: the items; shell form: the stage's SHELL (default /bin/sh -c) + [command]. */
int ossb_command_argv(struct stage_state *s, const struct ossb_df_command *c, char ***ret);

/* run.c: RUN in a sandbox on a snapshot of the stage root. */
int ossb_run_step(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err);

/* stepcache.c */
int ossb_stepcache_from(struct build *b, struct stage_state *s, const char *what, struct ossb_error **err);
int ossb_stepcache_step_key(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                            struct ossb_error **err);
int ossb_stepcache_advance(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                           struct ossb_error **err);
/* RUN: a hit applies the cached layer (and history) and sets *ret_hit. */
int ossb_stepcache_run_lookup(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                              const char *created_by, bool *ret_hit, struct ossb_error **err);
int ossb_stepcache_run_store(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, bool empty,
                             const char *digest, int64_t size, const char *diff_id);
/* The same, storing the layer's annotations (may be NULL) with the entry. */
int ossb_stepcache_run_store_annotated(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                                       bool empty, const char *digest, int64_t size, const char *diff_id,
                                       json_object *annotations);

/* COPY/ADD: a hit applies the cached layer and history; *key (65 bytes) is what to store
 * under after a miss ("" when the step is not cached). */
int ossb_stepcache_copy_lookup(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                               char key[65], bool *ret_hit, struct ossb_error **err);
void ossb_stepcache_copy_store(struct build *b, struct stage_state *s, const char *key, const char *created_by);
/* WORKDIR (the directories it creates are a layer): the same, keyed by the step key; stored
 * with ossb_stepcache_copy_store. */
int ossb_stepcache_workdir_lookup(struct build *b, struct stage_state *s, char key[65], bool *ret_hit,
                                  struct ossb_error **err);

/* baseimage.c */
/* Pull FROM <image> for stage s into the directory `dir` (its root): layers unpacked, config,
 * layer descriptors and platform taken from the image. */
int ossb_stage_from_image(struct build *b, struct stage_state *s, const char *dir, struct ossb_error **err);
/* The file tree of an image named in COPY --from (pulled and unpacked on first use). */
int ossb_image_source(struct build *b, const char *name, const struct ossb_tree **ret, struct ossb_error **err);
/* Push the built image to the registries of `refs` (a NULL-terminated vector of names). */
int ossb_push_result(struct build *b, const struct ossb_descriptor *manifest, char *const *refs,
                     struct ossb_error **err);
void ossb_images_free(struct build *b);

/* layers.c: stage roots as stacks of overlay layers (overlay snapshotter) */
/* Resolve --snapshotter=auto (a probe in the work dir); with overlay, open the layer store. */
int ossb_build_snapshotter_init(struct build *b, struct ossb_error **err);
/* A new stacked root for s in `dir` (inheriting its base stage's layers). */
int ossb_stage_fs_new(struct build *b, struct stage_state *s, const char *dir, struct ossb_error **err);
/* Mount the stage's view and open s->root when it is not (nothing for plain roots). */
int ossb_stage_root_ready(struct build *b, struct stage_state *s, struct ossb_error **err);
/* Close s->root before the stack changes (the view is about to be unmounted). */
void ossb_stage_root_release(struct stage_state *s);
/* The stage's last step ran: its view becomes read-only (children and COPY --from share it). */
int ossb_stage_finish(struct build *b, struct stage_state *s, struct ossb_error **err);
/* A cache hit: the layer stacked onto the stage from the layer store (unpacked on first use). */
int ossb_stage_push_cached_layer(struct build *b, struct stage_state *s, const char *digest, const char *diff_id,
                                 struct ossb_error **err);
struct ossb_pulled_image;
struct ossb_reference;
struct ossb_unpack_stats;
/* FROM <image>: the missing layers fetched and unpacked into the layer store in parallel,
 * then all of them stacked onto the stage. */
int ossb_stage_fs_from_pulled(struct build *b, struct stage_state *s, struct ossb_registry *reg,
                              const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                              struct ossb_unpack_stats *ret_stats, struct ossb_error **err);

/* lazy.c: base layers read file by file (fuse snapshotter, seekable layers) */
struct lazy_layer;
bool ossb_lazy_enabled(const struct build *b);
/* ret[i]: layer i of p read lazily, or NULL when it is pulled in full (ret has n_layers slots). */
int ossb_lazy_layers(struct build *b, const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                     struct lazy_layer **ret, struct ossb_error **err);
int ossb_lazy_push(struct ossb_stagefs *fs, struct lazy_layer *l, struct ossb_error **err);
uint64_t ossb_lazy_fetched_bytes(struct build *b);
/* Per lazily read layer: bytes fetched of its size (progress), and read failures (warned). */
void ossb_lazy_report(struct build *b);
/* The first read failure of a lazily read layer, as an error. */
int ossb_lazy_check(struct build *b, struct ossb_error **err);
/* Fetch in full the blobs of lazily read layers the store lacks (for outputs that hold them). */
int ossb_lazy_materialize(struct build *b, struct ossb_error **err);
void ossb_lazy_free_all(struct build *b);
/* Let a push of the result stream the blobs of lazily read layers from their registry. */
void ossb_lazy_set_blob_reader(struct build *b, struct ossb_registry *reg);
/* The registry configuration of the build (its own defaults when the options give none). */
const struct ossb_regconf *ossb_build_regconf(struct build *b);

/* progress.c */
void ossb_progress_lazy(struct build *b, const char *name, const char *digest, uint64_t fetched, int64_t size,
                        uint64_t chunks, uint64_t cache_hits);
int ossb_progress_start(struct build *b, const char *label, const char *text);
void ossb_progress_done(struct build *b, int id, int64_t start_ns, bool failed);
void ossb_progress_note(struct build *b, int id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int64_t ossb_now_ns(void);

#endif
