/* snapshotter/upper.c - the overlay backend's change walk: the upper directory only, beside
 * the lower root for comparisons, feeding an emitter (see snapshotter-internal.h).
 *
 * What an upper entry means:
 *   a 0/0 character device  a deletion: a whiteout, when the lower has the name (a whiteout of
 *                           a name the lower lacks is dropped, as BuildKit does)
 *   a directory             opaque (overlay.opaque=y) over a lower directory: emitted, then
 *                           the opaque marker, and nothing of the lower is looked at beneath
 *                           it; over a lower non-directory: emitted; absent from the lower:
 *                           new; otherwise emitted when its mode, owner or xattrs differ from
 *                           the lower's, else held back until something beneath it changes
 *                           (its mtime alone does not count, as in BuildKit's overlay differ)
 *   anything else           emitted, unless it equals the lower's entry (type, mode, owner,
 *                           device, size, mtime to the nanosecond, link target, xattrs, and
 *                           the bytes when both mtimes have no sub-second part: tar-made files)
 *                           - a chmod to the same mode copies a file up without changing it;
 *                           a regular file with several links is always emitted so the links
 *                           survive
 *   a socket                not representable: dropped (a whiteout if it hides a lower entry)
 * An entry named ".wh.*" that is not a whiteout cannot be stored (it would read as one): the
 * diff fails naming it.  Redirect or metacopy xattrs (which ossb's mount options rule out)
 * fail the diff rather than giving a wrong one. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"

struct upper_walk {
        struct ossb_snapshot *s;
        struct snap_emitter em;
};

static int walk_dir(struct upper_walk *w, int upfd, int lowfd, const char *dirpath, struct ossb_error **err);

static bool same_stat(const struct stat *a, const struct stat *b)
{
        return a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
               a->st_rdev == b->st_rdev && a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
               a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Whether the upper non-directory `it` equals the lower entry `lst` (see the header). */
static int same_as_lower(struct upper_walk *w, const struct snap_item *it, int lowfd, const struct stat *lst,
                         struct ossb_error **err)
{
        _cleanup_free_ char *labs = NULL;
        struct snap_item low = { .dirfd = -1 };
        int r;

        if (!same_stat(&it->st, lst) || (S_ISREG(it->st.st_mode) && it->st.st_nlink > 1))
                return 0;
        labs = ossb_path_join(w->s->root, it->path);
        if (!labs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = snap_item_load(&low, lowfd, it->path, labs, w->s->userxattr, err);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        r = snap_xattrs_equal(&it->xattrs, &low.xattrs) && (!it->link || streq(it->link, low.link));
        snap_item_clear(&low);
        if (!r || !S_ISREG(lst->st_mode) || lst->st_size == 0 || lst->st_mtim.tv_nsec != 0 ||
            it->st.st_mtim.tv_nsec != 0)
                return r;

        _cleanup_close_ int a = openat(it->dirfd, it->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int b = openat(lowfd, it->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (a < 0 || b < 0)
                return ossb_error_set(err, -errno, "cannot open `%s` to compare it with the lower one: %m", it->abs);
        r = snap_same_content(a, b);
        if (r < 0)
                return ossb_error_set(err, r, "cannot compare `%s` with `%s`: %s", it->abs, labs, strerror(-r));
        return r;
}

/* Flags for an upper directory (see SNAP_DIR_*); *ret_lower_dir: descend into the lower too. */
static int dir_flags(struct upper_walk *w, const struct snap_item *it, bool has_lower, const struct stat *lst,
                     unsigned *ret, bool *ret_lower_dir, struct ossb_error **err)
{
        *ret_lower_dir = false;
        if (!has_lower) {
                *ret = SNAP_DIR_NEW;
                return 0;
        }
        if (!S_ISDIR(lst->st_mode)) {
                *ret = SNAP_DIR_CHANGED;
                return 0;
        }
        if (it->ovl & SNAP_OVL_OPAQUE) {
                *ret = SNAP_DIR_OPAQUE;
                return 0;
        }
        *ret_lower_dir = true;
        *ret = 0;
        if (it->st.st_mode != lst->st_mode || it->st.st_uid != lst->st_uid || it->st.st_gid != lst->st_gid) {
                *ret = SNAP_DIR_CHANGED;
                return 0;
        }
        _cleanup_free_ char *labs = ossb_path_join(w->s->root, it->path);
        struct snap_xattrs lx = { NULL, 0 };
        if (!labs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = snap_xattrs_read(labs, w->s->userxattr, &lx, NULL);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read the extended attributes of `%s`: %s", labs, strerror(-r));
        if (!snap_xattrs_equal(&it->xattrs, &lx))
                *ret = SNAP_DIR_CHANGED;
        snap_xattrs_clear(&lx);
        return 0;
}

static int visit_dir(struct upper_walk *w, struct snap_item *it, int lowfd, bool has_lower, const struct stat *lst,
                     struct ossb_error **err)
{
        unsigned flags;
        bool lower_dir;
        int r = dir_flags(w, it, has_lower, lst, &flags, &lower_dir, err);
        if (r < 0)
                return r;
        _cleanup_close_ int cup = openat(it->dirfd, it->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cup < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", it->abs);
        _cleanup_close_ int clow = -1;
        if (lower_dir) {
                clow = openat(lowfd, it->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (clow < 0)
                        return ossb_error_set(err, -errno, "cannot open the lower directory of `%s`: %m", it->abs);
        }
        _cleanup_free_ char *path = strdup(it->path);
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = snap_emit_push_dir(&w->em, it, flags, err);
        if (r < 0)
                return r;
        r = walk_dir(w, cup, clow, path, err);
        if (r < 0)
                return r;
        return snap_emit_pop_dir(&w->em, err);
}

static int lower_stat(int lowfd, const char *name, const char *path, struct stat *ret, bool *ret_has,
                      struct ossb_error **err)
{
        *ret_has = false;
        if (lowfd < 0)
                return 0;
        if (fstatat(lowfd, name, ret, AT_SYMLINK_NOFOLLOW) == 0) {
                *ret_has = true;
                return 0;
        }
        if (errno == ENOENT || errno == ENOTDIR)
                return 0;
        return ossb_error_set(err, -errno, "cannot stat the lower entry of `%s`: %m", path);
}

static int visit_nondir(struct upper_walk *w, struct snap_item *it, int lowfd, bool has_lower, const struct stat *lst,
                        struct ossb_error **err)
{
        bool whiteout = S_ISCHR(it->st.st_mode) && it->st.st_rdev == makedev(0, 0);
        if (whiteout || S_ISSOCK(it->st.st_mode)) {
                if (!whiteout)
                        log_debug("overlay diff: socket `%s` left out of the layer", it->path);
                return has_lower ? snap_emit_whiteout(&w->em, it->path, &it->st.st_mtim, err) : 0;
        }
        if (has_lower) {
                int r = same_as_lower(w, it, lowfd, lst, err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return snap_emit_item(&w->em, it, err);
}

static int visit(struct upper_walk *w, int upfd, int lowfd, const char *path, struct ossb_error **err)
{
        ssize_t idx = snap_excluded(w->s, path);
        if (idx >= 0)
                return snap_emit_excluded(&w->em, (size_t) idx) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;

        _cleanup_free_ char *abs = ossb_path_join(w->s->upper, path);
        struct snap_item it = { .dirfd = -1 };
        struct stat lst;
        bool has_lower;
        int r;
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = snap_item_load(&it, upfd, path, abs, w->s->userxattr, err);
        if (r == -ENOENT)
                return ossb_error_set(err, r, "`%s` vanished from the upper directory", abs);
        if (r < 0)
                return r;
        r = lower_stat(lowfd, it.name, path, &lst, &has_lower, err);
        if (r >= 0 && strncmp(it.name, SNAP_WHITEOUT_PREFIX, strlen(SNAP_WHITEOUT_PREFIX)) == 0 &&
            !(S_ISCHR(it.st.st_mode) && it.st.st_rdev == makedev(0, 0)))
                r = ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL,
                                    "`/%s`: a file whose name starts with \".wh.\" cannot be stored in a layer "
                                    "(the name marks a deletion)", path);
        if (r >= 0 && (it.ovl & (SNAP_OVL_REDIRECT | SNAP_OVL_METACOPY)))
                r = ossb_error_set(err, -ENOTSUP, "overlay diff: `%s` is a %s entry, which a layer cannot express",
                                   abs, it.ovl & SNAP_OVL_REDIRECT ? "redirect" : "metacopy");
        if (r >= 0)
                r = S_ISDIR(it.st.st_mode) ? visit_dir(w, &it, lowfd, has_lower, &lst, err)
                                           : visit_nondir(w, &it, lowfd, has_lower, &lst, err);
        snap_item_clear(&it);
        return r;
}

static int walk_dir(struct upper_walk *w, int upfd, int lowfd, const char *dirpath, struct ossb_error **err)
{
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        int r = snap_list_dir(upfd, &names, &n);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read the upper directory `%s/%s`: %s", w->s->upper, dirpath,
                                      strerror(-r));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = snap_join(dirpath, names[i]);
                if (!path)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                r = visit(w, upfd, lowfd, path, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int snap_upper_walk(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err)
{
        struct upper_walk w = { .s = s, .em = { .sink = sink, .snap = s } };
        _cleanup_close_ int upfd = open(s->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (upfd < 0)
                return ossb_error_set(err, -errno, "cannot open the upper directory `%s`: %m", s->upper);
        _cleanup_close_ int lowfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lowfd < 0)
                return ossb_error_set(err, -errno, "cannot open the root directory `%s`: %m", s->root);
        int r = walk_dir(&w, upfd, lowfd, "", err);
        snap_emitter_clear(&w.em);
        return r;
}
