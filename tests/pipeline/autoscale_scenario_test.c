// The autoscaler on a running pipeline: paced source -> delay (150 us a record, slept, so 4
// instances need no CPU: 6,667/s each) -> callback sink, delay in [1, 4], decisions every 1 s,
// cool-down 2 s. The offered rate steps 4,000 -> 14,000 (delay reaches 3 without going down),
// -> 3,000 (it scales down), -> 40,000 (it stays at 4, the source is held to ~26,700/s and the
// delay's queues stay within their capacity).
// ctest-labels: serial scenario
// ctest-timeout: 150
#include "support/test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

#define MS             INT64_C(1000000)
#define COST_NS        (150 * INT64_C(1000)) // per record of the delay stage: 6,667/s
#define PER_INSTANCE_S (1e9 / (double)COST_NS)
// The delay op sleeps once it owes this much work (fewer, longer sleeps: precise rates).
#define DELAY_SLEEP_MIN_NS MS
// Longer than this between two polls means the runtime held the source back (no credit): that
// time is not owed, or the source would emit a backlog in a burst after each pause and look
// faster than its rate to the autoscaler (which credits a source with its output per second it
// was not held back). Time lost in its own sleeps (timer slack, a loaded machine) is caught up.
#define PACE_HELD_NS (300 * INT64_C(1000))
// Most backlog the source catches up at once.
#define PACE_BACKLOG_MAX_NS (20 * MS)
#define DECISIONS_MAX       64u
#define PHASE_POLL_MS       200
#define SCRAPE_BYTES        (256u << 10)

// ---- a source whose rate the test changes -----------------------------------------------------

// The source spends the time between records as its own production time (busy), the way a
// network source receiving at a given rate does: then the runtime's accounting shows what it
// offers (records per second it was not held back), and the autoscaler sizes for that.
typedef struct paced_shared {
    _Atomic uint64_t rate_per_s;
} paced_shared;

typedef struct paced_state {
    paced_shared *shared;
    int64_t next_due_ns; // when the next record is due
    int64_t returned_ns; // when poll last returned; 0: never called
    uint64_t seq;
} paced_state;

static void
sleep_until(int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    // Bounded: the deadline is absolute, EINTR retries converge on it.
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static int
paced_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t instance_count,
             void **state_out, char *err, size_t err_size)
{
    (void)instance;
    (void)instance_count;
    (void)err;
    (void)err_size;
    paced_state *st = sl_calloc(1, sizeof(*st));
    if (st == NULL) {
        return SL_ENOMEM;
    }
    st->shared = ep->user;
    *state_out = st;
    return SL_OK;
}

static int
paced_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    paced_state *st = state;
    int64_t now = sl_now_ns();
    int64_t away = now - st->returned_ns;
    if (st->returned_ns == 0) {
        st->next_due_ns = now;
    } else if (max_records == 0 || away > PACE_HELD_NS) {
        st->next_due_ns += away;
    }
    st->next_due_ns = SL_MAX(st->next_due_ns, now - PACE_BACKLOG_MAX_NS);
    int64_t gap_ns = (int64_t)(1e9 / (double)atomic_load(&st->shared->rate_per_s));
    uint32_t n = 0;
    char value[16] = {0};
    while (n < max_records && st->next_due_ns <= now) {
        sl_pipe_record rec = {.key = "k", .key_size = 1, .value = value, .value_size = 16};
        int rc = sl_pipe_source_emit(ctx, &rec, (sl_pipe_origin){.lane = 0, .token = st->seq});
        if (rc != SL_OK) {
            return rc;
        }
        st->seq++;
        st->next_due_ns += gap_ns;
        n++;
    }
    if (max_records > 0) {
        sleep_until(SL_MIN(st->next_due_ns, deadline_ns));
    }
    st->returned_ns = sl_now_ns();
    return n > 0 ? (int)n : (max_records == 0 ? 0 : SL_EAGAIN);
}

static void
paced_commit(void *state, uint32_t lane, uint64_t token)
{
    (void)state;
    (void)lane;
    (void)token;
}

static void
paced_destroy(void *state)
{
    sl_free(state, sizeof(paced_state));
}

static const sl_pipe_source_ops paced_ops = {
    .scheme = "paced",
    .create = paced_create,
    .poll = paced_poll,
    .commit = paced_commit,
    .destroy = paced_destroy,
};

// ---- the delay operator: COST_NS per record, slept ---------------------------------------------

// Work is owed per record and paid in sleeps of at least DELAY_SLEEP_MIN_NS; what a sleep
// overshoots is credited to the next records. Nothing owed is ever forgiven, so the busy time per
// record averages exactly COST_NS however records arrive (a per-record sleep would overshoot by
// the timer slack every time).
typedef struct delay_state {
    int64_t owed_ns; // work done but not yet slept for (negative: overslept)
} delay_state;

static void *
delay_init(void *user, uint32_t instance)
{
    (void)user;
    (void)instance;
    return sl_calloc(1, sizeof(delay_state));
}

static void
delay_fini(void *state)
{
    sl_free(state, sizeof(delay_state));
}

static int
delay_process(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    delay_state *d = state;
    d->owed_ns += COST_NS;
    if (d->owed_ns >= DELAY_SLEEP_MIN_NS) {
        int64_t start = sl_now_ns();
        sleep_until(start + d->owed_ns);
        d->owed_ns -= sl_now_ns() - start;
    }
    return sl_pipe_emit(ctx, in);
}

// ---- the sink and the decisions -----------------------------------------------------------------

typedef struct scenario {
    pthread_mutex_t mutex;
    sl_pipe_scale_decision decisions[DECISIONS_MAX];
    uint32_t decision_count;
    _Atomic uint64_t sunk;
    paced_shared rate;
    sl_pipeline *p;
    sl_metrics_registry *registry;
    sl_pipe_stage *gen;
    sl_pipe_stage *delay;
} scenario;

static int
sink_record(const sl_pipe_record *record, uint32_t instance, void *user)
{
    (void)record;
    (void)instance;
    scenario *sc = user;
    atomic_fetch_add(&sc->sunk, 1);
    return SL_OK;
}

static void
on_decision(const sl_pipe_scale_decision *d, void *user)
{
    scenario *sc = user;
    printf("  decision %s %u -> %u: %s\n", d->stage, d->from, d->to, d->reason);
    pthread_mutex_lock(&sc->mutex);
    if (sc->decision_count < DECISIONS_MAX) {
        sc->decisions[sc->decision_count++] = *d;
    }
    pthread_mutex_unlock(&sc->mutex);
}

static uint32_t
decision_count(scenario *sc)
{
    pthread_mutex_lock(&sc->mutex);
    uint32_t n = sc->decision_count;
    pthread_mutex_unlock(&sc->mutex);
    return n;
}

// Decisions from index first on: changes up, changes down, at-max reports.
static void
decisions_since(scenario *sc, uint32_t first, uint32_t *ups, uint32_t *downs, uint32_t *maxes)
{
    *ups = 0;
    *downs = 0;
    *maxes = 0;
    pthread_mutex_lock(&sc->mutex);
    for (uint32_t i = first; i < sc->decision_count; i++) {
        const sl_pipe_scale_decision *d = &sc->decisions[i];
        *ups += d->to > d->from;
        *downs += d->to < d->from;
        *maxes += d->to == d->from;
    }
    pthread_mutex_unlock(&sc->mutex);
}

static void
scenario_start(scenario *sc, uint64_t rate)
{
    memset(sc, 0, sizeof(*sc));
    pthread_mutex_init(&sc->mutex, NULL);
    atomic_init(&sc->rate.rate_per_s, rate);
    sl_pipeline_config cfg;
    sl_pipeline_config_init(&cfg);
    cfg.name = "scenario";
    cfg.autoscale = (sl_pipe_autoscale_config){.enabled = true,
                                               .interval_ms = 1000,
                                               .cooldown_ms = 2000,
                                               .target_utilization = 0.8,
                                               .tolerance = 0.1};
    cfg.decision_cb = on_decision;
    cfg.decision_user = sc;
    assert_int_equal(sl_metrics_registry_new(NULL, &sc->registry), SL_OK);
    cfg.registry = sc->registry;
    assert_int_equal(sl_pipeline_new(&cfg, &sc->p), SL_OK);
    sl_pipe_endpoint src = {.uri = "paced:", .user = &sc->rate};
    assert_int_equal(sl_pipeline_add_source(sc->p, "gen", &paced_ops, &src, NULL, &sc->gen), SL_OK);
    sl_pipe_stage_config dc;
    sl_pipe_stage_config_init(&dc);
    dc.parallelism = 1;
    dc.parallelism_min = 1;
    dc.parallelism_max = 4;
    dc.init = delay_init;
    dc.fini = delay_fini;
    assert_int_equal(sl_pipeline_add_process(sc->p, "delay", delay_process, NULL, &dc, &sc->delay),
                     SL_OK);
    static sl_pipe_callback_sink cb;
    cb = (sl_pipe_callback_sink){.fn = sink_record, .user = sc};
    sl_pipe_endpoint dst = {.uri = "callback:", .user = &cb};
    sl_pipe_stage *sink = NULL;
    assert_int_equal(
        sl_pipeline_add_sink(sc->p, "sink", sl_pipe_find_sink("callback"), &dst, NULL, &sink),
        SL_OK);
    assert_int_equal(sl_pipeline_connect(sc->p, sc->gen, sc->delay, SL_ROUTE_ROUND_ROBIN), SL_OK);
    assert_int_equal(sl_pipeline_connect(sc->p, sc->delay, sink, SL_ROUTE_ROUND_ROBIN), SL_OK);
    char err[256];
    int rc = sl_pipeline_start(sc->p, err, sizeof(err));
    if (rc != SL_OK) {
        fail_msg("start: %s: %s", sl_strerror(rc), err);
    }
}

// Waits until the delay stage runs `want` instances (or timeout_ms), polling.
static uint32_t
wait_parallelism(scenario *sc, uint32_t want, int timeout_ms)
{
    uint32_t now = sl__pipe_stage_parallelism(sc->delay);
    for (int waited = 0; waited < timeout_ms && now != want; waited += PHASE_POLL_MS) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = PHASE_POLL_MS * MS};
        nanosleep(&ts, NULL);
        now = sl__pipe_stage_parallelism(sc->delay);
    }
    return now;
}

static void
hold(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * MS};
    nanosleep(&ts, NULL);
}

static uint64_t
source_emitted(scenario *sc)
{
    sl_pipe_stage_stats st;
    sl__pipe_stage_stats(sc->gen, &st);
    return st.records_out_total;
}

// Fails the test unless the Prometheus scrape of the pipeline's registry holds line.
static void
scrape_expect(scenario *sc, const char *line)
{
    static char buf[SCRAPE_BYTES];
    size_t len = 0;
    assert_int_equal(
        sl_metrics_encode_prometheus(sc->registry, sl_now_ns(), buf, sizeof(buf), &len), SL_OK);
    if (strstr(buf, line) == NULL) {
        fail_msg("scrape lacks: %s", line);
    }
}

static void
test_autoscale_scenario_steps(void **state)
{
    (void)state;
    scenario sc;
    scenario_start(&sc, 4000);
    // 4,000/s needs 0.75 instances at 80%: one, past the 3-interval warm-up.
    hold(5000);
    assert_int_equal(sl__pipe_stage_parallelism(sc.delay), 1);
    assert_int_equal(decision_count(&sc), 0);

    // 14,000 / (6,667 * 0.8) = 2.6 -> 3.
    printf("offered 14,000/s\n");
    uint32_t mark = decision_count(&sc);
    atomic_store(&sc.rate.rate_per_s, 14000);
    assert_int_equal(wait_parallelism(&sc, 3, 15000), 3);
    hold(4000);
    uint32_t ups, downs, maxes;
    decisions_since(&sc, mark, &ups, &downs, &maxes);
    assert_int_equal(sl__pipe_stage_parallelism(sc.delay), 3);
    assert_in_range(ups, 1, 3);
    assert_int_equal(downs, 0);

    // 3,000 * 1.1 / 5,333 = 0.62 -> 1.
    printf("offered 3,000/s\n");
    mark = decision_count(&sc);
    atomic_store(&sc.rate.rate_per_s, 3000);
    assert_int_equal(wait_parallelism(&sc, 1, 12000), 1);
    hold(3000);
    decisions_since(&sc, mark, &ups, &downs, &maxes);
    assert_int_equal(sl__pipe_stage_parallelism(sc.delay), 1);
    assert_in_range(downs, 1, 2);
    assert_int_equal(ups, 0);

    // 40,000/s needs 7.5: it stays at 4 and the rest is backpressure on the source.
    printf("offered 40,000/s\n");
    mark = decision_count(&sc);
    atomic_store(&sc.rate.rate_per_s, 40000);
    assert_int_equal(wait_parallelism(&sc, 4, 12000), 4);
    hold(3000);
    uint64_t before = source_emitted(&sc);
    int64_t t0 = sl_now_ns();
    hold(4000);
    double emitted_per_s =
        (double)(source_emitted(&sc) - before) * 1e9 / (double)(sl_now_ns() - t0);
    printf("source emitted %.0f/s at 4 x %.0f/s capacity\n", emitted_per_s, PER_INSTANCE_S);
    decisions_since(&sc, mark, &ups, &downs, &maxes);
    assert_int_equal(sl__pipe_stage_parallelism(sc.delay), 4);
    assert_in_range(ups, 1, 3);
    assert_int_equal(downs, 0);
    assert_in_range(maxes, 0, 1);
    // Held to the delay's capacity (not to the offered 40,000/s), within a loose band.
    assert_true(emitted_per_s > 0.6 * 4 * PER_INSTANCE_S);
    assert_true(emitted_per_s < 1.15 * 4 * PER_INSTANCE_S);
    assert_true(sl__pipe_stage_held_max(sc.delay) <= sl__pipe_stage_capacity(sc.delay));
    sl_pipe_stage_stats st;
    sl__pipe_stage_stats(sc.delay, &st);
    assert_true(st.queued_records <= st.queue_capacity_records);
    pthread_mutex_lock(&sc.mutex);
    const sl_pipe_scale_decision *last = &sc.decisions[sc.decision_count - 1];
    assert_non_null(strstr(last->reason, "stays backpressure"));
    pthread_mutex_unlock(&sc.mutex);

    // Every change counted by direction; three steps took at most 3 decisions each.
    decisions_since(&sc, 0, &ups, &downs, &maxes);
    assert_in_range(ups + downs + maxes, 3, 9);
    char line[160];
    snprintf(line, sizeof(line),
             "sluice_pipeline_autoscale_decisions_total{pipeline=\"scenario\",stage=\"delay\","
             "direction=\"up\"} %u\n",
             ups);
    scrape_expect(&sc, line);
    snprintf(line, sizeof(line),
             "sluice_pipeline_autoscale_decisions_total{pipeline=\"scenario\",stage=\"delay\","
             "direction=\"down\"} %u\n",
             downs);
    scrape_expect(&sc, line);

    sl_pipeline_stop(sc.p, false, sl_deadline_after_ms(5000));
    sl_pipeline_free(sc.p);
    sl_metrics_registry_free(sc.registry);
    pthread_mutex_destroy(&sc.mutex);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_autoscale_scenario_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
