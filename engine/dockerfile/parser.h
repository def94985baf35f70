/* engine/dockerfile/parser.h - Dockerfile syntax: directives, lines, continuations, heredocs,
 * JSON/shell forms -> a list of instruction nodes (BuildKit's frontend/dockerfile/parser).
 *
 * Owns: struct ossb_dockerfile and everything hanging off it (free with ossb_dockerfile_free).
 * No variable expansion happens here; `args` hold the text as written (quotes kept, as BuildKit
 * keeps them).  Errors are Dockerfile errors (exit code OSSB_EXIT_USAGE) naming
 * "<path>:<line>" (and column where it helps).
 */
#ifndef OSSB_ENGINE_DOCKERFILE_PARSER_H
#define OSSB_ENGINE_DOCKERFILE_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

/* Hostile-input bounds. */
#define OSSB_DF_MAX_SIZE (16u * 1024u * 1024u)
/* Added: the longest physical line (BuildKit's bufio.Scanner limit, 64 KiB - 1), the most
 * physical lines in one Dockerfile, how deeply ONBUILD may nest inside ONBUILD (BuildKit's
 * parser accepts `ONBUILD ONBUILD RUN x`; the instructions reject it), and the most
 * instructions (BuildKit has no such limit; real Dockerfiles stay far below it). */
#define OSSB_DF_MAX_LINE_LEN 65535u
#define OSSB_DF_MAX_LINES (1u << 20)
#define OSSB_DF_MAX_ONBUILD_DEPTH 8
#define OSSB_DF_MAX_INSTRUCTIONS (1u << 16)

struct ossb_df_heredoc {
        char *name;    /* delimiter word, quotes removed */
        char *content; /* body lines, each ending in '\n' (BuildKit's Heredoc.Content) */
        bool expand;   /* false when the delimiter was quoted ('EOF' or "EOF") */
        bool chomp;    /* <<-EOF: leading tabs stripped from body lines */
        int fd;        /* 3<<EOF -> 3; default 0 */
};

struct ossb_df_instruction {
        char *cmd;       /* lower-case keyword: "from", "run", "copy", ... */
        char *original;  /* the instruction line as written, continuations joined (BuildKit's
                          * Node.Original) */
        int line_start;  /* 1-based */
        int line_end;
        char **flags;    /* "--name=value" / "--name" tokens before the arguments, as written */
        char **args;     /* arguments; how they are split depends on cmd, exactly as BuildKit's
                          * parser does (see docs/ARCHITECTURE.md):
                          *   from/expose/volume(non-JSON)/copy/add(non-JSON): whitespace-split
                          *   run/cmd/entrypoint/healthcheck-command: JSON array items when
                          *     json, else one string (the rest of the line)
                          *   shell: JSON array items (JSON required)
                          *   env/label: alternating key, value (key1, val1, key2, val2 ...)
                          *   arg: one entry per "name" or "name=value" token
                          *   user/workdir/stopsignal/maintainer: one string
                          *   healthcheck: args[0] "NONE" or "CMD", then the command as above
                          *   onbuild: empty; see `sub` */
        bool json;       /* exec (JSON) form */
        bool kv_legacy;  /* added: env/label in the old "KEY value" form (one pair, no '=';
                          * BuildKit's empty separator node / NoDelim) */
        struct ossb_df_heredoc *heredocs; /* RUN/COPY/ADD (not in JSON form); for ONBUILD the
                                           * trigger's heredocs sit here, on the onbuild node,
                                           * as in BuildKit */
        size_t n_heredocs;
        struct ossb_df_instruction *sub; /* onbuild: the trigger, parsed (owned); it carries
                                          * the lines of the onbuild instruction */
};

struct ossb_dockerfile {
        char *path;    /* as given, for messages */
        char escape;   /* '\\' or '`' */
        char *syntax;  /* "# syntax=" value or NULL (recorded, ignored) */
        char *check;   /* "# check=" value or NULL (ignored) */
        struct ossb_df_instruction *insts;
        size_t n_insts;
        char **warnings; /* e.g. empty continuation lines, as BuildKit warns; may be NULL.
                          * Each is "<path>:<line>: <BuildKit's short text>". */
};

/* Parse `data` (len bytes).  `path` names the file in messages ("-" for stdin is fine). */
int ossb_dockerfile_parse(const char *path, const char *data, size_t len, struct ossb_dockerfile **ret,
                          struct ossb_error **err);
void ossb_dockerfile_free(struct ossb_dockerfile *df);
static inline void ossb_dockerfile_freep(struct ossb_dockerfile **df)
{
        if (*df)
                ossb_dockerfile_free(*df);
}
#define _cleanup_dockerfile_ __attribute__((cleanup(ossb_dockerfile_freep)))

/* Added: read `path` (at most OSSB_DF_MAX_SIZE bytes; "-" reads stdin) and parse it.  A
 * missing or unreadable file is a usage error too. */
int ossb_dockerfile_parse_file(const char *path, struct ossb_dockerfile **ret, struct ossb_error **err);

/* Added: heredoc helpers for the engine (BuildKit's parser.ParseHeredoc and
 * ChompHeredocContent).
 * ossb_df_heredoc_parse_word: is `word` (e.g. "<<EOF", "3<<-'EOF'") a heredoc?  Returns 1 and
 *   fills *ret (name owned: free with ossb_df_heredoc_clear; content NULL) if it is, 0 if not,
 *   or a negative errno (with *err, a usage error) when its quoting is broken ("<<'EOF").
 * ossb_df_heredoc_chomp: `content` with leading tabs removed from every line (<<-); caller
 *   frees *ret.
 * ossb_df_instruction_find_heredoc: the heredoc of `inst` named `name` (the last one of that
 *   name, as BuildKit's lookup map keeps), or NULL. */
int ossb_df_heredoc_parse_word(const char *word, struct ossb_df_heredoc *ret, struct ossb_error **err);
int ossb_df_heredoc_chomp(const char *content, char **ret);
const struct ossb_df_heredoc *ossb_df_instruction_find_heredoc(const struct ossb_df_instruction *inst,
                                                              const char *name);
void ossb_df_heredoc_clear(struct ossb_df_heredoc *h);

/* The parse as JSON (for `ossb debug parse` and tests); caller frees. */
int ossb_dockerfile_to_json(const struct ossb_dockerfile *df, char **ret);
/* The parse in BuildKit's test dump format (Node.Dump(): one "(cmd flags... args...)" line
 * per instruction), used to compare with BuildKit's parser testfiles; caller frees. */
int ossb_dockerfile_dump(const struct ossb_dockerfile *df, char **ret);

#endif
