// The admin HTTP endpoint: libmicrohttpd's one internal thread accepts requests and hands each to
// the event loop through a single mutex-protected slot and a uv_async_t; the loop renders it (the
// only thread that reads broker state) into a bounded buffer and signals a condvar. The HTTP
// thread waits at most SL_ADMIN_RENDER_TIMEOUT_MS, then answers 503, so a stuck loop costs an
// admin client a bounded wait and the broker nothing.
#include "broker/admin_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>

#include "broker/broker.h"
#include "broker/ops.h"
#include "core/strbuf.h"
#include "core/util.h"

#define CONTENT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_JSON       "application/json"
#define CONTENT_TEXT       "text/plain; charset=utf-8"

// Where the one request slot is: the HTTP thread moves IDLE -> QUEUED and DONE -> IDLE, the loop
// QUEUED -> RENDERING -> DONE. Whoever holds the buffer is named by the state, so the buffer
// itself needs no lock.
typedef enum slot_state {
    SLOT_IDLE = 0,
    SLOT_QUEUED = 1,
    SLOT_RENDERING = 2,
    SLOT_DONE = 3,
} slot_state;

struct sl_admin {
    sl_broker *broker; // loop thread only
    struct MHD_Daemon *daemon;
    uv_async_t async;
    bool async_open;
    uint16_t port;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    // ---- under mutex
    slot_state state;
    bool abandoned; // the waiter gave up while the loop rendered: the loop resets the slot
    bool closing;
    sl_admin_page page;
    char arg_topic[SL_ADMIN_ARG_BYTES]; // query arguments of the request in the slot
    char arg_group[SL_ADMIN_ARG_BYTES];
    char arg_kind[SL_ADMIN_ARG_BYTES];
    bool test_hooks; // set at open from SL_ADMIN_TEST_HOOKS_ENV
    // ---- owned by whoever the state names (the loop while RENDERING, the HTTP thread in DONE)
    char *buf;
    size_t buf_cap;
    size_t buf_len;
    unsigned http_status;
    const char *content_type;
    // ---- loop thread only
    sl_admin_counters counters;
    double *values; // SL_ADMIN_SERIES_MAX slots for one scrape's series
    // ---- HTTP thread, read by the loop when rendering
    _Atomic uint64_t timeouts;
};

uint16_t
sl_admin_port(const sl_broker *b)
{
    return b->admin != NULL ? b->admin->port : 0;
}

// ---- rendering (loop thread) ------------------------------------------------------------------

static void
set_text(sl_admin *a, unsigned status, const char *text)
{
    a->http_status = status;
    a->content_type = CONTENT_TEXT;
    size_t n = strlen(text);
    n = SL_MIN(n, a->buf_cap - 1);
    memcpy(a->buf, text, n);
    a->buf[n] = '\0';
    a->buf_len = n;
}

// Grows the buffer to at least need bytes (capped). SL_EFULL when need exceeds the cap.
static int
buf_grow(sl_admin *a, size_t need)
{
    if (need > SL_ADMIN_RESPONSE_BYTES_MAX) {
        return SL_EFULL;
    }
    size_t cap = a->buf_cap;
    // Doubling, bounded by the cap: at most log2(cap / initial) rounds.
    while (cap < need) {
        cap = SL_MIN(cap * 2, (size_t)SL_ADMIN_RESPONSE_BYTES_MAX);
    }
    char *bigger = sl_alloc(cap);
    if (bigger == NULL) {
        return SL_ENOMEM;
    }
    sl_free(a->buf, a->buf_cap);
    a->buf = bigger;
    a->buf_cap = cap;
    return SL_OK;
}

static void
render_registry(sl_admin *a, sl_admin_page page)
{
    sl_broker *b = a->broker;
    sl_metrics_registry *reg = NULL;
    uint64_t dropped = 0;
    a->counters.scrapes++;
    int rc =
        sl_broker_metrics_build(b, &a->counters, a->values, SL_ADMIN_SERIES_MAX, &reg, &dropped);
    a->counters.series_dropped = dropped;
    if (rc != SL_OK) {
        set_text(a, 500, "cannot build the metrics: out of memory\n");
        return;
    }
    int64_t now = sl_now_ns();
    // Two rounds: the first tells the size needed when the buffer is too small.
    for (int round = 0; round < 2; round++) {
        size_t len = 0;
        rc = page == SL_ADMIN_PAGE_METRICS
                 ? sl_metrics_encode_prometheus(reg, now, a->buf, a->buf_cap, &len)
                 : sl_metrics_encode_json(reg, now, a->buf, a->buf_cap, &len);
        if (rc == SL_OK) {
            a->buf_len = len;
            a->http_status = 200;
            a->content_type = page == SL_ADMIN_PAGE_METRICS ? CONTENT_PROMETHEUS : CONTENT_JSON;
            break;
        }
        if (rc != SL_EFULL) {
            set_text(a, 500, "cannot encode the metrics\n");
            break;
        }
        // Values may grow between rounds (a counter gains a digit): ask for some slack.
        rc = buf_grow(a, len + len / 8 + 1024);
        if (rc != SL_OK) {
            a->counters.too_large++;
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "response of %zu bytes exceeds the admin response cap of %u bytes\n", len,
                     SL_ADMIN_RESPONSE_BYTES_MAX);
            set_text(a, 500, msg);
            break;
        }
        if (round == 1) {
            set_text(a, 500, "metrics kept growing while rendering; retry\n");
        }
    }
    sl_metrics_registry_free(reg);
}

// Debug page for tests: breaks one invariant the way a bug would, so a test sees the resync.
static void
render_inject(sl_broker *b, const char *kind, sl_strbuf *sb)
{
    for (uint32_t k = 0; k < SL_RESYNC_KIND_COUNT; k++) {
        if (strcmp(kind, sl_resync_kind_name((sl_resync_kind)k)) == 0) {
            bool done = sl_invariants_inject(b, (sl_resync_kind)k);
            sl__strbuf_puts(sb, done ? "{\"injected\":true}\n" : "{\"injected\":false}\n");
            return;
        }
    }
    sl__strbuf_puts(sb, "{\"injected\":false,\"error\":\"unknown kind\"}\n");
}

// Renders one JSON page into the buffer (two rounds: the first tells the size needed).
static void
render_json(sl_admin *a, sl_admin_page page)
{
    for (int round = 0; round < 2; round++) {
        sl_strbuf sb;
        sl__strbuf_init(&sb, a->buf, a->buf_cap);
        int rc = SL_OK;
        if (page == SL_ADMIN_PAGE_WHY) {
            rc = sl_why_render(a->broker, a->arg_topic, a->arg_group, &sb);
        } else if (page == SL_ADMIN_PAGE_DROPS) {
            sl_drops_render(a->broker, a->arg_topic, &sb);
        } else {
            render_inject(a->broker, a->arg_kind, &sb);
        }
        if (sl__strbuf_fits(&sb)) {
            a->buf_len = sb.needed_bytes;
            a->http_status = rc == SL_ENOENT ? 404 : 200;
            a->content_type = CONTENT_JSON;
            return;
        }
        if (round == 1 || buf_grow(a, sb.needed_bytes + 1) != SL_OK) {
            a->counters.too_large++;
            set_text(a, 500, "response exceeds the admin response cap\n");
            return;
        }
    }
}

static void
render(sl_admin *a, sl_admin_page page)
{
    a->counters.timeouts = atomic_load(&a->timeouts);
    if (page == SL_ADMIN_PAGE_WHY || page == SL_ADMIN_PAGE_DROPS || page == SL_ADMIN_PAGE_INJECT) {
        render_json(a, page);
        return;
    }
    if (page == SL_ADMIN_PAGE_HEALTHZ) {
        // Answered by the loop itself, so a 200 means the loop is turning.
        if (a->broker->stopping) {
            set_text(a, 503, "stopping\n");
        } else {
            set_text(a, 200, "ok\n");
        }
        return;
    }
    render_registry(a, page);
}

static void
on_admin_async(uv_async_t *h)
{
    sl_admin *a = h->data;
    pthread_mutex_lock(&a->mutex);
    if (a->state != SLOT_QUEUED) {
        pthread_mutex_unlock(&a->mutex);
        return;
    }
    a->state = SLOT_RENDERING;
    sl_admin_page page = a->page;
    pthread_mutex_unlock(&a->mutex);

    render(a, page);

    pthread_mutex_lock(&a->mutex);
    if (a->abandoned) {
        a->abandoned = false;
        a->state = SLOT_IDLE;
    } else {
        a->state = SLOT_DONE;
    }
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mutex);
}

// ---- the HTTP thread
// -----------------------------------------------------------------------------

static struct timespec
deadline_after_ms(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *content_type, const char *body,
      size_t size)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(size, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return reply(conn, status, CONTENT_TEXT, text, strlen(text));
}

// Hands the page to the loop and answers with what it rendered, or 503 after the timeout.
static void
copy_arg(struct MHD_Connection *conn, const char *key, char *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
    snprintf(out, SL_ADMIN_ARG_BYTES, "%s", v != NULL ? v : "");
}

static enum MHD_Result
serve_page(sl_admin *a, struct MHD_Connection *conn, sl_admin_page page)
{
    struct timespec deadline = deadline_after_ms(SL_ADMIN_RENDER_TIMEOUT_MS);
    int wait_rc = 0;
    pthread_mutex_lock(&a->mutex);
    // One request at a time: with one HTTP thread the slot is normally idle here; after a
    // timeout the loop may still be rendering an abandoned request.
    while (a->state != SLOT_IDLE && !a->closing && wait_rc != ETIMEDOUT) {
        wait_rc = pthread_cond_timedwait(&a->cond, &a->mutex, &deadline);
    }
    if (a->closing || a->state != SLOT_IDLE) {
        pthread_mutex_unlock(&a->mutex);
        atomic_fetch_add(&a->timeouts, 1);
        return reply_text(conn, 503, "the broker is busy or stopping; retry\n");
    }
    a->state = SLOT_QUEUED;
    a->page = page;
    copy_arg(conn, "topic", a->arg_topic);
    copy_arg(conn, "group", a->arg_group);
    copy_arg(conn, "kind", a->arg_kind);
    pthread_mutex_unlock(&a->mutex);
    uv_async_send(&a->async);

    pthread_mutex_lock(&a->mutex);
    wait_rc = 0;
    while (a->state != SLOT_DONE && !a->closing && wait_rc != ETIMEDOUT) {
        wait_rc = pthread_cond_timedwait(&a->cond, &a->mutex, &deadline);
    }
    if (a->state != SLOT_DONE) {
        if (a->state == SLOT_QUEUED) {
            a->state = SLOT_IDLE; // the loop never took it
        } else {
            a->abandoned = true; // the loop finishes and resets the slot
        }
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->mutex);
        atomic_fetch_add(&a->timeouts, 1);
        return reply_text(conn, 503, "the broker did not answer in time; retry\n");
    }
    // DONE: the buffer is this thread's until the slot is idle again.
    enum MHD_Result ret = reply(conn, a->http_status, a->content_type, a->buf, a->buf_len);
    a->state = SLOT_IDLE;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mutex);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)con_cls;
    sl_admin *a = cls;
    if (upload_data_size != NULL && *upload_data_size != 0) {
        // A body on a GET or on a refused method: ignored (a response is already queued).
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return reply_text(conn, 405, "only GET and HEAD\n");
    }
    if (strcmp(url, "/metrics") == 0) {
        return serve_page(a, conn, SL_ADMIN_PAGE_METRICS);
    }
    if (strcmp(url, "/stats") == 0) {
        return serve_page(a, conn, SL_ADMIN_PAGE_STATS);
    }
    if (strcmp(url, "/healthz") == 0) {
        return serve_page(a, conn, SL_ADMIN_PAGE_HEALTHZ);
    }
    if (strcmp(url, "/why") == 0) {
        if (MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "topic") == NULL) {
            return reply_text(conn, 400, "usage: /why?topic=NAME[&group=NAME]\n");
        }
        return serve_page(a, conn, SL_ADMIN_PAGE_WHY);
    }
    if (strcmp(url, "/drops") == 0) {
        return serve_page(a, conn, SL_ADMIN_PAGE_DROPS);
    }
    if (strcmp(url, "/debug/inject") == 0 && a->test_hooks) {
        return serve_page(a, conn, SL_ADMIN_PAGE_INJECT);
    }
    return reply_text(conn, 404,
                      "not found: try /metrics, /stats, /healthz, /why?topic=T or /drops\n");
}

// ---- lifecycle ----------------------------------------------------------------------------------

static void
admin_free(sl_admin *a)
{
    pthread_mutex_destroy(&a->mutex);
    pthread_cond_destroy(&a->cond);
    sl_free(a->values, SL_ADMIN_SERIES_MAX * sizeof(double));
    sl_free(a->buf, a->buf_cap);
    sl_free(a, sizeof(*a));
}

static void
on_admin_closed(uv_handle_t *h)
{
    admin_free(h->data);
}

int
sl_admin_open(sl_broker *b, char *err, size_t err_size)
{
    const sl_broker_config *cfg = &b->config;
    if (!cfg->admin_enabled) {
        return SL_OK;
    }
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (uv_ip4_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in *)&addr) != 0) {
        if (uv_ip6_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in6 *)&addr) != 0) {
            snprintf(err, err_size, "admin: cannot parse the address '%s'", cfg->admin_host);
            return SL_EINVAL;
        }
        flags |= MHD_USE_IPv6;
    }
    sl_admin *a = sl_calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, err_size, "admin: out of memory");
        return SL_ENOMEM;
    }
    a->broker = b;
    const char *hooks = getenv(SL_ADMIN_TEST_HOOKS_ENV);
    a->test_hooks = hooks != NULL && strcmp(hooks, "1") == 0;
    a->buf = sl_alloc(SL_ADMIN_RESPONSE_BYTES_INITIAL);
    a->buf_cap = SL_ADMIN_RESPONSE_BYTES_INITIAL;
    a->values = sl_alloc(SL_ADMIN_SERIES_MAX * sizeof(double));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&a->mutex, NULL);
    atomic_init(&a->timeouts, 0);
    if (a->buf == NULL || a->values == NULL) {
        if (a->buf == NULL) {
            a->buf_cap = 0;
        }
        admin_free(a);
        snprintf(err, err_size, "admin: out of memory");
        return SL_ENOMEM;
    }
    // Unreferenced: the admin endpoint must not keep the loop alive at shutdown.
    uv_async_init(b->loop, &a->async, on_admin_async);
    a->async.data = a;
    a->async_open = true;
    uv_unref((uv_handle_t *)&a->async);
    b->admin = a;
    a->daemon = MHD_start_daemon(
        flags, cfg->admin_port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)SL_ADMIN_CONNECTIONS_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SL_ADMIN_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SL_ADMIN_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_END);
    if (a->daemon == NULL) {
        snprintf(err, err_size, "admin: cannot serve HTTP on %s:%u (address in use?)",
                 cfg->admin_host, cfg->admin_port);
        return SL_EIO; // the caller's sl_broker_close frees it
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info != NULL ? info->port : cfg->admin_port;
    return SL_OK;
}

void
sl_admin_close(sl_broker *b)
{
    sl_admin *a = b->admin;
    if (a == NULL) {
        return;
    }
    b->admin = NULL;
    pthread_mutex_lock(&a->mutex);
    a->closing = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mutex);
    if (a->daemon != NULL) {
        MHD_stop_daemon(a->daemon); // joins the HTTP thread; waiting requests got 503
    }
    uv_close((uv_handle_t *)&a->async, on_admin_closed);
}
