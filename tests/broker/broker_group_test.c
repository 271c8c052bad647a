// Consumer groups against a real sluiced: rebalancing 1 -> 3 -> 2 members while producing
// delivers every record at least once, duplicates only as counted redeliveries, and no partition
// has two owners in one generation; a SIGKILLed consumer process's records go to another member;
// committed offsets survive kill -9 of the broker; an unacked record is redelivered after the ack
// timeout and dead-lettered after max_redeliveries; max_ack_pending stalls a stream visibly; the
// group frames need protocol version 2 and stale opens are refused with EBUSY; a group's committed
// offset bounds retention, and `sluice group` and /metrics show it; /why and `sluice why` with a
// group name its members, owners and each partition's hop, and the group's predictions show in
// /metrics, /why and `sluice group describe`.
// ctest-labels: concurrent
// ctest-timeout: 240
#include "support/test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/client.h>
#include <sluice/error.h>
#include <sluice/proto.h>

#include "core/util.h"
#include "support/broker_proc.h"
#include "support/http_client.h"

#define PARTITIONS       6u
#define PHASE_RECORDS    1500u
#define TOTAL_RECORDS    (3u * PHASE_RECORDS)
#define MEMBERS_MAX      3
#define POLL_BATCH       64
#define WAIT_MS          30000
#define GENERATIONS_MAX  64
#define KILL_RECORDS     300u
#define DLQ_RECORDS      20u
#define POISON_OFFSET    5u
#define MAX_REDELIVERIES 2u

static char g_broker_addr[64];

static void
broker_addr(const sl_test_broker *b)
{
    snprintf(g_broker_addr, sizeof(g_broker_addr), "127.0.0.1:%u", b->port);
}

// ---- helpers -----------------------------------------------------------------------------------

static void
create_topic(const sl_test_broker *b, const char *topic, uint32_t partitions)
{
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b->port, 1), 0);
    assert_int_equal(sl_test_wire_create_topic(&w, topic, partitions, 0, 0), 0);
    sl_test_wire_close(&w);
}

// Produces records first .. first + count - 1 (value: the number as text, key: the same),
// spread over the partitions by key, and waits until all are acked.
static void
produce(const char *topic, uint32_t first, uint32_t count)
{
    sl_producer_config pc;
    sl_producer_config_init(&pc);
    pc.broker = g_broker_addr;
    pc.topic = topic;
    pc.delivery_cb = NULL;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&pc, &p), SL_OK);
    for (uint32_t i = first; i < first + count; i++) {
        char v[16];
        int n = snprintf(v, sizeof(v), "%u", i);
        sl_record r = {.key = v, .key_size = (uint32_t)n, .value = v, .value_size = (uint32_t)n};
        assert_int_equal(sl_producer_send(p, &r, sl_deadline_after_ms(WAIT_MS), NULL), SL_OK);
    }
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(WAIT_MS)), SL_OK);
    sl_delivery_report reps[256];
    size_t n = 0;
    uint32_t acked = 0;
    for (int round = 0; round < 10000 && acked < count; round++) {
        assert_int_equal(sl_producer_poll_reports(p, reps, 256, sl_deadline_after_ms(100), &n),
                         SL_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(reps[i].err, SL_OK);
            acked += reps[i].record_count;
        }
    }
    assert_int_equal(acked, count);
    sl_producer_free(p);
}

static uint32_t
value_of(const sl_consumed *r)
{
    char buf[16] = {0};
    memcpy(buf, r->record.value, SL_MIN(r->record.value_size, 15u));
    return (uint32_t)strtoul(buf, NULL, 10);
}

// What each member saw of the assignments: (generation, partition bitmap).
typedef struct seen_assign {
    pthread_mutex_t mu;
    uint32_t gens[GENERATIONS_MAX];
    uint64_t bits[GENERATIONS_MAX];
    int count;
} seen_assign;

static void
on_assign(uint32_t generation, const uint32_t *parts, size_t count, void *user)
{
    seen_assign *s = user;
    uint64_t bits = 0;
    for (size_t i = 0; i < count; i++) {
        bits |= 1ull << parts[i];
    }
    pthread_mutex_lock(&s->mu);
    if (s->count < GENERATIONS_MAX && generation != 0) {
        s->gens[s->count] = generation;
        s->bits[s->count] = bits;
        s->count++;
    }
    pthread_mutex_unlock(&s->mu);
}

static sl_consumer *
group_consumer(const char *topic, const char *group, seen_assign *sa, bool auto_ack)
{
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = g_broker_addr;
    cc.topic = topic;
    cc.group = group;
    cc.partition = SL_PROTO_PARTITION_ANY;
    cc.session_timeout_ms = 2000;
    cc.prefetch_records = 200;
    cc.auto_ack = auto_ack;
    cc.assign_cb = sa != NULL ? on_assign : NULL;
    cc.assign_user = sa;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cc, &c), SL_OK);
    return c;
}

typedef struct tally {
    uint32_t times[TOTAL_RECORDS];
    uint32_t distinct;
    uint32_t duplicates;
    uint32_t uncounted_duplicates; // seen again without a redelivery count
} tally;

static void
take(sl_consumer *c, tally *t, int64_t deadline)
{
    sl_consumed recs[POLL_BATCH];
    size_t n = 0;
    int err = sl_consumer_poll(c, recs, POLL_BATCH, deadline, &n);
    assert_true(err == SL_OK || err == SL_ETIMEDOUT);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = value_of(&recs[i]);
        assert_true(v < TOTAL_RECORDS);
        if (t->times[v]++ == 0) {
            t->distinct++;
        } else {
            t->duplicates++;
            t->uncounted_duplicates += recs[i].redelivery_count == 0 ? 1 : 0;
        }
    }
}

// Polls every consumer in turn until want distinct records were seen or the deadline.
static void
drain(sl_consumer **cs, int n, tally *t, uint32_t want, int ms)
{
    int64_t deadline = sl_deadline_after_ms(ms);
    for (int round = 0; round < 100000 && t->distinct < want && sl_now_ns() < deadline; round++) {
        for (int i = 0; i < n; i++) {
            if (cs[i] != NULL) {
                take(cs[i], t, sl_deadline_after_ms(5));
            }
        }
    }
}

static void
wait_members_assigned(sl_consumer **cs, int n, uint32_t partitions)
{
    for (int round = 0; round < 3000; round++) {
        uint32_t total = 0;
        uint32_t gen0 = 0;
        bool same = true;
        for (int i = 0; i < n; i++) {
            uint32_t parts[PARTITIONS];
            size_t count = 0;
            uint32_t gen = 0;
            sl_consumer_assignment(cs[i], parts, PARTITIONS, &count, &gen);
            total += (uint32_t)count;
            same &= gen != 0 && (i == 0 || gen == gen0);
            gen0 = i == 0 ? gen : gen0;
        }
        if (same && total == partitions) {
            return;
        }
        usleep(10000);
    }
    fail_msg("members never held all %u partitions in one generation", partitions);
}

// Every generation's assignments, as the members saw them, are disjoint.
static void
check_no_two_owners(seen_assign *sa, int members)
{
    for (int a = 0; a < members; a++) {
        for (int i = 0; i < sa[a].count; i++) {
            for (int b = a + 1; b < members; b++) {
                for (int j = 0; j < sa[b].count; j++) {
                    if (sa[a].gens[i] == sa[b].gens[j]) {
                        assert_int_equal(sa[a].bits[i] & sa[b].bits[j], 0);
                    }
                }
            }
        }
    }
}

typedef struct group_view {
    uint32_t generation;
    uint64_t redeliveries;
    uint64_t dlq;
    uint16_t members;
    uint64_t committed[PARTITIONS];
    uint64_t delivered[PARTITIONS];
    uint16_t stall[PARTITIONS];
} group_view;

// DESCRIBE_GROUP over a version 2 wire connection.
static int wire_open_v2(sl_test_wire *w, uint16_t port);

static void
describe(const sl_test_broker *b, const char *group, const char *topic, group_view *v)
{
    sl_test_wire w;
    assert_int_equal(wire_open_v2(&w, b->port), 0);
    uint8_t buf[1024];
    size_t len = 0;
    sl_proto_describe_group d = {.correlation_id = 77,
                                 .group = {group, (uint16_t)strlen(group)},
                                 .topic = {topic, (uint16_t)strlen(topic)}};
    assert_int_equal(sl_proto_encode_describe_group(buf, sizeof(buf), &d, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, buf, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_GROUP_INFO, &f, WAIT_MS), SL_OK);
    const sl_proto_group_info *g = &f.u.group_info;
    memset(v, 0, sizeof(*v));
    v->generation = g->generation;
    v->redeliveries = g->redeliveries_total;
    v->dlq = g->dlq_records_total;
    v->members = g->member_count;
    for (uint16_t i = 0; i < g->partition_count && i < PARTITIONS; i++) {
        sl_proto_group_partition_info p;
        sl_proto_group_info_partition(g, i, &p);
        v->committed[i] = p.committed_offset;
        v->delivered[i] = p.delivered_offset;
        v->stall[i] = p.stall_reason;
    }
    sl_test_wire_close(&w);
}

static int
wire_open_v2(sl_test_wire *w, uint16_t port)
{
    if (sl_test_wire_open(w, port, 0) != 0) {
        return -1;
    }
    uint8_t buf[256];
    size_t len = 0;
    sl_proto_hello h = {.version_min = 1,
                        .version_max = SL_PROTO_VERSION_MAX,
                        .max_frame_bytes = SL_PROTO_FRAME_SIZE_DEFAULT,
                        .heartbeat_ms = 5000};
    if (sl_proto_encode_hello(buf, sizeof(buf), &h, &len) != SL_OK ||
        sl_test_wire_send(w, buf, len) != 0) {
        return -1;
    }
    sl_frame f;
    if (sl_test_wire_expect(w, SL_FRAME_HELLO_OK, &f, WAIT_MS) != SL_OK ||
        f.u.hello_ok.version != SL_PROTO_VERSION_GROUPS) {
        return -1;
    }
    w->max_frame = f.u.hello_ok.max_frame_bytes;
    return 0;
}

// ---- rebalancing while producing ---------------------------------------------------------------

static void
test_rebalance_1_3_2_delivers_everything(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "orders", PARTITIONS);
    static tally t;
    memset(&t, 0, sizeof(t));
    seen_assign sa[MEMBERS_MAX];
    memset(sa, 0, sizeof(sa));
    for (int i = 0; i < MEMBERS_MAX; i++) {
        pthread_mutex_init(&sa[i].mu, NULL);
    }
    sl_consumer *cs[MEMBERS_MAX] = {NULL};
    cs[0] = group_consumer("orders", "billing", &sa[0], true);
    wait_members_assigned(cs, 1, PARTITIONS);
    produce("orders", 0, PHASE_RECORDS);
    drain(cs, 1, &t, PHASE_RECORDS / 2, WAIT_MS);
    // Two more members join while the first is mid-stream.
    cs[1] = group_consumer("orders", "billing", &sa[1], true);
    cs[2] = group_consumer("orders", "billing", &sa[2], true);
    produce("orders", PHASE_RECORDS, PHASE_RECORDS);
    wait_members_assigned(cs, 3, PARTITIONS);
    drain(cs, 3, &t, 2 * PHASE_RECORDS - 200, WAIT_MS);
    // One leaves (closes with records in flight); the other two take over.
    sl_consumer_free(cs[1]);
    cs[1] = NULL;
    sl_consumer *rest[2] = {cs[0], cs[2]};
    produce("orders", 2 * PHASE_RECORDS, PHASE_RECORDS);
    wait_members_assigned(rest, 2, PARTITIONS);
    drain(rest, 2, &t, TOTAL_RECORDS, WAIT_MS);
    assert_int_equal(t.distinct, TOTAL_RECORDS); // every record at least once
    assert_int_equal(t.uncounted_duplicates, 0); // every duplicate was flagged as a redelivery
    group_view v;
    describe(&b, "billing", "orders", &v);
    assert_int_equal(v.members, 2);
    assert_true(v.generation >= 4);
    assert_true(t.duplicates <= v.redeliveries); // duplicates only from counted redeliveries
    print_message("rebalance: %u records, %u duplicates, %llu redeliveries, generation %u\n",
                  t.distinct, t.duplicates, (unsigned long long)v.redeliveries, v.generation);
    sl_consumer_free(cs[0]);
    sl_consumer_free(cs[2]);
    check_no_two_owners(sa, MEMBERS_MAX);
    for (int i = 0; i < MEMBERS_MAX; i++) {
        pthread_mutex_destroy(&sa[i].mu);
    }
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- a consumer process killed mid-batch -------------------------------------------------------

// The child: joins, takes records without acking, reports how many, then waits to be killed.
static void
child_consume(int fd)
{
    sl_consumer *c = group_consumer("jobs", "workers", NULL, false);
    uint32_t got = 0;
    sl_consumed recs[POLL_BATCH];
    for (int i = 0; i < 1000 && got < KILL_RECORDS / 2; i++) {
        size_t n = 0;
        int perr = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(perr == SL_OK || perr == SL_ETIMEDOUT);
        got += (uint32_t)n;
    }
    if (write(fd, &got, sizeof(got)) != (ssize_t)sizeof(got)) {
        _exit(2);
    }
    sleep(60); // killed long before
    _exit(0);
}

static void
test_killed_consumer_records_go_to_another_member(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "jobs", 1);
    produce("jobs", 0, KILL_RECORDS);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_consume(fds[1]);
    }
    close(fds[1]);
    uint32_t child_got = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    assert_int_equal(read(fds[0], &child_got, sizeof(child_got)), (ssize_t)sizeof(child_got));
    close(fds[0]);
    assert_true(child_got > 0);
    // A second member joins (it gets nothing: the child holds the only partition) ...
    static tally t;
    memset(&t, 0, sizeof(t));
    sl_consumer *c = group_consumer("jobs", "workers", NULL, true);
    drain(&c, 1, &t, 1, 500);
    assert_int_equal(t.distinct, 0);
    // ... and takes over when the child dies with its records unacknowledged.
    int64_t killed_ns = sl_test_now_ns();
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    int64_t first_ns = 0;
    sl_consumed recs[POLL_BATCH];
    uint32_t flagged = 0;
    int64_t deadline = sl_deadline_after_ms(WAIT_MS);
    for (int i = 0; i < 100000 && t.distinct < KILL_RECORDS && sl_now_ns() < deadline; i++) {
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        if (n > 0 && first_ns == 0) {
            first_ns = sl_test_now_ns();
        }
        for (size_t k = 0; k < n; k++) {
            uint32_t v = value_of(&recs[k]);
            t.distinct += t.times[v]++ == 0 ? 1 : 0;
            if (v < child_got) {
                // The child had these: they come again, flagged as redeliveries.
                assert_true(recs[k].redelivery_count >= 1);
                flagged++;
            }
        }
    }
    assert_int_equal(t.distinct, KILL_RECORDS);
    assert_int_equal(flagged, child_got);
    print_message("failover: the child had %u records; first record at the other member %.1f ms "
                  "after SIGKILL\n",
                  child_got, (double)(first_ns - killed_ns) / 1e6);
    group_view v;
    describe(&b, "workers", "jobs", &v);
    assert_true(v.redeliveries >= child_got);
    sl_consumer_free(c);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- committed offsets survive kill -9 of the broker -------------------------------------------

static void
test_committed_offsets_survive_broker_kill(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "ledger", 1);
    produce("ledger", 0, 300);
    sl_consumer *c = group_consumer("ledger", "audit", NULL, false);
    sl_consumed recs[POLL_BATCH];
    uint64_t last = 0;
    bool have = false;
    for (int i = 0; i < 1000 && (!have || last < 149); i++) {
        size_t n = 0;
        int perr = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(perr == SL_OK || perr == SL_ETIMEDOUT);
        for (size_t k = 0; k < n && (!have || last < 149); k++) {
            last = recs[k].offset;
            have = true;
        }
    }
    assert_int_equal(last, 149);
    assert_int_equal(sl_consumer_ack_record(c, 0, 149), SL_OK);
    group_view v = {0};
    for (int i = 0; i < 500 && v.committed[0] != 150; i++) {
        usleep(10000);
        describe(&b, "audit", "ledger", &v);
    }
    assert_int_equal(v.committed[0], 150);
    usleep(500 * 1000); // several persist intervals
    sl_test_broker_kill(&b);
    sl_consumer_free(c);
    // Same data dir, new process: the group resumes at its committed offset.
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    describe(&b, "audit", "ledger", &v);
    assert_int_equal(v.committed[0], 150);
    c = group_consumer("ledger", "audit", NULL, true);
    size_t n = 0;
    for (int i = 0; i < 1000 && n == 0; i++) {
        int err = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
    }
    assert_true(n > 0);
    assert_int_equal(recs[0].offset, 150);
    sl_consumer_free(c);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- ack timeout, redelivery counts, dead letters ----------------------------------------------

static void
test_ack_timeout_redelivers_then_dead_letters(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "payments", 1);
    produce("payments", 0, DLQ_RECORDS);
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = g_broker_addr;
    cc.topic = "payments";
    cc.group = "settle";
    cc.partition = SL_PROTO_PARTITION_ANY;
    cc.auto_ack = false;
    cc.ack_timeout_ms = 300;
    cc.max_redeliveries = MAX_REDELIVERIES;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cc, &c), SL_OK);
    // The consumer fails on the poison record every time: it acks what comes before it and
    // nothing after it, until a round no longer starts at it (it was dead-lettered).
    uint32_t poison_seen = 0;
    uint32_t max_count = 0;
    bool past = false;
    uint64_t prev = UINT64_MAX;
    uint64_t highest_acked = 0;
    sl_consumed recs[POLL_BATCH];
    int64_t deadline = sl_deadline_after_ms(WAIT_MS);
    for (int i = 0; i < 100000 && highest_acked < DLQ_RECORDS - 1 && sl_now_ns() < deadline; i++) {
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(20), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        for (size_t k = 0; k < n; k++) {
            uint64_t off = recs[k].offset;
            if (off == POISON_OFFSET) {
                assert_int_equal(recs[k].redelivery_count, poison_seen);
                poison_seen++;
            }
            if (off == POISON_OFFSET + 1 && prev != POISON_OFFSET && poison_seen > 0) {
                past = true; // this round started after the poison record
            }
            max_count = SL_MAX(max_count, recs[k].redelivery_count);
            prev = off;
            if (off < POISON_OFFSET || (past && off > POISON_OFFSET)) {
                assert_int_equal(sl_consumer_ack_record(c, recs[k].partition, off), SL_OK);
                highest_acked = SL_MAX(highest_acked, off);
            }
        }
    }
    assert_int_equal(poison_seen, MAX_REDELIVERIES + 1); // first delivery + max redeliveries
    assert_true(past);
    assert_int_equal(highest_acked, DLQ_RECORDS - 1);
    group_view v;
    for (int i = 0; i < 500; i++) {
        describe(&b, "settle", "payments", &v);
        if (v.committed[0] == DLQ_RECORDS) {
            break;
        }
        usleep(10000);
    }
    assert_int_equal(v.committed[0], DLQ_RECORDS); // the group moved past the dead letter
    assert_int_equal(v.dlq, 1);
    assert_true(v.redeliveries >= MAX_REDELIVERIES);
    sl_consumer_free(c);
    // The dead letter is in payments.dlq, with the poison record's value and its origin.
    sl_consumer_config dc;
    sl_consumer_config_init(&dc);
    dc.broker = g_broker_addr;
    dc.topic = "payments.dlq";
    sl_consumer *d = NULL;
    assert_int_equal(sl_consumer_new(&dc, &d), SL_OK);
    size_t n = 0;
    for (int i = 0; i < 1000 && n == 0; i++) {
        int err = sl_consumer_poll(d, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
    }
    assert_int_equal(n, 1);
    assert_int_equal(value_of(&recs[0]), POISON_OFFSET);
    sl_header h;
    assert_int_equal(sl_record_header_at(&recs[0].record, 0, &h), SL_OK);
    assert_int_equal(h.name_size, 10);
    assert_memory_equal(h.name, "sluice-dlq", 10);
    sl_consumer_free(d);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- max_ack_pending ----------------------------------------------------------------------------

static void
test_max_ack_pending_stalls_visibly(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "events", 1);
    produce("events", 0, 100);
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = g_broker_addr;
    cc.topic = "events";
    cc.group = "slow";
    cc.partition = SL_PROTO_PARTITION_ANY;
    cc.auto_ack = false;
    cc.max_ack_pending = 10;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cc, &c), SL_OK);
    sl_consumed recs[POLL_BATCH];
    uint32_t got = 0;
    for (int i = 0; i < 100; i++) {
        size_t n = 0;
        int perr = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(20), &n);
        assert_true(perr == SL_OK || perr == SL_ETIMEDOUT);
        got += (uint32_t)n;
    }
    assert_int_equal(got, 10); // the broker stops at max_ack_pending
    group_view v;
    describe(&b, "slow", "events", &v);
    assert_int_equal(v.stall[0], SL_STALL_ACK_PENDING);
    assert_string_equal(sl_stall_reason_name(v.stall[0]), "ack_pending");
    assert_int_equal(v.delivered[0] - v.committed[0], 10);
    assert_int_equal(sl_consumer_ack_record(c, 0, 9), SL_OK);
    for (int i = 0; i < 500 && got < 20; i++) {
        size_t n = 0;
        int perr = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(20), &n);
        assert_true(perr == SL_OK || perr == SL_ETIMEDOUT);
        got += (uint32_t)n;
    }
    assert_int_equal(got, 20);                          // ten more after the ack
    assert_int_equal(sl_consumer_ack(c, 0), SL_EINVAL); // group mode names the partition
    assert_int_equal(sl_consumer_ack_record(c, 3, 0), SL_ENOENT);
    sl_consumer_free(c);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- protocol: version 2 only, stale opens refused ---------------------------------------------

static void
send_join(sl_test_wire *w, const char *group, const char *topic, uint32_t session_ms)
{
    uint8_t buf[1024];
    size_t len = 0;
    sl_proto_join_group j = {.correlation_id = 5,
                             .session_timeout_ms = session_ms,
                             .offset_reset = SL_OFFSET_RESET_EARLIEST,
                             .group = {group, (uint16_t)strlen(group)},
                             .topic = {topic, (uint16_t)strlen(topic)}};
    assert_int_equal(sl_proto_encode_join_group(buf, sizeof(buf), &j, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(w, buf, len), 0);
}

static uint16_t
open_group_stream(sl_test_wire *w, uint32_t sid, uint32_t partition, uint32_t generation)
{
    uint8_t buf[1024];
    size_t len = 0;
    sl_proto_open_consume o = {.partition = partition,
                               .start_mode = SL_START_GROUP,
                               .start_offset = generation,
                               .topic = {"wire", 4},
                               .group = {"g", 1}};
    assert_int_equal(sl_proto_encode_open_consume(buf, sizeof(buf), sid, &o, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(w, buf, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_recv(w, &f, WAIT_MS), SL_OK);
    if (f.header.type == SL_FRAME_STREAM_OK) {
        return 0;
    }
    assert_int_equal(f.header.type, SL_FRAME_STREAM_CLOSE);
    return f.u.error.code;
}

static void
test_group_frames_need_v2_and_refuse_stale_opens(void **state)
{
    (void)state;
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "wire", 2);
    // A version 1 connection never carries group frames.
    sl_test_wire w1;
    assert_int_equal(sl_test_wire_open(&w1, b.port, 1), 0);
    send_join(&w1, "g", "wire", 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w1, SL_FRAME_ERROR, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.error.code, sl_proto_code_from_status(SL_EPROTO));
    sl_test_wire_close(&w1);
    // Version 2: join, get both partitions in generation 1.
    sl_test_wire a;
    assert_int_equal(wire_open_v2(&a, b.port), 0);
    send_join(&a, "g", "wire", 20000); // a outlives the test without heartbeats; b does not
    assert_int_equal(sl_test_wire_expect(&a, SL_FRAME_ASSIGN, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.assign.correlation_id, 5);
    assert_int_equal(f.u.assign.generation, 1);
    assert_int_equal(f.u.assign.partition_count, 2);
    // Stale generation: refused.
    uint16_t busy = sl_proto_code_from_status(SL_EBUSY);
    assert_int_equal(open_group_stream(&a, 1, 0, 7), busy);
    assert_int_equal(open_group_stream(&a, 3, 0, 1), 0);
    // A second member joins: generation 2 moves partition 1 to it; a's stream on 0 stays.
    sl_test_wire bw;
    assert_int_equal(wire_open_v2(&bw, b.port), 0);
    send_join(&bw, "g", "wire", 1000);
    assert_int_equal(sl_test_wire_expect(&bw, SL_FRAME_ASSIGN, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.assign.generation, 2);
    assert_int_equal(f.u.assign.partition_count, 1);
    assert_int_equal(sl_proto_assign_partition(&f.u.assign, 0), 1);
    assert_int_equal(sl_test_wire_expect(&a, SL_FRAME_ASSIGN, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.assign.generation, 2);
    assert_int_equal(f.u.assign.partition_count, 1);
    assert_int_equal(sl_proto_assign_partition(&f.u.assign, 0), 0);
    // a may not open partition 1 any more; b may.
    assert_int_equal(open_group_stream(&a, 5, 1, 2), busy);
    assert_int_equal(open_group_stream(&bw, 1, 1, 2), 0);
    // b stops heartbeating: after its 1 s session a gets partition 1 back in generation 3, and
    // b's stream is closed first.
    assert_int_equal(sl_test_wire_expect(&bw, SL_FRAME_STREAM_CLOSE, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.error.code, busy);
    assert_int_equal(sl_test_wire_expect(&a, SL_FRAME_ASSIGN, &f, WAIT_MS), SL_OK);
    assert_int_equal(f.u.assign.generation, 3);
    assert_int_equal(f.u.assign.partition_count, 2);
    sl_test_wire_close(&a);
    sl_test_wire_close(&bw);
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// ---- retention, CLI and metrics ----------------------------------------------------------------

static uint64_t
log_start_offset(const sl_test_broker *b, const char *topic)
{
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b->port, 1), 0);
    uint8_t buf[512];
    size_t len = 0;
    sl_proto_topic_request r = {.correlation_id = 3, .topic = {topic, (uint16_t)strlen(topic)}};
    assert_int_equal(
        sl_proto_encode_topic_request(buf, sizeof(buf), SL_FRAME_DESCRIBE_TOPIC, &r, &len), SL_OK);
    assert_int_equal(sl_test_wire_send(&w, buf, len), 0);
    sl_frame f;
    assert_int_equal(sl_test_wire_expect(&w, SL_FRAME_TOPIC_INFO, &f, WAIT_MS), SL_OK);
    sl_proto_partition_info p;
    sl_proto_topic_info_partition(&f.u.topic_info, 0, &p);
    sl_test_wire_close(&w);
    return p.log_start_offset;
}

// Runs `sluice ARGS --broker ...` and returns its output (static buffer).
static const char *
run_cli(const sl_test_broker *b, const char *args)
{
    static char out[16384];
    const char *bin = getenv("SL_SLUICE");
    assert_non_null(bin);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s --broker 127.0.0.1:%u", bin, args, b->port);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    assert_int_equal(pclose(f), 0);
    return out;
}

// GET /metrics (HTTP/1.0: the server closes after the answer). Returns the body (static buffer).
static const char *
scrape(uint16_t port)
{
    static char resp[1 << 20];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
    size_t len = 0;
    for (int i = 0; i < 10000 && len < sizeof(resp) - 1; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, WAIT_MS) != 1) {
            break;
        }
        ssize_t n = recv(fd, resp + len, sizeof(resp) - 1 - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    resp[len] = '\0';
    return resp;
}

static void
test_group_holds_retention_and_is_visible(void **state)
{
    (void)state;
    static const char *const args[] = {"--topic_segment_bytes", "4096", NULL};
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start_admin(&b, args), 0);
    broker_addr(&b);
    sl_test_wire w;
    assert_int_equal(sl_test_wire_open(&w, b.port, 1), 0);
    sl_proto_topic_config cfg = {
        .partition_count = 1, .full_policy = SL_FULL_BLOCK, .retention_bytes = 1};
    assert_int_equal(sl_test_wire_create_topic_config(&w, "retained", &cfg), 0);
    sl_test_wire_close(&w);
    for (uint32_t i = 0; i < 10; i++) {
        produce("retained", i * 50, 50); // one producer per call: at least one batch each
    }
    sl_consumer *c = group_consumer("retained", "keeper", NULL, false);
    sl_consumed recs[POLL_BATCH];
    uint64_t last = 0;
    for (int i = 0; i < 1000 && last < 99; i++) {
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        for (size_t k = 0; k < n && last < 99; k++) {
            last = recs[k].offset;
        }
    }
    assert_int_equal(sl_consumer_ack_record(c, 0, 99), SL_OK);
    sl_consumer_free(c); // the group keeps its offset with no member at all
    // A plain consumer reads and commits everything: alone it would let retention go to the end.
    sl_consumer_config pc;
    sl_consumer_config_init(&pc);
    pc.broker = g_broker_addr;
    pc.topic = "retained";
    assert_int_equal(sl_consumer_new(&pc, &c), SL_OK);
    uint32_t plain = 0;
    for (int i = 0; i < 1000 && plain < 500; i++) {
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(50), &n);
        assert_true(err == SL_OK || err == SL_ETIMEDOUT);
        plain += (uint32_t)n;
    }
    assert_int_equal(plain, 500);
    sl_consumer_free(c); // commits 500
    usleep(2500 * 1000); // retention runs every second
    uint64_t start = log_start_offset(&b, "retained");
    print_message("retention: log start %llu with the group at 100\n", (unsigned long long)start);
    assert_true(start > 0);    // retention works on this topic ...
    assert_true(start <= 100); // ... but never past the group's committed offset
    // The CLI and the metrics show the group.
    const char *out = run_cli(&b, "group list");
    assert_non_null(strstr(out, "keeper\tretained\t"));
    out = run_cli(&b, "group describe keeper");
    assert_non_null(strstr(out, "group: keeper"));
    assert_non_null(strstr(out, "members: 0"));
    assert_non_null(strstr(out, "\n0\t-\t100\t500\t400\t"));
    const char *m = scrape(b.admin_port);
    assert_non_null(strstr(
        m,
        "sluice_group_committed_offset{group=\"keeper\",topic=\"retained\",partition=\"0\"} 100"));
    assert_non_null(strstr(
        m, "sluice_group_lag_records{group=\"keeper\",topic=\"retained\",partition=\"0\"} 400"));
    assert_non_null(strstr(m, "sluice_group_members{group=\"keeper\",topic=\"retained\"} 0"));
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

// GETs path from the admin port; fails unless the status is expect. Returns the body (malloc'ed).
static char *
admin_get(const sl_test_broker *b, const char *path, int expect)
{
    int status = 0;
    char *body = NULL;
    assert_int_equal(sl_test_http_get(b->admin_port, path, WAIT_MS, &status, &body), 0);
    if (status != expect) {
        fail_msg("GET %s: status %d, body: %s", path, status, body);
    }
    return body;
}

// Runs `sluice ARGS --admin ...` and returns its exit code, its stdout and stderr in out.
// with_broker adds --broker too (the group commands speak the protocol).
static int
run_cli_admin(const sl_test_broker *b, const char *args, bool with_broker, char *out,
              size_t out_size)
{
    const char *bin = getenv("SL_SLUICE");
    assert_non_null(bin);
    char cmd[1024];
    char broker[64] = "";
    if (with_broker) {
        snprintf(broker, sizeof(broker), " --broker 127.0.0.1:%u", b->port);
    }
    snprintf(cmd, sizeof(cmd), "%s %s%s --admin 127.0.0.1:%u 2>&1", bin, args, broker,
             b->admin_port);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, out_size - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_why_group_and_predictions(void **state)
{
    (void)state;
    static char out[16384];
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start_admin(&b, NULL), 0);
    broker_addr(&b);
    create_topic(&b, "work", 2);
    produce("work", 0, 100);
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = g_broker_addr;
    cc.topic = "work";
    cc.group = "held";
    cc.partition = SL_PROTO_PARTITION_ANY;
    cc.auto_ack = false;
    cc.max_ack_pending = 5;
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_new(&cc, &c), SL_OK);
    sl_consumed recs[POLL_BATCH];
    uint32_t got = 0;
    for (int i = 0; i < 500 && got < 10; i++) {
        size_t n = 0;
        int perr = sl_consumer_poll(c, recs, POLL_BATCH, sl_deadline_after_ms(20), &n);
        assert_true(perr == SL_OK || perr == SL_ETIMEDOUT);
        got += (uint32_t)n;
    }
    assert_int_equal(got, 10); // five per partition: both held at max_ack_pending
    // /why with the group: its member owns both partitions, each held by the in-flight limit.
    char *j = admin_get(&b, "/why?topic=work&group=held", 200);
    assert_non_null(strstr(j, "\"group\":\"held\""));
    assert_non_null(strstr(j, "\"members\":[{\"id\":"));
    assert_non_null(strstr(j, "\"partitions\":[0,1]"));
    assert_non_null(strstr(j, "\"partition\":1,\"owner\":\""));
    assert_non_null(strstr(j, "\"reason\":\"inflight_limit\""));
    assert_non_null(strstr(j, "\"consumers_recommended\":"));
    assert_null(strstr(j, "\"kind\":\"produce\"")); // only the group's streams
    free(j);
    j = admin_get(&b, "/why?topic=work&group=nope", 404);
    assert_non_null(strstr(j, "no such group"));
    free(j);
    assert_int_equal(run_cli_admin(&b, "why work held", false, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "group held: 1 live members"));
    assert_non_null(strstr(out, "owns partitions 0 1"));
    assert_non_null(strstr(out, "partition 0 owner "));
    assert_non_null(strstr(out, "inflight_limit"));
    assert_int_equal(run_cli_admin(&b, "why work nope", false, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "no such group"));
    sl_consumer_free(c); // no member left: 90 records wait with nobody to take them
    j = admin_get(&b, "/why?topic=work&group=held", 200);
    for (int i = 0; i < 100 && strstr(j, "group has no live members") == NULL; i++) {
        free(j);
        usleep(50 * 1000);
        j = admin_get(&b, "/why?topic=work&group=held", 200);
    }
    assert_non_null(strstr(j, "group has no live members"));
    assert_non_null(strstr(j, "\"reason\":\"consumer_absent\""));
    free(j);
    // Predictions: nothing is produced or consumed, records wait: one consumer is needed and
    // the backlog never drains at the current rates.
    j = admin_get(&b, "/metrics", 200);
    double v = 0;
    const char *held[] = {"group=\"held\"", "topic=\"work\"", NULL};
    assert_int_equal(sl_test_prom_sample(j, "sluice_group_consumers_recommended{", held, &v), 0);
    assert_true(v == 1);
    assert_non_null(strstr(j, "sluice_group_drain_seconds{group=\"held\",topic=\"work\"} +Inf"));
    assert_int_equal(sl_test_prom_sample(j, "sluice_group_lag_seconds{", held, &v), 0);
    assert_int_equal(sl_test_prom_sample(j, "sluice_group_consumed_records_per_second{", held, &v),
                     0);
    free(j);
    j = admin_get(&b, "/stats", 200);
    assert_non_null(strstr(j, "\"sluice_group_consumers_recommended\""));
    assert_non_null(strstr(j, "\"sluice_group_drain_seconds\""));
    free(j);
    assert_int_equal(run_cli_admin(&b, "group describe held", true, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "predictions: consumers_recommended 1 (owners now 0)"));
    assert_non_null(strstr(out, "drain in never"));
    assert_int_equal(sl_test_broker_stop(&b), 0);
    sl_test_broker_cleanup(&b);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_frames_need_v2_and_refuse_stale_opens),
        cmocka_unit_test(test_max_ack_pending_stalls_visibly),
        cmocka_unit_test(test_ack_timeout_redelivers_then_dead_letters),
        cmocka_unit_test(test_committed_offsets_survive_broker_kill),
        cmocka_unit_test(test_killed_consumer_records_go_to_another_member),
        cmocka_unit_test(test_rebalance_1_3_2_delivers_everything),
        cmocka_unit_test(test_group_holds_retention_and_is_visible),
        cmocka_unit_test(test_why_group_and_predictions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
