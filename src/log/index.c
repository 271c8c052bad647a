// The sparse offset index of a segment (docs/storage.md, "Index file"): 8-byte entries
//
//   offset size field
//        0    4 relative_offset   base offset of a batch minus the segment's base offset
//        4    4 file_pos          position of that batch in the .log file
//
// one per index_interval_bytes of log, strictly increasing in both fields, no header. Position 0
// is implicit. The index is derived data: it is checked on open and rebuilt from the log when
// missing or damaged, and a read never trusts an entry without checking the header it points to.
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

// Entries written per pwrite while rebuilding a closed segment's index.
#define REBUILD_BATCH_ENTRIES 512u

// The in-memory array holds entries exactly as the file does (loaded with one pread).
_Static_assert(sizeof(sl__index_entry) == SL__INDEX_ENTRY_BYTES, "entry has no padding");

static void
entry_decode(const uint8_t *p, sl__index_entry *e)
{
    memcpy(&e->relative_offset, p, 4);
    memcpy(&e->file_pos, p + 4, 4);
}

static void
entry_encode(uint8_t *p, const sl__index_entry *e)
{
    memcpy(p, &e->relative_offset, 4);
    memcpy(p + 4, &e->file_pos, 4);
}

int
sl__index_entry_at(const sl_log_segment *seg, uint32_t i, sl__index_entry *entry_out)
{
    if (seg->index != NULL) {
        SL_ASSERT(i < seg->index_capacity);
        *entry_out = seg->index[i];
        return SL_OK;
    }
    uint8_t raw[SL__INDEX_ENTRY_BYTES];
    int err = sl__pread_full(seg->index_fd, raw, sizeof(raw), (uint64_t)i * SL__INDEX_ENTRY_BYTES);
    if (err != SL_OK) {
        return err == SL_EAGAIN ? SL_ECORRUPT : err;
    }
    entry_decode(raw, entry_out);
    return SL_OK;
}

int
sl__index_lookup(sl_log_segment *seg, uint32_t count, uint64_t offset, uint64_t *pos_out,
                 uint64_t *start_offset_out)
{
    *pos_out = 0;
    *start_offset_out = seg->base_offset;
    uint64_t relative = offset - seg->base_offset;
    // Binary search for the newest entry at or below offset: at most 32 probes.
    uint32_t lo = 0;
    uint32_t hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        sl__index_entry e;
        int err = sl__index_entry_at(seg, mid, &e);
        if (err != SL_OK) {
            return err;
        }
        if (e.relative_offset <= relative) {
            *pos_out = e.file_pos;
            *start_offset_out = seg->base_offset + e.relative_offset;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return SL_OK;
}

static int
index_write_entry(sl_log_segment *seg, uint32_t i, const sl__index_entry *e)
{
    uint8_t raw[SL__INDEX_ENTRY_BYTES];
    entry_encode(raw, e);
    struct iovec iov = {.iov_base = raw, .iov_len = sizeof(raw)};
    return sl__pwritev_full(seg->index_fd, &iov, 1, (uint64_t)i * SL__INDEX_ENTRY_BYTES);
}

void
sl__index_maybe_add(sl_log *log, sl_log_segment *seg, uint64_t batch_offset, uint64_t pos)
{
    SL_ASSERT(seg->index != NULL);
    if (pos <= seg->index_last_pos || pos - seg->index_last_pos < log->cfg.index_interval_bytes) {
        return;
    }
    uint32_t count = seg->index_count; // only the appender changes it
    if (count >= seg->index_capacity) {
        return;
    }
    sl__index_entry e = {.relative_offset = (uint32_t)(batch_offset - seg->base_offset),
                         .file_pos = (uint32_t)pos};
    if (index_write_entry(seg, count, &e) != SL_OK) {
        // A missing entry only lengthens one scan; cut any partial entry off.
        (void)ftruncate(seg->index_fd, (off_t)count * SL__INDEX_ENTRY_BYTES);
        return;
    }
    pthread_mutex_lock(&log->mutex);
    seg->index[count] = e;
    seg->index_count = count + 1;
    pthread_mutex_unlock(&log->mutex);
    seg->index_last_pos = pos;
}

// Rewrites the index by walking batch headers from position 0 up to limit. Entries follow the
// interval rule, as appends make them. Stops quietly at the first bad header (recovery decides).
static int
index_rebuild(sl_log *log, sl_log_segment *seg, uint64_t limit)
{
    if (ftruncate(seg->index_fd, 0) != 0) {
        return SL_EIO;
    }
    uint8_t pending[REBUILD_BATCH_ENTRIES * SL__INDEX_ENTRY_BYTES];
    uint32_t pending_count = 0;
    uint32_t count = 0;
    uint32_t cap = seg->index != NULL ? seg->index_capacity : UINT32_MAX;
    uint64_t last_pos = 0;
    sl__scan *s = sl_alloc(sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    sl__scan_init(s, seg->fd, 0, limit, seg->base_offset, NULL);
    sl_batch_header h;
    // Bounded: every step consumes at least one batch of limit bytes.
    for (uint64_t step = 0; step <= limit / SL__BATCH_BYTES_MIN; step++) {
        uint64_t pos = s->pos;
        uint64_t offset = s->next_offset;
        if (sl__scan_next(s, &h) != SL_OK) {
            break;
        }
        if (pos == 0 || pos - last_pos < log->cfg.index_interval_bytes || count >= cap) {
            continue;
        }
        sl__index_entry e = {.relative_offset = (uint32_t)(offset - seg->base_offset),
                             .file_pos = (uint32_t)pos};
        if (seg->index != NULL) {
            seg->index[count] = e;
        }
        entry_encode(pending + pending_count * SL__INDEX_ENTRY_BYTES, &e);
        pending_count++;
        count++;
        last_pos = pos;
        if (pending_count == REBUILD_BATCH_ENTRIES) {
            struct iovec iov = {.iov_base = pending, .iov_len = sizeof(pending)};
            if (sl__pwritev_full(seg->index_fd, &iov, 1,
                                 (uint64_t)(count - pending_count) * SL__INDEX_ENTRY_BYTES) !=
                SL_OK) {
                sl_free(s, sizeof(*s));
                return SL_EIO;
            }
            pending_count = 0;
        }
    }
    sl_free(s, sizeof(*s));
    struct iovec iov = {.iov_base = pending, .iov_len = pending_count * SL__INDEX_ENTRY_BYTES};
    if (pending_count > 0 &&
        sl__pwritev_full(seg->index_fd, &iov, 1,
                         (uint64_t)(count - pending_count) * SL__INDEX_ENTRY_BYTES) != SL_OK) {
        return SL_EIO;
    }
    seg->index_count = count;
    seg->index_last_pos = last_pos;
    return SL_OK;
}

// Checks entries [0, count): increasing, inside the file. Active segments check all of them
// (they are loaded anyway); closed ones the first and the last (reads check what they use).
static bool
index_plausible(sl_log_segment *seg, uint32_t count, uint64_t file_size)
{
    sl__index_entry prev = {0, 0};
    bool all = seg->index != NULL;
    for (uint32_t i = 0; i < count; i++) {
        if (!all && i != 0 && i != count - 1) {
            i = count - 1;
        }
        sl__index_entry e;
        if (sl__index_entry_at(seg, i, &e) != SL_OK) {
            return false;
        }
        if (e.file_pos == 0 || e.file_pos >= file_size) {
            return false;
        }
        if (i > 0 && (e.file_pos <= prev.file_pos || e.relative_offset <= prev.relative_offset)) {
            return false;
        }
        prev = e;
    }
    return true;
}

int
sl__index_load(sl_log *log, sl_log_segment *seg, uint64_t file_size, bool *rebuilt_out)
{
    *rebuilt_out = false;
    struct stat st;
    if (fstat(seg->index_fd, &st) != 0) {
        return SL_EIO;
    }
    uint64_t index_size = (uint64_t)st.st_size;
    uint64_t count = index_size / SL__INDEX_ENTRY_BYTES;
    bool damaged = seg->index_missing || index_size % SL__INDEX_ENTRY_BYTES != 0 ||
                   count > file_size / SL__BATCH_BYTES_MIN + 1;
    // An empty index beside a log longer than one interval was lost (or never written).
    if (count == 0 && file_size > (uint64_t)log->cfg.index_interval_bytes + SL_BATCH_SIZE_MAX) {
        damaged = true;
    }
    if (!damaged && seg->index != NULL) {
        if (count > seg->index_capacity) {
            damaged = true;
        } else if (count > 0) {
            uint8_t *raw = (uint8_t *)seg->index; // entries are stored as encoded (little-endian)
            int err = sl__pread_full(seg->index_fd, raw, (size_t)count * SL__INDEX_ENTRY_BYTES, 0);
            damaged = err != SL_OK;
        }
    }
    if (!damaged && !index_plausible(seg, (uint32_t)count, file_size)) {
        damaged = true;
    }
    if (!damaged) {
        seg->index_count = (uint32_t)count;
        sl__index_entry last = {0, 0};
        if (count > 0) {
            (void)sl__index_entry_at(seg, (uint32_t)count - 1, &last);
        }
        seg->index_last_pos = last.file_pos;
        return SL_OK;
    }
    *rebuilt_out = true;
    sl__log_message(log, "log %s: segment %020llu: index damaged or missing; rebuilding", log->dir,
                    (unsigned long long)seg->base_offset);
    return index_rebuild(log, seg, file_size);
}

int
sl__index_truncate(sl_log_segment *seg, uint64_t file_size)
{
    uint32_t count = seg->index_count;
    // Bounded by the entry count; entries past the cut are the newest.
    while (count > 0) {
        sl__index_entry e;
        int err = sl__index_entry_at(seg, count - 1, &e);
        if (err != SL_OK) {
            return err;
        }
        if (e.file_pos < file_size) {
            break;
        }
        count--;
    }
    if (ftruncate(seg->index_fd, (off_t)count * SL__INDEX_ENTRY_BYTES) != 0) {
        return SL_EIO;
    }
    seg->index_count = count;
    sl__index_entry last = {0, 0};
    if (count > 0) {
        (void)sl__index_entry_at(seg, count - 1, &last);
    }
    seg->index_last_pos = last.file_pos;
    return SL_OK;
}
