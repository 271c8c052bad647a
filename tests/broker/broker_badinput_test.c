// Bad input against a real sluiced: garbage and oversized headers, a slowloris (silent or dribbling
// one byte at a time), PRODUCE beyond credit while a well-behaved client keeps working, a flood of
// mutated frames from several connections, connections beyond --max-connections, unknown topics /
// partitions / stream ids, and a batch with a bad CRC. Each gets a clear error (or is ignored where
// the protocol says so), the broker never crashes, its memory stays bounded, and a round trip works
// afterwards.
// ctest-labels: concurrent
// ctest-timeout: 300
#include "support/test_util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

#define HEARTBEAT_MS      300
#define CREDIT_GRACE_MS   1000
#define MAX_CONNECTIONS   12
#define MEMORY_BUDGET_MIB 64
// Peak RSS allowed on top of the memory budget (code, libraries, log indexes, stacks).
#define RSS_OVERHEAD_MIB 48
#define FLOOD_CONNS      4
#define FLOOD_SECONDS    3
#define FLOOD_FRAMES_MAX 20000
#define FRAMES_PER_CONN  64

static uint8_t batch_buf[512 * 1024];
static uint8_t frame_buf[600 * 1024];

static const char *const BROKER_ARGS[] = {
    "--heartbeat", "300ms",           "--credit-grace", "1s",          "--max-connections",
    "12",          "--memory-budget", "64MiB",          "--log-level", "error",
    NULL};

// The broker of the running test, killed by the teardown if an assertion left it running.
static sl_test_broker *current;

static int
teardown(void **state)
{
    (void)state;
    if (current != NULL && current->pid > 0) {
        sl_test_broker_kill(current);
        sl_test_broker_cleanup(current);
    }
    current = NULL;
    return 0;
}

static void
broker_up(sl_test_broker *b)
{
    memset(b, 0, sizeof(*b));
    current = b;
    assert_int_equal(sl_test_broker_start(b, BROKER_ARGS), 0);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b->port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "good", 1, 0, 0), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "fz", 2, 0, 0), 0);
    sl_test_wire_close(&w);
}

// Encodes a valid PRODUCE of count records at seq into frame_buf; returns its length.
static size_t
produce_frame(uint32_t sid, uint64_t pid, uint32_t seq, uint32_t count, uint8_t acks)
{
    size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), pid, seq, count, 50);
    assert_true(blen > 0);
    sl_proto_produce p = {.acks = acks,
                          .first_seq = seq,
                          .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), sid, &p, &len), SL_OK);
    return len;
}

// A well-behaved round trip on a fresh connection: produce count records to "good" (acks=log),
// then read them back from where the log ended before. Proves the broker is alive and serving.
static void
round_trip(const sl_test_broker *b, uint32_t count)
{
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b->port, 1), 0);
    assert_int_equal(sl_test_wire_ping(&w, 5000), 0);
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(&w, 1, "good", 0, 0, &pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    uint64_t credit = f.u.credit.granted_total_bytes;
    size_t len = produce_frame(1, pid, 0, count, SL_ACKS_LOG);
    assert_true(len <= credit);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_ACK, &f, 5000), SL_OK);
    assert_int_equal(f.u.ack.seq_end, count);
    uint64_t last = f.u.ack.last_offset;
    sl_proto_open_consume oc = {.partition = 0,
                                .start_mode = SL_START_OFFSET,
                                .start_offset = last + 1 - count,
                                .topic = {.data = "good", .size = 4}};
    assert_int_equal(sl_proto_encode_open_consume(frame_buf, sizeof(frame_buf), 2, &oc, &len),
                     SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_OK, &f, 5000), SL_OK);
    assert_int_equal(sl_test_wire_request(&w, 2, count, 1 << 20), 0);
    uint64_t got = 0;
    // Bounded: count records, each DELIVER brings at least one.
    while (got < count) {
        assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_DELIVER, &f, 5000), SL_OK);
        got += f.u.deliver.end_offset - f.u.deliver.first_offset;
    }
    assert_int_equal(got, count);
    sl_test_wire_close(&w);
}

// Expects a connection-level ERROR with code (0: any code), then the broker closing the
// connection, within timeout_ms.
static void
expect_error_then_close(sl_test_wire *w, int status, int timeout_ms)
{
    sl_frame f;
    int rc = sl_test_wire_recv(w, &f, timeout_ms);
    assert_int_equal(rc, SL_OK);
    assert_int_equal(f.header.type, SL_FRAME_ERROR);
    if (status != 0) {
        assert_int_equal(f.u.error.code, sl_proto_code_from_status(status));
    }
    assert_true(f.u.error.message.size > 0);
    // Bounded by the timeout: frames already queued may still arrive before the close.
    for (int i = 0; i < 1000 && rc == SL_OK; i++) {
        rc = sl_test_wire_recv(w, &f, timeout_ms);
    }
    assert_int_equal(rc, SL_ECLOSED);
}

static void
broker_down(sl_test_broker *b, const char *what)
{
    round_trip(b, 100);
    long rss = sl_test_broker_peak_rss_kb(b);
    print_message("  %s: broker peak RSS %ld KiB\n", what, rss);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    assert_true(rss > 0 && rss < (long)(MEMORY_BUDGET_MIB + RSS_OVERHEAD_MIB) * 1024);
#endif
    assert_int_equal(sl_test_broker_stop(b), 0); // and a clean exit, not a crash
    sl_test_broker_cleanup(b);
}

static void
raw_header(uint8_t *h, uint32_t length, uint8_t type, uint32_t stream_id)
{
    memset(h, 0, SL_PROTO_FRAME_HEADER_BYTES);
    memcpy(h, &length, 4); // little-endian hosts only, like the rest of the tests
    h[4] = type;
    memcpy(h + 8, &stream_id, 4);
}

static void
test_garbage_and_oversized_headers(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    sl_test_wire w;

    // An HTTP request is not a sluice client.
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(sl_test_wire_send(&w, http, sizeof(http) - 1), 0);
    expect_error_then_close(&w, SL_EPROTO, 3000);
    sl_test_wire_close(&w);

    // Random bytes before HELLO.
    uint64_t rng = sl_test_seed();
    for (int round = 0; round < 20; round++) {
        uint8_t junk[200];
        for (size_t i = 0; i < sizeof(junk); i++) {
            junk[i] = (uint8_t)sl_test_rand(&rng);
        }
        assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
        if (sl_test_wire_send(&w, junk, sizeof(junk)) == 0) {
            sl_frame f;
            int rc = sl_test_wire_recv(&w, &f, 3000);
            // An ERROR then the close, or (junk that frames correctly but is not HELLO) the same.
            assert_true(rc == SL_ECLOSED || (rc == SL_OK && f.header.type == SL_FRAME_ERROR));
        }
        sl_test_wire_close(&w);
    }

    // A valid frame that is not HELLO first.
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    size_t len = 0;
    sl_proto_ping ping = {.nonce = 1};
    assert_int_equal(sl_proto_encode_ping(frame_buf, sizeof(frame_buf), false, &ping, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    expect_error_then_close(&w, SL_EPROTO, 3000);
    sl_test_wire_close(&w);

    // HELLO twice.
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    sl_proto_hello h = {
        .version_min = 1, .version_max = 1, .max_frame_bytes = 1 << 20, .heartbeat_ms = 5000};
    assert_int_equal(sl_proto_encode_hello(frame_buf, sizeof(frame_buf), &h, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    expect_error_then_close(&w, SL_EPROTO, 3000);
    sl_test_wire_close(&w);

    // Only versions the broker does not speak.
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    h.version_min = 7;
    h.version_max = 9;
    assert_int_equal(sl_proto_encode_hello(frame_buf, sizeof(frame_buf), &h, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    expect_error_then_close(&w, SL_ENOTSUP, 3000);
    sl_test_wire_close(&w);

    // Headers claiming 4 GiB, before and after HELLO, and just over the negotiated maximum: refused
    // from the header alone (the broker never waits for, or buffers, such a payload).
    uint32_t lengths[] = {UINT32_MAX, UINT32_MAX, (1u << 20) - SL_PROTO_FRAME_HEADER_BYTES + 1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sl_test_wire_open(&w, b.port, i > 0), 0);
        uint8_t hdr[SL_PROTO_FRAME_HEADER_BYTES];
        raw_header(hdr, lengths[i], i == 0 ? SL_FRAME_HELLO : SL_FRAME_PRODUCE, i == 0 ? 0 : 1);
        assert_int_equal(sl_test_wire_send(&w, hdr, sizeof(hdr)), 0);
        expect_error_then_close(&w, SL_EPROTO, 3000);
        sl_test_wire_close(&w);
    }

    // Types the broker only sends, reserved group types, non-zero flags.
    uint8_t bad_types[] = {SL_FRAME_HELLO_OK, SL_FRAME_CREDIT, SL_FRAME_DELIVER, 0x60, 0x7f, 0xff};
    for (size_t i = 0; i < sizeof(bad_types); i++) {
        assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
        uint8_t hdr[SL_PROTO_FRAME_HEADER_BYTES + 8] = {0};
        raw_header(hdr, 8, bad_types[i], bad_types[i] == SL_FRAME_HELLO_OK ? 0 : 1);
        assert_int_equal(sl_test_wire_send(&w, hdr, sizeof(hdr)), 0);
        expect_error_then_close(&w, SL_EPROTO, 3000);
        sl_test_wire_close(&w);
    }
    broker_down(&b, "garbage");
}

static void
test_slowloris_is_disconnected_after_three_heartbeats(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    sl_test_wire w;
    sl_frame f;

    // Connected and silent.
    int64_t t0 = sl_test_now_ns();
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    expect_error_then_close(&w, SL_ETIMEDOUT, 5000);
    int64_t silent_ms = (sl_test_now_ns() - t0) / 1000000;
    sl_test_wire_close(&w);

    // A valid header, then silence.
    t0 = sl_test_now_ns();
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    uint8_t hdr[SL_PROTO_FRAME_HEADER_BYTES];
    raw_header(hdr, 1000, SL_FRAME_HELLO, 0);
    assert_int_equal(sl_test_wire_send(&w, hdr, sizeof(hdr)), 0);
    expect_error_then_close(&w, SL_ETIMEDOUT, 5000);
    int64_t header_ms = (sl_test_now_ns() - t0) / 1000000;
    sl_test_wire_close(&w);

    // A header for a large frame, then one byte every 100 ms: bytes are not frames, so this is as
    // silent as the others (a whole frame counts as a sign of life, a byte does not).
    t0 = sl_test_now_ns();
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    raw_header(hdr, 60000, SL_FRAME_HELLO, 0);
    assert_int_equal(sl_test_wire_send(&w, hdr, sizeof(hdr)), 0);
    int rc = SL_ETIMEDOUT;
    // Bounded: 100 bytes at most (10 s), far more than three heartbeat intervals.
    for (int i = 0; i < 100 && rc == SL_ETIMEDOUT; i++) {
        uint8_t byte = 0;
        if (sl_test_wire_send(&w, &byte, 1) != 0) {
            rc = SL_ECLOSED;
            break;
        }
        rc = sl_test_wire_recv(&w, &f, 100);
    }
    int64_t dribble_ms = (sl_test_now_ns() - t0) / 1000000;
    assert_true(rc == SL_ECLOSED || (rc == SL_OK && f.header.type == SL_FRAME_ERROR));
    sl_test_wire_close(&w);

    // A connection that said HELLO with a 300 ms heartbeat and then nothing.
    t0 = sl_test_now_ns();
    assert_int_equal(sl_test_wire_open(&w, b.port, 0), 0);
    size_t len = 0;
    sl_proto_hello h = {.version_min = 1,
                        .version_max = 1,
                        .max_frame_bytes = 1 << 20,
                        .heartbeat_ms = HEARTBEAT_MS};
    assert_int_equal(sl_proto_encode_hello(frame_buf, sizeof(frame_buf), &h, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_HELLO_OK, &f, 3000), SL_OK);
    assert_int_equal(f.u.hello_ok.heartbeat_ms, HEARTBEAT_MS);
    expect_error_then_close(&w, SL_ETIMEDOUT, 5000);
    int64_t hello_ms = (sl_test_now_ns() - t0) / 1000000;
    sl_test_wire_close(&w);

    print_message("  disconnected after: silent %lld ms, header %lld ms, dribbling %lld ms, "
                  "after HELLO %lld ms (heartbeat %d ms)\n",
                  (long long)silent_ms, (long long)header_ms, (long long)dribble_ms,
                  (long long)hello_ms, HEARTBEAT_MS);
    // Not before three intervals; generously after (a loaded machine delays the tick).
    int64_t times[] = {silent_ms, header_ms, dribble_ms, hello_ms};
    for (int i = 0; i < 4; i++) {
        assert_true(times[i] >= 3 * HEARTBEAT_MS - 50);
        assert_true(times[i] < 3 * HEARTBEAT_MS + 4000);
    }
    broker_down(&b, "slowloris");
}

static void
test_produce_beyond_credit_is_cut_off_others_unaffected(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    sl_test_wire bad;
    assert_int_equal(sl_test_wire_open(&bad, b.port, 1), 0);
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(&bad, 1, "fz", 0, 0, &pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&bad, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    uint64_t credit = f.u.credit.granted_total_bytes;
    // One frame larger than the whole credit (but within the frame size): a violation from its
    // header alone, whatever CREDIT the broker sends meanwhile (none: nothing is stored).
    uint32_t count = 100;
    size_t len = produce_frame(1, pid, 0, count, SL_ACKS_LOG);
    // Bounded: doubling from 100 records reaches any credit below the frame size in a few steps.
    for (int i = 0; i < 12 && len <= credit; i++) {
        count *= 2;
        len = produce_frame(1, pid, 0, count, SL_ACKS_LOG);
    }
    assert_true(len > credit && len < (1u << 20) - 1024);
    assert_int_equal(sl_test_wire_send(&bad, frame_buf, len), 0);
    uint64_t sent = len;
    uint32_t within = 0;
    int64_t t0 = sl_test_now_ns();

    // During the grace period a well-behaved client produces and consumes normally.
    round_trip(&b, 500);
    round_trip(&b, 500);
    int64_t good_ms = (sl_test_now_ns() - t0) / 1000000;

    // The violator is told why and disconnected after the grace period, not before.
    sl_frame e;
    int rc = SL_OK;
    // Bounded: CREDIT/ACK frames queued before the violation, then the ERROR.
    for (int i = 0; i < 1000; i++) {
        rc = sl_test_wire_recv(&bad, &e, 5000);
        if (rc != SL_OK || e.header.type == SL_FRAME_ERROR) {
            break;
        }
    }
    int64_t cut_ms = (sl_test_now_ns() - t0) / 1000000;
    assert_int_equal(rc, SL_OK);
    assert_int_equal(e.header.type, SL_FRAME_ERROR);
    assert_int_equal(e.u.error.code, sl_proto_code_from_status(SL_EPROTO));
    assert_non_null(memmem(e.u.error.message.data, e.u.error.message.size, "credit", 6));
    // Bounded: a few frames at most before the close.
    for (int i = 0; i < 1000 && rc == SL_OK; i++) {
        rc = sl_test_wire_recv(&bad, &e, 5000);
    }
    assert_int_equal(rc, SL_ECLOSED);
    sl_test_wire_close(&bad);
    print_message("  credit %llu B, sent %llu B; good client done in %lld ms; violator cut off "
                  "after %lld ms (grace %d ms)\n",
                  (unsigned long long)credit, (unsigned long long)sent, (long long)good_ms,
                  (long long)cut_ms, CREDIT_GRACE_MS);
    assert_true(cut_ms >= CREDIT_GRACE_MS - 100);

    // What was sent within the credit was stored; the frame beyond it was not.
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    assert_int_equal(sl_test_wire_open_consume(&w, 3, "fz", 0), 0);
    assert_int_equal(sl_test_wire_request(&w, 3, UINT32_MAX, UINT32_MAX), 0);
    uint64_t end = 0;
    // Bounded by the records stored; stops at the first quiet half second.
    while (sl_test_wire_expect(&w, SL_FRAME_DELIVER, &f, 500) == SL_OK) {
        end = f.u.deliver.end_offset;
    }
    assert_int_equal(end, within);
    sl_test_wire_close(&w);
    broker_down(&b, "credit violation");
}

// Valid frames of every client-to-broker kind, as templates for mutation.
static size_t
template_frame(uint64_t *rng, uint8_t *out, size_t cap)
{
    size_t len = 0;
    uint32_t sid = 1 + (uint32_t)(sl_test_rand(rng) % 4);
    int rc = SL_EINVAL;
    switch (sl_test_rand(rng) % 10) {
    case 0: {
        sl_proto_open_produce op = {.partition = (uint32_t)(sl_test_rand(rng) % 3),
                                    .topic = {.data = "fz", .size = 2}};
        rc = sl_proto_encode_open_produce(out, cap, sid, &op, &len);
        break;
    }
    case 1: {
        sl_proto_open_consume oc = {.partition = (uint32_t)(sl_test_rand(rng) % 3),
                                    .start_mode = SL_START_EARLIEST,
                                    .topic = {.data = "fz", .size = 2}};
        rc = sl_proto_encode_open_consume(out, cap, sid, &oc, &len);
        break;
    }
    case 2:
    case 3: {
        uint32_t seq = (uint32_t)(sl_test_rand(rng) % 50);
        size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), 0, seq,
                                          1 + (uint32_t)(sl_test_rand(rng) % 20), 30);
        sl_proto_produce p = {.acks = (uint8_t)(sl_test_rand(rng) % 4),
                              .first_seq = seq,
                              .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
        rc = sl_proto_encode_produce(out, cap, sid, &p, &len);
        break;
    }
    case 4: {
        sl_proto_request rq = {.records = sl_test_rand(rng) % 1000, .bytes = 1 << 16};
        rc = sl_proto_encode_request(out, cap, sid, &rq, &len);
        break;
    }
    case 5: {
        sl_proto_commit cm = {.offset = sl_test_rand(rng) % 100};
        rc = sl_proto_encode_commit(out, cap, sid, &cm, &len);
        break;
    }
    case 6: {
        sl_proto_error e = {.code = 0, .message = {.data = "bye", .size = 3}};
        rc = sl_proto_encode_stream_close(out, cap, sid, &e, &len);
        break;
    }
    case 7: {
        sl_proto_ping p = {.nonce = sl_test_rand(rng)};
        rc = sl_proto_encode_ping(out, cap, false, &p, &len);
        break;
    }
    case 8: {
        sl_proto_topic_request tr = {.correlation_id = 1, .topic = {.data = "fz", .size = 2}};
        uint8_t type = sl_test_rand(rng) % 2 ? SL_FRAME_DESCRIBE_TOPIC : SL_FRAME_STATS;
        rc = sl_proto_encode_topic_request(out, cap, type, &tr, &len);
        break;
    }
    default: {
        sl_proto_list_topics lt = {.correlation_id = 2, .max_entries = 10};
        rc = sl_proto_encode_list_topics(out, cap, &lt, &len);
        break;
    }
    }
    assert_int_equal(rc, SL_OK);
    return len;
}

// Flips, overwrites, truncates or extends a frame (or leaves it valid: one in four).
static size_t
mutate(uint64_t *rng, uint8_t *f, size_t len, size_t cap)
{
    switch (sl_test_rand(rng) % 8) {
    case 0:
    case 1: {
        int flips = 1 + (int)(sl_test_rand(rng) % 4);
        for (int i = 0; i < flips; i++) {
            f[sl_test_rand(rng) % len] ^= (uint8_t)(1u << (sl_test_rand(rng) % 8));
        }
        return len;
    }
    case 2:
        f[sl_test_rand(rng) % len] = (uint8_t)sl_test_rand(rng);
        return len;
    case 3: {
        // Interesting values in the length field or the type.
        static const uint32_t lens[] = {0, 1, 11, 12, 65535, 65536, 0x7fffffff, 0xffffffff};
        uint32_t l = lens[sl_test_rand(rng) % 8];
        if (sl_test_rand(rng) % 2) {
            memcpy(f, &l, 4);
        } else {
            f[4] = (uint8_t)sl_test_rand(rng);
        }
        return len;
    }
    case 4:
        return 1 + sl_test_rand(rng) % len; // truncated: the rest never comes
    case 5: {
        size_t extra = 1 + sl_test_rand(rng) % 64;
        if (len + extra > cap) {
            return len;
        }
        for (size_t i = 0; i < extra; i++) {
            f[len + i] = (uint8_t)sl_test_rand(rng);
        }
        return len + extra;
    }
    default:
        return len;
    }
}

typedef struct flood_conn {
    sl_test_wire w;
    int open;
    int frames;
} flood_conn;

static void
flood_open(flood_conn *c, uint16_t port)
{
    c->open = sl_test_wire_open(&c->w, port, 1) == 0;
    c->frames = 0;
    if (c->open) {
        // A broker that stops reading this connection must not block the flood.
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(c->w.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    } else {
        sl_test_wire_close(&c->w);
    }
}

static void
test_mutated_frame_flood(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    uint64_t rng = sl_test_seed();
    flood_conn conns[FLOOD_CONNS];
    for (int i = 0; i < FLOOD_CONNS; i++) {
        flood_open(&conns[i], b.port);
        assert_true(conns[i].open);
    }
    int64_t end = sl_test_now_ns() + (int64_t)FLOOD_SECONDS * 1000000000;
    uint64_t sent = 0;
    uint64_t reconnects = 0;
    uint64_t errors = 0;
    static uint8_t f[4096];
    // Bounded by time and frame count.
    for (int n = 0; n < FLOOD_FRAMES_MAX && sl_test_now_ns() < end; n++) {
        flood_conn *c = &conns[sl_test_rand(&rng) % FLOOD_CONNS];
        if (!c->open || c->frames >= FRAMES_PER_CONN) {
            if (c->open) {
                sl_test_wire_close(&c->w);
            }
            flood_open(c, b.port);
            reconnects++;
            if (!c->open) {
                continue;
            }
        }
        size_t len = template_frame(&rng, f, sizeof(f) - 64);
        len = mutate(&rng, f, len, sizeof(f));
        c->frames++;
        sent++;
        if (sl_test_wire_send(&c->w, f, len) != 0) {
            sl_test_wire_close(&c->w);
            c->open = 0;
            continue;
        }
        // Drain what the broker said; a connection-level ERROR or a close ends this connection.
        sl_frame fr;
        int rc;
        while ((rc = sl_test_wire_recv(&c->w, &fr, 0)) == SL_OK) {
            if (fr.header.type == SL_FRAME_ERROR) {
                errors++;
            }
        }
        if (rc != SL_ETIMEDOUT) {
            sl_test_wire_close(&c->w);
            c->open = 0;
        }
        if (n % 200 == 0) {
            assert_true(sl_test_broker_peak_rss_kb(&b) > 0); // still running
        }
    }
    for (int i = 0; i < FLOOD_CONNS; i++) {
        if (conns[i].open) {
            sl_test_wire_close(&conns[i].w);
        }
    }
    // Connections cut off for sending beyond their credit hold their slot for the grace period:
    // wait (bounded: 5 s) until the broker has room again.
    int64_t t0 = sl_test_now_ns();
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        sl_test_wire w;
        ok = sl_test_wire_open(&w, b.port, 1) == 0;
        sl_test_wire_close(&w);
        if (!ok) {
            usleep(100000);
        }
    }
    assert_true(ok);
    print_message("  flood: %llu mutated frames, %llu connection errors, %llu reconnects; "
                  "accepting again after %lld ms\n",
                  (unsigned long long)sent, (unsigned long long)errors,
                  (unsigned long long)reconnects, (long long)(sl_test_now_ns() - t0) / 1000000);
    assert_true(errors > 0);
    broker_down(&b, "flood");
}

static void
test_connections_beyond_the_maximum_are_refused(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    enum { EXTRA = 8 };
    sl_test_wire held[MAX_CONNECTIONS];
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        // The setup's connection may not be counted as closed yet (bounded: 2 s).
        int rc = -1;
        for (int k = 0; k < 40 && rc != 0; k++) {
            rc = sl_test_wire_open(&held[i], b.port, 1);
            if (rc != 0) {
                sl_test_wire_close(&held[i]);
                usleep(50000);
            }
        }
        assert_int_equal(rc, 0);
    }
    int refused = 0;
    for (int i = 0; i < EXTRA; i++) {
        sl_test_wire w;
        // The kernel completes the handshake; the broker then closes without HELLO_OK.
        if (sl_test_wire_open(&w, b.port, 1) != 0) {
            refused++;
        }
        sl_test_wire_close(&w);
    }
    assert_int_equal(refused, EXTRA);
    // The held ones still work.
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        assert_int_equal(sl_test_wire_ping(&held[i], 5000), 0);
    }
    for (int i = 0; i < MAX_CONNECTIONS / 2; i++) {
        sl_test_wire_close(&held[i]);
    }
    // Room again once the broker has seen the closes (bounded: 5 s).
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        sl_test_wire w;
        ok = sl_test_wire_open(&w, b.port, 1) == 0;
        sl_test_wire_close(&w);
        if (!ok) {
            usleep(100000);
        }
    }
    assert_true(ok);
    for (int i = MAX_CONNECTIONS / 2; i < MAX_CONNECTIONS; i++) {
        sl_test_wire_close(&held[i]);
    }
    broker_down(&b, "max connections");
}

static void
test_unknown_topics_partitions_and_streams(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    int enoent = sl_proto_code_from_status(SL_ENOENT);
    int erange = sl_proto_code_from_status(SL_ERANGE);
    assert_int_equal(sl_test_wire_open_produce(&w, 1, "nope", 0, 0, NULL), enoent);
    assert_int_equal(sl_test_wire_open_consume(&w, 2, "nope", 0), enoent);
    assert_int_equal(sl_test_wire_open_produce(&w, 3, "fz", 2, 0, NULL), erange);
    assert_int_equal(sl_test_wire_open_produce(&w, 3, "fz", 1000, 0, NULL), erange);
    assert_int_equal(sl_test_wire_open_consume(&w, 4, "fz", 7), erange);
    size_t len = 0;
    sl_proto_open_consume oc = {.partition = 0,
                                .start_mode = SL_START_OFFSET,
                                .start_offset = 99,
                                .topic = {.data = "fz", .size = 2}};
    assert_int_equal(sl_proto_encode_open_consume(frame_buf, sizeof(frame_buf), 5, &oc, &len),
                     SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_CLOSE, &f, 5000), SL_OK);
    assert_int_equal(f.u.error.code, erange);
    // Admin requests about unknown topics.
    sl_proto_topic_request tr = {.correlation_id = 77, .topic = {.data = "nope", .size = 4}};
    uint8_t admin[] = {SL_FRAME_DESCRIBE_TOPIC, SL_FRAME_DELETE_TOPIC, SL_FRAME_STATS};
    for (size_t i = 0; i < sizeof(admin); i++) {
        assert_int_equal(
            sl_proto_encode_topic_request(frame_buf, sizeof(frame_buf), admin[i], &tr, &len),
            SL_OK);
        assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
        assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_ADMIN_RESULT, &f, 5000), SL_OK);
        assert_int_equal(f.u.admin_result.correlation_id, 77);
        assert_int_equal(f.u.admin_result.status.code, enoent);
    }
    // Frames for streams that were never opened (or were just refused) are ignored, as the
    // protocol allows for a close that crossed them; the connection stays healthy.
    len = produce_frame(42, 1, 0, 5, SL_ACKS_LOG);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_request(&w, 43, 10, 1000), 0);
    sl_proto_error close = {.code = 0};
    assert_int_equal(sl_proto_encode_stream_close(frame_buf, sizeof(frame_buf), 44, &close, &len),
                     SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_ping(&w, 5000), 0);
    // A COMMIT beyond what was delivered closes that stream with ERANGE.
    assert_int_equal(sl_test_wire_open_consume(&w, 6, "fz", 0), 0);
    sl_proto_commit cm = {.offset = 5};
    assert_int_equal(sl_proto_encode_commit(frame_buf, sizeof(frame_buf), 6, &cm, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_CLOSE, &f, 5000), SL_OK);
    assert_int_equal(f.header.stream_id, 6);
    assert_int_equal(f.u.error.code, erange);
    // Opening a stream id that is already open breaks the protocol: a STREAM_CLOSE would claim the
    // open stream closed while the broker kept it. The connection is closed with a clear ERROR.
    assert_int_equal(sl_test_wire_open_consume(&w, 7, "fz", 0), 0);
    sl_proto_open_consume again = {
        .partition = 0, .start_mode = SL_START_EARLIEST, .topic = {.data = "fz", .size = 2}};
    assert_int_equal(sl_proto_encode_open_consume(frame_buf, sizeof(frame_buf), 7, &again, &len),
                     SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    expect_error_then_close(&w, SL_EPROTO, 3000);
    sl_test_wire_close(&w);

    // PRODUCE on a consume stream breaks the protocol: the connection is closed.
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    assert_int_equal(sl_test_wire_open_consume(&w, 8, "fz", 0), 0);
    len = produce_frame(8, 1, 0, 5, SL_ACKS_LOG);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    expect_error_then_close(&w, SL_EPROTO, 3000);
    sl_test_wire_close(&w);
    broker_down(&b, "unknown ids");
}

static void
test_corrupt_batch_crc_is_refused_and_not_stored(void **state)
{
    (void)state;
    static sl_test_broker b;
    broker_up(&b);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(&w, 1, "fz", 1, 0, &pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    size_t len = produce_frame(1, pid, 0, 10, SL_ACKS_LOG);
    // The last byte is inside the last record's value: the framing stays valid, the CRC fails.
    frame_buf[len - 1] ^= 0x20;
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_CLOSE, &f, 5000), SL_OK);
    assert_int_equal(f.header.stream_id, 1);
    assert_int_equal(f.u.error.code, sl_proto_code_from_status(SL_ECORRUPT));
    // The connection is fine, and nothing was stored in partition 1.
    assert_int_equal(sl_test_wire_open_consume(&w, 2, "fz", 1), 0);
    assert_int_equal(sl_test_wire_request(&w, 2, 100, 1 << 20), 0);
    assert_int_equal(sl_test_wire_recv(&w, &f, 500), SL_ETIMEDOUT);
    // A new produce stream for the same producer starts at sequence 0 again and works.
    assert_int_equal(sl_test_wire_open_produce(&w, 3, "fz", 1, pid, NULL), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    len = produce_frame(3, pid, 0, 10, SL_ACKS_LOG);
    assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_DELIVER, &f, 5000), SL_OK);
    assert_int_equal(f.u.deliver.first_offset, 0);
    assert_int_equal(f.u.deliver.end_offset, 10);
    sl_test_wire_close(&w);
    broker_down(&b, "corrupt crc");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_garbage_and_oversized_headers, teardown),
        cmocka_unit_test_teardown(test_slowloris_is_disconnected_after_three_heartbeats, teardown),
        cmocka_unit_test_teardown(test_produce_beyond_credit_is_cut_off_others_unaffected,
                                  teardown),
        cmocka_unit_test_teardown(test_mutated_frame_flood, teardown),
        cmocka_unit_test_teardown(test_connections_beyond_the_maximum_are_refused, teardown),
        cmocka_unit_test_teardown(test_unknown_topics_partitions_and_streams, teardown),
        cmocka_unit_test_teardown(test_corrupt_batch_crc_is_refused_and_not_stored, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
