// Histograms: quantiles within 1% of the exact quantiles of random data (uniform, exponential,
// log-normal, constant, and log-uniform from 1 ns to 10 minutes), bucket geometry, values past
// the range, merge equal to recording both sets, reset, and lossless concurrent recording.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/error.h>
#include <sluice/histogram.h>

#define SAMPLE_COUNT   100000u
#define REL_ERROR_MAX  0.01
#define THREAD_COUNT   4u
#define THREAD_RECORDS 100000u
#define TEN_MINUTES_NS 600000000000.0

static const double checked_quantiles[] = {0.0, 0.01, 0.1,  0.25,  0.5,    0.75,
                                           0.9, 0.95, 0.99, 0.999, 0.9999, 1.0};

static sl_histogram *
histogram_make(void)
{
    sl_histogram *h = NULL;
    assert_int_equal(sl_histogram_new(&h), SL_OK);
    return h;
}

// Uniform in (0, 1), never 0 so logs are finite.
static double
rand_unit(uint64_t *rng)
{
    return ((double)(sl_test_rand(rng) >> 11) + 0.5) / 9007199254740992.0;
}

static double
rand_normal(uint64_t *rng)
{
    return sqrt(-2.0 * log(rand_unit(rng))) * cos(2.0 * M_PI * rand_unit(rng));
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// The exact quantile, by the definition the histogram documents: the value of rank ceil(q * n).
static uint64_t
exact_quantile(const uint64_t *sorted, size_t n, double q)
{
    double rank = ceil(q * (double)n);
    size_t r = rank < 1.0 ? 1 : (rank >= (double)n ? n : (size_t)rank);
    return sorted[r - 1];
}

static void
check_quantiles(const char *name, uint64_t *values, size_t n)
{
    sl_histogram *h = histogram_make();
    for (size_t i = 0; i < n; i++) {
        sl_histogram_record(h, values[i]);
    }
    qsort(values, n, sizeof(values[0]), cmp_u64);
    double worst = 0.0;
    for (size_t i = 0; i < sizeof(checked_quantiles) / sizeof(checked_quantiles[0]); i++) {
        double q = checked_quantiles[i];
        uint64_t exact = exact_quantile(values, n, q);
        uint64_t got = sl_histogram_quantile(h, q);
        double err =
            exact == 0 ? (got == 0 ? 0.0 : 1.0) : fabs((double)got - (double)exact) / (double)exact;
        if (err > REL_ERROR_MAX) {
            fprintf(stderr, "%s q=%g exact=%llu got=%llu err=%g\n", name, q,
                    (unsigned long long)exact, (unsigned long long)got, err);
        }
        assert_true(err <= REL_ERROR_MAX);
        worst = err > worst ? err : worst;
    }
    sl_histogram_summary s;
    sl_histogram_summary_get(h, &s);
    assert_int_equal(s.count, n);
    assert_int_equal(s.min, values[0]);
    assert_int_equal(s.max, values[n - 1]);
    assert_int_equal(s.p50, sl_histogram_quantile(h, 0.5));
    assert_int_equal(s.p99, sl_histogram_quantile(h, 0.99));
    assert_int_equal(s.p999, sl_histogram_quantile(h, 0.999));
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += values[i];
    }
    assert_int_equal(s.sum, sum);
    fprintf(stderr, "%-12s worst relative error %.5f%%\n", name, worst * 100.0);
    sl_histogram_free(h);
}

typedef enum dist {
    DIST_UNIFORM_SMALL,
    DIST_UNIFORM,
    DIST_EXP,
    DIST_LOGNORMAL,
    DIST_CONSTANT,
    DIST_LOG_UNIFORM,
    DIST_COUNT
} dist;

static uint64_t
draw(dist d, uint64_t *rng)
{
    switch (d) {
    case DIST_UNIFORM_SMALL:
        return sl_test_rand(rng) % 1000u;
    case DIST_UNIFORM:
        return 1000u + sl_test_rand(rng) % 1000000000u;
    case DIST_EXP:
        return (uint64_t)(-log(rand_unit(rng)) * 1e6); // mean 1 ms
    case DIST_LOGNORMAL:
        return (uint64_t)exp(log(1e6) + 2.0 * rand_normal(rng)); // median 1 ms, wide tail
    case DIST_CONSTANT:
        return 123456789u;
    default:
        return (uint64_t)exp(log(TEN_MINUTES_NS) * rand_unit(rng)); // 1 ns .. 10 min
    }
}

static void
test_histogram_quantiles_within_one_percent(void **state)
{
    (void)state;
    static const char *const names[] = {"uniform<1000", "uniform",  "exponential",
                                        "log-normal",   "constant", "1ns..10min"};
    uint64_t rng = sl_test_seed();
    uint64_t *values = malloc(SAMPLE_COUNT * sizeof(*values));
    assert_non_null(values);
    for (int d = 0; d < DIST_COUNT; d++) {
        for (size_t i = 0; i < SAMPLE_COUNT; i++) {
            values[i] = draw((dist)d, &rng);
        }
        check_quantiles(names[d], values, SAMPLE_COUNT);
    }
    // Tiny sets: every rank matters.
    uint64_t three[] = {5000000, 7, 900000000000};
    check_quantiles("three", three, 3);
    free(values);
}

static void
test_histogram_bucket_geometry(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < SL_HISTOGRAM_BUCKET_COUNT; i++) {
        uint64_t low = sl_histogram_bucket_low(i);
        uint64_t high = sl_histogram_bucket_high(i);
        assert_true(low <= high);
        assert_int_equal(sl_histogram_bucket_index(low), i);
        assert_int_equal(sl_histogram_bucket_index(high), i);
        // Width relative to the start: at most 1/128, the source of the 0.4% readout bound.
        assert_true((double)(high - low + 1) / (double)(low == 0 ? 1 : low) <= 1.0 / 128 ||
                    high == low);
        if (i + 1 < SL_HISTOGRAM_BUCKET_COUNT) {
            assert_int_equal(sl_histogram_bucket_low(i + 1), high + 1);
        }
    }
    uint64_t top = (UINT64_C(1) << SL_HISTOGRAM_RANGE_LOG2) - 1;
    assert_int_equal(sl_histogram_bucket_high(SL_HISTOGRAM_BUCKET_COUNT - 1), top);
}

static void
test_histogram_values_past_range_keep_exact_max(void **state)
{
    (void)state;
    sl_histogram *h = histogram_make();
    uint64_t huge = UINT64_C(1) << 50;
    sl_histogram_record(h, 1000);
    sl_histogram_record(h, huge);
    sl_histogram_record(h, huge + 12345);
    assert_int_equal(sl_histogram_count(h), 3);
    assert_int_equal(sl_histogram_quantile(h, 1.0), huge + 12345);
    // A quantile landing in the overflow bucket reads as max: an upper bound, never below truth.
    assert_int_equal(sl_histogram_quantile(h, 0.9), huge + 12345);
    assert_int_equal(sl_histogram_quantile(h, 0.0), 1000);
    sl_histogram_record(h, 0);
    assert_int_equal(sl_histogram_quantile(h, 0.0), 0);
    sl_histogram_free(h);
}

static void
test_histogram_empty_and_reset(void **state)
{
    (void)state;
    sl_histogram *h = histogram_make();
    sl_histogram_summary s;
    sl_histogram_summary_get(h, &s);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.max, 0);
    assert_int_equal(sl_histogram_quantile(h, 0.5), 0);
    sl_histogram_record_n(h, 4242, 10);
    sl_histogram_record_n(h, 1, 0);
    sl_histogram_summary_get(h, &s);
    assert_int_equal(s.count, 10);
    assert_int_equal(s.sum, 42420);
    assert_int_equal(s.min, 4242);
    assert_int_equal(s.p999, 4242);
    sl_histogram_reset(h);
    sl_histogram_summary_get(h, &s);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.sum, 0);
    sl_histogram_record(h, 77);
    assert_int_equal(sl_histogram_quantile(h, 0.0), 77);
    assert_int_equal(sl_histogram_quantile(h, 1.0), 77);
    sl_histogram_free(h);
}

static void
assert_same_histogram(const sl_histogram *a, const sl_histogram *b)
{
    sl_histogram_summary sa;
    sl_histogram_summary sb;
    sl_histogram_summary_get(a, &sa);
    sl_histogram_summary_get(b, &sb);
    assert_memory_equal(&sa, &sb, sizeof(sa));
    // Every rank reads the same value, so every bucket holds the same count.
    for (int i = 0; i <= 2000; i++) {
        double q = i / 2000.0;
        assert_int_equal(sl_histogram_quantile(a, q), sl_histogram_quantile(b, q));
    }
}

static void
test_histogram_merge_equals_recording_both(void **state)
{
    (void)state;
    uint64_t rng = sl_test_seed();
    sl_histogram *a = histogram_make();
    sl_histogram *b = histogram_make();
    sl_histogram *both = histogram_make();
    for (uint32_t i = 0; i < 50000; i++) {
        uint64_t x = draw(DIST_LOGNORMAL, &rng);
        uint64_t y = draw(DIST_LOG_UNIFORM, &rng) + 5000000; // different shape and range
        sl_histogram_record(a, x);
        sl_histogram_record(b, y);
        sl_histogram_record(both, x);
        sl_histogram_record(both, y);
    }
    sl_histogram *merged = histogram_make();
    sl_histogram_merge(merged, a);
    sl_histogram_merge(merged, b);
    assert_same_histogram(merged, both);
    sl_histogram_merge(a, b); // into a non-empty histogram
    assert_same_histogram(a, both);
    sl_histogram *empty = histogram_make();
    sl_histogram_merge(a, empty); // merging nothing changes nothing
    assert_same_histogram(a, both);
    sl_histogram_free(a);
    sl_histogram_free(b);
    sl_histogram_free(both);
    sl_histogram_free(merged);
    sl_histogram_free(empty);
}

typedef struct recorder_arg {
    sl_histogram *h;
    uint32_t thread_index;
} recorder_arg;

// Thread t records t*1000 + (i % 1000) + 1, so totals and extremes are known in closed form.
static void *
recorder_main(void *p)
{
    recorder_arg *arg = p;
    for (uint32_t i = 0; i < THREAD_RECORDS; i++) {
        sl_histogram_record(arg->h, (uint64_t)arg->thread_index * 1000u + i % 1000u + 1u);
    }
    return NULL;
}

static void
test_histogram_concurrent_recording_loses_nothing(void **state)
{
    (void)state;
    sl_histogram *h = histogram_make();
    pthread_t threads[THREAD_COUNT];
    recorder_arg args[THREAD_COUNT];
    for (uint32_t t = 0; t < THREAD_COUNT; t++) {
        args[t] = (recorder_arg){.h = h, .thread_index = t};
        assert_int_equal(pthread_create(&threads[t], NULL, recorder_main, &args[t]), 0);
    }
    // Read while they record: counts only grow and a summary never exceeds what was recorded.
    uint64_t last = 0;
    for (int i = 0; i < 50; i++) {
        sl_histogram_summary s;
        sl_histogram_summary_get(h, &s);
        assert_true(s.count >= last);
        assert_true(s.count <= (uint64_t)THREAD_COUNT * THREAD_RECORDS);
        last = s.count;
    }
    for (uint32_t t = 0; t < THREAD_COUNT; t++) {
        pthread_join(threads[t], NULL);
    }
    sl_histogram_summary s;
    sl_histogram_summary_get(h, &s);
    assert_int_equal(s.count, (uint64_t)THREAD_COUNT * THREAD_RECORDS);
    uint64_t per_thread_cycles = THREAD_RECORDS / 1000u;
    uint64_t sum = 0;
    for (uint64_t t = 0; t < THREAD_COUNT; t++) {
        sum += per_thread_cycles * (1000u * (t * 1000u) + 1000u * 1001u / 2u);
    }
    assert_int_equal(s.sum, sum);
    assert_int_equal(s.min, 1);
    assert_int_equal(s.max, (THREAD_COUNT - 1) * 1000u + 1000u);
    sl_histogram_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_quantiles_within_one_percent),
        cmocka_unit_test(test_histogram_bucket_geometry),
        cmocka_unit_test(test_histogram_values_past_range_keep_exact_max),
        cmocka_unit_test(test_histogram_empty_and_reset),
        cmocka_unit_test(test_histogram_merge_equals_recording_both),
        cmocka_unit_test(test_histogram_concurrent_recording_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
