// Key routing of a producer with partition ANY: the documented FNV-1a hash, and against a real
// sluiced ($SL_SLUICED; skipped when not built) a 4-partition topic fed 50 interleaved keys and
// keyless records: each key lands in the partition sl_partition_for_key names, in order, every
// acked record once at the offset its report gave, and keyless batches spread over all partitions.
// A fake broker with three partitions checks that one starved partition does not hold up the
// others inside the producer.
// ctest-labels: concurrent
// ctest-timeout: 180
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
#include "support/broker_proc.h"

#define ROUTE_WAIT_MS    60000
#define ROUTE_PARTITIONS 4u
#define ROUTE_KEYS       50u
#define ROUTE_PER_KEY    200u
#define ROUTE_KEYED      (ROUTE_KEYS * ROUTE_PER_KEY)
#define ROUTE_KEYLESS    3000u
#define ROUTE_TOTAL      (ROUTE_KEYED + ROUTE_KEYLESS)

static void
test_partition_for_key_is_fnv1a(void **state)
{
    (void)state;
    // 32-bit FNV-1a reference values: "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968.
    assert_int_equal(sl_partition_for_key("", 0, UINT32_MAX), 0x811c9dc5u % UINT32_MAX);
    assert_int_equal(sl_partition_for_key("a", 1, UINT32_MAX), 0xe40c292cu);
    assert_int_equal(sl_partition_for_key("foobar", 6, UINT32_MAX), 0xbf9cf968u);
    assert_int_equal(sl_partition_for_key("foobar", 6, 7), 0xbf9cf968u % 7);
    assert_int_equal(sl_partition_for_key("foobar", 6, 1), 0);
    assert_int_equal(sl_partition_for_key("foobar", 6, 0), 0);
    // Fifty short keys over four partitions use every partition.
    bool used[ROUTE_PARTITIONS] = {false};
    for (uint32_t k = 0; k < ROUTE_KEYS; k++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "key-%u", k);
        used[sl_partition_for_key(key, (size_t)n, ROUTE_PARTITIONS)] = true;
    }
    for (uint32_t i = 0; i < ROUTE_PARTITIONS; i++) {
        assert_true(used[i]);
    }
}

static bool
have_broker(void)
{
    const char *bin = getenv("SL_SLUICED");
    return bin != NULL && access(bin, X_OK) == 0;
}

// What the delivery reports said about each send sequence.
typedef struct route_acks {
    pthread_mutex_t mu;
    uint32_t partition[ROUTE_TOTAL];
    uint64_t offset[ROUTE_TOTAL];
    uint8_t acked[ROUTE_TOTAL];
    uint64_t failed;
    uint64_t reports;
} route_acks;

static void
on_report(const sl_delivery_report *r, void *user)
{
    route_acks *ra = user;
    pthread_mutex_lock(&ra->mu);
    ra->reports++;
    for (uint32_t i = 0; i < r->record_count; i++) {
        uint64_t seq = r->seq + i;
        if (seq >= ROUTE_TOTAL) {
            ra->failed++; // a sequence never sent: counted as a failure to assert on
            continue;
        }
        if (r->err != SL_OK) {
            ra->failed++;
            continue;
        }
        ra->acked[seq]++;
        ra->partition[seq] = r->partition;
        ra->offset[seq] = r->offset == SL_OFFSET_NONE ? SL_OFFSET_NONE : r->offset + i;
    }
    pthread_mutex_unlock(&ra->mu);
}

// Record i: keyed "s<i> k<key> <n>" (key i % 50, n-th of its key) for the first ROUTE_KEYED,
// then keyless "s<i> - 0".
static int
route_record(uint64_t i, char *key, size_t key_cap, char *value, size_t value_cap, sl_record *r)
{
    memset(r, 0, sizeof(*r));
    int vn = 0;
    if (i < ROUTE_KEYED) {
        uint32_t k = (uint32_t)(i % ROUTE_KEYS);
        int kn = snprintf(key, key_cap, "key-%u", k);
        r->key = key;
        r->key_size = (uint32_t)kn;
        vn = snprintf(value, value_cap, "s%llu k%u %llu", (unsigned long long)i, k,
                      (unsigned long long)(i / ROUTE_KEYS));
    } else {
        vn = snprintf(value, value_cap, "s%llu - 0", (unsigned long long)i);
    }
    r->value = value;
    r->value_size = (uint32_t)vn;
    r->timestamp_us = 1;
    return vn;
}

typedef struct route_audit {
    uint8_t seen[ROUTE_TOTAL];
    int64_t last_index[ROUTE_KEYS];
    uint64_t keyless_in[ROUTE_PARTITIONS];
    uint64_t total;
} route_audit;

// Reads one partition from the start until it stays quiet, checking each record against what
// was sent and acked.
static void
consume_partition(const char *broker, uint32_t partition, const route_acks *ra, route_audit *au)
{
    sl_consumer_config cfg;
    sl_consumer_config_init(&cfg);
    cfg.broker = broker;
    cfg.topic = "routed";
    cfg.partition = partition;
    cfg.prefetch_records = 1000;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cfg, &c), SL_OK);
    for (uint32_t k = 0; k < ROUTE_KEYS; k++) {
        au->last_index[k] = -1;
    }
    int64_t deadline = sl_deadline_after_ms(ROUTE_WAIT_MS);
    int64_t idle_until = sl_deadline_after_ms(ROUTE_WAIT_MS / 4);
    while (sl_now_ns() < deadline && sl_now_ns() < idle_until) {
        sl_consumed recs[64];
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, 64, sl_deadline_after_ms(200), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        for (size_t i = 0; i < n; i++) {
            char text[64] = {0};
            memcpy(text, recs[i].record.value, SL_MIN(recs[i].record.value_size, 63));
            unsigned long long seq = 0;
            char kt[16] = {0};
            unsigned long long index = 0;
            assert_int_equal(sscanf(text, "s%llu %15s %llu", &seq, kt, &index), 3);
            assert_true(seq < ROUTE_TOTAL);
            au->seen[seq]++;
            au->total++;
            // (3) at the partition and offset its delivery report named.
            assert_int_equal(ra->acked[seq], 1);
            assert_int_equal(ra->partition[seq], partition);
            if (ra->offset[seq] != SL_OFFSET_NONE) {
                assert_int_equal(ra->offset[seq], recs[i].offset);
            }
            if (kt[0] == '-') {
                assert_null(recs[i].record.key);
                au->keyless_in[partition]++;
                continue;
            }
            uint32_t k = (uint32_t)strtoul(kt + 1, NULL, 10);
            assert_true(k < ROUTE_KEYS);
            // (1) the partition sl_partition_for_key names.
            assert_int_equal(partition,
                             sl_partition_for_key(recs[i].record.key, recs[i].record.key_size,
                                                  ROUTE_PARTITIONS));
            // (2) each key's records in the order they were sent.
            assert_int_equal((int64_t)index, au->last_index[k] + 1);
            au->last_index[k] = (int64_t)index;
        }
        if (n > 0) {
            idle_until = SL_MIN(deadline, sl_deadline_after_ms(1500));
        }
    }
    sl_consumer_free(c);
}

static void
test_live_keys_route_to_their_partition(void **state)
{
    (void)state;
    if (!have_broker()) {
        skip();
    }
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", b.port);
    sl_admin *a = NULL;
    assert_int_equal(sl_admin_open(broker, sl_deadline_after_ms(ROUTE_WAIT_MS), &a), SL_OK);
    sl_proto_topic_config tc = {.partition_count = ROUTE_PARTITIONS};
    assert_int_equal(sl_admin_create_topic(a, "routed", &tc, sl_deadline_after_ms(ROUTE_WAIT_MS)),
                     SL_OK);
    sl_admin_close(a);

    route_acks *ra = calloc(1, sizeof(*ra));
    pthread_mutex_init(&ra->mu, NULL);
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = broker;
    cfg.topic = "routed";
    cfg.buffer_bytes = 256 * 1024; // small: all partitions share it
    cfg.batch_bytes = 8 * 1024;    // many batches, so keyless ones rotate
    cfg.delivery_cb = on_report;
    cfg.delivery_user = ra;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    for (uint64_t i = 0; i < ROUTE_TOTAL; i++) {
        char key[16];
        char value[64];
        sl_record r;
        route_record(i, key, sizeof(key), value, sizeof(value), &r);
        uint64_t seq = UINT64_MAX;
        assert_int_equal(sl_producer_send(p, &r, sl_deadline_after_ms(ROUTE_WAIT_MS), &seq), SL_OK);
        assert_int_equal(seq, i);
    }
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(ROUTE_WAIT_MS)), SL_OK);
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    sl_producer_free(p);
    assert_int_equal(st.records_acked_total, ROUTE_TOTAL);
    assert_int_equal(ra->failed, 0);
    for (uint64_t i = 0; i < ROUTE_TOTAL; i++) {
        assert_int_equal(ra->acked[i], 1);
    }

    route_audit *au = calloc(1, sizeof(*au));
    for (uint32_t part = 0; part < ROUTE_PARTITIONS; part++) {
        consume_partition(broker, part, ra, au);
    }
    // (3) every acked record exactly once; (4) keyless records in every partition.
    assert_int_equal(au->total, ROUTE_TOTAL);
    for (uint64_t i = 0; i < ROUTE_TOTAL; i++) {
        assert_int_equal(au->seen[i], 1);
    }
    for (uint32_t part = 0; part < ROUTE_PARTITIONS; part++) {
        assert_true(au->keyless_in[part] > 0);
    }
    print_message("routed: %llu reports for %u records; keyless per partition %llu %llu %llu "
                  "%llu\n",
                  (unsigned long long)ra->reports, ROUTE_TOTAL,
                  (unsigned long long)au->keyless_in[0], (unsigned long long)au->keyless_in[1],
                  (unsigned long long)au->keyless_in[2], (unsigned long long)au->keyless_in[3]);
    free(au);
    pthread_mutex_destroy(&ra->mu);
    free(ra);
    assert_true(sl_test_broker_stop(&b) >= 0);
    sl_test_broker_cleanup(&b);
}

// A topic that does not exist fails records and later sends, as an unknown topic always has.
static void
test_live_unknown_topic_fails_sends(void **state)
{
    (void)state;
    if (!have_broker()) {
        skip();
    }
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", b.port);
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = broker;
    cfg.topic = "nowhere";
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    sl_record r = {.key = "k", .key_size = 1, .value = "v", .value_size = 1};
    int err = SL_OK;
    uint64_t accepted = 0;
    int64_t deadline = sl_deadline_after_ms(ROUTE_WAIT_MS);
    for (int i = 0; i < 100000 && err == SL_OK && sl_now_ns() < deadline; i++) {
        err = sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL);
        accepted += err == SL_OK;
        usleep(1000);
    }
    assert_int_equal(err, SL_ENOENT);
    // Every record accepted before the broker said "no such topic" is reported failed with it.
    // On a slow machine the answer may come before the first send: then nothing was accepted.
    sl_delivery_report rep[16];
    uint64_t reported = 0;
    for (int i = 0; i < 100 && reported < accepted; i++) { // bounded: 100 polls of up to 1 s
        size_t n = 0;
        assert_int_equal(sl_producer_poll_reports(p, rep, 16, sl_deadline_after_ms(1000), &n),
                         SL_OK);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(rep[k].err, SL_ENOENT);
            reported += rep[k].record_count;
        }
    }
    assert_true(reported == accepted);
    sl_producer_free(p);
    assert_true(sl_test_broker_stop(&b) >= 0);
    sl_test_broker_cleanup(&b);
}

// ---- fake broker: three partitions, partition 1 never gets credit ----------------------------

#define FAKE_PARTS   3u
#define FAKE_STARVED 1u
#define FAKE_FRAME   (1024u * 1024u)

typedef struct hfake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    atomic_ullong appended[FAKE_PARTS]; // records acked per partition
    atomic_int describes;
} hfake;

static int
hsend(int fd, const uint8_t *buf, size_t len)
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

typedef struct hconn {
    int fd;
    uint32_t stream_part[64]; // stream id / 2 -> partition + 1 (0: none)
    uint32_t next_seq[FAKE_PARTS];
    uint8_t out[65536];
} hconn;

static int
hfake_open(hconn *c, const sl_frame *fr)
{
    uint32_t sid = fr->header.stream_id;
    uint32_t part = fr->u.open_produce.partition;
    assert_true(part < FAKE_PARTS); // a routed producer names its partition
    assert_true(sid / 2 < 64);
    c->stream_part[sid / 2] = part + 1;
    size_t len = 0;
    sl_proto_stream_ok ok = {.kind = SL_STREAM_PRODUCE,
                             .partition = part,
                             .producer_id = 10 + part,
                             .next_seq = c->next_seq[part],
                             .max_batch_bytes = FAKE_FRAME / 2};
    assert_int_equal(sl_proto_encode_stream_ok(c->out, sizeof(c->out), sid, &ok, &len), SL_OK);
    if (hsend(c->fd, c->out, len) != 0 || part == FAKE_STARVED) {
        return part == FAKE_STARVED ? 0 : -1;
    }
    sl_proto_credit cr = {.granted_total_bytes = 1ull << 40};
    assert_int_equal(sl_proto_encode_credit(c->out, sizeof(c->out), sid, &cr, &len), SL_OK);
    return hsend(c->fd, c->out, len);
}

static int
hfake_produce(hfake *f, hconn *c, const sl_frame *fr)
{
    uint32_t sid = fr->header.stream_id;
    uint32_t part = c->stream_part[sid / 2] - 1;
    assert_true(part < FAKE_PARTS && part != FAKE_STARVED); // never beyond credit
    uint32_t n = fr->u.produce.batches.record_count;
    assert_int_equal(fr->u.produce.first_seq, c->next_seq[part]); // contiguous per stream
    c->next_seq[part] += n;
    uint64_t base = atomic_fetch_add(&f->appended[part], n);
    sl_proto_ack a = {.seq_end = c->next_seq[part],
                      .acks = fr->u.produce.acks,
                      .base_offset = base,
                      .last_offset = base + n - 1};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_ack(c->out, sizeof(c->out), sid, &a, &len), SL_OK);
    return hsend(c->fd, c->out, len);
}

static int
hfake_frame(hfake *f, hconn *c, const sl_frame *fr)
{
    size_t len = 0;
    int err = SL_OK;
    switch (fr->header.type) {
    case SL_FRAME_HELLO: {
        sl_proto_hello_ok ok = {.version = 1,
                                .max_frame_bytes = FAKE_FRAME,
                                .heartbeat_ms = fr->u.hello.heartbeat_ms,
                                .max_streams = 16,
                                .broker_id = {"fake", 4}};
        err = sl_proto_encode_hello_ok(c->out, sizeof(c->out), &ok, &len);
        break;
    }
    case SL_FRAME_PING: {
        sl_proto_ping p = {.nonce = fr->u.ping.nonce};
        err = sl_proto_encode_ping(c->out, sizeof(c->out), true, &p, &len);
        break;
    }
    case SL_FRAME_DESCRIBE_TOPIC: {
        atomic_fetch_add(&f->describes, 1);
        sl_proto_partition_info parts[FAKE_PARTS] = {{0}};
        sl_proto_topic_info info = {.correlation_id = fr->u.topic_request.correlation_id,
                                    .config = {.partition_count = FAKE_PARTS},
                                    .topic = fr->u.topic_request.topic,
                                    .partitions = parts};
        err = sl_proto_encode_topic_info(c->out, sizeof(c->out), &info, &len);
        break;
    }
    case SL_FRAME_OPEN_PRODUCE:
        return hfake_open(c, fr);
    case SL_FRAME_PRODUCE:
        return hfake_produce(f, c, fr);
    default:
        return 0;
    }
    assert_int_equal(err, SL_OK);
    return hsend(c->fd, c->out, len);
}

static void
hfake_serve(hfake *f, int fd)
{
    hconn *c = calloc(1, sizeof(*c));
    uint8_t *buf = malloc(FAKE_FRAME + 4096);
    size_t have = 0;
    c->fd = fd;
    while (!atomic_load(&f->stop)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + have, FAKE_FRAME + 4096 - have, 0);
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
        size_t pos = 0;
        int rc = 0;
        for (int i = 0; i < 100000 && rc == 0; i++) {
            sl_frame fr;
            size_t used = 0;
            int err = sl_proto_decode(buf + pos, have - pos, FAKE_FRAME, &fr, &used, NULL);
            if (err == SL_EAGAIN) {
                break;
            }
            assert_int_equal(err, SL_OK);
            rc = hfake_frame(f, c, &fr);
            pos += used;
        }
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
hfake_main(void *arg)
{
    hfake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pf = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd >= 0) {
            hfake_serve(f, fd);
        }
    }
    return NULL;
}

typedef struct hol_reports {
    atomic_ullong acked[FAKE_PARTS];
    atomic_ullong failed[FAKE_PARTS];
} hol_reports;

static void
hol_report(const sl_delivery_report *r, void *user)
{
    hol_reports *h = user;
    assert_true(r->partition < FAKE_PARTS);
    if (r->err == SL_OK) {
        atomic_fetch_add(&h->acked[r->partition], r->record_count);
    } else {
        atomic_fetch_add(&h->failed[r->partition], r->record_count);
    }
}

// Partition 1 gets a stream but no credit: records for partitions 0 and 2 are still delivered,
// and partition 1's are reported failed (closed) only when the producer is freed.
static void
test_starved_partition_does_not_block_others(void **state)
{
    (void)state;
    hfake *f = calloc(1, sizeof(*f));
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    socklen_t alen = sizeof(a);
    getsockname(f->lfd, (struct sockaddr *)&a, &alen);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, hfake_main, f), 0);

    hol_reports h = {0};
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", f->port);
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = broker;
    cfg.topic = "three";
    cfg.delivery_cb = hol_report;
    cfg.delivery_user = &h;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    uint64_t want[FAKE_PARTS] = {0};
    for (uint32_t i = 0; i < 3000; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "key-%u", i % 30);
        sl_record r = {.key = key, .key_size = (uint32_t)n, .value = "v", .value_size = 1};
        assert_int_equal(sl_producer_send(p, &r, sl_deadline_after_ms(ROUTE_WAIT_MS), NULL), SL_OK);
        want[sl_partition_for_key(key, (size_t)n, FAKE_PARTS)]++;
    }
    assert_true(want[FAKE_STARVED] > 0);
    int64_t deadline = sl_deadline_after_ms(ROUTE_WAIT_MS);
    while ((atomic_load(&h.acked[0]) < want[0] || atomic_load(&h.acked[2]) < want[2]) &&
           sl_now_ns() < deadline) {
        usleep(2000);
    }
    assert_int_equal(atomic_load(&h.acked[0]), want[0]);
    assert_int_equal(atomic_load(&h.acked[2]), want[2]);
    assert_int_equal(atomic_load(&h.acked[FAKE_STARVED]), 0);
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(100)), SL_ETIMEDOUT);
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_true(st.client.credit_waits_total > 0);
    sl_producer_free(p);
    assert_int_equal(atomic_load(&h.failed[FAKE_STARVED]), want[FAKE_STARVED]);
    assert_int_equal(atomic_load(&f->describes), 1);
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_for_key_is_fnv1a),
        cmocka_unit_test(test_live_keys_route_to_their_partition),
        cmocka_unit_test(test_live_unknown_topic_fails_sends),
        cmocka_unit_test(test_starved_partition_does_not_block_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
