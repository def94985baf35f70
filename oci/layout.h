/* oci/layout.h - image exporters: OCI image layout (directory or tar) and docker-archive.
 *
 * Owns: the files it writes at `dest`.  Nothing at dest looks complete before it is: a tar is
 * written to a temp name, fsynced and renamed; a layout directory gets its blobs first (each
 * atomically) and index.json (atomically) last.  An existing layout at dest gains the new
 * manifest (entries with the same ref name are replaced); a non-empty directory that is not a
 * layout is refused.  Concurrent ossb writers of one layout directory are serialised with an
 * flock on the directory (other tools do not take it).
 */
#ifndef OSSB_OCI_LAYOUT_H
#define OSSB_OCI_LAYOUT_H

#include <stdbool.h>

#include "common/error.h"
#include "oci/image.h"
#include "oci/store.h"

/* One tag to record. `ref_name` goes into org.opencontainers.image.ref.name (e.g. "app:1.0"),
 * `full_name` (may be NULL) into io.containerd.image.name (e.g. "docker.io/library/app:1.0"). */
struct ossb_layout_tag {
        const char *ref_name;
        const char *full_name;
};

/* Write an OCI image layout directory holding `manifest` (and its config and layers, taken from
 * the store) with one index entry per tag (or one untagged entry when n_tags == 0). */
int ossb_layout_write_dir(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                          const struct ossb_layout_tag *tags, size_t n_tags, struct ossb_error **err);
/* The same layout as a tar file. */
int ossb_layout_write_tar(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                          const struct ossb_layout_tag *tags, size_t n_tags, struct ossb_error **err);
/* A docker-archive tar (manifest.json with Config/RepoTags/Layers, plus the OCI layout files,
 * as `docker save` of Docker 25+ writes it), loadable by `docker load` and `podman load`.
 * repo_tags are familiar names ("app:1.0"). */
int ossb_docker_archive_write(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                              char *const *repo_tags, struct ossb_error **err);
/* Details of ossb_docker_archive_write: repo_tags is a NULL-terminated vector (NULL or empty:
 * untagged).  The image config must have rootfs.diff_ids, one per layer.  gzip and uncompressed
 * layers are referenced as stored; zstd layers are decompressed into the store (verified
 * against their DiffID) and referenced uncompressed, with a manifest rewritten to match,
 * because `docker load` before Docker 25 cannot read zstd.  index.json entries carry the tag as
 * org.opencontainers.image.ref.name and the normalised name ("docker.io/library/app:1.0") as
 * io.containerd.image.name, as `docker save` does; a `repositories` file is added for tagged
 * images with layers. */

/* Read an image from an OCI image layout (a directory or a tar of one) into the store: the
 * index.json entry whose org.opencontainers.image.ref.name equals `ref_name` (NULL: the only
 * entry; several entries and no name is -EINVAL listing the names), then the manifest (or the
 * index and every manifest it lists), configs and layers, each verified against its digest.
 * *ret receives the descriptor of that entry (a manifest or an index).  Errors name the
 * layout path and the entry or blob at fault.
 * Details: several entries for one digest (one image under several names) need no name.  A
 * tar may be gzip- or zstd-compressed and is read once, front to back (a pipe works): each
 * blobs/sha256/<hex> entry is ingested as it comes (verified against its name; one whose
 * content does not match is an error only when the image needs it), also blobs of other
 * images in the tar.  Blobs already in the store are not read again (their size is still
 * checked).  Indexes nest at most 8 deep. */
int ossb_layout_read(struct ossb_store *s, const char *path, const char *ref_name, struct ossb_descriptor *ret,
                     struct ossb_error **err);

/* Whether `s` is a valid org.opencontainers.image.ref.name (image-spec grammar: components of
 * [A-Za-z0-9]+ joined by one of -._:@+ or "--", separated by '/').  Both "1.0", "app:1.0"
 * and "localhost:5000/app:1.0" are valid; the ossb_layout_* writers refuse invalid names
 * (-EINVAL). */
bool ossb_layout_ref_name_is_valid(const char *s);
/* Whether `ref` is a name:tag that `docker load` accepts in RepoTags (a tag, no digest, lower
 * case repository path). */
bool ossb_docker_repo_tag_is_valid(const char *ref);

#endif
