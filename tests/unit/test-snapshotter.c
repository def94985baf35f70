/* tests/unit/test-snapshotter.c - snapshotter/: one step's worth of changes (files created,
 * modified, deleted; a lower directory deleted, replaced, renamed with mv; a file renamed;
 * chmod/chown of a lower file; a chmod that changes nothing; a hard link to a lower file;
 * xattrs; fifos, devices, symlinks; a file replaced by a directory and back; the executor's
 * mount points excluded) made through the overlay mount and on the native root, diffed into a
 * layer that is checked by unpacking it onto a copy of the lower tree and comparing with the
 * step's view (types, modes, owners, sizes, contents, link targets, xattrs, hard links,
 * mtimes), then committed and the root compared the same way.  Also: the entry order and the
 * whiteout/opaque entries of the layer, empty steps, a commit across file systems (tmpfs
 * scratch), root paths with ':' and ',', an overlay mount in a user namespace (userxattr),
 * backend choice, and errors.  Overlay parts need root and are skipped otherwise. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "oci/oci.h"
#include "oci/unpack.h"
#include "fuse/fusefs.h"
#include "snapshotter/layerstore.h"
#include "snapshotter/snapshotter.h"
#include "snapshotter/stagefs.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-snap-XXXXXX";
static struct ossb_store *store;
static bool is_root;      /* real root: devices, owners, trusted.* xattrs */
static bool can_overlay;  /* an overlay mounts here (as root, or in a user namespace with userxattr) */
static bool can_fuse;     /* ossb's FUSE filesystem mounts here */
static bool userxattr;    /* in a user namespace: mounts need userxattr */
static bool user_xattrs;

static char *pj(const char *a, const char *b)
{
        return ossb_path_join(a, b);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

static int put(const char *dir, const char *name, const char *data, mode_t mode)
{
        _cleanup_free_ char *p = pj(dir, name);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0 || ossb_write_all(fd, data, strlen(data)) < 0)
                return -1;
        return fchmod(fd, mode);
}

static int append(const char *dir, const char *name, const char *data)
{
        _cleanup_free_ char *p = pj(dir, name);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
        return fd < 0 ? -1 : ossb_write_all(fd, data, strlen(data));
}

static int mkd(const char *dir, const char *name, mode_t mode)
{
        _cleanup_free_ char *p = pj(dir, name);
        return mkdir(p, mode) < 0 ? -1 : chmod(p, mode);
}

static int sh(const char *cmd)
{
        int r = system(cmd);
        return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int op(const char *dir, int (*fn)(const char *), const char *name)
{
        _cleanup_free_ char *p = pj(dir, name);
        return fn(p);
}

static int unlink_p(const char *p)
{
        return unlink(p);
}

static int rmrf_p(const char *p)
{
        return ossb_rm_rf(p);
}

static int stat_at(const char *dir, const char *name, struct stat *st)
{
        _cleanup_free_ char *p = pj(dir, name);
        return lstat(p, st);
}

/* ---- tree listings: one line per path, in walk order ---- */

/* Hard links are checked apart (same_inode): an overlay view whose upper is on another file
 * system does not always report one inode number for the names of a copied-up file. */

struct lister {
        struct ossb_strbuf out;
        const char *const *skip;
};

static bool skipped(const struct lister *l, const char *rel)
{
        for (size_t i = 0; l->skip && l->skip[i]; i++) {
                size_t n = strlen(l->skip[i]);
                if (strncmp(rel, l->skip[i], n) == 0 && (rel[n] == '\0' || rel[n] == '/'))
                        return true;
        }
        return false;
}

static int list_xattrs(struct lister *l, const char *abs)
{
        char names[4096];
        ssize_t len = llistxattr(abs, names, sizeof(names));
        if (len < 0)
                return errno == ENOTSUP ? 0 : -1;
        _cleanup_strv_free_ char **v = NULL;
        for (ssize_t off = 0; off < len; off += (ssize_t) strlen(names + off) + 1) {
                const char *n = names + off;
                if (strncmp(n, "trusted.overlay.", 16) == 0 || strncmp(n, "user.overlay.", 13) == 0 ||
                    streq(n, "security.selinux"))
                        continue;
                char val[1024];
                ssize_t vl = lgetxattr(abs, n, val, sizeof(val));
                if (vl < 0)
                        return -1;
                _cleanup_free_ char *line = fmt(" %s=%.*s", n, (int) vl, val);
                if (!line || ossb_strv_push(&v, line) < 0)
                        return -1;
        }
        for (size_t i = 0; v && v[i]; i++)
                for (size_t j = i + 1; v[j]; j++)
                        if (strcmp(v[i], v[j]) > 0) {
                                char *t = v[i];
                                v[i] = v[j];
                                v[j] = t;
                        }
        for (size_t i = 0; v && v[i]; i++)
                ossb_strbuf_append(&l->out, v[i]);
        return 0;
}

static int list_content(struct lister *l, const char *abs)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_read_file(abs, 64 << 20, &data, &len, NULL) < 0 || ossb_sha256_digest(data, len, digest) < 0)
                return -1;
        return ossb_strbuf_appendf(&l->out, " %zu %.19s", len, digest);
}

static int list_one(struct lister *l, const char *abs, const char *rel, const struct stat *st)
{
        ossb_strbuf_appendf(&l->out, "%s %o %o %u:%u", rel, st->st_mode & S_IFMT, st->st_mode & 07777,
                            st->st_uid, st->st_gid);
        if (!S_ISDIR(st->st_mode))
                ossb_strbuf_appendf(&l->out, " t=%lld", (long long) st->st_mtim.tv_sec);
        if (S_ISREG(st->st_mode) && list_content(l, abs) < 0)
                return -1;
        if (S_ISLNK(st->st_mode)) {
                char target[4096];
                ssize_t n = readlink(abs, target, sizeof(target) - 1);
                if (n < 0)
                        return -1;
                ossb_strbuf_appendf(&l->out, " -> %.*s", (int) n, target);
        }
        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
                ossb_strbuf_appendf(&l->out, " %u,%u", major(st->st_rdev), minor(st->st_rdev));
        if (list_xattrs(l, abs) < 0)
                return -1;
        return ossb_strbuf_append_c(&l->out, '\n');
}

static int list_dir(struct lister *l, const char *abs, const char *rel)
{
        DIR *d = opendir(abs);
        if (!d)
                return -1;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ossb_strv_push(&names, de->d_name);
        closedir(d);
        size_t n = ossb_strv_length(names);
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (strcmp(names[i], names[j]) > 0) {
                                char *t = names[i];
                                names[i] = names[j];
                                names[j] = t;
                        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *cabs = pj(abs, names[i]);
                _cleanup_free_ char *crel = *rel ? fmt("%s/%s", rel, names[i]) : strdup(names[i]);
                struct stat st;
                if (!cabs || !crel || lstat(cabs, &st) < 0)
                        return -1;
                if (skipped(l, crel) || S_ISSOCK(st.st_mode))
                        continue; /* sockets cannot be stored in a layer */
                if (list_one(l, cabs, crel, &st) < 0)
                        return -1;
                if (S_ISDIR(st.st_mode) && list_dir(l, cabs, crel) < 0)
                        return -1;
        }
        return 0;
}

static char *tree_list(const char *root, const char *const *skip)
{
        struct lister l = { .out = OSSB_STRBUF_INIT, .skip = skip };
        int r = list_dir(&l, root, "");
        if (r < 0) {
                ossb_strbuf_free(&l.out);
                return NULL;
        }
        return ossb_strbuf_steal(&l.out);
}

/* Print the first differing line of two listings. */
static bool same_listing(const char *what, const char *got, const char *want)
{
        if (got && want && streq(got, want))
                return true;
        if (!got || !want) {
                fprintf(stderr, "# %s: a listing failed\n", what);
                return false;
        }
        const char *g = got, *w = want;
        while (*g && *w) {
                const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
                if (!ge || !we || ge - g != we - w || memcmp(g, w, (size_t) (ge - g)) != 0) {
                        fprintf(stderr, "# %s differs:\n#   got      %.*s\n#   expected %.*s\n", what,
                                ge ? (int) (ge - g) : (int) strlen(g), g, we ? (int) (we - w) : (int) strlen(w), w);
                        return false;
                }
                g = ge + 1;
                w = we + 1;
        }
        fprintf(stderr, "# %s differs: got %s lines, expected %s lines (%s / %s)\n", what, *g ? "more" : "fewer",
                *w ? "more" : "fewer", g, w);
        return false;
}

/* ---- layers: the entries, unpacking ---- */

struct layer {
        bool empty;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
        int64_t size;
        char **names; /* entry paths, in order; "H:" prefix for hard links */
};

static void layer_clear(struct layer *l)
{
        ossb_strv_free(l->names);
        l->names = NULL;
}

static int read_entries(struct layer *l)
{
        int fd = -1;
        if (ossb_store_open_blob(store, l->digest, &fd, NULL) < 0)
                return -1;
        struct archive *a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        int r = archive_read_open_fd(a, fd, 65536) == ARCHIVE_OK ? 0 : -1;
        struct archive_entry *e;
        while (r == 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                _cleanup_free_ char *n = fmt("%s%.*s", archive_entry_hardlink(e) ? "H:" : "",
                                             (int) (strlen(name) - (name[strlen(name) - 1] == '/')), name);
                if (!n || ossb_strv_push(&l->names, n) < 0)
                        r = -1;
        }
        archive_read_free(a);
        close(fd);
        return r;
}

static int do_diff(struct ossb_snapshot *s, struct layer *l)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_GZIP, .level = -1, .source_date_epoch = -1 };
        _cleanup_error_ struct ossb_error *err = NULL;
        *l = (struct layer) { 0 };
        int r = ossb_snapshot_diff(s, store, &opts, &l->empty, l->digest, &l->size, l->diff_id, &err);
        if (r < 0) {
                if (r != -EINVAL)
                        fprintf(stderr, "# diff: %s\n", err && err->msg ? err->msg : "?");
                return r;
        }
        return l->empty ? 0 : read_entries(l);
}

static int unpack_onto(const struct layer *l, const char *dest)
{
        int fd = -1;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_store_open_blob(store, l->digest, &fd, &err) < 0)
                return -1;
        int r = ossb_layer_unpack(fd, l->digest, dest, l->diff_id, NULL, NULL, &err);
        close(fd);
        if (r < 0)
                fprintf(stderr, "# unpack: %s\n", err && err->msg ? err->msg : "?");
        return r;
}

static bool same_inode(const char *dir, const char *a, const char *b)
{
        struct stat sa, sb;
        return stat_at(dir, a, &sa) == 0 && stat_at(dir, b, &sb) == 0 && sa.st_ino == sb.st_ino &&
               sa.st_dev == sb.st_dev;
}

static bool has_entry(const struct layer *l, const char *name)
{
        return ossb_strv_contains(l->names, name);
}

/* The walk-order key of a layer path's last component: a whiteout sorts as the name it
 * deletes, the opaque marker first. */
static const char *order_key(const char *c, size_t *len)
{
        if (*len == strlen(".wh..wh..opq") && strncmp(c, ".wh..wh..opq", *len) == 0) {
                *len = 0;
                return "";
        }
        if (*len > 4 && strncmp(c, ".wh.", 4) == 0) {
                *len -= 4;
                return c + 4;
        }
        return c;
}

static int walk_cmp(const char *a, const char *b)
{
        if (strncmp(a, "H:", 2) == 0)
                a += 2;
        if (strncmp(b, "H:", 2) == 0)
                b += 2;
        for (;;) {
                const char *ae = strchr(a, '/'), *be = strchr(b, '/');
                size_t al = ae ? (size_t) (ae - a) : strlen(a), bl = be ? (size_t) (be - b) : strlen(b);
                const char *ak = ae ? a : order_key(a, &al);
                const char *bk = be ? b : order_key(b, &bl);
                int c = memcmp(ak, bk, al < bl ? al : bl);
                if (c == 0 && al != bl)
                        c = al < bl ? -1 : 1;
                if (c != 0)
                        return c;
                if (!ae || !be)
                        return ae ? 1 : be ? -1 : 0;
                a = ae + 1;
                b = be + 1;
        }
}

static bool in_walk_order(const struct layer *l)
{
        for (size_t i = 0; l->names && l->names[i] && l->names[i + 1]; i++)
                if (walk_cmp(l->names[i], l->names[i + 1]) >= 0) {
                        fprintf(stderr, "# layer order: `%s` before `%s`\n", l->names[i], l->names[i + 1]);
                        return false;
                }
        return true;
}

/* ---- the scenario ---- */

static int set_time(const char *dir, const char *name, time_t t)
{
        _cleanup_free_ char *p = pj(dir, name);
        struct timespec ts[2] = { { .tv_sec = t }, { .tv_sec = t } };
        return utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
}

static int make_lower(const char *d)
{
        char big[200000];
        for (size_t i = 0; i < sizeof(big) - 1; i++)
                big[i] = (char) ('a' + (i * 7919) % 26);
        big[sizeof(big) - 1] = '\0';
        if (mkd(d, "", 0755) < 0 || put(d, "a.txt", "alpha\n", 0644) < 0 || put(d, "big.bin", big, 0644) < 0 ||
            put(d, "suid", "setuid\n", 04755) < 0 || put(d, "h1", "linked\n", 0644) < 0 ||
            put(d, "mv_me", "moving\n", 0640) < 0 ||
            put(d, "chm", "chmod me\n", 0644) < 0 || put(d, "same", "same\n", 0644) < 0 ||
            put(d, "del_me", "bye\n", 0644) < 0 || put(d, "file2dir", "f\n", 0644) < 0)
                return -1;
        _cleanup_free_ char *h1 = pj(d, "h1"), *h2 = pj(d, "h2"), *ln = pj(d, "link"), *ff = pj(d, "fifo");
        if (link(h1, h2) < 0 || symlink("a.txt", ln) < 0 || mkfifo(ff, 0600) < 0)
                return -1;
        if (mkd(d, "d1", 0755) < 0 || put(d, "d1/f1", "f1\n", 0644) < 0 || mkd(d, "d1/sub", 0750) < 0 ||
            put(d, "d1/sub/f2", "f2\n", 0600) < 0 || mkd(d, "d2", 0755) < 0 || put(d, "d2/x", "x\n", 0644) < 0 ||
            mkd(d, "d2/y", 0755) < 0 || put(d, "d2/y/z", "z\n", 0644) < 0 || mkd(d, "d3", 0755) < 0 ||
            put(d, "d3/old1", "o1\n", 0644) < 0 || put(d, "d3/old2", "o2\n", 0644) < 0 ||
            mkd(d, "ren", 0755) < 0 || put(d, "ren/r1", "r1\n", 0644) < 0 || mkd(d, "ren/rsub", 0700) < 0 ||
            put(d, "ren/rsub/r2", "r2\n", 0644) < 0 || mkd(d, "etc", 0755) < 0 ||
            put(d, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644) < 0 || mkd(d, "keep", 0755) < 0 ||
            put(d, "keep/k", "k\n", 0644) < 0 || mkd(d, "dir2file", 0755) < 0 ||
            put(d, "dir2file/child", "c\n", 0644) < 0)
                return -1;
        if (user_xattrs) {
                _cleanup_free_ char *p = pj(d, "a.txt"), *xd = pj(d, "xd");
                if (lsetxattr(p, "user.x", "1", 1, 0) < 0 || mkdir(xd, 0755) < 0 ||
                    lsetxattr(xd, "user.a", "a", 1, 0) < 0 || lsetxattr(xd, "user.b", "b", 1, 0) < 0)
                        return -1;
        }
        if (put(d, "to_sock", "s\n", 0644) < 0 || mkd(d, "modedir", 0755) < 0 || put(d, "modedir/m", "m\n", 0644) < 0)
                return -1;
        if (is_root) {
                _cleanup_free_ char *nul = pj(d, "nul"), *t = pj(d, "keep/k");
                if (mknod(nul, S_IFCHR | 0666, makedev(1, 3)) < 0 || lsetxattr(t, "trusted.t", "v", 1, 0) < 0)
                        return -1;
                if (set_time(d, "nul", 1500000000) < 0)
                        return -1;
        }
        /* tar-made files have whole-second mtimes: "same" is compared by content */
        const char *const names[] = { "a.txt", "big.bin", "suid", "h1", "mv_me", "chm", "same", "del_me", "link",
                                      "fifo", "d1/f1", "d1/sub/f2", "d2/x", "etc/passwd", "keep/k", "file2dir",
                                      "etc", "d1/sub", "d1", "keep", "ren" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (set_time(d, names[i], 1500000000 + (time_t) i) < 0)
                        return -1;
        return 0;
}

static int make_socket(const char *dir, const char *name)
{
        _cleanup_free_ char *p = pj(dir, name);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!p || strlen(p) >= sizeof(sa.sun_path))
                return -1;
        memcpy(sa.sun_path, p, strlen(p) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd < 0 ? -1 : bind(fd, (struct sockaddr *) &sa, sizeof(sa));
}

/* The step: `v` is the view; overlay: renaming a lower directory must give EXDEV. */
static int modify(const char *v, bool overlay)
{
        if (put(v, "new.txt", "new\n", 0640) < 0 || append(v, "a.txt", "more\n") < 0 ||
            op(v, unlink_p, "del_me") < 0 || op(v, rmrf_p, "d2") < 0 || op(v, rmrf_p, "d3") < 0 ||
            mkd(v, "d3", 0711) < 0 || put(v, "d3/new", "n\n", 0644) < 0 || put(v, "d1/sub/f2", "F2\n", 0600) < 0)
                return -1;
        _cleanup_free_ char *mv1 = pj(v, "mv_me"), *mv2 = pj(v, "mv_me2"), *r1 = pj(v, "ren"), *r2 = pj(v, "ren2");
        if (rename(mv1, mv2) < 0)
                return -1;
        if (overlay && (rename(r1, r2) == 0 || errno != EXDEV)) {
                fprintf(stderr, "# rename of a lower directory did not give EXDEV\n");
                return -1;
        }
        _cleanup_free_ char *cmd = fmt("mv '%s' '%s'", r1, r2);
        if (!cmd || sh(cmd) != 0)
                return -1;
        _cleanup_free_ char *chm = pj(v, "chm"), *same = pj(v, "same"), *suid = pj(v, "suid");
        _cleanup_free_ char *slink = pj(v, "suid_link"), *f1 = pj(v, "d1/f1"), *fifo = pj(v, "newfifo");
        _cleanup_free_ char *nl = pj(v, "newlink"), *dev = pj(v, "newdev");
        if (chmod(chm, 0600) < 0 || chmod(same, 0644) < 0 || link(suid, slink) < 0 || mkfifo(fifo, 0644) < 0 ||
            symlink("d1/f1", nl) < 0)
                return -1;
        if (is_root && (chown(chm, 1000, 1000) < 0 || chmod(chm, 0600) < 0 ||
                        mknod(dev, S_IFCHR | 0600, makedev(1, 5)) < 0))
                return -1;
        _cleanup_free_ char *xd = pj(v, "xd");
        if (user_xattrs && (lsetxattr(f1, "user.y", "2", 1, 0) < 0 || lsetxattr(xd, "user.a", "A", 1, 0) < 0 ||
                            lsetxattr(xd, "user.c", "c", 1, 0) < 0))
                return -1;
        _cleanup_free_ char *md = pj(v, "modedir");
        if (chmod(md, 0700) < 0 || (is_root && chown(md, 7, 7) < 0))
                return -1;
        if (op(v, unlink_p, "to_sock") < 0 || make_socket(v, "to_sock") < 0 || make_socket(v, "new_sock") < 0)
                return -1;
        if (op(v, unlink_p, "file2dir") < 0 || mkd(v, "file2dir", 0755) < 0 || put(v, "file2dir/inner", "i\n", 0644) < 0 ||
            op(v, rmrf_p, "dir2file") < 0 || put(v, "dir2file", "now a file\n", 0644) < 0 ||
            mkd(v, "emptydir", 0700) < 0)
                return -1;
        /* the executor's mount points */
        if (put(v, "etc/hosts", "", 0644) < 0 || mkd(v, "run", 0755) < 0 || mkd(v, "run/secrets", 0755) < 0 ||
            put(v, "run/secrets/token", "", 0600) < 0)
                return -1;
        return 0;
}

static const char *const mount_points[] = { "etc/hosts", "run/secrets/token", NULL };
static const char *const skip_mount_points[] = { "etc/hosts", "run", NULL };

static int exclude_all(struct ossb_snapshot *s)
{
        for (size_t i = 0; mount_points[i]; i++)
                if (ossb_snapshot_exclude(s, mount_points[i], NULL) < 0)
                        return -1;
        return ossb_snapshot_exclude(s, "/etc//hosts/", NULL); /* the same, spelled differently */
}

static int copy_tree(const char *from, const char *to)
{
        _cleanup_free_ char *cmd = fmt("cp -a '%s' '%s'", from, to);
        return cmd ? sh(cmd) : -1;
}

/* The whole scenario on one backend; scratch may be on another file system. */
static void scenario(enum ossb_snapshot_backend backend, const char *name, const char *scratch_parent)
{
        _cleanup_free_ char *root = fmt("%s/%s-root:a,b", tmpdir, name), *base = fmt("%s/%s-base", tmpdir, name);
        _cleanup_free_ char *scratch = fmt("%s/%s-scratch", scratch_parent, name);
        _cleanup_free_ char *expected = NULL, *unpacked = NULL, *committed = NULL;
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        struct stat etc_before, etc_after;
        _cleanup_error_ struct ossb_error *err = NULL;

        ASSERT(root && base && scratch);
        ASSERT(make_lower(root) == 0);
        ASSERT(copy_tree(root, base) == 0);
        ASSERT(stat_at(root, "etc", &etc_before) == 0);
        int r = ossb_snapshot_new(backend, root, scratch, userxattr, &s, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0);
        ASSERT(ossb_snapshot_backend(s) == backend);
        ASSERT(modify(ossb_snapshot_path(s), backend == OSSB_SNAPSHOT_OVERLAY) == 0);
        ASSERT(exclude_all(s) == 0);
        expected = tree_list(ossb_snapshot_path(s), skip_mount_points);
        ASSERT(expected);

        r = do_diff(s, &l);
        ASSERT(r == 0);
        ASSERT(!l.empty);
        for (size_t i = 0; secure_getenv("OSSB_TEST_VERBOSE") && l.names[i]; i++)
                fprintf(stderr, "# %s layer: %s\n", name, l.names[i]);
        ASSERT(in_walk_order(&l));
        ASSERT(has_entry(&l, ".wh.del_me") && has_entry(&l, ".wh.d2") && !has_entry(&l, "d2/.wh.x"));
        ASSERT(has_entry(&l, ".wh.mv_me") && has_entry(&l, "mv_me2") && has_entry(&l, ".wh.ren"));
        ASSERT(has_entry(&l, "ren2/rsub/r2") && has_entry(&l, "d1") && has_entry(&l, "d1/sub/f2"));
        ASSERT(!has_entry(&l, "d1/sub/.wh.f2"));
        ASSERT(!has_entry(&l, "etc") && !has_entry(&l, "etc/hosts") && !has_entry(&l, "run"));
        ASSERT(!has_entry(&l, "run/secrets") && !has_entry(&l, "keep") && !has_entry(&l, "h1"));
        ASSERT(has_entry(&l, "suid") && has_entry(&l, "H:suid_link") && has_entry(&l, "emptydir"));
        ASSERT(has_entry(&l, "file2dir/inner") && has_entry(&l, "dir2file") && has_entry(&l, "newfifo"));
        ASSERT(has_entry(&l, ".wh.to_sock") && !has_entry(&l, "to_sock") && !has_entry(&l, "new_sock"));
        ASSERT(!user_xattrs || has_entry(&l, "xd"));
        ASSERT(has_entry(&l, "modedir") && !has_entry(&l, "modedir/m"));
        if (backend == OSSB_SNAPSHOT_OVERLAY) {
                ASSERT(has_entry(&l, "d3/.wh..wh..opq"));
                ASSERT(!has_entry(&l, "same"));
        } else {
                ASSERT(has_entry(&l, "d3/.wh.old1") && has_entry(&l, "d3/.wh.old2"));
        }

        ASSERT(unpack_onto(&l, base) == 0);
        unpacked = tree_list(base, NULL);
        ASSERT(same_listing("the lower with the layer applied", unpacked, expected));
        ASSERT(same_inode(base, "suid", "suid_link") && same_inode(base, "h1", "h2"));

        /* a second diff gives the same layer */
        struct layer again = { 0 };
        ASSERT(do_diff(s, &again) == 0);
        bool same_digest = streq(again.digest, l.digest);
        layer_clear(&again);
        ASSERT(same_digest);

        r = ossb_snapshot_commit(s, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0);
        ASSERT(ossb_snapshot_commit(s, NULL) == 0);
        ASSERT(do_diff(s, &again) == -EINVAL);
        committed = tree_list(root, NULL);
        ASSERT(same_listing("the committed root", committed, expected));
        ASSERT(same_inode(root, "suid", "suid_link") && same_inode(root, "h1", "h2"));
        ASSERT(stat_at(root, "etc", &etc_after) == 0);
        ASSERT(etc_after.st_mtim.tv_sec == etc_before.st_mtim.tv_sec &&
               etc_after.st_mtim.tv_nsec == etc_before.st_mtim.tv_nsec);
        ossb_snapshot_free(s);
        struct stat st;
        ASSERT(lstat(scratch, &st) < 0 && errno == ENOENT);
        layer_clear(&l);
}

static void test_overlay_scenario(void)
{
        if (!can_overlay) {
                fprintf(stderr, "# skipped: overlay needs root\n");
                return;
        }
        scenario(OSSB_SNAPSHOT_OVERLAY, "ovl", tmpdir);
}

static void test_overlay_scenario_cross_fs(void)
{
        if (!can_overlay) {
                fprintf(stderr, "# skipped: overlay needs root\n");
                return;
        }
        _cleanup_free_ char *mnt = pj(tmpdir, "tmpfs");
        ASSERT(mnt && mkdir(mnt, 0755) == 0);
        ASSERT(mount("tmpfs", mnt, "tmpfs", 0, "mode=0755") == 0);
        scenario(OSSB_SNAPSHOT_OVERLAY, "xfs", mnt);
        umount2(mnt, MNT_DETACH);
}

static void test_native_scenario(void)
{
        scenario(OSSB_SNAPSHOT_NATIVE, "nat", tmpdir);
}

/* ---- empty steps and mount points only ---- */

static void empty_step(enum ossb_snapshot_backend backend, const char *name, bool with_mount_point)
{
        _cleanup_free_ char *root = fmt("%s/%s-root", tmpdir, name), *scratch = fmt("%s/%s-scratch", tmpdir, name);
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        struct stat before, after;
        ASSERT(root && scratch && mkdir(root, 0755) == 0 && mkd(root, "etc", 0755) == 0);
        ASSERT(put(root, "etc/passwd", "x\n", 0644) == 0 && set_time(root, "etc", 1400000000) == 0);
        ASSERT(stat_at(root, "etc", &before) == 0);
        _cleanup_free_ char *before_list = tree_list(root, NULL);
        ASSERT(ossb_snapshot_new(backend, root, scratch, userxattr, &s, NULL) == 0);
        if (with_mount_point) {
                ASSERT(put(ossb_snapshot_path(s), "etc/hosts", "", 0644) == 0);
                ASSERT(ossb_snapshot_exclude(s, "etc/hosts", NULL) == 0);
                ASSERT(mkd(ossb_snapshot_path(s), "mnt-cache", 0755) == 0);
                ASSERT(ossb_snapshot_exclude(s, "mnt-cache", NULL) == 0);
        }
        ASSERT(do_diff(s, &l) == 0);
        ASSERT(l.empty && l.digest[0] == '\0' && l.diff_id[0] == '\0' && l.size == 0);
        ASSERT(ossb_snapshot_commit(s, NULL) == 0);
        _cleanup_free_ char *after_list = tree_list(root, NULL);
        ASSERT(same_listing("the root after an empty step", after_list, before_list));
        ASSERT(stat_at(root, "etc", &after) == 0 && after.st_mtim.tv_sec == before.st_mtim.tv_sec);
        ossb_snapshot_free(s);
}

static void test_empty_overlay(void)
{
        if (!can_overlay)
                return;
        empty_step(OSSB_SNAPSHOT_OVERLAY, "empty-ovl", false);
        empty_step(OSSB_SNAPSHOT_OVERLAY, "mp-ovl", true);
}

static void test_empty_native(void)
{
        empty_step(OSSB_SNAPSHOT_NATIVE, "empty-nat", false);
        empty_step(OSSB_SNAPSHOT_NATIVE, "mp-nat", true);
}

/* A mount point inside a directory the step also changed: the directory is written, the
 * mount point is not, and the native commit gives the directory the layer's mtime. */
static void mount_point_beside_change(enum ossb_snapshot_backend backend, const char *name)
{
        _cleanup_free_ char *root = fmt("%s/%s-root", tmpdir, name), *scratch = fmt("%s/%s-scratch", tmpdir, name);
        _cleanup_free_ char *base = fmt("%s/%s-base", tmpdir, name);
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        ASSERT(root && scratch && base && mkdir(root, 0755) == 0 && mkd(root, "etc", 0755) == 0);
        ASSERT(put(root, "etc/passwd", "x\n", 0644) == 0 && set_time(root, "etc", 1400000000) == 0);
        ASSERT(copy_tree(root, base) == 0);
        ASSERT(ossb_snapshot_new(backend, root, scratch, userxattr, &s, NULL) == 0);
        const char *v = ossb_snapshot_path(s);
        ASSERT(put(v, "etc/hosts", "", 0644) == 0 && put(v, "etc/group", "g\n", 0644) == 0);
        ASSERT(ossb_snapshot_exclude(s, "etc/hosts", NULL) == 0);
        _cleanup_free_ char *expected = tree_list(v, skip_mount_points);
        ASSERT(do_diff(s, &l) == 0 && !l.empty);
        ASSERT(has_entry(&l, "etc") && has_entry(&l, "etc/group") && !has_entry(&l, "etc/hosts"));
        ASSERT(ossb_snapshot_commit(s, NULL) == 0);
        ASSERT(unpack_onto(&l, base) == 0);
        _cleanup_free_ char *unpacked = tree_list(base, NULL), *committed = tree_list(root, NULL);
        ASSERT(same_listing("unpacked", unpacked, expected));
        ASSERT(same_listing("committed", committed, expected));
        struct stat a, b;
        ASSERT(stat_at(root, "etc", &a) == 0 && stat_at(base, "etc", &b) == 0);
        ASSERT(a.st_mtim.tv_sec == b.st_mtim.tv_sec);
        ossb_snapshot_free(s);
        layer_clear(&l);
}

static void test_mount_point_beside_change(void)
{
        mount_point_beside_change(OSSB_SNAPSHOT_NATIVE, "mpc-nat");
        if (can_overlay)
                mount_point_beside_change(OSSB_SNAPSHOT_OVERLAY, "mpc-ovl");
}

/* ---- a stage's stack of layers (stagefs.h, layerstore.h, layered.c) ---- */

static int fills;

static int fill_layer(const char *dir, void *userdata, struct ossb_error **err)
{
        const struct layer *l = userdata;
        const struct ossb_unpack_opts o = { .overlay_format = true, .userxattr = userxattr };
        int fd = -1;
        fills++;
        int r = ossb_store_open_blob(store, l->digest, &fd, err);
        if (r < 0)
                return r;
        r = ossb_layer_unpack_ex(fd, l->digest, dir, &o, l->diff_id, NULL, NULL, err);
        close(fd);
        return r;
}

/* The step's layer unpacked into the layer store in overlay format and stacked over a copy
 * of the lower shows the step's tree; the store serves it again without unpacking; prune
 * keeps it while a stage holds it and removes it after. */
static void layer_store_check(enum ossb_snapshot_backend kind, const char *name, const struct layer *l,
                              const char *lower_copy, const char *expected)
{
        _cleanup_free_ char *cache = fmt("%s/%s-cache", tmpdir, name), *sdir = fmt("%s/%s-stage2", tmpdir, name);
        struct ossb_layerstore *ls = NULL;
        struct ossb_stagefs *fs = NULL;
        struct ossb_layerdir ld = { .lock_fd = -1 };
        _cleanup_error_ struct ossb_error *err = NULL;
        int64_t freed = -1;
        fills = 0;
        ASSERT(ossb_layerstore_open(cache, &ls, NULL) == 0 && ossb_layerstore_userxattr(ls) == userxattr);
        ASSERT(!ossb_layerstore_has(ls, l->diff_id));
        ASSERT(ossb_layerstore_get(ls, l->diff_id, NULL, NULL, &ld, NULL) == -ENOENT);
        int r = ossb_layerstore_get(ls, l->diff_id, fill_layer, (void *) l, &ld, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0 && fills == 1 && ossb_layerstore_has(ls, l->diff_id));
        ASSERT(ossb_stagefs_new(sdir, kind, userxattr, &fs, NULL) == 0);
        ASSERT(ossb_stagefs_push_dir(fs, lower_copy, NULL) == 0);
        ASSERT(ossb_stagefs_push_layer(fs, &ld, NULL) == 0 && ld.path == NULL && ld.lock_fd < 0);
        ASSERT(ossb_stagefs_mount(fs, NULL) == 0);
        _cleanup_free_ char *view = tree_list(ossb_stagefs_root(fs), skip_mount_points);
        ASSERT(same_listing("the layer from the store over the lower", view, expected));
        ASSERT(ossb_layerstore_get(ls, l->diff_id, fill_layer, (void *) l, &ld, NULL) == 0 && fills == 1);
        ossb_layerdir_release(&ld);
        ASSERT(ossb_layerstore_prune(cache, 0, &freed, NULL) == 0 && freed == 0); /* the stage holds it */
        ASSERT(ossb_layerstore_has(ls, l->diff_id));
        ossb_stagefs_free(fs);
        ASSERT(ossb_layerstore_prune(cache, 0, &freed, NULL) == 0 && freed > 0);
        ASSERT(!ossb_layerstore_has(ls, l->diff_id));
        ASSERT(ossb_layerstore_get(ls, "sha256:nothex", NULL, NULL, &ld, NULL) == -EINVAL);
        ossb_layerstore_free(ls);
}

/* After the stage's last step its view is read-only; a child stage stacks on it and its
 * changes stay its own. */
static void finish_and_inherit(enum ossb_snapshot_backend kind, const char *name, struct ossb_stagefs *fs)
{
        _cleanup_free_ char *cdir = fmt("%s/%s-child", tmpdir, name);
        struct ossb_stagefs *child = NULL;
        const char *root = ossb_stagefs_root(fs);
        ASSERT(ossb_stagefs_mount(fs, NULL) == 0 && put(root, "after", "copied\n", 0644) == 0);
        ASSERT(ossb_stagefs_finish(fs, NULL) == 0);
        ASSERT(put(root, "nope", "x", 0644) < 0 && errno == EROFS);
        ASSERT(ossb_stagefs_new(cdir, kind, userxattr, &child, NULL) == 0);
        ASSERT(ossb_stagefs_inherit(child, fs, NULL) == 0);
        ASSERT(ossb_stagefs_inherit(child, fs, NULL) == -EINVAL);
        ASSERT(ossb_stagefs_mount(child, NULL) == 0);
        _cleanup_free_ char *pv = tree_list(root, NULL), *cv = tree_list(ossb_stagefs_root(child), NULL);
        ASSERT(same_listing("the child's view", cv, pv));
        ASSERT(put(ossb_stagefs_root(child), "mine", "c\n", 0644) == 0);
        struct stat st;
        ASSERT(stat_at(root, "mine", &st) < 0 && stat_at(ossb_stagefs_root(child), "after", &st) == 0);
        ossb_stagefs_free(child);
}

static void layered_scenario(enum ossb_snapshot_backend kind, const char *name)
{
        _cleanup_free_ char *lower = fmt("%s/%s-lower", tmpdir, name), *copy = fmt("%s/%s-lower2", tmpdir, name);
        _cleanup_free_ char *base = fmt("%s/%s-base", tmpdir, name), *sdir = fmt("%s/%s-stage:a,b", tmpdir, name);
        _cleanup_free_ char *scratch = fmt("%s/%s-scratch", tmpdir, name), *expected = NULL, *got = NULL;
        struct ossb_stagefs *fs = NULL;
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(make_lower(lower) == 0 && copy_tree(lower, base) == 0 && copy_tree(lower, copy) == 0);
        ASSERT(ossb_stagefs_new(sdir, kind, userxattr, &fs, NULL) == 0);
        ASSERT(ossb_stagefs_push_dir(fs, lower, NULL) == 0 && ossb_stagefs_mount(fs, NULL) == 0);
        got = tree_list(ossb_stagefs_root(fs), NULL);
        expected = tree_list(base, NULL);
        ASSERT(same_listing("the stage's view", got, expected));
        free(TAKE_PTR(got));
        free(TAKE_PTR(expected));
        int r = ossb_snapshot_new_stage(kind, fs, scratch, &s, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0 && ossb_snapshot_new_stage(OSSB_SNAPSHOT_NATIVE, fs, scratch, &s, NULL) == -EINVAL);
        ASSERT(modify(ossb_snapshot_path(s), kind == OSSB_SNAPSHOT_OVERLAY) == 0 && exclude_all(s) == 0);
        expected = tree_list(ossb_snapshot_path(s), skip_mount_points);
        ASSERT(expected && do_diff(s, &l) == 0 && !l.empty);
        ASSERT(has_entry(&l, "d3/.wh..wh..opq") && has_entry(&l, ".wh.del_me") && has_entry(&l, ".wh.d2"));
        ASSERT(!has_entry(&l, "etc") && !has_entry(&l, "run") && has_entry(&l, "file2dir/inner"));
        ASSERT(unpack_onto(&l, base) == 0);
        got = tree_list(base, NULL);
        ASSERT(same_listing("the lower with the layer applied", got, expected));
        free(TAKE_PTR(got));
        r = ossb_snapshot_commit(s, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0);
        ossb_snapshot_free(s);
        ASSERT(ossb_stagefs_mount(fs, NULL) == 0);
        got = tree_list(ossb_stagefs_root(fs), NULL);
        ASSERT(same_listing("the stage's view after the commit", got, expected));
        ASSERT(same_inode(ossb_stagefs_root(fs), "suid", "suid_link"));
        layer_store_check(kind, name, &l, copy, expected);
        finish_and_inherit(kind, name, fs);
        ossb_stagefs_free(fs);
        struct stat st;
        ASSERT(lstat(sdir, &st) < 0 && errno == ENOENT);
        layer_clear(&l);
}

static void test_layered_scenario(void)
{
        if (!can_overlay) {
                fprintf(stderr, "# skipped: overlay needs root\n");
                return;
        }
        layered_scenario(OSSB_SNAPSHOT_OVERLAY, "lay");
}

static void test_layered_scenario_fuse(void)
{
        if (!can_fuse) {
                fprintf(stderr, "# skipped: FUSE does not mount here\n");
                return;
        }
        layered_scenario(OSSB_SNAPSHOT_FUSE, "fuse");
}

/* ---- errors ---- */

static void test_backend_names(void)
{
        enum ossb_snapshot_backend b = OSSB_SNAPSHOT_NATIVE;
        ASSERT(ossb_snapshot_backend_parse("auto", &b) == 0 && b == OSSB_SNAPSHOT_AUTO);
        ASSERT(ossb_snapshot_backend_parse("overlay", &b) == 0 && b == OSSB_SNAPSHOT_OVERLAY);
        ASSERT(ossb_snapshot_backend_parse("native", &b) == 0 && b == OSSB_SNAPSHOT_NATIVE);
        ASSERT(ossb_snapshot_backend_parse("fuse", &b) == 0 && b == OSSB_SNAPSHOT_FUSE);
        ASSERT(ossb_snapshot_backend_parse("fuse-overlayfs", &b) == -EINVAL);
        ASSERT(ossb_snapshot_backend_parse(NULL, &b) == -EINVAL);
        ASSERT_STREQ(ossb_snapshot_backend_name(OSSB_SNAPSHOT_AUTO), "auto");
        ASSERT_STREQ(ossb_snapshot_backend_name(OSSB_SNAPSHOT_OVERLAY), "overlay");
        ASSERT_STREQ(ossb_snapshot_backend_name(OSSB_SNAPSHOT_NATIVE), "native");
        ASSERT_STREQ(ossb_snapshot_backend_name(OSSB_SNAPSHOT_FUSE), "fuse");
        ASSERT_STREQ(ossb_snapshot_backend_name((enum ossb_snapshot_backend) 42), "unknown");
}

static void test_auto(void)
{
        const char *why = NULL;
        _cleanup_free_ char *scratch = pj(tmpdir, "auto-scratch");
        enum ossb_snapshot_backend b = ossb_snapshot_backend_auto(scratch, &why);
        ASSERT(why);
        fprintf(stderr, "# auto: %s\n", why);
        if (is_root && !ossb_snapshot_in_userns()) {
                ASSERT(b == OSSB_SNAPSHOT_OVERLAY);
                ASSERT_STREQ(why, "overlay: kernel overlayfs mounts here");
        }
        ASSERT(strncmp(why, ossb_snapshot_backend_name(b), strlen(ossb_snapshot_backend_name(b))) == 0);
        b = ossb_snapshot_backend_auto("/proc/ossb-no-such-dir", &why);
        ASSERT(b == OSSB_SNAPSHOT_NATIVE);
        fprintf(stderr, "# auto in a missing dir: %s\n", why);
        ASSERT(strncmp(why, "native: overlay: cannot prepare the probe: ", 43) == 0 &&
               strstr(why, "; fuse: cannot prepare the probe: "));

        /* AUTO in ossb_snapshot_new */
        _cleanup_free_ char *root = pj(tmpdir, "auto-root"), *s2 = pj(tmpdir, "auto-scratch2");
        struct ossb_snapshot *s = NULL;
        ASSERT(mkdir(root, 0755) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_AUTO, root, s2, ossb_snapshot_in_userns(), &s, NULL) == 0);
        ASSERT(ossb_snapshot_backend(s) != OSSB_SNAPSHOT_AUTO);
        ossb_snapshot_free(s);
        ossb_snapshot_free(NULL);
}

static void test_bad_arguments(void)
{
        _cleanup_error_ struct ossb_error *err = NULL;
        _cleanup_free_ char *missing = pj(tmpdir, "no-such-root"), *file = pj(tmpdir, "a-file");
        _cleanup_free_ char *scratch = pj(tmpdir, "bad-scratch"), *root = pj(tmpdir, "bad-root");
        struct ossb_snapshot *s = NULL;
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_NATIVE, missing, scratch, false, &s, &err) == -ENOENT);
        ASSERT(err && strstr(err->msg, "no-such-root"));
        ASSERT(put(tmpdir, "a-file", "x", 0644) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_NATIVE, file, scratch, false, &s, NULL) == -ENOTDIR);
        ASSERT(ossb_snapshot_new((enum ossb_snapshot_backend) 9, tmpdir, scratch, false, &s, NULL) == -EINVAL);
        ASSERT(mkdir(root, 0755) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_NATIVE, root, file, false, &s, NULL) < 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_NATIVE, root, scratch, false, &s, NULL) == 0);
        ASSERT(ossb_snapshot_exclude(s, "../etc/hosts", NULL) == -EINVAL);
        ASSERT(ossb_snapshot_exclude(s, "/", NULL) == -EINVAL);
        ASSERT(ossb_snapshot_exclude(s, "a/../..", NULL) == -EINVAL);
        ASSERT(ossb_snapshot_exclude(s, NULL, NULL) == -EINVAL);
        ASSERT(ossb_snapshot_exclude(s, "b", NULL) == 0 && ossb_snapshot_exclude(s, "a", NULL) == 0);
        ASSERT(ossb_snapshot_exclude(s, "c/d", NULL) == 0 && ossb_snapshot_exclude(s, "a", NULL) == 0);
        ASSERT(ossb_snapshot_unmount(s, NULL) == 0);
        ossb_snapshot_free(s);
        if (is_root) {
                /* an overlay scratch dir that already holds an upper dir */
                _cleanup_free_ char *up = pj(scratch, "upper");
                ASSERT(ossb_mkdir_p(up, 0755) == 0);
                ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, scratch, false, &s, NULL) == -EEXIST);
        }
}

static void reserved_name(enum ossb_snapshot_backend backend, const char *name, bool dir)
{
        _cleanup_free_ char *root = fmt("%s/%s-root", tmpdir, name), *scratch = fmt("%s/%s-scratch", tmpdir, name);
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        ASSERT(root && scratch && mkdir(root, 0755) == 0);
        ASSERT(ossb_snapshot_new(backend, root, scratch, userxattr, &s, NULL) == 0);
        if (dir)
                ASSERT(mkd(ossb_snapshot_path(s), "d", 0755) == 0 && mkd(ossb_snapshot_path(s), "d/.wh.dir", 0755) == 0);
        else
                ASSERT(put(ossb_snapshot_path(s), ".wh.sneaky", "x", 0644) == 0);
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        int r = ossb_snapshot_diff(s, store, &opts, &l.empty, l.digest, &l.size, l.diff_id, &err);
        ossb_snapshot_free(s);
        ASSERT(r == -EINVAL);
        ASSERT(err && strstr(err->msg, dir ? "/d/.wh.dir" : "/.wh.sneaky") && err->exit_code == OSSB_EXIT_BUILD);
}

static void test_reserved_names(void)
{
        reserved_name(OSSB_SNAPSHOT_NATIVE, "wh-nat", false);
        reserved_name(OSSB_SNAPSHOT_NATIVE, "whd-nat", true);
        if (can_overlay) {
                reserved_name(OSSB_SNAPSHOT_OVERLAY, "wh-ovl", false);
                reserved_name(OSSB_SNAPSHOT_OVERLAY, "whd-ovl", true);
        }
}

static void test_overlay_redirect_refused(void)
{
        if (!is_root)
                return;
        _cleanup_free_ char *root = pj(tmpdir, "redir-root"), *scratch = pj(tmpdir, "redir-scratch");
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_snapshot *s = NULL;
        struct layer l = { 0 };
        ASSERT(mkdir(root, 0755) == 0 && mkd(root, "d", 0755) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, scratch, false, &s, NULL) == 0);
        ASSERT(ossb_snapshot_unmount(s, NULL) == 0);
        ASSERT(ossb_snapshot_unmount(s, NULL) == 0);
        /* what a kernel with redirect_dir=on would leave */
        _cleanup_free_ char *up = fmt("%s/upper/e", scratch);
        ASSERT(mkdir(up, 0755) == 0 && lsetxattr(up, "trusted.overlay.redirect", "/d", 2, 0) == 0);
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_NONE, .level = -1, .source_date_epoch = -1 };
        int r = ossb_snapshot_diff(s, store, &opts, &l.empty, l.digest, &l.size, l.diff_id, &err);
        ASSERT(r == -ENOTSUP && strstr(err->msg, "redirect"));
        /* and a whiteout of a name the lower never had is dropped */
        ASSERT(lremovexattr(up, "trusted.overlay.redirect") == 0);
        _cleanup_free_ char *wh = fmt("%s/upper/ghost", scratch);
        ASSERT(mknod(wh, S_IFCHR, makedev(0, 0)) == 0);
        ASSERT(do_diff(s, &l) == 0 && !l.empty);
        ASSERT(has_entry(&l, "e") && !has_entry(&l, ".wh.ghost"));
        layer_clear(&l);
        ossb_snapshot_free(s);
}

static void test_too_deep(void)
{
        _cleanup_free_ char *root = pj(tmpdir, "deep-root"), *scratch = pj(tmpdir, "deep-scratch");
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_snapshot *s = NULL;
        ASSERT(mkdir(root, 0755) == 0);
        _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT(fd >= 0);
        for (int i = 0; i < 600; i++) {
                ASSERT(mkdirat(fd, "a", 0755) == 0);
                int nfd = openat(fd, "a", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT(nfd >= 0);
                close(fd);
                fd = nfd;
        }
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_NATIVE, root, scratch, false, &s, &err) == -ELOOP);
        ASSERT(strstr(err->msg, "deeper"));
        ASSERT(ossb_rm_rf(root) == 0);
}

/* A root path whose mount options would exceed a page is refused, naming the reason. */
static void test_overlay_long_path(void)
{
        if (!can_overlay)
                return;
        char comp[241];
        memset(comp, ',', sizeof(comp) - 1);
        comp[sizeof(comp) - 1] = '\0';
        _cleanup_free_ char *top = pj(tmpdir, "long"), *scratch = pj(tmpdir, "long-scratch");
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_strbuf root = OSSB_STRBUF_INIT;
        struct ossb_snapshot *s = NULL;
        ASSERT(top && mkdir(top, 0755) == 0);
        ossb_strbuf_append(&root, top);
        for (int i = 0; i < 14; i++) {
                ossb_strbuf_appendf(&root, "/%s", comp);
                ASSERT(mkdir(root.buf, 0755) == 0);
        }
        ASSERT(put(root.buf, "f", "long\n", 0644) == 0);
        /* too long for a page of mount options by name: passed as /proc/self/fd/N */
        int r = ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root.buf, scratch, userxattr, &s, &err);
        ossb_strbuf_free(&root);
        ASSERT(r == 0);
        struct stat st;
        ASSERT(stat_at(ossb_snapshot_path(s), "f", &st) == 0 && st.st_size == 5);
        ossb_snapshot_free(s);
        ASSERT(ossb_rm_rf(top) == 0);
}

/* A shared data source as a fuse stage's layer: every mount of the stage (its view, a RUN's
 * mounts, a child's) serves it; the last reference frees it.  Overlay stages refuse it. */
static void test_shared_source_layer(void)
{
        if (!can_fuse) {
                fprintf(stderr, "# skipped: FUSE does not mount here\n");
                return;
        }
        _cleanup_free_ char *layer = pj(tmpdir, "sh-layer"), *sdir = pj(tmpdir, "sh-stage"), *cdir = pj(tmpdir, "sh-child");
        _cleanup_free_ char *odir = pj(tmpdir, "sh-ovl"), *scratch = pj(tmpdir, "sh-scratch");
        struct ossb_fs_source *src = NULL;
        struct ossb_stagefs *fs = NULL, *child = NULL, *ovl = NULL;
        struct ossb_snapshot *snap = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        struct stat st;
        ASSERT(mkdir(layer, 0755) == 0 && put(layer, "shared.txt", "from a source\n", 0644) == 0);
        ASSERT(ossb_fs_source_dir_new(layer, userxattr, &src, NULL) == 0);
        struct ossb_fs_shared *sh = ossb_fs_shared_new(src);
        ASSERT(sh);
        ASSERT(ossb_stagefs_new(sdir, OSSB_SNAPSHOT_FUSE, userxattr, &fs, NULL) == 0);
        ASSERT(ossb_stagefs_push_shared(fs, sh, "lazy layer", NULL) == 0);
        ASSERT(ossb_stagefs_mount(fs, NULL) == 0 && stat_at(ossb_stagefs_root(fs), "shared.txt", &st) == 0);
        ASSERT(ossb_snapshot_new_stage(OSSB_SNAPSHOT_FUSE, fs, scratch, &snap, &err) == 0);
        ASSERT(put(ossb_snapshot_path(snap), "run.txt", "r\n", 0644) == 0);
        ASSERT(ossb_snapshot_commit(snap, NULL) == 0);
        ossb_snapshot_free(snap);
        ASSERT(ossb_stagefs_finish(fs, NULL) == 0);
        ASSERT(ossb_stagefs_new(cdir, OSSB_SNAPSHOT_FUSE, userxattr, &child, NULL) == 0);
        ASSERT(ossb_stagefs_inherit(child, fs, NULL) == 0);
        ossb_stagefs_unmount(fs, NULL); /* the child's own mount serves the source */
        ASSERT(ossb_stagefs_mount(child, NULL) == 0);
        ASSERT(stat_at(ossb_stagefs_root(child), "shared.txt", &st) == 0 &&
               stat_at(ossb_stagefs_root(child), "run.txt", &st) == 0);
        ossb_stagefs_free(child);
        ossb_stagefs_free(fs); /* after its child: the child stacks the parent's layers */
        ASSERT(ossb_stagefs_new(odir, OSSB_SNAPSHOT_OVERLAY, userxattr, &ovl, NULL) == 0);
        ASSERT(ossb_stagefs_push_shared(ovl, sh, "lazy layer", &err) == -EINVAL && strstr(err->msg, "lazily"));
        ossb_stagefs_free(ovl);
        ossb_fs_shared_unref(sh); /* the last reference */
}

/* More layers than fit in a page of mount options even as /proc/self/fd/N: a clear error. */
static void test_too_many_layers(void)
{
        if (!can_overlay)
                return;
        _cleanup_free_ char *sdir = pj(tmpdir, "many");
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_stagefs *fs = NULL;
        ASSERT(ossb_stagefs_new(sdir, OSSB_SNAPSHOT_OVERLAY, userxattr, &fs, NULL) == 0);
        for (int i = 0; i < 300; i++) {
                _cleanup_free_ char *d = fmt("%s/l%d", tmpdir, i);
                ASSERT(d && mkdir(d, 0755) == 0 && ossb_stagefs_push_dir(fs, d, NULL) == 0);
        }
        size_t n = 0;
        ASSERT(ossb_stagefs_lowers(fs, &n) && n == 301);
        int r = ossb_stagefs_mount(fs, &err);
        ASSERT(r == -ENAMETOOLONG && strstr(err->msg, "do not fit in one overlay mount"));
        ossb_stagefs_free(fs);
}

/* An upper directory on an overlay cannot be mounted: a clear error, nothing left behind. */
static void test_overlay_mount_fails(void)
{
        if (!can_overlay)
                return;
        _cleanup_free_ char *root = pj(tmpdir, "mf-root"), *scratch = pj(tmpdir, "mf-scratch");
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_snapshot *outer = NULL, *inner = NULL;
        ASSERT(mkdir(root, 0755) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, scratch, userxattr, &outer, NULL) == 0);
        _cleanup_free_ char *nested = pj(ossb_snapshot_path(outer), "scratch");
        int r = ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, nested, userxattr, &inner, &err);
        ossb_snapshot_free(outer);
        ASSERT(r < 0 && strstr(err->msg, "cannot mount an overlay"));
}

/* A commit into a read-only root fails with the root named. */
static void commit_read_only(enum ossb_snapshot_backend backend, const char *name)
{
        _cleanup_free_ char *root = fmt("%s/%s-root", tmpdir, name), *scratch = fmt("%s/%s-scratch", tmpdir, name);
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_snapshot *s = NULL;
        ASSERT(root && scratch && mkdir(root, 0755) == 0 && mkd(root, "etc", 0755) == 0);
        ASSERT(ossb_snapshot_new(backend, root, scratch, userxattr, &s, NULL) == 0);
        const char *v = ossb_snapshot_path(s);
        ASSERT(put(v, "etc/hosts", "", 0644) == 0 && put(v, "x", "x", 0644) == 0);
        ASSERT(ossb_snapshot_exclude(s, "etc/hosts", NULL) == 0);
        ASSERT(ossb_snapshot_unmount(s, NULL) == 0);
        ASSERT(mount(root, root, NULL, MS_BIND, NULL) == 0);
        ASSERT(mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0);
        int r = ossb_snapshot_commit(s, &err);
        umount2(root, MNT_DETACH);
        ossb_snapshot_free(s);
        ASSERT(r == -EROFS);
        ASSERT(strstr(err->msg, "commit of the step into") && strstr(err->msg, root));
}

static void test_commit_read_only(void)
{
        if (!can_overlay)
                return;
        commit_read_only(OSSB_SNAPSHOT_NATIVE, "ro-nat");
        commit_read_only(OSSB_SNAPSHOT_OVERLAY, "ro-ovl");
}

/* ---- userxattr in a user namespace ---- */

static int write_str(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        return fd < 0 ? -1 : ossb_write_all(fd, s, strlen(s));
}

static int userns_child(void)
{
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0 || write_str("/proc/self/setgroups", "deny") < 0 ||
            write_str("/proc/self/uid_map", "0 0 1") < 0 || write_str("/proc/self/gid_map", "0 0 1") < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 77;
        if (!ossb_snapshot_in_userns())
                return 10;
        _cleanup_free_ char *root = pj(tmpdir, "ux-root"), *scratch = pj(tmpdir, "ux-scratch");
        const char *why = NULL;
        if (ossb_snapshot_backend_auto(scratch, &why) != OSSB_SNAPSHOT_OVERLAY || !strstr(why, "userxattr"))
                return 11;
        struct ossb_snapshot *s = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, scratch, true, &s, &err) < 0) {
                fprintf(stderr, "# userns: %s\n", err->msg);
                return 12;
        }
        const char *v = ossb_snapshot_path(s);
        if (op(v, unlink_p, "f") < 0 || op(v, rmrf_p, "d") < 0 || mkd(v, "d", 0755) < 0 || put(v, "d/n", "n", 0644) < 0)
                return 13;
        _cleanup_free_ char *expected = tree_list(v, NULL);
        struct layer l = { 0 };
        if (do_diff(s, &l) < 0 || l.empty)
                return 14;
        if (!has_entry(&l, ".wh.f") || !has_entry(&l, "d/.wh..wh..opq") || !has_entry(&l, "d/n") ||
            has_entry(&l, "d/old"))
                return 15;
        _cleanup_free_ char *uo = fmt("%s/upper/d", scratch);
        char val[4];
        if (!uo || lgetxattr(uo, "user.overlay.opaque", val, sizeof(val)) != 1)
                return 16;
        if (ossb_snapshot_commit(s, NULL) < 0)
                return 17;
        _cleanup_free_ char *committed = tree_list(root, NULL);
        _cleanup_free_ char *d = pj(root, "d");
        if (!same_listing("userns commit", committed, expected) || lgetxattr(d, "user.overlay.opaque", val, 4) >= 0)
                return 18;
        ossb_snapshot_free(s);
        layer_clear(&l);
        return 0;
}

static void test_userxattr(void)
{
        if (!is_root)
                return;
        _cleanup_free_ char *root = pj(tmpdir, "ux-root");
        ASSERT(mkdir(root, 0755) == 0 && put(root, "f", "f", 0644) == 0 && mkd(root, "d", 0755) == 0);
        ASSERT(put(root, "d/old", "o", 0644) == 0);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
                _exit(userns_child());
        int status = 0;
        ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                fprintf(stderr, "# skipped: no user namespaces here\n");
                return;
        }
        ASSERT_INTEQ(WEXITSTATUS(status), 0);
}

/* An overlay mount the test keeps busy is detached by free, and the scratch dir removed. */
static void test_busy_unmount(void)
{
        if (!can_overlay)
                return;
        _cleanup_free_ char *root = pj(tmpdir, "busy-root"), *scratch = pj(tmpdir, "busy-scratch");
        struct ossb_snapshot *s = NULL;
        ASSERT(mkdir(root, 0755) == 0);
        ASSERT(ossb_snapshot_new(OSSB_SNAPSHOT_OVERLAY, root, scratch, userxattr, &s, NULL) == 0);
        int fd = open(ossb_snapshot_path(s), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT(fd >= 0);
        ASSERT(fchdir(fd) == 0);
        ossb_snapshot_free(s);
        ASSERT(chdir("/") == 0);
        close(fd);
        struct stat st;
        ASSERT(lstat(scratch, &st) < 0 && errno == ENOENT);
}

/* Whether a FUSE stage mounts here (/dev/fuse openable, mount permitted). */
static bool fuse_mounts(void)
{
        _cleanup_free_ char *d = pj(tmpdir, "fuse-probe");
        struct ossb_stagefs *fs = NULL;
        bool ok = d && ossb_stagefs_new(d, OSSB_SNAPSHOT_FUSE, userxattr, &fs, NULL) == 0 &&
                  ossb_stagefs_mount(fs, NULL) == 0;
        ossb_stagefs_free(fs);
        return ok;
}

int main(void)
{
        userxattr = ossb_snapshot_in_userns();
        is_root = geteuid() == 0 && !userxattr;
        if (!mkdtemp(tmpdir))
                return 1;
        _cleanup_free_ char *probe_dir = pj(tmpdir, "probe");
        can_overlay = ossb_snapshot_backend_auto(probe_dir, NULL) == OSSB_SNAPSHOT_OVERLAY;
        can_fuse = fuse_mounts();
        _cleanup_free_ char *sp = pj(tmpdir, "store"), *probe = pj(tmpdir, "xattr-probe");
        if (ossb_store_open(sp, &store, NULL) < 0 || put(tmpdir, "xattr-probe", "", 0644) < 0)
                return 1;
        user_xattrs = lsetxattr(probe, "user.probe", "1", 1, 0) == 0;
        unlink(probe);

        RUN_TEST(test_backend_names);
        RUN_TEST(test_native_scenario);
        RUN_TEST(test_overlay_scenario);
        RUN_TEST(test_overlay_scenario_cross_fs);
        RUN_TEST(test_empty_native);
        RUN_TEST(test_empty_overlay);
        RUN_TEST(test_mount_point_beside_change);
        RUN_TEST(test_layered_scenario);
        RUN_TEST(test_layered_scenario_fuse);
        RUN_TEST(test_auto);
        RUN_TEST(test_bad_arguments);
        RUN_TEST(test_reserved_names);
        RUN_TEST(test_overlay_redirect_refused);
        RUN_TEST(test_too_deep);
        RUN_TEST(test_overlay_long_path);
        RUN_TEST(test_too_many_layers);
        RUN_TEST(test_shared_source_layer);
        RUN_TEST(test_overlay_mount_fails);
        RUN_TEST(test_commit_read_only);
        RUN_TEST(test_userxattr);
        RUN_TEST(test_busy_unmount);

        ossb_store_free(store);
        _cleanup_free_ char *tmpfs = pj(tmpdir, "tmpfs");
        umount2(tmpfs, MNT_DETACH);
        ossb_rm_rf(tmpdir);
        TAP_END();
}
