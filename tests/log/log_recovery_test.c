// Log recovery and corruption injection: a tail cut at every byte of the last batch, every byte of
// it flipped, zero-filled tails, deleted and damaged indexes (rebuilt byte for byte), a corrupt
// batch in a closed segment (SL_ECORRUPT on read, never data), stray empty segments. With
// SL_FUZZ_SEED_DIR set it also writes the seed inputs of fuzz/corpus/segment/.
#include "support/test_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/log.h>

#include "core/util.h"

#define BATCH_CAP (64u * 1024u)
#define FILE_CAP  (1u << 20)

static void
quiet(const char *line, void *user)
{
    (void)line;
    int *lines = user;
    if (lines != NULL) {
        (*lines)++;
    }
}

static size_t
make_batch(uint8_t *buf, size_t cap, uint64_t first, uint32_t count, uint32_t value_size)
{
    uint8_t value[1024];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t offset = first + i;
        memcpy(value, &offset, 8);
        for (uint32_t j = 8; j < value_size; j++) {
            value[j] = (uint8_t)(offset * 31 + j);
        }
        sl_record r = {.value = value, .value_size = value_size, .timestamp_us = 1000};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    }
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    return len;
}

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
        }
        *next += h.record_count;
        pos += h.length;
    }
}

// Reads the whole log and checks offsets are dense from start to end and content matches.
static void
read_all(sl_log *log)
{
    uint8_t *buf = malloc(BATCH_CAP);
    uint64_t next = sl_log_start_offset(log);
    uint64_t end = sl_log_end_offset(log);
    for (int guard = 0; next < end && guard < 100000; guard++) {
        size_t len = 0;
        assert_int_equal(sl_log_read(log, next, 8192, buf, BATCH_CAP, &len), SL_OK);
        assert_true(len > 0);
        check_batches(buf, len, &next);
    }
    assert_int_equal(next, end);
    free(buf);
}

static sl_log *
reopen(const char *dir, uint64_t segment_bytes, sl_log_recovery_report *report, int *lines)
{
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = segment_bytes,
                         .index_interval_bytes = 256,
                         .fsync_policy = SL_LOG_FSYNC_NEVER,
                         .message_cb = quiet,
                         .message_user = lines};
    sl_log *log = NULL;
    assert_int_equal(sl_log_open(&cfg, &log, report), SL_OK);
    return log;
}

// Makes a log of count batches; returns the end offset; *last_len is the last batch's length.
static uint64_t
build_log(const char *dir, uint64_t segment_bytes, uint32_t count, size_t *last_len)
{
    sl_log *log = reopen(dir, segment_bytes, NULL, NULL);
    uint8_t *buf = malloc(BATCH_CAP);
    for (uint32_t i = 0; i < count; i++) {
        size_t len = make_batch(buf, BATCH_CAP, sl_log_end_offset(log), 1 + i % 3, 20 + i % 50);
        uint64_t base = 0;
        assert_int_equal(sl_log_append(log, buf, len, &base), SL_OK);
        *last_len = len;
    }
    uint64_t end = sl_log_end_offset(log);
    sl_log_close(log);
    free(buf);
    return end;
}

static size_t
file_read(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    assert_true(n >= 0);
    close(fd);
    return (size_t)n;
}

static void
file_write(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_true(write(fd, buf, len) == (ssize_t)len);
    close(fd);
}

static void
segment_path(char *out, size_t out_size, const char *dir, uint64_t base, const char *ext)
{
    snprintf(out, out_size, "%s/%020llu.%s", dir, (unsigned long long)base, ext);
}

static void
test_recovery_cut_at_every_byte_of_the_last_batch(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 1 << 20, 40, &last_len);
    uint32_t last_count = 1 + 39 % 3;
    char path[512];
    segment_path(path, sizeof(path), dir, 0, "log");
    uint8_t *orig = malloc(FILE_CAP);
    size_t size = file_read(path, orig, FILE_CAP);
    size_t boundary = size - last_len;
    for (size_t cut = boundary; cut < size; cut++) {
        file_write(path, orig, cut);
        sl_log_recovery_report report;
        int lines = 0;
        sl_log *log = reopen(dir, 1 << 20, &report, &lines);
        assert_int_equal(report.truncated_bytes, cut - boundary);
        assert_int_equal(report.end_offset, end - last_count);
        assert_true(lines >= (cut > boundary ? 1 : 0)); // the cut line (and maybe an index one)
        if (cut > boundary) {
            assert_int_equal(report.truncated_offset_first, end - last_count);
            // Once the header survives, the report knows how many offsets went.
            uint64_t lost_end = cut - boundary >= SL_BATCH_HEADER_BYTES ? end : end - last_count;
            assert_int_equal(report.truncated_offset_end, lost_end);
        }
        read_all(log);
        sl_log_close(log);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((size_t)st.st_size, boundary);
    }
    free(orig);
    sl_test_rmtree(dir);
}

static void
test_recovery_flipped_byte_anywhere_in_the_last_batch(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 1 << 20, 20, &last_len);
    uint32_t last_count = 1 + 19 % 3;
    char path[512];
    segment_path(path, sizeof(path), dir, 0, "log");
    uint8_t *orig = malloc(FILE_CAP);
    uint8_t *copy = malloc(FILE_CAP);
    size_t size = file_read(path, orig, FILE_CAP);
    for (size_t pos = size - last_len; pos < size; pos++) {
        memcpy(copy, orig, size);
        copy[pos] ^= (uint8_t)(1u << (pos % 8));
        file_write(path, copy, size);
        sl_log_recovery_report report;
        sl_log *log = reopen(dir, 1 << 20, &report, NULL);
        assert_int_equal(report.truncated_bytes, last_len);
        assert_int_equal(report.end_offset, end - last_count);
        read_all(log);
        sl_log_close(log);
        file_write(path, orig, size); // the next round starts from the intact log
    }
    free(orig);
    free(copy);
    sl_test_rmtree(dir);
}

static void
test_recovery_zero_filled_tail(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 1 << 20, 30, &last_len);
    char path[512];
    segment_path(path, sizeof(path), dir, 0, "log");
    uint8_t *buf = malloc(FILE_CAP);
    size_t size = file_read(path, buf, FILE_CAP);
    // Zeros past the end (a preallocated or half-written page) and over the last batch's end.
    memset(buf + size, 0, 8192);
    file_write(path, buf, size + 8192);
    sl_log_recovery_report report;
    sl_log *log = reopen(dir, 1 << 20, &report, NULL);
    assert_int_equal(report.truncated_bytes, 8192);
    assert_int_equal(report.end_offset, end);
    read_all(log);
    sl_log_close(log);
    memset(buf + size - 10, 0, 10);
    file_write(path, buf, size);
    log = reopen(dir, 1 << 20, &report, NULL);
    assert_int_equal(report.truncated_bytes, last_len);
    read_all(log);
    // Appending after recovery continues the offsets densely.
    uint8_t *batch = malloc(BATCH_CAP);
    uint64_t next = sl_log_end_offset(log);
    size_t len = make_batch(batch, BATCH_CAP, next, 5, 30);
    uint64_t base = 0;
    assert_int_equal(sl_log_append(log, batch, len, &base), SL_OK);
    assert_int_equal(base, next);
    read_all(log);
    sl_log_close(log);
    free(batch);
    free(buf);
    sl_test_rmtree(dir);
}

// Collects the index files of a multi-segment log, damages them with damage(), reopens, and
// checks that the rebuilt indexes equal the originals byte for byte.
static void
index_damage_round(void (*damage)(const char *path, uint8_t *buf, size_t len))
{
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 4096, 200, &last_len);
    sl_log_recovery_report report;
    sl_log *log = reopen(dir, 4096, &report, NULL);
    uint32_t segments = report.segment_count;
    assert_true(segments > 3);
    uint64_t bases[64];
    assert_true(segments <= 64);
    sl_log_range ranges[64];
    size_t count = 0;
    assert_int_equal(sl_log_read_ranges(log, 0, 1 << 20, 0, ranges, 64, &count), SL_OK);
    assert_int_equal(count, segments);
    for (size_t i = 0; i < count; i++) {
        bases[i] = ranges[i].base_offset;
    }
    sl_log_ranges_release(log, ranges, count);
    sl_log_close(log);
    uint8_t *orig = malloc(FILE_CAP);
    uint8_t *now = malloc(FILE_CAP);
    size_t starts[65] = {0};
    for (uint32_t i = 0; i < segments; i++) {
        char path[512];
        segment_path(path, sizeof(path), dir, bases[i], "index");
        size_t len = file_read(path, orig + starts[i], FILE_CAP / 2 - starts[i]);
        assert_true(i + 1 == segments || len > 0);
        starts[i + 1] = starts[i] + len;
        uint8_t scratch[4096];
        memcpy(scratch, orig + starts[i], len);
        damage(path, scratch, len);
    }
    log = reopen(dir, 4096, &report, NULL);
    assert_int_equal(report.indexes_rebuilt, segments);
    assert_int_equal(report.truncated_bytes, 0);
    assert_int_equal(report.end_offset, end);
    read_all(log);
    sl_log_close(log);
    // Rebuilt indexes follow the same interval rule as appends: identical files.
    for (uint32_t i = 0; i < segments; i++) {
        char path[512];
        segment_path(path, sizeof(path), dir, bases[i], "index");
        size_t len = file_read(path, now, FILE_CAP);
        assert_int_equal(len, starts[i + 1] - starts[i]);
        assert_memory_equal(now, orig + starts[i], len);
    }
    sl_log *again = reopen(dir, 4096, &report, NULL);
    assert_int_equal(report.indexes_rebuilt, 0);
    sl_log_close(again);
    free(orig);
    free(now);
    sl_test_rmtree(dir);
}

static void
damage_delete(const char *path, uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    assert_int_equal(unlink(path), 0);
}

static void
damage_odd_size(const char *path, uint8_t *buf, size_t len)
{
    buf[len] = 0x5a;
    file_write(path, buf, len + 3);
}

static void
damage_out_of_order(const char *path, uint8_t *buf, size_t len)
{
    // Entries pointing past the end of the log, then going backwards.
    uint32_t junk[4] = {5, 0x7fffffff, 1, 300};
    memcpy(buf + len, junk, sizeof(junk));
    file_write(path, buf, len + sizeof(junk));
}

static void
test_recovery_rebuilds_deleted_index(void **state)
{
    (void)state;
    index_damage_round(damage_delete);
}

static void
test_recovery_rebuilds_damaged_index(void **state)
{
    (void)state;
    index_damage_round(damage_odd_size);
    index_damage_round(damage_out_of_order);
}

static void
test_recovery_corrupt_closed_segment_is_never_returned(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 4096, 100, &last_len);
    char path[512];
    segment_path(path, sizeof(path), dir, 0, "log");
    uint8_t *buf = malloc(FILE_CAP);
    size_t size = file_read(path, buf, FILE_CAP);
    // Find the batch at about the middle of the first (closed) segment and flip a payload byte.
    size_t pos = 0;
    uint64_t bad_offset = 0;
    sl_batch_header h;
    for (int i = 0; pos < size / 2; i++) {
        assert_int_equal(sl_batch_header_decode(buf + pos, size - pos, &h), SL_OK);
        pos += h.length;
    }
    assert_int_equal(sl_batch_header_decode(buf + pos, size - pos, &h), SL_OK);
    bad_offset = h.base_offset;
    buf[pos + h.length - 5] ^= 0x40;
    file_write(path, buf, size);
    sl_log_recovery_report report;
    sl_log *log = reopen(dir, 4096, &report, NULL);
    assert_int_equal(report.truncated_bytes, 0); // a closed segment is never cut
    assert_int_equal(report.end_offset, end);
    uint8_t *out = malloc(BATCH_CAP);
    size_t len = 0;
    for (uint64_t o = bad_offset; o < bad_offset + h.record_count; o++) {
        assert_int_equal(sl_log_read(log, o, 1 << 16, out, BATCH_CAP, &len), SL_ECORRUPT);
    }
    // A read starting before it stops just before it; the next batch reads fine.
    assert_int_equal(sl_log_read(log, 0, 1 << 16, out, BATCH_CAP, &len), SL_OK);
    uint64_t next = 0;
    check_batches(out, len, &next);
    assert_int_equal(next, bad_offset);
    assert_int_equal(sl_log_read(log, bad_offset + h.record_count, 1, out, BATCH_CAP, &len), SL_OK);
    sl_log_range ranges[4];
    size_t count = 0;
    assert_int_equal(sl_log_read_ranges(log, bad_offset, 1 << 16, 0, ranges, 4, &count),
                     SL_ECORRUPT);
    assert_int_equal(count, 0);
    assert_int_equal(sl_log_read_ranges(log, 0, 1 << 16, 0, ranges, 4, &count), SL_OK);
    assert_int_equal(count, 1);
    assert_int_equal(ranges[0].end_offset, bad_offset);
    sl_log_ranges_release(log, ranges, count);
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_true(stats.corrupt_reads >= h.record_count + 1);
    sl_log_close(log);
    free(out);
    free(buf);
    sl_test_rmtree(dir);
}

static void
test_recovery_drops_empty_and_garbage_tail_segments(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    uint64_t end = build_log(dir, 4096, 60, &last_len);
    // A segment named past the end, all garbage: cut to nothing, then dropped.
    char path[512];
    segment_path(path, sizeof(path), dir, end + 1000, "log");
    uint8_t junk[300];
    memset(junk, 0xA5, sizeof(junk));
    file_write(path, junk, sizeof(junk));
    // A stray index without its log (a deletion interrupted by a crash) is removed.
    char stray[512];
    segment_path(stray, sizeof(stray), dir, end + 5000, "index");
    file_write(stray, junk, 16);
    sl_log_recovery_report report;
    sl_log *log = reopen(dir, 4096, &report, NULL);
    assert_int_equal(report.truncated_bytes, sizeof(junk));
    assert_int_equal(report.segments_removed, 1);
    assert_int_equal(report.end_offset, end);
    assert_int_equal(report.gap_count, 0);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat(stray, &st), -1);
    read_all(log);
    sl_log_close(log);
    sl_test_rmtree(dir);
}

// Writes the fuzz seeds: [u8 flags][u16 index_len][index][segment] (see fuzz/fuzz_segment.c).
static void
test_write_fuzz_seeds(void **state)
{
    (void)state;
    const char *out = getenv("SL_FUZZ_SEED_DIR");
    if (out == NULL) {
        skip();
    }
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    size_t last_len = 0;
    build_log(dir, 1 << 20, 12, &last_len);
    char path[512];
    segment_path(path, sizeof(path), dir, 0, "log");
    uint8_t *seg = malloc(FILE_CAP);
    uint8_t *seed = malloc(FILE_CAP);
    size_t size = file_read(path, seg, FILE_CAP);
    segment_path(path, sizeof(path), dir, 0, "index");
    uint8_t index[256];
    size_t index_len = file_read(path, index, sizeof(index));
    const char *names[] = {"whole", "whole-index", "torn", "flipped", "zeros"};
    for (int k = 0; k < 5; k++) {
        size_t n = 0;
        seed[n++] = k == 1 ? 1 : 0;
        uint16_t il = k == 1 ? (uint16_t)index_len : 0;
        memcpy(seed + n, &il, 2);
        n += 2;
        memcpy(seed + n, index, il);
        n += il;
        memcpy(seed + n, seg, size);
        size_t body = size;
        if (k == 2) {
            body = size - last_len / 2;
        } else if (k == 3) {
            seed[n + size / 2] ^= 0x10;
        } else if (k == 4) {
            memset(seed + n + size - 100, 0, 100);
        }
        char file[512];
        snprintf(file, sizeof(file), "%s/%s", out, names[k]);
        file_write(file, seed, n + body);
    }
    free(seg);
    free(seed);
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery_cut_at_every_byte_of_the_last_batch),
        cmocka_unit_test(test_recovery_flipped_byte_anywhere_in_the_last_batch),
        cmocka_unit_test(test_recovery_zero_filled_tail),
        cmocka_unit_test(test_recovery_rebuilds_deleted_index),
        cmocka_unit_test(test_recovery_rebuilds_damaged_index),
        cmocka_unit_test(test_recovery_corrupt_closed_segment_is_never_returned),
        cmocka_unit_test(test_recovery_drops_empty_and_garbage_tail_segments),
        cmocka_unit_test(test_write_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
