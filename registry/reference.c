/* registry/reference.c - see reference.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/sha256.h"
#include "registry/reference.h"

#define NAME_TOTAL_MAX 255
#define TAG_MAX 128

static bool is_alnum_lower(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]+ */
static bool valid_component(const char *s, size_t n)
{
        if (n == 0 || !is_alnum_lower(s[0]) || !is_alnum_lower(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (is_alnum_lower(s[i]))
                        continue;
                if (s[i] == '.' || s[i] == '_') {
                        if (s[i] == '_' && i + 1 < n && s[i + 1] == '_') {
                                i++;
                                if (!is_alnum_lower(s[i + 1]))
                                        return false;
                                continue;
                        }
                        if (!is_alnum_lower(s[i + 1]))
                                return false;
                        continue;
                }
                if (s[i] == '-') {
                        while (i + 1 < n && s[i + 1] == '-')
                                i++;
                        continue;
                }
                return false;
        }
        return true;
}

/* domain := host (":" port)? ; host components [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? joined
 * by "." (or an IPv6 literal in brackets) */
static bool valid_domain(const char *s, size_t n)
{
        const char *colon = memchr(s, ':', n);
        size_t hn = colon ? (size_t) (colon - s) : n;
        if (hn == 0)
                return false;
        if (s[0] == '[')
                return memchr(s, ']', n) != NULL;
        for (size_t i = 0; i < hn; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '.')
                        return false;
        if (colon) {
                if (colon + 1 == s + n)
                        return false;
                for (const char *p = colon + 1; p < s + n; p++)
                        if (!isdigit((unsigned char) *p))
                                return false;
        }
        return true;
}

static bool valid_tag(const char *t)
{
        size_t n = strlen(t);
        if (n == 0 || n > TAG_MAX || !(isalnum((unsigned char) t[0]) || t[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!isalnum((unsigned char) t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
                        return false;
        return true;
}

static int bad(struct ossb_error **err, const char *s, const char *why)
{
        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "invalid reference `%s`: %s", s, why);
}

int ossb_reference_parse(const char *s, struct ossb_reference **ret, struct ossb_error **err)
{
        _cleanup_free_ char *name = strdup(s);
        struct ossb_reference *r = NULL;
        if (!name)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!*s)
                return bad(err, s, "empty");

        char *digest = strchr(name, '@');
        if (digest) {
                *digest++ = '\0';
                if (!ossb_digest_is_valid(digest))
                        return bad(err, s, "invalid digest");
        }
        char *tag = NULL;
        char *last_slash = strrchr(name, '/');
        char *colon = strrchr(last_slash ? last_slash : name, ':');
        if (colon) {
                *colon = '\0';
                tag = colon + 1;
                if (!valid_tag(tag))
                        return bad(err, s, "invalid tag (allowed: [A-Za-z0-9_.-], at most 128 characters, not starting with '.' or '-')");
        }
        if (strlen(name) > NAME_TOTAL_MAX)
                return bad(err, s, "name longer than 255 characters");

        /* split the domain: the first component is one when it has '.', ':' or is localhost */
        const char *path = name;
        const char *domain = "docker.io";
        char *slash = strchr(name, '/');
        if (slash) {
                size_t dn = (size_t) (slash - name);
                bool is_domain = memchr(name, '.', dn) || memchr(name, ':', dn) ||
                                 (dn == 9 && strncmp(name, "localhost", 9) == 0) || (dn > 0 && isupper((unsigned char) name[0]));
                if (is_domain) {
                        if (!valid_domain(name, dn))
                                return bad(err, s, "invalid registry host");
                        *slash = '\0';
                        /* Docker's legacy name of Docker Hub */
                        domain = streq(name, "index.docker.io") ? "docker.io" : name;
                        path = slash + 1;
                }
        }
        if (!*path)
                return bad(err, s, "empty repository name");
        for (const char *p = path; *p;) {
                const char *e = strchr(p, '/');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (!valid_component(p, n)) {
                        for (size_t i = 0; i < n; i++)
                                if (isupper((unsigned char) p[i]))
                                        return bad(err, s, "repository name must be lowercase");
                        return bad(err, s, "invalid repository name (allowed: lowercase letters, digits and separators . _ __ -)");
                }
                if (!e)
                        break;
                p = e + 1;
        }

        r = calloc(1, sizeof(*r));
        if (!r)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        bool library = streq(domain, "docker.io") && !strchr(path, '/');
        r->domain = strdup(domain);
        if (library) {
                if (asprintf(&r->path, "library/%s", path) < 0)
                        r->path = NULL;
        } else {
                r->path = strdup(path);
        }
        r->tag = tag ? strdup(tag) : (digest ? NULL : strdup("latest"));
        r->digest = digest ? strdup(digest) : NULL;
        if (!r->domain || !r->path || (!r->tag && !digest) || (digest && !r->digest)) {
                ossb_reference_free(r);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = r;
        return 0;
}

void ossb_reference_free(struct ossb_reference *r)
{
        if (!r)
                return;
        free(r->domain);
        free(r->path);
        free(r->tag);
        free(r->digest);
        free(r);
}

static char *format(const char *domain, const char *path, const struct ossb_reference *r)
{
        char *s = NULL;
        if (asprintf(&s, "%s%s%s%s%s%s%s", domain ? domain : "", domain ? "/" : "", path, r->tag ? ":" : "",
                     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
                return NULL;
        return s;
}

char *ossb_reference_full(const struct ossb_reference *r)
{
        return format(r->domain, r->path, r);
}

char *ossb_reference_familiar(const struct ossb_reference *r)
{
        if (streq(r->domain, "docker.io")) {
                const char *p = r->path;
                if (strncmp(p, "library/", 8) == 0 && !strchr(p + 8, '/'))
                        p += 8;
                return format(NULL, p, r);
        }
        return format(r->domain, r->path, r);
}

char *ossb_reference_repository(const struct ossb_reference *r)
{
        _cleanup_free_ char *s = NULL;
        if (asprintf(&s, "%s/%s", r->domain, r->path) < 0)
                return NULL;
        return TAKE_PTR(s);
}

const char *ossb_reference_api_host(const struct ossb_reference *r)
{
        return streq(r->domain, "docker.io") ? "registry-1.docker.io" : r->domain;
}

const char *ossb_reference_object(const struct ossb_reference *r)
{
        return r->digest ? r->digest : r->tag;
}
