/* fuse/override.c - the ownership override attribute (OSSB_FS_OVERRIDE_XATTR): parse and
 * format its value "UID:GID:MODE[:TYPE]" (see fusefs.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/cleanup.h"
#include "fuse/fusefs.h"

#define OVERRIDE_MAX 128

/* Parse an unsigned number in `base` from *p up to `stop` (or the end); advance *p past it. */
static int parse_num(const char **p, int base, char stop, uint64_t max, uint64_t *ret)
{
        const char *s = *p;
        char *end = NULL;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, base);
        if (errno != 0 || end == s || v > max || (*end != '\0' && *end != stop))
                return -EINVAL;
        *ret = v;
        *p = *end ? end + 1 : end;
        return 0;
}

static int parse_dev(const char *s, dev_t *ret)
{
        uint64_t maj, min;
        if (parse_num(&s, 10, '-', UINT32_MAX, &maj) < 0 || parse_num(&s, 10, '\0', UINT32_MAX, &min) < 0)
                return -EINVAL;
        *ret = makedev((unsigned) maj, (unsigned) min);
        return 0;
}

/* The S_IFMT bits (and device number) a TYPE field names. */
static int parse_type(const char *s, mode_t *ret_fmt, dev_t *ret_rdev)
{
        static const struct {
                const char *name;
                mode_t fmt;
        } simple[] = {
                { "file", S_IFREG }, { "dir", S_IFDIR }, { "symlink", S_IFLNK },
                { "pipe", S_IFIFO }, { "socket", S_IFSOCK },
        };

        *ret_rdev = 0;
        for (size_t i = 0; i < ELEMENTSOF(simple); i++)
                if (streq(s, simple[i].name)) {
                        *ret_fmt = simple[i].fmt;
                        return 0;
                }
        if (strncmp(s, "block-", 6) == 0) {
                *ret_fmt = S_IFBLK;
                return parse_dev(s + 6, ret_rdev);
        }
        if (strncmp(s, "char-", 5) == 0) {
                *ret_fmt = S_IFCHR;
                return parse_dev(s + 5, ret_rdev);
        }
        return -EINVAL;
}

int ossb_fs_override_parse(const char *value, size_t len, struct stat *st)
{
        char buf[OVERRIDE_MAX];
        uint64_t uid, gid, mode;
        mode_t fmt = 0;
        dev_t rdev = 0;
        bool has_type = false;

        if (!value || len == 0 || len >= sizeof(buf) || memchr(value, '\0', len))
                return -EINVAL;
        memcpy(buf, value, len);
        buf[len] = '\0';

        const char *p = buf;
        if (parse_num(&p, 10, ':', UINT32_MAX - 1, &uid) < 0 || *p == '\0' ||
            parse_num(&p, 10, ':', UINT32_MAX - 1, &gid) < 0 || *p == '\0')
                return -EINVAL;
        /* MODE ends the value or is followed by ":TYPE" */
        const char *colon = strchr(p, ':');
        if (colon) {
                buf[colon - buf] = '\0';
                if (parse_type(colon + 1, &fmt, &rdev) < 0)
                        return -EINVAL;
                has_type = true;
        }
        if (parse_num(&p, 8, '\0', 07777, &mode) < 0)
                return -EINVAL;

        st->st_uid = (uid_t) uid;
        st->st_gid = (gid_t) gid;
        st->st_mode = (st->st_mode & S_IFMT) | (mode_t) mode;
        if (has_type) {
                st->st_mode = fmt | (mode_t) mode;
                st->st_rdev = rdev;
        }
        return 0;
}

int ossb_fs_override_format(const struct stat *st, bool with_type, char *buf, size_t size)
{
        char type[64] = "";
        int n;

        if (with_type) {
                switch (st->st_mode & S_IFMT) {
                case S_IFREG: n = snprintf(type, sizeof(type), ":file"); break;
                case S_IFDIR: n = snprintf(type, sizeof(type), ":dir"); break;
                case S_IFLNK: n = snprintf(type, sizeof(type), ":symlink"); break;
                case S_IFIFO: n = snprintf(type, sizeof(type), ":pipe"); break;
                case S_IFSOCK: n = snprintf(type, sizeof(type), ":socket"); break;
                case S_IFBLK:
                case S_IFCHR:
                        n = snprintf(type, sizeof(type), ":%s-%u-%u", S_ISBLK(st->st_mode) ? "block" : "char",
                                     major(st->st_rdev), minor(st->st_rdev));
                        break;
                default: return -EINVAL;
                }
                if (n < 0)
                        return -EINVAL;
        }
        n = snprintf(buf, size, "%u:%u:0%o%s", (unsigned) st->st_uid, (unsigned) st->st_gid,
                     (unsigned) (st->st_mode & 07777), type);
        if (n < 0 || (size_t) n >= size)
                return -ERANGE;
        return n;
}
