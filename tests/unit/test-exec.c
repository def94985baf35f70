/* tests/unit/test-exec.c - the RUN sandbox (engine/exec) on a busybox root file system made
 * here: output, exit codes, env, cwd, ids, hostname, /etc files, /proc, /dev, networks,
 * daemonised children, missing binaries, mounts, symlinked mount points, setup errors,
 * interrupts, rootless user namespaces.  Root-only tests skip (exit 77) for other users.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/strbuf.h"
#include "engine/exec/exec.h"
#include "tests/unit/tap.h"

static const char *const applets[] = {
        "sh", "echo", "cat", "ls", "id", "sleep", "ps", "hostname", "touch", "mkdir", "env", "pwd",
        "head", "wc", "tr", "seq", "grep", "test", "true", "false", "printf", "stat", "readlink",
        "kill", "cut", "tail", "sort",
};

static char *base_env[] = { "PATH=/bin", "HOME=/root", "OSSB_TEST=1", NULL };

/* ---- fixtures ---- */

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (in < 0 || out < 0 || ossb_copy_fd(in, out) < 0 || fchmod(out, mode) < 0)
                return -1;
        return 0;
}

/* A fresh rootfs: DIR/root with bin/busybox and its applets; returns DIR (caller removes). */
static char *make_rootfs(char **ret_root)
{
        char tmpl[] = "/tmp/test-exec-XXXXXX";
        if (!mkdtemp(tmpl) || chmod(tmpl, 0755) < 0)
                return NULL;
        char *dir = strdup(tmpl), *root = ossb_path_join(tmpl, "root"), path[4096];
        if (!dir || !root)
                return NULL;
        snprintf(path, sizeof(path), "%s/bin", root);
        if (mkdir(root, 0755) < 0 || mkdir(path, 0755) < 0)
                return NULL;
        snprintf(path, sizeof(path), "%s/bin/busybox", root);
        if (copy_file("/bin/busybox", path, 0755) < 0)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(applets); i++) {
                snprintf(path, sizeof(path), "%s/bin/%s", root, applets[i]);
                if (symlink("busybox", path) < 0)
                        return NULL;
        }
        *ret_root = root;
        return dir;
}

struct capture {
        struct ossb_strbuf out, err;
        size_t lines, longest;
};

static void on_line(void *userdata, bool is_stderr, const char *line, size_t len)
{
        struct capture *c = userdata;
        struct ossb_strbuf *sb = is_stderr ? &c->err : &c->out;
        (void) ossb_strbuf_append_n(sb, line, len);
        (void) ossb_strbuf_append_c(sb, '\n');
        c->lines++;
        if (len > c->longest)
                c->longest = len;
}

static void capture_free(struct capture *c)
{
        ossb_strbuf_free(&c->out);
        ossb_strbuf_free(&c->err);
        memset(c, 0, sizeof(*c));
}

static const char *out_of(struct capture *c)
{
        return c->out.buf ? c->out.buf : "";
}

static const char *err_of(struct capture *c)
{
        return c->err.buf ? c->err.buf : "";
}

static struct ossb_exec_spec spec_for(const char *root, char **argv, struct capture *cap)
{
        struct ossb_exec_spec s = {
                .rootfs = root, .argv = argv, .env = base_env, .output = on_line, .output_userdata = cap,
        };
        return s;
}

/* Run `sh -c script` with the defaults; returns ossb_exec_run's result. */
static int run_sh(const char *root, const char *script, struct capture *cap, struct ossb_exec_result *res,
                  struct ossb_error **err)
{
        char *argv[] = { "sh", "-c", (char *) script, NULL };
        struct ossb_exec_spec s = spec_for(root, argv, cap);
        return ossb_exec_run(&s, res, err);
}

static bool strv_has(char **v, const char *s)
{
        return ossb_strv_contains(v, s);
}

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* The pid of a process whose command line contains needle, or 0. */
static pid_t find_process(const char *needle)
{
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char path[300], buf[256];
                snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
                if (n <= 0)
                        continue;
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] == '\0')
                                buf[i] = ' ';
                buf[n] = '\0';
                if (strstr(buf, needle))
                        return (pid_t) strtol(de->d_name, NULL, 10);
        }
        return 0;
}

static bool process_with_cmdline(const char *needle)
{
        return find_process(needle) > 0;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct fixture {
        char *dir, *root;
        struct capture cap;
        struct ossb_exec_result res;
        struct ossb_error *err;
};

static void fixture_done(struct fixture *f)
{
        if (f->dir)
                (void) ossb_rm_rf(f->dir);
        free(f->dir);
        free(f->root);
        capture_free(&f->cap);
        ossb_exec_result_clear(&f->res);
        ossb_error_free(f->err);
        memset(f, 0, sizeof(*f));
}

static int fixture_init(struct fixture *f)
{
        memset(f, 0, sizeof(*f));
        f->dir = make_rootfs(&f->root);
        return f->dir ? 0 : -1;
}

/* Reset the output and result between two runs in one fixture. */
static void fixture_reset(struct fixture *f)
{
        capture_free(&f->cap);
        ossb_exec_result_clear(&f->res);
        ossb_error_free(f->err);
        f->err = NULL;
}

#define FIXTURE(f) _cleanup_(fixture_done) struct fixture f; ASSERT(fixture_init(&f) == 0)

static const char *errmsg(struct fixture *f)
{
        return f->err && f->err->msg ? f->err->msg : "(no error)";
}

#define RUN_OK(f, script)                                                                     \
        do {                                                                                  \
                int _r = run_sh((f).root, script, &(f).cap, &(f).res, &(f).err);              \
                if (_r < 0)                                                                   \
                        fprintf(stderr, "# run failed: %s\n", errmsg(&(f)));                  \
                ASSERT_INTEQ(_r, 0);                                                          \
        } while (0)

/* ---- tests ---- */

static void test_echo(void)
{
        FIXTURE(f);
        RUN_OK(f, "echo hello; echo world; echo oops >&2");
        ASSERT_INTEQ(f.res.exit_code, 0);
        ASSERT(!f.res.signaled);
        ASSERT_STREQ(out_of(&f.cap), "hello\nworld\n");
        ASSERT_STREQ(err_of(&f.cap), "oops\n");
        ASSERT(strstr(f.res.tail, "hello\nworld"));
        ASSERT(strstr(f.res.tail, "oops"));
}

static void test_exit_code(void)
{
        FIXTURE(f);
        RUN_OK(f, "echo before; exit 3");
        ASSERT_INTEQ(f.res.exit_code, 3);
        ASSERT(!f.res.signaled);
        fixture_reset(&f);
        RUN_OK(f, "false");
        ASSERT_INTEQ(f.res.exit_code, 1);
}

static void test_env_exact(void)
{
        FIXTURE(f);
        char *argv[] = { "env", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 0);
        ASSERT_STREQ(out_of(&f.cap), "PATH=/bin\nHOME=/root\nOSSB_TEST=1\n");
}

static void test_default_path(void)
{
        FIXTURE(f);
        char *argv[] = { "echo", "found", NULL };
        char *env[] = { "A=b", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.env = env;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 0);
        ASSERT_STREQ(out_of(&f.cap), "found\n");
}

static void test_cwd(void)
{
        FIXTURE(f);
        char *argv[] = { "pwd", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.cwd = "/work/sub/dir";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "/work/sub/dir\n");
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/work/sub/dir", f.root);
        ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
        ASSERT_INTEQ(st.st_uid, 0);
        /* the working directory is part of the layer, not a mount point */
        ASSERT(!strv_has(f.res.created_mountpoints, "work"));
}

static void test_ids(void)
{
        FIXTURE(f);
        char *argv[] = { "sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Bnd)' /proc/self/status", NULL };
        gid_t groups[] = { 3000, 3001 };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.uid = 1000;
        s.gid = 2000;
        s.groups = groups;
        s.n_groups = 2;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "1000\n2000\n2000 3000 3001\nCapEff:\t0000000000000000\n"
                                     "CapBnd:\t00000000a80425fb\n");
}

static void test_root_caps(void)
{
        FIXTURE(f);
        RUN_OK(f, "id -u; id -G; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status");
        /* Docker's default set, and no supplementary groups inherited from ossb */
        ASSERT_STREQ(out_of(&f.cap), "0\n0\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
                                     "CapBnd:\t00000000a80425fb\n");
}

static void test_hostname(void)
{
        FIXTURE(f);
        RUN_OK(f, "hostname; cat /etc/hostname; grep -c buildkitsandbox /etc/hosts");
        ASSERT_STREQ(out_of(&f.cap), "buildkitsandbox\nbuildkitsandbox\n1\n");
        fixture_reset(&f);
        char *argv[] = { "sh", "-c", "hostname; cat /etc/hostname; grep localhost /etc/hosts", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.hostname = "myhost";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "myhost\nmyhost\n127.0.0.1\tlocalhost myhost\n"
                                     "::1\tlocalhost ip6-localhost ip6-loopback\n");
}

static void test_etc_files(void)
{
        FIXTURE(f);
        RUN_OK(f, "cat /etc/resolv.conf; echo x >> /etc/hosts || echo read-only");
        _cleanup_free_ char *host = NULL;
        size_t len = 0;
        if (ossb_read_file("/etc/resolv.conf", 1 << 20, &host, &len, NULL) < 0)
                host = strdup("");
        ASSERT(host);
        _cleanup_free_ char *expected = NULL;
        ASSERT(asprintf(&expected, "%s%sread-only\n", host, len && host[len - 1] != '\n' ? "\n" : "") > 0);
        ASSERT_STREQ(out_of(&f.cap), expected);

        char **c = f.res.created_mountpoints;
        ASSERT(c);
        const char *want[] = { "proc", "dev", "sys", "etc", "etc/hosts", "etc/resolv.conf", "etc/hostname" };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                if (!strv_has(c, want[i]))
                        fprintf(stderr, "# missing created mount point %s\n", want[i]);
                ASSERT(strv_has(c, want[i]));
        }
        ASSERT_INTEQ(ossb_strv_length(c), ELEMENTSOF(want));
        /* left in place, empty */
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/etc/hosts", f.root);
        ASSERT(stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0);

        /* a second run finds them: nothing created */
        fixture_reset(&f);
        RUN_OK(f, "true");
        ASSERT_INTEQ(ossb_strv_length(f.res.created_mountpoints), 0);
}

static void test_existing_etc_untouched(void)
{
        FIXTURE(f);
        char path[4096];
        snprintf(path, sizeof(path), "%s/etc", f.root);
        ASSERT(mkdir(path, 0755) == 0);
        snprintf(path, sizeof(path), "%s/etc/hosts", f.root);
        ASSERT(ossb_write_file_atomic(path, "10.0.0.1 image\n", 15, 0644, NULL) == 0);
        RUN_OK(f, "cat /etc/hosts");
        ASSERT(strstr(out_of(&f.cap), "127.0.0.1\tlocalhost"));
        _cleanup_free_ char *after = NULL;
        ASSERT(ossb_read_file(path, 4096, &after, NULL, NULL) == 0);
        ASSERT_STREQ(after, "10.0.0.1 image\n");
        ASSERT(!strv_has(f.res.created_mountpoints, "etc"));
        ASSERT(!strv_has(f.res.created_mountpoints, "etc/hosts"));
        ASSERT(strv_has(f.res.created_mountpoints, "etc/hostname"));
}

static void test_proc_pidns(void)
{
        FIXTURE(f);
        RUN_OK(f, "echo $$; ls /proc | grep -c '^[0-9]'; stat -c %F /proc/keys; ls /sys/firmware | wc -l;"
                  " echo 1 > /proc/sys/kernel/domainname || echo sys-ro");
        /* sh is PID 1; /proc shows sh, ls and grep at most */
        int pid = -1, count = -1, n = -1;
        char masked[64] = "";
        ASSERT(sscanf(out_of(&f.cap), "%d\n%d\n%63[^\n]\n%d\n", &pid, &count, masked, &n) == 4);
        ASSERT_INTEQ(pid, 1);
        ASSERT(count >= 1 && count <= 3);
        ASSERT_STREQ(masked, "character special file"); /* /proc/keys is /dev/null */
        ASSERT_INTEQ(n, 0);                             /* /sys/firmware is an empty tmpfs */
        ASSERT(strstr(out_of(&f.cap), "sys-ro\n"));
}

static void test_dev(void)
{
        FIXTURE(f);
        RUN_OK(f, "echo x > /dev/null && echo null-ok; head -c 5 /dev/zero | wc -c; head -c 3 /dev/urandom | wc -c;"
                  " test -c /dev/full && test -c /dev/random && test -c /dev/tty && echo nodes;"
                  " test -c /dev/pts/ptmx && test -L /dev/ptmx && echo pts;"
                  " echo s > /dev/shm/f && cat /dev/shm/f; readlink /dev/fd; ls /dev | wc -l");
        ASSERT_STREQ(out_of(&f.cap), "null-ok\n5\n3\nnodes\npts\ns\n/proc/self/fd\n15\n");
}

static void test_network_none(void)
{
        FIXTURE(f);
        char *argv[] = { "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/flags", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.network = OSSB_NET_NONE;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "lo\n0x9\n"); /* IFF_UP | IFF_LOOPBACK */
}

static void test_network_host(void)
{
        FIXTURE(f);
        RUN_OK(f, "wc -l < /proc/net/dev");
        _cleanup_free_ char *dev = NULL;
        ASSERT(ossb_read_file("/proc/net/dev", 1 << 20, &dev, NULL, NULL) == 0);
        size_t lines = 0;
        for (const char *p = dev; *p; p++)
                lines += *p == '\n';
        char want[32];
        snprintf(want, sizeof(want), "%zu\n", lines);
        ASSERT_STREQ(out_of(&f.cap), want);
}

static void test_daemon_killed(void)
{
        FIXTURE(f);
        double t0 = now_s();
        RUN_OK(f, "sleep 7321 & sleep 7322 > /dev/null 2>&1 & echo started");
        ASSERT(now_s() - t0 < 5.0);
        ASSERT_INTEQ(f.res.exit_code, 0);
        ASSERT_STREQ(out_of(&f.cap), "started\n");
        ASSERT(!process_with_cmdline("sleep 7321"));
        ASSERT(!process_with_cmdline("sleep 7322"));
}

static void *kill_sleeper(void *arg)
{
        (void) arg;
        for (int i = 0; i < 500; i++) {
                pid_t pid = find_process("sleep 8765");
                if (pid > 0) {
                        kill(pid, SIGKILL);
                        return NULL;
                }
                struct timespec ts = { 0, 10 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        return NULL;
}

static void test_signaled(void)
{
        FIXTURE(f);
        /* PID 1 of the sandbox killed from outside: a signal, 128 + 9 */
        pthread_t t;
        ASSERT(pthread_create(&t, NULL, kill_sleeper, NULL) == 0);
        char *argv[] = { "sleep", "8765", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        int r = ossb_exec_run(&s, &f.res, &f.err);
        pthread_join(t, NULL);
        ASSERT_INTEQ(r, 0);
        ASSERT(f.res.signaled);
        ASSERT_INTEQ(f.res.exit_code, 128 + SIGKILL);
}

static void test_missing_binary(void)
{
        FIXTURE(f);
        char *argv[] = { "no-such-command", "x", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 127);
        ASSERT_STREQ(err_of(&f.cap), "exec: no-such-command: not found\n");
        ASSERT_STREQ(f.res.tail, "exec: no-such-command: not found");

        fixture_reset(&f);
        char *argv2[] = { "/bin/nope", NULL };
        s.argv = argv2;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 127);
        ASSERT_STREQ(err_of(&f.cap), "exec: /bin/nope: not found\n");

        /* a file without the x bit: 126, in PATH or by path */
        fixture_reset(&f);
        char path[4096];
        snprintf(path, sizeof(path), "%s/bin/noexec", f.root);
        ASSERT(ossb_write_file_atomic(path, "#!/bin/sh\n", 10, 0644, NULL) == 0);
        char *argv3[] = { "noexec", NULL };
        s.argv = argv3;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 126);
        ASSERT_STREQ(err_of(&f.cap), "exec: noexec: Permission denied\n");
}

static void test_mounts(void)
{
        FIXTURE(f);
        char data[2048], file[2048];
        snprintf(data, sizeof(data), "%s/data", f.dir);
        snprintf(file, sizeof(file), "%s/conf", f.dir);
        ASSERT(mkdir(data, 0755) == 0);
        ASSERT(ossb_write_file_atomic(file, "conf\n", 5, 0644, NULL) == 0);
        struct ossb_exec_mount mounts[] = {
                { .target = "/mnt/scratch", .tmpfs = true },
                { .source = data, .target = "/data" },
                { .source = data, .target = "/data-ro", .readonly = true },
                { .source = file, .target = "/opt/app/conf", .readonly = true },
                { .target = "/data/inner", .tmpfs = true },
        };
        char *argv[] = { "sh", "-c",
                         "echo t > /mnt/scratch/t && cat /mnt/scratch/t; echo w > /data/w;"
                         " cat /data-ro/w; touch /data-ro/x 2>/dev/null || echo ro;"
                         " cat /opt/app/conf; echo z > /opt/app/conf 2>/dev/null || echo file-ro;"
                         " touch /data/inner/i && echo inner",
                         NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.mounts = mounts;
        s.n_mounts = ELEMENTSOF(mounts);
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "t\nw\nro\nconf\nfile-ro\ninner\n");
        char path[4096];
        snprintf(path, sizeof(path), "%s/w", data);
        ASSERT(access(path, F_OK) == 0);
        /* the tmpfs content is gone; the target inside the bind source was created there */
        snprintf(path, sizeof(path), "%s/inner", data);
        struct stat st;
        ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
        snprintf(path, sizeof(path), "%s/inner/i", data);
        ASSERT(access(path, F_OK) < 0);
        char **c = f.res.created_mountpoints;
        ASSERT(strv_has(c, "mnt") && strv_has(c, "mnt/scratch") && strv_has(c, "data") &&
               strv_has(c, "data-ro") && strv_has(c, "opt") && strv_has(c, "opt/app") &&
               strv_has(c, "opt/app/conf"));
        ASSERT(!strv_has(c, "data/inner")); /* made in the bind source, not in the rootfs */
}

static void test_symlinked_mountpoints(void)
{
        FIXTURE(f);
        char path[4096], escape[4096];
        /* /etc is a dangling absolute link, /mnt a relative one climbing out */
        snprintf(path, sizeof(path), "%s/etc", f.root);
        ASSERT(symlink("/real/etc", path) == 0);
        snprintf(escape, sizeof(escape), "ossb-escape-%d", (int) getpid());
        char target[4200];
        snprintf(target, sizeof(target), "../../../../../../../tmp/%s", escape);
        snprintf(path, sizeof(path), "%s/mnt", f.root);
        ASSERT(symlink(target, path) == 0);
        struct ossb_exec_mount mounts[] = { { .target = "/mnt/x", .tmpfs = true } };
        char *argv[] = { "sh", "-c", "cat /etc/hostname; touch /mnt/x/f && echo ok", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.mounts = mounts;
        s.n_mounts = 1;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "buildkitsandbox\nok\n");
        char **c = f.res.created_mountpoints;
        ASSERT(strv_has(c, "real") && strv_has(c, "real/etc") && strv_has(c, "real/etc/hosts"));
        _cleanup_free_ char *inside = NULL, *outside = NULL;
        ASSERT(asprintf(&inside, "tmp/%s/x", escape) > 0);
        ASSERT(strv_has(c, inside));
        ASSERT(asprintf(&outside, "/tmp/%s", escape) > 0);
        ASSERT(access(outside, F_OK) < 0); /* nothing outside the rootfs */
        snprintf(path, sizeof(path), "%s/real/etc/hosts", f.root);
        ASSERT(access(path, F_OK) == 0);
}

static void test_long_lines_and_tail(void)
{
        FIXTURE(f);
        RUN_OK(f, "head -c 100000 /dev/zero | tr '\\000' a; echo; seq 1 30; printf last");
        ASSERT_INTEQ(f.cap.longest, 64 * 1024);
        /* 100000 bytes in two pieces, 30 numbers, "last" */
        ASSERT_INTEQ(f.cap.lines, 2 + 30 + 1);
        _cleanup_free_ char *want = NULL;
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (int i = 12; i <= 30; i++)
                ASSERT(ossb_strbuf_appendf(&sb, "%d\n", i) == 0);
        ASSERT(ossb_strbuf_append(&sb, "last") == 0);
        want = ossb_strbuf_steal(&sb);
        ASSERT_STREQ(f.res.tail, want);
}

static void test_no_output_callback(void)
{
        FIXTURE(f);
        char *argv[] = { "sh", "-c", "echo a; echo b >&2; exit 4", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, NULL);
        s.output = NULL;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_INTEQ(f.res.exit_code, 4);
        ASSERT(strstr(f.res.tail, "a") && strstr(f.res.tail, "b"));
}

static void test_fds_closed(void)
{
        FIXTURE(f);
        int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
        ASSERT(leak >= 0);
        char *argv[] = { "ls", "/proc/self/fd", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        int r = ossb_exec_run(&s, &f.res, &f.err);
        close(leak);
        ASSERT_INTEQ(r, 0);
        ASSERT_STREQ(out_of(&f.cap), "0\n1\n2\n3\n"); /* 3: the directory ls reads */
}

/* The tree of a directory as text: path, type, mode, owner, size, content of small files. */
static struct ossb_strbuf tree_text;
static size_t tree_prefix;

static int tree_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void) type;
        (void) ftw;
        char extra[128] = "";
        if (S_ISREG(st->st_mode) && st->st_size < 64) {
                _cleanup_free_ char *data = NULL;
                if (ossb_read_file(path, 64, &data, NULL, NULL) == 0) {
                        for (char *p = data; *p; p++)
                                if (*p == '\n')
                                        *p = '|';
                        snprintf(extra, sizeof(extra), " [%s]", data);
                }
        }
        return ossb_strbuf_appendf(&tree_text, "%s %o %u:%u %lld%s\n", path + tree_prefix, (unsigned) st->st_mode,
                                   (unsigned) st->st_uid, (unsigned) st->st_gid,
                                   S_ISDIR(st->st_mode) ? 0LL : (long long) st->st_size, extra) < 0;
}

static char *tree_of(const char *root, char *const *skip)
{
        ossb_strbuf_reset(&tree_text);
        tree_prefix = strlen(root);
        if (nftw(root, tree_visit, 16, FTW_PHYS) != 0)
                return NULL;
        /* drop the lines of skipped paths */
        struct ossb_strbuf out = OSSB_STRBUF_INIT;
        for (char *line = tree_text.buf; line && *line;) {
                char *nl = strchr(line, '\n');
                size_t len = (size_t) (nl - line) + 1;
                bool drop = false;
                for (size_t i = 0; skip && skip[i]; i++) {
                        size_t sl = strlen(skip[i]);
                        if (strncmp(line + 1, skip[i], sl) == 0 && line[0] == '/' && line[1 + sl] == ' ')
                                drop = true;
                }
                if (!drop)
                        (void) ossb_strbuf_append_n(&out, line, len);
                line = nl + 1;
        }
        return ossb_strbuf_steal(&out);
}

static void test_rootfs_unchanged(void)
{
        FIXTURE(f);
        char path[4096];
        snprintf(path, sizeof(path), "%s/proc", f.root);
        ASSERT(mkdir(path, 0555) == 0);
        _cleanup_free_ char *before = tree_of(f.root, NULL);
        ASSERT(before);
        RUN_OK(f, "echo hi > /dev/null; ls / > /dev/null; echo changed > /tmp-file");
        /* minus the command's own change and the reported mount points: the same tree */
        _cleanup_strv_free_ char **all = ossb_strv_copy(f.res.created_mountpoints);
        ASSERT(all);
        ASSERT(ossb_strv_push(&all, "tmp-file") == 0);
        _cleanup_free_ char *after = tree_of(f.root, all);
        ASSERT(after);
        ASSERT_STREQ(after, before);
        ASSERT(!strv_has(f.res.created_mountpoints, "proc"));
        ossb_strbuf_free(&tree_text);
}

static void test_setup_errors(void)
{
        FIXTURE(f);
        struct ossb_exec_mount m = { .source = "/nonexistent/source", .target = "/x" };
        char *argv[] = { "true", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.mounts = &m;
        s.n_mounts = 1;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -ENOENT);
        ASSERT(strstr(errmsg(&f), "/nonexistent/source"));
        ASSERT_INTEQ(f.err->exit_code, OSSB_EXIT_INTERNAL);

        /* a mount target below a regular file */
        fixture_reset(&f);
        m.tmpfs = true;
        m.source = NULL;
        m.target = "/bin/busybox/sub";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -ENOTDIR);
        ASSERT(strstr(errmsg(&f), "/bin/busybox"));

        /* a working directory that is a file */
        fixture_reset(&f);
        s.n_mounts = 0;
        s.cwd = "/bin/busybox";
        ASSERT(ossb_exec_run(&s, &f.res, &f.err) < 0);
        ASSERT(strstr(errmsg(&f), "working directory /bin/busybox"));

        /* bad specs */
        fixture_reset(&f);
        s.cwd = "relative";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -EINVAL);
        fixture_reset(&f);
        s.cwd = NULL;
        char *none[] = { NULL };
        s.argv = none;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -EINVAL);
        fixture_reset(&f);
        s.argv = argv;
        s.rootfs = "rel/root";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -EINVAL);
        fixture_reset(&f);
        s.rootfs = f.root;
        m.target = "rel";
        s.n_mounts = 1;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -EINVAL);
        fixture_reset(&f);
        m.tmpfs = false;
        m.target = "/y";
        m.source = "rel";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -EINVAL);

        /* a root that does not exist */
        fixture_reset(&f);
        s.n_mounts = 0;
        s.rootfs = "/nonexistent/root";
        ASSERT(ossb_exec_run(&s, &f.res, &f.err) < 0);
        ASSERT(strstr(errmsg(&f), "/nonexistent/root"));

        /* a tmpdir that does not exist */
        fixture_reset(&f);
        s.rootfs = f.root;
        s.tmpdir = "/nonexistent/tmp";
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), -ENOENT);
}

static void test_uid_unmapped_userns(void)
{
        FIXTURE(f);
        /* root with a user namespace mapping only itself: uid 1000 does not exist in there */
        char *argv[] = { "id", "-u", NULL };
        struct ossb_exec_spec s = spec_for(f.root, argv, &f.cap);
        s.userns = true;
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "0\n");
        fixture_reset(&f);
        s.uid = 1000;
        ASSERT(ossb_exec_run(&s, &f.res, &f.err) < 0);
        ASSERT(strstr(errmsg(&f), "setuid 1000"));
        /* a full map given by the caller */
        fixture_reset(&f);
        s.uid_map = "0 0 1\n1000 100000 10\n";
        s.gid_map = "0 0 1\n1000 100000 10\n";
        char *argv2[] = { "sh", "-c", "id -u; touch /by-1000; cat /proc/self/uid_map | tr -s ' '", NULL };
        s.argv = argv2;
        s.uid = 1000;
        s.gid = 1000;
        char path[4096];
        snprintf(path, sizeof(path), "%s", f.root);
        ASSERT(chmod(path, 0777) == 0);
        ASSERT_INTEQ(ossb_exec_run(&s, &f.res, &f.err), 0);
        ASSERT_STREQ(out_of(&f.cap), "1000\n 0 0 1\n 1000 100000 10\n");
        struct stat st;
        snprintf(path, sizeof(path), "%s/by-1000", f.root);
        ASSERT(stat(path, &st) == 0);
        ASSERT_INTEQ(st.st_uid, 100000);
        ASSERT_INTEQ(st.st_gid, 100000);
}

/* ---- interrupt (in a child process: the flag cannot be cleared) ---- */

static void *send_sigint(void *arg)
{
        (void) arg;
        struct timespec ts = { 0, 300 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        kill(getpid(), SIGINT);
        return NULL;
}

static int interrupt_child(const char *root)
{
        if (ossb_interrupt_setup() < 0)
                return 10;
        pthread_t t;
        if (pthread_create(&t, NULL, send_sigint, NULL) != 0)
                return 11;
        struct capture cap = { 0 };
        struct ossb_exec_result res = { 0 };
        struct ossb_error *err = NULL;
        double t0 = now_s();
        int r = run_sh(root, "echo started; sleep 6543; echo not-reached", &cap, &res, &err);
        pthread_join(t, NULL);
        int code = 0;
        if (r != -EINTR || !err || !strstr(err->msg, "interrupted"))
                code = 12;
        else if (now_s() - t0 > 5.0)
                code = 13;
        else if (process_with_cmdline("sleep 6543"))
                code = 14;
        else if (!cap.out.buf || strstr(cap.out.buf, "not-reached"))
                code = 15;
        capture_free(&cap);
        ossb_exec_result_clear(&res);
        ossb_error_free(err);
        return code;
}

static void test_interrupt(void)
{
        FIXTURE(f);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
                exit(interrupt_child(f.root)); /* exit(): coverage builds write their counters */
        int status;
        ASSERT(waitpid(pid, &status, 0) == pid);
        ASSERT(WIFEXITED(status));
        ASSERT_INTEQ(WEXITSTATUS(status), 0);
}

/* ---- rootless: an unprivileged user with a user namespace ---- */

static bool userns_possible(void)
{
        _cleanup_free_ char *v = NULL;
        if (ossb_read_file("/proc/sys/kernel/unprivileged_userns_clone", 16, &v, NULL, NULL) == 0 && v[0] == '0')
                return false;
        pid_t pid = fork();
        if (pid == 0) {
                if (geteuid() == 0 && (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
                        _exit(1);
                _exit(unshare(CLONE_NEWUSER) < 0 ? 1 : 0);
        }
        int status;
        return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int chown_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void) st;
        (void) type;
        (void) ftw;
        return lchown(path, 65534, 65534) < 0 ? -1 : 0;
}

/* Become "nobody" as a user who started ossb: real and effective uid 65534.  When the test
 * runs as root the saved uid stays 0, so that the child can become root again and write its
 * coverage counters at exit (its effective capabilities are gone meanwhile). */
static int become_nobody(void)
{
        if (geteuid() != 0)
                return 0;
        if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 0) < 0 || setresuid(65534, 65534, 0) < 0)
                return -1;
        /* a uid change makes a process non-dumpable, and its /proc files root's */
        return prctl(PR_SET_DUMPABLE, 1) < 0 ? -1 : 0;
}

static void back_to_root(void)
{
        if (getuid() != 0 && setresuid(0, 0, 0) == 0)
                (void) setresgid(0, 0, 0);
}

static int rootless_run(const char *root, struct ossb_exec_spec *s, const char *want, int code)
{
        struct capture cap = { 0 };
        struct ossb_exec_result res = { 0 };
        struct ossb_error *err = NULL;
        s->output_userdata = &cap;
        int r = ossb_exec_run(s, &res, &err);
        if (r < 0) {
                fprintf(stderr, "# rootless run in %s failed: %s\n", root, err && err->msg ? err->msg : "?");
        } else if (!cap.out.buf || strcmp(cap.out.buf, want) != 0) {
                fprintf(stderr, "# rootless output: \"%s\" / \"%s\"\n", out_of(&cap), err_of(&cap));
                r = -1;
        }
        capture_free(&cap);
        ossb_exec_result_clear(&res);
        ossb_error_free(err);
        return r < 0 ? code : 0;
}

static int rootless_child(const char *root)
{
        if (become_nobody() < 0)
                return 20;
        char *argv[] = { "sh", "-c",
                         "id -u; echo $$; touch /made; echo x > /dev/null && echo null; hostname;"
                         " tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; test -d /sys/class && echo sys",
                         NULL };
        struct ossb_exec_spec s = spec_for(root, argv, NULL);
        s.userns = true;
        s.network = OSSB_NET_NONE;
        int code = rootless_run(root, &s, "0\n1\nnull\nbuildkitsandbox\nlo\nsys\n", 21);
        if (code)
                return code;
        /* host network: sysfs cannot be mounted, the host's /sys is bound instead */
        s.network = OSSB_NET_HOST;
        char *argv2[] = { "sh", "-c", "test -d /sys/class && echo sys; echo y > /etc/hosts || echo ro", NULL };
        s.argv = argv2;
        code = rootless_run(root, &s, "sys\nro\n", 22);
        if (code)
                return code;
        /* only id 0 is mapped */
        s.uid = 1;
        struct capture cap = { 0 };
        struct ossb_exec_result res = { 0 };
        struct ossb_error *err = NULL;
        s.output_userdata = &cap;
        if (ossb_exec_run(&s, &res, &err) >= 0 || !strstr(err->msg, "setuid 1"))
                code = 23;
        capture_free(&cap);
        ossb_error_free(err);
        back_to_root();
        return code;
}

static int wait_child(pid_t pid)
{
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

static void test_rootless(void)
{
        if (!userns_possible()) {
                printf("# user namespaces are not available to unprivileged users: rootless test skipped\n");
                return;
        }
        FIXTURE(f);
        if (geteuid() == 0)
                ASSERT(nftw(f.dir, chown_visit, 16, FTW_PHYS) == 0);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
                exit(rootless_child(f.root)); /* exit(): coverage builds write their counters */
        ASSERT_INTEQ(wait_child(pid), 0);
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/made", f.root);
        ASSERT(stat(path, &st) == 0);
        ASSERT_INTEQ(st.st_uid, geteuid() == 0 ? 65534 : geteuid());
}

/* ---- rootless with subordinate ids: newuidmap/newgidmap ---- */

/* In a private mount namespace, /etc/subuid and /etc/subgid give nobody 100000-165535. */
static int fake_subids(const char *dir)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/subids", dir);
        if (ossb_write_file_atomic(path, "nobody:100000:65536\n", 20, 0644, NULL) < 0)
                return -1;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -1;
        if (mount(path, "/etc/subuid", NULL, MS_BIND, NULL) < 0 || mount(path, "/etc/subgid", NULL, MS_BIND, NULL) < 0)
                return -1;
        return 0;
}

static int subids_child(const char *dir, const char *root)
{
        if (fake_subids(dir) < 0)
                return 30;
        if (become_nobody() < 0)
                return 31;
        char *argv[] = { "sh", "-c", "id -u; id -g; touch /by-1000; cat /proc/self/uid_map | tr -s ' '", NULL };
        struct ossb_exec_spec s = spec_for(root, argv, NULL);
        s.userns = true;
        s.uid = 1000;
        s.gid = 1000;
        s.uid_map = "0 65534 1\n1 100000 65536\n";
        s.gid_map = "0 65534 1\n1 100000 65536\n";
        int code = rootless_run(root, &s, "1000\n1000\n 0 65534 1\n 1 100000 65536\n", 32);
        if (!code) {
                /* a range the subordinate ids do not grant: newuidmap says no */
                struct ossb_error *err = NULL;
                struct ossb_exec_result res = { 0 };
                s.uid_map = "0 65534 1\n1 300000 10\n";
                s.output_userdata = NULL;
                if (ossb_exec_run(&s, &res, &err) >= 0 || !strstr(err->msg, "newuidmap"))
                        code = 33;
                else
                        fprintf(stderr, "# as expected: %s\n", err->msg);
                ossb_error_free(err);
        }
        back_to_root();
        return code;
}

static void test_rootless_subids(void)
{
        if (access("/usr/bin/newuidmap", X_OK) < 0 || !userns_possible()) {
                printf("# newuidmap or user namespaces unavailable: skipped\n");
                return;
        }
        FIXTURE(f);
        ASSERT(nftw(f.dir, chown_visit, 16, FTW_PHYS) == 0);
        ASSERT(chmod(f.root, 01777) == 0);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
                exit(subids_child(f.dir, f.root));
        ASSERT_INTEQ(wait_child(pid), 0);
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/by-1000", f.root);
        ASSERT(stat(path, &st) == 0);
        /* uid 1000 inside is 100000 + 999 outside */
        ASSERT_INTEQ(st.st_uid, 100999);
        ASSERT_INTEQ(st.st_gid, 100999);
}

int main(void)
{
        if (geteuid() != 0) {
                if (!userns_possible())
                        return 77;
                RUN_TEST(test_rootless);
                TAP_END();
        }
        RUN_TEST(test_echo);
        RUN_TEST(test_exit_code);
        RUN_TEST(test_env_exact);
        RUN_TEST(test_default_path);
        RUN_TEST(test_cwd);
        RUN_TEST(test_ids);
        RUN_TEST(test_root_caps);
        RUN_TEST(test_hostname);
        RUN_TEST(test_etc_files);
        RUN_TEST(test_existing_etc_untouched);
        RUN_TEST(test_proc_pidns);
        RUN_TEST(test_dev);
        RUN_TEST(test_network_none);
        RUN_TEST(test_network_host);
        RUN_TEST(test_daemon_killed);
        RUN_TEST(test_signaled);
        RUN_TEST(test_missing_binary);
        RUN_TEST(test_mounts);
        RUN_TEST(test_symlinked_mountpoints);
        RUN_TEST(test_long_lines_and_tail);
        RUN_TEST(test_no_output_callback);
        RUN_TEST(test_fds_closed);
        RUN_TEST(test_rootfs_unchanged);
        RUN_TEST(test_setup_errors);
        RUN_TEST(test_uid_unmapped_userns);
        RUN_TEST(test_interrupt);
        RUN_TEST(test_rootless);
        RUN_TEST(test_rootless_subids);
        TAP_END();
}
