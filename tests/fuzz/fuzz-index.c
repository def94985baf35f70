/* tests/fuzz/fuzz-index.c - libFuzzer target for oci/platform.c: ossb_index_parse (and through it
 * the strict JSON reader and ossb_descriptor_from_json), ossb_index_select and ossb_is_index on
 * arbitrary bytes.
 *
 * Checks: a failure is -EPROTO or -ENOMEM with a message; a success is an index of a supported
 * media type, within the entry bound, whose descriptors are valid and whose platforms hold only
 * valid fields; selection returns an entry of the index (never an attestation) or -ENOENT
 * with a message; every parsed index is recognised by ossb_is_index.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "oci/platform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s, bool may_be_empty)
{
        size_t n = strnlen(s, 32);
        if (n >= 32 || (!may_be_empty && n == 0))
                abort();
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      strchr("._-", s[i])))
                        abort();
}

static void check_select(const struct ossb_index *ix, const char *want)
{
        struct ossb_platform p;
        const struct ossb_index_entry *e = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_platform_parse(want, &p, NULL) < 0)
                abort();
        int r = ossb_index_select(ix, &p, "fuzz", &e, &err);
        if (r == 0) {
                if (!e || e < ix->entries || e >= ix->entries + ix->n_entries || err || e->bad_platform)
                        abort();
                if (e->has_platform && (!strcmp(e->platform.os, "unknown") || !strcmp(e->platform.architecture, "unknown")))
                        abort();
                if (e->has_platform && !ossb_platform_match(&p, &e->platform))
                        abort();
        } else if ((r != -ENOENT && r != -ENOMEM) || !err || !err->msg)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ossb_index *ix = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_index_parse((const char *) data, size, &ix, &e);
        if (r < 0) {
                if ((r != -EPROTO && r != -ENOMEM) || !e || !e->msg || e->code != r || ix)
                        abort();
                return 0;
        }
        if (e || !ix || !ix->media_type)
                abort();
        if (strcmp(ix->media_type, OSSB_MT_OCI_INDEX) != 0 && strcmp(ix->media_type, OSSB_MT_DOCKER_LIST) != 0)
                abort();
        if (ix->n_entries > 4096 || (ix->n_entries > 0 && !ix->entries))
                abort();
        for (size_t i = 0; i < ix->n_entries; i++) {
                const struct ossb_index_entry *en = &ix->entries[i];
                if (!en->desc.media_type || !ossb_digest_is_valid(en->desc.digest) || en->desc.size < 0)
                        abort();
                if (en->has_platform && en->bad_platform)
                        abort();
                if (en->has_platform) {
                        check_field(en->platform.os, false);
                        check_field(en->platform.architecture, false);
                        check_field(en->platform.variant, true);
                }
        }
        check_select(ix, "linux/amd64");
        check_select(ix, "linux/arm/v7");
        check_select(ix, "linux/arm64");
        if (!ossb_is_index(NULL, (const char *) data, size))
                abort();
        ossb_index_free(ix);
        return 0;
}
