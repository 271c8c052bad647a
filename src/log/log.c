// The partition log's front door (include/sluice/log.h): open and close, append (validate, assign
// offsets in place, one positional write per group of batches, roll), the segment table, and the
// shared helpers (messages, memory budget). Reads live in read.c, durability in flush.c, opening
// in recovery.c, deletion in retention.c. The on-disk layout is in docs/storage.md.
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

// Batches one sl_log_appendv call takes; a larger call is refused with SL_EINVAL. Also the most
// iovecs one write carries (well under the kernel's IOV_MAX of 1024).
#define APPENDV_BATCHES_MAX 256u
// Initial segment table capacity; it doubles up to SL_LOG_SEGMENTS_MAX.
#define SEGMENT_TABLE_INITIAL 16u

void
sl__log_message(sl_log *log, const char *fmt, ...)
{
    char line[SL__MESSAGE_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log->cfg.message_cb != NULL) {
        log->cfg.message_cb(line, log->cfg.message_user);
    } else {
        fprintf(stderr, "sluice: %s\n", line);
    }
}

int
sl__log_mem_reserve(sl_log *log, size_t bytes)
{
    if (log->cfg.memory_budget == NULL) {
        return SL_OK;
    }
    return sl_budget_reserve(log->cfg.memory_budget, bytes, 0);
}

void
sl__log_mem_release(sl_log *log, size_t bytes)
{
    if (log->cfg.memory_budget != NULL) {
        sl_budget_release(log->cfg.memory_budget, bytes, 0);
    }
}

int
sl__log_segments_push(sl_log *log, sl_log_segment *seg)
{
    if (log->segment_count == log->segment_capacity) {
        if (log->segment_capacity >= SL_LOG_SEGMENTS_MAX) {
            return SL_EFULL;
        }
        uint32_t cap = log->segment_capacity == 0
                           ? SEGMENT_TABLE_INITIAL
                           : SL_MIN(log->segment_capacity * 2, SL_LOG_SEGMENTS_MAX);
        size_t bytes = cap * sizeof(sl_log_segment *);
        int err = sl__log_mem_reserve(log, bytes);
        if (err != SL_OK) {
            return err;
        }
        sl_log_segment **table = sl_calloc(cap, sizeof(sl_log_segment *));
        if (table == NULL) {
            sl__log_mem_release(log, bytes);
            return SL_ENOMEM;
        }
        size_t old_bytes = log->segment_capacity * sizeof(sl_log_segment *);
        if (log->segment_count > 0) {
            memcpy(table, log->segments, log->segment_count * sizeof(sl_log_segment *));
        }
        sl_free(log->segments, old_bytes);
        sl__log_mem_release(log, old_bytes);
        log->segments = table;
        log->segment_capacity = cap;
    }
    SL_ASSERT(log->segment_count == 0 ||
              log->segments[log->segment_count - 1]->base_offset < seg->base_offset);
    log->segments[log->segment_count++] = seg;
    return SL_OK;
}

bool
sl__log_check(const sl_log *log)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < log->segment_count; i++) {
        const sl_log_segment *seg = log->segments[i];
        if (i > 0 && seg->base_offset <= log->segments[i - 1]->base_offset) {
            return false;
        }
        if (seg->refs == 0 || seg->deleted || seg->size < seg->synced_size) {
            return false;
        }
        size += seg->size;
    }
    if (log->segment_count == 0) {
        return false;
    }
    const sl_log_segment *active = log->segments[log->segment_count - 1];
    return active->index != NULL && size == log->size_bytes &&
           active->end_offset == log->end_offset && log->durable_offset <= log->end_offset;
}

static int
config_check(sl_log_config *cfg)
{
    if (cfg->dir_path == NULL || cfg->dir_path[0] == '\0' ||
        strlen(cfg->dir_path) >= PATH_MAX - SL__FILE_NAME_MAX - 1) {
        return SL_EINVAL;
    }
    if (cfg->segment_bytes == 0) {
        cfg->segment_bytes = SL_LOG_SEGMENT_BYTES_DEFAULT;
    }
    if (cfg->index_interval_bytes == 0) {
        cfg->index_interval_bytes =
            (uint32_t)SL_MIN(cfg->segment_bytes, (uint64_t)SL_LOG_INDEX_INTERVAL_BYTES_DEFAULT);
    }
    if (cfg->fsync_interval_ms == 0) {
        cfg->fsync_interval_ms = SL_LOG_FSYNC_INTERVAL_MS_DEFAULT;
    }
    bool bad = cfg->segment_bytes < SL_LOG_SEGMENT_BYTES_MIN ||
               cfg->segment_bytes > SL_LOG_SEGMENT_BYTES_MAX ||
               cfg->index_interval_bytes > cfg->segment_bytes || cfg->segment_ms < 0 ||
               cfg->retention_ms < 0 || (unsigned)cfg->fsync_policy > SL_LOG_FSYNC_NEVER;
    return bad ? SL_EINVAL : SL_OK;
}

static void
log_free(sl_log *log)
{
    for (uint32_t i = log->segment_count; i-- > 0;) {
        sl_log_segment *seg = log->segments[i];
        pthread_mutex_lock(&log->mutex);
        SL_ASSERT(seg->refs == 1); // every read lease was released
        pthread_mutex_unlock(&log->mutex);
        if (log->cfg.disk_budget != NULL && seg->charged_bytes > 0) {
            sl_budget_release(log->cfg.disk_budget, seg->charged_bytes, 0);
        }
        sl__segment_unref(log, seg);
    }
    size_t table_bytes = log->segment_capacity * sizeof(sl_log_segment *);
    sl_free(log->segments, table_bytes);
    sl__log_mem_release(log, table_bytes);
    if (log->dir_fd >= 0) {
        close(log->dir_fd);
    }
    pthread_cond_destroy(&log->durable_cond);
    pthread_cond_destroy(&log->flush_cond);
    pthread_mutex_destroy(&log->mutex);
    pthread_mutex_destroy(&log->append_mutex);
    sl_free(log, sizeof(*log));
}

static sl_log *
log_alloc(const sl_log_config *cfg)
{
    sl_log *log = sl_calloc(1, sizeof(*log));
    if (log == NULL) {
        return NULL;
    }
    log->cfg = *cfg;
    sl__strlcpy(log->dir, cfg->dir_path, sizeof(log->dir));
    log->cfg.dir_path = log->dir;
    log->dir_fd = -1;
    uint64_t spacing = SL_MAX((uint64_t)cfg->index_interval_bytes, (uint64_t)SL__BATCH_BYTES_MIN);
    log->index_capacity = cfg->segment_bytes / spacing + 1;
    pthread_mutex_init(&log->mutex, NULL);
    pthread_mutex_init(&log->append_mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&log->flush_cond, &attr);
    pthread_cond_init(&log->durable_cond, &attr);
    pthread_condattr_destroy(&attr);
    return log;
}

int
sl_log_open(const sl_log_config *config, sl_log **log_out, sl_log_recovery_report *report_out)
{
    SL_ASSERT(config != NULL);
    SL_ASSERT(log_out != NULL);
    sl_log_config cfg = *config;
    int err = config_check(&cfg);
    if (err != SL_OK) {
        return err;
    }
    if (mkdir(cfg.dir_path, 0755) != 0 && errno != EEXIST) {
        return sl_from_errno(errno);
    }
    sl_log *log = log_alloc(&cfg);
    if (log == NULL) {
        return SL_ENOMEM;
    }
    log->dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        err = sl_from_errno(errno);
        log_free(log);
        return err;
    }
    sl_log_recovery_report report;
    memset(&report, 0, sizeof(report));
    err = sl__recovery_run(log, &report);
    if (err == SL_OK) {
        err = sl__flush_start(log);
    }
    if (err != SL_OK) {
        log_free(log);
        return err;
    }
    SL_DEBUG_ASSERT(sl__log_check(log));
    if (report_out != NULL) {
        *report_out = report;
    }
    *log_out = log;
    return SL_OK;
}

void
sl_log_close(sl_log *log)
{
    if (log == NULL) {
        return;
    }
    sl__flush_stop(log);
    if (log->cfg.fsync_policy != SL_LOG_FSYNC_NEVER) {
        (void)sl__flush_pass(log);
    }
    pthread_mutex_lock(&log->mutex);
    log->closing = true;
    pthread_cond_broadcast(&log->durable_cond);
    pthread_mutex_unlock(&log->mutex);
    log_free(log);
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Starts a new active segment at the end offset (append mutex held).
static int
log_roll(sl_log *log)
{
    sl_log_segment *old = log->segments[log->segment_count - 1];
    sl_log_segment *seg = NULL;
    int err = sl__segment_open(log, log->end_offset, true, &seg);
    if (err == SL_OK) {
        err = sl__segment_make_active(log, seg);
        if (err != SL_OK) {
            sl__segment_unref(log, seg);
        }
    }
    if (err != SL_OK) {
        return err;
    }
    pthread_mutex_lock(&log->mutex);
    err = sl__log_segments_push(log, seg);
    if (err == SL_OK) {
        sl__segment_make_closed(log, old);
        log->dir_dirty = true;
        log->stats.rolled_total++;
    }
    pthread_mutex_unlock(&log->mutex);
    if (err != SL_OK) {
        char name[SL__FILE_NAME_MAX];
        sl__segment_name(seg->base_offset, "log", name);
        (void)unlinkat(log->dir_fd, name, 0);
        sl__segment_name(seg->base_offset, "index", name);
        (void)unlinkat(log->dir_fd, name, 0);
        sl__segment_unref(log, seg);
    }
    return err;
}

static bool
roll_due(const sl_log *log, const sl_log_segment *active, uint64_t len)
{
    if (active->size == 0) {
        return false;
    }
    if (active->size + len > log->cfg.segment_bytes) {
        return true;
    }
    return log->cfg.segment_ms > 0 && wall_ms() - active->created_ms >= log->cfg.segment_ms;
}

// Picks how many batches from the first fit the active segment in one write.
static size_t
group_size(const sl_log *log, const sl_log_segment *active, const struct iovec *batches,
           size_t count, uint64_t *bytes_out)
{
    uint64_t bytes = batches[0].iov_len;
    size_t n = 1;
    while (n < count && active->size + bytes + batches[n].iov_len <= log->cfg.segment_bytes) {
        bytes += batches[n].iov_len;
        n++;
    }
    *bytes_out = bytes;
    return n;
}

// Writes n batches (already validated) at the end of the active segment and publishes them.
static int
append_group(sl_log *log, const struct iovec *batches, size_t n, uint64_t bytes)
{
    sl_log_segment *seg = log->segments[log->segment_count - 1];
    struct iovec iov[APPENDV_BATCHES_MAX];
    uint64_t offset = log->end_offset;
    int64_t max_ts = seg->max_timestamp_us;
    for (size_t i = 0; i < n; i++) {
        sl_batch_header h;
        int err = sl_batch_header_decode(batches[i].iov_base, batches[i].iov_len, &h);
        SL_ASSERT(err == SL_OK); // validated by the caller
        sl_batch_set_base_offset(batches[i].iov_base, offset);
        offset += h.record_count;
        max_ts = SL_MAX(max_ts, SL_MAX(h.first_timestamp_us, h.last_timestamp_us));
        iov[i] = batches[i];
    }
    uint64_t pos = seg->size;
    int err = sl__pwritev_full(seg->fd, iov, (int)n, pos);
    if (err != SL_OK) {
        // Cut the partial write off so the file ends at the last whole batch again.
        if (ftruncate(seg->fd, (off_t)pos) != 0) {
            pthread_mutex_lock(&log->mutex);
            log->failed = SL_EIO;
            pthread_mutex_unlock(&log->mutex);
            sl__log_message(log, "log %s: cannot truncate a failed write: %s", log->dir,
                            strerror(errno));
            return SL_EIO;
        }
        return err;
    }
    uint64_t batch_offset = log->end_offset;
    uint64_t batch_pos = pos;
    for (size_t i = 0; i < n; i++) {
        sl__index_maybe_add(log, seg, batch_offset, batch_pos);
        sl_batch_header h;
        int decoded = sl_batch_header_decode(batches[i].iov_base, batches[i].iov_len, &h);
        SL_ASSERT(decoded == SL_OK);
        batch_offset += h.record_count;
        batch_pos += batches[i].iov_len;
    }
    pthread_mutex_lock(&log->mutex);
    seg->size = pos + bytes;
    seg->end_offset = offset;
    seg->max_timestamp_us = max_ts;
    seg->charged_bytes += log->cfg.disk_budget != NULL ? bytes : 0;
    log->end_offset = offset;
    log->size_bytes += bytes;
    log->stats.appended_batches += n;
    log->stats.appended_bytes += bytes;
    sl__flush_notify(log);
    SL_DEBUG_ASSERT(sl__log_check(log));
    pthread_mutex_unlock(&log->mutex);
    return SL_OK;
}

static int
validate_all(const struct iovec *batches, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        sl_batch_header h;
        if (batches[i].iov_base == NULL) {
            return SL_EINVAL;
        }
        int err = sl_batch_validate(batches[i].iov_base, batches[i].iov_len, &h);
        if (err != SL_OK) {
            return err == SL_EAGAIN ? SL_EINVAL : err;
        }
        if (h.length != batches[i].iov_len) {
            return SL_EINVAL;
        }
    }
    return SL_OK;
}

static int
count_full(sl_log *log, bool enospc)
{
    pthread_mutex_lock(&log->mutex);
    log->stats.full_total++;
    log->stats.enospc_total += enospc ? 1 : 0;
    pthread_mutex_unlock(&log->mutex);
    return SL_EFULL;
}

// Appends batches[0..count) under the append mutex; *appended_out counts those written.
static int
appendv_locked(sl_log *log, const struct iovec *batches, size_t count, size_t *appended_out)
{
    size_t done = 0;
    int err = SL_OK;
    // Bounded by count: every iteration appends at least one batch or stops.
    while (done < count && err == SL_OK) {
        pthread_mutex_lock(&log->mutex);
        err = log->failed;
        pthread_mutex_unlock(&log->mutex);
        if (err != SL_OK) {
            break;
        }
        sl_log_segment *active = log->segments[log->segment_count - 1];
        if (roll_due(log, active, batches[done].iov_len)) {
            err = log_roll(log);
            err = err == SL_ENOSPC ? count_full(log, true) : err;
            continue;
        }
        uint64_t bytes = 0;
        size_t n = group_size(log, active, batches + done, count - done, &bytes);
        sl_budget *disk = log->cfg.disk_budget;
        int room = disk != NULL ? sl_budget_reserve(disk, bytes, 0) : SL_OK;
        if (room != SL_OK && n > 1) {
            // The whole group does not fit: try the first batch alone before refusing.
            n = 1;
            bytes = batches[done].iov_len;
            room = sl_budget_reserve(disk, bytes, 0);
        }
        if (room != SL_OK) {
            err = count_full(log, false);
            break;
        }
        err = append_group(log, batches + done, n, bytes);
        if (err != SL_OK && log->cfg.disk_budget != NULL) {
            sl_budget_release(log->cfg.disk_budget, bytes, 0);
        }
        if (err == SL_ENOSPC) {
            sl__log_message(log, "log %s: no space left on device; append refused", log->dir);
            err = count_full(log, true);
        }
        done += err == SL_OK ? n : 0;
    }
    *appended_out = done;
    return err;
}

int
sl_log_appendv(sl_log *log, const struct iovec *batches, size_t count, uint64_t *base_offset_out,
               size_t *appended_out)
{
    SL_ASSERT(log != NULL);
    SL_ASSERT(batches != NULL || count == 0);
    if (appended_out != NULL) {
        *appended_out = 0;
    }
    if (count == 0 || count > APPENDV_BATCHES_MAX) {
        return SL_EINVAL;
    }
    int err = validate_all(batches, count);
    if (err != SL_OK) {
        return err;
    }
    pthread_mutex_lock(&log->append_mutex);
    uint64_t base = log->end_offset;
    size_t appended = 0;
    err = appendv_locked(log, batches, count, &appended);
    pthread_mutex_unlock(&log->append_mutex);
    if (base_offset_out != NULL && appended > 0) {
        *base_offset_out = base;
    }
    if (appended_out != NULL) {
        *appended_out = appended;
    }
    return err;
}

int
sl_log_append(sl_log *log, void *batch, size_t len, uint64_t *base_offset_out)
{
    struct iovec iov = {.iov_base = batch, .iov_len = len};
    return sl_log_appendv(log, &iov, 1, base_offset_out, NULL);
}

uint64_t
sl_log_start_offset(sl_log *log)
{
    pthread_mutex_lock(&log->mutex);
    uint64_t offset = log->segments[0]->base_offset;
    pthread_mutex_unlock(&log->mutex);
    return offset;
}

uint64_t
sl_log_end_offset(sl_log *log)
{
    pthread_mutex_lock(&log->mutex);
    uint64_t offset = log->end_offset;
    pthread_mutex_unlock(&log->mutex);
    return offset;
}

uint64_t
sl_log_durable_offset(sl_log *log)
{
    pthread_mutex_lock(&log->mutex);
    uint64_t offset = log->durable_offset;
    pthread_mutex_unlock(&log->mutex);
    return offset;
}

void
sl_log_stats_get(sl_log *log, sl_log_stats *stats_out)
{
    pthread_mutex_lock(&log->mutex);
    *stats_out = log->stats;
    stats_out->start_offset = log->segments[0]->base_offset;
    stats_out->end_offset = log->end_offset;
    stats_out->durable_offset = log->durable_offset;
    stats_out->low_watermark = log->low_watermark;
    stats_out->size_bytes = log->size_bytes;
    stats_out->segment_count = log->segment_count;
    pthread_mutex_unlock(&log->mutex);
}
