/* tests/fuzz/fuzz-run-mount.c - libFuzzer target for the RUN --mount and --secret parsers
 * (engine/run-mounts.c).
 *
 * Input: one byte of options (bit 0: expand values with a toy expander that doubles every
 * `$`, failing on "$!"), then the spec.  Checks that failures carry a message and a usage
 * exit code and leave nothing set, that successes hold the invariants the preparation relies
 * on (a known type, sharing only for cache, uid/gid/mode only where allowed, a secret has an
 * id, a source or a target, no negative size), and that a parsed spec parses again to the same result when
 * re-rendered as a quoted CSV record.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/run-mounts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int toy_expand(void *userdata, const char *word, char **ret, struct ossb_error **err)
{
        (void) userdata;
        if (strstr(word, "$!"))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "bad substitution");
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (const char *c = word; *c; c++)
                if (ossb_strbuf_append_c(&sb, *c) < 0 || (*c == '$' && ossb_strbuf_append_c(&sb, '$') < 0)) {
                        ossb_strbuf_free(&sb);
                        return -ENOMEM;
                }
        *ret = ossb_strbuf_steal(&sb);
        return *ret || (*ret = strdup("")) ? 0 : -ENOMEM;
}

static void check_ok(const struct ossb_run_mount *m)
{
        if ((unsigned) m->type > OSSB_MOUNT_SSH)
                abort();
        if (m->sharing != OSSB_SHARING_UNSET && m->type != OSSB_MOUNT_CACHE)
                abort();
        bool info = m->type == OSSB_MOUNT_CACHE || m->type == OSSB_MOUNT_SECRET || m->type == OSSB_MOUNT_SSH;
        if (!info && (m->uid_set || m->gid_set || m->mode_set))
                abort();
        if (m->type == OSSB_MOUNT_SECRET && !(m->id && *m->id) && !(m->source && *m->source) &&
            !(m->target && *m->target))
                abort();
        if (m->size < 0)
                abort();
}

/* "key=value" fields, each quoted, for the re-parse check (no expansion). */
static char *render(const struct ossb_run_mount *m)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        const char *kv[][2] = { { "target", m->target }, { "source", m->source }, { "from", m->from },
                                { "id", m->id }, { "env", m->env } };
        static const char *const sharing[] = { NULL, "shared", "private", "locked" };
        bool ok = ossb_strbuf_appendf(&sb, "type=%s,readonly=%s", ossb_run_mount_type_name(m->type),
                                      m->readonly ? "true" : "false") >= 0;
        for (size_t i = 0; ok && i < sizeof(kv) / sizeof(kv[0]); i++) {
                if (!kv[i][1])
                        continue;
                ok = ossb_strbuf_appendf(&sb, ",\"%s=", kv[i][0]) >= 0;
                for (const char *c = kv[i][1]; ok && *c; c++)
                        ok = ossb_strbuf_append_n(&sb, c, 1) >= 0 && (*c != '"' || ossb_strbuf_append_c(&sb, '"') >= 0);
                ok = ok && ossb_strbuf_append_c(&sb, '"') >= 0;
        }
        if (ok && m->required && (m->type == OSSB_MOUNT_SECRET || m->type == OSSB_MOUNT_SSH))
                ok = ossb_strbuf_append(&sb, ",required") >= 0;
        if (ok && m->sharing)
                ok = ossb_strbuf_appendf(&sb, ",sharing=%s", sharing[m->sharing]) >= 0;
        if (ok && m->uid_set)
                ok = ossb_strbuf_appendf(&sb, ",uid=%u", m->uid) >= 0;
        if (ok && m->gid_set)
                ok = ossb_strbuf_appendf(&sb, ",gid=%u", m->gid) >= 0;
        if (ok && m->mode_set)
                ok = ossb_strbuf_appendf(&sb, ",mode=%o", m->mode) >= 0;
        if (ok && m->size && m->type == OSSB_MOUNT_TMPFS)
                ok = ossb_strbuf_appendf(&sb, ",size=%lld", (long long) m->size) >= 0;
        if (!ok) {
                ossb_strbuf_free(&sb);
                return NULL;
        }
        return ossb_strbuf_steal(&sb);
}

static bool same_str(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_reparse(const struct ossb_run_mount *m)
{
        /* `from` with a variable-like `$` cannot be written back; values with NULs never occur */
        if (m->from && strchr(m->from, '$'))
                return;
        _cleanup_free_ char *again = render(m);
        if (!again)
                return;
        struct ossb_run_mount m2;
        struct ossb_error *e = NULL;
        if (ossb_run_mount_parse(again, NULL, NULL, &m2, &e) < 0) {
                bool nomem = e && e->code == -ENOMEM;
                ossb_error_free(e);
                if (nomem)
                        return;
                abort();
        }
        /* `required` and `size` set before a later type= stay (as in BuildKit) but mean nothing
         * for that type: compared only where they apply */
        bool req = m->type == OSSB_MOUNT_SECRET || m->type == OSSB_MOUNT_SSH, tmpfs = m->type == OSSB_MOUNT_TMPFS;
        if (m2.type != m->type || m2.readonly != m->readonly || (req && m2.required != m->required) ||
            m2.sharing != m->sharing || m2.uid != m->uid || m2.gid != m->gid || m2.mode != m->mode ||
            (tmpfs && m2.size != m->size) || !same_str(m2.target, m->target) || !same_str(m2.source, m->source) ||
            !same_str(m2.from, m->from) || !same_str(m2.id, m->id) || !same_str(m2.env, m->env))
                abort();
        ossb_run_mount_clear(&m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 1 << 14)
                return 0;
        bool expand = data[0] & 1;
        _cleanup_free_ char *spec = strndup((const char *) data + 1, size - 1);
        if (!spec)
                return 0;

        struct ossb_run_mount m;
        struct ossb_error *e = NULL;
        int r = ossb_run_mount_parse(spec, expand ? toy_expand : NULL, NULL, &m, &e);
        if (r < 0) {
                if (!e || !e->msg || (e->code != -ENOMEM && e->exit_code != OSSB_EXIT_USAGE))
                        abort();
                ossb_error_free(e);
        } else {
                if (e)
                        abort();
                check_ok(&m);
                check_reparse(&m);
                ossb_run_mount_clear(&m);
        }

        struct ossb_secret_spec s;
        e = NULL;
        r = ossb_secret_spec_parse(spec, &s, &e);
        if (r < 0) {
                if (!e || !e->msg)
                        abort();
                ossb_error_free(e);
        } else {
                if (!s.id || !*s.id || (!s.file == !s.env))
                        abort();
                ossb_secret_spec_clear(&s);
        }

        _cleanup_strv_free_ char **names = NULL;
        char *specs[2] = { spec, NULL };
        if (ossb_run_mounts_from_names(specs, &names) == 0 && names && names[0] && !*names[0])
                abort();
        return 0;
}
