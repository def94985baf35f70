/* common/interrupt.h - SIGINT/SIGTERM turned into a flag that long work polls, so that an
 * interrupted build stops at the next step boundary and still removes its work directory and
 * temp files (nothing half-written is left looking complete).
 *
 * Owns: the process-wide "interrupted" flag and the handlers that set it.
 */
#ifndef OSSB_COMMON_INTERRUPT_H
#define OSSB_COMMON_INTERRUPT_H

#include <stdbool.h>

/* Install the handlers (first signal sets the flag; a second one of the same kind is fatal,
 * as users expect from a repeated Ctrl-C). */
int ossb_interrupt_setup(void);
/* The signal number that interrupted us, or 0. */
int ossb_interrupted(void);

#endif
