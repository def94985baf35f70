/* engine/dockerfile/shell.h - word expansion as BuildKit's shell lexer does it
 * (frontend/dockerfile/shell): $V, ${V}, ${V:-w}, ${V-w}, ${V:+w}, ${V+w}, ${V:?w}, ${V?w},
 * ${V#p}, ${V##p}, ${V%p}, ${V%%p}, ${V/p/r}, ${V//p/r}, quotes and escapes.
 *
 * Owns: nothing persistent.  Errors (bad substitution, unterminated quote, ${V:?msg}) are
 * Dockerfile errors (OSSB_EXIT_USAGE); callers wrap them with the file and line.
 */
#ifndef OSSB_ENGINE_DOCKERFILE_SHELL_H
#define OSSB_ENGINE_DOCKERFILE_SHELL_H

#include <stdbool.h>

#include "common/error.h"

/* Look up a variable; NULL when unset (an empty string is set-but-empty). */
typedef const char *(*ossb_shell_lookup_fn)(void *userdata, const char *name);

/* Lookup in a "K=V" string vector (the last assignment of a name wins). userdata: char **. */
const char *ossb_shell_lookup_strv(void *userdata, const char *name);

/* BuildKit's ProcessWord: expand variables, remove quotes and escapes; one result string. */
int ossb_shell_expand(const char *word, char escape, ossb_shell_lookup_fn lookup, void *userdata, char **ret,
                      struct ossb_error **err);

/* BuildKit's ProcessWords: the same, then split into words on unquoted whitespace.  As in
 * BuildKit, the value of an unquoted $V / ${V} is split too, quoted text never is, and an
 * empty quoted string makes no word.  *ret is a NULL-terminated vector; caller frees. */
int ossb_shell_expand_words(const char *word, char escape, ossb_shell_lookup_fn lookup, void *userdata,
                            char ***ret, struct ossb_error **err);

/* The options of BuildKit's shell.Lex, for heredoc detection and expansion. */
enum ossb_shell_flags {
        OSSB_SHELL_RAW_QUOTES = 1 << 0,          /* keep quote characters in the result (RawQuotes) */
        OSSB_SHELL_RAW_ESCAPES = 1 << 1,         /* keep escape characters in the result (RawEscapes) */
        OSSB_SHELL_SKIP_PROCESS_QUOTES = 1 << 2, /* quotes are ordinary characters (SkipProcessQuotes) */
        OSSB_SHELL_SKIP_UNSET_ENV = 1 << 3,      /* leave references to unset variables as written */
};

/* Both of the above at once, with options: *ret_word gets ProcessWord's result and *ret_words
 * ProcessWords' (either may be NULL when not wanted; both are written only on success).
 * `escape` is an ASCII character (normally '\\' or '`').  The lookup sees every name the word
 * refers to, so callers can record which variables were used.  Hostile input is bounded:
 * nesting deeper than OSSB_SHELL_MAX_DEPTH, a result beyond OSSB_SHELL_MAX_RESULT, or more than
 * four times that produced in all (intermediate results included) fails with -E2BIG. */
#define OSSB_SHELL_MAX_DEPTH 128
#define OSSB_SHELL_MAX_RESULT (4u << 20)
int ossb_shell_expand_full(const char *word, char escape, unsigned flags, ossb_shell_lookup_fn lookup,
                           void *userdata, char **ret_word, char ***ret_words, struct ossb_error **err);

#endif
