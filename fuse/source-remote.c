/* fuse/source-remote.c - a lower layer served lazily from a seekable layer blob
 * (ossb_fs_source_remote_new, see source-remote.h): the path index built from the TOC, the
 * data source operations, on-demand chunk fetching with verification into the chunk cache,
 * and the background prefetch thread; recording and replay are in source-remote-replay.c,
 * the shared state in source-remote-internal.h.
 *
 * Locking: the index (nodes, hash, chunk numbering) is built once and read-only afterwards.
 * struct remote.lock protects the chunk states and first_error; it is never held while
 * fetching, hashing or waiting for I/O other than a cache lookup.  A thread claims the chunks
 * it will fetch (CH_INFLIGHT) and waits for chunks other threads claimed only once it holds
 * no claim of its own, so claims never deadlock.  A replay (ossb_fs_source_remote_replay_start)
 * claims chunks ahead of its fetches and settles or releases every one of them; readers only
 * wait for its claims, never take them over.
 *
 * Recording: recorded[] is set per node by atomic exchange (first use only); rec_lock protects
 * the log (rec, n_rec, cap_rec, rec_bytes, rec_capped) and is taken for nothing else. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "fuse/chunkcache.h"
#include "fuse/source-remote.h"

#include "fuse/source-remote-internal.h"

static const struct ossb_fs_source_ops remote_ops;

/* ---- the path index ---- */

static uint64_t hash_str(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 0x100000001b3ULL;
        return h;
}

static uint32_t idx_find(const struct remote *rs, const char *path)
{
        if (!rs->hash_cap)
                return NONE;
        for (uint64_t i = hash_str(path) & (rs->hash_cap - 1);; i = (i + 1) & (rs->hash_cap - 1)) {
                uint32_t v = rs->hash[i];
                if (v == 0)
                        return NONE;
                if (streq(rs->nodes[v - 1].path, path))
                        return v - 1;
        }
}

static void hash_put(uint32_t *hash, uint32_t cap, const char *path, uint32_t idx)
{
        uint64_t i = hash_str(path) & (cap - 1);
        while (hash[i])
                i = (i + 1) & (cap - 1);
        hash[i] = idx + 1;
}

static int hash_grow(struct remote *rs)
{
        if ((uint64_t) (rs->n_nodes + 1) * 2 <= rs->hash_cap)
                return 0;
        uint32_t cap = rs->hash_cap ? rs->hash_cap * 2 : 1024;
        uint32_t *h = calloc(cap, sizeof(*h));
        if (!h)
                return -ENOMEM;
        for (uint32_t i = 0; i < rs->n_nodes; i++)
                hash_put(h, cap, rs->nodes[i].path, i);
        free(rs->hash);
        rs->hash = h;
        rs->hash_cap = cap;
        return 0;
}

/* A new node for `path` (ownership taken) under `parent` (NONE: the root). */
static int node_add(struct remote *rs, char *path, uint32_t parent, uint32_t *ret)
{
        if (rs->n_nodes == UINT32_MAX - 1) {
                free(path);
                return -E2BIG;
        }
        if (rs->n_nodes == rs->cap_nodes) {
                uint32_t cap = rs->cap_nodes ? rs->cap_nodes * 2 : 256;
                struct node *v = reallocarray(rs->nodes, cap, sizeof(*v));
                if (!v) {
                        free(path);
                        return -ENOMEM;
                }
                rs->nodes = v;
                rs->cap_nodes = cap;
        }
        if (hash_grow(rs) < 0) {
                free(path);
                return -ENOMEM;
        }
        uint32_t i = rs->n_nodes++;
        rs->nodes[i] = (struct node) {
                .path = path, .parent = parent, .first_child = NONE, .last_child = NONE, .next = NONE,
                .entry = -1, .target = i, .nlink = 1,
        };
        hash_put(rs->hash, rs->hash_cap, path, i);
        if (parent != NONE) {
                struct node *p = &rs->nodes[parent];
                if (p->last_child == NONE)
                        p->first_child = i;
                else
                        rs->nodes[p->last_child].next = i;
                p->last_child = i;
        }
        *ret = i;
        return 0;
}

static void remove_below(struct remote *rs, uint32_t dir)
{
        for (uint32_t c = rs->nodes[dir].first_child; c != NONE; c = rs->nodes[c].next) {
                rs->nodes[c].removed = true;
                remove_below(rs, c);
        }
}

/* The node for `path` (created, or revived if removed) as child of `parent`. */
static int node_get(struct remote *rs, const char *path, uint32_t parent, uint32_t *ret)
{
        uint32_t i = idx_find(rs, path);
        if (i != NONE) {
                rs->nodes[i].removed = false;
                *ret = i;
                return 0;
        }
        char *p = strdup(path);
        return p ? node_add(rs, p, parent, ret) : -ENOMEM;
}

/* The directory `path`, implied (with its parents) when the TOC has not named it yet. */
static int ensure_dir(struct remote *rs, const char *path, uint32_t *ret)
{
        if (!*path) {
                *ret = 0;
                return 0;
        }
        uint32_t i = idx_find(rs, path);
        if (i == NONE || rs->nodes[i].removed || !rs->nodes[i].dir) {
                _cleanup_free_ char *parent_path = strdup(path);
                if (!parent_path)
                        return -ENOMEM;
                char *slash = strrchr(parent_path, '/');
                if (slash)
                        *slash = 0;
                else
                        parent_path[0] = 0;
                uint32_t parent;
                int k = ensure_dir(rs, parent_path, &parent);
                if (k >= 0)
                        k = node_get(rs, path, parent, &i);
                if (k < 0)
                        return k;
                struct node *n = &rs->nodes[i];
                if (!n->dir) {
                        n->entry = -1; /* a file turned into a directory by a later name beneath it */
                        n->flags = 0;
                        n->dir = true;
                }
        }
        *ret = i;
        return 0;
}

static bool is_landmark(const char *path)
{
        return streq(path, ".prefetch.landmark") || streq(path, ".no.prefetch.landmark");
}

static int add_whiteout(struct remote *rs, const char *dir, const char *name, uint32_t parent)
{
        _cleanup_free_ char *path = *dir ? NULL : strdup(name);
        if (*dir && asprintf(&path, "%s/%s", dir, name) < 0)
                path = NULL;
        if (!path)
                return -ENOMEM;
        uint32_t i;
        int k = node_get(rs, path, parent, &i);
        if (k < 0)
                return k;
        remove_below(rs, i);
        struct node *n = &rs->nodes[i];
        n->entry = -1;
        n->flags = OSSB_FS_WHITEOUT;
        n->dir = false;
        return 0;
}

static int add_entry(struct remote *rs, uint32_t ei)
{
        const struct ossb_toc_entry *e = &rs->toc->entries[ei];
        const char *path = e->path;
        if (!path || strlen(path) > MAX_PATH_LEN || is_landmark(path))
                return 0;
        if (!*path || streq(path, ".")) {
                if (S_ISDIR(e->mode))
                        rs->nodes[0].entry = (int32_t) ei;
                return 0;
        }
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        _cleanup_free_ char *dir = strndup(path, slash ? (size_t) (slash - path) : 0);
        uint32_t parent, i;
        if (!dir || !*base)
                return dir ? 0 : -ENOMEM;
        int k = ensure_dir(rs, dir, &parent);
        if (k < 0)
                return k;
        if (streq(base, ".wh..wh..opq")) {
                rs->nodes[parent].flags |= OSSB_FS_OPAQUE;
                return 0;
        }
        if (!strncmp(base, ".wh.", 4))
                return base[4] ? add_whiteout(rs, dir, base + 4, parent) : 0;
        k = node_get(rs, path, parent, &i);
        if (k < 0)
                return k;
        struct node *n = &rs->nodes[i];
        bool dir_now = S_ISDIR(e->mode) && !e->hardlink;
        if (n->dir && !dir_now)
                remove_below(rs, i);
        n->entry = (int32_t) ei;
        n->dir = dir_now;
        n->flags &= dir_now ? OSSB_FS_OPAQUE : 0;
        return 0;
}

/* A hard link's target path as a node path ("/a/b", "./a/b" -> "a/b"). */
static uint32_t link_node(struct remote *rs, const char *link)
{
        _cleanup_free_ char *clean = ossb_path_clean(link ? link : "");
        if (!clean)
                return NONE;
        const char *p = clean;
        while (*p == '/')
                p++;
        if (streq(p, ".") || !strncmp(p, "../", 3) || streq(p, ".."))
                return NONE;
        uint32_t i = idx_find(rs, p);
        return i != NONE && !rs->nodes[i].removed ? i : NONE;
}

static void resolve_links(struct remote *rs)
{
        for (uint32_t i = 0; i < rs->n_nodes; i++) {
                struct node *n = &rs->nodes[i];
                if (n->removed || n->entry < 0 || !rs->toc->entries[n->entry].hardlink)
                        continue;
                uint32_t t = i;
                for (int depth = 0; t != NONE && depth < MAX_LINK_DEPTH; depth++) {
                        const struct node *tn = &rs->nodes[t];
                        if (tn->entry >= 0 && !rs->toc->entries[tn->entry].hardlink)
                                break;
                        t = tn->entry >= 0 ? link_node(rs, rs->toc->entries[tn->entry].link) : NONE;
                }
                if (t == NONE || rs->nodes[t].dir || rs->nodes[t].entry < 0 ||
                    rs->toc->entries[rs->nodes[t].entry].hardlink) {
                        log_debug("layer %s: hard link %s -> %s has no target: not shown", rs->name, n->path,
                                  rs->toc->entries[n->entry].link ? rs->toc->entries[n->entry].link : "");
                        n->removed = true;
                        continue;
                }
                n->target = t;
                rs->nodes[t].nlink++;
        }
}

static void count_dir_links(struct remote *rs)
{
        for (uint32_t i = 0; i < rs->n_nodes; i++)
                if (rs->nodes[i].dir)
                        rs->nodes[i].nlink = 2;
        for (uint32_t i = 1; i < rs->n_nodes; i++)
                if (rs->nodes[i].dir && !rs->nodes[i].removed && rs->nodes[i].parent != NONE)
                        rs->nodes[rs->nodes[i].parent].nlink++;
}

/* Chunks must tile each regular file and lie inside the blob, each with a digest: the TOC is
 * checked against its digest, but it says whatever its author wanted. */
static int check_chunks(struct remote *rs, const struct ossb_toc_entry *e, struct ossb_error **err)
{
        int64_t at = 0;
        for (size_t c = 0; c < e->n_chunks; c++) {
                const struct ossb_toc_chunk *ch = &e->chunks[c];
                const char *why = NULL;
                if (ch->file_offset != at || ch->size <= 0)
                        why = "chunks that do not tile the file";
                else if (ch->offset < 0 || ch->end <= ch->offset || ch->end > rs->blob_size)
                        why = "a chunk outside the blob";
                else if (!ossb_digest_is_valid(ch->digest))
                        why = "a chunk without a digest (it could not be verified)";
                if (why)
                        return ossb_error_set(err, -EBADMSG, "layer %s: the TOC gives `%s` %s", rs->name, e->path, why);
                at += ch->size;
        }
        if (at != e->size)
                return ossb_error_set(err, -EBADMSG, "layer %s: the TOC's chunks of `%s` cover %" PRId64 " of its %" PRId64
                                      " bytes", rs->name, e->path, at, e->size);
        return 0;
}

static int build_index(struct remote *rs, struct ossb_error **err)
{
        char *root = strdup("");
        uint32_t r;
        int k = root ? node_add(rs, root, NONE, &r) : -ENOMEM;
        if (k >= 0) {
                rs->nodes[0].dir = true;
                rs->cbase = calloc(rs->toc->n ? rs->toc->n : 1, sizeof(*rs->cbase));
                k = rs->cbase ? 0 : -ENOMEM;
        }
        for (size_t i = 0; k >= 0 && i < rs->toc->n; i++) {
                const struct ossb_toc_entry *e = &rs->toc->entries[i];
                rs->cbase[i] = rs->n_chunks;
                rs->n_chunks += e->n_chunks;
                if (S_ISREG(e->mode) && !e->hardlink && (k = check_chunks(rs, e, err)) < 0)
                        return k;
                k = add_entry(rs, (uint32_t) i);
        }
        if (k < 0)
                return ossb_error_set(err, k, "out of memory");
        resolve_links(rs);
        count_dir_links(rs);
        rs->cstate = calloc(rs->n_chunks ? rs->n_chunks : 1, 1);
        rs->recorded = calloc(rs->n_nodes ? rs->n_nodes : 1, 1);
        return rs->cstate && rs->recorded ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
}

/* The node of `path`, or NONE when the layer does not have it. */
uint32_t remote_lookup(const struct remote *rs, const char *path)
{
        uint32_t i = idx_find(rs, path);
        return i != NONE && !rs->nodes[i].removed ? i : NONE;
}

const struct ossb_toc_entry *remote_entry_of(const struct remote *rs, uint32_t node)
{
        int32_t e = rs->nodes[rs->nodes[node].target].entry;
        return e >= 0 ? &rs->toc->entries[e] : NULL;
}

/* ---- recording the paths used ---- */

/* Append node i to the log on its first use (bounded: see source-remote.h). */
static void record(struct remote *rs, uint32_t i)
{
        if (__atomic_exchange_n(&rs->recorded[i], 1, __ATOMIC_RELAXED))
                return;
        size_t len = strlen(rs->nodes[i].path) + 1;
        pthread_mutex_lock(&rs->rec_lock);
        if (rs->n_rec >= OSSB_FS_REMOTE_RECORD_MAX || rs->rec_bytes + len > OSSB_FS_REMOTE_RECORD_MAX_BYTES)
                rs->rec_capped = true;
        if (!rs->rec_capped && rs->n_rec == rs->cap_rec) {
                size_t cap = rs->cap_rec ? rs->cap_rec * 2 : 256;
                uint32_t *v = reallocarray(rs->rec, cap, sizeof(*v));
                if (v) {
                        rs->rec = v;
                        rs->cap_rec = cap;
                } else
                        rs->rec_capped = true; /* out of memory: the record is only a hint */
        }
        if (!rs->rec_capped) {
                rs->rec[rs->n_rec++] = i;
                rs->rec_bytes += len;
        }
        pthread_mutex_unlock(&rs->rec_lock);
}

/* ---- metadata ---- */

static void fill_stat(const struct remote *rs, uint32_t i, struct stat *st)
{
        const struct node *n = &rs->nodes[i], *t = &rs->nodes[n->target];
        const struct ossb_toc_entry *e = remote_entry_of(rs, i);
        memset(st, 0, sizeof(*st));
        st->st_ino = (ino_t) n->target + 1;
        st->st_nlink = t->nlink;
        st->st_blksize = 4096;
        if (n->flags & OSSB_FS_WHITEOUT) {
                st->st_mode = S_IFCHR;
                st->st_rdev = makedev(0, 0);
                st->st_nlink = 1;
                return;
        }
        if (!e || t->dir) {
                st->st_mode = e ? (e->mode & 07777) | S_IFDIR : S_IFDIR | 0755;
                st->st_size = 4096;
        } else {
                st->st_mode = e->mode;
                st->st_size = S_ISREG(e->mode) ? e->size : S_ISLNK(e->mode) && e->link ? (off_t) strlen(e->link) : 0;
                st->st_rdev = e->rdev;
        }
        if (e) {
                st->st_uid = e->uid;
                st->st_gid = e->gid;
                st->st_mtim = st->st_atim = st->st_ctim = e->mtime;
        }
        st->st_blocks = (st->st_size + 511) / 512;
}

static int rs_getattr(void *ctx, const char *path, struct stat *st, unsigned *ret_flags)
{
        struct remote *rs = ctx;
        uint32_t i = remote_lookup(rs, path);
        if (i == NONE)
                return -ENOENT;
        fill_stat(rs, i, st);
        if (ret_flags)
                *ret_flags = rs->nodes[i].flags;
        return 0;
}

static unsigned char dtype(const struct remote *rs, uint32_t i)
{
        const struct node *n = &rs->nodes[i];
        if (n->flags & OSSB_FS_WHITEOUT)
                return DT_CHR;
        if (rs->nodes[n->target].dir)
                return DT_DIR;
        const struct ossb_toc_entry *e = remote_entry_of(rs, i);
        return e ? (unsigned char) IFTODT(e->mode) : DT_UNKNOWN;
}

static int list_dir(struct remote *rs, const char *path,
                    int (*cb)(void *ud, const char *name, unsigned char type, uint64_t ino), void *ud)
{
        uint32_t d = remote_lookup(rs, path);
        if (d == NONE)
                return -ENOENT;
        if (!rs->nodes[d].dir)
                return -ENOTDIR;
        for (uint32_t c = rs->nodes[d].first_child; c != NONE; c = rs->nodes[c].next) {
                const struct node *n = &rs->nodes[c];
                if (n->removed)
                        continue;
                const char *slash = strrchr(n->path, '/');
                int r = cb(ud, slash ? slash + 1 : n->path, dtype(rs, c), (uint64_t) n->target + 1);
                if (r != 0)
                        return r;
        }
        return 0;
}

struct noino {
        int (*cb)(void *ud, const char *name, unsigned char type);
        void *ud;
};

static int noino_cb(void *ud, const char *name, unsigned char type, uint64_t ino)
{
        struct noino *x = ud;
        return x->cb(x->ud, name, type);
}

static int rs_readdir(void *ctx, const char *path, int (*cb)(void *ud, const char *name, unsigned char type), void *ud)
{
        struct noino x = { cb, ud };
        return list_dir(ctx, path, noino_cb, &x);
}

static int rs_readdir_ino(void *ctx, const char *path,
                          int (*cb)(void *ud, const char *name, unsigned char type, uint64_t ino), void *ud)
{
        return list_dir(ctx, path, cb, ud);
}

static ssize_t rs_readlink(void *ctx, const char *path, char *buf, size_t size)
{
        struct remote *rs = ctx;
        uint32_t i = remote_lookup(rs, path);
        if (i == NONE)
                return -ENOENT;
        const struct ossb_toc_entry *e = remote_entry_of(rs, i);
        if (!e || (rs->nodes[i].flags & OSSB_FS_WHITEOUT) || !S_ISLNK(e->mode) || !e->link)
                return -EINVAL;
        size_t len = strlen(e->link);
        if (len + 1 > size)
                return -ERANGE;
        memcpy(buf, e->link, len + 1);
        record(rs, i);
        return (ssize_t) len;
}

static bool private_xattr(const char *name)
{
        return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13) ||
               streq(name, OSSB_FS_OVERRIDE_XATTR);
}

static const struct ossb_toc_entry *xattr_entry(struct remote *rs, const char *path, int *ret)
{
        uint32_t i = remote_lookup(rs, path);
        *ret = i == NONE ? -ENOENT : 0;
        return i == NONE || (rs->nodes[i].flags & OSSB_FS_WHITEOUT) ? NULL : remote_entry_of(rs, i);
}

static ssize_t rs_getxattr(void *ctx, const char *path, const char *name, void *buf, size_t size)
{
        int k;
        const struct ossb_toc_entry *e = xattr_entry(ctx, path, &k);
        if (k < 0)
                return k;
        for (size_t x = 0; e && x < e->n_xattrs; x++) {
                const struct ossb_xattr *a = &e->xattrs[x];
                if (!streq(a->name, name) || private_xattr(a->name))
                        continue;
                if (size == 0)
                        return (ssize_t) a->size;
                if (a->size > size)
                        return -ERANGE;
                memcpy(buf, a->value, a->size);
                return (ssize_t) a->size;
        }
        return -ENODATA;
}

static ssize_t rs_listxattr(void *ctx, const char *path, char *buf, size_t size)
{
        int k;
        const struct ossb_toc_entry *e = xattr_entry(ctx, path, &k);
        if (k < 0)
                return k;
        size_t total = 0;
        for (size_t x = 0; e && x < e->n_xattrs; x++) {
                const char *nm = e->xattrs[x].name;
                if (private_xattr(nm))
                        continue;
                size_t len = strlen(nm) + 1;
                if (size > 0 && total + len > size)
                        return -ERANGE;
                if (size > 0)
                        memcpy(buf + total, nm, len);
                total += len;
        }
        return (ssize_t) total;
}

/* ---- errors ---- */

/* Keep the first failure's message for ossb_fs_source_remote_error; log every one. */
static void note_error(struct remote *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct remote *rs, const char *fmt, ...)
{
        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0)
                return;
        log_error("%s", msg);
        pthread_mutex_lock(&rs->lock);
        if (!rs->first_error)
                rs->first_error = TAKE_PTR(msg);
        pthread_mutex_unlock(&rs->lock);
        free(msg);
}

/* ---- fetching chunks ---- */

size_t remote_gid(const struct remote *rs, struct cref r)
{
        return rs->cbase[r.entry] + r.chunk;
}

const struct ossb_toc_chunk *remote_chunk_of(const struct remote *rs, struct cref r)
{
        return &rs->toc->entries[r.entry].chunks[r.chunk];
}

struct fetch {
        struct remote *rs;
        const struct cref *refs;
        int *result; /* per ref: 0 not arrived, 1 stored, < 0 failed */
        int kind;    /* FETCH_* */
};

static int on_chunk(void *userdata, size_t index, const void *data, size_t len)
{
        struct fetch *f = userdata;
        struct remote *rs = f->rs;
        const struct ossb_toc_entry *e = &rs->toc->entries[f->refs[index].entry];
        const struct ossb_toc_chunk *c = remote_chunk_of(rs, f->refs[index]);
        if (f->kind != FETCH_READ && atomic_load(&rs->stopping))
                return -ECANCELED;
        ST_ADD(rs, fetched_bytes, len);
        if (f->kind != FETCH_READ)
                ST_ADD(rs, prefetched_bytes, len);
        if (f->kind == FETCH_REPLAY)
                __atomic_fetch_add(&rs->replay->st.fetched_bytes, (uint64_t) len, __ATOMIC_RELAXED);
        _cleanup_free_ void *out = malloc((size_t) c->size);
        struct ossb_error *e1 = NULL;
        int k = out ? ossb_toc_chunk_read(rs->toc, e, c, data, len, out, &e1)
                    : ossb_error_set(&e1, -ENOMEM, "out of memory");
        if (k < 0) {
                if (k == -EBADMSG)
                        ST_ADD(rs, bad_chunks, 1);
                note_error(rs, "layer %s: file `%s`: the chunk at file offset %" PRId64 " (blob bytes %" PRId64 "-%" PRId64
                           ") is not what its TOC says: %s", rs->name, e->path, c->file_offset, c->offset, c->end - 1,
                           e1 && e1->msg ? e1->msg : strerror(-k));
        } else if ((k = ossb_chunkcache_put(rs->cache, c->digest, out, (size_t) c->size, false, &e1)) < 0)
                note_error(rs, "layer %s: file `%s`: %s", rs->name, e->path, e1 && e1->msg ? e1->msg : strerror(-k));
        ossb_error_free(e1);
        f->result[index] = k < 0 ? -EIO : 1;
        if (k >= 0) {
                ST_ADD(rs, chunks_fetched, 1);
                if (f->kind != FETCH_READ)
                        ST_ADD(rs, prefetched_chunks, 1);
                if (f->kind == FETCH_REPLAY)
                        __atomic_fetch_add(&rs->replay->st.fetched_chunks, 1, __ATOMIC_RELAXED);
        }
        return 0;
}

/* Fetch the claimed chunks `refs` in one call and settle their states.  Returns the fetch's
 * error, if any. */
int remote_fetch_claimed(struct remote *rs, const struct cref *refs, size_t n, int kind, struct ossb_error **err)
{
        _cleanup_free_ struct ossb_range *ranges = calloc(n, sizeof(*ranges));
        _cleanup_free_ int *result = calloc(n, sizeof(*result));
        int k = ranges && result ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; k >= 0 && i < n; i++) {
                const struct ossb_toc_chunk *c = remote_chunk_of(rs, refs[i]);
                ranges[i] = (struct ossb_range) { c->offset, c->end - c->offset };
        }
        if (k >= 0) {
                struct fetch f = { .rs = rs, .refs = refs, .result = result, .kind = kind };
                ST_ADD(rs, fetches, 1);
                k = rs->fetch(rs->fetch_userdata, ranges, n, on_chunk, &f, err);
                if (k < 0 && kind == FETCH_REPLAY) /* a hint only: reads fetch on demand */
                        log_warn("layer %s: replaying %zu chunk(s) failed: %s", rs->name, n,
                                 err && *err && (*err)->msg ? (*err)->msg : strerror(-k));
                else if (k < 0 && !(kind != FETCH_READ && atomic_load(&rs->stopping)))
                        note_error(rs, "layer %s: fetching %zu chunk(s) failed: %s", rs->name, n,
                                   err && *err && (*err)->msg ? (*err)->msg : strerror(-k));
        }
        pthread_mutex_lock(&rs->lock);
        for (size_t i = 0; i < n; i++)
                rs->cstate[remote_gid(rs, refs[i])] = result && result[i] == 1 ? CH_CACHED : CH_UNKNOWN;
        pthread_cond_broadcast(&rs->cond);
        pthread_mutex_unlock(&rs->lock);
        return k;
}

/* Claimed chunks found in the cache (verified if asked) become CACHED; the others stay
 * claimed and are moved to the front of `refs`.  Returns how many still need fetching. */
size_t remote_from_cache(struct remote *rs, struct cref *refs, size_t n)
{
        size_t keep = 0;
        for (size_t i = 0; i < n; i++) {
                const struct ossb_toc_chunk *c = remote_chunk_of(rs, refs[i]);
                bool have = ossb_chunkcache_has(rs->cache, c->digest, c->size);
                if (have && rs->verify_cache)
                        have = ossb_chunkcache_verify(rs->cache, c->digest, NULL) == 0;
                if (!have) {
                        refs[keep++] = refs[i];
                        continue;
                }
                ossb_chunkcache_touch(rs->cache, c->digest);
                ST_ADD(rs, cache_hits, 1);
                pthread_mutex_lock(&rs->lock);
                rs->cstate[remote_gid(rs, refs[i])] = CH_CACHED;
                pthread_cond_broadcast(&rs->cond);
                pthread_mutex_unlock(&rs->lock);
        }
        return keep;
}

/* Claim the chunks of `list` nobody holds (into *mine); how many others are fetching. */
static size_t claim(struct remote *rs, const struct cref *list, size_t n, struct cref *mine, size_t *ret_mine)
{
        size_t m = 0, others = 0;
        pthread_mutex_lock(&rs->lock);
        for (size_t i = 0; i < n; i++) {
                uint8_t *s = &rs->cstate[remote_gid(rs, list[i])];
                if (*s == CH_INFLIGHT)
                        others++;
                else if (*s == CH_UNKNOWN) {
                        *s = CH_INFLIGHT;
                        mine[m++] = list[i];
                }
        }
        pthread_mutex_unlock(&rs->lock);
        *ret_mine = m;
        return others;
}

/* Wait until none of list[0, n) is being fetched; whether all of them are cached. */
static bool wait_settled(struct remote *rs, const struct cref *list, size_t n)
{
        bool all = true;
        pthread_mutex_lock(&rs->lock);
        for (size_t i = 0; i < n; i++) {
                size_t g = remote_gid(rs, list[i]);
                while (rs->cstate[g] == CH_INFLIGHT)
                        pthread_cond_wait(&rs->cond, &rs->lock);
                all = all && rs->cstate[g] == CH_CACHED;
        }
        pthread_mutex_unlock(&rs->lock);
        return all;
}

/* Make the chunks of `list` cached: those nobody fetches are fetched in one call, then (with
 * `wait`) those other threads fetch are waited for.  Success when list[0, n_need) are cached
 * (the rest is read-ahead). */
static int ensure(struct remote *rs, const struct cref *list, size_t n, size_t n_need, bool wait, bool background,
                  struct ossb_error **err)
{
        _cleanup_free_ struct cref *mine = calloc(n ? n : 1, sizeof(*mine));
        if (!mine)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (int round = 0; round < MAX_WAIT_ROUNDS; round++) {
                size_t m = 0, others = claim(rs, list, n, mine, &m);
                int k = 0;
                m = remote_from_cache(rs, mine, m);
                struct ossb_error *fe = NULL;
                if (m > 0)
                        k = remote_fetch_claimed(rs, mine, m, background ? FETCH_PREFETCH : FETCH_READ, &fe);
                if (!wait) {
                        if (k < 0 && err && !*err)
                                *err = TAKE_PTR(fe);
                        ossb_error_free(fe);
                        return k;
                }
                bool ok = wait_settled(rs, list, n_need);
                if (ok) {
                        ossb_error_free(fe);
                        return 0;
                }
                if (k < 0 || (m > 0 && others == 0)) {
                        if (k >= 0)
                                k = ossb_error_set(&fe, -EIO, "a chunk did not match its digest");
                        if (err && !*err)
                                *err = TAKE_PTR(fe);
                        ossb_error_free(fe);
                        return k;
                }
                ossb_error_free(fe);
        }
        return ossb_error_set(err, -EIO, "the chunks could not be fetched");
}

/* ---- open and read ---- */

static int rs_open(void *ctx, const char *path, void **ret_handle)
{
        struct remote *rs = ctx;
        uint32_t i = remote_lookup(rs, path);
        if (i == NONE || (rs->nodes[i].flags & OSSB_FS_WHITEOUT))
                return -ENOENT;
        const struct ossb_toc_entry *e = remote_entry_of(rs, i);
        if (rs->nodes[rs->nodes[i].target].dir)
                return -EISDIR;
        if (!e || !S_ISREG(e->mode))
                return -EINVAL;
        struct rhandle *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->node = rs->nodes[i].target;
        *ret_handle = h;
        record(rs, i);
        return 0;
}

static int rs_handle_fd(void *ctx, void *handle)
{
        return -1;
}

static void rs_release(void *ctx, void *handle)
{
        free(handle);
}

/* The chunk holding file offset `off`. */
static size_t chunk_at(const struct ossb_toc_entry *e, int64_t off)
{
        size_t lo = 0, hi = e->n_chunks;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (e->chunks[mid].file_offset <= off)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

/* Copy file bytes [off, off + len) from the cached chunks c0... */
static int copy_out(struct remote *rs, const struct ossb_toc_entry *e, size_t c0, char *buf, int64_t off, size_t len)
{
        size_t done = 0;
        for (size_t c = c0; done < len; c++) {
                const struct ossb_toc_chunk *ch = &e->chunks[c];
                int64_t in = off + (int64_t) done - ch->file_offset;
                size_t want = (size_t) (ch->size - in) < len - done ? (size_t) (ch->size - in) : len - done;
                ssize_t n = ossb_chunkcache_pread(rs->cache, ch->digest, ch->size, buf + done, want, in);
                if (n < 0)
                        return (int) n;
                if ((size_t) n != want)
                        return -EIO;
                done += want;
        }
        return 0;
}

static void forget_cached(struct remote *rs, uint32_t entry, size_t c0, size_t c1)
{
        pthread_mutex_lock(&rs->lock);
        for (size_t c = c0; c <= c1; c++)
                if (rs->cstate[rs->cbase[entry] + c] == CH_CACHED)
                        rs->cstate[rs->cbase[entry] + c] = CH_UNKNOWN;
        pthread_mutex_unlock(&rs->lock);
}

/* Where the background work (or a read-ahead) is: an entry and a chunk of it. */
struct cursor {
        size_t entry, chunk;
};

static int collect(struct remote *rs, struct cursor *cur, int64_t end, int64_t max_bytes, struct cref **ret,
                   size_t *ret_n);

/* The chunks [c0, ra] of `entry`, then with `seq` those of the files after it in blob order
 * (read-ahead across files, SEQ_READAHEAD compressed bytes). */
static int read_list(struct remote *rs, uint32_t entry, size_t c0, size_t ra, bool seq, struct cref **ret,
                     size_t *ret_n)
{
        struct cref *more = NULL;
        size_t n_more = 0;
        if (seq) {
                struct cursor cur = { (size_t) entry + 1, 0 };
                int64_t w = atomic_load(&rs->seq_window);
                atomic_store(&rs->seq_window, w * 2 < SEQ_READAHEAD_MAX ? w * 2 : SEQ_READAHEAD_MAX);
                if (collect(rs, &cur, -1, w, &more, &n_more) < 0)
                        n_more = 0; /* no read-ahead without memory: the read itself goes on */
        }
        size_t n = ra - c0 + 1;
        struct cref *list = calloc(n + n_more, sizeof(*list));
        if (!list) {
                free(more);
                return -ENOMEM;
        }
        for (size_t c = c0; c <= ra; c++)
                list[c - c0] = (struct cref) { entry, (uint32_t) c };
        if (n_more)
                memcpy(list + n, more, n_more * sizeof(*list));
        free(more);
        *ret = list;
        *ret_n = n + n_more;
        return 0;
}

/* Whether chunks [c0, c1] of `entry` are cached already. */
static bool all_cached(struct remote *rs, uint32_t entry, size_t c0, size_t c1)
{
        bool all = true;
        pthread_mutex_lock(&rs->lock);
        for (size_t c = c0; all && c <= c1; c++)
                all = rs->cstate[rs->cbase[entry] + c] == CH_CACHED;
        pthread_mutex_unlock(&rs->lock);
        return all;
}

static int read_chunks(struct remote *rs, uint32_t entry, size_t c0, size_t c1, size_t ra, bool seq,
                       struct ossb_error **err)
{
        _cleanup_free_ struct cref *list = NULL;
        size_t n = 0;
        /* read ahead only with a fetch that must happen anyway: one request per window */
        if (seq && all_cached(rs, entry, c0, c1))
                seq = false;
        if (read_list(rs, entry, c0, ra, seq, &list, &n) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ensure(rs, list, n, c1 - c0 + 1, true, false, err);
}

/* Whether the first read of `entry` continues a walk through the files in blob order. */
static bool sequential_first_read(struct remote *rs, uint32_t entry)
{
        uint32_t prev = atomic_exchange(&rs->last_first_read, entry);
        bool seq = rs->readahead > 0 && prev != NONE && entry > prev && entry - prev <= SEQ_GAP;
        if (!seq)
                atomic_store(&rs->seq_window, SEQ_READAHEAD);
        return seq;
}

static ssize_t rs_read(void *ctx, void *handle, void *buf, size_t size, off_t off)
{
        struct remote *rs = ctx;
        struct rhandle *h = handle;
        uint32_t ei = (uint32_t) rs->nodes[h->node].entry;
        const struct ossb_toc_entry *e = &rs->toc->entries[ei];
        if (off < 0)
                return -EINVAL;
        if (off >= e->size || size == 0)
                return 0;
        size_t len = (int64_t) size < e->size - off ? size : (size_t) (e->size - off);
        size_t c0 = chunk_at(e, off), c1 = chunk_at(e, off + (int64_t) len - 1), ra = c1;
        if (rs->readahead > 0 && off == h->last_end)
                while (ra + 1 < e->n_chunks && e->chunks[ra + 1].file_offset < off + (int64_t) len + rs->readahead)
                        ra++;
        bool seq = off == 0 && h->last_end == 0 && sequential_first_read(rs, ei);
        int k = 0;
        for (int attempt = 0; attempt < 2; attempt++) {
                struct ossb_error *err = NULL;
                k = read_chunks(rs, ei, c0, c1, ra, seq && attempt == 0, &err);
                if (k < 0) {
                        note_error(rs, "layer %s: reading `%s` failed: %s", rs->name, e->path,
                                   err && err->msg ? err->msg : strerror(-k));
                        ossb_error_free(err);
                        return -EIO;
                }
                k = copy_out(rs, e, c0, buf, off, len);
                if (k != -ENOENT && k != -EBADMSG)
                        break;
                forget_cached(rs, ei, c0, c1); /* pruned (or damaged) meanwhile: fetch again */
                ra = c1;
        }
        if (k < 0) {
                note_error(rs, "layer %s: reading `%s` from the chunk cache failed: %s", rs->name, e->path,
                           strerror(-k));
                return -EIO;
        }
        h->last_end = off + (int64_t) len;
        ST_ADD(rs, bytes_read, len);
        return (ssize_t) len;
}

/* ---- background prefetch ---- */

int remote_push_ref(struct cref **v, size_t *n, size_t *cap, struct cref r)
{
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                struct cref *nv = reallocarray(*v, c, sizeof(**v));
                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = c;
        }
        (*v)[(*n)++] = r;
        return 0;
}

/* The chunks of regular files in blob order from the cursor, until `max_bytes` compressed
 * bytes (<= 0: no bound) or a chunk at blob offset `end` or beyond (< 0: no end).  Advances
 * the cursor. */
static int collect(struct remote *rs, struct cursor *cur, int64_t end, int64_t max_bytes, struct cref **ret,
                   size_t *ret_n)
{
        struct cref *v = NULL;
        size_t n = 0, cap = 0;
        int64_t bytes = 0;
        for (; cur->entry < rs->toc->n; cur->entry++, cur->chunk = 0) {
                const struct ossb_toc_entry *e = &rs->toc->entries[cur->entry];
                if (!S_ISREG(e->mode) || e->hardlink)
                        continue;
                for (; cur->chunk < e->n_chunks; cur->chunk++) {
                        const struct ossb_toc_chunk *c = &e->chunks[cur->chunk];
                        if ((end >= 0 && c->offset >= end) || (max_bytes > 0 && bytes >= max_bytes))
                                goto out;
                        if (remote_push_ref(&v, &n, &cap, (struct cref) { (uint32_t) cur->entry, (uint32_t) cur->chunk }) < 0) {
                                free(v);
                                return -ENOMEM;
                        }
                        bytes += c->end - c->offset;
                }
        }
out:
        *ret = v;
        *ret_n = n;
        return 0;
}

static int prefetch_some(struct remote *rs, struct cursor *cur, int64_t end, int64_t max_bytes,
                         struct ossb_error **err)
{
        struct cref *list = NULL;
        size_t n = 0;
        int k = collect(rs, cur, end, max_bytes, &list, &n);
        if (k < 0)
                return ossb_error_set(err, k, "out of memory");
        if (n > 0)
                k = ensure(rs, list, n, 0, false, true, err);
        free(list);
        return k;
}

static void *bg_main(void *arg)
{
        struct remote *rs = arg;
        struct cursor cur = { 0, 0 };
        int k = 0;
        if (rs->prefetch && rs->toc->prefetch_end > 0) {
                k = prefetch_some(rs, &cur, rs->toc->prefetch_end, 0, &rs->bg_err);
                log_debug("layer %s: prefetched the files before the landmark (%s)", rs->name, k < 0 ? "failed" : "done");
                cur = (struct cursor) { 0, 0 };
        }
        while (k >= 0 && rs->background && cur.entry < rs->toc->n && !atomic_load(&rs->stopping))
                k = prefetch_some(rs, &cur, -1, rs->max_fetch, &rs->bg_err);
        __atomic_store_n(&rs->st.prefetch_done, true, __ATOMIC_RELEASE);
        return NULL;
}

/* ---- the source ---- */

static void rs_free(void *ctx)
{
        struct remote *rs = ctx;
        if (!rs)
                return;
        if (rs->thread_started && !rs->thread_joined) {
                atomic_store(&rs->stopping, true);
                pthread_join(rs->thread, NULL);
        }
        if (rs->replay && rs->replay->started && !rs->replay->joined) {
                atomic_store(&rs->replay->stop, true);
                pthread_join(rs->replay->thread, NULL);
        }
        remote_replay_free(rs->replay);
        free(rs->recorded);
        free(rs->rec);
        pthread_mutex_destroy(&rs->rec_lock);
        for (uint32_t i = 0; i < rs->n_nodes; i++)
                free(rs->nodes[i].path);
        free(rs->nodes);
        free(rs->hash);
        free(rs->cbase);
        free(rs->cstate);
        free(rs->first_error);
        ossb_error_free(rs->bg_err);
        ossb_toc_free(rs->toc);
        ossb_chunkcache_free(rs->cache);
        pthread_cond_destroy(&rs->cond);
        pthread_mutex_destroy(&rs->lock);
        free(rs->name);
        free(rs);
}

static const struct ossb_fs_source_ops remote_ops = {
        .getattr = rs_getattr,
        .readdir = rs_readdir,
        .open = rs_open,
        .read = rs_read,
        .handle_fd = rs_handle_fd,
        .release = rs_release,
        .readlink = rs_readlink,
        .getxattr = rs_getxattr,
        .listxattr = rs_listxattr,
        .free = rs_free,
        .readdir_ino = rs_readdir_ino,
};

static int remote_init(struct remote *rs, const struct ossb_fs_remote_opts *o, struct ossb_error **err)
{
        pthread_mutex_init(&rs->lock, NULL);
        pthread_mutex_init(&rs->rec_lock, NULL);
        pthread_cond_init(&rs->cond, NULL);
        rs->name = strdup(o->name ? o->name : "(remote layer)");
        if (!rs->name)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        rs->blob_size = o->blob_size;
        rs->fetch = o->fetch;
        rs->fetch_userdata = o->fetch_userdata;
        rs->verify_cache = o->verify_cache;
        rs->prefetch = o->prefetch;
        rs->background = o->background;
        rs->max_fetch = o->max_fetch > 0 ? o->max_fetch : DEFAULT_MAX_FETCH;
        rs->readahead = o->readahead == 0 ? DEFAULT_READAHEAD : o->readahead;
        atomic_init(&rs->last_first_read, NONE);
        atomic_init(&rs->seq_window, SEQ_READAHEAD);
        if (!o->fetch || !o->cache_dir)
                return ossb_error_set(err, -EINVAL, "layer %s: a remote layer needs a fetch function and a cache dir",
                                      rs->name);
        int k = ossb_chunkcache_open(o->cache_dir, &rs->cache, err);
        if (k < 0)
                return k;
        return build_index(rs, err);
}

int ossb_fs_source_remote_new(const struct ossb_fs_remote_opts *o, struct ossb_fs_source **ret,
                              struct ossb_error **err)
{
        struct remote *rs = calloc(1, sizeof(*rs));
        struct ossb_fs_source *src = calloc(1, sizeof(*src));
        if (!rs || !src) {
                free(rs);
                free(src);
                ossb_toc_free(o->toc);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        rs->toc = o->toc;
        int k = remote_init(rs, o, err);
        if (k >= 0 && (rs->prefetch || rs->background)) {
                k = -pthread_create(&rs->thread, NULL, bg_main, rs);
                if (k < 0)
                        ossb_error_set(err, k, "layer %s: cannot start the prefetch thread: %s", rs->name, strerror(-k));
                rs->thread_started = k >= 0;
        }
        if (k >= 0)
                src->name = strdup(rs->name);
        if (k >= 0 && !src->name)
                k = ossb_error_set(err, -ENOMEM, "out of memory");
        if (k < 0) {
                rs_free(rs);
                free(src);
                return k;
        }
        if (!rs->thread_started)
                __atomic_store_n(&rs->st.prefetch_done, true, __ATOMIC_RELEASE);
        src->ops = &remote_ops;
        src->ctx = rs;
        *ret = src;
        return 0;
}

bool ossb_fs_source_is_remote(const struct ossb_fs_source *src)
{
        return src && src->ops == &remote_ops;
}

void ossb_fs_source_remote_get_stats(struct ossb_fs_source *src, struct ossb_fs_remote_stats *ret)
{
        struct remote *rs = src->ctx;
        ret->fetches = __atomic_load_n(&rs->st.fetches, __ATOMIC_RELAXED);
        ret->fetched_bytes = __atomic_load_n(&rs->st.fetched_bytes, __ATOMIC_RELAXED);
        ret->chunks_fetched = __atomic_load_n(&rs->st.chunks_fetched, __ATOMIC_RELAXED);
        ret->cache_hits = __atomic_load_n(&rs->st.cache_hits, __ATOMIC_RELAXED);
        ret->bytes_read = __atomic_load_n(&rs->st.bytes_read, __ATOMIC_RELAXED);
        ret->bad_chunks = __atomic_load_n(&rs->st.bad_chunks, __ATOMIC_RELAXED);
        ret->prefetched_chunks = __atomic_load_n(&rs->st.prefetched_chunks, __ATOMIC_RELAXED);
        ret->prefetch_done = __atomic_load_n(&rs->st.prefetch_done, __ATOMIC_ACQUIRE);
        ret->prefetched_bytes = __atomic_load_n(&rs->st.prefetched_bytes, __ATOMIC_RELAXED);
}

int ossb_fs_source_remote_wait(struct ossb_fs_source *src, struct ossb_error **err)
{
        struct remote *rs = src->ctx;
        if (rs->thread_started && !rs->thread_joined) {
                pthread_join(rs->thread, NULL);
                rs->thread_joined = true;
        }
        if (!rs->bg_err)
                return 0;
        return ossb_error_set(err, rs->bg_err->code, "%s", rs->bg_err->msg ? rs->bg_err->msg : "prefetch failed");
}

int ossb_fs_source_remote_fetch_paths(struct ossb_fs_source *src, char *const *paths, size_t n,
                                      struct ossb_error **err)
{
        struct remote *rs = src->ctx;
        struct cref *list = NULL;
        size_t m = 0, cap = 0;
        int k = 0;
        for (size_t i = 0; k >= 0 && i < n; i++) {
                uint32_t nd = remote_lookup(rs, paths[i]);
                const struct ossb_toc_entry *e = nd == NONE || (rs->nodes[nd].flags & OSSB_FS_WHITEOUT) ? NULL
                                                                                                         : remote_entry_of(rs, nd);
                if (!e || !S_ISREG(e->mode) || rs->nodes[rs->nodes[nd].target].dir)
                        continue;
                uint32_t ei = (uint32_t) rs->nodes[rs->nodes[nd].target].entry;
                for (size_t c = 0; k >= 0 && c < e->n_chunks; c++)
                        k = remote_push_ref(&list, &m, &cap, (struct cref) { ei, (uint32_t) c });
        }
        if (k < 0)
                k = ossb_error_set(err, k, "out of memory");
        else if (m > 0)
                k = ensure(rs, list, m, m, true, false, err);
        free(list);
        if (k < 0)
                ossb_error_wrap(err, "layer %s", rs->name);
        return k;
}

char *ossb_fs_source_remote_error(struct ossb_fs_source *src)
{
        struct remote *rs = src->ctx;
        pthread_mutex_lock(&rs->lock);
        char *s = rs->first_error ? strdup(rs->first_error) : NULL;
        pthread_mutex_unlock(&rs->lock);
        return s;
}
