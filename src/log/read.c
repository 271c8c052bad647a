// Reads from the partition log: find the segment holding an offset (table binary search), find the
// batch (one sparse index lookup, or the position where the previous read ended, then one bounded
// header scan), then copy whole CRC-checked batches (sl_log_read) or hand out leased file ranges
// for sendfile (sl_log_read_ranges). Readers run concurrently with the appender and the flusher.
#include <string.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

// Where a read starts: a referenced segment, its published size, and the batch holding the offset.
typedef struct read_start {
    sl_log_segment *seg; // holds a reference
    uint64_t limit;      // published size of seg
    uint64_t seg_end;    // published end offset of seg
    uint64_t pos;        // file position of the batch holding the offset
    sl_batch_header header;
} read_start;

// Index of the segment holding offset: the last with base_offset <= offset (mutex held).
static uint32_t
segment_find(const sl_log *log, uint64_t offset)
{
    uint32_t lo = 0;
    uint32_t hi = log->segment_count;
    // Binary search: at most 17 probes for SL_LOG_SEGMENTS_MAX.
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->segments[mid]->base_offset <= offset) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Walks headers from pos (holding start_offset) to the batch holding offset.
static int
scan_to(read_start *rs, uint64_t pos, uint64_t start_offset, uint64_t offset)
{
    sl__scan scan;
    sl__scan_init(&scan, rs->seg->fd, pos, rs->limit, start_offset, NULL);
    // Bounded: every step passes one batch of a segment of rs->limit bytes.
    for (uint64_t step = 0; step <= rs->limit / SL__BATCH_BYTES_MIN; step++) {
        uint64_t batch_pos = scan.pos;
        int err = sl__scan_next(&scan, &rs->header);
        if (err != SL_OK) {
            return err == SL_EIO ? SL_EIO : SL_ECORRUPT;
        }
        if (scan.next_offset > offset) {
            rs->pos = batch_pos;
            return SL_OK;
        }
    }
    return SL_ECORRUPT;
}

// Finds where a read of offset starts. SL_ENOENT when offset is the end offset (nothing yet).
static int
read_locate(sl_log *log, uint64_t offset, read_start *rs)
{
    pthread_mutex_lock(&log->mutex);
    if (offset < log->segments[0]->base_offset || offset > log->end_offset) {
        pthread_mutex_unlock(&log->mutex);
        return SL_ERANGE;
    }
    if (offset == log->end_offset) {
        pthread_mutex_unlock(&log->mutex);
        return SL_ENOENT;
    }
    sl_log_segment *seg = log->segments[segment_find(log, offset)];
    seg->refs++;
    rs->seg = seg;
    rs->limit = seg->size;
    rs->seg_end = seg->end_offset;
    uint64_t pos = 0;
    uint64_t start_offset = seg->base_offset;
    bool hinted = seg->hint_offset == offset;
    if (hinted) {
        pos = seg->hint_pos;
        start_offset = offset;
    } else if (seg->index != NULL) {
        (void)sl__index_lookup(seg, seg->index_count, offset, &pos, &start_offset);
    }
    uint32_t index_count = seg->index_count;
    bool closed = seg->index == NULL;
    pthread_mutex_unlock(&log->mutex);

    if (offset >= rs->seg_end) {
        return SL_ECORRUPT; // a hole after a damaged closed segment (reported at open)
    }
    if (closed && !hinted) {
        int err = sl__index_lookup(seg, index_count, offset, &pos, &start_offset);
        if (err != SL_OK) {
            pos = 0;
            start_offset = seg->base_offset;
        }
    }
    int err = scan_to(rs, pos, start_offset, offset);
    if (err == SL_ECORRUPT && pos != 0) {
        // The entry (or hint) did not check out: the index is derived data, fall back to a scan.
        err = scan_to(rs, 0, seg->base_offset, offset);
    }
    return err;
}

static void
read_hint(sl_log *log, sl_log_segment *seg, uint64_t offset, uint64_t pos)
{
    pthread_mutex_lock(&log->mutex);
    seg->hint_offset = offset;
    seg->hint_pos = pos;
    pthread_mutex_unlock(&log->mutex);
}

static int
count_corrupt(sl_log *log)
{
    pthread_mutex_lock(&log->mutex);
    log->stats.corrupt_reads++;
    pthread_mutex_unlock(&log->mutex);
    return SL_ECORRUPT;
}

// Keeps the leading whole batches of buf[0..size) that validate and continue the offsets.
static size_t
valid_prefix(const uint8_t *buf, size_t size, uint64_t base_offset, uint64_t *next_offset_out)
{
    size_t used = 0;
    uint64_t next = base_offset;
    // Bounded by size: each step consumes one batch of at least SL__BATCH_BYTES_MIN bytes.
    while (size - used >= SL_BATCH_HEADER_BYTES) {
        sl_batch_header h;
        if (sl_batch_validate(buf + used, size - used, &h) != SL_OK || h.base_offset != next) {
            break;
        }
        used += h.length;
        next += h.record_count;
    }
    *next_offset_out = next;
    return used;
}

int
sl_log_read(sl_log *log, uint64_t offset, size_t max_bytes, void *buf, size_t cap, size_t *len_out)
{
    SL_ASSERT(log != NULL);
    SL_ASSERT(len_out != NULL);
    SL_ASSERT(buf != NULL || cap == 0);
    *len_out = 0;
    read_start rs;
    int err = read_locate(log, offset, &rs);
    if (err == SL_ENOENT || err == SL_ERANGE) {
        return err == SL_ENOENT ? SL_OK : err;
    }
    if (err != SL_OK) {
        if (err == SL_ECORRUPT) {
            count_corrupt(log);
        }
        sl__segment_unref(log, rs.seg);
        return err;
    }
    if (rs.header.length > cap) {
        *len_out = rs.header.length;
        sl__segment_unref(log, rs.seg);
        return SL_ETOOBIG;
    }
    uint64_t want = SL_MIN(rs.limit - rs.pos, (uint64_t)cap);
    want = SL_MIN(want, SL_MAX((uint64_t)max_bytes, (uint64_t)rs.header.length));
    err = sl__pread_full(rs.seg->fd, buf, (size_t)want, rs.pos);
    if (err != SL_OK) {
        sl__segment_unref(log, rs.seg);
        return SL_EIO;
    }
    uint64_t next = 0;
    size_t used = valid_prefix(buf, (size_t)want, rs.header.base_offset, &next);
    if (used == 0) {
        sl__segment_unref(log, rs.seg);
        return count_corrupt(log);
    }
    read_hint(log, rs.seg, next, rs.pos + used);
    sl__segment_unref(log, rs.seg);
    *len_out = used;
    return SL_OK;
}

// Fills one range from rs: whole batches while they fit max_bytes (the first always), each
// CRC-checked when verify_buf is set. Returns the bytes covered (0: the first batch is bad).
static uint64_t
range_fill(read_start *rs, uint64_t max_bytes, uint8_t *verify_buf, sl_log_range *range)
{
    sl__scan scan;
    sl__scan_init(&scan, rs->seg->fd, rs->pos, rs->limit, rs->header.base_offset, verify_buf);
    uint64_t bytes = 0;
    // Bounded: every step passes one batch of a segment of rs->limit bytes.
    for (uint64_t step = 0; step <= rs->limit / SL__BATCH_BYTES_MIN; step++) {
        uint64_t before = scan.pos;
        uint64_t before_offset = scan.next_offset;
        sl_batch_header h;
        if (scan.pos >= rs->limit || sl__scan_next(&scan, &h) != SL_OK) {
            break;
        }
        if (bytes > 0 && bytes + h.length > max_bytes) {
            scan.pos = before;
            scan.next_offset = before_offset;
            break;
        }
        bytes += h.length;
    }
    range->fd = rs->seg->fd;
    range->file_pos = rs->pos;
    range->length = bytes;
    range->base_offset = rs->header.base_offset;
    range->end_offset = scan.next_offset;
    range->lease = rs->seg;
    return bytes;
}

int
sl_log_read_ranges(sl_log *log, uint64_t offset, size_t max_bytes, unsigned flags,
                   sl_log_range *ranges, size_t n, size_t *count_out)
{
    SL_ASSERT(log != NULL);
    SL_ASSERT(count_out != NULL);
    SL_ASSERT(ranges != NULL || n == 0);
    *count_out = 0;
    uint8_t *verify_buf = NULL;
    if ((flags & SL_LOG_RANGES_NO_VERIFY) == 0) {
        int err = sl__log_mem_reserve(log, SL__VERIFY_CHUNK_BYTES);
        if (err != SL_OK) {
            return err;
        }
        verify_buf = sl_alloc(SL__VERIFY_CHUNK_BYTES);
        if (verify_buf == NULL) {
            sl__log_mem_release(log, SL__VERIFY_CHUNK_BYTES);
            return SL_ENOMEM;
        }
    }
    size_t count = 0;
    uint64_t total = 0;
    int err = SL_OK;
    // Bounded by n: each iteration fills one range or stops.
    while (count < n && (count == 0 || total < max_bytes)) {
        read_start rs;
        err = read_locate(log, offset, &rs);
        if (err == SL_ENOENT || (count > 0 && err != SL_OK)) {
            if (err != SL_ENOENT && err != SL_ERANGE) {
                sl__segment_unref(log, rs.seg);
            }
            err = SL_OK;
            break;
        }
        if (err != SL_OK) {
            if (err != SL_ERANGE) {
                sl__segment_unref(log, rs.seg);
            }
            break;
        }
        uint64_t budget = count == 0 ? max_bytes : max_bytes - total;
        uint64_t bytes = range_fill(&rs, budget, verify_buf, &ranges[count]);
        if (bytes == 0) {
            sl__segment_unref(log, rs.seg);
            err = count == 0 ? count_corrupt(log) : SL_OK;
            break;
        }
        total += bytes;
        offset = ranges[count].end_offset;
        bool segment_done = ranges[count].file_pos + bytes == rs.limit;
        count++;
        if (!segment_done) {
            break; // stopped by max_bytes or by a bad batch: the next read reports it
        }
    }
    if (verify_buf != NULL) {
        sl_free(verify_buf, SL__VERIFY_CHUNK_BYTES);
        sl__log_mem_release(log, SL__VERIFY_CHUNK_BYTES);
    }
    if (err == SL_ECORRUPT && count > 0) {
        err = SL_OK;
    }
    if (err != SL_OK) {
        sl_log_ranges_release(log, ranges, count);
        count = 0;
    }
    *count_out = count;
    return err;
}

void
sl_log_ranges_release(sl_log *log, sl_log_range *ranges, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (ranges[i].lease != NULL) {
            sl__segment_unref(log, ranges[i].lease);
            ranges[i].lease = NULL;
        }
    }
}
