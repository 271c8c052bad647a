// Throughput of the pipeline runtime: records/s through gen -> map -> callback sink with every
// stage at parallelism 1 and 2 (forward routes), and the cost of one more stage hop, from 3
// stages against 6 (gen -> 4 identity maps -> sink) in the same run. Every run checks that the
// sink got every record. Prints medians of BENCH_RUNS runs with min-max; --quick for a short run.
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

// Runs per figure (the median is printed); records per run (--quick: a fifth).
#define BENCH_RUNS    5
#define BENCH_RECORDS 1000000u
// Identity maps in the long pipeline (the short one has one).
#define BENCH_LONG_MAPS  4u
#define BENCH_STAGES_MAX 8u

static _Atomic uint64_t g_received;

static int
count_cb(const sl_pipe_record *rec, uint32_t instance, void *user)
{
    (void)rec;
    (void)instance;
    (void)user;
    atomic_fetch_add_explicit(&g_received, 1, memory_order_relaxed);
    return SL_OK;
}

static int
identity(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    (void)state;
    return sl_pipe_emit(ctx, in);
}

static void
check(int err, const char *what)
{
    if (err != SL_OK) {
        fprintf(stderr, "bench_pipeline: %s: %s\n", what, sl_strerror(err));
        exit(1);
    }
}

static int64_t
cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// One run: gen(records) -> maps x identity -> sink, all at parallelism p. Returns records/s
// (0 when a record went missing) and the CPU time of all threads per record.
static double
run_once(uint32_t records, uint32_t maps, uint32_t p, double *cpu_ns_per_record)
{
    sl_pipeline *pl = NULL;
    check(sl_pipeline_new(NULL, &pl), "new");
    char count[32];
    snprintf(count, sizeof(count), "%u", records);
    sl_pipe_option opts[] = {{"count", count}, {"keys", "64"}};
    sl_pipe_endpoint gen = {.uri = "gen:", .options = opts, .option_count = 2};
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.parallelism = p;
    sl_pipe_stage *stages[BENCH_STAGES_MAX];
    uint32_t n = 0;
    check(sl_pipeline_add_source(pl, "gen", sl_pipe_find_source("gen"), &gen, &sc, &stages[n++]),
          "source");
    for (uint32_t i = 0; i < maps; i++) {
        char name[16];
        snprintf(name, sizeof(name), "map%u", i);
        check(sl_pipeline_add_process(pl, name, identity, NULL, &sc, &stages[n++]), "map");
    }
    sl_pipe_callback_sink cb = {.fn = count_cb};
    sl_pipe_endpoint out = {.uri = "callback:", .user = &cb};
    check(sl_pipeline_add_sink(pl, "sink", sl_pipe_find_sink("callback"), &out, &sc, &stages[n++]),
          "sink");
    for (uint32_t i = 0; i + 1 < n; i++) {
        check(sl_pipeline_connect(pl, stages[i], stages[i + 1], SL_ROUTE_FORWARD), "connect");
    }
    atomic_store(&g_received, 0);
    char err[256];
    int64_t t0 = sl_now_ns();
    int64_t c0 = cpu_ns();
    check(sl_pipeline_start(pl, err, sizeof(err)), err);
    check(sl_pipeline_wait(pl, sl_deadline_after_ms(600000)), "wait");
    int64_t elapsed = sl_now_ns() - t0;
    sl_pipeline_free(pl);
    *cpu_ns_per_record = (double)(cpu_ns() - c0) / records;
    if (atomic_load(&g_received) != records) {
        fprintf(stderr, "bench_pipeline: %llu of %u records arrived\n",
                (unsigned long long)atomic_load(&g_received), records);
        return 0.0;
    }
    return (double)records * 1e9 / (double)elapsed;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct figure {
    const char *label;
    uint32_t maps;
    uint32_t parallelism;
    double runs[BENCH_RUNS];
    double cpu[BENCH_RUNS];
} figure;

int
main(int argc, char **argv)
{
    uint32_t records = BENCH_RECORDS;
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        records /= 5;
    }
    figure figs[] = {
        {"3 stages, parallelism 1", 1, 1, {0}, {0}},
        {"3 stages, parallelism 2", 1, 2, {0}, {0}},
        {"6 stages, parallelism 1", BENCH_LONG_MAPS, 1, {0}, {0}},
    };
    size_t fig_count = sizeof(figs) / sizeof(figs[0]);
    // Interleaved: run r of every figure before run r + 1 of any, so a noisy moment hits all.
    for (int r = 0; r < BENCH_RUNS; r++) {
        for (size_t f = 0; f < fig_count; f++) {
            figs[f].runs[r] = run_once(records, figs[f].maps, figs[f].parallelism, &figs[f].cpu[r]);
        }
    }
    printf("records per run: %u, runs: %d (median, min-max)\n\n", records, BENCH_RUNS);
    printf("| pipeline | records/s | wall ns/record | CPU ns/record (all threads) |\n");
    printf("|---|---:|---:|---:|\n");
    double median[3];
    double cpu[3];
    for (size_t f = 0; f < fig_count; f++) {
        qsort(figs[f].runs, BENCH_RUNS, sizeof(double), cmp_double);
        qsort(figs[f].cpu, BENCH_RUNS, sizeof(double), cmp_double);
        median[f] = figs[f].runs[BENCH_RUNS / 2];
        cpu[f] = figs[f].cpu[BENCH_RUNS / 2];
        printf("| %s | %.2fM (%.2f-%.2f) | %.0f | %.0f (%.0f-%.0f) |\n", figs[f].label,
               median[f] / 1e6, figs[f].runs[0] / 1e6, figs[f].runs[BENCH_RUNS - 1] / 1e6,
               median[f] > 0 ? 1e9 / median[f] : 0.0, cpu[f], figs[f].cpu[0],
               figs[f].cpu[BENCH_RUNS - 1]);
    }
    // On a machine with fewer cores than threads, wall time hides the cost of a hop (stages
    // overlap, and idle cores absorb it); CPU time per record does not.
    double extra_hops = (double)(BENCH_LONG_MAPS - 1);
    printf("\nper extra stage hop (6 vs 3 stages, parallelism 1): %.0f CPU ns per record, "
           "%.0f wall ns per record\n",
           (cpu[2] - cpu[0]) / extra_hops, (1e9 / median[2] - 1e9 / median[0]) / extra_hops);
    return 0;
}
