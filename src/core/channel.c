// Bounded channels (include/sluice/channel.h): the hand-off between threads in the broker and the
// pipeline runtime. Two rings share one ring layout: the SPSC ring (the producer owns tail, the
// consumer owns head, each caching the other's index on its own cache line) and a Vyukov-style
// bounded MPMC queue (per-slot sequence numbers; a batch is claimed with one CAS). Threads sleep
// only when full or empty, on a mutex+condvar announced by "sleepers" counters that the other side
// reads after a fence, so a push or pop that does not have to wait never takes a lock. Where the
// kernel offers membarrier, that fence is asymmetric: free on the push/pop fast path, a system
// call on the rare side (going to sleep, arming an fd, seeing close).
#include <sluice/channel.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#include "core/channel_internal.h"
#include "core/util.h"

// Smallest ring: with one slot, a sequence number cannot tell "filled at n" from "free at n + 1".
#define CHANNEL_RING_MIN 2u

// A producer blocked by the budget (while the channel itself has room) re-tries this often: room
// in a shared budget can come from other channels, which do not signal this one. 1 ms bounds the
// added latency and costs nothing measurable; it is a timed sleep, not a busy retry.
#define CHANNEL_BUDGET_POLL_NS 1000000

// SL_FULL_DROP_OLDEST evicts one record per pass; other producers may refill the room it made.
// This caps evictions per queued record of one call (the ring capacity per record would already
// mean a pathological race); beyond it the push gives up with SL_EBUSY.
#define CHANNEL_EVICT_PASSES_PER_RECORD 4u

// Before sleeping, a blocked push or an empty pop re-checks this many times with a CPU pause in
// between (about a microsecond in all): the other side usually makes room or data within that,
// and a sleep costs two system calls on each side. Bounded, so an idle thread still sleeps.
#define CHANNEL_SPIN_CHECKS 128u
// Then it yields the CPU this many times, re-checking after each: on a machine with fewer cores
// than busy threads the other side often needs our core to make progress.
#define CHANNEL_YIELD_CHECKS 4u

_Static_assert(SL_CHANNEL_RECORDS_MAX <= (1u << 30), "ring size must fit a uint32_t power of two");

// Why a push could not take the next record.
typedef enum channel_full_cause {
    CHANNEL_FULL_RING = 0,   // no free slot
    CHANNEL_FULL_BYTES = 1,  // capacity_bytes reached
    CHANNEL_FULL_BUDGET = 2, // the budget refused the reservation
} channel_full_cause;

// The ring is three parallel arrays in one allocation, so a consumer pulls only item and size
// across cores (16 bytes a record); timestamps are read by stats only, sequence numbers exist for
// the MPMC ring only.
typedef struct channel_slot {
    void *item; // owned by the channel while queued
    uint32_t size_bytes;
} channel_slot;

// Bytes of ring per slot: the slot, its sequence number and its enqueue time.
#define CHANNEL_SLOT_BYTES (sizeof(channel_slot) + sizeof(uint64_t) + sizeof(int64_t))

struct sl_channel {
    // Immutable after sl_channel_new.
    char name[SL_NAME_MAX];
    sl_channel_kind kind;
    sl_full_policy policy;
    bool seq_ring;           // MPMC ring: kind MPMC, or DROP_OLDEST (the pusher evicts = pops)
    uint32_t capacity;       // ring slots, a power of two >= CHANNEL_RING_MIN
    uint64_t mask;           // capacity - 1
    uint64_t capacity_bytes; // 0: no byte cap
    sl_budget *budget;       // may be NULL
    sl_channel_drop_cb drop_cb;
    void *drop_user;
    bool asym_fences;             // fast paths use fence_light, slow paths fence_heavy (membarrier)
    channel_slot *slots;          // capacity entries; the start of the ring allocation
    _Atomic uint64_t *seqs;       // MPMC ring: pos when free for pos, pos + 1 when filled at pos
    _Atomic int64_t *enqueued_ns; // relaxed: stats read them for the oldest record's age

    // Producer side: tail is records ever published (SPSC) or claimed (MPMC).
    char pad_producer[SL_CACHELINE_BYTES];
    _Atomic uint64_t tail;
    _Atomic uint64_t bytes_in; // bytes ever admitted; invariant: bytes_out <= bytes_in
    uint64_t cached_head;      // SPSC producer's last view of head (<= head)
    uint64_t cached_bytes_out; // SPSC producer's last view of bytes_out

    // Written twice by every push, read by a consumer only once it sees the channel closed: on a
    // line of its own, so those writes do not disturb a consumer polling tail.
    char pad_inflight[SL_CACHELINE_BYTES];
    _Atomic uint32_t inflight; // pushes between their closed check and their publish

    // Consumer side: head is records ever taken out (pops and evictions).
    char pad_consumer[SL_CACHELINE_BYTES];
    _Atomic uint64_t head;
    _Atomic uint64_t bytes_out;
    uint64_t cached_tail; // SPSC consumer's last view of tail (<= tail)

    // Read on every operation, written only around sleeps, refusals and close.
    char pad_wait[SL_CACHELINE_BYTES];
    _Atomic uint32_t closed;
    _Atomic uint32_t producer_sleepers;
    _Atomic uint32_t consumer_sleepers;
    _Atomic uint32_t producers_woken; // 1: a broadcast reached every current producer sleeper
    _Atomic uint32_t consumers_woken; // (so the waker does not lock again for each record)
    _Atomic uint32_t room_wanted; // a push was refused: signal room_fd / room_cb on the next pop
    _Atomic uint32_t data_wanted; // a pop found nothing: signal data_fd on the next push
    _Atomic int room_fd;          // eventfd, -1 until asked for
    _Atomic int data_fd;

    // Counters of the slow paths.
    char pad_stats[SL_CACHELINE_BYTES];
    _Atomic uint64_t dropped_newest_total;
    _Atomic uint64_t dropped_oldest_total;
    _Atomic uint64_t rejected_total;
    _Atomic int64_t blocked_ns_total;
    _Atomic int64_t blocked_pops_ns_total;

    pthread_mutex_t mutex; // guards sleeping, room_cb and fd creation
    pthread_cond_t room_cond;
    pthread_cond_t data_cond;
    sl_channel_room_cb room_cb;
    void *room_user;
};

// ---- fences ------------------------------------------------------------------------------------
// Each wait protocol here is a Dekker pair: one side stores then loads what the other side stores
// then loads. The fast side (a push or pop that publishes) runs fence_light, the slow side (a
// thread going to sleep or arming an fd, a consumer that sees close) runs fence_heavy. With
// membarrier, fence_heavy makes every running thread of the process pass a full barrier, so
// fence_light only has to stop the compiler; without it both are plain seq_cst fences.

// 0: not probed yet; 1: MEMBARRIER_CMD_PRIVATE_EXPEDITED registered; -1: unavailable or disabled.
static _Atomic int g_membarrier_state;

static bool
membarrier_register(void)
{
#if defined(__linux__) && defined(SYS_membarrier)
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
        return false;
    }
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
    return false;
#endif
}

// True when new channels may use asymmetric fences (registers the process on first use; two
// threads racing here both register, which is harmless).
static bool
membarrier_ready(void)
{
    int state = atomic_load_explicit(&g_membarrier_state, memory_order_acquire);
    if (state == 0) {
        state = membarrier_register() ? 1 : -1;
        atomic_store_explicit(&g_membarrier_state, state, memory_order_release);
    }
    return state > 0;
}

void
sl__channel_set_asym_fences(bool enabled)
{
    atomic_store_explicit(&g_membarrier_state, enabled ? 0 : -1, memory_order_release);
}

bool
sl__channel_asym_fences(const sl_channel *ch)
{
    return ch->asym_fences;
}

static inline void
fence_light(const sl_channel *ch)
{
    if (ch->asym_fences) {
        atomic_signal_fence(memory_order_seq_cst);
    } else {
        atomic_thread_fence(memory_order_seq_cst);
    }
}

static void
fence_heavy(const sl_channel *ch)
{
    atomic_thread_fence(memory_order_seq_cst);
#if defined(__linux__) && defined(SYS_membarrier)
    if (ch->asym_fences) {
        // Registered in sl_channel_new; it cannot fail afterwards short of a kernel bug.
        long err = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
        SL_ASSERT(err == 0);
    }
#endif
}

static uint32_t
ring_size_for(uint32_t records)
{
    uint32_t size = CHANNEL_RING_MIN;
    // Bounded: at most 30 doublings (records <= SL_CHANNEL_RECORDS_MAX).
    while (size < records) {
        size <<= 1;
    }
    return size;
}

int
sl_channel_new(const sl_channel_config *config, sl_channel **channel_out)
{
    SL_ASSERT(config != NULL);
    SL_ASSERT(channel_out != NULL);
    if (config->capacity_records == 0 || config->capacity_records > SL_CHANNEL_RECORDS_MAX) {
        return SL_EINVAL;
    }
    if (config->kind != SL_CHANNEL_SPSC && config->kind != SL_CHANNEL_MPMC) {
        return SL_EINVAL;
    }
    if ((unsigned)config->full_policy > (unsigned)SL_FULL_DROP_OLDEST) {
        return SL_EINVAL;
    }
    sl_channel *ch = sl_calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return SL_ENOMEM;
    }
    ch->capacity = ring_size_for(config->capacity_records);
    ch->slots = sl_calloc(ch->capacity, CHANNEL_SLOT_BYTES);
    if (ch->slots == NULL) {
        sl_free(ch, sizeof(*ch));
        return SL_ENOMEM;
    }
    sl__strlcpy(ch->name, config->name != NULL ? config->name : "channel", sizeof(ch->name));
    ch->kind = config->kind;
    ch->policy = config->full_policy;
    ch->seq_ring = config->kind == SL_CHANNEL_MPMC || config->full_policy == SL_FULL_DROP_OLDEST;
    ch->mask = ch->capacity - 1;
    ch->capacity_bytes = config->capacity_bytes;
    ch->budget = config->budget;
    ch->drop_cb = config->drop_cb;
    ch->drop_user = config->drop_user;
    ch->asym_fences = membarrier_ready();
    ch->seqs = (_Atomic uint64_t *)(ch->slots + ch->capacity);
    ch->enqueued_ns = (_Atomic int64_t *)(ch->seqs + ch->capacity);
    for (uint32_t i = 0; i < ch->capacity; i++) {
        atomic_init(&ch->seqs[i], i);
    }
    atomic_init(&ch->room_fd, -1);
    atomic_init(&ch->data_fd, -1);
    pthread_mutex_init(&ch->mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ch->room_cond, &attr);
    pthread_cond_init(&ch->data_cond, &attr);
    pthread_condattr_destroy(&attr);
    SL_DEBUG_ASSERT(sl__channel_check(ch));
    *channel_out = ch;
    return SL_OK;
}

// ---- budget and byte admission ----------------------------------------------------------------

static uint64_t
budget_cost_of(const uint32_t *sizes, uint32_t count)
{
    uint64_t cost = 0;
    for (uint32_t i = 0; i < count; i++) {
        cost += sl_budget_record_cost(sizes[i]);
    }
    return cost;
}

// Reserves budget for the longest prefix of sizes[0..count) that it grants; returns its length.
static uint32_t
budget_take(sl_channel *ch, const uint32_t *sizes, uint32_t count)
{
    if (ch->budget == NULL || count == 0) {
        return count;
    }
    if (sl_budget_reserve(ch->budget, budget_cost_of(sizes, count), count) == SL_OK) {
        return count;
    }
    // The whole batch did not fit: take what does, one record at a time (bounded by count).
    uint32_t taken = 0;
    while (taken < count &&
           sl_budget_reserve(ch->budget, sl_budget_record_cost(sizes[taken]), 1) == SL_OK) {
        taken++;
    }
    return taken;
}

static void
budget_give(sl_channel *ch, const uint32_t *sizes, uint32_t count)
{
    if (ch->budget != NULL && count > 0) {
        sl_budget_release(ch->budget, budget_cost_of(sizes, count), count);
    }
}

// Longest prefix of sizes[0..count) whose sum fits room_bytes; its sum goes to *sum_out.
static uint32_t
bytes_prefix(const uint32_t *sizes, uint32_t count, uint64_t room_bytes, uint64_t *sum_out)
{
    uint64_t sum = 0;
    uint32_t n = 0;
    while (n < count && sum + sizes[n] <= room_bytes) {
        sum += sizes[n];
        n++;
    }
    *sum_out = sum;
    return n;
}

static uint64_t
bytes_sum(const uint32_t *sizes, uint32_t count)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < count; i++) {
        sum += sizes[i];
    }
    return sum;
}

// ---- SPSC ring
// -----------------------------------------------------------------------------------

// Writes count records into the contiguous slots [start, start + count); returns their bytes.
static uint64_t
spsc_fill(sl_channel *ch, uint32_t start, void *const *items, const uint32_t *sizes, uint32_t count,
          int64_t now_ns)
{
    channel_slot *slots = ch->slots + start;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < count; i++) {
        slots[i].item = items[i];
        slots[i].size_bytes = sizes[i];
        sum += sizes[i];
    }
    // Every slot of the batch gets the batch's one timestamp (stats read the head's).
    _Atomic int64_t *stamps = ch->enqueued_ns + start;
    for (uint32_t i = 0; i < count; i++) {
        atomic_store_explicit(&stamps[i], now_ns, memory_order_relaxed);
    }
    return sum;
}

// Copies count records out of the contiguous slots [start, start + count); returns their bytes.
static uint64_t
spsc_drain(const sl_channel *ch, uint32_t start, void **items, uint32_t *sizes, uint32_t count)
{
    const channel_slot *slots = ch->slots + start;
    uint64_t sum = 0;
    if (sizes == NULL) {
        for (uint32_t i = 0; i < count; i++) {
            items[i] = slots[i].item;
            sum += slots[i].size_bytes;
        }
        return sum;
    }
    for (uint32_t i = 0; i < count; i++) {
        items[i] = slots[i].item;
        sizes[i] = slots[i].size_bytes;
        sum += slots[i].size_bytes;
    }
    return sum;
}

static uint32_t
spsc_try_push(sl_channel *ch, void *const *items, const uint32_t *sizes, uint32_t count,
              int64_t now_ns, channel_full_cause *cause)
{
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    uint64_t room = ch->capacity - (tail - ch->cached_head);
    if (room < count) {
        ch->cached_head = atomic_load_explicit(&ch->head, memory_order_acquire);
        room = ch->capacity - (tail - ch->cached_head);
    }
    uint32_t n = (uint32_t)SL_MIN((uint64_t)count, room);
    *cause = CHANNEL_FULL_RING;
    uint64_t bytes_in = atomic_load_explicit(&ch->bytes_in, memory_order_relaxed);
    uint64_t sum = 0;
    if (ch->capacity_bytes != 0) {
        uint32_t fit =
            bytes_prefix(sizes, n, ch->capacity_bytes - (bytes_in - ch->cached_bytes_out), &sum);
        if (fit < n) {
            ch->cached_bytes_out = atomic_load_explicit(&ch->bytes_out, memory_order_acquire);
            uint64_t room_bytes = ch->capacity_bytes - (bytes_in - ch->cached_bytes_out);
            fit = bytes_prefix(sizes, n, room_bytes, &sum);
            if (fit < n) {
                *cause = CHANNEL_FULL_BYTES;
            }
        }
        n = fit;
    }
    uint32_t granted = budget_take(ch, sizes, n);
    if (granted < n) {
        *cause = CHANNEL_FULL_BUDGET;
        n = granted;
    }
    if (n == 0) {
        return 0;
    }
    // The batch lies in at most two contiguous runs of the ring: before and after the wrap.
    uint32_t start = (uint32_t)(tail & ch->mask);
    uint32_t first = SL_MIN(n, ch->capacity - start);
    sum = spsc_fill(ch, start, items, sizes, first, now_ns) +
          spsc_fill(ch, 0, items + first, sizes + first, n - first, now_ns);
    // bytes_in before tail: a consumer can only count out what was counted in.
    atomic_store_explicit(&ch->bytes_in, bytes_in + sum, memory_order_release);
    atomic_store_explicit(&ch->tail, tail + n, memory_order_release);
    return n;
}

static uint32_t
spsc_try_pop(sl_channel *ch, void **items, uint32_t *sizes, uint32_t max, uint64_t *cost_out)
{
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_relaxed);
    uint64_t avail = ch->cached_tail - head;
    if (avail < max) {
        ch->cached_tail = atomic_load_explicit(&ch->tail, memory_order_acquire);
        avail = ch->cached_tail - head;
    }
    uint32_t n = (uint32_t)SL_MIN((uint64_t)max, avail);
    if (n == 0) {
        return 0;
    }
    uint32_t start = (uint32_t)(head & ch->mask);
    uint32_t first = SL_MIN(n, ch->capacity - start);
    uint32_t *sizes_rest = sizes != NULL ? sizes + first : NULL;
    uint64_t sum = spsc_drain(ch, start, items, sizes, first) +
                   spsc_drain(ch, 0, items + first, sizes_rest, n - first);
    uint64_t bytes_out = atomic_load_explicit(&ch->bytes_out, memory_order_relaxed);
    atomic_store_explicit(&ch->bytes_out, bytes_out + sum, memory_order_release);
    atomic_store_explicit(&ch->head, head + n, memory_order_release);
    *cost_out = sum + (uint64_t)n * SL_RECORD_OVERHEAD_BYTES;
    return n;
}

// ---- MPMC ring (sequence numbers per slot) ------------------------------------------------------

// Reserves capacity_bytes room for the longest fitting prefix; returns its length.
static uint32_t
mpmc_bytes_reserve(sl_channel *ch, const uint32_t *sizes, uint32_t count)
{
    // Lock-free: a failed CAS means another producer admitted bytes.
    for (;;) {
        // bytes_out first: then bytes_in >= bytes_out, and a stale bytes_out only overestimates.
        uint64_t out = atomic_load_explicit(&ch->bytes_out, memory_order_acquire);
        uint64_t in = atomic_load_explicit(&ch->bytes_in, memory_order_acquire);
        uint64_t used = in - out;
        uint64_t room = used < ch->capacity_bytes ? ch->capacity_bytes - used : 0;
        uint64_t sum = 0;
        uint32_t n = bytes_prefix(sizes, count, room, &sum);
        if (n == 0) {
            return 0;
        }
        if (atomic_compare_exchange_strong(&ch->bytes_in, &in, in + sum)) {
            return n;
        }
    }
}

// Claims up to count free slots starting at the shared tail with one CAS; returns how many, and
// the first position in *pos_out.
static uint32_t
mpmc_claim(sl_channel *ch, uint32_t count, uint64_t *pos_out)
{
    uint64_t pos = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    // Lock-free: every failed pass means another producer claimed slots.
    for (;;) {
        uint32_t k = 0;
        while (k < count && atomic_load_explicit(&ch->seqs[(pos + k) & ch->mask],
                                                 memory_order_acquire) == pos + k) {
            k++;
        }
        if (k == 0) {
            uint64_t seq = atomic_load_explicit(&ch->seqs[pos & ch->mask], memory_order_acquire);
            if ((int64_t)(seq - pos) < 0) {
                return 0; // the slot still holds the record from one lap ago: full
            }
            pos = atomic_load_explicit(&ch->tail, memory_order_relaxed);
            continue;
        }
        // Slots seen free for pos..pos+k-1 stay free until someone claims those positions, and
        // only a CAS from pos can: success makes them ours.
        if (atomic_compare_exchange_weak_explicit(&ch->tail, &pos, pos + k, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *pos_out = pos;
            return k;
        }
    }
}

static uint32_t
mpmc_try_push(sl_channel *ch, void *const *items, const uint32_t *sizes, uint32_t count,
              int64_t now_ns, channel_full_cause *cause)
{
    uint32_t n = SL_MIN(count, ch->capacity);
    *cause = CHANNEL_FULL_RING;
    if (ch->capacity_bytes != 0) {
        uint32_t fit = mpmc_bytes_reserve(ch, sizes, n);
        if (fit < n) {
            *cause = CHANNEL_FULL_BYTES;
        }
        n = fit;
    }
    uint32_t granted = budget_take(ch, sizes, n);
    if (granted < n) {
        *cause = CHANNEL_FULL_BUDGET;
    }
    uint64_t pos = 0;
    uint32_t k = granted > 0 ? mpmc_claim(ch, granted, &pos) : 0;
    if (k < granted) {
        *cause = CHANNEL_FULL_RING;
    }
    // Give back what was admitted but found no slot (or no budget).
    budget_give(ch, sizes + k, granted - k);
    uint64_t unused = bytes_sum(sizes + k, n - k);
    if (ch->capacity_bytes != 0 && unused > 0) {
        atomic_fetch_sub_explicit(&ch->bytes_in, unused, memory_order_release);
    }
    if (k == 0) {
        return 0;
    }
    if (ch->capacity_bytes == 0) {
        atomic_fetch_add_explicit(&ch->bytes_in, bytes_sum(sizes, k), memory_order_release);
    }
    for (uint32_t i = 0; i < k; i++) {
        uint64_t index = (pos + i) & ch->mask;
        ch->slots[index].item = items[i];
        ch->slots[index].size_bytes = sizes[i];
        atomic_store_explicit(&ch->enqueued_ns[index], now_ns, memory_order_relaxed);
        atomic_store_explicit(&ch->seqs[index], pos + i + 1, memory_order_release);
    }
    return k;
}

static uint32_t
mpmc_try_pop(sl_channel *ch, void **items, uint32_t *sizes, uint32_t max, uint64_t *cost_out)
{
    uint64_t pos = atomic_load_explicit(&ch->head, memory_order_relaxed);
    uint32_t k = 0;
    // Lock-free: every failed pass means another consumer took records.
    for (;;) {
        k = 0;
        while (k < max && atomic_load_explicit(&ch->seqs[(pos + k) & ch->mask],
                                               memory_order_acquire) == pos + k + 1) {
            k++;
        }
        if (k == 0) {
            uint64_t seq = atomic_load_explicit(&ch->seqs[pos & ch->mask], memory_order_acquire);
            if ((int64_t)(seq - (pos + 1)) < 0) {
                return 0; // not filled yet: empty
            }
            pos = atomic_load_explicit(&ch->head, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&ch->head, &pos, pos + k, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            break;
        }
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < k; i++) {
        const channel_slot *slot = &ch->slots[(pos + i) & ch->mask];
        items[i] = slot->item;
        if (sizes != NULL) {
            sizes[i] = slot->size_bytes;
        }
        sum += slot->size_bytes;
    }
    // Bytes out before the slots are free, so a producer that sees a slot also sees the bytes.
    atomic_fetch_add_explicit(&ch->bytes_out, sum, memory_order_release);
    for (uint32_t i = 0; i < k; i++) {
        atomic_store_explicit(&ch->seqs[(pos + i) & ch->mask], pos + i + ch->capacity,
                              memory_order_release);
    }
    *cost_out = sum + (uint64_t)k * SL_RECORD_OVERHEAD_BYTES;
    return k;
}

// ---- dispatch
// --------------------------------------------------------------------------------------

// The enqueue stamp, read only by stats for the oldest record's age. The coarse clock (the time of
// the last tick, never ahead of CLOCK_MONOTONIC) costs a quarter of the precise one, which was
// 40% of a single-record push; the age it yields is too high by less than one tick (1-4 ms).
static int64_t
stamp_now_ns(void)
{
#if defined(CLOCK_MONOTONIC_COARSE)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#else
    return sl_now_ns();
#endif
}

static uint32_t
ring_try_push(sl_channel *ch, void *const *items, const uint32_t *sizes, uint32_t count,
              channel_full_cause *cause)
{
    int64_t now_ns = stamp_now_ns(); // one timestamp per batch
    if (ch->seq_ring) {
        return mpmc_try_push(ch, items, sizes, count, now_ns, cause);
    }
    return spsc_try_push(ch, items, sizes, count, now_ns, cause);
}

static uint32_t
ring_try_pop(sl_channel *ch, void **items, uint32_t *sizes, uint32_t max)
{
    uint64_t cost = 0;
    uint32_t n = ch->seq_ring ? mpmc_try_pop(ch, items, sizes, max, &cost)
                              : spsc_try_pop(ch, items, sizes, max, &cost);
    if (n > 0 && ch->budget != NULL) {
        sl_budget_release(ch->budget, cost, n);
    }
    return n;
}

// Room for one more record of size_bytes in the ring and under capacity_bytes (not the budget).
static bool
ring_has_room(sl_channel *ch, uint32_t size_bytes)
{
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_acquire);
    if (ch->seq_ring) {
        uint64_t seq = atomic_load_explicit(&ch->seqs[tail & ch->mask], memory_order_acquire);
        if (seq != tail) {
            return false;
        }
    } else if (tail - atomic_load_explicit(&ch->head, memory_order_acquire) >= ch->capacity) {
        return false;
    }
    if (ch->capacity_bytes == 0) {
        return true;
    }
    uint64_t out = atomic_load_explicit(&ch->bytes_out, memory_order_acquire);
    uint64_t in = atomic_load_explicit(&ch->bytes_in, memory_order_acquire);
    return in - out + size_bytes <= ch->capacity_bytes;
}

static bool
ring_has_data(sl_channel *ch)
{
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_acquire);
    if (ch->seq_ring) {
        uint64_t seq = atomic_load_explicit(&ch->seqs[head & ch->mask], memory_order_acquire);
        return seq == head + 1;
    }
    return atomic_load_explicit(&ch->tail, memory_order_acquire) != head;
}

// ---- waking and sleeping
// ------------------------------------------------------------------------- The sleeper increments
// its sleepers counter and clears "woken", fences, then re-checks the ring; the waker changes the
// ring, fences, then reads both. One of the two fences comes first, so either the sleeper sees the
// change or the waker sees the sleeper (and takes the mutex the sleeper holds until it waits, so
// the broadcast cannot slip in between). "woken" is set, under the mutex, by the broadcast itself:
// until a new sleeper clears it, every sleeper has been woken already.

static void
fd_signal(int fd)
{
    if (fd < 0) {
        return;
    }
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: the fd is readable already.
    ssize_t n = write(fd, &one, sizeof(one));
    SL_UNUSED(n);
}

static void
notify_room(sl_channel *ch)
{
    fd_signal(atomic_load_explicit(&ch->room_fd, memory_order_acquire));
    pthread_mutex_lock(&ch->mutex);
    sl_channel_room_cb cb = ch->room_cb;
    void *user = ch->room_user;
    pthread_mutex_unlock(&ch->mutex);
    if (cb != NULL) {
        cb(ch, user);
    }
}

static void
wake_producers(sl_channel *ch)
{
    fence_light(ch);
    if (atomic_load_explicit(&ch->producer_sleepers, memory_order_relaxed) != 0 &&
        atomic_load_explicit(&ch->producers_woken, memory_order_relaxed) == 0) {
        pthread_mutex_lock(&ch->mutex);
        atomic_store_explicit(&ch->producers_woken, 1, memory_order_relaxed);
        pthread_cond_broadcast(&ch->room_cond);
        pthread_mutex_unlock(&ch->mutex);
    }
    if (atomic_load_explicit(&ch->room_wanted, memory_order_relaxed) != 0 &&
        atomic_exchange(&ch->room_wanted, 0) != 0) {
        notify_room(ch);
    }
}

static void
wake_consumers(sl_channel *ch)
{
    fence_light(ch);
    if (atomic_load_explicit(&ch->consumer_sleepers, memory_order_relaxed) != 0 &&
        atomic_load_explicit(&ch->consumers_woken, memory_order_relaxed) == 0) {
        pthread_mutex_lock(&ch->mutex);
        atomic_store_explicit(&ch->consumers_woken, 1, memory_order_relaxed);
        pthread_cond_broadcast(&ch->data_cond);
        pthread_mutex_unlock(&ch->mutex);
    }
    if (atomic_load_explicit(&ch->data_wanted, memory_order_relaxed) != 0 &&
        atomic_exchange(&ch->data_wanted, 0) != 0) {
        fd_signal(atomic_load_explicit(&ch->data_fd, memory_order_acquire));
    }
}

// Could a retry of a push refused for cause succeed? For the budget, only a pop of this channel
// (head moved since head_before) is visible here; other channels' releases are polled.
static bool
room_may_exist(sl_channel *ch, channel_full_cause cause, uint64_t head_before, uint32_t size_bytes)
{
    if (atomic_load(&ch->closed) != 0) {
        return true;
    }
    if (cause == CHANNEL_FULL_BUDGET) {
        return atomic_load_explicit(&ch->head, memory_order_acquire) != head_before;
    }
    return ring_has_room(ch, size_bytes);
}

static bool
data_may_exist(sl_channel *ch)
{
    return ring_has_data(ch) || atomic_load(&ch->closed) != 0;
}

// Asks for room_fd / room_cb after a refusal; fires them here if room appeared meanwhile.
static void
arm_room(sl_channel *ch, channel_full_cause cause, uint64_t head_before, uint32_t size_bytes)
{
    atomic_store(&ch->room_wanted, 1);
    fence_heavy(ch);
    if (room_may_exist(ch, cause, head_before, size_bytes) &&
        atomic_exchange(&ch->room_wanted, 0) != 0) {
        notify_room(ch);
    }
}

static void
arm_data(sl_channel *ch)
{
    atomic_store(&ch->data_wanted, 1);
    fence_heavy(ch);
    if (data_may_exist(ch) && atomic_exchange(&ch->data_wanted, 0) != 0) {
        fd_signal(atomic_load_explicit(&ch->data_fd, memory_order_acquire));
    }
}

static void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void
spin_pause(uint32_t round)
{
    if (round < CHANNEL_SPIN_CHECKS) {
        cpu_relax();
    } else {
        sched_yield();
    }
}

// Spins briefly for room; true when it may have appeared (the caller re-tries without sleeping).
static bool
spin_for_room(sl_channel *ch, channel_full_cause cause, uint64_t head_before, uint32_t size_bytes)
{
    for (uint32_t i = 0; i < CHANNEL_SPIN_CHECKS + CHANNEL_YIELD_CHECKS; i++) {
        spin_pause(i);
        if (room_may_exist(ch, cause, head_before, size_bytes)) {
            return true;
        }
    }
    return false;
}

static bool
spin_for_data(sl_channel *ch)
{
    for (uint32_t i = 0; i < CHANNEL_SPIN_CHECKS + CHANNEL_YIELD_CHECKS; i++) {
        spin_pause(i);
        if (data_may_exist(ch)) {
            return true;
        }
    }
    return false;
}

static void
cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline_ns)
{
    if (deadline_ns == SL_DEADLINE_NEVER) {
        pthread_cond_wait(cond, mutex);
        return;
    }
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    pthread_cond_timedwait(cond, mutex, &ts);
}

// One sleep until room may exist, close, or the deadline; the caller re-tries and loops.
static void
wait_room(sl_channel *ch, channel_full_cause cause, uint64_t head_before, uint32_t size_bytes,
          int64_t deadline_ns)
{
    int64_t until = deadline_ns;
    if (cause == CHANNEL_FULL_BUDGET) {
        until = SL_MIN(deadline_ns, sl_now_ns() + CHANNEL_BUDGET_POLL_NS);
    }
    pthread_mutex_lock(&ch->mutex);
    atomic_fetch_add(&ch->producer_sleepers, 1);
    atomic_store(&ch->producers_woken, 0);
    fence_heavy(ch);
    if (!room_may_exist(ch, cause, head_before, size_bytes)) {
        cond_wait_until(&ch->room_cond, &ch->mutex, until);
    }
    atomic_fetch_sub(&ch->producer_sleepers, 1);
    pthread_mutex_unlock(&ch->mutex);
}

static void
wait_data(sl_channel *ch, int64_t deadline_ns)
{
    pthread_mutex_lock(&ch->mutex);
    atomic_fetch_add(&ch->consumer_sleepers, 1);
    atomic_store(&ch->consumers_woken, 0);
    fence_heavy(ch);
    if (!data_may_exist(ch)) {
        cond_wait_until(&ch->data_cond, &ch->mutex, deadline_ns);
    }
    atomic_fetch_sub(&ch->consumer_sleepers, 1);
    pthread_mutex_unlock(&ch->mutex);
}

// ---- push --------------------------------------------------------------------------------------

static void
drop_item(sl_channel *ch, void *item, uint32_t size_bytes, sl_channel_drop_reason reason)
{
    if (reason == SL_CHANNEL_DROP_FULL_NEWEST) {
        atomic_fetch_add_explicit(&ch->dropped_newest_total, 1, memory_order_relaxed);
    } else if (reason == SL_CHANNEL_DROP_FULL_OLDEST) {
        atomic_fetch_add_explicit(&ch->dropped_oldest_total, 1, memory_order_relaxed);
    }
    if (ch->drop_cb != NULL) {
        ch->drop_cb(ch, item, size_bytes, reason, ch->drop_user);
    }
}

// Records claimed and not yet taken out (head and tail both only grow; tail read last).
static uint64_t
ring_depth(sl_channel *ch)
{
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_acquire);
    return tail - head;
}

// SL_FULL_DROP_OLDEST: evicts the oldest queued record; false when there was none.
static bool
evict_oldest(sl_channel *ch)
{
    SL_ASSERT(ch->seq_ring);
    void *item = NULL;
    uint32_t size = 0;
    if (ring_try_pop(ch, &item, &size, 1) == 0) {
        return false;
    }
    drop_item(ch, item, size, SL_CHANNEL_DROP_FULL_OLDEST);
    return true;
}

static int
refuse(sl_channel *ch, int err, uint32_t remaining, channel_full_cause cause, uint64_t head_before,
       uint32_t size_bytes)
{
    atomic_fetch_add_explicit(&ch->rejected_total, remaining, memory_order_relaxed);
    arm_room(ch, cause, head_before, size_bytes);
    return err;
}

// State of one push call across its passes.
typedef struct push_call {
    void *const *items;
    const uint32_t *sizes;
    uint32_t count;
    uint32_t done;      // items[0..done) are owned by the channel
    uint32_t evictions; // SL_FULL_DROP_OLDEST evictions so far
    int64_t deadline_ns;
    int64_t blocked_ns;
} push_call;

// Applies the full policy to items[done]; SL_OK means "make another pass".
static int
push_on_full(sl_channel *ch, push_call *call, channel_full_cause cause, uint64_t head_before)
{
    uint32_t remaining = call->count - call->done;
    uint32_t size = call->sizes[call->done];
    switch (ch->policy) {
    case SL_FULL_REJECT:
        return refuse(ch, SL_EFULL, remaining, cause, head_before, size);
    case SL_FULL_DROP_NEWEST:
        drop_item(ch, call->items[call->done], size, SL_CHANNEL_DROP_FULL_NEWEST);
        call->done++;
        return SL_OK;
    case SL_FULL_DROP_OLDEST:
        if (cause == CHANNEL_FULL_RING && ring_depth(ch) < ch->capacity) {
            // Not full: a consumer took the slot we need and is copying out of it. Evicting now
            // would drop a record for nothing; its release is a few instructions away.
            sched_yield();
            return SL_OK;
        }
        if (call->evictions >= CHANNEL_EVICT_PASSES_PER_RECORD * (ch->capacity + call->count)) {
            return refuse(ch, SL_EBUSY, remaining, cause, head_before, size);
        }
        if (call->evictions >= ch->capacity + call->count) {
            // Other producers keep taking the room our evictions make (they run while we are
            // between the eviction and the claim): let them finish before evicting again.
            sched_yield();
        }
        if (!evict_oldest(ch)) {
            // Nothing of ours to evict: the budget is held by others. Refuse, losslessly.
            return refuse(ch, SL_EFULL, remaining, cause, head_before, size);
        }
        call->evictions++;
        return SL_OK;
    case SL_FULL_BLOCK:
    default:
        break;
    }
    if (call->deadline_ns == SL_DEADLINE_NOW) {
        return refuse(ch, SL_EAGAIN, remaining, cause, head_before, size);
    }
    int64_t start_ns = sl_now_ns();
    if (start_ns >= call->deadline_ns) {
        return refuse(ch, SL_ETIMEDOUT, remaining, cause, head_before, size);
    }
    if (!spin_for_room(ch, cause, head_before, size)) {
        wait_room(ch, cause, head_before, size, call->deadline_ns);
    }
    call->blocked_ns += sl_now_ns() - start_ns;
    return SL_OK;
}

static int
check_sizes(const sl_channel *ch, const uint32_t *sizes, uint32_t count)
{
    uint64_t max = ch->capacity_bytes != 0 ? SL_MIN(ch->capacity_bytes, SL_RECORD_SIZE_MAX)
                                           : SL_RECORD_SIZE_MAX;
    // A max reduction rather than an early exit: the compiler vectorises it.
    uint32_t largest = 0;
    for (uint32_t i = 0; i < count; i++) {
        largest = SL_MAX(largest, sizes[i]);
    }
    return largest > max ? SL_ETOOBIG : SL_OK;
}

// inflight brackets a push's closed check and its publish, so a consumer that sees the channel
// closed with nothing in flight knows nothing more can arrive. The closed check must not be seen
// before inflight is raised (a store-load order, paired with the fence_heavy in
// closed_and_drained): the one SPSC producer stores and runs fence_light, many producers count.
static void
inflight_enter(sl_channel *ch)
{
    if (ch->kind == SL_CHANNEL_SPSC) {
        atomic_store_explicit(&ch->inflight, 1, memory_order_relaxed);
        fence_light(ch);
    } else {
        atomic_fetch_add(&ch->inflight, 1);
    }
}

static void
inflight_leave(sl_channel *ch)
{
    if (ch->kind == SL_CHANNEL_SPSC) {
        atomic_store_explicit(&ch->inflight, 0, memory_order_release);
    } else {
        atomic_fetch_sub(&ch->inflight, 1);
    }
}

int
sl_channel_push_batch(sl_channel *ch, void *const *items, const uint32_t *sizes, uint32_t count,
                      uint32_t *pushed_out, int64_t deadline_ns)
{
    SL_ASSERT(ch != NULL);
    SL_ASSERT(pushed_out != NULL);
    SL_ASSERT(count == 0 || (items != NULL && sizes != NULL));
    *pushed_out = 0;
    int err = check_sizes(ch, sizes, count);
    if (err != SL_OK) {
        return err;
    }
    push_call call = {.items = items, .sizes = sizes, .count = count, .deadline_ns = deadline_ns};
    // Bounded: each pass takes or drops a record, evicts one (capped), sleeps toward the deadline,
    // or returns.
    while (call.done < count) {
        // Only a budget refusal waits for "head moved"; reading head on every push would pull the
        // consumer's cache line across cores each time.
        uint64_t head_before =
            ch->budget != NULL ? atomic_load_explicit(&ch->head, memory_order_acquire) : 0;
        inflight_enter(ch);
        if (atomic_load(&ch->closed) != 0) {
            inflight_leave(ch);
            wake_consumers(ch);
            err = SL_ECLOSED;
            break;
        }
        channel_full_cause cause = CHANNEL_FULL_RING;
        uint32_t n =
            ring_try_push(ch, items + call.done, sizes + call.done, count - call.done, &cause);
        inflight_leave(ch);
        if (n > 0) {
            call.done += n;
            wake_consumers(ch);
            continue;
        }
        err = push_on_full(ch, &call, cause, head_before);
        if (err != SL_OK) {
            break;
        }
    }
    if (call.blocked_ns > 0) {
        atomic_fetch_add_explicit(&ch->blocked_ns_total, call.blocked_ns, memory_order_relaxed);
    }
    *pushed_out = call.done;
    SL_DEBUG_ASSERT(sl__channel_check(ch));
    return err;
}

int
sl_channel_push(sl_channel *ch, void *item, uint32_t size_bytes, int64_t deadline_ns)
{
    uint32_t pushed = 0;
    return sl_channel_push_batch(ch, &item, &size_bytes, 1, &pushed, deadline_ns);
}

// ---- pop ---------------------------------------------------------------------------------------

// True once the channel is closed, no push is between its closed check and its publish, and the
// ring is empty: nothing can arrive any more.
static bool
closed_and_drained(sl_channel *ch)
{
    if (atomic_load(&ch->closed) == 0) {
        return false;
    }
    // Pairs with inflight_enter: a push that has not raised inflight yet will see closed.
    fence_heavy(ch);
    return atomic_load(&ch->inflight) == 0 && !ring_has_data(ch);
}

int
sl_channel_pop_batch(sl_channel *ch, void **items, uint32_t *sizes, uint32_t max,
                     uint32_t *popped_out, int64_t deadline_ns)
{
    SL_ASSERT(ch != NULL);
    SL_ASSERT(items != NULL);
    SL_ASSERT(popped_out != NULL);
    SL_ASSERT(max > 0);
    *popped_out = 0;
    int64_t idle_ns = 0;
    int err = SL_OK;
    // Bounded by the deadline: each pass pops, returns, or sleeps toward the deadline.
    for (;;) {
        uint32_t n = ring_try_pop(ch, items, sizes, max);
        if (n > 0) {
            wake_producers(ch);
            *popped_out = n;
            break;
        }
        if (closed_and_drained(ch)) {
            err = SL_ECLOSED;
            break;
        }
        if (deadline_ns == SL_DEADLINE_NOW) {
            arm_data(ch);
            err = SL_EAGAIN;
            break;
        }
        int64_t start_ns = sl_now_ns();
        if (start_ns >= deadline_ns) {
            arm_data(ch);
            err = SL_ETIMEDOUT;
            break;
        }
        if (atomic_load(&ch->closed) != 0) {
            // A push is between its closed check and its publish: it finishes without blocking.
            sched_yield();
        } else if (!spin_for_data(ch)) {
            wait_data(ch, deadline_ns);
        }
        idle_ns += sl_now_ns() - start_ns;
    }
    if (idle_ns > 0) {
        atomic_fetch_add_explicit(&ch->blocked_pops_ns_total, idle_ns, memory_order_relaxed);
    }
    SL_DEBUG_ASSERT(sl__channel_check(ch));
    return err;
}

int
sl_channel_pop(sl_channel *ch, void **item_out, uint32_t *size_out, int64_t deadline_ns)
{
    SL_ASSERT(item_out != NULL);
    uint32_t popped = 0;
    return sl_channel_pop_batch(ch, item_out, size_out, 1, &popped, deadline_ns);
}

// ---- lifecycle, signalling, stats --------------------------------------------------------------

void
sl_channel_close(sl_channel *ch)
{
    SL_ASSERT(ch != NULL);
    atomic_store(&ch->closed, 1);
    pthread_mutex_lock(&ch->mutex);
    pthread_cond_broadcast(&ch->room_cond);
    pthread_cond_broadcast(&ch->data_cond);
    pthread_mutex_unlock(&ch->mutex);
    if (atomic_exchange(&ch->room_wanted, 0) != 0) {
        notify_room(ch);
    }
    if (atomic_exchange(&ch->data_wanted, 0) != 0) {
        fd_signal(atomic_load_explicit(&ch->data_fd, memory_order_acquire));
    }
}

void
sl_channel_free(sl_channel *ch)
{
    if (ch == NULL) {
        return;
    }
    // Bounded by the capacity: no thread pushes any more.
    for (uint32_t i = 0; i < ch->capacity; i++) {
        void *item = NULL;
        uint32_t size = 0;
        if (ring_try_pop(ch, &item, &size, 1) == 0) {
            break;
        }
        if (ch->drop_cb != NULL) {
            ch->drop_cb(ch, item, size, SL_CHANNEL_DROP_DISCARDED, ch->drop_user);
        }
    }
    SL_ASSERT(!ring_has_data(ch));
    int fds[2] = {atomic_load(&ch->room_fd), atomic_load(&ch->data_fd)};
    for (uint32_t i = 0; i < SL_ARRAY_LEN(fds); i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    pthread_cond_destroy(&ch->data_cond);
    pthread_cond_destroy(&ch->room_cond);
    pthread_mutex_destroy(&ch->mutex);
    sl_free(ch->slots, (size_t)ch->capacity * CHANNEL_SLOT_BYTES);
    sl_free(ch, sizeof(*ch));
}

static int
lazy_eventfd(sl_channel *ch, _Atomic int *fd_slot)
{
    pthread_mutex_lock(&ch->mutex);
    int fd = atomic_load(fd_slot);
    if (fd < 0) {
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        atomic_store(fd_slot, fd);
    }
    pthread_mutex_unlock(&ch->mutex);
    return fd;
}

int
sl_channel_room_fd(sl_channel *ch)
{
    SL_ASSERT(ch != NULL);
    return lazy_eventfd(ch, &ch->room_fd);
}

int
sl_channel_data_fd(sl_channel *ch)
{
    SL_ASSERT(ch != NULL);
    return lazy_eventfd(ch, &ch->data_fd);
}

void
sl_channel_set_room_cb(sl_channel *ch, sl_channel_room_cb cb, void *user)
{
    SL_ASSERT(ch != NULL);
    pthread_mutex_lock(&ch->mutex);
    ch->room_cb = cb;
    ch->room_user = user;
    pthread_mutex_unlock(&ch->mutex);
}

static int64_t
oldest_age_ns(sl_channel *ch, uint64_t head, int64_t now_ns)
{
    uint64_t index = head & ch->mask;
    if (ch->seq_ring && atomic_load_explicit(&ch->seqs[index], memory_order_acquire) != head + 1) {
        return 0; // claimed but not yet written, or just taken
    }
    int64_t enqueued_ns = atomic_load_explicit(&ch->enqueued_ns[index], memory_order_relaxed);
    return enqueued_ns > 0 && now_ns > enqueued_ns ? now_ns - enqueued_ns : 0;
}

void
sl_channel_stats_get(const sl_channel *ch, sl_channel_stats *out)
{
    SL_ASSERT(ch != NULL);
    SL_ASSERT(out != NULL);
    sl_channel *mut = (sl_channel *)ch; // atomics are read, never written
    // Out before in, head before tail: the later reads are never behind the earlier ones.
    uint64_t bytes_out = atomic_load_explicit(&mut->bytes_out, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&mut->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&mut->tail, memory_order_acquire);
    uint64_t bytes_in = atomic_load_explicit(&mut->bytes_in, memory_order_acquire);
    uint64_t depth = tail > head ? SL_MIN(tail - head, (uint64_t)ch->capacity) : 0;
    uint64_t dropped_oldest =
        atomic_load_explicit(&mut->dropped_oldest_total, memory_order_relaxed);
    *out = (sl_channel_stats){
        .capacity_records = ch->capacity,
        .capacity_bytes = ch->capacity_bytes,
        .depth_records = depth,
        .depth_bytes = bytes_in > bytes_out ? bytes_in - bytes_out : 0,
        .oldest_age_ns = depth > 0 ? oldest_age_ns(mut, head, sl_now_ns()) : 0,
        .pushed_total = tail,
        // Evictions go through head too; they are drops, not deliveries.
        .popped_total = head > dropped_oldest ? head - dropped_oldest : 0,
        .dropped_full_newest_total =
            atomic_load_explicit(&mut->dropped_newest_total, memory_order_relaxed),
        .dropped_full_oldest_total = dropped_oldest,
        .rejected_total = atomic_load_explicit(&mut->rejected_total, memory_order_relaxed),
        .blocked_ns_total = atomic_load_explicit(&mut->blocked_ns_total, memory_order_relaxed),
        .blocked_pops_ns_total =
            atomic_load_explicit(&mut->blocked_pops_ns_total, memory_order_relaxed),
        .closed = atomic_load(&mut->closed) != 0,
    };
    double fill = (double)depth / (double)ch->capacity;
    if (ch->capacity_bytes != 0) {
        fill = SL_MAX(fill, (double)out->depth_bytes / (double)ch->capacity_bytes);
    }
    out->fill_ratio = SL_MIN(fill, 1.0);
}

const char *
sl_channel_name(const sl_channel *ch)
{
    SL_ASSERT(ch != NULL);
    return ch->name;
}

bool
sl__channel_check(const sl_channel *ch)
{
    sl_channel *mut = (sl_channel *)ch;
    // head, tail, head again: head1 <= tail (head never passes tail), and tail - head2 <= capacity
    // (a record is claimed only once the one a lap earlier was taken). Same for the bytes.
    uint64_t head1 = atomic_load(&mut->head);
    uint64_t tail = atomic_load(&mut->tail);
    uint64_t head2 = atomic_load(&mut->head);
    uint64_t out1 = atomic_load(&mut->bytes_out);
    uint64_t in = atomic_load(&mut->bytes_in);
    uint64_t out2 = atomic_load(&mut->bytes_out);
    bool ok = (ch->capacity & ch->mask) == 0 && ch->capacity >= CHANNEL_RING_MIN;
    ok = ok && head1 <= tail && tail - SL_MIN(head2, tail) <= ch->capacity;
    ok = ok && out1 <= in;
    ok = ok && (ch->capacity_bytes == 0 || in - SL_MIN(out2, in) <= ch->capacity_bytes);
    return ok;
}
