// The error table: names, messages and errno mapping agree.
#include "support/test_util.h"

#include <errno.h>
#include <string.h>

#include <sluice/error.h>

static void
test_error_names_and_messages(void **state)
{
    (void)state;
    assert_string_equal(sl_errname(SL_OK), "SL_OK");
    assert_string_equal(sl_errname(SL_EFULL), "SL_EFULL");
    assert_string_equal(sl_errname(12345), "SL_UNKNOWN");
    assert_non_null(strstr(sl_strerror(SL_EFULL), "backpressure"));
    assert_string_equal(sl_strerror(-9999), "unknown error");
#define CHECK_DISTINCT(name, value, msg) assert_true(strlen(sl_strerror(value)) > 0);
    SL_ERRNO_MAP(CHECK_DISTINCT)
#undef CHECK_DISTINCT
}

static void
test_error_from_errno(void **state)
{
    (void)state;
    assert_int_equal(sl_from_errno(ENOSPC), SL_ENOSPC);
    assert_int_equal(sl_from_errno(EDQUOT), SL_ENOSPC);
    assert_int_equal(sl_from_errno(EIO), SL_EIO);
    assert_int_equal(sl_from_errno(0), SL_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names_and_messages),
        cmocka_unit_test(test_error_from_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
