// The readable summary of a broker's /stats document, shared by `sluice stats` and `sluice top`:
// one broker line, then for each topic its rates, the budgets with their fill and time until
// full, credit and throttles, drops, lag and latency, the predictions, and the /why verdict as
// the line that says what pushes back and why (highlighted in `top`).
#include "cli/ops.h"

#include <string.h>

#include <sluice/error.h>

#define ANSI_RESET  "\033[0m"
#define ANSI_BOLD   "\033[1m"
#define ANSI_RED    "\033[1;31m"
#define ANSI_YELLOW "\033[1;33m"
#define ANSI_GREEN  "\033[32m"

// Fill ratio from which a budget is shown as pressing (the admission's default shrink_from).
#define SUMMARY_PRESSED_FILL 0.8

static const char *
fmt_bytes(double v, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (isnan(v)) {
        snprintf(buf, size, "-");
        return buf;
    }
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

static const char *
fmt_seconds(double s, char *buf, size_t size)
{
    if (isnan(s)) {
        snprintf(buf, size, "-");
    } else if (isinf(s)) {
        snprintf(buf, size, "never");
    } else if (s < 1) {
        snprintf(buf, size, "%.0f ms", s * 1000);
    } else if (s < 120) {
        snprintf(buf, size, "%.1f s", s);
    } else {
        snprintf(buf, size, "%.0f min", s / 60);
    }
    return buf;
}

static double
zero_nan(double v)
{
    return isnan(v) ? 0.0 : v;
}

// Sum of a counter family over all its series (0 when absent).
static double
family_sum(json_t *stats, const char *family)
{
    double sum = 0;
    size_t i;
    json_t *s;
    json_t *series = sl_cli_stats_family(stats, family);
    json_array_foreach(series, i, s)
    {
        sum += json_number_value(json_object_get(s, "value"));
    }
    return sum;
}

static void
broker_line(FILE *out, json_t *stats)
{
    const char *const mem[] = {"scope", "broker", "budget", "memory", NULL};
    const char *const disk[] = {"scope", "broker", "budget", "disk", NULL};
    char a[32];
    char b[32];
    char c[32];
    char d[32];
    fprintf(out,
            "broker: %.0f connections, %.0f topics; memory %s of %s (%.0f%%), disk %s of %s; "
            "credit resyncs %.0f; records in the drop ledger %.0f\n",
            zero_nan(sl_cli_stat(stats, "sluice_broker_connections", NULL, NULL)),
            zero_nan(sl_cli_stat(stats, "sluice_broker_topics", NULL, NULL)),
            fmt_bytes(sl_cli_stat(stats, "sluice_budget_used_bytes", mem, NULL), a, sizeof(a)),
            fmt_bytes(sl_cli_stat(stats, "sluice_budget_capacity_bytes", mem, NULL), b, sizeof(b)),
            zero_nan(sl_cli_stat(stats, "sluice_budget_fill_ratio", mem, NULL)) * 100,
            fmt_bytes(sl_cli_stat(stats, "sluice_budget_used_bytes", disk, NULL), c, sizeof(c)),
            fmt_bytes(sl_cli_stat(stats, "sluice_budget_capacity_bytes", disk, NULL), d, sizeof(d)),
            family_sum(stats, "sluice_credit_resyncs_total"),
            zero_nan(sl_cli_stat(stats, "sluice_drops_ledger_records_total", NULL, NULL)));
}

// One budget of a topic: "memory 45% (full in never)", highlighted when pressing.
static void
budget_part(FILE *out, json_t *stats, const char *topic, const char *budget, bool ansi)
{
    const char *const l[] = {"scope", "topic", "owner", topic, "budget", budget, NULL};
    double fill = sl_cli_stat(stats, "sluice_budget_fill_ratio", l, NULL);
    double cap = sl_cli_stat(stats, "sluice_budget_capacity_bytes", l, NULL);
    double full_in = sl_cli_stat(stats, "sluice_budget_full_in_seconds", l, NULL);
    char t[32];
    if (isnan(fill)) {
        return;
    }
    bool pressed = fill >= SUMMARY_PRESSED_FILL;
    if (cap <= 0) {
        fprintf(out, "  %s unbounded", budget);
        return;
    }
    fprintf(out, "  %s%s %.0f%% (full in %s)%s", ansi && pressed ? ANSI_YELLOW : "", budget,
            fill * 100, fmt_seconds(full_in, t, sizeof(t)), ansi && pressed ? ANSI_RESET : "");
}

static void
throttles_part(FILE *out, json_t *stats, const char *topic)
{
    static const char *const reasons[] = {"memory_budget", "disk_budget", "topic_full", "quota"};
    fprintf(out, "; throttles");
    double total = 0;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        const char *const l[] = {"topic", topic, "reason", reasons[i], NULL};
        double v = zero_nan(sl_cli_stat(stats, "sluice_producer_throttled_total", l, NULL));
        if (v > 0) {
            fprintf(out, " %s %.0f", reasons[i], v);
        }
        total += v;
    }
    if (total == 0) {
        fprintf(out, " 0");
    }
}

// The /why verdict of the topic: what pushes back and why.
static void
verdict_line(FILE *out, const char *admin, const char *topic, bool ansi)
{
    char path[512];
    snprintf(path, sizeof(path), "/why?topic=%s", topic);
    json_t *why = NULL;
    long status = 0;
    char msg[256];
    if (sl_cli_admin_json(admin, path, SL_CLI_ADMIN_TIMEOUT_MS, &why, &status, msg, sizeof(msg)) !=
        SL_OK) {
        return;
    }
    json_t *v = json_object_get(why, "verdict");
    const char *reason = json_string_value(json_object_get(v, "reason"));
    const char *hop = json_string_value(json_object_get(v, "hop"));
    const char *detail = json_string_value(json_object_get(v, "detail"));
    if (reason != NULL) {
        bool flowing = strcmp(reason, "flowing") == 0 || strcmp(reason, "idle") == 0;
        const char *colour = !ansi ? "" : flowing ? ANSI_GREEN : ANSI_RED;
        fprintf(out, "  %s%s: %s%s%s (%s)%s\n", colour, flowing ? "flow" : "pushing back",
                flowing || hop == NULL ? "" : hop, flowing ? "" : " ", reason,
                detail != NULL ? detail : "", ansi ? ANSI_RESET : "");
    }
    json_decref(why);
}

// The oldest record waiting for the slowest consumer, over the topic's partitions (0 with none).
static double
max_lag_seconds(json_t *stats, const char *topic)
{
    double worst = 0;
    size_t i;
    json_t *s;
    json_t *series = sl_cli_stats_family(stats, "sluice_partition_oldest_unconsumed_age_seconds");
    json_array_foreach(series, i, s)
    {
        const char *t = json_string_value(json_object_get(json_object_get(s, "labels"), "topic"));
        if (t == NULL || strcmp(t, topic) != 0) {
            continue;
        }
        json_t *v = json_object_get(s, "value");
        double lag = json_is_null(v) ? INFINITY : json_number_value(v);
        worst = lag > worst ? lag : worst;
    }
    return worst;
}

static void
topic_block(FILE *out, json_t *stats, const char *admin, const char *topic, bool ansi)
{
    const char *const l[] = {"topic", topic, NULL};
    char a[32];
    char b[32];
    char c[32];
    fprintf(out, "%stopic %s%s: %.0f producer(s), %.0f consumer(s)\n", ansi ? ANSI_BOLD : "", topic,
            ansi ? ANSI_RESET : "", zero_nan(sl_cli_stat(stats, "sluice_topic_producers", l, NULL)),
            zero_nan(sl_cli_stat(stats, "sluice_topic_consumers", l, NULL)));
    double backlog = zero_nan(sl_cli_stat(stats, "sluice_topic_backlog_bytes", l, NULL));
    const char *const bl[] = {"scope", "topic", "owner", topic, "budget", "backlog", NULL};
    fprintf(
        out,
        "  in %.0f rec/s, out %.0f rec/s; lag %.0f records (%s, oldest waits %s), drains in %s\n",
        zero_nan(sl_cli_stat(stats, "sluice_topic_in_records_per_second", l, NULL)),
        zero_nan(sl_cli_stat(stats, "sluice_topic_out_records_per_second", l, NULL)),
        zero_nan(sl_cli_stat(stats, "sluice_budget_used_records", bl, NULL)),
        fmt_bytes(backlog, a, sizeof(a)), fmt_seconds(max_lag_seconds(stats, topic), c, sizeof(c)),
        fmt_seconds(sl_cli_stat(stats, "sluice_topic_drain_seconds", l, NULL), b, sizeof(b)));
    fprintf(out, " ");
    budget_part(out, stats, topic, "memory", ansi);
    budget_part(out, stats, topic, "backlog", ansi);
    budget_part(out, stats, topic, "disk", ansi);
    fprintf(out, "\n  credit granted %s, outstanding %s",
            fmt_bytes(sl_cli_stat(stats, "sluice_topic_credit_granted_bytes_total", l, NULL), a,
                      sizeof(a)),
            fmt_bytes(sl_cli_stat(stats, "sluice_topic_credit_outstanding_bytes", l, NULL), b,
                      sizeof(b)));
    throttles_part(out, stats, topic);
    fprintf(out, "; acks delayed %.0f",
            zero_nan(sl_cli_stat(stats, "sluice_topic_acks_delayed_total", l, NULL)));
    const char *const ev[] = {"topic", topic, "reason", "evicted", NULL};
    double dropped = sl_cli_stat(stats, "sluice_topic_records_dropped_total", ev, NULL);
    if (isnan(dropped)) {
        fprintf(out, "; dropped 0 (lossless)\n");
    } else {
        fprintf(out, "; dropped %.0f (drop_oldest)\n", dropped);
    }
    double p50 = sl_cli_stat(stats, "sluice_topic_end_to_end_latency_seconds", l, "p50");
    double p99 = sl_cli_stat(stats, "sluice_topic_end_to_end_latency_seconds", l, "p99");
    fprintf(out, "  latency p50 %s p99 %s; consumers %.0f, recommended %.0f (%.0f rec/s each)\n",
            fmt_seconds(p50, a, sizeof(a)), fmt_seconds(p99, b, sizeof(b)),
            zero_nan(sl_cli_stat(stats, "sluice_topic_consumers", l, NULL)),
            zero_nan(sl_cli_stat(stats, "sluice_topic_consumers_recommended", l, NULL)),
            zero_nan(sl_cli_stat(stats, "sluice_topic_per_consumer_records_per_second", l, NULL)));
    verdict_line(out, admin, topic, ansi);
}

void
sl_cli_summary_print(FILE *out, json_t *stats, const char *admin, const char *topic, bool ansi)
{
    broker_line(out, stats);
    json_t *series = sl_cli_stats_family(stats, "sluice_topic_records_in_total");
    size_t i;
    json_t *s;
    json_array_foreach(series, i, s)
    {
        const char *name =
            json_string_value(json_object_get(json_object_get(s, "labels"), "topic"));
        if (name == NULL || (topic != NULL && strcmp(name, topic) != 0)) {
            continue;
        }
        topic_block(out, stats, admin, name, ansi);
    }
}
