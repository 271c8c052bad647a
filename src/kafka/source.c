// The Kafka source: one consumer-group member per instance. Messages move from librdkafka into a
// bounded local buffer and from there downstream as credit allows; above the buffer's high
// watermark the assigned partitions are paused, at the low watermark resumed, and the consumer is
// polled on every runtime tick meanwhile so the group never evicts it. lane = partition,
// token = offset. Rebalances and commits: source_group.c; metrics: source_stats.c.
#include "kafka/source_internal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>

#include "core/util.h"

static int64_t
realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
source_fail(sl__kafka_source *s, int err, const char *what, const char *detail)
{
    if (s->fatal == SL_OK) {
        s->fatal = err;
        snprintf(s->fatal_msg, sizeof(s->fatal_msg), "kafka source: %s: %s", what, detail);
        fprintf(stderr, "%s\n", s->fatal_msg);
    }
}

static uint64_t
msg_bytes(const rd_kafka_message_t *m)
{
    return (uint64_t)m->len + m->key_len;
}

// The effective low watermark: the configured one, raised to one second of measured emission so
// a resumed partition (up to ~1 s to deliver again) does not leave the pipeline starving.
static uint32_t
low_watermark(const sl__kafka_source *s)
{
    int64_t per_s = sl_gauge_get(&s->m.emit_per_s_milli) / 1000;
    uint64_t want = (uint64_t)(per_s > 0 ? per_s : 0) * SL_KAFKA_RESUME_LATENCY_MS / 1000;
    uint32_t low = s->cfg.buffer_low;
    if (want > low) {
        low = want >= s->cfg.buffer_high ? s->cfg.buffer_high - 1 : (uint32_t)want;
    }
    return low;
}

static void
buffer_gauges(sl__kafka_source *s)
{
    sl_gauge_set(&s->m.buffered_records, s->ring_count);
    sl_gauge_set(&s->m.buffered_bytes, (int64_t)s->ring_bytes);
    if ((int64_t)s->ring_count > sl_gauge_get(&s->m.buffered_records_max)) {
        sl_gauge_set(&s->m.buffered_records_max, s->ring_count);
    }
}

// Hands a message back to librdkafka: the buffer is at capacity (only a message already fetched
// when its partition was paused can arrive then). Seeking to it refetches it after the resume.
static void
buffer_refuse(sl__kafka_source *s, rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset =
        m->offset;
    rd_kafka_message_destroy(m);
    // Synchronous: no message fetched before the seek reaches the application afterwards.
    rd_kafka_error_t *e = rd_kafka_seek_partitions(s->rk, l, SL_KAFKA_CLOSE_TIMEOUT_MS);
    if (e != NULL) {
        source_fail(s, SL_EIO, "seek back at full buffer", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    sl_counter_inc(&s->m.refetches);
}

static void
buffer_push(sl__kafka_source *s, rd_kafka_message_t *m)
{
    bool bytes_full = s->ring_count > 0 && s->ring_bytes + msg_bytes(m) > s->cfg.buffer_bytes;
    if (s->ring_count >= s->cfg.buffer_records || bytes_full) {
        buffer_refuse(s, m);
        return;
    }
    uint32_t tail = (s->ring_head + s->ring_count) % s->cfg.buffer_records;
    s->ring[tail] = m;
    s->ring_count++;
    s->ring_bytes += msg_bytes(m);
    pthread_mutex_lock(&s->mutex);
    if (m->partition >= 0 && (uint32_t)m->partition < SL_KAFKA_PARTITIONS_MAX) {
        sl__kafka_lane *lane = &s->lanes[m->partition];
        if (lane->first_seen < 0) {
            lane->first_seen = m->offset;
        }
        lane->next = m->offset + 1;
    }
    pthread_mutex_unlock(&s->mutex);
}

// A message that is an event or error, not a record.
static void
consumer_event(sl__kafka_source *s, rd_kafka_message_t *m)
{
    sl_counter_inc(&s->m.errors);
    char detail[256];
    snprintf(detail, sizeof(detail), "%s (%s)", rd_kafka_message_errstr(m),
             rd_kafka_err2name(m->err));
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        m->err == RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED || m->err == RD_KAFKA_RESP_ERR__FATAL ||
        m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
        // Skipped data or a lost membership must stop the pipeline loudly.
        source_fail(s, SL_EIO, "consumer", detail);
    }
    // Anything else (a broker down, a timeout) librdkafka retries itself; counted in errors.
    rd_kafka_message_destroy(m);
}

// Pauses the assignment above the high watermark, resumes it at the low one (hysteresis).
static void
source_flow(sl__kafka_source *s)
{
    uint64_t bytes_high = s->cfg.buffer_bytes - s->cfg.buffer_bytes / 4;
    uint64_t bytes_low = s->cfg.buffer_bytes / 4;
    bool pause = !s->paused && (s->ring_count >= s->cfg.buffer_high || s->ring_bytes >= bytes_high);
    bool resume = s->paused && s->ring_count <= low_watermark(s) && s->ring_bytes <= bytes_low;
    sl_gauge_set(&s->m.low_watermark, low_watermark(s));
    if (!pause && !resume) {
        return;
    }
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(s->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return; // tried again on the next poll
    }
    s->paused = pause;
    sl__kafka_apply_pause(s, parts, pause);
    sl_counter_inc(pause ? &s->m.pauses : &s->m.resumes);
    rd_kafka_topic_partition_list_destroy(parts);
}

// Moves up to SL_KAFKA_FILL_BATCH messages from librdkafka into the buffer. Waits (until
// deadline_ns, capped) only for the first one, and only when wait is set. Polls at least once,
// which keeps the group membership alive and serves rebalances and commit results.
static void
source_fill(sl__kafka_source *s, bool wait, int64_t deadline_ns)
{
    for (uint32_t i = 0; i < SL_KAFKA_FILL_BATCH; i++) {
        int timeout_ms = 0;
        if (i == 0 && wait) {
            timeout_ms = sl__kafka_timeout_ms(deadline_ns, SL_KAFKA_POLL_WAIT_MS_MAX);
        }
        int64_t t0 = timeout_ms > 0 ? sl_now_ns() : 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, timeout_ms);
        if (timeout_ms > 0) {
            atomic_fetch_add(&s->m.idle_ns, (uint64_t)(sl_now_ns() - t0));
        }
        if (m == NULL) {
            break;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            consumer_event(s, m);
            continue;
        }
        buffer_push(s, m);
        if (!s->paused && s->ring_count >= s->cfg.buffer_high) {
            source_flow(s); // pause now, not after the batch: the buffer stays near its mark
        }
        if (s->ring_count >= s->cfg.buffer_records) {
            break; // full: the next poll call hands any further message back
        }
    }
}

static void
record_of(const rd_kafka_message_t *m, sl_pipe_record *r)
{
    rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    int64_t ts_ms = rd_kafka_message_timestamp(m, &type);
    r->key = m->key;
    r->key_size = (uint32_t)m->key_len;
    r->value = m->payload;
    r->value_size = (uint32_t)m->len;
    r->timestamp_ns = ts_ms >= 0 ? ts_ms * 1000000 : realtime_ns();
}

// Emits up to max_records buffered records. Returns the count, or an emit error (the record
// that failed stays buffered).
static int
source_drain(sl__kafka_source *s, sl_pipe_ctx *ctx, uint32_t max_records)
{
    int emitted = 0;
    while ((uint32_t)emitted < max_records && s->ring_count > 0) {
        rd_kafka_message_t *m = s->ring[s->ring_head];
        sl_pipe_record rec;
        record_of(m, &rec);
        sl_pipe_origin origin = {.lane = (uint32_t)m->partition, .token = (uint64_t)m->offset};
        int rc = sl_pipe_source_emit(ctx, &rec, origin);
        if (rc != SL_OK) {
            return emitted > 0 ? emitted : rc;
        }
        s->ring[s->ring_head] = NULL;
        s->ring_head = (s->ring_head + 1) % s->cfg.buffer_records;
        s->ring_count--;
        s->ring_bytes -= msg_bytes(m);
        rd_kafka_message_destroy(m);
        emitted++;
    }
    sl_counter_add(&s->m.records, (uint64_t)emitted);
    return emitted;
}

static int
source_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    sl__kafka_source *s = state;
    if (s->fatal != SL_OK) {
        return s->fatal;
    }
    // With credit and nothing buffered, wait for Kafka (idle time); otherwise only take what is
    // already there: max_records == 0 is the keep-alive tick while downstream is full.
    source_fill(s, max_records > 0 && s->ring_count == 0, deadline_ns);
    source_flow(s);
    int emitted = 0;
    if (max_records > 0 && s->fatal == SL_OK) {
        emitted = source_drain(s, ctx, max_records);
        source_flow(s);
    }
    buffer_gauges(s);
    sl__kafka_commit_tick(s, false);
    if (s->fatal != SL_OK) {
        return s->fatal;
    }
    if (emitted < 0) {
        return emitted;
    }
    return emitted > 0 ? emitted : SL_EAGAIN;
}

static void
source_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sl__kafka_source *s = opaque;
    sl_counter_inc(&s->m.errors);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char detail[256];
        rd_kafka_fatal_error(rk, detail, sizeof(detail));
        source_fail(s, SL_EIO, "fatal", detail);
    }
    // Transient errors (a broker down, a timeout) are retried by librdkafka itself.
}

// librdkafka before 2.3.0 asserts in rd_kafka_destroy when a cooperative-sticky consumer is
// destroyed before its first assignment (librdkafka issue 4312, fixed by PR 4381; Debian 12 has
// 2.0.2). Such a handle is closed (it left the group) but parked instead of destroyed: its
// memory stays with the process, one handle per source that never got partitions, at most
// KAFKA_PARKED_MAX (past that it is destroyed and the assertion is risked).
#define KAFKA_STICKY_DESTROY_FIXED_VERSION 0x020300ff
#define KAFKA_PARKED_MAX                   64u

static rd_kafka_t *kafka_parked[KAFKA_PARKED_MAX]; // reachable, so leak checkers stay quiet
static _Atomic uint32_t kafka_parked_count;

// True when the caller may destroy s's handle; false when it was parked.
static bool
source_destroy_or_park(sl__kafka_source *s)
{
    if (rd_kafka_version() >= KAFKA_STICKY_DESTROY_FIXED_VERSION ||
        sl_counter_get(&s->m.assigns) > 0) {
        return true;
    }
    uint32_t slot = atomic_fetch_add(&kafka_parked_count, 1);
    if (slot >= KAFKA_PARKED_MAX) {
        return true;
    }
    kafka_parked[slot] = s->rk;
    return false;
}

static void
source_free(sl__kafka_source *s)
{
    if (s->ring != NULL) {
        for (uint32_t i = 0; i < s->ring_count; i++) {
            rd_kafka_message_destroy(s->ring[(s->ring_head + i) % s->cfg.buffer_records]);
        }
        sl_free(s->ring, sizeof(*s->ring) * s->cfg.buffer_records);
    }
    if (s->rk != NULL && source_destroy_or_park(s)) {
        rd_kafka_destroy(s->rk);
    }
    if (s->lanes != NULL) {
        sl_free(s->lanes, sizeof(*s->lanes) * SL_KAFKA_PARTITIONS_MAX);
    }
    sl__kafka_config_fini(&s->cfg);
    pthread_mutex_destroy(&s->mutex);
    pthread_mutex_destroy(&s->rate_mutex);
    pthread_cond_destroy(&s->rate_cond);
    sl_free(s, sizeof(*s));
}

static int
source_connect(sl__kafka_source *s, char *err, size_t err_size)
{
    rd_kafka_conf_t *conf = s->cfg.conf;
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_conf_set_rebalance_cb(conf, sl__kafka_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, sl__kafka_commit_cb);
    rd_kafka_conf_set_error_cb(conf, source_error_cb);
    char msg[512];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, msg, sizeof(msg));
    if (s->rk == NULL) {
        snprintf(err, err_size, "kafka source: %s", msg);
        return SL_EINVAL;
    }
    s->cfg.conf = NULL; // owned by rk now
    rd_kafka_poll_set_consumer(s->rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, s->cfg.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(s->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, err_size, "kafka source: subscribe %s: %s", s->cfg.topic,
                 rd_kafka_err2str(e));
        return SL_EINVAL;
    }
    return SL_OK;
}

static int
source_create(const sl_pipe_endpoint *endpoint, uint32_t instance, uint32_t instance_count,
              void **state_out, char *err, size_t err_size)
{
    sl__kafka_source *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    pthread_mutex_init(&s->mutex, NULL);
    pthread_mutex_init(&s->rate_mutex, NULL);
    pthread_cond_init(&s->rate_cond, NULL);
    s->instance = instance;
    s->instance_count = instance_count > 0 ? instance_count : 1;
    int rc = sl__kafka_config_parse(&s->cfg, endpoint, SL__KAFKA_SOURCE, instance, err, err_size);
    if (rc != SL_OK) {
        sl_free(s, sizeof(*s)); // parse cleaned up after itself
        return rc;
    }
    s->ring = sl_calloc(s->cfg.buffer_records, sizeof(*s->ring));
    s->lanes = sl_calloc(SL_KAFKA_PARTITIONS_MAX, sizeof(*s->lanes));
    if (s->ring == NULL || s->lanes == NULL) {
        source_free(s);
        return SL_ENOMEM;
    }
    for (uint32_t i = 0; i < SL_KAFKA_PARTITIONS_MAX; i++) {
        s->lanes[i].done = -1;
        s->lanes[i].committed = -1;
        s->lanes[i].first_seen = -1;
        s->lanes[i].next = -1;
    }
    sl_gauge_set(&s->m.buffer_capacity, s->cfg.buffer_records);
    sl_gauge_set(&s->m.low_watermark, s->cfg.buffer_low);
    s->next_commit_ns = sl_now_ns() + (int64_t)s->cfg.commit_interval_ms * 1000000;
    rc = source_connect(s, err, err_size);
    if (rc == SL_OK) {
        rc = sl__kafka_rate_start(s);
    }
    if (rc != SL_OK) {
        source_free(s);
        return rc;
    }
    *state_out = s;
    return SL_OK;
}

static void
source_destroy(void *state)
{
    sl__kafka_source *s = state;
    sl__kafka_rate_stop(s);
    // Commit what is done, then leave the group (its revoke callback commits again and drops the
    // buffer); records still in flight downstream are read again by the next owner.
    sl__kafka_commit_tick(s, true);
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(s->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka source: close: %s\n", rd_kafka_err2str(e));
    }
    sl__kafka_source_stats_fini(s);
    source_free(s);
}

static const sl_pipe_source_ops kafka_source_ops = {
    .scheme = "kafka",
    .create = source_create,
    .poll = source_poll,
    .commit = sl__kafka_source_commit,
    .stats = sl__kafka_source_stats,
    .destroy = source_destroy,
};

const sl_pipe_source_ops *
sl_kafka_source_ops(void)
{
    return &kafka_source_ops;
}
