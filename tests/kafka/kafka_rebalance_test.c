// Pause state across a rebalance: member A's sink is blocked, so A's source is paused; member B
// leaves the group and A is assigned B's partitions while paused. Pause state does not travel
// with a partition, so A must pause the new partitions as they arrive (re-applied), keep its
// buffer bound while records keep coming, stay in the group, and once its sink is released
// deliver every record.
// ctest-labels: serial
// ctest-timeout: 180
#include <stdatomic.h>
#include <time.h>

#include "kafka/kafka_test_util.h"

#define TOPIC       "rb-in"
#define GROUP       "rb-group"
#define PARTITIONS  4
#define FIRST       8000u // before the members start
#define SECOND      4000u // after B left, while A is paused
#define RECORDS     (FIRST + SECOND)
#define VALUE_BYTES 100u
#define BUFFER      "800"
#define BUFFER_MAX  800.0
#define WAIT_MS     60000

static _Atomic uint8_t g_seen[RECORDS];
static _Atomic uint32_t g_distinct;
static _Atomic bool g_a_blocked = true;

typedef struct member_sink {
    bool blockable; // A's sink: waits while g_a_blocked
} member_sink;

static member_sink g_sink_a = {true};
static member_sink g_sink_b = {false};

static int
m_create(const sl_pipe_endpoint *e, uint32_t i, uint32_t n, void **out, char *err, size_t err_size)
{
    *out = e->user;
    return SL_OK;
}

static int
m_write(void *state, const sl_pipe_record *r, sl_pipe_done_ref *done)
{
    member_sink *m = state;
    // Bounded by the test's release (or WAIT_MS as a backstop).
    int64_t end = sl_now_ns() + (int64_t)WAIT_MS * 1000000;
    while (m->blockable && atomic_load(&g_a_blocked) && sl_now_ns() < end) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    uint32_t id = kt_id_of(r->value, r->value_size);
    assert_true(id < RECORDS);
    if (atomic_fetch_add(&g_seen[id], 1) == 0) {
        atomic_fetch_add(&g_distinct, 1);
    }
    sl_pipe_sink_done(done, SL_OK);
    return SL_OK;
}

static int
m_flush(void *state, int64_t deadline_ns)
{
    return SL_OK;
}

static void
m_destroy(void *state)
{
}

static const sl_pipe_sink_ops member_ops = {
    .scheme = "member",
    .create = m_create,
    .write = m_write,
    .flush = m_flush,
    .destroy = m_destroy,
};

static sl_pipeline *
member_start(const char *bootstrap, const sl_pipe_source_ops *src_ops, member_sink *sink)
{
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    char uri[KT_BOOTSTRAP_MAX + 64];
    snprintf(uri, sizeof(uri), "kafka://%s/" TOPIC "?group=" GROUP, bootstrap);
    const sl_pipe_option opts[] = {
        {"buffer_records", BUFFER},
        {"rdkafka.session.timeout.ms", "6000"},
        {"rdkafka.max.poll.interval.ms", "10000"},
        {"rdkafka.auto.offset.reset", "error"},
        {"rdkafka.fetch.wait.max.ms", "20"},
        {"rdkafka.reconnect.backoff.max.ms", "500"},
        {"commit_interval_ms", "200"},
    };
    sl_pipe_endpoint src_ep = {uri, opts, SL_ARRAY_LEN(opts), NULL};
    sl_pipe_endpoint sink_ep = {"member:", NULL, 0, sink};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = 64;
    sl_pipe_stage *src = NULL;
    sl_pipe_stage *out = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "src", src_ops, &src_ep, NULL, &src), SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", &member_ops, &sink_ep, &sc, &out), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, src, out, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    assert_int_equal(sl_pipeline_start(p, err, sizeof(err)), SL_OK);
    return p;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

// Waits until metric (of A) reaches at least value; returns the last reading.
static double
wait_metric(sl_metrics_registry *reg, const char *name, double value)
{
    double v = -1;
    // Bounded by WAIT_MS.
    for (int i = 0; i < WAIT_MS / 100; i++) {
        kt_stats(reg);
        v = kt_metric(reg, name, NULL);
        assert_true(kt_metric(reg, "sluice_kafka_source_buffered_records", NULL) <= BUFFER_MAX);
        if (v >= value) {
            break;
        }
        sleep_ms(100);
    }
    return v;
}

static void
test_partitions_assigned_to_a_paused_member_are_paused(void **unused)
{
    const char *flags[] = {"-b", "1", "-t", TOPIC ":4", NULL};
    kt_mock mock;
    kt_mock_start(&mock, flags);
    rd_kafka_t *prod = kt_producer(mock.bootstrap);
    kt_produce(prod, TOPIC, 0, FIRST, VALUE_BYTES);
    kt_flush(prod);
    kt_commit_zero(mock.bootstrap, TOPIC, GROUP, PARTITIONS);
    sl_metrics_registry *reg = NULL;
    assert_int_equal(sl_metrics_registry_new(NULL, &reg), SL_OK);

    sl_pipe_source_ops tapped = kt_source_ops(); // A's source, to read its metrics
    sl_pipeline *a = member_start(mock.bootstrap, &tapped, &g_sink_a);
    sl_pipeline *b = member_start(mock.bootstrap, sl_kafka_source_ops(), &g_sink_b);
    // Both members assigned (two partitions each), A paused behind its blocked sink.
    assert_true(wait_metric(reg, "sluice_kafka_source_paused_partitions", 2) >= 2);
    double assigned = kt_metric(reg, "sluice_kafka_source_assigned_partitions", NULL);
    printf("A: %.0f partitions assigned, paused\n", assigned);
    assert_true(assigned == 2);
    sleep_ms(2000); // B reads its half and commits
    sl_pipeline_stop(b, true, sl_deadline_after_ms(20000));
    sl_pipeline_free(b); // B leaves the group: A gets its partitions

    double reapplied = wait_metric(reg, "sluice_kafka_source_pauses_reapplied_total", 2);
    kt_produce(prod, TOPIC, FIRST, SECOND, VALUE_BYTES); // keeps coming while A is paused
    kt_flush(prod);
    sleep_ms(1000);
    kt_stats(reg);
    double paused = kt_metric(reg, "sluice_kafka_source_paused_partitions", NULL);
    assigned = kt_metric(reg, "sluice_kafka_source_assigned_partitions", NULL);
    double buffered = kt_metric(reg, "sluice_kafka_source_buffered_records", NULL);
    printf("after B left: assigned %.0f, paused %.0f, re-applied %.0f, buffered %.0f/%.0f\n",
           assigned, paused, reapplied, buffered, BUFFER_MAX);
    assert_true(reapplied >= 2);
    assert_true(assigned == PARTITIONS && paused == PARTITIONS);
    assert_true(buffered <= BUFFER_MAX);

    atomic_store(&g_a_blocked, false);
    int64_t end = sl_now_ns() + (int64_t)WAIT_MS * 1000000;
    // Bounded by WAIT_MS.
    while (atomic_load(&g_distinct) < RECORDS && sl_now_ns() < end) {
        sleep_ms(100);
    }
    kt_stats(reg);
    double revokes = kt_metric(reg, "sluice_kafka_source_revokes_total", NULL);
    double lost = kt_metric(reg, "sluice_kafka_source_lost_total", NULL);
    printf("delivered %u/%u distinct; A revokes %.0f lost %.0f\n", atomic_load(&g_distinct),
           RECORDS, revokes, lost);
    assert_int_equal(atomic_load(&g_distinct), RECORDS);
    assert_true(lost == 0);
    sl_pipeline_stop(a, true, sl_deadline_after_ms(20000));
    sl_pipeline_free(a);
    rd_kafka_destroy(prod);
    sl_metrics_registry_free(reg);
    kt_mock_stop(&mock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partitions_assigned_to_a_paused_member_are_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
