/* registry/credentials.c - see credentials.h.
 *
 * Owns: the credential sources and their order, the matching of auth file keys against a
 * repository, and the docker-credential-helper protocol (`docker-credential-NAME get`, the
 * server URL on stdin, {"ServerURL","Username","Secret"} on stdout).
 *
 * Within one file (every source is read the same way, a Docker config.json or a containers
 * auth.json), the order is: a "credHelpers" entry for the registry host (authoritative for that
 * host in this file: when its helper has nothing, the next source is tried), then the most
 * specific "auths" entry holding a credential, then "credsStore".  An "auths" entry without a
 * credential (Docker writes `{}` next to a credsStore) counts as no entry.
 *
 * File contents and helper output are wiped before they are freed; no message quotes them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "oci/image.h"
#include "registry/auth.h"
#include "registry/credentials.h"

#define AUTH_FILE_MAX (1024 * 1024)
#define HELPER_OUTPUT_MAX (1024 * 1024)
#define HELPER_STDERR_KEEP 4096
#define HELPER_TIMEOUT_MS 30000
#define HELPER_POLL_MS 100
#define HOST_MAX 1024
#define MESSAGE_EXCERPT_MAX 200
#define DOCKER_HUB_SERVER "https://index.docker.io/v1/"
#define HELPER_NOT_FOUND "credentials not found in native keychain"

static int helper_timeout_ms = HELPER_TIMEOUT_MS;

void ossb_credentials_set_helper_timeout(int ms)
{
        helper_timeout_ms = ms > 0 ? ms : HELPER_TIMEOUT_MS;
}

static void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

/* A buffer that may hold a secret: wiped, then freed. */
struct secret_buf {
        char *data;
        size_t len;
};

static void secret_buf_wipe(struct secret_buf *b)
{
        if (b->data) {
                explicit_bzero(b->data, b->len);
                free(b->data);
        }
        b->data = NULL;
        b->len = 0;
}
#define _cleanup_secret_ __attribute__((cleanup(secret_buf_wipe)))

static void wipe_str(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static void wipe_strp(char **s)
{
        wipe_str(*s);
}
#define _cleanup_wipe_ __attribute__((cleanup(wipe_strp)))

void ossb_credential_clear(struct ossb_credential *c)
{
        if (!c)
                return;
        wipe_str(c->secret);
        free(c->username);
        free(c->source);
        *c = (struct ossb_credential) { 0 };
}

static void credential_clearp(struct ossb_credential *c)
{
        ossb_credential_clear(c);
}

/* ---- keys ---- */

static bool is_docker_hub(const char *host, size_t n)
{
        static const char *const names[] = { "docker.io", "index.docker.io", "registry-1.docker.io" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (n == strlen(names[i]) && strncasecmp(host, names[i], n) == 0)
                        return true;
        return false;
}

/* "HOST[/path]" with HOST lowercased and Docker Hub's names mapped to "docker.io". */
static char *canonical_host_path(const char *s, size_t n)
{
        size_t hn = 0;
        while (hn < n && s[hn] != '/')
                hn++;
        if (is_docker_hub(s, hn)) {
                char *r = NULL;
                if (asprintf(&r, "docker.io%.*s", (int) (n - hn), s + hn) < 0)
                        return NULL;
                return r;
        }
        char *r = strndup(s, n);
        if (!r)
                return NULL;
        for (size_t i = 0; i < hn; i++)
                if (r[i] >= 'A' && r[i] <= 'Z')
                        r[i] = (char) (r[i] - 'A' + 'a');
        return r;
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
        return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Normalise an "auths" key: "https://HOST/v1/" and "http://HOST" (Docker's legacy forms:
 * only the host counts, *ret_legacy = true), "HOST[:PORT]", "HOST/ns/repo".  NULL on ENOMEM. */
static char *normalize_key(const char *key, bool *ret_legacy)
{
        size_t n = strlen(key);
        bool legacy = false;
        if (has_prefix_ci(key, "https://") || has_prefix_ci(key, "http://")) {
                size_t skip = key[4] == 's' || key[4] == 'S' ? 8 : 7;
                key += skip;
                n -= skip;
                legacy = true;
        }
        while (n > 0 && key[n - 1] == '/')
                n--;
        if (n >= 3 && key[n - 3] == '/' && key[n - 2] == 'v' && (key[n - 1] == '1' || key[n - 1] == '2'))
                n -= 3;
        while (n > 0 && key[n - 1] == '/')
                n--;
        if (legacy) {
                const char *slash = memchr(key, '/', n);
                if (slash)
                        n = (size_t) (slash - key);
        }
        *ret_legacy = legacy;
        return canonical_host_path(key, n);
}

/* How specifically normalised key nk matches repository repo: 0 not at all, else twice its
 * length plus 2, or plus 1 for a legacy key (so a key without a scheme beats the legacy form of
 * the same key, and a longer key beats both). */
static size_t key_score(const char *nk, bool legacy, const char *repo)
{
        size_t n = strlen(nk);
        if (n == 0 || strncmp(nk, repo, n) != 0 || (repo[n] != '\0' && repo[n] != '/'))
                return 0;
        return 2 * n + (legacy ? 1 : 2);
}

/* For messages: the key when it is short printable ASCII. */
static const char *printable_key(const char *key)
{
        size_t n = 0;
        for (; key[n]; n++)
                if ((unsigned char) key[n] < 0x20 || (unsigned char) key[n] > 0x7e || n > 200)
                        return "(unprintable key)";
        return key;
}

/* ---- "auths" entries ---- */

static int set_credential(struct ossb_credential *ret, const char *user, const char *secret, bool identity,
                          const char *source)
{
        struct ossb_credential c = { .identity_token = identity };
        c.username = strdup(user);
        c.secret = strdup(secret);
        c.source = strdup(source);
        if (!c.username || !c.secret || !c.source) {
                ossb_credential_clear(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 1;
}

static const char *string_member(json_object *o, const char *key)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        const char *s = json_object_get_string(v);
        return s && s[0] ? s : NULL;
}

/* Decode base64("user:secret") into *ret_user (a copy) and *ret_secret (wiped by the caller). */
static int decode_auth(const char *b64, char **ret_user, char **ret_secret)
{
        _cleanup_secret_ struct secret_buf plain = { 0 };
        int r = ossb_base64_decode(b64, strlen(b64), &plain.data, &plain.len);
        if (r < 0)
                return r;
        char *colon = memchr(plain.data, ':', plain.len);
        if (!colon || memchr(plain.data, '\0', plain.len))
                return -EINVAL;
        _cleanup_free_ char *user = strndup(plain.data, (size_t) (colon - plain.data));
        char *secret = strdup(colon + 1);
        if (!user || !secret) {
                wipe_str(secret);
                return -ENOMEM;
        }
        *ret_user = TAKE_PTR(user);
        *ret_secret = secret;
        return 0;
}

/* One "auths" value: > 0 and *ret set when it holds a credential, 0 when it holds none. */
static int entry_credential(json_object *entry, const char *key, const char *label, struct ossb_credential *ret,
                            struct ossb_error **err)
{
        if (!json_object_is_type(entry, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: `auths` entry \"%s\" is not an object",
                                       label, printable_key(key));
        const char *auth = string_member(entry, "auth");
        const char *user = string_member(entry, "username");
        const char *pass = string_member(entry, "password");
        const char *idtok = string_member(entry, "identitytoken");
        _cleanup_free_ char *auth_user = NULL;
        _cleanup_wipe_ char *auth_secret = NULL;
        int r;
        if (auth) {
                r = decode_auth(auth, &auth_user, &auth_secret);
                if (r == -ENOMEM)
                        return ossb_error_set(err, r, "out of memory");
                if (r < 0)
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL,
                                               "%s: `auth` of \"%s\" is not base64 of \"username:password\"", label,
                                               printable_key(key));
                user = auth_user;
                pass = auth_secret;
        }
        if (idtok)
                r = set_credential(ret, user && user[0] ? user : "<token>", idtok, true, label);
        else if (user && user[0] && pass)
                r = set_credential(ret, user, pass, false, label);
        else
                return 0;
        return r < 0 ? ossb_error_set(err, r, "out of memory") : r;
}

/* The best "auths" entry for repo: > 0 found, 0 none.  Only entries matching repo are decoded,
 * so a broken entry for another registry is no error. */
static int find_in_auths(json_object *auths, const char *repo, const char *label, struct ossb_credential *ret,
                         struct ossb_error **err)
{
        _cleanup_(credential_clearp) struct ossb_credential best = { 0 };
        size_t best_score = 0;
        if (!json_object_is_type(auths, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: `auths` is not an object", label);
        json_object_object_foreach(auths, key, value)
        {
                bool legacy;
                _cleanup_free_ char *nk = normalize_key(key, &legacy);
                if (!nk)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                size_t score = key_score(nk, legacy, repo);
                if (score <= best_score)
                        continue;
                /* an entry without a credential does not hide a less specific one */
                struct ossb_credential c = { 0 };
                int r = entry_credential(value, key, label, &c, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                ossb_credential_clear(&best);
                best = c;
                best_score = score;
        }
        if (best_score == 0)
                return 0;
        *ret = best;
        best = (struct ossb_credential) { 0 };
        return 1;
}

/* ---- docker-credential helpers ---- */

struct helper {
        char *prog;           /* "docker-credential-NAME" */
        char *what;           /* "docker-credential-NAME (credHelpers in LABEL)", for messages */
        pid_t pid;            /* > 0 while not reaped */
        int status;           /* wait status once reaped */
        struct secret_buf out; /* stdout */
        size_t out_cap;
        char errbuf[HELPER_STDERR_KEEP + 1]; /* the start of stderr */
        size_t err_len;
};

static void helper_done(struct helper *h)
{
        if (h->pid > 0) {
                kill(h->pid, SIGKILL);
                while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR)
                        ;
                h->pid = 0;
        }
        if (h->out.data)
                explicit_bzero(h->out.data, h->out_cap);
        free(h->out.data);
        h->out = (struct secret_buf) { 0 };
        free(h->prog);
        free(h->what);
}

static bool helper_name_ok(const char *name)
{
        if (!name[0] || streq(name, ".") || streq(name, ".."))
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The helper's stdin: a pipe already holding the server URL (it fits in the pipe buffer), its
 * write end closed, so that a helper that never reads cannot block us or raise SIGPIPE. */
static int stdin_with(const char *server)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        size_t n = strlen(server);
        ssize_t w = write(p[1], server, n);
        int saved = errno;
        close(p[1]);
        if (w < 0 || (size_t) w != n) {
                close(p[0]);
                return w < 0 ? -saved : -EIO;
        }
        return p[0];
}

static int spawn_helper(struct helper *h, int in_fd, int out_fd, int err_fd)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t mask, def;
        char *argv[] = { h->prog, (char *) "get", NULL };
        static const int reset[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD };
        int r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        sigemptyset(&mask);
        sigemptyset(&def);
        for (size_t i = 0; i < ELEMENTSOF(reset); i++)
                sigaddset(&def, reset[i]);
        r = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &mask);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &def);
        if (r == 0)
                r = posix_spawnp(&h->pid, h->prog, &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                h->pid = 0;
        return -r;
}

/* Append what fd has to stdout's buffer (grown by copy-and-wipe, never realloc, so no stray
 * copy of a secret stays on the heap) or to the kept start of stderr.  0 at EOF, 1 when more
 * may come, -errno. */
static int helper_read(struct helper *h, int fd, bool is_stdout)
{
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        if (n == 0)
                return 0;
        if (!is_stdout) {
                size_t keep = HELPER_STDERR_KEEP - h->err_len;
                if ((size_t) n < keep)
                        keep = (size_t) n;
                memcpy(h->errbuf + h->err_len, chunk, keep);
                h->err_len += keep;
                h->errbuf[h->err_len] = '\0';
                return 1;
        }
        if (h->out.len + (size_t) n > HELPER_OUTPUT_MAX) {
                explicit_bzero(chunk, sizeof(chunk));
                return -EFBIG;
        }
        if (h->out.len + (size_t) n + 1 > h->out_cap) {
                size_t cap = h->out_cap ? h->out_cap * 2 : 8192;
                while (cap < h->out.len + (size_t) n + 1)
                        cap *= 2;
                char *nb = malloc(cap);
                if (!nb)
                        return -ENOMEM;
                if (h->out.data) {
                        memcpy(nb, h->out.data, h->out.len);
                        explicit_bzero(h->out.data, h->out_cap);
                        free(h->out.data);
                }
                h->out.data = nb;
                h->out_cap = cap;
        }
        memcpy(h->out.data + h->out.len, chunk, (size_t) n);
        h->out.len += (size_t) n;
        h->out.data[h->out.len] = '\0';
        explicit_bzero(chunk, sizeof(chunk));
        return 1;
}

static bool helper_reap(struct helper *h, int flags)
{
        pid_t w;
        while ((w = waitpid(h->pid, &h->status, flags)) < 0 && errno == EINTR)
                ;
        if (w == h->pid) {
                h->pid = 0;
                return true;
        }
        return false;
}

/* Read stdout and stderr until both end (or the helper has exited and nothing more comes
 * within a poll interval: a process it left behind may hold the pipes), then reap it.  Bounded
 * by HELPER_TIMEOUT_MS; -ETIMEDOUT, -EINTR (ossb was interrupted), -EFBIG, -errno. */
static int helper_collect(struct helper *h, int out_fd, int err_fd)
{
        struct pollfd p[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
        int64_t deadline = now_ms() + helper_timeout_ms;
        while (p[0].fd >= 0 || p[1].fd >= 0 || h->pid > 0) {
                int64_t left = deadline - now_ms();
                if (ossb_interrupted())
                        return -EINTR;
                if (left <= 0)
                        return -ETIMEDOUT;
                if (p[0].fd < 0 && p[1].fd < 0) {
                        if (!helper_reap(h, WNOHANG))
                                poll(NULL, 0, 10);
                        continue;
                }
                int n = poll(p, 2, (int) (left < HELPER_POLL_MS ? left : HELPER_POLL_MS));
                if (n < 0 && errno != EINTR)
                        return -errno;
                for (int k = 0; n > 0 && k < 2; k++) {
                        if (p[k].fd < 0 || !p[k].revents)
                                continue;
                        int r = helper_read(h, p[k].fd, k == 0);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                p[k].fd = -1;
                }
                if (n == 0 && h->pid > 0 && helper_reap(h, WNOHANG))
                        continue;
                if (n == 0 && h->pid == 0)
                        break;
        }
        return 0;
}

/* The first line of s when it is not JSON (a helper's own error message), printable only. */
static void excerpt(const char *s, char *buf, size_t size)
{
        size_t o = 0;
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                s++;
        if (*s != '{' && *s != '[')
                for (; *s && *s != '\n' && *s != '\r' && o + 1 < size && o < MESSAGE_EXCERPT_MAX; s++)
                        buf[o++] = (unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f ? *s : '?';
        buf[o] = '\0';
}

static int helper_failed(struct helper *h, struct ossb_error **err)
{
        char msg[MESSAGE_EXCERPT_MAX + 1];
        excerpt(h->out.data ? h->out.data : "", msg, sizeof(msg));
        if (!msg[0])
                excerpt(h->errbuf, msg, sizeof(msg));
        if (WIFSIGNALED(h->status))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES, "%s: killed by signal %d", h->what,
                                       WTERMSIG(h->status));
        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EACCES, "%s: `%s get` failed (exit status %d)%s%s", h->what,
                               h->prog, WEXITSTATUS(h->status), msg[0] ? ": " : "", msg);
}

/* {"ServerURL": ..., "Username": ..., "Secret": ...}; > 0 found, 0 when it holds no secret. */
static int helper_answer(struct helper *h, struct ossb_credential *ret, struct ossb_error **err)
{
        _cleanup_json_ json_object *o = NULL;
        if (h->out.len == 0)
                return 0;
        int r = ossb_json_parse(h->out.data, h->out.len, HELPER_OUTPUT_MAX, &o, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                return ossb_error_wrap(err, "%s: invalid answer", h->what);
        }
        if (!json_object_is_type(o, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EPROTO, "%s: invalid answer: not a JSON object", h->what);
        const char *user = string_member(o, "Username"), *secret = string_member(o, "Secret");
        if (!secret)
                return 0;
        bool identity = user && streq(user, "<token>");
        r = set_credential(ret, user ? user : "", secret, identity, h->what);
        return r < 0 ? ossb_error_set(err, r, "out of memory") : r;
}

static int helper_start(struct helper *h, const char *server, int *out_fd, int *err_fd, struct ossb_error **err)
{
        int o[2], e[2];
        _cleanup_close_ int in_fd = stdin_with(server);
        if (in_fd < 0)
                return ossb_error_set(err, in_fd, "%s: cannot make a pipe: %s", h->what, strerror(-in_fd));
        if (pipe2(o, O_CLOEXEC) < 0)
                return ossb_error_set(err, -errno, "%s: cannot make a pipe: %m", h->what);
        if (pipe2(e, O_CLOEXEC) < 0) {
                int r = -errno;
                close(o[0]);
                close(o[1]);
                return ossb_error_set(err, r, "%s: cannot make a pipe: %s", h->what, strerror(-r));
        }
        int r = spawn_helper(h, in_fd, o[1], e[1]);
        close(o[1]);
        close(e[1]);
        if (r < 0) {
                close(o[0]);
                close(e[0]);
                if (r == -ENOENT)
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: `%s` not found in $PATH", h->what,
                                               h->prog);
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: cannot run `%s`: %s", h->what, h->prog,
                                       strerror(-r));
        }
        *out_fd = o[0];
        *err_fd = e[0];
        return 0;
}

/* Run `docker-credential-NAME get` for server.  > 0 found, 0 "credentials not found". */
static int run_helper(const char *name, const char *kind, const char *label, const char *server,
                      struct ossb_credential *ret, struct ossb_error **err)
{
        if (!helper_name_ok(name))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: invalid credential helper name in `%s`",
                                       label, kind);
        __attribute__((cleanup(helper_done))) struct helper h = { 0 };
        if (asprintf(&h.prog, "docker-credential-%s", name) < 0) {
                h.prog = NULL;
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        if (asprintf(&h.what, "docker-credential-%s (%s in %s)", name, kind, label) < 0) {
                h.what = NULL;
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        _cleanup_close_ int out_fd = -1, err_fd = -1;
        int r = helper_start(&h, server, &out_fd, &err_fd, err);
        if (r < 0)
                return r;
        r = helper_collect(&h, out_fd, err_fd);
        if (r == -ETIMEDOUT)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: no answer within %.1f s", h.what,
                                       helper_timeout_ms / 1000.0);
        if (r == -EFBIG)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: answer larger than %d bytes", h.what,
                                       HELPER_OUTPUT_MAX);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: %s", h.what, strerror(-r));
        if (WIFEXITED(h.status) && WEXITSTATUS(h.status) == 0)
                return helper_answer(&h, ret, err);
        if (WIFEXITED(h.status) && h.out.data && strstr(h.out.data, HELPER_NOT_FOUND)) {
                log_debug("%s: no credentials for %s", h.what, server);
                return 0;
        }
        return helper_failed(&h, err);
}

/* ---- files and sources ---- */

/* Read a whole regular file of at most AUTH_FILE_MAX bytes into one allocation (wiped by the
 * caller).  -ENOENT is returned without a message so that optional sources can skip it. */
static int read_secret_file(const char *path, const char *label, struct secret_buf *ret, struct ossb_error **err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (fd < 0 && errno == ENOENT)
                return -ENOENT;
        if (fd < 0 || fstat(fd, &st) < 0)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -errno, "%s: cannot open: %m", label);
        if (!S_ISREG(st.st_mode))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: not a regular file", label);
        if (st.st_size > AUTH_FILE_MAX)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EFBIG, "%s: larger than %d bytes", label, AUTH_FILE_MAX);
        size_t size = (size_t) st.st_size;
        char *buf = calloc(1, size + 1);
        if (!buf)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        size_t got = 0;
        while (got < size) {
                ssize_t n = read(fd, buf + got, size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int r = n < 0 ? -errno : -EIO;
                        explicit_bzero(buf, size);
                        free(buf);
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: cannot read: %s", label,
                                               n < 0 ? strerror(-r) : "file shrank while read");
                }
                got += (size_t) n;
        }
        ret->data = buf;
        ret->len = size;
        return 0;
}

static bool blank(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n", s[i]))
                        return false;
        return true;
}

/* The "credHelpers" entry naming host: > 0 when there is one (*ret_name borrowed from o). */
static int find_cred_helper(json_object *o, const char *host, const char *label, const char **ret_name,
                            struct ossb_error **err)
{
        json_object *helpers;
        if (!json_object_object_get_ex(o, "credHelpers", &helpers) || !helpers)
                return 0;
        if (!json_object_is_type(helpers, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: `credHelpers` is not an object", label);
        json_object_object_foreach(helpers, key, value)
        {
                bool legacy;
                _cleanup_free_ char *nk = normalize_key(key, &legacy);
                if (!nk)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (!streq(nk, host))
                        continue;
                if (!json_object_is_type(value, json_type_string))
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL,
                                               "%s: `credHelpers` entry \"%s\" is not a string", label,
                                               printable_key(key));
                *ret_name = json_object_get_string(value);
                return 1;
        }
        return 0;
}

struct lookup {
        const char *repo;   /* canonical "HOST[/path]" */
        const char *host;   /* canonical "HOST[:PORT]" */
        const char *server; /* what helpers are asked for */
};

/* One source file: > 0 found (*ret set), 0 no entry, -errno. */
static int find_in_file(const struct lookup *l, const char *path, const char *label, bool required,
                        struct ossb_credential *ret, struct ossb_error **err)
{
        _cleanup_secret_ struct secret_buf data = { 0 };
        _cleanup_json_ json_object *o = NULL;
        json_object *v;
        const char *name = NULL;
        int r = read_secret_file(path, label, &data, err);
        if (r == -ENOENT && !required) {
                log_debug("credentials: %s does not exist", label);
                return 0;
        }
        if (r == -ENOENT)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, r, "%s: no such file", label);
        if (r < 0)
                return r;
        if (blank(data.data, data.len))
                return 0;
        r = ossb_json_parse(data.data, data.len, AUTH_FILE_MAX, &o, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
                return ossb_error_wrap(err, "%s", label);
        }
        if (!json_object_is_type(o, json_type_object))
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: not a JSON object", label);
        r = find_cred_helper(o, l->host, label, &name, err);
        if (r != 0)
                return r < 0 ? r : run_helper(name, "credHelpers", label, l->server, ret, err);
        if (json_object_object_get_ex(o, "auths", &v) && v) {
                r = find_in_auths(v, l->repo, label, ret, err);
                if (r != 0)
                        return r;
        }
        if (json_object_object_get_ex(o, "credsStore", &v) && v) {
                if (!json_object_is_type(v, json_type_string))
                        return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "%s: `credsStore` is not a string",
                                               label);
                if (json_object_get_string_len(v) > 0)
                        return run_helper(json_object_get_string(v), "credsStore", label, l->server, ret, err);
        }
        return 0;
}

static const char *env(const char *name)
{
        const char *v = secure_getenv(name);
        return v && v[0] ? v : NULL;
}

/* $DOCKER_CONFIG/config.json, else ~/.docker/config.json (HOME, else the passwd entry). */
static char *docker_config_path(void)
{
        const char *dir = env("DOCKER_CONFIG"), *home = env("HOME");
        char *p = NULL;
        if (dir)
                return asprintf(&p, "%s/config.json", dir) < 0 ? NULL : p;
        if (!home) {
                struct passwd pw, *res = NULL;
                char buf[4096];
                if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_dir)
                        return asprintf(&p, "%s/.docker/config.json", res->pw_dir) < 0 ? NULL : p;
                return strdup("");
        }
        return asprintf(&p, "%s/.docker/config.json", home) < 0 ? NULL : p;
}

struct source {
        char *path;
        char *label;
        bool required;
};

static void sources_free(struct source *s)
{
        for (size_t i = 0; i < 4; i++) {
                free(s[i].path);
                free(s[i].label);
        }
}

/* The four sources in order; a NULL path is a source that is not configured. */
static int sources_get(const char *auth_file, struct source s[4])
{
        const char *reg = env("REGISTRY_AUTH_FILE"), *xdg = env("XDG_RUNTIME_DIR");
        if (auth_file) {
                s[0].required = true;
                if (!(s[0].path = strdup(auth_file)) || asprintf(&s[0].label, "--registry-auth-file %s", auth_file) < 0)
                        return -ENOMEM;
        }
        if (reg && (!(s[1].path = strdup(reg)) || asprintf(&s[1].label, "$REGISTRY_AUTH_FILE (%s)", reg) < 0))
                return -ENOMEM;
        if (!(s[2].path = docker_config_path()))
                return -ENOMEM;
        if (!s[2].path[0]) {
                free(s[2].path);
                s[2].path = NULL;
        } else if (!(s[2].label = strdup(s[2].path))) {
                return -ENOMEM;
        }
        if (xdg && asprintf(&s[3].path, "%s/containers/auth.json", xdg) < 0)
                return -ENOMEM;
        if (xdg && !(s[3].label = strdup(s[3].path)))
                return -ENOMEM;
        return 0;
}

int ossb_credentials_find(const char *auth_file, const char *repository, struct ossb_credential *ret,
                          struct ossb_error **err)
{
        if (!repository || !repository[0] || repository[0] == '/')
                return ossb_error_set(err, -EINVAL, "credentials: invalid repository name");
        size_t n = strlen(repository), hn = strcspn(repository, "/");
        if (hn > HOST_MAX)
                return ossb_error_setx(err, OSSB_EXIT_REGISTRY, -EINVAL, "credentials: registry name too long");
        while (n > hn && repository[n - 1] == '/')
                n--;
        _cleanup_free_ char *repo = canonical_host_path(repository, n);
        _cleanup_free_ char *host = repo ? strndup(repo, strcspn(repo, "/")) : NULL;
        if (!repo || !host)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct lookup l = { .repo = repo, .host = host, .server = streq(host, "docker.io") ? DOCKER_HUB_SERVER : host };
        struct source s[4] = { { 0 } };
        int r = sources_get(auth_file, s);
        if (r < 0) {
                sources_free(s);
                return ossb_error_set(err, r, "out of memory");
        }
        struct ossb_credential c = { 0 };
        for (size_t i = 0; i < ELEMENTSOF(s) && r == 0; i++)
                if (s[i].path)
                        r = find_in_file(&l, s[i].path, s[i].label, s[i].required, &c, err);
        sources_free(s);
        if (r < 0)
                return ossb_error_wrap(err, "credentials for %s", host);
        if (r > 0)
                log_debug("credentials for %s: from %s", host, c.source);
        *ret = c;
        return 0;
}
