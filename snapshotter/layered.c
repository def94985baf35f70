/* snapshotter/layered.c - the overlay and fuse backends over a stage's stack of layers
 * (stagefs.h), mounted through snapshotter/mounts.c.
 *
 * prepare: the stage's view is sealed; the step gets an overlay of the stage's lowers with a
 * fresh upper in the scratch dir (s->view), and a read-only overlay of the same lowers at
 * scratch/lower (s->root), which the upper walk compares against.  diff: the upper walk, as
 * for the flat overlay backend.  commit: nothing is copied: the excluded paths the step's
 * sandbox created (mount points, and parent directories made or copied up only for them) are
 * removed from the upper, which then becomes the stage's top-most lower. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"
#include "snapshotter/stagefs.h"

static int mkdirs(struct ossb_snapshot *s, const char *merged, const char *lower, const char *empty,
                  struct ossb_error **err)
{
        if (mkdir(s->upper, 0755) < 0 || mkdir(s->work, 0700) < 0 || mkdir(merged, 0755) < 0 ||
            mkdir(lower, 0755) < 0 || mkdir(empty, 0755) < 0)
                return ossb_error_set(err, -errno, "cannot create the overlay directories in `%s`: %m", s->scratch);
        return 0;
}

/* The read-only view of the lowers. */
static int mount_lower_view(struct ossb_snapshot *s, const char *empty, struct ossb_error **err)
{
        size_t n = 0;
        const char *const *lowers = ossb_stagefs_lowers(s->stage, &n);
        return snap_mount_open_ro(s->backend, lowers, ossb_stagefs_shared(s->stage), n, empty, s->root, s->userxattr,
                                  &s->lower_mnt, err);
}

static int layered_prepare(struct ossb_snapshot *s, struct ossb_error **err)
{
        _cleanup_free_ char *merged = ossb_path_join(s->scratch, "merged");
        _cleanup_free_ char *empty = ossb_path_join(s->scratch, "empty");
        free(s->root);
        s->root = ossb_path_join(s->scratch, "lower");
        s->upper = ossb_path_join(s->scratch, "upper");
        s->work = ossb_path_join(s->scratch, "work");
        if (!merged || !empty || !s->root || !s->upper || !s->work)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_stagefs_seal(s->stage, err);
        if (r >= 0)
                r = mkdirs(s, merged, s->root, empty, err);
        if (r >= 0)
                r = mount_lower_view(s, empty, err);
        if (r >= 0)
                r = snap_copy_root_attrs(s->root, s->upper, err);
        if (r < 0)
                return r;
        size_t n = 0;
        const char *const *lowers = ossb_stagefs_lowers(s->stage, &n);
        r = snap_mount_open(s->backend, lowers, ossb_stagefs_shared(s->stage), n, s->upper, s->work, merged,
                            s->userxattr, true, &s->view_mnt, err);
        if (r < 0)
                return r;
        s->mounted = true;
        s->view = TAKE_PTR(merged);
        return 0;
}

static int layered_unmount(struct ossb_snapshot *s, struct ossb_error **err)
{
        int r = snap_mount_close(&s->view_mnt, err);
        if (!s->view_mnt)
                s->mounted = false;
        return r;
}

static bool dir_empty(const char *path)
{
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd >= 0 && snap_list_dir(fd, &names, &n) >= 0 && n == 0;
}

/* Remove the upper's empty directory `rel` when the step did not make it for itself: absent
 * from the lowers, or a copy-up of theirs with the same mode and owner. */
static bool scrub_parent(struct ossb_snapshot *s, const char *rel)
{
        _cleanup_free_ char *up = ossb_path_join(s->upper, rel), *low = ossb_path_join(s->root, rel);
        struct stat us, ls;
        unsigned ovl = 0;
        struct snap_xattrs x = { 0 };
        if (!up || !low || lstat(up, &us) < 0 || !S_ISDIR(us.st_mode) || !dir_empty(up))
                return false;
        bool opaque = snap_xattrs_read(up, s->userxattr, &x, &ovl) >= 0 && (ovl & SNAP_OVL_OPAQUE);
        snap_xattrs_clear(&x);
        if (opaque)
                return false;
        if (lstat(low, &ls) == 0 && (!S_ISDIR(ls.st_mode) || ls.st_mode != us.st_mode || ls.st_uid != us.st_uid ||
                                     ls.st_gid != us.st_gid))
                return false;
        return rmdir(up) == 0;
}

static int scrub_one(struct ossb_snapshot *s, const char *rel, struct ossb_error **err)
{
        _cleanup_free_ char *up = ossb_path_join(s->upper, rel), *low = ossb_path_join(s->root, rel);
        _cleanup_free_ char *parent = strdup(rel);
        struct stat st;
        if (!up || !low || !parent)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (lstat(up, &st) < 0 || lstat(low, &st) == 0)
                return 0; /* not in the upper, or there before the step */
        int r = ossb_rm_rf(up);
        if (r < 0)
                return ossb_error_set(err, r, "cannot remove `%s`: %s", up, strerror(-r));
        for (char *slash = strrchr(parent, '/'); slash; slash = strrchr(parent, '/')) {
                *slash = '\0';
                if (!scrub_parent(s, parent))
                        break;
        }
        return 0;
}

static int layered_commit(struct ossb_snapshot *s, struct ossb_error **err)
{
        int r = 0;
        for (size_t i = 0; r >= 0 && i < s->n_excl; i++)
                r = scrub_one(s, s->excl[i].path, err);
        if (r >= 0)
                r = snap_mount_close(&s->lower_mnt, err);
        if (r < 0)
                return r;
        s->committed = true;
        return ossb_stagefs_push_dir(s->stage, s->upper, err);
}

static void layered_release(struct ossb_snapshot *s)
{
        (void) layered_unmount(s, NULL);
        (void) snap_mount_close(&s->lower_mnt, NULL);
}

const struct snap_backend_ops snap_layered_ops = {
        .prepare = layered_prepare,
        .unmount = layered_unmount,
        .changes = snap_overlay_changes,
        .commit = layered_commit,
        .release = layered_release,
};
