// Cost of the flow-control primitives on the hot path: a credit spend (uncontended, and against a
// requester on another thread), a token bucket acquire, an adaptive limiter sample. Prints the
// median of BENCH_RUNS runs in ns per operation; baseline is an empty loop from the same run.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/credit.h>
#include <sluice/error.h>
#include <sluice/ratelimit.h>

// Runs per figure (the median is printed) and operations per run.
#define BENCH_RUNS 5
#define BENCH_OPS  2000000

typedef double (*bench_fn)(void);

static volatile uint64_t bench_sink;

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median_ns_per_op(bench_fn fn)
{
    double runs[BENCH_RUNS];
    for (int i = 0; i < BENCH_RUNS; i++) {
        runs[i] = fn();
    }
    qsort(runs, BENCH_RUNS, sizeof(runs[0]), cmp_double);
    return runs[BENCH_RUNS / 2];
}

static double
bench_empty(void)
{
    int64_t t0 = sl_now_ns();
    for (uint64_t i = 0; i < BENCH_OPS; i++) {
        bench_sink = i;
    }
    return (double)(sl_now_ns() - t0) / BENCH_OPS;
}

static double
bench_credit_spend(void)
{
    sl_credit c;
    sl_credit_init(&c, true);
    if (sl_credit_request(&c, BENCH_OPS, (int64_t)BENCH_OPS * 100) != SL_OK) {
        abort();
    }
    int64_t t0 = sl_now_ns();
    for (uint64_t i = 0; i < BENCH_OPS; i++) {
        bench_sink = (uint64_t)sl_credit_spend(&c, 1, 100);
    }
    return (double)(sl_now_ns() - t0) / BENCH_OPS;
}

typedef struct requester_arg {
    sl_credit *credit;
    _Atomic bool stop;
} requester_arg;

static void *
requester(void *p)
{
    requester_arg *arg = p;
    // Bounded by the spender's stop flag, set after BENCH_OPS successful spends.
    while (!atomic_load_explicit(&arg->stop, memory_order_relaxed)) {
        int64_t records = 0;
        sl_credit_available(arg->credit, &records, NULL);
        if (records < 1024) {
            bench_sink = (uint64_t)sl_credit_request(arg->credit, 1024, 0);
        }
    }
    return NULL;
}

static double
bench_credit_spend_vs_requester(void)
{
    sl_credit c;
    sl_credit_init(&c, false);
    requester_arg arg = {.credit = &c};
    pthread_t thread;
    if (pthread_create(&thread, NULL, requester, &arg) != 0) {
        abort();
    }
    int64_t t0 = sl_now_ns();
    uint64_t done = 0;
    // Bounded: a requester tops up 1024 at a time, so spends succeed as soon as it runs.
    while (done < BENCH_OPS) {
        done += sl_credit_spend(&c, 1, 100) == SL_OK;
    }
    double ns = (double)(sl_now_ns() - t0) / BENCH_OPS;
    atomic_store(&arg.stop, true);
    pthread_join(thread, NULL);
    return ns;
}

static double
bench_token_bucket(void)
{
    sl_token_bucket tb;
    if (sl_token_bucket_init(&tb, SL_TOKEN_BUCKET_RATE_MAX, 1000) != SL_OK) {
        abort();
    }
    int64_t t0 = sl_now_ns();
    for (uint64_t i = 0; i < BENCH_OPS; i++) {
        int64_t wait = 0;
        bench_sink = (uint64_t)sl_token_bucket_acquire(&tb, 1, (int64_t)i, &wait);
    }
    return (double)(sl_now_ns() - t0) / BENCH_OPS;
}

static double
bench_adaptive_sample(void)
{
    sl_adaptive_config cfg;
    sl_adaptive_config_default(&cfg, SL_ADAPTIVE_GRADIENT);
    sl_adaptive_limiter l;
    if (sl_adaptive_init(&l, &cfg) != SL_OK) {
        abort();
    }
    int64_t t0 = sl_now_ns();
    for (uint64_t i = 0; i < BENCH_OPS; i++) {
        sl_adaptive_on_sample(&l, 1000000 + (int64_t)(i % 7) * 1000, 10, false);
        bench_sink = sl_adaptive_limit(&l);
    }
    return (double)(sl_now_ns() - t0) / BENCH_OPS;
}

int
main(void)
{
    double base = median_ns_per_op(bench_empty);
    struct {
        const char *name;
        bench_fn fn;
    } cases[] = {
        {"credit_spend (uncontended)", bench_credit_spend},
        {"credit_spend (requester on another thread)", bench_credit_spend_vs_requester},
        {"token_bucket_acquire", bench_token_bucket},
        {"adaptive_on_sample + limit", bench_adaptive_sample},
    };
    printf("# median of %d runs of %d ops; empty loop %.2f ns/op\n", BENCH_RUNS, BENCH_OPS, base);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double ns = median_ns_per_op(cases[i].fn);
        printf("%-44s %8.2f ns/op  (%.1fx empty loop)\n", cases[i].name, ns, ns / base);
    }
    return 0;
}
