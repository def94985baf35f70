/* registry/regconf.h - per-registry settings: mirrors, plain-HTTP (insecure) hosts, TLS files.
 *
 * Owns: struct ossb_regconf, built from command-line options and a registries.conf-style file
 * (containers-registries.conf(5) v2, the TOML subset ossb reads):
 *
 *     [[registry]]
 *     prefix = "docker.io"            # or location when prefix is absent
 *     location = "docker.io"
 *     insecure = false
 *     blocked = false
 *     [[registry.mirror]]
 *     location = "mirror.example:5000"
 *     insecure = true
 *
 * Other tables and keys (unqualified-search-registries, [aliases], ...) are skipped; a syntax
 * error names the file and line.
 */
#ifndef OSSB_REGISTRY_REGCONF_H
#define OSSB_REGISTRY_REGCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct ossb_regconf_mirror {
        char *location; /* "HOST[:PORT][/path-prefix]" (a scheme in the input is accepted and dropped,
                         * except that "http://" marks the mirror insecure) */
        bool insecure;
};

struct ossb_regconf_registry {
        char *prefix;   /* "docker.io", "localhost:5000", "example.com/team"; or a wildcard
                         * "*.example.com" matching every host under example.com */
        char *location; /* where the prefix is served from (usually == prefix); NULL only for a
                         * wildcard prefix (the repository's own host serves it) */
        bool insecure;
        bool blocked;
        struct ossb_regconf_mirror *mirrors;
        size_t n_mirrors;
};

struct ossb_regconf {
        struct ossb_regconf_registry *registries;
        size_t n_registries;
        char **insecure_hosts; /* NULL-terminated; from --insecure-registry */
        char **cert_dirs;      /* NULL-terminated, searched in order for HOST[:PORT]/ */
};

/* Build from options: insecure hosts (--insecure-registry), docker.io mirrors
 * (--registry-mirror, URL or HOST[:PORT]), an optional registries.conf file (NULL: none), an
 * optional extra certs dir (--cert-dir, searched first); then the defaults
 * /etc/containers/certs.d and /etc/docker/certs.d are appended to cert_dirs. */
int ossb_regconf_new(char *const *insecure_hosts, char *const *mirrors, const char *conf_file, const char *cert_dir,
                     struct ossb_regconf **ret, struct ossb_error **err);
void ossb_regconf_free(struct ossb_regconf *c);

/* Parse registries.conf text (name is for messages) into c's registries (appending). */
int ossb_regconf_parse(struct ossb_regconf *c, const char *name, const char *text, size_t len,
                       struct ossb_error **err);

/* The entry whose prefix matches `repository` ("HOST[:PORT]/path") best (longest prefix ending
 * at a '/' or the end), or NULL. */
const struct ossb_regconf_registry *ossb_regconf_match(const struct ossb_regconf *c, const char *repository);

/* Whether plain HTTP (and unverified TLS) is allowed for host[:port]: a --insecure-registry
 * entry (exact HOST[:PORT], or HOST for any port), an insecure registries.conf entry or mirror,
 * or a loopback host (localhost, 127.0.0.0/8, ::1), as Docker allows. */
bool ossb_regconf_insecure(const struct ossb_regconf *c, const char *hostport);

/* TLS files for host[:port]: the first cert dir holding HOST[:PORT]/ supplies every *.crt
 * there as CAs (ca.crt first) and client.cert/client.key as the client identity.  Each out
 * string is NULL or a path (caller frees; *ret_cas is NULL-terminated or NULL).  As in Docker,
 * any NAME.cert needs its NAME.key and the reverse (else an error naming the directory);
 * client.cert is preferred when there are several pairs, else the first by name. */
int ossb_regconf_tls_files(const struct ossb_regconf *c, const char *hostport, char ***ret_cas, char **ret_cert,
                           char **ret_key, struct ossb_error **err);

/* `repository` (matched by r: see ossb_regconf_match) as served from `location` (r->location
 * or one of r's mirrors' locations): r's prefix replaced with it ("example.com/team/app" with
 * prefix "example.com/team" and location "mirror.example:5000/t" -> "mirror.example:5000/t/app").
 * For a wildcard prefix the host is replaced; a NULL location leaves repository as it is.
 * *ret: caller frees.  -EINVAL when r does not match repository, -ENOMEM. */
int ossb_regconf_rewrite(const struct ossb_regconf_registry *r, const char *location, const char *repository,
                         char **ret);

/* Bounds on what a registries.conf may hold (more: an error naming the file and line). */
#define OSSB_REGCONF_MAX_SIZE (1024 * 1024)
#define OSSB_REGCONF_MAX_REGISTRIES 4096
#define OSSB_REGCONF_MAX_MIRRORS 256

#endif
