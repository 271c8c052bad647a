// Admin calls (create, delete, list, describe topics; statistics): synchronous request/response
// on a connection of their own, matched by correlation id, each bounded by its deadline. No
// thread: the caller's thread writes, then reads until the answer, answering PINGs meanwhile.
#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "client/client_internal.h"
#include "core/util.h"

// Longest list walk: pages of SL_PROTO_LIST_ENTRIES_MAX names; bounds the pagination loop.
#define ADMIN_LIST_PAGES_MAX 1024u

struct sl_admin {
    sl__conn conn;
    uint32_t next_correlation;
    char message[SL_PROTO_MESSAGE_MAX + 1];
};

int
sl_admin_open(const char *broker, int64_t deadline_ns, sl_admin **out)
{
    char host[256];
    uint16_t port = 0;
    int err = sl_client_resolve_broker(broker, host, sizeof(host), &port, NULL, 0);
    if (err != SL_OK) {
        return err;
    }
    sl_admin *a = sl_calloc(1, sizeof(*a));
    if (a == NULL) {
        return SL_ENOMEM;
    }
    sl_proto_hello_ok ok;
    // The admin connection idles between calls: it proposes the longest heartbeat.
    err = sl__conn_open(&a->conn, host, port, "sluice-admin", SL__CLIENT_MAX_FRAME_BYTES,
                        SL_PROTO_HEARTBEAT_MS_MAX, deadline_ns, NULL, &ok);
    if (err != SL_OK) {
        sl_free(a, sizeof(*a));
        return err;
    }
    a->next_correlation = 1;
    *out = a;
    return SL_OK;
}

void
sl_admin_close(sl_admin *a)
{
    if (a == NULL) {
        return;
    }
    sl__conn_close(&a->conn);
    sl_free(a, sizeof(*a));
}

const char *
sl_admin_last_message(const sl_admin *a)
{
    return a->message;
}

static void
admin_note(sl_admin *a, const sl_proto_str *msg)
{
    size_t n = SL_MIN((size_t)msg->size, sizeof(a->message) - 1);
    memcpy(a->message, msg->data, n);
    a->message[n] = '\0';
}

static uint32_t
frame_correlation(const sl_frame *f)
{
    switch (f->header.type) {
    case SL_FRAME_ADMIN_RESULT:
        return f->u.admin_result.correlation_id;
    case SL_FRAME_TOPIC_LIST:
        return f->u.topic_list.correlation_id;
    case SL_FRAME_TOPIC_INFO:
        return f->u.topic_info.correlation_id;
    case SL_FRAME_STATS_RESULT:
        return f->u.stats_result.correlation_id;
    case SL_FRAME_GROUP_LIST:
        return f->u.group_list.correlation_id;
    case SL_FRAME_GROUP_INFO:
        return f->u.group_info.correlation_id;
    default:
        return 0;
    }
}

// Sends the frame already encoded in the write buffer and waits for the answer to correlation.
// An ADMIN_RESULT is consumed here and gives its status. Any other answer gives SL_OK with *f
// viewing the read buffer; the caller calls sl__conn_consume(&a->conn, *pos) after use.
static int
admin_roundtrip(sl_admin *a, uint32_t correlation, int64_t deadline_ns, sl_frame *f, size_t *pos)
{
    a->message[0] = '\0';
    int err = sl__conn_write_all(&a->conn, deadline_ns);
    for (uint32_t i = 0; i < UINT32_MAX && err == SL_OK; i++) { // bounded by deadline_ns
        err = sl__conn_wait_frame(&a->conn, deadline_ns, f, pos);
        if (err != SL_OK) {
            return err;
        }
        if (f->header.type == SL_FRAME_ERROR || f->header.type == SL_FRAME_GOAWAY) {
            admin_note(a, f->header.type == SL_FRAME_ERROR ? &f->u.error.message
                                                           : &f->u.goaway.message);
            err = sl_proto_status_from_code(f->header.type == SL_FRAME_ERROR ? f->u.error.code
                                                                             : f->u.goaway.code);
            sl__conn_consume(&a->conn, *pos);
            return err == SL_OK ? SL_ECONNRESET : err;
        }
        if (frame_correlation(f) == correlation) {
            if (f->header.type != SL_FRAME_ADMIN_RESULT) {
                return SL_OK;
            }
            admin_note(a, &f->u.admin_result.status.message);
            err = sl_proto_status_from_code(f->u.admin_result.status.code);
            sl__conn_consume(&a->conn, *pos);
            *pos = 0; // consumed: the caller's consume is a no-op
            f->header.type = SL_FRAME_ADMIN_RESULT;
            return err;
        }
        sl__conn_consume(&a->conn, *pos); // an answer to an abandoned call
    }
    return err;
}

// Runs the round trip for a call (just encoded, len bytes) whose only answer is ADMIN_RESULT.
static int
admin_simple(sl_admin *a, int err, size_t len, uint32_t correlation, int64_t deadline_ns)
{
    if (err != SL_OK) {
        return err;
    }
    sl__conn_commit(&a->conn, len);
    sl_frame f;
    size_t pos = 0;
    err = admin_roundtrip(a, correlation, deadline_ns, &f, &pos);
    if (err == SL_OK && f.header.type != SL_FRAME_ADMIN_RESULT) {
        sl__conn_consume(&a->conn, pos);
        return SL_EPROTO;
    }
    return err;
}

int
sl_admin_create_topic(sl_admin *a, const char *topic, const sl_proto_topic_config *config,
                      int64_t deadline_ns)
{
    if (topic == NULL || !sl_proto_topic_name_valid(topic, strlen(topic))) {
        return SL_EINVAL;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_create_topic m = {.correlation_id = a->next_correlation++,
                               .config = *config,
                               .topic = {topic, (uint16_t)strlen(topic)}};
    size_t len = 0;
    int err = sl_proto_encode_create_topic(at, room, &m, &len);
    return admin_simple(a, err, len, m.correlation_id, deadline_ns);
}

int
sl_admin_delete_topic(sl_admin *a, const char *topic, int64_t deadline_ns)
{
    if (topic == NULL || !sl_proto_topic_name_valid(topic, strlen(topic))) {
        return SL_EINVAL;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_topic_request m = {.correlation_id = a->next_correlation++,
                                .topic = {topic, (uint16_t)strlen(topic)}};
    size_t len = 0;
    int err = sl_proto_encode_topic_request(at, room, SL_FRAME_DELETE_TOPIC, &m, &len);
    return admin_simple(a, err, len, m.correlation_id, deadline_ns);
}

// Sends a request encoded by the caller and waits for a frame of type want.
static int
admin_query(sl_admin *a, int err, size_t len, uint32_t correlation, uint8_t want,
            int64_t deadline_ns, sl_frame *f, size_t *pos)
{
    if (err != SL_OK) {
        return err;
    }
    sl__conn_commit(&a->conn, len);
    err = admin_roundtrip(a, correlation, deadline_ns, f, pos);
    if (err == SL_OK && f->header.type != want) {
        sl__conn_consume(&a->conn, *pos);
        return SL_EPROTO;
    }
    return err;
}

int
sl_admin_list_topics(sl_admin *a, int64_t deadline_ns, sl_topic_cb cb, void *user)
{
    char after[SL_PROTO_TOPIC_NAME_MAX + 1] = "";
    for (uint32_t page = 0; page < ADMIN_LIST_PAGES_MAX; page++) {
        uint8_t *at = NULL;
        size_t room = sl__conn_room(&a->conn, &at);
        sl_proto_list_topics m = {.correlation_id = a->next_correlation++,
                                  .max_entries = SL_PROTO_LIST_ENTRIES_MAX,
                                  .start_after = {after, (uint16_t)strlen(after)}};
        size_t len = 0;
        sl_frame f;
        size_t pos = 0;
        int err = sl_proto_encode_list_topics(at, room, &m, &len);
        err =
            admin_query(a, err, len, m.correlation_id, SL_FRAME_TOPIC_LIST, deadline_ns, &f, &pos);
        if (err != SL_OK) {
            return err;
        }
        sl_proto_cursor cur;
        sl_proto_topic_list_init(&cur, &f.u.topic_list);
        sl_proto_topic_entry e;
        char name[SL_PROTO_TOPIC_NAME_MAX + 1];
        for (uint32_t i = 0;
             i < f.u.topic_list.entry_count && sl_proto_topic_list_next(&cur, &e) == SL_OK; i++) {
            size_t n = SL_MIN((size_t)e.name.size, sizeof(name) - 1);
            memcpy(name, e.name.data, n);
            name[n] = '\0';
            cb(name, e.partition_count, user);
            memcpy(after, name, n + 1);
        }
        bool more = f.u.topic_list.more && f.u.topic_list.entry_count > 0;
        sl__conn_consume(&a->conn, pos);
        if (!more) {
            return SL_OK;
        }
    }
    return SL_ERANGE;
}

int
sl_admin_describe_topic(sl_admin *a, const char *topic, int64_t deadline_ns, sl_partition_cb cb,
                        void *user)
{
    if (topic == NULL || !sl_proto_topic_name_valid(topic, strlen(topic))) {
        return SL_EINVAL;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_topic_request m = {.correlation_id = a->next_correlation++,
                                .topic = {topic, (uint16_t)strlen(topic)}};
    size_t len = 0;
    sl_frame f;
    size_t pos = 0;
    int err = sl_proto_encode_topic_request(at, room, SL_FRAME_DESCRIBE_TOPIC, &m, &len);
    err = admin_query(a, err, len, m.correlation_id, SL_FRAME_TOPIC_INFO, deadline_ns, &f, &pos);
    if (err != SL_OK) {
        return err;
    }
    const sl_proto_topic_info *info = &f.u.topic_info;
    cb(&info->config, UINT32_MAX, NULL, user);
    for (uint32_t i = 0; i < info->config.partition_count; i++) {
        sl_proto_partition_info p;
        sl_proto_topic_info_partition(info, i, &p);
        cb(&info->config, i, &p, user);
    }
    sl__conn_consume(&a->conn, pos);
    return SL_OK;
}

int
sl_admin_stats(sl_admin *a, const char *topic, int64_t deadline_ns, sl_stat_cb cb, void *user)
{
    const char *t = topic == NULL ? "" : topic;
    if (t[0] != '\0' && !sl_proto_topic_name_valid(t, strlen(t))) {
        return SL_EINVAL;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_topic_request m = {.correlation_id = a->next_correlation++,
                                .topic = {t, (uint16_t)strlen(t)}};
    size_t len = 0;
    sl_frame f;
    size_t pos = 0;
    int err = sl_proto_encode_topic_request(at, room, SL_FRAME_STATS, &m, &len);
    err = admin_query(a, err, len, m.correlation_id, SL_FRAME_STATS_RESULT, deadline_ns, &f, &pos);
    if (err != SL_OK) {
        return err;
    }
    sl_proto_cursor cur;
    sl_proto_stats_init(&cur, &f.u.stats_result);
    sl_proto_stat s;
    char name[SL_PROTO_STAT_NAME_MAX + 1];
    for (uint32_t i = 0; i < f.u.stats_result.entry_count && sl_proto_stats_next(&cur, &s) == SL_OK;
         i++) {
        size_t n = SL_MIN((size_t)s.name.size, sizeof(name) - 1);
        memcpy(name, s.name.data, n);
        name[n] = '\0';
        cb(name, s.value, user);
    }
    sl__conn_consume(&a->conn, pos);
    return SL_OK;
}

// ---- consumer groups (protocol version 2) -------------------------------------------------------

// Copies a string view into a NUL-terminated buffer of SL_PROTO_TOPIC_NAME_MAX + 1 bytes.
static void
name_copy(char *dst, sl_proto_str s)
{
    size_t n = SL_MIN((size_t)s.size, (size_t)SL_PROTO_TOPIC_NAME_MAX);
    memcpy(dst, s.data, n);
    dst[n] = '\0';
}

int
sl_admin_list_groups(sl_admin *a, int64_t deadline_ns, sl_group_cb cb, void *user)
{
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_list_groups m = {.correlation_id = a->next_correlation++,
                              .max_entries = SL_PROTO_LIST_ENTRIES_MAX};
    size_t len = 0;
    sl_frame f;
    size_t pos = 0;
    int err = sl_proto_encode_list_groups(at, room, &m, &len);
    err = admin_query(a, err, len, m.correlation_id, SL_FRAME_GROUP_LIST, deadline_ns, &f, &pos);
    if (err != SL_OK) {
        return err;
    }
    sl_proto_cursor cur;
    sl_proto_group_list_init(&cur, &f.u.group_list);
    sl_proto_group_entry e;
    // Bounded by the entry count (SL_PROTO_LIST_ENTRIES_MAX).
    while (sl_proto_group_list_next(&cur, &e) == SL_OK) {
        char group[SL_PROTO_TOPIC_NAME_MAX + 1];
        char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
        name_copy(group, e.group);
        name_copy(topic, e.topic);
        cb(group, topic, e.generation, e.member_count, e.partition_count, user);
    }
    sl__conn_consume(&a->conn, pos);
    return SL_OK;
}

int
sl_admin_describe_group(sl_admin *a, const char *group, const char *topic, int64_t deadline_ns,
                        sl_group_info_cb cb, void *user)
{
    if (group == NULL || topic == NULL || !sl_proto_topic_name_valid(group, strlen(group)) ||
        !sl_proto_topic_name_valid(topic, strlen(topic))) {
        return SL_EINVAL;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&a->conn, &at);
    sl_proto_describe_group m = {.correlation_id = a->next_correlation++,
                                 .group = {group, (uint16_t)strlen(group)},
                                 .topic = {topic, (uint16_t)strlen(topic)}};
    size_t len = 0;
    sl_frame f;
    size_t pos = 0;
    int err = sl_proto_encode_describe_group(at, room, &m, &len);
    err = admin_query(a, err, len, m.correlation_id, SL_FRAME_GROUP_INFO, deadline_ns, &f, &pos);
    if (err != SL_OK) {
        return err;
    }
    cb(&f.u.group_info, user);
    sl__conn_consume(&a->conn, pos);
    return SL_OK;
}
