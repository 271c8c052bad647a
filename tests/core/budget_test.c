// Budgets: all-or-nothing reservation through the parent chain, watermark hysteresis, room
// signalling, and waiting with a deadline.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <sluice/budget.h>
#include <sluice/error.h>

static sl_budget *
budget_make(const char *name, uint64_t bytes, uint64_t records, sl_budget *parent)
{
    sl_budget_config cfg = {.name = name,
                            .capacity_bytes = bytes,
                            .capacity_records = records,
                            .high_watermark_pct = 80,
                            .low_watermark_pct = 60};
    sl_budget *b = NULL;
    assert_int_equal(sl_budget_new(&cfg, parent, &b), SL_OK);
    return b;
}

static void
test_budget_rejects_bad_config(void **state)
{
    (void)state;
    sl_budget *b = NULL;
    sl_budget_config zero = {.name = "zero", .capacity_bytes = 0};
    assert_int_equal(sl_budget_new(&zero, NULL, &b), SL_EINVAL);
    sl_budget_config inverted = {
        .name = "inv", .capacity_bytes = 100, .high_watermark_pct = 50, .low_watermark_pct = 70};
    assert_int_equal(sl_budget_new(&inverted, NULL, &b), SL_EINVAL);
}

static void
test_budget_reserve_until_full(void **state)
{
    (void)state;
    sl_budget *b = budget_make("b", 1000, 0, NULL);
    assert_int_equal(sl_budget_reserve(b, 600, 1), SL_OK);
    assert_int_equal(sl_budget_reserve(b, 400, 1), SL_OK);
    assert_int_equal(sl_budget_reserve(b, 1, 1), SL_EFULL);
    sl_budget_stats st;
    sl_budget_stats_get(b, &st);
    assert_int_equal(st.used_bytes, 1000);
    assert_int_equal(st.used_records, 2);
    assert_int_equal(st.full_total, 1);
    assert_int_equal(st.peak_bytes, 1000);
    sl_budget_release(b, 1000, 2);
    sl_budget_free(b);
}

static void
test_budget_record_cap(void **state)
{
    (void)state;
    sl_budget *b = budget_make("recs", 1 << 20, 10, NULL);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sl_budget_reserve(b, 1, 1), SL_OK);
    }
    assert_int_equal(sl_budget_reserve(b, 1, 1), SL_EFULL);
    sl_budget_release(b, 10, 10);
    sl_budget_free(b);
}

static void
test_budget_record_cost_charges_overhead(void **state)
{
    (void)state;
    assert_int_equal(sl_budget_record_cost(100), 100 + SL_RECORD_OVERHEAD_BYTES);
    // A budget of 10 records' worth of payload holds fewer records once overhead is charged.
    sl_budget *b = budget_make("cost", 1000, 0, NULL);
    int held = 0;
    while (held < 100 && sl_budget_reserve(b, sl_budget_record_cost(100), 1) == SL_OK) {
        held++;
    }
    assert_int_equal(held, 1000 / (100 + SL_RECORD_OVERHEAD_BYTES));
    sl_budget_release(b, (uint64_t)held * sl_budget_record_cost(100), (uint64_t)held);
    sl_budget_free(b);
}

static void
test_budget_parent_chain_all_or_nothing(void **state)
{
    (void)state;
    sl_budget *global = budget_make("global", 1000, 0, NULL);
    sl_budget *topic_a = budget_make("a", 800, 0, global);
    sl_budget *topic_b = budget_make("b", 800, 0, global);
    assert_int_equal(sl_budget_reserve(topic_a, 700, 0), SL_OK);
    // b has room of its own, but the parent does not: nothing may be charged to b.
    assert_int_equal(sl_budget_reserve(topic_b, 400, 0), SL_EFULL);
    sl_budget_stats st;
    sl_budget_stats_get(topic_b, &st);
    assert_int_equal(st.used_bytes, 0);
    sl_budget_stats_get(global, &st);
    assert_int_equal(st.used_bytes, 700);
    assert_int_equal(sl_budget_reserve(topic_b, 300, 0), SL_OK);
    sl_budget_stats_get(global, &st);
    assert_int_equal(st.used_bytes, 1000);
    sl_budget_release(topic_a, 700, 0);
    sl_budget_release(topic_b, 300, 0);
    sl_budget_stats_get(global, &st);
    assert_int_equal(st.used_bytes, 0);
    sl_budget_free(topic_a);
    sl_budget_free(topic_b);
    sl_budget_free(global);
}

typedef struct crossing_log {
    int count;
    bool last;
} crossing_log;

static void
on_crossing(sl_budget *b, bool pressured, void *user)
{
    (void)b;
    crossing_log *log = user;
    log->count++;
    log->last = pressured;
}

static void
test_budget_watermark_hysteresis_no_flapping(void **state)
{
    (void)state;
    sl_budget *b = budget_make("wm", 100, 0, NULL); // high 80, low 60
    crossing_log log = {0};
    sl_budget_set_watermark_cb(b, on_crossing, &log);
    assert_int_equal(sl_budget_reserve(b, 79, 0), SL_OK);
    assert_false(sl_budget_pressured(b));
    assert_int_equal(sl_budget_reserve(b, 1, 0), SL_OK); // 80: crosses high
    assert_true(sl_budget_pressured(b));
    assert_int_equal(log.count, 1);
    assert_true(log.last);
    // Oscillating around the high watermark must not produce new signals.
    for (int i = 0; i < 100; i++) {
        sl_budget_release(b, 5, 0);
        assert_int_equal(sl_budget_reserve(b, 5, 0), SL_OK);
    }
    assert_int_equal(log.count, 1);
    sl_budget_release(b, 19, 0); // 61: still above low
    assert_true(sl_budget_pressured(b));
    sl_budget_release(b, 1, 0); // 60: at low, released
    assert_false(sl_budget_pressured(b));
    assert_int_equal(log.count, 2);
    assert_false(log.last);
    // Oscillating around the low watermark must not produce new signals either.
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sl_budget_reserve(b, 5, 0), SL_OK);
        sl_budget_release(b, 5, 0);
    }
    assert_int_equal(log.count, 2);
    sl_budget_stats st;
    sl_budget_stats_get(b, &st);
    assert_int_equal(st.pressured_total, 1);
    sl_budget_release(b, 60, 0);
    sl_budget_free(b);
}

static void
test_budget_room_fd_signals_after_full(void **state)
{
    (void)state;
    sl_budget *global = budget_make("g", 100, 0, NULL);
    sl_budget *child = budget_make("c", 100, 0, global);
    sl_budget *sibling = budget_make("s", 100, 0, global);
    int fd = sl_budget_room_fd(child);
    assert_true(fd >= 0);
    assert_int_equal(sl_budget_reserve(sibling, 100, 0), SL_OK);
    assert_int_equal(sl_budget_reserve(child, 10, 0), SL_EFULL);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    // The room appears through the sibling's release: the child's fd must still fire.
    sl_budget_release(sibling, 50, 0);
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    uint64_t v;
    assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(sl_budget_reserve(child, 10, 0), SL_OK);
    sl_budget_release(child, 10, 0);
    sl_budget_release(sibling, 50, 0);
    sl_budget_free(child);
    sl_budget_free(sibling);
    sl_budget_free(global);
}

static void
test_budget_wait_times_out_and_too_big(void **state)
{
    (void)state;
    sl_budget *b = budget_make("w", 100, 0, NULL);
    assert_int_equal(sl_budget_reserve(b, 100, 0), SL_OK);
    int64_t waited = 0;
    int64_t t0 = sl_now_ns();
    assert_int_equal(sl_budget_reserve_wait(b, 1, 0, sl_deadline_after_ms(50), &waited),
                     SL_ETIMEDOUT);
    assert_true(sl_now_ns() - t0 >= 45 * 1000000);
    assert_true(waited >= 45 * 1000000);
    assert_int_equal(sl_budget_reserve_wait(b, 101, 0, SL_DEADLINE_NEVER, NULL), SL_ETOOBIG);
    sl_budget_release(b, 100, 0);
    sl_budget_free(b);
}

typedef struct churn_arg {
    sl_budget *budget;
    int rounds;
    int64_t waited_ns;
} churn_arg;

static void *
churn(void *p)
{
    churn_arg *arg = p;
    for (int i = 0; i < arg->rounds; i++) {
        int err = sl_budget_reserve_wait(arg->budget, 30, 1, sl_deadline_after_ms(10000),
                                         &arg->waited_ns);
        assert_int_equal(err, SL_OK);
        sl_budget_release(arg->budget, 30, 1);
    }
    return NULL;
}

static void
test_budget_concurrent_waiters_never_exceed_cap(void **state)
{
    (void)state;
    sl_budget *global = budget_make("g", 100, 0, NULL);
    sl_budget *children[4];
    churn_arg args[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        children[i] = budget_make("c", 60, 0, global);
        args[i] = (churn_arg){.budget = children[i], .rounds = 2000};
        assert_int_equal(pthread_create(&threads[i], NULL, churn, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
    }
    sl_budget_stats st;
    sl_budget_stats_get(global, &st);
    assert_int_equal(st.used_bytes, 0);
    assert_true(st.peak_bytes <= 100);
    assert_int_equal(st.reserve_total, 4 * 2000);
    for (int i = 0; i < 4; i++) {
        sl_budget_free(children[i]);
    }
    sl_budget_free(global);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_rejects_bad_config),
        cmocka_unit_test(test_budget_reserve_until_full),
        cmocka_unit_test(test_budget_record_cap),
        cmocka_unit_test(test_budget_record_cost_charges_overhead),
        cmocka_unit_test(test_budget_parent_chain_all_or_nothing),
        cmocka_unit_test(test_budget_watermark_hysteresis_no_flapping),
        cmocka_unit_test(test_budget_room_fd_signals_after_full),
        cmocka_unit_test(test_budget_wait_times_out_and_too_big),
        cmocka_unit_test(test_budget_concurrent_waiters_never_exceed_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
