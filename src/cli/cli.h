// The `sluice` command: one file per command (cmd_topic.c, cmd_produce.c, cmd_consume.c,
// cmd_stats.c), shared option handling and exit codes here (common.c), record formatting in
// format.c. main.c only calls sl_cli_main. Exit codes are documented in docs/cli.md.
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <sluice/client.h>

// Exit codes (docs/cli.md): keep them stable, scripts depend on them.
#define SL_CLI_EXIT_OK         0 // done
#define SL_CLI_EXIT_FAILED     1 // the broker refused (topic exists, not found, ...)
#define SL_CLI_EXIT_USAGE      2 // bad command line
#define SL_CLI_EXIT_UNREACHED  3 // could not connect or the deadline passed
#define SL_CLI_EXIT_INCOMPLETE 4 // produce: some messages were not acknowledged

// Returned by a command's option parser after printing --help: not an exit code, the command
// then exits with SL_CLI_EXIT_OK.
#define SL_CLI_HELP_SHOWN 100

// Default deadline for admin calls and for produce's final flush.
#define SL_CLI_TIMEOUT_MS_DEFAULT 10000

// Runs the command line (argv[0] is the program name). Returns an exit code. Writes results to
// out and messages to err, so tests can run commands in-process.
int sl_cli_main(int argc, char **argv, FILE *out, FILE *err);

// Commands: argv[0] is the command name ("produce").
int sl_cli_topic(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_produce(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_consume(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_stats(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_pipe(int argc, char **argv, FILE *out, FILE *err);

// Set by SIGINT / SIGTERM once sl_cli_catch_signals ran; long commands stop cleanly on it.
extern volatile sig_atomic_t sl_cli_interrupted;
void sl_cli_catch_signals(void);

// Exit code for a library status from connecting or an admin call.
int sl_cli_exit_for(int status);

// Prints "sluice CMD: what: why" to err and returns code.
int sl_cli_fail(FILE *err, const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Option values shared by commands; each returns SL_OK or prints the error and returns
// SL_EINVAL.
int sl_cli_parse_u64(FILE *err, const char *cmd, const char *opt, const char *text, uint64_t *out);
int sl_cli_parse_size(FILE *err, const char *cmd, const char *opt, const char *text, uint64_t *out);
int sl_cli_parse_ms(FILE *err, const char *cmd, const char *opt, const char *text, int64_t *out);
int sl_cli_parse_acks(FILE *err, const char *cmd, const char *text, sl_acks *out);

// Runs getopt_long over argv (argv[0] is the command). --help (option 'h') prints usage to out
// and returns SL_CLI_HELP_SHOWN; every other option goes to opt(user, option, err), and a non-OK
// result from it is a usage error (SL_CLI_EXIT_USAGE; opt printed why). SL_CLI_EXIT_OK when all
// options were taken; positional arguments are left from optind on.
struct option;
typedef int (*sl_cli_opt_fn)(void *user, int option, FILE *err);
int sl_cli_getopt(int argc, char **argv, const char *shorts, const struct option *longs,
                  const char *usage, FILE *out, FILE *err, sl_cli_opt_fn opt, void *user);

// Renders one record with a kcat-style template (%t %p %o %k %s %T %K %S %%, \n \t \\) to out.
void sl_cli_format(FILE *out, const char *fmt, const char *topic, const sl_consumed *rec);

// Writes the generated value of message seq: the decimal sequence, a space, then filler up to
// size bytes (never shorter than the number and the space). Returns the length; buf holds cap.
size_t sl_cli_gen_value(uint64_t seq, size_t size, char *buf, size_t cap);

#endif
