// Stream frames of the wire protocol: opening and closing streams, produce with credit and acks,
// consume with demand and deliveries. PRODUCE and DELIVER carry whole record batches as stored;
// their framing (not their CRC) is checked here so the broker can walk them without re-checking.
// Layouts (offset, size, meaning): docs/protocol.md.
#include "proto/proto_internal.h"

// ---- batches -----------------------------------------------------------------------------------

// What a walk over a frame's batches learned.
typedef struct batch_walk {
    uint32_t record_count;
    uint64_t first_base_offset; // base offset of the first batch
    uint64_t end_offset;        // one past the last record of the last batch
    bool offsets_ordered;       // each batch starts at or after the previous one's end
    bool seq_contiguous;        // each batch's producer_seq continues the previous one's
    bool one_producer;          // every batch has the first batch's producer id
    uint32_t first_seq;
} batch_walk;

// Walks count whole batches filling data[0..size) exactly. Returns NULL or why not. At most
// SL_PROTO_BATCHES_PER_FRAME_MAX iterations; each batch length is checked against the bytes left
// (by sl_batch_header_decode) before it is used.
static const char *
walk_batches(const uint8_t *data, size_t size, uint16_t count, batch_walk *out)
{
    memset(out, 0, sizeof(*out));
    out->offsets_ordered = out->seq_contiguous = out->one_producer = true;
    if (count == 0 || count > SL_PROTO_BATCHES_PER_FRAME_MAX) {
        return "batch count out of range";
    }
    if (data == NULL || size == 0) {
        return "batches missing";
    }
    size_t pos = 0;
    uint64_t producer_id = 0;
    uint32_t next_seq = 0;
    for (uint16_t i = 0; i < count; i++) {
        sl_batch_header h;
        if (sl_batch_header_decode(data + pos, size - pos, &h) != SL_OK) {
            return "batch framing invalid or batch longer than the frame";
        }
        if (i == 0) {
            producer_id = h.producer_id;
            out->first_seq = h.producer_seq;
            out->first_base_offset = h.base_offset;
        } else {
            out->one_producer &= h.producer_id == producer_id;
            out->seq_contiguous &= h.producer_seq == next_seq;
            out->offsets_ordered &= h.base_offset >= out->end_offset;
        }
        if (h.base_offset > UINT64_MAX - h.record_count) {
            return "batch offsets overflow";
        }
        next_seq = h.producer_seq + h.record_count; // serial arithmetic: wraps by design
        out->end_offset = h.base_offset + h.record_count;
        // At most 1024 batches of at most SL_BATCH_SIZE_MAX / 28 records: no u32 overflow.
        out->record_count += h.record_count;
        pos += h.length;
    }
    return pos == size ? NULL : "bytes after the last batch";
}

void
sl_proto_batches_init(sl_proto_cursor *c, const sl_proto_batches *batches)
{
    c->pos = batches->data;
    c->end = batches->data != NULL ? batches->data + batches->size_bytes : NULL;
    c->left = batches->data != NULL ? batches->batch_count : 0;
}

int
sl_proto_batches_next(sl_proto_cursor *c, const uint8_t **batch_out, sl_batch_header *header_out)
{
    if (c->left == 0) {
        return SL_ENOENT;
    }
    // A decoded frame's batches were walked already, so this cannot fail for one of those.
    int err = sl_batch_header_decode(c->pos, (size_t)(c->end - c->pos), header_out);
    if (err != SL_OK) {
        return SL_ECORRUPT;
    }
    *batch_out = c->pos;
    c->pos += header_out->length;
    c->left--;
    return SL_OK;
}

// ---- open / ok / close -------------------------------------------------------------------------

static const char *
check_open_produce(const sl_proto_open_produce *o)
{
    return sl__name_ok(o->topic) ? NULL : "topic name invalid";
}

int
sl_proto_encode_open_produce(void *buf, size_t cap, uint32_t stream_id,
                             const sl_proto_open_produce *in, size_t *len_out)
{
    if (stream_id == 0 || check_open_produce(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_OPEN_PRODUCE, stream_id);
    sl__wr_u32(&w, in->partition);
    sl__wr_u64(&w, in->producer_id);
    sl__wr_str(&w, in->topic);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_open_produce(sl__rd *r, sl_proto_open_produce *out)
{
    out->partition = sl__rd_u32(r);
    out->producer_id = sl__rd_u64(r);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    sl__rd_check(r, r->why == NULL ? check_open_produce(out) : NULL);
}

static const char *
check_open_consume(const sl_proto_open_consume *o)
{
    if (!sl__name_ok(o->topic)) {
        return "topic name invalid";
    }
    if (o->start_mode > SL_START_GROUP) {
        return "unknown start mode";
    }
    // GROUP mode carries the member's generation there (version 2), a u32.
    if (o->start_mode == SL_START_GROUP
            ? o->start_offset > UINT32_MAX
            : o->start_mode != SL_START_OFFSET && o->start_offset != 0) {
        return "start offset given with a start mode that ignores it";
    }
    if (o->group.size != 0 && !sl__name_ok(o->group)) {
        return "group name invalid";
    }
    if (o->start_mode == SL_START_GROUP && o->group.size == 0) {
        return "start at the group's offset without a group name";
    }
    if (o->partition == SL_PROTO_PARTITION_ANY && o->start_mode != SL_START_GROUP) {
        return "partition 'any' is only for group consumers";
    }
    return NULL;
}

int
sl_proto_encode_open_consume(void *buf, size_t cap, uint32_t stream_id,
                             const sl_proto_open_consume *in, size_t *len_out)
{
    if (stream_id == 0 || check_open_consume(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_OPEN_CONSUME, stream_id);
    sl__wr_u32(&w, in->partition);
    sl__wr_u8(&w, in->start_mode);
    sl__wr_zero(&w, 3);
    sl__wr_u64(&w, in->start_offset);
    sl__wr_str(&w, in->topic);
    sl__wr_str(&w, in->group);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_open_consume(sl__rd *r, sl_proto_open_consume *out)
{
    out->partition = sl__rd_u32(r);
    out->start_mode = sl__rd_u8(r);
    sl__rd_zero(r, 3);
    out->start_offset = sl__rd_u64(r);
    out->topic = sl__rd_str(r, SL_PROTO_TOPIC_NAME_MAX);
    out->group = sl__rd_str(r, SL_PROTO_GROUP_NAME_MAX);
    sl__rd_check(r, r->why == NULL ? check_open_consume(out) : NULL);
}

static const char *
check_stream_ok(const sl_proto_stream_ok *s)
{
    if (s->kind != SL_STREAM_PRODUCE && s->kind != SL_STREAM_CONSUME) {
        return "unknown stream kind";
    }
    if (s->partition == SL_PROTO_PARTITION_ANY) {
        return "STREAM_OK must name the partition";
    }
    return s->max_batch_bytes <= SL_BATCH_SIZE_MAX ? NULL : "max batch size out of range";
}

int
sl_proto_encode_stream_ok(void *buf, size_t cap, uint32_t stream_id, const sl_proto_stream_ok *in,
                          size_t *len_out)
{
    if (stream_id == 0 || check_stream_ok(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_STREAM_OK, stream_id);
    sl__wr_u8(&w, in->kind);
    sl__wr_zero(&w, 3);
    sl__wr_u32(&w, in->partition);
    sl__wr_u64(&w, in->producer_id);
    sl__wr_u64(&w, in->start_offset);
    sl__wr_u32(&w, in->next_seq);
    sl__wr_u32(&w, in->max_batch_bytes);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_stream_ok(sl__rd *r, sl_proto_stream_ok *out)
{
    out->kind = sl__rd_u8(r);
    sl__rd_zero(r, 3);
    out->partition = sl__rd_u32(r);
    out->producer_id = sl__rd_u64(r);
    out->start_offset = sl__rd_u64(r);
    out->next_seq = sl__rd_u32(r);
    out->max_batch_bytes = sl__rd_u32(r);
    sl__rd_check(r, r->why == NULL ? check_stream_ok(out) : NULL);
}

// ---- produce -----------------------------------------------------------------------------------

// PRODUCE: 0 u8 acks | 1 u8 reserved | 2 u16 batch_count | 4 u32 first_seq | 8 batches.
static const char *
check_produce(const sl_proto_produce *p, uint32_t *record_count)
{
    if (p->acks > SL_ACKS_FSYNC) {
        return "unknown acks level";
    }
    batch_walk walk;
    const char *why =
        walk_batches(p->batches.data, p->batches.size_bytes, p->batches.batch_count, &walk);
    if (why != NULL) {
        return why;
    }
    // The broker acks by sequence, so the sequence numbering must have no gaps or overlaps.
    if (walk.first_seq != p->first_seq || !walk.seq_contiguous) {
        return "batch producer sequences not contiguous from first_seq";
    }
    if (!walk.one_producer) {
        return "batches from more than one producer id";
    }
    *record_count = walk.record_count;
    return NULL;
}

// PRODUCE and DELIVER fixed parts: the batches follow them.
#define PRODUCE_FIXED_BYTES 8u
#define DELIVER_FIXED_BYTES 28u
_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + DELIVER_FIXED_BYTES + SL_BATCH_SIZE_MAX <=
                   SL_PROTO_FRAME_SIZE_CEILING,
               "one largest batch fits a DELIVER frame");

// The checks a prefix encoder can make without seeing the batches.
static bool
batch_area_ok(const sl_proto_batches *b, size_t fixed_bytes)
{
    return b->batch_count >= 1 && b->batch_count <= SL_PROTO_BATCHES_PER_FRAME_MAX &&
           b->size_bytes >= (size_t)b->batch_count * SL_BATCH_HEADER_BYTES &&
           b->size_bytes <= SL_PROTO_FRAME_SIZE_CEILING - SL_PROTO_FRAME_HEADER_BYTES - fixed_bytes;
}

static void
wr_produce_fixed(sl__wr *w, void *buf, size_t cap, uint32_t stream_id, const sl_proto_produce *in)
{
    sl__wr_begin(w, buf, cap, SL_FRAME_PRODUCE, stream_id);
    sl__wr_u8(w, in->acks);
    sl__wr_u8(w, 0);
    sl__wr_u16(w, in->batches.batch_count);
    sl__wr_u32(w, in->first_seq);
}

int
sl_proto_encode_produce(void *buf, size_t cap, uint32_t stream_id, const sl_proto_produce *in,
                        size_t *len_out)
{
    uint32_t records = 0;
    if (stream_id == 0 || check_produce(in, &records) != NULL ||
        !batch_area_ok(&in->batches, PRODUCE_FIXED_BYTES)) {
        return SL_EINVAL;
    }
    sl__wr w;
    wr_produce_fixed(&w, buf, cap, stream_id, in);
    sl__wr_bytes(&w, in->batches.data, in->batches.size_bytes);
    return sl__wr_finish(&w, len_out, 0);
}

int
sl_proto_encode_produce_prefix(void *buf, size_t cap, uint32_t stream_id,
                               const sl_proto_produce *in, size_t *len_out)
{
    if (stream_id == 0 || in->acks > SL_ACKS_FSYNC ||
        !batch_area_ok(&in->batches, PRODUCE_FIXED_BYTES)) {
        return SL_EINVAL;
    }
    sl__wr w;
    wr_produce_fixed(&w, buf, cap, stream_id, in);
    return sl__wr_finish(&w, len_out, in->batches.size_bytes);
}

// Reads a batch area: the rest of the payload.
static void
rd_batches(sl__rd *r, uint16_t count, sl_proto_batches *out)
{
    out->batch_count = count;
    out->size_bytes = r->why == NULL ? r->left : 0;
    out->data = sl__rd_take(r, out->size_bytes);
}

static void
rd_produce(sl__rd *r, sl_proto_produce *out)
{
    out->acks = sl__rd_u8(r);
    sl__rd_zero(r, 1);
    uint16_t count = sl__rd_u16(r);
    out->first_seq = sl__rd_u32(r);
    rd_batches(r, count, &out->batches);
    sl__rd_check(r, r->why == NULL ? check_produce(out, &out->batches.record_count) : NULL);
}

int
sl_proto_encode_credit(void *buf, size_t cap, uint32_t stream_id, const sl_proto_credit *in,
                       size_t *len_out)
{
    if (stream_id == 0) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_CREDIT, stream_id);
    sl__wr_u64(&w, in->granted_total_bytes);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_credit(sl__rd *r, sl_proto_credit *out)
{
    out->granted_total_bytes = sl__rd_u64(r);
}

static const char *
check_ack(const sl_proto_ack *a)
{
    if (a->acks > SL_ACKS_FSYNC) {
        return "unknown acks level";
    }
    return a->base_offset <= a->last_offset ? NULL : "ACK base offset after its last offset";
}

int
sl_proto_encode_ack(void *buf, size_t cap, uint32_t stream_id, const sl_proto_ack *in,
                    size_t *len_out)
{
    if (stream_id == 0 || check_ack(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_ACK, stream_id);
    sl__wr_u32(&w, in->seq_end);
    sl__wr_u8(&w, in->acks);
    sl__wr_zero(&w, 3);
    sl__wr_u64(&w, in->base_offset);
    sl__wr_u64(&w, in->last_offset);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_ack(sl__rd *r, sl_proto_ack *out)
{
    out->seq_end = sl__rd_u32(r);
    out->acks = sl__rd_u8(r);
    sl__rd_zero(r, 3);
    out->base_offset = sl__rd_u64(r);
    out->last_offset = sl__rd_u64(r);
    sl__rd_check(r, r->why == NULL ? check_ack(out) : NULL);
}

static const char *
check_throttle(const sl_proto_throttle *t)
{
    if (t->reason == SL_THROTTLE_NONE || t->reason > SL_THROTTLE_QUOTA) {
        return "THROTTLE without a known reason";
    }
    if (t->retry_after_ms > SL_PROTO_RETRY_AFTER_MS_MAX) {
        return "retry-after longer than its limit";
    }
    return sl__str_ok(t->message, 0, SL_PROTO_MESSAGE_MAX) ? NULL : "message longer than its limit";
}

int
sl_proto_encode_throttle(void *buf, size_t cap, uint32_t stream_id, const sl_proto_throttle *in,
                         size_t *len_out)
{
    if (check_throttle(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_THROTTLE, stream_id);
    sl__wr_u8(&w, in->reason);
    sl__wr_zero(&w, 3);
    sl__wr_u32(&w, in->retry_after_ms);
    sl__wr_str(&w, in->message);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_throttle(sl__rd *r, sl_proto_throttle *out)
{
    out->reason = sl__rd_u8(r);
    sl__rd_zero(r, 3);
    out->retry_after_ms = sl__rd_u32(r);
    out->message = sl__rd_str(r, SL_PROTO_MESSAGE_MAX);
    sl__rd_check(r, r->why == NULL ? check_throttle(out) : NULL);
}

// ---- consume -----------------------------------------------------------------------------------

int
sl_proto_encode_request(void *buf, size_t cap, uint32_t stream_id, const sl_proto_request *in,
                        size_t *len_out)
{
    if (stream_id == 0) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_REQUEST, stream_id);
    sl__wr_u64(&w, in->records);
    sl__wr_u64(&w, in->bytes);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_request(sl__rd *r, sl_proto_request *out)
{
    out->records = sl__rd_u64(r);
    out->bytes = sl__rd_u64(r);
}

// DELIVER: 0 u64 first_offset | 8 u64 end_offset | 16 u64 log_end_offset | 24 u16 batch_count |
// 26 u16 redelivery_count (version 2; 0 on version 1) | 28 batches.
static const char *
check_deliver(const sl_proto_deliver *d, uint32_t *record_count)
{
    batch_walk walk;
    const char *why =
        walk_batches(d->batches.data, d->batches.size_bytes, d->batches.batch_count, &walk);
    if (why != NULL) {
        return why;
    }
    if (!walk.offsets_ordered) {
        return "delivered batches overlap or go backwards";
    }
    // The consumer counts end - first records against its demand, so the range must lie inside
    // the batches and be non-empty.
    if (d->first_offset < walk.first_base_offset || d->first_offset >= d->end_offset ||
        d->end_offset > walk.end_offset) {
        return "delivered offset range outside its batches";
    }
    if (d->log_end_offset < d->end_offset) {
        return "log end offset before the delivered range";
    }
    *record_count = walk.record_count;
    return NULL;
}

static void
wr_deliver_fixed(sl__wr *w, void *buf, size_t cap, uint32_t stream_id, const sl_proto_deliver *in)
{
    sl__wr_begin(w, buf, cap, SL_FRAME_DELIVER, stream_id);
    sl__wr_u64(w, in->first_offset);
    sl__wr_u64(w, in->end_offset);
    sl__wr_u64(w, in->log_end_offset);
    sl__wr_u16(w, in->batches.batch_count);
    sl__wr_u16(w, in->redelivery_count);
}

int
sl_proto_encode_deliver(void *buf, size_t cap, uint32_t stream_id, const sl_proto_deliver *in,
                        size_t *len_out)
{
    uint32_t records = 0;
    if (stream_id == 0 || check_deliver(in, &records) != NULL ||
        !batch_area_ok(&in->batches, DELIVER_FIXED_BYTES)) {
        return SL_EINVAL;
    }
    sl__wr w;
    wr_deliver_fixed(&w, buf, cap, stream_id, in);
    sl__wr_bytes(&w, in->batches.data, in->batches.size_bytes);
    return sl__wr_finish(&w, len_out, 0);
}

int
sl_proto_encode_deliver_prefix(void *buf, size_t cap, uint32_t stream_id,
                               const sl_proto_deliver *in, size_t *len_out)
{
    bool range_ok = in->first_offset < in->end_offset && in->end_offset <= in->log_end_offset;
    if (stream_id == 0 || !range_ok || !batch_area_ok(&in->batches, DELIVER_FIXED_BYTES)) {
        return SL_EINVAL;
    }
    sl__wr w;
    wr_deliver_fixed(&w, buf, cap, stream_id, in);
    return sl__wr_finish(&w, len_out, in->batches.size_bytes);
}

static void
rd_deliver(sl__rd *r, sl_proto_deliver *out)
{
    out->first_offset = sl__rd_u64(r);
    out->end_offset = sl__rd_u64(r);
    out->log_end_offset = sl__rd_u64(r);
    uint16_t count = sl__rd_u16(r);
    out->redelivery_count = sl__rd_u16(r);
    rd_batches(r, count, &out->batches);
    sl__rd_check(r, r->why == NULL ? check_deliver(out, &out->batches.record_count) : NULL);
}

int
sl_proto_encode_commit(void *buf, size_t cap, uint32_t stream_id, const sl_proto_commit *in,
                       size_t *len_out)
{
    if (stream_id == 0) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_COMMIT, stream_id);
    sl__wr_u64(&w, in->offset);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_commit(sl__rd *r, sl_proto_commit *out)
{
    out->offset = sl__rd_u64(r);
}

// ---- dispatch ----------------------------------------------------------------------------------

int
sl__proto_decode_stream(uint8_t type, sl__rd *r, sl_frame *out)
{
    switch (type) {
    case SL_FRAME_OPEN_PRODUCE:
        rd_open_produce(r, &out->u.open_produce);
        return SL_OK;
    case SL_FRAME_OPEN_CONSUME:
        rd_open_consume(r, &out->u.open_consume);
        return SL_OK;
    case SL_FRAME_STREAM_OK:
        rd_stream_ok(r, &out->u.stream_ok);
        return SL_OK;
    case SL_FRAME_PRODUCE:
        rd_produce(r, &out->u.produce);
        return SL_OK;
    case SL_FRAME_CREDIT:
        rd_credit(r, &out->u.credit);
        return SL_OK;
    case SL_FRAME_ACK:
        rd_ack(r, &out->u.ack);
        return SL_OK;
    case SL_FRAME_THROTTLE:
        rd_throttle(r, &out->u.throttle);
        return SL_OK;
    case SL_FRAME_REQUEST:
        rd_request(r, &out->u.request);
        return SL_OK;
    case SL_FRAME_DELIVER:
        rd_deliver(r, &out->u.deliver);
        return SL_OK;
    case SL_FRAME_COMMIT:
        rd_commit(r, &out->u.commit);
        return SL_OK;
    default:
        return SL_ENOENT;
    }
}

SL__PROTO_DECODER(open_produce, sl_proto_open_produce)
SL__PROTO_DECODER(open_consume, sl_proto_open_consume)
SL__PROTO_DECODER(stream_ok, sl_proto_stream_ok)
SL__PROTO_DECODER(produce, sl_proto_produce)
SL__PROTO_DECODER(credit, sl_proto_credit)
SL__PROTO_DECODER(ack, sl_proto_ack)
SL__PROTO_DECODER(throttle, sl_proto_throttle)
SL__PROTO_DECODER(request, sl_proto_request)
SL__PROTO_DECODER(deliver, sl_proto_deliver)
SL__PROTO_DECODER(commit, sl_proto_commit)
