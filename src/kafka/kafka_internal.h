// Shared by the Kafka source and sink: endpoint configuration (URI, options, librdkafka
// pass-through), metric family registration and small helpers. Internal to sluice_kafka.
#ifndef SLUICE_KAFKA_INTERNAL_H
#define SLUICE_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include <sluice/kafka.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

// Longest broker list, topic (Kafka's own limit is 249) and group id accepted, with the NUL.
#define SL_KAFKA_BROKERS_MAX 1024u
#define SL_KAFKA_TOPIC_MAX   256u
#define SL_KAFKA_GROUP_MAX   256u

// Source buffer defaults: room for well over one second of work at typical pipeline rates
// (~10-30k records/s per process), bounded in bytes too. Hard ceilings keep a typo from asking
// for gigabytes.
#define SL_KAFKA_BUFFER_RECORDS_DEFAULT 32768u
#define SL_KAFKA_BUFFER_RECORDS_MAX     (1u << 22)
#define SL_KAFKA_BUFFER_BYTES_DEFAULT   (32u << 20)
#define SL_KAFKA_BUFFER_BYTES_MAX       (UINT64_C(1) << 32)
#define SL_KAFKA_COMMIT_INTERVAL_MS     1000u

// Sink window defaults: librdkafka's queue.buffering.max.messages / .kbytes, so the window is
// enforced by librdkafka itself and surfaces as RD_KAFKA_RESP_ERR__QUEUE_FULL.
#define SL_KAFKA_INFLIGHT_RECORDS_DEFAULT 10000u
#define SL_KAFKA_INFLIGHT_RECORDS_MAX     10000000u // librdkafka's own ceiling
#define SL_KAFKA_INFLIGHT_BYTES_DEFAULT   (16u << 20)

// Most partitions a source tracks (lanes); a topic with more is refused at assignment.
#define SL_KAFKA_PARTITIONS_MAX 1024u

// How long a resumed partition may take to deliver again (fetch wait, request round trip):
// the low watermark holds at least this much measured work.
#define SL_KAFKA_RESUME_LATENCY_MS 1000u

_Static_assert(SL_KAFKA_BUFFER_RECORDS_DEFAULT <= SL_KAFKA_BUFFER_RECORDS_MAX, "buffer default");
_Static_assert(SL_KAFKA_BUFFER_BYTES_DEFAULT <= SL_KAFKA_BUFFER_BYTES_MAX, "buffer bytes default");
_Static_assert(SL_KAFKA_INFLIGHT_RECORDS_DEFAULT <= SL_KAFKA_INFLIGHT_RECORDS_MAX, "window");

typedef struct sl__kafka_config {
    char brokers[SL_KAFKA_BROKERS_MAX];
    char topic[SL_KAFKA_TOPIC_MAX];
    char group[SL_KAFKA_GROUP_MAX];
    uint32_t buffer_records;
    uint64_t buffer_bytes;
    uint32_t buffer_high; // records; invariant after parse: buffer_low < buffer_high <= records
    uint32_t buffer_low;
    uint32_t commit_interval_ms;
    uint32_t inflight_records;
    uint64_t inflight_bytes;
    rd_kafka_conf_t *conf; // owned; defaults, then rdkafka.* options; NULL once handed over
} sl__kafka_config;

typedef enum sl__kafka_role {
    SL__KAFKA_SOURCE = 0,
    SL__KAFKA_SINK = 1,
} sl__kafka_role;

// Parses endpoint (URI and options) for a source or sink instance into cfg, building the
// librdkafka configuration. SL_EINVAL with a message naming the bad option; SL_ENOMEM.
int sl__kafka_config_parse(sl__kafka_config *cfg, const sl_pipe_endpoint *endpoint,
                           sl__kafka_role role, uint32_t instance, char *err, size_t err_size);
// Frees what parse allocated (the librdkafka conf if not handed over).
void sl__kafka_config_fini(sl__kafka_config *cfg);
// Sets one librdkafka property; SL_EINVAL with librdkafka's message.
int sl__kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                       size_t err_size);

// Registers (or finds, when another instance registered it first) a family in registry.
// Returns SL_OK with the id; a registry error otherwise.
int sl__kafka_family(sl_metrics_registry *registry, const sl_metric_family_desc *desc,
                     uint64_t *family_id_out);

// One scalar metric of an endpoint instance, exposed with labels {stage, instance}. Exactly one
// of counter / gauge is set; scale as in sl_metric_family_desc (0.001 for milli-unit gauges).
typedef struct sl__kafka_metric {
    const char *name;
    const char *help;
    sl_counter *counter;
    sl_gauge *gauge;
    double scale;
} sl__kafka_metric;

// Adds one series per metric (series_out[i] = 0 where it failed: a full registry is a bound, not
// an error). Returns the number added.
size_t sl__kafka_metrics_add(sl_metrics_registry *registry, const char *stage, uint32_t instance,
                             const sl__kafka_metric *metrics, size_t count, uint64_t *series_out);
// Removes the series that sl__kafka_metrics_add added (ids of 0 are skipped) and zeroes them.
void sl__kafka_metrics_remove(sl_metrics_registry *registry, uint64_t *series, size_t count);

// Milliseconds from now until deadline_ns, clamped to [0, cap_ms].
int sl__kafka_timeout_ms(int64_t deadline_ns, int cap_ms);

#endif
