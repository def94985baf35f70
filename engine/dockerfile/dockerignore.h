/* engine/dockerfile/dockerignore.h - .dockerignore with Docker's semantics
 * (moby/patternmatcher + the dockerignore reader): comments, blank lines, `!` exceptions,
 * filepath.Match syntax per path component, `**` for any number of components, leading "/"
 * and "./" removed, patterns cleaned; a path is excluded when the last matching pattern
 * (in file order) is not an exception.  A directory's pattern also covers its contents.
 *
 * Owns: struct ossb_dockerignore (free with ossb_dockerignore_free).
 */
#ifndef OSSB_ENGINE_DOCKERFILE_DOCKERIGNORE_H
#define OSSB_ENGINE_DOCKERFILE_DOCKERIGNORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct ossb_dockerignore;

/* Parse the file's content (`path` for messages).  An invalid pattern is an error naming its
 * line (OSSB_EXIT_USAGE). */
int ossb_dockerignore_parse(const char *path, const char *data, size_t len, struct ossb_dockerignore **ret,
                            struct ossb_error **err);
void ossb_dockerignore_free(struct ossb_dockerignore *di);

/* Is `relpath` (cleaned, '/'-separated, relative to the context root, no leading "/") excluded?
 * Parent directories' matches count (moby's MatchesOrParentMatches). */
bool ossb_dockerignore_excluded(const struct ossb_dockerignore *di, const char *relpath);
/* The same, for callers that must tell a failure apart: 1 excluded, 0 not, -ENOMEM.
 * (ossb_dockerignore_excluded answers false on ENOMEM.)  The context root (".") is never
 * excluded. */
int ossb_dockerignore_match(const struct ossb_dockerignore *di, const char *relpath);
/* When a directory is excluded, must the walker still descend into it because an exception
 * pattern could re-include something below it?  Decided as BuildKit's walker (fsutil) does:
 * always when some exception has glob characters before a trailing slash-star or slash-star-star, else when
 * an exception pattern lies under `reldir`. */
bool ossb_dockerignore_must_descend(const struct ossb_dockerignore *di, const char *reldir);

/* Go's filepath.Match (used for COPY source globs too): 0 no match, 1 match, -EINVAL for a bad
 * pattern. */
int ossb_path_match(const char *pattern, const char *name);

#endif
