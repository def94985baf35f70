/* snapshotter/native.c - the native backend: no mount; the step runs on the root directory
 * itself, and the diff compares it with what ossb_snapshot_new recorded.
 *
 * The record: a tree of every path's type, mode, owner, size, device, inode, mtime, ctime,
 * link target and layer-worthy xattrs (names byte-sorted per directory).  The diff walks the
 * root again beside it (Go's walk order):
 *   - a name only in the record is deleted: a whiteout (a deleted directory gets only its own
 *     ".wh.NAME", not one per child);
 *   - a name only in the root is new (a directory and everything beneath it);
 *   - a non-directory is changed when any recorded field differs.  Content is not kept, so a
 *     file whose size and mtime are unchanged counts as changed when its ctime (or inode)
 *     changed: every write, chmod, chown, xattr change, new hard link or replacement moves the
 *     ctime, so nothing changed goes unseen; the price is a file rewritten with identical bytes
 *     (or merely linked) being written again;
 *   - a directory is changed when its type, mode, owner or xattrs differ; its mtime alone does
 *     not count (as in BuildKit), so a directory is written when it changed or when something
 *     beneath it did.  A directory replaced by a new one cannot be told from an emptied one: its
 *     deleted children get their own whiteouts (no opaque marker).
 * commit: the root already is the result; only excluded paths that did not exist when the
 * snapshot was taken (the executor's mount points) are removed, and their parent's mtime is
 * put back (the recorded one when the parent did not go into the layer, else the one the
 * layer has). */
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

struct nat_node {
        char *name;
        struct nat_node *kids; /* sorted by name */
        size_t n_kids;
        mode_t mode;
        uid_t uid;
        gid_t gid;
        dev_t rdev;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
        struct timespec ctime;
        char *link;
        struct snap_xattrs xattrs;
};

static void node_clear(struct nat_node *n)
{
        for (size_t i = 0; i < n->n_kids; i++)
                node_clear(&n->kids[i]);
        free(n->kids);
        free(n->name);
        free(n->link);
        snap_xattrs_clear(&n->xattrs);
}

static void node_take(struct nat_node *n, struct snap_item *it)
{
        n->mode = it->st.st_mode;
        n->uid = it->st.st_uid;
        n->gid = it->st.st_gid;
        n->rdev = it->st.st_rdev;
        n->dev = it->st.st_dev;
        n->ino = it->st.st_ino;
        n->size = it->st.st_size;
        n->mtime = it->st.st_mtim;
        n->ctime = it->st.st_ctim;
        n->link = TAKE_PTR(it->link);
        n->xattrs = it->xattrs;
        it->xattrs = (struct snap_xattrs) { NULL, 0 };
}

/* ---- recording ---- */

static int record_dir(struct ossb_snapshot *s, int dirfd, const char *dirpath, struct nat_node *dir, unsigned depth,
                      struct ossb_error **err);

static int record_one(struct ossb_snapshot *s, int dirfd, const char *path, struct nat_node *n, unsigned depth,
                      struct ossb_error **err)
{
        _cleanup_free_ char *abs = ossb_path_join(s->root, path);
        struct snap_item it = { .dirfd = -1 };
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = snap_item_load(&it, dirfd, path, abs, false, err);
        if (r < 0)
                return r == -ENOENT ? ossb_error_set(err, r, "`%s` vanished while recording it", abs) : r;
        node_take(n, &it);
        if (S_ISDIR(n->mode)) {
                _cleanup_close_ int fd = openat(dirfd, it.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        r = ossb_error_set(err, -errno, "cannot open `%s`: %m", abs);
                else
                        r = record_dir(s, fd, path, n, depth + 1, err);
        }
        snap_item_clear(&it);
        return r;
}

static int record_dir(struct ossb_snapshot *s, int dirfd, const char *dirpath, struct nat_node *dir, unsigned depth,
                      struct ossb_error **err)
{
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        if (depth > SNAP_MAX_DEPTH)
                return ossb_error_set(err, -ELOOP, "`%s/%s`: directories nested deeper than %d levels", s->root,
                                      dirpath, SNAP_MAX_DEPTH);
        int r = snap_list_dir(dirfd, &names, &n);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read `%s/%s`: %s", s->root, dirpath, strerror(-r));
        if (n == 0)
                return 0;
        dir->kids = calloc(n, sizeof(*dir->kids));
        if (!dir->kids)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        dir->n_kids = n;
        for (size_t i = 0; i < n; i++) {
                dir->kids[i].name = TAKE_PTR(names[i]);
                _cleanup_free_ char *path = snap_join(dirpath, dir->kids[i].name);
                if (!path)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                r = record_one(s, dirfd, path, &dir->kids[i], depth, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int native_prepare(struct ossb_snapshot *s, struct ossb_error **err)
{
        _cleanup_close_ int fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", s->root);
        s->tree = calloc(1, sizeof(*s->tree));
        s->view = strdup(s->root);
        if (!s->tree || !s->view)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct stat st;
        if (fstat(fd, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat `%s`: %m", s->root);
        s->tree->mode = st.st_mode;
        s->tree->mtime = st.st_mtim;
        return record_dir(s, fd, "", s->tree, 1, err);
}

/* ---- the diff walk ---- */

struct nat_walk {
        struct ossb_snapshot *s;
        struct snap_emitter em;
};

static int walk_dir(struct nat_walk *w, int dirfd, const struct nat_node *old, const char *dirpath,
                    struct ossb_error **err);

static bool nondir_changed(const struct nat_node *o, const struct snap_item *it)
{
        const struct stat *st = &it->st;
        return o->mode != st->st_mode || o->uid != st->st_uid || o->gid != st->st_gid || o->size != st->st_size ||
               o->rdev != st->st_rdev || o->dev != st->st_dev || o->ino != st->st_ino ||
               o->mtime.tv_sec != st->st_mtim.tv_sec || o->mtime.tv_nsec != st->st_mtim.tv_nsec ||
               o->ctime.tv_sec != st->st_ctim.tv_sec || o->ctime.tv_nsec != st->st_ctim.tv_nsec ||
               (o->link && it->link && !streq(o->link, it->link)) || !snap_xattrs_equal(&o->xattrs, &it->xattrs);
}

static unsigned dir_flags(const struct nat_node *o, const struct snap_item *it)
{
        if (!o)
                return SNAP_DIR_NEW;
        if (o->mode != it->st.st_mode || o->uid != it->st.st_uid || o->gid != it->st.st_gid ||
            !snap_xattrs_equal(&o->xattrs, &it->xattrs))
                return SNAP_DIR_CHANGED;
        return 0;
}

static int visit_dir(struct nat_walk *w, struct snap_item *it, const struct nat_node *old, unsigned flags,
                     struct ossb_error **err)
{
        _cleanup_close_ int fd = openat(it->dirfd, it->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", it->abs);
        _cleanup_free_ char *path = strdup(it->path);
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = snap_emit_push_dir(&w->em, it, flags, err);
        if (r < 0)
                return r;
        r = walk_dir(w, fd, old, path, err);
        if (r < 0)
                return r;
        return snap_emit_pop_dir(&w->em, err);
}

static int visit(struct nat_walk *w, int dirfd, const char *path, const struct nat_node *old,
                 const struct timespec *dir_mtime, struct ossb_error **err)
{
        ssize_t idx = snap_excluded(w->s, path);
        if (idx >= 0)
                return snap_emit_excluded(&w->em, (size_t) idx) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;

        _cleanup_free_ char *abs = ossb_path_join(w->s->root, path);
        struct snap_item it = { .dirfd = -1 };
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = snap_item_load(&it, dirfd, path, abs, false, err);
        if (r == -ENOENT)
                return ossb_error_set(err, r, "`%s` vanished during the diff", abs);
        if (r < 0)
                return r;
        bool unchanged = old && !S_ISDIR(it.st.st_mode) && !nondir_changed(old, &it);
        if (S_ISSOCK(it.st.st_mode)) {
                log_debug("native diff: socket `%s` left out of the layer", path);
                r = old && !S_ISSOCK(old->mode) ? snap_emit_whiteout(&w->em, path, dir_mtime, err) : 0;
        } else if (unchanged)
                r = 0;
        else if (strncmp(it.name, SNAP_WHITEOUT_PREFIX, strlen(SNAP_WHITEOUT_PREFIX)) == 0)
                r = ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL,
                                    "`/%s`: a file whose name starts with \".wh.\" cannot be stored in a layer "
                                    "(the name marks a deletion)", path);
        else if (S_ISDIR(it.st.st_mode)) {
                /* a directory that replaced a non-directory is written whatever it holds */
                const struct nat_node *od = old && S_ISDIR(old->mode) ? old : NULL;
                r = visit_dir(w, &it, od, old && !od ? SNAP_DIR_CHANGED : dir_flags(od, &it), err);
        } else
                r = snap_emit_item(&w->em, &it, err);
        snap_item_clear(&it);
        return r;
}

static int walk_dir(struct nat_walk *w, int dirfd, const struct nat_node *old, const char *dirpath,
                    struct ossb_error **err)
{
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0, i = 0, j = 0, nk = old ? old->n_kids : 0;
        struct stat dst;
        int r = snap_list_dir(dirfd, &names, &n);
        if (r < 0)
                return ossb_error_set(err, r, "cannot read `%s/%s`: %s", w->s->root, dirpath, strerror(-r));
        if (fstat(dirfd, &dst) < 0)
                return ossb_error_set(err, -errno, "cannot stat `%s/%s`: %m", w->s->root, dirpath);
        while (i < nk || j < n) {
                int c = i >= nk ? 1 : j >= n ? -1 : strcmp(old->kids[i].name, names[j]);
                const char *name = c < 0 ? old->kids[i].name : names[j];
                _cleanup_free_ char *path = snap_join(dirpath, name);
                if (!path)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (c < 0)
                        r = snap_excluded(w->s, path) >= 0 ? 0 : snap_emit_whiteout(&w->em, path, &dst.st_mtim, err);
                else
                        r = visit(w, dirfd, path, c == 0 ? &old->kids[i] : NULL, &dst.st_mtim, err);
                if (r < 0)
                        return r;
                i += c <= 0;
                j += c >= 0;
        }
        return 0;
}

static int native_changes(struct ossb_snapshot *s, struct snap_sink *sink, struct ossb_error **err)
{
        struct nat_walk w = { .s = s, .em = { .sink = sink, .snap = s } };
        _cleanup_close_ int fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", s->root);
        int r = walk_dir(&w, fd, s->tree, "", err);
        snap_emitter_clear(&w.em);
        if (r >= 0)
                s->diffed = true;
        return r;
}

/* ---- commit: drop the executor's mount points ---- */

static const struct nat_node *lookup(const struct nat_node *n, const char *path)
{
        while (n && *path) {
                const char *slash = strchr(path, '/');
                size_t len = slash ? (size_t) (slash - path) : strlen(path);
                const struct nat_node *next = NULL;
                for (size_t i = 0; i < n->n_kids && !next; i++)
                        if (strlen(n->kids[i].name) == len && memcmp(n->kids[i].name, path, len) == 0)
                                next = &n->kids[i];
                n = next;
                path = slash ? slash + 1 : path + len;
        }
        return n;
}

/* Open the parent directory of `path` beneath rootfd without following any symlink; -ENOENT
 * when a component is missing or not a directory. */
static int open_parent(int rootfd, const char *path, const char **ret_base)
{
        _cleanup_close_ int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        const char *c = path;
        for (const char *slash; (slash = strchr(c, '/'));) {
                _cleanup_free_ char *comp = strndup(c, (size_t) (slash - c));
                if (!comp)
                        return -ENOMEM;
                int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0)
                        return errno == ENOTDIR || errno == ELOOP ? -ENOENT : -errno;
                close(fd);
                fd = nfd;
                c = slash + 1;
        }
        *ret_base = c;
        return TAKE_FD(fd);
}

/* Remove `path` (the first round: an excluded path; later ones: its new parent directories,
 * once empty) unless it existed when the snapshot was taken; *ret_done when nothing more is to
 * be removed above it. */
static int drop_one(struct ossb_snapshot *s, int rootfd, const struct snap_exclude *x, const char *path, bool first,
                    bool *ret_done, struct ossb_error **err)
{
        const char *base = NULL;
        *ret_done = true;
        if (lookup(s->tree, path))
                return 0; /* it was there before the step */
        _cleanup_close_ int pfd = open_parent(rootfd, path, &base);
        struct stat st;
        if (pfd == -ENOENT || (pfd >= 0 && first && fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT))
                return 0; /* never made: its parents are the step's own */
        if (pfd < 0)
                return ossb_error_set(err, pfd, "commit: cannot open the parent of `%s/%s`: %s", s->root, path,
                                      strerror(-pfd));
        if (fstat(pfd, &st) < 0)
                return ossb_error_set(err, -errno, "commit: cannot stat the parent of `%s/%s`: %m", s->root, path);
        int r = first ? ossb_rm_rf_at(pfd, base) : unlinkat(pfd, base, AT_REMOVEDIR) < 0 ? -errno : 0;
        if (r == -ENOTEMPTY || r == -EEXIST)
                return 0; /* the step put something else there: it stays */
        if (r < 0)
                return ossb_error_set(err, r, "commit: cannot remove `%s/%s`: %s", s->root, path, strerror(-r));
        /* put the parent's mtime back: the recorded one when the layer left the parent out */
        _cleanup_free_ char *parent = base > path ? strndup(path, (size_t) (base - path - 1)) : strdup("");
        if (!parent)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        const struct nat_node *pn = lookup(s->tree, parent);
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, st.st_mtim };
        if (s->diffed && !x->parent_emitted && pn && S_ISDIR(pn->mode))
                ts[1] = pn->mtime;
        if (futimens(pfd, ts) < 0)
                return ossb_error_set(err, -errno, "commit: cannot set the times of `%s/%s`: %m", s->root, parent);
        *ret_done = !*parent;
        return 0;
}

static int drop_mount_point(struct ossb_snapshot *s, int rootfd, const struct snap_exclude *x,
                            struct ossb_error **err)
{
        _cleanup_free_ char *path = strdup(x->path);
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (bool first = true, done = false; !done; first = false) {
                int r = drop_one(s, rootfd, x, path, first, &done, err);
                if (r < 0)
                        return r;
                char *slash = strrchr(path, '/');
                if (slash)
                        *slash = '\0';
                else
                        done = true;
        }
        return 0;
}

static int native_commit(struct ossb_snapshot *s, struct ossb_error **err)
{
        if (s->committed)
                return 0;
        _cleanup_close_ int rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return ossb_error_set(err, -errno, "commit: cannot open `%s`: %m", s->root);
        s->committed = true;
        for (size_t i = s->n_excl; i > 0; i--) {
                int r = drop_mount_point(s, rootfd, &s->excl[i - 1], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int native_unmount(struct ossb_snapshot *s, struct ossb_error **err)
{
        (void) s;
        (void) err;
        return 0;
}

static void native_release(struct ossb_snapshot *s)
{
        if (s->tree) {
                node_clear(s->tree);
                free(s->tree);
                s->tree = NULL;
        }
}

const struct snap_backend_ops snap_native_ops = {
        .prepare = native_prepare,
        .unmount = native_unmount,
        .changes = native_changes,
        .commit = native_commit,
        .release = native_release,
};
