// A group consumer's membership: JOIN_GROUP until the broker answers with an ASSIGN, heartbeats
// at the interval it asks for, and each new assignment applied to the consumer's partitions
// (streams for new ones, revoked ones dropped with their unread records: their new owner gets
// them). A lost connection or an expired membership means joining again. Runs on the I/O thread
// under io.mutex, except the assign_cb. Protocol: docs/protocol.md, section 10.
#include <string.h>

#include <sluice/error.h>

#include "client/consumer_internal.h"
#include "core/util.h"

// A refused join (group full, broker busy) is retried after this long.
#define GROUP_REJOIN_MS 1000

static int
enc_join(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_join_group j = {
        .correlation_id = c->grp.join_correlation,
        .session_timeout_ms = c->cfg.session_timeout_ms,
        .ack_timeout_ms = c->cfg.ack_timeout_ms,
        .max_ack_pending = c->cfg.max_ack_pending,
        .max_redeliveries = c->cfg.max_redeliveries,
        .offset_reset =
            c->cfg.start == SL_START_LATEST ? SL_OFFSET_RESET_LATEST : SL_OFFSET_RESET_EARLIEST,
        .group = {c->group, (uint16_t)strlen(c->group)},
        .topic = {c->topic, (uint16_t)strlen(c->topic)},
        .member_id = {c->grp.member_id, (uint16_t)strlen(c->grp.member_id)},
    };
    return sl_proto_encode_join_group(at, room, &j, len);
}

// Heartbeat or leave: c->member_type says which.
static int
enc_member(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_group_member m = {
        .correlation_id = ++c->grp.next_correlation,
        .generation = c->member_type == SL_FRAME_GROUP_HEARTBEAT ? c->grp.generation : 0,
        .group = {c->group, (uint16_t)strlen(c->group)},
        .topic = {c->topic, (uint16_t)strlen(c->topic)},
        .member_id = {c->grp.member_id, (uint16_t)strlen(c->grp.member_id)},
    };
    return sl_proto_encode_group_member(at, room, c->member_type, &m, len);
}

void
sl__group_pump(sl_consumer *c, int64_t now, int64_t *wake_at)
{
    sl__cgroup *g = &c->grp;
    if (g->leave_wanted && !g->leave_sent) {
        c->member_type = SL_FRAME_LEAVE_GROUP;
        g->leave_sent = g->generation == 0 || sl__consumer_encode(c, enc_member);
        pthread_cond_broadcast(&c->io.cond);
        return;
    }
    if (g->generation == 0) {
        if (g->join_sent || c->closing) {
            return;
        }
        if (now < g->rejoin_at_ns) {
            *wake_at = SL_MIN(*wake_at, g->rejoin_at_ns);
            return;
        }
        g->join_correlation = ++g->next_correlation;
        g->join_sent = sl__consumer_encode(c, enc_join);
        return;
    }
    if (now >= g->heartbeat_at_ns) {
        c->member_type = SL_FRAME_GROUP_HEARTBEAT;
        if (sl__consumer_encode(c, enc_member)) {
            g->heartbeat_at_ns = now + (int64_t)g->heartbeat_ms * 1000000;
        }
    }
    *wake_at = SL_MIN(*wake_at, g->heartbeat_at_ns);
}

// Forgets every partition (and the records not yet handed out): membership is gone.
static void
drop_all(sl_consumer *c)
{
    for (uint32_t i = 0; i < c->part_count; i++) {
        if (c->parts[i].active) {
            sl__consumer_part_drop(c, &c->parts[i]);
        }
    }
    c->grp.generation = 0;
    c->grp.join_sent = false;
    c->grp.notify = true;
    c->grp.notify_generation = 0;
}

static void
on_assign(sl_consumer *c, const sl_proto_assign *a, int64_t now)
{
    sl__cgroup *g = &c->grp;
    if (a->generation != g->generation) {
        g->rebalances_seen++;
    }
    memcpy(g->member_id, a->member_id.data, a->member_id.size);
    g->member_id[a->member_id.size] = '\0';
    g->generation = a->generation;
    g->heartbeat_ms = a->heartbeat_ms;
    g->heartbeat_at_ns = now + (int64_t)a->heartbeat_ms * 1000000;
    g->join_sent = false;
    uint16_t k = 0;
    // Both lists are increasing: one merge pass over the partitions.
    for (uint32_t i = 0; i < c->part_count; i++) {
        bool mine = k < a->partition_count && sl_proto_assign_partition(a, k) == i;
        k += mine ? 1 : 0;
        sl__cpart *p = &c->parts[i];
        if (p->active && !mine) {
            sl__consumer_part_drop(c, p); // revoked: the broker closed its stream already
        } else if (!p->active && mine) {
            p->active = true; // a new stream opens on the next pump, at the committed offset
        }
    }
    g->notify = true;
    g->notify_generation = g->generation;
}

int
sl__group_frame(sl_consumer *c, const sl_frame *f, int64_t now)
{
    sl__cgroup *g = &c->grp;
    if (f->header.type == SL_FRAME_ASSIGN) {
        on_assign(c, &f->u.assign, now);
        return SL_OK;
    }
    if (f->header.type != SL_FRAME_ADMIN_RESULT) {
        return SL_ENOENT;
    }
    const sl_proto_admin_result *r = &f->u.admin_result;
    int err = sl_proto_status_from_code(r->status.code);
    if (err == SL_OK) {
        return SL_OK;
    }
    if (r->correlation_id == g->join_correlation && g->generation == 0) {
        g->join_sent = false;
        if (err == SL_ENOENT || err == SL_EINVAL) {
            c->fatal = err; // no such topic, or a group of another shape
            sl__signal_fd(c->ready_fd);
            return SL_OK;
        }
        g->rejoin_at_ns = now + (int64_t)sl__io_jitter_ms(&c->io, GROUP_REJOIN_MS) * 1000000;
        return SL_OK;
    }
    if (err == SL_ENOENT) {
        // The broker no longer knows this member (session expired): join again as a new one.
        g->member_id[0] = '\0';
        drop_all(c);
    }
    return SL_OK;
}

void
sl__group_disconnected(sl_consumer *c)
{
    // The broker removed the member with its connection; its partitions are someone else's.
    c->grp.member_id[0] = '\0';
    drop_all(c);
}

void
sl__group_leave(sl_consumer *c, int64_t deadline_ns)
{
    c->grp.leave_wanted = true;
    sl__io_wake(&c->io);
    while (c->io.connected && !c->grp.leave_sent &&
           sl__io_wait(&c->io, deadline_ns)) { // bounded by deadline_ns
    }
}

void
sl__group_unlocked(sl_consumer *c)
{
    uint32_t parts[SL_PROTO_PARTITIONS_MAX];
    pthread_mutex_lock(&c->io.mutex);
    bool call = c->grp.notify && c->cfg.assign_cb != NULL;
    c->grp.notify = false;
    uint32_t generation = c->grp.notify_generation;
    size_t n = 0;
    for (uint32_t i = 0; call && i < c->part_count; i++) {
        if (c->parts[i].active) {
            parts[n++] = c->parts[i].partition;
        }
    }
    pthread_mutex_unlock(&c->io.mutex);
    if (call) {
        c->cfg.assign_cb(generation, parts, n, c->cfg.assign_user);
    }
}
