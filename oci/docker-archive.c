/* oci/docker-archive.c - `docker save`-style archives: manifest.json (Config, RepoTags,
 * Layers), `repositories`, and the OCI layout files (oci-layout, index.json, blobs/sha256/...),
 * as Docker 25+ writes them.
 *
 * Owns: the tar at dest (written through the atomic tar writer of layout.c) and the compatibility
 * rules: `docker load` before Docker 25 (moby image/tarexport/load.go) decompresses layers with
 * DecompressStream, which knows gzip, bzip2 and xz but not zstd, and checks every layer against
 * the config's rootfs.diff_ids.  So zstd layers are stored uncompressed here (decompressed into
 * the content store, verified against their DiffID) and the archive carries a manifest that
 * references the uncompressed layers.  gzip and plain layers are referenced as they are.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "oci/compress.h"
#include "oci/image.h"
#include "oci/layout.h"
#include "oci/oci-internal.h"

#define CONFIG_MAX_SIZE (16 * 1024 * 1024)

/* ---- names ---- */

/* "app:1.0" -> name "app", tag "1.0"; the tag is after the last ':' that follows the last '/'. */
static const char *tag_sep(const char *ref)
{
        const char *slash = strrchr(ref, '/');
        const char *colon = strrchr(slash ? slash : ref, ':');
        return colon;
}

static bool tag_is_valid(const char *t)
{
        size_t n = strlen(t);
        if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
                      t[i] == '_' || t[i] == '.' || t[i] == '-'))
                        return false;
        return true;
}

/* What `docker load` needs: a tagged reference (name:tag), no digest, no blanks. */
bool ossb_docker_repo_tag_is_valid(const char *ref)
{
        const char *colon;
        if (!ref || !*ref || strchr(ref, '@') || strpbrk(ref, " \t\n\r") || ref[0] == '/')
                return false;
        colon = tag_sep(ref);
        if (!colon || colon == ref || colon[-1] == '/' || !tag_is_valid(colon + 1))
                return false;
        /* the repository path (after a registry host) is lower case */
        const char *first_slash = strchr(ref, '/');
        const char *path = ref;
        if (first_slash && first_slash < colon) {
                size_t n = (size_t) (first_slash - ref);
                if (memchr(ref, '.', n) || memchr(ref, ':', n) || (n == 9 && strncmp(ref, "localhost", 9) == 0))
                        path = first_slash + 1;
        }
        for (const char *p = path; p < colon; p++)
                if (*p >= 'A' && *p <= 'Z')
                        return false;
        return true;
}

/* "app:1" -> "docker.io/library/app:1", "me/app:1" -> "docker.io/me/app:1", hosts kept. */
static char *full_name(const char *ref)
{
        const char *slash = strchr(ref, '/');
        char *r = NULL;
        bool has_domain = false;
        if (slash) {
                size_t n = (size_t) (slash - ref);
                has_domain = memchr(ref, '.', n) || memchr(ref, ':', n) || (n == 9 && strncmp(ref, "localhost", 9) == 0);
        }
        if (asprintf(&r, "%s%s", has_domain ? "" : slash ? "docker.io/" : "docker.io/library/", ref) < 0)
                return NULL;
        return r;
}

/* ---- the image's config: rootfs.diff_ids ---- */

static int read_diff_ids(struct ossb_store *s, const struct ossb_manifest *m, char ***ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        _cleanup_json_ json_object *cfg = NULL;
        _cleanup_strv_free_ char **ids = ossb_strv_new_empty();
        json_object *rootfs, *arr;
        size_t len = 0;
        int r = ossb_store_read_blob(s, m->config.digest, CONFIG_MAX_SIZE, &data, &len, err);
        if (r < 0)
                return r;
        r = ossb_json_parse(data, len, CONFIG_MAX_SIZE, &cfg, err);
        if (r < 0)
                return ossb_error_wrap(err, "image config %s", m->config.digest);
        if (!ids)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!json_object_is_type(cfg, json_type_object) || !json_object_object_get_ex(cfg, "rootfs", &rootfs) ||
            !json_object_object_get_ex(rootfs, "diff_ids", &arr) || !json_object_is_type(arr, json_type_array))
                return ossb_error_set(err, -EINVAL, "image config %s has no rootfs.diff_ids (docker load needs them)",
                                      m->config.digest);
        if (json_object_array_length(arr) != m->n_layers)
                return ossb_error_set(err, -EINVAL, "image config %s lists %zu diff_ids for %zu layers",
                                      m->config.digest, json_object_array_length(arr), m->n_layers);
        for (size_t i = 0; i < m->n_layers; i++) {
                const char *d = json_object_get_string(json_object_array_get_idx(arr, i));
                if (!json_object_is_type(json_object_array_get_idx(arr, i), json_type_string) ||
                    !ossb_digest_is_valid(d))
                        return ossb_error_set(err, -EINVAL, "image config %s: diff_ids[%zu] is not a sha256 digest",
                                              m->config.digest, i);
                if (ossb_strv_push(&ids, d) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = TAKE_PTR(ids);
        return 0;
}

/* ---- zstd layers -> uncompressed blobs ---- */

static int blob_compression(struct ossb_store *s, const char *digest, enum ossb_compression *ret,
                            struct ossb_error **err)
{
        _cleanup_close_ int fd = -1;
        unsigned char head[4];
        int r = ossb_store_open_blob(s, digest, &fd, err);
        if (r < 0)
                return r;
        ssize_t n = pread(fd, head, sizeof(head), 0);
        if (n < 0)
                return ossb_error_set(err, -errno, "cannot read blob %s: %m", digest);
        *ret = ossb_compression_detect(head, (size_t) n);
        return 0;
}

static int ingest_sink(void *userdata, const void *data, size_t len, struct ossb_error **err)
{
        return ossb_store_ingest_write(userdata, data, len, err);
}

/* Store the decompressed layer (its digest must be diff_id) and describe it in *ret. */
static int store_uncompressed(struct ossb_store *s, const char *digest, const char *diff_id, const char *media_type,
                              struct ossb_descriptor *ret, struct ossb_error **err)
{
        struct ossb_store_ingest *in = NULL;
        _cleanup_close_ int fd = -1;
        int64_t size = 0;
        int r;

        if (ossb_store_has(s, diff_id)) {
                r = ossb_store_blob_size(s, diff_id, &size, err);
        } else {
                r = ossb_store_open_blob(s, digest, &fd, err);
                if (r >= 0)
                        r = ossb_store_ingest_new(s, &in, err);
                if (r >= 0)
                        r = ossb_decompress_fd(fd, ingest_sink, in, err);
                if (r >= 0)
                        r = ossb_store_ingest_commit(in, diff_id, NULL, &size, err);
                ossb_store_ingest_free(in);
        }
        if (r < 0)
                return ossb_error_wrap(err, "cannot store layer %s uncompressed", digest);
        ret->media_type = strdup(media_type);
        if (!ret->media_type)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        memcpy(ret->digest, diff_id, OSSB_DIGEST_STR_LEN + 1);
        ret->size = size;
        return 0;
}

static int replace_layers(struct ossb_store *s, const struct ossb_descriptor *md, const struct ossb_descriptor *layers,
                          size_t n, struct ossb_descriptor *ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        _cleanup_json_ json_object *o = NULL;
        size_t len = 0;
        json_object *arr = json_object_new_array();
        int r = ossb_store_read_blob(s, md->digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
        if (r >= 0)
                r = ossb_json_parse(data, len, OSSB_MANIFEST_MAX_SIZE, &o, err);
        if (r < 0) {
                json_object_put(arr);
                return r;
        }
        if (!arr || json_object_object_add(o, "layers", arr) < 0) {
                json_object_put(arr);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                json_object *d = ossb_descriptor_to_json(&layers[i]);
                if (!d || json_object_array_add(arr, d) < 0) {
                        json_object_put(d);
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                }
        }
        const char *str = ossb_json_to_string(o);
        if (!str)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_store_put(s, str, strlen(str), NULL, ret->digest, err);
        if (r < 0)
                return r;
        ret->size = (int64_t) strlen(str);
        ret->media_type = strdup(md->media_type ? md->media_type : OSSB_MT_OCI_MANIFEST);
        return ret->media_type ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
}

static void descriptors_free(struct ossb_descriptor *d, size_t n)
{
        for (size_t i = 0; d && i < n; i++)
                ossb_descriptor_clear(&d[i]);
        free(d);
}

/* If any layer is zstd, build (and store) a manifest whose zstd layers are uncompressed;
 * *ret_converted tells whether *ret was filled. */
static int convert_zstd_layers(struct ossb_store *s, const struct ossb_descriptor *md, const struct ossb_manifest *m,
                               char **diff_ids, struct ossb_descriptor *ret, bool *ret_converted,
                               struct ossb_error **err)
{
        bool docker = streq(m->media_type, OSSB_MT_DOCKER_MANIFEST);
        const char *tar_type = docker ? "application/vnd.docker.image.rootfs.diff.tar" : OSSB_MT_OCI_LAYER;
        struct ossb_descriptor *layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*layers));
        bool any = false;
        int r = layers ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");

        for (size_t i = 0; r >= 0 && i < m->n_layers; i++) {
                enum ossb_compression c = OSSB_COMPRESSION_NONE;
                r = blob_compression(s, m->layers[i].digest, &c, err);
                if (r < 0)
                        break;
                if (c == OSSB_COMPRESSION_ZSTD) {
                        any = true;
                        r = store_uncompressed(s, m->layers[i].digest, diff_ids[i], tar_type, &layers[i], err);
                } else if (ossb_descriptor_copy(&m->layers[i], &layers[i]) < 0)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (r >= 0 && any)
                r = replace_layers(s, md, layers, m->n_layers, ret, err);
        descriptors_free(layers, m->n_layers);
        if (r >= 0)
                *ret_converted = any;
        return r;
}

/* ---- manifest.json, repositories, index.json ---- */

static int blob_path_json(const char *digest, json_object **ret)
{
        char p[sizeof("blobs/sha256/") + OSSB_SHA256_HEX_LEN];
        snprintf(p, sizeof(p), "blobs/sha256/%s", digest + 7);
        *ret = json_object_new_string(p);
        return *ret ? 0 : -ENOMEM;
}

static int array_add_string(json_object *arr, const char *s)
{
        json_object *v = json_object_new_string(s);
        if (!v || json_object_array_add(arr, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int manifest_json(const struct ossb_manifest *m, char *const *repo_tags, json_object **ret)
{
        _cleanup_json_ json_object *top = json_object_new_array();
        json_object *item = json_object_new_object(), *v = NULL;
        if (!top || !item || json_object_array_add(top, item) < 0) {
                json_object_put(item);
                return -ENOMEM;
        }
        if (blob_path_json(m->config.digest, &v) < 0 || json_object_object_add(item, "Config", v) < 0)
                return json_object_put(v), -ENOMEM;
        json_object *tags = json_object_new_array(), *layers = NULL;
        if (!tags || json_object_object_add(item, "RepoTags", tags) < 0)
                return json_object_put(tags), -ENOMEM;
        for (size_t i = 0; repo_tags && repo_tags[i]; i++)
                if (array_add_string(tags, repo_tags[i]) < 0)
                        return -ENOMEM;
        layers = json_object_new_array();
        if (!layers || json_object_object_add(item, "Layers", layers) < 0)
                return json_object_put(layers), -ENOMEM;
        for (size_t i = 0; i < m->n_layers; i++) {
                if (blob_path_json(m->layers[i].digest, &v) < 0 || json_object_array_add(layers, v) < 0)
                        return json_object_put(v), -ENOMEM;
        }
        *ret = TAKE_PTR(top);
        return 0;
}

/* {"name":{"tag":"<hex of the top layer>"}} as `docker save` writes it (legacy loaders only). */
static int repositories_json(const struct ossb_manifest *m, char *const *repo_tags, json_object **ret)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        for (size_t i = 0; m->n_layers > 0 && repo_tags && repo_tags[i]; i++) {
                const char *colon = tag_sep(repo_tags[i]);
                _cleanup_free_ char *name = strndup(repo_tags[i], (size_t) (colon - repo_tags[i]));
                json_object *tags;
                if (!name)
                        return -ENOMEM;
                if (!json_object_object_get_ex(o, name, &tags)) {
                        tags = json_object_new_object();
                        if (!tags || json_object_object_add(o, name, tags) < 0)
                                return json_object_put(tags), -ENOMEM;
                }
                json_object *v = json_object_new_string(m->layers[m->n_layers - 1].digest + 7);
                if (!v || json_object_object_add(tags, colon + 1, v) < 0)
                        return json_object_put(v), -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static void layout_tags_free(struct ossb_layout_tag *t, size_t n)
{
        for (size_t i = 0; t && i < n; i++) {
                free((char *) t[i].ref_name);
                free((char *) t[i].full_name);
        }
        free(t);
}

/* index.json entries as Docker 25 writes them: ref.name = the tag, containerd name = full. */
static int docker_layout_tags(char *const *repo_tags, struct ossb_layout_tag **ret, size_t *ret_n)
{
        size_t n = ossb_strv_length(repo_tags);
        struct ossb_layout_tag *t = calloc(n ? n : 1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                t[i].ref_name = strdup(tag_sep(repo_tags[i]) + 1);
                t[i].full_name = full_name(repo_tags[i]);
                if (!t[i].ref_name || !t[i].full_name) {
                        layout_tags_free(t, n);
                        return -ENOMEM;
                }
        }
        *ret = t;
        *ret_n = n;
        return 0;
}

static int tar_json(struct ossb_tar_out *t, const char *name, json_object *o, struct ossb_error **err)
{
        const char *s = ossb_json_to_string(o);
        if (!s)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ossb_tar_out_bytes(t, name, s, strlen(s), err);
}

static int write_archive(struct ossb_store *s, const char *dest, const struct ossb_descriptor *md,
                         const struct ossb_image_blobs *b, char *const *repo_tags, struct ossb_error **err)
{
        _cleanup_json_ json_object *idx = NULL, *mj = NULL, *repos = NULL;
        struct ossb_tar_out *t = NULL;
        struct ossb_layout_tag *tags = NULL;
        size_t n_tags = 0;
        int r = 0;

        if (docker_layout_tags(repo_tags, &tags, &n_tags) < 0 || manifest_json(b->manifest, repo_tags, &mj) < 0 ||
            repositories_json(b->manifest, repo_tags, &repos) < 0)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0)
                r = ossb_layout_build_index(NULL, md, tags, n_tags, &idx, err);
        if (r >= 0)
                r = ossb_tar_out_new(dest, &t, err);
        if (r >= 0)
                r = ossb_tar_out_blobs(t, s, b, err);
        if (r >= 0)
                r = ossb_tar_out_bytes(t, "oci-layout", OSSB_OCI_LAYOUT_FILE, strlen(OSSB_OCI_LAYOUT_FILE), err);
        if (r >= 0)
                r = tar_json(t, "index.json", idx, err);
        if (r >= 0)
                r = tar_json(t, "manifest.json", mj, err);
        if (r >= 0 && json_object_object_length(repos) > 0)
                r = tar_json(t, "repositories", repos, err);
        if (r >= 0)
                r = ossb_tar_out_commit(t, err);
        ossb_tar_out_free(t);
        layout_tags_free(tags, n_tags);
        return r;
}

int ossb_docker_archive_write(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                              char *const *repo_tags, struct ossb_error **err)
{
        struct ossb_image_blobs b = { 0 };
        struct ossb_descriptor converted = { 0 };
        _cleanup_strv_free_ char **diff_ids = NULL;
        bool is_converted = false;
        int r = 0;

        for (size_t i = 0; repo_tags && repo_tags[i]; i++)
                if (!ossb_docker_repo_tag_is_valid(repo_tags[i]))
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "invalid tag `%s` for a docker archive (expected name:tag)", repo_tags[i]);
        r = ossb_image_blobs_collect(s, manifest, &b, err);
        if (r >= 0)
                r = read_diff_ids(s, b.manifest, &diff_ids, err);
        if (r >= 0)
                r = convert_zstd_layers(s, manifest, b.manifest, diff_ids, &converted, &is_converted, err);
        if (r >= 0 && is_converted) {
                ossb_image_blobs_clear(&b);
                r = ossb_image_blobs_collect(s, &converted, &b, err);
        }
        if (r >= 0)
                r = write_archive(s, dest, is_converted ? &converted : manifest, &b, repo_tags, err);
        ossb_image_blobs_clear(&b);
        ossb_descriptor_clear(&converted);
        return r < 0 ? ossb_error_wrap(err, "cannot write the docker archive `%s`", dest) : 0;
}
