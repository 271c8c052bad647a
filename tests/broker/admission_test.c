// Admission control: the escalation order as pressure rises (grant -> shrink -> delay acks ->
// throttle), windows sized from rate x round trip, retry-after from the drain rate, and max-min
// fair shares.
#include "support/test_util.h"

#include "broker/admission.h"

static sl_admission_input
input_at(uint64_t used, uint64_t capacity)
{
    sl_admission_input in = {
        .constraints = {{.reason = SL_ADMIT_REASON_MEMORY_BUDGET,
                         .used = used,
                         .capacity = capacity}},
        .constraint_count = 1,
        .drain_bytes_per_s = 1e6,
        .produce_bytes_per_s = 50e6,
        .round_trip_us = 2000,
    };
    return in;
}

static void
test_admission_escalates_in_order_and_window_never_grows(void **state)
{
    (void)state;
    sl_admission_config c;
    sl_admission_config_default(&c);
    sl_admission_level last_level = SL_ADMIT_GRANT;
    uint64_t last_window = UINT64_MAX;
    int64_t last_delay = 0;
    for (uint64_t used = 0; used <= 1000; used++) {
        sl_admission_input in = input_at(used, 1000);
        sl_admission_decision d;
        sl_admission_decide(&c, &in, &d);
        assert_true(d.level >= last_level);
        assert_true(d.window_bytes <= last_window);
        if (d.level == SL_ADMIT_DELAY_ACKS) {
            assert_true(d.ack_delay_ms >= last_delay);
            assert_true(d.ack_delay_ms <= c.ack_delay_max_ms);
            last_delay = d.ack_delay_ms;
        }
        if (d.level < SL_ADMIT_THROTTLE) {
            assert_true(d.window_bytes >= c.window_min_bytes);
            assert_int_equal(d.retry_after_ms, 0);
        } else {
            assert_int_equal(d.window_bytes, 0);
            assert_true(d.retry_after_ms >= c.retry_after_min_ms);
        }
        last_level = d.level;
        last_window = d.window_bytes;
    }
    assert_int_equal(last_level, SL_ADMIT_THROTTLE);
    sl_admission_input in = input_at(500, 1000);
    sl_admission_decision d;
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.level, SL_ADMIT_GRANT);
    assert_int_equal(d.reason, SL_ADMIT_REASON_NONE);
    in = input_at(900, 1000);
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.level, SL_ADMIT_SHRINK);
    assert_int_equal(d.reason, SL_ADMIT_REASON_MEMORY_BUDGET);
    in = input_at(970, 1000);
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.level, SL_ADMIT_DELAY_ACKS);
}

static void
test_admission_window_sized_by_rate_and_round_trip(void **state)
{
    (void)state;
    sl_admission_config c;
    sl_admission_config_default(&c);
    // 100 MB/s with a 10 ms fsync round trip needs 2 MB outstanding, not the minimum.
    assert_int_equal(sl_admission_window_for(&c, 100e6, 10000), 2000000);
    assert_int_equal(sl_admission_window_for(&c, 0, 10000), c.window_min_bytes);
    assert_int_equal(sl_admission_window_for(&c, 1e12, 1000000), c.window_max_bytes);
}

static void
test_admission_retry_after_from_drain_rate(void **state)
{
    (void)state;
    sl_admission_config c;
    sl_admission_config_default(&c);
    sl_admission_input in = input_at(1000000, 1000000); // full; excess over 80 % = 200 kB
    in.drain_bytes_per_s = 1e6;                         // 200 kB drains in 200 ms
    sl_admission_decision d;
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.level, SL_ADMIT_THROTTLE);
    assert_int_equal(d.retry_after_ms, 200);
    in.drain_bytes_per_s = 0; // nothing drains: the longest hint
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.retry_after_ms, c.retry_after_max_ms);
}

static void
test_admission_names_the_tightest_constraint(void **state)
{
    (void)state;
    sl_admission_config c;
    sl_admission_config_default(&c);
    sl_admission_input in = {
        .constraints = {{SL_ADMIT_REASON_MEMORY_BUDGET, 10, 100},
                        {SL_ADMIT_REASON_DISK_BUDGET, 99, 100},
                        {SL_ADMIT_REASON_BACKLOG, 5, 0}}, // capacity 0: not configured
        .constraint_count = 3,
        .drain_bytes_per_s = 1e6,
    };
    sl_admission_decision d;
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.reason, SL_ADMIT_REASON_DISK_BUDGET);
    assert_int_equal(d.level, SL_ADMIT_DELAY_ACKS);
    in.constraints[2] = (sl_admission_constraint){SL_ADMIT_REASON_MAX_LAG, 3000, 2000}; // 1 s over
    sl_admission_decide(&c, &in, &d);
    assert_int_equal(d.reason, SL_ADMIT_REASON_MAX_LAG);
    assert_int_equal(d.level, SL_ADMIT_THROTTLE);
    assert_int_equal(d.retry_after_ms, 3000 - 1600);
}

static void
check_shares(uint64_t capacity, const uint64_t *demands, size_t n, const uint64_t *expect)
{
    uint64_t shares[16];
    sl_fair_share(capacity, demands, n, shares);
    uint64_t sum = 0;
    uint64_t want = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(shares[i] <= demands[i]);
        sum += shares[i];
        want += demands[i];
        if (expect != NULL) {
            assert_int_equal(shares[i], expect[i]);
        }
    }
    assert_int_equal(sum, want < capacity ? want : capacity);
}

static void
test_fair_share_max_min(void **state)
{
    (void)state;
    // One producer offering 10x the others cannot take their share.
    uint64_t hot[3] = {1000, 100, 100};
    uint64_t hot_expect[3] = {100, 100, 100};
    check_shares(300, hot, 3, hot_expect);
    uint64_t hot_more[3] = {400, 100, 100};
    check_shares(450, hot_more, 3, (uint64_t[]){250, 100, 100});
    check_shares(10000, hot, 3, hot); // enough for all
    uint64_t uneven[4] = {5, 50, 500, 5000};
    check_shares(1000, uneven, 4, (uint64_t[]){5, 50, 473, 472});
    uint64_t zeros[3] = {0, 0, 7};
    check_shares(100, zeros, 3, (uint64_t[]){0, 0, 7});
    check_shares(2, (uint64_t[]){10, 10, 10}, 3, NULL); // less capacity than demands
    uint64_t seed = sl_test_seed();
    for (int round = 0; round < 1000; round++) {
        uint64_t d[16];
        size_t n = 1 + sl_test_rand(&seed) % 16;
        for (size_t i = 0; i < n; i++) {
            d[i] = sl_test_rand(&seed) % 10000;
        }
        uint64_t cap = sl_test_rand(&seed) % 50000;
        uint64_t s[16];
        sl_fair_share(cap, d, n, s);
        check_shares(cap, d, n, NULL);
        // Max-min: nobody who got less than asked gets less than anyone else (+1 rounding).
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < n && s[i] < d[i]; j++) {
                assert_true(s[i] + 1 >= s[j]);
            }
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission_escalates_in_order_and_window_never_grows),
        cmocka_unit_test(test_admission_window_sized_by_rate_and_round_trip),
        cmocka_unit_test(test_admission_retry_after_from_drain_rate),
        cmocka_unit_test(test_admission_names_the_tightest_constraint),
        cmocka_unit_test(test_fair_share_max_min),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
