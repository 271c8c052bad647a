// sluiced configuration: defaults, config file, flags overriding the file, and clear errors.
#include "support/test_util.h"

#include <stdio.h>
#include <string.h>

#include <sluice/error.h>

#include "broker/config.h"

static void
test_config_defaults_are_the_embedded_default(void **state)
{
    (void)state;
    sl_broker_config c;
    sl_broker_config_default(&c);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 7420);
    assert_int_equal(c.admin_port, 7421);
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.topic.full_policy, SL_TOPIC_FULL_BLOCK);
}

static void
test_config_flags_parse_sizes_and_endpoints(void **state)
{
    (void)state;
    sl_broker_config c;
    sl_broker_config_default(&c);
    char *argv[] = {"sluiced",     "--listen",
                    "127.0.0.1:0", "--memory-budget",
                    "64MiB",       "--disk-budget=2GiB",
                    "--fsync",     "always",
                    "--admin",     "off",
                    NULL};
    int exit_now = 0;
    char err[512] = "";
    assert_int_equal(sl_broker_config_from_args(&c, 10, argv, &exit_now, err, sizeof(err)), SL_OK);
    assert_int_equal(exit_now, 0);
    assert_int_equal(c.listen_port, 0);
    assert_int_equal(c.memory_budget_bytes, 64ull << 20);
    assert_int_equal(c.disk_budget_bytes, 2ull << 30);
    assert_int_equal(c.fsync_policy, SL_FSYNC_ALWAYS);
    assert_int_equal(c.admin_enabled, 0);
}

static void
test_config_errors_name_the_flag(void **state)
{
    (void)state;
    sl_broker_config c;
    sl_broker_config_default(&c);
    int exit_now = 0;
    char err[512] = "";
    char *bad_size[] = {"sluiced", "--memory-budget", "lots", NULL};
    assert_int_equal(sl_broker_config_from_args(&c, 3, bad_size, &exit_now, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "memory_budget"));
    char *unknown[] = {"sluiced", "--turbo", "1", NULL};
    assert_int_equal(sl_broker_config_from_args(&c, 3, unknown, &exit_now, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "unknown flag '--turbo'"));
    char *missing[] = {"sluiced", "--data", NULL};
    assert_int_equal(sl_broker_config_from_args(&c, 2, missing, &exit_now, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    char *tiny[] = {"sluiced", "--memory-budget", "1KiB", NULL};
    assert_int_equal(sl_broker_config_from_args(&c, 3, tiny, &exit_now, err, sizeof(err)),
                     SL_EINVAL);
}

static void
test_config_file_then_flags_override(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char path[512];
    snprintf(path, sizeof(path), "%s/sluiced.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# comment\n\nmemory_budget = 32MiB  # trailing\ndata = /var/lib/x\n"
               "topic_full_policy = drop_oldest\ntopic_max_lag = 2s\n");
    fclose(f);
    sl_broker_config c;
    sl_broker_config_default(&c);
    char *argv[] = {"sluiced", "--data", "here", "--config", path, NULL};
    int exit_now = 0;
    char err[512] = "";
    assert_int_equal(sl_broker_config_from_args(&c, 5, argv, &exit_now, err, sizeof(err)), SL_OK);
    assert_int_equal(c.memory_budget_bytes, 32ull << 20);
    assert_string_equal(c.data_dir, "here"); // the flag wins over the file
    assert_int_equal(c.topic.full_policy, SL_TOPIC_FULL_DROP_OLDEST);
    assert_int_equal(c.topic.max_lag_ms, 2000);

    f = fopen(path, "w");
    fprintf(f, "memory_budget = 32MiB\nfsync = sometimes\n");
    fclose(f);
    sl_broker_config_default(&c);
    assert_int_equal(sl_broker_config_load(&c, path, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, ":2: fsync"));
    sl_test_rmtree(dir);
}

static void
test_config_print_round_trips(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char path[512];
    snprintf(path, sizeof(path), "%s/printed.conf", dir);
    sl_broker_config a;
    sl_broker_config_default(&a);
    a.memory_budget_bytes = 48ull << 20;
    a.fsync_policy = SL_FSYNC_NEVER;
    FILE *f = fopen(path, "w");
    sl_broker_config_print(&a, f);
    fclose(f);
    sl_broker_config b;
    sl_broker_config_default(&b);
    char err[512] = "";
    assert_int_equal(sl_broker_config_load(&b, path, err, sizeof(err)), SL_OK);
    assert_memory_equal(&a, &b, sizeof(a));
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_are_the_embedded_default),
        cmocka_unit_test(test_config_flags_parse_sizes_and_endpoints),
        cmocka_unit_test(test_config_errors_name_the_flag),
        cmocka_unit_test(test_config_file_then_flags_override),
        cmocka_unit_test(test_config_print_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
