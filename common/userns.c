/* common/userns.c - see userns.h.  The process unshares its user and mount namespaces itself;
 * a helper forked just before stays in the caller's namespace and writes the id maps (through
 * newuidmap/newgidmap for subordinate ranges, directly for the single-id fallback), then
 * reports on a pipe what it did.
 *
 * Owns: the plan (what to map and how, decided before fork) and the helper process, which
 * leaves through _exit() and never outlives ossb_userns_enter.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
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
#include "common/strbuf.h"
#include "common/userns.h"

#define SUBID_FILE_MAX (1024 * 1024)
#define REPORT_MAX 8192
#define TOOL_OUTPUT_MAX 4096
#define ID_MAX 4294967295UL /* ids are 32 bits; (uid_t) -1 is never mapped */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const char *ossb_userns_mode_name(enum ossb_userns_mode mode)
{
        switch (mode) {
        case OSSB_USERNS_NONE:
                return "none";
        case OSSB_USERNS_DISABLED:
                return "disabled";
        case OSSB_USERNS_UNAVAILABLE:
                return "unavailable";
        case OSSB_USERNS_FULL:
                return "full";
        case OSSB_USERNS_SINGLE:
                return "single-id";
        }
        return "unknown";
}

/* ---- /etc/subuid and /etc/subgid ---- */

static bool parse_ulong(const char *s, size_t len, unsigned long *ret)
{
        char buf[24];
        if (len == 0 || len >= sizeof(buf))
                return false;
        memcpy(buf, s, len);
        buf[len] = '\0';
        for (size_t i = 0; i < len; i++)
                if (buf[i] < '0' || buf[i] > '9')
                        return false;
        errno = 0;
        char *end = NULL;
        unsigned long v = strtoul(buf, &end, 10);
        if (errno || *end || v > ID_MAX)
                return false;
        *ret = v;
        return true;
}

/* One "OWNER:START:COUNT" line (not NUL-terminated): whether it is well formed and for us. */
static bool parse_line(const char *line, size_t len, const char *user, unsigned long id, struct ossb_subid_range *ret)
{
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t) (c1 + 1 - line)) : NULL;
        if (!c2)
                return false;
        size_t owner_len = (size_t) (c1 - line);
        unsigned long owner_id, start, count;
        bool mine = (user && strlen(user) == owner_len && memcmp(line, user, owner_len) == 0) ||
                    (parse_ulong(line, owner_len, &owner_id) && owner_id == id);
        if (!mine || !parse_ulong(c1 + 1, (size_t) (c2 - c1 - 1), &start) ||
            !parse_ulong(c2 + 1, len - (size_t) (c2 + 1 - line), &count))
                return false;
        if (count == 0 || start + count - 1 >= ID_MAX)
                return false;
        *ret = (struct ossb_subid_range) { start, count };
        return true;
}

size_t ossb_subid_parse(const char *text, const char *user, unsigned long id, struct ossb_subid_range *ranges,
                        size_t max)
{
        size_t n = 0;
        for (const char *p = text; p && *p && n < max;) {
                size_t len = strcspn(p, "\n");
                size_t l = len;
                while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t' || p[l - 1] == '\r'))
                        l--;
                if (l > 0 && p[0] != '#' && parse_line(p, l, user, id, &ranges[n]))
                        n++;
                p += len + (p[len] ? 1 : 0);
        }
        return n;
}

char *ossb_userns_map_args(unsigned long id, const struct ossb_subid_range *ranges, size_t n)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        unsigned long inside = 1;
        if (ossb_strbuf_appendf(&sb, "0 %lu 1", id) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (ranges[i].count > ID_MAX - inside)
                        break;
                if (ossb_strbuf_appendf(&sb, " %lu %lu %lu", inside, ranges[i].start, ranges[i].count) < 0)
                        return NULL;
                inside += ranges[i].count;
        }
        return ossb_strbuf_steal(&sb);
}

/* ---- the plan: decided before fork ---- */

struct plan {
        pid_t target;
        unsigned long uid, gid;
        char **uid_argv; /* newuidmap PID MAP...; NULL: single-id from the start */
        char **gid_argv;
        char *reason;    /* why single-id from the start */
};

static void plan_clear(struct plan *p)
{
        ossb_strv_free(p->uid_argv);
        ossb_strv_free(p->gid_argv);
        free(p->reason);
}

static char *user_name(uid_t uid)
{
        long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t size = hint > 0 && hint < 1024 * 1024 ? (size_t) hint : 16384;
        _cleanup_free_ char *buf = malloc(size);
        struct passwd pw, *res = NULL;
        if (!buf || getpwuid_r(uid, &pw, buf, size, &res) != 0 || !res)
                return NULL;
        return strdup(res->pw_name);
}

static char *find_in_path(const char *name)
{
        const char *path = secure_getenv("PATH");
        if (!path || !*path)
                path = DEFAULT_PATH;
        for (const char *p = path;;) {
                size_t len = strcspn(p, ":");
                if (len > 0 && p[0] == '/') {
                        char file[PATH_MAX];
                        int n = snprintf(file, sizeof(file), "%.*s/%s", (int) len, p, name);
                        struct stat st;
                        if (n > 0 && (size_t) n < sizeof(file) && stat(file, &st) == 0 && S_ISREG(st.st_mode) &&
                            access(file, X_OK) == 0)
                                return strdup(file);
                }
                if (!p[len])
                        return NULL;
                p += len + 1;
        }
}

/* The caller's ranges in `file`; -errno when it cannot be read (ENOENT is "no ranges"). */
static int read_ranges(const char *file, const char *user, unsigned long id, struct ossb_subid_range *ranges,
                       size_t *ret_n)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = ossb_read_file(file, SUBID_FILE_MAX, &text, &len, NULL);
        *ret_n = 0;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        *ret_n = ossb_subid_parse(text, user, id, ranges, OSSB_SUBID_MAX_RANGES);
        return 0;
}

static int helper_argv(const char *tool, pid_t pid, unsigned long id, const struct ossb_subid_range *ranges, size_t n,
                       char ***ret)
{
        _cleanup_free_ char *args = ossb_userns_map_args(id, ranges, n);
        _cleanup_strv_free_ char **argv = NULL;
        char pidstr[16];
        snprintf(pidstr, sizeof(pidstr), "%d", (int) pid);
        if (!args || ossb_strv_push(&argv, tool) < 0 || ossb_strv_push(&argv, pidstr) < 0)
                return -ENOMEM;
        for (char *f = args; *f;) {
                size_t len = strcspn(f, " ");
                bool last = f[len] == '\0';
                f[len] = '\0';
                if (ossb_strv_push(&argv, f) < 0)
                        return -ENOMEM;
                f += len + (last ? 0 : 1);
        }
        *ret = TAKE_PTR(argv);
        return 0;
}

/* Single-id from the start, for the reason given; -ENOMEM only. */
static int plan_single(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int plan_single(struct plan *p, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&p->reason, fmt, ap);
        va_end(ap);
        if (r < 0) {
                p->reason = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int make_plan(struct plan *p)
{
        struct ossb_subid_range uranges[OSSB_SUBID_MAX_RANGES], granges[OSSB_SUBID_MAX_RANGES];
        size_t nu = 0, ng = 0;
        p->target = getpid();
        p->uid = geteuid();
        p->gid = getegid();
        _cleanup_free_ char *name = user_name((uid_t) p->uid);
        char shown[32];
        snprintf(shown, sizeof(shown), "uid %lu", p->uid);
        const char *who = name ? name : shown;

        /* newgidmap looks /etc/subgid up by the user's name or uid too, not by gid */
        int r = read_ranges("/etc/subuid", name, p->uid, uranges, &nu);
        if (r < 0)
                return plan_single(p, "cannot read /etc/subuid (%s)", strerror(-r));
        if (nu == 0)
                return plan_single(p, "no subordinate ids for %s in %s", who, "/etc/subuid");
        r = read_ranges("/etc/subgid", name, p->uid, granges, &ng);
        if (r < 0)
                return plan_single(p, "cannot read /etc/subgid (%s)", strerror(-r));
        if (ng == 0)
                return plan_single(p, "no subordinate ids for %s in %s", who, "/etc/subgid");

        _cleanup_free_ char *newuidmap = find_in_path("newuidmap"), *newgidmap = find_in_path("newgidmap");
        if (!newuidmap || !newgidmap)
                return plan_single(p, "%s is not in $PATH (Debian's uidmap package provides it)",
                                   newuidmap ? "newgidmap" : "newuidmap");
        r = helper_argv(newuidmap, p->target, p->uid, uranges, nu, &p->uid_argv);
        if (r >= 0)
                r = helper_argv(newgidmap, p->target, p->gid, granges, ng, &p->gid_argv);
        return r;
}

/* ---- the helper (in the caller's user namespace) ---- */

/* Run newuidmap/newgidmap; 0, or -EPERM with *ret_why saying what it printed. */
static int run_tool(char **argv, char **ret_why)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return -errno;
        }
        if (pid == 0) {
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (null >= 0)
                        (void) dup2(null, STDIN_FILENO);
                if (dup2(pfd[1], STDOUT_FILENO) >= 0 && dup2(pfd[1], STDERR_FILENO) >= 0)
                        execv(argv[0], argv);
                dprintf(pfd[1], "%s: %m", argv[0]);
                _exit(127);
        }
        close(pfd[1]);
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        (void) ossb_read_fd(pfd[0], TOOL_OUTPUT_MAX, &out, &len);
        close(pfd[0]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
                out[--len] = '\0';
        const char *tool = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        free(*ret_why);
        *ret_why = NULL;
        if (asprintf(ret_why, "%s failed: %s", tool, out && *out ? out : "(no output)") < 0)
                *ret_why = NULL;
        return -EPERM;
}

static int write_proc(pid_t pid, const char *name, const char *data, struct ossb_error **err)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT && streq(name, "setgroups") ? 0
                                                                    : ossb_error_set(err, -errno, "opening %s: %m", path);
        ssize_t n = write(fd, data, strlen(data));
        if (n < 0)
                return ossb_error_set(err, -errno, "writing \"%s\" to %s: %m", data, path);
        if ((size_t) n != strlen(data))
                return ossb_error_set(err, -EIO, "writing \"%s\" to %s: short write", data, path);
        return 0;
}

/* Map what the plan says; the single-id fallback for what the helpers could not map.  On
 * success *ret_reason is NULL (full) or why it is single-id. */
static int map_ids(const struct plan *p, char **ret_reason, struct ossb_error **err)
{
        _cleanup_free_ char *why = NULL;
        bool uid_done = false, gid_done = false;
        char line[64];
        if (p->uid_argv && run_tool(p->uid_argv, &why) == 0) {
                uid_done = true;
                gid_done = run_tool(p->gid_argv, &why) == 0;
        }
        int r = 0;
        if (!gid_done) {
                /* an unprivileged writer may map its own gid only with setgroups denied */
                snprintf(line, sizeof(line), "0 %lu 1\n", p->gid);
                r = write_proc(p->target, "setgroups", "deny", err);
                if (r >= 0)
                        r = write_proc(p->target, "gid_map", line, err);
        }
        if (r >= 0 && !uid_done) {
                snprintf(line, sizeof(line), "0 %lu 1\n", p->uid);
                r = write_proc(p->target, "uid_map", line, err);
        }
        if (r < 0)
                return r;
        if (p->reason)
                *ret_reason = strdup(p->reason);
        else if (!uid_done || !gid_done)
                *ret_reason = why ? TAKE_PTR(why) : strdup("the id map helpers failed");
        else
                *ret_reason = NULL;
        return (!uid_done || !gid_done) && !*ret_reason ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* In a coverage build, write the helper's counters before _exit() (which skips the atexit
 * handler gcov uses); a no-op otherwise. */
extern void __gcov_dump(void) __attribute__((weak));
_Noreturn static void helper_exit(int code)
{
        if (__gcov_dump)
                __gcov_dump();
        _exit(code);
}

/* Report: "F" (full), "S<reason>" (single-id) or "E<errno> <message>". */
_Noreturn static void helper_main(const struct plan *p, int go_fd, int report_fd)
{
        char go;
        if (read(go_fd, &go, 1) != 1)
                helper_exit(0); /* the process did not unshare: nothing to map */
        struct ossb_error *e = NULL;
        _cleanup_free_ char *reason = NULL, *msg = NULL;
        int r = map_ids(p, &reason, &e);
        if (r < 0)
                r = asprintf(&msg, "E%d %s", -r, e && e->msg ? e->msg : strerror(-r));
        else
                r = asprintf(&msg, "%c%s", reason ? 'S' : 'F', reason ? reason : "");
        if (r >= 0)
                (void) ossb_write_all(report_fd, msg, strlen(msg));
        ossb_error_free(e);
        helper_exit(r >= 0 ? 0 : 1);
}

/* ---- the process itself ---- */

static int wait_helper(pid_t pid)
{
        int status = 0;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPROTO;
}

/* Read the helper's report: mode and note, or the error it met. */
static int take_report(int fd, pid_t helper, enum ossb_userns_mode *ret_mode, char **ret_note, struct ossb_error **err)
{
        _cleanup_free_ char *rep = NULL;
        size_t len = 0;
        int r = ossb_read_fd(fd, REPORT_MAX, &rep, &len);
        int w = wait_helper(helper);
        if (r < 0)
                return ossb_error_set(err, r, "reading the id map helper's report: %s", strerror(-r));
        if (len == 0 || (rep[0] != 'F' && rep[0] != 'S' && rep[0] != 'E'))
                return ossb_error_set(err, w < 0 ? w : -EPROTO, "the id map helper ended without a report");
        if (rep[0] == 'E') {
                char *end = NULL;
                long code = strtol(rep + 1, &end, 10);
                if (code <= 0 || code > 4095)
                        code = EIO;
                return ossb_error_set(err, (int) -code, "%s", end && *end == ' ' ? end + 1 : rep + 1);
        }
        if (rep[0] == 'S' && !(*ret_note = strdup(rep + 1)))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret_mode = rep[0] == 'F' ? OSSB_USERNS_FULL : OSSB_USERNS_SINGLE;
        return 0;
}

static int become_root(struct ossb_error **err)
{
        if (setresgid(0, 0, 0) < 0)
                return ossb_error_set(err, -errno, "setresgid(0) in the user namespace: %m");
        if (setresuid(0, 0, 0) < 0)
                return ossb_error_set(err, -errno, "setresuid(0) in the user namespace: %m");
        /* nothing ossb mounts (overlays of RUN steps) propagates anywhere */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return ossb_error_set(err, -errno, "making the mount tree private: %m");
        return 0;
}

static void close_pair(int p[2])
{
        for (int i = 0; i < 2; i++)
                if (p[i] >= 0)
                        close(p[i]);
        p[0] = p[1] = -1;
}

/* Fork the helper, unshare, let it map.  Returns 0 (mode and note set) or a fatal -errno. */
static int unshare_with_helper(const struct plan *p, enum ossb_userns_mode *ret_mode, char **ret_note,
                               struct ossb_error **err)
{
        int go[2] = { -1, -1 }, rep[2] = { -1, -1 };
        if (pipe2(go, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
                int r = -errno;
                close_pair(go);
                return ossb_error_set(err, r, "pipe: %s", strerror(-r));
        }
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close_pair(go);
                close_pair(rep);
                return ossb_error_set(err, r, "fork: %s", strerror(-r));
        }
        if (pid == 0) {
                close(go[1]);
                close(rep[0]);
                helper_main(p, go[0], rep[1]);
        }
        close(go[0]);
        close(rep[1]);
        _cleanup_close_ int go_fd = go[1], rep_fd = rep[0];

        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
                int e = errno;
                close(TAKE_FD(go_fd)); /* the helper sees EOF and leaves */
                (void) wait_helper(pid);
                *ret_mode = OSSB_USERNS_UNAVAILABLE;
                if (asprintf(ret_note, "unshare(CLONE_NEWUSER): %s%s", strerror(e),
                             e == EINVAL ? " (the process has threads already)" : "") < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                return 0;
        }
        if (write(go_fd, "g", 1) != 1) {
                int r = -errno;
                (void) wait_helper(pid);
                return ossb_error_set(err, r, "starting the id map helper: %s", strerror(-r));
        }
        int r = take_report(rep_fd, pid, ret_mode, ret_note, err);
        if (r < 0)
                return ossb_error_wrap(err, "writing the id maps of ossb's user namespace");
        return become_root(err);
}

static int enter(enum ossb_userns_mode *ret_mode, char **ret_note, struct ossb_error **err)
{
        /* the helper cannot open /proc/PID/uid_map of a non-dumpable process (it belongs to root) */
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) {
                *ret_mode = OSSB_USERNS_UNAVAILABLE;
                *ret_note = strdup("the process is not dumpable (it changed its ids): its id maps cannot be written");
                return *ret_note ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
        }
        _cleanup_(plan_clear) struct plan p = { 0 };
        if (make_plan(&p) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return unshare_with_helper(&p, ret_mode, ret_note, err);
}

int ossb_userns_enter(enum ossb_userns_mode *ret_mode, char **ret_note, struct ossb_error **err)
{
        _cleanup_free_ char *note = NULL;
        enum ossb_userns_mode mode = OSSB_USERNS_NONE;
        const char *off = secure_getenv("OSSB_NO_USERNS");
        if (off && *off && !streq(off, "0"))
                mode = OSSB_USERNS_DISABLED;
        else if (geteuid() != 0) {
                int r = enter(&mode, &note, err);
                if (r < 0)
                        return r;
        }
        *ret_mode = mode;
        if (ret_note)
                *ret_note = TAKE_PTR(note);
        return 0;
}
