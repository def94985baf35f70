/* snapshotter/mounts.c - an overlay of a stack of layers, by kernel overlayfs or by ossb's
 * FUSE filesystem (fuse/fusefs.h): the one interface the stacked backends mount through.
 *
 * A FUSE mount is served by threads of this process until snap_mount_close.  ossb's FUSE
 * filesystem always has an upper: a read-only view (upper NULL) gets an empty one beside the
 * mount point (TARGET.upper, TARGET.work) and its mount is then made read-only (a bind
 * remount), so nothing can reach that upper. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "fuse/fusefs.h"
#include "snapshotter/snapshotter-internal.h"

struct snap_mount {
        char *target;
        struct ossb_fusefs *fuse; /* NULL: kernel overlayfs */
        char *ro_upper, *ro_work; /* FUSE read-only views: removed at close */
};

static void mount_free(struct snap_mount *m)
{
        if (!m)
                return;
        ossb_fusefs_free(m->fuse); /* unmounts when still mounted */
        if (m->ro_upper)
                (void) ossb_rm_rf(m->ro_upper);
        if (m->ro_work)
                (void) ossb_rm_rf(m->ro_work);
        free(m->ro_upper);
        free(m->ro_work);
        free(m->target);
        free(m);
}

static int fuse_ro_dirs(struct snap_mount *m, const char **upper, const char **work, struct ossb_error **err)
{
        if (asprintf(&m->ro_upper, "%s.upper", m->target) < 0 || asprintf(&m->ro_work, "%s.work", m->target) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (mkdir(m->ro_upper, 0755) < 0 || mkdir(m->ro_work, 0700) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", m->ro_upper);
        *upper = m->ro_upper;
        *work = m->ro_work;
        return 0;
}

static int fuse_open(struct snap_mount *m, const char *const *lowers, struct ossb_fs_shared *const *shared, size_t n,
                     const char *upper, const char *work, bool userxattr, struct ossb_error **err)
{
        struct ossb_fs_source **src = calloc(n, sizeof(*src));
        int r = src ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0 && !upper)
                r = fuse_ro_dirs(m, &upper, &work, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (!shared || !shared[i])
                        r = ossb_fs_source_dir_new(lowers[i], userxattr, &src[i], err);
                else if ((r = ossb_fs_shared_mount_source(shared[i], &src[i])) < 0)
                        ossb_error_set(err, r, "out of memory");
        }
        if (r < 0) {
                for (size_t i = 0; src && i < n; i++)
                        ossb_fs_source_free(src[i]);
                free(src);
                return r;
        }
        const struct ossb_fusefs_opts o = {
                .lowers = src, .n_lowers = n, .upper = upper, .work = work, .mountpoint = m->target,
                .userxattr = userxattr,
        };
        r = ossb_fusefs_mount(&o, &m->fuse, err); /* takes the sources, also on failure */
        free(src);
        if (r >= 0 && m->ro_upper && mount(NULL, m->target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                r = ossb_error_set(err, -errno, "cannot make the FUSE mount `%s` read-only: %m", m->target);
        return r;
}

int snap_mount_open(enum ossb_snapshot_backend kind, const char *const *lowers, struct ossb_fs_shared *const *shared,
                    size_t n, const char *upper, const char *work, const char *target, bool userxattr,
                    bool allow_volatile, struct snap_mount **ret, struct ossb_error **err)
{
        for (size_t i = 0; kind != OSSB_SNAPSHOT_FUSE && shared && i < n; i++)
                if (shared[i])
                        return ossb_error_set(err, -EINVAL, "`%s` is read lazily: only the fuse snapshotter can mount it",
                                              lowers[i]);
        struct snap_mount *m = calloc(1, sizeof(*m));
        if (!m || !(m->target = strdup(target))) {
                free(m);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        int r = kind == OSSB_SNAPSHOT_FUSE
                        ? fuse_open(m, lowers, shared, n, upper, work, userxattr, err)
                        : snap_overlay_mount_layers(lowers, n, upper, work, target, userxattr, allow_volatile, err);
        if (r < 0) {
                mount_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

int snap_mount_close(struct snap_mount **mp, struct ossb_error **err)
{
        struct snap_mount *m = *mp;
        int r = 0;
        if (!m)
                return 0;
        if (m->fuse) {
                /* a handler's failure is reported here, after the unmount: the mount is gone */
                r = ossb_fusefs_unmount(m->fuse, err);
                ossb_fusefs_free(TAKE_PTR(m->fuse));
        } else if ((r = snap_overlay_umount(m->target, err)) < 0)
                return r; /* still mounted: the caller leaves what is beneath it alone */
        mount_free(m);
        *mp = NULL;
        return r;
}

int snap_mount_open_ro(enum ossb_snapshot_backend kind, const char *const *lowers, struct ossb_fs_shared *const *shared,
                       size_t n, const char *empty, const char *target, bool userxattr, struct snap_mount **ret,
                       struct ossb_error **err)
{
        _cleanup_free_ const char **l = reallocarray(NULL, n + 1, sizeof(char *));
        _cleanup_free_ struct ossb_fs_shared **sh = calloc(n + 1, sizeof(*sh));
        if (!l || !sh)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        memcpy(l, lowers, n * sizeof(char *));
        if (shared)
                memcpy(sh, shared, n * sizeof(*sh));
        l[n] = empty;
        return snap_mount_open(kind, l, sh, n + 1, NULL, NULL, target, userxattr, false, ret, err);
}
