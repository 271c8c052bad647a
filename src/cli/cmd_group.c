// `sluice group list|describe`: the broker's consumer groups, and for one group its members, who
// owns each partition, the committed offset, the lag in records and in seconds (from the record
// timestamp at the committed offset), unacked records and why the owner's stream is stalled.
#include "cli/ops.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <curl/curl.h>

#include <sluice/error.h>

static const char group_usage[] =
    "usage: sluice group list\n"
    "       sluice group describe GROUP [--topic TOPIC] [--admin HOST:PORT]\n"
    "common: --broker HOST:PORT  --timeout DURATION (default 10s)  --help\n"
    "describe without --topic describes the group on every topic it consumes; with --admin\n"
    "(or $SLUICE_ADMIN) it adds the predictions: consumers recommended, lag, time to drain.\n";

typedef struct group_opts {
    const char *broker;
    const char *topic;
    const char *admin; // the broker's admin endpoint, for the predictions; NULL: not asked
    int64_t timeout_ms;
    FILE *out;
} group_opts;

static int
group_opt(void *user, int c, FILE *err)
{
    group_opts *o = user;
    switch (c) {
    case 'b':
        o->broker = optarg;
        return SL_OK;
    case 't':
        o->topic = optarg;
        return SL_OK;
    case 'a':
        o->admin = optarg;
        return SL_OK;
    case 'w':
        return sl_cli_parse_ms(err, "group", "--timeout", optarg, &o->timeout_ms);
    default:
        sl_cli_fail(err, "group", 0, "unknown or incomplete option (see --help)");
        return SL_EINVAL;
    }
}

static void
print_group(const char *group, const char *topic, uint32_t generation, uint32_t members,
            uint32_t partitions, void *user)
{
    fprintf(user, "%s\t%s\t%u\t%u\t%u\n", group, topic, generation, members, partitions);
}

static int64_t
wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

// Seconds for people: "never" for +Inf (JSON null).
static void
print_seconds(FILE *out, const char *label, json_t *v)
{
    if (json_is_number(v)) {
        fprintf(out, " %s %.1f s", label, json_number_value(v));
    } else {
        fprintf(out, " %s never", label);
    }
}

// The group's predictions from the admin endpoint's /why answer (the broker computes them).
static void
print_predict(const group_opts *o, const sl_proto_group_info *g)
{
    FILE *out = o->out;
    if (o->admin == NULL) {
        fprintf(out, "predictions: pass --admin HOST:PORT (or set $%s)\n", SL_CLI_ADMIN_ENV);
        return;
    }
    char path[1024];
    char *gesc = curl_easy_escape(NULL, g->group.data, (int)g->group.size);
    char *tesc = curl_easy_escape(NULL, g->topic.data, (int)g->topic.size);
    snprintf(path, sizeof(path), "/why?topic=%s&group=%s", tesc != NULL ? tesc : "",
             gesc != NULL ? gesc : "");
    curl_free(gesc);
    curl_free(tesc);
    json_t *j = NULL;
    long status = 0;
    char why[320];
    int rc = sl_cli_admin_json(o->admin, path, o->timeout_ms, &j, &status, why, sizeof(why));
    json_t *p = rc == SL_OK && status == 200 ? json_object_get(j, "predict") : NULL;
    if (p == NULL) {
        fprintf(out, "predictions: not available from %s (%s)\n", o->admin,
                rc != SL_OK ? why : "no answer for this group");
        json_decref(j);
        return;
    }
    fprintf(out,
            "predictions: consumers_recommended %lld (owners now %lld) in %.1f rec/s, consumed "
            "%.1f rec/s (%.1f per member), lag %lld records",
            (long long)json_integer_value(json_object_get(p, "consumers_recommended")),
            (long long)json_array_size(json_object_get(j, "members")),
            json_number_value(json_object_get(p, "in_records_per_s")),
            json_number_value(json_object_get(p, "consumed_records_per_s")),
            json_number_value(json_object_get(p, "per_member_records_per_s")),
            (long long)json_integer_value(json_object_get(p, "lag_records")));
    print_seconds(out, "=", json_object_get(p, "lag_seconds"));
    print_seconds(out, ", drain in", json_object_get(p, "drain_seconds"));
    fputc('\n', out);
    json_decref(j);
}

static void
print_info(const sl_proto_group_info *g, void *user)
{
    const group_opts *o = user;
    FILE *out = o->out;
    fprintf(out,
            "group: %.*s\ntopic: %.*s\ngeneration: %u\nrebalances_total: %" PRIu64
            "\nredeliveries_total: %" PRIu64 "\ndlq_records_total: %" PRIu64 "\nmembers: %u\n",
            (int)g->group.size, g->group.data, (int)g->topic.size, g->topic.data, g->generation,
            g->rebalances_total, g->redeliveries_total, g->dlq_records_total, g->member_count);
    sl_proto_cursor cur;
    sl_proto_group_members_init(&cur, g);
    sl_proto_group_member_info m;
    for (uint32_t k = 0; sl_proto_group_members_next(&cur, &m) == SL_OK; k++) {
        fprintf(out, "  [%u] %.*s\t%.*s\tsession %ums\tmax_ack_pending %u\n", k,
                (int)m.member_id.size, m.member_id.data, (int)m.peer.size, m.peer.data,
                m.session_timeout_ms, m.max_ack_pending);
    }
    fprintf(out, "partition\towner\tcommitted\tend\tlag\tlag_s\tunacked\tstalled\n");
    int64_t now = wall_us();
    for (uint16_t i = 0; i < g->partition_count; i++) {
        sl_proto_group_partition_info p;
        sl_proto_group_info_partition(g, i, &p);
        uint64_t lag =
            p.log_end_offset > p.committed_offset ? p.log_end_offset - p.committed_offset : 0;
        double lag_s = lag > 0 && p.committed_timestamp_us > 0 && now > p.committed_timestamp_us
                           ? (double)(now - p.committed_timestamp_us) / 1e6
                           : 0.0;
        char owner[16] = "-";
        if (p.owner != SL_PROTO_OWNER_NONE) {
            snprintf(owner, sizeof(owner), "[%u]", p.owner);
        }
        fprintf(out, "%u\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%.1f\t%" PRIu64 "\t%s\n",
                p.partition, owner, p.committed_offset, p.log_end_offset, lag, lag_s,
                p.delivered_offset > p.committed_offset ? p.delivered_offset - p.committed_offset
                                                        : 0,
                p.owner == SL_PROTO_OWNER_NONE ? "-" : sl_stall_reason_name(p.stall_reason));
    }
    print_predict(o, g);
}

typedef struct topics_of {
    const char *group;
    char topics[16][SL_PROTO_TOPIC_NAME_MAX + 1];
    int count;
} topics_of;

static void
collect_topics(const char *group, const char *topic, uint32_t generation, uint32_t members,
               uint32_t partitions, void *user)
{
    topics_of *t = user;
    (void)generation;
    (void)members;
    (void)partitions;
    if (strcmp(group, t->group) == 0 && t->count < 16) {
        snprintf(t->topics[t->count++], sizeof(t->topics[0]), "%s", topic);
    }
}

static int
describe_all(sl_admin *a, const char *group, const group_opts *o, FILE *out)
{
    if (o->topic != NULL) {
        return sl_admin_describe_group(a, group, o->topic, sl_deadline_after_ms(o->timeout_ms),
                                       print_info, (void *)o);
    }
    topics_of t = {.group = group};
    int r = sl_admin_list_groups(a, sl_deadline_after_ms(o->timeout_ms), collect_topics, &t);
    if (r == SL_OK && t.count == 0) {
        return SL_ENOENT;
    }
    for (int i = 0; r == SL_OK && i < t.count; i++) {
        fputs(i > 0 ? "\n" : "", out);
        r = sl_admin_describe_group(a, group, t.topics[i], sl_deadline_after_ms(o->timeout_ms),
                                    print_info, (void *)o);
    }
    return r;
}

int
sl_cli_group(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option longs[] = {
        {"broker", required_argument, NULL, 'b'},  {"topic", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 'w'}, {"admin", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    group_opts o = {.timeout_ms = SL_CLI_TIMEOUT_MS_DEFAULT, .out = out};
    int code = sl_cli_getopt(argc, argv, "b:t:h", longs, group_usage, out, err, group_opt, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    const char *verb = optind < argc ? argv[optind] : NULL;
    const char *name = optind + 1 < argc ? argv[optind + 1] : NULL;
    bool list = verb != NULL && strcmp(verb, "list") == 0;
    bool describe = verb != NULL && strcmp(verb, "describe") == 0;
    if (o.admin == NULL && getenv(SL_CLI_ADMIN_ENV) != NULL) {
        o.admin = sl_cli_admin_addr(NULL);
    }
    if (!list && !describe) {
        fputs(group_usage, err);
        return SL_CLI_EXIT_USAGE;
    }
    if (describe && (name == NULL || !sl_proto_topic_name_valid(name, strlen(name)))) {
        return sl_cli_fail(err, "group", SL_CLI_EXIT_USAGE,
                           "describe needs a GROUP name of 1..249 characters [A-Za-z0-9._-]");
    }
    sl_admin *a = NULL;
    int r = sl_admin_open(o.broker, sl_deadline_after_ms(o.timeout_ms), &a);
    if (r != SL_OK) {
        return sl_cli_fail(err, "group", sl_cli_exit_for(r), "cannot reach the broker: %s",
                           sl_strerror(r));
    }
    if (list) {
        fprintf(out, "group\ttopic\tgeneration\tmembers\tpartitions\n");
        r = sl_admin_list_groups(a, sl_deadline_after_ms(o.timeout_ms), print_group, out);
    } else {
        r = describe_all(a, name, &o, out);
    }
    if (r != SL_OK) {
        const char *msg = sl_admin_last_message(a);
        code = sl_cli_fail(err, "group", sl_cli_exit_for(r), "%s %s: %s%s%s", verb,
                           name != NULL ? name : "", sl_strerror(r), msg[0] ? ": " : "", msg);
    }
    sl_admin_close(a);
    return r == SL_OK ? SL_CLI_EXIT_OK : code;
}
