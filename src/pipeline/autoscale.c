// The DS2-style autoscaler: per interval, every stage's true rate (records per busy second per
// instance) and selectivity are measured, the sources' offered rates are walked down the DAG in
// topological order, and each stage gets ceil(required input / (true rate * utilization))
// instances, damped by a tolerance band, a two-interval confirmation and a cool-down. The pure
// core is first; the runtime glue (sampling, rescaling, reporting) follows it.
#include "pipeline/autoscale.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "core/metrics_internal.h"
#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Reliable intervals pooled into a true rate estimate (records over busy time of all of them):
// with 4, the estimate's noise is half a single interval's; the per-record cost of a stage rarely
// changes, so the lag costs little, and a step in load does not lag at all (load is not in it).
#define AUTOSCALE_POOL_INTERVALS 4u
_Static_assert(SL_AUTOSCALE_WARMUP_INTERVALS <= AUTOSCALE_POOL_INTERVALS, "warm-up fits the pool");
// The controller ticks about once a second, a little late or early: a window this much short of
// interval_ms is complete (else a 1 s interval would often wait for the next tick).
#define AUTOSCALE_TICK_SLACK_NS INT64_C(250000000)
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
    sl__autoscale_action pending_action; // proposal of the previous interval, KEEP: none
    int64_t changed_ns;                  // last UP/DOWN applied; INT64_MIN: never
    bool saturated;                      // AT_MAX already reported for the current overload episode
} stage_memory;

struct sl__autoscaler {
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
sl__autoscaler_new(const sl_pipe_autoscale_config *cfg, uint32_t stage_count, sl__autoscaler **out)
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
    sl__autoscaler *a = sl_calloc(1, sizeof(*a));
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
sl__autoscaler_free(sl__autoscaler *a)
{
    if (a == NULL) {
        return;
    }
    sl_free(a->stages, (size_t)a->stage_count * sizeof(*a->stages));
    sl_free(a, sizeof(*a));
}

const sl_pipe_autoscale_config *
sl__autoscaler_config(const sl__autoscaler *a)
{
    return &a->cfg;
}

// ---- the model --------------------------------------------------------------------------------

static bool
sample_valid(const sl__autoscale_sample *s, uint32_t index)
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
stage_measure(stage_memory *m, const sl__autoscale_sample *s)
{
    if (s->is_source || !(s->records_in >= SL_AUTOSCALE_RECORDS_MIN)) {
        return;
    }
    // Per edge: the walk adds up what each upstream stage sends to one stage.
    m->selectivity = s->records_out / (double)SL_MAX(s->out_edges, 1u) / s->records_in;
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
source_offered(const sl__autoscale_sample *s)
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
    return s->records_out / (double)SL_MAX(s->out_edges, 1u) / s->window_s * factor;
}

// Fills the rate walk of one stage: required input, selectivity, needed instances, capacity.
static void
stage_model(const sl__autoscaler *a, const sl__autoscale_sample *samples, uint32_t i,
            sl__autoscale_verdict *verdicts)
{
    const sl__autoscale_sample *s = &samples[i];
    const stage_memory *m = &a->stages[i];
    sl__autoscale_verdict *v = &verdicts[i];
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
clamp_parallelism(double want, const sl__autoscale_sample *s)
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
static sl__autoscale_action
stage_propose(const sl__autoscaler *a, const sl__autoscale_sample *s,
              const sl__autoscale_verdict *v, uint32_t *to_out)
{
    double tol = a->cfg.tolerance;
    double cur = (double)s->parallelism;
    *to_out = s->parallelism;
    if (s->parallelism < s->parallelism_min || s->parallelism > s->parallelism_max) {
        *to_out = clamp_parallelism(cur, s); // bounds changed under it: back inside first
        return *to_out > s->parallelism ? SL__AUTOSCALE_UP : SL__AUTOSCALE_DOWN;
    }
    if (v->needed_instances > cur * (1.0 + tol)) {
        uint32_t to = clamp_parallelism(ceil(v->needed_instances - AUTOSCALE_CEIL_EPSILON), s);
        if (to > s->parallelism) {
            *to_out = to;
            return SL__AUTOSCALE_UP;
        }
    }
    if (v->backpressure_per_s > 0.0 && s->parallelism >= s->parallelism_max) {
        return SL__AUTOSCALE_AT_MAX;
    }
    uint32_t down =
        clamp_parallelism(ceil(v->needed_instances * (1.0 + tol) - AUTOSCALE_CEIL_EPSILON), s);
    if (down < s->parallelism) {
        *to_out = down;
        return SL__AUTOSCALE_DOWN;
    }
    return SL__AUTOSCALE_KEEP;
}

// Fills v->decision.reason with the evidence: "busy 97%, true rate 4,900/s per instance, needs
// 18,000/s -> 4 instances", plus the overload that stays backpressure at max.
static void
verdict_reason(const sl__autoscale_sample *s, sl__autoscale_verdict *v, uint32_t to)
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

// The model's proposal must point the same way in two consecutive intervals, so one noisy
// interval does not trigger a change. The latest target is applied: after a step in load the
// earlier interval straddles the step and under-states it (taking the smaller of the two made a
// step take two decisions).
static sl__autoscale_action
stage_confirm(stage_memory *m, sl__autoscale_action action)
{
    sl__autoscale_action previous = m->pending_action;
    m->pending_action = action;
    if (action == SL__AUTOSCALE_KEEP || previous != action) {
        return SL__AUTOSCALE_KEEP;
    }
    return action;
}

// Turns the model's numbers for one (non-source) stage into an action, honouring warm-up,
// fixed bounds, cool-down, confirmation and the once-per-episode report at max.
static void
stage_decide(sl__autoscaler *a, const sl__autoscale_sample *s, uint32_t i, int64_t now_ns,
             sl__autoscale_verdict *v)
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
        m->pending_action = SL__AUTOSCALE_KEEP;
        snprintf(reason, size, "cool-down: %.1f s left",
                 (double)(cooldown_ns - (now_ns - m->changed_ns)) / 1e9);
        return;
    }
    uint32_t to = s->parallelism;
    sl__autoscale_action proposed = stage_propose(a, s, v, &to);
    sl__autoscale_action action = stage_confirm(m, proposed);
    verdict_reason(s, v, to);
    if (action == SL__AUTOSCALE_KEEP && proposed != SL__AUTOSCALE_KEEP) {
        // Keep the evidence but say that it waits for a second interval.
        char evidence[sizeof(v->decision.reason)];
        sl__strlcpy(evidence, reason, sizeof(evidence));
        snprintf(reason, size, "unconfirmed: %.130s", evidence);
    }
    if (action == SL__AUTOSCALE_AT_MAX) {
        if (m->saturated) {
            action = SL__AUTOSCALE_KEEP;
        }
        m->saturated = true;
    }
    if (action == SL__AUTOSCALE_UP || action == SL__AUTOSCALE_DOWN) {
        m->changed_ns = now_ns;
        m->pending_action = SL__AUTOSCALE_KEEP;
        m->saturated = v->backpressure_per_s > 0.0;
    }
    v->action = action;
    v->decision.to = to;
}

int
sl__autoscaler_decide(sl__autoscaler *a, const sl__autoscale_sample *samples, uint32_t stage_count,
                      int64_t now_ns, sl__autoscale_verdict *verdicts)
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
        const sl__autoscale_sample *s = &samples[i];
        sl__autoscale_verdict *v = &verdicts[i];
        *v = (sl__autoscale_verdict){0};
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

// ---- runtime glue -----------------------------------------------------------------------------

enum {
    DIRECTION_UP = 0,
    DIRECTION_DOWN = 1,
    DIRECTION_MAX = 2, // at max: overload stays backpressure
    DIRECTION_COUNT = 3,
};

static const char *const direction_names[DIRECTION_COUNT] = {"up", "down", "max"};

// A stage's totals when the observation window started.
typedef struct window_base {
    uint64_t records_in;
    uint64_t records_out;
    uint64_t busy_ns; // summed over the instances running then
    uint64_t backpressured_ns;
} window_base;

// The autoscaler of one running pipeline: the core, the stages in topological order, and
// each stage's totals when the current observation window started.
typedef struct autoscale_state {
    sl__autoscaler *core;
    uint32_t count;
    sl_pipe_stage *stages[SL_PIPE_STAGES_MAX];
    sl__autoscale_sample samples[SL_PIPE_STAGES_MAX];
    sl__autoscale_verdict verdicts[SL_PIPE_STAGES_MAX];
    bool scalable[SL_PIPE_STAGES_MAX]; // an operator or sink with min < max
    window_base base[SL_PIPE_STAGES_MAX];
    int64_t window_start_ns;
    sl_counter decisions[SL_PIPE_STAGES_MAX][DIRECTION_COUNT];
    uint64_t family_id;
    uint64_t series_ids[SL_PIPE_STAGES_MAX * DIRECTION_COUNT];
    uint32_t series_count;
    sl_metrics_registry *registry;
    bool failed; // could not bind (logged once): the pipeline runs unscaled
} autoscale_state;

// Takes the stages in topological order and their upstream indices (first tick: the controller
// runs after start, when the order is known).
static int
state_bind(autoscale_state *st, sl_pipeline *p)
{
    uint32_t count = sl__pipeline_stage_count(p);
    if (count == 0 || count > SL_PIPE_STAGES_MAX) {
        return SL_ERANGE;
    }
    for (uint32_t i = 0; i < count; i++) {
        st->stages[i] = sl__pipeline_stage_at(p, i);
    }
    for (uint32_t i = 0; i < count; i++) {
        sl_pipe_stage *up[SL_AUTOSCALE_UPSTREAM_MAX];
        uint32_t n = sl__pipe_stage_upstream(st->stages[i], up, SL_AUTOSCALE_UPSTREAM_MAX);
        if (n > SL_AUTOSCALE_UPSTREAM_MAX) {
            return SL_ERANGE;
        }
        sl__autoscale_sample *s = &st->samples[i];
        s->upstream_count = 0;
        for (uint32_t u = 0; u < n; u++) {
            for (uint32_t j = 0; j < i; j++) {
                if (st->stages[j] == up[u]) {
                    s->upstream[s->upstream_count++] = j;
                }
            }
        }
        const sl_pipe_stage_config *cfg = &st->stages[i]->cfg;
        s->name = st->stages[i]->name;
        s->is_source = sl__pipe_stage_kind(st->stages[i]) == SL__PIPE_SOURCE;
        s->out_edges = st->stages[i]->out_count;
        s->parallelism_min = cfg->parallelism_min;
        s->parallelism_max = cfg->parallelism_max;
        sl__pipe_kind kind = sl__pipe_stage_kind(st->stages[i]);
        bool op = kind == SL__PIPE_PROCESS || kind == SL__PIPE_FILTER || kind == SL__PIPE_WINDOW;
        st->scalable[i] = op && s->parallelism_min >= 1 && s->parallelism_max > s->parallelism_min;
    }
    st->count = count;
    return sl__autoscaler_new(&p->cfg.autoscale, count, &st->core);
}

// Busy and backpressured nanoseconds of the stage's running instances since they started, read
// from their time accounts (exact, unlike the per-second figures, whose windows are not aligned
// with the controller's). The stats mutex keeps a rescale from freeing an account meanwhile.
static void
stage_times(sl_pipe_stage *s, int64_t now_ns, uint64_t *busy_ns, uint64_t *backpressured_ns)
{
    *busy_ns = 0;
    *backpressured_ns = 0;
    pthread_mutex_lock(&s->pipeline->stats_mutex);
    uint32_t n = sl__pipe_stage_parallelism(s);
    for (uint32_t i = 0; i < n && i < SL_PIPE_PARALLELISM_MAX; i++) {
        sl_timeacct_stats ts;
        const sl_timeacct *ta = s->instances[i].time;
        if (ta != NULL && sl_timeacct_read(ta, now_ns, &ts) == SL_OK) {
            *busy_ns += ts.total_ns[SL_TIME_BUSY];
            *backpressured_ns += ts.total_ns[SL_TIME_BACKPRESSURED];
        }
    }
    pthread_mutex_unlock(&s->pipeline->stats_mutex);
}

// Difference of two totals in seconds; 0 if the total went down (an instance was retired by a
// rescale the autoscaler did not make: the window then says nothing).
static double
delta_s(uint64_t now, uint64_t base, double unit)
{
    return now >= base ? (double)(now - base) * unit : 0.0;
}

// Fills every stage's sample with what happened since the window started.
static void
state_measure(autoscale_state *st, int64_t now_ns)
{
    for (uint32_t i = 0; i < st->count; i++) {
        sl_pipe_stage_stats stats;
        sl__pipe_stage_stats(st->stages[i], &stats);
        uint64_t busy_ns = 0;
        uint64_t backpressured_ns = 0;
        stage_times(st->stages[i], now_ns, &busy_ns, &backpressured_ns);
        const window_base *b = &st->base[i];
        sl__autoscale_sample *s = &st->samples[i];
        s->parallelism = stats.parallelism;
        s->records_in = delta_s(stats.records_in_total, b->records_in, 1.0);
        s->records_out = delta_s(stats.records_out_total, b->records_out, 1.0);
        s->busy_s = delta_s(busy_ns, b->busy_ns, 1e-9);
        s->backpressured_s = delta_s(backpressured_ns, b->backpressured_ns, 1e-9);
        s->window_s = (double)(now_ns - st->window_start_ns) * 1e-9;
    }
}

// Starts a new observation window at now_ns (after a decision round, and after a rescale, whose
// pause would otherwise count as the stage's normal behaviour).
static void
state_reset_window(autoscale_state *st, int64_t now_ns)
{
    for (uint32_t i = 0; i < st->count; i++) {
        sl_pipe_stage_stats stats;
        sl__pipe_stage_stats(st->stages[i], &stats);
        window_base *b = &st->base[i];
        b->records_in = stats.records_in_total;
        b->records_out = stats.records_out_total;
        stage_times(st->stages[i], now_ns, &b->busy_ns, &b->backpressured_ns);
    }
    st->window_start_ns = now_ns;
}

// Reports one decision: the pipeline's callback, a line on stderr, the decisions counter.
static void
state_report(autoscale_state *st, sl_pipeline *p, uint32_t i, uint32_t direction, int err)
{
    const sl_pipe_scale_decision *d = &st->verdicts[i].decision;
    if (err != SL_OK) {
        fprintf(stderr, "sluice: pipeline %s: autoscale %s %u -> %u failed (%s): %s\n", p->name,
                d->stage, d->from, d->to, sl_strerror(err), d->reason);
        return;
    }
    fprintf(stderr, "sluice: pipeline %s: autoscale %s %u -> %u: %s\n", p->name, d->stage, d->from,
            d->to, d->reason);
    sl_counter_inc(&st->decisions[i][direction]);
    if (p->cfg.decision_cb != NULL) {
        p->cfg.decision_cb(d, p->cfg.decision_user);
    }
}

// One decision round over the accumulated window; applies every UP/DOWN verdict.
static void
state_decide(autoscale_state *st, sl_pipeline *p, int64_t now_ns)
{
    for (uint32_t i = 0; i < st->count; i++) {
        sl__autoscale_sample *s = &st->samples[i];
        // The generator knows its rate; other sources are extrapolated by the core over the
        // whole window (the runtime's per-second estimate is noisier and unbounded).
        bool gen = st->stages[i]->source_ops == &sl__pipe_gen_source_ops;
        s->offered_per_s = gen ? sl__pipe_stage_offered_rate(st->stages[i]) : 0.0;
        if (!st->scalable[i]) {
            s->parallelism_min = s->parallelism;
            s->parallelism_max = s->parallelism;
        }
    }
    int err = sl__autoscaler_decide(st->core, st->samples, st->count, now_ns, st->verdicts);
    SL_ASSERT(err == SL_OK); // samples built above from a checked topology
    bool rescaled = false;
    for (uint32_t i = 0; i < st->count; i++) {
        const sl__autoscale_verdict *v = &st->verdicts[i];
        if (v->action == SL__AUTOSCALE_AT_MAX) {
            state_report(st, p, i, DIRECTION_MAX, SL_OK);
        } else if (v->action == SL__AUTOSCALE_UP || v->action == SL__AUTOSCALE_DOWN) {
            err = sl__pipe_stage_rescale(st->stages[i], v->decision.to);
            state_report(st, p, i, v->action == SL__AUTOSCALE_UP ? DIRECTION_UP : DIRECTION_DOWN,
                         err);
            rescaled = true;
        }
    }
    // A rescale blocks this thread while the stage drains: start the next window after it.
    state_reset_window(st, rescaled ? sl_now_ns() : now_ns);
}

static const sl_metric_family_desc decisions_family = {
    .name = "sluice_pipeline_autoscale_decisions_total",
    .help = "Autoscaler decisions applied (up, down) or reported (max: overload stays "
            "backpressure at parallelism_max)",
    .type = SL_METRIC_COUNTER,
    .label_names = (const char *const[]){"pipeline", "stage", "direction"},
    .label_count = 3,
};

// The decisions family, registered by the first pipeline that autoscales in a registry and
// shared by the others (a family name exists once per registry).
static int
metrics_family(sl_metrics_registry *registry, uint64_t *id_out)
{
    int err = sl_metrics_family_register(registry, &decisions_family, id_out);
    if (err != SL_EEXIST) {
        return err;
    }
    err = SL_ENOENT;
    pthread_mutex_lock(&registry->mutex);
    for (uint32_t f = 0; f < registry->family_count; f++) {
        if (strcmp(registry->families[f]->name, decisions_family.name) == 0) {
            *id_out = registry->families[f]->id;
            err = SL_OK;
            break;
        }
    }
    pthread_mutex_unlock(&registry->mutex);
    return err;
}

// One counter per scalable stage and direction. A full registry leaves the rest unexposed (the
// decisions are still made and logged): metrics are a view, not a reason to stop scaling.
static void
metrics_register(autoscale_state *st, sl_pipeline *p)
{
    sl_metrics_registry *registry = p->cfg.registry;
    if (registry == NULL || metrics_family(registry, &st->family_id) != SL_OK) {
        return;
    }
    st->registry = registry;
    for (uint32_t i = 0; i < st->count; i++) {
        for (uint32_t d = 0; d < DIRECTION_COUNT && st->scalable[i]; d++) {
            sl_counter_init(&st->decisions[i][d]);
            const char *labels[3] = {p->name, st->stages[i]->name, direction_names[d]};
            sl_metric_source source = {.counter = &st->decisions[i][d]};
            uint64_t id = 0;
            if (sl_metrics_series_add(registry, st->family_id, labels, &source, &id) != SL_OK) {
                return;
            }
            st->series_ids[st->series_count++] = id;
        }
    }
}

static void
state_free(void *arg)
{
    autoscale_state *st = arg;
    if (st == NULL) {
        return;
    }
    for (uint32_t k = 0; k < st->series_count; k++) {
        int err = sl_metrics_series_remove(st->registry, st->series_ids[k]);
        SL_ASSERT(err == SL_OK || err == SL_ENOENT);
    }
    sl__autoscaler_free(st->core);
    sl_free(st, sizeof(*st));
}

// The controller hook: runs once a second on the controller thread; binds on the first call,
// accumulates every call, decides every interval_ms.
static void
state_tick(sl_pipeline *p, void *arg, int64_t now_ns)
{
    autoscale_state *st = arg;
    if (st->failed) {
        return;
    }
    if (st->core == NULL) {
        int err = state_bind(st, p);
        if (err != SL_OK) {
            fprintf(stderr, "sluice: pipeline %s: autoscaler off: %s\n", p->name, sl_strerror(err));
            st->failed = true;
            return;
        }
        metrics_register(st, p);
        state_reset_window(st, now_ns);
        return;
    }
    int64_t interval_ns = (int64_t)sl__autoscaler_config(st->core)->interval_ms * 1000000;
    if (now_ns - st->window_start_ns >= interval_ns - AUTOSCALE_TICK_SLACK_NS) {
        state_measure(st, now_ns);
        state_decide(st, p, now_ns);
    }
}

int
sl__pipe_autoscale_attach(sl_pipeline *p)
{
    SL_ASSERT(p != NULL);
    if (!p->cfg.autoscale.enabled) {
        return SL_OK;
    }
    sl_pipe_autoscale_config check;
    int err = config_resolve(&p->cfg.autoscale, &check);
    if (err != SL_OK) {
        return err;
    }
    autoscale_state *st = sl_calloc(1, sizeof(*st));
    if (st == NULL) {
        return SL_ENOMEM;
    }
    sl__pipeline_set_controller(p, state_tick, state_free, st);
    return SL_OK;
}

void
sl__pipe_autoscale_step(sl_pipeline *p, int64_t now_ns)
{
    if (p->controller_fn == state_tick) {
        state_tick(p, p->controller_state, now_ns);
    }
}
