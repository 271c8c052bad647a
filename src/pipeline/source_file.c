// The "file" source: reads lines from file:PATH (or "-" for stdin) and emits one record per line
// (the newline removed). Lane 0; token = byte offset just past the line, so with offsets=PATH a
// restarted source seeks to the last committed token and replays only what was not durably
// accepted downstream. Only instance 0 reads; other instances end at once.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Read buffer: the longest line emitted whole; a longer line is split into records of this size.
#define FILE_SOURCE_BUFFER_BYTES (1u << 20)

typedef struct file_source {
    int fd;
    bool is_stdin;
    bool eof;
    bool idle_instance; // instance > 0: nothing to read
    uint8_t *buf;
    size_t start;        // first unconsumed byte in buf
    size_t end;          // bytes read into buf
    uint64_t buf_offset; // file offset of buf[0]
    sl_pipe_offsets offsets;
    bool has_offsets;
} file_source;

static const char *const file_source_options[] = {"offsets", NULL};

static int
file_source_open(file_source *s, const sl_pipe_endpoint *e, char *err, size_t err_size)
{
    const char *path = e->uri;
    if (strncmp(path, "file:", 5) == 0) {
        path += 5;
    }
    if (strcmp(path, "-") == 0) {
        s->fd = STDIN_FILENO;
        s->is_stdin = true;
        return SL_OK;
    }
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        return sl__pipe_ep_fail(err, err_size, errno == ENOENT ? SL_ENOENT : SL_EIO, "%s: %s", path,
                                strerror(errno));
    }
    uint64_t token = 0;
    if (s->has_offsets && sl__pipe_offsets_get(&s->offsets, 0, &token)) {
        if (lseek(s->fd, (off_t)token, SEEK_SET) < 0) {
            close(s->fd);
            return sl__pipe_ep_fail(err, err_size, SL_EIO, "%s: cannot seek to %llu", path,
                                    (unsigned long long)token);
        }
        s->buf_offset = token;
    }
    return SL_OK;
}

static void file_source_destroy(void *state);

static int
file_source_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                   void **state_out, char *err, size_t err_size)
{
    SL_UNUSED(instance_count);
    int r = sl__pipe_ep_check_known(e, file_source_options, err, err_size);
    if (r != SL_OK) {
        return r;
    }
    file_source *s = sl_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SL_ENOMEM;
    }
    s->fd = -1;
    s->idle_instance = instance > 0;
    const char *opath = sl__pipe_ep_opt(e, "offsets");
    r = sl__pipe_offsets_open(&s->offsets, opath, err, err_size);
    if (r != SL_OK) {
        sl_free(s, sizeof(*s));
        return r;
    }
    s->has_offsets = true;
    if (!s->idle_instance) {
        s->buf = sl_alloc(FILE_SOURCE_BUFFER_BYTES);
        r = s->buf == NULL ? SL_ENOMEM : file_source_open(s, e, err, err_size);
    }
    if (r != SL_OK) {
        file_source_destroy(s);
        return r;
    }
    *state_out = s;
    return SL_OK;
}

// Reads more into buf (moving the unconsumed tail to the front first), waiting for input until
// deadline_ns on a pipe or terminal. Returns SL_OK (something read or EOF noted), SL_EAGAIN.
static int
file_source_fill(file_source *s, int64_t deadline_ns)
{
    if (s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->buf_offset += s->start;
        s->end -= s->start;
        s->start = 0;
    }
    if (s->is_stdin && !sl__pipe_ep_wait_fd(s->fd, POLLIN, deadline_ns)) {
        return SL_EAGAIN;
    }
    ssize_t n = read(s->fd, s->buf + s->end, FILE_SOURCE_BUFFER_BYTES - s->end);
    if (n < 0) {
        return errno == EINTR || errno == EAGAIN ? SL_EAGAIN : SL_EIO;
    }
    if (n == 0) {
        s->eof = true;
    }
    s->end += (size_t)n;
    return SL_OK;
}

static int64_t
realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Emits the next line if one is complete (or the buffer is full, or the input ended). Returns 1
// (emitted), 0 (need more input) or an error.
static int
file_source_emit_line(file_source *s, sl_pipe_ctx *ctx)
{
    uint8_t *p = s->buf + s->start;
    size_t avail = s->end - s->start;
    uint8_t *nl = memchr(p, '\n', avail);
    size_t len = 0;
    size_t consumed = 0;
    if (nl != NULL) {
        len = (size_t)(nl - p);
        consumed = len + 1;
    } else if (avail > 0 && (s->eof || avail == FILE_SOURCE_BUFFER_BYTES)) {
        len = avail;
        consumed = avail;
    } else {
        return 0;
    }
    sl_pipe_record rec = {.value = p, .value_size = (uint32_t)len, .timestamp_ns = realtime_ns()};
    sl_pipe_origin origin = {.lane = 0, .token = s->buf_offset + s->start + consumed};
    int r = sl_pipe_source_emit(ctx, &rec, origin);
    if (r != SL_OK) {
        return r;
    }
    s->start += consumed;
    return 1;
}

static int
file_source_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    file_source *s = state;
    (void)sl__pipe_offsets_flush(&s->offsets, false);
    if (s->idle_instance) {
        return SL_ECLOSED;
    }
    int emitted = 0;
    // Each round emits a line or reads once; reads happen only with credit left, so a paused
    // pipeline stops reading its input (a pipe from another process then blocks its writer).
    for (uint32_t round = 0; round < 2 * max_records + 2 && (uint32_t)emitted < max_records;
         round++) {
        int r = file_source_emit_line(s, ctx);
        if (r < 0) {
            return emitted > 0 ? emitted : r;
        }
        if (r == 1) {
            emitted++;
            continue;
        }
        if (s->eof) {
            return emitted > 0 ? emitted : SL_ECLOSED;
        }
        if (emitted > 0) {
            break; // hand over what we have before waiting for more input
        }
        r = file_source_fill(s, deadline_ns);
        if (r != SL_OK) {
            return r;
        }
    }
    return emitted > 0 || max_records == 0 ? emitted : SL_EAGAIN;
}

static void
file_source_commit(void *state, uint32_t lane, uint64_t token)
{
    file_source *s = state;
    sl__pipe_offsets_commit(&s->offsets, lane, token);
}

static void
file_source_destroy(void *state)
{
    file_source *s = state;
    if (s->has_offsets) {
        sl__pipe_offsets_close(&s->offsets);
    }
    if (s->fd >= 0 && !s->is_stdin) {
        close(s->fd);
    }
    if (s->buf != NULL) {
        sl_free(s->buf, FILE_SOURCE_BUFFER_BYTES);
    }
    sl_free(s, sizeof(*s));
}

const sl_pipe_source_ops sl__pipe_source_file = {
    .scheme = "file",
    .create = file_source_create,
    .poll = file_source_poll,
    .commit = file_source_commit,
    .destroy = file_source_destroy,
};
