// The admin port of `sluice pipe --admin HOST:PORT`, served by libmicrohttpd on one thread of its
// own: GET /metrics (Prometheus text), /stats (JSON: per-stage stats and the bottleneck) and
// /explain (the bottleneck report).
#include "cli/pipe_admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"
#include "pipeline/pipeline_internal.h"

// First guess for a metrics page, and the largest served.
#define ADMIN_BODY_BYTES_INITIAL (64u << 10)
#define ADMIN_BODY_BYTES_MAX     (16u << 20)
#define ADMIN_STAGES_MAX         256u
// Connections served at once, how long an idle one lives, and the memory MHD gives each.
#define ADMIN_CONNECTIONS_MAX         16u
#define ADMIN_CONNECTION_TIMEOUT_S    10u
#define ADMIN_CONNECTION_MEMORY_BYTES (32u << 10)

// Queues body (copied) as the answer; false when MHD refuses it.
static enum MHD_Result
admin_send(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
           size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result
admin_metrics(sl_cli_pipe_admin *a, struct MHD_Connection *conn)
{
    // Endpoints (Kafka lag and pauses, limiter limits...) publish their figures on demand; MHD's
    // single thread makes this the only caller.
    sl__pipeline_endpoint_stats(a->pipeline, a->registry);
    size_t cap = ADMIN_BODY_BYTES_INITIAL;
    for (int attempt = 0; attempt < 2; attempt++) { // a second try with the size the first needed
        char *buf = sl_alloc(cap);
        size_t len = 0;
        int r = buf != NULL ? sl_metrics_encode_prometheus(a->registry, sl_now_ns(), buf, cap, &len)
                            : SL_ENOMEM;
        enum MHD_Result sent = MHD_NO;
        if (r == SL_OK) {
            sent = admin_send(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", buf, len);
        }
        sl_free(buf, cap);
        if (r == SL_OK) {
            return sent;
        }
        if (r != SL_EFULL || len > ADMIN_BODY_BYTES_MAX) {
            break;
        }
        cap = len;
    }
    return admin_send(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "", 0);
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

static enum MHD_Result
admin_stats(sl_cli_pipe_admin *a, struct MHD_Connection *conn, bool explain_only)
{
    static sl_pipe_stage_stats stats[ADMIN_STAGES_MAX]; // only the admin thread uses it
    char report[8192];
    int bottleneck = sl_pipeline_explain(a->pipeline, report, sizeof(report));
    if (explain_only) {
        return admin_send(conn, MHD_HTTP_OK, "text/plain", report, strlen(report));
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
    enum MHD_Result r = MHD_NO;
    if (text != NULL) {
        r = admin_send(conn, MHD_HTTP_OK, "application/json", text, strlen(text));
        free(text); // allocated by jansson
    }
    json_decref(doc);
    return r;
}

static enum MHD_Result
admin_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
              const char *version, const char *upload_data, size_t *upload_data_size,
              void **con_cls)
{
    sl_cli_pipe_admin *a = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
        const char *body = "only GET\n";
        return admin_send(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", body, strlen(body));
    }
    if (strcmp(url, "/metrics") == 0) {
        return admin_metrics(a, conn);
    }
    if (strcmp(url, "/stats") == 0) {
        return admin_stats(a, conn, false);
    }
    if (strcmp(url, "/explain") == 0) {
        return admin_stats(a, conn, true);
    }
    const char *body = "try /metrics, /stats or /explain\n";
    return admin_send(conn, MHD_HTTP_NOT_FOUND, "text/plain", body, strlen(body));
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
    // One internal thread serves every connection in turn: scrapes are small and rare.
    a->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port, NULL, NULL, admin_request, a,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)ADMIN_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ADMIN_CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)ADMIN_CONNECTION_MEMORY_BYTES, MHD_OPTION_END);
    if (a->daemon == NULL) {
        snprintf(err, err_size, "--admin %s: cannot serve HTTP there (address in use?)", address);
        return SL_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info != NULL ? info->port : port;
    return SL_OK;
}

void
sl_cli_pipe_admin_stop(sl_cli_pipe_admin *a)
{
    if (a->daemon != NULL) {
        MHD_stop_daemon(a->daemon);
        a->daemon = NULL;
    }
}
