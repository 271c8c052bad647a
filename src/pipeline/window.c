// Keyed tumbling windows (count or sum per key per event-time window). An instance keeps one
// open entry per (key, window) holding the completion references of its inputs; when the
// watermark passes the window's end it emits "key -> count|sum" with one group reference over
// all of them, so the inputs commit only once the window's record is done at every sink. The
// watermark is the largest event time seen plus the wall time since it was seen, minus a grace:
// event time keeps moving while no input arrives, so a paused source cannot hold windows open.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/keyhash.h"

#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// Hash buckets per instance (power of two); entries chain from them.
#define WINDOW_BUCKETS 4096u
// Open (key, window) entries per instance; past it the stage fails with SL_EFULL (a key space
// this large wants a real state store, not memory).
#define WINDOW_OPEN_MAX 65536u
// How late (ms of event time) an input may be and still land in a window that has not closed.
#define WINDOW_GRACE_MS 200
// First size of an entry's reference array; it doubles as inputs arrive.
#define WINDOW_REFS_INITIAL 8u
// Longest decimal text of a count or sum.
#define WINDOW_TEXT_MAX 48u

_Static_assert((WINDOW_BUCKETS & (WINDOW_BUCKETS - 1)) == 0, "buckets are a power of two");

typedef struct window_entry {
    struct window_entry *next;
    int64_t start_ns; // window start (event time)
    uint64_t count;
    double sum;
    sl__pipe_track **refs; // references held for the inputs
    uint32_t ref_count;
    uint32_t ref_cap;
    uint32_t hash;
    uint32_t key_size;
    unsigned char key[];
} window_entry;

struct sl__pipe_window {
    window_entry *buckets[WINDOW_BUCKETS];
    uint32_t open_count;
    int64_t max_event_ns;  // largest event time seen (INT64_MIN: none)
    int64_t seen_mono_ns;  // when it was seen (monotonic)
    int64_t next_close_ns; // smallest open window end (INT64_MAX: none)
    uint64_t late_total;   // inputs older than the watermark (they still get counted)
};

static uint32_t
key_hash(const void *key, uint32_t size)
{
    // FNV-1a, as sl_partition_for_key, but the full 32 bits.
    const unsigned char *k = key;
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < size; i++) {
        h = (h ^ k[i]) * 16777619u;
    }
    return h;
}

int
sl__pipe_window_new(sl_pipe_stage *s, sl__pipe_window **out)
{
    SL_UNUSED(s);
    sl__pipe_window *w = sl_calloc(1, sizeof(*w));
    if (w == NULL) {
        return SL_ENOMEM;
    }
    w->max_event_ns = INT64_MIN;
    w->next_close_ns = INT64_MAX;
    *out = w;
    return SL_OK;
}

static void
entry_free(window_entry *e, bool poison)
{
    for (uint32_t i = 0; i < e->ref_count; i++) {
        if (poison) {
            sl__pipe_track_poison(e->refs[i]);
        }
        sl__pipe_track_release(e->refs[i]);
    }
    sl_free(e->refs, (size_t)e->ref_cap * sizeof(*e->refs));
    sl_free(e, sizeof(*e) + e->key_size);
}

void
sl__pipe_window_free(sl__pipe_window *w)
{
    if (w == NULL) {
        return;
    }
    for (uint32_t b = 0; b < WINDOW_BUCKETS; b++) {
        window_entry *e = w->buckets[b];
        while (e != NULL) {
            window_entry *next = e->next;
            entry_free(e, true); // never emitted: its inputs are not committed
            e = next;
        }
    }
    sl_free(w, sizeof(*w));
}

static window_entry *
entry_find(sl__pipe_window *w, const sl_pipe_record *rec, uint32_t hash, int64_t start_ns)
{
    for (window_entry *e = w->buckets[hash & (WINDOW_BUCKETS - 1)]; e != NULL; e = e->next) {
        if (e->hash == hash && e->start_ns == start_ns && e->key_size == rec->key_size &&
            (rec->key_size == 0 || memcmp(e->key, rec->key, rec->key_size) == 0)) {
            return e;
        }
    }
    return NULL;
}

static void
entry_link(sl__pipe_window *w, window_entry *e, int64_t size_ns)
{
    window_entry **head = &w->buckets[e->hash & (WINDOW_BUCKETS - 1)];
    e->next = *head;
    *head = e;
    w->open_count++;
    w->next_close_ns = SL_MIN(w->next_close_ns, e->start_ns + size_ns);
}

static int
entry_hold(window_entry *e, sl__pipe_track *t)
{
    if (e->ref_count == e->ref_cap) {
        uint32_t cap = e->ref_cap == 0 ? WINDOW_REFS_INITIAL : e->ref_cap * 2;
        sl__pipe_track **refs = sl_alloc((size_t)cap * sizeof(*refs));
        if (refs == NULL) {
            return SL_ENOMEM;
        }
        if (e->ref_count > 0) {
            memcpy(refs, e->refs, (size_t)e->ref_count * sizeof(*refs));
        }
        sl_free(e->refs, (size_t)e->ref_cap * sizeof(*e->refs));
        e->refs = refs;
        e->ref_cap = cap;
    }
    e->refs[e->ref_count++] = t;
    return SL_OK;
}

static int64_t
watermark(const sl__pipe_window *w, int64_t now_mono)
{
    if (w->max_event_ns == INT64_MIN) {
        return INT64_MIN;
    }
    return w->max_event_ns + (now_mono - w->seen_mono_ns) - (int64_t)WINDOW_GRACE_MS * 1000000;
}

int
sl__pipe_window_add(sl__pipe_instance *inst, sl__pipe_item *item)
{
    sl_pipe_stage *s = inst->stage;
    sl__pipe_window *w = inst->window;
    int64_t size_ns = (int64_t)s->window_size_ms * 1000000;
    sl_pipe_record rec = {
        .key = item->bytes,
        .key_size = item->key_size,
        .value = item->value_size > 0 ? item->bytes + item->key_size : NULL,
        .value_size = item->value_size,
        .timestamp_ns = item->timestamp_ns,
    };
    int64_t ts = item->timestamp_ns;
    int64_t start = ts >= 0 ? ts - ts % size_ns : ts - (size_ns + ts % size_ns) % size_ns;
    int64_t now = sl_now_ns();
    if (start + size_ns <= watermark(w, now)) {
        w->late_total++; // counted in a window of its own, emitted at the next tick
    }
    if (ts > w->max_event_ns) {
        w->max_event_ns = ts;
        w->seen_mono_ns = now;
    }
    uint32_t hash = key_hash(rec.key, rec.key_size);
    window_entry *e = entry_find(w, &rec, hash, start);
    if (e == NULL) {
        if (w->open_count >= WINDOW_OPEN_MAX) {
            sl__pipe_track_poison(item->track);
            sl__pipe_track_release(item->track);
            return SL_EFULL;
        }
        e = sl_calloc(1, sizeof(*e) + rec.key_size);
        if (e == NULL) {
            sl__pipe_track_poison(item->track);
            sl__pipe_track_release(item->track);
            return SL_ENOMEM;
        }
        e->hash = hash;
        e->start_ns = start;
        e->key_size = rec.key_size;
        memcpy(e->key, rec.key, rec.key_size);
        entry_link(w, e, size_ns);
    }
    e->count++;
    if (s->window_agg == SL_WINDOW_SUM) {
        e->sum += s->value_fn(&rec, s->user);
    }
    int err = entry_hold(e, item->track);
    if (err != SL_OK) {
        sl__pipe_track_poison(item->track);
        sl__pipe_track_release(item->track);
    }
    return err;
}

// Emits the window's record with one group reference over its inputs, and frees the entry.
static int
entry_emit(sl__pipe_instance *inst, window_entry *e)
{
    sl_pipe_stage *s = inst->stage;
    char text[WINDOW_TEXT_MAX];
    int len = s->window_agg == SL_WINDOW_COUNT ? snprintf(text, sizeof(text), "%" PRIu64, e->count)
                                               : snprintf(text, sizeof(text), "%.17g", e->sum);
    sl_pipe_record rec = {
        .key = e->key_size > 0 ? e->key : NULL,
        .key_size = e->key_size,
        .value = text,
        .value_size = (uint32_t)len,
        .timestamp_ns = e->start_ns + (int64_t)s->window_size_ms * 1000000,
    };
    sl__pipe_track *g = sl__pipe_track_group_new(s->pipeline, e->refs, e->ref_count);
    if (g == NULL) {
        entry_free(e, true);
        return SL_ENOMEM;
    }
    e->ref_count = 0; // moved into the group
    entry_free(e, false);
    int err = sl__pipe_route_emit(inst, &rec, g);
    if (err != SL_OK) {
        sl__pipe_track_poison(g);
    }
    sl__pipe_track_release(g);
    return err;
}

int
sl__pipe_window_tick(sl__pipe_instance *inst, bool flush_all)
{
    sl__pipe_window *w = inst->window;
    int64_t size_ns = (int64_t)inst->stage->window_size_ms * 1000000;
    int64_t wm = flush_all ? INT64_MAX : watermark(w, sl_now_ns());
    if (w->open_count == 0 || (!flush_all && wm < w->next_close_ns)) {
        return SL_OK;
    }
    int64_t next_close = INT64_MAX;
    int err = SL_OK;
    for (uint32_t b = 0; b < WINDOW_BUCKETS; b++) {
        window_entry **link = &w->buckets[b];
        // Bounded by the entries in the bucket.
        while (*link != NULL) {
            window_entry *e = *link;
            if (err == SL_OK && e->start_ns + size_ns <= wm) {
                *link = e->next;
                w->open_count--;
                sl__pipe_instance_enter(inst, SL_TIME_BUSY);
                err = entry_emit(inst, e);
                continue;
            }
            next_close = SL_MIN(next_close, e->start_ns + size_ns);
            link = &e->next;
        }
    }
    w->next_close_ns = next_close;
    return err;
}

int
sl__pipe_window_migrate(sl_pipe_stage *s, uint32_t from_index, uint32_t new_parallelism)
{
    sl__pipe_window *from = s->instances[from_index].window;
    int64_t size_ns = (int64_t)s->window_size_ms * 1000000;
    for (uint32_t b = 0; b < WINDOW_BUCKETS; b++) {
        window_entry **link = &from->buckets[b];
        while (*link != NULL) {
            window_entry *e = *link;
            uint32_t owner = sl__pipe_key_route(e->key, e->key_size, new_parallelism);
            if (owner == from_index) {
                link = &e->next;
                continue;
            }
            *link = e->next;
            from->open_count--;
            sl__pipe_window *to = s->instances[owner].window;
            SL_ASSERT(to != NULL);
            entry_link(to, e, size_ns);
            if (from->max_event_ns > to->max_event_ns) {
                to->max_event_ns = from->max_event_ns;
                to->seen_mono_ns = from->seen_mono_ns;
            }
        }
    }
    return SL_OK;
}
