// Partition log: append and read round trips, index lookups at every offset and boundary, rolls by
// size and age, sendfile ranges and their leases, retention with and without a low watermark,
// disk and memory budget exhaustion, fsync policies and group commit under concurrent use.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/budget.h>
#include <sluice/error.h>
#include <sluice/log.h>

#include "core/util.h"

#define BATCH_CAP (256u * 1024u)

static void
quiet(const char *line, void *user)
{
    (void)line;
    (void)user;
}

// Builds a batch of count records; record i's value starts with its offset (first + i), then a
// pattern derived from it, so any read can check content against position.
static size_t
make_batch(uint8_t *buf, size_t cap, uint64_t first, uint32_t count, uint32_t value_size,
           int64_t ts_us)
{
    uint8_t value[4096];
    assert_true(value_size >= 8 && value_size <= sizeof(value));
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t offset = first + i;
        memcpy(value, &offset, 8);
        for (uint32_t j = 8; j < value_size; j++) {
            value[j] = (uint8_t)(offset * 31 + j);
        }
        sl_record r = {.value = value, .value_size = value_size, .timestamp_us = ts_us};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    }
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    return len;
}

// Checks every batch in buf[0..len): valid, offsets dense from *next, values matching offsets.
static void
check_batches(const uint8_t *buf, size_t len, uint64_t *next)
{
    size_t pos = 0;
    while (pos < len) {
        sl_batch_header h;
        assert_int_equal(sl_batch_validate(buf + pos, len - pos, &h), SL_OK);
        assert_int_equal(h.base_offset, *next);
        sl_batch_iter it;
        assert_int_equal(sl_batch_iter_init(&it, buf + pos, h.length), SL_OK);
        sl_record r;
        uint64_t offset;
        while (sl_batch_iter_next(&it, &r, &offset) == SL_OK) {
            uint64_t stored;
            memcpy(&stored, r.value, 8);
            assert_int_equal(stored, offset);
            const uint8_t *v = r.value;
            for (uint32_t j = 8; j < r.value_size; j++) {
                assert_int_equal(v[j], (uint8_t)(offset * 31 + j));
            }
        }
        *next += h.record_count;
        pos += h.length;
    }
}

static sl_log *
log_open_cfg(sl_log_config *cfg, sl_log_recovery_report *report)
{
    if (cfg->message_cb == NULL) {
        cfg->message_cb = quiet;
    }
    sl_log *log = NULL;
    assert_int_equal(sl_log_open(cfg, &log, report), SL_OK);
    return log;
}

static uint64_t
append_n(sl_log *log, uint8_t *buf, uint32_t count, uint32_t value_size, int64_t ts_us)
{
    uint64_t end = sl_log_end_offset(log);
    size_t len = make_batch(buf, BATCH_CAP, end, count, value_size, ts_us);
    uint64_t base = UINT64_MAX;
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_OK);
    assert_int_equal(base, end);
    assert_int_equal(sl_log_end_offset(log), end + count);
    return base;
}

static uint32_t
count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > strlen(suffix) && strcmp(e->d_name + len - strlen(suffix), suffix) == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

// Reads every offset from the start, one call per offset (max_bytes 1: exactly one batch), and
// checks that the batch returned holds the offset; then reads everything sequentially.
static void
check_every_offset(sl_log *log, uint8_t *buf)
{
    uint64_t start = sl_log_start_offset(log);
    uint64_t end = sl_log_end_offset(log);
    for (uint64_t o = start; o < end; o++) {
        size_t len = 0;
        assert_int_equal(sl_log_read(log, o, 1, buf, BATCH_CAP, &len), SL_OK);
        sl_batch_header h;
        assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
        assert_int_equal(h.length, len);
        assert_true(h.base_offset <= o && o < h.base_offset + h.record_count);
        uint64_t next = h.base_offset;
        check_batches(buf, len, &next);
    }
    uint64_t next = start;
    for (int guard = 0; next < end && guard < 1000000; guard++) {
        size_t len = 0;
        assert_int_equal(sl_log_read(log, next, 64 * 1024, buf, BATCH_CAP, &len), SL_OK);
        assert_true(len > 0);
        check_batches(buf, len, &next);
    }
    assert_int_equal(next, end);
    size_t len = 99;
    assert_int_equal(sl_log_read(log, end, 4096, buf, BATCH_CAP, &len), SL_OK);
    assert_int_equal(len, 0);
    assert_int_equal(sl_log_read(log, end + 1, 4096, buf, BATCH_CAP, &len), SL_ERANGE);
    if (start > 0) {
        assert_int_equal(sl_log_read(log, start - 1, 4096, buf, BATCH_CAP, &len), SL_ERANGE);
    }
}

static void
test_log_append_read_round_trip(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir, .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log_recovery_report report;
    sl_log *log = log_open_cfg(&cfg, &report);
    assert_int_equal(report.end_offset, 0);
    assert_int_equal(report.truncated_bytes, 0);
    for (uint32_t i = 0; i < 60; i++) {
        append_n(log, buf, 1 + i % 7, 8 + (i * 37) % 300, 1000);
    }
    check_every_offset(log, buf);
    // A batch larger than max_bytes still comes back whole; one larger than cap is refused.
    uint64_t big = append_n(log, buf, 40, 1000, 1000);
    size_t len = 0;
    assert_int_equal(sl_log_read(log, big + 39, 10, buf, BATCH_CAP, &len), SL_OK);
    assert_true(len > 40000);
    assert_int_equal(sl_log_read(log, big, 10, buf, 100, &len), SL_ETOOBIG);
    assert_true(len > 40000);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_index_lookup_every_boundary(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    // Tiny segments and a dense index: many entries, many segment boundaries.
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 4096,
                         .index_interval_bytes = 300,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 200; i++) {
        append_n(log, buf, 1 + i % 5, 8 + (i * 13) % 200, 1000);
    }
    assert_true(count_files(dir, ".log") > 5);
    check_every_offset(log, buf); // active segment: in-memory index; closed: index file
    sl_log_close(log);
    sl_log_recovery_report report;
    log = log_open_cfg(&cfg, &report);
    assert_int_equal(report.truncated_bytes, 0);
    assert_int_equal(report.indexes_rebuilt, 0);
    check_every_offset(log, buf); // after reopen
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_roll_by_size_names_by_base_offset(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {
        .dir_path = dir, .segment_bytes = 2048, .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    uint64_t bases[64];
    for (uint32_t i = 0; i < 64; i++) {
        bases[i] = append_n(log, buf, 2, 100, 1000); // 64 + 2 * 128 = 320 bytes
    }
    // 6 batches (1920 bytes) fit 2048: a roll every 6 batches, each file named by its first.
    for (uint32_t i = 0; i < 64; i += 6) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%020llu.log", dir, (unsigned long long)bases[i]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size <= 2048);
        snprintf(path, sizeof(path), "%s/%020llu.index", dir, (unsigned long long)bases[i]);
        assert_int_equal(stat(path, &st), 0);
    }
    assert_int_equal(count_files(dir, ".log"), 11);
    // A batch larger than a segment gets one of its own.
    uint64_t big = append_n(log, buf, 10, 1000, 1000);
    append_n(log, buf, 1, 8, 1000);
    char path[512];
    snprintf(path, sizeof(path), "%s/%020llu.log", dir, (unsigned long long)big);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 2048);
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_int_equal(stats.segment_count, 13);
    assert_int_equal(stats.rolled_total, 12);
    check_every_offset(log, buf);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_roll_by_age(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir, .segment_ms = 30, .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    append_n(log, buf, 1, 8, 1000);
    append_n(log, buf, 1, 8, 1000);
    assert_int_equal(count_files(dir, ".log"), 1);
    usleep(60 * 1000);
    append_n(log, buf, 1, 8, 1000);
    assert_int_equal(count_files(dir, ".log"), 2);
    check_every_offset(log, buf);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_ranges_match_reads_and_hold_leases(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    uint8_t *copy = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .retention_bytes = 1,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 40; i++) {
        append_n(log, buf, 3, 50, 1000);
    }
    uint64_t end = sl_log_end_offset(log);
    sl_log_range ranges[8];
    size_t count = 0;
    // From offset 1 (inside the first batch) across segments, up to 5000 bytes.
    assert_int_equal(sl_log_read_ranges(log, 1, 5000, 0, ranges, 8, &count), SL_OK);
    assert_true(count >= 2);
    uint64_t next = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(ranges[i].base_offset, next);
        assert_true(pread(ranges[i].fd, copy, ranges[i].length, (off_t)ranges[i].file_pos) ==
                    (ssize_t)ranges[i].length);
        check_batches(copy, ranges[i].length, &next);
        assert_int_equal(next, ranges[i].end_offset);
        total += ranges[i].length;
    }
    assert_true(total <= 5000);
    // Retention deletes every closed segment, but the leased files stay readable.
    assert_true(sl_log_retention_run(log, 0) > 0);
    assert_true(sl_log_start_offset(log) > ranges[0].end_offset);
    assert_true(pread(ranges[0].fd, copy, ranges[0].length, (off_t)ranges[0].file_pos) ==
                (ssize_t)ranges[0].length);
    next = 0;
    check_batches(copy, ranges[0].length, &next);
    sl_log_ranges_release(log, ranges, count);
    // Unverified ranges at the end and past it.
    assert_int_equal(sl_log_read_ranges(log, end, 5000, SL_LOG_RANGES_NO_VERIFY, ranges, 8, &count),
                     SL_OK);
    assert_int_equal(count, 0);
    assert_int_equal(sl_log_read_ranges(log, 0, 5000, 0, ranges, 8, &count), SL_ERANGE);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
    free(copy);
}

static void
test_log_retention_by_size_without_watermark(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .retention_bytes = 5000,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 60; i++) {
        append_n(log, buf, 2, 100, 1000);
    }
    int deleted = sl_log_retention_run(log, 0);
    assert_true(deleted > 0);
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_true(stats.size_bytes >= 5000);
    assert_true(stats.size_bytes < 5000 + 2048);
    assert_int_equal(stats.deleted_segments, (uint64_t)deleted);
    assert_int_equal(count_files(dir, ".log"), stats.segment_count);
    assert_int_equal(count_files(dir, ".index"), stats.segment_count);
    check_every_offset(log, buf);
    assert_int_equal(sl_log_retention_run(log, 0), 0); // idempotent
    sl_log_close(log);
    // Reopen: the start offset is the first remaining segment's base.
    log = log_open_cfg(&cfg, NULL);
    assert_int_equal(sl_log_start_offset(log), stats.start_offset);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_retention_never_passes_low_watermark(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .retention_bytes = 1,
                         .retention_ms = 1,
                         .lossless = true,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 60; i++) {
        append_n(log, buf, 2, 100, 1000);
    }
    // No watermark yet: nothing is consumed, nothing goes (even though size and age say so).
    assert_int_equal(sl_log_retention_run(log, INT64_MAX / 2), 0);
    assert_int_equal(sl_log_start_offset(log), 0);
    uint64_t mark = 37;
    sl_log_set_low_watermark(log, mark);
    assert_true(sl_log_retention_run(log, INT64_MAX / 2) > 0);
    uint64_t start = sl_log_start_offset(log);
    assert_true(start > 0 && start <= mark);
    // The segment holding the watermark survives: the offset is still readable.
    size_t len = 0;
    assert_int_equal(sl_log_read(log, mark, 1, buf, BATCH_CAP, &len), SL_OK);
    sl_log_set_low_watermark(log, 5); // never moves back
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_int_equal(stats.low_watermark, mark);
    // Past the end: every closed segment may go, never the active one.
    sl_log_set_low_watermark(log, UINT64_MAX);
    assert_true(sl_log_retention_run(log, INT64_MAX / 2) > 0);
    sl_log_stats_get(log, &stats);
    assert_int_equal(stats.segment_count, 1);
    check_every_offset(log, buf);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_retention_by_age(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .retention_ms = 1000,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 30; i++) {
        append_n(log, buf, 2, 100, 1000000); // t = 1 s
    }
    uint64_t old_end = sl_log_end_offset(log);
    for (uint32_t i = 0; i < 30; i++) {
        append_n(log, buf, 2, 100, 10000000); // t = 10 s
    }
    assert_int_equal(sl_log_retention_run(log, 1500000), 0); // 1.5 s: nothing 1 s old yet
    assert_true(sl_log_retention_run(log, 5000000) > 0);     // 5 s: the first half goes
    uint64_t start = sl_log_start_offset(log);
    assert_true(start > 0 && start <= old_end);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static sl_budget *
budget_make(const char *name, uint64_t bytes, sl_budget *parent)
{
    sl_budget_config cfg = {.name = name, .capacity_bytes = bytes};
    sl_budget *b = NULL;
    assert_int_equal(sl_budget_new(&cfg, parent, &b), SL_OK);
    return b;
}

static void
test_log_disk_budget_full_is_backpressure(void **state)
{
    (void)state;
    char dir[256];
    char dir2[256];
    sl_test_tmpdir(dir, sizeof(dir));
    sl_test_tmpdir(dir2, sizeof(dir2));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_budget *global = budget_make("global", 40000, NULL);
    sl_budget *part = budget_make("part", 20000, global);
    sl_budget *part2 = budget_make("part2", 1 << 20, global);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .lossless = true,
                         .retention_bytes = 1,
                         .disk_budget = part,
                         .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    int err = SL_OK;
    uint32_t appended = 0;
    for (uint32_t i = 0; i < 1000 && err == SL_OK; i++) {
        uint64_t end = sl_log_end_offset(log);
        size_t len = make_batch(buf, BATCH_CAP, end, 2, 100, 1000);
        uint64_t base = 0;
        err = sl_log_append(log, buf, len, &base);
        appended += err == SL_OK ? 1 : 0;
    }
    assert_int_equal(err, SL_EFULL);
    assert_true(appended > 50);
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_int_equal(stats.full_total, 1);
    assert_int_equal(stats.start_offset, 0); // nothing unconsumed was deleted
    sl_budget_stats bs;
    sl_budget_stats_get(part, &bs);
    assert_int_equal(bs.used_bytes, stats.size_bytes);
    // Retention without a watermark frees nothing; with one it frees and appends resume.
    assert_int_equal(sl_log_retention_run(log, 0), 0);
    uint64_t end = sl_log_end_offset(log);
    size_t len = make_batch(buf, BATCH_CAP, end, 2, 100, 1000);
    uint64_t base = 0;
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_EFULL);
    sl_log_set_low_watermark(log, end / 2);
    assert_true(sl_log_retention_run(log, 0) > 0);
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_OK);
    assert_int_equal(base, end);
    check_every_offset(log, buf);
    // The global budget is shared: a second partition fills it and then gets SL_EFULL too.
    sl_log_config cfg2 = cfg;
    cfg2.dir_path = dir2;
    cfg2.disk_budget = part2;
    sl_log *log2 = log_open_cfg(&cfg2, NULL);
    err = SL_OK;
    for (uint32_t i = 0; i < 1000 && err == SL_OK; i++) {
        len = make_batch(buf, BATCH_CAP, sl_log_end_offset(log2), 2, 100, 1000);
        err = sl_log_append(log2, buf, len, &base);
    }
    assert_int_equal(err, SL_EFULL);
    sl_budget_stats_get(global, &bs);
    assert_true(bs.used_bytes > 40000 - 1000);
    sl_log_close(log);
    sl_log_close(log2);
    sl_budget_stats_get(global, &bs);
    assert_int_equal(bs.used_bytes, 0);
    sl_budget_free(part);
    sl_budget_free(part2);
    sl_budget_free(global);
    sl_test_rmtree(dir);
    sl_test_rmtree(dir2);
    free(buf);
}

static void
test_log_memory_is_bounded_by_budget(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    // Too small for the verify scratch recovery needs: open refuses with SL_EFULL.
    sl_budget *tiny = budget_make("tiny", 4096, NULL);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 4096,
                         .memory_budget = tiny,
                         .fsync_policy = SL_LOG_FSYNC_NEVER,
                         .message_cb = quiet};
    sl_log *log = NULL;
    assert_int_equal(sl_log_open(&cfg, &log, NULL), SL_EFULL);
    sl_budget_stats bs;
    sl_budget_stats_get(tiny, &bs);
    assert_int_equal(bs.used_bytes, 0);
    sl_budget_free(tiny);
    sl_budget *mem = budget_make("mem", 256 * 1024, NULL);
    cfg.memory_budget = mem;
    log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 300; i++) {
        append_n(log, buf, 2, 100, 1000);
    }
    sl_budget_stats_get(mem, &bs);
    assert_true(bs.used_bytes > 0);
    assert_true(bs.peak_bytes <= 256 * 1024);
    check_every_offset(log, buf);
    sl_log_range ranges[4];
    size_t count = 0;
    assert_int_equal(sl_log_read_ranges(log, 0, 1 << 20, 0, ranges, 4, &count), SL_OK);
    sl_log_ranges_release(log, ranges, count);
    sl_log_close(log);
    sl_budget_stats_get(mem, &bs);
    assert_int_equal(bs.used_bytes, 0);
    sl_budget_free(mem);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_rejects_bad_batches(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir, .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    size_t len = make_batch(buf, BATCH_CAP, 0, 3, 50, 1000);
    uint64_t base = 0;
    assert_int_equal(sl_log_append(log, buf, len - 1, &base), SL_EINVAL);
    buf[100] ^= 1;
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_ECORRUPT);
    buf[100] ^= 1;
    memset(buf + len, 0, 64);
    assert_int_equal(sl_log_append(log, buf, len + 64, &base), SL_EINVAL);
    struct iovec iov[2] = {{buf, len}, {buf, len - 3}};
    size_t appended = 9;
    assert_int_equal(sl_log_appendv(log, iov, 2, &base, &appended), SL_EINVAL);
    assert_int_equal(appended, 0);
    assert_int_equal(sl_log_end_offset(log), 0);
    sl_log_close(log);
    sl_log_config bad = {.dir_path = dir, .segment_bytes = 10};
    assert_int_equal(sl_log_open(&bad, &log, NULL), SL_EINVAL);
    bad.segment_bytes = 0;
    bad.fsync_policy = (sl_log_fsync)7;
    assert_int_equal(sl_log_open(&bad, &log, NULL), SL_EINVAL);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_appendv_crosses_rolls(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {
        .dir_path = dir, .segment_bytes = 2048, .fsync_policy = SL_LOG_FSYNC_NEVER};
    sl_log *log = log_open_cfg(&cfg, NULL);
    struct iovec iov[20];
    uint64_t next = 0;
    size_t pos = 0;
    for (uint32_t i = 0; i < 20; i++) {
        size_t len = make_batch(buf + pos, BATCH_CAP - pos, next, 1 + i % 3, 100, 1000);
        iov[i].iov_base = buf + pos;
        iov[i].iov_len = len;
        next += 1 + i % 3;
        pos += len;
    }
    uint64_t base = 99;
    size_t appended = 0;
    assert_int_equal(sl_log_appendv(log, iov, 20, &base, &appended), SL_OK);
    assert_int_equal(base, 0);
    assert_int_equal(appended, 20);
    assert_int_equal(sl_log_end_offset(log), next);
    assert_true(count_files(dir, ".log") > 2);
    check_every_offset(log, buf + pos);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

static void
test_log_fsync_policies_publish_durable_offset(void **state)
{
    (void)state;
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_fsync policies[] = {SL_LOG_FSYNC_ALWAYS, SL_LOG_FSYNC_INTERVAL, SL_LOG_FSYNC_NEVER};
    for (size_t p = 0; p < SL_ARRAY_LEN(policies); p++) {
        char dir[256];
        sl_test_tmpdir(dir, sizeof(dir));
        sl_log_config cfg = {.dir_path = dir,
                             .segment_bytes = 4096,
                             .fsync_policy = policies[p],
                             .fsync_interval_ms = 5};
        sl_log *log = log_open_cfg(&cfg, NULL);
        for (uint32_t i = 0; i < 30; i++) {
            append_n(log, buf, 2, 100, 1000);
        }
        uint64_t end = sl_log_end_offset(log);
        int expect = policies[p] == SL_LOG_FSYNC_NEVER ? SL_ETIMEDOUT : SL_OK;
        int64_t wait_ms = policies[p] == SL_LOG_FSYNC_NEVER ? 20 : 30000;
        assert_int_equal(sl_log_wait_durable(log, end, sl_deadline_after_ms(wait_ms)), expect);
        assert_int_equal(sl_log_wait_durable(log, end + 1, SL_DEADLINE_NEVER), SL_ERANGE);
        assert_int_equal(sl_log_flush(log), SL_OK);
        assert_int_equal(sl_log_durable_offset(log), end);
        assert_int_equal(sl_log_wait_durable(log, end, SL_DEADLINE_NOW), SL_OK);
        sl_log_stats stats;
        sl_log_stats_get(log, &stats);
        assert_true(stats.fsync_total >= 1);
        sl_log_close(log);
        sl_test_rmtree(dir);
    }
    free(buf);
}

typedef struct concurrent_ctx {
    sl_log *log;
    _Atomic bool done;
    uint64_t batches;
    _Atomic uint64_t reads;
} concurrent_ctx;

static void *
appender_main(void *arg)
{
    concurrent_ctx *ctx = arg;
    uint8_t *buf = malloc(BATCH_CAP);
    for (uint64_t i = 0; i < ctx->batches; i++) {
        uint64_t end = sl_log_end_offset(ctx->log);
        size_t len = make_batch(buf, BATCH_CAP, end, 1 + i % 4, 100, (int64_t)i);
        uint64_t base = 0;
        assert_int_equal(sl_log_append(ctx->log, buf, len, &base), SL_OK);
        // Every few batches wait for durability, as an acking broker would.
        if (i % 16 == 0) {
            assert_int_equal(
                sl_log_wait_durable(ctx->log, base + 1 + i % 4, sl_deadline_after_ms(60000)),
                SL_OK);
        }
    }
    atomic_store(&ctx->done, true);
    free(buf);
    return NULL;
}

static void *
reader_main(void *arg)
{
    concurrent_ctx *ctx = arg;
    uint8_t *buf = malloc(BATCH_CAP);
    uint64_t next = 0;
    // Bounded by the appender finishing plus one final pass to the end.
    for (int pass = 0; pass < 2;) {
        bool done = atomic_load(&ctx->done);
        uint64_t start = sl_log_start_offset(ctx->log);
        next = SL_MAX(next, start);
        size_t len = 0;
        int err = sl_log_read(ctx->log, next, 8192, buf, BATCH_CAP, &len);
        if (err == SL_ERANGE) {
            continue; // retention passed us between the two calls
        }
        assert_int_equal(err, SL_OK);
        if (len > 0) {
            sl_batch_header h;
            assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
            next = h.base_offset;
            check_batches(buf, len, &next);
            atomic_fetch_add(&ctx->reads, 1);
        } else if (done) {
            pass++;
        } else {
            sched_yield();
        }
    }
    free(buf);
    return NULL;
}

static void
test_log_group_commit_with_concurrent_readers(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 16384,
                         .retention_bytes = 65536,
                         .fsync_policy = SL_LOG_FSYNC_ALWAYS};
    concurrent_ctx ctx = {.log = log_open_cfg(&cfg, NULL), .batches = 2000};
    pthread_t appender;
    pthread_t readers[2];
    assert_int_equal(pthread_create(&appender, NULL, appender_main, &ctx), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&readers[i], NULL, reader_main, &ctx), 0);
    }
    // Retention runs beside them, as the broker's housekeeping would.
    for (int i = 0; i < 1000 && !atomic_load(&ctx.done); i++) {
        int deleted = sl_log_retention_run(ctx.log, 0);
        assert_true(deleted >= 0);
        usleep(1000);
    }
    pthread_join(appender, NULL);
    for (int i = 0; i < 2; i++) {
        pthread_join(readers[i], NULL);
    }
    uint64_t end = sl_log_end_offset(ctx.log);
    assert_int_equal(sl_log_wait_durable(ctx.log, end, sl_deadline_after_ms(60000)), SL_OK);
    sl_log_stats stats;
    sl_log_stats_get(ctx.log, &stats);
    assert_int_equal(stats.appended_batches, 2000);
    assert_true(stats.fsync_total >= 1);
    print_message("group commit: %llu batches, %llu fdatasyncs, %llu reads\n",
                  (unsigned long long)stats.appended_batches, (unsigned long long)stats.fsync_total,
                  (unsigned long long)atomic_load(&ctx.reads));
    sl_log_close(ctx.log);
    sl_test_rmtree(dir);
}

static void
test_log_open_survives_allocation_failures(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    uint8_t *buf = malloc(BATCH_CAP);
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 2048,
                         .fsync_policy = SL_LOG_FSYNC_INTERVAL,
                         .message_cb = quiet};
    sl_log *log = log_open_cfg(&cfg, NULL);
    for (uint32_t i = 0; i < 30; i++) {
        append_n(log, buf, 2, 100, 1000);
    }
    sl_log_close(log);
    int64_t baseline = sl__alloc_bytes_in_use();
    int failures = 0;
    for (int64_t n = 1; n < 200; n++) {
        sl__alloc_fail_after(n);
        int err = sl_log_open(&cfg, &log, NULL);
        sl__alloc_fail_after(0);
        if (err == SL_OK) {
            sl_log_close(log);
            break;
        }
        assert_int_equal(err, SL_ENOMEM);
        assert_int_equal(sl__alloc_bytes_in_use(), baseline);
        failures++;
    }
    assert_true(failures > 3);
    log = log_open_cfg(&cfg, NULL);
    check_every_offset(log, buf);
    sl_log_close(log);
    sl_test_rmtree(dir);
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_read_round_trip),
        cmocka_unit_test(test_log_index_lookup_every_boundary),
        cmocka_unit_test(test_log_roll_by_size_names_by_base_offset),
        cmocka_unit_test(test_log_roll_by_age),
        cmocka_unit_test(test_log_ranges_match_reads_and_hold_leases),
        cmocka_unit_test(test_log_retention_by_size_without_watermark),
        cmocka_unit_test(test_log_retention_never_passes_low_watermark),
        cmocka_unit_test(test_log_retention_by_age),
        cmocka_unit_test(test_log_disk_budget_full_is_backpressure),
        cmocka_unit_test(test_log_memory_is_bounded_by_budget),
        cmocka_unit_test(test_log_rejects_bad_batches),
        cmocka_unit_test(test_log_appendv_crosses_rolls),
        cmocka_unit_test(test_log_fsync_policies_publish_durable_offset),
        cmocka_unit_test(test_log_group_commit_with_concurrent_readers),
        cmocka_unit_test(test_log_open_survives_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
