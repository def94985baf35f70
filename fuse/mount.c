/* fuse/mount.c - one mount's life: checking the options, the root node, mount(2) on an fd of
 * /dev/fuse (no fusermount3), the libfuse multithreaded session loop in a thread of this
 * process, FUSE_INIT negotiation (long caches, writeback cache, large requests, splice for
 * reads, readdirplus, POSIX ACLs, HANDLE_KILLPRIV_V2 through fuse/wire.c), unmounting (lazy/forced when busy) and joining, the first
 * internal failure, the counters. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "fuse/fusefs-internal.h"
#include "fuse/wire.h"

#define MAX_WRITE (1024 * 1024)
#define INIT_TIMEOUT_S 30
#define BUSY_RETRY_MS 2000

int fs_fail(struct ossb_fusefs *fs, int code, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (code >= 0)
                code = -EIO;
        log_debug("fusefs: internal failure: %s", msg ? msg : "(out of memory)");
        pthread_mutex_lock(&fs->err_lock);
        if (!fs->err_code) {
                fs->err_code = code;
                fs->err_msg = msg;
                msg = NULL;
        }
        pthread_mutex_unlock(&fs->err_lock);
        free(msg);
        return code;
}

void reply_change_err(fuse_req_t req, struct ossb_fusefs *fs, int r)
{
        if (r == -EIO || r == -ESTALE || r == -EUCLEAN)
                fs_fail(fs, r, "a change to the file system failed: %s", strerror(-r));
        fuse_reply_err(req, -r);
}

struct ossb_fusefs *req_fs(fuse_req_t req)
{
        struct ossb_fusefs *fs = fuse_req_userdata(req);
        atomic_fetch_add(&fs->st_requests, 1);
        return fs;
}

void op_init(void *ud, struct fuse_conn_info *conn)
{
        struct ossb_fusefs *fs = ud;
        unsigned want = FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_READDIRPLUS |
                        FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_POSIX_ACL |
                        FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_ASYNC_READ |
                        FUSE_CAP_ASYNC_DIO;
        conn->want |= want & conn->capable;
        /* the mount is the only writer: no invalidation on mtime changes; the kernel kills
         * setuid bits itself with a setattr */
        conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_SPLICE_READ |
                        FUSE_CAP_SPLICE_MOVE);
        conn->max_write = MAX_WRITE;
        conn->max_readahead = MAX_WRITE;
        conn->max_background = 64;
        conn->congestion_threshold = 48;
        conn->time_gran = 1;
        pthread_mutex_lock(&fs->init_lock);
        fs->init_done = true;
        pthread_cond_broadcast(&fs->init_cond);
        pthread_mutex_unlock(&fs->init_lock);
}

void op_destroy(void *ud)
{
}

const struct fuse_lowlevel_ops fusefs_ops = {
        .init = op_init,
        .destroy = op_destroy,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .setattr = op_setattr,
        .readlink = op_readlink,
        .mknod = op_mknod,
        .mkdir = op_mkdir,
        .unlink = op_unlink,
        .rmdir = op_rmdir,
        .symlink = op_symlink,
        .rename = op_rename,
        .link = op_link,
        .open = op_open,
        .read = op_read,
        .write_buf = op_write_buf,
        .release = op_release,
        .fsync = op_fsync,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .releasedir = op_releasedir,
        .fsyncdir = op_fsyncdir,
        .statfs = op_statfs,
        .setxattr = op_setxattr,
        .getxattr = op_getxattr,
        .listxattr = op_listxattr,
        .removexattr = op_removexattr,
        .create = op_create,
        .fallocate = op_fallocate,
        .lseek = op_lseek,
};

static void fuse_log_to_ossb(enum fuse_log_level level, const char *fmt, va_list ap)
{
        char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        size_t len = strlen(msg);
        if (len && msg[len - 1] == '\n')
                msg[len - 1] = '\0';
        log_debug("libfuse: %s", msg);
        free(msg);
}

/* ---- setup ---- */

static void raise_nofile(struct ossb_fusefs *fs)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        rlim_t cur = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
        size_t max = cur > 1024 ? (size_t) (cur - 512) / 2 : 64;
        fs->fdc_max = max > 16384 ? 16384 : max < 64 ? 64 : max;
}

/* Remove what an earlier mount left in the work directory. */
static void clean_work(struct ossb_fusefs *fs)
{
        _cleanup_close_ int fd = openat(fs->work_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                return;
        TAKE_FD(fd);
        struct dirent *de;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "#ossb-", 6) == 0)
                        (void) ossb_rm_rf_at(fs->work_fd, de->d_name);
        closedir(d);
}

static struct fnode *pseudo_dir(struct ossb_fusefs *fs, int fd, uint64_t ino)
{
        struct fnode *n = node_new(fs, ino, S_IFDIR);
        if (!n)
                return NULL;
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return NULL; /* n is freed with the others */
        n->upper = true;
        n->ufd = dup_fd;
        n->ufd_fixed = true;
        return n;
}

/* The root: the upper's root over every lower root down to the first opaque one. */
static int make_root(struct ossb_fusefs *fs, struct ossb_error **err)
{
        struct stat st;
        if (fstat(fs->upper_fd, &st) < 0)
                return ossb_error_set(err, -errno, "cannot stat the upper directory `%s`: %m", fs->upper_path);
        fs->upper_dev = st.st_dev;
        fs->root = pseudo_dir(fs, fs->upper_fd, st.st_ino);
        fs->workdir = pseudo_dir(fs, fs->work_fd, 0);
        if (!fs->root || !fs->workdir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        fs->root->uino = st.st_ino;
        fs->root->nlookup = 1;
        fs->root->lpath = strdup("");
        fs->root->dl = calloc(fs->n_lowers, sizeof(int));
        if (!fs->root->lpath || !fs->root->dl)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (upper_is_opaque(fs, fs->upper_fd, NULL))
                return 0;
        for (size_t i = 0; i < fs->n_lowers; i++) {
                struct ossb_fs_source *src = fs->lowers[i];
                struct stat lst;
                unsigned fl = 0;
                int r = src->ops->getattr(src->ctx, "", &lst, &fl);
                if (r < 0)
                        return ossb_error_set(err, r, "cannot stat the root of lower layer %s: %s",
                                              src->name ? src->name : "?", strerror(-r));
                fs->root->dl[fs->root->n_dl++] = (int) i;
                if (fl & OSSB_FS_OPAQUE)
                        break;
        }
        return 0;
}

static int open_dirs(struct ossb_fusefs *fs, const struct ossb_fusefs_opts *opts, struct ossb_error **err)
{
        struct stat ust, wst;
        fs->upper_fd = open(opts->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fs->upper_fd < 0)
                return ossb_error_set(err, -errno, "cannot open the upper directory `%s`: %m", opts->upper);
        fs->work_fd = open(opts->work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fs->work_fd < 0)
                return ossb_error_set(err, -errno, "cannot open the work directory `%s`: %m", opts->work);
        if (fstat(fs->upper_fd, &ust) < 0 || fstat(fs->work_fd, &wst) < 0)
                return ossb_error_set(err, -errno, "cannot stat the upper or work directory: %m");
        if (ust.st_dev != wst.st_dev)
                return ossb_error_set(err, -EXDEV, "the work directory `%s` is not on the file system of the upper "
                                      "directory `%s`", opts->work, opts->upper);
        clean_work(fs);
        return 0;
}

static int fs_new(const struct ossb_fusefs_opts *opts, struct ossb_fusefs **ret, struct ossb_error **err)
{
        struct ossb_fusefs *fs = calloc(1, sizeof(*fs));
        if (!fs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        fs->upper_fd = fs->work_fd = -1;
        pthread_mutex_init(&fs->init_lock, NULL);
        pthread_cond_init(&fs->init_cond, NULL);
        pthread_mutex_init(&fs->table_lock, NULL);
        pthread_mutex_init(&fs->fdc_lock, NULL);
        pthread_mutex_init(&fs->journal_lock, NULL);
        pthread_mutex_init(&fs->err_lock, NULL);
        pthread_mutex_init(&fs->handles_lock, NULL);
        fs->lowers = calloc(opts->n_lowers ? opts->n_lowers : 1, sizeof(*fs->lowers));
        fs->upper_path = strdup(opts->upper);
        fs->work_path = strdup(opts->work);
        fs->mountpoint = strdup(opts->mountpoint);
        *ret = fs;
        if (!fs->lowers || !fs->upper_path || !fs->work_path || !fs->mountpoint)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < opts->n_lowers; i++)
                fs->lowers[fs->n_lowers++] = TAKE_PTR(opts->lowers[i]);
        fs->userxattr = opts->userxattr;
        snprintf(fs->opaque_xattr, sizeof(fs->opaque_xattr), "%soverlay.opaque", opts->userxattr ? "user." : "trusted.");
        if (opts->threads)
                fs->threads = opts->threads;
        else {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                fs->threads = cpus < 2 ? 2 : (unsigned) cpus;
        }
        fs->uid = geteuid();
        fs->gid = getegid();
        raise_nofile(fs);
        return 0;
}

/* ---- mounting ---- */

static int open_fuse_dev(struct ossb_error **err)
{
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd >= 0)
                return fd;
        int e = errno;
        struct stat st;
        if (stat("/dev/fuse", &st) < 0)
                return ossb_error_set(err, -e, "cannot open /dev/fuse: %s (it does not exist here: FUSE needs the "
                                      "device, e.g. a device plugin or a hostPath char device in a pod)", strerror(e));
        return ossb_error_set(err, -e, "cannot open /dev/fuse (mode %04o, owner %u:%u) as uid %u: %s", st.st_mode & 07777,
                              (unsigned) st.st_uid, (unsigned) st.st_gid, (unsigned) geteuid(), strerror(e));
}

static int do_mount(struct ossb_fusefs *fs, int devfd, struct ossb_error **err)
{
        char data[256];
        snprintf(data, sizeof(data), "fd=%d,rootmode=40000,user_id=%u,group_id=%u,default_permissions,allow_other",
                 devfd, (unsigned) fs->uid, (unsigned) fs->gid);
        if (mount("ossb", fs->mountpoint, "fuse.ossb", MS_NOATIME, data) == 0)
                return 0;
        int e = errno;
        if (e == ENODEV && mount("ossb", fs->mountpoint, "fuse", MS_NOATIME, data) == 0)
                return 0;
        return ossb_error_set(err, -e, "mount(fuse) on `%s` refused: %s%s", fs->mountpoint, strerror(e),
                              e == EPERM ? " (mounting needs root, or a user namespace that owns the mount namespace)"
                                         : "");
}

/* ---- /dev/fuse I/O below libfuse (fuse/wire.c says why) ---- */

static _Thread_local bool tl_kill_suidgid;
static _Thread_local uint32_t tl_gid, tl_pid;

bool req_kill_suidgid(void)
{
        return tl_kill_suidgid;
}

/* Whether a "Groups:" line of /proc/PID/status lists gid. */
static bool groups_line_has(const char *line, gid_t gid)
{
        const char *p = line + strlen("Groups:");
        while (*p) {
                char *end;
                errno = 0;
                unsigned long v = strtoul(p, &end, 10);
                if (end == p)
                        break;
                if (errno == 0 && v == (unsigned long) gid)
                        return true;
                p = end;
        }
        return false;
}

bool req_caller_in_group(gid_t gid)
{
        if (tl_gid == gid)
                return true;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%u/status", (unsigned) tl_pid);
        _cleanup_fclose_ FILE *f = tl_pid ? fopen(path, "re") : NULL;
        if (!f)
                return false; /* gone: judge by its gid alone */
        char line[4096];
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "Groups:", 7) == 0)
                        return groups_line_has(line, gid);
        return false;
}

/* libfuse handles a request in the thread that read it: remember its kill flag there. */
static ssize_t dev_read(int fd, void *buf, size_t len, void *ud)
{
        struct ossb_fusefs *fs = ud;
        ssize_t n = read(fd, buf, len);
        struct ossb_wire_request rq;
        ossb_wire_inspect(buf, n > 0 ? (size_t) n : 0, &rq);
        tl_kill_suidgid = rq.kill_suidgid && atomic_load(&fs->killpriv_v2);
        if (n > 0)
                atomic_fetch_add(&fs->st_by_opcode[rq.opcode < OSSB_FUSEFS_N_OPCODES ? rq.opcode : OSSB_FUSEFS_N_OPCODES - 1],
                                 1);
        tl_gid = rq.gid;
        tl_pid = rq.pid;
        if (rq.is_init && ossb_wire_offers_killpriv_v2(rq.init_major, rq.init_minor, rq.init_flags)) {
                atomic_store(&fs->killpriv_offered, true);
                atomic_store(&fs->init_unique, rq.unique);
        }
        return n;
}

static ssize_t dev_writev(int fd, struct iovec *iov, int count, void *ud)
{
        struct ossb_fusefs *fs = ud;
        uint64_t init = atomic_load(&fs->init_unique);
        if (init != 0 && !atomic_load(&fs->killpriv_v2) && ossb_wire_patch_init_reply(iov, count, init)) {
                atomic_store(&fs->killpriv_v2, true);
                log_debug("fusefs: %s: FUSE_HANDLE_KILLPRIV_V2 negotiated", fs->mountpoint);
        }
        return writev(fd, iov, count);
}

static const struct fuse_custom_io dev_io = {
        .read = dev_read,
        .writev = dev_writev,
};

static void *loop_main(void *ud)
{
        struct ossb_fusefs *fs = ud;
        struct fuse_loop_config *cfg = fuse_loop_cfg_create();
        int r = -ENOMEM;
        if (cfg) {
                fuse_loop_cfg_set_max_threads(cfg, fs->threads);
                fuse_loop_cfg_set_idle_threads(cfg, fs->threads);
                fuse_loop_cfg_set_clone_fd(cfg, 1); /* a /dev/fuse fd per thread */
                r = fuse_session_loop_mt(fs->se, cfg);
                fuse_loop_cfg_destroy(cfg);
        }
        pthread_mutex_lock(&fs->init_lock);
        fs->loop_result = r;
        fs->loop_running = false;
        pthread_cond_broadcast(&fs->init_cond);
        pthread_mutex_unlock(&fs->init_lock);
        return NULL;
}

static int start_loop(struct ossb_fusefs *fs, struct ossb_error **err)
{
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        fs->loop_running = true;
        int r = pthread_create(&fs->loop_thread, NULL, loop_main, fs);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                fs->loop_running = false;
                return ossb_error_set(err, -r, "cannot start the FUSE session thread: %s", strerror(r));
        }
        fs->loop_started = true;
        return 0;
}

/* Wait until FUSE_INIT was answered (or the loop died), then check the mount answers. */
static int wait_init(struct ossb_fusefs *fs, struct ossb_error **err)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += INIT_TIMEOUT_S;
        pthread_mutex_lock(&fs->init_lock);
        int r = 0;
        while (!fs->init_done && fs->loop_running && r == 0)
                r = pthread_cond_timedwait(&fs->init_cond, &fs->init_lock, &deadline);
        bool ok = fs->init_done && fs->loop_running;
        pthread_mutex_unlock(&fs->init_lock);
        if (!ok)
                return ossb_error_set(err, r == ETIMEDOUT ? -ETIMEDOUT : -EIO,
                                      "the FUSE mount at `%s` did not start answering", fs->mountpoint);
        struct stat st;
        if (stat(fs->mountpoint, &st) < 0)
                return ossb_error_set(err, -errno, "the FUSE mount at `%s` does not answer: %m", fs->mountpoint);
        return 0;
}

int ossb_fusefs_mount(const struct ossb_fusefs_opts *opts, struct ossb_fusefs **ret, struct ossb_error **err)
{
        struct ossb_fusefs *fs = NULL;
        int r;

        if (!opts || !opts->lowers || opts->n_lowers == 0 || opts->n_lowers > FUSEFS_MAX_LAYERS || !opts->upper ||
            !opts->work || !opts->mountpoint) {
                for (size_t i = 0; opts && opts->lowers && i < opts->n_lowers; i++)
                        ossb_fs_source_free(TAKE_PTR(opts->lowers[i]));
                return ossb_error_set(err, -EINVAL, "fusefs: 1 to %d lower layers, an upper, a work directory and a "
                                      "mount point are needed", FUSEFS_MAX_LAYERS);
        }
        fuse_set_log_func(fuse_log_to_ossb);
        r = fs_new(opts, &fs, err);
        if (r == 0)
                r = open_dirs(fs, opts, err);
        if (r == 0)
                r = make_root(fs, err);
        if (r < 0)
                goto fail;

        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        if (fuse_opt_add_arg(&args, "ossb-fusefs") < 0) {
                r = ossb_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        fs->se = fuse_session_new(&args, &fusefs_ops, sizeof(fusefs_ops), fs);
        fuse_opt_free_args(&args);
        if (!fs->se) {
                r = ossb_error_set(err, -ENOMEM, "cannot create the FUSE session");
                goto fail;
        }
        int devfd = open_fuse_dev(err);
        if (devfd < 0) {
                r = devfd;
                goto fail;
        }
        r = fuse_session_custom_io(fs->se, &dev_io, devfd); /* takes the fd */
        if (r != 0) {
                close(devfd);
                r = ossb_error_set(err, r < 0 ? r : -EIO, "cannot hand /dev/fuse to the FUSE session");
                goto fail;
        }
        r = do_mount(fs, devfd, err);
        if (r < 0)
                goto fail;
        fs->mounted = true;
        r = start_loop(fs, err);
        if (r == 0)
                r = wait_init(fs, err);
        if (r < 0)
                goto fail;
        *ret = fs;
        return 0;
fail:
        ossb_fusefs_free(fs);
        return r;
}

/* ---- unmounting ---- */

static int umount_busy(struct ossb_fusefs *fs)
{
        for (int waited = 0; waited < BUSY_RETRY_MS; waited += 50) {
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                if (umount2(fs->mountpoint, 0) == 0)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
        }
        /* still busy: abort the connection where allowed (users see ENOTCONN), detach */
        if (umount2(fs->mountpoint, MNT_FORCE) == 0)
                return 0;
        log_debug("fusefs: `%s` busy: detaching it", fs->mountpoint);
        return umount2(fs->mountpoint, MNT_DETACH) < 0 ? -errno : 0;
}

static int wait_loop(struct ossb_fusefs *fs, int timeout_s)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_s;
        pthread_mutex_lock(&fs->init_lock);
        int r = 0;
        while (fs->loop_running && r == 0)
                r = pthread_cond_timedwait(&fs->init_cond, &fs->init_lock, &deadline);
        bool running = fs->loop_running;
        pthread_mutex_unlock(&fs->init_lock);
        return running ? -EBUSY : 0;
}

int ossb_fusefs_unmount(struct ossb_fusefs *fs, struct ossb_error **err)
{
        if (!fs)
                return 0;
        if (!fs->unmounted && fs->mounted) {
                pthread_mutex_lock(&fs->init_lock);
                bool ended = fs->loop_started && !fs->loop_running;
                pthread_mutex_unlock(&fs->init_lock);
                if (ended) /* aborted from outside, or the session failed: requests went unanswered */
                        fs_fail(fs, -ENOTCONN, "the FUSE session ended before the unmount (%s)",
                                fs->loop_result < 0 ? strerror(-fs->loop_result) : "connection aborted");
                int r = umount2(fs->mountpoint, 0) == 0 ? 0 : -errno;
                if (r == -EBUSY)
                        r = umount_busy(fs);
                if (r < 0 && r != -EINVAL && r != -ENOENT)
                        return ossb_error_set(err, r, "cannot unmount `%s`: %s", fs->mountpoint, strerror(-r));
                fs->mounted = false;
        }
        if (fs->loop_started) {
                if (wait_loop(fs, 60) < 0)
                        return ossb_error_set(err, -EBUSY, "the FUSE mount `%s` is still in use after it was detached",
                                              fs->mountpoint);
                pthread_join(fs->loop_thread, NULL);
                fs->loop_started = false;
        }
        if (fs->se) {
                fuse_session_destroy(fs->se);
                fs->se = NULL;
        }
        if (!fs->unmounted && fs->work_fd >= 0)
                clean_work(fs);
        fs->unmounted = true;
        pthread_mutex_lock(&fs->err_lock);
        int code = fs->err_code;
        pthread_mutex_unlock(&fs->err_lock);
        if (code)
                return ossb_error_set(err, code, "the FUSE file system at `%s` failed: %s", fs->mountpoint,
                                      fs->err_msg ? fs->err_msg : strerror(-code));
        return 0;
}

void ossb_fusefs_free(struct ossb_fusefs *fs)
{
        if (!fs)
                return;
        (void) ossb_fusefs_unmount(fs, NULL);
        if (fs->loop_started) {
                log_warn("fusefs: the mount `%s` is still busy; its memory is kept", fs->mountpoint);
                return;
        }
        if (fs->se)
                fuse_session_destroy(fs->se);
        file_handles_free_all(fs);
        dir_handles_free_all(fs);
        nodes_free_all(fs);
        for (size_t i = 0; i < fs->n_lowers; i++)
                ossb_fs_source_free(fs->lowers[i]);
        free(fs->lowers);
        ino_map_clear(&fs->cumap);
        ino_map_clear(&fs->bigmap);
        journal_free(fs);
        if (fs->upper_fd >= 0)
                close(fs->upper_fd);
        if (fs->work_fd >= 0)
                close(fs->work_fd);
        free(fs->upper_path);
        free(fs->work_path);
        free(fs->mountpoint);
        free(fs->err_msg);
        pthread_mutex_destroy(&fs->init_lock);
        pthread_cond_destroy(&fs->init_cond);
        pthread_mutex_destroy(&fs->table_lock);
        pthread_mutex_destroy(&fs->fdc_lock);
        pthread_mutex_destroy(&fs->journal_lock);
        pthread_mutex_destroy(&fs->err_lock);
        pthread_mutex_destroy(&fs->handles_lock);
        free(fs);
}

void ossb_fusefs_get_stats(const struct ossb_fusefs *fs, struct ossb_fusefs_stats *ret)
{
        struct ossb_fusefs *f = (struct ossb_fusefs *) fs;
        ret->requests = atomic_load(&f->st_requests);
        ret->lookups = atomic_load(&f->st_lookups);
        ret->copy_ups = atomic_load(&f->st_copy_ups);
        ret->copy_up_bytes = atomic_load(&f->st_copy_up_bytes);
        ret->lower_bytes_read = atomic_load(&f->st_lower_bytes);
        for (size_t i = 0; i < OSSB_FUSEFS_N_OPCODES; i++)
                ret->by_opcode[i] = atomic_load(&f->st_by_opcode[i]);
}
