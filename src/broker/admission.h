// Admission control: what the broker tells a producer stream, from the state of the budgets and
// rates it measures. Pure functions (no I/O, no clock): the connection code measures, these
// decide. The escalation order is law 3 of the design: shrink credit -> delay acks -> throttle
// with a retry-after. Stopping reads and disconnecting are for peers that break the protocol and
// live in the connection code.
#ifndef SLUICE_BROKER_ADMISSION_H
#define SLUICE_BROKER_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

// Why a producer is slowed; travels in THROTTLE frames and metrics labels.
typedef enum sl_admission_reason {
    SL_ADMIT_REASON_NONE = 0,
    SL_ADMIT_REASON_MEMORY_BUDGET = 1, // broker or topic memory budget
    SL_ADMIT_REASON_DISK_BUDGET = 2,   // topic or global disk budget (lossless: nothing is deleted)
    SL_ADMIT_REASON_BACKLOG = 3,       // topic max_backlog_bytes
    SL_ADMIT_REASON_MAX_LAG = 4,       // topic max_lag: slowest group too far behind in time
    SL_ADMIT_REASON_QUOTA = 5,         // a configured rate quota
} sl_admission_reason;

typedef enum sl_admission_level {
    SL_ADMIT_GRANT = 0,      // full, time-sized window
    SL_ADMIT_SHRINK = 1,     // window shrinks with pressure
    SL_ADMIT_DELAY_ACKS = 2, // smallest windows and acks held back
    SL_ADMIT_THROTTLE = 3,   // no credit; THROTTLE with retry-after
} sl_admission_level;

// One constraint: used against capacity (bytes, or ms for max_lag). capacity 0: not configured.
typedef struct sl_admission_constraint {
    sl_admission_reason reason;
    uint64_t used;
    uint64_t capacity;
} sl_admission_constraint;

#define SL_ADMISSION_CONSTRAINTS_MAX 6

typedef struct sl_admission_input {
    sl_admission_constraint constraints[SL_ADMISSION_CONSTRAINTS_MAX];
    size_t constraint_count;
    double drain_bytes_per_s;   // measured rate at which the constraining backlog drains (EWMA)
    double produce_bytes_per_s; // this stream's measured accepted rate (EWMA)
    int64_t round_trip_us;      // measured credit round trip, commit (fsync) latency included
} sl_admission_input;

typedef struct sl_admission_config {
    uint32_t shrink_from_pct;     // pressure (percent of capacity) where credit starts shrinking
    uint32_t delay_acks_from_pct; // pressure where acks start being delayed; > shrink_from_pct
    uint64_t window_min_bytes;    // smallest window ever granted while not throttled
    uint64_t window_max_bytes;    // largest window (also capped by the budget's free bytes)
    int64_t ack_delay_max_ms;     // ack delay at 100 % pressure
    int64_t retry_after_min_ms;
    int64_t retry_after_max_ms;
} sl_admission_config;

typedef struct sl_admission_decision {
    sl_admission_level level;
    sl_admission_reason reason; // the most constraining budget, NONE below shrink_from_pct
    double pressure;            // max over constraints of used / capacity
    uint64_t window_bytes;      // credit the stream may have outstanding; 0 when throttled
    int64_t ack_delay_ms;       // 0 unless DELAY_ACKS
    int64_t retry_after_ms;     // > 0 only when THROTTLE
} sl_admission_decision;

// Defaults: shrink from 80 %, delay acks from 95 %, windows 64 KiB..16 MiB, ack delay up to
// 50 ms, retry-after 5 ms..5 s.
void sl_admission_config_default(sl_admission_config *config);

// The window a stream needs to run at its rate: twice rate x round trip (so credit never runs out
// while the previous grant is in flight), at least window_min_bytes, at most window_max_bytes.
// A stream that uses its whole window measures a rate that lets the next window double: growth
// is exponential until the window stops being the limit.
uint64_t sl_admission_window_for(const sl_admission_config *config, double rate_bytes_per_s,
                                 int64_t round_trip_us);

// Decides what a producer stream gets now.
void sl_admission_decide(const sl_admission_config *config, const sl_admission_input *input,
                         sl_admission_decision *decision_out);

// Max-min fair division of capacity among n demands (water-filling): every demand below the fair
// level gets all it asks; the rest share what is left equally. shares_out[i] <= demands[i], the
// shares sum to min(capacity, sum of demands). n <= SL_FAIR_SHARE_MAX.
#define SL_FAIR_SHARE_MAX 4096
void sl_fair_share(uint64_t capacity, const uint64_t *demands, size_t n, uint64_t *shares_out);

const char *sl_admission_reason_name(sl_admission_reason reason);

#endif
