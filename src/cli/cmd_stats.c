// `sluice stats [--topic T]`: a readable summary of the broker from its admin endpoint's /stats
// (rates, budgets and their fill, predictions, credit, throttles, drops, lag, latency, and what
// pushes back); `--raw` prints the protocol's STATS as "name value" lines instead.
#include "cli/cli.h"
#include "cli/ops.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

static const char stats_usage[] =
    "usage: sluice stats [--topic NAME] [--admin HOST:PORT] [--json] [--timeout DURATION]\n"
    "       sluice stats --raw [--topic NAME] [--broker HOST:PORT] [--timeout DURATION]\n"
    "Prints a readable summary of the broker (or one topic) from its admin endpoint\n"
    "(--admin, default $SLUICE_ADMIN, else 127.0.0.1:7421); --json prints /stats as is.\n"
    "--raw prints the protocol's statistics as 'name value' lines (over --broker).\n";

// The summary over the admin endpoint. Returns an exit code.
static int
stats_summary(const char *admin, const char *topic, bool json, int64_t timeout_ms, FILE *out,
              FILE *err)
{
    char why[320];
    long status = 0;
    if (json) {
        char *body = NULL;
        int rc = sl_cli_admin_get(admin, "/stats", timeout_ms, &body, &status, why, sizeof(why));
        if (rc != SL_OK) {
            return sl_cli_fail(err, "stats", SL_CLI_EXIT_UNREACHED, "%s", why);
        }
        fputs(body, out);
        free(body);
        return status == 200 ? SL_CLI_EXIT_OK : SL_CLI_EXIT_FAILED;
    }
    json_t *stats = NULL;
    int rc = sl_cli_admin_json(admin, "/stats", timeout_ms, &stats, &status, why, sizeof(why));
    if (rc != SL_OK) {
        return sl_cli_fail(err, "stats",
                           rc == SL_EPROTO ? SL_CLI_EXIT_FAILED : SL_CLI_EXIT_UNREACHED, "%s", why);
    }
    sl_cli_summary_print(out, stats, admin, topic, false);
    json_decref(stats);
    return SL_CLI_EXIT_OK;
}

static void
print_stat(const char *name, uint64_t value, void *user)
{
    fprintf(user, "%s %llu\n", name, (unsigned long long)value);
}

int
sl_cli_stats(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option longs[] = {
        {"broker", required_argument, NULL, 'b'}, {"admin", required_argument, NULL, 'a'},
        {"raw", no_argument, NULL, 'r'},          {"json", no_argument, NULL, 'j'},
        {"topic", required_argument, NULL, 't'},  {"timeout", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *broker = NULL;
    const char *topic = NULL;
    const char *admin = NULL;
    bool raw = false;
    bool json = false;
    int64_t timeout_ms = SL_CLI_TIMEOUT_MS_DEFAULT;
    optind = 0;
    opterr = 0;
    for (int i = 0; i < argc; i++) { // bounded by argc
        int c = getopt_long(argc, argv, "b:t:h", longs, NULL);
        if (c == -1) {
            break;
        }
        if (c == 'b') {
            broker = optarg;
        } else if (c == 't') {
            topic = optarg;
        } else if (c == 'a') {
            admin = optarg;
        } else if (c == 'r') {
            raw = true;
        } else if (c == 'j') {
            json = true;
        } else if (c == 'w') {
            if (sl_cli_parse_ms(err, "stats", "--timeout", optarg, &timeout_ms) != SL_OK) {
                return SL_CLI_EXIT_USAGE;
            }
        } else if (c == 'h') {
            fputs(stats_usage, out);
            return SL_CLI_EXIT_OK;
        } else {
            fputs(stats_usage, err);
            return SL_CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        return sl_cli_fail(err, "stats", SL_CLI_EXIT_USAGE, "unexpected argument '%s'",
                           argv[optind]);
    }
    if (!raw) {
        return stats_summary(admin, topic, json, timeout_ms, out, err);
    }
    sl_admin *a = NULL;
    int r = sl_admin_open(broker, sl_deadline_after_ms(timeout_ms), &a);
    if (r != SL_OK) {
        return sl_cli_fail(err, "stats", sl_cli_exit_for(r), "cannot reach the broker: %s",
                           sl_strerror(r));
    }
    r = sl_admin_stats(a, topic, sl_deadline_after_ms(timeout_ms), print_stat, out);
    int code = SL_CLI_EXIT_OK;
    if (r != SL_OK) {
        const char *msg = sl_admin_last_message(a);
        code = sl_cli_fail(err, "stats", sl_cli_exit_for(r), "%s%s%s", sl_strerror(r),
                           msg[0] ? ": " : "", msg);
    }
    sl_admin_close(a);
    return code;
}
