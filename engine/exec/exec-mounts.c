/* engine/exec/exec-mounts.c - the mount tree of the sandbox, built before pivot_root: the
 * rootfs bound onto itself, /proc (with Docker's masked and read-only paths), a minimal /dev,
 * /sys, the private /etc files and the RUN --mount targets.
 *
 * Owns: nothing past the sandbox process.  Runs in the sandbox (PID 1 of its namespace) only.
 * Every path inside the rootfs is resolved beneath it (ossb_open_in_root), and every mount is
 * made on an O_PATH fd (/proc/self/fd/N), so a symlink in the image cannot send a mount
 * outside the rootfs.  Mount points missing from the rootfs are created (directories 0755,
 * empty files 0644); those that land in the rootfs itself (not inside a tmpfs or a bind mount
 * made here) are reported to the parent so that the snapshotter leaves them out of the layer.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "engine/exec/exec-internal.h"

#define MAX_LINK_DEPTH 40

struct mnt {
        const struct exec_child *c;
        int rootfd;               /* O_PATH fd of the bound rootfs */
        char root_path[PATH_MAX]; /* its path as the kernel names it */
        uint64_t root_mnt_id;
};

static void fd_path(int fd, char buf[static 32])
{
        snprintf(buf, 32, "/proc/self/fd/%d", fd);
}

static int fd_mnt_id(int fd, uint64_t *ret)
{
        struct statx stx;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) < 0)
                return -errno;
        if (!(stx.stx_mask & STATX_MNT_ID))
                return -EOPNOTSUPP;
        *ret = stx.stx_mnt_id;
        return 0;
}

/* Tell the parent about `name` just created in directory `dirfd`, when that directory is part
 * of the rootfs (not a tmpfs or a bind mount set up here). */
static void report_created(struct mnt *m, int dirfd, const char *name)
{
        uint64_t id;
        char link[32], dir[PATH_MAX], rel[PATH_MAX + NAME_MAX + 2];
        if (fd_mnt_id(dirfd, &id) < 0 || id != m->root_mnt_id)
                return;
        fd_path(dirfd, link);
        ssize_t n = readlink(link, dir, sizeof(dir) - 1);
        if (n < 0)
                return;
        dir[n] = '\0';
        size_t rl = strlen(m->root_path);
        if (streq(m->root_path, "/"))
                rl = 0;
        else if (strncmp(dir, m->root_path, rl) != 0 || (dir[rl] != '/' && dir[rl] != '\0'))
                return;
        const char *sub = dir + rl;
        while (*sub == '/')
                sub++;
        snprintf(rel, sizeof(rel), "%s%s%s", sub, *sub ? "/" : "", name);
        exec_msg_send(m->c->msg_fd, EXEC_MSG_CREATED, 0, rel);
}

static int split_path(const char *path, char **ret_parent, char **ret_name)
{
        _cleanup_free_ char *abs = NULL;
        if (asprintf(&abs, "/%s", path) < 0)
                return -ENOMEM;
        _cleanup_free_ char *clean = ossb_path_clean(abs);
        if (!clean)
                return -ENOMEM;
        char *slash = strrchr(clean, '/');
        if (!slash[1])
                return -EINVAL; /* "/" always exists: never asked to create it */
        _cleanup_free_ char *name = strdup(slash + 1);
        slash[slash == clean ? 1 : 0] = '\0';
        char *parent = strdup(clean);
        if (!name || !parent) {
                free(parent);
                return -ENOMEM;
        }
        *ret_parent = parent;
        *ret_name = TAKE_PTR(name);
        return 0;
}

static int ensure_node(struct mnt *m, const char *path, bool dir, int depth, struct ossb_error **err);

/* `name` in `pfd` exists but did not resolve: if it is a symlink, create what it points to. */
static int follow_dangling(struct mnt *m, int pfd, const char *parent, const char *name, bool dir, int depth,
                           struct ossb_error **err)
{
        char target[PATH_MAX];
        ssize_t n = readlinkat(pfd, name, target, sizeof(target) - 1);
        if (n < 0)
                return ossb_error_set(err, -EEXIST, "creating mount point %s/%s: it exists but cannot be opened",
                                      streq(parent, "/") ? "" : parent, name);
        target[n] = '\0';
        _cleanup_free_ char *next = target[0] == '/' ? strdup(target) : ossb_path_join(parent, target);
        if (!next)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ensure_node(m, next, dir, depth + 1, err);
}

/* Open `path` beneath the root (O_PATH), creating it (and its parents) when missing. */
static int ensure_node(struct mnt *m, const char *path, bool dir, int depth, struct ossb_error **err)
{
        if (depth > MAX_LINK_DEPTH)
                return ossb_error_set(err, -ELOOP, "creating mount point %s: too many levels of links", path);
        int fd = ossb_open_in_root(m->rootfd, path, O_PATH | (dir ? O_DIRECTORY : 0), 0);
        if (fd >= 0 || fd != -ENOENT)
                return fd >= 0 ? fd : ossb_error_set(err, fd, "opening mount point %s: %s", path, strerror(-fd));

        _cleanup_free_ char *parent = NULL, *name = NULL;
        int r = split_path(path, &parent, &name);
        if (r < 0)
                return ossb_error_set(err, r, "creating mount point %s: %s", path, strerror(-r));
        _cleanup_close_ int pfd = ensure_node(m, parent, true, depth + 1, err);
        if (pfd < 0)
                return pfd;
        if (dir)
                r = mkdirat(pfd, name, 0755);
        else
                r = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (r < 0 && errno == EEXIST)
                return follow_dangling(m, pfd, parent, name, dir, depth, err);
        if (r < 0)
                return ossb_error_set(err, -errno, "creating mount point %s: %m", path);
        if (!dir)
                close(r);
        report_created(m, pfd, name);
        fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
        return fd >= 0 ? fd : ossb_error_set(err, -errno, "opening mount point %s: %m", path);
}

/* Remount the mount at `path` read-only, keeping the flags a user namespace may not drop. */
static int remount_ro(struct mnt *m, const char *path, struct ossb_error **err)
{
        _cleanup_close_ int fd = ossb_open_in_root(m->rootfd, path, O_PATH, 0);
        if (fd < 0)
                return ossb_error_set(err, fd, "reopening %s: %s", path, strerror(-fd));
        char p[32];
        fd_path(fd, p);
        struct statvfs sv;
        if (statvfs(p, &sv) < 0)
                return ossb_error_set(err, -errno, "statvfs %s: %m", path);
        static const struct { unsigned long st, ms; } keep[] = {
                { ST_NOSUID, MS_NOSUID }, { ST_NODEV, MS_NODEV }, { ST_NOEXEC, MS_NOEXEC },
                { ST_NOATIME, MS_NOATIME }, { ST_NODIRATIME, MS_NODIRATIME }, { ST_RELATIME, MS_RELATIME },
        };
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                if (sv.f_flag & keep[i].st)
                        flags |= keep[i].ms;
        if (mount(NULL, p, NULL, flags, NULL) < 0)
                return ossb_error_set(err, -errno, "remounting %s read-only: %m", path);
        return 0;
}

/* Mount `src` (of `fstype`, NULL for a bind) on `path` inside the root. */
static int mount_at(struct mnt *m, const char *path, bool dir, const char *src, const char *fstype,
                    unsigned long flags, const char *data, bool ro, struct ossb_error **err)
{
        _cleanup_close_ int fd = ensure_node(m, path, dir, 0, err);
        if (fd < 0)
                return fd;
        char p[32];
        fd_path(fd, p);
        if (mount(src, p, fstype, flags, data) < 0)
                return ossb_error_set(err, -errno, "mounting %s on %s: %m", fstype ? fstype : src, path);
        return ro ? remount_ro(m, path, err) : 0;
}

/* ---- /proc ---- */

static const char *const proc_masked[] = {
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
        "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
        "/proc/timer_stats", "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const proc_readonly[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static int mask_paths(struct mnt *m, struct ossb_error **err)
{
        for (size_t i = 0; i < ELEMENTSOF(proc_masked); i++) {
                _cleanup_close_ int fd = ossb_open_in_root(m->rootfd, proc_masked[i], O_PATH, 0);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0)
                        continue; /* not on this kernel */
                char p[32];
                fd_path(fd, p);
                int r = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0")
                                            : mount("/dev/null", p, NULL, MS_BIND, NULL);
                if (r < 0)
                        return ossb_error_set(err, -errno, "masking %s: %m", proc_masked[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(proc_readonly); i++) {
                _cleanup_close_ int fd = ossb_open_in_root(m->rootfd, proc_readonly[i], O_PATH, 0);
                if (fd < 0)
                        continue;
                char p[32];
                fd_path(fd, p);
                if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
                        return ossb_error_set(err, -errno, "binding %s: %m", proc_readonly[i]);
                int r = remount_ro(m, proc_readonly[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- /dev ---- */

static int bind_dev_node(int devfd, const char *name, struct ossb_error **err)
{
        int fd = openat(devfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0)
                return ossb_error_set(err, -errno, "creating /dev/%s: %m", name);
        close(fd);
        char host[64];
        snprintf(host, sizeof(host), "/dev/%s", name);
        _cleanup_close_ int target = openat(devfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (target < 0)
                return ossb_error_set(err, -errno, "opening /dev/%s: %m", name);
        char p[32];
        fd_path(target, p);
        if (mount(host, p, NULL, MS_BIND, NULL) < 0)
                return ossb_error_set(err, -errno, "binding %s: %m", host);
        return 0;
}

static int mount_devpts(struct mnt *m, struct ossb_error **err)
{
        _cleanup_close_ int fd = ensure_node(m, "/dev/pts", true, 0, err);
        if (fd < 0)
                return fd;
        char p[32];
        fd_path(fd, p);
        unsigned long flags = MS_NOSUID | MS_NOEXEC;
        /* gid 5 (tty) may not be mapped in a user namespace */
        if (mount("devpts", p, "devpts", flags, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
            mount("devpts", p, "devpts", flags, "newinstance,ptmxmode=0666,mode=0620") < 0)
                return ossb_error_set(err, -errno, "mounting devpts on /dev/pts: %m");
        return 0;
}

static int setup_dev(struct mnt *m, struct ossb_error **err)
{
        static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
        static const char *const links[][2] = {
                { "ptmx", "pts/ptmx" }, { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
                { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" }, { "core", "/proc/kcore" },
        };
        int r = mount_at(m, "/dev", true, "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
                         false, err);
        if (r < 0)
                return r;
        _cleanup_close_ int devfd = ossb_open_in_root(m->rootfd, "/dev", O_DIRECTORY | O_RDONLY, 0);
        if (devfd < 0)
                return ossb_error_set(err, devfd, "opening /dev: %s", strerror(-devfd));
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++)
                if ((r = bind_dev_node(devfd, nodes[i], err)) < 0)
                        return r;
        if ((r = mount_devpts(m, err)) < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                if (symlinkat(links[i][1], devfd, links[i][0]) < 0)
                        return ossb_error_set(err, -errno, "creating /dev/%s: %m", links[i][0]);
        r = mount_at(m, "/dev/shm", true, "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     "mode=1777,size=65536k", false, err);
        if (r >= 0)
                r = mount_at(m, "/dev/mqueue", true, "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                             false, err);
        return r;
}

/* ---- /sys, /etc, RUN --mount ---- */

static int setup_sys(struct mnt *m, struct ossb_error **err)
{
        unsigned long flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        struct ossb_error *e = NULL;
        int r = mount_at(m, "/sys", true, "sysfs", "sysfs", flags, NULL, false, &e);
        if (r != -EPERM && r != -EACCES) {
                if (r < 0 && err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
                return r;
        }
        /* a user namespace sharing the host's network namespace may not mount sysfs: give it a
         * read-only view of the host's */
        ossb_error_free(e);
        return mount_at(m, "/sys", true, "/sys", NULL, MS_BIND | MS_REC, NULL, true, err);
}

static int setup_etc(struct mnt *m, struct ossb_error **err)
{
        static const char *const files[] = { "hosts", "resolv.conf", "hostname" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *src = ossb_path_join(m->c->files_dir, files[i]);
                _cleanup_free_ char *dst = ossb_path_join("/etc", files[i]);
                if (!src || !dst)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                int r = mount_at(m, dst, false, src, NULL, MS_BIND, NULL, true, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int setup_user_mounts(struct mnt *m, struct ossb_error **err)
{
        const struct ossb_exec_spec *spec = m->c->spec;
        for (size_t i = 0; i < spec->n_mounts; i++) {
                const struct ossb_exec_mount *mt = &spec->mounts[i];
                int r;
                if (mt->tmpfs) {
                        char data[32];
                        snprintf(data, sizeof(data), "size=%llu", (unsigned long long) mt->size);
                        r = mount_at(m, mt->target, true, "tmpfs", "tmpfs",
                                     MS_NOSUID | MS_NODEV | (mt->readonly ? MS_RDONLY : 0), mt->size ? data : NULL,
                                     false, err);
                } else {
                        struct stat st;
                        if (stat(mt->source, &st) < 0)
                                return ossb_error_set(err, -errno, "bind mount source %s: %m", mt->source);
                        r = mount_at(m, mt->target, S_ISDIR(st.st_mode), mt->source, NULL, MS_BIND | MS_REC, NULL,
                                     mt->readonly, err);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int bind_root(struct mnt *m, struct ossb_error **err)
{
        const char *rootfs = m->c->spec->rootfs;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return ossb_error_set(err, -errno, "making the mount tree private: %m");
        if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
                return ossb_error_set(err, -errno, "binding %s onto itself: %m", rootfs);
        m->rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (m->rootfd < 0)
                return ossb_error_set(err, -errno, "opening %s: %m", rootfs);
        char p[32];
        fd_path(m->rootfd, p);
        ssize_t n = readlink(p, m->root_path, sizeof(m->root_path) - 1);
        if (n < 0)
                return ossb_error_set(err, -errno, "readlink %s: %m", p);
        m->root_path[n] = '\0';
        int r = fd_mnt_id(m->rootfd, &m->root_mnt_id);
        if (r < 0)
                return ossb_error_set(err, r, "statx %s: %s", rootfs, strerror(-r));
        return 0;
}

int exec_setup_mounts(const struct exec_child *c, struct ossb_error **err)
{
        struct mnt m = { .c = c, .rootfd = -1 };
        int r = bind_root(&m, err);
        if (r >= 0)
                r = mount_at(&m, "/proc", true, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, false, err);
        if (r >= 0)
                r = setup_dev(&m, err);
        if (r >= 0)
                r = setup_sys(&m, err);
        if (r >= 0)
                r = mask_paths(&m, err);
        if (r >= 0)
                r = setup_etc(&m, err);
        if (r >= 0)
                r = setup_user_mounts(&m, err);
        if (r < 0) {
                if (m.rootfd >= 0)
                        close(m.rootfd);
                return r;
        }
        return m.rootfd;
}
