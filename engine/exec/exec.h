/* engine/exec/exec.h - running one RUN command in a sandbox on a prepared root file system.
 *
 * Owns: the sandbox process tree of one RUN.  ossb_exec_run forks a child that enters new
 * mount, PID, IPC and UTS namespaces (plus a network namespace with only loopback for
 * OSSB_NET_NONE, and a user namespace when spec->userns is set), makes the mount tree
 * private, bind-mounts `rootfs` onto itself, mounts a fresh /proc, a minimal /dev (tmpfs with
 * null, zero, full, random, urandom, tty bind-mounted from the host, ptmx + devpts, shm
 * tmpfs), binds /etc/hosts, /etc/resolv.conf and /etc/hostname from files ossb writes outside
 * the rootfs (created as empty mount points in the rootfs when missing, and reported back so
 * the caller can leave them out of the layer), pivot_root()s into it, sets the hostname,
 * drops to uid/gid/supplementary groups, chdirs to the working dir (created when missing, as
 * Docker does), and execs argv with exactly env (PATH from env is used to find argv[0]).
 * The child is PID 1 of its namespace: when it exits, every process it left is killed.
 *
 * Output: the command's stdout and stderr go to ossb through a pipe, line by line, to
 * `output` (may be NULL); the last OSSB_EXEC_TAIL_LINES lines are kept for error messages.
 *
 * Details (as Docker/BuildKit do them unless said otherwise):
 * - /etc/hosts ("127.0.0.1 localhost HOSTNAME", "::1 localhost ..."), /etc/resolv.conf (a copy
 *   of the host's, for both networks) and /etc/hostname are bound read-only, as BuildKit does.
 * - /sys is sysfs read-only (a read-only bind of the host's /sys in a user namespace that shares
 *   the host's network, where sysfs may not be mounted); /proc has Docker's masked and
 *   read-only paths; /dev also has shm, mqueue and the fd/stdin/stdout/stderr/ptmx links.
 * - created_mountpoints lists every file or directory the sandbox had to create in the rootfs
 *   to mount over it (proc, dev, sys, etc, etc/hosts, RUN --mount targets and their missing
 *   parents; a target behind a symlink is created where the link points, inside the rootfs).
 *   They are left in place: the caller leaves them out of the layer.  Entries created inside a
 *   tmpfs or a bind mount of the sandbox are not listed (they are not in the rootfs).
 * - The command runs with Docker's default capability set (bounding set; effective and
 *   permitted for uid 0, none for other uids), in a session of its own, stdin /dev/null, all
 *   other fds closed, signal dispositions reset.  No seccomp filter.
 * - env without PATH: argv[0] is looked up in the default PATH
 *   /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.  A command that cannot be
 *   executed prints "exec: NAME: not found" (exit code 127) or "exec: NAME: <reason>" (126).
 * - A missing working directory is created (mode 0755, owned by root) before the uid changes.
 * - userns: the maps are written by ossb directly (root, or the caller's own ids with
 *   setgroups denied when gid_map is NULL); a given map the caller may not write directly goes
 *   through newuidmap/newgidmap (found in ossb's PATH).  Id 0 must be mapped.  The caller must
 *   be dumpable (a process that changed its uids is not: PR_SET_DUMPABLE), or /proc/PID/uid_map
 *   of its child belongs to root and cannot be written.
 * - spec->mounts: a bind of a directory or a file (recursive; source must be absolute), or a
 *   tmpfs (mode 1777, nosuid, nodev; `size` bytes when not 0); readonly makes the mount
 *   read-only.
 * - spec->limits (exec-cgroup.c): when any limit is set, ossb creates one cgroup for the run
 *   below its own (cgroup v2: the unified hierarchy's cgroup of ossb, where the controller
 *   must be available in cgroup.controllers and is enabled in cgroup.subtree_control when
 *   missing; on a hybrid host a controller that v2 lacks is taken from its cgroup v1
 *   hierarchy instead), writes memory.max (+ memory.swap.max = the same, Docker's default of
 *   twice the memory in all), cpu.max and pids.max (v1: memory.limit_in_bytes,
 *   memory.memsw.limit_in_bytes, cpu.cfs_quota_us/cpu.cfs_period_us, pids.max), and the
 *   sandbox joins it (writes its pid to cgroup.procs) before it sets anything else up, so every
 *   process of the command is limited.  The cgroup is removed when the run ends.  A limit that
 *   cannot be applied is an error naming the flag and what is missing (OSSB_EXIT_INTERNAL).
 * - Interrupt (common/interrupt.h) while the command runs: the sandbox is killed (its whole PID
 *   namespace), and ossb_exec_run returns -EINTR.
 */
#ifndef OSSB_ENGINE_EXEC_EXEC_H
#define OSSB_ENGINE_EXEC_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

#define OSSB_EXEC_TAIL_LINES 20

enum ossb_exec_network {
        OSSB_NET_HOST = 0, /* the host's network namespace (buildah's default as root) */
        OSSB_NET_NONE,     /* a new network namespace with loopback up */
};

struct ossb_exec_mount {
        const char *source;      /* host path (bind) or NULL for tmpfs */
        const char *target;      /* absolute path inside the rootfs (created when missing) */
        bool tmpfs;
        bool readonly;
        uint64_t size;           /* tmpfs: size limit in bytes, 0 for the kernel's default */
};

/* Resource limits of one run (0: no limit of that kind). */
struct ossb_exec_limits {
        int64_t memory;          /* bytes */
        int64_t cpu_millis;      /* thousandths of a CPU (--cpus 1.5 = 1500), >= 10 */
        int64_t pids;            /* processes and threads */
};

/* Called for each output line (without its newline, but NUL-terminated; lines longer than
 * 64 KiB are split; a last line without a newline is passed too), from the thread that called
 * ossb_exec_run, stdout and stderr lines in the order they were read. */
typedef void (*ossb_exec_output_fn)(void *userdata, bool is_stderr, const char *line, size_t len);

struct ossb_exec_spec {
        const char *rootfs;         /* absolute path of the prepared root (a mount point or a dir) */
        char *const *argv;          /* argv[0] is looked up in PATH of env when it has no '/' */
        char *const *env;           /* "K=V", exactly the environment of the command */
        const char *cwd;            /* absolute path inside the rootfs; "/" when NULL */
        uid_t uid;
        gid_t gid;
        const gid_t *groups;        /* supplementary groups */
        size_t n_groups;
        const char *hostname;       /* NULL: "buildkitsandbox", as BuildKit */
        enum ossb_exec_network network;
        const struct ossb_exec_mount *mounts; /* extra mounts (RUN --mount), applied in order */
        size_t n_mounts;
        bool userns;                /* create a user namespace (rootless); see uid_map */
        const char *uid_map;        /* "inside outside count\n..." lines when userns (written by the
                                     * caller's newuidmap or directly); NULL: map the caller to 0 */
        const char *gid_map;
        ossb_exec_output_fn output;
        void *output_userdata;
        const char *tmpdir;         /* where the private hosts, resolv.conf and hostname files are
                                     * written (in a fresh subdirectory removed after the run);
                                     * NULL: $TMPDIR, else /tmp */
        const struct ossb_exec_limits *limits; /* NULL (or all 0): no cgroup */
};

struct ossb_exec_result {
        int exit_code;              /* the command's exit status, or 128+signal */
        bool signaled;
        char *tail;                 /* the last output lines, '\n'-separated (owned) */
        char **created_mountpoints; /* paths (relative to rootfs, NULL-terminated) ossb created in
                                     * the rootfs only to mount over them: /etc/hosts, ... (owned) */
        bool oom_killed;            /* the memory limit's OOM killer killed a process of the run */
};

/* Run the command; 0 when it ran (whatever its exit code: see result), negative when the
 * sandbox could not be set up (an error naming the step that failed: unshare, mount,
 * pivot_root, a missing executable is exit code 127 in the result, not an error). */
int ossb_exec_run(const struct ossb_exec_spec *spec, struct ossb_exec_result *ret, struct ossb_error **err);
void ossb_exec_result_clear(struct ossb_exec_result *r);

#endif
