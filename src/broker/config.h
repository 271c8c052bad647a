// sluiced's configuration: defaults, a config file of "key = value" lines, and command-line flags
// that override the file. Every key is documented in docs/config.md and in
// config/sluiced.conf.example; a key or flag that is unknown or malformed is an error with a
// message naming the file and line (or the flag), never silently ignored.
#ifndef SLUICE_BROKER_CONFIG_H
#define SLUICE_BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SL_CONFIG_HOST_MAX 256
#define SL_CONFIG_PATH_MAX 1024
// Longest config file line; longer lines are an error, not truncated.
#define SL_CONFIG_LINE_MAX 1024

typedef enum sl_fsync_policy {
    SL_FSYNC_NEVER = 0,
    SL_FSYNC_INTERVAL = 1,
    SL_FSYNC_ALWAYS = 2,
} sl_fsync_policy;

typedef enum sl_full_policy_topic {
    SL_TOPIC_FULL_BLOCK = 0,       // lossless: producers are slowed, then throttled
    SL_TOPIC_FULL_REJECT = 1,      // lossless: produce requests are refused with a retry-after
    SL_TOPIC_FULL_DROP_OLDEST = 2, // lossy: the oldest unconsumed data is deleted, and counted
} sl_full_policy_topic;

// Defaults for topics created without explicit settings.
typedef struct sl_topic_defaults {
    uint32_t partitions;
    uint64_t max_backlog_bytes; // 0: bounded by the disk budget only
    int64_t max_lag_ms;         // 0: no time bound
    sl_full_policy_topic full_policy;
    uint64_t retention_bytes; // per partition; 0: none beyond the backlog rules
    int64_t retention_ms;     // 0: none
    uint64_t segment_bytes;
} sl_topic_defaults;

typedef struct sl_broker_config {
    char listen_host[SL_CONFIG_HOST_MAX];
    uint16_t listen_port;
    char admin_host[SL_CONFIG_HOST_MAX];
    uint16_t admin_port; // 0 with admin_enabled = ephemeral
    int admin_enabled;
    char data_dir[SL_CONFIG_PATH_MAX];
    uint64_t memory_budget_bytes;
    uint64_t disk_budget_bytes;
    sl_fsync_policy fsync_policy;
    int64_t fsync_interval_ms;
    uint32_t max_connections;
    uint32_t max_streams_per_connection;
    uint64_t connection_buffer_bytes; // per-connection receive/send allowance
    int64_t heartbeat_ms;             // a peer silent for 3x this is disconnected
    int64_t credit_grace_ms;          // a peer sending beyond its credit is disconnected after this
    int log_level;                    // 0 error, 1 warn, 2 info, 3 debug
    sl_topic_defaults topic;
} sl_broker_config;

// Fills the embedded defaults: 127.0.0.1:7420, admin 127.0.0.1:7421, ./data, 256 MiB memory,
// 10 GiB disk, fsync every 100 ms.
void sl_broker_config_default(sl_broker_config *config);

// Applies one "key = value" setting. err receives a message naming the key on failure.
int sl_broker_config_set(sl_broker_config *config, const char *key, const char *value, char *err,
                         size_t err_size);

// Reads a config file; errors name the file and line.
int sl_broker_config_load(sl_broker_config *config, const char *path, char *err, size_t err_size);

// Parses sluiced's command line (after the defaults and the --config file, which it loads first
// if present). Sets *exit_now when --help or --version was printed. Errors go to err.
int sl_broker_config_from_args(sl_broker_config *config, int argc, char **argv, int *exit_now,
                               char *err, size_t err_size);

// Writes the effective configuration, one "key = value" per line, to the stream (for --print-config
// and the startup log).
void sl_broker_config_print(const sl_broker_config *config, void *file);

#endif
