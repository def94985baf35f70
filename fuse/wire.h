/* fuse/wire.h - reading requests and patching one reply of the kernel's FUSE wire format
 * (fuse/wire.c says why: FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate). */
#ifndef OSSB_FUSE_WIRE_H
#define OSSB_FUSE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct ossb_wire_request {
        uint32_t opcode;
        uint64_t unique;
        uint32_t uid, gid, pid; /* the caller's (fs ids, in the mount's user namespace) */
        bool kill_suidgid;  /* a WRITE, SETATTR or OPEN asking the filesystem to clear setuid/setgid */
        bool is_init;       /* FUSE_INIT, with the fields below */
        uint32_t init_major, init_minor, init_flags;
};

/* Classify the request in buf[0..len) as read from /dev/fuse (short or unknown requests give
 * a zeroed result). */
void ossb_wire_inspect(const void *buf, size_t len, struct ossb_wire_request *ret);

/* Whether a FUSE_INIT with these fields offers FUSE_HANDLE_KILLPRIV_V2. */
bool ossb_wire_offers_killpriv_v2(uint32_t major, uint32_t minor, uint32_t flags);

/* If iov[0..count) is the successful reply to the FUSE_INIT request `init_unique`, add
 * FUSE_HANDLE_KILLPRIV_V2 to its flags and return true; otherwise change nothing, false. */
bool ossb_wire_patch_init_reply(struct iovec *iov, int count, uint64_t init_unique);

#endif
