/* oci/seekable-convert.c - ossb_layer_convert: an existing layer blob rewritten through the
 * layer writer with another compression (eStargz and zstd:chunked included).
 *
 * Owns: one libarchive reader and one layer writer per call.  The source (gzip, zstd or
 * plain tar, whatever its media type says) is read entry by entry and each entry written
 * again: names, types, modes (setuid/setgid/sticky too), owners, mtimes (seconds), link
 * targets, device numbers and xattrs are kept; user/group names, atimes, ctimes and other PAX
 * records are not, as the layer writer never writes them.  File contents stream through
 * without a temporary copy.  Libarchive runs under the C.UTF-8 locale so names stay bytes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "oci/oci-internal.h"
#include "oci/seekable-internal.h"
#include "oci/seekable-toc.h"
#include "oci/seekable.h"

struct conv_entry {
        struct ossb_layer_entry e;
        char *path, *link;
        struct ossb_xattr *xattrs;
        size_t n_xattrs;
};

static void conv_entry_clear(struct conv_entry *c)
{
        free(c->path);
        free(c->link);
        for (size_t i = 0; i < c->n_xattrs; i++) {
                free((char *) c->xattrs[i].name);
                free((void *) c->xattrs[i].value);
        }
        free(c->xattrs);
        memset(c, 0, sizeof(*c));
}

/* A tar name as the layer writer wants it: leading '/' dropped, "./" and "//" cleaned;
 * ".." is refused.  "" is the root. */
static int clean(const char *name, char **ret, struct ossb_error **err)
{
        while (*name == '/')
                name++;
        int r = ossb_toc_path_clean(name, strlen(name), ret);
        if (r == -ENOMEM)
                return ossb_error_set(err, r, "out of memory");
        if (r < 0)
                return ossb_error_set(err, -EBADMSG, "the layer has an entry `%s` that leaves its root", name);
        return 0;
}

static int copy_xattrs(struct archive_entry *ae, struct conv_entry *c, struct ossb_error **err)
{
        const char *name;
        const void *value;
        size_t size;
        int n = archive_entry_xattr_reset(ae);
        if (n <= 0)
                return 0;
        c->xattrs = calloc((size_t) n, sizeof(*c->xattrs));
        if (!c->xattrs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        while (c->n_xattrs < (size_t) n && archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
                struct ossb_xattr *x = &c->xattrs[c->n_xattrs++];
                void *v = malloc(size ? size : 1);
                x->name = strdup(name);
                x->value = v;
                x->size = size;
                if (!x->name || !v)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (size)
                        memcpy(v, value, size);
        }
        c->e.xattrs = c->xattrs;
        c->e.n_xattrs = c->n_xattrs;
        return 0;
}

static int entry_type(struct archive_entry *ae, enum ossb_entry_type *ret)
{
        if (archive_entry_hardlink(ae)) {
                *ret = OSSB_ENTRY_HARDLINK;
                return 0;
        }
        switch (archive_entry_filetype(ae)) {
        case AE_IFREG:
                *ret = OSSB_ENTRY_FILE;
                return 0;
        case AE_IFDIR:
                *ret = OSSB_ENTRY_DIR;
                return 0;
        case AE_IFLNK:
                *ret = OSSB_ENTRY_SYMLINK;
                return 0;
        case AE_IFCHR:
                *ret = OSSB_ENTRY_CHAR;
                return 0;
        case AE_IFBLK:
                *ret = OSSB_ENTRY_BLOCK;
                return 0;
        case AE_IFIFO:
                *ret = OSSB_ENTRY_FIFO;
                return 0;
        }
        return -EOPNOTSUPP;
}

/* The layer writer's entry for a libarchive one (under the C.UTF-8 locale); *skip for what
 * is not written again (the root, sockets). */
static int convert_entry(struct archive_entry *ae, struct conv_entry *c, bool *skip, struct ossb_error **err)
{
        const char *name = archive_entry_pathname(ae);
        int r;
        *skip = false;
        if (!name)
                return ossb_error_set(err, -EBADMSG, "a layer entry without a name");
        r = clean(name, &c->path, err);
        if (r < 0)
                return r;
        if (entry_type(ae, &c->e.type) < 0 || !*c->path) {
                log_debug("layer conversion: `%s` (%s) is not kept", name, *c->path ? "a socket" : "the root");
                *skip = true;
                return 0;
        }
        c->e.path = c->path;
        c->e.mode = archive_entry_perm(ae) & 07777;
        c->e.uid = (uid_t) archive_entry_uid(ae);
        c->e.gid = (gid_t) archive_entry_gid(ae);
        c->e.mtime_sec = archive_entry_mtime(ae);
        c->e.mtime_nsec = archive_entry_mtime_nsec(ae);
        c->e.size = c->e.type == OSSB_ENTRY_FILE && archive_entry_size_is_set(ae) ? archive_entry_size(ae) : 0;
        c->e.rdev = archive_entry_rdev(ae);
        if (c->e.type == OSSB_ENTRY_HARDLINK)
                r = clean(archive_entry_hardlink(ae), &c->link, err);
        else if (c->e.type == OSSB_ENTRY_SYMLINK && !(c->link = strdup(archive_entry_symlink(ae) ? archive_entry_symlink(ae) : "")))
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        c->e.linkname = c->link;
        return r < 0 ? r : copy_xattrs(ae, c, err);
}

static ssize_t read_data(void *userdata, void *buf, size_t cap, struct ossb_error **err)
{
        struct archive *a = userdata;
        la_ssize_t n = archive_read_data(a, buf, cap);
        if (n < 0)
                return ossb_error_set(err, -EBADMSG, "cannot read the layer: %s", archive_error_string(a));
        return (ssize_t) n;
}

/* eStargz's own entries at the root of a source layer that is eStargz: not content. */
static bool estargz_artifact(const struct ossb_descriptor *src, const char *path)
{
        json_object *v;
        if (!src->annotations || !json_object_object_get_ex(src->annotations, OSSB_ANNOTATION_STARGZ_TOC_DIGEST, &v))
                return false;
        return streq(path, OSSB_ESTARGZ_TOC_NAME) || streq(path, ".prefetch.landmark") ||
               streq(path, ".no.prefetch.landmark");
}

static int next_header(struct archive *a, struct archive_entry **ae, struct ossb_error **err)
{
        int r = archive_read_next_header(a, ae);
        if (r == ARCHIVE_EOF)
                return 0;
        if (r < ARCHIVE_WARN)
                return ossb_error_set(err, -EBADMSG, "cannot read the layer: %s", archive_error_string(a));
        return 1;
}

/* One entry copied: 1, or 0 at the end, or -errno. */
static int copy_entry(struct archive *a, const struct ossb_descriptor *src, struct ossb_layer_writer *w,
                      struct ossb_error **err)
{
        struct archive_entry *ae;
        struct conv_entry c = { 0 };
        bool skip = false;
        locale_t old = ossb_tar_locale_enter();
        int r = next_header(a, &ae, err);
        if (r > 0) {
                int k = convert_entry(ae, &c, &skip, err);
                r = k < 0 ? k : r;
        }
        ossb_tar_locale_leave(old);
        if (r > 0 && !skip && !estargz_artifact(src, c.path)) {
                int k = c.e.type == OSSB_ENTRY_FILE ? ossb_layer_writer_add_stream(w, &c.e, read_data, a, err)
                                                    : ossb_layer_writer_add(w, &c.e, -1, err);
                r = k < 0 ? k : r;
        }
        conv_entry_clear(&c);
        return r;
}

static int copy_entries(struct archive *a, const struct ossb_descriptor *src, struct ossb_layer_writer *w,
                        struct ossb_error **err)
{
        int r;
        while ((r = copy_entry(a, src, w, err)) > 0)
                ;
        return r;
}

static int open_source(struct ossb_store *s, const struct ossb_descriptor *src, struct archive **ret, int *ret_fd,
                       struct ossb_error **err)
{
        int fd = -1;
        int r = ossb_store_open_blob(s, src->digest, &fd, err);
        if (r < 0)
                return r;
        struct archive *a = archive_read_new();
        if (!a) {
                close(fd);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_fd(a, fd, 128 * 1024) != ARCHIVE_OK) {
                r = ossb_error_set(err, -EBADMSG, "cannot read layer %s: %s", src->digest, archive_error_string(a));
                archive_read_free(a);
                close(fd);
                return r;
        }
        *ret = a;
        *ret_fd = fd;
        return 0;
}

int ossb_layer_convert(struct ossb_store *s, const struct ossb_descriptor *src, const struct ossb_layer_opts *opts,
                       struct ossb_descriptor *ret, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err)
{
        struct ossb_descriptor d = { 0 };
        struct ossb_layer_writer *w = NULL;
        struct archive *a = NULL;
        _cleanup_close_ int fd = -1;
        int r = open_source(s, src, &a, &fd, err);
        if (r >= 0)
                r = ossb_layer_writer_new(s, opts, &w, err);
        if (r >= 0)
                r = copy_entries(a, src, w, err);
        if (r >= 0)
                r = ossb_layer_writer_finish(w, d.digest, &d.size, ret_diff_id, err);
        if (r >= 0 && ossb_layer_writer_annotations(w, &d.annotations) < 0)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0 && !(d.media_type = strdup(ossb_compression_media_type(opts->compression))))
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        ossb_layer_writer_free(w);
        if (a)
                archive_read_free(a);
        if (r < 0) {
                ossb_descriptor_clear(&d);
                ossb_error_wrap(err, "converting layer %s", src->digest);
                return r;
        }
        *ret = d;
        return 0;
}
