// Load client for sluice: sl_producer (acks, bounded buffer; delivery reports on the I/O thread)
// and sl_consumer (prefetch credit, explicit acks) against a running sluiced. Topics bench0 and
// bench1 are created by setup; with --bounded (W2b, W4, W5) each gets a 64 MiB backlog budget,
// full_policy block and max_lag 2 s. Options (--opt): acks=log|fsync|memory, buffer=BYTES,
// batch=BYTES, linger_ms=N, prefetch=RECORDS, backlog=BYTES, max_lag_ms=N.
#include "common.h"

#include <stdio.h>
#include <string.h>

#include <sluice/client.h>
#include <sluice/error.h>

#define ADMIN_DEADLINE_MS 10000
#define FLUSH_DEADLINE_MS 60000
#define POLL_WAIT_MS      100
#define BOUND_BACKLOG     (64ull << 20)
#define BOUND_MAX_LAG_MS  2000u
#define DEFAULT_BUFFER    (4ull << 20)
#define DEFAULT_BATCH     (256u << 10)
#define DEFAULT_PREFETCH  10000u
// Bounded runs (W2b): the producer buffer and the consumer prefetch sit outside the broker's
// max_lag bound, so they are kept to about a tenth of a second of the consumer's rate each
// (256 KiB is ~1,900 records, the same order as NATS's and MQTT's in-flight windows).
#define BOUNDED_BUFFER   (256ull << 10)
#define BOUNDED_PREFETCH 2000u
#define TOPIC_NAME_BYTES 32

typedef struct prod_ctx {
    pb_run *run;
    uint32_t p;
} prod_ctx;

static void
topic_name(char *buf, uint32_t topic)
{
    snprintf(buf, TOPIC_NAME_BYTES, "bench%u", topic);
}

static int
sluice_setup(pb_run *run)
{
    sl_admin *a;
    int err = sl_admin_open(run->addr, sl_deadline_after_ms(ADMIN_DEADLINE_MS), &a);
    if (err != SL_OK) {
        fprintf(stderr, "sluice: admin open %s: %s\n", run->addr, sl_strerror(err));
        return -1;
    }
    sl_proto_topic_config cfg = {.partition_count = 1, .full_policy = SL_FULL_BLOCK};
    if (run->bounded) {
        cfg.max_backlog_bytes = pb_opt_u64(run, "backlog", BOUND_BACKLOG);
        cfg.max_lag_ms = (uint32_t)pb_opt_u64(run, "max_lag_ms", BOUND_MAX_LAG_MS);
    }
    for (uint32_t t = 0; t < run->consumers && err == SL_OK; t++) {
        char name[TOPIC_NAME_BYTES];
        topic_name(name, t);
        err = sl_admin_create_topic(a, name, &cfg, sl_deadline_after_ms(ADMIN_DEADLINE_MS));
        if (err != SL_OK) {
            fprintf(stderr, "sluice: create %s: %s (%s)\n", name, sl_strerror(err),
                    sl_admin_last_message(a));
        }
    }
    sl_admin_close(a);
    return err == SL_OK ? 0 : -1;
}

// Records are sent in sequence order by one thread, and the client numbers them from 0, so the
// client's sequence is the benchmark's.
static void
on_delivery(const sl_delivery_report *r, void *user)
{
    prod_ctx *ctx = user;
    for (uint32_t i = 0; i < r->record_count; i++) {
        if (r->err == SL_OK) {
            pb_prod_acked(ctx->run, ctx->p, r->seq + i);
        } else {
            pb_prod_rejected(ctx->run, ctx->p, r->seq + i, sl_strerror(r->err));
        }
    }
}

static sl_acks
parse_acks(const char *s)
{
    if (strcmp(s, "fsync") == 0) {
        return SL_ACKS_FSYNC;
    }
    return strcmp(s, "memory") == 0 ? SL_ACKS_MEMORY : SL_ACKS_LOG;
}

// Sends until the workload says done. A message blocked past its slice is retried with the
// same payload (stamped at its first try), so blocked time counts in its latency.
static void
produce_loop(pb_run *run, uint32_t p, sl_producer *prod)
{
    uint8_t buf[PB_PAYLOAD_BYTES];
    uint64_t seq = 0;
    bool pending = false;
    int64_t first_try = 0;
    for (uint64_t iter = 0; iter < PB_MAX_SEQ * 4; iter++) {
        if (!pending) {
            int64_t wait_ns = 0;
            pb_next n = pb_prod_next(run, p, buf, &seq, &wait_ns);
            if (n == PB_NEXT_DONE) {
                break;
            }
            if (n == PB_NEXT_WAIT) {
                pb_sleep_ns(wait_ns);
                continue;
            }
            pending = true;
            first_try = pb_now_ns();
        }
        sl_record rec = {.value = buf, .value_size = PB_PAYLOAD_BYTES};
        uint64_t got = 0;
        int err = sl_producer_send(prod, &rec, pb_now_ns() + PB_SEND_SLICE_NS, &got);
        if (err == SL_OK) {
            if (got != seq) {
                fprintf(stderr, "sluice: client sequence %lu != %lu\n", (unsigned long)got,
                        (unsigned long)seq);
            }
            pb_prod_sent(run, p, first_try, pb_now_ns());
            pending = false;
        } else if (err != SL_ETIMEDOUT || pb_prod_window_over(run, p)) {
            pb_prod_waited(run, p, first_try, pb_now_ns());
            if (err != SL_ETIMEDOUT) {
                pb_prod_note(run, p, sl_strerror(err));
            }
            break;
        }
    }
    pb_prod_window_end(run, p);
}

static int
sluice_produce(pb_run *run, uint32_t p)
{
    char topic[TOPIC_NAME_BYTES];
    topic_name(topic, run->sh->prod[p].topic);
    prod_ctx ctx = {.run = run, .p = p};
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = run->addr;
    cfg.topic = topic;
    cfg.partition = 0;
    cfg.acks = parse_acks(pb_opt(run, "acks", "log"));
    cfg.buffer_bytes = pb_opt_u64(run, "buffer", run->bounded ? BOUNDED_BUFFER : DEFAULT_BUFFER);
    cfg.batch_bytes = (uint32_t)pb_opt_u64(run, "batch", DEFAULT_BATCH);
    cfg.linger_ms = (uint32_t)pb_opt_u64(run, "linger_ms", 1);
    cfg.delivery_cb = on_delivery;
    cfg.delivery_user = &ctx;
    sl_producer *prod;
    if (sl_producer_new(&cfg, &prod) != SL_OK) {
        return -1;
    }
    produce_loop(run, p, prod);
    int err = sl_producer_flush(prod, sl_deadline_after_ms(FLUSH_DEADLINE_MS));
    sl_producer_stats st;
    sl_producer_stats_get(prod, &st);
    char note[PB_REASON_BYTES];
    snprintf(note, sizeof(note), "throttles %lu, credit waits %lu, buffer full %lu%s",
             (unsigned long)st.client.throttles_total, (unsigned long)st.client.credit_waits_total,
             (unsigned long)st.buffer_full_total, err == SL_OK ? "" : ", flush timed out");
    pb_prod_note(run, p, note);
    pb_prod_finished(run, p);
    sl_producer_free(prod);
    return 0;
}

static int
sluice_consume(pb_run *run, uint32_t c)
{
    char topic[TOPIC_NAME_BYTES];
    topic_name(topic, c);
    sl_consumer_config cfg;
    sl_consumer_config_init(&cfg);
    cfg.broker = run->addr;
    cfg.topic = topic;
    cfg.auto_ack = false;
    cfg.prefetch_records =
        (uint32_t)pb_opt_u64(run, "prefetch", run->bounded ? BOUNDED_PREFETCH : DEFAULT_PREFETCH);
    cfg.prefetch_bytes = (uint64_t)cfg.prefetch_records * 256u;
    sl_consumer *con;
    if (sl_consumer_new(&cfg, &con) != SL_OK) {
        return -1;
    }
    pb_consumer *k = pb_cons_new(run, c);
    if (k == NULL) {
        sl_consumer_free(con);
        return -1;
    }
    static sl_consumed recs[PB_BATCH];
    for (uint64_t iter = 0; iter < UINT32_MAX && !pb_cons_should_stop(k); iter++) {
        size_t n = 0;
        int err = sl_consumer_poll(con, recs, PB_BATCH, sl_deadline_after_ms(POLL_WAIT_MS), &n);
        if (err == SL_ETIMEDOUT || n == 0) {
            continue;
        }
        if (err != SL_OK) {
            pb_cons_recv_error(k);
            continue;
        }
        pb_cons_batch_begin(k);
        for (size_t i = 0; i < n; i++) {
            pb_cons_msg(k, recs[i].record.value, recs[i].record.value_size);
        }
        pb_cons_batch_end(k);
        if (sl_consumer_ack(con, recs[n - 1].offset) != SL_OK) {
            pb_cons_recv_error(k);
        }
    }
    sl_consumer_stats st;
    sl_consumer_stats_get(con, &st);
    pb_cons_set_queued(k, st.log_end_offset >= st.next_offset
                              ? (int64_t)(st.log_end_offset - st.next_offset)
                              : -1);
    pb_cons_free(k);
    sl_consumer_free(con);
    return 0;
}

int
main(int argc, char **argv)
{
    static const pb_system sys = {.name = "sluice",
                                  .setup = sluice_setup,
                                  .produce = sluice_produce,
                                  .consume = sluice_consume};
    return pb_main(&sys, argc, argv);
}
