/* common/strbuf.h - growable byte/string buffer and string vectors (NULL-terminated char **).
 *
 * Owns: struct ossb_strbuf (its bytes until ossb_strbuf_steal) and strv helpers.
 * Allocation failure returns -ENOMEM; the buffer stays valid.
 */
#ifndef OSSB_COMMON_STRBUF_H
#define OSSB_COMMON_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct ossb_strbuf {
        char *buf;  /* always NUL-terminated when non-NULL */
        size_t len;
        size_t cap;
};

#define OSSB_STRBUF_INIT { NULL, 0, 0 }

int ossb_strbuf_reserve(struct ossb_strbuf *sb, size_t extra);
int ossb_strbuf_append(struct ossb_strbuf *sb, const char *s);
int ossb_strbuf_append_n(struct ossb_strbuf *sb, const char *s, size_t n);
int ossb_strbuf_append_c(struct ossb_strbuf *sb, char c);
int ossb_strbuf_appendf(struct ossb_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ossb_strbuf_reset(struct ossb_strbuf *sb);
/* Returns the buffer (an empty string if nothing was appended, NULL on ENOMEM); the
 * caller owns it and the strbuf is reset. */
char *ossb_strbuf_steal(struct ossb_strbuf *sb);
void ossb_strbuf_free(struct ossb_strbuf *sb);
#define _cleanup_strbuf_ __attribute__((cleanup(ossb_strbuf_free)))

/* String vectors: NULL-terminated arrays of owned strings.  A NULL strv is "absent";
 * a strv holding only the terminator is "present and empty". */
size_t ossb_strv_length(char *const *v);
/* The strings joined with `sep` (NULL or empty vector: ""); caller frees; NULL on ENOMEM. */
char *ossb_strv_join(char *const *v, const char *sep);
char **ossb_strv_new_empty(void);
/* Append a copy of s; *v may be NULL (becomes a 1-element vector). */
int ossb_strv_push(char ***v, const char *s);
/* Append s itself (ownership taken, also on failure, where it is freed). */
int ossb_strv_consume(char ***v, char *s);
char **ossb_strv_copy(char *const *v);  /* NULL in, NULL out; NULL on ENOMEM too */
bool ossb_strv_contains(char *const *v, const char *s);
void ossb_strv_free(char **v);
static inline void ossb_strv_freep(char ***v)
{
        ossb_strv_free(*v);
}
#define _cleanup_strv_free_ __attribute__((cleanup(ossb_strv_freep)))

#endif
