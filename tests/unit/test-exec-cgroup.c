/* tests/unit/test-exec-cgroup.c - the cgroup limits of the sandbox (engine/exec/exec-cgroup.c)
 * on a fake cgroup tree made here: mountinfo and /proc/self/cgroup parsing (escapes, mount
 * roots, co-mounted v1 controllers), the choice between v2 and v1 per controller, enabling a
 * v2 controller in cgroup.subtree_control, the limit files and their values, the OOM-kill
 * count, the error messages; then, where this host allows it, a real pids cgroup.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "engine/exec/exec-internal.h"
#include "tests/unit/tap.h"

static char root[] = "/tmp/ossb-test-cgroup-XXXXXX";

static void put(const char *rel, const char *content)
{
        _cleanup_free_ char *p = ossb_path_join(root, rel);
        _cleanup_free_ char *dir = strdup(p);
        *strrchr(dir, '/') = '\0';
        (void) ossb_mkdir_p(dir, 0755);
        (void) ossb_write_file_atomic(p, content, strlen(content), 0644, NULL);
}

static char *get(const char *rel)
{
        _cleanup_free_ char *p = ossb_path_join(root, rel);
        char *data = NULL;
        size_t len;
        if (ossb_read_file(p, 4096, &data, &len, NULL) < 0)
                return NULL;
        return data;
}

static char *fmt_mountinfo(void)
{
        char *s = NULL;
        if (asprintf(&s,
                     "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                     "30 25 0:26 / %s/cg2 rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
                     "31 25 0:27 / %s/v1pids rw,nosuid shared:10 - cgroup cgroup rw,pids\n"
                     "32 25 0:28 /sub %s/v1mem rw shared:11 - cgroup cgroup rw,memory\n"
                     "33 25 0:29 / %s/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct\n",
                     root, root, root, root) < 0)
                return NULL;
        return s;
}

static const char self[] = "12:name=systemd:/\n5:pids:/p\n4:memory:/sub/m\n3:cpu,cpuacct:/c\n0::/a\n";

static void make_child(const char *base, const char *const *files)
{
        for (size_t i = 0; files[i]; i++) {
                char rel[256];
                snprintf(rel, sizeof(rel), "%s/run1/%s", base, files[i]);
                put(rel, "");
        }
}

static void test_v2_and_v1(void)
{
        _cleanup_free_ char *mi = fmt_mountinfo();
        ASSERT(mi);
        put("cg2/a/cgroup.controllers", "cpu io\n");
        put("cg2/a/cgroup.subtree_control", "\n");
        make_child("cg2/a", (const char *[]) { "cgroup.procs", "cpu.max", NULL });
        make_child("v1pids/p", (const char *[]) { "cgroup.procs", "pids.max", NULL });
        make_child("v1mem/m", (const char *[]) { "cgroup.procs", "memory.limit_in_bytes", "memory.oom_control", NULL });

        struct ossb_exec_limits l = { .memory = 64 << 20, .cpu_millis = 1500, .pids = 7 };
        struct exec_cgroup cg = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        int r = exec_cgroup_create(&l, mi, self, "run1", &cg, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0);
        ASSERT_INTEQ(cg.n, 3);
        _cleanup_free_ char *sub = get("cg2/a/cgroup.subtree_control"), *cpu = get("cg2/a/run1/cpu.max"),
                           *pids = get("v1pids/p/run1/pids.max"), *mem = get("v1mem/m/run1/memory.limit_in_bytes");
        ASSERT_STREQ(sub, "+cpu");         /* enabled for the children */
        ASSERT_STREQ(cpu, "150000 100000"); /* v2: the controller is offered there */
        ASSERT_STREQ(pids, "7");           /* v1: v2 does not offer it */
        ASSERT_STREQ(mem, "67108864");     /* the mount root /sub is taken off the path */
        _cleanup_free_ char *procs = ossb_path_join(root, "v1pids/p/run1/cgroup.procs");
        bool found = false;
        for (size_t i = 0; i < cg.n; i++)
                found |= streq(cg.procs[i], procs);
        ASSERT(found);
        ASSERT(!exec_cgroup_oom_killed(&cg));
        put("v1mem/m/run1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        ASSERT(exec_cgroup_oom_killed(&cg));
        exec_cgroup_remove(&cg); /* the fake directories are not empty: left in place */
        ASSERT_INTEQ(cg.n, 0);
}

static void test_v1_cpu_escaped_mount(void)
{
        _cleanup_free_ char *mi = fmt_mountinfo();
        ASSERT(mi);
        put("cg2/a/cgroup.controllers", "io\n");
        make_child("cpu acct/c", (const char *[]) { "cgroup.procs", "cpu.cfs_period_us", "cpu.cfs_quota_us", NULL });
        struct ossb_exec_limits l = { .cpu_millis = 250 };
        struct exec_cgroup cg = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        int r = exec_cgroup_create(&l, mi, self, "run1", &cg, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT(r == 0);
        _cleanup_free_ char *period = get("cpu acct/c/run1/cpu.cfs_period_us"), *quota = get("cpu acct/c/run1/cpu.cfs_quota_us");
        ASSERT_STREQ(period, "100000");
        ASSERT_STREQ(quota, "25000");
        exec_cgroup_remove(&cg);
}

static void test_already_enabled(void)
{
        _cleanup_free_ char *mi = fmt_mountinfo();
        ASSERT(mi);
        put("cg2/a/cgroup.controllers", "memory pids\n");
        put("cg2/a/cgroup.subtree_control", "memory pids\n");
        make_child("cg2/a", (const char *[]) { "cgroup.procs", "memory.max", "pids.max", "memory.events", NULL });
        struct ossb_exec_limits l = { .memory = 10 << 20, .pids = 3 };
        struct exec_cgroup cg = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(exec_cgroup_create(&l, mi, self, "run1", &cg, &err) == 0);
        ASSERT_INTEQ(cg.n, 1); /* one v2 cgroup for both */
        _cleanup_free_ char *sub = get("cg2/a/cgroup.subtree_control"), *mem = get("cg2/a/run1/memory.max"),
                           *pids = get("cg2/a/run1/pids.max");
        ASSERT_STREQ(sub, "memory pids\n"); /* untouched */
        ASSERT_STREQ(mem, "10485760");
        ASSERT_STREQ(pids, "3");
        put("cg2/a/run1/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
        ASSERT(exec_cgroup_oom_killed(&cg));
        exec_cgroup_remove(&cg);
}

static void expect_error(const char *mountinfo, const char *self_cgroup, const struct ossb_exec_limits *l,
                         const char *needle)
{
        struct exec_cgroup cg = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(exec_cgroup_create(l, mountinfo, self_cgroup, "run1", &cg, &err) < 0);
        if (!strstr(err->msg, needle))
                fprintf(stderr, "# got \"%s\"\n# wanted \"%s\"\n", err->msg, needle);
        ASSERT(strstr(err->msg, needle));
        ASSERT_INTEQ(cg.n, 0);
}

static void test_errors(void)
{
        _cleanup_free_ char *mi = fmt_mountinfo(), *v2only = NULL;
        ASSERT(mi);
        ASSERT(asprintf(&v2only, "30 25 0:26 / %s/cg2 rw - cgroup2 cgroup2 rw\n", root) > 0);
        struct ossb_exec_limits mem = { .memory = 64 << 20 }, pids = { .pids = 5 }, cpu = { .cpu_millis = 5 };
        expect_error("", "0::/\n", &mem,
                     "--memory needs a writable cgroup v2 hierarchy with the memory controller: no cgroup2 file "
                     "system is mounted");
        put("cg2/a/cgroup.controllers", "cpu\n");
        expect_error(v2only, "0::/a\n", &pids, "--pids-limit needs a writable cgroup v2 hierarchy with the pids "
                                                "controller: the controller is not in ");
        expect_error(v2only, "0::/a\n", &pids, "cgroup.controllers (cpu)");
        /* a cgroup.subtree_control that cannot be written (a directory here) */
        put("cg2/b/cgroup.controllers", "pids\n");
        _cleanup_free_ char *d = ossb_path_join(root, "cg2/b/cgroup.subtree_control");
        ASSERT(mkdir(d, 0755) == 0);
        expect_error(v2only, "0::/b\n", &pids, "cannot enable it in ");
        expect_error(mi, self, &cpu, "--cpus: the smallest limit is 0.01");
        /* our cgroup outside the mounted subtree */
        expect_error(mi, "4:memory:/elsewhere\n", &mem, "no cgroup2 file system is mounted");
}

static void test_real_pids(void)
{
        struct ossb_exec_limits l = { .pids = 5 };
        struct exec_cgroup cg = { 0 };
        _cleanup_error_ struct ossb_error *err = NULL;
        if (geteuid() != 0 || exec_cgroup_setup(&l, &cg, &err) < 0) {
                printf("# skipped: %s\n", err ? err->msg : "not root");
                return;
        }
        ASSERT(cg.n == 1);
        _cleanup_free_ char *p = ossb_path_join(cg.dirs[0], "pids.max"), *v = NULL, *dir = strdup(cg.dirs[0]);
        size_t len;
        ASSERT(ossb_read_file(p, 64, &v, &len, NULL) == 0);
        ASSERT_STREQ(v, "5\n");
        exec_cgroup_remove(&cg);
        ASSERT(access(dir, F_OK) < 0 && errno == ENOENT);
}

int main(void)
{
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        RUN_TEST(test_v2_and_v1);
        RUN_TEST(test_v1_cpu_escaped_mount);
        RUN_TEST(test_already_enabled);
        RUN_TEST(test_errors);
        RUN_TEST(test_real_pids);
        (void) ossb_rm_rf(root);
        TAP_END();
}
