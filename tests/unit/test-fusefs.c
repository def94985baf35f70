/* tests/unit/test-fusefs.c - fuse/: the override attribute, the local directory source, and
 * (as root, where FUSE mounts) the mounted file system: merge, whiteouts and opaque
 * directories, copy-up with metadata, every namespace operation, renames, mmap, fallocate,
 * inode numbers, open unlinked files, the journal, hostile and extreme names.  The comparison
 * with kernel overlayfs and the user-namespace case are in test-fusefs-kernel.c. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "fuse/fusefs-internal.h"
#include "tests/unit/tap.h"

#define FUSE_GETXATTR_OPCODE 22 /* <linux/fuse.h> clashes with libfuse's headers */
#include "tests/unit/test-fusefs-util.h"

static bool can_mount;
static const char *why_not;

static void skip(const char *name)
{
        tap_count++;
        printf("ok %d - %s # SKIP %s\n", tap_count, name, why_not);
}

#define RUN_MOUNT_TEST(fn)              \
        do {                            \
                if (can_mount)          \
                        RUN_TEST(fn);   \
                else                    \
                        skip(#fn);      \
        } while (0)

/* A fixture with two lowers in overlay format (see build_layers), mounted; the body runs,
 * then the mount is unmounted and must report no internal failure. */
#define FX_TEST(name)                                                                   \
        static void body_##name(struct fx *fx);                                         \
        static void name(void)                                                          \
        {                                                                               \
                struct fx *fx = fx_new(2, false);                                       \
                ASSERT(fx);                                                             \
                if (build_layers(fx) < 0 || fx_mount(fx) < 0) {                         \
                        fx_free(fx);                                                    \
                        ASSERT(!"fixture");                                             \
                }                                                                       \
                body_##name(fx);                                                        \
                if (fx_unmount(fx) < 0) {                                               \
                        fprintf(stderr, "# unmount: %s\n", fx->error);                  \
                        tap_current_failed = 1;                                         \
                }                                                                       \
                fx_free(fx);                                                            \
        }                                                                               \
        static void body_##name(struct fx *fx)

#define M(rel) fx_p(fx, "mnt", rel)
#define U(rel) fx_p(fx, "upper", rel)
#define L0(rel) fx_p(fx, "l0", rel)
#define L1(rel) fx_p(fx, "l1", rel)

static const struct timespec OLD_TIME = { 1000000000, 0 };

/* Owners are only set as root (the source test also runs as another user). */
static int set_meta(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
        struct timespec t[2] = { OLD_TIME, OLD_TIME };
        if ((geteuid() == 0 && lchown(path, uid, gid) < 0) || (mode && chmod(path, mode) < 0) ||
            utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        return 0;
}

/* l0 (top):    d/ (0750 1:2) d/a "hello" (0640 1000:1000, user.foo=bar)  d/b whiteout
 *              hl = link to d/a   link -> /etc/passwd   esc -> ../../..   o/ opaque o/n
 *              s/ (a directory over l1's symlink s)   p (fifo)
 * l1 (bottom): d/b "world"  d/c "lower c" (0604 7:8)  e/c e/f  o/old  s -> /etc
 *              big (sparse: 1 MiB hole, then "x")  t/u/v/w "deep" */
static int build_layers(struct fx *fx)
{
        int r = 0;
        r |= fx_mkdir_p(L0("d")) | fx_mkdir_p(L0("o")) | fx_mkdir_p(L0("s"));
        r |= fx_write(L0("d/a"), "hello") | fx_setxattr(L0("d/a"), "user.foo", "bar");
        r |= set_meta(L0("d/a"), 0640, 1000, 1000);
        r |= fx_whiteout(L0("d/b")) | fx_write(L0("o/n"), "new") | fx_opaque(L0("o"), fx->userxattr);
        r |= link(L0("d/a"), L0("hl")) < 0 ? -1 : 0;
        r |= symlink("/etc/passwd", L0("link")) < 0 ? -1 : 0;
        r |= symlink("../../..", L0("esc")) < 0 ? -1 : 0;
        r |= mkfifo(L0("p"), 0644) < 0 ? -1 : 0;
        r |= fx_mkdir_p(L1("d")) | fx_mkdir_p(L1("e")) | fx_mkdir_p(L1("o")) | fx_mkdir_p(L1("t/u/v"));
        r |= fx_write(L1("d/b"), "world") | fx_write(L1("d/c"), "lower c") | set_meta(L1("d/c"), 0604, 7, 8);
        r |= fx_write(L1("e/c"), "lowerc") | fx_write(L1("e/f"), "f") | fx_write(L1("o/old"), "old");
        r |= fx_write(L1("t/u/v/w"), "deep");
        r |= symlink("/etc", L1("s")) < 0 ? -1 : 0;
        int fd = open(L1("big"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        r |= fd < 0 || pwrite(fd, "x", 1, 1 << 20) != 1 ? -1 : 0;
        if (fd >= 0)
                close(fd);
        r |= set_meta(L0("d"), 0750, 1, 2);
        return r ? -EIO : 0;
}

/* ---- without a mount ---- */

static void test_override_parse(void)
{
        struct stat st = { .st_mode = S_IFREG | 0644 };
        ASSERT_INTEQ(ossb_fs_override_parse("1000:1001:0755", 14, &st), 0);
        ASSERT_INTEQ(st.st_uid, 1000);
        ASSERT_INTEQ(st.st_gid, 1001);
        ASSERT_INTEQ(st.st_mode, S_IFREG | 0755);
        ASSERT_INTEQ(ossb_fs_override_parse("0:0:4755:char-1-3", 17, &st), 0);
        ASSERT(S_ISCHR(st.st_mode) && (st.st_mode & 07777) == 04755);
        ASSERT_INTEQ(st.st_rdev, makedev(1, 3));
        ASSERT_INTEQ(ossb_fs_override_parse("5:6:644:dir", 11, &st), 0);
        ASSERT(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0644);
        const char *bad[] = { "", "1:2", "1:2:", "a:2:0644", "1:2:0999", "1:2:070000", "1:2:0644:bogus",
                              "1:2:0644:block-1", "-1:2:0644", "1:2:0644:char-1-x", "4294967295:0:0644" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_INTEQ(ossb_fs_override_parse(bad[i], strlen(bad[i]), &st), -EINVAL);
        ASSERT_INTEQ(ossb_fs_override_parse("1:2:0644\0x", 10, &st), -EINVAL);

        char buf[64];
        struct stat dev = { .st_mode = S_IFBLK | 0600, .st_uid = 3, .st_gid = 4, .st_rdev = makedev(8, 1) };
        ASSERT(ossb_fs_override_format(&dev, true, buf, sizeof(buf)) > 0);
        ASSERT_STREQ(buf, "3:4:0600:block-8-1");
        ASSERT(ossb_fs_override_format(&dev, false, buf, sizeof(buf)) > 0);
        ASSERT_STREQ(buf, "3:4:0600");
        ASSERT_INTEQ(ossb_fs_override_format(&dev, true, buf, 4), -ERANGE);
        struct stat back = { 0 };
        ASSERT_INTEQ(ossb_fs_override_parse("3:4:0600:block-8-1", 18, &back), 0);
        ASSERT(S_ISBLK(back.st_mode) && back.st_rdev == dev.st_rdev);
}

static int count_names(void *ud, const char *name, unsigned char type)
{
        struct ossb_strbuf *sb = ud;
        ossb_strbuf_appendf(sb, "%s:%d,", name, type);
        return 0;
}

/* The source on l0/l1 (the same checks with the openat2 fallback when `fallback`). */
static void check_source(struct fx *fx, bool fallback)
{
        struct ossb_fs_source *s0 = NULL, *s1 = NULL;
        struct stat st;
        unsigned fl;
        char buf[256];
        fsrc_dir_force_fallback(fallback);
        ASSERT_INTEQ(ossb_fs_source_dir_new(L0(""), fx->userxattr, &s0, NULL), 0);
        ASSERT_INTEQ(ossb_fs_source_dir_new(L1(""), fx->userxattr, &s1, NULL), 0);
        ASSERT_INTEQ(s0->ops->getattr(s0->ctx, "d/b", &st, &fl), 0);
        ASSERT(fl & OSSB_FS_WHITEOUT);
        ASSERT_INTEQ(s0->ops->getattr(s0->ctx, "o", &st, &fl), 0);
        ASSERT(fl & OSSB_FS_OPAQUE);
        ASSERT_INTEQ(s0->ops->getattr(s0->ctx, "d/a", &st, &fl), 0);
        ASSERT(fl == 0 && (st.st_mode & 07777) == 0640 && st.st_nlink == 2);
        ASSERT(st.st_uid == (geteuid() == 0 ? 1000 : geteuid()));
        /* never through a link: "not in this layer" (-ENOENT or -ENOTDIR) */
        int r = s1->ops->getattr(s1->ctx, "s/passwd", &st, &fl);
        ASSERT(r == -ENOENT || r == -ENOTDIR);
        r = s0->ops->getattr(s0->ctx, "esc/etc", &st, &fl);
        ASSERT(r == -ENOENT || r == -ENOTDIR);
        ASSERT_INTEQ(s0->ops->getattr(s0->ctx, "../l1", &st, &fl), -ENOENT);
        ASSERT_INTEQ(s0->ops->readlink(s0->ctx, "link", buf, sizeof(buf)), 11);
        ASSERT_STREQ(buf, "/etc/passwd");
        ASSERT_INTEQ(s0->ops->readlink(s0->ctx, "link", buf, 5), -ERANGE);
        ASSERT_INTEQ(s0->ops->getxattr(s0->ctx, "o", "trusted.overlay.opaque", buf, sizeof(buf)), -ENODATA);
        ASSERT_INTEQ(s0->ops->getxattr(s0->ctx, "o", "user.overlay.opaque", buf, sizeof(buf)), -ENODATA);
        ASSERT_INTEQ(s0->ops->getxattr(s0->ctx, "d/a", "user.foo", buf, sizeof(buf)), 3);
        ssize_t n = s0->ops->listxattr(s0->ctx, "o", buf, sizeof(buf));
        ASSERT(n == 0);
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT_INTEQ(s0->ops->readdir(s0->ctx, "d", count_names, &sb), 0);
        ASSERT(strstr(sb.buf, "a:8,") && strstr(sb.buf, "b:2,"));
        ossb_strbuf_free(&sb);
        void *h = NULL;
        ASSERT_INTEQ(s1->ops->open(s1->ctx, "d/c", &h), 0);
        ASSERT_INTEQ(s1->ops->read(s1->ctx, h, buf, sizeof(buf), 2), 5);
        ASSERT(memcmp(buf, "wer c", 5) == 0);
        s1->ops->release(s1->ctx, h);
        ASSERT_INTEQ(s0->ops->open(s0->ctx, "p", &h), -EINVAL); /* a fifo is never opened */
        ASSERT_INTEQ(s0->ops->open(s0->ctx, "link", &h), -EINVAL);
        ossb_fs_source_free(s0);
        ossb_fs_source_free(s1);
        fsrc_dir_force_fallback(false);
}

/* A path longer than PATH_MAX inside a layer. */
static void check_long_path(struct fx *fx)
{
        char comp[201];
        memset(comp, 'x', 200);
        comp[200] = '\0';
        _cleanup_close_ int fd = open(L1(""), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct ossb_strbuf path = OSSB_STRBUF_INIT;
        ASSERT(fd >= 0);
        for (int i = 0; i < 25; i++) {
                ASSERT(mkdirat(fd, comp, 0755) == 0);
                int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT(nfd >= 0);
                close(fd);
                fd = nfd;
                ossb_strbuf_appendf(&path, "%s%s", i ? "/" : "", comp);
        }
        ASSERT(path.len > PATH_MAX);
        struct ossb_fs_source *s1 = NULL;
        struct stat st;
        ASSERT_INTEQ(ossb_fs_source_dir_new(L1(""), fx->userxattr, &s1, NULL), 0);
        ASSERT_INTEQ(s1->ops->getattr(s1->ctx, path.buf, &st, NULL), 0);
        ASSERT(S_ISDIR(st.st_mode));
        ossb_fs_source_free(s1);
        ossb_strbuf_free(&path);
}

/* As another user the layers use user.overlay.* (no trusted.* there) and keep their owner. */
static void test_source_dir(void)
{
        struct fx *fx = fx_new(2, geteuid() != 0);
        ASSERT(fx);
        if (build_layers(fx) == 0) {
                check_source(fx, false);
                if (!tap_current_failed)
                        check_source(fx, true);
                if (!tap_current_failed)
                        check_long_path(fx);
        } else
                tap_current_failed = 1;
        fx_free(fx);
}

/* ---- the mount ---- */

static void assert_file(const char *path, const char *want)
{
        _cleanup_free_ char *got = fx_read(path);
        ASSERT_STREQ(got, want);
}

#define ASSERT_FILE(path, want)                 \
        do {                                    \
                assert_file(path, want);        \
                if (tap_current_failed)         \
                        return;                 \
        } while (0)

#define ASSERT_LIST(path, want)                 \
        do {                                    \
                char *_l = fx_list(path);       \
                bool _ok = _l && streq(_l, want); \
                if (!_ok)                       \
                        fprintf(stderr, "# %s lists \"%s\", expected \"%s\"\n", path, _l ? _l : "(null)", want); \
                free(_l);                       \
                ASSERT(_ok);                    \
        } while (0)

#define ASSERT_ERRNO(expr, e) ASSERT((expr) < 0 && errno == (e))

FX_TEST(test_merge)
{
        struct stat st;
        ASSERT_LIST(M(""), "big,d,e,esc,hl,link,o,p,s,t");
        ASSERT_LIST(M("d"), "a,c");
        ASSERT_LIST(M("o"), "n");
        ASSERT_LIST(M("s"), "");
        ASSERT_FILE(M("d/a"), "hello");
        ASSERT_FILE(M("d/c"), "lower c");
        ASSERT_FILE(M("t/u/v/w"), "deep");
        ASSERT_ERRNO(lstat(M("d/b"), &st), ENOENT);
        ASSERT_ERRNO(lstat(M("o/old"), &st), ENOENT);
        ASSERT_ERRNO(lstat(M("s/passwd"), &st), ENOENT);
        ASSERT(lstat(M("d/a"), &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000 && (st.st_mode & 07777) == 0640);
        ASSERT(lstat(M("d"), &st) == 0 && st.st_uid == 1 && st.st_gid == 2 && (st.st_mode & 07777) == 0750);
        ASSERT(st.st_nlink == 1); /* merged */
        ASSERT(lstat(M("link"), &st) == 0 && S_ISLNK(st.st_mode));
        ASSERT(lstat(M("p"), &st) == 0 && S_ISFIFO(st.st_mode));
        char buf[64];
        ssize_t n = readlink(M("esc"), buf, sizeof(buf));
        ASSERT(n == 8 && memcmp(buf, "../../..", 8) == 0);
        _cleanup_free_ char *v = fx_getxattr(M("d/a"), "user.foo");
        ASSERT_STREQ(v, "bar");
        ASSERT_ERRNO(lgetxattr(M("o"), "trusted.overlay.opaque", buf, sizeof(buf)), ENODATA);
        ASSERT(llistxattr(M("o"), buf, sizeof(buf)) == 0);
        ASSERT(lstat(M("big"), &st) == 0 && st.st_size == (1 << 20) + 1);
        struct statvfs sv;
        ASSERT(statvfs(M(""), &sv) == 0 && sv.f_blocks > 0);
}

FX_TEST(test_copy_up_metadata)
{
        struct stat st, lst;
        ASSERT(chmod(M("d/c"), 0600) == 0);
        ASSERT(lstat(U("d/c"), &st) == 0);
        ASSERT(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600 && st.st_uid == 7 && st.st_gid == 8);
        ASSERT(st.st_mtim.tv_sec == OLD_TIME.tv_sec);
        ASSERT_FILE(U("d/c"), "lower c");
        /* the parent came up first with its own metadata, and kept its times */
        ASSERT(lstat(U("d"), &st) == 0 && st.st_uid == 1 && st.st_gid == 2 && (st.st_mode & 07777) == 0750);
        ASSERT(st.st_mtim.tv_sec == OLD_TIME.tv_sec);
        /* xattrs and owner of a written file */
        int fd = open(M("d/a"), O_WRONLY | O_APPEND);
        ASSERT(fd >= 0);
        ASSERT(write(fd, " world", 6) == 6);
        close(fd);
        ASSERT_FILE(M("d/a"), "hello world");
        ASSERT_FILE(U("d/a"), "hello world");
        _cleanup_free_ char *v = fx_getxattr(U("d/a"), "user.foo");
        ASSERT_STREQ(v, "bar");
        ASSERT(lstat(U("d/a"), &st) == 0 && st.st_uid == 1000 && (st.st_mode & 07777) == 0640);
        /* a sparse file stays sparse */
        ASSERT(truncate(M("big"), (1 << 20) + 2) == 0);
        ASSERT(lstat(U("big"), &st) == 0 && lstat(L1("big"), &lst) == 0);
        ASSERT(st.st_size == (1 << 20) + 2 && st.st_blocks <= lst.st_blocks + 8);
        /* metadata-only changes of a symlink and a directory copy them up */
        ASSERT(lchown(M("link"), 5, 5) == 0);
        ASSERT(lstat(U("link"), &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid == 5);
        ASSERT(setxattr(M("t/u"), "user.x", "1", 1, 0) == 0);
        ASSERT(lstat(U("t/u"), &st) == 0 && S_ISDIR(st.st_mode));
        ASSERT(!fx_exists(U("t/u/v")));
        ASSERT_LIST(M("t/u"), "v");
        ASSERT(removexattr(M("t/u"), "user.x") == 0);
        ASSERT_ERRNO(removexattr(M("t/u"), "user.x"), ENODATA);
        ASSERT_ERRNO(removexattr(M("e"), "user.none"), ENODATA);
        ASSERT(!fx_exists(U("e"))); /* nothing to remove: no copy-up */
        ASSERT_ERRNO(setxattr(M("e"), "trusted.overlay.opaque", "y", 1, 0), EPERM);
        ASSERT_ERRNO(setxattr(M("e"), OSSB_FS_OVERRIDE_XATTR, "0:0:0755", 8, 0), EPERM);
        /* a POSIX ACL goes through and keeps the mode in step */
        static const char acl[] = { 2, 0, 0, 0, 1, 0, 6, 0, -1, -1, -1, -1, 4, 0, 4, 0, -1, -1, -1, -1,
                                    16, 0, 4, 0, -1, -1, -1, -1, 32, 0, 0, 0, -1, -1, -1, -1 };
        ASSERT(setxattr(M("e/f"), "system.posix_acl_access", acl, sizeof(acl), 0) == 0);
        ASSERT(lstat(M("e/f"), &st) == 0 && (st.st_mode & 0777) == 0640);
        ASSERT(lgetxattr(U("e/f"), "system.posix_acl_access", NULL, 0) > 0);
}

FX_TEST(test_create_ops)
{
        struct stat st;
        ASSERT(fx_write(M("d/new"), "n") == 0);
        ASSERT(lstat(U("d/new"), &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 0644);
        ASSERT(mkdir(M("d/sub"), 0700) == 0 && lstat(U("d/sub"), &st) == 0 && (st.st_mode & 07777) == 0700);
        ASSERT(!fx_getxattr(U("d/sub"), "trusted.overlay.opaque"));
        ASSERT(mkfifo(M("d/fifo"), 0600) == 0 && lstat(U("d/fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
        ASSERT(mknod(M("d/null"), S_IFCHR | 0666, makedev(1, 3)) == 0);
        ASSERT(lstat(M("d/null"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
        ASSERT_ERRNO(mknod(M("d/wh"), S_IFCHR | 0, makedev(0, 0)), EPERM);
        ASSERT(symlink("target", M("d/sl")) == 0 && lstat(U("d/sl"), &st) == 0 && S_ISLNK(st.st_mode));
        mode_t old_umask = umask(077);
        int fd = open(M("d/masked"), O_CREAT | O_WRONLY, 0666);
        int md = mkdir(M("d/maskeddir"), 0777);
        umask(old_umask);
        ASSERT(fd >= 0 && md == 0);
        close(fd);
        ASSERT(lstat(U("d/masked"), &st) == 0 && (st.st_mode & 07777) == 0600);
        ASSERT(lstat(U("d/maskeddir"), &st) == 0 && (st.st_mode & 07777) == 0700);
        ASSERT_ERRNO(mkdir(M("d/a"), 0755), EEXIST);
        /* create over a lower name whited out */
        ASSERT(fx_write(M("d/b"), "again") == 0);
        ASSERT_FILE(M("d/b"), "again");
        ASSERT(lstat(U("d/b"), &st) == 0 && S_ISREG(st.st_mode));
        /* a directory over a deleted lower directory is opaque */
        ASSERT(unlink(M("e/c")) == 0 && unlink(M("e/f")) == 0 && rmdir(M("e")) == 0);
        ASSERT(lstat(U("e"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
        ASSERT(mkdir(M("e"), 0755) == 0);
        ASSERT_LIST(M("e"), "");
        _cleanup_free_ char *o = fx_getxattr(U("e"), "trusted.overlay.opaque");
        ASSERT_STREQ(o, "y");
        /* setgid directories give their group */
        ASSERT(mkdir(M("g"), 02775) == 0 && chown(M("g"), 0, 42) == 0 && chmod(M("g"), 02775) == 0);
        ASSERT(fx_write(M("g/f"), "") == 0 && mkdir(M("g/sub"), 0755) == 0);
        ASSERT(lstat(M("g/f"), &st) == 0 && st.st_gid == 42);
        ASSERT(lstat(M("g/sub"), &st) == 0 && st.st_gid == 42 && (st.st_mode & S_ISGID));
        /* names at the limit */
        char name[NAME_MAX + 2];
        memset(name, 'n', NAME_MAX + 1);
        name[NAME_MAX + 1] = '\0';
        _cleanup_free_ char *toolong = ossb_path_join(M(""), name);
        ASSERT_ERRNO(open(toolong, O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
        name[NAME_MAX] = '\0';
        _cleanup_free_ char *longest = ossb_path_join(M(""), name);
        ASSERT(fx_write(longest, "max") == 0);
        ASSERT_FILE(longest, "max");
}

FX_TEST(test_links)
{
        struct stat a, b, c;
        /* lower hard links are one file */
        ASSERT(lstat(M("d/a"), &a) == 0 && lstat(M("hl"), &b) == 0);
        ASSERT(a.st_ino == b.st_ino && a.st_nlink == 2);
        /* writing through one name copies up once and keeps both names linked */
        ASSERT(fx_write(M("hl"), "changed") == 0);
        ASSERT_FILE(M("d/a"), "changed");
        ASSERT(lstat(U("d/a"), &a) == 0 && lstat(U("hl"), &b) == 0);
        ASSERT(a.st_ino == b.st_ino && a.st_nlink == 2);
        /* link() of a lower file across directories */
        ASSERT(link(M("d/c"), M("t/c2")) == 0);
        ASSERT(lstat(M("d/c"), &a) == 0 && lstat(M("t/c2"), &b) == 0 && lstat(U("t/c2"), &c) == 0);
        ASSERT(a.st_ino == b.st_ino && a.st_nlink == 2 && c.st_nlink == 2);
        ASSERT_FILE(M("t/c2"), "lower c");
        /* over a whiteout */
        ASSERT(link(M("d/c"), M("d/b")) == 0 && lstat(M("d/b"), &b) == 0 && b.st_nlink == 3);
        ASSERT_ERRNO(link(M("d/c"), M("d/a")), EEXIST);
        ASSERT_ERRNO(link(M("d"), M("d2")), EPERM);
        /* renaming a link onto another name of the same file changes nothing */
        ASSERT(rename(M("t/c2"), M("d/c")) == 0);
        ASSERT(fx_exists(M("t/c2")) && fx_exists(M("d/c")));
}

FX_TEST(test_unlink_rmdir)
{
        struct stat st;
        ASSERT(unlink(M("d/c")) == 0);
        ASSERT(lstat(U("d/c"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0 && (st.st_mode & 07777) == 0);
        ASSERT_ERRNO(lstat(M("d/c"), &st), ENOENT);
        ASSERT_LIST(M("d"), "a");
        ASSERT(fx_write(M("d/up"), "u") == 0 && unlink(M("d/up")) == 0);
        ASSERT(!fx_exists(U("d/up")));
        ASSERT_ERRNO(rmdir(M("e")), ENOTEMPTY);
        ASSERT_ERRNO(unlink(M("e")), EISDIR);
        ASSERT_ERRNO(rmdir(M("d/a")), ENOTDIR);
        ASSERT(unlink(M("e/c")) == 0 && unlink(M("e/f")) == 0 && rmdir(M("e")) == 0);
        ASSERT(lstat(U("e"), &st) == 0 && S_ISCHR(st.st_mode));
        /* a merged directory with upper content and whiteouts */
        ASSERT(fx_write(M("t/u/x"), "x") == 0 && unlink(M("t/u/v/w")) == 0);
        ASSERT(unlink(M("t/u/x")) == 0 && rmdir(M("t/u/v")) == 0 && rmdir(M("t/u")) == 0);
        ASSERT(lstat(U("t/u"), &st) == 0 && S_ISCHR(st.st_mode));
        ASSERT_LIST(M("t"), "");
        /* an upper-only directory holding stale whiteouts */
        ASSERT(mkdir(M("n"), 0755) == 0 && fx_whiteout(U("n/stale")) == 0);
        ASSERT(rmdir(M("n")) == 0 && !fx_exists(U("n")));
        ASSERT(rmdir(M("o")) != 0 && unlink(M("o/n")) == 0 && rmdir(M("o")) == 0);
        ASSERT_LIST(M(""), "big,d,esc,hl,link,p,s,t");
        ASSERT_LIST(fx_p(fx, "work", ""), "");
}

FX_TEST(test_rename)
{
        struct stat st, before;
        ASSERT(lstat(M("d/a"), &before) == 0);
        ASSERT(rename(M("d/a"), M("d/a2")) == 0);
        ASSERT(lstat(M("d/a2"), &st) == 0 && st.st_ino == before.st_ino);
        ASSERT_FILE(M("d/a2"), "hello");
        ASSERT(lstat(U("d/a"), &st) == 0 && S_ISCHR(st.st_mode));
        /* an upper file over a lower one */
        ASSERT(fx_write(M("new"), "new") == 0 && rename(M("new"), M("d/c")) == 0);
        ASSERT_FILE(M("d/c"), "new");
        ASSERT(!fx_exists(U("new")));
        ASSERT(renameat2(AT_FDCWD, M("d/a2"), AT_FDCWD, M("d/c"), RENAME_NOREPLACE) < 0 && errno == EEXIST);
        /* exchange a lower file with an upper one */
        ASSERT(fx_write(M("up"), "up") == 0);
        ASSERT(renameat2(AT_FDCWD, M("up"), AT_FDCWD, M("t/u/v/w"), RENAME_EXCHANGE) == 0);
        ASSERT_FILE(M("up"), "deep");
        ASSERT_FILE(M("t/u/v/w"), "up");
        /* a lower directory moves whole */
        ASSERT(rename(M("e"), M("e2")) == 0);
        ASSERT_LIST(M("e2"), "c,f");
        ASSERT_FILE(M("e2/c"), "lowerc");
        ASSERT_ERRNO(lstat(M("e"), &st), ENOENT);
        ASSERT(lstat(U("e"), &st) == 0 && S_ISCHR(st.st_mode));
        ASSERT(!fx_getxattr(U("e2"), "trusted.overlay.opaque"));
        ASSERT(rename(M("t"), M("s/t")) == 0);
        ASSERT_FILE(M("s/t/u/v/w"), "up");
        /* a directory onto an emptied lower directory is opaque there */
        ASSERT(unlink(M("o/n")) == 0 && mkdir(M("nd"), 0755) == 0 && fx_write(M("nd/f"), "f") == 0);
        ASSERT(rename(M("nd"), M("o")) == 0);
        ASSERT_LIST(M("o"), "f");
        _cleanup_free_ char *op = fx_getxattr(U("o"), "trusted.overlay.opaque");
        ASSERT_STREQ(op, "y");
        ASSERT_ERRNO(rename(M("d"), M("o")), ENOTEMPTY);
        ASSERT_ERRNO(rename(M("d/c"), M("o")), EISDIR);
        ASSERT_ERRNO(rename(M("o"), M("d/c")), ENOTDIR);
        ASSERT_ERRNO(rename(M("nothere"), M("x")), ENOENT);
        ASSERT_ERRNO(renameat2(AT_FDCWD, M("d/c"), AT_FDCWD, M("nothere"), RENAME_EXCHANGE), ENOENT);
        /* exchange two directories, one of them lower */
        ASSERT(mkdir(M("x"), 0755) == 0 && fx_write(M("x/in"), "in") == 0);
        ASSERT(renameat2(AT_FDCWD, M("x"), AT_FDCWD, M("d"), RENAME_EXCHANGE) == 0);
        ASSERT_LIST(M("d"), "in");
        ASSERT_LIST(M("x"), "a2,c");
        ASSERT_LIST(M(""), "big,d,e2,esc,hl,link,o,p,s,up,x");
        ASSERT_LIST(fx_p(fx, "work", ""), "");
}

FX_TEST(test_mmap_fallocate)
{
        int fd = open(M("d/c"), O_RDWR);
        ASSERT(fd >= 0);
        char *p = mmap(NULL, 7, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT(p != MAP_FAILED);
        memcpy(p, "LOWER", 5);
        ASSERT(msync(p, 7, MS_SYNC) == 0);
        munmap(p, 7);
        close(fd);
        ASSERT_FILE(M("d/c"), "LOWER c");
        ASSERT_FILE(U("d/c"), "LOWER c");
        fd = open(M("falloc"), O_RDWR | O_CREAT, 0644);
        ASSERT(fd >= 0);
        ASSERT(fallocate(fd, 0, 0, 1 << 20) == 0);
        struct stat st;
        ASSERT(fstat(fd, &st) == 0 && st.st_size == 1 << 20);
        ASSERT(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 19) == 0);
        ASSERT(pwrite(fd, "z", 1, (1 << 20) - 1) == 1);
        close(fd);
        ASSERT(lstat(U("falloc"), &st) == 0 && st.st_size == 1 << 20);
        fd = open(M("big"), O_RDONLY);
        ASSERT(fd >= 0);
        off_t data = lseek(fd, 0, SEEK_DATA);
        close(fd);
        ASSERT(data >= (1 << 20) - 4096 && data <= 1 << 20);
        /* a reader opened on the lower file sees a write made through another handle */
        int r = open(M("e/f"), O_RDONLY);
        ASSERT(r >= 0);
        ASSERT(fx_write(M("e/f"), "rewritten") == 0);
        char buf[16] = "";
        ssize_t n = pread(r, buf, sizeof(buf) - 1, 0);
        close(r);
        ASSERT(n == 9 && memcmp(buf, "rewritten", 9) == 0);
}

static int drop_caches(void)
{
        sync();
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = write(fd, "2", 1) == 1 ? 0 : -errno;
        close(fd);
        return r;
}

FX_TEST(test_inode_numbers)
{
        struct stat a, b, c;
        ASSERT(lstat(M("d/c"), &a) == 0);
        ASSERT(chmod(M("d/c"), 0644) == 0 && lstat(M("d/c"), &b) == 0);
        ASSERT(a.st_ino == b.st_ino);
        ASSERT(fx_write(M("fresh"), "f") == 0 && lstat(M("fresh"), &c) == 0);
        ASSERT(drop_caches() == 0);
        ASSERT(lstat(M("d/c"), &b) == 0 && a.st_ino == b.st_ino);
        ASSERT(lstat(M("fresh"), &b) == 0 && c.st_ino == b.st_ino);
        ASSERT(lstat(M("t/u/v/w"), &a) == 0);
        ASSERT(drop_caches() == 0);
        ASSERT(lstat(M("t/u/v/w"), &b) == 0 && a.st_ino == b.st_ino);
        /* readdir's d_ino is st_ino */
        DIR *d = opendir(M("d"));
        ASSERT(d);
        struct dirent *de;
        int checked = 0;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = ossb_path_join(M("d"), de->d_name);
                if (lstat(p, &a) == 0 && a.st_ino == de->d_ino)
                        checked++;
                else
                        checked = -100;
        }
        closedir(d);
        ASSERT_INTEQ(checked, 2);
        /* inode numbers of all entries are distinct */
        ASSERT(lstat(M("d"), &a) == 0 && lstat(M("e"), &b) == 0 && lstat(M("e/c"), &c) == 0);
        ASSERT(a.st_ino != b.st_ino && b.st_ino != c.st_ino);
}

FX_TEST(test_open_unlinked)
{
        int fd = open(M("d/c"), O_RDWR);
        ASSERT(fd >= 0);
        ASSERT(unlink(M("d/c")) == 0);
        ASSERT(pwrite(fd, "X", 1, 0) == 1);
        char buf[8] = "";
        ASSERT(pread(fd, buf, 7, 0) == 7 && memcmp(buf, "Xower c", 7) == 0);
        struct stat st;
        ASSERT(fstat(fd, &st) == 0 && st.st_size == 7);
        ASSERT(fchmod(fd, 0600) == 0);
        ASSERT_ERRNO(lstat(M("d/c"), &st), ENOENT);
        ASSERT(fx_write(M("d/c"), "new one") == 0);
        ASSERT_FILE(M("d/c"), "new one");
        close(fd);
        /* the orphan is gone from the work directory once closed */
        ASSERT(fx_unmount(fx) == 0);
        ASSERT_LIST(fx_p(fx, "work", ""), "");
        ASSERT_FILE(U("d/c"), "new one");
        ASSERT(fx_mount(fx) == 0);
        /* a directory removed while a process is in it */
        ASSERT(mkdir(M("gone"), 0755) == 0);
        int dfd = open(M("gone"), O_RDONLY | O_DIRECTORY);
        ASSERT(dfd >= 0);
        ASSERT(rmdir(M("gone")) == 0);
        ASSERT(openat(dfd, "x", O_CREAT | O_WRONLY, 0644) < 0);
        ASSERT(mkdirat(dfd, "y", 0755) < 0);
        close(dfd);
        ASSERT_FILE(M("d/a"), "hello");
}

FX_TEST(test_journal)
{
        ASSERT(fx_write(M("d/new"), "n") == 0);
        ASSERT(chmod(M("d/a"), 0600) == 0);
        ASSERT(unlink(M("d/c")) == 0);
        ASSERT(mkdir(M("n"), 0755) == 0 && fx_write(M("n/f"), "") == 0);
        ASSERT(unlink(M("e/c")) == 0 && unlink(M("e/f")) == 0 && rmdir(M("e")) == 0 && mkdir(M("e"), 0755) == 0);
        ASSERT(rename(M("t"), M("t2")) == 0);
        ASSERT(fx_unmount(fx) == 0);
        ASSERT_STREQ(fx->journal, "M d/a\n"
                                  "D d/c\n"
                                  "C d/new\n"
                                  "MDO e\n"
                                  "D e/c\n"
                                  "D e/f\n"
                                  "C n\n"
                                  "C n/f\n"
                                  "D t\n"
                                  "C t2\n"
                                  "C t2/u\n"
                                  "C t2/u/v\n"
                                  "C t2/u/v/w\n");
        ASSERT(fx_mount(fx) == 0);
}

/* A second mount over the same upper serves the earlier changes. */
FX_TEST(test_remount_upper)
{
        ASSERT(unlink(M("d/c")) == 0 && fx_write(M("d/z"), "z") == 0 && unlink(M("o/n")) == 0);
        ASSERT(rmdir(M("o")) == 0 && mkdir(M("o"), 0700) == 0 && fx_write(M("o/m"), "m") == 0);
        ASSERT(fx_unmount(fx) == 0);
        ASSERT(fx_mount(fx) == 0);
        ASSERT_LIST(M("d"), "a,z");
        ASSERT_LIST(M("o"), "m");
        ASSERT_FILE(M("d/z"), "z");
}

/* ---- races ---- */

struct racer {
        struct fx *fx;
        int id;
        int errors;
};

static void *race_thread(void *ud)
{
        struct racer *rc = ud;
        struct fx *fx = rc->fx;
        char a[4096], b[4096];
        for (int i = 0; i < 300; i++) {
                snprintf(a, sizeof(a), "%s/r%d", M("d"), i % 4);
                snprintf(b, sizeof(b), "%s/r%d", M("e"), (i + rc->id) % 4);
                switch ((i + rc->id) % 6) {
                case 0: (void) fx_write(a, "x"); break;
                case 1: (void) rename(a, b); break;
                case 2: (void) unlink(b); break;
                case 3: (void) rename(M("e/c"), M("d/c2")); (void) rename(M("d/c2"), M("e/c")); break;
                case 4: (void) mkdir(a, 0755); (void) rmdir(a); break;
                default: {
                        char *l = fx_list(M("d"));
                        if (!l)
                                rc->errors++;
                        free(l);
                }
                }
        }
        return NULL;
}

FX_TEST(test_races)
{
        pthread_t t[4];
        struct racer rc[4];
        for (int i = 0; i < 4; i++) {
                rc[i] = (struct racer) { fx, i, 0 };
                ASSERT(pthread_create(&t[i], NULL, race_thread, &rc[i]) == 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 4; i++)
                ASSERT_INTEQ(rc[i].errors, 0);
        ASSERT_FILE(M("d/a"), "hello");
}

/* Deep paths made through the mount, each level a long name. */
FX_TEST(test_deep_paths)
{
        char comp[101];
        memset(comp, 'q', 100);
        comp[100] = '\0';
        int fd = open(M(""), O_RDONLY | O_DIRECTORY);
        ASSERT(fd >= 0);
        for (int i = 0; i < 60; i++) {
                if (mkdirat(fd, comp, 0755) < 0)
                        break;
                int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY);
                close(fd);
                fd = nfd;
                if (fd < 0)
                        break;
        }
        ASSERT(fd >= 0);
        int f = openat(fd, "leaf", O_CREAT | O_WRONLY, 0644);
        ASSERT(f >= 0);
        ASSERT(write(f, "leaf", 4) == 4);
        close(f);
        close(fd);
        ASSERT(drop_caches() == 0);
        char rel[8192] = "";
        size_t len = 0;
        for (int i = 0; i < 60; i++)
                len += (size_t) snprintf(rel + len, sizeof(rel) - len, "%s/", comp);
        snprintf(rel + len, sizeof(rel) - len, "leaf");
        fd = open(M(""), O_RDONLY | O_DIRECTORY);
        ASSERT(fd >= 0);
        /* walk it again (the path is longer than PATH_MAX: one level at a time) */
        for (int i = 0; i < 60 && fd >= 0; i++) {
                int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY);
                close(fd);
                fd = nfd;
        }
        ASSERT(fd >= 0);
        f = openat(fd, "leaf", O_RDONLY);
        close(fd);
        ASSERT(f >= 0);
        char buf[8] = "";
        ASSERT(read(f, buf, 8) == 4 && memcmp(buf, "leaf", 4) == 0);
        close(f);
        ASSERT(rename(M(comp), M("moved")) == 0);
}

/* Small writes cost no extra round trip: with FUSE_HANDLE_KILLPRIV_V2 (fuse/wire.c) the kernel
 * stops asking for security.capability before each write(2).  Counted by opcode, not timed. */
FX_TEST(test_small_writes_no_getxattr)
{
        struct ossb_fusefs_stats before, after;
        ossb_fusefs_get_stats(fx->fs, &before);
        int fd = open(M("lines"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT(fd >= 0);
        for (int i = 0; i < 2000; i++)
                if (write(fd, "0123456789\n", 11) != 11)
                        break;
        ASSERT(close(fd) == 0);
        ossb_fusefs_get_stats(fx->fs, &after);
        struct stat st;
        ASSERT(stat(M("lines"), &st) == 0 && st.st_size == 2000 * 11);
        uint64_t getxattr = after.by_opcode[FUSE_GETXATTR_OPCODE] - before.by_opcode[FUSE_GETXATTR_OPCODE];
        fprintf(stderr, "# GETXATTR requests for 2000 writes: %llu\n", (unsigned long long) getxattr);
        ASSERT(getxattr < 20);
}

int main(void)
{
        RUN_TEST(test_override_parse);
        RUN_TEST(test_source_dir);
        can_mount = fx_can_mount(&why_not);
        if (!can_mount)
                fprintf(stderr, "# no FUSE mounts here: %s\n", why_not);
        RUN_MOUNT_TEST(test_merge);
        RUN_MOUNT_TEST(test_copy_up_metadata);
        RUN_MOUNT_TEST(test_create_ops);
        RUN_MOUNT_TEST(test_links);
        RUN_MOUNT_TEST(test_unlink_rmdir);
        RUN_MOUNT_TEST(test_rename);
        RUN_MOUNT_TEST(test_mmap_fallocate);
        RUN_MOUNT_TEST(test_inode_numbers);
        RUN_MOUNT_TEST(test_open_unlinked);
        RUN_MOUNT_TEST(test_journal);
        RUN_MOUNT_TEST(test_remount_upper);
        RUN_MOUNT_TEST(test_races);
        RUN_MOUNT_TEST(test_deep_paths);
        RUN_MOUNT_TEST(test_small_writes_no_getxattr);
        TAP_END();
}
