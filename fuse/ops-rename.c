/* fuse/ops-rename.c - namespace handlers that remove or move names: unlink, rmdir, rename
 * (RENAME_NOREPLACE, RENAME_EXCHANGE).  A removed name that a lower layer has becomes a
 * whiteout; an upper file still open when its last name goes is moved into the work directory
 * (an orphan) until its last release.  A directory with lower content is copied up whole
 * before it moves (no redirects: where kernel overlayfs answers EXDEV, `mv` just works here);
 * opaque markers of moved directories follow kernel overlayfs (see mark_moved_dir). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "fuse/fusefs-internal.h"

/* ---- unlink ---- */

struct removal {
        struct fnode *n;
        bool lower_has;
        char orphan[64]; /* set when the file went to the work directory */
};

/* Move an upper file that is still open into the work directory. */
static int orphan_at(struct ossb_fusefs *fs, int pfd, const char *name, struct removal *rm)
{
        snprintf(rm->orphan, sizeof(rm->orphan), WORK_ORPHAN_PREFIX "%llu-%llu", (unsigned long long) rm->n->ino,
                 (unsigned long long) atomic_fetch_add(&fs->tmp_seq, 1));
        if (renameat(pfd, name, fs->work_fd, rm->orphan) < 0) {
                rm->orphan[0] = '\0';
                return -errno;
        }
        if (rm->lower_has && make_whiteout(fs, pfd, name, false) < 0)
                return fs_fail(fs, -EIO, "cannot make the whiteout of `%s`", name);
        return 0;
}

/* With the parent's dlock written: remove the non-directory pfd/name. */
static int unlink_at(struct ossb_fusefs *fs, int pfd, const char *name, struct removal *rm)
{
        struct stat st;
        if (!node_is_upper(rm->n))
                return make_whiteout(fs, pfd, name, false);
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        pthread_mutex_lock(&rm->n->lock);
        bool keep = rm->n->nopen > 0 && rm->n->n_al == 1 && st.st_nlink == 1 && S_ISREG(st.st_mode);
        pthread_mutex_unlock(&rm->n->lock);
        if (keep)
                return orphan_at(fs, pfd, name, rm);
        int r = rm->lower_has ? make_whiteout(fs, pfd, name, true) : (unlinkat(pfd, name, 0) < 0 ? -errno : 0);
        if (r == 0 && st.st_nlink == 1)
                ino_forget_upper(fs, st.st_ino);
        return r;
}

/* Run fn under dir's written dlock with dir's upper fd (dir copied up first). */
static int in_dir(struct ossb_fusefs *fs, struct fnode *dir, const char *name,
                  int (*fn)(struct ossb_fusefs *fs, int pfd, const char *name, struct removal *rm), struct removal *rm)
{
        int r = ensure_upper_dir(fs, dir);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&dir->dlock);
        r = node_has_alias(rm->n, dir, name) ? 0 : -ENOENT;
        int pfd = r == 0 ? dirfd_get(fs, dir) : -1;
        if (r == 0)
                r = pfd < 0 ? pfd : fn(fs, pfd, name, rm);
        if (pfd >= 0)
                dirfd_put(fs, dir);
        pthread_rwlock_unlock(&dir->dlock);
        node_invalidate_dir(fs, dir);
        return r;
}

static void after_removal(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct removal *rm)
{
        journal_add_child(fs, dir, name, OSSB_FS_CHANGE_DELETED);
        if (!rm->orphan[0]) {
                node_drop_alias(fs, rm->n, dir, name);
                return;
        }
        if (node_rename_alias(fs, rm->n, dir, name, fs->workdir, rm->orphan) < 0)
                fs_fail(fs, -ENOMEM, "out of memory keeping an open unlinked file");
        pthread_mutex_lock(&rm->n->lock);
        free(rm->n->orphan);
        rm->n->orphan = strdup(rm->orphan);
        pthread_mutex_unlock(&rm->n->lock);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *dir = node_of(fs, parent);
        struct removal rm = { 0 };
        int r = bad_name(name) ? -ENOENT : lookup_node(fs, dir, name, &rm.n, NULL);
        if (r == 0 && S_ISDIR(rm.n->type))
                r = -EISDIR;
        if (r == 0)
                r = lower_has_name(fs, dir, name, &rm.lower_has);
        if (r == 0)
                r = in_dir(fs, dir, name, unlink_at, &rm);
        if (r == 0)
                after_removal(fs, dir, name, &rm);
        if (rm.n)
                node_unref(fs, rm.n);
        reply_change_err(req, fs, r);
}

/* ---- rmdir ---- */

/* Remove an upper directory whose remaining entries are whiteouts. */
static int remove_upper_dir(struct ossb_fusefs *fs, int pfd, const char *name)
{
        if (unlinkat(pfd, name, AT_REMOVEDIR) == 0)
                return 0;
        if (errno != ENOTEMPTY && errno != EEXIST)
                return -errno;
        char tmp[64];
        work_tmp_name(fs, tmp);
        if (renameat(pfd, name, fs->work_fd, tmp) < 0)
                return -errno;
        int r = ossb_rm_rf_at(fs->work_fd, tmp);
        if (r < 0)
                fs_fail(fs, r, "cannot remove `%s` from the work directory", tmp);
        return 0;
}

static int rmdir_at(struct ossb_fusefs *fs, int pfd, const char *name, struct removal *rm)
{
        if (!node_is_upper(rm->n))
                return make_whiteout(fs, pfd, name, false);
        return rm->lower_has ? make_whiteout(fs, pfd, name, true) : remove_upper_dir(fs, pfd, name);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *dir = node_of(fs, parent);
        struct removal rm = { 0 };
        bool empty = false;
        int r = bad_name(name) ? -EINVAL : lookup_node(fs, dir, name, &rm.n, NULL);
        if (r == 0 && !S_ISDIR(rm.n->type))
                r = -ENOTDIR;
        if (r == 0)
                r = dir_is_empty(fs, rm.n, &empty);
        if (r == 0 && !empty)
                r = -ENOTEMPTY;
        if (r == 0)
                r = lower_has_name(fs, dir, name, &rm.lower_has);
        if (r == 0)
                r = in_dir(fs, dir, name, rmdir_at, &rm);
        if (r == 0) {
                pthread_mutex_lock(&rm.n->lock);
                free(rm.n->dl);
                rm.n->dl = NULL;
                rm.n->n_dl = 0;
                pthread_mutex_unlock(&rm.n->lock);
                node_invalidate_dir(fs, rm.n);
                after_removal(fs, dir, name, &rm);
        }
        if (rm.n)
                node_unref(fs, rm.n);
        reply_change_err(req, fs, r);
}

/* ---- rename ---- */

struct mv {
        struct fnode *od, *nd;  /* old and new parent */
        const char *oname, *nname;
        struct fnode *sn, *tn;  /* source, target (NULL when absent) */
        unsigned flags;
        bool src_lower, dst_lower; /* the lowers have the old / the new name */
        bool sn_whole, tn_whole;   /* a directory with lower content, copied up whole */
        bool od_merged, nd_merged; /* the parents have lower content */
        bool sn_opaque, tn_opaque; /* the moved directories are opaque where they land */
        char orphan[64];
};

static int mv_check(struct ossb_fusefs *fs, struct mv *m)
{
        if (m->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
                return -EINVAL;
        if (bad_name(m->oname) || bad_name(m->nname))
                return strlen(m->nname) > NAME_MAX ? -ENAMETOOLONG : -EINVAL;
        int r = lookup_node(fs, m->od, m->oname, &m->sn, NULL);
        if (r < 0)
                return r;
        r = lookup_node(fs, m->nd, m->nname, &m->tn, NULL);
        if (r == -ENOENT)
                return (m->flags & RENAME_EXCHANGE) ? -ENOENT : 0;
        if (r < 0)
                return r;
        if (m->flags & RENAME_NOREPLACE)
                return -EEXIST;
        if (m->flags & RENAME_EXCHANGE)
                return 0;
        if (S_ISDIR(m->sn->type) != S_ISDIR(m->tn->type))
                return S_ISDIR(m->tn->type) ? -EISDIR : -ENOTDIR;
        if (S_ISDIR(m->tn->type) && m->tn != m->sn) {
                bool empty;
                r = dir_is_empty(fs, m->tn, &empty);
                if (r == 0 && !empty)
                        r = -ENOTEMPTY;
        }
        return r;
}

static int mv_copy_up(struct ossb_fusefs *fs, struct fnode *n)
{
        return S_ISDIR(n->type) ? copy_up_tree(fs, n) : copy_up(fs, n, true);
}

static bool has_lowers(struct fnode *n)
{
        pthread_mutex_lock(&n->lock);
        bool r = n->n_dl > 0;
        pthread_mutex_unlock(&n->lock);
        return r;
}

static int mv_prepare(struct ossb_fusefs *fs, struct mv *m)
{
        m->sn_whole = S_ISDIR(m->sn->type) && has_lowers(m->sn);
        m->tn_whole = m->tn && S_ISDIR(m->tn->type) && has_lowers(m->tn);
        m->od_merged = has_lowers(m->od);
        m->nd_merged = has_lowers(m->nd);
        int r = mv_copy_up(fs, m->sn);
        if (r == 0 && m->tn && (m->flags & RENAME_EXCHANGE))
                r = mv_copy_up(fs, m->tn);
        if (r == 0)
                r = ensure_upper_dir(fs, m->od);
        if (r == 0)
                r = ensure_upper_dir(fs, m->nd);
        if (r == 0)
                r = lower_has_name(fs, m->od, m->oname, &m->src_lower);
        if (r == 0)
                r = lower_has_name(fs, m->nd, m->nname, &m->dst_lower);
        return r;
}

/* Mark the directory dirfd/name, about to move, as kernel overlayfs would leave it: a
 * directory we copied up whole (where the kernel answers EXDEV and `mv` copies it) is opaque
 * exactly when a lower layer has the name it moves to; any other keeps its marker and becomes
 * opaque when it moves into a merged directory.  *ret_was: its old state. */
static int mark_moved_dir(struct ossb_fusefs *fs, int dirfd, const char *name, bool whole, bool lower_has,
                          bool parent_merged, bool *ret_was, bool *ret_opaque)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_was = upper_is_opaque(fs, fd, NULL);
        bool opaque = whole ? lower_has : (*ret_was || parent_merged);
        *ret_opaque = opaque;
        if (*ret_was == opaque)
                return 0;
        int r = opaque ? xat_set(fd, NULL, fs->opaque_xattr, "y", 1, 0) : xat_remove(fd, NULL, fs->opaque_xattr);
        return r == -ENODATA ? 0 : r;
}

static void unmark_moved_dir(struct ossb_fusefs *fs, int dirfd, const char *name, bool was)
{
        bool dummy, dummy2;
        if (mark_moved_dir(fs, dirfd, name, true, was, false, &dummy, &dummy2) < 0)
                fs_fail(fs, -EIO, "cannot restore the opaque marker of `%s` after a failed rename", name);
}

/* Clear what stands at the target's place in the upper before a plain rename. */
static int mv_clear_target(struct ossb_fusefs *fs, int npfd, struct mv *m)
{
        struct stat st;
        if (fstatat(npfd, m->nname, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (is_whiteout(&st))
                return S_ISDIR(m->sn->type) && unlinkat(npfd, m->nname, 0) < 0 ? -errno : 0;
        if (S_ISDIR(st.st_mode)) {
                _cleanup_close_ int fd = openat(npfd, m->nname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                return fd < 0 ? -errno : remove_whiteouts(fs, fd);
        }
        if (!m->tn || !S_ISREG(st.st_mode) || st.st_nlink != 1)
                return 0;
        pthread_mutex_lock(&m->tn->lock);
        bool open = m->tn->nopen > 0 && m->tn->n_al == 1;
        pthread_mutex_unlock(&m->tn->lock);
        if (!open) {
                ino_forget_upper(fs, st.st_ino);
                return 0;
        }
        snprintf(m->orphan, sizeof(m->orphan), WORK_ORPHAN_PREFIX "%llu-%llu", (unsigned long long) m->tn->ino,
                 (unsigned long long) atomic_fetch_add(&fs->tmp_seq, 1));
        if (renameat(npfd, m->nname, fs->work_fd, m->orphan) < 0) {
                m->orphan[0] = '\0';
                return -errno;
        }
        return 0;
}

static int mv_rename(struct ossb_fusefs *fs, struct mv *m, int opfd, int npfd)
{
        if (m->flags & RENAME_EXCHANGE)
                return renameat2(opfd, m->oname, npfd, m->nname, RENAME_EXCHANGE) < 0 ? -errno : 0;
        int r = mv_clear_target(fs, npfd, m);
        if (r < 0)
                return r;
        return renameat(opfd, m->oname, npfd, m->nname) < 0 ? -errno : 0;
}

static int mv_locked(struct ossb_fusefs *fs, struct mv *m, int opfd, int npfd)
{
        bool xchg = m->flags & RENAME_EXCHANGE, was_s = false, was_t = false;
        bool mark_s = S_ISDIR(m->sn->type), mark_t = xchg && S_ISDIR(m->tn->type);
        int r = 0;
        if (!node_has_alias(m->sn, m->od, m->oname) || (m->tn && !node_has_alias(m->tn, m->nd, m->nname)))
                return -ENOENT;
        if (mark_s)
                r = mark_moved_dir(fs, opfd, m->oname, m->sn_whole, m->dst_lower, m->nd_merged, &was_s,
                                   &m->sn_opaque);
        if (r == 0 && mark_t)
                r = mark_moved_dir(fs, npfd, m->nname, m->tn_whole, m->src_lower, m->od_merged, &was_t,
                                   &m->tn_opaque);
        if (r == 0)
                r = mv_rename(fs, m, opfd, npfd);
        if (r < 0) {
                if (mark_s)
                        unmark_moved_dir(fs, opfd, m->oname, was_s);
                if (mark_t)
                        unmark_moved_dir(fs, npfd, m->nname, was_t);
                return r;
        }
        if (!xchg && m->src_lower && make_whiteout(fs, opfd, m->oname, false) < 0)
                return fs_fail(fs, -EIO, "cannot make the whiteout of `%s` after renaming it", m->oname);
        return 0;
}

static int mv_do(struct ossb_fusefs *fs, struct mv *m)
{
        struct fnode *a = m->od < m->nd ? m->od : m->nd, *b = m->od < m->nd ? m->nd : m->od;
        pthread_rwlock_wrlock(&a->dlock);
        if (b != a)
                pthread_rwlock_wrlock(&b->dlock);
        int opfd = dirfd_get(fs, m->od);
        int npfd = opfd < 0 ? -1 : dirfd_get(fs, m->nd);
        int r = opfd < 0 ? opfd : npfd < 0 ? npfd : mv_locked(fs, m, opfd, npfd);
        if (npfd >= 0)
                dirfd_put(fs, m->nd);
        if (opfd >= 0)
                dirfd_put(fs, m->od);
        if (b != a)
                pthread_rwlock_unlock(&b->dlock);
        pthread_rwlock_unlock(&a->dlock);
        return r;
}

static int mv_update_nodes(struct ossb_fusefs *fs, struct mv *m)
{
        int r = node_rename_alias(fs, m->sn, m->od, m->oname, m->nd, m->nname);
        if (r == 0 && m->tn && (m->flags & RENAME_EXCHANGE))
                r = node_rename_alias(fs, m->tn, m->nd, m->nname, m->od, m->oname);
        else if (r == 0 && m->tn && m->orphan[0]) {
                r = node_rename_alias(fs, m->tn, m->nd, m->nname, fs->workdir, m->orphan);
                pthread_mutex_lock(&m->tn->lock);
                free(m->tn->orphan);
                m->tn->orphan = strdup(m->orphan);
                pthread_mutex_unlock(&m->tn->lock);
        } else if (m->tn)
                node_drop_alias(fs, m->tn, m->nd, m->nname);
        node_invalidate_dir(fs, m->od);
        node_invalidate_dir(fs, m->nd);
        return r < 0 ? fs_fail(fs, r, "out of memory after renaming `%s`", m->oname) : 0;
}

/* The journal: the old path deleted (or changed, for an exchange), the new one and all
 * beneath it created or changed. */
static void mv_journal(struct ossb_fusefs *fs, struct mv *m)
{
        bool xchg = m->flags & RENAME_EXCHANGE;
        struct fnode *moved[2] = { m->sn, xchg ? m->tn : NULL };
        journal_add_child(fs, m->od, m->oname, xchg ? OSSB_FS_CHANGE_MODIFIED : OSSB_FS_CHANGE_DELETED);
        for (size_t i = 0; i < 2 && moved[i]; i++) {
                int r;
                _cleanup_free_ char *path = node_path(fs, moved[i], &r);
                if (!path)
                        continue;
                bool lower = i == 0 ? m->dst_lower : m->src_lower;
                bool opaque = i == 0 ? m->sn_opaque : m->tn_opaque;
                journal_add(fs, path, (lower || xchg ? OSSB_FS_CHANGE_MODIFIED : OSSB_FS_CHANGE_CREATED) |
                                              (opaque ? OSSB_FS_CHANGE_OPAQUE : 0));
                if (!S_ISDIR(moved[i]->type))
                        continue;
                int fd = dirfd_get(fs, moved[i]);
                if (fd >= 0) {
                        journal_add_tree(fs, fd, path, OSSB_FS_CHANGE_CREATED);
                        dirfd_put(fs, moved[i]);
                }
        }
}

static int do_rename(struct ossb_fusefs *fs, struct mv *m)
{
        int r = mv_check(fs, m);
        if (r < 0)
                return r;
        if (m->tn == m->sn) /* the same file (hard links): nothing to do */
                return 0;
        r = mv_prepare(fs, m);
        if (r == 0)
                r = mv_do(fs, m);
        if (r < 0)
                return r;
        r = mv_update_nodes(fs, m);
        mv_journal(fs, m);
        return r;
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
               unsigned int flags)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct mv m = { .od = node_of(fs, parent), .nd = node_of(fs, newparent), .oname = name, .nname = newname,
                        .flags = flags };
        int r = do_rename(fs, &m);
        if (m.sn)
                node_unref(fs, m.sn);
        if (m.tn)
                node_unref(fs, m.tn);
        reply_change_err(req, fs, r);
}
