// `sluice demo`: backpressure shown on a running broker. Creates a demo topic with a small
// backlog budget, drives a bursty producer (bursts well above what the consumer takes) and a
// rate-limited consumer, prints once a second what is offered, accepted, delivered, how full the
// budget is, whether the producer is blocked or throttled and the lag; then proves nothing was
// lost: every acknowledged sequence is marked in one bitmap, every consumed one in another, and
// the summary counts acknowledged sequences never consumed.
#include "cli/ops.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/util.h"

#define DEMO_SECONDS_DEFAULT  60u
#define DEMO_CONSUMER_RATE    20000u  // records/s the consumer takes
#define DEMO_BURST_RATE       100000u // records/s the source offers during a burst
#define DEMO_BURST_MS         1000u   // a burst, then as long a pause: 2.5x capacity on average
#define DEMO_RECORD_BYTES     200u
#define DEMO_BACKLOG_BYTES    (2u * 1024u * 1024u) // the topic's small budget
#define DEMO_PRODUCER_BUFFER  (1u * 1024u * 1024u) // client buffer: small, so blocking shows
#define DEMO_RECORDS_MAX      (1u << 26)           // bitmap bound: 8 MiB per bitmap
#define DEMO_SEND_WAIT_MS     100
#define DEMO_POLL_BATCH       256u
#define DEMO_DRAIN_TIMEOUT_MS 60000 // after the run: time the consumer gets to catch up
#define DEMO_TOPIC_NAME_MAX   64u

static const char demo_usage[] =
    "usage: sluice demo [--seconds N] [--rate N] [--burst N] [--topic NAME]\n"
    "                   [--broker HOST:PORT] [--admin HOST:PORT]\n"
    "Overloads a fresh demo topic (2 MiB backlog) with bursts of --burst records/s (default\n"
    "100000, 1 s on, 1 s off) against a consumer limited to --rate records/s (default 20000)\n"
    "for --seconds (default 60), printing the flow every second, then checks that every\n"
    "acknowledged record was consumed.\n";

typedef struct demo {
    const char *broker;
    const char *admin;
    char topic[DEMO_TOPIC_NAME_MAX];
    uint64_t seconds;
    uint64_t rate;
    uint64_t burst;
    int64_t start_ns;
    _Atomic bool stop_producing;
    _Atomic bool stop_consuming;
    _Atomic uint64_t *acked_bits;    // DEMO_RECORDS_MAX bits
    _Atomic uint64_t *consumed_bits; // written by the consumer thread only
    _Atomic uint64_t offered;        // records the bursty source wanted to send so far
    _Atomic uint64_t sent;           // accepted by sl_producer_send
    _Atomic uint64_t acked;
    _Atomic uint64_t failed;
    _Atomic uint64_t consumed;
    _Atomic uint64_t duplicates;
    _Atomic uint64_t seq_mismatch; // a report whose sequence did not match the demo's numbering
    sl_producer *producer;
    sl_consumer *consumer;
} demo;

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool
bit_set(_Atomic uint64_t *bits, uint64_t i)
{
    uint64_t mask = UINT64_C(1) << (i % 64);
    return (atomic_fetch_or(&bits[i / 64], mask) & mask) != 0;
}

static bool
bit_get(_Atomic uint64_t *bits, uint64_t i)
{
    return (atomic_load(&bits[i / 64]) >> (i % 64)) & 1u;
}

// Delivery reports (I/O thread): mark every acknowledged sequence.
static void
on_report(const sl_delivery_report *r, void *user)
{
    demo *d = user;
    if (r->err != SL_OK) {
        atomic_fetch_add(&d->failed, r->record_count);
        return;
    }
    for (uint32_t i = 0; i < r->record_count; i++) {
        uint64_t seq = r->seq + i;
        if (seq >= DEMO_RECORDS_MAX) {
            atomic_fetch_add(&d->seq_mismatch, 1);
            continue;
        }
        bit_set(d->acked_bits, seq);
    }
    atomic_fetch_add(&d->acked, r->record_count);
}

// Records the bursty source has offered by now: burst rate during the "on" half of each period.
static uint64_t
offered_by(const demo *d, int64_t now)
{
    int64_t elapsed_ms = (now - d->start_ns) / 1000000;
    int64_t period = 2 * DEMO_BURST_MS;
    int64_t on_ms =
        (elapsed_ms / period) * DEMO_BURST_MS + SL_MIN(elapsed_ms % period, (int64_t)DEMO_BURST_MS);
    return (uint64_t)on_ms * d->burst / 1000;
}

static void *
producer_main(void *arg)
{
    demo *d = arg;
    char value[DEMO_RECORD_BYTES];
    memset(value, 'x', sizeof(value));
    uint64_t next = 0;
    // Bounded by the run's length and DEMO_RECORDS_MAX.
    while (!atomic_load(&d->stop_producing) && next < DEMO_RECORDS_MAX) {
        uint64_t offered = offered_by(d, mono_ns());
        atomic_store(&d->offered, offered);
        if (next >= offered) {
            sleep_ms(1);
            continue;
        }
        int n = snprintf(value, sizeof(value), "%llu ", (unsigned long long)next);
        value[n] = 'x';
        sl_record r = {.value = value, .value_size = sizeof(value), .timestamp_us = wall_us()};
        uint64_t seq = 0;
        int rc = sl_producer_send(d->producer, &r, sl_deadline_after_ms(DEMO_SEND_WAIT_MS), &seq);
        if (rc == SL_ETIMEDOUT) {
            continue; // blocked by backpressure: the source falls behind, nothing is lost
        }
        if (rc != SL_OK) {
            break;
        }
        if (seq != next) {
            atomic_fetch_add(&d->seq_mismatch, 1);
        }
        next++;
        atomic_store(&d->sent, next);
    }
    return NULL;
}

static void
consume_one(demo *d, const sl_consumed *c)
{
    char digits[24];
    size_t n = SL_MIN(c->record.value_size, sizeof(digits) - 1);
    memcpy(digits, c->record.value, n);
    digits[n] = '\0';
    uint64_t seq = strtoull(digits, NULL, 10);
    if (seq >= DEMO_RECORDS_MAX) {
        return;
    }
    if (bit_set(d->consumed_bits, seq)) {
        atomic_fetch_add(&d->duplicates, 1);
    } else {
        atomic_fetch_add(&d->consumed, 1);
    }
}

static void *
consumer_main(void *arg)
{
    demo *d = arg;
    sl_consumed batch[DEMO_POLL_BATCH];
    int64_t start = mono_ns();
    uint64_t taken = 0;
    // Bounded by the run (stop_consuming is set after the drain deadline at the latest).
    while (!atomic_load(&d->stop_consuming)) {
        // Pace: never ahead of rate x elapsed time.
        uint64_t allowed = (uint64_t)((double)(mono_ns() - start) / 1e9 * (double)d->rate);
        if (taken >= allowed) {
            sleep_ms(1);
            continue;
        }
        size_t cap = SL_MIN((size_t)(allowed - taken), (size_t)DEMO_POLL_BATCH);
        size_t count = 0;
        int rc = sl_consumer_poll(d->consumer, batch, cap, sl_deadline_after_ms(100), &count);
        if (rc != SL_OK && rc != SL_ETIMEDOUT && rc != SL_EAGAIN) {
            break;
        }
        for (size_t i = 0; i < count; i++) {
            consume_one(d, &batch[i]);
        }
        taken += count;
    }
    return NULL;
}

// ---- the per-second view ------------------------------------------------------------------------

typedef struct demo_sample {
    uint64_t offered;
    uint64_t sent;
    uint64_t acked;
    uint64_t consumed;
    int64_t blocked_ns;
    uint64_t throttles;
    uint64_t credit_waits;
} demo_sample;

static void
sample_take(demo *d, demo_sample *s)
{
    sl_producer_stats ps;
    sl_producer_stats_get(d->producer, &ps);
    s->offered = offered_by(d, mono_ns());
    s->sent = atomic_load(&d->sent);
    s->acked = atomic_load(&d->acked);
    s->consumed = atomic_load(&d->consumed);
    s->blocked_ns = ps.blocked_ns_total;
    s->throttles = ps.client.throttles_total;
    s->credit_waits = ps.client.credit_waits_total;
}

// What the broker says about the demo topic: backlog budget fill and the producer's admission
// level (0 grant .. 3 throttled); NAN / -1 when the admin endpoint is not reached.
static void
broker_view(demo *d, double *fill_out, int *level_out)
{
    *fill_out = NAN;
    *level_out = -1;
    json_t *stats = NULL;
    long status = 0;
    char why[256];
    if (sl_cli_admin_json(d->admin, "/stats", SL_CLI_ADMIN_TIMEOUT_MS, &stats, &status, why,
                          sizeof(why)) != SL_OK) {
        return;
    }
    const char *const bl[] = {"scope", "topic", "owner", d->topic, "budget", "backlog", NULL};
    *fill_out = sl_cli_stat(stats, "sluice_budget_fill_ratio", bl, NULL);
    const char *const t[] = {"topic", d->topic, NULL};
    double level = sl_cli_stat(stats, "sluice_producer_admission_level", t, NULL);
    *level_out = isnan(level) ? -1 : (int)level;
    json_decref(stats);
}

static const char *
level_name(int level)
{
    static const char *const names[] = {"grant", "shrink", "delay-acks", "throttle"};
    return level >= 0 && level <= 3 ? names[level] : "-";
}

static void
print_header(FILE *out)
{
    fprintf(out, "%4s %9s %9s %9s %7s %10s %10s %9s %8s\n", "sec", "offered/s", "accepted/s",
            "deliver/s", "fill", "blocked", "throttle", "credit-w", "lag");
}

static void
print_row(FILE *out, demo *d, uint64_t sec, const demo_sample *a, const demo_sample *b)
{
    double fill = NAN;
    int level = -1;
    broker_view(d, &fill, &level);
    char fill_text[16];
    if (isnan(fill)) {
        snprintf(fill_text, sizeof(fill_text), "-");
    } else {
        snprintf(fill_text, sizeof(fill_text), "%.0f%%", fill * 100);
    }
    char blocked[24];
    snprintf(blocked, sizeof(blocked), "%lld ms",
             (long long)((b->blocked_ns - a->blocked_ns) / 1000000));
    char throttle[24];
    snprintf(throttle, sizeof(throttle), "%s%s", level_name(level),
             b->throttles > a->throttles ? "*" : "");
    fprintf(out, "%4llu %9llu %10llu %9llu %7s %10s %10s %9llu %8llu\n", (unsigned long long)sec,
            (unsigned long long)(b->offered - a->offered),
            (unsigned long long)(b->acked - a->acked),
            (unsigned long long)(b->consumed - a->consumed), fill_text, blocked, throttle,
            (unsigned long long)(b->credit_waits - a->credit_waits),
            (unsigned long long)(b->acked > b->consumed ? b->acked - b->consumed : 0));
    fflush(out);
}

// ---- setup, run, summary -----------------------------------------------------------------------

static int
demo_topic_create(demo *d, FILE *err)
{
    sl_admin *a = NULL;
    int rc = sl_admin_open(d->broker, sl_deadline_after_ms(SL_CLI_TIMEOUT_MS_DEFAULT), &a);
    if (rc != SL_OK) {
        return sl_cli_fail(err, "demo", sl_cli_exit_for(rc), "cannot reach the broker: %s",
                           sl_strerror(rc));
    }
    sl_proto_topic_config cfg = {.partition_count = 1,
                                 .max_backlog_bytes = DEMO_BACKLOG_BYTES,
                                 .full_policy = SL_FULL_BLOCK};
    rc = sl_admin_create_topic(a, d->topic, &cfg, sl_deadline_after_ms(SL_CLI_TIMEOUT_MS_DEFAULT));
    int code = SL_CLI_EXIT_OK;
    if (rc != SL_OK) {
        code = sl_cli_fail(err, "demo", sl_cli_exit_for(rc), "cannot create topic %s: %s%s%s",
                           d->topic, sl_strerror(rc), sl_admin_last_message(a)[0] ? ": " : "",
                           sl_admin_last_message(a));
    }
    sl_admin_close(a);
    return code;
}

static int
demo_clients_open(demo *d, FILE *err)
{
    sl_producer_config pc;
    sl_producer_config_init(&pc);
    pc.broker = d->broker;
    pc.topic = d->topic;
    pc.partition = 0;
    pc.buffer_bytes = DEMO_PRODUCER_BUFFER;
    pc.client_id = "sluice-demo-producer";
    pc.delivery_cb = on_report;
    pc.delivery_user = d;
    int rc = sl_producer_new(&pc, &d->producer);
    if (rc != SL_OK) {
        return sl_cli_fail(err, "demo", SL_CLI_EXIT_FAILED, "producer: %s", sl_strerror(rc));
    }
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = d->broker;
    cc.topic = d->topic;
    cc.client_id = "sluice-demo-consumer";
    rc = sl_consumer_new(&cc, &d->consumer);
    if (rc != SL_OK) {
        return sl_cli_fail(err, "demo", SL_CLI_EXIT_FAILED, "consumer: %s", sl_strerror(rc));
    }
    return SL_CLI_EXIT_OK;
}

// Counts acknowledged sequences that were never consumed (the loss), over the range sent.
static uint64_t
count_lost(demo *d, uint64_t sent)
{
    uint64_t lost = 0;
    for (uint64_t i = 0; i < sent && i < DEMO_RECORDS_MAX; i++) {
        if (bit_get(d->acked_bits, i) && !bit_get(d->consumed_bits, i)) {
            lost++;
        }
    }
    return lost;
}

static int
summary(FILE *out, demo *d, double seconds)
{
    uint64_t sent = atomic_load(&d->sent);
    uint64_t acked = atomic_load(&d->acked);
    uint64_t consumed = atomic_load(&d->consumed);
    uint64_t lost = count_lost(d, sent);
    uint64_t offered = atomic_load(&d->offered); // at the moment the source stopped
    sl_producer_stats ps;
    sl_producer_stats_get(d->producer, &ps);
    fprintf(out,
            "\nsummary after %.1f s: offered %llu, accepted (acked) %llu, consumed %llu, "
            "duplicates %llu\n",
            seconds, (unsigned long long)offered, (unsigned long long)acked,
            (unsigned long long)consumed, (unsigned long long)atomic_load(&d->duplicates));
    fprintf(out,
            "the producer was held back %.1f s by backpressure (%llu credit waits, %llu "
            "throttles); the source fell %llu records behind instead of the broker growing\n",
            (double)ps.blocked_ns_total / 1e9, (unsigned long long)ps.client.credit_waits_total,
            (unsigned long long)ps.client.throttles_total,
            (unsigned long long)(offered > sent ? offered - sent : 0));
    fprintf(out, "lost: %llu of %llu acknowledged records (every acked sequence %s)\n",
            (unsigned long long)lost, (unsigned long long)acked,
            lost == 0 ? "was consumed" : "was NOT consumed");
    bool ok = lost == 0 && atomic_load(&d->failed) == 0 && atomic_load(&d->seq_mismatch) == 0;
    if (atomic_load(&d->failed) > 0 || atomic_load(&d->seq_mismatch) > 0) {
        fprintf(out, "failed reports %llu, sequence mismatches %llu\n",
                (unsigned long long)atomic_load(&d->failed),
                (unsigned long long)atomic_load(&d->seq_mismatch));
    }
    return ok ? SL_CLI_EXIT_OK : SL_CLI_EXIT_INCOMPLETE;
}

static int
demo_opt(void *user, int c, FILE *err)
{
    demo *d = user;
    switch (c) {
    case 'b':
        d->broker = optarg;
        return SL_OK;
    case 'a':
        d->admin = optarg;
        return SL_OK;
    case 't':
        snprintf(d->topic, sizeof(d->topic), "%s", optarg);
        return SL_OK;
    case 's':
        return sl_cli_parse_u64(err, "demo", "--seconds", optarg, &d->seconds);
    case 'r':
        return sl_cli_parse_u64(err, "demo", "--rate", optarg, &d->rate);
    case 'B':
        return sl_cli_parse_u64(err, "demo", "--burst", optarg, &d->burst);
    default:
        sl_cli_fail(err, "demo", 0, "unknown option (try --help)");
        return SL_EINVAL;
    }
}

// The run itself: threads, one row a second, then the drain and the summary.
static int
demo_run(demo *d, FILE *out)
{
    pthread_t prod;
    pthread_t cons;
    d->start_ns = mono_ns();
    pthread_create(&cons, NULL, consumer_main, d);
    pthread_create(&prod, NULL, producer_main, d);
    print_header(out);
    demo_sample prev;
    sample_take(d, &prev);
    // Bounded by --seconds (or Ctrl-C).
    for (uint64_t sec = 1; sec <= d->seconds && !sl_cli_interrupted; sec++) {
        int64_t due = d->start_ns + (int64_t)sec * 1000000000;
        sleep_ms(SL_MAX((due - mono_ns()) / 1000000, (int64_t)0));
        demo_sample now;
        sample_take(d, &now);
        print_row(out, d, sec, &prev, &now);
        prev = now;
    }
    atomic_store(&d->stop_producing, true);
    pthread_join(prod, NULL);
    int rc = sl_producer_flush(d->producer, sl_deadline_after_ms(DEMO_DRAIN_TIMEOUT_MS));
    // Let the consumer take everything acknowledged (at its rate), bounded by the drain timeout.
    int64_t drain_until = mono_ns() + (int64_t)DEMO_DRAIN_TIMEOUT_MS * 1000000;
    while (atomic_load(&d->consumed) < atomic_load(&d->acked) && mono_ns() < drain_until &&
           !sl_cli_interrupted) {
        sleep_ms(20);
    }
    atomic_store(&d->stop_consuming, true);
    pthread_join(cons, NULL);
    if (rc != SL_OK) {
        fprintf(out, "flush: %s\n", sl_strerror(rc));
    }
    return summary(out, d, (double)(mono_ns() - d->start_ns) / 1e9);
}

int
sl_cli_demo(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option longs[] = {
        {"broker", required_argument, NULL, 'b'}, {"admin", required_argument, NULL, 'a'},
        {"topic", required_argument, NULL, 't'},  {"seconds", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},   {"burst", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    static demo d;
    memset(&d, 0, sizeof(d));
    d.seconds = DEMO_SECONDS_DEFAULT;
    d.rate = DEMO_CONSUMER_RATE;
    d.burst = DEMO_BURST_RATE;
    snprintf(d.topic, sizeof(d.topic), "demo-%lld", (long long)time(NULL));
    int code = sl_cli_getopt(argc, argv, "h", longs, demo_usage, out, err, demo_opt, &d);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    if (d.rate == 0 || d.burst == 0 || d.seconds == 0) {
        return sl_cli_fail(err, "demo", SL_CLI_EXIT_USAGE,
                           "--seconds, --rate, --burst must be > 0");
    }
    size_t words = DEMO_RECORDS_MAX / 64;
    d.acked_bits = calloc(words, sizeof(uint64_t));
    d.consumed_bits = calloc(words, sizeof(uint64_t));
    if (d.acked_bits == NULL || d.consumed_bits == NULL) {
        free((void *)d.acked_bits);
        free((void *)d.consumed_bits);
        return sl_cli_fail(err, "demo", SL_CLI_EXIT_FAILED, "out of memory");
    }
    code = demo_topic_create(&d, err);
    if (code == SL_CLI_EXIT_OK) {
        fprintf(out,
                "topic %s: backlog budget %u KiB; source bursts %llu rec/s (%u ms on, %u ms off); "
                "consumer takes %llu rec/s; %llu s\n\n",
                d.topic, DEMO_BACKLOG_BYTES / 1024, (unsigned long long)d.burst, DEMO_BURST_MS,
                DEMO_BURST_MS, (unsigned long long)d.rate, (unsigned long long)d.seconds);
        code = demo_clients_open(&d, err);
    }
    if (code == SL_CLI_EXIT_OK) {
        code = demo_run(&d, out);
    }
    sl_producer_free(d.producer);
    sl_consumer_free(d.consumer);
    free((void *)d.acked_bits);
    free((void *)d.consumed_bits);
    return code;
}
