/* oci/layout-read.c - reading an image from an OCI image layout (a directory, or a tar of one,
 * plain or gzip/zstd-compressed) into the content store.
 *
 * Owns: nothing persistent besides the blobs it ingests.  Every blob reaches the store through
 * a verified ingest (its digest checked against the name it is stored under, its size against
 * the descriptor that asked for it).  A directory is read blob by blob as the manifests name
 * them; a tar is read once, front to back, its blobs/sha256/<hex> entries ingested as they come
 * (so a tar may come from a pipe), and the image's blobs are then checked in the store.
 * Layouts are untrusted input: index.json and manifests are parsed with the bounded parsers,
 * paths inside a layout directory are resolved beneath it (ossb_open_in_root), the number of
 * blobs and the nesting of indexes are capped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/image.h"
#include "oci/layout.h"
#include "oci/oci-internal.h"
#include "oci/platform.h"

#define LAYOUT_FILE_MAX 4096
#define MAX_BLOBS 65536
#define MAX_INDEX_DEPTH 8
#define COPY_CHUNK (256 * 1024)
#define BLOB_PREFIX "blobs/sha256/"

enum blob_kind { KIND_BLOB, KIND_MANIFEST, KIND_INDEX };

struct want {
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        enum blob_kind kind;
        const char *what; /* for messages: "manifest", "config", "layer", ... */
        int depth;        /* index nesting */
};

struct reader {
        struct ossb_store *s;
        const char *path;
        int dirfd; /* a layout directory; -1 for a tar */
        char *layout_file, *index_json;
        size_t layout_len, index_len;
        char **corrupt;      /* tar blobs whose content did not match their name ... */
        char **corrupt_msgs; /* ... and why */
        struct want *wants;
        size_t n_wants, cap_wants;
};

static void reader_clear(struct reader *rd)
{
        if (rd->dirfd >= 0)
                close(rd->dirfd);
        free(rd->layout_file);
        free(rd->index_json);
        ossb_strv_free(rd->corrupt);
        ossb_strv_free(rd->corrupt_msgs);
        free(rd->wants);
}

static enum blob_kind kind_of(const char *media_type)
{
        if (streq(media_type, OSSB_MT_OCI_MANIFEST) || streq(media_type, OSSB_MT_DOCKER_MANIFEST))
                return KIND_MANIFEST;
        if (streq(media_type, OSSB_MT_OCI_INDEX) || streq(media_type, OSSB_MT_DOCKER_LIST))
                return KIND_INDEX;
        return KIND_BLOB;
}

/* ---- copying a blob into the store ---- */

/* Ingest `size` bytes produced by `next` (a read of at most `len` bytes into buf; 0 at the
 * end), verified against `digest`; more or fewer bytes than `size` is an error. */
typedef ssize_t (*read_fn)(void *userdata, void *buf, size_t len);

static int ingest_stream(struct reader *rd, const char *digest, int64_t size, const char *what, read_fn next,
                         void *userdata, struct ossb_error **err)
{
        struct ossb_store_ingest *in = NULL;
        _cleanup_free_ char *buf = malloc(COPY_CHUNK);
        int64_t got = 0;
        int r;

        if (!buf)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_store_ingest_new(rd->s, &in, err);
        while (r >= 0) {
                ssize_t n = next(userdata, buf, COPY_CHUNK);
                if (n < 0) {
                        r = ossb_error_set(err, (int) n, "cannot read blob %s (%s): %s", digest, what, strerror((int) -n));
                        break;
                }
                if (n == 0)
                        break;
                got += n;
                if (got > size) {
                        r = ossb_error_set(err, -EBADMSG, "blob %s (%s) is larger than the %lld bytes its descriptor says",
                                           digest, what, (long long) size);
                        break;
                }
                r = ossb_store_ingest_write(in, buf, (size_t) n, err);
        }
        if (r >= 0 && got != size)
                r = ossb_error_set(err, -EBADMSG, "blob %s (%s) has %lld bytes, its descriptor says %lld", digest, what,
                                   (long long) got, (long long) size);
        if (r >= 0) {
                r = ossb_store_ingest_commit(in, digest, NULL, NULL, err);
                if (r == -EBADMSG)
                        ossb_error_wrap(err, "blob %s (%s) is corrupt", digest, what);
        }
        ossb_store_ingest_free(in);
        return r;
}

static ssize_t fd_read(void *userdata, void *buf, size_t len)
{
        for (;;) {
                ssize_t n = read(*(int *) userdata, buf, len);
                if (n >= 0 || errno != EINTR)
                        return n < 0 ? -errno : n;
        }
}

struct tar_data {
        struct archive *a;
        bool failed; /* libarchive failed (not the content) */
};

static ssize_t tar_data_read(void *userdata, void *buf, size_t len)
{
        struct tar_data *t = userdata;
        la_ssize_t n = archive_read_data(t->a, buf, len);
        if (n < 0) {
                t->failed = true;
                return -EIO;
        }
        return (ssize_t) n;
}

/* ---- the layout's own files ---- */

static int dir_read_file(struct reader *rd, const char *name, size_t max, char **ret, size_t *ret_len,
                         struct ossb_error **err)
{
        _cleanup_close_ int fd = ossb_open_in_root(rd->dirfd, name, O_RDONLY, 0);
        if (fd < 0)
                return ossb_error_set(err, fd, "cannot open `%s`: %s", name, strerror(-fd));
        int r = ossb_read_fd(fd, max, ret, ret_len);
        if (r == -EFBIG)
                return ossb_error_set(err, -EPROTO, "`%s` is larger than %zu bytes", name, max);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read `%s`: %s", name, strerror(-r));
        return 0;
}

static int check_layout_file(struct reader *rd, struct ossb_error **err)
{
        _cleanup_json_ json_object *o = NULL;
        json_object *v;

        if (!rd->layout_file)
                return ossb_error_set(err, -EPROTO, "it has no `oci-layout` file: not an OCI image layout");
        int r = ossb_json_parse(rd->layout_file, rd->layout_len, LAYOUT_FILE_MAX, &o, err);
        if (r < 0)
                return ossb_error_wrap(err, "`oci-layout`");
        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "imageLayoutVersion", &v) ||
            !json_object_is_type(v, json_type_string))
                return ossb_error_set(err, -EPROTO, "`oci-layout` has no imageLayoutVersion");
        if (!streq(json_object_get_string(v), "1.0.0"))
                return ossb_error_set(err, -EPROTO, "unsupported image layout version `%.32s`", json_object_get_string(v));
        if (!rd->index_json)
                return ossb_error_set(err, -EPROTO, "it has no `index.json`");
        return 0;
}

/* ---- a tar: one pass, blobs ingested as they come ---- */

/* "./blobs/sha256/x" -> "blobs/sha256/x" */
static const char *tar_name(const char *name)
{
        for (;;) {
                if (name[0] == '/')
                        name++;
                else if (name[0] == '.' && name[1] == '/')
                        name += 2;
                else
                        return name;
        }
}

static bool hex64(const char *s)
{
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == OSSB_SHA256_HEX_LEN;
}

static int tar_small_file(struct archive *a, struct archive_entry *e, const char *name, size_t max, char **ret,
                          size_t *ret_len, struct ossb_error **err)
{
        int64_t size = archive_entry_size(e);
        if (size < 0 || (uint64_t) size > max)
                return ossb_error_set(err, -EPROTO, "`%s` is larger than %zu bytes", name, max);
        _cleanup_free_ char *data = malloc((size_t) size + 1);
        if (!data)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        la_ssize_t n = archive_read_data(a, data, (size_t) size);
        if (n != (la_ssize_t) size)
                return ossb_error_set(err, -EBADMSG, "cannot read `%s`: %s", name,
                                      n < 0 ? archive_error_string(a) : "short entry");
        data[size] = '\0';
        free(*ret); /* a later copy of the same name wins, as when a tar is extracted */
        *ret = TAKE_PTR(data);
        *ret_len = (size_t) size;
        return 0;
}

static int tar_blob(struct reader *rd, struct archive *a, int64_t size, const char *hex, struct ossb_error **err)
{
        char digest[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_error_ struct ossb_error *e = NULL;
        struct tar_data t = { .a = a };

        snprintf(digest, sizeof(digest), "sha256:%s", hex);
        if (ossb_store_has(rd->s, digest))
                return 0;
        int r = ingest_stream(rd, digest, size, "blob", tar_data_read, &t, &e);
        if (t.failed)
                return ossb_error_set(err, -EBADMSG, "corrupt tar file: %s", archive_error_string(a));
        if (r == -EBADMSG) {
                /* content that does not match its name: an error only if the image needs it */
                if (ossb_strv_push(&rd->corrupt, digest) < 0 ||
                    ossb_strv_push(&rd->corrupt_msgs, e && e->msg ? e->msg : "corrupt") < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                return 0;
        }
        if (r < 0)
                return ossb_error_set(err, r, "%s", e && e->msg ? e->msg : "cannot read a blob");
        return 0;
}

static int tar_entry(struct reader *rd, struct archive *a, struct archive_entry *e, struct ossb_error **err)
{
        const char *raw = archive_entry_pathname(e);
        if (!raw || archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
                return 0;
        const char *name = tar_name(raw);
        if (streq(name, "oci-layout"))
                return tar_small_file(a, e, name, LAYOUT_FILE_MAX, &rd->layout_file, &rd->layout_len, err);
        if (streq(name, "index.json"))
                return tar_small_file(a, e, name, OSSB_MANIFEST_MAX_SIZE, &rd->index_json, &rd->index_len, err);
        if (!strncmp(name, BLOB_PREFIX, strlen(BLOB_PREFIX)) && hex64(name + strlen(BLOB_PREFIX)))
                return tar_blob(rd, a, archive_entry_size(e), name + strlen(BLOB_PREFIX), err);
        return 0;
}

static inline void archive_read_freep(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

static int read_tar(struct reader *rd, struct ossb_error **err)
{
        _cleanup_(archive_read_freep) struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r;

        if (!a)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        locale_t old = ossb_tar_locale_enter();
        if (archive_read_support_format_tar(a) != ARCHIVE_OK || archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
            archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
            archive_read_open_filename(a, rd->path, 64 * 1024) != ARCHIVE_OK) {
                r = ossb_error_set(err, -EPROTO, "not a tar file: %s", archive_error_string(a));
                goto out;
        }
        for (;;) {
                r = archive_read_next_header(a, &e);
                if (r == ARCHIVE_EOF) {
                        r = 0;
                        break;
                }
                if (r < ARCHIVE_WARN || r == ARCHIVE_RETRY) {
                        r = ossb_error_set(err, -EBADMSG, "corrupt tar file: %s", archive_error_string(a));
                        break;
                }
                r = tar_entry(rd, a, e, err);
                if (r < 0)
                        break;
        }
out:
        ossb_tar_locale_leave(old);
        return r;
}

/* ---- the image's blobs ---- */

static int want_add(struct reader *rd, const struct ossb_descriptor *d, const char *what, int depth,
                    struct ossb_error **err)
{
        for (size_t i = 0; i < rd->n_wants; i++)
                if (streq(rd->wants[i].digest, d->digest))
                        return 0;
        if (rd->n_wants >= MAX_BLOBS)
                return ossb_error_set(err, -EPROTO, "the image has more than %d blobs", MAX_BLOBS);
        if (rd->n_wants == rd->cap_wants) {
                size_t cap = rd->cap_wants ? rd->cap_wants * 2 : 16;
                struct want *w = reallocarray(rd->wants, cap, sizeof(*w));
                if (!w)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                rd->wants = w;
                rd->cap_wants = cap;
        }
        struct want *w = &rd->wants[rd->n_wants++];
        memcpy(w->digest, d->digest, sizeof(w->digest));
        w->size = d->size;
        w->kind = kind_of(d->media_type);
        w->what = w->kind == KIND_MANIFEST ? "manifest" : w->kind == KIND_INDEX ? "index" : what;
        w->depth = depth;
        return 0;
}

static const char *corrupt_reason(struct reader *rd, const char *digest)
{
        for (size_t i = 0; rd->corrupt && rd->corrupt[i]; i++)
                if (streq(rd->corrupt[i], digest))
                        return rd->corrupt_msgs[i];
        return NULL;
}

/* Make sure the blob is in the store with the size its descriptor says. */
static int fetch(struct reader *rd, const struct want *w, struct ossb_error **err)
{
        int64_t size;
        int r;

        if (!ossb_store_has(rd->s, w->digest)) {
                const char *why = corrupt_reason(rd, w->digest);
                if (why)
                        return ossb_error_set(err, -EBADMSG, "%s", why);
                if (rd->dirfd < 0)
                        return ossb_error_set(err, -ENOENT, "blob %s (%s) is missing from the layout", w->digest, w->what);
                char name[sizeof(BLOB_PREFIX) + OSSB_SHA256_HEX_LEN];
                snprintf(name, sizeof(name), BLOB_PREFIX "%s", w->digest + 7);
                _cleanup_close_ int fd = ossb_open_in_root(rd->dirfd, name, O_RDONLY, 0);
                if (fd == -ENOENT)
                        return ossb_error_set(err, -ENOENT, "blob %s (%s) is missing from the layout", w->digest, w->what);
                if (fd < 0)
                        return ossb_error_set(err, fd, "cannot open `%s`: %s", name, strerror(-fd));
                return ingest_stream(rd, w->digest, w->size, w->what, fd_read, &fd, err);
        }
        r = ossb_store_blob_size(rd->s, w->digest, &size, err);
        if (r < 0)
                return r;
        if (size != w->size)
                return ossb_error_set(err, -EBADMSG, "blob %s (%s) has %lld bytes, its descriptor says %lld", w->digest,
                                      w->what, (long long) size, (long long) w->size);
        return 0;
}

static int expand_manifest(struct reader *rd, const struct want *w, const char *data, size_t len,
                           struct ossb_error **err)
{
        struct ossb_manifest *m = NULL;
        int r = ossb_manifest_parse(data, len, &m, err);
        if (r < 0)
                return ossb_error_wrap(err, "manifest %s", w->digest);
        r = want_add(rd, &m->config, "config", w->depth, err);
        for (size_t i = 0; r >= 0 && i < m->n_layers; i++)
                r = want_add(rd, &m->layers[i], "layer", w->depth, err);
        ossb_manifest_free(m);
        return r;
}

static int expand_index(struct reader *rd, const struct want *w, const char *data, size_t len, struct ossb_error **err)
{
        struct ossb_index *ix = NULL;
        if (w->depth >= MAX_INDEX_DEPTH)
                return ossb_error_set(err, -EPROTO, "index %s: indexes nested deeper than %d", w->digest, MAX_INDEX_DEPTH);
        int r = ossb_index_parse(data, len, &ix, err);
        if (r < 0)
                return ossb_error_wrap(err, "index %s", w->digest);
        for (size_t i = 0; r >= 0 && i < ix->n_entries; i++)
                r = want_add(rd, &ix->entries[i].desc, "blob", w->depth + 1, err);
        ossb_index_free(ix);
        return r;
}

/* Fetch every blob the entry needs, reading manifests and indexes as they arrive. */
static int fetch_all(struct reader *rd, struct ossb_error **err)
{
        for (size_t i = 0; i < rd->n_wants; i++) {
                struct want w = rd->wants[i]; /* wants may move as it grows */
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                int r = fetch(rd, &w, err);
                if (r < 0)
                        return r;
                if (w.kind == KIND_BLOB)
                        continue;
                r = ossb_store_read_blob(rd->s, w.digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
                if (r >= 0)
                        r = w.kind == KIND_MANIFEST ? expand_manifest(rd, &w, data, len, err)
                                                    : expand_index(rd, &w, data, len, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- choosing the index.json entry ---- */

static const char *entry_ref(const struct ossb_index_entry *e)
{
        json_object *v;
        if (!e->desc.annotations || !json_object_object_get_ex(e->desc.annotations, OSSB_ANNOTATION_REF_NAME, &v))
                return NULL;
        return json_object_get_string(v);
}

static char *entry_names(const struct ossb_index *ix)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < ix->n_entries; i++) {
                const char *ref = entry_ref(&ix->entries[i]);
                r = ossb_strbuf_appendf(&sb, "%s%s", i ? ", " : "", ref ? ref : ix->entries[i].desc.digest);
        }
        if (r < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static int select_entry(const struct ossb_index *ix, const char *ref_name, const struct ossb_index_entry **ret,
                        struct ossb_error **err)
{
        if (ix->n_entries == 0)
                return ossb_error_set(err, -ENOENT, "index.json lists no image");
        for (size_t i = 0; ref_name && i < ix->n_entries; i++) {
                const char *ref = entry_ref(&ix->entries[i]);
                if (ref && streq(ref, ref_name)) {
                        *ret = &ix->entries[i];
                        return 0;
                }
        }
        bool one_image = true;
        for (size_t i = 1; i < ix->n_entries; i++)
                one_image = one_image && streq(ix->entries[i].desc.digest, ix->entries[0].desc.digest);
        if (!ref_name && one_image) {
                *ret = &ix->entries[0];
                return 0;
        }
        _cleanup_free_ char *names = entry_names(ix);
        if (!names)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (ref_name)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOENT, "no image named `%s` in index.json; it has: %s",
                                       ref_name, names);
        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                               "index.json lists several images (%s): say which one by its name", names);
}

/* ---- the entry point ---- */

static int open_layout(struct reader *rd, struct ossb_error **err)
{
        struct stat st;
        int r;

        if (stat(rd->path, &st) < 0)
                return ossb_error_set(err, -errno, "cannot access it: %m");
        if (!S_ISDIR(st.st_mode))
                return read_tar(rd, err);
        rd->dirfd = open(rd->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rd->dirfd < 0)
                return ossb_error_set(err, -errno, "cannot open it: %m");
        r = dir_read_file(rd, "oci-layout", LAYOUT_FILE_MAX, &rd->layout_file, &rd->layout_len, err);
        if (r == -ENOENT)
                return ossb_error_set(err, -EPROTO, "it has no `oci-layout` file: not an OCI image layout");
        if (r >= 0)
                r = dir_read_file(rd, "index.json", OSSB_MANIFEST_MAX_SIZE, &rd->index_json, &rd->index_len, err);
        return r;
}

int ossb_layout_read(struct ossb_store *s, const char *path, const char *ref_name, struct ossb_descriptor *ret,
                     struct ossb_error **err)
{
        struct reader rd = { .s = s, .path = path, .dirfd = -1 };
        struct ossb_index *ix = NULL;
        const struct ossb_index_entry *entry = NULL;
        struct ossb_descriptor d = { 0 };

        int r = open_layout(&rd, err);
        if (r >= 0)
                r = check_layout_file(&rd, err);
        if (r >= 0) {
                r = ossb_index_parse(rd.index_json, rd.index_len, &ix, err);
                if (r < 0)
                        ossb_error_wrap(err, "index.json");
        }
        if (r >= 0)
                r = select_entry(ix, ref_name, &entry, err);
        if (r >= 0 && kind_of(entry->desc.media_type) == KIND_BLOB)
                r = ossb_error_set(err, -EPROTO, "index.json entry %s has media type `%s`, not a manifest or an index",
                                   entry->desc.digest, entry->desc.media_type);
        if (r >= 0)
                r = want_add(&rd, &entry->desc, "manifest", 0, err);
        if (r >= 0)
                r = fetch_all(&rd, err);
        if (r >= 0 && ossb_descriptor_copy(&entry->desc, &d) < 0)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        ossb_index_free(ix);
        reader_clear(&rd);
        if (r < 0)
                return ossb_error_wrap(err, "cannot read the OCI image layout `%s`", path);
        *ret = d;
        return 0;
}
