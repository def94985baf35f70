/* registry/referrers.c - artifacts that refer to an image (see referrers.h): the referrers
 * API with its tag-schema fallback, small blob reads, and pushing an artifact manifest. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "registry/client-internal.h"
#include "registry/referrers.h"

#define MAX_REFERRERS 4096

static void referrer_clear(struct ossb_referrer *r)
{
        free(r->media_type);
        free(r->artifact_type);
        json_object_put(r->annotations);
        memset(r, 0, sizeof(*r));
}

void ossb_referrers_free(struct ossb_referrer *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                referrer_clear(&v[i]);
        free(v);
}

/* ---- requests ---- */

struct answer {
        long status;
        char *body; /* NUL-terminated, owned */
        size_t len;
        bool subject; /* an OCI-Subject header came back */
};

static void answer_clear(struct answer *a)
{
        free(a->body);
        memset(a, 0, sizeof(*a));
}

/* One request to the repository's origin: its status and body (any status but 401/403). */
static int request(struct ossb_repo *repo, const char *method, const char *path, const char *what,
                   const char *header, const void *body, size_t body_len, size_t max, struct answer *ret,
                   struct ossb_error **err)
{
        struct endpoint *ep = repo_origin(repo);
        struct call c;
        call_init(&c, repo, ep, method, what);
        c.follow = true;
        c.max_body = max;
        c.body = body;
        c.body_len = (int64_t) body_len;
        int k = call_set_url(&c, "/v2/%s/%s", ep->path, path);
        if (k >= 0 && header)
                k = call_add_header(&c, "%s", header);
        if (k < 0) {
                call_clear(&c);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&repo->r->lock);
        k = call_run(&c, err);
        long st = call_status(&c);
        if (k >= 0 && (st == 401 || st == 403))
                k = call_auth_error(&c, err);
        if (k >= 0) {
                size_t len = 0;
                const char *b = ossb_http_xfer_body(c.x, &len);
                ret->status = st;
                ret->subject = ossb_http_xfer_header(c.x, "OCI-Subject") != NULL;
                ret->body = malloc(len + 1);
                if (!ret->body)
                        k = ossb_error_set(err, -ENOMEM, "out of memory");
                else {
                        if (len)
                                memcpy(ret->body, b, len);
                        ret->body[len] = 0;
                        ret->len = len;
                }
        }
        if (k >= 0 && st != 200 && st != 201 && st != 202 && st != 404) {
                k = call_http_error(&c, err);
                answer_clear(ret);
        }
        call_clear(&c);
        pthread_mutex_unlock(&repo->r->lock);
        if (k < 0)
                ossb_error_set_exit(err, k == -EINTR ? OSSB_EXIT_INTERNAL : OSSB_EXIT_REGISTRY);
        return k;
}

/* ---- listing ---- */

static const char *str_field(json_object *o, const char *key)
{
        json_object *v;
        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v) : NULL;
}

/* The descriptor `o` as a referrer; false when it is not a usable one. */
static bool parse_referrer(json_object *o, struct ossb_referrer *r)
{
        json_object *size, *ann;
        const char *mt = str_field(o, "mediaType"), *d = str_field(o, "digest"), *at = str_field(o, "artifactType");
        if (!json_object_is_type(o, json_type_object) || !mt || !d || !ossb_digest_is_valid(d) ||
            !json_object_object_get_ex(o, "size", &size) || !json_object_is_type(size, json_type_int) ||
            json_object_get_int64(size) < 0 || strlen(mt) > 255 || (at && strlen(at) > 255))
                return false;
        memcpy(r->digest, d, sizeof(r->digest));
        r->size = json_object_get_int64(size);
        r->media_type = strdup(mt);
        r->artifact_type = at ? strdup(at) : NULL;
        if (!r->media_type || (at && !r->artifact_type)) { /* out of memory: skipped */
                referrer_clear(r);
                return false;
        }
        if (json_object_object_get_ex(o, "annotations", &ann) && json_object_is_type(ann, json_type_object))
                r->annotations = json_object_get(ann);
        return true;
}

static int parse_index(const char *data, size_t len, const char *artifact_type, struct ossb_referrer **ret,
                       size_t *ret_n, struct ossb_error **err)
{
        json_object *root = NULL, *list;
        int k = ossb_json_parse(data, len, OSSB_MANIFEST_MAX_SIZE, &root, err);
        if (k < 0)
                return k;
        size_t n = 0;
        struct ossb_referrer *v = NULL;
        if (!json_object_object_get_ex(root, "manifests", &list) || !json_object_is_type(list, json_type_array)) {
                json_object_put(root);
                return ossb_error_set(err, -EPROTO, "the referrers answer is not an image index");
        }
        size_t total = json_object_array_length(list);
        total = total > MAX_REFERRERS ? MAX_REFERRERS : total;
        v = calloc(total ? total : 1, sizeof(*v));
        for (size_t i = 0; v && i < total; i++) {
                struct ossb_referrer r = { 0 };
                if (!parse_referrer(json_object_array_get_idx(list, i), &r))
                        continue;
                if (artifact_type && (!r.artifact_type || !streq(r.artifact_type, artifact_type))) {
                        referrer_clear(&r);
                        continue;
                }
                v[n++] = r;
        }
        json_object_put(root);
        if (!v)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *ret = v;
        *ret_n = n;
        return 0;
}

static int tag_of(const char *subject, char tag[OSSB_DIGEST_STR_LEN + 1])
{
        if (!ossb_digest_is_valid(subject))
                return -EINVAL;
        snprintf(tag, OSSB_DIGEST_STR_LEN + 1, "sha256-%s", subject + 7);
        return 0;
}

int ossb_referrers_list(struct ossb_repo *repo, const char *subject, const char *artifact_type,
                        struct ossb_referrer **ret, size_t *ret_n, bool *ret_tag_schema, struct ossb_error **err)
{
        char tag[OSSB_DIGEST_STR_LEN + 1];
        if (tag_of(subject, tag) < 0)
                return ossb_error_set(err, -EINVAL, "bad subject digest `%s`", subject);
        _cleanup_free_ char *path = NULL, *what = NULL;
        if (asprintf(&path, "referrers/%s", subject) < 0 || asprintf(&what, "referrers of %s", subject) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct answer a = { 0 };
        int k = request(repo, "GET", path, what, "Accept: " OSSB_MT_OCI_INDEX, NULL, 0, OSSB_MANIFEST_MAX_SIZE, &a,
                        err);
        if (k < 0)
                return k;
        if (a.status == 200) {
                k = parse_index(a.body, a.len, artifact_type, ret, ret_n, err);
                answer_clear(&a);
                if (ret_tag_schema)
                        *ret_tag_schema = false;
                return k < 0 ? ossb_error_wrap(err, "%s: referrers of %s", ossb_repo_name(repo), subject) : k;
        }
        answer_clear(&a);
        if (ret_tag_schema)
                *ret_tag_schema = true;
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_error *e = NULL;
        k = ossb_repo_get_manifest(repo, tag, &m, &e);
        if (k == -ENOENT) {
                ossb_error_free(e);
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (k < 0) {
                if (err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
                return k;
        }
        k = parse_index(m.data, m.len, artifact_type, ret, ret_n, err);
        ossb_fetched_manifest_clear(&m);
        return k < 0 ? ossb_error_wrap(err, "%s:%s (referrers of %s)", ossb_repo_name(repo), tag, subject) : k;
}

int ossb_referrers_fetch_blob(struct ossb_repo *repo, const char *digest, int64_t size, size_t max, char **ret,
                              size_t *ret_len, struct ossb_error **err)
{
        if (!ossb_digest_is_valid(digest))
                return ossb_error_set(err, -EINVAL, "bad blob digest `%s`", digest);
        if (size > (int64_t) max)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EFBIG, "%s: blob %s has %" PRId64 " bytes, more than %zu",
                                       ossb_repo_name(repo), digest, size, max);
        _cleanup_free_ char *path = NULL, *what = NULL;
        if (asprintf(&path, "blobs/%s", digest) < 0 || asprintf(&what, "blob %s", digest) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct answer a = { 0 };
        int k = request(repo, "GET", path, what, NULL, NULL, 0, max, &a, err);
        if (k < 0)
                return k;
        char got[OSSB_DIGEST_STR_LEN + 1];
        if (a.status != 200)
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -ENOENT, "%s: blob %s is not there", ossb_repo_name(repo),
                                    digest);
        else if (ossb_sha256_digest(a.body, a.len, got) < 0)
                k = ossb_error_set(err, -ENOMEM, "out of memory");
        else if (!streq(got, digest) || (size >= 0 && (int64_t) a.len != size))
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EBADMSG, "%s: blob %s arrived as %s (%zu bytes)",
                                    ossb_repo_name(repo), digest, got, a.len);
        if (k < 0) {
                answer_clear(&a);
                return k;
        }
        *ret = TAKE_PTR(a.body);
        *ret_len = a.len;
        return 0;
}

/* ---- pushing ---- */

static int json_add(json_object *o, const char *key, json_object *v)
{
        return v && json_object_object_add(o, key, v) == 0 ? 0 : (json_object_put(v), -ENOMEM);
}

static json_object *descriptor_json(const char *media_type, const char *digest, int64_t size, const char *artifact_type,
                                    json_object *annotations)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        int k = json_add(o, "mediaType", json_object_new_string(media_type));
        if (k >= 0 && artifact_type)
                k = json_add(o, "artifactType", json_object_new_string(artifact_type));
        if (k >= 0)
                k = json_add(o, "digest", json_object_new_string(digest));
        if (k >= 0)
                k = json_add(o, "size", json_object_new_int64(size));
        if (k >= 0 && annotations)
                k = json_add(o, "annotations", json_object_get(annotations));
        if (k < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static json_object *artifact_manifest(const struct ossb_descriptor *subject, const char *artifact_type,
                                      const struct ossb_artifact_layer *layers, size_t n, json_object *annotations)
{
        json_object *m = json_object_new_object(), *ls = json_object_new_array();
        if (!m || !ls) {
                json_object_put(m);
                json_object_put(ls);
                return NULL;
        }
        int k = json_add(m, "schemaVersion", json_object_new_int(2));
        if (k >= 0)
                k = json_add(m, "mediaType", json_object_new_string(OSSB_MT_OCI_MANIFEST));
        if (k >= 0)
                k = json_add(m, "artifactType", json_object_new_string(artifact_type));
        json_object *cfg = descriptor_json(OSSB_MT_OCI_EMPTY, OSSB_OCI_EMPTY_DIGEST, 2, NULL, NULL);
        if (k >= 0 && cfg)
                k = json_add(cfg, "data", json_object_new_string("e30="));
        if (k >= 0)
                k = json_add(m, "config", cfg);
        else
                json_object_put(cfg);
        for (size_t i = 0; k >= 0 && i < n; i++) {
                json_object *d = descriptor_json(layers[i].media_type, layers[i].digest, layers[i].size, NULL,
                                                 layers[i].annotations);
                k = d && json_object_array_add(ls, d) == 0 ? 0 : (json_object_put(d), -ENOMEM);
        }
        if (k >= 0)
                k = json_add(m, "layers", json_object_get(ls));
        if (k >= 0)
                k = json_add(m, "subject", descriptor_json(subject->media_type ? subject->media_type : OSSB_MT_OCI_MANIFEST,
                                                           subject->digest, subject->size, NULL, NULL));
        if (k >= 0 && annotations)
                k = json_add(m, "annotations", json_object_get(annotations));
        json_object_put(ls);
        if (k < 0) {
                json_object_put(m);
                return NULL;
        }
        return m;
}

static int put_manifest(struct ossb_repo *repo, const char *ref, const char *media_type, const char *data, size_t len,
                        bool *ret_subject, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL, *what = NULL, *ct = NULL;
        if (asprintf(&path, "manifests/%s", ref) < 0 || asprintf(&what, "manifest %s", ref) < 0 ||
            asprintf(&ct, "Content-Type: %s", media_type) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct answer a = { 0 };
        int k = request(repo, "PUT", path, what, ct, data, len, 64 * 1024, &a, err);
        if (k >= 0 && a.status != 201 && a.status != 200)
                k = ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "%s: PUT manifest %s answered %ld: %.200s",
                                    ossb_repo_name(repo), ref, a.status, a.body ? a.body : "");
        if (k >= 0 && ret_subject)
                *ret_subject = a.subject;
        answer_clear(&a);
        return k;
}

/* Add `desc` to the tag-schema index of `subject` (read, modify, write). */
static int update_tag_index(struct ossb_repo *repo, const char *subject, json_object *desc, struct ossb_error **err)
{
        char tag[OSSB_DIGEST_STR_LEN + 1];
        tag_of(subject, tag);
        struct ossb_fetched_manifest m = { 0 };
        struct ossb_error *e = NULL;
        json_object *ix = NULL, *list = NULL;
        int k = ossb_repo_get_manifest(repo, tag, &m, &e);
        if (k >= 0)
                k = ossb_json_parse(m.data, m.len, OSSB_MANIFEST_MAX_SIZE, &ix, &e);
        ossb_fetched_manifest_clear(&m);
        if (k < 0 && k != -ENOENT) {
                if (err && !*err)
                        *err = TAKE_PTR(e);
                ossb_error_free(e);
                return k;
        }
        ossb_error_free(e);
        if (!ix || !json_object_object_get_ex(ix, "manifests", &list) || !json_object_is_type(list, json_type_array)) {
                json_object_put(ix);
                ix = json_object_new_object();
                list = json_object_new_array();
                k = ix && list ? 0 : -ENOMEM;
                if (k >= 0)
                        k = json_add(ix, "schemaVersion", json_object_new_int(2));
                if (k >= 0)
                        k = json_add(ix, "mediaType", json_object_new_string(OSSB_MT_OCI_INDEX));
                if (k >= 0)
                        k = json_add(ix, "manifests", list);
                else
                        json_object_put(list);
                if (k < 0) {
                        json_object_put(ix);
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                }
        }
        const char *want = str_field(desc, "digest");
        for (size_t i = 0; i < json_object_array_length(list); i++)
                if (streq(str_field(json_object_array_get_idx(list, i), "digest") ?: "", want)) {
                        json_object_put(ix);
                        return 0; /* already listed */
                }
        if (json_object_array_add(list, json_object_get(desc)) < 0) {
                json_object_put(desc);
                json_object_put(ix);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        const char *s = json_object_to_json_string_ext(ix, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        k = s ? put_manifest(repo, tag, OSSB_MT_OCI_INDEX, s, strlen(s), NULL, err)
              : ossb_error_set(err, -ENOMEM, "out of memory");
        json_object_put(ix);
        return k;
}

static int push_blobs(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_artifact_layer *layers,
                      size_t n, struct ossb_error **err)
{
        char d[OSSB_DIGEST_STR_LEN + 1];
        int k = ossb_store_put(store, "{}", 2, OSSB_OCI_EMPTY_DIGEST, d, err);
        _cleanup_free_ struct ossb_descriptor *descs = calloc(n + 1, sizeof(*descs));
        if (k >= 0 && !descs)
                k = ossb_error_set(err, -ENOMEM, "out of memory");
        if (k < 0)
                return k;
        descs[0] = (struct ossb_descriptor) { .media_type = (char *) OSSB_MT_OCI_EMPTY, .size = 2 };
        memcpy(descs[0].digest, OSSB_OCI_EMPTY_DIGEST, sizeof(descs[0].digest));
        for (size_t i = 0; i < n; i++) {
                descs[i + 1] = (struct ossb_descriptor) { .media_type = (char *) layers[i].media_type,
                                                          .size = layers[i].size };
                memcpy(descs[i + 1].digest, layers[i].digest, sizeof(descs[i + 1].digest));
        }
        return ossb_repo_push_blobs(repo, store, descs, n + 1, err);
}

int ossb_referrers_push(struct ossb_repo *repo, struct ossb_store *store, const struct ossb_descriptor *subject,
                        const char *artifact_type, const struct ossb_artifact_layer *layers, size_t n,
                        json_object *annotations, char ret_digest[OSSB_DIGEST_STR_LEN + 1], bool *ret_tag_schema,
                        struct ossb_error **err)
{
        int k = push_blobs(repo, store, layers, n, err);
        if (k < 0)
                return k;
        json_object *m = artifact_manifest(subject, artifact_type, layers, n, annotations);
        const char *s = m ? json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                          : NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (!s || ossb_sha256_digest(s, strlen(s), digest) < 0) {
                json_object_put(m);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        bool indexed = false;
        k = put_manifest(repo, digest, OSSB_MT_OCI_MANIFEST, s, strlen(s), &indexed, err);
        json_object *desc = NULL;
        if (k >= 0 && !indexed) {
                desc = descriptor_json(OSSB_MT_OCI_MANIFEST, digest, (int64_t) strlen(s), artifact_type, annotations);
                k = desc ? update_tag_index(repo, subject->digest, desc, err)
                         : ossb_error_set(err, -ENOMEM, "out of memory");
        }
        json_object_put(desc);
        json_object_put(m);
        if (k < 0)
                return ossb_error_wrap(err, "%s: pushing the %s artifact of %s", ossb_repo_name(repo), artifact_type,
                                       subject->digest);
        memcpy(ret_digest, digest, OSSB_DIGEST_STR_LEN + 1);
        if (ret_tag_schema)
                *ret_tag_schema = !indexed;
        log_debug("%s: artifact %s (%s) refers to %s%s", ossb_repo_name(repo), digest, artifact_type, subject->digest,
                  indexed ? "" : " (tag schema)");
        return 0;
}
