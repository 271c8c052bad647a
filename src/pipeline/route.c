// Routing and credit on the pipeline's edges: a record emitted by an instance is copied to the
// downstream instance(s) its edge's route picks (forward, round-robin, broadcast, key-hash), each
// copy spending one record of the target's credit first. Credit counts what a stage holds (queued
// plus being processed), so no stage ever holds more than its queue capacity; a pusher without
// credit waits on the target's condition variable and that time is backpressured.
#include <stdatomic.h>
#include <string.h>

#include "pipeline/keyhash.h"

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// A paused edge (rescale in progress) is re-checked this often.
#define ROUTE_PAUSE_POLL_NS INT64_C(100000)

static void
held_max_note(sl__pipe_instance *to, int64_t credit_after)
{
    int64_t held = to->capacity - credit_after;
    int64_t max = atomic_load_explicit(&to->held_max, memory_order_relaxed);
    // Bounded: each failed exchange sees a larger max, and held is fixed.
    while (held > max &&
           !atomic_compare_exchange_weak_explicit(&to->held_max, &max, held, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static bool
credit_try(sl__pipe_instance *to)
{
    int64_t c = atomic_load_explicit(&to->credit, memory_order_relaxed);
    // Bounded by contention: every failed exchange means another pusher took credit.
    while (c > 0) {
        if (atomic_compare_exchange_weak(&to->credit, &c, c - 1)) {
            held_max_note(to, c - 1);
            return true;
        }
    }
    return false;
}

// Waits until to has credit, deadline_ns, or abort. Caller holds nothing.
static void
credit_wait(sl__pipe_instance *to, int64_t deadline_ns)
{
    const sl_pipeline *p = to->stage->pipeline;
    pthread_mutex_lock(&to->credit_mutex);
    atomic_fetch_add(&to->credit_waiters, 1);
    int64_t slice = SL_MIN(deadline_ns, sl_now_ns() + SL_PIPE_WAIT_SLICE_NS);
    if (atomic_load(&to->credit) <= 0 && !sl__pipeline_aborting(p)) {
        sl__pipe_cond_wait_until(&to->credit_cond, &to->credit_mutex, slice);
    }
    atomic_fetch_sub(&to->credit_waiters, 1);
    pthread_mutex_unlock(&to->credit_mutex);
}

void
sl__pipe_credit_return(sl__pipe_instance *inst, int64_t n)
{
    atomic_fetch_add(&inst->credit, n);
    if (atomic_load(&inst->credit_waiters) > 0) {
        pthread_mutex_lock(&inst->credit_mutex);
        pthread_cond_broadcast(&inst->credit_cond);
        pthread_mutex_unlock(&inst->credit_mutex);
    }
}

static int
credit_take(sl__pipe_instance *from, sl__pipe_instance *to)
{
    if (credit_try(to)) {
        return SL_OK;
    }
    sl_time_state prev = from->time_state;
    sl__pipe_instance_enter(from, SL_TIME_BACKPRESSURED);
    const sl_pipeline *p = from->stage->pipeline;
    int err = SL_OK;
    // Bounded by the pipeline's abort: every wait is a slice of SL_PIPE_WAIT_SLICE_NS.
    while (!credit_try(to)) {
        if (sl__pipeline_aborting(p)) {
            err = SL_ECLOSED;
            break;
        }
        credit_wait(to, SL_DEADLINE_NEVER);
    }
    sl__pipe_instance_enter(from, prev);
    return err;
}

static int
channel_put(sl__pipe_instance *from, sl__pipe_instance *to, sl__pipe_item *item)
{
    uint32_t bytes = (uint32_t)sl__pipe_item_bytes(item);
    int err = sl_channel_push(to->input, item, bytes, SL_DEADLINE_NOW);
    if (err != SL_EAGAIN) {
        return err;
    }
    // Credit guarantees a ring slot, so this is the byte cap or the memory budget.
    sl_time_state prev = from->time_state;
    sl__pipe_instance_enter(from, SL_TIME_BACKPRESSURED);
    const sl_pipeline *p = from->stage->pipeline;
    // Bounded by the pipeline's abort, one slice at a time.
    while (err == SL_EAGAIN || err == SL_ETIMEDOUT) {
        if (sl__pipeline_aborting(p)) {
            err = SL_ECLOSED;
            break;
        }
        err = sl_channel_push(to->input, item, bytes, sl_now_ns() + SL_PIPE_WAIT_SLICE_NS);
    }
    sl__pipe_instance_enter(from, prev);
    return err;
}

static int
push_copy(sl__pipe_instance *from, sl__pipe_instance *to, const sl_pipe_record *rec,
          sl__pipe_track *track)
{
    int err = credit_take(from, to);
    if (err != SL_OK) {
        return err;
    }
    size_t bytes = sizeof(sl__pipe_item) + rec->key_size + rec->value_size;
    sl__pipe_item *item = sl_alloc(bytes);
    if (item == NULL) {
        sl__pipe_credit_return(to, 1);
        return SL_ENOMEM;
    }
    item->key_size = rec->key_size;
    item->value_size = rec->value_size;
    item->timestamp_ns = rec->timestamp_ns;
    if (rec->key_size > 0) {
        memcpy(item->bytes, rec->key, rec->key_size);
    }
    if (rec->value_size > 0) {
        memcpy(item->bytes + rec->key_size, rec->value, rec->value_size);
    }
    item->track = track;
    sl__pipe_track_ref(track, 1);
    item->enqueued_ns = sl_now_ns();
    err = channel_put(from, to, item);
    if (err != SL_OK) {
        sl__pipe_track_release(track);
        sl_free(item, bytes);
        sl__pipe_credit_return(to, 1);
        return err;
    }
    sl_counter_inc(&from->out_total);
    return SL_OK;
}

// Announces an emitter on a stage that may be rescaled; waits while a rescale pauses it.
static int
edge_enter(sl__pipe_instance *from, sl_pipe_stage *to)
{
    if (!to->rescalable) {
        return SL_OK;
    }
    const sl_pipeline *p = from->stage->pipeline;
    bool waited = false;
    sl_time_state prev = from->time_state;
    int err = SL_OK;
    // Bounded by the rescale's own timeout and the pipeline's abort.
    for (;;) {
        atomic_fetch_add(&to->emitters, 1);
        if (atomic_load(&to->pause_in) == 0) {
            break;
        }
        atomic_fetch_sub(&to->emitters, 1);
        if (sl__pipeline_aborting(p)) {
            err = SL_ECLOSED;
            break;
        }
        if (!waited) {
            sl__pipe_instance_enter(from, SL_TIME_BACKPRESSURED);
            waited = true;
        }
        sl__pipe_sleep_ns(ROUTE_PAUSE_POLL_NS);
    }
    if (waited) {
        sl__pipe_instance_enter(from, prev);
    }
    return err;
}

static void
edge_leave(sl_pipe_stage *to)
{
    if (to->rescalable) {
        atomic_fetch_sub(&to->emitters, 1);
    }
}

static int
emit_edge(sl__pipe_instance *from, uint32_t out_index, const sl_pipe_record *rec,
          sl__pipe_track *track)
{
    sl_pipeline *p = from->stage->pipeline;
    const sl__pipe_edge *e = &p->edges[from->stage->out_edges[out_index]];
    sl_pipe_stage *to = e->to;
    int err = edge_enter(from, to);
    if (err != SL_OK) {
        return err;
    }
    uint32_t n = atomic_load_explicit(&to->parallelism, memory_order_acquire);
    switch (e->route) {
    case SL_ROUTE_FORWARD:
        err = push_copy(from, &to->instances[from->index % n], rec, track);
        break;
    case SL_ROUTE_ROUND_ROBIN: {
        uint32_t i = from->rr_next[out_index]++ % n;
        err = push_copy(from, &to->instances[i], rec, track);
        break;
    }
    case SL_ROUTE_KEY_HASH: {
        uint32_t i = sl__pipe_key_route(rec->key, rec->key_size, n);
        err = push_copy(from, &to->instances[i], rec, track);
        break;
    }
    case SL_ROUTE_BROADCAST:
        for (uint32_t i = 0; i < n && err == SL_OK; i++) {
            err = push_copy(from, &to->instances[i], rec, track);
        }
        break;
    default:
        SL_ASSERT(false);
    }
    edge_leave(to);
    return err;
}

int
sl__pipe_route_emit(sl__pipe_instance *inst, const sl_pipe_record *rec, sl__pipe_track *track)
{
    if ((uint64_t)rec->key_size + rec->value_size > SL_PIPE_RECORD_BYTES_MAX) {
        return SL_ETOOBIG;
    }
    if ((rec->key_size > 0 && rec->key == NULL) || (rec->value_size > 0 && rec->value == NULL)) {
        return SL_EINVAL;
    }
    for (uint32_t o = 0; o < inst->stage->out_count; o++) {
        int err = emit_edge(inst, o, rec, track);
        if (err != SL_OK) {
            return err;
        }
    }
    return SL_OK;
}

int64_t
sl__pipe_route_credit(const sl__pipe_instance *inst)
{
    const sl_pipeline *p = inst->stage->pipeline;
    int64_t min = INT64_MAX;
    for (uint32_t o = 0; o < inst->stage->out_count; o++) {
        const sl_pipe_stage *to = p->edges[inst->stage->out_edges[o]].to;
        uint32_t n = atomic_load_explicit(&to->parallelism, memory_order_acquire);
        for (uint32_t i = 0; i < n; i++) {
            int64_t c = atomic_load_explicit(&to->instances[i].credit, memory_order_relaxed);
            min = SL_MIN(min, c);
        }
    }
    return min == INT64_MAX ? 0 : SL_MAX(min, 0);
}

void
sl__pipe_route_wait_credit(sl__pipe_instance *inst, int64_t deadline_ns)
{
    sl_pipeline *p = inst->stage->pipeline;
    for (uint32_t o = 0; o < inst->stage->out_count; o++) {
        sl_pipe_stage *to = p->edges[inst->stage->out_edges[o]].to;
        uint32_t n = atomic_load_explicit(&to->parallelism, memory_order_acquire);
        for (uint32_t i = 0; i < n; i++) {
            if (atomic_load(&to->instances[i].credit) <= 0) {
                credit_wait(&to->instances[i], deadline_ns);
                return;
            }
        }
    }
}

void
sl__pipe_route_finish(sl__pipe_instance *inst)
{
    sl_pipeline *p = inst->stage->pipeline;
    // The topology lock: a rescale changes parallelism and the open counts under it.
    pthread_mutex_lock(&p->mutex);
    for (uint32_t o = 0; o < inst->stage->out_count; o++) {
        sl_pipe_stage *to = p->edges[inst->stage->out_edges[o]].to;
        uint32_t n = atomic_load(&to->parallelism);
        for (uint32_t i = 0; i < n; i++) {
            sl__pipe_instance *t = &to->instances[i];
            if (atomic_fetch_sub(&t->upstream_open, 1) == 1) {
                sl_channel_close(t->input);
            }
        }
    }
    pthread_mutex_unlock(&p->mutex);
}

int
sl_pipe_emit(sl_pipe_ctx *ctx, const sl_pipe_record *record)
{
    SL_ASSERT(ctx != NULL && record != NULL);
    sl__pipe_instance *inst = ctx->instance;
    if (inst->stage->kind == SL__PIPE_SOURCE) {
        // A source record without an origin: lane 0, token = its ordinal in this instance.
        sl_pipe_origin origin = {.lane = 0, .token = sl_counter_get(&inst->out_total)};
        return sl_pipe_source_emit(ctx, record, origin);
    }
    SL_ASSERT(ctx->input_track != NULL);
    int err = sl__pipe_route_emit(inst, record, ctx->input_track);
    if (err == SL_OK) {
        ctx->emitted++;
    }
    return err;
}
