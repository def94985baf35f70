/* registry/pull.c - reference -> manifest (via an index when there is one) -> config and
 * layers in the store; and the pipelined fetch-and-unpack of a base image's layers. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "registry/pull.h"

#define CONFIG_MAX_SIZE (8 * 1024 * 1024)

static bool is_manifest_type(const char *mt)
{
        return streq(mt, OSSB_MT_OCI_MANIFEST) || streq(mt, OSSB_MT_DOCKER_MANIFEST);
}

static bool is_config_type(const char *mt)
{
        return streq(mt, OSSB_MT_OCI_CONFIG) || streq(mt, OSSB_MT_DOCKER_CONFIG);
}

static bool is_layer_type(const char *mt)
{
        return streq(mt, OSSB_MT_OCI_LAYER) || streq(mt, OSSB_MT_OCI_LAYER_GZIP) || streq(mt, OSSB_MT_OCI_LAYER_ZSTD) ||
               streq(mt, OSSB_MT_DOCKER_LAYER_GZIP) || streq(mt, "application/vnd.docker.image.rootfs.diff.tar");
}

static int registry_error(struct ossb_error **err)
{
        ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
        return (*err) ? (*err)->code : -EIO;
}

void ossb_pulled_image_clear(struct ossb_pulled_image *p)
{
        if (!p)
                return;
        free(p->name);
        ossb_fetched_manifest_clear(&p->top);
        ossb_descriptor_clear(&p->manifest);
        ossb_manifest_free(p->parsed);
        if (p->config)
                json_object_put(p->config);
        memset(p, 0, sizeof(*p));
}

/* The top object is an index: store it, choose the platform's manifest, fetch that. */
static int resolve_index(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_platform *want,
                         struct ossb_pulled_image *p, struct ossb_fetched_manifest *ret, struct ossb_error **err)
{
        struct ossb_index *ix = NULL;
        const struct ossb_index_entry *e = NULL;
        int r = ossb_index_parse(p->top.data, p->top.len, &ix, err);
        if (r >= 0)
                r = ossb_index_select(ix, want, p->name, &e, err);
        if (r >= 0 && !is_manifest_type(e->desc.media_type))
                r = ossb_error_set(err, -EPROTO, "the index entry for this platform is a `%s`, not an image manifest",
                                   e->desc.media_type);
        if (r >= 0)
                r = ossb_descriptor_copy(&e->desc, &p->manifest) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
        ossb_index_free(ix);
        if (r < 0)
                return r;
        r = ossb_store_put(store, p->top.data, p->top.len, p->top.digest, p->top.digest, err);
        if (r < 0)
                return r;
        r = ossb_repo_get_manifest(repo, p->manifest.digest, ret, err);
        if (r < 0)
                return r;
        if ((int64_t) ret->len != p->manifest.size)
                return ossb_error_set(err, -EBADMSG, "manifest %s is %zu bytes, the index says %" PRId64, p->manifest.digest,
                                      ret->len, p->manifest.size);
        return 0;
}

static int check_manifest(const struct ossb_manifest *m, struct ossb_error **err)
{
        if (!is_config_type(m->config.media_type))
                return ossb_error_set(err, -EPROTO, "unsupported config media type `%s` (not an image: ossb reads OCI and "
                                                     "Docker schema 2 images)", m->config.media_type);
        for (size_t i = 0; i < m->n_layers; i++)
                if (!is_layer_type(m->layers[i].media_type))
                        return ossb_error_set(err, -EPROTO, "layer %zu (%s) has unsupported media type `%s`", i,
                                              m->layers[i].digest, m->layers[i].media_type);
        return 0;
}

static int fetch_config(struct ossb_repo *repo, struct ossb_store *store, struct ossb_pulled_image *p,
                        struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (p->parsed->config.size > CONFIG_MAX_SIZE)
                return ossb_error_set(err, -EFBIG, "image config %s is too large (%" PRId64 " bytes)",
                                      p->parsed->config.digest, p->parsed->config.size);
        int r = ossb_repo_fetch_blobs(repo, store, &p->parsed->config, 1, NULL, NULL, err);
        if (r >= 0)
                r = ossb_store_read_blob(store, p->parsed->config.digest, CONFIG_MAX_SIZE, &data, &len, err);
        if (r >= 0)
                r = ossb_json_parse(data, len, CONFIG_MAX_SIZE, &p->config, err);
        if (r < 0)
                return ossb_error_wrap(err, "image config %s", p->parsed->config.digest);
        json_object *rootfs = NULL, *ids = NULL;
        if (!json_object_is_type(p->config, json_type_object) ||
            !json_object_object_get_ex(p->config, "rootfs", &rootfs) ||
            !json_object_object_get_ex(rootfs, "diff_ids", &ids) || !json_object_is_type(ids, json_type_array))
                return ossb_error_set(err, -EPROTO, "image config %s has no rootfs.diff_ids", p->parsed->config.digest);
        if (json_object_array_length(ids) != p->parsed->n_layers)
                return ossb_error_set(err, -EPROTO, "image config %s lists %zu diff_ids for %zu layers",
                                      p->parsed->config.digest, json_object_array_length(ids), p->parsed->n_layers);
        for (size_t i = 0; i < p->parsed->n_layers; i++) {
                const char *d = json_object_get_string(json_object_array_get_idx(ids, i));
                if (!d || !ossb_digest_is_valid(d))
                        return ossb_error_set(err, -EPROTO, "image config %s: diff_id %zu is not a sha256 digest",
                                              p->parsed->config.digest, i);
        }
        return 0;
}

static int pull_resolved(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_reference *ref,
                         const struct ossb_platform *want, bool layers, struct ossb_pulled_image *p,
                         struct ossb_error **err)
{
        struct ossb_fetched_manifest child = { 0 };
        const struct ossb_fetched_manifest *m = &p->top;
        int r = ossb_repo_get_manifest(repo, ossb_reference_object(ref), &p->top, err);
        if (r < 0)
                return r;
        p->top_is_index = ossb_is_index(p->top.media_type, p->top.data, p->top.len);
        if (p->top_is_index) {
                r = resolve_index(repo, store, want, p, &child, err);
                m = &child;
        } else if (!is_manifest_type(p->top.media_type)) {
                r = ossb_error_set(err, -EPROTO, "unsupported manifest media type `%s` (ossb reads OCI and Docker schema 2 "
                                                 "manifests and indexes)", p->top.media_type);
        } else {
                p->manifest.media_type = strdup(p->top.media_type);
                memcpy(p->manifest.digest, p->top.digest, sizeof(p->manifest.digest));
                p->manifest.size = (int64_t) p->top.len;
                if (!p->manifest.media_type)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (r >= 0)
                r = ossb_manifest_parse(m->data, m->len, &p->parsed, err);
        if (r >= 0)
                r = check_manifest(p->parsed, err);
        if (r >= 0)
                r = ossb_store_put(store, m->data, m->len, m->digest, p->manifest.digest, err);
        if (r >= 0)
                r = fetch_config(repo, store, p, err);
        if (r >= 0 && layers)
                r = ossb_repo_fetch_blobs(repo, store, p->parsed->layers, p->parsed->n_layers, NULL, NULL, err);
        ossb_fetched_manifest_clear(&child);
        return r;
}

int ossb_pull(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
              const struct ossb_platform *want, bool layers, struct ossb_pulled_image *ret, struct ossb_error **err)
{
        struct ossb_pulled_image p = { 0 };
        struct ossb_repo *repo = NULL;
        p.name = ossb_reference_full(ref);
        if (!p.name)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_repo_open(reg, ref, false, &repo, err);
        if (r >= 0)
                r = pull_resolved(repo, store, ref, want, layers, &p, err);
        ossb_repo_free(repo);
        if (r < 0) {
                ossb_error_wrap(err, "pulling %s", p.name);
                ossb_pulled_image_clear(&p);
                return registry_error(err);
        }
        *ret = p;
        return 0;
}

/* --- fetch and unpack, pipelined ----------------------------------------------------------- */

struct unpack_job {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool *ready;
        bool abort;          /* the downloads failed: the unpacker stops */
        bool unpack_failed;  /* the unpacker failed: the downloads stop */
        struct ossb_store *store;
        const struct ossb_pulled_image *p;
        const char *dest;
        struct ossb_unpack_stats stats;
        struct ossb_error *err;
};

static int on_ready(void *userdata, size_t index)
{
        struct unpack_job *j = userdata;
        pthread_mutex_lock(&j->lock);
        j->ready[index] = true;
        bool failed = j->unpack_failed;
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&j->lock);
        return failed ? -ECANCELED : 0;
}

static int unpack_one(struct unpack_job *j, size_t i)
{
        const struct ossb_descriptor *d = &j->p->parsed->layers[i];
        json_object *rootfs = NULL, *ids = NULL;
        json_object_object_get_ex(j->p->config, "rootfs", &rootfs);
        json_object_object_get_ex(rootfs, "diff_ids", &ids);
        const char *diff_id = json_object_get_string(json_object_array_get_idx(ids, i));
        int fd = -1;
        struct ossb_unpack_stats st = { 0 };
        int r = ossb_store_open_blob(j->store, d->digest, &fd, &j->err);
        if (r >= 0)
                r = ossb_layer_unpack(fd, d->digest, j->dest, diff_id, NULL, &st, &j->err);
        if (fd >= 0)
                close(fd);
        if (r < 0)
                return ossb_error_wrap(&j->err, "layer %zu of %s", i + 1, j->p->name);
        j->stats.entries += st.entries;
        j->stats.bytes += st.bytes;
        j->stats.chown_skipped += st.chown_skipped;
        j->stats.devices_skipped += st.devices_skipped;
        j->stats.xattrs_skipped += st.xattrs_skipped;
        return 0;
}

static void *unpacker(void *arg)
{
        struct unpack_job *j = arg;
        for (size_t i = 0; i < j->p->parsed->n_layers; i++) {
                pthread_mutex_lock(&j->lock);
                while (!j->ready[i] && !j->abort)
                        pthread_cond_wait(&j->cond, &j->lock);
                bool stop = !j->ready[i];
                pthread_mutex_unlock(&j->lock);
                if (stop)
                        return NULL;
                if (unpack_one(j, i) < 0) {
                        pthread_mutex_lock(&j->lock);
                        j->unpack_failed = true;
                        pthread_mutex_unlock(&j->lock);
                        return NULL;
                }
        }
        return NULL;
}

int ossb_pull_unpack(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
                     const struct ossb_pulled_image *p, const char *dest, struct ossb_unpack_stats *ret_stats,
                     struct ossb_error **err)
{
        struct unpack_job j = { .store = store, .p = p, .dest = dest };
        struct ossb_repo *repo = NULL;
        pthread_t th;
        size_t n = p->parsed->n_layers;
        j.ready = calloc(n ? n : 1, sizeof(bool));
        if (!j.ready)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (ossb_mkdir_p(dest, 0755) < 0) {
                free(j.ready);
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", dest);
        }
        pthread_mutex_init(&j.lock, NULL);
        pthread_cond_init(&j.cond, NULL);
        int r = ossb_repo_open(reg, ref, false, &repo, err);
        if (r >= 0) {
                r = -pthread_create(&th, NULL, unpacker, &j);
                if (r < 0)
                        ossb_error_set(err, r, "cannot start the unpack thread: %s", strerror(-r));
        }
        if (r >= 0) {
                int fr = ossb_repo_fetch_blobs(repo, store, p->parsed->layers, n, on_ready, &j, err);
                pthread_mutex_lock(&j.lock);
                if (fr < 0)
                        j.abort = true;
                pthread_cond_broadcast(&j.cond);
                pthread_mutex_unlock(&j.lock);
                pthread_join(th, NULL);
                if (j.err) {
                        /* the unpacker failed (a download it cancelled is no news) */
                        r = j.err->code;
                        if (err) {
                                ossb_error_free(*err);
                                *err = TAKE_PTR(j.err);
                        }
                } else
                        r = fr;
        }
        ossb_error_free(j.err);
        ossb_repo_free(repo);
        pthread_cond_destroy(&j.cond);
        pthread_mutex_destroy(&j.lock);
        free(j.ready);
        if (r < 0)
                return r;
        if (ret_stats)
                *ret_stats = j.stats;
        return 0;
}
