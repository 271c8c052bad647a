// The producer: user threads copy records into a bounded buffer (an sl_budget of buffer_bytes) and
// into an open batch per partition; the I/O thread seals batches on linger or size, sends each
// partition's batches on its own produce stream within that stream's credit, keeps them (still
// charged) until ACKed, honours THROTTLE per stream, and after a reconnect resends what was not
// acked under the same producer id and sequences (idempotence). With partition ANY, records are
// routed by key hash, keyless ones sticky round-robin per batch (docs/api/client.md, "Routing").
#include <stdlib.h>
#include <string.h>

#include <sluice/budget.h>
#include <sluice/error.h>

#include "client/client_internal.h"
#include "client/producer_internal.h"
#include "core/util.h"

#define PRODUCER_BUFFER_BYTES_DEFAULT (32u * 1024u * 1024u)
#define PRODUCER_BATCH_BYTES_DEFAULT  (1024u * 1024u)
#define PRODUCER_LINGER_MS_DEFAULT    5u
// A stream the broker closed with a retriable error is reopened after this long (or its hint);
// a failed DESCRIBE_TOPIC is retried after it too.
#define PRODUCER_REOPEN_MS 500u
// PRODUCE payload before the batches: acks, reserved, batch count, first_seq.
#define PRODUCE_FIXED_BYTES 8u
// Batches are sealed at half the largest credit window the broker has offered on the stream (two
// in flight), clamped to [PRODUCER_SEAL_BYTES_MIN, batch_bytes]. Before the first CREDIT they are
// sealed at PRODUCER_SEAL_BYTES_INITIAL: a broker starts with small windows (64 KiB in sluiced)
// and widens them as it measures the rate, so a first batch of batch_bytes might never fit.
#define PRODUCER_SEAL_BYTES_MIN     2048u
#define PRODUCER_SEAL_BYTES_INITIAL (16u * 1024u)
// An open batch's buffer starts this small and doubles up to the seal size, so a topic with many
// partitions does not hold a seal-sized buffer per partition for a few records each.
#define PRODUCER_OPEN_BYTES_INITIAL 4096u
// 32-bit FNV-1a (docs/api/client.md, "Routing"): other clients reproduce it to agree on routing.
#define PRODUCER_FNV_OFFSET_BASIS 2166136261u
#define PRODUCER_FNV_PRIME        16777619u

_Static_assert(PRODUCER_SEAL_BYTES_MIN <= PRODUCER_SEAL_BYTES_INITIAL, "seal sizes");

// How records find their partition.
typedef enum producer_mode {
    PRODUCER_FIXED,   // cfg.partition names one partition: one stream, as configured
    PRODUCER_PENDING, // partition ANY, topic not described yet: records wait in slot 0
    PRODUCER_LEGACY,  // partition ANY, the broker cannot describe: one stream, it picks
    PRODUCER_ROUTED,  // partition ANY: one slot (and stream) per partition of the topic
} producer_mode;

struct sl_producer {
    sl__io io;
    sl_producer_config cfg; // strings point into the fields below
    char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
    sl_budget *buffer;
    int room_fd;
    // All below under io.mutex.
    pslot *slots; // slot_count of them: one per partition when routed, else one
    uint32_t slot_count;
    producer_mode mode;
    uint32_t sticky;           // slot that keyless records go to (routed)
    uint32_t pump_start;       // slot the next pump serves first (fairness)
    uint32_t last_stream_id;   // odd ids, new per open: a late frame never hits a new stream
    uint32_t meta_correlation; // of the DESCRIBE_TOPIC in flight
    uint64_t meta_nonce;       // PING sent after it: its PONG first means "not answered"
    bool meta_sent;            // on the current connection
    int64_t meta_retry_ns;     // no DESCRIBE_TOPIC before this
    pbatch *done_head;         // reported or ready to report, oldest first
    pbatch *done_tail;
    uint64_t next_seq; // send sequence of the next record
    bool flush;
    bool closing;
    int fatal;      // non-retriable stream error: sends fail with it
    bool want_room; // a send got SL_EAGAIN since the last room callback
    sl_producer_stats stats;
};

static void producer_rewind(sl_producer *p, pslot *s);

uint32_t
sl_partition_for_key(const void *key, size_t size, uint32_t partition_count)
{
    if (partition_count == 0) {
        return 0;
    }
    const uint8_t *k = key;
    uint32_t h = PRODUCER_FNV_OFFSET_BASIS;
    for (size_t i = 0; i < size; i++) {
        h ^= k[i];
        h *= PRODUCER_FNV_PRIME;
    }
    return h % partition_count;
}

static void
slot_init(pslot *s, uint32_t partition, uint32_t batch_bytes)
{
    memset(s, 0, sizeof(*s));
    s->partition = partition;
    s->resolved = partition == SL_PROTO_PARTITION_ANY ? 0 : partition;
    s->seal_bytes = SL_MIN(PRODUCER_SEAL_BYTES_INITIAL, batch_bytes);
}

static bool
slot_has_data(const pslot *s)
{
    return s->head != NULL || (s->open != NULL && s->open->record_count > 0);
}

// Picks the slot after the sticky one for the next keyless batch, preferring one that is not
// paused or waiting for credit, so keyless records flow around a slow partition.
static void
producer_sticky_next(sl_producer *p)
{
    uint32_t n = p->slot_count;
    int64_t now = sl_now_ns();
    uint32_t next = (p->sticky + 1) % n;
    for (uint32_t i = 1; i <= n; i++) { // bounded by the slot count
        const pslot *s = &p->slots[(p->sticky + i) % n];
        if (s->paused_until_ns <= now && !s->credit_waiting) {
            next = (p->sticky + i) % n;
            break;
        }
    }
    p->sticky = next;
}

// Finishes a slot's open batch and queues it for sending. Caller holds the mutex.
static void
producer_seal(sl_producer *p, pslot *s)
{
    pbatch *b = s->open;
    if (b == NULL || b->record_count == 0) {
        return;
    }
    sl_batch_builder_set_producer(&b->builder, s->pid, sl__pslot_wire_seq(s, b->pseq));
    b->built_pid = s->pid;
    b->built_wire_seq = sl__pslot_wire_seq(s, b->pseq);
    int err = sl__pbatch_finish(p->cfg.compression, &b->builder, &b->len);
    SL_ASSERT(err == SL_OK); // a non-empty batch always finishes (uncompressed at worst)
    s->open = NULL;
    // A batch sealed by linger may fill a fraction of its buffer: keep only what it uses, so
    // real memory stays close to what the buffer budget charged.
    uint8_t *tight = b->len < b->cap / 2 ? sl_alloc(b->len) : NULL;
    if (tight != NULL) {
        memcpy(tight, b->buf, b->len);
        sl_free(b->buf, b->cap);
        b->buf = tight;
        b->cap = b->len;
    }
    if (s->tail == NULL) {
        s->head = b;
    } else {
        s->tail->next = b;
    }
    s->tail = b;
    if (s->unsent == NULL) {
        s->unsent = b;
    }
    if (p->mode == PRODUCER_ROUTED && s == &p->slots[p->sticky]) {
        producer_sticky_next(p); // sticky: a whole batch per partition, then the next
    }
}

// Moves a batch (off every slot list) to the report list. Caller holds the mutex.
static void
producer_report_batch(sl_producer *p, pbatch *b, uint32_t partition, int err)
{
    b->next = NULL;
    b->err = err;
    b->partition = partition;
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

// Moves the acked or failed front batch of a slot to the report list.
static void
producer_retire_head(sl_producer *p, pslot *s, int err)
{
    pbatch *b = s->head;
    SL_ASSERT(b != NULL && b != s->unsent);
    s->head = b->next;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    producer_report_batch(p, b, s->resolved, err);
}

// Encodes the slot's next unsent batch as one PRODUCE frame if credit and buffer room allow.
static bool
producer_send_one(sl_producer *p, pslot *s)
{
    pbatch *b = s->unsent;
    if (b->built_pid != s->pid || b->built_wire_seq != sl__pslot_wire_seq(s, b->pseq)) {
        if (sl__pbatch_rebuild(p->cfg.compression, s, b) != SL_OK) {
            return false; // retried on the next round
        }
    }
    uint64_t frame_bytes = SL_PROTO_FRAME_HEADER_BYTES + PRODUCE_FIXED_BYTES + b->len;
    if (s->credit_window > 0 && frame_bytes > s->credit_window && b->record_count > 1 &&
        b->acked_count == 0) {
        // It would wait for credit the broker never offers at once: send it in halves.
        return sl__pbatch_split(p->cfg.compression, s, b) == SL_OK;
    }
    if (s->sent_bytes + frame_bytes > s->granted_bytes) {
        if (!s->credit_waiting) {
            p->io.stats.credit_waits_total++;
            s->credit_waiting = true;
        }
        return false;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&p->io.conn, &at);
    sl_proto_produce msg = {.acks = (uint8_t)p->cfg.acks,
                            .first_seq = sl__pslot_wire_seq(s, b->pseq),
                            .batches = {.data = b->buf, .size_bytes = b->len, .batch_count = 1}};
    size_t len = 0;
    if (sl_proto_encode_produce(at, room, s->stream_id, &msg, &len) != SL_OK) {
        return false; // the write buffer drains first
    }
    sl__conn_commit(&p->io.conn, len);
    s->credit_waiting = false;
    s->sent_bytes += len;
    s->unsent = b->next;
    if (p->cfg.acks == SL_ACKS_NONE) {
        producer_retire_head(p, s, SL_OK);
    }
    return true;
}

static void
producer_open_stream(sl_producer *p, pslot *s)
{
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&p->io.conn, &at);
    // A producer id is tied to one partition: after the first STREAM_OK, reopen that one.
    sl_proto_open_produce msg = {.partition = s->pid != 0 ? s->resolved : s->partition,
                                 .producer_id = s->pid,
                                 .topic = {p->topic, (uint16_t)strlen(p->topic)}};
    size_t len = 0;
    uint32_t id = p->last_stream_id + 2;
    if (sl_proto_encode_open_produce(at, room, id, &msg, &len) == SL_OK) {
        sl__conn_commit(&p->io.conn, len);
        p->last_stream_id = id;
        s->stream_id = id;
        s->stream_open = true;
        s->granted_bytes = s->sent_bytes = 0;
        s->credit_window = 0;
        s->credit_waiting = false;
    }
}

// Seals a slot's open batch when its linger ran out (or on flush and close).
static void
producer_linger(sl_producer *p, pslot *s, int64_t now, int64_t *wake_at)
{
    if (s->open == NULL || s->open->record_count == 0) {
        return;
    }
    int64_t due = s->open_since_ns + (int64_t)p->cfg.linger_ms * 1000000;
    if (p->flush || p->closing || now >= due) {
        producer_seal(p, s);
    } else {
        *wake_at = SL_MIN(*wake_at, due);
    }
}

// Asks for the topic's partition count, then PINGs: the broker answers in order, so a PONG
// before TOPIC_INFO or ADMIN_RESULT means it ignored the question (a broker without it).
static void
producer_describe(sl_producer *p, int64_t now, int64_t *wake_at)
{
    if (p->meta_sent || p->fatal != SL_OK) {
        return;
    }
    if (now < p->meta_retry_ns) {
        *wake_at = SL_MIN(*wake_at, p->meta_retry_ns);
        return;
    }
    uint8_t *at = NULL;
    size_t room = sl__conn_room(&p->io.conn, &at);
    sl_proto_topic_request m = {.correlation_id = p->meta_correlation + 1,
                                .topic = {p->topic, (uint16_t)strlen(p->topic)}};
    size_t len = 0;
    size_t ping_bytes = SL_PROTO_FRAME_HEADER_BYTES + sizeof(uint64_t);
    if (room < ping_bytes ||
        sl_proto_encode_topic_request(at, room - ping_bytes, SL_FRAME_DESCRIBE_TOPIC, &m, &len) !=
            SL_OK) {
        return; // the write buffer drains first
    }
    sl__conn_commit(&p->io.conn, len);
    uint64_t nonce = ++p->io.conn.ping_nonce;
    int err = sl__conn_ping(&p->io.conn, false, nonce);
    SL_ASSERT(err == SL_OK); // room was kept for it
    p->meta_correlation = m.correlation_id;
    p->meta_nonce = nonce;
    p->meta_sent = true;
}

static void
producer_pump_slot(sl_producer *p, pslot *s, int64_t now, int64_t *wake_at)
{
    if (now < s->paused_until_ns) {
        *wake_at = SL_MIN(*wake_at, s->paused_until_ns);
        return;
    }
    // One partition's stream always opens at once (as it always has); routed slots open when
    // records are first routed to them, so idle partitions hold no stream.
    bool want = p->mode != PRODUCER_ROUTED || s->pid != 0 || slot_has_data(s);
    if (!s->stream_open && p->fatal == SL_OK && want) {
        producer_open_stream(p, s);
    }
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX && s->stream_ready &&
                         s->unsent != NULL && producer_send_one(p, s);
         i++) {
    }
}

static void
producer_pump(void *h, int64_t now, int64_t *wake_at)
{
    sl_producer *p = h;
    uint32_t n = p->slot_count;
    for (uint32_t i = 0; i < n; i++) {
        producer_linger(p, &p->slots[i], now, wake_at);
    }
    if (p->mode == PRODUCER_PENDING) {
        producer_describe(p, now, wake_at);
        return;
    }
    // A throttled or credit-starved slot only skips its own turn: the others still send.
    for (uint32_t i = 0; i < n; i++) {
        producer_pump_slot(p, &p->slots[(p->pump_start + i) % n], now, wake_at);
    }
    p->pump_start = (p->pump_start + 1) % n;
}

static void
producer_connected(void *h, const sl_proto_hello_ok *ok)
{
    sl_producer *p = h;
    SL_UNUSED(ok);
    for (uint32_t i = 0; i < p->slot_count; i++) {
        p->slots[i].stream_open = p->slots[i].stream_ready = false;
        p->slots[i].paused_until_ns = 0;
    }
    p->meta_sent = false;
    p->meta_retry_ns = 0;
}

// Makes every unacked batch of a slot go again (from the first); counts those sent once.
static void
producer_rewind(sl_producer *p, pslot *s)
{
    for (pbatch *b = s->head; b != NULL && b != s->unsent; b = b->next) { // bounded: the list
        p->stats.batches_resent_total++;
    }
    s->unsent = s->head;
}

static void
producer_slot_down(sl_producer *p, pslot *s)
{
    s->stream_open = s->stream_ready = false;
    producer_rewind(p, s); // everything unacked goes again on the next stream
}

static void
producer_disconnected(void *h)
{
    sl_producer *p = h;
    for (uint32_t i = 0; i < p->slot_count; i++) {
        producer_slot_down(p, &p->slots[i]);
    }
    p->meta_sent = false;
}

// Marks the front records acked without offsets: the broker's handshake said it holds them (a
// reconnect after their ACK was lost).
static void
producer_ack_through(sl_producer *p, pslot *s, uint32_t next_wire)
{
    for (uint32_t i = 0; i < UINT32_MAX && s->head != NULL; i++) { // bounded by the list
        pbatch *b = s->head;
        int32_t ahead = (int32_t)(next_wire - sl__pslot_wire_seq(s, b->pseq));
        if (ahead < (int32_t)b->record_count) {
            return; // a batch the broker holds only partly is resent whole (it deduplicates)
        }
        if (b->acked_count == 0) {
            b->offset = SL_OFFSET_NONE;
        }
        if (s->unsent == b) {
            s->unsent = b->next;
        }
        producer_retire_head(p, s, SL_OK);
    }
}

static void
producer_stream_ok(sl_producer *p, pslot *s, const sl_proto_stream_ok *ok)
{
    s->resolved = ok->partition;
    uint64_t front =
        s->head != NULL ? s->head->pseq : (s->open != NULL ? s->open->pseq : s->next_pseq);
    bool same = s->pid != 0 && ok->producer_id == s->pid;
    if (same && (int32_t)(ok->next_seq - sl__pslot_wire_seq(s, front)) >= 0) {
        producer_ack_through(p, s, ok->next_seq);
    } else {
        // A new identity (first connect), or a broker that no longer knows where this producer
        // was (another id, or ours with a sequence behind what it already acked: its producer
        // state was lost). Number the unacked records from the sequence it expects. Records it
        // had stored but not acked can then be written twice (docs/api/client.md, "Duplicates").
        if (s->pid != 0) {
            p->stats.identity_resets_total++;
        }
        s->pid = ok->producer_id;
        p->stats.producer_id = ok->producer_id;
        s->wire_base = ok->next_seq - (uint32_t)front;
    }
    s->stream_ready = true;
}

static void
producer_ack(sl_producer *p, pslot *s, const sl_proto_ack *ack)
{
    uint64_t next_offset = ack->base_offset;
    // Batches past unsent can be acked too: they were sent before a rewind (TOPIC_FULL).
    for (uint32_t i = 0; i < SL_PROTO_BATCHES_PER_FRAME_MAX && s->head != NULL; i++) {
        pbatch *b = s->head;
        int32_t covered = (int32_t)(ack->seq_end - sl__pslot_wire_seq(s, b->pseq));
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
        if (s->unsent == b) {
            s->unsent = b->next;
        }
        producer_retire_head(p, s, SL_OK);
    }
}

// Cumulative credit; the largest allowance seen at once sizes the batches to come.
static void
producer_credit(sl_producer *p, pslot *s, uint64_t granted_total)
{
    s->granted_bytes = SL_MAX(s->granted_bytes, granted_total);
    uint64_t avail = s->granted_bytes - SL_MIN(s->sent_bytes, s->granted_bytes);
    s->credit_window = SL_MAX(s->credit_window, avail);
    uint64_t overhead = SL_PROTO_FRAME_HEADER_BYTES + PRODUCE_FIXED_BYTES;
    uint64_t half = s->credit_window / 2 > overhead ? s->credit_window / 2 - overhead : 0;
    s->seal_bytes = (uint32_t)SL_MIN(SL_MAX(half, PRODUCER_SEAL_BYTES_MIN), p->cfg.batch_bytes);
}

static bool
status_retriable(int err)
{
    return err == SL_OK || err == SL_EFULL || err == SL_EAGAIN || err == SL_ETHROTTLED ||
           err == SL_EBUSY || err == SL_ETIMEDOUT || err == SL_ECLOSED || err == SL_ENOSPC ||
           err == SL_ECONNRESET;
}

// A non-retriable error (unknown topic, bad partition): every buffered record fails with it,
// and so do later sends, so nothing new is buffered.
static void
producer_fail_streams(sl_producer *p, int err)
{
    p->fatal = err;
    for (uint32_t i = 0; i < p->slot_count; i++) {
        pslot *s = &p->slots[i];
        producer_seal(p, s);
        s->unsent = NULL;
        for (uint32_t k = 0; k < UINT32_MAX && s->head != NULL; k++) { // bounded by the list
            producer_retire_head(p, s, err);
        }
    }
}

// A closed stream is reopened (after its hint) unless the error can never clear.
static void
producer_stream_closed(sl_producer *p, pslot *s, const sl_proto_error *e, int64_t now)
{
    int err = sl_proto_status_from_code(e->code);
    producer_slot_down(p, s);
    uint32_t wait = e->retry_after_ms != 0 ? e->retry_after_ms : PRODUCER_REOPEN_MS;
    s->paused_until_ns = now + (int64_t)sl__io_jitter_ms(&p->io, wait) * 1000000;
    if (!status_retriable(err)) {
        producer_fail_streams(p, err);
    }
}

// The slot a record goes to: by key hash or to the sticky slot when routed, else the only one.
static pslot *
producer_route(sl_producer *p, const sl_record *rec)
{
    if (p->mode != PRODUCER_ROUTED) {
        return &p->slots[0];
    }
    if (rec->key != NULL) {
        return &p->slots[sl_partition_for_key(rec->key, rec->key_size, p->slot_count)];
    }
    return &p->slots[p->sticky];
}

// Appends an already-charged record with send sequence seq to the slot's open batch, opening
// one (or growing it) as needed.
static int
producer_append(sl_producer *p, pslot *s, const sl_record *rec, uint64_t cost, uint64_t seq)
{
    size_t need = SL_BATCH_HEADER_BYTES + sl_record_encoded_size(rec);
    for (int attempt = 0; attempt < 4; attempt++) { // open, grow, seal and open: at most 4 tries
        if (s->open == NULL) {
            pbatch *b =
                sl__pbatch_new(SL_MAX(need, SL_MIN(s->seal_bytes, PRODUCER_OPEN_BYTES_INITIAL)));
            if (b == NULL) {
                return SL_ENOMEM;
            }
            b->pseq = s->next_pseq;
            s->open = b;
            s->open_since_ns = sl_now_ns();
            sl__io_wake(&p->io); // arms the linger timer
        }
        pbatch *b = s->open;
        bool extends = sl__pbatch_run_extends(b, seq);
        int err = extends ? SL_OK : sl__pbatch_runs_grow(b);
        bool runs_full = err == SL_EFULL;
        if (err == SL_OK) {
            err = sl_batch_builder_add(&b->builder, rec);
        }
        if (err == SL_OK) {
            if (extends) {
                b->runs[b->run_count - 1].count++;
            } else {
                b->runs[b->run_count++] = (prun){.seq = seq, .count = 1};
            }
            b->record_count++;
            b->charge_bytes += cost;
            s->next_pseq++;
            if (b->builder.used >= s->seal_bytes) {
                producer_seal(p, s);
                sl__io_wake(&p->io);
            }
            return SL_OK;
        }
        if (err != SL_EFULL || b->record_count == 0) {
            return err;
        }
        err = runs_full ? SL_EFULL : sl__pbatch_grow(b, need, s->seal_bytes);
        if (err == SL_ENOMEM) {
            return err;
        }
        if (err == SL_EFULL) {
            producer_seal(p, s);
            sl__io_wake(&p->io);
        }
    }
    return SL_ETOOBIG;
}

// Routes the records of a batch built before the partition count was known. On failure the
// batch keeps the records not moved (and their charge).
static int
batch_reroute(sl_producer *p, pbatch *b)
{
    const uint8_t *plain = NULL;
    size_t plain_len = 0;
    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    sl_batch_iter it;
    int err = sl__pbatch_plain(b, &plain, &plain_len, &tmp, &tmp_cap);
    if (err == SL_OK) {
        err = sl_batch_iter_init(&it, plain, plain_len);
    }
    uint32_t moved = 0;
    for (; moved < b->record_count && err == SL_OK; moved++) {
        sl_record r;
        uint64_t off;
        sl_header *hs = NULL;
        size_t hs_size = 0;
        err = sl_batch_iter_next(&it, &r, &off);
        if (err == SL_OK) {
            err = sl__record_headers_view(&r, &hs, &hs_size);
        }
        uint64_t cost = err == SL_OK ? sl_budget_record_cost(sl_record_encoded_size(&r)) : 0;
        if (err == SL_OK) {
            err = producer_append(p, producer_route(p, &r), &r, cost, b->runs[0].seq);
        }
        if (hs != NULL) {
            sl_free(hs, hs_size);
        }
        if (err != SL_OK) {
            break;
        }
        sl__pbatch_runs_skip(b, 1);
        b->charge_bytes -= SL_MIN(cost, b->charge_bytes);
    }
    if (tmp != NULL) {
        sl_free(tmp, tmp_cap);
    }
    b->record_count -= moved;
    return err;
}

// The partition count is known: one slot per partition. Records that waited in the single slot
// are routed now (none was sent: no stream opens before this).
static int
producer_resolve(sl_producer *p, uint32_t partition_count)
{
    pslot *old = &p->slots[0];
    if (partition_count == 1) {
        old->partition = old->resolved = 0;
        p->mode = PRODUCER_ROUTED;
        return SL_OK;
    }
    pslot *slots = sl_calloc(partition_count, sizeof(*slots));
    if (slots == NULL) {
        return SL_ENOMEM;
    }
    for (uint32_t i = 0; i < partition_count; i++) {
        slot_init(&slots[i], i, p->cfg.batch_bytes);
    }
    pslot waiting = *old;
    sl_free(p->slots, (size_t)p->slot_count * sizeof(*p->slots));
    p->slots = slots;
    p->slot_count = partition_count;
    p->mode = PRODUCER_ROUTED;
    p->sticky = 0;
    producer_seal(p, &waiting);
    for (uint32_t i = 0; i < UINT32_MAX && waiting.head != NULL; i++) { // bounded by the list
        pbatch *b = waiting.head;
        waiting.head = b->next;
        int err = batch_reroute(p, b);
        if (err != SL_OK) {
            producer_report_batch(p, b, 0, err); // those records fail; the rest went on
        } else {
            SL_DEBUG_ASSERT(b->charge_bytes == 0);
            sl__pbatch_free(b);
        }
    }
    return SL_OK;
}

// The answer to DESCRIBE_TOPIC: a partition count, or an ADMIN_RESULT error.
static int
producer_described(sl_producer *p, uint32_t partition_count, int err, int64_t now)
{
    if (err == SL_OK && (partition_count == 0 || partition_count > SL_PROTO_PARTITIONS_MAX)) {
        return SL_EPROTO;
    }
    if (err == SL_OK) {
        err = producer_resolve(p, partition_count);
    }
    if (err == SL_OK) {
        return SL_OK;
    }
    if (err == SL_ENOENT || err == SL_EINVAL) {
        producer_fail_streams(p, err); // as an unknown topic fails OPEN_PRODUCE
    } else if (status_retriable(err) || err == SL_ENOMEM) {
        p->meta_sent = false;
        p->meta_retry_ns = now + (int64_t)sl__io_jitter_ms(&p->io, PRODUCER_REOPEN_MS) * 1000000;
    } else {
        p->mode = PRODUCER_LEGACY; // a broker that cannot describe: it picks the partition
    }
    return SL_OK;
}

static void
producer_pong(void *h, uint64_t nonce)
{
    sl_producer *p = h;
    if (p->mode == PRODUCER_PENDING && p->meta_sent && nonce == p->meta_nonce) {
        p->mode = PRODUCER_LEGACY; // DESCRIBE_TOPIC went unanswered
    }
}

static pslot *
producer_slot_of(sl_producer *p, uint32_t stream_id)
{
    for (uint32_t i = 0; i < p->slot_count; i++) { // bounded by the slot count
        if (p->slots[i].stream_open && p->slots[i].stream_id == stream_id) {
            return &p->slots[i];
        }
    }
    return NULL;
}

static int
producer_admin_frame(sl_producer *p, const sl_frame *f, int64_t now)
{
    bool pending = p->mode == PRODUCER_PENDING && p->meta_sent;
    if (f->header.type == SL_FRAME_TOPIC_INFO) {
        if (!pending || f->u.topic_info.correlation_id != p->meta_correlation) {
            return SL_OK;
        }
        return producer_described(p, f->u.topic_info.config.partition_count, SL_OK, now);
    }
    if (!pending || f->u.admin_result.correlation_id != p->meta_correlation) {
        return SL_OK;
    }
    int err = sl_proto_status_from_code(f->u.admin_result.status.code);
    return producer_described(p, 0, err == SL_OK ? SL_EPROTO : err, now);
}

static int
producer_frame(void *h, const sl_frame *f, int64_t now)
{
    sl_producer *p = h;
    if (f->header.type == SL_FRAME_TOPIC_INFO || f->header.type == SL_FRAME_ADMIN_RESULT) {
        return producer_admin_frame(p, f, now);
    }
    pslot *s = producer_slot_of(p, f->header.stream_id);
    if (s == NULL) {
        // A late frame for a stream this producer already left; stream 0 carries nothing else.
        return f->header.stream_id == 0 ? SL_EPROTO : SL_OK;
    }
    switch (f->header.type) {
    case SL_FRAME_STREAM_OK:
        producer_stream_ok(p, s, &f->u.stream_ok);
        return SL_OK;
    case SL_FRAME_CREDIT:
        producer_credit(p, s, f->u.credit.granted_total_bytes);
        return SL_OK;
    case SL_FRAME_ACK:
        producer_ack(p, s, &f->u.ack);
        return SL_OK;
    case SL_FRAME_THROTTLE: {
        uint32_t wait = sl__io_jitter_ms(&p->io, f->u.throttle.retry_after_ms);
        sl__io_count_throttle(&p->io, f->u.throttle.reason, wait);
        s->paused_until_ns = now + (int64_t)wait * 1000000;
        // THROTTLE is advice on top of credit (docs/protocol.md): what is in flight stays in
        // flight. Only "topic full" (policy REJECT) refuses data, so then everything unacked is
        // resent after the pause; the broker drops sequences it already has.
        if (f->u.throttle.reason == SL_THROTTLE_TOPIC_FULL) {
            producer_rewind(p, s);
        }
        return SL_OK;
    }
    case SL_FRAME_STREAM_CLOSE:
    case SL_FRAME_ERROR:
        producer_stream_closed(p, s, &f->u.error, now);
        return SL_OK;
    default:
        return SL_EPROTO;
    }
}

// Reports what is ready, outside the lock, when a callback is configured: one report per run of
// consecutive send sequences in a batch; the batch's charge is released after its last one.
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
        sl_delivery_report r;
        bool last = b != NULL && sl__pbatch_report_next(b, &r);
        if (last) {
            p->done_head = b->next;
            if (p->done_head == NULL) {
                p->done_tail = NULL;
            }
        }
        bool room = last && p->want_room;
        p->want_room = p->want_room && !room;
        pthread_mutex_unlock(&p->io.mutex);
        if (b == NULL) {
            return;
        }
        p->cfg.delivery_cb(&r, p->cfg.delivery_user);
        if (!last) {
            continue;
        }
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        sl__pbatch_free(b);
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
    .on_pong = producer_pong,
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
    p->last_stream_id = 1u - 2u; // the first open uses id 1
    p->mode = cfg->partition == SL_PROTO_PARTITION_ANY ? PRODUCER_PENDING : PRODUCER_FIXED;
    p->slots = sl_calloc(1, sizeof(*p->slots));
    err = p->slots == NULL ? SL_ENOMEM : SL_OK;
    if (err == SL_OK) {
        p->slot_count = 1;
        slot_init(&p->slots[0], cfg->partition, cfg->batch_bytes);
        err = sl__copy_name(p->topic, cfg->topic, false);
    }
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
    uint64_t seq = p->next_seq;
    err = p->closing ? SL_ECLOSED : (p->fatal != SL_OK ? p->fatal : SL_OK);
    if (err == SL_OK) {
        err = producer_append(p, producer_route(p, record), record, cost, seq);
    }
    if (err == SL_OK) {
        p->next_seq++;
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
    size_t freed = 0;
    pbatch **link = &taken;
    for (; n < cap && p->done_head != NULL; n++) { // one report per run
        pbatch *b = p->done_head;
        if (!sl__pbatch_report_next(b, &out[n])) {
            continue;
        }
        p->done_head = b->next;
        *link = b;
        link = &b->next;
        freed++;
    }
    *link = NULL;
    if (p->done_head == NULL) {
        p->done_tail = NULL;
    }
    bool room = freed > 0 && p->want_room;
    p->want_room = p->want_room && !room;
    pthread_mutex_unlock(&p->io.mutex);
    for (size_t i = 0; i < freed; i++) {
        pbatch *b = taken;
        taken = b->next;
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        sl__pbatch_free(b);
    }
    if (room && p->cfg.room_cb != NULL) {
        p->cfg.room_cb(p->cfg.room_user);
    }
    *count_out = n;
    return SL_OK;
}

static bool
producer_pending(const sl_producer *p)
{
    for (uint32_t i = 0; i < p->slot_count; i++) {
        if (slot_has_data(&p->slots[i])) {
            return true;
        }
    }
    return p->cfg.delivery_cb != NULL && p->done_head != NULL;
}

int
sl_producer_flush(sl_producer *p, int64_t deadline_ns)
{
    pthread_mutex_lock(&p->io.mutex);
    p->flush = true;
    sl__io_wake(&p->io);
    bool pending = true;
    for (;;) { // bounded by deadline_ns
        pending = producer_pending(p);
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
    for (uint32_t i = 0; i < p->slot_count; i++) {
        pslot *s = &p->slots[i];
        producer_seal(p, s);
        s->unsent = NULL;
        for (uint32_t k = 0; k < UINT32_MAX && s->head != NULL; k++) { // bounded by the list
            producer_retire_head(p, s, SL_ECLOSED);
        }
        if (s->open != NULL) {
            sl__pbatch_free(s->open); // empty
            s->open = NULL;
        }
    }
    for (uint32_t i = 0; i < UINT32_MAX && p->done_head != NULL; i++) { // bounded by the list
        pbatch *b = p->done_head;
        p->done_head = b->next;
        for (uint32_t k = 0; k < b->run_count && p->cfg.delivery_cb != NULL; k++) {
            sl_delivery_report r;
            if (k >= b->runs_reported) {
                (void)sl__pbatch_report_next(b, &r);
                p->cfg.delivery_cb(&r, p->cfg.delivery_user);
            }
        }
        sl_budget_release(p->buffer, b->charge_bytes, b->record_count);
        sl__pbatch_free(b);
    }
    p->done_tail = NULL;
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
    if (p->slots != NULL) {
        producer_fail_all(p);
        sl_free(p->slots, (size_t)p->slot_count * sizeof(*p->slots));
    }
    sl__io_fini(&p->io);
    if (p->buffer != NULL) {
        sl_budget_free(p->buffer);
    }
    sl_free(p, sizeof(*p));
}
