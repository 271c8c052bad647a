// What operators see, through a real sluiced: /why names the hop holding a topic's flow (no
// demand, absent consumer, throttled producer), /drops keeps the offset ranges a drop_oldest topic
// lost, the credit invariants resync a broken figure (injected through the test hook) and count
// it, and the operator metric families (latency and ack-delay summaries, predictions, demand)
// hold what the test did.
// ctest-labels: concurrent
// ctest-timeout: 120
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"
#include "support/http_client.h"

#define HTTP_TIMEOUT_MS  10000
#define WAIT_ROUNDS      100 // of 100 ms: the invariants run every second
#define RECORDS_PRODUCED 50u

static uint8_t frame_buf[256 * 1024];
static uint8_t batch_buf[128 * 1024];

typedef struct fixture {
    sl_test_broker broker;
    sl_test_wire prod;
    sl_test_wire cons;
} fixture;

static char *
get(fixture *fx, const char *path, int expect_status)
{
    int status = 0;
    char *body = NULL;
    assert_int_equal(sl_test_http_get(fx->broker.admin_port, path, HTTP_TIMEOUT_MS, &status, &body),
                     0);
    if (status != expect_status) {
        fail_msg("GET %s: status %d, body: %s", path, status, body);
    }
    return body;
}

static double
metric(fixture *fx, const char *prefix, const char *const *extra)
{
    char *m = get(fx, "/metrics", 200);
    double v = 0;
    if (sl_test_prom_sample(m, prefix, extra, &v) != 0) {
        fail_msg("no sample %s", prefix);
    }
    free(m);
    return v;
}

// A batch of count 100-byte records stamped with the wall clock now (for the latency summary).
static size_t
build_batch(uint64_t pid, uint32_t first_seq, uint32_t count)
{
    sl_batch_builder b;
    sl_batch_builder_init(&b, batch_buf, sizeof(batch_buf));
    sl_batch_builder_set_producer(&b, pid, first_seq);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char value[100];
    memset(value, 'x', sizeof(value));
    for (uint32_t i = 0; i < count; i++) {
        sl_record r = {.value = value,
                       .value_size = sizeof(value),
                       .timestamp_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    }
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    return len;
}

// Sends count records on stream 1 (opened when first_seq is 0) and waits for their ACK.
static void
produce(sl_test_wire *w, const char *topic, uint32_t first_seq, uint32_t count)
{
    static uint64_t pid;
    sl_frame f;
    if (first_seq == 0) {
        assert_int_equal(sl_test_wire_open_produce(w, 1, topic, 0, 0, &pid), 0);
        assert_int_equal(sl_test_wire_expect(w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    }
    size_t blen = build_batch(pid, first_seq, count);
    sl_proto_produce p = {.acks = 1,
                          .first_seq = first_seq,
                          .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), 1, &p, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(w, frame_buf, len), 0);
    uint32_t acked = 0;
    // Bounded by the recv timeout: every frame is a CREDIT or the ACK.
    while (acked != first_seq + count) {
        assert_int_equal(sl_test_wire_recv(w, &f, 10000), SL_OK);
        if (f.header.type == SL_FRAME_ACK) {
            acked = f.u.ack.seq_end;
        }
    }
}

// Receives DELIVER frames on the consumer until end offset `until`.
static void
receive_until(sl_test_wire *w, uint64_t until)
{
    uint64_t next = 0;
    while (next < until) {
        sl_frame f;
        assert_int_equal(sl_test_wire_expect(w, SL_FRAME_DELIVER, &f, 10000), SL_OK);
        next = f.u.deliver.end_offset;
    }
}

static int
setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    setenv("SLUICED_TEST_HOOKS", "1", 1);
    assert_int_equal(sl_test_broker_start_admin(&fx->broker, NULL), 0);
    assert_int_equal(sl_test_wire_open(&fx->prod, fx->broker.port, 1), 0);
    assert_int_equal(sl_test_wire_open(&fx->cons, fx->broker.port, 1), 0);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fixture *fx = *state;
    sl_test_wire_close(&fx->prod);
    sl_test_wire_close(&fx->cons);
    assert_int_equal(sl_test_broker_stop(&fx->broker), 0);
    sl_test_broker_cleanup(&fx->broker);
    free(fx);
    return 0;
}

static void
test_why_names_the_hop(void **state)
{
    fixture *fx = *state;
    assert_int_equal(sl_test_wire_create_topic(&fx->prod, "orders", 1, 0, 0), 0);
    produce(&fx->prod, "orders", 0, RECORDS_PRODUCED);
    // Nobody consumes: the hold is an absent consumer.
    char *j = get(fx, "/why?topic=orders", 200);
    assert_non_null(strstr(j, "\"verdict\":{\"hop\":\"consumer\",\"reason\":\"consumer_absent\""));
    free(j);
    // A consumer that asked for 10 records and got them: it requested no more.
    assert_int_equal(sl_test_wire_open_consume(&fx->cons, 7, "orders", 0), 0);
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 10, 1 << 20), 0);
    receive_until(&fx->cons, 10);
    j = get(fx, "/why?topic=orders", 200);
    assert_non_null(strstr(j, "\"verdict\":{\"hop\":\"consumer\",\"reason\":\"no_demand\""));
    assert_non_null(strstr(j, "\"kind\":\"produce\""));
    assert_non_null(strstr(j, "40 records behind"));
    free(j);
    // It asks for everything: caught up, and the producer holds unused credit.
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 1000, 1 << 20), 0);
    receive_until(&fx->cons, RECORDS_PRODUCED);
    j = get(fx, "/why?topic=orders", 200);
    assert_null(strstr(j, "no_demand"));
    assert_non_null(strstr(j, "\"reason\":\"idle\""));
    free(j);
    j = get(fx, "/why?topic=nope", 404);
    assert_non_null(strstr(j, "no such topic"));
    free(j);
    free(get(fx, "/why", 400));
}

// Breaks each kind through the test hook and waits until the broker counted one resync of it.
static void
inject_and_wait(fixture *fx, const char *const *kinds, size_t n)
{
    char path[128];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/debug/inject?kind=%s", kinds[i]);
        char *j = get(fx, path, 200);
        assert_non_null(strstr(j, "\"injected\":true"));
        free(j);
    }
    char label[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(label, sizeof(label), "kind=\"%s\"", kinds[i]);
        const char *extra[] = {label, NULL};
        double v = 0;
        for (int r = 0; r < WAIT_ROUNDS && v < 1; r++) {
            v = metric(fx, "sluice_credit_resyncs_total{", extra);
            if (v < 1) {
                usleep(100 * 1000);
            }
        }
        if ((int)v != 1) {
            fail_msg("resyncs of %s: %g", kinds[i], v);
        }
    }
}

static void
test_invariants_resync_and_count(void **state)
{
    fixture *fx = *state;
    assert_int_equal(sl_test_wire_create_topic(&fx->prod, "orders", 1, 0, 0), 0);
    produce(&fx->prod, "orders", 0, 20);
    assert_int_equal(sl_test_wire_open_consume(&fx->cons, 7, "orders", 0), 0);
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 20, 1 << 20), 0);
    receive_until(&fx->cons, 20);
    // A consumer without demand: nothing recomputes its partition's low position but the check.
    static const char *const first[] = {"producer_credit", "topic_memory", "producer_count",
                                        "low_position"};
    inject_and_wait(fx, first, sizeof(first) / sizeof(first[0]));
    // A consumer whose demand is lost would wait forever: the resync gives it back.
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 100, 1 << 20), 0);
    assert_int_equal(sl_test_wire_ping(&fx->cons, 5000), 0); // the REQUEST was taken
    static const char *const second[] = {"consumer_demand"};
    inject_and_wait(fx, second, 1);
    produce(&fx->prod, "orders", 20, 30);
    receive_until(&fx->cons, 50);
    // The leaked topic reservation is gone: the budget holds only the producer's credit.
    const char *mem[] = {"owner=\"orders\"", "budget=\"memory\"", NULL};
    const char *orders[] = {"topic=\"orders\"", NULL};
    double used = metric(fx, "sluice_budget_used_bytes{", mem);
    double credit = metric(fx, "sluice_topic_credit_outstanding_bytes{", orders);
    assert_true(used == credit);
    // Nothing else was resynced: the figures hold again.
    usleep(1200 * 1000);
    const char *pc[] = {"kind=\"producer_credit\"", NULL};
    assert_int_equal((int)metric(fx, "sluice_credit_resyncs_total{", pc), 1);
    const char *cd[] = {"kind=\"consumer_demand\"", NULL};
    assert_int_equal((int)metric(fx, "sluice_credit_resyncs_total{", cd), 1);
}

static void
test_drop_ledger_keeps_ranges(void **state)
{
    fixture *fx = *state;
    // 16 KiB of backlog in 4 KiB segments: ~130 records of 100 bytes fit, the rest is evicted.
    sl_proto_topic_config cfg = {
        .partition_count = 1, .max_backlog_bytes = 16384, .full_policy = SL_FULL_DROP_OLDEST};
    assert_int_equal(sl_test_wire_create_topic_config(&fx->prod, "lossy", &cfg), 0);
    for (uint32_t i = 0; i < 10; i++) {
        produce(&fx->prod, "lossy", i * 50, 50);
    }
    // The scan runs every second: wait for the ledger to show the eviction.
    char *j = NULL;
    for (int r = 0; r < WAIT_ROUNDS; r++) {
        j = get(fx, "/drops?topic=lossy", 200);
        if (strstr(j, "\"first_offset\":0,") != NULL) {
            break;
        }
        free(j);
        j = NULL;
        usleep(100 * 1000);
    }
    assert_non_null(j);
    assert_non_null(strstr(j, "\"topic\":\"lossy\",\"partition\":0,\"reason\":\"evicted\""));
    free(j);
    double ledger = metric(fx, "sluice_drops_ledger_records_total ", NULL);
    assert_true(ledger > 0 && ledger < 500);
    // A consumer from offset 0 skips exactly what the ledger holds, without counting it twice.
    assert_int_equal(sl_test_wire_open_consume(&fx->cons, 7, "lossy", 0), 0);
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 1000, 1 << 20), 0);
    receive_until(&fx->cons, 500);
    double after = metric(fx, "sluice_drops_ledger_records_total ", NULL);
    assert_true(after >= ledger && after < 500);
    // A lossless topic's name filter leaves the ledger's entries out.
    j = get(fx, "/drops?topic=other", 200);
    assert_non_null(strstr(j, "\"entries\":[]"));
    free(j);
}

static void
test_operator_metrics(void **state)
{
    fixture *fx = *state;
    assert_int_equal(sl_test_wire_create_topic(&fx->prod, "orders", 1, 0, 0), 0);
    produce(&fx->prod, "orders", 0, RECORDS_PRODUCED);
    assert_int_equal(sl_test_wire_open_consume(&fx->cons, 7, "orders", 0), 0);
    assert_int_equal(sl_test_wire_request(&fx->cons, 7, 30, 1 << 20), 0);
    receive_until(&fx->cons, 30);
    const char *orders[] = {"topic=\"orders\"", NULL};
    assert_int_equal((int)metric(fx, "sluice_topic_end_to_end_latency_seconds_count{", orders), 30);
    double p99 = metric(fx, "sluice_topic_end_to_end_latency_seconds{", orders);
    assert_true(p99 >= 0 && p99 < 60);
    assert_int_equal((int)metric(fx, "sluice_consumer_requested_records_total{", orders), 30);
    assert_int_equal((int)metric(fx, "sluice_consumer_demand_records{", orders), 0);
    double age = metric(fx, "sluice_partition_oldest_unconsumed_age_seconds{", orders);
    assert_true(age >= 0 && age < 60);
    assert_true(metric(fx, "sluice_topic_consumers_recommended{", orders) >= 1);
    const char *level[] = {"topic=\"orders\"", NULL};
    assert_int_equal((int)metric(fx, "sluice_producer_admission_level{", level), 0);
    // Oldest-record ages of the other bounded buffers: nothing waits in them now.
    assert_true(metric(fx, "sluice_producer_acks_held_oldest_age_seconds{", level) == 0);
    assert_true(metric(fx, "sluice_storage_queued_requests ", NULL) == 0);
    assert_true(metric(fx, "sluice_storage_queue_oldest_age_seconds ", NULL) == 0);
    // Every connection's write queue reports its oldest queued write: all taken by now.
    assert_true(metric(fx, "sluice_connection_write_queue_oldest_age_seconds{", NULL) == 0);
    const char *disk[] = {"owner=\"orders\"", "budget=\"disk\"", NULL};
    double full_in = metric(fx, "sluice_budget_full_in_seconds{", disk);
    assert_true(full_in > 0); // +Inf when idle, or far away
    char *s = get(fx, "/stats", 200);
    assert_non_null(strstr(s, "\"sluice_topic_drain_seconds\""));
    assert_non_null(strstr(s, "\"sluice_topic_consumers_recommended\""));
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_why_names_the_hop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invariants_resync_and_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_ledger_keeps_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
