/* tests/unit/test-fusefs-util.c - see test-fusefs-util.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "tests/unit/test-fusefs-util.h"

bool fx_can_mount(const char **ret_why)
{
        if (geteuid() != 0) {
                *ret_why = "not root";
                return false;
        }
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                *ret_why = "/dev/fuse cannot be opened";
                return false;
        }
        close(fd);
        struct fx *fx = fx_new(1, false);
        bool ok = fx && fx_mount(fx) == 0;
        if (!ok)
                *ret_why = "mounting FUSE is refused here";
        fx_free(fx);
        return ok;
}

static char *sub(const char *root, const char *name)
{
        char *p = ossb_path_join(root, name);
        if (p && mkdir(p, 0755) < 0) {
                free(p);
                return NULL;
        }
        return p;
}

struct fx *fx_new(size_t n_lowers, bool userxattr)
{
        struct fx *fx = calloc(1, sizeof(*fx));
        char tmpl[] = "/tmp/ossb-fusefs-test-XXXXXX";
        if (!fx || n_lowers > FX_MAX_LOWERS || !mkdtemp(tmpl)) {
                free(fx);
                return NULL;
        }
        chmod(tmpl, 0755);
        fx->root = strdup(tmpl);
        fx->n_lowers = n_lowers;
        fx->userxattr = userxattr;
        for (size_t i = 0; i < n_lowers; i++) {
                char name[8];
                snprintf(name, sizeof(name), "l%zu", i);
                fx->lower[i] = sub(fx->root, name);
        }
        fx->upper = sub(fx->root, "upper");
        fx->work = sub(fx->root, "work");
        fx->mnt = sub(fx->root, "mnt");
        if (!fx->root || !fx->upper || !fx->work || !fx->mnt) {
                fx_free(fx);
                return NULL;
        }
        return fx;
}

int fx_mount(struct fx *fx)
{
        struct ossb_fs_source *src[FX_MAX_LOWERS];
        _cleanup_error_ struct ossb_error *err = NULL;
        for (size_t i = 0; i < fx->n_lowers; i++) {
                int r = ossb_fs_source_dir_new(fx->lower[i], fx->userxattr, &src[i], &err);
                if (r < 0) {
                        while (i > 0)
                                ossb_fs_source_free(src[--i]);
                        return r;
                }
        }
        struct ossb_fusefs_opts o = { .lowers = src, .n_lowers = fx->n_lowers, .upper = fx->upper,
                                      .work = fx->work, .mountpoint = fx->mnt, .userxattr = fx->userxattr };
        int r = ossb_fusefs_mount(&o, &fx->fs, &err);
        if (r < 0)
                fprintf(stderr, "# mount: %s\n", err && err->msg ? err->msg : strerror(-r));
        return r;
}

static int journal_line(void *ud, const char *path, unsigned flags)
{
        struct ossb_strbuf *sb = ud;
        const char *f[] = { "C", "M", "D", "O" };
        for (unsigned i = 0; i < 4; i++)
                if (flags & (1u << i))
                        ossb_strbuf_append(sb, f[i]);
        ossb_strbuf_appendf(sb, " %s\n", path);
        return 0;
}

int fx_unmount(struct fx *fx)
{
        if (!fx || !fx->fs)
                return 0;
        _cleanup_error_ struct ossb_error *err = NULL;
        int r = ossb_fusefs_unmount(fx->fs, &err);
        if (r < 0 && !fx->error)
                fx->error = strdup(err && err->msg ? err->msg : "unmount failed");
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ossb_fusefs_journal(fx->fs, journal_line, &sb);
        free(fx->journal);
        fx->journal = ossb_strbuf_steal(&sb);
        ossb_fusefs_free(fx->fs);
        fx->fs = NULL;
        return r;
}

void fx_free(struct fx *fx)
{
        if (!fx)
                return;
        fx_unmount(fx);
        (void) umount2(fx_p(fx, "mnt", ""), MNT_DETACH);
        if (fx->root)
                ossb_rm_rf(fx->root);
        for (size_t i = 0; i < FX_MAX_LOWERS; i++)
                free(fx->lower[i]);
        free(fx->root);
        free(fx->upper);
        free(fx->work);
        free(fx->mnt);
        free(fx->journal);
        free(fx->error);
        free(fx);
}

const char *fx_p(struct fx *fx, const char *area, const char *rel)
{
        static __thread char ring[8][4096];
        static __thread unsigned next;
        char *b = ring[next++ % 8];
        snprintf(b, sizeof(ring[0]), "%s/%s%s%s", fx->root, area, rel[0] ? "/" : "", rel);
        return b;
}

int fx_write(const char *path, const char *content)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        return ossb_write_all(fd, content, strlen(content));
}

char *fx_read(const char *path)
{
        char *s = NULL;
        size_t len;
        return ossb_read_file(path, 1 << 24, &s, &len, NULL) < 0 ? NULL : s;
}

int fx_mkdir_p(const char *path)
{
        return ossb_mkdir_p(path, 0755);
}

int fx_whiteout(const char *path)
{
        return mknod(path, S_IFCHR | 0, makedev(0, 0)) < 0 ? -errno : 0;
}

int fx_opaque(const char *path, bool userxattr)
{
        const char *name = userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
        return lsetxattr(path, name, "y", 1, 0) < 0 ? -errno : 0;
}

int fx_setxattr(const char *path, const char *name, const char *value)
{
        return lsetxattr(path, name, value, strlen(value), 0) < 0 ? -errno : 0;
}

char *fx_getxattr(const char *path, const char *name)
{
        char buf[4096];
        ssize_t n = lgetxattr(path, name, buf, sizeof(buf) - 1);
        if (n < 0)
                return NULL;
        buf[n] = '\0';
        return strdup(buf);
}

bool fx_exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The sorted names of a directory (a strv), or NULL. */
static char **list_sorted(const char *path)
{
        DIR *d = opendir(path);
        if (!d)
                return NULL;
        char **names = ossb_strv_new_empty();
        struct dirent *de;
        while (names && (de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ossb_strv_push(&names, de->d_name);
        closedir(d);
        size_t n = ossb_strv_length(names);
        if (n)
                qsort(names, n, sizeof(*names), cmp_str);
        return names;
}

char *fx_list(const char *path)
{
        char **names = list_sorted(path);
        if (!names)
                return NULL;
        char *s = ossb_strv_join(names, ",");
        ossb_strv_free(names);
        return s;
}

/* ---- tree dumps ---- */

static uint64_t fnv_file(int dirfd, const char *name)
{
        uint64_t h = 1469598103934665603ULL;
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        char buf[65536];
        ssize_t n;
        if (fd < 0)
                return 0;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                for (ssize_t i = 0; i < n; i++)
                        h = (h ^ (unsigned char) buf[i]) * 1099511628211ULL;
        return h;
}

static bool skipped(const char *name, const char *const *skip)
{
        for (size_t i = 0; skip && skip[i]; i++)
                if (strncmp(name, skip[i], strlen(skip[i])) == 0)
                        return true;
        return false;
}

static void dump_xattrs(struct ossb_strbuf *sb, const char *path, const char *const *skip)
{
        char list[8192];
        ssize_t n = llistxattr(path, list, sizeof(list));
        char **names = NULL;
        for (ssize_t i = 0; i < n; i += (ssize_t) strlen(list + i) + 1)
                if (!skipped(list + i, skip))
                        ossb_strv_push(&names, list + i);
        size_t cnt = ossb_strv_length(names);
        if (cnt)
                qsort(names, cnt, sizeof(*names), cmp_str);
        for (size_t i = 0; i < cnt; i++) {
                char v[4096];
                ssize_t vl = lgetxattr(path, names[i], v, sizeof(v) - 1);
                v[vl > 0 ? vl : 0] = '\0';
                ossb_strbuf_appendf(sb, " %s=%s", names[i], v);
        }
        ossb_strv_free(names);
}

static void dump_dir(struct ossb_strbuf *sb, const char *dir, const char *rel, const char *const *skip)
{
        _cleanup_free_ char *abs = ossb_path_join(dir, rel);
        _cleanup_strv_free_ char **list = list_sorted(abs);
        _cleanup_close_ int dfd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!list || dfd < 0)
                return;
        for (size_t i = 0; list[i]; i++) {
                const char *name = list[i];
                struct stat st;
                _cleanup_free_ char *crel = rel[0] ? ossb_path_join(rel, name) : strdup(name);
                _cleanup_free_ char *cabs = ossb_path_join(dir, crel);
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                ossb_strbuf_appendf(sb, "%s %06o %u:%u", crel, st.st_mode, st.st_uid, st.st_gid);
                if (S_ISREG(st.st_mode))
                        ossb_strbuf_appendf(sb, " size=%lld nlink=%lu data=%016llx", (long long) st.st_size,
                                            (unsigned long) st.st_nlink, (unsigned long long) fnv_file(dfd, name));
                if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
                        ossb_strbuf_appendf(sb, " rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
                if (S_ISLNK(st.st_mode)) {
                        char t[4096];
                        ssize_t n = readlinkat(dfd, name, t, sizeof(t) - 1);
                        t[n > 0 ? n : 0] = '\0';
                        ossb_strbuf_appendf(sb, " -> %s", t);
                }
                dump_xattrs(sb, cabs, skip);
                ossb_strbuf_append_c(sb, '\n');
                if (S_ISDIR(st.st_mode))
                        dump_dir(sb, dir, crel, skip);
        }
}

char *fx_dump_tree(const char *dir, const char *const *skip)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        dump_dir(&sb, dir, "", skip);
        return ossb_strbuf_steal(&sb);
}

/* ---- kernel overlayfs ---- */

int fx_kernel_mount(struct fx *fx)
{
        struct ossb_strbuf o = OSSB_STRBUF_INIT;
        ossb_strbuf_append(&o, "lowerdir=");
        for (size_t i = 0; i < fx->n_lowers; i++)
                ossb_strbuf_appendf(&o, "%s%s", i ? ":" : "", fx->lower[i]);
        ossb_strbuf_appendf(&o, ",upperdir=%s,workdir=%s,redirect_dir=off,index=off,metacopy=off%s", fx->upper,
                            fx->work, fx->userxattr ? ",userxattr" : "");
        int r = mount("overlay", fx->mnt, "overlay", 0, o.buf) < 0 ? -errno : 0;
        if (r < 0)
                fprintf(stderr, "# overlay mount (%s): %s\n", o.buf, strerror(-r));
        ossb_strbuf_free(&o);
        return r;
}

int fx_kernel_unmount(struct fx *fx)
{
        return umount2(fx->mnt, 0) < 0 ? -errno : 0;
}
