// The pipeline autoscaler in the style of DS2 (Kalavri et al., OSDI 2018): from each stage's
// true processing rate (records per busy second) and the sources' offered rates, it computes the
// parallelism every stage needs, then damps the answer (tolerance band, two-interval
// confirmation, cool-down, warm-up) before a change is applied. The core (sl__autoscaler_*) is
// pure: samples in, verdicts out, no threads and no clock; the runtime glue is at the bottom.
#ifndef SLUICE_PIPELINE_AUTOSCALE_H
#define SLUICE_PIPELINE_AUTOSCALE_H

#include <sluice/pipeline.h>

// Most stages a pipeline the autoscaler sizes may have; a bigger pipeline is refused (SL_ERANGE)
// when the autoscaler is created. Pipelines are hand-built graphs: 256 is far past any of them.
#define SL_AUTOSCALE_STAGES_MAX 256u
// Most upstream stages one stage may have (fan-in edges the rate walk follows).
#define SL_AUTOSCALE_UPSTREAM_MAX 16u
// A measurement with less busy time than this (seconds, summed over instances) says too little
// about the true rate: the stage keeps its last reliable estimate, or waits (warm-up). 50 ms of
// work is ~250 records at a cost of 200 us and enough to average out scheduler noise.
#define SL_AUTOSCALE_BUSY_MIN_S 0.05
// ... and with fewer processed records than this.
#define SL_AUTOSCALE_RECORDS_MIN 20.0
// Reliable intervals a stage needs before its first decision (warm-up): fewer let one noisy
// interval size it.
#define SL_AUTOSCALE_WARMUP_INTERVALS 3u
// A source without a known offered rate is credited with its output rate per non-backpressured
// second, extrapolated by at most this factor (a source blocked 100% of the time would
// otherwise be credited with an infinite rate).
#define SL_AUTOSCALE_SOURCE_EXTRAPOLATION_MAX 16.0
// Defaults and accepted ranges of sl_pipe_autoscale_config (0 fields take the default).
#define SL_AUTOSCALE_INTERVAL_MS_DEFAULT 5000u
#define SL_AUTOSCALE_INTERVAL_MS_MIN     100u
#define SL_AUTOSCALE_COOLDOWN_MS_DEFAULT 10000u
#define SL_AUTOSCALE_UTILIZATION_DEFAULT 0.8
#define SL_AUTOSCALE_UTILIZATION_MIN     0.1
#define SL_AUTOSCALE_TOLERANCE_DEFAULT   0.1
#define SL_AUTOSCALE_TOLERANCE_MAX       1.0
// Most instances the autoscaler asks of one stage, whatever parallelism_max says.
#define SL_AUTOSCALE_PARALLELISM_MAX 1024u

// One stage as observed over one interval. Stages come in topological order: every upstream
// index is smaller than the stage's own.
typedef struct sl__autoscale_sample {
    const char *name;         // borrowed for the call; copied into decisions by pointer
    bool is_source;           // sources are never scaled; they set the offered rate
    uint32_t parallelism;     // instances now
    uint32_t parallelism_min; // bounds; min == max means "not autoscaled"
    uint32_t parallelism_max;
    double offered_per_s;   // sources: records/s the input offers; <= 0 when unknown
    double window_s;        // length of the observation, seconds (> 0)
    double records_in;      // processed in the window, all instances (sources: 0)
    double records_out;     // emitted in the window, all instances, copies counted
    uint32_t out_edges;     // downstream edges, each getting a copy of every record (0 means 1)
    double busy_s;          // busy seconds in the window, summed over instances
    double backpressured_s; // backpressured seconds, summed over instances
    uint32_t upstream[SL_AUTOSCALE_UPSTREAM_MAX];
    uint32_t upstream_count;
} sl__autoscale_sample;

typedef enum sl__autoscale_action {
    SL__AUTOSCALE_KEEP = 0,   // nothing to do (reason says why)
    SL__AUTOSCALE_UP = 1,     // decision.to > decision.from
    SL__AUTOSCALE_DOWN = 2,   // decision.to < decision.from
    SL__AUTOSCALE_AT_MAX = 3, // needs more than parallelism_max: reported once per episode, the
                              // rest of the load stays backpressure (decision.to == from == max)
} sl__autoscale_action;

// What the autoscaler concluded for one stage in one interval.
typedef struct sl__autoscale_verdict {
    sl__autoscale_action action;
    sl_pipe_scale_decision decision; // filled for every stage; reason also for KEEP
    double required_in_per_s;        // DS2 target input rate (sources: offered output rate)
    double required_out_per_s;       // what it must emit, capped by its capacity at max
    double selectivity;              // out / in records (1 when not yet known)
    double needed_instances;         // required_in / (true rate * utilization), unrounded
    double backpressure_per_s;       // required input beyond capacity at max (else 0)
    bool estimated;                  // true rate known (measured now or remembered)
} sl__autoscale_verdict;

typedef struct sl__autoscaler sl__autoscaler;

// Creates an autoscaler for stage_count stages (their order and identity fixed). cfg is copied;
// 0 fields take the defaults. SL_EINVAL for a utilization or tolerance out of range, SL_ERANGE for
// too many stages, SL_ENOMEM.
SL_MUST_USE int sl__autoscaler_new(const sl_pipe_autoscale_config *cfg, uint32_t stage_count,
                                   sl__autoscaler **out);
void sl__autoscaler_free(sl__autoscaler *a);

// The effective configuration (defaults applied).
const sl_pipe_autoscale_config *sl__autoscaler_config(const sl__autoscaler *a);

// Takes one interval's samples (stage_count of them, topological order) at now_ns and fills one
// verdict per stage. It remembers what it needs (last reliable rates, pending proposals,
// cool-downs) and assumes every UP/DOWN verdict is applied. SL_EINVAL for a sample that breaks
// the topological order or has bad bounds.
SL_MUST_USE int sl__autoscaler_decide(sl__autoscaler *a, const sl__autoscale_sample *samples,
                                      uint32_t stage_count, int64_t now_ns,
                                      sl__autoscale_verdict *verdicts);

// Runtime glue (autoscale.c). Attaches the autoscaler as the pipeline's controller hook when
// cfg.autoscale.enabled (else does nothing); call before sl_pipeline_start. SL_EINVAL for a bad
// autoscale configuration, SL_ENOMEM.
SL_MUST_USE int sl__pipe_autoscale_attach(sl_pipeline *p);

// One controller tick (the hook calls it once a second): samples every stage, and every
// interval_ms decides, applies changes with sl__pipe_stage_rescale (blocking while the stage
// drains) and reports each through the pipeline's decision_cb, a line on stderr and
// sluice_pipeline_autoscale_decisions_total{pipeline,stage,direction}. Controller thread only;
// does nothing when the autoscaler is not attached.
void sl__pipe_autoscale_step(sl_pipeline *p, int64_t now_ns);

#endif
