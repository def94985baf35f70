/* common/error.c - see error.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static int error_vset(struct ossb_error **err, int exit_code, int code, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));
static int error_vset(struct ossb_error **err, int exit_code, int code, const char *fmt, va_list ap)
{
        if (code >= 0)
                code = -EIO;
        if (!err || *err)
                return code;

        struct ossb_error *e = calloc(1, sizeof(*e));
        if (!e)
                return code;
        e->code = code;
        e->exit_code = exit_code;
        if (vasprintf(&e->msg, fmt, ap) < 0)
                e->msg = NULL;
        *err = e;
        return code;
}

int ossb_error_set(struct ossb_error **err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = error_vset(err, OSSB_EXIT_INTERNAL, code, fmt, ap);
        va_end(ap);
        return r;
}

int ossb_error_setx(struct ossb_error **err, int exit_code, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = error_vset(err, exit_code, code, fmt, ap);
        va_end(ap);
        return r;
}

int ossb_error_wrap(struct ossb_error **err, const char *fmt, ...)
{
        if (!err || !*err)
                return -EIO;

        char *ctx = NULL, *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&ctx, fmt, ap);
        va_end(ap);
        if (r < 0)
                return (*err)->code;
        if (asprintf(&msg, "%s: %s", ctx, (*err)->msg ? (*err)->msg : "(no message)") < 0) {
                free(ctx);
                return (*err)->code;
        }
        free(ctx);
        free((*err)->msg);
        (*err)->msg = msg;
        return (*err)->code;
}

void ossb_error_set_exit(struct ossb_error **err, int exit_code)
{
        if (err && *err)
                (*err)->exit_code = exit_code;
}

void ossb_error_free(struct ossb_error *e)
{
        if (!e)
                return;
        free(e->msg);
        free(e);
}
