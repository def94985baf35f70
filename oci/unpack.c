/* oci/unpack.c - the layer reader: blob -> decompressor (zlib/zstd, found from the magic bytes)
 * -> DiffID hash -> libarchive tar reader -> entries applied beneath a destination directory.
 *
 * Owns: one struct unpacker per call: the decompression stream, the libarchive reader, the
 * root directory fd, the set of paths this layer created (for whiteouts and opaque
 * directories) and the directory metadata applied at the end.
 * Safety: names are cleaned and any ".." component refuses the entry (-EPERM); every parent
 * directory (and every hard link target) is resolved with ossb_open_in_root, so symlinks in
 * the tree, whoever made them, resolve inside dest; the final component is created with *at()
 * calls and never followed.  Whiteout files are applied, never created.  Overlay metadata
 * xattrs (trusted.overlay.*, user.overlay.*) from a layer are skipped: whiteouts come from
 * ".wh." entries only.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>
#include <zstd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/strbuf.h"
#include "oci/compress.h"
#include "oci/oci-internal.h"
#include "oci/unpack.h"

#define CHUNK (128 * 1024)
#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

/* ---- a set of paths (open addressing) ---- */

enum {
        PATH_CREATED = 1,  /* an entry of this layer, or a directory it created */
        PATH_ANCESTOR = 2, /* a directory holding something this layer created */
        PATH_META_DONE = 4 /* directory metadata already applied (the last entry wins) */
};

struct pathset {
        char **keys;
        unsigned char *flags;
        size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

static size_t set_slot(const struct pathset *s, const char *k)
{
        size_t i = (size_t) hash_str(k) & (s->cap - 1);
        while (s->keys[i] && !streq(s->keys[i], k))
                i = (i + 1) & (s->cap - 1);
        return i;
}

static unsigned char set_get(const struct pathset *s, const char *k)
{
        if (s->cap == 0)
                return 0;
        size_t i = set_slot(s, k);
        return s->keys[i] ? s->flags[i] : 0;
}

static int set_grow(struct pathset *s)
{
        struct pathset n = { .cap = s->cap ? s->cap * 2 : 256 };
        n.keys = calloc(n.cap, sizeof(*n.keys));
        n.flags = calloc(n.cap, sizeof(*n.flags));
        if (!n.keys || !n.flags) {
                free(n.keys);
                free(n.flags);
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->cap; i++)
                if (s->keys[i]) {
                        size_t j = set_slot(&n, s->keys[i]);
                        n.keys[j] = s->keys[i];
                        n.flags[j] = s->flags[i];
                }
        n.n = s->n;
        free(s->keys);
        free(s->flags);
        *s = n;
        return 0;
}

static int set_mark(struct pathset *s, const char *k, size_t len, unsigned char flag)
{
        _cleanup_free_ char *key = strndup(k, len);
        if (!key)
                return -ENOMEM;
        if ((s->n + 1) * 2 > s->cap && set_grow(s) < 0)
                return -ENOMEM;
        size_t i = set_slot(s, key);
        if (!s->keys[i]) {
                s->keys[i] = TAKE_PTR(key);
                s->n++;
        }
        s->flags[i] |= flag;
        return 0;
}

static void set_free(struct pathset *s)
{
        for (size_t i = 0; i < s->cap; i++)
                free(s->keys[i]);
        free(s->keys);
        free(s->flags);
}

/* ---- the uncompressed stream: decompression and the DiffID hash as bytes pass ---- */

struct stream {
        int fd;
        const char *name;
        enum ossb_compression kind;
        z_stream z;
        bool z_init;
        bool z_member_end; /* the last gzip member ended cleanly */
        ZSTD_DCtx *zd;
        size_t zstd_hint; /* 0: the last zstd frame is complete */
        unsigned char *in, *out;
        size_t in_len, in_pos;
        bool in_eof;
        struct ossb_sha256 *hash;
        int64_t bytes;
        int failed;             /* sticky: the first error's code */
        struct ossb_error *err; /* its message (NULL when even that could not be allocated) */
};

/* The stream's error, for the caller's err. */
static int stream_report(const struct stream *s, int r, struct ossb_error **err)
{
        return ossb_error_set(err, r, "%s", s->err && s->err->msg ? s->err->msg : strerror(-r));
}

static int stream_fail(struct stream *s, int code, const char *what)
{
        return ossb_error_set(&s->err, code, "%s", what);
}

/* Read more input when the buffer is used up; sets in_eof at the end of the file. */
static int stream_fill(struct stream *s)
{
        if (s->in_pos < s->in_len || s->in_eof)
                return 0;
        for (;;) {
                ssize_t n = read(s->fd, s->in, CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return ossb_error_set(&s->err, -errno, "cannot read the layer blob: %m");
                s->in_len = (size_t) n;
                s->in_pos = 0;
                s->in_eof = n == 0;
                return 0;
        }
}

static int stream_open(struct stream *s, int fd, const char *name)
{
        s->fd = fd;
        s->name = name;
        s->zstd_hint = 1;
        s->in = malloc(CHUNK);
        s->out = malloc(CHUNK);
        if (!s->in || !s->out || ossb_sha256_new(&s->hash) < 0)
                return stream_fail(s, -ENOMEM, "out of memory");
        /* the first bytes decide the format: gather at least 4 unless the blob is shorter */
        while (s->in_len < 4) {
                ssize_t n = read(fd, s->in + s->in_len, CHUNK - s->in_len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return ossb_error_set(&s->err, -errno, "cannot read the layer blob: %m");
                if (n == 0) {
                        s->in_eof = true;
                        break;
                }
                s->in_len += (size_t) n;
        }
        s->kind = ossb_compression_detect(s->in, s->in_len);
        if (s->kind == OSSB_COMPRESSION_GZIP) {
                if (inflateInit2(&s->z, 15 + 16) != Z_OK)
                        return stream_fail(s, -ENOMEM, "cannot initialise zlib");
                s->z_init = true;
        } else if (s->kind == OSSB_COMPRESSION_ZSTD) {
                s->zd = ZSTD_createDCtx();
                if (!s->zd)
                        return stream_fail(s, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Next decompressed bytes of a gzip stream (several members allowed, nothing else after them). */
static int gunzip_next(struct stream *s, const void **ret, size_t *ret_len)
{
        for (;;) {
                int r = stream_fill(s);
                if (r < 0)
                        return r;
                if (s->in_pos == s->in_len) {
                        if (!s->z_member_end)
                                return stream_fail(s, -EBADMSG, "truncated gzip data");
                        *ret_len = 0;
                        return 0;
                }
                if (s->z_member_end) { /* another member follows */
                        if (inflateReset(&s->z) != Z_OK)
                                return stream_fail(s, -EIO, "cannot reset zlib");
                        s->z_member_end = false;
                }
                s->z.next_in = s->in + s->in_pos;
                s->z.avail_in = (uInt) (s->in_len - s->in_pos);
                s->z.next_out = s->out;
                s->z.avail_out = CHUNK;
                int zr = inflate(&s->z, Z_NO_FLUSH);
                s->in_pos = s->in_len - s->z.avail_in;
                if (zr == Z_STREAM_END)
                        s->z_member_end = true;
                else if (zr != Z_OK && !(zr == Z_BUF_ERROR && s->z.avail_in == 0))
                        return ossb_error_set(&s->err, -EBADMSG, "corrupt gzip data: %s",
                                              s->z.msg ? s->z.msg : zError(zr));
                if (s->z.avail_out < CHUNK) {
                        *ret = s->out;
                        *ret_len = CHUNK - s->z.avail_out;
                        return 0;
                }
        }
}

static int unzstd_next(struct stream *s, const void **ret, size_t *ret_len)
{
        for (;;) {
                int r = stream_fill(s);
                if (r < 0)
                        return r;
                if (s->in_pos == s->in_len) {
                        if (s->zstd_hint != 0)
                                return stream_fail(s, -EBADMSG, "truncated zstd data");
                        *ret_len = 0;
                        return 0;
                }
                ZSTD_inBuffer in = { s->in, s->in_len, s->in_pos };
                ZSTD_outBuffer out = { s->out, CHUNK, 0 };
                size_t zr = ZSTD_decompressStream(s->zd, &out, &in);
                if (ZSTD_isError(zr))
                        return ossb_error_set(&s->err, -EBADMSG, "corrupt zstd data: %s", ZSTD_getErrorName(zr));
                s->in_pos = in.pos;
                s->zstd_hint = zr;
                if (out.pos > 0) {
                        *ret = s->out;
                        *ret_len = out.pos;
                        return 0;
                }
        }
}

static int plain_next(struct stream *s, const void **ret, size_t *ret_len)
{
        int r = stream_fill(s);
        if (r < 0)
                return r;
        *ret = s->in + s->in_pos;
        *ret_len = s->in_len - s->in_pos;
        s->in_pos = s->in_len;
        return 0;
}

/* The next uncompressed bytes (*ret_len 0 at the end), hashed and counted. */
static int stream_next(struct stream *s, const void **ret, size_t *ret_len)
{
        int r;
        if (s->failed)
                return s->failed;
        if (ossb_interrupted())
                return s->failed = stream_fail(s, -EINTR, "interrupted");
        switch (s->kind) {
        case OSSB_COMPRESSION_GZIP:
                r = gunzip_next(s, ret, ret_len);
                break;
        case OSSB_COMPRESSION_ZSTD:
                r = unzstd_next(s, ret, ret_len);
                break;
        default:
                r = plain_next(s, ret, ret_len);
                break;
        }
        if (r < 0)
                return s->failed = r;
        if (*ret_len > 0) {
                r = ossb_sha256_update(s->hash, *ret, *ret_len);
                if (r < 0)
                        return s->failed = stream_fail(s, r, "sha256 update failed");
                s->bytes += (int64_t) *ret_len;
        }
        return 0;
}

/* Read what libarchive left after the end of the archive, so the DiffID covers every byte. */
static int stream_drain(struct stream *s)
{
        for (;;) {
                const void *p;
                size_t n = 0;
                int r = stream_next(s, &p, &n);
                if (r < 0 || n == 0)
                        return r;
        }
}

static void stream_close(struct stream *s)
{
        if (s->z_init)
                inflateEnd(&s->z);
        ZSTD_freeDCtx(s->zd);
        ossb_sha256_free(s->hash);
        ossb_error_free(s->err);
        free(s->in);
        free(s->out);
}

static la_ssize_t read_cb(struct archive *a, void *userdata, const void **buf)
{
        struct stream *s = userdata;
        size_t n = 0;
        int r = stream_next(s, buf, &n);
        if (r < 0) {
                archive_set_error(a, -r, "%s", s->err && s->err->msg ? s->err->msg : "read failed");
                return -1;
        }
        return (la_ssize_t) n;
}

/* ---- the unpacker ---- */

struct dir_meta {
        char *path;
        mode_t mode;
        struct timespec times[2];
};

struct unpacker {
        const char *name;
        int rootfd;
        struct archive *a;
        struct stream s;
        struct pathset set;
        struct dir_meta *dirs;
        size_t n_dirs, cap_dirs;
        struct ossb_unpack_stats stats;
        const struct ossb_unpack_opts *o; /* never NULL */
        const char *opq_xattr;            /* overlay format: the opaque attribute's name */
};

/* An error from libarchive while reading: prefer what the stream recorded. */
static int archive_fail(struct unpacker *u, const char *what, struct ossb_error **err)
{
        if (u->s.failed)
                return stream_report(&u->s, u->s.failed, err);
        const char *m = archive_error_string(u->a);
        return ossb_error_set(err, -EBADMSG, "%s: %s", what, m ? m : "corrupt tar stream");
}

/* Clean a tar name into a relative path of plain components ("" for the root itself).  A ".."
 * component is -EPERM; leading "/" and "./", empty and "." components are dropped. */
static int clean_name(const char *raw, char **ret)
{
        size_t n = strlen(raw);
        _cleanup_free_ char *out = malloc(n + 1);
        size_t w = 0;

        if (!out)
                return -ENOMEM;
        for (const char *c = raw; *c;) {
                const char *end = strchrnul(c, '/');
                size_t len = (size_t) (end - c);
                if (len == 2 && c[0] == '.' && c[1] == '.')
                        return -EPERM;
                if (len > 0 && !(len == 1 && c[0] == '.')) {
                        if (w > 0)
                                out[w++] = '/';
                        memcpy(out + w, c, len);
                        w += len;
                }
                c = *end ? end + 1 : end;
        }
        out[w] = '\0';
        if (w >= PATH_MAX)
                return -ENAMETOOLONG;
        *ret = TAKE_PTR(out);
        return 0;
}

/* Record that this layer made `path`, and that its parents hold something of this layer. */
static int mark_created(struct unpacker *u, const char *path)
{
        int r = set_mark(&u->set, path, strlen(path), PATH_CREATED);
        for (const char *c = strrchr(path, '/'); r >= 0 && c; c = memrchr(path, '/', (size_t) (c - path)))
                r = set_mark(&u->set, path, (size_t) (c - path), PATH_ANCESTOR);
        return r;
}

static int dup_root(struct unpacker *u)
{
        int fd = fcntl(u->rootfd, F_DUPFD_CLOEXEC, 3);
        return fd < 0 ? -errno : fd;
}

/* ---- the overlay format (see ossb_layer_unpack_ex) ---- */

static char *child_path(const char *dir, const char *name)
{
        char *p = NULL;
        if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
                return NULL;
        return p;
}


static int open_dir(struct unpacker *u, const char *dir, bool create, int *ret_fd, struct ossb_error **err);

static int ovl_opaque_fd(struct unpacker *u, int dfd, const char *path, struct ossb_error **err)
{
        if (fsetxattr(dfd, u->opq_xattr, "y", 1, 0) < 0)
                return ossb_error_set(err, -errno, "cannot mark the directory `%s` opaque (%s): %m", path,
                                      u->opq_xattr);
        return 0;
}

/* Whether pfd/base exists and is not a directory (a directory made there must hide the lower
 * layers' one, as the layer replaced it). */
static bool ovl_replaces_nondir(struct unpacker *u, int pfd, const char *base)
{
        struct stat st;
        return u->o->overlay_format && fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode);
}

static int ovl_whiteout(struct unpacker *u, const char *dir, const char *victim, struct ossb_error **err)
{
        _cleanup_free_ char *target = child_path(dir, victim);
        _cleanup_close_ int pfd = -1;
        if (!target)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = open_dir(u, dir, true, &pfd, err);
        if (r < 0)
                return r;
        if (set_get(&u->set, target)) {
                /* this layer's own entry stays; a directory of it hides the lower layers' one */
                _cleanup_close_ int dfd = openat(pfd, victim, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                return dfd >= 0 ? ovl_opaque_fd(u, dfd, target, err) : 0;
        }
        if (mknodat(pfd, victim, S_IFCHR | 0600, makedev(0, 0)) < 0 && errno != EEXIST)
                return ossb_error_set(err, -errno, "cannot create the whiteout of `%s` (a 0/0 character device): %m",
                                      target);
        return 0;
}

/* Open the directory `dir` (a cleaned path, "" for the root) beneath the root, creating missing
 * components with mode 0755 when `create`. */
static int open_dir(struct unpacker *u, const char *dir, bool create, int *ret_fd, struct ossb_error **err)
{
        if (!*dir) {
                int fd = dup_root(u);
                if (fd < 0)
                        return ossb_error_set(err, fd, "cannot duplicate a file descriptor: %s", strerror(-fd));
                *ret_fd = fd;
                return 0;
        }
        int fd = ossb_open_in_root(u->rootfd, dir, O_PATH | O_DIRECTORY, 0);
        if (fd >= 0 || fd != -ENOENT || !create) {
                if (fd < 0)
                        return ossb_error_set(err, fd, "cannot open directory `%s`: %s", dir, strerror(-fd));
                *ret_fd = fd;
                return 0;
        }
        /* create the missing components one by one, each resolved from the root */
        _cleanup_free_ char *prefix = strdup(dir);
        _cleanup_close_ int prev = dup_root(u);
        if (!prefix)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (prev < 0)
                return ossb_error_set(err, prev, "cannot duplicate a file descriptor: %s", strerror(-prev));
        for (char *c = prefix;;) {
                char *end = strchrnul(c, '/');
                char saved = *end;
                *end = '\0';
                fd = ossb_open_in_root(u->rootfd, prefix, O_PATH | O_DIRECTORY, 0);
                if (fd == -ENOENT) {
                        if (mkdirat(prev, c, 0755) < 0 || fchmodat(prev, c, 0755, 0) < 0)
                                return ossb_error_set(err, -errno, "cannot create directory `%s`: %m", prefix);
                        int r = mark_created(u, prefix);
                        if (r < 0)
                                return ossb_error_set(err, r, "out of memory");
                        fd = ossb_open_in_root(u->rootfd, prefix, O_PATH | O_DIRECTORY, 0);
                }
                if (fd < 0)
                        return ossb_error_set(err, fd, "cannot open directory `%s`: %s", prefix, strerror(-fd));
                close(prev);
                prev = fd;
                if (!saved)
                        break;
                *end = saved;
                c = end + 1;
        }
        *ret_fd = TAKE_FD(prev);
        return 0;
}

/* Remove what is at parent/base unless it is a directory and the new entry is one too
 * (*ret_kept then says so). */
static int clear_existing(int pfd, const char *base, bool new_is_dir, bool *ret_kept)
{
        struct stat st;
        *ret_kept = false;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode)) {
                if (new_is_dir) {
                        *ret_kept = true;
                        return 0;
                }
                return ossb_rm_rf_at(pfd, base);
        }
        return unlinkat(pfd, base, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* ---- metadata ---- */

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
        ts[1].tv_sec = (time_t) archive_entry_mtime(e);
        ts[1].tv_nsec = archive_entry_mtime_nsec(e);
        if (archive_entry_atime_is_set(e)) {
                ts[0].tv_sec = (time_t) archive_entry_atime(e);
                ts[0].tv_nsec = archive_entry_atime_nsec(e);
        } else
                ts[0] = ts[1];
        for (int i = 0; i < 2; i++)
                if (ts[i].tv_nsec < 0 || ts[i].tv_nsec > 999999999)
                        ts[i].tv_nsec = 0;
}

/* fd >= 0: the object itself; otherwise pfd/base without following a symlink. */
static void set_owner(struct unpacker *u, struct archive_entry *e, int fd, int pfd, const char *base)
{
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        int r;
        if (uid < 0 || gid < 0 || uid >= UINT32_MAX || gid >= UINT32_MAX) {
                u->stats.chown_skipped++;
                return;
        }
        if (fd >= 0)
                r = fchown(fd, (uid_t) uid, (gid_t) gid);
        else
                r = fchownat(pfd, base, (uid_t) uid, (gid_t) gid, AT_SYMLINK_NOFOLLOW);
        if (r < 0)
                u->stats.chown_skipped++;
}

static bool xattr_allowed(const char *name)
{
        if (!strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "user.overlay.", 13))
                return false;
        return !strncmp(name, "user.", 5) || !strncmp(name, "trusted.", 8) || streq(name, "security.capability");
}

static void set_xattrs(struct unpacker *u, struct archive_entry *e, int fd, int pfd, const char *base)
{
        const char *name;
        const void *value;
        size_t size;

        if (archive_entry_xattr_reset(e) == 0)
                return;
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
                int r;
                if (!name || !xattr_allowed(name)) {
                        u->stats.xattrs_skipped++;
                        continue;
                }
                if (fd >= 0)
                        r = fsetxattr(fd, name, value, size, 0);
                else {
                        char p[PATH_MAX];
                        if (snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", pfd, base) >= (int) sizeof(p))
                                r = -1;
                        else
                                r = lsetxattr(p, name, value, size, 0);
                }
                if (r < 0)
                        u->stats.xattrs_skipped++;
        }
}

static int remember_dir_meta(struct unpacker *u, const char *path, mode_t mode, const struct timespec times[2])
{
        if (u->n_dirs == u->cap_dirs) {
                size_t cap = u->cap_dirs ? u->cap_dirs * 2 : 64;
                struct dir_meta *d = reallocarray(u->dirs, cap, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                u->dirs = d;
                u->cap_dirs = cap;
        }
        struct dir_meta *d = &u->dirs[u->n_dirs];
        d->path = strdup(path);
        if (!d->path)
                return -ENOMEM;
        d->mode = mode & 07777;
        d->times[0] = times[0];
        d->times[1] = times[1];
        u->n_dirs++;
        return 0;
}

static int remember_dir(struct unpacker *u, const char *path, struct archive_entry *e)
{
        struct timespec ts[2];
        entry_times(e, ts);
        return remember_dir_meta(u, path, archive_entry_perm(e), ts);
}

/* Directory modes and times, children before parents, the last entry for a path winning. */
static void apply_dirs(struct unpacker *u)
{
        for (size_t i = u->n_dirs; i-- > 0;) {
                struct dir_meta *d = &u->dirs[i];
                if (set_get(&u->set, d->path) & PATH_META_DONE)
                        continue;
                (void) set_mark(&u->set, d->path, strlen(d->path), PATH_META_DONE);
                _cleanup_close_ int fd = ossb_open_in_root(u->rootfd, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
                if (fd < 0)
                        continue; /* replaced or removed later in the layer */
                (void) fchmod(fd, d->mode);
                (void) futimens(fd, d->times);
        }
}

/* ---- entries ---- */

static int write_all_at(int fd, const char *buf, size_t len, int64_t off)
{
        while (len > 0) {
                ssize_t n = pwrite(fd, buf, len, (off_t) off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t) n;
                off += n;
        }
        return 0;
}

static int copy_data(struct unpacker *u, int fd, const char *path, int64_t size, struct ossb_error **err)
{
        int64_t end = 0;
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t off;
                int r = archive_read_data_block(u->a, &buf, &len, &off);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN && !u->s.failed && u->s.in_eof)
                        return ossb_error_set(err, -EBADMSG, "the layer is damaged: its tar stream ends inside the "
                                                             "data of `%s` (%s)", path,
                                              archive_error_string(u->a) ? archive_error_string(u->a) : "truncated");
                if (r < ARCHIVE_WARN)
                        return archive_fail(u, "cannot read file data", err);
                r = write_all_at(fd, buf, len, off);
                if (r < 0)
                        return ossb_error_set(err, r, "cannot write `%s`: %s", path, strerror(-r));
                if (off + (int64_t) len > end)
                        end = off + (int64_t) len;
        }
        if (end < size && ftruncate(fd, (off_t) size) < 0) /* a sparse file ending in a hole */
                return ossb_error_set(err, -errno, "cannot extend `%s`: %m", path);
        return 0;
}

static int make_file(struct unpacker *u, struct archive_entry *e, int pfd, const char *base, const char *path,
                     struct ossb_error **err)
{
        bool kept;
        int r = clear_existing(pfd, base, false, &kept);
        if (r < 0)
                return ossb_error_set(err, r, "cannot replace `%s`: %s", path, strerror(-r));
        _cleanup_close_ int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", path);
        r = copy_data(u, fd, path, archive_entry_size(e), err);
        if (r < 0)
                return r;
        struct timespec ts[2];
        entry_times(e, ts);
        set_owner(u, e, fd, -1, NULL);
        if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
                return ossb_error_set(err, -errno, "cannot chmod `%s`: %m", path);
        set_xattrs(u, e, fd, -1, NULL);
        (void) futimens(fd, ts);
        return 0;
}

static int make_dir(struct unpacker *u, struct archive_entry *e, int pfd, const char *base, const char *path,
                    struct ossb_error **err)
{
        bool kept;
        bool hide = ovl_replaces_nondir(u, pfd, base);
        int r = clear_existing(pfd, base, true, &kept);
        if (r < 0)
                return ossb_error_set(err, r, "cannot replace `%s`: %s", path, strerror(-r));
        if (!kept && mkdirat(pfd, base, 0700) < 0)
                return ossb_error_set(err, -errno, "cannot create directory `%s`: %m", path);
        _cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open directory `%s`: %m", path);
        if (hide && (r = ovl_opaque_fd(u, fd, path, err)) < 0)
                return r;
        set_owner(u, e, fd, -1, NULL);
        set_xattrs(u, e, fd, -1, NULL);
        if (remember_dir(u, path, e) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

static int make_symlink(struct unpacker *u, struct archive_entry *e, int pfd, const char *base, const char *path,
                        struct ossb_error **err)
{
        const char *target = archive_entry_symlink(e);
        bool kept;
        if (!target || !*target)
                return ossb_error_set(err, -EBADMSG, "symlink `%s` has no target", path);
        int r = clear_existing(pfd, base, false, &kept);
        if (r < 0)
                return ossb_error_set(err, r, "cannot replace `%s`: %s", path, strerror(-r));
        if (symlinkat(target, pfd, base) < 0)
                return ossb_error_set(err, -errno, "cannot create symlink `%s`: %m", path);
        struct timespec ts[2];
        entry_times(e, ts);
        set_owner(u, e, -1, pfd, base);
        set_xattrs(u, e, -1, pfd, base);
        (void) utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        return 0;
}

static int link_fd(int tfd, int pfd, const char *base)
{
        if (linkat(tfd, "", pfd, base, AT_EMPTY_PATH) == 0)
                return 0;
        if (errno != ENOENT && errno != EPERM && errno != EINVAL)
                return -errno;
        /* without CAP_DAC_READ_SEARCH: through the fd's /proc entry */
        char p[64];
        snprintf(p, sizeof(p), "/proc/self/fd/%d", tfd);
        return linkat(AT_FDCWD, p, pfd, base, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

static int make_hardlink(struct unpacker *u, struct archive_entry *e, int pfd, const char *base, const char *path,
                         struct ossb_error **err)
{
        _cleanup_free_ char *target = NULL;
        struct stat st;
        bool kept;
        int r = clean_name(archive_entry_hardlink(e), &target);
        if (r == -EPERM)
                return ossb_error_set(err, -EPERM, "hard link `%s` points outside the layer (to `%s`)", path,
                                      archive_entry_hardlink(e));
        if (r < 0)
                return ossb_error_set(err, r, "hard link `%s`: invalid target: %s", path, strerror(-r));
        if (!*target)
                return ossb_error_set(err, -EPERM, "hard link `%s` points to the root directory", path);
        if (streq(target, path))
                return 0; /* a link to itself: nothing to do */
        _cleanup_close_ int tfd = ossb_open_in_root(u->rootfd, target, O_PATH | O_NOFOLLOW, 0);
        if (tfd < 0)
                return ossb_error_set(err, tfd, "hard link `%s`: cannot open its target `%s`: %s", path, target,
                                      strerror(-tfd));
        if (fstat(tfd, &st) < 0)
                return ossb_error_set(err, -errno, "hard link `%s`: cannot stat `%s`: %m", path, target);
        if (S_ISDIR(st.st_mode))
                return ossb_error_set(err, -EPERM, "hard link `%s` points to a directory (`%s`)", path, target);
        r = clear_existing(pfd, base, false, &kept);
        if (r < 0)
                return ossb_error_set(err, r, "cannot replace `%s`: %s", path, strerror(-r));
        r = link_fd(tfd, pfd, base);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create hard link `%s` to `%s`: %s", path, target, strerror(-r));
        return 0;
}

/* Character and block devices, FIFOs.  *ret_made is false for a device that may not be made. */
static int make_node(struct unpacker *u, struct archive_entry *e, int pfd, const char *base, const char *path,
                     bool *ret_made, struct ossb_error **err)
{
        mode_t type = archive_entry_filetype(e);
        bool kept;
        int r = clear_existing(pfd, base, false, &kept);
        if (r < 0)
                return ossb_error_set(err, r, "cannot replace `%s`: %s", path, strerror(-r));
        *ret_made = false;
        if (type == AE_IFIFO)
                r = mkfifoat(pfd, base, 0600);
        else
                r = mknodat(pfd, base, type | 0600, makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e)));
        if (r < 0 && type != AE_IFIFO && (errno == EPERM || errno == EACCES)) {
                u->stats.devices_skipped++;
                return 0;
        }
        if (r < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", path);
        struct timespec ts[2];
        entry_times(e, ts);
        set_owner(u, e, -1, pfd, base);
        if (fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0) < 0)
                return ossb_error_set(err, -errno, "cannot chmod `%s`: %m", path);
        set_xattrs(u, e, -1, pfd, base);
        (void) utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        *ret_made = true;
        return 0;
}

/* ---- whiteouts ---- */

/* Remove from the directory `dfd` (at `dirpath`) everything lower layers put there: what this
 * layer created stays, and directories holding something of this layer are visited. */
static int remove_lower(struct unpacker *u, int dfd, const char *dirpath)
{
        _cleanup_strv_free_ char **names = NULL;
        int r = 0;

        int copy = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return -errno;
        DIR *d = fdopendir(copy);
        if (!d) {
                r = -errno;
                close(copy);
                return r;
        }
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        r = ossb_strv_push(&names, de->d_name);
        closedir(d);
        for (size_t i = 0; r >= 0 && names && names[i]; i++) {
                _cleanup_free_ char *child = child_path(dirpath, names[i]);
                if (!child)
                        return -ENOMEM;
                if (!set_get(&u->set, child)) {
                        r = ossb_rm_rf_at(dfd, names[i]);
                        continue;
                }
                _cleanup_close_ int cfd = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd >= 0)
                        r = remove_lower(u, cfd, child);
        }
        return r;
}

static int opaque(struct unpacker *u, const char *dir, struct ossb_error **err)
{
        _cleanup_close_ int pfd = -1;
        int r = open_dir(u, dir, true, &pfd, err);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return ossb_error_set(err, -errno, "cannot open directory `%s`: %m", dir);
        if (u->o->overlay_format)
                return ovl_opaque_fd(u, dfd, dir, err);
        r = remove_lower(u, dfd, dir);
        if (r < 0)
                return ossb_error_set(err, r, "cannot empty the opaque directory `%s`: %s", dir, strerror(-r));
        return 0;
}

static int whiteout(struct unpacker *u, const char *path, const char *dir, const char *base, struct ossb_error **err)
{
        const char *victim = base + strlen(WHITEOUT_PREFIX);
        _cleanup_free_ char *target = NULL;
        _cleanup_close_ int pfd = -1;
        int r;

        if (streq(base, WHITEOUT_OPAQUE))
                return opaque(u, dir, err);
        if (!strncmp(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)))
                return 0; /* aufs metadata (.wh..wh.plnk, .wh..wh..tmp): not content */
        if (!*victim || streq(victim, ".") || streq(victim, ".."))
                return ossb_error_set(err, -EPERM, "invalid whiteout `%s`", path);
        if (u->o->overlay_format)
                return ovl_whiteout(u, dir, victim, err);
        target = child_path(dir, victim);
        if (!target)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = open_dir(u, dir, false, &pfd, NULL);
        if (r == -ENOENT || r == -ENOTDIR)
                return 0; /* nothing there to hide */
        if (r < 0)
                return ossb_error_set(err, r, "cannot open directory `%s`: %s", dir, strerror(-r));
        if (set_get(&u->set, target)) {
                /* whiteouts hide lower layers only: this layer's own entry stays, and of a
                 * directory holding entries of this layer only what lower layers left goes */
                _cleanup_close_ int dfd = openat(pfd, victim, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                r = dfd >= 0 ? remove_lower(u, dfd, target) : 0;
        } else
                r = ossb_rm_rf_at(pfd, victim);
        if (r < 0)
                return ossb_error_set(err, r, "cannot remove `%s`: %s", target, strerror(-r));
        return 0;
}

static int apply_entry(struct unpacker *u, struct archive_entry *e, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int pfd = -1;
        const char *raw = archive_entry_pathname(e);
        bool made = true;
        int r;

        u->stats.entries++;
        if (!raw)
                return ossb_error_set(err, -EBADMSG, "an entry has no name (or one that cannot be converted)");
        r = clean_name(raw, &path);
        if (r == -EPERM)
                return ossb_error_set(err, -EPERM, "entry `%s` points outside the destination", raw);
        if (r < 0)
                return ossb_error_set(err, r, "entry `%.200s`: %s", raw, strerror(-r));
        if (!*path)
                return 0; /* the root directory itself: its metadata is the caller's */
        char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        _cleanup_free_ char *dir = strndup(path, slash ? (size_t) (slash - path) : 0);
        if (!dir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)))
                r = whiteout(u, path, dir, base, err);
        else {
                r = open_dir(u, dir, true, &pfd, err);
                if (r >= 0 && archive_entry_hardlink(e))
                        r = make_hardlink(u, e, pfd, base, path, err);
                else if (r >= 0) {
                        switch (archive_entry_filetype(e)) {
                        case AE_IFREG:
                                r = make_file(u, e, pfd, base, path, err);
                                break;
                        case AE_IFDIR:
                                r = make_dir(u, e, pfd, base, path, err);
                                break;
                        case AE_IFLNK:
                                r = make_symlink(u, e, pfd, base, path, err);
                                break;
                        case AE_IFCHR:
                        case AE_IFBLK:
                        case AE_IFIFO:
                                r = make_node(u, e, pfd, base, path, &made, err);
                                break;
                        default:
                                r = ossb_error_set(err, -EBADMSG, "entry `%s` has an unsupported type (0%o)", path,
                                                   (unsigned) archive_entry_filetype(e));
                        }
                }
                if (r >= 0 && made && mark_created(u, path) < 0)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        return r; /* every message above names the path */
}

static int read_entries(struct unpacker *u, struct ossb_error **err)
{
        struct archive_entry *e;
        for (;;) {
                int r = archive_read_next_header(u->a, &e);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN || r == ARCHIVE_RETRY)
                        return archive_fail(u, "cannot read the tar stream", err);
                r = apply_entry(u, e, err);
                if (r < 0)
                        return r;
        }
}

static void unpacker_clear(struct unpacker *u)
{
        if (u->a)
                archive_read_free(u->a);
        if (u->rootfd >= 0)
                close(u->rootfd);
        stream_close(&u->s);
        set_free(&u->set);
        for (size_t i = 0; i < u->n_dirs; i++)
                free(u->dirs[i].path);
        free(u->dirs);
}

static int unpacker_open(struct unpacker *u, int blob_fd, const char *dest, struct ossb_error **err)
{
        int r = ossb_mkdir_p(dest, 0755);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create `%s`: %s", dest, strerror(-r));
        u->rootfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u->rootfd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", dest);
        r = stream_open(&u->s, blob_fd, u->name);
        if (r < 0)
                return stream_report(&u->s, r, err);
        u->a = archive_read_new();
        if (!u->a)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (archive_read_support_format_tar(u->a) != ARCHIVE_OK ||
            archive_read_support_format_empty(u->a) != ARCHIVE_OK ||
            archive_read_open(u->a, &u->s, NULL, read_cb, NULL) != ARCHIVE_OK)
                return archive_fail(u, "cannot read the layer as a tar stream", err);
        return 0;
}

static int check_diff_id(struct unpacker *u, const char *expected, char actual[OSSB_DIGEST_STR_LEN + 1],
                         struct ossb_error **err)
{
        ossb_sha256_final(u->s.hash, actual);
        if (expected && !streq(expected, actual))
                return ossb_error_set(err, -EBADMSG, "DiffID mismatch: expected %s, the uncompressed layer hashes to %s",
                                      expected, actual);
        return 0;
}

int ossb_layer_unpack(int blob_fd, const char *name, const char *dest, const char *expected_diff_id,
                      char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_unpack_stats *ret_stats,
                      struct ossb_error **err)
{
        return ossb_layer_unpack_ex(blob_fd, name, dest, NULL, expected_diff_id, ret_diff_id, ret_stats, err);
}

int ossb_layer_unpack_ex(int blob_fd, const char *name, const char *dest, const struct ossb_unpack_opts *opts,
                         const char *expected_diff_id, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1],
                         struct ossb_unpack_stats *ret_stats, struct ossb_error **err)
{
        static const struct ossb_unpack_opts defaults = { 0 };
        struct unpacker u = { .name = name ? name : "(unnamed)", .rootfd = -1, .o = opts ? opts : &defaults };
        u.opq_xattr = u.o->userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
        char actual[OSSB_DIGEST_STR_LEN + 1];
        int r;

        if (expected_diff_id && !ossb_digest_is_valid(expected_diff_id))
                return ossb_error_set(err, -EINVAL, "layer %s: invalid expected DiffID `%.80s`", u.name,
                                      expected_diff_id);
        locale_t old = ossb_tar_locale_enter(); /* names as bytes, whatever the process locale */
        r = unpacker_open(&u, blob_fd, dest, err);
        if (r >= 0)
                r = read_entries(&u, err);
        if (r >= 0) {
                r = stream_drain(&u.s);
                if (r < 0)
                        stream_report(&u.s, r, err);
        }
        if (r >= 0)
                apply_dirs(&u);
        if (r >= 0)
                r = check_diff_id(&u, expected_diff_id, actual, err);
        ossb_tar_locale_leave(old);
        if (r >= 0) {
                if (ret_diff_id)
                        memcpy(ret_diff_id, actual, sizeof(actual));
                if (ret_stats) {
                        u.stats.bytes = u.s.bytes;
                        *ret_stats = u.stats;
                }
        }
        unpacker_clear(&u);
        return r < 0 ? ossb_error_wrap(err, "cannot unpack layer %s into `%s`", u.name, dest) : 0;
}
