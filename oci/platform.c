/* oci/platform.c - platforms ("os/arch[/variant]"): parsing, normalisation as containerd's
 * platforms package does, matching; image indexes and Docker manifest lists parsed from
 * untrusted bytes, and choosing the manifest for a platform.
 *
 * Owns: struct ossb_platform values and struct ossb_index (its entries and their descriptors).
 * Index parsing is bounded as ossb_manifest_parse is (size, depth, entry count); platform
 * fields that are too long or hold characters other than [A-Za-z0-9._-] make an entry
 * "without a platform" (never chosen by platform) rather than failing the whole index.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "oci/oci-internal.h"
#include "oci/platform.h"

#define INDEX_MAX_ENTRIES 4096
#define ANNOTATION_REFERENCE_TYPE "vnd.docker.reference.type"

/* ---- platforms ---- */

static bool field_is_valid(const char *s, size_t n)
{
        if (n == 0 || n >= sizeof(((struct ossb_platform *) NULL)->os))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

static void set_field(char *dst, size_t size, const char *src)
{
        snprintf(dst, size, "%s", src);
}

static void lower(char *s)
{
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

static bool in_list(const char *s, const char *const *list)
{
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

void ossb_platform_normalize(struct ossb_platform *p)
{
        static const char *const i386[] = { "i386", "i486", "i586", "i686", "386", NULL };
        static const char *const amd64[] = { "x86_64", "x86-64", "amd64", NULL };
        static const char *const arm64_v8[] = { "", "8", "v8", "v8.0", NULL };

        lower(p->os);
        lower(p->architecture);
        lower(p->variant);
        if (streq(p->os, "macos"))
                set_field(p->os, sizeof(p->os), "darwin");
        if (in_list(p->architecture, i386)) {
                set_field(p->architecture, sizeof(p->architecture), "386");
                p->variant[0] = '\0';
        } else if (in_list(p->architecture, amd64)) {
                set_field(p->architecture, sizeof(p->architecture), "amd64");
                if (streq(p->variant, "v1"))
                        p->variant[0] = '\0';
        } else if (streq(p->architecture, "aarch64") || streq(p->architecture, "arm64")) {
                set_field(p->architecture, sizeof(p->architecture), "arm64");
                if (in_list(p->variant, arm64_v8))
                        p->variant[0] = '\0'; /* v8 is arm64's only baseline: the same as none */
                else if (streq(p->variant, "9") || streq(p->variant, "9.0") || streq(p->variant, "v9.0"))
                        set_field(p->variant, sizeof(p->variant), "v9");
        } else if (streq(p->architecture, "armhf")) {
                set_field(p->architecture, sizeof(p->architecture), "arm");
                set_field(p->variant, sizeof(p->variant), "v7");
        } else if (streq(p->architecture, "armel")) {
                set_field(p->architecture, sizeof(p->architecture), "arm");
                set_field(p->variant, sizeof(p->variant), "v6");
        } else if (streq(p->architecture, "arm")) {
                if (!p->variant[0] || streq(p->variant, "7"))
                        set_field(p->variant, sizeof(p->variant), "v7");
                else if (streq(p->variant, "5") || streq(p->variant, "6") || streq(p->variant, "8")) {
                        char v[3] = { 'v', p->variant[0], '\0' };
                        set_field(p->variant, sizeof(p->variant), v);
                }
        }
}

int ossb_platform_parse(const char *s, struct ossb_platform *ret, struct ossb_error **err)
{
        struct ossb_platform p = { .os = "linux" };
        const char *parts[4] = { 0 };
        size_t lens[4] = { 0 }, n = 0;

        if (!s || !*s)
                return ossb_error_set(err, -EINVAL, "empty platform");
        for (const char *c = s;; n++) {
                const char *slash = strchr(c, '/');
                if (n >= 3)
                        return ossb_error_set(err, -EINVAL, "invalid platform `%.100s` (expected os/arch[/variant])", s);
                parts[n] = c;
                lens[n] = slash ? (size_t) (slash - c) : strlen(c);
                if (!field_is_valid(c, lens[n]))
                        return ossb_error_set(err, -EINVAL, "invalid platform `%.100s` (expected os/arch[/variant])", s);
                if (!slash) {
                        n++;
                        break;
                }
                c = slash + 1;
        }
        if (n == 1) {
                memcpy(p.architecture, parts[0], lens[0]);
        } else {
                memcpy(p.os, parts[0], lens[0]);
                p.os[lens[0]] = '\0';
                memcpy(p.architecture, parts[1], lens[1]);
                if (n == 3)
                        memcpy(p.variant, parts[2], lens[2]);
        }
        ossb_platform_normalize(&p);
        *ret = p;
        return 0;
}

/* The numeric level of a variant "vN" (amd64: "" is v1; arm64: "" is v8), -1 when it has none. */
static int variant_level(const struct ossb_platform *p)
{
        const char *v = p->variant;
        if (!*v)
                return streq(p->architecture, "amd64") ? 1 : streq(p->architecture, "arm64") ? 8 : -1;
        if (v[0] != 'v' || !isdigit((unsigned char) v[1]) || (v[2] && !(isdigit((unsigned char) v[2]) && !v[3])))
                return -1;
        return (int) strtol(v + 1, NULL, 10); /* one or two digits: no overflow */
}

bool ossb_platform_match(const struct ossb_platform *want, const struct ossb_platform *have)
{
        struct ossb_platform w = *want, h = *have;
        ossb_platform_normalize(&w);
        ossb_platform_normalize(&h);
        if (!streq(w.os, h.os) || !streq(w.architecture, h.architecture))
                return false;
        if (streq(w.variant, h.variant))
                return true;
        /* a CPU of level N runs code built for any level up to N (arm v7 runs v6 and v5) */
        if (!streq(w.architecture, "arm") && !streq(w.architecture, "amd64") && !streq(w.architecture, "arm64"))
                return false;
        int wl = variant_level(&w), hl = variant_level(&h);
        return wl >= 0 && hl >= 0 && hl <= wl;
}

const char *ossb_platform_format(const struct ossb_platform *p, char *buf, size_t size)
{
        if (p->variant[0])
                snprintf(buf, size, "%s/%s/%s", p->os, p->architecture, p->variant);
        else
                snprintf(buf, size, "%s/%s", p->os, p->architecture);
        return buf;
}

/* ---- image indexes ---- */

void ossb_index_free(struct ossb_index *ix)
{
        if (!ix)
                return;
        free(ix->media_type);
        for (size_t i = 0; i < ix->n_entries; i++)
                ossb_descriptor_clear(&ix->entries[i].desc);
        free(ix->entries);
        free(ix);
}

static inline void index_freep(struct ossb_index **ix)
{
        ossb_index_free(*ix);
}

static int get_platform_string(json_object *p, const char *key, bool required, const char **ret,
                               struct ossb_error **err)
{
        json_object *v;
        *ret = NULL;
        if (!json_object_object_get_ex(p, key, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return ossb_error_set(err, -EPROTO, "platform: `%s` is missing", key);
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return ossb_error_set(err, -EPROTO, "platform: `%s` is not a string", key);
        *ret = json_object_get_string(v);
        return 0;
}

/* Fill e->platform from a "platform" object: wrong types are errors; values that do not fit
 * (too long, odd characters) leave the entry without a platform. */
static int parse_platform(json_object *p, struct ossb_index_entry *e, struct ossb_error **err)
{
        const char *os, *arch, *variant;
        if (!json_object_is_type(p, json_type_object))
                return ossb_error_set(err, -EPROTO, "`platform` is not an object");
        int r = get_platform_string(p, "os", true, &os, err);
        if (r >= 0)
                r = get_platform_string(p, "architecture", true, &arch, err);
        if (r >= 0)
                r = get_platform_string(p, "variant", false, &variant, err);
        if (r < 0)
                return r;
        if (!field_is_valid(os, strlen(os)) || !field_is_valid(arch, strlen(arch)) ||
            (variant && *variant && !field_is_valid(variant, strlen(variant)))) {
                e->bad_platform = true;
                return 0;
        }
        set_field(e->platform.os, sizeof(e->platform.os), os);
        set_field(e->platform.architecture, sizeof(e->platform.architecture), arch);
        set_field(e->platform.variant, sizeof(e->platform.variant), variant ? variant : "");
        e->has_platform = true;
        return 0;
}

static int parse_entry(json_object *o, struct ossb_index_entry *e, struct ossb_error **err)
{
        json_object *p;
        int r = ossb_descriptor_from_json(o, &e->desc, err);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "platform", &p) && !json_object_is_type(p, json_type_null)) {
                r = parse_platform(p, e, err);
                if (r < 0) {
                        ossb_descriptor_clear(&e->desc);
                        return r;
                }
        }
        return 0;
}

static int index_media_type(json_object *o, const char **ret, struct ossb_error **err)
{
        json_object *v;
        const char *mt = OSSB_MT_OCI_INDEX; /* optional in OCI indexes */

        if (!json_object_object_get_ex(o, "schemaVersion", &v) || !json_object_is_type(v, json_type_int))
                return ossb_error_set(err, -EPROTO, "`schemaVersion` is missing or not an integer");
        if (json_object_get_int64(v) != 2)
                return ossb_error_set(err, -EPROTO, "unsupported schemaVersion %lld (expected 2)",
                                      (long long) json_object_get_int64(v));
        if (json_object_object_get_ex(o, "mediaType", &v) && !json_object_is_type(v, json_type_null)) {
                if (!json_object_is_type(v, json_type_string))
                        return ossb_error_set(err, -EPROTO, "`mediaType` is not a string");
                mt = json_object_get_string(v);
        }
        if (streq(mt, OSSB_MT_OCI_MANIFEST) || streq(mt, OSSB_MT_DOCKER_MANIFEST))
                return ossb_error_set(err, -EPROTO, "this is an image manifest (%s), not an index", mt);
        if (!streq(mt, OSSB_MT_OCI_INDEX) && !streq(mt, OSSB_MT_DOCKER_LIST))
                return ossb_error_set(err, -EPROTO, "unsupported index media type `%.64s`", mt);
        *ret = mt;
        return 0;
}

static int parse_entries(json_object *arr, struct ossb_index *ix, struct ossb_error **err)
{
        if (!json_object_is_type(arr, json_type_array))
                return ossb_error_set(err, -EPROTO, "`manifests` is not an array");
        size_t n = json_object_array_length(arr);
        if (n > INDEX_MAX_ENTRIES)
                return ossb_error_set(err, -EPROTO, "too many manifests (%zu, at most %d)", n, INDEX_MAX_ENTRIES);
        if (n == 0)
                return 0;
        ix->entries = calloc(n, sizeof(*ix->entries));
        if (!ix->entries)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = parse_entry(json_object_array_get_idx(arr, i), &ix->entries[i], err);
                if (r < 0)
                        return ossb_error_wrap(err, "manifest %zu", i);
                ix->n_entries++;
        }
        return 0;
}

int ossb_index_parse(const char *json, size_t len, struct ossb_index **ret, struct ossb_error **err)
{
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(index_freep) struct ossb_index *ix = NULL;
        const char *mt = NULL;
        json_object *v;
        int r;

        r = ossb_json_parse(json, len, OSSB_MANIFEST_MAX_SIZE, &o, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid image index");
        if (!json_object_is_type(o, json_type_object))
                return ossb_error_set(err, -EPROTO, "invalid image index: not a JSON object");
        r = index_media_type(o, &mt, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid image index");
        ix = calloc(1, sizeof(*ix));
        if (!ix || !(ix->media_type = strdup(mt)))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!json_object_object_get_ex(o, "manifests", &v))
                return ossb_error_set(err, -EPROTO, "invalid image index: `manifests` is missing");
        r = parse_entries(v, ix, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid image index");
        *ret = TAKE_PTR(ix);
        return 0;
}

/* ---- choosing a manifest ---- */

static bool is_attestation(const struct ossb_index_entry *e)
{
        json_object *v;
        if (e->desc.annotations && json_object_object_get_ex(e->desc.annotations, ANNOTATION_REFERENCE_TYPE, &v))
                return true;
        return e->has_platform && (streq(e->platform.os, "unknown") || streq(e->platform.architecture, "unknown"));
}

static bool is_manifest_type(const char *mt)
{
        return mt && (streq(mt, OSSB_MT_OCI_MANIFEST) || streq(mt, OSSB_MT_DOCKER_MANIFEST));
}

/* Platforms the index offers, "linux/amd64, linux/arm64/v8", each once, as written there. */
static char *offered(const struct ossb_index *ix)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        _cleanup_strv_free_ char **seen = NULL;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < ix->n_entries; i++) {
                const struct ossb_index_entry *e = &ix->entries[i];
                char buf[100];
                if (!e->has_platform || is_attestation(e))
                        continue;
                ossb_platform_format(&e->platform, buf, sizeof(buf));
                if (ossb_strv_contains(seen, buf))
                        continue;
                r = ossb_strv_push(&seen, buf);
                if (r >= 0 && sb.len > 0)
                        r = ossb_strbuf_append(&sb, ", ");
                if (r >= 0)
                        r = ossb_strbuf_append(&sb, buf);
        }
        if (r < 0) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

int ossb_index_select(const struct ossb_index *ix, const struct ossb_platform *want, const char *name,
                      const struct ossb_index_entry **ret, struct ossb_error **err)
{
        const struct ossb_index_entry *compatible = NULL, *unplatformed = NULL;
        struct ossb_platform w = *want;
        int best_level = -1;

        ossb_platform_normalize(&w);
        for (size_t i = 0; i < ix->n_entries; i++) {
                const struct ossb_index_entry *e = &ix->entries[i];
                if (is_attestation(e) || e->bad_platform)
                        continue;
                if (!e->has_platform) {
                        if (!unplatformed && is_manifest_type(e->desc.media_type))
                                unplatformed = e;
                        continue;
                }
                struct ossb_platform h = e->platform;
                ossb_platform_normalize(&h);
                if (streq(h.os, w.os) && streq(h.architecture, w.architecture) && streq(h.variant, w.variant)) {
                        *ret = e;
                        return 0;
                }
                if (ossb_platform_match(&w, &h) && variant_level(&h) > best_level) {
                        best_level = variant_level(&h);
                        compatible = e;
                }
        }
        if (compatible || unplatformed) {
                *ret = compatible ? compatible : unplatformed;
                return 0;
        }
        char wbuf[100];
        _cleanup_free_ char *list = offered(ix);
        if (!list)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ossb_error_set(err, -ENOENT, "no manifest for %s in %s; it offers %s",
                              ossb_platform_format(&w, wbuf, sizeof(wbuf)), name ? name : "the image index",
                              *list ? list : "no platform");
}

bool ossb_is_index(const char *media_type, const char *json, size_t len)
{
        _cleanup_json_ json_object *o = NULL;
        json_object *v;

        if (media_type && (streq(media_type, OSSB_MT_OCI_INDEX) || streq(media_type, OSSB_MT_DOCKER_LIST)))
                return true;
        if (media_type && is_manifest_type(media_type))
                return false;
        if (!json || ossb_json_parse(json, len, OSSB_MANIFEST_MAX_SIZE, &o, NULL) < 0 ||
            !json_object_is_type(o, json_type_object))
                return false;
        if (json_object_object_get_ex(o, "mediaType", &v) && json_object_is_type(v, json_type_string)) {
                const char *mt = json_object_get_string(v);
                return streq(mt, OSSB_MT_OCI_INDEX) || streq(mt, OSSB_MT_DOCKER_LIST);
        }
        return json_object_object_get_ex(o, "manifests", &v) && json_object_is_type(v, json_type_array);
}
