/* engine/dockerfile/gore.h - the part of Go's regexp that moby/patternmatcher relies on.
 *
 * patternmatcher turns a .dockerignore pattern into a Go regular expression and only escapes
 * some of the metacharacters, so `[...]` classes (with ranges, POSIX [:name:] and Perl \d \s \w
 * groups), `^`, and escapes such as \b, \A, \z, \Q...\E, \x41 or \101 keep their RE2 meaning.
 * To match exactly what BuildKit matches, this parses that RE2 syntax (Perl flags: `.` stops at
 * newlines, negated classes do not, `^`/`$` are the text's ends) and answers MatchString with
 * a Pike VM, linear in the text.  Unicode \p{...} classes are not implemented: such a pattern
 * is reported as invalid.
 *
 * Owns: struct gore (free with gore_free).  Internal to engine/dockerfile.
 */
#ifndef OSSB_ENGINE_DOCKERFILE_GORE_H
#define OSSB_ENGINE_DOCKERFILE_GORE_H

#include <stdbool.h>
#include <stddef.h>

struct gore;

/* Compile; -EINVAL (with a static reason in *ret_reason when given) on a syntax error Go's
 * regexp.Compile would reject, -ENOMEM, or -EOPNOTSUPP for \p / \P. */
int gore_compile(const char *expr, struct gore **ret, const char **ret_reason);
/* Go's (*Regexp).MatchString: does the expression match anywhere in s?  1 yes, 0 no,
 * -ENOMEM. */
int gore_match(const struct gore *re, const char *s);
void gore_free(struct gore *re);

#endif
