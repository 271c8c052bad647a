// Histogram record and readout cost: ns per record on 1 and 2 threads, against a relaxed atomic
// counter increment from the same run as the baseline, and the time of a full summary readout.
// Usage: bench_histogram [records_per_thread]   (default 5,000,000; keep it short on shared CI)
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/histogram.h>
#include <sluice/metrics.h>

#define RUNS           5u // median of five
#define READOUT_ROUNDS 1000u
#define THREADS_MAX    2u

typedef struct bench_arg {
    sl_histogram *h;
    sl_counter *counter;
    uint64_t records;
    uint64_t seed;
} bench_arg;

static void *
record_main(void *p)
{
    bench_arg *a = p;
    uint64_t x = a->seed;
    for (uint64_t i = 0; i < a->records; i++) {
        x ^= x << 13; // xorshift: latency-like values spread over 2^0 .. 2^24 ns
        x ^= x >> 7;
        x ^= x << 17;
        sl_histogram_record(a->h, x >> (40 + (x & 15)));
    }
    return NULL;
}

static void *
count_main(void *p)
{
    bench_arg *a = p;
    for (uint64_t i = 0; i < a->records; i++) {
        sl_counter_inc(a->counter);
    }
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median wall ns per operation per thread of RUNS runs of fn on thread_count threads.
static double
run(void *(*fn)(void *), uint32_t thread_count, uint64_t records, sl_histogram *h,
    sl_counter *counter)
{
    double ns_per_op[RUNS];
    for (uint32_t r = 0; r < RUNS; r++) {
        pthread_t threads[THREADS_MAX];
        bench_arg args[THREADS_MAX];
        int64_t start = sl_now_ns();
        for (uint32_t t = 0; t < thread_count; t++) {
            args[t] = (bench_arg){.h = h,
                                  .counter = counter,
                                  .records = records,
                                  .seed = 0x9e3779b97f4a7c15ull * (t + 1)};
            if (pthread_create(&threads[t], NULL, fn, &args[t]) != 0) {
                abort();
            }
        }
        for (uint32_t t = 0; t < thread_count; t++) {
            pthread_join(threads[t], NULL);
        }
        ns_per_op[r] = (double)(sl_now_ns() - start) / (double)records;
    }
    qsort(ns_per_op, RUNS, sizeof(ns_per_op[0]), cmp_double);
    return ns_per_op[RUNS / 2];
}

int
main(int argc, char **argv)
{
    uint64_t records = argc > 1 ? strtoull(argv[1], NULL, 0) : 5000000u;
    sl_histogram *h = NULL;
    if (sl_histogram_new(&h) != 0) {
        return 1;
    }
    sl_counter counter;
    sl_counter_init(&counter);
    printf("bench_histogram: %llu records per thread, median of %u runs\n",
           (unsigned long long)records, RUNS);
    for (uint32_t threads = 1; threads <= THREADS_MAX; threads++) {
        double base = run(count_main, threads, records, h, &counter);
        double rec = run(record_main, threads, records, h, &counter);
        printf("threads=%u  counter_inc %.2f ns  histogram_record %.2f ns  ratio %.2f\n", threads,
               base, rec, rec / base);
    }
    sl_histogram_summary s;
    int64_t start = sl_now_ns();
    for (uint32_t i = 0; i < READOUT_ROUNDS; i++) {
        sl_histogram_summary_get(h, &s);
    }
    double readout_us = (double)(sl_now_ns() - start) / READOUT_ROUNDS / 1000.0;
    printf("summary_get %.2f us (count=%llu p50=%llu p99=%llu max=%llu)\n", readout_us,
           (unsigned long long)s.count, (unsigned long long)s.p50, (unsigned long long)s.p99,
           (unsigned long long)s.max);
    sl_histogram_free(h);
    return 0;
}
