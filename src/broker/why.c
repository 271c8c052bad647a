// "Why is it stalled?" (/why?topic=T): for each stream of a topic, walks the credit chain from the
// producer (its credit and the admission decision behind it) through the partition (backlog,
// disk budget) to the consumer (its outstanding REQUEST, its connection's send allowance) and
// names the hop that holds the flow and why. The topic's verdict is the root cause: a producer
// throttled because the backlog is full is held by whatever holds the consumers. Loop thread.
#include "broker/ops.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/group.h"
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

static void
json_num(sl_strbuf *sb, const char *key, double value)
{
    sl__strbuf_puts(sb, ",\"");
    sl__strbuf_puts(sb, key);
    sl__strbuf_puts(sb, "\":");
    if (!isfinite(value)) {
        sl__strbuf_puts(sb, "null"); // JSON has no infinity: null means "never"
        return;
    }
    sl__strbuf_double(sb, value);
}

// Who holds partition i of group g: its owner's stream walked like any consumer, or the missing
// owner or stream named.
static void
group_part_why(const sl_group *g, uint32_t i, const sl_partition *p, why_verdict *v)
{
    const sl_group_part *gp = &g->parts[i];
    uint64_t lag = p != NULL && p->end_offset > gp->committed ? p->end_offset - gp->committed : 0;
    if (gp->stream != NULL && !gp->stream->conn->closing) {
        consumer_why(gp->stream, v);
        return;
    }
    v->hop = "consumer";
    v->budget = NULL;
    v->reason = lag > 0 ? SL_WHY_CONSUMER_ABSENT : SL_WHY_IDLE;
    if (g->member_count == 0) {
        snprintf(v->detail, sizeof(v->detail),
                 "group has no live members; partition %" PRIu32 " has %" PRIu64
                 " records uncommitted",
                 i, lag);
    } else if (gp->owner == NULL) {
        snprintf(v->detail, sizeof(v->detail),
                 "no member owns partition %" PRIu32 " (%" PRIu64 " records uncommitted)", i, lag);
    } else {
        snprintf(v->detail, sizeof(v->detail),
                 "member %s owns partition %" PRIu32 " and has no open stream on it (%" PRIu64
                 " records uncommitted)",
                 gp->owner->id, i, lag);
    }
}

static void
group_members_render(const sl_group *g, sl_strbuf *sb)
{
    sl__strbuf_puts(sb, ",\"members\":[");
    for (uint32_t k = 0; k < g->member_count; k++) {
        const sl_group_member *m = g->members[k];
        sl__strbuf_puts(sb, k > 0 ? ",{" : "{");
        json_str(sb, "id", m->id, false);
        json_str(sb, "peer", m->conn->peer, true);
        sl__strbuf_puts(sb, ",\"partitions\":[");
        bool comma = false;
        for (uint32_t i = 0; i < g->partition_count; i++) {
            if (g->parts[i].owner == m) {
                sl__strbuf_puts(sb, comma ? "," : "");
                sl__strbuf_u64(sb, i);
                comma = true;
            }
        }
        sl__strbuf_puts(sb, "]}");
    }
    sl__strbuf_putc(sb, ']');
}

static void
group_predict_render(sl_broker *b, const sl_group *g, sl_strbuf *sb)
{
    sl_group_predict pr;
    sl_group_predict_get(b, g, &pr);
    sl__strbuf_puts(sb, ",\"predict\":{\"lag_records\":");
    sl__strbuf_u64(sb, pr.lag_records);
    json_num(sb, "lag_seconds", pr.lag_seconds);
    json_num(sb, "in_records_per_s", pr.in_records_per_s);
    json_num(sb, "consumed_records_per_s", pr.consumed_records_per_s);
    json_num(sb, "per_member_records_per_s", pr.per_member_records_per_s);
    json_num(sb, "drain_seconds", pr.drain_seconds);
    json_u64(sb, "consumers_recommended", pr.consumers_recommended);
    sl__strbuf_putc(sb, '}');
}

// /why?topic=T&group=G: only the group's streams, its members and who owns what, and per
// partition the hop holding the flow.
static void
group_why_render(sl_broker *b, sl_topic *t, const sl_group *g, sl_strbuf *sb)
{
    why_verdict root = {.reason = SL_WHY_IDLE, .hop = "none"};
    snprintf(root.detail, sizeof(root.detail), "nothing to move: every partition is committed");
    bool flowing = false;
    sl__strbuf_puts(sb, "{");
    json_str(sb, "topic", t->name, false);
    json_str(sb, "group", g->name, true);
    json_u64(sb, "generation", g->generation);
    group_members_render(g, sb);
    group_predict_render(b, g, sb);
    const sl_partition *parts =
        t->config.partition_count == g->partition_count ? t->partitions : NULL;
    sl__strbuf_puts(sb, ",\"partitions\":[");
    for (uint32_t i = 0; i < g->partition_count; i++) {
        const sl_group_part *gp = &g->parts[i];
        why_verdict v = {0};
        group_part_why(g, i, parts != NULL ? &parts[i] : NULL, &v);
        sl__strbuf_puts(sb, i > 0 ? ",{\"partition\":" : "{\"partition\":");
        sl__strbuf_u64(sb, i);
        json_str(sb, "owner", gp->owner != NULL ? gp->owner->id : NULL, true);
        json_u64(sb, "committed", gp->committed);
        verdict_render(sb, &v);
        sl__strbuf_putc(sb, '}');
        flowing = flowing || v.reason == SL_WHY_FLOWING;
        if (rank(v.reason) > rank(root.reason)) {
            root = v;
        }
    }
    sl__strbuf_puts(sb, "],\"streams\":[");
    bool comma = false;
    for (uint32_t i = 0; i < g->partition_count; i++) {
        const sl_stream *s = g->parts[i].stream;
        if (s != NULL && !s->conn->closing) {
            why_verdict v = {0};
            consumer_why(s, &v);
            stream_render(sb, s, &v, comma);
            comma = true;
        }
    }
    if (rank(root.reason) == 0 && flowing) {
        root = (why_verdict){.reason = SL_WHY_FLOWING, .hop = "none"};
        snprintf(root.detail, sizeof(root.detail), "records move to every partition's owner");
    }
    sl__strbuf_puts(sb, "],\"verdict\":{");
    json_str(sb, "hop", root.hop, false);
    json_str(sb, "reason", sl_why_reason_name(root.reason), true);
    json_str(sb, "budget", root.budget, true);
    json_str(sb, "detail", root.detail, true);
    sl__strbuf_puts(sb, "}}\n");
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
    if (group != NULL && group[0] != '\0') {
        sl_group *g = sl_group_find(b, group, strlen(group), t->name, strlen(t->name));
        if (g == NULL) {
            sl__strbuf_puts(sb, "{");
            json_str(sb, "error", "no such group on this topic", false);
            json_str(sb, "topic", t->name, true);
            json_str(sb, "group", group, true);
            sl__strbuf_puts(sb, "}\n");
            return SL_ENOENT;
        }
        group_why_render(b, t, g, sb);
        return SL_OK;
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
