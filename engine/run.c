/* engine/run.c - RUN: the command line, environment and user of the step, a snapshot of the
 * stage root (snapshotter/), its --mount values (engine/run-mounts*.c) and the build's
 * resource limits, the sandbox (engine/exec/), then the snapshot's diff as the step's layer
 * and its changes committed into the stage root for the next steps. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/copy.h"
#include "engine/exec/exec.h"
#include "engine/replay.h"
#include "engine/run-mounts.h"
#include "snapshotter/snapshotter.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

/* What this version refuses, clearly, instead of running something else. */
static int check_flags(struct build *b, const struct ossb_df_inst *inst, bool *ret_none, struct ossb_error **err)
{
        *ret_none = b->opts->network_none;
        if (inst->run_security && !streq(inst->run_security, "sandbox"))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTSUP, "RUN --security=%s is not supported",
                                       inst->run_security);
        if (inst->run_devices && inst->run_devices[0])
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTSUP, "RUN --device is not supported");
        if (inst->run_network) {
                if (streq(inst->run_network, "none"))
                        *ret_none = true;
                else if (streq(inst->run_network, "host") || streq(inst->run_network, "default"))
                        *ret_none = b->opts->network_none && streq(inst->run_network, "default");
                else
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "RUN --network=%s: expected default, none or host", inst->run_network);
        }
        return 0;
}

/* The command: exec form as written; shell form through SHELL; a RUN whose command is one
 * heredoc runs the heredoc's text with the shell (as BuildKit does). */
static int run_argv(struct stage_state *s, const struct ossb_df_inst *inst, char ***ret, struct ossb_error **err)
{
        const struct ossb_df_instruction *node = inst->node;
        if (!inst->command.json && node && node->n_heredocs > 0) {
                struct ossb_df_heredoc h = { 0 };
                _cleanup_free_ char *cmd = strdup(inst->command.argv && inst->command.argv[0] ? inst->command.argv[0] : "");
                if (!cmd)
                        return oom(err);
                /* the command line is the heredoc word alone (spaces around it allowed) */
                char *word = cmd + strspn(cmd, " \t");
                word[strcspn(word, " \t\n")] = '\0';
                int r = ossb_df_heredoc_parse_word(word, &h, NULL);
                bool only = r > 0 && node->n_heredocs == 1 && h.fd == 0;
                ossb_df_heredoc_clear(&h);
                if (!only)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTSUP,
                                               "RUN with heredocs other than one `RUN <<EOF` script is not supported yet");
                const struct ossb_df_heredoc *doc = &node->heredocs[0];
                _cleanup_free_ char *text = NULL;
                if (doc->chomp ? ossb_df_heredoc_chomp(doc->content, &text) < 0 : !(text = strdup(doc->content)))
                        return oom(err);
                struct ossb_df_command c = { .json = false };
                char *argv1[2] = { text, NULL };
                c.argv = argv1;
                if (ossb_command_argv(s, &c, ret) < 0)
                        return oom(err);
                return 0;
        }
        if (ossb_command_argv(s, &inst->command, ret) < 0)
                return oom(err);
        if (!(*ret)[0])
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "RUN needs a command");
        return 0;
}

/* The environment: the stage's ARGs and the config's Env (Env wins), PATH when missing. */
static int run_env(struct stage_state *s, char ***ret, struct ossb_error **err)
{
        char **env = ossb_stage_env(s);
        if (!env)
                return oom(err);
        /* the last assignment of a name wins: drop earlier ones */
        _cleanup_strv_free_ char **out = ossb_strv_new_empty();
        bool have_path = false;
        for (size_t i = 0; out && env[i]; i++) {
                size_t n = strcspn(env[i], "=");
                bool later = false;
                for (size_t k = i + 1; env[k] && !later; k++)
                        later = strncmp(env[k], env[i], n) == 0 && env[k][n] == '=';
                have_path |= strncmp(env[i], "PATH=", 5) == 0;
                if (!later && ossb_strv_push(&out, env[i]) < 0) {
                        ossb_strv_free(env);
                        return oom(err);
                }
        }
        ossb_strv_free(env);
        if (!out || (!have_path && ossb_strv_push(&out, DEFAULT_PATH) < 0))
                return oom(err);
        *ret = TAKE_PTR(out);
        return 0;
}

/* Split a passwd/group line at ':' into at most n fields (NULL for those missing). */
static void split_fields(char *line, char **f, int n)
{
        char *p = line;
        for (int i = 0; i < n; i++) {
                f[i] = p;
                if (p && (p = strchr(p, ':')))
                        *p++ = '\0';
        }
}

/* Supplementary groups: the primary group first (as BuildKit's executor and runc give it),
 * then the groups of the root's /etc/group that list `user` (its name) as a member. */
static int run_groups(const struct ossb_tree *root, const char *user, gid_t primary, gid_t **ret, size_t *ret_n)
{
        _cleanup_free_ char *path = ossb_tree_abs(root, "etc/group"), *data = NULL;
        size_t len = 0, n = 1;
        gid_t *g = malloc(sizeof(gid_t));
        *ret = NULL;
        *ret_n = 0;
        if (!path || !g)
                return free(g), -ENOMEM;
        g[0] = primary;
        if (!user || !*user || ossb_read_file(path, 4u << 20, &data, &len, NULL) < 0) {
                *ret = g;
                *ret_n = n;
                return 0;
        }
        _cleanup_free_ char *name = strndup(user, strcspn(user, ":"));
        if (!name)
                return -ENOMEM;
        for (char *line = data, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                /* name:x:gid:member,member */
                char *f[4];
                split_fields(line, f, 4);
                if (!f[3] || !f[2] || !*f[2])
                        continue;
                char *end = NULL;
                unsigned long gid = strtoul(f[2], &end, 10);
                if (*end || (gid_t) gid == primary)
                        continue;
                for (char *m = f[3], *mn; m && *m; m = mn) {
                        mn = strchr(m, ',');
                        if (mn)
                                *mn++ = '\0';
                        if (!streq(m, name))
                                continue;
                        gid_t *ng = realloc(g, (n + 1) * sizeof(*ng));
                        if (!ng) {
                                free(g);
                                return -ENOMEM;
                        }
                        g = ng;
                        g[n++] = (gid_t) gid;
                        break;
                }
        }
        *ret = g;
        *ret_n = n;
        return 0;
}

/* HOME for a RUN whose environment has none, as runc (BuildKit's executor) and buildah set
 * it: the home directory of `uid` in the root's /etc/passwd, else "/". */
static char *run_home(const struct ossb_tree *root, uid_t uid)
{
        _cleanup_free_ char *path = ossb_tree_abs(root, "etc/passwd"), *data = NULL;
        size_t len = 0;
        if (path && ossb_read_file(path, 4u << 20, &data, &len, NULL) >= 0) {
                for (char *line = data, *next; line && *line; line = next) {
                        next = strchr(line, '\n');
                        if (next)
                                *next++ = '\0';
                        /* name:x:uid:gid:gecos:home:shell */
                        char *f[7];
                        split_fields(line, f, 7);
                        char *end = NULL;
                        if (!f[5] || !f[2] || !*f[2] || strtoul(f[2], &end, 10) != uid || *end || !*f[5])
                                continue;
                        char *r = NULL;
                        return asprintf(&r, "HOME=%s", f[5]) < 0 ? NULL : r;
                }
        }
        return strdup("HOME=/");
}

/* BuildKit's history text: "RUN |2 A=1 B=2 /bin/sh -c cmd # buildkit" (the build args the
 * step sees that ENV does not override). */
static char *run_history(struct stage_state *s, char *const *argv)
{
        _cleanup_strv_free_ char **cfg_env = NULL, **used = NULL;
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (ossb_config_get_strv(s->img, "Env", &cfg_env) < 0)
                return NULL;
        for (size_t i = 0; s->args && s->args[i]; i++)
                if (!ossb_strv_contains(cfg_env, s->args[i]) && ossb_strv_push(&used, s->args[i]) < 0)
                        return NULL;
        if (ossb_strbuf_append(&sb, "RUN") < 0)
                return NULL;
        size_t n = ossb_strv_length(used);
        if (n && ossb_strbuf_appendf(&sb, " |%zu", n) < 0)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (ossb_strbuf_appendf(&sb, " %s", used[i]) < 0)
                        return NULL;
        for (size_t i = 0; argv[i]; i++)
                if (ossb_strbuf_appendf(&sb, " %s", argv[i]) < 0)
                        return NULL;
        if (ossb_strbuf_append(&sb, " # buildkit") < 0)
                return NULL;
        return ossb_strbuf_steal(&sb);
}

struct run_out {
        struct build *b;
        int id;
};

static void on_output(void *userdata, bool is_stderr, const char *line, size_t len)
{
        struct run_out *o = userdata;
        (void) is_stderr;
        ossb_progress_note(o->b, o->id, "%.*s", (int) len, line);
}

/* Build the sandbox spec's user part from the config's USER. */
static int run_user(struct stage_state *s, uid_t *uid, gid_t *gid, gid_t **groups, size_t *n_groups,
                    struct ossb_error **err)
{
        const char *user = ossb_config_get_str(s->img, "User");
        *uid = 0;
        *gid = 0;
        if (user && *user) {
                int r = ossb_chown_parse(&s->root, user, uid, gid, err);
                if (r < 0)
                        return ossb_error_wrap(err, "USER %s", user);
        }
        return run_groups(&s->root, user, *gid, groups, n_groups) < 0 ? oom(err) : 0;
}

struct run_job {
        const struct ossb_df_inst *inst;
        char **argv;
        char **env;
        char **spec_env;        /* env + the secrets' variables (borrowed pointers) */
        struct ossb_run_mounts *mounts;
        gid_t *groups;
        size_t n_groups;
        uid_t uid;
        gid_t gid;
        bool net_none;
        char *scratch;
        struct ossb_snapshot *snap;
        struct ossb_exec_result res;
};

static void run_job_clear(struct run_job *j)
{
        ossb_strv_free(j->argv);
        ossb_strv_free(j->env);
        free(j->spec_env);
        ossb_run_mounts_free(j->mounts);
        free(j->groups);
        ossb_snapshot_free(j->snap);
        free(j->scratch);
        ossb_exec_result_clear(&j->res);
}

static int run_failed(const struct run_job *j, struct ossb_error **err)
{
        _cleanup_free_ char *cmd = ossb_strv_join(j->argv, " ");
        return ossb_error_setx(err, OSSB_EXIT_BUILD, -ECHILD, "RUN %s %s %d%s%s%s", cmd ? cmd : "",
                               j->res.signaled ? "was killed by signal" : "exited with code",
                               j->res.signaled ? j->res.exit_code - 128 : j->res.exit_code,
                               j->res.oom_killed ? " (out of memory: the --memory limit was reached)" : "",
                               j->res.tail && *j->res.tail ? "; its last output:\n" : "",
                               j->res.tail ? j->res.tail : "");
}

/* HOME from the user's passwd entry when neither ENV nor an ARG set it. */
static int run_add_home(struct stage_state *s, struct run_job *j, struct ossb_error **err)
{
        for (size_t i = 0; j->env[i]; i++)
                if (strncmp(j->env[i], "HOME=", 5) == 0)
                        return 0;
        char *home = run_home(&s->root, j->uid);
        if (!home || ossb_strv_consume(&j->env, home) < 0)
                return oom(err);
        return 0;
}

/* The command's environment: the step's, with the secrets' variables (which win). */
static int run_spec_env(struct run_job *j, struct ossb_error **err)
{
        char *const *secrets = j->mounts ? ossb_run_mounts_env(j->mounts) : NULL;
        size_t n = ossb_strv_length(j->env), k = ossb_strv_length(secrets), o = 0;
        j->spec_env = calloc(n + k + 1, sizeof(char *));
        if (!j->spec_env)
                return oom(err);
        for (size_t i = 0; i < n; i++) {
                size_t len = strcspn(j->env[i], "=");
                bool shadowed = false;
                for (size_t m = 0; m < k && !shadowed; m++)
                        shadowed = strncmp(secrets[m], j->env[i], len) == 0 && secrets[m][len] == '=';
                if (!shadowed)
                        j->spec_env[o++] = j->env[i];
        }
        for (size_t m = 0; m < k; m++)
                j->spec_env[o++] = secrets[m];
        return 0;
}

/* Leave the sandbox's mount points out of the layer: those it created (and not the
 * directories it made to hold them: the snapshotter drops those when they hold nothing else,
 * and keeps what the command put there). */
static int run_exclude(struct run_job *j, struct ossb_error **err)
{
        char **c = j->res.created_mountpoints;
        for (size_t i = 0; c && c[i]; i++) {
                size_t len = strlen(c[i]);
                bool parent = false;
                for (size_t k = 0; c[k] && !parent; k++)
                        parent = k != i && strncmp(c[k], c[i], len) == 0 && c[k][len] == '/';
                if (parent)
                        continue;
                int r = ossb_snapshot_exclude(j->snap, c[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int run_mounts(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct run_job *j,
                      const char *cwd, struct ossb_error **err)
{
        if (!inst->run_mounts || !inst->run_mounts[0])
                return 0;
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s-mounts", j->scratch) < 0)
                return oom(err);
        return ossb_run_mounts_prepare(b, s, inst, cwd, dir, &j->mounts, err);
}

static int run_sandbox(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct run_job *j,
                       struct ossb_error **err)
{
        static atomic_int counter; /* stages run in parallel */
        /* scratch beside the stage roots (same file system: the overlay commit renames) */
        if (asprintf(&j->scratch, "%s/run-%d", b->workdir, atomic_fetch_add(&counter, 1) + 1) < 0)
                return oom(err);
        if (ossb_mkdir_p(j->scratch, 0700) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", j->scratch);
        pthread_mutex_lock(&b->lock);
        if (b->snapshotter_reason) { /* AUTO resolved when the build started */
                log_info("snapshotter: %s (%s)", ossb_snapshot_backend_name(b->snapshotter), b->snapshotter_reason);
                free(TAKE_PTR(b->snapshotter_reason));
        }
        enum ossb_snapshot_backend backend = b->snapshotter;
        pthread_mutex_unlock(&b->lock);
        int r;
        if (s->fs) {
                ossb_stage_root_release(s); /* the step's snapshot seals the stage's view */
                r = ossb_snapshot_new_stage(backend, s->fs, j->scratch, &j->snap, err);
        } else
                r = ossb_snapshot_new(backend, s->root.path, j->scratch, ossb_snapshot_in_userns(), &j->snap, err);
        if (r < 0)
                return r;
        struct run_out out = { .b = b, .id = s->step_id };
        const char *cwd = ossb_config_get_str(s->img, "WorkingDir");
        cwd = cwd && *cwd ? cwd : "/";
        r = run_mounts(b, s, inst, j, cwd, err);
        if (r >= 0)
                r = run_spec_env(j, err);
        if (r < 0)
                return r;
        size_t n_mounts = 0;
        const struct ossb_exec_mount *mounts = j->mounts ? ossb_run_mounts_exec(j->mounts, &n_mounts) : NULL;
        const struct ossb_exec_limits limits = {
                .memory = b->opts->memory_limit, .cpu_millis = b->opts->cpu_millis, .pids = b->opts->pids_limit,
        };
        struct ossb_exec_spec spec = {
                .rootfs = ossb_snapshot_path(j->snap),
                .argv = j->argv,
                .env = j->spec_env,
                .cwd = cwd,
                .mounts = mounts,
                .n_mounts = n_mounts,
                .limits = &limits,
                .uid = j->uid,
                .gid = j->gid,
                .groups = j->groups,
                .n_groups = j->n_groups,
                .network = j->net_none ? OSSB_NET_NONE : OSSB_NET_HOST,
                .tmpdir = j->scratch,
                .output = on_output,
                .output_userdata = &out,
        };
        r = ossb_exec_run(&spec, &j->res, err);
        /* cache locks released, secrets gone, before anything else happens */
        free(TAKE_PTR(j->spec_env));
        ossb_run_mounts_free(TAKE_PTR(j->mounts));
        if (r < 0)
                return r;
        if (j->res.exit_code != 0)
                return run_failed(j, err);
        return run_exclude(j, err);
}

static int run_commit(struct build *b, struct stage_state *s, struct run_job *j, struct ossb_error **err)
{
        struct ossb_layer_opts lo;
        char digest[OSSB_DIGEST_STR_LEN + 1] = "", diff_id[OSSB_DIGEST_STR_LEN + 1] = "";
        int64_t size = 0;
        bool empty = false;
        json_object *annotations = NULL;
        _cleanup_free_ char *created_by = run_history(s, j->argv);
        if (!created_by)
                return oom(err);
        ossb_build_layer_opts(b, &lo);
        lo.ret_annotations = &annotations; /* seekable layers: their TOC's, for the manifest */
        if (!s->exported) /* a stage only copied from: its files matter, not a layer */
                return ossb_snapshot_commit(j->snap, err);
        int r = ossb_snapshot_diff(j->snap, b->store, &lo, &empty, digest, &size, diff_id, err);
        if (r >= 0)
                r = ossb_snapshot_commit(j->snap, err);
        if (r >= 0) {
                ossb_stepcache_run_store_annotated(b, s, j->inst, empty, digest, size, diff_id, annotations);
                if (empty)
                        r = ossb_stage_history(b, s, created_by, true) < 0 ? oom(err) : 0;
                else
                        r = ossb_stage_add_layer_annotated(b, s, digest, size, diff_id, annotations, created_by, err);
        }
        if (annotations)
                json_object_put(annotations);
        return r;
}

/* A step cache hit: the cached layer is applied instead of running the command. */
static int run_cached(struct build *b, struct stage_state *s, struct run_job *j, bool *ret_hit,
                      struct ossb_error **err)
{
        _cleanup_free_ char *created_by = run_history(s, j->argv);
        if (!created_by)
                return oom(err);
        return ossb_stepcache_run_lookup(b, s, j->inst, created_by, ret_hit, err);
}

int ossb_run_step(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, struct ossb_error **err)
{
        struct run_job j = { .inst = inst };
        int r = check_flags(b, inst, &j.net_none, err);
        if (r >= 0)
                r = run_argv(s, inst, &j.argv, err);
        if (r >= 0)
                r = run_env(s, &j.env, err);
        if (r >= 0)
                r = run_user(s, &j.uid, &j.gid, &j.groups, &j.n_groups, err);
        if (r >= 0)
                r = run_add_home(s, &j, err);
        bool hit = false;
        if (r >= 0)
                r = run_cached(b, s, &j, &hit, err);
        if (r >= 0 && !hit)
                r = run_sandbox(b, s, inst, &j, err);
        if (r >= 0 && !hit)
                r = run_commit(b, s, &j, err);
        ossb_replay_step_done(b, s, inst); /* what the step read from lazy layers, for the next build */
        run_job_clear(&j);
        return r;
}
