// Per-stage time accounting (sl_timeacct in include/sluice/metrics.h): law 5, "every wait is
// visible". The single writer (the stage's thread) marks state transitions; the account splits
// elapsed time into 1 s windows and keeps busy / backpressured / idle nanoseconds per window and in
// total. Readers get a consistent copy through a sequence lock and bring it up to their own
// "now" with the same pure function the writer uses, so a stage stuck in one state still reads
// right. Every field is an atomic (relaxed) so the sequence lock is race-free in the C11 model.
#include <sluice/metrics.h>

#include <sched.h>

#include "core/util.h"

#define NS_PER_MS INT64_C(1000000)
#define MS_PER_S  1000u

// A plain copy of the account: what the writer publishes and what both sides compute on.
typedef struct timeacct_view {
    uint32_t state;
    int64_t since_ns;        // time of the last update; the state has lasted since at least then
    int64_t window_start_ns; // invariant: window_start_ns <= since_ns < window_start + window
    int64_t window_ns[SL_TIME_STATE_COUNT]; // in [window_start_ns, since_ns); sums to their gap
    uint32_t last_ms[SL_TIME_STATE_COUNT];  // last completed window; sums to 1000 once one exists
    uint64_t windows_completed;
    uint64_t total_ns[SL_TIME_STATE_COUNT]; // in [creation, since_ns)
} timeacct_view;

struct sl_timeacct {
    _Atomic uint64_t seq; // odd while the writer updates the fields below
    _Atomic uint32_t state;
    _Atomic int64_t since_ns;
    _Atomic int64_t window_start_ns;
    _Atomic int64_t window_ns[SL_TIME_STATE_COUNT];
    _Atomic uint32_t last_ms[SL_TIME_STATE_COUNT];
    _Atomic uint64_t windows_completed;
    _Atomic uint64_t total_ns[SL_TIME_STATE_COUNT];
};

static void
view_check(const timeacct_view *v)
{
    SL_ASSERT(v->state < SL_TIME_STATE_COUNT);
    SL_ASSERT(v->window_start_ns <= v->since_ns);
    SL_ASSERT(v->since_ns - v->window_start_ns < SL_TIMEACCT_WINDOW_NS);
    int64_t in_window = 0;
    uint32_t last = 0;
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        in_window += v->window_ns[i];
        last += v->last_ms[i];
    }
    SL_ASSERT(in_window == v->since_ns - v->window_start_ns);
    SL_ASSERT(last == (v->windows_completed == 0 ? 0u : MS_PER_S));
}

// Turns one window's nanoseconds (summing to exactly one window) into milliseconds that sum to
// exactly 1000: floor each, then hand the missing milliseconds to the largest remainders.
static void
window_publish(timeacct_view *v)
{
    int64_t remainder[SL_TIME_STATE_COUNT];
    uint32_t sum = 0;
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        v->last_ms[i] = (uint32_t)(v->window_ns[i] / NS_PER_MS);
        remainder[i] = v->window_ns[i] % NS_PER_MS;
        sum += v->last_ms[i];
    }
    SL_ASSERT(sum <= MS_PER_S && MS_PER_S - sum < SL_TIME_STATE_COUNT);
    for (uint32_t missing = MS_PER_S - sum; missing > 0; missing--) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < SL_TIME_STATE_COUNT; i++) {
            if (remainder[i] > remainder[best]) {
                best = i;
            }
        }
        v->last_ms[best]++;
        remainder[best] = -1;
    }
    v->windows_completed++;
}

// Accounts [since_ns, now_ns) to the current state, closing every window that ends on the way.
// Constant time however long the gap: whole windows spent in one state are counted at once.
static void
view_advance(timeacct_view *v, int64_t now_ns)
{
    if (now_ns <= v->since_ns) {
        return;
    }
    uint32_t s = v->state;
    v->total_ns[s] += (uint64_t)(now_ns - v->since_ns);
    int64_t window_end = v->window_start_ns + SL_TIMEACCT_WINDOW_NS;
    if (now_ns < window_end) {
        v->window_ns[s] += now_ns - v->since_ns;
        v->since_ns = now_ns;
        return;
    }
    v->window_ns[s] += window_end - v->since_ns;
    window_publish(v);
    int64_t whole = (now_ns - window_end) / SL_TIMEACCT_WINDOW_NS;
    if (whole > 0) {
        for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
            v->last_ms[i] = i == s ? MS_PER_S : 0;
        }
        v->windows_completed += (uint64_t)whole;
    }
    v->window_start_ns = window_end + whole * SL_TIMEACCT_WINDOW_NS;
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        v->window_ns[i] = 0;
    }
    v->window_ns[s] = now_ns - v->window_start_ns;
    v->since_ns = now_ns;
}

static void
view_load(const sl_timeacct *t, timeacct_view *v)
{
    v->state = atomic_load_explicit(&t->state, memory_order_relaxed);
    v->since_ns = atomic_load_explicit(&t->since_ns, memory_order_relaxed);
    v->window_start_ns = atomic_load_explicit(&t->window_start_ns, memory_order_relaxed);
    v->windows_completed = atomic_load_explicit(&t->windows_completed, memory_order_relaxed);
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        v->window_ns[i] = atomic_load_explicit(&t->window_ns[i], memory_order_relaxed);
        v->last_ms[i] = atomic_load_explicit(&t->last_ms[i], memory_order_relaxed);
        v->total_ns[i] = atomic_load_explicit(&t->total_ns[i], memory_order_relaxed);
    }
}

static void
view_store(sl_timeacct *t, const timeacct_view *v)
{
    atomic_store_explicit(&t->state, v->state, memory_order_relaxed);
    atomic_store_explicit(&t->since_ns, v->since_ns, memory_order_relaxed);
    atomic_store_explicit(&t->window_start_ns, v->window_start_ns, memory_order_relaxed);
    atomic_store_explicit(&t->windows_completed, v->windows_completed, memory_order_relaxed);
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        atomic_store_explicit(&t->window_ns[i], v->window_ns[i], memory_order_relaxed);
        atomic_store_explicit(&t->last_ms[i], v->last_ms[i], memory_order_relaxed);
        atomic_store_explicit(&t->total_ns[i], v->total_ns[i], memory_order_relaxed);
    }
}

int
sl_timeacct_new(sl_time_state initial_state, int64_t now_ns, sl_timeacct **timeacct_out)
{
    SL_ASSERT(timeacct_out != NULL);
    if ((uint32_t)initial_state >= SL_TIME_STATE_COUNT) {
        return SL_EINVAL;
    }
    sl_timeacct *t = sl_calloc(1, sizeof(*t));
    if (t == NULL) {
        return SL_ENOMEM;
    }
    timeacct_view v = {
        .state = (uint32_t)initial_state, .since_ns = now_ns, .window_start_ns = now_ns};
    atomic_init(&t->seq, 0);
    view_store(t, &v);
    *timeacct_out = t;
    return SL_OK;
}

void
sl_timeacct_free(sl_timeacct *timeacct)
{
    sl_free(timeacct, sizeof(*timeacct));
}

void
sl_timeacct_enter(sl_timeacct *timeacct, sl_time_state state, int64_t now_ns)
{
    SL_ASSERT(timeacct != NULL);
    SL_ASSERT((uint32_t)state < SL_TIME_STATE_COUNT);
    // Only this thread writes, so its own relaxed loads see the current fields.
    timeacct_view v;
    view_load(timeacct, &v);
    view_advance(&v, now_ns);
    v.state = (uint32_t)state;
    view_check(&v);

    uint64_t seq = atomic_load_explicit(&timeacct->seq, memory_order_relaxed);
    atomic_store_explicit(&timeacct->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    view_store(timeacct, &v);
    atomic_store_explicit(&timeacct->seq, seq + 2, memory_order_release);
}

// Copies the account if no update overlapped the copy.
static bool
view_try_read(const sl_timeacct *t, timeacct_view *v)
{
    uint64_t before = atomic_load_explicit(&t->seq, memory_order_acquire);
    if (before & 1u) {
        return false;
    }
    view_load(t, v);
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&t->seq, memory_order_relaxed) == before;
}

int
sl_timeacct_read(const sl_timeacct *timeacct, int64_t now_ns, sl_timeacct_stats *stats_out)
{
    SL_ASSERT(timeacct != NULL);
    SL_ASSERT(stats_out != NULL);
    timeacct_view v;
    bool ok = false;
    for (uint32_t attempt = 0; attempt < SL_TIMEACCT_READ_TRIES && !ok; attempt++) {
        ok = view_try_read(timeacct, &v);
        if (!ok) {
            sched_yield();
        }
    }
    if (!ok) {
        return SL_EAGAIN;
    }
    view_advance(&v, now_ns);
    view_check(&v);
    stats_out->state = (sl_time_state)v.state;
    stats_out->windows_completed = v.windows_completed;
    for (uint32_t i = 0; i < SL_TIME_STATE_COUNT; i++) {
        stats_out->ms_per_s[i] = v.last_ms[i];
        stats_out->total_ns[i] = v.total_ns[i];
    }
    return SL_OK;
}

const char *
sl_time_state_name(sl_time_state state)
{
    switch (state) {
    case SL_TIME_BUSY:
        return "busy";
    case SL_TIME_BACKPRESSURED:
        return "backpressured";
    case SL_TIME_IDLE:
        return "idle";
    default:
        return "unknown";
    }
}
