/* registry/progress.c - see progress.h. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "registry/progress.h"

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *human(int64_t bytes, char *buf, size_t size)
{
        if (bytes >= 1024 * 1024)
                snprintf(buf, size, "%.1f MiB", (double) bytes / (1024.0 * 1024.0));
        else if (bytes >= 1024)
                snprintf(buf, size, "%.1f KiB", (double) bytes / 1024.0);
        else
                snprintf(buf, size, "%lld B", (long long) bytes);
        return buf;
}

void ossb_transfer_display_init(struct ossb_transfer_display *d, enum ossb_display_mode mode)
{
        memset(d, 0, sizeof(*d));
        d->mode = mode;
        d->started_ns = now_ns();
}

static const char *kind_name(enum ossb_transfer_kind k)
{
        static const char *const names[] = { "start", "progress", "retry", "done", "exists", "mounted" };
        return (size_t) k < ELEMENTSOF(names) ? names[k] : "?";
}

static void emit_json(const struct ossb_transfer_event *ev)
{
        json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "transfer", json_object_new_string(ev->push ? "push" : "pull"));
        json_object_object_add(o, "status", json_object_new_string(kind_name(ev->kind)));
        if (ev->digest)
                json_object_object_add(o, "digest", json_object_new_string(ev->digest));
        json_object_object_add(o, "current", json_object_new_int64(ev->done));
        json_object_object_add(o, "total", json_object_new_int64(ev->total));
        if (ev->message)
                json_object_object_add(o, "message", json_object_new_string(ev->message));
        fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

/* The slot of a blob in flight (a new one for START), or NULL when all are taken. */
static int slot(struct ossb_transfer_display *d, const char *digest, bool create)
{
        int free_slot = -1;
        for (int i = 0; i < (int) ELEMENTSOF(d->active); i++) {
                if (d->active[i].digest[0] && digest && streq(d->active[i].digest, digest))
                        return i;
                if (!d->active[i].digest[0] && free_slot < 0)
                        free_slot = i;
        }
        if (!create || free_slot < 0 || !digest)
                return -1;
        snprintf(d->active[free_slot].digest, sizeof(d->active[free_slot].digest), "%s", digest);
        d->active[free_slot].done = d->active[free_slot].total = 0;
        return free_slot;
}

static void draw_tty(struct ossb_transfer_display *d, bool push)
{
        int64_t done = 0, total = 0;
        int n = 0;
        for (size_t i = 0; i < ELEMENTSOF(d->active); i++)
                if (d->active[i].digest[0]) {
                        done += d->active[i].done;
                        total += d->active[i].total;
                        n++;
                }
        double secs = (double) (now_ns() - d->started_ns) / 1e9;
        char a[32], b[32], c[32];
        double speed = secs > 0 ? (double) (d->bytes + done) / secs : 0;
        fprintf(stderr, "\r\033[K%s %d blob%s in flight %s / %s, %d done (%s/s)", push ? "pushing" : "pulling", n,
                n == 1 ? "" : "s", human(done, a, sizeof(a)), human(total, b, sizeof(b)), d->blobs_done,
                human((int64_t) speed, c, sizeof(c)));
        d->line_open = true;
}

static void line(struct ossb_transfer_display *d, const struct ossb_transfer_event *ev, const char *what)
{
        if (d->line_open) {
                fputs("\r\033[K", stderr);
                d->line_open = false;
        }
        if (ev->digest)
                fprintf(stderr, "%s %s: %s\n", ev->push ? "push" : "pull", ev->digest, what);
        else
                fprintf(stderr, "%s: %s\n", ev->push ? "push" : "pull", what);
}

static void account(struct ossb_transfer_display *d, const struct ossb_transfer_event *ev)
{
        int s = slot(d, ev->digest, ev->kind == OSSB_TRANSFER_START || ev->kind == OSSB_TRANSFER_PROGRESS);
        switch (ev->kind) {
        case OSSB_TRANSFER_START:
        case OSSB_TRANSFER_PROGRESS:
                if (s >= 0) {
                        d->active[s].done = ev->done;
                        d->active[s].total = ev->total;
                }
                break;
        case OSSB_TRANSFER_DONE:
                d->blobs_done++;
                d->bytes += ev->total;
                break;
        case OSSB_TRANSFER_EXISTS:
                d->blobs_skipped++;
                break;
        case OSSB_TRANSFER_MOUNTED:
                d->blobs_mounted++;
                break;
        case OSSB_TRANSFER_RETRY:
                d->retries++;
                break;
        }
        if (s >= 0 && ev->kind != OSSB_TRANSFER_START && ev->kind != OSSB_TRANSFER_PROGRESS &&
            ev->kind != OSSB_TRANSFER_RETRY)
                d->active[s].digest[0] = 0;
}

void ossb_transfer_display_event(void *userdata, const struct ossb_transfer_event *ev)
{
        struct ossb_transfer_display *d = userdata;
        account(d, ev);
        char size[32];
        switch (d->mode) {
        case OSSB_DISPLAY_QUIET:
                return;
        case OSSB_DISPLAY_JSON:
                if (ev->kind != OSSB_TRANSFER_PROGRESS || now_ns() - d->last_draw_ns > 1000000000) {
                        if (ev->kind == OSSB_TRANSFER_PROGRESS)
                                d->last_draw_ns = now_ns();
                        emit_json(ev);
                }
                return;
        case OSSB_DISPLAY_PLAIN:
        case OSSB_DISPLAY_TTY:
                break;
        }
        char what[160];
        switch (ev->kind) {
        case OSSB_TRANSFER_PROGRESS:
                if (d->mode == OSSB_DISPLAY_TTY && now_ns() - d->last_draw_ns > 100000000) {
                        d->last_draw_ns = now_ns();
                        draw_tty(d, ev->push);
                }
                return;
        case OSSB_TRANSFER_START:
                if (d->mode == OSSB_DISPLAY_TTY)
                        return;
                snprintf(what, sizeof(what), "started (%s)", human(ev->total, size, sizeof(size)));
                break;
        case OSSB_TRANSFER_DONE:
                snprintf(what, sizeof(what), "done (%s)", human(ev->total, size, sizeof(size)));
                break;
        case OSSB_TRANSFER_EXISTS:
                snprintf(what, sizeof(what), "%s", ev->push ? "already in the registry" : "already present");
                break;
        case OSSB_TRANSFER_MOUNTED:
                snprintf(what, sizeof(what), "mounted from another repository");
                break;
        case OSSB_TRANSFER_RETRY:
                snprintf(what, sizeof(what), "%s", ev->message ? ev->message : "retrying");
                break;
        default:
                return;
        }
        line(d, ev, what);
}

void ossb_transfer_display_finish(struct ossb_transfer_display *d, const char *verb)
{
        if (d->line_open) {
                fputs("\r\033[K", stderr);
                d->line_open = false;
        }
        if (d->mode == OSSB_DISPLAY_QUIET || d->mode == OSSB_DISPLAY_JSON)
                return;
        char size[32];
        double secs = (double) (now_ns() - d->started_ns) / 1e9;
        fprintf(stderr, "%s %d blob%s, %s in %.1f s", verb, d->blobs_done, d->blobs_done == 1 ? "" : "s",
                human(d->bytes, size, sizeof(size)), secs);
        if (d->blobs_skipped)
                fprintf(stderr, ", %d already there", d->blobs_skipped);
        if (d->blobs_mounted)
                fprintf(stderr, ", %d mounted", d->blobs_mounted);
        if (d->retries)
                fprintf(stderr, ", %d retr%s", d->retries, d->retries == 1 ? "y" : "ies");
        fputc('\n', stderr);
}
