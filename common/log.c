/* common/log.c - see log.h. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/log.h"

static enum ossb_log_level log_level = OSSB_LOG_INFO;
static bool log_json;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void ossb_log_setup(enum ossb_log_level level, bool json)
{
        log_level = level;
        log_json = json;
}

enum ossb_log_level ossb_log_get_level(void)
{
        return log_level;
}

bool ossb_log_is_json(void)
{
        return log_json;
}

static void log_emit_json(enum ossb_log_level level, const char *msg)
{
        struct timespec ts;
        char when[64];
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ", ts.tv_nsec / 1000000);

        json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "time", json_object_new_string(when));
        json_object_object_add(o, "level", json_object_new_string(level_names[level]));
        json_object_object_add(o, "msg", json_object_new_string(msg));
        fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

void ossb_log(enum ossb_log_level level, const char *fmt, ...)
{
        if (level > log_level)
                return;

        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;

        if (log_json)
                log_emit_json(level, msg);
        else if (level == OSSB_LOG_INFO)
                fprintf(stderr, "%s\n", msg);
        else
                fprintf(stderr, "%s: %s\n", level_names[level], msg);
        free(msg);
}
