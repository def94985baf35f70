/* common/error.h - the error object carried across module boundaries.
 *
 * Owns: struct ossb_error and the exit-code categories of the CLI.
 * A failing function sets the error once at the failure (ossb_error_set*), callers add
 * context on the way up (ossb_error_wrap), and only the CLI prints it.  A NULL `err`
 * argument means the caller does not want the message: the functions still return `code`.
 */
#ifndef OSSB_COMMON_ERROR_H
#define OSSB_COMMON_ERROR_H

#include <stdarg.h>

/* Process exit codes (documented in `ossb --help` and docs/). */
enum ossb_exit {
        OSSB_EXIT_OK = 0,
        OSSB_EXIT_BUILD = 1,    /* the build failed: missing COPY source, failing RUN */
        OSSB_EXIT_USAGE = 2,    /* bad command line or Dockerfile */
        OSSB_EXIT_REGISTRY = 3, /* registry or authentication error */
        OSSB_EXIT_INTERNAL = 4, /* internal or environment error */
};

struct ossb_error {
        int code;      /* negative errno */
        int exit_code; /* enum ossb_exit */
        char *msg;     /* owned */
};

/* Set *err (if err != NULL and *err is NULL) with exit code OSSB_EXIT_INTERNAL.
 * `code` must be a negative errno; returns it (a non-negative code becomes -EIO). */
int ossb_error_set(struct ossb_error **err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Same, with an explicit exit category. */
int ossb_error_setx(struct ossb_error **err, int exit_code, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Prefix the message of *err with context ("context: message"). Returns (*err)->code,
 * or -EIO if no error was set. */
int ossb_error_wrap(struct ossb_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Change the exit category of an error already set (e.g. a file error becomes a build error). */
void ossb_error_set_exit(struct ossb_error **err, int exit_code);

void ossb_error_free(struct ossb_error *e);

static inline void ossb_error_freep(struct ossb_error **e)
{
        if (*e)
                ossb_error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(ossb_error_freep)))

#endif
