// The drop ledger on its own (drops.c, no process): contiguous drops of a partition merge into one
// run, a range already recorded is not counted again (a second consumer skipping it), runs of
// other partitions interleave, the ring keeps the newest SL_DROPS_LEDGER_ENTRIES runs and counts
// the overwritten ones, and /drops' JSON filters by topic.
#include "support/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "broker/broker.h"
#include "broker/ops.h"

typedef struct world {
    sl_broker b;
    sl_topic t;
    sl_topic u;
    sl_partition parts[2];
    sl_partition other;
} world;

static world *
world_new(void)
{
    world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    assert_int_equal(sl_ops_open(&w->b), SL_OK);
    snprintf(w->t.name, sizeof(w->t.name), "lossy");
    snprintf(w->u.name, sizeof(w->u.name), "other");
    w->t.config.partition_count = 2;
    w->t.config.full_policy = SL_FULL_DROP_OLDEST;
    w->u.config.full_policy = SL_FULL_DROP_OLDEST;
    for (uint32_t i = 0; i < 2; i++) {
        w->parts[i].topic = &w->t;
        w->parts[i].index = i;
    }
    w->other.topic = &w->u;
    w->t.next = &w->u;
    w->b.topics = &w->t;
    return w;
}

static void
world_free(world *w)
{
    sl_ops_close(&w->b);
    free(w);
}

static char *
render(world *w, const char *topic)
{
    static char buf[256 * 1024];
    sl_strbuf sb;
    sl__strbuf_init(&sb, buf, sizeof(buf));
    sl_drops_render(&w->b, topic, &sb);
    assert_true(sl__strbuf_fits(&sb));
    return buf;
}

static void
test_drops_merge_and_count_once(void **state)
{
    (void)state;
    world *w = world_new();
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 0, 100);
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 100, 250); // continues the run
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 0, 250);   // a second consumer
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 50, 300);  // overlaps: 50 new
    assert_int_equal(sl_drops_total(&w->b), 300);
    assert_int_equal(w->b.ops->ledger_count, 1);
    char *j = render(w, NULL);
    assert_non_null(strstr(j, "\"partition\":0,\"reason\":\"evicted\",\"first_offset\":0,"
                              "\"end_offset\":300,\"records\":300"));
    // Another partition in between: the next drop of partition 0 opens a new run.
    sl_drops_record(&w->b, &w->parts[1], SL_DROP_EVICTED, 0, 10);
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 300, 310);
    sl_drops_record(&w->b, &w->other, SL_DROP_EVICTED, 7, 9);
    assert_int_equal(w->b.ops->ledger_count, 4);
    assert_int_equal(sl_drops_total(&w->b), 322);
    j = render(w, "other");
    assert_non_null(strstr(j, "\"first_offset\":7,\"end_offset\":9"));
    assert_null(strstr(j, "\"topic\":\"lossy\",\"partition\""));
    // Empty and backwards ranges are nothing.
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 5, 5);
    sl_drops_record(&w->b, &w->parts[0], SL_DROP_EVICTED, 9, 3);
    assert_int_equal(sl_drops_total(&w->b), 322);
    world_free(w);
}

static void
test_drops_ring_keeps_the_newest(void **state)
{
    (void)state;
    world *w = world_new();
    // Alternating partitions: every drop is a run of its own.
    uint32_t runs = SL_DROPS_LEDGER_ENTRIES + 40;
    for (uint32_t i = 0; i < runs; i++) {
        uint64_t first = (uint64_t)(i / 2) * 10;
        sl_drops_record(&w->b, &w->parts[i % 2], SL_DROP_EVICTED, first, first + 5);
    }
    assert_int_equal(w->b.ops->ledger_count, SL_DROPS_LEDGER_ENTRIES);
    assert_int_equal(w->b.ops->ledger_overwritten, 40);
    assert_int_equal(sl_drops_total(&w->b), (uint64_t)runs * 5);
    char *j = render(w, "lossy");
    assert_non_null(strstr(j, "\"entries_overwritten\":40"));
    // The oldest runs (offsets 0..190 of each partition) are gone, the newest is there.
    assert_null(strstr(j, "\"first_offset\":0,"));
    char last[64];
    snprintf(last, sizeof(last), "\"first_offset\":%u,", ((runs - 1) / 2) * 10);
    assert_non_null(strstr(j, last));
    world_free(w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drops_merge_and_count_once),
        cmocka_unit_test(test_drops_ring_keeps_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
