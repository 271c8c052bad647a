// Group admin answers: LIST_GROUPS (every group and topic the broker coordinates) and
// DESCRIBE_GROUP (members, owners, committed offsets, lag and why each owner's stream is stalled),
// for `sluice group list|describe`. Layouts: docs/protocol.md, section 10.
#include "broker/group.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "core/util.h"

// Bytes reserved for one GROUP_LIST or GROUP_INFO (both fit the minimum frame by construction).
#define GROUP_ADMIN_FRAME_BYTES SL_PROTO_FRAME_SIZE_MIN
// Bytes read to learn the timestamp at a committed offset (one batch header is enough).
#define TIMESTAMP_READ_BYTES 4096u

static int
encode_group_list(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_group_list(buf, cap, arg, len);
}

static int
encode_group_info(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_group_info(buf, cap, arg, len);
}

void
sl_group_list(sl_conn *c, const sl_proto_list_groups *l)
{
    enum { PAGE_MAX = 256 };
    static sl_proto_group_entry entries[PAGE_MAX]; // loop thread only
    uint16_t want = (uint16_t)SL_MIN(l->max_entries, PAGE_MAX);
    uint16_t n = 0;
    bool more = false;
    for (sl_group *g = c->broker->groups->list; g != NULL; g = g->next) {
        if (n == want) {
            more = true;
            break;
        }
        entries[n++] = (sl_proto_group_entry){
            .group = {g->name, (uint16_t)strlen(g->name)},
            .topic = {g->topic, (uint16_t)strlen(g->topic)},
            .generation = g->generation,
            .member_count = (uint16_t)g->member_count,
            .partition_count = g->partition_count,
        };
    }
    sl_proto_group_list list = {
        .correlation_id = l->correlation_id, .more = more, .entry_count = n, .entries = entries};
    if (sl_conn_encode(c, GROUP_ADMIN_FRAME_BYTES, encode_group_list, &list) != SL_OK) {
        sl_conn_admin_reply(c, l->correlation_id, SL_EFULL, "send allowance full; retry");
    }
}

// Timestamp (us) of the batch holding offset in p, or 0 when nothing is there.
static int64_t
timestamp_at(sl_broker *b, sl_partition *p, uint64_t offset)
{
    if (offset >= p->end_offset) {
        return 0;
    }
    size_t len = 0;
    size_t cap = SL_MIN((size_t)TIMESTAMP_READ_BYTES, b->scratch_size);
    if (sl_log_read(p->log, offset, cap, b->scratch, b->scratch_size, &len) != SL_OK || len == 0) {
        return 0;
    }
    sl_batch_header h;
    return sl_batch_header_decode(b->scratch, len, &h) == SL_OK ? h.first_timestamp_us : 0;
}

static void
fill_partitions(sl_broker *b, sl_group *g, sl_topic *t, sl_proto_group_partition_info *parts)
{
    for (uint32_t i = 0; i < g->partition_count; i++) {
        sl_group_part *gp = &g->parts[i];
        sl_partition *p = t != NULL ? &t->partitions[i] : NULL;
        uint16_t owner = SL_PROTO_OWNER_NONE;
        for (uint32_t k = 0; k < g->member_count; k++) {
            owner = g->members[k] == gp->owner ? (uint16_t)k : owner;
        }
        parts[i] = (sl_proto_group_partition_info){
            .partition = i,
            .owner = owner,
            .stall_reason = gp->stream != NULL ? sl_stream_stall_reason(gp->stream) : 0,
            .committed_offset = gp->committed,
            .delivered_offset = gp->stream != NULL ? gp->stream->position : gp->committed,
            .log_end_offset = p != NULL ? p->end_offset : 0,
            .committed_timestamp_us = p != NULL ? timestamp_at(b, p, gp->committed) : 0,
        };
    }
}

void
sl_group_describe(sl_conn *c, const sl_proto_describe_group *d)
{
    static sl_proto_group_member_info members[SL_PROTO_GROUP_MEMBERS_MAX]; // loop thread only
    static sl_proto_group_partition_info parts[SL_PROTO_PARTITIONS_MAX];
    sl_broker *b = c->broker;
    sl_group *g = sl_group_find(b, d->group.data, d->group.size, d->topic.data, d->topic.size);
    if (g == NULL) {
        char msg[600];
        snprintf(msg, sizeof(msg), "no group '%.*s' on topic '%.*s'", (int)d->group.size,
                 d->group.data, (int)d->topic.size, d->topic.data);
        sl_conn_admin_reply(c, d->correlation_id, SL_ENOENT, msg);
        return;
    }
    sl_topic *t = sl_topic_find(b, g->topic, strlen(g->topic));
    if (t != NULL && t->config.partition_count != g->partition_count) {
        t = NULL;
    }
    for (uint32_t k = 0; k < g->member_count; k++) {
        sl_group_member *m = g->members[k];
        members[k] = (sl_proto_group_member_info){
            .member_id = {m->id, (uint16_t)strlen(m->id)},
            .peer = {m->conn->peer, (uint16_t)strlen(m->conn->peer)},
            .session_timeout_ms = m->session_timeout_ms,
            .max_ack_pending = m->max_ack_pending,
        };
    }
    fill_partitions(b, g, t, parts);
    sl_proto_group_info info = {
        .correlation_id = d->correlation_id,
        .generation = g->generation,
        .rebalances_total = g->rebalances_total,
        .redeliveries_total = g->redeliveries_total,
        .dlq_records_total = g->dlq_records_total,
        .group = {g->name, (uint16_t)strlen(g->name)},
        .topic = {g->topic, (uint16_t)strlen(g->topic)},
        .member_count = (uint16_t)g->member_count,
        .partition_count = (uint16_t)g->partition_count,
        .members = members,
        .partitions = parts,
    };
    if (sl_conn_encode(c, GROUP_ADMIN_FRAME_BYTES, encode_group_info, &info) != SL_OK) {
        sl_conn_admin_reply(c, d->correlation_id, SL_EFULL, "send allowance full; retry");
    }
}

// ---- predictions -------------------------------------------------------------------------------

// Rates under this (records/s) count as nothing: a smoothed rate decays toward 0 and never
// reaches it.
#define PREDICT_IDLE_RECORDS_PER_S 0.01

static uint32_t
owners_of(const sl_group *g)
{
    uint32_t owners = 0;
    for (uint32_t k = 0; k < g->member_count; k++) {
        bool owns = false;
        for (uint32_t i = 0; i < g->partition_count && !owns; i++) {
            owns = g->parts[i].owner == g->members[k];
        }
        owners += owns ? 1u : 0u;
    }
    return owners;
}

static uint32_t
recommend(const sl_group *g, const sl_group_predict *p)
{
    if (p->in_records_per_s < PREDICT_IDLE_RECORDS_PER_S) {
        return p->lag_records > 0 || p->owners > 0 ? 1u : 0u;
    }
    if (p->per_member_records_per_s < PREDICT_IDLE_RECORDS_PER_S) {
        return SL_MAX(p->owners, 1u); // nothing measured yet: keep what there is
    }
    double want = ceil(p->in_records_per_s / p->per_member_records_per_s);
    return (uint32_t)SL_MIN(want, (double)SL_MAX(g->partition_count, 1u));
}

void
sl_group_predict_get(sl_broker *b, const sl_group *g, sl_group_predict *out)
{
    *out = (sl_group_predict){.consumed_records_per_s = g->committed_records.per_s};
    sl_topic *t = sl_topic_find(b, g->topic, strlen(g->topic));
    if (t != NULL && t->config.partition_count != g->partition_count) {
        t = NULL;
    }
    for (uint32_t i = 0; t != NULL && i < g->partition_count; i++) {
        const sl_partition *p = &t->partitions[i];
        out->in_records_per_s += p->in_records.per_s;
        out->lag_records +=
            p->end_offset > g->parts[i].committed ? p->end_offset - g->parts[i].committed : 0;
    }
    out->owners = owners_of(g);
    if (out->owners > 0 && out->consumed_records_per_s >= PREDICT_IDLE_RECORDS_PER_S) {
        out->per_member_records_per_s = out->consumed_records_per_s / out->owners;
    }
    double lag = (double)out->lag_records;
    double consumed = out->consumed_records_per_s;
    out->lag_seconds = lag == 0                                 ? 0
                       : consumed >= PREDICT_IDLE_RECORDS_PER_S ? lag / consumed
                                                                : INFINITY;
    double net = consumed - out->in_records_per_s;
    out->drain_seconds = lag == 0 ? 0 : net >= PREDICT_IDLE_RECORDS_PER_S ? lag / net : INFINITY;
    out->consumers_recommended = recommend(g, out);
}
