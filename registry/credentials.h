/* registry/credentials.h - where the credentials for a registry come from.
 *
 * Owns: reading the credential sources, in this order (the first source that holds an entry
 * for the registry wins):
 *   1. the file given with --registry-auth-file (also where a Kubernetes
 *      kubernetes.io/dockerconfigjson secret is mounted: {"auths": {...}}),
 *   2. $REGISTRY_AUTH_FILE,
 *   3. $DOCKER_CONFIG/config.json, else ~/.docker/config.json ("auths" entries with base64
 *      "auth" or "username"/"password", "identitytoken"; "credHelpers" per registry, then
 *      "credsStore", both through `docker-credential-NAME get`),
 *   4. ${XDG_RUNTIME_DIR}/containers/auth.json.
 * Keys match as Docker and containers/image do: "HOST[:PORT]", "https://HOST/", "http://HOST",
 * "https://index.docker.io/v1/" for docker.io (also index.docker.io, registry-1.docker.io), and
 * repository-scoped keys ("HOST/ns/repo") where the most specific prefix of the repository wins.
 * Within one file: a "credHelpers" entry for the host is used alone (when its helper has no
 * entry, the next file is tried), else the most specific "auths" entry holding a credential,
 * else "credsStore".  Helpers run without a shell, with the server URL on stdin
 * ("https://index.docker.io/v1/" for docker.io, else HOST[:PORT]) and a 30 s time limit.
 * Secrets never appear in messages: errors name the file or helper, never its content.
 */
#ifndef OSSB_REGISTRY_CREDENTIALS_H
#define OSSB_REGISTRY_CREDENTIALS_H

#include <stdbool.h>

#include "common/error.h"

struct ossb_credential {
        char *username;       /* NULL: anonymous (no source had an entry) */
        char *secret;         /* password, or the identity (refresh) token */
        bool identity_token;  /* secret is an OAuth2 refresh token ("identitytoken") */
        char *source;         /* for messages: "--registry-auth-file /x/auth.json",
                               * "$REGISTRY_AUTH_FILE (/x)", "/root/.docker/config.json",
                               * "docker-credential-pass (credHelpers in /root/.docker/config.json)";
                               * NULL when anonymous */
};

/* Look up the credential for `repository` ("localhost:5000/app", "docker.io/library/alpine").
 * `auth_file` is the --registry-auth-file value or NULL.  Returns 0 with an anonymous
 * credential when no source has an entry.  A source that exists but cannot be read or parsed,
 * or a helper that fails (other than "credentials not found"), is an error (OSSB_EXIT_REGISTRY)
 * naming the file or helper.  A named --registry-auth-file that does not exist is an error. */
int ossb_credentials_find(const char *auth_file, const char *repository, struct ossb_credential *ret,
                          struct ossb_error **err);
/* Free the members, wiping the secret first (explicit_bzero); keeps c. */
void ossb_credential_clear(struct ossb_credential *c);

/* How long a `docker-credential-NAME get` may take before it is killed and the lookup fails
 * (milliseconds; <= 0 restores the default, 30 s).  For tests; not thread-safe. */
void ossb_credentials_set_helper_timeout(int ms);

#endif
