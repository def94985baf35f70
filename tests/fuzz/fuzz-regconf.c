/* tests/fuzz/fuzz-regconf.c - libFuzzer target for registry/regconf.c: ossb_regconf_parse on
 * arbitrary bytes, then matching, rewriting and the insecure rules on what it produced.
 *
 * Checks: a failure is -EINVAL/-EFBIG (or -ENOMEM) with a "fuzz.conf:LINE: " message and adds no
 * registry; a success gives registries with a prefix (a location unless the prefix is a
 * wildcard) and mirrors with a location, each matched by its own prefix.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "registry/regconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_registry(const struct ossb_regconf *c, const struct ossb_regconf_registry *r)
{
        if (!r->prefix || !r->prefix[0] || (!r->location && r->prefix[0] != '*'))
                abort();
        if (r->prefix[0] != '*') {
                const struct ossb_regconf_registry *m = ossb_regconf_match(c, r->prefix);
                if (!m || strlen(m->prefix) < strlen(r->prefix))
                        abort();
                char *s = NULL;
                if (ossb_regconf_rewrite(r, r->location, r->prefix, &s) == 0) {
                        if (strcmp(s, r->location) != 0)
                                abort();
                        free(s);
                }
        }
        if (r->location)
                (void) ossb_regconf_insecure(c, r->location);
        for (size_t i = 0; i < r->n_mirrors; i++) {
                if (!r->mirrors[i].location || !r->mirrors[i].location[0])
                        abort();
                (void) ossb_regconf_insecure(c, r->mirrors[i].location);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ossb_regconf *c = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        if (ossb_regconf_new(NULL, NULL, NULL, NULL, &c, NULL) < 0)
                return 0;
        int r = ossb_regconf_parse(c, "fuzz.conf", (const char *) data, size, &e);
        if (r < 0) {
                if ((r != -EINVAL && r != -EFBIG && r != -ENOMEM) || !e || c->n_registries != 0)
                        abort();
                if (r != -ENOMEM && (!e->msg || strncmp(e->msg, "fuzz.conf:", 10) != 0))
                        abort();
        } else {
                if (e)
                        abort();
                for (size_t i = 0; i < c->n_registries; i++)
                        check_registry(c, &c->registries[i]);
        }
        ossb_regconf_free(c);
        return 0;
}
