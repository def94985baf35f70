/* engine/run-mounts.h - RUN --mount: the parser of one mount spec (BuildKit's syntax and
 * rules), the parser of a --secret value, and the preparation of a RUN step's mounts for the
 * sandbox (engine/exec/).
 *
 * Owns: struct ossb_run_mount (a parsed spec) and struct ossb_run_mounts (everything one RUN
 * step's mounts hold while it runs: cache-mount locks, secret files, temporary copies).
 *
 * The parser follows BuildKit's frontend/dockerfile/instructions (commands_runmount.go): the
 * value is one CSV record ("a,b" fields, "\"x,y\"" quoting, "\"\"" for a quote, a bare quote
 * inside an unquoted field is an error); each field is `key=value` (keys case-insensitive;
 * `type` and `sharing` values too) or a bare flag (`ro`, `readonly`, `rw`, `readwrite`,
 * `required`); keys: type (bind, cache, tmpfs, secret, ssh; default bind), target/dst/
 * destination, source/src, from, ro/readonly, rw/readwrite (Go's ParseBool values), id,
 * sharing (shared, private, locked; cache only), uid, gid (decimal, 32 bits), mode (octal, 32
 * bits; cache, secret and ssh only), required (secret and ssh only, and only after
 * `type=` in the record, as BuildKit checks it), size (tmpfs only, Docker's RAMInBytes), env
 * (BuildKit 0.13: a secret exposed as an environment variable).  A later key overrides an
 * earlier one.  `from` may not use variables (BuildKit: "define alias stage instead"); every
 * other value is expanded with the step's environment when an expander is given.  Read-only
 * defaults: bind and secret mounts are read-only, cache and tmpfs writable.
 */
#ifndef OSSB_ENGINE_RUN_MOUNTS_H
#define OSSB_ENGINE_RUN_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

enum ossb_mount_type {
        OSSB_MOUNT_BIND = 0,
        OSSB_MOUNT_CACHE,
        OSSB_MOUNT_TMPFS,
        OSSB_MOUNT_SECRET,
        OSSB_MOUNT_SSH,
};

enum ossb_mount_sharing {
        OSSB_SHARING_UNSET = 0, /* cache mounts then share (BuildKit's default) */
        OSSB_SHARING_SHARED,
        OSSB_SHARING_PRIVATE,
        OSSB_SHARING_LOCKED,
};

/* One parsed --mount value.  Strings are owned, NULL when the key was not given. */
struct ossb_run_mount {
        enum ossb_mount_type type;
        char *target;   /* as written (expanded): relative targets are under WORKDIR */
        char *source;
        char *from;     /* stage name or index, or image; NULL or "": the build context */
        char *id;       /* cache id, secret id, ssh id */
        char *env;      /* secret: the variable to set ("" when written `env=`) */
        bool readonly;
        bool required;
        enum ossb_mount_sharing sharing;
        bool uid_set, gid_set, mode_set;
        uint32_t uid, gid, mode;
        int64_t size;   /* tmpfs size= in bytes, 0 when not given */
};

/* Expand `word` (a value of the spec); *ret is newly allocated.  Returns 0 or -errno with err
 * set. */
typedef int (*ossb_run_mount_expand_fn)(void *userdata, const char *word, char **ret, struct ossb_error **err);

/* Parse one --mount value.  `expand` may be NULL (values as written).  Errors carry
 * OSSB_EXIT_USAGE and name the offending field; *ret is untouched on failure and must be
 * cleared with ossb_run_mount_clear on success. */
int ossb_run_mount_parse(const char *spec, ossb_run_mount_expand_fn expand, void *userdata,
                         struct ossb_run_mount *ret, struct ossb_error **err);
void ossb_run_mount_clear(struct ossb_run_mount *m);
const char *ossb_run_mount_type_name(enum ossb_mount_type t);

/* Split a one-line CSV record as Go's encoding/csv (and BuildKit's csvvalue) reads it: a
 * trailing newline is dropped, an empty line is an error.  *ret is a NULL-terminated vector. */
int ossb_csv_fields(const char *line, char ***ret, struct ossb_error **err);

/* Docker's RAMInBytes: "1024", "64k", "1.5g", "10 MiB", "2mb" (binary multiples, case
 * insensitive).  -EINVAL for anything else, -ERANGE past int64. */
int ossb_parse_ram_size(const char *s, int64_t *ret);

/* A --secret value (buildx's syntax): "id=ID[,src=FILE|source=FILE][,env=VAR][,type=file|env]".
 * type=env with src= means the variable src names.  Neither src nor env: $ID when that
 * variable is set, else the file ID (as BuildKit's secrets provider). */
struct ossb_secret_spec {
        char *id;
        char *file; /* read at mount time; NULL when from the environment */
        char *env;  /* variable name; NULL when from a file */
};
int ossb_secret_spec_parse(const char *spec, struct ossb_secret_spec *ret, struct ossb_error **err);
void ossb_secret_spec_clear(struct ossb_secret_spec *s);
#define OSSB_SECRET_MAX_SIZE (500 * 1024) /* BuildKit's MaxSecretSize */

/* The `from=` values (as written, non-empty) of a RUN's mounts, for planning which stages a
 * RUN needs; a mount that does not parse is skipped (the RUN reports it).  *ret is a
 * NULL-terminated vector (possibly empty). */
int ossb_run_mounts_from_names(char *const *specs, char ***ret);

/* ---- preparation (engine/run-mounts-prepare.c) ---- */

struct build;
struct stage_state;
struct ossb_df_inst;
struct ossb_exec_mount;

struct ossb_run_mounts;

/* Parse and prepare the mounts of RUN `inst` in stage `s`: sources resolved inside their tree
 * (the context, a finished stage's root, or an image), cache directories under
 * CACHE_DIR/mounts/cache locked as their sharing mode says, secrets written to files in `dir`
 * (a private directory, created here, removed by ossb_run_mounts_free), read-write binds
 * copied there.  `cwd` is the step's working directory (relative targets).  Errors name the
 * mount. */
int ossb_run_mounts_prepare(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, const char *cwd,
                            const char *dir, struct ossb_run_mounts **ret, struct ossb_error **err);
/* The exec mounts, in the order written (borrowed). */
const struct ossb_exec_mount *ossb_run_mounts_exec(const struct ossb_run_mounts *m, size_t *ret_n);
/* "NAME=value" entries for secrets mounted as environment variables (borrowed; their memory is
 * wiped by ossb_run_mounts_free). */
char *const *ossb_run_mounts_env(const struct ossb_run_mounts *m);
/* Release cache locks, wipe and remove secrets and copies.  Accepts NULL. */
void ossb_run_mounts_free(struct ossb_run_mounts *m);

#endif
