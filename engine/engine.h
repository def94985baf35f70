/* engine/engine.h - the build: Dockerfile + context -> image -> outputs.
 *
 * Owns: a build's working directory under the cache dir (removed at the end, whatever the
 * outcome), the per-stage root file systems, and the step-by-step progress display.  The
 * content store under the cache dir outlives builds.
 */
#ifndef OSSB_ENGINE_ENGINE_H
#define OSSB_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"
#include "oci/layer.h"
#include "registry/progress.h"
#include "registry/regconf.h"
#include "snapshotter/snapshotter.h"

enum ossb_output_type {
        OSSB_OUTPUT_OCI = 0,    /* OCI image layout (dir, or tar) */
        OSSB_OUTPUT_DOCKER,     /* docker-archive tar */
        OSSB_OUTPUT_REGISTRY,   /* push to a registry: dest holds comma-separated names, or NULL for the -t tags */
};

struct ossb_output {
        enum ossb_output_type type;
        char *dest;
        bool tar;
};

/* Parse a --output value: "type=oci,dest=DIR[,tar=true|false]", "type=docker,dest=FILE.tar",
 * "type=registry[,name=REF[,name=REF2]]" (also buildx's "type=image,name=REF,push=true"),
 * or a bare path (an OCI layout directory, as `-o DIR` means a local export in buildx). */
int ossb_output_parse(const char *spec, struct ossb_output *ret, struct ossb_error **err);
void ossb_output_clear(struct ossb_output *o);

enum ossb_progress_mode {
        OSSB_PROGRESS_AUTO = 0,
        OSSB_PROGRESS_PLAIN,
        OSSB_PROGRESS_TTY,
        OSSB_PROGRESS_JSON,
        OSSB_PROGRESS_QUIET,
};

int ossb_progress_mode_parse(const char *s, enum ossb_progress_mode *ret);
/* How blob transfers are shown for a progress mode (auto: a live line on a terminal). */
enum ossb_display_mode ossb_progress_display_mode(enum ossb_progress_mode m);

/* --lazy: how base image layers in a seekable format (eStargz, zstd:chunked, with the TOC
 * digest in their descriptor) are read when the build runs on the fuse snapshotter. */
enum ossb_lazy_mode {
        OSSB_LAZY_AUTO = 0,   /* on-demand with the fuse snapshotter, else off */
        OSSB_LAZY_OFF,        /* every layer pulled and unpacked in full */
        OSSB_LAZY_ON_DEMAND,  /* files fetched when a step reads them (and the prefetch list) */
        OSSB_LAZY_BACKGROUND, /* the same, and the rest of each layer fetched in the background */
};
int ossb_lazy_mode_parse(const char *s, enum ossb_lazy_mode *ret);

struct ossb_build_opts {
        const char *context_dir;
        const char *dockerfile_name;  /* for messages: the path given, or "-" */
        bool dockerfile_path_is_file; /* dockerfile_name is a real path: <it>.dockerignore applies */
        const char *dockerfile_data;  /* the Dockerfile's bytes */
        size_t dockerfile_len;
        char *const *tags;            /* -t values, validated by the engine */
        char *const *build_args;      /* "K=V" */
        const char *target;           /* --target or NULL */
        char *const *labels;          /* "K=V" */
        const struct ossb_output *outputs;
        size_t n_outputs;
        const char *platform;         /* "os/arch[/variant]" or NULL for the host's */
        enum ossb_progress_mode progress;
        bool no_cache;
        int64_t source_date_epoch;    /* -1 when unset */
        enum ossb_compression compression;
        int compression_level;        /* -1: default */
        const char *cache_dir;        /* state: blob store and build work dirs */
        const struct ossb_regconf *regconf; /* registries: mirrors, insecure hosts, certs (required
                                             * when the build pulls or pushes; NULL: defaults) */
        const char *registry_auth_file;     /* --registry-auth-file or NULL */
        bool push;                          /* --push: push every -t tag */
        enum ossb_snapshot_backend snapshotter; /* --snapshotter (RUN steps) */
        bool network_none;                  /* --network=none: RUN steps get only loopback */
        char *const *secrets;               /* --secret values, "id=ID,src=FILE" or "id=ID,env=VAR"
                                             * (engine/run-mounts.h: ossb_secret_spec_parse); read
                                             * when a RUN --mount=type=secret uses them.  Their
                                             * contents never reach a log, a layer, the image config,
                                             * the history or a cache key. */
        int64_t memory_limit;               /* --memory: bytes for each RUN step's cgroup; 0: none */
        int64_t cpu_millis;                 /* --cpus in thousandths of a CPU; 0: none */
        int64_t pids_limit;                 /* --pids-limit; 0: none */
        char *const *no_cache_filter;       /* --no-cache-filter: stage names whose RUN steps skip the
                                             * cache lookup (NULL-terminated, may be NULL) */
        int jobs;                           /* --jobs: stages built at once; <= 0: the CPUs ossb may use */
        enum ossb_lazy_mode lazy;           /* --lazy: base layers read file by file (fuse snapshotter) */
        bool lazy_replay_off;               /* --lazy-replay=off: no record/replay of the files steps read */
};


struct ossb_build_result {
        char manifest_digest[OSSB_DIGEST_STR_LEN + 1];
        char config_digest[OSSB_DIGEST_STR_LEN + 1];
        int64_t manifest_size;
        char *image_names; /* comma-separated full names of the tags, or NULL (owned) */
};

int ossb_build(const struct ossb_build_opts *opts, struct ossb_build_result *ret, struct ossb_error **err);
void ossb_build_result_clear(struct ossb_build_result *r);

/* The host platform as "linux/amd64" etc. (static storage). */
const char *ossb_host_platform(void);

#endif
