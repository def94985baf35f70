/* registry/progress.h - showing blob transfers: plain lines, a live status line on a
 * terminal (bytes and speed), or JSON events.
 *
 * Owns: struct ossb_transfer_display, fed by the client's ossb_transfer_cb; it writes to
 * stderr and keeps totals for the summary line.
 */
#ifndef OSSB_REGISTRY_PROGRESS_H
#define OSSB_REGISTRY_PROGRESS_H

#include <stdint.h>

#include "registry/client.h"

enum ossb_display_mode {
        OSSB_DISPLAY_PLAIN = 0,
        OSSB_DISPLAY_TTY,
        OSSB_DISPLAY_JSON,
        OSSB_DISPLAY_QUIET,
};

struct ossb_transfer_display {
        enum ossb_display_mode mode;
        int64_t started_ns;
        int64_t last_draw_ns;
        int64_t bytes;      /* completed blobs' bytes */
        int64_t active_done; /* bytes of blobs in flight */
        int blobs_done, blobs_skipped, blobs_mounted, retries;
        bool line_open;     /* TTY: a status line is on screen */
        struct {
                char digest[72];
                int64_t done, total;
        } active[16];
};

void ossb_transfer_display_init(struct ossb_transfer_display *d, enum ossb_display_mode mode);
/* The ossb_transfer_cb: pass the display as userdata. */
void ossb_transfer_display_event(void *userdata, const struct ossb_transfer_event *ev);
/* Clear the TTY line and print a summary ("pulled 3 blobs, 12.3 MiB in 1.2 s, 1 already
 * present"), unless quiet. `verb` is "pulled" or "pushed". */
void ossb_transfer_display_finish(struct ossb_transfer_display *d, const char *verb);

#endif
