// Kafka endpoint configuration shared by the source and the sink: the kafka:// URI, the option
// keys of docs/kafka.md, librdkafka defaults chosen for backpressure and the rdkafka.*
// pass-through; plus registration with the pipeline runtime and a family-id cache for the metrics
// registry.
#include "kafka/kafka_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

#define URI_PREFIX        "kafka://"
#define RDKAFKA_PREFIX    "rdkafka."
#define QUERY_MAX_BYTES   2048u // longest URI query string accepted
#define QUERY_KEYS_MAX    64u   // most key=value pairs in one URI query
#define FAMILY_CACHE_SIZE 128u  // distinct (registry, family) pairs remembered

typedef struct family_slot {
    const sl_metrics_registry *registry;
    char name[SL_NAME_MAX];
    uint64_t id;
} family_slot;

static pthread_mutex_t family_mutex = PTHREAD_MUTEX_INITIALIZER;
static family_slot family_cache[FAMILY_CACHE_SIZE];
static uint32_t family_next; // round-robin replacement once the cache is full

__attribute__((format(printf, 3, 4))) static void
errf(char *err, size_t err_size, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
}

int
sl__kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                   size_t err_size)
{
    char msg[256];
    if (rd_kafka_conf_set(conf, key, value, msg, sizeof(msg)) != RD_KAFKA_CONF_OK) {
        errf(err, err_size, "kafka: rdkafka.%s: %s", key, msg);
        return SL_EINVAL;
    }
    return SL_OK;
}

static int
parse_u64(const char *key, const char *value, uint64_t min, uint64_t max, uint64_t *out, char *err,
          size_t err_size)
{
    uint64_t v = 0;
    int rc = sl_parse_size(value, &v, NULL, 0);
    if (rc != SL_OK || v < min || v > max) {
        errf(err, err_size, "kafka: option %s: bad value '%s'", key, value);
        return SL_EINVAL;
    }
    *out = v;
    return SL_OK;
}

static int
set_copy(char *dst, size_t dst_size, const char *key, const char *value, char *err, size_t err_size)
{
    if (value[0] == '\0' || strlen(value) >= dst_size) {
        errf(err, err_size, "kafka: option %s: empty or too long ('%s')", key, value);
        return SL_EINVAL;
    }
    sl__strlcpy(dst, value, dst_size);
    return SL_OK;
}

// One option, from the URI query or the endpoint's options.
static int
apply_option(sl__kafka_config *cfg, const char *key, const char *value, char *err, size_t err_size)
{
    uint64_t v = 0;
    int rc = SL_OK;
    if (strncmp(key, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) == 0) {
        return sl__kafka_conf_set(cfg->conf, key + strlen(RDKAFKA_PREFIX), value, err, err_size);
    } else if (strcmp(key, "group") == 0) {
        return set_copy(cfg->group, sizeof(cfg->group), key, value, err, err_size);
    } else if (strcmp(key, "topic") == 0) {
        return set_copy(cfg->topic, sizeof(cfg->topic), key, value, err, err_size);
    } else if (strcmp(key, "brokers") == 0) {
        return set_copy(cfg->brokers, sizeof(cfg->brokers), key, value, err, err_size);
    } else if (strcmp(key, "buffer_records") == 0) {
        rc = parse_u64(key, value, 2, SL_KAFKA_BUFFER_RECORDS_MAX, &v, err, err_size);
        cfg->buffer_records = (uint32_t)v;
    } else if (strcmp(key, "buffer_bytes") == 0) {
        rc = parse_u64(key, value, 1024, SL_KAFKA_BUFFER_BYTES_MAX, &cfg->buffer_bytes, err,
                       err_size);
    } else if (strcmp(key, "buffer_high") == 0) {
        rc = parse_u64(key, value, 1, SL_KAFKA_BUFFER_RECORDS_MAX, &v, err, err_size);
        cfg->buffer_high = (uint32_t)v;
    } else if (strcmp(key, "buffer_low") == 0) {
        rc = parse_u64(key, value, 0, SL_KAFKA_BUFFER_RECORDS_MAX, &v, err, err_size);
        cfg->buffer_low = (uint32_t)v;
    } else if (strcmp(key, "commit_interval_ms") == 0) {
        rc = parse_u64(key, value, 10, 3600000, &v, err, err_size);
        cfg->commit_interval_ms = (uint32_t)v;
    } else if (strcmp(key, "inflight_records") == 0) {
        rc = parse_u64(key, value, 1, SL_KAFKA_INFLIGHT_RECORDS_MAX, &v, err, err_size);
        cfg->inflight_records = (uint32_t)v;
    } else if (strcmp(key, "inflight_bytes") == 0) {
        rc = parse_u64(key, value, 1024, UINT64_C(2147483647) * 1024, &cfg->inflight_bytes, err,
                       err_size);
    } else {
        errf(err, err_size,
             "kafka: unknown option '%s' (librdkafka properties: rdkafka.<property>)", key);
        return SL_EINVAL;
    }
    return rc;
}

// "HOSTS/TOPIC?k=v&k=v" after the scheme.
static int
parse_uri(sl__kafka_config *cfg, const char *uri, char *err, size_t err_size)
{
    if (strncmp(uri, URI_PREFIX, strlen(URI_PREFIX)) != 0) {
        errf(err, err_size, "kafka: URI '%s' does not start with " URI_PREFIX, uri);
        return SL_EINVAL;
    }
    const char *hosts = uri + strlen(URI_PREFIX);
    const char *slash = strchr(hosts, '/');
    const char *query = strchr(hosts, '?');
    const char *hosts_end = slash != NULL ? slash : (query != NULL ? query : hosts + strlen(hosts));
    if ((size_t)(hosts_end - hosts) >= sizeof(cfg->brokers)) {
        errf(err, err_size, "kafka: broker list too long in '%s'", uri);
        return SL_EINVAL;
    }
    memcpy(cfg->brokers, hosts, (size_t)(hosts_end - hosts));
    cfg->brokers[hosts_end - hosts] = '\0';
    if (slash != NULL) {
        const char *topic_end = query != NULL ? query : slash + strlen(slash);
        size_t len = (size_t)(topic_end - slash - 1);
        if (len >= sizeof(cfg->topic)) {
            errf(err, err_size, "kafka: topic too long in '%s'", uri);
            return SL_EINVAL;
        }
        memcpy(cfg->topic, slash + 1, len);
        cfg->topic[len] = '\0';
    }
    if (query == NULL) {
        return SL_OK;
    }
    char buf[QUERY_MAX_BYTES];
    if (strlen(query + 1) >= sizeof(buf)) {
        errf(err, err_size, "kafka: query too long in '%s'", uri);
        return SL_EINVAL;
    }
    sl__strlcpy(buf, query + 1, sizeof(buf));
    char *save = NULL;
    char *pair = strtok_r(buf, "&", &save);
    for (uint32_t i = 0; pair != NULL && i < QUERY_KEYS_MAX; i++) {
        char *eq = strchr(pair, '=');
        if (eq == NULL) {
            errf(err, err_size, "kafka: query item '%s' is not KEY=VALUE", pair);
            return SL_EINVAL;
        }
        *eq = '\0';
        int rc = apply_option(cfg, pair, eq + 1, err, err_size);
        if (rc != SL_OK) {
            return rc;
        }
        pair = strtok_r(NULL, "&", &save);
    }
    return SL_OK;
}

static int
conf_defaults(sl__kafka_config *cfg, sl__kafka_role role, uint32_t instance, char *err,
              size_t err_size)
{
    char client_id[64];
    snprintf(client_id, sizeof(client_id), "sluice-%s-%" PRIu32,
             role == SL__KAFKA_SOURCE ? "source" : "sink", instance);
    // Defaults a user may override with rdkafka.*: the cooperative assignor (a rebalance moves
    // only the partitions that change owner), and a small librdkafka prefetch queue, since the
    // source keeps its own bounded buffer and pauses partitions above it.
    static const char *const source_defaults[][2] = {
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"auto.offset.reset", "earliest"},
        {"queued.max.messages.kbytes", "8192"},
        {"queued.min.messages", "10000"},
    };
    // murmur2_random: keyed records land in the partition a Java client would pick for the key,
    // so a bridge keeps per-key order with other producers of the same topic.
    static const char *const sink_defaults[][2] = {
        {"acks", "all"},
        {"partitioner", "murmur2_random"},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
    };
    int rc = sl__kafka_conf_set(cfg->conf, "client.id", client_id, err, err_size);
    size_t n =
        role == SL__KAFKA_SOURCE ? SL_ARRAY_LEN(source_defaults) : SL_ARRAY_LEN(sink_defaults);
    for (size_t i = 0; i < n && rc == SL_OK; i++) {
        const char *const *kv = role == SL__KAFKA_SOURCE ? source_defaults[i] : sink_defaults[i];
        rc = sl__kafka_conf_set(cfg->conf, kv[0], kv[1], err, err_size);
    }
    return rc;
}

// Settings the endpoint's semantics depend on, applied after the user's options.
static int
conf_enforce(sl__kafka_config *cfg, sl__kafka_role role, char *err, size_t err_size)
{
    char num[32];
    int rc = SL_OK;
    if (cfg->brokers[0] != '\0') {
        rc = sl__kafka_conf_set(cfg->conf, "bootstrap.servers", cfg->brokers, err, err_size);
    }
    if (role == SL__KAFKA_SOURCE) {
        // Offsets are stored only for records every sink accepted (commit from the runtime).
        if (rc == SL_OK) {
            rc = sl__kafka_conf_set(cfg->conf, "enable.auto.commit", "false", err, err_size);
        }
        if (rc == SL_OK) {
            rc = sl__kafka_conf_set(cfg->conf, "enable.auto.offset.store", "false", err, err_size);
        }
        if (rc == SL_OK) {
            rc = sl__kafka_conf_set(cfg->conf, "group.id", cfg->group, err, err_size);
        }
        return rc;
    }
    snprintf(num, sizeof(num), "%" PRIu32, cfg->inflight_records);
    if (rc == SL_OK) {
        rc = sl__kafka_conf_set(cfg->conf, "queue.buffering.max.messages", num, err, err_size);
    }
    snprintf(num, sizeof(num), "%" PRIu64, SL_MAX(cfg->inflight_bytes / 1024, 1));
    if (rc == SL_OK) {
        rc = sl__kafka_conf_set(cfg->conf, "queue.buffering.max.kbytes", num, err, err_size);
    }
    return rc;
}

static int
config_check(sl__kafka_config *cfg, sl__kafka_role role, char *err, size_t err_size)
{
    if (cfg->topic[0] == '\0') {
        errf(err, err_size, "kafka: no topic (kafka://HOSTS/TOPIC or option topic)");
        return SL_EINVAL;
    }
    if (role == SL__KAFKA_SOURCE && cfg->group[0] == '\0') {
        errf(err, err_size, "kafka: a source needs option group (consumer group id)");
        return SL_EINVAL;
    }
    if (cfg->buffer_high == 0) {
        cfg->buffer_high = cfg->buffer_records - cfg->buffer_records / 4;
    }
    if (cfg->buffer_low == UINT32_MAX) {
        cfg->buffer_low = cfg->buffer_records / 4;
    }
    if (cfg->buffer_high > cfg->buffer_records || cfg->buffer_low >= cfg->buffer_high) {
        errf(err, err_size,
             "kafka: options buffer_low < buffer_high <= buffer_records do not hold");
        return SL_EINVAL;
    }
    return SL_OK;
}

int
sl__kafka_config_parse(sl__kafka_config *cfg, const sl_pipe_endpoint *endpoint, sl__kafka_role role,
                       uint32_t instance, char *err, size_t err_size)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->buffer_records = SL_KAFKA_BUFFER_RECORDS_DEFAULT;
    cfg->buffer_bytes = SL_KAFKA_BUFFER_BYTES_DEFAULT;
    cfg->buffer_low = UINT32_MAX; // unset
    cfg->commit_interval_ms = SL_KAFKA_COMMIT_INTERVAL_MS;
    cfg->inflight_records = SL_KAFKA_INFLIGHT_RECORDS_DEFAULT;
    cfg->inflight_bytes = SL_KAFKA_INFLIGHT_BYTES_DEFAULT;
    cfg->conf = rd_kafka_conf_new();
    if (cfg->conf == NULL) {
        return SL_ENOMEM;
    }
    int rc = conf_defaults(cfg, role, instance, err, err_size);
    if (rc == SL_OK && endpoint->uri != NULL) {
        rc = parse_uri(cfg, endpoint->uri, err, err_size);
    }
    for (size_t i = 0; rc == SL_OK && i < endpoint->option_count; i++) {
        const sl_pipe_option *o = &endpoint->options[i];
        if (o->key == NULL || o->value == NULL) {
            errf(err, err_size, "kafka: option without key or value");
            rc = SL_EINVAL;
            break;
        }
        rc = apply_option(cfg, o->key, o->value, err, err_size);
    }
    if (rc == SL_OK) {
        rc = config_check(cfg, role, err, err_size);
    }
    if (rc == SL_OK) {
        rc = conf_enforce(cfg, role, err, err_size);
    }
    if (rc != SL_OK) {
        sl__kafka_config_fini(cfg);
    }
    return rc;
}

void
sl__kafka_config_fini(sl__kafka_config *cfg)
{
    if (cfg->conf != NULL) {
        rd_kafka_conf_destroy(cfg->conf);
        cfg->conf = NULL;
    }
}

int
sl__kafka_family(sl_metrics_registry *registry, const sl_metric_family_desc *desc,
                 uint64_t *family_id_out)
{
    pthread_mutex_lock(&family_mutex);
    int rc = sl_metrics_family_register(registry, desc, family_id_out);
    for (uint32_t i = 0; i < FAMILY_CACHE_SIZE && rc == SL_EEXIST; i++) {
        if (family_cache[i].registry == registry && strcmp(family_cache[i].name, desc->name) == 0) {
            *family_id_out = family_cache[i].id;
            rc = SL_OK;
        }
    }
    if (rc == SL_OK) {
        // Remember (or refresh) it, so the next instance finds the id. A registry freed and
        // reallocated at the same address gets fresh ids: sl_metrics_series_add then says
        // SL_ENOENT and the caller skips that series.
        uint32_t slot = family_next;
        for (uint32_t i = 0; i < FAMILY_CACHE_SIZE; i++) {
            if (family_cache[i].registry == registry &&
                strcmp(family_cache[i].name, desc->name) == 0) {
                slot = i;
                break;
            }
        }
        if (slot == family_next) {
            family_next = (family_next + 1) % FAMILY_CACHE_SIZE;
        }
        family_cache[slot].registry = registry;
        sl__strlcpy(family_cache[slot].name, desc->name, sizeof(family_cache[slot].name));
        family_cache[slot].id = *family_id_out;
    }
    pthread_mutex_unlock(&family_mutex);
    return rc;
}

int
sl__kafka_timeout_ms(int64_t deadline_ns, int cap_ms)
{
    int64_t left_ns = deadline_ns - sl_now_ns();
    if (left_ns <= 0) {
        return 0;
    }
    int64_t ms = (left_ns + 999999) / 1000000;
    return ms > cap_ms ? cap_ms : (int)ms;
}

int
sl_kafka_register(void)
{
    const sl_pipe_source_ops *src = sl_pipe_find_source("kafka");
    const sl_pipe_sink_ops *snk = sl_pipe_find_sink("kafka");
    if ((src != NULL && src != sl_kafka_source_ops()) ||
        (snk != NULL && snk != sl_kafka_sink_ops())) {
        return SL_EEXIST;
    }
    int rc = SL_OK;
    if (src == NULL) {
        rc = sl_pipe_register_source(sl_kafka_source_ops());
    }
    if (rc == SL_OK && snk == NULL) {
        rc = sl_pipe_register_sink(sl_kafka_sink_ops());
    }
    // A concurrent registration of the same ops is success too.
    return rc == SL_EEXIST && sl_pipe_find_source("kafka") == sl_kafka_source_ops() &&
                   sl_pipe_find_sink("kafka") == sl_kafka_sink_ops()
               ? SL_OK
               : rc;
}

uint32_t
sl_kafka_processes_needed(double input_per_s, double process_true_per_s, double target_utilization)
{
    if (!(process_true_per_s > 0) || !(input_per_s >= 0) || !(target_utilization > 0) ||
        process_true_per_s > 1e15 || input_per_s > 1e15) {
        return 0;
    }
    double u = target_utilization > 1 ? 1 : target_utilization;
    double n = input_per_s / (process_true_per_s * u);
    // Tolerate float noise just above a whole number (2.0000000001 -> 2).
    double whole = (double)(uint64_t)n;
    uint64_t need = n - whole < 1e-9 ? (uint64_t)whole : (uint64_t)whole + 1;
    if (need < 1) {
        need = 1;
    }
    return need > UINT32_MAX ? UINT32_MAX : (uint32_t)need;
}

size_t
sl__kafka_metrics_add(sl_metrics_registry *registry, const char *stage, uint32_t instance,
                      const sl__kafka_metric *metrics, size_t count, uint64_t *series_out)
{
    static const char *const labels[] = {"stage", "instance"};
    char instance_text[16];
    snprintf(instance_text, sizeof(instance_text), "%" PRIu32, instance);
    const char *values[] = {stage, instance_text};
    size_t added = 0;
    for (size_t i = 0; i < count; i++) {
        const sl__kafka_metric *m = &metrics[i];
        sl_metric_family_desc desc = {
            .name = m->name,
            .help = m->help,
            .type = m->counter != NULL ? SL_METRIC_COUNTER : SL_METRIC_GAUGE,
            .label_names = labels,
            .label_count = 2,
            .scale = m->scale,
        };
        sl_metric_source src = {.counter = m->counter, .gauge = m->gauge};
        uint64_t family = 0;
        series_out[i] = 0;
        if (sl__kafka_family(registry, &desc, &family) != SL_OK) {
            continue;
        }
        if (sl_metrics_series_add(registry, family, values, &src, &series_out[i]) == SL_OK) {
            added++;
        } else {
            series_out[i] = 0;
        }
    }
    return added;
}

void
sl__kafka_metrics_remove(sl_metrics_registry *registry, uint64_t *series, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (series[i] != 0) {
            // SL_ENOENT only if someone removed it already: nothing left to do either way.
            int rc = sl_metrics_series_remove(registry, series[i]);
            SL_UNUSED(rc);
            series[i] = 0;
        }
    }
}
