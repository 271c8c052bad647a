// Bounded channels under contention: N producers x M consumers deliver every record exactly once
// and in order per producer, lossy policies account for every record, blocking and close wake the
// right threads, and room signalling lets an event-loop producer wait instead of retrying; all of
// it with asymmetric (membarrier) fences and again with plain fences.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <sluice/budget.h>
#include <sluice/channel.h>
#include <sluice/error.h>

#include "core/channel_internal.h"
#include "core/util.h"

#define PRODUCERS_MAX 4
#define CONSUMERS_MAX 4
#define BATCH_MAX     16
// Records per producer in a normal run; SL_SOAK multiplies it.
#define RECORDS_PER_PRODUCER 20000u
#define SOAK_FACTOR          20u

static uint32_t
records_per_producer(void)
{
    return getenv("SL_SOAK") != NULL ? RECORDS_PER_PRODUCER * SOAK_FACTOR : RECORDS_PER_PRODUCER;
}

// An item carries (producer, sequence); +1 keeps it non-NULL.
static void *
item_make(uint32_t producer, uint32_t seq)
{
    return (void *)(((uintptr_t)producer << 32 | seq) + 1);
}

static uint32_t
item_producer(void *item)
{
    return (uint32_t)(((uintptr_t)item - 1) >> 32);
}

static uint32_t
item_seq(void *item)
{
    return (uint32_t)((uintptr_t)item - 1);
}

static void
nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

typedef struct run {
    sl_channel *ch;
    uint32_t producers;
    uint32_t consumers;
    uint32_t per_producer;
    uint64_t seed;
    _Atomic uint8_t *seen;     // producers * per_producer delivery counts
    _Atomic uint64_t accepted; // records a push returned SL_OK for
    _Atomic uint64_t refused;  // records handed back with SL_EFULL (REJECT), retries included
    _Atomic uint64_t given_up; // records a producer gave up on after SL_EFULL
    _Atomic uint64_t delivered;
    _Atomic uint64_t dropped; // through drop_cb
    _Atomic uint32_t producers_left;
    _Atomic uint32_t order_violations;
    _Atomic uint32_t next_id;
} run;

static void
run_on_drop(sl_channel *ch, void *item, uint32_t size, sl_channel_drop_reason reason, void *user)
{
    (void)ch;
    (void)item;
    (void)size;
    (void)reason;
    run *r = user;
    atomic_fetch_add(&r->dropped, 1);
}

static void *
producer_main(void *p)
{
    run *r = p;
    uint32_t id = atomic_fetch_add(&r->next_id, 1);
    uint64_t rng = r->seed ^ ((uint64_t)id * 0x9e3779b97f4a7c15ull);
    uint32_t seq = 0;
    // Bounded: every pass pushes, drops or refuses at least one record.
    while (seq < r->per_producer) {
        uint32_t batch = (uint32_t)(sl_test_rand(&rng) % BATCH_MAX) + 1;
        batch = SL_MIN(batch, r->per_producer - seq);
        void *items[BATCH_MAX];
        uint32_t sizes[BATCH_MAX];
        for (uint32_t i = 0; i < batch; i++) {
            items[i] = item_make(id, seq + i);
            sizes[i] = (seq + i) % 64;
        }
        uint32_t pushed = 0;
        int err =
            sl_channel_push_batch(r->ch, items, sizes, batch, &pushed, sl_deadline_after_ms(20000));
        atomic_fetch_add(&r->accepted, pushed);
        seq += pushed;
        if (err == SL_EFULL) {
            // The channel handed back items[pushed..batch); give up the first, retry the rest.
            atomic_fetch_add(&r->refused, batch - pushed);
            atomic_fetch_add(&r->given_up, 1);
            seq++;
        } else if (err != SL_OK) {
            fprintf(stderr, "producer %u: %s\n", id, sl_errname(err));
            abort(); // cmocka asserts belong to the test's own thread
        }
    }
    if (atomic_fetch_sub(&r->producers_left, 1) == 1) {
        sl_channel_close(r->ch);
    }
    return NULL;
}

static void *
consumer_main(void *p)
{
    run *r = p;
    int64_t last[PRODUCERS_MAX];
    for (uint32_t i = 0; i < PRODUCERS_MAX; i++) {
        last[i] = -1;
    }
    uint64_t rng = r->seed ^ 0x5bd1e995u ^ (uint64_t)(uintptr_t)&last;
    // Bounded: the producers stop, the last one closes, and the drain ends in SL_ECLOSED.
    for (;;) {
        void *items[BATCH_MAX];
        uint32_t sizes[BATCH_MAX];
        uint32_t max = (uint32_t)(sl_test_rand(&rng) % BATCH_MAX) + 1;
        uint32_t popped = 0;
        int err =
            sl_channel_pop_batch(r->ch, items, sizes, max, &popped, sl_deadline_after_ms(20000));
        if (err == SL_ECLOSED) {
            break;
        }
        assert_int_equal(err, SL_OK);
        for (uint32_t i = 0; i < popped; i++) {
            uint32_t prod = item_producer(items[i]);
            uint32_t seq = item_seq(items[i]);
            assert_true(prod < r->producers);
            assert_true(seq < r->per_producer);
            assert_int_equal(sizes[i], seq % 64);
            // Within one consumer's stream, each producer's records arrive in push order.
            if ((int64_t)seq <= last[prod]) {
                atomic_fetch_add(&r->order_violations, 1);
            }
            last[prod] = seq;
            atomic_fetch_add(&r->seen[(size_t)prod * r->per_producer + seq], 1);
        }
        atomic_fetch_add(&r->delivered, popped);
    }
    return NULL;
}

static void
run_exec(run *r)
{
    pthread_t threads[PRODUCERS_MAX + CONSUMERS_MAX];
    size_t seen_count = (size_t)r->producers * r->per_producer;
    r->seen = calloc(seen_count, sizeof(*r->seen));
    assert_non_null(r->seen);
    atomic_store(&r->producers_left, r->producers);
    for (uint32_t i = 0; i < r->consumers; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, consumer_main, r), 0);
    }
    for (uint32_t i = 0; i < r->producers; i++) {
        assert_int_equal(pthread_create(&threads[r->consumers + i], NULL, producer_main, r), 0);
    }
    for (uint32_t i = 0; i < r->producers + r->consumers; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(atomic_load(&r->order_violations), 0);
    assert_true(sl__channel_check(r->ch));
}

static void
run_free(run *r)
{
    free((void *)r->seen);
    sl_channel_free(r->ch);
}

static sl_channel *
channel_make(sl_channel_kind kind, uint32_t records, uint64_t bytes, sl_full_policy policy,
             sl_budget *budget, run *r)
{
    sl_channel_config cfg = {.name = "c",
                             .kind = kind,
                             .capacity_records = records,
                             .capacity_bytes = bytes,
                             .budget = budget,
                             .full_policy = policy,
                             .drop_cb = run_on_drop,
                             .drop_user = r};
    sl_channel *ch = NULL;
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_OK);
    return ch;
}

static void
lossless_exactly_once(sl_channel_kind kind, uint32_t producers, uint32_t consumers, uint64_t bytes,
                      sl_budget *budget)
{
    run r = {.producers = producers,
             .consumers = consumers,
             .per_producer = records_per_producer(),
             .seed = sl_test_seed()};
    r.ch = channel_make(kind, 16, bytes, SL_FULL_BLOCK, budget, &r);
    run_exec(&r);
    uint64_t total = (uint64_t)producers * r.per_producer;
    assert_int_equal(atomic_load(&r.accepted), total);
    assert_int_equal(atomic_load(&r.delivered), total);
    for (size_t i = 0; i < total; i++) {
        assert_int_equal(atomic_load(&r.seen[i]), 1);
    }
    sl_channel_stats st;
    sl_channel_stats_get(r.ch, &st);
    assert_int_equal(st.pushed_total, total);
    assert_int_equal(st.popped_total, total);
    assert_int_equal(st.depth_records, 0);
    assert_int_equal(st.depth_bytes, 0);
    run_free(&r);
}

static void
test_channel_spsc_exactly_once_in_order(void **state)
{
    (void)state;
    lossless_exactly_once(SL_CHANNEL_SPSC, 1, 1, 0, NULL);
}

static void
test_channel_mpsc_exactly_once_in_order_per_producer(void **state)
{
    (void)state;
    lossless_exactly_once(SL_CHANNEL_MPMC, 4, 1, 0, NULL);
}

static void
test_channel_mpmc_exactly_once(void **state)
{
    (void)state;
    lossless_exactly_once(SL_CHANNEL_MPMC, 3, 3, 0, NULL);
}

static void
test_channel_byte_cap_and_budget_hold_under_contention(void **state)
{
    (void)state;
    sl_budget_config bcfg = {.name = "b", .capacity_bytes = 8 * sl_budget_record_cost(63)};
    sl_budget *budget = NULL;
    assert_int_equal(sl_budget_new(&bcfg, NULL, &budget), SL_OK);
    lossless_exactly_once(SL_CHANNEL_MPMC, 2, 2, 200, NULL);
    lossless_exactly_once(SL_CHANNEL_SPSC, 1, 1, 200, NULL);
    lossless_exactly_once(SL_CHANNEL_MPMC, 2, 2, 0, budget);
    lossless_exactly_once(SL_CHANNEL_SPSC, 1, 1, 0, budget);
    sl_budget_stats bst;
    sl_budget_stats_get(budget, &bst);
    assert_int_equal(bst.used_bytes, 0);
    assert_true(bst.peak_bytes <= bcfg.capacity_bytes);
    assert_true(bst.full_total > 0); // the budget, not only the ring, did push back
    sl_budget_free(budget);
}

static void
lossy_accounts_for_everything(sl_channel_kind kind, sl_full_policy policy, uint32_t producers,
                              uint32_t consumers)
{
    run r = {.producers = producers,
             .consumers = consumers,
             .per_producer = records_per_producer(),
             .seed = sl_test_seed()};
    r.ch = channel_make(kind, 8, 0, policy, NULL, &r);
    run_exec(&r);
    uint64_t total = (uint64_t)producers * r.per_producer;
    sl_channel_stats st;
    sl_channel_stats_get(r.ch, &st);
    uint64_t dropped = st.dropped_full_newest_total + st.dropped_full_oldest_total;
    // Every record is delivered, dropped with a count, or refused back to its producer.
    assert_int_equal(atomic_load(&r.accepted) + atomic_load(&r.given_up), total);
    assert_int_equal(atomic_load(&r.delivered) + dropped, atomic_load(&r.accepted));
    assert_int_equal(atomic_load(&r.dropped), dropped);
    assert_int_equal(st.rejected_total, atomic_load(&r.refused));
    assert_int_equal(st.popped_total, atomic_load(&r.delivered));
    size_t seen_total = 0;
    for (size_t i = 0; i < total; i++) {
        assert_true(atomic_load(&r.seen[i]) <= 1);
        seen_total += atomic_load(&r.seen[i]);
    }
    assert_int_equal(seen_total, atomic_load(&r.delivered));
    if (policy == SL_FULL_DROP_NEWEST) {
        assert_int_equal(st.dropped_full_oldest_total, 0);
    } else if (policy == SL_FULL_DROP_OLDEST) {
        assert_int_equal(st.dropped_full_newest_total, 0);
    } else {
        assert_int_equal(dropped, 0);
    }
    run_free(&r);
}

static void
test_channel_lossy_policies_count_every_drop_under_contention(void **state)
{
    (void)state;
    sl_full_policy policies[] = {SL_FULL_REJECT, SL_FULL_DROP_NEWEST, SL_FULL_DROP_OLDEST};
    for (size_t i = 0; i < SL_ARRAY_LEN(policies); i++) {
        lossy_accounts_for_everything(SL_CHANNEL_SPSC, policies[i], 1, 1);
        lossy_accounts_for_everything(SL_CHANNEL_MPMC, policies[i], 2, 2);
    }
}

typedef struct blocked_push {
    sl_channel *ch;
    int err;
} blocked_push;

static void *
blocked_push_main(void *p)
{
    blocked_push *b = p;
    b->err = sl_channel_push(b->ch, (void *)(uintptr_t)99, 1, sl_deadline_after_ms(20000));
    return NULL;
}

static void *
blocked_pop_main(void *p)
{
    blocked_push *b = p;
    void *item = NULL;
    b->err = sl_channel_pop(b->ch, &item, NULL, sl_deadline_after_ms(20000));
    return NULL;
}

static void
test_channel_blocked_producer_wakes_on_pop_and_is_accounted(void **state)
{
    (void)state;
    sl_channel_kind kinds[] = {SL_CHANNEL_SPSC, SL_CHANNEL_MPMC};
    for (size_t k = 0; k < SL_ARRAY_LEN(kinds); k++) {
        run unused = {0};
        sl_channel *ch = channel_make(kinds[k], 2, 0, SL_FULL_BLOCK, NULL, &unused);
        assert_int_equal(sl_channel_push(ch, (void *)1, 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(ch, (void *)2, 1, SL_DEADLINE_NOW), SL_OK);
        blocked_push b = {.ch = ch, .err = 1};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, blocked_push_main, &b), 0);
        nap_ms(50);
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        pthread_join(t, NULL);
        assert_int_equal(b.err, SL_OK);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_true(st.blocked_ns_total >= 30 * 1000000);
        assert_int_equal(st.depth_records, 2);
        sl_channel_free(ch);
    }
}

static void
test_channel_close_wakes_blocked_producer_and_consumer(void **state)
{
    (void)state;
    sl_channel_kind kinds[] = {SL_CHANNEL_SPSC, SL_CHANNEL_MPMC};
    for (size_t k = 0; k < SL_ARRAY_LEN(kinds); k++) {
        run unused = {0};
        sl_channel *full = channel_make(kinds[k], 2, 0, SL_FULL_BLOCK, NULL, &unused);
        sl_channel *empty = channel_make(kinds[k], 2, 0, SL_FULL_BLOCK, NULL, &unused);
        assert_int_equal(sl_channel_push(full, (void *)1, 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(full, (void *)2, 1, SL_DEADLINE_NOW), SL_OK);
        blocked_push producer = {.ch = full, .err = 1};
        blocked_push consumer = {.ch = empty, .err = 1};
        pthread_t tp;
        pthread_t tc;
        assert_int_equal(pthread_create(&tp, NULL, blocked_push_main, &producer), 0);
        assert_int_equal(pthread_create(&tc, NULL, blocked_pop_main, &consumer), 0);
        nap_ms(30);
        sl_channel_close(full);
        sl_channel_close(empty);
        pthread_join(tp, NULL);
        pthread_join(tc, NULL);
        assert_int_equal(producer.err, SL_ECLOSED);
        assert_int_equal(consumer.err, SL_ECLOSED);
        sl_channel_free(full);
        sl_channel_free(empty);
    }
}

typedef struct close_race {
    sl_channel *ch;
    _Atomic uint64_t accepted;
    _Atomic uint64_t delivered;
} close_race;

static void *
close_race_producer(void *p)
{
    close_race *c = p;
    void *items[8] = {(void *)1, (void *)1, (void *)1, (void *)1,
                      (void *)1, (void *)1, (void *)1, (void *)1};
    uint32_t sizes[8] = {0};
    // Bounded: the main thread closes the channel after a short time.
    for (;;) {
        uint32_t pushed = 0;
        int err =
            sl_channel_push_batch(c->ch, items, sizes, 8, &pushed, sl_deadline_after_ms(20000));
        atomic_fetch_add(&c->accepted, pushed);
        if (err == SL_ECLOSED) {
            return NULL;
        }
        assert_int_equal(err, SL_OK);
    }
}

static void *
close_race_consumer(void *p)
{
    close_race *c = p;
    // Bounded: ends with SL_ECLOSED once the channel is closed and drained.
    for (;;) {
        void *items[8];
        uint32_t popped = 0;
        int err = sl_channel_pop_batch(c->ch, items, NULL, 8, &popped, sl_deadline_after_ms(20000));
        if (err == SL_ECLOSED) {
            return NULL;
        }
        assert_int_equal(err, SL_OK);
        atomic_fetch_add(&c->delivered, popped);
    }
}

static void
test_channel_close_during_traffic_strands_nothing(void **state)
{
    (void)state;
    struct {
        sl_channel_kind kind;
        uint32_t threads;
    } shapes[] = {{SL_CHANNEL_SPSC, 1}, {SL_CHANNEL_MPMC, 2}};
    for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
        for (int round = 0; round < 5; round++) {
            run unused = {0};
            close_race c = {.ch =
                                channel_make(shapes[s].kind, 16, 0, SL_FULL_BLOCK, NULL, &unused)};
            pthread_t threads[4];
            uint32_t n = shapes[s].threads;
            for (uint32_t i = 0; i < n; i++) {
                assert_int_equal(pthread_create(&threads[i], NULL, close_race_producer, &c), 0);
                assert_int_equal(pthread_create(&threads[n + i], NULL, close_race_consumer, &c), 0);
            }
            nap_ms(5 + round * 3);
            sl_channel_close(c.ch);
            for (uint32_t i = 0; i < 2 * n; i++) {
                pthread_join(threads[i], NULL);
            }
            // Whatever a push accepted before the close reached a consumer.
            assert_int_equal(atomic_load(&c.accepted), atomic_load(&c.delivered));
            sl_channel_free(c.ch);
        }
    }
}

typedef struct evloop {
    sl_channel *ch;
    uint32_t records;
    uint32_t refusals;
    uint32_t wakeups;
} evloop;

static void *
evloop_producer(void *p)
{
    evloop *e = p;
    int fd = sl_channel_room_fd(e->ch);
    assert_true(fd >= 0);
    uint32_t seq = 0;
    // Bounded: every pass pushes one record or waits (<= 20 s) for the fd.
    while (seq < e->records) {
        int err = sl_channel_push(e->ch, item_make(0, seq), 8, SL_DEADLINE_NOW);
        if (err == SL_OK) {
            seq++;
            continue;
        }
        assert_int_equal(err, SL_EFULL);
        e->refusals++;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 20000), 1); // told, not timed out
        uint64_t v = 0;
        assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
        e->wakeups++;
    }
    sl_channel_close(e->ch);
    return NULL;
}

static void
test_channel_room_fd_lets_event_loop_producer_wait(void **state)
{
    (void)state;
    sl_channel_kind kinds[] = {SL_CHANNEL_SPSC, SL_CHANNEL_MPMC};
    for (size_t k = 0; k < SL_ARRAY_LEN(kinds); k++) {
        run unused = {0};
        evloop e = {.ch = channel_make(kinds[k], 4, 0, SL_FULL_REJECT, NULL, &unused),
                    .records = 2000};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, evloop_producer, &e), 0);
        uint32_t next = 0;
        // Bounded: the producer closes after its last record.
        for (;;) {
            void *item = NULL;
            int err = sl_channel_pop(e.ch, &item, NULL, sl_deadline_after_ms(20000));
            if (err == SL_ECLOSED) {
                break;
            }
            assert_int_equal(err, SL_OK);
            assert_int_equal(item_seq(item), next);
            next++;
        }
        pthread_join(t, NULL);
        assert_int_equal(next, e.records);
        // Each refusal cost exactly one wait for the fd: nobody spun.
        assert_int_equal(e.wakeups, e.refusals);
        sl_channel_free(e.ch);
    }
}

// ---- wake-ups across both fence protocols ------------------------------------------------------

#define PING_RECORDS 2000u
#define PING_NAP_US  200u
#define PING_WAIT_MS 20000

typedef struct ping {
    sl_channel *ch;
    bool slow_consumer; // else a slow producer
    uint64_t seed;
    _Atomic uint32_t failures;
} ping;

static void
nap_us(uint64_t *rng, uint32_t max_us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(sl_test_rand(rng) % max_us) * 1000};
    nanosleep(&ts, NULL);
}

static void *
ping_producer_main(void *p)
{
    ping *g = p;
    uint64_t rng = g->seed;
    // Bounded: PING_RECORDS pushes, each with a generous deadline.
    for (uint32_t seq = 0; seq < PING_RECORDS; seq++) {
        if (!g->slow_consumer && sl_test_rand(&rng) % 4 == 0) {
            nap_us(&rng, PING_NAP_US); // lets the consumer spin out and go to sleep
        }
        if (sl_channel_push(g->ch, item_make(0, seq), 1, sl_deadline_after_ms(PING_WAIT_MS)) !=
            SL_OK) {
            atomic_fetch_add(&g->failures, 1);
        }
    }
    sl_channel_close(g->ch);
    return NULL;
}

// Producer and consumer alternate between bursts and naps, so each side keeps going to sleep on
// an empty (or full) channel and must be woken by the other's fast path, which runs no fence of its
// own with membarrier. A lost wake-up shows as SL_ETIMEDOUT after PING_WAIT_MS.
static void
ping_pong(sl_channel_kind kind, bool slow_consumer)
{
    ping g = {.slow_consumer = slow_consumer, .seed = sl_test_seed()};
    sl_channel_config cfg = {.name = "ping", .kind = kind, .capacity_records = 2};
    assert_int_equal(sl_channel_new(&cfg, &g.ch), SL_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, ping_producer_main, &g), 0);
    uint64_t rng = g.seed ^ 0x5bd1e995u;
    uint32_t next = 0;
    // Bounded: the producer pushes PING_RECORDS and closes.
    for (;;) {
        if (slow_consumer && sl_test_rand(&rng) % 4 == 0) {
            nap_us(&rng, PING_NAP_US); // lets the producer fill the channel and go to sleep
        }
        void *item = NULL;
        int err = sl_channel_pop(g.ch, &item, NULL, sl_deadline_after_ms(PING_WAIT_MS));
        if (err == SL_ECLOSED) {
            break;
        }
        assert_int_equal(err, SL_OK);
        assert_int_equal(item_seq(item), next);
        next++;
    }
    pthread_join(t, NULL);
    assert_int_equal(next, PING_RECORDS);
    assert_int_equal(atomic_load(&g.failures), 0);
    sl_channel_stats st;
    sl_channel_stats_get(g.ch, &st);
    // The naps made the other side wait: the sleeping path really ran.
    assert_true(slow_consumer ? st.blocked_ns_total > 0 : st.blocked_pops_ns_total > 0);
    sl_channel_free(g.ch);
}

static void
test_channel_sleeping_sides_are_always_woken(void **state)
{
    (void)state;
    ping_pong(SL_CHANNEL_SPSC, false);
    ping_pong(SL_CHANNEL_SPSC, true);
    ping_pong(SL_CHANNEL_MPMC, false);
    ping_pong(SL_CHANNEL_MPMC, true);
}

// The switch decides for channels created after it; channels keep the mode they were born with.
static void
test_channel_fence_mode_follows_the_switch(void **state)
{
    (void)state;
    sl_channel_config cfg = {.name = "f", .capacity_records = 4};
    sl_channel *plain = NULL;
    sl__channel_set_asym_fences(false);
    assert_int_equal(sl_channel_new(&cfg, &plain), SL_OK);
    assert_false(sl__channel_asym_fences(plain));
    sl__channel_set_asym_fences(true);
    sl_channel *fast = NULL;
    assert_int_equal(sl_channel_new(&cfg, &fast), SL_OK);
    assert_false(sl__channel_asym_fences(plain));
    // Whether membarrier is offered depends on the kernel (and seccomp); both modes must work.
    void *item = NULL;
    assert_int_equal(sl_channel_push(fast, item_make(0, 1), 1, SL_DEADLINE_NOW), SL_OK);
    assert_int_equal(sl_channel_pop(fast, &item, NULL, SL_DEADLINE_NOW), SL_OK);
    assert_int_equal(sl_channel_pop(fast, &item, NULL, SL_DEADLINE_NOW), SL_EAGAIN);
    sl_channel_free(fast);
    sl_channel_free(plain);
}

static int
plain_fences_setup(void **state)
{
    (void)state;
    sl__channel_set_asym_fences(false);
    return 0;
}

static int
plain_fences_teardown(void **state)
{
    (void)state;
    sl__channel_set_asym_fences(true);
    return 0;
}

// The same test once more with plain seq_cst fences on both sides (the fallback protocol).
#define PLAIN_FENCES(fn)                                                           \
    {                                                                              \
#fn " (plain fences)", fn, plain_fences_setup, plain_fences_teardown, NULL \
    }

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_spsc_exactly_once_in_order),
        cmocka_unit_test(test_channel_mpsc_exactly_once_in_order_per_producer),
        cmocka_unit_test(test_channel_mpmc_exactly_once),
        cmocka_unit_test(test_channel_byte_cap_and_budget_hold_under_contention),
        cmocka_unit_test(test_channel_lossy_policies_count_every_drop_under_contention),
        cmocka_unit_test(test_channel_blocked_producer_wakes_on_pop_and_is_accounted),
        cmocka_unit_test(test_channel_close_wakes_blocked_producer_and_consumer),
        cmocka_unit_test(test_channel_close_during_traffic_strands_nothing),
        cmocka_unit_test(test_channel_room_fd_lets_event_loop_producer_wait),
        cmocka_unit_test(test_channel_sleeping_sides_are_always_woken),
        cmocka_unit_test(test_channel_fence_mode_follows_the_switch),
        PLAIN_FENCES(test_channel_spsc_exactly_once_in_order),
        PLAIN_FENCES(test_channel_mpmc_exactly_once),
        PLAIN_FENCES(test_channel_blocked_producer_wakes_on_pop_and_is_accounted),
        PLAIN_FENCES(test_channel_close_wakes_blocked_producer_and_consumer),
        PLAIN_FENCES(test_channel_close_during_traffic_strands_nothing),
        PLAIN_FENCES(test_channel_room_fd_lets_event_loop_producer_wait),
        PLAIN_FENCES(test_channel_sleeping_sides_are_always_woken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
