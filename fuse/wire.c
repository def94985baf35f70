/* fuse/wire.c - the few places where the filesystem looks at the kernel's FUSE wire format
 * itself, below libfuse: Debian 12's libfuse 3.14 neither negotiates FUSE_HANDLE_KILLPRIV_V2
 * nor passes the kill-suid/sgid flags of a request to its handler.
 *
 * Why it matters: without HANDLE_KILLPRIV_V2 the kernel does not mark a FUSE superblock
 * SB_NOSEC, so every write(2) to a file on the mount first asks the filesystem for the file's
 * security.capability (a GETXATTR round trip) to decide whether to remove it.  A RUN step
 * writing a line at a time (busybox awk, shell loops) paid one round trip per line.  With
 * HANDLE_KILLPRIV_V2 the kernel caches "nothing to remove" on the inode (S_NOSEC) and instead
 * tells the filesystem when a write, truncate or open(O_TRUNC) by a caller without CAP_FSETID
 * must clear setuid/setgid (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
 * FUSE_OPEN_KILL_SUIDGID); a chown of a non-directory clears them in the filesystem too.
 *
 * Owns: classifying a request read from /dev/fuse (its kill flag, the FUSE_INIT request's
 * unique id and the kernel's offered flags) and adding a flag to the FUSE_INIT reply.  Only
 * <linux/fuse.h> here: libfuse's headers define some of the same names. */
#include "config.h"

#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>

#include "fuse/fusefs.h"
#include "fuse/wire.h"

/* The request's payload after its header, when it is at least `size` bytes long. */
static const void *payload(const void *buf, size_t len, size_t size)
{
        if (len < sizeof(struct fuse_in_header) + size)
                return NULL;
        return (const char *) buf + sizeof(struct fuse_in_header);
}

void ossb_wire_inspect(const void *buf, size_t len, struct ossb_wire_request *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (len < sizeof(struct fuse_in_header))
                return;
        struct fuse_in_header h;
        memcpy(&h, buf, sizeof(h));
        ret->opcode = h.opcode;
        ret->unique = h.unique;
        ret->uid = h.uid;
        ret->gid = h.gid;
        ret->pid = h.pid;
        const void *p;
        switch (h.opcode) {
        case FUSE_INIT: {
                /* major, minor, max_readahead, flags: the first 16 bytes in every version */
                uint32_t in[4];
                if ((p = payload(buf, len, sizeof(in)))) {
                        memcpy(in, p, sizeof(in));
                        ret->is_init = true;
                        ret->init_major = in[0];
                        ret->init_minor = in[1];
                        ret->init_flags = in[3];
                }
                break;
        }
        case FUSE_WRITE: {
                struct fuse_write_in w;
                if ((p = payload(buf, len, sizeof(w)))) {
                        memcpy(&w, p, sizeof(w));
                        ret->kill_suidgid = (w.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
                }
                break;
        }
        case FUSE_SETATTR: {
                struct fuse_setattr_in s;
                if ((p = payload(buf, len, sizeof(s)))) {
                        memcpy(&s, p, sizeof(s));
                        ret->kill_suidgid = (s.valid & FATTR_KILL_SUIDGID) != 0;
                }
                break;
        }
        case FUSE_OPEN: {
                struct fuse_open_in o;
                if ((p = payload(buf, len, sizeof(o)))) {
                        memcpy(&o, p, sizeof(o));
                        ret->kill_suidgid = (o.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
                }
                break;
        }
        default:
                break;
        }
}

bool ossb_wire_offers_killpriv_v2(uint32_t major, uint32_t minor, uint32_t flags)
{
        return major == 7 && minor >= 33 && (flags & FUSE_HANDLE_KILLPRIV_V2);
}

/* Copy `n` bytes at byte offset `off` of the iovec array into or out of `val`. */
static bool iov_access(struct iovec *iov, int count, size_t off, void *val, size_t n, bool write)
{
        for (int i = 0; i < count && n > 0; i++) {
                if (off >= iov[i].iov_len) {
                        off -= iov[i].iov_len;
                        continue;
                }
                size_t k = iov[i].iov_len - off < n ? iov[i].iov_len - off : n;
                if (write)
                        memcpy((char *) iov[i].iov_base + off, val, k);
                else
                        memcpy(val, (char *) iov[i].iov_base + off, k);
                val = (char *) val + k;
                n -= k;
                off = 0;
        }
        return n == 0;
}

bool ossb_wire_patch_init_reply(struct iovec *iov, int count, uint64_t init_unique)
{
        struct fuse_out_header h;
        if (!iov_access(iov, count, 0, &h, sizeof(h), false) || h.unique != init_unique || h.error != 0 ||
            h.len < sizeof(h) + offsetof(struct fuse_init_out, flags) + sizeof(uint32_t))
                return false;
        size_t off = sizeof(h) + offsetof(struct fuse_init_out, flags);
        uint32_t flags;
        if (!iov_access(iov, count, off, &flags, sizeof(flags), false))
                return false;
        flags |= FUSE_HANDLE_KILLPRIV_V2;
        return iov_access(iov, count, off, &flags, sizeof(flags), true);
}

const char *ossb_fusefs_opcode_name(unsigned opcode)
{
        static const char *const names[] = {
                [FUSE_LOOKUP] = "LOOKUP", [FUSE_FORGET] = "FORGET", [FUSE_GETATTR] = "GETATTR",
                [FUSE_SETATTR] = "SETATTR", [FUSE_READLINK] = "READLINK", [FUSE_SYMLINK] = "SYMLINK",
                [FUSE_MKNOD] = "MKNOD", [FUSE_MKDIR] = "MKDIR", [FUSE_UNLINK] = "UNLINK", [FUSE_RMDIR] = "RMDIR",
                [FUSE_RENAME] = "RENAME", [FUSE_LINK] = "LINK", [FUSE_OPEN] = "OPEN", [FUSE_READ] = "READ",
                [FUSE_WRITE] = "WRITE", [FUSE_STATFS] = "STATFS", [FUSE_RELEASE] = "RELEASE",
                [FUSE_FSYNC] = "FSYNC", [FUSE_SETXATTR] = "SETXATTR", [FUSE_GETXATTR] = "GETXATTR",
                [FUSE_LISTXATTR] = "LISTXATTR", [FUSE_REMOVEXATTR] = "REMOVEXATTR", [FUSE_FLUSH] = "FLUSH",
                [FUSE_INIT] = "INIT", [FUSE_OPENDIR] = "OPENDIR", [FUSE_READDIR] = "READDIR",
                [FUSE_RELEASEDIR] = "RELEASEDIR", [FUSE_FSYNCDIR] = "FSYNCDIR", [FUSE_GETLK] = "GETLK",
                [FUSE_SETLK] = "SETLK", [FUSE_SETLKW] = "SETLKW", [FUSE_ACCESS] = "ACCESS",
                [FUSE_CREATE] = "CREATE", [FUSE_INTERRUPT] = "INTERRUPT", [FUSE_BMAP] = "BMAP",
                [FUSE_DESTROY] = "DESTROY", [FUSE_IOCTL] = "IOCTL", [FUSE_POLL] = "POLL",
                [FUSE_NOTIFY_REPLY] = "NOTIFY_REPLY", [FUSE_BATCH_FORGET] = "BATCH_FORGET",
                [FUSE_FALLOCATE] = "FALLOCATE", [FUSE_READDIRPLUS] = "READDIRPLUS", [FUSE_RENAME2] = "RENAME2",
                [FUSE_LSEEK] = "LSEEK", [FUSE_COPY_FILE_RANGE] = "COPY_FILE_RANGE",
        };
        return opcode < sizeof(names) / sizeof(names[0]) ? names[opcode] : NULL;
}
