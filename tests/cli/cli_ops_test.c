// The operator commands in-process against a real sluiced with its admin endpoint: `sluice demo`
// runs ~5 s of bursts against a slow consumer and reports 0 lost; `why` names an absent consumer
// (readable and --json), `drops` says nothing was dropped, `stats` prints the summary with what
// pushes back, `top --iterations` redraws and stops; unknown topics and an unreachable admin port
// give the documented exit codes.
// ctest-labels: concurrent
// ctest-timeout: 180
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "cli/cli.h"
#include "support/broker_proc.h"

#define DEMO_SECONDS "5"

typedef struct fixture {
    sl_test_broker broker;
    char broker_addr[64];
    char admin_addr[64];
} fixture;

static int
run(char **out_text, char **err_text, int argc, const char **argv)
{
    size_t out_size = 0;
    size_t err_size = 0;
    FILE *out = open_memstream(out_text, &out_size);
    FILE *err = open_memstream(err_text, &err_size);
    int code = sl_cli_main(argc, (char **)argv, out, err);
    fclose(out);
    fclose(err);
    return code;
}

static int
setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(sl_test_broker_start_admin(&fx->broker, NULL), 0);
    snprintf(fx->broker_addr, sizeof(fx->broker_addr), "127.0.0.1:%u", fx->broker.port);
    snprintf(fx->admin_addr, sizeof(fx->admin_addr), "127.0.0.1:%u", fx->broker.admin_port);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fixture *fx = *state;
    assert_int_equal(sl_test_broker_stop(&fx->broker), 0);
    sl_test_broker_cleanup(&fx->broker);
    free(fx);
    return 0;
}

static void
test_demo_loses_nothing(void **state)
{
    fixture *fx = *state;
    const char *argv[] = {"sluice",        "demo",    "--seconds",    DEMO_SECONDS, "--broker",
                          fx->broker_addr, "--admin", fx->admin_addr, "--topic",    "demo-test"};
    char *o = NULL;
    char *e = NULL;
    int code = run(&o, &e, 10, argv);
    print_message("%s%s", o, e);
    assert_int_equal(code, SL_CLI_EXIT_OK);
    // One row a second, then the summary: acked > 0 and every acked record consumed.
    assert_non_null(strstr(o, "offered/s"));
    assert_non_null(strstr(o, "\n   5 "));
    const char *lost = strstr(o, "lost: 0 of ");
    assert_non_null(lost);
    unsigned long long acked = strtoull(lost + strlen("lost: 0 of "), NULL, 10);
    assert_true(acked > 1000);
    assert_non_null(strstr(o, "every acked sequence was consumed"));
    assert_non_null(strstr(o, "duplicates 0"));
    free(o);
    free(e);
}

static void
produce_stuck(fixture *fx)
{
    const char *create[] = {"sluice", "topic", "create", "stuck", "--broker", fx->broker_addr};
    char *o = NULL;
    char *e = NULL;
    assert_int_equal(run(&o, &e, 6, create), SL_CLI_EXIT_OK);
    free(o);
    free(e);
    const char *produce[] = {"sluice",  "produce", "--topic",  "stuck",
                             "--count", "100",     "--broker", fx->broker_addr};
    assert_int_equal(run(&o, &e, 8, produce), SL_CLI_EXIT_OK);
    free(o);
    free(e);
}

static void
test_why_drops_stats_top(void **state)
{
    fixture *fx = *state;
    produce_stuck(fx);
    char *o = NULL;
    char *e = NULL;
    const char *why[] = {"sluice", "why", "stuck", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 5, why), SL_CLI_EXIT_OK);
    assert_non_null(strstr(o, "topic stuck is held at the consumer: consumer_absent"));
    assert_non_null(strstr(o, "100 records wait and no consumer is attached"));
    free(o);
    free(e);
    const char *why_json[] = {"sluice", "why", "stuck", "--json", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 6, why_json), SL_CLI_EXIT_OK);
    assert_true(o[0] == '{');
    assert_non_null(strstr(o, "\"reason\":\"consumer_absent\""));
    free(o);
    free(e);
    const char *why_nope[] = {"sluice", "why", "nope", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 5, why_nope), SL_CLI_EXIT_FAILED);
    assert_non_null(strstr(e, "no such topic"));
    free(o);
    free(e);
    const char *drops[] = {"sluice", "drops", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 4, drops), SL_CLI_EXIT_OK);
    assert_non_null(strstr(o, "no records dropped"));
    free(o);
    free(e);
    const char *stats[] = {"sluice", "stats", "--topic", "stuck", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 6, stats), SL_CLI_EXIT_OK);
    assert_non_null(strstr(o, "broker: "));
    assert_non_null(strstr(o, "topic stuck: 0 producer(s), 0 consumer(s)"));
    assert_non_null(strstr(o, "lag 100 records"));
    assert_non_null(strstr(o, "pushing back: consumer consumer_absent"));
    free(o);
    free(e);
    const char *top[] = {"sluice",     "top",     "--iterations", "2",
                         "--no-clear", "--admin", fx->admin_addr};
    assert_int_equal(run(&o, &e, 7, top), SL_CLI_EXIT_OK);
    const char *first = strstr(o, "sluice top - ");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "sluice top - "));
    assert_non_null(strstr(o, "\033[1;31mpushing back"));
    free(o);
    free(e);
    // Nothing listens on port 1: the documented "not reached" exit code.
    const char *away[] = {"sluice", "why", "stuck", "--admin", "127.0.0.1:1"};
    assert_int_equal(run(&o, &e, 5, away), SL_CLI_EXIT_UNREACHED);
    free(o);
    free(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_why_drops_stats_top, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demo_loses_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
