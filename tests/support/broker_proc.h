// Runs a real sluiced for a test: 127.0.0.1 with an ephemeral port, a fresh temporary data dir,
// stopped by its PID. Also a minimal blocking protocol peer (raw frames) for broker tests.
#ifndef SLUICE_TEST_BROKER_PROC_H
#define SLUICE_TEST_BROKER_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sluice/proto.h>

typedef struct sl_test_broker {
    pid_t pid;
    uint16_t port;
    uint16_t admin_port; // set by sl_test_broker_start_admin
    char data_dir[256];  // set before start to reuse a directory (restart tests)
    char log_path[320];  // the broker's stderr
} sl_test_broker;

// Starts sluiced (the binary named by $SL_SLUICED) with --listen 127.0.0.1:0, --admin off and
// --data (a new temp dir unless data_dir is set), plus extra_args (NULL-terminated, may be NULL).
// Waits up to 10 s for its "listening on" line. Returns 0 or -1.
int sl_test_broker_start(sl_test_broker *b, const char *const *extra_args);

// As sl_test_broker_start, but with the admin HTTP endpoint on 127.0.0.1:0; its bound port is
// read from the startup line into b->admin_port. Returns 0 or -1.
int sl_test_broker_start_admin(sl_test_broker *b, const char *const *extra_args);

// SIGTERM, then SIGKILL after 10 s; returns the exit status (or -1).
int sl_test_broker_stop(sl_test_broker *b);

// SIGKILL at once (crash tests); reaps the process.
void sl_test_broker_kill(sl_test_broker *b);

// Peak resident set (VmHWM) of the broker in KiB, or -1.
long sl_test_broker_peak_rss_kb(const sl_test_broker *b);

// Removes the data directory.
void sl_test_broker_cleanup(sl_test_broker *b);

// A blocking protocol peer with its own read buffer.
typedef struct sl_test_wire {
    int fd;
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t consumed; // bytes of the last frame returned, dropped on the next recv
    uint32_t max_frame;
    uint32_t next_correlation;
} sl_test_wire;

// Connects to 127.0.0.1:port; with hello, also does HELLO/HELLO_OK. Returns 0 or -1.
int sl_test_wire_open(sl_test_wire *w, uint16_t port, int hello);
void sl_test_wire_close(sl_test_wire *w);

// Sends raw bytes (a frame or garbage). Returns 0 or -1.
int sl_test_wire_send(sl_test_wire *w, const void *data, size_t size);

// Receives one frame within timeout_ms. Views in *f stay valid until the next recv.
// Returns SL_OK, SL_ETIMEDOUT, SL_ECLOSED (peer closed) or SL_EPROTO.
int sl_test_wire_recv(sl_test_wire *w, sl_frame *f, int timeout_ms);

// Receives frames until one of type arrives (others are skipped, counted in *skipped if not NULL).
int sl_test_wire_expect(sl_test_wire *w, uint8_t type, sl_frame *f, int timeout_ms);

// Admin helpers: return the ADMIN_RESULT code (0 = success) or a negative status.
int sl_test_wire_create_topic(sl_test_wire *w, const char *name, uint32_t partitions,
                              uint64_t max_backlog_bytes, uint32_t max_lag_ms);
// The same with every topic setting (full policy, retention).
int sl_test_wire_create_topic_config(sl_test_wire *w, const char *name,
                                     const sl_proto_topic_config *config);

// Builds a batch of count records whose values are "<seq> " followed by filler up to value_size,
// seq starting at first_seq, stamped with the producer identity (producer_id, (u32)first_seq),
// into buf (cap bytes). Returns the batch length or 0.
size_t sl_test_build_batch(uint8_t *buf, size_t cap, uint64_t producer_id, uint64_t first_seq,
                           uint32_t count, uint32_t value_size);

// ---- stream helpers (each returns 0, or the STREAM_CLOSE code, or a negative status) -----------

// OPEN_PRODUCE on stream sid; waits for STREAM_OK (the first CREDIT is left for the caller).
// *producer_id_out (may be NULL) receives the producer id in force.
int sl_test_wire_open_produce(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t partition,
                              uint64_t producer_id, uint64_t *producer_id_out);

// OPEN_CONSUME from the earliest offset on stream sid; waits for STREAM_OK.
int sl_test_wire_open_consume(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t partition);

// Sends REQUEST(records, bytes) on stream sid. Returns 0 or -1.
int sl_test_wire_request(sl_test_wire *w, uint32_t sid, uint64_t records, uint64_t bytes);

// PING with a fresh nonce and waits for its PONG (other frames are skipped). 0 or a status.
int sl_test_wire_ping(sl_test_wire *w, int timeout_ms);

// Calls fn for every record of a DELIVER inside [first_offset, end_offset), in order, after
// checking each batch's CRC. Stops at fn's first non-zero return. Returns 0, fn's value, or -1
// when a batch is invalid.
int sl_test_deliver_foreach(const sl_proto_deliver *d,
                            int (*fn)(void *arg, uint64_t offset, const sl_record *r), void *arg);

// Like sl_test_build_batch, but values are "<seq> <stamp> " and filler (stamp: the caller's
// send time in ns, for latency measurements). Parse with sl_test_parse_value.
size_t sl_test_build_batch_stamped(uint8_t *buf, size_t cap, uint64_t producer_id,
                                   uint64_t first_seq, uint32_t count, uint32_t value_size,
                                   int64_t stamp_ns);

// Reads "<seq> " and, if stamp_out is not NULL, "<stamp> " from a record value. 0 or -1.
int sl_test_parse_value(const sl_record *r, uint64_t *seq_out, int64_t *stamp_out);

// CLOCK_MONOTONIC in ns.
int64_t sl_test_now_ns(void);

#endif
