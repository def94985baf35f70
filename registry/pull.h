/* registry/pull.h - resolving a reference to an image and fetching it into the store.
 *
 * Owns: struct ossb_pulled_image (the resolved manifest, its parsed form and the config).
 * Resolution: GET the reference's manifest; an index (OCI or Docker list) is stored and the
 * manifest for the wanted platform chosen (ossb_index_select), then fetched by digest.  Only
 * OCI and Docker schema 2 image manifests with known config and layer media types are
 * accepted; anything else fails naming the media type.  Every manifest and blob lands in the
 * store verified against its digest; nothing already there is downloaded again.
 */
#ifndef OSSB_REGISTRY_PULL_H
#define OSSB_REGISTRY_PULL_H

#include <stdbool.h>

#include <json-c/json.h>

#include "common/error.h"
#include "oci/image.h"
#include "oci/platform.h"
#include "oci/store.h"
#include "oci/unpack.h"
#include "registry/client.h"
#include "registry/reference.h"

struct ossb_pulled_image {
        char *name;                     /* the reference, normalised ("docker.io/library/x:1") */
        struct ossb_fetched_manifest top; /* what the reference named (manifest or index), as served */
        bool top_is_index;
        struct ossb_descriptor manifest; /* the image manifest chosen (== top when not an index) */
        struct ossb_manifest *parsed;   /* its config and layers */
        json_object *config;            /* the image config (owned reference) */
};

/* Resolve `ref` for `want` and fetch manifest(s) and config; with `layers` also every layer
 * blob (up to the client's max_parallel at once).  The config's rootfs.diff_ids must have one
 * entry per layer. */
int ossb_pull(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
              const struct ossb_platform *want, bool layers, struct ossb_pulled_image *ret, struct ossb_error **err);
void ossb_pulled_image_clear(struct ossb_pulled_image *p);

/* Fetch the layers of `p` and apply them in order to the directory `dest` (whiteouts applied,
 * each layer's DiffID checked against the config), unpacking layer i while later layers are
 * still downloading.  `dest` should be a directory the caller throws away on failure. */
int ossb_pull_unpack(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
                     const struct ossb_pulled_image *p, const char *dest, struct ossb_unpack_stats *ret_stats,
                     struct ossb_error **err);

/* Called from a worker thread with a layer whose blob is complete and verified in the store;
 * diff_id is the config's entry for it (may be NULL when the config lacks it). */
typedef int (*ossb_layer_consume_fn)(void *userdata, size_t index, const struct ossb_descriptor *layer,
                                     const char *diff_id, struct ossb_error **err);

/* Fetch the layers of `p` with want[i] set (want NULL: all), up to the client's max_parallel
 * downloads at once, and give each to `consume` on one of `workers` threads (1..16) as soon as
 * it is in the store, in no particular order.  The first failure (a download or a consume)
 * stops the rest and is what is returned. */
int ossb_pull_layers(struct ossb_registry *reg, struct ossb_store *store, const struct ossb_reference *ref,
                     const struct ossb_pulled_image *p, const bool *want, unsigned workers,
                     ossb_layer_consume_fn consume, void *userdata, struct ossb_error **err);

#endif
