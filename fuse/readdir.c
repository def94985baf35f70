/* fuse/readdir.c - merged directory listings: the upper's names, then each lower layer's
 * (top first) that no layer above named, whiteouts hiding a name in the layers below them;
 * sorted by name, with the inode numbers lookups report.  A listing is built once and cached
 * on the directory's node until a namespace change in that directory drops it; open directory
 * handles keep the listing they started with, so offsets stay valid.  The kernel caches the
 * listing too (cache_readdir; the mount is the only writer). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

/* ---- a set of names (open addressing) ---- */

struct nameset {
        char **slot;
        size_t cap, n;
};

static size_t name_hash(const char *s)
{
        size_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

static int nameset_grow(struct nameset *s)
{
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **slot = calloc(cap, sizeof(*slot));
        if (!slot)
                return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
                if (s->slot[i]) {
                        size_t h = name_hash(s->slot[i]) & (cap - 1);
                        while (slot[h])
                                h = (h + 1) & (cap - 1);
                        slot[h] = s->slot[i];
                }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
        return 0;
}

/* Add name (copied); 1 when added, 0 when present. */
static int nameset_add(struct nameset *s, const char *name)
{
        if ((s->n + 1) * 2 > s->cap && nameset_grow(s) < 0)
                return -ENOMEM;
        size_t h = name_hash(name) & (s->cap - 1);
        while (s->slot[h]) {
                if (streq(s->slot[h], name))
                        return 0;
                h = (h + 1) & (s->cap - 1);
        }
        s->slot[h] = strdup(name);
        if (!s->slot[h])
                return -ENOMEM;
        s->n++;
        return 1;
}

static void nameset_clear(struct nameset *s)
{
        for (size_t i = 0; i < s->cap; i++)
                free(s->slot[i]);
        free(s->slot);
        s->slot = NULL;
        s->cap = s->n = 0;
}

/* ---- building a listing ---- */

struct builder {
        struct ossb_fusefs *fs;
        struct nameset seen;
        struct dent *e;
        size_t n, cap;
        int layer;
        const char *lpath;
};

static int builder_push(struct builder *b, const char *name, unsigned char type, uint64_t ino)
{
        if (b->n == b->cap) {
                size_t cap = b->cap ? b->cap * 2 : 32;
                struct dent *e = realloc(b->e, cap * sizeof(*e));
                if (!e)
                        return -ENOMEM;
                b->e = e;
                b->cap = cap;
        }
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        b->e[b->n++] = (struct dent) { copy, ino, type };
        return 0;
}

static int list_upper(struct builder *b, int fd)
{
        _cleanup_close_ int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        _cleanup_free_ char *buf = malloc(32768);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                long n = syscall(SYS_getdents64, dfd, buf, 32768);
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                for (long off = 0; off < n;) {
                        struct dirent64 *d = (struct dirent64 *) (buf + off);
                        off += d->d_reclen;
                        if (streq(d->d_name, ".") || streq(d->d_name, ".."))
                                continue;
                        struct stat st;
                        unsigned char type = d->d_type;
                        if (type == DT_CHR || type == DT_UNKNOWN) {
                                if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                        continue;
                                type = (unsigned char) IFTODT(st.st_mode);
                                if (is_whiteout(&st)) {
                                        if (nameset_add(&b->seen, d->d_name) < 0)
                                                return -ENOMEM;
                                        continue;
                                }
                        }
                        int r = nameset_add(&b->seen, d->d_name);
                        if (r < 0)
                                return r;
                        if (r > 0 && builder_push(b, d->d_name, type, ino_for_upper(b->fs, d->d_ino)) < 0)
                                return -ENOMEM;
                }
        }
}

static int lower_entry(void *ud, const char *name, unsigned char type, uint64_t ino)
{
        struct builder *b = ud;
        struct ossb_fs_source *src = b->fs->lowers[b->layer];
        int r = nameset_add(&b->seen, name);
        if (r <= 0)
                return r;
        if (type == DT_CHR || ino == 0) {
                _cleanup_free_ char *path = path_join2(b->lpath, name);
                struct stat st;
                unsigned fl = 0;
                if (!path)
                        return -ENOMEM;
                r = src->ops->getattr(src->ctx, path, &st, &fl);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
                if (fl & OSSB_FS_WHITEOUT)
                        return 0;
                ino = st.st_ino;
                type = (unsigned char) IFTODT(st.st_mode);
        }
        return builder_push(b, name, type, ino_for_lower(b->fs, b->layer, ino));
}

static int lower_entry_noino(void *ud, const char *name, unsigned char type)
{
        return lower_entry(ud, name, type, 0);
}

static int dent_cmp(const void *a, const void *b)
{
        return strcmp(((const struct dent *) a)->name, ((const struct dent *) b)->name);
}

static int build_listing(struct ossb_fusefs *fs, struct fnode *dir, struct dlist **ret)
{
        struct builder b = { .fs = fs };
        _cleanup_free_ int *dl = NULL;
        size_t n_dl;
        int r = node_dl_copy(dir, &dl, &n_dl);

        if (r == 0 && node_is_upper(dir)) {
                int fd = dirfd_get(fs, dir);
                r = fd < 0 ? fd : list_upper(&b, fd);
                if (fd >= 0)
                        dirfd_put(fs, dir);
        }
        for (size_t i = 0; r == 0 && i < n_dl; i++) {
                struct ossb_fs_source *src = fs->lowers[dl[i]];
                b.layer = dl[i];
                b.lpath = dir->lpath ? dir->lpath : "";
                r = src->ops->readdir_ino ? src->ops->readdir_ino(src->ctx, b.lpath, lower_entry, &b)
                                          : src->ops->readdir(src->ctx, b.lpath, lower_entry_noino, &b);
                if (r == -ENOENT || r == -ENOTDIR)
                        r = 0;
        }
        nameset_clear(&b.seen);
        struct dlist *l = r == 0 ? calloc(1, sizeof(*l)) : NULL;
        if (!l) {
                for (size_t i = 0; i < b.n; i++)
                        free(b.e[i].name);
                free(b.e);
                return r < 0 ? r : -ENOMEM;
        }
        if (b.n > 1)
                qsort(b.e, b.n, sizeof(*b.e), dent_cmp);
        atomic_init(&l->refs, 1);
        l->e = b.e;
        l->n = b.n;
        *ret = l;
        return 0;
}

int dir_listing(struct ossb_fusefs *fs, struct fnode *dir, struct dlist **ret)
{
        pthread_mutex_lock(&dir->lock);
        struct dlist *l = dir->rdcache;
        uint64_t gen = dir->rdgen;
        if (l)
                atomic_fetch_add(&l->refs, 1);
        pthread_mutex_unlock(&dir->lock);
        if (l) {
                *ret = l;
                return 0;
        }
        int r = build_listing(fs, dir, &l);
        if (r < 0)
                return r;
        pthread_mutex_lock(&dir->lock);
        if (dir->rdgen == gen && !dir->rdcache) {
                atomic_fetch_add(&l->refs, 1);
                dir->rdcache = l;
        }
        pthread_mutex_unlock(&dir->lock);
        *ret = l;
        return 0;
}

int dir_is_empty(struct ossb_fusefs *fs, struct fnode *dir, bool *ret)
{
        struct dlist *l;
        int r = dir_listing(fs, dir, &l);
        if (r < 0)
                return r;
        *ret = l->n == 0;
        dlist_unref(l);
        return 0;
}

/* ---- the handlers ---- */

struct dirhandle {
        pthread_mutex_t lock;
        struct dlist *l; /* lock */
        struct dirhandle *prev, *next; /* fs->handles_lock */
};

static void dh_free(struct dirhandle *h)
{
        dlist_unref(h->l);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

static void dh_unlink(struct ossb_fusefs *fs, struct dirhandle *h)
{
        pthread_mutex_lock(&fs->handles_lock);
        if (h->prev)
                h->prev->next = h->next;
        else
                fs->dirhandles = h->next;
        if (h->next)
                h->next->prev = h->prev;
        pthread_mutex_unlock(&fs->handles_lock);
}

void dir_handles_free_all(struct ossb_fusefs *fs)
{
        while (fs->dirhandles) {
                struct dirhandle *h = fs->dirhandles;
                fs->dirhandles = h->next;
                dh_free(h);
        }
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *n = node_of(fs, ino);
        if (!S_ISDIR(n->type)) {
                fuse_reply_err(req, ENOTDIR);
                return;
        }
        struct dirhandle *h = calloc(1, sizeof(*h));
        if (!h) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        pthread_mutex_init(&h->lock, NULL);
        pthread_mutex_lock(&fs->handles_lock);
        h->next = fs->dirhandles;
        if (h->next)
                h->next->prev = h;
        fs->dirhandles = h;
        pthread_mutex_unlock(&fs->handles_lock);
        fi->fh = (uint64_t) (uintptr_t) h;
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
        if (fuse_reply_open(req, fi) != 0) {
                dh_unlink(fs, h);
                dh_free(h);
        }
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct dirhandle *h = (struct dirhandle *) (uintptr_t) fi->fh;
        if (h) {
                dh_unlink(fs, h);
                dh_free(h);
        }
        fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
        (void) req_fs(req); /* counts the request */
        fuse_reply_err(req, 0);
}

static int handle_listing(struct ossb_fusefs *fs, struct fnode *dir, struct dirhandle *h, off_t off, struct dlist **ret)
{
        pthread_mutex_lock(&h->lock);
        if (off == 0 && h->l) { /* rewinddir: see changes made since */
                dlist_unref(h->l);
                h->l = NULL;
        }
        int r = 0;
        if (!h->l)
                r = dir_listing(fs, dir, &h->l);
        if (r == 0) {
                atomic_fetch_add(&h->l->refs, 1);
                *ret = h->l;
        }
        pthread_mutex_unlock(&h->lock);
        return r;
}

static uint64_t parent_ino(struct ossb_fusefs *fs, struct fnode *dir)
{
        struct fnode *p;
        _cleanup_free_ char *name = NULL;
        if (dir == fs->root || node_first_alias(dir, &p, &name) < 0)
                return dir->ino;
        uint64_t ino = p->ino;
        node_unref(fs, p);
        return ino;
}

/* One entry for readdirplus: look it up; 0 with e->ino == 0 when it vanished. */
static int plus_entry(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct fuse_entry_param *e,
                      struct fnode **ret)
{
        struct lentry le;
        struct fnode *n;
        *ret = NULL;
        int r = merged_lookup(fs, dir, name, &le);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = node_for_entry(fs, dir, name, &le, &n);
        struct stat st = le.st;
        lentry_clear(&le);
        if (r < 0)
                return r;
        memset(e, 0, sizeof(*e));
        e->ino = node_id(fs, n);
        e->attr = st;
        e->attr.st_ino = n->ino;
        e->attr_timeout = FUSEFS_TIMEOUT;
        e->entry_timeout = FUSEFS_TIMEOUT;
        *ret = n;
        return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fnode *dir = node_of(fs, ino);
        struct dirhandle *h = (struct dirhandle *) (uintptr_t) fi->fh;
        struct dlist *l = NULL;
        int r = handle_listing(fs, dir, h, off, &l);
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        if (!buf) {
                dlist_unref(l);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        size_t used = 0;
        for (size_t i = (size_t) off; i < l->n + 2; i++) {
                const char *name = i == 0 ? "." : i == 1 ? ".." : l->e[i - 2].name;
                struct stat st = { 0 };
                st.st_ino = i == 0 ? dir->ino : i == 1 ? parent_ino(fs, dir) : l->e[i - 2].ino;
                st.st_mode = (mode_t) ((i < 2 ? DT_DIR : l->e[i - 2].type) << 12);
                size_t need;
                if (!plus)
                        need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t) i + 1);
                else {
                        struct fuse_entry_param e = { .attr = st };
                        struct fnode *n = NULL;
                        if (i >= 2) {
                                r = plus_entry(fs, dir, name, &e, &n);
                                if (r < 0)
                                        break;
                                if (!n)
                                        continue;
                        }
                        need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t) i + 1);
                        if (n && need <= size - used)
                                node_lookup_done(fs, n);
                        else if (n)
                                node_unref(fs, n);
                }
                if (need > size - used)
                        break;
                used += need;
        }
        dlist_unref(l);
        if (r < 0 && used == 0)
                fuse_reply_err(req, -r);
        else
                fuse_reply_buf(req, buf, used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        do_readdir(req, ino, size, off, fi, true);
}
