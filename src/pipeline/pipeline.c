// The pipeline's life (the graph is built in graph.c): sl_pipeline_start sizes every instance's
// credit and input channel from the pipeline's memory budget and starts one thread per instance
// plus a controller thread that samples rates once a second (and runs the autoscaler when one is
// attached). Stop closes the sources first so records in flight can drain and commit; free joins
// and releases everything.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "pipeline/autoscale.h"
#include "pipeline/pipeline_internal.h"

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

void
sl__pipe_err_set(char *err, size_t err_size, const char *msg, const char *name)
{
    if (err != NULL && err_size > 0) {
        snprintf(err, err_size, "%s%s%s", name != NULL ? name : "", name != NULL ? ": " : "", msg);
    }
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
    // The channel's worst case, reserved once: its ring, queue_bytes of records, and the
    // per-record overhead of a full queue. Reserving up front (instead of per push) keeps the
    // budget's lock off the record path, and a pipeline that does not fit fails at start.
    uint64_t ring = (uint64_t)pow2_at_least(s->cfg.queue_records) * SL_PIPE_RING_SLOT_BYTES +
                    s->cfg.queue_bytes + (uint64_t)s->cfg.queue_records * SL_RECORD_OVERHEAD_BYTES;
    int err = sl_budget_reserve(p->budget, ring, 0);
    if (err != SL_OK) {
        return err;
    }
    sl_channel_config cc = {
        .name = name,
        .kind = s->spsc_input ? SL_CHANNEL_SPSC : SL_CHANNEL_MPMC,
        .capacity_records = s->cfg.queue_records,
        .capacity_bytes = s->cfg.queue_bytes,
        .budget = NULL, // reserved above
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
            sl__pipe_err_set(err, err_size, "memory budget too small for the tracking table",
                             s->name);
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
            sl__pipe_err_set(err, err_size, "operator init failed", s->name);
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
            sl__pipe_err_set(err, err_size, "memory budget too small for the stage's channels",
                             s->name);
        }
    }
    if (rc == SL_OK) {
        rc = instance_state(s, inst, err, err_size);
    }
    if (rc != SL_OK && err != NULL && err_size > 0 && err[0] == '\0') {
        sl__pipe_err_set(err, err_size, sl_strerror(rc), s->name);
    }
    return rc;
}

int
sl__pipe_instance_spawn(sl_pipe_stage *s, uint32_t i)
{
    sl_pipeline *p = s->pipeline;
    sl__pipe_instance *inst = &s->instances[i];
    // Under the join mutex: a stop that already joined everything must not miss a thread a
    // rescale starts after it.
    pthread_mutex_lock(&p->join_mutex);
    if (p->joined) {
        pthread_mutex_unlock(&p->join_mutex);
        return SL_ECLOSED;
    }
    pthread_mutex_lock(&p->mutex);
    p->running++;
    pthread_mutex_unlock(&p->mutex);
    int err = SL_OK;
    if (pthread_create(&inst->thread, NULL, sl__pipe_instance_main, inst) != 0) {
        sl__pipeline_instance_finished(p);
        err = SL_ENOMEM;
    } else {
        inst->thread_started = true;
    }
    pthread_mutex_unlock(&p->join_mutex);
    return err;
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
    SL_ASSERT(!p->controller_started);
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
        sl__pipe_err_set(err, err_size, "cannot register metrics", NULL);
        return rc;
    }
    // Sinks first, sources last: a source's first records find their consumers running.
    for (uint32_t t = p->stage_count; t-- > 0;) {
        sl_pipe_stage *s = p->topo[t];
        uint32_t n = atomic_load(&s->parallelism);
        for (uint32_t i = 0; i < n; i++) {
            rc = sl__pipe_instance_spawn(s, i);
            if (rc != SL_OK) {
                sl__pipe_err_set(err, err_size, "cannot start a thread", s->name);
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
        sl__pipe_err_set(err, err_size, "already started", NULL);
        return SL_EINVAL;
    }
    int rc = sl__pipeline_graph_check(p, err, err_size);
    if (rc != SL_OK) {
        return rc;
    }
    rc = sl__pipe_autoscale_attach(p);
    if (rc != SL_OK) {
        sl__pipe_err_set(err, err_size, "bad autoscale configuration", NULL);
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

// Joins the controller first (a rescale it runs starts and joins instances), then every
// instance. One caller at a time (stop_mutex).
static void
join_all(sl_pipeline *p)
{
    pthread_mutex_lock(&p->stop_mutex);
    if (p->controller_started) {
        atomic_store(&p->controller_stop, 1);
        pthread_join(p->controller, NULL);
        p->controller_started = false;
    }
    pthread_mutex_lock(&p->join_mutex);
    p->joined = true;
    for (uint32_t t = 0; t < p->stage_count; t++) {
        sl_pipe_stage *s = p->topo[t];
        for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
            sl__pipe_instance *inst = &s->instances[i];
            if (inst->thread_started && !inst->thread_joined) {
                pthread_join(inst->thread, NULL);
                inst->thread_joined = true;
            }
        }
        // The last latencies into the exported histogram (every instance has stopped).
        sl_histogram_merge(s->latency, s->latency_window);
        sl_histogram_reset(s->latency_window);
    }
    pthread_mutex_unlock(&p->join_mutex);
    pthread_mutex_unlock(&p->stop_mutex);
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
        sl__pipe_stage_free(p->stages[t]);
    }
    sl_budget_free(p->budget);
    pthread_mutex_destroy(&p->mutex);
    pthread_mutex_destroy(&p->join_mutex);
    pthread_mutex_destroy(&p->stop_mutex);
    pthread_mutex_destroy(&p->stats_mutex);
    pthread_mutex_destroy(&p->rescale_mutex);
    pthread_cond_destroy(&p->cond);
    sl_free(p, sizeof(*p));
}
