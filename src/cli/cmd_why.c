// `sluice why TOPIC [GROUP]` and `sluice drops [TOPIC]`: the broker's /why and /drops answers
// over its admin port, printed for people (or raw with --json).
#include "cli/ops.h"

#include <getopt.h>
#include <string.h>

#include <curl/curl.h>

#include <sluice/error.h>

static const char why_usage[] =
    "usage: sluice why TOPIC [GROUP] [--admin HOST:PORT] [--json] [--timeout DURATION]\n"
    "Names the hop of each stream's credit chain (producer -> broker -> consumer) that holds\n"
    "the topic's flow, and why. --admin defaults to $SLUICE_ADMIN, else 127.0.0.1:7421.\n";

static const char drops_usage[] =
    "usage: sluice drops [TOPIC] [--admin HOST:PORT] [--json] [--timeout DURATION]\n"
    "Lists the records lossy topics dropped (drop_oldest), by topic, partition and offsets.\n";

typedef struct ops_opts {
    const char *admin;
    bool json;
    int64_t timeout_ms;
    const char *cmd;
} ops_opts;

static int
ops_opt(void *user, int c, FILE *err)
{
    ops_opts *o = user;
    if (c == 'a') {
        o->admin = optarg;
        return SL_OK;
    }
    if (c == 'j') {
        o->json = true;
        return SL_OK;
    }
    if (c == 'w') {
        return sl_cli_parse_ms(err, o->cmd, "--timeout", optarg, &o->timeout_ms);
    }
    sl_cli_fail(err, o->cmd, 0, "unknown option (try --help)");
    return SL_EINVAL;
}

static const struct option ops_longs[] = {{"admin", required_argument, NULL, 'a'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"timeout", required_argument, NULL, 'w'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};

// Appends "&key=value" (URL-escaped) to path.
static void
query_add(char *path, size_t size, const char *key, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, 0);
    size_t len = strlen(path);
    snprintf(path + len, size - len, "%s%s=%s", strchr(path, '?') ? "&" : "?", key,
             esc != NULL ? esc : "");
    curl_free(esc);
}

// A string field of a JSON object, or fallback when absent (a broker answer is not trusted).
static const char *
str_or(json_t *obj, const char *key, const char *fallback)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v != NULL ? v : fallback;
}

// With a group: its members and what each owns, then per partition the owner and the hop holding
// it.
static void
group_print(FILE *out, json_t *j)
{
    json_t *members = json_object_get(j, "members");
    fprintf(out, "group %s: %zu live members\n", str_or(j, "group", "?"), json_array_size(members));
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        fprintf(out, "  member %s (%s) owns partitions", str_or(m, "id", "?"),
                str_or(m, "peer", "?"));
        json_t *parts = json_object_get(m, "partitions");
        size_t k;
        json_t *p;
        json_array_foreach(parts, k, p)
        {
            fprintf(out, " %lld", (long long)json_integer_value(p));
        }
        fprintf(out, "%s\n", json_array_size(parts) == 0 ? " (none)" : "");
    }
    fprintf(out, "partitions:\n");
    json_array_foreach(json_object_get(j, "partitions"), i, m)
    {
        fprintf(out, "  partition %lld owner %s: %s at the %s: %s\n",
                (long long)json_integer_value(json_object_get(m, "partition")),
                str_or(m, "owner", "-"), str_or(m, "reason", "?"), str_or(m, "hop", "?"),
                str_or(m, "detail", ""));
    }
}

static void
why_print(FILE *out, json_t *j)
{
    json_t *v = json_object_get(j, "verdict");
    const char *reason = str_or(v, "reason", "unknown");
    const char *budget = json_string_value(json_object_get(v, "budget"));
    const char *detail = str_or(v, "detail", "");
    const char *topic = str_or(j, "topic", "?");
    if (strcmp(reason, "flowing") == 0 || strcmp(reason, "idle") == 0) {
        fprintf(out, "topic %s is %s: %s\n", topic, reason, detail);
    } else {
        fprintf(out, "topic %s is held at the %s: %s%s%s\n  %s\n", topic, str_or(v, "hop", "?"),
                reason, budget != NULL ? " by the " : "", budget != NULL ? budget : "", detail);
    }
    if (json_object_get(j, "partitions") != NULL) {
        group_print(out, j);
    }
    json_t *streams = json_object_get(j, "streams");
    if (json_array_size(streams) == 0) {
        fprintf(out, "no streams\n");
        return;
    }
    fprintf(out, "streams:\n");
    size_t i;
    json_t *s;
    json_array_foreach(streams, i, s)
    {
        const char *kind = str_or(s, "kind", "?");
        fprintf(out, "  %-9s", kind);
        if (strcmp(kind, "partition") != 0) {
            fprintf(out, " conn %lld stream %lld (%s)",
                    (long long)json_integer_value(json_object_get(s, "conn")),
                    (long long)json_integer_value(json_object_get(s, "stream")),
                    str_or(s, "peer", "?"));
        }
        fprintf(out, " partition %lld: %s: %s\n",
                (long long)json_integer_value(json_object_get(s, "partition")),
                str_or(s, "reason", "?"), str_or(s, "detail", ""));
    }
}

// Runs one GET for why or drops; prints it with print (or raw). Returns an exit code.
static int
ops_run(ops_opts *o, const char *path, FILE *out, FILE *err, void (*print)(FILE *, json_t *))
{
    char *body = NULL;
    long status = 0;
    char why[320];
    int rc = sl_cli_admin_get(o->admin, path, o->timeout_ms, &body, &status, why, sizeof(why));
    if (rc != SL_OK) {
        return sl_cli_fail(err, o->cmd, SL_CLI_EXIT_UNREACHED, "%s", why);
    }
    int code = status == 200 ? SL_CLI_EXIT_OK : SL_CLI_EXIT_FAILED;
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (o->json) {
        fputs(body, out);
    } else if (j == NULL) {
        code = sl_cli_fail(err, o->cmd, SL_CLI_EXIT_FAILED, "HTTP %ld: %s", status, body);
    } else if (status != 200) {
        code = sl_cli_fail(err, o->cmd, SL_CLI_EXIT_FAILED, "%s", str_or(j, "error", "refused"));
    } else {
        print(out, j);
    }
    json_decref(j);
    free(body);
    return code;
}

int
sl_cli_why(int argc, char **argv, FILE *out, FILE *err)
{
    ops_opts o = {.timeout_ms = SL_CLI_ADMIN_TIMEOUT_MS, .cmd = "why"};
    int code = sl_cli_getopt(argc, argv, "h", ops_longs, why_usage, out, err, ops_opt, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    if (optind >= argc || argc - optind > 2) {
        fputs(why_usage, err);
        return SL_CLI_EXIT_USAGE;
    }
    char path[1024] = "/why";
    query_add(path, sizeof(path), "topic", argv[optind]);
    if (argc - optind == 2) {
        query_add(path, sizeof(path), "group", argv[optind + 1]);
    }
    return ops_run(&o, path, out, err, why_print);
}

static void
drops_print(FILE *out, json_t *j)
{
    size_t i;
    json_t *e;
    json_t *totals = json_object_get(j, "totals");
    json_array_foreach(totals, i, e)
    {
        fprintf(out, "topic %s: %lld records dropped (%s)\n", str_or(e, "topic", "?"),
                (long long)json_integer_value(json_object_get(e, "records")),
                str_or(e, "reason", "?"));
    }
    json_t *entries = json_object_get(j, "entries");
    if (json_array_size(entries) == 0) {
        fprintf(out, "no records dropped\n");
        return;
    }
    json_array_foreach(entries, i, e)
    {
        long long first = (long long)json_integer_value(json_object_get(e, "first_offset"));
        long long end = (long long)json_integer_value(json_object_get(e, "end_offset"));
        fprintf(out, "  %s/%lld %s offsets %lld..%lld (%lld records), last %.1f s ago\n",
                str_or(e, "topic", "?"),
                (long long)json_integer_value(json_object_get(e, "partition")),
                str_or(e, "reason", "?"), first, end - 1, end - first,
                json_number_value(json_object_get(e, "last_seconds_ago")));
    }
    long long lost = (long long)json_integer_value(json_object_get(j, "entries_overwritten"));
    if (lost > 0) {
        fprintf(out, "  (%lld older entries overwritten; totals above still count them)\n", lost);
    }
}

int
sl_cli_drops(int argc, char **argv, FILE *out, FILE *err)
{
    ops_opts o = {.timeout_ms = SL_CLI_ADMIN_TIMEOUT_MS, .cmd = "drops"};
    int code = sl_cli_getopt(argc, argv, "h", ops_longs, drops_usage, out, err, ops_opt, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    if (argc - optind > 1) {
        fputs(drops_usage, err);
        return SL_CLI_EXIT_USAGE;
    }
    char path[1024] = "/drops";
    if (argc - optind == 1) {
        query_add(path, sizeof(path), "topic", argv[optind]);
    }
    return ops_run(&o, path, out, err, drops_print);
}
