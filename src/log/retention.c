// Retention: deletes whole closed segments, oldest first, while the log is over retention_bytes
// or the segment's newest record is older than retention_ms. In lossless mode a segment goes only
// when every offset in it is below the low watermark the owner sets (the slowest consumer group):
// a full disk budget then shows up as SL_EFULL from append (backpressure), never as lost data.
#include <string.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

void
sl_log_set_low_watermark(sl_log *log, uint64_t offset)
{
    SL_ASSERT(log != NULL);
    pthread_mutex_lock(&log->mutex);
    log->low_watermark = SL_MAX(log->low_watermark, offset);
    pthread_mutex_unlock(&log->mutex);
}

// Whether the oldest segment may go (mutex held). Never the active one.
static bool
oldest_expired(const sl_log *log, int64_t now_us)
{
    if (log->segment_count < 2) {
        return false;
    }
    const sl_log_segment *oldest = log->segments[0];
    uint64_t next_base = log->segments[1]->base_offset;
    if (log->cfg.lossless && next_base > log->low_watermark) {
        return false;
    }
    const sl_log_config *cfg = &log->cfg;
    // By size: only while the rest alone still holds at least retention_bytes.
    bool by_size =
        cfg->retention_bytes > 0 && log->size_bytes - oldest->size >= cfg->retention_bytes;
    bool by_age =
        cfg->retention_ms > 0 && oldest->max_timestamp_us < now_us - cfg->retention_ms * 1000;
    return by_size || by_age;
}

static void
segment_unlink(sl_log *log, uint64_t base_offset)
{
    char name[SL__FILE_NAME_MAX];
    sl__segment_name(base_offset, "log", name);
    if (unlinkat(log->dir_fd, name, 0) != 0) {
        sl__log_message(log, "log %s: cannot delete %s", log->dir, name);
    }
    sl__segment_name(base_offset, "index", name);
    (void)unlinkat(log->dir_fd, name, 0);
}

int
sl_log_retention_run(sl_log *log, int64_t now_us)
{
    SL_ASSERT(log != NULL);
    int deleted = 0;
    // The append mutex keeps a roll from reshaping the table while segments leave its front.
    pthread_mutex_lock(&log->append_mutex);
    // Bounded by the segment count: each turn removes one segment or stops.
    for (uint32_t turn = 0; turn < SL_LOG_SEGMENTS_MAX; turn++) {
        pthread_mutex_lock(&log->mutex);
        if (!oldest_expired(log, now_us)) {
            pthread_mutex_unlock(&log->mutex);
            break;
        }
        sl_log_segment *seg = log->segments[0];
        memmove(log->segments, log->segments + 1,
                (log->segment_count - 1) * sizeof(sl_log_segment *));
        log->segment_count--;
        log->size_bytes -= seg->size;
        seg->deleted = true;
        uint64_t charged = seg->charged_bytes;
        seg->charged_bytes = 0;
        log->stats.deleted_segments++;
        SL_DEBUG_ASSERT(sl__log_check(log));
        pthread_mutex_unlock(&log->mutex);
        // Readers holding a lease keep the open file; its space returns at their release.
        segment_unlink(log, seg->base_offset);
        if (log->cfg.disk_budget != NULL && charged > 0) {
            sl_budget_release(log->cfg.disk_budget, charged, 0);
        }
        sl__segment_unref(log, seg);
        deleted++;
    }
    pthread_mutex_unlock(&log->append_mutex);
    return deleted;
}
