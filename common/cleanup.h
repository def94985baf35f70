/* common/cleanup.h - scope-bound cleanup attributes and ownership transfer helpers.
 *
 * Owns: nothing; the vocabulary (systemd style) every module uses:
 *   _cleanup_free_ char *s = ...;      freed at scope exit
 *   _cleanup_close_ int fd = ...;      closed at scope exit (if >= 0)
 *   return TAKE_PTR(s);                hand ownership to the caller
 */
#ifndef OSSB_COMMON_CLEANUP_H
#define OSSB_COMMON_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void ossb_freep(void *p)
{
        free(*(void **) p);
}

static inline void ossb_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void ossb_fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

#define _cleanup_free_ _cleanup_(ossb_freep)
#define _cleanup_close_ _cleanup_(ossb_closep)
#define _cleanup_fclose_ _cleanup_(ossb_fclosep)

/* Define a cleanup function for a pointer type with a NULL-accepting destructor. */
#define OSSB_DEFINE_CLEANUP(type, func)                 \
        static inline void func##p(type *p)             \
        {                                               \
                if (*p)                                 \
                        func(*p);                       \
        }

#define TAKE_PTR(p)                                     \
        ({                                              \
                __typeof__(p) _tp_ = (p);               \
                (p) = NULL;                             \
                _tp_;                                   \
        })

#define TAKE_FD(fd)                                     \
        ({                                              \
                int _tfd_ = (fd);                       \
                (fd) = -1;                              \
                _tfd_;                                  \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define streq(a, b) (strcmp((a), (b)) == 0)

#endif
