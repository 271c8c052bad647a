// Record batch encoding, validation and iteration (include/sluice/batch.h). Layout, all integers
// little-endian (docs/storage.md has the full table):
//
//   offset size field
//        0    4 length            whole batch, header included
//        4    4 crc               CRC32C of bytes [16, length)
//        8    8 base_offset       assigned by the log; outside the CRC
//       16    2 magic             0x4253
//       18    1 version           1
//       19    1 flags             bits 0-2 compression; others 0
//       20    4 record_count      > 0
//       24    8 first_timestamp_us
//       32    8 last_timestamp_us
//       40    8 producer_id
//       48    4 producer_seq
//       52    4 records_size      == length - 64
//       56    4 uncompressed_size
//       60    4 reserved          0
//       64    records: each { u32 size, u32 offset_delta, i64 timestamp_us, u32 key_size,
//                      u32 value_size, u16 header_count, u16 reserved, key, value,
//                      headers: { u16 name_size, u32 value_size, name, value } * header_count }
#include <sluice/batch.h>

#include <string.h>

#include <sluice/error.h>
#include <sluice/limits.h>

#include "core/util.h"
#include "log/crc32c.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "batch encoding assumes little-endian");
_Static_assert(SL_BATCH_SIZE_MAX >= SL_RECORD_SIZE_MAX + SL_BATCH_HEADER_BYTES +
                                        SL_RECORD_HEADER_BYTES,
               "the largest record must fit in a batch");

#define CRC_START         16u
#define HEADER_ENTRY_BYTES 6u // u16 name_size + u32 value_size
#define FLAGS_COMPRESSION 0x07u

static inline uint16_t
rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint32_t
rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t
rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void
wr16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

static inline void
wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static inline void
wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof(v));
}

size_t
sl_record_encoded_size(const sl_record *r)
{
    size_t size = SL_RECORD_HEADER_BYTES + (r->key != NULL ? r->key_size : 0) + r->value_size;
    for (uint16_t i = 0; i < r->header_count; i++) {
        size += HEADER_ENTRY_BYTES + r->headers[i].name_size + r->headers[i].value_size;
    }
    return size;
}

void
sl_batch_builder_init(sl_batch_builder *b, void *buf, size_t capacity)
{
    SL_ASSERT(b != NULL);
    SL_ASSERT(buf != NULL);
    SL_ASSERT(capacity >= SL_BATCH_HEADER_BYTES);
    memset(b, 0, sizeof(*b));
    b->buf = buf;
    b->capacity = SL_MIN(capacity, (size_t)SL_BATCH_SIZE_MAX);
    b->used = SL_BATCH_HEADER_BYTES;
}

void
sl_batch_builder_set_producer(sl_batch_builder *b, uint64_t producer_id, uint32_t seq)
{
    b->producer_id = producer_id;
    b->producer_seq = seq;
}

int
sl_batch_builder_add(sl_batch_builder *b, const sl_record *r)
{
    SL_ASSERT(b != NULL && r != NULL);
    if ((r->value_size > 0 && r->value == NULL) || (r->header_count > 0 && r->headers == NULL)) {
        return SL_EINVAL;
    }
    size_t size = sl_record_encoded_size(r);
    if (size - SL_RECORD_HEADER_BYTES > SL_RECORD_SIZE_MAX) {
        return SL_ETOOBIG;
    }
    if (size > b->capacity - SL_BATCH_HEADER_BYTES) {
        return SL_ETOOBIG;
    }
    if (size > b->capacity - b->used) {
        return SL_EFULL;
    }
    uint8_t *p = b->buf + b->used;
    uint32_t key_size = r->key != NULL ? r->key_size : SL_KEY_NULL;
    wr32(p, (uint32_t)size);
    wr32(p + 4, b->record_count);
    wr64(p + 8, (uint64_t)r->timestamp_us);
    wr32(p + 16, key_size);
    wr32(p + 20, r->value_size);
    wr16(p + 24, r->header_count);
    wr16(p + 26, 0);
    p += SL_RECORD_HEADER_BYTES;
    if (r->key != NULL && r->key_size > 0) {
        memcpy(p, r->key, r->key_size);
        p += r->key_size;
    }
    if (r->value_size > 0) {
        memcpy(p, r->value, r->value_size);
        p += r->value_size;
    }
    for (uint16_t i = 0; i < r->header_count; i++) {
        const sl_header *h = &r->headers[i];
        wr16(p, h->name_size);
        wr32(p + 2, h->value_size);
        p += HEADER_ENTRY_BYTES;
        memcpy(p, h->name, h->name_size);
        p += h->name_size;
        if (h->value_size > 0) {
            memcpy(p, h->value, h->value_size);
            p += h->value_size;
        }
    }
    SL_ASSERT((size_t)(p - (b->buf + b->used)) == size);
    if (b->record_count == 0) {
        b->first_timestamp_us = r->timestamp_us;
    }
    b->last_timestamp_us = r->timestamp_us;
    b->record_count++;
    b->used += size;
    return SL_OK;
}

int
sl_batch_builder_finish(sl_batch_builder *b, size_t *length_out)
{
    SL_ASSERT(b != NULL && length_out != NULL);
    if (b->record_count == 0) {
        return SL_EINVAL;
    }
    uint8_t *h = b->buf;
    uint32_t records_size = (uint32_t)(b->used - SL_BATCH_HEADER_BYTES);
    wr32(h, (uint32_t)b->used);
    wr64(h + 8, 0);
    wr16(h + 16, SL_BATCH_MAGIC);
    h[18] = SL_BATCH_VERSION;
    h[19] = SL_COMPRESSION_NONE;
    wr32(h + 20, b->record_count);
    wr64(h + 24, (uint64_t)b->first_timestamp_us);
    wr64(h + 32, (uint64_t)b->last_timestamp_us);
    wr64(h + 40, b->producer_id);
    wr32(h + 48, b->producer_seq);
    wr32(h + 52, records_size);
    wr32(h + 56, records_size);
    wr32(h + 60, 0);
    wr32(h + 4, sl_crc32c(0, h + CRC_START, b->used - CRC_START));
    *length_out = b->used;
    return SL_OK;
}

int
sl_batch_header_decode(const void *buf, size_t size, sl_batch_header *out)
{
    SL_ASSERT(out != NULL);
    if (size < SL_BATCH_HEADER_BYTES) {
        return SL_EAGAIN;
    }
    const uint8_t *h = buf;
    out->length = rd32(h);
    out->crc = rd32(h + 4);
    out->base_offset = rd64(h + 8);
    out->magic = rd16(h + 16);
    out->version = h[18];
    out->flags = h[19];
    out->record_count = rd32(h + 20);
    out->first_timestamp_us = (int64_t)rd64(h + 24);
    out->last_timestamp_us = (int64_t)rd64(h + 32);
    out->producer_id = rd64(h + 40);
    out->producer_seq = rd32(h + 48);
    out->records_size = rd32(h + 52);
    out->uncompressed_size = rd32(h + 56);
    uint32_t reserved = rd32(h + 60);
    if (out->magic != SL_BATCH_MAGIC || out->version != SL_BATCH_VERSION || reserved != 0) {
        return SL_ECORRUPT;
    }
    if ((out->flags & ~FLAGS_COMPRESSION) != 0 || (out->flags & FLAGS_COMPRESSION) > 2) {
        return SL_ECORRUPT;
    }
    if (out->length < SL_BATCH_HEADER_BYTES + SL_RECORD_HEADER_BYTES ||
        out->length > SL_BATCH_SIZE_MAX) {
        return SL_ECORRUPT;
    }
    if (out->records_size != out->length - SL_BATCH_HEADER_BYTES || out->record_count == 0 ||
        out->uncompressed_size > SL_BATCH_SIZE_MAX) {
        return SL_ECORRUPT;
    }
    // Every record takes at least its fixed header: a count beyond that is a lie.
    uint32_t uncompressed = (out->flags & FLAGS_COMPRESSION) == SL_COMPRESSION_NONE
                                ? out->records_size
                                : out->uncompressed_size;
    if (out->record_count > uncompressed / SL_RECORD_HEADER_BYTES) {
        return SL_ECORRUPT;
    }
    if (size < out->length) {
        return SL_EAGAIN;
    }
    return SL_OK;
}

// Checks one record's framing at p (with avail bytes left); returns its size or 0 if corrupt.
static uint32_t
record_check(const uint8_t *p, size_t avail, uint32_t index)
{
    if (avail < SL_RECORD_HEADER_BYTES) {
        return 0;
    }
    uint32_t size = rd32(p);
    if (size < SL_RECORD_HEADER_BYTES || size > avail || rd32(p + 4) != index) {
        return 0;
    }
    uint32_t key_size = rd32(p + 16);
    uint64_t used = SL_RECORD_HEADER_BYTES + (uint64_t)(key_size == SL_KEY_NULL ? 0 : key_size) +
                    rd32(p + 20);
    uint16_t header_count = rd16(p + 24);
    if (rd16(p + 26) != 0) {
        return 0;
    }
    for (uint16_t i = 0; i < header_count; i++) {
        if (used + HEADER_ENTRY_BYTES > size) {
            return 0;
        }
        const uint8_t *e = p + used;
        used += HEADER_ENTRY_BYTES + (uint64_t)rd16(e) + rd32(e + 2);
    }
    return used == size ? size : 0;
}

int
sl_batch_validate(const void *buf, size_t size, sl_batch_header *out)
{
    int err = sl_batch_header_decode(buf, size, out);
    if (err != SL_OK) {
        return err;
    }
    const uint8_t *b = buf;
    if (sl_crc32c(0, b + CRC_START, out->length - CRC_START) != out->crc) {
        return SL_ECORRUPT;
    }
    if ((out->flags & FLAGS_COMPRESSION) != SL_COMPRESSION_NONE) {
        return SL_OK; // framing is checked after decompression
    }
    const uint8_t *p = b + SL_BATCH_HEADER_BYTES;
    const uint8_t *end = b + out->length;
    for (uint32_t i = 0; i < out->record_count; i++) {
        uint32_t rsize = record_check(p, (size_t)(end - p), i);
        if (rsize == 0) {
            return SL_ECORRUPT;
        }
        p += rsize;
    }
    return p == end ? SL_OK : SL_ECORRUPT;
}

void
sl_batch_set_base_offset(void *buf, uint64_t base_offset)
{
    wr64((uint8_t *)buf + 8, base_offset);
}

int
sl_batch_iter_init(sl_batch_iter *it, const void *batch, size_t size)
{
    SL_ASSERT(it != NULL);
    sl_batch_header h;
    int err = sl_batch_header_decode(batch, size, &h);
    if (err != SL_OK) {
        return err == SL_EAGAIN ? SL_ECORRUPT : err;
    }
    if ((h.flags & FLAGS_COMPRESSION) != SL_COMPRESSION_NONE) {
        return SL_ENOTSUP;
    }
    it->pos = (const uint8_t *)batch + SL_BATCH_HEADER_BYTES;
    it->end = (const uint8_t *)batch + h.length;
    it->next_offset = h.base_offset;
    it->left = h.record_count;
    it->index = 0;
    it->first_timestamp_us = h.first_timestamp_us;
    return SL_OK;
}

int
sl_batch_iter_next(sl_batch_iter *it, sl_record *r, uint64_t *offset_out)
{
    if (it->left == 0) {
        return SL_ENOENT;
    }
    const uint8_t *p = it->pos;
    size_t avail = (size_t)(it->end - p);
    if (avail < SL_RECORD_HEADER_BYTES) {
        return SL_ECORRUPT;
    }
    uint32_t size = record_check(p, avail, it->index);
    if (size == 0) {
        return SL_ECORRUPT;
    }
    uint32_t key_size = rd32(p + 16);
    memset(r, 0, sizeof(*r));
    r->timestamp_us = (int64_t)rd64(p + 8);
    const uint8_t *q = p + SL_RECORD_HEADER_BYTES;
    if (key_size != SL_KEY_NULL) {
        r->key = q;
        r->key_size = key_size;
        q += key_size;
    }
    r->value_size = rd32(p + 20);
    r->value = q;
    q += r->value_size;
    r->header_count = rd16(p + 24);
    r->raw_headers = q;
    r->raw_headers_size = (uint32_t)((p + size) - q);
    *offset_out = it->next_offset;
    it->next_offset++;
    it->pos = p + size;
    it->left--;
    it->index++;
    return SL_OK;
}

int
sl_record_header_at(const sl_record *r, uint16_t index, sl_header *out)
{
    if (index >= r->header_count || r->raw_headers == NULL) {
        return SL_ERANGE;
    }
    const uint8_t *p = r->raw_headers;
    const uint8_t *end = p + r->raw_headers_size;
    for (uint16_t i = 0;; i++) {
        if ((size_t)(end - p) < HEADER_ENTRY_BYTES) {
            return SL_ECORRUPT;
        }
        uint16_t name_size = rd16(p);
        uint32_t value_size = rd32(p + 2);
        if ((size_t)(end - p) - HEADER_ENTRY_BYTES < (size_t)name_size + value_size) {
            return SL_ECORRUPT;
        }
        if (i == index) {
            out->name = (const char *)p + HEADER_ENTRY_BYTES;
            out->name_size = name_size;
            out->value = p + HEADER_ENTRY_BYTES + name_size;
            out->value_size = value_size;
            return SL_OK;
        }
        p += HEADER_ENTRY_BYTES + name_size + value_size;
    }
}
