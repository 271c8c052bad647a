// Internals shared by the producer, consumer and admin: one connection (socket, bounded read and
// write buffers, handshake, heartbeats) and the background I/O thread that drives it for a
// producer or consumer. The handle plugs in through sl__io_ops; everything runs under io->mutex
// except socket I/O and user callbacks.
#ifndef SLUICE_CLIENT_INTERNAL_H
#define SLUICE_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <sluice/client.h>

// First reconnect delay; it doubles per failure up to the configured maximum.
#define SL__RECONNECT_BACKOFF_MIN_MS 50u
// Default ceiling of the reconnect backoff.
#define SL__RECONNECT_BACKOFF_MAX_MS 2000u
// A TCP connect plus handshake that takes longer than this is abandoned and retried.
#define SL__CONNECT_TIMEOUT_MS 5000
// Frame size the client proposes: holds a default 1 MiB batch with room to spare; a larger
// batch_bytes raises it (up to SL_PROTO_FRAME_SIZE_CEILING).
#define SL__CLIENT_MAX_FRAME_BYTES (4u * 1024u * 1024u)
// A peer silent for this many heartbeat intervals is considered dead (docs/protocol.md).
#define SL__HEARTBEAT_MISSES_MAX 3
// retry-after hints are spread by +-20 % so throttled clients do not return in lockstep.
#define SL__JITTER_PCT 20u
// Frames decoded per read before the loop gives writes and timers a turn.
#define SL__FRAMES_PER_ROUND_MAX 256u

typedef struct sl__conn {
    int fd;             // -1 while down
    uint32_t max_frame; // negotiated; SL_PROTO_FRAME_SIZE_MIN before HELLO_OK
    uint32_t heartbeat_ms;
    uint8_t *rbuf; // holds at most one partial frame after each decode pass
    size_t rcap;
    size_t rlen;
    uint8_t *wbuf; // encoded frames not yet written; nothing is encoded without room
    size_t wcap;
    size_t wlen;
    size_t woff; // bytes of wbuf already written
    int64_t last_rx_ns;
    int64_t last_tx_ns;
    uint64_t ping_nonce;
} sl__conn;

void sl__conn_init(sl__conn *c);
// Connects to host:port and completes HELLO / HELLO_OK before deadline_ns. Buffers are sized to
// the agreed frame size. stop (may be NULL) is polled so a closing handle is not held up.
int sl__conn_open(sl__conn *c, const char *host, uint16_t port, const char *client_id,
                  uint32_t max_frame, uint32_t heartbeat_ms, int64_t deadline_ns,
                  _Atomic bool *stop, sl_proto_hello_ok *ok_out);
void sl__conn_close(sl__conn *c);
// Free space at the end of the write buffer (compacting first); encoders write at *at.
size_t sl__conn_room(sl__conn *c, uint8_t **at);
// Commits len bytes just encoded at the position sl__conn_room returned.
void sl__conn_commit(sl__conn *c, size_t len);
// Writes what it can without blocking: SL_OK or SL_ECONNRESET.
int sl__conn_flush(sl__conn *c);
// Reads what it can without blocking: SL_OK, SL_ECONNRESET (EOF or error).
int sl__conn_fill(sl__conn *c);
// Decodes the next whole frame at rbuf + *pos: SL_OK, SL_EAGAIN (need more), SL_EPROTO.
int sl__conn_next(sl__conn *c, size_t *pos, sl_frame *f);
// Drops the first pos bytes of rbuf (frames already handled).
void sl__conn_consume(sl__conn *c, size_t pos);
// Encodes a PING (or a PONG echoing nonce) if there is room.
int sl__conn_ping(sl__conn *c, bool pong, uint64_t nonce);
// Reads a whole frame, waiting until deadline_ns (admin calls); answers PINGs on the way.
int sl__conn_wait_frame(sl__conn *c, int64_t deadline_ns, sl_frame *f, size_t *pos);
// Writes the whole buffer, waiting until deadline_ns.
int sl__conn_write_all(sl__conn *c, int64_t deadline_ns);

struct sl__io;
typedef struct sl__io_ops {
    void (*on_connected)(void *h, const sl_proto_hello_ok *ok);  // locked: open streams
    int (*on_frame)(void *h, const sl_frame *f, int64_t now_ns); // locked; error: reconnect
    void (*on_pong)(void *h, uint64_t nonce); // locked; optional (NULL): a PONG arrived
    void (*pump)(void *h, int64_t now_ns, int64_t *wake_at_ns); // locked: encode output
    void (*on_disconnected)(void *h);                           // locked
    void (*unlocked)(void *h); // after each round, no lock held: run user callbacks
} sl__io_ops;

typedef struct sl__io {
    pthread_mutex_t mutex;
    pthread_cond_t cond; // CLOCK_MONOTONIC; signalled on every state change users wait for
    int wake_fd;         // eventfd: user threads wake the I/O thread
    pthread_t thread;
    bool thread_started;
    _Atomic bool stop;
    char host[256];
    uint16_t port;
    char client_id[SL_PROTO_CLIENT_ID_MAX + 1];
    uint32_t heartbeat_ms;
    uint32_t backoff_max_ms;
    uint32_t max_frame;
    sl__conn conn; // touched by the I/O thread only (and by ops under the mutex, on that thread)
    bool connected;
    int64_t reconnect_at_ns; // no reconnect before this (GOAWAY / ERROR retry-after); I/O thread
    sl_client_stats stats;   // under mutex
    uint64_t rng;            // jitter state, I/O thread only
    const sl__io_ops *ops;
    void *handle;
} sl__io;

int sl__io_init(sl__io *io, const char *broker, const char *client_id, uint32_t heartbeat_ms,
                uint32_t backoff_max_ms, uint32_t max_frame, const sl__io_ops *ops, void *handle,
                char *err, size_t err_size);
int sl__io_start(sl__io *io);
// Stops and joins the thread (idempotent); the connection is closed.
void sl__io_stop(sl__io *io);
void sl__io_fini(sl__io *io);
void sl__io_wake(sl__io *io);
// Waits on io->cond until deadline_ns: false when the deadline passed. Caller holds the mutex.
bool sl__io_wait(sl__io *io, int64_t deadline_ns);
// ms spread by +-SL__JITTER_PCT (I/O thread only).
uint32_t sl__io_jitter_ms(sl__io *io, uint32_t ms);
// Records a THROTTLE in the stats (caller holds the mutex).
void sl__io_count_throttle(sl__io *io, uint8_t reason, uint32_t wait_ms);
// Copies a topic or group name into dst (size SL_PROTO_TOPIC_NAME_MAX + 1): SL_EINVAL if invalid.
int sl__copy_name(char *dst, const char *name, bool allow_null);
void sl__signal_fd(int fd);
void sl__drain_fd(int fd);

#endif
