/* common/log.h - the one log sink: levels, text or JSON lines, on stderr.
 *
 * Owns: the process-wide log level and format.  Library code logs at debug level only;
 * the CLI logs what the user should see.  Never log secrets.
 */
#ifndef OSSB_COMMON_LOG_H
#define OSSB_COMMON_LOG_H

#include <stdbool.h>

enum ossb_log_level {
        OSSB_LOG_ERROR = 0,
        OSSB_LOG_WARN,
        OSSB_LOG_INFO,
        OSSB_LOG_DEBUG,
};

void ossb_log_setup(enum ossb_log_level level, bool json);
enum ossb_log_level ossb_log_get_level(void);
bool ossb_log_is_json(void);
void ossb_log(enum ossb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) ossb_log(OSSB_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) ossb_log(OSSB_LOG_WARN, __VA_ARGS__)
#define log_info(...) ossb_log(OSSB_LOG_INFO, __VA_ARGS__)
#define log_debug(...) ossb_log(OSSB_LOG_DEBUG, __VA_ARGS__)

#endif
