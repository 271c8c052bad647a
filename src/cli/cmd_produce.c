// `sluice produce`: lines from stdin, or a generated load (--count, --rate, --burst, --size) whose
// values start with their sequence number, so a consumer can audit for loss. --ack-log writes
// "SEQ PARTITION OFFSET" per acknowledged message; a summary goes to stderr at the end.
#include "cli/cli.h"

#include <getopt.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>

#include "core/util.h"

// Longest generated value or stdin line (longer lines are refused, not split).
#define PRODUCE_VALUE_MAX (1024u * 1024u)
// A blocked send wakes this often to notice Ctrl-C.
#define PRODUCE_SEND_SLICE_MS 200

static const char produce_usage[] =
    "usage: sluice produce --topic NAME [options]\n"
    "Sends each stdin line as one message, or with --count/--rate/--size a generated load whose\n"
    "values are 'SEQ ' followed by filler.\n"
    "  --broker HOST:PORT     broker (default $SLUICE_BROKER, else 127.0.0.1:7420)\n"
    "  --topic NAME           topic (required)\n"
    "  --partition N          partition (default: by key hash, keyless batches round-robin)\n"
    "  --key KEY              key of every message; picks the partition without --partition\n"
    "  --acks LEVEL           none|memory|log|fsync (default log)\n"
    "  --count N              generate N messages (default: until interrupted)\n"
    "  --rate N               at most N messages per second\n"
    "  --burst N              messages allowed back to back above the rate (default rate/10)\n"
    "  --size SIZE            generated value size (default 100)\n"
    "  --ack-log FILE         write 'SEQ PARTITION OFFSET' per acknowledged message\n"
    "  --buffer SIZE          local buffer bound (default 32MiB)\n"
    "  --batch SIZE           batch size (default 1MiB)\n"
    "  --linger DURATION      batch linger (default 5ms)\n"
    "  --compression CODEC    none (default), lz4 or zstd\n"
    "  --timeout DURATION     wait this long for the last acks (default 10s)\n";

typedef struct produce_opts {
    sl_producer_config cfg;
    const char *key;
    const char *ack_log;
    bool generate;
    uint64_t count; // 0: unbounded
    uint64_t rate;  // 0: unlimited
    uint64_t burst;
    uint64_t size;
    int64_t timeout_ms;
} produce_opts;

typedef struct produce_state {
    FILE *ack_log;
    atomic_ullong acked;
    atomic_ullong failed;
    atomic_int first_error;
} produce_state;

static int
parse_codec(FILE *err, const char *text, sl_compression *out)
{
    static const char *names[] = {"none", "lz4", "zstd"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (sl_compression)i;
            return SL_OK;
        }
    }
    sl_cli_fail(err, "produce", 0, "--compression wants none, lz4 or zstd, got '%s'", text);
    return SL_EINVAL;
}

static int
produce_opt(void *user, int c, FILE *err)
{
    produce_opts *o = user;
    uint64_t v = 0;
    int64_t ms = 0;
    int r = SL_OK;
    switch (c) {
    case 'b':
        o->cfg.broker = optarg;
        break;
    case 't':
        o->cfg.topic = optarg;
        break;
    case 'k':
        o->key = optarg;
        break;
    case 'l':
        o->ack_log = optarg;
        break;
    case 'a':
        r = sl_cli_parse_acks(err, "produce", optarg, &o->cfg.acks);
        break;
    case 'p':
        r = sl_cli_parse_u64(err, "produce", "--partition", optarg, &v);
        o->cfg.partition = (uint32_t)v;
        break;
    case 'n':
        r = sl_cli_parse_u64(err, "produce", "--count", optarg, &o->count);
        break;
    case 'r':
        r = sl_cli_parse_u64(err, "produce", "--rate", optarg, &o->rate);
        break;
    case 'B':
        r = sl_cli_parse_u64(err, "produce", "--burst", optarg, &o->burst);
        break;
    case 's':
        r = sl_cli_parse_size(err, "produce", "--size", optarg, &o->size);
        break;
    case 'f':
        r = sl_cli_parse_size(err, "produce", "--buffer", optarg, &o->cfg.buffer_bytes);
        break;
    case 'S':
        r = sl_cli_parse_size(err, "produce", "--batch", optarg, &v);
        o->cfg.batch_bytes = (uint32_t)SL_MIN(v, SL_BATCH_SIZE_MAX);
        break;
    case 'L':
        r = sl_cli_parse_ms(err, "produce", "--linger", optarg, &ms);
        o->cfg.linger_ms = (uint32_t)SL_MIN(ms, 60000);
        break;
    case 'w':
        r = sl_cli_parse_ms(err, "produce", "--timeout", optarg, &o->timeout_ms);
        break;
    case 'z':
        r = parse_codec(err, optarg, &o->cfg.compression);
        break;
    default:
        sl_cli_fail(err, "produce", 0, "unknown or incomplete option (see --help)");
        r = SL_EINVAL;
        break;
    }
    o->generate = o->generate || c == 'n' || c == 'r' || c == 's';
    return r;
}

// Returns SL_CLI_EXIT_OK to go on, SL_CLI_HELP_SHOWN after --help, or an exit code.
static int
produce_parse(int argc, char **argv, FILE *out, FILE *err, produce_opts *o)
{
    static const struct option longs[] = {{"broker", required_argument, NULL, 'b'},
                                          {"topic", required_argument, NULL, 't'},
                                          {"key", required_argument, NULL, 'k'},
                                          {"ack-log", required_argument, NULL, 'l'},
                                          {"acks", required_argument, NULL, 'a'},
                                          {"partition", required_argument, NULL, 'p'},
                                          {"count", required_argument, NULL, 'n'},
                                          {"rate", required_argument, NULL, 'r'},
                                          {"burst", required_argument, NULL, 'B'},
                                          {"size", required_argument, NULL, 's'},
                                          {"buffer", required_argument, NULL, 'f'},
                                          {"batch", required_argument, NULL, 'S'},
                                          {"linger", required_argument, NULL, 'L'},
                                          {"compression", required_argument, NULL, 'z'},
                                          {"timeout", required_argument, NULL, 'w'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    sl_producer_config_init(&o->cfg);
    o->cfg.client_id = "sluice-produce";
    o->size = 100;
    o->timeout_ms = SL_CLI_TIMEOUT_MS_DEFAULT;
    int code = sl_cli_getopt(argc, argv, "b:t:h", longs, produce_usage, out, err, produce_opt, o);
    if (code != SL_CLI_EXIT_OK) {
        return code;
    }
    if (optind < argc) {
        return sl_cli_fail(err, "produce", SL_CLI_EXIT_USAGE, "unexpected argument '%s'",
                           argv[optind]);
    }
    if (o->cfg.topic == NULL) {
        return sl_cli_fail(err, "produce", SL_CLI_EXIT_USAGE, "--topic is required");
    }
    if (o->size > PRODUCE_VALUE_MAX) {
        return sl_cli_fail(err, "produce", SL_CLI_EXIT_USAGE, "--size is at most %u bytes",
                           PRODUCE_VALUE_MAX);
    }
    if (o->burst == 0) {
        o->burst = o->rate / 10 > 0 ? o->rate / 10 : 1;
    }
    return SL_CLI_EXIT_OK;
}

// Runs on the producer's I/O thread.
static void
on_report(const sl_delivery_report *r, void *user)
{
    produce_state *st = user;
    if (r->err != SL_OK) {
        atomic_fetch_add(&st->failed, r->record_count);
        int none = SL_OK;
        atomic_compare_exchange_strong(&st->first_error, &none, r->err);
        return;
    }
    atomic_fetch_add(&st->acked, r->record_count);
    for (uint32_t i = 0; st->ack_log != NULL && i < r->record_count; i++) {
        if (r->offset == SL_OFFSET_NONE) {
            fprintf(st->ack_log, "%llu %u -\n", (unsigned long long)(r->seq + i), r->partition);
        } else {
            fprintf(st->ack_log, "%llu %u %llu\n", (unsigned long long)(r->seq + i), r->partition,
                    (unsigned long long)(r->offset + i));
        }
    }
}

// Token bucket: waits until one more message fits rate and burst. tokens and last are state.
static void
pace(const produce_opts *o, double *tokens, int64_t *last_ns)
{
    if (o->rate == 0) {
        return;
    }
    for (int i = 0; i < 1000000 && !sl_cli_interrupted; i++) { // bounded: one token per wait
        int64_t now = sl_now_ns();
        *tokens += (double)(now - *last_ns) * (double)o->rate / 1e9;
        *tokens = *tokens > (double)o->burst ? (double)o->burst : *tokens;
        *last_ns = now;
        if (*tokens >= 1.0) {
            *tokens -= 1.0;
            return;
        }
        double wait_s = (1.0 - *tokens) / (double)o->rate;
        struct timespec ts = {.tv_sec = (time_t)wait_s,
                              .tv_nsec = (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

// Sends one value, waiting in slices so Ctrl-C is noticed while backpressure blocks.
static int
produce_one(sl_producer *p, const produce_opts *o, const char *value, size_t len)
{
    sl_record r = {.key = o->key,
                   .key_size = o->key ? (uint32_t)strlen(o->key) : 0,
                   .value = value,
                   .value_size = (uint32_t)len,
                   .timestamp_us = (int64_t)time(NULL) * 1000000};
    for (;;) { // bounded by Ctrl-C or success
        int err = sl_producer_send(p, &r, sl_deadline_after_ms(PRODUCE_SEND_SLICE_MS), NULL);
        if (err != SL_ETIMEDOUT || sl_cli_interrupted) {
            return err;
        }
    }
}

static int
produce_loop(sl_producer *p, const produce_opts *o, FILE *in, uint64_t *sent)
{
    char *buf = malloc(PRODUCE_VALUE_MAX + 2);
    if (buf == NULL) {
        return SL_ENOMEM;
    }
    double tokens = (double)o->burst;
    int64_t last = sl_now_ns();
    int err = SL_OK;
    for (uint64_t seq = 0; err == SL_OK && !sl_cli_interrupted; seq++) {
        size_t len = 0;
        if (o->generate) {
            if (o->count != 0 && seq >= o->count) {
                break;
            }
            len = sl_cli_gen_value(seq, o->size, buf, PRODUCE_VALUE_MAX);
        } else {
            if (fgets(buf, PRODUCE_VALUE_MAX + 2, in) == NULL) {
                break;
            }
            len = strlen(buf);
            len -= len > 0 && buf[len - 1] == '\n';
            if (len > PRODUCE_VALUE_MAX) {
                err = SL_ETOOBIG;
                break;
            }
        }
        pace(o, &tokens, &last);
        err = produce_one(p, o, buf, len);
        *sent += err == SL_OK;
    }
    free(buf);
    return err;
}

static void
summary(FILE *err, const sl_producer_stats *s, uint64_t sent, const produce_state *st, double secs)
{
    uint64_t acked = atomic_load(&st->acked);
    fprintf(err,
            "sluice produce: sent %llu, acked %llu, failed %llu in %.2f s (%.0f msg/s acked); "
            "blocked by backpressure %.2f s; throttles %llu (memory %llu, disk %llu, "
            "topic_full %llu, quota %llu, waited %.2f s); credit waits %llu; reconnects %llu\n",
            (unsigned long long)sent, (unsigned long long)acked,
            (unsigned long long)atomic_load(&st->failed), secs,
            secs > 0 ? (double)acked / secs : 0.0, (double)s->blocked_ns_total / 1e9,
            (unsigned long long)s->client.throttles_total,
            (unsigned long long)s->client.throttles_by_reason[SL_THROTTLE_MEMORY_BUDGET],
            (unsigned long long)s->client.throttles_by_reason[SL_THROTTLE_DISK_BUDGET],
            (unsigned long long)s->client.throttles_by_reason[SL_THROTTLE_TOPIC_FULL],
            (unsigned long long)s->client.throttles_by_reason[SL_THROTTLE_QUOTA],
            (double)s->client.throttled_ms_total / 1e3,
            (unsigned long long)s->client.credit_waits_total,
            (unsigned long long)(s->client.connects_total > 0 ? s->client.connects_total - 1 : 0));
}

int
sl_cli_produce(int argc, char **argv, FILE *out, FILE *err)
{
    produce_opts o;
    memset(&o, 0, sizeof(o));
    int code = produce_parse(argc, argv, out, err, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    produce_state st = {0};
    if (o.ack_log != NULL && (st.ack_log = fopen(o.ack_log, "w")) == NULL) {
        return sl_cli_fail(err, "produce", SL_CLI_EXIT_USAGE, "cannot write --ack-log %s",
                           o.ack_log);
    }
    o.cfg.delivery_cb = on_report;
    o.cfg.delivery_user = &st;
    sl_producer *p = NULL;
    int r = sl_producer_new(&o.cfg, &p);
    if (r != SL_OK) {
        if (st.ack_log != NULL) {
            fclose(st.ack_log);
        }
        return sl_cli_fail(err, "produce", SL_CLI_EXIT_USAGE, "bad configuration: %s",
                           sl_strerror(r));
    }
    int64_t start = sl_now_ns();
    uint64_t sent = 0;
    r = produce_loop(p, &o, stdin, &sent);
    if (r != SL_OK && r != SL_ETIMEDOUT) {
        sl_cli_fail(err, "produce", 0, "send: %s", sl_strerror(r));
    }
    int fr = sl_producer_flush(p, sl_deadline_after_ms(o.timeout_ms));
    sl_producer_stats s;
    sl_producer_stats_get(p, &s);
    double secs = (double)(sl_now_ns() - start) / 1e9;
    sl_producer_free(p); // reports what never got acked as failed
    summary(err, &s, sent, &st, secs);
    if (st.ack_log != NULL) {
        fclose(st.ack_log);
    }
    if (atomic_load(&st.acked) == sent && r == SL_OK) {
        return SL_CLI_EXIT_OK;
    }
    if (fr == SL_ETIMEDOUT && !s.client.connected) {
        sl_cli_fail(err, "produce", 0, "broker %s not reached before the deadline",
                    o.cfg.broker ? o.cfg.broker : "(default)");
        return SL_CLI_EXIT_UNREACHED;
    }
    return SL_CLI_EXIT_INCOMPLETE;
}
