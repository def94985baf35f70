/* oci/image.h - OCI image model: media types, descriptors, manifests, platforms.
 *
 * Owns: struct ossb_descriptor and the JSON (json-c) encoding of manifests and indexes.
 * Image configs are json_object trees (oci/config.h in engine code manipulates them) so that
 * fields ossb does not model, e.g. from a base image, are kept as they are.
 */
#ifndef OSSB_OCI_IMAGE_H
#define OSSB_OCI_IMAGE_H

#include <stdint.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/store.h"

#define OSSB_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OSSB_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OSSB_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OSSB_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OSSB_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OSSB_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define OSSB_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OSSB_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OSSB_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define OSSB_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

#define OSSB_ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"
#define OSSB_ANNOTATION_CONTAINERD_NAME "io.containerd.image.name"
#define OSSB_ANNOTATION_CREATED "org.opencontainers.image.created"

struct ossb_descriptor {
        char *media_type;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        json_object *annotations; /* owned reference, may be NULL */
};

void ossb_descriptor_clear(struct ossb_descriptor *d); /* frees members, keeps d */
json_object *ossb_descriptor_to_json(const struct ossb_descriptor *d); /* new reference */
/* Untrusted input: mediaType (printable, <= 255 bytes), digest (sha256 only) and size (integer
 * >= 0) are required, annotations must be strings; -EPROTO with a message otherwise.  Other
 * fields (urls, platform, ...) are ignored.  *ret is written only on success. */
int ossb_descriptor_from_json(json_object *o, struct ossb_descriptor *ret, struct ossb_error **err);
/* Deep copy (annotations too); -ENOMEM. */
int ossb_descriptor_copy(const struct ossb_descriptor *src, struct ossb_descriptor *ret);

/* Serialize `config` (canonical: compact, no slash escaping), store it, and build an OCI
 * manifest referencing it and `layers`; store the manifest; fill *ret_manifest. */
int ossb_image_write(struct ossb_store *s, json_object *config, const struct ossb_descriptor *layers, size_t n_layers,
                     json_object *manifest_annotations, struct ossb_descriptor *ret_manifest,
                     struct ossb_descriptor *ret_config, struct ossb_error **err);

/* Bounds for manifests read from outside (as containers/image: 4 MiB). */
#define OSSB_MANIFEST_MAX_SIZE (4 * 1024 * 1024)
#define OSSB_MANIFEST_MAX_LAYERS 4096

/* A parsed manifest: config + layers (the caller frees with ossb_manifest_free).
 * ossb_manifest_parse accepts OCI image manifests (mediaType may be absent) and Docker schema 2
 * manifests, schemaVersion 2; an index/manifest list, anything larger than
 * OSSB_MANIFEST_MAX_SIZE, nested deeper than 16, with more than OSSB_MANIFEST_MAX_LAYERS layers,
 * with a wrong type, an invalid digest, invalid UTF-8, a NUL byte or trailing data is -EPROTO. */
struct ossb_manifest {
        char *media_type;
        struct ossb_descriptor config;
        struct ossb_descriptor *layers;
        size_t n_layers;
};
int ossb_manifest_parse(const char *json, size_t len, struct ossb_manifest **ret, struct ossb_error **err);
void ossb_manifest_free(struct ossb_manifest *m);

/* JSON to a string the way ossb always writes it (compact, no "\/"). Borrowed from o. */
const char *ossb_json_to_string(json_object *o);

/* Strict, bounded JSON parse of untrusted bytes (at most `max` bytes, depth 16, valid UTF-8,
 * no NUL, nothing but whitespace after the value); -EPROTO with a message.  *ret: new reference. */
int ossb_json_parse(const char *json, size_t len, size_t max, json_object **ret, struct ossb_error **err);

#endif
