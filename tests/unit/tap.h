/* tests/unit/tap.h - tiny TAP helpers for the unit tests.
 *
 * Each test program prints "ok N - name" / "not ok N - name" lines and exits non-zero when any
 * assertion failed (77 = skipped, as automake expects).  ASSERT prints the failing expression
 * with its file and line and fails the current test function only.
 */
#ifndef OSSB_TESTS_TAP_H
#define OSSB_TESTS_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_failed_total;
static int tap_count;
static int tap_current_failed;

#define ASSERT(expr)                                                                            \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "# %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr); \
                        tap_current_failed = 1;                                                 \
                        return;                                                                 \
                }                                                                               \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                      \
        do {                                                                                    \
                const char *_a = (a), *_b = (b);                                                \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                        \
                        fprintf(stderr, "# %s:%d: %s == %s failed:\n#   got      \"%s\"\n#   expected \"%s\"\n", \
                                __FILE__, __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); \
                        tap_current_failed = 1;                                                 \
                        return;                                                                 \
                }                                                                               \
        } while (0)

#define ASSERT_INTEQ(a, b)                                                                      \
        do {                                                                                    \
                long long _a = (long long) (a), _b = (long long) (b);                           \
                if (_a != _b) {                                                                 \
                        fprintf(stderr, "# %s:%d: %s == %s failed: got %lld, expected %lld\n",  \
                                __FILE__, __LINE__, #a, #b, _a, _b);                            \
                        tap_current_failed = 1;                                                 \
                        return;                                                                 \
                }                                                                               \
        } while (0)

#define RUN_TEST(fn)                                                                            \
        do {                                                                                    \
                tap_current_failed = 0;                                                         \
                fn();                                                                           \
                tap_count++;                                                                    \
                printf("%s %d - %s\n", tap_current_failed ? "not ok" : "ok", tap_count, #fn);   \
                tap_failed_total += tap_current_failed;                                         \
        } while (0)

#define TAP_END()                                                                               \
        do {                                                                                    \
                printf("1..%d\n", tap_count);                                                   \
                return tap_failed_total ? 1 : 0;                                                \
        } while (0)

#endif
