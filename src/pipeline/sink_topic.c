// The "sluice" sink: writes records to a topic of a sluice broker with the client library's
// producer (sluice://HOST:PORT/TOPIC[?partition=N]; by key when no partition). A record is done
// when the broker acks it at the requested durability (acks=log by default). Sends never wait:
// a full producer buffer returns SL_EAGAIN to the runtime, so the broker's credit (and its
// throttling) reaches the pipeline as backpressure instead of a blocked thread.
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/client.h>
#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Records sent and not yet reported, at most (a ring of done handles indexed by send sequence).
#define TOPIC_SINK_INFLIGHT_MAX 65536u
// Default producer buffer (option buffer): bytes buffered until acked.
#define TOPIC_SINK_BUFFER_DEFAULT (8u << 20)
// Done handles completed per lock round in the delivery callback.
#define TOPIC_SINK_DONE_CHUNK 256u

typedef struct topic_sink {
    sl_producer *producer;
    pthread_mutex_t mutex;
    pthread_cond_t drained;                          // a report freed ring slots
    sl_pipe_done_ref *refs[TOPIC_SINK_INFLIGHT_MAX]; // slot seq % cap, NULL when free
    uint64_t next_seq;  // the producer's sequence of the next send (one sender thread)
    uint32_t in_flight; // slots in use
    uint64_t failed_total;
} topic_sink;

static const char *const topic_sink_options[] = {"partition", "acks",      "buffer", "linger",
                                                 "batch",     "client_id", NULL};

// Takes the handles of seq .. seq + count - 1 out of the ring and reports err for each.
static void
topic_sink_report(topic_sink *s, uint64_t seq, uint32_t count, int err)
{
    sl_pipe_done_ref *chunk[TOPIC_SINK_DONE_CHUNK];
    for (uint32_t done = 0; done < count;) {
        uint32_t n = 0;
        pthread_mutex_lock(&s->mutex);
        for (; n < TOPIC_SINK_DONE_CHUNK && done + n < count; n++) {
            sl_pipe_done_ref **slot = &s->refs[(seq + done + n) % TOPIC_SINK_INFLIGHT_MAX];
            chunk[n] = *slot;
            *slot = NULL;
            s->in_flight -= chunk[n] != NULL ? 1 : 0;
        }
        if (err != SL_OK) {
            s->failed_total += n;
        }
        pthread_cond_broadcast(&s->drained);
        pthread_mutex_unlock(&s->mutex);
        for (uint32_t i = 0; i < n; i++) {
            if (chunk[i] != NULL) {
                sl_pipe_sink_done(chunk[i], err);
            }
        }
        done += n;
    }
}

static void
topic_sink_delivery(const sl_delivery_report *report, void *user)
{
    topic_sink_report(user, report->seq, report->record_count, report->err);
}

static int
topic_sink_config(const sl_pipe_endpoint *e, const sl_pipe_sluice_uri *u, sl_producer_config *cfg,
                  char *err, size_t err_size)
{
    static const char *const acks[] = {"none", "memory", "log", "fsync", NULL};
    int ack = SL_ACKS_LOG;
    uint64_t partition = 0;
    uint64_t buffer = 0;
    uint64_t batch = 0;
    int64_t linger = 0;
    int r = sl__pipe_ep_check_known(e, topic_sink_options, err, err_size);
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_enum(e, "acks", acks, SL_ACKS_LOG, &ack, err, err_size);
    }
    if (r == SL_OK && ack == SL_ACKS_NONE) {
        r = sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                             "option acks: none gives no delivery reports; use memory, log "
                             "or fsync");
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_u64(e, "partition", SL_PROTO_PARTITION_ANY, 0, SL_PROTO_PARTITION_ANY,
                                &partition, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_size(e, "buffer", TOPIC_SINK_BUFFER_DEFAULT, 64u << 10, 1ull << 32,
                                 &buffer, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_size(e, "batch", 0, 0, 64u << 20, &batch, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_ms(e, "linger", -1, &linger, err, err_size);
    }
    if (r != SL_OK) {
        return r;
    }
    sl_producer_config_init(cfg);
    cfg->broker = u->broker[0] ? u->broker : NULL;
    cfg->topic = u->topic;
    cfg->partition = (uint32_t)partition;
    cfg->acks = (sl_acks)ack;
    cfg->buffer_bytes = buffer;
    cfg->batch_bytes = batch > 0 ? (uint32_t)batch : cfg->batch_bytes;
    cfg->linger_ms = linger >= 0 ? (uint32_t)linger : cfg->linger_ms;
    cfg->client_id = sl__pipe_ep_opt(e, "client_id");
    cfg->client_id = cfg->client_id != NULL ? cfg->client_id : "sluice-pipe";
    return SL_OK;
}

static void topic_sink_destroy(void *state);

static int
topic_sink_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                  void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance);
    SL_UNUSED(instance_count);
    sl_pipe_sluice_uri *u = sl_alloc(sizeof(*u));
    size_t merged_count = SL_PIPE_URI_PARAMS_MAX + e->option_count + 1;
    sl_pipe_option *merged = sl_calloc(merged_count, sizeof(*merged));
    topic_sink *s = sl_calloc(1, sizeof(*s));
    if (s != NULL) {
        pthread_mutex_init(&s->mutex, NULL);
        pthread_cond_init(&s->drained, NULL);
    }
    int r = u && merged && s ? sl__pipe_sluice_uri_parse(e->uri, u, err, err_size) : SL_ENOMEM;
    sl_producer_config cfg;
    if (r == SL_OK) {
        sl_pipe_endpoint me;
        sl__pipe_sluice_merge(e, u, merged, &me);
        r = topic_sink_config(&me, u, &cfg, err, err_size);
    }
    if (r == SL_OK) {
        cfg.delivery_cb = topic_sink_delivery;
        cfg.delivery_user = s;
        r = sl_producer_new(&cfg, &s->producer);
        if (r != SL_OK) {
            sl__pipe_ep_fail(err, err_size, r, "%s: producer: %s", e->uri, sl_strerror(r));
        }
    }
    if (merged != NULL) {
        sl_free(merged, merged_count * sizeof(*merged));
    }
    if (u != NULL) {
        sl_free(u, sizeof(*u));
    }
    if (r != SL_OK) {
        if (s != NULL) {
            pthread_cond_destroy(&s->drained);
            pthread_mutex_destroy(&s->mutex);
            sl_free(s, sizeof(*s));
        }
        return r;
    }
    *state_out = s;
    return SL_OK;
}

static int
topic_sink_write(void *state, const sl_pipe_record *rec, sl_pipe_done_ref *done)
{
    topic_sink *s = state;
    pthread_mutex_lock(&s->mutex);
    uint64_t seq = s->next_seq;
    sl_pipe_done_ref **slot = &s->refs[seq % TOPIC_SINK_INFLIGHT_MAX];
    if (*slot != NULL) {
        pthread_mutex_unlock(&s->mutex);
        return SL_EAGAIN; // the ring is full: the oldest record is still unacked
    }
    // Registered before the send: its report may come before sl_producer_send returns.
    *slot = done;
    s->in_flight++;
    pthread_mutex_unlock(&s->mutex);
    sl_record r = {.key = rec->key,
                   .key_size = rec->key_size,
                   .value = rec->value,
                   .value_size = rec->value_size,
                   .timestamp_us = rec->timestamp_ns / 1000};
    uint64_t got = 0;
    int err = sl_producer_send(s->producer, &r, SL_DEADLINE_NOW, &got);
    pthread_mutex_lock(&s->mutex);
    if (err == SL_OK) {
        SL_ASSERT(got == seq); // one sender thread per sink instance
        s->next_seq++;
    } else if (*slot == done) {
        *slot = NULL;
        s->in_flight--;
    }
    pthread_mutex_unlock(&s->mutex);
    return err;
}

// After SL_EAGAIN: waits until the producer has buffer room (or a ring slot frees) or deadline.
static void
topic_sink_poll(void *state, int64_t deadline_ns)
{
    topic_sink *s = state;
    pthread_mutex_lock(&s->mutex);
    bool ring_full = s->refs[s->next_seq % TOPIC_SINK_INFLIGHT_MAX] != NULL;
    if (ring_full) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ms = SL_MIN(SL_MAX((deadline_ns - sl_now_ns()) / 1000000, 0),
                            (int64_t)SL_PIPE_SOURCE_TICK_MS);
        ts.tv_nsec += (long)(ms * 1000000);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&s->drained, &s->mutex, &ts);
    }
    pthread_mutex_unlock(&s->mutex);
    if (!ring_full && sl__pipe_ep_wait_fd(sl_producer_room_fd(s->producer), POLLIN, deadline_ns)) {
        uint64_t v;
        (void)!read(sl_producer_room_fd(s->producer), &v, sizeof(v));
    }
}

static int
topic_sink_flush(void *state, int64_t deadline_ns)
{
    topic_sink *s = state;
    int r = sl_producer_flush(s->producer, deadline_ns);
    pthread_mutex_lock(&s->mutex);
    if (r == SL_OK && s->in_flight > 0) {
        r = SL_ETIMEDOUT;
    }
    pthread_mutex_unlock(&s->mutex);
    return r;
}

static void
topic_sink_destroy(void *state)
{
    topic_sink *s = state;
    sl_producer_free(s->producer); // reports what is unacked with SL_ECLOSED
    pthread_cond_destroy(&s->drained);
    pthread_mutex_destroy(&s->mutex);
    sl_free(s, sizeof(*s));
}

const sl_pipe_sink_ops sl__pipe_sink_topic = {
    .scheme = "sluice",
    .create = topic_sink_create,
    .write = topic_sink_write,
    .poll = topic_sink_poll,
    .flush = topic_sink_flush,
    .destroy = topic_sink_destroy,
};
