// `sluice stats [--topic T]`: the broker's statistics, one "name value" line each.
#include "cli/cli.h"

#include <getopt.h>
#include <string.h>

#include <sluice/error.h>

static const char stats_usage[] =
    "usage: sluice stats [--topic NAME] [--broker HOST:PORT] [--timeout DURATION]\n"
    "Prints broker-wide statistics, or one topic's, as 'name value' lines.\n";

static void
print_stat(const char *name, uint64_t value, void *user)
{
    fprintf(user, "%s %llu\n", name, (unsigned long long)value);
}

int
sl_cli_stats(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option longs[] = {{"broker", required_argument, NULL, 'b'},
                                          {"topic", required_argument, NULL, 't'},
                                          {"timeout", required_argument, NULL, 'w'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *broker = NULL;
    const char *topic = NULL;
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
