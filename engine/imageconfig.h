/* engine/imageconfig.h - the image config (json-c tree) as the engine edits it, step by step.
 *
 * Owns: helpers over a json_object image config: {created, author, architecture, os, variant,
 * config: {User, ExposedPorts, Env, Entrypoint, Cmd, Volumes, WorkingDir, Labels, StopSignal,
 * Healthcheck, OnBuild, Shell, ...}, rootfs: {type, diff_ids}, history: [...]}.  Fields the
 * engine does not know (e.g. from a base image) are kept untouched.
 */
#ifndef OSSB_ENGINE_IMAGECONFIG_H
#define OSSB_ENGINE_IMAGECONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

struct ossb_platform_spec {
        char os[32];
        char architecture[32];
        char variant[32]; /* "" when none */
};

/* A new empty config for a platform (FROM scratch); NULL on ENOMEM. */
json_object *ossb_config_new(const struct ossb_platform_spec *p);
/* The "config" sub-object (created when missing); borrowed. */
json_object *ossb_config_container(json_object *img);

/* String vector fields (Env, Cmd, Entrypoint, Shell, OnBuild): *ret is a copy (NULL when the
 * field is absent or null). */
int ossb_config_get_strv(json_object *img, const char *field, char ***ret);
/* Set a string vector field; v == NULL removes it. */
int ossb_config_set_strv(json_object *img, const char *field, char *const *v);
/* String field (User, WorkingDir, StopSignal); NULL when absent. Borrowed. */
const char *ossb_config_get_str(json_object *img, const char *field);
int ossb_config_set_str(json_object *img, const char *field, const char *v);
/* Env: set NAME=value, replacing an earlier NAME. */
int ossb_config_env_set(json_object *img, const char *name, const char *value);
/* Object-of-empty-objects fields (ExposedPorts, Volumes): add a key. */
int ossb_config_set_add(json_object *img, const char *field, const char *key);
/* Labels: set key to value. */
int ossb_config_label_set(json_object *img, const char *key, const char *value);
/* Replace a field with a new json value (ownership of v taken). */
int ossb_config_set_json(json_object *img, const char *field, json_object *v);

/* Append a history entry; created may be NULL (omitted). */
int ossb_config_add_history(json_object *img, const char *created, const char *created_by, bool empty_layer);
/* Append a diff id to rootfs.diff_ids. */
int ossb_config_add_diff_id(json_object *img, const char *diff_id);
/* Set top-level "created". */
int ossb_config_set_created(json_object *img, const char *created);

/* Put the keys in the order BuildKit writes them (top level: architecture, author, config,
 * created, history, os, rootfs; config: User, ExposedPorts, Env, Entrypoint, Cmd, Volumes,
 * WorkingDir, Labels, StopSignal, Healthcheck, OnBuild (null when unset), Shell; unknown keys
 * after), with the keys of ExposedPorts, Volumes and Labels sorted.  *img is replaced. */
int ossb_config_finalize(json_object **img);

/* Deep copy; NULL on failure. */
json_object *ossb_config_copy(json_object *img);

/* RFC 3339 UTC timestamp ("2006-01-02T15:04:05.999999999Z" form, like Go's RFC3339Nano) for
 * sec/nsec; writes into buf (at least 40 bytes). */
void ossb_format_time(int64_t sec, long nsec, char *buf, size_t size);

#endif
