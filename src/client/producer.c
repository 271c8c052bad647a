// The producer: user threads copy records into a bounded buffer (an sl_budget of buffer_bytes) and
// into the open batch; the I/O thread seals batches on linger or size, sends them within the
// broker's credit, keeps them (still charged) until ACKed, honours THROTTLE retry-after, and after
// a reconnect resends what was not acked under the same producer id and sequences (idempotence).
#include <stdlib.h>
#include <string.h>

#include <sluice/budget.h>
#include <sluice/error.h>

#include "client/client_internal.h"
#include "core/util.h"

#define PRODUCER_BUFFER_BYTES_DEFAULT (32u * 1024u * 1024u)
#define PRODUCER_BATCH_BYTES_DEFAULT  (1024u * 1024u)
#define PRODUCER_LINGER_MS_DEFAULT    5u
// A stream the broker closed with a retriable error is reopened after this long (or its hint).
#define PRODUCER_REOPEN_MS 500u
// PRODUCE payload before the batches: acks, reserved, batch count, first_seq.
#define PRODUCE_FIXED_BYTES 8u
// Batches are sealed at half the largest credit window the broker has offered on the stream (two
// in flight), clamped to [PRODUCER_SEAL_BYTES_MIN, batch_bytes]. Before the first CREDIT they are
// sealed at PRODUCER_SEAL_BYTES_INITIAL: a broker starts with small windows (64 KiB in sluiced)
// and widens them as it measures the rate, so a first batch of batch_bytes might never fit.
#define PRODUCER_SEAL_BYTES_MIN     2048u
#define PRODUCER_SEAL_BYTES_INITIAL (16u * 1024u)

typedef struct pbatch {
    struct pbatch *next;
    uint8_t *buf; // the batch (finished once sealed); freed when acked, charge kept till reported
    size_t cap;
    size_t len;
    sl_batch_builder builder; // while open
    uint64_t seq;             // local sequence of the first record
    uint32_t record_count;
    uint64_t charge_bytes; // reserved on the buffer budget for these records
    uint64_t built_pid;    // producer id and wire sequence written into the header
    uint32_t built_wire_seq;
    uint32_t acked_count;
    uint64_t offset; // of the first record, from the first ACK that covered it
    bool offsets_known;
    int err;
} pbatch;

struct sl_producer {
    sl__io io;
    sl_producer_config cfg; // strings point into the fields below
    char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
    sl_budget *buffer;
    int room_fd;
    // All below under io.mutex.
    pbatch *open;          // receiving records; NULL when none
    int64_t open_since_ns; // when open got its first record
    pbatch *head;          // sealed, oldest first: [head, unsent) sent and unacked
    pbatch *tail;
    pbatch *unsent;    // first batch not yet sent on the current stream
    pbatch *done_head; // reported or ready to report, oldest first
    pbatch *done_tail;
    uint64_t next_seq;  // local sequence of the next record
    uint64_t pid;       // broker-assigned producer id; 0 before the first STREAM_OK
    uint32_t wire_base; // wire sequence = (uint32_t)(local sequence + wire_base)
    uint32_t stream_id;
    bool stream_open;       // OPEN_PRODUCE sent
    bool stream_ready;      // STREAM_OK received
    uint32_t partition;     // resolved by STREAM_OK
    uint32_t seal_bytes;    // the open batch is sealed at this size (adapts to credit)
    uint64_t credit_window; // most credit seen available at once on the current stream
    uint64_t granted_bytes; // cumulative credit of the current stream
    uint64_t sent_bytes;    // cumulative PRODUCE bytes of the current stream
    bool credit_waiting;
    int64_t paused_until_ns; // THROTTLE or reopen delay
    bool flush;
    bool closing;
    int fatal;      // non-retriable stream error: sends fail with it
    bool want_room; // a send got SL_EAGAIN since the last room callback
    sl_producer_stats stats;
};

static int batch_finish(const sl_producer *p, sl_batch_builder *b, size_t *len_out);

static uint32_t
wire_seq(const sl_producer *p, uint64_t seq)
{
    return (uint32_t)(seq + p->wire_base);
}

static void
batch_free(pbatch *b)
{
    if (b->buf != NULL) {
        sl_free(b->buf, b->cap);
    }
    sl_free(b, sizeof(*b));
}

static pbatch *
batch_new(size_t cap)
{
    pbatch *b = sl_calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->buf = sl_alloc(cap);
    if (b->buf == NULL) {
        sl_free(b, sizeof(*b));
        return NULL;
    }
    b->cap = cap;
    b->offset = SL_OFFSET_NONE;
    sl_batch_builder_init(&b->builder, b->buf, cap);
    return b;
}

// Finishes the open batch and queues it for sending. Caller holds the mutex.
static void
producer_seal(sl_producer *p)
{
    pbatch *b = p->open;
    if (b == NULL || b->record_count == 0) {
        return;
    }
    sl_batch_builder_set_producer(&b->builder, p->pid, wire_seq(p, b->seq));
    b->built_pid = p->pid;
    b->built_wire_seq = wire_seq(p, b->seq);
    int err = batch_finish(p, &b->builder, &b->len);
    SL_ASSERT(err == SL_OK); // a non-empty batch always finishes (uncompressed at worst)
    p->open = NULL;
    // A batch sealed by linger may fill a fraction of its buffer: keep only what it uses, so
    // real memory stays close to what the buffer budget charged.
    uint8_t *tight = b->len < b->cap / 2 ? sl_alloc(b->len) : NULL;
    if (tight != NULL) {
        memcpy(tight, b->buf, b->len);
        sl_free(b->buf, b->cap);
        b->buf = tight;
        b->cap = b->len;
    }
    if (p->tail == NULL) {
        p->head = b;
    } else {
        p->tail->next = b;
    }
    p->tail = b;
    if (p->unsent == NULL) {
        p->unsent = b;
    }
}

// Moves the acked or failed front batch to the report list. Caller holds the mutex.
static void
producer_retire_head(sl_producer *p, int err)
{
    pbatch *b = p->head;
    SL_ASSERT(b != NULL && b != p->unsent);
    p->head = b->next;
    if (p->head == NULL) {
        p->tail = NULL;
    }
    b->next = NULL;
    b->err = err;
    sl_free(b->buf, b->cap); // the data is no longer needed; the budget charge stays
    b->buf = NULL;
    b->cap = 0;
    if (err == SL_OK) {
        p->stats.records_acked_total += b->record_count;
    } else {
        p->stats.records_failed_total += b->record_count;
    }
    if (p->done_tail == NULL) {
        p->done_head = b;
    } else {
        p->done_tail->next = b;
    }
    p->done_tail = b;
    pthread_cond_broadcast(&p->io.cond);
}

// Adds a record read from a batch to another batch, headers included (decoded into a temporary
// array: the builder takes them as sl_header views). *cost grows by its buffer cost.
static int
record_copy(sl_batch_builder *nb, sl_record *r, uint64_t *cost)
{
    sl_header *hs = NULL;
    size_t hs_size = (size_t)r->header_count * sizeof(*hs);
    if (r->header_count > 0 && (hs = sl_alloc(hs_size)) == NULL) {
        return SL_ENOMEM;
    }
    int err = SL_OK;
    sl_header_cursor cur = {0};
    for (uint16_t h = 0; h < r->header_count && err == SL_OK; h++) {
        err = sl_record_header_next(r, &cur, &hs[h]);
    }
    r->headers = hs;
    if (err == SL_OK) {
        *cost += sl_budget_record_cost(sl_record_encoded_size(r));
        err = sl_batch_builder_add(nb, r);
    }
    if (hs != NULL) {
        sl_free(hs, hs_size);
    }
    return err;
}

// Finishes a batch, compressed with the configured codec when there is one. The codec writes to
// a scratch buffer first (the builder keeps the smaller form); without memory for it, or when
// compression does not pay, the batch is stored uncompressed, which every reader accepts.
static int
batch_finish(const sl_producer *p, sl_batch_builder *b, size_t *len_out)
{
    if (p->cfg.compression == SL_COMPRESSION_NONE) {
        return sl_batch_builder_finish(b, len_out);
    }
    size_t scratch_cap = b->used - SL_BATCH_HEADER_BYTES;
    uint8_t *scratch = sl_alloc(scratch_cap);
    int err = scratch == NULL ? SL_ENOMEM
                              : sl_batch_builder_finish_compressed(b, p->cfg.compression, scratch,
                                                                   scratch_cap, len_out);
    if (scratch != NULL) {
        sl_free(scratch, scratch_cap);
    }
    return err == SL_OK ? SL_OK : sl_batch_builder_finish(b, len_out);
}

// The uncompressed form of a batch: src itself, or a decompressed copy in *tmp (caller frees
// *tmp_cap bytes when *tmp is not NULL).
static int
batch_plain(const pbatch *src, const uint8_t **plain, size_t *plain_len, uint8_t **tmp,
            size_t *tmp_cap)
{
    sl_batch_header h;
    *tmp = NULL;
    *plain = src->buf;
    *plain_len = src->len;
    int err = sl_batch_header_decode(src->buf, src->len, &h);
    if (err != SL_OK || (h.flags & 7u) == SL_COMPRESSION_NONE) {
        return err;
    }
    err = sl_batch_decompressed_length(&h, tmp_cap);
    if (err == SL_OK && (*tmp = sl_alloc(*tmp_cap)) == NULL) {
        err = SL_ENOMEM;
    }
    if (err == SL_OK) {
        err = sl_batch_decompress(src->buf, src->len, *tmp, *tmp_cap, plain_len);
        *plain = *tmp;
    }
    if (err != SL_OK && *tmp != NULL) {
        sl_free(*tmp, *tmp_cap);
        *tmp = NULL;
    }
    return err;
}

// Encodes records [from, from + count) of batch src into a new batch of the current producer
// identity starting at local sequence seq. *cost_out gets their buffer cost.
static int
batch_encode_range(sl_producer *p, const pbatch *src, uint32_t from, uint32_t count, uint64_t seq,
                   uint8_t **buf_out, size_t *cap_out, size_t *len_out, uint64_t *cost_out)
{
    const uint8_t *plain = NULL;
    size_t plain_len = 0;
    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    int err = batch_plain(src, &plain, &plain_len, &tmp, &tmp_cap);
    if (err != SL_OK) {
        return err;
    }
    size_t cap = plain_len; // a subset never takes more room than the whole
    uint8_t *buf = sl_alloc(cap);
    err = buf == NULL ? SL_ENOMEM : SL_OK;
    sl_batch_builder nb;
    sl_batch_iter it;
    uint64_t cost = 0;
    if (err == SL_OK) {
        sl_batch_builder_init(&nb, buf, cap);
        sl_batch_builder_set_producer(&nb, p->pid, wire_seq(p, seq));
        err = sl_batch_iter_init(&it, plain, plain_len);
    }
    for (uint32_t i = 0; i < from + count && err == SL_OK; i++) {
        sl_record r;
        uint64_t off;
        err = sl_batch_iter_next(&it, &r, &off);
        if (err == SL_OK && i >= from) {
            err = record_copy(&nb, &r, &cost);
        }
    }
    if (err == SL_OK) {
        err = batch_finish(p, &nb, len_out);
    }
    if (tmp != NULL) {
        sl_free(tmp, tmp_cap);
    }
    if (err != SL_OK) {
        sl_free(buf, buf == NULL ? 0 : cap);
        return err;
    }
    *buf_out = buf;
    *cap_out = cap;
    *cost_out = cost;
    return SL_OK;
}

// Re-encodes a batch whose header carries a stale producer id or sequence (built before the
// broker assigned them, or before it forgot this producer).
static int
batch_rebuild(sl_producer *p, pbatch *b)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    uint64_t cost = 0;
    int err = batch_encode_range(p, b, 0, b->record_count, b->seq, &buf, &cap, &len, &cost);
    if (err != SL_OK) {
        return err;
    }
    sl_free(b->buf, b->cap);
    b->buf = buf;
    b->cap = cap;
    b->len = len;
    b->built_pid = p->pid;
    b->built_wire_seq = wire_seq(p, b->seq);
    return SL_OK;
}

// Splits an unsent, unacked batch in two halves (the second follows it in the queue), for a
// batch larger than the credit window the broker offers. The buffer charge is split exactly.
static int
batch_split(sl_producer *p, pbatch *b)
{
    SL_ASSERT(b->record_count > 1 && b->acked_count == 0);
    uint32_t half = b->record_count / 2;
    pbatch *nb = sl_calloc(1, sizeof(*nb));
    if (nb == NULL) {
        return SL_ENOMEM;
    }
    uint8_t *a_buf = NULL;
    size_t a_cap = 0;
    size_t a_len = 0;
    uint64_t a_cost = 0;
    int err = batch_encode_range(p, b, 0, half, b->seq, &a_buf, &a_cap, &a_len, &a_cost);
    if (err == SL_OK) {
        err = batch_encode_range(p, b, half, b->record_count - half, b->seq + half, &nb->buf,
                                 &nb->cap, &nb->len, &nb->charge_bytes);
        if (err != SL_OK) {
            sl_free(a_buf, a_cap);
        }
    }
    if (err != SL_OK) {
        sl_free(nb, sizeof(*nb));
        return err;
    }
    // What the records cost when sent stays as charged; the remainder goes with the first half.
    nb->charge_bytes = SL_MIN(nb->charge_bytes, b->charge_bytes);
    nb->seq = b->seq + half;
    nb->record_count = b->record_count - half;
    nb->offset = SL_OFFSET_NONE;
    nb->built_pid = p->pid;
    nb->built_wire_seq = wire_seq(p, nb->seq);
    nb->next = b->next;
    sl_free(b->buf, b->cap);
    b->buf = a_buf;
    b->cap = a_cap;
    b->len = a_len;
    b->record_count = half;
    b->charge_bytes -= nb->charge_bytes;
    b->built_pid = p->pid;
    b->built_wire_seq = wire_seq(p, b->seq);
    b->next = nb;
    if (p->tail == b) {
        p->tail = nb;
    }
    SL_UNUSED(a_cost);
    return SL_OK;
}

// Encodes the next unsent batch as one PRODUCE frame if credit and buffer room allow.
static bool
producer_send_one(sl_producer *p)
{
    pbatch *b = p->unsent;
    if (b->built_pid != p->pid || b->built_wire_seq != wire_seq(p, b->seq)) {
        if (batch_rebuild(p, b) != SL_OK) {
            return false; // retried on the next round
        }
    }
    uint64_t frame_bytes = SL_PROTO_FRAME_HEADER_BYTES + PRODUCE_FIXED_BYTES + b->len;
    if (p->credit_window > 0 && frame_bytes > p->credit_window && b->record_count > 1 &&
        b->acked_count == 0) {
        // It would wait for credit the broker never offers at once: send it in halves.
        return batch_split(p, b) == SL_OK;
    }
    if (p->sent_bytes + frame_bytes > p->granted_bytes) {
        if (!p->credit_waiting) {
            p->io.stats.credit_waits_total++;
            p->credit_waiting = true;
        }
        return false;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&p->io.conn, &at);
    sl_proto_produce msg = {.acks = (uint8_t)p->cfg.acks,
                            .first_seq = wire_seq(p, b->seq),
                            .batches = {.data = b->buf, .size_bytes = b->len, .batch_count = 1}};
    size_t len = 0;
    if (sl_proto_encode_produce(at, room, p->stream_id, &msg, &len) != SL_OK) {
        return false; // the write buffer drains first
    }
    sl__conn_commit(&p->io.conn, len);
    p->credit_waiting = false;
    p->sent_bytes += len;
    p->unsent = b->next;
    if (p->cfg.acks == SL_ACKS_NONE) {
        producer_retire_head(p, SL_OK);
    }
    return true;
}

static void
producer_open_stream(sl_producer *p)
{
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&p->io.conn, &at);
    // A producer id is tied to one partition: after the first STREAM_OK, reopen that one.
    sl_proto_open_produce msg = {.partition = p->pid != 0 ? p->partition : p->cfg.partition,
                                 .producer_id = p->pid,
                                 .topic = {p->topic, (uint16_t)strlen(p->topic)}};
    size_t len = 0;
    uint32_t id = p->stream_id + 2; // odd ids, new per open: a late frame never hits a new stream
    if (sl_proto_encode_open_produce(at, room, id, &msg, &len) == SL_OK) {
        sl__conn_commit(&p->io.conn, len);
        p->stream_id = id;
        p->stream_open = true;
        p->granted_bytes = p->sent_bytes = 0;
        p->credit_window = 0;
    }
}

static void
producer_pump(void *h, int64_t now, int64_t *wake_at)
{
    sl_producer *p = h;
    if (p->open != NULL && p->open->record_count > 0) {
        int64_t due = p->open_since_ns + (int64_t)p->cfg.linger_ms * 1000000;
        if (p->flush || p->closing || now >= due) {
            producer_seal(p);
        } else {
            *wake_at = SL_MIN(*wake_at, due);
        }
    }
    if (now < p->paused_until_ns) {
        *wake_at = SL_MIN(*wake_at, p->paused_until_ns);
        return;
    }
    if (!p->stream_open && p->fatal == SL_OK) {
        producer_open_stream(p);
    }
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX && p->stream_ready &&
                         p->unsent != NULL && producer_send_one(p);
         i++) {
    }
}

static void
producer_connected(void *h, const sl_proto_hello_ok *ok)
{
    sl_producer *p = h;
    SL_UNUSED(ok);
    p->stream_open = p->stream_ready = false;
    p->paused_until_ns = 0;
}

// Makes every unacked batch go again (from the first); counts those already sent once.
static void
producer_rewind(sl_producer *p)
{
    for (pbatch *b = p->head; b != NULL && b != p->unsent; b = b->next) { // bounded: the list
        p->stats.batches_resent_total++;
    }
    p->unsent = p->head;
}

static void
producer_disconnected(void *h)
{
    sl_producer *p = h;
    p->stream_open = p->stream_ready = false;
    producer_rewind(p); // everything unacked goes again on the next stream
}

// Marks the first n records (from the front) acked without offsets: the broker's handshake said
// it holds them (a reconnect after their ACK was lost).
static void
producer_ack_through(sl_producer *p, uint32_t next_wire)
{
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX && p->head != NULL; i++) {
        pbatch *b = p->head;
        int32_t ahead = (int32_t)(next_wire - wire_seq(p, b->seq));
        if (ahead < (int32_t)b->record_count) {
            return; // a batch the broker holds only partly is resent whole (it deduplicates)
        }
        if (b->acked_count == 0) {
            b->offset = SL_OFFSET_NONE;
        }
        if (p->unsent == b) {
            p->unsent = b->next;
        }
        producer_retire_head(p, SL_OK);
    }
}

static void
producer_stream_ok(sl_producer *p, const sl_proto_stream_ok *ok)
{
    p->partition = ok->partition;
    uint64_t front =
        p->head != NULL ? p->head->seq : (p->open != NULL ? p->open->seq : p->next_seq);
    bool same = p->pid != 0 && ok->producer_id == p->pid;
    if (same && (int32_t)(ok->next_seq - wire_seq(p, front)) >= 0) {
        producer_ack_through(p, ok->next_seq);
    } else {
        // A new identity (first connect), or a broker that no longer knows where this producer
        // was (another id, or ours with a sequence behind what it already acked: its producer
        // state was lost). Number the unacked records from the sequence it expects. Records it
        // had stored but not acked can then be written twice (docs/api/client.md, "Duplicates").
        if (p->pid != 0) {
            p->stats.identity_resets_total++;
        }
        p->pid = ok->producer_id;
        p->stats.producer_id = ok->producer_id;
        p->wire_base = ok->next_seq - (uint32_t)front;
    }
    p->stream_ready = true;
}

static void
producer_ack(sl_producer *p, const sl_proto_ack *ack)
{
    uint64_t next_offset = ack->base_offset;
    // Batches past unsent can be acked too: they were sent before a rewind (TOPIC_FULL).
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX && p->head != NULL; i++) {
        pbatch *b = p->head;
        int32_t covered = (int32_t)(ack->seq_end - wire_seq(p, b->seq));
        if (covered <= (int32_t)b->acked_count) {
            return;
        }
        uint32_t upto = SL_MIN((uint32_t)covered, b->record_count);
        if (b->acked_count == 0) {
            b->offset = next_offset;
            b->offsets_known = true;
        } else if (b->offset + b->acked_count != next_offset) {
            b->offsets_known = false;
        }
        next_offset += upto - b->acked_count;
        b->acked_count = upto;
        if (upto < b->record_count) {
            return;
        }
        if (!b->offsets_known) {
            b->offset = SL_OFFSET_NONE;
        }
        if (p->unsent == b) {
            p->unsent = b->next;
        }
        producer_retire_head(p, SL_OK);
    }
}

// Cumulative credit; the largest allowance seen at once sizes the batches to come.
static void
producer_credit(sl_producer *p, uint64_t granted_total)
{
    p->granted_bytes = SL_MAX(p->granted_bytes, granted_total);
    uint64_t avail = p->granted_bytes - SL_MIN(p->sent_bytes, p->granted_bytes);
    p->credit_window = SL_MAX(p->credit_window, avail);
    uint64_t overhead = SL_PROTO_FRAME_HEADER_BYTES + PRODUCE_FIXED_BYTES;
    uint64_t half = p->credit_window / 2 > overhead ? p->credit_window / 2 - overhead : 0;
    p->seal_bytes = (uint32_t)SL_MIN(SL_MAX(half, PRODUCER_SEAL_BYTES_MIN), p->cfg.batch_bytes);
}

static bool
status_retriable(int err)
{
    return err == SL_OK || err == SL_EFULL || err == SL_EAGAIN || err == SL_ETHROTTLED ||
           err == SL_EBUSY || err == SL_ETIMEDOUT || err == SL_ECLOSED || err == SL_ENOSPC ||
           err == SL_ECONNRESET;
}

// A closed stream is reopened (after its hint) unless the error can never clear (unknown topic,
// bad partition): then every buffered record fails with it.
static void
producer_stream_closed(sl_producer *p, const sl_proto_error *e, int64_t now)
{
    int err = sl_proto_status_from_code(e->code);
    producer_disconnected(p);
    uint32_t wait = e->retry_after_ms != 0 ? e->retry_after_ms : PRODUCER_REOPEN_MS;
    p->paused_until_ns = now + (int64_t)sl__io_jitter_ms(&p->io, wait) * 1000000;
    if (status_retriable(err)) {
        return;
    }
    p->fatal = err; // from now on sends fail with it, so nothing new is buffered
    producer_seal(p);
    p->unsent = NULL;
    for (uint32_t i = 0; i < UINT32_MAX && p->head != NULL; i++) {
        producer_retire_head(p, err);
    }
}

static int
producer_frame(void *h, const sl_frame *f, int64_t now)
{
    sl_producer *p = h;
    uint32_t sid = f->header.stream_id;
    if (sid != 0 && sid != p->stream_id) {
        return SL_OK; // a late frame for a stream this producer already left
    }
    switch (f->header.type) {
    case SL_FRAME_STREAM_OK:
        producer_stream_ok(p, &f->u.stream_ok);
        return SL_OK;
    case SL_FRAME_CREDIT:
        producer_credit(p, f->u.credit.granted_total_bytes);
        return SL_OK;
    case SL_FRAME_ACK:
        producer_ack(p, &f->u.ack);
        return SL_OK;
    case SL_FRAME_THROTTLE: {
        uint32_t wait = sl__io_jitter_ms(&p->io, f->u.throttle.retry_after_ms);
        sl__io_count_throttle(&p->io, f->u.throttle.reason, wait);
        p->paused_until_ns = now + (int64_t)wait * 1000000;
        // THROTTLE is advice on top of credit (docs/protocol.md): what is in flight stays in
        // flight. Only "topic full" (policy REJECT) refuses data, so then everything unacked is
        // resent after the pause; the broker drops sequences it already has.
        if (f->u.throttle.reason == SL_THROTTLE_TOPIC_FULL) {
            producer_rewind(p);
        }
        return SL_OK;
    }
    case SL_FRAME_STREAM_CLOSE:
    case SL_FRAME_ERROR:
        producer_stream_closed(p, &f->u.error, now);
        return SL_OK;
    default:
        return SL_EPROTO;
    }
}

// Reports what is ready, outside the lock, when a callback is configured.
static void
producer_unlocked(void *h)
{
    sl_producer *p = h;
    if (p->cfg.delivery_cb == NULL) {
        return;
    }
    for (uint32_t i = 0; i < UINT32_MAX; i++) { // bounded by the list, which only shrinks here
        pthread_mutex_lock(&p->io.mutex);
        pbatch *b = p->done_head;
        if (b != NULL) {
            p->done_head = b->next;
            if (p->done_head == NULL) {
                p->done_tail = NULL;
            }
        }
        bool room = b != NULL && p->want_room;
        p->want_room = p->want_room && !room;
        pthread_mutex_unlock(&p->io.mutex);
        if (b == NULL) {
            return;
        }
        sl_delivery_report r = {.seq = b->seq,
                                .record_count = b->record_count,
                                .partition = p->partition,
                                .offset = b->offset,
                                .err = b->err};
        p->cfg.delivery_cb(&r, p->cfg.delivery_user);
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        batch_free(b);
        if (room && p->cfg.room_cb != NULL) {
            p->cfg.room_cb(p->cfg.room_user);
        }
        pthread_mutex_lock(&p->io.mutex);
        pthread_cond_broadcast(&p->io.cond);
        pthread_mutex_unlock(&p->io.mutex);
    }
}

static const sl__io_ops producer_ops = {
    .on_connected = producer_connected,
    .on_frame = producer_frame,
    .pump = producer_pump,
    .on_disconnected = producer_disconnected,
    .unlocked = producer_unlocked,
};

void
sl_producer_config_init(sl_producer_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->partition = SL_PROTO_PARTITION_ANY;
    cfg->acks = SL_ACKS_LOG;
    cfg->buffer_bytes = PRODUCER_BUFFER_BYTES_DEFAULT;
    cfg->batch_bytes = PRODUCER_BATCH_BYTES_DEFAULT;
    cfg->linger_ms = PRODUCER_LINGER_MS_DEFAULT;
    cfg->heartbeat_ms = SL_PROTO_HEARTBEAT_MS_DEFAULT;
}

static int
producer_check_config(const sl_producer_config *cfg)
{
    if (cfg->compression > SL_COMPRESSION_ZSTD) {
        return SL_EINVAL;
    }
    if (!sl_batch_compression_available(cfg->compression)) {
        return SL_ENOTSUP; // this build has no library for the codec
    }
    if (cfg->acks > SL_ACKS_FSYNC || cfg->buffer_bytes == 0 ||
        cfg->batch_bytes < SL_BATCH_HEADER_BYTES + SL_RECORD_HEADER_BYTES ||
        cfg->batch_bytes > SL_BATCH_SIZE_MAX) {
        return SL_EINVAL;
    }
    return SL_OK;
}

int
sl_producer_new(const sl_producer_config *cfg, sl_producer **out)
{
    int err = producer_check_config(cfg);
    if (err != SL_OK) {
        return err;
    }
    sl_producer *p = sl_calloc(1, sizeof(*p));
    if (p == NULL) {
        return SL_ENOMEM;
    }
    p->io.wake_fd = -1;
    p->cfg = *cfg;
    p->stream_id = 1u - 2u; // the first open uses id 1
    p->seal_bytes = SL_MIN(PRODUCER_SEAL_BYTES_INITIAL, cfg->batch_bytes);
    err = sl__copy_name(p->topic, cfg->topic, false);
    uint32_t max_frame =
        SL_MAX(SL__CLIENT_MAX_FRAME_BYTES, cfg->batch_bytes + SL_PROTO_FRAME_SIZE_MIN);
    if (err == SL_OK) {
        err = sl__io_init(&p->io, cfg->broker, cfg->client_id ? cfg->client_id : "sluice-producer",
                          cfg->heartbeat_ms, cfg->reconnect_backoff_max_ms, max_frame,
                          &producer_ops, p, NULL, 0);
    }
    sl_budget_config bc = {.name = "producer_buffer", .capacity_bytes = cfg->buffer_bytes};
    if (err == SL_OK) {
        err = sl_budget_new(&bc, NULL, &p->buffer);
    }
    if (err == SL_OK) {
        p->room_fd = sl_budget_room_fd(p->buffer);
        err = sl__io_start(&p->io);
    }
    if (err != SL_OK) {
        sl_producer_free(p);
        return err;
    }
    *out = p;
    return SL_OK;
}

// Appends an already-charged record to the open batch, opening one sized for it if needed.
static int
producer_append(sl_producer *p, const sl_record *rec, uint64_t cost, uint64_t *seq_out)
{
    for (int attempt = 0; attempt < 2; attempt++) { // at most: current batch, then a fresh one
        if (p->open == NULL) {
            size_t need = SL_BATCH_HEADER_BYTES + sl_record_encoded_size(rec);
            pbatch *b = batch_new(SL_MAX((size_t)p->seal_bytes, need));
            if (b == NULL) {
                return SL_ENOMEM;
            }
            b->seq = p->next_seq;
            p->open = b;
            p->open_since_ns = sl_now_ns();
            sl__io_wake(&p->io); // arms the linger timer
        }
        int err = sl_batch_builder_add(&p->open->builder, rec);
        if (err == SL_OK) {
            p->open->record_count++;
            p->open->charge_bytes += cost;
            *seq_out = p->next_seq++;
            if (p->open->builder.used >= p->seal_bytes) {
                producer_seal(p);
                sl__io_wake(&p->io);
            }
            return SL_OK;
        }
        if (err != SL_EFULL || p->open->record_count == 0) {
            return err;
        }
        producer_seal(p);
        sl__io_wake(&p->io);
    }
    return SL_ETOOBIG;
}

int
sl_producer_send(sl_producer *p, const sl_record *record, int64_t deadline_ns, uint64_t *seq_out)
{
    uint64_t cost = sl_budget_record_cost(sl_record_encoded_size(record));
    if (cost > p->cfg.buffer_bytes || sl_record_encoded_size(record) > SL_BATCH_SIZE_MAX) {
        return SL_ETOOBIG;
    }
    int err = sl_budget_reserve(p->buffer, cost, 1);
    if (err == SL_EFULL && deadline_ns == SL_DEADLINE_NOW) {
        pthread_mutex_lock(&p->io.mutex);
        p->want_room = true;
        p->stats.buffer_full_total++;
        pthread_mutex_unlock(&p->io.mutex);
        return SL_EAGAIN;
    }
    if (err == SL_EFULL) {
        int64_t waited = 0;
        err = sl_budget_reserve_wait(p->buffer, cost, 1, deadline_ns, &waited);
        pthread_mutex_lock(&p->io.mutex);
        p->stats.buffer_full_total++;
        p->stats.blocked_ns_total += waited;
        pthread_mutex_unlock(&p->io.mutex);
    }
    if (err != SL_OK) {
        return err;
    }
    pthread_mutex_lock(&p->io.mutex);
    uint64_t seq = 0;
    err = p->closing ? SL_ECLOSED : (p->fatal != SL_OK ? p->fatal : SL_OK);
    if (err == SL_OK) {
        err = producer_append(p, record, cost, &seq);
    }
    if (err == SL_OK) {
        p->stats.records_sent_total++;
    }
    pthread_mutex_unlock(&p->io.mutex);
    if (err != SL_OK) {
        sl_budget_release(p->buffer, cost, 1);
    } else if (seq_out != NULL) {
        *seq_out = seq;
    }
    return err;
}

int
sl_producer_room_fd(sl_producer *p)
{
    return p->room_fd;
}

int
sl_producer_poll_reports(sl_producer *p, sl_delivery_report *out, size_t cap, int64_t deadline_ns,
                         size_t *count_out)
{
    *count_out = 0;
    if (p->cfg.delivery_cb != NULL) {
        return SL_EINVAL;
    }
    pbatch *taken = NULL;
    pthread_mutex_lock(&p->io.mutex);
    while (p->done_head == NULL && sl__io_wait(&p->io, deadline_ns)) { // bounded by deadline
    }
    size_t n = 0;
    pbatch **link = &taken;
    for (; n < cap && p->done_head != NULL; n++) {
        pbatch *b = p->done_head;
        p->done_head = b->next;
        out[n] = (sl_delivery_report){.seq = b->seq,
                                      .record_count = b->record_count,
                                      .partition = p->partition,
                                      .offset = b->offset,
                                      .err = b->err};
        *link = b;
        link = &b->next;
    }
    *link = NULL;
    if (p->done_head == NULL) {
        p->done_tail = NULL;
    }
    bool room = n > 0 && p->want_room;
    p->want_room = p->want_room && !room;
    pthread_mutex_unlock(&p->io.mutex);
    for (size_t i = 0; i < n; i++) {
        pbatch *b = taken;
        taken = b->next;
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        batch_free(b);
    }
    if (room && p->cfg.room_cb != NULL) {
        p->cfg.room_cb(p->cfg.room_user);
    }
    *count_out = n;
    return SL_OK;
}

int
sl_producer_flush(sl_producer *p, int64_t deadline_ns)
{
    pthread_mutex_lock(&p->io.mutex);
    p->flush = true;
    sl__io_wake(&p->io);
    bool pending = true;
    for (;;) { // bounded by deadline_ns
        pending = (p->open != NULL && p->open->record_count > 0) || p->head != NULL ||
                  (p->cfg.delivery_cb != NULL && p->done_head != NULL);
        if (!pending || !sl__io_wait(&p->io, deadline_ns)) {
            break;
        }
    }
    p->flush = false;
    pthread_mutex_unlock(&p->io.mutex);
    return pending ? SL_ETIMEDOUT : SL_OK;
}

void
sl_producer_stats_get(sl_producer *p, sl_producer_stats *out)
{
    pthread_mutex_lock(&p->io.mutex);
    *out = p->stats;
    out->client = p->io.stats;
    pthread_mutex_unlock(&p->io.mutex);
    sl_budget_stats bs;
    sl_budget_stats_get(p->buffer, &bs);
    out->buffer_used_bytes = bs.used_bytes;
}

// After the I/O thread stopped: every record still held is reported as not delivered.
static void
producer_fail_all(sl_producer *p)
{
    p->unsent = NULL;
    for (uint32_t i = 0; i < UINT32_MAX && p->head != NULL; i++) {
        producer_retire_head(p, SL_ECLOSED);
    }
    if (p->open != NULL && p->open->record_count > 0) {
        producer_seal(p);
        p->unsent = NULL;
        producer_retire_head(p, SL_ECLOSED);
    }
    for (uint32_t i = 0; i < UINT32_MAX && p->done_head != NULL; i++) {
        pbatch *b = p->done_head;
        p->done_head = b->next;
        if (p->cfg.delivery_cb != NULL) {
            sl_delivery_report r = {.seq = b->seq,
                                    .record_count = b->record_count,
                                    .partition = p->partition,
                                    .offset = b->offset,
                                    .err = b->err};
            p->cfg.delivery_cb(&r, p->cfg.delivery_user);
        }
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        batch_free(b);
    }
    if (p->open != NULL) {
        batch_free(p->open);
        p->open = NULL;
    }
}

void
sl_producer_free(sl_producer *p)
{
    if (p == NULL) {
        return;
    }
    if (p->io.wake_fd >= 0) {
        pthread_mutex_lock(&p->io.mutex);
        p->closing = true;
        pthread_mutex_unlock(&p->io.mutex);
    }
    sl__io_stop(&p->io);
    producer_fail_all(p);
    sl__io_fini(&p->io);
    if (p->buffer != NULL) {
        sl_budget_free(p->buffer);
    }
    sl_free(p, sizeof(*p));
}
