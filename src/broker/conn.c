// One connection's frames: decoding what arrives (never trusting a length before the decoder has
// checked it against the negotiated maximum), the connection handshake, opening and closing
// streams, and the admin requests. Produce and consume traffic is handed to flow.c.
#include "broker/broker.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "broker/group.h"
#include "core/util.h"

// Bytes reserved for encoding one control or admin frame (admin lists are paginated to fit).
#define ADMIN_FRAME_BYTES (64u * 1024u)

typedef struct error_arg {
    uint32_t stream_id;
    sl_proto_error e;
} error_arg;

static int
encode_error(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    const error_arg *a = arg;
    if (a->stream_id == 0) {
        return sl_proto_encode_error(buf, cap, 0, &a->e, len);
    }
    return sl_proto_encode_stream_close(buf, cap, a->stream_id, &a->e, len);
}

int
sl_conn_send_error(sl_conn *c, uint32_t stream_id, int status, uint8_t reason,
                   uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[SL_PROTO_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    error_arg a = {.stream_id = stream_id};
    a.e.code = sl_proto_code_from_status(status);
    a.e.reason = reason;
    a.e.retry_after_ms = retry_after_ms;
    a.e.message.data = msg;
    a.e.message.size = (uint16_t)SL_MIN((size_t)n, sizeof(msg) - 1);
    return sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES + SL_PROTO_MESSAGE_MAX, encode_error,
                          &a);
}

static void
conn_protocol_error(sl_conn *c, const char *why)
{
    c->broker->stats.protocol_errors++;
    sl_conn_send_error(c, 0, SL_EPROTO, 0, 0, "protocol error: %s", why);
    sl_conn_close(c, SL_EPROTO, why);
}

static sl_stream *
stream_find(sl_conn *c, uint32_t id)
{
    for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void
stream_free(sl_conn *c, sl_stream *s)
{
    sl_stream **link = &c->streams;
    while (*link != s) {
        link = &(*link)->conn_next;
    }
    *link = s->conn_next;
    c->stream_count--;
    sl_flow_stream_closed(s);
    sl_topic_unref(s->topic);
    sl_free(s, sizeof(*s));
}

void
sl_conn_stream_close(sl_conn *c, sl_stream *s)
{
    stream_free(c, s);
}

void
sl_conn_streams_free(sl_conn *c)
{
    // Bounded by stream_count (at most max_streams_per_connection).
    while (c->streams != NULL) {
        stream_free(c, c->streams);
    }
    // A lost connection is a failed member: its partitions move at once, not after the session.
    sl_groups_conn_closed(c);
}

// ---- handshake and liveness --------------------------------------------------------------------

static int
encode_hello_ok(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_hello_ok(buf, cap, arg, len);
}

static void
on_hello(sl_conn *c, const sl_proto_hello *h)
{
    if (c->hello_done) {
        conn_protocol_error(c, "HELLO sent twice");
        return;
    }
    if (h->version_min > SL_PROTO_VERSION_MAX || h->version_max < SL_PROTO_VERSION_MIN) {
        sl_conn_send_error(c, 0, SL_ENOTSUP, 0, 0,
                           "no common protocol version: client speaks %u..%u, broker %u..%u",
                           h->version_min, h->version_max, SL_PROTO_VERSION_MIN,
                           SL_PROTO_VERSION_MAX);
        sl_conn_close(c, SL_ENOTSUP, "protocol version mismatch");
        return;
    }
    c->max_frame = SL_MIN(h->max_frame_bytes, SL_BROKER_FRAME_BYTES_DEFAULT);
    c->max_frame = SL_MAX(c->max_frame, SL_PROTO_FRAME_SIZE_MIN);
    uint32_t hb = h->heartbeat_ms != 0 ? h->heartbeat_ms : (uint32_t)c->broker->config.heartbeat_ms;
    c->heartbeat_ms = SL_MIN(SL_MAX(hb, SL_PROTO_HEARTBEAT_MS_MIN), SL_PROTO_HEARTBEAT_MS_MAX);
    c->hello_done = true;
    c->version = (uint16_t)SL_MIN(h->version_max, SL_PROTO_VERSION_MAX);
    sl_proto_hello_ok ok = {
        .version = c->version,
        .max_frame_bytes = c->max_frame,
        .heartbeat_ms = c->heartbeat_ms,
        .max_streams = c->broker->config.max_streams_per_connection,
        .broker_id = {.data = "sluiced", .size = 7},
    };
    sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_hello_ok, &ok);
    sl_broker_log(c->broker, 3, "connection %" PRIu64 " (%s): client '%.*s'", c->id, c->peer,
                  (int)h->client_id.size, h->client_id.data);
}

static int
encode_pong(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_ping(buf, cap, true, arg, len);
}

// ---- streams -----------------------------------------------------------------------------------

typedef struct stream_ok_arg {
    sl_proto_stream_ok ok;
    uint32_t stream_id;
} stream_ok_arg;

static int
encode_stream_ok_arg(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    const stream_ok_arg *a = arg;
    return sl_proto_encode_stream_ok(buf, cap, a->stream_id, &a->ok, len);
}

static sl_stream *
stream_open(sl_conn *c, uint32_t id, uint8_t kind, sl_topic *t)
{
    if (c->stream_count >= c->broker->config.max_streams_per_connection) {
        sl_conn_send_error(c, id, SL_EFULL, 0, 0,
                           "this connection has its maximum of %u streams open",
                           c->broker->config.max_streams_per_connection);
        return NULL;
    }
    sl_stream *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        sl_conn_send_error(c, id, SL_ENOMEM, 0, 0, "out of memory");
        return NULL;
    }
    s->id = id;
    s->kind = kind;
    s->conn = c;
    s->topic = t;
    t->refs++;
    s->conn_next = c->streams;
    c->streams = s;
    c->stream_count++;
    return s;
}

sl_stream *
sl_conn_stream_new(sl_conn *c, uint32_t id, uint8_t kind, sl_topic *t)
{
    return stream_open(c, id, kind, t);
}

void
sl_conn_send_stream_ok(sl_conn *c, uint32_t id, const sl_proto_stream_ok *ok)
{
    stream_ok_arg a = {.stream_id = id, .ok = *ok};
    sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_stream_ok_arg, &a);
}

static sl_topic *
topic_or_error(sl_conn *c, uint32_t stream_id, sl_proto_str name)
{
    sl_topic *t = sl_topic_find(c->broker, name.data, name.size);
    if (t == NULL) {
        sl_conn_send_error(c, stream_id, SL_ENOENT, 0, 0,
                           "unknown topic '%.*s' (create it with: sluice topic create %.*s)",
                           (int)name.size, name.data, (int)name.size, name.data);
    }
    return t;
}

static void
on_open_produce(sl_conn *c, uint32_t id, const sl_proto_open_produce *o)
{
    sl_topic *t = topic_or_error(c, id, o->topic);
    if (t == NULL) {
        return;
    }
    uint32_t part = o->partition;
    if (part == SL_PROTO_PARTITION_ANY) {
        part = t->rr_next++ % t->config.partition_count;
    } else if (part >= t->config.partition_count) {
        sl_conn_send_error(c, id, SL_ERANGE, 0, 0,
                           "topic %s has %" PRIu32 " partitions, not %" PRIu32, t->name,
                           t->config.partition_count, part + 1);
        return;
    }
    sl_stream *s = stream_open(c, id, SL_STREAM_PRODUCE, t);
    if (s == NULL) {
        return;
    }
    s->part = &t->partitions[part];
    s->producer_id = o->producer_id != 0 ? o->producer_id : ++c->broker->next_producer_id;
    sl_producer_slot *slot = sl_partition_producer(s->part, s->producer_id, true);
    slot->last_used_tick = c->broker->tick_count;
    s->next_seq = slot->next_seq;
    s->acked_seq = slot->next_seq;
    t->producer_count++;
    s->last_frame_ns = sl_now_ns();
    stream_ok_arg a = {.stream_id = id,
                       .ok = {.kind = SL_STREAM_PRODUCE,
                              .partition = part,
                              .producer_id = s->producer_id,
                              .next_seq = s->next_seq,
                              .max_batch_bytes = c->max_frame - 64}};
    sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_stream_ok_arg, &a);
    sl_flow_replenish(s, sl_now_ns());
}

static void
on_open_consume(sl_conn *c, uint32_t id, const sl_proto_open_consume *o)
{
    sl_topic *t = topic_or_error(c, id, o->topic);
    if (t == NULL) {
        return;
    }
    if (o->start_mode == SL_START_GROUP) {
        sl_group_open_stream(c, id, t, o);
        return;
    }
    if (o->partition >= t->config.partition_count) {
        sl_conn_send_error(c, id, SL_ERANGE, 0, 0,
                           "topic %s has %" PRIu32 " partitions, not %" PRIu32, t->name,
                           t->config.partition_count, o->partition + 1);
        return;
    }
    sl_partition *p = &t->partitions[o->partition];
    uint64_t start = sl_log_start_offset(p->log);
    uint64_t end = p->end_offset;
    uint64_t pos = start;
    if (o->start_mode == SL_START_LATEST) {
        pos = end;
    } else if (o->start_mode == SL_START_OFFSET) {
        if (o->start_offset < start || o->start_offset > end) {
            sl_conn_send_error(c, id, SL_ERANGE, 0, 0,
                               "offset %" PRIu64 " is outside partition %" PRIu32 " of %s: %" PRIu64
                               "..%" PRIu64,
                               o->start_offset, o->partition, t->name, start, end);
            return;
        }
        pos = o->start_offset;
    }
    sl_stream *s = stream_open(c, id, SL_STREAM_CONSUME, t);
    if (s == NULL) {
        return;
    }
    s->part = p;
    s->position = pos;
    s->committed = pos;
    s->part_next = p->consumers;
    p->consumers = s;
    sl_flow_update_low_position(p);
    stream_ok_arg a = {.stream_id = id,
                       .ok = {.kind = SL_STREAM_CONSUME,
                              .partition = o->partition,
                              .start_offset = pos,
                              .max_batch_bytes = c->max_frame - 64}};
    sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_stream_ok_arg, &a);
}

// ---- admin -------------------------------------------------------------------------------------

static int
encode_admin_result(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_admin_result(buf, cap, arg, len);
}

static void
admin_reply(sl_conn *c, uint32_t correlation_id, int status, const char *msg)
{
    sl_proto_admin_result r = {.correlation_id = correlation_id};
    r.status.code = sl_proto_code_from_status(status);
    r.status.message.data = msg;
    r.status.message.size = (uint16_t)SL_MIN(strlen(msg), SL_PROTO_MESSAGE_MAX);
    sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES + SL_PROTO_MESSAGE_MAX, encode_admin_result,
                   &r);
}

void
sl_conn_admin_reply(sl_conn *c, uint32_t correlation_id, int status, const char *msg)
{
    admin_reply(c, correlation_id, status, msg);
}

static void
on_create_topic(sl_conn *c, const sl_proto_create_topic *ct)
{
    char err[512] = "";
    sl_topic *t = NULL;
    sl_proto_topic_config cfg = ct->config;
    if (cfg.partition_count == 0) {
        cfg.partition_count = c->broker->config.topic.partitions;
    }
    if (cfg.max_backlog_bytes == 0) {
        cfg.max_backlog_bytes = c->broker->config.topic.max_backlog_bytes;
    }
    if (cfg.max_lag_ms == 0) {
        cfg.max_lag_ms = (uint32_t)c->broker->config.topic.max_lag_ms;
    }
    int rc = sl_topic_create(c->broker, ct->topic.data, ct->topic.size, &cfg, &t, err, sizeof(err));
    admin_reply(c, ct->correlation_id, rc, rc == SL_OK ? "created" : err);
}

static void
on_delete_topic(sl_conn *c, const sl_proto_topic_request *r)
{
    char err[512] = "";
    sl_topic *t = sl_topic_find(c->broker, r->topic.data, r->topic.size);
    int rc = t == NULL ? SL_ENOENT : sl_topic_delete(c->broker, t, err, sizeof(err));
    if (t == NULL) {
        snprintf(err, sizeof(err), "unknown topic '%.*s'", (int)r->topic.size, r->topic.data);
    }
    admin_reply(c, r->correlation_id, rc, rc == SL_OK ? "deleted" : err);
}

static int
topic_name_cmp(const sl_topic *t, const sl_proto_str *s)
{
    size_t n = strlen(t->name);
    int cmp = memcmp(t->name, s->data, SL_MIN(n, (size_t)s->size));
    if (cmp != 0) {
        return cmp;
    }
    return n < s->size ? -1 : (n > s->size ? 1 : 0);
}

static int
encode_topic_list(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_topic_list(buf, cap, arg, len);
}

static void
on_list_topics(sl_conn *c, const sl_proto_list_topics *l)
{
    // Sorted page of names after start_after: repeated selection of the next smallest name,
    // bounded by the page size and the topic count.
    enum { PAGE_MAX = 128 };
    sl_proto_topic_entry entries[PAGE_MAX];
    uint16_t want = (uint16_t)SL_MIN(SL_MIN(l->max_entries, PAGE_MAX), SL_PROTO_LIST_ENTRIES_MAX);
    uint16_t n = 0;
    sl_proto_str after = l->start_after;
    bool more = false;
    for (;;) {
        sl_topic *best = NULL;
        for (sl_topic *t = c->broker->topics; t != NULL; t = t->next) {
            if (t->deleted || (after.size > 0 && topic_name_cmp(t, &after) <= 0)) {
                continue;
            }
            if (best == NULL || strcmp(t->name, best->name) < 0) {
                best = t;
            }
        }
        if (best == NULL) {
            break;
        }
        if (n == want) {
            more = true;
            break;
        }
        entries[n].name.data = best->name;
        entries[n].name.size = (uint16_t)strlen(best->name);
        entries[n].partition_count = best->config.partition_count;
        after = entries[n].name;
        n++;
    }
    sl_proto_topic_list list = {
        .correlation_id = l->correlation_id, .more = more, .entry_count = n, .entries = entries};
    if (sl_conn_encode(c, ADMIN_FRAME_BYTES, encode_topic_list, &list) != SL_OK) {
        admin_reply(c, l->correlation_id, SL_EFULL, "send allowance full; retry");
    }
}

static int
encode_topic_info(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_topic_info(buf, cap, arg, len);
}

static void
on_describe_topic(sl_conn *c, const sl_proto_topic_request *r)
{
    sl_topic *t = sl_topic_find(c->broker, r->topic.data, r->topic.size);
    if (t == NULL) {
        char err[300];
        snprintf(err, sizeof(err), "unknown topic '%.*s'", (int)r->topic.size, r->topic.data);
        admin_reply(c, r->correlation_id, SL_ENOENT, err);
        return;
    }
    uint32_t n = t->config.partition_count;
    size_t bytes = sizeof(sl_proto_partition_info) * n;
    sl_proto_partition_info *parts = sl_alloc(bytes);
    if (parts == NULL) {
        admin_reply(c, r->correlation_id, SL_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        sl_partition *p = &t->partitions[i];
        parts[i].log_start_offset = sl_log_start_offset(p->log);
        parts[i].log_end_offset = p->end_offset;
        parts[i].durable_offset = sl_log_durable_offset(p->log);
        parts[i].backlog_bytes = sl_partition_backlog_bytes(p);
    }
    sl_proto_topic_info info = {.correlation_id = r->correlation_id,
                                .config = t->config,
                                .topic = {.data = t->name, .size = (uint16_t)strlen(t->name)},
                                .partitions = parts};
    if (sl_conn_encode(c, ADMIN_FRAME_BYTES + bytes * 2, encode_topic_info, &info) != SL_OK) {
        admin_reply(c, r->correlation_id, SL_EFULL, "send allowance full; retry");
    }
    sl_free(parts, bytes);
}

static int
encode_stats(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_stats_result(buf, cap, arg, len);
}

#define STAT(n, v)                                        \
    do {                                                  \
        if (count < SL_ARRAY_LEN(stats)) {                \
            stats[count].name.data = (n);                 \
            stats[count].name.size = (uint16_t)strlen(n); \
            stats[count].value = (v);                     \
            count++;                                      \
        }                                                 \
    } while (0)

static void
on_stats(sl_conn *c, const sl_proto_topic_request *r)
{
    sl_broker *b = c->broker;
    sl_proto_stat stats[48];
    size_t count = 0;
    sl_budget_stats mem;
    sl_budget_stats disk;
    sl_budget_stats_get(b->memory, &mem);
    sl_budget_stats_get(b->disk, &disk);
    if (r->topic.size == 0) {
        STAT("memory_budget_bytes", mem.capacity_bytes);
        STAT("memory_used_bytes", mem.used_bytes);
        STAT("memory_peak_bytes", mem.peak_bytes);
        STAT("disk_budget_bytes", disk.capacity_bytes);
        STAT("disk_used_bytes", disk.used_bytes);
        STAT("connections_open", b->stats.connections_open);
        STAT("connections_accepted", b->stats.connections_accepted);
        STAT("connections_refused", b->stats.connections_refused);
        STAT("protocol_errors", b->stats.protocol_errors);
        STAT("credit_violations", b->stats.credit_violations);
        STAT("disconnects_credit", b->stats.disconnects_credit);
        STAT("disconnects_heartbeat", b->stats.disconnects_heartbeat);
        STAT("topics", b->topic_count);
        STAT("storage_appends", atomic_load(&b->storage.appends));
        STAT("storage_flushes", atomic_load(&b->storage.flushes));
    } else {
        sl_topic *t = sl_topic_find(b, r->topic.data, r->topic.size);
        if (t == NULL) {
            char err[300];
            snprintf(err, sizeof(err), "unknown topic '%.*s'", (int)r->topic.size, r->topic.data);
            admin_reply(c, r->correlation_id, SL_ENOENT, err);
            return;
        }
        sl_budget_stats tm;
        sl_budget_stats_get(t->memory, &tm);
        uint64_t backlog = 0;
        uint64_t end = 0;
        double in_rate = 0;
        for (uint32_t i = 0; i < t->config.partition_count; i++) {
            backlog += sl_partition_backlog_bytes(&t->partitions[i]);
            end += t->partitions[i].end_offset;
            in_rate += t->partitions[i].in_records.per_s;
        }
        STAT("records_in", t->stats.records_in);
        STAT("bytes_in", t->stats.bytes_in);
        STAT("records_out", t->stats.records_out);
        STAT("bytes_out", t->stats.bytes_out);
        STAT("batches_in", t->stats.batches_in);
        STAT("end_offset_sum", end);
        STAT("backlog_bytes", backlog);
        STAT("in_records_per_s", (uint64_t)in_rate);
        STAT("drain_bytes_per_s", (uint64_t)t->drain_bytes.per_s);
        STAT("memory_used_bytes", tm.used_bytes);
        STAT("memory_peak_bytes", tm.peak_bytes);
        STAT("credit_granted_bytes", t->stats.credit_granted_bytes);
        STAT("throttles_memory_budget", t->stats.throttles[SL_THROTTLE_MEMORY_BUDGET]);
        STAT("throttles_disk_budget", t->stats.throttles[SL_THROTTLE_DISK_BUDGET]);
        STAT("throttles_topic_full", t->stats.throttles[SL_THROTTLE_TOPIC_FULL]);
        STAT("acks_delayed", t->stats.acks_delayed);
        STAT("duplicates_dropped", t->stats.duplicates_dropped);
        STAT("records_dropped", t->stats.records_dropped);
        STAT("append_failures", t->stats.append_failures);
        STAT("producers", t->producer_count);
    }
    sl_proto_stats_result res = {
        .correlation_id = r->correlation_id, .entry_count = (uint16_t)count, .entries = stats};
    if (sl_conn_encode(c, ADMIN_FRAME_BYTES, encode_stats, &res) != SL_OK) {
        admin_reply(c, r->correlation_id, SL_EFULL, "send allowance full; retry");
    }
}

// ---- dispatch ----------------------------------------------------------------------------------

// Handles one decoded frame. SL_EFULL: not consumed (a PRODUCE waiting for budget).
static int
conn_dispatch(sl_conn *c, const sl_frame *f)
{
    uint32_t sid = f->header.stream_id;
    if (!c->hello_done && f->header.type != SL_FRAME_HELLO) {
        conn_protocol_error(c, "the first frame must be HELLO");
        return SL_EPROTO;
    }
    switch (f->header.type) {
    case SL_FRAME_HELLO:
        on_hello(c, &f->u.hello);
        break;
    case SL_FRAME_PING:
        sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_pong, &f->u.ping);
        break;
    case SL_FRAME_PONG:
        break;
    case SL_FRAME_GOAWAY:
        sl_conn_close(c, SL_OK, NULL);
        break;
    case SL_FRAME_ERROR:
        sl_broker_log(c->broker, 2, "connection %" PRIu64 ": client error %u: %.*s", c->id,
                      f->u.error.code, (int)f->u.error.message.size, f->u.error.message.data);
        sl_conn_close(c, SL_OK, NULL);
        break;
    case SL_FRAME_OPEN_PRODUCE:
    case SL_FRAME_OPEN_CONSUME:
        // Checked first: any STREAM_CLOSE refusing this OPEN would tell the client that its open
        // stream of the same id was closed while the broker kept it.
        if (stream_find(c, sid) != NULL) {
            conn_protocol_error(c, "OPEN on a stream id that is already open");
            return SL_EPROTO;
        }
        if (f->header.type == SL_FRAME_OPEN_CONSUME) {
            on_open_consume(c, sid, &f->u.open_consume);
            break;
        }
        on_open_produce(c, sid, &f->u.open_produce);
        break;
    case SL_FRAME_STREAM_CLOSE: {
        sl_stream *s = stream_find(c, sid);
        if (s != NULL) {
            stream_free(c, s);
        }
        break;
    }
    case SL_FRAME_PRODUCE: {
        sl_stream *s = stream_find(c, sid);
        if (s == NULL) {
            // Closed by the broker a moment ago (STREAM_CLOSE crossed this frame): drop it.
            break;
        }
        if (s->kind != SL_STREAM_PRODUCE) {
            conn_protocol_error(c, "PRODUCE on a consume stream");
            return SL_EPROTO;
        }
        return sl_flow_produce_frame(s, f);
    }
    case SL_FRAME_REQUEST: {
        sl_stream *s = stream_find(c, sid);
        if (s == NULL || s->kind != SL_STREAM_CONSUME) {
            // The stream may have been closed by the broker a moment ago: not a violation.
            break;
        }
        s->demand_records = sl_proto_demand_add(s->demand_records, f->u.request.records);
        s->requested_records = sl_proto_demand_add(s->requested_records, f->u.request.records);
        s->demand_bytes = sl_proto_demand_add(s->demand_bytes, f->u.request.bytes);
        sl_flow_deliver(s);
        break;
    }
    case SL_FRAME_COMMIT: {
        sl_stream *s = stream_find(c, sid);
        if (s == NULL || s->kind != SL_STREAM_CONSUME) {
            break;
        }
        if (s->gpart != NULL) {
            sl_group_commit(s, f->u.commit.offset); // checks its own range (redeliveries rewind)
            break;
        }
        if (f->u.commit.offset > s->position) {
            sl_conn_send_error(c, sid, SL_ERANGE, 0, 0,
                               "commit of offset %" PRIu64 " beyond what was delivered (%" PRIu64
                               ")",
                               f->u.commit.offset, s->position);
            stream_free(c, s);
            break;
        }
        s->committed = SL_MAX(s->committed, f->u.commit.offset);
        sl_flow_update_low_position(s->part);
        break;
    }
    case SL_FRAME_CREATE_TOPIC:
        on_create_topic(c, &f->u.create_topic);
        break;
    case SL_FRAME_DELETE_TOPIC:
        on_delete_topic(c, &f->u.topic_request);
        break;
    case SL_FRAME_LIST_TOPICS:
        on_list_topics(c, &f->u.list_topics);
        break;
    case SL_FRAME_DESCRIBE_TOPIC:
        on_describe_topic(c, &f->u.topic_request);
        break;
    case SL_FRAME_STATS:
        on_stats(c, &f->u.topic_request);
        break;
    case SL_FRAME_JOIN_GROUP:
    case SL_FRAME_GROUP_HEARTBEAT:
    case SL_FRAME_LEAVE_GROUP:
    case SL_FRAME_LIST_GROUPS:
    case SL_FRAME_DESCRIBE_GROUP:
        if (c->version < SL_PROTO_VERSION_GROUPS) {
            conn_protocol_error(c, "group frames need protocol version 2");
            return SL_EPROTO;
        }
        sl_group_frame(c, f);
        break;
    default: {
        char why[96];
        snprintf(why, sizeof(why), "%s is a broker-to-client frame",
                 sl_proto_frame_name(f->header.type) ? sl_proto_frame_name(f->header.type) : "?");
        conn_protocol_error(c, why);
        return SL_EPROTO;
    }
    }
    return SL_OK;
}

// Stops reading a peer that sent a PRODUCE frame beyond its credit (law 3: TCP pushes back);
// the tick disconnects it after the grace period unless it was a race with a close.
static void
conn_over_credit(sl_conn *c, sl_stream *s, size_t frame_bytes)
{
    if (!c->over_credit) {
        c->broker->stats.credit_violations++;
        sl_broker_log(c->broker, 1,
                      "connection %" PRIu64 " (%s) stream %" PRIu32 ": PRODUCE of %zu bytes with "
                      "%" PRIu64 " bytes of credit left; no longer reading it",
                      c->id, c->peer, s->id, frame_bytes, s->granted_total - s->received_total);
    }
    c->over_credit = true;
    c->over_credit_since_ns = sl_now_ns();
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

int
sl_conn_process(sl_conn *c)
{
    size_t pos = 0;
    // Bounded by the bytes in the buffer: every pass consumes a frame or stops.
    while (!c->closing && !c->over_credit) {
        size_t avail = c->rbuf_len - pos;
        sl_frame_header h;
        int rc = sl_frame_header_decode(c->rbuf + pos, avail, c->max_frame, &h);
        if (rc == SL_EAGAIN) {
            break;
        }
        if (rc != SL_OK) {
            const char *why = NULL;
            sl_frame f;
            size_t used = 0;
            int ignored = sl_proto_decode(c->rbuf + pos, avail, c->max_frame, &f, &used, &why);
            SL_UNUSED(ignored); // only for its explanation of what is wrong
            conn_protocol_error(c, why != NULL ? why : "malformed frame header");
            return SL_EPROTO;
        }
        size_t frame_size = SL_PROTO_FRAME_HEADER_BYTES + (size_t)h.length;
        if (h.type == SL_FRAME_PRODUCE) {
            sl_stream *s = stream_find(c, h.stream_id);
            if (s != NULL && s->kind == SL_STREAM_PRODUCE &&
                s->received_total + frame_size > s->granted_total) {
                conn_over_credit(c, s, frame_size);
                break;
            }
        }
        if (frame_size > avail) {
            if (frame_size > c->rbuf_cap) {
                memmove(c->rbuf, c->rbuf + pos, avail);
                c->rbuf_len = avail;
                pos = 0;
                if (sl_conn_grow_rbuf(c, frame_size) != SL_OK) {
                    break; // the read path stops when the buffer is full; the tick retries
                }
            }
            break;
        }
        // A whole frame is a sign of life; bytes are not (a peer dribbling a frame a byte at a time
        // is as dead as a silent one).
        c->last_recv_ns = sl_now_ns();
        sl_frame f;
        size_t used = 0;
        const char *why = NULL;
        rc = sl_proto_decode(c->rbuf + pos, avail, c->max_frame, &f, &used, &why);
        if (rc != SL_OK) {
            conn_protocol_error(c, why != NULL ? why : "malformed frame");
            return SL_EPROTO;
        }
        if (conn_dispatch(c, &f) == SL_EFULL) {
            c->read_paused = true;
            if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = false;
            }
            break;
        }
        c->read_paused = false;
        pos += used;
    }
    if (c->closing) {
        return SL_ECLOSED;
    }
    if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rbuf_len - pos);
        c->rbuf_len -= pos;
        sl_conn_shrink_rbuf(c);
    }
    return SL_OK;
}
