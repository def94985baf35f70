/* common/strbuf.c - see strbuf.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"

int ossb_strbuf_reserve(struct ossb_strbuf *sb, size_t extra)
{
        if (extra > ((size_t) -1) / 2 - sb->len)
                return -ENOMEM;
        size_t need = sb->len + extra + 1;
        if (need <= sb->cap)
                return 0;
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < need)
                cap *= 2;
        char *n = realloc(sb->buf, cap);
        if (!n)
                return -ENOMEM;
        if (!sb->buf)
                n[0] = '\0';
        sb->buf = n;
        sb->cap = cap;
        return 0;
}

int ossb_strbuf_append_n(struct ossb_strbuf *sb, const char *s, size_t n)
{
        int r = ossb_strbuf_reserve(sb, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(sb->buf + sb->len, s, n);
        sb->len += n;
        sb->buf[sb->len] = '\0';
        return 0;
}

int ossb_strbuf_append(struct ossb_strbuf *sb, const char *s)
{
        return ossb_strbuf_append_n(sb, s, strlen(s));
}

int ossb_strbuf_append_c(struct ossb_strbuf *sb, char c)
{
        return ossb_strbuf_append_n(sb, &c, 1);
}

int ossb_strbuf_appendf(struct ossb_strbuf *sb, const char *fmt, ...)
{
        va_list ap, ap2;
        va_start(ap, fmt);
        va_copy(ap2, ap);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
                va_end(ap2);
                return -EINVAL;
        }
        int r = ossb_strbuf_reserve(sb, (size_t) n);
        if (r < 0) {
                va_end(ap2);
                return r;
        }
        vsnprintf(sb->buf + sb->len, (size_t) n + 1, fmt, ap2);
        va_end(ap2);
        sb->len += (size_t) n;
        return 0;
}

void ossb_strbuf_reset(struct ossb_strbuf *sb)
{
        sb->len = 0;
        if (sb->buf)
                sb->buf[0] = '\0';
}

char *ossb_strbuf_steal(struct ossb_strbuf *sb)
{
        char *r = sb->buf;
        if (!r)
                r = strdup("");
        sb->buf = NULL;
        sb->len = sb->cap = 0;
        return r;
}

void ossb_strbuf_free(struct ossb_strbuf *sb)
{
        free(sb->buf);
        sb->buf = NULL;
        sb->len = sb->cap = 0;
}

size_t ossb_strv_length(char *const *v)
{
        size_t n = 0;
        if (!v)
                return 0;
        while (v[n])
                n++;
        return n;
}

char **ossb_strv_new_empty(void)
{
        return calloc(1, sizeof(char *));
}

int ossb_strv_consume(char ***v, char *s)
{
        if (!s)
                return -ENOMEM;
        size_t n = ossb_strv_length(*v);
        char **nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[n] = s;
        nv[n + 1] = NULL;
        *v = nv;
        return 0;
}

int ossb_strv_push(char ***v, const char *s)
{
        return ossb_strv_consume(v, strdup(s));
}

char **ossb_strv_copy(char *const *v)
{
        if (!v)
                return NULL;
        size_t n = ossb_strv_length(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i]);
                if (!c[i]) {
                        ossb_strv_free(c);
                        return NULL;
                }
        }
        return c;
}

bool ossb_strv_contains(char *const *v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

void ossb_strv_free(char **v)
{
        if (!v)
                return;
        for (size_t i = 0; v[i]; i++)
                free(v[i]);
        free(v);
}

char *ossb_strv_join(char *const *v, const char *sep)
{
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (ossb_strbuf_append(&sb, "") < 0)
                return NULL;
        for (size_t i = 0; v && v[i]; i++)
                if ((i && ossb_strbuf_append(&sb, sep) < 0) || ossb_strbuf_append(&sb, v[i]) < 0) {
                        ossb_strbuf_free(&sb);
                        return NULL;
                }
        return ossb_strbuf_steal(&sb);
}
