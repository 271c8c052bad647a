// Bounded string builder (src/core/strbuf.h) and the UTF-8 check the metric registry applies to
// label values and help text, so that both encoders can emit them with escaping alone.
#include "core/strbuf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

// Longest text of one number: 20 digits for u64, a sign, and %.17g's exponent form fit in 32.
#define STRBUF_NUMBER_MAX 32

void
sl__strbuf_init(sl_strbuf *sb, char *buf, size_t size)
{
    SL_ASSERT(sb != NULL);
    SL_ASSERT(buf != NULL || size == 0);
    sb->buf = buf;
    sb->size = size;
    sb->needed_bytes = 0;
    if (size > 0) {
        buf[0] = '\0';
    }
}

void
sl__strbuf_append(sl_strbuf *sb, const char *text, size_t length)
{
    SL_ASSERT(sb != NULL);
    size_t at = sb->needed_bytes;
    sb->needed_bytes += length;
    if (sb->size == 0 || at >= sb->size - 1) {
        return; // already full: count only
    }
    size_t room = sb->size - 1 - at;
    size_t copy = SL_MIN(room, length);
    memcpy(sb->buf + at, text, copy);
    sb->buf[at + copy] = '\0';
}

void
sl__strbuf_puts(sl_strbuf *sb, const char *text)
{
    sl__strbuf_append(sb, text, strlen(text));
}

void
sl__strbuf_putc(sl_strbuf *sb, char c)
{
    sl__strbuf_append(sb, &c, 1);
}

void
sl__strbuf_u64(sl_strbuf *sb, uint64_t value)
{
    char text[STRBUF_NUMBER_MAX];
    int n = snprintf(text, sizeof(text), "%" PRIu64, value);
    SL_ASSERT(n > 0 && (size_t)n < sizeof(text));
    sl__strbuf_append(sb, text, (size_t)n);
}

void
sl__strbuf_i64(sl_strbuf *sb, int64_t value)
{
    char text[STRBUF_NUMBER_MAX];
    int n = snprintf(text, sizeof(text), "%" PRId64, value);
    SL_ASSERT(n > 0 && (size_t)n < sizeof(text));
    sl__strbuf_append(sb, text, (size_t)n);
}

void
sl__strbuf_double(sl_strbuf *sb, double value)
{
    if (isnan(value)) {
        sl__strbuf_puts(sb, "NaN");
        return;
    }
    if (isinf(value)) {
        sl__strbuf_puts(sb, value > 0 ? "+Inf" : "-Inf");
        return;
    }
    // 15 significant digits read back exactly for most values and look tidy (0.1, not
    // 0.10000000000000001); 17 always do.
    char text[STRBUF_NUMBER_MAX];
    int n = snprintf(text, sizeof(text), "%.15g", value);
    SL_ASSERT(n > 0 && (size_t)n < sizeof(text));
    if (strtod(text, NULL) != value) {
        n = snprintf(text, sizeof(text), "%.17g", value);
        SL_ASSERT(n > 0 && (size_t)n < sizeof(text));
    }
    sl__strbuf_append(sb, text, (size_t)n);
}

bool
sl__strbuf_fits(const sl_strbuf *sb)
{
    return sb->needed_bytes < sb->size;
}

// Length of the UTF-8 sequence starting at text[0] if it is well-formed, else 0.
static size_t
utf8_sequence_length(const unsigned char *text, size_t left)
{
    unsigned char c = text[0];
    if (c < 0x80) {
        return 1;
    }
    size_t length;
    uint32_t code;
    if (c >= 0xc2 && c <= 0xdf) {
        length = 2;
        code = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        length = 3;
        code = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        length = 4;
        code = c & 0x07u;
    } else {
        return 0; // continuation byte, overlong lead (c0, c1) or beyond U+10FFFF
    }
    if (left < length) {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((text[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        code = (code << 6) | (text[i] & 0x3fu);
    }
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
        return 0;
    }
    return length;
}

bool
sl__utf8_valid(const char *text, size_t length)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t at = 0;
    while (at < length) { // each step consumes at least one byte
        size_t step = utf8_sequence_length(p + at, length - at);
        if (step == 0) {
            return false;
        }
        at += step;
    }
    return true;
}
