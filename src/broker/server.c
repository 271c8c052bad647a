// The event loop of sluiced (libuv): the listener, each connection's reads into a bounded buffer,
// its writes (charged to the connection's budget, so a peer that does not read cannot make the
// broker queue without bound), the 10 ms tick that measures rates and re-evaluates credit, and
// shutdown on SIGINT/SIGTERM that drains the storage thread and syncs every log.
#include "broker/broker.h"
#include "broker/admin_http.h"
#include "broker/group.h"
#include "broker/ops.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"

// Connections waiting in the kernel's accept queue.
#define LISTEN_BACKLOG 128

void
sl_broker_log(sl_broker *b, int level, const char *fmt, ...)
{
    if (level > b->config.log_level) {
        return;
    }
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s sluiced %s %s\n", when, names[SL_MIN(level, 3)], line);
}

void
sl_rate_tick(sl_rate *r, double dt_s)
{
    if (dt_s <= 0) {
        return;
    }
    double inst = (double)(r->total - r->last_total) / dt_s;
    r->last_total = r->total;
    // About a 200 ms time constant at the 10 ms tick: reacts within a few round trips yet does
    // not follow every burst.
    double alpha = dt_s / (0.2 + dt_s);
    r->per_s += alpha * (inst - r->per_s);
}

// ---- connections -------------------------------------------------------------------------------

static void
conn_free(sl_conn *c)
{
    sl_budget_release(c->budget, c->rbuf_charged, 0);
    sl_free(c->rbuf, c->rbuf_cap);
    sl_budget_free(c->budget);
    sl_free(c, sizeof(*c));
}

void
sl_conn_unref(sl_conn *c)
{
    SL_ASSERT(c->refs > 0);
    if (--c->refs == 0) {
        conn_free(c);
    }
}

static void
on_conn_closed(uv_handle_t *h)
{
    sl_conn *c = h->data;
    sl_conn_unref(c);
}

void
sl_conn_close(sl_conn *c, int code, const char *message)
{
    if (c->closing) {
        return;
    }
    sl_broker *b = c->broker;
    if (code != SL_OK && message != NULL) {
        sl_broker_log(b, 2, "closing connection %" PRIu64 " (%s): %s", c->id, c->peer, message);
    }
    c->closing = true;
    sl_conn_streams_free(c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        b->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    b->stats.connections_open--;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

sl_write *
sl_conn_write_alloc(sl_conn *c, size_t size)
{
    size_t charge = sizeof(sl_write) + size;
    if (c->closing || sl_budget_reserve(c->budget, charge, 0) != SL_OK) {
        return NULL;
    }
    sl_write *w = sl_alloc(charge);
    if (w == NULL) {
        sl_budget_release(c->budget, charge, 0);
        return NULL;
    }
    w->conn = c;
    w->charged_bytes = charge;
    w->size = size;
    return w;
}

void
sl_conn_write_discard(sl_conn *c, sl_write *w)
{
    sl_budget_release(c->budget, w->charged_bytes, 0);
    sl_free(w, w->charged_bytes);
}

int
sl_conn_encode(sl_conn *c, size_t cap, sl_frame_encoder encode, const void *arg)
{
    sl_write *w = sl_conn_write_alloc(c, cap);
    if (w == NULL) {
        return SL_EFULL;
    }
    size_t len = 0;
    int rc = encode(w->data, cap, arg, &len);
    if (rc != SL_OK) {
        sl_conn_write_discard(c, w);
        return rc;
    }
    w->size = len;
    sl_conn_write(c, w);
    return SL_OK;
}

// Takes w off the connection's queue: the head in practice, as libuv completes writes in order.
static void
write_unlink(sl_conn *c, sl_write *w)
{
    sl_write *prev = NULL;
    // Bounded by the writes the connection's budget admits.
    for (sl_write *x = c->write_head; x != NULL; prev = x, x = x->next) {
        if (x != w) {
            continue;
        }
        if (prev == NULL) {
            c->write_head = w->next;
        } else {
            prev->next = w->next;
        }
        if (c->write_tail == w) {
            c->write_tail = prev;
        }
        w->next = NULL;
        return;
    }
}

static void
on_write_done(uv_write_t *req, int status)
{
    sl_write *w = (sl_write *)req;
    sl_conn *c = w->conn;
    c->write_queued_bytes -= w->size;
    write_unlink(c, w);
    sl_conn_write_discard(c, w);
    if (status != 0 && !c->closing) {
        sl_conn_close(c, SL_ECONNRESET, uv_strerror(status));
    }
    if (!c->closing) {
        // Room in the send allowance: consumers that were held back can deliver again.
        for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
            if (s->kind == SL_STREAM_CONSUME) {
                sl_flow_deliver(s);
            }
        }
    }
    sl_conn_unref(c);
}

void
sl_conn_write(sl_conn *c, sl_write *w)
{
    SL_ASSERT(w->conn == c);
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)w->size);
    c->write_queued_bytes += w->size;
    c->refs++;
    w->queued_ns = sl_now_ns();
    w->next = NULL;
    if (c->write_tail != NULL) {
        c->write_tail->next = w;
    } else {
        c->write_head = w;
    }
    c->write_tail = w;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write_done);
    if (rc != 0) {
        c->write_queued_bytes -= w->size;
        write_unlink(c, w);
        sl_conn_write_discard(c, w);
        c->refs--;
        sl_conn_close(c, SL_ECONNRESET, uv_strerror(rc));
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    sl_conn *c = h->data;
    buf->base = (char *)c->rbuf + c->rbuf_len;
    buf->len = c->rbuf_cap - c->rbuf_len;
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    sl_conn *c = stream->data;
    if (nread < 0) {
        sl_conn_close(c, nread == UV_EOF ? SL_OK : SL_ECONNRESET,
                      nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    if (nread == 0) {
        return;
    }
    c->rbuf_len += (size_t)nread;
    c->refs++; // processing may close the connection; keep it alive until we return
    sl_conn_process(c);
    if (!c->closing && c->rbuf_len == c->rbuf_cap && c->reading) {
        // A frame larger than the buffer could not be staged (its budget is full): stop reading
        // until the tick finds room, so TCP holds the rest.
        uv_read_stop(stream);
        c->reading = false;
    }
    sl_conn_unref(c);
}

static void
conn_start_reading(sl_conn *c)
{
    if (!c->reading && !c->closing && !c->over_credit) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) {
            c->reading = true;
        }
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    sl_broker *b = server->data;
    if (status < 0) {
        sl_broker_log(b, 1, "accept failed: %s", uv_strerror(status));
        return;
    }
    sl_conn *c = sl_calloc(1, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->broker = b;
    c->refs = 1;
    c->id = ++b->next_conn_id;
    c->max_frame = SL_PROTO_FRAME_SIZE_MIN;
    c->heartbeat_ms = (uint32_t)b->config.heartbeat_ms;
    c->last_recv_ns = sl_now_ns();
    uv_tcp_init(b->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    sl_budget_config bc = {.name = "connection",
                           .capacity_bytes = b->config.connection_buffer_bytes};
    int rc = sl_budget_new(&bc, b->memory, &c->budget);
    if (rc == SL_OK) {
        rc = sl_budget_reserve(c->budget, SL_BROKER_READ_BUFFER_BYTES, 0);
        if (rc != SL_OK) {
            sl_budget_free(c->budget);
            c->budget = NULL;
        }
    }
    bool full = b->stats.connections_open >= b->config.max_connections;
    if (rc != SL_OK || full) {
        b->stats.connections_refused++;
        sl_broker_log(b, 1, "refusing a connection: %s",
                      full ? "max_connections reached" : "memory budget full");
        if (c->budget == NULL) {
            sl_budget_config tiny = {.name = "refused", .capacity_bytes = 1};
            SL_ASSERT(sl_budget_new(&tiny, NULL, &c->budget) == SL_OK);
        } else {
            sl_budget_release(c->budget, SL_BROKER_READ_BUFFER_BYTES, 0);
        }
        // Say why, best effort, from the stack: a refused peer gets no budget to queue a write.
        const char *why = full ? "the broker has its maximum number of connections; retry later"
                               : "the broker's memory budget is full; retry later";
        sl_proto_error e = {.code = sl_proto_code_from_status(SL_EBUSY),
                            .retry_after_ms = 1000,
                            .message = {.data = why, .size = (uint16_t)strlen(why)}};
        uint8_t frame[256];
        size_t len = 0;
        if (sl_proto_encode_error(frame, sizeof(frame), 0, &e, &len) == SL_OK) {
            uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
            int written = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
            SL_UNUSED(written);
        }
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    c->rbuf = sl_alloc(SL_BROKER_READ_BUFFER_BYTES);
    c->rbuf_cap = SL_BROKER_READ_BUFFER_BYTES;
    c->rbuf_charged = SL_BROKER_READ_BUFFER_BYTES;
    SL_ASSERT(c->rbuf != NULL);
    struct sockaddr_storage addr;
    int len = sizeof(addr);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &len) == 0) {
        char host[48] = "?";
        uint16_t port = 0;
        if (addr.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&addr;
            uv_ip4_name(a, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (addr.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->next = b->conns;
    if (b->conns != NULL) {
        b->conns->prev = c;
    }
    b->conns = c;
    b->stats.connections_accepted++;
    b->stats.connections_open++;
    conn_start_reading(c);
}

int
sl_conn_grow_rbuf(sl_conn *c, size_t frame_size)
{
    if (frame_size <= c->rbuf_cap) {
        return SL_OK;
    }
    size_t extra = frame_size - c->rbuf_charged;
    if (sl_budget_reserve(c->budget, extra, 0) != SL_OK) {
        return SL_EFULL;
    }
    uint8_t *bigger = sl_alloc(frame_size);
    if (bigger == NULL) {
        sl_budget_release(c->budget, extra, 0);
        return SL_ENOMEM;
    }
    memcpy(bigger, c->rbuf, c->rbuf_len);
    sl_free(c->rbuf, c->rbuf_cap);
    c->rbuf = bigger;
    c->rbuf_cap = frame_size;
    c->rbuf_charged = frame_size;
    return SL_OK;
}

void
sl_conn_shrink_rbuf(sl_conn *c)
{
    if (c->rbuf_cap == SL_BROKER_READ_BUFFER_BYTES || c->rbuf_len > SL_BROKER_READ_BUFFER_BYTES) {
        return;
    }
    uint8_t *small = sl_alloc(SL_BROKER_READ_BUFFER_BYTES);
    if (small == NULL) {
        return;
    }
    memcpy(small, c->rbuf, c->rbuf_len);
    sl_free(c->rbuf, c->rbuf_cap);
    sl_budget_release(c->budget, c->rbuf_charged - SL_BROKER_READ_BUFFER_BYTES, 0);
    c->rbuf = small;
    c->rbuf_cap = SL_BROKER_READ_BUFFER_BYTES;
    c->rbuf_charged = SL_BROKER_READ_BUFFER_BYTES;
}

// ---- the tick and the storage completions ----------------------------------------------------

static void
conns_tick(sl_broker *b, int64_t now)
{
    sl_conn *c = b->conns;
    while (c != NULL) {
        sl_conn *next = c->next;
        int64_t silent_ms = (now - c->last_recv_ns) / 1000000;
        if (c->not_reading) {
            sl_conn_close(c, SL_EPROTO,
                          "did not read its acknowledgements: a whole send "
                          "allowance of frames stayed unread");
        } else if (c->over_credit &&
                   (now - c->over_credit_since_ns) / 1000000 >= b->config.credit_grace_ms) {
            b->stats.disconnects_credit++;
            sl_conn_send_error(c, 0, SL_EPROTO, 0, 0,
                               "sent beyond its credit and did not stop for %" PRId64 " ms",
                               b->config.credit_grace_ms);
            sl_conn_close(c, SL_EPROTO, "credit violation: disconnected after the grace period");
        } else if (silent_ms > 3 * (int64_t)c->heartbeat_ms) {
            b->stats.disconnects_heartbeat++;
            sl_conn_send_error(c, 0, SL_ETIMEDOUT, 0, 0,
                               "no frame for %" PRId64 " ms (3 heartbeat intervals)", silent_ms);
            sl_conn_close(c, SL_ETIMEDOUT, "heartbeat timeout");
        } else if (!c->reading && !c->over_credit) {
            // A large frame was waiting for budget: try again. The peer is not silent while the
            // broker itself is not reading it.
            c->last_recv_ns = now;
            c->refs++;
            sl_conn_process(c);
            if (!c->closing && c->rbuf_len < c->rbuf_cap) {
                conn_start_reading(c);
            }
            sl_conn_unref(c);
        }
        c = next;
    }
}

static void
on_tick(uv_timer_t *t)
{
    sl_broker *b = t->data;
    int64_t now = sl_now_ns();
    double dt = b->last_tick_ns == 0 ? 0 : (double)(now - b->last_tick_ns) / 1e9;
    b->last_tick_ns = now;
    b->tick_count++;
    for (sl_topic *tp = b->topics; tp != NULL; tp = tp->next) {
        sl_rate_tick(&tp->drain_bytes, dt);
        sl_rate_tick(&tp->acked_bytes, dt);
        for (uint32_t i = 0; i < tp->config.partition_count; i++) {
            sl_partition *p = &tp->partitions[i];
            sl_rate_tick(&p->in_bytes, dt);
            sl_rate_tick(&p->in_records, dt);
            sl_rate_tick(&p->out_bytes, dt);
        }
    }
    for (sl_conn *c = b->conns; c != NULL; c = c->next) {
        for (sl_stream *s = c->streams; s != NULL; s = s->conn_next) {
            if (s->kind == SL_STREAM_PRODUCE) {
                sl_rate_tick(&s->accepted_bytes, dt);
            }
        }
    }
    sl_flow_tick(b, now);
    sl_groups_tick(b, now);
    sl_ops_tick(b, now);
    conns_tick(b, now);
    // Retention every second; every tick for drop_oldest topics, whose backlog bound is enforced
    // by deleting segments and must hold within a tick's worth of traffic.
    int64_t now_us = (int64_t)time(NULL) * 1000000;
    for (sl_topic *tp = b->topics; tp != NULL; tp = tp->next) {
        if (b->tick_count % 100 != 0 && tp->config.full_policy != SL_FULL_DROP_OLDEST) {
            continue;
        }
        for (uint32_t i = 0; i < tp->config.partition_count; i++) {
            int n = sl_log_retention_run(tp->partitions[i].log, now_us);
            if (n > 0) {
                sl_broker_log(b, 3, "topic %s partition %" PRIu32 ": retention removed %d segments",
                              tp->name, i, n);
            }
        }
    }
}

static void
on_storage_done(uv_async_t *a)
{
    sl_broker *b = a->data;
    sl_store_req *r = sl_storage_take_done(&b->storage);
    // Bounded by the requests submitted: each is handled once.
    while (r != NULL) {
        sl_store_req *next = r->next;
        sl_flow_store_done(b, r);
        r = next;
    }
}

// ---- lifecycle ---------------------------------------------------------------------------------

static int
encode_goaway(uint8_t *buf, size_t cap, const void *arg, size_t *len)
{
    return sl_proto_encode_goaway(buf, cap, arg, len);
}

static void
broker_stop(sl_broker *b, const char *why)
{
    if (b->stopping) {
        return;
    }
    b->stopping = true;
    sl_broker_log(b, 2, "shutting down (%s): draining writes and syncing logs", why);
    uv_close((uv_handle_t *)&b->listener, NULL);
    sl_conn *c = b->conns;
    while (c != NULL) {
        sl_conn *next = c->next;
        sl_proto_goaway g = {.code = 0, .message = {.data = "broker shutting down", .size = 20}};
        int rc = sl_conn_encode(c, SL_BROKER_CONTROL_FRAME_BYTES, encode_goaway, &g);
        SL_UNUSED(rc); // best effort: the connection closes either way
        sl_conn_close(c, SL_OK, NULL);
        c = next;
    }
    uv_timer_stop(&b->tick);
    uv_close((uv_handle_t *)&b->tick, NULL);
    uv_poll_stop(&b->signal_poll);
    uv_close((uv_handle_t *)&b->signal_poll, NULL);
    // The storage wake-up stays open for completions but no longer keeps the loop running.
    uv_unref((uv_handle_t *)&b->storage_done);
}

static void
on_signal(uv_poll_t *h, int status, int events)
{
    SL_UNUSED(status);
    SL_UNUSED(events);
    sl_broker *b = h->data;
    struct signalfd_siginfo info;
    // Nonblocking: one read takes one signal; a spurious wake-up reads nothing.
    if (read(b->signal_fd, &info, sizeof(info)) != (ssize_t)sizeof(info)) {
        return;
    }
    broker_stop(b, info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
}

int
sl_broker_open(sl_broker *b, const sl_broker_config *config, char *err, size_t err_size)
{
    memset(b, 0, sizeof(*b));
    b->config = *config;
    b->lock_fd = -1;
    // SIGINT and SIGTERM stay blocked in every thread (each inherits this mask: no thread exists
    // yet) and the loop reads them from a signalfd. With handlers instead, a stop signal taken by
    // a helper thread, or deferred by ThreadSanitizer until the taking thread next synchronised,
    // could be lost: 4 of 40 SIGTERMs sent right after start were, under TSan.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    b->signal_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (b->signal_fd < 0) {
        snprintf(err, err_size, "cannot create a signalfd: %s", strerror(errno));
        return SL_EIO;
    }
    b->next_producer_id = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    sl_admission_config_default(&b->admission);
    sl_budget_config mem = {.name = "broker", .capacity_bytes = config->memory_budget_bytes};
    sl_budget_config disk = {.name = "disk", .capacity_bytes = config->disk_budget_bytes};
    if (sl_budget_new(&mem, NULL, &b->memory) != SL_OK ||
        sl_budget_new(&disk, NULL, &b->disk) != SL_OK) {
        snprintf(err, err_size, "cannot create budgets");
        return SL_EINVAL;
    }
    // The delivery scratch buffer is the broker's own memory: charged before anything else.
    b->scratch_size = SL_BROKER_FRAME_BYTES_DEFAULT;
    if (sl_budget_reserve(b->memory, b->scratch_size, 0) != SL_OK ||
        (b->scratch = sl_alloc(b->scratch_size)) == NULL) {
        snprintf(err, err_size, "memory_budget too small for the broker's own buffers");
        return SL_EFULL;
    }
    int rc = sl_ops_open(b);
    if (rc != SL_OK) {
        snprintf(err, err_size, "out of memory");
        return rc;
    }
    rc = sl_topics_lock_data_dir(b, err, err_size);
    if (rc == SL_OK) {
        rc = sl_topics_load(b, err, err_size);
    }
    if (rc == SL_OK) {
        rc = sl_groups_open(b, err, err_size);
    }
    if (rc != SL_OK) {
        return rc;
    }
    b->loop = uv_default_loop();
    // Before the other handles: when the admin address cannot be bound, no handle keeps the loop
    // that sl_broker_close runs from finishing.
    rc = sl_admin_open(b, err, err_size);
    if (rc != SL_OK) {
        return rc;
    }
    uv_tcp_init(b->loop, &b->listener);
    b->listener.data = b;
    struct sockaddr_storage addr;
    int uv_rc = uv_ip4_addr(config->listen_host, config->listen_port, (struct sockaddr_in *)&addr);
    if (uv_rc != 0) {
        uv_rc = uv_ip6_addr(config->listen_host, config->listen_port, (struct sockaddr_in6 *)&addr);
    }
    if (uv_rc == 0) {
        uv_rc = uv_tcp_bind(&b->listener, (struct sockaddr *)&addr, 0);
    }
    if (uv_rc == 0) {
        uv_rc = uv_listen((uv_stream_t *)&b->listener, LISTEN_BACKLOG, on_connection);
    }
    if (uv_rc != 0) {
        snprintf(err, err_size, "cannot listen on %s:%u: %s", config->listen_host,
                 config->listen_port, uv_strerror(uv_rc));
        return SL_EIO;
    }
    int namelen = sizeof(addr);
    uv_tcp_getsockname(&b->listener, (struct sockaddr *)&addr, &namelen);
    b->bound_port = ntohs(addr.ss_family == AF_INET ? ((struct sockaddr_in *)&addr)->sin_port
                                                    : ((struct sockaddr_in6 *)&addr)->sin6_port);
    uv_async_init(b->loop, &b->storage_done, on_storage_done);
    b->storage_done.data = b;
    rc = sl_storage_start(&b->storage, config->fsync_policy, &b->storage_done);
    if (rc != SL_OK) {
        snprintf(err, err_size, "cannot start the storage thread");
        return rc;
    }
    uv_timer_init(b->loop, &b->tick);
    b->tick.data = b;
    uv_timer_start(&b->tick, on_tick, SL_BROKER_TICK_MS, SL_BROKER_TICK_MS);
    uv_poll_init(b->loop, &b->signal_poll, b->signal_fd);
    b->signal_poll.data = b;
    uv_poll_start(&b->signal_poll, UV_READABLE, on_signal);
    return SL_OK;
}

int
sl_broker_run(sl_broker *b)
{
    // The event loop: runs until a signal closes every handle but the storage wake-up.
    uv_run(b->loop, UV_RUN_DEFAULT);
    return SL_OK;
}

void
sl_broker_close(sl_broker *b)
{
    sl_admin_close(b); // first: no HTTP request may reach the loop while it is torn down
    // Let the storage thread finish what was queued, then hand back its completions so every
    // budget reservation is released before the budgets are freed.
    sl_storage_stop(&b->storage);
    sl_store_req *r = sl_storage_take_done(&b->storage);
    while (r != NULL) {
        sl_store_req *next = r->next;
        sl_flow_store_done(b, r);
        r = next;
    }
    sl_storage_fini(&b->storage);
    if (b->loop != NULL) {
        // Not yet initialized when the open failed early (listen or admin address in use).
        if (b->storage_done.type == UV_ASYNC) {
            uv_close((uv_handle_t *)&b->storage_done, NULL);
        }
        uv_run(b->loop, UV_RUN_DEFAULT); // runs the close callbacks
        uv_loop_close(b->loop);
    }
    sl_groups_close(b); // writes committed offsets not yet stored
    sl_topics_close(b); // closing a log syncs it
    if (b->lock_fd >= 0) {
        close(b->lock_fd);
    }
    if (b->scratch != NULL) {
        sl_free(b->scratch, b->scratch_size);
        sl_budget_release(b->memory, b->scratch_size, 0);
    }
    sl_ops_close(b);
    if (b->signal_fd > 0) {
        close(b->signal_fd); // its poll handle was closed by broker_stop and the uv_run above
    }
    sl_budget_free(b->disk);
    sl_budget_free(b->memory);
}
