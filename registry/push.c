/* registry/push.c - an image (manifest, or index and its manifests) from the store to one or
 * more references: blobs, then child manifests by digest, then the top object per tag. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "oci/platform.h"
#include "registry/push.h"

/* What one push sends: the blobs (configs and layers, no duplicates) and the child manifests
 * of an index with their bytes. */
struct push_set {
        struct ossb_descriptor *blobs;
        size_t n_blobs;
        struct ossb_descriptor *children;
        char **child_data;
        size_t *child_len;
        size_t n_children;
};

static void push_set_clear(struct push_set *ps)
{
        for (size_t i = 0; i < ps->n_blobs; i++)
                ossb_descriptor_clear(&ps->blobs[i]);
        for (size_t i = 0; i < ps->n_children; i++) {
                ossb_descriptor_clear(&ps->children[i]);
                free(ps->child_data[i]);
        }
        free(ps->blobs);
        free(ps->children);
        free(ps->child_data);
        free(ps->child_len);
}

static int add_blob(struct push_set *ps, const struct ossb_descriptor *d)
{
        for (size_t i = 0; i < ps->n_blobs; i++)
                if (streq(ps->blobs[i].digest, d->digest))
                        return 0;
        struct ossb_descriptor *n = realloc(ps->blobs, (ps->n_blobs + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        ps->blobs = n;
        if (ossb_descriptor_copy(d, &n[ps->n_blobs]) < 0)
                return -ENOMEM;
        ps->n_blobs++;
        return 0;
}

static int add_manifest_blobs(struct push_set *ps, const char *data, size_t len, const char *digest,
                              struct ossb_error **err)
{
        struct ossb_manifest *m = NULL;
        int r = ossb_manifest_parse(data, len, &m, err);
        if (r < 0)
                return ossb_error_wrap(err, "manifest %s", digest);
        r = add_blob(ps, &m->config);
        for (size_t i = 0; r >= 0 && i < m->n_layers; i++)
                r = add_blob(ps, &m->layers[i]);
        ossb_manifest_free(m);
        return r < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

static int add_children(struct ossb_store *store, struct push_set *ps, const char *data, size_t len,
                        struct ossb_error **err)
{
        struct ossb_index *ix = NULL;
        int r = ossb_index_parse(data, len, &ix, err);
        if (r < 0)
                return r;
        ps->children = calloc(ix->n_entries + 1, sizeof(*ps->children));
        ps->child_data = calloc(ix->n_entries + 1, sizeof(char *));
        ps->child_len = calloc(ix->n_entries + 1, sizeof(size_t));
        if (!ps->children || !ps->child_data || !ps->child_len)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; r >= 0 && i < ix->n_entries; i++) {
                const struct ossb_descriptor *d = &ix->entries[i].desc;
                if (ossb_descriptor_copy(d, &ps->children[i]) < 0) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                ps->n_children++;
                r = ossb_store_read_blob(store, d->digest, OSSB_MANIFEST_MAX_SIZE, &ps->child_data[i], &ps->child_len[i],
                                         err);
                if (r >= 0 && !ossb_is_index(d->media_type, ps->child_data[i], ps->child_len[i]))
                        r = add_manifest_blobs(ps, ps->child_data[i], ps->child_len[i], d->digest, err);
                else if (r >= 0)
                        r = ossb_error_set(err, -ENOTSUP, "nested index %s: ossb pushes one level of index", d->digest);
        }
        ossb_index_free(ix);
        return r;
}

static int push_to(struct ossb_registry *reg, struct ossb_store *store, const struct push_set *ps,
                   const struct ossb_descriptor *top, const char *top_data, size_t top_len,
                   struct ossb_reference *const *refs, size_t n, size_t first, struct ossb_error **err)
{
        struct ossb_repo *repo = NULL;
        int r = ossb_repo_open(reg, refs[first], true, &repo, err);
        if (r >= 0)
                r = ossb_repo_push_blobs(repo, store, ps->blobs, ps->n_blobs, err);
        for (size_t i = 0; r >= 0 && i < ps->n_children; i++)
                r = ossb_repo_put_manifest(repo, ps->children[i].digest, ps->children[i].media_type, ps->child_data[i],
                                           ps->child_len[i], err);
        _cleanup_free_ char *name = ossb_reference_repository(refs[first]);
        for (size_t i = first; r >= 0 && i < n; i++) {
                _cleanup_free_ char *other = ossb_reference_repository(refs[i]);
                if (!name || !other) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                if (!streq(name, other))
                        continue;
                r = ossb_repo_put_manifest(repo, refs[i]->tag ? refs[i]->tag : top->digest, top->media_type, top_data,
                                           top_len, err);
                if (r >= 0)
                        log_debug("pushed %s to %s:%s", top->digest, name, refs[i]->tag ? refs[i]->tag : top->digest);
        }
        ossb_repo_free(repo);
        return r;
}

/* Whether refs[i]'s repository already appeared among refs[0..i). */
static bool seen_before(struct ossb_reference *const *refs, size_t i)
{
        _cleanup_free_ char *a = ossb_reference_repository(refs[i]);
        for (size_t k = 0; a && k < i; k++) {
                _cleanup_free_ char *b = ossb_reference_repository(refs[k]);
                if (b && streq(a, b))
                        return true;
        }
        return false;
}

int ossb_push(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_descriptor *top,
              struct ossb_reference *const *refs, size_t n, char ret_digest[OSSB_DIGEST_STR_LEN + 1],
              struct ossb_error **err)
{
        struct push_set ps = { 0 };
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = ossb_store_read_blob(store, top->digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
        if (r >= 0) {
                if (ossb_is_index(top->media_type, data, len))
                        r = add_children(store, &ps, data, len, err);
                else
                        r = add_manifest_blobs(&ps, data, len, top->digest, err);
        }
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (seen_before(refs, i))
                        continue;
                r = push_to(reg, store, &ps, top, data, len, refs, n, i, err);
                if (r < 0) {
                        _cleanup_free_ char *full = ossb_reference_full(refs[i]);
                        ossb_error_wrap(err, "pushing %s", full ? full : "image");
                        ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                }
        }
        push_set_clear(&ps);
        if (r < 0)
                return r;
        memcpy(ret_digest, top->digest, OSSB_DIGEST_STR_LEN + 1);
        return 0;
}
