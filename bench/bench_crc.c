// CRC32C throughput: the SSE4.2 instruction against the portable slicing-by-8 table, GB/s as the
// median of five runs over buffers of several sizes, with the hardware/portable ratio.
// Usage: bench_crc [total_mib_per_run]   (default 256; keep it short on shared CI)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/defs.h>

#include "log/crc32c.h"

#define RUNS             5u // median of five
#define MIB              (1024.0 * 1024.0)
#define TOTAL_MIB_DEF    256u
#define TOTAL_MIB_MAX    65536u
#define BUFFER_BYTES_MAX (1u << 20)

typedef uint32_t (*crc_fn)(uint32_t crc, const void *data, size_t size);

static volatile uint32_t sink;

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median GB/s (10^9 bytes per second) of RUNS runs, each checksumming total_bytes in buf_size
// pieces.
static double
measure(crc_fn fn, const uint8_t *buf, size_t buf_size, uint64_t total_bytes)
{
    double gbps[RUNS];
    uint64_t rounds = total_bytes / buf_size;
    for (uint32_t run = 0; run < RUNS; run++) {
        uint32_t crc = 0;
        int64_t start = sl_now_ns();
        for (uint64_t i = 0; i < rounds; i++) {
            crc = fn(crc, buf, buf_size);
        }
        int64_t elapsed = sl_now_ns() - start;
        sink ^= crc;
        gbps[run] = (double)(rounds * buf_size) / (double)(elapsed > 0 ? elapsed : 1);
    }
    qsort(gbps, RUNS, sizeof(gbps[0]), cmp_double);
    return gbps[RUNS / 2];
}

int
main(int argc, char **argv)
{
    unsigned long total_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : TOTAL_MIB_DEF;
    if (total_mib == 0 || total_mib > TOTAL_MIB_MAX) {
        fprintf(stderr, "usage: bench_crc [total_mib_per_run 1..%u]\n", TOTAL_MIB_MAX);
        return 2;
    }
    uint8_t *buf = malloc(BUFFER_BYTES_MAX);
    if (buf == NULL) {
        return 1;
    }
    for (size_t i = 0; i < BUFFER_BYTES_MAX; i++) {
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    int hw = sl__crc32c_hw_available();
    printf("crc32c: %lu MiB per run, median of %u runs, GB/s = 10^9 bytes/s; hardware %s\n",
           total_mib, RUNS, hw ? "SSE4.2" : "absent (hw column repeats portable)");
    printf("%10s %12s %12s %8s\n", "buffer", "portable", "hw", "hw/port");
    const size_t sizes[] = {64, 1024, 16384, BUFFER_BYTES_MAX};
    uint64_t total = (uint64_t)total_mib * 1024u * 1024u;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        double port = measure(sl__crc32c_portable, buf, sizes[s], total);
        double fast = measure(hw ? sl__crc32c_hw : sl__crc32c_portable, buf, sizes[s], total);
        printf("%10zu %12.2f %12.2f %7.1fx\n", sizes[s], port, fast, fast / port);
    }
    free(buf);
    return 0;
}
