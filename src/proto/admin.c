// Admin frames of the wire protocol: topic create/delete/list/describe and stats, each request
// matched to its answer by a correlation id. Connection level (stream id 0); answers are bounded
// by SL_PROTO_LIST_ENTRIES_MAX and paginated. Layouts (offset, size, meaning): docs/protocol.md.
//
//   topic config (36 bytes): 0 u32 partition_count | 4 u64 max_backlog_bytes | 12 u32 max_lag_ms |
//   16 u8 full_policy | 17 u8 + 18 u16 reserved | 20 u64 retention_bytes | 28 u64 retention_ms
#include "proto/proto_internal.h"

// One TOPIC_INFO partition entry: four u64.
#define PARTITION_INFO_BYTES 32u

_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + 48u + SL_PROTO_TOPIC_NAME_MAX +
                       SL_PROTO_PARTITIONS_MAX * PARTITION_INFO_BYTES <=
                   SL_PROTO_FRAME_SIZE_MIN,
               "a TOPIC_INFO with the most partitions fits the minimum frame");
_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + 8u +
                       SL_PROTO_LIST_ENTRIES_MAX * (6u + SL_PROTO_TOPIC_NAME_MAX) <=
                   SL_PROTO_FRAME_SIZE_DEFAULT,
               "a full TOPIC_LIST fits the default frame");

bool
sl__topic_config_ok(const sl_proto_topic_config *c)
{
    return c->partition_count >= 1 && c->partition_count <= SL_PROTO_PARTITIONS_MAX &&
           c->full_policy <= SL_FULL_DROP_OLDEST;
}

void
sl__rd_topic_config(sl__rd *r, sl_proto_topic_config *c)
{
    c->partition_count = sl__rd_u32(r);
    c->max_backlog_bytes = sl__rd_u64(r);
    c->max_lag_ms = sl__rd_u32(r);
    c->full_policy = sl__rd_u8(r);
    sl__rd_zero(r, 3);
    c->retention_bytes = sl__rd_u64(r);
    c->retention_ms = sl__rd_u64(r);
    sl__rd_check(r, r->why == NULL && !sl__topic_config_ok(c) ? "topic config out of range" : NULL);
}

void
sl__wr_topic_config(sl__wr *w, const sl_proto_topic_config *c)
{
    sl__wr_u32(w, c->partition_count);
    sl__wr_u64(w, c->max_backlog_bytes);
    sl__wr_u32(w, c->max_lag_ms);
    sl__wr_u8(w, c->full_policy);
    sl__wr_zero(w, 3);
    sl__wr_u64(w, c->retention_bytes);
    sl__wr_u64(w, c->retention_ms);
}

// ---- requests ----------------------------------------------------------------------------------

int
sl_proto_encode_create_topic(void *buf, size_t cap, const sl_proto_create_topic *in,
                             size_t *len_out)
{
    if (!sl__topic_config_ok(&in->config) || !sl__name_ok(in->topic)) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_CREATE_TOPIC, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_topic_config(&w, &in->config);
    sl__wr_str(&w, in->topic);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_create_topic(sl__rd *r, sl_proto_create_topic *out)
{
    out->correlation_id = sl__rd_u32(r);
    sl__rd_topic_config(r, &out->config);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    sl__rd_check(r, r->why == NULL && !sl__name_ok(out->topic) ? "topic name invalid" : NULL);
}

static bool
is_topic_request(uint8_t type)
{
    return type == SL_FRAME_DELETE_TOPIC || type == SL_FRAME_DESCRIBE_TOPIC ||
           type == SL_FRAME_STATS;
}

// STATS may leave the topic empty (broker-wide); the others name one.
static bool
topic_request_ok(uint8_t type, sl_proto_str topic)
{
    return (type == SL_FRAME_STATS && topic.size == 0) || sl__name_ok(topic);
}

int
sl_proto_encode_topic_request(void *buf, size_t cap, uint8_t type, const sl_proto_topic_request *in,
                              size_t *len_out)
{
    if (!is_topic_request(type) || !topic_request_ok(type, in->topic)) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, type, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_str(&w, in->topic);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_topic_request(uint8_t type, sl__rd *r, sl_proto_topic_request *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    bool bad = r->why == NULL && !topic_request_ok(type, out->topic);
    sl__rd_check(r, bad ? "topic name invalid" : NULL);
}

int
sl_proto_decode_topic_request(uint8_t type, const void *payload, size_t len,
                              sl_proto_topic_request *out)
{
    SL_ASSERT(out != NULL);
    if (!is_topic_request(type)) {
        return SL_EINVAL;
    }
    sl__rd r;
    sl__rd_init(&r, payload, len);
    rd_topic_request(type, &r, out);
    return sl__rd_end(&r);
}

static const char *
check_list_topics(const sl_proto_list_topics *l)
{
    if (l->max_entries == 0 || l->max_entries > SL_PROTO_LIST_ENTRIES_MAX) {
        return "LIST_TOPICS max entries out of range";
    }
    return l->start_after.size == 0 || sl__name_ok(l->start_after) ? NULL : "topic name invalid";
}

int
sl_proto_encode_list_topics(void *buf, size_t cap, const sl_proto_list_topics *in, size_t *len_out)
{
    if (check_list_topics(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_LIST_TOPICS, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u16(&w, in->max_entries);
    sl__wr_str(&w, in->start_after);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_list_topics(sl__rd *r, sl_proto_list_topics *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->max_entries = sl__rd_u16(r);
    out->start_after = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    sl__rd_check(r, r->why == NULL ? check_list_topics(out) : NULL);
}

// ---- answers -----------------------------------------------------------------------------------

int
sl_proto_encode_admin_result(void *buf, size_t cap, const sl_proto_admin_result *in,
                             size_t *len_out)
{
    if (sl__check_status(&in->status, false) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_ADMIN_RESULT, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_status(&w, &in->status);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_admin_result(sl__rd *r, sl_proto_admin_result *out)
{
    out->correlation_id = sl__rd_u32(r);
    sl__rd_status(r, &out->status, false);
}

static bool
topic_entry_ok(const sl_proto_topic_entry *e)
{
    return sl__name_ok(e->name) && e->partition_count >= 1 &&
           e->partition_count <= SL_PROTO_PARTITIONS_MAX;
}

typedef void (*entry_reader)(sl__rd *r);

// True if raw[0..size) holds exactly count valid entries as entry_reader reads them.
static bool
raw_entries_ok(const uint8_t *raw, size_t size, uint16_t count, entry_reader read_entry)
{
    if (raw == NULL && (size != 0 || count != 0)) {
        return false;
    }
    sl__rd r;
    sl__rd_init(&r, raw, size);
    // Bounded by count <= SL_PROTO_LIST_ENTRIES_MAX, checked by the callers.
    for (uint16_t i = 0; i < count && r.why == NULL; i++) {
        read_entry(&r);
    }
    return sl__rd_end(&r) == SL_OK;
}

static void rd_topic_entry(sl__rd *r, sl_proto_topic_entry *e);
static void rd_stat(sl__rd *r, sl_proto_stat *s);

static void
rd_topic_entry_any(sl__rd *r)
{
    sl_proto_topic_entry e;
    rd_topic_entry(r, &e);
}

static void
rd_stat_any(sl__rd *r)
{
    sl_proto_stat s;
    rd_stat(r, &s);
}

// TOPIC_LIST: 0 u32 correlation_id | 4 u8 more | 5 u8 reserved | 6 u16 count |
// 8 count x (str name, u32 partition_count).
int
sl_proto_encode_topic_list(void *buf, size_t cap, const sl_proto_topic_list *in, size_t *len_out)
{
    if (in->entry_count > SL_PROTO_LIST_ENTRIES_MAX) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_TOPIC_LIST, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u8(&w, in->more ? 1 : 0);
    sl__wr_u8(&w, 0);
    sl__wr_u16(&w, in->entry_count);
    if (in->entries == NULL) {
        // A decoded list passed through: its raw entries, checked again before they are copied.
        if (!raw_entries_ok(in->raw, in->raw_size, in->entry_count, rd_topic_entry_any)) {
            return SL_EINVAL;
        }
        sl__wr_bytes(&w, in->raw, in->raw_size);
        return sl__wr_finish(&w, len_out, 0);
    }
    for (uint16_t i = 0; i < in->entry_count; i++) {
        if (!topic_entry_ok(&in->entries[i])) {
            return SL_EINVAL;
        }
        sl__wr_str(&w, in->entries[i].name);
        sl__wr_u32(&w, in->entries[i].partition_count);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_topic_entry(sl__rd *r, sl_proto_topic_entry *e)
{
    e->name = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    e->partition_count = sl__rd_u32(r);
    sl__rd_check(r, r->why == NULL && !topic_entry_ok(e) ? "topic list entry invalid" : NULL);
}

static void
rd_topic_list(sl__rd *r, sl_proto_topic_list *out)
{
    sl__rd_list_head(r, "TOPIC_LIST flag or count out of range", &out->correlation_id, &out->more,
                     &out->entry_count);
    out->entries = NULL;
    out->raw = r->p;
    // Bounded by entry_count <= SL_PROTO_LIST_ENTRIES_MAX; a failed read ends the loop.
    for (uint16_t i = 0; i < out->entry_count && r->why == NULL; i++) {
        sl_proto_topic_entry e;
        rd_topic_entry(r, &e);
    }
    out->raw_size = r->why == NULL ? (size_t)(r->p - out->raw) : 0;
}

void
sl_proto_topic_list_init(sl_proto_cursor *c, const sl_proto_topic_list *list)
{
    c->pos = list->raw;
    c->end = list->raw != NULL ? list->raw + list->raw_size : NULL;
    c->left = list->raw != NULL ? list->entry_count : 0;
}

SL__PROTO_CURSOR_NEXT(sl_proto_topic_list_next, sl_proto_topic_entry, rd_topic_entry)

// TOPIC_INFO: 0 u32 correlation_id | 4 topic config | 40 str topic |
// partition_count x (u64 log_start, u64 log_end, u64 durable, u64 backlog_bytes).
int
sl_proto_encode_topic_info(void *buf, size_t cap, const sl_proto_topic_info *in, size_t *len_out)
{
    if (!sl__topic_config_ok(&in->config) || !sl__name_ok(in->topic)) {
        return SL_EINVAL;
    }
    if (in->partitions == NULL && in->raw == NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_TOPIC_INFO, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_topic_config(&w, &in->config);
    sl__wr_str(&w, in->topic);
    if (in->partitions == NULL) {
        // A decoded TOPIC_INFO passed through: fixed-size entries, any values are valid.
        sl__wr_bytes(&w, in->raw, (size_t)in->config.partition_count * PARTITION_INFO_BYTES);
        return sl__wr_finish(&w, len_out, 0);
    }
    for (uint32_t i = 0; i < in->config.partition_count; i++) {
        const sl_proto_partition_info *p = &in->partitions[i];
        sl__wr_u64(&w, p->log_start_offset);
        sl__wr_u64(&w, p->log_end_offset);
        sl__wr_u64(&w, p->durable_offset);
        sl__wr_u64(&w, p->backlog_bytes);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_topic_info(sl__rd *r, sl_proto_topic_info *out)
{
    out->correlation_id = sl__rd_u32(r);
    sl__rd_topic_config(r, &out->config);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    sl__rd_check(r, r->why == NULL && !sl__name_ok(out->topic) ? "topic name invalid" : NULL);
    out->partitions = NULL;
    // partition_count <= SL_PROTO_PARTITIONS_MAX was checked with the config: no overflow.
    size_t size = r->why == NULL ? (size_t)out->config.partition_count * PARTITION_INFO_BYTES : 0;
    out->raw = sl__rd_take(r, size);
}

void
sl_proto_topic_info_partition(const sl_proto_topic_info *info, uint32_t i,
                              sl_proto_partition_info *out)
{
    SL_ASSERT(info->raw != NULL && i < info->config.partition_count);
    const uint8_t *p = info->raw + (size_t)i * PARTITION_INFO_BYTES;
    memcpy(&out->log_start_offset, p, 8);
    memcpy(&out->log_end_offset, p + 8, 8);
    memcpy(&out->durable_offset, p + 16, 8);
    memcpy(&out->backlog_bytes, p + 24, 8);
}

// Stat names are printable ASCII without spaces (Prometheus-style names with labels).
static bool
stat_name_ok(sl_proto_str name)
{
    if (!sl__str_ok(name, 1, SL_PROTO_STAT_NAME_MAX)) {
        return false;
    }
    for (uint16_t i = 0; i < name.size; i++) {
        if (name.data[i] <= ' ' || name.data[i] > '~') {
            return false;
        }
    }
    return true;
}

// STATS_RESULT: 0 u32 correlation_id | 4 u16 count | 6 u16 reserved |
// 8 count x (str name, u64 value).
int
sl_proto_encode_stats_result(void *buf, size_t cap, const sl_proto_stats_result *in,
                             size_t *len_out)
{
    if (in->entry_count > SL_PROTO_LIST_ENTRIES_MAX) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_STATS_RESULT, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u16(&w, in->entry_count);
    sl__wr_u16(&w, 0);
    if (in->entries == NULL) {
        // A decoded list passed through: its raw entries, checked again before they are copied.
        if (!raw_entries_ok(in->raw, in->raw_size, in->entry_count, rd_stat_any)) {
            return SL_EINVAL;
        }
        sl__wr_bytes(&w, in->raw, in->raw_size);
        return sl__wr_finish(&w, len_out, 0);
    }
    for (uint16_t i = 0; i < in->entry_count; i++) {
        if (!stat_name_ok(in->entries[i].name)) {
            return SL_EINVAL;
        }
        sl__wr_str(&w, in->entries[i].name);
        sl__wr_u64(&w, in->entries[i].value);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_stat(sl__rd *r, sl_proto_stat *s)
{
    s->name = sl__rd_str(r, SL_PROTO_STAT_NAME_MAX);
    s->value = sl__rd_u64(r);
    sl__rd_check(r, r->why == NULL && !stat_name_ok(s->name) ? "stat name invalid" : NULL);
}

static void
rd_stats_result(sl__rd *r, sl_proto_stats_result *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->entry_count = sl__rd_u16(r);
    sl__rd_zero(r, 2);
    out->entries = NULL;
    if (out->entry_count > SL_PROTO_LIST_ENTRIES_MAX) {
        sl__rd_fail(r, "STATS_RESULT count out of range");
    }
    out->raw = r->p;
    // Bounded by entry_count <= SL_PROTO_LIST_ENTRIES_MAX; a failed read ends the loop.
    for (uint16_t i = 0; i < out->entry_count && r->why == NULL; i++) {
        sl_proto_stat s;
        rd_stat(r, &s);
    }
    out->raw_size = r->why == NULL ? (size_t)(r->p - out->raw) : 0;
}

void
sl_proto_stats_init(sl_proto_cursor *c, const sl_proto_stats_result *stats)
{
    c->pos = stats->raw;
    c->end = stats->raw != NULL ? stats->raw + stats->raw_size : NULL;
    c->left = stats->raw != NULL ? stats->entry_count : 0;
}

SL__PROTO_CURSOR_NEXT(sl_proto_stats_next, sl_proto_stat, rd_stat)

// ---- dispatch ----------------------------------------------------------------------------------

int
sl__proto_decode_admin(uint8_t type, sl__rd *r, sl_frame *out)
{
    switch (type) {
    case SL_FRAME_CREATE_TOPIC:
        rd_create_topic(r, &out->u.create_topic);
        return SL_OK;
    case SL_FRAME_DELETE_TOPIC:
    case SL_FRAME_DESCRIBE_TOPIC:
    case SL_FRAME_STATS:
        rd_topic_request(type, r, &out->u.topic_request);
        return SL_OK;
    case SL_FRAME_LIST_TOPICS:
        rd_list_topics(r, &out->u.list_topics);
        return SL_OK;
    case SL_FRAME_ADMIN_RESULT:
        rd_admin_result(r, &out->u.admin_result);
        return SL_OK;
    case SL_FRAME_TOPIC_LIST:
        rd_topic_list(r, &out->u.topic_list);
        return SL_OK;
    case SL_FRAME_TOPIC_INFO:
        rd_topic_info(r, &out->u.topic_info);
        return SL_OK;
    case SL_FRAME_STATS_RESULT:
        rd_stats_result(r, &out->u.stats_result);
        return SL_OK;
    default:
        return SL_ENOENT;
    }
}

SL__PROTO_DECODER(create_topic, sl_proto_create_topic)
SL__PROTO_DECODER(list_topics, sl_proto_list_topics)
SL__PROTO_DECODER(admin_result, sl_proto_admin_result)
SL__PROTO_DECODER(topic_list, sl_proto_topic_list)
SL__PROTO_DECODER(topic_info, sl_proto_topic_info)
SL__PROTO_DECODER(stats_result, sl_proto_stats_result)
