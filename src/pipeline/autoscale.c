// The DS2-style autoscaler: per interval, every stage's true rate (records per busy second per
// instance) and selectivity are measured, the sources' offered rates are walked down the DAG in
// topological order, and each stage gets ceil(required input / (true rate * utilization))
// instances, damped by a tolerance band, a two-interval confirmation and a cool-down. The pure
// core is first; the runtime glue (sampling, rescaling, reporting) follows it.
#include "pipeline/autoscale.h"

#include <math.h>
#include <stdio.h>

#include <sluice/error.h>

#include "core/util.h"

// Reliable intervals pooled into a true rate estimate (records over busy time of all of them):
// with 4, the estimate's noise is half a single interval's; the per-record cost of a stage rarely
// changes, so the lag costs little, and a step in load does not lag at all (load is not in it).
#define AUTOSCALE_POOL_INTERVALS 4u
_Static_assert(SL_AUTOSCALE_WARMUP_INTERVALS <= AUTOSCALE_POOL_INTERVALS, "warm-up fits the pool");
// Guards ceil() against values a rounding error put just above an integer (3.0000000001).
#define AUTOSCALE_CEIL_EPSILON 1e-9

// What the autoscaler remembers of a stage between intervals.
typedef struct stage_memory {
    double true_rate; // last reliable records per busy second per instance; 0: unknown
    double pool_records[AUTOSCALE_POOL_INTERVALS]; // last reliable measurements, a ring
    double pool_busy_s[AUTOSCALE_POOL_INTERVALS];
    uint32_t pool_next;  // ring slot the next reliable measurement goes to
    uint32_t pool_count; // reliable measurements so far, up to AUTOSCALE_POOL_INTERVALS
    double selectivity;  // last reliable out/in ratio; < 0: unknown
    sl_autoscale_action pending_action; // proposal of the previous interval, KEEP: none
    uint32_t pending_to;                // its target parallelism
    int64_t changed_ns;                 // last UP/DOWN applied; INT64_MIN: never
    bool saturated;                     // AT_MAX already reported for the current overload episode
} stage_memory;

struct sl_autoscaler {
    sl_pipe_autoscale_config cfg; // defaults applied
    uint32_t stage_count;
    stage_memory *stages; // stage_count entries
};

// ---- formatting -------------------------------------------------------------------------------

// Writes a non-negative rate as a whole number with thousands separators ("18,000").
static void
format_count(char *buf, size_t size, double value)
{
    SL_ASSERT(size >= 32);
    if (!(value >= 0.0) || value > 1e18) {
        snprintf(buf, size, "%s", value > 1e18 ? "inf" : "0");
        return;
    }
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)llround(value));
    size_t out = 0;
    for (int i = 0; i < n && out + 2 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            buf[out++] = ',';
        }
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
}

// ---- configuration ----------------------------------------------------------------------------

static int
config_resolve(const sl_pipe_autoscale_config *in, sl_pipe_autoscale_config *out)
{
    *out = *in;
    if (out->interval_ms == 0) {
        out->interval_ms = SL_AUTOSCALE_INTERVAL_MS_DEFAULT;
    }
    if (out->interval_ms < SL_AUTOSCALE_INTERVAL_MS_MIN) {
        return SL_EINVAL;
    }
    if (out->cooldown_ms == 0) {
        out->cooldown_ms = SL_AUTOSCALE_COOLDOWN_MS_DEFAULT;
    }
    if (out->target_utilization == 0.0) {
        out->target_utilization = SL_AUTOSCALE_UTILIZATION_DEFAULT;
    }
    if (!(out->target_utilization >= SL_AUTOSCALE_UTILIZATION_MIN &&
          out->target_utilization <= 1.0)) {
        return SL_EINVAL;
    }
    if (out->tolerance == 0.0) {
        out->tolerance = SL_AUTOSCALE_TOLERANCE_DEFAULT;
    }
    if (!(out->tolerance > 0.0 && out->tolerance <= SL_AUTOSCALE_TOLERANCE_MAX)) {
        return SL_EINVAL;
    }
    return SL_OK;
}

int
sl__autoscaler_new(const sl_pipe_autoscale_config *cfg, uint32_t stage_count, sl_autoscaler **out)
{
    SL_ASSERT(cfg != NULL);
    SL_ASSERT(out != NULL);
    if (stage_count == 0 || stage_count > SL_AUTOSCALE_STAGES_MAX) {
        return SL_ERANGE;
    }
    sl_pipe_autoscale_config resolved;
    int err = config_resolve(cfg, &resolved);
    if (err != SL_OK) {
        return err;
    }
    sl_autoscaler *a = sl_calloc(1, sizeof(*a));
    if (a == NULL) {
        return SL_ENOMEM;
    }
    a->stages = sl_calloc(stage_count, sizeof(*a->stages));
    if (a->stages == NULL) {
        sl_free(a, sizeof(*a));
        return SL_ENOMEM;
    }
    a->cfg = resolved;
    a->stage_count = stage_count;
    for (uint32_t i = 0; i < stage_count; i++) {
        a->stages[i].selectivity = -1.0;
        a->stages[i].changed_ns = INT64_MIN;
    }
    *out = a;
    return SL_OK;
}

void
sl__autoscaler_free(sl_autoscaler *a)
{
    if (a == NULL) {
        return;
    }
    sl_free(a->stages, (size_t)a->stage_count * sizeof(*a->stages));
    sl_free(a, sizeof(*a));
}

const sl_pipe_autoscale_config *
sl__autoscaler_config(const sl_autoscaler *a)
{
    return &a->cfg;
}

// ---- the model --------------------------------------------------------------------------------

static bool
sample_valid(const sl_autoscale_sample *s, uint32_t index)
{
    if (!(s->window_s > 0.0) || s->upstream_count > SL_AUTOSCALE_UPSTREAM_MAX) {
        return false;
    }
    if (s->parallelism_min == 0 || s->parallelism_min > s->parallelism_max || s->parallelism == 0) {
        return false;
    }
    for (uint32_t u = 0; u < s->upstream_count; u++) {
        if (s->upstream[u] >= index) {
            return false; // not topological: the walk would read a rate not yet computed
        }
    }
    return true;
}

// Updates the stage's remembered true rate and selectivity from a sample that measured enough.
static void
stage_measure(stage_memory *m, const sl_autoscale_sample *s)
{
    if (s->is_source || !(s->records_in >= SL_AUTOSCALE_RECORDS_MIN)) {
        return;
    }
    m->selectivity = s->records_out / s->records_in;
    if (!(s->busy_s >= SL_AUTOSCALE_BUSY_MIN_S)) {
        return;
    }
    m->pool_records[m->pool_next] = s->records_in;
    m->pool_busy_s[m->pool_next] = s->busy_s;
    m->pool_next = (m->pool_next + 1) % AUTOSCALE_POOL_INTERVALS;
    m->pool_count = SL_MIN(m->pool_count + 1, AUTOSCALE_POOL_INTERVALS);
    double records = 0.0;
    double busy_s = 0.0;
    for (uint32_t k = 0; k < AUTOSCALE_POOL_INTERVALS; k++) {
        records += m->pool_records[k];
        busy_s += m->pool_busy_s[k];
    }
    m->true_rate = records / busy_s;
}

// The rate a source offers: its configured rate, or, when unknown, what it emitted per second it
// was not blocked by downstream (DS2's "true output rate" of a source).
static double
source_offered(const sl_autoscale_sample *s)
{
    if (s->offered_per_s > 0.0) {
        return s->offered_per_s;
    }
    double window_all_s = s->window_s * (double)s->parallelism;
    double free_s = window_all_s - s->backpressured_s;
    double factor = SL_AUTOSCALE_SOURCE_EXTRAPOLATION_MAX;
    if (free_s > window_all_s / SL_AUTOSCALE_SOURCE_EXTRAPOLATION_MAX) {
        factor = window_all_s / free_s;
    }
    return s->records_out / s->window_s * factor;
}

// Fills the rate walk of one stage: required input, selectivity, needed instances, capacity.
static void
stage_model(const sl_autoscaler *a, const sl_autoscale_sample *samples, uint32_t i,
            sl_autoscale_verdict *verdicts)
{
    const sl_autoscale_sample *s = &samples[i];
    const stage_memory *m = &a->stages[i];
    sl_autoscale_verdict *v = &verdicts[i];
    if (s->is_source) {
        v->required_in_per_s = source_offered(s);
        v->required_out_per_s = v->required_in_per_s;
        v->selectivity = 1.0;
        return;
    }
    double required = 0.0;
    for (uint32_t u = 0; u < s->upstream_count; u++) {
        required += verdicts[s->upstream[u]].required_out_per_s;
    }
    v->required_in_per_s = required;
    v->selectivity = m->selectivity >= 0.0 ? m->selectivity : 1.0;
    v->estimated = m->pool_count >= SL_AUTOSCALE_WARMUP_INTERVALS && m->true_rate > 0.0;
    v->decision.true_rate_per_instance = m->true_rate;
    double passed = required;
    if (v->estimated) {
        v->needed_instances = required / (m->true_rate * a->cfg.target_utilization);
        // A stage held at max passes on only what it can process: size downstream for that.
        double capacity = m->true_rate * (double)s->parallelism_max;
        if (required > capacity) {
            v->backpressure_per_s = required - capacity;
            passed = capacity;
        }
    }
    v->required_out_per_s = passed * v->selectivity;
}

static uint32_t
clamp_parallelism(double want, const sl_autoscale_sample *s)
{
    double hi = (double)SL_MIN(s->parallelism_max, SL_AUTOSCALE_PARALLELISM_MAX);
    if (want > hi) {
        return (uint32_t)hi;
    }
    if (want < (double)s->parallelism_min) {
        return s->parallelism_min;
    }
    return (uint32_t)want;
}

// What the model alone proposes (before confirmation and cool-down). Hysteresis: up only when
// the need is beyond the tolerance band above the current count, down only to a count that still
// has the tolerance as headroom, so a need that wobbles around an integer does not flap.
static sl_autoscale_action
stage_propose(const sl_autoscaler *a, const sl_autoscale_sample *s, const sl_autoscale_verdict *v,
              uint32_t *to_out)
{
    double tol = a->cfg.tolerance;
    double cur = (double)s->parallelism;
    *to_out = s->parallelism;
    if (s->parallelism < s->parallelism_min || s->parallelism > s->parallelism_max) {
        *to_out = clamp_parallelism(cur, s); // bounds changed under it: back inside first
        return *to_out > s->parallelism ? SL_AUTOSCALE_UP : SL_AUTOSCALE_DOWN;
    }
    if (v->needed_instances > cur * (1.0 + tol)) {
        uint32_t to = clamp_parallelism(ceil(v->needed_instances - AUTOSCALE_CEIL_EPSILON), s);
        if (to > s->parallelism) {
            *to_out = to;
            return SL_AUTOSCALE_UP;
        }
    }
    if (v->backpressure_per_s > 0.0 && s->parallelism >= s->parallelism_max) {
        return SL_AUTOSCALE_AT_MAX;
    }
    uint32_t down =
        clamp_parallelism(ceil(v->needed_instances * (1.0 + tol) - AUTOSCALE_CEIL_EPSILON), s);
    if (down < s->parallelism) {
        *to_out = down;
        return SL_AUTOSCALE_DOWN;
    }
    return SL_AUTOSCALE_KEEP;
}

// Fills v->decision.reason with the evidence: "busy 97%, true rate 4,900/s per instance, needs
// 18,000/s -> 4 instances", plus the overload that stays backpressure at max.
static void
verdict_reason(const sl_autoscale_sample *s, sl_autoscale_verdict *v, uint32_t to)
{
    char rate[32];
    char need[32];
    char over[32];
    format_count(rate, sizeof(rate), v->decision.true_rate_per_instance);
    format_count(need, sizeof(need), v->required_in_per_s);
    format_count(over, sizeof(over), v->backpressure_per_s);
    double busy_pct = 100.0 * s->busy_s / (s->window_s * (double)s->parallelism);
    char *r = v->decision.reason;
    size_t size = sizeof(v->decision.reason);
    int n = snprintf(r, size, "busy %.0f%%, true rate %s/s per instance, needs %s/s -> %u %s",
                     busy_pct, rate, need, to, to == 1 ? "instance" : "instances");
    if (v->backpressure_per_s > 0.0 && to >= s->parallelism_max && n > 0 && (size_t)n < size) {
        snprintf(r + n, size - (size_t)n, " (max); %s/s stays backpressure", over);
    }
}

// The model's proposal must hold for two consecutive intervals; the change applied is the
// smaller of the two, so one noisy sample neither triggers nor inflates a change.
static sl_autoscale_action
stage_confirm(stage_memory *m, sl_autoscale_action action, uint32_t *to)
{
    sl_autoscale_action previous = m->pending_action;
    uint32_t previous_to = m->pending_to;
    m->pending_action = action;
    m->pending_to = *to;
    if (action == SL_AUTOSCALE_KEEP || previous != action) {
        return SL_AUTOSCALE_KEEP;
    }
    if (action == SL_AUTOSCALE_UP) {
        *to = SL_MIN(*to, previous_to);
    } else if (action == SL_AUTOSCALE_DOWN) {
        *to = SL_MAX(*to, previous_to);
    }
    return action;
}

// Turns the model's numbers for one (non-source) stage into an action, honouring warm-up,
// fixed bounds, cool-down, confirmation and the once-per-episode report at max.
static void
stage_decide(sl_autoscaler *a, const sl_autoscale_sample *s, uint32_t i, int64_t now_ns,
             sl_autoscale_verdict *v)
{
    stage_memory *m = &a->stages[i];
    char *reason = v->decision.reason;
    size_t size = sizeof(v->decision.reason);
    if (s->parallelism_min == s->parallelism_max) {
        snprintf(reason, size, "fixed parallelism %u", s->parallelism);
        return;
    }
    if (!v->estimated) {
        snprintf(reason, size, "warm-up: %.0f ms busy, %.0f records measured so far",
                 s->busy_s * 1e3, s->records_in);
        return;
    }
    if (v->backpressure_per_s <= 0.0) {
        m->saturated = false;
    }
    int64_t cooldown_ns = (int64_t)a->cfg.cooldown_ms * 1000000;
    if (m->changed_ns != INT64_MIN && now_ns - m->changed_ns < cooldown_ns) {
        m->pending_action = SL_AUTOSCALE_KEEP;
        snprintf(reason, size, "cool-down: %.1f s left",
                 (double)(cooldown_ns - (now_ns - m->changed_ns)) / 1e9);
        return;
    }
    uint32_t to = s->parallelism;
    sl_autoscale_action proposed = stage_propose(a, s, v, &to);
    sl_autoscale_action action = stage_confirm(m, proposed, &to);
    verdict_reason(s, v, to);
    if (action == SL_AUTOSCALE_KEEP && proposed != SL_AUTOSCALE_KEEP) {
        // Keep the evidence but say that it waits for a second interval.
        char evidence[sizeof(v->decision.reason)];
        sl__strlcpy(evidence, reason, sizeof(evidence));
        snprintf(reason, size, "unconfirmed: %.130s", evidence);
    }
    if (action == SL_AUTOSCALE_AT_MAX) {
        if (m->saturated) {
            action = SL_AUTOSCALE_KEEP;
        }
        m->saturated = true;
    }
    if (action == SL_AUTOSCALE_UP || action == SL_AUTOSCALE_DOWN) {
        m->changed_ns = now_ns;
        m->pending_action = SL_AUTOSCALE_KEEP;
        m->saturated = v->backpressure_per_s > 0.0;
    }
    v->action = action;
    v->decision.to = to;
}

int
sl__autoscaler_decide(sl_autoscaler *a, const sl_autoscale_sample *samples, uint32_t stage_count,
                      int64_t now_ns, sl_autoscale_verdict *verdicts)
{
    SL_ASSERT(a != NULL);
    SL_ASSERT(samples != NULL);
    SL_ASSERT(verdicts != NULL);
    if (stage_count != a->stage_count) {
        return SL_EINVAL;
    }
    for (uint32_t i = 0; i < stage_count; i++) {
        if (!sample_valid(&samples[i], i)) {
            return SL_EINVAL;
        }
    }
    for (uint32_t i = 0; i < stage_count; i++) {
        const sl_autoscale_sample *s = &samples[i];
        sl_autoscale_verdict *v = &verdicts[i];
        *v = (sl_autoscale_verdict){0};
        v->decision.stage = s->name;
        v->decision.from = s->parallelism;
        v->decision.to = s->parallelism;
        stage_measure(&a->stages[i], s);
        stage_model(a, samples, i, verdicts);
        v->decision.offered_per_s = v->required_in_per_s;
        if (s->is_source) {
            snprintf(v->decision.reason, sizeof(v->decision.reason), "source");
            continue;
        }
        stage_decide(a, s, i, now_ns, v);
    }
    return SL_OK;
}
