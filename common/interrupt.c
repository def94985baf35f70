/* common/interrupt.c - see interrupt.h. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "common/interrupt.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
        if (interrupted) {
                /* second signal: give up at once, with the default action */
                signal(sig, SIG_DFL);
                raise(sig);
                return;
        }
        interrupted = sig;
}

int ossb_interrupt_setup(void)
{
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
                return -errno;
        return 0;
}

int ossb_interrupted(void)
{
        return interrupted;
}
