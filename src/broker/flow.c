// Flow control, both directions. Produce: credit is granted in cumulative bytes, reserved from the
// topic's memory budget before it is granted (so what producers may send always fits), sized from
// the admission decision and capped by a max-min fair share; acks are held back and THROTTLE sent
// as pressure rises (law 3). Consume: deliveries never exceed the records and bytes requested,
// and a connection's queued writes never exceed its allowance (a consumer that does not read only
// stalls itself).
#include "broker/broker.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "broker/group.h"
#include "broker/ops.h"
#include "core/util.h"

// Credit is topped up only when less than this fraction of the target window is outstanding, so a
// busy stream gets a few large CREDIT frames instead of one per PRODUCE.
#define CREDIT_TOPUP_DIVISOR 2u
// Smallest grant worth a frame.
#define CREDIT_GRANT_MIN_BYTES 4096u
// max_lag is steered to this much under the configured bound (see max_lag_target_ms).
#define MAX_LAG_HEADROOM_PCT 15u
// Network part of the credit round trip (CREDIT out, PRODUCE back) on top of the measured commit
// latency; generous for loopback and a LAN, so windows err on the large side.
#define ROUND_TRIP_NETWORK_US 2000
// A producer that sent nothing for this long while holding less than one frame of credit may be
// waiting to send a record larger than its window: it gets a frame's worth (when not pressured).
#define IDLE_FULL_FRAME_NS (100 * 1000000LL)
// Frame bytes reserved for the fixed part of a DELIVER.
#define DELIVER_HEADER_BYTES 64u

static uint8_t
wire_reason(sl_admission_reason r)
{
    switch (r) {
    case SL_ADMIT_REASON_MEMORY_BUDGET:
        return SL_THROTTLE_MEMORY_BUDGET;
    case SL_ADMIT_REASON_DISK_BUDGET:
        return SL_THROTTLE_DISK_BUDGET;
    case SL_ADMIT_REASON_BACKLOG:
    case SL_ADMIT_REASON_MAX_LAG:
        return SL_THROTTLE_TOPIC_FULL;
    case SL_ADMIT_REASON_QUOTA:
        return SL_THROTTLE_QUOTA;
    case SL_ADMIT_REASON_NONE:
        break;
    }
    return SL_THROTTLE_MEMORY_BUDGET;
}

// ---- sending -----------------------------------------------------------------------------------

typedef struct stream_frame {
    uint32_t stream_id;
    union {
        sl_proto_ack ack;
        sl_proto_throttle throttle;
        sl_proto_credit credit;
    } u;
} stream_frame;

static int
encode_ack(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    const stream_frame *f = arg;
    return sl_proto_encode_ack(buf, cap, f->stream_id, &f->u.ack, len);
}

static int
encode_throttle(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    const stream_frame *f = arg;
    return sl_proto_encode_throttle(buf, cap, f->stream_id, &f->u.throttle, len);
}

static int
encode_credit(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    const stream_frame *f = arg;
    return sl_proto_encode_credit(buf, cap, f->stream_id, &f->u.credit, len);
}

static bool
send_ack(sl_stream *s, const sl_pending_ack *a)
{
    stream_frame f = {.stream_id = s->id,
                      .u.ack = {.seq_end = a->seq_end,
                                .acks = a->acks,
                                .base_offset = a->base_offset,
                                .last_offset = a->last_offset}};
    if (sl_conn_encode(s->conn, SL_BROKER_CONTROL_FRAME_BYTES, encode_ack, &f) != SL_OK) {
        return false;
    }
    s->acked_seq = a->seq_end;
    return true;
}

// Sends held ACKs whose time has come (all of them when force).
static void
flush_acks(sl_stream *s, int64_t now, bool force)
{
    while (s->pending_ack_count > 0 && (force || now >= s->ack_hold_until_ns)) {
        sl_pending_ack *a = &s->pending_acks[s->pending_ack_head];
        if (!send_ack(s, a)) {
            return; // send allowance full: the tick tries again
        }
        s->pending_ack_head = (s->pending_ack_head + 1) % SL_BROKER_PENDING_ACKS;
        s->pending_ack_count--;
    }
}

static void
queue_ack(sl_stream *s, const sl_pending_ack *a, int64_t now)
{
    bool hold = s->decision.level == SL_ADMIT_DELAY_ACKS && s->decision.ack_delay_ms > 0;
    if (s->pending_ack_count == SL_BROKER_PENDING_ACKS) {
        flush_acks(s, now, true);
    }
    if (s->pending_ack_count == SL_BROKER_PENDING_ACKS) {
        // A producer that left a whole send allowance of frames unread cannot be acknowledged
        // without losing an ACK it may be waiting for: it breaks the protocol (law 3's last step),
        // and the tick disconnects it. It resends what was not acknowledged when it reconnects.
        s->conn->not_reading = true;
        return;
    }
    uint32_t slot = (s->pending_ack_head + s->pending_ack_count) % SL_BROKER_PENDING_ACKS;
    s->pending_acks[slot] = *a;
    s->pending_acks[slot].queued_ns = now;
    s->pending_ack_count++;
    if (hold) {
        if (s->pending_ack_count == 1) {
            s->ack_hold_until_ns = now + s->decision.ack_delay_ms * 1000000;
        }
        s->topic->stats.acks_delayed++;
        sl_ops_ack_delayed(s, SL_MAX(s->ack_hold_until_ns - now, (int64_t)0));
        return;
    }
    flush_acks(s, now, true);
}

static void
send_throttle(sl_stream *s, int64_t now)
{
    const sl_admission_decision *d = &s->decision;
    if (s->throttle_sent_ns != 0 && now - s->throttle_sent_ns < d->retry_after_ms * 1000000) {
        return;
    }
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "topic %s: %s at %.0f%%; retry in %" PRId64 " ms",
                     s->topic->name, sl_admission_reason_name(d->reason), d->pressure * 100,
                     d->retry_after_ms);
    stream_frame f = {.stream_id = s->id,
                      .u.throttle = {.reason = wire_reason(d->reason),
                                     .retry_after_ms = (uint32_t)d->retry_after_ms,
                                     .message = {.data = msg, .size = (uint16_t)SL_MAX(n, 0)}}};
    if (sl_conn_encode(s->conn, SL_BROKER_CONTROL_FRAME_BYTES, encode_throttle, &f) != SL_OK) {
        return;
    }
    s->throttle_sent_ns = now;
    s->topic->stats.throttles[f.u.throttle.reason]++;
}

// ---- produce -----------------------------------------------------------------------------------

// The credit round trip: network plus what an append (and, for acks=fsync, a flush) costs now.
static int64_t
round_trip_us(sl_broker *b, uint8_t acks)
{
    int64_t commit_ns = atomic_load_explicit(&b->storage.append_ns_avg, memory_order_relaxed);
    if (acks == SL_ACKS_FSYNC || b->config.fsync_policy == SL_FSYNC_ALWAYS) {
        commit_ns += atomic_load_explicit(&b->storage.flush_ns_avg, memory_order_relaxed);
    }
    return ROUND_TRIP_NETWORK_US + commit_ns / 1000;
}

// The lag the admission control steers to: under max_lag by a headroom, because the backlog
// settles between the ack-delay point and the full point of its constraint (95-100%), and
// records also wait in the producer's buffer before the broker sees them. Steering to max_lag
// itself would put the oldest record's age around the bound instead of under it.
static uint64_t
max_lag_target_ms(uint32_t max_lag_ms)
{
    return SL_MAX((uint64_t)max_lag_ms * (100u - MAX_LAG_HEADROOM_PCT) / 100u, 1u);
}

static void
admission_input(const sl_stream *s, sl_admission_input *in)
{
    sl_topic *t = s->topic;
    sl_broker *b = t->broker;
    memset(in, 0, sizeof(*in));
    sl_budget_stats st;
    size_t n = 0;
    sl_budget_stats_get(t->memory, &st);
    in->constraints[n++] =
        (sl_admission_constraint){SL_ADMIT_REASON_MEMORY_BUDGET, st.used_bytes, st.capacity_bytes};
    sl_budget_stats_get(b->memory, &st);
    in->constraints[n++] =
        (sl_admission_constraint){SL_ADMIT_REASON_MEMORY_BUDGET, st.used_bytes, st.capacity_bytes};
    sl_budget_stats_get(t->disk, &st);
    in->constraints[n++] =
        (sl_admission_constraint){SL_ADMIT_REASON_DISK_BUDGET, st.used_bytes, st.capacity_bytes};
    uint64_t backlog = 0;
    uint64_t unacked = 0; // for max_lag: the consumers' prefetch counts too
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        backlog += sl_partition_backlog_bytes(&t->partitions[i]);
        if (t->config.max_lag_ms > 0) {
            unacked += sl_partition_unacked_bytes(&t->partitions[i]);
        }
    }
    double drain = t->drain_bytes.per_s;
    in->drain_bytes_per_s = drain;
    in->produce_bytes_per_s = s->accepted_bytes.per_s;
    in->round_trip_us = round_trip_us(b, s->acks);
    if (t->config.full_policy == SL_FULL_DROP_OLDEST) {
        // Lossy by choice: retention deletes the oldest data instead of slowing producers; only
        // memory (and the disk budget, which retention keeps clear) can push back.
        in->constraint_count = n;
        return;
    }
    in->constraints[n++] =
        (sl_admission_constraint){SL_ADMIT_REASON_BACKLOG, backlog, t->config.max_backlog_bytes};
    if (t->config.max_lag_ms > 0) {
        // Lag in time: what the consumers have not acknowledged yet (their prefetch included)
        // over the rate they acknowledge at. Consumers that do not acknowledge are measured by
        // delivery instead; nothing draining counts as far behind.
        double acked = t->acked_bytes.per_s;
        bool acking = acked > 1.0;
        uint64_t lag_bytes = acking ? unacked : backlog;
        double rate = acking ? acked : drain;
        uint64_t lag_ms = lag_bytes == 0 ? 0
                          : rate > 1.0   ? (uint64_t)((double)lag_bytes / rate * 1000.0)
                                         : (uint64_t)t->config.max_lag_ms * 2;
        in->constraints[n++] = (sl_admission_constraint){SL_ADMIT_REASON_MAX_LAG, lag_ms,
                                                         max_lag_target_ms(t->config.max_lag_ms)};
    }
    in->constraint_count = n;
}

static bool
send_credit(sl_stream *s)
{
    stream_frame f = {.stream_id = s->id, .u.credit = {.granted_total_bytes = s->granted_total}};
    return sl_conn_encode(s->conn, SL_BROKER_CONTROL_FRAME_BYTES, encode_credit, &f) == SL_OK;
}

void
sl_flow_replenish(sl_stream *s, int64_t now)
{
    if (s->kind != SL_STREAM_PRODUCE || s->conn->closing) {
        return;
    }
    sl_admission_input in;
    admission_input(s, &in);
    sl_admission_decide(&s->topic->broker->admission, &in, &s->decision);
    if (s->decision.level == SL_ADMIT_THROTTLE) {
        // Under block, only a producer that has nothing left to send needs to be told to wait;
        // under reject, every producer is told at once (its client fails sends with the hint).
        if (s->granted_total == s->received_total ||
            s->topic->config.full_policy == SL_FULL_REJECT) {
            send_throttle(s, now);
        }
        return;
    }
    uint64_t target = s->decision.window_bytes;
    if (s->fair_cap != 0) {
        target = SL_MIN(target, SL_MAX(s->fair_cap, (uint64_t)CREDIT_GRANT_MIN_BYTES));
    }
    // A window must hold the frames this producer actually sends (its batch size is its own
    // choice): two of them when not pressured, so one can be in flight while the next is built,
    // and one otherwise, so that pressure slows the stream without stopping it.
    uint64_t frames = s->decision.level == SL_ADMIT_GRANT ? 2 : 1;
    target = SL_MAX(target, frames * s->frame_max_seen);
    uint64_t outstanding = s->granted_total - s->received_total;
    bool idle_short = s->decision.level == SL_ADMIT_GRANT &&
                      now - s->last_frame_ns >= IDLE_FULL_FRAME_NS &&
                      outstanding < s->conn->max_frame;
    if (idle_short) {
        // The producer may hold a batch larger than what it has: top up to a whole frame, even
        // though more than half a window is outstanding (the usual top-up threshold).
        target = SL_MAX(target, (uint64_t)s->conn->max_frame);
    } else if (outstanding * CREDIT_TOPUP_DIVISOR > target) {
        return;
    }
    uint64_t delta = target - outstanding;
    // Take what the budget can give, halving down to the smallest useful grant.
    while (delta >= CREDIT_GRANT_MIN_BYTES &&
           sl_budget_reserve(s->topic->memory, delta, 0) != SL_OK) {
        delta /= 2;
    }
    if (delta < CREDIT_GRANT_MIN_BYTES) {
        if (outstanding == 0) {
            s->decision.level = SL_ADMIT_THROTTLE;
            s->decision.reason = SL_ADMIT_REASON_MEMORY_BUDGET;
            s->decision.retry_after_ms = s->topic->broker->admission.retry_after_min_ms;
            send_throttle(s, now);
        }
        return;
    }
    s->granted_total += delta;
    s->credit_reserved += delta;
    if (!send_credit(s)) {
        s->granted_total -= delta;
        s->credit_reserved -= delta;
        sl_budget_release(s->topic->memory, delta, 0);
        return;
    }
    s->topic->stats.credit_granted_bytes += delta;
}

// Stream-level failure: tell the producer and close the stream.
static void
produce_fail(sl_stream *s, int status, const char *msg)
{
    sl_conn_send_error(s->conn, s->id, status, 0, 0, "%s", msg);
}

int
sl_flow_produce_frame(sl_stream *s, const sl_frame *f)
{
    const sl_proto_produce *pr = &f->u.produce;
    sl_conn *c = s->conn;
    sl_topic *t = s->topic;
    sl_partition *p = s->part;
    uint64_t frame_bytes = SL_PROTO_FRAME_HEADER_BYTES + (uint64_t)f->header.length;
    SL_ASSERT(s->received_total + frame_bytes <= s->granted_total); // checked before decoding
    // Validate every batch (CRC and framing) and find the ones not yet stored (a resend after a
    // reconnect starts below next_seq).
    sl_proto_cursor cur;
    sl_proto_batches_init(&cur, &pr->batches);
    const uint8_t *batch = NULL;
    sl_batch_header h;
    uint32_t seq = pr->first_seq;
    size_t keep_from = SIZE_MAX;
    uint32_t keep_seq = 0;
    uint32_t dup_records = 0;
    bool failed = false;
    int rc;
    while ((rc = sl_proto_batches_next(&cur, &batch, &h)) == SL_OK) {
        sl_batch_header full;
        if (sl_batch_validate(batch, h.length, &full) != SL_OK) {
            produce_fail(s, SL_ECORRUPT,
                         "a batch failed its CRC or framing check; "
                         "nothing from this frame was stored");
            failed = true;
            goto consumed;
        }
        int32_t ahead = (int32_t)(seq - s->next_seq);
        if (keep_from == SIZE_MAX && ahead >= 0) {
            if (ahead > 0) {
                produce_fail(s, SL_EPROTO,
                             "producer sequence gap: records are missing "
                             "before this frame");
                failed = true;
                goto consumed;
            }
            keep_from = (size_t)(batch - pr->batches.data);
            keep_seq = seq;
        } else if (keep_from == SIZE_MAX) {
            if ((int32_t)(seq + h.record_count - s->next_seq) > 0) {
                produce_fail(s, SL_EPROTO, "a resent batch overlaps the stored sequence");
                failed = true;
                goto consumed;
            }
            dup_records += h.record_count;
        }
        seq += h.record_count;
    }
    if (dup_records > 0) {
        t->stats.duplicates_dropped += dup_records;
        sl_producer_slot *slot = sl_partition_producer(p, s->producer_id, false);
        if (slot != NULL && keep_from == SIZE_MAX && (int32_t)(seq - slot->stored_seq) <= 0) {
            sl_pending_ack a = {.seq_end = slot->stored_seq,
                                .acks = pr->acks,
                                .base_offset = slot->last_offset,
                                .last_offset = slot->last_offset};
            queue_ack(s, &a, sl_now_ns());
        }
    }
    if (keep_from == SIZE_MAX) {
        goto consumed;
    }
    size_t keep_bytes = pr->batches.size_bytes - keep_from;
    size_t need = sizeof(sl_store_req) + keep_bytes;
    // The frame's credit is already reserved; reserve only what the bookkeeping adds beyond it.
    uint64_t extra = need > frame_bytes ? need - frame_bytes : 0;
    if (extra > 0 && sl_budget_reserve(t->memory, extra, 0) != SL_OK) {
        return SL_EFULL;
    }
    sl_store_req *r = sl_alloc(need);
    if (r == NULL) {
        sl_budget_release(t->memory, extra, 0);
        return SL_EFULL;
    }
    memset(r, 0, sizeof(*r));
    memcpy(r->data, pr->batches.data + keep_from, keep_bytes);
    r->size = keep_bytes;
    r->part = p;
    r->conn = c;
    r->stream_id = s->id;
    r->producer_id = s->producer_id;
    r->first_seq = keep_seq;
    r->record_count = seq - keep_seq;
    r->acks = pr->acks;
    r->charged = frame_bytes + extra;
    t->inflight_charged += r->charged;
    s->received_total += frame_bytes;
    s->credit_reserved -= frame_bytes;
    s->last_frame_ns = sl_now_ns();
    r->submitted_ns = s->last_frame_ns;
    s->frame_max_seen = SL_MAX(s->frame_max_seen, frame_bytes);
    s->next_seq = seq;
    s->acks = pr->acks;
    s->accepted_bytes.total += keep_bytes;
    sl_producer_slot *slot = sl_partition_producer(p, s->producer_id, true);
    slot->next_seq = seq;
    slot->stream = s;
    c->refs++;
    t->refs++;
    t->stats.produce_frames++;
    t->stats.records_in += r->record_count;
    t->stats.bytes_in += keep_bytes;
    t->stats.batches_in += pr->batches.batch_count;
    sl_storage_submit(&t->broker->storage, r);
    return SL_OK;

consumed:
    // The frame is used up without a request: its credit goes back to the budget.
    s->received_total += frame_bytes;
    s->credit_reserved -= frame_bytes;
    sl_budget_release(t->memory, frame_bytes, 0);
    if (failed) {
        sl_conn_stream_close(c, s);
    }
    return SL_OK;
}

void
sl_flow_store_done(sl_broker *b, sl_store_req *r)
{
    sl_partition *p = r->part;
    sl_topic *t = p->topic;
    int64_t now = sl_now_ns();
    sl_budget_release(t->memory, r->charged, 0);
    t->inflight_charged -= r->charged;
    if (r->status == SL_OK) {
        p->end_offset = SL_MAX(p->end_offset, r->end_offset);
        if (r->flushed) {
            p->durable_offset = SL_MAX(p->durable_offset, r->end_offset);
        }
        p->stored_bytes_total += r->size;
        p->stored_records_total += r->record_count;
        p->in_bytes.total += r->size;
        p->in_records.total += r->record_count;
    } else {
        t->stats.append_failures++;
    }
    // The ACK goes to the producer's current stream: the one that sent this, or the one it
    // reconnected with (its resend of this request was recognised as a duplicate).
    sl_stream *s = NULL;
    sl_producer_slot *slot = sl_partition_producer(p, r->producer_id, false);
    if (slot != NULL && r->status == SL_OK) {
        slot->stored_seq = r->first_seq + r->record_count;
        slot->last_offset = r->end_offset - 1;
        slot->last_used_tick = b->tick_count;
    }
    if (slot != NULL) {
        s = slot->stream;
    }
    if (s != NULL && r->conn == NULL) {
        s = NULL;
    }
    if (s != NULL && !s->conn->closing) {
        if (r->status != SL_OK) {
            char why[400];
            snprintf(why, sizeof(why), "append to partition %" PRIu32 " of %s failed: %s", p->index,
                     t->name, sl_strerror(r->status));
            sl_conn_send_error(s->conn, s->id, r->status == SL_ENOSPC ? SL_EFULL : r->status,
                               r->status == SL_EFULL ? SL_THROTTLE_DISK_BUDGET : 0,
                               (uint32_t)b->admission.retry_after_max_ms, "%s", why);
            sl_conn_stream_close(s->conn, s);
            s = NULL;
        } else if (r->acks != SL_ACKS_NONE) {
            sl_pending_ack a = {.seq_end = r->first_seq + r->record_count,
                                .acks = r->flushed ? SL_ACKS_FSYNC : r->acks,
                                .base_offset = r->base_offset,
                                .last_offset = r->end_offset - 1};
            queue_ack(s, &a, now);
        }
        if (s != NULL) {
            sl_flow_replenish(s, now);
        }
    }
    if (r->status == SL_OK) {
        sl_flow_partition_grew(p);
    }
    if (r->conn != NULL) {
        sl_conn_unref(r->conn); // NULL: the broker's own append (dead letters, group.c)
    }
    sl_topic_unref(t);
    sl_free(r, sizeof(*r) + r->size);
}

void
sl_flow_stream_closed(sl_stream *s)
{
    if (s->kind == SL_STREAM_PRODUCE) {
        sl_budget_release(s->topic->memory, s->credit_reserved, 0);
        s->credit_reserved = 0;
        s->topic->producer_count--;
        sl_producer_slot *slot = sl_partition_producer(s->part, s->producer_id, false);
        if (slot != NULL && slot->stream == s) {
            slot->stream = NULL;
        }
        return;
    }
    sl_stream **link = &s->part->consumers;
    while (*link != NULL && *link != s) {
        link = &(*link)->part_next;
    }
    if (*link == s) {
        *link = s->part_next;
    }
    if (s->gpart != NULL) {
        sl_group_stream_closed(s);
    }
    sl_flow_update_low_position(s->part);
}

// ---- consume -----------------------------------------------------------------------------------

void
sl_flow_update_low_position(sl_partition *p)
{
    if (p->consumers == NULL) {
        return; // keep the last known position: an absent consumer still has a backlog
    }
    uint64_t low = UINT64_MAX;
    uint64_t committed = UINT64_MAX;
    uint32_t count = 0;
    for (sl_stream *s = p->consumers; s != NULL; s = s->part_next) {
        low = SL_MIN(low, s->position);
        committed = SL_MIN(committed, s->committed);
        count++;
    }
    p->low_position = low;
    if (count == p->low_consumers && committed > p->low_committed) {
        // What the slowest consumer finished since the last update: the drain the max_lag bound
        // is measured against (delivery alone runs ahead while a prefetch fills). A consumer
        // attaching or leaving moves the minimum without anything being processed: not counted.
        p->topic->acked_bytes.total +=
            (committed - p->low_committed) * sl_partition_record_bytes(p);
    }
    p->low_committed = committed;
    p->low_consumers = count;
    // In lossless mode the slowest consumer group is part of the watermark too.
    sl_log_set_low_watermark(p->log, p->has_group ? SL_MIN(committed, p->group_low) : committed);
}

// Copies the batches in[0..in_len) into out, re-encoding a batch that straddles [first, end) so
// it holds only the records in that range: a consumer that asked for 10 records of a
// 1000-record batch gets 10 records' bytes, not the batch again on every small request. A
// compressed straddling batch goes whole (the consumer skips what is outside the range). Returns
// the bytes written (<= in_len) and the batch count in *count_out.
static size_t
trim_batches(const uint8_t *in, size_t in_len, uint64_t first, uint64_t end, uint8_t *out,
             uint16_t *count_out)
{
    size_t pos = 0;
    size_t used = 0;
    uint16_t count = 0;
    // Bounded by in_len: every pass consumes one batch.
    while (used < in_len) {
        sl_batch_header h;
        if (sl_batch_header_decode(in + used, in_len - used, &h) != SL_OK) {
            break;
        }
        const uint8_t *batch = in + used;
        used += h.length;
        uint64_t bstart = h.base_offset;
        uint64_t bend = bstart + h.record_count;
        if (bend <= first || bstart >= end) {
            continue;
        }
        bool whole = bstart >= first && bend <= end;
        sl_batch_iter it;
        if (whole || sl_batch_iter_init(&it, batch, h.length) != SL_OK) {
            memcpy(out + pos, batch, h.length);
            pos += h.length;
            count++;
            continue;
        }
        uint64_t from = SL_MAX(first, bstart);
        sl_batch_builder bb;
        sl_batch_builder_init(&bb, out + pos, h.length);
        sl_batch_builder_set_producer(&bb, h.producer_id,
                                      h.producer_seq + (uint32_t)(from - bstart));
        sl_record r;
        uint64_t off;
        while (sl_batch_iter_next(&it, &r, &off) == SL_OK) {
            if (off >= from && off < end) {
                // A subset of a batch always fits where the batch did.
                int rc = sl_batch_builder_add(&bb, &r);
                SL_ASSERT(rc == SL_OK);
            }
        }
        size_t blen = 0;
        int rc = sl_batch_builder_finish(&bb, &blen);
        SL_ASSERT(rc == SL_OK);
        sl_batch_set_base_offset(out + pos, from);
        pos += blen;
        count++;
    }
    *count_out = count;
    return pos;
}

// Sends one DELIVER of the batches in data (trimmed to [first, end)); *sent_out gets the batch
// bytes sent, which is what counts against the consumer's byte demand (as the consumer counts).
static int
encode_deliver(sl_stream *s, const uint8_t *data, size_t size, uint64_t first, uint64_t end,
               uint16_t redeliveries, size_t *sent_out)
{
    sl_conn *c = s->conn;
    // The prefix has a fixed size; learn it from a probe describing one minimal batch.
    sl_proto_deliver d = {
        .first_offset = first,
        .end_offset = end,
        .log_end_offset = s->part->end_offset,
        .batches = {.data = data, .size_bytes = SL_BATCH_HEADER_BYTES, .batch_count = 1},
        .redelivery_count = c->version >= SL_PROTO_VERSION_GROUPS ? redeliveries : 0};
    uint8_t probe[DELIVER_HEADER_BYTES];
    size_t prefix = 0;
    if (sl_proto_encode_deliver_prefix(probe, sizeof(probe), s->id, &d, &prefix) != SL_OK) {
        return SL_EINVAL;
    }
    sl_write *w = sl_conn_write_alloc(c, prefix + size);
    if (w == NULL) {
        return SL_EFULL;
    }
    uint16_t count = 0;
    size_t body = trim_batches(data, size, first, end, w->data + prefix, &count);
    d.batches.size_bytes = body;
    d.batches.batch_count = count;
    size_t len = 0;
    int rc = sl_proto_encode_deliver_prefix(w->data, prefix, s->id, &d, &len);
    if (rc != SL_OK || len != prefix) {
        sl_conn_write_discard(c, w);
        return rc != SL_OK ? rc : SL_EINVAL;
    }
    w->size = prefix + body;
    sl_conn_write(c, w);
    *sent_out = body;
    return SL_OK;
}

void
sl_flow_deliver(sl_stream *s)
{
    sl_conn *c = s->conn;
    sl_partition *p = s->part;
    sl_broker *b = c->broker;
    if (c->closing || s->kind != SL_STREAM_CONSUME) {
        return;
    }
    // Bounded: each pass delivers at least one record or stops.
    while (s->demand_records > 0 && s->demand_bytes > 0 && s->position < p->end_offset) {
        if (c->write_queued_bytes > b->config.connection_buffer_bytes / 2) {
            s->stall_reason = SL_STALL_WRITE_FULL;
            return; // resumes from the write callback
        }
        // A group stream may be held back by max_ack_pending, and a delivery never mixes records
        // of different redelivery counts.
        uint64_t want = s->demand_records;
        uint16_t redeliveries = 0;
        if (s->gpart != NULL && (want = sl_group_deliver_limit(s, want, &redeliveries)) == 0) {
            break;
        }
        size_t max_bytes = SL_MIN(s->demand_bytes, (uint64_t)SL_BROKER_DELIVER_BYTES_MAX);
        size_t cap = SL_MIN(b->scratch_size, (size_t)c->max_frame - DELIVER_HEADER_BYTES);
        size_t len = 0;
        int rc = sl_log_read(p->log, s->position, SL_MIN(max_bytes, cap), b->scratch, cap, &len);
        uint64_t start = sl_log_start_offset(p->log);
        if (rc == SL_ERANGE && s->position < start &&
            s->topic->config.full_policy == SL_FULL_DROP_OLDEST) {
            // The topic chose to drop its oldest data: skip to what is left, and count the loss.
            uint64_t lost = start - s->position;
            s->topic->stats.records_dropped += lost;
            sl_broker_log(b, 1,
                          "topic %s partition %" PRIu32 ": consumer on stream %" PRIu32
                          " skipped %" PRIu64 " records dropped by the drop_oldest policy "
                          "(offsets %" PRIu64 "..%" PRIu64 ")",
                          s->topic->name, p->index, s->id, lost, s->position, start - 1);
            sl_drops_record(b, p, SL_DROP_EVICTED, s->position, start);
            s->position = start;
            continue;
        }
        if (rc == SL_ERANGE || rc == SL_ECORRUPT || rc == SL_ETOOBIG) {
            sl_conn_send_error(c, s->id, rc, 0, 0,
                               rc == SL_ERANGE ? "offset %" PRIu64 " is no longer in the log"
                               : rc == SL_ECORRUPT
                                   ? "the batch at offset %" PRIu64 " is corrupt on disk"
                                   : "the batch at offset %" PRIu64 " is larger than a frame",
                               s->position);
            s->demand_records = 0;
            s->requested_records = s->delivered_records;
            return;
        }
        if (rc != SL_OK || len == 0) {
            if (rc != SL_OK) {
                sl_broker_log(b, 3, "topic %s partition %" PRIu32 ": read at %" PRIu64 ": %s",
                              s->topic->name, p->index, s->position, sl_errname(rc));
            }
            break;
        }
        // Walk the batches read: cut at the requested record count (the consumer skips records
        // past end_offset, so a partial batch is fine).
        size_t used = 0;
        uint16_t count = 0;
        uint64_t end = s->position;
        while (used < len && want > end - s->position) {
            sl_batch_header h;
            if (sl_batch_header_decode(b->scratch + used, len - used, &h) != SL_OK) {
                break;
            }
            uint64_t batch_end = h.base_offset + h.record_count;
            uint64_t limit = s->position + want;
            end = SL_MIN(batch_end, limit);
            used += h.length;
            count++;
        }
        if (count == 0 || end <= s->position) {
            break;
        }
        size_t sent = 0;
        if (encode_deliver(s, b->scratch, used, s->position, end, redeliveries, &sent) != SL_OK) {
            s->stall_reason = SL_STALL_WRITE_FULL;
            return; // send allowance full: resumes from the write callback
        }
        if (s->gpart != NULL) {
            sl_group_delivered(s, s->position, end, redeliveries);
        }
        uint64_t records = end - s->position;
        sl_ops_delivered(s, b->scratch, used, s->position, end);
        s->demand_records -= records;
        s->demand_bytes -= SL_MIN(s->demand_bytes, (uint64_t)sent);
        s->delivered_records += records;
        s->position = end;
        s->topic->stats.records_out += records;
        s->topic->stats.bytes_out += sent;
        p->out_bytes.total += sent;
        s->topic->drain_bytes.total += sent;
    }
    s->stall_reason = sl_flow_stall_reason(s);
    sl_flow_update_low_position(p);
}

sl_stall_reason
sl_flow_stall_reason(const sl_stream *s)
{
    if (s->demand_records == 0 || s->demand_bytes == 0) {
        return SL_STALL_NO_DEMAND;
    }
    if (s->gpart != NULL && sl_group_ack_pending_full(s)) {
        return SL_STALL_ACK_PENDING;
    }
    if (s->conn->write_queued_bytes > s->conn->broker->config.connection_buffer_bytes / 2) {
        return SL_STALL_WRITE_FULL;
    }
    return s->position >= s->part->end_offset ? SL_STALL_CAUGHT_UP : SL_STALL_NONE;
}

void
sl_flow_partition_grew(sl_partition *p)
{
    for (sl_stream *s = p->consumers; s != NULL; s = s->part_next) {
        if (s->demand_records > 0) {
            sl_flow_deliver(s);
        }
    }
}

// ---- the tick ----------------------------------------------------------------------------------

// Max-min fair shares of each topic's credit among its producer streams, from the windows they
// would get alone.
static void
fair_shares(sl_broker *b)
{
    enum { SHARE_STREAMS_MAX = 256 };
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        if (t->producer_count < 2) {
            continue;
        }
        sl_stream *streams[SHARE_STREAMS_MAX];
        uint64_t demands[SHARE_STREAMS_MAX];
        uint64_t shares[SHARE_STREAMS_MAX];
        size_t n = 0;
        for (sl_conn *c = b->conns; c != NULL; c = c->next) {
            for (sl_stream *s = c->streams; s != NULL && n < SHARE_STREAMS_MAX; s = s->conn_next) {
                if (s->kind == SL_STREAM_PRODUCE && s->topic == t) {
                    streams[n] = s;
                    demands[n] = sl_admission_window_for(&b->admission, s->accepted_bytes.per_s,
                                                         round_trip_us(b, s->acks));
                    n++;
                }
            }
        }
        sl_budget_stats st;
        sl_budget_stats_get(t->memory, &st);
        uint64_t capacity = st.capacity_bytes * b->admission.shrink_from_pct / 100;
        sl_fair_share(capacity, demands, n, shares);
        for (size_t i = 0; i < n; i++) {
            streams[i]->fair_cap = shares[i];
        }
    }
}

void
sl_flow_tick(sl_broker *b, int64_t now)
{
    fair_shares(b);
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        for (uint32_t i = 0; i < t->config.partition_count; i++) {
            sl_partition *p = &t->partitions[i];
            uint64_t durable = sl_log_durable_offset(p->log);
            p->durable_offset = SL_MAX(p->durable_offset, durable);
        }
    }
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL && !c->closing; s = s->conn_next) {
            if (s->kind == SL_STREAM_PRODUCE) {
                flush_acks(s, now, false);
                sl_flow_replenish(s, now);
            } else if (s->demand_records > 0) {
                sl_flow_deliver(s);
            }
        }
    }
}
