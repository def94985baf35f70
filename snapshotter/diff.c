/* snapshotter/diff.c - the layer sink: a backend's change walk turned into tar entries
 * through the layer writer (no temporary tar), and ossb_snapshot_diff.
 *
 * Entries as Docker and BuildKit write them: a directory, file, symlink, device or fifo with
 * its mode (setuid/setgid/sticky included), owner, mtime and layer-worthy xattrs; a
 * non-directory whose inode was already written is a hard link to the first path written; a
 * deletion is an empty regular file ".wh.NAME" and an opaque directory gets an empty
 * ".wh..wh..opq" after its own entry, both mode 0 and owned by 0:0 as BuildKit writes them
 * (Docker's classic writer uses 0600), with the whiteout's (overlay) or the parent's (native)
 * mtime, the opaque marker with its directory's.  Mtimes are clamped by the writer
 * (opts->source_date_epoch).  The writer is created at the first entry: an empty diff writes
 * no layer at all. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"

struct layer_sink {
        struct snap_sink sink; /* first */
        struct ossb_store *store;
        const struct ossb_layer_opts *opts;
        struct ossb_layer_writer *w;
        struct snap_inomap links;
};

static int writer(struct layer_sink *ls, struct ossb_error **err)
{
        if (ls->w)
                return 0;
        return ossb_layer_writer_new(ls->store, ls->opts, &ls->w, err);
}

static int entry_type(const struct snap_item *it, enum ossb_entry_type *ret, struct ossb_error **err)
{
        switch (it->st.st_mode & S_IFMT) {
        case S_IFDIR:
                *ret = OSSB_ENTRY_DIR;
                return 0;
        case S_IFREG:
                *ret = OSSB_ENTRY_FILE;
                return 0;
        case S_IFLNK:
                *ret = OSSB_ENTRY_SYMLINK;
                return 0;
        case S_IFCHR:
                *ret = OSSB_ENTRY_CHAR;
                return 0;
        case S_IFBLK:
                *ret = OSSB_ENTRY_BLOCK;
                return 0;
        case S_IFIFO:
                *ret = OSSB_ENTRY_FIFO;
                return 0;
        }
        return ossb_error_set(err, -EINVAL, "`%s`: a file of this type cannot be stored in a layer", it->abs);
}

static int sink_item(struct snap_sink *sink, const struct snap_item *it, struct ossb_error **err)
{
        struct layer_sink *ls = (struct layer_sink *) sink;
        struct ossb_layer_entry e = {
                .path = it->path,
                .mode = it->st.st_mode & 07777,
                .uid = it->st.st_uid,
                .gid = it->st.st_gid,
                .mtime_sec = it->st.st_mtim.tv_sec,
                .mtime_nsec = it->st.st_mtim.tv_nsec,
                .linkname = it->link,
                .rdev = it->st.st_rdev,
                .xattrs = it->xattrs.v,
                .n_xattrs = it->xattrs.n,
        };
        int r = entry_type(it, &e.type, err);
        if (r >= 0)
                r = writer(ls, err);
        if (r < 0)
                return r;
        if (e.type != OSSB_ENTRY_DIR && it->st.st_nlink > 1) {
                const char *first = snap_inomap_get(&ls->links, it->st.st_dev, it->st.st_ino);
                if (first) {
                        e.type = OSSB_ENTRY_HARDLINK;
                        e.linkname = first;
                        return ossb_layer_writer_add(ls->w, &e, -1, err);
                }
                if (snap_inomap_put(&ls->links, it->st.st_dev, it->st.st_ino, it->path) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (e.type != OSSB_ENTRY_FILE || it->st.st_size == 0)
                return ossb_layer_writer_add(ls->w, &e, -1, err);
        e.size = it->st.st_size;
        _cleanup_close_ int fd = openat(it->dirfd, it->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", it->abs);
        return ossb_layer_writer_add(ls->w, &e, fd, err);
}

static int add_marker(struct layer_sink *ls, const char *path, const struct timespec *mtime, struct ossb_error **err)
{
        struct ossb_layer_entry e = {
                .path = path,
                .type = OSSB_ENTRY_FILE,
                .mode = 0,
                .mtime_sec = mtime->tv_sec,
                .mtime_nsec = mtime->tv_nsec,
        };
        int r = writer(ls, err);
        if (r < 0)
                return r;
        return ossb_layer_writer_add_data(ls->w, &e, NULL, 0, err);
}

static int sink_whiteout(struct snap_sink *sink, const char *path, const struct timespec *mtime,
                         struct ossb_error **err)
{
        const char *slash = strrchr(path, '/');
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if ((slash && ossb_strbuf_append_n(&sb, path, (size_t) (slash - path + 1)) < 0) ||
            ossb_strbuf_append(&sb, SNAP_WHITEOUT_PREFIX) < 0 || ossb_strbuf_append(&sb, slash ? slash + 1 : path) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return add_marker((struct layer_sink *) sink, sb.buf, mtime, err);
}

static int sink_opaque(struct snap_sink *sink, const struct snap_item *dir, struct ossb_error **err)
{
        _cleanup_free_ char *p = snap_join(dir->path, SNAP_OPAQUE_MARKER);
        if (!p)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return add_marker((struct layer_sink *) sink, p, &dir->st.st_mtim, err);
}

static int sink_leave(struct snap_sink *sink, const struct snap_item *dir, struct ossb_error **err)
{
        (void) sink;
        (void) dir;
        (void) err;
        return 0;
}

int ossb_snapshot_diff(struct ossb_snapshot *s, struct ossb_store *store, const struct ossb_layer_opts *opts,
                       bool *ret_empty, char ret_digest[OSSB_DIGEST_STR_LEN + 1], int64_t *ret_size,
                       char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_error **err)
{
        struct layer_sink ls = {
                .sink = { .item = sink_item, .whiteout = sink_whiteout, .opaque = sink_opaque, .leave = sink_leave },
                .store = store,
                .opts = opts,
        };
        if (s->committed)
                return ossb_error_set(err, -EINVAL, "the snapshot of `%s` was already committed: no diff", snap_name(s));
        int r = ossb_snapshot_unmount(s, err);
        if (r >= 0)
                r = s->ops->changes(s, &ls.sink, err);
        if (r >= 0 && ls.w)
                r = ossb_layer_writer_finish(ls.w, ret_digest, ret_size, ret_diff_id, err);
        if (r >= 0) {
                *ret_empty = !ls.w;
                if (!ls.w) {
                        ret_digest[0] = ret_diff_id[0] = '\0';
                        *ret_size = 0;
                }
        }
        ossb_layer_writer_free(ls.w);
        snap_inomap_clear(&ls.links);
        if (r < 0) {
                ossb_error_wrap(err, "diff of the step on `%s`", snap_name(s));
                return r;
        }
        return 0;
}
