// Isolation: one producer connection carries two topics, "fast" (a steady 20000 records/s read by a
// consumer that keeps up) and "slow" (as much as credit allows, read at 1% of that speed, so its
// backlog fills and its stream is throttled). The fast topic's throughput and p99 latency (send
// time stamped in each value) must stay within 20% of running alone. Phases alternate alone / with
// the slow topic, after a warm-up; medians over the rounds absorb a noisy machine.
// ctest-labels: serial scenario
// ctest-timeout: 240
#include "support/test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

#define FAST_RATE         20000u             // records/s offered on the fast topic
#define SLOW_RATE         (FAST_RATE / 100u) // the slow consumer: 1%
#define RECORDS_PER_BATCH 20u
#define VALUE_BYTES       100u
#define SLOW_BACKLOG      (1u << 20)
#define WARMUP_MS         1000
#define PHASE_MS          1500
#define ROUNDS_DEFAULT    3 // each round: one phase alone, one with the slow topic
#define ROUNDS_SOAK       8
#define PHASES_MAX        (2 * ROUNDS_SOAK)
#define SAMPLES_MAX       (FAST_RATE * PHASE_MS / 1000 * 2)
// Allowed degradation with the slow topic active, and an absolute floor for p99 comparisons: a
// sub-millisecond p99 moves by more than 20% with any scheduling hiccup on a shared machine (seen:
// 0.6 to 8 ms between "alone" phases). Head-of-line blocking behind the throttled slow stream
// would cost tens of milliseconds or more, so 5 ms still catches it.
#define TOLERANCE_PCT 20
#define P99_FLOOR_US  5000
#define FAST_SID      1u
#define SLOW_SID      3u

typedef struct phase_stats {
    uint32_t latency_us[SAMPLES_MAX];
    uint32_t count;
} phase_stats;

typedef struct isolation {
    uint16_t port;
    int64_t start_ns; // phase 0 begins after the warm-up
    int phases;
    int64_t end_ns;
    _Atomic int stop;
    _Atomic uint64_t fast_sent;
    uint64_t fast_consumed;
    uint64_t slow_consumed;
    uint64_t out_of_order;
    uint64_t consumer_errors;
    phase_stats phase[PHASES_MAX];
} isolation;

static isolation iso;

// Phase of a send time: -1 during the warm-up; odd phases have the slow topic active.
static int
phase_of(int64_t t)
{
    if (t < iso.start_ns) {
        return -1;
    }
    int64_t k = (t - iso.start_ns) / ((int64_t)PHASE_MS * 1000000);
    return k < iso.phases ? (int)k : -1;
}

typedef struct fast_rec {
    uint64_t next;
} fast_rec;

static int
on_fast_record(void *arg, uint64_t offset, const sl_record *r)
{
    fast_rec *fr = arg;
    uint64_t seq = 0;
    int64_t stamp = 0;
    int64_t now = sl_test_now_ns();
    if (sl_test_parse_value(r, &seq, &stamp) != 0 || seq != offset || offset != fr->next) {
        iso.out_of_order++;
    }
    fr->next = offset + 1;
    int k = phase_of(stamp);
    if (k >= 0 && iso.phase[k].count < SAMPLES_MAX) {
        phase_stats *p = &iso.phase[k];
        int64_t us = (now - stamp) / 1000;
        p->latency_us[p->count++] = (uint32_t)(us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : us);
    }
    return 0;
}

// Reads the fast topic as fast as it arrives (demand kept well ahead).
static void *
fast_consumer(void *arg)
{
    (void)arg;
    sl_test_wire w;
    if (sl_test_wire_open(&w, iso.port, 1) != 0 || sl_test_wire_open_consume(&w, 2, "fast", 0)) {
        iso.consumer_errors++;
        return NULL;
    }
    uint64_t requested = 0;
    fast_rec fr = {0};
    // Bounded by the end time (plus a drain of 3 s).
    while (sl_test_now_ns() < iso.end_ns + 3000000000LL) {
        if (requested - fr.next < 10000) {
            sl_test_wire_request(&w, 2, 20000, 64u << 20);
            requested += 20000;
        }
        sl_frame f;
        int rc = sl_test_wire_recv(&w, &f, 20);
        if (rc == SL_OK && f.header.type == SL_FRAME_DELIVER) {
            if (sl_test_deliver_foreach(&f.u.deliver, on_fast_record, &fr) != 0) {
                iso.consumer_errors++;
            }
        } else if (rc != SL_OK && rc != SL_ETIMEDOUT) {
            iso.consumer_errors++;
            break;
        }
        if (atomic_load(&iso.stop) && fr.next >= atomic_load(&iso.fast_sent)) {
            break;
        }
    }
    iso.fast_consumed = fr.next;
    sl_test_wire_close(&w);
    return NULL;
}

// Reads the slow topic at SLOW_RATE (a token bucket in REQUEST increments every 50 ms).
static void *
slow_consumer(void *arg)
{
    (void)arg;
    sl_test_wire w;
    if (sl_test_wire_open(&w, iso.port, 1) != 0 || sl_test_wire_open_consume(&w, 4, "slow", 0)) {
        iso.consumer_errors++;
        return NULL;
    }
    int64_t t0 = sl_test_now_ns();
    uint64_t requested = 0;
    uint64_t got = 0;
    // Bounded by the stop flag and the end time.
    while (!atomic_load(&iso.stop) && sl_test_now_ns() < iso.end_ns + 3000000000LL) {
        uint64_t allowed = (uint64_t)((sl_test_now_ns() - t0) / 1000000) * SLOW_RATE / 1000;
        if (allowed > requested) {
            sl_test_wire_request(&w, 4, allowed - requested, 16u << 20);
            requested = allowed;
        }
        sl_frame f;
        int rc = sl_test_wire_recv(&w, &f, 50);
        if (rc == SL_OK && f.header.type == SL_FRAME_DELIVER) {
            got = f.u.deliver.end_offset;
        } else if (rc != SL_OK && rc != SL_ETIMEDOUT) {
            iso.consumer_errors++;
            break;
        }
    }
    iso.slow_consumed = got;
    sl_test_wire_close(&w);
    return NULL;
}

typedef struct pstream {
    uint32_t sid;
    uint64_t pid;
    uint64_t credit;
    uint64_t sent_bytes;
    uint32_t seq;
    uint64_t throttles;
} pstream;

static void
producer_frames(sl_test_wire *w, pstream *fast, pstream *slow, int timeout_ms)
{
    sl_frame f;
    // Bounded: what has arrived, then one wait.
    for (int i = 0; i < 10000 && sl_test_wire_recv(w, &f, i == 0 ? timeout_ms : 0) == SL_OK; i++) {
        pstream *s = f.header.stream_id == FAST_SID ? fast : slow;
        if (f.header.type == SL_FRAME_CREDIT) {
            s->credit = f.u.credit.granted_total_bytes;
        } else if (f.header.type == SL_FRAME_THROTTLE) {
            s->throttles++;
        } else if (f.header.type == SL_FRAME_STREAM_CLOSE || f.header.type == SL_FRAME_ERROR) {
            fail_msg("producer: %s on stream %u", sl_proto_frame_name(f.header.type),
                     f.header.stream_id);
        }
    }
}

// Sends the next batch on s if its credit allows. Returns 1 if sent.
static int
send_batch(sl_test_wire *w, pstream *s)
{
    static uint8_t batch[16 * 1024];
    static uint8_t frame[20 * 1024];
    size_t blen = sl_test_build_batch_stamped(batch, sizeof(batch), s->pid, s->seq,
                                              RECORDS_PER_BATCH, VALUE_BYTES, sl_test_now_ns());
    assert_true(blen > 0);
    sl_proto_produce p = {.acks = SL_ACKS_NONE,
                          .first_seq = s->seq,
                          .batches = {.data = batch, .size_bytes = blen, .batch_count = 1}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_produce(frame, sizeof(frame), s->sid, &p, &len), SL_OK);
    if (s->sent_bytes + len > s->credit) {
        return 0;
    }
    assert_int_equal(sl_test_wire_send(w, frame, len), 0);
    s->sent_bytes += len;
    s->seq += RECORDS_PER_BATCH;
    return 1;
}

static uint32_t
p99_us(phase_stats *p)
{
    if (p->count == 0) {
        return 0;
    }
    uint32_t *v = p->latency_us;
    // A histogram of 10 us buckets up to 1 s, then one tail bucket.
    enum { BUCKETS = 100001 };
    static uint32_t hist[BUCKETS];
    memset(hist, 0, sizeof(hist));
    for (uint32_t i = 0; i < p->count; i++) {
        uint32_t b = v[i] / 10;
        hist[b < BUCKETS - 1 ? b : BUCKETS - 1]++;
    }
    uint64_t want = (uint64_t)p->count * 99 / 100;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (seen > want) {
            return b * 10 + 10;
        }
    }
    return UINT32_MAX;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void
test_slow_topic_does_not_slow_the_other_topic_on_the_connection(void **state)
{
    (void)state;
    static sl_test_broker b;
    memset(&b, 0, sizeof(b));
    const char *args[] = {"--fsync", "never", "--memory-budget", "64MiB", "--log-level",
                          "error",   NULL};
    assert_int_equal(sl_test_broker_start(&b, args), 0);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "fast", 1, 0, 0), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, "slow", 1, SLOW_BACKLOG, 0), 0);
    pstream fast = {.sid = FAST_SID};
    pstream slow = {.sid = SLOW_SID};
    assert_int_equal(sl_test_wire_open_produce(&w, FAST_SID, "fast", 0, 0, &fast.pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    fast.credit = f.u.credit.granted_total_bytes; // before the next open skips past it
    assert_int_equal(sl_test_wire_open_produce(&w, SLOW_SID, "slow", 0, 0, &slow.pid), 0);

    memset(&iso, 0, sizeof(iso));
    int rounds = getenv("SL_SOAK") != NULL ? ROUNDS_SOAK : ROUNDS_DEFAULT;
    iso.port = b.port;
    iso.phases = 2 * rounds;
    int64_t t0 = sl_test_now_ns();
    iso.start_ns = t0 + (int64_t)WARMUP_MS * 1000000;
    iso.end_ns = iso.start_ns + (int64_t)iso.phases * PHASE_MS * 1000000;
    pthread_t fc;
    pthread_t sc;
    assert_int_equal(pthread_create(&fc, NULL, fast_consumer, NULL), 0);
    assert_int_equal(pthread_create(&sc, NULL, slow_consumer, NULL), 0);

    uint64_t fast_late = 0; // batches that could not go out on time for lack of credit
    // Paced: a fast batch is due every RECORDS_PER_BATCH / FAST_RATE s. Bounded by end_ns.
    while (sl_test_now_ns() < iso.end_ns) {
        int64_t now = sl_test_now_ns();
        uint64_t due = (uint64_t)(now - t0) / 1000 * FAST_RATE / 1000000 / RECORDS_PER_BATCH;
        if (fast.seq / RECORDS_PER_BATCH < due) {
            if (send_batch(&w, &fast)) {
                atomic_store(&iso.fast_sent, fast.seq);
            } else {
                fast_late++;
            }
        }
        int k = phase_of(now);
        if (k >= 0 && k % 2 == 1) {
            send_batch(&w, &slow); // as fast as its credit allows, one batch per pass
        }
        bool behind = fast.seq / RECORDS_PER_BATCH < due;
        producer_frames(&w, &fast, &slow, behind ? 0 : 1);
    }
    atomic_store(&iso.stop, 1);
    pthread_join(fc, NULL);
    pthread_join(sc, NULL);
    sl_test_wire_close(&w);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);

    assert_int_equal(iso.consumer_errors, 0);
    assert_int_equal(iso.out_of_order, 0);
    assert_int_equal(iso.fast_consumed, fast.seq);
    double tput[2][ROUNDS_SOAK];
    double p99[2][ROUNDS_SOAK];
    for (int k = 0; k < iso.phases; k++) {
        phase_stats *p = &iso.phase[k];
        tput[k % 2][k / 2] = (double)p->count * 1000.0 / PHASE_MS;
        p99[k % 2][k / 2] = p99_us(p);
        print_message("  phase %d (%s): %.0f records/s, p99 %.0f us\n", k,
                      k % 2 ? "with slow" : "alone", tput[k % 2][k / 2], p99[k % 2][k / 2]);
    }
    double t_alone = median(tput[0], rounds);
    double t_with = median(tput[1], rounds);
    double l_alone = median(p99[0], rounds);
    double l_with = median(p99[1], rounds);
    print_message("isolation: fast topic alone %.0f records/s p99 %.0f us; with the slow topic "
                  "%.0f records/s p99 %.0f us (medians of %d); slow topic produced %u, consumed "
                  "%llu, its stream throttled %llu times; fast batches delayed for credit %llu\n",
                  t_alone, l_alone, t_with, l_with, rounds, slow.seq,
                  (unsigned long long)iso.slow_consumed, (unsigned long long)slow.throttles,
                  (unsigned long long)fast_late);
    assert_true(t_alone > FAST_RATE * 0.5);    // the fast topic really ran
    assert_true(slow.seq > 0);                 // the slow topic was really active
    assert_true(slow.seq > iso.slow_consumed); // and backed up
    assert_true(t_with >= t_alone * (100 - TOLERANCE_PCT) / 100);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // Sub-millisecond tail latency is only meaningful without sanitizers; under them a single
    // instrumented hiccup moves p99 by milliseconds (throughput is still checked above).
    assert_true(l_with <= l_alone * (100 + TOLERANCE_PCT) / 100 || l_with <= P99_FLOOR_US);
#endif
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_topic_does_not_slow_the_other_topic_on_the_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
