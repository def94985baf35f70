/* snapshotter/overlay.c - the kernel overlayfs backend: the mount (options, escaping,
 * unmount) and its vtable.  The upper-dir walk is in upper.c, the commit in commit.c.
 *
 * Mount options: lowerdir = the stage root, upperdir and workdir in the scratch dir;
 * index=off (no inode index: hard links of lower files copied up are not kept in sync, as in
 * Docker), metacopy=off (a chmod copies the whole file up, so the upper holds its data),
 * redirect_dir=nofollow (a renamed lower directory is never an xattr redirect the diff could
 * not express: rename(2) gets EXDEV and `mv` copies, as Docker's overlay2 relies on; "off"
 * may mean "follow" and conflicts with userxattr), volatile (no fsync on the upper: it is
 * thrown away or moved after the step; retried without it on kernels before 5.10), and
 * userxattr inside a user namespace. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"

/* The kernel reads at most a page of mount data. */
#define MOUNT_DATA_MAX 4095

static int append_escaped(struct ossb_strbuf *sb, const char *path)
{
        for (const char *c = path; *c; c++) {
                if ((*c == ',' || *c == ':' || *c == '\\') && ossb_strbuf_append_c(sb, '\\') < 0)
                        return -ENOMEM;
                if (ossb_strbuf_append_c(sb, *c) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* lowerdir=L1:L2:...  (top first), each escaped; with `by_fd`, /proc/self/fd/N of fds[i]. */
static int append_lowers(struct ossb_strbuf *sb, const char *const *lowers, size_t n, const int *fds)
{
        if (ossb_strbuf_append(sb, "lowerdir=") < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && ossb_strbuf_append_c(sb, ':') < 0)
                        return -ENOMEM;
                if (fds ? ossb_strbuf_appendf(sb, "/proc/self/fd/%d", fds[i]) < 0 : append_escaped(sb, lowers[i]) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int build_options(const char *const *lowers, size_t n, const int *fds, const char *upper, const char *work,
                         bool userxattr, bool volatile_, char **ret)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (append_lowers(&sb, lowers, n, fds) < 0)
                return -ENOMEM;
        if (upper && (ossb_strbuf_append(&sb, ",upperdir=") < 0 || append_escaped(&sb, upper) < 0 ||
                      ossb_strbuf_append(&sb, ",workdir=") < 0 || append_escaped(&sb, work) < 0))
                return -ENOMEM;
        if (ossb_strbuf_append(&sb, ",index=off,metacopy=off,redirect_dir=nofollow") < 0 ||
            (userxattr && ossb_strbuf_append(&sb, ",userxattr") < 0) ||
            (volatile_ && ossb_strbuf_append(&sb, ",volatile") < 0))
                return -ENOMEM;
        if (sb.len > MOUNT_DATA_MAX)
                return -ENAMETOOLONG;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

/* Options naming the lowers by path, or, when those exceed a page, by /proc/self/fd/N of
 * O_PATH descriptors opened into *fds (closed by the caller). */
static int options_for(const char *const *lowers, size_t n, const char *upper, const char *work, bool userxattr,
                       bool volatile_, int **fds, char **ret, struct ossb_error **err)
{
        int r = build_options(lowers, n, NULL, upper, work, userxattr, volatile_, ret);
        if (r != -ENAMETOOLONG)
                return r < 0 ? ossb_error_set(err, r, "out of memory") : 0;
        if (!*fds) {
                *fds = calloc(n, sizeof(int));
                if (!*fds)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                for (size_t i = 0; i < n; i++)
                        (*fds)[i] = -1;
                for (size_t i = 0; i < n; i++) {
                        (*fds)[i] = open(lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
                        if ((*fds)[i] < 0)
                                return ossb_error_set(err, -errno, "overlay: cannot open `%s`: %m", lowers[i]);
                }
        }
        r = build_options(lowers, n, *fds, upper, work, userxattr, volatile_, ret);
        if (r == -ENAMETOOLONG)
                return ossb_error_set(err, r, "overlay: %zu layers do not fit in one overlay mount's options (a page)",
                                      n);
        return r < 0 ? ossb_error_set(err, r, "out of memory") : 0;
}

static void close_fds(int *fds, size_t n)
{
        for (size_t i = 0; fds && i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        free(fds);
}

int snap_overlay_mount_layers(const char *const *lowers, size_t n, const char *upper, const char *work,
                              const char *target, bool userxattr, bool allow_volatile, struct ossb_error **err)
{
        int *fds = NULL;
        int r = 0;
        for (int volatile_ = allow_volatile && upper ? 1 : 0; volatile_ >= 0; volatile_--) {
                _cleanup_free_ char *opts = NULL;
                r = options_for(lowers, n, upper, work, userxattr, volatile_, &fds, &opts, err);
                if (r < 0)
                        break;
                if (mount("overlay", target, "overlay", upper ? 0 : MS_RDONLY, opts) == 0) {
                        log_debug("overlay: mounted %s (%s)", target, opts);
                        close_fds(fds, n);
                        return 0;
                }
                r = -errno;
                if (r != -EINVAL)
                        break;
        }
        close_fds(fds, n);
        if (err && *err)
                return r;
        return ossb_error_set(err, r, "overlay: cannot mount an overlay of `%s`%s at `%s`: %s", lowers[0],
                              n > 1 ? " and the layers beneath it" : "", target, strerror(-r));
}

int snap_overlay_mount(const char *lower, const char *upper, const char *work, const char *target, bool userxattr,
                       struct ossb_error **err)
{
        const char *lowers[] = { lower };
        return snap_overlay_mount_layers(lowers, 1, upper, work, target, userxattr, true, err);
}

int snap_overlay_umount(const char *target, struct ossb_error **err)
{
        if (umount2(target, 0) == 0)
                return 0;
        int r = -errno;
        if (r == -EINVAL || r == -ENOENT)
                return 0; /* not mounted */
        if (umount2(target, MNT_DETACH) == 0) {
                log_debug("overlay: %s was busy; detached", target);
                return 0;
        }
        r = -errno;
        return ossb_error_set(err, r, "overlay: cannot unmount `%s`: %s", target, strerror(-r));
}

/* Make the upper root look like the lower root: overlay shows its attributes as "/". */
int snap_copy_root_attrs(const char *root, const char *upper, struct ossb_error **err)
{
        struct stat st;
        if (lstat(root, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat `%s`: %m", root);
        if (lchown(upper, st.st_uid, st.st_gid) < 0 && errno != EPERM)
                return ossb_error_set(err, -errno, "cannot chown `%s`: %m", upper);
        if (chmod(upper, st.st_mode & 07777) < 0)
                return ossb_error_set(err, -errno, "cannot chmod `%s`: %m", upper);
        struct timespec ts[2] = { st.st_atim, st.st_mtim };
        if (utimensat(AT_FDCWD, upper, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return ossb_error_set(err, -errno, "cannot set the times of `%s`: %m", upper);
        return 0;
}

static int overlay_prepare(struct ossb_snapshot *s, struct ossb_error **err)
{
        _cleanup_free_ char *merged = ossb_path_join(s->scratch, "merged");
        s->upper = ossb_path_join(s->scratch, "upper");
        s->work = ossb_path_join(s->scratch, "work");
        if (!merged || !s->upper || !s->work)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (mkdir(s->upper, 0755) < 0 || mkdir(s->work, 0700) < 0 || mkdir(merged, 0755) < 0)
                return ossb_error_set(err, -errno, "cannot create the overlay directories in `%s`: %m", s->scratch);
        int r = snap_copy_root_attrs(s->root, s->upper, err);
        if (r < 0)
                return r;
        r = snap_overlay_mount(s->root, s->upper, s->work, merged, s->userxattr, err);
        if (r < 0)
                return r;
        s->mounted = true;
        s->view = TAKE_PTR(merged);
        return 0;
}

int snap_overlay_unmount_view(struct ossb_snapshot *s, struct ossb_error **err)
{
        if (!s->mounted)
                return 0;
        int r = snap_overlay_umount(s->view, err);
        if (r < 0)
                return r;
        s->mounted = false;
        return 0;
}

int snap_overlay_changes(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err)
{
        return snap_upper_walk(s, sink, err);
}

static void overlay_release(struct ossb_snapshot *s)
{
        if (s->mounted && snap_overlay_umount(s->view, NULL) == 0)
                s->mounted = false;
}

const struct snap_backend_ops snap_overlay_ops = {
        .prepare = overlay_prepare,
        .unmount = snap_overlay_unmount_view,
        .changes = snap_overlay_changes,
        .commit = snap_overlay_commit,
        .release = overlay_release,
};
