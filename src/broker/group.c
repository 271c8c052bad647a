// The consumer group coordinator: members join a (group, topic), the broker assigns the topic's
// partitions among the live members (range assignment in join order, one generation per change),
// and a partition moves only after the broker closed its old owner's stream, so two members never
// own one partition at once. Group streams track what is delivered and not committed: at most
// max_ack_pending records, redelivered from the committed offset after a failure or an ack
// timeout, and dead-lettered after max_redeliveries. Wire format: docs/protocol.md, section 10.
#include "broker/group.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "core/util.h"

// Defaults for what a JOIN_GROUP leaves at 0.
#define GROUP_HEARTBEATS_PER_SESSION 3u

// ---- lookup and lifecycle ----------------------------------------------------------------------

sl_group *
sl_group_find(sl_broker *b, const char *name, size_t name_size, const char *topic,
              size_t topic_size)
{
    for (sl_group *g = b->groups->list; g != NULL; g = g->next) {
        if (strlen(g->name) == name_size && memcmp(g->name, name, name_size) == 0 &&
            strlen(g->topic) == topic_size && memcmp(g->topic, topic, topic_size) == 0) {
            return g;
        }
    }
    return NULL;
}

int
sl_group_new(sl_broker *b, const char *name, const char *topic, uint32_t partition_count,
             sl_group **out)
{
    if (b->groups->count >= SL_GROUPS_MAX) {
        return SL_EFULL;
    }
    sl_group *g = sl_calloc(1, sizeof(*g));
    sl_group_part *parts = sl_calloc(partition_count, sizeof(*parts));
    if (g == NULL || parts == NULL) {
        sl_free(g, g != NULL ? sizeof(*g) : 0);
        sl_free(parts, parts != NULL ? partition_count * sizeof(*parts) : 0);
        return SL_ENOMEM;
    }
    sl__strlcpy(g->name, name, sizeof(g->name));
    sl__strlcpy(g->topic, topic, sizeof(g->topic));
    g->partition_count = partition_count;
    g->parts = parts;
    g->max_redeliveries = SL_PROTO_MAX_REDELIVERIES_DEFAULT;
    for (uint32_t i = 0; i < partition_count; i++) {
        parts[i].dlq_hold = UINT64_MAX;
    }
    g->next = b->groups->list;
    b->groups->list = g;
    b->groups->count++;
    *out = g;
    return SL_OK;
}

int
sl_groups_open(sl_broker *b, char *err, size_t err_size)
{
    b->groups = sl_calloc(1, sizeof(*b->groups));
    if (b->groups == NULL) {
        return SL_ENOMEM;
    }
    int rc = sl_group_store_load(b, err, err_size);
    for (sl_group *g = b->groups->list; rc == SL_OK && g != NULL; g = g->next) {
        sl_group_update_low(b, g);
    }
    return rc;
}

void
sl_groups_close(sl_broker *b)
{
    if (b->groups == NULL) {
        return;
    }
    sl_group *g = b->groups->list;
    while (g != NULL) {
        sl_group *next = g->next;
        if (g->dirty) {
            (void)sl_group_store_write(b, g);
        }
        for (uint32_t i = 0; i < g->member_count; i++) {
            sl_free(g->members[i], sizeof(*g->members[i]));
        }
        sl_free(g->parts, g->partition_count * sizeof(*g->parts));
        sl_free(g, sizeof(*g));
        g = next;
    }
    sl_free(b->groups, sizeof(*b->groups));
    b->groups = NULL;
}

// The group's invariants (debug builds, after every change of membership or delivery): each
// owner is a live member, each stream belongs to its partition's owner, and the redelivery levels
// are non-increasing. O(partitions x members). Inline: only debug builds call it.
static inline bool
group_check(const sl_group *g)
{
    for (uint32_t i = 0; i < g->partition_count; i++) {
        const sl_group_part *gp = &g->parts[i];
        bool live = gp->owner == NULL;
        for (uint32_t k = 0; k < g->member_count && !live; k++) {
            live = g->members[k] == gp->owner;
        }
        if (!live || (gp->stream != NULL && gp->stream->member != gp->owner)) {
            return false;
        }
        for (uint32_t d = 1; d < SL_GROUP_LEVELS; d++) {
            if (gp->level_end[d] > gp->level_end[d - 1]) {
                return false;
            }
        }
    }
    return g->member_count <= SL_PROTO_GROUP_MEMBERS_MAX;
}

// ---- watermark ---------------------------------------------------------------------------------

void
sl_group_update_low(sl_broker *b, sl_group *g)
{
    sl_topic *t = sl_topic_find(b, g->topic, strlen(g->topic));
    if (t == NULL || t->config.partition_count != g->partition_count) {
        return;
    }
    for (uint32_t i = 0; i < g->partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        uint64_t low = UINT64_MAX;
        // Bounded by SL_GROUPS_MAX: the slowest group on this topic partition.
        for (sl_group *o = b->groups->list; o != NULL; o = o->next) {
            if (o->partition_count == g->partition_count && strcmp(o->topic, g->topic) == 0 &&
                o->parts[i].has_commit) {
                low = SL_MIN(low, o->parts[i].committed);
            }
        }
        if (low == UINT64_MAX) {
            continue;
        }
        p->has_group = true;
        p->group_low = low;
        if (p->consumers == NULL) {
            sl_log_set_low_watermark(p->log, low);
        } else {
            sl_flow_update_low_position(p);
        }
    }
}

// ---- assignment --------------------------------------------------------------------------------

typedef struct assign_arg {
    sl_proto_assign a;
    uint32_t parts[SL_PROTO_PARTITIONS_MAX];
} assign_arg;

static int
encode_assign(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_assign(buf, cap, &((const assign_arg *)arg)->a, len);
}

static void
send_assign(sl_group *g, sl_group_member *m, uint32_t correlation_id)
{
    static assign_arg arg; // loop thread only; too large for the stack of a callback chain
    memset(&arg.a, 0, sizeof(arg.a));
    uint16_t n = 0;
    for (uint32_t i = 0; i < g->partition_count; i++) {
        if (g->parts[i].owner == m) {
            arg.parts[n++] = i;
        }
    }
    arg.a = (sl_proto_assign){
        .correlation_id = correlation_id,
        .generation = g->generation,
        .heartbeat_ms =
            SL_MAX(m->session_timeout_ms / GROUP_HEARTBEATS_PER_SESSION, SL_PROTO_HEARTBEAT_MS_MIN),
        .group = {g->name, (uint16_t)strlen(g->name)},
        .topic = {g->topic, (uint16_t)strlen(g->topic)},
        .member_id = {m->id, (uint16_t)strlen(m->id)},
        .partition_count = n,
        .partitions = arg.parts,
    };
    size_t cap = SL_BROKER_CONTROL_FRAME_BYTES + 3u * 256u + 4u * (size_t)n;
    if (sl_conn_encode(m->conn, cap, encode_assign, &arg) != SL_OK) {
        // The member's send allowance is full: it learns the generation from its next heartbeat.
        sl_broker_log(m->conn->broker, 1, "group %s: ASSIGN to %s not sent (send allowance full)",
                      g->name, m->id);
    }
}

// Closes the owner's stream of partition i: the partition is revoked before anyone else gets it.
static void
revoke_partition(sl_group *g, uint32_t i, const char *why)
{
    sl_group_part *gp = &g->parts[i];
    sl_stream *s = gp->stream;
    if (s == NULL) {
        return;
    }
    sl_conn *c = s->conn;
    sl_conn_send_error(
        c, s->id, SL_EBUSY, 0, 0,
        "partition %" PRIu32 " of %s revoked from %s (group %s, generation %" PRIu32 "): %s", i,
        g->topic, gp->owner != NULL ? gp->owner->id : "?", g->name, g->generation, why);
    sl_conn_stream_close(c, s); // clears gp->stream through sl_group_stream_closed
    SL_ASSERT(gp->stream == NULL);
}

// A new generation: range assignment over the members in join order. Partitions that change
// owner are revoked (stream closed) first; then every member hears its assignment.
static void
rebalance(sl_broker *b, sl_group *g, sl_group_member *joiner, uint32_t correlation_id)
{
    g->generation++;
    g->rebalances_total++;
    uint32_t n = g->member_count;
    for (uint32_t i = 0; i < g->partition_count; i++) {
        sl_group_member *owner = NULL;
        if (n > 0) {
            // Member k owns [k * P / n, (k + 1) * P / n): contiguous, deterministic.
            uint32_t k = (uint32_t)(((uint64_t)i * n) / g->partition_count);
            owner = g->members[k];
        }
        if (g->parts[i].owner != owner) {
            revoke_partition(g, i, "rebalance");
            g->parts[i].owner = owner;
        }
    }
    SL_DEBUG_ASSERT(group_check(g));
    sl_broker_log(b, 2, "group %s on %s: generation %" PRIu32 " with %" PRIu32 " members", g->name,
                  g->topic, g->generation, n);
    for (uint32_t k = 0; k < n; k++) {
        sl_group_member *m = g->members[k];
        send_assign(g, m, m == joiner ? correlation_id : 0);
    }
}

static sl_group_member *
member_find(sl_group *g, sl_proto_str id)
{
    for (uint32_t i = 0; i < g->member_count; i++) {
        if (strlen(g->members[i]->id) == id.size &&
            memcmp(g->members[i]->id, id.data, id.size) == 0) {
            return g->members[i];
        }
    }
    return NULL;
}

// Removes member k: its partitions are revoked and left unowned until the next rebalance.
static void
member_remove(sl_group *g, uint32_t k, const char *why)
{
    sl_group_member *m = g->members[k];
    for (uint32_t i = 0; i < g->partition_count; i++) {
        if (g->parts[i].owner == m) {
            revoke_partition(g, i, why);
            g->parts[i].owner = NULL;
        }
    }
    memmove(&g->members[k], &g->members[k + 1], (g->member_count - k - 1) * sizeof(g->members[0]));
    g->member_count--;
    sl_free(m, sizeof(*m));
}

// ---- frames ------------------------------------------------------------------------------------

static void
settings_from_join(sl_group_member *m, const sl_proto_join_group *j)
{
    m->session_timeout_ms =
        j->session_timeout_ms != 0 ? j->session_timeout_ms : SL_PROTO_SESSION_TIMEOUT_MS_DEFAULT;
    m->ack_timeout_ms =
        j->ack_timeout_ms != 0 ? j->ack_timeout_ms : SL_PROTO_ACK_TIMEOUT_MS_DEFAULT;
    m->max_ack_pending =
        j->max_ack_pending != 0 ? j->max_ack_pending : SL_PROTO_MAX_ACK_PENDING_DEFAULT;
    m->offset_reset = j->offset_reset;
    m->last_seen_ns = sl_now_ns();
}

static sl_group *
group_for_join(sl_conn *c, const sl_proto_join_group *j)
{
    sl_broker *b = c->broker;
    sl_topic *t = sl_topic_find(b, j->topic.data, j->topic.size);
    char msg[400];
    if (t == NULL) {
        snprintf(msg, sizeof(msg), "unknown topic '%.*s'", (int)j->topic.size, j->topic.data);
        sl_conn_admin_reply(c, j->correlation_id, SL_ENOENT, msg);
        return NULL;
    }
    sl_group *g = sl_group_find(b, j->group.data, j->group.size, j->topic.data, j->topic.size);
    if (g != NULL && g->partition_count != t->config.partition_count) {
        sl_conn_admin_reply(c, j->correlation_id, SL_EINVAL,
                            "the topic was recreated with another partition count; "
                            "use a new group name");
        return NULL;
    }
    if (g == NULL) {
        char name[SL_PROTO_GROUP_NAME_MAX + 1];
        memcpy(name, j->group.data, j->group.size);
        name[j->group.size] = '\0';
        int rc = sl_group_new(b, name, t->name, t->config.partition_count, &g);
        if (rc != SL_OK) {
            sl_conn_admin_reply(c, j->correlation_id, rc, "the broker holds its maximum of groups");
            return NULL;
        }
        g->max_redeliveries =
            j->max_redeliveries != 0 ? j->max_redeliveries : SL_PROTO_MAX_REDELIVERIES_DEFAULT;
    } else if (g->member_count == 0 && j->max_redeliveries != 0) {
        g->max_redeliveries = j->max_redeliveries; // the first live member sets it
    }
    return g;
}

static void
on_join(sl_conn *c, const sl_proto_join_group *j)
{
    sl_group *g = group_for_join(c, j);
    if (g == NULL) {
        return;
    }
    sl_group_member *m = j->member_id.size > 0 ? member_find(g, j->member_id) : NULL;
    if (m != NULL && m->conn == c) {
        settings_from_join(m, j); // a repeated join: same member, same generation
        send_assign(g, m, j->correlation_id);
        return;
    }
    if (g->member_count >= SL_PROTO_GROUP_MEMBERS_MAX) {
        sl_conn_admin_reply(c, j->correlation_id, SL_EFULL, "the group has its maximum of members");
        return;
    }
    m = sl_calloc(1, sizeof(*m));
    if (m == NULL) {
        sl_conn_admin_reply(c, j->correlation_id, SL_ENOMEM, "out of memory");
        return;
    }
    snprintf(m->id, sizeof(m->id), "m%" PRIu64 "-c%" PRIu64, ++g->next_member_seq, c->id);
    m->conn = c;
    settings_from_join(m, j);
    g->members[g->member_count++] = m;
    sl_broker_log(c->broker, 2, "group %s on %s: member %s joined from %s", g->name, g->topic,
                  m->id, c->peer);
    rebalance(c->broker, g, m, j->correlation_id);
}

static void
on_member_frame(sl_conn *c, uint8_t type, const sl_proto_group_member *gm)
{
    sl_group *g =
        sl_group_find(c->broker, gm->group.data, gm->group.size, gm->topic.data, gm->topic.size);
    sl_group_member *m = g != NULL ? member_find(g, gm->member_id) : NULL;
    if (m == NULL || m->conn != c) {
        sl_conn_admin_reply(c, gm->correlation_id, SL_ENOENT,
                            "not a member of this group (session expired?): join again");
        return;
    }
    if (type == SL_FRAME_LEAVE_GROUP) {
        for (uint32_t k = 0; k < g->member_count; k++) {
            if (g->members[k] == m) {
                sl_broker_log(c->broker, 2, "group %s on %s: member %s left", g->name, g->topic,
                              m->id);
                member_remove(g, k, "member left");
                break;
            }
        }
        sl_conn_admin_reply(c, gm->correlation_id, SL_OK, "left");
        rebalance(c->broker, g, NULL, 0);
        return;
    }
    m->last_seen_ns = sl_now_ns();
    if (gm->generation != g->generation) {
        send_assign(g, m, gm->correlation_id);
        return;
    }
    sl_conn_admin_reply(c, gm->correlation_id, SL_OK, "ok");
}

void
sl_group_frame(sl_conn *c, const sl_frame *f)
{
    switch (f->header.type) {
    case SL_FRAME_JOIN_GROUP:
        on_join(c, &f->u.join_group);
        break;
    case SL_FRAME_GROUP_HEARTBEAT:
    case SL_FRAME_LEAVE_GROUP:
        on_member_frame(c, f->header.type, &f->u.group_member);
        break;
    case SL_FRAME_LIST_GROUPS:
        sl_group_list(c, &f->u.list_groups);
        break;
    case SL_FRAME_DESCRIBE_GROUP:
        sl_group_describe(c, &f->u.describe_group);
        break;
    default:
        SL_ASSERT(false); // conn.c dispatches only these
    }
}

void
sl_groups_conn_closed(sl_conn *c)
{
    if (c->broker->groups == NULL) {
        return;
    }
    for (sl_group *g = c->broker->groups->list; g != NULL; g = g->next) {
        bool removed = false;
        // Bounded by the member count: each pass removes one or moves on.
        for (uint32_t k = 0; k < g->member_count;) {
            if (g->members[k]->conn == c) {
                sl_broker_log(c->broker, 2, "group %s on %s: member %s lost its connection",
                              g->name, g->topic, g->members[k]->id);
                member_remove(g, k, "connection lost");
                removed = true;
            } else {
                k++;
            }
        }
        if (removed) {
            rebalance(c->broker, g, NULL, 0);
        }
    }
}

// ---- group streams -----------------------------------------------------------------------------

static uint32_t
levels_above(const sl_group_part *gp, uint64_t offset)
{
    uint32_t d = 0;
    while (d < SL_GROUP_LEVELS && gp->level_end[d] > offset) {
        d++;
    }
    return d;
}

// Where a round of deliveries starts: the committed offset, past a dead letter in flight. A
// round that finds the head record unacknowledged counts a failure of it; past max_redeliveries
// it goes to the dead-letter topic instead of being delivered again.
static uint64_t
round_start(sl_broker *b, sl_group *g, uint32_t i)
{
    sl_group_part *gp = &g->parts[i];
    if (gp->dlq_hold != UINT64_MAX) {
        return gp->dlq_hold + 1;
    }
    if (levels_above(gp, gp->committed) == 0) {
        return gp->committed;
    }
    gp->head_failures++;
    if (gp->head_failures <= g->max_redeliveries) {
        return gp->committed;
    }
    if (sl_group_dead_letter(b, g, i, gp->committed) != SL_OK) {
        return gp->committed; // logged; it is delivered again and retried next round
    }
    gp->head_failures = 0;
    return gp->committed + 1;
}

static uint64_t
clamp_start(sl_partition *p, uint64_t offset)
{
    return SL_MIN(SL_MAX(offset, sl_log_start_offset(p->log)), p->end_offset);
}

static sl_group_member *
open_check(sl_conn *c, uint32_t id, sl_group *g, const sl_proto_open_consume *o, uint32_t *part)
{
    sl_group_member *m = NULL;
    for (uint32_t k = 0; g != NULL && k < g->member_count && m == NULL; k++) {
        m = g->members[k]->conn == c ? g->members[k] : NULL;
    }
    const char *why = NULL;
    if (m == NULL) {
        why = "this connection is not a member of the group: send JOIN_GROUP first";
    } else if (o->start_offset != 0 && o->start_offset != g->generation) {
        why = "stale generation: the group has rebalanced";
    } else if (o->partition == SL_PROTO_PARTITION_ANY) {
        for (uint32_t i = 0; i < g->partition_count && why == NULL; i++) {
            if (g->parts[i].owner == m && g->parts[i].stream == NULL) {
                *part = i;
                return m;
            }
        }
        why = "no assigned partition without a stream";
    } else if (o->partition >= g->partition_count || g->parts[o->partition].owner != m) {
        why = "partition not assigned to this member in the current generation";
    } else if (g->parts[o->partition].stream != NULL) {
        why = "the partition already has a stream";
    }
    if (why != NULL) {
        sl_conn_send_error(c, id, SL_EBUSY, 0, 0, "group %.*s: %s", (int)o->group.size,
                           o->group.data, why);
        return NULL;
    }
    *part = o->partition;
    return m;
}

void
sl_group_open_stream(sl_conn *c, uint32_t id, sl_topic *t, const sl_proto_open_consume *o)
{
    sl_broker *b = c->broker;
    sl_group *g = sl_group_find(b, o->group.data, o->group.size, t->name, strlen(t->name));
    if (g != NULL && g->partition_count != t->config.partition_count) {
        sl_conn_send_error(c, id, SL_EINVAL, 0, 0,
                           "group %s was made for %s with %" PRIu32
                           " partitions; it now has %" PRIu32,
                           g->name, t->name, g->partition_count, t->config.partition_count);
        return;
    }
    uint32_t i = 0;
    sl_group_member *m = open_check(c, id, g, o, &i);
    if (m == NULL) {
        return;
    }
    sl_group_part *gp = &g->parts[i];
    sl_partition *p = &t->partitions[i];
    if (!gp->has_commit) {
        uint64_t start =
            m->offset_reset == SL_OFFSET_RESET_LATEST ? p->end_offset : sl_log_start_offset(p->log);
        gp->committed = gp->commit_req = start;
        gp->has_commit = true;
        g->dirty = true;
    }
    gp->committed = clamp_start(p, gp->committed);
    sl_stream *s = sl_conn_stream_new(c, id, SL_STREAM_CONSUME, t);
    if (s == NULL) {
        return;
    }
    s->part = p;
    s->member = m;
    s->gpart = gp;
    s->committed = gp->committed;
    s->position = clamp_start(p, round_start(b, g, i));
    s->part_next = p->consumers;
    p->consumers = s;
    gp->stream = s;
    sl_group_update_low(b, g);
    sl_proto_stream_ok ok = {.kind = SL_STREAM_CONSUME,
                             .partition = i,
                             .start_offset = s->position,
                             .max_batch_bytes = c->max_frame - 64};
    sl_conn_send_stream_ok(c, id, &ok);
}

static sl_group *
group_of(sl_stream *s)
{
    // The part array is owned by exactly one group: find it by address (bounded by SL_GROUPS_MAX).
    for (sl_group *g = s->conn->broker->groups->list; g != NULL; g = g->next) {
        if (s->gpart >= g->parts && s->gpart < g->parts + g->partition_count) {
            return g;
        }
    }
    SL_ASSERT(false);
    return NULL;
}

static void
set_committed(sl_broker *b, sl_group *g, sl_group_part *gp, uint64_t committed)
{
    if (committed <= gp->committed && gp->has_commit) {
        return;
    }
    if (gp->has_commit) {
        g->committed_records.total += committed - gp->committed;
    }
    gp->committed = committed;
    gp->has_commit = true;
    gp->head_failures = 0;
    g->dirty = true;
    sl_stream *s = gp->stream;
    if (s != NULL) {
        s->committed = committed;
        s->position = SL_MAX(s->position, committed);
        s->unacked_since_ns = s->position > committed ? sl_now_ns() : 0;
    }
    sl_group_update_low(b, g);
}

void
sl_group_commit(sl_stream *s, uint64_t offset)
{
    sl_group_part *gp = s->gpart;
    sl_group *g = group_of(s);
    uint64_t delivered = SL_MAX(s->position, gp->level_end[0]);
    if (offset > delivered) {
        sl_conn_send_error(s->conn, s->id, SL_ERANGE, 0, 0,
                           "commit of offset %" PRIu64 " beyond what was delivered (%" PRIu64 ")",
                           offset, delivered);
        sl_conn_stream_close(s->conn, s);
        return;
    }
    if (offset <= gp->commit_req) {
        return; // an older cumulative commit
    }
    gp->commit_req = offset;
    set_committed(s->conn->broker, g, gp, SL_MIN(offset, gp->dlq_hold));
    sl_flow_deliver(s); // room under max_ack_pending again
}

void
sl_group_stream_closed(sl_stream *s)
{
    if (s->gpart->stream == s) {
        s->gpart->stream = NULL; // unacked records go to the next round, from committed
    }
    s->gpart = NULL;
    s->member = NULL;
}

bool
sl_group_ack_pending_full(const sl_stream *s)
{
    uint64_t unacked = s->position > s->committed ? s->position - s->committed : 0;
    return unacked >= s->member->max_ack_pending;
}

uint64_t
sl_group_deliver_limit(sl_stream *s, uint64_t want, uint16_t *redeliveries)
{
    const sl_group_part *gp = s->gpart;
    uint64_t unacked = s->position > s->committed ? s->position - s->committed : 0;
    if (unacked >= s->member->max_ack_pending) {
        return 0;
    }
    want = SL_MIN(want, s->member->max_ack_pending - unacked);
    uint32_t d = levels_above(gp, s->position);
    if (d > 0) {
        want = SL_MIN(want, gp->level_end[d - 1] - s->position);
    }
    *redeliveries = (uint16_t)d;
    return want;
}

void
sl_group_delivered(sl_stream *s, uint64_t first, uint64_t end, uint16_t redeliveries)
{
    sl_group_part *gp = s->gpart;
    if (redeliveries < SL_GROUP_LEVELS) {
        gp->level_end[redeliveries] = SL_MAX(gp->level_end[redeliveries], end);
    }
    if (redeliveries > 0) {
        group_of(s)->redeliveries_total += end - first;
    }
    if (s->unacked_since_ns == 0) {
        s->unacked_since_ns = sl_now_ns();
    }
    SL_DEBUG_ASSERT(group_check(group_of(s)));
}

// ---- the tick ----------------------------------------------------------------------------------

static void
tick_members(sl_broker *b, sl_group *g, int64_t now)
{
    bool removed = false;
    // Bounded by the member count: each pass removes one or moves on.
    for (uint32_t k = 0; k < g->member_count;) {
        sl_group_member *m = g->members[k];
        if (now - m->last_seen_ns > (int64_t)m->session_timeout_ms * 1000000) {
            sl_broker_log(b, 1, "group %s on %s: member %s missed its heartbeats (%" PRIu32 " ms)",
                          g->name, g->topic, m->id, m->session_timeout_ms);
            member_remove(g, k, "session timeout");
            removed = true;
        } else {
            k++;
        }
    }
    if (removed) {
        rebalance(b, g, NULL, 0);
    }
}

static void
tick_partition(sl_broker *b, sl_group *g, uint32_t i, int64_t now)
{
    sl_group_part *gp = &g->parts[i];
    if (gp->dlq_hold != UINT64_MAX && sl_group_dead_letter_done(b, g, gp)) {
        uint64_t held = gp->dlq_hold;
        gp->dlq_hold = UINT64_MAX;
        g->dlq_records_total++;
        set_committed(b, g, gp, SL_MAX(gp->commit_req, held + 1));
        gp->commit_req = SL_MAX(gp->commit_req, gp->committed);
    }
    sl_stream *s = gp->stream;
    if (s == NULL || s->unacked_since_ns == 0 || s->position <= s->committed) {
        return;
    }
    if (now - s->unacked_since_ns <= (int64_t)s->member->ack_timeout_ms * 1000000) {
        return;
    }
    // Ack timeout: deliver again from the committed offset.
    sl_broker_log(b, 3,
                  "group %s on %s partition %" PRIu32 ": %" PRIu64 " records unacked for "
                  "%" PRIu32 " ms; redelivering",
                  g->name, g->topic, i, s->position - s->committed, s->member->ack_timeout_ms);
    s->position = clamp_start(s->part, round_start(b, g, i));
    s->unacked_since_ns = s->position > s->committed ? now : 0;
    sl_flow_deliver(s);
}

void
sl_groups_tick(sl_broker *b, int64_t now)
{
    for (sl_group *g = b->groups->list; g != NULL; g = g->next) {
        double dt = g->rate_tick_ns == 0 ? 0 : (double)(now - g->rate_tick_ns) / 1e9;
        g->rate_tick_ns = now;
        sl_rate_tick(&g->committed_records, dt);
        tick_members(b, g, now);
        for (uint32_t i = 0; i < g->partition_count; i++) {
            tick_partition(b, g, i, now);
        }
        if (g->dirty && now - g->persisted_ns >= SL_GROUP_PERSIST_INTERVAL_MS * 1000000LL) {
            g->persisted_ns = now;
            if (sl_group_store_write(b, g) == SL_OK) {
                g->dirty = false;
            }
        }
    }
}
