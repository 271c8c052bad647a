// The pipeline runtime end to end in one process: a generator through operators to a callback
// sink delivers every record once (bitmap), keeps per-key order under key-hash routing with
// parallel instances, honours forward / round-robin / broadcast routes, filters and flat_maps,
// checks the graph at start, and reports stats and metrics.
// ctest-labels: concurrent
// ctest-timeout: 300
#include "support/test_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/gen.h"
#include "pipeline/pipeline_internal.h"

#define RECORDS 20000u
#define KEYS    16u
#define WAIT_MS 60000
#define MAX_SEQ (RECORDS * 4u)

// What the sink saw: how many times each sequence arrived, and the last sequence per key (to
// check per-key order).
typedef struct seen {
    _Atomic uint32_t count[MAX_SEQ];
    _Atomic int64_t last_per_key[KEYS];
    _Atomic uint64_t total;
    _Atomic uint32_t out_of_order;
} seen;

static seen *
seen_new(void)
{
    seen *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    for (uint32_t k = 0; k < KEYS; k++) {
        atomic_init(&s->last_per_key[k], -1);
    }
    return s;
}

static int
sink_cb(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    seen *s = user;
    uint64_t seq = 0;
    sl__gen_decode(rec, &seq, NULL);
    if (seq < MAX_SEQ) {
        atomic_fetch_add(&s->count[seq], 1);
    }
    char text[16] = "";
    memcpy(text, rec->key, SL_MIN(rec->key_size, sizeof(text) - 1));
    uint32_t key = (uint32_t)strtoul(text + 1, NULL, 10);
    if (key < KEYS) {
        int64_t prev = atomic_exchange(&s->last_per_key[key], (int64_t)seq);
        if (prev >= (int64_t)seq) {
            atomic_fetch_add(&s->out_of_order, 1);
        }
    }
    atomic_fetch_add(&s->total, 1);
    return SL_OK;
}

static int
identity(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    return sl_pipe_emit(ctx, in);
}

static bool
even_only(const sl_pipe_record *in, void *state)
{
    (void)state;
    uint64_t seq = 0;
    sl__gen_decode(in, &seq, NULL);
    return seq % 2 == 0;
}

// Emits each input twice.
static int
twice(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    int err = sl_pipe_emit(ctx, in);
    return err != SL_OK ? err : sl_pipe_emit(ctx, in);
}

typedef struct chain {
    sl_pipeline *p;
    sl_pipe_stage *src;
    sl_pipe_stage *mid;
    sl_pipe_stage *sink;
    sl_pipe_callback_sink cb;
    sl_pipe_option opts[2];
    char count_text[32];
} chain;

// gen(count) -> mid -> sink, mid built by the caller's function.
static void
chain_build(chain *c, seen *s, uint32_t count, uint32_t sink_parallelism, sl_metrics_registry *reg)
{
    memset(c, 0, sizeof(*c));
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.name = "test";
    pc.registry = reg;
    assert_int_equal(sl_pipeline_new(&pc, &c->p), SL_OK);
    snprintf(c->count_text, sizeof(c->count_text), "%u", count);
    c->opts[0] = (sl_pipe_option){"count", c->count_text};
    c->opts[1] = (sl_pipe_option){"keys", "16"};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = c->opts, .option_count = 2};
    assert_int_equal(
        sl_pipeline_add_source(c->p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &c->src),
        SL_OK);
    c->cb = (sl_pipe_callback_sink){.fn = sink_cb, .user = s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &c->cb};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.parallelism = sink_parallelism;
    assert_int_equal(
        sl_pipeline_add_sink(c->p, "sink", sl_pipe_find_sink("callback"), &out, &sc, &c->sink),
        SL_OK);
}

static void
chain_run(chain *c)
{
    char err[256];
    assert_int_equal(sl_pipeline_start(c->p, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_pipeline_wait(c->p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
}

static void
expect_each(const seen *s, uint32_t count, uint32_t times, uint32_t step)
{
    for (uint32_t i = 0; i < count; i++) {
        uint32_t want = i % step == 0 ? times : 0;
        if (atomic_load(&s->count[i]) != want) {
            fail_msg("sequence %u arrived %u times, expected %u", i, atomic_load(&s->count[i]),
                     want);
        }
    }
}

static void
test_pipeline_delivers_every_record_once_in_key_order(void **state)
{
    (void)state;
    seen *s = seen_new();
    chain c;
    chain_build(&c, s, RECORDS, 1, NULL);
    sl_pipe_stage_config mc;
    sl_pipe_stage_config_init(&mc);
    mc.parallelism = 2;
    assert_int_equal(sl_pipeline_add_process(c.p, "map", identity, NULL, &mc, &c.mid), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, c.src, c.mid, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, c.mid, c.sink, SL_ROUTE_KEY_HASH), SL_OK);
    chain_run(&c);
    expect_each(s, RECORDS, 1, 1);
    assert_int_equal(atomic_load(&s->out_of_order), 0);
    sl_pipe_stage_stats st[4];
    size_t n = 0;
    sl_pipeline_stats(c.p, st, 4, &n);
    assert_int_equal(n, 3);
    assert_string_equal(st[0].name, "gen");
    assert_int_equal(st[1].records_in_total, RECORDS);
    assert_int_equal(st[1].parallelism, 2);
    sl_pipeline_free(c.p);
    free(s);
}

static void
test_pipeline_routes_forward_round_robin_broadcast(void **state)
{
    (void)state;
    static const sl_pipe_route routes[] = {SL_ROUTE_FORWARD, SL_ROUTE_ROUND_ROBIN,
                                           SL_ROUTE_BROADCAST};
    for (size_t r = 0; r < SL_ARRAY_LEN(routes); r++) {
        seen *s = seen_new();
        chain c;
        chain_build(&c, s, RECORDS / 4, 2, NULL);
        sl_pipe_stage_config mc;
        sl_pipe_stage_config_init(&mc);
        mc.parallelism = 2;
        assert_int_equal(sl_pipeline_add_process(c.p, "map", identity, NULL, &mc, &c.mid), SL_OK);
        assert_int_equal(sl_pipeline_connect(c.p, c.src, c.mid, SL_ROUTE_ROUND_ROBIN), SL_OK);
        assert_int_equal(sl_pipeline_connect(c.p, c.mid, c.sink, routes[r]), SL_OK);
        chain_run(&c);
        expect_each(s, RECORDS / 4, routes[r] == SL_ROUTE_BROADCAST ? 2 : 1, 1);
        sl_pipeline_free(c.p);
        free(s);
    }
}

static void
test_pipeline_filter_and_flat_map(void **state)
{
    (void)state;
    seen *s = seen_new();
    chain c;
    chain_build(&c, s, RECORDS / 2, 1, NULL);
    sl_pipe_stage *flat = NULL;
    assert_int_equal(sl_pipeline_add_filter(c.p, "even", even_only, NULL, NULL, &c.mid), SL_OK);
    assert_int_equal(sl_pipeline_add_process(c.p, "twice", twice, NULL, NULL, &flat), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, c.src, c.mid, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, c.mid, flat, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, flat, c.sink, SL_ROUTE_FORWARD), SL_OK);
    chain_run(&c);
    expect_each(s, RECORDS / 2, 2, 2);
    sl_pipeline_free(c.p);
    free(s);
}

static void
test_pipeline_start_checks_the_graph(void **state)
{
    (void)state;
    seen *s = seen_new();
    chain c;
    chain_build(&c, s, 10, 1, NULL);
    assert_int_equal(sl_pipeline_add_process(c.p, "map", identity, NULL, NULL, &c.mid), SL_OK);
    assert_int_equal(sl_pipeline_connect(c.p, c.src, c.mid, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    // The sink has no input and map reaches no sink: the first problem is named.
    assert_int_equal(sl_pipeline_start(c.p, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "sink: no input"));
    assert_int_equal(sl_pipeline_connect(c.p, c.src, c.mid, SL_ROUTE_FORWARD), SL_EEXIST);
    assert_int_equal(sl_pipeline_connect(c.p, c.sink, c.mid, SL_ROUTE_FORWARD), SL_EINVAL);
    sl_pipe_stage *dup = NULL;
    assert_int_equal(sl_pipeline_add_process(c.p, "map", identity, NULL, NULL, &dup), SL_EEXIST);
    sl_pipeline_free(c.p);

    // A bad generator option is named.
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(NULL, &p), SL_OK);
    sl_pipe_option bad = {"rate", "fast"};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = &bad, .option_count = 1};
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *sink = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    sl_pipe_callback_sink cb = {.fn = sink_cb, .user = s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &cb};
    assert_int_equal(
        sl_pipeline_add_sink(p, "sink", sl_pipe_find_sink("callback"), &out, NULL, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, sink, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "rate"));
    sl_pipeline_free(p);
    free(s);
}

static void
test_pipeline_registers_stage_metrics(void **state)
{
    (void)state;
    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);
    seen *s = seen_new();
    chain c;
    chain_build(&c, s, 1000, 1, reg);
    assert_int_equal(sl_pipeline_connect(c.p, c.src, c.sink, SL_ROUTE_FORWARD), SL_OK);
    chain_run(&c);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    size_t len = 0;
    assert_int_equal(sl_metrics_encode_prometheus(reg, sl_now_ns(), buf, cap, &len), SL_OK);
    assert_non_null(strstr(buf, "sluice_pipeline_stage_busy_ms_per_second{pipeline=\"test\","
                                "stage=\"sink\"}"));
    assert_non_null(
        strstr(buf, "sluice_pipeline_stage_records_in_total{pipeline=\"test\",stage=\"sink\"} "
                    "1000"));
    assert_non_null(strstr(buf, "sluice_pipeline_source_commits_total"));
    assert_non_null(strstr(buf, "sluice_pipeline_stage_latency_seconds"));
    free(buf);
    sl_pipeline_free(c.p);
    assert_int_equal(sl_metrics_series_count(reg), 0);
    sl_metrics_registry_free(reg);
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_delivers_every_record_once_in_key_order),
        cmocka_unit_test(test_pipeline_routes_forward_round_robin_broadcast),
        cmocka_unit_test(test_pipeline_filter_and_flat_map),
        cmocka_unit_test(test_pipeline_start_checks_the_graph),
        cmocka_unit_test(test_pipeline_registers_stage_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
