/* registry/referrers.h - artifacts that refer to an image (OCI distribution 1.1 referrers),
 * e.g. ossb's checkpoint indexes of an image's gzip layers (oci/zran.h).
 *
 * Owns: pushing an artifact manifest with a `subject` and finding the artifacts of a subject,
 * on registries with the referrers API and on those without it:
 *   - Listing: `GET /v2/NAME/referrers/DIGEST` (an OCI image index of descriptors).  A 404
 *     (the API is not there, as on distribution 2.x) falls back to the tag schema: the tag
 *     `sha256-<hex of DIGEST>` holding an OCI image index of the referrers.  A missing tag is
 *     an empty list.
 *   - Pushing: the artifact's blobs (the OCI empty config `{}` and its layers, from the store),
 *     then its manifest by digest.  When the registry's answer does not carry `OCI-Subject`
 *     (it did not index the subject itself), the tag-schema index is updated read-modify-write:
 *     fetched (or started empty), the artifact's descriptor added unless there, PUT back.  Two
 *     pushers racing may lose one entry (the spec's known limit of the fallback).
 * Answers are hostile input: sizes bounded (OSSB_MANIFEST_MAX_SIZE), digests checked, entries
 * with bad descriptors skipped.
 */
#ifndef OSSB_REGISTRY_REFERRERS_H
#define OSSB_REGISTRY_REFERRERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/error.h"
#include "oci/image.h"
#include "oci/store.h"
#include "registry/client.h"

#define OSSB_MT_OCI_EMPTY "application/vnd.oci.empty.v1+json"
#define OSSB_OCI_EMPTY_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

/* One referrer: an artifact manifest's descriptor. */
struct ossb_referrer {
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        char *media_type;
        char *artifact_type;      /* NULL when none */
        json_object *annotations; /* owned reference, NULL when none */
};

void ossb_referrers_free(struct ossb_referrer *v, size_t n);

/* The referrers of manifest `subject` ("sha256:...") in `repo` whose artifactType is
 * `artifact_type` (NULL: all).  *ret_tag_schema (may be NULL): whether the answer came from
 * the tag-schema fallback.  Registry errors other than the 404s above fail. */
int ossb_referrers_list(struct ossb_repo *repo, const char *subject, const char *artifact_type,
                        struct ossb_referrer **ret, size_t *ret_n, bool *ret_tag_schema, struct ossb_error **err);

/* Fetch a small blob (at most `max` bytes) into memory, checked against its digest and size
 * (size < 0: any).  *ret is malloc'd (NUL-terminated). */
int ossb_referrers_fetch_blob(struct ossb_repo *repo, const char *digest, int64_t size, size_t max, char **ret,
                              size_t *ret_len, struct ossb_error **err);

/* One layer of an artifact: a blob already in `store`. */
struct ossb_artifact_layer {
        const char *media_type;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        json_object *annotations; /* borrowed, may be NULL */
};

/* Push an artifact of `artifact_type` whose subject is `subject` (an image manifest's
 * descriptor) with `layers` (their blobs in `store`; the empty config is put there too) and
 * manifest `annotations` (borrowed, may be NULL).  *ret_digest: the artifact manifest's
 * digest.  *ret_tag_schema (may be NULL): whether the tag-schema index was updated. */
int ossb_referrers_push(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *subject,
                        const char *artifact_type, const struct ossb_artifact_layer *layers, size_t n,
                        json_object *annotations, char ret_digest[OSSB_DIGEST_STR_LEN + 1], bool *ret_tag_schema,
                        struct ossb_error **err);

#endif
