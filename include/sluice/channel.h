// Bounded channels between threads: the edges of the pipeline runtime and the hand-off between
// the broker's event loop and its storage thread. A channel holds at most a fixed number of records
// (and optionally bytes, and optionally draws from a budget); what happens when it is full is a
// per-channel policy, and every wait and every drop is counted. See docs/api/channel.md.
#ifndef SLUICE_CHANNEL_H
#define SLUICE_CHANNEL_H

#include <sluice/budget.h>
#include <sluice/defs.h>
#include <sluice/limits.h>

typedef struct sl_channel sl_channel;

// SPSC: exactly one pushing thread and one popping thread at a time (lock-free ring, the fast
// path). MPMC: any number of each (bounded lock-free queue with per-slot sequence numbers).
typedef enum sl_channel_kind {
    SL_CHANNEL_SPSC = 0,
    SL_CHANNEL_MPMC = 1,
} sl_channel_kind;

// What a push does when the channel (records, bytes or budget) is full.
typedef enum sl_full_policy {
    SL_FULL_BLOCK = 0,       // lossless: wait until room, the deadline, or close (default)
    SL_FULL_REJECT = 1,      // lossless: return SL_EFULL at once; the caller keeps the record
    SL_FULL_DROP_NEWEST = 2, // lossy: take the incoming record and drop it (drop_cb, counted)
    SL_FULL_DROP_OLDEST = 3, // lossy: drop the oldest queued records until the new one fits
} sl_full_policy;

// Why the channel handed a record to drop_cb.
typedef enum sl_channel_drop_reason {
    SL_CHANNEL_DROP_FULL_NEWEST = 0, // SL_FULL_DROP_NEWEST refused the incoming record
    SL_CHANNEL_DROP_FULL_OLDEST = 1, // SL_FULL_DROP_OLDEST evicted a queued record
    SL_CHANNEL_DROP_DISCARDED = 2,   // still queued when the channel was freed (not counted)
} sl_channel_drop_reason;

// Receives ownership of a record the channel will not deliver, so the owner can free it. Runs on
// the pushing thread (or in sl_channel_free), with no channel lock held; it must not block and
// must not call into the same channel.
typedef void (*sl_channel_drop_cb)(sl_channel *ch, void *item, uint32_t size_bytes,
                                   sl_channel_drop_reason reason, void *user);

// Called once after a push was refused (SL_EFULL, SL_EAGAIN) or blocked, when room may have
// appeared (a pop, or close). Runs on the popping or closing thread, or on the refused pusher's
// own thread just before the push returns if room appeared meanwhile; no channel lock is held.
// It must not block; it may call sl_channel_* (a try push, typically, or waking an event loop).
typedef void (*sl_channel_room_cb)(sl_channel *ch, void *user);

typedef struct sl_channel_config {
    const char *name;          // borrowed; copied (truncated to SL_NAME_MAX - 1)
    sl_channel_kind kind;      // SL_CHANNEL_SPSC (default) or SL_CHANNEL_MPMC
    uint32_t capacity_records; // 1..SL_CHANNEL_RECORDS_MAX; rounded up to a power of two >= 2
    uint64_t capacity_bytes;   // 0: records only; else cap on the sum of size_bytes queued
    sl_budget *budget;         // borrowed, may be NULL; charged sl_budget_record_cost(size)
                               // and 1 record per queued record; a refused reservation is full
    sl_full_policy full_policy;
    sl_channel_drop_cb drop_cb; // may be NULL (dropped items are then just forgotten)
    void *drop_user;
} sl_channel_config;

typedef struct sl_channel_stats {
    uint64_t capacity_records;          // effective (rounded) capacity
    uint64_t capacity_bytes;            // 0: no byte cap
    uint64_t depth_records;             // queued now
    uint64_t depth_bytes;               // sum of size_bytes queued now
    double fill_ratio;                  // max(records fill, bytes fill), 0..1
    int64_t oldest_age_ns;              // age of the oldest queued record; 0 when empty; may be
                                        // high by up to one coarse clock tick (1-4 ms), never low
    uint64_t pushed_total;              // records that entered the queue
    uint64_t popped_total;              // records delivered to consumers
    uint64_t dropped_full_newest_total; // SL_CHANNEL_DROP_FULL_NEWEST
    uint64_t dropped_full_oldest_total; // SL_CHANNEL_DROP_FULL_OLDEST
    uint64_t rejected_total;            // records refused with SL_EFULL or SL_EAGAIN
    int64_t blocked_ns_total;           // producers' backpressured time (waiting for room)
    int64_t blocked_pops_ns_total;      // consumers' idle time (waiting for data)
    bool closed;
} sl_channel_stats;

// Creates a channel; the ring is allocated here and never grows. Returns SL_EINVAL for a bad
// config (capacity 0 or above SL_CHANNEL_RECORDS_MAX, unknown kind or policy), SL_ENOMEM.
// The budget, when given, must outlive the channel.
SL_API SL_MUST_USE int sl_channel_new(const sl_channel_config *config, sl_channel **channel_out);

// Frees a channel. Records still queued go to drop_cb (SL_CHANNEL_DROP_DISCARDED) and their budget
// charge is released. No thread may be using the channel any more.
SL_API void sl_channel_free(sl_channel *ch);

// Pushes one record; item is opaque, size_bytes is what byte caps and budgets count. On SL_OK the
// channel owns the item (it is queued, or with SL_FULL_DROP_NEWEST possibly dropped through
// drop_cb). On any error the caller keeps it. When full: SL_FULL_BLOCK waits until deadline_ns
// (SL_DEADLINE_NOW: returns SL_EAGAIN at once; otherwise SL_ETIMEDOUT when it passes);
// SL_FULL_REJECT returns SL_EFULL; the drop policies succeed. Also SL_ECLOSED after close,
// SL_ETOOBIG when size_bytes exceeds capacity_bytes or SL_RECORD_SIZE_MAX. Thread-safe per kind.
SL_API SL_MUST_USE int sl_channel_push(sl_channel *ch, void *item, uint32_t size_bytes,
                                       int64_t deadline_ns);

// Pushes up to count records in order, publishing them in as few steps as room allows. The
// channel owns items[0 .. *pushed_out); the caller keeps the rest. Returns SL_OK when all were
// taken, else the error that stopped it (as sl_channel_push). sizes[i] belongs to items[i].
SL_API SL_MUST_USE int sl_channel_push_batch(sl_channel *ch, void *const *items,
                                             const uint32_t *sizes, uint32_t count,
                                             uint32_t *pushed_out, int64_t deadline_ns);

// Pops the oldest record into *item_out / *size_out (size_out may be NULL); the caller owns it.
// Waits for data until deadline_ns: SL_EAGAIN for SL_DEADLINE_NOW on an empty channel,
// SL_ETIMEDOUT when the deadline passes, SL_ECLOSED once the channel is closed and drained.
SL_API SL_MUST_USE int sl_channel_pop(sl_channel *ch, void **item_out, uint32_t *size_out,
                                      int64_t deadline_ns);

// Pops between 1 and max records (whatever is queued, without waiting for more once one is
// there) into items[] and sizes[] (sizes may be NULL); *popped_out says how many. Errors as
// sl_channel_pop, with *popped_out = 0.
SL_API SL_MUST_USE int sl_channel_pop_batch(sl_channel *ch, void **items, uint32_t *sizes,
                                            uint32_t max, uint32_t *popped_out,
                                            int64_t deadline_ns);

// Closes the channel: later pushes fail with SL_ECLOSED, blocked pushers return SL_ECLOSED, pops
// drain what is queued and then return SL_ECLOSED. Idempotent; thread-safe; wakes every waiter.
SL_API void sl_channel_close(sl_channel *ch);

// Returns an eventfd (owned by the channel) that becomes readable when room may have appeared
// after a push was refused or blocked; read 8 bytes to rearm. When a push fails because the
// budget (not the channel) is full and this channel holds nothing, watch sl_budget_room_fd too.
// Returns -1 when the fd could not be created.
SL_API int sl_channel_room_fd(sl_channel *ch);

// Sets (or clears, cb == NULL) the room callback; see sl_channel_room_cb.
SL_API void sl_channel_set_room_cb(sl_channel *ch, sl_channel_room_cb cb, void *user);

// Returns an eventfd (owned by the channel) that becomes readable when data (or close) may have
// appeared after a pop found the channel empty; read 8 bytes to rearm. -1 on failure.
SL_API int sl_channel_data_fd(sl_channel *ch);

// Copies the channel's gauges and counters. Lock-free; the fields are read one by one, so under
// concurrent traffic they are individually accurate but not one atomic snapshot.
SL_API void sl_channel_stats_get(const sl_channel *ch, sl_channel_stats *stats_out);

// The channel's name (owned by the channel).
SL_API const char *sl_channel_name(const sl_channel *ch);

#endif
