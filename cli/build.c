/* cli/build.c - `ossb build [OPTIONS] CONTEXT`. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/dockerfile/parser.h"
#include "engine/engine.h"
#include "engine/run-mounts.h"
#include "oci/image.h"
#include "snapshotter/snapshotter.h"

static const char build_usage[] =
        "Usage: ossb build [OPTIONS] CONTEXT\n"
        "\n"
        "Build an image from the Dockerfile in CONTEXT (a directory).  The manifest digest of the\n"
        "image is printed on stdout; progress goes to stderr.\n"
        "\n"
        "Options:\n"
        "  -f, --file FILE              Dockerfile (default CONTEXT/Dockerfile; - reads stdin)\n"
        "  -t, --tag NAME[:TAG]         Name the image (repeatable)\n"
        "      --build-arg K[=V]        Set a build argument; a bare K takes $K from the environment\n"
        "      --target STAGE           Build the stage STAGE (and what it needs) instead of the last\n"
        "      --label K=V              Add a label to the image (repeatable)\n"
        "  -o, --output SPEC            Where the image goes (repeatable):\n"
        "                                 type=oci,dest=DIR           OCI image layout directory\n"
        "                                 type=oci,dest=FILE.tar      OCI image layout as a tar\n"
        "                                 type=oci,dest=P,tar=true|false\n"
        "                                 type=docker,dest=FILE.tar   docker-archive (docker/podman load)\n"
        "                                 type=registry[,name=NAME]   push (to NAME, default the -t names)\n"
        "                                 PATH                        like type=oci,dest=PATH\n"
        "      --push                   Push the image to every -t name (like --output type=registry)\n"
        "      --snapshotter NAME       Where RUN steps run: auto (default: overlay where it can mount,\n"
        "                               else fuse where /dev/fuse opens, else native), overlay (kernel\n"
        "                               overlayfs), fuse (ossb's FUSE filesystem) or native (copies)\n"
        "      --lazy MODE              Base layers in eStargz or zstd:chunked with a TOC digest, with\n"
        "                               the fuse snapshotter: on-demand (auto's choice there: files\n"
        "                               fetched when a step reads them), background (and the rest\n"
        "                               fetched meanwhile) or off (pulled in full)\n"
        "      --lazy-replay on|off     With lazily read base layers: record the files each step\n"
        "                               reads (CACHE/replay) and prefetch them in the background as\n"
        "                               soon as FROM resolves in the next build of the same\n"
        "                               Dockerfile, even when its steps miss the cache (default on;\n"
        "                               --no-cache records but does not prefetch)\n"
        "      --network MODE           Network of RUN steps: host (default) or none (loopback only)\n"
        "  -j, --jobs N                 Build up to N independent stages at once (default: the CPUs)\n"
        "      --secret id=ID,src=FILE  A secret for RUN --mount=type=secret,id=ID (repeatable); also\n"
        "      --secret id=ID,env=VAR   from an environment variable; never stored in the image\n"
        "      --memory SIZE            Memory limit of each RUN step (bytes, or 512m, 2g, ...)\n"
        "      --cpus N                 CPU limit of each RUN step (e.g. 1.5)\n"
        "      --pids-limit N           Process limit of each RUN step (cgroup limits need a writable\n"
        "                               cgroup v2 hierarchy with the controller, or v1 on hybrid hosts)\n"
        "      --platform OS/ARCH[/V]   Target platform (default: the host's)\n"
        "      --progress MODE          auto (default), plain, tty, json or quiet\n"
        "      --log-format FORMAT      text (default) or json\n"
        "      --compression ALGO       Layer compression: gzip (default), zstd, uncompressed, or the\n"
        "                               seekable estargz and zstd:chunked (lazily pullable)\n"
        "      --compression-level N    Compression level (gzip 1-9, zstd 1-19)\n"
        "      --no-cache               Run every RUN step even when the step cache has its result\n"
        "                               (results are still stored for later builds)\n"
        "      --no-cache-filter STAGE  Like --no-cache for the RUN steps of STAGE only (repeatable,\n"
        "                               or comma-separated)\n"
        "      --iidfile FILE           Write the image ID (config digest) to FILE\n"
        "      --metadata-file FILE     Write build metadata (JSON, with the image digest) to FILE\n"
        "      --cache-dir DIR          State directory (default $OSSB_CACHE_DIR, then /var/lib/ossb\n"
        "                               for root, else $XDG_CACHE_HOME/ossb, then ~/.cache/ossb)\n"
        "  -h, --help                   Show this help\n"
        "\n";

static const char build_usage_tail[] =
        "\n"
        "Environment:\n"
        "  SOURCE_DATE_EPOCH            Seconds since 1970: the image's creation time, and layer\n"
        "                               timestamps clamped to it (reproducible builds); also taken\n"
        "                               from --build-arg SOURCE_DATE_EPOCH=N\n"
        "  OSSB_COMPRESS_THREADS        Threads compressing a gzip layer (default: the CPUs ossb\n"
        "                               may use, at most 8); the output does not depend on it\n"
        "  OSSB_PUSH_CHUNK_SIZE         Blobs larger than this many bytes are pushed in chunks\n"
        "\n"
        "Examples:\n"
        "  ossb build -t hello:latest --output type=oci,dest=out/hello examples/hello\n"
        "  ossb build -f Dockerfile.prod --build-arg VERSION=1.2 -o type=docker,dest=app.tar .\n"
        "  ossb build --push -t localhost:5000/app:1 .\n";

enum {
        OPT_BUILD_ARG = 256,
        OPT_TARGET,
        OPT_LABEL,
        OPT_PLATFORM,
        OPT_PROGRESS,
        OPT_LOG_FORMAT,
        OPT_NO_CACHE,
        OPT_IIDFILE,
        OPT_METADATA,
        OPT_COMPRESSION,
        OPT_LEVEL,
        OPT_CACHE_DIR,
        OPT_PUSH,
        OPT_SNAPSHOTTER,
        OPT_LAZY,
        OPT_LAZY_REPLAY,
        OPT_JOBS,
        OPT_NO_CACHE_FILTER,
        OPT_NETWORK,
        OPT_SECRET,
        OPT_MEMORY,
        OPT_CPUS,
        OPT_PIDS_LIMIT,
};

struct build_cli {
        struct ossb_build_opts opts;
        char **tags;
        char **build_args;
        char **labels;
        char **secrets;
        struct ossb_output *outputs;
        size_t n_outputs;
        const char *file;
        const char *iidfile;
        const char *metadata_file;
        char *cache_dir;
        char *dockerfile_data;
        char *dockerfile_name;
        struct ossb_cli_registry reg;
        char **no_cache_filter;
};

static void build_cli_free(struct build_cli *c)
{
        ossb_strv_free(c->tags);
        ossb_strv_free(c->build_args);
        ossb_strv_free(c->labels);
        ossb_strv_free(c->secrets);
        for (size_t i = 0; i < c->n_outputs; i++)
                ossb_output_clear(&c->outputs[i]);
        free(c->outputs);
        free(c->cache_dir);
        free(c->dockerfile_data);
        free(c->dockerfile_name);
        ossb_cli_registry_clear(&c->reg);
        ossb_strv_free(c->no_cache_filter);
}

static int add_build_arg(struct build_cli *c, const char *arg)
{
        if (strchr(arg, '='))
                return ossb_strv_push(&c->build_args, arg);
        /* a bare name takes the environment's value; unset means not given (as docker build) */
        const char *v = secure_getenv(arg);
        if (!v)
                return 0;
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", arg, v) < 0)
                return -ENOMEM;
        return ossb_strv_consume(&c->build_args, kv);
}

static int add_output(struct build_cli *c, const char *spec)
{
        struct ossb_error *err = NULL;
        struct ossb_output o;
        if (ossb_output_parse(spec, &o, &err) < 0)
                return ossb_cli_fail(err);
        struct ossb_output *n = realloc(c->outputs, (c->n_outputs + 1) * sizeof(*n));
        if (!n) {
                ossb_output_clear(&o);
                return OSSB_EXIT_INTERNAL;
        }
        c->outputs = n;
        n[c->n_outputs++] = o;
        return 0;
}

/* --secret: checked now (as BuildKit's secrets provider does when the build starts); the
 * content is read only when a RUN mounts it. */
static int add_secret(struct build_cli *c, const char *spec)
{
        struct ossb_error *err = NULL;
        struct ossb_secret_spec s;
        if (ossb_secret_spec_parse(spec, &s, &err) < 0) {
                ossb_error_wrap(&err, "--secret %s", spec);
                ossb_error_set_exit(&err, OSSB_EXIT_USAGE);
                return ossb_cli_fail(err);
        }
        struct stat st;
        int r = 0;
        if (s.file && stat(s.file, &st) < 0)
                r = ossb_cli_usage_error("build ", "--secret %s: cannot read `%s`: %s", spec, s.file, strerror(errno));
        else if (s.file && st.st_size > OSSB_SECRET_MAX_SIZE)
                r = ossb_cli_usage_error("build ", "--secret %s: `%s` is too big (the limit is %d bytes)", spec, s.file,
                                         OSSB_SECRET_MAX_SIZE);
        else if (s.env && !secure_getenv(s.env))
                log_warn("--secret id=%s: the environment variable %s is not set: the secret is empty", s.id, s.env);
        ossb_secret_spec_clear(&s);
        if (r)
                return r;
        return ossb_strv_push(&c->secrets, spec) < 0 ? OSSB_EXIT_INTERNAL : 0;
}

/* --cpus N[.NNN] -> thousandths of a CPU. */
static int parse_cpus(const char *s, int64_t *ret)
{
        int64_t whole = 0, frac = 0;
        int digits = 0;
        const char *p = s;
        for (; *p >= '0' && *p <= '9' && whole < 1000000; p++)
                whole = whole * 10 + (*p - '0');
        if (p == s && *p != '.')
                return -EINVAL;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
                        frac = frac * 10 + (*p - '0');
        if (*p)
                return -EINVAL;
        for (; digits < 3; digits++)
                frac *= 10;
        *ret = whole * 1000 + frac;
        return *ret >= 10 ? 0 : -ERANGE;
}

static int parse_limit(struct build_cli *c, int opt, const char *v)
{
        char *end = NULL;
        switch (opt) {
        case OPT_MEMORY:
                if (ossb_parse_ram_size(v, &c->opts.memory_limit) < 0)
                        return ossb_cli_usage_error("build ", "invalid --memory `%s` (bytes, or a size like 512m or 2g)", v);
                if (c->opts.memory_limit < 6 * 1024 * 1024)
                        return ossb_cli_usage_error("build ", "--memory %s: the smallest limit is 6 MiB", v);
                return 0;
        case OPT_CPUS:
                if (parse_cpus(v, &c->opts.cpu_millis) < 0)
                        return ossb_cli_usage_error("build ", "invalid --cpus `%s` (a number of CPUs from 0.01, e.g. 1.5)", v);
                return 0;
        default:
                errno = 0;
                c->opts.pids_limit = strtoll(v, &end, 10);
                if (!*v || *end || errno || c->opts.pids_limit < -1)
                        return ossb_cli_usage_error("build ", "invalid --pids-limit `%s` (a number; 0 or -1: no limit)", v);
                if (c->opts.pids_limit < 0)
                        c->opts.pids_limit = 0;
                return 0;
        }
}

static int parse_epoch(const char *s, int64_t *ret)
{
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*s || *end || errno || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int source_date_epoch(struct build_cli *c)
{
        const char *v = secure_getenv("SOURCE_DATE_EPOCH");
        for (size_t i = 0; c->build_args && c->build_args[i]; i++)
                if (strncmp(c->build_args[i], "SOURCE_DATE_EPOCH=", 18) == 0)
                        v = c->build_args[i] + 18;
        c->opts.source_date_epoch = -1;
        if (!v || !*v)
                return 0;
        if (parse_epoch(v, &c->opts.source_date_epoch) < 0)
                return ossb_cli_usage_error("build ", "invalid SOURCE_DATE_EPOCH `%s`: seconds since 1970 expected", v);
        return 0;
}

static int parse_options(struct build_cli *c, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "file", required_argument, NULL, 'f' },
                { "tag", required_argument, NULL, 't' },
                { "output", required_argument, NULL, 'o' },
                { "build-arg", required_argument, NULL, OPT_BUILD_ARG },
                { "target", required_argument, NULL, OPT_TARGET },
                { "label", required_argument, NULL, OPT_LABEL },
                { "platform", required_argument, NULL, OPT_PLATFORM },
                { "progress", required_argument, NULL, OPT_PROGRESS },
                { "log-format", required_argument, NULL, OPT_LOG_FORMAT },
                { "no-cache", no_argument, NULL, OPT_NO_CACHE },
                { "iidfile", required_argument, NULL, OPT_IIDFILE },
                { "metadata-file", required_argument, NULL, OPT_METADATA },
                { "compression", required_argument, NULL, OPT_COMPRESSION },
                { "compression-level", required_argument, NULL, OPT_LEVEL },
                { "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
                { "push", no_argument, NULL, OPT_PUSH },
                { "snapshotter", required_argument, NULL, OPT_SNAPSHOTTER },
                { "lazy", required_argument, NULL, OPT_LAZY },
                { "lazy-replay", required_argument, NULL, OPT_LAZY_REPLAY },
                { "jobs", required_argument, NULL, 'j' },
                { "no-cache-filter", required_argument, NULL, OPT_NO_CACHE_FILTER },
                { "network", required_argument, NULL, OPT_NETWORK },
                { "secret", required_argument, NULL, OPT_SECRET },
                { "memory", required_argument, NULL, OPT_MEMORY },
                { "cpus", required_argument, NULL, OPT_CPUS },
                { "pids-limit", required_argument, NULL, OPT_PIDS_LIMIT },
                { "help", no_argument, NULL, 'h' },
                OSSB_CLI_REGISTRY_LONGOPTS,
                {},
        };
        const char *cache_dir = NULL;
        int opt, r;
        optind = 1;
        opterr = 0;
        c->opts.compression_level = -1;
        while ((opt = getopt_long(argc, argv, ":f:t:o:j:h", longopts, NULL)) != -1) {
                r = ossb_cli_registry_option(&c->reg, opt, optarg);
                if (r < 0)
                        return OSSB_EXIT_INTERNAL;
                if (r > 0)
                        continue;
                switch (opt) {
                case OPT_PUSH:
                        c->opts.push = true;
                        break;
                case 'j': {
                        char *end = NULL;
                        long v = strtol(optarg, &end, 10);
                        if (!*optarg || *end || v < 1 || v > 1024)
                                return ossb_cli_usage_error("build ", "invalid --jobs `%s` (1 to 1024)", optarg);
                        c->opts.jobs = (int) v;
                        break;
                }
                case OPT_NO_CACHE_FILTER:
                        for (char *p = optarg, *next; p && *p && r >= 0; p = next) {
                                next = strchr(p, ',');
                                _cleanup_free_ char *one = next ? strndup(p, (size_t) (next - p)) : strdup(p);
                                if (next)
                                        next++;
                                r = one && *one ? ossb_strv_push(&c->no_cache_filter, one) : (one ? 0 : -ENOMEM);
                        }
                        break;
                case OPT_LAZY:
                        if (ossb_lazy_mode_parse(optarg, &c->opts.lazy) < 0)
                                return ossb_cli_usage_error("build ", "invalid --lazy `%s` (auto, off, on-demand, background)",
                                                            optarg);
                        break;
                case OPT_LAZY_REPLAY:
                        if (!streq(optarg, "on") && !streq(optarg, "off"))
                                return ossb_cli_usage_error("build ", "invalid --lazy-replay `%s` (on, off)", optarg);
                        c->opts.lazy_replay_off = streq(optarg, "off");
                        break;
                case OPT_SNAPSHOTTER:
                        if (ossb_snapshot_backend_parse(optarg, &c->opts.snapshotter) < 0)
                                return ossb_cli_usage_error("build ", "invalid --snapshotter `%s` (auto, overlay, fuse, native)", optarg);
                        break;
                case OPT_NETWORK:
                        if (!streq(optarg, "host") && !streq(optarg, "none") && !streq(optarg, "default"))
                                return ossb_cli_usage_error("build ", "invalid --network `%s` (host, none)", optarg);
                        c->opts.network_none = streq(optarg, "none");
                        break;
                case OPT_SECRET:
                        r = add_secret(c, optarg);
                        if (r)
                                return r;
                        break;
                case OPT_MEMORY:
                case OPT_CPUS:
                case OPT_PIDS_LIMIT:
                        r = parse_limit(c, opt, optarg);
                        if (r)
                                return r;
                        break;
                case 'f':
                        c->file = optarg;
                        break;
                case 't':
                        r = ossb_strv_push(&c->tags, optarg);
                        break;
                case 'o':
                        r = add_output(c, optarg);
                        if (r)
                                return r;
                        break;
                case OPT_BUILD_ARG:
                        r = add_build_arg(c, optarg);
                        break;
                case OPT_TARGET:
                        c->opts.target = optarg;
                        break;
                case OPT_LABEL:
                        if (!strchr(optarg, '=') || optarg[0] == '=')
                                return ossb_cli_usage_error("build ", "--label %s: expected KEY=VALUE", optarg);
                        r = ossb_strv_push(&c->labels, optarg);
                        break;
                case OPT_PLATFORM:
                        if (strchr(optarg, ','))
                                return ossb_cli_usage_error("build ", "--platform %s: building several platforms at once is not supported yet",
                                                            optarg);
                        c->opts.platform = optarg;
                        break;
                case OPT_PROGRESS:
                        if (ossb_progress_mode_parse(optarg, &c->opts.progress) < 0)
                                return ossb_cli_usage_error("build ", "invalid --progress `%s` (auto, plain, tty, json, quiet)", optarg);
                        break;
                case OPT_LOG_FORMAT:
                        if (!streq(optarg, "json") && !streq(optarg, "text"))
                                return ossb_cli_usage_error("build ", "invalid --log-format `%s` (text, json)", optarg);
                        ossb_log_setup(ossb_log_get_level(), streq(optarg, "json"));
                        break;
                case OPT_NO_CACHE:
                        c->opts.no_cache = true;
                        break;
                case OPT_IIDFILE:
                        c->iidfile = optarg;
                        break;
                case OPT_METADATA:
                        c->metadata_file = optarg;
                        break;
                case OPT_COMPRESSION:
                        if (ossb_compression_from_string(optarg, &c->opts.compression) < 0)
                                return ossb_cli_usage_error("build ", "invalid --compression `%s` (gzip, zstd, uncompressed)", optarg);
                        break;
                case OPT_LEVEL: {
                        char *end = NULL;
                        long v = strtol(optarg, &end, 10);
                        if (!*optarg || *end || v < 0 || v > 22)
                                return ossb_cli_usage_error("build ", "invalid --compression-level `%s`", optarg);
                        c->opts.compression_level = (int) v;
                        break;
                }
                case OPT_CACHE_DIR:
                        cache_dir = optarg;
                        break;
                case 'h':
                        fputs(build_usage, stdout);
                        fputs(ossb_cli_registry_help, stdout);
                        fputs(build_usage_tail, stdout);
                        return -1;
                case ':':
                        return ossb_cli_usage_error("build ", "option `%s` requires a value", argv[optind - 1]);
                default:
                        return ossb_cli_usage_error("build ", "unknown option `%s`", argv[optind - 1]);
                }
                if (r < 0)
                        return OSSB_EXIT_INTERNAL;
        }
        if (optind != argc - 1)
                return ossb_cli_usage_error("build ", optind >= argc ? "a CONTEXT directory is required" :
                                                                      "exactly one CONTEXT is expected, got `%s` too",
                                            optind + 1 < argc ? argv[optind + 1] : "");
        c->opts.context_dir = argv[optind];
        c->cache_dir = ossb_cli_cache_dir(cache_dir);
        if (!c->cache_dir)
                return ossb_cli_usage_error("build ", "no cache directory: set --cache-dir, $OSSB_CACHE_DIR or $HOME");
        return source_date_epoch(c);
}

static int read_dockerfile(struct build_cli *c)
{
        size_t len = 0;
        int r;
        if (c->file && streq(c->file, "-")) {
                r = ossb_read_fd(STDIN_FILENO, OSSB_DF_MAX_SIZE, &c->dockerfile_data, &len);
                c->dockerfile_name = strdup("Dockerfile (stdin)");
        } else {
                c->dockerfile_name = c->file ? strdup(c->file) : ossb_path_join(c->opts.context_dir, "Dockerfile");
                if (!c->dockerfile_name)
                        return OSSB_EXIT_INTERNAL;
                struct stat st;
                if (stat(c->dockerfile_name, &st) == 0 && S_ISDIR(st.st_mode)) {
                        log_error("%s: is a directory, not a Dockerfile", c->dockerfile_name);
                        return OSSB_EXIT_USAGE;
                }
                struct ossb_error *err = NULL;
                r = ossb_read_file(c->dockerfile_name, OSSB_DF_MAX_SIZE, &c->dockerfile_data, &len, &err);
                if (r < 0) {
                        ossb_error_set_exit(&err, OSSB_EXIT_USAGE);
                        return ossb_cli_fail(err);
                }
        }
        if (r < 0 || !c->dockerfile_name) {
                log_error("cannot read the Dockerfile from stdin: %s", strerror(r < 0 ? -r : ENOMEM));
                return OSSB_EXIT_USAGE;
        }
        c->opts.dockerfile_path_is_file = !(c->file && streq(c->file, "-"));
        c->opts.dockerfile_data = c->dockerfile_data;
        c->opts.dockerfile_len = len;
        c->opts.dockerfile_name = c->dockerfile_name;
        return 0;
}

static int write_results(const struct build_cli *c, const struct ossb_build_result *res)
{
        struct ossb_error *err = NULL;
        if (c->iidfile && ossb_write_file_atomic(c->iidfile, res->config_digest, strlen(res->config_digest), 0644, &err) < 0)
                return ossb_cli_fail(err);
        if (c->metadata_file) {
                json_object *m = json_object_new_object(), *d = json_object_new_object();
                if (!m || !d) {
                        json_object_put(m);
                        json_object_put(d);
                        return OSSB_EXIT_INTERNAL;
                }
                json_object_object_add(d, "mediaType", json_object_new_string(OSSB_MT_OCI_MANIFEST));
                json_object_object_add(d, "digest", json_object_new_string(res->manifest_digest));
                json_object_object_add(d, "size", json_object_new_int64(res->manifest_size));
                json_object_object_add(m, "containerimage.descriptor", d);
                json_object_object_add(m, "containerimage.digest", json_object_new_string(res->manifest_digest));
                json_object_object_add(m, "containerimage.config.digest", json_object_new_string(res->config_digest));
                if (res->image_names)
                        json_object_object_add(m, "image.name", json_object_new_string(res->image_names));
                const char *s = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
                int r = ossb_write_file_atomic(c->metadata_file, s, strlen(s), 0644, &err);
                json_object_put(m);
                if (r < 0)
                        return ossb_cli_fail(err);
        }
        printf("%s\n", res->manifest_digest);
        return 0;
}

int ossb_cmd_build(int argc, char **argv)
{
        struct build_cli c = { 0 };
        struct ossb_build_result res = { 0 };
        struct ossb_error *err = NULL;
        int r = parse_options(&c, argc, argv);
        if (r == -1)
                r = 0;
        else if (r == 0)
                r = read_dockerfile(&c);
        if (r == 0 && c.opts.context_dir) { /* no context: --help was shown */
                c.opts.tags = c.tags;
                c.opts.build_args = c.build_args;
                c.opts.labels = c.labels;
                c.opts.secrets = c.secrets;
                c.opts.outputs = c.outputs;
                c.opts.n_outputs = c.n_outputs;
                c.opts.cache_dir = c.cache_dir;
                c.opts.no_cache_filter = c.no_cache_filter;
                c.opts.registry_auth_file = c.reg.auth_file;
                if (ossb_cli_registry_load(&c.reg, &err) < 0) {
                        r = ossb_cli_fail(err);
                        goto out;
                }
                c.opts.regconf = c.reg.conf;
                if (ossb_interrupt_setup() < 0)
                        log_warn("cannot install signal handlers; an interrupted build leaves its work directory for the next build to remove");
                if (ossb_build(&c.opts, &res, &err) < 0)
                        r = ossb_cli_fail(err);
                else
                        r = write_results(&c, &res);
        }
out:
        ossb_build_result_clear(&res);
        build_cli_free(&c);
        return r;
}

char *ossb_cli_cache_dir(const char *flag)
{
        const char *v;
        if (flag)
                return strdup(flag);
        if ((v = secure_getenv("OSSB_CACHE_DIR")) && *v)
                return strdup(v);
        if (getuid() == 0 && !ossb_snapshot_in_userns()) /* the real root, not a user namespace's */
                return strdup(OSSB_ROOT_CACHE_DIR);
        if ((v = secure_getenv("XDG_CACHE_HOME")) && *v)
                return ossb_path_join(v, "ossb");
        if ((v = secure_getenv("HOME")) && *v)
                return ossb_path_join(v, ".cache/ossb");
        return NULL;
}
