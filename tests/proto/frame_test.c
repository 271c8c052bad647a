// Wire protocol frames: round trip of every frame type, canonical re-encoding, every truncation
// needing more bytes or failing cleanly, oversized lengths refused from the header alone, unknown
// and reserved types named, encoders refusing what decoders would refuse, random mutations.
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#define MAX_FRAME  SL_PROTO_FRAME_SIZE_DEFAULT
#define SAMPLE_CAP 8192u

#define STR(s) ((sl_proto_str){.data = (s), .size = (uint16_t)(sizeof(s) - 1)})

// Builds a batch of record_count small records for producer 7 starting at seq, at base_offset.
static size_t
make_batch(uint8_t *buf, size_t cap, uint32_t record_count, uint32_t seq, uint64_t base_offset)
{
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    sl_batch_builder_set_producer(&b, 7, seq);
    for (uint32_t i = 0; i < record_count; i++) {
        sl_record r = {
            .key = "k", .key_size = 1, .value = "value", .value_size = 5, .timestamp_us = 1000 + i};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    }
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    sl_batch_set_base_offset(buf, base_offset);
    return len;
}

// Two batches back to back: 3 records from seq 10 at offset 100, 2 records from seq 13 at 103.
static uint8_t g_batches[1024];
static size_t g_batches_size;

static sl_proto_batches
sample_batches(void)
{
    size_t a = make_batch(g_batches, sizeof(g_batches), 3, 10, 100);
    size_t b = make_batch(g_batches + a, sizeof(g_batches) - a, 2, 13, 103);
    g_batches_size = a + b;
    return (sl_proto_batches){.data = g_batches, .size_bytes = a + b, .batch_count = 2};
}

static const sl_proto_topic_entry g_topics[] = {{STR("alpha"), 1}, {STR("beta.2"), 12}};
static const sl_proto_stat g_stats[] = {{STR("sluice_bytes_in_total"), 123456789},
                                        {STR("sluice_streams{kind=\"produce\"}"), 3}};
static const sl_proto_partition_info g_parts[] = {{0, 100, 90, 4096}, {5, 7, 7, 0}};

static const uint32_t g_assigned[] = {0, 2, 5};
static const sl_proto_group_entry g_group_entries[] = {{STR("billing"), STR("orders"), 3, 2, 6}};
static const sl_proto_group_member_info g_members[] = {
    {STR("m-1-1"), STR("127.0.0.1:5000"), 6000, 1000}, {STR("m-2-1"), STR(""), 1000, 10}};
static const sl_proto_group_partition_info g_group_parts[] = {
    {0, 0, SL_STALL_ACK_PENDING, 10, 20, 30, 1700000000000000},
    {1, SL_PROTO_OWNER_NONE, 0, 0, 0, 0, 0}};
#define GROUP_SAMPLE_COUNT 8

// Group frames (version 2): samples 27.. of encode_sample.
static int
encode_group_sample(int index, uint8_t *buf, size_t cap, size_t *len)
{
    switch (index - 27) {
    case 0: {
        sl_proto_join_group j = {
            7, 1000, 500, 100, 3, SL_OFFSET_RESET_LATEST, STR("billing"), STR("orders"), STR("")};
        return sl_proto_encode_join_group(buf, cap, &j, len);
    }
    case 1: {
        sl_proto_group_member m = {8, 3, STR("billing"), STR("orders"), STR("m-1-1")};
        return sl_proto_encode_group_member(buf, cap, SL_FRAME_GROUP_HEARTBEAT, &m, len);
    }
    case 2: {
        sl_proto_group_member m = {9, 0, STR("billing"), STR("orders"), STR("m-1-1")};
        return sl_proto_encode_group_member(buf, cap, SL_FRAME_LEAVE_GROUP, &m, len);
    }
    case 3: {
        sl_proto_assign a = {7, 3,          1000, STR("billing"), STR("orders"), STR("m-1-1"),
                             3, g_assigned, NULL};
        return sl_proto_encode_assign(buf, cap, &a, len);
    }
    case 4:
        return sl_proto_encode_list_groups(buf, cap, &(sl_proto_list_groups){10, 100}, len);
    case 5: {
        sl_proto_describe_group d = {11, STR("billing"), STR("orders")};
        return sl_proto_encode_describe_group(buf, cap, &d, len);
    }
    case 6: {
        sl_proto_group_list l = {
            .correlation_id = 10, .entry_count = 1, .entries = g_group_entries};
        return sl_proto_encode_group_list(buf, cap, &l, len);
    }
    case 7: {
        sl_proto_group_info g = {.correlation_id = 11,
                                 .generation = 3,
                                 .rebalances_total = 4,
                                 .redeliveries_total = 5,
                                 .dlq_records_total = 1,
                                 .group = STR("billing"),
                                 .topic = STR("orders"),
                                 .member_count = 2,
                                 .partition_count = 2,
                                 .members = g_members,
                                 .partitions = g_group_parts};
        return sl_proto_encode_group_info(buf, cap, &g, len);
    }
    default:
        fail_msg("no sample %d", index);
    }
    return SL_EINVAL;
}

// Encodes sample frame number index (0..SAMPLE_COUNT) into buf; returns its length.
static size_t
encode_sample(int index, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    int err = SL_EINVAL;
    sl_proto_topic_config cfg = {.partition_count = 2,
                                 .max_backlog_bytes = 1u << 30,
                                 .max_lag_ms = 60000,
                                 .full_policy = SL_FULL_REJECT,
                                 .retention_bytes = 1ull << 40,
                                 .retention_ms = 86400000};
    switch (index) {
    case 0: {
        sl_proto_hello h = {1, 1, MAX_FRAME, 5000, STR("client-1")};
        err = sl_proto_encode_hello(buf, cap, &h, &len);
        break;
    }
    case 1: {
        sl_proto_hello_ok h = {1, 1u << 20, 5000, 64, STR("broker-a")};
        err = sl_proto_encode_hello_ok(buf, cap, &h, &len);
        break;
    }
    case 2:
        err = sl_proto_encode_ping(buf, cap, false, &(sl_proto_ping){0x1122334455667788u}, &len);
        break;
    case 3:
        err = sl_proto_encode_ping(buf, cap, true, &(sl_proto_ping){42}, &len);
        break;
    case 4: {
        sl_proto_error e = {sl_proto_code_from_status(SL_ENOENT), 0, 0, STR("no such topic")};
        err = sl_proto_encode_error(buf, cap, 0, &e, &len);
        break;
    }
    case 5: {
        sl_proto_goaway g = {0, 9, 1500, STR("broker shutting down")};
        err = sl_proto_encode_goaway(buf, cap, &g, &len);
        break;
    }
    case 6: {
        sl_proto_open_produce o = {SL_PROTO_PARTITION_ANY, 7, STR("orders")};
        err = sl_proto_encode_open_produce(buf, cap, 1, &o, &len);
        break;
    }
    case 7: {
        sl_proto_open_consume o = {3, SL_START_OFFSET, 500, STR("orders"), STR("")};
        err = sl_proto_encode_open_consume(buf, cap, 2, &o, &len);
        break;
    }
    case 8: {
        sl_proto_stream_ok s = {SL_STREAM_PRODUCE, 0, 7, 0, 10, 1u << 20};
        err = sl_proto_encode_stream_ok(buf, cap, 1, &s, &len);
        break;
    }
    case 9: {
        sl_proto_error e = {0, SL_THROTTLE_NONE, 0, STR("")};
        err = sl_proto_encode_stream_close(buf, cap, 3, &e, &len);
        break;
    }
    case 10: {
        sl_proto_produce p = {SL_ACKS_LOG, 10, sample_batches()};
        err = sl_proto_encode_produce(buf, cap, 1, &p, &len);
        break;
    }
    case 11:
        err = sl_proto_encode_credit(buf, cap, 1, &(sl_proto_credit){65536}, &len);
        break;
    case 12: {
        sl_proto_ack a = {15, SL_ACKS_LOG, 100, 104};
        err = sl_proto_encode_ack(buf, cap, 1, &a, &len);
        break;
    }
    case 13: {
        sl_proto_throttle t = {SL_THROTTLE_DISK_BUDGET, 250, STR("disk budget 95% full")};
        err = sl_proto_encode_throttle(buf, cap, 1, &t, &len);
        break;
    }
    case 14:
        err = sl_proto_encode_request(buf, cap, 2, &(sl_proto_request){100, 1u << 20}, &len);
        break;
    case 15: {
        sl_proto_deliver d = {101, 105, 200, sample_batches(), 0};
        err = sl_proto_encode_deliver(buf, cap, 2, &d, &len);
        break;
    }
    case 16:
        err = sl_proto_encode_commit(buf, cap, 2, &(sl_proto_commit){105}, &len);
        break;
    case 17: {
        sl_proto_create_topic c = {77, cfg, STR("orders")};
        err = sl_proto_encode_create_topic(buf, cap, &c, &len);
        break;
    }
    case 18:
    case 19:
    case 20: {
        uint8_t types[] = {SL_FRAME_DELETE_TOPIC, SL_FRAME_DESCRIBE_TOPIC, SL_FRAME_STATS};
        sl_proto_topic_request t = {78, index == 20 ? STR("") : STR("orders")};
        err = sl_proto_encode_topic_request(buf, cap, types[index - 18], &t, &len);
        break;
    }
    case 21: {
        sl_proto_list_topics l = {79, 100, STR("alpha")};
        err = sl_proto_encode_list_topics(buf, cap, &l, &len);
        break;
    }
    case 22: {
        sl_proto_admin_result a = {
            80, {sl_proto_code_from_status(SL_EEXIST), 0, 0, STR("topic orders exists")}};
        err = sl_proto_encode_admin_result(buf, cap, &a, &len);
        break;
    }
    case 23: {
        sl_proto_topic_list l = {
            .correlation_id = 79, .more = true, .entry_count = 2, .entries = g_topics};
        err = sl_proto_encode_topic_list(buf, cap, &l, &len);
        break;
    }
    case 24: {
        sl_proto_topic_info t = {
            .correlation_id = 81, .config = cfg, .topic = STR("orders"), .partitions = g_parts};
        err = sl_proto_encode_topic_info(buf, cap, &t, &len);
        break;
    }
    case 25: {
        sl_proto_stats_result s = {.correlation_id = 82, .entry_count = 2, .entries = g_stats};
        err = sl_proto_encode_stats_result(buf, cap, &s, &len);
        break;
    }
    case 26: {
        sl_proto_throttle t = {SL_THROTTLE_MEMORY_BUDGET, 10, STR("")};
        err = sl_proto_encode_throttle(buf, cap, 0, &t, &len);
        break;
    }
    default:
        err = encode_group_sample(index, buf, cap, &len);
    }
    assert_int_equal(err, SL_OK);
    return len;
}

#define SAMPLE_COUNT (27 + GROUP_SAMPLE_COUNT)

// Decodes a frame from an exact-size heap copy, so ASan catches any read past the end.
static int
decode_exact(const uint8_t *src, size_t len, sl_frame *f, size_t *consumed, const char **why)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, src, len);
    }
    int err = sl_proto_decode(copy, len, MAX_FRAME, f, consumed, why);
    free(copy);
    return err;
}

static void
test_every_sample_decodes_and_reencodes_identically(void **state)
{
    (void)state;
    bool seen[256] = {false};
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        uint8_t buf[SAMPLE_CAP];
        uint8_t again[SAMPLE_CAP];
        size_t len = encode_sample(i, buf, sizeof(buf));
        sl_frame f;
        size_t consumed = 0;
        const char *why = NULL;
        assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, &why), SL_OK);
        assert_null(why);
        assert_int_equal(consumed, len);
        assert_int_equal(f.header.length, len - SL_PROTO_FRAME_HEADER_BYTES);
        seen[f.header.type] = true;
        size_t len2 = 0;
        assert_int_equal(sl_proto_encode(again, sizeof(again), &f, &len2), SL_OK);
        assert_int_equal(len2, len);
        assert_memory_equal(again, buf, len);
    }
    // Every frame type in the table has a sample.
#define SL__SEEN(name, code, scope) assert_true(seen[code]);
    SL_PROTO_FRAME_MAP(SL__SEEN)
#undef SL__SEEN
}

static void
test_round_trip_fields(void **state)
{
    (void)state;
    uint8_t buf[SAMPLE_CAP];
    sl_frame f;
    size_t consumed;
    size_t len = encode_sample(0, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    assert_int_equal(f.header.type, SL_FRAME_HELLO);
    assert_int_equal(f.u.hello.max_frame_bytes, MAX_FRAME);
    assert_int_equal(f.u.hello.heartbeat_ms, 5000);
    assert_int_equal(f.u.hello.client_id.size, 8);
    assert_memory_equal(f.u.hello.client_id.data, "client-1", 8);

    len = encode_sample(10, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    assert_int_equal(f.header.stream_id, 1);
    assert_int_equal(f.u.produce.acks, SL_ACKS_LOG);
    assert_int_equal(f.u.produce.first_seq, 10);
    assert_int_equal(f.u.produce.batches.batch_count, 2);
    assert_int_equal(f.u.produce.batches.record_count, 5);
    assert_int_equal(f.u.produce.batches.size_bytes, g_batches_size);
    // The batches are a view into the frame, byte for byte as given.
    assert_ptr_equal(f.u.produce.batches.data, buf + SL_PROTO_FRAME_HEADER_BYTES + 8);
    assert_memory_equal(f.u.produce.batches.data, g_batches, g_batches_size);
    sl_proto_cursor c;
    sl_proto_batches_init(&c, &f.u.produce.batches);
    const uint8_t *batch;
    sl_batch_header h;
    uint32_t records = 0;
    for (int n = 0; n < 4 && sl_proto_batches_next(&c, &batch, &h) == SL_OK; n++) {
        assert_int_equal(sl_batch_validate(batch, h.length, &h), SL_OK);
        records += h.record_count;
    }
    assert_int_equal(records, 5);
    assert_int_equal(sl_proto_batches_next(&c, &batch, &h), SL_ENOENT);

    len = encode_sample(15, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    assert_int_equal(f.u.deliver.first_offset, 101);
    assert_int_equal(f.u.deliver.end_offset, 105);
    assert_int_equal(f.u.deliver.log_end_offset, 200);

    len = encode_sample(23, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    assert_true(f.u.topic_list.more);
    sl_proto_topic_list_init(&c, &f.u.topic_list);
    sl_proto_topic_entry e;
    assert_int_equal(sl_proto_topic_list_next(&c, &e), SL_OK);
    assert_int_equal(e.partition_count, 1);
    assert_int_equal(sl_proto_topic_list_next(&c, &e), SL_OK);
    assert_int_equal(e.name.size, 6);
    assert_memory_equal(e.name.data, "beta.2", 6);
    assert_int_equal(e.partition_count, 12);
    assert_int_equal(sl_proto_topic_list_next(&c, &e), SL_ENOENT);

    len = encode_sample(24, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    assert_int_equal(f.u.topic_info.config.full_policy, SL_FULL_REJECT);
    assert_int_equal(f.u.topic_info.config.retention_ms, 86400000);
    sl_proto_partition_info p;
    sl_proto_topic_info_partition(&f.u.topic_info, 1, &p);
    assert_int_equal(p.log_start_offset, 5);
    assert_int_equal(p.durable_offset, 7);

    len = encode_sample(25, buf, sizeof(buf));
    assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
    sl_proto_stats_init(&c, &f.u.stats_result);
    sl_proto_stat s;
    assert_int_equal(sl_proto_stats_next(&c, &s), SL_OK);
    assert_int_equal(s.value, 123456789);
    assert_int_equal(sl_proto_stats_next(&c, &s), SL_OK);
    assert_int_equal(sl_proto_stats_next(&c, &s), SL_ENOENT);
}

// Per-type decoders read the same payloads as the generic one.
static void
test_per_type_decoders_match(void **state)
{
    (void)state;
    uint8_t buf[SAMPLE_CAP];
    const uint8_t *payload = buf + SL_PROTO_FRAME_HEADER_BYTES;
    size_t len = encode_sample(12, buf, sizeof(buf));
    sl_proto_ack a;
    assert_int_equal(sl_proto_decode_ack(payload, len - SL_PROTO_FRAME_HEADER_BYTES, &a), SL_OK);
    assert_int_equal(a.seq_end, 15);
    assert_int_equal(a.last_offset, 104);
    assert_int_equal(sl_proto_decode_ack(payload, len - SL_PROTO_FRAME_HEADER_BYTES - 1, &a),
                     SL_EPROTO);
    len = encode_sample(13, buf, sizeof(buf));
    sl_proto_throttle t;
    assert_int_equal(sl_proto_decode_throttle(payload, len - SL_PROTO_FRAME_HEADER_BYTES, &t),
                     SL_OK);
    assert_int_equal(t.reason, SL_THROTTLE_DISK_BUDGET);
    assert_int_equal(t.retry_after_ms, 250);
    len = encode_sample(19, buf, sizeof(buf));
    sl_proto_topic_request r;
    assert_int_equal(sl_proto_decode_topic_request(SL_FRAME_DESCRIBE_TOPIC, payload,
                                                   len - SL_PROTO_FRAME_HEADER_BYTES, &r),
                     SL_OK);
    assert_int_equal(r.correlation_id, 78);
    len = encode_sample(14, buf, sizeof(buf));
    sl_proto_request q;
    assert_int_equal(sl_proto_decode_request(payload, len - SL_PROTO_FRAME_HEADER_BYTES, &q),
                     SL_OK);
    assert_int_equal(q.records, 100);
    assert_int_equal(q.bytes, 1u << 20);
}

static void
test_every_truncation_needs_more_or_fails(void **state)
{
    (void)state;
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        uint8_t buf[SAMPLE_CAP];
        size_t len = encode_sample(i, buf, sizeof(buf));
        sl_frame f;
        size_t consumed = 0;
        // Fewer bytes than the frame: wait for more, consume nothing.
        for (size_t k = 0; k < len; k++) {
            assert_int_equal(decode_exact(buf, k, &f, &consumed, NULL), SL_EAGAIN);
        }
        // A frame that declares a shorter payload than its fields need: a protocol error.
        size_t payload = len - SL_PROTO_FRAME_HEADER_BYTES;
        for (size_t p = 0; p < payload; p++) {
            uint32_t short_len = (uint32_t)p;
            memcpy(buf, &short_len, sizeof(short_len));
            const char *why = NULL;
            int err = decode_exact(buf, SL_PROTO_FRAME_HEADER_BYTES + p, &f, &consumed, &why);
            if (err != SL_EPROTO) {
                fail_msg("sample %d cut to %zu payload bytes: %s", i, p, sl_errname(err));
            }
            assert_non_null(why);
        }
        // And one trailing byte too many is refused as well.
        uint8_t longer[SAMPLE_CAP + 1];
        len = encode_sample(i, longer, sizeof(longer));
        uint32_t long_len = (uint32_t)(len + 1 - SL_PROTO_FRAME_HEADER_BYTES);
        memcpy(longer, &long_len, sizeof(long_len));
        longer[len] = 0;
        assert_int_equal(decode_exact(longer, len + 1, &f, &consumed, NULL), SL_EPROTO);
    }
}

static void
put_header(uint8_t *b, uint32_t length, uint8_t type, uint32_t stream_id)
{
    memset(b, 0, SL_PROTO_FRAME_HEADER_BYTES);
    memcpy(b, &length, 4);
    b[4] = type;
    memcpy(b + 8, &stream_id, 4);
}

static void
test_oversized_length_rejected_from_header_alone(void **state)
{
    (void)state;
    uint8_t b[SL_PROTO_FRAME_HEADER_BYTES];
    sl_frame f;
    size_t consumed;
    const char *why = NULL;
    sl_frame_header h;
    put_header(b, UINT32_MAX, SL_FRAME_PRODUCE, 1);
    assert_int_equal(sl_frame_header_decode(b, sizeof(b), MAX_FRAME, &h), SL_EPROTO);
    assert_int_equal(decode_exact(b, sizeof(b), &f, &consumed, &why), SL_EPROTO);
    assert_non_null(strstr(why, "maximum"));
    // Exactly the maximum waits for the payload; one more byte is refused.
    put_header(b, MAX_FRAME - SL_PROTO_FRAME_HEADER_BYTES, SL_FRAME_PRODUCE, 1);
    assert_int_equal(decode_exact(b, sizeof(b), &f, &consumed, NULL), SL_EAGAIN);
    put_header(b, MAX_FRAME - SL_PROTO_FRAME_HEADER_BYTES + 1, SL_FRAME_PRODUCE, 1);
    assert_int_equal(decode_exact(b, sizeof(b), &f, &consumed, NULL), SL_EPROTO);
    // Before HELLO_OK the limit is the minimum frame size.
    put_header(b, SL_PROTO_FRAME_SIZE_MIN, SL_FRAME_HELLO, 0);
    assert_int_equal(sl_frame_header_decode(b, sizeof(b), SL_PROTO_FRAME_SIZE_MIN, &h), SL_EPROTO);
    assert_int_equal(sl_frame_header_decode(b, sizeof(b), MAX_FRAME, &h), SL_OK);
    assert_int_equal(h.length, SL_PROTO_FRAME_SIZE_MIN);
}

static void
test_unknown_reserved_and_misscoped_frames(void **state)
{
    (void)state;
    uint8_t b[SL_PROTO_FRAME_HEADER_BYTES + 8] = {0};
    sl_frame f;
    size_t consumed;
    const char *why = NULL;
    uint8_t unknown[] = {0x00, 0x07, 0x14, 0x45, 0x54, 0x70, 0x7F, 0xFF};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        put_header(b, 8, unknown[i], 0);
        assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
        assert_string_equal(why, "unknown frame type");
        assert_null(sl_proto_frame_name(unknown[i]));
    }
    put_header(b, 8, 0x68, 0);
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
    assert_non_null(strstr(why, "consumer groups"));
    put_header(b, 8, SL_FRAME_PING, 5);
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
    assert_non_null(strstr(why, "stream id"));
    put_header(b, 8, SL_FRAME_CREDIT, 0);
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
    put_header(b, 8, SL_FRAME_CREDIT, 1);
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_OK);
    b[5] = 1; // a flag bit
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
    b[5] = 0;
    b[7] = 1; // a reserved header bit
    assert_int_equal(sl_proto_decode(b, sizeof(b), MAX_FRAME, &f, &consumed, &why), SL_EPROTO);
    assert_string_equal(sl_proto_frame_name(SL_FRAME_DELIVER), "DELIVER");
}

static void
test_encoders_refuse_what_decoders_refuse(void **state)
{
    (void)state;
    uint8_t buf[SAMPLE_CAP];
    size_t len;
    sl_proto_open_produce bad_names[] = {
        {0, 0, STR("")}, {0, 0, STR("a/b")}, {0, 0, STR("é")}, {0, 0, STR("a b")}};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        assert_int_equal(sl_proto_encode_open_produce(buf, sizeof(buf), 1, &bad_names[i], &len),
                         SL_EINVAL);
    }
    char long_name[SL_PROTO_TOPIC_NAME_MAX + 1];
    memset(long_name, 'x', sizeof(long_name));
    sl_proto_open_produce op = {0, 0, {long_name, SL_PROTO_TOPIC_NAME_MAX}};
    assert_int_equal(sl_proto_encode_open_produce(buf, sizeof(buf), 1, &op, &len), SL_OK);
    op.topic.size++;
    assert_int_equal(sl_proto_encode_open_produce(buf, sizeof(buf), 1, &op, &len), SL_EINVAL);
    op.topic.size--;
    assert_int_equal(sl_proto_encode_open_produce(buf, sizeof(buf), 0, &op, &len), SL_EINVAL);

    static char msg[SL_PROTO_MESSAGE_MAX + 1];
    memset(msg, 'm', sizeof(msg));
    sl_proto_error e = {1, 0, 0, {msg, SL_PROTO_MESSAGE_MAX + 1}};
    assert_int_equal(sl_proto_encode_error(buf, sizeof(buf), 0, &e, &len), SL_EINVAL);
    e.message.size--;
    assert_int_equal(sl_proto_encode_error(buf, sizeof(buf), 0, &e, &len), SL_OK);
    e.code = 0;
    assert_int_equal(sl_proto_encode_error(buf, sizeof(buf), 0, &e, &len), SL_EINVAL);

    sl_proto_hello h = {1, 1, SL_PROTO_FRAME_SIZE_MIN - 1, 5000, STR("")};
    assert_int_equal(sl_proto_encode_hello(buf, sizeof(buf), &h, &len), SL_EINVAL);
    h = (sl_proto_hello){2, 1, MAX_FRAME, 5000, STR("")};
    assert_int_equal(sl_proto_encode_hello(buf, sizeof(buf), &h, &len), SL_EINVAL);
    h = (sl_proto_hello){1, 1, MAX_FRAME, 10, STR("")};
    assert_int_equal(sl_proto_encode_hello(buf, sizeof(buf), &h, &len), SL_EINVAL);

    sl_proto_throttle t = {SL_THROTTLE_NONE, 10, STR("")};
    assert_int_equal(sl_proto_encode_throttle(buf, sizeof(buf), 1, &t, &len), SL_EINVAL);
    t.reason = SL_THROTTLE_QUOTA + 1;
    assert_int_equal(sl_proto_encode_throttle(buf, sizeof(buf), 1, &t, &len), SL_EINVAL);

    sl_proto_open_consume oc = {SL_PROTO_PARTITION_ANY, SL_START_LATEST, 0, STR("t"), STR("")};
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &oc, &len), SL_EINVAL);
    oc = (sl_proto_open_consume){SL_PROTO_PARTITION_ANY, SL_START_GROUP, 0, STR("t"), STR("")};
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &oc, &len), SL_EINVAL);
    oc.group = STR("g1");
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &oc, &len), SL_OK);
    oc = (sl_proto_open_consume){0, SL_START_EARLIEST, 5, STR("t"), STR("")};
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &oc, &len), SL_EINVAL);

    // Produce: sequence must match the first batch and continue without gaps.
    sl_proto_produce p = {SL_ACKS_FSYNC, 11, sample_batches()};
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_EINVAL);
    p.first_seq = 10;
    p.batches.batch_count = 3;
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_EINVAL);
    p.batches.batch_count = 0;
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_EINVAL);
    p.batches.batch_count = 1;
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_EINVAL);
    p.batches.batch_count = 2;
    p.acks = 4;
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_EINVAL);
    p.acks = SL_ACKS_NONE;
    assert_int_equal(sl_proto_encode_produce(buf, sizeof(buf), 1, &p, &len), SL_OK);

    // Deliver: the counted range lies inside the batches and is not empty.
    sl_proto_deliver d = {99, 105, 200, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver(buf, sizeof(buf), 2, &d, &len), SL_EINVAL);
    d = (sl_proto_deliver){100, 106, 200, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver(buf, sizeof(buf), 2, &d, &len), SL_EINVAL);
    d = (sl_proto_deliver){103, 103, 200, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver(buf, sizeof(buf), 2, &d, &len), SL_EINVAL);
    d = (sl_proto_deliver){100, 105, 104, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver(buf, sizeof(buf), 2, &d, &len), SL_EINVAL);
    d = (sl_proto_deliver){100, 105, 105, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver(buf, sizeof(buf), 2, &d, &len), SL_OK);

    sl_proto_topic_config cfg = {.partition_count = 0};
    sl_proto_create_topic ct = {1, cfg, STR("t")};
    assert_int_equal(sl_proto_encode_create_topic(buf, sizeof(buf), &ct, &len), SL_EINVAL);
    ct.config.partition_count = SL_PROTO_PARTITIONS_MAX + 1;
    assert_int_equal(sl_proto_encode_create_topic(buf, sizeof(buf), &ct, &len), SL_EINVAL);
    ct.config.partition_count = 1;
    ct.config.full_policy = 3;
    assert_int_equal(sl_proto_encode_create_topic(buf, sizeof(buf), &ct, &len), SL_EINVAL);
    sl_proto_topic_request del = {1, STR("")};
    assert_int_equal(
        sl_proto_encode_topic_request(buf, sizeof(buf), SL_FRAME_DELETE_TOPIC, &del, &len),
        SL_EINVAL);
    assert_int_equal(sl_proto_encode_topic_request(buf, sizeof(buf), SL_FRAME_PING, &del, &len),
                     SL_EINVAL);
}

static void
test_encoders_report_full_buffers(void **state)
{
    (void)state;
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        uint8_t buf[SAMPLE_CAP];
        uint8_t small[SAMPLE_CAP];
        size_t len = encode_sample(i, buf, sizeof(buf));
        sl_frame f;
        size_t consumed;
        assert_int_equal(sl_proto_decode(buf, len, MAX_FRAME, &f, &consumed, NULL), SL_OK);
        for (size_t cap = 0; cap < len; cap++) {
            size_t out = 0;
            assert_int_equal(sl_proto_encode(small, cap, &f, &out), SL_EFULL);
        }
    }
}

// A prefix followed by the batches is byte for byte the whole frame (writev / sendfile path).
static void
test_prefix_encoders_match_whole_frames(void **state)
{
    (void)state;
    uint8_t whole[SAMPLE_CAP];
    uint8_t joined[SAMPLE_CAP];
    size_t whole_len = encode_sample(10, whole, sizeof(whole));
    sl_proto_produce p = {SL_ACKS_LOG, 10, sample_batches()};
    size_t prefix_len = 0;
    p.batches.data = NULL; // not read by the prefix encoder
    assert_int_equal(sl_proto_encode_produce_prefix(joined, sizeof(joined), 1, &p, &prefix_len),
                     SL_OK);
    assert_int_equal(prefix_len, SL_PROTO_FRAME_HEADER_BYTES + 8);
    memcpy(joined + prefix_len, g_batches, g_batches_size);
    assert_int_equal(prefix_len + g_batches_size, whole_len);
    assert_memory_equal(joined, whole, whole_len);
    assert_int_equal(sl_proto_encode_produce_prefix(joined, prefix_len - 1, 1, &p, &prefix_len),
                     SL_EFULL);

    whole_len = encode_sample(15, whole, sizeof(whole));
    sl_proto_deliver d = {101, 105, 200, sample_batches(), 0};
    assert_int_equal(sl_proto_encode_deliver_prefix(joined, sizeof(joined), 2, &d, &prefix_len),
                     SL_OK);
    assert_int_equal(prefix_len, SL_PROTO_FRAME_HEADER_BYTES + 28);
    memcpy(joined + prefix_len, g_batches, g_batches_size);
    assert_memory_equal(joined, whole, whole_len);

    d.end_offset = d.first_offset;
    assert_int_equal(sl_proto_encode_deliver_prefix(joined, sizeof(joined), 2, &d, &prefix_len),
                     SL_EINVAL);
    d.end_offset = 105;
    d.batches.size_bytes = SL_BATCH_HEADER_BYTES; // two batches cannot fit in 64 bytes
    assert_int_equal(sl_proto_encode_deliver_prefix(joined, sizeof(joined), 2, &d, &prefix_len),
                     SL_EINVAL);
    d.batches.size_bytes = SL_PROTO_FRAME_SIZE_CEILING;
    assert_int_equal(sl_proto_encode_deliver_prefix(joined, sizeof(joined), 2, &d, &prefix_len),
                     SL_EINVAL);
    p.batches.batch_count = 0;
    assert_int_equal(sl_proto_encode_produce_prefix(joined, sizeof(joined), 1, &p, &prefix_len),
                     SL_EINVAL);
}

// Frames back to back in one buffer decode one by one, as a socket reader would.
static void
test_frames_back_to_back(void **state)
{
    (void)state;
    static uint8_t stream[SAMPLE_CAP * 4];
    size_t used = 0;
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        used += encode_sample(i, stream + used, sizeof(stream) - used);
    }
    size_t pos = 0;
    int frames = 0;
    for (int n = 0; n < SAMPLE_COUNT + 1 && pos < used; n++) {
        sl_frame f;
        size_t consumed = 0;
        assert_int_equal(sl_proto_decode(stream + pos, used - pos, MAX_FRAME, &f, &consumed, NULL),
                         SL_OK);
        pos += consumed;
        frames++;
    }
    assert_int_equal(pos, used);
    assert_int_equal(frames, SAMPLE_COUNT);
}

static void
test_helpers(void **state)
{
    (void)state;
    assert_int_equal(sl_proto_demand_add(5, 7), 12);
    assert_int_equal(sl_proto_demand_add(UINT64_MAX - 1, 7), UINT64_MAX);
    assert_int_equal(sl_proto_demand_add(UINT64_MAX, UINT64_MAX), UINT64_MAX);
    assert_int_equal(sl_proto_code_from_status(SL_EFULL), 3);
    assert_int_equal(sl_proto_code_from_status(SL_OK), 0);
    assert_int_equal(sl_proto_status_from_code(3), SL_EFULL);
    assert_int_equal(sl_proto_status_from_code(17), SL_ETHROTTLED);
    assert_int_equal(sl_proto_status_from_code(0), SL_OK);
    assert_int_equal(sl_proto_status_from_code(9999), SL_EPROTO);
    assert_true(sl_proto_topic_name_valid("a-b_c.D9", 8));
    assert_false(sl_proto_topic_name_valid("a\0b", 3));
    assert_false(sl_proto_topic_name_valid(NULL, 0));
}

// Mutates a valid frame at random; decoding must never crash, and anything accepted must
// re-encode to exactly the same bytes (the encoding is canonical).
static void
mutate(uint8_t *buf, size_t *len, uint64_t *rng)
{
    uint64_t r = sl_test_rand(rng);
    size_t n = 1 + (size_t)(r % 4);
    for (size_t i = 0; i < n; i++) {
        r = sl_test_rand(rng);
        size_t at = (size_t)(r >> 8) % *len;
        switch (r % 6) {
        case 0:
            buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
            break;
        case 1:
            buf[at] = (uint8_t)(r >> 32);
            break;
        case 2:
            buf[at] = (r >> 50) & 1 ? 0xFF : 0x00;
            break;
        case 3:
            *len = at + 1; // cut
            break;
        case 4: { // make the length field agree with a cut
            uint32_t l = *len > SL_PROTO_FRAME_HEADER_BYTES
                             ? (uint32_t)(*len - SL_PROTO_FRAME_HEADER_BYTES)
                             : 0;
            memcpy(buf, &l, sizeof(l));
            break;
        }
        default: { // a 16-bit field somewhere set to an edge value
            uint16_t v = (r >> 48) & 1 ? 0xFFFF : (uint16_t)((r >> 32) % 4);
            if (at + 2 <= *len) {
                memcpy(buf + at, &v, 2);
            }
            break;
        }
        }
    }
}

static void
test_random_mutations_never_crash(void **state)
{
    (void)state;
    uint64_t rng = sl_test_seed();
    int rounds = getenv("SL_SOAK") != NULL ? 200000 : 20000;
    int accepted = 0;
    for (int i = 0; i < rounds; i++) {
        uint8_t buf[SAMPLE_CAP];
        size_t len = encode_sample(i % SAMPLE_COUNT, buf, sizeof(buf));
        mutate(buf, &len, &rng);
        uint8_t *exact = malloc(len);
        assert_non_null(exact);
        memcpy(exact, buf, len);
        sl_frame f;
        size_t consumed = 0;
        const char *why = NULL;
        int err = sl_proto_decode(exact, len, MAX_FRAME, &f, &consumed, &why);
        assert_true(err == SL_OK || err == SL_EAGAIN || err == SL_EPROTO);
        assert_true(err != SL_EPROTO || why != NULL);
        if (err == SL_OK) {
            accepted++;
            uint8_t again[SAMPLE_CAP];
            size_t len2 = 0;
            assert_int_equal(sl_proto_encode(again, sizeof(again), &f, &len2), SL_OK);
            assert_int_equal(len2, consumed);
            assert_memory_equal(again, exact, consumed);
        }
        free(exact);
    }
    print_message("%d of %d mutated frames still valid (re-encoded identically)\n", accepted,
                  rounds);
}

// With SL_PROTO_CORPUS_DIR set, writes the samples as fuzz seeds (fuzz/corpus/frame/): a few
// files, each a plausible sequence of frames on one connection.
static void
write_corpus(const char *dir)
{
    static const struct {
        const char *name;
        int samples[8];
    } seeds[] = {
        {"produce_session", {0, 1, 6, 8, 11, 10, 12, -1}},
        {"consume_session", {7, 14, 15, 16, 9, -1}},
        {"admin", {17, 22, 18, 19, 24, 21, 23, -1}},
        {"stats", {20, 25, -1}},
        {"control", {2, 3, 13, 26, 4, 5, -1}},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        static uint8_t out[SAMPLE_CAP * 8];
        size_t used = 0;
        for (int k = 0; k < 8 && seeds[i].samples[k] >= 0; k++) {
            used += encode_sample(seeds[i].samples[k], out + used, sizeof(out) - used);
        }
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(out, 1, used, f), used);
        fclose(f);
    }
}

int
main(void)
{
    if (getenv("SL_PROTO_CORPUS_DIR") != NULL) {
        write_corpus(getenv("SL_PROTO_CORPUS_DIR"));
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_sample_decodes_and_reencodes_identically),
        cmocka_unit_test(test_round_trip_fields),
        cmocka_unit_test(test_per_type_decoders_match),
        cmocka_unit_test(test_every_truncation_needs_more_or_fails),
        cmocka_unit_test(test_oversized_length_rejected_from_header_alone),
        cmocka_unit_test(test_unknown_reserved_and_misscoped_frames),
        cmocka_unit_test(test_encoders_refuse_what_decoders_refuse),
        cmocka_unit_test(test_encoders_report_full_buffers),
        cmocka_unit_test(test_prefix_encoders_match_whole_frames),
        cmocka_unit_test(test_frames_back_to_back),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_random_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
