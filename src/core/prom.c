// Prometheus text exposition (format 0.0.4) of a metrics registry: one # HELP and one # TYPE line
// per family, then its samples. Histograms are exposed as summaries (quantile 0.5, 0.9, 0.99,
// 0.999 and 1 = exact max, plus _sum and _count): 4608 log-linear buckets are too many to ship
// as _bucket lines, and quantiles computed here are exact to 0.4%. Time accounts become two
// families, <name>_ms_per_second (gauge) and <name>_seconds_total (counter), labelled by state.
#include <sluice/metrics.h>

#include "core/metrics_internal.h"
#include "core/strbuf.h"
#include "core/util.h"

#define NS_PER_S 1e9

// Escapes a label value: backslash, double quote and newline, as the format requires.
static void
escape_label_value(sl_strbuf *sb, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) { // bounded by SL_METRIC_LABEL_VALUE_MAX
        if (*p == '\\') {
            sl__strbuf_puts(sb, "\\\\");
        } else if (*p == '"') {
            sl__strbuf_puts(sb, "\\\"");
        } else if (*p == '\n') {
            sl__strbuf_puts(sb, "\\n");
        } else {
            sl__strbuf_putc(sb, *p);
        }
    }
}

// Escapes help text: backslash and newline (a double quote stays as is there).
static void
escape_help(sl_strbuf *sb, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) { // bounded by SL_METRIC_HELP_MAX
        if (*p == '\\') {
            sl__strbuf_puts(sb, "\\\\");
        } else if (*p == '\n') {
            sl__strbuf_puts(sb, "\\n");
        } else {
            sl__strbuf_putc(sb, *p);
        }
    }
}

static void
write_header(sl_strbuf *sb, const char *name, const char *suffix, const char *help,
             const char *type)
{
    sl__strbuf_puts(sb, "# HELP ");
    sl__strbuf_puts(sb, name);
    sl__strbuf_puts(sb, suffix);
    sl__strbuf_putc(sb, ' ');
    escape_help(sb, help);
    sl__strbuf_puts(sb, "\n# TYPE ");
    sl__strbuf_puts(sb, name);
    sl__strbuf_puts(sb, suffix);
    sl__strbuf_putc(sb, ' ');
    sl__strbuf_puts(sb, type);
    sl__strbuf_putc(sb, '\n');
}

// Writes name+suffix{labels,extra_name="extra_value"} and a space; extra_name may be NULL.
static void
write_sample_start(sl_strbuf *sb, const sl__metric_family *f, const char *suffix,
                   const sl__metric_series *s, const char *extra_name, const char *extra_value)
{
    sl__strbuf_puts(sb, f->name);
    sl__strbuf_puts(sb, suffix);
    if (f->label_count > 0 || extra_name != NULL) {
        sl__strbuf_putc(sb, '{');
        for (uint32_t i = 0; i < f->label_count; i++) {
            if (i > 0) {
                sl__strbuf_putc(sb, ',');
            }
            sl__strbuf_puts(sb, f->label_names[i]);
            sl__strbuf_puts(sb, "=\"");
            escape_label_value(sb, s->label_values[i]);
            sl__strbuf_putc(sb, '"');
        }
        if (extra_name != NULL) {
            if (f->label_count > 0) {
                sl__strbuf_putc(sb, ',');
            }
            sl__strbuf_puts(sb, extra_name);
            sl__strbuf_puts(sb, "=\"");
            escape_label_value(sb, extra_value);
            sl__strbuf_putc(sb, '"');
        }
        sl__strbuf_putc(sb, '}');
    }
    sl__strbuf_putc(sb, ' ');
}

static void
write_summary(sl_strbuf *sb, const sl__metric_family *f, const sl__metric_series *s)
{
    sl_histogram_summary sum;
    sl_histogram_summary_get(s->source.histogram, &sum);
    static const char *const quantile_names[] = {"0.5", "0.9", "0.99", "0.999", "1"};
    uint64_t values[] = {sum.p50, sum.p90, sum.p99, sum.p999, sum.max};
    _Static_assert(SL_ARRAY_LEN(quantile_names) == SL_ARRAY_LEN(values), "one value a quantile");
    for (uint32_t i = 0; i < SL_ARRAY_LEN(values); i++) {
        write_sample_start(sb, f, "", s, "quantile", quantile_names[i]);
        sl__metric_scaled_encode(sb, f, values[i], false);
        sl__strbuf_putc(sb, '\n');
    }
    write_sample_start(sb, f, "_sum", s, NULL, NULL);
    sl__metric_scaled_encode(sb, f, sum.sum, false);
    sl__strbuf_putc(sb, '\n');
    write_sample_start(sb, f, "_count", s, NULL, NULL);
    sl__strbuf_u64(sb, sum.count);
    sl__strbuf_putc(sb, '\n');
}

// One of the two families a time account exposes: rate (ms per second) or total (seconds).
static void
write_time_family(sl_strbuf *sb, const sl__metric_family *f, bool rate, int64_t now_ns)
{
    const char *suffix = rate ? SL__TIME_RATE_SUFFIX : SL__TIME_TOTAL_SUFFIX;
    write_header(sb, f->name, suffix, f->help, rate ? "gauge" : "counter");
    const sl__metric_series *s = f->head;
    for (uint32_t i = 0; i < f->series_count; i++, s = s->next) {
        sl_timeacct_stats st;
        if (sl_timeacct_read(s->source.timeacct, now_ns, &st) != SL_OK) {
            continue; // the writer kept it busy for every try; the next scrape will see it
        }
        for (uint32_t k = 0; k < SL_TIME_STATE_COUNT; k++) {
            write_sample_start(sb, f, suffix, s, "state", sl_time_state_name((sl_time_state)k));
            if (rate) {
                sl__strbuf_u64(sb, st.ms_per_s[k]);
            } else {
                sl__strbuf_double(sb, (double)st.total_ns[k] / NS_PER_S);
            }
            sl__strbuf_putc(sb, '\n');
        }
    }
}

static void
write_family(sl_strbuf *sb, const sl__metric_family *f, int64_t now_ns)
{
    if (f->type == SL_METRIC_TIME) {
        write_time_family(sb, f, true, now_ns);
        write_time_family(sb, f, false, now_ns);
        return;
    }
    write_header(sb, f->name, "", f->help, sl__metric_type_name(f->type));
    const sl__metric_series *s = f->head;
    for (uint32_t i = 0; i < f->series_count; i++, s = s->next) {
        if (f->type == SL_METRIC_SUMMARY) {
            write_summary(sb, f, s);
            continue;
        }
        write_sample_start(sb, f, "", s, NULL, NULL);
        sl__metric_value_encode(sb, f, s, false);
        sl__strbuf_putc(sb, '\n');
    }
}

int
sl_metrics_encode_prometheus(sl_metrics_registry *registry, int64_t now_ns, char *buf,
                             size_t buf_size, size_t *length_out)
{
    SL_ASSERT(registry != NULL);
    SL_ASSERT(length_out != NULL);
    sl_strbuf sb;
    sl__strbuf_init(&sb, buf, buf_size);
    pthread_mutex_lock(&registry->mutex);
    for (uint32_t i = 0; i < registry->family_count; i++) {
        write_family(&sb, registry->families[i], now_ns);
    }
    pthread_mutex_unlock(&registry->mutex);
    if (!sl__strbuf_fits(&sb)) {
        *length_out = sb.needed_bytes + 1;
        return SL_EFULL;
    }
    *length_out = sb.needed_bytes;
    return SL_OK;
}
