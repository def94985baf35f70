/* fuse/journal.c - the change journal of a mount: every path a handler changed, with the OR
 * of its OSSB_FS_CHANGE_* flags (ossb_fusefs_journal).  A hash of paths under a leaf lock;
 * sorted only when read.  Running out of memory here is an internal failure (the journal
 * would be incomplete), reported at unmount. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

static size_t path_hash(const char *s)
{
        size_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

static int journal_grow(struct ossb_fusefs *fs)
{
        size_t nb = fs->jnb ? fs->jnb * 2 : 256;
        struct journal_entry **b = calloc(nb, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < fs->jnb; i++)
                while (fs->jb[i]) {
                        struct journal_entry *e = fs->jb[i];
                        fs->jb[i] = e->next;
                        size_t h = path_hash(e->path) & (nb - 1);
                        e->next = b[h];
                        b[h] = e;
                }
        free(fs->jb);
        fs->jb = b;
        fs->jnb = nb;
        return 0;
}

static int journal_put(struct ossb_fusefs *fs, const char *path, unsigned flags)
{
        if (fs->jnb) {
                for (struct journal_entry *e = fs->jb[path_hash(path) & (fs->jnb - 1)]; e; e = e->next)
                        if (streq(e->path, path)) {
                                /* a change to an entry created in this mount is part of its creation */
                                bool created = (e->flags & OSSB_FS_CHANGE_CREATED) && !(e->flags & OSSB_FS_CHANGE_DELETED);
                                if (!(created && flags == OSSB_FS_CHANGE_MODIFIED))
                                        e->flags |= flags;
                                return 0;
                        }
        }
        if (fs->jn >= fs->jnb && journal_grow(fs) < 0)
                return -ENOMEM;
        struct journal_entry *e = malloc(sizeof(*e));
        char *copy = strdup(path);
        if (!e || !copy) {
                free(e);
                free(copy);
                return -ENOMEM;
        }
        size_t h = path_hash(path) & (fs->jnb - 1);
        *e = (struct journal_entry) { copy, flags, fs->jb[h] };
        fs->jb[h] = e;
        fs->jn++;
        return 0;
}

void journal_add(struct ossb_fusefs *fs, const char *path, unsigned flags)
{
        pthread_mutex_lock(&fs->journal_lock);
        int r = journal_put(fs, path, flags);
        pthread_mutex_unlock(&fs->journal_lock);
        if (r < 0)
                fs_fail(fs, r, "out of memory recording a change of `%s`", path);
}

void journal_add_node(struct ossb_fusefs *fs, struct fnode *n, unsigned flags)
{
        int r;
        _cleanup_free_ char *path = node_path(fs, n, &r);
        if (path)
                journal_add(fs, path, flags);
        else if (r == -ENOMEM)
                fs_fail(fs, r, "out of memory recording a change");
        /* a node without a name (an orphan) has no path to record */
}

void journal_add_child(struct ossb_fusefs *fs, struct fnode *dir, const char *name, unsigned flags)
{
        int r;
        _cleanup_free_ char *dpath = node_path(fs, dir, &r);
        if (!dpath) {
                if (r == -ENOMEM)
                        fs_fail(fs, r, "out of memory recording a change of `%s`", name);
                return;
        }
        _cleanup_free_ char *path = path_join2(dpath, name);
        if (!path) {
                fs_fail(fs, -ENOMEM, "out of memory recording a change of `%s`", name);
                return;
        }
        journal_add(fs, path, flags);
}

static void add_tree(struct ossb_fusefs *fs, int fd, const char *base, unsigned flags, unsigned depth)
{
        _cleanup_close_ int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || depth > 4096) {
                fs_fail(fs, depth > 4096 ? -ELOOP : -errno, "cannot list `%s` for the change journal", base);
                return;
        }
        DIR *d = fdopendir(dfd);
        if (!d) {
                fs_fail(fs, -errno, "cannot list `%s` for the change journal", base);
                return;
        }
        TAKE_FD(dfd);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || is_whiteout(&st))
                        continue;
                _cleanup_free_ char *path = path_join2(base, de->d_name);
                if (!path) {
                        fs_fail(fs, -ENOMEM, "out of memory recording changes beneath `%s`", base);
                        break;
                }
                journal_add(fs, path, flags);
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int cfd = openat(dirfd(d), de->d_name,
                                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (cfd >= 0)
                                add_tree(fs, cfd, path, flags, depth + 1);
                }
        }
        closedir(d);
}

void journal_add_tree(struct ossb_fusefs *fs, int fd, const char *base, unsigned flags)
{
        add_tree(fs, fd, base, flags, 0);
}

void journal_free(struct ossb_fusefs *fs)
{
        for (size_t i = 0; i < fs->jnb; i++)
                while (fs->jb[i]) {
                        struct journal_entry *e = fs->jb[i];
                        fs->jb[i] = e->next;
                        free(e->path);
                        free(e);
                }
        free(fs->jb);
        fs->jb = NULL;
        fs->jnb = fs->jn = 0;
}

static int entry_cmp(const void *a, const void *b)
{
        return strcmp((*(struct journal_entry *const *) a)->path, (*(struct journal_entry *const *) b)->path);
}

int ossb_fusefs_journal(const struct ossb_fusefs *cfs, int (*cb)(void *ud, const char *path, unsigned flags), void *ud)
{
        struct ossb_fusefs *fs = (struct ossb_fusefs *) cfs;
        pthread_mutex_lock(&fs->journal_lock);
        struct journal_entry **v = malloc((fs->jn ? fs->jn : 1) * sizeof(*v));
        if (!v) {
                pthread_mutex_unlock(&fs->journal_lock);
                return -ENOMEM;
        }
        size_t n = 0;
        for (size_t i = 0; i < fs->jnb; i++)
                for (struct journal_entry *e = fs->jb[i]; e; e = e->next)
                        v[n++] = e;
        qsort(v, n, sizeof(*v), entry_cmp);
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = cb(ud, v[i]->path, v[i]->flags);
        pthread_mutex_unlock(&fs->journal_lock);
        free(v);
        return r;
}
