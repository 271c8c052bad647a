// A slow sink behind a Kafka source (librdkafka mock cluster): the source's bounded buffer fills,
// its partitions are paused and resumed (counted), the buffer never passes its bound, the member
// stays in its group while the sink is slow for longer than max.poll.interval.ms, and every
// record arrives.
// ctest-labels: serial
// ctest-timeout: 180
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "kafka/kafka_test_util.h"

#define TOPIC          "bp-in"
#define GROUP          "bp-group"
#define PARTITIONS     3
#define RECORDS        24000u // ~2.4 MB over 3 partitions: far below the mock's ~5 MiB limit
#define VALUE_BYTES    100u
#define BUFFER_RECORDS 2000u
#define SLOW_MS        12000 // the sink is slow this long: more than max.poll.interval.ms (10 s)
#define SLOW_US        1000  // per record while slow (~1000 records/s)
#define DONE_MS        90000 // the whole run's bound

typedef struct slow_sink {
    long slow_us; // per record while slow
    _Atomic uint32_t distinct;
    _Atomic uint32_t duplicates;
    _Atomic uint8_t seen[RECORDS];
    int64_t slow_until_ns;
} slow_sink;

static slow_sink g_sink;

static int
slow_create(const sl_pipe_endpoint *e, uint32_t i, uint32_t n, void **out, char *err,
            size_t err_size)
{
    *out = &g_sink;
    return SL_OK;
}

static int
slow_write(void *state, const sl_pipe_record *r, sl_pipe_done_ref *done)
{
    slow_sink *s = state;
    if (sl_now_ns() < s->slow_until_ns) {
        struct timespec ts = {0, s->slow_us * 1000};
        nanosleep(&ts, NULL);
    }
    uint32_t id = kt_id_of(r->value, r->value_size);
    assert_true(id < KT_ID_MAX);
    if (id >= RECORDS) {
        atomic_fetch_add(&s->distinct, 1); // the sizing test's ids: counted, not tracked
    } else if (atomic_fetch_add(&s->seen[id], 1) == 0) {
        atomic_fetch_add(&s->distinct, 1);
    } else {
        atomic_fetch_add(&s->duplicates, 1);
    }
    sl_pipe_sink_done(done, SL_OK); // durably accepted right here
    return SL_OK;
}

static int
slow_flush(void *state, int64_t deadline_ns)
{
    return SL_OK;
}

static void
slow_destroy(void *state)
{
}

static const sl_pipe_sink_ops slow_ops = {
    .scheme = "slowtest",
    .create = slow_create,
    .write = slow_write,
    .flush = slow_flush,
    .destroy = slow_destroy,
};

static void
test_slow_sink_pauses_and_resumes_without_loss_or_eviction(void **unused)
{
    const char *flags[] = {"-b", "1", "-t", TOPIC ":3", NULL};
    kt_mock mock;
    kt_mock_start(&mock, flags);
    rd_kafka_t *prod = kt_producer(mock.bootstrap);
    kt_produce(prod, TOPIC, 0, RECORDS, VALUE_BYTES);
    kt_flush(prod);
    rd_kafka_destroy(prod);
    kt_commit_zero(mock.bootstrap, TOPIC, GROUP, PARTITIONS);

    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    pc.name = "kafka-bp";
    pc.registry = reg;
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);

    char uri[KT_BOOTSTRAP_MAX + 64];
    snprintf(uri, sizeof(uri), "kafka://%s/" TOPIC "?group=" GROUP, mock.bootstrap);
    const sl_pipe_option opts[] = {
        {"buffer_records", "2000"},
        {"buffer_high", "1500"},
        {"buffer_low", "500"},
        {"rdkafka.session.timeout.ms", "6000"},
        {"rdkafka.max.poll.interval.ms", "10000"},
        {"rdkafka.auto.offset.reset", "error"},
        {"rdkafka.fetch.wait.max.ms", "20"},
        {"rdkafka.reconnect.backoff.max.ms", "500"},
    };
    sl_pipe_endpoint src_ep = {.uri = uri, .options = opts, .option_count = SL_ARRAY_LEN(opts)};
    sl_pipe_endpoint sink_ep = {.uri = "slowtest:"};
    sl_pipe_source_ops src_ops = kt_source_ops();
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *out = NULL;
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = 64; // a small channel: the source's own buffer takes the backlog
    g_sink.slow_until_ns = sl_now_ns() + (int64_t)SLOW_MS * 1000000;
    g_sink.slow_us = SLOW_US;
    assert_int_equal(sl_pipeline_add_source(p, "src", &src_ops, &src_ep, NULL, &src), SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", &slow_ops, &sink_ep, &sc, &out), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, out, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);

    int64_t end = sl_now_ns() + (int64_t)DONE_MS * 1000000;
    // Bounded by DONE_MS; checks the buffer bound while the run goes.
    while (atomic_load(&g_sink.distinct) < RECORDS && sl_now_ns() < end) {
        kt_stats(reg);
        double buffered = kt_metric(reg, "sluice_kafka_source_buffered_records", NULL);
        assert_true(buffered <= BUFFER_RECORDS);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        assert_int_equal(sl_pipeline_wait(p, SL_DEADLINE_NOW), SL_ETIMEDOUT); // no failure
    }
    kt_stats(reg);
    double pauses = kt_metric(reg, "sluice_kafka_source_pauses_total", NULL);
    double resumes = kt_metric(reg, "sluice_kafka_source_resumes_total", NULL);
    double max_buffered = kt_metric(reg, "sluice_kafka_source_buffered_records_max", NULL);
    double assigns = kt_metric(reg, "sluice_kafka_source_assigns_total", NULL);
    double revokes = kt_metric(reg, "sluice_kafka_source_revokes_total", NULL);
    double lost = kt_metric(reg, "sluice_kafka_source_lost_total", NULL);
    double refetches = kt_metric(reg, "sluice_kafka_source_refetches_total", NULL);
    double needed = kt_metric(reg, "sluice_kafka_processes_needed", NULL);
    printf("distinct %u duplicates %u pauses %.0f resumes %.0f max buffered %.0f/%u assigns %.0f "
           "revokes %.0f lost %.0f refetches %.0f processes needed %.0f\n",
           atomic_load(&g_sink.distinct), atomic_load(&g_sink.duplicates), pauses, resumes,
           max_buffered, BUFFER_RECORDS, assigns, revokes, lost, refetches, needed);
    assert_int_equal(atomic_load(&g_sink.distinct), RECORDS);
    assert_true(pauses >= 1);
    assert_true(resumes >= 1);
    assert_true(max_buffered > 0 && max_buffered <= BUFFER_RECORDS);
    // One assignment, never revoked or lost: the paused member stayed in its group.
    assert_true(assigns == 1);
    assert_true(revokes == 0 && lost == 0);

    sl_pipeline_stop(p, true, sl_deadline_after_ms(20000));
    sl_pipeline_free(p);
    sl_metrics_registry_free(reg);
    kt_mock_stop(&mock);
}

// DS2: a sink that takes ~SIZING_SINK_PER_S records/s, a topic fed at SIZING_INPUT_PER_S: the
// source's sizing gauge should ask for about input / capacity processes.
#define SIZING_TOPIC       "sizing-in"
#define SIZING_SINK_US     2000 // ~500 records/s at most
#define SIZING_INPUT_PER_S 1500
#define SIZING_RUN_MS      12000

static void
test_processes_needed_is_input_over_true_rate(void **unused)
{
    const char *flags[] = {"-b", "1", "-t", SIZING_TOPIC ":3", NULL};
    kt_mock mock;
    kt_mock_start(&mock, flags);
    kt_commit_zero(mock.bootstrap, SIZING_TOPIC, "sizing", PARTITIONS);
    memset(&g_sink, 0, sizeof(g_sink));
    g_sink.slow_until_ns = INT64_MAX;
    g_sink.slow_us = SIZING_SINK_US;
    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    char uri[KT_BOOTSTRAP_MAX + 64];
    snprintf(uri, sizeof(uri), "kafka://%s/" SIZING_TOPIC "?group=sizing", mock.bootstrap);
    const sl_pipe_option opts[] = {
        {"rdkafka.session.timeout.ms", "6000"},
        {"rdkafka.auto.offset.reset", "error"},
        {"rdkafka.fetch.wait.max.ms", "20"},
    };
    sl_pipe_endpoint src_ep = {.uri = uri, .options = opts, .option_count = SL_ARRAY_LEN(opts)};
    sl_pipe_endpoint sink_ep = {.uri = "slowtest:"};
    sl_pipe_source_ops src_ops = kt_source_ops();
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *out = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "src", &src_ops, &src_ep, NULL, &src), SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", &slow_ops, &sink_ep, NULL, &out), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, out, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);
    rd_kafka_t *prod = kt_producer(mock.bootstrap);
    int64_t t0 = sl_now_ns();
    uint32_t next_id = RECORDS; // ids apart from the other test's
    // Paced: SIZING_INPUT_PER_S / 10 records every 100 ms, for SIZING_RUN_MS.
    while (sl_now_ns() - t0 < (int64_t)SIZING_RUN_MS * 1000000) {
        kt_produce(prod, SIZING_TOPIC, next_id, SIZING_INPUT_PER_S / 10, VALUE_BYTES);
        next_id += SIZING_INPUT_PER_S / 10;
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    kt_stats(reg);
    double needed = kt_metric(reg, "sluice_kafka_processes_needed", NULL);
    double input = kt_metric(reg, "sluice_kafka_topic_input_per_second", NULL);
    double true_rate = kt_metric(reg, "sluice_kafka_source_true_per_second", NULL);
    double lag = kt_metric(reg, "sluice_kafka_consumer_lag_records", NULL);
    printf("input %.0f/s, true rate %.0f/s, processes needed %.0f, lag %.0f records\n", input,
           true_rate, needed, lag);
    // About 1500 / 500 = 3 (4 once the sink is a little under 500/s); a loaded machine only
    // slows the sink, so the bound above is looser.
    assert_true(input > SIZING_INPUT_PER_S / 2 && input < SIZING_INPUT_PER_S * 2);
    assert_true(needed >= 3 && needed <= 6);
    assert_true(lag > 0);
    kt_flush(prod);
    rd_kafka_destroy(prod);
    sl_pipeline_stop(p, false, sl_deadline_after_ms(5000));
    sl_pipeline_free(p);
    sl_metrics_registry_free(reg);
    kt_mock_stop(&mock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_sink_pauses_and_resumes_without_loss_or_eviction),
        cmocka_unit_test(test_processes_needed_is_input_over_true_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
