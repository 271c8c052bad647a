// The generic encoder: one sl_frame (tagged by its header's type) to bytes, for code that holds
// frames as values (the broker's outgoing queue, the fuzzer's canonical-encoding check). It only
// dispatches; the per-type encoders in frame.c, stream.c and admin.c do the work.
#include "proto/proto_internal.h"

// Connection-level and admin frames: stream id 0 by scope, so it is not passed.
static int
encode_connection(void *buf, size_t cap, const sl_frame *f, size_t *len_out)
{
    switch (f->header.type) {
    case SL_FRAME_HELLO:
        return sl_proto_encode_hello(buf, cap, &f->u.hello, len_out);
    case SL_FRAME_HELLO_OK:
        return sl_proto_encode_hello_ok(buf, cap, &f->u.hello_ok, len_out);
    case SL_FRAME_PING:
    case SL_FRAME_PONG:
        return sl_proto_encode_ping(buf, cap, f->header.type == SL_FRAME_PONG, &f->u.ping, len_out);
    case SL_FRAME_GOAWAY:
        return sl_proto_encode_goaway(buf, cap, &f->u.goaway, len_out);
    case SL_FRAME_CREATE_TOPIC:
        return sl_proto_encode_create_topic(buf, cap, &f->u.create_topic, len_out);
    case SL_FRAME_DELETE_TOPIC:
    case SL_FRAME_DESCRIBE_TOPIC:
    case SL_FRAME_STATS:
        return sl_proto_encode_topic_request(buf, cap, f->header.type, &f->u.topic_request,
                                             len_out);
    case SL_FRAME_LIST_TOPICS:
        return sl_proto_encode_list_topics(buf, cap, &f->u.list_topics, len_out);
    case SL_FRAME_ADMIN_RESULT:
        return sl_proto_encode_admin_result(buf, cap, &f->u.admin_result, len_out);
    case SL_FRAME_TOPIC_LIST:
        return sl_proto_encode_topic_list(buf, cap, &f->u.topic_list, len_out);
    case SL_FRAME_TOPIC_INFO:
        return sl_proto_encode_topic_info(buf, cap, &f->u.topic_info, len_out);
    case SL_FRAME_STATS_RESULT:
        return sl_proto_encode_stats_result(buf, cap, &f->u.stats_result, len_out);
    case SL_FRAME_JOIN_GROUP:
        return sl_proto_encode_join_group(buf, cap, &f->u.join_group, len_out);
    case SL_FRAME_GROUP_HEARTBEAT:
    case SL_FRAME_LEAVE_GROUP:
        return sl_proto_encode_group_member(buf, cap, f->header.type, &f->u.group_member, len_out);
    case SL_FRAME_ASSIGN:
        return sl_proto_encode_assign(buf, cap, &f->u.assign, len_out);
    case SL_FRAME_LIST_GROUPS:
        return sl_proto_encode_list_groups(buf, cap, &f->u.list_groups, len_out);
    case SL_FRAME_DESCRIBE_GROUP:
        return sl_proto_encode_describe_group(buf, cap, &f->u.describe_group, len_out);
    case SL_FRAME_GROUP_LIST:
        return sl_proto_encode_group_list(buf, cap, &f->u.group_list, len_out);
    case SL_FRAME_GROUP_INFO:
        return sl_proto_encode_group_info(buf, cap, &f->u.group_info, len_out);
    default:
        return SL_ENOENT;
    }
}

static int
encode_stream(void *buf, size_t cap, const sl_frame *f, size_t *len_out)
{
    uint32_t id = f->header.stream_id;
    switch (f->header.type) {
    case SL_FRAME_ERROR:
        return sl_proto_encode_error(buf, cap, id, &f->u.error, len_out);
    case SL_FRAME_STREAM_CLOSE:
        return sl_proto_encode_stream_close(buf, cap, id, &f->u.error, len_out);
    case SL_FRAME_OPEN_PRODUCE:
        return sl_proto_encode_open_produce(buf, cap, id, &f->u.open_produce, len_out);
    case SL_FRAME_OPEN_CONSUME:
        return sl_proto_encode_open_consume(buf, cap, id, &f->u.open_consume, len_out);
    case SL_FRAME_STREAM_OK:
        return sl_proto_encode_stream_ok(buf, cap, id, &f->u.stream_ok, len_out);
    case SL_FRAME_PRODUCE:
        return sl_proto_encode_produce(buf, cap, id, &f->u.produce, len_out);
    case SL_FRAME_CREDIT:
        return sl_proto_encode_credit(buf, cap, id, &f->u.credit, len_out);
    case SL_FRAME_ACK:
        return sl_proto_encode_ack(buf, cap, id, &f->u.ack, len_out);
    case SL_FRAME_THROTTLE:
        return sl_proto_encode_throttle(buf, cap, id, &f->u.throttle, len_out);
    case SL_FRAME_REQUEST:
        return sl_proto_encode_request(buf, cap, id, &f->u.request, len_out);
    case SL_FRAME_DELIVER:
        return sl_proto_encode_deliver(buf, cap, id, &f->u.deliver, len_out);
    case SL_FRAME_COMMIT:
        return sl_proto_encode_commit(buf, cap, id, &f->u.commit, len_out);
    default:
        return SL_ENOENT;
    }
}

int
sl_proto_encode(void *buf, size_t cap, const sl_frame *frame, size_t *len_out)
{
    SL_ASSERT(frame != NULL && len_out != NULL);
    if (sl_proto_frame_name(frame->header.type) == NULL) {
        return SL_EINVAL;
    }
    int err = encode_connection(buf, cap, frame, len_out);
    if (err == SL_ENOENT) {
        err = encode_stream(buf, cap, frame, len_out);
    }
    SL_ASSERT(err != SL_ENOENT); // every named type has an encoder
    return err;
}
