/* snapshotter/walk.c - the pieces both change walks use: xattr sets, items, sorted directory
 * listings, the inode map for hard links, and the emitter that holds directories back until
 * something beneath them changes (see snapshotter-internal.h). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "snapshotter/snapshotter-internal.h"

/* ---- xattrs ---- */

#define TRUSTED_OVL "trusted.overlay."
#define USER_OVL "user.overlay."

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool snap_xattr_in_layer(const char *name)
{
        return !has_prefix(name, TRUSTED_OVL) && !has_prefix(name, USER_OVL) && !streq(name, "security.selinux");
}

static int xattr_cmp(const void *a, const void *b)
{
        return strcmp(((const struct ossb_xattr *) a)->name, ((const struct ossb_xattr *) b)->name);
}

void snap_xattrs_clear(struct snap_xattrs *x)
{
        for (size_t i = 0; i < x->n; i++) {
                free((char *) x->v[i].name);
                free((void *) x->v[i].value);
        }
        free(x->v);
        x->v = NULL;
        x->n = 0;
}

/* All attribute names of abs: a NUL-separated list in *ret (NULL when there are none). */
static int list_names(const char *abs, char **ret, size_t *ret_len)
{
        for (int attempt = 0; attempt < 8; attempt++) {
                ssize_t len = llistxattr(abs, NULL, 0);
                if (len < 0)
                        return errno == ENOTSUP ? 0 : -errno;
                if (len == 0)
                        return 0;
                _cleanup_free_ char *buf = malloc((size_t) len);
                if (!buf)
                        return -ENOMEM;
                ssize_t got = llistxattr(abs, buf, (size_t) len);
                if (got < 0 && errno == ERANGE)
                        continue; /* grew in between */
                if (got < 0)
                        return -errno;
                *ret = TAKE_PTR(buf);
                *ret_len = (size_t) got;
                return 0;
        }
        return -EAGAIN;
}

static int get_value(const char *abs, const char *name, void **ret, size_t *ret_size)
{
        for (int attempt = 0; attempt < 8; attempt++) {
                ssize_t len = lgetxattr(abs, name, NULL, 0);
                if (len < 0)
                        return -errno;
                _cleanup_free_ void *v = malloc(len > 0 ? (size_t) len : 1);
                if (!v)
                        return -ENOMEM;
                ssize_t got = lgetxattr(abs, name, v, (size_t) len);
                if (got < 0 && errno == ERANGE)
                        continue;
                if (got < 0)
                        return -errno;
                *ret = TAKE_PTR(v);
                *ret_size = (size_t) got;
                return 0;
        }
        return -EAGAIN;
}

static unsigned overlay_flag(const char *abs, const char *name, bool userxattr)
{
        const char *prefix = userxattr ? USER_OVL : TRUSTED_OVL;
        if (!has_prefix(name, prefix))
                return has_prefix(name, TRUSTED_OVL) || has_prefix(name, USER_OVL) ? SNAP_OVL_ANY : 0;
        const char *key = name + strlen(prefix);
        unsigned f = SNAP_OVL_ANY;
        if (streq(key, "opaque")) {
                char v[2];
                if (lgetxattr(abs, name, v, sizeof(v)) == 1 && v[0] == 'y')
                        f |= SNAP_OVL_OPAQUE;
        } else if (streq(key, "redirect"))
                f |= SNAP_OVL_REDIRECT;
        else if (streq(key, "metacopy"))
                f |= SNAP_OVL_METACOPY;
        return f;
}

static int xattrs_add(struct snap_xattrs *x, const char *abs, const char *name)
{
        void *value = NULL;
        size_t size = 0;
        int r = get_value(abs, name, &value, &size);
        if (r == -ENODATA)
                return 0; /* removed in between */
        if (r < 0)
                return r;
        struct ossb_xattr *nv = realloc(x->v, (x->n + 1) * sizeof(*nv));
        if (!nv) {
                free(value);
                return -ENOMEM;
        }
        x->v = nv;
        char *n = strdup(name);
        if (!n) {
                free(value);
                return -ENOMEM;
        }
        x->v[x->n++] = (struct ossb_xattr) { .name = n, .value = value, .size = size };
        return 0;
}

int snap_xattrs_read(const char *abs, bool userxattr, struct snap_xattrs *ret, unsigned *ret_ovl)
{
        _cleanup_free_ char *names = NULL;
        size_t len = 0;
        struct snap_xattrs x = { NULL, 0 };
        unsigned ovl = 0;
        int r = list_names(abs, &names, &len);
        if (r < 0)
                return r;
        for (size_t off = 0; off < len; off += strlen(names + off) + 1) {
                const char *name = names + off;
                if (!snap_xattr_in_layer(name)) {
                        ovl |= overlay_flag(abs, name, userxattr);
                        continue;
                }
                r = xattrs_add(&x, abs, name);
                if (r < 0) {
                        snap_xattrs_clear(&x);
                        return r;
                }
        }
        if (x.n > 1)
                qsort(x.v, x.n, sizeof(*x.v), xattr_cmp);
        *ret = x;
        if (ret_ovl)
                *ret_ovl = ovl;
        return 0;
}

bool snap_xattrs_equal(const struct snap_xattrs *a, const struct snap_xattrs *b)
{
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (!streq(a->v[i].name, b->v[i].name) || a->v[i].size != b->v[i].size ||
                    (a->v[i].size > 0 && memcmp(a->v[i].value, b->v[i].value, a->v[i].size) != 0))
                        return false;
        return true;
}

int snap_xattrs_strip_overlay(const char *abs)
{
        _cleanup_free_ char *names = NULL;
        size_t len = 0;
        int r = list_names(abs, &names, &len);
        if (r < 0)
                return r;
        for (size_t off = 0; off < len; off += strlen(names + off) + 1) {
                const char *name = names + off;
                if ((has_prefix(name, TRUSTED_OVL) || has_prefix(name, USER_OVL)) && lremovexattr(abs, name) < 0 &&
                    errno != ENODATA)
                        return -errno;
        }
        return 0;
}

/* ---- items ---- */

void snap_item_clear(struct snap_item *it)
{
        free(it->path);
        free(it->abs);
        free(it->link);
        snap_xattrs_clear(&it->xattrs);
        *it = (struct snap_item) { .dirfd = -1 };
}

static int read_link(int dirfd, const char *name, size_t size_hint, char **ret)
{
        size_t cap = size_hint + 1 < 256 ? 256 : size_hint + 1;
        for (;;) {
                _cleanup_free_ char *buf = malloc(cap);
                if (!buf)
                        return -ENOMEM;
                ssize_t n = readlinkat(dirfd, name, buf, cap);
                if (n < 0)
                        return -errno;
                if ((size_t) n < cap) {
                        buf[n] = '\0';
                        *ret = TAKE_PTR(buf);
                        return 0;
                }
                if (cap >= 65536)
                        return -ENAMETOOLONG;
                cap *= 2;
        }
}

int snap_item_load(struct snap_item *it, int dirfd, const char *path, const char *abs, bool userxattr,
                   struct ossb_error **err)
{
        struct snap_item x = { .dirfd = dirfd };
        const char *slash = strrchr(path, '/');
        int r;

        x.path = strdup(path);
        x.abs = strdup(abs);
        if (!x.path || !x.abs) {
                snap_item_clear(&x);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        x.name = slash ? x.path + (slash - path) + 1 : x.path;
        if (fstatat(dirfd, x.name, &x.st, AT_SYMLINK_NOFOLLOW) < 0) {
                r = -errno;
                snap_item_clear(&x);
                return r == -ENOENT ? r : ossb_error_set(err, r, "cannot stat `%s`: %s", abs, strerror(-r));
        }
        if (S_ISLNK(x.st.st_mode)) {
                r = read_link(dirfd, x.name, (size_t) x.st.st_size, &x.link);
                if (r < 0) {
                        snap_item_clear(&x);
                        return ossb_error_set(err, r, "cannot read the symlink `%s`: %s", abs, strerror(-r));
                }
        }
        r = snap_xattrs_read(abs, userxattr, &x.xattrs, &x.ovl);
        if (r < 0) {
                snap_item_clear(&x);
                return ossb_error_set(err, r, "cannot read the extended attributes of `%s`: %s", abs, strerror(-r));
        }
        *it = x;
        return 0;
}

/* ---- listings, paths, contents ---- */

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int snap_list_dir(int dirfd, char ***ret, size_t *ret_n)
{
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        char **v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (n + 2 > cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        char **nv = realloc(v, nc * sizeof(*nv));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = nc;
                }
                v[n] = strdup(de->d_name);
                if (!v[n]) {
                        r = -ENOMEM;
                        break;
                }
                v[++n] = NULL;
                errno = 0;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        closedir(d);
        if (r < 0) {
                ossb_strv_free(v);
                return r;
        }
        if (!v) {
                v = ossb_strv_new_empty();
                if (!v)
                        return -ENOMEM;
        }
        qsort(v, n, sizeof(*v), name_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

char *snap_join(const char *parent, const char *name)
{
        if (!*parent)
                return strdup(name);
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (ossb_strbuf_append(&sb, parent) < 0 || ossb_strbuf_append_c(&sb, '/') < 0 ||
            ossb_strbuf_append(&sb, name) < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static ssize_t read_full(int fd, char *buf, size_t len)
{
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        return (ssize_t) got;
}

int snap_same_content(int fd1, int fd2)
{
        enum { CHUNK = 65536 };
        _cleanup_free_ char *a = malloc(CHUNK);
        _cleanup_free_ char *b = malloc(CHUNK);
        if (!a || !b)
                return -ENOMEM;
        for (;;) {
                ssize_t n1 = read_full(fd1, a, CHUNK);
                ssize_t n2 = read_full(fd2, b, CHUNK);
                if (n1 < 0)
                        return (int) n1;
                if (n2 < 0)
                        return (int) n2;
                if (n1 != n2 || memcmp(a, b, (size_t) n1) != 0)
                        return 0;
                if (n1 == 0)
                        return 1;
        }
}

/* ---- inode map (open addressing, linear probing) ---- */

struct snap_inoent {
        dev_t dev;
        ino_t ino;
        char *path; /* NULL: free slot */
};

static size_t ino_hash(dev_t dev, ino_t ino)
{
        uint64_t h = (uint64_t) ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t) dev * 0xc2b2ae3d27d4eb4fULL;
        return (size_t) (h ^ (h >> 29));
}

const char *snap_inomap_get(const struct snap_inomap *m, dev_t dev, ino_t ino)
{
        if (m->cap == 0)
                return NULL;
        for (size_t i = ino_hash(dev, ino) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                if (!m->v[i].path)
                        return NULL;
                if (m->v[i].dev == dev && m->v[i].ino == ino)
                        return m->v[i].path;
        }
}

static void inomap_insert(struct snap_inoent *v, size_t cap, struct snap_inoent e)
{
        size_t i = ino_hash(e.dev, e.ino) & (cap - 1);
        while (v[i].path)
                i = (i + 1) & (cap - 1);
        v[i] = e;
}

int snap_inomap_put(struct snap_inomap *m, dev_t dev, ino_t ino, const char *path)
{
        if ((m->n + 1) * 2 > m->cap) {
                size_t nc = m->cap ? m->cap * 2 : 64;
                struct snap_inoent *nv = calloc(nc, sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                for (size_t i = 0; i < m->cap; i++)
                        if (m->v[i].path)
                                inomap_insert(nv, nc, m->v[i]);
                free(m->v);
                m->v = nv;
                m->cap = nc;
        }
        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        inomap_insert(m->v, m->cap, (struct snap_inoent) { .dev = dev, .ino = ino, .path = p });
        m->n++;
        return 0;
}

void snap_inomap_clear(struct snap_inomap *m)
{
        for (size_t i = 0; i < m->cap; i++)
                free(m->v[i].path);
        free(m->v);
        *m = (struct snap_inomap) { NULL, 0, 0 };
}

/* ---- the emitter ---- */

static int snap_emit_excluded_at(struct snap_emitter *e, size_t level, size_t idx);

static void level_clear(struct snap_level *l)
{
        snap_item_clear(&l->item);
        free(l->excl);
        l->excl = NULL;
        l->n_excl = 0;
}

/* Hand every held-back directory to the sink, outermost first. */
static int flush(struct snap_emitter *e, struct ossb_error **err)
{
        for (size_t i = 0; i < e->n; i++) {
                struct snap_level *l = &e->levels[i];
                if (l->flushed)
                        continue;
                int r = e->sink->item(e->sink, &l->item, err);
                if (r < 0)
                        return r;
                l->flushed = true;
                e->n_emitted++;
                if (l->flags & SNAP_DIR_OPAQUE) {
                        r = e->sink->opaque(e->sink, &l->item, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int snap_emit_push_dir(struct snap_emitter *e, struct snap_item *it, unsigned flags, struct ossb_error **err)
{
        if (e->n >= SNAP_MAX_DEPTH) {
                int r = ossb_error_set(err, -ELOOP, "`%s`: directories nested deeper than %d levels", it->abs,
                                       SNAP_MAX_DEPTH);
                snap_item_clear(it);
                return r;
        }
        if (e->n == e->cap) {
                size_t nc = e->cap ? e->cap * 2 : 16;
                struct snap_level *nv = realloc(e->levels, nc * sizeof(*nv));
                if (!nv) {
                        snap_item_clear(it);
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                }
                e->levels = nv;
                e->cap = nc;
        }
        e->levels[e->n++] = (struct snap_level) { .item = *it, .flags = flags };
        *it = (struct snap_item) { .dirfd = -1 };
        if (flags & (SNAP_DIR_CHANGED | SNAP_DIR_OPAQUE))
                return flush(e, err);
        return 0;
}

int snap_emit_pop_dir(struct snap_emitter *e, struct ossb_error **err)
{
        struct snap_level *l = &e->levels[e->n - 1];
        int r = 0;
        if (!l->flushed && (l->flags & SNAP_DIR_NEW) && !l->saw_excluded)
                r = flush(e, err);
        if (r == 0 && l->flushed)
                r = e->sink->leave(e->sink, &l->item, err);
        if (r == 0 && e->n > 1 && !l->flushed && (l->flags & SNAP_DIR_NEW)) {
                /* left out, and removed by the native commit: the excluded paths' nearest kept
                 * parent is further up */
                for (size_t i = 0; i < l->n_excl && r == 0; i++)
                        if (snap_emit_excluded_at(e, e->n - 2, l->excl[i]) < 0)
                                r = ossb_error_set(err, -ENOMEM, "out of memory");
        } else
                for (size_t i = 0; i < l->n_excl; i++)
                        e->snap->excl[l->excl[i]].parent_emitted = l->flushed;
        if (e->n > 1 && l->saw_excluded && !l->flushed)
                e->levels[e->n - 2].saw_excluded = true;
        level_clear(l);
        e->n--;
        return r;
}

int snap_emit_item(struct snap_emitter *e, const struct snap_item *it, struct ossb_error **err)
{
        int r = flush(e, err);
        if (r < 0)
                return r;
        r = e->sink->item(e->sink, it, err);
        if (r < 0)
                return r;
        e->n_emitted++;
        return 0;
}

int snap_emit_whiteout(struct snap_emitter *e, const char *path, const struct timespec *mtime,
                       struct ossb_error **err)
{
        int r = flush(e, err);
        if (r < 0)
                return r;
        r = e->sink->whiteout(e->sink, path, mtime, err);
        if (r < 0)
                return r;
        e->n_emitted++;
        return 0;
}

static int snap_emit_excluded_at(struct snap_emitter *e, size_t level, size_t idx)
{
        struct snap_level *l = &e->levels[level];
        size_t *nv = realloc(l->excl, (l->n_excl + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        l->excl = nv;
        l->excl[l->n_excl++] = idx;
        l->saw_excluded = true;
        return 0;
}

int snap_emit_excluded(struct snap_emitter *e, size_t idx)
{
        if (e->n == 0) {
                e->snap->excl[idx].parent_emitted = false; /* the root is never emitted */
                return 0;
        }
        return snap_emit_excluded_at(e, e->n - 1, idx);
}

void snap_emitter_clear(struct snap_emitter *e)
{
        for (size_t i = 0; i < e->n; i++)
                level_clear(&e->levels[i]);
        free(e->levels);
        e->levels = NULL;
        e->n = e->cap = 0;
}
