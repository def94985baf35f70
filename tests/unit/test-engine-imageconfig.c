/* tests/unit/test-engine-imageconfig.c - the image config helpers. */
#include "config.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "engine/imageconfig.h"
#include "tests/unit/tap.h"

static void test_fields(void)
{
        struct ossb_platform_spec p = { .os = "linux", .architecture = "arm", .variant = "v7" };
        json_object *img = ossb_config_new(&p);
        ASSERT(img);
        ASSERT(ossb_config_env_set(img, "A", "1") == 0);
        ASSERT(ossb_config_env_set(img, "B", "2") == 0);
        ASSERT(ossb_config_env_set(img, "A", "3") == 0);
        _cleanup_strv_free_ char **env = NULL;
        ASSERT(ossb_config_get_strv(img, "Env", &env) == 0);
        ASSERT_INTEQ(ossb_strv_length(env), 2);
        ASSERT_STREQ(env[0], "A=3");
        ASSERT_STREQ(env[1], "B=2");

        char *cmd[] = { "sh", "-c", "x", NULL };
        ASSERT(ossb_config_set_strv(img, "Cmd", cmd) == 0);
        _cleanup_strv_free_ char **got = NULL;
        ASSERT(ossb_config_get_strv(img, "Cmd", &got) == 0);
        ASSERT_STREQ(got[2], "x");
        ASSERT(ossb_config_set_strv(img, "Cmd", NULL) == 0);
        ASSERT(!strstr(json_object_to_json_string(img), "Cmd"));
        _cleanup_strv_free_ char **none = NULL;
        ASSERT(ossb_config_get_strv(img, "Cmd", &none) == 0);
        ASSERT(none == NULL);

        ASSERT(ossb_config_set_str(img, "User", "app") == 0);
        ASSERT_STREQ(ossb_config_get_str(img, "User"), "app");
        ASSERT(ossb_config_get_str(img, "WorkingDir") == NULL);
        ASSERT(ossb_config_set_add(img, "ExposedPorts", "80/tcp") == 0);
        ASSERT(ossb_config_label_set(img, "k", "v") == 0);
        ASSERT(ossb_config_add_history(img, "2023-11-14T22:13:20Z", "ENV A=1", true) == 0);
        ASSERT(ossb_config_add_diff_id(img, "sha256:00") == 0);
        ASSERT(ossb_config_set_created(img, "2023-11-14T22:13:20Z") == 0);

        json_object *copy = ossb_config_copy(img);
        ASSERT(copy);
        const char *s = json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN);
        ASSERT(strstr(s, "\"variant\":\"v7\""));
        ASSERT(strstr(s, "\"ExposedPorts\":{\"80\\/tcp\":{}}"));
        ASSERT(strstr(s, "\"Labels\":{\"k\":\"v\"}"));
        ASSERT(strstr(s, "\"empty_layer\":true"));
        ASSERT(strstr(s, "\"diff_ids\":[\"sha256:00\"]"));
        ASSERT(strstr(s, "\"comment\":\"buildkit.dockerfile.v0\""));
        json_object_put(copy);
        json_object_put(img);
}

static void test_time(void)
{
        char buf[64];
        ossb_format_time(1700000000, 0, buf, sizeof(buf));
        ASSERT_STREQ(buf, "2023-11-14T22:13:20Z");
        ossb_format_time(1700000000, 120000000, buf, sizeof(buf));
        ASSERT_STREQ(buf, "2023-11-14T22:13:20.12Z");
        ossb_format_time(0, 1, buf, sizeof(buf));
        ASSERT_STREQ(buf, "1970-01-01T00:00:00.000000001Z");
}

int main(void)
{
        RUN_TEST(test_fields);
        RUN_TEST(test_time);
        TAP_END();
}
