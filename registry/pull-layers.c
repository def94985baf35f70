/* registry/pull-layers.c - fetch chosen layers of a pulled image and hand each to a pool of
 * worker threads as soon as it is in the store (see ossb_pull_layers in pull.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "registry/pull.h"

#define MAX_WORKERS 16

struct layer_pool {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        size_t *queue; /* indexes into the image's layers, ready to consume */
        size_t head, tail;
        bool fetch_done;
        bool failed;
        struct ossb_error *err; /* the first consumer failure */
        const struct ossb_pulled_image *p;
        const size_t *map; /* fetched blob i -> layer index */
        ossb_layer_consume_fn consume;
        void *userdata;
};

static const char *diff_id_of(const struct ossb_pulled_image *p, size_t i)
{
        json_object *rootfs = NULL, *ids = NULL;
        json_object_object_get_ex(p->config, "rootfs", &rootfs);
        json_object_object_get_ex(rootfs, "diff_ids", &ids);
        return json_object_get_string(json_object_array_get_idx(ids, i));
}

static int on_blob(void *userdata, size_t index)
{
        struct layer_pool *lp = userdata;
        pthread_mutex_lock(&lp->lock);
        lp->queue[lp->tail++] = lp->map[index];
        bool failed = lp->failed;
        pthread_cond_broadcast(&lp->cond);
        pthread_mutex_unlock(&lp->lock);
        return failed ? -ECANCELED : 0;
}

static void *worker(void *arg)
{
        struct layer_pool *lp = arg;
        for (;;) {
                pthread_mutex_lock(&lp->lock);
                while (lp->head == lp->tail && !lp->fetch_done && !lp->failed)
                        pthread_cond_wait(&lp->cond, &lp->lock);
                if (lp->failed || lp->head == lp->tail) {
                        pthread_mutex_unlock(&lp->lock);
                        return NULL;
                }
                size_t i = lp->queue[lp->head++];
                pthread_mutex_unlock(&lp->lock);
                struct ossb_error *e = NULL;
                int r = lp->consume(lp->userdata, i, &lp->p->parsed->layers[i], diff_id_of(lp->p, i), &e);
                if (r < 0) {
                        pthread_mutex_lock(&lp->lock);
                        if (!lp->failed) {
                                lp->failed = true;
                                lp->err = TAKE_PTR(e);
                        }
                        pthread_cond_broadcast(&lp->cond);
                        pthread_mutex_unlock(&lp->lock);
                }
                ossb_error_free(e);
        }
}

static int run_pool(struct layer_pool *lp, struct ossb_repo *repo, struct ossb_store *store,
                    const struct ossb_descriptor *descs, size_t n, unsigned workers, struct ossb_error **err)
{
        pthread_t th[MAX_WORKERS];
        unsigned started = 0;
        int r = 0;
        for (; started < workers; started++) {
                r = -pthread_create(&th[started], NULL, worker, lp);
                if (r < 0)
                        break;
        }
        if (started == 0)
                return ossb_error_set(err, r, "cannot start a thread: %s", strerror(-r));
        int fr = ossb_repo_fetch_blobs(repo, store, descs, n, on_blob, lp, err);
        pthread_mutex_lock(&lp->lock);
        lp->fetch_done = true;
        if (fr < 0)
                lp->failed = true;
        pthread_cond_broadcast(&lp->cond);
        pthread_mutex_unlock(&lp->lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        if (lp->err) {
                /* a consumer failed (a download it cancelled is no news) */
                if (err) {
                        ossb_error_free(*err);
                        *err = TAKE_PTR(lp->err);
                }
                return err && *err ? (*err)->code : -EIO;
        }
        return fr;
}

int ossb_pull_layers(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
                     const struct ossb_pulled_image *p, const bool *want, unsigned workers,
                     ossb_layer_consume_fn consume, void *userdata, struct ossb_error **err)
{
        size_t total = p->parsed->n_layers, n = 0;
        _cleanup_free_ struct ossb_descriptor *descs = calloc(total ? total : 1, sizeof(*descs));
        _cleanup_free_ size_t *map = calloc(total ? total : 1, sizeof(*map));
        _cleanup_free_ size_t *queue = calloc(total ? total : 1, sizeof(*queue));
        if (!descs || !map || !queue)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < total; i++)
                if (!want || want[i]) {
                        descs[n] = p->parsed->layers[i]; /* shallow: only read */
                        map[n++] = i;
                }
        if (n == 0)
                return 0;
        workers = workers < 1 ? 1 : workers > MAX_WORKERS ? MAX_WORKERS : workers;
        if (workers > n)
                workers = (unsigned) n;
        struct layer_pool lp = { .queue = queue, .p = p, .map = map, .consume = consume, .userdata = userdata };
        struct ossb_repo *repo = NULL;
        int r = ossb_repo_open(reg, ref, false, &repo, err);
        if (r < 0)
                return r;
        pthread_mutex_init(&lp.lock, NULL);
        pthread_cond_init(&lp.cond, NULL);
        r = run_pool(&lp, repo, store, descs, n, workers, err);
        pthread_cond_destroy(&lp.cond);
        pthread_mutex_destroy(&lp.lock);
        ossb_error_free(lp.err);
        ossb_repo_free(repo);
        return r;
}
