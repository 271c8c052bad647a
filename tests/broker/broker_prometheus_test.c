// sluiced's /metrics as real Prometheus tools see it: `promtool check metrics` accepts a scrape
// taken after traffic, and a real Prometheus server (127.0.0.1, its own port and temp storage,
// 1 s scrape interval, config written here) scrapes the broker; its query API then returns the
// numbers of what this test produced and consumed. Skips when the binaries are not installed.
// ctest-timeout: 120
#include "support/test_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"
#include "support/http_client.h"

#define PROMTOOL         "/usr/bin/promtool"
#define PROMETHEUS       "/usr/bin/prometheus"
#define RECORDS_PRODUCED 64u
#define RECORDS_CONSUMED 24u
#define HTTP_TIMEOUT_MS  5000
#define READY_ROUNDS     300 // of 100 ms: Prometheus start, first scrapes
#define STOP_ROUNDS      100 // of 100 ms before SIGKILL

static uint8_t frame_buf[64 * 1024];
static uint8_t batch_buf[32 * 1024];

typedef struct fixture {
    sl_test_broker broker;
    sl_test_wire prod;
    sl_test_wire cons;
    char dir[256];
    pid_t prometheus;
    uint16_t prometheus_port;
} fixture;

static void
produce(sl_test_wire *w, uint32_t count)
{
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(w, 1, "prom", 0, 0, &pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), pid, 0, count, 100);
    assert_true(blen > 0);
    sl_proto_produce p = {.acks = 1,
                          .first_seq = 0,
                          .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), 1, &p, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(w, frame_buf, len), 0);
    uint32_t acked = 0;
    // Bounded by the recv timeout: every frame is a CREDIT or the ACK.
    while (acked != count) {
        assert_int_equal(sl_test_wire_recv(w, &f, 10000), SL_OK);
        if (f.header.type == SL_FRAME_ACK) {
            acked = f.u.ack.seq_end;
        }
    }
}

static void
consume(sl_test_wire *w, uint32_t count)
{
    assert_int_equal(sl_test_wire_open_consume(w, 7, "prom", 0), 0);
    assert_int_equal(sl_test_wire_request(w, 7, count, 1 << 20), 0);
    uint64_t next = 0;
    while (next < count) {
        sl_frame f;
        assert_int_equal(sl_test_wire_expect(w, SL_FRAME_DELIVER, &f, 10000), SL_OK);
        next = f.u.deliver.end_offset;
    }
}

// A port nothing listens on now (bound to 0 and released; a small race we accept in a test).
static uint16_t
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
    if (access(PROMTOOL, X_OK) != 0 || access(PROMETHEUS, X_OK) != 0) {
        print_message("skipped: %s or %s not installed (Debian package prometheus)\n", PROMTOOL,
                      PROMETHEUS);
        *state = NULL;
        return 0;
    }
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(sl_test_broker_start_admin(&fx->broker, NULL), 0);
    assert_int_equal(sl_test_wire_open(&fx->prod, fx->broker.port, 1), 0);
    assert_int_equal(sl_test_wire_open(&fx->cons, fx->broker.port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&fx->prod, "prom", 1, 0, 0), 0);
    produce(&fx->prod, RECORDS_PRODUCED);
    consume(&fx->cons, RECORDS_CONSUMED);
    sl_test_tmpdir(fx->dir, sizeof(fx->dir));
    *state = fx;
    return 0;
}

static void
prometheus_stop(fixture *fx)
{
    if (fx->prometheus <= 0) {
        return;
    }
    kill(fx->prometheus, SIGTERM);
    int status = 0;
    for (int i = 0; i < STOP_ROUNDS; i++) {
        if (waitpid(fx->prometheus, &status, WNOHANG) == fx->prometheus) {
            fx->prometheus = 0;
            return;
        }
        usleep(100 * 1000);
    }
    kill(fx->prometheus, SIGKILL);
    waitpid(fx->prometheus, &status, 0);
    fx->prometheus = 0;
}

static int
teardown(void **state)
{
    fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    prometheus_stop(fx);
    sl_test_wire_close(&fx->prod);
    sl_test_wire_close(&fx->cons);
    assert_int_equal(sl_test_broker_stop(&fx->broker), 0);
    sl_test_broker_cleanup(&fx->broker);
    sl_test_rmtree(fx->dir);
    free(fx);
    return 0;
}

static void
test_promtool_accepts_a_scrape(void **state)
{
    fixture *fx = *state;
    if (fx == NULL) {
        skip();
    }
    int status = 0;
    char *body = NULL;
    assert_int_equal(
        sl_test_http_get(fx->broker.admin_port, "/metrics", HTTP_TIMEOUT_MS, &status, &body), 0);
    assert_int_equal(status, 200);
    char path[320];
    snprintf(path, sizeof(path), "%s/scrape.txt", fx->dir);
    write_file(path, body);
    free(body);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "%s check metrics < '%s'", PROMTOOL, path);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
}

static void
prometheus_start(fixture *fx)
{
    char config_path[320];
    char storage[320];
    snprintf(config_path, sizeof(config_path), "%s/prometheus.yml", fx->dir);
    snprintf(storage, sizeof(storage), "%s/tsdb", fx->dir);
    char config[512];
    snprintf(config, sizeof(config),
             "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
             "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
             "      - targets: ['127.0.0.1:%u']\n",
             fx->broker.admin_port);
    write_file(config_path, config);
    fx->prometheus_port = free_port();
    char config_arg[400];
    char storage_arg[400];
    char listen_arg[64];
    snprintf(config_arg, sizeof(config_arg), "--config.file=%s", config_path);
    snprintf(storage_arg, sizeof(storage_arg), "--storage.tsdb.path=%s", storage);
    snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%u",
             fx->prometheus_port);
    char log_path[320];
    snprintf(log_path, sizeof(log_path), "%s/prometheus.log", fx->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *log = freopen(log_path, "w", stderr);
        (void)log;
        execl(PROMETHEUS, PROMETHEUS, config_arg, storage_arg, listen_arg, "--log.level=warn",
              (char *)NULL);
        _exit(127);
    }
    fx->prometheus = pid;
}

// Runs an instant query until it returns a sample; returns its value.
static double
query(fixture *fx, const char *promql)
{
    char path[512];
    int n = snprintf(path, sizeof(path), "/api/v1/query?query=");
    char *esc = path + n;
    // Percent-encode everything but unreserved characters.
    for (const char *c = promql; *c != '\0' && esc < path + sizeof(path) - 4; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            *c == '_' || *c == '.' || *c == '-') {
            *esc++ = *c;
        } else {
            esc += snprintf(esc, 4, "%%%02X", (unsigned char)*c);
        }
    }
    *esc = '\0';
    for (int round = 0; round < READY_ROUNDS; round++) {
        int status = 0;
        char *body = NULL;
        if (sl_test_http_get(fx->prometheus_port, path, HTTP_TIMEOUT_MS, &status, &body) == 0) {
            // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},
            // "value":[1700000000.123,"64"]}]}}
            const char *v = strstr(body, "\"value\":[");
            const char *q = v != NULL ? strstr(v, ",\"") : NULL;
            if (status == 200 && q != NULL) {
                double value = strtod(q + 2, NULL);
                free(body);
                return value;
            }
            free(body);
        }
        usleep(100 * 1000);
    }
    fail_msg("Prometheus never answered %s", promql);
    return 0;
}

static void
test_prometheus_scrapes_what_was_done(void **state)
{
    fixture *fx = *state;
    if (fx == NULL) {
        skip();
    }
    prometheus_start(fx);
    assert_int_equal(query(fx, "up{job=\"sluice\"}"), 1);
    assert_int_equal(query(fx, "sluice_topic_records_in_total{topic=\"prom\"}"), RECORDS_PRODUCED);
    assert_int_equal(query(fx, "sluice_topic_records_out_total{topic=\"prom\"}"), RECORDS_CONSUMED);
    assert_int_equal(query(fx, "sluice_consumer_lag_records{topic=\"prom\"}"),
                     RECORDS_PRODUCED - RECORDS_CONSUMED);
    assert_int_equal(query(fx, "sum(sluice_credit_resyncs_total)"), 0);
    // The scrape itself is counted by the broker: Prometheus sees its own scrapes add up.
    assert_true(query(fx, "sluice_admin_scrapes_total") >= 1);
    prometheus_stop(fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_promtool_accepts_a_scrape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_scrapes_what_was_done, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
