// sluiced's admin HTTP endpoint through a real process: /metrics parses as Prometheus text and
// holds the values of what was produced and consumed over the wire, /stats is JSON, /healthz is
// ok, unknown paths are 404, and huge, malformed or idle requests neither crash nor grow it.
// Under ThreadSanitizer (label concurrent) the HTTP work of one test can outlast the wire peers'
// heartbeat (3 x 5 s of silence): the test pings them between steps, and a failed connect prints
// the broker's log, so a dead broker says why.
// ctest-labels: admin concurrent
// ctest-timeout: 120
#include "support/test_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/limits.h>
#include <sluice/proto.h>

#include "support/broker_proc.h"

// Largest response the test client reads (the broker caps its own at 8 MiB).
#define HTTP_RESPONSE_MAX   (16u * 1024u * 1024u)
#define HTTP_TIMEOUT_MS     10000
#define RECORDS_PRODUCED    50u
#define RECORDS_CONSUMED    20u
#define HUGE_REQUEST_BYTES  (1024u * 1024u)
#define HUGE_REQUEST_ROUNDS 20u
#define IDLE_CONNECTIONS    40u
#define CONNECT_ATTEMPTS    50

// Bytes of the broker's log printed when the admin port cannot be reached.
#define BROKER_LOG_TAIL_BYTES 4096

static uint8_t frame_buf[256 * 1024];
// The broker of the running test, for its log when a connect fails.
static const char *broker_log_path;
static uint8_t batch_buf[128 * 1024];

typedef struct http_response {
    int status; // 0: no status line (the server closed without answering)
    char content_type[128];
    char *body; // NUL-terminated
    size_t body_len;
    char *raw;
    size_t raw_len;
} http_response;

static void
print_broker_log(void)
{
    FILE *f = broker_log_path != NULL ? fopen(broker_log_path, "r") : NULL;
    if (f == NULL) {
        return;
    }
    static char tail[BROKER_LOG_TAIL_BYTES + 1];
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        fseek(f, size > BROKER_LOG_TAIL_BYTES ? size - BROKER_LOG_TAIL_BYTES : 0, SEEK_SET);
    }
    size_t n = fread(tail, 1, BROKER_LOG_TAIL_BYTES, f);
    tail[n] = '\0';
    fclose(f);
    print_error("broker log (last %zu bytes):\n%s\n", n, tail);
}

static int
tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int err = 0;
    // A loaded machine (sanitizers) may refuse a connect for a moment: bounded retries.
    for (int attempt = 0; attempt < CONNECT_ATTEMPTS; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            return fd;
        }
        err = errno;
        close(fd);
        usleep(100 * 1000);
    }
    print_broker_log();
    fail_msg("connect to the admin port %u: %s", port, strerror(err));
    return -1;
}

// Sends what it can (the server may close early on a request it refuses).
static void
send_all(int fd, const char *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        off += (size_t)n;
    }
}

// A tiny HTTP/1.0 client: sends request as is, reads until the server closes.
static void
http_raw(uint16_t port, const char *request, size_t request_len, http_response *r)
{
    memset(r, 0, sizeof(*r));
    int fd = tcp_connect(port);
    send_all(fd, request, request_len);
    size_t cap = 64 * 1024;
    r->raw = malloc(cap + 1);
    assert_non_null(r->raw);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t deadline = sl_test_now_ns() + (int64_t)HTTP_TIMEOUT_MS * 1000000;
    for (;;) {
        int64_t left_ms = (deadline - sl_test_now_ns()) / 1000000;
        assert_true(left_ms > 0); // the server must answer or close in time
        if (poll(&pfd, 1, (int)left_ms) <= 0) {
            continue;
        }
        if (r->raw_len == cap) {
            assert_true(cap < HTTP_RESPONSE_MAX);
            cap *= 2;
            r->raw = realloc(r->raw, cap + 1);
            assert_non_null(r->raw);
        }
        ssize_t n = recv(fd, r->raw + r->raw_len, cap - r->raw_len, 0);
        if (n <= 0) {
            break; // closed (or reset after a refused request)
        }
        r->raw_len += (size_t)n;
    }
    close(fd);
    r->raw[r->raw_len] = '\0';
    int major = 0;
    int minor = 0;
    if (sscanf(r->raw, "HTTP/%d.%d %d", &major, &minor, &r->status) != 3) {
        r->status = 0;
        return;
    }
    char *end = strstr(r->raw, "\r\n\r\n");
    assert_non_null(end);
    *end = '\0';
    r->body = end + 4;
    r->body_len = r->raw_len - (size_t)(r->body - r->raw);
    // Headers, case-insensitively.
    for (char *line = strstr(r->raw, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Type:", 13) == 0) {
            const char *v = line + 2 + 13;
            while (*v == ' ') {
                v++;
            }
            size_t len = strcspn(v, "\r");
            len = len < sizeof(r->content_type) - 1 ? len : sizeof(r->content_type) - 1;
            memcpy(r->content_type, v, len);
            r->content_type[len] = '\0';
        }
    }
}

static void
http_get(uint16_t port, const char *method, const char *path, http_response *r)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    http_raw(port, req, (size_t)n, r);
}

static void
http_free(http_response *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

// ---- Prometheus text checks -----------------------------------------------------------------

static bool
name_ok(const char *s, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':')) {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':')) {
            return false;
        }
    }
    return true;
}

static bool
value_ok(const char *v)
{
    if (strcmp(v, "+Inf") == 0 || strcmp(v, "-Inf") == 0 || strcmp(v, "NaN") == 0) {
        return true;
    }
    char *end = NULL;
    strtod(v, &end);
    return end != v && *end == '\0';
}

// Checks every line of the exposition; returns the number of samples.
static size_t
check_prometheus(char *text)
{
    size_t samples = 0;
    char typed[SL_NAME_MAX * 2] = "";
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *name = line + 7;
            assert_true(name_ok(name, strcspn(name, " ")));
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            const char *name = line + 7;
            size_t len = strcspn(name, " ");
            assert_true(name_ok(name, len));
            const char *type = name + len + 1;
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "summary") == 0 || strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0) {
                assert_true(len > 6 && strncmp(name + len - 6, "_total", 6) == 0);
            }
            assert_true(len < sizeof(typed));
            memcpy(typed, name, len);
            typed[len] = '\0';
            continue;
        }
        assert_true(line[0] != '#');
        size_t len = strcspn(line, "{ ");
        assert_true(name_ok(line, len));
        // A sample belongs to the family typed just before it.
        assert_true(typed[0] != '\0' && strncmp(line, typed, strlen(typed)) == 0);
        const char *p = line + len;
        if (*p == '{') {
            p++;
            // label="value" pairs, values with \" \\ \n escapes; bounded by the line.
            while (*p != '}') {
                size_t ln = strcspn(p, "=");
                assert_true(name_ok(p, ln));
                p += ln;
                assert_int_equal(*p++, '=');
                assert_int_equal(*p++, '"');
                while (*p != '"') {
                    assert_true(*p != '\0');
                    p += *p == '\\' ? 2 : 1;
                }
                p++;
                if (*p == ',') {
                    p++;
                }
                assert_true(*p != '\0');
            }
            p++;
        }
        assert_int_equal(*p++, ' ');
        assert_true(value_ok(p));
        samples++;
    }
    return samples;
}

// The value of the first sample whose line starts with prefix and contains every one of the
// NULL-terminated extra strings; asserts that one exists.
static double
sample(const char *text, const char *prefix, const char *const *extra)
{
    size_t plen = strlen(prefix);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        bool match = len > plen && strncmp(line, prefix, plen) == 0;
        for (int i = 0; match && extra != NULL && extra[i] != NULL; i++) {
            const char *at = strstr(line, extra[i]);
            match = at != NULL && at < line + len;
        }
        if (match) {
            const char *v = memchr(line, ' ', len);
            // The value follows the last space (label values may hold spaces).
            for (const char *q = v; q != NULL && q < line + len;
                 q = memchr(q + 1, ' ', (size_t)(line + len - q - 1))) {
                v = q;
            }
            return strtod(v + 1, NULL);
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    fail_msg("no sample %s", prefix);
    return 0;
}

static bool
has_sample(const char *text, const char *prefix)
{
    return strstr(text, prefix) != NULL;
}

// ---- traffic over the wire --------------------------------------------------------------------

typedef struct fixture {
    sl_test_broker broker;
    sl_test_wire prod;
    sl_test_wire cons;
} fixture;

static void
produce(sl_test_wire *w, const char *topic, uint32_t partition, uint32_t count)
{
    uint64_t pid = 0;
    assert_int_equal(sl_test_wire_open_produce(w, 1, topic, partition, 0, &pid), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(w, SL_FRAME_CREDIT, &f, 5000), SL_OK);
    size_t blen = sl_test_build_batch(batch_buf, sizeof(batch_buf), pid, 0, count, 100);
    assert_true(blen > 0);
    sl_proto_produce p = {.acks = 1,
                          .first_seq = 0,
                          .batches = {.data = batch_buf, .size_bytes = blen, .batch_count = 1}};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_produce(frame_buf, sizeof(frame_buf), 1, &p, &len), SL_OK);
    assert_true(len <= f.u.credit.granted_total_bytes);
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
consume(sl_test_wire *w, const char *topic, uint32_t partition, uint32_t count)
{
    assert_int_equal(sl_test_wire_open_consume(w, 7, topic, partition), 0);
    assert_int_equal(sl_test_wire_request(w, 7, count, 1 << 20), 0);
    uint64_t next = 0;
    while (next < count) {
        sl_frame f;
        assert_int_equal(sl_test_wire_expect(w, SL_FRAME_DELIVER, &f, 10000), SL_OK);
        next = f.u.deliver.end_offset;
    }
    assert_int_equal(next, count);
}

// Keeps the idle wire peers alive: a PING is a frame, so the broker's heartbeat check (3 silent
// intervals) does not disconnect them while a slow (sanitized) test does HTTP work.
static void
keep_alive(fixture *fx)
{
    assert_int_equal(sl_test_wire_ping(&fx->prod, 5000), 0);
    assert_int_equal(sl_test_wire_ping(&fx->cons, 5000), 0);
}

static int
setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(sl_test_broker_start_admin(&fx->broker, NULL), 0);
    broker_log_path = fx->broker.log_path;
    assert_true(fx->broker.admin_port > 0);
    assert_int_equal(sl_test_wire_open(&fx->prod, fx->broker.port, 1), 0);
    assert_int_equal(sl_test_wire_open(&fx->cons, fx->broker.port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&fx->prod, "orders", 2, 0, 0), 0);
    produce(&fx->prod, "orders", 0, RECORDS_PRODUCED);
    consume(&fx->cons, "orders", 0, RECORDS_CONSUMED);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fixture *fx = *state;
    broker_log_path = NULL;
    sl_test_wire_close(&fx->prod);
    sl_test_wire_close(&fx->cons);
    assert_int_equal(sl_test_broker_stop(&fx->broker), 0);
    sl_test_broker_cleanup(&fx->broker);
    free(fx);
    return 0;
}

// ---- tests --------------------------------------------------------------------------------------

static void
test_metrics(void **state)
{
    fixture *fx = *state;
    http_response r;
    http_get(fx->broker.admin_port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    char *copy = strdup(r.body);
    assert_true(check_prometheus(copy) > 100);
    free(copy);
    const char *m = r.body;
    const char *orders[] = {"topic=\"orders\"", NULL};
    const char *p0[] = {"topic=\"orders\"", "partition=\"0\"", NULL};
    const char *p1[] = {"topic=\"orders\"", "partition=\"1\"", NULL};
    assert_true(sample(m, "sluice_broker_connections ", NULL) >= 2);
    assert_int_equal(sample(m, "sluice_broker_topics ", NULL), 1);
    assert_int_equal(sample(m, "sluice_topic_records_in_total{", orders), RECORDS_PRODUCED);
    assert_int_equal(sample(m, "sluice_topic_records_out_total{", orders), RECORDS_CONSUMED);
    assert_int_equal(sample(m, "sluice_topic_records_appended_total{", orders), RECORDS_PRODUCED);
    assert_int_equal(sample(m, "sluice_partition_end_offset{", p0), RECORDS_PRODUCED);
    assert_int_equal(sample(m, "sluice_partition_end_offset{", p1), 0);
    assert_int_equal(sample(m, "sluice_partition_in_records_total{", p0), RECORDS_PRODUCED);
    assert_true(sample(m, "sluice_partition_in_bytes_total{", p0) > RECORDS_PRODUCED * 100);
    assert_true(sample(m, "sluice_partition_out_bytes_total{", p0) > 0);
    assert_true(sample(m, "sluice_topic_credit_granted_bytes_total{", orders) > 0);
    assert_true(sample(m, "sluice_producer_credit_granted_bytes_total{", orders) > 0);
    assert_true(sample(m, "sluice_producer_credit_outstanding_bytes{", orders) >= 0);
    assert_int_equal(sample(m, "sluice_topic_producers{", orders), 1);
    assert_int_equal(sample(m, "sluice_topic_consumers{", orders), 1);
    assert_int_equal(sample(m, "sluice_consumer_lag_records{", p0),
                     RECORDS_PRODUCED - RECORDS_CONSUMED);
    assert_int_equal(sample(m, "sluice_consumer_position{", p0), RECORDS_CONSUMED);
    assert_int_equal(sample(m, "sluice_consumer_delivered_records_total{", p0), RECORDS_CONSUMED);
    double lag_s = sample(m, "sluice_consumer_lag_seconds{", p0);
    assert_true(lag_s > 0); // behind: a time, or +Inf when nothing drains now
    assert_int_equal(sample(m, "sluice_partition_lag_records{", p0),
                     RECORDS_PRODUCED - RECORDS_CONSUMED);
    const char *topic_full[] = {"topic=\"orders\"", "reason=\"topic_full\"", NULL};
    assert_int_equal(sample(m, "sluice_producer_throttled_total{", topic_full), 0);
    assert_int_equal(sample(m, "sluice_topic_acks_delayed_total{", orders), 0);
    // Lossless topic: no drop series at all.
    assert_false(has_sample(m, "sluice_topic_records_dropped_total{"));
    const char *mem[] = {"scope=\"broker\"", "budget=\"memory\"", NULL};
    assert_true(sample(m, "sluice_budget_used_bytes{", mem) > 0);
    double fill = sample(m, "sluice_budget_fill_ratio{", mem);
    assert_true(fill > 0 && fill <= 1);
    const char *disk[] = {"scope=\"broker\"", "budget=\"disk\"", NULL};
    assert_true(sample(m, "sluice_budget_capacity_bytes{", disk) > 0);
    const char *backlog[] = {"owner=\"orders\"", "budget=\"backlog\"", NULL};
    assert_int_equal(sample(m, "sluice_budget_used_records{", backlog),
                     RECORDS_PRODUCED - RECORDS_CONSUMED);
    const char *conn[] = {"budget=\"connection\"", NULL};
    assert_true(sample(m, "sluice_budget_used_bytes{", conn) > 0);
    assert_true(has_sample(m, "sluice_conn_streams{conn=\""));
    assert_true(sample(m, "sluice_admin_scrapes_total ", NULL) >= 1);
    assert_int_equal(sample(m, "sluice_admin_series_dropped ", NULL), 0);
    http_free(&r);

    // HEAD: the same headers, no body.
    http_get(fx->broker.admin_port, "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    http_free(&r);
}

static void
test_stats_json(void **state)
{
    fixture *fx = *state;
    http_response r;
    http_get(fx->broker.admin_port, "GET", "/stats", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_true(r.body_len > 2 && r.body[0] == '{');
    assert_non_null(strstr(r.body, "\"sluice_topic_records_in_total\""));
    if (system("python3 -c '' >/dev/null 2>&1") == 0) {
        char dir[256];
        sl_test_tmpdir(dir, sizeof(dir));
        char path[320];
        snprintf(path, sizeof(path), "%s/stats.json", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(r.body, 1, r.body_len, f), r.body_len);
        assert_int_equal(fclose(f), 0);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "python3 -m json.tool '%s' >/dev/null", path);
        assert_int_equal(system(cmd), 0);
        sl_test_rmtree(dir);
    }
    http_free(&r);
}

static void
test_healthz_and_errors(void **state)
{
    fixture *fx = *state;
    uint16_t port = fx->broker.admin_port;
    http_response r;
    http_get(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; charset=utf-8");
    assert_string_equal(r.body, "ok\n");
    http_free(&r);
    http_get(port, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    http_free(&r);
    http_get(port, "GET", "/metrics/extra", &r);
    assert_int_equal(r.status, 404);
    http_free(&r);
    http_get(port, "POST", "/metrics", &r);
    assert_int_equal(r.status, 405);
    http_free(&r);
    // Malformed request lines: an error status or a closed connection, never a crash.
    static const char *const bad[] = {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "\r\n\r\n",
                                      "GET /metrics HTTP/9.9\r\n\r\n", "\x01\x02\x03\xff\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_raw(port, bad[i], strlen(bad[i]), &r);
        assert_true(r.status == 0 || r.status >= 400);
        http_free(&r);
        keep_alive(fx);
    }
    http_get(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
}

static void
test_huge_and_idle_requests(void **state)
{
    fixture *fx = *state;
    uint16_t port = fx->broker.admin_port;
    char *huge = malloc(HUGE_REQUEST_BYTES);
    assert_non_null(huge);
    int head = snprintf(huge, HUGE_REQUEST_BYTES, "GET /metrics HTTP/1.0\r\nX-Big: ");
    memset(huge + head, 'a', HUGE_REQUEST_BYTES - (size_t)head - 4);
    memcpy(huge + HUGE_REQUEST_BYTES - 4, "\r\n\r\n", 4);
    http_response r;
    http_raw(port, huge, HUGE_REQUEST_BYTES, &r); // warm up before measuring
    http_free(&r);
    long before_kb = sl_test_broker_peak_rss_kb(&fx->broker);
    for (uint32_t i = 0; i < HUGE_REQUEST_ROUNDS; i++) {
        http_raw(port, huge, HUGE_REQUEST_BYTES, &r);
        assert_true(r.status == 0 || r.status >= 400);
        http_free(&r);
        keep_alive(fx);
    }
    // A URL far longer than the request memory limit, too.
    int n = snprintf(huge, HUGE_REQUEST_BYTES, "GET /");
    memset(huge + n, 'b', HUGE_REQUEST_BYTES / 2);
    memcpy(huge + n + HUGE_REQUEST_BYTES / 2, " HTTP/1.0\r\n\r\n", 13);
    http_raw(port, huge, (size_t)n + HUGE_REQUEST_BYTES / 2 + 13, &r);
    assert_true(r.status == 0 || r.status >= 400);
    http_free(&r);
    free(huge);
    long after_kb = sl_test_broker_peak_rss_kb(&fx->broker);
    if (before_kb > 0 && after_kb > 0) {
        // 20 MiB of refused requests cost the broker (nearly) nothing.
        assert_true(after_kb - before_kb < 4096);
    }

    // More idle connections than the server admits: they are refused or time out; once they are
    // gone the endpoint answers again.
    int fds[IDLE_CONNECTIONS];
    for (uint32_t i = 0; i < IDLE_CONNECTIONS; i++) {
        fds[i] = tcp_connect(port);
    }
    for (uint32_t i = 0; i < IDLE_CONNECTIONS; i++) {
        close(fds[i]);
    }
    keep_alive(fx);
    // The server notices the closes on its own time: retry for a bounded while.
    int status = 0;
    for (int attempt = 0; attempt < 50 && status != 200; attempt++) {
        http_get(port, "GET", "/healthz", &r);
        status = r.status;
        http_free(&r);
        if (status != 200) {
            keep_alive(fx);
            usleep(100 * 1000);
        }
    }
    assert_int_equal(status, 200);
    // And the broker still serves the wire protocol.
    assert_int_equal(sl_test_wire_ping(&fx->prod, 5000), 0);
}

static void
test_admin_off_by_flag(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    assert_int_equal(b.admin_port, 0);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_and_idle_requests, setup, teardown),
        cmocka_unit_test(test_admin_off_by_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
