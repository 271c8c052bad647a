// Record output for `sluice consume --format` in kcat's -f convention, and the generated message
// values of `sluice produce` (the sequence number first, so a reader can audit for loss).
#include "cli/cli.h"

#include <string.h>

// Writes a key or value; NULL (no key) prints nothing, as kcat does.
static void
put_bytes(FILE *out, const void *data, uint32_t size)
{
    if (data != NULL && size > 0) {
        fwrite(data, 1, size, out);
    }
}

static void
put_escape(FILE *out, char c)
{
    switch (c) {
    case 'n':
        fputc('\n', out);
        break;
    case 't':
        fputc('\t', out);
        break;
    case 'r':
        fputc('\r', out);
        break;
    case '0':
        fputc('\0', out);
        break;
    default:
        fputc(c, out); // "\\" and anything else: the character itself
        break;
    }
}

static void
put_field(FILE *out, char c, const char *topic, const sl_consumed *rec)
{
    const sl_record *r = &rec->record;
    switch (c) {
    case 't':
        fputs(topic, out);
        break;
    case 'p':
        fprintf(out, "%u", rec->partition);
        break;
    case 'o':
        fprintf(out, "%llu", (unsigned long long)rec->offset);
        break;
    case 'k':
        put_bytes(out, r->key, r->key_size);
        break;
    case 's':
        put_bytes(out, r->value, r->value_size);
        break;
    case 'T': // milliseconds since the epoch, as kcat prints message timestamps
        fprintf(out, "%lld", (long long)(r->timestamp_us / 1000));
        break;
    case 'K':
        fprintf(out, "%d", r->key == NULL ? -1 : (int)r->key_size);
        break;
    case 'S':
        fprintf(out, "%u", r->value_size);
        break;
    case '%':
        fputc('%', out);
        break;
    default: // unknown: printed as written
        fputc('%', out);
        fputc(c, out);
        break;
    }
}

void
sl_cli_format(FILE *out, const char *fmt, const char *topic, const sl_consumed *rec)
{
    size_t len = strlen(fmt);
    for (size_t i = 0; i < len; i++) {
        char c = fmt[i];
        if ((c == '%' || c == '\\') && i + 1 < len) {
            i++;
            if (c == '%') {
                put_field(out, fmt[i], topic, rec);
            } else {
                put_escape(out, fmt[i]);
            }
        } else {
            fputc(c, out);
        }
    }
}

size_t
sl_cli_gen_value(uint64_t seq, size_t size, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%llu ", (unsigned long long)seq);
    size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
    size_t want = size < cap ? size : cap;
    for (; len < want; len++) {
        buf[len] = (char)('a' + (seq + len) % 26); // varied filler: not trivially compressible
    }
    return len;
}
