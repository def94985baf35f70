/* oci/platform.h - platforms ("linux/arm64/v8") and choosing one from an image index.
 *
 * Owns: struct ossb_platform and its normalisation as containerd's platforms package does:
 * architecture aliases (x86_64/x86-64 -> amd64, aarch64 -> arm64, armhf/armel -> arm with
 * v7/v6, i386/i686 -> 386), default variants (arm64: "v8", which equals no variant; arm:
 * "v7"), os lower-cased.  As in containerd, arm64's "v8" normalises to no variant (so
 * "linux/arm64/v8" formats as "linux/arm64", as TARGETPLATFORM does), amd64's "v1" too.
 */
#ifndef OSSB_OCI_PLATFORM_H
#define OSSB_OCI_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "common/error.h"
#include "oci/image.h"

struct ossb_platform {
        char os[32];
        char architecture[32];
        char variant[32]; /* "" when none */
};

/* Parse "os/arch[/variant]" (also "arch" alone: linux assumed) and normalise; -EINVAL with a
 * message naming the string. */
int ossb_platform_parse(const char *s, struct ossb_platform *ret, struct ossb_error **err);
void ossb_platform_normalize(struct ossb_platform *p);
/* Whether an image for `have` runs as `want` (after normalising both; an empty variant on
 * either side of arm64 matches v8; arm v7 accepts an image for v6/v5 only when nothing
 * better exists -- see ossb_index_select). */
bool ossb_platform_match(const struct ossb_platform *want, const struct ossb_platform *have);
/* "linux/arm64/v8" style; buf of at least 100 bytes. */
const char *ossb_platform_format(const struct ossb_platform *p, char *buf, size_t size);

/* An image index (OCI) or Docker manifest list, parsed from untrusted bytes (bounded as
 * ossb_manifest_parse is; entries without a platform are kept with an empty os). */
struct ossb_index_entry {
        struct ossb_descriptor desc;
        struct ossb_platform platform;
        bool has_platform;
        bool bad_platform; /* a platform was given but its fields do not fit struct ossb_platform
                            * (over 31 bytes, characters other than [A-Za-z0-9._-]): never chosen */
};
struct ossb_index {
        char *media_type;
        struct ossb_index_entry *entries;
        size_t n_entries;
};
int ossb_index_parse(const char *json, size_t len, struct ossb_index **ret, struct ossb_error **err);
void ossb_index_free(struct ossb_index *ix);
/* The best manifest for `want`: an exact match first, then a compatible variant; attestation
 * manifests (platform unknown/unknown, or annotation vnd.docker.reference.type) are never
 * chosen.  Among compatible variants the highest wins (arm/v7 takes v6 before v5).  An image
 * manifest entry without a platform is taken only when no entry matches (as containerd does).
 * -ENOENT when none, with a message listing the platforms the index offers.  *ret points into
 * ix. */
int ossb_index_select(const struct ossb_index *ix, const struct ossb_platform *want, const char *name,
                      const struct ossb_index_entry **ret, struct ossb_error **err);

/* Whether bytes are an index/manifest list (by mediaType, or by a "manifests" array when the
 * mediaType is absent) -- for callers that got a generic Content-Type. */
bool ossb_is_index(const char *media_type, const char *json, size_t len);

#endif
