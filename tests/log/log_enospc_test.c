// A real ENOSPC: the log on a small tmpfs mounted by the test (root only; skipped with a message
// otherwise). Appends fill the filesystem until it refuses; the log answers SL_EFULL, stays
// consistent (files hold whole batches only, everything reads back, a reopen truncates nothing)
// and appends again once space returns. The mount is removed in teardown, also after a failure.
// ctest-labels: root
#include "support/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>
#include <sluice/log.h>

#define BATCH_CAP (256u * 1024u)
// Filesystem size: a few segments' worth, small enough to fill in a blink.
#define FS_OPTIONS "size=768k"
// Space held by a filler file and freed to let appends resume.
#define FILLER_BYTES (192u * 1024u)

typedef struct enospc_fixture {
    char mount_dir[256];
    bool mounted;
} enospc_fixture;

static void
quiet(const char *line, void *user)
{
    (void)line;
    (void)user;
}

static int
setup(void **state)
{
    static enospc_fixture fx;
    memset(&fx, 0, sizeof(fx));
    *state = &fx;
    if (geteuid() != 0) {
        return 0;
    }
    sl_test_tmpdir(fx.mount_dir, sizeof(fx.mount_dir));
    fx.mounted = mount("sluice-enospc", fx.mount_dir, "tmpfs", 0, FS_OPTIONS) == 0;
    return 0;
}

static int
teardown(void **state)
{
    enospc_fixture *fx = *state;
    if (fx->mounted) {
        umount2(fx->mount_dir, MNT_DETACH);
        fx->mounted = false;
    }
    if (fx->mount_dir[0] != '\0') {
        rmdir(fx->mount_dir);
    }
    return 0;
}

static size_t
make_batch(uint8_t *buf, uint64_t first, uint32_t count, uint32_t value_size)
{
    uint8_t value[2048];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, BATCH_CAP);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t offset = first + i;
        memcpy(value, &offset, 8);
        memset(value + 8, (int)(offset & 0xff), value_size - 8);
        sl_record r = {.value = value, .value_size = value_size, .timestamp_us = 1};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    }
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    return len;
}

static void
read_all(sl_log *log, uint8_t *buf)
{
    uint64_t next = sl_log_start_offset(log);
    uint64_t end = sl_log_end_offset(log);
    for (int guard = 0; next < end && guard < 100000; guard++) {
        size_t len = 0;
        assert_int_equal(sl_log_read(log, next, 65536, buf, BATCH_CAP, &len), SL_OK);
        size_t pos = 0;
        while (pos < len) {
            sl_batch_header h;
            assert_int_equal(sl_batch_validate(buf + pos, len - pos, &h), SL_OK);
            assert_int_equal(h.base_offset, next);
            next += h.record_count;
            pos += h.length;
        }
    }
    assert_int_equal(next, end);
}

// Sum of the .log file sizes in dir.
static uint64_t
log_bytes_on_disk(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".log") == 0) {
            char path[600];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            struct stat st;
            assert_int_equal(stat(path, &st), 0);
            total += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return total;
}

static int
fill_until_full(sl_log *log, uint8_t *buf, uint32_t *appended_out)
{
    int err = SL_OK;
    uint32_t appended = 0;
    // Bounded: the filesystem is 768 KiB and every batch is at least 1 KiB.
    for (int i = 0; i < 10000 && err == SL_OK; i++) {
        uint32_t count = i % 5 == 4 ? 40 : 3; // some large batches: partial writes happen
        size_t len = make_batch(buf, sl_log_end_offset(log), count, 1000);
        uint64_t base = 0;
        err = sl_log_append(log, buf, len, &base);
        appended += err == SL_OK ? 1 : 0;
    }
    *appended_out = appended;
    return err;
}

static void
test_enospc_is_clean_backpressure_and_recovers(void **state)
{
    enospc_fixture *fx = *state;
    if (geteuid() != 0 || !fx->mounted) {
        print_message("log_enospc_test: skipped: needs root and tmpfs mounts (euid %d)\n",
                      (int)geteuid());
        skip();
    }
    char dir[400];
    char filler[400];
    snprintf(dir, sizeof(dir), "%s/partition", fx->mount_dir);
    snprintf(filler, sizeof(filler), "%s/filler", fx->mount_dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(BATCH_CAP);
    memset(buf, 0x11, FILLER_BYTES);
    assert_true(write(fd, buf, FILLER_BYTES) == (ssize_t)FILLER_BYTES);
    close(fd);

    sl_log_config cfg = {.dir_path = dir,
                         .segment_bytes = 128 * 1024,
                         .fsync_policy = SL_LOG_FSYNC_ALWAYS,
                         .message_cb = quiet};
    sl_log *log = NULL;
    assert_int_equal(sl_log_open(&cfg, &log, NULL), SL_OK);
    uint32_t appended = 0;
    assert_int_equal(fill_until_full(log, buf, &appended), SL_EFULL);
    assert_true(appended > 10);
    sl_log_stats stats;
    sl_log_stats_get(log, &stats);
    assert_true(stats.enospc_total >= 1);
    // Consistent: the files hold exactly the published batches, and all of them read back.
    assert_int_equal(log_bytes_on_disk(dir), stats.size_bytes);
    read_all(log, buf);
    uint64_t end = sl_log_end_offset(log);
    assert_int_equal(sl_log_wait_durable(log, end, sl_deadline_after_ms(30000)), SL_OK);
    // Still full: refused again, nothing changes.
    size_t len = make_batch(buf, end, 40, 1000);
    uint64_t base = 0;
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_EFULL);
    assert_int_equal(sl_log_end_offset(log), end);
    // Space returns: the same append succeeds and offsets continue densely.
    assert_int_equal(unlink(filler), 0);
    assert_int_equal(sl_log_append(log, buf, len, &base), SL_OK);
    assert_int_equal(base, end);
    read_all(log, buf);
    uint32_t more = 0;
    assert_int_equal(fill_until_full(log, buf, &more), SL_EFULL);
    assert_true(more > 0);
    sl_log_close(log);
    // A reopen finds nothing to truncate.
    sl_log_recovery_report report;
    assert_int_equal(sl_log_open(&cfg, &log, &report), SL_OK);
    assert_int_equal(report.truncated_bytes, 0);
    read_all(log, buf);
    sl_log_close(log);
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enospc_is_clean_backpressure_and_recovers, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
