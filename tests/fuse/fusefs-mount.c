/* tests/fuse/fusefs-mount.c - mount OSSB's userspace overlay file system (fuse/fusefs.h) in the
 * foreground, for the unionmount test suite, benchmarks and manual checks.
 *
 * Usage:
 *   fusefs-mount [--userxattr] [--threads N] [--stats] [--debug]
 *                --lower DIR [--lower DIR...] --upper DIR --work DIR MOUNTPOINT
 *
 *   --lower DIR   a lower layer in kernel overlayfs's format (0/0 character devices are
 *                 whiteouts, PREFIX"overlay.opaque"="y" marks opaque directories); give the
 *                 top-most first, as overlayfs's lowerdir=TOP:...:BOTTOM
 *   --upper DIR   the writable layer (may hold earlier changes); --work DIR an empty directory
 *                 on the same file system
 *   --userxattr   the overlay attributes are user.overlay.* (else trusted.overlay.*); use it
 *                 in a user namespace
 *   --threads N   session threads (default: the number of CPUs, at least 2)
 *   --stats       print the mount's counters to stderr at the end
 *   --debug       debug logging (ossb's and libfuse's) on stderr
 *
 * Mounts with mount(2) on /dev/fuse directly, so it must run as root or in a user namespace
 * that owns its mount namespace (e.g. `unshare -Urm fusefs-mount ...`; the mount is then only
 * visible inside that namespace: run the workload in it too, e.g. with nsenter, or start it
 * from the same unshare'd shell).  When the mount answers, the line
 *   fusefs-mount: ready MOUNTPOINT
 * goes to stderr.  On SIGTERM, SIGINT or SIGHUP it unmounts (detaching lazily when busy), waits
 * for its threads, and prints the change journal to stdout, one line per changed path:
 *   FLAGS PATH
 * FLAGS being the letters of OSSB_FS_CHANGE_*: C created, M modified, D deleted, O opaque (in
 * that order, e.g. "DM etc/passwd"), PATH relative to the mount's root, byte-sorted.
 *
 * Exit status: 0 clean, 1 the file system reported an internal failure (message on stderr;
 * the journal is still printed), 2 usage, 4 the mount failed.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/log.h"
#include "fuse/fusefs.h"

#define MAX_LOWERS 512

struct args {
        const char *lowers[MAX_LOWERS];
        size_t n_lowers;
        const char *upper, *work, *mountpoint;
        bool userxattr, stats, debug;
        unsigned threads;
};

static int usage(void)
{
        fprintf(stderr, "usage: fusefs-mount [--userxattr] [--threads N] [--stats] [--debug] --lower DIR "
                        "[--lower DIR...] --upper DIR --work DIR MOUNTPOINT\n");
        return 2;
}

static int parse_threads(const char *s, unsigned *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || !end || *end || v == 0 || v > 1024)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
        for (int i = 1; i < argc; i++) {
                const char *o = argv[i];
                bool more = i + 1 < argc;
                if (streq(o, "--userxattr"))
                        a->userxattr = true;
                else if (streq(o, "--stats"))
                        a->stats = true;
                else if (streq(o, "--debug"))
                        a->debug = true;
                else if (streq(o, "--threads") && more) {
                        if (parse_threads(argv[++i], &a->threads) < 0)
                                return -EINVAL;
                } else if (streq(o, "--lower") && more) {
                        if (a->n_lowers == MAX_LOWERS)
                                return -E2BIG;
                        a->lowers[a->n_lowers++] = argv[++i];
                } else if (streq(o, "--upper") && more)
                        a->upper = argv[++i];
                else if (streq(o, "--work") && more)
                        a->work = argv[++i];
                else if (o[0] == '-' || a->mountpoint)
                        return -EINVAL;
                else
                        a->mountpoint = o;
        }
        return a->n_lowers && a->upper && a->work && a->mountpoint ? 0 : -EINVAL;
}

static int print_change(void *ud, const char *path, unsigned flags)
{
        char f[5];
        size_t n = 0;
        if (flags & OSSB_FS_CHANGE_CREATED)
                f[n++] = 'C';
        if (flags & OSSB_FS_CHANGE_MODIFIED)
                f[n++] = 'M';
        if (flags & OSSB_FS_CHANGE_DELETED)
                f[n++] = 'D';
        if (flags & OSSB_FS_CHANGE_OPAQUE)
                f[n++] = 'O';
        f[n] = '\0';
        printf("%s %s\n", f, path);
        return 0;
}

static int mount_it(struct args *a, struct ossb_fusefs **ret)
{
        struct ossb_fs_source *lowers[MAX_LOWERS];
        _cleanup_error_ struct ossb_error *err = NULL;
        int r = 0;
        size_t n = 0;
        for (; n < a->n_lowers && r == 0; n++)
                r = ossb_fs_source_dir_new(a->lowers[n], a->userxattr, &lowers[n], &err);
        if (r < 0) {
                for (size_t i = 0; i + 1 < n; i++)
                        ossb_fs_source_free(lowers[i]);
                fprintf(stderr, "fusefs-mount: %s\n", err && err->msg ? err->msg : strerror(-r));
                return r;
        }
        struct ossb_fusefs_opts o = {
                .lowers = lowers, .n_lowers = n, .upper = a->upper, .work = a->work,
                .mountpoint = a->mountpoint, .userxattr = a->userxattr, .threads = a->threads,
        };
        r = ossb_fusefs_mount(&o, ret, &err);
        if (r < 0)
                fprintf(stderr, "fusefs-mount: %s\n", err && err->msg ? err->msg : strerror(-r));
        return r;
}

static void print_stats(struct ossb_fusefs *fs)
{
        struct ossb_fusefs_stats s;
        ossb_fusefs_get_stats(fs, &s);
        fprintf(stderr, "fusefs-mount: requests %llu lookups %llu copy-ups %llu copy-up bytes %llu lower bytes read %llu\n",
                (unsigned long long) s.requests, (unsigned long long) s.lookups, (unsigned long long) s.copy_ups,
                (unsigned long long) s.copy_up_bytes, (unsigned long long) s.lower_bytes_read);
        fprintf(stderr, "fusefs-mount: by opcode:");
        for (unsigned i = 0; i < OSSB_FUSEFS_N_OPCODES; i++)
                if (s.by_opcode[i]) {
                        const char *name = ossb_fusefs_opcode_name(i);
                        if (name)
                                fprintf(stderr, " %s %llu", name, (unsigned long long) s.by_opcode[i]);
                        else
                                fprintf(stderr, " op%u %llu", i, (unsigned long long) s.by_opcode[i]);
                }
        fputc('\n', stderr);
}

int main(int argc, char **argv)
{
        struct args a = { 0 };
        if (parse_args(argc, argv, &a) < 0)
                return usage();
        ossb_log_setup(a.debug ? OSSB_LOG_DEBUG : OSSB_LOG_WARN, false);

        /* the signals are taken with sigwait; every thread inherits the blocked set */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        struct ossb_fusefs *fs = NULL;
        if (mount_it(&a, &fs) < 0)
                return 4;
        fprintf(stderr, "fusefs-mount: ready %s\n", a.mountpoint);

        int sig;
        while (sigwait(&set, &sig) != 0)
                ;
        _cleanup_error_ struct ossb_error *err = NULL;
        int status = 0;
        if (ossb_fusefs_unmount(fs, &err) < 0) {
                fprintf(stderr, "fusefs-mount: %s\n", err && err->msg ? err->msg : "unmount failed");
                status = 1;
        }
        ossb_fusefs_journal(fs, print_change, NULL);
        fflush(stdout);
        if (a.stats)
                print_stats(fs);
        ossb_fusefs_free(fs);
        return status;
}
