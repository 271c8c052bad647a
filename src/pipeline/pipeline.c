// The pipeline graph and its life: stages and edges are added, sl_pipeline_start checks the
// graph (a DAG from sources to sinks), sizes every instance's credit and input channel from the
// pipeline's memory budget and starts one thread per instance plus a controller thread that
// samples rates once a second (and runs the autoscaler when one is attached). Stop closes the
// sources first so records in flight can drain and commit; free joins and releases everything.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Longest endpoint description (uri plus options) copied into a stage, bytes.
#define PIPE_ENDPOINT_BYTES_MAX (64u << 10)
// Options of one endpoint.
#define PIPE_OPTIONS_MAX 64u
// The controller's period.
#define PIPE_CONTROL_PERIOD_NS INT64_C(1000000000)

// ---- small helpers ----------------------------------------------------------------------------

void
sl__pipe_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

void
sl__pipe_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    (void)pthread_cond_timedwait(cond, mutex, &ts);
}

void
sl__pipe_sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    // Bounded: an interrupted sleep is not resumed (callers loop with their own bounds).
    (void)nanosleep(&ts, NULL);
}

static void
err_set(char *err, size_t err_size, const char *msg, const char *name)
{
    if (err != NULL && err_size > 0) {
        snprintf(err, err_size, "%s%s%s", name != NULL ? name : "", name != NULL ? ": " : "", msg);
    }
}

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

static void
stage_free(sl_pipe_stage *s)
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
        stage_free(s);
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

int
sl_pipeline_add_source(sl_pipeline *p, const char *name, const sl_pipe_source_ops *ops,
                       const sl_pipe_endpoint *endpoint, const sl_pipe_stage_config *cfg,
                       sl_pipe_stage **stage_out)
{
    if (ops == NULL || ops->create == NULL || ops->poll == NULL) {
        return SL_EINVAL;
    }
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, SL__PIPE_SOURCE, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->source_ops = ops;
    err = endpoint_copy(s, endpoint);
    if (err != SL_OK) {
        stage_free(s);
        return err;
    }
    stage_commit(p, s, stage_out);
    return SL_OK;
}

int
sl_pipeline_add_sink(sl_pipeline *p, const char *name, const sl_pipe_sink_ops *ops,
                     const sl_pipe_endpoint *endpoint, const sl_pipe_stage_config *cfg,
                     sl_pipe_stage **stage_out)
{
    if (ops == NULL || ops->create == NULL || ops->write == NULL) {
        return SL_EINVAL;
    }
    sl_pipe_stage *s = NULL;
    int err = stage_add(p, name, SL__PIPE_SINK, cfg, &s);
    if (err != SL_OK) {
        return err;
    }
    s->sink_ops = ops;
    err = endpoint_copy(s, endpoint);
    if (err != SL_OK) {
        stage_free(s);
        return err;
    }
    stage_commit(p, s, stage_out);
    return SL_OK;
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

static int
graph_check(sl_pipeline *p, char *err, size_t err_size)
{
    if (p->stage_count == 0) {
        err_set(err, err_size, "pipeline has no stages", NULL);
        return SL_EINVAL;
    }
    if (!graph_sort(p)) {
        err_set(err, err_size, "the stages form a cycle", NULL);
        return SL_EINVAL;
    }
    for (uint32_t i = 0; i < p->stage_count; i++) {
        const sl_pipe_stage *s = p->stages[i];
        if (s->kind != SL__PIPE_SOURCE && s->in_count == 0) {
            err_set(err, err_size, "no input (not reachable from a source)", s->name);
            return SL_EINVAL;
        }
        if (s->kind != SL__PIPE_SINK && s->out_count == 0) {
            err_set(err, err_size, "no output (does not reach a sink)", s->name);
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

// ---- instances --------------------------------------------------------------------------------

static void
item_drop(sl_channel *ch, void *item, uint32_t size_bytes, sl_channel_drop_reason reason,
          void *user)
{
    SL_UNUSED(ch);
    SL_UNUSED(size_bytes);
    SL_UNUSED(reason);
    SL_UNUSED(user);
    sl__pipe_item *it = item;
    sl__pipe_track_poison(it->track);
    sl__pipe_track_release(it->track);
    sl_free(it, sl__pipe_item_bytes(it));
}

static uint32_t
pow2_at_least(uint32_t n)
{
    uint32_t r = 2;
    while (r < n) {
        r <<= 1;
    }
    return r;
}

static int
instance_channel(sl_pipe_stage *s, sl__pipe_instance *inst)
{
    sl_pipeline *p = s->pipeline;
    char name[SL_NAME_MAX + 16]; // the channel truncates to SL_NAME_MAX - 1
    snprintf(name, sizeof(name), "%s/%u", s->name, inst->index);
    uint64_t ring = (uint64_t)pow2_at_least(s->cfg.queue_records) * SL_PIPE_RING_SLOT_BYTES;
    int err = sl_budget_reserve(p->budget, ring, 0);
    if (err != SL_OK) {
        return err;
    }
    sl_channel_config cc = {
        .name = name,
        .kind = s->spsc_input ? SL_CHANNEL_SPSC : SL_CHANNEL_MPMC,
        .capacity_records = s->cfg.queue_records,
        .capacity_bytes = s->cfg.queue_bytes,
        .budget = p->budget,
        .full_policy = SL_FULL_BLOCK,
        .drop_cb = item_drop,
    };
    err = sl_channel_new(&cc, &inst->input);
    if (err != SL_OK) {
        sl_budget_release(p->budget, ring, 0);
        return err;
    }
    inst->ring_bytes_reserved = ring;
    return SL_OK;
}

static int
instance_state(sl_pipe_stage *s, sl__pipe_instance *inst, char *err, size_t err_size)
{
    sl_pipeline *p = s->pipeline;
    uint32_t n = atomic_load(&s->parallelism);
    switch (s->kind) {
    case SL__PIPE_SOURCE: {
        int rc = sl__pipe_source_track_new(p, p->budget, p->cfg.source_inflight_max, &inst->track);
        if (rc != SL_OK) {
            err_set(err, err_size, "memory budget too small for the tracking table", s->name);
            return rc;
        }
        return s->source_ops->create(&s->endpoint, inst->index, n, &inst->state, err, err_size);
    }
    case SL__PIPE_SINK:
        return s->sink_ops->create(&s->endpoint, inst->index, n, &inst->state, err, err_size);
    case SL__PIPE_WINDOW:
        inst->state = s->user;
        return sl__pipe_window_new(s, &inst->window);
    default:
        inst->state = s->cfg.init != NULL ? s->cfg.init(s->user, inst->index) : s->user;
        if (s->cfg.init != NULL && inst->state == NULL) {
            err_set(err, err_size, "operator init failed", s->name);
            return SL_ENOMEM;
        }
        return SL_OK;
    }
}

// Prepares instance i (not yet running): channel, credit, time account, state.
int
sl__pipe_instance_prepare(sl_pipe_stage *s, uint32_t i, char *err, size_t err_size)
{
    sl_pipeline *p = s->pipeline;
    sl__pipe_instance *inst = &s->instances[i];
    inst->capacity = s->cfg.queue_records;
    atomic_store(&inst->credit, inst->capacity);
    atomic_store(&inst->held_max, 0);
    atomic_store(&inst->finished, 0);
    atomic_store(&inst->retire, 0);
    atomic_store(&inst->parked, 0);
    inst->thread_started = false;
    inst->thread_joined = false;
    inst->ctx = (sl_pipe_ctx){.instance = inst};
    int32_t open = 0;
    for (uint32_t e = 0; e < s->in_count; e++) {
        open += (int32_t)atomic_load(&p->edges[s->in_edges[e]].from->parallelism);
    }
    atomic_store(&inst->upstream_open, open);
    inst->time_state = SL_TIME_IDLE;
    int rc = sl_timeacct_new(SL_TIME_IDLE, sl_now_ns(), &inst->time);
    if (rc == SL_OK && s->out_count > 0) {
        inst->rr_next = sl_calloc(s->out_count, sizeof(uint32_t));
        rc = inst->rr_next == NULL ? SL_ENOMEM : SL_OK;
        // Spread the instances' round-robin starting points.
        for (uint32_t o = 0; rc == SL_OK && o < s->out_count; o++) {
            inst->rr_next[o] = i;
        }
    }
    if (rc == SL_OK && s->kind != SL__PIPE_SOURCE) {
        rc = instance_channel(s, inst);
        if (rc == SL_EFULL) {
            err_set(err, err_size, "memory budget too small for the stage's channels", s->name);
        }
    }
    if (rc == SL_OK) {
        rc = instance_state(s, inst, err, err_size);
    }
    if (rc != SL_OK && err != NULL && err_size > 0 && err[0] == '\0') {
        err_set(err, err_size, sl_strerror(rc), s->name);
    }
    return rc;
}

int
sl__pipe_instance_spawn(sl_pipe_stage *s, uint32_t i)
{
    sl_pipeline *p = s->pipeline;
    sl__pipe_instance *inst = &s->instances[i];
    pthread_mutex_lock(&p->mutex);
    p->running++;
    pthread_mutex_unlock(&p->mutex);
    if (pthread_create(&inst->thread, NULL, sl__pipe_instance_main, inst) != 0) {
        sl__pipeline_instance_finished(p);
        return SL_ENOMEM;
    }
    inst->thread_started = true;
    return SL_OK;
}

// Releases what prepare made, except the source tracking table (freed last, after every
// reference into it is gone). The thread must have been joined.
void
sl__pipe_instance_cleanup(sl_pipe_stage *s, uint32_t i)
{
    sl__pipe_instance *inst = &s->instances[i];
    sl_pipeline *p = s->pipeline;
    if (inst->window != NULL) {
        sl__pipe_window_free(inst->window);
        inst->window = NULL;
    }
    if (inst->input != NULL) {
        sl_channel_free(inst->input);
        inst->input = NULL;
        sl_budget_release(p->budget, inst->ring_bytes_reserved, 0);
        inst->ring_bytes_reserved = 0;
    }
    if (inst->state != NULL) {
        if (s->kind == SL__PIPE_SOURCE && s->source_ops->destroy != NULL) {
            s->source_ops->destroy(inst->state);
        } else if (s->kind == SL__PIPE_SINK && s->sink_ops->destroy != NULL) {
            s->sink_ops->destroy(inst->state);
        } else if (s->kind != SL__PIPE_SOURCE && s->kind != SL__PIPE_SINK && s->cfg.fini != NULL &&
                   s->cfg.init != NULL) {
            s->cfg.fini(inst->state);
        }
        inst->state = NULL;
    }
    if (inst->rr_next != NULL) {
        sl_free(inst->rr_next, s->out_count * sizeof(uint32_t));
        inst->rr_next = NULL;
    }
    sl_timeacct_free(inst->time);
    inst->time = NULL;
}

void
sl__pipeline_instance_finished(sl_pipeline *p)
{
    pthread_mutex_lock(&p->mutex);
    SL_ASSERT(p->running > 0);
    p->running--;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
}

void
sl__pipeline_fail(sl_pipeline *p, int err)
{
    int expected = 0;
    atomic_compare_exchange_strong(&p->error, &expected, err);
    atomic_store(&p->aborting, 1);
    pthread_mutex_lock(&p->mutex);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
}

void
sl__pipeline_set_controller(sl_pipeline *p, sl__pipe_controller_fn fn,
                            sl__pipe_controller_free_fn free_fn, void *state)
{
    SL_ASSERT(!p->started);
    p->controller_fn = fn;
    p->controller_free = free_fn;
    p->controller_state = state;
}

// ---- running ----------------------------------------------------------------------------------

static void *
controller_main(void *arg)
{
    sl_pipeline *p = arg;
    int64_t next = sl_now_ns() + PIPE_CONTROL_PERIOD_NS;
    // Runs until sl_pipeline_stop or free: the pipeline's one long-lived timer loop.
    while (atomic_load(&p->controller_stop) == 0) {
        int64_t now = sl_now_ns();
        if (now < next) {
            sl__pipe_sleep_ns(SL_MIN(next - now, SL_PIPE_WAIT_SLICE_NS * 5));
            continue;
        }
        next += PIPE_CONTROL_PERIOD_NS;
        if (next < now) {
            next = now + PIPE_CONTROL_PERIOD_NS;
        }
        sl__pipeline_sample(p, now);
        if (p->controller_fn != NULL && !sl__pipeline_aborting(p)) {
            p->controller_fn(p, p->controller_state, now);
        }
    }
    return NULL;
}

static int
start_instances(sl_pipeline *p, char *err, size_t err_size)
{
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->topo[t];
        uint32_t n = atomic_load(&s->parallelism);
        for (uint32_t i = 0; i < n; i++) {
            int rc = sl__pipe_instance_prepare(s, i, err, err_size);
            if (rc != SL_OK) {
                return rc;
            }
        }
    }
    int rc = sl__pipeline_metrics_register(p);
    if (rc != SL_OK) {
        err_set(err, err_size, "cannot register metrics", NULL);
        return rc;
    }
    // Sinks first, sources last: a source's first records find their consumers running.
    for (uint32_t t = p->stage_count; t-- > 0;) {
        sl_pipe_stage *s = p->topo[t];
        uint32_t n = atomic_load(&s->parallelism);
        for (uint32_t i = 0; i < n; i++) {
            rc = sl__pipe_instance_spawn(s, i);
            if (rc != SL_OK) {
                err_set(err, err_size, "cannot start a thread", s->name);
                return rc;
            }
        }
    }
    return SL_OK;
}

int
sl_pipeline_start(sl_pipeline *p, char *err, size_t err_size)
{
    if (err != NULL && err_size > 0) {
        err[0] = '\0';
    }
    if (p->started) {
        err_set(err, err_size, "already started", NULL);
        return SL_EINVAL;
    }
    int rc = graph_check(p, err, err_size);
    if (rc != SL_OK) {
        return rc;
    }
    p->started = true;
    rc = start_instances(p, err, err_size);
    if (rc == SL_OK && pthread_create(&p->controller, NULL, controller_main, p) == 0) {
        p->controller_started = true;
    } else if (rc == SL_OK) {
        rc = SL_ENOMEM;
    }
    if (rc != SL_OK) {
        sl_pipeline_stop(p, false, SL_DEADLINE_NOW);
        return rc;
    }
    return SL_OK;
}

int
sl_pipeline_wait(sl_pipeline *p, int64_t deadline_ns)
{
    if (!p->started) {
        return SL_EINVAL;
    }
    pthread_mutex_lock(&p->mutex);
    // Bounded by deadline_ns; slices bound a missed wake-up.
    while (p->running > 0 && atomic_load(&p->error) == 0) {
        int64_t now = sl_now_ns();
        if (now >= deadline_ns) {
            break;
        }
        sl__pipe_cond_wait_until(&p->cond, &p->mutex,
                                 SL_MIN(deadline_ns, now + INT64_C(100000000)));
    }
    int err = atomic_load(&p->error);
    if (err == SL_OK && p->running > 0) {
        err = SL_ETIMEDOUT;
    }
    pthread_mutex_unlock(&p->mutex);
    return err;
}

static void
join_all(sl_pipeline *p)
{
    pthread_mutex_lock(&p->join_mutex);
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->topo[t];
        for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
            sl__pipe_instance *inst = &s->instances[i];
            if (inst->thread_started && !inst->thread_joined) {
                pthread_join(inst->thread, NULL);
                inst->thread_joined = true;
            }
        }
    }
    if (p->controller_started) {
        atomic_store(&p->controller_stop, 1);
        pthread_join(p->controller, NULL);
        p->controller_started = false;
    }
    pthread_mutex_unlock(&p->join_mutex);
}

void
sl_pipeline_stop(sl_pipeline *p, bool drain, int64_t deadline_ns)
{
    if (!p->started) {
        return;
    }
    atomic_store(&p->stop_sources, 1);
    if (drain) {
        // Sources stop polling and end their output; the rest drains to the sinks.
        int rc = sl_pipeline_wait(p, deadline_ns);
        SL_UNUSED(rc); // the caller reads the outcome from sl_pipeline_wait
    }
    atomic_store(&p->aborting, 1);
    pthread_mutex_lock(&p->mutex);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
    join_all(p);
}

void
sl_pipeline_free(sl_pipeline *p)
{
    if (p == NULL) {
        return;
    }
    sl_pipeline_stop(p, false, SL_DEADLINE_NOW);
    sl__pipeline_metrics_unregister(p);
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->stages[t];
        for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
            sl__pipe_instance_cleanup(s, i);
        }
    }
    // Every reference into the tracking tables is gone now (channels and windows freed).
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->stages[t];
        for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
            sl__pipe_source_track_free(s->instances[i].track);
            s->instances[i].track = NULL;
        }
    }
    if (p->controller_free != NULL) {
        p->controller_free(p->controller_state);
    }
    for (uint32_t t = 0; t < p->stage_count; t++) {
        stage_free(p->stages[t]);
    }
    sl_budget_free(p->budget);
    pthread_mutex_destroy(&p->mutex);
    pthread_mutex_destroy(&p->join_mutex);
    pthread_mutex_destroy(&p->stats_mutex);
    pthread_mutex_destroy(&p->rescale_mutex);
    pthread_cond_destroy(&p->cond);
    sl_free(p, sizeof(*p));
}
