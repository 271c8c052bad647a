// Credit: the Reactive Streams request(n) rules, the one-record byte rule and its overshoot bound,
// cancel, and a requester and spenders on different threads never delivering more than requested.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/credit.h>
#include <sluice/error.h>
#include <sluice/limits.h>

static void
test_credit_starts_empty(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, false);
    int64_t records = -5;
    int64_t bytes = -5;
    sl_credit_available(&c, &records, &bytes);
    assert_int_equal(records, 0);
    assert_true(bytes == SL_CREDIT_UNBOUNDED);
    assert_int_equal(sl_credit_spend(&c, 1, 10), SL_EFULL);
    sl_credit_init(&c, true);
    sl_credit_available(&c, &records, &bytes);
    assert_int_equal(bytes, 0);
    assert_false(sl_credit_canceled(&c));
}

static void
test_credit_request_rejects_non_positive_and_changes_nothing(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, true);
    assert_int_equal(sl_credit_request(&c, 3, 100), SL_OK);
    assert_int_equal(sl_credit_request(&c, 0, 100), SL_EINVAL);
    assert_int_equal(sl_credit_request(&c, -1, 100), SL_EINVAL);
    assert_int_equal(sl_credit_request(&c, INT64_MIN, 0), SL_EINVAL);
    assert_int_equal(sl_credit_request(&c, 5, -1), SL_EINVAL);
    assert_int_equal(sl_credit_request_bytes(&c, 0), SL_EINVAL);
    assert_int_equal(sl_credit_request_bytes(&c, -7), SL_EINVAL);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_int_equal(st.records_available, 3);
    assert_int_equal(st.bytes_available, 100);
    assert_int_equal(st.records_requested_total, 3);
    assert_int_equal(st.bytes_requested_total, 100);
    assert_int_equal(st.invalid_total, 6);
}

static void
test_credit_never_delivers_more_than_requested(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, false);
    assert_int_equal(sl_credit_request(&c, 2, 0), SL_OK);
    assert_int_equal(sl_credit_request(&c, 3, 0), SL_OK); // demand accumulates: 5
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sl_credit_spend(&c, 1, 1000), SL_OK);
    }
    assert_int_equal(sl_credit_spend(&c, 1, 1), SL_EFULL);
    // Multi-record spends are all or nothing.
    assert_int_equal(sl_credit_request(&c, 3, 0), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 4, 4), SL_EFULL);
    assert_int_equal(sl_credit_spend(&c, 3, 3), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 1, 1), SL_EFULL);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_int_equal(st.records_requested_total, 8);
    assert_int_equal(st.records_delivered_total, 8);
    assert_int_equal(st.bytes_delivered_total, 5 * 1000 + 3);
    assert_int_equal(st.refused_total, 3);
    assert_int_equal(st.records_available, 0);
}

static void
test_credit_saturates_to_unbounded(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, true);
    assert_int_equal(sl_credit_request(&c, SL_CREDIT_UNBOUNDED - 1, SL_CREDIT_UNBOUNDED - 5),
                     SL_OK);
    assert_int_equal(sl_credit_request(&c, 10, 10), SL_OK);
    int64_t records = 0;
    int64_t bytes = 0;
    sl_credit_available(&c, &records, &bytes);
    assert_true(records == SL_CREDIT_UNBOUNDED);
    assert_true(bytes == SL_CREDIT_UNBOUNDED);
    // Unbounded demand is never decremented (Reactive Streams 3.17).
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(sl_credit_spend(&c, 1000, (uint64_t)SL_RECORD_SIZE_MAX), SL_OK);
    }
    sl_credit_available(&c, &records, &bytes);
    assert_true(records == SL_CREDIT_UNBOUNDED);
    assert_true(bytes == SL_CREDIT_UNBOUNDED);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_true(st.records_requested_total == (uint64_t)SL_CREDIT_UNBOUNDED);
    assert_int_equal(st.records_delivered_total, 1000 * 1000);
}

static void
test_credit_cancel_stops_delivery(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, false);
    assert_int_equal(sl_credit_request(&c, 100, 0), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 1, 1), SL_OK);
    sl_credit_cancel(&c);
    sl_credit_cancel(&c); // idempotent
    assert_true(sl_credit_canceled(&c));
    assert_int_equal(sl_credit_spend(&c, 1, 1), SL_ECANCELED);
    // After cancel requests are no-ops, the invalid ones too (Reactive Streams 3.6).
    assert_int_equal(sl_credit_request(&c, 5, 0), SL_ECANCELED);
    assert_int_equal(sl_credit_request(&c, 0, 0), SL_ECANCELED);
    assert_int_equal(sl_credit_request_bytes(&c, 5), SL_ECANCELED);
    assert_int_equal(sl_credit_top_up(&c, 10, 0), SL_ECANCELED);
    int64_t records = -1;
    sl_credit_available(&c, &records, NULL);
    assert_int_equal(records, 0);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_int_equal(st.records_delivered_total, 1);
    assert_true(st.canceled);
}

static void
test_credit_large_record_delivered_on_any_byte_credit(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, true);
    assert_int_equal(sl_credit_request(&c, 10, 1000), SL_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sl_credit_spend(&c, 1, 300), SL_OK);
    }
    // 100 bytes left: a 300-byte record still goes (one record), the byte demand drops to 0.
    assert_int_equal(sl_credit_spend(&c, 1, 300), SL_OK);
    int64_t bytes = -1;
    sl_credit_available(&c, NULL, &bytes);
    assert_int_equal(bytes, 0);
    // No byte demand: nothing more, however small, although records remain.
    assert_int_equal(sl_credit_spend(&c, 1, 1), SL_EFULL);
    // Any byte demand lets the next record through, however large: no stall.
    assert_int_equal(sl_credit_request_bytes(&c, 1), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 1, SL_RECORD_SIZE_MAX), SL_OK);
    // Several records at once never overshoot.
    assert_int_equal(sl_credit_request_bytes(&c, 100), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 2, 101), SL_EFULL);
    assert_int_equal(sl_credit_spend(&c, 2, 100), SL_OK);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_int_equal(st.bytes_overshoot_total, 200 + (SL_RECORD_SIZE_MAX - 1));
    assert_int_equal(st.records_delivered_total, 7);
    assert_int_equal(st.records_available, 3);
    assert_int_equal(st.bytes_delivered_total, st.bytes_requested_total + st.bytes_overshoot_total);
}

// Random requests and record sizes: after each request with byte demand D, the bytes delivered
// before the next request stay within D + (largest record - 1); a record is never refused while
// both demands are positive.
static void
test_credit_byte_overshoot_bounded_by_one_record(void **state)
{
    (void)state;
    enum { ROUNDS = 2000, RECORD_MAX = 5000 };
    uint64_t seed = sl_test_seed();
    sl_credit c;
    sl_credit_init(&c, true);
    for (int round = 0; round < ROUNDS; round++) {
        int64_t add_records = 1 + (int64_t)(sl_test_rand(&seed) % 20);
        int64_t add_bytes = (int64_t)(sl_test_rand(&seed) % (3 * RECORD_MAX));
        assert_int_equal(sl_credit_request(&c, add_records, add_bytes), SL_OK);
        int64_t demand_records = 0;
        int64_t demand_bytes = 0;
        sl_credit_available(&c, &demand_records, &demand_bytes);
        int64_t delivered = 0;
        // Bounded by the record demand: each success takes one record.
        for (int64_t i = 0; i <= demand_records; i++) {
            int64_t size = 1 + (int64_t)(sl_test_rand(&seed) % RECORD_MAX);
            int64_t records_left = 0;
            int64_t bytes_left = 0;
            sl_credit_available(&c, &records_left, &bytes_left);
            int err = sl_credit_spend(&c, 1, (uint64_t)size);
            if (records_left > 0 && bytes_left > 0) {
                assert_int_equal(err, SL_OK);
            } else {
                assert_int_equal(err, SL_EFULL);
                break;
            }
            delivered += size;
            assert_true(delivered <= demand_bytes + RECORD_MAX - 1);
        }
    }
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_true(st.bytes_delivered_total <= st.bytes_requested_total + st.bytes_overshoot_total);
    assert_true(st.records_delivered_total <= st.records_requested_total);
}

static void
test_credit_top_up_fills_to_target_only(void **state)
{
    (void)state;
    sl_credit c;
    sl_credit_init(&c, true);
    assert_int_equal(sl_credit_request(&c, 3, 50), SL_OK);
    assert_int_equal(sl_credit_top_up(&c, 10, 1000), SL_OK);
    int64_t records = 0;
    int64_t bytes = 0;
    sl_credit_available(&c, &records, &bytes);
    assert_int_equal(records, 10);
    assert_int_equal(bytes, 1000);
    assert_int_equal(sl_credit_top_up(&c, 10, 1000), SL_OK);
    assert_int_equal(sl_credit_spend(&c, 1, 600), SL_OK);
    assert_int_equal(sl_credit_top_up(&c, 5, 1000), SL_OK); // records above target: bytes only
    sl_credit_available(&c, &records, &bytes);
    assert_int_equal(records, 9);
    assert_int_equal(bytes, 1000);
    sl_credit_stats st;
    sl_credit_stats_get(&c, &st);
    assert_int_equal(st.records_requested_total, 10);
    assert_int_equal(st.bytes_requested_total, 1600);
}

// ---- concurrency --------------------------------------------------------------------------

typedef struct race {
    sl_credit credit;
    _Atomic int64_t requested_records; // published before each request: >= what credit holds
    _Atomic int64_t delivered_records; // every spender's successes
    _Atomic bool requester_done;
    int64_t records_total; // what the requester asks for in all
    uint64_t seed;
    _Atomic int violations;
} race;

static void *
race_requester(void *p)
{
    race *r = p;
    uint64_t seed = r->seed;
    int64_t left = r->records_total;
    // Bounded: each pass requests at least one record of records_total.
    while (left > 0) {
        int64_t chunk = 1 + (int64_t)(sl_test_rand(&seed) % 64);
        chunk = chunk < left ? chunk : left;
        int64_t bytes = chunk * (int64_t)(sl_test_rand(&seed) % 200);
        atomic_fetch_add(&r->requested_records, chunk);
        // cmocka asserts only on the main thread; a failure here is counted instead.
        if (sl_credit_request(&r->credit, chunk, bytes) != SL_OK) {
            atomic_fetch_add(&r->violations, 1);
        }
        left -= chunk;
        if (sl_test_rand(&seed) % 4 == 0) {
            sched_yield();
        }
    }
    // Byte demand may run out before record demand: lift the byte limit so spenders can drain.
    if (sl_credit_request_bytes(&r->credit, SL_CREDIT_UNBOUNDED) != SL_OK) {
        atomic_fetch_add(&r->violations, 1);
    }
    atomic_store(&r->requester_done, true);
    return NULL;
}

static void *
race_spender(void *p)
{
    race *r = p;
    uint64_t seed = r->seed ^ (uint64_t)(uintptr_t)&seed;
    int64_t deadline = sl_deadline_after_ms(60000);
    // Bounded by the deadline and by records_total successes in all.
    while (sl_now_ns() < deadline) {
        uint64_t records = 1 + sl_test_rand(&seed) % 3;
        int err = sl_credit_spend(&r->credit, records, 1 + sl_test_rand(&seed) % 500);
        if (err == SL_OK) {
            int64_t delivered =
                atomic_fetch_add(&r->delivered_records, (int64_t)records) + (int64_t)records;
            if (delivered > atomic_load(&r->requested_records)) {
                atomic_fetch_add(&r->violations, 1);
            }
            continue;
        }
        if (atomic_load(&r->requester_done) &&
            atomic_load(&r->delivered_records) == r->records_total) {
            break;
        }
        if (atomic_load(&r->requester_done)) {
            // Demand left is smaller than a multi-record spend: take one at a time.
            err = sl_credit_spend(&r->credit, 1, 1);
            if (err == SL_OK) {
                atomic_fetch_add(&r->delivered_records, 1);
            }
        }
        sched_yield();
    }
    return NULL;
}

static void
race_run(int spender_count)
{
    race *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    sl_credit_init(&r->credit, true);
    r->records_total = getenv("SL_SOAK") != NULL ? 5000000 : 200000;
    r->seed = sl_test_seed();
    pthread_t requester;
    pthread_t spenders[4];
    assert_true(spender_count <= 4);
    for (int i = 0; i < spender_count; i++) {
        assert_int_equal(pthread_create(&spenders[i], NULL, race_spender, r), 0);
    }
    assert_int_equal(pthread_create(&requester, NULL, race_requester, r), 0);
    pthread_join(requester, NULL);
    for (int i = 0; i < spender_count; i++) {
        pthread_join(spenders[i], NULL);
    }
    assert_int_equal(atomic_load(&r->violations), 0);
    assert_int_equal(atomic_load(&r->delivered_records), r->records_total);
    sl_credit_stats st;
    sl_credit_stats_get(&r->credit, &st);
    assert_int_equal(st.records_requested_total, r->records_total);
    assert_int_equal(st.records_delivered_total, r->records_total);
    assert_int_equal(st.records_available, 0);
    assert_int_equal(sl_credit_spend(&r->credit, 1, 1), SL_EFULL);
    // How much the two sides interleaved: each refusal is a spender that caught up with demand.
    printf("# credit race, %d spender(s): %llu records, %llu bytes delivered (%llu beyond byte "
           "demand), %llu spends refused\n",
           spender_count, (unsigned long long)st.records_delivered_total,
           (unsigned long long)st.bytes_delivered_total,
           (unsigned long long)st.bytes_overshoot_total, (unsigned long long)st.refused_total);
    free(r);
}

static void
test_credit_concurrent_one_spender_never_exceeds_requested(void **state)
{
    (void)state;
    race_run(1);
}

static void
test_credit_concurrent_two_spenders_never_exceed_requested(void **state)
{
    (void)state;
    race_run(2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credit_starts_empty),
        cmocka_unit_test(test_credit_request_rejects_non_positive_and_changes_nothing),
        cmocka_unit_test(test_credit_never_delivers_more_than_requested),
        cmocka_unit_test(test_credit_saturates_to_unbounded),
        cmocka_unit_test(test_credit_cancel_stops_delivery),
        cmocka_unit_test(test_credit_large_record_delivered_on_any_byte_credit),
        cmocka_unit_test(test_credit_byte_overshoot_bounded_by_one_record),
        cmocka_unit_test(test_credit_top_up_fills_to_target_only),
        cmocka_unit_test(test_credit_concurrent_one_spender_never_exceeds_requested),
        cmocka_unit_test(test_credit_concurrent_two_spenders_never_exceed_requested),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
