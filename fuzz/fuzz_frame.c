// libFuzzer target for the wire protocol decoder (src/proto). The input is read as a byte stream
// of frames, as a connection would deliver it; every accepted frame must re-encode to exactly the
// same bytes and its lists must walk without error. Any crash, sanitizer report or trap is a bug.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>
#include <sluice/proto.h>

// Frames per input: bounds the loop; a 64 KiB input holds at most 64 KiB / 12 frames anyway.
#define FUZZ_FRAMES_MAX 8192u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok) {
        __builtin_trap();
    }
}

static void
walk_lists(const sl_frame *f)
{
    sl_proto_cursor c;
    uint32_t n = 0;
    if (f->header.type == SL_FRAME_PRODUCE || f->header.type == SL_FRAME_DELIVER) {
        const sl_proto_batches *b =
            f->header.type == SL_FRAME_PRODUCE ? &f->u.produce.batches : &f->u.deliver.batches;
        const uint8_t *batch;
        sl_batch_header h;
        sl_proto_batches_init(&c, b);
        for (; n <= b->batch_count && sl_proto_batches_next(&c, &batch, &h) == SL_OK; n++) {
            // The CRC may be wrong (the decoder leaves it to the broker); this must not crash.
            int err = sl_batch_validate(batch, h.length, &h);
            check(err == SL_OK || err == SL_ECORRUPT);
        }
        check(n == b->batch_count);
    } else if (f->header.type == SL_FRAME_TOPIC_LIST) {
        sl_proto_topic_entry e;
        sl_proto_topic_list_init(&c, &f->u.topic_list);
        for (; n <= f->u.topic_list.entry_count && sl_proto_topic_list_next(&c, &e) == SL_OK; n++) {
        }
        check(n == f->u.topic_list.entry_count);
    } else if (f->header.type == SL_FRAME_STATS_RESULT) {
        sl_proto_stat s;
        sl_proto_stats_init(&c, &f->u.stats_result);
        for (; n <= f->u.stats_result.entry_count && sl_proto_stats_next(&c, &s) == SL_OK; n++) {
        }
        check(n == f->u.stats_result.entry_count);
    } else if (f->header.type == SL_FRAME_GROUP_LIST) {
        sl_proto_group_entry e;
        sl_proto_group_list_init(&c, &f->u.group_list);
        for (; n <= f->u.group_list.entry_count && sl_proto_group_list_next(&c, &e) == SL_OK; n++) {
        }
        check(n == f->u.group_list.entry_count);
    } else if (f->header.type == SL_FRAME_GROUP_INFO) {
        sl_proto_group_member_info m;
        sl_proto_group_members_init(&c, &f->u.group_info);
        for (; n <= f->u.group_info.member_count && sl_proto_group_members_next(&c, &m) == SL_OK;
             n++) {
        }
        check(n == f->u.group_info.member_count);
        sl_proto_group_partition_info p;
        for (uint16_t i = 0; i < f->u.group_info.partition_count; i++) {
            sl_proto_group_info_partition(&f->u.group_info, i, &p);
            check(p.owner == SL_PROTO_OWNER_NONE || p.owner < f->u.group_info.member_count);
        }
    } else if (f->header.type == SL_FRAME_ASSIGN) {
        for (uint16_t i = 1; i < f->u.assign.partition_count; i++) {
            check(sl_proto_assign_partition(&f->u.assign, i) >
                  sl_proto_assign_partition(&f->u.assign, (uint16_t)(i - 1)));
        }
    } else if (f->header.type == SL_FRAME_TOPIC_INFO) {
        sl_proto_partition_info p;
        for (uint32_t i = 0; i < f->u.topic_info.config.partition_count; i++) {
            sl_proto_topic_info_partition(&f->u.topic_info, i, &p);
        }
    }
}

// Re-encodes an accepted frame and compares: the encoding is canonical.
static void
check_reencode(const uint8_t *frame, size_t len, const sl_frame *f)
{
    uint8_t *again = malloc(len);
    check(again != NULL);
    size_t len2 = 0;
    check(sl_proto_encode(again, len, f, &len2) == SL_OK);
    check(len2 == len && memcmp(again, frame, len) == 0);
    if (len > 0) {
        check(sl_proto_encode(again, len - 1, f, &len2) == SL_EFULL);
    }
    free(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // The first byte picks the negotiated maximum, so both limits are exercised.
    uint32_t max_frame =
        size > 0 && (data[0] & 1) ? SL_PROTO_FRAME_SIZE_MIN : SL_PROTO_FRAME_SIZE_DEFAULT;
    size_t pos = 0;
    for (uint32_t n = 0; n < FUZZ_FRAMES_MAX && pos < size; n++) {
        sl_frame f;
        size_t consumed = 0;
        const char *why = NULL;
        int err = sl_proto_decode(data + pos, size - pos, max_frame, &f, &consumed, &why);
        check(err == SL_OK || err == SL_EAGAIN || err == SL_EPROTO);
        check((err == SL_EPROTO) == (why != NULL));
        if (err != SL_OK) {
            break;
        }
        check(consumed >= SL_PROTO_FRAME_HEADER_BYTES && consumed <= size - pos);
        walk_lists(&f);
        check_reencode(data + pos, consumed, &f);
        pos += consumed;
    }
    return 0;
}
