// The consumer group frames of protocol version 2 (src/proto/group.c): fields round-trip, the
// encoders refuse what the decoders refuse (limits, member ids, increasing partitions, owner
// indexes), and the version 2 additions to DELIVER and OPEN_CONSUME.
#include "support/test_util.h"

#include <string.h>

#include <sluice/error.h>
#include <sluice/proto.h>

#define STR(s) ((sl_proto_str){.data = (s), .size = (uint16_t)(sizeof(s) - 1)})

static uint8_t buf[70000];

static void
decode_ok(size_t len, sl_frame *f)
{
    size_t consumed = 0;
    const char *why = NULL;
    assert_int_equal(sl_proto_decode(buf, len, SL_PROTO_FRAME_SIZE_DEFAULT, f, &consumed, &why),
                     SL_OK);
    assert_int_equal(consumed, len);
}

static int
decode_status(size_t len)
{
    sl_frame f;
    size_t consumed = 0;
    return sl_proto_decode(buf, len, SL_PROTO_FRAME_SIZE_DEFAULT, &f, &consumed, NULL);
}

static void
test_join_round_trip_and_limits(void **state)
{
    (void)state;
    sl_proto_join_group j = {9,        1000,       30000,       500, 4, SL_OFFSET_RESET_LATEST,
                             STR("g"), STR("t.1"), STR("m1-c2")};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &j, &len), SL_OK);
    sl_frame f;
    decode_ok(len, &f);
    assert_int_equal(f.header.type, SL_FRAME_JOIN_GROUP);
    assert_int_equal(f.u.join_group.correlation_id, 9);
    assert_int_equal(f.u.join_group.session_timeout_ms, 1000);
    assert_int_equal(f.u.join_group.ack_timeout_ms, 30000);
    assert_int_equal(f.u.join_group.max_ack_pending, 500);
    assert_int_equal(f.u.join_group.max_redeliveries, 4);
    assert_int_equal(f.u.join_group.offset_reset, SL_OFFSET_RESET_LATEST);
    assert_memory_equal(f.u.join_group.member_id.data, "m1-c2", 5);
    // Out of range: a session below the floor, too many redeliveries, an unknown reset, a bad id.
    sl_proto_join_group bad = j;
    bad.session_timeout_ms = SL_PROTO_SESSION_TIMEOUT_MS_MIN - 1;
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &bad, &len), SL_EINVAL);
    bad = j;
    bad.max_redeliveries = SL_PROTO_MAX_REDELIVERIES_MAX + 1;
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &bad, &len), SL_EINVAL);
    bad = j;
    bad.offset_reset = 0;
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &bad, &len), SL_EINVAL);
    bad = j;
    bad.member_id = STR("m 1");
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &bad, &len), SL_EINVAL);
    // The decoder refuses the same: patch the session timeout of a valid frame to 999.
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &j, &len), SL_OK);
    uint32_t low = 999;
    memcpy(buf + SL_PROTO_FRAME_HEADER_BYTES + 4, &low, 4);
    assert_int_equal(decode_status(len), SL_EPROTO);
}

static void
test_assign_partitions_increase(void **state)
{
    (void)state;
    uint32_t parts[] = {1, 4, 9};
    sl_proto_assign a = {3, 7, 2000, STR("g"), STR("t"), STR("m1-c1"), 3, parts, NULL};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &a, &len), SL_OK);
    sl_frame f;
    decode_ok(len, &f);
    assert_int_equal(f.u.assign.generation, 7);
    assert_int_equal(f.u.assign.heartbeat_ms, 2000);
    assert_int_equal(f.u.assign.partition_count, 3);
    assert_int_equal(sl_proto_assign_partition(&f.u.assign, 2), 9);
    // Decreasing partitions: refused both ways.
    uint32_t down[] = {4, 1};
    sl_proto_assign b = {3, 7, 2000, STR("g"), STR("t"), STR("m1-c1"), 2, down, NULL};
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &b, &len), SL_EINVAL);
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &a, &len), SL_OK);
    uint32_t swap = 0;
    memcpy(buf + len - 4, &swap, 4); // last partition 9 -> 0
    assert_int_equal(decode_status(len), SL_EPROTO);
    // Generation 0 and an empty member id are never valid.
    a.generation = 0;
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &a, &len), SL_EINVAL);
    a.generation = 1;
    a.member_id = STR("");
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &a, &len), SL_EINVAL);
    // An empty assignment is valid (more members than partitions).
    sl_proto_assign none = {0, 2, 2000, STR("g"), STR("t"), STR("m2-c3"), 0, NULL, NULL};
    assert_int_equal(sl_proto_encode_assign(buf, sizeof(buf), &none, &len), SL_OK);
    decode_ok(len, &f);
    assert_int_equal(f.u.assign.partition_count, 0);
}

static void
test_member_frames(void **state)
{
    (void)state;
    sl_proto_group_member m = {11, 4, STR("g"), STR("t"), STR("m1-c1")};
    size_t len = 0;
    assert_int_equal(
        sl_proto_encode_group_member(buf, sizeof(buf), SL_FRAME_GROUP_HEARTBEAT, &m, &len), SL_OK);
    sl_frame f;
    decode_ok(len, &f);
    assert_int_equal(f.header.type, SL_FRAME_GROUP_HEARTBEAT);
    assert_int_equal(f.u.group_member.generation, 4);
    sl_proto_group_member out;
    assert_int_equal(sl_proto_decode_group_member(SL_FRAME_LEAVE_GROUP, buf + 12, len - 12, &out),
                     SL_OK);
    assert_int_equal(sl_proto_decode_group_member(SL_FRAME_ASSIGN, buf + 12, len - 12, &out),
                     SL_EINVAL);
    assert_int_equal(sl_proto_encode_group_member(buf, sizeof(buf), SL_FRAME_JOIN_GROUP, &m, &len),
                     SL_EINVAL);
    m.member_id = STR("");
    assert_int_equal(sl_proto_encode_group_member(buf, sizeof(buf), SL_FRAME_LEAVE_GROUP, &m, &len),
                     SL_EINVAL);
}

static void
test_group_info_owner_in_range(void **state)
{
    (void)state;
    sl_proto_group_member_info mi[] = {{STR("m1-c1"), STR("127.0.0.1:1"), 6000, 1000}};
    sl_proto_group_partition_info pi[] = {{0, 0, SL_STALL_ACK_PENDING, 5, 15, 30, 123},
                                          {1, SL_PROTO_OWNER_NONE, 0, 7, 7, 9, 0}};
    sl_proto_group_info g = {.correlation_id = 1,
                             .generation = 3,
                             .rebalances_total = 3,
                             .redeliveries_total = 10,
                             .dlq_records_total = 2,
                             .group = STR("g"),
                             .topic = STR("t"),
                             .member_count = 1,
                             .partition_count = 2,
                             .members = mi,
                             .partitions = pi};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_group_info(buf, sizeof(buf), &g, &len), SL_OK);
    sl_frame f;
    decode_ok(len, &f);
    sl_proto_group_partition_info p;
    sl_proto_group_info_partition(&f.u.group_info, 0, &p);
    assert_int_equal(p.stall_reason, SL_STALL_ACK_PENDING);
    assert_int_equal(p.delivered_offset, 15);
    assert_int_equal(p.committed_timestamp_us, 123);
    sl_proto_cursor c;
    sl_proto_group_members_init(&c, &f.u.group_info);
    sl_proto_group_member_info m;
    assert_int_equal(sl_proto_group_members_next(&c, &m), SL_OK);
    assert_int_equal(m.max_ack_pending, 1000);
    assert_int_equal(sl_proto_group_members_next(&c, &m), SL_ENOENT);
    // An owner index past the members, or an unknown stall reason: refused.
    pi[1].owner = 1;
    assert_int_equal(sl_proto_encode_group_info(buf, sizeof(buf), &g, &len), SL_EINVAL);
    pi[1].owner = SL_PROTO_OWNER_NONE;
    pi[1].stall_reason = SL_STALL_CAUGHT_UP + 1;
    assert_int_equal(sl_proto_encode_group_info(buf, sizeof(buf), &g, &len), SL_EINVAL);
    assert_string_equal(sl_stall_reason_name(SL_STALL_CAUGHT_UP + 1), "unknown");
    assert_string_equal(sl_stall_reason_name(SL_STALL_NO_DEMAND), "no_demand");
}

static void
test_version_2_fields_of_stream_frames(void **state)
{
    (void)state;
    // GROUP-mode OPEN_CONSUME carries the generation in start_offset (a u32).
    sl_proto_open_consume o = {SL_PROTO_PARTITION_ANY, SL_START_GROUP, 42, STR("t"), STR("g")};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &o, &len), SL_OK);
    sl_frame f;
    decode_ok(len, &f);
    assert_int_equal(f.u.open_consume.start_offset, 42);
    o.start_offset = (uint64_t)UINT32_MAX + 1;
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &o, &len), SL_EINVAL);
    // Other non-OFFSET modes still require 0.
    o.start_mode = SL_START_EARLIEST;
    o.start_offset = 1;
    o.partition = 0;
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), 1, &o, &len), SL_EINVAL);
    // HELLO_OK may now agree on version 2.
    sl_proto_hello_ok ok = {2, 1u << 20, 5000, 64, STR("b")};
    assert_int_equal(sl_proto_encode_hello_ok(buf, sizeof(buf), &ok, &len), SL_OK);
    decode_ok(len, &f);
    assert_int_equal(f.u.hello_ok.version, SL_PROTO_VERSION_GROUPS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_round_trip_and_limits),
        cmocka_unit_test(test_assign_partitions_increase),
        cmocka_unit_test(test_member_frames),
        cmocka_unit_test(test_group_info_owner_in_range),
        cmocka_unit_test(test_version_2_fields_of_stream_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
