// sluiced internals shared by its files: the broker, topics and partitions, connections and their
// streams, and the storage thread's requests. Single-threaded unless a field says otherwise: the
// event loop thread owns everything here except sl_store_req while it is on the storage thread.
//
//   conn.c     frames in and out of one connection, streams, produce/consume/admin handlers
//   server.c   the libuv loop: listener, reads, bounded writes, the tick, signals, shutdown
//   topic.c    topics and partitions on disk (sl_log), the data dir lock, topic persistence
//   storage.c  the storage thread: log appends, group-commit flushes, completions to the loop
//   flow.c     credit, acks and throttles for producer streams; deliveries for consumer streams
#ifndef SLUICE_BROKER_BROKER_H
#define SLUICE_BROKER_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include <sluice/budget.h>
#include <sluice/log.h>
#include <sluice/proto.h>

#include "broker/admission.h"
#include "broker/config.h"

// Largest frame the broker accepts and sends after HELLO_OK: 1 MiB holds typical produce batches
// and deliveries; clients with bigger batches negotiate up to SL_PROTO_FRAME_SIZE_CEILING.
#define SL_BROKER_FRAME_BYTES_DEFAULT (1024u * 1024u)
// Every connection's fixed read buffer; frames larger than this are read into a buffer reserved
// from the connection's budget for that frame only.
#define SL_BROKER_READ_BUFFER_BYTES (64u * 1024u)
// Largest DELIVER the broker builds in one piece (bytes of batches), bounded by the frame size.
#define SL_BROKER_DELIVER_BYTES_MAX (512u * 1024u)
// Topics one broker holds; the registry never grows past it.
#define SL_BROKER_TOPICS_MAX 4096u
// Producer identities remembered per partition for duplicate detection after a reconnect.
#define SL_BROKER_PRODUCERS_PER_PARTITION 256u
// The tick: rates are measured and credit re-evaluated this often.
#define SL_BROKER_TICK_MS 10u
// Send allowance reserved for one fixed-size control frame (HELLO_OK, STREAM_OK, CREDIT, ACK,
// THROTTLE with its short message, PONG, GOAWAY); frames with a free-form message add
// SL_PROTO_MESSAGE_MAX.
#define SL_BROKER_CONTROL_FRAME_BYTES 256u

typedef struct sl_broker sl_broker;
typedef struct sl_topic sl_topic;
typedef struct sl_partition sl_partition;
typedef struct sl_conn sl_conn;
typedef struct sl_stream sl_stream;
typedef struct sl_admin sl_admin;               // admin_http.c: the admin HTTP endpoint
typedef struct sl_groups sl_groups;             // group.c: the consumer group coordinator
typedef struct sl_group_member sl_group_member; // group.c
typedef struct sl_group_part sl_group_part;     // group.c

// An exponentially weighted rate, updated on the tick.
typedef struct sl_rate {
    uint64_t total;      // monotonic count (bytes or records)
    uint64_t last_total; // total at the previous tick
    double per_s;        // smoothed rate
} sl_rate;

void sl_rate_tick(sl_rate *rate, double dt_s);

// One producer identity on a partition: what it sent, what is stored, and its current stream, so a
// resend after a reconnect is recognised and acknowledged instead of stored twice.
typedef struct sl_producer_slot {
    uint64_t producer_id; // 0: free
    uint32_t next_seq;    // next record sequence accepted (sent to storage)
    uint32_t stored_seq;  // every sequence before it is appended
    uint64_t last_offset; // offset of the record before stored_seq
    sl_stream *stream;    // the open produce stream of this identity, or NULL
    uint64_t last_used_tick;
} sl_producer_slot;

// A completed request whose ACK is held back (escalation step 2).
typedef struct sl_pending_ack {
    uint32_t seq_end;
    uint8_t acks;
    uint64_t base_offset;
    uint64_t last_offset;
    int64_t queued_ns; // when it was held back (sl_now_ns), for the oldest-held age
} sl_pending_ack;

// ACKs one stream may hold back; when full, the oldest goes out early.
#define SL_BROKER_PENDING_ACKS 32u

struct sl_partition {
    sl_topic *topic;
    uint32_t index;
    sl_log *log;
    uint64_t end_offset;     // as last reported by the storage thread (loop's view)
    uint64_t durable_offset; // loop's view
    uint64_t low_position;   // slowest attached consumer's delivery position (or last known)
    uint64_t low_committed;  // slowest attached consumer's acknowledged position (or last known)
    uint32_t low_consumers;  // consumers attached when low_committed was computed
    sl_rate in_bytes;
    sl_rate in_records;
    sl_rate out_bytes;
    uint64_t stored_bytes_total; // bytes appended since open (for bytes/record estimates)
    uint64_t stored_records_total;
    sl_stream *consumers; // consumer streams on this partition (list via part_next)
    bool has_group;       // some consumer group has committed offsets here (group.c)
    uint64_t group_low;   // slowest such group's committed offset (valid with has_group)
    sl_producer_slot producers[SL_BROKER_PRODUCERS_PER_PARTITION];
};

// Counters per topic, exported by STATS and (later) /metrics.
typedef struct sl_topic_stats {
    uint64_t produce_frames;
    uint64_t batches_in;
    uint64_t records_in;
    uint64_t bytes_in;
    uint64_t records_out;
    uint64_t bytes_out;
    uint64_t credit_granted_bytes;
    uint64_t throttles[8]; // by sl_throttle_reason
    uint64_t acks_delayed;
    uint64_t duplicates_dropped;
    uint64_t records_dropped; // drop_oldest policy only: skipped by consumers, with a log line
    uint64_t append_failures;
} sl_topic_stats;

struct sl_topic {
    char name[SL_PROTO_TOPIC_NAME_MAX + 1];
    sl_proto_topic_config config;
    sl_partition *partitions; // config.partition_count entries
    sl_budget *memory;        // child of the broker's memory budget: this topic's allowance
    sl_budget *disk;          // child of the broker's disk budget
    sl_broker *broker;
    uint32_t rr_next;          // round-robin partition for OPEN_PRODUCE(any)
    uint32_t producer_count;   // open producer streams
    uint32_t refs;             // streams and in-flight requests holding the topic
    bool deleted;              // deleted while referenced: freed when refs reach 0
    sl_rate drain_bytes;       // delivered bytes/s over all partitions
    sl_rate acked_bytes;       // bytes/s the slowest consumers acknowledge (commit), all partitions
    uint64_t inflight_charged; // memory-budget bytes held by requests at the storage thread
    sl_topic_stats stats;
    sl_topic *next; // registry list
};

struct sl_stream {
    uint32_t id;
    uint8_t kind; // sl_stream_kind
    sl_conn *conn;
    sl_topic *topic;
    sl_partition *part;
    sl_stream *conn_next; // the connection's stream list
    sl_stream *part_next; // the partition's consumer list
    // Produce side.
    uint64_t producer_id;
    uint32_t next_seq;        // next sequence expected from the producer
    uint32_t acked_seq;       // seq_end of the last ACK sent
    uint8_t acks;             // durability of the last PRODUCE
    uint64_t granted_total;   // cumulative credit sent (CREDIT frames)
    uint64_t received_total;  // PRODUCE frame bytes received; <= granted_total
    uint64_t credit_reserved; // budget held for granted - received (== their difference)
    sl_rate accepted_bytes;
    sl_admission_decision decision;
    int64_t throttle_sent_ns;  // last THROTTLE sent (throttles repeat at their retry-after)
    int64_t last_frame_ns;     // last PRODUCE received (or the open)
    uint64_t frame_max_seen;   // largest PRODUCE frame received on this stream
    uint64_t fair_cap;         // max-min fair share of the topic's credit (set on the tick)
    int64_t ack_hold_until_ns; // held ACKs go out at this time
    sl_pending_ack pending_acks[SL_BROKER_PENDING_ACKS];
    uint32_t pending_ack_head;
    uint32_t pending_ack_count;
    // Consume side.
    uint64_t position;       // next offset to deliver
    uint64_t committed;      // cumulative COMMIT
    uint64_t demand_records; // outstanding REQUEST records (saturating)
    uint64_t demand_bytes;
    uint64_t delivered_records;
    uint64_t requested_records; // cumulative REQUEST records (saturating): demand's source
    bool waiting_data;          // parked until the partition grows
    uint8_t stall_reason;       // sl_stall_reason: why the last delivery attempt stopped
    // Group streams (group.c; NULL/0 otherwise): the member that owns the partition and the
    // group's state of it. Unacked records are position - committed.
    sl_group_member *member;
    sl_group_part *gpart;
    int64_t unacked_since_ns; // when the oldest unacked record became unacked (0: none)
};

// Why a consumer stream is not being sent records (the field above), for "why is it stalled".
static inline sl_stall_reason
sl_stream_stall_reason(const sl_stream *s)
{
    return (sl_stall_reason)s->stall_reason;
}

// A write in flight on a connection; freed in its callback.
typedef struct sl_write {
    uv_write_t req;
    sl_conn *conn;
    struct sl_write *next; // the connection's queue of writes in flight, oldest first
    int64_t queued_ns;     // when it was queued (sl_now_ns), for the queue's oldest age
    size_t charged_bytes;
    size_t size;
    uint8_t data[];
} sl_write;

struct sl_conn {
    uv_tcp_t tcp;
    sl_broker *broker;
    uint64_t id;
    char peer[64];
    bool hello_done;
    bool closing;
    uint16_t version;      // negotiated protocol version (groups need SL_PROTO_VERSION_GROUPS)
    bool reading;          // uv_read_start active
    bool over_credit;      // stopped reading: peer sent beyond its credit
    uint32_t max_frame;    // negotiated
    uint32_t heartbeat_ms; // negotiated
    int64_t last_recv_ns;
    int64_t over_credit_since_ns;
    bool read_paused; // a frame waits for budget; the tick retries it
    bool not_reading; // left a whole send allowance of ACKs unread: the tick disconnects it
    uint8_t *rbuf;    // SL_BROKER_READ_BUFFER_BYTES, or a larger frame buffer
    size_t rbuf_cap;
    size_t rbuf_len;
    size_t rbuf_charged;       // bytes of rbuf charged to the connection budget
    sl_budget *budget;         // per-connection allowance: read buffers and queued writes
    size_t write_queued_bytes; // bytes in uv_write requests not completed
    sl_write *write_head;      // those requests, oldest first (libuv completes them in order)
    sl_write *write_tail;
    uint32_t stream_count;
    sl_stream *streams;
    uint32_t refs; // in-flight storage requests and the handle itself
    sl_conn *next; // broker's connection list
    sl_conn *prev;
};

// A PRODUCE frame's batches on their way through the storage thread and back.
typedef struct sl_store_req {
    struct sl_store_req *next;
    sl_partition *part;
    sl_conn *conn; // referenced (conn->refs) until the completion is handled
    uint32_t stream_id;
    uint64_t producer_id;
    uint32_t first_seq;
    uint32_t record_count;
    uint8_t acks;
    bool flushed;         // made durable by a flush
    int status;           // SL_OK or the append error
    uint64_t base_offset; // first record's offset
    uint64_t end_offset;  // one past the last record
    uint64_t charged;     // bytes reserved on the topic budget for this request
    int64_t submitted_ns; // when the loop queued it (sl_now_ns), for the queue's oldest age
    size_t batch_count;
    size_t size;    // bytes of data
    uint8_t data[]; // the batches back to back
} sl_store_req;

typedef struct sl_storage {
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    sl_store_req *in_head; // requests to append (FIFO); bounded by the memory budget
    sl_store_req *in_tail;
    sl_store_req *out_head; // completed requests (FIFO)
    sl_store_req *out_tail;
    bool stopping;
    bool started;
    bool initialized;
    sl_fsync_policy fsync_policy;
    uv_async_t *wake_loop;    // signalled when completions are ready
    _Atomic uint64_t flushes; // written by the storage thread, read by STATS on the loop
    _Atomic uint64_t appends;
    // Measured latencies (EWMA, ns) of one group's appends and of one flush: the commit part of
    // the credit round trip that windows are sized from.
    _Atomic int64_t append_ns_avg;
    _Atomic int64_t flush_ns_avg;
} sl_storage;

typedef struct sl_broker_stats {
    uint64_t connections_accepted;
    uint64_t connections_refused;
    uint64_t connections_open;
    uint64_t protocol_errors;
    uint64_t credit_violations;
    uint64_t disconnects_credit;
    uint64_t disconnects_heartbeat;
} sl_broker_stats;

struct sl_broker {
    sl_broker_config config;
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_async_t storage_done;
    uv_poll_t signal_poll; // SIGINT and SIGTERM, read from signal_fd (see sl_broker_open)
    int signal_fd;
    uint8_t *scratch; // deliveries are read here before encoding (loop thread only)
    size_t scratch_size;
    sl_budget *memory; // global memory budget
    sl_budget *disk;   // global disk budget
    sl_admission_config admission;
    sl_storage storage;
    sl_topic *topics;
    uint32_t topic_count;
    sl_conn *conns;
    uint64_t next_conn_id;
    uint64_t next_producer_id;
    uint16_t bound_port; // the port actually bound (listen port 0 picks one)
    int lock_fd;
    int64_t last_tick_ns;
    uint64_t tick_count;
    bool stopping;
    sl_broker_stats stats;
    sl_admin *admin;    // NULL when the admin endpoint is off
    sl_groups *groups;  // consumer groups (group.c)
    struct sl_ops *ops; // ops.h: drop ledger, invariants, histograms (NULL before open)
};

// ---- server.c
int sl_broker_open(sl_broker *b, const sl_broker_config *config, char *err, size_t err_size);
int sl_broker_run(sl_broker *b);
void sl_broker_close(sl_broker *b);
void sl_broker_log(sl_broker *b, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Queues a frame already encoded in w->data; frees w on completion. Charged to the conn budget.
void sl_conn_write(sl_conn *c, sl_write *w);
// Allocates a write buffer of size bytes, charged to the connection budget; NULL when full.
sl_write *sl_conn_write_alloc(sl_conn *c, size_t size);
// Gives back a write that will not be queued.
void sl_conn_write_discard(sl_conn *c, sl_write *w);
// Encodes one frame with encode into a fresh write of cap bytes and queues it. SL_EFULL when the
// connection's send allowance is full (nothing queued; the caller decides whether that matters),
// or the encoder's error.
typedef int (*sl_frame_encoder)(uint8_t *buf, size_t cap, const void *arg, size_t *len_out);
int sl_conn_encode(sl_conn *c, size_t cap, sl_frame_encoder encode, const void *arg);
// Grows the read buffer to hold one frame of frame_size bytes (SL_EFULL: no budget, unchanged),
// and returns to the fixed buffer once such a frame has been consumed.
int sl_conn_grow_rbuf(sl_conn *c, size_t frame_size);
void sl_conn_shrink_rbuf(sl_conn *c);
void sl_conn_close(sl_conn *c, int code, const char *message);
void sl_conn_unref(sl_conn *c);

// ---- conn.c
// Consumes as many whole frames from the read buffer as possible; returns SL_OK or an error after
// which the connection has been closed.
int sl_conn_process(sl_conn *c);
void sl_conn_streams_free(sl_conn *c);
// Frees one stream (after a STREAM_CLOSE was sent or received).
void sl_conn_stream_close(sl_conn *c, sl_stream *s);
// Opens a stream of kind on topic t (referenced); NULL after a STREAM_CLOSE was sent (limit,
// memory).
sl_stream *sl_conn_stream_new(sl_conn *c, uint32_t id, uint8_t kind, sl_topic *t);
// Sends STREAM_OK for stream id.
void sl_conn_send_stream_ok(sl_conn *c, uint32_t id, const sl_proto_stream_ok *ok);
// Sends ADMIN_RESULT(correlation_id, status, msg).
void sl_conn_admin_reply(sl_conn *c, uint32_t correlation_id, int status, const char *msg);
int sl_conn_send_error(sl_conn *c, uint32_t stream_id, int status, uint8_t reason,
                       uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

// ---- flow.c
// Takes a PRODUCE frame within credit. SL_EFULL: the request's bookkeeping found no budget; the
// frame was not consumed and the connection pauses reading until the tick retries it.
int sl_flow_produce_frame(sl_stream *s, const sl_frame *f);
void sl_flow_store_done(sl_broker *b, sl_store_req *r);
void sl_flow_tick(sl_broker *b, int64_t now_ns);
void sl_flow_replenish(sl_stream *s, int64_t now_ns);
void sl_flow_deliver(sl_stream *s);
void sl_flow_partition_grew(sl_partition *p);
void sl_flow_stream_closed(sl_stream *s);
void sl_flow_update_low_position(sl_partition *p);
// Why the consumer stream s cannot be sent records now (SL_STALL_NONE: it can).
sl_stall_reason sl_flow_stall_reason(const sl_stream *s);

// ---- topic.c
int sl_topics_lock_data_dir(sl_broker *b, char *err, size_t err_size);
int sl_topics_load(sl_broker *b, char *err, size_t err_size);
sl_topic *sl_topic_find(sl_broker *b, const char *name, size_t name_size);
int sl_topic_create(sl_broker *b, const char *name, size_t name_size,
                    const sl_proto_topic_config *config, sl_topic **topic_out, char *err,
                    size_t err_size);
int sl_topic_delete(sl_broker *b, sl_topic *t, char *err, size_t err_size);
void sl_topic_unref(sl_topic *t);
void sl_topics_close(sl_broker *b);
uint64_t sl_partition_backlog_bytes(const sl_partition *p);
// Bytes after the slowest attached consumer's acknowledged position: what it has not finished,
// its prefetch included (the max_lag bound counts these).
uint64_t sl_partition_unacked_bytes(const sl_partition *p);
// Bytes per record this partition has stored on average (128 before the first append).
uint64_t sl_partition_record_bytes(const sl_partition *p);
sl_producer_slot *sl_partition_producer(sl_partition *p, uint64_t producer_id, bool create);

// ---- storage.c
int sl_storage_start(sl_storage *s, sl_fsync_policy policy, uv_async_t *wake_loop);
void sl_storage_submit(sl_storage *s, sl_store_req *r);
// Age basis of the oldest request waiting for the storage thread: its submitted_ns, or 0 when
// none waits; *queued_out gets how many wait (counted up to SL_STORAGE_QUEUE_COUNT_MAX).
#define SL_STORAGE_QUEUE_COUNT_MAX 100000u
int64_t sl_storage_oldest_queued_ns(sl_storage *s, uint64_t *queued_out);
// Takes every completed request (FIFO list) off the storage thread's queue.
sl_store_req *sl_storage_take_done(sl_storage *s);
// Joins the thread once it has appended everything queued; completions stay to be taken.
void sl_storage_stop(sl_storage *s);
// Frees the queues' locks (after stop and the last take_done).
void sl_storage_fini(sl_storage *s);

#endif
