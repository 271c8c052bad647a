// Seeing the bottleneck: per-stage statistics (time accounting averaged over instances, rates
// sampled once a second by the controller, queue fill, latency), the bottleneck report, and the
// stage metrics registered in the pipeline's metrics registry (docs/metrics.md, Pipeline).
#include <stdio.h>
#include <string.h>

#include "core/metrics_internal.h"
#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// A stage busy at least this many ms per second is "busy near 100%" for the bottleneck report
// (not 1000: accounting windows are not aligned and a loaded machine steals some time).
#define STATS_BUSY_MS 700.0
// An upstream stage backpressured at least this many ms per second is held back by its
// downstream.
#define STATS_BACKPRESSURED_MS 300.0

static uint32_t
active_count(const sl_pipe_stage *s)
{
    return atomic_load_explicit(&s->parallelism, memory_order_acquire);
}

static void
time_fill(sl_pipe_stage *s, sl_pipe_stage_stats *out, int64_t now)
{
    uint32_t n = active_count(s);
    double sum[SL_TIME_STATE_COUNT] = {0};
    uint32_t counted = 0;
    for (uint32_t i = 0; i < n; i++) {
        sl_timeacct_stats ts;
        const sl_timeacct *ta = s->instances[i].time;
        if (ta == NULL || sl_timeacct_read(ta, now, &ts) != SL_OK || ts.windows_completed == 0) {
            continue;
        }
        for (uint32_t k = 0; k < SL_TIME_STATE_COUNT; k++) {
            sum[k] += ts.ms_per_s[k];
        }
        counted++;
    }
    if (counted > 0) {
        out->busy_ms_per_s = sum[SL_TIME_BUSY] / counted;
        out->backpressured_ms_per_s = sum[SL_TIME_BACKPRESSURED] / counted;
        out->idle_ms_per_s = sum[SL_TIME_IDLE] / counted;
    }
}

static void
queue_fill(sl_pipe_stage *s, sl_pipe_stage_stats *out)
{
    uint32_t n = active_count(s);
    for (uint32_t i = 0; i < n && s->kind != SL__PIPE_SOURCE; i++) {
        const sl__pipe_instance *inst = &s->instances[i];
        if (inst->input == NULL) {
            continue;
        }
        sl_channel_stats cs;
        sl_channel_stats_get(inst->input, &cs);
        double fill = (double)cs.depth_records / (double)inst->capacity;
        out->queue_fill = SL_MAX(out->queue_fill, SL_MIN(fill, 1.0));
        out->queued_records += cs.depth_records;
        out->queue_capacity_records += (uint64_t)inst->capacity;
    }
}

static void
totals(const sl_pipe_stage *s, uint64_t *in, uint64_t *out)
{
    *in = 0;
    *out = 0;
    for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
        *in += sl_counter_get(&s->instances[i].in_total);
        *out += sl_counter_get(&s->instances[i].out_total);
    }
}

void
sl__pipe_stage_stats(sl_pipe_stage *s, sl_pipe_stage_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->name = s->name;
    // The stats mutex keeps a rescale from freeing an instance while it is read.
    pthread_mutex_lock(&s->pipeline->stats_mutex);
    out->parallelism = active_count(s);
    time_fill(s, out, sl_now_ns());
    queue_fill(s, out);
    totals(s, &out->records_in_total, &out->records_out_total);
    out->in_per_s = s->sample.in_per_s;
    out->out_per_s = s->sample.out_per_s;
    out->latency_p99_s = s->sample.latency_p99_s;
    pthread_mutex_unlock(&s->pipeline->stats_mutex);
}

double
sl__pipe_stage_offered_rate(sl_pipe_stage *s)
{
    if (s->kind != SL__PIPE_SOURCE) {
        return 0.0;
    }
    pthread_mutex_lock(&s->pipeline->stats_mutex);
    double r = s->sample.offered_per_s;
    pthread_mutex_unlock(&s->pipeline->stats_mutex);
    return r;
}

// What the source would emit unthrottled: the generator's configured rate, else the measured
// rate over the share of the second it was not backpressured.
static double
offered_estimate(sl_pipe_stage *s, double out_per_s)
{
    if (s->source_ops == &sl__pipe_gen_source_ops) {
        double rate = 0.0;
        uint32_t n = active_count(s);
        for (uint32_t i = 0; i < n; i++) {
            if (s->instances[i].state != NULL) {
                rate += sl__pipe_gen_offered_rate(s->instances[i].state);
            }
        }
        if (rate > 0.0) {
            return rate;
        }
    }
    sl_pipe_stage_stats st;
    memset(&st, 0, sizeof(st));
    time_fill(s, &st, sl_now_ns());
    double free_ms = 1000.0 - st.backpressured_ms_per_s;
    return free_ms < 1.0 ? out_per_s * 1000.0 : out_per_s * 1000.0 / free_ms;
}

void
sl__pipeline_sample(sl_pipeline *p, int64_t now_ns)
{
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->topo[t];
        uint64_t in = 0;
        uint64_t out = 0;
        totals(s, &in, &out);
        double p99 = (double)sl_histogram_quantile(s->latency_window, 0.99) * 1e-9;
        sl_histogram_reset(s->latency_window);
        pthread_mutex_lock(&p->stats_mutex);
        sl__pipe_sample *sm = &s->sample;
        if (sm->at_ns > 0 && now_ns > sm->at_ns) {
            double secs = (double)(now_ns - sm->at_ns) * 1e-9;
            sm->in_per_s = (double)(in - sm->in_total) / secs;
            sm->out_per_s = (double)(out - sm->out_total) / secs;
        }
        sm->in_total = in;
        sm->out_total = out;
        sm->at_ns = now_ns;
        sm->latency_p99_s = p99;
        double out_per_s = sm->out_per_s;
        pthread_mutex_unlock(&p->stats_mutex);
        if (s->kind == SL__PIPE_SOURCE) {
            double offered = offered_estimate(s, out_per_s);
            pthread_mutex_lock(&p->stats_mutex);
            sm->offered_per_s = offered;
            pthread_mutex_unlock(&p->stats_mutex);
        }
    }
}

void
sl_pipeline_stats(sl_pipeline *p, sl_pipe_stage_stats *out, size_t cap, size_t *count_out)
{
    uint32_t n = p->started ? p->stage_count : 0;
    for (uint32_t t = 0; t < n && t < cap; t++) {
        sl__pipe_stage_stats(p->topo[t], &out[t]);
    }
    if (count_out != NULL) {
        *count_out = n;
    }
}

// ---- explain ------------------------------------------------------------------------------------

// True when every direct upstream stage of s is held back (backpressured) by its downstream.
static bool
upstream_backpressured(const sl_pipeline *p, const sl_pipe_stage *s, const sl_pipe_stage_stats *st)
{
    for (uint32_t e = 0; e < s->in_count; e++) {
        const sl_pipe_stage *up = p->edges[s->in_edges[e]].from;
        if (st[up->topo_index].backpressured_ms_per_s < STATS_BACKPRESSURED_MS) {
            return false;
        }
    }
    return true;
}

static int
explain_pick(const sl_pipeline *p, const sl_pipe_stage_stats *st)
{
    int best = -1;
    int source_best = -1;
    for (uint32_t t = 0; t < p->stage_count; t++) {
        const sl_pipe_stage *s = p->topo[t];
        if (st[t].busy_ms_per_s < STATS_BUSY_MS) {
            continue;
        }
        if (s->kind == SL__PIPE_SOURCE) {
            // A source busy with its own work is the limit only when nothing downstream is.
            if (source_best < 0 || st[t].busy_ms_per_s > st[source_best].busy_ms_per_s) {
                source_best = (int)t;
            }
            continue;
        }
        if (upstream_backpressured(p, s, st) &&
            (best < 0 || st[t].busy_ms_per_s > st[best].busy_ms_per_s)) {
            best = (int)t;
        }
    }
    return best >= 0 ? best : source_best;
}

int
sl_pipeline_explain(sl_pipeline *p, char *buf, size_t size)
{
    SL_ASSERT(buf != NULL && size > 0);
    buf[0] = '\0';
    if (!p->started) {
        snprintf(buf, size, "pipeline %s: not started\n", p->name);
        return -1;
    }
    sl_pipe_stage_stats st[SL_PIPE_STAGES_MAX];
    size_t count = 0;
    sl_pipeline_stats(p, st, SL_PIPE_STAGES_MAX, &count);
    int best = explain_pick(p, st);
    size_t len = 0;
    len += (size_t)snprintf(buf + len, size - len, "%-20s %4s %8s %8s %8s %10s %10s %6s %10s\n",
                            "stage", "par", "busy", "backpr", "idle", "in/s", "out/s", "queue",
                            "p99 ms");
    for (size_t t = 0; t < count && len < size; t++) {
        len += (size_t)snprintf(
            buf + len, size - len, "%-20s %4u %8.0f %8.0f %8.0f %10.0f %10.0f %5.0f%% %10.2f%s\n",
            st[t].name, st[t].parallelism, st[t].busy_ms_per_s, st[t].backpressured_ms_per_s,
            st[t].idle_ms_per_s, st[t].in_per_s, st[t].out_per_s, st[t].queue_fill * 100.0,
            st[t].latency_p99_s * 1e3, (int)t == best ? "  <- bottleneck" : "");
    }
    if (len < size) {
        if (best >= 0) {
            snprintf(buf + len, size - len,
                     "bottleneck: %s (busy %.0f ms/s; every stage upstream backpressured)\n",
                     st[best].name, st[best].busy_ms_per_s);
        } else {
            snprintf(buf + len, size - len,
                     "no bottleneck (no stage busy >= %.0f ms/s with its upstream "
                     "backpressured)\n",
                     STATS_BUSY_MS);
        }
    }
    return best;
}

// ---- metrics ------------------------------------------------------------------------------------

typedef enum stage_field {
    FIELD_BUSY = 0,
    FIELD_BACKPRESSURED,
    FIELD_IDLE,
    FIELD_PARALLELISM,
    FIELD_IN_TOTAL,
    FIELD_OUT_TOTAL,
    FIELD_DROPPED_TOTAL,
    FIELD_IN_RATE,
    FIELD_OUT_RATE,
    FIELD_QUEUE_FILL,
    FIELD_QUEUED,
    FIELD_INFLIGHT,
    FIELD_COMMITS_TOTAL,
    FIELD_OFFERED,
    FIELD_LATENCY,
    FIELD_COUNT,
} stage_field;

typedef struct stage_metric {
    const char *name;
    const char *help;
    sl_metric_type type;
    bool sources_only;
} stage_metric;

static const stage_metric k_stage_metrics[FIELD_COUNT] = {
    {"sluice_pipeline_stage_busy_ms_per_second", "ms per s processing, averaged over instances",
     SL_METRIC_GAUGE, false},
    {"sluice_pipeline_stage_backpressured_ms_per_second",
     "ms per s blocked on a full downstream, averaged over instances", SL_METRIC_GAUGE, false},
    {"sluice_pipeline_stage_idle_ms_per_second", "ms per s waiting for input", SL_METRIC_GAUGE,
     false},
    {"sluice_pipeline_stage_parallelism", "instances running", SL_METRIC_GAUGE, false},
    {"sluice_pipeline_stage_records_in_total", "records taken from the input channels",
     SL_METRIC_COUNTER, false},
    {"sluice_pipeline_stage_records_out_total", "records pushed downstream (copies counted)",
     SL_METRIC_COUNTER, false},
    {"sluice_pipeline_stage_records_dropped_total", "inputs dropped by policy (sample)",
     SL_METRIC_COUNTER, false},
    {"sluice_pipeline_stage_in_per_second", "input rate over the last second", SL_METRIC_GAUGE,
     false},
    {"sluice_pipeline_stage_out_per_second", "output rate over the last second", SL_METRIC_GAUGE,
     false},
    {"sluice_pipeline_stage_queue_fill_ratio", "fullest instance's input channel, 0..1",
     SL_METRIC_GAUGE, false},
    {"sluice_pipeline_stage_queued_records", "records queued in the input channels",
     SL_METRIC_GAUGE, false},
    {"sluice_pipeline_source_inflight_records", "records emitted and not yet committed",
     SL_METRIC_GAUGE, true},
    {"sluice_pipeline_source_commits_total", "commit calls made to the source (coalesced)",
     SL_METRIC_COUNTER, true},
    {"sluice_pipeline_source_offered_per_second",
     "rate the source would emit if never backpressured", SL_METRIC_GAUGE, true},
    {"sluice_pipeline_stage_latency_seconds",
     "time a record spends in the stage: queue plus processing", SL_METRIC_SUMMARY, false},
};

typedef sl__pipe_metric_ref metric_ref;

static double
source_field(const sl_pipe_stage *s, stage_field field)
{
    double v = 0.0;
    for (uint32_t i = 0; i < active_count(s); i++) {
        const sl__pipe_source_track *t = s->instances[i].track;
        if (t == NULL) {
            continue;
        }
        v += field == FIELD_INFLIGHT ? (double)sl__pipe_source_track_inflight(t)
                                     : (double)sl__pipe_source_track_commits(t);
    }
    return v;
}

static double
metric_read(void *user)
{
    const metric_ref *ref = user;
    sl_pipe_stage *s = ref->stage;
    if (ref->field == FIELD_INFLIGHT || ref->field == FIELD_COMMITS_TOTAL) {
        return source_field(s, ref->field);
    }
    if (ref->field == FIELD_OFFERED) {
        return sl__pipe_stage_offered_rate(s);
    }
    if (ref->field == FIELD_DROPPED_TOTAL) {
        uint64_t d = 0;
        for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
            d += sl_counter_get(&s->instances[i].dropped_total);
        }
        return (double)d;
    }
    sl_pipe_stage_stats st;
    sl__pipe_stage_stats(s, &st);
    switch (ref->field) {
    case FIELD_BUSY:
        return st.busy_ms_per_s;
    case FIELD_BACKPRESSURED:
        return st.backpressured_ms_per_s;
    case FIELD_IDLE:
        return st.idle_ms_per_s;
    case FIELD_PARALLELISM:
        return st.parallelism;
    case FIELD_IN_TOTAL:
        return (double)st.records_in_total;
    case FIELD_OUT_TOTAL:
        return (double)st.records_out_total;
    case FIELD_IN_RATE:
        return st.in_per_s;
    case FIELD_OUT_RATE:
        return st.out_per_s;
    case FIELD_QUEUE_FILL:
        return st.queue_fill;
    default:
        return (double)st.queued_records;
    }
}

// The id of a family already registered under name (another pipeline in the same registry).
static int
family_find(sl_metrics_registry *reg, const char *name, uint64_t *id_out)
{
    int err = SL_ENOENT;
    pthread_mutex_lock(&reg->mutex);
    for (uint32_t i = 0; i < reg->family_count && err != SL_OK; i++) {
        if (strcmp(reg->families[i]->name, name) == 0) {
            *id_out = reg->families[i]->id;
            err = SL_OK;
        }
    }
    pthread_mutex_unlock(&reg->mutex);
    return err;
}

static int
family_get(sl_metrics_registry *reg, const stage_metric *m, uint64_t *id_out)
{
    static const char *const labels[] = {"pipeline", "stage"};
    sl_metric_family_desc d = {
        .name = m->name,
        .help = m->help,
        .type = m->type,
        .label_names = labels,
        .label_count = 2,
        .scale = m->type == SL_METRIC_SUMMARY ? 1e-9 : 1.0,
    };
    int err = sl_metrics_family_register(reg, &d, id_out);
    if (err == SL_EEXIST) {
        err = family_find(reg, m->name, id_out);
    }
    return err;
}

int
sl__pipeline_metrics_register(sl_pipeline *p)
{
    sl_metrics_registry *reg = p->cfg.registry;
    if (reg == NULL) {
        return SL_OK;
    }
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->topo[t];
        for (uint32_t f = 0; f < FIELD_COUNT; f++) {
            const stage_metric *m = &k_stage_metrics[f];
            if (m->sources_only && s->kind != SL__PIPE_SOURCE) {
                continue;
            }
            uint64_t family = 0;
            int err = family_get(reg, m, &family);
            if (err != SL_OK) {
                return err;
            }
            s->metric_refs[f] = (metric_ref){.stage = s, .field = f};
            sl_metric_source src = {.read_cb = metric_read, .read_user = &s->metric_refs[f]};
            if (m->type == SL_METRIC_SUMMARY) {
                src = (sl_metric_source){.histogram = s->latency};
            }
            const char *values[] = {p->name, s->name};
            err = sl_metrics_series_add(reg, family, values, &src, &s->series_ids[s->series_count]);
            if (err != SL_OK) {
                return err;
            }
            s->series_count++;
        }
    }
    return SL_OK;
}

void
sl__pipeline_metrics_unregister(sl_pipeline *p)
{
    sl_metrics_registry *reg = p->cfg.registry;
    for (uint32_t t = 0; t < p->stage_count && reg != NULL; t++) {
        sl_pipe_stage *s = p->stages[t];
        for (uint32_t i = 0; i < s->series_count; i++) {
            int rc = sl_metrics_series_remove(reg, s->series_ids[i]);
            SL_ASSERT(rc == SL_OK);
        }
        s->series_count = 0;
    }
}
