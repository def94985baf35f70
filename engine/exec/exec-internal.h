/* engine/exec/exec-internal.h - what the parent (exec.c) and the sandbox processes
 * (exec-child.c, exec-mounts.c, exec-creds.c) share.
 *
 * Owns: the record protocol on the message pipe and the context handed to the children.
 *
 * Process tree of one RUN:
 *   ossb (parent)
 *     `- helper     forked; unshares the user namespace (when asked) and then the mount, PID,
 *        |          IPC, UTS (and network) namespaces, forks the sandbox, waits for it and
 *        |          reports its wait status; never execs.  SIGTERM from the parent makes it
 *        |          SIGKILL the sandbox (its own unreaped child: no pid reuse race).
 *        `- sandbox PID 1 of the new PID namespace: mounts, pivot_root, credentials, execve.
 * Both children write records to the message pipe (O_CLOEXEC, so the sandbox's copy closes at
 * execve); the parent reads them while it reads the command's output.  When the sandbox (PID 1)
 * exits the kernel kills whatever else runs in its PID namespace.
 */
#ifndef OSSB_ENGINE_EXEC_EXEC_INTERNAL_H
#define OSSB_ENGINE_EXEC_EXEC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "engine/exec/exec.h"

/* Records on the message pipe: a header, then `len` bytes of text (no NUL). */
enum exec_msg_type {
        EXEC_MSG_ERROR = 'E',   /* value: errno; text: what failed (step and path) */
        EXEC_MSG_CREATED = 'C', /* text: a path ossb created in the rootfs (relative to it) */
        EXEC_MSG_USERNS = 'U',  /* the helper is in its new user namespace: write the id maps */
        EXEC_MSG_STATUS = 'X',  /* value: the sandbox's wait status */
};

struct exec_msg_hdr {
        uint32_t type;
        int32_t value;
        uint32_t len;
};

#define EXEC_MSG_MAX_TEXT 8192

/* Exit code of a child whose failure was reported with an EXEC_MSG_ERROR record. */
#define EXEC_SETUP_FAILED 125

/* The cgroups of one run (exec-cgroup.c): one per hierarchy used (v2, and v1 ones on hybrid
 * hosts), created and configured by the parent, joined by the sandbox, removed by the parent. */
#define EXEC_CGROUP_MAX 4
struct exec_cgroup {
        char *dirs[EXEC_CGROUP_MAX];
        char *procs[EXEC_CGROUP_MAX];  /* <dir>/cgroup.procs */
        bool v2[EXEC_CGROUP_MAX];
        size_t n;
        char *oom_file;                /* memory.events (v2) or memory.oom_control (v1), or NULL */
};

/* Whether any limit is set (l may be NULL). */
bool exec_limits_any(const struct ossb_exec_limits *l);
/* Create the run's cgroup(s) named `name` below ossb's own and write the limits;
 * `mountinfo` and `self_cgroup` are the texts of /proc/self/mountinfo and /proc/self/cgroup.
 * On failure nothing is left behind. */
int exec_cgroup_create(const struct ossb_exec_limits *l, const char *mountinfo, const char *self_cgroup,
                       const char *name, struct exec_cgroup *ret, struct ossb_error **err);
/* The same from this process's /proc files, with a name unique to this run. */
int exec_cgroup_setup(const struct ossb_exec_limits *l, struct exec_cgroup *ret, struct ossb_error **err);
/* In the sandbox: move this process into every cgroup (writes "0" to cgroup.procs). */
int exec_cgroup_join(const struct exec_cgroup *cg, struct ossb_error **err);
/* Whether the OOM killer killed something in the memory cgroup. */
bool exec_cgroup_oom_killed(const struct exec_cgroup *cg);
/* Remove the cgroups (waiting briefly for exiting tasks); accepts an empty one. */
void exec_cgroup_remove(struct exec_cgroup *cg);

/* Everything the children need, prepared by the parent before fork (the children allocate
 * only for error messages). */
struct exec_child {
        const struct ossb_exec_spec *spec;
        const char *files_dir; /* private dir holding hosts, resolv.conf and hostname */
        const char *hostname;
        int msg_fd;            /* write end of the message pipe */
        int sync_fd;           /* read end: one byte from the parent once the id maps are written */
        int out_fd, err_fd;    /* write ends of the command's stdout and stderr pipes */
        pid_t parent;
        const struct exec_cgroup *cgroup; /* joined by the sandbox first; NULL: none */
};

/* Send a record (best effort: a full pipe cannot happen, the parent reads it all the time). */
void exec_msg_send(int fd, enum exec_msg_type type, int value, const char *text);
/* Report err (or `code` with a generic text) as an EXEC_MSG_ERROR record and _exit. */
_Noreturn void exec_child_fail(const struct exec_child *c, int code, struct ossb_error *err);

/* The helper process: never returns. */
_Noreturn void exec_helper_main(const struct exec_child *c);

/* In the sandbox, before pivot_root: make the mount tree private, bind the rootfs onto
 * itself, mount /proc, /dev, /sys, the /etc files and spec->mounts.  Returns an O_PATH fd of
 * the new root, or -errno with err set. */
int exec_setup_mounts(const struct exec_child *c, struct ossb_error **err);

/* In the sandbox: drop capabilities to Docker's default set (bounding set first), then set
 * the supplementary groups, gid and uid of the spec. */
int exec_drop_privileges(const struct ossb_exec_spec *spec, struct ossb_error **err);
/* In the sandbox: set the loopback interface up (network none). */
int exec_loopback_up(struct ossb_error **err);

/* Execute argv with env, looking argv[0] up in env's PATH; on failure write
 * "exec: NAME: reason" to stderr and _exit(127) (not found) or _exit(126). */
_Noreturn void exec_command(char *const *argv, char *const *env);

/* Coverage builds only: write the gcov counters of a child that will never call exit(). */
void exec_coverage_flush(void);

#endif
