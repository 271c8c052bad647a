// Built-in process functions (builtin_ops.h): delay models a slow stage (busy-spin or sleep per
// record), sample keeps one input in N and counts the rest as dropped by policy, ratelimit holds
// records to a token bucket and counts its waits as backpressured, not busy.
#include "pipeline/builtin_ops.h"

#include <sched.h>

#include <sluice/ratelimit.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Longest single sleep of the rate limiter before it re-checks the pipeline's stop flag.
#define OPS_RATELIMIT_SLEEP_MAX_NS INT64_C(10000000)

typedef struct sample_state {
    uint32_t keep_one_in;
    uint64_t seen;
} sample_state;

typedef struct ratelimit_state {
    sl_token_bucket bucket;
} ratelimit_state;

int
sl_pipe_op_delay(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    const sl_pipe_delay_config *cfg = state;
    int64_t until = sl_now_ns() + (int64_t)cfg->per_record_ns;
    if (cfg->spin) {
        // Bounded by until.
        while (sl_now_ns() < until) {
            atomic_signal_fence(memory_order_seq_cst);
        }
    } else if (cfg->per_record_ns > 0) {
        sl__pipe_sleep_ns((int64_t)cfg->per_record_ns);
    }
    return sl_pipe_emit(ctx, in);
}

void *
sl_pipe_op_sample_init(void *user, uint32_t instance)
{
    SL_UNUSED(instance);
    const sl_pipe_sample_config *cfg = user;
    sample_state *st = sl_calloc(1, sizeof(*st));
    if (st != NULL) {
        st->keep_one_in = cfg->keep_one_in > 0 ? cfg->keep_one_in : 1;
    }
    return st;
}

void
sl_pipe_op_sample_fini(void *state)
{
    sl_free(state, sizeof(sample_state));
}

int
sl_pipe_op_sample(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    sample_state *st = state;
    if (st->seen++ % st->keep_one_in == 0) {
        return sl_pipe_emit(ctx, in);
    }
    // Dropped by policy: counted; the input completes (and commits) at once.
    sl__pipe_ctx_count_dropped(ctx, 1);
    return SL_OK;
}

void *
sl_pipe_op_ratelimit_init(void *user, uint32_t instance)
{
    SL_UNUSED(instance);
    const sl_pipe_ratelimit_config *cfg = user;
    uint64_t burst = cfg->burst > 0 ? cfg->burst : SL_MAX(cfg->rate_per_s / 100, 1);
    ratelimit_state *st = sl_calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL;
    }
    if (sl_token_bucket_init(&st->bucket, cfg->rate_per_s, burst) != SL_OK) {
        sl_free(st, sizeof(*st));
        return NULL;
    }
    return st;
}

void
sl_pipe_op_ratelimit_fini(void *state)
{
    sl_free(state, sizeof(ratelimit_state));
}

int
sl_pipe_op_ratelimit(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    ratelimit_state *st = state;
    sl__pipe_instance *inst = ctx->instance;
    int64_t wait_ns = 0;
    int rc = sl_token_bucket_acquire(&st->bucket, 1, sl_now_ns(), &wait_ns);
    // Bounded by the pipeline's abort; each wait is at most OPS_RATELIMIT_SLEEP_MAX_NS.
    while (rc == SL_EAGAIN) {
        if (sl__pipeline_aborting(inst->stage->pipeline)) {
            return SL_ECLOSED;
        }
        sl__pipe_instance_enter(inst, SL_TIME_BACKPRESSURED);
        sl__pipe_sleep_ns(SL_MIN(wait_ns, OPS_RATELIMIT_SLEEP_MAX_NS));
        rc = sl_token_bucket_acquire(&st->bucket, 1, sl_now_ns(), &wait_ns);
    }
    sl__pipe_instance_enter(inst, SL_TIME_BUSY);
    return sl_pipe_emit(ctx, in);
}
