// Building a pipeline: stages (with their configs and a deep copy of their endpoints) and the
// edges between them, checked at start: a DAG, every operator reachable from a source and
// reaching a sink, sorted topologically, each input channel marked SPSC when exactly one
// upstream instance can feed it.
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Longest endpoint description (uri plus options) copied into a stage, bytes.
#define PIPE_ENDPOINT_BYTES_MAX (64u << 10)
// Options of one endpoint.
#define PIPE_OPTIONS_MAX 64u

void
sl_pipe_stage_config_init(sl_pipe_stage_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->parallelism = 1;
    cfg->queue_records = SL_PIPE_QUEUE_RECORDS_DEFAULT;
    cfg->queue_bytes = SL_PIPE_QUEUE_BYTES_DEFAULT;
}

void
sl_pipeline_config_init(sl_pipeline_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "pipeline";
    cfg->memory_budget_bytes = SL_PIPE_MEMORY_DEFAULT;
    cfg->autoscale.interval_ms = 5000;
    cfg->autoscale.cooldown_ms = 10000;
    cfg->autoscale.target_utilization = 0.8;
    cfg->autoscale.tolerance = 0.1;
    cfg->source_inflight_max = SL_PIPE_INFLIGHT_DEFAULT;
}

// ---- building ---------------------------------------------------------------------------------

int
sl_pipeline_new(const sl_pipeline_config *cfg, sl_pipeline **out)
{
    SL_ASSERT(out != NULL);
    sl_pipeline_config defaults;
    sl_pipeline_config_init(&defaults);
    if (cfg == NULL) {
        cfg = &defaults;
    }
    if (cfg->source_inflight_max > SL_PIPE_INFLIGHT_MAX) {
        return SL_EINVAL;
    }
    sl_pipeline *p = sl_calloc(1, sizeof(*p));
    if (p == NULL) {
        return SL_ENOMEM;
    }
    p->cfg = *cfg;
    sl__strlcpy(p->name, cfg->name != NULL ? cfg->name : "pipeline", sizeof(p->name));
    p->cfg.name = p->name;
    if (p->cfg.memory_budget_bytes == 0) {
        p->cfg.memory_budget_bytes = SL_PIPE_MEMORY_DEFAULT;
    }
    if (p->cfg.source_inflight_max == 0) {
        p->cfg.source_inflight_max = SL_PIPE_INFLIGHT_DEFAULT;
    }
    sl_budget_config bc = {.name = p->name, .capacity_bytes = p->cfg.memory_budget_bytes};
    int err = sl_budget_new(&bc, NULL, &p->budget);
    if (err != SL_OK) {
        sl_free(p, sizeof(*p));
        return err;
    }
    pthread_mutex_init(&p->mutex, NULL);
    pthread_mutex_init(&p->join_mutex, NULL);
    pthread_mutex_init(&p->stop_mutex, NULL);
    pthread_mutex_init(&p->stats_mutex, NULL);
    pthread_mutex_init(&p->rescale_mutex, NULL);
    sl__pipe_cond_init(&p->cond);
    *out = p;
    return SL_OK;
}

static int
endpoint_copy(sl_pipe_stage *s, const sl_pipe_endpoint *ep)
{
    if (ep == NULL || ep->uri == NULL || ep->option_count > PIPE_OPTIONS_MAX) {
        return SL_EINVAL;
    }
    size_t bytes = strlen(ep->uri) + 1 + ep->option_count * sizeof(sl_pipe_option);
    for (size_t i = 0; i < ep->option_count; i++) {
        if (ep->options[i].key == NULL || ep->options[i].value == NULL) {
            return SL_EINVAL;
        }
        bytes += strlen(ep->options[i].key) + strlen(ep->options[i].value) + 2;
    }
    if (bytes > PIPE_ENDPOINT_BYTES_MAX) {
        return SL_ETOOBIG;
    }
    char *storage = sl_alloc(bytes);
    if (storage == NULL) {
        return SL_ENOMEM;
    }
    sl_pipe_option *opts = (sl_pipe_option *)storage;
    char *cursor = storage + ep->option_count * sizeof(sl_pipe_option);
    for (size_t i = 0; i < ep->option_count; i++) {
        size_t k = strlen(ep->options[i].key) + 1;
        size_t v = strlen(ep->options[i].value) + 1;
        memcpy(cursor, ep->options[i].key, k);
        opts[i].key = cursor;
        cursor += k;
        memcpy(cursor, ep->options[i].value, v);
        opts[i].value = cursor;
        cursor += v;
    }
    memcpy(cursor, ep->uri, strlen(ep->uri) + 1);
    s->endpoint.uri = cursor;
    s->endpoint.options = opts;
    s->endpoint.option_count = ep->option_count;
    s->endpoint.user = ep->user;
    s->endpoint_storage = storage;
    s->endpoint_bytes = bytes;
    return SL_OK;
}

void
sl__pipe_stage_free(sl_pipe_stage *s)
{
    for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
        pthread_mutex_destroy(&s->instances[i].credit_mutex);
        pthread_cond_destroy(&s->instances[i].credit_cond);
    }
    sl_histogram_free(s->latency);
    sl_histogram_free(s->latency_window);
    if (s->endpoint_storage != NULL) {
        sl_free(s->endpoint_storage, s->endpoint_bytes);
    }
    sl_free(s, sizeof(*s));
}

static int
stage_config_check(const sl_pipe_stage_config *in, sl__pipe_kind kind, sl_pipe_stage_config *cfg)
{
    if (in == NULL) {
        sl_pipe_stage_config_init(cfg);
    } else {
        *cfg = *in;
    }
    if (cfg->parallelism == 0) {
        cfg->parallelism = 1;
    }
    if (cfg->parallelism_min == 0) {
        cfg->parallelism_min = cfg->parallelism;
    }
    if (cfg->parallelism_max == 0) {
        cfg->parallelism_max = cfg->parallelism;
    }
    if (cfg->queue_records == 0) {
        cfg->queue_records = SL_PIPE_QUEUE_RECORDS_DEFAULT;
    }
    if (cfg->queue_bytes == 0) {
        cfg->queue_bytes = SL_PIPE_QUEUE_BYTES_DEFAULT;
    }
    if (kind != SL__PIPE_PROCESS && kind != SL__PIPE_FILTER && kind != SL__PIPE_WINDOW) {
        cfg->parallelism_min = cfg->parallelism;
        cfg->parallelism_max = cfg->parallelism;
    }
    if (cfg->parallelism_max > SL_PIPE_PARALLELISM_MAX || cfg->parallelism_min < 1 ||
        cfg->parallelism_min > cfg->parallelism || cfg->parallelism > cfg->parallelism_max ||
        cfg->queue_records > SL_CHANNEL_RECORDS_MAX) {
        return SL_EINVAL;
    }
    return SL_OK;
}

static int
stage_add(sl_pipeline *p, const char *name, sl__pipe_kind kind, const sl_pipe_stage_config *cfg,
          sl_pipe_stage **out)
{
    if (p->started || name == NULL || name[0] == '\0' || strlen(name) >= SL_NAME_MAX) {
        return SL_EINVAL;
    }
    if (sl_pipeline_stage(p, name) != NULL) {
        return SL_EEXIST;
    }
    if (p->stage_count >= SL_PIPE_STAGES_MAX) {
        return SL_EFULL;
    }
    sl_pipe_stage *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    int err = stage_config_check(cfg, kind, &s->cfg);
    if (err == SL_OK) {
        err = sl_histogram_new(&s->latency);
    }
    if (err == SL_OK) {
        err = sl_histogram_new(&s->latency_window);
    }
    for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
        pthread_mutex_init(&s->instances[i].credit_mutex, NULL);
        sl__pipe_cond_init(&s->instances[i].credit_cond);
        s->instances[i].stage = s;
        s->instances[i].index = i;
    }
    if (err != SL_OK) {
        sl__pipe_stage_free(s);
        return err;
    }
    s->pipeline = p;
    sl__strlcpy(s->name, name, sizeof(s->name));
    s->kind = kind;
    s->index = p->stage_count;
    atomic_init(&s->parallelism, s->cfg.parallelism);
    s->rescalable = s->cfg.parallelism_min < s->cfg.parallelism_max;
    *out = s;
    return SL_OK;
}

static void
stage_commit(sl_pipeline *p, sl_pipe_stage *s, sl_pipe_stage **stage_out)
{
    p->stages[p->stage_count++] = s;
    if (stage_out != NULL) {
        *stage_out = s;
    }
}

// Adds a source (source_ops) or sink (sink_ops) stage with a copy of its endpoint.
static int
add_endpoint_stage(sl_pipeline *p, const char *name, sl__pipe_kind kind,
                   const sl_pipe_source_ops *source_ops, const sl_pipe_sink_ops *sink_ops,
                   const sl_pipe_endpoint *endpoint, const sl_pipe_stage_config *cfg,
                   sl_pipe_stage **stage_out)
{
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, kind, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->source_ops = source_ops;
    s->sink_ops = sink_ops;
    err = endpoint_copy(s, endpoint);
    if (err != SL_OK) {
        sl__pipe_stage_free(s);
        return err;
    }
    stage_commit(p, s, stage_out);
    return SL_OK;
}

int
sl_pipeline_add_source(sl_pipeline *p, const char *name, const sl_pipe_source_ops *ops,
                       const sl_pipe_endpoint *endpoint, const sl_pipe_stage_config *cfg,
                       sl_pipe_stage **stage_out)
{
    if (ops == NULL || ops->create == NULL || ops->poll == NULL) {
        return SL_EINVAL;
    }
    return add_endpoint_stage(p, name, SL__PIPE_SOURCE, ops, NULL, endpoint, cfg, stage_out);
}

int
sl_pipeline_add_sink(sl_pipeline *p, const char *name, const sl_pipe_sink_ops *ops,
                     const sl_pipe_endpoint *endpoint, const sl_pipe_stage_config *cfg,
                     sl_pipe_stage **stage_out)
{
    if (ops == NULL || ops->create == NULL || ops->write == NULL) {
        return SL_EINVAL;
    }
    return add_endpoint_stage(p, name, SL__PIPE_SINK, NULL, ops, endpoint, cfg, stage_out);
}

int
sl_pipeline_add_process(sl_pipeline *p, const char *name, sl_pipe_process_fn fn, void *user,
                        const sl_pipe_stage_config *cfg, sl_pipe_stage **stage_out)
{
    if (fn == NULL) {
        return SL_EINVAL;
    }
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, SL__PIPE_PROCESS, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->process_fn = fn;
    s->user = user;
    stage_commit(p, s, stage_out);
    return SL_OK;
}

int
sl_pipeline_add_filter(sl_pipeline *p, const char *name, sl_pipe_filter_fn fn, void *user,
                       const sl_pipe_stage_config *cfg, sl_pipe_stage **stage_out)
{
    if (fn == NULL) {
        return SL_EINVAL;
    }
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, SL__PIPE_FILTER, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->filter_fn = fn;
    s->user = user;
    stage_commit(p, s, stage_out);
    return SL_OK;
}

int
sl_pipeline_add_window(sl_pipeline *p, const char *name, sl_pipe_window_agg agg, uint32_t size_ms,
                       sl_pipe_value_fn value_fn, void *user, const sl_pipe_stage_config *cfg,
                       sl_pipe_stage **stage_out)
{
    if (size_ms == 0 || (agg != SL_WINDOW_COUNT && agg != SL_WINDOW_SUM) ||
        (agg == SL_WINDOW_SUM && value_fn == NULL)) {
        return SL_EINVAL;
    }
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, SL__PIPE_WINDOW, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->window_agg = agg;
    s->window_size_ms = size_ms;
    s->value_fn = value_fn;
    s->user = user;
    stage_commit(p, s, stage_out);
    return SL_OK;
}

sl_pipe_stage *
sl_pipeline_stage(sl_pipeline *p, const char *name)
{
    for (uint32_t i = 0; i < p->stage_count; i++) {
        if (strcmp(p->stages[i]->name, name) == 0) {
            return p->stages[i];
        }
    }
    return NULL;
}

int
sl_pipeline_connect(sl_pipeline *p, sl_pipe_stage *from, sl_pipe_stage *to, sl_pipe_route route)
{
    if (p->started || from == NULL || to == NULL || from == to || from->pipeline != p ||
        to->pipeline != p || (uint32_t)route > SL_ROUTE_KEY_HASH || from->kind == SL__PIPE_SINK ||
        to->kind == SL__PIPE_SOURCE) {
        return SL_EINVAL;
    }
    for (uint32_t i = 0; i < p->edge_count; i++) {
        if (p->edges[i].from == from && p->edges[i].to == to) {
            return SL_EEXIST;
        }
    }
    if (p->edge_count >= SL_PIPE_EDGES_MAX) {
        return SL_EFULL;
    }
    p->edges[p->edge_count] = (sl__pipe_edge){.from = from, .to = to, .route = route};
    from->out_edges[from->out_count++] = p->edge_count;
    to->in_edges[to->in_count++] = p->edge_count;
    p->edge_count++;
    return SL_OK;
}

// ---- checking the graph -----------------------------------------------------------------------

// Kahn's algorithm: fills p->topo; false on a cycle.
static bool
graph_sort(sl_pipeline *p)
{
    uint32_t indegree[SL_PIPE_STAGES_MAX];
    uint32_t count = 0;
    for (uint32_t i = 0; i < p->stage_count; i++) {
        indegree[i] = p->stages[i]->in_count;
        if (indegree[i] == 0) {
            p->topo[count++] = p->stages[i];
        }
    }
    for (uint32_t head = 0; head < count; head++) {
        const sl_pipe_stage *s = p->topo[head];
        for (uint32_t o = 0; o < s->out_count; o++) {
            sl_pipe_stage *to = p->edges[s->out_edges[o]].to;
            if (--indegree[to->index] == 0) {
                p->topo[count++] = to;
            }
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        p->topo[i]->topo_index = i;
    }
    return count == p->stage_count;
}

int
sl__pipeline_graph_check(sl_pipeline *p, char *err, size_t err_size)
{
    if (p->stage_count == 0) {
        sl__pipe_err_set(err, err_size, "pipeline has no stages", NULL);
        return SL_EINVAL;
    }
    if (!graph_sort(p)) {
        sl__pipe_err_set(err, err_size, "the stages form a cycle", NULL);
        return SL_EINVAL;
    }
    for (uint32_t i = 0; i < p->stage_count; i++) {
        const sl_pipe_stage *s = p->stages[i];
        if (s->kind != SL__PIPE_SOURCE && s->in_count == 0) {
            sl__pipe_err_set(err, err_size, "no input (not reachable from a source)", s->name);
            return SL_EINVAL;
        }
        if (s->kind != SL__PIPE_SINK && s->out_count == 0) {
            sl__pipe_err_set(err, err_size, "no output (does not reach a sink)", s->name);
            return SL_EINVAL;
        }
    }
    // Every input channel with exactly one producer instance can be SPSC.
    for (uint32_t i = 0; i < p->stage_count; i++) {
        sl_pipe_stage *s = p->stages[i];
        uint32_t producers = 0;
        for (uint32_t e = 0; e < s->in_count; e++) {
            producers += p->edges[s->in_edges[e]].from->cfg.parallelism_max;
        }
        s->spsc_input = producers == 1;
    }
    return SL_OK;
}
