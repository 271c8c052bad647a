// Overload: a producer offering far more than a rate-limited consumer takes. Under the default
// policy the broker must keep its memory inside the budget, slow the producer with credit until its
// accepted rate matches the consumer's, and lose nothing it acknowledged (every acked record is
// consumed, once, in order); the same with a bound in time (max_lag) instead of bytes. Under
// drop_oldest the producer is not slowed, and the consumer skips what was dropped while the disk
// stays bounded. Each case runs 8 s (SL_SOAK=1: 20 s).
// ctest-labels: serial scenario
// ctest-timeout: 400
#include "support/test_util.h"

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

#define CONSUMER_RATE     20000u // records/s
#define RECORDS_PER_BATCH 100u
#define VALUE_BYTES       100u
#define MEMORY_BUDGET_MIB 32u
#define BACKLOG_BYTES     (4u << 20)
#define SECONDS_MAX       64

typedef struct overload {
    uint16_t port;
    int64_t duration_ns;
    int64_t start_ns;
    _Atomic uint64_t acked; // records acked so far
    _Atomic int producer_done;
    uint64_t sent_records;
    uint64_t throttles;
    uint64_t stream_errors;
    uint64_t acked_by_second[SECONDS_MAX];
    _Atomic uint64_t consumed;
    uint64_t out_of_order;
    int64_t consumer_end_ns;
} overload;

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
handle_producer_frame(overload *o, const sl_frame *f, uint64_t *credit, uint32_t *acked_seq)
{
    switch (f->header.type) {
    case SL_FRAME_CREDIT:
        *credit = f->u.credit.granted_total_bytes;
        break;
    case SL_FRAME_ACK: {
        uint32_t n = f->u.ack.seq_end - *acked_seq;
        *acked_seq = f->u.ack.seq_end;
        atomic_fetch_add(&o->acked, n);
        int64_t sec = (now_ns() - o->start_ns) / 1000000000;
        if (sec >= 0 && sec < SECONDS_MAX) {
            o->acked_by_second[sec] += n;
        }
        break;
    }
    case SL_FRAME_THROTTLE:
        o->throttles++;
        break;
    case SL_FRAME_STREAM_CLOSE:
    case SL_FRAME_ERROR:
        o->stream_errors++;
        fprintf(stderr, "producer: %s %.*s\n", sl_proto_frame_name(f->header.type),
                (int)f->u.error.message.size, f->u.error.message.data);
        return -1;
    default:
        break;
    }
    return 0;
}

static void *
producer_main(void *arg)
{
    overload *o = arg;
    static uint8_t batch[64 * 1024];
    static uint8_t frame[80 * 1024];
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, o->port, 1), 0);
    sl_proto_open_produce op = {.partition = 0, .topic = {.data = "load", .size = 4}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_open_produce(frame, sizeof(frame), 1, &op, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_OK, &f, 5000), SL_OK);
    uint64_t pid = f.u.stream_ok.producer_id;
    uint64_t credit = 0;
    uint64_t sent_bytes = 0;
    uint32_t seq = 0;
    uint32_t acked_seq = 0;
    int failed = 0;
    // Bounded by the duration.
    while (!failed && now_ns() - o->start_ns < o->duration_ns) {
        size_t blen =
            sl_test_build_batch(batch, sizeof(batch), pid, seq, RECORDS_PER_BATCH, VALUE_BYTES);
        sl_proto_produce p = {.acks = SL_ACKS_LOG,
                              .first_seq = seq,
                              .batches = {.data = batch, .size_bytes = blen, .batch_count = 1}};
        assert_int_equal(sl_proto_encode_produce(frame, sizeof(frame), 1, &p, &len), SL_OK);
        // Take whatever has arrived; wait (briefly) only when out of credit.
        while (!failed && sl_test_wire_recv(&w, &f, 0) == SL_OK) {
            failed = handle_producer_frame(o, &f, &credit, &acked_seq);
        }
        if (sent_bytes + len > credit) {
            if (sl_test_wire_recv(&w, &f, 50) == SL_OK) {
                failed = handle_producer_frame(o, &f, &credit, &acked_seq);
            }
            continue;
        }
        assert_int_equal(sl_test_wire_send(&w, frame, len), 0);
        sent_bytes += len;
        seq += RECORDS_PER_BATCH;
        o->sent_records += RECORDS_PER_BATCH;
    }
    // Every sent record gets its ACK (bounded: 30 s).
    int64_t deadline = now_ns() + 30000000000LL;
    while (!failed && acked_seq != seq && now_ns() < deadline) {
        if (sl_test_wire_recv(&w, &f, 100) == SL_OK) {
            failed = handle_producer_frame(o, &f, &credit, &acked_seq);
        }
    }
    atomic_store(&o->producer_done, 1);
    sl_test_wire_close(&w);
    return NULL;
}

static void *
consumer_main(void *arg)
{
    overload *o = arg;
    uint8_t frame[256];
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, o->port, 1), 0);
    sl_proto_open_consume oc = {
        .partition = 0, .start_mode = SL_START_EARLIEST, .topic = {.data = "load", .size = 4}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_open_consume(frame, sizeof(frame), 2, &oc, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, frame, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_STREAM_OK, &f, 5000), SL_OK);
    uint64_t next = 0;
    uint64_t requested = 0;
    uint64_t received = 0; // records delivered (offsets may jump when a lossy topic drops)
    int64_t t0 = now_ns();
    int64_t last_progress = t0;
    // A token bucket of CONSUMER_RATE records/s decides how much to request; stops when it has
    // every acked record after the producer finished, or 60 s after that, or after 5 s idle.
    for (;;) {
        int64_t t = now_ns();
        uint64_t allowed = (uint64_t)((t - t0) / 1000) * CONSUMER_RATE / 1000000;
        if (allowed > requested && requested - received < 2000) {
            uint64_t n = allowed - requested;
            sl_proto_request rq = {.records = n, .bytes = 16u << 20};
            assert_int_equal(sl_proto_encode_request(frame, sizeof(frame), 2, &rq, &len), SL_OK);
            assert_int_equal(sl_test_wire_send(&w, frame, len), 0);
            requested += n;
        }
        if (sl_test_wire_recv(&w, &f, 5) == SL_OK && f.header.type == SL_FRAME_DELIVER) {
            const sl_proto_deliver *d = &f.u.deliver;
            if (d->first_offset != next) {
                o->out_of_order++;
            }
            next = d->end_offset;
            received += d->end_offset - d->first_offset;
            last_progress = now_ns();
        }
        atomic_store(&o->consumed, next);
        if (atomic_load(&o->producer_done)) {
            uint64_t acked = atomic_load(&o->acked);
            if (next >= acked || now_ns() - t > 60000000000LL ||
                now_ns() - last_progress > 5000000000LL) {
                break;
            }
        }
    }
    o->consumer_end_ns = now_ns();
    sl_test_wire_close(&w);
    return NULL;
}

typedef struct overload_result {
    double ratio; // accepted rate in the second half / consumer rate
    uint64_t acked;
    long rss_kb;
    uint64_t disk_bytes;      // data directory size when the producer stopped
    uint64_t backlog_at_stop; // records acked but not yet consumed when the producer stopped
} overload_result;

static uint64_t disk_total;

static int
disk_add(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F) {
        disk_total += (uint64_t)st->st_size;
    }
    return 0;
}

static void
run_overload(const sl_proto_topic_config *topic, overload *o, overload_result *res)
{
    sl_test_broker b = {0};
    char mem[32];
    snprintf(mem, sizeof(mem), "%uMiB", MEMORY_BUDGET_MIB);
    const char *args[] = {"--memory-budget", mem, "--fsync", "never", NULL};
    assert_int_equal(sl_test_broker_start(&b, args), 0);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic_config(&w, "load", topic), 0);
    sl_test_wire_close(&w);

    memset(o, 0, sizeof(*o));
    o->port = b.port;
    int seconds = getenv("SL_SOAK") != NULL ? 20 : 8;
    o->duration_ns = (int64_t)seconds * 1000000000;
    o->start_ns = now_ns();
    pthread_t prod;
    pthread_t cons;
    assert_int_equal(pthread_create(&cons, NULL, consumer_main, o), 0);
    assert_int_equal(pthread_create(&prod, NULL, producer_main, o), 0);
    pthread_join(prod, NULL);
    res->backlog_at_stop = atomic_load(&o->acked) - atomic_load(&o->consumed);
    disk_total = 0;
    nftw(b.data_dir, disk_add, 16, FTW_PHYS);
    res->disk_bytes = disk_total;
    pthread_join(cons, NULL);
    res->rss_kb = sl_test_broker_peak_rss_kb(&b);
    assert_int_equal(sl_test_broker_stop(&b), 0);

    // Accepted rate over the second half of the send window.
    uint64_t late = 0;
    for (int s = seconds / 2; s < seconds; s++) {
        late += o->acked_by_second[s];
    }
    double late_rate = (double)late / (seconds - seconds / 2);
    res->ratio = late_rate / CONSUMER_RATE;
    res->acked = atomic_load(&o->acked);
    print_message(
        "overload: sent %llu, acked %llu, consumed %llu, gaps %llu; accepted %.0f/s in "
        "the second half (%.2f of the consumer's %u/s); throttles %llu; broker peak RSS "
        "%ld KiB; data dir %llu KiB; backlog at stop %llu records\n",
        (unsigned long long)o->sent_records, (unsigned long long)res->acked,
        (unsigned long long)atomic_load(&o->consumed), (unsigned long long)o->out_of_order,
        late_rate, res->ratio, CONSUMER_RATE, (unsigned long long)o->throttles, res->rss_kb,
        (unsigned long long)(res->disk_bytes >> 10), (unsigned long long)res->backlog_at_stop);
    sl_test_broker_cleanup(&b);
}

static void
check_memory(const overload_result *res)
{
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // The budget plus a fixed overhead (code, libraries, index pages, per-connection buffers).
    assert_true(res->rss_kb < (long)(MEMORY_BUDGET_MIB + 48) * 1024);
#else
    (void)res;
#endif
}

static void
test_broker_overload_slows_producer_to_consumer_rate(void **state)
{
    (void)state;
    static overload o;
    overload_result res;
    sl_proto_topic_config topic = {.partition_count = 1, .max_backlog_bytes = BACKLOG_BYTES};
    run_overload(&topic, &o, &res);
    assert_int_equal(o.stream_errors, 0);               // slowed by credit, never refused
    assert_int_equal(o.out_of_order, 0);                // no gaps, no duplicates
    assert_true(atomic_load(&o.consumed) >= res.acked); // nothing acknowledged was lost
    assert_true(res.ratio > 0.9 && res.ratio < 1.1);    // converged to the consumer's rate
    check_memory(&res);
}

static void
test_broker_overload_max_lag_bounds_the_backlog_in_time(void **state)
{
    (void)state;
    static overload o;
    overload_result res;
    // At most about one second behind at the consumer's pace, whatever the record size.
    sl_proto_topic_config topic = {.partition_count = 1, .max_lag_ms = 1000};
    run_overload(&topic, &o, &res);
    assert_int_equal(o.stream_errors, 0);
    assert_int_equal(o.out_of_order, 0);
    assert_true(atomic_load(&o.consumed) >= res.acked);
    assert_true(res.ratio > 0.85 && res.ratio < 1.15);
    // The backlog when the producer stopped: what was acked beyond what the consumer had taken.
    // About one second at 20,000/s, with half a second of room for the ramp and the measurement.
    assert_true(res.backlog_at_stop < CONSUMER_RATE * 3 / 2);
    check_memory(&res);
}

static void
test_broker_overload_drop_oldest_keeps_producer_fast_and_disk_bounded(void **state)
{
    (void)state;
    static overload o;
    overload_result res;
    sl_proto_topic_config topic = {
        .partition_count = 1, .max_backlog_bytes = 1u << 20, .full_policy = SL_FULL_DROP_OLDEST};
    run_overload(&topic, &o, &res);
    assert_int_equal(o.stream_errors, 0);
    assert_true(res.ratio > 3.0); // not slowed to the consumer's pace: the topic drops instead
    assert_true(o.out_of_order >
                0); // the consumer skipped what was dropped (counted by the broker)
    assert_true(res.disk_bytes < 32u * (1u << 20)); // the backlog bound holds on disk
    check_memory(&res);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_overload_slows_producer_to_consumer_rate),
        cmocka_unit_test(test_broker_overload_max_lag_bounds_the_backlog_in_time),
        cmocka_unit_test(test_broker_overload_drop_oldest_keeps_producer_fast_and_disk_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
