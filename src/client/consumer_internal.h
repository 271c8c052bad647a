// The consumer's internals, shared by consumer.c (streams, demand, buffering, commits) and
// group.c (membership: join, heartbeats, assignments). A consumer reads one partition, or in group
// mode every partition the broker assigns it, each on its own stream with its own demand, position
// and commits. Everything here is under io.mutex unless a field says otherwise.
#ifndef SLUICE_CLIENT_CONSUMER_INTERNAL_H
#define SLUICE_CLIENT_CONSUMER_INTERNAL_H

#include "client/client_internal.h"

// One delivered batch kept for the application.
typedef struct sl__cbatch {
    struct sl__cbatch *next;
    uint8_t *buf; // a validated copy of the delivered batch
    size_t len;
    sl_batch_iter it;
    uint64_t lo; // records outside [lo, hi) were trimmed (partial delivery or duplicates)
    uint64_t hi;
    uint32_t left; // kept records not yet handed out
    uint32_t partition;
    uint32_t redelivery_count; // from the DELIVER that brought it
} sl__cbatch;

// One partition's stream and positions.
typedef struct sl__cpart {
    bool active; // single mode: always; group mode: assigned in the current generation
    uint32_t partition;
    uint32_t stream_id; // of the open (or opening) stream; 0: none
    bool stream_open;
    bool stream_ready;
    bool have_position;    // next_fetch is known (a reconnect resumes there)
    uint64_t next_fetch;   // next offset wanted from the broker
    uint64_t next_offset;  // next offset the application will see
    uint64_t returned_end; // one past the last offset handed out
    uint64_t commit_target;
    uint64_t commit_sent;
    uint64_t buffered_records;
    uint64_t outstanding_records; // requested and not yet delivered
    uint64_t outstanding_bytes;
    uint64_t window_bytes; // prefetch bytes, raised to the stream's max_batch_bytes
    uint64_t log_end_offset;
    int64_t paused_until_ns;
} sl__cpart;

// Group membership (group mode only).
typedef struct sl__cgroup {
    char member_id[SL_PROTO_MEMBER_ID_MAX + 1]; // "" until the first ASSIGN
    uint32_t generation;                        // 0: not a member
    uint32_t heartbeat_ms;
    bool join_sent;
    uint32_t join_correlation;
    uint32_t next_correlation;
    int64_t heartbeat_at_ns;
    int64_t rejoin_at_ns;
    uint64_t rebalances_seen; // ASSIGNs with a new generation
    bool leave_wanted;        // set by sl_consumer_free; the I/O thread encodes LEAVE_GROUP
    bool leave_sent;
    // Assignment changes for the assign_cb, called outside the lock.
    bool notify;
    uint32_t notify_generation;
} sl__cgroup;

struct sl_consumer {
    sl__io io;
    sl_consumer_config cfg;
    char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
    char group[SL_PROTO_GROUP_NAME_MAX + 1];
    int ready_fd;
    bool group_mode;
    sl__cgroup grp;
    sl__cpart *parts; // group mode: indexed by partition (SL_PROTO_PARTITIONS_MAX); else one
    uint32_t part_count;
    uint32_t next_stream_id; // odd ids, each open takes a fresh one
    sl__cbatch *head;        // buffered, oldest first
    sl__cbatch *tail;
    sl__cbatch *retired; // handed out by the last poll; freed at the next (views stay valid)
    uint64_t buffered_records;
    uint64_t buffered_bytes;
    bool want_ready;
    bool closing;
    int fatal;
    sl_consumer_stats stats;
    // What the next encoder call works on (I/O thread, under the mutex).
    sl__cpart *pumped;
    sl_proto_request request;
    uint8_t member_type; // GROUP_HEARTBEAT or LEAVE_GROUP
};

// ---- consumer.c, for group.c
// The part of partition (group mode) or the one part (single mode).
sl__cpart *sl__consumer_part(sl_consumer *c, uint32_t partition);
// Forgets a part's stream and buffered records (revoked, or the connection is gone).
void sl__consumer_part_drop(sl_consumer *c, sl__cpart *p);
// Encodes one frame into the connection's write buffer; false when there is no room.
bool sl__consumer_encode(sl_consumer *c, int (*enc)(sl_consumer *, uint8_t *, size_t, size_t *));

// ---- group.c
void sl__group_pump(sl_consumer *c, int64_t now_ns, int64_t *wake_at_ns);
// Handles ASSIGN and the ADMIN_RESULT answers to group requests: SL_ENOENT for other frames.
int sl__group_frame(sl_consumer *c, const sl_frame *f, int64_t now_ns);
void sl__group_disconnected(sl_consumer *c);
// Calls the assign_cb if an assignment changed (no lock held).
void sl__group_unlocked(sl_consumer *c);
// Best-effort LEAVE_GROUP before close (the broker then moves partitions at once): asks the I/O
// thread to send it and waits until deadline_ns. Caller holds the mutex.
void sl__group_leave(sl_consumer *c, int64_t deadline_ns);

#endif
