// Changing an operator's parallelism while the pipeline runs, and the read-only views the
// autoscaler uses. A rescale pauses the stage's upstream emitters, waits until the stage holds
// no record, parks its instances, moves window keys to their new owners and starts or retires
// instances under the topology lock, then resumes. Per-key order holds because every record of a
// key is processed by its old owner before the new owner can receive the next one.
#include <string.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Poll period of the rescaler's waits (pause, drain, park).
#define RESCALE_POLL_NS INT64_C(200000)

uint32_t
sl__pipeline_stage_count(const sl_pipeline *p)
{
    return p->stage_count;
}

sl_pipe_stage *
sl__pipeline_stage_at(sl_pipeline *p, uint32_t i)
{
    SL_ASSERT(i < p->stage_count);
    return p->started ? p->topo[i] : p->stages[i];
}

uint32_t
sl__pipe_stage_upstream(const sl_pipe_stage *s, sl_pipe_stage **out, uint32_t cap)
{
    for (uint32_t e = 0; e < s->in_count && e < cap; e++) {
        out[e] = s->pipeline->edges[s->in_edges[e]].from;
    }
    return s->in_count;
}

sl__pipe_kind
sl__pipe_stage_kind(const sl_pipe_stage *s)
{
    return s->kind;
}

uint32_t
sl__pipe_stage_parallelism(const sl_pipe_stage *s)
{
    return atomic_load_explicit(&s->parallelism, memory_order_acquire);
}

uint64_t
sl__pipe_stage_iteration(const sl_pipe_stage *s)
{
    pthread_mutex_lock(&s->pipeline->rescale_mutex);
    uint64_t it = s->iteration;
    pthread_mutex_unlock(&s->pipeline->rescale_mutex);
    return it;
}

int64_t
sl__pipe_stage_held_max(const sl_pipe_stage *s)
{
    int64_t max = 0;
    for (uint32_t i = 0; i < SL_PIPE_PARALLELISM_MAX; i++) {
        max = SL_MAX(max, atomic_load(&s->instances[i].held_max));
    }
    return max;
}

int64_t
sl__pipe_stage_capacity(const sl_pipe_stage *s)
{
    return s->cfg.queue_records;
}

// ---- rescale ------------------------------------------------------------------------------------

// A stage whose input has ended (or an instance finished) cannot be rescaled any more.
static bool
stage_ending(const sl_pipe_stage *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (atomic_load(&s->instances[i].upstream_open) <= 0 ||
            atomic_load(&s->instances[i].finished) != 0) {
            return true;
        }
    }
    return sl__pipeline_aborting(s->pipeline) || atomic_load(&s->pipeline->stop_sources) != 0;
}

typedef enum rescale_wait {
    WAIT_EMITTERS = 0, // no upstream instance is inside an emit into the stage
    WAIT_DRAINED = 1,  // every instance holds nothing
    WAIT_PARKED = 2,   // every instance is parked
} rescale_wait;

static bool
wait_done(const sl_pipe_stage *s, uint32_t n, rescale_wait what)
{
    if (what == WAIT_EMITTERS) {
        return atomic_load(&s->emitters) == 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const sl__pipe_instance *inst = &s->instances[i];
        if (what == WAIT_DRAINED && atomic_load(&inst->credit) != inst->capacity) {
            return false;
        }
        if (what == WAIT_PARKED && atomic_load(&inst->parked) == 0) {
            return false;
        }
    }
    return true;
}

// SL_OK, SL_ETIMEDOUT at deadline_ns, SL_EBUSY when the stage started ending meanwhile.
static int
wait_for(const sl_pipe_stage *s, uint32_t n, rescale_wait what, int64_t deadline_ns)
{
    // Bounded by deadline_ns.
    while (!wait_done(s, n, what)) {
        if (stage_ending(s, n)) {
            return SL_EBUSY;
        }
        if (sl_now_ns() >= deadline_ns) {
            return SL_ETIMEDOUT;
        }
        sl__pipe_sleep_ns(RESCALE_POLL_NS);
    }
    return SL_OK;
}

// Under the topology lock, with the stage drained and parked: prepares new instances, moves
// window keys, adjusts downstream open counts and publishes the new parallelism.
static int
rescale_apply(sl_pipe_stage *s, uint32_t from, uint32_t to)
{
    sl_pipeline *p = s->pipeline;
    int32_t open = atomic_load(&s->instances[0].upstream_open);
    for (uint32_t i = from; i < to; i++) {
        char err[128];
        int rc = sl__pipe_instance_prepare(s, i, err, sizeof(err));
        atomic_store(&s->instances[i].upstream_open, open);
        if (rc != SL_OK) {
            for (uint32_t j = from; j <= i; j++) {
                sl__pipe_instance_cleanup(s, j);
            }
            return rc;
        }
    }
    if (s->kind == SL__PIPE_WINDOW) {
        for (uint32_t i = 0; i < from; i++) {
            int rc = sl__pipe_window_migrate(s, i, to);
            SL_ASSERT(rc == SL_OK);
        }
    }
    for (uint32_t o = 0; o < s->out_count; o++) {
        sl_pipe_stage *d = p->edges[s->out_edges[o]].to;
        uint32_t dn = atomic_load(&d->parallelism);
        for (uint32_t i = 0; i < dn; i++) {
            atomic_fetch_add(&d->instances[i].upstream_open, (int32_t)to - (int32_t)from);
        }
    }
    for (uint32_t i = to; i < from; i++) {
        atomic_store(&s->instances[i].retire, 1);
    }
    atomic_store_explicit(&s->parallelism, to, memory_order_release);
    return SL_OK;
}

// After the stage resumed: starts new threads, joins retired instances and frees them.
static void
rescale_finish(sl_pipe_stage *s, uint32_t from, uint32_t to)
{
    sl_pipeline *p = s->pipeline;
    for (uint32_t i = from; i < to; i++) {
        if (sl__pipe_instance_spawn(s, i) != SL_OK) {
            sl__pipeline_fail(p, SL_ENOMEM);
        }
    }
    for (uint32_t i = to; i < from; i++) {
        sl__pipe_instance *inst = &s->instances[i];
        pthread_mutex_lock(&p->join_mutex);
        if (inst->thread_started && !inst->thread_joined) {
            pthread_join(inst->thread, NULL);
            inst->thread_joined = true;
        }
        pthread_mutex_unlock(&p->join_mutex);
        // Stats readers walk instances under the stats mutex.
        pthread_mutex_lock(&p->stats_mutex);
        sl__pipe_instance_cleanup(s, i);
        pthread_mutex_unlock(&p->stats_mutex);
        atomic_store(&inst->retire, 0);
    }
}

static int
rescale_locked(sl_pipe_stage *s, uint32_t to)
{
    sl_pipeline *p = s->pipeline;
    uint32_t from = atomic_load(&s->parallelism);
    if (to == from) {
        return SL_OK;
    }
    if (stage_ending(s, from)) {
        return SL_EBUSY;
    }
    int64_t deadline = sl_deadline_after_ms(SL_PIPE_RESCALE_TIMEOUT_MS);
    atomic_store(&s->pause_in, 1);
    int rc = wait_for(s, from, WAIT_EMITTERS, deadline);
    if (rc == SL_OK) {
        rc = wait_for(s, from, WAIT_DRAINED, deadline);
    }
    if (rc == SL_OK) {
        atomic_store(&s->park, 1);
        rc = wait_for(s, from, WAIT_PARKED, deadline);
    }
    if (rc == SL_OK) {
        pthread_mutex_lock(&p->mutex);
        rc = stage_ending(s, from) ? SL_EBUSY : rescale_apply(s, from, to);
        pthread_mutex_unlock(&p->mutex);
    }
    atomic_store(&s->park, 0);
    if (rc == SL_OK) {
        rescale_finish(s, from, to);
        s->iteration++;
    }
    atomic_store(&s->pause_in, 0);
    return rc;
}

int
sl__pipe_stage_rescale(sl_pipe_stage *s, uint32_t parallelism)
{
    SL_ASSERT(s != NULL);
    if ((s->kind != SL__PIPE_PROCESS && s->kind != SL__PIPE_FILTER && s->kind != SL__PIPE_WINDOW) ||
        parallelism < s->cfg.parallelism_min || parallelism > s->cfg.parallelism_max) {
        return SL_EINVAL;
    }
    sl_pipeline *p = s->pipeline;
    if (!p->started || !s->rescalable) {
        return !p->started ? SL_EBUSY : SL_EINVAL;
    }
    pthread_mutex_lock(&p->rescale_mutex);
    int rc = rescale_locked(s, parallelism);
    pthread_mutex_unlock(&p->rescale_mutex);
    return rc;
}
