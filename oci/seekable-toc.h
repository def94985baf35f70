/* oci/seekable-toc.h - private to oci/: the TOC JSON parser behind ossb_toc_decode
 * (seekable-entry.c).
 *
 * Owns: nothing beyond the struct ossb_toc it returns.
 */
#ifndef OSSB_OCI_SEEKABLE_TOC_H
#define OSSB_OCI_SEEKABLE_TOC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "oci/seekable.h"

/* Parse and check the TOC JSON (seekable.h, ossb_toc_decode, says what is checked). */
int ossb_toc_parse(const struct ossb_toc_location *loc, const char *json, size_t len, struct ossb_toc **ret,
                   struct ossb_error **err);
void ossb_toc_entry_clear(struct ossb_toc_entry *e);
/* Clean a TOC or tar name: "./a//b/" -> "a/b", "./" -> "".  -EPERM for absolute names or a
 * ".." component, -EBADMSG for an embedded NUL (len counts the bytes).  Caller frees. */
int ossb_toc_path_clean(const char *name, size_t len, char **ret);
/* Whether a raw tar name cleans to `path`. */
bool ossb_toc_path_equal(const char *name, const char *path);

#endif
