// `sluice topic create|list|delete|describe`: admin calls with a deadline (--timeout).
#include "cli/cli.h"

#include <getopt.h>
#include <string.h>

#include <sluice/error.h>

static const char topic_usage[] =
    "usage: sluice topic create NAME [--partitions N] [--max-backlog SIZE] [--max-lag DURATION]\n"
    "                          [--full-policy block|reject|drop-oldest]\n"
    "                          [--retention-bytes SIZE] [--retention DURATION]\n"
    "       sluice topic list\n"
    "       sluice topic delete NAME\n"
    "       sluice topic describe NAME\n"
    "common: --broker HOST:PORT  --timeout DURATION (default 10s)  --help\n";

typedef struct topic_opts {
    const char *broker;
    int64_t timeout_ms;
    sl_proto_topic_config config;
} topic_opts;

static int
parse_policy(FILE *err, const char *text, uint8_t *out)
{
    static const char *names[] = {"block", "reject", "drop-oldest"};
    for (uint8_t i = 0; i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return SL_OK;
        }
    }
    sl_cli_fail(err, "topic", 0, "--full-policy wants block, reject or drop-oldest, got '%s'",
                text);
    return SL_EINVAL;
}

static int
topic_opt(void *user, int c, FILE *err)
{
    topic_opts *o = user;
    uint64_t v = 0;
    int64_t ms = 0;
    int r = SL_OK;
    switch (c) {
    case 'b':
        o->broker = optarg;
        break;
    case 'w':
        r = sl_cli_parse_ms(err, "topic", "--timeout", optarg, &o->timeout_ms);
        break;
    case 'p':
        r = sl_cli_parse_u64(err, "topic", "--partitions", optarg, &v);
        if (r == SL_OK && (v == 0 || v > SL_PROTO_PARTITIONS_MAX)) {
            sl_cli_fail(err, "topic", 0, "--partitions must be 1..%u", SL_PROTO_PARTITIONS_MAX);
            r = SL_EINVAL;
        }
        o->config.partition_count = (uint32_t)v;
        break;
    case 'B':
        r = sl_cli_parse_size(err, "topic", "--max-backlog", optarg, &o->config.max_backlog_bytes);
        break;
    case 'L':
        r = sl_cli_parse_ms(err, "topic", "--max-lag", optarg, &ms);
        o->config.max_lag_ms = (uint32_t)(ms > UINT32_MAX ? UINT32_MAX : ms);
        break;
    case 'P':
        r = parse_policy(err, optarg, &o->config.full_policy);
        break;
    case 'R':
        r = sl_cli_parse_size(err, "topic", "--retention-bytes", optarg,
                              &o->config.retention_bytes);
        break;
    case 'r':
        r = sl_cli_parse_ms(err, "topic", "--retention", optarg, &ms);
        o->config.retention_ms = (uint64_t)ms;
        break;
    default:
        sl_cli_fail(err, "topic", 0, "unknown or incomplete option (see --help)");
        r = SL_EINVAL;
        break;
    }
    return r;
}

static int
topic_parse(int argc, char **argv, FILE *out, FILE *err, topic_opts *o)
{
    static const struct option longs[] = {{"broker", required_argument, NULL, 'b'},
                                          {"timeout", required_argument, NULL, 'w'},
                                          {"partitions", required_argument, NULL, 'p'},
                                          {"max-backlog", required_argument, NULL, 'B'},
                                          {"max-lag", required_argument, NULL, 'L'},
                                          {"full-policy", required_argument, NULL, 'P'},
                                          {"retention-bytes", required_argument, NULL, 'R'},
                                          {"retention", required_argument, NULL, 'r'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    o->timeout_ms = SL_CLI_TIMEOUT_MS_DEFAULT;
    o->config.partition_count = 1;
    return sl_cli_getopt(argc, argv, "b:h", longs, topic_usage, out, err, topic_opt, o);
}

static void
print_topic(const char *name, uint32_t partitions, void *user)
{
    fprintf(user, "%s\t%u\n", name, partitions);
}

static void
print_partition(const sl_proto_topic_config *cfg, uint32_t partition,
                const sl_proto_partition_info *info, void *user)
{
    FILE *out = user;
    static const char *policies[] = {"block", "reject", "drop-oldest"};
    if (info == NULL) {
        fprintf(out,
                "partitions: %u\nmax_backlog_bytes: %llu\nmax_lag_ms: %u\nfull_policy: %s\n"
                "retention_bytes: %llu\nretention_ms: %llu\n"
                "partition\tlog_start\tlog_end\tdurable\tbacklog_bytes\n",
                cfg->partition_count, (unsigned long long)cfg->max_backlog_bytes, cfg->max_lag_ms,
                cfg->full_policy < 3 ? policies[cfg->full_policy] : "?",
                (unsigned long long)cfg->retention_bytes, (unsigned long long)cfg->retention_ms);
        return;
    }
    fprintf(out, "%u\t%llu\t%llu\t%llu\t%llu\n", partition,
            (unsigned long long)info->log_start_offset, (unsigned long long)info->log_end_offset,
            (unsigned long long)info->durable_offset, (unsigned long long)info->backlog_bytes);
}

static int
topic_run(sl_admin *a, const char *verb, const char *name, const topic_opts *o, FILE *out)
{
    int64_t deadline = sl_deadline_after_ms(o->timeout_ms);
    if (strcmp(verb, "create") == 0) {
        return sl_admin_create_topic(a, name, &o->config, deadline);
    }
    if (strcmp(verb, "delete") == 0) {
        return sl_admin_delete_topic(a, name, deadline);
    }
    if (strcmp(verb, "describe") == 0) {
        return sl_admin_describe_topic(a, name, deadline, print_partition, out);
    }
    return sl_admin_list_topics(a, deadline, print_topic, out);
}

int
sl_cli_topic(int argc, char **argv, FILE *out, FILE *err)
{
    topic_opts o = {0};
    int code = topic_parse(argc, argv, out, err, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    const char *verb = optind < argc ? argv[optind] : NULL;
    const char *name = optind + 1 < argc ? argv[optind + 1] : NULL;
    bool known = verb != NULL && (strcmp(verb, "create") == 0 || strcmp(verb, "delete") == 0 ||
                                  strcmp(verb, "describe") == 0 || strcmp(verb, "list") == 0);
    if (!known) {
        fputs(topic_usage, err);
        return SL_CLI_EXIT_USAGE;
    }
    bool needs_name = strcmp(verb, "list") != 0;
    if (needs_name && (name == NULL || !sl_proto_topic_name_valid(name, strlen(name)))) {
        return sl_cli_fail(err, "topic", SL_CLI_EXIT_USAGE,
                           "%s needs a topic NAME of 1..249 characters [A-Za-z0-9._-]", verb);
    }
    sl_admin *a = NULL;
    int r = sl_admin_open(o.broker, sl_deadline_after_ms(o.timeout_ms), &a);
    if (r != SL_OK) {
        return sl_cli_fail(err, "topic", sl_cli_exit_for(r), "cannot reach the broker: %s",
                           sl_strerror(r));
    }
    r = topic_run(a, verb, name, &o, out);
    if (r != SL_OK) {
        const char *msg = sl_admin_last_message(a);
        code = sl_cli_fail(err, "topic", sl_cli_exit_for(r), "%s %s: %s%s%s", verb,
                           name ? name : "", sl_strerror(r), msg[0] ? ": " : "", msg);
    } else if (strcmp(verb, "create") == 0 || strcmp(verb, "delete") == 0) {
        fprintf(out, "%s %sd\n", name, verb);
    }
    sl_admin_close(a);
    return r == SL_OK ? SL_CLI_EXIT_OK : code;
}
