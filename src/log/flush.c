// Durability: the flusher thread and group commit. Appenders never wait for a sync; they publish
// bytes and poke the flusher. One sync pass captures the end offset, fdatasyncs every segment with
// unsynced bytes (and the directory after a roll) without holding the log mutex, then publishes
// that end offset as durable, so one fdatasync covers every batch appended while the previous ran.
// One pass runs at a time: the flusher's, sl_log_flush's, or a durability waiter's (the leader).
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"
#include "log/log_internal.h"

void
sl__flush_notify(sl_log *log)
{
    if (log->cfg.fsync_policy == SL_LOG_FSYNC_ALWAYS) {
        pthread_cond_signal(&log->flush_cond);
    }
}

// Collects (mutex held) references to the segments with unsynced bytes, oldest first, and the
// offset their sync will make durable. Dirty segments sit together just before the active one.
static uint32_t
dirty_collect(sl_log *log, sl_log_segment **segs, uint64_t *sizes, uint64_t *target_out)
{
    uint32_t count = log->segment_count;
    uint32_t first = count;
    for (uint32_t i = count; i-- > 0;) {
        const sl_log_segment *seg = log->segments[i];
        if (seg->synced_size == seg->size && i + 1 < count) {
            break;
        }
        first = i;
    }
    uint64_t target = log->end_offset;
    uint32_t stop = count;
    if (count - first > SL__SYNC_SEGMENTS_MAX) {
        stop = first + SL__SYNC_SEGMENTS_MAX;
        target = log->segments[stop]->base_offset;
    }
    uint32_t n = 0;
    for (uint32_t i = first; i < stop; i++) {
        sl_log_segment *seg = log->segments[i];
        if (seg->synced_size != seg->size) {
            seg->refs++;
            segs[n] = seg;
            sizes[n] = seg->size;
            n++;
        }
    }
    *target_out = target;
    return n;
}

int
sl__flush_pass(sl_log *log)
{
    sl_log_segment *segs[SL__SYNC_SEGMENTS_MAX];
    uint64_t sizes[SL__SYNC_SEGMENTS_MAX];
    uint64_t target = 0;
    pthread_mutex_lock(&log->mutex);
    if (log->failed != SL_OK || log->sync_running) {
        int busy = log->failed != SL_OK ? log->failed : SL_EAGAIN;
        pthread_mutex_unlock(&log->mutex);
        return busy;
    }
    log->sync_running = true;
    bool dir = log->dir_dirty;
    log->dir_dirty = false;
    uint32_t n = dirty_collect(log, segs, sizes, &target);
    pthread_mutex_unlock(&log->mutex);

    int err = SL_OK;
    if (dir && fsync(log->dir_fd) != 0) {
        err = SL_EIO;
    }
    for (uint32_t i = 0; i < n && err == SL_OK; i++) {
        if (fdatasync(segs[i]->fd) != 0) {
            err = SL_EIO;
        }
    }
    int sync_errno = errno;

    pthread_mutex_lock(&log->mutex);
    if (err == SL_OK) {
        for (uint32_t i = 0; i < n; i++) {
            segs[i]->synced_size = SL_MAX(segs[i]->synced_size, sizes[i]);
        }
        log->durable_offset = SL_MAX(log->durable_offset, target);
        log->stats.fsync_total += n;
    } else {
        // After a failed fsync the page cache may have dropped the data: never claim it durable.
        log->failed = SL_EIO;
    }
    log->sync_running = false;
    pthread_cond_broadcast(&log->durable_cond);
    if (log->end_offset > log->durable_offset) {
        sl__flush_notify(log); // appended during this pass: the next group is due
    }
    pthread_mutex_unlock(&log->mutex);
    if (err != SL_OK) {
        sl__log_message(log, "log %s: fsync failed: %s; the log refuses appends until reopened",
                        log->dir, strerror(sync_errno));
    }
    for (uint32_t i = 0; i < n; i++) {
        sl__segment_unref(log, segs[i]);
    }
    return err;
}

static struct timespec
timespec_at(int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    return ts;
}

// Waits (mutex held) until there is something to sync or the log closes.
static void
flusher_wait(sl_log *log)
{
    if (log->cfg.fsync_policy == SL_LOG_FSYNC_INTERVAL) {
        struct timespec ts =
            timespec_at(sl_now_ns() + (int64_t)log->cfg.fsync_interval_ms * 1000000);
        pthread_cond_timedwait(&log->flush_cond, &log->mutex, &ts);
        return;
    }
    // Spurious wake-ups only cost a loop turn in flusher_main.
    if (!log->closing && (log->end_offset == log->durable_offset || log->failed != SL_OK ||
                          log->sync_running || log->durable_waiters > 0)) {
        pthread_cond_wait(&log->flush_cond, &log->mutex);
    }
}

static void *
flusher_main(void *arg)
{
    sl_log *log = arg;
    pthread_mutex_lock(&log->mutex);
    // Runs until sl_log_close sets closing; every wait ends on a notify, a tick or the close.
    while (!log->closing) {
        flusher_wait(log);
        // Waiters lead their own passes: syncing here too would only make them wait for us.
        bool leaders = log->cfg.fsync_policy == SL_LOG_FSYNC_ALWAYS && log->durable_waiters > 0;
        bool pending = log->end_offset > log->durable_offset && log->failed == SL_OK &&
                       !log->sync_running && !leaders;
        if (log->closing || !pending) {
            continue;
        }
        pthread_mutex_unlock(&log->mutex);
        (void)sl__flush_pass(log);
        pthread_mutex_lock(&log->mutex);
    }
    pthread_mutex_unlock(&log->mutex);
    return NULL;
}

int
sl__flush_start(sl_log *log)
{
    if (log->cfg.fsync_policy == SL_LOG_FSYNC_NEVER) {
        return SL_OK;
    }
    if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
        return SL_ENOMEM;
    }
    log->flusher_running = true;
    return SL_OK;
}

void
sl__flush_stop(sl_log *log)
{
    if (!log->flusher_running) {
        return;
    }
    pthread_mutex_lock(&log->mutex);
    log->closing = true;
    pthread_cond_broadcast(&log->flush_cond);
    pthread_cond_broadcast(&log->durable_cond);
    pthread_mutex_unlock(&log->mutex);
    pthread_join(log->flusher, NULL);
    log->flusher_running = false;
    // Close syncs once more after the thread is gone; closing stays set for waiters.
}

int
sl_log_flush(sl_log *log)
{
    SL_ASSERT(log != NULL);
    pthread_mutex_lock(&log->mutex);
    uint64_t target = log->end_offset;
    int err = SL_OK;
    // Bounded by progress: each turn runs a pass or waits for the running one to publish.
    while (log->durable_offset < target || log->dir_dirty) {
        if (log->failed != SL_OK) {
            err = log->failed;
            break;
        }
        if (log->sync_running) {
            pthread_cond_wait(&log->durable_cond, &log->mutex);
            continue;
        }
        pthread_mutex_unlock(&log->mutex);
        err = sl__flush_pass(log);
        pthread_mutex_lock(&log->mutex);
        if (err != SL_OK && err != SL_EAGAIN) {
            break;
        }
        err = SL_OK;
    }
    pthread_mutex_unlock(&log->mutex);
    return err;
}

int
sl_log_wait_durable(sl_log *log, uint64_t offset, int64_t deadline_ns)
{
    SL_ASSERT(log != NULL);
    pthread_mutex_lock(&log->mutex);
    if (offset > log->end_offset) {
        pthread_mutex_unlock(&log->mutex);
        return SL_ERANGE;
    }
    struct timespec ts = timespec_at(deadline_ns);
    int err = SL_OK;
    log->durable_waiters++;
    // Bounded by the deadline: each wait ends at it, on a publish, or on close.
    while (log->durable_offset < offset) {
        if (log->failed != SL_OK) {
            err = log->failed;
            break;
        }
        if (log->closing) {
            err = SL_ECLOSED;
            break;
        }
        if (deadline_ns != SL_DEADLINE_NEVER && sl_now_ns() >= deadline_ns) {
            err = SL_ETIMEDOUT;
            break;
        }
        // Group commit with a leader: under ALWAYS a waiter that finds no pass running runs
        // one itself (no hand-off to the flusher and back); the others wait for its publish.
        if (log->cfg.fsync_policy == SL_LOG_FSYNC_ALWAYS && !log->sync_running) {
            pthread_mutex_unlock(&log->mutex);
            (void)sl__flush_pass(log);
            pthread_mutex_lock(&log->mutex);
            continue;
        }
        if (deadline_ns == SL_DEADLINE_NEVER) {
            pthread_cond_wait(&log->durable_cond, &log->mutex);
        } else {
            pthread_cond_timedwait(&log->durable_cond, &log->mutex, &ts);
        }
    }
    log->durable_waiters--;
    if (log->durable_waiters == 0 && log->end_offset > log->durable_offset) {
        sl__flush_notify(log); // the flusher stood back for us: hand pending bytes back to it
    }
    pthread_mutex_unlock(&log->mutex);
    return err;
}
