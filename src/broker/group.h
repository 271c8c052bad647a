// The consumer group coordinator's internals, shared by its files and called from conn.c, flow.c
// and server.c. A group is keyed by (group name, topic); it assigns the topic's partitions among
// its live members (range assignment in join order), moves a partition only after the old owner's
// stream is closed, keeps committed offsets durable, and redelivers or dead-letters what was not
// acknowledged. Loop thread only. Design: docs/design/broker.md, "Groups".
//
//   group.c        membership, assignment, generations, group streams, acks and redelivery
//   group_store.c  committed offsets on disk (one small file per group and topic) and dead letters
//   group_admin.c  LIST_GROUPS / DESCRIBE_GROUP answers and the sluice_group_* metrics
#ifndef SLUICE_BROKER_GROUP_H
#define SLUICE_BROKER_GROUP_H

#include "broker/broker.h"

// (group, topic) pairs one broker coordinates; a JOIN_GROUP past it is refused (EFULL).
#define SL_GROUPS_MAX 1024u
// Redelivery levels tracked per partition: a record's delivery count is known exactly up to this
// (records are dead-lettered after SL_PROTO_MAX_REDELIVERIES_MAX + 1 deliveries at most).
#define SL_GROUP_LEVELS (SL_PROTO_MAX_REDELIVERIES_MAX + 2u)
// Committed offsets are written at most this often per group (and at shutdown): the cost of
// durability is bounded whatever the commit rate; a crash loses at most this much of progress
// (those records are delivered again: at-least-once).
#define SL_GROUP_PERSIST_INTERVAL_MS 100
// Headers copied from a record to its dead letter (the rest are left out, counted in the log).
#define SL_GROUP_DLQ_HEADERS_MAX 32u
// Suffix of a topic's dead-letter topic, created on demand with one partition.
#define SL_GROUP_DLQ_SUFFIX ".dlq"

typedef struct sl_group sl_group;

// One partition as the group sees it.
struct sl_group_part {
    uint64_t committed;  // durable target: a new owner starts here
    uint64_t commit_req; // highest COMMIT accepted (committed unless a dead letter is pending)
    bool has_commit;     // else the member's offset reset applies
    uint64_t dlq_hold;   // offset whose dead-letter append is pending (UINT64_MAX: none)
    uint32_t dlq_seq_end;
    // level_end[i]: every record in [committed, level_end[i]) was delivered at least i + 1 times;
    // non-increasing in i. A record's redelivery count is the levels above it, minus one.
    uint64_t level_end[SL_GROUP_LEVELS];
    uint32_t head_failures; // rounds in which the record at committed went unacknowledged
    sl_group_member *owner; // NULL: unassigned
    sl_stream *stream;      // the owner's open stream, or NULL
};

struct sl_group_member {
    char id[SL_PROTO_MEMBER_ID_MAX + 1];
    sl_conn *conn;
    int64_t last_seen_ns;
    uint32_t session_timeout_ms;
    uint32_t ack_timeout_ms;
    uint32_t max_ack_pending;
    uint8_t offset_reset; // sl_offset_reset
};

struct sl_group {
    char name[SL_PROTO_GROUP_NAME_MAX + 1];
    char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
    uint32_t partition_count;
    sl_group_part *parts;
    sl_group_member *members[SL_PROTO_GROUP_MEMBERS_MAX]; // join order
    uint32_t member_count;
    uint32_t generation;
    uint8_t max_redeliveries; // from the first join
    uint64_t next_member_seq;
    uint64_t rebalances_total;
    uint64_t redeliveries_total;
    uint64_t dlq_records_total;
    uint64_t dlq_producer_id; // the broker's producer identity on the dead-letter topic
    bool dirty;               // committed offsets changed since the last write
    int64_t persisted_ns;
    sl_rate committed_records; // records committed over all partitions (smoothed on the tick)
    int64_t rate_tick_ns;      // last tick of committed_records
    sl_group *next;
};

// Predictions for one group from the current smoothed rates (group_admin.c).
// consumers_recommended = ceil(topic input rate / per-member commit rate), at most the partition
// count (more members would own nothing); with no measured rate yet it is the current owners (at
// least 1 while records wait). Seconds are +Inf when never and 0 when already.
typedef struct sl_group_predict {
    double in_records_per_s;         // the topic's append rate
    double consumed_records_per_s;   // the group's commit rate, all members
    double per_member_records_per_s; // consumed / owners (0 when unmeasured)
    uint64_t lag_records;            // committed offset to partition end, all partitions
    double lag_seconds;              // lag / consumed rate
    double drain_seconds;            // lag / (consumed - in)
    uint32_t owners;                 // members owning at least one partition
    uint32_t consumers_recommended;
} sl_group_predict;

void sl_group_predict_get(sl_broker *b, const sl_group *g, sl_group_predict *out);

struct sl_groups {
    sl_group *list;
    uint32_t count;
};

// ---- group.c (called by the rest of the broker)
int sl_groups_open(sl_broker *b, char *err, size_t err_size);
void sl_groups_close(sl_broker *b);
void sl_groups_tick(sl_broker *b, int64_t now_ns);
void sl_groups_conn_closed(sl_conn *c);
void sl_group_frame(sl_conn *c, const sl_frame *f);
void sl_group_open_stream(sl_conn *c, uint32_t id, sl_topic *t, const sl_proto_open_consume *o);
void sl_group_commit(sl_stream *s, uint64_t offset);
void sl_group_stream_closed(sl_stream *s);
// Records stream s may be sent now, at most want: 0 when max_ack_pending is reached. Sets
// *redeliveries to the redelivery count of every record in that range.
uint64_t sl_group_deliver_limit(sl_stream *s, uint64_t want, uint16_t *redeliveries);
void sl_group_delivered(sl_stream *s, uint64_t first, uint64_t end, uint16_t redeliveries);
bool sl_group_ack_pending_full(const sl_stream *s);
sl_group *sl_group_find(sl_broker *b, const char *name, size_t name_size, const char *topic,
                        size_t topic_size);
// Recomputes the topic partitions' group_low (the slowest group) and the log watermark.
void sl_group_update_low(sl_broker *b, sl_group *g);
// Creates a group with no members (also used when loading offsets). SL_EFULL, SL_ENOMEM.
int sl_group_new(sl_broker *b, const char *name, const char *topic, uint32_t partition_count,
                 sl_group **out);

// ---- group_store.c
// Loads every stored group's committed offsets from <data>/groups. Damaged files are skipped with
// a log line (their groups start from the reset policy).
int sl_group_store_load(sl_broker *b, char *err, size_t err_size);
// Writes g's committed offsets atomically (temp file, fsync, rename, directory fsync).
int sl_group_store_write(sl_broker *b, sl_group *g);
// Appends the record at offset of partition gp's topic partition to the dead-letter topic
// through the storage thread; gp->dlq_hold holds the group's offset until it is stored.
int sl_group_dead_letter(sl_broker *b, sl_group *g, uint32_t partition, uint64_t offset);
// True once the pending dead letter of gp is stored (or can no longer be followed).
bool sl_group_dead_letter_done(sl_broker *b, sl_group *g, sl_group_part *gp);

// ---- group_admin.c
void sl_group_list(sl_conn *c, const sl_proto_list_groups *l);
void sl_group_describe(sl_conn *c, const sl_proto_describe_group *d);

#endif
