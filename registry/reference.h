/* registry/reference.h - image references (tags given with -t, FROM names) checked against the
 * distribution reference grammar and normalised as Docker does ("app" ->
 * "docker.io/library/app:latest"; familiar form "app:latest").
 *
 * Owns: struct ossb_reference (free with ossb_reference_free).
 */
#ifndef OSSB_REGISTRY_REFERENCE_H
#define OSSB_REGISTRY_REFERENCE_H

#include "common/error.h"

struct ossb_reference {
        char *domain; /* "docker.io", "localhost:5000", ... */
        char *path;   /* "library/app" */
        char *tag;    /* NULL when only a digest was given */
        char *digest; /* NULL when none */
};

/* Parse and normalise; a missing tag and digest becomes "latest".  Errors (OSSB_EXIT_USAGE)
 * name the reference and what is wrong with it. */
int ossb_reference_parse(const char *s, struct ossb_reference **ret, struct ossb_error **err);
void ossb_reference_free(struct ossb_reference *r);
/* "docker.io/library/app:1.0" (tag and/or @digest); caller frees. */
char *ossb_reference_full(const struct ossb_reference *r);
/* Docker's familiar form: "app:1.0", "user/app:1.0", "localhost:5000/app:1.0"; caller frees. */
char *ossb_reference_familiar(const struct ossb_reference *r);
/* "domain/path", e.g. "docker.io/library/app", "localhost:5000/app"; caller frees. */
char *ossb_reference_repository(const struct ossb_reference *r);
/* The host the registry API is served on: "registry-1.docker.io" for docker.io, else domain. */
const char *ossb_reference_api_host(const struct ossb_reference *r);
/* The tag or digest to ask the registry for: the digest when there is one, else the tag. */
const char *ossb_reference_object(const struct ossb_reference *r);

#endif
