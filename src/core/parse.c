// Sizes, durations and endpoints as people write them (see parse.h).
#include "core/parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sluice/error.h>

#include "core/util.h"

static int parse_fail(int code, char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
parse_fail(int code, char *err, size_t err_size, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

// Splits "123unit" into a number and a unit; SL_OK or SL_EINVAL/SL_ERANGE.
static int
parse_number_unit(const char *text, uint64_t *number, const char **unit)
{
    const char *p = text;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (!isdigit((unsigned char)*p)) {
        return SL_EINVAL;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno == ERANGE) {
        return SL_ERANGE;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    *number = v;
    *unit = end;
    return SL_OK;
}

static int
unit_is(const char *unit, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(unit, name, n) != 0) {
        return 0;
    }
    for (const char *p = unit + n; *p != '\0'; p++) {
        if (!isspace((unsigned char)*p)) {
            return 0;
        }
    }
    return 1;
}

int
sl_parse_size(const char *text, uint64_t *bytes_out, char *err, size_t err_size)
{
    static const struct {
        const char *name;
        uint64_t factor;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1024},
        {"kib", 1024},
        {"kb", 1000},
        {"m", 1024ull * 1024},
        {"mib", 1024ull * 1024},
        {"mb", 1000ull * 1000},
        {"g", 1024ull * 1024 * 1024},
        {"gib", 1024ull * 1024 * 1024},
        {"gb", 1000ull * 1000 * 1000},
        {"tib", 1024ull * 1024 * 1024 * 1024},
        {"tb", 1000ull * 1000 * 1000 * 1000},
    };
    uint64_t n = 0;
    const char *unit = NULL;
    if (text == NULL) {
        return parse_fail(SL_EINVAL, err, err_size, "missing size");
    }
    int rc = parse_number_unit(text, &n, &unit);
    if (rc != SL_OK) {
        return parse_fail(rc, err, err_size, "'%s' is not a size (examples: 4096, 64KiB, 1GiB)",
                          text);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(units); i++) {
        if (unit_is(unit, units[i].name)) {
            if (n > UINT64_MAX / units[i].factor) {
                return parse_fail(SL_ERANGE, err, err_size, "size '%s' is too large", text);
            }
            *bytes_out = n * units[i].factor;
            return SL_OK;
        }
    }
    return parse_fail(SL_EINVAL, err, err_size,
                      "'%s': unknown size unit '%s' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
                      text, unit);
}

int
sl_parse_duration_ms(const char *text, int64_t *ms_out, char *err, size_t err_size)
{
    uint64_t n = 0;
    const char *unit = NULL;
    if (text == NULL) {
        return parse_fail(SL_EINVAL, err, err_size, "missing duration");
    }
    int rc = parse_number_unit(text, &n, &unit);
    if (rc != SL_OK || n > (uint64_t)INT64_MAX / 3600000) {
        return parse_fail(rc == SL_OK ? SL_ERANGE : rc, err, err_size,
                          "'%s' is not a duration (examples: 250ms, 2s, 5m)", text);
    }
    int64_t v = (int64_t)n;
    if (unit_is(unit, "us")) {
        *ms_out = v == 0 ? 0 : SL_MAX((v + 999) / 1000, 1);
    } else if (unit_is(unit, "ms") || unit_is(unit, "")) {
        *ms_out = v;
    } else if (unit_is(unit, "s")) {
        *ms_out = v * 1000;
    } else if (unit_is(unit, "m") || unit_is(unit, "min")) {
        *ms_out = v * 60000;
    } else if (unit_is(unit, "h")) {
        *ms_out = v * 3600000;
    } else {
        return parse_fail(SL_EINVAL, err, err_size,
                          "'%s': unknown duration unit '%s' (use us, ms, s, m, h)", text, unit);
    }
    return SL_OK;
}

int
sl_parse_endpoint(const char *text, char *host, size_t host_size, uint16_t *port_out,
                  int allow_zero, char *err, size_t err_size)
{
    if (text == NULL || text[0] == '\0') {
        return parse_fail(SL_EINVAL, err, err_size, "missing HOST:PORT");
    }
    const char *colon = strrchr(text, ':');
    if (colon == NULL) {
        return parse_fail(SL_EINVAL, err, err_size, "'%s' is not HOST:PORT", text);
    }
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= host_size) {
        return parse_fail(SL_EINVAL, err, err_size, "host in '%s' is too long", text);
    }
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < (allow_zero ? 0 : 1) ||
        port > 65535) {
        return parse_fail(SL_EINVAL, err, err_size, "'%s': port must be %d..65535", text,
                          allow_zero ? 0 : 1);
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port_out = (uint16_t)port;
    return SL_OK;
}

const char *
sl_format_size(uint64_t bytes, char *out, size_t out_size)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < SL_ARRAY_LEN(units)) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) {
        snprintf(out, out_size, "%llu B", (unsigned long long)bytes);
    } else {
        snprintf(out, out_size, "%.1f %s", v, units[u]);
    }
    return out;
}
