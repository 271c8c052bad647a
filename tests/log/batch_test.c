// Record batches: round trip of keys, values and headers; CRC32C against known vectors in both
// implementations; the base offset outside the CRC; every kind of corruption detected; the
// worked example of docs/storage.md byte for byte.
#include "support/test_util.h"

#include <stdio.h>
#include <string.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "log/crc32c.h"

static void
test_crc32c_known_vectors_both_implementations(void **state)
{
    (void)state;
    const char *check = "123456789";
    assert_int_equal(sl__crc32c_portable(0, check, 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    uint8_t ones[32];
    memset(ones, 0xFF, sizeof(ones));
    uint8_t incr[32];
    for (int i = 0; i < 32; i++) {
        incr[i] = (uint8_t)i;
    }
    // Vectors from RFC 3720 (iSCSI), appendix B.4.
    assert_int_equal(sl__crc32c_portable(0, zeros, 32), 0x8A9136AAu);
    assert_int_equal(sl__crc32c_portable(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(sl__crc32c_portable(0, incr, 32), 0x46DD794Eu);
    if (sl__crc32c_hw_available()) {
        assert_int_equal(sl__crc32c_hw(0, check, 9), 0xE3069283u);
        assert_int_equal(sl__crc32c_hw(0, zeros, 32), 0x8A9136AAu);
        assert_int_equal(sl__crc32c_hw(0, ones, 32), 0x62A8AB43u);
        assert_int_equal(sl__crc32c_hw(0, incr, 32), 0x46DD794Eu);
        // Incremental use and every length/alignment agree between the two.
        uint8_t buf[301];
        for (size_t i = 0; i < sizeof(buf); i++) {
            buf[i] = (uint8_t)(i * 131 + 7);
        }
        for (size_t off = 0; off < 9; off++) {
            for (size_t len = 0; len + off <= sizeof(buf); len += 7) {
                assert_int_equal(sl__crc32c_hw(0, buf + off, len),
                                 sl__crc32c_portable(0, buf + off, len));
            }
        }
        uint32_t part = sl__crc32c_hw(0, buf, 100);
        assert_int_equal(sl__crc32c_hw(part, buf + 100, 201), sl__crc32c_portable(0, buf, 301));
    } else {
        print_message("no SSE4.2 on this CPU: hardware CRC32C not tested\n");
    }
}

static size_t
build_sample(uint8_t *buf, size_t cap)
{
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    sl_batch_builder_set_producer(&b, 42, 7);
    sl_header hdrs[2] = {{.name = "trace", .name_size = 5, .value = "abc", .value_size = 3},
                         {.name = "e", .name_size = 1, .value = NULL, .value_size = 0}};
    sl_record r1 = {
        .key = "k1", .key_size = 2, .value = "hello", .value_size = 5, .timestamp_us = 1000};
    sl_record r2 = {.key = NULL,
                    .value = "world!",
                    .value_size = 6,
                    .timestamp_us = 2000,
                    .header_count = 2,
                    .headers = hdrs};
    sl_record r3 = {.key = "", .key_size = 0, .value = NULL, .value_size = 0, .timestamp_us = 3000};
    assert_int_equal(sl_batch_builder_add(&b, &r1), SL_OK);
    assert_int_equal(sl_batch_builder_add(&b, &r2), SL_OK);
    assert_int_equal(sl_batch_builder_add(&b, &r3), SL_OK);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    assert_int_equal(len, SL_BATCH_HEADER_BYTES + sl_record_encoded_size(&r1) +
                              sl_record_encoded_size(&r2) + sl_record_encoded_size(&r3));
    return len;
}

static void
test_batch_round_trip(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = build_sample(buf, sizeof(buf));
    sl_batch_set_base_offset(buf, 100);
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
    assert_int_equal(h.base_offset, 100);
    assert_int_equal(h.record_count, 3);
    assert_int_equal(h.producer_id, 42);
    assert_int_equal(h.producer_seq, 7);
    assert_int_equal(h.first_timestamp_us, 1000);
    assert_int_equal(h.last_timestamp_us, 3000);
    sl_batch_iter it;
    assert_int_equal(sl_batch_iter_init(&it, buf, len), SL_OK);
    sl_record r;
    uint64_t off;
    assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_OK);
    assert_int_equal(off, 100);
    assert_memory_equal(r.key, "k1", 2);
    assert_memory_equal(r.value, "hello", 5);
    assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_OK);
    assert_int_equal(off, 101);
    assert_null(r.key);
    assert_int_equal(r.header_count, 2);
    sl_header hh;
    assert_int_equal(sl_record_header_at(&r, 0, &hh), SL_OK);
    assert_memory_equal(hh.name, "trace", 5);
    assert_memory_equal(hh.value, "abc", 3);
    assert_int_equal(sl_record_header_at(&r, 1, &hh), SL_OK);
    assert_int_equal(hh.value_size, 0);
    assert_int_equal(sl_record_header_at(&r, 2, &hh), SL_ERANGE);
    assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_OK);
    assert_non_null(r.key); // empty key is not a null key
    assert_int_equal(r.key_size, 0);
    assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_ENOENT);
}

static void
test_batch_builder_full_and_too_big(void **state)
{
    (void)state;
    char value[40] = {0};
    sl_record r = {.value = value, .value_size = sizeof(value)}; // 28 + 40 = 68 bytes encoded
    uint8_t small[128];
    sl_batch_builder b;
    sl_batch_builder_init(&b, small, sizeof(small));
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_ETOOBIG); // 64 + 68 can never fit in 128
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_EINVAL);
    uint8_t buf[200];
    sl_batch_builder_init(&b, buf, sizeof(buf));
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK); // exactly 200
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_EFULL);
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    assert_int_equal(len, 200);
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
    assert_int_equal(h.record_count, 2);
}

static void
test_batch_every_bit_flip_detected(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = build_sample(buf, sizeof(buf));
    sl_batch_header h;
    for (size_t i = 0; i < len; i++) {
        if (i >= 8 && i < 16) {
            continue; // the base offset is outside the CRC by design
        }
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            int err = sl_batch_validate(buf, len, &h);
            assert_true(err == SL_ECORRUPT || err == SL_EAGAIN);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
}

static void
test_batch_truncation_needs_more_bytes(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = build_sample(buf, sizeof(buf));
    sl_batch_header h;
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(sl_batch_validate(buf, n, &h), SL_EAGAIN);
    }
}

static void
test_batch_zero_filled_is_corrupt(void **state)
{
    (void)state;
    uint8_t zeros[256] = {0};
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(zeros, sizeof(zeros), &h), SL_ECORRUPT);
}

static void
fix_crc(uint8_t *batch, size_t len)
{
    uint32_t crc = sl_crc32c(0, batch + 16, len - 16);
    memcpy(batch + 4, &crc, sizeof(crc));
}

// The worked example in docs/storage.md: these exact bytes, so the doc cannot drift.
static void
test_batch_worked_example_bytes(void **state)
{
    (void)state;
    static const uint8_t expected[] = {
        0x67, 0x00, 0x00, 0x00, 0xe2, 0xf6, 0x6f, 0x6c, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x53, 0x42, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x40, 0x1e, 0x18, 0x24, 0x0a,
        0x06, 0x00, 0x00, 0x40, 0x1e, 0x18, 0x24, 0x0a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x1e,
        0x18, 0x24, 0x0a, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x6b, 0x68, 0x69, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x68, 0x31};
    uint8_t buf[256];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, sizeof(buf));
    sl_header h = {.name = "h", .name_size = 1, .value = "1", .value_size = 1};
    sl_record r = {.key = "k",
                   .key_size = 1,
                   .value = "hi",
                   .value_size = 2,
                   .timestamp_us = 1700000000000000,
                   .header_count = 1,
                   .headers = &h};
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    sl_batch_set_base_offset(buf, 42);
    assert_int_equal(len, sizeof(expected));
    assert_memory_equal(buf, expected, sizeof(expected));
}

static void
test_builder_rejects_sizes_without_bytes(void **state)
{
    (void)state;
    uint8_t buf[256];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, sizeof(buf));
    sl_header no_name = {.name = NULL, .name_size = 3, .value = "v", .value_size = 1};
    sl_header no_value = {.name = "n", .name_size = 1, .value = NULL, .value_size = 2};
    sl_record r = {.value = "x", .value_size = 1, .header_count = 1, .headers = &no_name};
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_EINVAL);
    r.headers = &no_value;
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_EINVAL);
    sl_record no_bytes = {.value = NULL, .value_size = 5};
    assert_int_equal(sl_batch_builder_add(&b, &no_bytes), SL_EINVAL);
    sl_record no_headers = {.value = "x", .value_size = 1, .header_count = 2, .headers = NULL};
    assert_int_equal(sl_batch_builder_add(&b, &no_headers), SL_EINVAL);
    sl_record too_big = {.key = "k", .key_size = SL_KEY_NULL, .value = "x", .value_size = 1};
    assert_int_equal(sl_batch_builder_add(&b, &too_big), SL_ETOOBIG);
    // NULL with size 0 is an empty name or value (never passed to memcpy), read back non-NULL.
    sl_header empty = {.name = NULL, .name_size = 0, .value = NULL, .value_size = 0};
    r.headers = &empty;
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
    assert_int_equal(h.record_count, 1);
    sl_batch_iter it;
    assert_int_equal(sl_batch_iter_init(&it, buf, len), SL_OK);
    sl_record got;
    uint64_t off;
    assert_int_equal(sl_batch_iter_next(&it, &got, &off), SL_OK);
    sl_header hh;
    assert_int_equal(sl_record_header_at(&got, 0, &hh), SL_OK);
    assert_non_null(hh.name);
    assert_int_equal(hh.name_size, 0);
    assert_int_equal(hh.value_size, 0);
}

static void
test_header_cursor_visits_every_header_once(void **state)
{
    (void)state;
    enum { COUNT = 300 };
    static sl_header hdrs[COUNT];
    static char names[COUNT][8];
    for (int i = 0; i < COUNT; i++) {
        int n = snprintf(names[i], sizeof(names[i]), "h%d", i);
        hdrs[i] = (sl_header){.name = names[i],
                              .name_size = (uint16_t)n,
                              .value = names[i],
                              .value_size = (uint32_t)(i % 4)};
    }
    static uint8_t buf[16384];
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, sizeof(buf));
    sl_record r = {.value = "v", .value_size = 1, .header_count = COUNT, .headers = hdrs};
    assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
    size_t len = 0;
    assert_int_equal(sl_batch_builder_finish(&b, &len), SL_OK);
    sl_batch_header h;
    assert_int_equal(sl_batch_validate(buf, len, &h), SL_OK);
    sl_batch_iter it;
    assert_int_equal(sl_batch_iter_init(&it, buf, len), SL_OK);
    sl_record got;
    uint64_t off;
    assert_int_equal(sl_batch_iter_next(&it, &got, &off), SL_OK);
    sl_header_cursor c = {0};
    sl_header hh;
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(sl_record_header_next(&got, &c, &hh), SL_OK);
        assert_int_equal(hh.name_size, hdrs[i].name_size);
        assert_memory_equal(hh.name, hdrs[i].name, hh.name_size);
        assert_int_equal(hh.value_size, hdrs[i].value_size);
        sl_header at;
        assert_int_equal(sl_record_header_at(&got, (uint16_t)i, &at), SL_OK);
        assert_ptr_equal(at.name, hh.name);
    }
    assert_int_equal(sl_record_header_next(&got, &c, &hh), SL_ENOENT);
    // A record being appended answers from its own array.
    sl_header_cursor c2 = {0};
    assert_int_equal(sl_record_header_next(&r, &c2, &hh), SL_OK);
    assert_ptr_equal(hh.name, hdrs[0].name);
    assert_int_equal(sl_record_header_at(&r, 299, &hh), SL_OK);
    assert_ptr_equal(hh.name, hdrs[299].name);
    // A record whose raw headers are shorter than they claim.
    got.raw_headers_size -= 1;
    assert_int_equal(sl_record_header_at(&got, COUNT - 1, &hh), SL_ECORRUPT);
}

// Field combinations a CRC cannot vouch for: a plain batch whose sizes disagree, and record sizes
// whose 32-bit sum would wrap. Each is refused even with a correct CRC.
static void
test_batch_inconsistent_sizes_behind_valid_crc(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = build_sample(buf, sizeof(buf));
    sl_batch_header h;
    uint8_t copy[1024];
    memcpy(copy, buf, len);
    uint32_t v = (uint32_t)(len - SL_BATCH_HEADER_BYTES) + 1; // uncompressed_size != records_size
    memcpy(copy + 56, &v, 4);
    fix_crc(copy, len);
    assert_int_equal(sl_batch_validate(copy, len, &h), SL_ECORRUPT);
    // First record: key_size + value_size wraps to its real payload size in 32 bits.
    memcpy(copy, buf, len);
    uint32_t key_size = 0xFFFFFFF0u;
    uint32_t value_size = 2 + 5 + 0x10;
    memcpy(copy + SL_BATCH_HEADER_BYTES + 16, &key_size, 4);
    memcpy(copy + SL_BATCH_HEADER_BYTES + 20, &value_size, 4);
    fix_crc(copy, len);
    assert_int_equal(sl_batch_validate(copy, len, &h), SL_ECORRUPT);
    sl_batch_iter it;
    assert_int_equal(sl_batch_iter_init(&it, copy, len), SL_OK);
    sl_record r;
    uint64_t off;
    assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_ECORRUPT);
    // A record count that could not fit in the bytes.
    memcpy(copy, buf, len);
    uint32_t count = (uint32_t)len;
    memcpy(copy + 20, &count, 4);
    fix_crc(copy, len);
    assert_int_equal(sl_batch_header_decode(copy, len, &h), SL_ECORRUPT);
    // Trailing bytes after the last record.
    memcpy(copy, buf, len);
    count = 2;
    memcpy(copy + 20, &count, 4);
    fix_crc(copy, len);
    assert_int_equal(sl_batch_validate(copy, len, &h), SL_ECORRUPT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_vectors_both_implementations),
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_batch_builder_full_and_too_big),
        cmocka_unit_test(test_batch_every_bit_flip_detected),
        cmocka_unit_test(test_batch_truncation_needs_more_bytes),
        cmocka_unit_test(test_batch_zero_filled_is_corrupt),
        cmocka_unit_test(test_batch_worked_example_bytes),
        cmocka_unit_test(test_builder_rejects_sizes_without_bytes),
        cmocka_unit_test(test_header_cursor_visits_every_header_once),
        cmocka_unit_test(test_batch_inconsistent_sizes_behind_valid_crc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
