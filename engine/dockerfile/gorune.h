/* engine/dockerfile/gorune.h - Go's view of text, which the BuildKit-compatible lexer and the
 * .dockerignore matcher must share to agree with BuildKit byte for byte: UTF-8 decoding as
 * Go's utf8.DecodeRune does it (an invalid or truncated sequence is U+FFFD of width 1), and
 * the character classes unicode.IsLetter / IsDigit / IsSpace (Unicode 15.0).
 *
 * Owns: nothing.  Internal to engine/dockerfile.
 */
#ifndef OSSB_ENGINE_DOCKERFILE_GORUNE_H
#define OSSB_ENGINE_DOCKERFILE_GORUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GORUNE_ERROR 0xFFFD
#define GORUNE_EOF (-1)

/* Decode the rune at s[0..len) (len > 0); *width gets its byte length (>= 1). */
int32_t gorune_decode(const char *s, size_t len, size_t *width);
/* Encode r as UTF-8 into buf (4 bytes at least); invalid runes become U+FFFD.  Returns the
 * length. */
size_t gorune_encode(int32_t r, char buf[static 4]);

bool gorune_is_letter(int32_t r);
bool gorune_is_digit(int32_t r);
bool gorune_is_space(int32_t r);
/* The value of a hex digit, or -1. */
int gorune_unhex(int32_t c);

#endif
