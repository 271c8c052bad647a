// Encoders: the Prometheus text output validated line by line (one HELP and TYPE per family,
// sample grammar, label escaping of backslash, quote and newline, counters ending in _total,
// summaries with quantiles, _sum and _count) and the JSON output checked well-formed by a small
// validator here (and by python3 -m json.tool when python3 exists), plus SL_EFULL sizing.
#include "support/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/metrics.h>

#define T0                INT64_C(1000000000000)
#define MS                INT64_C(1000000)
#define OUT_MAX           (1u << 16)
#define FAMILIES_SEEN_MAX 32

typedef struct fixture {
    sl_metrics_registry *r;
    sl_counter records;
    sl_counter drops;
    sl_gauge depth;
    sl_histogram *latency;
    sl_timeacct *time;
    double fill;
} fixture;

static double
read_fill(void *user)
{
    return *(const double *)user;
}

static uint64_t
family(sl_metrics_registry *r, const char *name, const char *help, sl_metric_type type,
       const char *const *labels, uint32_t label_count, double scale)
{
    sl_metric_family_desc d = {.name = name,
                               .help = help,
                               .type = type,
                               .label_names = labels,
                               .label_count = label_count,
                               .scale = scale};
    uint64_t id = 0;
    assert_int_equal(sl_metrics_family_register(r, &d, &id), SL_OK);
    return id;
}

static void
series(sl_metrics_registry *r, uint64_t fam, const char *const *values, sl_metric_source src)
{
    uint64_t id = 0;
    assert_int_equal(sl_metrics_series_add(r, fam, values, &src, &id), SL_OK);
}

static fixture *
fixture_make(void)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(sl_metrics_registry_new(NULL, &f->r), SL_OK);
    sl_counter_init(&f->records);
    sl_counter_init(&f->drops);
    sl_gauge_init(&f->depth);
    sl_counter_add(&f->records, 18446744073709551000u); // exact past 2^53
    sl_counter_add(&f->drops, 7);
    sl_gauge_set(&f->depth, -3);
    f->fill = 0.25;
    assert_int_equal(sl_histogram_new(&f->latency), SL_OK);
    for (uint64_t v = 1; v <= 1000; v++) {
        sl_histogram_record(f->latency, v * 1000000); // 1 ms .. 1 s
    }
    assert_int_equal(sl_timeacct_new(SL_TIME_BUSY, T0, &f->time), SL_OK);
    sl_timeacct_enter(f->time, SL_TIME_BACKPRESSURED, T0 + 700 * MS);
    sl_timeacct_enter(f->time, SL_TIME_IDLE, T0 + 1500 * MS);

    const char *topic_reason[] = {"topic", "reason"};
    uint64_t rec = family(f->r, "sluice_test_records_total", "Records \\ seen\nby topic",
                          SL_METRIC_COUNTER, topic_reason, 2, 0);
    series(f->r, rec, (const char *[]){"plain", "none"},
           (sl_metric_source){.counter = &f->records});
    series(f->r, rec, (const char *[]){"a\\b\"c\nd", "full\x01"},
           (sl_metric_source){.counter = &f->drops});
    uint64_t depth = family(f->r, "sluice_test_depth_records", "Queue depth \"now\"",
                            SL_METRIC_GAUGE, NULL, 0, 0);
    series(f->r, depth, NULL, (sl_metric_source){.gauge = &f->depth});
    const char *budget[] = {"budget"};
    uint64_t fill = family(f->r, "sluice_test_fill_ratio", NULL, SL_METRIC_GAUGE, budget, 1, 0);
    series(f->r, fill, (const char *[]){"global"},
           (sl_metric_source){.read_cb = read_fill, .read_user = &f->fill});
    const char *stage[] = {"stage"};
    uint64_t lat =
        family(f->r, "sluice_test_latency_seconds", "Latency", SL_METRIC_SUMMARY, stage, 1, 1e-9);
    series(f->r, lat, (const char *[]){"map"}, (sl_metric_source){.histogram = f->latency});
    uint64_t time =
        family(f->r, "sluice_test_stage_time", "Stage time", SL_METRIC_TIME, stage, 1, 0);
    series(f->r, time, (const char *[]){"map"}, (sl_metric_source){.timeacct = f->time});
    family(f->r, "sluice_test_empty_total", "No series yet", SL_METRIC_COUNTER, NULL, 0, 0);
    return f;
}

static void
fixture_free(fixture *f)
{
    sl_metrics_registry_free(f->r);
    sl_histogram_free(f->latency);
    sl_timeacct_free(f->time);
    free(f);
}

// ---- a strict reader of the text format ----------------------------------------------------

typedef struct family_seen {
    char name[SL_NAME_MAX];
    char type[16];
    bool help;
} family_seen;

typedef struct prom_check {
    family_seen families[FAMILIES_SEEN_MAX];
    int family_count;
    int current; // index of the family whose samples may follow; -1 before any TYPE
    int samples;
} prom_check;

static size_t
name_length(const char *p, bool label)
{
    size_t n = 0;
    while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') || p[n] == '_' ||
           (!label && p[n] == ':') || (n > 0 && p[n] >= '0' && p[n] <= '9')) {
        n++;
    }
    return n;
}

static int
family_find(prom_check *c, const char *name, size_t length)
{
    for (int i = 0; i < c->family_count; i++) {
        if (strlen(c->families[i].name) == length &&
            memcmp(c->families[i].name, name, length) == 0) {
            return i;
        }
    }
    return -1;
}

static void
check_comment(prom_check *c, const char *line)
{
    bool help = strncmp(line, "# HELP ", 7) == 0;
    assert_true(help || strncmp(line, "# TYPE ", 7) == 0);
    const char *name = line + 7;
    size_t n = name_length(name, false);
    assert_true(n > 0 && name[n] == ' ');
    int i = family_find(c, name, n);
    if (i < 0) {
        assert_true(c->family_count < FAMILIES_SEEN_MAX);
        i = c->family_count++;
        memcpy(c->families[i].name, name, n);
        c->families[i].name[n] = '\0';
    }
    family_seen *f = &c->families[i];
    if (help) {
        assert_false(f->help); // once per family, before its TYPE
        assert_true(f->type[0] == '\0');
        f->help = true;
        // Help escapes: only \\ and \n.
        for (const char *p = name + n + 1; *p != '\0'; p++) {
            if (*p == '\\') {
                p++;
                assert_true(*p == '\\' || *p == 'n');
            }
        }
        return;
    }
    assert_true(f->type[0] == '\0'); // once per family
    const char *type = name + n + 1;
    assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                strcmp(type, "summary") == 0);
    snprintf(f->type, sizeof(f->type), "%s", type);
    if (strcmp(type, "counter") == 0) {
        assert_true(n > 6 && memcmp(name + n - 6, "_total", 6) == 0);
    }
    c->current = i;
}

// Parses {name="value",...}; returns the position after '}'. Sets *has_quantile.
static const char *
check_labels(const char *p, bool *has_quantile)
{
    assert_true(*p == '{');
    p++;
    for (int k = 0; k < 16 && *p != '}'; k++) {
        size_t n = name_length(p, true);
        assert_true(n > 0);
        if (n == 8 && memcmp(p, "quantile", 8) == 0) {
            *has_quantile = true;
        }
        p += n;
        assert_true(p[0] == '=' && p[1] == '"');
        p += 2;
        for (; *p != '"'; p++) {
            assert_true(*p != '\0' && *p != '\n');
            if (*p == '\\') {
                p++;
                assert_true(*p == '\\' || *p == '"' || *p == 'n');
            }
        }
        p++;
        assert_true(*p == ',' || *p == '}');
        if (*p == ',') {
            p++;
        }
    }
    assert_true(*p == '}');
    return p + 1;
}

static void
check_sample(prom_check *c, const char *line)
{
    assert_true(c->current >= 0);
    family_seen *f = &c->families[c->current];
    size_t n = name_length(line, false);
    assert_true(n > 0);
    size_t fl = strlen(f->name);
    bool is_summary = strcmp(f->type, "summary") == 0;
    bool base = n == fl && memcmp(line, f->name, n) == 0;
    bool extra =
        is_summary && n > fl && memcmp(line, f->name, fl) == 0 &&
        (strncmp(line + fl, "_sum", n - fl) == 0 || strncmp(line + fl, "_count", n - fl) == 0);
    assert_true(base || extra); // samples follow their own family's TYPE
    const char *p = line + n;
    bool has_quantile = false;
    if (*p == '{') {
        p = check_labels(p, &has_quantile);
    }
    assert_true(is_summary ? (base == has_quantile) : !has_quantile);
    assert_true(*p == ' ');
    p++;
    if (strcmp(p, "NaN") != 0 && strcmp(p, "+Inf") != 0 && strcmp(p, "-Inf") != 0) {
        char *end = NULL;
        strtod(p, &end);
        assert_true(end != p && *end == '\0');
    }
    c->samples++;
}

static void
check_prometheus(char *text)
{
    prom_check c = {.current = -1};
    size_t length = strlen(text);
    assert_true(length > 0 && text[length - 1] == '\n');
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            check_comment(&c, line);
        } else {
            check_sample(&c, line);
        }
    }
    for (int i = 0; i < c.family_count; i++) {
        assert_true(c.families[i].help);
        assert_true(c.families[i].type[0] != '\0');
    }
    assert_int_equal(c.family_count, 7); // 6 registered; the time family exposes two
    assert_int_equal(c.samples, 2 + 1 + 1 + 7 + 3 + 3);
}

static void
test_prom_output_is_valid_and_escaped(void **state)
{
    (void)state;
    fixture *f = fixture_make();
    static char out[OUT_MAX];
    size_t length = 0;
    assert_int_equal(sl_metrics_encode_prometheus(f->r, T0 + 2100 * MS, out, sizeof(out), &length),
                     SL_OK);
    assert_int_equal(length, strlen(out));
    fprintf(stderr, "%s", out);
    // Exact lines for the parts that are easy to get wrong.
    const char *expected[] = {
        "# HELP sluice_test_records_total Records \\\\ seen\\nby topic\n",
        "# TYPE sluice_test_records_total counter\n",
        "sluice_test_records_total{topic=\"plain\",reason=\"none\"} 18446744073709551000\n",
        "sluice_test_records_total{topic=\"a\\\\b\\\"c\\nd\",reason=\"full\x01\"} 7\n",
        "# HELP sluice_test_depth_records Queue depth \"now\"\n",
        "sluice_test_depth_records -3\n",
        "# HELP sluice_test_fill_ratio \n",
        "sluice_test_fill_ratio{budget=\"global\"} 0.25\n",
        "# TYPE sluice_test_latency_seconds summary\n",
        "sluice_test_latency_seconds{stage=\"map\",quantile=\"1\"} 1\n",
        "sluice_test_latency_seconds_sum{stage=\"map\"} 500.5\n",
        "sluice_test_latency_seconds_count{stage=\"map\"} 1000\n",
        "sluice_test_latency_seconds{stage=\"map\",quantile=\"0.9\"} 0.899678208\n",
        "# TYPE sluice_test_stage_time_ms_per_second gauge\n",
        "sluice_test_stage_time_ms_per_second{stage=\"map\",state=\"busy\"} 0\n",
        "sluice_test_stage_time_ms_per_second{stage=\"map\",state=\"backpressured\"} 500\n",
        "sluice_test_stage_time_ms_per_second{stage=\"map\",state=\"idle\"} 500\n",
        "# TYPE sluice_test_stage_time_seconds_total counter\n",
        "sluice_test_stage_time_seconds_total{stage=\"map\",state=\"idle\"} 0.6\n",
        "# TYPE sluice_test_empty_total counter\n",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        if (strstr(out, expected[i]) == NULL) {
            fprintf(stderr, "missing: %s", expected[i]);
        }
        assert_non_null(strstr(out, expected[i]));
    }
    // p50 of 1..1000 ms is 500 ms, read back within 1%.
    const char *p50 = strstr(out, "quantile=\"0.5\"} ");
    assert_non_null(p50);
    double v = strtod(p50 + strlen("quantile=\"0.5\"} "), NULL);
    assert_true(fabs(v - 0.5) <= 0.005);
    check_prometheus(out);
    fixture_free(f);
}

static void
test_encoders_report_needed_size(void **state)
{
    (void)state;
    fixture *f = fixture_make();
    static char full[OUT_MAX];
    size_t full_length = 0;
    assert_int_equal(sl_metrics_encode_prometheus(f->r, T0, full, sizeof(full), &full_length),
                     SL_OK);
    char small[64];
    memset(small, 'x', sizeof(small));
    size_t needed = 0;
    assert_int_equal(sl_metrics_encode_prometheus(f->r, T0, small, sizeof(small), &needed),
                     SL_EFULL);
    assert_int_equal(needed, full_length + 1);
    assert_int_equal(strlen(small), sizeof(small) - 1); // a NUL-terminated prefix
    assert_memory_equal(small, full, sizeof(small) - 1);
    char *exact = malloc(needed);
    assert_non_null(exact);
    size_t length = 0;
    assert_int_equal(sl_metrics_encode_prometheus(f->r, T0, exact, needed, &length), SL_OK);
    assert_string_equal(exact, full);
    assert_int_equal(sl_metrics_encode_prometheus(f->r, T0, exact, needed - 1, &length), SL_EFULL);
    free(exact);
    assert_int_equal(sl_metrics_encode_json(f->r, T0, NULL, 0, &needed), SL_EFULL);
    exact = malloc(needed);
    assert_non_null(exact);
    assert_int_equal(sl_metrics_encode_json(f->r, T0, exact, needed, &length), SL_OK);
    assert_int_equal(length + 1, needed);
    free(exact);
    fixture_free(f);
}

// ---- a JSON well-formedness check (RFC 8259 grammar; a validator, not a parser) ------------

#define JSON_DEPTH_MAX 32

static const char *json_value(const char *p, int depth);

static const char *
json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
        p++;
    }
    return p;
}

static const char *
json_str(const char *p)
{
    if (*p != '"') {
        return NULL;
    }
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) {
            return NULL; // raw control characters are not allowed
        }
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (strchr("0123456789abcdefABCDEF", p[i]) == NULL || p[i] == '\0') {
                        return NULL;
                    }
                }
                p += 4;
            } else if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *
json_number(const char *p)
{
    const char *start = p;
    if (*p == '-') {
        p++;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        return NULL;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            return NULL;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!(*p >= '0' && *p <= '9')) {
            return NULL;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    return p == start ? NULL : p;
}

static const char *
json_container(const char *p, int depth, char close, bool object)
{
    p = json_ws(p + 1);
    if (*p == close) {
        return p + 1;
    }
    for (;;) { // each member consumes input; ends at close or on error
        if (object) {
            p = json_str(json_ws(p));
            if (p == NULL || *(p = json_ws(p)) != ':') {
                return NULL;
            }
            p++;
        }
        p = json_value(p, depth + 1);
        if (p == NULL) {
            return NULL;
        }
        p = json_ws(p);
        if (*p == close) {
            return p + 1;
        }
        if (*p != ',') {
            return NULL;
        }
        p++;
    }
}

static const char *
json_value(const char *p, int depth)
{
    if (depth > JSON_DEPTH_MAX) {
        return NULL;
    }
    p = json_ws(p);
    if (*p == '{') {
        return json_container(p, depth, '}', true);
    }
    if (*p == '[') {
        return json_container(p, depth, ']', false);
    }
    if (*p == '"') {
        return json_str(p);
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0) {
        return p + 4;
    }
    if (strncmp(p, "false", 5) == 0) {
        return p + 5;
    }
    return json_number(p);
}

static bool
json_valid(const char *text)
{
    const char *end = json_value(text, 0);
    return end != NULL && *json_ws(end) == '\0';
}

static void
test_json_validator_rejects_bad_documents(void **state)
{
    (void)state;
    assert_true(json_valid("{\"a\":[1,2.5e3,-0,\"x\\\"\\n\\u0001\"],\"b\":{},\"c\":null}"));
    const char *bad[] = {"{",  "{\"a\":1,}", "[1 2]", "\"a\nb\"", "{\"a\" 1}",
                         "01", "\"\\x\"",    "NaN",   "[1]]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(json_valid(bad[i]));
    }
}

static void
test_json_output_is_well_formed(void **state)
{
    (void)state;
    fixture *f = fixture_make();
    f->fill = NAN; // must become null, not a bare NaN
    static char out[OUT_MAX];
    size_t length = 0;
    assert_int_equal(sl_metrics_encode_json(f->r, T0 + 2100 * MS, out, sizeof(out), &length),
                     SL_OK);
    fprintf(stderr, "%s", out);
    assert_true(json_valid(out));
    assert_non_null(strstr(out, "\"topic\":\"a\\\\b\\\"c\\nd\",\"reason\":\"full\\u0001\""));
    assert_non_null(strstr(out, "\"value\":18446744073709551000"));
    assert_non_null(strstr(out, "\"value\":null"));
    assert_non_null(strstr(out, "\"ms_per_second\":{\"busy\":0,\"backpressured\":500,"
                                "\"idle\":500}"));
    assert_non_null(strstr(out, "\"count\":1000,\"sum\":500.5"));

    // A second opinion when python3 is around.
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "python3 not found: skipping json.tool check\n");
    } else {
        char dir[256];
        sl_test_tmpdir(dir, sizeof(dir));
        char path[320];
        snprintf(path, sizeof(path), "%s/stats.json", dir);
        FILE *file = fopen(path, "w");
        assert_non_null(file);
        assert_int_equal(fwrite(out, 1, length, file), length);
        fclose(file);
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "python3 -m json.tool '%s' >/dev/null", path);
        assert_int_equal(system(cmd), 0);
        sl_test_rmtree(dir);
    }
    fixture_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prom_output_is_valid_and_escaped),
        cmocka_unit_test(test_encoders_report_needed_size),
        cmocka_unit_test(test_json_validator_rejects_bad_documents),
        cmocka_unit_test(test_json_output_is_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
