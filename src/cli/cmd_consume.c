// `sluice consume`: prints records to stdout, one value per line or per a kcat-style --format.
// --rate N models a consumer that can process N messages per second (a slow consumer exerts
// backpressure through its prefetch window, it is never evicted); --count stops after N.
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>

#include "core/util.h"

// Records taken per poll.
#define CONSUME_POLL_MAX 256u
// A poll wakes this often to notice Ctrl-C, --idle and --count.
#define CONSUME_POLL_SLICE_MS 200
// After this long without a connection, say so once (the consumer keeps trying).
#define CONSUME_UNREACHED_WARN_MS 3000

static const char consume_usage[] =
    "usage: sluice consume --topic NAME [options]\n"
    "Prints each record's value on its own line (or per --format) to stdout.\n"
    "  --broker HOST:PORT     broker (default $SLUICE_BROKER, else 127.0.0.1:7420)\n"
    "  --topic NAME           topic (required)\n"
    "  --partition N          partition (default 0)\n"
    "  --from WHERE           earliest (default), latest, an offset, or group (with --group)\n"
    "  --group NAME           commit progress to this consumer group\n"
    "  --count N              exit after N records\n"
    "  --rate N               process at most N records per second (a slow consumer)\n"
    "  --prefetch N           records requested ahead (default 1000)\n"
    "  --idle DURATION        exit when nothing arrived for this long (default: never)\n"
    "  --format FMT           kcat -f template: %t topic, %p partition, %o offset, %k key,\n"
    "                         %s value, %T timestamp (ms), %K key size, %S value size,\n"
    "                         \\n newline, \\t tab (default '%s\\n')\n";

typedef struct consume_opts {
    sl_consumer_config cfg;
    const char *format;
    uint64_t count;
    uint64_t rate;
    int64_t idle_ms;
} consume_opts;

static int
parse_from(FILE *err, const char *text, consume_opts *o)
{
    if (strcmp(text, "earliest") == 0) {
        o->cfg.start = SL_START_EARLIEST;
    } else if (strcmp(text, "latest") == 0) {
        o->cfg.start = SL_START_LATEST;
    } else if (strcmp(text, "group") == 0) {
        o->cfg.start = SL_START_GROUP;
    } else if (sl_cli_parse_u64(err, "consume", "--from", text, &o->cfg.start_offset) == SL_OK) {
        o->cfg.start = SL_START_OFFSET;
    } else {
        return SL_EINVAL;
    }
    return SL_OK;
}

static int
consume_opt(void *user, int c, FILE *err)
{
    consume_opts *o = user;
    uint64_t v = 0;
    int r = SL_OK;
    switch (c) {
    case 'b':
        o->cfg.broker = optarg;
        break;
    case 't':
        o->cfg.topic = optarg;
        break;
    case 'g':
        o->cfg.group = optarg;
        break;
    case 'F':
        o->format = optarg;
        break;
    case 'f':
        r = parse_from(err, optarg, o);
        break;
    case 'n':
        r = sl_cli_parse_u64(err, "consume", "--count", optarg, &o->count);
        break;
    case 'r':
        r = sl_cli_parse_u64(err, "consume", "--rate", optarg, &o->rate);
        break;
    case 'i':
        r = sl_cli_parse_ms(err, "consume", "--idle", optarg, &o->idle_ms);
        break;
    case 'p':
        r = sl_cli_parse_u64(err, "consume", "--partition", optarg, &v);
        o->cfg.partition = (uint32_t)v;
        break;
    case 'P':
        r = sl_cli_parse_u64(err, "consume", "--prefetch", optarg, &v);
        if (r == SL_OK && (v == 0 || v > UINT32_MAX)) {
            sl_cli_fail(err, "consume", 0, "--prefetch must be 1..%u", UINT32_MAX);
            r = SL_EINVAL;
        }
        o->cfg.prefetch_records = (uint32_t)v;
        break;
    default:
        sl_cli_fail(err, "consume", 0, "unknown or incomplete option (see --help)");
        r = SL_EINVAL;
        break;
    }
    return r;
}

// Returns SL_CLI_EXIT_OK to go on, SL_CLI_HELP_SHOWN after --help, or an exit code.
static int
consume_parse(int argc, char **argv, FILE *out, FILE *err, consume_opts *o)
{
    static const struct option longs[] = {{"broker", required_argument, NULL, 'b'},
                                          {"topic", required_argument, NULL, 't'},
                                          {"group", required_argument, NULL, 'g'},
                                          {"format", required_argument, NULL, 'F'},
                                          {"from", required_argument, NULL, 'f'},
                                          {"count", required_argument, NULL, 'n'},
                                          {"rate", required_argument, NULL, 'r'},
                                          {"idle", required_argument, NULL, 'i'},
                                          {"partition", required_argument, NULL, 'p'},
                                          {"prefetch", required_argument, NULL, 'P'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    sl_consumer_config_init(&o->cfg);
    o->cfg.client_id = "sluice-consume";
    o->format = "%s\\n";
    int code = sl_cli_getopt(argc, argv, "b:t:h", longs, consume_usage, out, err, consume_opt, o);
    if (code != SL_CLI_EXIT_OK) {
        return code;
    }
    if (optind < argc) {
        return sl_cli_fail(err, "consume", SL_CLI_EXIT_USAGE, "unexpected argument '%s'",
                           argv[optind]);
    }
    if (o->cfg.topic == NULL) {
        return sl_cli_fail(err, "consume", SL_CLI_EXIT_USAGE, "--topic is required");
    }
    if (o->cfg.start == SL_START_GROUP && o->cfg.group == NULL) {
        return sl_cli_fail(err, "consume", SL_CLI_EXIT_USAGE, "--from group needs --group");
    }
    if (o->rate > 0 && o->cfg.prefetch_records > o->rate) {
        // A slow consumer holds about one second of records, so its demand tracks its capacity.
        o->cfg.prefetch_records = (uint32_t)SL_MAX(o->rate, 1);
    }
    return SL_CLI_EXIT_OK;
}

static void
sleep_ns(int64_t ns)
{
    if (ns <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    nanosleep(&ts, NULL);
}

// Says once on stderr that the broker is not reachable yet (the consumer keeps retrying).
static void
warn_unreached(sl_consumer *c, FILE *err, bool *warned, int64_t since_ns)
{
    if (*warned || sl_now_ns() - since_ns < (int64_t)CONSUME_UNREACHED_WARN_MS * 1000000) {
        return;
    }
    sl_consumer_stats st;
    sl_consumer_stats_get(c, &st);
    if (st.client.connects_total == 0) {
        fprintf(err, "sluice consume: broker not reachable yet; still trying (Ctrl-C to stop)\n");
        *warned = true;
    }
}

static int
consume_loop(sl_consumer *c, const consume_opts *o, FILE *out, FILE *err_out, uint64_t *seen)
{
    bool warned = false;
    sl_consumed recs[CONSUME_POLL_MAX];
    int64_t last_rx = sl_now_ns();
    int64_t next_slot = sl_now_ns(); // --rate: when the next record may be processed
    int64_t per_record_ns = o->rate > 0 ? (int64_t)(1000000000 / o->rate) : 0;
    for (;;) { // until Ctrl-C, --count or --idle
        if (sl_cli_interrupted || (o->count != 0 && *seen >= o->count)) {
            return SL_OK;
        }
        // With --rate, take about a millisecond's worth at a time: small enough that the prefetch
        // window, not this loop, holds the backlog; large enough not to pay a poll per record.
        size_t want = o->rate > 0 ? (size_t)SL_MAX(o->rate / 1000, 1) : CONSUME_POLL_MAX;
        want = SL_MIN(want, (size_t)CONSUME_POLL_MAX);
        if (o->count != 0) {
            want = SL_MIN(want, o->count - *seen);
        }
        size_t n = 0;
        int err = sl_consumer_poll(c, recs, want, sl_deadline_after_ms(CONSUME_POLL_SLICE_MS), &n);
        if (err == SL_ETIMEDOUT) {
            if (o->idle_ms > 0 && sl_now_ns() - last_rx >= o->idle_ms * 1000000) {
                return SL_ETIMEDOUT;
            }
            warn_unreached(c, err_out, &warned, last_rx);
            continue;
        }
        if (err != SL_OK) {
            return err;
        }
        last_rx = sl_now_ns();
        for (size_t i = 0; i < n; i++) {
            if (per_record_ns > 0) {
                // Each record costs per_record_ns of modelled work. Sleep only when more than 1 ms
                // ahead (sleeps overshoot), and after a stall of over 100 ms do not catch up
                // faster than that: the average rate is exact, bursts are bounded.
                int64_t now = sl_now_ns();
                if (next_slot - now > 1000000) {
                    sleep_ns(next_slot - now);
                }
                if (now - next_slot > 100000000) {
                    next_slot = now;
                }
                next_slot += per_record_ns;
            }
            sl_cli_format(out, o->format, o->cfg.topic, &recs[i]);
        }
        *seen += n;
        if (o->rate > 0) {
            fflush(out);
        }
    }
}

int
sl_cli_consume(int argc, char **argv, FILE *out, FILE *err)
{
    consume_opts o;
    memset(&o, 0, sizeof(o));
    int code = consume_parse(argc, argv, out, err, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    sl_consumer *c = NULL;
    int r = sl_consumer_new(&o.cfg, &c);
    if (r != SL_OK) {
        return sl_cli_fail(err, "consume", SL_CLI_EXIT_USAGE, "bad configuration: %s",
                           sl_strerror(r));
    }
    uint64_t seen = 0;
    r = consume_loop(c, &o, out, err, &seen);
    fflush(out);
    sl_consumer_stats s;
    sl_consumer_stats_get(c, &s);
    sl_consumer_free(c);                // commits what was printed (auto ack)
    if (s.client.connects_total == 0) { // interrupted or idle without ever connecting
        return sl_cli_fail(err, "consume", SL_CLI_EXIT_UNREACHED, "broker not reached");
    }
    if (r != SL_OK && r != SL_ETIMEDOUT) {
        return sl_cli_fail(err, "consume", sl_cli_exit_for(r), "%s", sl_strerror(r));
    }
    return SL_CLI_EXIT_OK;
}
