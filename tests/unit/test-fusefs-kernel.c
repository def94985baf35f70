/* tests/unit/test-fusefs-kernel.c - fuse/ against kernel overlayfs and in user namespaces:
 *   - the same operations on a kernel overlay mount (redirect_dir=off, index=off,
 *     metacopy=off) and on fusefs over the same lowers leave the same upper directory (entries,
 *     types, modes, owners, sizes, contents, links, whiteouts, opaque markers, xattrs; the
 *     kernel's own bookkeeping attributes overlay.origin/impure/uuid left out);
 *   - mounted in a user namespace (as root mapped to itself, and as an unprivileged user when
 *     /dev/fuse lets one open it) with userxattr: user.overlay.* markers, whiteouts made
 *     unprivileged, and owners and devices the namespace cannot make kept in the override
 *     attribute.  (Inside a namespace the kernel itself refuses a chown to an unmapped id or
 *     a mknod of a device before FUSE sees it; the override matters for copy-ups of entries
 *     whose owner or type the namespace cannot make: layers unpacked rootless, devices.) */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "tests/unit/tap.h"
#include "tests/unit/test-fusefs-util.h"

static bool can_mount;
static const char *why_not;

static void skip(const char *name, const char *why)
{
        tap_count++;
        printf("ok %d - %s # SKIP %s\n", tap_count, name, why);
}

#define L(fx, i, rel) fx_p(fx, i == 0 ? "l0" : "l1", rel)

static int build_layers(struct fx *fx, bool userxattr)
{
        int r = 0;
        r |= fx_mkdir_p(L(fx, 0, "d")) | fx_mkdir_p(L(fx, 0, "o")) | fx_mkdir_p(L(fx, 1, "d"));
        r |= fx_mkdir_p(L(fx, 1, "e")) | fx_mkdir_p(L(fx, 1, "o")) | fx_mkdir_p(L(fx, 1, "t/u/v"));
        r |= fx_write(L(fx, 0, "d/a"), "hello") | fx_whiteout(L(fx, 0, "d/b"));
        r |= fx_write(L(fx, 0, "o/n"), "new") | fx_opaque(L(fx, 0, "o"), userxattr);
        r |= symlink("../../..", L(fx, 0, "esc")) < 0 || symlink("/etc/passwd", L(fx, 0, "link")) < 0;
        r |= fx_write(L(fx, 1, "d/b"), "world") | fx_write(L(fx, 1, "d/c"), "lower c");
        r |= fx_write(L(fx, 1, "e/c"), "lowerc") | fx_write(L(fx, 1, "e/f"), "f");
        r |= fx_write(L(fx, 1, "o/old"), "old") | fx_write(L(fx, 1, "t/u/v/w"), "deep");
        r |= fx_write(L(fx, 1, "big"), "big file") | fx_setxattr(L(fx, 1, "e/f"), "user.keep", "1");
        r |= chmod(L(fx, 1, "e"), 0711) < 0 || (geteuid() == 0 && chown(L(fx, 1, "e/f"), 3, 4) < 0);
        return r ? -EIO : 0;
}

/* ---- the same operations on both ---- */

#define STEP(expr)                                                                              \
        do {                                                                                    \
                if ((expr) < 0) {                                                               \
                        fprintf(stderr, "# %s:%d: %s: %s\n", __FILE__, __LINE__, #expr, strerror(errno)); \
                        return -1;                                                              \
                }                                                                               \
        } while (0)

static int append(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        return fd < 0 ? -1 : ossb_write_all(fd, s, strlen(s));
}

static int script(struct fx *fx)
{
#define P(rel) fx_p(fx, "mnt", rel)
        STEP(append(P("d/c"), "+"));
        STEP(chmod(P("e/f"), 0600));
        STEP(lchown(P("link"), 5, 5));
        STEP(lsetxattr(P("t/u"), "user.k", "v", 1, 0));
        STEP(fx_write(P("d/new"), "n"));
        STEP(mkdir(P("n"), 0750));
        STEP(fx_write(P("n/f"), "f"));
        STEP(unlink(P("e/c")));
        STEP(unlink(P("o/n")));
        STEP(rmdir(P("o")));
        STEP(mkdir(P("o"), 0755));
        STEP(unlink(P("t/u/v/w")));
        STEP(rmdir(P("t/u/v")));
        STEP(rename(P("d/c"), P("d/c2")));
        STEP(rename(P("e/f"), P("e/f2")));
        STEP(rename(P("big"), P("big2")));
        STEP(symlink("target", P("d/sl")));
        STEP(mkfifo(P("d/ff"), 0640));
        STEP(link(P("e/f2"), P("n/f2")));
        STEP(truncate(P("d/c2"), 3));
        STEP(mkdir(P("nd"), 0755));
        STEP(rename(P("nd"), P("d/nd")));
        STEP(rename(P("n/f"), P("t/f")));
        STEP(mkdir(P("x"), 0755));
        STEP(mkdir(P("x/y"), 0755));
        STEP(rmdir(P("x/y")));
        STEP(rename(P("x"), P("n/x")));
        STEP(unlink(P("esc")));
        STEP(rename(P("n"), P("nn")));
        STEP(fx_write(P("d/b"), "again"));
        STEP(lsetxattr(P("d/a"), "user.new", "1", 1, 0));
        STEP(lremovexattr(P("big2"), "user.none") < 0 && errno == ENODATA ? 0 : -1);
        return 0;
#undef P
}

static const char *const kernel_only[] = { "trusted.overlay.origin", "trusted.overlay.impure",
                                           "trusted.overlay.uuid", NULL };

static char *run_script_on(bool kernel, char **ret_lowers)
{
        struct fx *fx = fx_new(2, false);
        char *dump = NULL;
        if (!fx || build_layers(fx, false) < 0)
                goto out;
        if ((kernel ? fx_kernel_mount(fx) : fx_mount(fx)) < 0)
                goto out;
        int r = script(fx);
        int u = kernel ? fx_kernel_unmount(fx) : fx_unmount(fx);
        if (r == 0 && u == 0)
                dump = fx_dump_tree(fx->upper, kernel_only);
        if (ret_lowers)
                *ret_lowers = fx_dump_tree(fx->root, kernel_only);
out:
        fx_free(fx);
        return dump;
}

static void print_diff(const char *a, const char *b)
{
        FILE *fa = fopen("/tmp/ossb-fusefs-kernel.upper", "w"), *fb = fopen("/tmp/ossb-fusefs-fuse.upper", "w");
        if (fa)
                fputs(a, fa);
        if (fb)
                fputs(b, fb);
        if (fa)
                fclose(fa);
        if (fb)
                fclose(fb);
        fprintf(stderr, "# the uppers differ: diff /tmp/ossb-fusefs-kernel.upper /tmp/ossb-fusefs-fuse.upper\n");
        fflush(stderr);
        if (system("diff /tmp/ossb-fusefs-kernel.upper /tmp/ossb-fusefs-fuse.upper | sed 's/^/# /' >&2") < 0)
                return;
}

static void test_same_upper_as_kernel(void)
{
        _cleanup_free_ char *kernel = run_script_on(true, NULL);
        _cleanup_free_ char *fuse = run_script_on(false, NULL);
        ASSERT(kernel);
        ASSERT(fuse);
        if (!streq(kernel, fuse))
                print_diff(kernel, fuse);
        ASSERT(streq(kernel, fuse));
        /* a sanity check that the dump saw the interesting parts */
        ASSERT(strstr(fuse, "o 040755 0:0 trusted.overlay.opaque=y\n"));
        ASSERT(strstr(fuse, "e/c 020000 0:0 rdev=0:0\n"));
}

/* ---- user namespaces ---- */

static int write_str(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        return fd < 0 ? -1 : ossb_write_all(fd, s, strlen(s));
}

/* In the child: a user namespace mapping 0 to our uid (and gid), with its mount namespace. */
static int enter_userns(void)
{
        uid_t uid = geteuid();
        gid_t gid = getegid();
        char map[64];
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
                return -1;
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) uid);
        if (write_str("/proc/self/uid_map", map) < 0 || write_str("/proc/self/setgroups", "deny") < 0)
                return -1;
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned) gid);
        if (write_str("/proc/self/gid_map", map) < 0)
                return -1;
        return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

#define CHECK(expr)                                                                             \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "# userns child: %s:%d: %s (%s)\n", __FILE__, __LINE__, #expr, strerror(errno)); \
                        return __LINE__;                                                        \
                }                                                                               \
        } while (0)

/* Inside the namespace.  d/ov carries an override (a layer unpacked rootless: its owner 1000
 * is not mapped here, so it shows as the overflow id); d/dev is a device node the namespace
 * cannot create. */
static int userns_ops(struct fx *fx)
{
#define P(rel) fx_p(fx, "mnt", rel)
        struct stat st;
        _cleanup_free_ char *l = fx_list(P("o"));
        CHECK(l && streq(l, "n")); /* user.overlay.opaque honoured */
        bool dev = fx_exists(fx_p(fx, "l1", "d/dev")); /* made when the test runs as root */
        _cleanup_free_ char *d = fx_list(P("d"));
        CHECK(d && streq(d, dev ? "a,c,dev,ov" : "a,c,ov"));
        CHECK(fx_write(P("d/mine"), "m") == 0);
        CHECK(chmod(P("d/mine"), 0751) == 0);
        CHECK(lstat(P("d/mine"), &st) == 0 && (st.st_mode & 07777) == 0751 && st.st_uid == 0);
        /* the kernel refuses changes to a file whose owner it cannot map ... */
        CHECK(lstat(P("d/ov"), &st) == 0 && st.st_uid == 65534 && (st.st_mode & 07777) == 0666);
        CHECK(chmod(P("d/ov"), 0600) < 0 && errno == EOVERFLOW);
        CHECK(append(P("d/ov"), "+") < 0 && errno == EACCES);
        CHECK(rename(P("d/ov"), P("d/ov2")) < 0 && errno == EOVERFLOW);
        /* ... but such a directory is copied up as the parent of a change: the override stays */
        CHECK(lstat(P("ovd"), &st) == 0 && st.st_uid == 65534 && (st.st_mode & 07777) == 0777);
        CHECK(fx_write(P("ovd/sub/f"), "f") == 0);
        CHECK(lstat(P("ovd"), &st) == 0 && st.st_uid == 65534 && (st.st_mode & 07777) == 0777);
        if (dev) {
                CHECK(lstat(P("d/dev"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
                CHECK(chmod(P("d/dev"), 0600) == 0); /* copy-up of a device the namespace cannot make */
                CHECK(lstat(P("d/dev"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
                CHECK((st.st_mode & 07777) == 0600);
        }
        CHECK(unlink(P("d/c")) == 0); /* an unprivileged whiteout */
        CHECK(unlink(P("o/n")) == 0 && rmdir(P("o")) == 0 && mkdir(P("o"), 0755) == 0);
        CHECK(rename(P("e"), P("e2")) == 0);
        CHECK(chmod(P("t/u/v/w"), 0600) == 0);
        return 0;
#undef P
}

/* `as`: the user to become first (0: stay who we are). */
static int userns_child(struct fx *fx, uid_t as)
{
        if (as != 0 && (setgroups(0, NULL), setresgid(as, as, as) < 0 || setresuid(as, as, as) < 0))
                return 2;
        if (as != 0) /* after the id change /proc/self is root's until we are dumpable again */
                (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        if (enter_userns() < 0) {
                fprintf(stderr, "# userns child: cannot enter a user namespace: %s\n", strerror(errno));
                return 3;
        }
        fx->userxattr = true;
        if (fx_mount(fx) < 0)
                return 4;
        int r = userns_ops(fx);
        if (fx_unmount(fx) < 0) {
                fprintf(stderr, "# userns child: unmount: %s\n", fx->error ? fx->error : "?");
                return r ? r : 5;
        }
        return r;
}

static int run_userns(struct fx *fx, uid_t as)
{
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0)
                _exit(userns_child(fx, as));
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

static void check_userns_upper(struct fx *fx)
{
        struct stat st;
        _cleanup_free_ char *ov = fx_getxattr(fx_p(fx, "upper", "ovd"), OSSB_FS_OVERRIDE_XATTR);
        ASSERT_STREQ(ov, "1000:1000:0777");
        ASSERT(lstat(fx_p(fx, "upper", "ovd/sub/f"), &st) == 0 && S_ISREG(st.st_mode));
        if (fx_exists(fx_p(fx, "l1", "d/dev"))) {
                _cleanup_free_ char *dev = fx_getxattr(fx_p(fx, "upper", "d/dev"), OSSB_FS_OVERRIDE_XATTR);
                ASSERT_STREQ(dev, "0:0:0600:char-1-3");
                ASSERT(lstat(fx_p(fx, "upper", "d/dev"), &st) == 0 && S_ISREG(st.st_mode));
        }
        ASSERT(!fx_getxattr(fx_p(fx, "upper", "d/mine"), OSSB_FS_OVERRIDE_XATTR));
        _cleanup_free_ char *op = fx_getxattr(fx_p(fx, "upper", "o"), "user.overlay.opaque");
        ASSERT_STREQ(op, "y");
        ASSERT(lstat(fx_p(fx, "upper", "d/c"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
        ASSERT(lstat(fx_p(fx, "upper", "e"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
        ASSERT(lstat(fx_p(fx, "upper", "e2/c"), &st) == 0 && S_ISREG(st.st_mode));
        ASSERT(lstat(fx_p(fx, "upper", "t/u/v/w"), &st) == 0 && (st.st_mode & 07777) == 0600);
}

static int chown_tree(const char *dir, uid_t uid)
{
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "chown -R -h %u:%u '%s'", (unsigned) uid, (unsigned) uid, dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void userns_case(uid_t as)
{
        struct fx *fx = fx_new(2, true);
        ASSERT(fx);
        int b = build_layers(fx, true) | fx_write(fx_p(fx, "l0", "d/ov"), "o") |
                fx_setxattr(fx_p(fx, "l0", "d/ov"), OSSB_FS_OVERRIDE_XATTR, "1000:1000:0666") |
                fx_mkdir_p(fx_p(fx, "l0", "ovd/sub")) | (chmod(fx_p(fx, "l0", "ovd/sub"), 0777) < 0 ? -1 : 0) |
                fx_setxattr(fx_p(fx, "l0", "ovd"), OSSB_FS_OVERRIDE_XATTR, "1000:1000:0777");
        if (geteuid() == 0)
                b |= mknod(fx_p(fx, "l1", "d/dev"), S_IFCHR | 0666, makedev(1, 3)) < 0 ? -1 : 0;
        /* an unprivileged user gets a tree of its own (it maps to root inside) */
        if (b < 0 || (as != 0 && chown_tree(fx->root, as) < 0)) {
                fx_free(fx);
                ASSERT(!"layers");
        }
        int r = run_userns(fx, as);
        if (r != 0)
                fprintf(stderr, "# userns child failed: %d\n", r);
        if (r == 0)
                check_userns_upper(fx);
        fx_free(fx);
        ASSERT_INTEQ(r, 0);
}

static void test_userns_root(void)
{
        userns_case(0);
}

static void test_userns_unprivileged(void)
{
        userns_case(geteuid() == 0 ? 65534 : 0);
}

static bool dev_fuse_for_others(void)
{
        struct stat st;
        return stat("/dev/fuse", &st) == 0 && (st.st_mode & 0006) == 0006;
}

static bool userns_available(void)
{
        pid_t pid = fork();
        if (pid == 0)
                _exit(unshare(CLONE_NEWUSER) < 0 ? 1 : 0);
        int status;
        return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool kernel_overlay_available(void)
{
        struct fx *fx = fx_new(1, false);
        bool ok = fx && fx_kernel_mount(fx) == 0;
        if (ok)
                fx_kernel_unmount(fx);
        fx_free(fx);
        return ok;
}

static bool dev_fuse_for_me(void)
{
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd >= 0)
                close(fd);
        return fd >= 0;
}

/* The user-namespace cases: as root, root mapped to itself and then an unprivileged user;
 * as another user, that user mapped to root (what `unshare -Urm` gives). */
static void run_userns_tests(bool root)
{
        if (!userns_available()) {
                skip("test_userns_root", "no user namespaces here");
                skip("test_userns_unprivileged", "no user namespaces here");
                return;
        }
        if (root)
                RUN_TEST(test_userns_root);
        else
                skip("test_userns_root", "not root");
        bool dev = root ? dev_fuse_for_others() : dev_fuse_for_me();
        if (dev)
                RUN_TEST(test_userns_unprivileged);
        else
                skip("test_userns_unprivileged", "/dev/fuse is not usable by other users (chmod 666 /dev/fuse)");
}

int main(void)
{
        bool root = geteuid() == 0;
        can_mount = root && fx_can_mount(&why_not);
        if (root && !can_mount) {
                skip("test_userns_root", why_not);
                skip("test_userns_unprivileged", why_not);
                skip("test_same_upper_as_kernel", why_not);
                TAP_END();
        }
        /* the forks come first, before this process has served any mount */
        run_userns_tests(root);
        if (!root)
                skip("test_same_upper_as_kernel", "not root (kernel overlayfs with trusted.* xattrs)");
        else if (kernel_overlay_available())
                RUN_TEST(test_same_upper_as_kernel);
        else
                skip("test_same_upper_as_kernel", "kernel overlayfs does not mount here");
        TAP_END();
}
