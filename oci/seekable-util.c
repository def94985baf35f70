/* oci/seekable-util.c - small codecs the seekable-format reader and writer share: RFC 3339
 * times as Go writes them, UTF-8 validation, base64 (xattr values in TOCs).
 *
 * Owns: nothing but the returned buffers.  Times are converted with integer calendar
 * arithmetic (no time zone, no locale); every parser here takes untrusted bytes.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/seekable-internal.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned) (y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        unsigned doe = (unsigned) (z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        unsigned mp = (5 * doy + 2) / 153;
        *d = doy - (153 * mp + 2) / 5 + 1;
        *m = mp < 10 ? mp + 3 : mp - 9;
        *y = (int64_t) yoe + era * 400 + (*m <= 2);
}

#define SECONDS_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define SECONDS_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */

void ossb_seekable_format_time(int64_t t, char buf[32])
{
        int64_t y;
        unsigned m, d;
        if (t < SECONDS_MIN)
                t = SECONDS_MIN;
        if (t > SECONDS_MAX)
                t = SECONDS_MAX;
        int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
        int64_t secs = t - days * 86400;
        civil_from_days(days, &y, &m, &d);
        snprintf(buf, 32, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02uZ", y, m, d, (unsigned) (secs / 3600),
                 (unsigned) (secs / 60 % 60), (unsigned) (secs % 60));
}

static bool digits(const char *s, size_t n, unsigned *ret)
{
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return true;
}

static int parse_offset(const char *s, int64_t *ret)
{
        unsigned oh, om;
        if (s[0] == 'Z' && s[1] == '\0') {
                *ret = 0;
                return 0;
        }
        if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || !digits(s + 1, 2, &oh) || s[3] != ':' ||
            !digits(s + 4, 2, &om) || oh > 23 || om > 59)
                return -EINVAL;
        *ret = (s[0] == '-' ? -1 : 1) * (int64_t) (oh * 3600 + om * 60);
        return 0;
}

int ossb_seekable_parse_time(const char *s, int64_t *ret_sec, long *ret_nsec)
{
        static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        unsigned y, mo, d, h, mi, se;
        long nsec = 0;
        int64_t off;

        if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
            !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' ||
            !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
                return -EINVAL;
        const char *p = s + 19;
        if (*p == '.') {
                int n = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, n++)
                        if (n < 9)
                                nsec = nsec * 10 + (*p - '0');
                if (n == 0)
                        return -EINVAL;
                for (; n < 9; n++)
                        nsec *= 10;
        }
        if (parse_offset(p, &off) < 0)
                return -EINVAL;
        if (se == 60)
                se = 59; /* a leap second, as Go's parser does not take it either: keep the minute */
        *ret_sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
        *ret_nsec = nsec;
        return 0;
}

bool ossb_seekable_utf8_valid(const char *str, size_t len)
{
        const unsigned char *s = (const unsigned char *) str;
        for (size_t i = 0; i < len;) {
                unsigned c = s[i];
                size_t n;
                uint32_t cp;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (len - i <= n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
                        return false;
                i += n + 1;
        }
        return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *ossb_seekable_b64_encode(const void *data, size_t len)
{
        const unsigned char *in = data;
        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t) in[i + 1] << 8;
                if (i + 2 < len)
                        v |= in[i + 2];
                *o++ = b64[v >> 18];
                *o++ = b64[(v >> 12) & 63];
                *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? b64[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

static int b64_value(char c)
{
        const char *p = c ? strchr(b64, c) : NULL;
        return p ? (int) (p - b64) : -1;
}

int ossb_seekable_b64_decode(const char *s, size_t len, unsigned char **ret, size_t *ret_len)
{
        if (len % 4 != 0)
                return -EINVAL;
        size_t pad = len >= 1 && s[len - 1] == '=' ? (len >= 2 && s[len - 2] == '=' ? 2 : 1) : 0;
        unsigned char *out = malloc(len / 4 * 3 + 1);
        size_t n = 0;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i += 4) {
                uint32_t v = 0;
                for (size_t k = 0; k < 4; k++) {
                        int x = b64_value(s[i + k]);
                        bool is_pad = i + k >= len - pad;
                        if ((x < 0 && !is_pad) || (x >= 0 && is_pad)) {
                                free(out);
                                return -EINVAL;
                        }
                        v = (v << 6) | (uint32_t) (x < 0 ? 0 : x);
                }
                out[n++] = (unsigned char) (v >> 16);
                out[n++] = (unsigned char) (v >> 8);
                out[n++] = (unsigned char) v;
        }
        n -= pad;
        *ret = out;
        *ret_len = n;
        return 0;
}
