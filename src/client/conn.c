// One client connection and the I/O thread that drives it: non-blocking socket, bounded read and
// write buffers sized to the negotiated frame, the HELLO handshake, heartbeats (liveness is kept
// whatever the credit) and reconnects with backoff. Producer and consumer plug in via sl__io_ops.
#include "client/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

// Longest single poll() while waiting: bounds how late a stop request or a timer is noticed.
#define CONN_POLL_SLICE_MS 200

void
sl__conn_init(sl__conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

void
sl__conn_close(sl__conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->rbuf != NULL) {
        sl_free(c->rbuf, c->rcap);
    }
    if (c->wbuf != NULL) {
        sl_free(c->wbuf, c->wcap);
    }
    sl__conn_init(c);
}

static int
conn_buffers(sl__conn *c, uint32_t max_frame)
{
    uint8_t *r = sl_alloc(max_frame);
    // The write buffer holds one largest frame plus control frames queued behind it.
    size_t wcap = (size_t)max_frame + SL_PROTO_FRAME_SIZE_MIN;
    uint8_t *w = sl_alloc(wcap);
    if (r == NULL || w == NULL) {
        sl_free(r, r == NULL ? 0 : max_frame);
        sl_free(w, w == NULL ? 0 : wcap);
        return SL_ENOMEM;
    }
    if (c->rbuf != NULL) {
        SL_ASSERT(c->rlen <= max_frame);
        memcpy(r, c->rbuf, c->rlen);
        sl_free(c->rbuf, c->rcap);
    }
    if (c->wbuf != NULL) {
        memcpy(w, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
        sl_free(c->wbuf, c->wcap);
    }
    c->rbuf = r;
    c->rcap = max_frame;
    c->wbuf = w;
    c->wcap = wcap;
    c->max_frame = max_frame;
    return SL_OK;
}

static int
wait_fd(int fd, short events, int64_t deadline_ns, _Atomic bool *stop)
{
    for (;;) { // bounded by deadline_ns, in slices
        if (stop != NULL && atomic_load(stop)) {
            return SL_ECANCELED;
        }
        int64_t now = sl_now_ns();
        if (now >= deadline_ns) {
            return SL_ETIMEDOUT;
        }
        int64_t left_ms = (deadline_ns - now + 999999) / 1000000;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)SL_MIN(left_ms, CONN_POLL_SLICE_MS));
        if (n > 0) {
            return SL_OK;
        }
        if (n < 0 && errno != EINTR) {
            return sl_from_errno(errno);
        }
    }
}

static int
conn_connect(sl__conn *c, const char *host, uint16_t port, int64_t deadline_ns, _Atomic bool *stop)
{
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] == '\0' ? "127.0.0.1" : host, port_text, &hints, &res) != 0) {
        return SL_ECONNREFUSED;
    }
    int err = SL_ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            err = wait_fd(fd, POLLOUT, deadline_ns, stop);
            int so_err = 0;
            socklen_t len = sizeof(so_err);
            if (err == SL_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &len) == 0) {
                r = so_err == 0 ? 0 : -1;
                err = so_err == 0 ? SL_OK : sl_from_errno(so_err);
            }
        } else if (r != 0) {
            err = sl_from_errno(errno);
        }
        if (r == 0) {
            c->fd = fd;
            err = SL_OK;
        } else {
            close(fd);
        }
    }
    freeaddrinfo(res);
    return err;
}

int
sl__conn_open(sl__conn *c, const char *host, uint16_t port, const char *client_id,
              uint32_t max_frame, uint32_t heartbeat_ms, int64_t deadline_ns, _Atomic bool *stop,
              sl_proto_hello_ok *ok_out)
{
    sl__conn_init(c);
    int err = conn_buffers(c, SL_PROTO_FRAME_SIZE_MIN);
    if (err == SL_OK) {
        err = conn_connect(c, host, port, deadline_ns, stop);
    }
    uint8_t *at = NULL;
    size_t room = err == SL_OK ? sl__conn_room(c, &at) : 0;
    size_t len = 0;
    if (err == SL_OK) {
        sl_proto_hello hello = {.version_min = SL_PROTO_VERSION_MIN,
                                .version_max = SL_PROTO_VERSION_MAX,
                                .max_frame_bytes = max_frame,
                                .heartbeat_ms = heartbeat_ms,
                                .client_id = {client_id, (uint16_t)strlen(client_id)}};
        err = sl_proto_encode_hello(at, room, &hello, &len);
    }
    if (err == SL_OK) {
        sl__conn_commit(c, len);
        err = sl__conn_write_all(c, deadline_ns);
    }
    sl_frame f;
    size_t pos = 0;
    if (err == SL_OK) {
        err = sl__conn_wait_frame(c, deadline_ns, &f, &pos);
    }
    if (err == SL_OK && f.header.type != SL_FRAME_HELLO_OK) {
        err =
            f.header.type == SL_FRAME_ERROR ? sl_proto_status_from_code(f.u.error.code) : SL_EPROTO;
        err = err == SL_OK ? SL_EPROTO : err;
    }
    if (err == SL_OK) {
        *ok_out = f.u.hello_ok;
        ok_out->broker_id.data = NULL; // the view dies with the consume below
        sl__conn_consume(c, pos);
        c->heartbeat_ms = SL_MAX(f.u.hello_ok.heartbeat_ms, SL_PROTO_HEARTBEAT_MS_MIN);
        uint32_t agreed = SL_MIN(SL_MAX(f.u.hello_ok.max_frame_bytes, SL_PROTO_FRAME_SIZE_MIN),
                                 SL_PROTO_FRAME_SIZE_CEILING);
        err = conn_buffers(c, agreed);
    }
    if (err != SL_OK) {
        sl__conn_close(c);
    }
    return err;
}

size_t
sl__conn_room(sl__conn *c, uint8_t **at)
{
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    *at = c->wbuf + c->wlen;
    return c->wcap - c->wlen;
}

void
sl__conn_commit(sl__conn *c, size_t len)
{
    SL_ASSERT(c->wlen + len <= c->wcap);
    c->wlen += len;
}

int
sl__conn_flush(sl__conn *c)
{
    for (int i = 0; i < 64 && c->woff < c->wlen; i++) { // bounded: the kernel takes or refuses
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            c->last_tx_ns = sl_now_ns();
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return SL_ECONNRESET;
        }
    }
    if (c->woff == c->wlen) {
        c->woff = c->wlen = 0;
    }
    return SL_OK;
}

int
sl__conn_fill(sl__conn *c)
{
    for (int i = 0; i < 64 && c->rlen < c->rcap; i++) { // bounded by the buffer
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->last_rx_ns = sl_now_ns();
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return SL_OK;
        } else {
            return SL_ECONNRESET;
        }
    }
    return SL_OK;
}

int
sl__conn_next(sl__conn *c, size_t *pos, sl_frame *f)
{
    size_t used = 0;
    const char *why = NULL;
    int err = sl_proto_decode(c->rbuf + *pos, c->rlen - *pos, c->max_frame, f, &used, &why);
    if (err == SL_OK) {
        *pos += used;
    }
    return err;
}

void
sl__conn_consume(sl__conn *c, size_t pos)
{
    SL_ASSERT(pos <= c->rlen);
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
}

int
sl__conn_ping(sl__conn *c, bool pong, uint64_t nonce)
{
    uint8_t *at = NULL;
    size_t room = sl__conn_room(c, &at);
    size_t len = 0;
    sl_proto_ping ping = {.nonce = nonce};
    int err = sl_proto_encode_ping(at, room, pong, &ping, &len);
    if (err == SL_OK) {
        sl__conn_commit(c, len);
    }
    return err;
}

int
sl__conn_write_all(sl__conn *c, int64_t deadline_ns)
{
    for (;;) { // bounded by deadline_ns
        int err = sl__conn_flush(c);
        if (err != SL_OK || c->wlen == 0) {
            return err;
        }
        err = wait_fd(c->fd, POLLOUT, deadline_ns, NULL);
        if (err != SL_OK) {
            return err;
        }
    }
}

int
sl__conn_wait_frame(sl__conn *c, int64_t deadline_ns, sl_frame *f, size_t *pos)
{
    for (;;) { // bounded by deadline_ns
        *pos = 0;
        int err = sl__conn_next(c, pos, f);
        if (err == SL_OK && f->header.type == SL_FRAME_PING) {
            uint64_t nonce = f->u.ping.nonce;
            sl__conn_consume(c, *pos);
            if (sl__conn_ping(c, true, nonce) == SL_OK) {
                err = sl__conn_write_all(c, deadline_ns);
            }
            if (err != SL_OK) {
                return err;
            }
            continue;
        }
        if (err == SL_OK && f->header.type == SL_FRAME_PONG) {
            sl__conn_consume(c, *pos);
            continue;
        }
        if (err != SL_EAGAIN) {
            return err;
        }
        err = wait_fd(c->fd, POLLIN, deadline_ns, NULL);
        if (err == SL_OK) {
            size_t before = c->rlen;
            err = sl__conn_fill(c);
            if (err == SL_OK && c->rlen == before) {
                err = SL_ECONNRESET; // readable with nothing to read: orderly EOF
            }
        }
        if (err != SL_OK) {
            return err;
        }
    }
}

// ---- the I/O thread ----------------------------------------------------------------------------

void
sl__signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    SL_UNUSED(n); // a saturated eventfd is already readable
}

void
sl__drain_fd(int fd)
{
    uint64_t value;
    ssize_t n = read(fd, &value, sizeof(value));
    SL_UNUSED(n);
}

int
sl__copy_name(char *dst, const char *name, bool allow_null)
{
    if (name == NULL || name[0] == '\0') {
        dst[0] = '\0';
        return allow_null ? SL_OK : SL_EINVAL;
    }
    size_t len = strlen(name);
    if (!sl_proto_topic_name_valid(name, len)) {
        return SL_EINVAL;
    }
    memcpy(dst, name, len + 1);
    return SL_OK;
}

int
sl_client_resolve_broker(const char *text, char *host, size_t host_size, uint16_t *port_out,
                         char *err, size_t err_size)
{
    if (text == NULL || text[0] == '\0') {
        text = getenv(SL_CLIENT_BROKER_ENV);
    }
    if (text == NULL || text[0] == '\0') {
        text = "127.0.0.1:7420";
    }
    int r = sl_parse_endpoint(text, host, host_size, port_out, 0, err, err_size);
    return r == SL_OK ? SL_OK : SL_EINVAL;
}

int
sl__io_init(sl__io *io, const char *broker, const char *client_id, uint32_t heartbeat_ms,
            uint32_t backoff_max_ms, uint32_t max_frame, const sl__io_ops *ops, void *handle,
            char *err, size_t err_size)
{
    memset(io, 0, sizeof(*io));
    sl__conn_init(&io->conn);
    io->wake_fd = -1;
    int r = sl_client_resolve_broker(broker, io->host, sizeof(io->host), &io->port, err, err_size);
    if (r != SL_OK) {
        return r;
    }
    sl__strlcpy(io->client_id, client_id, sizeof(io->client_id));
    io->heartbeat_ms =
        SL_MIN(SL_MAX(heartbeat_ms, SL_PROTO_HEARTBEAT_MS_MIN), SL_PROTO_HEARTBEAT_MS_MAX);
    io->backoff_max_ms = backoff_max_ms == 0 ? SL__RECONNECT_BACKOFF_MAX_MS : backoff_max_ms;
    io->max_frame = max_frame;
    io->ops = ops;
    io->handle = handle;
    io->rng = (uint64_t)sl_now_ns() | 1u;
    io->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->wake_fd < 0) {
        return sl_from_errno(errno);
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&io->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&io->mutex, NULL);
    return SL_OK;
}

void
sl__io_wake(sl__io *io)
{
    sl__signal_fd(io->wake_fd);
}

bool
sl__io_wait(sl__io *io, int64_t deadline_ns)
{
    if (deadline_ns == SL_DEADLINE_NEVER) {
        pthread_cond_wait(&io->cond, &io->mutex);
        return true;
    }
    if (sl_now_ns() >= deadline_ns) {
        return false;
    }
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    return pthread_cond_timedwait(&io->cond, &io->mutex, &ts) == 0 || sl_now_ns() < deadline_ns;
}

uint32_t
sl__io_jitter_ms(sl__io *io, uint32_t ms)
{
    io->rng ^= io->rng << 13;
    io->rng ^= io->rng >> 7;
    io->rng ^= io->rng << 17;
    uint64_t span = (uint64_t)ms * SL__JITTER_PCT * 2 / 100; // width of the +-20 % window
    uint64_t low = (uint64_t)ms - (uint64_t)ms * SL__JITTER_PCT / 100;
    return (uint32_t)(low + (span == 0 ? 0 : io->rng % (span + 1)));
}

void
sl__io_count_throttle(sl__io *io, uint8_t reason, uint32_t wait_ms)
{
    io->stats.throttles_total++;
    if (reason < SL_ARRAY_LEN(io->stats.throttles_by_reason)) {
        io->stats.throttles_by_reason[reason]++;
    }
    io->stats.throttled_ms_total += wait_ms;
}

static void
io_disconnect(sl__io *io)
{
    pthread_mutex_lock(&io->mutex);
    sl__conn_close(&io->conn);
    if (io->connected) {
        io->stats.disconnects_total++;
    }
    io->connected = false;
    io->stats.connected = false;
    io->ops->on_disconnected(io->handle);
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->mutex);
    io->ops->unlocked(io->handle);
}

// Sleeps until deadline_ns or a stop request; wake-ups for new work are drained and ignored.
static void
io_sleep(sl__io *io, int64_t deadline_ns)
{
    for (;;) { // bounded by deadline_ns, in slices
        int64_t now = sl_now_ns();
        if (atomic_load(&io->stop) || now >= deadline_ns) {
            return;
        }
        struct pollfd pfd = {.fd = io->wake_fd, .events = POLLIN};
        int64_t left_ms = (deadline_ns - now + 999999) / 1000000;
        if (poll(&pfd, 1, (int)SL_MIN(left_ms, CONN_POLL_SLICE_MS)) > 0) {
            sl__drain_fd(io->wake_fd);
        }
    }
}

static int
io_connect(sl__io *io)
{
    sl_proto_hello_ok ok;
    sl__conn conn;
    int err =
        sl__conn_open(&conn, io->host, io->port, io->client_id, io->max_frame, io->heartbeat_ms,
                      sl_deadline_after_ms(SL__CONNECT_TIMEOUT_MS), &io->stop, &ok);
    if (err != SL_OK) {
        return err;
    }
    pthread_mutex_lock(&io->mutex);
    io->conn = conn;
    io->conn.last_rx_ns = io->conn.last_tx_ns = sl_now_ns();
    io->connected = true;
    io->stats.connected = true;
    io->stats.connects_total++;
    io->ops->on_connected(io->handle, &ok);
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->mutex);
    return SL_OK;
}

// Handles connection-level frames itself and passes the rest to the handle. Caller holds mutex.
static int
io_frame(sl__io *io, const sl_frame *f, int64_t now)
{
    switch (f->header.type) {
    case SL_FRAME_PING:
        // A full write buffer skips this PONG; the peer counts any frame as liveness.
        (void)sl__conn_ping(&io->conn, true, f->u.ping.nonce);
        return SL_OK;
    case SL_FRAME_PONG:
        if (io->ops->on_pong != NULL) {
            io->ops->on_pong(io->handle, f->u.ping.nonce);
        }
        return SL_OK;
    case SL_FRAME_GOAWAY:
        // Unacked data is resent on the next connection, no earlier than the hint.
        io->reconnect_at_ns =
            now + (int64_t)sl__io_jitter_ms(io, f->u.goaway.retry_after_ms) * 1000000;
        return SL_ECONNRESET;
    case SL_FRAME_ERROR:
        if (f->header.stream_id == 0) {
            io->reconnect_at_ns =
                now + (int64_t)sl__io_jitter_ms(io, f->u.error.retry_after_ms) * 1000000;
            return SL_ECONNRESET;
        }
        break;
    default:
        break;
    }
    return io->ops->on_frame(io->handle, f, now);
}

static int
io_read(sl__io *io)
{
    size_t before = io->conn.rlen;
    int err = sl__conn_fill(&io->conn);
    if (err == SL_OK && io->conn.rlen == before && before < io->conn.rcap) {
        err = SL_ECONNRESET; // readable with nothing to read: orderly EOF
    }
    if (err != SL_OK) {
        return err;
    }
    pthread_mutex_lock(&io->mutex);
    size_t pos = 0;
    int64_t now = sl_now_ns();
    for (uint32_t i = 0; i < SL__FRAMES_PER_ROUND_MAX && err == SL_OK; i++) {
        sl_frame f;
        err = sl__conn_next(&io->conn, &pos, &f);
        if (err == SL_OK) {
            err = io_frame(io, &f, now);
        }
    }
    sl__conn_consume(&io->conn, pos);
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->mutex);
    io->ops->unlocked(io->handle);
    return err == SL_EAGAIN ? SL_OK : err;
}

// Lets the handle encode output and sends heartbeats; returns the poll timeout in ms.
static int
io_pump(sl__io *io, bool *dead)
{
    pthread_mutex_lock(&io->mutex);
    int64_t now = sl_now_ns();
    int64_t hb_ns = (int64_t)io->conn.heartbeat_ms * 1000000;
    int64_t wake_at = now + hb_ns;
    io->ops->pump(io->handle, now, &wake_at);
    // Liveness is independent of demand: a PING goes out whenever the link was quiet for an
    // interval, even when the stream has no credit or requested nothing.
    if (now - io->conn.last_tx_ns >= hb_ns &&
        sl__conn_ping(&io->conn, false, ++io->conn.ping_nonce) == SL_OK) {
        io->stats.pings_sent_total++;
        io->conn.last_tx_ns = now;
    }
    wake_at = SL_MIN(wake_at, io->conn.last_tx_ns + hb_ns);
    *dead = now - io->conn.last_rx_ns > hb_ns * SL__HEARTBEAT_MISSES_MAX;
    pthread_mutex_unlock(&io->mutex);
    io->ops->unlocked(io->handle);
    int64_t ms = (wake_at - now + 999999) / 1000000;
    return (int)SL_MAX(0, SL_MIN(ms, CONN_POLL_SLICE_MS));
}

// The I/O thread: runs until stop is set (the only unbounded loop of a client handle).
static void *
io_main(void *arg)
{
    sl__io *io = arg;
    uint32_t backoff_ms = SL__RECONNECT_BACKOFF_MIN_MS;
    while (!atomic_load(&io->stop)) {
        if (!io->connected) {
            io_sleep(io, io->reconnect_at_ns); // a broker's retry-after hint, if any
            if (atomic_load(&io->stop)) {
                break;
            }
            if (io_connect(io) != SL_OK) {
                io_sleep(io, sl_deadline_after_ms(sl__io_jitter_ms(io, backoff_ms)));
                backoff_ms = SL_MIN(backoff_ms * 2, io->backoff_max_ms);
                continue;
            }
            backoff_ms = SL__RECONNECT_BACKOFF_MIN_MS;
        }
        bool dead = false;
        int timeout_ms = io_pump(io, &dead);
        int err = dead ? SL_ETIMEDOUT : sl__conn_flush(&io->conn);
        struct pollfd pfd[2] = {
            {.fd = io->conn.fd, .events = POLLIN | (io->conn.wlen > 0 ? POLLOUT : 0)},
            {.fd = io->wake_fd, .events = POLLIN},
        };
        if (err == SL_OK && poll(pfd, 2, timeout_ms) > 0) {
            if (pfd[1].revents != 0) {
                sl__drain_fd(io->wake_fd);
            }
            if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                err = io_read(io);
            }
            if (err == SL_OK && (pfd[0].revents & POLLOUT)) {
                err = sl__conn_flush(&io->conn);
            }
        }
        if (err != SL_OK) {
            io_disconnect(io);
        }
    }
    if (io->connected) {
        (void)sl__conn_flush(&io->conn); // best effort: a final COMMIT already encoded
        io_disconnect(io);
    }
    return NULL;
}

int
sl__io_start(sl__io *io)
{
    int r = pthread_create(&io->thread, NULL, io_main, io);
    if (r != 0) {
        return sl_from_errno(r);
    }
    io->thread_started = true;
    return SL_OK;
}

void
sl__io_stop(sl__io *io)
{
    if (!io->thread_started) {
        return;
    }
    atomic_store(&io->stop, true);
    sl__io_wake(io);
    pthread_join(io->thread, NULL);
    io->thread_started = false;
}

void
sl__io_fini(sl__io *io)
{
    sl__io_stop(io);
    sl__conn_close(&io->conn);
    if (io->wake_fd >= 0) {
        close(io->wake_fd);
        pthread_cond_destroy(&io->cond);
        pthread_mutex_destroy(&io->mutex);
    }
}
