// The "file" sink: appends each record's value and a newline to file:PATH ("-": stdout). A record
// is done only once it is on disk: a syncer thread writes the records gathered since its last
// round and fdatasyncs once for all of them (group commit; fsync=always|interval|never). How many
// records may wait for a sync is set by an adaptive limiter fed with each record's write-to-durable
// latency, so on a slow disk the sink settles at what the disk sustains instead of a static bound.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>
#include <sluice/ratelimit.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Bytes gathered per sync round: a record longer than this is written on its own.
#define FILE_SINK_BATCH_BYTES (1u << 20)
// Records waiting for a sync, at most (the limiter's ceiling; option inflight_max lowers it).
#define FILE_SINK_INFLIGHT_MAX 16384u
// The limiter starts here and never goes below limit_min: one record per fdatasync is never
// a sensible target.
#define FILE_SINK_LIMIT_INITIAL 256u
#define FILE_SINK_LIMIT_MIN     16u
// Queueing delay accepted over the no-load latency before the limit shrinks: half, because
// with group commit a bigger batch costs a little more write time for far fewer syncs.
#define FILE_SINK_LATENCY_TOLERANCE 0.5

typedef enum file_sync_mode {
    FILE_SYNC_ALWAYS = 0,
    FILE_SYNC_INTERVAL = 1,
    FILE_SYNC_NEVER = 2,
} file_sync_mode;

typedef struct file_batch {
    uint8_t *data;
    size_t len;
    sl_pipe_done_ref **refs;
    int64_t *written_ns;
    uint32_t count;
} file_batch;

typedef struct file_sink {
    int fd;
    bool is_stdout;
    bool syncable; // false once fdatasync said the file cannot be synced (a pipe, a tty)
    file_sync_mode mode;
    int64_t interval_ms;
    uint32_t inflight_max;
    pthread_t syncer;
    bool syncer_started;
    pthread_mutex_t mutex;
    pthread_cond_t work; // records to sync, or stop
    pthread_cond_t room; // a round finished
    bool stop;
    int error; // sticky: a failed write or sync stops the sink
    file_batch batches[2];
    uint32_t active;  // index of the batch write() fills; the other one is the syncer's
    uint32_t syncing; // records in the syncer's batch
    sl_adaptive_limiter limiter;
    uint64_t syncs_total;
} file_sink;

static const char *const file_sink_options[] = {"fsync", "fsync_interval", "inflight_max",
                                                "limiter", NULL};

static int
file_sink_config(file_sink *s, const sl_pipe_endpoint *e, char *err, size_t err_size)
{
    static const char *const modes[] = {"always", "interval", "never", NULL};
    static const char *const limiters[] = {"aimd", "gradient", NULL};
    int mode = 0;
    int lim = 0;
    uint64_t inflight = 0;
    int r = sl__pipe_ep_check_known(e, file_sink_options, err, err_size);
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_enum(e, "fsync", modes, s->is_stdout ? 2 : 0, &mode, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_ms(e, "fsync_interval", 100, &s->interval_ms, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_u64(e, "inflight_max", FILE_SINK_INFLIGHT_MAX, FILE_SINK_LIMIT_MIN,
                                FILE_SINK_INFLIGHT_MAX, &inflight, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_enum(e, "limiter", limiters, 0, &lim, err, err_size);
    }
    if (r != SL_OK) {
        return r;
    }
    s->mode = (file_sync_mode)mode;
    s->inflight_max = (uint32_t)inflight;
    sl_adaptive_config ac;
    sl_adaptive_config_default(&ac, lim == 0 ? SL_ADAPTIVE_AIMD : SL_ADAPTIVE_GRADIENT);
    ac.limit_min = FILE_SINK_LIMIT_MIN;
    ac.limit_max = s->inflight_max;
    ac.limit_initial = SL_MIN(FILE_SINK_LIMIT_INITIAL, s->inflight_max);
    ac.increase_step = 8;
    ac.latency_tolerance = FILE_SINK_LATENCY_TOLERANCE;
    return sl_adaptive_init(&s->limiter, &ac);
}

static int
file_batch_init(file_batch *b, uint32_t cap)
{
    b->data = sl_alloc(FILE_SINK_BATCH_BYTES);
    b->refs = sl_calloc(cap, sizeof(*b->refs));
    b->written_ns = sl_calloc(cap, sizeof(*b->written_ns));
    return b->data && b->refs && b->written_ns ? SL_OK : SL_ENOMEM;
}

static void
file_batch_fini(file_batch *b, uint32_t cap)
{
    if (b->data != NULL) {
        sl_free(b->data, FILE_SINK_BATCH_BYTES);
    }
    if (b->refs != NULL) {
        sl_free(b->refs, cap * sizeof(*b->refs));
    }
    if (b->written_ns != NULL) {
        sl_free(b->written_ns, cap * sizeof(*b->written_ns));
    }
}

// Writes data and, per the mode, syncs. SL_OK or the error that stops the sink.
static int
file_sink_persist(file_sink *s, const void *data, size_t len)
{
    int r = sl__pipe_ep_write_all(s->fd, data, len);
    if (r != SL_OK || s->mode == FILE_SYNC_NEVER || !s->syncable) {
        return r;
    }
    if (fdatasync(s->fd) != 0) {
        if (errno == EINVAL || errno == EROFS) {
            s->syncable = false; // a pipe or terminal: written is as durable as it gets
            return SL_OK;
        }
        return errno == ENOSPC ? SL_ENOSPC : SL_EIO;
    }
    s->syncs_total++;
    return SL_OK;
}

// One syncer round over batch b (taken from write() under the mutex): persist, report, sample.
static void
file_sink_round(file_sink *s, file_batch *b)
{
    int r = file_sink_persist(s, b->data, b->len);
    int64_t now = sl_now_ns();
    for (uint32_t i = 0; i < b->count; i++) {
        sl_pipe_sink_done(b->refs[i], r);
    }
    pthread_mutex_lock(&s->mutex);
    uint32_t in_flight = b->count + s->batches[s->active].count;
    for (uint32_t i = 0; i < b->count; i++) {
        sl_adaptive_on_sample(&s->limiter, now - b->written_ns[i], in_flight, false);
    }
    if (r != SL_OK && s->error == SL_OK) {
        s->error = r;
    }
    b->len = 0;
    b->count = 0;
    s->syncing = 0;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mutex);
}

static void
file_sink_wait_interval(file_sink *s, int64_t last_round_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t wake = last_round_ns + s->interval_ms * 1000000LL;
    ts.tv_sec = wake / 1000000000LL;
    ts.tv_nsec = wake % 1000000000LL;
    while (!s->stop && sl_now_ns() < wake) { // bounded by the interval
        if (pthread_cond_timedwait(&s->work, &s->mutex, &ts) == ETIMEDOUT) {
            break;
        }
    }
}

// The syncer: runs until stop, then once more for what is left, so no written record is left
// without its done.
static void *
file_sink_syncer(void *arg)
{
    file_sink *s = arg;
    int64_t last_round_ns = 0;
    pthread_mutex_lock(&s->mutex);
    for (;;) { // until stop and nothing left to sync
        while (!s->stop && s->batches[s->active].count == 0) {
            pthread_cond_wait(&s->work, &s->mutex);
        }
        if (s->batches[s->active].count == 0) {
            break;
        }
        if (s->mode == FILE_SYNC_INTERVAL) {
            file_sink_wait_interval(s, last_round_ns);
        }
        file_batch *b = &s->batches[s->active];
        s->active ^= 1u;
        s->syncing = b->count;
        pthread_mutex_unlock(&s->mutex);
        last_round_ns = sl_now_ns();
        file_sink_round(s, b);
        pthread_mutex_lock(&s->mutex);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

static int
file_sink_open(file_sink *s, const sl_pipe_endpoint *e, char *err, size_t err_size)
{
    const char *path = e->uri;
    if (strncmp(path, "file:", 5) == 0) {
        path += 5;
    }
    s->is_stdout = strcmp(path, "-") == 0;
    if (s->is_stdout) {
        s->fd = STDOUT_FILENO;
        return SL_OK;
    }
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        return sl__pipe_ep_fail(err, err_size, SL_EIO, "%s: %s", path, strerror(errno));
    }
    return SL_OK;
}

static void file_sink_destroy(void *state);

static int
file_sink_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                 void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance);
    SL_UNUSED(instance_count);
    file_sink *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    s->fd = -1;
    s->syncable = true;
    pthread_mutex_init(&s->mutex, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work, &ca);
    pthread_cond_init(&s->room, &ca);
    pthread_condattr_destroy(&ca);
    int r = file_sink_open(s, e, err, err_size);
    if (r == SL_OK) {
        r = file_sink_config(s, e, err, err_size);
    }
    for (int i = 0; i < 2 && r == SL_OK; i++) {
        r = file_batch_init(&s->batches[i], s->inflight_max);
    }
    if (r == SL_OK && pthread_create(&s->syncer, NULL, file_sink_syncer, s) != 0) {
        r = SL_ENOMEM;
    }
    s->syncer_started = r == SL_OK;
    if (r != SL_OK) {
        file_sink_destroy(s);
        return r;
    }
    *state_out = s;
    return SL_OK;
}

static bool
file_sink_has_room(file_sink *s, size_t len)
{
    file_batch *b = &s->batches[s->active];
    uint32_t limit = SL_MIN(sl_adaptive_limit(&s->limiter), s->inflight_max);
    return b->count + s->syncing < limit && b->len + len <= FILE_SINK_BATCH_BYTES;
}

// A record larger than a batch: written and synced here, alone, once nothing else is pending
// (the syncer is then idle and waits for the mutex this holds).
static int
file_sink_write_large(file_sink *s, const sl_pipe_record *rec, sl_pipe_done_ref *done)
{
    if (s->batches[s->active].count > 0 || s->syncing > 0) {
        return SL_EAGAIN;
    }
    int r = sl__pipe_ep_write_all(s->fd, rec->value, rec->value_size);
    if (r == SL_OK) {
        r = file_sink_persist(s, "\n", 1);
    }
    if (r != SL_OK) {
        s->error = r;
        return r;
    }
    sl_pipe_sink_done(done, SL_OK);
    return SL_OK;
}

static int
file_sink_write(void *state, const sl_pipe_record *rec, sl_pipe_done_ref *done)
{
    file_sink *s = state;
    size_t len = (size_t)rec->value_size + 1;
    pthread_mutex_lock(&s->mutex);
    int r = s->error;
    if (r == SL_OK && len > FILE_SINK_BATCH_BYTES) {
        r = file_sink_write_large(s, rec, done);
    } else if (r == SL_OK && !file_sink_has_room(s, len)) {
        r = SL_EAGAIN;
    } else if (r == SL_OK) {
        file_batch *b = &s->batches[s->active];
        if (rec->value_size > 0) {
            memcpy(b->data + b->len, rec->value, rec->value_size);
        }
        b->data[b->len + rec->value_size] = '\n';
        b->len += len;
        b->refs[b->count] = done;
        b->written_ns[b->count++] = sl_now_ns();
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mutex);
    return r;
}

static void
timespec_at(struct timespec *ts, int64_t deadline_ns)
{
    ts->tv_sec = deadline_ns / 1000000000LL;
    ts->tv_nsec = deadline_ns % 1000000000LL;
}

// Waits for room (after SL_EAGAIN) until deadline_ns; returns at once when there is room.
static void
file_sink_poll(void *state, int64_t deadline_ns)
{
    file_sink *s = state;
    struct timespec ts;
    timespec_at(&ts, deadline_ns);
    pthread_mutex_lock(&s->mutex);
    // Bounded by deadline_ns: each wait ends at a round's end or at the deadline.
    while (s->error == SL_OK && !file_sink_has_room(s, 1) && sl_now_ns() < deadline_ns) {
        if (pthread_cond_timedwait(&s->room, &s->mutex, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s->mutex);
}

static int
file_sink_flush(void *state, int64_t deadline_ns)
{
    file_sink *s = state;
    struct timespec ts;
    timespec_at(&ts, deadline_ns);
    pthread_mutex_lock(&s->mutex);
    while (s->batches[s->active].count + s->syncing > 0 && sl_now_ns() < deadline_ns) {
        if (pthread_cond_timedwait(&s->room, &s->mutex, &ts) == ETIMEDOUT) {
            break;
        }
    }
    int r = s->batches[s->active].count + s->syncing > 0 ? SL_ETIMEDOUT : s->error;
    pthread_mutex_unlock(&s->mutex);
    return r;
}

static void
file_sink_destroy(void *state)
{
    file_sink *s = state;
    if (s->syncer_started) {
        pthread_mutex_lock(&s->mutex);
        s->stop = true;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mutex);
        pthread_join(s->syncer, NULL);
    }
    for (int i = 0; i < 2; i++) {
        file_batch_fini(&s->batches[i], s->inflight_max);
    }
    if (s->fd >= 0 && !s->is_stdout) {
        close(s->fd);
    }
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->mutex);
    sl_free(s, sizeof(*s));
}

const sl_pipe_sink_ops sl__pipe_sink_file = {
    .scheme = "file",
    .create = file_sink_create,
    .write = file_sink_write,
    .poll = file_sink_poll,
    .flush = file_sink_flush,
    .destroy = file_sink_destroy,
};
