// Kafka endpoint configuration (URI, options, rdkafka.* pass-through, watermarks), scheme
// registration and the DS2 sizing function. No broker needed.
#include <math.h>

#include "kafka/kafka_internal.h"
#include "kafka/kafka_test_util.h"

static int
parse(const char *uri, const sl_pipe_option *opts, size_t n, sl__kafka_role role,
      sl__kafka_config *cfg, char *err, size_t err_size)
{
    sl_pipe_endpoint ep = {uri, opts, n, NULL};
    return sl__kafka_config_parse(cfg, &ep, role, 0, err, err_size);
}

static const char *
conf_get(rd_kafka_conf_t *conf, const char *key, char *buf, size_t size)
{
    assert_int_equal(rd_kafka_conf_get(conf, key, buf, &size), RD_KAFKA_CONF_OK);
    return buf;
}

static void
test_uri_hosts_topic_query_and_defaults(void **unused)
{
    sl__kafka_config cfg;
    char err[256] = "";
    char v[256];
    assert_int_equal(parse("kafka://a:9092,b:9093/orders?group=g1&buffer_records=1000", NULL, 0,
                           SL__KAFKA_SOURCE, &cfg, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(cfg.brokers, "a:9092,b:9093");
    assert_string_equal(cfg.topic, "orders");
    assert_string_equal(cfg.group, "g1");
    assert_int_equal(cfg.buffer_records, 1000);
    assert_int_equal(cfg.buffer_high, 750);
    assert_int_equal(cfg.buffer_low, 250);
    assert_string_equal(conf_get(cfg.conf, "bootstrap.servers", v, sizeof(v)), "a:9092,b:9093");
    assert_string_equal(conf_get(cfg.conf, "group.id", v, sizeof(v)), "g1");
    assert_string_equal(conf_get(cfg.conf, "enable.auto.commit", v, sizeof(v)), "false");
    assert_string_equal(conf_get(cfg.conf, "enable.auto.offset.store", v, sizeof(v)), "false");
    assert_string_equal(conf_get(cfg.conf, "partition.assignment.strategy", v, sizeof(v)),
                        "cooperative-sticky");
    sl__kafka_config_fini(&cfg);
}

static void
test_options_override_and_pass_through(void **unused)
{
    const sl_pipe_option opts[] = {
        {"group", "g2"},
        {"rdkafka.session.timeout.ms", "6000"},
        {"rdkafka.partition.assignment.strategy", "range"},
        {"rdkafka.enable.auto.commit", "true"}, // the source needs manual commits: overridden
        {"buffer_high", "90"},
        {"buffer_low", "10"},
        {"buffer_records", "100"},
    };
    sl__kafka_config cfg;
    char err[256] = "";
    char v[256];
    assert_int_equal(parse("kafka://h:1/t?group=g1", opts, SL_ARRAY_LEN(opts), SL__KAFKA_SOURCE,
                           &cfg, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(cfg.group, "g2");
    assert_int_equal(cfg.buffer_high, 90);
    assert_int_equal(cfg.buffer_low, 10);
    assert_string_equal(conf_get(cfg.conf, "session.timeout.ms", v, sizeof(v)), "6000");
    assert_string_equal(conf_get(cfg.conf, "partition.assignment.strategy", v, sizeof(v)), "range");
    assert_string_equal(conf_get(cfg.conf, "enable.auto.commit", v, sizeof(v)), "false");
    sl__kafka_config_fini(&cfg);
}

static void
test_sink_window_sets_librdkafka_queue(void **unused)
{
    const sl_pipe_option opts[] = {{"inflight_records", "500"}, {"inflight_bytes", "1MiB"}};
    sl__kafka_config cfg;
    char err[256] = "";
    char v[256];
    assert_int_equal(parse("kafka://h:1/out", opts, 2, SL__KAFKA_SINK, &cfg, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(conf_get(cfg.conf, "queue.buffering.max.messages", v, sizeof(v)), "500");
    assert_string_equal(conf_get(cfg.conf, "queue.buffering.max.kbytes", v, sizeof(v)), "1024");
    assert_string_equal(conf_get(cfg.conf, "acks", v, sizeof(v)), "-1"); // all
    assert_string_equal(conf_get(cfg.conf, "partitioner", v, sizeof(v)), "murmur2_random");
    sl__kafka_config_fini(&cfg);
}

static void
test_bad_input_is_named(void **unused)
{
    sl__kafka_config cfg;
    char err[256] = "";
    const sl_pipe_option bad_key[] = {{"grup", "g"}};
    assert_int_equal(parse("kafka://h:1/t", bad_key, 1, SL__KAFKA_SINK, &cfg, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "grup"));
    const sl_pipe_option bad_prop[] = {{"rdkafka.no.such.property", "1"}};
    assert_int_equal(parse("kafka://h:1/t", bad_prop, 1, SL__KAFKA_SINK, &cfg, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "no.such.property"));
    assert_int_equal(parse("kafka://h:1/t", NULL, 0, SL__KAFKA_SOURCE, &cfg, err, sizeof(err)),
                     SL_EINVAL); // no group
    assert_non_null(strstr(err, "group"));
    assert_int_equal(parse("kafka://h:1", NULL, 0, SL__KAFKA_SINK, &cfg, err, sizeof(err)),
                     SL_EINVAL); // no topic
    assert_int_equal(parse("tcp://h:1/t", NULL, 0, SL__KAFKA_SINK, &cfg, err, sizeof(err)),
                     SL_EINVAL);
    const sl_pipe_option bad_marks[] = {{"buffer_records", "100"}, {"buffer_high", "200"}};
    assert_int_equal(
        parse("kafka://h:1/t?group=g", bad_marks, 2, SL__KAFKA_SOURCE, &cfg, err, sizeof(err)),
        SL_EINVAL);
    assert_int_equal(
        parse("kafka://h:1/t?group", NULL, 0, SL__KAFKA_SOURCE, &cfg, err, sizeof(err)), SL_EINVAL);
    const sl_pipe_option bad_num[] = {{"buffer_records", "lots"}};
    assert_int_equal(
        parse("kafka://h:1/t?group=g", bad_num, 1, SL__KAFKA_SOURCE, &cfg, err, sizeof(err)),
        SL_EINVAL);
    assert_non_null(strstr(err, "buffer_records"));
}

static void
test_register_is_idempotent(void **unused)
{
    assert_int_equal(sl_kafka_register(), SL_OK);
    assert_int_equal(sl_kafka_register(), SL_OK);
    assert_ptr_equal(sl_pipe_find_source("kafka"), sl_kafka_source_ops());
    assert_ptr_equal(sl_pipe_find_sink("kafka"), sl_kafka_sink_ops());
}

static void
test_processes_needed_is_ds2(void **unused)
{
    assert_int_equal(sl_kafka_processes_needed(10000, 4000, 1.0), 3); // 2.5 -> 3
    assert_int_equal(sl_kafka_processes_needed(8000, 4000, 1.0), 2);  // exactly 2
    assert_int_equal(sl_kafka_processes_needed(8000, 4000, 0.8), 3);  // 2.5 at 80%
    assert_int_equal(sl_kafka_processes_needed(0, 4000, 1.0), 1);     // at least one
    assert_int_equal(sl_kafka_processes_needed(100, 0, 1.0), 0);      // unknown true rate
    assert_int_equal(sl_kafka_processes_needed(NAN, 10, 1.0), 0);
    assert_int_equal(sl_kafka_processes_needed(100, INFINITY, 1.0), 0);
    assert_int_equal(sl_kafka_processes_needed(100, 10, 0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_hosts_topic_query_and_defaults),
        cmocka_unit_test(test_options_override_and_pass_through),
        cmocka_unit_test(test_sink_window_sets_librdkafka_queue),
        cmocka_unit_test(test_bad_input_is_named),
        cmocka_unit_test(test_register_is_idempotent),
        cmocka_unit_test(test_processes_needed_is_ds2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
