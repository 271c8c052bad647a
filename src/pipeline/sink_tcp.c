// The "tcp" sink: a client that connects to tcp://HOST:PORT and writes each record's value and a
// newline. An I/O thread sends from a bounded buffer; a record is done once all of its bytes were
// written to the socket. How many records may wait is set by an adaptive limiter (AIMD by default)
// fed with each record's enqueue-to-written latency, so a slow receiver shrinks the window instead
// of growing a queue. A lost connection is re-dialled with exponential backoff, and records not
// yet fully written are sent again from their first byte (the receiver may see a torn line).
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>
#include <sluice/ratelimit.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Records written but not yet on the socket, at most (the limiter's ceiling).
#define TCP_SINK_INFLIGHT_MAX  4096u
#define TCP_SINK_LIMIT_INITIAL 64u
#define TCP_SINK_LIMIT_MIN     4u
// Default send buffer (option buffer): the largest record it takes, and the bytes waiting.
#define TCP_SINK_BUFFER_DEFAULT (1u << 20)
#define TCP_SINK_BUFFER_MAX     (64u << 20)
// Reconnect backoff starts here and doubles up to backoff_max (option, default 2 s).
#define TCP_SINK_BACKOFF_MIN_MS     50
#define TCP_SINK_CONNECT_TIMEOUT_MS 1000
// Done bytes are dropped from the buffer front when this few bytes remain to move.
#define TCP_SINK_COMPACT_BYTES 4096u
// The I/O thread wakes at least this often to notice stop.
#define TCP_SINK_TICK_MS 100

typedef struct tcp_pending {
    sl_pipe_done_ref *ref;
    uint64_t end_abs; // absolute stream position just past the record's newline
    int64_t queued_ns;
} tcp_pending;

typedef struct tcp_sink {
    struct sockaddr_in addr;
    int fd;
    int wake_fd; // eventfd: data appended or stop
    pthread_t io;
    bool io_started;
    pthread_mutex_t mutex;
    pthread_cond_t room;
    bool stop;
    uint8_t *data;
    size_t cap;
    size_t len;        // bytes in data
    size_t sent;       // bytes of data already on the current connection
    uint64_t base_abs; // absolute stream position of data[0]
    uint64_t done_abs; // position just past the last record done (>= base_abs)
    tcp_pending pending[TCP_SINK_INFLIGHT_MAX];
    uint32_t head;
    uint32_t count;
    sl_pipe_done_ref *completed[TCP_SINK_INFLIGHT_MAX]; // I/O thread scratch
    sl_adaptive_limiter limiter;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    uint64_t connects_total;
    uint64_t disconnects_total;
} tcp_sink;

static const char *const tcp_sink_options[] = {"buffer", "backoff_max", "limiter", NULL};

static int
tcp_sink_config(tcp_sink *s, const sl_pipe_endpoint *e, char *err, size_t err_size)
{
    static const char *const limiters[] = {"aimd", "gradient", NULL};
    char host[256];
    uint16_t port = 0;
    int lim = 0;
    uint64_t cap = 0;
    int r = sl__pipe_ep_check_known(e, tcp_sink_options, err, err_size);
    if (r == SL_OK) {
        r = sl__pipe_tcp_address(e->uri, host, sizeof(host), &port, false, err, err_size);
    }
    if (r == SL_OK) {
        s->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
        if (inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &s->addr.sin_addr) != 1) {
            r = sl__pipe_ep_fail(err, err_size, SL_EINVAL, "%s: want an IPv4 address", e->uri);
        }
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_size(e, "buffer", TCP_SINK_BUFFER_DEFAULT, 4096, TCP_SINK_BUFFER_MAX,
                                 &cap, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_ms(e, "backoff_max", 2000, &s->backoff_max_ms, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_ep_opt_enum(e, "limiter", limiters, 0, &lim, err, err_size);
    }
    if (r != SL_OK) {
        return r;
    }
    s->cap = (size_t)cap;
    sl_adaptive_config ac;
    sl_adaptive_config_default(&ac, lim == 0 ? SL_ADAPTIVE_AIMD : SL_ADAPTIVE_GRADIENT);
    ac.limit_min = TCP_SINK_LIMIT_MIN;
    ac.limit_max = TCP_SINK_INFLIGHT_MAX;
    ac.limit_initial = TCP_SINK_LIMIT_INITIAL;
    ac.latency_tolerance = 0.5;
    return sl_adaptive_init(&s->limiter, &ac);
}

static void
tcp_sink_disconnect(tcp_sink *s)
{
    if (s->fd < 0) {
        return;
    }
    close(s->fd);
    s->fd = -1;
    s->disconnects_total++;
    pthread_mutex_lock(&s->mutex);
    s->sent = (size_t)(s->done_abs - s->base_abs); // resend records not done from their start
    pthread_mutex_unlock(&s->mutex);
}

// Dials the receiver, waiting up to TCP_SINK_CONNECT_TIMEOUT_MS. SL_OK or SL_ECONNREFUSED.
static int
tcp_sink_connect(tcp_sink *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return SL_ECONNREFUSED;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int r = connect(fd, (struct sockaddr *)&s->addr, sizeof(s->addr));
    if (r != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = ETIMEDOUT;
        socklen_t len = sizeof(soerr);
        if (poll(&p, 1, TCP_SINK_CONNECT_TIMEOUT_MS) == 1) {
            (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        }
        r = soerr == 0 ? 0 : -1;
    }
    if (r != 0) {
        close(fd);
        return SL_ECONNREFUSED;
    }
    s->fd = fd;
    s->connects_total++;
    return SL_OK;
}

// Marks every record whose bytes are all on the socket as done (outside the mutex), samples the
// limiter and drops done bytes from the buffer (moving the rest only when that frees enough, so
// the copy stays amortized).
static void
tcp_sink_complete(tcp_sink *s, size_t sent_now)
{
    uint32_t n = 0;
    int64_t now = sl_now_ns();
    pthread_mutex_lock(&s->mutex);
    s->sent += sent_now;
    uint64_t sent_abs = s->base_abs + s->sent;
    uint32_t in_flight = s->count;
    while (s->count > 0 && s->pending[s->head].end_abs <= sent_abs) {
        tcp_pending *p = &s->pending[s->head];
        sl_adaptive_on_sample(&s->limiter, now - p->queued_ns, in_flight, false);
        s->completed[n++] = p->ref;
        s->done_abs = p->end_abs;
        s->head = (s->head + 1) % TCP_SINK_INFLIGHT_MAX;
        s->count--;
    }
    size_t drop = (size_t)(s->done_abs - s->base_abs);
    if (drop > 0 && (drop >= s->cap / 4 || s->len - drop <= TCP_SINK_COMPACT_BYTES)) {
        memmove(s->data, s->data + drop, s->len - drop);
        s->len -= drop;
        s->sent -= drop;
        s->base_abs += drop;
    }
    if (n > 0) {
        pthread_cond_broadcast(&s->room);
    }
    pthread_mutex_unlock(&s->mutex);
    for (uint32_t i = 0; i < n; i++) {
        sl_pipe_sink_done(s->completed[i], SL_OK);
    }
}

// Waits on the wake descriptor (and fd for events, if >= 0) up to timeout_ms; drains the wake.
static short
tcp_sink_wait(tcp_sink *s, int fd, short events, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = fd, .events = events}};
    short revents = 0;
    if (poll(p, fd >= 0 ? 2 : 1, timeout_ms) > 0) {
        if (p[0].revents & POLLIN) {
            uint64_t v;
            (void)!read(s->wake_fd, &v, sizeof(v));
        }
        revents = fd >= 0 ? p[1].revents : 0;
    }
    return revents;
}

// One step with a connection: sends what is buffered, or waits for data or writability.
static void
tcp_sink_step(tcp_sink *s)
{
    pthread_mutex_lock(&s->mutex);
    size_t off = s->sent;
    size_t have = s->len - s->sent;
    pthread_mutex_unlock(&s->mutex);
    if (have == 0) {
        short ev = tcp_sink_wait(s, s->fd, POLLIN, TCP_SINK_TICK_MS);
        if (ev & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t junk[256];
            ssize_t n = recv(s->fd, junk, sizeof(junk), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                tcp_sink_disconnect(s); // the receiver closed; what it sends us is ignored
            }
        }
        return;
    }
    // Bytes [off, off + have) are stable: write() only appends past len, and only this thread
    // moves data.
    ssize_t n = send(s->fd, s->data + off, have, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
        tcp_sink_complete(s, (size_t)n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        (void)tcp_sink_wait(s, s->fd, POLLOUT, TCP_SINK_TICK_MS);
    } else {
        tcp_sink_disconnect(s);
    }
}

static void *
tcp_sink_io(void *arg)
{
    tcp_sink *s = arg;
    int64_t next_dial_ns = 0;
    for (;;) { // the I/O thread's loop: until stop
        pthread_mutex_lock(&s->mutex);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mutex);
        if (stop) {
            break;
        }
        if (s->fd >= 0) {
            tcp_sink_step(s);
            continue;
        }
        int64_t now = sl_now_ns();
        if (now < next_dial_ns) {
            int ms = (int)SL_MIN((next_dial_ns - now) / 1000000 + 1, TCP_SINK_TICK_MS);
            (void)tcp_sink_wait(s, -1, 0, ms);
            continue;
        }
        if (tcp_sink_connect(s) == SL_OK) {
            s->backoff_ms = TCP_SINK_BACKOFF_MIN_MS;
            pthread_mutex_lock(&s->mutex);
            s->sent = (size_t)(s->done_abs - s->base_abs);
            pthread_mutex_unlock(&s->mutex);
        } else {
            next_dial_ns = sl_now_ns() + s->backoff_ms * 1000000LL;
            s->backoff_ms = SL_MIN(s->backoff_ms * 2, SL_MAX(s->backoff_max_ms, 1));
        }
    }
    return NULL;
}

static void tcp_sink_destroy(void *state);

static int
tcp_sink_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance);
    SL_UNUSED(instance_count);
    tcp_sink *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    s->fd = -1;
    s->backoff_ms = TCP_SINK_BACKOFF_MIN_MS;
    pthread_mutex_init(&s->mutex, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->room, &ca);
    pthread_condattr_destroy(&ca);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int r = s->wake_fd < 0 ? SL_EIO : tcp_sink_config(s, e, err, err_size);
    if (r == SL_OK) {
        s->data = sl_alloc(s->cap);
        r = s->data == NULL ? SL_ENOMEM : SL_OK;
    }
    if (r == SL_OK && pthread_create(&s->io, NULL, tcp_sink_io, s) != 0) {
        r = SL_ENOMEM;
    }
    s->io_started = r == SL_OK;
    if (r != SL_OK) {
        tcp_sink_destroy(s);
        return r;
    }
    *state_out = s;
    return SL_OK;
}

static bool
tcp_sink_has_room(tcp_sink *s, size_t len)
{
    uint32_t limit = SL_MIN(sl_adaptive_limit(&s->limiter), TCP_SINK_INFLIGHT_MAX);
    return s->count < limit && s->len + len <= s->cap;
}

static int
tcp_sink_write(void *state, const sl_pipe_record *rec, sl_pipe_done_ref *done)
{
    tcp_sink *s = state;
    size_t len = (size_t)rec->value_size + 1;
    if (len > s->cap) {
        return SL_ETOOBIG;
    }
    pthread_mutex_lock(&s->mutex);
    if (!tcp_sink_has_room(s, len)) {
        pthread_mutex_unlock(&s->mutex);
        return SL_EAGAIN;
    }
    if (rec->value_size > 0) {
        memcpy(s->data + s->len, rec->value, rec->value_size);
    }
    s->data[s->len + rec->value_size] = '\n';
    s->len += len;
    uint32_t tail = (s->head + s->count) % TCP_SINK_INFLIGHT_MAX;
    s->pending[tail] =
        (tcp_pending){.ref = done, .end_abs = s->base_abs + s->len, .queued_ns = sl_now_ns()};
    s->count++;
    pthread_mutex_unlock(&s->mutex);
    uint64_t one = 1;
    (void)!write(s->wake_fd, &one, sizeof(one));
    return SL_OK;
}

static void
tcp_sink_timespec(struct timespec *ts, int64_t deadline_ns)
{
    ts->tv_sec = deadline_ns / 1000000000LL;
    ts->tv_nsec = deadline_ns % 1000000000LL;
}

static void
tcp_sink_poll(void *state, int64_t deadline_ns)
{
    tcp_sink *s = state;
    struct timespec ts;
    tcp_sink_timespec(&ts, deadline_ns);
    pthread_mutex_lock(&s->mutex);
    while (!tcp_sink_has_room(s, 1) && sl_now_ns() < deadline_ns) { // bounded by deadline_ns
        if (pthread_cond_timedwait(&s->room, &s->mutex, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s->mutex);
}

static int
tcp_sink_flush(void *state, int64_t deadline_ns)
{
    tcp_sink *s = state;
    struct timespec ts;
    tcp_sink_timespec(&ts, deadline_ns);
    pthread_mutex_lock(&s->mutex);
    while (s->count > 0 && sl_now_ns() < deadline_ns) { // bounded by deadline_ns
        if (pthread_cond_timedwait(&s->room, &s->mutex, &ts) == ETIMEDOUT) {
            break;
        }
    }
    int r = s->count > 0 ? SL_ETIMEDOUT : SL_OK;
    pthread_mutex_unlock(&s->mutex);
    return r;
}

static void
tcp_sink_destroy(void *state)
{
    tcp_sink *s = state;
    if (s->io_started) {
        pthread_mutex_lock(&s->mutex);
        s->stop = true;
        pthread_mutex_unlock(&s->mutex);
        uint64_t one = 1;
        (void)!write(s->wake_fd, &one, sizeof(one));
        pthread_join(s->io, NULL);
    }
    // Records never written are not done: tell the runtime (their source does not commit them).
    for (uint32_t i = 0; i < s->count; i++) {
        sl_pipe_sink_done(s->pending[(s->head + i) % TCP_SINK_INFLIGHT_MAX].ref, SL_ECLOSED);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
    }
    if (s->data != NULL) {
        sl_free(s->data, s->cap);
    }
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->mutex);
    sl_free(s, sizeof(*s));
}

const sl_pipe_sink_ops sl__pipe_sink_tcp = {
    .scheme = "tcp",
    .create = tcp_sink_create,
    .write = tcp_sink_write,
    .poll = tcp_sink_poll,
    .flush = tcp_sink_flush,
    .destroy = tcp_sink_destroy,
};
