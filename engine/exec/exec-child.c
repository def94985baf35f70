/* engine/exec/exec-child.c - the two children of ossb_exec_run: the helper, which creates
 * the namespaces and waits for the sandbox, and the sandbox, PID 1 of the new PID namespace,
 * which builds its mount tree, enters it with pivot_root, drops its privileges and execs the
 * command.  See exec-internal.h for the process tree and the record protocol.
 *
 * Owns: nothing that outlives these processes.  Both run after fork() in a copy of ossb: they
 * allocate only for error messages and leave through _exit() (or execve).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "engine/exec/exec-internal.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- coverage ---- */

/* gcov writes its counters from exit() and, in a coverage build, from every execve() (which
 * GCC wraps); these processes leave through _exit() or execve().  Coverage builds only: the
 * helper keeps an O_CLOEXEC fd of the host's root (the sandbox inherits it) because the
 * sandbox's pivot_root moves the root of both; a flush chroots back there first, and after
 * pivot_root GCOV_PREFIX sends the counters of the execve wrapper there, not into the rootfs. */
extern void __gcov_dump(void) __attribute__((weak));
static int coverage_host_root = -1;

void exec_coverage_flush(void)
{
        if (!__gcov_dump)
                return;
        if (coverage_host_root >= 0 && (fchdir(coverage_host_root) < 0 || chroot(".") < 0))
                return; /* would write into the rootfs */
        __gcov_dump();
}

static void coverage_keep_host_root(void)
{
        if (__gcov_dump)
                coverage_host_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static void coverage_after_pivot(void)
{
        char prefix[32];
        if (coverage_host_root < 0)
                return;
        snprintf(prefix, sizeof(prefix), "/proc/self/fd/%d", coverage_host_root);
        (void) setenv("GCOV_PREFIX", prefix, 1);
}

/* ---- records ---- */

void exec_msg_send(int fd, enum exec_msg_type type, int value, const char *text)
{
        char buf[sizeof(struct exec_msg_hdr) + EXEC_MSG_MAX_TEXT];
        size_t len = text ? strlen(text) : 0;
        if (len > EXEC_MSG_MAX_TEXT)
                len = EXEC_MSG_MAX_TEXT;
        struct exec_msg_hdr h = { .type = type, .value = value, .len = (uint32_t) len };
        memcpy(buf, &h, sizeof(h));
        if (len > 0)
                memcpy(buf + sizeof(h), text, len);
        (void) ossb_write_all(fd, buf, sizeof(h) + len);
}

_Noreturn void exec_child_fail(const struct exec_child *c, int code, struct ossb_error *err)
{
        const char *text = err && err->msg ? err->msg : strerror(code < 0 ? -code : EIO);
        exec_msg_send(c->msg_fd, EXEC_MSG_ERROR, code < 0 ? -code : EIO, text);
        exec_coverage_flush();
        _exit(EXEC_SETUP_FAILED);
}

_Noreturn static void fail_errno(const struct exec_child *c, const char *what)
{
        struct ossb_error *e = NULL;
        int code = ossb_error_set(&e, -errno, "%s: %m", what);
        exec_child_fail(c, code, e);
}

/* ---- exec ---- */

static const char *env_get(char *const *env, const char *key)
{
        size_t kl = strlen(key);
        for (size_t i = 0; env && env[i]; i++)
                if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
                        return env[i] + kl + 1;
        return NULL;
}

_Noreturn static void exec_failed(const char *name, int e)
{
        exec_coverage_flush();
        if (e == ENOENT || e == ENOTDIR) {
                dprintf(STDERR_FILENO, "exec: %s: not found\n", name);
                _exit(127);
        }
        dprintf(STDERR_FILENO, "exec: %s: %s\n", name, strerror(e));
        _exit(126);
}

_Noreturn void exec_command(char *const *argv, char *const *env)
{
        const char *name = argv[0];
        if (strchr(name, '/') || !*name) {
                execve(name, argv, env);
                exec_failed(name, errno);
        }
        const char *path = env_get(env, "PATH");
        if (!path)
                path = DEFAULT_PATH;
        int saved = ENOENT;
        for (const char *p = path;; p++) {
                const char *end = strchrnul(p, ':');
                char file[PATH_MAX];
                int dl = (int) (end - p);
                int n = snprintf(file, sizeof(file), "%.*s%s%s", dl, p, dl > 0 ? "/" : "", name);
                if (n > 0 && (size_t) n < sizeof(file)) {
                        execve(file, argv, env);
                        if (errno != ENOENT && errno != ENOTDIR && errno != ENAMETOOLONG)
                                saved = errno; /* as execvp: remember EACCES, try the rest */
                        if (errno != ENOENT && errno != ENOTDIR && errno != EACCES && errno != ENAMETOOLONG)
                                break;
                }
                if (!*end)
                        break;
                p = end;
        }
        exec_failed(name, saved);
}

/* ---- the sandbox ---- */

static void reset_signals(void)
{
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigemptyset(&sa.sa_mask);
        for (int sig = 1; sig < NSIG; sig++)
                (void) sigaction(sig, &sa, NULL); /* SIGKILL, SIGSTOP and RT internals refuse: fine */
        sigset_t none;
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

static int setup_stdio(const struct exec_child *c, struct ossb_error **err)
{
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0)
                return ossb_error_set(err, -errno, "opening /dev/null: %m");
        int r = 0;
        if (dup2(null, STDIN_FILENO) < 0 || dup2(c->out_fd, STDOUT_FILENO) < 0 || dup2(c->err_fd, STDERR_FILENO) < 0)
                r = ossb_error_set(err, -errno, "setting up stdin/stdout/stderr: %m");
        close(null);
        return r;
}

static int enter_root(int rootfd, struct ossb_error **err)
{
        if (fchdir(rootfd) < 0)
                return ossb_error_set(err, -errno, "chdir to the root: %m");
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return ossb_error_set(err, -errno, "pivot_root: %m");
        coverage_after_pivot();
        if (umount2(".", MNT_DETACH) < 0)
                return ossb_error_set(err, -errno, "detaching the old root: %m");
        if (chdir("/") < 0)
                return ossb_error_set(err, -errno, "chdir /: %m");
        return 0;
}

static int enter_cwd(const char *cwd, struct ossb_error **err)
{
        int r = ossb_mkdir_p(cwd, 0755);
        if (r < 0)
                return ossb_error_set(err, r, "creating working directory %s: %s", cwd, strerror(-r));
        if (chdir(cwd) < 0)
                return ossb_error_set(err, -errno, "chdir to working directory %s: %m", cwd);
        return 0;
}

/* PR_SET_PDEATHSIG is reset by credential changes: set it again, then make sure the helper did
 * not die in between (its end of `alive_fd` closes when it does). */
static int rearm_death_signal(int alive_fd, struct ossb_error **err)
{
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                return ossb_error_set(err, -errno, "prctl(PR_SET_PDEATHSIG): %m");
        struct pollfd p = { .fd = alive_fd, .events = POLLIN };
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
                return ossb_error_set(err, -ECHILD, "the sandbox helper is gone");
        return 0;
}

static int sandbox_setup(const struct exec_child *c, int alive_fd, struct ossb_error **err)
{
        const struct ossb_exec_spec *spec = c->spec;
        /* first, so that everything the command starts counts against its limits */
        int r = exec_cgroup_join(c->cgroup, err);
        if (r < 0)
                return r;
        reset_signals();
        if (setsid() < 0)
                return ossb_error_set(err, -errno, "setsid: %m");
        r = setup_stdio(c, err);
        if (r >= 0 && spec->network == OSSB_NET_NONE)
                r = exec_loopback_up(err);
        if (r >= 0 && sethostname(c->hostname, strlen(c->hostname)) < 0)
                r = ossb_error_set(err, -errno, "sethostname %s: %m", c->hostname);
        if (r < 0)
                return r;
        _cleanup_close_ int rootfd = exec_setup_mounts(c, err);
        if (rootfd < 0)
                return rootfd;
        r = enter_root(rootfd, err);
        if (r >= 0)
                r = enter_cwd(spec->cwd ? spec->cwd : "/", err);
        if (r >= 0)
                r = exec_drop_privileges(spec, err);
        if (r >= 0)
                r = rearm_death_signal(alive_fd, err);
        return r;
}

_Noreturn static void sandbox_main(const struct exec_child *c, int alive_fd)
{
        struct ossb_error *err = NULL;
        /* die with the helper (and if it died before the prctl, notice its closed pipe) */
        int r = rearm_death_signal(alive_fd, &err);
        if (r >= 0)
                r = sandbox_setup(c, alive_fd, &err);
        if (r < 0)
                exec_child_fail(c, r, err);
        /* nothing of ossb's may leak into the command */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                fail_errno(c, "close_range");
        exec_command(c->spec->argv, c->spec->env);
}

/* ---- the helper ---- */

static void close_other_fds(const struct exec_child *c)
{
        int keep[] = { c->msg_fd, c->sync_fd, c->out_fd, c->err_fd };
        /* sort the four */
        for (size_t i = 1; i < ELEMENTSOF(keep); i++)
                for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];
                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }
        unsigned from = 3;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                if (keep[i] < (int) from)
                        continue;
                if ((unsigned) keep[i] > from)
                        (void) close_range(from, (unsigned) keep[i] - 1, 0);
                from = (unsigned) keep[i] + 1;
        }
        (void) close_range(from, ~0U, 0);
}

static void helper_signals(sigset_t *waited)
{
        struct sigaction ign = { .sa_handler = SIG_IGN }, dfl = { .sa_handler = SIG_DFL };
        sigemptyset(&ign.sa_mask);
        sigemptyset(&dfl.sa_mask);
        /* a Ctrl-C reaches the whole process group: only ossb decides what to do about it */
        (void) sigaction(SIGINT, &ign, NULL);
        (void) sigaction(SIGQUIT, &ign, NULL);
        (void) sigaction(SIGHUP, &ign, NULL);
        (void) sigaction(SIGCHLD, &dfl, NULL);
        /* SIGTERM from ossb means "kill the sandbox"; both are taken with sigwaitinfo */
        sigemptyset(waited);
        sigaddset(waited, SIGTERM);
        sigaddset(waited, SIGCHLD);
        (void) sigprocmask(SIG_BLOCK, waited, NULL);
}

static void die_with_parent(const struct exec_child *c)
{
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != c->parent)
                _exit(EXEC_SETUP_FAILED);
}

static void enter_userns(const struct exec_child *c)
{
        if (unshare(CLONE_NEWUSER) < 0)
                fail_errno(c, "creating a user namespace (unshare)");
        exec_msg_send(c->msg_fd, EXEC_MSG_USERNS, 0, NULL);
        char reply = 1;
        if (read(c->sync_fd, &reply, 1) != 1 || reply != 0)
                _exit(EXEC_SETUP_FAILED); /* the parent says why */
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                fail_errno(c, "becoming root in the user namespace (is id 0 mapped?)");
        die_with_parent(c);
}

static int wait_sandbox(pid_t pid, const sigset_t *waited)
{
        for (;;) {
                int status;
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        return status;
                if (w < 0 && errno != EINTR)
                        return W_EXITCODE(EXEC_SETUP_FAILED, 0);
                int sig = sigwaitinfo(waited, NULL);
                if (sig == SIGTERM)
                        (void) kill(pid, SIGKILL); /* still our unreaped child: no pid reuse */
        }
}

_Noreturn void exec_helper_main(const struct exec_child *c)
{
        sigset_t waited;
        helper_signals(&waited);
        die_with_parent(c);
        close_other_fds(c);
        coverage_keep_host_root();
        if (c->spec->userns)
                enter_userns(c);
        close(c->sync_fd);

        int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
        if (c->spec->network == OSSB_NET_NONE)
                flags |= CLONE_NEWNET;
        if (unshare(flags) < 0)
                fail_errno(c, "creating the namespaces (unshare)");
        int alive[2];
        if (pipe2(alive, O_CLOEXEC) < 0)
                fail_errno(c, "pipe");
        pid_t pid = fork();
        if (pid < 0)
                fail_errno(c, "fork");
        if (pid == 0) {
                close(alive[1]);
                sandbox_main(c, alive[0]);
        }
        close(alive[0]);
        close(c->out_fd);
        close(c->err_fd);
        int status = wait_sandbox(pid, &waited);
        exec_msg_send(c->msg_fd, EXEC_MSG_STATUS, status, NULL);
        exec_coverage_flush();
        _exit(0);
}
