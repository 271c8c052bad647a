// Bounded channels, single-threaded semantics: config checks, every full policy with exact drop
// counts, byte caps and budgets, batches, deadlines, close/drain, room and data signalling, stats.
// Each test runs on both rings (SPSC and MPMC) where the behaviour is meant to be the same.
#include "support/test_util.h"

#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <sluice/budget.h>
#include <sluice/channel.h>
#include <sluice/error.h>

#include "core/channel_internal.h"
#include "core/util.h"

static const sl_channel_kind KINDS[] = {SL_CHANNEL_SPSC, SL_CHANNEL_MPMC};

// Items in these tests are small integers disguised as pointers: no allocation to leak.
static void *
item_of(uintptr_t v)
{
    return (void *)(v + 1);
}

static uintptr_t
value_of(void *item)
{
    return (uintptr_t)item - 1;
}

typedef struct drop_log {
    uint32_t count;
    uint32_t by_reason[3];
    uintptr_t values[64];
} drop_log;

static void
on_drop(sl_channel *ch, void *item, uint32_t size, sl_channel_drop_reason reason, void *user)
{
    (void)ch;
    (void)size;
    drop_log *log = user;
    if (log->count < SL_ARRAY_LEN(log->values)) {
        log->values[log->count] = value_of(item);
    }
    log->count++;
    log->by_reason[reason]++;
}

static sl_channel *
channel_make(sl_channel_kind kind, uint32_t records, uint64_t bytes, sl_full_policy policy,
             drop_log *log)
{
    sl_channel_config cfg = {.name = "t",
                             .kind = kind,
                             .capacity_records = records,
                             .capacity_bytes = bytes,
                             .full_policy = policy,
                             .drop_cb = log != NULL ? on_drop : NULL,
                             .drop_user = log};
    sl_channel *ch = NULL;
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_OK);
    return ch;
}

static void
expect_pops(sl_channel *ch, uintptr_t first, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        void *item = NULL;
        uint32_t size = 0;
        assert_int_equal(sl_channel_pop(ch, &item, &size, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(value_of(item), first + i);
    }
    void *item = NULL;
    assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_EAGAIN);
}

static void
test_channel_rejects_bad_config(void **state)
{
    (void)state;
    sl_channel *ch = NULL;
    sl_channel_config cfg = {.name = "bad", .capacity_records = 0};
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_EINVAL);
    cfg.capacity_records = SL_CHANNEL_RECORDS_MAX + 1;
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_EINVAL);
    cfg.capacity_records = 4;
    cfg.kind = (sl_channel_kind)7;
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_EINVAL);
    cfg.kind = SL_CHANNEL_MPMC;
    cfg.full_policy = (sl_full_policy)9;
    assert_int_equal(sl_channel_new(&cfg, &ch), SL_EINVAL);
    assert_null(ch);
}

static void
test_channel_new_fails_cleanly_without_memory(void **state)
{
    (void)state;
    int64_t before = sl__alloc_bytes_in_use();
    sl_channel_config cfg = {.name = "oom", .capacity_records = 16};
    for (int64_t n = 1; n <= 2; n++) {
        sl_channel *ch = NULL;
        sl__alloc_fail_after(n);
        assert_int_equal(sl_channel_new(&cfg, &ch), SL_ENOMEM);
        assert_null(ch);
        assert_int_equal(sl__alloc_bytes_in_use(), before);
    }
    sl__alloc_fail_after(0);
}

static void
test_channel_capacity_rounds_up_to_power_of_two(void **state)
{
    (void)state;
    uint32_t asked[] = {1, 2, 3, 1000, 1024};
    uint64_t got[] = {2, 2, 4, 1024, 1024};
    for (size_t i = 0; i < SL_ARRAY_LEN(asked); i++) {
        sl_channel *ch = channel_make(SL_CHANNEL_SPSC, asked[i], 0, SL_FULL_REJECT, NULL);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.capacity_records, got[i]);
        sl_channel_free(ch);
    }
}

static void
test_channel_reject_returns_efull_and_counts(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_REJECT, NULL);
        for (uintptr_t i = 0; i < 8; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 10, SL_DEADLINE_NEVER), SL_OK);
        }
        // REJECT ignores the deadline: never waits.
        assert_int_equal(sl_channel_push(ch, item_of(8), 10, SL_DEADLINE_NEVER), SL_EFULL);
        assert_int_equal(sl_channel_push(ch, item_of(9), 10, SL_DEADLINE_NOW), SL_EFULL);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.depth_records, 8);
        assert_int_equal(st.depth_bytes, 80);
        assert_true(st.fill_ratio > 0.999);
        assert_int_equal(st.rejected_total, 2);
        assert_int_equal(st.pushed_total, 8);
        assert_int_equal(st.dropped_full_newest_total + st.dropped_full_oldest_total, 0);
        assert_true(sl__channel_check(ch));
        expect_pops(ch, 0, 8);
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.popped_total, 8);
        assert_int_equal(st.depth_bytes, 0);
        sl_channel_free(ch);
    }
}

static void
test_channel_block_try_returns_eagain_and_deadline_times_out(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 2, 0, SL_FULL_BLOCK, NULL);
        assert_int_equal(sl_channel_push(ch, item_of(0), 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(ch, item_of(1), 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(ch, item_of(2), 1, SL_DEADLINE_NOW), SL_EAGAIN);
        int64_t t0 = sl_now_ns();
        assert_int_equal(sl_channel_push(ch, item_of(2), 1, sl_deadline_after_ms(30)),
                         SL_ETIMEDOUT);
        assert_true(sl_now_ns() - t0 >= 25 * 1000000);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_true(st.blocked_ns_total >= 25 * 1000000);
        assert_int_equal(st.rejected_total, 2);
        expect_pops(ch, 0, 2);
        // An empty channel times a pop out and counts the consumer's idle time.
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, sl_deadline_after_ms(20)), SL_ETIMEDOUT);
        sl_channel_stats_get(ch, &st);
        assert_true(st.blocked_pops_ns_total >= 15 * 1000000);
        sl_channel_free(ch);
    }
}

static void
test_channel_drop_newest_counts_each_drop(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        drop_log log = {0};
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_DROP_NEWEST, &log);
        for (uintptr_t i = 0; i < 20; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 4, SL_DEADLINE_NEVER), SL_OK);
        }
        assert_int_equal(log.count, 12);
        assert_int_equal(log.by_reason[SL_CHANNEL_DROP_FULL_NEWEST], 12);
        for (uint32_t i = 0; i < 12; i++) {
            assert_int_equal(log.values[i], 8 + i);
        }
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.dropped_full_newest_total, 12);
        assert_int_equal(st.dropped_full_oldest_total, 0);
        assert_int_equal(st.pushed_total, 8);
        assert_int_equal(st.rejected_total, 0);
        expect_pops(ch, 0, 8);
        sl_channel_free(ch);
    }
}

static void
test_channel_drop_oldest_counts_each_drop(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        drop_log log = {0};
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_DROP_OLDEST, &log);
        for (uintptr_t i = 0; i < 20; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 4, SL_DEADLINE_NOW), SL_OK);
        }
        assert_int_equal(log.count, 12);
        assert_int_equal(log.by_reason[SL_CHANNEL_DROP_FULL_OLDEST], 12);
        for (uint32_t i = 0; i < 12; i++) {
            assert_int_equal(log.values[i], i);
        }
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.dropped_full_oldest_total, 12);
        assert_int_equal(st.dropped_full_newest_total, 0);
        assert_int_equal(st.pushed_total, 20);
        assert_int_equal(st.depth_records, 8);
        assert_int_equal(st.depth_bytes, 32);
        expect_pops(ch, 12, 8);
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.popped_total, 8); // evictions are not deliveries
        sl_channel_free(ch);
    }
}

static void
test_channel_byte_capacity_and_too_big(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 64, 100, SL_FULL_REJECT, NULL);
        assert_int_equal(sl_channel_push(ch, item_of(0), 101, SL_DEADLINE_NOW), SL_ETOOBIG);
        for (uintptr_t i = 0; i < 3; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 30, SL_DEADLINE_NOW), SL_OK);
        }
        assert_int_equal(sl_channel_push(ch, item_of(3), 30, SL_DEADLINE_NOW), SL_EFULL);
        assert_int_equal(sl_channel_push(ch, item_of(3), 10, SL_DEADLINE_NOW), SL_OK);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.depth_bytes, 100);
        assert_true(st.fill_ratio > 0.999); // bytes full, records far from it
        expect_pops(ch, 0, 4);
        sl_channel_free(ch);
    }
}

static void
test_channel_drop_oldest_makes_byte_room(void **state)
{
    (void)state;
    drop_log log = {0};
    sl_channel *ch = channel_make(SL_CHANNEL_SPSC, 64, 100, SL_FULL_DROP_OLDEST, &log);
    assert_int_equal(sl_channel_push(ch, item_of(0), 40, SL_DEADLINE_NOW), SL_OK);
    assert_int_equal(sl_channel_push(ch, item_of(1), 40, SL_DEADLINE_NOW), SL_OK);
    // 90 bytes need both older records gone.
    assert_int_equal(sl_channel_push(ch, item_of(2), 90, SL_DEADLINE_NOW), SL_OK);
    assert_int_equal(log.by_reason[SL_CHANNEL_DROP_FULL_OLDEST], 2);
    expect_pops(ch, 2, 1);
    sl_channel_free(ch);
}

static void
test_channel_budget_refusal_is_full_and_release_on_pop(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_budget_config bcfg = {.name = "b", .capacity_bytes = 3 * sl_budget_record_cost(10)};
        sl_budget *budget = NULL;
        assert_int_equal(sl_budget_new(&bcfg, NULL, &budget), SL_OK);
        sl_channel_config cfg = {.name = "cb",
                                 .kind = KINDS[k],
                                 .capacity_records = 64,
                                 .budget = budget,
                                 .full_policy = SL_FULL_REJECT};
        sl_channel *ch = NULL;
        assert_int_equal(sl_channel_new(&cfg, &ch), SL_OK);
        void *items[4] = {item_of(0), item_of(1), item_of(2), item_of(3)};
        uint32_t sizes[4] = {10, 10, 10, 10};
        uint32_t pushed = 0;
        assert_int_equal(sl_channel_push_batch(ch, items, sizes, 4, &pushed, SL_DEADLINE_NOW),
                         SL_EFULL);
        assert_int_equal(pushed, 3);
        sl_budget_stats bst;
        sl_budget_stats_get(budget, &bst);
        assert_int_equal(bst.used_bytes, 3 * sl_budget_record_cost(10));
        assert_int_equal(bst.used_records, 3);
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        sl_budget_stats_get(budget, &bst);
        assert_int_equal(bst.used_records, 2);
        assert_int_equal(sl_channel_push(ch, items[3], 10, SL_DEADLINE_NOW), SL_OK);
        // Freeing with records queued releases their charge (budget_free asserts it is zero).
        sl_channel_free(ch);
        sl_budget_free(budget);
    }
}

static void
test_channel_batches_keep_order_and_partial_counts(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_REJECT, NULL);
        void *items[10];
        uint32_t sizes[10];
        for (uintptr_t i = 0; i < 10; i++) {
            items[i] = item_of(i);
            sizes[i] = (uint32_t)i;
        }
        uint32_t pushed = 0;
        assert_int_equal(sl_channel_push_batch(ch, items, sizes, 10, &pushed, SL_DEADLINE_NOW),
                         SL_EFULL);
        assert_int_equal(pushed, 8);
        void *out[16];
        uint32_t out_sizes[16];
        uint32_t popped = 0;
        assert_int_equal(sl_channel_pop_batch(ch, out, out_sizes, 5, &popped, SL_DEADLINE_NOW),
                         SL_OK);
        assert_int_equal(popped, 5);
        assert_int_equal(
            sl_channel_push_batch(ch, items + 8, sizes + 8, 2, &pushed, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(pushed, 2);
        assert_int_equal(
            sl_channel_pop_batch(ch, out + 5, out_sizes + 5, 16, &popped, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(popped, 5);
        for (uint32_t i = 0; i < 10; i++) {
            assert_int_equal(value_of(out[i]), i);
            assert_int_equal(out_sizes[i], i);
        }
        sl_channel_free(ch);
    }
}

static void
test_channel_close_drains_then_reports_closed(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_BLOCK, NULL);
        for (uintptr_t i = 0; i < 3; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 1, SL_DEADLINE_NOW), SL_OK);
        }
        sl_channel_close(ch);
        sl_channel_close(ch); // idempotent
        assert_int_equal(sl_channel_push(ch, item_of(9), 1, SL_DEADLINE_NEVER), SL_ECLOSED);
        for (uintptr_t i = 0; i < 3; i++) {
            void *item = NULL;
            assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NEVER), SL_OK);
            assert_int_equal(value_of(item), i);
        }
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NEVER), SL_ECLOSED);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_true(st.closed);
        sl_channel_free(ch);
    }
}

static bool
fd_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

static void
on_room(sl_channel *ch, void *user)
{
    (void)ch;
    (*(int *)user)++;
}

static void
test_channel_room_fd_and_cb_fire_after_refusal(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 2, 0, SL_FULL_REJECT, NULL);
        int fd = sl_channel_room_fd(ch);
        assert_true(fd >= 0);
        int calls = 0;
        sl_channel_set_room_cb(ch, on_room, &calls);
        assert_int_equal(sl_channel_push(ch, item_of(0), 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(ch, item_of(1), 1, SL_DEADLINE_NOW), SL_OK);
        void *item = NULL;
        // Pops without an earlier refusal signal nothing.
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        assert_false(fd_readable(fd));
        assert_int_equal(sl_channel_push(ch, item_of(2), 1, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_push(ch, item_of(3), 1, SL_DEADLINE_NOW), SL_EFULL);
        assert_false(fd_readable(fd));
        assert_int_equal(calls, 0);
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        assert_true(fd_readable(fd));
        assert_int_equal(calls, 1);
        uint64_t v = 0;
        assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
        // One refusal, one signal: the next pop is quiet again.
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        assert_false(fd_readable(fd));
        assert_int_equal(calls, 1);
        sl_channel_set_room_cb(ch, NULL, NULL);
        sl_channel_free(ch);
    }
}

static void
test_channel_data_fd_fires_after_empty_pop(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 4, 0, SL_FULL_BLOCK, NULL);
        int fd = sl_channel_data_fd(ch);
        assert_true(fd >= 0);
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_EAGAIN);
        assert_false(fd_readable(fd));
        assert_int_equal(sl_channel_push(ch, item_of(0), 1, SL_DEADLINE_NOW), SL_OK);
        assert_true(fd_readable(fd));
        uint64_t v = 0;
        assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_EAGAIN);
        sl_channel_close(ch); // close is news for a waiting consumer too
        assert_true(fd_readable(fd));
        sl_channel_free(ch);
    }
}

static void
test_channel_oldest_age_tracks_head(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 4, 0, SL_FULL_BLOCK, NULL);
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.oldest_age_ns, 0);
        assert_int_equal(sl_channel_push(ch, item_of(0), 1, SL_DEADLINE_NOW), SL_OK);
        struct timespec nap = {.tv_sec = 0, .tv_nsec = 30 * 1000000};
        nanosleep(&nap, NULL);
        assert_int_equal(sl_channel_push(ch, item_of(1), 1, SL_DEADLINE_NOW), SL_OK);
        sl_channel_stats_get(ch, &st);
        assert_true(st.oldest_age_ns >= 25 * 1000000);
        void *item = NULL;
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        sl_channel_stats_get(ch, &st);
        assert_true(st.oldest_age_ns < 25 * 1000000);
        assert_int_equal(sl_channel_pop(ch, &item, NULL, SL_DEADLINE_NOW), SL_OK);
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.oldest_age_ns, 0);
        sl_channel_free(ch);
    }
}

static void
test_channel_free_hands_leftovers_to_drop_cb(void **state)
{
    (void)state;
    int64_t before = sl__alloc_bytes_in_use();
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        drop_log log = {0};
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_BLOCK, &log);
        for (uintptr_t i = 0; i < 5; i++) {
            assert_int_equal(sl_channel_push(ch, item_of(i), 1, SL_DEADLINE_NOW), SL_OK);
        }
        sl_channel_free(ch);
        assert_int_equal(log.by_reason[SL_CHANNEL_DROP_DISCARDED], 5);
        for (uint32_t i = 0; i < 5; i++) {
            assert_int_equal(log.values[i], i);
        }
    }
    assert_int_equal(sl__alloc_bytes_in_use(), before);
}

static void
test_channel_wraps_many_laps(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 4, 0, SL_FULL_REJECT, NULL);
        uintptr_t next_in = 0;
        uintptr_t next_out = 0;
        for (int round = 0; round < 1000; round++) {
            while (sl_channel_push(ch, item_of(next_in), 3, SL_DEADLINE_NOW) == SL_OK) {
                next_in++;
            }
            void *items[3];
            uint32_t popped = 0;
            assert_int_equal(sl_channel_pop_batch(ch, items, NULL, 3, &popped, SL_DEADLINE_NOW),
                             SL_OK);
            for (uint32_t i = 0; i < popped; i++) {
                assert_int_equal(value_of(items[i]), next_out++);
            }
            assert_true(sl__channel_check(ch));
        }
        sl_channel_stats st;
        sl_channel_stats_get(ch, &st);
        assert_int_equal(st.pushed_total, next_in);
        assert_int_equal(st.popped_total, next_out);
        assert_int_equal(st.depth_bytes, 3 * (next_in - next_out));
        sl_channel_free(ch);
    }
}

// Batches that straddle the end of the ring keep order, sizes and byte counts, with and without
// a sizes array on the pop side (the ring copies a batch in two contiguous runs).
static void
test_channel_batches_straddle_the_wrap(void **state)
{
    (void)state;
    for (size_t k = 0; k < SL_ARRAY_LEN(KINDS); k++) {
        sl_channel *ch = channel_make(KINDS[k], 8, 0, SL_FULL_REJECT, NULL);
        uintptr_t next_in = 0;
        uintptr_t next_out = 0;
        uint64_t bytes_in = 0;
        uint64_t bytes_out = 0;
        for (int round = 0; round < 200; round++) {
            void *items[5];
            uint32_t sizes[5];
            uint32_t count = 5;
            for (uint32_t i = 0; i < count; i++) {
                items[i] = item_of(next_in + i);
                sizes[i] = (uint32_t)((next_in + i) % 7);
            }
            uint32_t pushed = 0;
            int err = sl_channel_push_batch(ch, items, sizes, count, &pushed, SL_DEADLINE_NOW);
            assert_true(err == SL_OK || err == SL_EFULL);
            for (uint32_t i = 0; i < pushed; i++) {
                bytes_in += sizes[i];
            }
            next_in += pushed;
            void *out[3];
            uint32_t out_sizes[3];
            uint32_t popped = 0;
            bool with_sizes = round % 2 == 0;
            assert_int_equal(sl_channel_pop_batch(ch, out, with_sizes ? out_sizes : NULL, 3,
                                                  &popped, SL_DEADLINE_NOW),
                             SL_OK);
            for (uint32_t i = 0; i < popped; i++) {
                assert_int_equal(value_of(out[i]), next_out);
                if (with_sizes) {
                    assert_int_equal(out_sizes[i], next_out % 7);
                }
                bytes_out += next_out % 7;
                next_out++;
            }
            sl_channel_stats st;
            sl_channel_stats_get(ch, &st);
            assert_int_equal(st.depth_records, next_in - next_out);
            assert_int_equal(st.depth_bytes, bytes_in - bytes_out);
            assert_true(sl__channel_check(ch));
        }
        sl_channel_free(ch);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_rejects_bad_config),
        cmocka_unit_test(test_channel_new_fails_cleanly_without_memory),
        cmocka_unit_test(test_channel_capacity_rounds_up_to_power_of_two),
        cmocka_unit_test(test_channel_reject_returns_efull_and_counts),
        cmocka_unit_test(test_channel_block_try_returns_eagain_and_deadline_times_out),
        cmocka_unit_test(test_channel_drop_newest_counts_each_drop),
        cmocka_unit_test(test_channel_drop_oldest_counts_each_drop),
        cmocka_unit_test(test_channel_byte_capacity_and_too_big),
        cmocka_unit_test(test_channel_drop_oldest_makes_byte_room),
        cmocka_unit_test(test_channel_budget_refusal_is_full_and_release_on_pop),
        cmocka_unit_test(test_channel_batches_keep_order_and_partial_counts),
        cmocka_unit_test(test_channel_close_drains_then_reports_closed),
        cmocka_unit_test(test_channel_room_fd_and_cb_fire_after_refusal),
        cmocka_unit_test(test_channel_data_fd_fires_after_empty_pop),
        cmocka_unit_test(test_channel_oldest_age_tracks_head),
        cmocka_unit_test(test_channel_free_hands_leftovers_to_drop_cb),
        cmocka_unit_test(test_channel_wraps_many_laps),
        cmocka_unit_test(test_channel_batches_straddle_the_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
