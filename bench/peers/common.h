// The common core of the overload load clients (one program per system: load_sluice, load_nats,
// load_redis, load_zmq, load_mqtt). The driver forks one process per producer and per consumer,
// shares counters and acked/consumed bitmaps with them through a shared mapping, samples RSS and
// counters every 100 ms, and writes summary.txt (key=value) and series.csv. Workload definitions:
// docs/benchmarks.md, "Overload workloads".
#ifndef SLUICE_BENCH_PEERS_COMMON_H
#define SLUICE_BENCH_PEERS_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/histogram.h>

#define PB_PAYLOAD_BYTES   100u
#define PB_MAX_PRODUCERS   3u
#define PB_MAX_CONSUMERS   2u
#define PB_MAX_SEQ         (1ull << 26) // 64 M messages per producer (bitmap 8 MiB)
#define PB_SLOT_NS         100000000ll  // series and RSS sampling period: 100 ms
#define PB_MAX_SLOTS       2400u        // 240 s of series
#define PB_MAX_BURSTS      16u
#define PB_BATCH           1000u     // consumer batch and token-bucket depth
#define PB_STALL_NS        1000000ll // a send call longer than this counts as a stall
#define PB_RECV_ERRORS_MAX 50u       // consecutive failed receives that stop a consumer
#define PB_REASON_BYTES    96u
#define PB_NAME_BYTES      64u
#define PB_SEND_SLICE_NS   100000000ll // longest single wait a producer loop makes (100 ms)

typedef enum pb_workload { PB_W1 = 1, PB_W2, PB_W3, PB_W4, PB_W5 } pb_workload;

typedef enum pb_stop {
    PB_STOP_NONE = 0,
    PB_STOP_COMPLETE,
    PB_STOP_RECV_ERROR,
    PB_STOP_DRAIN_TIMEOUT,
    PB_STOP_IDLE,
} pb_stop;

typedef enum pb_next { PB_NEXT_SEND, PB_NEXT_WAIT, PB_NEXT_DONE } pb_next;

// One producer's shared state (written by its process, read by the driver and consumers).
typedef struct pb_prod_state {
    _Atomic uint64_t sent;     // send calls that took the message (next seq)
    _Atomic uint64_t acked;    // acknowledged (see the system's definition of an ack)
    _Atomic uint64_t rejected; // refused by the broker, not retried
    _Atomic uint64_t stalls;   // send calls that took longer than PB_STALL_NS
    _Atomic int64_t in_send_ns;
    _Atomic int64_t max_send_ns;
    _Atomic int64_t start_ns;      // first send
    _Atomic int64_t window_end_ns; // last send returned
    _Atomic int64_t end_ns;        // final ack wait over
    _Atomic int done;
    uint64_t rate;                // intended msgs/s (0: as fast as possible)
    uint32_t topic;               // consumer index that reads it
    char reason[PB_REASON_BYTES]; // first rejection reason
    char note[PB_REASON_BYTES];   // system-specific extra (errors, disconnects)
} pb_prod_state;

typedef struct pb_cons_state {
    _Atomic uint64_t consumed; // unique messages
    _Atomic uint64_t dups;
    _Atomic uint64_t per_producer[PB_MAX_PRODUCERS];
    _Atomic int64_t last_ns; // last consumption (modelled processing start)
    _Atomic int ready;       // pb_cons_new ran (the system subscribed first)
    _Atomic int done;
    int stop;             // pb_stop
    int64_t still_queued; // -1: unknown
    uint64_t rate;        // capacity msgs/s (0: unlimited)
    sl_histogram_summary latency;
    uint32_t slot_p99_us[PB_MAX_SLOTS];
    _Atomic int64_t burst_last_ns[PB_MAX_BURSTS];
} pb_cons_state;

typedef struct pb_shared {
    int64_t t0_ns; // run start (all series slots are relative to it)
    pb_prod_state prod[PB_MAX_PRODUCERS];
    pb_cons_state cons[PB_MAX_CONSUMERS];
} pb_shared;

// A run: options plus the shared state. Systems read the options they need.
typedef struct pb_run {
    const char *system;
    pb_workload workload;
    const char *label;    // row name in the tables ("sluice", "nats", "redis-w2b" ...)
    const char *addr;     // broker address (host:port) or endpoint
    const char *out_dir;  // summary.txt and series.csv go here
    const char *data_dir; // broker data directory (disk use), may be NULL
    int broker_pid;       // 0: no broker (ZeroMQ)
    bool bounded;         // W2b: the 64 MiB bound is configured
    bool quick;           // development mode: shorter workloads
    uint32_t producers;
    uint32_t consumers;
    uint64_t count;      // W1: messages
    int64_t duration_ns; // W2/W4/W5: producer send window
    uint32_t bursts;     // W3
    uint64_t burst_size;
    int64_t burst_every_ns;
    int64_t drain_ns;   // consumer deadline after the producers stop
    int64_t idle_ns;    // consumer idle limit after the producers stop
    const char *opt[8]; // system options: --opt key=value (parsed by the system)
    uint32_t opt_count;
    pb_shared *sh;
    uint64_t *acked_bits[PB_MAX_PRODUCERS];
    uint64_t *consumed_bits[PB_MAX_PRODUCERS];
} pb_run;

// Called in its own process; returns 0 on success. setup runs in the driver before any fork.
typedef struct pb_system {
    const char *name;
    int (*setup)(pb_run *run);
    int (*produce)(pb_run *run, uint32_t p);
    int (*consume)(pb_run *run, uint32_t c);
} pb_system;

// Parses argv, runs the workload with sys, writes the results. The program's main.
int pb_main(const pb_system *sys, int argc, char **argv);

// The value of --opt key=value, or def.
const char *pb_opt(const pb_run *run, const char *key, const char *def);
uint64_t pb_opt_u64(const pb_run *run, const char *key, uint64_t def);

int64_t pb_now_ns(void);
void pb_sleep_ns(int64_t ns);

// ---- producer side -------------------------------------------------------------------------

// What producer p should do now. PB_NEXT_SEND: buf (PB_PAYLOAD_BYTES) holds message *seq stamped
// with the time of this first try; call pb_prod_sent once the send call returned with the
// message taken. PB_NEXT_WAIT: nothing to send before *wait_ns (<= PB_SEND_SLICE_NS); service
// acks and ask again. PB_NEXT_DONE: the send window is over.
pb_next pb_prod_next(pb_run *run, uint32_t p, uint8_t *buf, uint64_t *seq, int64_t *wait_ns);
// The send call for the message from pb_prod_next ran from t_start to t_end and took it.
void pb_prod_sent(pb_run *run, uint32_t p, int64_t t_start, int64_t t_end);
// Time spent inside a send-side call that did not take a message (waiting for a window).
void pb_prod_waited(pb_run *run, uint32_t p, int64_t t_start, int64_t t_end);
void pb_prod_acked(pb_run *run, uint32_t p, uint64_t seq);
void pb_prod_rejected(pb_run *run, uint32_t p, uint64_t seq, const char *reason);
void pb_prod_note(pb_run *run, uint32_t p, const char *note);
// Whether producer p's time window (W2, W4, W5) is over: a message still waiting to be taken
// is then given up (not sent).
bool pb_prod_window_over(const pb_run *run, uint32_t p);
// The send window is over (last send returned); then, after the final ack wait, finished.
void pb_prod_window_end(pb_run *run, uint32_t p);
void pb_prod_finished(pb_run *run, uint32_t p);
// Whether every sent message was acked or rejected.
bool pb_prod_settled(const pb_run *run, uint32_t p);

// ---- consumer side -------------------------------------------------------------------------

typedef struct pb_consumer pb_consumer;

// Creates the consumer model (token bucket, histograms) for consumer c in its process. Call it
// once subscribed: the driver starts the producers only after every consumer got this far.
pb_consumer *pb_cons_new(pb_run *run, uint32_t c);
// A batch of n messages arrived now; call pb_cons_msg for each, then pb_cons_batch_end (which
// sleeps as the capacity model says), then ack to the broker.
void pb_cons_batch_begin(pb_consumer *k);
void pb_cons_msg(pb_consumer *k, const void *payload, size_t len);
void pb_cons_batch_end(pb_consumer *k);
// A receive failed (counted; enough in a row stop the consumer), or returned nothing.
void pb_cons_recv_error(pb_consumer *k);
// Whether to stop now (sets the reason). Call between receives; receives should wait <= 100 ms.
bool pb_cons_should_stop(pb_consumer *k);
// What the broker still held for this consumer when it stopped (-1 unknown).
void pb_cons_set_queued(pb_consumer *k, int64_t queued);
// Writes the latency summary into the shared state and frees k.
void pb_cons_free(pb_consumer *k);

// Message helpers: the sequence number, the producer index and the stamp of a payload.
uint64_t pb_payload_seq(const void *payload);

#endif
