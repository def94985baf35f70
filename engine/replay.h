/* engine/replay.h - record and replay of the files a build's steps read from lazily pulled
 * base layers (issue 6): the next build of the same Dockerfile prefetches them in the
 * background as soon as its FROM resolves, even when the steps themselves miss the cache.
 *
 * Owns: the replay records under CACHE_DIR/replay/ and their format, their keys, their
 * pruning, and the build's use of them (which lazy layers a record's paths are fetched from,
 * the step windows, the progress events).
 *
 * Records (one file per key, CACHE_DIR/replay/<key hex>, written to a temp name, fsynced and
 * renamed; text, one item a line, fields separated by one space, every free text escaped as
 * %XX for bytes below 0x21, '%' and 0x7f):
 *
 *   ossb-replay 1
 *   key <64 hex: the key the file is stored under>
 *   created <unix seconds>
 *   capped <0|1: paths were left out to stay within the caps>
 *   step <id> <label>          a step's section: id says which step ("STAGE/INSTRUCTION"),
 *   path <path>                  label is for people; the paths it read first (relative to
 *   ...                          the root, first use first)
 *   end <steps> <paths>        the counts, checked: a truncated file is not a record
 *
 * Keys (sha256 of length-prefixed parts after a domain string):
 *   - per Dockerfile: the context dir and Dockerfile (real paths), --target, --platform and
 *     the base image reference as normalised by the pull: a changed RUN line, build arg or
 *     base image digest keeps the key;
 *   - per base image (the fallback when the Dockerfile has no record): the image's manifest
 *     digest, holding the union of what builds on that base read (their sections, ids
 *     prefixed by the Dockerfile key).
 * A new record replaces the sections of the old one whose ids it has and keeps the others
 * (a step that hit the step cache read nothing this time: what it read before stays).
 *
 * Caps: OSSB_REPLAY_MAX_PATHS paths and OSSB_REPLAY_MAX_FILE bytes per record (merging keeps
 * the newest sections first; what does not fit is dropped and the record says capped).
 * A record that fails any check (hostile or damaged) is ignored with a warning.  Only layers
 * with a TOC (fuse/source-remote.h) are recorded and replayed, not those read through a
 * checkpoint index (engine/lazy-index.c). */
#ifndef OSSB_ENGINE_REPLAY_H
#define OSSB_ENGINE_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define OSSB_REPLAY_MAX_PATHS 100000
#define OSSB_REPLAY_MAX_FILE (8 * 1024 * 1024)
#define OSSB_REPLAY_MAX_STEPS 4096
#define OSSB_REPLAY_MAX_PATH_LEN 4096
#define OSSB_REPLAY_MAX_TEXT 1024 /* a step's id or label (longer labels are cut) */

/* ---- the record ---- */

struct ossb_replay_step {
        char *id;      /* which step: records merge by it */
        char *label;   /* for people */
        char **paths;  /* NULL-terminated, each once per step */
        size_t n_paths;
        struct strset *seen; /* internal (replay.c): the step's paths, for dedup */
};

struct ossb_replay_record {
        struct ossb_replay_step *steps;
        size_t n_steps;
        size_t n_paths;  /* over all steps */
        size_t bytes;    /* the paths' share of the file (for OSSB_REPLAY_MAX_FILE) */
        bool capped;
        int64_t created; /* unix seconds (0: not saved yet) */
};

/* NULL on ENOMEM. */
struct ossb_replay_record *ossb_replay_record_new(void);
void ossb_replay_record_free(struct ossb_replay_record *r); /* accepts NULL */

/* Add `paths` (NULL-terminated) to step `id` (a new section at the end when there is none;
 * label kept from the first add).  Paths already in that step, and invalid ones (absolute,
 * empty, with "." or ".." or empty components, too long) are skipped; beyond the caps they
 * are dropped and r->capped set.  -ENOMEM (r unchanged then, but for paths already added). */
int ossb_replay_record_add(struct ossb_replay_record *r, const char *id, const char *label, char *const *paths);

/* Append the sections of `old` whose ids `r` lacks (ids prefixed with `prefix` first, which
 * may be NULL), within the caps (r->capped when some did not fit). */
int ossb_replay_record_merge(struct ossb_replay_record *r, const struct ossb_replay_record *old, const char *prefix);

/* Every path of the record once, in section order (NULL-terminated; ossb_strv_free). */
int ossb_replay_record_paths(const struct ossb_replay_record *r, char ***ret);

/* The file's bytes for `key` (caller frees *ret); -ENOMEM. */
int ossb_replay_record_format(const struct ossb_replay_record *r, const char *key, int64_t created, char **ret,
                              size_t *ret_len);
/* Parse a file; -EBADMSG (with a message saying what is wrong) for anything but a complete,
 * valid record stored under `key`. */
int ossb_replay_record_parse(const char *data, size_t len, const char *key, struct ossb_replay_record **ret,
                             struct ossb_error **err);

/* ---- keys and storage ---- */

/* sha256 hex of the domain and each part (NULL parts count as empty), length-prefixed. */
int ossb_replay_key(const char *domain, const char *const *parts, size_t n, char ret[65]);

/* Load CACHE_DIR/replay/<key>: -ENOENT when there is none, -EBADMSG when it is not a valid
 * record (the caller ignores it). */
int ossb_replay_load(const char *cache_dir, const char *key, struct ossb_replay_record **ret, struct ossb_error **err);
/* Store atomically (tmp, fsync, rename; CACHE_DIR/replay created 0700). */
int ossb_replay_save(const char *cache_dir, const char *key, const struct ossb_replay_record *r,
                     struct ossb_error **err);
/* Remove records not written for max_age_s seconds, then the oldest beyond max_records (0:
 * no count limit), and temp files older than an hour.  *ret_removed (may be NULL). */
int ossb_replay_prune(const char *cache_dir, int64_t max_age_s, size_t max_records, size_t *ret_removed,
                      struct ossb_error **err);

#define OSSB_REPLAY_PRUNE_AGE (30 * 24 * 3600)
#define OSSB_REPLAY_PRUNE_COUNT 4096

/* ---- the build's use (engine-internal) ---- */

struct build;
struct stage_state;
struct ossb_df_inst;
struct ossb_pulled_image;
struct lazy_layer;
struct replay_group;
struct ossb_fs_source;
struct ossb_fs_remote_replay_stats;

/* FROM resolved image `p`, layers[i] its lazily read layers (NULL: pulled in full), with
 * b->lock held: remember the group for recording and, when a record exists (and neither
 * --no-cache nor --lazy-replay=off), start the background replay of its paths.  Never fails
 * the build (problems are logged). */
void ossb_replay_image(struct build *b, const struct ossb_pulled_image *p, struct lazy_layer **layers);
/* A step ended: what the lazy layers served since the last boundary becomes its section. */
void ossb_replay_step_done(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst);
/* The build's steps are over: stop the replays, report them, write the records. */
void ossb_replay_finish(struct build *b);
/* Stop and free every group (before the lazy layers go). */
void ossb_replay_free_all(struct build *b);

/* lazy.c, for replay.c */
struct ossb_fs_source *ossb_lazy_source(struct lazy_layer *l);
const char *ossb_lazy_name(const struct lazy_layer *l);
const char *ossb_lazy_digest(const struct lazy_layer *l);
struct replay_group **ossb_lazy_replay_group(struct lazy_layer *l);

/* progress.c */
void ossb_progress_replay_start(struct build *b, const char *image, const char *found_by, uint64_t files,
                                uint64_t bytes, uint64_t compressed);
void ossb_progress_replay_done(struct build *b, const char *name, const char *digest,
                               const struct ossb_fs_remote_replay_stats *st, uint64_t prefetched_bytes);

#endif
