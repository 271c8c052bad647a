// Partition log throughput: append (100-byte records in batches of 1, 100 and 1000, under each
// fsync policy) and read (copying reads and sendfile ranges), each next to the machine's ceiling
// measured the same way in the same run: plain write(2) of the same bytes in the same chunks plus
// fdatasync (per batch where acks wait per batch, once at the end for always, none for interval
// and never), and pread for reads.
// Prints medians of BENCH_RUNS runs as a markdown table. Usage: bench_log [dir] (default $TMPDIR).
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/log.h>

#define BENCH_RUNS         5
#define RECORD_VALUE_BYTES 100u
// Bytes appended per measurement for batched rows, records for batch-of-1 rows, and batches for
// rows that wait for fsync after every batch: bounded so the default run stays under a minute.
#define BATCHED_TOTAL_BYTES  (32u * 1024u * 1024u)
#define SINGLE_TOTAL_RECORDS 50000u
#define WAIT_EACH_BATCHES    200u
#define READ_CHUNK_BYTES     (1u << 20)

typedef enum mode { MODE_ALWAYS, MODE_ALWAYS_WAIT, MODE_INTERVAL, MODE_NEVER } mode;
static const char *const MODE_NAMES[] = {"always (acks trail)", "always (wait each)",
                                         "interval 100 ms", "never"};

typedef struct result {
    double seconds;
    uint64_t records;
    uint64_t bytes;
} result;

static char base_dir[512];

static void
quiet(const char *line, void *user)
{
    (void)line;
    (void)user;
}

static double
now_s(void)
{
    return (double)sl_now_ns() / 1e9;
}

static void
remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static size_t
make_batch(uint8_t *buf, size_t cap, uint32_t count)
{
    uint8_t value[RECORD_VALUE_BYTES];
    memset(value, 'v', sizeof(value));
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    for (uint32_t i = 0; i < count; i++) {
        sl_record r = {.value = value, .value_size = RECORD_VALUE_BYTES, .timestamp_us = 1};
        if (sl_batch_builder_add(&b, &r) != SL_OK) {
            abort();
        }
    }
    size_t len = 0;
    if (sl_batch_builder_finish(&b, &len) != SL_OK) {
        abort();
    }
    return len;
}

static uint64_t
batches_for(mode m, uint32_t batch_records, size_t batch_len)
{
    if (m == MODE_ALWAYS_WAIT) {
        return WAIT_EACH_BATCHES;
    }
    if (batch_records == 1) {
        return SINGLE_TOTAL_RECORDS;
    }
    return BATCHED_TOTAL_BYTES / batch_len;
}

static sl_log *
bench_open(const char *dir, mode m)
{
    sl_log_fsync policy = m == MODE_INTERVAL ? SL_LOG_FSYNC_INTERVAL
                          : m == MODE_NEVER  ? SL_LOG_FSYNC_NEVER
                                             : SL_LOG_FSYNC_ALWAYS;
    sl_log_config cfg = {.dir_path = dir, .fsync_policy = policy, .message_cb = quiet};
    sl_log *log = NULL;
    if (sl_log_open(&cfg, &log, NULL) != SL_OK) {
        fprintf(stderr, "bench_log: cannot open a log in %s\n", dir);
        exit(1);
    }
    return log;
}

// Appends n copies of the batch. For always, the time includes waiting until the last batch is
// durable (and, waiting each, every batch); interval and never end at the last append, as their
// acks do not wait for an fsync (the ceiling then writes without one).
static result
run_append(mode m, uint8_t *batch, size_t len, uint32_t records, uint64_t n, bool keep)
{
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/append", base_dir);
    remove_dir(dir);
    sl_log *log = bench_open(dir, m);
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t base = 0;
        if (sl_log_append(log, batch, len, &base) != SL_OK) {
            fprintf(stderr, "bench_log: append failed\n");
            exit(1);
        }
        if (m == MODE_ALWAYS_WAIT &&
            sl_log_wait_durable(log, base + records, SL_DEADLINE_NEVER) != SL_OK) {
            exit(1);
        }
    }
    uint64_t end = sl_log_end_offset(log);
    if (m == MODE_ALWAYS) {
        if (sl_log_wait_durable(log, end, SL_DEADLINE_NEVER) != SL_OK) {
            exit(1);
        }
    }
    double t1 = now_s();
    sl_log_close(log);
    if (!keep) {
        remove_dir(dir);
    }
    return (result){.seconds = t1 - t0, .records = n * records, .bytes = n * len};
}

// The ceiling: the same bytes in the same chunks with write(2), fdatasync as the mode requires.
static result
run_ceiling(mode m, const uint8_t *batch, size_t len, uint32_t records, uint64_t n)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/ceiling", base_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        exit(1);
    }
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        if (write(fd, batch, len) != (ssize_t)len) {
            exit(1);
        }
        if (m == MODE_ALWAYS_WAIT && fdatasync(fd) != 0) {
            exit(1);
        }
    }
    if (m == MODE_ALWAYS && fdatasync(fd) != 0) {
        exit(1);
    }
    double t1 = now_s();
    close(fd);
    unlink(path);
    return (result){.seconds = t1 - t0, .records = n * records, .bytes = n * len};
}

static int
result_compare(const void *a, const void *b)
{
    double x = ((const result *)a)->seconds;
    double y = ((const result *)b)->seconds;
    return x < y ? -1 : x > y;
}

static result
median(result *runs)
{
    qsort(runs, BENCH_RUNS, sizeof(result), result_compare);
    return runs[BENCH_RUNS / 2];
}

static double
mbps(result r)
{
    return (double)r.bytes / r.seconds / 1e6;
}

static void
bench_appends(uint8_t *batch, size_t cap)
{
    const uint32_t sizes[] = {1, 100, 1000};
    printf("| fsync | batch | records/s | MB/s | ceiling MB/s | ratio |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (int m = MODE_ALWAYS; m <= MODE_NEVER; m++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            size_t len = make_batch(batch, cap, sizes[s]);
            uint64_t n = batches_for((mode)m, sizes[s], len);
            result ours[BENCH_RUNS];
            result ceiling[BENCH_RUNS];
            for (int r = 0; r < BENCH_RUNS; r++) {
                ours[r] = run_append((mode)m, batch, len, sizes[s], n, false);
                ceiling[r] = run_ceiling((mode)m, batch, len, sizes[s], n);
            }
            result o = median(ours);
            result c = median(ceiling);
            printf("| %s | %u | %.0f | %.1f | %.1f | %.2f |\n", MODE_NAMES[m], sizes[s],
                   (double)o.records / o.seconds, mbps(o), mbps(c), mbps(o) / mbps(c));
            fflush(stdout);
        }
    }
}

// Reads the whole log once: copying reads, verified ranges, unverified ranges; ceiling: pread.
static void
bench_reads(uint8_t *batch, size_t cap)
{
    size_t len = make_batch(batch, cap, 100);
    uint64_t n = BATCHED_TOTAL_BYTES / len;
    (void)run_append(MODE_NEVER, batch, len, 100, n, true);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/append", base_dir);
    sl_log *log = bench_open(dir, MODE_NEVER);
    uint8_t *buf = malloc(READ_CHUNK_BYTES + cap);
    const char *names[] = {"sl_log_read (copy, CRC checked)", "sl_log_read_ranges (CRC checked)",
                           "sl_log_read_ranges (no verify)", "ceiling: pread 1 MiB chunks"};
    printf("\n| read | records/s | MB/s | ratio |\n|---|---:|---:|---:|\n");
    double ceiling_mbps = 0;
    result rows[4];
    for (int kind = 3; kind >= 0; kind--) {
        result runs[BENCH_RUNS];
        for (int r = 0; r < BENCH_RUNS; r++) {
            double t0 = now_s();
            uint64_t bytes = 0;
            if (kind == 3) {
                char path[700];
                snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
                int fd = open(path, O_RDONLY);
                ssize_t got;
                while (fd >= 0 && (got = pread(fd, buf, READ_CHUNK_BYTES, (off_t)bytes)) > 0) {
                    bytes += (uint64_t)got;
                }
                close(fd);
            } else {
                uint64_t offset = 0;
                uint64_t end = sl_log_end_offset(log);
                while (offset < end) {
                    if (kind == 0) {
                        size_t got = 0;
                        if (sl_log_read(log, offset, READ_CHUNK_BYTES, buf, READ_CHUNK_BYTES + cap,
                                        &got) != SL_OK) {
                            exit(1);
                        }
                        bytes += got;
                        offset += (got / len) * 100;
                    } else {
                        sl_log_range ranges[4];
                        size_t count = 0;
                        unsigned flags = kind == 2 ? SL_LOG_RANGES_NO_VERIFY : 0;
                        if (sl_log_read_ranges(log, offset, READ_CHUNK_BYTES, flags, ranges, 4,
                                               &count) != SL_OK) {
                            exit(1);
                        }
                        for (size_t i = 0; i < count; i++) {
                            bytes += ranges[i].length;
                            offset = ranges[i].end_offset;
                        }
                        sl_log_ranges_release(log, ranges, count);
                    }
                }
            }
            runs[r] =
                (result){.seconds = now_s() - t0, .records = (bytes / len) * 100, .bytes = bytes};
        }
        rows[kind] = median(runs);
        if (kind == 3) {
            ceiling_mbps = mbps(rows[kind]);
        }
    }
    for (int kind = 0; kind < 4; kind++) {
        printf("| %s | %.0f | %.0f | %.2f |\n", names[kind],
               (double)rows[kind].records / rows[kind].seconds, mbps(rows[kind]),
               mbps(rows[kind]) / ceiling_mbps);
    }
    sl_log_close(log);
    remove_dir(dir);
    free(buf);
}

int
main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : getenv("TMPDIR");
    snprintf(base_dir, sizeof(base_dir), "%s/sluice-bench-log-%d",
             root != NULL && root[0] != '\0' ? root : "/tmp", (int)getpid());
    if (mkdir(base_dir, 0755) != 0) {
        fprintf(stderr, "bench_log: cannot create %s\n", base_dir);
        return 1;
    }
    size_t cap = 1000 * (RECORD_VALUE_BYTES + SL_RECORD_HEADER_BYTES) + SL_BATCH_HEADER_BYTES;
    uint8_t *batch = malloc(cap);
    double t0 = now_s();
    printf("bench_log: %u-byte records, medians of %d runs, data in %s\n\n", RECORD_VALUE_BYTES,
           BENCH_RUNS, root != NULL ? root : "/tmp");
    bench_appends(batch, cap);
    bench_reads(batch, cap);
    printf("\ntotal %.1f s\n", now_s() - t0);
    free(batch);
    rmdir(base_dir);
    return 0;
}
