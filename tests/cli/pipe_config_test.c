// The pipeline file parser of `sluice pipe`: a full file with every section, defaults, edge
// chains and routes, and each class of mistake answered with file:line and a reason.
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "cli/pipe_config.h"

static sl_pipe_config *
parse_ok(const char *text)
{
    sl_pipe_config *c = NULL;
    char err[256] = "";
    int r = sl_pipe_config_parse(text, strlen(text), "t.pipe", &c, err, sizeof(err));
    if (r != SL_OK) {
        fail_msg("unexpected error: %s", err);
    }
    return c;
}

// Parses text expecting a failure whose message starts with prefix and contains needle.
static void
parse_fails(const char *text, const char *prefix, const char *needle)
{
    sl_pipe_config *c = NULL;
    char err[256] = "";
    int r = sl_pipe_config_parse(text, strlen(text), "t.pipe", &c, err, sizeof(err));
    assert_int_not_equal(r, SL_OK);
    assert_null(c);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, needle) == NULL) {
        fail_msg("message '%s' lacks '%s' / '%s'", err, prefix, needle);
    }
}

static void
test_pipe_config_full_file(void **state)
{
    (void)state;
    const char *text = "# comment\n"
                       "[pipeline]\n"
                       "name = orders   # trailing comment\n"
                       "memory_budget = 64MiB\n"
                       "autoscale = on\n"
                       "autoscale_interval = 2s\n"
                       "autoscale_target_utilization = 0.7\n"
                       "\n"
                       "[source in]\n"
                       "uri = sluice://127.0.0.1:7420/orders?partition=0\n"
                       "prefetch = 128\n"
                       "[operator f]\n"
                       "type = json_filter\n"
                       "field = user.country\n"
                       "op = eq\n"
                       "value = FR#1\n"
                       "parallelism = 2\n"
                       "parallelism_max = 4\n"
                       "queue_records = 512\n"
                       "queue_bytes = 1MiB\n"
                       "[operator w]\n"
                       "type = window_count\n"
                       "size = 5s\n"
                       "[sink out]\n"
                       "uri = -\n"
                       "[edges]\n"
                       "in -> f\n"
                       "f -> w -> out : key_hash\n";
    sl_pipe_config *c = parse_ok(text);
    assert_string_equal(c->name, "orders");
    assert_int_equal(c->memory_budget_bytes, 64u << 20);
    assert_true(c->autoscale);
    assert_int_equal(c->autoscale_interval_ms, 2000);
    assert_true(c->autoscale_target_utilization > 0.69 && c->autoscale_target_utilization < 0.71);
    assert_int_equal(c->stage_count, 4);
    const sl_pipe_config_stage *f = &c->stages[1];
    assert_int_equal(f->kind, SL_PIPE_CONFIG_OPERATOR);
    assert_string_equal(f->type, "json_filter");
    assert_int_equal(f->parallelism, 2);
    assert_int_equal(f->parallelism_max, 4);
    assert_int_equal(f->parallelism_min, 0);
    assert_int_equal(f->queue_records, 512);
    assert_int_equal(f->queue_bytes, 1u << 20);
    assert_int_equal(f->option_count, 3);
    assert_string_equal(sl_pipe_config_opt(f, "value"), "FR#1");
    assert_int_equal(f->option_lines[0], 14);
    assert_string_equal(sl_pipe_config_opt(&c->stages[0], "prefetch"), "128");
    assert_int_equal(c->edge_count, 3);
    assert_false(c->edges[0].route_set);
    assert_true(c->edges[1].route_set);
    assert_int_equal(c->edges[1].route, SL_ROUTE_KEY_HASH);
    assert_int_equal(c->edges[2].from, 2);
    assert_int_equal(c->edges[2].to, 3);
    assert_int_equal(c->edges[2].line, 28);
    sl_pipe_config_free(c);
}

static void
test_pipe_config_errors_name_file_and_line(void **state)
{
    (void)state;
    parse_fails("[source a]\nuri = -\nbogus line\n", "t.pipe:3:", "key = value");
    parse_fails("[thing a]\n", "t.pipe:1:", "unknown section");
    parse_fails("[source a]\nuri = -\n[sink a]\n", "t.pipe:3:", "already exists");
    parse_fails("[source a]\nuri = -\nparallelism = 0\n", "t.pipe:3:", "parallelism");
    parse_fails("[operator x]\nuri = -\n", "t.pipe:2:", "takes no 'uri'");
    parse_fails("[source a]\nuri = -\n[sink b]\nuri = -\n[edges]\na -> c\n",
                "t.pipe:6:", "no stage named 'c'");
    parse_fails("[source a]\nuri = -\n[sink b]\nuri = -\n[edges]\nb -> a\n",
                "t.pipe:6:", "is a sink");
    parse_fails("[source a]\nuri = -\n[sink b]\nuri = -\n[edges]\na -> b : sideways\n",
                "t.pipe:6:", "unknown route");
    parse_fails("[source a]\nuri = -\n[sink b]\nuri = -\n", "t.pipe:1:", "no output edge");
    parse_fails("[source a]\n[sink b]\nuri = -\n[edges]\na -> b\n", "t.pipe:1:", "needs uri");
    parse_fails("[source a]\nuri = -\nx = 1\nx = 2\n", "t.pipe:4:", "set twice");
    parse_fails("uri = -\n", "t.pipe:1:", "outside a section");
    parse_fails("[pipeline]\nautoscale = maybe\n", "t.pipe:2:", "on or off");
    parse_fails("[pipeline]\nmemory_budget = lots\n", "t.pipe:2:", "memory_budget");
    parse_fails("[source a]\nuri = -\n[operator x]\ntype = identity\n[operator y]\n"
                "type = identity\n[sink b]\nuri = -\n[edges]\na -> x -> y\ny -> x\ny -> b\n",
                "t.pipe:", "cycle");
    parse_fails("", "t.pipe:1:", "at least one");
}

static void
test_pipe_config_load_missing_file(void **state)
{
    (void)state;
    sl_pipe_config *c = NULL;
    char err[256] = "";
    assert_int_equal(sl_pipe_config_load("/nonexistent/x.pipe", &c, err, sizeof(err)), SL_ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.pipe"));
}

static void
test_pipe_config_examples_parse(void **state)
{
    (void)state;
    const char *dir = getenv("SL_SOURCE_DIR");
    if (dir == NULL) {
        skip();
    }
    const char *files[] = {"topic_count.pipe", "file_to_stdout.pipe", "tcp_relay.pipe"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/examples/pipelines/%s", dir, files[i]);
        sl_pipe_config *c = NULL;
        char err[256] = "";
        if (sl_pipe_config_load(path, &c, err, sizeof(err)) != SL_OK) {
            fail_msg("%s", err);
        }
        sl_pipe_config_free(c);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_config_full_file),
        cmocka_unit_test(test_pipe_config_errors_name_file_and_line),
        cmocka_unit_test(test_pipe_config_load_missing_file),
        cmocka_unit_test(test_pipe_config_examples_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
