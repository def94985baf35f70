/* oci/oci-internal.h - helpers shared by the files of oci/ only (never included from outside).
 *
 * Owns: the json-c cleanup attribute, the list of an image's blobs, the atomic tar writer the
 * exporters share, and the index.json builder.
 */
#ifndef OSSB_OCI_OCI_INTERNAL_H
#define OSSB_OCI_OCI_INTERNAL_H

#include <locale.h>
#include <stddef.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/image.h"
#include "oci/layout.h"
#include "oci/store.h"

static inline void ossb_json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(ossb_json_putp)))

/* The blobs of one image in the store: its manifest, config and layers. */
struct ossb_image_blobs {
        struct ossb_manifest *manifest;
        char (*digests)[OSSB_DIGEST_STR_LEN + 1]; /* deduplicated, sorted */
        size_t n;
};
/* Read and parse the manifest (verified against `manifest`'s digest and size) and check that
 * every blob it names is in the store (-ENOENT naming the missing one). */
int ossb_image_blobs_collect(struct ossb_store *s, const struct ossb_descriptor *manifest,
                             struct ossb_image_blobs *ret, struct ossb_error **err);
void ossb_image_blobs_clear(struct ossb_image_blobs *b);

/* A tar file written to a temp name beside `dest`, then fsynced and renamed onto dest.
 * Entries: uid/gid 0, mtime 0, no user/group names; directories 0755, files 0644. */
struct ossb_tar_out;
int ossb_tar_out_new(const char *dest, struct ossb_tar_out **ret, struct ossb_error **err);
int ossb_tar_out_dir(struct ossb_tar_out *t, const char *name, struct ossb_error **err);
int ossb_tar_out_bytes(struct ossb_tar_out *t, const char *name, const void *data, size_t len,
                       struct ossb_error **err);
/* Copy a store blob into the tar as `name`, verifying its digest on the way. */
int ossb_tar_out_blob(struct ossb_tar_out *t, struct ossb_store *s, const char *digest, const char *name,
                      struct ossb_error **err);
/* "blobs/", "blobs/sha256/" and every blob of b as blobs/sha256/<hex>. */
int ossb_tar_out_blobs(struct ossb_tar_out *t, struct ossb_store *s, const struct ossb_image_blobs *b,
                       struct ossb_error **err);
int ossb_tar_out_commit(struct ossb_tar_out *t, struct ossb_error **err);
void ossb_tar_out_free(struct ossb_tar_out *t); /* removes the temp file unless committed */

/* index.json: `base` (an existing index, may be NULL) with entries carrying one of `tags`'
 * ref names removed and one entry per tag added (one untagged entry when n_tags == 0).
 * *ret is a new reference. */
int ossb_layout_build_index(json_object *base, const struct ossb_descriptor *manifest,
                            const struct ossb_layout_tag *tags, size_t n_tags, json_object **ret,
                            struct ossb_error **err);

/* Run libarchive's name conversions under C.UTF-8 (so that tar bytes do not depend on the
 * process locale): old = ossb_tar_locale_enter(); archive_write_header(...);
 * ossb_tar_locale_leave(old). */
locale_t ossb_tar_locale_enter(void);
void ossb_tar_locale_leave(locale_t old);

#define OSSB_OCI_LAYOUT_FILE "{\"imageLayoutVersion\":\"1.0.0\"}"

#endif
