// Counters, gauges, time accounting (windows, ms per second summing to 1000, a stage stuck in one
// state, one writer against readers) and the registry's bounds and validation (SL_EFULL past
// series_max, SL_EINVAL for bad names, SL_EEXIST, removal), including registration racing scrapes.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>
#include <sluice/metrics.h>

#include "core/util.h"

#define MS INT64_C(1000000)
#define S  INT64_C(1000000000)
#define T0 (INT64_C(5) * S) // an arbitrary clock origin

static void
test_metrics_counter_and_gauge(void **state)
{
    (void)state;
    sl_counter c;
    sl_counter_init(&c);
    sl_counter_inc(&c);
    sl_counter_add(&c, 41);
    assert_int_equal(sl_counter_get(&c), 42);
    sl_gauge g;
    sl_gauge_init(&g);
    sl_gauge_set(&g, 10);
    sl_gauge_add(&g, -25);
    assert_int_equal(sl_gauge_get(&g), -15);
}

static sl_timeacct *
timeacct_make(sl_time_state s, int64_t now)
{
    sl_timeacct *t = NULL;
    assert_int_equal(sl_timeacct_new(s, now, &t), SL_OK);
    return t;
}

static sl_timeacct_stats
timeacct_read(const sl_timeacct *t, int64_t now)
{
    sl_timeacct_stats st;
    assert_int_equal(sl_timeacct_read(t, now, &st), SL_OK);
    return st;
}

static void
assert_ms(const sl_timeacct_stats *st, uint32_t busy, uint32_t bp, uint32_t idle)
{
    assert_int_equal(st->ms_per_s[SL_TIME_BUSY], busy);
    assert_int_equal(st->ms_per_s[SL_TIME_BACKPRESSURED], bp);
    assert_int_equal(st->ms_per_s[SL_TIME_IDLE], idle);
}

static void
test_timeacct_window_split(void **state)
{
    (void)state;
    sl_timeacct *bad = NULL;
    assert_int_equal(sl_timeacct_new(SL_TIME_STATE_COUNT, T0, &bad), SL_EINVAL);
    sl_timeacct *t = timeacct_make(SL_TIME_IDLE, T0);
    sl_timeacct_stats st = timeacct_read(t, T0 + 500 * MS);
    assert_int_equal(st.windows_completed, 0);
    assert_ms(&st, 0, 0, 0); // no completed window yet
    // First second: 100 ms idle, 600 ms busy, 300 ms backpressured.
    sl_timeacct_enter(t, SL_TIME_BUSY, T0 + 100 * MS);
    sl_timeacct_enter(t, SL_TIME_BACKPRESSURED, T0 + 700 * MS);
    sl_timeacct_enter(t, SL_TIME_BUSY, T0 + 1000 * MS);
    st = timeacct_read(t, T0 + 1000 * MS);
    assert_int_equal(st.windows_completed, 1);
    assert_ms(&st, 600, 300, 100);
    // Second window: a transition that straddles the boundary is split across both windows.
    sl_timeacct_enter(t, SL_TIME_IDLE, T0 + 1250 * MS);
    sl_timeacct_enter(t, SL_TIME_BUSY, T0 + 2400 * MS);
    st = timeacct_read(t, T0 + 2400 * MS);
    assert_int_equal(st.windows_completed, 2);
    assert_ms(&st, 250, 0, 750);
    assert_int_equal(st.state, SL_TIME_BUSY);
    assert_int_equal(st.total_ns[SL_TIME_BUSY], (600 + 250) * MS);
    assert_int_equal(st.total_ns[SL_TIME_BACKPRESSURED], 300 * MS);
    assert_int_equal(st.total_ns[SL_TIME_IDLE], (100 + 1150) * MS);
    sl_timeacct_free(t);
}

static void
test_timeacct_sums_to_1000_with_odd_durations(void **state)
{
    (void)state;
    uint64_t rng = sl_test_seed();
    sl_timeacct *t = timeacct_make(SL_TIME_BUSY, T0);
    int64_t now = T0;
    uint64_t last_windows = 0;
    for (int i = 0; i < 20000; i++) {
        now += (int64_t)(sl_test_rand(&rng) % (3 * MS)) + 1; // sub-millisecond remainders
        sl_timeacct_enter(t, (sl_time_state)(sl_test_rand(&rng) % 3), now);
        sl_timeacct_stats st = timeacct_read(t, now);
        if (st.windows_completed > 0) {
            uint32_t sum = st.ms_per_s[0] + st.ms_per_s[1] + st.ms_per_s[2];
            assert_int_equal(sum, 1000);
        }
        assert_true(st.windows_completed >= last_windows);
        last_windows = st.windows_completed;
        uint64_t total = st.total_ns[0] + st.total_ns[1] + st.total_ns[2];
        assert_int_equal(total, (uint64_t)(now - T0));
    }
    assert_true(last_windows >= 10);
    sl_timeacct_free(t);
}

static void
test_timeacct_reader_sees_stuck_stage(void **state)
{
    (void)state;
    sl_timeacct *t = timeacct_make(SL_TIME_BUSY, T0);
    sl_timeacct_enter(t, SL_TIME_BACKPRESSURED, T0 + 200 * MS);
    // The writer blocks for 10 s and never calls in: readers still see it backpressured.
    sl_timeacct_stats st = timeacct_read(t, T0 + 1100 * MS);
    assert_ms(&st, 200, 800, 0);
    st = timeacct_read(t, T0 + 10 * S + 300 * MS);
    assert_int_equal(st.windows_completed, 10);
    assert_ms(&st, 0, 1000, 0);
    assert_int_equal(st.total_ns[SL_TIME_BACKPRESSURED], 10 * S + 100 * MS);
    // A read must not change the account: the writer's next transition accounts the same time.
    sl_timeacct_enter(t, SL_TIME_BUSY, T0 + 10 * S + 300 * MS);
    st = timeacct_read(t, T0 + 10 * S + 300 * MS);
    assert_int_equal(st.total_ns[SL_TIME_BACKPRESSURED], 10 * S + 100 * MS);
    // A clock that steps back is treated as standing still.
    sl_timeacct_enter(t, SL_TIME_IDLE, T0 + 9 * S);
    st = timeacct_read(t, T0);
    assert_int_equal(st.state, SL_TIME_IDLE);
    assert_int_equal(st.total_ns[0] + st.total_ns[1] + st.total_ns[2], 10 * S + 300 * MS);
    sl_timeacct_free(t);
}

typedef struct timeacct_race {
    sl_timeacct *t;
    _Atomic int64_t now;
    _Atomic bool done;
} timeacct_race;

static void *
timeacct_writer_main(void *p)
{
    timeacct_race *race = p;
    for (int i = 0; i < 200000; i++) {
        int64_t now = atomic_load(&race->now) + 37 * 1000; // 37 us steps: many windows
        sl_timeacct_enter(race->t, (sl_time_state)(i % 3), now);
        atomic_store(&race->now, now);
    }
    atomic_store(&race->done, true);
    return NULL;
}

static void
test_timeacct_one_writer_many_readers(void **state)
{
    (void)state;
    timeacct_race race = {.t = timeacct_make(SL_TIME_IDLE, T0)};
    atomic_init(&race.now, T0);
    atomic_init(&race.done, false);
    pthread_t writer;
    assert_int_equal(pthread_create(&writer, NULL, timeacct_writer_main, &race), 0);
    uint64_t reads = 0;
    while (!atomic_load(&race.done) && reads < 1000000) {
        int64_t now = atomic_load(&race.now);
        sl_timeacct_stats st;
        int err = sl_timeacct_read(race.t, now, &st);
        assert_true(err == SL_OK || err == SL_EAGAIN);
        if (err == SL_OK && st.windows_completed > 0) {
            assert_int_equal(st.ms_per_s[0] + st.ms_per_s[1] + st.ms_per_s[2], 1000);
        }
        reads++;
    }
    pthread_join(writer, NULL);
    sl_timeacct_stats st = timeacct_read(race.t, atomic_load(&race.now));
    assert_int_equal(st.total_ns[0] + st.total_ns[1] + st.total_ns[2],
                     (uint64_t)(atomic_load(&race.now) - T0));
    sl_timeacct_free(race.t);
}

// ---- registry -------------------------------------------------------------------------------

static sl_metrics_registry *
registry_make(uint32_t series_max)
{
    sl_metrics_registry_config cfg = {.series_max = series_max, .families_max = 8};
    sl_metrics_registry *r = NULL;
    assert_int_equal(sl_metrics_registry_new(&cfg, &r), SL_OK);
    return r;
}

static int
family_add(sl_metrics_registry *r, const char *name, sl_metric_type type, const char *const *labels,
           uint32_t label_count, uint64_t *id_out)
{
    sl_metric_family_desc d = {.name = name,
                               .help = "help",
                               .type = type,
                               .label_names = labels,
                               .label_count = label_count};
    return sl_metrics_family_register(r, &d, id_out);
}

static void
test_registry_validates_names(void **state)
{
    (void)state;
    sl_metrics_registry *r = registry_make(16);
    uint64_t id = 0;
    const char *ok_label[] = {"topic"};
    assert_int_equal(family_add(r, "sluice_x_total", SL_METRIC_COUNTER, ok_label, 1, &id), SL_OK);
    assert_int_equal(family_add(r, "sluice_x_total", SL_METRIC_COUNTER, NULL, 0, &id), SL_EEXIST);
    assert_int_equal(family_add(r, "sluice_x", SL_METRIC_COUNTER, NULL, 0, &id), SL_EINVAL);
    assert_int_equal(family_add(r, "9lives", SL_METRIC_GAUGE, NULL, 0, &id), SL_EINVAL);
    assert_int_equal(family_add(r, "a-b", SL_METRIC_GAUGE, NULL, 0, &id), SL_EINVAL);
    assert_int_equal(family_add(r, "", SL_METRIC_GAUGE, NULL, 0, &id), SL_EINVAL);
    assert_int_equal(family_add(r, "ns:sub_metric", SL_METRIC_GAUGE, NULL, 0, &id), SL_OK);
    char long_name[SL_NAME_MAX + 1];
    memset(long_name, 'a', SL_NAME_MAX);
    long_name[SL_NAME_MAX] = '\0';
    assert_int_equal(family_add(r, long_name, SL_METRIC_GAUGE, NULL, 0, &id), SL_EINVAL);
    const char *bad_labels[][1] = {{"__reserved"}, {"quantile"}, {"le"}, {"a:b"}, {"1x"}, {""}};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        assert_int_equal(family_add(r, "g1", SL_METRIC_GAUGE, bad_labels[i], 1, &id), SL_EINVAL);
    }
    const char *dup[] = {"a", "a"};
    assert_int_equal(family_add(r, "g1", SL_METRIC_GAUGE, dup, 2, &id), SL_EINVAL);
    const char *state_label[] = {"state"};
    assert_int_equal(family_add(r, "t1", SL_METRIC_TIME, state_label, 1, &id), SL_EINVAL);
    assert_int_equal(family_add(r, "g1", SL_METRIC_GAUGE, state_label, 1, &id), SL_OK);
    sl_metric_family_desc bad_help = {.name = "g2", .help = "\xc3\x28", .type = SL_METRIC_GAUGE};
    assert_int_equal(sl_metrics_family_register(r, &bad_help, &id), SL_EINVAL);
    sl_metric_family_desc bad_scale = {.name = "g2", .type = SL_METRIC_GAUGE, .scale = -1.0};
    assert_int_equal(sl_metrics_family_register(r, &bad_scale, &id), SL_EINVAL);
    sl_metrics_registry_free(r);
}

static void
test_registry_bounded_series_and_families(void **state)
{
    (void)state;
    sl_metrics_registry *r = registry_make(3);
    const char *labels[] = {"stage"};
    uint64_t fam = 0;
    assert_int_equal(family_add(r, "sluice_recs_total", SL_METRIC_COUNTER, labels, 1, &fam), SL_OK);
    sl_counter counters[4];
    uint64_t ids[4];
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        sl_counter_init(&counters[i]);
        sl_metric_source src = {.counter = &counters[i]};
        const char *values[] = {names[i]};
        int err = sl_metrics_series_add(r, fam, values, &src, &ids[i]);
        assert_int_equal(err, i < 3 ? SL_OK : SL_EFULL);
    }
    assert_int_equal(sl_metrics_series_count(r), 3);
    // Duplicates, wrong sources, bad values.
    sl_metric_source src = {.counter = &counters[3]};
    const char *dup[] = {"a"};
    uint64_t id = 0;
    assert_int_equal(sl_metrics_series_remove(r, ids[2]), SL_OK);
    assert_int_equal(sl_metrics_series_remove(r, ids[2]), SL_ENOENT);
    assert_int_equal(sl_metrics_series_add(r, fam, dup, &src, &id), SL_EEXIST);
    sl_gauge g;
    sl_gauge_init(&g);
    sl_metric_source wrong = {.gauge = &g};
    const char *fresh[] = {"e"};
    assert_int_equal(sl_metrics_series_add(r, fam, fresh, &wrong, &id), SL_EINVAL);
    sl_metric_source two = {.counter = &counters[3], .gauge = &g};
    assert_int_equal(sl_metrics_series_add(r, fam, fresh, &two, &id), SL_EINVAL);
    const char *not_utf8[] = {"\xff"};
    assert_int_equal(sl_metrics_series_add(r, fam, not_utf8, &src, &id), SL_EINVAL);
    char long_value[SL_METRIC_LABEL_VALUE_MAX + 1];
    memset(long_value, 'v', SL_METRIC_LABEL_VALUE_MAX);
    long_value[SL_METRIC_LABEL_VALUE_MAX] = '\0';
    const char *too_long[] = {long_value};
    assert_int_equal(sl_metrics_series_add(r, fam, too_long, &src, &id), SL_EINVAL);
    assert_int_equal(sl_metrics_series_add(r, fam + 1000, fresh, &src, &id), SL_ENOENT);
    assert_int_equal(sl_metrics_series_add(r, fam, fresh, &src, &id), SL_OK);
    assert_int_equal(sl_metrics_series_count(r), 3);
    // Unregistering a family frees its series' slots.
    assert_int_equal(sl_metrics_family_unregister(r, fam), SL_OK);
    assert_int_equal(sl_metrics_family_unregister(r, fam), SL_ENOENT);
    assert_int_equal(sl_metrics_series_count(r), 0);
    // families_max (8) is a bound too.
    char name[16];
    int full_at = -1;
    for (int i = 0; i < 9; i++) {
        snprintf(name, sizeof(name), "g%d", i);
        int err = family_add(r, name, SL_METRIC_GAUGE, NULL, 0, &id);
        if (err == SL_EFULL && full_at < 0) {
            full_at = i;
        }
    }
    assert_int_equal(full_at, 8);
    sl_metrics_registry_free(r);
}

static void
test_registry_alloc_failure_leaves_no_trace(void **state)
{
    (void)state;
    sl_metrics_registry *r = NULL;
    sl__alloc_fail_after(1);
    assert_int_equal(sl_metrics_registry_new(NULL, &r), SL_ENOMEM);
    sl__alloc_fail_after(2);
    assert_int_equal(sl_metrics_registry_new(NULL, &r), SL_ENOMEM);
    sl__alloc_fail_after(0);
    r = registry_make(4);
    uint64_t fam = 0;
    sl__alloc_fail_after(1);
    assert_int_equal(family_add(r, "g", SL_METRIC_GAUGE, NULL, 0, &fam), SL_ENOMEM);
    assert_int_equal(family_add(r, "g", SL_METRIC_GAUGE, NULL, 0, &fam), SL_OK);
    sl_gauge g;
    sl_gauge_init(&g);
    sl_metric_source src = {.gauge = &g};
    uint64_t id = 0;
    sl__alloc_fail_after(1);
    assert_int_equal(sl_metrics_series_add(r, fam, NULL, &src, &id), SL_ENOMEM);
    assert_int_equal(sl_metrics_series_count(r), 0);
    sl_metrics_registry_free(r);
}

// Registration and removal racing scrapes: the registry stays consistent and no scrape reads a
// removed series' source (ASan would see the freed counter).
typedef struct churn_arg {
    sl_metrics_registry *r;
    uint64_t family_id;
    uint32_t thread_index;
} churn_arg;

static void *
churn_main(void *p)
{
    churn_arg *arg = p;
    for (int i = 0; i < 2000; i++) {
        sl_counter *c = malloc(sizeof(*c));
        assert_non_null(c);
        sl_counter_init(c);
        sl_counter_add(c, (uint64_t)i);
        char value[32];
        snprintf(value, sizeof(value), "t%u-%d", arg->thread_index, i);
        const char *values[] = {value};
        sl_metric_source src = {.counter = c};
        uint64_t id = 0;
        int err = sl_metrics_series_add(arg->r, arg->family_id, values, &src, &id);
        assert_true(err == SL_OK || err == SL_EFULL);
        if (err == SL_OK) {
            assert_int_equal(sl_metrics_series_remove(arg->r, id), SL_OK);
        }
        free(c);
    }
    return NULL;
}

static void
test_registry_churn_against_scrapes(void **state)
{
    (void)state;
    sl_metrics_registry *r = registry_make(8);
    const char *labels[] = {"conn"};
    uint64_t fam = 0;
    assert_int_equal(family_add(r, "sluice_conn_bytes_total", SL_METRIC_COUNTER, labels, 1, &fam),
                     SL_OK);
    enum { CHURNERS = 3 };
    pthread_t threads[CHURNERS];
    churn_arg args[CHURNERS];
    for (uint32_t t = 0; t < CHURNERS; t++) {
        args[t] = (churn_arg){.r = r, .family_id = fam, .thread_index = t};
        assert_int_equal(pthread_create(&threads[t], NULL, churn_main, &args[t]), 0);
    }
    static char buf[1 << 16];
    for (int i = 0; i < 300; i++) {
        size_t length = 0;
        assert_int_equal(sl_metrics_encode_prometheus(r, T0, buf, sizeof(buf), &length), SL_OK);
        assert_int_equal(sl_metrics_encode_json(r, T0, buf, sizeof(buf), &length), SL_OK);
    }
    for (uint32_t t = 0; t < CHURNERS; t++) {
        pthread_join(threads[t], NULL);
    }
    assert_int_equal(sl_metrics_series_count(r), 0);
    sl_metrics_registry_free(r);
}

// The family's label index: duplicates are found across index growth, after removals, and label
// splits that concatenate alike ("ab","c" vs "a","bc") are different series.
static void
test_registry_index_finds_duplicates_at_scale(void **state)
{
    (void)state;
    enum { SERIES = 3000 };
    sl_metrics_registry *r = registry_make(2 * SERIES);
    const char *labels[] = {"topic", "partition"};
    uint64_t fam = 0;
    assert_int_equal(family_add(r, "g_index", SL_METRIC_GAUGE, labels, 2, &fam), SL_OK);
    sl_gauge g;
    sl_gauge_init(&g);
    sl_metric_source src = {.gauge = &g};
    static uint64_t ids[SERIES];
    char topic[32];
    char part[16];
    for (int i = 0; i < SERIES; i++) {
        snprintf(topic, sizeof(topic), "t%d", i / 8);
        snprintf(part, sizeof(part), "%d", i % 8);
        const char *v[] = {topic, part};
        assert_int_equal(sl_metrics_series_add(r, fam, v, &src, &ids[i]), SL_OK);
    }
    for (int i = 0; i < SERIES; i += 7) {
        snprintf(topic, sizeof(topic), "t%d", i / 8);
        snprintf(part, sizeof(part), "%d", i % 8);
        const char *v[] = {topic, part};
        uint64_t id = 0;
        assert_int_equal(sl_metrics_series_add(r, fam, v, &src, &id), SL_EEXIST);
    }
    // Removed series can be added again; the others are still duplicates.
    for (int i = 0; i < SERIES; i += 2) {
        assert_int_equal(sl_metrics_series_remove(r, ids[i]), SL_OK);
    }
    for (int i = 0; i < 16; i++) {
        snprintf(topic, sizeof(topic), "t%d", i / 8);
        snprintf(part, sizeof(part), "%d", i % 8);
        const char *v[] = {topic, part};
        uint64_t id = 0;
        assert_int_equal(sl_metrics_series_add(r, fam, v, &src, &id),
                         i % 2 == 0 ? SL_OK : SL_EEXIST);
    }
    const char *a[] = {"ab", "c"};
    const char *b[] = {"a", "bc"};
    uint64_t id = 0;
    assert_int_equal(sl_metrics_series_add(r, fam, a, &src, &id), SL_OK);
    assert_int_equal(sl_metrics_series_add(r, fam, b, &src, &id), SL_OK);
    assert_int_equal(sl_metrics_series_count(r), SERIES / 2 + 8 + 2);
    sl_metrics_registry_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_counter_and_gauge),
        cmocka_unit_test(test_timeacct_window_split),
        cmocka_unit_test(test_timeacct_sums_to_1000_with_odd_durations),
        cmocka_unit_test(test_timeacct_reader_sees_stuck_stage),
        cmocka_unit_test(test_timeacct_one_writer_many_readers),
        cmocka_unit_test(test_registry_validates_names),
        cmocka_unit_test(test_registry_bounded_series_and_families),
        cmocka_unit_test(test_registry_alloc_failure_leaves_no_trace),
        cmocka_unit_test(test_registry_churn_against_scrapes),
        cmocka_unit_test(test_registry_index_finds_duplicates_at_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
