// Helpers the built-in endpoints share (file, tcp, sluice topic): option lookup and parsing with
// messages that name the option, URI splitting, and a small committed-offset store (a text file
// of "lane token" lines, replaced atomically) so a restarted source resumes after what its sinks
// durably accepted. Internal to libsluice.
#ifndef SLUICE_PIPELINE_ENDPOINT_UTIL_H
#define SLUICE_PIPELINE_ENDPOINT_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/pipeline.h>

// The built-in endpoints (registry.c lists them by scheme).
extern const sl_pipe_source_ops sl__pipe_source_file;
extern const sl_pipe_sink_ops sl__pipe_sink_file;
extern const sl_pipe_source_ops sl__pipe_source_tcp;
extern const sl_pipe_sink_ops sl__pipe_sink_tcp;
extern const sl_pipe_source_ops sl__pipe_source_topic;
extern const sl_pipe_sink_ops sl__pipe_sink_topic;

// Fills err (if not NULL) with a printf message and returns code.
int sl__pipe_ep_fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// The value of option key, or NULL when the endpoint does not set it (the last one wins).
const char *sl__pipe_ep_opt(const sl_pipe_endpoint *e, const char *key);

// SL_EINVAL naming the first option not in known (NULL-terminated).
int sl__pipe_ep_check_known(const sl_pipe_endpoint *e, const char *const *known, char *err,
                            size_t err_size);

// Parses option key as an integer in [min, max] (absent: def), a size ("4MiB"), a duration
// ("250ms", into ms) or a boolean (true/false/on/off/yes/no/1/0). SL_OK or SL_EINVAL.
int sl__pipe_ep_opt_u64(const sl_pipe_endpoint *e, const char *key, uint64_t def, uint64_t min,
                        uint64_t max, uint64_t *out, char *err, size_t err_size);
int sl__pipe_ep_opt_size(const sl_pipe_endpoint *e, const char *key, uint64_t def, uint64_t min,
                         uint64_t max, uint64_t *out, char *err, size_t err_size);
int sl__pipe_ep_opt_ms(const sl_pipe_endpoint *e, const char *key, int64_t def, int64_t *out,
                       char *err, size_t err_size);
int sl__pipe_ep_opt_bool(const sl_pipe_endpoint *e, const char *key, bool def, bool *out, char *err,
                         size_t err_size);

// Index of option key's value in names (NULL-terminated), def when absent. SL_EINVAL otherwise.
int sl__pipe_ep_opt_enum(const sl_pipe_endpoint *e, const char *key, const char *const *names,
                         int def, int *out, char *err, size_t err_size);

// Splits "tcp://HOST:PORT" into host and port (port 0 only with allow_zero). SL_OK, SL_EINVAL.
int sl__pipe_tcp_address(const char *uri, char *host, size_t host_size, uint16_t *port,
                         bool allow_zero, char *err, size_t err_size);

// A parsed sluice://HOST:PORT/TOPIC?key=value&... URI. Query parameters act as options; an
// option of the endpoint with the same key wins.
#define SL_PIPE_URI_PARAMS_MAX 16u
typedef struct sl_pipe_sluice_uri {
    char broker[272]; // "HOST:PORT" ("" when the URI has none: the client's default)
    char topic[256];
    char text[512]; // storage for the parameter strings
    sl_pipe_option params[SL_PIPE_URI_PARAMS_MAX];
    size_t param_count;
} sl_pipe_sluice_uri;

int sl__pipe_sluice_uri_parse(const char *uri, sl_pipe_sluice_uri *out, char *err, size_t err_size);

// Builds in merged (capacity SL_PIPE_URI_PARAMS_MAX + e->option_count entries, caller's) the
// endpoint's options after the URI's parameters, so lookups see the option first (last wins).
void sl__pipe_sluice_merge(const sl_pipe_endpoint *e, const sl_pipe_sluice_uri *u,
                           sl_pipe_option *merged, sl_pipe_endpoint *out);

// Writes all of data to fd (retrying short writes and EINTR). SL_OK or SL_EIO / SL_ENOSPC.
int sl__pipe_ep_write_all(int fd, const void *data, size_t size);

// Waits until fd is readable (events POLLIN) or writable (POLLOUT) or deadline_ns. Returns true
// when it is ready.
bool sl__pipe_ep_wait_fd(int fd, short events, int64_t deadline_ns);

// ---- committed offsets ---------------------------------------------------------------------

// Lanes an offset store remembers; a topic with more partitions than this cannot use one.
#define SL_PIPE_OFFSETS_LANES_MAX 1024u
// Commits are written to disk at most this often (and on close): a crash replays at most this
// much more than what was committed (at-least-once).
#define SL_PIPE_OFFSETS_SAVE_INTERVAL_MS 200

typedef struct sl_pipe_offsets {
    pthread_mutex_t mutex;
    char *path; // NULL: not persisted (commits are only remembered)
    size_t path_size;
    uint32_t lane_count;
    uint32_t lanes[SL_PIPE_OFFSETS_LANES_MAX];
    uint64_t tokens[SL_PIPE_OFFSETS_LANES_MAX];
    bool dirty;
    int64_t saved_ns;
    uint64_t saves_total;
    int last_error;
} sl_pipe_offsets;

// Opens the store at path (NULL: in memory only) and loads it if the file exists. SL_OK,
// SL_ECORRUPT (err names the line), SL_EIO, SL_ENOMEM.
int sl__pipe_offsets_open(sl_pipe_offsets *o, const char *path, char *err, size_t err_size);

// Saves what is dirty (best effort) and frees.
void sl__pipe_offsets_close(sl_pipe_offsets *o);

// The committed token of lane: true and *token_out, or false when the lane has none.
bool sl__pipe_offsets_get(sl_pipe_offsets *o, uint32_t lane, uint64_t *token_out);

// Records a commit (tokens only move forward) and saves if the interval passed. Thread-safe.
void sl__pipe_offsets_commit(sl_pipe_offsets *o, uint32_t lane, uint64_t token);

// Saves if dirty and the interval passed (force: now). Returns SL_OK or the save error.
int sl__pipe_offsets_flush(sl_pipe_offsets *o, bool force);

#endif
