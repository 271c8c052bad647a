// Restart after a crash: sluiced with --fsync always is killed with SIGKILL at a random moment
// while a producer sends with acks=fsync; after a restart on the same data dir every acknowledged
// record is there, in order, exactly once (earlier rounds included). 3 rounds (SL_SOAK: 12).
// ctest-labels: concurrent
// ctest-timeout: 240
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

#define ROUNDS_DEFAULT    3
#define ROUNDS_SOAK       12
#define RECORDS_PER_BATCH 20u
#define VALUE_BYTES       64u
// The kill comes between these many ms after production started.
#define KILL_AFTER_MIN_MS 100
#define KILL_AFTER_MAX_MS 700
// Bounds the production loop even if the broker never acks.
#define FRAMES_MAX 200000

static uint8_t batch_buf[64 * 1024];
static uint8_t frame_buf[80 * 1024];

static const char *const BROKER_ARGS[] = {"--fsync", "always", "--log-level", "warn", NULL};

typedef struct acked {
    uint32_t seq_end; // cumulative: every record before it was acked with acks=fsync
    uint32_t acks_seen;
} acked;

// Handles one frame on the producer connection; fails the test on anything suspicious.
static void
producer_frame(const sl_frame *f, uint64_t *credit, acked *a)
{
    switch (f->header.type) {
    case SL_FRAME_CREDIT:
        assert_true(f->u.credit.granted_total_bytes >= *credit); // cumulative, never shrinks
        *credit = f->u.credit.granted_total_bytes;
        break;
    case SL_FRAME_ACK:
        assert_int_equal(f->u.ack.acks, SL_ACKS_FSYNC);
        assert_true((int32_t)(f->u.ack.seq_end - a->seq_end) > 0);
        // One producer on a fresh topic: record seq s is stored at offset s.
        assert_int_equal(f->u.ack.last_offset, (uint64_t)f->u.ack.seq_end - 1);
        assert_int_equal(f->u.ack.base_offset, (uint64_t)a->seq_end);
        a->seq_end = f->u.ack.seq_end;
        a->acks_seen++;
        break;
    case SL_FRAME_THROTTLE:
        break;
    default:
        fail_msg("unexpected %s on the producer connection", sl_proto_frame_name(f->header.type));
    }
}

// Produces until kill_at_ns, then SIGKILLs the broker and reads the ACKs that were already on
// their way (an ACK the client received is a promise, even if the broker died right after).
static void
produce_then_kill(sl_test_broker *b, const char *topic, int64_t kill_at_ns, acked *a)
{
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b->port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, topic, 1, 0, 0), 0);
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(&w, 1, topic, 0, 0, &pid), 0);
    uint64_t credit = 0;
    uint64_t sent_bytes = 0;
    uint32_t seq = 0;
    sl_frame f;
    for (int i = 0; i < FRAMES_MAX && sl_test_now_ns() < kill_at_ns; i++) {
        size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), pid, seq, RECORDS_PER_BATCH,
                                          VALUE_BYTES);
        assert_true(blen > 0);
        sl_proto_produce p = {.acks = SL_ACKS_FSYNC,
                              .first_seq = seq,
                              .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
        size_t len = 0;
        assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), 1, &p, &len), SL_OK);
        while (sl_test_wire_recv(&w, &f, 0) == SL_OK) {
            producer_frame(&f, &credit, a);
        }
        if (sent_bytes + len > credit) {
            if (sl_test_wire_recv(&w, &f, 20) == SL_OK) {
                producer_frame(&f, &credit, a);
            }
            continue;
        }
        assert_int_equal(sl_test_wire_send(&w, frame_buf, len), 0);
        sent_bytes += len;
        seq += RECORDS_PER_BATCH;
    }
    sl_test_broker_kill(b);
    // Bounded: the socket is closed by the kernel once the buffered bytes are read.
    int rc;
    while ((rc = sl_test_wire_recv(&w, &f, 2000)) == SL_OK) {
        producer_frame(&f, &credit, a);
    }
    assert_int_equal(rc, SL_ECLOSED);
    sl_test_wire_close(&w);
    print_message("  %s: sent %u records, %u acked by fsync in %u ACKs\n", topic, seq, a->seq_end,
                  a->acks_seen);
}

typedef struct check {
    uint64_t next; // next expected offset (== seq)
    int bad;
} check;

static int
check_record(void *arg, uint64_t offset, const sl_record *r)
{
    check *c = arg;
    uint64_t seq = 0;
    if (offset != c->next || sl_test_parse_value(r, &seq, NULL) != 0 || seq != offset) {
        fprintf(stderr, "record at offset %llu (expected %llu) has seq %llu\n",
                (unsigned long long)offset, (unsigned long long)c->next, (unsigned long long)seq);
        c->bad++;
        return 1;
    }
    c->next++;
    return 0;
}

// Consumes the whole partition and checks offset == seq for every record: in order, no gaps, no
// duplicates. Returns the record count.
static uint64_t
consume_all(sl_test_wire *w, uint32_t sid, const char *topic)
{
    assert_int_equal(sl_test_wire_open_consume(w, sid, topic, 0), 0);
    assert_int_equal(sl_test_wire_request(w, sid, UINT32_MAX, UINT32_MAX), 0);
    check c = {0};
    sl_frame f;
    // Bounded by the log's size: each DELIVER advances; an empty log delivers nothing.
    for (;;) {
        int rc = sl_test_wire_recv(w, &f, c.next == 0 ? 500 : 5000);
        if (rc == SL_ETIMEDOUT && c.next == 0) {
            break; // empty partition
        }
        assert_int_equal(rc, SL_OK);
        if (f.header.type != SL_FRAME_DELIVER || f.header.stream_id != sid) {
            continue;
        }
        assert_int_equal(f.u.deliver.first_offset, c.next);
        assert_int_equal(sl_test_deliver_foreach(&f.u.deliver, check_record, &c), 0);
        assert_int_equal(c.bad, 0);
        if (c.next >= f.u.deliver.log_end_offset) {
            break;
        }
    }
    return c.next;
}

static void
test_broker_kill9_keeps_every_fsync_acked_record(void **state)
{
    (void)state;
    uint64_t rng = sl_test_seed();
    int rounds = getenv("SL_SOAK") != NULL ? ROUNDS_SOAK : ROUNDS_DEFAULT;
    acked acks[ROUNDS_SOAK];
    memset(acks, 0, sizeof(acks));
    sl_test_broker b = {0};
    for (int r = 0; r < rounds; r++) {
        assert_int_equal(sl_test_broker_start(&b, BROKER_ARGS), 0);
        char topic[32];
        snprintf(topic, sizeof(topic), "crash%d", r);
        int64_t after_ms = KILL_AFTER_MIN_MS +
                           (int64_t)(sl_test_rand(&rng) % (KILL_AFTER_MAX_MS - KILL_AFTER_MIN_MS));
        produce_then_kill(&b, topic, sl_test_now_ns() + after_ms * 1000000, &acks[r]);

        // Restart on the same directory: every round so far holds at least what was acked.
        assert_int_equal(sl_test_broker_start(&b, BROKER_ARGS), 0);
        sl_test_wire w;
        assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
        for (int k = 0; k <= r; k++) {
            char name[32];
            snprintf(name, sizeof(name), "crash%d", k);
            uint64_t have = consume_all(&w, (uint32_t)(100 + k), name);
            if (k == r) {
                print_message("  after restart %d: %s holds %llu records, %u were acked\n", r, name,
                              (unsigned long long)have, acks[k].seq_end);
            }
            assert_true(have >= acks[k].seq_end);
        }
        sl_test_wire_close(&w);
        assert_int_equal(sl_test_broker_stop(&b), 0);
    }
    sl_test_broker_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_kill9_keeps_every_fsync_acked_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
