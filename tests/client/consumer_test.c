// Consumer and admin calls against a fake broker thread on 127.0.0.1: REQUEST/DELIVER with
// partial batches (first_offset/end_offset trimming), the prefetch window bounding demand, a cut
// connection resumed without gaps or duplicates, a paused consumer kept alive by heartbeats,
// explicit and automatic acks (COMMIT), SL_EAGAIN with the ready fd, and the admin round trips.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/client.h>
#include <sluice/error.h>

#include "core/util.h"

#define FAKE_FRAME      (1024u * 1024u)
#define FAKE_RBUF       (FAKE_FRAME + 4096u)
#define FAKE_RECORDS    1000u
#define FAKE_BATCH_RECS 10u
#define FAKE_BATCHES    (FAKE_RECORDS / FAKE_BATCH_RECS)
#define FAKE_CHUNK      7u // records per DELIVER at most: batches arrive in pieces
#define TEST_WAIT_MS    20000

typedef struct fake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    uint8_t *batch[FAKE_BATCHES];
    size_t batch_len[FAKE_BATCHES];
    // Scenario.
    uint32_t hb_ms;
    bool hold;          // deliver nothing until cleared
    uint64_t cut_after; // cut the link once after delivering this many records (0: never)
    // State under mu.
    uint64_t delivered;
    uint64_t max_demand;
    uint64_t max_demand_bytes;
    uint32_t max_batch_bytes; // announced in STREAM_OK
    uint64_t committed;
    int pings;
    int evictions;
    int connections;
    char topics[4][32];
    int topic_count;
} fake;

typedef struct fconn {
    int fd;
    uint32_t stream;
    uint64_t cursor;
    uint64_t demand;
    uint64_t demand_bytes;
    uint8_t out[FAKE_FRAME + 4096];
} fconn;

static int
fake_send(int fd, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < 10000 && off < len; i++) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

static int
fake_pump(fake *f, fconn *c)
{
    for (int i = 0;
         i < 10000 && !f->hold && c->stream != 0 && c->demand > 0 && c->cursor < FAKE_RECORDS;
         i++) {
        uint64_t bi = c->cursor / FAKE_BATCH_RECS;
        if (f->batch_len[bi] > c->demand_bytes) {
            break; // the byte demand does not cover the next batch
        }
        c->demand_bytes -= f->batch_len[bi];
        uint64_t end =
            SL_MIN((bi + 1) * FAKE_BATCH_RECS, c->cursor + SL_MIN(c->demand, FAKE_CHUNK));
        sl_proto_deliver d = {
            .first_offset = c->cursor,
            .end_offset = end,
            .log_end_offset = FAKE_RECORDS,
            .batches = {.data = f->batch[bi], .size_bytes = f->batch_len[bi], .batch_count = 1}};
        size_t len = 0;
        assert_int_equal(sl_proto_encode_deliver(c->out, sizeof(c->out), c->stream, &d, &len),
                         SL_OK);
        if (fake_send(c->fd, c->out, len) != 0) {
            return -1;
        }
        f->delivered += end - c->cursor;
        c->demand -= end - c->cursor;
        c->cursor = end;
        if (f->cut_after != 0 && f->delivered >= f->cut_after) {
            f->cut_after = 0;
            return -1;
        }
    }
    return 0;
}

static int
fake_admin(fake *f, fconn *c, const sl_frame *fr)
{
    size_t len = 0;
    int err = SL_OK;
    switch (fr->header.type) {
    case SL_FRAME_CREATE_TOPIC: {
        const sl_proto_create_topic *m = &fr->u.create_topic;
        sl_proto_admin_result r = {.correlation_id = m->correlation_id};
        for (int i = 0; i < f->topic_count; i++) {
            if (strlen(f->topics[i]) == m->topic.size &&
                memcmp(f->topics[i], m->topic.data, m->topic.size) == 0) {
                r.status.code = sl_proto_code_from_status(SL_EEXIST);
                r.status.message = (sl_proto_str){"topic exists", 12};
            }
        }
        if (r.status.code == 0 && f->topic_count < 4) {
            memcpy(f->topics[f->topic_count], m->topic.data, SL_MIN(m->topic.size, 31));
            f->topic_count++;
        }
        err = sl_proto_encode_admin_result(c->out, sizeof(c->out), &r, &len);
        break;
    }
    case SL_FRAME_LIST_TOPICS: {
        sl_proto_topic_entry e[4];
        for (int i = 0; i < f->topic_count; i++) {
            e[i] = (sl_proto_topic_entry){{f->topics[i], (uint16_t)strlen(f->topics[i])}, 3};
        }
        sl_proto_topic_list l = {.correlation_id = fr->u.list_topics.correlation_id,
                                 .entry_count = (uint16_t)f->topic_count,
                                 .entries = e};
        err = sl_proto_encode_topic_list(c->out, sizeof(c->out), &l, &len);
        break;
    }
    case SL_FRAME_DESCRIBE_TOPIC: {
        sl_proto_partition_info p[2] = {{0, 10, 9, 100}, {5, 20, 20, 200}};
        sl_proto_topic_info t = {.correlation_id = fr->u.topic_request.correlation_id,
                                 .config = {.partition_count = 2, .max_backlog_bytes = 1000},
                                 .topic = fr->u.topic_request.topic,
                                 .partitions = p};
        err = sl_proto_encode_topic_info(c->out, sizeof(c->out), &t, &len);
        break;
    }
    case SL_FRAME_STATS: {
        sl_proto_stat s[2] = {{{"records_in_total", 16}, 42}, {{"connections", 11}, 2}};
        sl_proto_stats_result r = {
            .correlation_id = fr->u.topic_request.correlation_id, .entry_count = 2, .entries = s};
        err = sl_proto_encode_stats_result(c->out, sizeof(c->out), &r, &len);
        break;
    }
    case SL_FRAME_DELETE_TOPIC: {
        sl_proto_admin_result r = {.correlation_id = fr->u.topic_request.correlation_id};
        f->topic_count = f->topic_count > 0 ? f->topic_count - 1 : 0;
        err = sl_proto_encode_admin_result(c->out, sizeof(c->out), &r, &len);
        break;
    }
    default:
        return 0;
    }
    assert_int_equal(err, SL_OK);
    return fake_send(c->fd, c->out, len);
}

static int
fake_frame(fake *f, fconn *c, const sl_frame *fr)
{
    size_t len = 0;
    switch (fr->header.type) {
    case SL_FRAME_HELLO: {
        sl_proto_hello_ok ok = {.version = 1,
                                .max_frame_bytes = FAKE_FRAME,
                                .heartbeat_ms = f->hb_ms,
                                .max_streams = 16,
                                .broker_id = {"fake", 4}};
        assert_int_equal(sl_proto_encode_hello_ok(c->out, sizeof(c->out), &ok, &len), SL_OK);
        return fake_send(c->fd, c->out, len);
    }
    case SL_FRAME_PING: {
        f->pings++;
        sl_proto_ping p = {.nonce = fr->u.ping.nonce};
        assert_int_equal(sl_proto_encode_ping(c->out, sizeof(c->out), true, &p, &len), SL_OK);
        return fake_send(c->fd, c->out, len);
    }
    case SL_FRAME_OPEN_CONSUME: {
        const sl_proto_open_consume *m = &fr->u.open_consume;
        c->stream = fr->header.stream_id;
        c->demand = c->demand_bytes = 0;
        c->cursor = m->start_mode == SL_START_OFFSET   ? m->start_offset
                    : m->start_mode == SL_START_LATEST ? FAKE_RECORDS
                                                       : 0;
        sl_proto_stream_ok ok = {.kind = SL_STREAM_CONSUME,
                                 .partition = m->partition,
                                 .start_offset = c->cursor,
                                 .max_batch_bytes = f->max_batch_bytes};
        assert_int_equal(sl_proto_encode_stream_ok(c->out, sizeof(c->out), c->stream, &ok, &len),
                         SL_OK);
        return fake_send(c->fd, c->out, len);
    }
    case SL_FRAME_REQUEST:
        c->demand += fr->u.request.records;
        c->demand_bytes += fr->u.request.bytes;
        f->max_demand = SL_MAX(f->max_demand, c->demand);
        f->max_demand_bytes = SL_MAX(f->max_demand_bytes, c->demand_bytes);
        return 0;
    case SL_FRAME_COMMIT:
        f->committed = fr->u.commit.offset;
        return 0;
    default:
        return fake_admin(f, c, fr);
    }
}

static void
fake_serve(fake *f, int fd)
{
    fconn *c = calloc(1, sizeof(*c));
    uint8_t *buf = malloc(FAKE_RBUF);
    size_t have = 0;
    c->fd = fd;
    int64_t last_rx = sl_now_ns();
    while (!atomic_load(&f->stop)) {
        pthread_mutex_lock(&f->mu);
        int rc = fake_pump(f, c);
        // Eviction for silence: a live client sends something every heartbeat interval.
        if (rc == 0 && sl_now_ns() - last_rx > (int64_t)f->hb_ms * 3 * 1000000) {
            f->evictions++;
            rc = -1;
        }
        pthread_mutex_unlock(&f->mu);
        if (rc != 0) {
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + have, FAKE_RBUF - have, 0);
        if (n <= 0) {
            break;
        }
        last_rx = sl_now_ns();
        have += (size_t)n;
        size_t pos = 0;
        pthread_mutex_lock(&f->mu);
        for (int i = 0; i < 100000 && rc == 0; i++) {
            sl_frame fr;
            size_t used = 0;
            int err = sl_proto_decode(buf + pos, have - pos, FAKE_FRAME, &fr, &used, NULL);
            if (err == SL_EAGAIN) {
                break;
            }
            assert_int_equal(err, SL_OK);
            rc = fake_frame(f, c, &fr);
            pos += used;
        }
        pthread_mutex_unlock(&f->mu);
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        if (rc != 0) {
            break;
        }
    }
    close(fd);
    free(buf);
    free(c);
}

static void *
fake_main(void *arg)
{
    fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd >= 0) {
            pthread_mutex_lock(&f->mu);
            f->connections++;
            pthread_mutex_unlock(&f->mu);
            fake_serve(f, fd);
        }
    }
    return NULL;
}

static fake *
fake_start(uint32_t hb_ms)
{
    fake *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->hb_ms = hb_ms;
    f->max_batch_bytes = 1u << 20;
    for (uint32_t b = 0; b < FAKE_BATCHES; b++) {
        f->batch[b] = malloc(4096);
        sl_batch_builder bb;
        sl_batch_builder_init(&bb, f->batch[b], 4096);
        for (uint32_t i = 0; i < FAKE_BATCH_RECS; i++) {
            char value[32];
            int n = snprintf(value, sizeof(value), "value-%u", b * FAKE_BATCH_RECS + i);
            sl_record r = {.key = "k",
                           .key_size = 1,
                           .value = value,
                           .value_size = (uint32_t)n,
                           .timestamp_us = 1000 + b};
            assert_int_equal(sl_batch_builder_add(&bb, &r), SL_OK);
        }
        assert_int_equal(sl_batch_builder_finish(&bb, &f->batch_len[b]), SL_OK);
        sl_batch_set_base_offset(f->batch[b], (uint64_t)b * FAKE_BATCH_RECS);
    }
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    socklen_t alen = sizeof(a);
    getsockname(f->lfd, (struct sockaddr *)&a, &alen);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

static void
fake_stop(fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    for (uint32_t b = 0; b < FAKE_BATCHES; b++) {
        free(f->batch[b]);
    }
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static uint64_t
fake_get(fake *f, const uint64_t *field)
{
    pthread_mutex_lock(&f->mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static void
consumer_cfg(sl_consumer_config *cfg, const fake *f, char *broker, size_t size)
{
    sl_consumer_config_init(cfg);
    snprintf(broker, size, "127.0.0.1:%u", f->port);
    cfg->broker = broker;
    cfg->topic = "events";
    cfg->prefetch_records = 50;
    cfg->heartbeat_ms = 1000;
    cfg->reconnect_backoff_max_ms = 200;
}

// Polls until every record of the fake log is seen; each offset exactly once, in order.
static void
poll_all(sl_consumer *c, uint64_t from)
{
    uint64_t next = from;
    int64_t deadline = sl_deadline_after_ms(TEST_WAIT_MS);
    while (next < FAKE_RECORDS && sl_now_ns() < deadline) {
        sl_consumed recs[32];
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, 32, sl_deadline_after_ms(500), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(recs[i].offset, next);
            char want[32];
            int len = snprintf(want, sizeof(want), "value-%llu", (unsigned long long)next);
            assert_int_equal(recs[i].record.value_size, (uint32_t)len);
            assert_memory_equal(recs[i].record.value, want, (size_t)len);
            assert_int_equal(recs[i].record.key_size, 1);
            next++;
        }
    }
    if (next != FAKE_RECORDS) {
        sl_consumer_stats st;
        sl_consumer_stats_get(c, &st);
        fprintf(
            stderr, "poll_all stalled at %llu: buffered %llu/%llu requested %llu delivered %llu\n",
            (unsigned long long)next, (unsigned long long)st.buffered_records,
            (unsigned long long)st.buffered_bytes, (unsigned long long)st.requested_records_total,
            (unsigned long long)st.records_delivered_total);
    }
    assert_int_equal(next, FAKE_RECORDS);
}

static void
test_consumer_polls_partial_batches_within_prefetch(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    poll_all(c, 0);
    assert_true(fake_get(f, &f->max_demand) <= 50); // demand never exceeds the window
    sl_consumer_stats st;
    sl_consumer_stats_get(c, &st);
    assert_int_equal(st.records_polled_total, FAKE_RECORDS);
    assert_int_equal(st.log_end_offset, FAKE_RECORDS);
    sl_consumer_free(c); // auto_ack: the final commit covers everything polled
    for (int i = 0; i < 2000 && fake_get(f, &f->committed) != FAKE_RECORDS; i++) {
        usleep(5000); // the fake reads the last COMMIT on its own thread
    }
    assert_int_equal(fake_get(f, &f->committed), FAKE_RECORDS);
    fake_stop(f);
}

static void
test_consumer_byte_window_bounds_demand_without_stalling(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    pthread_mutex_lock(&f->mu);
    f->max_batch_bytes = 1024; // the fake's batches are a few hundred bytes
    pthread_mutex_unlock(&f->mu);
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.prefetch_records = 1000;
    cfg.prefetch_bytes = 1; // raised to one batch (max_batch_bytes) so progress is certain
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    poll_all(c, 0);
    assert_true(fake_get(f, &f->max_demand_bytes) <= 1024);
    sl_consumer_free(c);
    fake_stop(f);
}

static void
test_consumer_resumes_after_cut_without_gaps(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    f->cut_after = 333;
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    poll_all(c, 0);
    sl_consumer_stats st;
    sl_consumer_stats_get(c, &st);
    assert_true(st.client.connects_total >= 2);
    sl_consumer_free(c);
    fake_stop(f);
}

static void
test_consumer_paused_is_kept_alive_by_heartbeats(void **state)
{
    (void)state;
    fake *f = fake_start(200); // evicts after 600 ms of silence
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.prefetch_records = 20;
    cfg.heartbeat_ms = 200;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    usleep(2000 * 1000); // the application takes nothing: demand stops, liveness does not
    assert_int_equal(fake_get(f, (uint64_t *)&f->delivered), 20);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->evictions, 0);
    assert_int_equal(f->connections, 1);
    assert_true(f->pings >= 5);
    pthread_mutex_unlock(&f->mu);
    sl_consumer_stats st;
    sl_consumer_stats_get(c, &st);
    assert_int_equal(st.buffered_records, 20);
    assert_int_equal(st.client.disconnects_total, 0);
    poll_all(c, 0);
    sl_consumer_free(c);
    fake_stop(f);
}

typedef struct seen {
    uint64_t count;
    uint64_t last;
} seen;

static void
on_record(const sl_consumed *rec, void *user)
{
    seen *s = user;
    s->count++;
    s->last = rec->offset;
}

static void
test_consumer_dispatch_and_explicit_ack(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.auto_ack = false;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    seen s = {0};
    size_t n = 0;
    assert_int_equal(
        sl_consumer_dispatch(c, 10, sl_deadline_after_ms(TEST_WAIT_MS), on_record, &s, &n), SL_OK);
    assert_true(n >= 1 && n <= 10);
    assert_int_equal(s.count, n);
    assert_int_equal(sl_consumer_ack(c, s.last + 1), SL_EINVAL); // not handed out yet
    assert_int_equal(sl_consumer_ack(c, s.last), SL_OK);
    int64_t deadline = sl_deadline_after_ms(TEST_WAIT_MS);
    while (fake_get(f, &f->committed) != s.last + 1 && sl_now_ns() < deadline) {
        usleep(5000);
    }
    assert_int_equal(fake_get(f, &f->committed), s.last + 1);
    sl_consumer_free(c); // without auto_ack nothing more is committed
    assert_int_equal(fake_get(f, &f->committed), s.last + 1);
    fake_stop(f);
}

static void
on_ready(void *user)
{
    atomic_int *calls = user;
    atomic_fetch_add(calls, 1);
}

static void
test_consumer_eagain_then_ready_fd(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    f->hold = true;
    atomic_int calls = 0;
    sl_consumer_config cfg;
    char broker[64];
    consumer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.ready_cb = on_ready;
    cfg.ready_user = &calls;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    sl_consumed recs[8];
    size_t n = 0;
    assert_int_equal(sl_consumer_poll(c, recs, 8, SL_DEADLINE_NOW, &n), SL_EAGAIN);
    assert_int_equal(sl_consumer_poll(c, recs, 8, sl_deadline_after_ms(50), &n), SL_ETIMEDOUT);
    assert_int_equal(sl_consumer_poll(c, recs, 8, SL_DEADLINE_NOW, &n), SL_EAGAIN);
    struct pollfd pfd = {.fd = sl_consumer_ready_fd(c), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 50), 0);
    pthread_mutex_lock(&f->mu);
    f->hold = false;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(poll(&pfd, 1, TEST_WAIT_MS), 1);
    assert_int_equal(sl_consumer_poll(c, recs, 8, SL_DEADLINE_NOW, &n), SL_OK);
    assert_true(n > 0);
    assert_int_equal(recs[0].offset, 0);
    for (int i = 0; i < 2000 && atomic_load(&calls) == 0; i++) {
        usleep(5000); // the callback runs just after the fd is signalled
    }
    assert_true(atomic_load(&calls) >= 1);
    sl_consumer_free(c);
    fake_stop(f);
}

static void
on_topic(const char *name, uint32_t partitions, void *user)
{
    int *count = user;
    assert_true(strcmp(name, "alpha") == 0 || strcmp(name, "beta") == 0);
    assert_int_equal(partitions, 3);
    (*count)++;
}

static void
on_partition(const sl_proto_topic_config *cfg, uint32_t partition,
             const sl_proto_partition_info *info, void *user)
{
    int *count = user;
    assert_int_equal(cfg->partition_count, 2);
    if (partition != UINT32_MAX) {
        assert_non_null(info);
        assert_int_equal(info->log_end_offset, partition == 0 ? 10 : 20);
    }
    (*count)++;
}

static void
on_stat(const char *name, uint64_t value, void *user)
{
    int *count = user;
    if (strcmp(name, "records_in_total") == 0) {
        assert_int_equal(value, 42);
    }
    (*count)++;
}

static void
test_admin_round_trips(void **state)
{
    (void)state;
    fake *f = fake_start(1000);
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", f->port);
    sl_admin *a = NULL;
    assert_int_equal(sl_admin_open(broker, sl_deadline_after_ms(TEST_WAIT_MS), &a), SL_OK);
    int64_t dl = sl_deadline_after_ms(TEST_WAIT_MS);
    sl_proto_topic_config tc = {.partition_count = 3};
    assert_int_equal(sl_admin_create_topic(a, "alpha", &tc, dl), SL_OK);
    assert_int_equal(sl_admin_create_topic(a, "beta", &tc, dl), SL_OK);
    assert_int_equal(sl_admin_create_topic(a, "alpha", &tc, dl), SL_EEXIST);
    assert_string_equal(sl_admin_last_message(a), "topic exists");
    assert_int_equal(sl_admin_create_topic(a, "bad/name", &tc, dl), SL_EINVAL);
    int count = 0;
    assert_int_equal(sl_admin_list_topics(a, dl, on_topic, &count), SL_OK);
    assert_int_equal(count, 2);
    count = 0;
    assert_int_equal(sl_admin_describe_topic(a, "alpha", dl, on_partition, &count), SL_OK);
    assert_int_equal(count, 3);
    count = 0;
    assert_int_equal(sl_admin_stats(a, NULL, dl, on_stat, &count), SL_OK);
    assert_int_equal(count, 2);
    assert_int_equal(sl_admin_delete_topic(a, "beta", dl), SL_OK);
    sl_admin_close(a);
    fake_stop(f);
    // Nobody listening: a clear refusal, within the deadline.
    assert_int_equal(sl_admin_open("127.0.0.1:1", sl_deadline_after_ms(2000), &a), SL_ECONNREFUSED);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_polls_partial_batches_within_prefetch),
        cmocka_unit_test(test_consumer_byte_window_bounds_demand_without_stalling),
        cmocka_unit_test(test_consumer_resumes_after_cut_without_gaps),
        cmocka_unit_test(test_consumer_paused_is_kept_alive_by_heartbeats),
        cmocka_unit_test(test_consumer_dispatch_and_explicit_ack),
        cmocka_unit_test(test_consumer_eagain_then_ready_fd),
        cmocka_unit_test(test_admin_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
