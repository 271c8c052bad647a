// Pipeline files for `sluice pipe`: an INI-like text format (sections [pipeline], [source NAME],
// [operator NAME], [sink NAME], [edges]; key = value lines; "a -> b -> c : route" edges), parsed
// into a plain description that cmd_pipe.c turns into an sl_pipeline. Pure: no I/O but
// sl_pipe_config_load's read, no runtime calls, so it is fuzzed (fuzz/fuzz_pipe_config.c).
// The format is documented in docs/pipelines.md, "Pipeline files and `sluice pipe`".
#ifndef SLUICE_CLI_PIPE_CONFIG_H
#define SLUICE_CLI_PIPE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/pipeline.h>

// Largest pipeline file read (a hand-written file is a few KiB).
#define SL_PIPE_CONFIG_BYTES_MAX (1u << 20)
// Stages, options per stage and edges a file may declare.
#define SL_PIPE_CONFIG_STAGES_MAX  64u
#define SL_PIPE_CONFIG_OPTIONS_MAX 32u
#define SL_PIPE_CONFIG_EDGES_MAX   256u
// Longest stage name (letters, digits, '_', '-', '.').
#define SL_PIPE_CONFIG_NAME_MAX 64u

typedef enum sl_pipe_config_kind {
    SL_PIPE_CONFIG_SOURCE = 0,
    SL_PIPE_CONFIG_OPERATOR = 1,
    SL_PIPE_CONFIG_SINK = 2,
} sl_pipe_config_kind;

// One stage. Strings point into the config's own copy of the text. Numbers are 0 when unset
// (the runtime's defaults apply).
typedef struct sl_pipe_config_stage {
    sl_pipe_config_kind kind;
    const char *name;
    const char *uri;  // sources and sinks (required)
    const char *type; // operators (required): json_filter, json_project, window_count...
    int line;         // of the section header
    uint32_t parallelism;
    uint32_t parallelism_min;
    uint32_t parallelism_max;
    uint32_t queue_records;
    uint64_t queue_bytes;
    sl_pipe_option options[SL_PIPE_CONFIG_OPTIONS_MAX]; // every other key: endpoint options or
    int option_lines[SL_PIPE_CONFIG_OPTIONS_MAX];       // operator parameters, in file order
    size_t option_count;
} sl_pipe_config_stage;

typedef struct sl_pipe_config_edge {
    uint32_t from; // stage indexes
    uint32_t to;
    sl_pipe_route route;
    bool route_set; // false: cmd_pipe picks (key_hash into a window, else round_robin)
    int line;
} sl_pipe_config_edge;

typedef struct sl_pipe_config {
    const char *name; // [pipeline] name, or NULL
    uint64_t memory_budget_bytes;
    bool autoscale;
    int64_t autoscale_interval_ms; // 0: default
    int64_t autoscale_cooldown_ms;
    double autoscale_target_utilization; // 0: default
    double autoscale_tolerance;
    sl_pipe_config_stage stages[SL_PIPE_CONFIG_STAGES_MAX];
    uint32_t stage_count;
    sl_pipe_config_edge edges[SL_PIPE_CONFIG_EDGES_MAX];
    uint32_t edge_count;
    char *text; // the parsed copy (owned)
    size_t text_size;
} sl_pipe_config;

// Parses size bytes of text (need not be NUL-terminated). file names it in messages. On success
// *out is owned by the caller (sl_pipe_config_free). On failure err gets "file:line: why" and
// returns SL_EINVAL (SL_ETOOBIG over SL_PIPE_CONFIG_BYTES_MAX, SL_ENOMEM).
int sl_pipe_config_parse(const char *text, size_t size, const char *file, sl_pipe_config **out,
                         char *err, size_t err_size);

// Reads path and parses it. SL_ENOENT / SL_EIO with a message when it cannot be read.
int sl_pipe_config_load(const char *path, sl_pipe_config **out, char *err, size_t err_size);

void sl_pipe_config_free(sl_pipe_config *c);

// The index of the stage called name, or -1.
int sl_pipe_config_find(const sl_pipe_config *c, const char *name);

// The value of a stage option, or NULL.
const char *sl_pipe_config_opt(const sl_pipe_config_stage *s, const char *key);

#endif
