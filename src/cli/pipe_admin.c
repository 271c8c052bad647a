// The admin port of `sluice pipe --admin HOST:PORT`: a minimal HTTP/1.0 server on one thread
// serving GET /metrics (Prometheus text), /stats (JSON: per-stage stats and the bottleneck) and
// /explain (the bottleneck report). One request per connection, answered and closed; requests
// are served one at a time, so a slow scraper only delays other scrapers. libmicrohttpd is linked
// only into sluiced; this keeps the CLI's dependencies as they are.
#include "cli/pipe_admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

// Request bytes read at most (a GET line and headers).
#define ADMIN_REQUEST_BYTES_MAX 4096u
// First guess for a metrics page, and the largest served.
#define ADMIN_BODY_BYTES_INITIAL (64u << 10)
#define ADMIN_BODY_BYTES_MAX     (16u << 20)
// The thread checks for stop this often; a client gets this long to send its request.
#define ADMIN_TICK_MS    200
#define ADMIN_READ_MS    2000
#define ADMIN_STAGES_MAX 256u

static void
admin_send(int fd, const char *status, const char *type, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, len);
    if (n > 0 && send(fd, head, (size_t)n, MSG_NOSIGNAL) == n && len > 0) {
        size_t off = 0;
        for (int i = 0; i < 1000 && off < len; i++) {
            ssize_t w = send(fd, body + off, len - off, MSG_NOSIGNAL);
            if (w <= 0) {
                break;
            }
            off += (size_t)w;
        }
    }
}

static void
admin_metrics(sl_cli_pipe_admin *a, int fd)
{
    size_t cap = ADMIN_BODY_BYTES_INITIAL;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = sl_alloc(cap);
        size_t len = 0;
        int r = buf != NULL ? sl_metrics_encode_prometheus(a->registry, sl_now_ns(), buf, cap, &len)
                            : SL_ENOMEM;
        if (r == SL_OK) {
            admin_send(fd, "200 OK", "text/plain; version=0.0.4", buf, len);
        }
        sl_free(buf, cap);
        if (r != SL_EFULL || len > ADMIN_BODY_BYTES_MAX) {
            if (r != SL_OK) {
                admin_send(fd, "500 Internal Server Error", "text/plain", "", 0);
            }
            return;
        }
        cap = len;
    }
}

static json_t *
admin_stage_json(const sl_pipe_stage_stats *s)
{
    return json_pack("{s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:f}", "name",
                     s->name, "parallelism", (int)s->parallelism, "busy_ms_per_s", s->busy_ms_per_s,
                     "backpressured_ms_per_s", s->backpressured_ms_per_s, "idle_ms_per_s",
                     s->idle_ms_per_s, "in_per_s", s->in_per_s, "out_per_s", s->out_per_s,
                     "queue_fill", s->queue_fill, "queued_records", (json_int_t)s->queued_records,
                     "queue_capacity_records", (json_int_t)s->queue_capacity_records,
                     "records_in_total", (json_int_t)s->records_in_total, "records_out_total",
                     (json_int_t)s->records_out_total, "latency_p99_s", s->latency_p99_s);
}

static void
admin_stats(sl_cli_pipe_admin *a, int fd, bool explain_only)
{
    static sl_pipe_stage_stats stats[ADMIN_STAGES_MAX]; // only the admin thread uses it
    char report[8192];
    int bottleneck = sl_pipeline_explain(a->pipeline, report, sizeof(report));
    if (explain_only) {
        admin_send(fd, "200 OK", "text/plain", report, strlen(report));
        return;
    }
    size_t count = 0;
    sl_pipeline_stats(a->pipeline, stats, ADMIN_STAGES_MAX, &count);
    json_t *arr = json_array();
    for (size_t i = 0; i < SL_MIN(count, ADMIN_STAGES_MAX); i++) {
        json_array_append_new(arr, admin_stage_json(&stats[i]));
    }
    json_t *doc = json_pack("{s:s, s:o, s:i, s:s}", "pipeline", a->name, "stages", arr,
                            "bottleneck", bottleneck, "explain", report);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text != NULL) {
        admin_send(fd, "200 OK", "application/json", text, strlen(text));
        free(text); // allocated by jansson
    }
    json_decref(doc);
}

static void
admin_serve(sl_cli_pipe_admin *a, int fd)
{
    char req[ADMIN_REQUEST_BYTES_MAX + 1];
    size_t len = 0;
    int64_t deadline = sl_deadline_after_ms(ADMIN_READ_MS);
    while (len < ADMIN_REQUEST_BYTES_MAX && sl_now_ns() < deadline) { // bounded by deadline
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ADMIN_TICK_MS) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, req + len, ADMIN_REQUEST_BYTES_MAX - len, 0);
        if (n <= 0) {
            return;
        }
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) {
            break;
        }
    }
    req[len] = '\0';
    if (strncmp(req, "GET /metrics", 12) == 0) {
        admin_metrics(a, fd);
    } else if (strncmp(req, "GET /stats", 10) == 0) {
        admin_stats(a, fd, false);
    } else if (strncmp(req, "GET /explain", 12) == 0) {
        admin_stats(a, fd, true);
    } else {
        const char *body = "try /metrics, /stats or /explain\n";
        admin_send(fd, "404 Not Found", "text/plain", body, strlen(body));
    }
}

static void *
admin_thread(void *arg)
{
    sl_cli_pipe_admin *a = arg;
    while (!atomic_load(&a->stop)) { // the admin loop: until stop
        struct pollfd p = {.fd = a->listen_fd, .events = POLLIN};
        if (poll(&p, 1, ADMIN_TICK_MS) <= 0) {
            continue;
        }
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            admin_serve(a, fd);
            close(fd);
        }
    }
    return NULL;
}

int
sl_cli_pipe_admin_start(sl_cli_pipe_admin *a, const char *address, char *err, size_t err_size)
{
    char host[256];
    uint16_t port = 0;
    char why[128];
    if (sl_parse_endpoint(address, host, sizeof(host), &port, 1, why, sizeof(why)) != SL_OK) {
        snprintf(err, err_size, "--admin %s: %s", address, why);
        return SL_EINVAL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa.sin_addr) != 1) {
        snprintf(err, err_size, "--admin %s: want an IPv4 address", address);
        return SL_EINVAL;
    }
    a->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t sl = sizeof(sa);
    if (a->listen_fd < 0 || setsockopt(a->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, 4) != 0 ||
        bind(a->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(a->listen_fd, 16) != 0 ||
        getsockname(a->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
        snprintf(err, err_size, "--admin %s: %s", address, strerror(errno));
        if (a->listen_fd >= 0) {
            close(a->listen_fd);
        }
        return SL_EIO;
    }
    a->port = ntohs(sa.sin_port);
    atomic_store(&a->stop, false);
    if (pthread_create(&a->thread, NULL, admin_thread, a) != 0) {
        close(a->listen_fd);
        return SL_ENOMEM;
    }
    return SL_OK;
}

void
sl_cli_pipe_admin_stop(sl_cli_pipe_admin *a)
{
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    close(a->listen_fd);
}
