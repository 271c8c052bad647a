// "Why is it stalled?" (/why?topic=T): for each stream of a topic, walks the credit chain from the
// producer (its credit and the admission decision behind it) through the partition (backlog,
// disk budget) to the consumer (its outstanding REQUEST, its connection's send allowance) and
// names the hop that holds the flow and why. The topic's verdict is the root cause: a producer
// throttled because the backlog is full is held by whatever holds the consumers. Loop thread.
#include "broker/ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "core/util.h"

// Smoothed accepted rate under which a producer stream with credit counts as sending nothing.
#define WHY_IDLE_BYTES_PER_S 1.0
#define WHY_DETAIL_BYTES     256u

static sl_why_consumer_hook consumer_hook;

void
sl_why_set_consumer_hook(sl_why_consumer_hook hook)
{
    consumer_hook = hook;
}

const char *
sl_why_reason_name(sl_why_reason reason)
{
    static const char *const names[SL_WHY_REASON_COUNT] = {"flowing",
                                                           "idle",
                                                           "no_demand",
                                                           "inflight_limit",
                                                           "consumer_absent",
                                                           "consumer_slow",
                                                           "producer_throttled",
                                                           "producer_shrunk",
                                                           "disk_full",
                                                           "producer_no_credit"};
    return (uint32_t)reason < SL_WHY_REASON_COUNT ? names[reason] : "unknown";
}

typedef struct why_verdict {
    sl_why_reason reason;
    const char *hop;    // "producer", "broker", "consumer", "none"
    const char *budget; // the admission reason's name for producer reasons, else NULL
    char detail[WHY_DETAIL_BYTES];
} why_verdict;

static void
producer_why(const sl_stream *s, why_verdict *v)
{
    const sl_admission_decision *d = &s->decision;
    uint64_t outstanding = s->granted_total - s->received_total;
    v->hop = "producer";
    v->budget = NULL;
    if (d->level == SL_ADMIT_THROTTLE) {
        v->budget = sl_admission_reason_name(d->reason);
        v->reason =
            d->reason == SL_ADMIT_REASON_DISK_BUDGET ? SL_WHY_DISK_FULL : SL_WHY_PRODUCER_THROTTLED;
        snprintf(v->detail, sizeof(v->detail),
                 "no credit: throttled by the %s at %.0f%%, retry after %" PRId64 " ms", v->budget,
                 d->pressure * 100, d->retry_after_ms);
    } else if (d->level == SL_ADMIT_SHRINK || d->level == SL_ADMIT_DELAY_ACKS) {
        v->budget = sl_admission_reason_name(d->reason);
        v->reason = SL_WHY_PRODUCER_SHRUNK;
        snprintf(v->detail, sizeof(v->detail), "%s by the %s at %.0f%% (window %" PRIu64 " bytes)",
                 d->level == SL_ADMIT_DELAY_ACKS ? "credit shrunk and acks delayed"
                                                 : "credit shrunk",
                 v->budget, d->pressure * 100, d->window_bytes);
    } else if (s->conn->over_credit || !s->conn->reading) {
        v->hop = "broker";
        v->reason = SL_WHY_PRODUCER_NO_CREDIT;
        snprintf(v->detail, sizeof(v->detail), "the broker stopped reading the connection (%s)",
                 s->conn->over_credit ? "it sent beyond its credit" : "a frame waits for memory");
    } else if (outstanding == 0) {
        v->reason = SL_WHY_PRODUCER_NO_CREDIT;
        snprintf(v->detail, sizeof(v->detail), "used all its credit; the next grant is pending");
    } else if (s->accepted_bytes.per_s < WHY_IDLE_BYTES_PER_S) {
        v->reason = SL_WHY_IDLE;
        snprintf(v->detail, sizeof(v->detail),
                 "holds %" PRIu64 " bytes of credit and sends nothing", outstanding);
    } else {
        v->reason = SL_WHY_FLOWING;
        snprintf(v->detail, sizeof(v->detail),
                 "sending %.0f bytes/s with %" PRIu64 " bytes of credit outstanding",
                 s->accepted_bytes.per_s, outstanding);
    }
}

static void
consumer_why(const sl_stream *s, why_verdict *v)
{
    const sl_partition *p = s->part;
    v->hop = "consumer";
    v->budget = NULL;
    if (consumer_hook != NULL) {
        v->reason = consumer_hook(s, v->detail, sizeof(v->detail));
        if (v->reason != SL_WHY_FLOWING) {
            return;
        }
    }
    if (s->gpart != NULL && sl_stream_stall_reason(s) == SL_STALL_ACK_PENDING) {
        v->reason = SL_WHY_INFLIGHT_LIMIT;
        snprintf(v->detail, sizeof(v->detail),
                 "group member holds %" PRIu64 " delivered records not yet acked (max_ack_pending)",
                 s->position - s->committed);
        return;
    }
    uint64_t lag = p->end_offset > s->position ? p->end_offset - s->position : 0;
    if (lag == 0) {
        v->reason = SL_WHY_IDLE;
        snprintf(v->detail, sizeof(v->detail), "caught up at offset %" PRIu64, s->position);
    } else if (s->demand_records == 0 || s->demand_bytes == 0) {
        v->reason = SL_WHY_NO_DEMAND;
        snprintf(v->detail, sizeof(v->detail),
                 "%" PRIu64 " records behind and requested no more (paused, or slow to "
                 "REQUEST)",
                 lag);
    } else if (s->conn->write_queued_bytes > s->conn->broker->config.connection_buffer_bytes / 2) {
        v->reason = SL_WHY_CONSUMER_SLOW;
        snprintf(v->detail, sizeof(v->detail),
                 "%" PRIu64 " records behind; its connection does not read (%zu bytes queued)", lag,
                 s->conn->write_queued_bytes);
    } else {
        v->reason = SL_WHY_FLOWING;
        snprintf(v->detail, sizeof(v->detail),
                 "%" PRIu64 " records behind with %" PRIu64 " records requested", lag,
                 s->demand_records);
    }
}

static void
json_str(sl_strbuf *sb, const char *key, const char *value, bool comma)
{
    if (comma) {
        sl__strbuf_putc(sb, ',');
    }
    sl__strbuf_putc(sb, '"');
    sl__strbuf_puts(sb, key);
    sl__strbuf_puts(sb, "\":");
    if (value == NULL) {
        sl__strbuf_puts(sb, "null");
        return;
    }
    sl__strbuf_putc(sb, '"');
    // Details are built here from names the protocol validated; escape quotes all the same.
    for (const char *c = value; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\') {
            sl__strbuf_putc(sb, '\\');
        }
        sl__strbuf_putc(sb, (unsigned char)*c < 0x20 ? ' ' : *c);
    }
    sl__strbuf_putc(sb, '"');
}

static void
json_u64(sl_strbuf *sb, const char *key, uint64_t value)
{
    sl__strbuf_puts(sb, ",\"");
    sl__strbuf_puts(sb, key);
    sl__strbuf_puts(sb, "\":");
    sl__strbuf_u64(sb, value);
}

static void
verdict_render(sl_strbuf *sb, const why_verdict *v)
{
    json_str(sb, "hop", v->hop, true);
    json_str(sb, "reason", sl_why_reason_name(v->reason), true);
    json_str(sb, "budget", v->budget, true);
    json_str(sb, "detail", v->detail, true);
}

// How much a reason explains a stall: the root cause is the highest. Consumer-side holds rank
// above producer throttles (which they cause once the backlog fills), disk above both.
static int
rank(sl_why_reason r)
{
    static const int ranks[SL_WHY_REASON_COUNT] = {[SL_WHY_FLOWING] = 0,
                                                   [SL_WHY_IDLE] = 0,
                                                   [SL_WHY_PRODUCER_NO_CREDIT] = 1,
                                                   [SL_WHY_PRODUCER_SHRUNK] = 2,
                                                   [SL_WHY_PRODUCER_THROTTLED] = 3,
                                                   [SL_WHY_CONSUMER_SLOW] = 4,
                                                   [SL_WHY_INFLIGHT_LIMIT] = 5,
                                                   [SL_WHY_NO_DEMAND] = 5,
                                                   [SL_WHY_CONSUMER_ABSENT] = 6,
                                                   [SL_WHY_DISK_FULL] = 7};
    return ranks[r];
}

static void
stream_render(sl_strbuf *sb, const sl_stream *s, const why_verdict *v, bool comma)
{
    sl__strbuf_puts(sb, comma ? ",{" : "{");
    json_str(sb, "kind", s->kind == SL_STREAM_PRODUCE ? "produce" : "consume", false);
    json_u64(sb, "conn", s->conn->id);
    json_str(sb, "peer", s->conn->peer, true);
    json_u64(sb, "stream", s->id);
    json_u64(sb, "partition", s->part != NULL ? s->part->index : 0);
    if (s->kind == SL_STREAM_PRODUCE) {
        json_u64(sb, "credit_granted_bytes", s->granted_total);
        json_u64(sb, "credit_outstanding_bytes", s->granted_total - s->received_total);
    } else {
        json_u64(sb, "position", s->position);
        json_u64(sb, "demand_records", s->demand_records);
    }
    verdict_render(sb, v);
    sl__strbuf_putc(sb, '}');
}

// Partitions with a backlog and no consumer: the hold is an absent consumer.
static void
absent_consumers(sl_topic *t, sl_strbuf *sb, bool *comma, why_verdict *root)
{
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        uint64_t lag = p->end_offset > p->low_position ? p->end_offset - p->low_position : 0;
        if (p->consumers != NULL || lag == 0) {
            continue;
        }
        why_verdict v = {.reason = SL_WHY_CONSUMER_ABSENT, .hop = "consumer"};
        snprintf(v.detail, sizeof(v.detail),
                 "partition %" PRIu32 ": %" PRIu64 " records wait and no consumer is attached", i,
                 lag);
        sl__strbuf_puts(sb, *comma ? ",{" : "{");
        *comma = true;
        json_str(sb, "kind", "partition", false);
        json_u64(sb, "partition", i);
        json_u64(sb, "backlog_records", lag);
        verdict_render(sb, &v);
        sl__strbuf_putc(sb, '}');
        if (rank(v.reason) > rank(root->reason)) {
            *root = v;
        }
    }
}

int
sl_why_render(sl_broker *b, const char *topic, const char *group, sl_strbuf *sb)
{
    sl_topic *t = topic != NULL ? sl_topic_find(b, topic, strlen(topic)) : NULL;
    if (t == NULL) {
        sl__strbuf_puts(sb, "{");
        json_str(sb, "error", "no such topic", false);
        json_str(sb, "topic", topic != NULL ? topic : "", true);
        sl__strbuf_puts(sb, "}\n");
        return SL_ENOENT;
    }
    why_verdict root = {.reason = SL_WHY_IDLE, .hop = "none"};
    snprintf(root.detail, sizeof(root.detail),
             "nothing to move: no producer sends and every "
             "consumer is caught up");
    bool flowing = false;
    sl__strbuf_puts(sb, "{");
    json_str(sb, "topic", t->name, false);
    json_str(sb, "group", group != NULL && group[0] != '\0' ? group : NULL, true);
    sl__strbuf_puts(sb, ",\"streams\":[");
    bool comma = false;
    // Bounded by the connections and their streams.
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
            if (s->topic != t || c->closing) {
                continue;
            }
            why_verdict v = {0};
            if (s->kind == SL_STREAM_PRODUCE) {
                producer_why(s, &v);
            } else {
                consumer_why(s, &v);
            }
            stream_render(sb, s, &v, comma);
            comma = true;
            flowing = flowing || v.reason == SL_WHY_FLOWING;
            if (rank(v.reason) > rank(root.reason)) {
                root = v;
            }
        }
    }
    absent_consumers(t, sb, &comma, &root);
    if (rank(root.reason) == 0 && flowing) {
        root = (why_verdict){.reason = SL_WHY_FLOWING, .hop = "none"};
        snprintf(root.detail, sizeof(root.detail), "records move at every hop");
    }
    sl__strbuf_puts(sb, "],\"verdict\":{");
    json_str(sb, "hop", root.hop, false);
    json_str(sb, "reason", sl_why_reason_name(root.reason), true);
    json_str(sb, "budget", root.budget, true);
    json_str(sb, "detail", root.detail, true);
    sl__strbuf_puts(sb, "}}\n");
    return SL_OK;
}
