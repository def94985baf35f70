/* tests/fuzz/fuzz-manifest.c - libFuzzer target for oci/image.c: ossb_manifest_parse (and through
 * it the strict JSON reader and ossb_descriptor_from_json) on arbitrary bytes.
 *
 * Checks: a failure is -EPROTO or -ENOMEM with a message; a success gives a manifest of a
 * supported media type whose descriptors are valid and survive a round trip through JSON.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "oci/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_descriptor(const struct ossb_descriptor *d)
{
        struct ossb_descriptor back = { 0 };
        if (!d->media_type || !ossb_digest_is_valid(d->digest) || d->size < 0)
                abort();
        json_object *o = ossb_descriptor_to_json(d);
        if (!o)
                return; /* out of memory */
        if (ossb_descriptor_from_json(o, &back, NULL) < 0)
                abort();
        if (strcmp(back.media_type, d->media_type) != 0 || strcmp(back.digest, d->digest) != 0 ||
            back.size != d->size || !back.annotations != !d->annotations)
                abort();
        ossb_descriptor_clear(&back);
        json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ossb_manifest *m = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = ossb_manifest_parse((const char *) data, size, &m, &e);
        if (r < 0) {
                if ((r != -EPROTO && r != -ENOMEM) || !e || !e->msg || e->code != r || m)
                        abort();
                return 0;
        }
        if (e || !m || !m->media_type)
                abort();
        if (strcmp(m->media_type, OSSB_MT_OCI_MANIFEST) != 0 && strcmp(m->media_type, OSSB_MT_DOCKER_MANIFEST) != 0)
                abort();
        if (m->n_layers > OSSB_MANIFEST_MAX_LAYERS || (m->n_layers > 0 && !m->layers))
                abort();
        check_descriptor(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                check_descriptor(&m->layers[i]);
        ossb_manifest_free(m);
        return 0;
}
