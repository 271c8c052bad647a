// The "sluice" source: reads a topic of a sluice broker through the client library's consumer
// (sluice://HOST:PORT/TOPIC?partition=N|all&group=G). Lane = partition, token = offset. It takes
// from the consumer only as many records as downstream credit allows, with a small prefetch, so a
// slow pipeline leaves its backlog in the broker's log (where it pushes back on producers).
// A commit acks the consumer (cumulative, to the group if any) and, with offsets=PATH, is stored
// locally so a restart resumes after it: the source commits only what every sink accepted.
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/client.h>
#include <sluice/error.h>
#include <sluice/pipeline.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"

// Partitions one source instance reads at most (one consumer each).
#define TOPIC_SOURCE_PARTITIONS_MAX 256u
// Records taken from a consumer per call (the emit loop's chunk).
#define TOPIC_SOURCE_POLL_CHUNK 256u
// Default prefetch per partition: small, so a paused pipeline holds little.
#define TOPIC_SOURCE_PREFETCH_DEFAULT 256u
// How long create waits for the broker to describe the topic (partition=all).
#define TOPIC_SOURCE_DESCRIBE_MS 10000

typedef struct topic_part {
    uint32_t partition;
    sl_consumer *consumer;
} topic_part;

typedef struct topic_source {
    topic_part parts[TOPIC_SOURCE_PARTITIONS_MAX];
    uint32_t part_count;
    uint32_t next_part; // round-robin start
    sl_pipe_offsets offsets;
    bool has_offsets;
    sl_consumed chunk[TOPIC_SOURCE_POLL_CHUNK];
} topic_source;

static const char *const topic_source_options[] = {"partition", "group",     "from", "offsets",
                                                   "prefetch",  "client_id", NULL};

static void
topic_count_cb(const sl_proto_topic_config *config, uint32_t partition,
               const sl_proto_partition_info *info, void *user)
{
    SL_UNUSED(info);
    if (partition == UINT32_MAX) {
        *(uint32_t *)user = config->partition_count;
    }
}

static int
topic_partition_count(const sl_pipe_sluice_uri *u, uint32_t *count, char *err, size_t err_size)
{
    sl_admin *a = NULL;
    int64_t deadline = sl_deadline_after_ms(TOPIC_SOURCE_DESCRIBE_MS);
    int r = sl_admin_open(u->broker[0] ? u->broker : NULL, deadline, &a);
    if (r == SL_OK) {
        r = sl_admin_describe_topic(a, u->topic, deadline, topic_count_cb, count);
        sl_admin_close(a);
    }
    if (r != SL_OK) {
        return sl__pipe_ep_fail(err, err_size, r, "sluice://%s/%s: cannot describe topic: %s",
                                u->broker, u->topic, sl_strerror(r));
    }
    return SL_OK;
}

// Fills the start position of partition p: the stored commit, else the group, else from.
static int
topic_start(topic_source *s, const sl_pipe_endpoint *e, uint32_t p, sl_consumer_config *cfg,
            char *err, size_t err_size)
{
    uint64_t token = 0;
    if (sl__pipe_offsets_get(&s->offsets, p, &token)) {
        cfg->start = SL_START_OFFSET;
        cfg->start_offset = token + 1;
        return SL_OK;
    }
    if (cfg->group != NULL) {
        cfg->start = SL_START_GROUP;
        return SL_OK;
    }
    const char *from = sl__pipe_ep_opt(e, "from");
    if (from == NULL || strcmp(from, "earliest") == 0) {
        cfg->start = SL_START_EARLIEST;
    } else if (strcmp(from, "latest") == 0) {
        cfg->start = SL_START_LATEST;
    } else {
        char *end = NULL;
        cfg->start = SL_START_OFFSET;
        cfg->start_offset = strtoull(from, &end, 10);
        if (from[0] < '0' || from[0] > '9' || *end != '\0') {
            return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                    "option from wants earliest, latest or an offset, got '%s'",
                                    from);
        }
    }
    return SL_OK;
}

static int
topic_open_part(topic_source *s, const sl_pipe_endpoint *e, const sl_pipe_sluice_uri *u, uint32_t p,
                char *err, size_t err_size)
{
    sl_consumer_config cfg;
    sl_consumer_config_init(&cfg);
    cfg.broker = u->broker[0] ? u->broker : NULL;
    cfg.topic = u->topic;
    cfg.partition = p;
    cfg.group = sl__pipe_ep_opt(e, "group");
    cfg.auto_ack = false;
    cfg.client_id = sl__pipe_ep_opt(e, "client_id");
    cfg.client_id = cfg.client_id != NULL ? cfg.client_id : "sluice-pipe";
    uint64_t prefetch = 0;
    int r = sl__pipe_ep_opt_u64(e, "prefetch", TOPIC_SOURCE_PREFETCH_DEFAULT, 1, 1u << 20,
                                &prefetch, err, err_size);
    if (r == SL_OK) {
        cfg.prefetch_records = (uint32_t)prefetch;
        r = topic_start(s, e, p, &cfg, err, err_size);
    }
    if (r == SL_OK) {
        r = sl_consumer_new(&cfg, &s->parts[s->part_count].consumer);
        if (r != SL_OK) {
            return sl__pipe_ep_fail(err, err_size, r, "%s: consumer: %s", e->uri, sl_strerror(r));
        }
        s->parts[s->part_count++].partition = p;
    }
    return r;
}

// Opens this instance's partitions: partition N (instance N mod count), or all of them spread
// over the instances (partition p to instance p mod count).
static int
topic_open_parts(topic_source *s, const sl_pipe_endpoint *e, const sl_pipe_sluice_uri *u,
                 uint32_t instance, uint32_t instance_count, char *err, size_t err_size)
{
    const char *ptext = sl__pipe_ep_opt(e, "partition");
    uint64_t first = 0;
    uint32_t count = 1;
    int r = SL_OK;
    if (ptext != NULL && strcmp(ptext, "all") == 0) {
        r = topic_partition_count(u, &count, err, err_size);
    } else {
        r = sl__pipe_ep_opt_u64(e, "partition", 0, 0, UINT32_MAX - 1, &first, err, err_size);
    }
    for (uint32_t i = 0; i < count && r == SL_OK; i++) {
        uint32_t p = (uint32_t)first + i;
        if (p % instance_count != instance) {
            continue;
        }
        if (s->part_count == TOPIC_SOURCE_PARTITIONS_MAX) {
            return sl__pipe_ep_fail(err, err_size, SL_EINVAL,
                                    "%s: more than %u partitions per instance", e->uri,
                                    TOPIC_SOURCE_PARTITIONS_MAX);
        }
        r = topic_open_part(s, e, u, p, err, err_size);
    }
    return r;
}

static void topic_source_destroy(void *state);

static int
topic_source_create(const sl_pipe_endpoint *e, uint32_t instance, uint32_t instance_count,
                    void **state_out, char *err, size_t err_size)
{
    sl_pipe_sluice_uri *u = sl_alloc(sizeof(*u));
    sl_pipe_option *merged =
        sl_calloc(SL_PIPE_URI_PARAMS_MAX + e->option_count + 1, sizeof(*merged));
    topic_source *s = sl_calloc(1, sizeof(*s));
    int r = u && merged && s ? sl__pipe_sluice_uri_parse(e->uri, u, err, err_size) : SL_ENOMEM;
    sl_pipe_endpoint me;
    if (r == SL_OK) {
        sl__pipe_sluice_merge(e, u, merged, &me);
        r = sl__pipe_ep_check_known(&me, topic_source_options, err, err_size);
    }
    if (r == SL_OK) {
        r = sl__pipe_offsets_open(&s->offsets, sl__pipe_ep_opt(&me, "offsets"), err, err_size);
        s->has_offsets = r == SL_OK;
    }
    if (r == SL_OK) {
        r = topic_open_parts(s, &me, u, instance, SL_MAX(instance_count, 1), err, err_size);
    }
    if (merged != NULL) {
        sl_free(merged, (SL_PIPE_URI_PARAMS_MAX + e->option_count + 1) * sizeof(*merged));
    }
    if (u != NULL) {
        sl_free(u, sizeof(*u));
    }
    if (r != SL_OK && s != NULL) {
        topic_source_destroy(s);
    }
    if (r == SL_OK) {
        *state_out = s;
    }
    return r;
}

static int64_t
topic_timestamp_ns(const sl_consumed *c)
{
    return c->record.timestamp_us * 1000;
}

// Takes up to max records from part (never waiting) and emits them. Returns the count or an error.
static int
topic_drain_part(topic_source *s, topic_part *tp, sl_pipe_ctx *ctx, uint32_t max)
{
    size_t got = 0;
    int r = sl_consumer_poll(tp->consumer, s->chunk, SL_MIN(max, TOPIC_SOURCE_POLL_CHUNK),
                             SL_DEADLINE_NOW, &got);
    if (r == SL_EAGAIN || r == SL_ETIMEDOUT) {
        return 0;
    }
    if (r != SL_OK) {
        return r;
    }
    for (size_t i = 0; i < got; i++) {
        const sl_consumed *c = &s->chunk[i];
        sl_pipe_record rec = {.key = c->record.key,
                              .key_size = c->record.key_size,
                              .value = c->record.value,
                              .value_size = c->record.value_size,
                              .timestamp_ns = topic_timestamp_ns(c)};
        sl_pipe_origin origin = {.lane = c->partition, .token = c->offset};
        r = sl_pipe_source_emit(ctx, &rec, origin);
        if (r != SL_OK) {
            // The rest of the chunk is not emitted and so never committed: read again later.
            return i > 0 ? (int)i : r;
        }
    }
    return (int)got;
}

static int
topic_emit_ready(topic_source *s, sl_pipe_ctx *ctx, uint32_t max)
{
    uint32_t emitted = 0;
    for (uint32_t i = 0; i < s->part_count && emitted < max; i++) {
        topic_part *tp = &s->parts[(s->next_part + i) % s->part_count];
        int r = topic_drain_part(s, tp, ctx, max - emitted);
        if (r < 0) {
            return emitted > 0 ? (int)emitted : r;
        }
        emitted += (uint32_t)r;
    }
    s->next_part = (s->next_part + 1) % s->part_count;
    return (int)emitted;
}

static void
topic_wait_ready(topic_source *s, int64_t deadline_ns)
{
    struct pollfd pfds[TOPIC_SOURCE_PARTITIONS_MAX];
    for (uint32_t i = 0; i < s->part_count; i++) {
        pfds[i] =
            (struct pollfd){.fd = sl_consumer_ready_fd(s->parts[i].consumer), .events = POLLIN};
    }
    int64_t now = sl_now_ns();
    int timeout_ms = deadline_ns > now ? (int)SL_MIN((deadline_ns - now) / 1000000 + 1,
                                                     (int64_t)SL_PIPE_SOURCE_TICK_MS)
                                       : 0;
    (void)poll(pfds, s->part_count, timeout_ms);
}

static int
topic_source_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    topic_source *s = state;
    (void)sl__pipe_offsets_flush(&s->offsets, false);
    if (s->part_count == 0) {
        return SL_ECLOSED; // no partition falls to this instance
    }
    if (max_records == 0) {
        return 0; // the consumers' I/O threads keep the sessions alive meanwhile
    }
    int r = topic_emit_ready(s, ctx, max_records);
    if (r != 0) {
        return r;
    }
    topic_wait_ready(s, deadline_ns);
    r = topic_emit_ready(s, ctx, max_records);
    return r != 0 ? r : SL_EAGAIN;
}

static void
topic_source_commit(void *state, uint32_t lane, uint64_t token)
{
    topic_source *s = state;
    for (uint32_t i = 0; i < s->part_count; i++) {
        if (s->parts[i].partition == lane) {
            // SL_EINVAL only for an offset not yet polled: the runtime never commits one.
            int r = sl_consumer_ack(s->parts[i].consumer, token);
            SL_UNUSED(r);
            sl__pipe_offsets_commit(&s->offsets, lane, token);
            return;
        }
    }
}

static void
topic_source_destroy(void *state)
{
    topic_source *s = state;
    for (uint32_t i = 0; i < s->part_count; i++) {
        sl_consumer_free(s->parts[i].consumer);
    }
    if (s->has_offsets) {
        sl__pipe_offsets_close(&s->offsets);
    }
    sl_free(s, sizeof(*s));
}

const sl_pipe_source_ops sl__pipe_source_topic = {
    .scheme = "sluice",
    .create = topic_source_create,
    .poll = topic_source_poll,
    .commit = topic_source_commit,
    .destroy = topic_source_destroy,
};
