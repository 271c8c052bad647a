// Admission control decisions and max-min fair shares (see admission.h). Pressure is the fill of
// the most constrained budget; credit shrinks linearly from shrink_from_pct to delay_acks_from_pct,
// stays at the minimum while acks are delayed in proportion to the remaining headroom, and only a
// full budget throttles, with a retry-after computed from how long the excess takes to drain.
#include "broker/admission.h"

#include <math.h>

#include "core/util.h"

_Static_assert(SL_ADMIT_REASON_QUOTA < 8, "reasons fit in a byte with room to spare");

void
sl_admission_config_default(sl_admission_config *c)
{
    c->shrink_from_pct = 80;
    c->delay_acks_from_pct = 95;
    c->window_min_bytes = 64u * 1024;
    c->window_max_bytes = 16u * 1024 * 1024;
    c->ack_delay_max_ms = 50;
    c->retry_after_min_ms = 5;
    c->retry_after_max_ms = 5000;
}

uint64_t
sl_admission_window_for(const sl_admission_config *c, double rate_bytes_per_s,
                        int64_t round_trip_us)
{
    double rtt_s = (double)SL_MAX(round_trip_us, 0) / 1e6;
    double want = 2.0 * rate_bytes_per_s * rtt_s;
    if (!(want > (double)c->window_min_bytes)) { // also catches NaN
        return c->window_min_bytes;
    }
    if (want >= (double)c->window_max_bytes) {
        return c->window_max_bytes;
    }
    return (uint64_t)want;
}

static int64_t
clamp_ms(double ms, int64_t lo, int64_t hi)
{
    if (!(ms > (double)lo)) {
        return lo;
    }
    if (ms >= (double)hi) {
        return hi;
    }
    return (int64_t)ceil(ms);
}

void
sl_admission_decide(const sl_admission_config *c, const sl_admission_input *in,
                    sl_admission_decision *out)
{
    SL_ASSERT(c->shrink_from_pct < c->delay_acks_from_pct);
    SL_ASSERT(c->delay_acks_from_pct <= 100);
    SL_ASSERT(in->constraint_count <= SL_ADMISSION_CONSTRAINTS_MAX);
    double pressure = 0.0;
    const sl_admission_constraint *worst = NULL;
    for (size_t i = 0; i < in->constraint_count; i++) {
        const sl_admission_constraint *k = &in->constraints[i];
        if (k->capacity == 0) {
            continue;
        }
        double p = (double)k->used / (double)k->capacity;
        if (worst == NULL || p > pressure) {
            pressure = p;
            worst = k;
        }
    }
    double shrink_from = c->shrink_from_pct / 100.0;
    double delay_from = c->delay_acks_from_pct / 100.0;
    uint64_t window = sl_admission_window_for(c, in->produce_bytes_per_s, in->round_trip_us);
    out->pressure = pressure;
    out->reason = pressure >= shrink_from && worst != NULL ? worst->reason : SL_ADMIT_REASON_NONE;
    out->ack_delay_ms = 0;
    out->retry_after_ms = 0;
    if (pressure < shrink_from) {
        out->level = SL_ADMIT_GRANT;
        out->window_bytes = window;
    } else if (pressure < delay_from) {
        // Linear from the full window at shrink_from down to the minimum at delay_from.
        double keep = (delay_from - pressure) / (delay_from - shrink_from);
        double w = (double)c->window_min_bytes + keep * (double)(window - c->window_min_bytes);
        out->level = SL_ADMIT_SHRINK;
        out->window_bytes = (uint64_t)w;
    } else if (pressure < 1.0) {
        out->level = SL_ADMIT_DELAY_ACKS;
        out->window_bytes = c->window_min_bytes;
        double over = (pressure - delay_from) / (1.0 - delay_from);
        out->ack_delay_ms = clamp_ms(over * (double)c->ack_delay_max_ms, 1, c->ack_delay_max_ms);
    } else {
        // Full: the excess over the shrink point has to drain before credit is worth granting.
        double excess = (double)worst->used - shrink_from * (double)worst->capacity;
        double ms = in->drain_bytes_per_s > 0.0 ? excess / in->drain_bytes_per_s * 1000.0
                                                : (double)c->retry_after_max_ms;
        if (worst->reason == SL_ADMIT_REASON_MAX_LAG) {
            // used/capacity are milliseconds of lag: the excess is already a time.
            ms = excess;
        }
        out->level = SL_ADMIT_THROTTLE;
        out->window_bytes = 0;
        out->retry_after_ms = clamp_ms(ms, c->retry_after_min_ms, c->retry_after_max_ms);
    }
}

void
sl_fair_share(uint64_t capacity, const uint64_t *demands, size_t n, uint64_t *shares)
{
    SL_ASSERT(n <= SL_FAIR_SHARE_MAX);
    // Water-filling without sorting: each pass gives every unsatisfied demand an equal slice of
    // what is left; demands that fit are settled, and the loop ends when none settles (n passes at
    // most).
    uint64_t left = capacity;
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        shares[i] = 0;
        open += demands[i] > 0;
    }
    for (size_t pass = 0; pass < n && open > 0 && left > 0; pass++) {
        uint64_t level = left / open;
        size_t settled = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t want = demands[i] - shares[i];
            if (want > 0 && want <= level) {
                shares[i] = demands[i];
                left -= want;
                settled++;
            }
        }
        open -= settled;
        if (settled == 0) {
            // Everyone left wants more than the level: split evenly, remainder to the first.
            uint64_t rest = left - level * open;
            for (size_t i = 0; i < n; i++) {
                if (demands[i] > shares[i]) {
                    uint64_t extra = rest > 0 ? 1 : 0;
                    shares[i] += level + extra;
                    rest -= extra;
                }
            }
            left = 0;
        }
    }
}

const char *
sl_admission_reason_name(sl_admission_reason reason)
{
    switch (reason) {
    case SL_ADMIT_REASON_NONE:
        return "none";
    case SL_ADMIT_REASON_MEMORY_BUDGET:
        return "memory_budget";
    case SL_ADMIT_REASON_DISK_BUDGET:
        return "disk_budget";
    case SL_ADMIT_REASON_BACKLOG:
        return "backlog";
    case SL_ADMIT_REASON_MAX_LAG:
        return "max_lag";
    case SL_ADMIT_REASON_QUOTA:
        return "quota";
    }
    return "unknown";
}
