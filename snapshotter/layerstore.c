/* snapshotter/layerstore.c - see layerstore.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "snapshotter/layerstore.h"
#include "snapshotter/snapshotter.h"

#define TMP_MAX_AGE_S 3600

struct ossb_layerstore {
        char *dir;
        bool userxattr;
};

/* "root", or "userns-" and 12 hex digits of the hash of this process's id maps. */
static int flavor(char **ret)
{
        if (!ossb_snapshot_in_userns()) {
                *ret = strdup("root");
                return *ret ? 0 : -ENOMEM;
        }
        _cleanup_free_ char *uid = NULL, *gid = NULL, *both = NULL;
        size_t ul = 0, gl = 0;
        char d[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_read_file("/proc/self/uid_map", 65536, &uid, &ul, NULL) < 0 ||
            ossb_read_file("/proc/self/gid_map", 65536, &gid, &gl, NULL) < 0)
                return -EIO;
        if (asprintf(&both, "%s\n--\n%s", uid, gid) < 0)
                return -ENOMEM;
        int r = ossb_sha256_digest(both, strlen(both), d);
        if (r < 0)
                return r;
        return asprintf(ret, "userns-%.12s", d + 7) < 0 ? -ENOMEM : 0;
}

int ossb_layerstore_open(const char *cache_dir, struct ossb_layerstore **ret, struct ossb_error **err)
{
        _cleanup_free_ char *fl = NULL;
        int r = flavor(&fl);
        if (r < 0)
                return ossb_error_set(err, r, "cannot tell this process's user namespace mapping: %s", strerror(-r));
        struct ossb_layerstore *ls = calloc(1, sizeof(*ls));
        if (!ls || asprintf(&ls->dir, "%s/layers/%s", cache_dir, fl) < 0) {
                free(ls);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        ls->userxattr = ossb_snapshot_in_userns();
        r = ossb_mkdir_p(ls->dir, 0700);
        if (r < 0) {
                ossb_error_set(err, r, "cannot create the layer store `%s`: %s", ls->dir, strerror(-r));
                ossb_layerstore_free(ls);
                return r;
        }
        *ret = ls;
        return 0;
}

void ossb_layerstore_free(struct ossb_layerstore *ls)
{
        if (!ls)
                return;
        free(ls->dir);
        free(ls);
}

bool ossb_layerstore_userxattr(const struct ossb_layerstore *ls)
{
        return ls->userxattr;
}

const char *ossb_layerstore_path(const struct ossb_layerstore *ls)
{
        return ls->dir;
}

static const char *hex_of(const char *diff_id)
{
        return ossb_digest_is_valid(diff_id) ? diff_id + strlen("sha256:") : NULL;
}

bool ossb_layerstore_has(struct ossb_layerstore *ls, const char *diff_id)
{
        const char *hex = hex_of(diff_id);
        _cleanup_free_ char *p = NULL;
        struct stat st;
        if (!hex || asprintf(&p, "%s/%s", ls->dir, hex) < 0)
                return false;
        return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void ossb_layerdir_release(struct ossb_layerdir *d)
{
        if (d->lock_fd >= 0)
                close(d->lock_fd); /* drops the flock */
        d->lock_fd = -1;
        free(d->path);
        d->path = NULL;
}

/* Open and lock `path` shared, retrying while prune replaced the file under us. */
static int lock_shared(const char *path, int *ret_fd)
{
        for (int tries = 0; tries < 100; tries++) {
                _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                struct stat a, b;
                if (fd < 0)
                        return -errno;
                if (flock(fd, LOCK_SH) < 0)
                        return -errno;
                if (fstat(fd, &a) < 0)
                        return -errno;
                if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
        }
        return -EAGAIN;
}

static __thread int64_t du_total;

static int du_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) p;
        (void) flag;
        (void) ftw;
        du_total += (int64_t) st->st_blocks * 512;
        return 0;
}

static int64_t disk_usage(const char *dir)
{
        du_total = 0;
        if (nftw(dir, du_one, 64, FTW_PHYS) < 0)
                return 0;
        return du_total;
}

/* Fill a tmp dir and rename it to `final`; losing the race to another filler is no error. */
static int fill_into(struct ossb_layerstore *ls, const char *hex, const char *final, int lock_fd,
                     ossb_layer_fill_fn fill, void *userdata, struct ossb_error **err)
{
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s/tmp-%.16s-XXXXXX", ls->dir, hex) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!mkdtemp(tmp))
                return ossb_error_set(err, -errno, "cannot create a directory in `%s`: %m", ls->dir);
        int r = fill(tmp, userdata, err);
        if (r >= 0) {
                _cleanup_close_ int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0 || syncfs(fd) < 0)
                        r = ossb_error_set(err, -errno, "cannot sync `%s`: %m", tmp);
        }
        if (r >= 0) {
                char size[32];
                int n = snprintf(size, sizeof(size), "%" PRId64 "\n", disk_usage(tmp));
                if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, size, (size_t) n, 0) != n)
                        log_debug("layer store: cannot record the size of %s: %m", hex);
                if (chmod(tmp, 0755) < 0 || rename(tmp, final) < 0) {
                        if (errno != EEXIST && errno != ENOTEMPTY)
                                r = ossb_error_set(err, -errno, "cannot move `%s` into place: %m", tmp);
                } else {
                        (void) ossb_fsync_dir(ls->dir); /* best effort: the tree itself is synced */
                        return 0;
                }
        }
        (void) ossb_rm_rf(tmp);
        return r;
}

int ossb_layerstore_get(struct ossb_layerstore *ls, const char *diff_id, ossb_layer_fill_fn fill, void *userdata,
                        struct ossb_layerdir *ret, struct ossb_error **err)
{
        const char *hex = hex_of(diff_id);
        _cleanup_free_ char *final = NULL, *lock = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        if (!hex)
                return ossb_error_set(err, -EINVAL, "invalid layer DiffID `%.80s`", diff_id);
        if (asprintf(&final, "%s/%s", ls->dir, hex) < 0 || asprintf(&lock, "%s/%s.lock", ls->dir, hex) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = lock_shared(lock, &fd);
        if (r < 0)
                return ossb_error_set(err, r, "cannot lock `%s`: %s", lock, strerror(-r));
        if (stat(final, &st) < 0) {
                if (errno != ENOENT)
                        return ossb_error_set(err, -errno, "cannot stat `%s`: %m", final);
                if (!fill)
                        return -ENOENT;
                r = fill_into(ls, hex, final, fd, fill, userdata, err);
                if (r < 0)
                        return r;
        }
        (void) futimens(fd, NULL); /* last use */
        ret->path = TAKE_PTR(final);
        ret->lock_fd = TAKE_FD(fd);
        return 0;
}

/* ---- prune ---- */

struct candidate {
        char *dir;  /* the flavor's directory */
        char *hex;
        int64_t size;
        struct timespec used;
};

static int by_use(const void *a, const void *b)
{
        const struct candidate *x = a, *y = b;
        if (x->used.tv_sec != y->used.tv_sec)
                return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
        if (x->used.tv_nsec != y->used.tv_nsec)
                return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
        return strcmp(x->hex, y->hex);
}

struct prune {
        struct candidate *v;
        size_t n, cap;
        int64_t freed;
};

static int64_t read_size(int fd)
{
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        return n > 0 ? strtoll(buf, NULL, 10) : 0;
}

static int add_candidate(struct prune *p, const char *dir, const char *name, const struct stat *st, int lock_fd)
{
        if (p->n == p->cap) {
                size_t cap = p->cap ? p->cap * 2 : 32;
                struct candidate *v = reallocarray(p->v, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                p->v = v;
                p->cap = cap;
        }
        struct candidate *c = &p->v[p->n];
        c->dir = strdup(dir);
        c->hex = strndup(name, strlen(name) - strlen(".lock"));
        if (!c->dir || !c->hex) {
                free(c->dir);
                free(c->hex);
                return -ENOMEM;
        }
        c->size = read_size(lock_fd);
        c->used = st->st_mtim;
        p->n++;
        return 0;
}

/* Remove a layer whose lock this process holds exclusively: directory first, then the lock. */
static int remove_layer(const char *dir, const char *hex, int64_t size, struct prune *p)
{
        _cleanup_free_ char *final = NULL, *lock = NULL;
        if (asprintf(&final, "%s/%s", dir, hex) < 0 || asprintf(&lock, "%s/%s.lock", dir, hex) < 0)
                return -ENOMEM;
        int r = ossb_rm_rf(final);
        if (r < 0 && r != -ENOENT) {
                /* e.g. a layer another id mapping unpacked: not this process's to remove */
                log_warn("cannot remove the unpacked layer `%s`: %s", final, strerror(-r));
                return 0;
        }
        (void) unlink(lock);
        p->freed += size;
        return 0;
}

static void remove_stale_tmp(const char *dir, const char *name)
{
        _cleanup_free_ char *p = ossb_path_join(dir, name);
        struct stat st;
        if (p && stat(p, &st) == 0 && time(NULL) - st.st_mtime > TMP_MAX_AGE_S)
                (void) ossb_rm_rf(p);
}

/* Collect the unused layers of one flavor directory (their locks held in *fds). */
static int scan_flavor(const char *dir, struct prune *p, int **fds, size_t *n_fds)
{
        _cleanup_strv_free_ char **names = NULL;
        DIR *d = opendir(dir);
        struct dirent *de;
        int r = 0;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        r = ossb_strv_push(&names, de->d_name);
        closedir(d);
        for (size_t i = 0; r >= 0 && names && names[i]; i++) {
                const char *nm = names[i];
                size_t len = strlen(nm);
                if (!strncmp(nm, "tmp-", 4)) {
                        remove_stale_tmp(dir, nm);
                        continue;
                }
                if (len != 64 + 5 || strcmp(nm + 64, ".lock"))
                        continue;
                _cleanup_free_ char *lp = ossb_path_join(dir, nm);
                _cleanup_close_ int fd = lp ? open(lp, O_RDWR | O_CLOEXEC) : -1;
                struct stat st;
                if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &st) < 0)
                        continue; /* in use (or gone) */
                int *nv = reallocarray(*fds, *n_fds + 1, sizeof(int));
                if (!nv)
                        return -ENOMEM;
                *fds = nv;
                r = add_candidate(p, dir, nm, &st, fd);
                if (r >= 0)
                        (*fds)[(*n_fds)++] = TAKE_FD(fd);
        }
        return r;
}

int ossb_layerstore_prune(const char *cache_dir, int64_t keep_bytes, int64_t *ret_freed, struct ossb_error **err)
{
        _cleanup_free_ char *root = ossb_path_join(cache_dir, "layers");
        _cleanup_strv_free_ char **flavors = NULL;
        struct prune p = { 0 };
        int *fds = NULL;
        size_t n_fds = 0;
        int r = 0;
        if (!root)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        DIR *d = opendir(root);
        if (!d) {
                if (ret_freed)
                        *ret_freed = 0;
                return errno == ENOENT ? 0 : ossb_error_set(err, -errno, "cannot read `%s`: %m", root);
        }
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        r = ossb_strv_push(&flavors, de->d_name);
        closedir(d);
        for (size_t i = 0; r >= 0 && flavors && flavors[i]; i++) {
                _cleanup_free_ char *fd = ossb_path_join(root, flavors[i]);
                r = fd ? scan_flavor(fd, &p, &fds, &n_fds) : -ENOMEM;
        }
        int64_t total = 0;
        for (size_t i = 0; i < p.n; i++)
                total += p.v[i].size;
        if (r >= 0 && p.n > 0)
                qsort(p.v, p.n, sizeof(*p.v), by_use);
        for (size_t i = 0; r >= 0 && i < p.n && (keep_bytes == 0 || total > keep_bytes); i++) {
                r = remove_layer(p.v[i].dir, p.v[i].hex, p.v[i].size, &p);
                total -= p.v[i].size;
        }
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        free(fds);
        for (size_t i = 0; i < p.n; i++) {
                free(p.v[i].dir);
                free(p.v[i].hex);
        }
        free(p.v);
        if (r < 0)
                return ossb_error_set(err, r, "cannot prune the layer store `%s`: %s", root, strerror(-r));
        if (ret_freed)
                *ret_freed = p.freed;
        return 0;
}
