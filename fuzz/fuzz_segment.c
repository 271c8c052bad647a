// Fuzzes recovery and reads: arbitrary bytes become segment 0 of a log (and optionally its index),
// the log is opened (recovery scans, truncates, rebuilds), then every offset is read with
// sl_log_read and sl_log_read_ranges. Nothing may crash or leak, and whatever comes back as data
// must validate. Input: [u8 flags][u16 index_len][index_len bytes of index][segment bytes];
// flags bit 0: write the index file; bit 1: append one batch after recovery.
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

// Reads per input: bounds the work on inputs that recover to many tiny batches.
#define FUZZ_READS_MAX 4096u
#define FUZZ_BUF_BYTES (1u << 20)

static char fuzz_dir[256];

static void
quiet(const char *line, void *user)
{
    (void)line;
    (void)user;
}

static void
write_file(const char *name, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        abort();
    }
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    close(fd);
}

static void
clear_dir(void)
{
    const char *names[] = {"00000000000000000000.log", "00000000000000000000.index"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir, names[i]);
        unlink(path);
    }
}

static void
read_everything(sl_log *log, uint8_t *buf)
{
    uint64_t start = sl_log_start_offset(log);
    uint64_t end = sl_log_end_offset(log);
    for (uint64_t o = start, n = 0; o < end && n < FUZZ_READS_MAX; o++, n++) {
        size_t len = 0;
        int err = sl_log_read(log, o, 1 << 16, buf, FUZZ_BUF_BYTES, &len);
        if (err != SL_OK) {
            continue;
        }
        // Data handed out must be whole, valid batches holding the offset asked for.
        sl_batch_header h;
        SL_ASSERT(sl_batch_validate(buf, len, &h) == SL_OK);
        SL_ASSERT(h.base_offset <= o && o < h.base_offset + h.record_count);
        sl_log_range ranges[4];
        size_t count = 0;
        if (sl_log_read_ranges(log, o, 1 << 16, 0, ranges, 4, &count) == SL_OK) {
            SL_ASSERT(count > 0 && ranges[0].base_offset <= o);
            sl_log_ranges_release(log, ranges, count);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/sluice-fuzz-segment-%d",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", (int)getpid());
        (void)mkdir(fuzz_dir, 0755);
    }
    if (size < 3) {
        return 0;
    }
    uint8_t flags = data[0];
    uint16_t index_len;
    memcpy(&index_len, data + 1, 2);
    data += 3;
    size -= 3;
    index_len = (uint16_t)SL_MIN((size_t)index_len, size);
    clear_dir();
    if (flags & 1) {
        write_file("00000000000000000000.index", data, index_len);
        data += index_len;
        size -= index_len;
    }
    write_file("00000000000000000000.log", data, size);
    int64_t before = sl__alloc_bytes_in_use();
    sl_log_config cfg = {.dir_path = fuzz_dir,
                         .segment_bytes = 1 << 20,
                         .index_interval_bytes = 128,
                         .fsync_policy = SL_LOG_FSYNC_NEVER,
                         .message_cb = quiet};
    sl_log *log = NULL;
    sl_log_recovery_report report;
    if (sl_log_open(&cfg, &log, &report) != SL_OK) {
        return 0;
    }
    SL_ASSERT(report.end_offset >= report.start_offset);
    uint8_t *buf = malloc(FUZZ_BUF_BYTES);
    read_everything(log, buf);
    if (flags & 2) {
        uint8_t batch[256];
        sl_batch_builder b;
        sl_batch_builder_init(&b, batch, sizeof(batch));
        sl_record r = {.value = "fuzz", .value_size = 4};
        size_t len = 0;
        uint64_t base = 0;
        if (sl_batch_builder_add(&b, &r) == SL_OK && sl_batch_builder_finish(&b, &len) == SL_OK &&
            sl_log_append(log, batch, len, &base) == SL_OK) {
            SL_ASSERT(base == report.end_offset);
            read_everything(log, buf);
        }
    }
    free(buf);
    sl_log_close(log);
    SL_ASSERT(sl__alloc_bytes_in_use() == before);
    return 0;
}
