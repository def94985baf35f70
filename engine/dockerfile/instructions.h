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
        bool sources_json;   /* sources given in JSON form */

        /* HEALTHCHECK */
        bool hc_none;        /* HEALTHCHECK NONE */
        char *hc_interval;   /* raw durations ("30s"), NULL if not given */
        char *hc_timeout;
        char *hc_start_period;
        char *hc_start_interval;
        char *hc_retries;    /* raw integer text */

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

int ossb_df_plan_new(const struct ossb_dockerfile *df, struct ossb_df_plan **ret, struct ossb_error **err);
void ossb_df_plan_free(struct ossb_df_plan *p);

/* Find a stage by name (case-insensitive) or by decimal index; NULL when none. */
const struct ossb_df_stage *ossb_df_plan_find_stage(const struct ossb_df_plan *p, const char *name_or_index);

/* Parse one instruction line (an ONBUILD trigger from a base image config) into a plan
 * instruction; `ret_df` keeps the parse alive and must be freed after `ret`. */
int ossb_df_parse_trigger(const char *trigger, struct ossb_dockerfile **ret_df, struct ossb_df_inst **ret,
                          struct ossb_error **err);
void ossb_df_inst_free(struct ossb_df_inst *i); /* frees members and i itself */

#endif
