// Apache Kafka endpoints of the pipeline runtime (sluice/pipeline.h), through librdkafka: a source
// that reads a topic as one member of a consumer group and a sink that produces to a topic, both
// keeping the runtime's backpressure (partition pause/resume, a bounded in-flight window).
// Built into the separate library sluice_kafka (only when librdkafka is found: SL_HAVE_KAFKA).
// Guide, settings and delivery guarantees: docs/kafka.md.
#ifndef SLUICE_KAFKA_H
#define SLUICE_KAFKA_H

#include <sluice/defs.h>
#include <sluice/pipeline.h>

// Endpoint URI: kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?KEY=VALUE[&KEY=VALUE...]]
// Options (pipeline file keys, or URI query keys; an option overrides the same query key):
//   group = G                consumer group of the source (required for a source)
//   topic = T, brokers = B   instead of the URI's path and host list
//   buffer_records = N       source: local buffer capacity, records (default 32768)
//   buffer_bytes = N         source: local buffer capacity, bytes (default 32 MiB)
//   buffer_high = N          source: pause the partitions above N buffered records (default 3/4)
//   buffer_low = N           source: resume at or below N (default 1/4; raised at run time to one
//                            second of measured work so that a resumed partition's first fetch
//                            does not starve the pipeline)
//   commit_interval_ms = N   source: period of asynchronous offset commits (default 1000)
//   inflight_records = N     sink: in-flight window, records (default 10000); more gives
//                            RD_KAFKA_RESP_ERR__QUEUE_FULL, which the sink turns into SL_EAGAIN
//   inflight_bytes = N       sink: in-flight window, bytes (default 16 MiB)
//   rdkafka.PROP = V         any librdkafka property, passed through (rdkafka.acks = all, ...)
// Source lane = partition, token = offset; commit(lane, token) stores offset token + 1.

// Registers the "kafka" source and sink with the pipeline runtime, so that kafka:// endpoints
// resolve through sl_pipe_find_source/sink. Idempotent; call once before building pipelines.
// Returns SL_OK, or SL_EEXIST when another implementation already holds the scheme.
SL_API SL_MUST_USE int sl_kafka_register(void);

// The ops themselves, for building pipelines programmatically.
SL_API const sl_pipe_source_ops *sl_kafka_source_ops(void);
SL_API const sl_pipe_sink_ops *sl_kafka_sink_ops(void);

// DS2 sizing of a consumer group: the number of pipeline processes needed so that each runs at
// target_utilization (0 < u <= 1) of its true rate while together they keep up with the topic's
// input rate: ceil(input_per_s / (process_true_per_s * target_utilization)), at least 1.
// process_true_per_s is what one process handles per second of useful (non-idle) time. Returns 0
// when the rates are unknown (a non-positive or non-finite true rate or input rate).
SL_API uint32_t sl_kafka_processes_needed(double input_per_s, double process_true_per_s,
                                          double target_utilization);

#endif
