// Credit invariants checked at run time (every SL_INVARIANTS_PERIOD_MS on the tick): each derived
// figure of the flow accounting is compared with its source of truth, and on a mismatch the
// broker logs it (the first of each kind at WARN, later ones at DEBUG), counts it in
// sluice_credit_resyncs_total{kind} and recomputes the figure, so a leak in the accounting cannot
// stall a stream forever. Everything checked is changed only on the loop thread, in one piece, so
// between two callbacks (where the tick runs) every invariant holds exactly.
#include "broker/ops.h"

#include <inttypes.h>
#include <stdio.h>

#include <sluice/error.h>

#include "broker/broker.h"
#include "core/util.h"

const char *
sl_resync_kind_name(sl_resync_kind kind)
{
    static const char *const names[SL_RESYNC_KIND_COUNT] = {
        "producer_credit", "topic_memory", "consumer_demand", "producer_count", "low_position"};
    return (uint32_t)kind < SL_RESYNC_KIND_COUNT ? names[kind] : "unknown";
}

uint64_t
sl_invariants_resyncs(const sl_broker *b, sl_resync_kind kind)
{
    return b->ops != NULL && (uint32_t)kind < SL_RESYNC_KIND_COUNT ? b->ops->resyncs[kind] : 0;
}

static void
resynced(sl_broker *b, sl_resync_kind kind, const char *what, uint64_t was, uint64_t now)
{
    sl_ops *o = b->ops;
    o->resyncs[kind]++;
    int level = o->resync_logged[kind] ? 3 : 1;
    o->resync_logged[kind] = true;
    sl_broker_log(b, level,
                  "invariant %s broken: %s was %" PRIu64 ", its source of truth says %" PRIu64
                  "; resynchronised (resync %" PRIu64 " of this kind)",
                  sl_resync_kind_name(kind), what, was, now, o->resyncs[kind]);
}

// A producer stream's reserved credit is granted - received; the budget follows the fix.
static uint32_t
check_producer(sl_broker *b, sl_stream *s)
{
    uint64_t truth = s->granted_total - s->received_total;
    if (s->credit_reserved == truth) {
        return 0;
    }
    char what[320];
    snprintf(what, sizeof(what), "credit reserved by stream %" PRIu32 " of topic %s", s->id,
             s->topic->name);
    resynced(b, SL_RESYNC_PRODUCER_CREDIT, what, s->credit_reserved, truth);
    if (s->credit_reserved > truth) {
        sl_budget_release(s->topic->memory, s->credit_reserved - truth, 0);
    } else {
        // When the budget cannot hold it now, the topic check settles the budget on a later pass.
        if (sl_budget_reserve(s->topic->memory, truth - s->credit_reserved, 0) != SL_OK) {
            sl_broker_log(b, 3, "resync of stream %" PRIu32 ": topic budget full, settled later",
                          s->id);
        }
    }
    s->credit_reserved = truth;
    return 1;
}

// A consumer stream's outstanding demand is what it requested minus what it was delivered.
static uint32_t
check_consumer(sl_broker *b, sl_stream *s)
{
    if (s->requested_records == UINT64_MAX || s->demand_records == UINT64_MAX) {
        return 0; // saturated: "unbounded" on both sides
    }
    uint64_t truth = s->requested_records >= s->delivered_records
                         ? s->requested_records - s->delivered_records
                         : 0;
    if (s->demand_records == truth) {
        return 0;
    }
    char what[320];
    snprintf(what, sizeof(what), "outstanding demand of consumer stream %" PRIu32 " of topic %s",
             s->id, s->topic->name);
    resynced(b, SL_RESYNC_CONSUMER_DEMAND, what, s->demand_records, truth);
    s->demand_records = truth;
    if (truth > 0) {
        sl_flow_deliver(s);
    }
    return 1;
}

// Per topic: the memory budget holds exactly the producers' reserved credit and the requests at
// the storage thread; the producer count is the open producer streams.
static uint32_t
check_topic(sl_broker *b, sl_topic *t, uint64_t credit, uint32_t producers)
{
    uint32_t n = 0;
    sl_budget_stats st;
    sl_budget_stats_get(t->memory, &st);
    uint64_t truth = credit + t->inflight_charged;
    if (st.used_bytes != truth) {
        char what[320];
        snprintf(what, sizeof(what), "memory budget of topic %s", t->name);
        resynced(b, SL_RESYNC_TOPIC_MEMORY, what, st.used_bytes, truth);
        if (st.used_bytes > truth) {
            sl_budget_release(t->memory, st.used_bytes - truth, 0);
        } else {
            // Under-counted and full: the next check tries again once releases made room.
            if (sl_budget_reserve(t->memory, truth - st.used_bytes, 0) != SL_OK) {
                sl_broker_log(b, 3, "resync of topic %s: budget full, settled later", t->name);
            }
        }
        n++;
    }
    if (t->producer_count != producers) {
        char what[320];
        snprintf(what, sizeof(what), "producer count of topic %s", t->name);
        resynced(b, SL_RESYNC_PRODUCER_COUNT, what, t->producer_count, producers);
        t->producer_count = producers;
        n++;
    }
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        if (p->consumers == NULL) {
            continue; // an absent consumer keeps its last known position
        }
        uint64_t low = UINT64_MAX;
        for (sl_stream *s = p->consumers; s != NULL; s = s->part_next) {
            low = SL_MIN(low, s->position);
        }
        if (p->low_position != low) {
            char what[320];
            snprintf(what, sizeof(what), "low position of partition %" PRIu32 " of topic %s", i,
                     t->name);
            resynced(b, SL_RESYNC_LOW_POSITION, what, p->low_position, low);
            sl_flow_update_low_position(p);
            n++;
        }
    }
    return n;
}

uint32_t
sl_invariants_check(sl_broker *b)
{
    if (b->ops == NULL) {
        return 0;
    }
    uint32_t n = 0;
    // Streams first (their fixes move the topic budgets), then each topic against the sums.
    // Bounded by the connections and their streams.
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL && !c->closing; s = s->conn_next) {
            if (s->kind == SL_STREAM_PRODUCE) {
                n += check_producer(b, s);
            } else if (s->kind == SL_STREAM_CONSUME) {
                n += check_consumer(b, s);
            }
        }
    }
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        uint64_t credit = 0;
        uint32_t producers = 0;
        for (sl_conn *c = b->conns; c != NULL; c = c->next) {
            for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
                if (s->kind == SL_STREAM_PRODUCE && s->topic == t) {
                    credit += s->credit_reserved;
                    producers++;
                }
            }
        }
        n += check_topic(b, t, credit, producers);
    }
    return n;
}

bool
sl_invariants_inject(sl_broker *b, sl_resync_kind kind)
{
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
            if (kind == SL_RESYNC_PRODUCER_CREDIT && s->kind == SL_STREAM_PRODUCE) {
                s->credit_reserved += 4096; // as if a grant were counted twice
                return true;
            }
            if (kind == SL_RESYNC_CONSUMER_DEMAND && s->kind == SL_STREAM_CONSUME) {
                s->demand_records = 0; // as if demand were lost: the stream would stall
                return true;
            }
            // A consumer with demand recomputes the low position on every delivery pass.
            if (kind == SL_RESYNC_LOW_POSITION && s->kind == SL_STREAM_CONSUME &&
                s->demand_records == 0) {
                s->part->low_position += 1;
                return true;
            }
        }
    }
    sl_topic *t = b->topics;
    if (t == NULL) {
        return false;
    }
    if (kind == SL_RESYNC_TOPIC_MEMORY) {
        // A leaked reservation: nothing will ever release it.
        return sl_budget_reserve(t->memory, 8192, 0) == SL_OK;
    }
    if (kind == SL_RESYNC_PRODUCER_COUNT) {
        t->producer_count += 1;
        return true;
    }
    return false;
}
