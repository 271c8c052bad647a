// The DS2 autoscaler core on synthetic pipelines (time stepped, no threads): a step up reaches
// the computed parallelism in at most 3 decisions, a step down scales down, noisy measurements
// over 50 intervals do not make it oscillate, a stage held at max reports the overload as
// backpressure once, and a filter's selectivity halves what the stages after it are sized for.
// Then, briefly, the autoscaler attached to a running pipeline (also run under TSan).
// ctest-labels: concurrent
#include "support/test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/autoscale.h"
#include "pipeline/builtin_ops.h"
#include "pipeline/pipeline_internal.h"

#define S          1000000000ll
#define SIM_STAGES 4u

// A synthetic pipeline in steady state: each stage processes min(input, parallelism * rate)
// records per second and emits selectivity times that; busy time follows from its true rate.
typedef struct sim {
    uint32_t count;
    sl__autoscale_sample samples[SIM_STAGES];
    double rate[SIM_STAGES];        // true records per busy second per instance
    double selectivity[SIM_STAGES]; // out / in
    double noise;                   // +- fraction applied to measured busy time and rates
    uint64_t rng;
    sl__autoscaler *as;
    sl__autoscale_verdict verdicts[SIM_STAGES];
    int64_t now_ns;
    uint32_t ups, downs, at_max; // decisions so far
} sim;

static double
sim_jitter(sim *sm)
{
    if (sm->noise == 0.0) {
        return 1.0;
    }
    double u = (double)(sl_test_rand(&sm->rng) % 2001) / 1000.0 - 1.0; // -1..1
    return 1.0 + sm->noise * u;
}

static void
sim_stage(sim *sm, const char *name, bool source, uint32_t p, uint32_t pmin, uint32_t pmax,
          double rate, double selectivity, int upstream)
{
    uint32_t i = sm->count++;
    SL_ASSERT(i < SIM_STAGES);
    sl__autoscale_sample *s = &sm->samples[i];
    *s = (sl__autoscale_sample){.name = name,
                                .is_source = source,
                                .parallelism = p,
                                .parallelism_min = pmin,
                                .parallelism_max = pmax,
                                .window_s = 1.0};
    if (upstream >= 0) {
        s->upstream[0] = (uint32_t)upstream;
        s->upstream_count = 1;
    }
    sm->rate[i] = rate;
    sm->selectivity[i] = selectivity;
}

static void
sim_init(sim *sm)
{
    memset(sm, 0, sizeof(*sm));
    sm->rng = sl_test_seed();
    sm->now_ns = 100 * S;
}

static void
sim_start(sim *sm, double utilization)
{
    sl_pipe_autoscale_config cfg = {.enabled = true,
                                    .interval_ms = 1000,
                                    .cooldown_ms = 2000,
                                    .target_utilization = utilization,
                                    .tolerance = 0.1};
    assert_int_equal(sl__autoscaler_new(&cfg, sm->count, &sm->as), SL_OK);
}

// One interval: flows in steady state, then a decision round whose changes are applied.
static void
sim_step(sim *sm, double offered)
{
    double flow[SIM_STAGES] = {0};
    for (uint32_t i = 0; i < sm->count; i++) {
        sl__autoscale_sample *s = &sm->samples[i];
        if (s->is_source) {
            s->offered_per_s = offered;
            flow[i] = offered;
            s->records_out = offered;
            continue;
        }
        double in = 0.0;
        for (uint32_t u = 0; u < s->upstream_count; u++) {
            in += flow[s->upstream[u]];
        }
        double processed = fmin(in, sm->rate[i] * (double)s->parallelism);
        s->records_in = processed * sim_jitter(sm);
        s->busy_s = processed / sm->rate[i] * sim_jitter(sm);
        flow[i] = processed * sm->selectivity[i];
        s->records_out = s->records_in * sm->selectivity[i] * (double)SL_MAX(s->out_edges, 1u);
    }
    sm->now_ns += S;
    assert_int_equal(
        sl__autoscaler_decide(sm->as, sm->samples, sm->count, sm->now_ns, sm->verdicts), SL_OK);
    for (uint32_t i = 0; i < sm->count; i++) {
        const sl__autoscale_verdict *v = &sm->verdicts[i];
        if (v->action == SL__AUTOSCALE_UP || v->action == SL__AUTOSCALE_DOWN) {
            printf("  t=%llds %s: %u -> %u: %s\n", (long long)(sm->now_ns / S), v->decision.stage,
                   v->decision.from, v->decision.to, v->decision.reason);
            sm->samples[i].parallelism = v->decision.to;
            sm->ups += v->action == SL__AUTOSCALE_UP;
            sm->downs += v->action == SL__AUTOSCALE_DOWN;
        } else if (v->action == SL__AUTOSCALE_AT_MAX) {
            printf("  t=%llds %s at max: %s\n", (long long)(sm->now_ns / S), v->decision.stage,
                   v->decision.reason);
            sm->at_max++;
        }
    }
}

static void
sim_run(sim *sm, double offered, int intervals)
{
    for (int k = 0; k < intervals; k++) {
        sim_step(sm, offered);
    }
}

static void
sim_fini(sim *sm)
{
    sl__autoscaler_free(sm->as);
}

// gen -> work (150 us a record: 6,667/s per instance) -> sink, work in [1, 4].
static void
sim_three_stages(sim *sm, uint32_t work_p, double utilization)
{
    sim_init(sm);
    sim_stage(sm, "gen", true, 1, 1, 1, 0.0, 1.0, -1);
    sim_stage(sm, "work", false, work_p, 1, 4, 1e6 / 150.0, 1.0, 0);
    sim_stage(sm, "sink", false, 1, 1, 1, 1e6, 0.0, 1);
    sim_start(sm, utilization);
}

// ---- tests ------------------------------------------------------------------------------------

static void
test_autoscale_rejects_bad_config(void **state)
{
    (void)state;
    sl__autoscaler *as = NULL;
    sl_pipe_autoscale_config cfg = {.enabled = true, .target_utilization = 1.5};
    assert_int_equal(sl__autoscaler_new(&cfg, 2, &as), SL_EINVAL);
    cfg = (sl_pipe_autoscale_config){.enabled = true, .tolerance = -0.1};
    assert_int_equal(sl__autoscaler_new(&cfg, 2, &as), SL_EINVAL);
    cfg = (sl_pipe_autoscale_config){.enabled = true, .interval_ms = 10};
    assert_int_equal(sl__autoscaler_new(&cfg, 2, &as), SL_EINVAL);
    cfg = (sl_pipe_autoscale_config){.enabled = true};
    assert_int_equal(sl__autoscaler_new(&cfg, 0, &as), SL_ERANGE);
    assert_int_equal(sl__autoscaler_new(&cfg, SL_AUTOSCALE_STAGES_MAX + 1, &as), SL_ERANGE);
    assert_int_equal(sl__autoscaler_new(&cfg, 2, &as), SL_OK);
    const sl_pipe_autoscale_config *eff = sl__autoscaler_config(as);
    assert_int_equal(eff->interval_ms, SL_AUTOSCALE_INTERVAL_MS_DEFAULT);
    assert_int_equal(eff->cooldown_ms, SL_AUTOSCALE_COOLDOWN_MS_DEFAULT);
    assert_true(eff->target_utilization == SL_AUTOSCALE_UTILIZATION_DEFAULT);
    // A stage whose upstream comes after it is not in topological order.
    sl__autoscale_sample s[2] = {
        {.name = "a",
         .parallelism = 1,
         .parallelism_min = 1,
         .parallelism_max = 2,
         .window_s = 1.0,
         .upstream = {1},
         .upstream_count = 1},
        {.name = "b",
         .is_source = true,
         .parallelism = 1,
         .parallelism_min = 1,
         .parallelism_max = 1,
         .window_s = 1.0},
    };
    sl__autoscale_verdict v[2];
    assert_int_equal(sl__autoscaler_decide(as, s, 2, S, v), SL_EINVAL);
    assert_int_equal(sl__autoscaler_decide(as, s, 1, S, v), SL_EINVAL);
    sl__autoscaler_free(as);
}

static void
test_autoscale_step_up_reaches_target_in_few_decisions(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 1, 0.8);
    sim_run(&sm, 4000.0, 10); // 4,000/s needs 0.75 of an instance at 80%: stays at 1
    assert_int_equal(sm.samples[1].parallelism, 1);
    assert_int_equal(sm.ups + sm.downs, 0);
    sim_run(&sm, 14000.0, 15); // 14,000 / (6,667 * 0.8) = 2.6 -> 3
    assert_int_equal(sm.samples[1].parallelism, 3);
    assert_in_range(sm.ups, 1, 3);
    assert_int_equal(sm.downs, 0);
    assert_int_equal(sm.samples[2].parallelism, 1); // fixed bounds: never touched
    const sl__autoscale_verdict *v = &sm.verdicts[1];
    assert_true(fabs(v->required_in_per_s - 14000.0) < 1.0);
    assert_true(fabs(v->decision.true_rate_per_instance - 6666.7) < 1.0);
    sim_fini(&sm);
}

static void
test_autoscale_step_down_when_load_drops(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 3, 0.8);
    sim_run(&sm, 14000.0, 5);
    assert_int_equal(sm.samples[1].parallelism, 3);
    assert_int_equal(sm.ups + sm.downs, 0);
    sim_run(&sm, 3000.0, 10); // 3,000 * 1.1 / 5,333 = 0.62 -> 1
    assert_int_equal(sm.samples[1].parallelism, 1);
    assert_in_range(sm.downs, 1, 2);
    assert_int_equal(sm.ups, 0);
    // No load at all: the last reliable rate still sizes it (no warm-up stall at minimum).
    sim_run(&sm, 0.0, 5);
    assert_int_equal(sm.samples[1].parallelism, 1);
    sim_fini(&sm);
}

static void
test_autoscale_noise_does_not_oscillate(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 1, 0.8);
    sm.noise = 0.15;
    // 13,000/s needs 2.4 instances: 3, and +-15% noise on every measure must not move it.
    int changes_after_settling = 0;
    for (int k = 0; k < 50; k++) {
        uint32_t before = sm.samples[1].parallelism;
        sim_step(&sm, 13000.0);
        if (k >= 15 && sm.samples[1].parallelism != before) {
            changes_after_settling++;
        }
    }
    assert_int_equal(sm.samples[1].parallelism, 3);
    assert_int_equal(sm.downs, 0);
    assert_in_range(sm.ups, 1, 3);
    assert_int_equal(changes_after_settling, 0);
    sim_fini(&sm);
}

static void
test_autoscale_at_max_reports_backpressure_once(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 1, 0.8);
    sim_run(&sm, 40000.0, 20); // needs 7.5 instances, max 4: capacity 26,667/s
    assert_int_equal(sm.samples[1].parallelism, 4);
    assert_in_range(sm.ups, 1, 3);
    assert_int_equal(sm.downs, 0);
    const sl__autoscale_verdict *v = &sm.verdicts[1];
    assert_true(fabs(v->backpressure_per_s - (40000.0 - 4e6 / 150.0)) < 1.0);
    assert_true(fabs(v->required_out_per_s - 4e6 / 150.0) < 1.0); // downstream sized for that
    // Reached with the UP to max (which says so) or reported once afterwards: never repeated.
    assert_in_range(sm.at_max, 0, 1);
    assert_non_null(strstr(v->decision.reason, "stays backpressure"));
    // Load drops below capacity, then overloads again: a new episode is reported again.
    sim_run(&sm, 20000.0, 2);
    uint32_t before = sm.at_max;
    sim_run(&sm, 40000.0, 5);
    assert_int_equal(sm.at_max, before + 1);
    sim_fini(&sm);
}

static void
test_autoscale_selectivity_sizes_downstream(void **state)
{
    (void)state;
    sim sm;
    sim_init(&sm);
    sim_stage(&sm, "gen", true, 1, 1, 1, 0.0, 1.0, -1);
    sim_stage(&sm, "filter", false, 1, 1, 4, 100000.0, 0.5, 0); // passes half
    sim_stage(&sm, "work", false, 1, 1, 8, 5000.0, 1.0, 1);
    sim_stage(&sm, "sink", false, 1, 1, 1, 1e6, 0.0, 2);
    sim_start(&sm, 0.8);
    sim_run(&sm, 16000.0, 10); // work needs 8,000 / (5,000 * 0.8) = 2
    assert_true(fabs(sm.verdicts[2].required_in_per_s - 8000.0) < 1.0);
    assert_true(fabs(sm.verdicts[1].selectivity - 0.5) < 1e-6);
    assert_int_equal(sm.samples[1].parallelism, 1); // 16,000 / 80,000: no change
    assert_int_equal(sm.samples[2].parallelism, 2);
    assert_int_equal(sm.ups, 1);
    assert_non_null(strstr(sm.verdicts[2].decision.reason, "true rate 5,000/s per instance"));
    sim_fini(&sm);
}

static void
test_autoscale_warm_up_waits_for_enough_busy_time(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 1, 0.8);
    sim_run(&sm, 3.0, 5); // 3 records/s: too few to know the true rate
    assert_false(sm.verdicts[1].estimated);
    assert_non_null(strstr(sm.verdicts[1].decision.reason, "warm-up"));
    assert_int_equal(sm.ups + sm.downs, 0);
    sim_fini(&sm);
}

static void
test_autoscale_fan_in_sums_upstream(void **state)
{
    (void)state;
    sim sm;
    sim_init(&sm);
    sim_stage(&sm, "a", true, 1, 1, 1, 0.0, 1.0, -1);
    sim_stage(&sm, "b", true, 1, 1, 1, 0.0, 1.0, -1);
    sim_stage(&sm, "join", false, 1, 1, 8, 5000.0, 1.0, 0);
    sm.samples[2].upstream[1] = 1;
    sm.samples[2].upstream_count = 2;
    sim_start(&sm, 0.8);
    sim_run(&sm, 6000.0, 6); // 2 x 6,000 / 4,000 = 3
    assert_true(fabs(sm.verdicts[2].required_in_per_s - 12000.0) < 1.0);
    assert_int_equal(sm.samples[2].parallelism, 3);
    sim_fini(&sm);
}

static void
test_autoscale_cool_down_delays_the_next_change(void **state)
{
    (void)state;
    sim sm;
    sim_three_stages(&sm, 1, 0.8);
    sim_run(&sm, 4000.0, 5);
    for (int k = 0; k < 5 && sm.ups == 0; k++) {
        sim_step(&sm, 14000.0);
    }
    assert_int_equal(sm.ups, 1);
    // Cool-down (2 s: the next interval), then a proposal that must hold for a second one.
    sim_step(&sm, 40000.0);
    assert_int_equal(sm.ups, 1);
    assert_non_null(strstr(sm.verdicts[1].decision.reason, "cool-down"));
    sim_step(&sm, 40000.0);
    assert_int_equal(sm.ups, 1);
    assert_non_null(strstr(sm.verdicts[1].decision.reason, "unconfirmed"));
    sim_step(&sm, 40000.0);
    assert_int_equal(sm.ups, 2);
    assert_int_equal(sm.samples[1].parallelism, 4);
    sim_fini(&sm);
}

static void
test_autoscale_fan_out_counts_copies_per_edge(void **state)
{
    (void)state;
    sim sm;
    sim_init(&sm);
    sim_stage(&sm, "gen", true, 1, 1, 1, 0.0, 1.0, -1);
    sim_stage(&sm, "split", false, 1, 1, 4, 100000.0, 1.0, 0);
    sim_stage(&sm, "left", false, 1, 1, 8, 5000.0, 1.0, 1);
    sim_stage(&sm, "right", false, 1, 1, 8, 5000.0, 1.0, 1);
    sm.samples[1].out_edges = 2; // split copies every record to left and right
    sim_start(&sm, 0.8);
    sim_run(&sm, 8000.0, 6); // each side: 8,000 / 4,000 = 2 (not 16,000: copies are per edge)
    assert_true(fabs(sm.verdicts[1].selectivity - 1.0) < 1e-6);
    assert_true(fabs(sm.verdicts[2].required_in_per_s - 8000.0) < 1.0);
    assert_int_equal(sm.samples[2].parallelism, 2);
    assert_int_equal(sm.samples[3].parallelism, 2);
    sim_fini(&sm);
}

// ---- attached to a running pipeline
// --------------------------------------------------------------

#define RUN_WAIT_MS    15000
#define RUN_POLL_MS    100
#define RUN_SCRAPE_MAX (256u << 10)

typedef struct run_decisions {
    pthread_mutex_t mutex;
    uint32_t count;
    sl_pipe_scale_decision first;
} run_decisions;

static void
run_on_decision(const sl_pipe_scale_decision *d, void *user)
{
    run_decisions *rd = user;
    pthread_mutex_lock(&rd->mutex);
    if (rd->count++ == 0) {
        rd->first = *d;
    }
    pthread_mutex_unlock(&rd->mutex);
}

static int
run_sink(const sl_pipe_record *record, uint32_t instance, void *user)
{
    (void)record;
    (void)instance;
    (void)user;
    return SL_OK;
}

// gen (2,000/s) -> delay (1 ms a record, slept) -> sink: the delay needs 2,000 / (~950 * 0.8)
// = 2.6 instances, bounded by 3.
static sl_pipeline *
run_build(const sl_pipeline_config *cfg, sl_pipe_stage **delay_out)
{
    static const sl_pipe_option gen_opts[] = {{"rate", "2000"}};
    static sl__pipe_delay_config delay_cfg = {.per_record_ns = 1000000, .spin = false};
    static sl_pipe_callback_sink cb = {.fn = run_sink};
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(cfg, &p), SL_OK);
    sl_pipe_endpoint gen = {.uri = "gen:", .options = gen_opts, .option_count = 1};
    sl_pipe_stage *src = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "gen", sl_pipe_find_source("gen"), &gen, NULL, &src),
                     SL_OK);
    sl_pipe_stage_config dc;
    sl_pipe_stage_config_init(&dc);
    dc.parallelism_min = 1;
    dc.parallelism_max = 3;
    assert_int_equal(
        sl_pipeline_add_process(p, "delay", sl__pipe_op_delay, &delay_cfg, &dc, delay_out), SL_OK);
    sl_pipe_endpoint dst = {.uri = "callback:", .user = &cb};
    sl_pipe_stage *sink = NULL;
    assert_int_equal(
        sl_pipeline_add_sink(p, "sink", sl_pipe_find_sink("callback"), &dst, NULL, &sink), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, *delay_out, SL_ROUTE_ROUND_ROBIN), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, *delay_out, sink, SL_ROUTE_ROUND_ROBIN), SL_OK);
    return p;
}

static void
test_autoscale_rejects_bad_config_at_start(void **state)
{
    (void)state;
    sl_pipeline_config cfg;
    sl_pipeline_config_init(&cfg);
    cfg.autoscale.enabled = true;
    cfg.autoscale.target_utilization = 2.0;
    sl_pipe_stage *delay = NULL;
    sl_pipeline *p = run_build(&cfg, &delay);
    char err[128];
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "autoscale"));
    sl__pipe_autoscale_step(p, sl_now_ns()); // not attached: does nothing
    sl_pipeline_free(p);
}

static void
test_autoscale_scales_a_running_pipeline(void **state)
{
    (void)state;
    run_decisions rd = {.count = 0};
    pthread_mutex_init(&rd.mutex, NULL);
    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);
    sl_pipeline_config cfg;
    sl_pipeline_config_init(&cfg);
    cfg.name = "run";
    cfg.registry = reg;
    cfg.decision_cb = run_on_decision;
    cfg.decision_user = &rd;
    cfg.autoscale = (sl_pipe_autoscale_config){.enabled = true,
                                               .interval_ms = 1000,
                                               .cooldown_ms = 2000,
                                               .target_utilization = 0.8,
                                               .tolerance = 0.1};
    sl_pipe_stage *delay = NULL;
    sl_pipeline *p = run_build(&cfg, &delay);
    char err[128];
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);
    static char scrape[RUN_SCRAPE_MAX];
    size_t len = 0;
    // Scrapes while the controller registers and counts (the race TSan looks for).
    for (int waited = 0; waited < RUN_WAIT_MS && sl__pipe_stage_parallelism(delay) < 2;
         waited += RUN_POLL_MS) {
        assert_int_equal(
            sl_metrics_encode_prometheus(reg, sl_now_ns(), scrape, sizeof(scrape), &len), SL_OK);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = RUN_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(sl__pipe_stage_parallelism(delay) >= 2);
    pthread_mutex_lock(&rd.mutex);
    assert_true(rd.count >= 1);
    assert_string_equal(rd.first.stage, "delay");
    assert_int_equal(rd.first.from, 1);
    assert_true(rd.first.to >= 2 && rd.first.to <= 3);
    assert_true(fabs(rd.first.offered_per_s - 2000.0) < 1.0); // the generator's configured rate
    assert_non_null(strstr(rd.first.reason, "true rate"));
    pthread_mutex_unlock(&rd.mutex);
    assert_int_equal(sl_metrics_encode_prometheus(reg, sl_now_ns(), scrape, sizeof(scrape), &len),
                     SL_OK);
    assert_non_null(strstr(scrape, "sluice_pipeline_autoscale_decisions_total{pipeline=\"run\","
                                   "stage=\"delay\",direction=\"up\"} "));
    sl_pipeline_stop(p, false, sl_deadline_after_ms(5000));
    sl_pipeline_free(p);
    sl_metrics_registry_free(reg);
    pthread_mutex_destroy(&rd.mutex);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_autoscale_rejects_bad_config),
        cmocka_unit_test(test_autoscale_step_up_reaches_target_in_few_decisions),
        cmocka_unit_test(test_autoscale_step_down_when_load_drops),
        cmocka_unit_test(test_autoscale_noise_does_not_oscillate),
        cmocka_unit_test(test_autoscale_at_max_reports_backpressure_once),
        cmocka_unit_test(test_autoscale_selectivity_sizes_downstream),
        cmocka_unit_test(test_autoscale_warm_up_waits_for_enough_busy_time),
        cmocka_unit_test(test_autoscale_fan_in_sums_upstream),
        cmocka_unit_test(test_autoscale_fan_out_counts_copies_per_edge),
        cmocka_unit_test(test_autoscale_cool_down_delays_the_next_change),
        cmocka_unit_test(test_autoscale_rejects_bad_config_at_start),
        cmocka_unit_test(test_autoscale_scales_a_running_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
