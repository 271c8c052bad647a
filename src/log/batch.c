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
//       52    4 records_size      == length - 64 (bytes as stored)
//       56    4 uncompressed_size == records_size when flags say none
//       60    4 reserved          0
//       64    records: each { u32 size, u32 offset_delta, i64 timestamp_us, u32 key_size,
//                      u32 value_size, u16 header_count, u16 reserved, key, value,
//                      headers: { u16 name_size, u32 value_size, name, value } * header_count }
//            (with compression, bytes [64, length) hold one LZ4 block or one zstd frame of them)
#include <sluice/batch.h>

#include <string.h>

#ifdef SL_HAVE_LZ4
#include <lz4.h>
#endif
#ifdef SL_HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#include <sluice/error.h>
#include <sluice/limits.h>

#include "core/util.h"
#include "log/crc32c.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "batch encoding assumes little-endian");
_Static_assert(SL_BATCH_SIZE_MAX >=
                   SL_RECORD_SIZE_MAX + SL_BATCH_HEADER_BYTES + SL_RECORD_HEADER_BYTES,
               "the largest record must fit in a batch");

#define CRC_START          16u
#define HEADER_ENTRY_BYTES 6u // u16 name_size + u32 value_size
#define FLAGS_COMPRESSION  0x07u
// Largest record section a batch can hold once uncompressed.
#define RECORDS_SIZE_MAX (SL_BATCH_SIZE_MAX - SL_BATCH_HEADER_BYTES)
// Most output bytes one stored byte can become. LZ4: a match grows by 255 bytes per extra length
// byte, so a block never expands past 255:1 (256 leaves room for the token). zstd: the densest
// block is an RLE block, 3 header bytes + 1 byte for up to 128 KiB, so 32768:1. A batch claiming
// more is a lie (a decompression bomb) and is refused before anyone sizes a buffer from it.
#define LZ4_EXPANSION_MAX  256u
#define ZSTD_EXPANSION_MAX 32768u
// zstd level for batches: the library default, a good ratio at producer-side speeds.
#define BATCH_ZSTD_LEVEL 3

_Static_assert((uint64_t)RECORDS_SIZE_MAX < (uint64_t)INT32_MAX, "LZ4 takes int sizes");

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
    SL_ASSERT(r != NULL);
    SL_ASSERT(r->header_count == 0 || r->headers != NULL);
    // 64-bit sums cannot wrap: at most 2^16 headers of 2^16 + 2^32 bytes each.
    uint64_t size =
        SL_RECORD_HEADER_BYTES + (uint64_t)(r->key != NULL ? r->key_size : 0) + r->value_size;
    for (uint32_t i = 0; i < r->header_count; i++) {
        size += HEADER_ENTRY_BYTES + (uint64_t)r->headers[i].name_size + r->headers[i].value_size;
    }
    return size > SIZE_MAX ? SIZE_MAX : (size_t)size;
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
    SL_ASSERT(b != NULL);
    b->producer_id = producer_id;
    b->producer_seq = seq;
}

// A record the caller built wrongly: a size with no bytes behind it.
static bool
record_args_valid(const sl_record *r)
{
    if ((r->value_size > 0 && r->value == NULL) || (r->header_count > 0 && r->headers == NULL)) {
        return false;
    }
    for (uint32_t i = 0; i < r->header_count; i++) {
        const sl_header *h = &r->headers[i];
        if ((h->name_size > 0 && h->name == NULL) || (h->value_size > 0 && h->value == NULL)) {
            return false;
        }
    }
    return true;
}

// Copies size bytes unless there are none (src may then be NULL, which memcpy does not allow).
static uint8_t *
put_bytes(uint8_t *p, const void *src, size_t size)
{
    if (size > 0) {
        memcpy(p, src, size);
    }
    return p + size;
}

int
sl_batch_builder_add(sl_batch_builder *b, const sl_record *r)
{
    SL_ASSERT(b != NULL && r != NULL);
    SL_ASSERT(!b->sealed);
    if (!record_args_valid(r)) {
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
    p = put_bytes(p, r->key, r->key != NULL ? r->key_size : 0);
    p = put_bytes(p, r->value, r->value_size);
    for (uint32_t i = 0; i < r->header_count; i++) {
        const sl_header *h = &r->headers[i];
        wr16(p, h->name_size);
        wr32(p + 2, h->value_size);
        p = put_bytes(p + HEADER_ENTRY_BYTES, h->name, h->name_size);
        p = put_bytes(p, h->value, h->value_size);
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

// Writes the header for a record section of records_size stored bytes, then the CRC over
// [16, 64 + records_size). Returns the batch length.
static size_t
builder_write_header(sl_batch_builder *b, uint8_t flags, size_t records_size,
                     size_t uncompressed_size)
{
    SL_ASSERT(records_size <= RECORDS_SIZE_MAX);
    SL_ASSERT(uncompressed_size <= RECORDS_SIZE_MAX);
    uint8_t *h = b->buf;
    size_t length = SL_BATCH_HEADER_BYTES + records_size;
    wr32(h, (uint32_t)length);
    wr64(h + 8, 0);
    wr16(h + 16, SL_BATCH_MAGIC);
    h[18] = SL_BATCH_VERSION;
    h[19] = flags;
    wr32(h + 20, b->record_count);
    wr64(h + 24, (uint64_t)b->first_timestamp_us);
    wr64(h + 32, (uint64_t)b->last_timestamp_us);
    wr64(h + 40, b->producer_id);
    wr32(h + 48, b->producer_seq);
    wr32(h + 52, (uint32_t)records_size);
    wr32(h + 56, (uint32_t)uncompressed_size);
    wr32(h + 60, 0);
    wr32(h + 4, sl_crc32c(0, h + CRC_START, length - CRC_START));
#ifndef NDEBUG
    // The reader's checks, run on the writer's side (debug builds: O(batch)).
    sl_batch_header check;
    SL_DEBUG_ASSERT(sl_batch_validate(h, length, &check) == SL_OK);
#endif
    return length;
}

int
sl_batch_builder_finish(sl_batch_builder *b, size_t *length_out)
{
    SL_ASSERT(b != NULL && length_out != NULL);
    SL_ASSERT(!b->sealed);
    if (b->record_count == 0) {
        return SL_EINVAL;
    }
    size_t records_size = b->used - SL_BATCH_HEADER_BYTES;
    *length_out = builder_write_header(b, SL_COMPRESSION_NONE, records_size, records_size);
    return SL_OK;
}

bool
sl_batch_compression_available(sl_compression codec)
{
    switch (codec) {
    case SL_COMPRESSION_NONE:
        return true;
    case SL_COMPRESSION_LZ4:
#ifdef SL_HAVE_LZ4
        return true;
#else
        return false;
#endif
    case SL_COMPRESSION_ZSTD:
#ifdef SL_HAVE_ZSTD
        return true;
#else
        return false;
#endif
    }
    return false;
}

// Compresses src into dst[0..dst_cap); *dst_size is 0 when the result does not fit, which the
// caller treats as "store uncompressed".
static int
compress_records(sl_compression codec, const uint8_t *src, size_t src_size, uint8_t *dst,
                 size_t dst_cap, size_t *dst_size)
{
    *dst_size = 0;
    if (dst_cap == 0) {
        return SL_OK;
    }
#ifdef SL_HAVE_LZ4
    if (codec == SL_COMPRESSION_LZ4) {
        // Returns 0 when the output would not fit in dst_cap.
        int n = LZ4_compress_default((const char *)src, (char *)dst, (int)src_size, (int)dst_cap);
        *dst_size = n > 0 ? (size_t)n : 0;
        return SL_OK;
    }
#endif
#ifdef SL_HAVE_ZSTD
    if (codec == SL_COMPRESSION_ZSTD) {
        size_t n = ZSTD_compress(dst, dst_cap, src, src_size, BATCH_ZSTD_LEVEL);
        if (ZSTD_isError(n)) {
            // Too small an output is the expected "did not shrink"; any other failure also
            // leaves the records as they are, except running out of memory, which is reported.
            return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? SL_ENOMEM : SL_OK;
        }
        *dst_size = n;
        return SL_OK;
    }
#endif
    SL_ASSERT(!"compress_records: codec not built in");
    return SL_ENOTSUP;
}

int
sl_batch_builder_finish_compressed(sl_batch_builder *b, sl_compression codec, void *scratch,
                                   size_t scratch_cap, size_t *length_out)
{
    SL_ASSERT(b != NULL && length_out != NULL);
    SL_ASSERT(scratch != NULL || scratch_cap == 0);
    SL_ASSERT(!b->sealed);
    if ((unsigned)codec > SL_COMPRESSION_ZSTD || b->record_count == 0) {
        return SL_EINVAL;
    }
    if (!sl_batch_compression_available(codec)) {
        return SL_ENOTSUP;
    }
    size_t records_size = b->used - SL_BATCH_HEADER_BYTES;
    size_t stored = 0;
    if (codec != SL_COMPRESSION_NONE) {
        // Only a strictly smaller result is worth storing, so cap the output below records_size.
        size_t cap = SL_MIN(scratch_cap, records_size - 1);
        int err = compress_records(codec, b->buf + SL_BATCH_HEADER_BYTES, records_size, scratch,
                                   cap, &stored);
        if (err != SL_OK) {
            return err;
        }
    }
    if (stored == 0) {
        *length_out = builder_write_header(b, SL_COMPRESSION_NONE, records_size, records_size);
    } else {
        SL_ASSERT(stored < records_size);
        memcpy(b->buf + SL_BATCH_HEADER_BYTES, scratch, stored);
        *length_out = builder_write_header(b, (uint8_t)codec, stored, records_size);
    }
    b->used = *length_out;
    b->sealed = true;
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
    uint8_t codec = out->flags & FLAGS_COMPRESSION;
    if ((out->flags & ~FLAGS_COMPRESSION) != 0 || codec > SL_COMPRESSION_ZSTD) {
        return SL_ECORRUPT;
    }
    // A compressed record section may be shorter than one record header; a plain one may not.
    uint32_t records_min = codec == SL_COMPRESSION_NONE ? SL_RECORD_HEADER_BYTES : 1;
    if (out->length < SL_BATCH_HEADER_BYTES + records_min || out->length > SL_BATCH_SIZE_MAX) {
        return SL_ECORRUPT;
    }
    if (out->records_size != out->length - SL_BATCH_HEADER_BYTES || out->record_count == 0 ||
        out->uncompressed_size > RECORDS_SIZE_MAX) {
        return SL_ECORRUPT;
    }
    if (codec == SL_COMPRESSION_NONE && out->uncompressed_size != out->records_size) {
        return SL_ECORRUPT;
    }
    // Every record takes at least its fixed header: a count beyond that is a lie.
    if (out->record_count > out->uncompressed_size / SL_RECORD_HEADER_BYTES) {
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
    if (rd16(p + 26) != 0) {
        return 0;
    }
    uint32_t key_size = rd32(p + 16);
    // 64-bit sums: a 32-bit key plus a 32-bit value could wrap a 32-bit size.
    uint64_t used =
        SL_RECORD_HEADER_BYTES + (uint64_t)(key_size == SL_KEY_NULL ? 0 : key_size) + rd32(p + 20);
    uint16_t header_count = rd16(p + 24);
    for (uint32_t i = 0; i < header_count; i++) {
        if (used + HEADER_ENTRY_BYTES > size) {
            return 0;
        }
        const uint8_t *e = p + used;
        used += HEADER_ENTRY_BYTES + (uint64_t)rd16(e) + rd32(e + 2);
    }
    return used == size ? size : 0;
}

// Checks that records[0..size) holds exactly record_count well-framed records.
static bool
records_check(const uint8_t *records, size_t size, uint32_t record_count)
{
    const uint8_t *p = records;
    const uint8_t *end = records + size;
    for (uint32_t i = 0; i < record_count; i++) {
        uint32_t rsize = record_check(p, (size_t)(end - p), i);
        if (rsize == 0) {
            return false;
        }
        p += rsize;
    }
    return p == end;
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
    bool ok = records_check(b + SL_BATCH_HEADER_BYTES, out->records_size, out->record_count);
    return ok ? SL_OK : SL_ECORRUPT;
}

void
sl_batch_set_base_offset(void *buf, uint64_t base_offset)
{
    SL_ASSERT(buf != NULL);
    wr64((uint8_t *)buf + 8, base_offset);
}

int
sl_batch_decompressed_length(const sl_batch_header *h, size_t *length_out)
{
    SL_ASSERT(h != NULL && length_out != NULL);
    uint64_t expansion_max;
    switch (h->flags & FLAGS_COMPRESSION) {
    case SL_COMPRESSION_NONE:
        expansion_max = 1;
        break;
    case SL_COMPRESSION_LZ4:
        expansion_max = LZ4_EXPANSION_MAX;
        break;
    case SL_COMPRESSION_ZSTD:
        expansion_max = ZSTD_EXPANSION_MAX;
        break;
    default:
        return SL_ECORRUPT;
    }
    if (h->uncompressed_size > RECORDS_SIZE_MAX ||
        h->uncompressed_size > (uint64_t)h->records_size * expansion_max) {
        return SL_ECORRUPT;
    }
    *length_out = SL_BATCH_HEADER_BYTES + (size_t)h->uncompressed_size;
    return SL_OK;
}

// Decodes src[0..src_size) into exactly dst[0..dst_size); any decoder complaint or a different
// output size is corruption. The caller checked that the codec is built in.
static int
decompress_records(uint8_t codec, const uint8_t *src, size_t src_size, uint8_t *dst,
                   size_t dst_size)
{
#ifdef SL_HAVE_LZ4
    if (codec == SL_COMPRESSION_LZ4) {
        // Never writes past dst_size and never reads past src_size, whatever src holds.
        int n = LZ4_decompress_safe((const char *)src, (char *)dst, (int)src_size, (int)dst_size);
        return n >= 0 && (size_t)n == dst_size ? SL_OK : SL_ECORRUPT;
    }
#endif
#ifdef SL_HAVE_ZSTD
    if (codec == SL_COMPRESSION_ZSTD) {
        // Exactly one frame, which declares the size the header claims.
        if (ZSTD_findFrameCompressedSize(src, src_size) != src_size ||
            ZSTD_getFrameContentSize(src, src_size) != (unsigned long long)dst_size) {
            return SL_ECORRUPT;
        }
        size_t n = ZSTD_decompress(dst, dst_size, src, src_size);
        if (ZSTD_isError(n)) {
            return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? SL_ENOMEM : SL_ECORRUPT;
        }
        return n == dst_size ? SL_OK : SL_ECORRUPT;
    }
#endif
    SL_ASSERT(!"decompress_records: codec not built in");
    return SL_ENOTSUP;
}

int
sl_batch_decompress(const void *batch, size_t size, void *out, size_t out_cap, size_t *out_len)
{
    SL_ASSERT(out_len != NULL);
    SL_ASSERT(out != NULL || out_cap == 0);
    sl_batch_header h;
    int err = sl_batch_validate(batch, size, &h);
    if (err != SL_OK) {
        return err == SL_EAGAIN ? SL_ECORRUPT : err; // a whole batch was promised
    }
    uint8_t codec = h.flags & FLAGS_COMPRESSION;
    if (!sl_batch_compression_available((sl_compression)codec)) {
        return SL_ENOTSUP;
    }
    size_t length = 0;
    err = sl_batch_decompressed_length(&h, &length);
    if (err != SL_OK) {
        return err;
    }
    *out_len = length;
    if (length > out_cap) {
        return SL_ETOOBIG;
    }
    uint8_t *o = out;
    if (codec == SL_COMPRESSION_NONE) {
        memcpy(o, batch, length);
        return SL_OK;
    }
    err = decompress_records(codec, (const uint8_t *)batch + SL_BATCH_HEADER_BYTES, h.records_size,
                             o + SL_BATCH_HEADER_BYTES, h.uncompressed_size);
    if (err != SL_OK) {
        return err;
    }
    if (!records_check(o + SL_BATCH_HEADER_BYTES, h.uncompressed_size, h.record_count)) {
        return SL_ECORRUPT;
    }
    memcpy(o, batch, SL_BATCH_HEADER_BYTES);
    wr32(o, (uint32_t)length);
    o[19] = (uint8_t)(h.flags & ~FLAGS_COMPRESSION);
    wr32(o + 52, h.uncompressed_size);
    wr32(o + 4, sl_crc32c(0, o + CRC_START, length - CRC_START));
    return SL_OK;
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
    SL_ASSERT(it != NULL && r != NULL && offset_out != NULL);
    if (it->left == 0) {
        return SL_ENOENT;
    }
    const uint8_t *p = it->pos;
    uint32_t size = record_check(p, (size_t)(it->end - p), it->index);
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
sl_record_header_next(const sl_record *r, sl_header_cursor *c, sl_header *out)
{
    SL_ASSERT(r != NULL && c != NULL && out != NULL);
    if (c->index >= r->header_count) {
        return SL_ENOENT;
    }
    if (r->raw_headers == NULL) {
        // A record being appended: its headers are still the caller's array.
        if (r->headers == NULL) {
            return SL_EINVAL;
        }
        *out = r->headers[c->index];
        c->index++;
        return SL_OK;
    }
    if (c->pos_bytes > r->raw_headers_size ||
        r->raw_headers_size - c->pos_bytes < HEADER_ENTRY_BYTES) {
        return SL_ECORRUPT;
    }
    const uint8_t *p = r->raw_headers + c->pos_bytes;
    uint32_t left = r->raw_headers_size - c->pos_bytes - HEADER_ENTRY_BYTES;
    uint16_t name_size = rd16(p);
    uint32_t value_size = rd32(p + 2);
    if ((uint64_t)name_size + value_size > left) {
        return SL_ECORRUPT;
    }
    out->name = (const char *)p + HEADER_ENTRY_BYTES;
    out->name_size = name_size;
    out->value = p + HEADER_ENTRY_BYTES + name_size;
    out->value_size = value_size;
    c->pos_bytes += HEADER_ENTRY_BYTES + name_size + value_size;
    c->index++;
    return SL_OK;
}

int
sl_record_header_at(const sl_record *r, uint16_t index, sl_header *out)
{
    SL_ASSERT(r != NULL && out != NULL);
    if (index >= r->header_count) {
        return SL_ERANGE;
    }
    sl_header_cursor c = {0};
    for (uint32_t i = 0; i <= index; i++) {
        int err = sl_record_header_next(r, &c, out);
        if (err != SL_OK) {
            return err == SL_ENOENT ? SL_ECORRUPT : err;
        }
    }
    return SL_OK;
}
