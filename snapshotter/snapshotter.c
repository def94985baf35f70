/* snapshotter/snapshotter.c - the snapshot object common to every backend: backend names,
 * the automatic choice (a probe mount), excluded paths, and the dispatch to the backend
 * vtables (overlay.c, native.c).  See snapshotter.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "snapshotter/snapshotter-internal.h"
#include "snapshotter/stagefs.h"

/* ---- backend names ---- */

int ossb_snapshot_backend_parse(const char *s, enum ossb_snapshot_backend *ret)
{
        static const char *const names[] = { "auto", "overlay", "native", "fuse" };
        for (size_t i = 0; s && i < ELEMENTSOF(names); i++)
                if (streq(s, names[i])) {
                        *ret = (enum ossb_snapshot_backend) i;
                        return 0;
                }
        return -EINVAL;
}

const char *ossb_snapshot_backend_name(enum ossb_snapshot_backend b)
{
        switch (b) {
        case OSSB_SNAPSHOT_AUTO:
                return "auto";
        case OSSB_SNAPSHOT_OVERLAY:
                return "overlay";
        case OSSB_SNAPSHOT_NATIVE:
                return "native";
        case OSSB_SNAPSHOT_FUSE:
                return "fuse";
        }
        return "unknown";
}

bool ossb_snapshot_in_userns(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/uid_map", "re");
        unsigned long inside, outside, count;
        if (!f || fscanf(f, "%lu %lu %lu", &inside, &outside, &count) != 3)
                return false;
        return !(inside == 0 && outside == 0 && count == 4294967295UL);
}

/* ---- the automatic choice ---- */

static __thread char reason_buf[512];

static const char *errname(int e)
{
        const char *n = strerrorname_np(e);
        return n ? n : "unknown error";
}

/* Mount an overlay of `kind` in `dir` and delete a lower file through it: 0, or -errno with
 * *ret_what naming the step that failed. */
static int probe_in(enum ossb_snapshot_backend kind, const char *dir, bool userxattr, const char **ret_what)
{
        _cleanup_free_ char *lower = ossb_path_join(dir, "lower"), *upper = ossb_path_join(dir, "upper");
        _cleanup_free_ char *work = ossb_path_join(dir, "work"), *merged = ossb_path_join(dir, "merged");
        _cleanup_free_ char *lf = ossb_path_join(lower, "f"), *mf = ossb_path_join(merged, "f");
        _cleanup_free_ char *uf = ossb_path_join(upper, "f");
        struct snap_mount *m = NULL;
        struct stat st;
        *ret_what = "cannot prepare the probe";
        if (!lower || !upper || !work || !merged || !lf || !mf || !uf)
                return -ENOMEM;
        if (mkdir(lower, 0755) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0 || mkdir(merged, 0755) < 0)
                return -errno;
        _cleanup_close_ int fd = open(lf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        *ret_what = kind == OSSB_SNAPSHOT_FUSE ? "mount(fuse) failed" : "mount(overlay) failed";
        struct ossb_error *e = NULL;
        const char *lowers[] = { lower };
        int r = snap_mount_open(kind, lowers, NULL, 1, upper, work, merged, userxattr, true, &m, &e);
        ossb_error_free(e);
        if (r < 0)
                return r;
        *ret_what = "overlay whiteouts cannot be created here";
        r = unlink(mf) < 0 ? -errno : 0;
        int k = snap_mount_close(&m, NULL);
        if (r == 0 && k < 0)
                r = k;
        if (r == 0 && (lstat(uf, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(0, 0)))
                r = -EPROTO;
        return r;
}

static int probe(enum ossb_snapshot_backend kind, const char *scratch_dir, bool userxattr, const char **ret_what)
{
        _cleanup_free_ char *dir = ossb_path_join(scratch_dir, ".overlay-probe-XXXXXX");
        int r = dir ? ossb_mkdir_p(scratch_dir, 0700) : -ENOMEM;
        *ret_what = "cannot prepare the probe";
        if (r >= 0 && !mkdtemp(dir))
                r = -errno;
        else if (r >= 0) {
                r = probe_in(kind, dir, userxattr, ret_what);
                (void) ossb_rm_rf(dir);
        }
        return r;
}

enum ossb_snapshot_backend ossb_snapshot_backend_auto(const char *scratch_dir, const char **ret_reason)
{
        bool userxattr = ossb_snapshot_in_userns();
        const char *what = NULL, *fuse_what = NULL;
        enum ossb_snapshot_backend b = OSSB_SNAPSHOT_OVERLAY;
        int r = probe(OSSB_SNAPSHOT_OVERLAY, scratch_dir, userxattr, &what), fr = 0;
        if (r >= 0)
                snprintf(reason_buf, sizeof(reason_buf), "overlay: kernel overlayfs mounts here%s",
                         userxattr ? " (userxattr, in a user namespace)" : "");
        else if ((fr = probe(OSSB_SNAPSHOT_FUSE, scratch_dir, userxattr, &fuse_what)) >= 0) {
                b = OSSB_SNAPSHOT_FUSE;
                snprintf(reason_buf, sizeof(reason_buf), "fuse: kernel overlayfs cannot be used (%s: %s); ossb's FUSE "
                         "filesystem mounts here", what, errname(-r));
        } else {
                b = OSSB_SNAPSHOT_NATIVE;
                snprintf(reason_buf, sizeof(reason_buf), "native: overlay: %s: %s; fuse: %s: %s", what, errname(-r),
                         fuse_what, errname(-fr));
        }
        if (ret_reason)
                *ret_reason = reason_buf;
        return b;
}

/* ---- the snapshot ---- */

/* A snapshot with its scratch dir made and resolved (root, stage: one of them); prepared. */
static int snap_create(enum ossb_snapshot_backend backend, const struct snap_backend_ops *ops, const char *root,
                       struct ossb_stagefs *stage, const char *scratch_dir, bool userxattr, struct ossb_snapshot **ret,
                       struct ossb_error **err)
{
        int r = ossb_mkdir_p(scratch_dir, 0700);
        if (r < 0)
                return ossb_error_set(err, r, "snapshot: cannot create `%s`: %s", scratch_dir, strerror(-r));
        struct ossb_snapshot *s = calloc(1, sizeof(*s));
        if (!s)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        s->backend = backend;
        s->ops = ops;
        s->stage = stage;
        s->userxattr = userxattr;
        s->root = root ? realpath(root, NULL) : NULL;
        s->scratch = realpath(scratch_dir, NULL);
        if ((root && !s->root) || !s->scratch)
                r = ossb_error_set(err, -errno, "snapshot: cannot resolve `%s`: %m", s->scratch ? root : scratch_dir);
        else
                r = s->ops->prepare(s, err);
        if (r < 0) {
                ossb_error_wrap(err, "%s snapshot of `%s`", ossb_snapshot_backend_name(backend),
                                root ? root : ossb_stagefs_dir(stage));
                ossb_snapshot_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int ossb_snapshot_new(enum ossb_snapshot_backend backend, const char *root, const char *scratch_dir, bool userxattr,
                      struct ossb_snapshot **ret, struct ossb_error **err)
{
        struct stat st;
        if (backend == OSSB_SNAPSHOT_AUTO) {
                const char *why = NULL;
                backend = ossb_snapshot_backend_auto(scratch_dir, &why);
                log_debug("snapshotter: %s", why);
                if (backend == OSSB_SNAPSHOT_FUSE) /* a plain root: no stack for FUSE to serve */
                        backend = OSSB_SNAPSHOT_NATIVE;
        }
        if (backend == OSSB_SNAPSHOT_FUSE)
                return ossb_error_set(err, -EINVAL, "the fuse snapshotter runs over a stage's layers only");
        if (backend != OSSB_SNAPSHOT_OVERLAY && backend != OSSB_SNAPSHOT_NATIVE)
                return ossb_error_set(err, -EINVAL, "unknown snapshotter backend %d", (int) backend);
        if (stat(root, &st) < 0)
                return ossb_error_set(err, -errno, "snapshot: cannot use `%s` as a root: %m", root);
        if (!S_ISDIR(st.st_mode))
                return ossb_error_set(err, -ENOTDIR, "snapshot: `%s` is not a directory", root);
        return snap_create(backend, backend == OSSB_SNAPSHOT_OVERLAY ? &snap_overlay_ops : &snap_native_ops, root,
                           NULL, scratch_dir, userxattr, ret, err);
}

int ossb_snapshot_new_stage(enum ossb_snapshot_backend backend, struct ossb_stagefs *stage, const char *scratch_dir,
                            struct ossb_snapshot **ret, struct ossb_error **err)
{
        if (backend != ossb_stagefs_backend(stage))
                return ossb_error_set(err, -EINVAL, "the %s snapshotter cannot run over a stage mounted by %s",
                                      ossb_snapshot_backend_name(backend),
                                      ossb_snapshot_backend_name(ossb_stagefs_backend(stage)));
        return snap_create(backend, &snap_layered_ops, NULL, stage, scratch_dir, ossb_stagefs_userxattr(stage), ret,
                           err);
}

const char *ossb_snapshot_path(const struct ossb_snapshot *s)
{
        return s->view;
}

enum ossb_snapshot_backend ossb_snapshot_backend(const struct ossb_snapshot *s)
{
        return s->backend;
}

const char *snap_name(const struct ossb_snapshot *s)
{
        return s->stage ? ossb_stagefs_dir(s->stage) : s->root;
}

/* ---- excluded paths ---- */

static int excl_cmp(const void *key, const void *elem)
{
        return strcmp(key, ((const struct snap_exclude *) elem)->path);
}

ssize_t snap_excluded(const struct ossb_snapshot *s, const char *path)
{
        const struct snap_exclude *x = s->n_excl ? bsearch(path, s->excl, s->n_excl, sizeof(*s->excl), excl_cmp) : NULL;
        return x ? x - s->excl : -1;
}

int ossb_snapshot_exclude(struct ossb_snapshot *s, const char *rel, struct ossb_error **err)
{
        while (rel && *rel == '/')
                rel++;
        _cleanup_free_ char *p = rel ? ossb_path_clean(rel) : NULL;
        if (rel && !p)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!p || streq(p, ".") || streq(p, "..") || strncmp(p, "../", 3) == 0)
                return ossb_error_set(err, -EINVAL, "snapshot: cannot exclude `%s`: not a path inside the root",
                                      rel ? rel : "(null)");
        if (snap_excluded(s, p) >= 0)
                return 0;
        struct snap_exclude *nv = realloc(s->excl, (s->n_excl + 1) * sizeof(*nv));
        if (!nv)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        s->excl = nv;
        size_t i = s->n_excl;
        while (i > 0 && strcmp(s->excl[i - 1].path, p) > 0) {
                s->excl[i] = s->excl[i - 1];
                i--;
        }
        s->excl[i] = (struct snap_exclude) { .path = TAKE_PTR(p) };
        s->n_excl++;
        return 0;
}

/* ---- the rest of the life cycle ---- */

int ossb_snapshot_unmount(struct ossb_snapshot *s, struct ossb_error **err)
{
        return s->ops->unmount(s, err);
}

int ossb_snapshot_commit(struct ossb_snapshot *s, struct ossb_error **err)
{
        int r = ossb_snapshot_unmount(s, err);
        if (r >= 0 && !s->committed)
                r = s->ops->commit(s, err);
        if (r < 0) {
                ossb_error_wrap(err, "commit of the step into `%s`", snap_name(s));
                return r;
        }
        return 0;
}

void ossb_snapshot_free(struct ossb_snapshot *s)
{
        if (!s)
                return;
        s->ops->release(s);
        if (s->scratch) {
                if (s->mounted || s->lower_mnt) {
                        /* never recurse into a mount we could not detach: keep it and what is under it */
                        log_debug("snapshot: `%s` is still mounted; leaving `%s` in place", s->view, s->scratch);
                } else {
                        int r = ossb_rm_rf(s->scratch);
                        if (r < 0)
                                log_debug("snapshot: cannot remove `%s`: %s", s->scratch, strerror(-r));
                }
        }
        for (size_t i = 0; i < s->n_excl; i++)
                free(s->excl[i].path);
        free(s->excl);
        free(s->root);
        free(s->scratch);
        free(s->view);
        free(s->upper);
        free(s->work);
        free(s);
}
