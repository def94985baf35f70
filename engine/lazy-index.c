/* engine/lazy-index.c - plain gzip base layers read lazily through a checkpoint index found
 * in the cache or the registry (see lazy-index.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "engine/lazy-index.h"
#include "fuse/source-zran.h"
#include "oci/zran.h"
#include "registry/referrers.h"

struct ossb_lazy_index {
        char *cache_dir;
        char manifest[OSSB_DIGEST_STR_LEN + 1];
        bool listed;                   /* the registry was asked (whatever it said) */
        struct ossb_referrer *refs;    /* the image's index artifacts */
        size_t n_refs;
};

struct ossb_lazy_index *ossb_lazy_index_new(const char *cache_dir, const char *manifest_digest)
{
        struct ossb_lazy_index *ix = calloc(1, sizeof(*ix));
        if (!ix)
                return NULL;
        ix->cache_dir = strdup(cache_dir);
        if (!ix->cache_dir) {
                free(ix);
                return NULL;
        }
        if (manifest_digest && ossb_digest_is_valid(manifest_digest))
                memcpy(ix->manifest, manifest_digest, sizeof(ix->manifest));
        return ix;
}

void ossb_lazy_index_free(struct ossb_lazy_index *ix)
{
        if (!ix)
                return;
        ossb_referrers_free(ix->refs, ix->n_refs);
        free(ix->cache_dir);
        free(ix);
}

static bool is_gzip_layer(const struct ossb_descriptor *d)
{
        return d->media_type && (streq(d->media_type, OSSB_MT_OCI_LAYER_GZIP) || streq(d->media_type, OSSB_MT_DOCKER_LAYER_GZIP));
}

/* The image's index artifacts, asked once. */
static void list_artifacts(struct ossb_lazy_index *ix, struct ossb_repo *repo)
{
        if (ix->listed || !ix->manifest[0])
                return;
        ix->listed = true;
        struct ossb_error *e = NULL;
        bool tags = false;
        int k = ossb_referrers_list(repo, ix->manifest, OSSB_ZRAN_MEDIA_TYPE, &ix->refs, &ix->n_refs, &tags, &e);
        if (k < 0)
                log_warn("%s: cannot list the artifacts of %s (layers without a seekable format are pulled in full): %s",
                         ossb_repo_name(repo), ix->manifest, e && e->msg ? e->msg : strerror(-k));
        else
                log_debug("%s: %zu checkpoint index artifact(s) for %s%s", ossb_repo_name(repo), ix->n_refs, ix->manifest,
                          tags ? " (tag schema)" : "");
        ossb_error_free(e);
}

/* The descriptor of layer `layer`'s index blob in artifact `r`: 1 found, 0 not there. */
static int find_in_artifact(struct ossb_repo *repo, const struct ossb_referrer *r, const char *layer,
                            struct ossb_descriptor *ret, struct ossb_error **err)
{
        struct ossb_fetched_manifest m = { 0 };
        json_object *root = NULL, *layers;
        int k = ossb_repo_get_manifest(repo, r->digest, &m, err);
        if (k >= 0)
                k = ossb_json_parse(m.data, m.len, OSSB_MANIFEST_MAX_SIZE, &root, err);
        ossb_fetched_manifest_clear(&m);
        if (k < 0)
                return k;
        k = 0;
        if (json_object_object_get_ex(root, "layers", &layers) && json_object_is_type(layers, json_type_array))
                for (size_t i = 0; k == 0 && i < json_object_array_length(layers); i++) {
                        struct ossb_descriptor d = { 0 };
                        json_object *v;
                        if (ossb_descriptor_from_json(json_object_array_get_idx(layers, i), &d, NULL) < 0)
                                continue;
                        if (streq(d.media_type, OSSB_ZRAN_MEDIA_TYPE) && d.annotations &&
                            json_object_object_get_ex(d.annotations, OSSB_ZRAN_ANNOTATION_LAYER, &v) &&
                            streq(json_object_get_string(v), layer)) {
                                *ret = d;
                                k = 1;
                        } else
                                ossb_descriptor_clear(&d);
                }
        json_object_put(root);
        return k;
}

/* Fetch layer d's index from the registry, check it and keep it in the cache. */
static int from_registry(struct ossb_lazy_index *ix, struct ossb_repo *repo, const struct ossb_descriptor *d,
                         struct ossb_zran **ret, struct ossb_error **err)
{
        list_artifacts(ix, repo);
        for (size_t i = 0; i < ix->n_refs; i++) {
                struct ossb_descriptor bd = { 0 };
                int k = find_in_artifact(repo, &ix->refs[i], d->digest, &bd, err);
                if (k <= 0) {
                        if (k < 0)
                                return k;
                        continue;
                }
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                k = ossb_referrers_fetch_blob(repo, bd.digest, bd.size, OSSB_ZRAN_MAX_INDEX, &data, &len, err);
                ossb_descriptor_clear(&bd);
                struct ossb_zran *z = NULL;
                if (k >= 0)
                        k = ossb_zran_decode(data, len, &z, err);
                if (k >= 0 && (!streq(z->layer_digest, d->digest) || z->blob_size != d->size)) {
                        ossb_zran_free(z);
                        k = ossb_error_set(err, -EBADMSG, "the index in artifact %s is for %s, not this layer",
                                           ix->refs[i].digest, z->layer_digest);
                }
                if (k < 0)
                        return k;
                struct ossb_error *e = NULL;
                if (ossb_zran_cache_store(ix->cache_dir, data, len, NULL, &e) < 0)
                        log_warn("cannot keep the index of %s: %s", d->digest, e && e->msg ? e->msg : "failed");
                ossb_error_free(e);
                *ret = z;
                return 0;
        }
        return -ENOENT;
}

int ossb_lazy_index_source(struct ossb_lazy_index *ix, struct ossb_repo *repo, const struct ossb_descriptor *d,
                           const char *name, ossb_fs_remote_fetch_fn fetch, void *fetch_userdata, bool background,
                           struct ossb_fs_source **ret, struct ossb_error **err)
{
        if (!ix || !is_gzip_layer(d))
                return -ENOENT;
        struct ossb_zran *z = NULL;
        int k = ossb_zran_cache_load(ix->cache_dir, d->digest, d->size, &z, NULL);
        if (k == -ENOENT) {
                struct ossb_error *e = NULL;
                k = from_registry(ix, repo, d, &z, &e);
                if (k < 0 && k != -ENOENT)
                        log_warn("%s: its checkpoint index is unusable (pulled in full): %s", name,
                                 e && e->msg ? e->msg : strerror(-k));
                ossb_error_free(e);
                if (k < 0)
                        return -ENOENT;
        } else if (k < 0)
                return -ENOENT;
        const struct ossb_fs_zran_opts o = {
                .name = name,
                .index = z,
                .fetch = fetch,
                .fetch_userdata = fetch_userdata,
                .cache_dir = ix->cache_dir,
                .background = background,
                .verify_cache = true, /* chunks are stored without fsync (fuse/chunkcache.h) */
        };
        k = ossb_fs_source_zran_new(&o, ret, err);
        if (k >= 0)
                log_debug("%s: read through its checkpoint index", name);
        return k;
}
