// Metrics: counters, gauges, per-stage time accounting (busy / backpressured / idle milliseconds
// per second), and a bounded registry that exposes them, with histograms (sluice/histogram.h),
// in the Prometheus text format and as JSON. Recording never takes a lock; only registration and
// scraping share the registry's mutex. Names and the core metric list: docs/metrics.md.
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdatomic.h>

#include <sluice/defs.h>
#include <sluice/histogram.h>
#include <sluice/limits.h>

// ---- counters and gauges (caller's storage; all operations lock-free and thread-safe) ----------

// A monotonic count. Not padded to a cache line: the counters of one object are usually written
// by one thread, so padding would cost 56 bytes each for nothing; place counters that different
// threads hammer in different objects.
typedef struct sl_counter {
    _Atomic uint64_t value;
} sl_counter;

// A value that goes up and down (queue depth, credit, bytes in use).
typedef struct sl_gauge {
    _Atomic int64_t value;
} sl_gauge;

static inline void
sl_counter_init(sl_counter *counter)
{
    atomic_init(&counter->value, 0);
}

static inline void
sl_counter_add(sl_counter *counter, uint64_t n)
{
    atomic_fetch_add_explicit(&counter->value, n, memory_order_relaxed);
}

static inline void
sl_counter_inc(sl_counter *counter)
{
    sl_counter_add(counter, 1);
}

static inline uint64_t
sl_counter_get(const sl_counter *counter)
{
    return atomic_load_explicit(&counter->value, memory_order_relaxed);
}

static inline void
sl_gauge_init(sl_gauge *gauge)
{
    atomic_init(&gauge->value, 0);
}

static inline void
sl_gauge_set(sl_gauge *gauge, int64_t value)
{
    atomic_store_explicit(&gauge->value, value, memory_order_relaxed);
}

static inline void
sl_gauge_add(sl_gauge *gauge, int64_t delta)
{
    atomic_fetch_add_explicit(&gauge->value, delta, memory_order_relaxed);
}

static inline int64_t
sl_gauge_get(const sl_gauge *gauge)
{
    return atomic_load_explicit(&gauge->value, memory_order_relaxed);
}

// ---- time accounting ----------------------------------------------------------------------------

// What a stage is doing. Every nanosecond of a stage's life is in exactly one state.
typedef enum sl_time_state {
    SL_TIME_BUSY = 0,          // processing records
    SL_TIME_BACKPRESSURED = 1, // blocked on a full downstream (channel, budget, credit)
    SL_TIME_IDLE = 2,          // waiting for input
    SL_TIME_STATE_COUNT = 3,
} sl_time_state;

// Length of the accounting window: ms_per_s figures describe the last completed window.
#define SL_TIMEACCT_WINDOW_NS INT64_C(1000000000)

// Attempts a reader makes to get a consistent copy while the writer updates (it yields the CPU
// between attempts, so a writer preempted mid-update gets to finish).
#define SL_TIMEACCT_READ_TRIES 1000u

typedef struct sl_timeacct sl_timeacct;

typedef struct sl_timeacct_stats {
    sl_time_state state;                    // the current state
    uint32_t ms_per_s[SL_TIME_STATE_COUNT]; // last completed window; sums to 1000 exactly
    uint64_t total_ns[SL_TIME_STATE_COUNT]; // since creation, up to the read time
    uint64_t windows_completed;             // 0: ms_per_s is all zero (no window yet)
} sl_timeacct_stats;

// Creates a time account in initial_state at now_ns (any monotonic nanosecond clock, the same
// one for every later call; tests inject it). Returns SL_EINVAL for a bad state, SL_ENOMEM.
SL_API SL_MUST_USE int sl_timeacct_new(sl_time_state initial_state, int64_t now_ns,
                                       sl_timeacct **timeacct_out);

// Frees a time account (NULL is ignored).
SL_API void sl_timeacct_free(sl_timeacct *timeacct);

// Marks that the stage enters state at now_ns (entering the current state just brings the
// account up to date). One writer thread only; now_ns must not go backwards (earlier times are
// treated as the last one). Lock-free, never blocks.
SL_API void sl_timeacct_enter(sl_timeacct *timeacct, sl_time_state state, int64_t now_ns);

// Reads the account as of now_ns (>= the writer's last time; earlier is treated as equal), even
// when the writer has not called in for a while. Any number of reader threads, concurrently with
// the writer. Returns SL_OK, or SL_EAGAIN in the practically impossible case that the writer
// changed the account on every one of SL_TIMEACCT_READ_TRIES attempts.
SL_API SL_MUST_USE int sl_timeacct_read(const sl_timeacct *timeacct, int64_t now_ns,
                                        sl_timeacct_stats *stats_out);

// Lowercase name of a state ("busy", "backpressured", "idle"); "unknown" otherwise.
SL_API const char *sl_time_state_name(sl_time_state state);

// ---- registry -----------------------------------------------------------------------------------

typedef enum sl_metric_type {
    SL_METRIC_COUNTER = 0, // name ends in _total; sources: sl_counter or a read callback
    SL_METRIC_GAUGE = 1,   // sources: sl_gauge or a read callback
    SL_METRIC_SUMMARY = 2, // source: sl_histogram; exposed as a Prometheus summary
    SL_METRIC_TIME = 3,    // source: sl_timeacct; exposed as <name>_ms_per_second (gauge) and
                           // <name>_seconds_total (counter), with an added label state="busy"...
} sl_metric_type;

// Most labels a family may have: stage, topic, partition, reason... with room to spare.
#define SL_METRIC_LABELS_MAX 8u
// Longest label value in bytes, including the NUL; longer values are refused with SL_EINVAL.
#define SL_METRIC_LABEL_VALUE_MAX 128u
// Longest help text in bytes, including the NUL; longer help is refused with SL_EINVAL.
#define SL_METRIC_HELP_MAX 256u
// Default and hard ceiling for the number of series (one label-value combination) in a registry.
#define SL_METRICS_SERIES_DEFAULT 4096u
#define SL_METRICS_SERIES_MAX     (1u << 20)
// Default and hard ceiling for the number of families in a registry.
#define SL_METRICS_FAMILIES_DEFAULT 256u
#define SL_METRICS_FAMILIES_MAX     4096u

// Reads a value at scrape time, so an object that already keeps a statistic (a budget, a
// channel) exposes it without double bookkeeping. Called with the registry lock held: it must
// not block or call into the registry.
typedef double (*sl_metric_read_cb)(void *user);

typedef struct sl_metrics_registry sl_metrics_registry;

typedef struct sl_metrics_registry_config {
    uint32_t series_max;   // 0 picks SL_METRICS_SERIES_DEFAULT; <= SL_METRICS_SERIES_MAX
    uint32_t families_max; // 0 picks SL_METRICS_FAMILIES_DEFAULT; <= SL_METRICS_FAMILIES_MAX
} sl_metrics_registry_config;

typedef struct sl_metric_family_desc {
    const char *name; // borrowed; Prometheus grammar [a-zA-Z_:][a-zA-Z0-9_:]*, < SL_NAME_MAX
    const char *help; // borrowed; UTF-8, < SL_METRIC_HELP_MAX; may be NULL (empty)
    sl_metric_type type;
    const char *const *label_names; // borrowed; [a-zA-Z_][a-zA-Z0-9_]*, not __*, unique
    uint32_t label_count;           // <= SL_METRIC_LABELS_MAX
    double scale; // exposed value = recorded value * scale (1e-9 for ns -> s); 0 means 1
} sl_metric_family_desc;

// Exactly one of counter / gauge / histogram / timeacct / read_cb is set, matching the family's
// type. The object is borrowed: it must outlive the series (remove the series first).
typedef struct sl_metric_source {
    sl_counter *counter;
    sl_gauge *gauge;
    sl_histogram *histogram;
    sl_timeacct *timeacct;
    sl_metric_read_cb read_cb;
    void *read_user;
} sl_metric_source;

// Creates a registry. config may be NULL for defaults. Returns SL_EINVAL, SL_ENOMEM.
SL_API SL_MUST_USE int sl_metrics_registry_new(const sl_metrics_registry_config *config,
                                               sl_metrics_registry **registry_out);

// Frees a registry with every family and series still in it (the metric objects themselves
// belong to their owners). No thread may be using it.
SL_API void sl_metrics_registry_free(sl_metrics_registry *registry);

// Registers a family. Strings are copied. Returns SL_OK with a family id (never reused),
// SL_EINVAL for a bad name, label name, help or type (a counter not ending in _total, a label
// reserved by the exposition: le, quantile, state for SL_METRIC_TIME, or __*), SL_EEXIST for a
// name already registered, SL_EFULL when families_max are registered, SL_ENOMEM.
SL_API SL_MUST_USE int sl_metrics_family_register(sl_metrics_registry *registry,
                                                  const sl_metric_family_desc *desc,
                                                  uint64_t *family_id_out);

// Removes a family and all its series. Returns SL_ENOENT for an unknown id.
SL_API SL_MUST_USE int sl_metrics_family_unregister(sl_metrics_registry *registry,
                                                    uint64_t family_id);

// Adds a series to a family: label_values (borrowed, copied; label_count of the family) and the
// source to read. Returns SL_OK with a series id (never reused), SL_ENOENT for an unknown family,
// SL_EINVAL for a source that does not match the type or a label value that is too long or not
// UTF-8, SL_EEXIST for label values already present, SL_EFULL when series_max series exist
// (a bound, not a failure: the caller decides what to drop), SL_ENOMEM, or SL_EBUSY in the
// unlikely case that other threads kept growing the same family during the call (retry). Finding
// a duplicate costs O(1) on average (the family keeps a hash index of its label values).
SL_API SL_MUST_USE int sl_metrics_series_add(sl_metrics_registry *registry, uint64_t family_id,
                                             const char *const *label_values,
                                             const sl_metric_source *source,
                                             uint64_t *series_id_out);

// Removes a series. After it returns, no scrape reads the series' source. Returns SL_ENOENT.
SL_API SL_MUST_USE int sl_metrics_series_remove(sl_metrics_registry *registry, uint64_t series_id);

// Number of series currently registered.
SL_API uint32_t sl_metrics_series_count(sl_metrics_registry *registry);

// ---- encoders -----------------------------------------------------------------------------------

// Writes the Prometheus text exposition (version 0.0.4) of every series into buf (buf_size
// bytes, NUL-terminated). Each family gets one # HELP and one # TYPE line; summaries expose
// quantile="0.5|0.9|0.99|0.999" plus quantile="1" (the exact max), _sum and _count. now_ns is the
// time used to read time accounts (sl_now_ns() outside tests). Returns SL_OK with *length_out =
// bytes written (without the NUL), or SL_EFULL with *length_out = the buffer size needed
// (including the NUL) and buf holding a truncated, NUL-terminated prefix. Thread-safe.
SL_API SL_MUST_USE int sl_metrics_encode_prometheus(sl_metrics_registry *registry, int64_t now_ns,
                                                    char *buf, size_t buf_size, size_t *length_out);

// As sl_metrics_encode_prometheus, but one JSON document (format in docs/api/metrics.md).
SL_API SL_MUST_USE int sl_metrics_encode_json(sl_metrics_registry *registry, int64_t now_ns,
                                              char *buf, size_t buf_size, size_t *length_out);

#endif
