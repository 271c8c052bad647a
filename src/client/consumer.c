// The consumer: the I/O thread keeps a prefetch window of demand outstanding (REQUEST, in records
// and bytes, minus what is buffered), stores delivered batches trimmed to [first_offset,
// end_offset), and sends cumulative COMMITs; the application takes records with poll or
// dispatch. A paused application stops demand, never heartbeats, so it is never evicted as slow.
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sluice/error.h>

#include "client/client_internal.h"
#include "core/util.h"

#define CONSUMER_PREFETCH_RECORDS_DEFAULT 1000u
#define CONSUMER_PREFETCH_BYTES_DEFAULT   (4u * 1024u * 1024u)
// A stream closed with a retriable error is reopened after this long (or its hint).
#define CONSUMER_REOPEN_MS 500u
// How long sl_consumer_free waits for its last COMMIT to be written.
#define CONSUMER_CLOSE_COMMIT_MS 1000
// Records dispatch takes per poll round.
#define CONSUMER_DISPATCH_CHUNK 64u

typedef struct cbatch {
    struct cbatch *next;
    uint8_t *buf; // a validated copy of the delivered batch
    size_t len;
    sl_batch_iter it;
    uint64_t lo; // records outside [lo, hi) were trimmed (partial delivery or duplicates)
    uint64_t hi;
    uint32_t left; // kept records not yet handed out
    uint32_t partition;
} cbatch;

struct sl_consumer {
    sl__io io;
    sl_consumer_config cfg;
    char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
    char group[SL_PROTO_GROUP_NAME_MAX + 1];
    int ready_fd;
    // Under io.mutex.
    cbatch *head; // buffered, oldest first
    cbatch *tail;
    cbatch *retired; // handed out by the last poll; freed at the next (views stay valid)
    uint64_t buffered_records;
    uint64_t buffered_bytes;
    uint64_t outstanding_records; // requested and not yet delivered
    uint64_t outstanding_bytes;
    uint32_t stream_id;
    bool stream_open;
    bool stream_ready;
    bool have_position;    // next_fetch is known (a reconnect resumes there)
    uint64_t next_fetch;   // next offset wanted from the broker
    uint64_t next_offset;  // next offset the application will see
    uint64_t returned_end; // one past the last offset handed out
    uint64_t commit_target;
    uint64_t commit_sent;
    int64_t paused_until_ns;
    bool want_ready;
    bool closing;
    int fatal;
    uint32_t partition;    // resolved by STREAM_OK
    uint64_t window_bytes; // prefetch_bytes, raised to the stream's max_batch_bytes
    sl_consumer_stats stats;
};

static void
cbatch_free(cbatch *b)
{
    sl_free(b->buf, b->len);
    sl_free(b, sizeof(*b));
}

static bool
consumer_encode(sl_consumer *c, int (*enc)(sl_consumer *, uint8_t *, size_t, size_t *))
{
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&c->io.conn, &at);
    size_t len = 0;
    if (enc(c, at, room, &len) != SL_OK) {
        return false;
    }
    sl__conn_commit(&c->io.conn, len);
    return true;
}

static int
enc_open(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_open_consume m = {.partition = c->cfg.partition,
                               .start_mode = (uint8_t)c->cfg.start,
                               .start_offset =
                                   c->cfg.start == SL_START_OFFSET ? c->cfg.start_offset : 0,
                               .topic = {c->topic, (uint16_t)strlen(c->topic)},
                               .group = {c->group, (uint16_t)strlen(c->group)}};
    if (c->have_position) {
        m.start_mode = SL_START_OFFSET; // resume exactly where the buffer ends
        m.start_offset = c->next_fetch;
        m.partition = c->partition; // the one STREAM_OK resolved (ANY is for group starts)
    }
    return sl_proto_encode_open_consume(at, room, c->stream_id + 2, &m, len);
}

static int
enc_commit(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_commit m = {.offset = c->commit_target};
    return sl_proto_encode_commit(at, room, c->stream_id, &m, len);
}

static uint64_t
window_left(uint64_t window, uint64_t a, uint64_t b)
{
    return a + b >= window ? 0 : window - a - b;
}

static int
enc_request(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_request m = {
        .records =
            window_left(c->cfg.prefetch_records, c->buffered_records, c->outstanding_records),
        .bytes = window_left(c->window_bytes, c->buffered_bytes, c->outstanding_bytes)};
    return sl_proto_encode_request(at, room, c->stream_id, &m, len);
}

// Tops the window up when at least half of it is free in records or in bytes (fewer, larger
// REQUESTs), or when either outstanding demand ran out (the broker sends nothing while either
// is 0). Both increments go in one REQUEST; one of them may be 0.
static void
consumer_demand(sl_consumer *c)
{
    uint64_t recs =
        window_left(c->cfg.prefetch_records, c->buffered_records, c->outstanding_records);
    uint64_t bytes = window_left(c->window_bytes, c->buffered_bytes, c->outstanding_bytes);
    bool starved = (c->outstanding_records == 0 && recs > 0) ||
                   (c->outstanding_bytes < c->window_bytes / 2 && bytes > 0);
    bool worth = recs * 2 >= c->cfg.prefetch_records || bytes * 2 >= c->window_bytes || starved;
    if (recs + bytes == 0 || !worth || !consumer_encode(c, enc_request)) {
        return;
    }
    c->outstanding_records += recs;
    c->outstanding_bytes += bytes;
    c->stats.requested_records_total += recs;
}

static void
consumer_pump(void *h, int64_t now, int64_t *wake_at)
{
    sl_consumer *c = h;
    if (now < c->paused_until_ns) {
        *wake_at = SL_MIN(*wake_at, c->paused_until_ns);
        return;
    }
    if (!c->stream_open && c->fatal == SL_OK && consumer_encode(c, enc_open)) {
        c->stream_id += 2;
        c->stream_open = true;
    }
    if (!c->stream_ready) {
        return;
    }
    if (c->commit_target > c->commit_sent && consumer_encode(c, enc_commit)) {
        c->commit_sent = c->commit_target;
        c->stats.committed_offset = c->commit_sent;
        pthread_cond_broadcast(&c->io.cond);
    }
    if (!c->closing) {
        consumer_demand(c);
    }
}

static void
consumer_connected(void *h, const sl_proto_hello_ok *ok)
{
    sl_consumer *c = h;
    SL_UNUSED(ok);
    c->stream_open = c->stream_ready = false;
}

static void
consumer_disconnected(void *h)
{
    sl_consumer *c = h;
    c->stream_open = c->stream_ready = false;
    c->outstanding_records = c->outstanding_bytes = 0; // demand dies with the stream
}

// Copies one delivered batch, keeping only the records in [lo, hi). Returns records kept.
static int
consumer_keep_batch(sl_consumer *c, const uint8_t *data, const sl_batch_header *vh, uint64_t lo,
                    uint64_t hi)
{
    uint64_t first = SL_MAX(lo, vh->base_offset);
    uint64_t last_end = SL_MIN(hi, vh->base_offset + vh->record_count);
    if (first >= last_end) {
        return 0; // wholly trimmed
    }
    // Compressed batches are stored decompressed: records are handed out as views.
    size_t len = vh->length;
    int err = sl_batch_decompressed_length(vh, &len);
    if (err != SL_OK) {
        return SL_ECORRUPT;
    }
    cbatch *b = sl_calloc(1, sizeof(*b));
    uint8_t *buf = sl_alloc(len);
    if (b == NULL || buf == NULL) {
        sl_free(b, b == NULL ? 0 : sizeof(*b));
        sl_free(buf, buf == NULL ? 0 : len);
        return SL_ENOMEM;
    }
    b->buf = buf;
    b->len = len;
    err = sl_batch_decompress(data, vh->length, buf, len, &len);
    if (err != SL_OK) {
        cbatch_free(b);
        return err == SL_ENOTSUP ? SL_EPROTO : SL_ECORRUPT; // a codec this build lacks: refuse
    }
    b->lo = first;
    b->hi = last_end;
    b->left = (uint32_t)(last_end - first);
    b->partition = c->partition;
    err = sl_batch_iter_init(&b->it, buf, b->len);
    if (err != SL_OK) {
        cbatch_free(b);
        return SL_ECORRUPT;
    }
    if (c->tail == NULL) {
        c->head = b;
    } else {
        c->tail->next = b;
    }
    c->tail = b;
    c->buffered_bytes += b->len;
    c->next_fetch = last_end;
    return (int)b->left;
}

// Records of a batch inside the delivered window [first, end): what the broker counts against
// the demand (records outside it are skipped, not counted).
static uint64_t
window_count(const sl_batch_header *h, uint64_t first, uint64_t end)
{
    uint64_t lo = SL_MAX(first, h->base_offset);
    uint64_t hi = SL_MIN(end, h->base_offset + h->record_count);
    return hi > lo ? hi - lo : 0;
}

static int
consumer_deliver(sl_consumer *c, const sl_proto_deliver *d)
{
    sl_proto_cursor cur;
    sl_proto_batches_init(&cur, &d->batches);
    uint64_t kept = 0;
    uint64_t counted = 0;
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX; i++) {
        const uint8_t *data = NULL;
        sl_batch_header h;
        int err = sl_proto_batches_next(&cur, &data, &h);
        if (err == SL_ENOENT) {
            break;
        }
        // Checked when it is kept: sl_batch_decompress validates (CRC, framing) as it copies.
        if (err == SL_OK) {
            counted += window_count(&h, d->first_offset, d->end_offset);
            // Records before next_fetch arrived already (a redelivery after reconnect).
            err = consumer_keep_batch(c, data, &h, SL_MAX(d->first_offset, c->next_fetch),
                                      d->end_offset);
        }
        if (err < 0) {
            return err;
        }
        kept += (uint64_t)err;
    }
    bool was_empty = c->buffered_records == 0;
    c->buffered_records += kept;
    c->stats.records_delivered_total += kept;
    c->stats.log_end_offset = d->log_end_offset;
    c->outstanding_records -= SL_MIN(c->outstanding_records, counted);
    c->outstanding_bytes -= SL_MIN(c->outstanding_bytes, d->batches.size_bytes);
    if (was_empty && kept > 0) {
        sl__signal_fd(c->ready_fd);
    }
    return SL_OK;
}

static void
consumer_stream_closed(sl_consumer *c, const sl_proto_error *e, int64_t now)
{
    int err = sl_proto_status_from_code(e->code);
    consumer_disconnected(c);
    uint32_t wait = e->retry_after_ms != 0 ? e->retry_after_ms : CONSUMER_REOPEN_MS;
    c->paused_until_ns = now + (int64_t)sl__io_jitter_ms(&c->io, wait) * 1000000;
    if (err == SL_ENOENT || err == SL_EINVAL || err == SL_ERANGE || err == SL_ENOTSUP) {
        c->fatal = err;
        sl__signal_fd(c->ready_fd);
    }
}

static int
consumer_frame(void *h, const sl_frame *f, int64_t now)
{
    sl_consumer *c = h;
    if (f->header.stream_id != 0 && f->header.stream_id != c->stream_id) {
        return SL_OK; // a late frame for a stream already left
    }
    switch (f->header.type) {
    case SL_FRAME_STREAM_OK:
        c->next_fetch = SL_MAX(f->u.stream_ok.start_offset, c->have_position ? c->next_fetch : 0);
        if (!c->have_position) {
            c->next_offset = c->returned_end = c->next_fetch;
        }
        c->have_position = true;
        c->partition = f->u.stream_ok.partition;
        // A byte demand below one batch could stall: the broker sends whole batches.
        c->window_bytes = SL_MAX(c->cfg.prefetch_bytes, f->u.stream_ok.max_batch_bytes);
        c->stream_ready = true;
        c->commit_sent = 0; // the new stream hears the latest commit again
        return SL_OK;
    case SL_FRAME_DELIVER:
        return consumer_deliver(c, &f->u.deliver);
    case SL_FRAME_THROTTLE:
        sl__io_count_throttle(&c->io, f->u.throttle.reason, f->u.throttle.retry_after_ms);
        return SL_OK;
    case SL_FRAME_STREAM_CLOSE:
    case SL_FRAME_ERROR:
        consumer_stream_closed(c, &f->u.error, now);
        return SL_OK;
    default:
        return SL_EPROTO;
    }
}

static void
consumer_unlocked(void *h)
{
    sl_consumer *c = h;
    pthread_mutex_lock(&c->io.mutex);
    bool call = c->want_ready && (c->buffered_records > 0 || c->fatal != SL_OK);
    c->want_ready = c->want_ready && !call;
    pthread_mutex_unlock(&c->io.mutex);
    if (call && c->cfg.ready_cb != NULL) {
        c->cfg.ready_cb(c->cfg.ready_user);
    }
}

static const sl__io_ops consumer_ops = {
    .on_connected = consumer_connected,
    .on_frame = consumer_frame,
    .pump = consumer_pump,
    .on_disconnected = consumer_disconnected,
    .unlocked = consumer_unlocked,
};

void
sl_consumer_config_init(sl_consumer_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->start = SL_START_EARLIEST;
    cfg->prefetch_records = CONSUMER_PREFETCH_RECORDS_DEFAULT;
    cfg->prefetch_bytes = CONSUMER_PREFETCH_BYTES_DEFAULT;
    cfg->auto_ack = true;
    cfg->heartbeat_ms = SL_PROTO_HEARTBEAT_MS_DEFAULT;
}

int
sl_consumer_new(const sl_consumer_config *cfg, sl_consumer **out)
{
    if (cfg->prefetch_records == 0 || cfg->prefetch_bytes == 0 || cfg->start > SL_START_GROUP ||
        (cfg->start == SL_START_GROUP && (cfg->group == NULL || cfg->group[0] == '\0'))) {
        return SL_EINVAL;
    }
    sl_consumer *c = sl_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SL_ENOMEM;
    }
    c->io.wake_fd = -1;
    c->ready_fd = -1;
    c->cfg = *cfg;
    c->stream_id = 1u - 2u; // the first open uses id 1
    int err = sl__copy_name(c->topic, cfg->topic, false);
    if (err == SL_OK) {
        err = sl__copy_name(c->group, cfg->group, true);
    }
    if (err == SL_OK) {
        err = sl__io_init(&c->io, cfg->broker, cfg->client_id ? cfg->client_id : "sluice-consumer",
                          cfg->heartbeat_ms, cfg->reconnect_backoff_max_ms,
                          SL__CLIENT_MAX_FRAME_BYTES, &consumer_ops, c, NULL, 0);
    }
    if (err == SL_OK) {
        c->ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        err = c->ready_fd < 0 ? SL_ENOMEM : sl__io_start(&c->io);
    }
    if (err != SL_OK) {
        sl_consumer_free(c);
        return err;
    }
    *out = c;
    return SL_OK;
}

static void
consumer_free_retired(sl_consumer *c)
{
    for (uint32_t i = 0; i < UINT32_MAX && c->retired != NULL; i++) {
        cbatch *b = c->retired;
        c->retired = b->next;
        c->buffered_bytes -= b->len;
        cbatch_free(b);
    }
}

// Hands out up to cap buffered records. Caller holds the mutex.
static size_t
consumer_take(sl_consumer *c, sl_consumed *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t guard = 0; guard < UINT32_MAX && n < cap && c->head != NULL; guard++) {
        cbatch *b = c->head;
        sl_record r;
        uint64_t off = 0;
        int err = b->left == 0 ? SL_ENOENT : sl_batch_iter_next(&b->it, &r, &off);
        if (err == SL_OK && off >= b->lo && off < b->hi) {
            out[n++] = (sl_consumed){.offset = off, .partition = b->partition, .record = r};
            b->left--;
            c->next_offset = off + 1;
        } else if (err != SL_OK) {
            c->head = b->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }
            b->next = c->retired;
            c->retired = b;
        }
    }
    c->buffered_records -= n;
    c->stats.records_polled_total += n;
    c->returned_end = c->next_offset;
    return n;
}

int
sl_consumer_poll(sl_consumer *c, sl_consumed *out, size_t cap, int64_t deadline_ns,
                 size_t *count_out)
{
    *count_out = 0;
    pthread_mutex_lock(&c->io.mutex);
    consumer_free_retired(c);
    if (c->cfg.auto_ack && c->returned_end > c->commit_target) {
        c->commit_target = c->returned_end; // at-least-once: what the last poll returned
    }
    int err = SL_OK;
    for (;;) { // bounded by deadline_ns
        if (c->buffered_records > 0 || c->closing) {
            break;
        }
        if (c->fatal != SL_OK) {
            err = c->fatal;
            break;
        }
        if (deadline_ns == SL_DEADLINE_NOW) {
            c->want_ready = true;
            err = SL_EAGAIN;
            break;
        }
        if (!sl__io_wait(&c->io, deadline_ns)) {
            err = SL_ETIMEDOUT;
            break;
        }
    }
    if (err == SL_OK && c->closing) {
        err = SL_ECLOSED;
    }
    if (err == SL_OK) {
        *count_out = consumer_take(c, out, cap);
        if (c->buffered_records == 0) {
            sl__drain_fd(c->ready_fd);
        }
    }
    pthread_mutex_unlock(&c->io.mutex);
    sl__io_wake(&c->io); // room in the window: the I/O thread tops demand up, sends commits
    return err;
}

int
sl_consumer_dispatch(sl_consumer *c, size_t max, int64_t deadline_ns, sl_record_cb cb, void *user,
                     size_t *count_out)
{
    sl_consumed recs[CONSUMER_DISPATCH_CHUNK];
    size_t n = 0;
    int err = sl_consumer_poll(c, recs, SL_MIN(max, SL_ARRAY_LEN(recs)), deadline_ns, &n);
    for (size_t i = 0; i < n; i++) {
        cb(&recs[i], user);
    }
    *count_out = n;
    return err;
}

int
sl_consumer_ack(sl_consumer *c, uint64_t offset)
{
    pthread_mutex_lock(&c->io.mutex);
    int err = offset >= c->returned_end ? SL_EINVAL : SL_OK;
    if (err == SL_OK && offset + 1 > c->commit_target) {
        c->commit_target = offset + 1;
    }
    pthread_mutex_unlock(&c->io.mutex);
    sl__io_wake(&c->io);
    return err;
}

int
sl_consumer_ready_fd(sl_consumer *c)
{
    return c->ready_fd;
}

void
sl_consumer_stats_get(sl_consumer *c, sl_consumer_stats *out)
{
    pthread_mutex_lock(&c->io.mutex);
    *out = c->stats;
    out->client = c->io.stats;
    out->buffered_records = c->buffered_records;
    out->buffered_bytes = c->buffered_bytes;
    out->next_offset = c->next_offset;
    pthread_mutex_unlock(&c->io.mutex);
}

void
sl_consumer_free(sl_consumer *c)
{
    if (c == NULL) {
        return;
    }
    if (c->io.thread_started) {
        pthread_mutex_lock(&c->io.mutex);
        if (c->cfg.auto_ack && c->returned_end > c->commit_target) {
            c->commit_target = c->returned_end;
        }
        c->closing = true;
        sl__io_wake(&c->io);
        int64_t deadline = sl_deadline_after_ms(CONSUMER_CLOSE_COMMIT_MS);
        while (c->io.connected && c->commit_sent < c->commit_target &&
               sl__io_wait(&c->io, deadline)) { // bounded by deadline
        }
        pthread_mutex_unlock(&c->io.mutex);
        // The COMMIT is encoded; give the I/O thread one round to write it.
        sl__io_wake(&c->io);
    }
    sl__io_stop(&c->io);
    consumer_free_retired(c);
    for (uint32_t i = 0; i < UINT32_MAX && c->head != NULL; i++) {
        cbatch *b = c->head;
        c->head = b->next;
        cbatch_free(b);
    }
    sl__io_fini(&c->io);
    if (c->ready_fd >= 0) {
        close(c->ready_fd);
    }
    sl_free(c, sizeof(*c));
}
