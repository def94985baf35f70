/* engine/progress.c - step progress on stderr: plain lines (BuildKit's "#N ..." style), the
 * same with colour and timings on a terminal, or JSON events (--progress=json). */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "engine/build-internal.h"
#include "engine/replay.h"
#include "fuse/source-remote.h"

int ossb_progress_mode_parse(const char *s, enum ossb_progress_mode *ret)
{
        static const struct {
                const char *name;
                enum ossb_progress_mode mode;
        } modes[] = {
                { "auto", OSSB_PROGRESS_AUTO }, { "plain", OSSB_PROGRESS_PLAIN }, { "tty", OSSB_PROGRESS_TTY },
                { "json", OSSB_PROGRESS_JSON }, { "quiet", OSSB_PROGRESS_QUIET },
        };
        for (size_t i = 0; i < ELEMENTSOF(modes); i++)
                if (streq(s, modes[i].name)) {
                        *ret = modes[i].mode;
                        return 0;
                }
        return -1;
}

enum ossb_display_mode ossb_progress_display_mode(enum ossb_progress_mode m)
{
        switch (m) {
        case OSSB_PROGRESS_JSON:
                return OSSB_DISPLAY_JSON;
        case OSSB_PROGRESS_QUIET:
                return OSSB_DISPLAY_QUIET;
        case OSSB_PROGRESS_TTY:
                return OSSB_DISPLAY_TTY;
        case OSSB_PROGRESS_PLAIN:
                return OSSB_DISPLAY_PLAIN;
        default:
                return isatty(STDERR_FILENO) ? OSSB_DISPLAY_TTY : OSSB_DISPLAY_PLAIN;
        }
}

int64_t ossb_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void emit_json(int id, const char *status, const char *label, const char *text, double secs)
{
        json_object *o = json_object_new_object();
        if (!o)
                return;
        json_object_object_add(o, "id", json_object_new_int(id));
        json_object_object_add(o, "status", json_object_new_string(status));
        if (label)
                json_object_object_add(o, "stage", json_object_new_string(label));
        if (text)
                json_object_object_add(o, "name", json_object_new_string(text));
        if (secs >= 0)
                json_object_object_add(o, "duration_s", json_object_new_double(secs));
        fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

int ossb_progress_start(struct build *b, const char *label, const char *text)
{
        int id = __atomic_add_fetch(&b->progress.next_id, 1, __ATOMIC_SEQ_CST);
        switch (b->progress.mode) {
        case OSSB_PROGRESS_QUIET:
                break;
        case OSSB_PROGRESS_JSON:
                emit_json(id, "started", label, text, -1);
                break;
        case OSSB_PROGRESS_TTY:
                fprintf(stderr, "\033[1m#%d [%s] %s\033[0m\n", id, label, text);
                break;
        default:
                fprintf(stderr, "#%d [%s] %s\n", id, label, text);
        }
        return id;
}

void ossb_progress_note(struct build *b, int id, const char *fmt, ...)
{
        if (b->progress.mode == OSSB_PROGRESS_QUIET)
                return;
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        if (b->progress.mode == OSSB_PROGRESS_JSON) {
                json_object *o = json_object_new_object();
                if (!o)
                        return;
                json_object_object_add(o, "id", json_object_new_int(id));
                json_object_object_add(o, "status", json_object_new_string("log"));
                json_object_object_add(o, "msg", json_object_new_string(msg));
                fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
                return;
        }
        fprintf(stderr, "#%d %s\n", id, msg);
}

void ossb_progress_done(struct build *b, int id, int64_t start_ns, bool failed)
{
        double secs = (double) (ossb_now_ns() - start_ns) / 1e9;
        switch (b->progress.mode) {
        case OSSB_PROGRESS_QUIET:
                break;
        case OSSB_PROGRESS_JSON:
                emit_json(id, failed ? "error" : "done", NULL, NULL, secs);
                break;
        case OSSB_PROGRESS_TTY:
                fprintf(stderr, "#%d %s%s %.1fs\033[0m\n", id, failed ? "\033[31m" : "\033[34m", failed ? "ERROR" : "DONE",
                        secs);
                break;
        default:
                fprintf(stderr, "#%d %s %.1fs\n", id, failed ? "ERROR" : "DONE", secs);
        }
}

void ossb_progress_lazy(struct build *b, const char *name, const char *digest, uint64_t fetched, int64_t size,
                        uint64_t chunks, uint64_t cache_hits)
{
        double pct = size > 0 ? 100.0 * (double) fetched / (double) size : 0;
        if (b->progress.mode == OSSB_PROGRESS_QUIET)
                return;
        if (b->progress.mode == OSSB_PROGRESS_JSON) {
                json_object *o = json_object_new_object();
                if (!o)
                        return;
                json_object_object_add(o, "status", json_object_new_string("lazy"));
                json_object_object_add(o, "name", json_object_new_string(name));
                json_object_object_add(o, "layer", json_object_new_string(digest));
                json_object_object_add(o, "fetched_bytes", json_object_new_int64((int64_t) fetched));
                json_object_object_add(o, "size", json_object_new_int64(size));
                json_object_object_add(o, "chunks", json_object_new_int64((int64_t) chunks));
                json_object_object_add(o, "cache_hits", json_object_new_int64((int64_t) cache_hits));
                fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
                return;
        }
        fprintf(stderr, "lazy: %s: fetched %" PRIu64 " of %" PRId64 " bytes (%.2f%%), %" PRIu64 " chunks, %" PRIu64
                        " from the chunk cache\n", name, fetched, size, pct, chunks, cache_hits);
}

/* ---- record and replay (engine/replay.c) ---- */

static void emit_obj(json_object *o)
{
        fprintf(stderr, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

void ossb_progress_replay_start(struct build *b, const char *image, const char *found_by, uint64_t files,
                                uint64_t bytes, uint64_t compressed)
{
        if (b->progress.mode == OSSB_PROGRESS_QUIET)
                return;
        if (b->progress.mode == OSSB_PROGRESS_JSON) {
                json_object *o = json_object_new_object();
                if (!o)
                        return;
                json_object_object_add(o, "status", json_object_new_string("replay"));
                json_object_object_add(o, "phase", json_object_new_string("start"));
                json_object_object_add(o, "image", json_object_new_string(image));
                json_object_object_add(o, "record", json_object_new_string(found_by));
                json_object_object_add(o, "files", json_object_new_int64((int64_t) files));
                json_object_object_add(o, "bytes", json_object_new_int64((int64_t) bytes));
                json_object_object_add(o, "compressed_bytes", json_object_new_int64((int64_t) compressed));
                emit_obj(o);
                return;
        }
        fprintf(stderr, "replay: prefetching %" PRIu64 " files (%" PRIu64 " bytes, %" PRIu64 " compressed) recorded by "
                        "an earlier build %s: %s\n", files, bytes, compressed, found_by, image);
}

void ossb_progress_replay_done(struct build *b, const char *name, const char *digest,
                               const struct ossb_fs_remote_replay_stats *st, uint64_t prefetched_bytes)
{
        if (b->progress.mode == OSSB_PROGRESS_QUIET)
                return;
        if (b->progress.mode == OSSB_PROGRESS_JSON) {
                json_object *o = json_object_new_object();
                if (!o)
                        return;
                json_object_object_add(o, "status", json_object_new_string("replay"));
                json_object_object_add(o, "phase", json_object_new_string("done"));
                json_object_object_add(o, "name", json_object_new_string(name));
                json_object_object_add(o, "layer", json_object_new_string(digest));
                json_object_object_add(o, "files", json_object_new_int64((int64_t) st->files));
                json_object_object_add(o, "bytes", json_object_new_int64((int64_t) st->file_bytes));
                json_object_object_add(o, "chunks", json_object_new_int64((int64_t) st->chunks));
                json_object_object_add(o, "fetched_bytes", json_object_new_int64((int64_t) st->fetched_bytes));
                json_object_object_add(o, "fetched_chunks", json_object_new_int64((int64_t) st->fetched_chunks));
                json_object_object_add(o, "cache_hits", json_object_new_int64((int64_t) st->cache_hits));
                json_object_object_add(o, "skipped_chunks", json_object_new_int64((int64_t) st->skipped_chunks));
                json_object_object_add(o, "prefetched_bytes", json_object_new_int64((int64_t) prefetched_bytes));
                json_object_object_add(o, "stopped", json_object_new_boolean(st->stopped));
                json_object_object_add(o, "failed", json_object_new_boolean(st->failed));
                emit_obj(o);
                return;
        }
        fprintf(stderr, "replay: %s: %" PRIu64 " files, %" PRIu64 " chunks: %" PRIu64 " fetched (%" PRIu64 " bytes), %" PRIu64
                        " from the chunk cache, %" PRIu64 " left to reads%s%s\n", name, st->files, st->chunks,
                st->fetched_chunks, st->fetched_bytes, st->cache_hits, st->skipped_chunks,
                st->stopped ? " (stopped at the end of the build)" : "", st->failed ? " (a fetch failed)" : "");
}
