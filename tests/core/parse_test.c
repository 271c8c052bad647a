// Sizes, durations and endpoints as users type them, and the errors they get when wrong.
#include "support/test_util.h"

#include <string.h>

#include <sluice/error.h>

#include "core/parse.h"

static void
test_parse_size_units(void **state)
{
    (void)state;
    uint64_t v = 0;
    char err[128];
    assert_int_equal(sl_parse_size("4096", &v, err, sizeof(err)), SL_OK);
    assert_int_equal(v, 4096);
    assert_int_equal(sl_parse_size("64MiB", &v, err, sizeof(err)), SL_OK);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(sl_parse_size("64 mib", &v, err, sizeof(err)), SL_OK);
    assert_int_equal(v, 64ull << 20);
    assert_int_equal(sl_parse_size("1GB", &v, err, sizeof(err)), SL_OK);
    assert_int_equal(v, 1000000000ull);
    assert_int_equal(sl_parse_size("2g", &v, err, sizeof(err)), SL_OK);
    assert_int_equal(v, 2ull << 30);
}

static void
test_parse_size_errors_are_clear(void **state)
{
    (void)state;
    uint64_t v = 0;
    char err[128];
    assert_int_equal(sl_parse_size("lots", &v, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "not a size"));
    assert_int_equal(sl_parse_size("12 parsecs", &v, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "unknown size unit"));
    assert_int_equal(sl_parse_size("-5", &v, err, sizeof(err)), SL_EINVAL);
    assert_int_equal(sl_parse_size("99999999999999999999", &v, err, sizeof(err)), SL_ERANGE);
    assert_int_equal(sl_parse_size("20000000TiB", &v, err, sizeof(err)), SL_ERANGE);
}

static void
test_parse_duration(void **state)
{
    (void)state;
    int64_t ms = 0;
    char err[128];
    assert_int_equal(sl_parse_duration_ms("250ms", &ms, err, sizeof(err)), SL_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(sl_parse_duration_ms("2s", &ms, err, sizeof(err)), SL_OK);
    assert_int_equal(ms, 2000);
    assert_int_equal(sl_parse_duration_ms("5m", &ms, err, sizeof(err)), SL_OK);
    assert_int_equal(ms, 300000);
    assert_int_equal(sl_parse_duration_ms("10", &ms, err, sizeof(err)), SL_OK);
    assert_int_equal(ms, 10);
    assert_int_equal(sl_parse_duration_ms("1us", &ms, err, sizeof(err)), SL_OK);
    assert_int_equal(ms, 1);
    assert_int_equal(sl_parse_duration_ms("3 fortnights", &ms, err, sizeof(err)), SL_EINVAL);
}

static void
test_parse_endpoint(void **state)
{
    (void)state;
    char host[256];
    uint16_t port = 0;
    char err[128];
    assert_int_equal(
        sl_parse_endpoint("127.0.0.1:7420", host, sizeof(host), &port, 0, err, sizeof(err)), SL_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7420);
    assert_int_equal(sl_parse_endpoint("[::1]:0", host, sizeof(host), &port, 1, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(sl_parse_endpoint("localhost", host, sizeof(host), &port, 0, err, sizeof(err)),
                     SL_EINVAL);
    assert_int_equal(sl_parse_endpoint("h:0", host, sizeof(host), &port, 0, err, sizeof(err)),
                     SL_EINVAL);
    assert_int_equal(sl_parse_endpoint("h:70000", host, sizeof(host), &port, 1, err, sizeof(err)),
                     SL_EINVAL);
    assert_int_equal(sl_parse_endpoint("h:12x", host, sizeof(host), &port, 1, err, sizeof(err)),
                     SL_EINVAL);
}

static void
test_format_size(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(sl_format_size(512, buf, sizeof(buf)), "512 B");
    assert_string_equal(sl_format_size(64ull << 20, buf, sizeof(buf)), "64.0 MiB");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size_units), cmocka_unit_test(test_parse_size_errors_are_clear),
        cmocka_unit_test(test_parse_duration),   cmocka_unit_test(test_parse_endpoint),
        cmocka_unit_test(test_format_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
