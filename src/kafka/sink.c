// The Kafka sink: one idempotent producer per instance with a bounded in-flight window
// (librdkafka's queue.buffering.max.messages/kbytes). A full window (RD_KAFKA_RESP_ERR__QUEUE_FULL)
// is backpressure: write returns SL_EAGAIN and the runtime keeps the record and polls; delivery
// reports, served in poll and flush, complete each record (sl_pipe_sink_done), which is what lets
// the source commit. Nothing is dropped here: a failed delivery stops the pipeline.
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "core/util.h"
#include "kafka/kafka_internal.h"

// Longest wait inside one poll call (the runtime calls again).
#define SINK_POLL_WAIT_MS_MAX 100
// Delivery reports are also served from write every this many records, so completions (and the
// source's commits) do not wait for the next tick.
#define SINK_SERVE_EVERY 64u
// Bound on flushing what is in flight when the sink is destroyed.
#define SINK_CLOSE_TIMEOUT_MS 10000
#define SINK_SCALARS          6u

typedef struct kafka_sink {
    sl__kafka_config cfg;
    rd_kafka_t *rk;
    uint32_t instance;
    _Atomic int fatal; // SL_OK or the error every later write returns
    uint32_t writes_since_serve;
    sl_gauge inflight; // written, delivery report not yet served
    sl_gauge inflight_max;
    sl_counter written;
    sl_counter delivered;
    sl_counter delivery_errors;
    sl_counter queue_full; // QUEUE_FULL events turned into SL_EAGAIN (backpressure)
    _Atomic bool stats_claimed;
    sl_metrics_registry *registry; // set by the first stats call
    char stage[SL_NAME_MAX];
    uint64_t series[SINK_SCALARS];
} kafka_sink;

static void
sink_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_sink *k = opaque;
    sl_pipe_done_ref *ref = m->_private;
    int err = SL_OK;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err =
            m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
                ? SL_ECANCELED
                : SL_EIO;
        sl_counter_inc(&k->delivery_errors);
        fprintf(stderr, "kafka sink: delivery to %s [%" PRId32 "] failed: %s\n", k->cfg.topic,
                m->partition, rd_kafka_err2str(m->err));
    } else {
        sl_counter_inc(&k->delivered);
    }
    sl_gauge_add(&k->inflight, -1);
    if (ref != NULL) {
        sl_pipe_sink_done(ref, err);
    }
    SL_UNUSED(rk);
}

static void
sink_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_sink *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char detail[256];
        rd_kafka_fatal_error(rk, detail, sizeof(detail));
        fprintf(stderr, "kafka sink: fatal: %s\n", detail);
        atomic_store(&k->fatal, SL_EIO);
    }
}

static int
sink_create(const sl_pipe_endpoint *endpoint, uint32_t instance, uint32_t instance_count,
            void **state_out, char *err, size_t err_size)
{
    kafka_sink *k = sl_calloc(1, sizeof(*k));
    if (k == NULL) {
        return SL_ENOMEM;
    }
    k->instance = instance;
    int rc = sl__kafka_config_parse(&k->cfg, endpoint, SL__KAFKA_SINK, instance, err, err_size);
    if (rc != SL_OK) {
        sl_free(k, sizeof(*k));
        return rc;
    }
    rd_kafka_conf_set_opaque(k->cfg.conf, k);
    rd_kafka_conf_set_dr_msg_cb(k->cfg.conf, sink_dr_cb);
    rd_kafka_conf_set_error_cb(k->cfg.conf, sink_error_cb);
    char msg[512];
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, k->cfg.conf, msg, sizeof(msg));
    if (k->rk == NULL) {
        snprintf(err, err_size, "kafka sink: %s", msg);
        sl__kafka_config_fini(&k->cfg);
        sl_free(k, sizeof(*k));
        return SL_EINVAL;
    }
    k->cfg.conf = NULL; // owned by rk
    *state_out = k;
    SL_UNUSED(instance_count);
    return SL_OK;
}

static int
produce_status(kafka_sink *k, rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return SL_OK;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        sl_counter_inc(&k->queue_full);
        return SL_EAGAIN;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return SL_ETOOBIG;
    default:
        fprintf(stderr, "kafka sink: produce to %s: %s\n", k->cfg.topic, rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__FATAL ? SL_EIO : SL_EINVAL;
    }
}

static int
sink_write(void *state, const sl_pipe_record *r, sl_pipe_done_ref *done)
{
    kafka_sink *k = state;
    int fatal = atomic_load(&k->fatal);
    if (fatal != SL_OK) {
        return fatal;
    }
    int64_t ts_ms = r->timestamp_ns > 0 ? r->timestamp_ns / 1000000 : 0;
    const void *key = r->key_size > 0 ? r->key : NULL;
    void *value = (void *)r->value; // librdkafka's prototype is not const; F_COPY copies it
    // Copied: the runtime's record is valid only during this call.
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(k->cfg.topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, (size_t)r->key_size), RD_KAFKA_V_VALUE(value, (size_t)r->value_size),
        RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_OPAQUE(done), RD_KAFKA_V_END);
    int rc = produce_status(k, e);
    if (rc != SL_OK) {
        return rc; // SL_EAGAIN: the runtime keeps the record, polls, and writes it again
    }
    sl_counter_inc(&k->written);
    sl_gauge_add(&k->inflight, 1);
    if (sl_gauge_get(&k->inflight) > sl_gauge_get(&k->inflight_max)) {
        sl_gauge_set(&k->inflight_max, sl_gauge_get(&k->inflight));
    }
    if (++k->writes_since_serve >= SINK_SERVE_EVERY) {
        k->writes_since_serve = 0;
        (void)rd_kafka_poll(k->rk, 0);
    }
    return SL_OK;
}

static void
sink_poll(void *state, int64_t deadline_ns)
{
    kafka_sink *k = state;
    k->writes_since_serve = 0;
    (void)rd_kafka_poll(k->rk, sl__kafka_timeout_ms(deadline_ns, SINK_POLL_WAIT_MS_MAX));
}

static int
sink_flush(void *state, int64_t deadline_ns)
{
    kafka_sink *k = state;
    // Each round waits at most SINK_POLL_WAIT_MS_MAX; the deadline bounds the rounds.
    for (;;) {
        int timeout_ms = sl__kafka_timeout_ms(deadline_ns, SINK_POLL_WAIT_MS_MAX);
        if (rd_kafka_flush(k->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            sl_gauge_get(&k->inflight) == 0) {
            return SL_OK;
        }
        if (timeout_ms == 0) {
            return SL_ETIMEDOUT;
        }
    }
}

static void
sink_stats(void *state, sl_metrics_registry *registry, const char *stage_name)
{
    kafka_sink *k = state;
    bool expected = false;
    if (registry == NULL || !atomic_compare_exchange_strong(&k->stats_claimed, &expected, true)) {
        return; // registered once; the series read live values
    }
    k->registry = registry;
    sl__strlcpy(k->stage, stage_name != NULL ? stage_name : "kafka", sizeof(k->stage));
    const sl__kafka_metric defs[SINK_SCALARS] = {
        {"sluice_kafka_sink_inflight_records", "Produced, delivery not yet reported", NULL,
         &k->inflight, 0},
        {"sluice_kafka_sink_inflight_records_max", "Most records ever in flight", NULL,
         &k->inflight_max, 0},
        {"sluice_kafka_sink_records_total", "Records handed to librdkafka", &k->written, NULL, 0},
        {"sluice_kafka_sink_delivered_total", "Records acknowledged by Kafka", &k->delivered, NULL,
         0},
        {"sluice_kafka_sink_delivery_errors_total", "Records Kafka did not take",
         &k->delivery_errors, NULL, 0},
        {"sluice_kafka_sink_queue_full_total", "Writes refused by a full window (backpressure)",
         &k->queue_full, NULL, 0},
    };
    sl__kafka_metrics_add(registry, k->stage, k->instance, defs, SINK_SCALARS, k->series);
}

static void
sink_destroy(void *state)
{
    kafka_sink *k = state;
    if (sink_flush(k, sl_deadline_after_ms(SINK_CLOSE_TIMEOUT_MS)) != SL_OK) {
        // Not delivered in time: those records complete with SL_ECANCELED, so their source
        // does not commit them (read again after a restart).
        (void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        (void)rd_kafka_flush(k->rk, SINK_POLL_WAIT_MS_MAX);
    }
    if (k->registry != NULL) {
        sl__kafka_metrics_remove(k->registry, k->series, SINK_SCALARS);
    }
    rd_kafka_destroy(k->rk);
    sl__kafka_config_fini(&k->cfg);
    sl_free(k, sizeof(*k));
}

static const sl_pipe_sink_ops kafka_sink_ops = {
    .scheme = "kafka",
    .create = sink_create,
    .write = sink_write,
    .poll = sink_poll,
    .flush = sink_flush,
    .stats = sink_stats,
    .destroy = sink_destroy,
};

const sl_pipe_sink_ops *
sl_kafka_sink_ops(void)
{
    return &kafka_sink_ops;
}
