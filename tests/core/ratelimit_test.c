// Rate limiters: the token bucket's exact integer refill and waits, and the adaptive limiter
// against a simulated downstream (time stepped, no sleeping) that must converge within 10% of
// its capacity and stay in a band no wider than that, also across a capacity change.
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>

#include <sluice/error.h>
#include <sluice/ratelimit.h>

#include "core/util.h"

#define MS 1000000ll
#define S  1000000000ll

// ---- token bucket -----------------------------------------------------------------------------

static void
test_token_bucket_rejects_bad_config(void **state)
{
    (void)state;
    sl_token_bucket tb;
    assert_int_equal(sl_token_bucket_init(&tb, 0, 10), SL_EINVAL);
    assert_int_equal(sl_token_bucket_init(&tb, 10, 0), SL_EINVAL);
    assert_int_equal(sl_token_bucket_init(&tb, SL_TOKEN_BUCKET_RATE_MAX + 1, 10), SL_EINVAL);
    assert_int_equal(sl_token_bucket_init(&tb, 10, SL_TOKEN_BUCKET_BURST_MAX + 1), SL_EINVAL);
    assert_int_equal(sl_token_bucket_init(&tb, SL_TOKEN_BUCKET_RATE_MAX, SL_TOKEN_BUCKET_BURST_MAX),
                     SL_OK);
    assert_int_equal(sl_token_bucket_set_rate(&tb, 0, 0), SL_EINVAL);
}

static void
test_token_bucket_burst_then_rate(void **state)
{
    (void)state;
    sl_token_bucket tb;
    assert_int_equal(sl_token_bucket_init(&tb, 100, 10), SL_OK); // 100/s: one per 10 ms
    int64_t t = 5 * S;
    int64_t wait = -1;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sl_token_bucket_acquire(&tb, 1, t, &wait), SL_OK);
        assert_int_equal(wait, 0);
    }
    assert_int_equal(sl_token_bucket_acquire(&tb, 1, t, &wait), SL_EAGAIN);
    assert_int_equal(wait, 10 * MS);
    assert_int_equal(sl_token_bucket_acquire(&tb, 3, t + 4 * MS, &wait), SL_EAGAIN);
    assert_int_equal(wait, 26 * MS);
    assert_int_equal(sl_token_bucket_acquire(&tb, 3, t + 30 * MS, &wait), SL_OK);
    assert_int_equal(sl_token_bucket_acquire(&tb, 11, t + 30 * MS, &wait), SL_ETOOBIG);
    assert_int_equal(sl_token_bucket_acquire(&tb, 0, t + 30 * MS, &wait), SL_OK);
    // A long idle period refills to the burst only.
    assert_int_equal(sl_token_bucket_available(&tb, t + 3600 * S), 10);
    // Time running backwards mints nothing.
    assert_int_equal(sl_token_bucket_acquire(&tb, 10, t + 3600 * S, &wait), SL_OK);
    assert_int_equal(sl_token_bucket_available(&tb, t), 0);
    assert_int_equal(sl_token_bucket_available(&tb, t + 3600 * S + 10 * MS), 1);
}

// 7 tokens/s does not divide a second evenly in nanoseconds: a float or per-call rounding would
// drift. Over 1000 simulated seconds of 1-token acquires, each at the earliest time the bucket
// allows, exactly rate * time plus the initial burst are granted. (The burst is 2 so that waking
// a nanosecond late never meets a full bucket, which rightly discards what overflows it.)
static void
test_token_bucket_no_drift(void **state)
{
    (void)state;
    sl_token_bucket tb;
    assert_int_equal(sl_token_bucket_init(&tb, 7, 2), SL_OK);
    int64_t t = 0;
    uint64_t granted = 0;
    int64_t end = 1000 * S;
    // Bounded: t advances by at least 1 ns per pass and stops at end.
    while (t <= end) {
        int64_t wait = 0;
        if (sl_token_bucket_acquire(&tb, 1, t, &wait) == SL_OK) {
            granted++;
            t += 1;
        } else {
            assert_true(wait > 0);
            t += wait;
        }
    }
    assert_int_equal(granted, 2 + 7000);
}

static void
test_token_bucket_set_rate_keeps_earned_tokens(void **state)
{
    (void)state;
    sl_token_bucket tb;
    assert_int_equal(sl_token_bucket_init(&tb, 1000, 1000), SL_OK);
    int64_t wait = 0;
    assert_int_equal(sl_token_bucket_acquire(&tb, 1000, 0, &wait), SL_OK);
    assert_int_equal(sl_token_bucket_set_rate(&tb, 10, 500 * MS), SL_OK); // 500 earned at 1000/s
    assert_int_equal(sl_token_bucket_available(&tb, 500 * MS), 500);
    assert_int_equal(sl_token_bucket_available(&tb, 1500 * MS), 510);
    assert_int_equal(sl_token_bucket_acquire(&tb, 520, 1500 * MS, &wait), SL_EAGAIN);
    assert_int_equal(wait, 1 * S);
}

// ---- adaptive limiter: config -----------------------------------------------------------------

static void
test_adaptive_rejects_bad_config(void **state)
{
    (void)state;
    sl_adaptive_limiter l;
    sl_adaptive_config cfg;
    sl_adaptive_config_default(&cfg, SL_ADAPTIVE_GRADIENT);
    assert_int_equal(sl_adaptive_init(&l, &cfg), SL_OK);
    assert_int_equal(sl_adaptive_limit(&l), 10);
    sl_adaptive_config bad = cfg;
    bad.limit_min = 0;
    assert_int_equal(sl_adaptive_init(&l, &bad), SL_EINVAL);
    bad = cfg;
    bad.limit_initial = bad.limit_max + 1;
    assert_int_equal(sl_adaptive_init(&l, &bad), SL_EINVAL);
    bad = cfg;
    bad.decrease_factor = 1.0;
    assert_int_equal(sl_adaptive_init(&l, &bad), SL_EINVAL);
    bad = cfg;
    bad.smoothing = 0.0;
    assert_int_equal(sl_adaptive_init(&l, &bad), SL_EINVAL);
    bad = cfg;
    bad.mode = (sl_adaptive_mode)7;
    assert_int_equal(sl_adaptive_init(&l, &bad), SL_EINVAL);
}

static void
test_adaptive_throttle_decreases_and_stays_within_bounds(void **state)
{
    (void)state;
    for (int mode = SL_ADAPTIVE_AIMD; mode <= SL_ADAPTIVE_GRADIENT; mode++) {
        sl_adaptive_limiter l;
        sl_adaptive_config cfg;
        sl_adaptive_config_default(&cfg, (sl_adaptive_mode)mode);
        cfg.limit_initial = 100;
        cfg.limit_min = 5;
        assert_int_equal(sl_adaptive_init(&l, &cfg), SL_OK);
        // Bounded: 200 windows of throttles.
        for (int i = 0; i < 200 * 100; i++) {
            sl_adaptive_on_sample(&l, 10 * MS, sl_adaptive_limit(&l), true);
        }
        assert_int_equal(sl_adaptive_limit(&l), 5);
        sl_adaptive_stats st;
        sl_adaptive_stats_get(&l, &st);
        assert_true(st.throttled_total > 0);
        // Nothing but throttles: no latency known, so no decision was taken on latency.
        assert_int_equal(st.noload_latency_ns, 0);
    }
}

// ---- adaptive limiter against a simulated downstream ------------------------------------------

// The downstream: `workers` requests are served in parallel, each for service_ns on average; more
// wait in a queue (latency grows with it, Little's law) up to queue_max, past which a request is
// throttled and answered one tick later. Capacity C = workers / service time; knee K = workers.
#define SIM_TPUT_BIN_S         5
#define SIM_BIN_S              5
#define SIM_TICK_NS            (1 * MS)
#define SIM_SLOTS              4096 // ring size: in service + waiting + throttled, all < limit_max
#define SIM_NOISE_PERMILLE     30   // latency measurement noise: uniform +-3%
#define SIM_SERVICE_JITTER_PCT 20   // service time: uniform +-20% around the mean

typedef struct sim {
    uint32_t workers;
    int64_t service_ns;
    uint32_t queue_max;
    int64_t now_ns;
    uint64_t rng;
    // Requests in service: a binary min-heap on end time (service times vary, so requests do not
    // finish in the order they started).
    int64_t svc_sent_ns[SIM_SLOTS];
    int64_t svc_end_ns[SIM_SLOTS];
    uint32_t svc_count;
    int64_t wait_sent_ns[SIM_SLOTS];
    uint32_t wait_head;
    uint32_t wait_count;
    uint32_t throttled_pending; // answered at the next tick
    uint32_t in_flight;
    uint64_t completed_total;
    uint64_t throttled_total;
} sim;

static void
sim_swap(sim *s, uint32_t i, uint32_t j)
{
    int64_t sent = s->svc_sent_ns[i];
    int64_t end = s->svc_end_ns[i];
    s->svc_sent_ns[i] = s->svc_sent_ns[j];
    s->svc_end_ns[i] = s->svc_end_ns[j];
    s->svc_sent_ns[j] = sent;
    s->svc_end_ns[j] = end;
}

// Starts serving a request sent at sent_ns; it takes service_ns +- SIM_SERVICE_JITTER_PCT.
static void
sim_start(sim *s, int64_t sent_ns)
{
    assert_true(s->svc_count < SIM_SLOTS);
    int64_t jitter_pct = (int64_t)(sl_test_rand(&s->rng) % (2 * SIM_SERVICE_JITTER_PCT + 1));
    int64_t service_ns =
        s->service_ns + s->service_ns * (jitter_pct - SIM_SERVICE_JITTER_PCT) / 100;
    uint32_t i = s->svc_count++;
    s->svc_sent_ns[i] = sent_ns;
    s->svc_end_ns[i] = s->now_ns + service_ns;
    // Sift up: bounded by the heap's depth.
    while (i > 0 && s->svc_end_ns[(i - 1) / 2] > s->svc_end_ns[i]) {
        sim_swap(s, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

// Removes the request that ends first.
static void
sim_pop(sim *s)
{
    s->svc_count--;
    sim_swap(s, 0, s->svc_count);
    uint32_t i = 0;
    // Sift down: bounded by the heap's depth.
    for (;;) {
        uint32_t l = 2 * i + 1;
        uint32_t r = l + 1;
        uint32_t m = i;
        if (l < s->svc_count && s->svc_end_ns[l] < s->svc_end_ns[m]) {
            m = l;
        }
        if (r < s->svc_count && s->svc_end_ns[r] < s->svc_end_ns[m]) {
            m = r;
        }
        if (m == i) {
            break;
        }
        sim_swap(s, i, m);
        i = m;
    }
}

static int64_t
sim_noisy(sim *s, int64_t latency_ns)
{
    int64_t permille = (int64_t)(sl_test_rand(&s->rng) % (2 * SIM_NOISE_PERMILLE + 1));
    return latency_ns + latency_ns * (permille - SIM_NOISE_PERMILLE) / 1000;
}

// Advances one tick: answers, starts waiting requests, then lets the client send up to the limit.
static void
sim_tick(sim *s, sl_adaptive_limiter *l)
{
    s->now_ns += SIM_TICK_NS;
    // Bounded by the requests in service.
    while (s->svc_count > 0 && s->svc_end_ns[0] <= s->now_ns) {
        int64_t latency = s->now_ns - s->svc_sent_ns[0];
        sim_pop(s);
        s->in_flight--;
        s->completed_total++;
        sl_adaptive_on_sample(l, sim_noisy(s, latency), s->in_flight, false);
    }
    for (; s->throttled_pending > 0; s->throttled_pending--) {
        s->in_flight--;
        s->throttled_total++;
        sl_adaptive_on_sample(l, SIM_TICK_NS, s->in_flight, true);
    }
    while (s->svc_count < s->workers && s->wait_count > 0) {
        sim_start(s, s->wait_sent_ns[s->wait_head]);
        s->wait_head = (s->wait_head + 1) % SIM_SLOTS;
        s->wait_count--;
    }
    uint32_t limit = sl_adaptive_limit(l);
    assert_true(limit < SIM_SLOTS);
    // Bounded by the limit.
    while (s->in_flight < limit) {
        s->in_flight++;
        if (s->svc_count < s->workers) {
            sim_start(s, s->now_ns);
        } else if (s->wait_count < s->queue_max) {
            s->wait_sent_ns[(s->wait_head + s->wait_count) % SIM_SLOTS] = s->now_ns;
            s->wait_count++;
        } else {
            s->throttled_pending++;
        }
    }
}

// What a run measured, in bins of SIM_BIN_S: the limit's mean over the bin relative to the knee
// (the limiter dithers a fractional limit between two whole ones, so the mean is the concurrency
// it allows), and throughput relative to capacity. min/max/mean cover the bins from settle_s on;
// settled_s is the end of the first bin from which every later bin stayed within 10%.
typedef struct sim_band {
    double limit_min;
    double limit_max;
    double limit_mean;
    double tput_min;
    double tput_max;
    double tput_mean;
    double settled_s; // -1: never
    double now_min;   // the whole limit in force, tick by tick, from settle_s on (for the report:
    double now_max;   // it includes dithering by one and probe steps)
} sim_band;

typedef struct sim_phase {
    int64_t start_s;
    uint32_t workers;
    int64_t service_ns;
} sim_phase;

static void
band_add(sim_band *b, double limit_rel, double tput_rel, uint64_t *bins)
{
    b->limit_min = SL_MIN(b->limit_min, limit_rel);
    b->limit_max = SL_MAX(b->limit_max, limit_rel);
    b->tput_min = SL_MIN(b->tput_min, tput_rel);
    b->tput_max = SL_MAX(b->tput_max, tput_rel);
    b->limit_mean += limit_rel;
    b->tput_mean += tput_rel;
    (*bins)++;
}

static void
sim_trace(const sim *s, const sl_adaptive_limiter *l, int64_t sec)
{
    if (getenv("SIM_TRACE") == NULL) {
        return;
    }
    sl_adaptive_stats ts;
    sl_adaptive_stats_get(l, &ts);
    printf("t=%lld lim=%.1f now=%u noload=%.1fms lat=%.1fms probes=%llu probing=%d thr=%llu "
           "inf=%u svc=%u wait=%u\n",
           (long long)sec, ts.limit_exact, ts.limit, (double)ts.noload_latency_ns / 1e6,
           (double)ts.last_window_latency_ns / 1e6, (unsigned long long)ts.probes_total, ts.probing,
           (unsigned long long)s->throttled_total, s->in_flight, s->svc_count, s->wait_count);
}

// Runs one phase from its start to end_s, filling *b.
static void
sim_phase_run(sim *s, sl_adaptive_limiter *l, const sim_phase *phase, int64_t end_s,
              int64_t settle_s, sim_band *b)
{
    s->workers = phase->workers;
    s->service_ns = phase->service_ns;
    s->queue_max = SL_MAX(s->workers / 2, 2);
    double knee = (double)s->workers;
    double capacity = knee * (double)S / (double)s->service_ns;
    *b = (sim_band){.limit_min = 1e9, .tput_min = 1e9, .settled_s = -1, .now_min = 1e9};
    uint64_t bins = 0;
    const int64_t bin_ticks = SIM_BIN_S * S / SIM_TICK_NS;
    // Bounded: one pass per bin of the phase.
    for (int64_t bin_s = phase->start_s; bin_s + SIM_BIN_S <= end_s; bin_s += SIM_BIN_S) {
        uint64_t completed_before = s->completed_total;
        double limit_sum = 0;
        bool measured = bin_s >= phase->start_s + settle_s;
        for (int64_t tick = 0; tick < bin_ticks; tick++) {
            sim_tick(s, l);
            double now = (double)sl_adaptive_limit(l);
            limit_sum += now;
            if (measured) {
                b->now_min = SL_MIN(b->now_min, now / knee);
                b->now_max = SL_MAX(b->now_max, now / knee);
            }
        }
        sim_trace(s, l, bin_s);
        double limit_rel = limit_sum / (double)bin_ticks / knee;
        double tput_rel =
            (double)(s->completed_total - completed_before) / capacity / (double)SIM_BIN_S;
        bool in_band = limit_rel >= 0.9 && limit_rel <= 1.1 && tput_rel >= 0.9 && tput_rel <= 1.1;
        if (!in_band) {
            b->settled_s = -1;
        } else if (b->settled_s < 0) {
            b->settled_s = (double)(bin_s + SIM_BIN_S - phase->start_s);
        }
        if (measured) {
            band_add(b, limit_rel, tput_rel, &bins);
        }
    }
    b->limit_mean /= (double)bins;
    b->tput_mean /= (double)bins;
    sl_adaptive_stats st;
    sl_adaptive_stats_get(l, &st);
    printf("# %s C=%.0f/s K=%.0f S=%lld ms: limit/K [%.3f, %.3f] mean %.3f; throughput/C "
           "[%.3f, %.3f] mean %.3f; settled after %.0f s; throttled %llu, probes %llu; "
           "instantaneous limit/K [%.3f, %.3f]\n",
           l->config.mode == SL_ADAPTIVE_AIMD ? "aimd" : "gradient", capacity, knee,
           (long long)(s->service_ns / MS), b->limit_min, b->limit_max, b->limit_mean, b->tput_min,
           b->tput_max, b->tput_mean, b->settled_s, (unsigned long long)s->throttled_total,
           (unsigned long long)st.probes_total, b->now_min, b->now_max);
}

// Runs phases back to back (each a capacity); measures each from settle_s after its start.
static void
sim_run(sl_adaptive_mode mode, uint32_t limit_initial, const sim_phase *phases, int phase_count,
        int64_t end_s, int64_t settle_s, sim_band *bands)
{
    sl_adaptive_config cfg;
    sl_adaptive_config_default(&cfg, mode);
    cfg.limit_initial = limit_initial;
    sl_adaptive_limiter l;
    assert_int_equal(sl_adaptive_init(&l, &cfg), SL_OK);
    sim *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    // Fixed, so the test is deterministic; SL_SIM_SEED explores others.
    const char *seed = getenv("SL_SIM_SEED");
    s->rng = seed != NULL ? strtoull(seed, NULL, 0) : 0x5eed1234u;
    s->rng = s->rng != 0 ? s->rng : 1;
    for (int p = 0; p < phase_count; p++) {
        int64_t phase_end_s = p + 1 < phase_count ? phases[p + 1].start_s : end_s;
        sim_phase_run(s, &l, &phases[p], phase_end_s, settle_s, &bands[p]);
    }
    free(s);
}

static void
assert_within_10pct(const sim_band *b)
{
    assert_true(b->settled_s >= 0);
    assert_true(b->limit_min >= 0.9);
    assert_true(b->limit_max <= 1.1);
    assert_true(b->tput_min >= 0.9);
    assert_true(b->tput_max <= 1.1);
}

typedef struct sim_case {
    double capacity_per_s;
    uint32_t workers;
    int64_t service_ns;
    int64_t settle_s; // 600 round trips, at least 60 s: convergence is counted in round trips
    int64_t end_s;    // settle_s plus three minutes of steady state
} sim_case;

// Capacities 50, 500 and 5000 requests/s (knees 20, 50 and 200 in flight).
static const sim_case SIM_CASES[] = {
    {50, 20, 400 * MS, 240, 420},
    {500, 50, 100 * MS, 60, 240},
    {5000, 200, 40 * MS, 60, 240},
};

static void
test_adaptive_gradient_converges_within_10pct(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(SIM_CASES); i++) {
        sim_phase phase = {0, SIM_CASES[i].workers, SIM_CASES[i].service_ns};
        sim_band band;
        sim_run(SL_ADAPTIVE_GRADIENT, 10, &phase, 1, SIM_CASES[i].end_s, SIM_CASES[i].settle_s,
                &band);
        assert_within_10pct(&band);
        assert_true(band.settled_s <= (double)SIM_CASES[i].settle_s);
    }
}

// From far above the knee the first windows queue and throttle; the limiter must come down and
// settle just the same.
static void
test_adaptive_gradient_converges_from_above(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(SIM_CASES); i++) {
        sim_phase phase = {0, SIM_CASES[i].workers, SIM_CASES[i].service_ns};
        sim_band band;
        sim_run(SL_ADAPTIVE_GRADIENT, 4 * SIM_CASES[i].workers, &phase, 1, SIM_CASES[i].end_s,
                SIM_CASES[i].settle_s, &band);
        assert_within_10pct(&band);
        assert_true(band.settled_s <= (double)SIM_CASES[i].settle_s);
    }
}

// Capacity halves and more (replicas lost: fewer workers), then comes back.
static void
test_adaptive_gradient_follows_capacity_down_and_up(void **state)
{
    (void)state;
    sim_phase phases[] = {{0, 50, 100 * MS}, {120, 20, 100 * MS}, {240, 50, 100 * MS}};
    sim_band bands[3];
    sim_run(SL_ADAPTIVE_GRADIENT, 10, phases, 3, 360, 60, bands);
    for (int p = 0; p < 3; p++) {
        assert_within_10pct(&bands[p]);
        assert_true(bands[p].settled_s <= 60);
    }
}

// The downstream gets slower per request (service time doubles, so capacity halves and the
// no-load latency doubles), then fast again. Without the probe the old no-load latency would make
// the doubled latency look like queueing and pin the limit at half the knee.
static void
test_adaptive_gradient_follows_slower_service(void **state)
{
    (void)state;
    sim_phase phases[] = {{0, 100, 50 * MS}, {120, 100, 100 * MS}, {360, 100, 50 * MS}};
    sim_band bands[3];
    sim_run(SL_ADAPTIVE_GRADIENT, 10, phases, 3, 480, 90, bands);
    for (int p = 0; p < 3; p++) {
        assert_within_10pct(&bands[p]);
    }
}

// AIMD cannot hold +-10% in general: its sawtooth spans its decrease factor, and a probe dips
// from the bottom of the tooth. Measured and documented (docs/design/adaptive-limiter.md);
// asserted here only to stay within -30%/+35% of the knee and 20% of capacity.
static void
test_adaptive_aimd_sawtooth_band(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(SIM_CASES); i++) {
        sim_phase phase = {0, SIM_CASES[i].workers, SIM_CASES[i].service_ns};
        sim_band band;
        sim_run(SL_ADAPTIVE_AIMD, 10, &phase, 1, SIM_CASES[i].end_s, SIM_CASES[i].settle_s, &band);
        assert_true(band.limit_min >= 0.7);
        assert_true(band.limit_max <= 1.35);
        assert_true(band.tput_min >= 0.8);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_bucket_rejects_bad_config),
        cmocka_unit_test(test_token_bucket_burst_then_rate),
        cmocka_unit_test(test_token_bucket_no_drift),
        cmocka_unit_test(test_token_bucket_set_rate_keeps_earned_tokens),
        cmocka_unit_test(test_adaptive_rejects_bad_config),
        cmocka_unit_test(test_adaptive_throttle_decreases_and_stays_within_bounds),
        cmocka_unit_test(test_adaptive_gradient_converges_within_10pct),
        cmocka_unit_test(test_adaptive_gradient_converges_from_above),
        cmocka_unit_test(test_adaptive_gradient_follows_capacity_down_and_up),
        cmocka_unit_test(test_adaptive_gradient_follows_slower_service),
        cmocka_unit_test(test_adaptive_aimd_sawtooth_band),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
