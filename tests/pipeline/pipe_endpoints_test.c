// The built-in file and tcp endpoints inside a real pipeline: a file -> file round trip whose
// sink reports done only after a (grouped) fdatasync and whose source commits to an offset file
// a restart resumes from; a tcp source that stops reading when downstream has no credit, so the
// sender's writes hit EAGAIN, then resume; and a tcp sink that keeps every record for a slow
// receiver.
// ctest-labels: concurrent
// ctest-timeout: 120
#include "support/test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "support/broker_proc.h"

#define FILE_LINES     20000u
#define TCP_LINES      200000u
#define TCP_LINE_BYTES 64u
// The sender must be pushed back before it wrote this much with a stalled receiver: socket
// buffers (a few MiB on loopback) plus the pipeline's queues and the sink's buffer.
#define TCP_PUSHBACK_BYTES_MAX (48u << 20)
#define WAIT_MS                60000

static sl_pipeline *
build(const char *src_uri, const sl_pipe_option *src_opts, size_t src_n, const char *dst_uri,
      const sl_pipe_option *dst_opts, size_t dst_n, uint32_t queue_records)
{
    const sl_pipe_source_ops *so = sl_pipe_find_source(strncmp(src_uri, "tcp", 3) ? "file" : "tcp");
    const sl_pipe_sink_ops *si = sl_pipe_find_sink(strncmp(dst_uri, "tcp", 3) ? "file" : "tcp");
    assert_non_null(so);
    assert_non_null(si);
    sl_pipeline_config pc;
    sl_pipeline_config_init(&pc);
    sl_pipeline *p = NULL;
    assert_int_equal(sl_pipeline_new(&pc, &p), SL_OK);
    sl_pipe_stage_config sc;
    sl_pipe_stage_config_init(&sc);
    sc.queue_records = queue_records;
    sl_pipe_endpoint se = {.uri = src_uri, .options = src_opts, .option_count = src_n};
    sl_pipe_endpoint de = {.uri = dst_uri, .options = dst_opts, .option_count = dst_n};
    sl_pipe_stage *a = NULL;
    sl_pipe_stage *b = NULL;
    assert_int_equal(sl_pipeline_add_source(p, "in", so, &se, &sc, &a), SL_OK);
    assert_int_equal(sl_pipeline_add_sink(p, "out", si, &de, &sc, &b), SL_OK);
    assert_int_equal(sl_pipeline_connect(p, a, b, SL_ROUTE_FORWARD), SL_OK);
    char err[256] = "";
    if (sl_pipeline_start(p, err, sizeof(err)) != SL_OK) {
        fail_msg("start: %s", err);
    }
    return p;
}

static void
write_lines(const char *path, uint32_t first, uint32_t count, const char *mode)
{
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    for (uint32_t i = first; i < first + count; i++) {
        fprintf(f, "{\"seq\": %u, \"pad\": \"%032u\"}\n", i, i);
    }
    assert_int_equal(fclose(f), 0);
}

// Checks path holds lines seq 0..count-1 in order; returns the file size.
static long
check_lines(const char *path, uint32_t count)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    uint32_t n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned seq = 0;
        if (sscanf(line, "{\"seq\": %u,", &seq) != 1) {
            fail_msg("line %u: %s", n, line);
        }
        assert_int_equal(seq, n);
        n++;
    }
    long size = ftell(f);
    fclose(f);
    assert_int_equal(n, count);
    return size;
}

static void
test_file_roundtrip_commits_and_resumes(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char in[320], out[320], offs[320];
    snprintf(in, sizeof(in), "file:%s/in.jsonl", dir);
    snprintf(out, sizeof(out), "file:%s/out.jsonl", dir);
    snprintf(offs, sizeof(offs), "%s/in.offsets", dir);
    write_lines(in + 5, 0, FILE_LINES, "w");
    sl_pipe_option so[] = {{"offsets", offs}};
    sl_pipe_option fo[] = {{"fsync", "always"}};
    sl_pipeline *p = build(in, so, 1, out, fo, 1, 256);
    assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    sl_pipeline_free(p);
    long size = check_lines(out + 5, FILE_LINES);
    // Everything was done (synced), so everything was committed: the offset file says so.
    FILE *f = fopen(offs, "r");
    assert_non_null(f);
    unsigned lane = 9;
    unsigned long long token = 0;
    assert_int_equal(fscanf(f, "%u %llu", &lane, &token), 2);
    fclose(f);
    assert_int_equal(lane, 0);
    assert_int_equal(token, (unsigned long long)size);

    // A restart resumes after the commit: only the appended lines flow.
    write_lines(in + 5, FILE_LINES, 100, "a");
    p = build(in, so, 1, out, fo, 1, 256);
    assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    sl_pipeline_free(p);
    check_lines(out + 5, FILE_LINES + 100);
    sl_test_rmtree(dir);
}

static void
test_file_sink_rejects_unknown_option(void **state)
{
    (void)state;
    const sl_pipe_sink_ops *si = sl_pipe_find_sink("file");
    assert_non_null(si);
    sl_pipe_option o[] = {{"fsync", "sometimes"}};
    sl_pipe_endpoint e = {.uri = "file:/dev/null", .options = o, .option_count = 1};
    void *st = NULL;
    char err[256] = "";
    assert_int_equal(si->create(&e, 0, 1, &st, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "fsync"));
}

typedef struct receiver {
    int lfd;
    uint16_t port;
    pthread_t thread;
    int go; // under mu: 0 stalled, 1 reading
    pthread_mutex_t mu;
    uint32_t lines; // lines received in order
    int bad;        // a line out of order or malformed
} receiver;

static int
receiver_go(receiver *r)
{
    pthread_mutex_lock(&r->mu);
    int go = r->go;
    pthread_mutex_unlock(&r->mu);
    return go;
}

// Accepts the tcp sink's connection(s); reads nothing until go, then reads slowly.
static void *
receiver_main(void *arg)
{
    receiver *r = arg;
    char buf[16384];
    char line[TCP_LINE_BYTES + 1];
    size_t have = 0;
    int fd = -1;
    int64_t deadline = sl_test_now_ns() + (int64_t)WAIT_MS * 1000000;
    while (r->lines < TCP_LINES && sl_test_now_ns() < deadline) {
        if (fd < 0) {
            struct pollfd p = {.fd = r->lfd, .events = POLLIN};
            if (poll(&p, 1, 100) == 1) {
                fd = accept(r->lfd, NULL, NULL);
            }
            continue;
        }
        if (!receiver_go(r)) {
            usleep(10000);
            continue;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            line[have++] = buf[i];
            if (buf[i] == '\n' || have == TCP_LINE_BYTES) {
                line[have] = '\0';
                unsigned seq = 0;
                r->bad += sscanf(line, "%u", &seq) == 1 && seq == r->lines ? 0 : 1;
                r->lines++;
                have = 0;
            }
        }
        usleep(200); // a slow receiver: about 16 KiB per fraction of a millisecond of work
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static uint16_t
listen_local(int *fd_out, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0) {
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *fd_out = fd;
    return ntohs(sa.sin_port);
}

static uint16_t
read_port_file(const char *path)
{
    unsigned port = 0;
    for (int i = 0; i < 500 && port == 0; i++) {
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            if (fscanf(f, "%u", &port) != 1) {
                port = 0;
            }
            fclose(f);
        }
        if (port == 0) {
            usleep(10000);
        }
    }
    assert_true(port > 0);
    return (uint16_t)port;
}

static int
connect_sender(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 64 * 1024;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

// Sends lines from *seq on until all are sent, or (stop_when_blocked) no byte goes out for a
// second. Returns true when blocked.
static bool
send_lines(int fd, uint32_t *seq, size_t *off, uint64_t *bytes, bool stop_when_blocked)
{
    char line[TCP_LINE_BYTES + 1];
    int64_t deadline = sl_test_now_ns() + (int64_t)WAIT_MS * 1000000;
    while (*seq < TCP_LINES && sl_test_now_ns() < deadline) {
        snprintf(line, sizeof(line), "%0*u\n", (int)TCP_LINE_BYTES - 1, *seq);
        ssize_t n = send(fd, line + *off, TCP_LINE_BYTES - *off, MSG_NOSIGNAL);
        if (n > 0) {
            *off += (size_t)n;
            *bytes += (uint64_t)n;
            if (*off == TCP_LINE_BYTES) {
                *off = 0;
                (*seq)++;
            }
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 1000) == 0 && stop_when_blocked) {
            return true;
        }
    }
    return false;
}

static void
test_tcp_source_pushes_back_and_tcp_sink_waits_for_slow_receiver(void **state)
{
    (void)state;
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    receiver r = {.go = 0};
    pthread_mutex_init(&r.mu, NULL);
    r.port = listen_local(&r.lfd, 64 * 1024);
    assert_int_equal(pthread_create(&r.thread, NULL, receiver_main, &r), 0);

    char port_file[320];
    char dst[64];
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    snprintf(dst, sizeof(dst), "tcp://127.0.0.1:%u", (unsigned)r.port);
    sl_pipe_option so[] = {{"port_file", port_file}, {"connections", "1"}, {"rcvbuf", "64KiB"}};
    sl_pipeline *p = build("tcp://127.0.0.1:0", so, 3, dst, NULL, 0, 256);
    int fd = connect_sender(read_port_file(port_file));

    // The receiver reads nothing: the sink's window fills, the pipeline's queues fill, the
    // source stops reading, and the sender's socket stops taking bytes.
    uint32_t seq = 0;
    size_t off = 0;
    uint64_t bytes = 0;
    assert_true(send_lines(fd, &seq, &off, &bytes, true));
    print_message("sender blocked after %llu bytes (%u lines)\n", (unsigned long long)bytes, seq);
    assert_true(bytes < TCP_PUSHBACK_BYTES_MAX);
    assert_true(seq < TCP_LINES);

    // The receiver starts (slowly): everything flows, in order, nothing lost.
    pthread_mutex_lock(&r.mu);
    r.go = 1;
    pthread_mutex_unlock(&r.mu);
    assert_false(send_lines(fd, &seq, &off, &bytes, false));
    assert_int_equal(seq, TCP_LINES);
    close(fd);
    pthread_join(r.thread, NULL);
    assert_int_equal(r.lines, TCP_LINES);
    assert_int_equal(r.bad, 0);
    assert_int_equal(sl_pipeline_wait(p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    sl_pipeline_free(p);
    close(r.lfd);
    pthread_mutex_destroy(&r.mu);
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_roundtrip_commits_and_resumes),
        cmocka_unit_test(test_file_sink_rejects_unknown_option),
        cmocka_unit_test(test_tcp_source_pushes_back_and_tcp_sink_waits_for_slow_receiver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
