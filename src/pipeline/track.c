// At-least-once tracking: every source record gets an entry with a completion counter (one
// reference per derived record not yet done at a sink); a window's output holds its inputs'
// references in a group. The source instance's own thread walks each lane's entries in emission
// order and commits the completed prefix through ops->commit, one call per lane per walk
// (coalesced). Completions come from any thread and only decrement counters.
#include <stdatomic.h>
#include <string.h>

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

#define TRACK_NONE UINT32_MAX

typedef struct track_entry {
    sl__pipe_track track; // first: entries are handed out as sl__pipe_track pointers
    uint64_t token;
    uint32_t next; // next in the lane's FIFO, or in the free list
} track_entry;

typedef struct track_lane {
    uint32_t lane;
    uint32_t head; // oldest entry of the lane; TRACK_NONE when empty
    uint32_t tail;
    bool used;
} track_lane;

struct sl__pipe_source_track {
    sl_budget *budget;
    uint64_t reserved_bytes;
    track_entry *entries; // capacity
    uint32_t capacity;
    uint32_t free_head;
    uint32_t free_count;
    uint32_t lanes_used;                    // slots of lanes[] taken
    track_lane lanes[SL_PIPE_LANES_MAX];    // open addressing by lane id
    uint32_t used_slots[SL_PIPE_LANES_MAX]; // the taken slots, for the commit walk
    _Atomic uint64_t inflight;              // capacity - free_count, for other threads
    _Atomic uint64_t commits_total;
};

typedef struct track_group {
    sl__pipe_track track; // first
    uint32_t count;
    sl__pipe_track *members[];
} track_group;

_Static_assert((SL_PIPE_LANES_MAX & (SL_PIPE_LANES_MAX - 1)) == 0, "lane table is a power of 2");

int
sl__pipe_source_track_new(sl_pipeline *p, sl_budget *budget, uint32_t capacity,
                          sl__pipe_source_track **out)
{
    SL_ASSERT(capacity > 0 && capacity <= SL_PIPE_INFLIGHT_MAX);
    uint64_t bytes = sizeof(sl__pipe_source_track) + (uint64_t)capacity * sizeof(track_entry);
    int err = sl_budget_reserve(budget, bytes, 0);
    if (err != SL_OK) {
        return err;
    }
    sl__pipe_source_track *t = sl_calloc(1, sizeof(*t));
    track_entry *entries = sl_calloc(capacity, sizeof(track_entry));
    if (t == NULL || entries == NULL) {
        sl_free(t, sizeof(*t));
        sl_free(entries, (size_t)capacity * sizeof(track_entry));
        sl_budget_release(budget, bytes, 0);
        return SL_ENOMEM;
    }
    t->budget = budget;
    t->reserved_bytes = bytes;
    t->entries = entries;
    t->capacity = capacity;
    for (uint32_t i = 0; i < capacity; i++) {
        entries[i].track.kind = SL__TRACK_ENTRY;
        entries[i].track.pipeline = p;
        atomic_init(&entries[i].track.refs, 0);
        atomic_init(&entries[i].track.poisoned, 0);
        entries[i].next = i + 1 < capacity ? i + 1 : TRACK_NONE;
    }
    t->free_head = 0;
    t->free_count = capacity;
    *out = t;
    return SL_OK;
}

void
sl__pipe_source_track_free(sl__pipe_source_track *t)
{
    if (t == NULL) {
        return;
    }
    sl_budget_release(t->budget, t->reserved_bytes, 0);
    sl_free(t->entries, (size_t)t->capacity * sizeof(track_entry));
    sl_free(t, sizeof(*t));
}

uint32_t
sl__pipe_source_track_room(const sl__pipe_source_track *t)
{
    return t->free_count;
}

uint64_t
sl__pipe_source_track_inflight(const sl__pipe_source_track *t)
{
    return atomic_load_explicit(&t->inflight, memory_order_relaxed);
}

uint64_t
sl__pipe_source_track_commits(const sl__pipe_source_track *t)
{
    return atomic_load_explicit(&t->commits_total, memory_order_relaxed);
}

static uint32_t
lane_hash(uint32_t lane)
{
    return (lane * 2654435761u) & (SL_PIPE_LANES_MAX - 1);
}

// Drops lanes with nothing in flight from the table and re-inserts the rest (rare: only when
// a source has cycled through SL_PIPE_LANES_MAX lanes).
static void
lanes_compact(sl__pipe_source_track *t)
{
    track_lane live[SL_PIPE_LANES_MAX];
    uint32_t live_count = 0;
    for (uint32_t i = 0; i < t->lanes_used; i++) {
        track_lane *l = &t->lanes[t->used_slots[i]];
        if (l->head != TRACK_NONE) {
            live[live_count++] = *l;
        }
    }
    memset(t->lanes, 0, sizeof(t->lanes));
    t->lanes_used = 0;
    for (uint32_t i = 0; i < live_count; i++) {
        uint32_t slot = lane_hash(live[i].lane);
        for (uint32_t probe = 0; t->lanes[slot].used && probe < SL_PIPE_LANES_MAX; probe++) {
            slot = (slot + 1) & (SL_PIPE_LANES_MAX - 1);
        }
        t->lanes[slot] = live[i];
        t->used_slots[t->lanes_used++] = slot;
    }
}

static track_lane *
lane_find(sl__pipe_source_track *t, uint32_t lane, bool create)
{
    uint32_t slot = lane_hash(lane);
    for (uint32_t probe = 0; probe < SL_PIPE_LANES_MAX; probe++) {
        track_lane *l = &t->lanes[slot];
        if (!l->used) {
            if (!create || t->lanes_used >= SL_PIPE_LANES_MAX - 1) {
                return NULL;
            }
            l->used = true;
            l->lane = lane;
            l->head = TRACK_NONE;
            l->tail = TRACK_NONE;
            t->used_slots[t->lanes_used++] = slot;
            return l;
        }
        if (l->lane == lane) {
            return l;
        }
        slot = (slot + 1) & (SL_PIPE_LANES_MAX - 1);
    }
    return NULL;
}

int
sl__pipe_source_track_add(sl__pipe_source_track *t, sl_pipe_origin origin,
                          sl__pipe_track **track_out)
{
    if (t->free_count == 0) {
        return SL_EFULL;
    }
    track_lane *l = lane_find(t, origin.lane, true);
    if (l == NULL) {
        lanes_compact(t);
        l = lane_find(t, origin.lane, true);
        if (l == NULL) {
            return SL_EFULL;
        }
    }
    uint32_t i = t->free_head;
    track_entry *e = &t->entries[i];
    t->free_head = e->next;
    t->free_count--;
    e->token = origin.token;
    e->next = TRACK_NONE;
    atomic_store_explicit(&e->track.refs, 1, memory_order_relaxed);
    atomic_store_explicit(&e->track.poisoned, 0, memory_order_relaxed);
    if (l->tail == TRACK_NONE) {
        l->head = i;
    } else {
        t->entries[l->tail].next = i;
    }
    l->tail = i;
    atomic_store_explicit(&t->inflight, t->capacity - t->free_count, memory_order_relaxed);
    *track_out = &e->track;
    return SL_OK;
}

uint32_t
sl__pipe_source_track_commit(sl__pipe_source_track *t, const sl_pipe_source_ops *ops, void *state)
{
    uint32_t released = 0;
    for (uint32_t u = 0; u < t->lanes_used; u++) {
        track_lane *l = &t->lanes[t->used_slots[u]];
        bool advanced = false;
        uint64_t token = 0;
        // Bounded by the table's capacity: each step frees one entry.
        while (l->head != TRACK_NONE) {
            track_entry *e = &t->entries[l->head];
            if (atomic_load_explicit(&e->track.refs, memory_order_acquire) != 0 ||
                atomic_load_explicit(&e->track.poisoned, memory_order_relaxed) != 0) {
                break; // a poisoned entry blocks its lane for good: nothing past it commits
            }
            token = e->token;
            advanced = true;
            uint32_t next = e->next;
            e->next = t->free_head;
            t->free_head = l->head;
            t->free_count++;
            released++;
            l->head = next;
        }
        if (l->head == TRACK_NONE) {
            l->tail = TRACK_NONE;
        }
        if (advanced) {
            atomic_fetch_add_explicit(&t->commits_total, 1, memory_order_relaxed);
            if (ops->commit != NULL) {
                ops->commit(state, l->lane, token);
            }
        }
    }
    if (released > 0) {
        atomic_store_explicit(&t->inflight, t->capacity - t->free_count, memory_order_relaxed);
    }
    return released;
}

sl__pipe_track *
sl__pipe_track_group_new(sl_pipeline *p, sl__pipe_track **tracks, uint32_t count)
{
    size_t bytes = sizeof(track_group) + (size_t)count * sizeof(sl__pipe_track *);
    track_group *g = sl_alloc(bytes);
    if (g == NULL) {
        return NULL;
    }
    atomic_init(&g->track.refs, 1);
    atomic_init(&g->track.poisoned, 0);
    g->track.kind = SL__TRACK_GROUP;
    g->track.pipeline = p;
    g->count = count;
    memcpy(g->members, tracks, (size_t)count * sizeof(sl__pipe_track *));
    return &g->track;
}

void
sl__pipe_track_release(sl__pipe_track *t)
{
    int32_t prev = atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
    SL_ASSERT(prev >= 1);
    if (prev != 1 || t->kind != SL__TRACK_GROUP) {
        return;
    }
    track_group *g = (track_group *)t;
    bool poisoned = atomic_load_explicit(&t->poisoned, memory_order_relaxed) != 0;
    // Members are entries (windows do not feed windows' groups into groups more than one level
    // deep in practice, but a member group is released the same way, recursively bounded by the
    // number of window stages).
    for (uint32_t i = 0; i < g->count; i++) {
        if (poisoned) {
            sl__pipe_track_poison(g->members[i]);
        }
        sl__pipe_track_release(g->members[i]);
    }
    sl_free(g, sizeof(track_group) + (size_t)g->count * sizeof(sl__pipe_track *));
}

void
sl_pipe_sink_done(sl_pipe_done_ref *ref, int err)
{
    sl__pipe_track *t = (sl__pipe_track *)ref;
    SL_ASSERT(t != NULL);
    if (err != SL_OK) {
        // Not committed: the record is read again after a restart.
        sl__pipe_track_poison(t);
        sl__pipeline_fail(t->pipeline, err);
    }
    sl__pipe_track_release(t);
}
