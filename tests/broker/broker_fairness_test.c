// Fairness: three producer connections on one topic whose rate-limited consumer is the bottleneck
// (the topic's max_backlog makes the broker slow producers down). Two cold producers offer half a
// fair share each, a hot one ten times as much. Each must get at least 30% of a fair share; the
// cold ones about what they offer; the hot one no more than about the remainder. Runs 8 s
// (SL_SOAK=1: 20 s); rates are measured from the ACKs of the second half.
// ctest-labels: serial scenario
// ctest-timeout: 240
#include "support/test_util.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

#define CONSUMER_RATE     15000u // records/s: the bottleneck
#define PRODUCERS         3
#define COLD_RATE         (CONSUMER_RATE / PRODUCERS / 2) // half a fair share
#define HOT_RATE          (COLD_RATE * 10)
#define RECORDS_PER_BATCH 25u
#define VALUE_BYTES       100u
#define BACKLOG_BYTES     (1u << 20)
// A producer more than this many batches behind its offer drops the excess (an application
// buffer of bounded size), so a refused offer is not replayed as a burst later.
#define BEHIND_MAX    20u
#define MIN_SHARE_PCT 30 // of a fair share, for every producer
#define COLD_GETS_PCT 80 // of what a cold producer offers
#define HOT_SLACK_PCT 15 // of the consumer rate, on top of the remainder

typedef struct producer {
    sl_test_wire w;
    uint32_t rate;
    uint64_t pid;
    uint64_t credit;
    uint64_t sent_bytes;
    uint32_t seq;     // next sequence to send
    uint64_t offered; // batches due so far (sent or dropped)
    uint64_t dropped; // batches given up for lack of credit
    uint32_t acked_seq;
    uint64_t acked_late; // records acked in the measured half
    uint64_t throttles;
} producer;

typedef struct fairness {
    uint16_t port;
    int64_t end_ns;
    _Atomic int stop;
    uint64_t consumed;
    uint64_t errors;
} fairness;

static fairness fair;

static void *
consumer_main(void *arg)
{
    (void)arg;
    sl_test_wire w;
    if (sl_test_wire_open(&w, fair.port, 1) != 0 || sl_test_wire_open_consume(&w, 9, "fair", 0)) {
        fair.errors++;
        return NULL;
    }
    int64_t t0 = sl_test_now_ns();
    uint64_t requested = 0;
    uint64_t next = 0;
    // A token bucket of CONSUMER_RATE records/s; bounded by the stop flag and the end time.
    while (!atomic_load(&fair.stop) && sl_test_now_ns() < fair.end_ns + 5000000000LL) {
        uint64_t allowed = (uint64_t)((sl_test_now_ns() - t0) / 1000) * CONSUMER_RATE / 1000000;
        if (allowed > requested && requested - next < 2000) {
            sl_test_wire_request(&w, 9, allowed - requested, 16u << 20);
            requested = allowed;
        }
        sl_frame f;
        int rc = sl_test_wire_recv(&w, &f, 5);
        if (rc == SL_OK && f.header.type == SL_FRAME_DELIVER) {
            if (f.u.deliver.first_offset != next) {
                fair.errors++;
            }
            next = f.u.deliver.end_offset;
        } else if (rc != SL_OK && rc != SL_ETIMEDOUT) {
            fair.errors++;
            break;
        }
    }
    fair.consumed = next;
    sl_test_wire_close(&w);
    return NULL;
}

static void
producer_frames(producer *p, bool late)
{
    sl_frame f;
    // Bounded: what has already arrived.
    for (int i = 0; i < 10000 && sl_test_wire_recv(&p->w, &f, 0) == SL_OK; i++) {
        switch (f.header.type) {
        case SL_FRAME_CREDIT:
            p->credit = f.u.credit.granted_total_bytes;
            break;
        case SL_FRAME_ACK: {
            uint32_t n = f.u.ack.seq_end - p->acked_seq;
            p->acked_seq = f.u.ack.seq_end;
            if (late) {
                p->acked_late += n;
            }
            break;
        }
        case SL_FRAME_THROTTLE:
            p->throttles++;
            break;
        default:
            fail_msg("producer: unexpected %s", sl_proto_frame_name(f.header.type));
        }
    }
}

static void
producer_send_due(producer *p, int64_t elapsed_ns)
{
    static uint8_t batch[8 * 1024];
    static uint8_t frame[10 * 1024];
    uint64_t due = (uint64_t)(elapsed_ns / 1000) * p->rate / 1000000 / RECORDS_PER_BATCH;
    if (due > p->offered + BEHIND_MAX) {
        p->dropped += due - BEHIND_MAX - p->offered;
        p->offered = due - BEHIND_MAX;
    }
    // Bounded by BEHIND_MAX batches per call.
    while (p->offered < due) {
        size_t blen = sl_test_build_batch(batch, sizeof(batch), p->pid, p->seq, RECORDS_PER_BATCH,
                                          VALUE_BYTES);
        assert_true(blen > 0);
        sl_proto_produce pr = {.acks = SL_ACKS_LOG,
                               .first_seq = p->seq,
                               .batches = {.data = batch, .size_bytes = blen, .batch_count = 1}};
        size_t len = 0;
        assert_int_equal(sl_proto_encode_produce(frame, sizeof(frame), 1, &pr, &len), SL_OK);
        if (p->sent_bytes + len > p->credit) {
            return; // waits for credit; stays due (up to BEHIND_MAX)
        }
        assert_int_equal(sl_test_wire_send(&p->w, frame, len), 0);
        p->sent_bytes += len;
        p->seq += RECORDS_PER_BATCH;
        p->offered++;
    }
}

static void
test_hot_producer_cannot_starve_cold_ones(void **state)
{
    (void)state;
    static sl_test_broker b;
    memset(&b, 0, sizeof(b));
    const char *args[] = {"--fsync", "never", "--memory-budget", "64MiB", "--log-level",
                          "error",   NULL};
    assert_int_equal(sl_test_broker_start(&b, args), 0);
    static producer prods[PRODUCERS];
    memset(prods, 0, sizeof(prods));
    for (int i = 0; i < PRODUCERS; i++) {
        producer *p = &prods[i];
        assert_int_equal(sl_test_wire_open(&p->w, b.port, 1), 0);
        if (i == 0) {
            assert_int_equal(sl_test_wire_create_topic(&p->w, "fair", 1, BACKLOG_BYTES, 0), 0);
        }
        p->rate = i == PRODUCERS - 1 ? HOT_RATE : COLD_RATE;
        assert_int_equal(sl_test_wire_open_produce(&p->w, 1, "fair", 0, 0, &p->pid), 0);
    }
    memset(&fair, 0, sizeof(fair));
    int seconds = getenv("SL_SOAK") != NULL ? 20 : 8;
    int64_t t0 = sl_test_now_ns();
    int64_t half_ns = t0 + (int64_t)seconds * 500000000;
    fair.port = b.port;
    fair.end_ns = t0 + (int64_t)seconds * 1000000000;
    pthread_t cons;
    assert_int_equal(pthread_create(&cons, NULL, consumer_main, NULL), 0);
    struct pollfd pfds[PRODUCERS];
    // Bounded by the end time; wakes at least every millisecond to send what is due.
    while (sl_test_now_ns() < fair.end_ns) {
        int64_t now = sl_test_now_ns();
        for (int i = 0; i < PRODUCERS; i++) {
            producer_frames(&prods[i], now >= half_ns);
            producer_send_due(&prods[i], now - t0);
            pfds[i] = (struct pollfd){.fd = prods[i].w.fd, .events = POLLIN};
        }
        poll(pfds, PRODUCERS, 1);
    }
    atomic_store(&fair.stop, 1);
    pthread_join(cons, NULL);
    for (int i = 0; i < PRODUCERS; i++) {
        sl_test_wire_close(&prods[i].w);
    }
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
    assert_int_equal(fair.errors, 0);

    double span_s = seconds / 2.0;
    double total = 0;
    double got[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        got[i] = (double)prods[i].acked_late / span_s;
        total += got[i];
    }
    double share = total / PRODUCERS;
    for (int i = 0; i < PRODUCERS; i++) {
        print_message("  producer %d (%s): offered %u records/s, accepted %.0f records/s = %.2f "
                      "of a fair share (%.0f); %llu batches dropped waiting for credit, %llu "
                      "throttles\n",
                      i, i == PRODUCERS - 1 ? "hot" : "cold", prods[i].rate, got[i], got[i] / share,
                      share, (unsigned long long)prods[i].dropped,
                      (unsigned long long)prods[i].throttles);
    }
    print_message("fairness: consumer limit %u records/s, accepted in total %.0f records/s, "
                  "consumed %llu records\n",
                  CONSUMER_RATE, total, (unsigned long long)fair.consumed);
    assert_true(total > CONSUMER_RATE * 0.5); // the bottleneck was really the consumer
    double cold_sum = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        assert_true(got[i] >= share * MIN_SHARE_PCT / 100);
        if (i < PRODUCERS - 1) {
            assert_true(got[i] >= (double)COLD_RATE * COLD_GETS_PCT / 100);
            cold_sum += got[i];
        }
    }
    double remainder = CONSUMER_RATE - cold_sum;
    assert_true(got[PRODUCERS - 1] <= remainder + (double)CONSUMER_RATE * HOT_SLACK_PCT / 100);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hot_producer_cannot_starve_cold_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
