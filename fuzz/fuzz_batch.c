// Fuzz target for record batches, the bytes sluice reads from disk and the network: header
// decoding, validation, iteration of every record and header, and decompression into a bounded
// buffer must never crash or read out of bounds, whatever the input. Each input is also replayed
// with its CRC made right (so mutations reach the checks behind the CRC) and used as a script to
// build batches whose compressed form must decompress to the plain one byte for byte.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "log/crc32c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Decompression output bound: 16x the fuzzer's 64 KiB inputs, far below SL_BATCH_SIZE_MAX.
#define FUZZ_OUT_BYTES (1u << 20)
// sl_record_header_at costs O(index); past this many headers the walk uses the cursor alone.
#define FUZZ_HEADER_AT_MAX 256u
// Builder script: at most this many records, each up to 255 bytes of key and value.
#define FUZZ_SCRIPT_RECORDS_MAX 64u
#define FUZZ_BUILD_BYTES        (64u * 1024u)

static volatile uint8_t sink;

// Reads every byte of a view, so ASan sees any view that points outside its buffer.
static void
touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) {
        x ^= b[i];
    }
    sink ^= x;
}

static void
walk_headers(const sl_record *r)
{
    sl_header_cursor c = {0};
    sl_header h;
    for (uint32_t i = 0; i < r->header_count; i++) {
        if (sl_record_header_next(r, &c, &h) != SL_OK) {
            break;
        }
        touch(h.name, h.name_size);
        touch(h.value, h.value_size);
    }
    uint32_t n = r->header_count < FUZZ_HEADER_AT_MAX ? r->header_count : FUZZ_HEADER_AT_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (sl_record_header_at(r, (uint16_t)i, &h) == SL_OK) {
            touch(h.name, h.name_size);
            touch(h.value, h.value_size);
        }
    }
    if (r->header_count > 0 && sl_record_header_at(r, r->header_count - 1, &h) == SL_OK) {
        touch(h.value, h.value_size);
    }
}

// Walks every record; returns how many came out before SL_ENOENT or an error (-1 if an error).
static int64_t
walk_batch(const uint8_t *batch, size_t size)
{
    sl_batch_iter it;
    if (sl_batch_iter_init(&it, batch, size) != SL_OK) {
        return -1;
    }
    uint32_t count = it.left; // bounds the loop: one record per step
    for (uint32_t i = 0; i < count; i++) {
        sl_record r;
        uint64_t offset = 0;
        if (sl_batch_iter_next(&it, &r, &offset) != SL_OK) {
            return -1;
        }
        touch(r.key, r.key != NULL ? r.key_size : 0);
        touch(r.value, r.value_size);
        walk_headers(&r);
    }
    sl_record r;
    uint64_t offset = 0;
    if (sl_batch_iter_next(&it, &r, &offset) != SL_ENOENT) {
        abort();
    }
    return count;
}

static void
check_bytes(const uint8_t *data, size_t size, uint8_t *out)
{
    sl_batch_header h;
    int decoded = sl_batch_header_decode(data, size, &h);
    int valid = sl_batch_validate(data, size, &h);
    // Validation is decoding plus more checks: it never accepts what decoding refused.
    if (decoded != SL_OK && valid != decoded) {
        abort();
    }
    int64_t walked = walk_batch(data, size);
    // A plain batch that validates iterates without a single failure.
    if (valid == SL_OK && (h.flags & 7u) == SL_COMPRESSION_NONE && walked != h.record_count) {
        abort();
    }
    size_t out_len = 0;
    if (sl_batch_decompress(data, size, out, FUZZ_OUT_BYTES, &out_len) != SL_OK) {
        return;
    }
    sl_batch_header oh;
    if (out_len > FUZZ_OUT_BYTES || sl_batch_validate(out, out_len, &oh) != SL_OK) {
        abort();
    }
    if (oh.flags != 0 || oh.base_offset != h.base_offset || oh.record_count != h.record_count ||
        oh.producer_id != h.producer_id) {
        abort();
    }
    if (walk_batch(out, out_len) != oh.record_count) {
        abort();
    }
}

// Builds the records the script describes, plain and with each codec, and checks that every
// compressed form decompresses to exactly the plain bytes.
static void
check_round_trip(const uint8_t *data, size_t size, uint8_t *out)
{
    static uint8_t plain[FUZZ_BUILD_BYTES];
    static uint8_t packed[FUZZ_BUILD_BYTES];
    static uint8_t scratch[FUZZ_BUILD_BYTES];
    size_t plain_len = 0;
    for (int codec = SL_COMPRESSION_NONE; codec <= SL_COMPRESSION_ZSTD; codec++) {
        sl_batch_builder b;
        sl_batch_builder_init(&b, codec == 0 ? plain : packed, FUZZ_BUILD_BYTES);
        size_t pos = 0;
        for (uint32_t i = 0; i < FUZZ_SCRIPT_RECORDS_MAX && pos + 3 <= size; i++) {
            uint8_t key_size = data[pos];
            uint8_t value_size = data[pos + 1];
            sl_header hdr = {.name = (const char *)data + pos,
                             .name_size = data[pos + 2] & 15u,
                             .value = data + pos,
                             .value_size = data[pos + 2] >> 4};
            pos += 3;
            size_t take = (size_t)key_size + value_size + 15u;
            if (size - pos < take) {
                break;
            }
            sl_record r = {.key = key_size == 255 ? NULL : data + pos,
                           .key_size = key_size,
                           .value = data + pos + key_size,
                           .value_size = value_size,
                           .timestamp_us = (int64_t)i * 1000,
                           .header_count = (uint16_t)(data[pos] & 1u),
                           .headers = &hdr};
            pos += take;
            if (sl_batch_builder_add(&b, &r) != SL_OK) {
                break;
            }
        }
        if (b.record_count == 0) {
            return;
        }
        size_t len = 0;
        if (codec == SL_COMPRESSION_NONE) {
            if (sl_batch_builder_finish(&b, &plain_len) != SL_OK) {
                abort();
            }
            continue;
        }
        int err = sl_batch_builder_finish_compressed(&b, (sl_compression)codec, scratch,
                                                     sizeof(scratch), &len);
        if (err == SL_ENOTSUP) {
            continue;
        }
        size_t out_len = 0;
        if (err != SL_OK ||
            sl_batch_decompress(packed, len, out, FUZZ_OUT_BYTES, &out_len) != SL_OK ||
            out_len != plain_len || memcmp(out, plain, out_len) != 0) {
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *out;
    if (out == NULL) {
        out = malloc(FUZZ_OUT_BYTES); // exact size, so ASan flags any write past the bound
        if (out == NULL) {
            abort();
        }
    }
    check_bytes(data, size, out);
    if (size >= SL_BATCH_HEADER_BYTES) {
        uint8_t *copy = malloc(size);
        if (copy == NULL) {
            abort();
        }
        memcpy(copy, data, size);
        uint32_t length;
        memcpy(&length, copy, sizeof(length));
        size_t crc_end = length >= SL_BATCH_HEADER_BYTES && length <= size ? length : size;
        uint32_t crc = sl_crc32c(0, copy + 16, crc_end - 16);
        memcpy(copy + 4, &crc, sizeof(crc));
        check_bytes(copy, size, out);
        free(copy);
    }
    check_round_trip(data, size, out);
    return 0;
}
