/* oci/layout.c - OCI image layout export: a directory (merged into an existing layout) or a
 * tar file; plus the helpers the docker-archive writer shares (blob list, atomic tar writer,
 * index.json builder).
 *
 * Owns: what it writes under `dest`.  Order for a directory: blobs (each linked or copied to a
 * temp name, fsynced, renamed), the blobs directory fsynced, `oci-layout`, then index.json
 * atomically: a reader never sees index.json name a blob that is not complete.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "oci/image.h"
#include "oci/layout.h"
#include "oci/oci-internal.h"

#define INDEX_MAX_SIZE (64 * 1024 * 1024)
#define REF_NAME_MAX 4096
#define COPY_CHUNK (256 * 1024)

/* ---- reference names (image-spec annotations: org.opencontainers.image.ref.name) ---- */

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* component ::= alphanum (separator alphanum)*, separator ::= [-._:@+] | "--" */
static bool component_is_valid(const char *s, size_t n)
{
        size_t i = 0;
        for (;;) {
                size_t start = i;
                while (i < n && is_alnum(s[i]))
                        i++;
                if (i == start)
                        return false;
                if (i == n)
                        return true;
                if (s[i] == '-' && i + 1 < n && s[i + 1] == '-')
                        i += 2;
                else if (strchr("-._:@+", s[i]))
                        i++;
                else
                        return false;
        }
}

bool ossb_layout_ref_name_is_valid(const char *s)
{
        if (!s || !*s || strlen(s) > REF_NAME_MAX)
                return false;
        for (;;) {
                const char *slash = strchr(s, '/');
                size_t n = slash ? (size_t) (slash - s) : strlen(s);
                if (!component_is_valid(s, n))
                        return false;
                if (!slash)
                        return true;
                s = slash + 1;
        }
}

static int check_tags(const struct ossb_layout_tag *tags, size_t n_tags, struct ossb_error **err)
{
        if (n_tags > 0 && !tags)
                return ossb_error_set(err, -EINVAL, "tags missing");
        for (size_t i = 0; i < n_tags; i++)
                if (!ossb_layout_ref_name_is_valid(tags[i].ref_name))
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "invalid OCI reference name `%s` (allowed: components of "
                                               "[A-Za-z0-9] joined by one of -._:@+ or --, separated by /)",
                                               tags[i].ref_name ? tags[i].ref_name : "(null)");
        return 0;
}

/* ---- the blobs of an image ---- */

void ossb_image_blobs_clear(struct ossb_image_blobs *b)
{
        ossb_manifest_free(b->manifest);
        free(b->digests);
        b->manifest = NULL;
        b->digests = NULL;
        b->n = 0;
}

static int digest_cmp(const void *a, const void *b)
{
        return strcmp(a, b);
}

static int need_blob(struct ossb_store *s, const char *digest, const char *what, struct ossb_error **err)
{
        if (!ossb_store_has(s, digest))
                return ossb_error_set(err, -ENOENT, "blob %s (%s) is not in the content store", digest, what);
        return 0;
}

int ossb_image_blobs_collect(struct ossb_store *s, const struct ossb_descriptor *md, struct ossb_image_blobs *ret,
                             struct ossb_error **err)
{
        struct ossb_image_blobs b = { 0 };
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (!md || !ossb_digest_is_valid(md->digest))
                return ossb_error_set(err, -EINVAL, "invalid manifest descriptor");
        r = ossb_store_read_blob(s, md->digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
        if (r < 0)
                return r;
        if ((int64_t) len != md->size)
                return ossb_error_set(err, -EINVAL, "manifest %s has %zu bytes, its descriptor says %lld", md->digest,
                                      len, (long long) md->size);
        r = ossb_manifest_parse(data, len, &b.manifest, err);
        if (r < 0)
                return r;
        b.digests = calloc(b.manifest->n_layers + 2, sizeof(*b.digests));
        if (!b.digests) {
                ossb_image_blobs_clear(&b);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        memcpy(b.digests[b.n++], md->digest, OSSB_DIGEST_STR_LEN + 1);
        memcpy(b.digests[b.n++], b.manifest->config.digest, OSSB_DIGEST_STR_LEN + 1);
        r = need_blob(s, b.manifest->config.digest, "config", err);
        for (size_t i = 0; r >= 0 && i < b.manifest->n_layers; i++) {
                memcpy(b.digests[b.n++], b.manifest->layers[i].digest, OSSB_DIGEST_STR_LEN + 1);
                r = need_blob(s, b.manifest->layers[i].digest, "layer", err);
        }
        if (r < 0) {
                ossb_image_blobs_clear(&b);
                return r;
        }
        qsort(b.digests, b.n, sizeof(*b.digests), digest_cmp);
        size_t w = 0;
        for (size_t i = 0; i < b.n; i++)
                if (w == 0 || !streq(b.digests[w - 1], b.digests[i]))
                        memmove(b.digests[w++], b.digests[i], OSSB_DIGEST_STR_LEN + 1);
        b.n = w;
        *ret = b;
        return 0;
}

/* ---- index.json ---- */

static const char *entry_ref_name(json_object *entry)
{
        json_object *a, *v;
        if (!json_object_is_type(entry, json_type_object) || !json_object_object_get_ex(entry, "annotations", &a) ||
            !json_object_is_type(a, json_type_object) ||
            !json_object_object_get_ex(a, OSSB_ANNOTATION_REF_NAME, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static const char *entry_digest(json_object *entry)
{
        json_object *v;
        if (!json_object_is_type(entry, json_type_object) || !json_object_object_get_ex(entry, "digest", &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool entry_replaced(json_object *entry, const struct ossb_descriptor *md, const struct ossb_layout_tag *tags,
                           size_t n_tags)
{
        const char *ref = entry_ref_name(entry);
        if (n_tags == 0) {
                const char *d = entry_digest(entry);
                return !ref && d && streq(d, md->digest); /* the same untagged image */
        }
        for (size_t i = 0; ref && i < n_tags; i++)
                if (streq(ref, tags[i].ref_name))
                        return true;
        return false;
}

static int put_str(json_object *o, const char *k, const char *v)
{
        json_object *s = json_object_new_string(v);
        if (!s || json_object_object_add(o, k, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static json_object *index_entry(const struct ossb_descriptor *md, const struct ossb_layout_tag *tag)
{
        struct ossb_descriptor d = { .media_type = md->media_type, .size = md->size };
        memcpy(d.digest, md->digest, sizeof(d.digest));
        _cleanup_json_ json_object *o = ossb_descriptor_to_json(&d);
        if (!o || !tag)
                return TAKE_PTR(o);
        json_object *a = json_object_new_object();
        if (!a || json_object_object_add(o, "annotations", a) < 0) {
                json_object_put(a);
                return NULL;
        }
        /* keys in sorted order, as Go's encoding/json writes maps */
        if (tag->full_name && put_str(a, OSSB_ANNOTATION_CONTAINERD_NAME, tag->full_name) < 0)
                return NULL;
        if (put_str(a, OSSB_ANNOTATION_REF_NAME, tag->ref_name) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static bool streq_null(const char *a, const char *b)
{
        return (!a && !b) || (a && b && streq(a, b));
}

/* The same tag twice in one call makes one entry; the same ref name with another full name
 * (docker archives: "1.0" for app:1.0 and other/app:1.0) makes two. */
static bool tag_seen(const struct ossb_layout_tag *tags, size_t i)
{
        for (size_t j = 0; j < i; j++)
                if (streq(tags[j].ref_name, tags[i].ref_name) && streq_null(tags[j].full_name, tags[i].full_name))
                        return true;
        return false;
}

static int index_fill(json_object *idx, json_object *old, const struct ossb_descriptor *md,
                      const struct ossb_layout_tag *tags, size_t n_tags)
{
        json_object *arr = json_object_new_array();
        json_object *v;

        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; old && i < json_object_array_length(old); i++) {
                json_object *e = json_object_array_get_idx(old, i);
                if (entry_replaced(e, md, tags, n_tags))
                        continue;
                if (json_object_array_add(arr, json_object_get(e)) < 0)
                        goto oom;
        }
        for (size_t i = 0; i < (n_tags ? n_tags : 1); i++) {
                if (n_tags && tag_seen(tags, i))
                        continue;
                json_object *e = index_entry(md, n_tags ? &tags[i] : NULL);
                if (!e || json_object_array_add(arr, e) < 0) {
                        json_object_put(e);
                        goto oom;
                }
        }
        v = json_object_new_int(2);
        if (!v || json_object_object_add(idx, "schemaVersion", v) < 0) {
                json_object_put(v);
                goto oom;
        }
        if (put_str(idx, "mediaType", OSSB_MT_OCI_INDEX) < 0)
                goto oom;
        return json_object_object_add(idx, "manifests", arr) < 0 ? (json_object_put(arr), -ENOMEM) : 0;
oom:
        json_object_put(arr);
        return -ENOMEM;
}

int ossb_layout_build_index(json_object *base, const struct ossb_descriptor *md, const struct ossb_layout_tag *tags,
                            size_t n_tags, json_object **ret, struct ossb_error **err)
{
        _cleanup_json_ json_object *idx = NULL;
        json_object *old = NULL;

        if (base) {
                if (!json_object_is_type(base, json_type_object))
                        return ossb_error_set(err, -EPROTO, "index.json is not a JSON object");
                if (json_object_object_get_ex(base, "manifests", &old) && !json_object_is_type(old, json_type_null) &&
                    !json_object_is_type(old, json_type_array))
                        return ossb_error_set(err, -EPROTO, "index.json: `manifests` is not an array");
                if (json_object_deep_copy(base, &idx, NULL) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (!json_object_object_get_ex(idx, "manifests", &old) || !json_object_is_type(old, json_type_array))
                        old = NULL;
                json_object_get(old); /* survives its replacement in idx */
        } else if (!(idx = json_object_new_object()))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = index_fill(idx, old, md, tags, n_tags);
        json_object_put(old);
        if (r < 0)
                return ossb_error_set(err, r, "out of memory");
        *ret = TAKE_PTR(idx);
        return 0;
}

/* ---- atomic tar writer ---- */

struct ossb_tar_out {
        char *dest;
        char *tmp;
        int fd;
        struct archive *a;
        struct archive_entry *e;
        struct ossb_error *cb_err;
        bool aborting;
        bool committed;
};

static la_ssize_t tar_out_write_cb(struct archive *a, void *userdata, const void *buf, size_t len)
{
        struct ossb_tar_out *t = userdata;
        const char *p = buf;
        size_t left = len;

        if (t->aborting)
                return (la_ssize_t) len;
        while (left > 0) {
                ssize_t n = write(t->fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = ossb_error_set(&t->cb_err, -errno, "cannot write `%s`: %m", t->tmp);
                        archive_set_error(a, -r, "write failed");
                        return -1;
                }
                p += n;
                left -= (size_t) n;
        }
        return (la_ssize_t) len;
}

static int tar_fail(struct ossb_tar_out *t, const char *name, struct ossb_error **err)
{
        int r;
        if (t->cb_err) {
                r = ossb_error_set(err, t->cb_err->code, "%s", t->cb_err->msg ? t->cb_err->msg : "write failed");
                ossb_error_free(t->cb_err);
                t->cb_err = NULL;
        } else {
                const char *m = archive_error_string(t->a);
                r = ossb_error_set(err, -EIO, "tar entry `%s`: %s", name, m ? m : "libarchive error");
        }
        return r;
}

int ossb_tar_out_new(const char *dest, struct ossb_tar_out **ret, struct ossb_error **err)
{
        struct ossb_tar_out *t = calloc(1, sizeof(*t));
        if (!t)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        t->fd = -1;
        t->dest = strdup(dest);
        t->tmp = ossb_tmp_name(dest);
        t->a = archive_write_new();
        t->e = archive_entry_new();
        if (!t->dest || !t->tmp || !t->a || !t->e) {
                ossb_tar_out_free(t);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        t->fd = open(t->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (t->fd < 0) {
                int r = ossb_error_set(err, -errno, "cannot create `%s`: %m", t->tmp);
                free(t->tmp);
                t->tmp = NULL;
                ossb_tar_out_free(t);
                return r;
        }
        if (archive_write_set_format_pax_restricted(t->a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(t->a, 1) != ARCHIVE_OK ||
            archive_write_open(t->a, t, NULL, tar_out_write_cb, NULL) != ARCHIVE_OK) {
                int r = tar_fail(t, dest, err);
                ossb_tar_out_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static int tar_header(struct ossb_tar_out *t, const char *name, unsigned type, int64_t size, struct ossb_error **err)
{
        archive_entry_clear(t->e);
        archive_entry_copy_pathname(t->e, name);
        archive_entry_set_filetype(t->e, type);
        archive_entry_set_perm(t->e, type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_size(t->e, size);
        archive_entry_set_mtime(t->e, 0, 0);
        locale_t old = ossb_tar_locale_enter();
        int r = archive_write_header(t->a, t->e);
        ossb_tar_locale_leave(old);
        if (r < ARCHIVE_WARN)
                return tar_fail(t, name, err);
        return 0;
}

int ossb_tar_out_dir(struct ossb_tar_out *t, const char *name, struct ossb_error **err)
{
        return tar_header(t, name, AE_IFDIR, 0, err);
}

static int tar_data(struct ossb_tar_out *t, const char *name, const void *data, size_t len, struct ossb_error **err)
{
        if (len == 0)
                return 0;
        la_ssize_t n = archive_write_data(t->a, data, len);
        if (n < 0 || (size_t) n != len)
                return tar_fail(t, name, err);
        return 0;
}

int ossb_tar_out_bytes(struct ossb_tar_out *t, const char *name, const void *data, size_t len, struct ossb_error **err)
{
        int r = tar_header(t, name, AE_IFREG, (int64_t) len, err);
        return r < 0 ? r : tar_data(t, name, data, len, err);
}

static int copy_verified(struct ossb_tar_out *t, int fd, const char *digest, const char *name, int64_t size,
                         struct ossb_error **err)
{
        _cleanup_free_ char *buf = malloc(COPY_CHUNK);
        struct ossb_sha256 *h = NULL;
        char actual[OSSB_DIGEST_STR_LEN + 1];
        int64_t off = 0;
        int r = 0;

        if (!buf || ossb_sha256_new(&h) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        while (r >= 0 && off < size) {
                size_t want = size - off > COPY_CHUNK ? COPY_CHUNK : (size_t) (size - off);
                ssize_t n = pread(fd, buf, want, (off_t) off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = ossb_error_set(err, n < 0 ? -errno : -EIO, "cannot read blob %s", digest);
                        break;
                }
                r = ossb_sha256_update(h, buf, (size_t) n);
                if (r >= 0)
                        r = tar_data(t, name, buf, (size_t) n, err);
                off += n;
        }
        ossb_sha256_final(h, actual);
        ossb_sha256_free(h);
        if (r >= 0 && !streq(actual, digest))
                r = ossb_error_set(err, -EBADMSG, "blob %s in the content store is corrupt (its content hashes to %s)",
                                   digest, actual);
        return r;
}

int ossb_tar_out_blob(struct ossb_tar_out *t, struct ossb_store *s, const char *digest, const char *name,
                      struct ossb_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r = ossb_store_open_blob(s, digest, &fd, err);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat blob %s: %m", digest);
        r = tar_header(t, name, AE_IFREG, (int64_t) st.st_size, err);
        if (r < 0)
                return r;
        return copy_verified(t, fd, digest, name, (int64_t) st.st_size, err);
}

int ossb_tar_out_blobs(struct ossb_tar_out *t, struct ossb_store *s, const struct ossb_image_blobs *b,
                       struct ossb_error **err)
{
        int r = ossb_tar_out_dir(t, "blobs", err);
        if (r >= 0)
                r = ossb_tar_out_dir(t, "blobs/sha256", err);
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                char name[sizeof("blobs/sha256/") + OSSB_SHA256_HEX_LEN];
                snprintf(name, sizeof(name), "blobs/sha256/%s", b->digests[i] + 7);
                r = ossb_tar_out_blob(t, s, b->digests[i], name, err);
        }
        return r;
}

static int parent_dir(const char *path, char **ret)
{
        const char *slash = strrchr(path, '/');
        *ret = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
        return *ret ? 0 : -ENOMEM;
}

int ossb_tar_out_commit(struct ossb_tar_out *t, struct ossb_error **err)
{
        _cleanup_free_ char *dir = NULL;
        if (archive_write_close(t->a) != ARCHIVE_OK)
                return tar_fail(t, t->dest, err);
        if (fsync(t->fd) < 0)
                return ossb_error_set(err, -errno, "cannot fsync `%s`: %m", t->tmp);
        if (close(t->fd) < 0) {
                t->fd = -1;
                return ossb_error_set(err, -errno, "cannot close `%s`: %m", t->tmp);
        }
        t->fd = -1;
        if (rename(t->tmp, t->dest) < 0)
                return ossb_error_set(err, -errno, "cannot rename `%s` to `%s`: %m", t->tmp, t->dest);
        t->committed = true;
        if (parent_dir(t->dest, &dir) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_fsync_dir(dir);
        if (r < 0)
                return ossb_error_set(err, r, "cannot fsync `%s`: %s", dir, strerror(-r));
        return 0;
}

void ossb_tar_out_free(struct ossb_tar_out *t)
{
        if (!t)
                return;
        t->aborting = true;
        if (t->a)
                archive_write_free(t->a);
        archive_entry_free(t->e);
        if (t->fd >= 0)
                close(t->fd);
        if (t->tmp && !t->committed)
                (void) unlink(t->tmp);
        ossb_error_free(t->cb_err);
        free(t->tmp);
        free(t->dest);
        free(t);
}

OSSB_DEFINE_CLEANUP(struct ossb_tar_out *, ossb_tar_out_free)

/* ---- layout directory ---- */

static int read_json_file(const char *path, size_t max, json_object **ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = ossb_read_file(path, max, &data, &len, err);
        if (r < 0)
                return r;
        r = ossb_json_parse(data, len, max, ret, err);
        if (r < 0)
                return ossb_error_wrap(err, "`%s`", path);
        return 0;
}

static int check_layout_file(const char *path, struct ossb_error **err)
{
        _cleanup_json_ json_object *o = NULL;
        json_object *v;
        int r = read_json_file(path, 4096, &o, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "imageLayoutVersion", &v) ||
            !json_object_is_type(v, json_type_string))
                return ossb_error_set(err, -EPROTO, "`%s` has no imageLayoutVersion", path);
        if (!streq(json_object_get_string(v), "1.0.0"))
                return ossb_error_set(err, -EPROTO, "`%s`: unsupported image layout version `%s`", path,
                                      json_object_get_string(v));
        return 0;
}

static int dir_is_empty(const char *path, bool *ret)
{
        DIR *d = opendir(path);
        struct dirent *de;
        if (!d)
                return -errno;
        *ret = true;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        *ret = false;
                        break;
                }
        closedir(d);
        return 0;
}

/* Make `dest` a directory (creating it) and lock it against other ossb writers: *ret_fd holds
 * an flock(LOCK_EX) on the directory until it is closed. */
static int open_dest(const char *dest, int *ret_fd, struct ossb_error **err)
{
        struct stat st;
        int r;

        if (stat(dest, &st) < 0) {
                if (errno != ENOENT)
                        return ossb_error_set(err, -errno, "cannot access `%s`: %m", dest);
                r = ossb_mkdir_p(dest, 0755);
                if (r < 0)
                        return ossb_error_set(err, r, "cannot create `%s`: %s", dest, strerror(-r));
        } else if (!S_ISDIR(st.st_mode))
                return ossb_error_set(err, -ENOTDIR, "`%s` exists and is not a directory", dest);
        int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", dest);
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR) {
                        r = ossb_error_set(err, -errno, "cannot lock `%s`: %m", dest);
                        close(fd);
                        return r;
                }
        *ret_fd = fd;
        return 0;
}

/* Accept an empty directory or an existing layout (whose index.json goes to *ret_index, NULL
 * when there is none); refuse anything else. */
static int check_dest(const char *dest, json_object **ret_index, struct ossb_error **err)
{
        _cleanup_free_ char *layout = ossb_path_join(dest, "oci-layout");
        _cleanup_free_ char *index = ossb_path_join(dest, "index.json");
        struct stat st;
        bool empty = false;
        int r;

        *ret_index = NULL;
        if (!layout || !index)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (lstat(layout, &st) == 0) {
                r = check_layout_file(layout, err);
                if (r >= 0 && access(index, F_OK) == 0)
                        r = read_json_file(index, INDEX_MAX_SIZE, ret_index, err);
                return r < 0 ? ossb_error_wrap(err, "cannot add to the image layout `%s`", dest) : 0;
        }
        r = dir_is_empty(dest, &empty);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read `%s`: %s", dest, strerror(-r));
        if (!empty)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EEXIST,
                                       "`%s` is a non-empty directory and not an OCI image layout (it has no "
                                       "oci-layout file); refusing to write into it",
                                       dest);
        return 0;
}

/* Hard link (or else copy) a store blob to a temp name in `dir`, then rename it into place. */
static int place_blob(struct ossb_store *s, const char *digest, const char *dir, struct ossb_error **err)
{
        _cleanup_free_ char *src = NULL, *dst = NULL, *tmp = NULL;
        struct stat st;
        int64_t size;
        int r = ossb_store_blob_path(s, digest, &src, err);
        if (r < 0)
                return r;
        r = ossb_store_blob_size(s, digest, &size, err);
        if (r < 0)
                return r;
        dst = ossb_path_join(dir, digest + 7);
        if (!dst)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (lstat(dst, &st) == 0 && S_ISREG(st.st_mode) && (int64_t) st.st_size == size)
                return 0; /* already there */
        tmp = ossb_tmp_name(dst);
        if (!tmp)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (link(src, tmp) < 0) {
                _cleanup_close_ int in = -1, out = -1;
                r = ossb_store_open_blob(s, digest, &in, err);
                if (r < 0)
                        return r;
                out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
                if (out < 0)
                        return ossb_error_set(err, -errno, "cannot create `%s`: %m", tmp);
                r = ossb_copy_fd(in, out);
                if (r >= 0 && fsync(out) < 0)
                        r = -errno;
                if (r < 0) {
                        (void) unlink(tmp);
                        return ossb_error_set(err, r, "cannot copy blob %s to `%s`: %s", digest, tmp, strerror(-r));
                }
        }
        if (rename(tmp, dst) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return ossb_error_set(err, r, "cannot rename `%s` to `%s`: %s", tmp, dst, strerror(-r));
        }
        (void) unlink(tmp); /* left behind when dst already was the same inode */
        return 0;
}

static int write_index_file(const char *dest, json_object *idx, struct ossb_error **err)
{
        _cleanup_free_ char *path = ossb_path_join(dest, "index.json");
        const char *s = ossb_json_to_string(idx);
        if (!path || !s)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ossb_write_file_atomic(path, s, strlen(s), 0644, err);
}

static int write_layout_file(const char *dest, struct ossb_error **err)
{
        _cleanup_free_ char *path = ossb_path_join(dest, "oci-layout");
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (access(path, F_OK) == 0)
                return 0;
        return ossb_write_file_atomic(path, OSSB_OCI_LAYOUT_FILE, strlen(OSSB_OCI_LAYOUT_FILE), 0644, err);
}

static int write_dir_blobs(struct ossb_store *s, const char *dest, const struct ossb_image_blobs *b,
                           struct ossb_error **err)
{
        _cleanup_free_ char *dir = ossb_path_join(dest, "blobs/sha256");
        int r;
        if (!dir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_mkdir_p(dir, 0755);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create `%s`: %s", dir, strerror(-r));
        for (size_t i = 0; i < b->n; i++) {
                r = place_blob(s, b->digests[i], dir, err);
                if (r < 0)
                        return r;
        }
        r = ossb_fsync_dir(dir);
        return r < 0 ? ossb_error_set(err, r, "cannot fsync `%s`: %s", dir, strerror(-r)) : 0;
}

int ossb_layout_write_dir(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                          const struct ossb_layout_tag *tags, size_t n_tags, struct ossb_error **err)
{
        struct ossb_image_blobs b = { 0 };
        _cleanup_json_ json_object *base = NULL, *idx = NULL;
        _cleanup_close_ int lock_fd = -1;
        int r = check_tags(tags, n_tags, err);
        if (r >= 0)
                r = ossb_image_blobs_collect(s, manifest, &b, err);
        if (r >= 0)
                r = open_dest(dest, &lock_fd, err);
        if (r >= 0)
                r = check_dest(dest, &base, err);
        if (r >= 0)
                r = ossb_layout_build_index(base, manifest, tags, n_tags, &idx, err);
        if (r >= 0)
                r = write_dir_blobs(s, dest, &b, err);
        if (r >= 0)
                r = write_layout_file(dest, err);
        if (r >= 0)
                r = write_index_file(dest, idx, err);
        ossb_image_blobs_clear(&b);
        return r < 0 ? ossb_error_wrap(err, "cannot write the OCI layout `%s`", dest) : 0;
}

/* ---- layout tar ---- */

int ossb_layout_write_tar(struct ossb_store *s, const char *dest, const struct ossb_descriptor *manifest,
                          const struct ossb_layout_tag *tags, size_t n_tags, struct ossb_error **err)
{
        struct ossb_image_blobs b = { 0 };
        _cleanup_json_ json_object *idx = NULL;
        _cleanup_(ossb_tar_out_freep) struct ossb_tar_out *t = NULL;
        int r = check_tags(tags, n_tags, err);
        if (r >= 0)
                r = ossb_image_blobs_collect(s, manifest, &b, err);
        if (r >= 0)
                r = ossb_layout_build_index(NULL, manifest, tags, n_tags, &idx, err);
        if (r >= 0)
                r = ossb_tar_out_new(dest, &t, err);
        if (r >= 0)
                r = ossb_tar_out_bytes(t, "oci-layout", OSSB_OCI_LAYOUT_FILE, strlen(OSSB_OCI_LAYOUT_FILE), err);
        if (r >= 0)
                r = ossb_tar_out_blobs(t, s, &b, err);
        if (r >= 0) {
                const char *str = ossb_json_to_string(idx);
                r = str ? ossb_tar_out_bytes(t, "index.json", str, strlen(str), err)
                        : ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (r >= 0)
                r = ossb_tar_out_commit(t, err);
        ossb_image_blobs_clear(&b);
        return r < 0 ? ossb_error_wrap(err, "cannot write the OCI archive `%s`", dest) : 0;
}
