/* cli/registry.c - the registry options every command that talks to registries takes, and
 * what pull, push and inspect share: opening the store and the client. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"

const char ossb_cli_registry_help[] =
        "Registry options:\n"
        "      --registry-auth-file FILE  Credentials (Docker config.json or containers auth.json\n"
        "                               format, e.g. a mounted kubernetes.io/dockerconfigjson\n"
        "                               secret); then $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json\n"
        "                               or ~/.docker/config.json (incl. credential helpers), then\n"
        "                               $XDG_RUNTIME_DIR/containers/auth.json\n"
        "      --insecure-registry HOST[:PORT]  Allow plain HTTP and unverified TLS for HOST\n"
        "                               (repeatable; localhost and 127.0.0.0/8 always are)\n"
        "      --registry-mirror URL    A mirror of docker.io, tried before it (repeatable)\n"
        "      --registries-conf FILE   registries.conf-style file: mirrors, insecure and blocked\n"
        "                               registries (default $CONTAINERS_REGISTRIES_CONF)\n"
        "      --cert-dir DIR           Extra TLS files: DIR/HOST:PORT/{ca.crt,client.cert,client.key},\n"
        "                               searched before /etc/containers/certs.d and /etc/docker/certs.d\n";

void ossb_cli_registry_clear(struct ossb_cli_registry *r)
{
        ossb_strv_free(r->insecure);
        ossb_strv_free(r->mirrors);
        ossb_regconf_free(r->conf);
        memset(r, 0, sizeof(*r));
}

int ossb_cli_registry_option(struct ossb_cli_registry *r, int opt, const char *arg)
{
        switch (opt) {
        case OSSB_OPT_REGISTRY_AUTH_FILE:
                r->auth_file = arg;
                return 1;
        case OSSB_OPT_INSECURE_REGISTRY:
                return ossb_strv_push(&r->insecure, arg) < 0 ? -1 : 1;
        case OSSB_OPT_REGISTRY_MIRROR:
                return ossb_strv_push(&r->mirrors, arg) < 0 ? -1 : 1;
        case OSSB_OPT_REGISTRIES_CONF:
                r->conf_file = arg;
                return 1;
        case OSSB_OPT_CERT_DIR:
                r->cert_dir = arg;
                return 1;
        default:
                return 0;
        }
}

int ossb_cli_registry_load(struct ossb_cli_registry *r, struct ossb_error **err)
{
        const char *conf = r->conf_file;
        if (!conf) {
                const char *env = secure_getenv("CONTAINERS_REGISTRIES_CONF");
                if (env && *env)
                        conf = env;
        }
        return ossb_regconf_new(r->insecure, r->mirrors, conf, r->cert_dir, &r->conf, err);
}

int ossb_cli_session_open(struct ossb_cli_session *s, const char *cache_dir_flag, enum ossb_progress_mode progress,
                          struct ossb_error **err)
{
        _cleanup_free_ char *cache = ossb_cli_cache_dir(cache_dir_flag);
        if (!cache)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                       "no cache directory: set --cache-dir, $OSSB_CACHE_DIR or $HOME");
        _cleanup_free_ char *store = ossb_path_join(cache, "store");
        if (!store)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int r = ossb_mkdir_p(cache, 0700);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create cache directory `%s`: %s", cache, strerror(-r));
        r = ossb_store_open(store, &s->store, err);
        if (r < 0)
                return r;
        r = ossb_cli_registry_load(&s->reg_opts, err);
        if (r < 0)
                return r;
        ossb_transfer_display_init(&s->display, ossb_progress_display_mode(progress));
        struct ossb_registry_opts o = {
                .conf = s->reg_opts.conf,
                .auth_file = s->reg_opts.auth_file,
                .progress = ossb_transfer_display_event,
                .progress_userdata = &s->display,
        };
        return ossb_registry_new(&o, &s->reg, err);
}

void ossb_cli_session_close(struct ossb_cli_session *s)
{
        ossb_registry_free(s->reg);
        ossb_store_free(s->store);
        ossb_cli_registry_clear(&s->reg_opts);
}
