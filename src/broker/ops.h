// What the broker tells its operators beyond the raw counters (loop thread only): the drop ledger
// (drops.c), the run-time credit invariants and their resyncs (invariants.c), the "why is it
// stalled" walk of each stream's credit chain (why.c), and the per-topic latency histograms and
// predictions (ops.c). Kept out of broker.h so the flow and connection code only calls a few
// hooks; the admin endpoint renders /why, /drops and the extra metric families from here.
#ifndef SLUICE_BROKER_OPS_H
#define SLUICE_BROKER_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include <sluice/histogram.h>

#include "core/strbuf.h"

typedef struct sl_broker sl_broker;
typedef struct sl_topic sl_topic;
typedef struct sl_partition sl_partition;
typedef struct sl_stream sl_stream;
typedef struct sl_metrics_registry sl_metrics_registry;

// ---- drop ledger (drops.c)

// Entries the ledger keeps: each a run of dropped offsets of one partition for one reason;
// adjacent drops merge into the newest entry, and the oldest entry is overwritten when it is
// full (its records stay counted in the totals).
#define SL_DROPS_LEDGER_ENTRIES 256u

typedef enum sl_drop_reason {
    SL_DROP_EVICTED = 0, // drop_oldest: retention removed records a consumer had not read
    SL_DROP_REASON_COUNT = 1,
} sl_drop_reason;

typedef struct sl_drop_entry {
    char topic[256];
    uint32_t partition;
    sl_drop_reason reason;
    uint64_t first_offset; // inclusive
    uint64_t end_offset;   // exclusive
    int64_t first_ns;      // when the first / last drop of the run was seen (sl_now_ns)
    int64_t last_ns;
    int64_t wall_ms; // wall clock of the last drop, for people
} sl_drop_entry;

// Records that [first_offset, end_offset) of p were dropped for reason, merging with the newest
// entry when it continues it. Counts into the totals of the topic's reason.
void sl_drops_record(sl_broker *b, sl_partition *p, sl_drop_reason reason, uint64_t first_offset,
                     uint64_t end_offset);

// Finds records retention removed before the slowest consumer of a drop_oldest topic read them
// (or with no consumer at all) and records them. Called on the tick.
void sl_drops_scan(sl_broker *b);

// Records dropped in total (since start), over every topic; and the ledger's overwritten entries.
uint64_t sl_drops_total(const sl_broker *b);

// Writes the ledger as JSON (entries of topic, or all when topic is NULL or empty), newest last.
void sl_drops_render(sl_broker *b, const char *topic, sl_strbuf *sb);

const char *sl_drop_reason_name(sl_drop_reason reason);

// ---- credit invariants (invariants.c)

// How often the tick checks the credit accounting.
#define SL_INVARIANTS_PERIOD_MS 1000u

typedef enum sl_resync_kind {
    SL_RESYNC_PRODUCER_CREDIT = 0, // a stream's reserved credit != granted - received
    SL_RESYNC_TOPIC_MEMORY = 1,    // topic memory budget != credit held + requests in flight
    SL_RESYNC_CONSUMER_DEMAND = 2, // demand != requested - delivered
    SL_RESYNC_PRODUCER_COUNT = 3,  // topic producer count != open producer streams
    SL_RESYNC_LOW_POSITION = 4,    // partition low position != slowest consumer's position
    SL_RESYNC_KIND_COUNT = 5,
} sl_resync_kind;

// Checks every invariant now; on a mismatch logs it (once per kind and object until it holds
// again), counts it and recomputes the derived figure from its source of truth. Returns the
// number of resyncs made.
uint32_t sl_invariants_check(sl_broker *b);

// Resyncs made since start, by kind.
uint64_t sl_invariants_resyncs(const sl_broker *b, sl_resync_kind kind);

const char *sl_resync_kind_name(sl_resync_kind kind);

// Test hook: breaks one invariant of kind on the first object it applies to (leaks credit,
// forgets demand...), as a bug would. Returns true when something was broken.
bool sl_invariants_inject(sl_broker *b, sl_resync_kind kind);

// ---- why (why.c)

// Why a stream's flow stops where it does: the hop of the credit chain holding it.
typedef enum sl_why_reason {
    SL_WHY_FLOWING = 0,            // records move at every hop
    SL_WHY_IDLE = 1,               // nothing to move: the producer sends nothing, all consumed
    SL_WHY_NO_DEMAND = 2,          // consumer: no credit requested (REQUEST n exhausted)
    SL_WHY_INFLIGHT_LIMIT = 3,     // consumer: in-flight limit reached, waiting for acks (groups)
    SL_WHY_CONSUMER_ABSENT = 4,    // no consumer attached to the partition
    SL_WHY_CONSUMER_SLOW = 5,      // consumer: its connection's send allowance is full
    SL_WHY_PRODUCER_THROTTLED = 6, // producer: no credit, THROTTLE with retry-after (budget named)
    SL_WHY_PRODUCER_SHRUNK = 7,    // producer: credit shrunk or acks delayed by a budget's pressure
    SL_WHY_DISK_FULL = 8,          // the disk budget is full
    SL_WHY_PRODUCER_NO_CREDIT = 9, // producer used all its credit; the next grant is pending
    SL_WHY_REASON_COUNT = 10,
} sl_why_reason;

// A per-stream reason for a consumer stream that is not the broker's own (the consumer groups'
// in-flight limit): returns SL_WHY_FLOWING when it does not hold the stream. Set by the groups
// code; NULL until then.
typedef sl_why_reason (*sl_why_consumer_hook)(const sl_stream *s, char *detail, size_t detail_size);
void sl_why_set_consumer_hook(sl_why_consumer_hook hook);

const char *sl_why_reason_name(sl_why_reason reason);

// Writes the /why answer for topic as JSON. With a group (NULL or "" for none): only the group's
// streams, its members, each partition's owner and the hop holding it, and its predictions.
// Returns SL_ENOENT (and writes an error object) when the topic, or the group on it, does not
// exist.
int sl_why_render(sl_broker *b, const char *topic, const char *group, sl_strbuf *sb);

// ---- histograms and predictions (ops.c)

// Creates the broker's operator state (b->ops). Returns SL_OK or SL_ENOMEM.
int sl_ops_open(sl_broker *b);
void sl_ops_close(sl_broker *b);
// Once per tick: the invariants (every SL_INVARIANTS_PERIOD_MS) and per-topic bookkeeping.
void sl_ops_tick(sl_broker *b, int64_t now_ns);

// Hooks for flow.c: an ACK held back for delay_ns; records delivered (batches in data, for the
// end-to-end latency from their producer timestamps); records dropped by drop_oldest.
void sl_ops_ack_delayed(sl_stream *s, int64_t delay_ns);
void sl_ops_delivered(sl_stream *s, const uint8_t *batches, size_t size, uint64_t first_offset,
                      uint64_t end_offset);

// The per-topic histograms, or NULL when the topic has none yet (nothing recorded, or beyond
// SL_OPS_TOPIC_HISTOGRAMS_MAX topics).
#define SL_OPS_TOPIC_HISTOGRAMS_MAX 64u
sl_histogram *sl_ops_ack_delay_histogram(sl_broker *b, const sl_topic *t);
sl_histogram *sl_ops_latency_histogram(sl_broker *b, const sl_topic *t);

// Predictions for one topic from the current smoothed rates (seconds; +Inf when never, 0 when
// already). consumers_recommended: ceil(input rate / per-consumer-stream delivery rate), at
// least 1 when anything is produced, 0 when nothing is and no consumer is attached.
typedef struct sl_ops_predict {
    double in_records_per_s;
    double out_records_per_s;
    double backlog_records;
    double drain_seconds;        // backlog / (out - in); +Inf when it does not shrink
    double memory_full_seconds;  // topic memory budget
    double backlog_full_seconds; // topic max_backlog_bytes
    double disk_full_seconds;    // topic disk budget
    double per_consumer_records_per_s;
    uint32_t consumers;
    uint32_t consumers_recommended;
} sl_ops_predict;

void sl_ops_predict_topic(sl_broker *b, sl_topic *t, sl_ops_predict *out);

// ---- the state behind all of it (b->ops), shared by ops.c, drops.c, invariants.c

typedef struct sl_ops_topic_hist {
    char name[256];          // "" when free
    sl_histogram *ack_delay; // ns an ACK was held back
    sl_histogram *latency;   // ns from the producer's record timestamp to delivery
} sl_ops_topic_hist;

typedef struct sl_ops {
    sl_drop_entry ledger[SL_DROPS_LEDGER_ENTRIES]; // ring, oldest at ledger_head
    uint32_t ledger_head;
    uint32_t ledger_count;
    uint64_t ledger_overwritten;                // entries lost to the ring's bound
    uint64_t drops_total[SL_DROP_REASON_COUNT]; // records, since start
    uint64_t resyncs[SL_RESYNC_KIND_COUNT];     // since start
    bool resync_logged[SL_RESYNC_KIND_COUNT];   // the first of each kind is logged at WARN
    int64_t last_check_ns;
    sl_ops_topic_hist hist[SL_OPS_TOPIC_HISTOGRAMS_MAX];
} sl_ops;

#endif
