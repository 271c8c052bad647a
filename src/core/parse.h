// Parsing of human-written values shared by sluiced, sluice and config files: sizes ("64MiB"),
// durations ("250ms", "2s"), endpoints ("127.0.0.1:7420"). Each fills an optional error message.
#ifndef SLUICE_CORE_PARSE_H
#define SLUICE_CORE_PARSE_H

#include <stddef.h>
#include <stdint.h>

// Parses a byte size: a decimal integer with an optional unit B, KiB, MiB, GiB, TiB (powers of
// 1024) or KB, MB, GB, TB (powers of 1000); case-insensitive; no unit means bytes.
// SL_OK, SL_EINVAL (malformed) or SL_ERANGE (overflows 64 bits).
int sl_parse_size(const char *text, uint64_t *bytes_out, char *err, size_t err_size);

// Parses a duration: an integer with unit us, ms, s, m or h (no unit: milliseconds) into ms.
// Sub-millisecond values round up to 1 ms unless they are 0.
int sl_parse_duration_ms(const char *text, int64_t *ms_out, char *err, size_t err_size);

// Parses "HOST:PORT" (HOST may be empty for all interfaces, or [v6]) into host (size >= 256) and
// port (1..65535; 0 allowed when allow_zero, meaning "pick an ephemeral port").
int sl_parse_endpoint(const char *text, char *host, size_t host_size, uint16_t *port_out,
                      int allow_zero, char *err, size_t err_size);

// Formats bytes as a short human string ("64.0 MiB") into out; returns out.
const char *sl_format_size(uint64_t bytes, char *out, size_t out_size);

#endif
