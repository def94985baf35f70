/* cli/version.c - `ossb version`. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <archive.h>
#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <zstd.h>

#include "cli/cli.h"
#include "engine/engine.h"

int ossb_cmd_version(int argc, char **argv)
{
        if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                printf("Usage: ossb version\n\nPrint ossb's version, platform and library versions.\n");
                return 0;
        }
        if (argc > 1)
                return ossb_cli_usage_error("version ", "unexpected argument `%s`", argv[1]);
        printf("ossb %s\n", OSSB_VERSION);
        printf("platform: %s\n", ossb_host_platform());
        printf("libraries: %s, gnutls %s, json-c %s, zstd %s, curl %s\n", archive_version_string(),
               gnutls_check_version(NULL), json_c_version(), ZSTD_versionString(), curl_version_info(CURLVERSION_NOW)->version);
        return 0;
}
