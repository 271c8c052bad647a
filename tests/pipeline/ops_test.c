// Built-in operators and endpoint behaviour: sample keeps 1 in N and counts the rest as dropped,
// ratelimit and the generator's bursts pace records (checked by lower bounds on time only), a
// sink's SL_EAGAIN is retried without loss, a sink error stops the pipeline without committing
// the failed record, and stop with drain commits everything emitted.
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
#include "pipeline/builtin_ops.h"
#include "pipeline/gen.h"
#include "pipeline/pipeline_internal.h"

#define WAIT_MS 60000

typedef struct counter_sink {
    _Atomic uint64_t total;
    _Atomic uint64_t calls;
    uint64_t fail_at; // sequence that fails with SL_EIO (UINT64_MAX: none)
    bool eagain_every_other;
} counter_sink;

static int
count_cb(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)instance;
    counter_sink *c = user;
    uint64_t call = atomic_fetch_add(&c->calls, 1);
    if (c->eagain_every_other && call % 2 == 0) {
        return SL_EAGAIN;
    }
    uint64_t seq = 0;
    sl__gen_decode(rec, &seq, NULL);
    if (seq == c->fail_at) {
        return SL_EIO;
    }
    atomic_fetch_add(&c->total, 1);
    return SL_OK;
}

// A source of sequence numbers on one lane (forever or up to limit) that records commits.
typedef struct seq_source {
    uint64_t limit; // 0: forever
    uint64_t next;
    int64_t committed; // -1: none
    uint32_t backwards;
} seq_source;

static int
seq_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t n, void **state_out, char *err,
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
seq_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    (void)deadline_ns;
    seq_source *s = state;
    if (s->limit > 0 && s->next >= s->limit) {
        return SL_ECLOSED;
    }
    uint32_t n = 0;
    for (; n < max_records && (s->limit == 0 || s->next < s->limit); n++) {
        unsigned char value[SL__GEN_VALUE_MIN] = {0};
        memcpy(value, &s->next, sizeof(s->next));
        sl_pipe_record rec = {.key = "k", .key_size = 1, .value = value, .value_size = 16};
        sl_pipe_origin origin = {.lane = 7, .token = s->next};
        int err = sl_pipe_source_emit(ctx, &rec, origin);
        if (err != SL_OK) {
            return err;
        }
        s->next++;
    }
    return (int)n;
}

static void
seq_commit(void *state, uint32_t lane, uint64_t token)
{
    seq_source *s = state;
    if (lane != 7 || (int64_t)token <= s->committed) {
        s->backwards++;
    }
    s->committed = (int64_t)token;
}

static const sl_pipe_source_ops seq_ops = {
    .scheme = "seq", .create = seq_create, .poll = seq_poll, .commit = seq_commit};

typedef struct rig {
    sl_pipeline *p;
    sl_pipe_stage *src;
    sl_pipe_stage *op;
    sl_pipe_stage *sink;
    sl_pipe_callback_sink cb;
    sl_metrics_registry *reg;
} rig;

// source -> [op] -> callback sink. gen_opts NULL: the seq source in user.
static void
rig_build(rig *r, const sl_pipe_option *gen_opts, size_t gen_count, seq_source *seq,
          counter_sink *c)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(sl_metrics_registry_new(NULL, &r->reg), SL_OK);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.registry = r->reg;
    pc.name = "ops";
    assert_int_equal(sl_pipeline_new(&pc, &r->p), SL_OK);
    if (seq != NULL) {
        sl_pipe_endpoint in = {.uri = "seq:", .user = seq};
        assert_int_equal(sl_pipeline_add_source(r->p, "src", &seq_ops, &in, NULL, &r->src), SL_OK);
    } else {
        sl_pipe_endpoint in = {.uri = "gen:", .options = gen_opts, .option_count = gen_count};
        assert_int_equal(
            sl_pipeline_add_source(r->p, "src", sl_pipe_find_source("gen"), &in, NULL, &r->src),
            SL_OK);
    }
    r->cb = (sl_pipe_callback_sink){.fn = count_cb, .user = c};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &r->cb};
    assert_int_equal(
        sl_pipeline_add_sink(r->p, "sink", sl_pipe_find_sink("callback"), &out, NULL, &r->sink),
        SL_OK);
}

static void
rig_connect_start(rig *r)
{
    if (r->op != NULL) {
        assert_int_equal(sl_pipeline_connect(r->p, r->src, r->op, SL_ROUTE_FORWARD), SL_OK);
        assert_int_equal(sl_pipeline_connect(r->p, r->op, r->sink, SL_ROUTE_FORWARD), SL_OK);
    } else {
        assert_int_equal(sl_pipeline_connect(r->p, r->src, r->sink, SL_ROUTE_FORWARD), SL_OK);
    }
    char err[256];
    assert_int_equal(sl_pipeline_start(r->p, err, sizeof(err)), SL_OK);
}

static void
rig_free(rig *r)
{
    sl_pipeline_free(r->p);
    sl_metrics_registry_free(r->reg);
}

static void
test_ops_sample_keeps_one_in_n_and_counts_drops(void **state)
{
    (void)state;
    counter_sink c = {.fail_at = UINT64_MAX};
    static const sl_pipe_option opts[] = {{"count", "1000"}};
    rig r;
    rig_build(&r, opts, 1, NULL, &c);
    sl__pipe_sample_config sample = {.keep_one_in = 10};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.init = sl__pipe_op_sample_init;
    sc.fini = sl__pipe_op_sample_fini;
    assert_int_equal(
        sl_pipeline_add_process(r.p, "sample", sl__pipe_op_sample, &sample, &sc, &r.op), SL_OK);
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_int_equal(atomic_load(&c.total), 100);
    char buf[1 << 16];
    size_t len = 0;
    assert_int_equal(sl_metrics_encode_prometheus(r.reg, sl_now_ns(), buf, sizeof(buf), &len),
                     SL_OK);
    assert_non_null(strstr(buf, "sluice_pipeline_stage_records_dropped_total{pipeline=\"ops\","
                                "stage=\"sample\"} 900"));
    rig_free(&r);
}

static void
test_ops_ratelimit_and_bursts_pace_records(void **state)
{
    (void)state;
    // ratelimit: 10 tokens at once, then 1000/s: 300 records take at least 0.29 s.
    counter_sink c = {.fail_at = UINT64_MAX};
    static const sl_pipe_option opts[] = {{"count", "300"}};
    rig r;
    rig_build(&r, opts, 1, NULL, &c);
    sl__pipe_ratelimit_config rl = {.rate_per_s = 1000, .burst = 10};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.init = sl__pipe_op_ratelimit_init;
    sc.fini = sl__pipe_op_ratelimit_fini;
    assert_int_equal(sl_pipeline_add_process(r.p, "rl", sl__pipe_op_ratelimit, &rl, &sc, &r.op),
                     SL_OK);
    int64_t t0 = sl_now_ns();
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_true(sl_now_ns() - t0 >= INT64_C(250000000));
    assert_int_equal(atomic_load(&c.total), 300);
    rig_free(&r);

    // gen bursts: 50 records every 100 ms, 200 records = bursts at 0, 100, 200, 300 ms.
    counter_sink c2 = {.fail_at = UINT64_MAX};
    static const sl_pipe_option burst[] = {
        {"count", "200"}, {"burst", "50"}, {"burst_every_ms", "100"}};
    rig_build(&r, burst, 3, NULL, &c2);
    t0 = sl_now_ns();
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_true(sl_now_ns() - t0 >= INT64_C(250000000));
    assert_int_equal(atomic_load(&c2.total), 200);
    rig_free(&r);
}

static void
test_ops_sink_eagain_is_retried_without_loss(void **state)
{
    (void)state;
    counter_sink c = {.fail_at = UINT64_MAX, .eagain_every_other = true};
    static const sl_pipe_option opts[] = {{"count", "500"}};
    rig r;
    rig_build(&r, opts, 1, NULL, &c);
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    assert_int_equal(atomic_load(&c.total), 500);
    rig_free(&r);
}

static void
test_ops_sink_error_stops_and_never_commits_the_record(void **state)
{
    (void)state;
    counter_sink c = {.fail_at = 500};
    seq_source seq = {.limit = 5000, .committed = -1};
    rig r;
    rig_build(&r, NULL, 0, &seq, &c);
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_EIO);
    rig_free(&r);
    assert_true(seq.committed < 500);
    assert_int_equal(seq.backwards, 0);
}

static void
test_ops_stop_with_drain_commits_everything_emitted(void **state)
{
    (void)state;
    counter_sink c = {.fail_at = UINT64_MAX};
    seq_source seq = {.limit = 0, .committed = -1};
    rig r;
    rig_build(&r, NULL, 0, &seq, &c);
    sl__pipe_delay_config delay = {.per_record_ns = 20000};
    assert_int_equal(sl_pipeline_add_process(r.p, "delay", sl__pipe_op_delay, &delay, NULL, &r.op),
                     SL_OK);
    rig_connect_start(&r);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(300)), SL_ETIMEDOUT);
    sl_pipeline_stop(r.p, true, sl_deadline_after_ms(WAIT_MS));
    assert_int_equal(sl_pipeline_wait(r.p, SL_DEADLINE_NOW), SL_OK);
    assert_true(seq.next > 0);
    assert_int_equal(seq.committed, (int64_t)seq.next - 1);
    assert_int_equal(atomic_load(&c.total), seq.next);
    assert_int_equal(seq.backwards, 0);
    rig_free(&r);
}

static int
fail_at_700(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    uint64_t seq = 0;
    sl__gen_decode(in, &seq, NULL);
    return seq == 700 ? SL_EIO : sl_pipe_emit(ctx, in);
}

static int
fail_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t n, void **state_out, char *err,
            size_t err_size)
{
    (void)ep;
    (void)instance;
    (void)n;
    (void)state_out;
    snprintf(err, err_size, "nope: no such device");
    return SL_ENOENT;
}

static int
never_write(void *state, const sl_pipe_record *record, sl_pipe_done_ref *done)
{
    (void)state;
    (void)record;
    (void)done;
    return SL_EIO;
}

static const sl_pipe_sink_ops fail_sink_ops = {
    .scheme = "fail", .create = fail_create, .write = NULL};

// A process function fails while a window downstream holds inputs and records are queued
// everywhere: the pipeline stops with the error, nothing after it commits, and free releases
// everything (ASan checks leaks). A sink whose create fails makes start fail with its message.
static void
test_ops_failures_stop_cleanly(void **state)
{
    (void)state;
    counter_sink c = {.fail_at = UINT64_MAX};
    seq_source seq = {.limit = 0, .committed = -1};
    rig r;
    rig_build(&r, NULL, 0, &seq, &c);
    assert_int_equal(sl_pipeline_add_process(r.p, "fail", fail_at_700, NULL, NULL, &r.op), SL_OK);
    sl_pipe_stage *win = NULL;
    assert_int_equal(
        sl_pipeline_add_window(r.p, "win", SL_WINDOW_COUNT, 60000, NULL, NULL, NULL, &win), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.src, r.op, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, r.op, win, SL_ROUTE_KEY_HASH), SL_OK);
    assert_int_equal(sl_pipeline_connect(r.p, win, r.sink, SL_ROUTE_FORWARD), SL_OK);
    char err[256];
    assert_int_equal(sl_pipeline_start(r.p, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_pipeline_wait(r.p, sl_deadline_after_ms(WAIT_MS)), SL_EIO);
    rig_free(&r);
    assert_true(seq.committed < 700);

    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(NULL, &p), SL_OK);
    sl_pipe_endpoint gen = {.uri = "gen:"};
    sl_pipe_endpoint out = {.uri = "fail:"};
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *sink = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", &fail_sink_ops, &out, NULL, &sink), SL_EINVAL);
    sl_pipe_sink_ops ops = fail_sink_ops;
    ops.write = never_write;
    assert_int_equal(sl_pipeline_add_sink(p, "out", &ops, &out, NULL, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, sink, SL_ROUTE_FORWARD), SL_OK);
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_ENOENT);
    assert_non_null(strstr(err, "no such device"));
    sl_pipeline_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_sample_keeps_one_in_n_and_counts_drops),
        cmocka_unit_test(test_ops_ratelimit_and_bursts_pace_records),
        cmocka_unit_test(test_ops_sink_eagain_is_retried_without_loss),
        cmocka_unit_test(test_ops_sink_error_stops_and_never_commits_the_record),
        cmocka_unit_test(test_ops_stop_with_drain_commits_everything_emitted),
        cmocka_unit_test(test_ops_failures_stop_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
