// sluiced configuration (see config.h). One table lists every key with its type, default and
// help; the config file, the command line, --help and --print-config are all driven by it, so
// they cannot disagree. A flag is the key with dashes: memory_budget <-> --memory-budget.
#include "broker/config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

typedef enum key_type {
    KEY_ENDPOINT, // host + port pair (the offset is the host; the port follows by field)
    KEY_PATH,
    KEY_SIZE,
    KEY_DURATION,
    KEY_U32,
    KEY_FSYNC,
    KEY_FULL_POLICY,
    KEY_LOG_LEVEL,
} key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t offset;
    size_t port_offset; // KEY_ENDPOINT only
    const char *help;
} key_def;

#define FIELD(f) offsetof(sl_broker_config, f)

static const key_def KEYS[] = {
    {"listen", KEY_ENDPOINT, FIELD(listen_host), FIELD(listen_port),
     "HOST:PORT for producers and consumers (port 0 picks a free one)"},
    {"admin", KEY_ENDPOINT, FIELD(admin_host), FIELD(admin_port),
     "HOST:PORT of the admin HTTP endpoint (/metrics, /stats, /healthz); 'off' disables it"},
    {"data", KEY_PATH, FIELD(data_dir), 0, "data directory (created if missing; locked)"},
    {"memory_budget", KEY_SIZE, FIELD(memory_budget_bytes), 0,
     "bytes of buffered records the broker may hold in memory, all topics and connections"},
    {"disk_budget", KEY_SIZE, FIELD(disk_budget_bytes), 0,
     "bytes the logs of all topics may take on disk"},
    {"fsync", KEY_FSYNC, FIELD(fsync_policy), 0,
     "when appended data is fsynced: always (group commit), interval, never"},
    {"fsync_interval", KEY_DURATION, FIELD(fsync_interval_ms), 0,
     "with fsync = interval: how often"},
    {"max_connections", KEY_U32, FIELD(max_connections), 0,
     "connections accepted at once; more are refused with an error"},
    {"max_streams_per_connection", KEY_U32, FIELD(max_streams_per_connection), 0,
     "produce and consume streams one connection may open"},
    {"connection_buffer", KEY_SIZE, FIELD(connection_buffer_bytes), 0,
     "receive/send allowance of one connection (drawn from memory_budget)"},
    {"heartbeat", KEY_DURATION, FIELD(heartbeat_ms), 0,
     "heartbeat interval; a peer silent for three intervals is disconnected"},
    {"credit_grace", KEY_DURATION, FIELD(credit_grace_ms), 0,
     "how long a peer that sends beyond its credit is tolerated (unread) before disconnect"},
    {"log_level", KEY_LOG_LEVEL, FIELD(log_level), 0, "error, warn, info or debug"},
    {"topic_partitions", KEY_U32, FIELD(topic.partitions), 0,
     "partitions of a topic created without an explicit count"},
    {"topic_max_backlog", KEY_SIZE, FIELD(topic.max_backlog_bytes), 0,
     "default per-topic backlog bound in bytes (0: the disk budget only)"},
    {"topic_max_lag", KEY_DURATION, FIELD(topic.max_lag_ms), 0,
     "default per-topic bound on how far behind (in time) the slowest group may fall (0: none)"},
    {"topic_full_policy", KEY_FULL_POLICY, FIELD(topic.full_policy), 0,
     "what a full topic does: block (slow producers, lossless), reject, drop_oldest (lossy)"},
    {"topic_retention_bytes", KEY_SIZE, FIELD(topic.retention_bytes), 0,
     "default per-partition retention by size (0: none)"},
    {"topic_retention", KEY_DURATION, FIELD(topic.retention_ms), 0,
     "default retention by age (0: none); never deletes unconsumed data unless drop_oldest"},
    {"topic_segment_bytes", KEY_SIZE, FIELD(topic.segment_bytes), 0, "log segment size"},
};

static int fail(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t err_size, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return SL_EINVAL;
}

void
sl_broker_config_default(sl_broker_config *c)
{
    memset(c, 0, sizeof(*c));
    sl__strlcpy(c->listen_host, "127.0.0.1", sizeof(c->listen_host));
    c->listen_port = 7420;
    sl__strlcpy(c->admin_host, "127.0.0.1", sizeof(c->admin_host));
    c->admin_port = 7421;
    c->admin_enabled = 1;
    sl__strlcpy(c->data_dir, "./data", sizeof(c->data_dir));
    c->memory_budget_bytes = 256ull << 20;
    c->disk_budget_bytes = 10ull << 30;
    c->fsync_policy = SL_FSYNC_INTERVAL;
    c->fsync_interval_ms = 100;
    c->max_connections = 1024;
    c->max_streams_per_connection = 256;
    c->connection_buffer_bytes = 8ull << 20;
    c->heartbeat_ms = 5000;
    c->credit_grace_ms = 2000;
    c->log_level = 2;
    c->topic.partitions = 1;
    c->topic.max_backlog_bytes = 0;
    c->topic.max_lag_ms = 0;
    c->topic.full_policy = SL_TOPIC_FULL_BLOCK;
    c->topic.segment_bytes = 128ull << 20;
}

static const key_def *
key_find(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm)) {
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) {
        norm[i] = name[i] == '-' ? '_' : name[i];
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(KEYS); i++) {
        if (strcmp(KEYS[i].name, norm) == 0) {
            return &KEYS[i];
        }
    }
    return NULL;
}

static int
enum_parse(const char *value, const char *const *names, size_t count, int *out)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(value, names[i]) == 0) {
            *out = (int)i;
            return SL_OK;
        }
    }
    return SL_EINVAL;
}

static const char *const FSYNC_NAMES[] = {"never", "interval", "always"};
static const char *const FULL_NAMES[] = {"block", "reject", "drop_oldest"};
static const char *const LEVEL_NAMES[] = {"error", "warn", "info", "debug"};

int
sl_broker_config_set(sl_broker_config *c, const char *key, const char *value, char *err,
                     size_t err_size)
{
    const key_def *k = key_find(key);
    if (k == NULL) {
        return fail(err, err_size, "unknown setting '%s' (see sluiced --help)", key);
    }
    char *base = (char *)c;
    char why[256] = "";
    int rc = SL_OK;
    int e = 0;
    switch (k->type) {
    case KEY_ENDPOINT:
        if (strcmp(k->name, "admin") == 0 && strcmp(value, "off") == 0) {
            c->admin_enabled = 0;
            return SL_OK;
        }
        rc = sl_parse_endpoint(value, base + k->offset, SL_CONFIG_HOST_MAX,
                               (uint16_t *)(base + k->port_offset), 1, why, sizeof(why));
        if (rc == SL_OK && strcmp(k->name, "admin") == 0) {
            c->admin_enabled = 1;
        }
        break;
    case KEY_PATH:
        if (value[0] == '\0' || strlen(value) >= SL_CONFIG_PATH_MAX) {
            return fail(err, err_size, "%s: path must be 1..%u bytes", k->name,
                        SL_CONFIG_PATH_MAX - 1);
        }
        sl__strlcpy(base + k->offset, value, SL_CONFIG_PATH_MAX);
        break;
    case KEY_SIZE:
        rc = sl_parse_size(value, (uint64_t *)(base + k->offset), why, sizeof(why));
        break;
    case KEY_DURATION:
        rc = sl_parse_duration_ms(value, (int64_t *)(base + k->offset), why, sizeof(why));
        break;
    case KEY_U32: {
        char *end = NULL;
        unsigned long long v = strtoull(value, &end, 10);
        if (!isdigit((unsigned char)value[0]) || *end != '\0' || v > UINT32_MAX) {
            rc = SL_EINVAL;
            snprintf(why, sizeof(why), "'%s' is not a whole number up to %u", value, UINT32_MAX);
        } else {
            *(uint32_t *)(base + k->offset) = (uint32_t)v;
        }
        break;
    }
    case KEY_FSYNC:
        rc = enum_parse(value, FSYNC_NAMES, SL_ARRAY_LEN(FSYNC_NAMES), &e);
        if (rc == SL_OK) {
            c->fsync_policy = (sl_fsync_policy)e;
        }
        snprintf(why, sizeof(why), "'%s' is not one of always, interval, never", value);
        break;
    case KEY_FULL_POLICY:
        rc = enum_parse(value, FULL_NAMES, SL_ARRAY_LEN(FULL_NAMES), &e);
        if (rc == SL_OK) {
            c->topic.full_policy = (sl_full_policy_topic)e;
        }
        snprintf(why, sizeof(why), "'%s' is not one of block, reject, drop_oldest", value);
        break;
    case KEY_LOG_LEVEL:
        rc = enum_parse(value, LEVEL_NAMES, SL_ARRAY_LEN(LEVEL_NAMES), &c->log_level);
        snprintf(why, sizeof(why), "'%s' is not one of error, warn, info, debug", value);
        break;
    }
    if (rc != SL_OK) {
        return fail(err, err_size, "%s: %s", k->name, why);
    }
    return SL_OK;
}

static char *
trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    return s;
}

int
sl_broker_config_load(sl_broker_config *c, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return fail(err, err_size, "cannot open config file %s", path);
    }
    char line[SL_CONFIG_LINE_MAX + 2];
    int lineno = 0;
    int rc = SL_OK;
    // Bounded by the file: one pass, one line at a time.
    while (rc == SL_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            rc = fail(err, err_size, "%s:%d: line longer than %d bytes", path, lineno,
                      SL_CONFIG_LINE_MAX);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *s = trim(line);
        if (*s == '\0') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = fail(err, err_size, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char why[384];
        rc = sl_broker_config_set(c, trim(s), trim(eq + 1), why, sizeof(why));
        if (rc != SL_OK) {
            fail(err, err_size, "%s:%d: %s", path, lineno, why);
        }
    }
    fclose(f);
    return rc;
}

static void
print_help(FILE *out)
{
    fprintf(out, "usage: sluiced [--config FILE] [--SETTING VALUE ...]\n\n"
                 "The sluice broker. With no arguments it listens on 127.0.0.1:7420, serves admin\n"
                 "HTTP on 127.0.0.1:7421 and keeps its data in ./data: nothing else to run.\n\n"
                 "  --config FILE     read settings from FILE ('key = value' lines, # comments);\n"
                 "                    flags given on the command line override it\n"
                 "  --print-config    print the effective settings and exit\n"
                 "  --help, --version\n\n"
                 "Settings (as --flag or as a config file key with underscores):\n");
    for (size_t i = 0; i < SL_ARRAY_LEN(KEYS); i++) {
        char flag[64];
        size_t n = strlen(KEYS[i].name);
        for (size_t j = 0; j <= n; j++) {
            flag[j] = KEYS[i].name[j] == '_' ? '-' : KEYS[i].name[j];
        }
        fprintf(out, "  --%-28s %s\n", flag, KEYS[i].help);
    }
    fprintf(out, "\nSizes take B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB); durations take us, ms, s,"
                 " m, h.\nSee docs/config.md.\n");
}

int
sl_broker_config_from_args(sl_broker_config *c, int argc, char **argv, int *exit_now, char *err,
                           size_t err_size)
{
    *exit_now = 0;
    // The config file comes first, whatever its position, so flags override it.
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                return fail(err, err_size, "--config needs a FILE");
            }
            int rc = sl_broker_config_load(c, argv[i + 1], err, err_size);
            if (rc != SL_OK) {
                return rc;
            }
        }
    }
    int print_config = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(stdout);
            *exit_now = 1;
            return SL_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("sluiced %s\n", SL_VERSION_STRING);
            *exit_now = 1;
            return SL_OK;
        }
        if (strcmp(a, "--print-config") == 0) {
            print_config = 1;
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            return fail(err, err_size, "unexpected argument '%s' (see sluiced --help)", a);
        }
        const char *name = a + 2;
        const char *value = NULL;
        char name_buf[64];
        const char *eq = strchr(name, '=');
        if (eq != NULL) {
            size_t n = (size_t)(eq - name);
            if (n >= sizeof(name_buf)) {
                return fail(err, err_size, "unknown flag '%s' (see sluiced --help)", a);
            }
            memcpy(name_buf, name, n);
            name_buf[n] = '\0';
            name = name_buf;
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        }
        if (key_find(name) == NULL) {
            return fail(err, err_size, "unknown flag '%s' (see sluiced --help)", a);
        }
        if (value == NULL) {
            return fail(err, err_size, "flag '%s' needs a value", a);
        }
        char why[384];
        int rc = sl_broker_config_set(c, name, value, why, sizeof(why));
        if (rc != SL_OK) {
            return fail(err, err_size, "--%s", why);
        }
    }
    if (c->memory_budget_bytes < (1u << 20)) {
        return fail(err, err_size, "memory_budget must be at least 1MiB");
    }
    if (c->disk_budget_bytes < (1u << 20)) {
        return fail(err, err_size, "disk_budget must be at least 1MiB");
    }
    if (c->connection_buffer_bytes > c->memory_budget_bytes) {
        return fail(err, err_size, "connection_buffer must not exceed memory_budget");
    }
    if (c->topic.partitions == 0 || c->topic.partitions > 1024) {
        return fail(err, err_size, "topic_partitions must be 1..1024");
    }
    if (print_config) {
        sl_broker_config_print(c, stdout);
        *exit_now = 1;
    }
    return SL_OK;
}

void
sl_broker_config_print(const sl_broker_config *c, void *file)
{
    FILE *out = file;
    const char *base = (const char *)c;
    for (size_t i = 0; i < SL_ARRAY_LEN(KEYS); i++) {
        const key_def *k = &KEYS[i];
        char buf[64];
        fprintf(out, "%s = ", k->name);
        switch (k->type) {
        case KEY_ENDPOINT:
            if (strcmp(k->name, "admin") == 0 && !c->admin_enabled) {
                fprintf(out, "off\n");
            } else {
                fprintf(out, "%s:%u\n", base + k->offset,
                        (unsigned)*(const uint16_t *)(base + k->port_offset));
            }
            break;
        case KEY_PATH:
            fprintf(out, "%s\n", base + k->offset);
            break;
        case KEY_SIZE: {
            uint64_t v = *(const uint64_t *)(base + k->offset);
            // Print exact sizes: MiB when it divides, bytes otherwise.
            if (v != 0 && v % (1u << 20) == 0) {
                snprintf(buf, sizeof(buf), "%lluMiB", (unsigned long long)(v >> 20));
            } else {
                snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
            }
            fprintf(out, "%s\n", buf);
            break;
        }
        case KEY_DURATION:
            fprintf(out, "%lldms\n", (long long)*(const int64_t *)(base + k->offset));
            break;
        case KEY_U32:
            fprintf(out, "%u\n", *(const uint32_t *)(base + k->offset));
            break;
        case KEY_FSYNC:
            fprintf(out, "%s\n", FSYNC_NAMES[c->fsync_policy]);
            break;
        case KEY_FULL_POLICY:
            fprintf(out, "%s\n", FULL_NAMES[c->topic.full_policy]);
            break;
        case KEY_LOG_LEVEL:
            fprintf(out, "%s\n", LEVEL_NAMES[c->log_level]);
            break;
        }
    }
}
