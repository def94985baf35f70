/* oci/image.c - the image model in JSON: descriptors, writing config + manifest to the store,
 * and parsing manifests (OCI and Docker schema 2) from untrusted bytes.
 *
 * Owns: the canonical JSON form ossb writes (compact, no "\/" escapes, keys in insertion order)
 * and the bounds applied to manifests read from outside (size, depth, layer count, types,
 * digests).  Parse errors are -EPROTO with a message saying what is wrong.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci/image.h"
#include "oci/oci-internal.h"

#define JSON_MAX_DEPTH 16
#define MEDIA_TYPE_MAX 255

const char *ossb_json_to_string(json_object *o)
{
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* json-c's strict mode still takes 'single-quoted' strings, NaN and Infinity: outside of
 * strings, allow only the characters of standard JSON. */
static ssize_t nonstandard_char(const char *json, size_t len)
{
        bool in_string = false;
        for (size_t i = 0; i < len; i++) {
                char c = json[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (!strchr(" \t\n\r{}[],:0123456789+-.eEtrufalsn", c))
                        return (ssize_t) i;
        }
        return -1;
}

int ossb_json_parse(const char *json, size_t len, size_t max, json_object **ret, struct ossb_error **err)
{
        json_tokener *tok;
        json_object *o;

        if (len > max || len > INT32_MAX)
                return ossb_error_set(err, -EPROTO, "JSON document too large (%zu bytes, at most %zu)", len, max);
        if (len == 0 || !json)
                return ossb_error_set(err, -EPROTO, "empty JSON document");
        if (memchr(json, '\0', len))
                return ossb_error_set(err, -EPROTO, "JSON document contains a NUL byte");
        ssize_t bad = nonstandard_char(json, len);
        if (bad >= 0)
                return ossb_error_set(err, -EPROTO, "invalid JSON at byte %zd: unexpected character", bad);
        tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        if (!tok)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, json, (int) len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success) {
                json_object_put(o);
                if (jerr == json_tokener_continue || jerr == json_tokener_success)
                        return ossb_error_set(err, -EPROTO, "truncated JSON document");
                return ossb_error_set(err, -EPROTO, "invalid JSON at byte %zu: %s", end, json_tokener_error_desc(jerr));
        }
        /* strict mode without JSON_TOKENER_ALLOW_TRAILING_CHARS: data after the value is an
         * error above, whitespace is consumed */
        *ret = o;
        return 0;
}

/* ---- descriptors ---- */

void ossb_descriptor_clear(struct ossb_descriptor *d)
{
        if (!d)
                return;
        free(d->media_type);
        d->media_type = NULL;
        if (d->annotations)
                json_object_put(d->annotations);
        d->annotations = NULL;
        d->digest[0] = '\0';
        d->size = 0;
}

int ossb_descriptor_copy(const struct ossb_descriptor *src, struct ossb_descriptor *ret)
{
        struct ossb_descriptor d = { .size = src->size };
        if (src->media_type) {
                d.media_type = strdup(src->media_type);
                if (!d.media_type)
                        return -ENOMEM;
        }
        if (src->annotations && json_object_deep_copy(src->annotations, &d.annotations, NULL) < 0) {
                free(d.media_type);
                return -ENOMEM;
        }
        memcpy(d.digest, src->digest, sizeof(d.digest));
        *ret = d;
        return 0;
}

json_object *ossb_descriptor_to_json(const struct ossb_descriptor *d)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *v;

        if (!o)
                return NULL;
        if (d->media_type) {
                v = json_object_new_string(d->media_type);
                if (!v || json_object_object_add(o, "mediaType", v) < 0)
                        return NULL;
        }
        v = json_object_new_string(d->digest);
        if (!v || json_object_object_add(o, "digest", v) < 0)
                return NULL;
        v = json_object_new_int64(d->size);
        if (!v || json_object_object_add(o, "size", v) < 0)
                return NULL;
        if (d->annotations) {
                v = NULL;
                if (json_object_deep_copy(d->annotations, &v, NULL) < 0 ||
                    json_object_object_add(o, "annotations", v) < 0) {
                        json_object_put(v);
                        return NULL;
                }
        }
        return TAKE_PTR(o);
}

static bool media_type_is_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > MEDIA_TYPE_MAX || !strchr(s, '/'))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

static int get_string(json_object *o, const char *key, bool required, const char **ret, struct ossb_error **err)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return ossb_error_set(err, -EPROTO, "`%s` is missing", key);
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return ossb_error_set(err, -EPROTO, "`%s` is not a string", key);
        *ret = json_object_get_string(v);
        return 0;
}

static int check_annotations(json_object *a, struct ossb_error **err)
{
        if (!json_object_is_type(a, json_type_object))
                return ossb_error_set(err, -EPROTO, "`annotations` is not an object");
        json_object_object_foreach(a, k, v) {
                if (!json_object_is_type(v, json_type_string))
                        return ossb_error_set(err, -EPROTO, "annotation `%s` is not a string", k);
        }
        return 0;
}

int ossb_descriptor_from_json(json_object *o, struct ossb_descriptor *ret, struct ossb_error **err)
{
        struct ossb_descriptor d = { 0 };
        const char *mt, *digest;
        json_object *v;
        int r;

        if (!o || !json_object_is_type(o, json_type_object))
                return ossb_error_set(err, -EPROTO, "descriptor is not an object");
        r = get_string(o, "mediaType", true, &mt, err);
        if (r >= 0)
                r = get_string(o, "digest", true, &digest, err);
        if (r < 0)
                return r;
        if (!media_type_is_valid(mt))
                return ossb_error_set(err, -EPROTO, "invalid media type `%.64s`", mt);
        if (strncmp(digest, "sha256:", 7) != 0)
                return ossb_error_set(err, -EPROTO, "unsupported digest `%.80s` (only sha256 is supported)", digest);
        if (!ossb_digest_is_valid(digest))
                return ossb_error_set(err, -EPROTO, "invalid digest `%.80s`", digest);
        if (!json_object_object_get_ex(o, "size", &v))
                return ossb_error_set(err, -EPROTO, "`size` is missing");
        if (!json_object_is_type(v, json_type_int))
                return ossb_error_set(err, -EPROTO, "`size` is not an integer");
        d.size = json_object_get_int64(v);
        if (d.size < 0 || d.size == INT64_MAX)
                return ossb_error_set(err, -EPROTO, "`size` is out of range");
        if (json_object_object_get_ex(o, "annotations", &v) && !json_object_is_type(v, json_type_null)) {
                r = check_annotations(v, err);
                if (r < 0)
                        return r;
                d.annotations = json_object_get(v);
        }
        d.media_type = strdup(mt);
        if (!d.media_type) {
                json_object_put(d.annotations);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        memcpy(d.digest, digest, OSSB_DIGEST_STR_LEN + 1);
        *ret = d;
        return 0;
}

/* ---- writing an image ---- */

static int add_descriptor(json_object *parent, const char *key, const struct ossb_descriptor *d)
{
        json_object *v = ossb_descriptor_to_json(d);
        if (!v)
                return -ENOMEM;
        if (json_object_is_type(parent, json_type_array)) {
                if (json_object_array_add(parent, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
                return 0;
        }
        if (json_object_object_add(parent, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_int(json_object *o, const char *key, int64_t val)
{
        json_object *v = json_object_new_int64(val);
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_string(json_object *o, const char *key, const char *val)
{
        json_object *v = json_object_new_string(val);
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int build_manifest(const struct ossb_descriptor *config, const struct ossb_descriptor *layers,
                          size_t n_layers, json_object *annotations, json_object **ret)
{
        _cleanup_json_ json_object *m = json_object_new_object();
        json_object *arr;

        if (!m || add_int(m, "schemaVersion", 2) < 0 || add_string(m, "mediaType", OSSB_MT_OCI_MANIFEST) < 0 ||
            add_descriptor(m, "config", config) < 0)
                return -ENOMEM;
        arr = json_object_new_array();
        if (!arr || json_object_object_add(m, "layers", arr) < 0) {
                json_object_put(arr);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_layers; i++)
                if (add_descriptor(arr, NULL, &layers[i]) < 0)
                        return -ENOMEM;
        if (annotations && json_object_object_length(annotations) > 0) {
                json_object *copy = NULL;
                if (json_object_deep_copy(annotations, &copy, NULL) < 0 ||
                    json_object_object_add(m, "annotations", copy) < 0) {
                        json_object_put(copy);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(m);
        return 0;
}

static int check_layers(const struct ossb_descriptor *layers, size_t n, struct ossb_error **err)
{
        for (size_t i = 0; i < n; i++) {
                if (!layers[i].media_type || !media_type_is_valid(layers[i].media_type))
                        return ossb_error_set(err, -EINVAL, "layer %zu: invalid media type", i);
                if (!ossb_digest_is_valid(layers[i].digest))
                        return ossb_error_set(err, -EINVAL, "layer %zu: invalid digest `%s`", i, layers[i].digest);
                if (layers[i].size < 0)
                        return ossb_error_set(err, -EINVAL, "layer %zu: negative size", i);
                if (layers[i].annotations && check_annotations(layers[i].annotations, NULL) < 0)
                        return ossb_error_set(err, -EINVAL, "layer %zu: annotations must be strings", i);
        }
        return 0;
}

static int store_json(struct ossb_store *s, json_object *o, const char *media_type, struct ossb_descriptor *ret,
                      struct ossb_error **err)
{
        const char *str = ossb_json_to_string(o);
        if (!str)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        size_t len = strlen(str);
        int r = ossb_store_put(s, str, len, NULL, ret->digest, err);
        if (r < 0)
                return r;
        ret->size = (int64_t) len;
        ret->media_type = strdup(media_type);
        if (!ret->media_type)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

int ossb_image_write(struct ossb_store *s, json_object *config, const struct ossb_descriptor *layers, size_t n_layers,
                     json_object *manifest_annotations, struct ossb_descriptor *ret_manifest,
                     struct ossb_descriptor *ret_config, struct ossb_error **err)
{
        struct ossb_descriptor cd = { 0 }, md = { 0 };
        _cleanup_json_ json_object *manifest = NULL;
        int r;

        if (!config || !json_object_is_type(config, json_type_object))
                return ossb_error_set(err, -EINVAL, "the image config is not a JSON object");
        if (n_layers > 0 && !layers)
                return ossb_error_set(err, -EINVAL, "layers missing");
        if (manifest_annotations && check_annotations(manifest_annotations, NULL) < 0)
                return ossb_error_set(err, -EINVAL, "manifest annotations must be an object of strings");
        r = check_layers(layers, n_layers, err);
        if (r < 0)
                return r;
        r = store_json(s, config, OSSB_MT_OCI_CONFIG, &cd, err);
        if (r >= 0 && build_manifest(&cd, layers, n_layers, manifest_annotations, &manifest) < 0)
                r = ossb_error_set(err, -ENOMEM, "out of memory");
        if (r >= 0)
                r = store_json(s, manifest, OSSB_MT_OCI_MANIFEST, &md, err);
        if (r < 0) {
                ossb_descriptor_clear(&cd);
                ossb_descriptor_clear(&md);
                return ossb_error_wrap(err, "cannot write the image");
        }
        if (ret_config)
                *ret_config = cd;
        else
                ossb_descriptor_clear(&cd);
        if (ret_manifest)
                *ret_manifest = md;
        else
                ossb_descriptor_clear(&md);
        return 0;
}

/* ---- parsing a manifest ---- */

void ossb_manifest_free(struct ossb_manifest *m)
{
        if (!m)
                return;
        free(m->media_type);
        ossb_descriptor_clear(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                ossb_descriptor_clear(&m->layers[i]);
        free(m->layers);
        free(m);
}

static inline void manifest_freep(struct ossb_manifest **m)
{
        ossb_manifest_free(*m);
}

static int manifest_media_type(json_object *o, const char **ret, struct ossb_error **err)
{
        const char *mt;
        json_object *v;
        int r = get_string(o, "mediaType", false, &mt, err);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(o, "schemaVersion", &v) || !json_object_is_type(v, json_type_int))
                return ossb_error_set(err, -EPROTO, "`schemaVersion` is missing or not an integer");
        if (json_object_get_int64(v) != 2)
                return ossb_error_set(err, -EPROTO, "unsupported schemaVersion %lld (expected 2)",
                                      (long long) json_object_get_int64(v));
        if (!mt)
                mt = OSSB_MT_OCI_MANIFEST; /* optional in OCI manifests */
        if (streq(mt, OSSB_MT_OCI_INDEX) || streq(mt, OSSB_MT_DOCKER_LIST))
                return ossb_error_set(err, -EPROTO, "this is an image index (%s), not a manifest", mt);
        if (!streq(mt, OSSB_MT_OCI_MANIFEST) && !streq(mt, OSSB_MT_DOCKER_MANIFEST))
                return ossb_error_set(err, -EPROTO, "unsupported manifest media type `%.64s`", mt);
        *ret = mt;
        return 0;
}

static int parse_layers(json_object *arr, struct ossb_manifest *m, struct ossb_error **err)
{
        if (!json_object_is_type(arr, json_type_array))
                return ossb_error_set(err, -EPROTO, "`layers` is not an array");
        size_t n = json_object_array_length(arr);
        if (n > OSSB_MANIFEST_MAX_LAYERS)
                return ossb_error_set(err, -EPROTO, "too many layers (%zu, at most %d)", n, OSSB_MANIFEST_MAX_LAYERS);
        if (n == 0)
                return 0;
        m->layers = calloc(n, sizeof(*m->layers));
        if (!m->layers)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = ossb_descriptor_from_json(json_object_array_get_idx(arr, i), &m->layers[i], err);
                if (r < 0)
                        return ossb_error_wrap(err, "layer %zu", i);
                m->n_layers++;
        }
        return 0;
}

int ossb_manifest_parse(const char *json, size_t len, struct ossb_manifest **ret, struct ossb_error **err)
{
        _cleanup_json_ json_object *o = NULL;
        _cleanup_(manifest_freep) struct ossb_manifest *m = NULL;
        const char *mt = NULL;
        json_object *v;
        int r;

        r = ossb_json_parse(json, len, OSSB_MANIFEST_MAX_SIZE, &o, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid manifest");
        if (!json_object_is_type(o, json_type_object))
                return ossb_error_set(err, -EPROTO, "invalid manifest: not a JSON object");
        r = manifest_media_type(o, &mt, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid manifest");
        m = calloc(1, sizeof(*m));
        if (!m || !(m->media_type = strdup(mt)))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!json_object_object_get_ex(o, "config", &v))
                return ossb_error_set(err, -EPROTO, "invalid manifest: `config` is missing");
        r = ossb_descriptor_from_json(v, &m->config, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid manifest: config");
        if (!json_object_object_get_ex(o, "layers", &v))
                return ossb_error_set(err, -EPROTO, "invalid manifest: `layers` is missing");
        r = parse_layers(v, m, err);
        if (r < 0)
                return ossb_error_wrap(err, "invalid manifest");
        *ret = TAKE_PTR(m);
        return 0;
}
