// The pipeline runtime's shared structures (include/sluice/pipeline.h is the public contract):
// the graph (pipeline.c), instance worker loops (stage.c), routing (route.c), at-least-once
// tracking (track.c) and windows (window.c) meet here. The autoscaler (autoscale.c) reads the
// per-stage statistics and topology and calls sl__pipe_stage_rescale; nothing else outside
// src/pipeline should include this file (tests do, for their hooks).
#ifndef SLUICE_PIPELINE_INTERNAL_H
#define SLUICE_PIPELINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <sluice/budget.h>
#include <sluice/channel.h>
#include <sluice/histogram.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

// Stages in one pipeline: a pipeline file is written by hand; 64 is far beyond any real one.
#define SL_PIPE_STAGES_MAX 64u
// Edges in one pipeline (each stage may fan in and out).
#define SL_PIPE_EDGES_MAX 128u
// Instances of one stage: a thread each, on machines of tens of cores.
#define SL_PIPE_PARALLELISM_MAX 64u
// Records an instance takes from its channel at once (amortizes the channel and the clock).
#define SL_PIPE_BATCH_MAX 64u
// Input channel defaults (sl_pipe_stage_config).
#define SL_PIPE_QUEUE_RECORDS_DEFAULT 1024u
#define SL_PIPE_QUEUE_BYTES_DEFAULT   (4ull << 20)
// Default pipeline memory budget (all channels and tracking tables).
#define SL_PIPE_MEMORY_DEFAULT (256ull << 20)
// Default and ceiling of records a source instance has emitted and not committed.
#define SL_PIPE_INFLIGHT_DEFAULT 65536u
#define SL_PIPE_INFLIGHT_MAX     (1u << 24)
// Distinct lanes one source instance may have records in flight on (partitions, files).
#define SL_PIPE_LANES_MAX 1024u
// Longest wait of any worker before it re-checks stop flags and timers.
#define SL_PIPE_TICK_NS ((int64_t)SL_PIPE_SOURCE_TICK_MS * 1000000)
// Longest wait on a condition variable before re-checking (bounds any lost wake-up).
#define SL_PIPE_WAIT_SLICE_NS INT64_C(10000000)
// Bytes of channel ring charged to the budget per slot (slot, sequence, enqueue stamp).
#define SL_PIPE_RING_SLOT_BYTES 32u
// How long a rescale waits for the stage to drain before giving up (SL_ETIMEDOUT).
#define SL_PIPE_RESCALE_TIMEOUT_MS 10000u

// Metric series registered per stage (stats.c).
#define SL__PIPE_STAGE_METRICS_MAX 16u

typedef enum sl__pipe_kind {
    SL__PIPE_SOURCE = 0,
    SL__PIPE_PROCESS = 1,
    SL__PIPE_FILTER = 2,
    SL__PIPE_WINDOW = 3,
    SL__PIPE_SINK = 4,
} sl__pipe_kind;

// ---- at-least-once tracking (track.c) ---------------------------------------------------------

typedef enum sl__pipe_track_kind {
    SL__TRACK_ENTRY = 0, // one source record, in its source instance's table
    SL__TRACK_GROUP = 1, // a derived record that holds references on many (a window's output)
} sl__pipe_track_kind;

// A completion counter: one reference per record derived from it that is not done yet (queued,
// being processed, written to a sink and not acknowledged, held by a window). When the count
// falls to zero the record is complete. Sinks get a reference as their sl_pipe_done_ref.
typedef struct sl__pipe_track {
    _Atomic int32_t refs;
    _Atomic uint32_t poisoned; // a derived record was lost (stop, error): never commit it
    uint32_t kind;             // sl__pipe_track_kind
    sl_pipeline *pipeline;
} sl__pipe_track;

typedef struct sl__pipe_source_track sl__pipe_source_track;

// Creates the tracking table of one source instance: capacity entries, charged to budget.
int sl__pipe_source_track_new(sl_pipeline *p, sl_budget *budget, uint32_t capacity,
                              sl__pipe_source_track **out);
void sl__pipe_source_track_free(sl__pipe_source_track *t);
// Entries free for new source records (source thread only).
uint32_t sl__pipe_source_track_room(const sl__pipe_source_track *t);
// Entries in flight (any thread; approximate).
uint64_t sl__pipe_source_track_inflight(const sl__pipe_source_track *t);
// Takes an entry for a new record on lane with token, holding one reference (source thread).
// SL_EFULL when the table or the lane table is full.
int sl__pipe_source_track_add(sl__pipe_source_track *t, sl_pipe_origin origin,
                              sl__pipe_track **track_out);
// Commits every lane's completed prefix through ops->commit (source thread). Returns the number
// of entries released.
uint32_t sl__pipe_source_track_commit(sl__pipe_source_track *t, const sl_pipe_source_ops *ops,
                                      void *state);
uint64_t sl__pipe_source_track_commits(const sl__pipe_source_track *t);

// A group holding one reference on each of count tracks (the references are moved in). The
// group itself starts with one reference. Returns NULL when out of memory.
sl__pipe_track *sl__pipe_track_group_new(sl_pipeline *p, sl__pipe_track **tracks, uint32_t count);

static inline void
sl__pipe_track_ref(sl__pipe_track *t, int32_t n)
{
    atomic_fetch_add_explicit(&t->refs, n, memory_order_relaxed);
}

// Marks the record as not deliverable everywhere: it completes but is never committed (nor is
// anything after it on its lane). Used when an emit, a process function or a sink fails.
static inline void
sl__pipe_track_poison(sl__pipe_track *t)
{
    atomic_store_explicit(&t->poisoned, 1, memory_order_relaxed);
}

// Releases one reference; the last one completes the record (and releases a group's members).
void sl__pipe_track_release(sl__pipe_track *t);

// ---- records in channels ----------------------------------------------------------------------

// What travels on a channel: one record with its completion reference. key, then value, follow.
typedef struct sl__pipe_item {
    sl__pipe_track *track; // one reference owned by the item
    int64_t enqueued_ns;   // when pushed (monotonic), for the stage latency
    int64_t timestamp_ns;
    uint32_t key_size;
    uint32_t value_size;
    unsigned char bytes[];
} sl__pipe_item;

static inline size_t
sl__pipe_item_bytes(const sl__pipe_item *item)
{
    return sizeof(*item) + item->key_size + item->value_size;
}

// ---- instances and stages ----------------------------------------------------------------------

typedef struct sl__pipe_instance sl__pipe_instance;
typedef struct sl__pipe_window sl__pipe_window;

struct sl_pipe_ctx {
    sl__pipe_instance *instance;
    sl__pipe_track *input_track; // operators: the input being processed; sources: NULL
    const sl_pipe_record *input;
    uint32_t emitted; // records emitted in this callback
};

struct sl__pipe_instance {
    sl_pipe_stage *stage;
    uint32_t index;
    sl_channel *input; // NULL for sources
    uint64_t ring_bytes_reserved;
    // Credit: records this instance may still be given (capacity - held, where held counts
    // queued records and those being processed). Pushers spend, the instance returns after
    // processing. Waiters sleep on credit_cond.
    _Atomic int64_t credit;
    int64_t capacity;
    _Atomic int64_t held_max; // test hook: the most records ever held
    _Atomic uint32_t credit_waiters;
    pthread_mutex_t credit_mutex;
    pthread_cond_t credit_cond;
    // Upstream producer instances that have not finished; the last one closes input.
    _Atomic int32_t upstream_open;
    uint32_t *rr_next; // per out edge, round-robin position
    pthread_t thread;
    bool thread_started;
    bool thread_joined;
    _Atomic uint32_t finished;
    _Atomic uint32_t retire; // rescale: leave the loop once parked
    _Atomic uint32_t parked;
    sl_timeacct *time;
    sl_time_state time_state; // the writer's current state (thread-local view)
    sl_counter in_total;
    sl_counter out_total;
    sl_counter dropped_total; // dropped by policy (sample): counted, completes at once
    void *state;              // source / sink / operator state
    sl__pipe_source_track *track;
    sl__pipe_window *window;
    sl_pipe_ctx ctx;
};

typedef struct sl__pipe_edge {
    sl_pipe_stage *from;
    sl_pipe_stage *to;
    sl_pipe_route route;
} sl__pipe_edge;

// What a metric read callback reads: a stage and one of its fields (stats.c).
typedef struct sl__pipe_metric_ref {
    sl_pipe_stage *stage;
    uint32_t field;
} sl__pipe_metric_ref;

// A per-second view of a stage, computed by the controller thread.
typedef struct sl__pipe_sample {
    uint64_t in_total;
    uint64_t out_total;
    int64_t at_ns;
    double in_per_s;
    double out_per_s;
    double latency_p99_s;
    double offered_per_s;
} sl__pipe_sample;

struct sl_pipe_stage {
    sl_pipeline *pipeline;
    char name[SL_NAME_MAX];
    uint32_t index;      // order of creation
    uint32_t topo_index; // order in the topological sort
    sl__pipe_kind kind;
    sl_pipe_stage_config cfg;
    const sl_pipe_source_ops *source_ops;
    const sl_pipe_sink_ops *sink_ops;
    sl_pipe_endpoint endpoint; // deep copy
    size_t endpoint_bytes;
    char *endpoint_storage;
    sl_pipe_process_fn process_fn;
    sl_pipe_filter_fn filter_fn;
    void *user;
    sl_pipe_window_agg window_agg;
    uint32_t window_size_ms;
    sl_pipe_value_fn value_fn;
    _Atomic uint32_t parallelism;
    bool rescalable; // parallelism_min < parallelism_max: emitters use the pause protocol
    bool spsc_input; // one producer instance feeds each input channel
    sl__pipe_instance instances[SL_PIPE_PARALLELISM_MAX];
    uint32_t out_edges[SL_PIPE_EDGES_MAX];
    uint32_t out_count;
    uint32_t in_edges[SL_PIPE_EDGES_MAX];
    uint32_t in_count;
    sl_histogram *latency;        // lifetime, exported
    sl_histogram *latency_window; // since the last controller sample
    sl__pipe_sample sample;       // guarded by the pipeline's stats mutex
    // Rescale protocol: emitters into this stage announce themselves; a rescale pauses them.
    _Atomic uint32_t pause_in;
    _Atomic uint32_t emitters;
    _Atomic uint32_t park;
    uint64_t iteration;                              // rescales done
    uint64_t series_ids[SL__PIPE_STAGE_METRICS_MAX]; // registered metric series
    uint32_t series_count;
    sl__pipe_metric_ref metric_refs[SL__PIPE_STAGE_METRICS_MAX]; // read_cb users
};

typedef void (*sl__pipe_controller_fn)(sl_pipeline *p, void *state, int64_t now_ns);
typedef void (*sl__pipe_controller_free_fn)(void *state);

struct sl_pipeline {
    sl_pipeline_config cfg;
    char name[SL_NAME_MAX];
    sl_budget *budget;
    sl_pipe_stage *stages[SL_PIPE_STAGES_MAX];
    uint32_t stage_count;
    sl_pipe_stage *topo[SL_PIPE_STAGES_MAX]; // stages in topological order (after start)
    sl__pipe_edge edges[SL_PIPE_EDGES_MAX];
    uint32_t edge_count;
    bool started;
    _Atomic uint32_t stop_sources; // sources: stop polling, drain
    _Atomic uint32_t aborting;     // everyone: stop now
    _Atomic int error;             // first error (0: none)
    pthread_mutex_t mutex;         // guards running, joined, and the topology during rescale
    pthread_cond_t cond;           // signalled when an instance finishes or an error is set
    uint32_t running;              // instance threads not finished
    bool joined;
    pthread_mutex_t join_mutex;  // one joiner at a time (stop may race free or another stop)
    pthread_mutex_t stats_mutex; // guards the stages' samples
    pthread_mutex_t rescale_mutex;
    pthread_t controller;
    bool controller_started;
    _Atomic uint32_t controller_stop;
    sl__pipe_controller_fn controller_fn;
    sl__pipe_controller_free_fn controller_free;
    void *controller_state;
};

// ---- pipeline.c ---------------------------------------------------------------------------------

// Condition variables on CLOCK_MONOTONIC, waited on until an absolute deadline (ns).
void sl__pipe_cond_init(pthread_cond_t *cond);
void sl__pipe_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline_ns);
// Sleeps for ns nanoseconds (backoff where no wake-up exists).
void sl__pipe_sleep_ns(int64_t ns);
static inline bool
sl__pipeline_aborting(const sl_pipeline *p)
{
    return atomic_load_explicit(&p->aborting, memory_order_acquire) != 0;
}

// Records the first error and makes every worker stop.
void sl__pipeline_fail(sl_pipeline *p, int err);
// An instance thread finished (wakes sl_pipeline_wait).
void sl__pipeline_instance_finished(sl_pipeline *p);
// Starts instance i of stage s (creating its state) and its thread. Topology lock held.
int sl__pipe_instance_start(sl_pipe_stage *s, uint32_t i, char *err, size_t err_size);
int sl__pipe_instance_prepare(sl_pipe_stage *s, uint32_t i, char *err, size_t err_size);
int sl__pipe_instance_spawn(sl_pipe_stage *s, uint32_t i);
void sl__pipe_instance_cleanup(sl_pipe_stage *s, uint32_t i);

// stats.c: the controller's once-a-second sample of every stage; metrics registration.
void sl__pipeline_sample(sl_pipeline *p, int64_t now_ns);
int sl__pipeline_metrics_register(sl_pipeline *p);
void sl__pipeline_metrics_unregister(sl_pipeline *p);

// The autoscaler attaches here: fn runs on the controller thread once a second after the
// stats sample, free_fn(state) when the pipeline is freed. Call before sl_pipeline_start.
void sl__pipeline_set_controller(sl_pipeline *p, sl__pipe_controller_fn fn,
                                 sl__pipe_controller_free_fn free_fn, void *state);

// ---- stage.c ------------------------------------------------------------------------------------

void *sl__pipe_instance_main(void *arg);
// Changes the instance's accounted state (its own thread only).
void sl__pipe_instance_enter(sl__pipe_instance *inst, sl_time_state state);
// Counts n inputs of the current callback as dropped by policy (sample).
void sl__pipe_ctx_count_dropped(sl_pipe_ctx *ctx, uint64_t n);
// The instance's index and the stage's name, for operators that label what they do.
uint32_t sl__pipe_ctx_instance(const sl_pipe_ctx *ctx);

// ---- route.c ------------------------------------------------------------------------------------

// Sends a record from inst along every out edge, per the edge's route. Takes a completion
// reference on track per copy. SL_OK, SL_ECLOSED when stopping.
int sl__pipe_route_emit(sl__pipe_instance *inst, const sl_pipe_record *rec, sl__pipe_track *track);
// Records the downstream instances of inst could take now without waiting (the minimum).
int64_t sl__pipe_route_credit(const sl__pipe_instance *inst);
// Returns n records of credit to inst (after processing them), waking a waiting pusher.
void sl__pipe_credit_return(sl__pipe_instance *inst, int64_t n);
// Tells every downstream instance that one producer instance finished.
void sl__pipe_route_finish(sl__pipe_instance *inst);
// Waits (backpressured) until the stage's downstream has credit, up to deadline_ns.
void sl__pipe_route_wait_credit(sl__pipe_instance *inst, int64_t deadline_ns);

// ---- window.c -----------------------------------------------------------------------------------

int sl__pipe_window_new(sl_pipe_stage *s, sl__pipe_window **out);
void sl__pipe_window_free(sl__pipe_window *w);
// Adds the input (taking over its reference). SL_OK or an error that stops the pipeline.
int sl__pipe_window_add(sl__pipe_instance *inst, sl__pipe_item *item);
// Closes windows the watermark passed (all with flush_all) and emits their records.
int sl__pipe_window_tick(sl__pipe_instance *inst, bool flush_all);
// Rescale: moves the keys of from that now belong to another instance (per route_fn).
int sl__pipe_window_migrate(sl_pipe_stage *s, uint32_t from_index, uint32_t new_parallelism);

// ---- for the autoscaler and tests ---------------------------------------------------------------

uint32_t sl__pipeline_stage_count(const sl_pipeline *p);
// The stage at position i in topological order (after start).
sl_pipe_stage *sl__pipeline_stage_at(sl_pipeline *p, uint32_t i);
// Upstream stages of s (through its in edges); returns the count, fills up to cap.
uint32_t sl__pipe_stage_upstream(const sl_pipe_stage *s, sl_pipe_stage **out, uint32_t cap);
sl__pipe_kind sl__pipe_stage_kind(const sl_pipe_stage *s);
uint32_t sl__pipe_stage_parallelism(const sl_pipe_stage *s);
// Number of rescales done on s so far (its "iteration").
uint64_t sl__pipe_stage_iteration(const sl_pipe_stage *s);
// The stage's statistics now (as sl_pipeline_stats gives them).
void sl__pipe_stage_stats(sl_pipe_stage *s, sl_pipe_stage_stats *out);
// A source stage's offered rate, records/s: what it would emit if never backpressured (the
// generator's configured rate, else the measured rate scaled up by the time it was not
// backpressured). 0 for other stages, or unknown.
double sl__pipe_stage_offered_rate(sl_pipe_stage *s);
// Test hook: the most records any instance of s ever held (queued + being processed), and the
// capacity they were bounded by.
int64_t sl__pipe_stage_held_max(const sl_pipe_stage *s);
int64_t sl__pipe_stage_capacity(const sl_pipe_stage *s);

// Changes an operator stage's parallelism while the pipeline runs (parallelism_min..max).
// Pauses the stage's upstream emitters, waits until the stage holds nothing (queues empty, no
// record being processed), parks its instances, moves window keys to their new owners, starts or
// retires instances, and resumes. Records of one key are thus all processed by the old owner
// before the new owner sees the next one: per-key order holds through key-hash routing.
// SL_EINVAL (not an operator, out of bounds), SL_EBUSY (not running, or input ended),
// SL_ETIMEDOUT (did not drain in SL_PIPE_RESCALE_TIMEOUT_MS: nothing changed), SL_ENOMEM.
// Thread-safe; rescales are serialized.
SL_MUST_USE int sl__pipe_stage_rescale(sl_pipe_stage *stage, uint32_t parallelism);

// gen source internals: the configured rate (0: unlimited).
double sl__pipe_gen_offered_rate(void *state);
extern const sl_pipe_source_ops sl__pipe_gen_source_ops;
extern const sl_pipe_sink_ops sl__pipe_callback_sink_ops;

#endif
