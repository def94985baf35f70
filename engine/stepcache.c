/* engine/stepcache.c - the build's use of the step cache (engine/cache.h).
 *
 * Every stage carries a chain key.  FROM starts it (an image: its manifest digest; scratch:
 * the platform; FROM <stage>: that stage's key).  Each instruction's step key is
 * H(chain, the instruction as written, its heredocs, the environment and build args it sees,
 * the image's container config (User, WorkingDir, Shell, ...), the build's network mode);
 * after the step the chain becomes H(step key, and for COPY/ADD a digest of the sources by
 * content, mode, owner, xattrs and link targets, never mtimes: engine/cache.h), so touching or
 * changing a context file that no COPY selects invalidates nothing, and a COPY --from a
 * rebuilt stage is keyed on what that stage now holds.  A hit and a miss give the same chain.  RUN steps are looked up by their step key: a hit applies the cached layer to the
 * stage root (unpacked, whiteouts applied, DiffID checked) instead of running anything.
 * Entries keep the layer descriptor's annotations (a seekable layer's TOC digest), which a
 * hit puts back into the stage's layer list; an entry without them is a miss for a build
 * writing seekable layers (lacks_annotations).
 * Secrets are never part of a key: only the instruction text (with its --mount specs) is. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/cache.h"
#include "oci/unpack.h"

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

int ossb_stepcache_from(struct build *b, struct stage_state *s, const char *what, struct ossb_error **err)
{
        struct ossb_cache_key k = { 0 };
        char plat[128];
        snprintf(plat, sizeof(plat), "%s/%s/%s", s->platform.os, s->platform.architecture, s->platform.variant);
        (void) b;
        if (ossb_cache_key_init(&k, s->base ? s->base->cache_key : NULL) < 0 ||
            ossb_cache_key_add_str(&k, "from", what) < 0 || ossb_cache_key_add_str(&k, "platform", plat) < 0 ||
            ossb_cache_key_final(&k, s->cache_key) < 0) {
                ossb_cache_key_clear(&k);
                return oom(err);
        }
        return 0;
}

int ossb_stepcache_step_key(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                            struct ossb_error **err)
{
        struct ossb_cache_key k = { 0 };
        _cleanup_strv_free_ char **env = ossb_stage_env(s);
        json_object *cfg = ossb_config_container(s->img);
        const char *text = inst->node ? inst->node->original : "";
        int r = env && cfg ? 0 : -ENOMEM;
        if (r >= 0)
                r = ossb_cache_key_init(&k, s->cache_key);
        if (r >= 0)
                r = ossb_cache_key_add_str(&k, "instruction", text);
        for (size_t i = 0; r >= 0 && inst->node && i < inst->node->n_heredocs; i++)
                r = ossb_cache_key_add_str(&k, "heredoc", inst->node->heredocs[i].content);
        if (r >= 0)
                r = ossb_cache_key_add_strv(&k, "env", env);
        if (r >= 0)
                r = ossb_cache_key_add_str(&k, "config", ossb_json_to_string(cfg));
        if (r >= 0)
                r = ossb_cache_key_add_u64(&k, "network-none", b->opts->network_none);
        /* how layers are written: a cached layer must be what this build would write */
        if (r >= 0)
                r = ossb_cache_key_add_u64(&k, "compression", (uint64_t) b->opts->compression);
        if (r >= 0)
                r = ossb_cache_key_add_u64(&k, "level", (uint64_t) (int64_t) b->opts->compression_level);
        if (r >= 0)
                r = ossb_cache_key_add_u64(&k, "source-date-epoch", (uint64_t) b->opts->source_date_epoch);
        if (r >= 0)
                r = ossb_cache_key_final(&k, s->step_key);
        ossb_cache_key_clear(&k);
        return r < 0 ? oom(err) : 0;
}

/* A RUN that reads a bind mount (type=bind is the default type) depends on content its key
 * does not cover: it is never served from the cache, and the chain after it is unique. */
static bool run_reads_binds(const struct ossb_df_inst *inst)
{
        for (size_t i = 0; inst->kind == OSSB_DF_RUN && inst->run_mounts && inst->run_mounts[i]; i++) {
                const char *m = inst->run_mounts[i];
                if (!strstr(m, "type=") || strstr(m, "type=bind") || strstr(m, "from="))
                        return true;
        }
        return false;
}

/* --no-cache-filter names this stage (by name, or by index for unnamed stages). */
static bool filtered(const struct build *b, const struct stage_state *s)
{
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", s->stage->index);
        for (size_t i = 0; b->opts->no_cache_filter && b->opts->no_cache_filter[i]; i++) {
                const char *f = b->opts->no_cache_filter[i];
                if ((s->stage->name && strcasecmp(f, s->stage->name) == 0) || streq(f, idx))
                        return true;
        }
        return false;
}

static int ignore_filter(const char *rel, bool is_dir, void *userdata)
{
        const struct ossb_dockerignore *di = userdata;
        if (!ossb_dockerignore_excluded(di, rel))
                return OSSB_CACHE_WALK_INCLUDE;
        if (is_dir && ossb_dockerignore_must_descend(di, rel))
                return OSSB_CACHE_WALK_SKIP;
        return OSSB_CACHE_WALK_PRUNE;
}

/* The sources of a COPY/ADD as paths of their tree: "." (the whole tree, .dockerignore
 * applied) when a source has glob characters; NULL for a remote ADD (not content-addressed
 * here). */
static int copy_sources(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, char ***ret,
                        struct ossb_error **err)
{
        _cleanup_strv_free_ char **env = ossb_stage_env(s), **paths = ossb_strv_new_empty();
        if (!env || !paths)
                return oom(err);
        for (size_t i = 0; inst->sources && inst->sources[i]; i++) {
                _cleanup_free_ char *w = NULL;
                if (strncmp(inst->sources[i], "<<", 2) == 0) /* heredoc: its text is in the key */
                        continue;
                int r = ossb_expand(b, env, inst->sources[i], &w, err);
                if (r < 0)
                        return r;
                if (strstr(w, "://") || strncmp(w, "git@", 4) == 0) {
                        *ret = NULL;
                        return 0;
                }
                if (strpbrk(w, "*?[\\")) {
                        ossb_strv_free(paths);
                        paths = ossb_strv_new_empty();
                        if (!paths || ossb_strv_push(&paths, ".") < 0)
                                return oom(err);
                        break;
                }
                if (ossb_strv_push(&paths, w) < 0)
                        return oom(err);
        }
        *ret = TAKE_PTR(paths);
        return 0;
}

/* A value no other build produces: for what cannot be keyed by content. */
static void unique_digest(const struct stage_state *s, char out[65])
{
        snprintf(out, 65, "%064lx", (unsigned long) getpid() ^ (unsigned long) (uintptr_t) s);
}

/* H(paths of the COPY/ADD sources in their tree): 0.  When that cannot be computed (a remote
 * source, or a source the walk cannot read) a per-build unique value, so that no later build
 * matches by mistake: 1. */
static int copy_digest(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, char out[65],
                       struct ossb_error **err)
{
        _cleanup_strv_free_ char **paths = NULL;
        const struct ossb_tree *tree = &b->context;
        const struct ossb_dockerignore *di = b->ignore;
        int r = copy_sources(b, s, inst, &paths, err);
        if (r < 0)
                return r;
        if (!paths) {
                unique_digest(s, out);
                return 1;
        }
        if (inst->copy_from) {
                _cleanup_free_ char *from = NULL;
                r = ossb_expand(b, b->meta_env, inst->copy_from, &from, err);
                if (r < 0)
                        return r;
                struct stage_state *src = ossb_find_stage(b, from);
                if (src)
                        tree = &src->root;
                else if ((r = ossb_image_source(b, from, &tree, err)) < 0)
                        return r;
                di = NULL;
        }
        struct ossb_error *e = NULL;
        r = ossb_cache_digest_paths_at(tree->fd, paths, di ? ignore_filter : NULL, (void *) di, out, &e);
        if (r < 0) { /* the step succeeded, so a source is e.g. a glob's non-match */
                ossb_error_free(e);
                unique_digest(s, out);
                return 1;
        }
        return 0;
}

int ossb_stepcache_advance(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                           struct ossb_error **err)
{
        struct ossb_cache_key k = { 0 };
        char digest[65];
        int r = ossb_cache_key_init(&k, s->step_key);
        if (r >= 0 && (inst->kind == OSSB_DF_COPY || inst->kind == OSSB_DF_ADD)) {
                /* what the step copied, by content (not mtimes), as BuildKit keys COPY */
                if (s->sources_digest[0])
                        memcpy(digest, s->sources_digest, sizeof(digest));
                else if ((r = copy_digest(b, s, inst, digest, err)) < 0) {
                        ossb_cache_key_clear(&k);
                        return r;
                }
                s->sources_digest[0] = '\0';
                r = ossb_cache_key_add_str(&k, "sources", digest);
        } else if (r >= 0 && run_reads_binds(inst)) {
                unique_digest(s, digest);
                r = ossb_cache_key_add_str(&k, "unkeyed-mount", digest);
        }
        if (r >= 0)
                r = ossb_cache_key_final(&k, s->cache_key);
        ossb_cache_key_clear(&k);
        return r < 0 ? oom(err) : 0;
}

/* Apply a cached layer to the stage root and record it as the step's layer. */
static int apply_hit(struct build *b, struct stage_state *s, const struct ossb_cache_entry *e, const char *created_by,
                     struct ossb_error **err)
{
        if (e->empty)
                return ossb_stage_history(b, s, created_by, true) < 0 ? oom(err) : 0;
        int fd = -1;
        int r = 0;
        if (s->fs)
                r = ossb_stage_push_cached_layer(b, s, e->digest, e->diff_id, err);
        else if ((r = ossb_store_open_blob(b->store, e->digest, &fd, err)) >= 0) {
                r = ossb_layer_unpack(fd, e->digest, s->root.path, e->diff_id, NULL, NULL, err);
                close(fd);
        }
        if (r < 0)
                return ossb_error_wrap(err, "applying the cached layer %s", e->digest);
        return ossb_stage_add_layer_annotated(b, s, e->digest, e->size, e->diff_id, e->annotations, created_by, err);
}

/* A seekable layer is lazily pullable only with its annotations (its TOC digest): an entry
 * written without them (by an ossb that did not keep them) for a build that writes such
 * layers is a miss, and the step's result replaces it. */
static bool lacks_annotations(const struct build *b, const struct ossb_cache_entry *e)
{
        enum ossb_compression c = b->opts->compression;
        bool seekable = c == OSSB_COMPRESSION_ESTARGZ || c == OSSB_COMPRESSION_ZSTD_CHUNKED;
        return seekable && !e->empty && !e->annotations;
}

int ossb_stepcache_run_lookup(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                              const char *created_by, bool *ret_hit, struct ossb_error **err)
{
        struct ossb_cache_entry e = { 0 };
        bool hit = false;
        *ret_hit = false;
        if (!b->cache || b->opts->no_cache || !s->exported || run_reads_binds(inst) || filtered(b, s))
                return 0;
        int r = ossb_cache_get(b->cache, s->step_key, &e, &hit, err);
        if (r < 0)
                return r;
        if (hit && ((!e.empty && !ossb_store_has(b->store, e.digest)) || lacks_annotations(b, &e))) {
                /* pruned meanwhile, or stored without the annotations: a miss */
                (void) ossb_cache_remove(b->cache, s->step_key, NULL);
                hit = false;
        }
        if (hit) {
                r = apply_hit(b, s, &e, created_by, err);
                if (r >= 0) {
                        ossb_progress_note(b, s->step_id, "CACHED");
                        *ret_hit = true;
                }
        }
        ossb_cache_entry_clear(&e);
        return r;
}

int ossb_stepcache_run_store(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, bool empty,
                             const char *digest, int64_t size, const char *diff_id)
{
        return ossb_stepcache_run_store_annotated(b, s, inst, empty, digest, size, diff_id, NULL);
}

int ossb_stepcache_run_store_annotated(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                                       bool empty, const char *digest, int64_t size, const char *diff_id,
                                       json_object *annotations)
{
        if (!b->cache || !s->exported || run_reads_binds(inst))
                return 0;
        struct ossb_cache_entry e = { .empty = empty, .size = size };
        if (!empty) {
                snprintf(e.digest, sizeof(e.digest), "%s", digest);
                snprintf(e.diff_id, sizeof(e.diff_id), "%s", diff_id);
                e.media_type = (char *) ossb_compression_media_type(b->opts->compression);
                e.annotations = annotations;
        }
        struct ossb_error *err = NULL;
        int r = ossb_cache_put(b->cache, s->step_key, &e, &err);
        if (r < 0) { /* a cache that cannot be written costs speed, not correctness */
                log_warn("step cache: %s", err && err->msg ? err->msg : "cannot store the entry");
                ossb_error_free(err);
        }
        return 0;
}

/* ---- COPY/ADD ------------------------------------------------------------------------------ */

/* The cache key of a COPY/ADD: H(step key, its sources' digest); 0 when the step is not
 * cached (no cache, a stage only copied from, a remote source: *ret_key empty). */
static int copy_key(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, char key[65],
                    struct ossb_error **err)
{
        struct ossb_cache_key k = { 0 };
        key[0] = '\0';
        s->sources_digest[0] = '\0';
        if (!b->cache || !s->exported)
                return 0;
        char digest[65];
        int r = copy_digest(b, s, inst, digest, err);
        if (r < 0)
                return r;
        memcpy(s->sources_digest, digest, sizeof(digest));
        if (r > 0) /* not keyed by content: never cached */
                return 0;
        r = ossb_cache_key_init(&k, s->step_key);
        if (r >= 0)
                r = ossb_cache_key_add_str(&k, "copy-sources", digest);
        if (r >= 0)
                r = ossb_cache_key_final(&k, key);
        ossb_cache_key_clear(&k);
        return r < 0 ? oom(err) : 0;
}

/* A layer entry (COPY, ADD, WORKDIR: its history text in `extra`) under `key`: applied on a hit. */
static int layer_lookup(struct build *b, struct stage_state *s, const char *key, bool *ret_hit,
                        struct ossb_error **err)
{
        struct ossb_cache_entry e = { 0 };
        bool hit = false;
        int r = ossb_cache_get(b->cache, key, &e, &hit, err);
        if (r < 0)
                return r;
        json_object *extra = NULL;
        if (hit && (e.empty || !ossb_store_has(b->store, e.digest) || lacks_annotations(b, &e) || !e.extra ||
                    ossb_json_parse(e.extra, strlen(e.extra), 1 << 20, &extra, NULL) < 0 ||
                    !json_object_is_type(extra, json_type_string))) {
                (void) ossb_cache_remove(b->cache, key, NULL);
                hit = false;
        }
        if (hit) {
                r = apply_hit(b, s, &e, json_object_get_string(extra), err);
                if (r >= 0) {
                        ossb_progress_note(b, s->step_id, "CACHED");
                        *ret_hit = true;
                }
        }
        if (extra)
                json_object_put(extra);
        ossb_cache_entry_clear(&e);
        return r;
}

int ossb_stepcache_copy_lookup(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst,
                               char key[65], bool *ret_hit, struct ossb_error **err)
{
        *ret_hit = false;
        int r = copy_key(b, s, inst, key, err);
        if (r < 0 || !key[0] || b->opts->no_cache || filtered(b, s))
                return r;
        return layer_lookup(b, s, key, ret_hit, err);
}

int ossb_stepcache_workdir_lookup(struct build *b, struct stage_state *s, char key[65], bool *ret_hit,
                                  struct ossb_error **err)
{
        *ret_hit = false;
        key[0] = '\0';
        if (!b->cache || !s->exported)
                return 0;
        memcpy(key, s->step_key, 65);
        if (b->opts->no_cache || filtered(b, s))
                return 0;
        return layer_lookup(b, s, key, ret_hit, err);
}

void ossb_stepcache_copy_store(struct build *b, struct stage_state *s, const char *key, const char *created_by)
{
        if (!b->cache || !key[0] || !s->exported || !s->n_layers)
                return;
        const struct ossb_descriptor *d = &s->layers[s->n_layers - 1];
        json_object *rootfs = NULL, *ids = NULL, *str = json_object_new_string(created_by);
        json_object_object_get_ex(s->img, "rootfs", &rootfs);
        json_object_object_get_ex(rootfs, "diff_ids", &ids);
        size_t n = ids ? json_object_array_length(ids) : 0;
        const char *diff_id = n ? json_object_get_string(json_object_array_get_idx(ids, n - 1)) : NULL;
        if (!str || !diff_id) {
                json_object_put(str);
                return;
        }
        struct ossb_cache_entry e = { .size = d->size, .media_type = d->media_type,
                                      .extra = (char *) ossb_json_to_string(str), .annotations = d->annotations };
        snprintf(e.digest, sizeof(e.digest), "%s", d->digest);
        snprintf(e.diff_id, sizeof(e.diff_id), "%s", diff_id);
        struct ossb_error *err = NULL;
        if (ossb_cache_put(b->cache, key, &e, &err) < 0) {
                log_warn("step cache: %s", err && err->msg ? err->msg : "cannot store the entry");
                ossb_error_free(err);
        }
        json_object_put(str);
}
