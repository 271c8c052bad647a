// Built-in process functions for `sluice pipe` and tests: delay (a slow stage), sample (keep 1 in
// N, the rest counted as dropped by policy) and ratelimit (a token bucket; waits are
// backpressured time). Each takes its config as the user pointer and makes per-instance state
// with its init/fini pair: put init/fini in the stage config and the config in user.
#ifndef SLUICE_PIPELINE_BUILTIN_OPS_H
#define SLUICE_PIPELINE_BUILTIN_OPS_H

#include <sluice/pipeline.h>

typedef struct sl_pipe_delay_config {
    uint64_t per_record_ns; // cost of each record
    bool spin;              // true: busy-spin (uses a CPU); false: sleep
} sl_pipe_delay_config;

typedef struct sl_pipe_sample_config {
    uint32_t keep_one_in; // >= 1: passes inputs 0, N, 2N... of each instance
} sl_pipe_sample_config;

typedef struct sl_pipe_ratelimit_config {
    uint64_t rate_per_s; // per instance, 1..SL_TOKEN_BUCKET_RATE_MAX
    uint64_t burst;      // 0: rate / 100, at least 1
} sl_pipe_ratelimit_config;

// Passes every input on unchanged after spending per_record_ns on it. user: the config
// (borrowed; no init needed).
int sl_pipe_op_delay(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state);

// state from sl_pipe_op_sample_init(config, instance); fini frees it.
void *sl_pipe_op_sample_init(void *user, uint32_t instance);
void sl_pipe_op_sample_fini(void *state);
int sl_pipe_op_sample(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state);

// state from sl_pipe_op_ratelimit_init(config, instance) (NULL for a bad rate); fini frees it.
void *sl_pipe_op_ratelimit_init(void *user, uint32_t instance);
void sl_pipe_op_ratelimit_fini(void *state);
int sl_pipe_op_ratelimit(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state);

#endif
