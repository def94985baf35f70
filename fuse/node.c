/* fuse/node.c - nodes of the merged view: lifetime and references, the st_ino -> node table,
 * inode numbering (layer tags, copy-up records), aliases and paths, and the bounded cache of
 * upper directory fds (see fusefs-internal.h for the model and the lock order). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "fuse/fusefs-internal.h"

/* ---- inode number maps ---- */

static size_t hash64(uint64_t k, size_t nb)
{
        k ^= k >> 33;
        k *= UINT64_C(0xff51afd7ed558ccd);
        k ^= k >> 33;
        return (size_t) (k & (nb - 1));
}

static int ino_map_grow(struct ino_map *m)
{
        size_t nb = m->nb ? m->nb * 2 : 64;
        struct ino_map_entry **b = calloc(nb, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->nb; i++)
                while (m->b[i]) {
                        struct ino_map_entry *e = m->b[i];
                        m->b[i] = e->next;
                        size_t h = hash64(e->key ^ e->tag, nb);
                        e->next = b[h];
                        b[h] = e;
                }
        free(m->b);
        m->b = b;
        m->nb = nb;
        return 0;
}

int ino_map_put(struct ino_map *m, uint64_t tag, uint64_t key, uint64_t val)
{
        if (m->nb) {
                for (struct ino_map_entry *e = m->b[hash64(key ^ tag, m->nb)]; e; e = e->next)
                        if (e->key == key && e->tag == tag) {
                                e->val = val;
                                return 0;
                        }
        }
        if (m->n >= m->nb && ino_map_grow(m) < 0)
                return -ENOMEM;
        struct ino_map_entry *e = malloc(sizeof(*e));
        if (!e)
                return -ENOMEM;
        size_t h = hash64(key ^ tag, m->nb);
        e->key = key;
        e->tag = tag;
        e->val = val;
        e->next = m->b[h];
        m->b[h] = e;
        m->n++;
        return 0;
}

bool ino_map_get(const struct ino_map *m, uint64_t tag, uint64_t key, uint64_t *ret)
{
        if (!m->nb)
                return false;
        for (struct ino_map_entry *e = m->b[hash64(key ^ tag, m->nb)]; e; e = e->next)
                if (e->key == key && e->tag == tag) {
                        *ret = e->val;
                        return true;
                }
        return false;
}

void ino_map_del(struct ino_map *m, uint64_t tag, uint64_t key)
{
        if (!m->nb)
                return;
        struct ino_map_entry **pp = &m->b[hash64(key ^ tag, m->nb)];
        for (; *pp; pp = &(*pp)->next)
                if ((*pp)->key == key && (*pp)->tag == tag) {
                        struct ino_map_entry *e = *pp;
                        *pp = e->next;
                        free(e);
                        m->n--;
                        return;
                }
}

void ino_map_clear(struct ino_map *m)
{
        for (size_t i = 0; i < m->nb; i++)
                while (m->b[i]) {
                        struct ino_map_entry *e = m->b[i];
                        m->b[i] = e->next;
                        free(e);
                }
        free(m->b);
        m->b = NULL;
        m->nb = m->n = 0;
}

/* A number for an inode that does not fit beneath the tag: allocated once, kept. */
static uint64_t big_ino(struct ossb_fusefs *fs, uint64_t tag, uint64_t ino)
{
        uint64_t v;
        pthread_mutex_lock(&fs->table_lock);
        if (!ino_map_get(&fs->bigmap, tag, ino, &v)) {
                v = (UINT64_C(0xffff) << INO_TAG_SHIFT) | ++fs->next_big;
                if (ino_map_put(&fs->bigmap, tag, ino, v) < 0)
                        fs_fail(fs, -ENOMEM, "out of memory numbering inodes");
        }
        pthread_mutex_unlock(&fs->table_lock);
        return v;
}

uint64_t ino_for_lower(struct ossb_fusefs *fs, int layer, uint64_t ino)
{
        uint64_t tag = (uint64_t) layer + 1;
        if (ino > INO_LOW_MASK)
                return big_ino(fs, tag, ino);
        return (tag << INO_TAG_SHIFT) | ino;
}

uint64_t ino_for_upper(struct ossb_fusefs *fs, uint64_t uino)
{
        uint64_t v;
        pthread_mutex_lock(&fs->table_lock);
        bool found = ino_map_get(&fs->cumap, 0, uino, &v);
        pthread_mutex_unlock(&fs->table_lock);
        if (found)
                return v;
        if (uino > INO_LOW_MASK)
                return big_ino(fs, 0, uino);
        return uino;
}

void ino_forget_upper(struct ossb_fusefs *fs, uint64_t uino)
{
        pthread_mutex_lock(&fs->table_lock);
        ino_map_del(&fs->cumap, 0, uino);
        pthread_mutex_unlock(&fs->table_lock);
}

void ino_record_copy_up(struct ossb_fusefs *fs, uint64_t uino, uint64_t ino)
{
        if (uino == ino)
                return;
        pthread_mutex_lock(&fs->table_lock);
        int r = ino_map_put(&fs->cumap, 0, uino, ino);
        pthread_mutex_unlock(&fs->table_lock);
        if (r < 0)
                fs_fail(fs, r, "out of memory recording a copy-up");
}

/* ---- the node table ---- */

static int table_grow(struct ossb_fusefs *fs)
{
        size_t nb = fs->nodes_nb ? fs->nodes_nb * 2 : 1024;
        struct fnode **b = calloc(nb, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < fs->nodes_nb; i++)
                while (fs->nodes[i]) {
                        struct fnode *n = fs->nodes[i];
                        fs->nodes[i] = n->hnext;
                        size_t h = hash64(n->ino, nb);
                        n->hnext = b[h];
                        b[h] = n;
                }
        free(fs->nodes);
        fs->nodes = b;
        fs->nodes_nb = nb;
        return 0;
}

static struct fnode *table_get(struct ossb_fusefs *fs, uint64_t ino)
{
        if (!fs->nodes_nb)
                return NULL;
        for (struct fnode *n = fs->nodes[hash64(ino, fs->nodes_nb)]; n; n = n->hnext)
                if (n->ino == ino)
                        return n;
        return NULL;
}

static void table_remove(struct ossb_fusefs *fs, struct fnode *n)
{
        if (!n->hashed)
                return;
        struct fnode **pp = &fs->nodes[hash64(n->ino, fs->nodes_nb)];
        while (*pp && *pp != n)
                pp = &(*pp)->hnext;
        if (*pp)
                *pp = n->hnext;
        n->hashed = false;
        fs->nodes_n--;
}

void node_unhash(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->table_lock);
        table_remove(fs, n);
        pthread_mutex_unlock(&fs->table_lock);
}

struct fnode *node_find(struct ossb_fusefs *fs, uint64_t ino)
{
        pthread_mutex_lock(&fs->table_lock);
        struct fnode *n = table_get(fs, ino);
        if (n)
                atomic_fetch_add(&n->refs, 1);
        pthread_mutex_unlock(&fs->table_lock);
        return n;
}

struct fnode *node_new(struct ossb_fusefs *fs, uint64_t ino, mode_t type)
{
        struct fnode *n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->ino = ino;
        n->type = type & S_IFMT;
        n->src = LAYER_UPPER;
        n->ufd = -1;
        atomic_init(&n->refs, 1);
        pthread_mutex_init(&n->lock, NULL);
        pthread_rwlockattr_t ra;
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&n->dlock, &ra);
        pthread_rwlockattr_destroy(&ra);
        pthread_mutex_lock(&fs->table_lock);
        n->all_next = fs->all;
        if (fs->all)
                fs->all->all_prev = n;
        fs->all = n;
        pthread_mutex_unlock(&fs->table_lock);
        pthread_mutex_init(&n->culock, NULL);
        return n;
}

static void lru_unlink(struct ossb_fusefs *fs, struct fnode *n)
{
        if (n->lru_prev)
                n->lru_prev->lru_next = n->lru_next;
        else if (fs->lru_head == n)
                fs->lru_head = n->lru_next;
        else
                return; /* not on the list */
        if (n->lru_next)
                n->lru_next->lru_prev = n->lru_prev;
        else
                fs->lru_tail = n->lru_prev;
        n->lru_prev = n->lru_next = NULL;
}

static void lru_append(struct ossb_fusefs *fs, struct fnode *n)
{
        n->lru_next = NULL;
        n->lru_prev = fs->lru_tail;
        if (fs->lru_tail)
                fs->lru_tail->lru_next = n;
        else
                fs->lru_head = n;
        fs->lru_tail = n;
}

/* With table_lock held. */
static void all_remove(struct ossb_fusefs *fs, struct fnode *n)
{
        if (n->all_prev)
                n->all_prev->all_next = n->all_next;
        else if (fs->all == n)
                fs->all = n->all_next;
        if (n->all_next)
                n->all_next->all_prev = n->all_prev;
        n->all_prev = n->all_next = NULL;
}

static void node_destroy_fields(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->fdc_lock);
        if (n->ufd >= 0) {
                if (!n->ufd_fixed) {
                        lru_unlink(fs, n);
                        fs->fdc_open--;
                }
                close(n->ufd);
                n->ufd = -1;
        }
        pthread_mutex_unlock(&fs->fdc_lock);
        for (size_t i = 0; i < n->n_al; i++)
                free(n->al[i].name);
        free(n->al);
        free(n->dl);
        free(n->lpath);
        free(n->orphan);
        dlist_unref(n->rdcache);
        pthread_mutex_destroy(&n->lock);
        pthread_rwlock_destroy(&n->dlock);
        pthread_mutex_destroy(&n->culock);
}

void node_discard(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->table_lock);
        all_remove(fs, n);
        pthread_mutex_unlock(&fs->table_lock);
        node_destroy_fields(fs, n);
        free(n);
}

struct fnode *node_insert(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->table_lock);
        struct fnode *old = table_get(fs, n->ino);
        if (old) {
                atomic_fetch_add(&old->refs, 1);
                all_remove(fs, n);
                pthread_mutex_unlock(&fs->table_lock);
                node_destroy_fields(fs, n);
                free(n);
                return old;
        }
        if (fs->nodes_n >= fs->nodes_nb && table_grow(fs) < 0) {
                all_remove(fs, n);
                pthread_mutex_unlock(&fs->table_lock);
                node_destroy_fields(fs, n);
                free(n);
                return NULL;
        }
        size_t h = hash64(n->ino, fs->nodes_nb);
        n->hnext = fs->nodes[h];
        fs->nodes[h] = n;
        n->hashed = true;
        fs->nodes_n++;
        pthread_mutex_unlock(&fs->table_lock);
        return n;
}

void node_ref(struct fnode *n)
{
        atomic_fetch_add(&n->refs, 1);
}

/* Drop one reference; true when it was the last (the node is out of the table then). */
static bool unref_last(struct ossb_fusefs *fs, struct fnode *n)
{
        long old = atomic_load(&n->refs);
        while (old > 1)
                if (atomic_compare_exchange_weak(&n->refs, &old, old - 1))
                        return false;
        pthread_mutex_lock(&fs->table_lock);
        bool last = atomic_fetch_sub(&n->refs, 1) == 1;
        if (last) {
                table_remove(fs, n);
                all_remove(fs, n);
        }
        pthread_mutex_unlock(&fs->table_lock);
        return last;
}

void node_unref(struct ossb_fusefs *fs, struct fnode *n)
{
        while (n && unref_last(fs, n)) {
                struct fnode *next = NULL;
                for (size_t i = 0; i < n->n_al; i++) {
                        if (i == 0)
                                next = n->al[i].parent;
                        else
                                node_unref(fs, n->al[i].parent);
                }
                node_destroy_fields(fs, n);
                free(n);
                n = next;
        }
}

struct fnode *node_of(struct ossb_fusefs *fs, fuse_ino_t id)
{
        if (id == FUSE_ROOT_ID)
                return fs->root;
        return (struct fnode *) (uintptr_t) id;
}

fuse_ino_t node_id(struct ossb_fusefs *fs, struct fnode *n)
{
        return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t) (uintptr_t) n;
}

void nodes_free_all(struct ossb_fusefs *fs)
{
        /* Unmounted: no request can come.  Free every node, whatever its references (the
         * kernel does not always send the last forgets). */
        while (fs->all) {
                struct fnode *n = fs->all;
                fs->all = n->all_next;
                node_destroy_fields(fs, n);
                free(n);
        }
        free(fs->nodes);
        fs->nodes = NULL;
        fs->nodes_nb = fs->nodes_n = 0;
        fs->root = fs->workdir = NULL;
}

/* ---- aliases and paths ---- */

int node_add_alias(struct fnode *n, struct fnode *parent, const char *name)
{
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_al; i++)
                if (n->al[i].parent == parent && streq(n->al[i].name, name)) {
                        pthread_mutex_unlock(&n->lock);
                        return 0;
                }
        char *copy = strdup(name);
        struct falias *al = copy ? realloc(n->al, (n->n_al + 1) * sizeof(*al)) : NULL;
        if (!al) {
                pthread_mutex_unlock(&n->lock);
                free(copy);
                return -ENOMEM;
        }
        node_ref(parent);
        al[n->n_al++] = (struct falias) { parent, copy };
        n->al = al;
        n->removed = false;
        pthread_mutex_unlock(&n->lock);
        return 0;
}

size_t node_drop_alias(struct ossb_fusefs *fs, struct fnode *n, struct fnode *parent, const char *name)
{
        struct fnode *drop = NULL;
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_al; i++)
                if (n->al[i].parent == parent && streq(n->al[i].name, name)) {
                        drop = n->al[i].parent;
                        free(n->al[i].name);
                        memmove(&n->al[i], &n->al[i + 1], (n->n_al - i - 1) * sizeof(*n->al));
                        n->n_al--;
                        break;
                }
        size_t left = n->n_al;
        if (left == 0)
                n->removed = true;
        pthread_mutex_unlock(&n->lock);
        if (left == 0)
                node_unhash(fs, n); /* its number may be reused by a new upper entry */
        node_unref(fs, drop);
        return left;
}

int node_rename_alias(struct ossb_fusefs *fs, struct fnode *n, struct fnode *op, const char *oname,
                      struct fnode *np, const char *nname)
{
        char *copy = strdup(nname);
        if (!copy)
                return -ENOMEM;
        struct fnode *drop = NULL;
        pthread_mutex_lock(&n->lock);
        size_t i;
        for (i = 0; i < n->n_al; i++)
                if (n->al[i].parent == op && streq(n->al[i].name, oname))
                        break;
        if (i == n->n_al) {
                pthread_mutex_unlock(&n->lock);
                free(copy);
                return node_add_alias(n, np, nname);
        }
        drop = n->al[i].parent;
        free(n->al[i].name);
        node_ref(np);
        n->al[i] = (struct falias) { np, copy };
        pthread_mutex_unlock(&n->lock);
        node_unref(fs, drop);
        return 0;
}

bool node_has_alias(struct fnode *n, struct fnode *parent, const char *name)
{
        bool r = false;
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_al && !r; i++)
                r = n->al[i].parent == parent && streq(n->al[i].name, name);
        pthread_mutex_unlock(&n->lock);
        return r;
}

int node_first_alias(struct fnode *n, struct fnode **ret_parent, char **ret_name)
{
        pthread_mutex_lock(&n->lock);
        if (n->n_al == 0) {
                pthread_mutex_unlock(&n->lock);
                return -ENOENT;
        }
        char *name = strdup(n->al[0].name);
        if (!name) {
                pthread_mutex_unlock(&n->lock);
                return -ENOMEM;
        }
        struct fnode *p = n->al[0].parent;
        node_ref(p);
        pthread_mutex_unlock(&n->lock);
        *ret_parent = p;
        *ret_name = name;
        return 0;
}

char *path_join2(const char *parent, const char *name)
{
        char *r = NULL;
        if (asprintf(&r, "%s%s%s", parent, parent[0] ? "/" : "", name) < 0)
                return NULL;
        return r;
}

char *node_path(struct ossb_fusefs *fs, struct fnode *n, int *ret_r)
{
        _cleanup_strv_free_ char **names = NULL;
        struct fnode *cur = n;
        int r = 0;

        node_ref(cur);
        while (cur != fs->root) {
                struct fnode *p;
                char *name;
                r = node_first_alias(cur, &p, &name);
                node_unref(fs, cur);
                cur = NULL;
                if (r < 0)
                        break;
                r = ossb_strv_consume(&names, name);
                cur = p;
                if (r < 0)
                        break;
        }
        if (cur)
                node_unref(fs, cur);
        if (ret_r)
                *ret_r = r;
        if (r < 0)
                return NULL;

        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (size_t i = ossb_strv_length(names); i > 0; i--)
                if ((sb.len && ossb_strbuf_append_c(&sb, '/') < 0) || ossb_strbuf_append(&sb, names[i - 1]) < 0) {
                        ossb_strbuf_free(&sb);
                        if (ret_r)
                                *ret_r = -ENOMEM;
                        return NULL;
                }
        char *s = ossb_strbuf_steal(&sb);
        if (!s && ret_r)
                *ret_r = -ENOMEM;
        return s;
}

void dlist_unref(struct dlist *l)
{
        if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->e[i].name);
        free(l->e);
        free(l);
}

bool node_is_upper(struct fnode *n)
{
        pthread_mutex_lock(&n->lock);
        bool u = n->upper;
        pthread_mutex_unlock(&n->lock);
        return u;
}

void node_lookup_done(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&n->lock);
        bool first = n->nlookup++ == 0;
        pthread_mutex_unlock(&n->lock);
        if (!first)
                node_unref(fs, n);
}

void node_forget(struct ossb_fusefs *fs, struct fnode *n, uint64_t count)
{
        pthread_mutex_lock(&n->lock);
        bool last = false;
        if (n->nlookup > 0) {
                n->nlookup = count >= n->nlookup ? 0 : n->nlookup - count;
                last = n->nlookup == 0;
        }
        pthread_mutex_unlock(&n->lock);
        if (last)
                node_unref(fs, n);
}

void node_invalidate_dir(struct ossb_fusefs *fs, struct fnode *dir)
{
        pthread_mutex_lock(&dir->lock);
        struct dlist *l = dir->rdcache;
        dir->rdcache = NULL;
        dir->rdgen++;
        pthread_mutex_unlock(&dir->lock);
        dlist_unref(l);
}

/* ---- the directory fd cache ---- */

/* With fdc_lock held: close unpinned fds beyond the budget. */
static void fdc_evict(struct ossb_fusefs *fs)
{
        while (fs->fdc_open > fs->fdc_max && fs->lru_head) {
                struct fnode *v = fs->lru_head;
                lru_unlink(fs, v);
                close(v->ufd);
                v->ufd = -1;
                fs->fdc_open--;
        }
}

static int dirfd_open(struct ossb_fusefs *fs, struct fnode *n)
{
        for (int attempt = 0; attempt < 8; attempt++) {
                struct fnode *p;
                _cleanup_free_ char *name = NULL;
                int r = node_first_alias(n, &p, &name);
                if (r < 0)
                        return r;
                pthread_mutex_lock(&n->lock);
                uint64_t uino = n->uino;
                bool upper = n->upper;
                pthread_mutex_unlock(&n->lock);
                if (!upper) {
                        node_unref(fs, p);
                        return -ESTALE;
                }
                int pfd = dirfd_get(fs, p);
                if (pfd < 0) {
                        node_unref(fs, p);
                        return pfd;
                }
                int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                r = fd < 0 ? -errno : 0;
                dirfd_put(fs, p);
                node_unref(fs, p);
                if (r < 0 && r != -ENOENT)
                        return r;
                struct stat st;
                if (r == 0 && fstat(fd, &st) == 0 && (uint64_t) st.st_ino == uino)
                        return fd;
                if (fd >= 0)
                        close(fd);
                /* renamed meanwhile: read the alias again */
        }
        return -ESTALE;
}

int dirfd_get(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->fdc_lock);
        if (n->ufd >= 0) {
                n->ufd_pins++;
                if (!n->ufd_fixed)
                        lru_unlink(fs, n);
                int fd = n->ufd;
                pthread_mutex_unlock(&fs->fdc_lock);
                return fd;
        }
        pthread_mutex_unlock(&fs->fdc_lock);

        int fd = dirfd_open(fs, n);
        if (fd < 0)
                return fd;
        pthread_mutex_lock(&fs->fdc_lock);
        if (n->ufd >= 0) {
                n->ufd_pins++;
                if (!n->ufd_fixed)
                        lru_unlink(fs, n);
                int cached = n->ufd;
                pthread_mutex_unlock(&fs->fdc_lock);
                close(fd);
                return cached;
        }
        n->ufd = fd;
        n->ufd_pins = 1;
        fs->fdc_open++;
        fdc_evict(fs);
        pthread_mutex_unlock(&fs->fdc_lock);
        return fd;
}

void dirfd_put(struct ossb_fusefs *fs, struct fnode *n)
{
        pthread_mutex_lock(&fs->fdc_lock);
        if (n->ufd_pins > 0 && --n->ufd_pins == 0 && !n->ufd_fixed && n->ufd >= 0) {
                lru_append(fs, n);
                fdc_evict(fs);
        }
        pthread_mutex_unlock(&fs->fdc_lock);
}

void dirfd_seed(struct ossb_fusefs *fs, struct fnode *n, int fd)
{
        pthread_mutex_lock(&fs->fdc_lock);
        if (n->ufd >= 0) {
                pthread_mutex_unlock(&fs->fdc_lock);
                close(fd);
                return;
        }
        n->ufd = fd;
        n->ufd_pins = 0;
        fs->fdc_open++;
        lru_append(fs, n);
        fdc_evict(fs);
        pthread_mutex_unlock(&fs->fdc_lock);
}
