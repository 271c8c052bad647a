// The consumer: the I/O thread keeps a prefetch window of demand outstanding (REQUEST, in records
// and bytes, minus what is buffered), stores delivered batches trimmed to [first_offset,
// end_offset), and sends cumulative COMMITs; the application takes records with poll or
// dispatch. A paused application stops demand, never heartbeats, so it is never evicted as slow.
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sluice/error.h>

#include "client/consumer_internal.h"
#include "core/util.h"

#define CONSUMER_PREFETCH_RECORDS_DEFAULT 1000u
#define CONSUMER_PREFETCH_BYTES_DEFAULT   (4u * 1024u * 1024u)
// A stream closed with a retriable error is reopened after this long (or its hint).
#define CONSUMER_REOPEN_MS 500u
// How long sl_consumer_free waits for its last COMMIT to be written.
#define CONSUMER_CLOSE_COMMIT_MS 1000
// Records dispatch takes per poll round.
#define CONSUMER_DISPATCH_CHUNK 64u

typedef sl__cbatch cbatch;
typedef sl__cpart cpart;

static void
cbatch_free(cbatch *b)
{
    sl_free(b->buf, b->len);
    sl_free(b, sizeof(*b));
}

sl__cpart *
sl__consumer_part(sl_consumer *c, uint32_t partition)
{
    if (!c->group_mode) {
        return &c->parts[0];
    }
    return partition < c->part_count ? &c->parts[partition] : NULL;
}

// The part whose stream is stream_id, or NULL (a late frame for a stream already left).
static cpart *
part_by_stream(sl_consumer *c, uint32_t stream_id)
{
    for (uint32_t i = 0; i < c->part_count; i++) {
        if (c->parts[i].stream_id == stream_id && c->parts[i].stream_open) {
            return &c->parts[i];
        }
    }
    return NULL;
}

// Parts with a stream share the prefetch window in group mode.
static uint32_t
active_parts(const sl_consumer *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->part_count; i++) {
        n += c->parts[i].active ? 1 : 0;
    }
    return SL_MAX(n, 1u);
}

bool
sl__consumer_encode(sl_consumer *c, int (*enc)(sl_consumer *, uint8_t *, size_t, size_t *))
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
    const cpart *p = c->pumped;
    sl_proto_open_consume m = {.partition = c->cfg.partition,
                               .start_mode = (uint8_t)c->cfg.start,
                               .start_offset =
                                   c->cfg.start == SL_START_OFFSET ? c->cfg.start_offset : 0,
                               .topic = {c->topic, (uint16_t)strlen(c->topic)},
                               .group = {c->group, (uint16_t)strlen(c->group)}};
    if (c->group_mode) {
        // The broker starts the stream at the group's committed offset; the generation lets it
        // refuse an open from before a rebalance.
        m.start_mode = SL_START_GROUP;
        m.partition = p->partition;
        m.start_offset = c->grp.generation;
    } else if (p->have_position) {
        m.start_mode = SL_START_OFFSET; // resume exactly where the buffer ends
        m.start_offset = p->next_fetch;
        m.partition = p->partition; // the one STREAM_OK resolved
    }
    return sl_proto_encode_open_consume(at, room, c->next_stream_id, &m, len);
}

static int
enc_commit(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    sl_proto_commit m = {.offset = c->pumped->commit_target};
    return sl_proto_encode_commit(at, room, c->pumped->stream_id, &m, len);
}

static uint64_t
window_left(uint64_t window, uint64_t a, uint64_t b)
{
    return a + b >= window ? 0 : window - a - b;
}

static uint64_t
part_window_records(const sl_consumer *c)
{
    return SL_MAX(c->cfg.prefetch_records / active_parts(c), 1u);
}

static int
enc_request(sl_consumer *c, uint8_t *at, size_t room, size_t *len)
{
    return sl_proto_encode_request(at, room, c->pumped->stream_id, &c->request, len);
}

// Tops the window up when at least half of it is free in records or in bytes (fewer, larger
// REQUESTs), or when either outstanding demand ran out (the broker sends nothing while either
// is 0). Both increments go in one REQUEST; one of them may be 0.
static void
consumer_demand(sl_consumer *c, cpart *p)
{
    uint64_t window = part_window_records(c);
    uint64_t recs = window_left(window, p->buffered_records, p->outstanding_records);
    // The partitions share the buffer: each counts an equal part of what is buffered.
    uint64_t bytes =
        window_left(p->window_bytes, c->buffered_bytes / active_parts(c), p->outstanding_bytes);
    bool starved = (p->outstanding_records == 0 && recs > 0) ||
                   (p->outstanding_bytes < p->window_bytes / 2 && bytes > 0);
    bool worth = recs * 2 >= window || bytes * 2 >= p->window_bytes || starved;
    c->pumped = p;
    c->request = (sl_proto_request){.records = recs, .bytes = bytes};
    if (recs + bytes == 0 || !worth || !sl__consumer_encode(c, enc_request)) {
        return;
    }
    p->outstanding_records += recs;
    p->outstanding_bytes += bytes;
    c->stats.requested_records_total += recs;
}

static void
pump_part(sl_consumer *c, cpart *p, int64_t now, int64_t *wake_at)
{
    if (now < p->paused_until_ns) {
        *wake_at = SL_MIN(*wake_at, p->paused_until_ns);
        return;
    }
    c->pumped = p;
    if (!p->stream_open && c->fatal == SL_OK && sl__consumer_encode(c, enc_open)) {
        p->stream_id = c->next_stream_id;
        c->next_stream_id += 2;
        p->stream_open = true;
    }
    if (!p->stream_ready) {
        return;
    }
    if (p->commit_target > p->commit_sent && sl__consumer_encode(c, enc_commit)) {
        p->commit_sent = p->commit_target;
        c->stats.committed_offset = p->commit_sent;
        pthread_cond_broadcast(&c->io.cond);
    }
    if (!c->closing) {
        consumer_demand(c, p);
    }
}

static void
consumer_pump(void *h, int64_t now, int64_t *wake_at)
{
    sl_consumer *c = h;
    if (c->group_mode) {
        sl__group_pump(c, now, wake_at);
    }
    for (uint32_t i = 0; i < c->part_count; i++) {
        if (c->parts[i].active) {
            pump_part(c, &c->parts[i], now, wake_at);
        }
    }
}

static void
part_stream_gone(cpart *p)
{
    p->stream_open = p->stream_ready = false;
    p->outstanding_records = p->outstanding_bytes = 0; // demand dies with the stream
}

static void
consumer_connected(void *h, const sl_proto_hello_ok *ok)
{
    sl_consumer *c = h;
    SL_UNUSED(ok);
    for (uint32_t i = 0; i < c->part_count; i++) {
        part_stream_gone(&c->parts[i]);
    }
}

static void
consumer_disconnected(void *h)
{
    sl_consumer *c = h;
    for (uint32_t i = 0; i < c->part_count; i++) {
        part_stream_gone(&c->parts[i]);
    }
    if (c->group_mode) {
        sl__group_disconnected(c);
    }
}

// Copies one delivered batch, keeping only the records in [lo, hi). Returns records kept.
static int
consumer_keep_batch(sl_consumer *c, cpart *p, const uint8_t *data, const sl_batch_header *vh,
                    uint64_t lo, uint64_t hi, uint16_t redeliveries)
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
    b->partition = p->partition;
    b->redelivery_count = redeliveries;
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
    p->next_fetch = last_end;
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
consumer_deliver(sl_consumer *c, cpart *p, const sl_proto_deliver *d)
{
    if (c->group_mode && d->redelivery_count > 0 && d->first_offset < p->next_fetch) {
        // The broker went back to the committed offset (ack timeout): take them again.
        p->next_fetch = d->first_offset;
    }
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
            err = consumer_keep_batch(c, p, data, &h, SL_MAX(d->first_offset, p->next_fetch),
                                      d->end_offset, d->redelivery_count);
        }
        if (err < 0) {
            return err;
        }
        kept += (uint64_t)err;
    }
    bool was_empty = c->buffered_records == 0;
    c->buffered_records += kept;
    p->buffered_records += kept;
    c->stats.records_delivered_total += kept;
    if (d->redelivery_count > 0) {
        c->stats.redelivered_records_total += kept;
    }
    c->stats.log_end_offset = d->log_end_offset;
    p->log_end_offset = d->log_end_offset;
    p->outstanding_records -= SL_MIN(p->outstanding_records, counted);
    p->outstanding_bytes -= SL_MIN(p->outstanding_bytes, d->batches.size_bytes);
    if (was_empty && kept > 0) {
        sl__signal_fd(c->ready_fd);
    }
    return SL_OK;
}

static void
consumer_stream_closed(sl_consumer *c, cpart *p, const sl_proto_error *e, int64_t now)
{
    int err = sl_proto_status_from_code(e->code);
    part_stream_gone(p);
    uint32_t wait = e->retry_after_ms != 0 ? e->retry_after_ms : CONSUMER_REOPEN_MS;
    p->paused_until_ns = now + (int64_t)sl__io_jitter_ms(&c->io, wait) * 1000000;
    if (c->group_mode && err == SL_EBUSY) {
        // Revoked or stale: the next ASSIGN (or heartbeat answer) says what is ours now.
        return;
    }
    if (err == SL_ENOENT || err == SL_EINVAL || err == SL_ERANGE || err == SL_ENOTSUP) {
        c->fatal = err;
        sl__signal_fd(c->ready_fd);
    }
}

static int
consumer_frame(void *h, const sl_frame *f, int64_t now)
{
    sl_consumer *c = h;
    if (f->header.stream_id == 0) {
        int err = c->group_mode ? sl__group_frame(c, f, now) : SL_ENOENT;
        if (err != SL_ENOENT) {
            return err;
        }
        if (f->header.type != SL_FRAME_THROTTLE) {
            return SL_EPROTO;
        }
        sl__io_count_throttle(&c->io, f->u.throttle.reason, f->u.throttle.retry_after_ms);
        return SL_OK;
    }
    cpart *p = part_by_stream(c, f->header.stream_id);
    if (p == NULL) {
        return SL_OK; // a late frame for a stream already left
    }
    switch (f->header.type) {
    case SL_FRAME_STREAM_OK:
        p->next_fetch = SL_MAX(f->u.stream_ok.start_offset, p->have_position ? p->next_fetch : 0);
        if (c->group_mode) {
            p->next_fetch = f->u.stream_ok.start_offset; // the group's committed offset rules
        }
        if (!p->have_position || c->group_mode) {
            p->next_offset = p->returned_end = p->next_fetch;
        }
        p->have_position = true;
        p->partition = f->u.stream_ok.partition;
        // A byte demand below one batch could stall: the broker sends whole batches.
        p->window_bytes =
            SL_MAX(c->cfg.prefetch_bytes / active_parts(c), f->u.stream_ok.max_batch_bytes);
        p->stream_ready = true;
        p->commit_sent = 0; // the new stream hears the latest commit again
        return SL_OK;
    case SL_FRAME_DELIVER:
        return consumer_deliver(c, p, &f->u.deliver);
    case SL_FRAME_THROTTLE:
        sl__io_count_throttle(&c->io, f->u.throttle.reason, f->u.throttle.retry_after_ms);
        return SL_OK;
    case SL_FRAME_STREAM_CLOSE:
    case SL_FRAME_ERROR:
        consumer_stream_closed(c, p, &f->u.error, now);
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
    if (c->group_mode) {
        sl__group_unlocked(c);
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

static bool
group_limits_ok(const sl_consumer_config *cfg)
{
    bool session = cfg->session_timeout_ms == 0 ||
                   (cfg->session_timeout_ms >= SL_PROTO_SESSION_TIMEOUT_MS_MIN &&
                    cfg->session_timeout_ms <= SL_PROTO_SESSION_TIMEOUT_MS_MAX);
    bool ack = cfg->ack_timeout_ms == 0 || (cfg->ack_timeout_ms >= SL_PROTO_ACK_TIMEOUT_MS_MIN &&
                                            cfg->ack_timeout_ms <= SL_PROTO_ACK_TIMEOUT_MS_MAX);
    return session && ack && cfg->max_ack_pending <= SL_PROTO_MAX_ACK_PENDING_MAX &&
           cfg->max_redeliveries <= SL_PROTO_MAX_REDELIVERIES_MAX;
}

static int
consumer_parts_init(sl_consumer *c)
{
    c->part_count = c->group_mode ? SL_PROTO_PARTITIONS_MAX : 1;
    c->parts = sl_calloc(c->part_count, sizeof(*c->parts));
    if (c->parts == NULL) {
        c->part_count = 0;
        return SL_ENOMEM;
    }
    for (uint32_t i = 0; i < c->part_count; i++) {
        c->parts[i].partition = c->group_mode ? i : c->cfg.partition;
    }
    c->parts[0].active = !c->group_mode;
    return SL_OK;
}

int
sl_consumer_new(const sl_consumer_config *cfg, sl_consumer **out)
{
    bool group_mode = cfg->start == SL_START_GROUP ||
                      (cfg->group != NULL && cfg->partition == SL_PROTO_PARTITION_ANY);
    if (cfg->prefetch_records == 0 || cfg->prefetch_bytes == 0 || cfg->start > SL_START_GROUP ||
        (group_mode && (cfg->group == NULL || cfg->group[0] == '\0')) ||
        (group_mode && cfg->start == SL_START_OFFSET) || !group_limits_ok(cfg) ||
        (!group_mode && cfg->partition == SL_PROTO_PARTITION_ANY)) {
        return SL_EINVAL;
    }
    sl_consumer *c = sl_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SL_ENOMEM;
    }
    c->io.wake_fd = -1;
    c->ready_fd = -1;
    c->cfg = *cfg;
    c->group_mode = group_mode;
    c->next_stream_id = 1;
    int err = sl__copy_name(c->topic, cfg->topic, false);
    if (err == SL_OK) {
        err = sl__copy_name(c->group, cfg->group, true);
    }
    if (err == SL_OK) {
        err = consumer_parts_init(c);
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

void
sl__consumer_part_drop(sl_consumer *c, sl__cpart *p)
{
    part_stream_gone(p);
    cbatch **link = &c->head;
    c->tail = NULL;
    // Bounded by the buffered batches: each pass removes one or moves on.
    while (*link != NULL) {
        cbatch *b = *link;
        if (b->partition != p->partition) {
            c->tail = b;
            link = &b->next;
            continue;
        }
        *link = b->next;
        c->buffered_records -= b->left;
        c->buffered_bytes -= b->len;
        cbatch_free(b);
    }
    if (c->buffered_records == 0) {
        sl__drain_fd(c->ready_fd);
    }
    uint32_t partition = p->partition;
    memset(p, 0, sizeof(*p));
    p->partition = partition;
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
            out[n++] = (sl_consumed){.offset = off,
                                     .partition = b->partition,
                                     .record = r,
                                     .redelivery_count = b->redelivery_count};
            b->left--;
            cpart *p = sl__consumer_part(c, b->partition);
            p->next_offset = off + 1;
            p->returned_end = p->next_offset;
            p->buffered_records--;
            c->stats.next_offset = off + 1;
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
    return n;
}

// At-least-once: what the last poll returned counts as processed at the next one.
static void
auto_ack(sl_consumer *c)
{
    for (uint32_t i = 0; c->cfg.auto_ack && i < c->part_count; i++) {
        cpart *p = &c->parts[i];
        if (p->active && p->returned_end > p->commit_target) {
            p->commit_target = p->returned_end;
        }
    }
}

int
sl_consumer_poll(sl_consumer *c, sl_consumed *out, size_t cap, int64_t deadline_ns,
                 size_t *count_out)
{
    *count_out = 0;
    pthread_mutex_lock(&c->io.mutex);
    consumer_free_retired(c);
    auto_ack(c);
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

static int
ack_part(sl_consumer *c, cpart *p, uint64_t offset)
{
    if (p == NULL || !p->active) {
        return SL_ENOENT;
    }
    if (offset >= p->returned_end) {
        return SL_EINVAL;
    }
    if (offset + 1 > p->commit_target) {
        p->commit_target = offset + 1;
    }
    return SL_OK;
}

int
sl_consumer_ack(sl_consumer *c, uint64_t offset)
{
    if (c->group_mode) {
        return SL_EINVAL;
    }
    pthread_mutex_lock(&c->io.mutex);
    int err = ack_part(c, &c->parts[0], offset);
    pthread_mutex_unlock(&c->io.mutex);
    sl__io_wake(&c->io);
    return err;
}

int
sl_consumer_ack_record(sl_consumer *c, uint32_t partition, uint64_t offset)
{
    pthread_mutex_lock(&c->io.mutex);
    cpart *p = sl__consumer_part(c, partition);
    int err = p != NULL && p->partition == partition ? ack_part(c, p, offset) : SL_ENOENT;
    pthread_mutex_unlock(&c->io.mutex);
    sl__io_wake(&c->io);
    return err;
}

void
sl_consumer_assignment(sl_consumer *c, uint32_t *partitions, size_t cap, size_t *count_out,
                       uint32_t *generation_out)
{
    pthread_mutex_lock(&c->io.mutex);
    size_t n = 0;
    for (uint32_t i = 0; i < c->part_count; i++) {
        if (c->parts[i].active) {
            if (n < cap) {
                partitions[n] = c->parts[i].partition;
            }
            n++;
        }
    }
    *count_out = SL_MIN(n, cap);
    if (generation_out != NULL) {
        *generation_out = c->grp.generation;
    }
    pthread_mutex_unlock(&c->io.mutex);
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
    if (!c->group_mode) {
        out->next_offset = c->parts[0].next_offset;
    }
    out->generation = c->grp.generation;
    out->rebalances_total = c->grp.rebalances_seen;
    out->assigned_partitions = 0;
    for (uint32_t i = 0; i < c->part_count; i++) {
        out->assigned_partitions += c->parts[i].active ? 1 : 0;
    }
    pthread_mutex_unlock(&c->io.mutex);
}

// True while a part has a commit not yet encoded (close waits for those).
static bool
commits_pending(const sl_consumer *c)
{
    for (uint32_t i = 0; i < c->part_count; i++) {
        const cpart *p = &c->parts[i];
        if (p->active && p->stream_ready && p->commit_sent < p->commit_target) {
            return true;
        }
    }
    return false;
}

void
sl_consumer_free(sl_consumer *c)
{
    if (c == NULL) {
        return;
    }
    if (c->io.thread_started) {
        pthread_mutex_lock(&c->io.mutex);
        auto_ack(c);
        c->closing = true;
        sl__io_wake(&c->io);
        int64_t deadline = sl_deadline_after_ms(CONSUMER_CLOSE_COMMIT_MS);
        while (c->io.connected && commits_pending(c) &&
               sl__io_wait(&c->io, deadline)) { // bounded by deadline
        }
        if (c->group_mode && c->io.connected) {
            sl__group_leave(c, deadline); // after the commits: the broker stores them first
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
    sl_free(c->parts, (size_t)c->part_count * sizeof(*c->parts));
    sl_free(c, sizeof(*c));
}
