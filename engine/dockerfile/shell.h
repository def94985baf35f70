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

/* BuildKit's ProcessWords: the same, then split into words on unquoted whitespace (an
 * expansion's result is not re-split).  *ret is a NULL-terminated vector; caller frees. */
int ossb_shell_expand_words(const char *word, char escape, ossb_shell_lookup_fn lookup, void *userdata,
                            char ***ret, struct ossb_error **err);

#endif
