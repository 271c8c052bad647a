// Rate limiters (include/sluice/ratelimit.h): the token bucket that paces a sender at a fixed
// rate, and the adaptive limiter that sets how much a sender keeps in flight toward a downstream
// (a sink, another broker) from the latency and throttles it reports. Both take time as input.
// The adaptive algorithm and its rejected alternatives: docs/design/adaptive-limiter.md.
#include <sluice/ratelimit.h>

#include <sluice/error.h>

#include "core/util.h"

#define NS_PER_S 1000000000ull

// Nanotokens per token: one token per second is one nanotoken per nanosecond.
#define NT_PER_TOKEN NS_PER_S

_Static_assert(SL_TOKEN_BUCKET_BURST_MAX *NT_PER_TOKEN <= UINT64_MAX - SL_TOKEN_BUCKET_RATE_MAX * 2,
               "a full bucket plus one refill step must fit 64 bits");

// ---- token bucket -----------------------------------------------------------------------------

static void
bucket_check(const sl_token_bucket *tb)
{
    SL_ASSERT(tb->rate_per_s >= 1 && tb->rate_per_s <= SL_TOKEN_BUCKET_RATE_MAX);
    SL_ASSERT(tb->burst >= 1 && tb->burst <= SL_TOKEN_BUCKET_BURST_MAX);
    SL_ASSERT(tb->level_nt <= tb->burst * NT_PER_TOKEN);
}

static bool
rate_valid(uint64_t rate_per_s)
{
    return rate_per_s >= 1 && rate_per_s <= SL_TOKEN_BUCKET_RATE_MAX;
}

int
sl_token_bucket_init(sl_token_bucket *tb, uint64_t rate_per_s, uint64_t burst)
{
    SL_ASSERT(tb != NULL);
    if (!rate_valid(rate_per_s) || burst == 0 || burst > SL_TOKEN_BUCKET_BURST_MAX) {
        return SL_EINVAL;
    }
    *tb = (sl_token_bucket){
        .rate_per_s = rate_per_s, .burst = burst, .level_nt = burst * NT_PER_TOKEN};
    bucket_check(tb);
    return SL_OK;
}

// Brings the level up to now_ns. Time that runs backwards adds nothing and does not move last_ns
// back, so a clock step cannot mint tokens twice.
static void
bucket_refill(sl_token_bucket *tb, int64_t now_ns)
{
    if (!tb->started) {
        tb->started = true;
        tb->last_ns = now_ns;
        return;
    }
    if (now_ns <= tb->last_ns) {
        return;
    }
    uint64_t cap_nt = tb->burst * NT_PER_TOKEN;
    uint64_t missing_nt = cap_nt - tb->level_nt;
    // Past the time that fills the bucket, more time changes nothing; capping it first keeps
    // rate * elapsed inside 64 bits.
    uint64_t fill_ns = missing_nt / tb->rate_per_s + 1;
    uint64_t elapsed_ns = (uint64_t)now_ns - (uint64_t)tb->last_ns;
    if (elapsed_ns >= fill_ns) {
        tb->level_nt = cap_nt;
    } else {
        tb->level_nt += elapsed_ns * tb->rate_per_s;
        tb->level_nt = SL_MIN(tb->level_nt, cap_nt);
    }
    tb->last_ns = now_ns;
}

int
sl_token_bucket_acquire(sl_token_bucket *tb, uint64_t n, int64_t now_ns, int64_t *wait_ns_out)
{
    SL_ASSERT(tb != NULL);
    if (n > tb->burst) {
        return SL_ETOOBIG;
    }
    bucket_refill(tb, now_ns);
    uint64_t need_nt = n * NT_PER_TOKEN;
    if (tb->level_nt >= need_nt) {
        tb->level_nt -= need_nt;
        if (wait_ns_out != NULL) {
            *wait_ns_out = 0;
        }
        SL_DEBUG_ASSERT((bucket_check(tb), true));
        return SL_OK;
    }
    if (wait_ns_out != NULL) {
        uint64_t short_nt = need_nt - tb->level_nt;
        *wait_ns_out = (int64_t)((short_nt + tb->rate_per_s - 1) / tb->rate_per_s);
    }
    return SL_EAGAIN;
}

uint64_t
sl_token_bucket_available(sl_token_bucket *tb, int64_t now_ns)
{
    SL_ASSERT(tb != NULL);
    bucket_refill(tb, now_ns);
    return tb->level_nt / NT_PER_TOKEN;
}

int
sl_token_bucket_set_rate(sl_token_bucket *tb, uint64_t rate_per_s, int64_t now_ns)
{
    SL_ASSERT(tb != NULL);
    if (!rate_valid(rate_per_s)) {
        return SL_EINVAL;
    }
    bucket_refill(tb, now_ns);
    tb->rate_per_s = rate_per_s;
    bucket_check(tb);
    return SL_OK;
}

// ---- adaptive limiter -----------------------------------------------------------------------

// One window can cut the gradient limit to no less than this fraction: a single window of
// outliers (a GC pause downstream) must not collapse the limit (Netflix Gradient2 uses 0.5 too).
#define GRADIENT_RATIO_MIN 0.5

// While no queueing shows, the gradient target grows the limit by tolerance * 2^(streak - GRACE),
// where streak counts consecutive windows without queueing: a gentle step next to the knee (so a
// small limit toggles between K and K + 1 instead of jumping, and a few windows of noise that
// look queue-free do not kick it), doubling toward slow start when the downstream clearly has
// room (start-up, capacity added). The streak and the step are capped.
#define GRADIENT_STREAK_GRACE 3u
#define GRADIENT_STREAK_MAX   12u
#define GRADIENT_GROWTH_MAX   2.0

// "No queueing" means the window latency is within this share of the tolerance above the no-load
// latency: growth stops well before the gradient's fixed point at (1 + tolerance).
#define GRADIENT_NOQUEUE_SHARE 0.25

// A probe re-measures the no-load latency, which a queue hides. It lowers the limit in steps of
// 1 / (1 + PROBE_STEP_TOLERANCES * tolerance): from the gradient's fixed point K * (1 + tol) one
// step lands just under the knee K. Each step drains for a window, then measures for one. While
// the latency falls nearly in proportion to the limit (at least PROBE_FALL_SHARE of the step),
// the step only shortened a queue, which cost no throughput, so the probe steps on; the first
// step after which latency stops falling measures the no-load latency. A measurement takes
// PROBE_MEASURE_SAMPLES latencies, or a quarter of them when the fall is already the full
// proportional one, and never more than PROBE_MEASURE_WINDOWS_MAX windows (a slow downstream with
// a small limit must not be held for minutes). At most one step lands below the knee, so a probe
// costs at most one step of throughput (about 9%), for one measurement.
#define PROBE_STEP_TOLERANCES     2.0
#define PROBE_FALL_SHARE          0.75
#define PROBE_STEPS_MAX           16u
#define PROBE_MEASURE_SAMPLES     1000u
#define PROBE_EARLY_DIVISOR       4u
#define PROBE_MEASURE_WINDOWS_MAX 25u

// Longest latency a sample counts with (about 69 s); longer ones count as this.
#define LATENCY_MAX_NS ((int64_t)1 << 36)
_Static_assert(SL_ADAPTIVE_LIMIT_MAX <= (1u << 20) && PROBE_MEASURE_WINDOWS_MAX < 32u,
               "latency sums must stay below 2^61");

// The first probe comes early: the no-load latency seen at start-up is wrong when the initial
// limit was already past the knee.
#define PROBE_FIRST_WINDOWS 10u

// Windows in a row with latency above (1 + CONGESTED_TOLERANCES * tolerance) times the no-load
// latency, or below it divided by that, that start a probe: a queue that does not drain while the
// limit falls means the downstream got slower per request, latency under the no-load figure means
// it got faster, and either way the old no-load latency must go.
#define CONGESTED_TOLERANCES 3.0
#define CONGESTED_WINDOWS    4u

static void
limiter_check(const sl_adaptive_limiter *l)
{
    SL_ASSERT(l->limit >= (double)l->config.limit_min);
    SL_ASSERT(l->limit <= (double)l->config.limit_max);
    SL_ASSERT(l->noload_ns >= 0);
    SL_ASSERT(l->probe_phase <= 2);
    SL_ASSERT(l->limit_now >= l->config.limit_min && l->limit_now <= l->config.limit_max);
    SL_ASSERT(l->dither_acc >= 0.0 && l->dither_acc < 1.0);
    SL_ASSERT(l->probe_steps <= PROBE_STEPS_MAX);
    SL_ASSERT(l->growth_streak <= GRADIENT_STREAK_MAX);
}

void
sl_adaptive_config_default(sl_adaptive_config *cfg, sl_adaptive_mode mode)
{
    SL_ASSERT(cfg != NULL);
    *cfg = (sl_adaptive_config){
        .mode = mode,
        .limit_min = 1,
        .limit_max = SL_ADAPTIVE_LIMIT_MAX,
        .limit_initial = 10,
        .increase_step = 1,
        .decrease_factor = 0.9,
        .smoothing = 0.3,
        .latency_tolerance = mode == SL_ADAPTIVE_AIMD ? 0.1 : 0.05,
        .window_samples_min = 20,
        .probe_interval_windows = 1000,
    };
}

static bool
config_valid(const sl_adaptive_config *c)
{
    if (c->mode != SL_ADAPTIVE_AIMD && c->mode != SL_ADAPTIVE_GRADIENT) {
        return false;
    }
    if (c->limit_min < 1 || c->limit_max < c->limit_min || c->limit_max > SL_ADAPTIVE_LIMIT_MAX) {
        return false;
    }
    if (c->limit_initial < c->limit_min || c->limit_initial > c->limit_max) {
        return false;
    }
    // Written as positive ranges so that NaN fails them.
    bool factor_ok = c->decrease_factor > 0.0 && c->decrease_factor < 1.0;
    bool smoothing_ok = c->smoothing > 0.0 && c->smoothing <= 1.0;
    bool tolerance_ok = c->latency_tolerance > 0.0 && c->latency_tolerance <= 1.0;
    return factor_ok && smoothing_ok && tolerance_ok && c->increase_step >= 1 &&
           c->window_samples_min >= 1 && c->window_samples_min <= SL_ADAPTIVE_LIMIT_MAX;
}

int
sl_adaptive_init(sl_adaptive_limiter *l, const sl_adaptive_config *cfg)
{
    SL_ASSERT(l != NULL);
    SL_ASSERT(cfg != NULL);
    if (!config_valid(cfg)) {
        return SL_EINVAL;
    }
    // Start measuring the no-load latency at once (see probe_window).
    *l = (sl_adaptive_limiter){.config = *cfg,
                               .limit = (double)cfg->limit_initial,
                               .limit_now = cfg->limit_initial,
                               .probe_limit = (double)cfg->limit_initial,
                               .probe_phase = 2};
    limiter_check(l);
    return SL_OK;
}

static double
clamp_limit(const sl_adaptive_limiter *l, double limit)
{
    double lo = (double)l->config.limit_min;
    double hi = (double)l->config.limit_max;
    return limit < lo ? lo : (limit > hi ? hi : limit);
}

// AIMD: one decision per window, as TCP makes one per round trip.
static double
aimd_next(const sl_adaptive_limiter *l, int64_t latency_ns, bool app_limited)
{
    const sl_adaptive_config *c = &l->config;
    double threshold = (double)l->noload_ns * (1.0 + c->latency_tolerance);
    if (latency_ns > 0 && (double)latency_ns > threshold) {
        return l->limit * c->decrease_factor;
    }
    if (app_limited) {
        return l->limit;
    }
    return l->limit + (double)c->increase_step;
}

// Gradient: with no-load latency R0 and window latency R, a downstream past its knee K queues
// (limit - K) requests, so R = R0 * limit / K and limit * R0 / R = K: the target
// K * (1 + tolerance) does not depend on the current limit, and smoothing only sets the speed.
static double
gradient_next(sl_adaptive_limiter *l, int64_t latency_ns, bool app_limited)
{
    const sl_adaptive_config *c = &l->config;
    if (latency_ns <= 0) {
        return l->limit;
    }
    double ratio = (double)l->noload_ns / (double)latency_ns;
    double target;
    if (ratio >= 1.0 / (1.0 + c->latency_tolerance * GRADIENT_NOQUEUE_SHARE)) {
        uint32_t doublings =
            l->growth_streak > GRADIENT_STREAK_GRACE ? l->growth_streak - GRADIENT_STREAK_GRACE : 0;
        double growth = c->latency_tolerance * (double)(1u << doublings);
        growth = growth > GRADIENT_GROWTH_MAX - 1.0 ? GRADIENT_GROWTH_MAX - 1.0 : growth;
        target = app_limited ? l->limit : l->limit * (1.0 + growth);
        l->growth_streak = SL_MIN(l->growth_streak + 1, GRADIENT_STREAK_MAX);
    } else {
        l->growth_streak = 0;
        ratio = ratio < GRADIENT_RATIO_MIN ? GRADIENT_RATIO_MIN : ratio;
        target = l->limit * ratio * (1.0 + c->latency_tolerance);
        if (app_limited && target > l->limit) {
            target = l->limit;
        }
    }
    return l->limit + c->smoothing * (target - l->limit);
}

static double
probe_step_factor(const sl_adaptive_limiter *l)
{
    return 1.0 + PROBE_STEP_TOLERANCES * l->config.latency_tolerance;
}

// Starts (or, after a throttle, restarts) a probe: first a measurement at the current limit,
// the reference the first step down is compared with, after a window that lets the limit settle
// (it may just have moved).
static void
probe_begin(sl_adaptive_limiter *l)
{
    l->probe_phase = 1;
    l->probe_steps = 0;
    l->probe_limit = l->limit;
    l->probe_prev_ns = 0;
    l->probe_sum_ns = 0;
    l->probe_samples = 0;
    l->windows_since_probe = 0;
    l->congested_streak = 0;
    l->probe_windows = 0;
}

// Moves the probe one step down.
static void
probe_step_down(sl_adaptive_limiter *l, int64_t latency_ns)
{
    l->probe_prev_ns = latency_ns;
    l->probe_prev_limit = l->probe_limit;
    l->probe_limit = clamp_limit(l, l->probe_limit / probe_step_factor(l));
    l->probe_steps++;
    l->probe_phase = 1;
}

// A probe window closed. A measurement spans windows until it holds PROBE_MEASURE_SAMPLES
// latencies, so that its noise stays well below the fall it must tell apart.
static void
probe_window(sl_adaptive_limiter *l)
{
    if (l->probe_phase == 1) {
        l->probe_phase = 2;
        return;
    }
    l->probe_sum_ns += l->window_latency_sum_ns;
    l->probe_samples += l->window_latency_samples;
    l->probe_windows++;
    bool enough =
        l->probe_samples >= PROBE_MEASURE_SAMPLES || l->probe_windows >= PROBE_MEASURE_WINDOWS_MAX;
    if (l->probe_samples < PROBE_MEASURE_SAMPLES / PROBE_EARLY_DIVISOR && !enough) {
        return;
    }
    int64_t latency_ns = l->probe_sum_ns / (int64_t)l->probe_samples;
    // A full proportional fall is plain with fewer samples: step on without waiting for all.
    bool plain_fall =
        l->probe_steps > 0 &&
        (double)latency_ns < (double)l->probe_prev_ns * (l->probe_limit / l->probe_prev_limit);
    if (l->noload_ns == 0) {
        // The start-up measurement: a quarter measurement fixes the first no-load latency (one
        // window's 20 samples can be a few percent off, as much as the tolerance).
        l->noload_ns = latency_ns;
        l->probe_sum_ns = 0;
        l->probe_samples = 0;
        l->probe_windows = 0;
        l->probe_phase = 0;
        return;
    }
    if (!enough && !plain_fall) {
        return;
    }
    l->probe_sum_ns = 0;
    l->probe_samples = 0;
    l->probe_windows = 0;
    bool room = l->probe_steps < PROBE_STEPS_MAX && l->probe_limit > (double)l->config.limit_min;
    if (l->probe_steps == 0) {
        if (room) {
            probe_step_down(l, latency_ns);
            return;
        }
        l->noload_ns = latency_ns;
        l->probe_phase = 0;
        return;
    }
    // Were both steps past the knee, latency would fall in proportion to the (dithered) limits.
    double expected = 1.0 - l->probe_limit / l->probe_prev_limit;
    double fall_needed = PROBE_FALL_SHARE * expected;
    bool fell = (double)latency_ns < (double)l->probe_prev_ns * (1.0 - fall_needed);
    if (fell && room) {
        // Still past the knee: the limit before this step was too high as well.
        l->limit = SL_MIN(l->limit, l->probe_prev_limit);
        probe_step_down(l, latency_ns);
        return;
    }
    l->noload_ns = latency_ns;
    l->probes_total++;
    if (fell || l->probe_steps > 1) {
        // The previous step's limit was past the knee; this one is (about) at it.
        l->limit = clamp_limit(l, SL_MIN(l->limit, l->probe_prev_limit));
    }
    l->probe_phase = 0;
    l->probe_steps = 0;
}

// After a normal window: starts a probe when one is due.
static void
probe_maybe_begin(sl_adaptive_limiter *l, int64_t latency_ns)
{
    if (l->noload_ns <= 0) {
        return;
    }
    double band = CONGESTED_TOLERANCES * l->config.latency_tolerance;
    bool slower = (double)latency_ns > (double)l->noload_ns * (1.0 + band);
    bool faster = (double)latency_ns * (1.0 + band) < (double)l->noload_ns;
    l->congested_streak = slower || faster ? l->congested_streak + 1 : 0;
    l->windows_since_probe++;
    uint32_t interval = l->config.probe_interval_windows;
    uint32_t due = l->probes_total == 0 ? PROBE_FIRST_WINDOWS : interval;
    bool scheduled = due != 0 && l->windows_since_probe >= due;
    if (scheduled && l->limit > l->limit_at_schedule * probe_step_factor(l)) {
        // Still growing since the last look: latency agrees with the no-load figure, and a probe
        // would freeze the growth for its whole measurement. Look again a period later.
        scheduled = false;
        l->windows_since_probe = 0;
        l->limit_at_schedule = l->limit;
    }
    if (scheduled || l->congested_streak >= CONGESTED_WINDOWS) {
        probe_begin(l);
    }
}

// Sets the whole limit in force for the next window. The fraction is dithered across windows
// (error diffusion), so that the average concurrency equals the fractional limit: with a knee of
// 10, a limit of 10.5 is 10 and 11 in turn, not 10 or 11 for good, and a probe step of 9% is 9%.
static void
limit_refresh(sl_adaptive_limiter *l)
{
    double target = l->probe_phase != 0 ? l->probe_limit : l->limit;
    double whole = (double)(uint32_t)target;
    l->dither_acc += target - whole;
    if (l->dither_acc >= 1.0) {
        l->dither_acc -= 1.0;
        whole += 1.0;
    }
    whole = SL_MIN(SL_MAX(whole, (double)l->config.limit_min), (double)l->config.limit_max);
    l->limit_now = (uint32_t)whole;
}

static void
window_close(sl_adaptive_limiter *l)
{
    int64_t latency_ns = 0;
    if (l->window_latency_samples > 0) {
        latency_ns = l->window_latency_sum_ns / (int64_t)l->window_latency_samples;
        l->last_window_latency_ns = latency_ns;
    }
    l->windows_total++;
    l->throttled_total += l->window_throttled;
    // A limit the sender does not use tells nothing about the downstream: do not grow it.
    bool app_limited = (double)l->window_in_flight_max * 2.0 < l->limit;
    if (l->window_throttled > 0) {
        // A throttle is the downstream saying "too much" outright: back off in any state, before
        // any latency is known. A probe starts over from the lower limit: what it measured was an
        // overload.
        l->growth_streak = 0;
        l->decreases_total++;
        l->limit = clamp_limit(l, l->limit * l->config.decrease_factor);
        if (l->probe_phase != 0) {
            probe_begin(l);
        }
    } else if (l->probe_phase != 0) {
        probe_window(l);
    } else if (latency_ns > 0) {
        // Only the first window and probes set the no-load latency. A running minimum of noisy
        // window averages would sink below the true mean and read noise as queueing.
        if (l->noload_ns == 0) {
            l->noload_ns = latency_ns;
        }
        double next = l->config.mode == SL_ADAPTIVE_AIMD
                          ? aimd_next(l, latency_ns, app_limited)
                          : gradient_next(l, latency_ns, app_limited);
        if (next < l->limit && l->config.mode == SL_ADAPTIVE_AIMD) {
            l->decreases_total++;
        }
        l->limit = clamp_limit(l, next);
        probe_maybe_begin(l, latency_ns);
    }
    limit_refresh(l);
    l->window_samples = 0;
    l->window_latency_samples = 0;
    l->window_latency_sum_ns = 0;
    l->window_throttled = 0;
    l->window_in_flight_max = 0;
    SL_DEBUG_ASSERT((limiter_check(l), true));
}

void
sl_adaptive_on_sample(sl_adaptive_limiter *l, int64_t latency_ns, uint32_t in_flight,
                      bool throttled)
{
    SL_ASSERT(l != NULL);
    l->samples_total++;
    l->window_samples++;
    l->window_in_flight_max = SL_MAX(l->window_in_flight_max, in_flight);
    if (throttled) {
        l->window_throttled++;
    } else {
        // A window holds at most SL_ADAPTIVE_LIMIT_MAX (2^20) samples and a probe measurement
        // at most PROBE_MEASURE_WINDOWS_MAX (< 2^5) windows, so with each latency capped at
        // LATENCY_MAX_NS (2^36 ns) every sum stays below 2^61.
        int64_t clamped = latency_ns < 0 ? 0 : SL_MIN(latency_ns, LATENCY_MAX_NS);
        l->window_latency_sum_ns += clamped;
        l->window_latency_samples++;
    }
    uint32_t window = SL_MAX(l->config.window_samples_min, sl_adaptive_limit(l));
    if (l->window_samples >= window) {
        window_close(l);
    }
}

uint32_t
sl_adaptive_limit(const sl_adaptive_limiter *l)
{
    SL_ASSERT(l != NULL);
    return l->limit_now;
}

uint64_t
sl_adaptive_rate_per_s(const sl_adaptive_limiter *l)
{
    SL_ASSERT(l != NULL);
    if (l->last_window_latency_ns <= 0) {
        return 0;
    }
    return (uint64_t)((double)sl_adaptive_limit(l) * 1e9 / (double)l->last_window_latency_ns);
}

void
sl_adaptive_stats_get(const sl_adaptive_limiter *l, sl_adaptive_stats *out)
{
    SL_ASSERT(l != NULL);
    SL_ASSERT(out != NULL);
    *out = (sl_adaptive_stats){
        .limit = sl_adaptive_limit(l),
        .limit_exact = l->limit,
        .noload_latency_ns = l->noload_ns,
        .last_window_latency_ns = l->last_window_latency_ns,
        .windows_total = l->windows_total,
        .samples_total = l->samples_total,
        .throttled_total = l->throttled_total,
        .decreases_total = l->decreases_total,
        .probes_total = l->probes_total,
        .probing = l->probe_phase != 0,
    };
}
