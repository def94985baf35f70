/* tests/fuzz/fuzz-dockerfile.c - libFuzzer target for the Dockerfile parser and instructions:
 * parse, both dumps, the stage plan, stage lookup, and the ONBUILD triggers the plan stores
 * (parsed back as a base image's triggers would be).  Everything is freed, so leaks show.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void triggers(const struct ossb_df_inst *insts, size_t n)
{
        for (size_t k = 0; k < n; k++) {
                if (insts[k].kind != OSSB_DF_ONBUILD || !insts[k].onbuild)
                        continue;
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                struct ossb_df_inst *i = NULL;
                if (ossb_df_parse_trigger(insts[k].onbuild, &df, &i, &err) >= 0)
                        ossb_df_inst_free(i);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_df_plan_ struct ossb_df_plan *plan = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        _cleanup_free_ char *json = NULL, *dump = NULL;

        if (ossb_dockerfile_parse("fuzz", (const char *) data, size, &df, &err) < 0)
                return 0;
        if (ossb_dockerfile_to_json(df, &json) < 0 || ossb_dockerfile_dump(df, &dump) < 0)
                abort(); /* only ENOMEM can fail these */
        if (ossb_df_plan_new(df, &plan, &err) < 0)
                return 0;
        for (size_t s = 0; s < plan->n_stages; s++) {
                const struct ossb_df_stage *st = &plan->stages[s];
                if (st->name && ossb_df_plan_find_stage(plan, st->name) != st)
                        abort();
                triggers(st->insts, st->n_insts);
        }
        ossb_df_plan_find_stage(plan, "0");
        return 0;
}
