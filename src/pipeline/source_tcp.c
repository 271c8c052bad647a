// The "tcp" source: listens on tcp://HOST:PORT and emits one record per line of every accepted
// connection (lane = connection number, token = bytes consumed on it). It reads a socket only
// while downstream has credit and only into a fixed buffer per connection, so a paused pipeline
// leaves data in the kernel, the socket buffers fill and TCP pushes back on the sender. TCP has no
// replay: commits are ignored (records in flight at a crash are lost; docs/pipelines.md).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/parse.h"
#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Connections served at once per instance; more wait in the listen backlog.
#define TCP_SOURCE_CONNS_MAX 64u
// Read buffer per connection: the longest line emitted whole (longer lines are split).
#define TCP_SOURCE_BUFFER_BYTES (64u * 1024u)
#define TCP_SOURCE_BACKLOG      64

typedef struct tcp_conn {
    int fd; // -1: free slot
    uint32_t lane;
    bool eof;
    uint64_t consumed; // bytes emitted (the token)
    size_t start;
    size_t end;
    uint8_t buf[TCP_SOURCE_BUFFER_BYTES];
} tcp_conn;

typedef struct tcp_source {
    int listen_fd;
    uint32_t next_lane;
    uint32_t next_conn;     // round-robin start
    uint64_t closes_to_end; // 0: run until stopped
    uint64_t closed_total;
    uint64_t accepted_total;
    tcp_conn conns[TCP_SOURCE_CONNS_MAX];
} tcp_source;

static const char *const tcp_source_options[] = {"port_file", "connections", "rcvbuf", NULL};

int
sl__pipe_tcp_address(const char *uri, char *host, size_t host_size, uint16_t *port, bool allow_zero,
                     char *err, size_t err_size)
{
    if (strncmp(uri, "tcp://", 6) != 0) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "'%s' is not tcp://HOST:PORT", uri);
    }
    char why[128];
    if (sl_parse_endpoint(uri + 6, host, host_size, port, allow_zero, why, sizeof(why)) != SL_OK) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "%s: %s", uri, why);
    }
    return SL_OK;
}

static int
tcp_source_write_port(const char *path, uint16_t port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = n > 0 && (size_t)n < sizeof(tmp) ? fopen(tmp, "w") : NULL;
    if (f == NULL) {
        return SL_EIO;
    }
    fprintf(f, "%u\n", (unsigned)port);
    bool ok = fclose(f) == 0 && rename(tmp, path) == 0;
    return ok ? SL_OK : SL_EIO;
}

static int
tcp_source_listen(tcp_source *s, const sl_pipe_endpoint *e, char *err, size_t err_size)
{
    char host[256];
    uint16_t port = 0;
    int r = sl__pipe_tcp_address(e->uri, host, sizeof(host), &port, true, err, err_size);
    if (r != SL_OK) {
        return r;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (host[0] != '\0' && inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "%s: want an IPv4 address", e->uri);
    }
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    uint64_t rcvbuf = 0;
    r = sl__pipe_ep_opt_size(e, "rcvbuf", 0, 0, 64u << 20, &rcvbuf, err, err_size);
    if (r != SL_OK) {
        return r;
    }
    if (rcvbuf > 0 && s->listen_fd >= 0) {
        // Inherited by accepted sockets: a small buffer makes TCP push back sooner.
        int v = (int)rcvbuf;
        (void)setsockopt(s->listen_fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    if (s->listen_fd < 0 ||
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s->listen_fd, TCP_SOURCE_BACKLOG) != 0) {
        return sl__pipe_ep_fail(err, err_size, SL_EIO, "%s: %s", e->uri, strerror(errno));
    }
    socklen_t sl = sizeof(sa);
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl);
    const char *port_file = sl__pipe_ep_opt(e, "port_file");
    if (port_file != NULL && tcp_source_write_port(port_file, ntohs(sa.sin_port)) != SL_OK) {
        return sl__pipe_ep_fail(err, err_size, SL_EIO, "port_file %s: cannot write", port_file);
    }
    return SL_OK;
}

static void tcp_source_destroy(void *state);

static int
tcp_source_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                  void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance_count);
    int r = sl__pipe_ep_check_known(e, tcp_source_options, err, err_size);
    if (r != SL_OK) {
        return r;
    }
    if (instance > 0) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                "%s: a tcp source runs with parallelism 1", e->uri);
    }
    tcp_source *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    for (uint32_t i = 0; i < TCP_SOURCE_CONNS_MAX; i++) {
        s->conns[i].fd = -1;
    }
    s->listen_fd = -1;
    r = sl__pipe_ep_opt_u64(e, "connections", 0, 0, UINT32_MAX, &s->closes_to_end, err, err_size);
    if (r == SL_OK) {
        r = tcp_source_listen(s, e, err, err_size);
    }
    if (r != SL_OK) {
        tcp_source_destroy(s);
        return r;
    }
    *state_out = s;
    return SL_OK;
}

static void
tcp_source_accept(tcp_source *s)
{
    for (uint32_t i = 0; i < TCP_SOURCE_CONNS_MAX; i++) {
        if (s->conns[i].fd >= 0) {
            continue;
        }
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return; // nothing pending (or a transient error: try on the next poll)
        }
        tcp_conn *c = &s->conns[i];
        c->fd = fd;
        c->lane = s->next_lane++;
        c->eof = false;
        c->consumed = 0;
        c->start = 0;
        c->end = 0;
        s->accepted_total++;
    }
}

static void
tcp_conn_close(tcp_source *s, tcp_conn *c)
{
    close(c->fd);
    c->fd = -1;
    s->closed_total++;
}

// Reads what the kernel holds for c into its buffer's free space. Never reads more than fits.
static void
tcp_conn_read(tcp_conn *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == TCP_SOURCE_BUFFER_BYTES || c->eof) {
        return;
    }
    ssize_t n = recv(c->fd, c->buf + c->end, TCP_SOURCE_BUFFER_BYTES - c->end, 0);
    if (n > 0) {
        c->end += (size_t)n;
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        c->eof = true;
    }
}

static int64_t
tcp_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Emits c's next complete line (or its tail at EOF, or a full buffer). 1, 0 or an error.
static int
tcp_conn_emit(tcp_source *s, tcp_conn *c, sl_pipe_ctx *ctx)
{
    uint8_t *p = c->buf + c->start;
    size_t avail = c->end - c->start;
    uint8_t *nl = avail > 0 ? memchr(p, '\n', avail) : NULL;
    size_t len = nl != NULL ? (size_t)(nl - p) : avail;
    size_t consumed = nl != NULL ? len + 1 : avail;
    if (nl == NULL && (avail == 0 || (!c->eof && avail < TCP_SOURCE_BUFFER_BYTES))) {
        if (c->eof && avail == 0) {
            tcp_conn_close(s, c);
        }
        return 0;
    }
    sl_pipe_record rec = {
        .value = p, .value_size = (uint32_t)len, .timestamp_ns = tcp_realtime_ns()};
    sl_pipe_origin origin = {.lane = c->lane, .token = c->consumed + consumed};
    int r = sl_pipe_source_emit(ctx, &rec, origin);
    if (r == SL_OK) {
        c->start += consumed;
        c->consumed += consumed;
    }
    return r == SL_OK ? 1 : r;
}

// Emits buffered lines round-robin over connections, up to max. Returns the count or an error.
static int
tcp_source_emit_buffered(tcp_source *s, sl_pipe_ctx *ctx, uint32_t max)
{
    uint32_t emitted = 0;
    uint32_t idle = 0;
    // Bounded: each step emits one record or counts one idle connection slot.
    for (uint32_t step = 0; emitted < max && idle < TCP_SOURCE_CONNS_MAX; step++) {
        tcp_conn *c = &s->conns[(s->next_conn + step) % TCP_SOURCE_CONNS_MAX];
        int r = c->fd >= 0 ? tcp_conn_emit(s, c, ctx) : 0;
        if (r < 0) {
            return emitted > 0 ? (int)emitted : r;
        }
        emitted += (uint32_t)r;
        idle = r == 1 ? 0 : idle + 1;
    }
    s->next_conn = (s->next_conn + 1) % TCP_SOURCE_CONNS_MAX;
    return (int)emitted;
}

// Waits until the listener or a connection with buffer room is readable, or deadline_ns, and
// reads what arrived.
static void
tcp_source_wait_read(tcp_source *s, int64_t deadline_ns)
{
    struct pollfd pfds[TCP_SOURCE_CONNS_MAX + 1];
    tcp_conn *who[TCP_SOURCE_CONNS_MAX + 1];
    nfds_t n = 0;
    pfds[n] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    who[n++] = NULL;
    for (uint32_t i = 0; i < TCP_SOURCE_CONNS_MAX; i++) {
        tcp_conn *c = &s->conns[i];
        if (c->fd >= 0 && !c->eof && c->end - c->start < TCP_SOURCE_BUFFER_BYTES) {
            pfds[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
            who[n++] = c;
        }
    }
    int64_t now = sl_now_ns();
    int timeout_ms = deadline_ns > now ? (int)SL_MIN((deadline_ns - now) / 1000000 + 1,
                                                     (int64_t)SL_PIPE_SOURCE_TICK_MS)
                                       : 0;
    if (poll(pfds, n, timeout_ms) <= 0) {
        return;
    }
    for (nfds_t i = 1; i < n; i++) {
        if (pfds[i].revents != 0) {
            tcp_conn_read(who[i]);
        }
    }
    if (pfds[0].revents & POLLIN) {
        tcp_source_accept(s);
    }
}

static int
tcp_source_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    tcp_source *s = state;
    if (max_records == 0) {
        return 0; // no credit: leave the data in the kernel, so the sender is pushed back
    }
    int emitted = tcp_source_emit_buffered(s, ctx, max_records);
    if (emitted != 0) {
        return emitted;
    }
    if (s->closes_to_end > 0 && s->closed_total >= s->closes_to_end) {
        return SL_ECLOSED;
    }
    tcp_source_wait_read(s, deadline_ns);
    emitted = tcp_source_emit_buffered(s, ctx, max_records);
    return emitted != 0 ? emitted : SL_EAGAIN;
}

static void
tcp_source_commit(void *state, uint32_t lane, uint64_t token)
{
    SL_UNUSED(state);
    SL_UNUSED(lane);
    SL_UNUSED(token);
}

static void
tcp_source_destroy(void *state)
{
    tcp_source *s = state;
    for (uint32_t i = 0; i < TCP_SOURCE_CONNS_MAX; i++) {
        if (s->conns[i].fd >= 0) {
            close(s->conns[i].fd);
        }
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    sl_free(s, sizeof(*s));
}

const sl_pipe_source_ops sl__pipe_source_tcp = {
    .scheme = "tcp",
    .create = tcp_source_create,
    .poll = tcp_source_poll,
    .commit = tcp_source_commit,
    .destroy = tcp_source_destroy,
};
