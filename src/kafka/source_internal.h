// The Kafka source's state, shared by source.c (poll, the bounded buffer, pause/resume),
// source_group.c (rebalances, commits) and source_stats.c (metrics, DS2 sizing thread).
#ifndef SLUICE_KAFKA_SOURCE_INTERNAL_H
#define SLUICE_KAFKA_SOURCE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "kafka/kafka_internal.h"

// Period of the sizing thread (topic input rate, true rate, processes needed).
#define SL_KAFKA_RATE_INTERVAL_MS 1000u
// Bound on one watermark query of the sizing thread.
#define SL_KAFKA_QUERY_TIMEOUT_MS 500
// After a commit failed because the group is rebalancing, wait this long before the next try.
#define SL_KAFKA_COMMIT_BACKOFF_MS 500u
// Records moved from librdkafka into the buffer per poll call, so emission is never starved by
// a long fill.
#define SL_KAFKA_FILL_BATCH 1024u
// Longest single wait inside one poll call (the runtime calls again).
#define SL_KAFKA_POLL_WAIT_MS_MAX 100
// Bound on a consumer close or a final synchronous commit.
#define SL_KAFKA_CLOSE_TIMEOUT_MS 10000

// One partition of the topic, as this instance sees it. Guarded by the source's mutex.
typedef struct sl__kafka_lane {
    bool assigned;
    bool paused;         // paused by us (pause state is lost on reassignment: re-applied)
    int64_t done;        // next offset to commit (token + 1 of the last runtime commit); -1: none
    int64_t committed;   // last offset the coordinator confirmed; -1: unknown
    int64_t first_seen;  // offset of the first record buffered since assignment; -1: none
    int64_t next;        // offset after the last record buffered; -1: none
    sl_gauge lag;        // records, updated on scrape
    uint64_t lag_series; // 0: not registered
} sl__kafka_lane;

typedef struct sl__kafka_source_metrics {
    sl_gauge buffered_records;
    sl_gauge buffered_bytes;
    sl_gauge buffered_records_max; // high-water mark since start (the bound is checked on it)
    sl_gauge buffer_capacity;
    sl_gauge low_watermark; // effective (raised to one second of measured work)
    sl_gauge paused_partitions;
    sl_gauge assigned_partitions;
    sl_gauge input_per_s_milli; // topic input rate (all partitions), records/s x 1000
    sl_gauge true_per_s_milli;  // this instance's true rate, records per useful second x 1000
    sl_gauge emit_per_s_milli;  // this instance's emission rate x 1000
    sl_gauge processes_needed;  // DS2: pipeline processes the group needs
    sl_counter pauses;
    sl_counter resumes;
    sl_counter pauses_reapplied; // partitions paused at assignment (pause state does not move)
    sl_counter assigns;
    sl_counter revokes;
    sl_counter lost;
    sl_counter commits;
    sl_counter commit_failures;
    sl_counter late_commits_ignored;
    sl_counter records;
    sl_counter refetches;       // records handed back (seek) because the buffer was at capacity
    sl_counter dropped_revoked; // buffered records of revoked partitions (read again elsewhere)
    sl_counter errors;
    _Atomic uint64_t idle_ns; // waited for Kafka with downstream credit available
} sl__kafka_source_metrics;

#define SL__KAFKA_SOURCE_SCALARS 24u

typedef struct sl__kafka_source {
    sl__kafka_config cfg;
    rd_kafka_t *rk;
    uint32_t instance;
    uint32_t instance_count;
    // The buffer: a ring of messages owned until emitted. Source thread only.
    rd_kafka_message_t **ring; // [cfg.buffer_records]
    uint32_t ring_head;
    uint32_t ring_count; // invariant: <= cfg.buffer_records
    uint64_t ring_bytes;
    bool paused; // the assignment is paused (buffer above high watermark)
    int fatal;   // SL_OK, or the error the next poll returns
    char fatal_msg[512];
    int64_t next_commit_ns;
    int64_t commit_blocked_until_ns;
    // Lanes: the runtime's commits (any thread), scrapes and the source thread share them.
    pthread_mutex_t mutex;
    sl__kafka_lane *lanes; // [SL_KAFKA_PARTITIONS_MAX]
    uint32_t lanes_seen;   // lanes [0, lanes_seen) were ever assigned
    // Sizing thread.
    pthread_t rate_thread;
    bool rate_started;
    pthread_mutex_t rate_mutex;
    pthread_cond_t rate_cond;
    bool rate_stop;
    sl__kafka_source_metrics m;
    sl_metrics_registry *registry;         // guarded by mutex; set once the scalars are added
    sl_metrics_registry *scalars_registry; // the first stats call's (its thread only)
    char stage[SL_NAME_MAX];
    uint64_t series[SL__KAFKA_SOURCE_SCALARS];
} sl__kafka_source;

// source_group.c
void sl__kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque);
void sl__kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque);
// Commits done offsets asynchronously when due and the group is stable (source thread).
void sl__kafka_commit_tick(sl__kafka_source *s, bool force_sync);
// Applies the pause state of the whole source to the partitions in parts (source thread).
void sl__kafka_apply_pause(sl__kafka_source *s, rd_kafka_topic_partition_list_t *parts, bool pause);
// Drops buffered records of partitions no longer assigned.
void sl__kafka_buffer_drop_unassigned(sl__kafka_source *s);
void sl__kafka_source_commit(void *state, uint32_t lane, uint64_t token);

// source_stats.c
int sl__kafka_rate_start(sl__kafka_source *s);
void sl__kafka_rate_stop(sl__kafka_source *s);
void sl__kafka_source_stats(void *state, sl_metrics_registry *registry, const char *stage_name);
void sl__kafka_source_stats_fini(sl__kafka_source *s);

#endif
