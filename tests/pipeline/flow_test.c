// Backpressure through the pipeline: a fast generator feeding a slow sink is held to the sink's
// pace by credit (the gap between what the source emitted and what the sink took never exceeds
// the queues in between), no stage ever holds more than its channel capacity (instrumented, not
// timed), the memory budget is never exceeded, nothing is lost, per-key order holds through
// parallel key-hash stages, and the bottleneck report names a slow stage.
// ctest-labels: concurrent
// ctest-timeout: 300
#include "support/test_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/builtin_ops.h"
#include "pipeline/gen.h"
#include "pipeline/pipeline_internal.h"

#define RECORDS     6000u
#define KEYS        16u
#define QUEUE       64u
#define QUEUE_BYTES (64u << 10)
#define SINK_US     100
#define WAIT_MS     120000
#define SAMPLE_NS   INT64_C(5000000)
#define VALUE_BYTES "512"

typedef struct seen {
    _Atomic uint32_t count[RECORDS];
    _Atomic int64_t last_per_key[KEYS];
    _Atomic uint32_t out_of_order;
    _Atomic uint64_t total;
    int64_t sleep_ns;
} seen;

static uint32_t
key_of(const sl_pipe_record *rec)
{
    char text[16] = "";
    memcpy(text, rec->key, SL_MIN(rec->key_size, sizeof(text) - 1));
    return (uint32_t)strtoul(text + 1, NULL, 10);
}

static int
slow_sink(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    seen *s = user;
    uint64_t seq = 0;
    sl__gen_decode(rec, &seq, NULL);
    if (seq < RECORDS) {
        atomic_fetch_add(&s->count[seq], 1);
    }
    uint32_t key = key_of(rec);
    if (key < KEYS && atomic_exchange(&s->last_per_key[key], (int64_t)seq) >= (int64_t)seq) {
        atomic_fetch_add(&s->out_of_order, 1);
    }
    atomic_fetch_add(&s->total, 1);
    if (s->sleep_ns > 0) {
        struct timespec ts = {0, s->sleep_ns};
        nanosleep(&ts, NULL);
    }
    return SL_OK;
}

static int
identity(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    return sl_pipe_emit(ctx, in);
}

static seen *
seen_new(int64_t sleep_ns)
{
    seen *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    for (uint32_t k = 0; k < KEYS; k++) {
        atomic_init(&s->last_per_key[k], -1);
    }
    s->sleep_ns = sleep_ns;
    return s;
}

static sl_pipe_stage *
add_map(sl_pipeline *p, const char *name, uint32_t parallelism)
{
    sl_pipe_stage_config mc;
    sl_pipe_stage_config_init(&mc);
    mc.parallelism = parallelism;
    mc.queue_records = QUEUE;
    mc.queue_bytes = QUEUE_BYTES;
    sl_pipe_stage *st = NULL;
    assert_int_equal(sl_pipeline_add_process(p, name, identity, NULL, &mc, &st), SL_OK);
    return st;
}

// The most records that can be between the source and the sink: every queue of every stage
// after the source, full (credit counts queued plus in-process records).
static uint64_t
flight_bound(sl_pipeline *p)
{
    uint64_t bound = 0;
    for (uint32_t i = 1; i < sl__pipeline_stage_count(p); i++) {
        sl_pipe_stage *s = sl__pipeline_stage_at(p, i);
        bound += (uint64_t)sl__pipe_stage_capacity(s) * sl__pipe_stage_parallelism(s);
    }
    return bound;
}

static void
test_flow_slow_sink_paces_the_source_within_bounds(void **state)
{
    (void)state;
    seen *s = seen_new(SINK_US * 1000);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.memory_budget_bytes = 2u << 20;
    pc.source_inflight_max = 4096;
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    char count[16];
    snprintf(count, sizeof(count), "%u", RECORDS);
    sl_pipe_option opts[] = {{"count", count}, {"keys", "16"}, {"value_size", VALUE_BYTES}};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = opts, .option_count = 3};
    sl_pipe_stage *src = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    sl_pipe_stage *m1 = add_map(p, "map1", 2);
    sl_pipe_stage *m2 = add_map(p, "map2", 2);
    sl_pipe_callback_sink cb = {.fn = slow_sink, .user = s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &cb};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = QUEUE;
    sc.queue_bytes = QUEUE_BYTES;
    sl_pipe_stage *sink = NULL;
    assert_int_equal(
        sl_pipeline_add_sink(p, "sink", sl_pipe_find_sink("callback"), &out, &sc, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, m1, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, m1, m2, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, m2, sink, SL_ROUTE_KEY_HASH), SL_OK);
    char err[256];
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);

    uint64_t bound = flight_bound(p);
    uint64_t gap_max = 0;
    int64_t deadline = sl_deadline_after_ms(WAIT_MS);
    // Sample the gap between the source's output and the sink's input until the end.
    while (sl_pipeline_wait(p, sl_now_ns() + SAMPLE_NS) == SL_ETIMEDOUT) {
        assert_true(sl_now_ns() < deadline);
        sl_pipe_stage_stats st[4];
        size_t n = 0;
        sl_pipeline_stats(p, st, 4, &n);
        // Read the sink first: the source's count only grows, so the gap read is an upper bound.
        uint64_t taken = st[3].records_in_total;
        sl_pipeline_stats(p, st, 4, &n);
        uint64_t emitted = st[0].records_out_total;
        gap_max = SL_MAX(gap_max, emitted > taken ? emitted - taken : 0);
    }
    assert_int_equal(sl_pipeline_wait(p, deadline), SL_OK);
    print_message("gap max %llu records (bound %llu)\n", (unsigned long long)gap_max,
                  (unsigned long long)bound);
    assert_true(gap_max <= bound);
    for (uint32_t i = 1; i < sl__pipeline_stage_count(p); i++) {
        sl_pipe_stage *st = sl__pipeline_stage_at(p, i);
        assert_true(sl__pipe_stage_held_max(st) <= sl__pipe_stage_capacity(st));
        assert_true(sl__pipe_stage_held_max(st) > 0);
    }
    sl_budget_stats bs;
    sl_budget_stats_get(p->budget, &bs);
    assert_true(bs.peak_bytes <= bs.capacity_bytes);
    for (uint32_t i = 0; i < RECORDS; i++) {
        assert_int_equal(atomic_load(&s->count[i]), 1);
    }
    assert_int_equal(atomic_load(&s->out_of_order), 0);
    sl_pipeline_free(p);
    free(s);
}

static int
window_sink(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    seen *s = user;
    char text[32] = "";
    memcpy(text, rec->value, SL_MIN(rec->value_size, sizeof(text) - 1));
    atomic_fetch_add(&s->total, strtoull(text, NULL, 10));
    struct timespec ts = {0, s->sleep_ns};
    nanosleep(&ts, NULL);
    return SL_OK;
}

// gen -> map -> keyed window (2 instances) -> slow sink: the window's held inputs count against
// the source's tracking table, so the source is paced by the window's output too; every record
// is counted exactly once and no stage exceeds its capacity.
static void
test_flow_keyed_window_before_a_slow_sink(void **state)
{
    (void)state;
    seen *s = seen_new(SINK_US * 1000 * 10);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.source_inflight_max = 1024;
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    char count[16];
    snprintf(count, sizeof(count), "%u", RECORDS);
    sl_pipe_option opts[] = {{"count", count}, {"keys", "64"}};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = opts, .option_count = 2};
    sl_pipe_stage *src = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    sl_pipe_stage *map = add_map(p, "map", 1);
    sl_pipe_stage_config wc;
    sl_pipe_stage_config_init(&wc);
    wc.parallelism = 2;
    wc.queue_records = QUEUE;
    wc.queue_bytes = QUEUE_BYTES;
    sl_pipe_stage *win = NULL;
    assert_int_equal(
        sl_pipeline_add_window(p, "window", SL_WINDOW_COUNT, 20, NULL, NULL, &wc, &win), SL_OK);
    sl_pipe_callback_sink cb = {.fn = window_sink, .user = s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &cb};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = 8;
    sc.queue_bytes = QUEUE_BYTES;
    sl_pipe_stage *sink = NULL;
    assert_int_equal(
        sl_pipeline_add_sink(p, "sink", sl_pipe_find_sink("callback"), &out, &sc, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, map, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, map, win, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, win, sink, SL_ROUTE_FORWARD), SL_OK);
    char err[256];
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_int_equal(atomic_load(&s->total), RECORDS);
    for (uint32_t i = 1; i < sl__pipeline_stage_count(p); i++) {
        sl_pipe_stage *st = sl__pipeline_stage_at(p, i);
        assert_true(sl__pipe_stage_held_max(st) <= sl__pipe_stage_capacity(st));
    }
    sl_pipeline_free(p);
    free(s);
}

// gen -> map -> slow (delay 200 us a record, `parallelism` instances, key-hash) -> sink: the
// report names `slow`; with one key, one instance of two does all the work ("uneven keys").
static void
explain_case(const char *keys, uint32_t parallelism, const char *expect)
{
    seen *s = seen_new(0);
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(NULL, &p), SL_OK);
    sl_pipe_option opts[] = {{"keys", keys}};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = opts, .option_count = 1};
    sl_pipe_stage *src = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    sl_pipe_stage *map = add_map(p, "map", 1);
    sl__pipe_delay_config delay = {.per_record_ns = 200000, .spin = false};
    sl_pipe_stage_config dc;
    sl_pipe_stage_config_init(&dc);
    dc.parallelism = parallelism;
    dc.queue_records = QUEUE;
    dc.queue_bytes = QUEUE_BYTES;
    sl_pipe_stage *slow = NULL;
    assert_int_equal(sl_pipeline_add_process(p, "slow", sl__pipe_op_delay, &delay, &dc, &slow),
                     SL_OK);
    sl_pipe_callback_sink cb = {.fn = slow_sink, .user = s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &cb};
    sl_pipe_stage *sink = NULL;
    assert_int_equal(
        sl_pipeline_add_sink(p, "sink", sl_pipe_find_sink("callback"), &out, NULL, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, map, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, map, slow, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, slow, sink, SL_ROUTE_FORWARD), SL_OK);
    char err[256];
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);
    char report[4096];
    int found = -1;
    // Two controller samples first, so the report carries rates too.
    assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(2100)), SL_ETIMEDOUT);
    // The accounting needs a full second or two; a loaded machine may need a few more.
    for (int attempt = 0; attempt < 20 && (found != 2 || !strstr(report, expect)); attempt++) {
        found = sl_pipeline_explain(p, report, sizeof(report));
        if (found != 2 || !strstr(report, expect)) {
            assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(1000)), SL_ETIMEDOUT);
        }
    }
    print_message("%s", report);
    assert_int_equal(found, 2);
    assert_non_null(strstr(report, expect));
    sl_pipeline_stop(p, true, sl_deadline_after_ms(10000));
    sl_pipeline_free(p);
    free(s);
}

static void
test_flow_explain_names_the_delay_stage(void **state)
{
    (void)state;
    explain_case("16", 1, "bottleneck: slow (busy");
}

static void
test_flow_explain_sees_a_hot_key(void **state)
{
    (void)state;
    explain_case("1", 2, "uneven keys");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_slow_sink_paces_the_source_within_bounds),
        cmocka_unit_test(test_flow_keyed_window_before_a_slow_sink),
        cmocka_unit_test(test_flow_explain_names_the_delay_stage),
        cmocka_unit_test(test_flow_explain_sees_a_hot_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
