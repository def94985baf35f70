/* engine/exec/exec-cgroup.c - resource limits of one run: a cgroup below ossb's own, its
 * limit files, the sandbox joining it, the OOM-kill count, its removal (see exec.h).
 *
 * Owns: struct exec_cgroup (the directories it created; removed by exec_cgroup_remove).
 * Where: for each controller a limit needs (memory, cpu, pids), the cgroup v2 hierarchy when
 * ossb's v2 cgroup offers the controller (cgroup.controllers), else that controller's cgroup v1
 * hierarchy (hybrid hosts, where v1 holds the controllers).  The mount points come from
 * /proc/self/mountinfo, ossb's cgroups from /proc/self/cgroup (passed in as text, so the unit
 * test can point both at a directory tree of its own).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "engine/exec/exec-internal.h"

#define CPU_PERIOD_US 100000
#define RMDIR_TRIES 100 /* 10 ms apart */

enum ctl { CTL_MEMORY, CTL_CPU, CTL_PIDS, CTL_N };
static const char *const ctl_name[CTL_N] = { "memory", "cpu", "pids" };
static const char *const ctl_flag[CTL_N] = { "--memory", "--cpus", "--pids-limit" };

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

/* ---- /proc/self/mountinfo and /proc/self/cgroup ---- */

/* Undo the octal escapes of mountinfo (\040 for a space, ...), in place. */
static void unescape(char *s)
{
        char *o = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
                    p[3] <= '7') {
                        *o++ = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *o++ = *p;
        }
        *o = '\0';
}

static bool list_has(const char *list, char sep, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = list; p && *p;) {
                const char *e = strchr(p, sep);
                size_t len = e ? (size_t) (e - p) : strlen(p);
                if (len == n && strncmp(p, word, n) == 0)
                        return true;
                p = e ? e + 1 : NULL;
        }
        return false;
}

/* Split `line` in place at spaces; returns the number of fields (at most max). */
static size_t split_fields(char *line, char **f, size_t max)
{
        size_t n = 0;
        for (char *p = line; p && *p && n < max;) {
                f[n++] = p;
                p = strchr(p, ' ');
                if (p)
                        *p++ = '\0';
        }
        return n;
}

/* The mount point and root of the cgroup2 mount (controller NULL) or of the v1 hierarchy
 * holding `controller`.  -ENOENT when none.  A mountinfo line: id parent major:minor root
 * mountpoint options [optional fields...] - fstype source super-options. */
static int find_mount(const char *mountinfo, const char *controller, char **ret_point, char **ret_root)
{
        _cleanup_free_ char *copy = strdup(mountinfo);
        if (!copy)
                return -ENOMEM;
        for (char *line = copy, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                char *f[64];
                size_t n = split_fields(line, f, ELEMENTSOF(f)), dash = 6;
                while (dash < n && !streq(f[dash], "-"))
                        dash++;
                if (dash + 1 >= n) /* no separator, or nothing after it */
                        continue;
                const char *fstype = f[dash + 1], *super = dash + 3 < n ? f[dash + 3] : "";
                bool ok = controller ? streq(fstype, "cgroup") && list_has(super, ',', controller)
                                     : streq(fstype, "cgroup2");
                if (!ok)
                        continue;
                unescape(f[3]);
                unescape(f[4]);
                char *point = strdup(f[4]), *root = strdup(f[3]);
                if (!point || !root) {
                        free(point);
                        free(root);
                        return -ENOMEM;
                }
                *ret_point = point;
                *ret_root = root;
                return 0;
        }
        return -ENOENT;
}

/* ossb's cgroup path in the v2 hierarchy (controller NULL: the "0::" line) or in the v1
 * hierarchy of `controller`.  -ENOENT when none. */
static int find_self(const char *self_cgroup, const char *controller, char **ret)
{
        _cleanup_free_ char *copy = strdup(self_cgroup);
        if (!copy)
                return -ENOMEM;
        for (char *line = copy, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c1 = *c2 = '\0';
                bool ok = controller ? list_has(c1 + 1, ',', controller) : streq(line, "0") && !c1[1];
                if (ok)
                        return (*ret = strdup(c2 + 1)) ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

/* The directory of ossb's cgroup: mount point + the path below the mount's root. */
static int own_dir(const char *mountinfo, const char *self_cgroup, const char *controller, char **ret)
{
        _cleanup_free_ char *point = NULL, *root = NULL, *path = NULL;
        int r = find_mount(mountinfo, controller, &point, &root);
        if (r >= 0)
                r = find_self(self_cgroup, controller, &path);
        if (r < 0)
                return r;
        const char *rel = path;
        size_t rl = strlen(root);
        if (!streq(root, "/")) {
                if (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
                        return -EXDEV; /* our cgroup is outside what is mounted here */
                rel = path + rl;
        }
        return (*ret = ossb_path_join(point, rel)) ? 0 : -ENOMEM;
}

/* ---- files ---- */

static int read_small(const char *dir, const char *name, char **ret)
{
        _cleanup_free_ char *p = ossb_path_join(dir, name);
        size_t len;
        if (!p)
                return -ENOMEM;
        return ossb_read_file(p, 64 * 1024, ret, &len, NULL);
}

static int write_value(const char *dir, const char *name, const char *value)
{
        _cleanup_free_ char *p = ossb_path_join(dir, name);
        if (!p)
                return -ENOMEM;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, value, strlen(value));
        if (n < 0)
                return -errno;
        return (size_t) n == strlen(value) ? 0 : -EIO;
}

/* ---- choosing a hierarchy per controller ---- */

struct where {
        char *own[CTL_N];  /* ossb's cgroup directory holding the controller */
        bool v2[CTL_N];
};

static void where_clear(struct where *w)
{
        for (int i = 0; i < CTL_N; i++)
                free(w->own[i]);
}

static int need_fail(enum ctl c, struct ossb_error **err, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int need_fail(enum ctl c, struct ossb_error **err, int code, const char *fmt, ...)
{
        _cleanup_free_ char *reason = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&reason, fmt, ap);
        va_end(ap);
        if (n < 0)
                return oom(err);
        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, code, "%s needs a writable cgroup v2 hierarchy with the %s controller: %s",
                               ctl_flag[c], ctl_name[c], reason);
}

/* The first line of a file's text (cut in place). */
static char *first_line(char *s)
{
        if (s)
                s[strcspn(s, "\n")] = '\0';
        return s;
}

/* v2: the controller must be in cgroup.controllers; enable it for children when missing. */
static int v2_enable(enum ctl c, const char *own, struct ossb_error **err)
{
        _cleanup_free_ char *sub = NULL;
        int r = read_small(own, "cgroup.subtree_control", &sub);
        if (r >= 0 && list_has(first_line(sub), ' ', ctl_name[c]))
                return 0;
        char plus[16];
        snprintf(plus, sizeof(plus), "+%s", ctl_name[c]);
        r = write_value(own, "cgroup.subtree_control", plus);
        if (r >= 0)
                return 0;
        _cleanup_free_ char *detail = NULL;
        if (asprintf(&detail, "%s%s", strerror(-r),
                     r == -EBUSY ? " (a cgroup v2 that holds processes cannot enable controllers for its children: "
                                   "run ossb in a cgroup of its own with the controllers delegated, e.g. systemd-run "
                                   "--scope -p Delegate=yes)" : "") < 0)
                return oom(err);
        return need_fail(c, err, r, "cannot enable it in %s/cgroup.subtree_control: %s", own, detail);
}

static int locate(enum ctl c, const char *mountinfo, const char *self_cgroup, struct where *w, struct ossb_error **err)
{
        _cleanup_free_ char *v2 = NULL, *ctls = NULL, *v1 = NULL;
        int r2 = own_dir(mountinfo, self_cgroup, NULL, &v2);
        if (r2 == -ENOMEM)
                return oom(err);
        if (r2 >= 0 && read_small(v2, "cgroup.controllers", &ctls) >= 0 && list_has(first_line(ctls), ' ', ctl_name[c])) {
                int r = v2_enable(c, v2, err);
                if (r < 0)
                        return r;
                w->own[c] = TAKE_PTR(v2);
                w->v2[c] = true;
                return 0;
        }
        int r1 = own_dir(mountinfo, self_cgroup, ctl_name[c], &v1);
        if (r1 == -ENOMEM)
                return oom(err);
        if (r1 >= 0) {
                if (access(v1, W_OK) < 0)
                        return need_fail(c, err, -errno, "ossb's cgroup v1 directory %s is not writable: %s", v1, strerror(errno));
                w->own[c] = TAKE_PTR(v1);
                return 0;
        }
        if (r2 < 0)
                return need_fail(c, err, -ENOENT, "no cgroup2 file system is mounted (or ossb's cgroup is not below it), "
                                                  "and no cgroup v1 hierarchy has the controller");
        return need_fail(c, err, -ENOENT, "the controller is not in %s/cgroup.controllers (%s), and no cgroup v1 "
                                          "hierarchy has it either", v2, ctls && *ctls ? ctls : "empty");
}

/* ---- creating the run's cgroups ---- */

static int add_dir(struct exec_cgroup *cg, const char *own, const char *name, bool v2, size_t *ret_idx,
                   struct ossb_error **err)
{
        _cleanup_free_ char *dir = ossb_path_join(own, name);
        if (!dir)
                return oom(err);
        for (size_t i = 0; i < cg->n; i++)
                if (streq(cg->dirs[i], dir)) {
                        *ret_idx = i;
                        return 0;
                }
        if (cg->n == EXEC_CGROUP_MAX)
                return ossb_error_set(err, -E2BIG, "too many cgroup hierarchies");
        /* a leftover of a killed ossb with our pid: take it over (empty, so removable) */
        if (mkdir(dir, 0755) < 0 && (errno != EEXIST || (rmdir(dir) == 0 && mkdir(dir, 0755) < 0)))
                return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -errno, "cannot create the cgroup %s: %m", dir);
        char *procs = ossb_path_join(dir, "cgroup.procs");
        if (!procs) {
                (void) rmdir(dir);
                return oom(err);
        }
        cg->procs[cg->n] = procs;
        cg->v2[cg->n] = v2;
        cg->dirs[cg->n] = TAKE_PTR(dir);
        *ret_idx = cg->n++;
        return 0;
}

static int set_value(struct exec_cgroup *cg, size_t idx, enum ctl c, const char *file, int64_t v, bool optional,
                     struct ossb_error **err)
{
        char s[32];
        snprintf(s, sizeof(s), "%lld", (long long) v);
        int r = write_value(cg->dirs[idx], file, s);
        if (r >= 0 || (optional && (r == -ENOENT || r == -EINVAL || r == -EACCES)))
                return 0;
        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, r, "%s: cannot write %s to %s/%s: %s", ctl_flag[c], s,
                               cg->dirs[idx], file, strerror(-r));
}

static int apply(struct exec_cgroup *cg, size_t idx, enum ctl c, const struct ossb_exec_limits *l, struct ossb_error **err)
{
        bool v2 = cg->v2[idx];
        int r;
        switch (c) {
        case CTL_MEMORY:
                r = set_value(cg, idx, c, v2 ? "memory.max" : "memory.limit_in_bytes", l->memory, false, err);
                /* Docker's default: as much swap as memory (memory + swap = twice the limit) */
                if (r >= 0)
                        r = v2 ? set_value(cg, idx, c, "memory.swap.max", l->memory, true, err)
                               : set_value(cg, idx, c, "memory.memsw.limit_in_bytes", 2 * l->memory, true, err);
                if (r >= 0 && !cg->oom_file)
                        cg->oom_file = ossb_path_join(cg->dirs[idx], v2 ? "memory.events" : "memory.oom_control");
                return r;
        case CTL_CPU:
                if (v2) {
                        char s[64];
                        snprintf(s, sizeof(s), "%lld %d", (long long) l->cpu_millis * (CPU_PERIOD_US / 1000), CPU_PERIOD_US);
                        r = write_value(cg->dirs[idx], "cpu.max", s);
                        return r >= 0 ? 0 : ossb_error_setx(err, OSSB_EXIT_INTERNAL, r, "--cpus: cannot write \"%s\" to %s/cpu.max: %s",
                                                           s, cg->dirs[idx], strerror(-r));
                }
                r = set_value(cg, idx, c, "cpu.cfs_period_us", CPU_PERIOD_US, false, err);
                return r >= 0 ? set_value(cg, idx, c, "cpu.cfs_quota_us", l->cpu_millis * (CPU_PERIOD_US / 1000), false, err) : r;
        default:
                return set_value(cg, idx, c, "pids.max", l->pids, false, err);
        }
}

bool exec_limits_any(const struct ossb_exec_limits *l)
{
        return l && (l->memory > 0 || l->cpu_millis > 0 || l->pids > 0);
}

int exec_cgroup_create(const struct ossb_exec_limits *l, const char *mountinfo, const char *self_cgroup,
                       const char *name, struct exec_cgroup *ret, struct ossb_error **err)
{
        const int64_t want[CTL_N] = { l->memory, l->cpu_millis, l->pids };
        struct where w = { 0 };
        struct exec_cgroup cg = { 0 };
        int r = 0;
        if (l->cpu_millis > 0 && l->cpu_millis < 10)
                r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "--cpus: the smallest limit is 0.01");
        for (int c = 0; c < CTL_N && r >= 0; c++)
                if (want[c] > 0)
                        r = locate((enum ctl) c, mountinfo, self_cgroup, &w, err);
        for (int c = 0; c < CTL_N && r >= 0; c++) {
                size_t idx = 0;
                if (want[c] <= 0)
                        continue;
                r = add_dir(&cg, w.own[c], name, w.v2[c], &idx, err);
                if (r >= 0)
                        r = apply(&cg, idx, (enum ctl) c, l, err);
        }
        where_clear(&w);
        if (r < 0) {
                exec_cgroup_remove(&cg);
                return r;
        }
        *ret = cg;
        return 0;
}

int exec_cgroup_setup(const struct ossb_exec_limits *l, struct exec_cgroup *ret, struct ossb_error **err)
{
        static atomic_uint counter;
        _cleanup_free_ char *mountinfo = NULL, *self = NULL;
        size_t len;
        int r = ossb_read_file("/proc/self/mountinfo", 4u << 20, &mountinfo, &len, err);
        if (r >= 0)
                r = ossb_read_file("/proc/self/cgroup", 1u << 20, &self, &len, err);
        if (r < 0)
                return r;
        char name[64];
        snprintf(name, sizeof(name), "ossb-%ld-%u", (long) getpid(), atomic_fetch_add(&counter, 1) + 1);
        return exec_cgroup_create(l, mountinfo, self, name, ret, err);
}

int exec_cgroup_join(const struct exec_cgroup *cg, struct ossb_error **err)
{
        for (size_t i = 0; cg && i < cg->n; i++) {
                _cleanup_close_ int fd = open(cg->procs[i], O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1)
                        return ossb_error_set(err, -errno, "joining the cgroup (%s): %m", cg->procs[i]);
        }
        return 0;
}

bool exec_cgroup_oom_killed(const struct exec_cgroup *cg)
{
        _cleanup_free_ char *data = NULL;
        size_t len;
        if (!cg->oom_file || ossb_read_file(cg->oom_file, 64 * 1024, &data, &len, NULL) < 0)
                return false;
        for (char *p = data; p && *p;) {
                if (strncmp(p, "oom_kill ", 9) == 0)
                        return strtoll(p + 9, NULL, 10) > 0;
                p = strchr(p, '\n');
                p = p ? p + 1 : NULL;
        }
        return false;
}

void exec_cgroup_remove(struct exec_cgroup *cg)
{
        if (!cg)
                return;
        for (size_t i = 0; i < cg->n; i++) {
                /* the sandbox's PID namespace is gone, but its last tasks may still be exiting */
                for (int t = 0; t < RMDIR_TRIES && rmdir(cg->dirs[i]) < 0 && errno == EBUSY; t++) {
                        if (cg->v2[i])
                                (void) write_value(cg->dirs[i], "cgroup.kill", "1");
                        nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
                }
                free(cg->dirs[i]);
                free(cg->procs[i]);
        }
        free(cg->oom_file);
        *cg = (struct exec_cgroup) { 0 };
}
