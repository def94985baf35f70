/* tests/unit/test-userns.c - common/userns: the subordinate-id parser, the map arguments, and
 * entering the namespace for real as uid 65534 in a child: single-id with an empty /etc/subuid,
 * full with fake /etc/subuid and /etc/subgid, both bind-mounted in a private mount namespace
 * of the child (the real files are never touched).  The real parts need root (to bind and to
 * become 65534), newuidmap, and a kernel that allows user namespaces; they are skipped (ok,
 * with a note) otherwise. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/userns.h"
#include "tests/unit/tap.h"

#define TEST_UID 65534

static void test_parse(void)
{
        struct ossb_subid_range r[OSSB_SUBID_MAX_RANGES];
        const char *text = "# comment\n"
                           "alice:100000:65536\n"
                           "bob:165536:65536\n"
                           "1000:300000:10 \r\n"
                           "alice:0:0\n"            /* count 0 */
                           "alice:x:5\n"            /* not a number */
                           "alice:4294967290:10\n"  /* past 2^32-1 */
                           "alice:-5:10\n"
                           "alice:5\n"              /* a field missing */
                           "alice:400000:1000";     /* no newline at the end */
        size_t n = ossb_subid_parse(text, "alice", 1000, r, OSSB_SUBID_MAX_RANGES);
        ASSERT_INTEQ(n, 3);
        ASSERT_INTEQ(r[0].start, 100000);
        ASSERT_INTEQ(r[0].count, 65536);
        ASSERT_INTEQ(r[1].start, 300000);
        ASSERT_INTEQ(r[1].count, 10);
        ASSERT_INTEQ(r[2].start, 400000);
        ASSERT_INTEQ(r[2].count, 1000);
        /* by number only (a user without a name), by another name, bounded by max */
        ASSERT_INTEQ(ossb_subid_parse(text, NULL, 1000, r, OSSB_SUBID_MAX_RANGES), 1);
        ASSERT_INTEQ(ossb_subid_parse(text, "bob", 1001, r, OSSB_SUBID_MAX_RANGES), 1);
        ASSERT_INTEQ(r[0].start, 165536);
        ASSERT_INTEQ(ossb_subid_parse(text, "alice", 1000, r, 2), 2);
        ASSERT_INTEQ(ossb_subid_parse(text, "alic", 7, r, OSSB_SUBID_MAX_RANGES), 0);
        ASSERT_INTEQ(ossb_subid_parse("", "alice", 1000, r, OSSB_SUBID_MAX_RANGES), 0);
        ASSERT_INTEQ(ossb_subid_parse(NULL, "alice", 1000, r, OSSB_SUBID_MAX_RANGES), 0);
        ASSERT_INTEQ(ossb_subid_parse("alice:1:99999999999999999999999\n", "alice", 1, r, 4), 0);
}

static void test_map_args(void)
{
        struct ossb_subid_range r[] = { { 100000, 65536 }, { 300000, 10 } };
        _cleanup_free_ char *a = ossb_userns_map_args(1000, r, 2);
        ASSERT_STREQ(a, "0 1000 1 1 100000 65536 65537 300000 10");
        _cleanup_free_ char *b = ossb_userns_map_args(5, NULL, 0);
        ASSERT_STREQ(b, "0 5 1");
        /* inside ids stop at 2^32-1 */
        struct ossb_subid_range big[] = { { 1, 4294967290UL }, { 10, 100 } };
        _cleanup_free_ char *c = ossb_userns_map_args(7, big, 2);
        ASSERT_STREQ(c, "0 7 1 1 1 4294967290");
}

static void test_mode_names(void)
{
        ASSERT_STREQ(ossb_userns_mode_name(OSSB_USERNS_FULL), "full");
        ASSERT_STREQ(ossb_userns_mode_name(OSSB_USERNS_SINGLE), "single-id");
        ASSERT_STREQ(ossb_userns_mode_name(OSSB_USERNS_DISABLED), "disabled");
}

static void test_disabled(void)
{
        enum ossb_userns_mode m = OSSB_USERNS_FULL;
        _cleanup_free_ char *note = NULL;
        ASSERT(setenv("OSSB_NO_USERNS", "1", 1) == 0);
        ASSERT_INTEQ(ossb_userns_enter(&m, &note, NULL), 0);
        unsetenv("OSSB_NO_USERNS");
        ASSERT_INTEQ(m, OSSB_USERNS_DISABLED);
        ASSERT(note == NULL);
        if (geteuid() == 0) {
                ASSERT_INTEQ(ossb_userns_enter(&m, &note, NULL), 0);
                ASSERT_INTEQ(m, OSSB_USERNS_NONE);
        }
}

/* ---- for real, in a child ---- */

enum { CHILD_OK = 0, CHILD_SKIP = 77 };

/* Become TEST_UID the way `setpriv` leaves a process: dumpable again. */
static int drop_to_test_uid(void)
{
        if (setgroups(0, NULL) < 0 || setresgid(TEST_UID, TEST_UID, TEST_UID) < 0 ||
            setresuid(TEST_UID, TEST_UID, TEST_UID) < 0)
                return 10;
        return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 ? 11 : 0;
}

static int first_map_line(const char *file, unsigned long v[3])
{
        _cleanup_fclose_ FILE *f = fopen(file, "re");
        return f && fscanf(f, "%lu %lu %lu", &v[0], &v[1], &v[2]) == 3 ? 0 : -1;
}

/* In the namespace: root, the caller mapped to 0, mounts allowed, chown to `other` works
 * exactly when the mapping is full. */
static int check_inside(enum ossb_userns_mode want, unsigned long outside, const char *dir)
{
        unsigned long v[3];
        if (getuid() != 0 || geteuid() != 0 || getgid() != 0)
                return 20;
        if (first_map_line("/proc/self/uid_map", v) < 0 || v[0] != 0 || v[1] != outside || v[2] != 1)
                return 21;
        if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") < 0)
                return 22;
        _cleanup_free_ char *f = ossb_path_join(dir, "f");
        _cleanup_close_ int fd = f ? open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (fd < 0)
                return 23;
        int r = fchown(fd, 1000, 1000);
        if (want == OSSB_USERNS_FULL && r < 0)
                return 24;
        if (want == OSSB_USERNS_SINGLE && (r == 0 || errno != EINVAL))
                return 25;
        (void) umount2(dir, MNT_DETACH);
        return CHILD_OK;
}

static int child_enter(enum ossb_userns_mode want, const char *dir)
{
        int r = drop_to_test_uid();
        if (r)
                return r;
        unsigned long outside = geteuid();
        enum ossb_userns_mode m = OSSB_USERNS_NONE;
        _cleanup_free_ char *note = NULL;
        struct ossb_error *e = NULL;
        if (ossb_userns_enter(&m, &note, &e) < 0) {
                fprintf(stderr, "# enter: %s\n", e->msg);
                return 30;
        }
        if (m == OSSB_USERNS_UNAVAILABLE) {
                fprintf(stderr, "# user namespaces unavailable here: %s\n", note ? note : "");
                return CHILD_SKIP;
        }
        if (m != want) {
                fprintf(stderr, "# mode %s, expected %s (%s)\n", ossb_userns_mode_name(m), ossb_userns_mode_name(want),
                        note ? note : "");
                return 31;
        }
        if (want == OSSB_USERNS_SINGLE && (!note || !strstr(note, "/etc/sub")))
                return 32;
        return check_inside(want, outside, dir);
}

static int run_child(int (*fn)(const char *), const char *arg)
{
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0)
                _exit(fn(arg));
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static char *test_dir(void)
{
        char tmpl[] = "/tmp/ossb-userns-XXXXXX";
        if (!mkdtemp(tmpl) || chmod(tmpl, 0777) < 0)
                return NULL;
        return strdup(tmpl);
}

/* Root only: fake /etc/subuid and /etc/subgid bound over the real ones in a mount namespace
 * of the child's own, then the child becomes TEST_UID and enters. */
static int full_child(const char *dir)
{
        char line[64];
        snprintf(line, sizeof(line), "%d:200000:65536\n", TEST_UID);
        _cleanup_free_ char *sub = ossb_path_join(dir, "subid");
        _cleanup_free_ char *mnt = ossb_path_join(dir, "mnt");
        if (!sub || !mnt || mkdir(mnt, 0777) < 0 || chmod(mnt, 0777) < 0 ||
            ossb_write_file_atomic(sub, line, strlen(line), 0644, NULL) < 0)
                return 40;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 41;
        if (mount(sub, "/etc/subuid", NULL, MS_BIND, NULL) < 0 || mount(sub, "/etc/subgid", NULL, MS_BIND, NULL) < 0)
                return 42;
        return child_enter(OSSB_USERNS_FULL, mnt);
}

static void test_enter_full(void)
{
        if (geteuid() != 0 || access("/usr/bin/newuidmap", X_OK) != 0 || access("/etc/subuid", F_OK) != 0) {
                printf("# skipped: needs root, newuidmap and /etc/subuid\n");
                return;
        }
        _cleanup_free_ char *dir = test_dir();
        ASSERT(dir);
        int r = run_child(full_child, dir);
        (void) ossb_rm_rf(dir);
        if (r == CHILD_SKIP) {
                printf("# skipped: cannot create user namespaces here\n");
                return;
        }
        ASSERT_INTEQ(r, CHILD_OK);
}

static int empty_child(const char *dir)
{
        /* a private, empty /etc/subuid, whatever the machine has */
        _cleanup_free_ char *sub = ossb_path_join(dir, "empty");
        if (!sub || ossb_write_file_atomic(sub, "", 0, 0644, NULL) < 0)
                return 50;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount(sub, "/etc/subuid", NULL, MS_BIND, NULL) < 0)
                return 51;
        _cleanup_free_ char *mnt = ossb_path_join(dir, "m");
        if (!mnt || mkdir(mnt, 0777) < 0 || chmod(mnt, 0777) < 0)
                return 52;
        return child_enter(OSSB_USERNS_SINGLE, mnt);
}

static void test_enter_without_subuid_entry(void)
{
        if (geteuid() != 0 || access("/etc/subuid", F_OK) != 0) {
                printf("# skipped: needs root and /etc/subuid\n");
                return;
        }
        _cleanup_free_ char *dir = test_dir();
        ASSERT(dir);
        int r = run_child(empty_child, dir);
        (void) ossb_rm_rf(dir);
        if (r == CHILD_SKIP) {
                printf("# skipped: cannot create user namespaces here\n");
                return;
        }
        ASSERT_INTEQ(r, CHILD_OK);
}

/* A process that changed its uids without becoming dumpable again: not entered, and said why. */
static int non_dumpable_child(const char *dir)
{
        (void) dir;
        if (setgroups(0, NULL) < 0 || setresgid(TEST_UID, TEST_UID, TEST_UID) < 0 ||
            setresuid(TEST_UID, TEST_UID, TEST_UID) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return 60;
        enum ossb_userns_mode m = OSSB_USERNS_NONE;
        _cleanup_free_ char *note = NULL;
        if (ossb_userns_enter(&m, &note, NULL) < 0)
                return 61;
        if (m != OSSB_USERNS_UNAVAILABLE || !note || !strstr(note, "dumpable"))
                return 62;
        return geteuid() == TEST_UID ? CHILD_OK : 63;
}

static void test_enter_not_dumpable(void)
{
        if (geteuid() != 0) {
                printf("# skipped: needs root\n");
                return;
        }
        ASSERT_INTEQ(run_child(non_dumpable_child, NULL), CHILD_OK);
}

int main(void)
{
        RUN_TEST(test_parse);
        RUN_TEST(test_map_args);
        RUN_TEST(test_mode_names);
        RUN_TEST(test_disabled);
        RUN_TEST(test_enter_without_subuid_entry);
        RUN_TEST(test_enter_full);
        RUN_TEST(test_enter_not_dumpable);
        TAP_END();
}
