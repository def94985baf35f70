/* engine/dockerfile/instructions.h - typed instructions and stages from the parse
 * (BuildKit's frontend/dockerfile/instructions): flag validation per instruction, argument
 * counts and forms, stage splitting, ONBUILD trigger parsing.
 *
 * Owns: struct ossb_df_plan and everything in it (free with ossb_df_plan_free).  Strings are
 * NOT expanded: ARG/ENV expansion happens in the engine, per stage, at build time.  The plan
 * keeps borrowed pointers into the struct ossb_dockerfile it came from (`node`), which must
 * outlive it.  Errors are Dockerfile errors (OSSB_EXIT_USAGE) naming "<path>:<line>".
 */
#ifndef OSSB_ENGINE_DOCKERFILE_INSTRUCTIONS_H
#define OSSB_ENGINE_DOCKERFILE_INSTRUCTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "engine/dockerfile/parser.h"

enum ossb_df_kind {
        OSSB_DF_FROM = 0,
        OSSB_DF_RUN,
        OSSB_DF_CMD,
        OSSB_DF_LABEL,
        OSSB_DF_MAINTAINER,
        OSSB_DF_EXPOSE,
        OSSB_DF_ENV,
        OSSB_DF_ADD,
        OSSB_DF_COPY,
        OSSB_DF_ENTRYPOINT,
        OSSB_DF_VOLUME,
        OSSB_DF_USER,
        OSSB_DF_WORKDIR,
        OSSB_DF_ARG,
        OSSB_DF_ONBUILD,
        OSSB_DF_STOPSIGNAL,
        OSSB_DF_HEALTHCHECK,
        OSSB_DF_SHELL,
};

struct ossb_df_kv {
        char *key;
        char *value;    /* NULL for a bare `ARG name` */
};

/* A command of RUN/CMD/ENTRYPOINT/HEALTHCHECK: exec form (json, argv = items) or shell form
 * (argv[0] = the command string).  A RUN whose command is only heredocs has shell form with
 * the heredoc line as argv[0]. */
struct ossb_df_command {
        char **argv;
        bool json;
};

struct ossb_df_inst {
        enum ossb_df_kind kind;
        const struct ossb_df_instruction *node; /* borrowed: line numbers, original, heredocs */

        /* FROM */
        char *from_image;
        char *from_name;     /* AS name, lower-cased; NULL if none */
        char *from_platform; /* --platform, NULL if none */

        /* RUN, CMD, ENTRYPOINT, HEALTHCHECK CMD */
        struct ossb_df_command command;
        /* RUN flags (kept for the RUN issue) */
        char **run_mounts;    /* each --mount=... value */
        char *run_network;    /* --network value or NULL */
        char *run_security;   /* --security value or NULL */
        char **run_devices;   /* added: each --device=... value (BuildKit accepts it; raw) */

        /* ENV, LABEL, ARG (several pairs allowed) */
        struct ossb_df_kv *kvs;
        size_t n_kvs;

        /* EXPOSE ports, VOLUME paths, SHELL argv */
        char **words;

        /* USER, WORKDIR, STOPSIGNAL, MAINTAINER */
        char *str;

        /* COPY, ADD */
        char **sources;      /* source words as written (heredoc names appear as "<<EOF") */
        char *dest;
        char *copy_from;     /* --from */
        char *chown;         /* --chown */
        char *chmod;         /* --chmod */
        bool link;           /* --link */
        bool parents;        /* --parents */
        char **excludes;     /* --exclude (repeatable) */
        char *checksum;      /* ADD --checksum */
        bool keep_git_dir;   /* ADD --keep-git-dir */
        bool keep_git_dir_set; /* added: --keep-git-dir was given (BuildKit's *bool) */
        int unpack;          /* added: ADD --unpack: -1 not given, 0 false, 1 true */
        bool sources_json;   /* sources given in JSON form */

        /* HEALTHCHECK */
        bool hc_none;        /* HEALTHCHECK NONE */
        char *hc_interval;   /* raw durations ("30s"), NULL if not given */
        char *hc_timeout;
        char *hc_start_period;
        char *hc_start_interval;
        char *hc_retries;    /* raw integer text */
        /* (added) Optional string flags that were not given, or given empty ("--from="),
         * are NULL: BuildKit treats an empty value as unset.  Durations and retries are
         * validated as BuildKit does (time.ParseDuration, >= 1ms unless 0; retries an int32
         * >= 0) but kept as written.  EXPOSE words are sorted (BuildKit's slices.Sort); VOLUME
         * words are trimmed.  RUN --mount/--device values are not validated here. */

        /* ONBUILD: the trigger expression as it will be stored in the config (e.g.
         * "RUN echo hi"), validated (ONBUILD ONBUILD / FROM / MAINTAINER are errors) */
        char *onbuild;
};

struct ossb_df_stage {
        char *name;              /* lower-cased AS name, or NULL */
        size_t index;            /* position among stages */
        struct ossb_df_inst from;
        struct ossb_df_inst *insts; /* instructions after FROM */
        size_t n_insts;
};

struct ossb_df_plan {
        struct ossb_df_inst *meta_args; /* ARG instructions before the first FROM */
        size_t n_meta_args;
        struct ossb_df_stage *stages;
        size_t n_stages;
};

/* Errors (all "<path>:<line>: ..."): the instruction errors of BuildKit's instructions.Parse,
 * "no build stage in current context" for an instruction other than ARG before the first
 * FROM, "dockerfile contains no stages to build" when there is no FROM at all, and a
 * duplicate stage name (BuildKit only lints that; here it is an error). */
int ossb_df_plan_new(const struct ossb_dockerfile *df, struct ossb_df_plan **ret, struct ossb_error **err);
void ossb_df_plan_free(struct ossb_df_plan *p);
static inline void ossb_df_plan_freep(struct ossb_df_plan **p)
{
        if (*p)
                ossb_df_plan_free(*p);
}
#define _cleanup_df_plan_ __attribute__((cleanup(ossb_df_plan_freep)))

/* Find a stage by name (case-insensitive) or by decimal index; NULL when none. */
const struct ossb_df_stage *ossb_df_plan_find_stage(const struct ossb_df_plan *p, const char *name_or_index);

/* Parse one instruction line (an ONBUILD trigger from a base image config) into a plan
 * instruction; `ret_df` keeps the parse alive and must be freed after `ret`.  The text must be
 * one instruction (heredoc bodies may follow it, as ONBUILD stores them); FROM, ONBUILD and
 * MAINTAINER are refused as triggers. */
int ossb_df_parse_trigger(const char *trigger, struct ossb_dockerfile **ret_df, struct ossb_df_inst **ret,
                          struct ossb_error **err);
void ossb_df_inst_free(struct ossb_df_inst *i); /* frees members and i itself */

/* Added: the upper-case keyword of a kind ("RUN"), for messages. */
const char *ossb_df_kind_name(enum ossb_df_kind kind);

#endif
