// Batch compression: LZ4 and zstd round trips that decompress to the very bytes of the plain
// batch, incompressible data stored plain, decompression bombs refused before any decoding, and
// damaged payloads behind a valid CRC reported as SL_ECORRUPT.
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "log/crc32c.h"

#define RECORDS    64u
#define BATCH_CAP  (64u * 1024u)
#define VALUE_SIZE 200u

static const sl_compression CODECS[] = {SL_COMPRESSION_LZ4, SL_COMPRESSION_ZSTD};

// Adds RECORDS records with keys, headers and (when compressible) repetitive values.
static void
add_records(sl_batch_builder *b, bool compressible, uint64_t *rng)
{
    static const sl_header hdrs[2] = {
        {.name = "trace-id", .name_size = 8, .value = "0123456789abcdef", .value_size = 16},
        {.name = "", .name_size = 0, .value = NULL, .value_size = 0}};
    sl_batch_builder_set_producer(b, 9, 77);
    for (uint32_t i = 0; i < RECORDS; i++) {
        char key[16];
        uint8_t value[VALUE_SIZE];
        int key_len = snprintf(key, sizeof(key), "key-%u", (unsigned)(i % 7));
        for (uint32_t j = 0; j < VALUE_SIZE; j++) {
            value[j] = compressible ? (uint8_t)("sluice "[j % 7]) : (uint8_t)sl_test_rand(rng);
        }
        sl_record r = {.key = key,
                       .key_size = (uint32_t)key_len,
                       .value = value,
                       .value_size = VALUE_SIZE,
                       .timestamp_us = 1000 + i,
                       .header_count = (uint16_t)(i % 3 == 0 ? 2 : 0),
                       .headers = i % 3 == 0 ? hdrs : NULL};
        assert_int_equal(sl_batch_builder_add(b, &r), SL_OK);
    }
}

// Builds the same records twice: plain into plain[], compressed with codec into packed[].
static void
build_pair(sl_compression codec, bool compressible, uint8_t *plain, size_t *plain_len,
           uint8_t *packed, size_t *packed_len)
{
    uint64_t seed = 12345;
    uint64_t rng = seed;
    sl_batch_builder b;
    sl_batch_builder_init(&b, plain, BATCH_CAP);
    add_records(&b, compressible, &rng);
    assert_int_equal(sl_batch_builder_finish(&b, plain_len), SL_OK);
    rng = seed;
    uint8_t *scratch = malloc(BATCH_CAP);
    assert_non_null(scratch);
    sl_batch_builder_init(&b, packed, BATCH_CAP);
    add_records(&b, compressible, &rng);
    assert_int_equal(sl_batch_builder_finish_compressed(&b, codec, scratch, BATCH_CAP, packed_len),
                     SL_OK);
    assert_true(b.sealed);
    assert_int_equal(b.used, *packed_len);
    free(scratch);
}

static void
fix_crc(uint8_t *batch, size_t len)
{
    uint32_t crc = sl_crc32c(0, batch + 16, len - 16);
    memcpy(batch + 4, &crc, sizeof(crc));
}

static void
test_compress_round_trip_each_codec(void **state)
{
    (void)state;
    uint8_t *plain = malloc(BATCH_CAP);
    uint8_t *packed = malloc(BATCH_CAP);
    uint8_t *out = malloc(BATCH_CAP);
    assert_true(plain != NULL && packed != NULL && out != NULL);
    for (size_t c = 0; c < sizeof(CODECS) / sizeof(CODECS[0]); c++) {
        if (!sl_batch_compression_available(CODECS[c])) {
            print_message("codec %d not built in: round trip not tested\n", (int)CODECS[c]);
            continue;
        }
        size_t plain_len = 0;
        size_t packed_len = 0;
        build_pair(CODECS[c], true, plain, &plain_len, packed, &packed_len);
        sl_batch_header h;
        assert_int_equal(sl_batch_validate(packed, packed_len, &h), SL_OK);
        assert_int_equal(h.flags, CODECS[c]);
        assert_int_equal(h.record_count, RECORDS);
        assert_int_equal(h.uncompressed_size, plain_len - SL_BATCH_HEADER_BYTES);
        assert_int_equal(h.records_size, packed_len - SL_BATCH_HEADER_BYTES);
        assert_true(packed_len < plain_len / 4); // repetitive values compress well
        sl_batch_iter it;
        assert_int_equal(sl_batch_iter_init(&it, packed, packed_len), SL_ENOTSUP);
        // The broker assigns the offset to the stored (compressed) form without re-checksumming.
        sl_batch_set_base_offset(packed, 5000);
        sl_batch_set_base_offset(plain, 5000);
        size_t needed = 0;
        assert_int_equal(sl_batch_decompressed_length(&h, &needed), SL_OK);
        assert_int_equal(needed, plain_len);
        size_t out_len = 0;
        assert_int_equal(sl_batch_decompress(packed, packed_len, out, BATCH_CAP, &out_len), SL_OK);
        // Same header fields, flags none, new CRC: exactly the bytes of the plain batch.
        assert_int_equal(out_len, plain_len);
        assert_memory_equal(out, plain, plain_len);
        assert_int_equal(sl_batch_iter_init(&it, out, out_len), SL_OK);
        sl_record r;
        uint64_t offset = 0;
        for (uint32_t i = 0; i < RECORDS; i++) {
            assert_int_equal(sl_batch_iter_next(&it, &r, &offset), SL_OK);
            assert_int_equal(offset, 5000 + i);
            assert_int_equal(r.timestamp_us, 1000 + i);
        }
        assert_int_equal(sl_batch_iter_next(&it, &r, &offset), SL_ENOENT);
        // Too small an output buffer: refused, and told how much is needed.
        out_len = 0;
        assert_int_equal(sl_batch_decompress(packed, packed_len, out, plain_len - 1, &out_len),
                         SL_ETOOBIG);
        assert_int_equal(out_len, plain_len);
    }
    free(plain);
    free(packed);
    free(out);
}

// One record of random bytes: no codec can shrink it, so it is stored as it is. scratch holds
// SCRATCH_BYTES.
#define SCRATCH_BYTES 2048u
static size_t
build_random_record(uint8_t *buf, size_t cap, sl_compression codec, uint8_t *scratch)
{
    uint8_t value[1000];
    uint64_t rng = 99;
    for (size_t i = 0; i < sizeof(value); i++) {
        value[i] = (uint8_t)sl_test_rand(&rng);
    }
    sl_record r = {.value = value, .value_size = sizeof(value), .timestamp_us = 1};
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    size_t len = 0;
    if (codec == SL_COMPRESSION_NONE) {
        assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    } else {
        assert_int_equal(
            sl_batch_builder_finish_compressed(&b, codec, scratch, SCRATCH_BYTES, &len), SL_OK);
    }
    return len;
}

static void
test_incompressible_or_no_scratch_is_stored_plain(void **state)
{
    (void)state;
    uint8_t *plain = malloc(BATCH_CAP);
    uint8_t *packed = malloc(BATCH_CAP);
    assert_true(plain != NULL && packed != NULL);
    for (size_t c = 0; c < sizeof(CODECS) / sizeof(CODECS[0]); c++) {
        if (!sl_batch_compression_available(CODECS[c])) {
            continue;
        }
        size_t plain_len = build_random_record(plain, BATCH_CAP, SL_COMPRESSION_NONE, NULL);
        size_t packed_len = build_random_record(packed, BATCH_CAP, CODECS[c], plain + 2048);
        assert_int_equal(packed_len, plain_len);
        assert_memory_equal(packed, plain, plain_len);
        // Compressible, but a scratch buffer too small for any result: stored plain as well.
        uint64_t rng = 1;
        sl_batch_builder b;
        sl_batch_builder_init(&b, packed, BATCH_CAP);
        add_records(&b, true, &rng);
        uint8_t tiny[8];
        assert_int_equal(
            sl_batch_builder_finish_compressed(&b, CODECS[c], tiny, sizeof(tiny), &packed_len),
            SL_OK);
        sl_batch_header h;
        assert_int_equal(sl_batch_validate(packed, packed_len, &h), SL_OK);
        assert_int_equal(h.flags, SL_COMPRESSION_NONE);
    }
    // No codec at all, and an unknown one.
    uint64_t rng = 1;
    sl_batch_builder b;
    sl_batch_builder_init(&b, packed, BATCH_CAP);
    add_records(&b, true, &rng);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish_compressed(&b, (sl_compression)7, NULL, 0, &len),
                     SL_EINVAL);
    assert_false(b.sealed);
    assert_int_equal(sl_batch_builder_finish_compressed(&b, SL_COMPRESSION_NONE, NULL, 0, &len),
                     SL_OK);
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(packed, len, &h), SL_OK);
    assert_int_equal(h.flags, SL_COMPRESSION_NONE);
    // Empty batch.
    sl_batch_builder_init(&b, packed, BATCH_CAP);
    assert_int_equal(
        sl_batch_builder_finish_compressed(&b, SL_COMPRESSION_LZ4, plain, BATCH_CAP, &len),
        SL_EINVAL);
    free(plain);
    free(packed);
}

// A small batch claiming a huge uncompressed size is refused from its header alone: the output
// buffer is never touched, so nothing sized from the claim is ever needed.
static void
test_decompression_bomb_refused_before_decoding(void **state)
{
    (void)state;
    uint8_t *plain = malloc(BATCH_CAP);
    uint8_t *packed = malloc(BATCH_CAP);
    uint8_t out[4096];
    assert_true(plain != NULL && packed != NULL);
    for (size_t c = 0; c < sizeof(CODECS) / sizeof(CODECS[0]); c++) {
        if (!sl_batch_compression_available(CODECS[c])) {
            continue;
        }
        size_t plain_len = 0;
        size_t packed_len = 0;
        build_pair(CODECS[c], true, plain, &plain_len, packed, &packed_len);
        uint32_t claims[] = {SL_BATCH_SIZE_MAX - SL_BATCH_HEADER_BYTES,
                             (uint32_t)(packed_len - SL_BATCH_HEADER_BYTES) * 40000u};
        for (size_t k = 0; k < sizeof(claims) / sizeof(claims[0]); k++) {
            memcpy(packed + 56, &claims[k], sizeof(claims[k]));
            fix_crc(packed, packed_len);
            sl_batch_header h;
            assert_int_equal(sl_batch_validate(packed, packed_len, &h), SL_OK);
            size_t needed = 0;
            assert_int_equal(sl_batch_decompressed_length(&h, &needed), SL_ECORRUPT);
            memset(out, 0xAA, sizeof(out));
            size_t out_len = 0;
            // Even a caller offering the whole claim gets SL_ECORRUPT; here it offers 4 KiB.
            assert_int_equal(sl_batch_decompress(packed, packed_len, out, sizeof(out), &out_len),
                             SL_ECORRUPT);
            for (size_t i = 0; i < sizeof(out); i++) {
                assert_int_equal(out[i], 0xAA);
            }
        }
        // Past the largest batch: the header itself is refused.
        uint32_t huge = SL_BATCH_SIZE_MAX;
        memcpy(packed + 56, &huge, sizeof(huge));
        fix_crc(packed, packed_len);
        sl_batch_header h;
        assert_int_equal(sl_batch_validate(packed, packed_len, &h), SL_ECORRUPT);
    }
    free(plain);
    free(packed);
}

static void
test_damaged_payload_behind_valid_crc_is_corrupt(void **state)
{
    (void)state;
    uint8_t *plain = malloc(BATCH_CAP);
    uint8_t *packed = malloc(BATCH_CAP);
    uint8_t *damaged = malloc(BATCH_CAP);
    uint8_t *out = malloc(BATCH_CAP);
    assert_true(plain != NULL && packed != NULL && damaged != NULL && out != NULL);
    for (size_t c = 0; c < sizeof(CODECS) / sizeof(CODECS[0]); c++) {
        if (!sl_batch_compression_available(CODECS[c])) {
            continue;
        }
        size_t plain_len = 0;
        size_t len = 0;
        build_pair(CODECS[c], true, plain, &plain_len, packed, &len);
        size_t out_len = 0;
        // Whole payload overwritten (0xFF: lengths that run past the input; 0x00: no magic).
        const uint8_t fills[] = {0xFF, 0x00};
        for (size_t f = 0; f < sizeof(fills); f++) {
            memcpy(damaged, packed, len);
            memset(damaged + SL_BATCH_HEADER_BYTES, fills[f], len - SL_BATCH_HEADER_BYTES);
            fix_crc(damaged, len);
            assert_int_equal(sl_batch_decompress(damaged, len, out, BATCH_CAP, &out_len),
                             SL_ECORRUPT);
        }
        // Payload cut short, header lengths and CRC consistent with the cut.
        size_t cut = len - 5;
        memcpy(damaged, packed, cut);
        uint32_t length = (uint32_t)cut;
        uint32_t records_size = (uint32_t)(cut - SL_BATCH_HEADER_BYTES);
        memcpy(damaged, &length, 4);
        memcpy(damaged + 52, &records_size, 4);
        fix_crc(damaged, cut);
        assert_int_equal(sl_batch_decompress(damaged, cut, out, BATCH_CAP, &out_len), SL_ECORRUPT);
        // A plausible claim that is off by one from what the payload decodes to.
        memcpy(damaged, packed, len);
        uint32_t claim = (uint32_t)(plain_len - SL_BATCH_HEADER_BYTES + 1);
        memcpy(damaged + 56, &claim, 4);
        fix_crc(damaged, len);
        assert_int_equal(sl_batch_decompress(damaged, len, out, BATCH_CAP, &out_len), SL_ECORRUPT);
        // Every single-byte change with a recomputed CRC: a clean error or a batch that
        // validates, never a crash or an out-of-bounds access (ASan checks the latter).
        for (size_t i = SL_BATCH_HEADER_BYTES; i < len; i++) {
            memcpy(damaged, packed, len);
            damaged[i] ^= 0x5A;
            fix_crc(damaged, len);
            int err = sl_batch_decompress(damaged, len, out, BATCH_CAP, &out_len);
            assert_true(err == SL_OK || err == SL_ECORRUPT);
            if (err == SL_OK) {
                sl_batch_header h;
                assert_int_equal(sl_batch_validate(out, out_len, &h), SL_OK);
            }
        }
        // Without the CRC fixed up, the CRC catches it first.
        memcpy(damaged, packed, len);
        damaged[len - 1] ^= 1;
        assert_int_equal(sl_batch_decompress(damaged, len, out, BATCH_CAP, &out_len), SL_ECORRUPT);
        assert_int_equal(sl_batch_decompress(packed, len - 1, out, BATCH_CAP, &out_len),
                         SL_ECORRUPT);
    }
    free(plain);
    free(packed);
    free(damaged);
    free(out);
}

static void
test_decompress_plain_batch_copies_it(void **state)
{
    (void)state;
    uint8_t *plain = malloc(BATCH_CAP);
    uint8_t *out = malloc(BATCH_CAP);
    assert_true(plain != NULL && out != NULL);
    uint64_t rng = 3;
    sl_batch_builder b;
    sl_batch_builder_init(&b, plain, BATCH_CAP);
    add_records(&b, false, &rng);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    size_t out_len = 0;
    assert_int_equal(sl_batch_decompress(plain, len, out, BATCH_CAP, &out_len), SL_OK);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, plain, len);
    free(plain);
    free(out);
}

static void
test_absent_codec_is_not_supported(void **state)
{
    (void)state;
    assert_true(sl_batch_compression_available(SL_COMPRESSION_NONE));
    assert_false(sl_batch_compression_available((sl_compression)3));
    // A batch flagged with a codec this build lacks is refused with SL_ENOTSUP, not SL_ECORRUPT.
    for (size_t c = 0; c < sizeof(CODECS) / sizeof(CODECS[0]); c++) {
        if (sl_batch_compression_available(CODECS[c])) {
            continue;
        }
        uint8_t batch[128] = {0};
        sl_batch_builder b;
        sl_batch_builder_init(&b, batch, sizeof(batch));
        sl_record r = {.value = "v", .value_size = 1};
        assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
        size_t len = 0;
        uint8_t scratch[128];
        assert_int_equal(
            sl_batch_builder_finish_compressed(&b, CODECS[c], scratch, sizeof(scratch), &len),
            SL_ENOTSUP);
        assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
        batch[19] = (uint8_t)CODECS[c];
        uint32_t claim = 64;
        memcpy(batch + 56, &claim, 4);
        fix_crc(batch, len);
        uint8_t out[256];
        assert_int_equal(sl_batch_decompress(batch, len, out, sizeof(out), &len), SL_ENOTSUP);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress_round_trip_each_codec),
        cmocka_unit_test(test_incompressible_or_no_scratch_is_stored_plain),
        cmocka_unit_test(test_decompression_bomb_refused_before_decoding),
        cmocka_unit_test(test_damaged_payload_behind_valid_crc_is_corrupt),
        cmocka_unit_test(test_decompress_plain_batch_copies_it),
        cmocka_unit_test(test_absent_codec_is_not_supported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
