/* snapshotter/stagefs.c - see stagefs.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "fuse/fusefs.h"
#include "snapshotter/snapshotter-internal.h"
#include "snapshotter/stagefs.h"

struct ossb_stagefs {
        char *dir;
        char *root;
        char *work;
        char *empty2;
        char *upper;        /* NULL until the view is next mounted writable */
        struct stat upper0; /* the upper root's attributes when it was made */
        char **lowers;      /* top-most first; the last is DIR/empty */
        struct ossb_fs_shared **shared; /* parallel to lowers: a lazily read layer (its source,
                                         * referenced; lowers[i] then names it), else NULL */
        size_t n;
        int *locks;
        size_t n_locks;
        unsigned next;
        enum ossb_snapshot_backend kind; /* OVERLAY or FUSE */
        bool userxattr;
        struct snap_mount *mnt;          /* the view, when mounted */
        bool sealed_for_good; /* ossb_stagefs_seal(..., final): the view is read-only */
};

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

int ossb_stagefs_new(const char *dir, enum ossb_snapshot_backend kind, bool userxattr, struct ossb_stagefs **ret,
                     struct ossb_error **err)
{
        if (kind != OSSB_SNAPSHOT_OVERLAY && kind != OSSB_SNAPSHOT_FUSE)
                return ossb_error_set(err, -EINVAL, "stage: the %s snapshotter does not stack layers",
                                      ossb_snapshot_backend_name(kind));
        _cleanup_free_ char *empty = ossb_path_join(dir, "empty");
        struct ossb_stagefs *fs = calloc(1, sizeof(*fs));
        if (!fs || !empty)
                return free(fs), oom(err);
        fs->userxattr = userxattr;
        fs->kind = kind;
        fs->dir = strdup(dir);
        fs->root = ossb_path_join(dir, "root");
        fs->work = ossb_path_join(dir, "work");
        fs->empty2 = ossb_path_join(dir, "empty2");
        int r = fs->dir && fs->root && fs->work && fs->empty2 ? 0 : -ENOMEM;
        if (r >= 0)
                r = ossb_mkdir_p(dir, 0700);
        if (r >= 0 && (mkdir(fs->root, 0755) < 0 || mkdir(fs->work, 0700) < 0 || mkdir(empty, 0755) < 0 ||
                       mkdir(fs->empty2, 0755) < 0))
                r = -errno;
        if (r >= 0)
                r = ossb_strv_push(&fs->lowers, empty);
        if (r >= 0 && !(fs->shared = calloc(1, sizeof(*fs->shared))))
                r = -ENOMEM;
        if (r < 0) {
                ossb_error_set(err, r, "cannot create the stage directory `%s`: %s", dir, strerror(-r));
                ossb_stagefs_free(fs);
                return r;
        }
        fs->n = 1;
        *ret = fs;
        return 0;
}

/* Put `path` (taken) and `sh` (a reference taken, may be NULL) on top of the lowers; on
 * failure neither is taken. */
static int insert_top(struct ossb_stagefs *fs, char *path, struct ossb_fs_shared *sh)
{
        struct ossb_fs_shared **ns = reallocarray(fs->shared, fs->n + 1, sizeof(*ns));
        if (!ns)
                return -ENOMEM;
        fs->shared = ns;
        char **nv = reallocarray(fs->lowers, fs->n + 2, sizeof(char *));
        if (!nv)
                return -ENOMEM;
        fs->lowers = nv;
        memmove(nv + 1, nv, (fs->n + 1) * sizeof(char *));
        memmove(ns + 1, ns, fs->n * sizeof(*ns));
        nv[0] = path;
        ns[0] = sh;
        fs->n++;
        return 0;
}

static int add_lock(struct ossb_stagefs *fs, int fd)
{
        int *nv = reallocarray(fs->locks, fs->n_locks + 1, sizeof(int));
        if (!nv)
                return -ENOMEM;
        fs->locks = nv;
        nv[fs->n_locks++] = fd;
        return 0;
}

/* Whether the upper holds a change: an entry, or other root attributes than it started with. */
static bool upper_changed(const struct ossb_stagefs *fs)
{
        struct stat st;
        if (stat(fs->upper, &st) < 0)
                return true;
        if (st.st_mode != fs->upper0.st_mode || st.st_uid != fs->upper0.st_uid || st.st_gid != fs->upper0.st_gid ||
            st.st_mtim.tv_sec != fs->upper0.st_mtim.tv_sec || st.st_mtim.tv_nsec != fs->upper0.st_mtim.tv_nsec)
                return true;
        DIR *d = opendir(fs->upper);
        if (!d)
                return true;
        struct dirent *de;
        bool any = false;
        while (!any && (de = readdir(d)))
                any = !streq(de->d_name, ".") && !streq(de->d_name, "..");
        closedir(d);
        return any;
}

int ossb_stagefs_unmount(struct ossb_stagefs *fs, struct ossb_error **err)
{
        return snap_mount_close(&fs->mnt, err);
}

int ossb_stagefs_seal(struct ossb_stagefs *fs, struct ossb_error **err)
{
        int r = ossb_stagefs_unmount(fs, err);
        if (r < 0 || !fs->upper)
                return r;
        if (!upper_changed(fs)) {
                (void) ossb_rm_rf(fs->upper);
                free(TAKE_PTR(fs->upper));
                return 0;
        }
        if (insert_top(fs, fs->upper, NULL) < 0)
                return oom(err);
        fs->upper = NULL;
        return 0;
}

int ossb_stagefs_push_layer(struct ossb_stagefs *fs, struct ossb_layerdir *ld, struct ossb_error **err)
{
        int r = ossb_stagefs_seal(fs, err);
        if (r < 0)
                return r;
        if (add_lock(fs, ld->lock_fd) < 0)
                return oom(err);
        ld->lock_fd = -1;
        if (insert_top(fs, ld->path, NULL) < 0)
                return oom(err);
        ld->path = NULL;
        return 0;
}

int ossb_stagefs_push_shared(struct ossb_stagefs *fs, struct ossb_fs_shared *sh, const char *name,
                             struct ossb_error **err)
{
        if (fs->kind != OSSB_SNAPSHOT_FUSE)
                return ossb_error_set(err, -EINVAL, "`%s` is read lazily: only the fuse snapshotter can mount it", name);
        int r = ossb_stagefs_seal(fs, err);
        if (r < 0)
                return r;
        char *p = strdup(name);
        if (!p || insert_top(fs, p, sh) < 0)
                return free(p), oom(err);
        ossb_fs_shared_ref(sh);
        return 0;
}

int ossb_stagefs_push_dir(struct ossb_stagefs *fs, const char *dir, struct ossb_error **err)
{
        _cleanup_free_ char *dst = NULL;
        int r = ossb_stagefs_seal(fs, err);
        if (r < 0)
                return r;
        if (asprintf(&dst, "%s/layer-%u", fs->dir, fs->next++) < 0)
                return oom(err);
        if (rename(dir, dst) < 0)
                return ossb_error_set(err, -errno, "cannot move `%s` to `%s`: %m", dir, dst);
        if (insert_top(fs, dst, NULL) < 0)
                return oom(err);
        dst = NULL;
        return 0;
}

int ossb_stagefs_inherit(struct ossb_stagefs *fs, const struct ossb_stagefs *parent, struct ossb_error **err)
{
        if (fs->n != 1 || fs->upper || fs->mnt)
                return ossb_error_set(err, -EINVAL, "stage: inherit into a stage already in use");
        if (parent->upper)
                return ossb_error_set(err, -EINVAL, "stage: the parent stage `%s` is not finished", parent->dir);
        for (size_t i = parent->n - 1; i-- > 0;) { /* all but the parent's DIR/empty, bottom up */
                char *p = strdup(parent->lowers[i]);
                if (!p || insert_top(fs, p, parent->shared[i]) < 0)
                        return free(p), oom(err);
                if (parent->shared[i])
                        ossb_fs_shared_ref(parent->shared[i]);
        }
        for (size_t i = 0; i < parent->n_locks; i++) {
                int fd = fcntl(parent->locks[i], F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return ossb_error_set(err, -errno, "cannot duplicate a lock: %m");
                if (add_lock(fs, fd) < 0)
                        return close(fd), oom(err);
        }
        return 0;
}

/* A new upper whose root looks like the top-most lower's root (overlay shows the upper's). */
static int make_upper(struct ossb_stagefs *fs, struct ossb_error **err)
{
        struct stat st;
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/upper-%u", fs->dir, fs->next++) < 0)
                return oom(err);
        if (fs->shared[0]) {
                struct ossb_fs_source *src = ossb_fs_shared_source(fs->shared[0]);
                unsigned flags = 0;
                int r = src->ops->getattr(src->ctx, "", &st, &flags);
                if (r < 0)
                        return ossb_error_set(err, r, "cannot read the root of `%s`: %s", fs->lowers[0], strerror(-r));
        } else if (stat(fs->lowers[0], &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat `%s`: %m", fs->lowers[0]);
        if (mkdir(p, 0755) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", p);
        struct timespec ts[2] = { st.st_atim, st.st_mtim };
        if ((lchown(p, st.st_uid, st.st_gid) < 0 && errno != EPERM) || chmod(p, st.st_mode & 07777) < 0 ||
            utimensat(AT_FDCWD, p, ts, 0) < 0 || stat(p, &fs->upper0) < 0)
                return ossb_error_set(err, -errno, "cannot set up `%s`: %m", p);
        fs->upper = TAKE_PTR(p);
        return 0;
}

/* The work dir must be empty of what an earlier mount left (overlay's work/work). */
static int clean_work(struct ossb_stagefs *fs, struct ossb_error **err)
{
        int r = ossb_rm_rf(fs->work);
        if (r < 0 && r != -ENOENT)
                return ossb_error_set(err, r, "cannot clean `%s`: %s", fs->work, strerror(-r));
        if (mkdir(fs->work, 0700) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", fs->work);
        return 0;
}

int ossb_stagefs_mount(struct ossb_stagefs *fs, struct ossb_error **err)
{
        int r;
        if (fs->mnt)
                return 0;
        if (fs->sealed_for_good) {
                r = snap_mount_open_ro(fs->kind, (const char *const *) fs->lowers, fs->shared, fs->n, fs->empty2,
                                       fs->root, fs->userxattr, &fs->mnt, err);
        } else {
                if (!fs->upper && (r = make_upper(fs, err)) < 0)
                        return r;
                r = clean_work(fs, err);
                if (r >= 0)
                        /* volatile (no sync of the upper at unmount): clean_work removed what
                         * would make the kernel refuse to mount it again */
                        r = snap_mount_open(fs->kind, (const char *const *) fs->lowers, fs->shared, fs->n,
                                            fs->upper, fs->work, fs->root, fs->userxattr, true, &fs->mnt, err);
        }
        return r;
}

int ossb_stagefs_finish(struct ossb_stagefs *fs, struct ossb_error **err)
{
        int r = ossb_stagefs_seal(fs, err);
        if (r < 0)
                return r;
        fs->sealed_for_good = true;
        return ossb_stagefs_mount(fs, err);
}

const char *ossb_stagefs_root(const struct ossb_stagefs *fs)
{
        return fs->root;
}

const char *ossb_stagefs_dir(const struct ossb_stagefs *fs)
{
        return fs->dir;
}

enum ossb_snapshot_backend ossb_stagefs_backend(const struct ossb_stagefs *fs)
{
        return fs->kind;
}

bool ossb_stagefs_userxattr(const struct ossb_stagefs *fs)
{
        return fs->userxattr;
}

struct ossb_fs_shared *const *ossb_stagefs_shared(const struct ossb_stagefs *fs)
{
        return fs->shared;
}

const char *const *ossb_stagefs_lowers(const struct ossb_stagefs *fs, size_t *ret_n)
{
        *ret_n = fs->n;
        return (const char *const *) fs->lowers;
}

void ossb_stagefs_free(struct ossb_stagefs *fs)
{
        if (!fs)
                return;
        bool busy = snap_mount_close(&fs->mnt, NULL) < 0 && fs->mnt;
        for (size_t i = 0; i < fs->n_locks; i++)
                close(fs->locks[i]);
        free(fs->locks);
        if (fs->dir && !busy) {
                int r = ossb_rm_rf(fs->dir);
                if (r < 0 && r != -ENOENT)
                        log_debug("stage: cannot remove `%s`: %s", fs->dir, strerror(-r));
        }
        for (size_t i = 0; fs->shared && i < fs->n; i++)
                ossb_fs_shared_unref(fs->shared[i]);
        free(fs->shared);
        ossb_strv_free(fs->lowers);
        free(fs->dir);
        free(fs->root);
        free(fs->work);
        free(fs->empty2);
        free(fs->upper);
        free(fs);
}
