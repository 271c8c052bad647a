// Test support: a real sluiced child process, and a raw protocol peer (see broker_proc.h).
#include "support/broker_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "support/test_util.h"

#define ARGS_MAX 48

static int
broker_start(sl_test_broker *b, const char *const *extra_args, int admin)
{
    const char *bin = getenv("SL_SLUICED");
    if (bin == NULL) {
        bin = "./sluiced";
    }
    if (b->data_dir[0] == '\0') {
        sl_test_tmpdir(b->data_dir, sizeof(b->data_dir));
    }
    snprintf(b->log_path, sizeof(b->log_path), "%s.log", b->data_dir);
    int out[2];
    if (pipe(out) != 0) {
        return -1;
    }
    const char *argv[ARGS_MAX];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--admin";
    argv[n++] = admin ? "127.0.0.1:0" : "off";
    argv[n++] = "--data";
    argv[n++] = b->data_dir;
    for (int i = 0; extra_args != NULL && extra_args[i] != NULL && n < ARGS_MAX - 1; i++) {
        argv[n++] = extra_args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        dup2(out[1], 1);
        int log = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log >= 0) {
            dup2(log, 2);
        }
        close(out[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    b->pid = pid;
    char line[512];
    size_t len = 0;
    struct pollfd pfd = {.fd = out[0], .events = POLLIN};
    // Bounded: 10 s for the first line.
    for (int waited = 0; waited < 10000 && len < sizeof(line) - 1; waited += 50) {
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        ssize_t r = read(out[0], line + len, sizeof(line) - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
        line[len] = '\0';
        if (strchr(line, '\n') != NULL) {
            break;
        }
    }
    close(out[0]);
    line[len] = '\0';
    const char *at = strstr(line, "listening on 127.0.0.1:");
    if (at == NULL) {
        fprintf(stderr, "broker did not start; its output: %s\n", line);
        sl_test_broker_kill(b);
        return -1;
    }
    b->port = (uint16_t)atoi(at + strlen("listening on 127.0.0.1:"));
    b->admin_port = 0;
    if (admin) {
        const char *ad = strstr(line, "admin http://127.0.0.1:");
        if (ad == NULL) {
            fprintf(stderr, "broker did not report its admin port; its output: %s\n", line);
            sl_test_broker_kill(b);
            return -1;
        }
        b->admin_port = (uint16_t)atoi(ad + strlen("admin http://127.0.0.1:"));
    }
    return 0;
}

int
sl_test_broker_start(sl_test_broker *b, const char *const *extra_args)
{
    return broker_start(b, extra_args, 0);
}

int
sl_test_broker_start_admin(sl_test_broker *b, const char *const *extra_args)
{
    return broker_start(b, extra_args, 1);
}

int
sl_test_broker_stop(sl_test_broker *b)
{
    if (b->pid <= 0) {
        return -1;
    }
    kill(b->pid, SIGTERM);
    int status = 0;
    for (int waited = 0; waited < 10000; waited += 10) {
        pid_t r = waitpid(b->pid, &status, WNOHANG);
        if (r == b->pid) {
            b->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    sl_test_broker_kill(b);
    return -1;
}

void
sl_test_broker_kill(sl_test_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
}

long
sl_test_broker_peak_rss_kb(const sl_test_broker *b)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)b->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kb;
}

void
sl_test_broker_cleanup(sl_test_broker *b)
{
    if (b->data_dir[0] != '\0') {
        sl_test_rmtree(b->data_dir);
        unlink(b->log_path);
    }
}

// ---- raw protocol peer
// ---------------------------------------------------------------------------

int
sl_test_wire_open(sl_test_wire *w, uint16_t port, int hello)
{
    memset(w, 0, sizeof(*w));
    w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w->fd < 0) {
        return -1;
    }
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(w->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(w->fd);
        return -1;
    }
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    w->cap = SL_PROTO_FRAME_SIZE_DEFAULT + 1024;
    w->buf = malloc(w->cap);
    w->max_frame = SL_PROTO_FRAME_SIZE_MIN;
    w->next_correlation = 1;
    if (!hello) {
        return 0;
    }
    uint8_t frame[512];
    size_t len = 0;
    sl_proto_hello h = {.version_min = 1,
                        .version_max = 1,
                        .max_frame_bytes = SL_PROTO_FRAME_SIZE_DEFAULT,
                        .heartbeat_ms = 5000,
                        .client_id = {.data = "test", .size = 4}};
    if (sl_proto_encode_hello(frame, sizeof(frame), &h, &len) != SL_OK ||
        sl_test_wire_send(w, frame, len) != 0) {
        return -1;
    }
    sl_frame f;
    if (sl_test_wire_expect(w, SL_FRAME_HELLO_OK, &f, 5000) != SL_OK) {
        return -1;
    }
    w->max_frame = f.u.hello_ok.max_frame_bytes;
    return 0;
}

void
sl_test_wire_close(sl_test_wire *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    free(w->buf);
    w->buf = NULL;
    w->fd = -1;
}

int
sl_test_wire_send(sl_test_wire *w, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = send(w->fd, p, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

int
sl_test_wire_recv(sl_test_wire *w, sl_frame *f, int timeout_ms)
{
    if (w->consumed > 0) {
        memmove(w->buf, w->buf + w->consumed, w->len - w->consumed);
        w->len -= w->consumed;
        w->consumed = 0;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    // Bounded by timeout_ms.
    for (;;) {
        size_t used = 0;
        const char *why = NULL;
        int rc = sl_proto_decode(w->buf, w->len, SL_PROTO_FRAME_SIZE_DEFAULT, f, &used, &why);
        if (rc == SL_OK) {
            w->consumed = used;
            return SL_OK;
        }
        if (rc != SL_EAGAIN) {
            fprintf(stderr, "test wire: undecodable frame from broker: %s\n", why ? why : "?");
            return SL_EPROTO;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        long left = timeout_ms - elapsed;
        struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
        // Polls once even with no time left, so a zero timeout still reads what has arrived.
        if (poll(&pfd, 1, left > 0 ? (int)left : 0) <= 0) {
            if (left <= 0) {
                return SL_ETIMEDOUT;
            }
            continue;
        }
        if (w->len == w->cap) {
            return SL_EPROTO;
        }
        ssize_t n = recv(w->fd, w->buf + w->len, w->cap - w->len, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            return SL_ECLOSED;
        }
        if (n > 0) {
            w->len += (size_t)n;
        }
    }
}

int
sl_test_wire_expect(sl_test_wire *w, uint8_t type, sl_frame *f, int timeout_ms)
{
    // Bounded: at most 100000 unrelated frames skipped (and by timeout per frame).
    for (int i = 0; i < 100000; i++) {
        int rc = sl_test_wire_recv(w, f, timeout_ms);
        if (rc != SL_OK) {
            return rc;
        }
        if (f->header.type == type) {
            return SL_OK;
        }
        if (f->header.type == SL_FRAME_ERROR || f->header.type == SL_FRAME_STREAM_CLOSE) {
            fprintf(stderr, "test wire: %s code %u: %.*s\n", sl_proto_frame_name(f->header.type),
                    f->u.error.code, (int)f->u.error.message.size, f->u.error.message.data);
            if (type != SL_FRAME_ERROR && type != SL_FRAME_STREAM_CLOSE) {
                return SL_EPROTO;
            }
        }
    }
    return SL_ETIMEDOUT;
}

int
sl_test_wire_create_topic(sl_test_wire *w, const char *name, uint32_t partitions,
                          uint64_t max_backlog_bytes, uint32_t max_lag_ms)
{
    sl_proto_topic_config c = {.partition_count = partitions,
                               .max_backlog_bytes = max_backlog_bytes,
                               .max_lag_ms = max_lag_ms};
    return sl_test_wire_create_topic_config(w, name, &c);
}

int
sl_test_wire_create_topic_config(sl_test_wire *w, const char *name,
                                 const sl_proto_topic_config *config)
{
    uint8_t frame[1024];
    size_t len = 0;
    sl_proto_create_topic ct = {.correlation_id = w->next_correlation++,
                                .config = *config,
                                .topic = {.data = name, .size = (uint16_t)strlen(name)}};
    if (sl_proto_encode_create_topic(frame, sizeof(frame), &ct, &len) != SL_OK ||
        sl_test_wire_send(w, frame, len) != 0) {
        return SL_EIO;
    }
    sl_frame f;
    int rc = sl_test_wire_expect(w, SL_FRAME_ADMIN_RESULT, &f, 5000);
    if (rc != SL_OK) {
        return rc;
    }
    return f.u.admin_result.status.code;
}

size_t
sl_test_build_batch(uint8_t *buf, size_t cap, uint64_t producer_id, uint64_t first_seq,
                    uint32_t count, uint32_t value_size)
{
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    sl_batch_builder_set_producer(&b, producer_id, (uint32_t)first_seq);
    char value[4096];
    if (value_size > sizeof(value)) {
        return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        int n = snprintf(value, sizeof(value), "%llu ", (unsigned long long)(first_seq + i));
        for (uint32_t k = (uint32_t)n; k < value_size; k++) {
            value[k] = 'x';
        }
        sl_record r = {.value = value,
                       .value_size = value_size > (uint32_t)n ? value_size : (uint32_t)n,
                       .timestamp_us = 0};
        if (sl_batch_builder_add(&b, &r) != SL_OK) {
            return 0;
        }
    }
    size_t len = 0;
    if (sl_batch_builder_finish(&b, &len) != SL_OK) {
        return 0;
    }
    return len;
}

// ---- stream helpers ----------------------------------------------------------------------------

int64_t
sl_test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Waits for STREAM_OK (0) or STREAM_CLOSE (its code) on sid, skipping other frames.
static int
wait_stream_ok(sl_test_wire *w, uint32_t sid, sl_frame *f)
{
    // Bounded: at most 10000 unrelated frames, each within the timeout.
    for (int i = 0; i < 10000; i++) {
        int rc = sl_test_wire_recv(w, f, 5000);
        if (rc != SL_OK) {
            return rc;
        }
        if (f->header.stream_id != sid) {
            continue;
        }
        if (f->header.type == SL_FRAME_STREAM_OK) {
            return 0;
        }
        if (f->header.type == SL_FRAME_STREAM_CLOSE) {
            return f->u.error.code != 0 ? (int)f->u.error.code : SL_ECLOSED;
        }
    }
    return SL_ETIMEDOUT;
}

int
sl_test_wire_open_produce(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t partition,
                          uint64_t producer_id, uint64_t *producer_id_out)
{
    uint8_t frame[512];
    size_t len = 0;
    sl_proto_open_produce op = {.partition = partition,
                                .producer_id = producer_id,
                                .topic = {.data = topic, .size = (uint16_t)strlen(topic)}};
    if (sl_proto_encode_open_produce(frame, sizeof(frame), sid, &op, &len) != SL_OK ||
        sl_test_wire_send(w, frame, len) != 0) {
        return SL_EIO;
    }
    sl_frame f;
    int rc = wait_stream_ok(w, sid, &f);
    if (rc == 0 && producer_id_out != NULL) {
        *producer_id_out = f.u.stream_ok.producer_id;
    }
    return rc;
}

int
sl_test_wire_open_consume(sl_test_wire *w, uint32_t sid, const char *topic, uint32_t partition)
{
    uint8_t frame[512];
    size_t len = 0;
    sl_proto_open_consume oc = {.partition = partition,
                                .start_mode = SL_START_EARLIEST,
                                .topic = {.data = topic, .size = (uint16_t)strlen(topic)}};
    if (sl_proto_encode_open_consume(frame, sizeof(frame), sid, &oc, &len) != SL_OK ||
        sl_test_wire_send(w, frame, len) != 0) {
        return SL_EIO;
    }
    sl_frame f;
    return wait_stream_ok(w, sid, &f);
}

int
sl_test_wire_request(sl_test_wire *w, uint32_t sid, uint64_t records, uint64_t bytes)
{
    uint8_t frame[64];
    size_t len = 0;
    sl_proto_request rq = {.records = records, .bytes = bytes};
    if (sl_proto_encode_request(frame, sizeof(frame), sid, &rq, &len) != SL_OK) {
        return -1;
    }
    return sl_test_wire_send(w, frame, len);
}

int
sl_test_wire_ping(sl_test_wire *w, int timeout_ms)
{
    uint8_t frame[64];
    size_t len = 0;
    sl_proto_ping p = {.nonce = 0x5eed0000u + w->next_correlation++};
    if (sl_proto_encode_ping(frame, sizeof(frame), false, &p, &len) != SL_OK ||
        sl_test_wire_send(w, frame, len) != 0) {
        return SL_EIO;
    }
    sl_frame f;
    // Bounded: at most 100000 unrelated frames, each within the timeout.
    for (int i = 0; i < 100000; i++) {
        int rc = sl_test_wire_recv(w, &f, timeout_ms);
        if (rc != SL_OK) {
            return rc;
        }
        if (f.header.type == SL_FRAME_PONG && f.u.ping.nonce == p.nonce) {
            return 0;
        }
        if (f.header.type == SL_FRAME_ERROR) {
            return SL_EPROTO;
        }
    }
    return SL_ETIMEDOUT;
}

int
sl_test_deliver_foreach(const sl_proto_deliver *d,
                        int (*fn)(void *arg, uint64_t offset, const sl_record *r), void *arg)
{
    sl_proto_cursor cur;
    sl_proto_batches_init(&cur, &d->batches);
    const uint8_t *batch;
    sl_batch_header h;
    // Bounded by the frame's batch count and each batch's record count.
    while (sl_proto_batches_next(&cur, &batch, &h) == SL_OK) {
        sl_batch_header full;
        sl_batch_iter it;
        if (sl_batch_validate(batch, h.length, &full) != SL_OK ||
            sl_batch_iter_init(&it, batch, h.length) != SL_OK) {
            return -1;
        }
        sl_record r;
        uint64_t off;
        while (sl_batch_iter_next(&it, &r, &off) == SL_OK) {
            if (off < d->first_offset || off >= d->end_offset) {
                continue;
            }
            int rc = fn(arg, off, &r);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

size_t
sl_test_build_batch_stamped(uint8_t *buf, size_t cap, uint64_t producer_id, uint64_t first_seq,
                            uint32_t count, uint32_t value_size, int64_t stamp_ns)
{
    sl_batch_builder b;
    sl_batch_builder_init(&b, buf, cap);
    sl_batch_builder_set_producer(&b, producer_id, (uint32_t)first_seq);
    char value[4096];
    if (value_size > sizeof(value)) {
        return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        int n = snprintf(value, sizeof(value), "%llu %lld ", (unsigned long long)(first_seq + i),
                         (long long)stamp_ns);
        for (uint32_t k = (uint32_t)n; k < value_size; k++) {
            value[k] = 'x';
        }
        sl_record r = {.value = value,
                       .value_size = value_size > (uint32_t)n ? value_size : (uint32_t)n};
        if (sl_batch_builder_add(&b, &r) != SL_OK) {
            return 0;
        }
    }
    size_t len = 0;
    if (sl_batch_builder_finish(&b, &len) != SL_OK) {
        return 0;
    }
    return len;
}

int
sl_test_parse_value(const sl_record *r, uint64_t *seq_out, int64_t *stamp_out)
{
    char text[64];
    size_t n = r->value_size < sizeof(text) - 1 ? r->value_size : sizeof(text) - 1;
    memcpy(text, r->value, n);
    text[n] = '\0';
    char *end = NULL;
    unsigned long long seq = strtoull(text, &end, 10);
    if (end == text || *end != ' ') {
        return -1;
    }
    *seq_out = seq;
    if (stamp_out != NULL) {
        char *p = end + 1;
        long long stamp = strtoll(p, &end, 10);
        if (end == p || *end != ' ') {
            return -1;
        }
        *stamp_out = stamp;
    }
    return 0;
}
