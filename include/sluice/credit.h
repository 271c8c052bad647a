// Credit: request(n) accounting between a requester (a consumer, or the broker granting producer
// credit) and a deliverer, following the Reactive Streams rules: never more records delivered than
// requested, request(n <= 0) is an error told to the requester, demand accumulates and saturates
// at INT64_MAX (= unbounded), cancel stops delivery. Bytes may be limited too; see
// sl_credit_spend for the one-record rule that keeps a large record from stalling a stream.
#ifndef SLUICE_CREDIT_H
#define SLUICE_CREDIT_H

#include <stdatomic.h>

#include <sluice/defs.h>

// Demand at or above this is unbounded: it is never decremented again (Reactive Streams 3.17).
#define SL_CREDIT_UNBOUNDED INT64_MAX

// Held in the caller's storage; the fields are private (use the functions below).
typedef struct sl_credit {
    _Atomic int64_t records; // remaining record demand; -1 once canceled
    _Atomic int64_t bytes;   // remaining byte demand; SL_CREDIT_UNBOUNDED = no byte limit
    _Atomic uint64_t records_requested_total; // saturates at SL_CREDIT_UNBOUNDED
    _Atomic uint64_t bytes_requested_total;   // saturates at SL_CREDIT_UNBOUNDED
    _Atomic uint64_t records_delivered_total;
    _Atomic uint64_t bytes_delivered_total;
    _Atomic uint64_t bytes_overshoot_total; // bytes delivered beyond byte demand (one-record rule)
    _Atomic uint64_t refused_total;         // spends answered SL_EFULL
    _Atomic uint64_t invalid_total;         // requests answered SL_EINVAL
} sl_credit;

typedef struct sl_credit_stats {
    int64_t records_available; // remaining record demand; SL_CREDIT_UNBOUNDED when unbounded
    int64_t bytes_available;   // remaining byte demand; SL_CREDIT_UNBOUNDED when unbounded
    uint64_t records_requested_total;
    uint64_t bytes_requested_total;
    uint64_t records_delivered_total;
    uint64_t bytes_delivered_total;
    uint64_t bytes_overshoot_total;
    uint64_t refused_total;
    uint64_t invalid_total;
    bool canceled;
} sl_credit_stats;

// Initializes credit with no demand. With limit_bytes false, bytes are not limited (byte demand
// starts unbounded and byte arguments only feed the counters); with true, byte demand starts at 0
// and must be requested like records. Cannot fail. Not thread-safe against other calls on c.
SL_API void sl_credit_init(sl_credit *c, bool limit_bytes);

// Adds demand: records (must be > 0) and bytes (>= 0; 0 leaves byte demand unchanged). Each adds
// with saturation at SL_CREDIT_UNBOUNDED, which means unbounded from then on. Returns SL_OK;
// SL_EINVAL when records <= 0 or bytes < 0 (the requester's bug, told to it; nothing changes);
// SL_ECANCELED after sl_credit_cancel (a no-op, Reactive Streams 3.6). Thread-safe, lock-free,
// never blocks.
SL_API SL_MUST_USE int sl_credit_request(sl_credit *c, int64_t records, int64_t bytes);

// Adds byte demand only (bytes must be > 0), for a requester whose record demand is not used up
// but whose byte demand is. Same results and rules as sl_credit_request.
SL_API SL_MUST_USE int sl_credit_request_bytes(sl_credit *c, int64_t bytes);

// The grant side's helper: requests just enough that the available demand is at least
// records_target and (when bytes are limited) bytes_target, and nothing when it already is.
// Concurrent spends only lower the demand, so this never leaves more than the targets available.
// Meant for one granting thread (e.g. the broker refilling a producer's window); returns what
// sl_credit_request returns, or SL_OK when nothing was needed.
SL_API SL_MUST_USE int sl_credit_top_up(sl_credit *c, int64_t records_target, int64_t bytes_target);

// Takes credit for delivering `records` records totalling `bytes` bytes, all or nothing. Returns
// SL_OK (deliver them), SL_EFULL (not enough demand: deliver nothing, nothing was taken; a
// backpressure outcome), or SL_ECANCELED (stop delivering). records must be >= 1.
// The one-record rule for bytes: a spend whose bytes exceed the remaining byte demand succeeds
// when that demand is > 0 and the spend is a single record; the byte demand then becomes 0 and the
// excess is counted in bytes_overshoot_total. So a record of any size is delivered as soon as any
// byte demand exists (a stream never stalls on a large record), and the bytes delivered since the
// requester's last request never exceed the byte demand it left plus one record minus one byte.
// Thread-safe and lock-free; any number of threads may spend and request concurrently. With
// several spenders, one may be refused while another's spend that is refused for bytes gives its
// records back (conservative: never more is delivered than requested).
SL_API SL_MUST_USE int sl_credit_spend(sl_credit *c, uint64_t records, uint64_t bytes);

// Reads the remaining demand (each SL_CREDIT_UNBOUNDED when unbounded; 0 after cancel). Either
// out-pointer may be NULL. A snapshot: the two values are read one after the other.
SL_API void sl_credit_available(const sl_credit *c, int64_t *records_out, int64_t *bytes_out);

// Cancels: every spend that starts after this returns SL_ECANCELED, and requests become no-ops.
// Idempotent, thread-safe.
SL_API void sl_credit_cancel(sl_credit *c);

// True once sl_credit_cancel has been called.
SL_API bool sl_credit_canceled(const sl_credit *c);

// Copies the counters (each read atomically, the set not as one snapshot).
SL_API void sl_credit_stats_get(const sl_credit *c, sl_credit_stats *stats_out);

#endif
