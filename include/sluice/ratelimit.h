// Rate limiters: a token bucket with exact integer arithmetic (rate, burst), and an adaptive
// concurrency limiter that finds what a downstream can sustain from feedback (latency, throttles)
// with AIMD or a gradient rule. Both are pure logic: time comes in as arguments, so they are
// deterministic and testable without sleeping. docs/design/adaptive-limiter.md explains the
// adaptive algorithm and its measured behaviour.
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <sluice/defs.h>

// ---- token bucket -----------------------------------------------------------------------------

// Highest rate: 10^9 tokens per second (one per nanosecond, the clock's resolution).
#define SL_TOKEN_BUCKET_RATE_MAX 1000000000ull
// Largest burst: 2^32 tokens, so that burst * 10^9 nanotokens fits 64 bits with room for a
// refill step. Ceiling: 18 * 2^30 before the level overflows.
#define SL_TOKEN_BUCKET_BURST_MAX (1ull << 32)

// Held in the caller's storage; fields are private. Not thread-safe: one owner at a time (one
// thread, or callers holding their own lock). Tokens are counted in nanotokens (10^-9 token), and
// refilling adds rate_per_s nanotokens per elapsed nanosecond, so no rounding accumulates.
typedef struct sl_token_bucket {
    uint64_t rate_per_s;
    uint64_t burst;
    uint64_t level_nt; // nanotokens; invariant: <= burst * 10^9
    int64_t last_ns;   // time of the last refill; meaningful once started
    bool started;      // the first call anchors time, with a full bucket
} sl_token_bucket;

// Initializes a bucket that refills at rate_per_s tokens per second up to burst tokens; it starts
// full at the time of its first use. Returns SL_OK, or SL_EINVAL when rate_per_s is 0 or above
// SL_TOKEN_BUCKET_RATE_MAX or burst is 0 or above SL_TOKEN_BUCKET_BURST_MAX.
SL_API SL_MUST_USE int sl_token_bucket_init(sl_token_bucket *tb, uint64_t rate_per_s,
                                            uint64_t burst);

// Takes n tokens at time now_ns (any monotonic nanosecond clock; a time earlier than a previous
// call counts as no time passed). Returns SL_OK, or SL_EAGAIN when fewer than n tokens are there:
// nothing is taken and *wait_ns_out (may be NULL) gets the nanoseconds until n will be. Returns
// SL_ETOOBIG when n > burst (it can never succeed). n = 0 succeeds. Never blocks.
SL_API SL_MUST_USE int sl_token_bucket_acquire(sl_token_bucket *tb, uint64_t n, int64_t now_ns,
                                               int64_t *wait_ns_out);

// Whole tokens available at now_ns.
SL_API uint64_t sl_token_bucket_available(sl_token_bucket *tb, int64_t now_ns);

// Changes the rate from now_ns on (tokens earned before now_ns are kept, at the old rate).
// Returns SL_OK or SL_EINVAL for a rate out of range (unchanged).
SL_API SL_MUST_USE int sl_token_bucket_set_rate(sl_token_bucket *tb, uint64_t rate_per_s,
                                                int64_t now_ns);

// ---- adaptive concurrency limiter ---------------------------------------------------------------

// Largest concurrency limit the adaptive limiter will reach.
#define SL_ADAPTIVE_LIMIT_MAX (1u << 20)

typedef enum sl_adaptive_mode {
    // Additive increase by increase_step per window; multiplicative decrease by decrease_factor on
    // a throttle or when the window's latency exceeds the no-load latency by latency_tolerance.
    // Simple and robust; its limit saws between about K*(1+tol)*factor and K*(1+tol).
    SL_ADAPTIVE_AIMD = 1,
    // Gradient: each window moves the limit toward limit * (noload / latency) * (1 + tolerance),
    // which for a queueing downstream is its knee concurrency K times (1 + tolerance) whatever the
    // current limit; it grows geometrically while no queueing shows. Settles without a sawtooth.
    SL_ADAPTIVE_GRADIENT = 2,
} sl_adaptive_mode;

typedef struct sl_adaptive_config {
    sl_adaptive_mode mode;
    uint32_t limit_min;       // >= 1
    uint32_t limit_max;       // >= limit_min, <= SL_ADAPTIVE_LIMIT_MAX
    uint32_t limit_initial;   // within [limit_min, limit_max]
    uint32_t increase_step;   // AIMD: added per uncongested window; >= 1
    double decrease_factor;   // (0, 1): the limit is multiplied by it on a throttle (AIMD also
                              // on latency above tolerance)
    double smoothing;         // gradient: (0, 1], the fraction of the way to the target per window
    double latency_tolerance; // (0, 1]: queueing delay accepted, as a fraction of no-load latency
    uint32_t window_samples_min;     // a window closes after max(this, limit) samples;
                                     // 1 .. SL_ADAPTIVE_LIMIT_MAX
    uint32_t probe_interval_windows; // a probe re-measures the no-load latency after 10 windows,
                                     // then every this many, and when latency stays far from
                                     // it; 0: only in the last case
} sl_adaptive_config;

// Held in the caller's storage; fields are private. Not thread-safe: one owner, or the caller's
// lock (it is a few arithmetic operations per sample).
typedef struct sl_adaptive_limiter {
    sl_adaptive_config config;
    double limit;             // in [limit_min, limit_max]
    uint32_t limit_now;       // the whole limit in force this window (limit or probe, dithered)
    double dither_acc;        // carried fraction, in [0, 1)
    int64_t noload_ns;        // no-load latency: start-up measurement, then probes (0: none yet)
    double probe_limit;       // the limit in force during a probe
    double probe_prev_limit;  // the probe's limit one step before
    int64_t probe_prev_ns;    // latency measured at the previous probe step
    int64_t probe_sum_ns;     // latencies summed in the current probe measurement
    uint32_t probe_samples;   // and their count
    uint32_t probe_windows;   // and the windows they came in
    double limit_at_schedule; // the limit when the scheduled probe was last considered
    uint32_t probe_phase;     // 0: none; 1: draining at probe_limit; 2: measuring (also at start)
    uint32_t probe_steps;     // steps down taken by the current probe
    uint64_t windows_since_probe;
    uint32_t growth_streak;    // gradient: consecutive windows without queueing
    uint32_t congested_streak; // consecutive windows far from no-load latency
    // The window being filled.
    uint32_t window_samples;
    uint32_t window_latency_samples; // samples that carried a latency (not throttled)
    int64_t window_latency_sum_ns;
    uint32_t window_throttled;
    uint32_t window_in_flight_max;
    // Counters.
    int64_t last_window_latency_ns;
    uint64_t windows_total;
    uint64_t samples_total;
    uint64_t throttled_total;
    uint64_t decreases_total;
    uint64_t probes_total;
} sl_adaptive_limiter;

typedef struct sl_adaptive_stats {
    uint32_t limit;                 // what sl_adaptive_limit returns now
    double limit_exact;             // the unrounded limit
    int64_t noload_latency_ns;      // the no-load latency estimate (0: none yet)
    int64_t last_window_latency_ns; // average latency of the last closed window
    uint64_t windows_total;
    uint64_t samples_total;
    uint64_t throttled_total;
    uint64_t decreases_total; // multiplicative decreases (throttles; AIMD latency too)
    uint64_t probes_total;
    bool probing;
} sl_adaptive_stats;

// Fills cfg with defaults for mode: limits 1..SL_ADAPTIVE_LIMIT_MAX starting at 10, step 1,
// decrease 0.9, smoothing 0.3, tolerance 0.05 (gradient) or 0.1 (AIMD), windows of at least 20
// samples, a probe every 1000 windows.
SL_API void sl_adaptive_config_default(sl_adaptive_config *cfg, sl_adaptive_mode mode);

// Initializes the limiter. Returns SL_OK, or SL_EINVAL for a config out of range.
SL_API SL_MUST_USE int sl_adaptive_init(sl_adaptive_limiter *l, const sl_adaptive_config *cfg);

// Feeds one completed request: its latency (send to response), the number of requests in flight
// when it was sent (or completed; used to tell a limit that is not being used), and whether the
// downstream throttled or dropped it (its latency is then ignored). Negative latencies count as 0,
// latencies above 2^36 ns (about 69 s) as 2^36 ns. Never blocks.
SL_API void sl_adaptive_on_sample(sl_adaptive_limiter *l, int64_t latency_ns, uint32_t in_flight,
                                  bool throttled);

// The concurrency limit: how many requests may be in flight now. >= limit_min.
SL_API uint32_t sl_adaptive_limit(const sl_adaptive_limiter *l);

// The send rate the limit stands for: limit / (last window's average latency), in requests per
// second; 0 before the first window closes. To drive a token bucket in rate mode.
SL_API uint64_t sl_adaptive_rate_per_s(const sl_adaptive_limiter *l);

// Copies the limiter's state and counters.
SL_API void sl_adaptive_stats_get(const sl_adaptive_limiter *l, sl_adaptive_stats *stats_out);

#endif
