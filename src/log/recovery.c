// Recovery on open: lists the segment files, checks every index (rebuilding a missing or damaged
// one), finds each closed segment's end by a header scan from its last index entry, then scans
// the last segment batch by batch verifying every CRC and truncates it at the first torn or
// corrupt batch. What was cut is reported through sl_log_recovery_report and a message line.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

// Bytes at the end of the last segment whose batches recovery CRC-verifies (all of a segment of
// up to this size). Unsynced data can only sit in the tail; 64 MiB bounds the work per partition.
#define RECOVERY_VERIFY_BYTES (64u * 1024u * 1024u)
// Directory entries read before giving up: segment files, their indexes and some strays.
#define DIR_ENTRIES_MAX (4u * SL_LOG_SEGMENTS_MAX)
// Digits in a segment file name.
#define NAME_DIGITS 20u

// Parses "<20 digits>.<ext>".
static bool
name_parse(const char *name, const char *ext, uint64_t *base_out)
{
    size_t len = strlen(name);
    if (len != NAME_DIGITS + 1 + strlen(ext) || name[NAME_DIGITS] != '.' ||
        strcmp(name + NAME_DIGITS + 1, ext) != 0) {
        return false;
    }
    uint64_t base = 0;
    for (uint32_t i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (base > (UINT64_MAX - digit) / 10) {
            return false;
        }
        base = base * 10 + digit;
    }
    *base_out = base;
    return true;
}

static int
base_compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct base_list {
    uint64_t *bases;
    uint32_t count;
    uint32_t capacity;
} base_list;

static int
base_push(base_list *list, uint64_t base)
{
    if (list->count == list->capacity) {
        if (list->capacity >= SL_LOG_SEGMENTS_MAX) {
            return SL_ETOOBIG;
        }
        uint32_t cap = list->capacity == 0 ? 16 : SL_MIN(list->capacity * 2, SL_LOG_SEGMENTS_MAX);
        uint64_t *bases = sl_calloc(cap, sizeof(uint64_t));
        if (bases == NULL) {
            return SL_ENOMEM;
        }
        if (list->count > 0) {
            memcpy(bases, list->bases, list->count * sizeof(uint64_t));
        }
        sl_free(list->bases, list->capacity * sizeof(uint64_t));
        list->bases = bases;
        list->capacity = cap;
    }
    list->bases[list->count++] = base;
    return SL_OK;
}

// Lists segment bases in order; deletes index files whose log is gone (a crash during deletion).
static int
list_segments(sl_log *log, base_list *list)
{
    int fd = dup(log->dir_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (dir == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return SL_EIO;
    }
    rewinddir(dir);
    int err = SL_OK;
    for (uint32_t i = 0; i < DIR_ENTRIES_MAX && err == SL_OK; i++) {
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            break;
        }
        uint64_t base = 0;
        if (name_parse(entry->d_name, "log", &base)) {
            err = base_push(list, base);
        } else if (name_parse(entry->d_name, "index", &base)) {
            char name[SL__FILE_NAME_MAX];
            sl__segment_name(base, "log", name);
            if (faccessat(log->dir_fd, name, F_OK, 0) != 0 && errno == ENOENT) {
                (void)unlinkat(log->dir_fd, entry->d_name, 0);
            }
        }
    }
    closedir(dir);
    if (err == SL_OK && list->count > 1) {
        qsort(list->bases, list->count, sizeof(uint64_t), base_compare);
    }
    return err;
}

// Scans headers from the segment's last index entry (or 0) to find its end offset and newest
// timestamp. A damaged tail of a closed segment is reported; reads there answer SL_ECORRUPT.
static int
load_closed(sl_log *log, sl_log_segment *seg, sl_log_recovery_report *report)
{
    struct stat st;
    if (fstat(seg->fd, &st) != 0) {
        return SL_EIO;
    }
    uint64_t size = (uint64_t)st.st_size;
    bool rebuilt = false;
    int err = sl__index_load(log, seg, size, &rebuilt);
    if (err != SL_OK) {
        return err;
    }
    report->indexes_rebuilt += rebuilt ? 1 : 0;
    sl__index_entry last = {0, 0};
    if (seg->index_count > 0) {
        (void)sl__index_entry_at(seg, seg->index_count - 1, &last);
    }
    sl__scan scan;
    sl__scan_init(&scan, seg->fd, last.file_pos, size, seg->base_offset + last.relative_offset,
                  NULL);
    sl_batch_header h;
    int64_t max_ts = 0;
    // Bounded: every step passes one batch of a size-byte file; one restart from 0 at most.
    for (uint64_t step = 0; step <= size / SL__BATCH_BYTES_MIN + 1; step++) {
        err = sl__scan_next(&scan, &h);
        if (err == SL_ECORRUPT && scan.pos == last.file_pos && scan.pos != 0) {
            sl__scan_init(&scan, seg->fd, 0, size, seg->base_offset, NULL);
            last.file_pos = 0;
            continue;
        }
        if (err != SL_OK) {
            break;
        }
        max_ts = SL_MAX(max_ts, SL_MAX(h.first_timestamp_us, h.last_timestamp_us));
    }
    if (err != SL_ENOENT) {
        sl__log_message(log,
                        "log %s: segment %020llu is damaged at position %llu (offset %llu): "
                        "reads there fail with SL_ECORRUPT",
                        log->dir, (unsigned long long)seg->base_offset,
                        (unsigned long long)scan.pos, (unsigned long long)scan.next_offset);
    }
    seg->size = size;
    seg->synced_size = size;
    seg->end_offset = scan.next_offset;
    seg->max_timestamp_us = max_ts;
    return SL_OK;
}

// The newest in-memory index entry at least RECOVERY_VERIFY_BYTES before the end (or 0).
static sl__index_entry
verify_start(const sl_log_segment *seg, uint64_t size)
{
    sl__index_entry start = {0, 0};
    for (uint32_t i = seg->index_count; i-- > 0 && size > RECOVERY_VERIFY_BYTES;) {
        if (seg->index[i].file_pos <= size - RECOVERY_VERIFY_BYTES) {
            start = seg->index[i];
            break;
        }
    }
    return start;
}

// Cuts the segment at pos (a torn or corrupt batch there) and records it in the report.
static int
tail_truncate(sl_log *log, sl_log_segment *seg, const sl__scan *scan, uint64_t size,
              sl_log_recovery_report *report)
{
    uint64_t lost_end = scan->next_offset;
    uint8_t hdr[SL_BATCH_HEADER_BYTES];
    sl_batch_header h;
    if (size - scan->pos >= sizeof(hdr) &&
        sl__pread_full(seg->fd, hdr, sizeof(hdr), scan->pos) == SL_OK &&
        sl_batch_header_decode(hdr, sizeof(hdr), &h) != SL_ECORRUPT &&
        h.base_offset == scan->next_offset) {
        lost_end += h.record_count;
    }
    if (ftruncate(seg->fd, (off_t)scan->pos) != 0 || fdatasync(seg->fd) != 0) {
        return SL_EIO;
    }
    int err = sl__index_truncate(seg, scan->pos);
    if (err != SL_OK) {
        return err;
    }
    if (report->truncated_bytes == 0) {
        report->truncated_offset_first = scan->next_offset;
    }
    report->truncated_bytes += size - scan->pos;
    report->truncated_offset_end = SL_MAX(report->truncated_offset_end, lost_end);
    sl__log_message(log,
                    "log %s: recovery truncated segment %020llu at position %llu: %llu bytes, "
                    "offsets %llu..%llu lost (torn or corrupt tail)",
                    log->dir, (unsigned long long)seg->base_offset, (unsigned long long)scan->pos,
                    (unsigned long long)(size - scan->pos), (unsigned long long)scan->next_offset,
                    (unsigned long long)lost_end);
    return SL_OK;
}

// Verifies every batch of the active segment's tail and truncates at the first bad one.
static int
recover_tail(sl_log *log, sl_log_segment *seg, uint8_t *verify_buf, sl_log_recovery_report *report)
{
    struct stat st;
    if (fstat(seg->fd, &st) != 0) {
        return SL_EIO;
    }
    uint64_t size = (uint64_t)st.st_size;
    bool rebuilt = false;
    int err = sl__index_load(log, seg, size, &rebuilt);
    if (err != SL_OK) {
        return err;
    }
    report->indexes_rebuilt += rebuilt ? 1 : 0;
    sl__index_entry start = verify_start(seg, size);
    sl__scan scan;
    sl__scan_init(&scan, seg->fd, start.file_pos, size, seg->base_offset + start.relative_offset,
                  verify_buf);
    sl_batch_header h;
    int64_t max_ts = seg->max_timestamp_us;
    // Bounded: every step passes one batch of a size-byte file; one restart from 0 at most.
    for (uint64_t step = 0; step <= size / SL__BATCH_BYTES_MIN + 1; step++) {
        uint64_t batch_pos = scan.pos;
        uint64_t batch_offset = scan.next_offset;
        err = sl__scan_next(&scan, &h);
        if (err == SL_ECORRUPT && batch_pos == start.file_pos && batch_pos != 0) {
            start.file_pos = 0;
            sl__scan_init(&scan, seg->fd, 0, size, seg->base_offset, verify_buf);
            continue;
        }
        if (err != SL_OK) {
            break;
        }
        sl__index_maybe_add(log, seg, batch_offset, batch_pos);
        max_ts = SL_MAX(max_ts, SL_MAX(h.first_timestamp_us, h.last_timestamp_us));
    }
    if (err == SL_EIO) {
        return err;
    }
    report->segments_scanned++;
    report->scanned_bytes += scan.pos - start.file_pos;
    if (err != SL_ENOENT) {
        err = tail_truncate(log, seg, &scan, size, report);
        if (err != SL_OK) {
            return err;
        }
    }
    seg->size = scan.pos;
    seg->synced_size = scan.pos;
    seg->end_offset = scan.next_offset;
    seg->max_timestamp_us = max_ts;
    return SL_OK;
}

// Drops the active segment when it ended up empty and does not continue the one before it
// (its name is past what survived). Returns true when it was dropped.
static bool
drop_empty_tail(sl_log *log, sl_log_recovery_report *report)
{
    uint32_t count = log->segment_count;
    sl_log_segment *last = log->segments[count - 1];
    if (count < 2 || last->size != 0 || last->base_offset == log->segments[count - 2]->end_offset) {
        return false;
    }
    log->segment_count--;
    char name[SL__FILE_NAME_MAX];
    sl__segment_name(last->base_offset, "log", name);
    (void)unlinkat(log->dir_fd, name, 0);
    sl__segment_name(last->base_offset, "index", name);
    (void)unlinkat(log->dir_fd, name, 0);
    sl__log_message(log, "log %s: removed empty segment %020llu past the end of the log", log->dir,
                    (unsigned long long)last->base_offset);
    sl__segment_unref(log, last);
    report->segments_removed++;
    return true;
}

// Opens every listed segment (closed) and loads all but the last.
static int
load_all(sl_log *log, const base_list *list, bool fresh, sl_log_recovery_report *report)
{
    for (uint32_t i = 0; i < list->count; i++) {
        sl_log_segment *seg = NULL;
        int err = sl__segment_open(log, list->bases[i], fresh, &seg);
        if (err == SL_OK) {
            err = sl__log_segments_push(log, seg);
            if (err != SL_OK) {
                sl__segment_unref(log, seg);
            }
        }
        if (err == SL_OK && i + 1 < list->count) {
            err = load_closed(log, seg, report);
        }
        if (err != SL_OK) {
            return err;
        }
    }
    return SL_OK;
}

static int
recover_segments(sl_log *log, sl_log_recovery_report *report)
{
    int err = sl__log_mem_reserve(log, SL__VERIFY_CHUNK_BYTES);
    if (err != SL_OK) {
        return err;
    }
    uint8_t *verify_buf = sl_alloc(SL__VERIFY_CHUNK_BYTES);
    if (verify_buf == NULL) {
        sl__log_mem_release(log, SL__VERIFY_CHUNK_BYTES);
        return SL_ENOMEM;
    }
    // Bounded by the segment count: each turn verifies the tail or drops one empty segment.
    for (uint32_t turn = 0; turn < SL_LOG_SEGMENTS_MAX && err == SL_OK; turn++) {
        sl_log_segment *last = log->segments[log->segment_count - 1];
        sl__segment_make_closed(log, last); // reloaded below with the active capacity
        err = sl__segment_make_active(log, last);
        if (err == SL_OK) {
            err = recover_tail(log, last, verify_buf, report);
        }
        if (err != SL_OK || !drop_empty_tail(log, report)) {
            break;
        }
    }
    sl_free(verify_buf, SL__VERIFY_CHUNK_BYTES);
    sl__log_mem_release(log, SL__VERIFY_CHUNK_BYTES);
    return err;
}

// Charges existing bytes to the disk budget, checks boundaries, syncs what recovery found.
static int
recovery_finish(sl_log *log, sl_log_recovery_report *report)
{
    bool over_budget = false;
    for (uint32_t i = 0; i < log->segment_count; i++) {
        sl_log_segment *seg = log->segments[i];
        log->size_bytes += seg->size;
        if (log->cfg.disk_budget != NULL && seg->size > 0) {
            bool ok = sl_budget_reserve(log->cfg.disk_budget, seg->size, 0) == SL_OK;
            seg->charged_bytes = ok ? seg->size : 0;
            over_budget |= !ok;
        }
        if (i + 1 < log->segment_count && seg->end_offset != log->segments[i + 1]->base_offset) {
            report->gap_count++;
            sl__log_message(log, "log %s: offsets %llu..%llu are missing between segments",
                            log->dir, (unsigned long long)seg->end_offset,
                            (unsigned long long)log->segments[i + 1]->base_offset);
        }
        // Whatever survived the crash is made durable before it is published as such.
        if (fdatasync(seg->fd) != 0) {
            return SL_EIO;
        }
    }
    if (over_budget) {
        sl__log_message(log,
                        "log %s: existing segments exceed the disk budget; appends answer "
                        "SL_EFULL until retention frees space",
                        log->dir);
    }
    if (fsync(log->dir_fd) != 0) {
        return SL_EIO;
    }
    sl_log_segment *active = log->segments[log->segment_count - 1];
    log->end_offset = active->end_offset;
    log->durable_offset = active->end_offset;
    report->segment_count = log->segment_count;
    report->start_offset = log->segments[0]->base_offset;
    report->end_offset = log->end_offset;
    return SL_OK;
}

int
sl__recovery_run(sl_log *log, sl_log_recovery_report *report)
{
    base_list list = {0};
    int err = list_segments(log, &list);
    bool fresh = err == SL_OK && list.count == 0;
    if (fresh) {
        err = base_push(&list, 0); // a new log starts with an empty segment at offset 0
    }
    if (err == SL_OK) {
        err = load_all(log, &list, fresh, report);
    }
    sl_free(list.bases, list.capacity * sizeof(uint64_t));
    if (err == SL_OK) {
        err = recover_segments(log, report);
    }
    if (err == SL_OK) {
        err = recovery_finish(log, report);
    }
    return err;
}
