// What every `sluice` command shares: the command table and dispatch, top-level --help, exit
// codes for library statuses, option value parsing with clear messages, and signal handling.
#include "cli/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>

#include "core/parse.h"

volatile sig_atomic_t sl_cli_interrupted;

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv, FILE *out, FILE *err);
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    {"topic", sl_cli_topic, "create, list, delete or describe topics"},
    {"produce", sl_cli_produce, "send lines from stdin, or a generated load, to a topic"},
    {"consume", sl_cli_consume, "print a topic's records to stdout"},
    {"stats", sl_cli_stats, "print broker or topic statistics"},
    {"pipe", sl_cli_pipe, "run a stream-processing pipeline described by a file"},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: sluice COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f,
            "\nEvery command takes --broker HOST:PORT (default: $%s, else 127.0.0.1:%u)\n"
            "and --help. Exit codes: 0 ok, 1 refused by the broker, 2 usage, 3 broker not\n"
            "reached or deadline passed, 4 messages not acknowledged (docs/cli.md).\n",
            SL_CLIENT_BROKER_ENV, SL_CLIENT_PORT_DEFAULT);
}

int
sl_cli_main(int argc, char **argv, FILE *out, FILE *err)
{
    if (argc < 2) {
        usage(err);
        return SL_CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(out);
        return SL_CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        fprintf(out, "sluice %s\n", SL_VERSION_STRING);
        return SL_CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1, out, err);
        }
    }
    fprintf(err, "sluice: unknown command '%s' (try sluice --help)\n", argv[1]);
    return SL_CLI_EXIT_USAGE;
}

static void
on_signal(int sig)
{
    (void)sig;
    sl_cli_interrupted = 1;
}

void
sl_cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int
sl_cli_exit_for(int status)
{
    switch (status) {
    case SL_OK:
        return SL_CLI_EXIT_OK;
    case SL_ECONNREFUSED:
    case SL_ECONNRESET:
    case SL_ETIMEDOUT:
    case SL_ECANCELED:
        return SL_CLI_EXIT_UNREACHED;
    default:
        return SL_CLI_EXIT_FAILED;
    }
}

int
sl_cli_fail(FILE *err, const char *cmd, int code, const char *fmt, ...)
{
    fprintf(err, "sluice %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fputc('\n', err);
    return code;
}

int
sl_cli_parse_u64(FILE *err, const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char *end = NULL;
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        sl_cli_fail(err, cmd, 0, "%s wants a non-negative integer, got '%s'", opt,
                    text ? text : "");
        return SL_EINVAL;
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0') {
        sl_cli_fail(err, cmd, 0, "%s wants a non-negative integer, got '%s'", opt, text);
        return SL_EINVAL;
    }
    *out = v;
    return SL_OK;
}

int
sl_cli_parse_size(FILE *err, const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char why[128];
    if (sl_parse_size(text, out, why, sizeof(why)) != SL_OK) {
        sl_cli_fail(err, cmd, 0, "%s: %s", opt, why);
        return SL_EINVAL;
    }
    return SL_OK;
}

int
sl_cli_parse_ms(FILE *err, const char *cmd, const char *opt, const char *text, int64_t *out)
{
    char why[128];
    if (sl_parse_duration_ms(text, out, why, sizeof(why)) != SL_OK) {
        sl_cli_fail(err, cmd, 0, "%s: %s", opt, why);
        return SL_EINVAL;
    }
    return SL_OK;
}

int
sl_cli_parse_acks(FILE *err, const char *cmd, const char *text, sl_acks *out)
{
    static const char *names[] = {"none", "memory", "log", "fsync"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (sl_acks)i;
            return SL_OK;
        }
    }
    sl_cli_fail(err, cmd, 0, "--acks wants none, memory, log or fsync, got '%s'", text);
    return SL_EINVAL;
}

int
sl_cli_getopt(int argc, char **argv, const char *shorts, const struct option *longs,
              const char *usage, FILE *out, FILE *err, sl_cli_opt_fn opt, void *user)
{
    optind = 0;
    opterr = 0;
    for (int i = 0; i < argc; i++) { // bounded by argc
        int c = getopt_long(argc, argv, shorts, longs, NULL);
        if (c == -1) {
            break;
        }
        if (c == 'h') {
            fputs(usage, out);
            return SL_CLI_HELP_SHOWN;
        }
        if (opt(user, c, err) != SL_OK) {
            return SL_CLI_EXIT_USAGE;
        }
    }
    return SL_CLI_EXIT_OK;
}
