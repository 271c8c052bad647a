// The operator commands of `sluice` (why, drops, stats, top, demo) and what they share: the admin
// HTTP client (admin_http.c, libcurl + jansson) and the readable summary of a /stats document
// (summary.c). The commands themselves are in cmd_why.c, cmd_stats.c, cmd_top.c, cmd_demo.c.
#ifndef SLUICE_CLI_OPS_H
#define SLUICE_CLI_OPS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/cli.h"

// Where the broker's admin endpoint is when --admin is not given (docs/cli.md).
#define SL_CLI_ADMIN_ENV     "SLUICE_ADMIN"
#define SL_CLI_ADMIN_DEFAULT "127.0.0.1:7421"
// Largest admin answer the CLI reads (the broker caps its own at 8 MiB).
#define SL_CLI_ADMIN_BODY_MAX (16u * 1024u * 1024u)
// Deadline of one admin request.
#define SL_CLI_ADMIN_TIMEOUT_MS 5000

int sl_cli_why(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_drops(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_top(int argc, char **argv, FILE *out, FILE *err);
int sl_cli_demo(int argc, char **argv, FILE *out, FILE *err);

// The admin address: opt, else $SLUICE_ADMIN, else SL_CLI_ADMIN_DEFAULT (borrowed strings).
const char *sl_cli_admin_addr(const char *opt);

// GETs path (with its query) from the admin endpoint. On SL_OK the caller frees *body_out (free())
// and *status_out holds the HTTP status; otherwise why says what failed (SL_ECONNREFUSED when
// the endpoint was not reached, SL_ETIMEDOUT).
int sl_cli_admin_get(const char *admin, const char *path, int64_t timeout_ms, char **body_out,
                     long *status_out, char *why, size_t why_size);

// As sl_cli_admin_get, parsed as JSON (the caller json_decref()s it); SL_EPROTO when not JSON.
int sl_cli_admin_json(const char *admin, const char *path, int64_t timeout_ms, json_t **json_out,
                      long *status_out, char *why, size_t why_size);

// The series array of a family in a /stats document, or NULL.
json_t *sl_cli_stats_family(json_t *stats, const char *family);

// The field ("value" when NULL; "p99", "count"... for summaries) of the first series of family
// whose labels match pairs (key, value, ..., NULL; NULL pairs match any). NAN when there is no
// such series, INFINITY for a non-finite value.
double sl_cli_stat(json_t *stats, const char *family, const char *const *pairs, const char *field);

// Prints the readable summary of a /stats document: broker line, then per topic (all, or only
// topic) rates, budgets and their fill, predictions, credit, throttles, drops, lag, latency, and
// the verdict of /why (fetched from admin) as the line saying what pushes back. ansi: colours
// for `sluice top`.
void sl_cli_summary_print(FILE *out, json_t *stats, const char *admin, const char *topic,
                          bool ansi);

#endif
