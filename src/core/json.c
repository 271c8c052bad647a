// JSON encoding of a metrics registry, for /stats, the dashboard and `sluice top`. A small
// encoder only: strings are escaped per RFC 8259 (quote, backslash, control characters; the
// registry already guarantees UTF-8), non-finite numbers become null. Document shape:
// docs/api/metrics.md. There is no JSON parser in the library.
#include <sluice/metrics.h>

#include "core/metrics_internal.h"
#include "core/strbuf.h"
#include "core/util.h"

#define NS_PER_S 1e9

static void
json_string(sl_strbuf *sb, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    sl__strbuf_putc(sb, '"');
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        // Bounded by the registry's name, help and label value limits.
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            sl__strbuf_putc(sb, '\\');
            sl__strbuf_putc(sb, (char)c);
        } else if (c == '\n') {
            sl__strbuf_puts(sb, "\\n");
        } else if (c == '\r') {
            sl__strbuf_puts(sb, "\\r");
        } else if (c == '\t') {
            sl__strbuf_puts(sb, "\\t");
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xfu]};
            sl__strbuf_append(sb, esc, sizeof(esc));
        } else {
            sl__strbuf_putc(sb, (char)c);
        }
    }
    sl__strbuf_putc(sb, '"');
}

// Writes ,"key": (or "key": for the first member).
static void
json_key(sl_strbuf *sb, const char *key, bool first)
{
    if (!first) {
        sl__strbuf_putc(sb, ',');
    }
    json_string(sb, key);
    sl__strbuf_putc(sb, ':');
}

static void
json_series_labels(sl_strbuf *sb, const sl__metric_family *f, const sl__metric_series *s)
{
    json_key(sb, "labels", true);
    sl__strbuf_putc(sb, '{');
    for (uint32_t i = 0; i < f->label_count; i++) {
        json_key(sb, f->label_names[i], i == 0);
        json_string(sb, s->label_values[i]);
    }
    sl__strbuf_putc(sb, '}');
}

static void
json_summary(sl_strbuf *sb, const sl__metric_family *f, const sl__metric_series *s)
{
    sl_histogram_summary sum;
    sl_histogram_summary_get(s->source.histogram, &sum);
    json_key(sb, "count", false);
    sl__strbuf_u64(sb, sum.count);
    static const char *const keys[] = {"sum", "min", "max", "p50", "p90", "p99", "p999"};
    uint64_t values[] = {sum.sum, sum.min, sum.max, sum.p50, sum.p90, sum.p99, sum.p999};
    _Static_assert(SL_ARRAY_LEN(keys) == SL_ARRAY_LEN(values), "one value a key");
    for (uint32_t i = 0; i < SL_ARRAY_LEN(values); i++) {
        json_key(sb, keys[i], false);
        sl__metric_scaled_encode(sb, f, values[i], true);
    }
}

static void
json_time(sl_strbuf *sb, const sl_timeacct_stats *st)
{
    json_key(sb, "state", false);
    json_string(sb, sl_time_state_name(st->state));
    json_key(sb, "ms_per_second", false);
    sl__strbuf_putc(sb, '{');
    for (uint32_t k = 0; k < SL_TIME_STATE_COUNT; k++) {
        json_key(sb, sl_time_state_name((sl_time_state)k), k == 0);
        sl__strbuf_u64(sb, st->ms_per_s[k]);
    }
    sl__strbuf_putc(sb, '}');
    json_key(sb, "seconds_total", false);
    sl__strbuf_putc(sb, '{');
    for (uint32_t k = 0; k < SL_TIME_STATE_COUNT; k++) {
        json_key(sb, sl_time_state_name((sl_time_state)k), k == 0);
        sl__strbuf_double(sb, (double)st->total_ns[k] / NS_PER_S);
    }
    sl__strbuf_putc(sb, '}');
    json_key(sb, "windows_completed", false);
    sl__strbuf_u64(sb, st->windows_completed);
}

// Writes one series object; false (and nothing written) when a time account could not be read.
static bool
json_series(sl_strbuf *sb, const sl__metric_family *f, const sl__metric_series *s, bool first,
            int64_t now_ns)
{
    sl_timeacct_stats st;
    if (f->type == SL_METRIC_TIME && sl_timeacct_read(s->source.timeacct, now_ns, &st) != SL_OK) {
        return false;
    }
    if (!first) {
        sl__strbuf_putc(sb, ',');
    }
    sl__strbuf_putc(sb, '{');
    json_series_labels(sb, f, s);
    if (f->type == SL_METRIC_SUMMARY) {
        json_summary(sb, f, s);
    } else if (f->type == SL_METRIC_TIME) {
        json_time(sb, &st);
    } else {
        json_key(sb, "value", false);
        sl__metric_value_encode(sb, f, s, true);
    }
    sl__strbuf_putc(sb, '}');
    return true;
}

static void
json_family(sl_strbuf *sb, const sl__metric_family *f, int64_t now_ns)
{
    sl__strbuf_putc(sb, '{');
    json_key(sb, "name", true);
    json_string(sb, f->name);
    json_key(sb, "help", false);
    json_string(sb, f->help);
    json_key(sb, "type", false);
    json_string(sb, sl__metric_type_name(f->type));
    json_key(sb, "series", false);
    sl__strbuf_putc(sb, '[');
    bool first = true;
    const sl__metric_series *s = f->head;
    for (uint32_t i = 0; i < f->series_count; i++, s = s->next) {
        if (json_series(sb, f, s, first, now_ns)) {
            first = false;
        }
    }
    sl__strbuf_puts(sb, "]}");
}

int
sl_metrics_encode_json(sl_metrics_registry *registry, int64_t now_ns, char *buf, size_t buf_size,
                       size_t *length_out)
{
    SL_ASSERT(registry != NULL);
    SL_ASSERT(length_out != NULL);
    sl_strbuf sb;
    sl__strbuf_init(&sb, buf, buf_size);
    sl__strbuf_puts(&sb, "{\"families\":[");
    pthread_mutex_lock(&registry->mutex);
    for (uint32_t i = 0; i < registry->family_count; i++) {
        if (i > 0) {
            sl__strbuf_putc(&sb, ',');
        }
        json_family(&sb, registry->families[i], now_ns);
    }
    pthread_mutex_unlock(&registry->mutex);
    sl__strbuf_puts(&sb, "]}\n");
    if (!sl__strbuf_fits(&sb)) {
        *length_out = sb.needed_bytes + 1;
        return SL_EFULL;
    }
    *length_out = sb.needed_bytes;
    return SL_OK;
}
