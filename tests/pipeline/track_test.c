// At-least-once tracking: a test source on several lanes records every commit the runtime makes
// and checks, at that moment, that each record up to the committed token on that lane is done at
// every sink it was meant for (broadcast and flat_map fan out, filtered records complete at once,
// a window holds its inputs until the window's record is done), that commits move forward per
// lane, and that in the end everything is committed, coalesced into fewer calls than records.
// ctest-labels: concurrent
// ctest-timeout: 300
#include "support/test_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

#define RECORDS 12000u
#define LANES   3u
#define WAIT_MS 60000

typedef struct lab {
    uint32_t records;
    uint32_t expected[RECORDS]; // copies of each record every sink together must finish
    _Atomic uint32_t done[RECORDS];
    _Atomic uint64_t window_sum; // window case: sum of the counts the sink saw
    bool window;
    // Source side (the source thread only).
    uint64_t next;
    int64_t committed[LANES]; // last token committed per lane (-1: none)
    uint64_t committed_records;
    uint64_t commit_calls;
    uint32_t violations;
    uint32_t backwards;
} lab;

static int
lab_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t n, void **state_out, char *err,
           size_t err_size)
{
    (void)instance;
    (void)n;
    (void)err;
    (void)err_size;
    *state_out = ep->user;
    return SL_OK;
}

static int
lab_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    (void)deadline_ns;
    lab *l = state;
    if (l->next >= l->records) {
        return SL_ECLOSED;
    }
    uint32_t n = 0;
    for (; n < max_records && l->next < l->records; n++) {
        uint64_t seq = l->next;
        char key[8];
        int key_len = snprintf(key, sizeof(key), "k%u", (unsigned)(seq % 8));
        sl_pipe_record rec = {.key = key,
                              .key_size = (uint32_t)key_len,
                              .value = &seq,
                              .value_size = sizeof(seq),
                              .timestamp_ns = 0};
        sl_pipe_origin origin = {.lane = (uint32_t)(seq % LANES), .token = seq};
        int err = sl_pipe_source_emit(ctx, &rec, origin);
        if (err != SL_OK) {
            return err;
        }
        l->next++;
    }
    return (int)n;
}

static void
lab_commit(void *state, uint32_t lane, uint64_t token)
{
    lab *l = state;
    l->commit_calls++;
    if (lane >= LANES || token % LANES != lane || (int64_t)token <= l->committed[lane]) {
        l->backwards++;
        return;
    }
    uint64_t from = (uint64_t)(l->committed[lane] + 1);
    for (uint64_t seq = from; seq <= token; seq++) {
        if (seq % LANES != lane) {
            continue;
        }
        if (!l->window && atomic_load(&l->done[seq]) != l->expected[seq]) {
            l->violations++;
        }
        l->committed_records++;
    }
    l->committed[lane] = (int64_t)token;
    // Window: every committed input is counted in a window record the sink finished.
    if (l->window && atomic_load(&l->window_sum) < l->committed_records) {
        l->violations++;
    }
}

static const sl_pipe_source_ops lab_ops = {
    .scheme = "lab",
    .create = lab_create,
    .poll = lab_poll,
    .commit = lab_commit,
};

static int
lab_sink(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    lab *l = user;
    if (l->window) {
        char text[32] = "";
        memcpy(text, rec->value, SL_MIN(rec->value_size, sizeof(text) - 1));
        atomic_fetch_add(&l->window_sum, strtoull(text, NULL, 10));
        return SL_OK;
    }
    uint64_t seq = 0;
    memcpy(&seq, rec->value, sizeof(seq));
    if (seq < l->records) {
        atomic_fetch_add(&l->done[seq], 1);
    }
    return SL_OK;
}

static lab *
lab_new(uint32_t records)
{
    lab *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    l->records = records;
    for (uint32_t i = 0; i < LANES; i++) {
        l->committed[i] = -1;
    }
    return l;
}

typedef struct rig {
    sl_pipeline *p;
    sl_pipe_stage *src;
    sl_pipe_stage *sink;
    sl_pipe_callback_sink cb;
} rig;

static void
rig_build(rig *r, lab *l, uint32_t queue_records, uint32_t inflight_max)
{
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.source_inflight_max = inflight_max;
    assert_int_equal(sl_pipeline_new(&pc, &r->p), SL_OK);
    sl_pipe_endpoint in = {.uri = "lab:", .user = l};
    assert_int_equal(sl_pipeline_add_source(r->p, "lab", &lab_ops, &in, NULL, &r->src), SL_OK);
    r->cb = (sl_pipe_callback_sink){.fn = lab_sink, .user = l};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &r->cb};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = queue_records;
    assert_int_equal(
        sl_pipeline_add_sink(r->p, "sink", sl_pipe_find_sink("callback"), &out, &sc, &r->sink),
        SL_OK);
}

static void
rig_run_and_check(rig *r, lab *l)
{
    char err[256];
    assert_int_equal(sl_pipeline_start(r->p, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_pipeline_wait(r->p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    sl_pipeline_free(r->p);
    assert_int_equal(l->violations, 0);
    assert_int_equal(l->backwards, 0);
    assert_int_equal(l->committed_records, l->records);
    for (uint32_t i = 0; i < LANES; i++) {
        uint64_t last = l->records - 1 - ((l->records - 1 - i) % LANES);
        assert_int_equal(l->committed[i], (int64_t)last);
    }
    assert_true(l->commit_calls < l->records); // coalesced
}

static int
identity(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    return sl_pipe_emit(ctx, in);
}

static bool
drop_odd(const sl_pipe_record *in, void *state)
{
    (void)state;
    uint64_t seq = 0;
    memcpy(&seq, in->value, sizeof(seq));
    return seq % 2 == 0;
}

static int
three_times(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        int err = sl_pipe_emit(ctx, in);
        if (err != SL_OK) {
            return err;
        }
    }
    return SL_OK;
}

static void
test_track_broadcast_commits_only_when_every_copy_is_done(void **state)
{
    (void)state;
    lab *l = lab_new(RECORDS);
    for (uint32_t i = 0; i < RECORDS; i++) {
        l->expected[i] = 2;
    }
    rig r;
    rig_build(&r, l, 64, 0);
    sl_pipe_stage_config mc;
    sl_pipe_stage_config_init(&mc);
    mc.parallelism = 2;
    mc.queue_records = 32;
    sl_pipe_stage *map = NULL;
    assert_int_equal(sl_pipeline_add_process(r.p, "map", identity, NULL, &mc, &map), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.src, map, SL_ROUTE_BROADCAST), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, map, r.sink, SL_ROUTE_FORWARD), SL_OK);
    rig_run_and_check(&r, l);
    free(l);
}

static void
test_track_filter_completes_drops_and_flat_map_waits_for_all(void **state)
{
    (void)state;
    lab *l = lab_new(RECORDS);
    for (uint32_t i = 0; i < RECORDS; i++) {
        l->expected[i] = i % 2 == 0 ? 3 : 0;
    }
    rig r;
    rig_build(&r, l, 16, 0);
    sl_pipe_stage *filter = NULL;
    sl_pipe_stage *flat = NULL;
    assert_int_equal(sl_pipeline_add_filter(r.p, "even", drop_odd, NULL, NULL, &filter), SL_OK);
    assert_int_equal(sl_pipeline_add_process(r.p, "x3", three_times, NULL, NULL, &flat), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.src, filter, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, filter, flat, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, flat, r.sink, SL_ROUTE_FORWARD), SL_OK);
    rig_run_and_check(&r, l);
    free(l);
}

static void
test_track_window_holds_commits_until_its_record_is_done(void **state)
{
    (void)state;
    lab *l = lab_new(RECORDS);
    l->window = true;
    rig r;
    rig_build(&r, l, 64, 0);
    sl_pipe_stage_config wc;
    sl_pipe_stage_config_init(&wc);
    wc.parallelism = 2;
    sl_pipe_stage *win = NULL;
    // Event time 0 for every record: one window per key, closed by the watermark's wall-clock
    // advance (or the end of input).
    assert_int_equal(
        sl_pipeline_add_window(r.p, "count", SL_WINDOW_COUNT, 50, NULL, NULL, &wc, &win), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.src, win, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, win, r.sink, SL_ROUTE_FORWARD), SL_OK);
    rig_run_and_check(&r, l);
    assert_int_equal(atomic_load(&l->window_sum), RECORDS);
    free(l);
}

// The window holds more inputs than the tracking table has entries: the source pauses, the
// watermark's wall-clock advance closes the windows, their records complete, and it resumes.
static void
test_track_window_larger_than_the_tracking_table_still_flows(void **state)
{
    (void)state;
    lab *l = lab_new(3000);
    l->window = true;
    rig r;
    rig_build(&r, l, 64, 256);
    sl_pipe_stage *win = NULL;
    assert_int_equal(
        sl_pipeline_add_window(r.p, "count", SL_WINDOW_COUNT, 20, NULL, NULL, NULL, &win), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.src, win, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, win, r.sink, SL_ROUTE_FORWARD), SL_OK);
    rig_run_and_check(&r, l);
    assert_int_equal(atomic_load(&l->window_sum), 3000);
    free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_track_broadcast_commits_only_when_every_copy_is_done),
        cmocka_unit_test(test_track_filter_completes_drops_and_flat_map_waits_for_all),
        cmocka_unit_test(test_track_window_holds_commits_until_its_record_is_done),
        cmocka_unit_test(test_track_window_larger_than_the_tracking_table_still_flows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
