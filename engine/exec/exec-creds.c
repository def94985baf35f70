/* engine/exec/exec-creds.c - the sandbox's identity: Docker's default capability set, the
 * supplementary groups, gid and uid of the RUN, and the loopback interface of a network
 * namespace of its own.
 *
 * Owns: nothing; runs in the sandbox process only, after pivot_root and before execve.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "engine/exec/exec-internal.h"

/* What Docker and BuildKit leave a container (moby's default capabilities). */
static const int default_caps[] = {
        CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID,
        CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,
        CAP_AUDIT_WRITE,
};

static uint64_t default_cap_mask(void)
{
        uint64_t m = 0;
        for (size_t i = 0; i < ELEMENTSOF(default_caps); i++)
                m |= UINT64_C(1) << default_caps[i];
        return m;
}

static int drop_bounding_set(uint64_t keep, struct ossb_error **err)
{
        for (int cap = 0; cap < 64; cap++) {
                if (keep & (UINT64_C(1) << cap))
                        continue;
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
                        break; /* past the kernel's last capability */
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                        return ossb_error_set(err, -errno, "dropping capability %d: %m", cap);
        }
        return 0;
}

static int set_caps(uint64_t mask, struct ossb_error **err)
{
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof(d));
        d[0].effective = d[0].permitted = (uint32_t) mask;
        d[1].effective = d[1].permitted = (uint32_t) (mask >> 32);
        if (syscall(SYS_capset, &h, d) < 0)
                return ossb_error_set(err, -errno, "setting capabilities: %m");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return ossb_error_set(err, -errno, "clearing ambient capabilities: %m");
        return 0;
}

/* Whether setgroups(2) is denied in this user namespace (written "deny" by whoever mapped a
 * single id: the sandbox's own namespace, or ossb's rootless one, common/userns.h). */
static bool setgroups_denied(void)
{
        char buf[16] = "";
        _cleanup_close_ int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        return n >= 4 && strncmp(buf, "deny", 4) == 0;
}

static int set_ids(const struct ossb_exec_spec *spec, struct ossb_error **err)
{
        const char *hint = spec->userns ? " (is it mapped in the user namespace?)" : "";
        if (setgroups(spec->n_groups, spec->groups) < 0) {
                int e = errno;
                /* a single-id user namespace has setgroups denied: nothing to drop there, and
                 * only the primary group to have */
                bool only_primary = spec->n_groups == 0 || (spec->n_groups == 1 && spec->groups[0] == spec->gid);
                if (!(e == EPERM && only_primary && (spec->userns || setgroups_denied()))) {
                        errno = e;
                        return ossb_error_set(err, -e, "setgroups (%zu groups): %m%s", spec->n_groups, hint);
                }
        }
        if (setresgid(spec->gid, spec->gid, spec->gid) < 0)
                return ossb_error_set(err, -errno, "setgid %u: %m%s", (unsigned) spec->gid, hint);
        if (setresuid(spec->uid, spec->uid, spec->uid) < 0)
                return ossb_error_set(err, -errno, "setuid %u: %m%s", (unsigned) spec->uid, hint);
        return 0;
}

int exec_drop_privileges(const struct ossb_exec_spec *spec, struct ossb_error **err)
{
        uint64_t keep = default_cap_mask();
        int r = drop_bounding_set(keep, err);
        if (r >= 0)
                r = set_ids(spec, err);
        /* a non-root uid lost its permitted set with setuid; root keeps the default set */
        if (r >= 0)
                r = set_caps(spec->uid == 0 ? keep : 0, err);
        return r;
}

int exec_loopback_up(struct ossb_error **err)
{
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return ossb_error_set(err, -errno, "socket for the loopback interface: %m");
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        memcpy(ifr.ifr_name, "lo", 3);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return ossb_error_set(err, -errno, "reading the flags of lo: %m");
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                return ossb_error_set(err, -errno, "setting lo up: %m");
        return 0;
}
