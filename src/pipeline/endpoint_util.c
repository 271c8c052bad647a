// Option parsing, fd helpers and the committed-offset store shared by the built-in endpoints
// (endpoint_util.h). The offset file is replaced atomically (write a temporary, fsync, rename),
// so a crash leaves either the old or the new commits, never a torn file.
#include "pipeline/endpoint_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

// Largest offset file read back: lanes times the longest line, with room to spare.
#define OFFSETS_FILE_BYTES_MAX (SL_PIPE_OFFSETS_LANES_MAX * 48u)
// A slice of a write()/poll() wait, so EINTR storms cannot spin forever.
#define WRITE_ATTEMPTS_MAX 100000

int
sl__pipe_ep_fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *
sl__pipe_ep_opt(const sl_pipe_endpoint *e, const char *key)
{
    const char *found = NULL;
    for (size_t i = 0; e->options != NULL && i < e->option_count; i++) {
        if (strcmp(e->options[i].key, key) == 0) {
            found = e->options[i].value;
        }
    }
    return found;
}

int
sl__pipe_ep_check_known(const sl_pipe_endpoint *e, const char *const *known, char *err,
                        size_t err_size)
{
    for (size_t i = 0; e->options != NULL && i < e->option_count; i++) {
        bool ok = false;
        for (size_t k = 0; known[k] != NULL && !ok; k++) {
            ok = strcmp(e->options[i].key, known[k]) == 0;
        }
        if (!ok) {
            return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "unknown option '%s' for %s",
                                    e->options[i].key, e->uri);
        }
    }
    return SL_OK;
}

int
sl__pipe_ep_opt_u64(const sl_pipe_endpoint *e, const char *key, uint64_t def, uint64_t min,
                    uint64_t max, uint64_t *out, char *err, size_t err_size)
{
    const char *v = sl__pipe_ep_opt(e, key);
    if (v == NULL) {
        *out = def;
        return SL_OK;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n < min || n > max) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                "option %s wants an integer in %" PRIu64 "..%" PRIu64 ", got '%s'",
                                key, min, max, v);
    }
    *out = n;
    return SL_OK;
}

int
sl__pipe_ep_opt_size(const sl_pipe_endpoint *e, const char *key, uint64_t def, uint64_t min,
                     uint64_t max, uint64_t *out, char *err, size_t err_size)
{
    const char *v = sl__pipe_ep_opt(e, key);
    if (v == NULL) {
        *out = def;
        return SL_OK;
    }
    char why[128];
    uint64_t n = 0;
    if (sl_parse_size(v, &n, why, sizeof(why)) != SL_OK) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "option %s: %s", key, why);
    }
    if (n < min || n > max) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                "option %s must be %" PRIu64 "..%" PRIu64 " bytes, got '%s'", key,
                                min, max, v);
    }
    *out = n;
    return SL_OK;
}

int
sl__pipe_ep_opt_ms(const sl_pipe_endpoint *e, const char *key, int64_t def, int64_t *out, char *err,
                   size_t err_size)
{
    const char *v = sl__pipe_ep_opt(e, key);
    if (v == NULL) {
        *out = def;
        return SL_OK;
    }
    char why[128];
    if (sl_parse_duration_ms(v, out, why, sizeof(why)) != SL_OK) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "option %s: %s", key, why);
    }
    return SL_OK;
}

int
sl__pipe_ep_opt_bool(const sl_pipe_endpoint *e, const char *key, bool def, bool *out, char *err,
                     size_t err_size)
{
    static const char *const names[] = {"false", "true", "off", "on", "no", "yes", "0", "1", NULL};
    int idx = 0;
    int r = sl__pipe_ep_opt_enum(e, key, names, def ? 1 : 0, &idx, err, err_size);
    *out = (idx % 2) == 1;
    return r;
}

int
sl__pipe_ep_opt_enum(const sl_pipe_endpoint *e, const char *key, const char *const *names, int def,
                     int *out, char *err, size_t err_size)
{
    const char *v = sl__pipe_ep_opt(e, key);
    *out = def;
    if (v == NULL) {
        return SL_OK;
    }
    for (int i = 0; names[i] != NULL; i++) {
        if (strcasecmp(v, names[i]) == 0) {
            *out = i;
            return SL_OK;
        }
    }
    return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "option %s: unknown value '%s'", key, v);
}

int
sl__pipe_ep_write_all(int fd, const void *data, size_t size)
{
    const uint8_t *p = data;
    size_t off = 0;
    for (int i = 0; i < WRITE_ATTEMPTS_MAX && off < size; i++) {
        ssize_t n = write(fd, p + off, size - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (void)sl__pipe_ep_wait_fd(fd, POLLOUT, sl_deadline_after_ms(100));
            continue;
        }
        if (n <= 0) {
            return errno == ENOSPC ? SL_ENOSPC : SL_EIO;
        }
        off += (size_t)n;
    }
    return off == size ? SL_OK : SL_EIO;
}

bool
sl__pipe_ep_wait_fd(int fd, short events, int64_t deadline_ns)
{
    int64_t now = sl_now_ns();
    int timeout_ms = 0;
    if (deadline_ns > now) {
        int64_t ms = (deadline_ns - now + 999999) / 1000000;
        timeout_ms = (int)SL_MIN(ms, (int64_t)SL_PIPE_SOURCE_TICK_MS);
    }
    struct pollfd pfd = {.fd = fd, .events = events};
    return poll(&pfd, 1, timeout_ms) > 0;
}

// ---- committed offsets ---------------------------------------------------------------------

static int
offsets_parse(sl_pipe_offsets *o, char *text, char *err, size_t err_size)
{
    char *save = NULL;
    int line = 0;
    for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        line++;
        unsigned long lane = 0;
        unsigned long long token = 0;
        char extra = 0;
        if (sscanf(l, "%lu %llu %c", &lane, &token, &extra) != 2 || lane > UINT32_MAX ||
            o->lane_count >= SL_PIPE_OFFSETS_LANES_MAX) {
            return sl__pipe_ep_fail(err, err_size, SL_ECORRUPT, "%s:%d: bad offset line", o->path,
                                    line);
        }
        o->lanes[o->lane_count] = (uint32_t)lane;
        o->tokens[o->lane_count++] = token;
    }
    return SL_OK;
}

static int
offsets_load(sl_pipe_offsets *o, char *err, size_t err_size)
{
    int fd = open(o->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT
                   ? SL_OK
                   : sl__pipe_ep_fail(err, err_size, SL_EIO, "%s: %s", o->path, strerror(errno));
    }
    char *text = sl_alloc(OFFSETS_FILE_BYTES_MAX + 1);
    if (text == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    size_t len = 0;
    for (int i = 0; i < WRITE_ATTEMPTS_MAX && len < OFFSETS_FILE_BYTES_MAX; i++) {
        ssize_t n = read(fd, text + len, OFFSETS_FILE_BYTES_MAX - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    text[len] = '\0';
    int r = offsets_parse(o, text, err, err_size);
    sl_free(text, OFFSETS_FILE_BYTES_MAX + 1);
    return r;
}

int
sl__pipe_offsets_open(sl_pipe_offsets *o, const char *path, char *err, size_t err_size)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->mutex, NULL);
    if (path == NULL) {
        return SL_OK;
    }
    o->path_size = strlen(path) + 1;
    o->path = sl_alloc(o->path_size);
    if (o->path == NULL) {
        pthread_mutex_destroy(&o->mutex);
        return SL_ENOMEM;
    }
    memcpy(o->path, path, o->path_size);
    int r = offsets_load(o, err, err_size);
    if (r != SL_OK) {
        sl_free(o->path, o->path_size);
        pthread_mutex_destroy(&o->mutex);
    }
    return r;
}

void
sl__pipe_offsets_close(sl_pipe_offsets *o)
{
    (void)sl__pipe_offsets_flush(o, true);
    if (o->path != NULL) {
        sl_free(o->path, o->path_size);
    }
    pthread_mutex_destroy(&o->mutex);
}

static int
offsets_find(const sl_pipe_offsets *o, uint32_t lane)
{
    for (uint32_t i = 0; i < o->lane_count; i++) {
        if (o->lanes[i] == lane) {
            return (int)i;
        }
    }
    return -1;
}

bool
sl__pipe_offsets_get(sl_pipe_offsets *o, uint32_t lane, uint64_t *token_out)
{
    pthread_mutex_lock(&o->mutex);
    int i = offsets_find(o, lane);
    if (i >= 0) {
        *token_out = o->tokens[i];
    }
    pthread_mutex_unlock(&o->mutex);
    return i >= 0;
}

// Writes the store to a temporary file, fsyncs it and renames it over the old one. Called with
// the mutex held (commits are rare enough: at most one save per interval).
static int
offsets_save_locked(sl_pipe_offsets *o)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", o->path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return SL_EINVAL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return SL_EIO;
    }
    char line[48];
    int r = SL_OK;
    for (uint32_t i = 0; i < o->lane_count && r == SL_OK; i++) {
        int len =
            snprintf(line, sizeof(line), "%" PRIu32 " %" PRIu64 "\n", o->lanes[i], o->tokens[i]);
        r = sl__pipe_ep_write_all(fd, line, (size_t)len);
    }
    if (r == SL_OK && fsync(fd) != 0) {
        r = SL_EIO;
    }
    close(fd);
    if (r == SL_OK && rename(tmp, o->path) != 0) {
        r = SL_EIO;
    }
    return r;
}

int
sl__pipe_offsets_flush(sl_pipe_offsets *o, bool force)
{
    pthread_mutex_lock(&o->mutex);
    int r = SL_OK;
    int64_t now = sl_now_ns();
    bool due = force || now - o->saved_ns >= SL_PIPE_OFFSETS_SAVE_INTERVAL_MS * 1000000LL;
    if (o->path != NULL && o->dirty && due) {
        r = offsets_save_locked(o);
        o->dirty = r != SL_OK;
        o->saved_ns = now;
        o->saves_total++;
        o->last_error = r;
    }
    pthread_mutex_unlock(&o->mutex);
    return r;
}

void
sl__pipe_offsets_commit(sl_pipe_offsets *o, uint32_t lane, uint64_t token)
{
    pthread_mutex_lock(&o->mutex);
    int i = offsets_find(o, lane);
    if (i < 0 && o->lane_count < SL_PIPE_OFFSETS_LANES_MAX) {
        i = (int)o->lane_count++;
        o->lanes[i] = lane;
        o->tokens[i] = token;
        o->dirty = true;
    } else if (i >= 0 && token > o->tokens[i]) {
        o->tokens[i] = token;
        o->dirty = true;
    }
    pthread_mutex_unlock(&o->mutex);
    (void)sl__pipe_offsets_flush(o, false);
}

// ---- sluice:// URIs --------------------------------------------------------------------------

static int
sluice_uri_params(char *q, sl_pipe_sluice_uri *out, char *err, size_t err_size)
{
    char *save = NULL;
    for (char *kv = strtok_r(q, "&", &save); kv != NULL; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv || out->param_count >= SL_PIPE_URI_PARAMS_MAX) {
            return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                    "bad URI parameter '%s' (want key=value, at most %u)", kv,
                                    SL_PIPE_URI_PARAMS_MAX);
        }
        *eq = '\0';
        out->params[out->param_count++] = (sl_pipe_option){.key = kv, .value = eq + 1};
    }
    return SL_OK;
}

int
sl__pipe_sluice_uri_parse(const char *uri, sl_pipe_sluice_uri *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    const char *prefix = "sluice://";
    if (strncmp(uri, prefix, strlen(prefix)) != 0 ||
        strlen(uri) - strlen(prefix) >= sizeof(out->text)) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                "'%s' is not sluice://HOST:PORT/TOPIC[?key=value&...]", uri);
    }
    sl__strlcpy(out->text, uri + strlen(prefix), sizeof(out->text));
    char *slash = strchr(out->text, '/');
    if (slash == NULL || slash[1] == '\0' || slash[1] == '?') {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "'%s' names no topic", uri);
    }
    *slash = '\0';
    sl__strlcpy(out->broker, out->text, sizeof(out->broker));
    char *topic = slash + 1;
    char *q = strchr(topic, '?');
    if (q != NULL) {
        *q++ = '\0';
    }
    if (strlen(topic) >= sizeof(out->topic)) {
        return sl__pipe_ep_fail(err, err_size, SL_EINVAL, "'%s': topic name too long", uri);
    }
    sl__strlcpy(out->topic, topic, sizeof(out->topic));
    return q != NULL ? sluice_uri_params(q, out, err, err_size) : SL_OK;
}

void
sl__pipe_sluice_merge(const sl_pipe_endpoint *e, const sl_pipe_sluice_uri *u,
                      sl_pipe_option *merged, sl_pipe_endpoint *out)
{
    size_t n = 0;
    for (size_t i = 0; i < u->param_count; i++) {
        merged[n++] = u->params[i];
    }
    for (size_t i = 0; e->options != NULL && i < e->option_count; i++) {
        merged[n++] = e->options[i];
    }
    *out = *e;
    out->options = merged;
    out->option_count = n;
}
