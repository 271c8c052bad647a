// The Kafka sink against a mock cluster with injected latency and produce errors: its small
// in-flight window fills (RD_KAFKA_RESP_ERR__QUEUE_FULL), which becomes backpressure upstream
// (SL_EAGAIN to the runtime, the Kafka source pauses), and nothing is dropped.
// ctest-labels: serial
// ctest-timeout: 180
#include <time.h>

#include "kafka/kafka_test_util.h"

#define TOPIC_IN    "sink-in"
#define TOPIC_OUT   "sink-out"
#define GROUP       "sink-group"
#define PARTITIONS  2
#define RECORDS     8000u
#define VALUE_BYTES 200u
#define INFLIGHT    200u
#define RUN_MS      90000

static void
test_sink_queue_full_is_backpressure_and_nothing_drops(void **unused)
{
    const char *flags[] = {"-b", "2", "-t", TOPIC_IN ":2", "-t", TOPIC_OUT ":2", NULL};
    kt_mock mock;
    kt_mock_start(&mock, flags);
    rd_kafka_t *prod = kt_producer(mock.bootstrap);
    kt_produce(prod, TOPIC_IN, 0, RECORDS, VALUE_BYTES);
    kt_flush(prod);
    rd_kafka_destroy(prod);
    kt_commit_zero(mock.bootstrap, TOPIC_IN, GROUP, PARTITIONS);
    // Slow acks, and a burst of retriable produce errors (NOT_LEADER_FOR_PARTITION = 6) and
    // disconnects, all handled inside librdkafka's retries.
    kt_mock_cmd(&mock, "rtt -1 50");
    kt_mock_cmd(&mock, "errors 0 4 6");
    kt_mock_cmd(&mock, "errors 0 2 -195");

    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.registry = reg;
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    char in_uri[KT_BOOTSTRAP_MAX + 64];
    char out_uri[KT_BOOTSTRAP_MAX + 64];
    snprintf(in_uri, sizeof(in_uri), "kafka://%s/" TOPIC_IN "?group=" GROUP, mock.bootstrap);
    snprintf(out_uri, sizeof(out_uri), "kafka://%s/" TOPIC_OUT "?inflight_records=200",
             mock.bootstrap);
    const sl_pipe_option src_opts[] = {
        {"buffer_records", "1000"},
        {"rdkafka.session.timeout.ms", "6000"},
        {"rdkafka.auto.offset.reset", "error"},
        {"rdkafka.fetch.wait.max.ms", "20"},
        {"rdkafka.reconnect.backoff.max.ms", "500"},
    };
    const sl_pipe_option sink_opts[] = {
        {"rdkafka.linger.ms", "1"},
        {"rdkafka.reconnect.backoff.max.ms", "500"},
    };
    sl_pipe_endpoint src_ep = {in_uri, src_opts, SL_ARRAY_LEN(src_opts), NULL};
    sl_pipe_endpoint sink_ep = {out_uri, sink_opts, SL_ARRAY_LEN(sink_opts), NULL};
    sl_pipe_source_ops src_ops = kt_source_ops();
    sl_pipe_sink_ops sink_ops = kt_sink_ops();
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *out = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "src", &src_ops, &src_ep, NULL, &src), SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", &sink_ops, &sink_ep, NULL, &out), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, out, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);

    int64_t end = sl_now_ns() + (int64_t)RUN_MS * 1000000;
    double delivered = 0;
    // Bounded by RUN_MS: waits until the sink delivered every record.
    while (delivered < RECORDS && sl_now_ns() < end) {
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
        kt_stats(reg);
        delivered = kt_metric(reg, "sluice_kafka_sink_delivered_total", NULL);
        assert_true(kt_metric(reg, "sluice_kafka_sink_inflight_records", NULL) <= INFLIGHT);
        assert_int_equal(sl_pipeline_wait(p, SL_DEADLINE_NOW), SL_ETIMEDOUT);
    }
    double queue_full = kt_metric(reg, "sluice_kafka_sink_queue_full_total", NULL);
    double errors = kt_metric(reg, "sluice_kafka_sink_delivery_errors_total", NULL);
    double inflight_max = kt_metric(reg, "sluice_kafka_sink_inflight_records_max", NULL);
    double pauses = kt_metric(reg, "sluice_kafka_source_pauses_total", NULL);
    sl_pipeline_stop(p, true, sl_deadline_after_ms(20000));
    sl_pipeline_free(p);

    uint32_t *counts = calloc(RECORDS, sizeof(*counts));
    assert_non_null(counts);
    uint32_t distinct = kt_read_all(mock.bootstrap, TOPIC_OUT, PARTITIONS, RECORDS, counts, 30000);
    printf("delivered %.0f, distinct in output %u, queue-full events %.0f, delivery errors %.0f, "
           "in flight max %.0f/%u, source pauses %.0f\n",
           delivered, distinct, queue_full, errors, inflight_max, INFLIGHT, pauses);
    assert_int_equal(distinct, RECORDS);
    assert_true(queue_full > 0);
    assert_true(errors == 0);
    assert_true(inflight_max <= INFLIGHT);
    assert_true(pauses >= 1); // the full window reached the Kafka source: it paused
    free(counts);
    sl_metrics_registry_free(reg);
    kt_mock_stop(&mock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink_queue_full_is_backpressure_and_nothing_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
