/* engine/exec/exec.c - the parent side of ossb_exec_run: the private /etc files, the pipes,
 * the fork of the helper, the id maps of a user namespace, the loop that reads the command's
 * output and the children's records, interrupts, and the result.
 *
 * Owns: the private directory of one run (removed before returning) and the result.
 * Children: see exec-internal.h for the process tree and exec-child.c for what they do.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/exec/exec-internal.h"

#define LINE_MAX_BYTES (64 * 1024) /* longer lines are passed on in pieces */
#define TAIL_LINE_MAX 4096         /* a line kept for the error message is cut here */
#define POLL_INTERVAL_MS 200       /* how often the interrupt flag is looked at */
#define DRAIN_TIMEOUT_MS 1000      /* output still read after the helper exited */
#define KILL_TIMEOUT_MS 5000       /* after this, an interrupted helper gets SIGKILL */
#define DEFAULT_HOSTNAME "buildkitsandbox"
#define NON_DUMPABLE_HINT " (a process that changed its uid is not dumpable: see PR_SET_DUMPABLE)"

struct stream {
        int fd;
        bool is_stderr;
        struct ossb_strbuf partial; /* bytes of an unfinished line */
};

struct run {
        const struct ossb_exec_spec *spec;
        pid_t helper;
        struct stream out, err;
        int msg_fd, sync_fd;
        struct ossb_strbuf msg;     /* bytes of an unfinished record */
        char *tail[OSSB_EXEC_TAIL_LINES];
        size_t tail_next, tail_count;
        char **created;
        int status;
        bool have_status;
        struct ossb_error *child_err; /* the first failure a child reported */
        int oom;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* ---- private /etc files ---- */

static int write_small_file(const char *dir, const char *name, const char *data, size_t len,
                            struct ossb_error **err)
{
        _cleanup_free_ char *path = ossb_path_join(dir, name);
        if (!path)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return ossb_error_set(err, -errno, "creating %s: %m", path);
        /* the umask must not decide what the command sees */
        if (fchmod(fd, 0644) < 0 || ossb_write_all(fd, data, len) < 0)
                return ossb_error_set(err, -errno, "writing %s: %m", path);
        return 0;
}

static int write_etc_files(const char *dir, const char *hostname, struct ossb_error **err)
{
        _cleanup_free_ char *hosts = NULL, *host_line = NULL, *resolv = NULL;
        size_t resolv_len = 0;

        if (asprintf(&hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                     hostname) < 0 ||
            asprintf(&host_line, "%s\n", hostname) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");

        /* the host's resolver configuration, as Docker and BuildKit give it to a build */
        int r = ossb_read_file("/etc/resolv.conf", 1024 * 1024, &resolv, &resolv_len, NULL);
        if (r < 0 && r != -ENOENT)
                return ossb_error_set(err, r, "reading /etc/resolv.conf: %s", strerror(-r));

        r = write_small_file(dir, "hosts", hosts, strlen(hosts), err);
        if (r >= 0)
                r = write_small_file(dir, "hostname", host_line, strlen(host_line), err);
        if (r >= 0)
                r = write_small_file(dir, "resolv.conf", resolv ? resolv : "", resolv_len, err);
        return r;
}

static int make_files_dir(const struct ossb_exec_spec *spec, const char *hostname, char **ret,
                          struct ossb_error **err)
{
        const char *base = spec->tmpdir;
        if (!base)
                base = secure_getenv("TMPDIR");
        if (!base || !*base)
                base = "/tmp";
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/ossb-exec-XXXXXX", base) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!mkdtemp(dir))
                return ossb_error_set(err, -errno, "creating a directory in %s: %m", base);
        /* searchable: root of a user namespace that does not map the caller must reach the files */
        int r = chmod(dir, 0711) < 0 ? ossb_error_set(err, -errno, "chmod %s: %m", dir) : 0;
        if (r >= 0)
                r = write_etc_files(dir, hostname, err);
        if (r < 0) {
                (void) ossb_rm_rf(dir);
                return r;
        }
        *ret = TAKE_PTR(dir);
        return 0;
}

/* ---- output lines ---- */

static void tail_push(struct run *r, const char *line, size_t len)
{
        if (len > TAIL_LINE_MAX)
                len = TAIL_LINE_MAX;
        char *copy = strndup(line, len);
        if (!copy) {
                r->oom = -ENOMEM;
                return;
        }
        free(r->tail[r->tail_next]);
        r->tail[r->tail_next] = copy;
        r->tail_next = (r->tail_next + 1) % OSSB_EXEC_TAIL_LINES;
        if (r->tail_count < OSSB_EXEC_TAIL_LINES)
                r->tail_count++;
}

static void emit_line(struct run *r, struct stream *s, const char *line, size_t len)
{
        if (r->spec->output)
                r->spec->output(r->spec->output_userdata, s->is_stderr, line, len);
        tail_push(r, line, len);
}

static void emit_partial(struct run *r, struct stream *s)
{
        emit_line(r, s, s->partial.buf ? s->partial.buf : "", s->partial.len);
        ossb_strbuf_reset(&s->partial);
}

static void split_lines(struct run *r, struct stream *s, char *p, size_t n)
{
        while (n > 0) {
                size_t room = LINE_MAX_BYTES - s->partial.len;
                const char *nl = memchr(p, '\n', n < room ? n : room);
                size_t take = nl ? (size_t) (nl - p) : (n < room ? n : room);
                if (s->partial.len == 0 && nl) {
                        /* a whole line in the chunk: pass it without copying */
                        p[take] = '\0'; /* was the newline */
                        emit_line(r, s, p, take);
                } else {
                        if (ossb_strbuf_append_n(&s->partial, p, take) < 0)
                                r->oom = -ENOMEM;
                        if (nl || s->partial.len >= LINE_MAX_BYTES)
                                emit_partial(r, s);
                }
                p += take + (nl ? 1 : 0);
                n -= take + (nl ? 1 : 0);
        }
}

static int stream_read(struct run *r, struct stream *s)
{
        char buf[16384 + 1];
        ssize_t n = read(s->fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (n == 0) {
                if (s->partial.len > 0)
                        emit_partial(r, s);
                close_fd(&s->fd);
                return 0;
        }
        buf[n] = '\0';
        split_lines(r, s, buf, (size_t) n);
        return 0;
}

static char *tail_join(struct run *r)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        size_t start = (r->tail_next + OSSB_EXEC_TAIL_LINES - r->tail_count) % OSSB_EXEC_TAIL_LINES;
        for (size_t i = 0; i < r->tail_count; i++) {
                const char *line = r->tail[(start + i) % OSSB_EXEC_TAIL_LINES];
                if ((i > 0 && ossb_strbuf_append_c(&sb, '\n') < 0) || ossb_strbuf_append(&sb, line) < 0) {
                        ossb_strbuf_free(&sb);
                        return NULL;
                }
        }
        return ossb_strbuf_steal(&sb);
}

/* ---- user namespace maps ---- */

static int write_proc_file(pid_t pid, const char *name, const char *data)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* the kernel takes the whole map in one write */
        ssize_t n = write(fd, data, strlen(data));
        if (n < 0)
                return -errno;
        return (size_t) n == strlen(data) ? 0 : -EIO;
}

/* newuidmap PID inside outside count ...: for maps an unprivileged caller may not write. */
static int run_map_helper(const char *helper, pid_t pid, const char *map, struct ossb_error **err)
{
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *copy = strdup(map);
        char pidstr[16];
        snprintf(pidstr, sizeof(pidstr), "%d", (int) pid);
        if (!copy || ossb_strv_push(&argv, helper) < 0 || ossb_strv_push(&argv, pidstr) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (char *f = copy; *f;) {
                size_t n = strcspn(f, " \t\n");
                bool last = f[n] == '\0';
                f[n] = '\0';
                if (n > 0 && ossb_strv_push(&argv, f) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                f += n + (last ? 0 : 1);
        }

        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return ossb_error_set(err, -errno, "pipe: %m");
        pid_t child = fork();
        if (child < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return ossb_error_set(err, -errno, "fork: %m");
        }
        if (child == 0) {
                if (dup2(pfd[1], STDOUT_FILENO) >= 0 && dup2(pfd[1], STDERR_FILENO) >= 0)
                        execvp(helper, argv);
                dprintf(pfd[1], "%s: %m", helper);
                _exit(127);
        }
        close(pfd[1]);
        _cleanup_free_ char *out = NULL;
        size_t out_len = 0;
        (void) ossb_read_fd(pfd[0], 4096, &out, &out_len);
        close(pfd[0]);
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                while (out_len > 0 && out[out_len - 1] == '\n')
                        out[--out_len] = '\0';
                return ossb_error_set(err, -EPERM, "%s %s failed: %s", helper, pidstr,
                                      out && *out ? out : "(no output)");
        }
        return 0;
}

static int write_map(pid_t pid, const char *name, const char *given, unsigned id, const char *helper,
                     struct ossb_error **err)
{
        char fallback[64];
        snprintf(fallback, sizeof(fallback), "0 %u 1\n", id);
        const char *map = given ? given : fallback;
        int r = write_proc_file(pid, name, map);
        if (r == -EPERM && given)
                return run_map_helper(helper, pid, map, err);
        if (r < 0)
                return ossb_error_set(err, r, "writing /proc/%d/%s (\"%s\"): %s%s", (int) pid, name, map,
                                      strerror(-r), r == -EACCES ? NON_DUMPABLE_HINT : "");
        return 0;
}

static int write_id_maps(struct run *r, struct ossb_error **err)
{
        const struct ossb_exec_spec *spec = r->spec;
        int k;
        if (!spec->gid_map && geteuid() != 0) {
                /* an unprivileged process may map its own gid only with setgroups denied */
                k = write_proc_file(r->helper, "setgroups", "deny");
                if (k < 0 && k != -ENOENT)
                        return ossb_error_set(err, k, "writing /proc/%d/setgroups: %s%s", (int) r->helper,
                                              strerror(-k), k == -EACCES ? NON_DUMPABLE_HINT : "");
        }
        k = write_map(r->helper, "uid_map", spec->uid_map, (unsigned) geteuid(), "newuidmap", err);
        if (k >= 0)
                k = write_map(r->helper, "gid_map", spec->gid_map, (unsigned) getegid(), "newgidmap", err);
        return k;
}

/* ---- records from the children ---- */

static void handle_userns(struct run *r)
{
        struct ossb_error *e = NULL;
        char reply = 0;
        if (write_id_maps(r, &e) < 0) {
                if (!r->child_err)
                        r->child_err = e;
                else
                        ossb_error_free(e);
                reply = 1;
        }
        if (write(r->sync_fd, &reply, 1) != 1)
                log_debug("exec: cannot reply to the sandbox helper: %m");
        close_fd(&r->sync_fd);
}

static void handle_record(struct run *r, const struct exec_msg_hdr *h, const char *text)
{
        switch (h->type) {
        case EXEC_MSG_ERROR:
                if (!r->child_err)
                        (void) ossb_error_set(&r->child_err, h->value > 0 ? -h->value : -EIO, "%.*s",
                                              (int) h->len, text);
                break;
        case EXEC_MSG_CREATED: {
                char *p = strndup(text, h->len);
                if (!p || ossb_strv_consume(&r->created, p) < 0)
                        r->oom = -ENOMEM;
                break;
        }
        case EXEC_MSG_USERNS:
                handle_userns(r);
                break;
        case EXEC_MSG_STATUS:
                r->status = h->value;
                r->have_status = true;
                break;
        default:
                log_debug("exec: unknown record %u from the sandbox", h->type);
        }
}

static void parse_records(struct run *r)
{
        size_t pos = 0;
        while (r->msg.len - pos >= sizeof(struct exec_msg_hdr)) {
                struct exec_msg_hdr h;
                memcpy(&h, r->msg.buf + pos, sizeof(h));
                if (h.len > EXEC_MSG_MAX_TEXT)
                        h.len = EXEC_MSG_MAX_TEXT;
                if (r->msg.len - pos - sizeof(h) < h.len)
                        break;
                handle_record(r, &h, r->msg.buf + pos + sizeof(h));
                pos += sizeof(h) + h.len;
        }
        if (pos > 0) {
                memmove(r->msg.buf, r->msg.buf + pos, r->msg.len - pos);
                r->msg.len -= pos;
                r->msg.buf[r->msg.len] = '\0';
        }
}

static int msg_read(struct run *r)
{
        char buf[4096];
        ssize_t n = read(r->msg_fd, buf, sizeof(buf));
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (n == 0) {
                close_fd(&r->msg_fd);
                return 0;
        }
        if (ossb_strbuf_append_n(&r->msg, buf, (size_t) n) < 0)
                return -ENOMEM;
        parse_records(r);
        return 0;
}

/* ---- the loop ---- */

/* Poll the pipes until the helper has gone (its end of the message pipe closed) and the output
 * is drained; on an interrupt, have the helper kill the sandbox.  Returns the interrupting
 * signal (0 if none) or -errno. */
static int run_loop(struct run *r)
{
        int64_t deadline = -1; /* when to stop draining, or to SIGKILL an interrupted helper */
        int sig = 0;
        bool killed = false;

        while (r->msg_fd >= 0 || r->out.fd >= 0 || r->err.fd >= 0) {
                if (!sig && ossb_interrupted()) {
                        sig = ossb_interrupted();
                        (void) kill(r->helper, SIGTERM); /* the helper SIGKILLs the sandbox */
                        close_fd(&r->sync_fd);           /* in case it waits for id maps */
                        deadline = now_ms() + KILL_TIMEOUT_MS;
                }
                if (r->msg_fd < 0 && !sig && deadline < 0)
                        deadline = now_ms() + DRAIN_TIMEOUT_MS;
                int timeout = POLL_INTERVAL_MS;
                if (deadline >= 0) {
                        int64_t left = deadline - now_ms();
                        if (left <= 0) {
                                /* helper gone but something holds a pipe, or an interrupted
                                 * helper that SIGKILL did not end either: stop here */
                                if (r->msg_fd < 0 || killed)
                                        break;
                                (void) kill(r->helper, SIGKILL);
                                killed = true;
                                deadline = now_ms() + KILL_TIMEOUT_MS;
                                continue;
                        }
                        if (left < timeout)
                                timeout = (int) left;
                }
                struct pollfd p[3] = {
                        { .fd = r->msg_fd, .events = POLLIN },
                        { .fd = r->out.fd, .events = POLLIN },
                        { .fd = r->err.fd, .events = POLLIN },
                };
                int n = poll(p, 3, timeout);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;
                int k = 0;
                if (p[0].revents)
                        k = msg_read(r);
                if (k >= 0 && p[1].revents)
                        k = stream_read(r, &r->out);
                if (k >= 0 && p[2].revents)
                        k = stream_read(r, &r->err);
                if (k < 0)
                        return k;
        }
        return sig;
}

/* ---- setup and result ---- */

static void run_free(struct run *r)
{
        close_fd(&r->out.fd);
        close_fd(&r->err.fd);
        close_fd(&r->msg_fd);
        close_fd(&r->sync_fd);
        ossb_strbuf_free(&r->out.partial);
        ossb_strbuf_free(&r->err.partial);
        ossb_strbuf_free(&r->msg);
        for (size_t i = 0; i < OSSB_EXEC_TAIL_LINES; i++)
                free(r->tail[i]);
        ossb_strv_free(r->created);
        ossb_error_free(r->child_err);
}

static int check_spec(const struct ossb_exec_spec *spec, struct ossb_error **err)
{
        if (!spec->rootfs || spec->rootfs[0] != '/')
                return ossb_error_set(err, -EINVAL, "sandbox: the root file system must be an absolute path");
        if (!spec->argv || !spec->argv[0])
                return ossb_error_set(err, -EINVAL, "sandbox: no command to run");
        if (spec->cwd && spec->cwd[0] != '/')
                return ossb_error_set(err, -EINVAL, "sandbox: working directory `%s` is not absolute",
                                      spec->cwd);
        for (size_t i = 0; i < spec->n_mounts; i++) {
                const struct ossb_exec_mount *m = &spec->mounts[i];
                if (!m->target || m->target[0] != '/')
                        return ossb_error_set(err, -EINVAL, "sandbox: mount target `%s` is not absolute",
                                              m->target ? m->target : "(null)");
                if (!m->tmpfs && (!m->source || m->source[0] != '/'))
                        return ossb_error_set(err, -EINVAL, "sandbox: bind mount source `%s` is not absolute",
                                              m->source ? m->source : "(null)");
        }
        return 0;
}

/* Pipes: [0] stdout, [1] stderr, [2] messages, [3] sync (parent -> helper). */
static int make_pipes(int p[4][2], struct ossb_error **err)
{
        for (int i = 0; i < 4; i++)
                p[i][0] = p[i][1] = -1;
        for (int i = 0; i < 4; i++)
                if (pipe2(p[i], O_CLOEXEC) < 0)
                        return ossb_error_set(err, -errno, "sandbox: pipe: %m");
        return 0;
}

static void close_pipes(int p[4][2])
{
        for (int i = 0; i < 4; i++) {
                close_fd(&p[i][0]);
                close_fd(&p[i][1]);
        }
}

static int start_helper(struct run *r, const char *files_dir, const char *hostname, const struct exec_cgroup *cg,
                        struct ossb_error **err)
{
        int p[4][2];
        int k = make_pipes(p, err);
        if (k < 0) {
                close_pipes(p);
                return k;
        }
        struct exec_child c = {
                .spec = r->spec, .files_dir = files_dir, .hostname = hostname,
                .out_fd = p[0][1], .err_fd = p[1][1], .msg_fd = p[2][1], .sync_fd = p[3][0],
                .parent = getpid(), .cgroup = cg,
        };
        r->helper = fork();
        if (r->helper < 0) {
                k = ossb_error_set(err, -errno, "sandbox: fork: %m");
                close_pipes(p);
                return k;
        }
        if (r->helper == 0)
                exec_helper_main(&c);
        r->out.fd = TAKE_FD(p[0][0]);
        r->err.fd = TAKE_FD(p[1][0]);
        r->msg_fd = TAKE_FD(p[2][0]);
        r->sync_fd = TAKE_FD(p[3][1]);
        close_pipes(p);
        return 0;
}

static int collect(struct run *r, int sig, struct ossb_exec_result *ret, struct ossb_error **err)
{
        int status = 0;
        while (waitpid(r->helper, &status, 0) < 0 && errno == EINTR)
                ;
        if (sig > 0)
                return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted by signal %d", sig);
        if (sig < 0)
                return ossb_error_set(err, sig, "sandbox: reading from the command: %s", strerror(-sig));
        if (r->child_err) {
                *err = TAKE_PTR(r->child_err);
                return ossb_error_wrap(err, "sandbox in %s", r->spec->rootfs);
        }
        if (!r->have_status)
                return ossb_error_set(err, -EIO, "sandbox: the helper process ended unexpectedly (status 0x%x)",
                                      (unsigned) status);
        if (r->oom < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");

        struct ossb_exec_result res = { 0 };
        if (WIFSIGNALED(r->status)) {
                res.signaled = true;
                res.exit_code = 128 + WTERMSIG(r->status);
        } else {
                res.exit_code = WEXITSTATUS(r->status);
        }
        res.tail = tail_join(r);
        res.created_mountpoints = r->created ? TAKE_PTR(r->created) : ossb_strv_new_empty();
        if (!res.tail || !res.created_mountpoints) {
                ossb_exec_result_clear(&res);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = res;
        return 0;
}

int ossb_exec_run(const struct ossb_exec_spec *spec, struct ossb_exec_result *ret, struct ossb_error **err)
{
        int k = check_spec(spec, err);
        if (k < 0)
                return k;
        const char *hostname = spec->hostname ? spec->hostname : DEFAULT_HOSTNAME;
        _cleanup_free_ char *files_dir = NULL;
        k = make_files_dir(spec, hostname, &files_dir, err);
        if (k < 0)
                return k;

        struct exec_cgroup cg = { 0 };
        if (exec_limits_any(spec->limits)) {
                k = exec_cgroup_setup(spec->limits, &cg, err);
                if (k < 0) {
                        (void) ossb_rm_rf(files_dir);
                        return k;
                }
        }

        struct run r = {
                .spec = spec, .out = { .fd = -1 }, .err = { .fd = -1, .is_stderr = true },
                .msg_fd = -1, .sync_fd = -1,
        };
        k = start_helper(&r, files_dir, hostname, cg.n ? &cg : NULL, err);
        if (k >= 0) {
                int sig = run_loop(&r);
                if (sig < 0)
                        (void) kill(r.helper, SIGKILL);
                k = collect(&r, sig, ret, err);
                if (k >= 0)
                        ret->oom_killed = exec_cgroup_oom_killed(&cg);
        }
        run_free(&r);
        exec_cgroup_remove(&cg);
        (void) ossb_rm_rf(files_dir);
        return k;
}

void ossb_exec_result_clear(struct ossb_exec_result *r)
{
        if (!r)
                return;
        free(r->tail);
        ossb_strv_free(r->created_mountpoints);
        r->tail = NULL;
        r->created_mountpoints = NULL;
}
