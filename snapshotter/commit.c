/* snapshotter/commit.c - the overlay commit: after the unmount, the upper directory applied
 * onto the root directory, driven by the same walk and emitter as the diff, so the root ends
 * up as "the lower plus the layer" (what the diff left out, the commit leaves alone).
 *
 * Per change: a whiteout removes the path (rm -rf); a directory is created (or replaces a
 * non-directory), an opaque one is emptied first, and its mode, owner, xattrs and times are
 * set after its children moved in (xattrs added or changed; one removed from a directory
 * stays, as a layer cannot remove it either); anything else is renamed from the upper into
 * the root (overlay-private xattrs stripped first), replacing what was there.  When the scratch dir is
 * on another file system (EXDEV) the entry is copied instead, hard links among copied upper
 * files kept by linking later names to the first copy.  Directories are entered with
 * O_NOFOLLOW, so nothing in the root's own symlinks can lead the commit out of it.  A failure
 * leaves the root partly updated (the build fails anyway). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"

struct commit_sink {
        struct snap_sink sink; /* first */
        struct ossb_snapshot *s;
        int rootfd;
        int *fds; /* the root's counterparts of the directories given to item() and not yet left */
        size_t n, cap;
        struct snap_inomap copies; /* upper inode -> root path of its first copy (EXDEV only) */
};

static int top(const struct commit_sink *cs)
{
        return cs->n ? cs->fds[cs->n - 1] : cs->rootfd;
}

static int push_fd(struct commit_sink *cs, int fd)
{
        if (cs->n == cs->cap) {
                size_t nc = cs->cap ? cs->cap * 2 : 16;
                int *nv = realloc(cs->fds, nc * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                cs->fds = nv;
                cs->cap = nc;
        }
        cs->fds[cs->n++] = fd;
        return 0;
}

static int commit_dir(struct snap_sink *sink, const struct snap_item *it, struct ossb_error **err)
{
        struct commit_sink *cs = (struct commit_sink *) sink;
        int pfd = top(cs);
        struct stat st;
        if (fstatat(pfd, it->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (!S_ISDIR(st.st_mode) && unlinkat(pfd, it->name, 0) < 0)
                        return ossb_error_set(err, -errno, "commit: cannot remove `%s/%s`: %m", cs->s->root, it->path);
        } else if (errno != ENOENT)
                return ossb_error_set(err, -errno, "commit: cannot stat `%s/%s`: %m", cs->s->root, it->path);
        if (mkdirat(pfd, it->name, 0700) < 0 && errno != EEXIST)
                return ossb_error_set(err, -errno, "commit: cannot create `%s/%s`: %m", cs->s->root, it->path);
        int fd = openat(pfd, it->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "commit: cannot open `%s/%s`: %m", cs->s->root, it->path);
        if (push_fd(cs, fd) < 0) {
                close(fd);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Set the xattrs of fd (or abs when fd < 0).  Those a directory already has and the upper
 * one lacks stay: a layer cannot remove an xattr from a directory either (a directory entry
 * over a directory keeps what it had, as Docker applies layers), and the root must equal the
 * lower plus the layer. */
static int set_xattrs(const char *abs, int fd, const struct snap_xattrs *want)
{
        for (size_t i = 0; i < want->n; i++) {
                int q = fd >= 0 ? fsetxattr(fd, want->v[i].name, want->v[i].value, want->v[i].size, 0)
                                : lsetxattr(abs, want->v[i].name, want->v[i].value, want->v[i].size, 0);
                if (q < 0)
                        return -errno;
        }
        return 0;
}

static int commit_leave(struct snap_sink *sink, const struct snap_item *it, struct ossb_error **err)
{
        struct commit_sink *cs = (struct commit_sink *) sink;
        _cleanup_close_ int fd = cs->fds[--cs->n];
        _cleanup_free_ char *abs = ossb_path_join(cs->s->root, it->path);
        struct timespec ts[2] = { it->st.st_atim, it->st.st_mtim };
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (fchown(fd, it->st.st_uid, it->st.st_gid) < 0 || fchmod(fd, it->st.st_mode & 07777) < 0)
                return ossb_error_set(err, -errno, "commit: cannot set the owner and mode of `%s`: %m", abs);
        int r = set_xattrs(abs, fd, &it->xattrs);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot set the extended attributes of `%s`: %s", abs,
                                      strerror(-r));
        if (futimens(fd, ts) < 0)
                return ossb_error_set(err, -errno, "commit: cannot set the times of `%s`: %m", abs);
        return 0;
}

static int commit_opaque(struct snap_sink *sink, const struct snap_item *dir, struct ossb_error **err)
{
        struct commit_sink *cs = (struct commit_sink *) sink;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = snap_list_dir(top(cs), &names, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = ossb_rm_rf_at(top(cs), names[i]);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot empty the opaque directory `%s/%s`: %s", cs->s->root,
                                      dir->path, strerror(-r));
        return 0;
}

static int copy_data(const struct snap_item *it, int pfd, struct ossb_error **err)
{
        _cleanup_close_ int in = openat(it->dirfd, it->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return ossb_error_set(err, -errno, "commit: cannot open `%s`: %m", it->abs);
        _cleanup_close_ int out = openat(pfd, it->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return ossb_error_set(err, -errno, "commit: cannot create the copy of `%s`: %m", it->path);
        int r = ossb_copy_fd(in, out);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot copy `%s`: %s", it->abs, strerror(-r));
        return 0;
}

static int copy_node(const struct snap_item *it, int pfd, struct ossb_error **err)
{
        int r;
        if (S_ISREG(it->st.st_mode))
                return copy_data(it, pfd, err);
        if (S_ISLNK(it->st.st_mode))
                r = symlinkat(it->link, pfd, it->name);
        else
                r = mknodat(pfd, it->name, it->st.st_mode & (S_IFMT | 0600), it->st.st_rdev);
        if (r < 0)
                return ossb_error_set(err, -errno, "commit: cannot create the copy of `%s`: %m", it->path);
        return 0;
}

/* The EXDEV path: copy `it` into pfd (its old entry there already removed). */
static int copy_entry(struct commit_sink *cs, const struct snap_item *it, int pfd, struct ossb_error **err)
{
        const char *first = it->st.st_nlink > 1 ? snap_inomap_get(&cs->copies, it->st.st_dev, it->st.st_ino) : NULL;
        if (first) {
                if (linkat(cs->rootfd, first, pfd, it->name, 0) < 0)
                        return ossb_error_set(err, -errno, "commit: cannot link `%s` to `%s`: %m", it->path, first);
                return 0;
        }
        _cleanup_free_ char *abs = ossb_path_join(cs->s->root, it->path);
        struct timespec ts[2] = { it->st.st_atim, it->st.st_mtim };
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = copy_node(it, pfd, err);
        if (r < 0)
                return r;
        if (fchownat(pfd, it->name, it->st.st_uid, it->st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            (!S_ISLNK(it->st.st_mode) && fchmodat(pfd, it->name, it->st.st_mode & 07777, 0) < 0))
                return ossb_error_set(err, -errno, "commit: cannot set the owner and mode of `%s`: %m", abs);
        r = set_xattrs(abs, -1, &it->xattrs);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot set the extended attributes of `%s`: %s", abs,
                                      strerror(-r));
        if (utimensat(pfd, it->name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return ossb_error_set(err, -errno, "commit: cannot set the times of `%s`: %m", abs);
        if (it->st.st_nlink > 1 && snap_inomap_put(&cs->copies, it->st.st_dev, it->st.st_ino, it->path) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

static int commit_item(struct snap_sink *sink, const struct snap_item *it, struct ossb_error **err)
{
        struct commit_sink *cs = (struct commit_sink *) sink;
        int pfd = top(cs);
        int r;
        if (S_ISDIR(it->st.st_mode))
                return commit_dir(sink, it, err);
        if ((it->ovl & SNAP_OVL_ANY) && (r = snap_xattrs_strip_overlay(it->abs)) < 0)
                return ossb_error_set(err, r, "commit: cannot remove the overlay attributes of `%s`: %s", it->abs,
                                      strerror(-r));
        if (renameat(it->dirfd, it->name, pfd, it->name) == 0)
                return 0;
        if (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) {
                r = ossb_rm_rf_at(pfd, it->name);
                if (r < 0)
                        return ossb_error_set(err, r, "commit: cannot remove `%s/%s`: %s", cs->s->root, it->path,
                                              strerror(-r));
                if (renameat(it->dirfd, it->name, pfd, it->name) == 0)
                        return 0;
        }
        if (errno != EXDEV)
                return ossb_error_set(err, -errno, "commit: cannot move `%s` into `%s`: %m", it->abs, cs->s->root);
        r = ossb_rm_rf_at(pfd, it->name);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot remove `%s/%s`: %s", cs->s->root, it->path, strerror(-r));
        return copy_entry(cs, it, pfd, err);
}

static int commit_whiteout(struct snap_sink *sink, const char *path, const struct timespec *mtime,
                           struct ossb_error **err)
{
        struct commit_sink *cs = (struct commit_sink *) sink;
        const char *slash = strrchr(path, '/');
        (void) mtime;
        int r = ossb_rm_rf_at(top(cs), slash ? slash + 1 : path);
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot remove `%s/%s`: %s", cs->s->root, path, strerror(-r));
        return 0;
}

int snap_overlay_commit(struct ossb_snapshot *s, struct ossb_error **err)
{
        struct commit_sink cs = {
                .sink = { .item = commit_item, .whiteout = commit_whiteout, .opaque = commit_opaque,
                          .leave = commit_leave },
                .s = s,
        };
        cs.rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cs.rootfd < 0)
                return ossb_error_set(err, -errno, "commit: cannot open `%s`: %m", s->root);
        s->committed = true; /* from here on the upper is being taken apart */
        int r = snap_upper_walk(s, &cs.sink, err);
        while (cs.n > 0)
                close(cs.fds[--cs.n]);
        free(cs.fds);
        close(cs.rootfd);
        snap_inomap_clear(&cs.copies);
        return r;
}
