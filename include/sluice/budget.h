// Byte and record budgets: every buffer in sluice reserves from one before it grows (law 1).
// Budgets form a tree (global -> topic -> connection): a reservation on a child also reserves on
// every ancestor, and succeeds only if all of them have room. Each budget has a high and a low
// watermark; it becomes "pressured" when its fill reaches the high watermark and stops being
// pressured only when it falls to the low one (hysteresis). All functions are thread-safe.
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <sluice/defs.h>
#include <sluice/limits.h>

typedef struct sl_budget sl_budget;

typedef struct sl_budget_config {
    const char *name;            // borrowed; copied (truncated to SL_NAME_MAX - 1)
    uint64_t capacity_bytes;     // > 0: hard cap on reserved bytes
    uint64_t capacity_records;   // 0: no record cap; else hard cap on reserved records
    uint32_t high_watermark_pct; // 0 picks SL_WATERMARK_HIGH_PCT_DEFAULT; 1..100
    uint32_t low_watermark_pct;  // 0 picks SL_WATERMARK_LOW_PCT_DEFAULT; < high
} sl_budget_config;

// Called when the budget crosses a watermark: pressured = true when fill reached the high
// watermark, false when it fell back to the low one. Runs on the thread that reserved or released,
// with no budget lock held; it must not block. It may call any sl_budget function.
typedef void (*sl_budget_watermark_cb)(sl_budget *budget, bool pressured, void *user);

typedef struct sl_budget_stats {
    uint64_t capacity_bytes;
    uint64_t capacity_records;
    uint64_t used_bytes;
    uint64_t used_records;
    uint64_t peak_bytes;      // highest used_bytes since creation
    uint64_t reserve_total;   // successful reservations
    uint64_t full_total;      // reservations refused with SL_EFULL (here or at an ancestor)
    uint64_t pressured_total; // times the budget crossed its high watermark
    bool pressured;
    double fill_ratio; // max(bytes fill, records fill), 0..1
} sl_budget_stats;

// Creates a budget. parent (borrowed, may be NULL) must outlive it. Returns SL_EINVAL for a zero
// byte capacity or watermarks out of order, SL_ENOMEM.
SL_API SL_MUST_USE int sl_budget_new(const sl_budget_config *config, sl_budget *parent,
                                     sl_budget **budget_out);

// Frees a budget. Everything reserved on it must have been released (asserted).
SL_API void sl_budget_free(sl_budget *budget);

// Reserves bytes and records on the budget and all its ancestors, or nothing at all.
// Returns SL_OK, or SL_EFULL when any of them lacks room (a backpressure signal, not an error).
// Never blocks.
SL_API SL_MUST_USE int sl_budget_reserve(sl_budget *budget, uint64_t bytes, uint64_t records);

// As sl_budget_reserve, but waits until room appears or deadline_ns (CLOCK_MONOTONIC) passes.
// Returns SL_OK, SL_ETIMEDOUT, or SL_ETOOBIG when the request exceeds a capacity in the chain and
// can never succeed. The time spent waiting is added to *waited_ns_out when it is not NULL.
SL_API SL_MUST_USE int sl_budget_reserve_wait(sl_budget *budget, uint64_t bytes, uint64_t records,
                                              int64_t deadline_ns, int64_t *waited_ns_out);

// Releases what an earlier reservation took, on the budget and all its ancestors.
SL_API void sl_budget_release(sl_budget *budget, uint64_t bytes, uint64_t records);

// What one record of payload_bytes costs: payload plus SL_RECORD_OVERHEAD_BYTES of bookkeeping.
static inline uint64_t
sl_budget_record_cost(uint64_t payload_bytes)
{
    return payload_bytes + SL_RECORD_OVERHEAD_BYTES;
}

// True while the budget is between crossing its high watermark and falling back to the low one.
SL_API bool sl_budget_pressured(const sl_budget *budget);

// Sets (or clears, with cb == NULL) the watermark callback.
SL_API void sl_budget_set_watermark_cb(sl_budget *budget, sl_budget_watermark_cb cb, void *user);

// Returns a file descriptor that becomes readable when the budget leaves the pressured state or
// space is released after an SL_EFULL; read it (8 bytes) to rearm. For event loops. Owned by the
// budget; -1 when it could not be created (errno-level failure).
SL_API int sl_budget_room_fd(sl_budget *budget);

// Copies a consistent snapshot of the budget's counters.
SL_API void sl_budget_stats_get(const sl_budget *budget, sl_budget_stats *stats_out);

// The budget's name (owned by the budget).
SL_API const char *sl_budget_name(const sl_budget *budget);

#endif
