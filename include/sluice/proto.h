// The sluice wire protocol: frame types, their decoded forms, and pure encode/decode functions
// (no I/O, no allocation). Decoded strings and batches are borrowed views into the input buffer.
// Every length and count is validated before use; bad input gets SL_EPROTO, never a crash.
// Byte-by-byte layout, semantics and versioning rules: docs/protocol.md.
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <sluice/batch.h>
#include <sluice/defs.h>

// ---- limits ------------------------------------------------------------------------------------

// Protocol versions this library speaks; HELLO offers a range and HELLO_OK picks one.
// Version 2 adds consumer groups (frames 0x60..0x67), the DELIVER redelivery count and the
// generation carried by a GROUP-mode OPEN_CONSUME; a version 1 peer never sees any of them.
#define SL_PROTO_VERSION_MIN 1u
#define SL_PROTO_VERSION_MAX 2u
// The first version with consumer groups.
#define SL_PROTO_VERSION_GROUPS 2u

// "SLUI" as the first four payload bytes of HELLO: a non-sluice peer is refused at once.
#define SL_PROTO_HELLO_MAGIC 0x49554C53u

// Fixed frame header: u32 length, u8 type, u8 flags, u16 reserved, u32 stream id.
#define SL_PROTO_FRAME_HEADER_BYTES 12u

// Frame size (header included) each side may propose in HELLO / HELLO_OK. The floor bounds every
// frame sent before HELLO_OK and holds any control frame with its longest strings; the default
// holds typical produce batches; the ceiling lets one largest batch through in one frame.
#define SL_PROTO_FRAME_SIZE_MIN     (64u * 1024u)
#define SL_PROTO_FRAME_SIZE_DEFAULT (16u * 1024u * 1024u)
#define SL_PROTO_FRAME_SIZE_CEILING (SL_BATCH_SIZE_MAX + 64u * 1024u)

// Topic names: 1..249 bytes of [A-Za-z0-9._-] (as Kafka), so they are safe as directory names.
#define SL_PROTO_TOPIC_NAME_MAX 249u
// Consumer group names: same alphabet and bound as topics.
#define SL_PROTO_GROUP_NAME_MAX 249u
// Client and broker ids in HELLO / HELLO_OK: free bytes, for logs and metrics labels.
#define SL_PROTO_CLIENT_ID_MAX 255u
// Human-readable message in ERROR, THROTTLE, STREAM_CLOSE, GOAWAY and ADMIN_RESULT: one line of
// explanation, not a log dump.
#define SL_PROTO_MESSAGE_MAX 1024u
// Streams open at once on one connection (the broker may advertise fewer in HELLO_OK); each costs
// the broker a stream slot and its credit state.
#define SL_PROTO_STREAMS_MAX 4096u
// Batches in one PRODUCE or DELIVER frame; bounds the decoder's walk independently of size.
#define SL_PROTO_BATCHES_PER_FRAME_MAX 1024u
// Partitions of one topic; bounds CREATE_TOPIC and the size of TOPIC_INFO.
#define SL_PROTO_PARTITIONS_MAX 1024u
// Entries in one TOPIC_LIST or STATS_RESULT; longer answers are paginated.
#define SL_PROTO_LIST_ENTRIES_MAX 1024u
// Longest statistic name in STATS_RESULT.
#define SL_PROTO_STAT_NAME_MAX 128u
// Heartbeat interval bounds (HELLO, HELLO_OK); a peer silent for 3 intervals is dead.
#define SL_PROTO_HEARTBEAT_MS_MIN     100u
#define SL_PROTO_HEARTBEAT_MS_DEFAULT 5000u
#define SL_PROTO_HEARTBEAT_MS_MAX     600000u
// retry_after_ms is capped so a hint can never park a client for more than an hour.
#define SL_PROTO_RETRY_AFTER_MS_MAX 3600000u

// OPEN_PRODUCE partition: let the broker pick (round robin or by key, its policy).
#define SL_PROTO_PARTITION_ANY 0xFFFFFFFFu

// Members of one group on one topic (ASSIGN, GROUP_INFO); a join past it is refused (EFULL).
#define SL_PROTO_GROUP_MEMBERS_MAX 64u
// Member ids: assigned by the broker, same alphabet as names.
#define SL_PROTO_MEMBER_ID_MAX 64u
// Session timeout bounds (JOIN_GROUP): a member silent this long is removed. The floor lets tests
// detect failures quickly; the ceiling bounds how long a dead member holds its partitions.
#define SL_PROTO_SESSION_TIMEOUT_MS_MIN     1000u
#define SL_PROTO_SESSION_TIMEOUT_MS_DEFAULT 6000u
#define SL_PROTO_SESSION_TIMEOUT_MS_MAX     300000u
// Ack timeout bounds (JOIN_GROUP): delivered records not committed within it are redelivered.
#define SL_PROTO_ACK_TIMEOUT_MS_MIN     100u
#define SL_PROTO_ACK_TIMEOUT_MS_DEFAULT 30000u
#define SL_PROTO_ACK_TIMEOUT_MS_MAX     3600000u
// Unacknowledged records one group stream may have in flight (JOIN_GROUP max_ack_pending).
#define SL_PROTO_MAX_ACK_PENDING_DEFAULT 1000u
#define SL_PROTO_MAX_ACK_PENDING_MAX     1000000u
// Deliveries of a record beyond the first before it goes to the dead-letter topic.
#define SL_PROTO_MAX_REDELIVERIES_DEFAULT 5u
#define SL_PROTO_MAX_REDELIVERIES_MAX     16u

// ---- frame types -------------------------------------------------------------------------------

// X(NAME, code, scope): scope C = connection level (stream id 0), S = stream (id != 0),
// E = either (stream id 0 means the whole connection).
#define SL_PROTO_FRAME_MAP(X)   \
    X(HELLO, 0x01, C)           \
    X(HELLO_OK, 0x02, C)        \
    X(PING, 0x03, C)            \
    X(PONG, 0x04, C)            \
    X(ERROR, 0x05, E)           \
    X(GOAWAY, 0x06, C)          \
    X(OPEN_PRODUCE, 0x10, S)    \
    X(OPEN_CONSUME, 0x11, S)    \
    X(STREAM_OK, 0x12, S)       \
    X(STREAM_CLOSE, 0x13, S)    \
    X(PRODUCE, 0x20, S)         \
    X(CREDIT, 0x21, S)          \
    X(ACK, 0x22, S)             \
    X(THROTTLE, 0x23, E)        \
    X(REQUEST, 0x30, S)         \
    X(DELIVER, 0x31, S)         \
    X(COMMIT, 0x32, S)          \
    X(CREATE_TOPIC, 0x40, C)    \
    X(DELETE_TOPIC, 0x41, C)    \
    X(LIST_TOPICS, 0x42, C)     \
    X(DESCRIBE_TOPIC, 0x43, C)  \
    X(STATS, 0x44, C)           \
    X(ADMIN_RESULT, 0x50, C)    \
    X(TOPIC_LIST, 0x51, C)      \
    X(TOPIC_INFO, 0x52, C)      \
    X(STATS_RESULT, 0x53, C)    \
    X(JOIN_GROUP, 0x60, C)      \
    X(GROUP_HEARTBEAT, 0x61, C) \
    X(ASSIGN, 0x62, C)          \
    X(LEAVE_GROUP, 0x63, C)     \
    X(LIST_GROUPS, 0x64, C)     \
    X(DESCRIBE_GROUP, 0x65, C)  \
    X(GROUP_LIST, 0x66, C)      \
    X(GROUP_INFO, 0x67, C)

typedef enum sl_frame_type {
#define SL__FRAME_ENUM(name, code, scope) SL_FRAME_##name = (code),
    SL_PROTO_FRAME_MAP(SL__FRAME_ENUM)
#undef SL__FRAME_ENUM
} sl_frame_type;

// Codes 0x60..0x6F belong to consumer groups (version 2; 0x68..0x6F stay reserved). A version 1
// connection never carries them: the broker refuses them there as a protocol error.
#define SL_PROTO_GROUP_TYPES_FIRST 0x60u
#define SL_PROTO_GROUP_TYPES_LAST  0x6Fu

// Durability a producer asks for; an ACK is sent once it holds.
typedef enum sl_acks {
    SL_ACKS_NONE = 0,   // no ACK frames; fire and forget (credit still applies)
    SL_ACKS_MEMORY = 1, // accepted into the broker's memory budget
    SL_ACKS_LOG = 2,    // appended to the partition log (page cache)
    SL_ACKS_FSYNC = 3,  // appended and fsynced
} sl_acks;

// Machine-readable reason carried by THROTTLE and by rejections (ERROR, STREAM_CLOSE).
typedef enum sl_throttle_reason {
    SL_THROTTLE_NONE = 0, // not a throttle (only in ERROR / STREAM_CLOSE / ADMIN_RESULT)
    SL_THROTTLE_MEMORY_BUDGET = 1,
    SL_THROTTLE_DISK_BUDGET = 2,
    SL_THROTTLE_TOPIC_FULL = 3,
    SL_THROTTLE_QUOTA = 4,
} sl_throttle_reason;

// Where an OPEN_CONSUME starts reading.
typedef enum sl_start_mode {
    SL_START_OFFSET = 0,   // at start_offset
    SL_START_EARLIEST = 1, // at the log start
    SL_START_LATEST = 2,   // at the log end (only new records)
    SL_START_GROUP = 3,    // at the group's committed offset (group name required)
} sl_start_mode;

// What a topic does when its backlog budget is full.
typedef enum sl_full_policy {
    SL_FULL_BLOCK = 0,       // withhold credit: producers wait (lossless)
    SL_FULL_REJECT = 1,      // refuse with THROTTLE(topic full, retry-after) (lossless)
    SL_FULL_DROP_OLDEST = 2, // delete the oldest data, counted (lossy, explicit)
} sl_full_policy;

typedef enum sl_stream_kind {
    SL_STREAM_PRODUCE = 1,
    SL_STREAM_CONSUME = 2,
} sl_stream_kind;

// ---- decoded forms -----------------------------------------------------------------------------

// A length-prefixed string on the wire (u16 length + bytes, no NUL). Decoded: a view into the
// frame; encoding: the caller's bytes. Not NUL-terminated.
typedef struct sl_proto_str {
    const char *data;
    uint16_t size;
} sl_proto_str;

typedef struct sl_frame_header {
    uint32_t length; // payload bytes after the header; header + payload <= negotiated max
    uint8_t type;    // sl_frame_type
    uint8_t flags;   // 0 in version 1
    uint32_t stream_id;
} sl_frame_header;

typedef struct sl_proto_hello {
    uint16_t version_min;
    uint16_t version_max;
    uint32_t max_frame_bytes; // largest frame the client accepts
    uint32_t heartbeat_ms;    // interval the client proposes
    sl_proto_str client_id;
} sl_proto_hello;

typedef struct sl_proto_hello_ok {
    uint16_t version;
    uint32_t max_frame_bytes; // agreed: min of both sides; binds both directions
    uint32_t heartbeat_ms;    // agreed
    uint32_t max_streams;     // streams the client may have open at once
    sl_proto_str broker_id;
} sl_proto_hello_ok;

// PING and PONG: the PONG echoes the nonce.
typedef struct sl_proto_ping {
    uint64_t nonce;
} sl_proto_ping;

// ERROR and STREAM_CLOSE. code is a wire error code (sl_proto_code_from_status); STREAM_CLOSE
// allows 0 (normal close), ERROR does not.
typedef struct sl_proto_error {
    uint16_t code;
    uint8_t reason;          // sl_throttle_reason, SL_THROTTLE_NONE if not budget related
    uint32_t retry_after_ms; // 0: do not retry automatically
    sl_proto_str message;
} sl_proto_error;

typedef struct sl_proto_goaway {
    uint16_t code;           // 0: normal shutdown
    uint32_t last_stream_id; // highest stream id the sender processed
    uint32_t retry_after_ms;
    sl_proto_str message;
} sl_proto_goaway;

typedef struct sl_proto_open_produce {
    uint32_t partition;   // or SL_PROTO_PARTITION_ANY
    uint64_t producer_id; // 0: the broker assigns one (returned in STREAM_OK)
    sl_proto_str topic;
} sl_proto_open_produce;

typedef struct sl_proto_open_consume {
    uint32_t partition;    // SL_PROTO_PARTITION_ANY only with SL_START_GROUP
    uint8_t start_mode;    // sl_start_mode
    uint64_t start_offset; // SL_START_OFFSET; with SL_START_GROUP (v2) the member's generation
                           // (0: unchecked); 0 otherwise
    sl_proto_str topic;
    sl_proto_str group; // required for SL_START_GROUP, optional otherwise (commits go there)
} sl_proto_open_consume;

typedef struct sl_proto_stream_ok {
    uint8_t kind;             // sl_stream_kind
    uint32_t partition;       // resolved partition
    uint64_t producer_id;     // produce: the producer id in force; consume: 0
    uint64_t start_offset;    // consume: resolved first offset; produce: 0
    uint32_t next_seq;        // produce: next record sequence the broker expects; consume: 0
    uint32_t max_batch_bytes; // largest batch the topic accepts / may deliver
} sl_proto_stream_ok;

// Whole encoded record batches, back to back (include/sluice/batch.h), as a view. The decoder has
// checked each batch's header framing (not its CRC: the broker or client does that).
typedef struct sl_proto_batches {
    const uint8_t *data;
    size_t size_bytes;
    uint16_t batch_count;
    uint32_t record_count; // sum over the batches
} sl_proto_batches;

typedef struct sl_proto_produce {
    uint8_t acks;       // sl_acks
    uint32_t first_seq; // producer sequence of the first record; batches are contiguous from it
    sl_proto_batches batches;
} sl_proto_produce;

// Cumulative: the producer may have sent granted_total_bytes of PRODUCE frames (headers
// included) on this stream since it opened. Never decreases.
typedef struct sl_proto_credit {
    uint64_t granted_total_bytes;
} sl_proto_credit;

// Cumulative: every record with sequence before seq_end holds the durability acks.
typedef struct sl_proto_ack {
    uint32_t seq_end;     // one past the last acked record's sequence (serial arithmetic)
    uint8_t acks;         // durability reached
    uint64_t base_offset; // offset of the first record newly acked by this frame
    uint64_t last_offset; // offset of the last acked record
} sl_proto_ack;

typedef struct sl_proto_throttle {
    uint8_t reason; // sl_throttle_reason, never NONE
    uint32_t retry_after_ms;
    sl_proto_str message;
} sl_proto_throttle;

// Increments added (saturating) to the stream's outstanding demand.
typedef struct sl_proto_request {
    uint64_t records;
    uint64_t bytes;
} sl_proto_request;

typedef struct sl_proto_deliver {
    uint64_t first_offset;   // records before it in the first batch are skipped, not counted
    uint64_t end_offset;     // exclusive; records from it on are skipped, not counted
    uint64_t log_end_offset; // partition end at send time (the consumer's lag is visible)
    sl_proto_batches batches;
    uint16_t redelivery_count; // times every record in the range was delivered before (v2; else 0)
} sl_proto_deliver;

// Cumulative: every record before offset is processed (acked, and committed for a group).
typedef struct sl_proto_commit {
    uint64_t offset;
} sl_proto_commit;

typedef struct sl_proto_topic_config {
    uint32_t partition_count;
    uint64_t max_backlog_bytes; // 0: broker default
    uint32_t max_lag_ms;        // 0: no limit
    uint8_t full_policy;        // sl_full_policy
    uint64_t retention_bytes;   // 0: unlimited (never past unconsumed data when lossless)
    uint64_t retention_ms;      // 0: unlimited
} sl_proto_topic_config;

typedef struct sl_proto_create_topic {
    uint32_t correlation_id;
    sl_proto_topic_config config;
    sl_proto_str topic;
} sl_proto_create_topic;

// DELETE_TOPIC, DESCRIBE_TOPIC and STATS (STATS: empty topic = broker-wide).
typedef struct sl_proto_topic_request {
    uint32_t correlation_id;
    sl_proto_str topic;
} sl_proto_topic_request;

typedef struct sl_proto_list_topics {
    uint32_t correlation_id;
    uint16_t max_entries;     // 1..SL_PROTO_LIST_ENTRIES_MAX
    sl_proto_str start_after; // empty: from the first name; else names sorting after it
} sl_proto_list_topics;

typedef struct sl_proto_admin_result {
    uint32_t correlation_id;
    sl_proto_error status; // code 0: success
} sl_proto_admin_result;

typedef struct sl_proto_topic_entry {
    sl_proto_str name;
    uint32_t partition_count;
} sl_proto_topic_entry;

// To encode, set entries; decoded, raw/raw_size is the validated entry area, read it with
// sl_proto_list_next.
typedef struct sl_proto_topic_list {
    uint32_t correlation_id;
    bool more; // more names after the last one: ask again with start_after
    uint16_t entry_count;
    const sl_proto_topic_entry *entries; // encode only
    const uint8_t *raw;                  // decode only
    size_t raw_size;
} sl_proto_topic_list;

typedef struct sl_proto_partition_info {
    uint64_t log_start_offset;
    uint64_t log_end_offset;
    uint64_t durable_offset;
    uint64_t backlog_bytes;
} sl_proto_partition_info;

// config.partition_count partitions; to encode set partitions, decoded use
// sl_proto_topic_info_partition.
typedef struct sl_proto_topic_info {
    uint32_t correlation_id;
    sl_proto_topic_config config;
    sl_proto_str topic;
    const sl_proto_partition_info *partitions; // encode only
    const uint8_t *raw;                        // decode only
} sl_proto_topic_info;

typedef struct sl_proto_stat {
    sl_proto_str name;
    uint64_t value;
} sl_proto_stat;

typedef struct sl_proto_stats_result {
    uint32_t correlation_id;
    uint16_t entry_count;
    const sl_proto_stat *entries; // encode only
    const uint8_t *raw;           // decode only
    size_t raw_size;
} sl_proto_stats_result;

// ---- consumer groups (version 2) ---------------------------------------------------------------

// Where a group partition without a committed offset starts.
typedef enum sl_offset_reset {
    SL_OFFSET_RESET_EARLIEST = 1,
    SL_OFFSET_RESET_LATEST = 2,
} sl_offset_reset;

// JOIN_GROUP: become (or stay, with member_id) a member of group on topic. Zero limits take the
// broker defaults. The answer is ASSIGN (same correlation id) or ADMIN_RESULT with an error.
typedef struct sl_proto_join_group {
    uint32_t correlation_id;
    uint32_t session_timeout_ms; // 0 or SL_PROTO_SESSION_TIMEOUT_MS_MIN..MAX
    uint32_t ack_timeout_ms;     // 0 or SL_PROTO_ACK_TIMEOUT_MS_MIN..MAX
    uint32_t max_ack_pending;    // 0 or 1..SL_PROTO_MAX_ACK_PENDING_MAX
    uint8_t max_redeliveries;    // 0: default; 1..SL_PROTO_MAX_REDELIVERIES_MAX
    uint8_t offset_reset;        // sl_offset_reset
    sl_proto_str group;
    sl_proto_str topic;
    sl_proto_str member_id; // empty on a first join
} sl_proto_join_group;

// GROUP_HEARTBEAT and LEAVE_GROUP; answered with ADMIN_RESULT (ENOENT: not a member, rejoin), or
// for a heartbeat whose generation is stale, with ASSIGN.
typedef struct sl_proto_group_member {
    uint32_t correlation_id;
    uint32_t generation; // heartbeat: the generation the member works in; leave: 0
    sl_proto_str group;
    sl_proto_str topic;
    sl_proto_str member_id;
} sl_proto_group_member;

// ASSIGN: the member's partitions in a generation. correlation_id 0: pushed by a rebalance.
typedef struct sl_proto_assign {
    uint32_t correlation_id;
    uint32_t generation;   // >= 1
    uint32_t heartbeat_ms; // send GROUP_HEARTBEAT at least this often
    sl_proto_str group;
    sl_proto_str topic;
    sl_proto_str member_id;
    uint16_t partition_count;   // 0..SL_PROTO_PARTITIONS_MAX
    const uint32_t *partitions; // encode only; increasing
    const uint8_t *raw;         // decode only: read with sl_proto_assign_partition
} sl_proto_assign;

// LIST_GROUPS: every (group, topic) the broker coordinates, up to max_entries.
typedef struct sl_proto_list_groups {
    uint32_t correlation_id;
    uint16_t max_entries; // 1..SL_PROTO_LIST_ENTRIES_MAX
} sl_proto_list_groups;

typedef struct sl_proto_group_entry {
    sl_proto_str group;
    sl_proto_str topic;
    uint32_t generation;
    uint16_t member_count;
    uint32_t partition_count;
} sl_proto_group_entry;

typedef struct sl_proto_group_list {
    uint32_t correlation_id;
    bool more; // more entries than fitted
    uint16_t entry_count;
    const sl_proto_group_entry *entries; // encode only
    const uint8_t *raw;                  // decode only
    size_t raw_size;
} sl_proto_group_list;

// DESCRIBE_GROUP: one (group, topic).
typedef struct sl_proto_describe_group {
    uint32_t correlation_id;
    sl_proto_str group;
    sl_proto_str topic;
} sl_proto_describe_group;

typedef struct sl_proto_group_member_info {
    sl_proto_str member_id;
    sl_proto_str peer; // the member's address, 0..SL_PROTO_CLIENT_ID_MAX bytes
    uint32_t session_timeout_ms;
    uint32_t max_ack_pending;
} sl_proto_group_member_info;

#define SL_PROTO_OWNER_NONE 0xFFFFu

typedef struct sl_proto_group_partition_info {
    uint32_t partition;
    uint16_t owner;                 // index into members, or SL_PROTO_OWNER_NONE
    uint16_t stall_reason;          // sl_stall_reason of the owner's stream (0: none or no stream)
    uint64_t committed_offset;      // durable committed offset (what a new owner starts from)
    uint64_t delivered_offset;      // owner's stream position (== committed without a stream)
    uint64_t log_end_offset;        // partition end
    int64_t committed_timestamp_us; // timestamp of the record at committed_offset; 0: none
} sl_proto_group_partition_info;

typedef struct sl_proto_group_info {
    uint32_t correlation_id;
    uint32_t generation;
    uint64_t rebalances_total;
    uint64_t redeliveries_total;
    uint64_t dlq_records_total;
    sl_proto_str group;
    sl_proto_str topic;
    uint16_t member_count;                           // 0..SL_PROTO_GROUP_MEMBERS_MAX
    uint16_t partition_count;                        // 0..SL_PROTO_PARTITIONS_MAX
    const sl_proto_group_member_info *members;       // encode only
    const sl_proto_group_partition_info *partitions; // encode only
    const uint8_t *raw_members;                      // decode only
    size_t raw_members_size;
    const uint8_t *raw_partitions; // decode only: partition_count fixed-size entries
} sl_proto_group_info;

// Why a consumer stream is not being sent records right now (DESCRIBE_GROUP, metrics): the first
// that applies, in this order.
typedef enum sl_stall_reason {
    SL_STALL_NONE = 0,
    SL_STALL_NO_DEMAND = 1,   // the consumer has not requested more records (or bytes)
    SL_STALL_ACK_PENDING = 2, // max_ack_pending records delivered and not committed
    SL_STALL_WRITE_FULL = 3,  // the connection's send allowance is full (consumer not reading)
    SL_STALL_CAUGHT_UP = 4,   // nothing new in the partition
} sl_stall_reason;

// "none", "no_demand", "ack_pending", "write_full", "caught_up"; "unknown" otherwise.
SL_API const char *sl_stall_reason_name(uint16_t reason);

// One decoded frame: the header and the form its type selects.
typedef struct sl_frame {
    sl_frame_header header;
    union {
        sl_proto_hello hello;
        sl_proto_hello_ok hello_ok;
        sl_proto_ping ping;   // PING and PONG
        sl_proto_error error; // ERROR and STREAM_CLOSE
        sl_proto_goaway goaway;
        sl_proto_open_produce open_produce;
        sl_proto_open_consume open_consume;
        sl_proto_stream_ok stream_ok;
        sl_proto_produce produce;
        sl_proto_credit credit;
        sl_proto_ack ack;
        sl_proto_throttle throttle;
        sl_proto_request request;
        sl_proto_deliver deliver;
        sl_proto_commit commit;
        sl_proto_create_topic create_topic;
        sl_proto_topic_request topic_request; // DELETE_TOPIC, DESCRIBE_TOPIC, STATS
        sl_proto_list_topics list_topics;
        sl_proto_admin_result admin_result;
        sl_proto_topic_list topic_list;
        sl_proto_topic_info topic_info;
        sl_proto_stats_result stats_result;
        sl_proto_join_group join_group;
        sl_proto_group_member group_member; // GROUP_HEARTBEAT, LEAVE_GROUP
        sl_proto_assign assign;
        sl_proto_list_groups list_groups;
        sl_proto_describe_group describe_group;
        sl_proto_group_list group_list;
        sl_proto_group_info group_info;
    } u;
} sl_frame;

// ---- header and generic decode -----------------------------------------------------------------

// Decodes the 12-byte header at buf. Returns SL_OK, SL_EAGAIN when len < 12, or SL_EPROTO for a
// header that can never be valid: unknown or reserved type, non-zero flags or reserved bits, a
// stream id wrong for the type's scope, or header + length > max_frame (checked before any use).
// max_frame is the negotiated size (SL_PROTO_FRAME_SIZE_MIN before HELLO_OK). Pure.
SL_API SL_MUST_USE int sl_frame_header_decode(const void *buf, size_t len, uint32_t max_frame,
                                              sl_frame_header *header_out);

// Decodes one whole frame from the front of buf. Returns SL_OK with *out filled and *consumed set
// to the frame's size, SL_EAGAIN when buf holds less than a whole frame (read more; nothing is
// consumed), or SL_EPROTO (the connection must be closed; *why_out, if not NULL, points to a
// static sentence saying what was wrong). Views in *out point into buf. Pure, never allocates.
SL_API SL_MUST_USE int sl_proto_decode(const void *buf, size_t len, uint32_t max_frame,
                                       sl_frame *out, size_t *consumed, const char **why_out);

// Encodes frame (its header's type and stream id select the form; length and flags are ignored)
// like the per-type encoder of that type; decoded list views (raw) are accepted in place of
// entries. A frame sl_proto_decode accepted re-encodes to the same bytes: the encoding is
// canonical. Returns SL_OK, SL_EFULL, or SL_EINVAL (unknown type or invalid content).
SL_API SL_MUST_USE int sl_proto_encode(void *buf, size_t cap, const sl_frame *frame,
                                       size_t *len_out);

// Returns the frame type's name ("PRODUCE"), or NULL for an unknown code.
SL_API const char *sl_proto_frame_name(uint8_t type);

// ---- per-type encode / decode ------------------------------------------------------------------
// Encoders write one whole frame (header included) into buf[0..cap) and its size to *len_out.
// They return SL_OK, SL_EFULL when cap is too small (nothing usable written; retry with more), or
// SL_EINVAL when the input would not decode (bad name, message too long, batches not framed,
// stream id 0 for a stream frame). Whether the frame fits the negotiated maximum is the caller's
// check against *len_out. Decoders take the payload (after the header) and return SL_OK or
// SL_EPROTO; their views borrow the payload. All are pure and thread-safe.

#define SL__PROTO_CODEC(name, type) \
    SL_API SL_MUST_USE int sl_proto_decode_##name(const void *payload, size_t len, type *out)

// Connection level (no stream id).
SL_API SL_MUST_USE int sl_proto_encode_hello(void *buf, size_t cap, const sl_proto_hello *in,
                                             size_t *len_out);
SL__PROTO_CODEC(hello, sl_proto_hello);
SL_API SL_MUST_USE int sl_proto_encode_hello_ok(void *buf, size_t cap, const sl_proto_hello_ok *in,
                                                size_t *len_out);
SL__PROTO_CODEC(hello_ok, sl_proto_hello_ok);
// pong = false: PING; true: PONG.
SL_API SL_MUST_USE int sl_proto_encode_ping(void *buf, size_t cap, bool pong,
                                            const sl_proto_ping *in, size_t *len_out);
SL__PROTO_CODEC(ping, sl_proto_ping);
SL_API SL_MUST_USE int sl_proto_encode_goaway(void *buf, size_t cap, const sl_proto_goaway *in,
                                              size_t *len_out);
SL__PROTO_CODEC(goaway, sl_proto_goaway);

// ERROR (stream_id 0: the connection) and STREAM_CLOSE (stream_id != 0).
SL_API SL_MUST_USE int sl_proto_encode_error(void *buf, size_t cap, uint32_t stream_id,
                                             const sl_proto_error *in, size_t *len_out);
SL__PROTO_CODEC(error, sl_proto_error);
SL_API SL_MUST_USE int sl_proto_encode_stream_close(void *buf, size_t cap, uint32_t stream_id,
                                                    const sl_proto_error *in, size_t *len_out);
SL__PROTO_CODEC(stream_close, sl_proto_error);

// Stream frames: stream_id != 0 (THROTTLE also takes 0: the whole connection).
SL_API SL_MUST_USE int sl_proto_encode_open_produce(void *buf, size_t cap, uint32_t stream_id,
                                                    const sl_proto_open_produce *in,
                                                    size_t *len_out);
SL__PROTO_CODEC(open_produce, sl_proto_open_produce);
SL_API SL_MUST_USE int sl_proto_encode_open_consume(void *buf, size_t cap, uint32_t stream_id,
                                                    const sl_proto_open_consume *in,
                                                    size_t *len_out);
SL__PROTO_CODEC(open_consume, sl_proto_open_consume);
SL_API SL_MUST_USE int sl_proto_encode_stream_ok(void *buf, size_t cap, uint32_t stream_id,
                                                 const sl_proto_stream_ok *in, size_t *len_out);
SL__PROTO_CODEC(stream_ok, sl_proto_stream_ok);
// in->batches.data/size_bytes/batch_count must describe whole batches; record_count is ignored.
SL_API SL_MUST_USE int sl_proto_encode_produce(void *buf, size_t cap, uint32_t stream_id,
                                               const sl_proto_produce *in, size_t *len_out);
SL__PROTO_CODEC(produce, sl_proto_produce);
SL_API SL_MUST_USE int sl_proto_encode_credit(void *buf, size_t cap, uint32_t stream_id,
                                              const sl_proto_credit *in, size_t *len_out);
SL__PROTO_CODEC(credit, sl_proto_credit);
SL_API SL_MUST_USE int sl_proto_encode_ack(void *buf, size_t cap, uint32_t stream_id,
                                           const sl_proto_ack *in, size_t *len_out);
SL__PROTO_CODEC(ack, sl_proto_ack);
SL_API SL_MUST_USE int sl_proto_encode_throttle(void *buf, size_t cap, uint32_t stream_id,
                                                const sl_proto_throttle *in, size_t *len_out);
SL__PROTO_CODEC(throttle, sl_proto_throttle);
SL_API SL_MUST_USE int sl_proto_encode_request(void *buf, size_t cap, uint32_t stream_id,
                                               const sl_proto_request *in, size_t *len_out);
SL__PROTO_CODEC(request, sl_proto_request);
SL_API SL_MUST_USE int sl_proto_encode_deliver(void *buf, size_t cap, uint32_t stream_id,
                                               const sl_proto_deliver *in, size_t *len_out);
SL__PROTO_CODEC(deliver, sl_proto_deliver);
SL_API SL_MUST_USE int sl_proto_encode_commit(void *buf, size_t cap, uint32_t stream_id,
                                              const sl_proto_commit *in, size_t *len_out);
SL__PROTO_CODEC(commit, sl_proto_commit);

// Zero-copy variants: write only the header and fixed fields of a PRODUCE or DELIVER whose
// length covers in->batches.size_bytes more; the caller sends those batch bytes right after
// (writev, sendfile from the log), so in->batches.data is not read. The batches are not checked
// (only their count and total size): the caller vouches that they follow the PRODUCE / DELIVER
// rules of docs/protocol.md, e.g. because its log validated them. *len_out is the prefix size.
SL_API SL_MUST_USE int sl_proto_encode_produce_prefix(void *buf, size_t cap, uint32_t stream_id,
                                                      const sl_proto_produce *in, size_t *len_out);
SL_API SL_MUST_USE int sl_proto_encode_deliver_prefix(void *buf, size_t cap, uint32_t stream_id,
                                                      const sl_proto_deliver *in, size_t *len_out);

// Admin (connection level, matched by correlation id).
SL_API SL_MUST_USE int sl_proto_encode_create_topic(void *buf, size_t cap,
                                                    const sl_proto_create_topic *in,
                                                    size_t *len_out);
SL__PROTO_CODEC(create_topic, sl_proto_create_topic);
// type: SL_FRAME_DELETE_TOPIC, SL_FRAME_DESCRIBE_TOPIC or SL_FRAME_STATS.
SL_API SL_MUST_USE int sl_proto_encode_topic_request(void *buf, size_t cap, uint8_t type,
                                                     const sl_proto_topic_request *in,
                                                     size_t *len_out);
SL_API SL_MUST_USE int sl_proto_decode_topic_request(uint8_t type, const void *payload, size_t len,
                                                     sl_proto_topic_request *out);
SL_API SL_MUST_USE int sl_proto_encode_list_topics(void *buf, size_t cap,
                                                   const sl_proto_list_topics *in, size_t *len_out);
SL__PROTO_CODEC(list_topics, sl_proto_list_topics);
SL_API SL_MUST_USE int sl_proto_encode_admin_result(void *buf, size_t cap,
                                                    const sl_proto_admin_result *in,
                                                    size_t *len_out);
SL__PROTO_CODEC(admin_result, sl_proto_admin_result);
SL_API SL_MUST_USE int sl_proto_encode_topic_list(void *buf, size_t cap,
                                                  const sl_proto_topic_list *in, size_t *len_out);
SL__PROTO_CODEC(topic_list, sl_proto_topic_list);
SL_API SL_MUST_USE int sl_proto_encode_topic_info(void *buf, size_t cap,
                                                  const sl_proto_topic_info *in, size_t *len_out);
SL__PROTO_CODEC(topic_info, sl_proto_topic_info);
SL_API SL_MUST_USE int sl_proto_encode_stats_result(void *buf, size_t cap,
                                                    const sl_proto_stats_result *in,
                                                    size_t *len_out);
SL__PROTO_CODEC(stats_result, sl_proto_stats_result);

// Consumer groups (version 2; connection level, matched by correlation id).
SL_API SL_MUST_USE int sl_proto_encode_join_group(void *buf, size_t cap,
                                                  const sl_proto_join_group *in, size_t *len_out);
SL__PROTO_CODEC(join_group, sl_proto_join_group);
// type: SL_FRAME_GROUP_HEARTBEAT or SL_FRAME_LEAVE_GROUP.
SL_API SL_MUST_USE int sl_proto_encode_group_member(void *buf, size_t cap, uint8_t type,
                                                    const sl_proto_group_member *in,
                                                    size_t *len_out);
SL_API SL_MUST_USE int sl_proto_decode_group_member(uint8_t type, const void *payload, size_t len,
                                                    sl_proto_group_member *out);
SL_API SL_MUST_USE int sl_proto_encode_assign(void *buf, size_t cap, const sl_proto_assign *in,
                                              size_t *len_out);
SL__PROTO_CODEC(assign, sl_proto_assign);
SL_API SL_MUST_USE int sl_proto_encode_list_groups(void *buf, size_t cap,
                                                   const sl_proto_list_groups *in, size_t *len_out);
SL__PROTO_CODEC(list_groups, sl_proto_list_groups);
SL_API SL_MUST_USE int sl_proto_encode_describe_group(void *buf, size_t cap,
                                                      const sl_proto_describe_group *in,
                                                      size_t *len_out);
SL__PROTO_CODEC(describe_group, sl_proto_describe_group);
SL_API SL_MUST_USE int sl_proto_encode_group_list(void *buf, size_t cap,
                                                  const sl_proto_group_list *in, size_t *len_out);
SL__PROTO_CODEC(group_list, sl_proto_group_list);
SL_API SL_MUST_USE int sl_proto_encode_group_info(void *buf, size_t cap,
                                                  const sl_proto_group_info *in, size_t *len_out);
SL__PROTO_CODEC(group_info, sl_proto_group_info);

#undef SL__PROTO_CODEC

// ---- walking decoded lists ---------------------------------------------------------------------

// A cursor over a validated list (batches, topic entries, stats). Initialise with the matching
// _init function; next returns SL_OK with the next item or SL_ENOENT after the last.
typedef struct sl_proto_cursor {
    const uint8_t *pos;
    const uint8_t *end;
    uint32_t left;
} sl_proto_cursor;

SL_API void sl_proto_batches_init(sl_proto_cursor *c, const sl_proto_batches *batches);
// *batch_out views the whole batch (header_out->length bytes).
SL_API SL_MUST_USE int sl_proto_batches_next(sl_proto_cursor *c, const uint8_t **batch_out,
                                             sl_batch_header *header_out);
SL_API void sl_proto_topic_list_init(sl_proto_cursor *c, const sl_proto_topic_list *list);
SL_API SL_MUST_USE int sl_proto_topic_list_next(sl_proto_cursor *c, sl_proto_topic_entry *out);
SL_API void sl_proto_stats_init(sl_proto_cursor *c, const sl_proto_stats_result *stats);
SL_API SL_MUST_USE int sl_proto_stats_next(sl_proto_cursor *c, sl_proto_stat *out);
// Partition i (< partition_count) of a decoded ASSIGN.
SL_API uint32_t sl_proto_assign_partition(const sl_proto_assign *assign, uint16_t i);
SL_API void sl_proto_group_list_init(sl_proto_cursor *c, const sl_proto_group_list *list);
SL_API SL_MUST_USE int sl_proto_group_list_next(sl_proto_cursor *c, sl_proto_group_entry *out);
// Members of a decoded GROUP_INFO, in order (the owner index of a partition counts them).
SL_API void sl_proto_group_members_init(sl_proto_cursor *c, const sl_proto_group_info *info);
SL_API SL_MUST_USE int sl_proto_group_members_next(sl_proto_cursor *c,
                                                   sl_proto_group_member_info *out);
// Partition entry i (< partition_count) of a decoded GROUP_INFO.
SL_API void sl_proto_group_info_partition(const sl_proto_group_info *info, uint16_t i,
                                          sl_proto_group_partition_info *out);
// Partition i (< config.partition_count) of a decoded TOPIC_INFO.
SL_API void sl_proto_topic_info_partition(const sl_proto_topic_info *info, uint32_t i,
                                          sl_proto_partition_info *out);

// ---- helpers -----------------------------------------------------------------------------------

// True if name is a valid topic (or group) name: 1..249 bytes of [A-Za-z0-9._-].
SL_API bool sl_proto_topic_name_valid(const char *name, size_t size);

// Wire error code for a library status (SL_EFULL -> 3): the magnitude of the SL_E* value, which
// error.h fixes forever. SL_OK -> 0.
SL_API uint16_t sl_proto_code_from_status(int status);

// Library status for a wire code: SL_OK for 0, the SL_E* value for a known code, SL_EPROTO for
// a code this version does not know.
SL_API int sl_proto_status_from_code(uint16_t code);

// Adds a REQUEST increment to outstanding demand, saturating at UINT64_MAX.
SL_API uint64_t sl_proto_demand_add(uint64_t outstanding, uint64_t increment);

#endif
