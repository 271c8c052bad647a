// Instance worker loops: every stage instance runs one of these on its own thread. A source polls
// as many records as downstream credit and its tracking table allow; an operator or sink takes
// batches from its input channel, processes them, and returns their credit. Each loop accounts
// its time as busy / backpressured / idle, parks when a rescale asks, and on end of input tells
// its downstream, so the end travels through the graph and everything drains.
#include <stdatomic.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Sleep of a source waiting for its records to complete after its input ended.
#define STAGE_DRAIN_POLL_NS INT64_C(1000000)
// Pop timeout of an instance whose stage may be rescaled, so it parks promptly.
#define STAGE_PARK_POLL_NS INT64_C(5000000)
// Sleep of a parked instance between checks of the rescale flag.
#define STAGE_PARKED_POLL_NS INT64_C(100000)
// Most records a source is asked for at once (keeps commits and credit checks frequent).
#define STAGE_SOURCE_POLL_MAX 256u

void
sl__pipe_instance_enter(sl__pipe_instance *inst, sl_time_state state)
{
    if (inst->time_state != state) {
        inst->time_state = state;
        sl_timeacct_enter(inst->time, state, sl_now_ns());
    }
}

void
sl__pipe_ctx_count_dropped(sl_pipe_ctx *ctx, uint64_t n)
{
    sl_counter_add(&ctx->instance->dropped_total, n);
}

uint32_t
sl__pipe_ctx_instance(const sl_pipe_ctx *ctx)
{
    return ctx->instance->index;
}

// ---- sources ------------------------------------------------------------------------------------

int
sl_pipe_source_emit(sl_pipe_ctx *ctx, const sl_pipe_record *record, sl_pipe_origin origin)
{
    SL_ASSERT(ctx != NULL && record != NULL);
    sl__pipe_instance *inst = ctx->instance;
    SL_ASSERT(inst->stage->kind == SL__PIPE_SOURCE);
    sl_pipeline *p = inst->stage->pipeline;
    sl__pipe_instance_enter(inst, SL_TIME_BUSY);
    sl__pipe_track *t = NULL;
    int err = sl__pipe_source_track_add(inst->track, origin, &t);
    // The source emitted past max_records and the table is full: wait for completions.
    while (err == SL_EFULL) {
        if (sl__pipeline_aborting(p)) {
            return SL_ECLOSED;
        }
        sl__pipe_instance_enter(inst, SL_TIME_BACKPRESSURED);
        if (sl__pipe_source_track_commit(inst->track, inst->stage->source_ops, inst->state) == 0) {
            sl__pipe_sleep_ns(STAGE_DRAIN_POLL_NS);
        }
        err = sl__pipe_source_track_add(inst->track, origin, &t);
    }
    sl__pipe_instance_enter(inst, SL_TIME_BUSY);
    if (err != SL_OK) {
        return err;
    }
    err = sl__pipe_route_emit(inst, record, t);
    if (err != SL_OK) {
        sl__pipe_track_poison(t); // some copies may have gone: never commit it
    } else {
        ctx->emitted++;
    }
    sl__pipe_track_release(t);
    return err;
}

static uint32_t
source_ask(sl__pipe_instance *inst)
{
    int64_t credit = sl__pipe_route_credit(inst);
    int64_t room = sl__pipe_source_track_room(inst->track);
    return (uint32_t)SL_MIN(SL_MIN(credit, room), (int64_t)STAGE_SOURCE_POLL_MAX);
}

// After the input ended (or the pipeline was told to stop): commits as records complete, until
// none is in flight or the pipeline aborts; keeps the source's session alive meanwhile.
static void
source_drain(sl__pipe_instance *inst)
{
    sl_pipeline *p = inst->stage->pipeline;
    const sl_pipe_source_ops *ops = inst->stage->source_ops;
    int64_t last_poll = sl_now_ns();
    sl__pipe_instance_enter(inst, SL_TIME_IDLE);
    // Bounded by the pipeline's abort (sl_pipeline_stop's deadline).
    while (sl__pipe_source_track_inflight(inst->track) > 0 && !sl__pipeline_aborting(p)) {
        sl__pipe_source_track_commit(inst->track, ops, inst->state);
        if (sl_now_ns() - last_poll >= SL_PIPE_TICK_NS) {
            (void)ops->poll(inst->state, &inst->ctx, 0, SL_DEADLINE_NOW);
            last_poll = sl_now_ns();
        }
        sl__pipe_sleep_ns(STAGE_DRAIN_POLL_NS);
    }
    sl__pipe_source_track_commit(inst->track, ops, inst->state);
}

static void
source_run(sl__pipe_instance *inst)
{
    sl_pipeline *p = inst->stage->pipeline;
    const sl_pipe_source_ops *ops = inst->stage->source_ops;
    int64_t last_poll = sl_now_ns();
    // Runs until the input ends, the pipeline stops, or an error.
    while (atomic_load(&p->stop_sources) == 0 && !sl__pipeline_aborting(p)) {
        sl__pipe_source_track_commit(inst->track, ops, inst->state);
        uint32_t ask = source_ask(inst);
        int64_t now = sl_now_ns();
        if (ask == 0) {
            sl__pipe_instance_enter(inst, SL_TIME_BACKPRESSURED);
            if (now - last_poll >= SL_PIPE_TICK_NS) {
                int rc = ops->poll(inst->state, &inst->ctx, 0, SL_DEADLINE_NOW);
                last_poll = sl_now_ns();
                if (rc < 0 && rc != SL_EAGAIN && rc != SL_ECLOSED) {
                    sl__pipeline_fail(p, rc);
                    return;
                }
            }
            sl__pipe_route_wait_credit(inst, now + SL_PIPE_WAIT_SLICE_NS);
            continue;
        }
        // Waiting for data inside poll is idle; sl_pipe_source_emit switches to busy.
        sl__pipe_instance_enter(inst, SL_TIME_IDLE);
        inst->ctx.emitted = 0;
        int rc = ops->poll(inst->state, &inst->ctx, ask, now + SL_PIPE_TICK_NS);
        last_poll = sl_now_ns();
        if (rc == SL_ECLOSED) {
            break;
        }
        if (rc < 0 && rc != SL_EAGAIN) {
            if (!sl__pipeline_aborting(p)) {
                sl__pipeline_fail(p, rc);
            }
            return;
        }
    }
    sl__pipe_route_finish(inst);
    source_drain(inst);
}

// ---- operators and sinks ----------------------------------------------------------------------

static void
item_view(const sl__pipe_item *item, sl_pipe_record *rec)
{
    rec->key = item->key_size > 0 ? item->bytes : NULL;
    rec->key_size = item->key_size;
    rec->value = item->value_size > 0 ? item->bytes + item->key_size : NULL;
    rec->value_size = item->value_size;
    rec->timestamp_ns = item->timestamp_ns;
}

// Processes one input of an operator. The item's reference is released here (or moved into a
// window); the item's memory is freed by the caller.
static int
operator_one(sl__pipe_instance *inst, sl__pipe_item *item)
{
    sl_pipe_stage *s = inst->stage;
    sl_pipe_record rec;
    item_view(item, &rec);
    inst->ctx.input_track = item->track;
    inst->ctx.input = &rec;
    inst->ctx.emitted = 0;
    int err = SL_OK;
    switch (s->kind) {
    case SL__PIPE_PROCESS:
        err = s->process_fn(&inst->ctx, &rec, inst->state);
        break;
    case SL__PIPE_FILTER:
        if (s->filter_fn(&rec, inst->state)) {
            err = sl_pipe_emit(&inst->ctx, &rec);
        }
        break;
    case SL__PIPE_WINDOW:
        return sl__pipe_window_add(inst, item); // takes the reference
    default:
        SL_ASSERT(false);
    }
    if (err != SL_OK) {
        sl__pipe_track_poison(item->track);
    }
    sl__pipe_track_release(item->track);
    inst->ctx.input_track = NULL;
    return err;
}

// Writes one record to a sink, retrying while it says SL_EAGAIN (backpressured).
static int
sink_one(sl__pipe_instance *inst, sl__pipe_item *item)
{
    const sl_pipe_sink_ops *ops = inst->stage->sink_ops;
    sl_pipeline *p = inst->stage->pipeline;
    sl_pipe_record rec;
    item_view(item, &rec);
    // The item's reference becomes the sink's done handle.
    sl_pipe_done_ref *ref = (sl_pipe_done_ref *)item->track;
    int err = ops->write(inst->state, &rec, ref);
    // Bounded by the pipeline's abort; each retry follows a poll of up to one tick.
    while (err == SL_EAGAIN) {
        sl__pipe_instance_enter(inst, SL_TIME_BACKPRESSURED);
        if (sl__pipeline_aborting(p)) {
            err = SL_ECLOSED;
            break;
        }
        if (ops->poll != NULL) {
            ops->poll(inst->state, sl_now_ns() + SL_PIPE_WAIT_SLICE_NS);
        } else {
            sl__pipe_sleep_ns(STAGE_DRAIN_POLL_NS);
        }
        err = ops->write(inst->state, &rec, ref);
    }
    sl__pipe_instance_enter(inst, SL_TIME_BUSY);
    if (err != SL_OK) {
        sl__pipe_track_poison(item->track);
        sl__pipe_track_release(item->track);
    }
    return err;
}

static int
batch_run(sl__pipe_instance *inst, sl__pipe_item **items, uint32_t n)
{
    sl_pipe_stage *s = inst->stage;
    int err = SL_OK;
    uint32_t i = 0;
    for (; i < n && err == SL_OK; i++) {
        sl__pipe_item *item = items[i];
        err = s->kind == SL__PIPE_SINK ? sink_one(inst, item) : operator_one(inst, item);
        int64_t latency = sl_now_ns() - item->enqueued_ns;
        sl_histogram_record(s->latency, (uint64_t)SL_MAX(latency, 0));
        sl_histogram_record(s->latency_window, (uint64_t)SL_MAX(latency, 0));
        sl_free(item, sl__pipe_item_bytes(item));
    }
    // After a failure, the rest of the batch is dropped without completing (never committed).
    for (; i < n; i++) {
        sl__pipe_track_poison(items[i]->track);
        sl__pipe_track_release(items[i]->track);
        sl_free(items[i], sl__pipe_item_bytes(items[i]));
    }
    sl_counter_add(&inst->in_total, n);
    sl__pipe_credit_return(inst, n);
    return err;
}

// Waits while a rescale has the stage parked. Returns true when the instance must retire.
static bool
park_check(sl__pipe_instance *inst)
{
    sl_pipe_stage *s = inst->stage;
    if (atomic_load(&s->park) == 0) {
        return false;
    }
    sl__pipe_instance_enter(inst, SL_TIME_IDLE);
    atomic_store(&inst->parked, 1);
    // Bounded by the rescale (which times out) and the pipeline's abort.
    while (atomic_load(&s->park) != 0 && !sl__pipeline_aborting(s->pipeline)) {
        sl__pipe_sleep_ns(STAGE_PARKED_POLL_NS);
    }
    atomic_store(&inst->parked, 0);
    return atomic_load(&inst->retire) != 0;
}

static void
sink_idle(sl__pipe_instance *inst, int64_t *last_poll)
{
    const sl_pipe_sink_ops *ops = inst->stage->sink_ops;
    int64_t now = sl_now_ns();
    if (ops->poll != NULL && now - *last_poll >= SL_PIPE_TICK_NS) {
        ops->poll(inst->state, now);
        *last_poll = now;
    }
}

static void
sink_flush(sl__pipe_instance *inst)
{
    const sl_pipe_sink_ops *ops = inst->stage->sink_ops;
    if (ops->flush == NULL) {
        return;
    }
    sl_pipeline *p = inst->stage->pipeline;
    sl__pipe_instance_enter(inst, SL_TIME_BACKPRESSURED);
    // Bounded by the pipeline's abort: one tick per attempt.
    while (!sl__pipeline_aborting(p)) {
        int err = ops->flush(inst->state, sl_now_ns() + SL_PIPE_TICK_NS);
        if (err == SL_OK) {
            break;
        }
        if (err != SL_ETIMEDOUT) {
            sl__pipeline_fail(p, err);
            break;
        }
    }
}

static void
input_run(sl__pipe_instance *inst)
{
    sl_pipe_stage *s = inst->stage;
    sl_pipeline *p = s->pipeline;
    sl__pipe_item *items[SL_PIPE_BATCH_MAX];
    int64_t wait_ns = s->rescalable ? STAGE_PARK_POLL_NS : SL_PIPE_TICK_NS;
    if (s->kind == SL__PIPE_WINDOW) {
        wait_ns = SL_MIN(wait_ns, INT64_C(10000000));
    }
    int64_t last_poll = sl_now_ns();
    // Runs until the input channel is closed and drained, or the pipeline aborts.
    while (!sl__pipeline_aborting(p)) {
        if (park_check(inst)) {
            return; // retired by a rescale: its downstream counts were adjusted there
        }
        sl__pipe_instance_enter(inst, SL_TIME_IDLE);
        uint32_t n = 0;
        int err = sl_channel_pop_batch(inst->input, (void **)items, NULL, SL_PIPE_BATCH_MAX, &n,
                                       sl_now_ns() + wait_ns);
        if (err == SL_ECLOSED) {
            break;
        }
        if (err == SL_OK) {
            sl__pipe_instance_enter(inst, SL_TIME_BUSY);
            err = batch_run(inst, items, n);
            if (err != SL_OK) {
                sl__pipeline_fail(p, err);
                return;
            }
        }
        if (s->kind == SL__PIPE_SINK) {
            sink_idle(inst, &last_poll);
        } else if (s->kind == SL__PIPE_WINDOW) {
            err = sl__pipe_window_tick(inst, false);
            if (err != SL_OK) {
                sl__pipeline_fail(p, err);
                return;
            }
        }
    }
    if (sl__pipeline_aborting(p)) {
        return;
    }
    if (s->kind == SL__PIPE_WINDOW) {
        int err = sl__pipe_window_tick(inst, true);
        if (err != SL_OK) {
            sl__pipeline_fail(p, err);
            return;
        }
    }
    if (s->kind == SL__PIPE_SINK) {
        sink_flush(inst);
    } else {
        sl__pipe_route_finish(inst);
    }
}

void *
sl__pipe_instance_main(void *arg)
{
    sl__pipe_instance *inst = arg;
    sl_pipeline *p = inst->stage->pipeline;
    if (inst->stage->kind == SL__PIPE_SOURCE) {
        source_run(inst);
    } else {
        input_run(inst);
    }
    sl__pipe_instance_enter(inst, SL_TIME_IDLE);
    atomic_store(&inst->finished, 1);
    sl__pipeline_instance_finished(p);
    return NULL;
}
