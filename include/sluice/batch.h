// Record batches: the one format sluice uses in memory, on disk and on the wire, so the broker can
// serve consumers from the page cache without re-encoding. A batch is a 64-byte header followed by
// its records; a CRC32C covers everything after the base offset, which the log assigns, so
// assigning an offset never re-checksums. Byte-by-byte layout: docs/storage.md.
#ifndef SLUICE_BATCH_H
#define SLUICE_BATCH_H

#include <sluice/defs.h>

#define SL_BATCH_HEADER_BYTES 64u
#define SL_BATCH_MAGIC        0x4253u // "SB" little-endian
#define SL_BATCH_VERSION      1u
// Fixed part of one record inside a batch (see docs/storage.md).
#define SL_RECORD_HEADER_BYTES 28u
// Largest batch: 64 MiB, the largest record plus its framing must fit.
#define SL_BATCH_SIZE_MAX (64u * 1024u * 1024u + 4096u)
// A record with no key stores this key length.
#define SL_KEY_NULL 0xFFFFFFFFu

typedef enum sl_compression {
    SL_COMPRESSION_NONE = 0,
    SL_COMPRESSION_LZ4 = 1,
    SL_COMPRESSION_ZSTD = 2,
} sl_compression;

// One header (a name and a value) of a record. Borrowed views.
typedef struct sl_header {
    const char *name;
    uint16_t name_size;
    const void *value;
    uint32_t value_size;
} sl_header;

// A record to append (the caller's memory, borrowed) or a record read from a batch (a view into the
// batch's memory, valid as long as the batch buffer is).
typedef struct sl_record {
    const void *key; // NULL: no key (different from an empty key)
    uint32_t key_size;
    const void *value;
    uint32_t value_size;
    int64_t timestamp_us; // wall clock, microseconds since the epoch
    uint16_t header_count;
    const sl_header *headers;   // when appending; NULL when header_count == 0
    const uint8_t *raw_headers; // when reading: encoded headers (see sl_record_header_at)
    uint32_t raw_headers_size;
} sl_record;

// Decoded batch header.
typedef struct sl_batch_header {
    uint32_t length;      // whole batch in bytes, header included
    uint32_t crc;         // CRC32C of bytes [16, length)
    uint64_t base_offset; // offset of the first record; assigned by the log
    uint16_t magic;
    uint8_t version;
    uint8_t flags; // bits 0-2: sl_compression; others must be 0
    uint32_t record_count;
    int64_t first_timestamp_us;
    int64_t last_timestamp_us;
    uint64_t producer_id;       // 0: none
    uint32_t producer_seq;      // sequence of the first record, for idempotent producers
    uint32_t records_size;      // bytes of the record section as stored
    uint32_t uncompressed_size; // bytes of the record section before compression
} sl_batch_header;

// Bytes one record takes inside an uncompressed batch.
SL_API size_t sl_record_encoded_size(const sl_record *record);

// Builds a batch in a caller buffer (borrowed until finish). Not thread-safe.
typedef struct sl_batch_builder {
    uint8_t *buf;
    size_t capacity;
    size_t used;
    uint32_t record_count;
    int64_t first_timestamp_us;
    int64_t last_timestamp_us;
    uint64_t producer_id;
    uint32_t producer_seq;
    bool sealed; // finished compressed: buf holds the stored form; re-init before adding again
} sl_batch_builder;

// Starts a batch in buf[0..capacity). capacity must be at least SL_BATCH_HEADER_BYTES.
SL_API void sl_batch_builder_init(sl_batch_builder *b, void *buf, size_t capacity);

// Sets the idempotent-producer identity written into the header.
SL_API void sl_batch_builder_set_producer(sl_batch_builder *b, uint64_t producer_id, uint32_t seq);

// Appends a record. Returns SL_OK, SL_EFULL when the buffer has no room for it (the batch so far
// stays valid), SL_ETOOBIG when it exceeds SL_RECORD_SIZE_MAX or could never fit, SL_EINVAL.
SL_API SL_MUST_USE int sl_batch_builder_add(sl_batch_builder *b, const sl_record *record);

// Writes the header and CRC (base offset 0); returns the batch length via *length_out.
// SL_EINVAL for an empty batch. Records may still be added and the batch finished again, unless
// it was sealed by sl_batch_builder_finish_compressed.
SL_API SL_MUST_USE int sl_batch_builder_finish(sl_batch_builder *b, size_t *length_out);

// Like sl_batch_builder_finish, but stores the record section compressed with codec. The
// compressed bytes go to scratch[0..scratch_cap) first (borrowed for the call) and are copied
// back into the builder's buffer only if they are smaller than the records; otherwise, or when
// scratch_cap is too small to hold a smaller result, the batch is stored uncompressed (flags
// none), so scratch_cap >= the uncompressed record bytes (b->used - SL_BATCH_HEADER_BYTES) always
// suffices. Read the header to learn which form was stored. On SL_OK the builder is sealed
// (re-init it before adding). Returns SL_EINVAL for an empty batch or an unknown codec,
// SL_ENOTSUP when sluice was built without the codec's library (the builder is unchanged and
// sl_batch_builder_finish still works), SL_ENOMEM if the codec cannot allocate its state.
SL_API SL_MUST_USE int sl_batch_builder_finish_compressed(sl_batch_builder *b, sl_compression codec,
                                                          void *scratch, size_t scratch_cap,
                                                          size_t *length_out);

// True when this build can compress and decompress with codec (SL_COMPRESSION_NONE always).
SL_API bool sl_batch_compression_available(sl_compression codec);

// Decodes and checks the header only (magic, version, flags, lengths against size): SL_OK,
// SL_EAGAIN when size is shorter than the header or than the batch length (need more bytes),
// SL_ECORRUPT for a header that can never be valid. Never trusts a length before checking it.
SL_API SL_MUST_USE int sl_batch_header_decode(const void *buf, size_t size,
                                              sl_batch_header *header_out);

// Decodes the header and verifies the CRC and the record section's framing: SL_OK, SL_EAGAIN,
// or SL_ECORRUPT. A batch that passes can be iterated without further bounds failures.
SL_API SL_MUST_USE int sl_batch_validate(const void *buf, size_t size, sl_batch_header *header_out);

// Writes a new base offset into an encoded batch (outside the CRC: nothing else changes).
SL_API void sl_batch_set_base_offset(void *buf, uint64_t base_offset);

// Iterates the records of a validated, uncompressed batch. Views point into the batch buffer.
typedef struct sl_batch_iter {
    const uint8_t *pos;
    const uint8_t *end;
    uint64_t next_offset;
    uint32_t left;
    uint32_t index; // of the next record within the batch
    int64_t first_timestamp_us;
} sl_batch_iter;

// SL_OK, or SL_ENOTSUP for a compressed batch (decompress it first with sl_batch_decompress).
SL_API SL_MUST_USE int sl_batch_iter_init(sl_batch_iter *it, const void *batch, size_t size);

// Returns SL_OK with the next record and its offset, SL_ENOENT after the last one, or
// SL_ECORRUPT if the framing is wrong (only possible for unvalidated input).
SL_API SL_MUST_USE int sl_batch_iter_next(sl_batch_iter *it, sl_record *record_out,
                                          uint64_t *offset_out);

// Returns the header at index i of a record read from a batch (index < header_count): SL_OK,
// SL_ERANGE for an index past header_count, SL_ECORRUPT if the encoded headers are malformed
// (only possible for unvalidated input). For a record being appended (raw_headers NULL) it returns
// headers[index]. Walks the headers before index: use sl_record_header_next to visit them all.
SL_API SL_MUST_USE int sl_record_header_at(const sl_record *record, uint16_t index,
                                           sl_header *header_out);

// Position of sl_record_header_next within one record's headers; zero-initialise to start.
typedef struct sl_header_cursor {
    uint32_t index;     // of the next header
    uint32_t pos_bytes; // offset of the next header within raw_headers
} sl_header_cursor;

// Visits a record's headers in order, in time linear in their bytes: each call returns SL_OK with
// the next header and advances *cursor, SL_ENOENT after the last, or SL_ECORRUPT.
SL_API SL_MUST_USE int sl_record_header_next(const sl_record *record, sl_header_cursor *cursor,
                                             sl_header *header_out);

// The length the uncompressed form of a batch whose header decoded as h will have; for a
// compressed batch it also rejects (SL_ECORRUPT) an uncompressed_size the codec could never
// produce from records_size stored bytes, so a small batch cannot make a reader allocate a large
// buffer. Use it to size the buffer for sl_batch_decompress.
SL_API SL_MUST_USE int sl_batch_decompressed_length(const sl_batch_header *h, size_t *length_out);

// Writes the uncompressed equivalent of batch[0..size) into out[0..out_cap): the same header
// fields (base offset included) with flags none, records_size = uncompressed_size, a new CRC.
// The input is validated first (CRC, then sizes: never trusted), the output's record framing
// after. A batch that is already uncompressed is validated and copied. batch and out must not
// overlap; both are borrowed. Returns SL_OK with *out_len set; SL_ETOOBIG when out_cap is below
// the needed length (*out_len says how much); SL_ECORRUPT for a short, damaged or undecodable
// batch (any decoder failure); SL_ENOTSUP when sluice was built without the codec's library;
// SL_ENOMEM if the decoder cannot allocate its state. Thread-safe, no shared state.
SL_API SL_MUST_USE int sl_batch_decompress(const void *batch, size_t size, void *out,
                                           size_t out_cap, size_t *out_len);

#endif
