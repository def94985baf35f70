/* engine/dockerfile/parser-internal.h - shared by the parser's files (parser*.c) and
 * instructions.c; never included from outside engine/dockerfile.
 *
 * Owns: the parse context (path, line, escape token, error sink), the text helpers that make the
 * C code see text the way BuildKit's Go code does (UTF-8 decoding with U+FFFD for bad bytes,
 * unicode.IsSpace, strconv.Quote, "did you mean" suggestions), the JSON-array reader, the
 * heredoc word lexer and the per-instruction argument splitters.
 */
#ifndef OSSB_ENGINE_DOCKERFILE_PARSER_INTERNAL_H
#define OSSB_ENGINE_DOCKERFILE_PARSER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/parser.h"

#define DF_RUNE_ERROR 0xFFFDu

struct df_ctx {
        const char *path;     /* for messages */
        int line;             /* line the current instruction starts on */
        char escape;          /* '\\' or '`' */
        struct ossb_error **err;
};

/* Set a Dockerfile error "<path>:<line>: <message>" (OSSB_EXIT_USAGE); returns -EINVAL. */
int df_fail(const struct df_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same with an explicit line. */
int df_fail_at(struct ossb_error **err, const char *path, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Out of memory: sets an internal error and returns -ENOMEM. */
int df_oom(struct ossb_error **err);

/* --- parser-text.c ------------------------------------------------------------------------ */
/* Decode one rune at s (n > 0 bytes left) as Go's utf8.DecodeRune: invalid, overlong,
 * surrogate or truncated sequences give DF_RUNE_ERROR with width 1.  Returns the width. */
size_t df_utf8_decode(const char *s, size_t n, uint32_t *ret_rune);
int df_utf8_put(struct ossb_strbuf *sb, uint32_t r);
bool df_is_space(uint32_t r);  /* unicode.IsSpace */
bool df_is_letter(uint32_t r); /* unicode.IsLetter (exact for Latin-1, approximate beyond) */
bool df_is_digit(uint32_t r);  /* unicode.IsDigit (ASCII digits) */
/* Bytes of leading Unicode white space in s[0..n) (bytes.TrimLeftFunc(unicode.IsSpace)). */
size_t df_space_prefix(const char *s, size_t n);
/* Length of s[0..n) without trailing Unicode white space. */
size_t df_trim_right_len(const char *s, size_t n);
/* Append strconv.Quote(s) (s is n bytes). */
int df_go_quote(struct ossb_strbuf *sb, const char *s, size_t n);
/* A malloc'd Go-quoted copy of s, or NULL on ENOMEM. */
char *df_go_quoted(const char *s);
/* BuildKit's suggest.Search: the option closest to val (Levenshtein distance < 3), or NULL;
 * for a case-insensitive search the answer follows val's case.  Writes into buf. */
const char *df_suggest(const char *val, const char *const *options, size_t n_options, bool case_sensitive,
                       char *buf, size_t bufsz);
char *df_strndup_lower(const char *s, size_t n);
/* Go's strings.ToLower / ToUpper: ASCII exactly; bytes that are not UTF-8 become U+FFFD (as
 * strings.Map does) once the text is not pure ASCII; case mapping beyond ASCII covers Latin-1,
 * Latin Extended-A, Greek, Cyrillic and the Kelvin sign (which lowers to 'k'); other runes are
 * kept.  NULL on ENOMEM. */
char *df_go_lower(const char *s, size_t n);
char *df_go_upper(const char *s, size_t n);
/* Geometric growth without a capacity field, so that hostile input cannot make appends
 * quadratic: `arr` holds n elements and was only ever grown by df_grow (or is NULL); returns
 * it (or its new place) with room for n + 1, or NULL on ENOMEM (arr is then unchanged). */
void *df_grow(void *arr, size_t n, size_t size);
/* Append s (owned; freed on failure) to the NULL-terminated vector *v of *n strings that was
 * only ever built by df_strv_add (or is NULL, or ossb_strv_new_empty()).  -ENOMEM on failure. */
int df_strv_add(char ***v, size_t *n, char *s);

/* --- parser-json.c ------------------------------------------------------------------------ */
enum df_json_status {
        DF_JSON_OK = 0,          /* a JSON array of strings: *ret_items set */
        DF_JSON_INVALID,         /* not JSON as Go's encoding/json sees it: fall back */
        DF_JSON_NOT_STRINGS,     /* valid JSON array with a non-string item: an error */
        DF_JSON_NUL,             /* a string holds \u0000, which C strings cannot carry */
};
/* Parse s[0..n) (must start with '[' after leading spaces) as BuildKit's parseJSON does.
 * Returns an enum df_json_status, or -ENOMEM. */
int df_json_parse_strings(const char *s, size_t n, char ***ret_items);

/* --- parser-heredoc.c --------------------------------------------------------------------- */
/* BuildKit's heredocsFromLine: every heredoc word of `line` (names, flags; contents empty).
 * Returns 0 (with *ret possibly NULL) or a negative errno with ctx's error set. */
int df_heredocs_from_line(const struct df_ctx *ctx, const char *line, struct ossb_df_heredoc **ret, size_t *ret_n);
/* ParseHeredoc for one word: 1 = heredoc (ret filled), 0 = not one, < 0 error (message in
 * *ret_msg, malloc'd, when not ENOMEM). */
int df_heredoc_word(const char *word, struct ossb_df_heredoc *ret, char **ret_msg);
void df_heredocs_free(struct ossb_df_heredoc *h, size_t n);

/* --- parser-args.c ------------------------------------------------------------------------ */
/* newNodeFromLine: split `line` into command, flags and arguments as BuildKit's dispatch
 * table does, filling *inst (cmd, original, flags, args, json, kv_legacy, sub).  Unknown
 * instructions, non-JSON SHELL, "ENV must have two arguments" and similar are errors. */
int df_parse_line(const struct df_ctx *ctx, const char *line, int depth, struct ossb_df_instruction *inst);
/* BuildKit's parseWords (quotes and escapes kept). */
int df_parse_words(const char *s, char escape, char ***ret);
void df_instruction_clear(struct ossb_df_instruction *inst);

/* --- instructions-flags.c ------------------------------------------------------------------ */
enum df_flag_type { DF_FLAG_BOOL, DF_FLAG_STRING, DF_FLAG_STRINGS };

struct df_flag_spec {
        const char *name;       /* without "--" */
        enum df_flag_type type;
};

struct df_flag_value {
        bool used;
        bool on;                /* bool flags */
        const char *value;      /* string flags: borrowed from the node's flag word */
        char **values;          /* strings flags: owned copies */
        size_t n_values;
};

/* BuildKit's BFlags.Parse of node->flags against spec (n entries); vals[i] answers spec[i]
 * (free with df_flag_values_clear).  Errors name the node's line. */
int df_flags_parse(const struct df_ctx *ctx, char *const *flags, const struct df_flag_spec *spec, size_t n,
                   struct df_flag_value *vals);
void df_flag_values_clear(struct df_flag_value *vals, size_t n);
/* time.ParseDuration; 0 or -EINVAL with a message like Go's in *ret_msg. */
int df_parse_duration(const char *s, long long *ret_ns, char **ret_msg);
/* strconv.ParseInt(s, 10, 32); 0 or -EINVAL/-ERANGE with Go's message in *ret_msg. */
int df_parse_int32(const char *s, long *ret, char **ret_msg);

#endif
