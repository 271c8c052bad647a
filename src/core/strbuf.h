// A bounded string builder over a caller's buffer, for the metric encoders: appends never write
// past the buffer, always leave it NUL-terminated, and keep counting the length the full output
// would need, so a caller told SL_EFULL learns the size to retry with. Internal to the library.
#ifndef SLUICE_CORE_STRBUF_H
#define SLUICE_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_strbuf {
    char *buf;           // borrowed; NULL only when size is 0
    size_t size;         // capacity in bytes, including the NUL
    size_t needed_bytes; // length of the full output so far, without the NUL (may exceed size)
} sl_strbuf;

// Starts an empty string in buf (size bytes; size 0 is allowed and only counts).
void sl__strbuf_init(sl_strbuf *sb, char *buf, size_t size);

// Appends length bytes of text (which need not be NUL-terminated).
void sl__strbuf_append(sl_strbuf *sb, const char *text, size_t length);

// Appends a NUL-terminated string.
void sl__strbuf_puts(sl_strbuf *sb, const char *text);

// Appends one character.
void sl__strbuf_putc(sl_strbuf *sb, char c);

// Appends an unsigned / signed integer in decimal.
void sl__strbuf_u64(sl_strbuf *sb, uint64_t value);
void sl__strbuf_i64(sl_strbuf *sb, int64_t value);

// Appends a double in the shortest %g form that reads back to the same value ("NaN", "+Inf" and
// "-Inf" for the Prometheus spellings; JSON callers handle non-finite values themselves).
void sl__strbuf_double(sl_strbuf *sb, double value);

// True when everything appended fit (with its NUL).
bool sl__strbuf_fits(const sl_strbuf *sb);

// True when text[0..length) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool sl__utf8_valid(const char *text, size_t length);

#endif
