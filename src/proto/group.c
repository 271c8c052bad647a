// Consumer group frames of the wire protocol (version 2): join, heartbeat, leave, the broker's
// ASSIGN, and the group admin requests (LIST_GROUPS, DESCRIBE_GROUP) with their answers. All are
// connection level and matched by a correlation id. Layouts (offset, size, meaning):
// docs/protocol.md, section 10.
//
//   JOIN_GROUP: 0 u32 correlation_id | 4 u32 session_timeout_ms | 8 u32 ack_timeout_ms |
//   12 u32 max_ack_pending | 16 u8 max_redeliveries | 17 u8 offset_reset | 18 u16 reserved |
//   20 str group | str topic | str member_id
#include "proto/proto_internal.h"

// One GROUP_INFO partition entry: u32, u16, u16, then four u64.
#define GROUP_PARTITION_BYTES 40u
// Fixed part of GROUP_INFO before its strings.
#define GROUP_INFO_FIXED_BYTES 36u

_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + GROUP_INFO_FIXED_BYTES +
                       2u * (2u + SL_PROTO_TOPIC_NAME_MAX) +
                       SL_PROTO_GROUP_MEMBERS_MAX *
                           (2u + SL_PROTO_MEMBER_ID_MAX + 2u + SL_PROTO_CLIENT_ID_MAX + 8u) +
                       SL_PROTO_PARTITIONS_MAX * GROUP_PARTITION_BYTES <=
                   SL_PROTO_FRAME_SIZE_MIN,
               "a GROUP_INFO with the most members and partitions fits the minimum frame");
_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + 20u + 3u * 251u + 4u * SL_PROTO_PARTITIONS_MAX <=
                   SL_PROTO_FRAME_SIZE_MIN,
               "an ASSIGN of every partition fits the minimum frame");
_Static_assert(SL_PROTO_MAX_REDELIVERIES_MAX <= UINT8_MAX, "max_redeliveries is a u8");

static bool
member_id_ok(sl_proto_str s, bool allow_empty)
{
    if (s.size == 0) {
        return allow_empty;
    }
    return s.size <= SL_PROTO_MEMBER_ID_MAX && sl__name_ok(s);
}

static bool
in_range_or_zero(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v == 0 || (v >= lo && v <= hi);
}

// ---- join / heartbeat / leave ------------------------------------------------------------------

static const char *
check_join(const sl_proto_join_group *j)
{
    if (!sl__name_ok(j->group) || !sl__name_ok(j->topic)) {
        return "group or topic name invalid";
    }
    if (!member_id_ok(j->member_id, true)) {
        return "member id invalid";
    }
    if (!in_range_or_zero(j->session_timeout_ms, SL_PROTO_SESSION_TIMEOUT_MS_MIN,
                          SL_PROTO_SESSION_TIMEOUT_MS_MAX) ||
        !in_range_or_zero(j->ack_timeout_ms, SL_PROTO_ACK_TIMEOUT_MS_MIN,
                          SL_PROTO_ACK_TIMEOUT_MS_MAX) ||
        j->max_ack_pending > SL_PROTO_MAX_ACK_PENDING_MAX ||
        j->max_redeliveries > SL_PROTO_MAX_REDELIVERIES_MAX) {
        return "JOIN_GROUP limit out of range";
    }
    if (j->offset_reset != SL_OFFSET_RESET_EARLIEST && j->offset_reset != SL_OFFSET_RESET_LATEST) {
        return "unknown offset reset";
    }
    return NULL;
}

int
sl_proto_encode_join_group(void *buf, size_t cap, const sl_proto_join_group *in, size_t *len_out)
{
    if (check_join(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_JOIN_GROUP, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u32(&w, in->session_timeout_ms);
    sl__wr_u32(&w, in->ack_timeout_ms);
    sl__wr_u32(&w, in->max_ack_pending);
    sl__wr_u8(&w, in->max_redeliveries);
    sl__wr_u8(&w, in->offset_reset);
    sl__wr_zero(&w, 2);
    sl__wr_str(&w, in->group);
    sl__wr_str(&w, in->topic);
    sl__wr_str(&w, in->member_id);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_join_group(sl__rd *r, sl_proto_join_group *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->session_timeout_ms = sl__rd_u32(r);
    out->ack_timeout_ms = sl__rd_u32(r);
    out->max_ack_pending = sl__rd_u32(r);
    out->max_redeliveries = sl__rd_u8(r);
    out->offset_reset = sl__rd_u8(r);
    sl__rd_zero(r, 2);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    out->member_id = sl__rd_str(r, SL_PROTO_MEMBER_ID_MAX);
    sl__rd_check(r, r->why == NULL ? check_join(out) : NULL);
}

static bool
is_member_frame(uint8_t type)
{
    return type == SL_FRAME_GROUP_HEARTBEAT || type == SL_FRAME_LEAVE_GROUP;
}

static const char *
check_member(const sl_proto_group_member *m)
{
    if (!sl__name_ok(m->group) || !sl__name_ok(m->topic)) {
        return "group or topic name invalid";
    }
    return member_id_ok(m->member_id, false) ? NULL : "member id invalid";
}

// GROUP_HEARTBEAT / LEAVE_GROUP: 0 u32 correlation_id | 4 u32 generation | 8 str group |
// str topic | str member_id.
int
sl_proto_encode_group_member(void *buf, size_t cap, uint8_t type, const sl_proto_group_member *in,
                             size_t *len_out)
{
    if (!is_member_frame(type) || check_member(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, type, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u32(&w, in->generation);
    sl__wr_str(&w, in->group);
    sl__wr_str(&w, in->topic);
    sl__wr_str(&w, in->member_id);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_group_member(sl__rd *r, sl_proto_group_member *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->generation = sl__rd_u32(r);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    out->member_id = sl__rd_str(r, SL_PROTO_MEMBER_ID_MAX);
    sl__rd_check(r, r->why == NULL ? check_member(out) : NULL);
}

int
sl_proto_decode_group_member(uint8_t type, const void *payload, size_t len,
                             sl_proto_group_member *out)
{
    SL_ASSERT(out != NULL);
    if (!is_member_frame(type)) {
        return SL_EINVAL;
    }
    sl__rd r;
    sl__rd_init(&r, payload, len);
    rd_group_member(&r, out);
    return sl__rd_end(&r);
}

// ---- ASSIGN ------------------------------------------------------------------------------------

// ASSIGN: 0 u32 correlation_id | 4 u32 generation | 8 u32 heartbeat_ms | 12 str group | str topic
// | str member_id | u16 count | u16 reserved | count x u32 partition (strictly increasing).
static const char *
check_assign_head(const sl_proto_assign *a)
{
    if (a->generation == 0) {
        return "ASSIGN generation 0";
    }
    if (a->heartbeat_ms < SL_PROTO_HEARTBEAT_MS_MIN ||
        a->heartbeat_ms > SL_PROTO_HEARTBEAT_MS_MAX) {
        return "ASSIGN heartbeat interval out of range";
    }
    if (!sl__name_ok(a->group) || !sl__name_ok(a->topic) || !member_id_ok(a->member_id, false)) {
        return "ASSIGN name or member id invalid";
    }
    return a->partition_count <= SL_PROTO_PARTITIONS_MAX ? NULL : "ASSIGN count out of range";
}

// Partitions must be increasing and below the partition limit (bounded by count).
static bool
partitions_ok(const uint32_t *parts, uint16_t count)
{
    for (uint16_t i = 0; i < count; i++) {
        if (parts[i] >= SL_PROTO_PARTITIONS_MAX || (i > 0 && parts[i] <= parts[i - 1])) {
            return false;
        }
    }
    return true;
}

int
sl_proto_encode_assign(void *buf, size_t cap, const sl_proto_assign *in, size_t *len_out)
{
    if (check_assign_head(in) != NULL ||
        (in->partitions == NULL && in->raw == NULL && in->partition_count > 0)) {
        return SL_EINVAL;
    }
    uint32_t parts[SL_PROTO_PARTITIONS_MAX];
    for (uint16_t i = 0; i < in->partition_count; i++) {
        parts[i] = in->partitions != NULL ? in->partitions[i] : sl_proto_assign_partition(in, i);
    }
    if (!partitions_ok(parts, in->partition_count)) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_ASSIGN, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u32(&w, in->generation);
    sl__wr_u32(&w, in->heartbeat_ms);
    sl__wr_str(&w, in->group);
    sl__wr_str(&w, in->topic);
    sl__wr_str(&w, in->member_id);
    sl__wr_u16(&w, in->partition_count);
    sl__wr_zero(&w, 2);
    for (uint16_t i = 0; i < in->partition_count; i++) {
        sl__wr_u32(&w, parts[i]);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_assign(sl__rd *r, sl_proto_assign *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->generation = sl__rd_u32(r);
    out->heartbeat_ms = sl__rd_u32(r);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    out->member_id = sl__rd_str(r, SL_PROTO_MEMBER_ID_MAX);
    out->partition_count = sl__rd_u16(r);
    sl__rd_zero(r, 2);
    out->partitions = NULL;
    sl__rd_check(r, r->why == NULL ? check_assign_head(out) : NULL);
    size_t size = r->why == NULL ? (size_t)out->partition_count * 4u : 0;
    out->raw = sl__rd_take(r, size);
    if (r->why == NULL) {
        uint32_t parts[SL_PROTO_PARTITIONS_MAX];
        for (uint16_t i = 0; i < out->partition_count; i++) {
            parts[i] = sl_proto_assign_partition(out, i);
        }
        sl__rd_check(r, partitions_ok(parts, out->partition_count)
                            ? NULL
                            : "ASSIGN partitions not increasing or out of range");
    }
}

uint32_t
sl_proto_assign_partition(const sl_proto_assign *a, uint16_t i)
{
    SL_ASSERT(i < a->partition_count);
    if (a->partitions != NULL) {
        return a->partitions[i];
    }
    uint32_t v;
    memcpy(&v, a->raw + (size_t)i * 4u, sizeof(v));
    return v;
}

// ---- LIST_GROUPS / GROUP_LIST ------------------------------------------------------------------

int
sl_proto_encode_list_groups(void *buf, size_t cap, const sl_proto_list_groups *in, size_t *len_out)
{
    if (in->max_entries == 0 || in->max_entries > SL_PROTO_LIST_ENTRIES_MAX) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_LIST_GROUPS, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u16(&w, in->max_entries);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_list_groups(sl__rd *r, sl_proto_list_groups *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->max_entries = sl__rd_u16(r);
    bool bad = out->max_entries == 0 || out->max_entries > SL_PROTO_LIST_ENTRIES_MAX;
    sl__rd_check(r, r->why == NULL && bad ? "LIST_GROUPS max entries out of range" : NULL);
}

static bool
group_entry_ok(const sl_proto_group_entry *e)
{
    return sl__name_ok(e->group) && sl__name_ok(e->topic) &&
           e->member_count <= SL_PROTO_GROUP_MEMBERS_MAX &&
           e->partition_count <= SL_PROTO_PARTITIONS_MAX;
}

// Entry: str group | str topic | u32 generation | u16 member_count | u16 reserved |
// u32 partition_count.
static void
rd_group_entry(sl__rd *r, sl_proto_group_entry *e)
{
    e->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    e->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    e->generation = sl__rd_u32(r);
    e->member_count = sl__rd_u16(r);
    sl__rd_zero(r, 2);
    e->partition_count = sl__rd_u32(r);
    sl__rd_check(r, r->why == NULL && !group_entry_ok(e) ? "group list entry invalid" : NULL);
}

static void
wr_group_entry(sl__wr *w, const sl_proto_group_entry *e)
{
    sl__wr_str(w, e->group);
    sl__wr_str(w, e->topic);
    sl__wr_u32(w, e->generation);
    sl__wr_u16(w, e->member_count);
    sl__wr_zero(w, 2);
    sl__wr_u32(w, e->partition_count);
}

// GROUP_LIST: 0 u32 correlation_id | 4 u8 more | 5 u8 reserved | 6 u16 count | 8 entries.
int
sl_proto_encode_group_list(void *buf, size_t cap, const sl_proto_group_list *in, size_t *len_out)
{
    if (in->entry_count > SL_PROTO_LIST_ENTRIES_MAX) {
        return SL_EINVAL;
    }
    sl_proto_cursor cur;
    sl_proto_group_list_init(&cur, in);
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_GROUP_LIST, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u8(&w, in->more ? 1 : 0);
    sl__wr_u8(&w, 0);
    sl__wr_u16(&w, in->entry_count);
    for (uint16_t i = 0; i < in->entry_count; i++) {
        sl_proto_group_entry e;
        if (in->entries != NULL) {
            e = in->entries[i];
        } else if (sl_proto_group_list_next(&cur, &e) != SL_OK) {
            return SL_EINVAL;
        }
        if (!group_entry_ok(&e)) {
            return SL_EINVAL;
        }
        wr_group_entry(&w, &e);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_group_list(sl__rd *r, sl_proto_group_list *out)
{
    sl__rd_list_head(r, "GROUP_LIST flag or count out of range", &out->correlation_id, &out->more,
                     &out->entry_count);
    out->entries = NULL;
    out->raw = r->p;
    // Bounded by entry_count <= SL_PROTO_LIST_ENTRIES_MAX; a failed read ends the loop.
    for (uint16_t i = 0; i < out->entry_count && r->why == NULL; i++) {
        sl_proto_group_entry e;
        rd_group_entry(r, &e);
    }
    out->raw_size = r->why == NULL ? (size_t)(r->p - out->raw) : 0;
}

void
sl_proto_group_list_init(sl_proto_cursor *c, const sl_proto_group_list *list)
{
    c->pos = list->raw;
    c->end = list->raw != NULL ? list->raw + list->raw_size : NULL;
    c->left = list->raw != NULL ? list->entry_count : 0;
}

SL__PROTO_CURSOR_NEXT(sl_proto_group_list_next, sl_proto_group_entry, rd_group_entry)

// ---- DESCRIBE_GROUP / GROUP_INFO ---------------------------------------------------------------

int
sl_proto_encode_describe_group(void *buf, size_t cap, const sl_proto_describe_group *in,
                               size_t *len_out)
{
    if (!sl__name_ok(in->group) || !sl__name_ok(in->topic)) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_DESCRIBE_GROUP, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_str(&w, in->group);
    sl__wr_str(&w, in->topic);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_describe_group(sl__rd *r, sl_proto_describe_group *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    bool bad = !sl__name_ok(out->group) || !sl__name_ok(out->topic);
    sl__rd_check(r, r->why == NULL && bad ? "group or topic name invalid" : NULL);
}

static bool
member_info_ok(const sl_proto_group_member_info *m)
{
    return member_id_ok(m->member_id, false) && sl__str_ok(m->peer, 0, SL_PROTO_CLIENT_ID_MAX);
}

// Member: str member_id | str peer | u32 session_timeout_ms | u32 max_ack_pending.
static void
rd_member_info(sl__rd *r, sl_proto_group_member_info *m)
{
    m->member_id = sl__rd_str(r, SL_PROTO_MEMBER_ID_MAX);
    m->peer = sl__rd_str(r, SL_PROTO_CLIENT_ID_MAX);
    m->session_timeout_ms = sl__rd_u32(r);
    m->max_ack_pending = sl__rd_u32(r);
    sl__rd_check(r, r->why == NULL && !member_info_ok(m) ? "group member entry invalid" : NULL);
}

static const char *
check_group_info_head(const sl_proto_group_info *g)
{
    if (!sl__name_ok(g->group) || !sl__name_ok(g->topic)) {
        return "group or topic name invalid";
    }
    if (g->member_count > SL_PROTO_GROUP_MEMBERS_MAX ||
        g->partition_count > SL_PROTO_PARTITIONS_MAX) {
        return "GROUP_INFO count out of range";
    }
    return NULL;
}

static bool
partition_info_ok(const sl_proto_group_partition_info *p, uint16_t member_count)
{
    return p->partition < SL_PROTO_PARTITIONS_MAX &&
           (p->owner == SL_PROTO_OWNER_NONE || p->owner < member_count) &&
           p->stall_reason <= SL_STALL_CAUGHT_UP;
}

static void
wr_partition_info(sl__wr *w, const sl_proto_group_partition_info *p)
{
    sl__wr_u32(w, p->partition);
    sl__wr_u16(w, p->owner);
    sl__wr_u16(w, p->stall_reason);
    sl__wr_u64(w, p->committed_offset);
    sl__wr_u64(w, p->delivered_offset);
    sl__wr_u64(w, p->log_end_offset);
    sl__wr_u64(w, (uint64_t)p->committed_timestamp_us);
}

// GROUP_INFO: 0 u32 correlation_id | 4 u32 generation | 8 u64 rebalances_total |
// 16 u64 redeliveries_total | 24 u64 dlq_records_total | 32 u16 member_count |
// 34 u16 partition_count | 36 str group | str topic | members | partitions (40 bytes each).
int
sl_proto_encode_group_info(void *buf, size_t cap, const sl_proto_group_info *in, size_t *len_out)
{
    bool have = (in->members != NULL || in->raw_members != NULL || in->member_count == 0) &&
                (in->partitions != NULL || in->raw_partitions != NULL || in->partition_count == 0);
    if (check_group_info_head(in) != NULL || !have) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_GROUP_INFO, 0);
    sl__wr_u32(&w, in->correlation_id);
    sl__wr_u32(&w, in->generation);
    sl__wr_u64(&w, in->rebalances_total);
    sl__wr_u64(&w, in->redeliveries_total);
    sl__wr_u64(&w, in->dlq_records_total);
    sl__wr_u16(&w, in->member_count);
    sl__wr_u16(&w, in->partition_count);
    sl__wr_str(&w, in->group);
    sl__wr_str(&w, in->topic);
    sl_proto_cursor cur;
    sl_proto_group_members_init(&cur, in);
    for (uint16_t i = 0; i < in->member_count; i++) {
        sl_proto_group_member_info m;
        if (in->members != NULL) {
            m = in->members[i];
        } else if (sl_proto_group_members_next(&cur, &m) != SL_OK) {
            return SL_EINVAL;
        }
        if (!member_info_ok(&m)) {
            return SL_EINVAL;
        }
        sl__wr_str(&w, m.member_id);
        sl__wr_str(&w, m.peer);
        sl__wr_u32(&w, m.session_timeout_ms);
        sl__wr_u32(&w, m.max_ack_pending);
    }
    for (uint16_t i = 0; i < in->partition_count; i++) {
        sl_proto_group_partition_info p;
        if (in->partitions != NULL) {
            p = in->partitions[i];
        } else {
            sl_proto_group_info_partition(in, i, &p);
        }
        if (!partition_info_ok(&p, in->member_count)) {
            return SL_EINVAL;
        }
        wr_partition_info(&w, &p);
    }
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_group_info(sl__rd *r, sl_proto_group_info *out)
{
    out->correlation_id = sl__rd_u32(r);
    out->generation = sl__rd_u32(r);
    out->rebalances_total = sl__rd_u64(r);
    out->redeliveries_total = sl__rd_u64(r);
    out->dlq_records_total = sl__rd_u64(r);
    out->member_count = sl__rd_u16(r);
    out->partition_count = sl__rd_u16(r);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    out->members = NULL;
    out->partitions = NULL;
    sl__rd_check(r, r->why == NULL ? check_group_info_head(out) : NULL);
    out->raw_members = r->p;
    // Bounded by member_count <= SL_PROTO_GROUP_MEMBERS_MAX; a failed read ends the loop.
    for (uint16_t i = 0; i < out->member_count && r->why == NULL; i++) {
        sl_proto_group_member_info m;
        rd_member_info(r, &m);
    }
    out->raw_members_size = r->why == NULL ? (size_t)(r->p - out->raw_members) : 0;
    size_t size = r->why == NULL ? (size_t)out->partition_count * GROUP_PARTITION_BYTES : 0;
    out->raw_partitions = sl__rd_take(r, size);
    for (uint16_t i = 0; i < out->partition_count && r->why == NULL; i++) {
        sl_proto_group_partition_info p;
        sl_proto_group_info_partition(out, i, &p);
        if (!partition_info_ok(&p, out->member_count)) {
            sl__rd_fail(r, "GROUP_INFO partition entry invalid");
        }
    }
}

void
sl_proto_group_members_init(sl_proto_cursor *c, const sl_proto_group_info *info)
{
    c->pos = info->raw_members;
    c->end = info->raw_members != NULL ? info->raw_members + info->raw_members_size : NULL;
    c->left = info->raw_members != NULL ? info->member_count : 0;
}

SL__PROTO_CURSOR_NEXT(sl_proto_group_members_next, sl_proto_group_member_info, rd_member_info)

void
sl_proto_group_info_partition(const sl_proto_group_info *info, uint16_t i,
                              sl_proto_group_partition_info *out)
{
    SL_ASSERT(i < info->partition_count);
    if (info->partitions != NULL) {
        *out = info->partitions[i];
        return;
    }
    SL_ASSERT(info->raw_partitions != NULL);
    const uint8_t *p = info->raw_partitions + (size_t)i * GROUP_PARTITION_BYTES;
    memcpy(&out->partition, p, 4);
    memcpy(&out->owner, p + 4, 2);
    memcpy(&out->stall_reason, p + 6, 2);
    memcpy(&out->committed_offset, p + 8, 8);
    memcpy(&out->delivered_offset, p + 16, 8);
    memcpy(&out->log_end_offset, p + 24, 8);
    memcpy(&out->committed_timestamp_us, p + 32, 8);
}

const char *
sl_stall_reason_name(uint16_t reason)
{
    static const char *const names[] = {"none", "no_demand", "ack_pending", "write_full",
                                        "caught_up"};
    return reason < SL_ARRAY_LEN(names) ? names[reason] : "unknown";
}

// ---- dispatch ----------------------------------------------------------------------------------

int
sl__proto_decode_group(uint8_t type, sl__rd *r, sl_frame *out)
{
    switch (type) {
    case SL_FRAME_JOIN_GROUP:
        rd_join_group(r, &out->u.join_group);
        return SL_OK;
    case SL_FRAME_GROUP_HEARTBEAT:
    case SL_FRAME_LEAVE_GROUP:
        rd_group_member(r, &out->u.group_member);
        return SL_OK;
    case SL_FRAME_ASSIGN:
        rd_assign(r, &out->u.assign);
        return SL_OK;
    case SL_FRAME_LIST_GROUPS:
        rd_list_groups(r, &out->u.list_groups);
        return SL_OK;
    case SL_FRAME_DESCRIBE_GROUP:
        rd_describe_group(r, &out->u.describe_group);
        return SL_OK;
    case SL_FRAME_GROUP_LIST:
        rd_group_list(r, &out->u.group_list);
        return SL_OK;
    case SL_FRAME_GROUP_INFO:
        rd_group_info(r, &out->u.group_info);
        return SL_OK;
    default:
        return SL_ENOENT;
    }
}

SL__PROTO_DECODER(join_group, sl_proto_join_group)
SL__PROTO_DECODER(assign, sl_proto_assign)
SL__PROTO_DECODER(list_groups, sl_proto_list_groups)
SL__PROTO_DECODER(describe_group, sl_proto_describe_group)
SL__PROTO_DECODER(group_list, sl_proto_group_list)
SL__PROTO_DECODER(group_info, sl_proto_group_info)
