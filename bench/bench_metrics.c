// Scrape cost of the metrics registry at broker scale: builds a fresh registry the way sluiced
// does for every /metrics request (families registered, then one series per topic, partition and
// stream with a read callback) and encodes it as Prometheus text. 200 topics x 8 partitions by
// default; prints the median build and encode times of several runs. `--quick` makes fewer runs;
// `--topics N --partitions M` changes the shape.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>
#include <sluice/metrics.h>

#include "core/util.h"

#define BENCH_TOPICS_DEFAULT     200u
#define BENCH_PARTITIONS_DEFAULT 8u
#define BENCH_TOPIC_FAMILIES     24u // per-topic families of the broker, roughly
#define BENCH_PART_FAMILIES      12u // per-partition families
#define BENCH_RUNS_FULL          7u
#define BENCH_RUNS_QUICK         3u
#define BENCH_RUNS_MAX           16u
#define BENCH_SERIES_MAX         (1u << 18)
#define BENCH_OUT_BYTES          (32u * 1024u * 1024u)

static double
read_value(void *user)
{
    return (double)(uintptr_t)user;
}

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
add_families(sl_metrics_registry *reg, uint64_t *topic_ids, uint64_t *part_ids)
{
    static const char *const topic_labels[] = {"topic"};
    static const char *const part_labels[] = {"topic", "partition"};
    char name[64];
    for (uint32_t f = 0; f < BENCH_TOPIC_FAMILIES + BENCH_PART_FAMILIES; f++) {
        bool part = f >= BENCH_TOPIC_FAMILIES;
        snprintf(name, sizeof(name), "sluice_bench_family_%u", f);
        sl_metric_family_desc d = {.name = name,
                                   .help = "bench",
                                   .type = SL_METRIC_GAUGE,
                                   .label_names = part ? part_labels : topic_labels,
                                   .label_count = part ? 2 : 1};
        uint64_t *id = part ? &part_ids[f - BENCH_TOPIC_FAMILIES] : &topic_ids[f];
        if (sl_metrics_family_register(reg, &d, id) != SL_OK) {
            return -1;
        }
    }
    return 0;
}

// One scrape's registry: returns the series added, or -1.
static long
build(sl_metrics_registry *reg, uint32_t topics, uint32_t partitions)
{
    uint64_t topic_ids[BENCH_TOPIC_FAMILIES];
    uint64_t part_ids[BENCH_PART_FAMILIES];
    if (add_families(reg, topic_ids, part_ids) != 0) {
        return -1;
    }
    long series = 0;
    char topic[32];
    char index[16];
    for (uint32_t t = 0; t < topics; t++) {
        snprintf(topic, sizeof(topic), "topic-%04u", t);
        const char *tl[] = {topic};
        for (uint32_t f = 0; f < BENCH_TOPIC_FAMILIES; f++) {
            sl_metric_source src = {.read_cb = read_value, .read_user = (void *)(uintptr_t)t};
            uint64_t id = 0;
            if (sl_metrics_series_add(reg, topic_ids[f], tl, &src, &id) != SL_OK) {
                return -1;
            }
            series++;
        }
        for (uint32_t p = 0; p < partitions; p++) {
            snprintf(index, sizeof(index), "%u", p);
            const char *pl[] = {topic, index};
            for (uint32_t f = 0; f < BENCH_PART_FAMILIES; f++) {
                sl_metric_source src = {.read_cb = read_value, .read_user = (void *)(uintptr_t)p};
                uint64_t id = 0;
                if (sl_metrics_series_add(reg, part_ids[f], pl, &src, &id) != SL_OK) {
                    return -1;
                }
                series++;
            }
        }
    }
    return series;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    uint32_t topics = BENCH_TOPICS_DEFAULT;
    uint32_t partitions = BENCH_PARTITIONS_DEFAULT;
    uint32_t runs = BENCH_RUNS_FULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            runs = BENCH_RUNS_QUICK;
        } else if (strcmp(argv[i], "--topics") == 0 && i + 1 < argc) {
            topics = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
            partitions = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: bench_metrics [--quick] [--topics N] [--partitions M]\n");
            return 2;
        }
    }
    char *out = malloc(BENCH_OUT_BYTES);
    if (out == NULL) {
        return 1;
    }
    int64_t build_ns[BENCH_RUNS_MAX];
    int64_t encode_ns[BENCH_RUNS_MAX];
    long series = 0;
    size_t bytes = 0;
    for (uint32_t r = 0; r < runs; r++) {
        sl_metrics_registry_config rc = {.series_max = BENCH_SERIES_MAX};
        sl_metrics_registry *reg = NULL;
        if (sl_metrics_registry_new(&rc, &reg) != SL_OK) {
            return 1;
        }
        int64_t t0 = now_ns();
        series = build(reg, topics, partitions);
        int64_t t1 = now_ns();
        if (series < 0 ||
            sl_metrics_encode_prometheus(reg, t1, out, BENCH_OUT_BYTES, &bytes) != SL_OK) {
            fprintf(stderr, "bench_metrics: build or encode failed\n");
            return 1;
        }
        int64_t t2 = now_ns();
        build_ns[r] = t1 - t0;
        encode_ns[r] = t2 - t1;
        sl_metrics_registry_free(reg);
    }
    qsort(build_ns, runs, sizeof(build_ns[0]), cmp_i64);
    qsort(encode_ns, runs, sizeof(encode_ns[0]), cmp_i64);
    printf("metrics scrape: %u topics x %u partitions, %ld series, %zu bytes of text\n", topics,
           partitions, series, bytes);
    printf("  build (series_add) median %.2f ms, encode median %.2f ms, %u runs\n",
           (double)build_ns[runs / 2] / 1e6, (double)encode_ns[runs / 2] / 1e6, runs);
    free(out);
    return 0;
}
