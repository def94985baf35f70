/* engine/layers.c - stage roots as stacks of overlay layers (snapshotter/stagefs.h), when the
 * build's snapshotter is overlay or fuse: base image layers unpacked once into the layer store and
 * shared by every build, several at a time; cache hits stacked as layers instead of applied;
 * each stage's view mounted when a step needs its files.  With the native snapshotter stages
 * keep plain directories (build.c, baseimage.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "engine/build-internal.h"
#include "oci/unpack.h"
#include "registry/pull.h"
#include "snapshotter/layerstore.h"
#include "snapshotter/stagefs.h"

int ossb_build_snapshotter_init(struct build *b, struct ossb_error **err)
{
        if (b->snapshotter == OSSB_SNAPSHOT_AUTO) {
                /* said at the first RUN (run.c): builds without one do not care */
                const char *reason = NULL;
                b->snapshotter = ossb_snapshot_backend_auto(b->workdir, &reason);
                b->snapshotter_reason = strdup(reason ? reason : "");
                if (!b->snapshotter_reason)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (b->snapshotter != OSSB_SNAPSHOT_OVERLAY && b->snapshotter != OSSB_SNAPSHOT_FUSE)
                return 0;
        return ossb_layerstore_open(b->opts->cache_dir, &b->layers, err);
}

int ossb_stage_fs_new(struct build *b, struct stage_state *s, const char *dir, struct ossb_error **err)
{
        int r = ossb_stagefs_new(dir, b->snapshotter, ossb_layerstore_userxattr(b->layers), &s->fs, err);
        if (r >= 0 && s->base)
                r = ossb_stagefs_inherit(s->fs, s->base->fs, err);
        return r;
}

int ossb_stage_root_ready(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        (void) b;
        if (!s->fs || s->root.fd >= 0)
                return 0;
        int r = ossb_stagefs_mount(s->fs, err);
        if (r >= 0)
                r = ossb_tree_open(ossb_stagefs_root(s->fs), &s->root, err);
        return r;
}

void ossb_stage_root_release(struct stage_state *s)
{
        if (s->fs && s->root.fd >= 0)
                ossb_tree_close(&s->root);
}

int ossb_stage_finish(struct build *b, struct stage_state *s, struct ossb_error **err)
{
        if (!s->fs)
                return 0;
        ossb_stage_root_release(s);
        int r = ossb_stagefs_finish(s->fs, err);
        if (r >= 0)
                r = ossb_stage_root_ready(b, s, err);
        return r;
}

/* ---- layers into the layer store ---- */

struct fill_blob {
        struct ossb_store *store;
        const char *digest;
        const char *diff_id;
        bool userxattr;
        struct ossb_unpack_stats stats;
};

static int fill_from_blob(const char *dir, void *userdata, struct ossb_error **err)
{
        struct fill_blob *f = userdata;
        const struct ossb_unpack_opts o = { .overlay_format = true, .userxattr = f->userxattr };
        int fd = -1;
        int r = ossb_store_open_blob(f->store, f->digest, &fd, err);
        if (r < 0)
                return r;
        r = ossb_layer_unpack_ex(fd, f->digest, dir, &o, f->diff_id, NULL, &f->stats, err);
        close(fd);
        return r;
}

/* The layer (blob `digest`, DiffID `diff_id`) from the layer store, unpacked from the blob
 * store when missing. */
static int layer_get(struct build *b, const char *digest, const char *diff_id, struct ossb_layerdir *ret,
                     struct ossb_unpack_stats *stats, struct ossb_error **err)
{
        struct fill_blob f = { .store = b->store, .digest = digest, .diff_id = diff_id,
                               .userxattr = ossb_layerstore_userxattr(b->layers) };
        int r = ossb_layerstore_get(b->layers, diff_id, fill_from_blob, &f, ret, err);
        if (stats) {
                stats->chown_skipped += f.stats.chown_skipped;
                stats->devices_skipped += f.stats.devices_skipped;
                stats->entries += f.stats.entries;
        }
        return r;
}

int ossb_stage_push_cached_layer(struct build *b, struct stage_state *s, const char *digest, const char *diff_id,
                                 struct ossb_error **err)
{
        struct ossb_layerdir ld = { .lock_fd = -1 };
        ossb_stage_root_release(s);
        int r = layer_get(b, digest, diff_id, &ld, NULL, err);
        if (r >= 0)
                r = ossb_stagefs_push_layer(s->fs, &ld, err);
        ossb_layerdir_release(&ld);
        return r;
}

struct pull_fill {
        struct build *b;
        pthread_mutex_t lock;
        struct ossb_unpack_stats stats;
};

static int consume_layer(void *userdata, size_t index, const struct ossb_descriptor *layer, const char *diff_id,
                         struct ossb_error **err)
{
        struct pull_fill *pf = userdata;
        struct ossb_layerdir ld = { .lock_fd = -1 };
        struct ossb_unpack_stats st = { 0 };
        if (!diff_id)
                return ossb_error_set(err, -EBADMSG, "the image config lists no DiffID for layer %zu", index + 1);
        int r = layer_get(pf->b, layer->digest, diff_id, &ld, &st, err);
        ossb_layerdir_release(&ld);
        pthread_mutex_lock(&pf->lock);
        pf->stats.chown_skipped += st.chown_skipped;
        pf->stats.devices_skipped += st.devices_skipped;
        pf->stats.entries += st.entries;
        pthread_mutex_unlock(&pf->lock);
        return r < 0 ? ossb_error_wrap(err, "layer %zu (%s)", index + 1, layer->digest) : 0;
}

static const char *diff_id_at(const struct ossb_pulled_image *p, size_t i)
{
        json_object *rootfs = NULL, *ids = NULL;
        json_object_object_get_ex(p->config, "rootfs", &rootfs);
        json_object_object_get_ex(rootfs, "diff_ids", &ids);
        return json_object_get_string(json_object_array_get_idx(ids, i));
}

static unsigned unpack_workers(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned) n : 1;
}

int ossb_stage_fs_from_pulled(struct build *b, struct stage_state *s, struct ossb_registry *reg,
                              const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                              struct ossb_unpack_stats *ret_stats, struct ossb_error **err)
{
        size_t n = p->parsed->n_layers;
        _cleanup_free_ bool *want = calloc(n ? n : 1, sizeof(bool));
        _cleanup_free_ struct lazy_layer **lazy = calloc(n ? n : 1, sizeof(*lazy));
        struct pull_fill pf = { .b = b };
        if (!want || !lazy)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_lazy_enabled(b) ? ossb_lazy_layers(b, ref, p, lazy, err) : 0;
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const char *id = diff_id_at(p, i);
                want[i] = !lazy[i] && (!id || !ossb_layerstore_has(b->layers, id));
        }
        pthread_mutex_init(&pf.lock, NULL);
        r = ossb_pull_layers(reg, b->store, ref, p, want, unpack_workers(), consume_layer, &pf, err);
        pthread_mutex_destroy(&pf.lock);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct ossb_layerdir ld = { .lock_fd = -1 };
                if (lazy[i]) {
                        r = ossb_lazy_push(s->fs, lazy[i], err);
                        continue;
                }
                r = layer_get(b, p->parsed->layers[i].digest, diff_id_at(p, i), &ld, &pf.stats, err);
                if (r >= 0)
                        r = ossb_stagefs_push_layer(s->fs, &ld, err);
                ossb_layerdir_release(&ld);
        }
        *ret_stats = pf.stats;
        return r;
}
