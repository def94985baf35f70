/* registry/auth.h - the registry auth protocol's parsing: WWW-Authenticate challenges and
 * token server answers (the HTTP part lives in client.c).
 *
 * Owns: struct ossb_auth_challenge (free its members with ossb_auth_challenge_clear).
 */
#ifndef OSSB_REGISTRY_AUTH_H
#define OSSB_REGISTRY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

enum ossb_auth_scheme {
        OSSB_AUTH_NONE = 0,
        OSSB_AUTH_BASIC,
        OSSB_AUTH_BEARER,
};

struct ossb_auth_challenge {
        enum ossb_auth_scheme scheme;
        char *realm;   /* Bearer: token endpoint URL; Basic: the realm (may be NULL) */
        char *service; /* may be NULL */
        char *scope;   /* may be NULL; space-separated scopes as the registry sent them */
        char *error;   /* "insufficient_scope", "invalid_token", ... or NULL */
};

/* Parse one WWW-Authenticate header value (RFC 7235: scheme, then auth-params with quoted
 * strings and backslash escapes; several challenges separated by commas: Bearer preferred over
 * Basic).  Unknown schemes alone -> -EPROTO naming the scheme.  *ret is written on success. */
int ossb_auth_challenge_parse(const char *value, struct ossb_auth_challenge *ret, struct ossb_error **err);
void ossb_auth_challenge_clear(struct ossb_auth_challenge *c);

/* Parse a token server answer: {"token": ...} or {"access_token": ...}, optional
 * "expires_in" (seconds; default 60, as the distribution spec says) and "refresh_token".
 * *ret_token and *ret_refresh (may be NULL; set to NULL when absent) are owned by the caller. */
int ossb_auth_token_parse(const char *json, size_t len, char **ret_token, int64_t *ret_expires_in,
                          char **ret_refresh, struct ossb_error **err);

/* The scope string for a repository path ("library/alpine") and action ("pull",
 * "pull,push"): "repository:library/alpine:pull".  Caller frees; NULL on ENOMEM. */
char *ossb_auth_scope(const char *path, const char *actions);

/* "Basic <base64(user:secret)>" for an Authorization header; caller frees (and should wipe). */
char *ossb_auth_basic_header(const char *user, const char *secret);

/* Standard base64 (RFC 4648 section 4, with '=' padding) of len bytes; NUL-terminated, caller
 * frees; NULL on ENOMEM. */
char *ossb_base64_encode(const void *data, size_t len);
/* Decode standard base64 (padding optional; no whitespace) into a new NUL-terminated buffer
 * (*ret_len excludes the NUL; caller frees, and wipes it when it holds a secret).  -EINVAL on a
 * character outside the alphabet, a bad length or bad padding; -ENOMEM.  Writes *ret only on
 * success; the message-free return is deliberate: callers name the input, never quote it. */
int ossb_base64_decode(const char *s, size_t len, char **ret, size_t *ret_len);

/* Limit on a WWW-Authenticate value ossb_auth_challenge_parse accepts (longer: -EPROTO). */
#define OSSB_AUTH_HEADER_MAX (64 * 1024)

#endif
