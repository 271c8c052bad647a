// The Kafka source's consumer-group side: rebalance callbacks (commit what is done, drop
// buffered work of revoked partitions, re-apply pauses to new partitions) and offset commits
// (only offsets the runtime reported as done by every sink, async, only while the group is
// stable; late commits for lanes no longer owned are ignored).
#include "kafka/source_internal.h"

#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "core/util.h"

static bool
cooperative(rd_kafka_t *rk)
{
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto != NULL && strcmp(proto, "COOPERATIVE") == 0;
}

static bool
lane_ok(int32_t partition)
{
    return partition >= 0 && (uint32_t)partition < SL_KAFKA_PARTITIONS_MAX;
}

void
sl__kafka_apply_pause(sl__kafka_source *s, rd_kafka_topic_partition_list_t *parts, bool pause)
{
    if (parts->cnt == 0) {
        return;
    }
    rd_kafka_resp_err_t e =
        pause ? rd_kafka_pause_partitions(s->rk, parts) : rd_kafka_resume_partitions(s->rk, parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka source: %s: %s\n", pause ? "pause" : "resume", rd_kafka_err2str(e));
        return;
    }
    pthread_mutex_lock(&s->mutex);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (lane_ok(p) && parts->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            s->lanes[p].paused = pause;
        }
    }
    int64_t paused = 0;
    for (uint32_t i = 0; i < s->lanes_seen; i++) {
        paused += s->lanes[i].assigned && s->lanes[i].paused;
    }
    pthread_mutex_unlock(&s->mutex);
    sl_gauge_set(&s->m.paused_partitions, paused);
}

void
sl__kafka_buffer_drop_unassigned(sl__kafka_source *s)
{
    uint32_t cap = s->cfg.buffer_records;
    uint32_t kept = 0;
    uint64_t dropped = 0;
    pthread_mutex_lock(&s->mutex);
    // Compacts the ring in place, keeping order: slot i moves to slot kept <= i.
    for (uint32_t i = 0; i < s->ring_count; i++) {
        rd_kafka_message_t *m = s->ring[(s->ring_head + i) % cap];
        if (lane_ok(m->partition) && s->lanes[m->partition].assigned) {
            s->ring[(s->ring_head + kept) % cap] = m;
            kept++;
        } else {
            s->ring_bytes -= (uint64_t)m->len + m->key_len;
            rd_kafka_message_destroy(m);
            dropped++;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    s->ring_count = kept;
    sl_counter_add(&s->m.dropped_revoked, dropped);
    sl_gauge_set(&s->m.buffered_records, kept);
    sl_gauge_set(&s->m.buffered_bytes, (int64_t)s->ring_bytes);
}

// Lanes in parts (or every assigned lane when parts is NULL) whose done offset is ahead of the
// committed one, as an offsets list for rd_kafka_commit; NULL when there is nothing to commit.
static rd_kafka_topic_partition_list_t *
done_offsets(sl__kafka_source *s, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    pthread_mutex_lock(&s->mutex);
    uint32_t n = parts != NULL ? (uint32_t)parts->cnt : s->lanes_seen;
    for (uint32_t i = 0; i < n; i++) {
        int32_t p = parts != NULL ? parts->elems[i].partition : (int32_t)i;
        if (!lane_ok(p)) {
            continue;
        }
        const sl__kafka_lane *lane = &s->lanes[p];
        if (lane->assigned && lane->done >= 0 && lane->done > lane->committed) {
            rd_kafka_topic_partition_list_add(l, s->cfg.topic, p)->offset = lane->done;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    if (l->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return NULL;
    }
    return l;
}

static void
commit_sync(sl__kafka_source *s, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *l = done_offsets(s, parts);
    if (l == NULL) {
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(s->rk, l, 0);
    sl__kafka_commit_cb(s->rk, e, l, s);
    rd_kafka_topic_partition_list_destroy(l);
}

static void
on_assign(sl__kafka_source *s, rd_kafka_topic_partition_list_t *parts)
{
    pthread_mutex_lock(&s->mutex);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (!lane_ok(p)) {
            continue;
        }
        sl__kafka_lane *lane = &s->lanes[p];
        lane->assigned = true;
        lane->paused = false;
        lane->done = -1;
        lane->committed = -1;
        lane->first_seen = -1;
        lane->next = -1;
        if ((uint32_t)p + 1 > s->lanes_seen) {
            s->lanes_seen = (uint32_t)p + 1;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    rd_kafka_error_t *ce = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative(s->rk)) {
        ce = rd_kafka_incremental_assign(s->rk, parts);
    } else {
        e = rd_kafka_assign(s->rk, parts);
    }
    if (ce != NULL || e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka source: assign: %s\n",
                ce != NULL ? rd_kafka_error_string(ce) : rd_kafka_err2str(e));
        rd_kafka_error_destroy(ce);
    }
    // Pause state does not survive reassignment: a paused source pauses its new partitions.
    if (s->paused) {
        sl__kafka_apply_pause(s, parts, true);
        sl_counter_add(&s->m.pauses_reapplied, (uint64_t)parts->cnt);
    }
    sl_counter_inc(&s->m.assigns);
    s->commit_blocked_until_ns = 0; // the group is stable again
}

static void
on_revoke(sl__kafka_source *s, rd_kafka_topic_partition_list_t *parts, bool all)
{
    bool lost = rd_kafka_assignment_lost(s->rk) != 0;
    if (!lost) {
        commit_sync(s, parts); // what is done so far; the rest is read again by the next owner
    } else {
        sl_counter_inc(&s->m.lost);
    }
    pthread_mutex_lock(&s->mutex);
    for (uint32_t i = 0; i < (all ? s->lanes_seen : (uint32_t)parts->cnt); i++) {
        int32_t p = all ? (int32_t)i : parts->elems[i].partition;
        if (lane_ok(p)) {
            s->lanes[p].assigned = false;
            s->lanes[p].paused = false;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    sl__kafka_buffer_drop_unassigned(s);
    rd_kafka_error_t *ce = NULL;
    if (!all && cooperative(s->rk)) {
        ce = rd_kafka_incremental_unassign(s->rk, parts);
    } else {
        (void)rd_kafka_assign(s->rk, NULL);
    }
    if (ce != NULL) {
        fprintf(stderr, "kafka source: unassign: %s\n", rd_kafka_error_string(ce));
        rd_kafka_error_destroy(ce);
    }
    sl_counter_inc(&s->m.revokes);
}

void
sl__kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sl__kafka_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(s, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(s, parts, false);
    } else {
        // Any other rebalance error: drop the whole assignment to resynchronise (librdkafka).
        fprintf(stderr, "kafka source: rebalance error: %s\n", rd_kafka_err2str(err));
        on_revoke(s, parts, true);
    }
    int64_t assigned = 0;
    pthread_mutex_lock(&s->mutex);
    for (uint32_t i = 0; i < s->lanes_seen; i++) {
        assigned += s->lanes[i].assigned;
    }
    pthread_mutex_unlock(&s->mutex);
    sl_gauge_set(&s->m.assigned_partitions, assigned);
    SL_UNUSED(rk);
}

void
sl__kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    sl__kafka_source *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == NULL) {
        return;
    }
    bool failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
    pthread_mutex_lock(&s->mutex);
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *t = &offsets->elems[i];
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            failed = true;
        } else if (!failed && lane_ok(t->partition) && s->lanes[t->partition].assigned &&
                   t->offset > s->lanes[t->partition].committed) {
            s->lanes[t->partition].committed = t->offset;
        }
    }
    pthread_mutex_unlock(&s->mutex);
    if (failed) {
        // Typically REBALANCE_IN_PROGRESS: the offsets stay done and go with the next commit
        // once the group is stable again.
        sl_counter_inc(&s->m.commit_failures);
        s->commit_blocked_until_ns = sl_now_ns() + (int64_t)SL_KAFKA_COMMIT_BACKOFF_MS * 1000000;
    } else {
        sl_counter_inc(&s->m.commits);
    }
    SL_UNUSED(rk);
}

void
sl__kafka_commit_tick(sl__kafka_source *s, bool force_sync)
{
    int64_t now = sl_now_ns();
    if (force_sync) {
        commit_sync(s, NULL);
        return;
    }
    if (now < s->next_commit_ns || now < s->commit_blocked_until_ns) {
        return;
    }
    s->next_commit_ns = now + (int64_t)s->cfg.commit_interval_ms * 1000000;
    rd_kafka_topic_partition_list_t *l = done_offsets(s, NULL);
    if (l == NULL) {
        return;
    }
    // The result arrives through sl__kafka_commit_cb on a later consumer poll.
    rd_kafka_resp_err_t e = rd_kafka_commit(s->rk, l, 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sl__kafka_commit_cb(s->rk, e, l, s);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void
sl__kafka_source_commit(void *state, uint32_t lane, uint64_t token)
{
    sl__kafka_source *s = state;
    bool ignored = true;
    pthread_mutex_lock(&s->mutex);
    // A token below the first offset read since the lane was (re)assigned is from an earlier
    // ownership: committing it could move the group's offset backwards.
    if (lane < SL_KAFKA_PARTITIONS_MAX && s->lanes[lane].assigned && token < INT64_MAX &&
        s->lanes[lane].first_seen >= 0 && (int64_t)token >= s->lanes[lane].first_seen) {
        sl__kafka_lane *l = &s->lanes[lane];
        if ((int64_t)token + 1 > l->done) {
            l->done = (int64_t)token + 1;
        }
        ignored = false;
    }
    pthread_mutex_unlock(&s->mutex);
    if (ignored) {
        sl_counter_inc(&s->m.late_commits_ignored);
    }
}
