// Rescaling an operator while records flow: a key-hash routed map goes 1 -> 3 -> 2 -> 4 -> 1
// instances and a keyed window 1 -> 3 -> 2 under a steady generator; nothing is lost or
// duplicated, per-key order holds, window counts add up, and bad requests are refused.
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
#include "pipeline/gen.h"
#include "pipeline/pipeline_internal.h"

#define RECORDS 30000u
#define KEYS    16u
#define WAIT_MS 120000

typedef struct seen {
    _Atomic uint32_t count[RECORDS];
    _Atomic int64_t last_per_key[KEYS];
    _Atomic uint32_t out_of_order;
    _Atomic uint64_t window_sum;
    _Atomic uint64_t total;
} seen;

static int
sink_cb(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    seen *s = user;
    atomic_fetch_add(&s->total, 1);
    if (rec->value_size < SL__GEN_VALUE_MIN) {
        char text[32] = "";
        memcpy(text, rec->value, SL_MIN(rec->value_size, sizeof(text) - 1));
        atomic_fetch_add(&s->window_sum, strtoull(text, NULL, 10));
        return SL_OK;
    }
    uint64_t seq = 0;
    sl__gen_decode(rec, &seq, NULL);
    if (seq < RECORDS) {
        atomic_fetch_add(&s->count[seq], 1);
    }
    char text[16] = "";
    memcpy(text, rec->key, SL_MIN(rec->key_size, sizeof(text) - 1));
    uint32_t key = (uint32_t)strtoul(text + 1, NULL, 10);
    if (key < KEYS && atomic_exchange(&s->last_per_key[key], (int64_t)seq) >= (int64_t)seq) {
        atomic_fetch_add(&s->out_of_order, 1);
    }
    return SL_OK;
}

static int
identity(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    return sl_pipe_emit(ctx, in);
}

typedef struct rig {
    sl_pipeline *p;
    sl_pipe_stage *src;
    sl_pipe_stage *mid;
    sl_pipe_stage *sink;
    sl_pipe_callback_sink cb;
    seen *s;
    _Atomic uint32_t bad_rescales;
} rig;

static void rig_build_opts(rig *r, bool window, const sl_pipe_option *opts, size_t opt_count,
                           void (*before_start)(rig *r));

static void
rig_build(rig *r, bool window)
{
    static const sl_pipe_option opts[] = {{"count", "30000"}, {"keys", "16"}, {"rate", "15000"}};
    rig_build_opts(r, window, opts, SL_ARRAY_LEN(opts), NULL);
}

static void
rig_build_opts(rig *r, bool window, const sl_pipe_option *opts, size_t opt_count,
               void (*before_start)(rig *r))
{
    memset(r, 0, sizeof(*r));
    r->s = calloc(1, sizeof(seen));
    assert_non_null(r->s);
    for (uint32_t k = 0; k < KEYS; k++) {
        atomic_init(&r->s->last_per_key[k], -1);
    }
    assert_int_equal(sl_pipeline_new(NULL, &r->p), SL_OK);
    sl_pipe_endpoint gen = {.uri = "gen:", .options = opts, .option_count = opt_count};
    assert_int_equal(
        sl_pipeline_add_source(r->p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &r->src),
        SL_OK);
    sl_pipe_stage_config mc;
    sl_pipe_stage_config_init(&mc);
    mc.parallelism = 1;
    mc.parallelism_min = 1;
    mc.parallelism_max = 4;
    mc.queue_records = 64;
    if (window) {
        assert_int_equal(
            sl_pipeline_add_window(r->p, "win", SL_WINDOW_COUNT, 100, NULL, NULL, &mc, &r->mid),
            SL_OK);
    } else {
        assert_int_equal(sl_pipeline_add_process(r->p, "map", identity, NULL, &mc, &r->mid), SL_OK);
    }
    r->cb = (sl_pipe_callback_sink){.fn = sink_cb, .user = r->s};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &r->cb};
    assert_int_equal(
        sl_pipeline_add_sink(r->p, "sink", sl_pipe_find_sink("callback"), &out, NULL, &r->sink),
        SL_OK);
    assert_int_equal(sl_pipeline_connect(r->p, r->src, r->mid, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(r->p, r->mid, r->sink, SL_ROUTE_KEY_HASH), SL_OK);
    if (before_start != NULL) {
        before_start(r);
    }
    char err[256];
    assert_int_equal(sl_pipeline_start(r->p, err, sizeof(err)), SL_OK);
}

// Rescales through the steps while the generator runs; returns how many succeeded.
static uint32_t
rescale_steps(rig *r, const uint32_t *steps, uint32_t count)
{
    uint32_t done = 0;
    for (uint32_t i = 0; i < count; i++) {
        // Let some records through at each parallelism.
        int rc = sl_pipeline_wait(r->p, sl_deadline_after_ms(150));
        if (rc == SL_OK) {
            break; // the input ended first (a very slow machine): fewer steps
        }
        assert_int_equal(rc, SL_ETIMEDOUT);
        rc = sl__pipe_stage_rescale(r->mid, steps[i]);
        if (rc == SL_EBUSY) {
            break; // input ending
        }
        assert_int_equal(rc, SL_OK);
        assert_int_equal(sl__pipe_stage_parallelism(r->mid), steps[i]);
        done++;
    }
    return done;
}

static void
test_rescale_keyed_map_keeps_order_and_loses_nothing(void **state)
{
    (void)state;
    rig r;
    rig_build(&r, false);
    static const uint32_t steps[] = {3, 2, 4, 1};
    uint32_t done = rescale_steps(&r, steps, SL_ARRAY_LEN(steps));
    print_message("%u rescales while running\n", done);
    assert_true(done >= 1);
    assert_int_equal(sl__pipe_stage_iteration(r.mid), done);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    for (uint32_t i = 0; i < RECORDS; i++) {
        if (atomic_load(&r.s->count[i]) != 1) {
            fail_msg("sequence %u arrived %u times", i, atomic_load(&r.s->count[i]));
        }
    }
    assert_int_equal(atomic_load(&r.s->out_of_order), 0);
    sl_pipe_stage_stats st[3];
    size_t n = 0;
    sl_pipeline_stats(r.p, st, 3, &n);
    assert_int_equal(st[1].records_in_total, RECORDS);
    sl_pipeline_free(r.p);
    free(r.s);
}

static void
test_rescale_window_moves_keys_and_counts_add_up(void **state)
{
    (void)state;
    rig r;
    rig_build(&r, true);
    static const uint32_t steps[] = {3, 2};
    uint32_t done = rescale_steps(&r, steps, SL_ARRAY_LEN(steps));
    assert_true(done >= 1);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_int_equal(atomic_load(&r.s->window_sum), RECORDS);
    sl_pipeline_free(r.p);
    free(r.s);
}

static void
test_rescale_refuses_bad_requests(void **state)
{
    (void)state;
    rig r;
    rig_build(&r, false);
    assert_int_equal(sl__pipe_stage_rescale(r.mid, 0), SL_EINVAL);
    assert_int_equal(sl__pipe_stage_rescale(r.mid, 5), SL_EINVAL);
    assert_int_equal(sl__pipe_stage_rescale(r.src, 2), SL_EINVAL);
    assert_int_equal(sl__pipe_stage_rescale(r.sink, 2), SL_EINVAL);
    assert_int_equal(sl__pipe_stage_rescale(r.mid, 1), SL_OK); // no change
    sl_pipeline_stop(r.p, false, SL_DEADLINE_NOW);
    assert_int_equal(sl__pipe_stage_rescale(r.mid, 2), SL_EBUSY);
    sl_pipeline_free(r.p);
    free(r.s);
}

// A controller hook (as the autoscaler attaches) that flips the map between 1 and 2 instances.
static void
flip(sl_pipeline *p, void *state, int64_t now_ns)
{
    (void)now_ns;
    rig *r = state;
    (void)p;
    uint32_t n = sl__pipe_stage_parallelism(r->mid);
    int rc = sl__pipe_stage_rescale(r->mid, n == 1 ? 2 : 1);
    if (rc != SL_OK && rc != SL_EBUSY) {
        atomic_fetch_add(&r->bad_rescales, 1); // cmocka asserts only on the test's thread
    }
}

static void
attach_flip(rig *r)
{
    sl__pipeline_set_controller(r->p, flip, NULL, r);
}

static void
test_rescale_from_the_controller_and_stop_while_it_runs(void **state)
{
    (void)state;
    static const sl_pipe_option opts[] = {{"keys", "16"}, {"rate", "20000"}}; // forever
    rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    rig_build_opts(r, false, opts, SL_ARRAY_LEN(opts), attach_flip);
    // The controller runs once a second: wait for two rescales, with room for a slow machine.
    for (int i = 0; i < 30 && sl__pipe_stage_iteration(r->mid) < 2; i++) {
        assert_int_equal(sl_pipeline_wait(r->p, sl_deadline_after_ms(200)), SL_ETIMEDOUT);
    }
    assert_true(sl__pipe_stage_iteration(r->mid) >= 2);
    sl_pipeline_stop(r->p, false, SL_DEADLINE_NOW);
    assert_int_equal(atomic_load(&r->bad_rescales), 0);
    assert_int_equal(atomic_load(&r->s->out_of_order), 0);
    sl_pipeline_free(r->p);
    free(r->s);
    free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rescale_keyed_map_keeps_order_and_loses_nothing),
        cmocka_unit_test(test_rescale_window_moves_keys_and_counts_add_up),
        cmocka_unit_test(test_rescale_refuses_bad_requests),
        cmocka_unit_test(test_rescale_from_the_controller_and_stop_while_it_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
