// Segment files (docs/storage.md): "<20-digit base offset>.log" holds whole record batches back to
// back from position 0, "<base>.index" its sparse index. This file opens, references and frees
// segments, does full-length positional I/O, and walks batches by header (the scanner every read,
// index rebuild and recovery uses), optionally verifying each batch's CRC.
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/crc32c.h"
#include "log/log_internal.h"

// Short writes and EINTRs one positional write tolerates before giving up with SL_EIO: each
// retry makes progress or was interrupted, so this only bounds a pathological filesystem.
#define WRITE_RETRIES_MAX 1000
// iovec entries one pwritev takes (POSIX guarantees at least 16; Linux takes 1024).
#define WRITE_IOV_MAX 1024

void
sl__segment_name(uint64_t base_offset, const char *ext, char *name)
{
    snprintf(name, SL__FILE_NAME_MAX, "%020" PRIu64 ".%s", base_offset, ext);
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
errno_to_status(int errnum)
{
    if (errnum == ENOSPC || errnum == EDQUOT) {
        return SL_ENOSPC;
    }
    if (errnum == ENOMEM) {
        return SL_ENOMEM;
    }
    return SL_EIO;
}

int
sl__segment_open(sl_log *log, uint64_t base_offset, bool create, sl_log_segment **seg_out)
{
    SL_ASSERT(seg_out != NULL);
    int err = sl__log_mem_reserve(log, sizeof(sl_log_segment));
    if (err != SL_OK) {
        return err;
    }
    sl_log_segment *seg = sl_calloc(1, sizeof(*seg));
    if (seg == NULL) {
        sl__log_mem_release(log, sizeof(sl_log_segment));
        return SL_ENOMEM;
    }
    char name[SL__FILE_NAME_MAX];
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
    sl__segment_name(base_offset, "log", name);
    seg->fd = openat(log->dir_fd, name, flags, 0644);
    if (seg->fd < 0) {
        err = errno_to_status(errno);
        goto fail_seg;
    }
    // The index is derived data: a missing one is created here and rebuilt by sl__index_load.
    sl__segment_name(base_offset, "index", name);
    seg->index_fd =
        openat(log->dir_fd, name, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0));
    if (seg->index_fd < 0 && errno == ENOENT) {
        seg->index_missing = true;
        seg->index_fd = openat(log->dir_fd, name, O_RDWR | O_CLOEXEC | O_CREAT, 0644);
    }
    if (seg->index_fd < 0) {
        err = errno_to_status(errno);
        goto fail_fd;
    }
    seg->base_offset = base_offset;
    seg->end_offset = base_offset;
    seg->refs = 1;
    seg->created_ms = wall_ms();
    seg->hint_offset = UINT64_MAX;
    *seg_out = seg;
    return SL_OK;

fail_fd:
    close(seg->fd);
fail_seg:
    sl_free(seg, sizeof(*seg));
    sl__log_mem_release(log, sizeof(sl_log_segment));
    return err;
}

int
sl__segment_make_active(sl_log *log, sl_log_segment *seg)
{
    SL_ASSERT(seg->index == NULL);
    size_t bytes = (size_t)log->index_capacity * sizeof(sl__index_entry);
    int err = sl__log_mem_reserve(log, bytes);
    if (err != SL_OK) {
        return err;
    }
    seg->index = sl_calloc(log->index_capacity, sizeof(sl__index_entry));
    if (seg->index == NULL) {
        sl__log_mem_release(log, bytes);
        return SL_ENOMEM;
    }
    seg->index_capacity = (uint32_t)log->index_capacity;
    return SL_OK;
}

void
sl__segment_make_closed(sl_log *log, sl_log_segment *seg)
{
    if (seg->index == NULL) {
        return;
    }
    sl_free(seg->index, (size_t)seg->index_capacity * sizeof(sl__index_entry));
    sl__log_mem_release(log, (size_t)seg->index_capacity * sizeof(sl__index_entry));
    seg->index = NULL;
    seg->index_capacity = 0;
}

void
sl__segment_unref(sl_log *log, sl_log_segment *seg)
{
    pthread_mutex_lock(&log->mutex);
    SL_ASSERT(seg->refs > 0);
    seg->refs--;
    bool last = seg->refs == 0;
    if (last) {
        sl__segment_make_closed(log, seg);
    }
    pthread_mutex_unlock(&log->mutex);
    if (!last) {
        return;
    }
    close(seg->fd);
    close(seg->index_fd);
    sl_free(seg, sizeof(*seg));
    sl__log_mem_release(log, sizeof(sl_log_segment));
}

int
sl__pread_full(int fd, void *buf, size_t size, uint64_t pos)
{
    uint8_t *p = buf;
    size_t done = 0;
    for (int attempt = 0; done < size && attempt < WRITE_RETRIES_MAX; attempt++) {
        ssize_t n = pread(fd, p + done, size - done, (off_t)(pos + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return SL_EIO;
        }
        if (n == 0) {
            return SL_EAGAIN;
        }
        done += (size_t)n;
    }
    return done == size ? SL_OK : SL_EIO;
}

// Steps iov past n written bytes; returns the new first index.
static int
iov_advance(struct iovec *iov, int first, int count, size_t n)
{
    while (first < count && n >= iov[first].iov_len) {
        n -= iov[first].iov_len;
        first++;
    }
    if (first < count) {
        iov[first].iov_base = (uint8_t *)iov[first].iov_base + n;
        iov[first].iov_len -= n;
    }
    return first;
}

int
sl__pwritev_full(int fd, struct iovec *iov, int iov_count, uint64_t pos)
{
    int first = 0;
    for (int attempt = 0; first < iov_count && attempt < WRITE_RETRIES_MAX; attempt++) {
        if (iov[first].iov_len == 0) {
            first++;
            continue;
        }
        int batch = SL_MIN(iov_count - first, WRITE_IOV_MAX);
        ssize_t n = pwritev(fd, iov + first, batch, (off_t)pos);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno_to_status(errno);
        }
        pos += (uint64_t)n;
        first = iov_advance(iov, first, iov_count, (size_t)n);
    }
    return first == iov_count ? SL_OK : SL_EIO;
}

void
sl__scan_init(sl__scan *s, int fd, uint64_t pos, uint64_t limit, uint64_t next_offset,
              uint8_t *verify_buf)
{
    s->fd = fd;
    s->pos = pos;
    s->limit = limit;
    s->next_offset = next_offset;
    s->verify_buf = verify_buf;
    // Verifying reads whole batches anyway: the larger scratch then serves headers too, so a
    // batch costs one pread however many fit in it.
    s->window = verify_buf != NULL ? verify_buf : s->chunk;
    s->window_cap = verify_buf != NULL ? SL__VERIFY_CHUNK_BYTES : SL__SCAN_CHUNK_BYTES;
    s->window_pos = 0;
    s->window_len = 0;
}

// Makes [pos, pos + size) present in the window, reading ahead from pos when it is not.
static int
scan_fill(sl__scan *s, uint64_t size)
{
    if (s->pos >= s->window_pos && s->pos + size <= s->window_pos + s->window_len) {
        return SL_OK;
    }
    uint64_t want = SL_MIN((uint64_t)s->window_cap, s->limit - s->pos);
    s->window_len = 0;
    int err = sl__pread_full(s->fd, s->window, (size_t)want, s->pos);
    if (err != SL_OK) {
        return err;
    }
    s->window_pos = s->pos;
    s->window_len = (uint32_t)want;
    return size <= want ? SL_OK : SL_EAGAIN;
}

// Verifies the CRC (and, when it fits the scratch, the record framing) of the batch at s->pos.
static int
scan_verify(sl__scan *s, const sl_batch_header *h)
{
    if (h->length <= SL__VERIFY_CHUNK_BYTES) {
        int err = scan_fill(s, h->length);
        if (err != SL_OK) {
            return err;
        }
        sl_batch_header check;
        err = sl_batch_validate(s->window + (s->pos - s->window_pos), h->length, &check);
        return err == SL_OK ? SL_OK : SL_ECORRUPT;
    }
    s->window_len = 0; // the pieces below overwrite the window
    uint32_t crc = 0;
    uint64_t done = 16; // the CRC covers [16, length)
    for (uint32_t step = 0; done < h->length && step <= h->length / SL__VERIFY_CHUNK_BYTES;
         step++) {
        size_t piece = (size_t)SL_MIN((uint64_t)SL__VERIFY_CHUNK_BYTES, h->length - done);
        int err = sl__pread_full(s->fd, s->verify_buf, piece, s->pos + done);
        if (err != SL_OK) {
            return err;
        }
        crc = sl_crc32c(crc, s->verify_buf, piece);
        done += piece;
    }
    return done == h->length && crc == h->crc ? SL_OK : SL_ECORRUPT;
}

int
sl__scan_next(sl__scan *s, sl_batch_header *h)
{
    if (s->pos >= s->limit) {
        return SL_ENOENT;
    }
    if (s->limit - s->pos < SL_BATCH_HEADER_BYTES) {
        return SL_EAGAIN;
    }
    int err = scan_fill(s, SL_BATCH_HEADER_BYTES);
    if (err != SL_OK) {
        return err;
    }
    // Only the header is passed, so a plausible header answers SL_EAGAIN ("need the rest").
    err = sl_batch_header_decode(s->window + (s->pos - s->window_pos), SL_BATCH_HEADER_BYTES, h);
    if (err == SL_ECORRUPT || h->base_offset != s->next_offset) {
        return SL_ECORRUPT;
    }
    if (h->length > s->limit - s->pos) {
        return SL_EAGAIN;
    }
    if (s->verify_buf != NULL) {
        err = scan_verify(s, h);
        if (err != SL_OK) {
            return err;
        }
    }
    s->pos += h->length;
    s->next_offset += h->record_count;
    return SL_OK;
}
