/* tests/unit/test-fuse-wire.c - fuse/wire.c: reading requests of the kernel's FUSE wire format
 * and adding FUSE_HANDLE_KILLPRIV_V2 to the FUSE_INIT reply only. */
#include "config.h"

#include <errno.h>
#include <linux/fuse.h>
#include <string.h>

#include "fuse/fusefs.h"
#include "fuse/wire.h"
#include "tests/unit/tap.h"

/* A request: header + payload, as read from /dev/fuse. */
static size_t make_request(void *buf, uint32_t opcode, uint64_t unique, const void *payload, size_t len)
{
        struct fuse_in_header h = { .len = (uint32_t) (sizeof(h) + len), .opcode = opcode, .unique = unique,
                                    .uid = 1000, .gid = 1001, .pid = 4242 };
        memcpy(buf, &h, sizeof(h));
        memcpy((char *) buf + sizeof(h), payload, len);
        return sizeof(h) + len;
}

static void test_inspect_init(void)
{
        char buf[256];
        struct fuse_init_in in = { .major = 7, .minor = 45, .flags = FUSE_HANDLE_KILLPRIV_V2 | FUSE_ASYNC_READ };
        size_t n = make_request(buf, FUSE_INIT, 7, &in, sizeof(in));
        struct ossb_wire_request rq;
        ossb_wire_inspect(buf, n, &rq);
        ASSERT(rq.is_init);
        ASSERT_INTEQ(rq.unique, 7);
        ASSERT_INTEQ(rq.uid, 1000);
        ASSERT_INTEQ(rq.gid, 1001);
        ASSERT_INTEQ(rq.pid, 4242);
        ASSERT(ossb_wire_offers_killpriv_v2(rq.init_major, rq.init_minor, rq.init_flags));
        ASSERT(!ossb_wire_offers_killpriv_v2(7, 31, FUSE_HANDLE_KILLPRIV_V2)); /* too old to have it */
        ASSERT(!ossb_wire_offers_killpriv_v2(7, 45, FUSE_ASYNC_READ));
        /* cut short: not an INIT we can read */
        ossb_wire_inspect(buf, sizeof(struct fuse_in_header) + 8, &rq);
        ASSERT(!rq.is_init);
        ossb_wire_inspect(buf, 3, &rq);
        ASSERT_INTEQ(rq.opcode, 0);
}

static void test_inspect_kill_flags(void)
{
        char buf[256];
        struct ossb_wire_request rq;
        struct fuse_write_in w = { .size = 1, .write_flags = FUSE_WRITE_KILL_SUIDGID };
        ossb_wire_inspect(buf, make_request(buf, FUSE_WRITE, 9, &w, sizeof(w)), &rq);
        ASSERT(rq.kill_suidgid);
        w.write_flags = FUSE_WRITE_CACHE;
        ossb_wire_inspect(buf, make_request(buf, FUSE_WRITE, 9, &w, sizeof(w)), &rq);
        ASSERT(!rq.kill_suidgid);
        struct fuse_setattr_in s = { .valid = FATTR_SIZE | FATTR_KILL_SUIDGID };
        ossb_wire_inspect(buf, make_request(buf, FUSE_SETATTR, 10, &s, sizeof(s)), &rq);
        ASSERT(rq.kill_suidgid);
        struct fuse_open_in o = { .flags = 01000, .open_flags = FUSE_OPEN_KILL_SUIDGID };
        ossb_wire_inspect(buf, make_request(buf, FUSE_OPEN, 11, &o, sizeof(o)), &rq);
        ASSERT(rq.kill_suidgid);
        /* the same bit in another request means nothing */
        ossb_wire_inspect(buf, make_request(buf, FUSE_GETATTR, 12, &o, sizeof(o)), &rq);
        ASSERT(!rq.kill_suidgid);
        ASSERT_INTEQ(rq.opcode, FUSE_GETATTR);
}

static void test_patch_init_reply(void)
{
        struct fuse_out_header h = { .len = sizeof(h) + sizeof(struct fuse_init_out), .error = 0, .unique = 7 };
        struct fuse_init_out out = { .major = 7, .minor = 38, .flags = FUSE_ASYNC_READ };
        struct iovec iov[2] = { { &h, sizeof(h) }, { &out, sizeof(out) } };
        ASSERT(!ossb_wire_patch_init_reply(iov, 2, 8)); /* another request's reply */
        ASSERT_INTEQ(out.flags, FUSE_ASYNC_READ);
        ASSERT(ossb_wire_patch_init_reply(iov, 2, 7));
        ASSERT_INTEQ(out.flags, FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2);
        ASSERT_INTEQ(out.max_write, 0); /* nothing else touched */

        /* one buffer, flags split over no boundary; an error reply is left alone */
        unsigned char one[sizeof(h) + sizeof(out)];
        out.flags = 0;
        memcpy(one, &h, sizeof(h));
        memcpy(one + sizeof(h), &out, sizeof(out));
        struct iovec single = { one, sizeof(one) };
        ASSERT(ossb_wire_patch_init_reply(&single, 1, 7));
        memcpy(&out, one + sizeof(h), sizeof(out));
        ASSERT_INTEQ(out.flags, FUSE_HANDLE_KILLPRIV_V2);
        h.error = -ENOSYS;
        h.len = sizeof(h);
        struct iovec err = { &h, sizeof(h) };
        ASSERT(!ossb_wire_patch_init_reply(&err, 1, 7));
}

static void test_opcode_names(void)
{
        ASSERT_STREQ(ossb_fusefs_opcode_name(FUSE_GETXATTR), "GETXATTR");
        ASSERT_STREQ(ossb_fusefs_opcode_name(FUSE_READDIRPLUS), "READDIRPLUS");
        ASSERT(ossb_fusefs_opcode_name(999) == NULL);
        ASSERT(ossb_fusefs_opcode_name(0) == NULL);
}

int main(void)
{
        RUN_TEST(test_inspect_init);
        RUN_TEST(test_inspect_kill_flags);
        RUN_TEST(test_patch_init_reply);
        RUN_TEST(test_opcode_names);
        TAP_END();
}
