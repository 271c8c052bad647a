// The broker's metrics for the admin endpoint: a registry built fresh on the loop thread for each
// scrape from the current topics, partitions, connections and streams. Building per scrape (not
// registering on create and removing on delete) means no hooks in topic.c or server.c and no
// series that outlive their object; the cost is bounded by SL_ADMIN_SERIES_MAX. Names and meaning:
// docs/metrics.md, "Broker".
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sluice/batch.h>

#include <sluice/error.h>

#include "broker/admin_http.h"
#include "broker/broker.h"
#include "broker/group.h"
#include "broker/ops.h"
#include "core/util.h"

typedef enum fam {
    F_CONNECTIONS,
    F_CONN_ACCEPTED,
    F_CONN_REFUSED,
    F_PROTOCOL_ERRORS,
    F_CREDIT_VIOLATIONS,
    F_DISCONNECTS,
    F_TOPICS,
    F_STORAGE_APPENDS,
    F_STORAGE_FLUSHES,
    F_STORAGE_APPEND_S,
    F_STORAGE_FLUSH_S,
    F_BUDGET_CAPACITY,
    F_BUDGET_CAPACITY_RECORDS,
    F_BUDGET_USED,
    F_BUDGET_USED_RECORDS,
    F_BUDGET_PEAK,
    F_BUDGET_FILL,
    F_BUDGET_FULL,
    F_TOPIC_RECORDS_IN,
    F_TOPIC_BYTES_IN,
    F_TOPIC_RECORDS_OUT,
    F_TOPIC_BYTES_OUT,
    F_TOPIC_BATCHES_IN,
    F_TOPIC_PRODUCE_FRAMES,
    F_TOPIC_APPENDED,
    F_TOPIC_CREDIT_GRANTED,
    F_TOPIC_CREDIT_OUTSTANDING,
    F_TOPIC_THROTTLED,
    F_TOPIC_ACKS_DELAYED,
    F_TOPIC_DROPPED,
    F_TOPIC_DUPLICATES,
    F_TOPIC_APPEND_FAILURES,
    F_TOPIC_PRODUCERS,
    F_TOPIC_CONSUMERS,
    F_TOPIC_BACKLOG,
    F_TOPIC_DRAIN_RATE,
    F_PART_IN_BYTES,
    F_PART_IN_RECORDS,
    F_PART_OUT_BYTES,
    F_PART_IN_BYTES_RATE,
    F_PART_IN_RECORDS_RATE,
    F_PART_OUT_BYTES_RATE,
    F_PART_END_OFFSET,
    F_PART_DURABLE_OFFSET,
    F_PART_LAG_RECORDS,
    F_PART_BACKLOG,
    F_CONN_STREAMS,
    F_CONN_WRITE_QUEUED,
    F_CONN_CREDIT_GRANTED,
    F_CONN_CREDIT_OUTSTANDING,
    F_CONN_IN_RATE,
    F_CONN_OVER_CREDIT,
    F_CONN_READ_PAUSED,
    F_CONN_WRITE_OLDEST_AGE,
    F_PRODUCER_CREDIT_GRANTED,
    F_PRODUCER_CREDIT_OUTSTANDING,
    F_PRODUCER_RECEIVED,
    F_PRODUCER_IN_RATE,
    F_PRODUCER_ACKS_HELD,
    F_CONSUMER_LAG_RECORDS,
    F_CONSUMER_LAG_SECONDS,
    F_CONSUMER_DELIVERED,
    F_CONSUMER_POSITION,
    F_CONSUMER_COMMITTED,
    F_ADMIN_SCRAPES,
    F_ADMIN_TIMEOUTS,
    F_ADMIN_TOO_LARGE,
    F_ADMIN_SERIES_DROPPED,
    F_GROUP_MEMBERS,
    F_GROUP_GENERATION,
    F_GROUP_REBALANCES,
    F_GROUP_REDELIVERIES,
    F_GROUP_DLQ_RECORDS,
    F_GROUP_COMMITTED,
    F_GROUP_LAG_RECORDS,
    F_GROUP_UNACKED,
    F_GROUP_STALLED,
    F_GROUP_CONSUMED_RATE,
    F_GROUP_LAG_SECONDS,
    F_GROUP_CONSUMERS_RECOMMENDED,
    F_GROUP_DRAIN_SECONDS,
    // Operator families (ops.h): resyncs, histograms, predictions, demand, ages.
    F_CREDIT_RESYNCS,
    F_DROPS_RECORDED,
    F_DROPS_OVERWRITTEN,
    F_TOPIC_ACK_DELAY,
    F_TOPIC_LATENCY,
    F_TOPIC_IN_RECORDS_RATE,
    F_TOPIC_OUT_RECORDS_RATE,
    F_TOPIC_DRAIN_SECONDS,
    F_TOPIC_CONSUMERS_RECOMMENDED,
    F_TOPIC_PER_CONSUMER_RATE,
    F_BUDGET_FULL_IN,
    F_PART_OUT_RECORDS_RATE,
    F_PART_OLDEST_AGE,
    F_PRODUCER_LEVEL,
    F_CONSUMER_DEMAND,
    F_CONSUMER_DEMAND_BYTES,
    F_CONSUMER_REQUESTED,
    F_PRODUCER_ACKS_OLDEST,
    F_STORAGE_QUEUED,
    F_STORAGE_QUEUE_AGE,
    F_COUNT
} fam;

static const char *const L_REASON[] = {"reason"};
static const char *const L_BUDGET[] = {"scope", "owner", "budget"};
static const char *const L_TOPIC[] = {"topic"};
static const char *const L_TOPIC_REASON[] = {"topic", "reason"};
static const char *const L_PART[] = {"topic", "partition"};
static const char *const L_CONN[] = {"conn", "peer"};
static const char *const L_STREAM[] = {"conn", "stream", "topic", "partition"};
static const char *const L_GROUP[] = {"group", "topic"};
static const char *const L_GROUP_PART[] = {"group", "topic", "partition"};
static const char *const L_GROUP_STALL[] = {"group", "topic", "partition", "reason"};
static const char *const L_KIND[] = {"kind"};

#define C      SL_METRIC_COUNTER
#define G      SL_METRIC_GAUGE
#define S      SL_METRIC_SUMMARY
#define LBL(a) a, SL_ARRAY_LEN(a)
#define NOLBL  NULL, 0

typedef struct fam_desc {
    const char *name;
    const char *help;
    sl_metric_type type;
    const char *const *labels;
    uint32_t label_count;
} fam_desc;

static const fam_desc FAMS[F_COUNT] = {
    [F_CONNECTIONS] = {"sluice_broker_connections", "open client connections", G, NOLBL},
    [F_CONN_ACCEPTED] = {"sluice_broker_connections_accepted_total", "connections accepted", C,
                         NOLBL},
    [F_CONN_REFUSED] = {"sluice_broker_connections_refused_total",
                        "connections refused (max_connections or memory budget)", C, NOLBL},
    [F_PROTOCOL_ERRORS] = {"sluice_broker_protocol_errors_total", "malformed or illegal frames", C,
                           NOLBL},
    [F_CREDIT_VIOLATIONS] = {"sluice_broker_credit_violations_total",
                             "PRODUCE frames beyond the granted credit", C, NOLBL},
    [F_DISCONNECTS] = {"sluice_broker_disconnects_total",
                       "connections closed by the broker (escalation's last step), by reason", C,
                       LBL(L_REASON)},
    [F_TOPICS] = {"sluice_broker_topics", "topics held", G, NOLBL},
    [F_STORAGE_APPENDS] = {"sluice_storage_appends_total", "log appends by the storage thread", C,
                           NOLBL},
    [F_STORAGE_FLUSHES] = {"sluice_storage_flushes_total", "group-commit flushes", C, NOLBL},
    [F_STORAGE_APPEND_S] = {"sluice_storage_append_seconds",
                            "smoothed time of one group of appends", G, NOLBL},
    [F_STORAGE_FLUSH_S] = {"sluice_storage_flush_seconds", "smoothed time of one flush", G, NOLBL},
    [F_BUDGET_CAPACITY] = {"sluice_budget_capacity_bytes",
                           "configured byte capacity of a budget (0: unbounded)", G, LBL(L_BUDGET)},
    [F_BUDGET_CAPACITY_RECORDS] = {"sluice_budget_capacity_records",
                                   "configured record capacity of a budget (0: none)", G,
                                   LBL(L_BUDGET)},
    [F_BUDGET_USED] = {"sluice_budget_used_bytes", "bytes held against a budget now", G,
                       LBL(L_BUDGET)},
    [F_BUDGET_USED_RECORDS] = {"sluice_budget_used_records", "records held against a budget now", G,
                               LBL(L_BUDGET)},
    [F_BUDGET_PEAK] = {"sluice_budget_peak_bytes", "highest bytes held since the budget was made",
                       G, LBL(L_BUDGET)},
    [F_BUDGET_FILL] = {"sluice_budget_fill_ratio", "max(bytes, records) fill of a budget, 0..1", G,
                       LBL(L_BUDGET)},
    [F_BUDGET_FULL] = {"sluice_budget_full_total", "reservations refused because it was full", C,
                       LBL(L_BUDGET)},
    [F_TOPIC_RECORDS_IN] = {"sluice_topic_records_in_total", "records received from producers", C,
                            LBL(L_TOPIC)},
    [F_TOPIC_BYTES_IN] = {"sluice_topic_bytes_in_total", "batch bytes received from producers", C,
                          LBL(L_TOPIC)},
    [F_TOPIC_RECORDS_OUT] = {"sluice_topic_records_out_total", "records delivered to consumers", C,
                             LBL(L_TOPIC)},
    [F_TOPIC_BYTES_OUT] = {"sluice_topic_bytes_out_total", "batch bytes delivered to consumers", C,
                           LBL(L_TOPIC)},
    [F_TOPIC_BATCHES_IN] = {"sluice_topic_batches_in_total", "batches received", C, LBL(L_TOPIC)},
    [F_TOPIC_PRODUCE_FRAMES] = {"sluice_topic_produce_frames_total", "PRODUCE frames received", C,
                                LBL(L_TOPIC)},
    [F_TOPIC_APPENDED] = {"sluice_topic_records_appended_total",
                          "records appended to the log since the broker started", C, LBL(L_TOPIC)},
    [F_TOPIC_CREDIT_GRANTED] = {"sluice_topic_credit_granted_bytes_total",
                                "produce credit granted to the topic's producers", C, LBL(L_TOPIC)},
    [F_TOPIC_CREDIT_OUTSTANDING] = {"sluice_topic_credit_outstanding_bytes",
                                    "credit granted and not yet used by open producer streams", G,
                                    LBL(L_TOPIC)},
    [F_TOPIC_THROTTLED] = {"sluice_producer_throttled_total",
                           "THROTTLE answers to producers, by reason", C, LBL(L_TOPIC_REASON)},
    [F_TOPIC_ACKS_DELAYED] = {"sluice_topic_acks_delayed_total",
                              "acknowledgements held back (escalation step 2)", C, LBL(L_TOPIC)},
    [F_TOPIC_DROPPED] = {"sluice_topic_records_dropped_total",
                         "records dropped by a lossy full policy, by reason (lossy topics only)", C,
                         LBL(L_TOPIC_REASON)},
    [F_TOPIC_DUPLICATES] = {"sluice_topic_duplicates_dropped_total",
                            "resent records recognised as duplicates and not stored again", C,
                            LBL(L_TOPIC)},
    [F_TOPIC_APPEND_FAILURES] = {"sluice_topic_append_failures_total", "failed log appends", C,
                                 LBL(L_TOPIC)},
    [F_TOPIC_PRODUCERS] = {"sluice_topic_producers", "open producer streams", G, LBL(L_TOPIC)},
    [F_TOPIC_CONSUMERS] = {"sluice_topic_consumers", "open consumer streams", G, LBL(L_TOPIC)},
    [F_TOPIC_BACKLOG] = {"sluice_topic_backlog_bytes",
                         "bytes not yet consumed by the slowest consumer (estimate)", G,
                         LBL(L_TOPIC)},
    [F_TOPIC_DRAIN_RATE] = {"sluice_topic_drain_bytes_per_second",
                            "smoothed delivery rate over all partitions", G, LBL(L_TOPIC)},
    [F_PART_IN_BYTES] = {"sluice_partition_in_bytes_total", "bytes appended since the start", C,
                         LBL(L_PART)},
    [F_PART_IN_RECORDS] = {"sluice_partition_in_records_total", "records appended since the start",
                           C, LBL(L_PART)},
    [F_PART_OUT_BYTES] = {"sluice_partition_out_bytes_total", "bytes delivered since the start", C,
                          LBL(L_PART)},
    [F_PART_IN_BYTES_RATE] = {"sluice_partition_in_bytes_per_second", "smoothed append rate", G,
                              LBL(L_PART)},
    [F_PART_IN_RECORDS_RATE] = {"sluice_partition_in_records_per_second",
                                "smoothed append rate in records", G, LBL(L_PART)},
    [F_PART_OUT_BYTES_RATE] = {"sluice_partition_out_bytes_per_second", "smoothed delivery rate", G,
                               LBL(L_PART)},
    [F_PART_END_OFFSET] = {"sluice_partition_end_offset", "offset of the next record appended", G,
                           LBL(L_PART)},
    [F_PART_DURABLE_OFFSET] = {"sluice_partition_durable_offset", "records made durable below", G,
                               LBL(L_PART)},
    [F_PART_LAG_RECORDS] = {"sluice_partition_lag_records",
                            "records between the slowest consumer and the end", G, LBL(L_PART)},
    [F_PART_BACKLOG] = {"sluice_partition_backlog_bytes",
                        "bytes between the slowest consumer and the end (estimate)", G,
                        LBL(L_PART)},
    [F_CONN_STREAMS] = {"sluice_conn_streams", "open streams on a connection", G, LBL(L_CONN)},
    [F_CONN_WRITE_QUEUED] = {"sluice_conn_write_queued_bytes",
                             "bytes written and not yet taken by the socket", G, LBL(L_CONN)},
    [F_CONN_CREDIT_GRANTED] = {"sluice_conn_credit_granted_bytes",
                               "credit granted to the connection's open producer streams", G,
                               LBL(L_CONN)},
    [F_CONN_CREDIT_OUTSTANDING] = {"sluice_conn_credit_outstanding_bytes",
                                   "credit granted and not yet used on the connection", G,
                                   LBL(L_CONN)},
    [F_CONN_IN_RATE] = {"sluice_conn_in_bytes_per_second",
                        "smoothed produce rate accepted on the connection", G, LBL(L_CONN)},
    [F_CONN_OVER_CREDIT] = {"sluice_conn_over_credit",
                            "1 while reads are stopped because the peer exceeded its credit", G,
                            LBL(L_CONN)},
    [F_CONN_READ_PAUSED] = {"sluice_conn_read_paused",
                            "1 while a frame waits for budget (reads stopped)", G, LBL(L_CONN)},
    [F_CONN_WRITE_OLDEST_AGE] = {"sluice_connection_write_queue_oldest_age_seconds",
                                 "age of the oldest write queued and not yet taken by the socket "
                                 "(0 when none)",
                                 G, LBL(L_CONN)},
    [F_PRODUCER_CREDIT_GRANTED] = {"sluice_producer_credit_granted_bytes_total",
                                   "credit granted to one producer stream", C, LBL(L_STREAM)},
    [F_PRODUCER_CREDIT_OUTSTANDING] = {"sluice_producer_credit_outstanding_bytes",
                                       "credit granted to one stream and not yet used", G,
                                       LBL(L_STREAM)},
    [F_PRODUCER_RECEIVED] = {"sluice_producer_received_bytes_total",
                             "PRODUCE bytes received on one stream", C, LBL(L_STREAM)},
    [F_PRODUCER_IN_RATE] = {"sluice_producer_in_bytes_per_second",
                            "smoothed accepted rate of one stream", G, LBL(L_STREAM)},
    [F_PRODUCER_ACKS_HELD] = {"sluice_producer_acks_held",
                              "acknowledgements held back on one stream now", G, LBL(L_STREAM)},
    [F_CONSUMER_LAG_RECORDS] = {"sluice_consumer_lag_records",
                                "records between a consumer's position and the partition end", G,
                                LBL(L_STREAM)},
    [F_CONSUMER_LAG_SECONDS] = {"sluice_consumer_lag_seconds",
                                "time to catch up at the partition's delivery rate (+Inf when "
                                "behind and nothing is delivered)",
                                G, LBL(L_STREAM)},
    [F_CONSUMER_DELIVERED] = {"sluice_consumer_delivered_records_total",
                              "records delivered on one consumer stream", C, LBL(L_STREAM)},
    [F_CONSUMER_POSITION] = {"sluice_consumer_position", "next offset a consumer is sent", G,
                             LBL(L_STREAM)},
    [F_CONSUMER_COMMITTED] = {"sluice_consumer_committed_offset", "a consumer's last COMMIT", G,
                              LBL(L_STREAM)},
    [F_ADMIN_SCRAPES] = {"sluice_admin_scrapes_total", "/metrics and /stats renders", C, NOLBL},
    [F_ADMIN_TIMEOUTS] = {"sluice_admin_timeouts_total",
                          "admin requests answered 503: the loop did not answer in time", C, NOLBL},
    [F_ADMIN_TOO_LARGE] = {"sluice_admin_responses_too_large_total",
                           "admin responses refused (500) for exceeding the size cap", C, NOLBL},
    [F_ADMIN_SERIES_DROPPED] = {"sluice_admin_series_dropped",
                                "series left out of the previous scrape (series cap)", G, NOLBL},
    [F_GROUP_MEMBERS] = {"sluice_group_members", "live members of a consumer group", G,
                         LBL(L_GROUP)},
    [F_GROUP_GENERATION] = {"sluice_group_generation", "current generation of a consumer group", G,
                            LBL(L_GROUP)},
    [F_GROUP_REBALANCES] = {"sluice_group_rebalances_total",
                            "assignment changes (generations) since the broker started", C,
                            LBL(L_GROUP)},
    [F_GROUP_REDELIVERIES] = {"sluice_group_redeliveries_total",
                              "records delivered again (after a failure or an ack timeout)", C,
                              LBL(L_GROUP)},
    [F_GROUP_DLQ_RECORDS] = {"sluice_group_dlq_records_total",
                             "records moved to the dead-letter topic after max_redeliveries", C,
                             LBL(L_GROUP)},
    [F_GROUP_COMMITTED] = {"sluice_group_committed_offset",
                           "committed offset of a group on a partition (durable)", G,
                           LBL(L_GROUP_PART)},
    [F_GROUP_LAG_RECORDS] = {"sluice_group_lag_records",
                             "records between a group's committed offset and the partition end", G,
                             LBL(L_GROUP_PART)},
    [F_GROUP_UNACKED] = {"sluice_group_unacked_records",
                         "records delivered to the owner and not yet committed", G,
                         LBL(L_GROUP_PART)},
    [F_GROUP_STALLED] = {"sluice_group_partition_stalled",
                         "1 while the owner's stream gets no records, with the reason", G,
                         LBL(L_GROUP_STALL)},
    [F_GROUP_CONSUMED_RATE] = {"sluice_group_consumed_records_per_second",
                               "smoothed rate at which a group commits records, all members", G,
                               LBL(L_GROUP)},
    [F_GROUP_LAG_SECONDS] = {"sluice_group_lag_seconds",
                             "a group's lag over all partitions at its commit rate (+Inf when "
                             "behind and committing nothing)",
                             G, LBL(L_GROUP)},
    [F_GROUP_CONSUMERS_RECOMMENDED] = {"sluice_group_consumers_recommended",
                                       "members the group needs to keep up: ceil(input rate / "
                                       "per-member commit rate), at most the partitions",
                                       G, LBL(L_GROUP)},
    [F_GROUP_DRAIN_SECONDS] = {"sluice_group_drain_seconds",
                               "time to drain the group's lag at the current rates (+Inf when it "
                               "does not shrink)",
                               G, LBL(L_GROUP)},
    [F_CREDIT_RESYNCS] = {"sluice_credit_resyncs_total",
                          "credit accounting found inconsistent and recomputed, by kind", C,
                          LBL(L_KIND)},
    [F_DROPS_RECORDED] = {"sluice_drops_ledger_records_total",
                          "dropped records entered in the drop ledger (see /drops)", C, NOLBL},
    [F_DROPS_OVERWRITTEN] = {"sluice_drops_ledger_overwritten_total",
                             "drop ledger entries overwritten by newer ones (ring bound)", C,
                             NOLBL},
    [F_TOPIC_ACK_DELAY] = {"sluice_topic_ack_delay_seconds",
                           "how long delayed ACKs were held back (escalation step 2)", S,
                           LBL(L_TOPIC)},
    [F_TOPIC_LATENCY] = {"sluice_topic_end_to_end_latency_seconds",
                         "producer record timestamp to delivery to a consumer", S, LBL(L_TOPIC)},
    [F_TOPIC_IN_RECORDS_RATE] = {"sluice_topic_in_records_per_second",
                                 "smoothed append rate over all partitions", G, LBL(L_TOPIC)},
    [F_TOPIC_OUT_RECORDS_RATE] = {"sluice_topic_out_records_per_second",
                                  "smoothed delivery rate over all partitions (estimate)", G,
                                  LBL(L_TOPIC)},
    [F_TOPIC_DRAIN_SECONDS] = {"sluice_topic_drain_seconds",
                               "time to consume the backlog at the current in and out rates "
                               "(+Inf: not shrinking)",
                               G, LBL(L_TOPIC)},
    [F_TOPIC_CONSUMERS_RECOMMENDED] = {"sluice_topic_consumers_recommended",
                                       "consumer streams needed to keep up: ceil(in rate / "
                                       "per-consumer delivery rate)",
                                       G, LBL(L_TOPIC)},
    [F_TOPIC_PER_CONSUMER_RATE] = {"sluice_topic_per_consumer_records_per_second",
                                   "measured delivery rate of one consumer stream (average)", G,
                                   LBL(L_TOPIC)},
    [F_BUDGET_FULL_IN] = {"sluice_budget_full_in_seconds",
                          "time until a topic budget is full at the current rates (+Inf: not "
                          "filling, 0: full)",
                          G, LBL(L_BUDGET)},
    [F_PART_OUT_RECORDS_RATE] = {"sluice_partition_out_records_per_second",
                                 "smoothed delivery rate in records (estimate)", G, LBL(L_PART)},
    [F_PART_OLDEST_AGE] = {"sluice_partition_oldest_unconsumed_age_seconds",
                           "age of the oldest record the slowest consumer has not been sent", G,
                           LBL(L_PART)},
    [F_PRODUCER_LEVEL] = {"sluice_producer_admission_level",
                          "0 grant, 1 credit shrunk, 2 acks delayed, 3 throttled", G,
                          LBL(L_STREAM)},
    [F_CONSUMER_DEMAND] = {"sluice_consumer_demand_records",
                           "records requested and not yet delivered (consumer credit)", G,
                           LBL(L_STREAM)},
    [F_CONSUMER_DEMAND_BYTES] = {"sluice_consumer_demand_bytes",
                                 "bytes requested and not yet delivered", G, LBL(L_STREAM)},
    [F_CONSUMER_REQUESTED] = {"sluice_consumer_requested_records_total",
                              "records requested by a consumer stream (REQUEST)", C, LBL(L_STREAM)},
    [F_PRODUCER_ACKS_OLDEST] = {"sluice_producer_acks_held_oldest_age_seconds",
                                "age of the oldest ACK held back on one stream (0: none)", G,
                                LBL(L_STREAM)},
    [F_STORAGE_QUEUED] = {"sluice_storage_queued_requests",
                          "produce requests waiting for the storage thread", G, NOLBL},
    [F_STORAGE_QUEUE_AGE] = {"sluice_storage_queue_oldest_age_seconds",
                             "age of the oldest request waiting for the storage thread (0: none)",
                             G, NOLBL},
};

#undef C
#undef G
#undef S
#undef LBL
#undef NOLBL

typedef struct builder {
    sl_metrics_registry *reg;
    uint64_t ids[F_COUNT];
    double *values;
    size_t value_cap;
    size_t value_count;
    uint64_t dropped;
    int err; // first hard failure (SL_ENOMEM); later puts do nothing
} builder;

static double
read_value(void *user)
{
    return *(const double *)user;
}

// Adds one series: label values (the family's count of them) and its value now.
static void
put(builder *k, fam f, const char *const *labels, double value)
{
    if (k->err != SL_OK) {
        return;
    }
    if (k->value_count == k->value_cap) {
        k->dropped++;
        return;
    }
    double *slot = &k->values[k->value_count];
    *slot = value;
    sl_metric_source src = {.read_cb = read_value, .read_user = slot};
    uint64_t id = 0;
    int rc = sl_metrics_series_add(k->reg, k->ids[f], labels, &src, &id);
    if (rc == SL_OK) {
        k->value_count++;
    } else if (rc == SL_ENOMEM) {
        k->err = rc;
    } else {
        // SL_EFULL (series cap) or a label the registry refuses: left out, counted.
        k->dropped++;
    }
}

// Adds one summary series over a histogram that outlives the scrape (ops.c owns it).
static void
put_hist(builder *k, fam f, const char *const *labels, sl_histogram *h)
{
    if (k->err != SL_OK || h == NULL) {
        return;
    }
    sl_metric_source src = {.histogram = h};
    uint64_t id = 0;
    int rc = sl_metrics_series_add(k->reg, k->ids[f], labels, &src, &id);
    if (rc == SL_ENOMEM) {
        k->err = rc;
    } else if (rc != SL_OK) {
        k->dropped++;
    }
}

static void
put_budget(builder *k, const char *scope, const char *owner, const char *budget,
           const sl_budget_stats *st)
{
    const char *l[] = {scope, owner, budget};
    put(k, F_BUDGET_CAPACITY, l, (double)st->capacity_bytes);
    put(k, F_BUDGET_CAPACITY_RECORDS, l, (double)st->capacity_records);
    put(k, F_BUDGET_USED, l, (double)st->used_bytes);
    put(k, F_BUDGET_USED_RECORDS, l, (double)st->used_records);
    put(k, F_BUDGET_PEAK, l, (double)st->peak_bytes);
    put(k, F_BUDGET_FILL, l, st->fill_ratio);
    put(k, F_BUDGET_FULL, l, (double)st->full_total);
}

static void
put_broker(builder *k, sl_broker *b, const sl_admin_counters *ac)
{
    put(k, F_CONNECTIONS, NULL, (double)b->stats.connections_open);
    put(k, F_CONN_ACCEPTED, NULL, (double)b->stats.connections_accepted);
    put(k, F_CONN_REFUSED, NULL, (double)b->stats.connections_refused);
    put(k, F_PROTOCOL_ERRORS, NULL, (double)b->stats.protocol_errors);
    put(k, F_CREDIT_VIOLATIONS, NULL, (double)b->stats.credit_violations);
    const char *credit[] = {"credit"};
    const char *heartbeat[] = {"heartbeat"};
    put(k, F_DISCONNECTS, credit, (double)b->stats.disconnects_credit);
    put(k, F_DISCONNECTS, heartbeat, (double)b->stats.disconnects_heartbeat);
    put(k, F_TOPICS, NULL, (double)b->topic_count);
    put(k, F_STORAGE_APPENDS, NULL, (double)atomic_load(&b->storage.appends));
    put(k, F_STORAGE_FLUSHES, NULL, (double)atomic_load(&b->storage.flushes));
    put(k, F_STORAGE_APPEND_S, NULL, (double)atomic_load(&b->storage.append_ns_avg) * 1e-9);
    put(k, F_STORAGE_FLUSH_S, NULL, (double)atomic_load(&b->storage.flush_ns_avg) * 1e-9);
    sl_budget_stats st;
    sl_budget_stats_get(b->memory, &st);
    put_budget(k, "broker", "broker", "memory", &st);
    sl_budget_stats_get(b->disk, &st);
    put_budget(k, "broker", "broker", "disk", &st);
    put(k, F_ADMIN_SCRAPES, NULL, (double)ac->scrapes);
    put(k, F_ADMIN_TIMEOUTS, NULL, (double)ac->timeouts);
    put(k, F_ADMIN_TOO_LARGE, NULL, (double)ac->too_large);
    put(k, F_ADMIN_SERIES_DROPPED, NULL, (double)ac->series_dropped);
    for (uint32_t i = 0; i < SL_RESYNC_KIND_COUNT; i++) {
        const char *kind[] = {sl_resync_kind_name((sl_resync_kind)i)};
        put(k, F_CREDIT_RESYNCS, kind, (double)sl_invariants_resyncs(b, (sl_resync_kind)i));
    }
    put(k, F_DROPS_RECORDED, NULL, (double)sl_drops_total(b));
    uint64_t queued = 0;
    int64_t oldest = sl_storage_oldest_queued_ns(&b->storage, &queued);
    int64_t now = sl_now_ns();
    put(k, F_STORAGE_QUEUED, NULL, (double)queued);
    put(k, F_STORAGE_QUEUE_AGE, NULL, oldest != 0 ? (double)(now - oldest) * 1e-9 : 0.0);
    put(k, F_DROPS_OVERWRITTEN, NULL, b->ops != NULL ? (double)b->ops->ledger_overwritten : 0.0);
}

// Average stored record size of a partition (128 before anything was appended, as topic.c).
static double
record_bytes(const sl_partition *p)
{
    if (p->stored_records_total == 0) {
        return 128.0;
    }
    return SL_MAX(1.0, (double)p->stored_bytes_total / (double)p->stored_records_total);
}

// Age of the oldest record not yet sent to the slowest consumer: the producer timestamp of the
// batch at the low position, read from the log (the page cache, usually) only when there is a
// backlog. 0 without one.
static double
oldest_age_s(sl_broker *b, sl_partition *p)
{
    if (p->end_offset <= p->low_position) {
        return 0.0;
    }
    size_t len = 0;
    int rc = sl_log_read(p->log, p->low_position, SL_BATCH_HEADER_BYTES, b->scratch,
                         b->scratch_size, &len);
    sl_batch_header h;
    if (rc != SL_OK || len == 0 || sl_batch_header_decode(b->scratch, len, &h) != SL_OK) {
        return 0.0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now_s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    return SL_MAX(0.0, now_s - (double)h.first_timestamp_us * 1e-6);
}

static void
put_partition(builder *k, sl_topic *t, sl_partition *p)
{
    char index[16];
    snprintf(index, sizeof(index), "%" PRIu32, p->index);
    const char *l[] = {t->name, index};
    put(k, F_PART_IN_BYTES, l, (double)p->in_bytes.total);
    put(k, F_PART_IN_RECORDS, l, (double)p->in_records.total);
    put(k, F_PART_OUT_BYTES, l, (double)p->out_bytes.total);
    put(k, F_PART_IN_BYTES_RATE, l, p->in_bytes.per_s);
    put(k, F_PART_IN_RECORDS_RATE, l, p->in_records.per_s);
    put(k, F_PART_OUT_BYTES_RATE, l, p->out_bytes.per_s);
    put(k, F_PART_END_OFFSET, l, (double)p->end_offset);
    put(k, F_PART_DURABLE_OFFSET, l, (double)p->durable_offset);
    uint64_t lag = p->end_offset > p->low_position ? p->end_offset - p->low_position : 0;
    put(k, F_PART_LAG_RECORDS, l, (double)lag);
    put(k, F_PART_BACKLOG, l, (double)sl_partition_backlog_bytes(p));
    put(k, F_PART_OUT_RECORDS_RATE, l, p->out_bytes.per_s / record_bytes(p));
    put(k, F_PART_OLDEST_AGE, l, oldest_age_s(t->broker, p));
}

// Histograms and predictions of a topic (ops.c), budgets' time until full included.
static void
put_topic_ops(builder *k, sl_topic *t)
{
    const char *l[] = {t->name};
    sl_broker *b = t->broker;
    put_hist(k, F_TOPIC_ACK_DELAY, l, sl_ops_ack_delay_histogram(b, t));
    put_hist(k, F_TOPIC_LATENCY, l, sl_ops_latency_histogram(b, t));
    sl_ops_predict pr;
    sl_ops_predict_topic(b, t, &pr);
    put(k, F_TOPIC_IN_RECORDS_RATE, l, pr.in_records_per_s);
    put(k, F_TOPIC_OUT_RECORDS_RATE, l, pr.out_records_per_s);
    put(k, F_TOPIC_DRAIN_SECONDS, l, pr.drain_seconds);
    put(k, F_TOPIC_CONSUMERS_RECOMMENDED, l, (double)pr.consumers_recommended);
    put(k, F_TOPIC_PER_CONSUMER_RATE, l, pr.per_consumer_records_per_s);
    const char *mem[] = {"topic", t->name, "memory"};
    const char *disk[] = {"topic", t->name, "disk"};
    const char *bl[] = {"topic", t->name, "backlog"};
    put(k, F_BUDGET_FULL_IN, mem, pr.memory_full_seconds);
    put(k, F_BUDGET_FULL_IN, disk, pr.disk_full_seconds);
    put(k, F_BUDGET_FULL_IN, bl, pr.backlog_full_seconds);
}

static void
put_topic(builder *k, sl_topic *t, const uint64_t *credit_outstanding, const uint32_t *consumers)
{
    const char *l[] = {t->name};
    const sl_topic_stats *s = &t->stats;
    put(k, F_TOPIC_RECORDS_IN, l, (double)s->records_in);
    put(k, F_TOPIC_BYTES_IN, l, (double)s->bytes_in);
    put(k, F_TOPIC_RECORDS_OUT, l, (double)s->records_out);
    put(k, F_TOPIC_BYTES_OUT, l, (double)s->bytes_out);
    put(k, F_TOPIC_BATCHES_IN, l, (double)s->batches_in);
    put(k, F_TOPIC_PRODUCE_FRAMES, l, (double)s->produce_frames);
    put(k, F_TOPIC_CREDIT_GRANTED, l, (double)s->credit_granted_bytes);
    put(k, F_TOPIC_CREDIT_OUTSTANDING, l, (double)*credit_outstanding);
    static const struct {
        const char *name;
        sl_throttle_reason reason;
    } reasons[] = {{"memory_budget", SL_THROTTLE_MEMORY_BUDGET},
                   {"disk_budget", SL_THROTTLE_DISK_BUDGET},
                   {"topic_full", SL_THROTTLE_TOPIC_FULL},
                   {"quota", SL_THROTTLE_QUOTA}};
    for (size_t i = 0; i < SL_ARRAY_LEN(reasons); i++) {
        const char *lr[] = {t->name, reasons[i].name};
        put(k, F_TOPIC_THROTTLED, lr, (double)s->throttles[reasons[i].reason]);
    }
    put(k, F_TOPIC_ACKS_DELAYED, l, (double)s->acks_delayed);
    if (t->config.full_policy == SL_FULL_DROP_OLDEST) {
        // Drops exist only under a lossy policy; a lossless topic has no such series at all.
        const char *lr[] = {t->name, "evicted"};
        put(k, F_TOPIC_DROPPED, lr, (double)s->records_dropped);
    }
    put(k, F_TOPIC_DUPLICATES, l, (double)s->duplicates_dropped);
    put(k, F_TOPIC_APPEND_FAILURES, l, (double)s->append_failures);
    put(k, F_TOPIC_PRODUCERS, l, (double)t->producer_count);
    put(k, F_TOPIC_CONSUMERS, l, (double)*consumers);
    put(k, F_TOPIC_DRAIN_RATE, l, t->drain_bytes.per_s);

    uint64_t appended = 0;
    uint64_t backlog = 0;
    uint64_t backlog_records = 0;
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        appended += p->stored_records_total;
        backlog += sl_partition_backlog_bytes(p);
        backlog_records += p->end_offset > p->low_position ? p->end_offset - p->low_position : 0;
    }
    put(k, F_TOPIC_APPENDED, l, (double)appended);
    put(k, F_TOPIC_BACKLOG, l, (double)backlog);
    sl_budget_stats st;
    sl_budget_stats_get(t->memory, &st);
    put_budget(k, "topic", t->name, "memory", &st);
    sl_budget_stats_get(t->disk, &st);
    put_budget(k, "topic", t->name, "disk", &st);
    // The backlog limit is not an sl_budget but it is a budget all the same: held against it are
    // the unconsumed bytes and records.
    uint64_t cap = t->config.max_backlog_bytes;
    sl_budget_stats bl = {.capacity_bytes = cap,
                          .used_bytes = backlog,
                          .used_records = backlog_records,
                          .peak_bytes = backlog,
                          .fill_ratio = cap > 0 ? (double)backlog / (double)cap : 0.0};
    put_budget(k, "topic", t->name, "backlog", &bl);
    put_topic_ops(k, t);
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        put_partition(k, t, &t->partitions[i]);
    }
}

static void
put_stream(builder *k, const char *conn_id, sl_stream *s)
{
    char sid[16];
    char index[16];
    snprintf(sid, sizeof(sid), "%" PRIu32, s->id);
    snprintf(index, sizeof(index), "%" PRIu32, s->part != NULL ? s->part->index : 0);
    const char *l[] = {conn_id, sid, s->topic != NULL ? s->topic->name : "", index};
    if (s->kind == SL_STREAM_PRODUCE) {
        uint64_t outstanding =
            s->granted_total > s->received_total ? s->granted_total - s->received_total : 0;
        put(k, F_PRODUCER_CREDIT_GRANTED, l, (double)s->granted_total);
        put(k, F_PRODUCER_CREDIT_OUTSTANDING, l, (double)outstanding);
        put(k, F_PRODUCER_RECEIVED, l, (double)s->received_total);
        put(k, F_PRODUCER_IN_RATE, l, s->accepted_bytes.per_s);
        put(k, F_PRODUCER_ACKS_HELD, l, (double)s->pending_ack_count);
        put(k, F_PRODUCER_LEVEL, l, (double)s->decision.level);
        double held_s = 0.0;
        if (s->pending_ack_count > 0) {
            held_s = (double)(sl_now_ns() - s->pending_acks[s->pending_ack_head].queued_ns) * 1e-9;
        }
        put(k, F_PRODUCER_ACKS_OLDEST, l, held_s);
    } else if (s->kind == SL_STREAM_CONSUME && s->part != NULL) {
        sl_partition *p = s->part;
        uint64_t lag = p->end_offset > s->position ? p->end_offset - s->position : 0;
        double records_per_s = p->out_bytes.per_s / record_bytes(p);
        double lag_s = 0.0;
        if (lag > 0) {
            lag_s = records_per_s > 1e-3 ? (double)lag / records_per_s : INFINITY;
        }
        put(k, F_CONSUMER_LAG_RECORDS, l, (double)lag);
        put(k, F_CONSUMER_LAG_SECONDS, l, lag_s);
        put(k, F_CONSUMER_DELIVERED, l, (double)s->delivered_records);
        put(k, F_CONSUMER_POSITION, l, (double)s->position);
        put(k, F_CONSUMER_COMMITTED, l, (double)s->committed);
        put(k, F_CONSUMER_DEMAND, l, (double)s->demand_records);
        put(k, F_CONSUMER_DEMAND_BYTES, l, (double)s->demand_bytes);
        put(k, F_CONSUMER_REQUESTED, l, (double)s->requested_records);
    }
}

static void
put_conn(builder *k, sl_conn *c)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRIu64, c->id);
    const char *l[] = {id, c->peer};
    uint64_t granted = 0;
    uint64_t outstanding = 0;
    double rate = 0;
    // Bounded by max_streams_per_connection.
    for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
        if (s->kind == SL_STREAM_PRODUCE) {
            granted += s->granted_total;
            outstanding +=
                s->granted_total > s->received_total ? s->granted_total - s->received_total : 0;
            rate += s->accepted_bytes.per_s;
        }
        put_stream(k, id, s);
    }
    put(k, F_CONN_STREAMS, l, (double)c->stream_count);
    put(k, F_CONN_WRITE_QUEUED, l, (double)c->write_queued_bytes);
    put(k, F_CONN_CREDIT_GRANTED, l, (double)granted);
    put(k, F_CONN_CREDIT_OUTSTANDING, l, (double)outstanding);
    put(k, F_CONN_IN_RATE, l, rate);
    put(k, F_CONN_OVER_CREDIT, l, c->over_credit ? 1.0 : 0.0);
    put(k, F_CONN_READ_PAUSED, l, c->reading ? 0.0 : 1.0);
    int64_t oldest = c->write_head != NULL ? c->write_head->queued_ns : 0;
    int64_t now = sl_now_ns();
    put(k, F_CONN_WRITE_OLDEST_AGE, l,
        oldest != 0 && now > oldest ? (double)(now - oldest) / 1e9 : 0.0);
    if (c->budget != NULL) {
        sl_budget_stats st;
        sl_budget_stats_get(c->budget, &st);
        put_budget(k, "conn", id, "connection", &st);
    }
}

static void
put_group(builder *k, sl_broker *b, const sl_group *g)
{
    const char *l[] = {g->name, g->topic};
    put(k, F_GROUP_MEMBERS, l, (double)g->member_count);
    put(k, F_GROUP_GENERATION, l, (double)g->generation);
    put(k, F_GROUP_REBALANCES, l, (double)g->rebalances_total);
    put(k, F_GROUP_REDELIVERIES, l, (double)g->redeliveries_total);
    put(k, F_GROUP_DLQ_RECORDS, l, (double)g->dlq_records_total);
    sl_group_predict pr;
    sl_group_predict_get(b, g, &pr);
    put(k, F_GROUP_CONSUMED_RATE, l, pr.consumed_records_per_s);
    put(k, F_GROUP_LAG_SECONDS, l, pr.lag_seconds);
    put(k, F_GROUP_CONSUMERS_RECOMMENDED, l, (double)pr.consumers_recommended);
    put(k, F_GROUP_DRAIN_SECONDS, l, pr.drain_seconds);
    sl_topic *t = sl_topic_find(b, g->topic, strlen(g->topic));
    if (t != NULL && t->config.partition_count != g->partition_count) {
        t = NULL;
    }
    for (uint32_t i = 0; i < g->partition_count; i++) {
        const sl_group_part *gp = &g->parts[i];
        char index[16];
        snprintf(index, sizeof(index), "%" PRIu32, i);
        const char *lp[] = {g->name, g->topic, index};
        uint64_t end = t != NULL ? t->partitions[i].end_offset : gp->committed;
        put(k, F_GROUP_COMMITTED, lp, (double)gp->committed);
        put(k, F_GROUP_LAG_RECORDS, lp, (double)(end > gp->committed ? end - gp->committed : 0));
        const sl_stream *s = gp->stream;
        uint64_t unacked = s != NULL && s->position > s->committed ? s->position - s->committed : 0;
        put(k, F_GROUP_UNACKED, lp, (double)unacked);
        if (s != NULL && s->stall_reason != SL_STALL_NONE) {
            const char *ls[] = {g->name, g->topic, index, sl_stall_reason_name(s->stall_reason)};
            put(k, F_GROUP_STALLED, ls, 1.0);
        }
    }
}

// Per-topic sums over the open streams (credit outstanding, consumers), found by one walk of the
// connections instead of one per topic. Topics are matched by pointer in the registry's order.
static void
stream_sums(sl_broker *b, sl_topic *t, uint64_t *outstanding, uint32_t *consumers)
{
    *outstanding = 0;
    *consumers = 0;
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        // Bounded by the streams attached to the partition.
        for (sl_stream *s = t->partitions[i].consumers; s != NULL; s = s->part_next) {
            (*consumers)++;
        }
    }
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
            if (s->kind == SL_STREAM_PRODUCE && s->topic == t &&
                s->granted_total > s->received_total) {
                *outstanding += s->granted_total - s->received_total;
            }
        }
    }
}

int
sl_broker_metrics_build(sl_broker *b, const sl_admin_counters *counters, double *values,
                        size_t value_cap, sl_metrics_registry **registry_out,
                        uint64_t *series_dropped_out)
{
    sl_metrics_registry_config rc = {.series_max = SL_ADMIN_SERIES_MAX, .families_max = F_COUNT};
    builder k = {.values = values, .value_cap = SL_MIN(value_cap, SL_ADMIN_SERIES_MAX)};
    int err = sl_metrics_registry_new(&rc, &k.reg);
    if (err != SL_OK) {
        return err;
    }
    for (int f = 0; f < F_COUNT && err == SL_OK; f++) {
        sl_metric_family_desc d = {.name = FAMS[f].name,
                                   .help = FAMS[f].help,
                                   .type = FAMS[f].type,
                                   .label_names = FAMS[f].labels,
                                   .label_count = FAMS[f].label_count,
                                   // Histograms record nanoseconds and expose seconds.
                                   .scale = FAMS[f].type == SL_METRIC_SUMMARY ? 1e-9 : 0.0};
        err = sl_metrics_family_register(k.reg, &d, &k.ids[f]);
        // A refused name is a bug in the table above, not bad input.
        SL_ASSERT(err == SL_OK || err == SL_ENOMEM);
    }
    if (err == SL_OK) {
        put_broker(&k, b, counters);
        // Bounded by SL_BROKER_TOPICS_MAX, the connection limit and the series cap.
        for (sl_topic *t = b->topics; t != NULL && k.err == SL_OK; t = t->next) {
            uint64_t outstanding = 0;
            uint32_t consumers = 0;
            stream_sums(b, t, &outstanding, &consumers);
            put_topic(&k, t, &outstanding, &consumers);
        }
        for (sl_conn *c = b->conns; c != NULL && k.err == SL_OK; c = c->next) {
            put_conn(&k, c);
        }
        // Bounded by SL_GROUPS_MAX and the series cap.
        for (sl_group *g = b->groups->list; g != NULL && k.err == SL_OK; g = g->next) {
            put_group(&k, b, g);
        }
        err = k.err;
    }
    if (err != SL_OK) {
        sl_metrics_registry_free(k.reg);
        return err;
    }
    *registry_out = k.reg;
    *series_dropped_out = k.dropped;
    return SL_OK;
}
