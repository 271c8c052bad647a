// The stream-processing runtime: a pipeline is a DAG of stages (sources, operators, sinks), each
// run by 1..N worker threads (instances), joined by bounded credit-based channels, so congestion
// at any stage travels upstream to the source, and from a topic source to the broker and its
// producers. Records are at-least-once end to end: a source commits only what every sink has
// durably accepted. Guide and examples: docs/pipelines.md.
#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H

#include <sluice/defs.h>
#include <sluice/metrics.h>

typedef struct sl_pipeline sl_pipeline;
typedef struct sl_pipe_stage sl_pipe_stage;
typedef struct sl_pipe_ctx sl_pipe_ctx; // the calling instance's view, valid during one callback

// ---- records ----------------------------------------------------------------------------------

// A record as a stage sees it. key/value are borrowed: valid until the callback that received
// the record returns (emit copies what it keeps). timestamp_ns is event time (CLOCK_REALTIME ns)
// set by the source, carried through operators unless an operator sets a new one.
typedef struct sl_pipe_record {
    const void *key;
    uint32_t key_size;
    const void *value;
    uint32_t value_size;
    int64_t timestamp_ns;
} sl_pipe_record;

// Emits a record from the current callback to every downstream edge of the stage. The record is
// derived from the input being processed (or, in a source, is a new source record): it counts
// towards that input's completion for at-least-once. Copies key and value. Waits while the
// downstream channel is full (counted as backpressured time): SL_OK, SL_ECLOSED when the pipeline
// is stopping, SL_ETOOBIG for a record over SL_PIPE_RECORD_BYTES_MAX.
SL_API SL_MUST_USE int sl_pipe_emit(sl_pipe_ctx *ctx, const sl_pipe_record *record);

#define SL_PIPE_RECORD_BYTES_MAX (16u << 20)

// ---- sources ---------------------------------------------------------------------------------

// A source's records carry a (lane, token) pair: the lane is an independent ordered sequence (a
// partition, a file, a connection), the token the source's position in it (an offset). The runtime
// tells the source when everything it emitted up to a token of a lane is durably accepted by every
// sink (the commit point), in emission order per lane, coalesced.
typedef struct sl_pipe_origin {
    uint32_t lane;
    uint64_t token;
} sl_pipe_origin;

// Options of an endpoint as a pipeline file gives them: "uri" plus key = value strings.
typedef struct sl_pipe_option {
    const char *key;
    const char *value;
} sl_pipe_option;

typedef struct sl_pipe_endpoint {
    const char *uri; // "gen:", "file:PATH", "-", "tcp://HOST:PORT", "sluice://HOST:PORT/TOPIC"...
    const sl_pipe_option *options;
    size_t option_count;
    void *user; // programmatic endpoints (e.g. the callback sink's function); NULL from files
} sl_pipe_endpoint;

// Emits a source record: as sl_pipe_emit, with its origin for at-least-once tracking.
SL_API SL_MUST_USE int sl_pipe_source_emit(sl_pipe_ctx *ctx, const sl_pipe_record *record,
                                           sl_pipe_origin origin);

typedef struct sl_pipe_source_ops {
    const char *scheme; // URI scheme this source serves ("gen", "file", "tcp", "sluice", "kafka")
    // Creates instance `instance` of `instance_count`. err gets a readable message on failure
    // (SL_EINVAL for bad options: name the option).
    int (*create)(const sl_pipe_endpoint *endpoint, uint32_t instance, uint32_t instance_count,
                  void **state_out, char *err, size_t err_size);
    // Emits at most max_records records with sl_pipe_source_emit (max_records is the downstream
    // credit: the runtime never asks for more than the next channel can take) and returns the
    // count, SL_EAGAIN when nothing is ready before deadline_ns, SL_ECLOSED at the end of the
    // input, or another error (the pipeline stops with it). Called with max_records == 0 at least
    // every SL_PIPE_SOURCE_TICK_MS while downstream has no credit, so a source can keep a session
    // alive (heartbeats, Kafka polls) while it is paused.
    int (*poll)(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns);
    // Everything this instance emitted on lane up to and including token is durably accepted.
    // The source may commit it (may be a lane it no longer owns: then ignore it).
    void (*commit)(void *state, uint32_t lane, uint64_t token);
    // Optional: metrics of the endpoint (lag, paused partitions...), called on scrape.
    void (*stats)(void *state, sl_metrics_registry *registry, const char *stage_name);
    // Commits what is done (best effort) and frees the state.
    void (*destroy)(void *state);
} sl_pipe_source_ops;

#define SL_PIPE_SOURCE_TICK_MS 100u

// ---- sinks ------------------------------------------------------------------------------------

// A handle on one record given to a sink; pass it to sl_pipe_sink_done once the record is durably
// accepted (or failed). Valid until then; done may be called from any thread (delivery reports).
typedef struct sl_pipe_done_ref sl_pipe_done_ref;

// err SL_OK: durably accepted (acked by the broker, fsynced by the file sink, written to the
// socket for TCP). Any other err: the record is not committed at its source and the pipeline
// stops with the error (at-least-once: it is read again after a restart).
SL_API void sl_pipe_sink_done(sl_pipe_done_ref *ref, int err);

typedef struct sl_pipe_sink_ops {
    const char *scheme;
    int (*create)(const sl_pipe_endpoint *endpoint, uint32_t instance, uint32_t instance_count,
                  void **state_out, char *err, size_t err_size);
    // Writes one record. SL_OK: taken (done comes later or already came). SL_EAGAIN: the
    // destination is full now: the runtime keeps the record, counts backpressured time and
    // retries after calling poll (never a busy loop; nothing dropped). Other errors stop the
    // pipeline.
    int (*write)(void *state, const sl_pipe_record *record, sl_pipe_done_ref *done);
    // Optional: serves delivery reports and timers; called at least every SL_PIPE_SOURCE_TICK_MS
    // and while waiting after SL_EAGAIN, up to deadline_ns.
    void (*poll)(void *state, int64_t deadline_ns);
    // Waits until every written record is done or deadline_ns: SL_OK or SL_ETIMEDOUT.
    int (*flush)(void *state, int64_t deadline_ns);
    void (*stats)(void *state, sl_metrics_registry *registry, const char *stage_name);
    void (*destroy)(void *state);
} sl_pipe_sink_ops;

// The callback sink (scheme "callback"): endpoint.user points to an sl_pipe_callback_sink that
// outlives the pipeline. fn runs on the sink instance's thread (instance = its index), for every
// record, which is done (durably accepted) as soon as fn returns SL_OK; any other return stops
// the pipeline with that error. With parallelism > 1, fn runs concurrently on several threads.
typedef int (*sl_pipe_record_cb)(const sl_pipe_record *record, uint32_t instance, void *user);
typedef struct sl_pipe_callback_sink {
    sl_pipe_record_cb fn;
    void *user;
} sl_pipe_callback_sink;

// Built-in endpoints are found by scheme; others (Kafka: sl_kafka_register in sluice/kafka.h)
// register theirs once, before pipelines are built. SL_EEXIST for a scheme already taken.
SL_API SL_MUST_USE int sl_pipe_register_source(const sl_pipe_source_ops *ops);
SL_API SL_MUST_USE int sl_pipe_register_sink(const sl_pipe_sink_ops *ops);
SL_API const sl_pipe_source_ops *sl_pipe_find_source(const char *scheme);
SL_API const sl_pipe_sink_ops *sl_pipe_find_sink(const char *scheme);

// ---- operators --------------------------------------------------------------------------------

// Processes one input record: emits 0..n records with sl_pipe_emit (map: one, filter: 0 or 1,
// flat_map: any). Returns SL_OK, or an error that stops the pipeline. state is the instance's own
// (from init) or the user pointer when there is no init.
typedef int (*sl_pipe_process_fn)(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state);
// Filter: return true to pass the input on unchanged (no copy).
typedef bool (*sl_pipe_filter_fn)(const sl_pipe_record *in, void *state);
// Optional per-instance state for operators: init(user, instance) -> state; fini(state).
typedef void *(*sl_pipe_init_fn)(void *user, uint32_t instance);
typedef void (*sl_pipe_fini_fn)(void *state);
// Value of a record for a window sum (count windows do not need it).
typedef double (*sl_pipe_value_fn)(const sl_pipe_record *in, void *user);

// ---- building a pipeline ----------------------------------------------------------------------

typedef enum sl_pipe_route {
    SL_ROUTE_FORWARD = 0,     // instance i -> instance i mod n (same parallelism: no shuffle)
    SL_ROUTE_ROUND_ROBIN = 1, // spread evenly
    SL_ROUTE_BROADCAST = 2,   // every downstream instance gets every record
    SL_ROUTE_KEY_HASH = 3,    // sl_partition_for_key(key) mod n: per-key order preserved
} sl_pipe_route;

typedef struct sl_pipe_stage_config {
    uint32_t parallelism;     // initial instances (default 1)
    uint32_t parallelism_min; // autoscaler bounds (default: parallelism)
    uint32_t parallelism_max;
    uint32_t queue_records; // input channel capacity per instance, records (default 1024)
    uint64_t queue_bytes;   // and bytes (default 4 MiB)
    sl_pipe_init_fn init;   // operators only, optional
    sl_pipe_fini_fn fini;
} sl_pipe_stage_config;

SL_API void sl_pipe_stage_config_init(sl_pipe_stage_config *cfg);

typedef struct sl_pipe_autoscale_config {
    bool enabled;
    uint32_t interval_ms;      // decision period (default 5000)
    uint32_t cooldown_ms;      // no decision for a stage this long after it was scaled (10000)
    double target_utilization; // busy fraction a stage is sized for (default 0.8)
    double tolerance;          // ignore changes smaller than this fraction of current (0.1)
} sl_pipe_autoscale_config;

// One autoscaler decision, as logged.
typedef struct sl_pipe_scale_decision {
    const char *stage;
    uint32_t from;
    uint32_t to;
    double offered_per_s;          // rate the stage must sustain (from the source's offered rate)
    double true_rate_per_instance; // records per busy second per instance (DS2)
    char reason[160];
} sl_pipe_scale_decision;
typedef void (*sl_pipe_decision_cb)(const sl_pipe_scale_decision *d, void *user);

typedef struct sl_pipeline_config {
    const char *name;             // metrics label (default "pipeline")
    uint64_t memory_budget_bytes; // all channels together (default 256 MiB)
    sl_pipe_autoscale_config autoscale;
    sl_pipe_decision_cb decision_cb; // optional, on the controller thread
    void *decision_user;
    sl_metrics_registry *registry; // optional: stage metrics are registered here
    uint32_t source_inflight_max;  // per source instance: records emitted and not yet
                                   // committed (held by windows too); at the cap the source
                                   // is paused like a full channel (default 65536)
} sl_pipeline_config;

SL_API void sl_pipeline_config_init(sl_pipeline_config *cfg);
SL_API SL_MUST_USE int sl_pipeline_new(const sl_pipeline_config *cfg, sl_pipeline **out);

// Stages. name is unique in the pipeline (copied); cfg NULL = defaults. *stage_out may be NULL.
// The endpoint is copied (options included). err gets a message for SL_EINVAL.
SL_API SL_MUST_USE int sl_pipeline_add_source(sl_pipeline *p, const char *name,
                                              const sl_pipe_source_ops *ops,
                                              const sl_pipe_endpoint *endpoint,
                                              const sl_pipe_stage_config *cfg,
                                              sl_pipe_stage **stage_out);
SL_API SL_MUST_USE int sl_pipeline_add_sink(sl_pipeline *p, const char *name,
                                            const sl_pipe_sink_ops *ops,
                                            const sl_pipe_endpoint *endpoint,
                                            const sl_pipe_stage_config *cfg,
                                            sl_pipe_stage **stage_out);
SL_API SL_MUST_USE int sl_pipeline_add_process(sl_pipeline *p, const char *name,
                                               sl_pipe_process_fn fn, void *user,
                                               const sl_pipe_stage_config *cfg,
                                               sl_pipe_stage **stage_out);
SL_API SL_MUST_USE int sl_pipeline_add_filter(sl_pipeline *p, const char *name,
                                              sl_pipe_filter_fn fn, void *user,
                                              const sl_pipe_stage_config *cfg,
                                              sl_pipe_stage **stage_out);

typedef enum sl_pipe_window_agg {
    SL_WINDOW_COUNT = 0,
    SL_WINDOW_SUM = 1,
} sl_pipe_window_agg;

// Keyed tumbling window: per key, count or sum of value_fn over event-time windows of size_ms;
// emits one record per (key, window) when the window closes (key = the key, value = decimal text
// "count" or "sum", timestamp = window end). The inputs of an open window count as in flight
// (their source does not commit them) until the window's record is done. Route into it by key.
SL_API SL_MUST_USE int sl_pipeline_add_window(sl_pipeline *p, const char *name,
                                              sl_pipe_window_agg agg, uint32_t size_ms,
                                              sl_pipe_value_fn value_fn, void *user,
                                              const sl_pipe_stage_config *cfg,
                                              sl_pipe_stage **stage_out);

SL_API sl_pipe_stage *sl_pipeline_stage(sl_pipeline *p, const char *name);
SL_API SL_MUST_USE int sl_pipeline_connect(sl_pipeline *p, sl_pipe_stage *from, sl_pipe_stage *to,
                                           sl_pipe_route route);

// Checks the graph (a DAG, every operator reachable from a source and reaching a sink), starts
// every instance. err gets a message.
SL_API SL_MUST_USE int sl_pipeline_start(sl_pipeline *p, char *err, size_t err_size);
// Waits until every source reached its end and everything drained (SL_OK), a stage failed (its
// error), or deadline_ns (SL_ETIMEDOUT).
SL_API SL_MUST_USE int sl_pipeline_wait(sl_pipeline *p, int64_t deadline_ns);
// Stops the sources; with drain, lets records in flight reach the sinks and commits them, until
// deadline_ns; then stops every instance. Safe from a signal-handling thread, idempotent.
SL_API void sl_pipeline_stop(sl_pipeline *p, bool drain, int64_t deadline_ns);
SL_API void sl_pipeline_free(sl_pipeline *p);

// ---- seeing the bottleneck --------------------------------------------------------------------

typedef struct sl_pipe_stage_stats {
    const char *name;
    uint32_t parallelism;
    double busy_ms_per_s; // averaged over instances, last full second
    double backpressured_ms_per_s;
    double idle_ms_per_s;
    double in_per_s;
    double out_per_s;
    double queue_fill;       // 0..1, fullest instance's input channel
    uint64_t queued_records; // all instances' input channels
    uint64_t queue_capacity_records;
    uint64_t records_in_total;
    uint64_t records_out_total;
    double latency_p99_s; // time a record spends in the stage (queue + processing)
} sl_pipe_stage_stats;

// Fills up to cap stage stats in topological order; *count_out gets the number of stages.
SL_API void sl_pipeline_stats(sl_pipeline *p, sl_pipe_stage_stats *out, size_t cap,
                              size_t *count_out);

// Writes the bottleneck report into buf: the stage that is busy (near 100%) while everything
// upstream is backpressured, with the evidence per stage; or "no bottleneck". Returns the
// bottleneck stage's index, or -1.
SL_API int sl_pipeline_explain(sl_pipeline *p, char *buf, size_t size);

#endif
