// The sluice client library: a producer, a consumer and admin calls over the wire protocol
// (docs/protocol.md). Producer and consumer each run one background I/O thread that owns the
// socket, keeps the connection alive with heartbeats and reconnects with backoff; the user thread
// only touches bounded local buffers. Every call either never blocks (SL_DEADLINE_NOW: SL_EAGAIN
// when it would) or takes a deadline. Guide and examples: docs/api/client.md.
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <sluice/batch.h>
#include <sluice/defs.h>
#include <sluice/proto.h>

// Default broker port, and the environment variable that names the default broker.
#define SL_CLIENT_PORT_DEFAULT 7420u
#define SL_CLIENT_BROKER_ENV   "SLUICE_BROKER"

// An offset a report or record does not know (failed delivery, or acked by a reconnect).
#define SL_OFFSET_NONE UINT64_MAX

typedef struct sl_producer sl_producer;
typedef struct sl_consumer sl_consumer;
typedef struct sl_admin sl_admin;

// ---- common --------------------------------------------------------------------------------

// Called (no lock held, must not block) when a caller that got SL_EAGAIN may try again: the
// producer has buffer room (on the thread that freed it: the I/O thread with a delivery_cb, else
// the thread in sl_producer_poll_reports), the consumer has records (on its I/O thread).
typedef void (*sl_client_wake_cb)(void *user);

// Connection counters of a producer or consumer.
typedef struct sl_client_stats {
    uint64_t connects_total;         // successful handshakes (first connect included)
    uint64_t disconnects_total;      // connections lost or closed by the broker
    uint64_t pings_sent_total;       // heartbeats sent
    uint64_t throttles_total;        // THROTTLE frames received, all reasons
    uint64_t throttles_by_reason[5]; // indexed by sl_throttle_reason
    uint64_t throttled_ms_total;     // time spent waiting out retry-after hints
    uint64_t credit_waits_total;     // times a ready batch waited for broker credit
    bool connected;
} sl_client_stats;

// ---- producer ------------------------------------------------------------------------------

// The outcome of records seq .. seq + record_count - 1 (one batch). err == SL_OK: they reached the
// requested durability; record seq + i has offset + i (offset is SL_OFFSET_NONE when the broker
// confirmed the records only through a reconnect handshake, without offsets). Otherwise err says
// why they were not delivered (SL_ECLOSED: the producer was closed before they were acked).
typedef struct sl_delivery_report {
    uint64_t seq;
    uint32_t record_count;
    uint32_t partition;
    uint64_t offset;
    int err;
} sl_delivery_report;

// Called on the I/O thread (no lock held) for each report; must not block for long (it delays
// the producer's network traffic). It may call sl_producer_send with SL_DEADLINE_NOW.
typedef void (*sl_delivery_cb)(const sl_delivery_report *report, void *user);

typedef struct sl_producer_config {
    const char *broker;         // "host:port"; NULL: $SLUICE_BROKER, else 127.0.0.1:7420. Copied.
    const char *topic;          // required. Copied.
    uint32_t partition;         // SL_PROTO_PARTITION_ANY: routed by key (sl_partition_for_key)
    sl_acks acks;               // durability each ack means (default SL_ACKS_LOG)
    uint64_t buffer_bytes;      // bound on records buffered until acked (record cost, see budget.h)
    uint32_t batch_bytes;       // largest batch built; a record larger than this gets its own batch
    uint32_t linger_ms;         // how long a non-full batch waits for more records
    sl_compression compression; // only SL_COMPRESSION_NONE in this version (else SL_ENOTSUP)
    const char *client_id;      // for broker logs and metrics; NULL: "sluice-producer". Copied.
    uint32_t heartbeat_ms;      // proposed heartbeat interval
    uint32_t reconnect_backoff_max_ms; // backoff doubles from 50 ms up to this
    sl_delivery_cb delivery_cb;        // NULL: reports queue for sl_producer_poll_reports
    void *delivery_user;
    sl_client_wake_cb room_cb; // optional: buffer room after an SL_EAGAIN
    void *room_user;
} sl_producer_config;

// The partition a keyed record goes to with partition SL_PROTO_PARTITION_ANY: 32-bit FNV-1a of
// the key bytes (offset basis 2166136261, prime 16777619, xor then multiply per byte) modulo
// partition_count; 0 when partition_count is 0. Stable across versions, so other clients can
// route the same way. Thread-safe, never blocks.
SL_API uint32_t sl_partition_for_key(const void *key, size_t size, uint32_t partition_count);

// Fills cfg with defaults (acks log, 32 MiB buffer, 1 MiB batches, linger 5 ms, any partition).
SL_API void sl_producer_config_init(sl_producer_config *cfg);

// Creates a producer and starts its I/O thread, which connects in the background (send works
// before the connection is up; records wait in the buffer). SL_EINVAL for a bad config (bad
// broker address, topic name), SL_ENOTSUP for compression, SL_ENOMEM.
SL_API SL_MUST_USE int sl_producer_new(const sl_producer_config *cfg, sl_producer **out);

// Copies record (borrowed) into the buffer and returns its sequence in *seq_out (may be NULL).
// Waits for buffer room until deadline_ns: SL_EAGAIN when deadline_ns is SL_DEADLINE_NOW and the
// buffer is full (then sl_producer_room_fd or room_cb says when to retry), SL_ETIMEDOUT when a
// later deadline passed, SL_ETOOBIG for a record that can never fit, SL_ECLOSED after close.
// Thread-safe. The time spent waiting is counted in sl_producer_stats.blocked_ns_total.
SL_API SL_MUST_USE int sl_producer_send(sl_producer *p, const sl_record *record,
                                        int64_t deadline_ns, uint64_t *seq_out);

// Returns a descriptor that becomes readable when buffer room appears after an SL_EAGAIN; drain
// it (read 8 bytes) before waiting again. Owned by the producer.
SL_API int sl_producer_room_fd(sl_producer *p);

// Moves up to cap queued delivery reports into out (only without a delivery_cb), waiting until
// deadline_ns for the first one. *count_out gets the number moved. Returns SL_OK (count may be 0
// when the deadline passed). A report's records stay charged to the buffer until it is polled:
// a thread that both sends with a long deadline and polls reports must poll between sends (or
// use a delivery_cb), or a full buffer of acknowledged-but-unpolled records blocks its send.
SL_API SL_MUST_USE int sl_producer_poll_reports(sl_producer *p, sl_delivery_report *out, size_t cap,
                                                int64_t deadline_ns, size_t *count_out);

// Sends every buffered record now (ignoring linger) and waits until all are reported or
// deadline_ns passes: SL_OK or SL_ETIMEDOUT. Reports still need polling (without a callback).
SL_API SL_MUST_USE int sl_producer_flush(sl_producer *p, int64_t deadline_ns);

typedef struct sl_producer_stats {
    sl_client_stats client;
    uint64_t records_sent_total;   // accepted by sl_producer_send
    uint64_t records_acked_total;  // reported with SL_OK
    uint64_t records_failed_total; // reported with an error
    uint64_t batches_resent_total; // batches sent again after a reconnect or throttle
    uint64_t buffer_used_bytes;
    uint64_t buffer_full_total; // sends refused or delayed by a full buffer
    int64_t blocked_ns_total;   // time sl_producer_send spent waiting for room
    uint64_t producer_id;       // assigned by the broker (0 before the first connect)
    // Reconnects after which the broker no longer knew this producer's sequence: records
    // unacked at that moment may have been written twice (docs/api/client.md, "Duplicates").
    uint64_t identity_resets_total;
} sl_producer_stats;

SL_API void sl_producer_stats_get(sl_producer *p, sl_producer_stats *out);

// Stops the I/O thread and frees the producer. Records not yet acked are reported with
// SL_ECLOSED (to the callback, or dropped with the queue); call sl_producer_flush first to wait.
SL_API void sl_producer_free(sl_producer *p);

// ---- consumer ------------------------------------------------------------------------------

// Called on the I/O thread (no lock held, must not block) when a group consumer's assignment
// changes: the partitions it now owns (increasing) in generation. Records of partitions it lost
// and had not yet handed out were dropped: their new owner gets them.
typedef void (*sl_assign_cb)(uint32_t generation, const uint32_t *partitions, size_t count,
                             void *user);

typedef struct sl_consumer_config {
    const char *broker; // as for the producer
    const char *topic;  // required
    // A partition number, or SL_PROTO_PARTITION_ANY with group: join the group and consume
    // whatever partitions the broker assigns (one stream each; see docs/api/client.md, "Groups").
    uint32_t partition;
    sl_start_mode start;   // SL_START_EARLIEST (default), LATEST, OFFSET; GROUP = group mode too.
                           // In group mode EARLIEST / LATEST say where a partition without a
                           // committed offset starts.
    uint64_t start_offset; // with SL_START_OFFSET
    const char *group;     // the group: committed offsets are kept per (group, topic, partition)
    uint32_t prefetch_records; // demand kept outstanding plus buffered, in records
    uint64_t prefetch_bytes;   // and in bytes
    bool auto_ack;             // each poll acks what the previous poll returned
    const char *client_id;
    uint32_t heartbeat_ms;
    uint32_t reconnect_backoff_max_ms;
    sl_client_wake_cb ready_cb; // optional: records became available after an empty poll
    void *ready_user;
    // Group mode only (0: the broker's defaults, docs/protocol.md section 10).
    uint32_t session_timeout_ms; // a member silent this long is removed (default 6 s, min 1 s)
    uint32_t ack_timeout_ms;     // delivered and not acked this long: redelivered (default 30 s)
    uint32_t max_ack_pending;    // unacked records per partition before delivery stops (1000)
    uint8_t max_redeliveries;    // then the record goes to <topic>.dlq (default 5, max 16)
    sl_assign_cb assign_cb;      // optional: assignment changes
    void *assign_user;
} sl_consumer_config;

// Fills cfg with defaults (partition 0, earliest, 1000 records / 4 MiB prefetch, auto_ack).
SL_API void sl_consumer_config_init(sl_consumer_config *cfg);

// Creates a consumer and starts its I/O thread. SL_EINVAL, SL_ENOMEM.
SL_API SL_MUST_USE int sl_consumer_new(const sl_consumer_config *cfg, sl_consumer **out);

// One consumed record. key/value (and raw headers) view the consumer's memory: valid until the
// next sl_consumer_poll / sl_consumer_dispatch call or sl_consumer_free, whichever comes first.
typedef struct sl_consumed {
    uint64_t offset;
    uint32_t partition;
    sl_record record;
    uint32_t redelivery_count; // times the broker delivered this record before (group mode)
} sl_consumed;

// Returns up to cap records in out, waiting until deadline_ns for at least one. *count_out gets
// the count. SL_OK (records), SL_EAGAIN (SL_DEADLINE_NOW and none buffered: wait on
// sl_consumer_ready_fd or ready_cb), SL_ETIMEDOUT, SL_ECLOSED. Not for concurrent callers.
// Taking records frees prefetch room, and the I/O thread requests more.
SL_API SL_MUST_USE int sl_consumer_poll(sl_consumer *c, sl_consumed *out, size_t cap,
                                        int64_t deadline_ns, size_t *count_out);

// Callback API: calls cb on the caller's thread for up to max records (waiting until deadline_ns
// for the first), with the same ack and lifetime rules as poll. Heartbeats continue however long
// cb takes. Returns what poll would, with *count_out the records handled.
typedef void (*sl_record_cb)(const sl_consumed *rec, void *user);
SL_API SL_MUST_USE int sl_consumer_dispatch(sl_consumer *c, size_t max, int64_t deadline_ns,
                                            sl_record_cb cb, void *user, size_t *count_out);

// Acks (cumulatively) every record up to and including offset: a COMMIT is sent (to the group, if
// any). Never blocks. SL_EINVAL for an offset not yet returned by poll, or in group mode (use
// sl_consumer_ack_record, which names the partition).
SL_API SL_MUST_USE int sl_consumer_ack(sl_consumer *c, uint64_t offset);

// Acks (cumulatively, per partition) every record of partition up to and including offset.
// Never blocks. SL_EINVAL for an offset not yet returned by poll; SL_ENOENT for a partition this
// consumer does not own (any more: its records go to the new owner, which may see them again).
SL_API SL_MUST_USE int sl_consumer_ack_record(sl_consumer *c, uint32_t partition, uint64_t offset);

// Copies the partitions owned now (group mode; the one partition otherwise) into partitions (up
// to cap, increasing), their count to *count_out and the generation to *generation_out (may be
// NULL; 0 when not a member yet). Thread-safe, never blocks.
SL_API void sl_consumer_assignment(sl_consumer *c, uint32_t *partitions, size_t cap,
                                   size_t *count_out, uint32_t *generation_out);

// Readable exactly while records are buffered (poll() it for POLLIN; never read it: the consumer
// clears it when its buffer empties). Owned by the consumer.
SL_API int sl_consumer_ready_fd(sl_consumer *c);

typedef struct sl_consumer_stats {
    sl_client_stats client;
    uint64_t records_delivered_total; // received from the broker
    uint64_t records_polled_total;    // handed to the application
    uint64_t requested_records_total; // REQUEST increments sent
    uint64_t buffered_records;
    uint64_t buffered_bytes;
    uint64_t committed_offset; // last COMMIT sent (exclusive offset)
    uint64_t log_end_offset;   // from the last DELIVER (lag = this - next offset)
    uint64_t next_offset;      // next offset the application will see
    // Group mode.
    uint32_t generation;                // current generation (0: not a member)
    uint32_t assigned_partitions;       // partitions owned now
    uint64_t rebalances_total;          // new generations seen
    uint64_t redelivered_records_total; // records received with a redelivery count > 0
} sl_consumer_stats;

SL_API void sl_consumer_stats_get(sl_consumer *c, sl_consumer_stats *out);

// Sends a final COMMIT if needed (best effort), stops the I/O thread and frees the consumer.
SL_API void sl_consumer_free(sl_consumer *c);

// ---- admin ---------------------------------------------------------------------------------

// Connects and completes the handshake before deadline_ns. broker NULL: the default broker.
// SL_ECONNREFUSED, SL_ETIMEDOUT, SL_EPROTO. One caller at a time; each call blocks up to its
// deadline and answers broker heartbeats while it waits.
SL_API SL_MUST_USE int sl_admin_open(const char *broker, int64_t deadline_ns, sl_admin **out);
SL_API void sl_admin_close(sl_admin *a);

// The broker's human-readable message for the last failed call ("" if none). Owned by a.
SL_API const char *sl_admin_last_message(const sl_admin *a);

SL_API SL_MUST_USE int sl_admin_create_topic(sl_admin *a, const char *topic,
                                             const sl_proto_topic_config *config,
                                             int64_t deadline_ns);
SL_API SL_MUST_USE int sl_admin_delete_topic(sl_admin *a, const char *topic, int64_t deadline_ns);

// Calls cb for every topic (all pages), in name order.
typedef void (*sl_topic_cb)(const char *name, uint32_t partition_count, void *user);
SL_API SL_MUST_USE int sl_admin_list_topics(sl_admin *a, int64_t deadline_ns, sl_topic_cb cb,
                                            void *user);

// Describes a topic: cb gets the config once (partition == UINT32_MAX, info NULL), then each
// partition.
typedef void (*sl_partition_cb)(const sl_proto_topic_config *config, uint32_t partition,
                                const sl_proto_partition_info *info, void *user);
SL_API SL_MUST_USE int sl_admin_describe_topic(sl_admin *a, const char *topic, int64_t deadline_ns,
                                               sl_partition_cb cb, void *user);

// Statistics of one topic, or broker-wide for topic NULL: cb per (name, value).
typedef void (*sl_stat_cb)(const char *name, uint64_t value, void *user);
SL_API SL_MUST_USE int sl_admin_stats(sl_admin *a, const char *topic, int64_t deadline_ns,
                                      sl_stat_cb cb, void *user);

// Consumer groups (the broker speaks protocol version 2). Calls cb for every (group, topic) the
// broker coordinates: its generation, live members and partitions.
typedef void (*sl_group_cb)(const char *group, const char *topic, uint32_t generation,
                            uint32_t member_count, uint32_t partition_count, void *user);
SL_API SL_MUST_USE int sl_admin_list_groups(sl_admin *a, int64_t deadline_ns, sl_group_cb cb,
                                            void *user);

// Describes group on topic: cb gets the decoded answer (valid during the call only; walk it with
// sl_proto_group_members_next and sl_proto_group_info_partition). SL_ENOENT: no such group.
typedef void (*sl_group_info_cb)(const sl_proto_group_info *info, void *user);
SL_API SL_MUST_USE int sl_admin_describe_group(sl_admin *a, const char *group, const char *topic,
                                               int64_t deadline_ns, sl_group_info_cb cb,
                                               void *user);

// Resolves the broker address to use: text if not NULL/empty, else $SLUICE_BROKER, else
// 127.0.0.1:7420. Fills host (size >= 256) and port; err gets a message. SL_OK or SL_EINVAL.
SL_API SL_MUST_USE int sl_client_resolve_broker(const char *text, char *host, size_t host_size,
                                                uint16_t *port_out, char *err, size_t err_size);

#endif
