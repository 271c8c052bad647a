// Crash test: a child process appends with fsync=always and records each acknowledged end offset
// (after sl_log_wait_durable) in a side file; the parent kills it with SIGKILL at a random moment,
// reopens the log, and checks that every acknowledged record is present and intact, offsets are
// dense, and nothing corrupt is returned. 30 rounds; SL_SOAK=1 runs 300.
// ctest-timeout: 300
#include "support/test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/log.h>

#define BATCH_CAP      (256u * 1024u)
#define ROUNDS_DEFAULT 30
#define ROUNDS_SOAK    300
// The log is started afresh every this many rounds so verification stays fast in a soak.
#define ROUNDS_PER_LOG 50
// Longest a child runs if nobody kills it (it should be killed long before).
#define CHILD_SECONDS_MAX 30
// The kill lands 1..KILL_DELAY_US_MAX after the fork (the child's open and recovery included).
#define KILL_DELAY_US_MAX 60000

static void
quiet(const char *line, void *user)
{
    (void)line;
    (void)user;
}

static sl_log_config
crash_config(const char *dir)
{
    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 64 * 1024,
                         .index_interval_bytes = 1024,
                         .fsync_policy = SL_LOG_FSYNC_ALWAYS,
                         .message_cb = quiet};
    return cfg;
}

static size_t
make_batch(uint8_t *buf, uint64_t first, uint32_t count, uint32_t value_size)
{
    uint8_t value[512];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, BATCH_CAP);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t offset = first + i;
        memcpy(value, &offset, 8);
        for (uint32_t j = 8; j < value_size; j++) {
            value[j] = (uint8_t)(offset * 131 + j);
        }
        sl_record r = {.value = value, .value_size = value_size, .timestamp_us = (int64_t)first};
        if (sl_batch_builder_add(&b, &r) != SL_OK) {
            _exit(3);
        }
    }
    size_t len = 0;
    if (sl_batch_builder_finish(&b, &len) != SL_OK) {
        _exit(3);
    }
    return len;
}

// The child: append, wait until durable, record the acknowledged end offset. Never returns.
static void
child_main(const char *dir, const char *side_path, uint64_t seed)
{
    sl_log_config cfg = crash_config(dir);
    sl_log *log = NULL;
    if (sl_log_open(&cfg, &log, NULL) != SL_OK) {
        _exit(2);
    }
    int side = open(side_path, O_WRONLY | O_CREAT, 0644);
    uint8_t *buf = malloc(BATCH_CAP);
    if (side < 0 || buf == NULL) {
        _exit(2);
    }
    int64_t deadline = sl_now_ns() + (int64_t)CHILD_SECONDS_MAX * 1000000000;
    for (uint64_t i = 0; sl_now_ns() < deadline; i++) {
        // One batch in eight is large (up to ~160 KiB), so kills also land inside long writes.
        bool big = sl_test_rand(&seed) % 8 == 0;
        uint32_t count = 1 + (uint32_t)(sl_test_rand(&seed) % (big ? 400 : 8));
        uint32_t value_size = 8 + (uint32_t)(sl_test_rand(&seed) % 400);
        uint64_t end = sl_log_end_offset(log);
        size_t len = make_batch(buf, end, count, value_size);
        uint64_t base = 0;
        if (sl_log_append(log, buf, len, &base) != SL_OK || base != end) {
            _exit(4);
        }
        if (sl_log_wait_durable(log, base + count, SL_DEADLINE_NEVER) != SL_OK) {
            _exit(5);
        }
        uint64_t acked = base + count;
        if (pwrite(side, &acked, sizeof(acked), 0) != (ssize_t)sizeof(acked)) {
            _exit(6);
        }
    }
    _exit(0);
}

static uint64_t
read_acked(const char *side_path)
{
    uint64_t acked = 0;
    int fd = open(side_path, O_RDONLY);
    if (fd >= 0) {
        if (pread(fd, &acked, sizeof(acked), 0) != (ssize_t)sizeof(acked)) {
            acked = 0;
        }
        close(fd);
    }
    return acked;
}

// Reads the whole log: dense offsets from 0, every record's value matching its offset.
static uint64_t
verify_log(sl_log *log, uint8_t *buf)
{
    uint64_t next = sl_log_start_offset(log);
    uint64_t end = sl_log_end_offset(log);
    for (uint64_t guard = 0; next < end && guard < end + 1; guard++) {
        size_t len = 0;
        assert_int_equal(sl_log_read(log, next, 256 * 1024, buf, BATCH_CAP * 2, &len), SL_OK);
        assert_true(len > 0);
        size_t pos = 0;
        while (pos < len) {
            sl_batch_header h;
            assert_int_equal(sl_batch_validate(buf + pos, len - pos, &h), SL_OK);
            assert_int_equal(h.base_offset, next);
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
                    assert_int_equal(v[j], (uint8_t)(offset * 131 + j));
                }
                next = offset + 1;
            }
            assert_int_equal(next, h.base_offset + h.record_count);
            pos += h.length;
        }
    }
    assert_int_equal(next, end);
    return end;
}

static void
test_crash_kill9_keeps_every_acknowledged_record(void **state)
{
    (void)state;
    int rounds = getenv("SL_SOAK") != NULL ? ROUNDS_SOAK : ROUNDS_DEFAULT;
    uint64_t seed = sl_test_seed();
    char dir[256];
    char log_dir[300];
    char side_path[300];
    sl_test_tmpdir(dir, sizeof(dir));
    snprintf(side_path, sizeof(side_path), "%s/acked", dir);
    uint8_t *buf = malloc(BATCH_CAP * 2);
    uint64_t truncated_rounds = 0;
    uint64_t acked_total = 0;
    for (int round = 0; round < rounds; round++) {
        snprintf(log_dir, sizeof(log_dir), "%s/log%d", dir, round / ROUNDS_PER_LOG);
        if (round % ROUNDS_PER_LOG == 0) {
            unlink(side_path);
        }
        uint64_t child_seed = sl_test_rand(&seed);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            child_main(log_dir, side_path, child_seed);
        }
        usleep((useconds_t)(1 + sl_test_rand(&seed) % KILL_DELAY_US_MAX));
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        // The child must have died of the kill, not of a failure of its own.
        assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
        uint64_t acked = read_acked(side_path);
        sl_log_config cfg = crash_config(log_dir);
        sl_log *log = NULL;
        sl_log_recovery_report report;
        int err = sl_log_open(&cfg, &log, &report);
        if (err != SL_OK) {
            fail_msg("round %d: open failed: %s", round, sl_strerror(err));
        }
        truncated_rounds += report.truncated_bytes > 0 ? 1 : 0;
        uint64_t end = verify_log(log, buf);
        if (end < acked) {
            fail_msg("round %d: acknowledged up to %llu but the log ends at %llu", round,
                     (unsigned long long)acked, (unsigned long long)end);
        }
        acked_total = acked;
        sl_log_close(log);
    }
    print_message("crash: %d rounds, %llu with a torn tail truncated, last acked offset %llu\n",
                  rounds, (unsigned long long)truncated_rounds, (unsigned long long)acked_total);
    free(buf);
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_kill9_keeps_every_acknowledged_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
