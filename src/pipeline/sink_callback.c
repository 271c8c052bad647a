// The callback sink ("callback:"): hands every record to a function the program gave in
// endpoint.user (an sl_pipe_callback_sink) and marks it done as soon as the function returns,
// so the source may commit it. For embedding the runtime, tests and benchmarks.
#include <stdio.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

typedef struct callback_state {
    sl_pipe_callback_sink cb;
    uint32_t instance;
} callback_state;

static int
callback_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t instance_count,
                void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance_count);
    const sl_pipe_callback_sink *cb = ep->user;
    if (cb == NULL || cb->fn == NULL) {
        snprintf(err, err_size, "callback: the endpoint needs an sl_pipe_callback_sink in user");
        return SL_EINVAL;
    }
    callback_state *st = sl_calloc(1, sizeof(*st));
    if (st == NULL) {
        return SL_ENOMEM;
    }
    st->cb = *cb;
    st->instance = instance;
    *state_out = st;
    return SL_OK;
}

static int
callback_write(void *state, const sl_pipe_record *record, sl_pipe_done_ref *done)
{
    callback_state *st = state;
    int err = st->cb.fn(record, st->instance, st->cb.user);
    if (err == SL_EAGAIN) {
        return SL_EAGAIN; // the runtime keeps the record and retries (backpressured)
    }
    if (err != SL_OK) {
        return err;
    }
    sl_pipe_sink_done(done, SL_OK);
    return SL_OK;
}

static int
callback_flush(void *state, int64_t deadline_ns)
{
    SL_UNUSED(state);
    SL_UNUSED(deadline_ns);
    return SL_OK; // every record is done when write returns
}

static void
callback_destroy(void *state)
{
    sl_free(state, sizeof(callback_state));
}

const sl_pipe_sink_ops sl__pipe_callback_sink_ops = {
    .scheme = "callback",
    .create = callback_create,
    .write = callback_write,
    .poll = NULL,
    .flush = callback_flush,
    .stats = NULL,
    .destroy = callback_destroy,
};
