// sluiced end to end over the wire protocol: topics, produce within credit, cumulative ACKs with
// offsets, consume with REQUEST never delivering more than asked, restart keeps acked data, and
// clear errors for unknown topics.
// ctest-labels: concurrent
// ctest-timeout: 120
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

static uint8_t frame_buf[2 * 1024 * 1024];
static uint8_t batch_buf[1024 * 1024];

// Sends what an encoder just wrote; len is read after the call (argument order is unspecified).
#define SEND_ENCODED(w, call)                                         \
    do {                                                              \
        size_t len_ = 0;                                              \
        size_t *len_out_ = &len_;                                     \
        assert_int_equal((call), SL_OK);                              \
        assert_int_equal(sl_test_wire_send((w), frame_buf, len_), 0); \
    } while (0)

static uint64_t producer_id;

static uint64_t
open_produce(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t partition)
{
    sl_proto_open_produce op = {.partition = partition,
                                .topic = {.data = topic, .size = (uint16_t)strlen(topic)}};
    SEND_ENCODED(w, sl_proto_encode_open_produce(frame_buf, sizeof(frame_buf), sid, &op, len_out_));
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(w, SL_FRAME_STREAM_OK, &f, 5000), SL_OK);
    assert_int_equal(f.header.stream_id, sid);
    assert_int_equal(f.u.stream_ok.kind, SL_STREAM_PRODUCE);
    producer_id = f.u.stream_ok.producer_id;
    assert_int_equal(sl_test_wire_expect(w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    return f.u.credit.granted_total_bytes;
}

// Produces count records (as batches of per_batch) and waits for their ACKs; checks the credit
// rule on every frame.
static void
produce_records(sl_test_wire *w, uint32_t sid, uint64_t *credit, uint64_t first_seq, uint32_t count,
                uint32_t per_batch, uint8_t acks)
{
    uint64_t sent_bytes = 0;
    uint32_t seq = (uint32_t)first_seq;
    uint32_t done = 0;
    while (done < count) {
        uint32_t n = count - done < per_batch ? count - done : per_batch;
        size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), producer_id,
                                          first_seq + done, n, 100);
        assert_true(blen > 0);
        sl_proto_produce p = {.acks = acks,
                              .first_seq = seq,
                              .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
        size_t len = 0;
        assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), sid, &p, &len),
                         SL_OK);
        // Wait for credit when this frame would exceed it (bounded by the recv timeout).
        while (sent_bytes + len > *credit) {
            sl_frame f;
            int rc = sl_test_wire_recv(w, &f, 10000);
            assert_int_equal(rc, SL_OK);
            if (f.header.type == SL_FRAME_CREDIT) {
                assert_true(f.u.credit.granted_total_bytes >= *credit);
                *credit = f.u.credit.granted_total_bytes;
            }
        }
        assert_int_equal(sl_test_wire_send(w, frame_buf, len), 0);
        sent_bytes += len;
        seq += n;
        done += n;
    }
    // Every record acknowledged, cumulatively.
    uint32_t acked_end = (uint32_t)first_seq;
    while (acked_end != (uint32_t)(first_seq + count)) {
        sl_frame f;
        assert_int_equal(sl_test_wire_recv(w, &f, 10000), SL_OK);
        if (f.header.type == SL_FRAME_CREDIT) {
            *credit = f.u.credit.granted_total_bytes;
        } else if (f.header.type == SL_FRAME_ACK) {
            assert_true((int32_t)(f.u.ack.seq_end - acked_end) > 0);
            acked_end = f.u.ack.seq_end;
            assert_true(f.u.ack.acks >= acks);
        } else {
            fail_msg("unexpected frame %s", sl_proto_frame_name(f.header.type));
        }
    }
}

// Consumes from offset 0 with REQUESTs of `request` records until `count` arrived; checks values.
// bytes_per_record: byte demand sent with each REQUEST per record asked for (0: 1 MiB a request),
// so that tight byte demand checks the broker counts bytes as the consumer does.
static void
consume_and_check_bytes(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t count,
                        uint32_t request, uint32_t bytes_per_record)
{
    sl_proto_open_consume oc = {.partition = 0,
                                .start_mode = SL_START_EARLIEST,
                                .topic = {.data = topic, .size = (uint16_t)strlen(topic)}};
    SEND_ENCODED(w, sl_proto_encode_open_consume(frame_buf, sizeof(frame_buf), sid, &oc, len_out_));
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(w, SL_FRAME_STREAM_OK, &f, 5000), SL_OK);
    assert_int_equal(f.u.stream_ok.start_offset, 0);
    uint64_t next = 0;
    while (next < count) {
        sl_proto_request rq = {.records = request,
                               .bytes =
                                   bytes_per_record == 0 ? 1u << 20 : request * bytes_per_record};
        SEND_ENCODED(w, sl_proto_encode_request(frame_buf, sizeof(frame_buf), sid, &rq, len_out_));
        uint64_t got = 0;
        while (got < request && next < count) {
            assert_int_equal(sl_test_wire_expect(w, SL_FRAME_DELIVER, &f, 10000), SL_OK);
            const sl_proto_deliver *d = &f.u.deliver;
            assert_int_equal(d->first_offset, next);
            assert_true(d->end_offset - d->first_offset <= request - got); // never more than asked
            sl_proto_cursor cur;
            sl_proto_batches_init(&cur, &d->batches);
            const uint8_t *batch;
            sl_batch_header h;
            while (sl_proto_batches_next(&cur, &batch, &h) == SL_OK) {
                sl_batch_header full;
                assert_int_equal(sl_batch_validate(batch, h.length, &full), SL_OK);
                sl_batch_iter it;
                assert_int_equal(sl_batch_iter_init(&it, batch, h.length), SL_OK);
                sl_record r;
                uint64_t off;
                while (sl_batch_iter_next(&it, &r, &off) == SL_OK) {
                    if (off < d->first_offset || off >= d->end_offset) {
                        continue;
                    }
                    assert_int_equal(off, next);
                    char expect[32];
                    int n = snprintf(expect, sizeof(expect), "%llu ", (unsigned long long)off);
                    assert_memory_equal(r.value, expect, (size_t)n);
                    next++;
                }
            }
            got += d->end_offset - d->first_offset;
        }
    }
    assert_int_equal(next, count);
}

static void
consume_and_check(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t count,
                  uint32_t request)
{
    consume_and_check_bytes(w, sid, topic, count, request, 0);
}

static void
test_broker_round_trip_and_restart(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    const char *args[] = {"--fsync", "always", NULL};
    assert_int_equal(sl_test_broker_start(&b, args), 0);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "orders", 1, 0, 0), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "orders", 1, 0, 0),
                     sl_proto_code_from_status(SL_EEXIST));
    // A name the encoder refuses never reaches the broker (the broker checks it again anyway).
    assert_true(sl_test_wire_create_topic(&w, "bad name!", 1, 0, 0) != 0);
    uint64_t credit = open_produce(&w, 1, "orders", 0);
    assert_true(credit > 0);
    produce_records(&w, 1, &credit, 0, 5000, 100, SL_ACKS_FSYNC);
    consume_and_check(&w, 2, "orders", 5000, 777);
    // Small requests inside 100-record batches, with byte demand just above what 7 records of a
    // trimmed batch take: the broker must trim and count the bytes it sent, or this stalls.
    consume_and_check_bytes(&w, 3, "orders", 700, 7, 300);
    sl_test_wire_close(&w);

    // Restart on the same data dir: every acked record is still there.
    assert_int_equal(sl_test_broker_stop(&b), 0);
    assert_int_equal(sl_test_broker_start(&b, args), 0);
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    consume_and_check(&w, 5, "orders", 5000, 5000);
    sl_test_wire_close(&w);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

static void
test_broker_unknown_topic_is_a_clear_stream_error(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    sl_proto_open_produce op = {.partition = 0, .topic = {.data = "nope", .size = 4}};
    SEND_ENCODED(&w, sl_proto_encode_open_produce(frame_buf, sizeof(frame_buf), 9, &op, len_out_));
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_CLOSE, &f, 5000), SL_OK);
    assert_int_equal(f.u.error.code, sl_proto_code_from_status(SL_ENOENT));
    assert_non_null(memmem(f.u.error.message.data, f.u.error.message.size, "unknown topic", 13));
    // The connection is still usable.
    assert_int_equal(sl_test_wire_create_topic(&w, "yes", 1, 0, 0), 0);
    sl_test_wire_close(&w);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_round_trip_and_restart),
        cmocka_unit_test(test_broker_unknown_topic_is_a_clear_stream_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
