// Helpers of the Kafka endpoint tests (header-only, static): start and drive tools/kafka_mock
// (a librdkafka mock cluster in its own process), produce and read topics with plain librdkafka
// clients, wrap the Kafka ops to reach an instance's state, and read metrics from a registry.
#ifndef SLUICE_TESTS_KAFKA_TEST_UTIL_H
#define SLUICE_TESTS_KAFKA_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include <sluice/error.h>
#include <sluice/kafka.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "support/test_util.h"

#define KT_BOOTSTRAP_MAX 512
#define KT_STARTUP_MS    10000 // the mock prints its address within this
#define KT_ID_FORMAT     "id-%08" PRIu32
#define KT_ID_MAX        1000000u
#define KT_SCRAPE_BYTES  (1u << 20)

typedef struct kt_mock {
    pid_t pid;
    int cmd_fd; // the mock's stdin
    int out_fd; // the mock's stdout (answers "ok ...")
    char bootstrap[KT_BOOTSTRAP_MAX];
} kt_mock;

// Starts kafka_mock with the given flags (NULL-terminated); fails the test on error.
static inline void
kt_mock_start(kt_mock *m, const char *const *flags)
{
    const char *path = getenv("SL_KAFKA_MOCK");
    assert_non_null(path);
    int in[2];
    int out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    const char *argv[32] = {path};
    size_t n = 1;
    for (size_t i = 0; flags != NULL && flags[i] != NULL && n < 31; i++) {
        argv[n++] = flags[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        // The mock must not outlive a test that crashed (it would hold ctest's output open).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[1]);
        close(out[0]);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    m->pid = pid;
    m->cmd_fd = in[1];
    m->out_fd = out[0];
    size_t len = 0;
    // One byte at a time up to the first newline, bounded by the buffer and the startup time.
    while (len < sizeof(m->bootstrap) - 1) {
        struct pollfd p = {.fd = m->out_fd, .events = POLLIN};
        assert_true(poll(&p, 1, KT_STARTUP_MS) > 0);
        char c;
        assert_int_equal(read(m->out_fd, &c, 1), 1);
        if (c == '\n') {
            break;
        }
        m->bootstrap[len++] = c;
    }
    m->bootstrap[len] = '\0';
    assert_true(len > 0);
}

// Sends one command line to the mock and waits for its answer ("ok ...").
static inline void
kt_mock_cmd(kt_mock *m, const char *line)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%s\n", line);
    assert_int_equal(write(m->cmd_fd, buf, (size_t)n), n);
    char ans[256];
    size_t len = 0;
    while (len < sizeof(ans) - 1) {
        struct pollfd p = {.fd = m->out_fd, .events = POLLIN};
        assert_true(poll(&p, 1, KT_STARTUP_MS) > 0);
        assert_int_equal(read(m->out_fd, &ans[len], 1), 1);
        if (ans[len] == '\n') {
            break;
        }
        len++;
    }
    ans[len] = '\0';
    assert_true(strncmp(ans, "ok", 2) == 0);
}

static inline void
kt_mock_stop(kt_mock *m)
{
    kill(m->pid, SIGTERM);
    int status = 0;
    waitpid(m->pid, &status, 0);
    close(m->cmd_fd);
    close(m->out_fd);
}

static inline rd_kafka_conf_t *
kt_conf(const char *bootstrap)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
    return c;
}

static inline void
kt_conf_set(rd_kafka_conf_t *c, const char *key, const char *value)
{
    char err[256];
    assert_int_equal(rd_kafka_conf_set(c, key, value, err, sizeof(err)), 0);
}

// A producer for the test's own input (not under test).
static inline rd_kafka_t *
kt_producer(const char *bootstrap)
{
    char err[256];
    rd_kafka_conf_t *c = kt_conf(bootstrap);
    kt_conf_set(c, "linger.ms", "5");
    kt_conf_set(c, "enable.idempotence", "true");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    assert_non_null(rk);
    return rk;
}

// Produces records with ids [first, first + count): key and value "id-%08u" plus padding up to
// value_bytes. Retries a full queue after serving it.
static inline void
kt_produce(rd_kafka_t *rk, const char *topic, uint32_t first, uint32_t count, size_t value_bytes)
{
    char value[4096];
    assert_true(value_bytes < sizeof(value));
    for (uint32_t i = first; i < first + count; i++) {
        char key[32];
        int klen = snprintf(key, sizeof(key), KT_ID_FORMAT, i);
        memset(value, 'v', value_bytes);
        memcpy(value, key, (size_t)klen);
        size_t vlen = value_bytes > (size_t)klen ? value_bytes : (size_t)klen;
        rd_kafka_resp_err_t e;
        // Bounded: every retry serves delivery reports, which frees the queue.
        for (int tries = 0; tries < 10000; tries++) {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                                  RD_KAFKA_V_VALUE(value, vlen),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                break;
            }
            rd_kafka_poll(rk, 10);
        }
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(rk, 0);
    }
}

static inline void
kt_flush(rd_kafka_t *rk)
{
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

// Commits offset 0 for every partition of topic for group, so a consumer with
// auto.offset.reset=error starts at the beginning (and any later skip fails loudly).
static inline void
kt_commit_zero(const char *bootstrap, const char *topic, const char *group, int partitions)
{
    char err[256];
    rd_kafka_conf_t *c = kt_conf(bootstrap);
    kt_conf_set(c, "group.id", group);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) {
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = 0;
    }
    assert_int_equal(rd_kafka_commit(rk, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

// Parses an id out of a key or value ("id-%08u..."); UINT32_MAX if it is not one.
static inline uint32_t
kt_id_of(const void *data, size_t size)
{
    char buf[16];
    if (size < 11) {
        return UINT32_MAX;
    }
    memcpy(buf, data, 11);
    buf[11] = '\0';
    unsigned id = 0;
    if (sscanf(buf, "id-%8u", &id) != 1 || id >= KT_ID_MAX) {
        return UINT32_MAX;
    }
    return id;
}

// Reads every partition of topic from the beginning until `want` distinct ids in [0, want) were
// seen or deadline_ms passed; counts[] (want entries) gets how often each id was seen.
// Returns the number of distinct ids seen.
static inline uint32_t
kt_read_all(const char *bootstrap, const char *topic, int partitions, uint32_t want,
            uint32_t *counts, int deadline_ms)
{
    char err[256];
    rd_kafka_conf_t *c = kt_conf(bootstrap);
    kt_conf_set(c, "group.id", "kt-reader");
    kt_conf_set(c, "enable.auto.commit", "false");
    kt_conf_set(c, "fetch.wait.max.ms", "20");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) {
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    memset(counts, 0, sizeof(*counts) * want);
    uint32_t distinct = 0;
    int64_t end = sl_now_ns() + (int64_t)deadline_ms * 1000000;
    // Bounded by the deadline.
    while (distinct < want && sl_now_ns() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            uint32_t id = kt_id_of(m->payload, m->len);
            if (id < want && counts[id]++ == 0) {
                distinct++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    // Drain a little longer so duplicates written after the last new id are counted too.
    int64_t tail_end = sl_now_ns() + 1000000000;
    while (sl_now_ns() < tail_end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            uint32_t id = kt_id_of(m->payload, m->len);
            if (id < want) {
                counts[id]++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return distinct;
}

// Sum of every series of a metric family in registry (Prometheus text; label filter optional:
// a substring the series' label set must contain). -1 if no series matched.
static inline double
kt_metric(sl_metrics_registry *registry, const char *name, const char *label_filter)
{
    char *buf = malloc(KT_SCRAPE_BYTES);
    assert_non_null(buf);
    size_t len = 0;
    assert_int_equal(
        sl_metrics_encode_prometheus(registry, sl_now_ns(), buf, KT_SCRAPE_BYTES, &len), SL_OK);
    double sum = 0;
    bool found = false;
    size_t name_len = strlen(name);
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, name, name_len) != 0 ||
            (line[name_len] != '{' && line[name_len] != ' ')) {
            continue;
        }
        char *sp = strrchr(line, ' ');
        if (sp == NULL || (label_filter != NULL && strstr(line, label_filter) == NULL)) {
            continue;
        }
        sum += strtod(sp + 1, NULL);
        found = true;
    }
    free(buf);
    return found ? sum : -1;
}

// The Kafka ops wrapped so a test can reach the instances' states (to call stats itself).
#define KT_INSTANCES_MAX 16
typedef struct kt_tap {
    void *source_states[KT_INSTANCES_MAX];
    void *sink_states[KT_INSTANCES_MAX];
} kt_tap;

static kt_tap kt_tapped;

static inline int
kt_source_create(const sl_pipe_endpoint *e, uint32_t i, uint32_t n, void **out, char *err,
                 size_t err_size)
{
    int rc = sl_kafka_source_ops()->create(e, i, n, out, err, err_size);
    if (rc == SL_OK && i < KT_INSTANCES_MAX) {
        kt_tapped.source_states[i] = *out;
    }
    return rc;
}

static inline int
kt_sink_create(const sl_pipe_endpoint *e, uint32_t i, uint32_t n, void **out, char *err,
               size_t err_size)
{
    int rc = sl_kafka_sink_ops()->create(e, i, n, out, err, err_size);
    if (rc == SL_OK && i < KT_INSTANCES_MAX) {
        kt_tapped.sink_states[i] = *out;
    }
    return rc;
}

static inline void
kt_source_destroy(void *state)
{
    for (int i = 0; i < KT_INSTANCES_MAX; i++) {
        if (kt_tapped.source_states[i] == state) {
            kt_tapped.source_states[i] = NULL;
        }
    }
    sl_kafka_source_ops()->destroy(state);
}

static inline void
kt_sink_destroy(void *state)
{
    for (int i = 0; i < KT_INSTANCES_MAX; i++) {
        if (kt_tapped.sink_states[i] == state) {
            kt_tapped.sink_states[i] = NULL;
        }
    }
    sl_kafka_sink_ops()->destroy(state);
}

static inline sl_pipe_source_ops
kt_source_ops(void)
{
    sl_pipe_source_ops ops = *sl_kafka_source_ops();
    ops.scheme = "kafka-tap";
    ops.create = kt_source_create;
    ops.destroy = kt_source_destroy;
    return ops;
}

static inline sl_pipe_sink_ops
kt_sink_ops(void)
{
    sl_pipe_sink_ops ops = *sl_kafka_sink_ops();
    ops.scheme = "kafka-tap";
    ops.create = kt_sink_create;
    ops.destroy = kt_sink_destroy;
    return ops;
}

// Registers every tapped instance's metrics in registry (idempotent per instance).
static inline void
kt_stats(sl_metrics_registry *registry)
{
    for (int i = 0; i < KT_INSTANCES_MAX; i++) {
        if (kt_tapped.source_states[i] != NULL) {
            sl_kafka_source_ops()->stats(kt_tapped.source_states[i], registry, "src");
        }
        if (kt_tapped.sink_states[i] != NULL) {
            sl_kafka_sink_ops()->stats(kt_tapped.sink_states[i], registry, "out");
        }
    }
}

#endif
