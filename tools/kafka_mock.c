// kafka_mock: hosts librdkafka's mock Kafka cluster (rdkafka_mock.h) in its own process, for
// tests and demos without a Kafka installation. Prints the bootstrap servers as stdout's first
// line, then runs until SIGTERM/SIGINT. Faults can be set by flags at start or by commands on
// stdin while running (one per line; each answered with "ok" or "error ..." on stdout):
//   rtt BROKER MS | errors APIKEY COUNT ERR | topic_error TOPIC ERR | create TOPIC PARTITIONS
//   down BROKER | up BROKER          (BROKER -1 = all; ERR a code or a name like NOT_LEADER...)
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define BROKERS_MAX     16     // the mock allocates listeners per broker
#define LINE_MAX_BYTES  512    // longest stdin command
#define TICK_MS         200    // how often the main loop checks for a signal
#define API_PRODUCE     0      // Kafka ProduceRequest
#define PARTITIONS_MAX  10000  // sanity bound on -t
#define ERR_DESC_PREFIX "ERR_" // error names as rd_kafka_err2name prints them, without it

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

// An error given as a number or a name ("NOT_LEADER_FOR_PARTITION", "_TRANSPORT"); -1 if
// unknown.
static int
parse_err(const char *text, rd_kafka_resp_err_t *out)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end != text && *end == '\0') {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    const struct rd_kafka_err_desc *descs = NULL;
    size_t n = 0;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcmp(descs[i].name, text) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int
topic_create(rd_kafka_mock_cluster_t *mc, const char *name, int partitions)
{
    if (partitions < 1 || partitions > PARTITIONS_MAX) {
        return -1;
    }
    return rd_kafka_mock_topic_create(mc, name, partitions, 1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                             : -1;
}

// One stdin command; 0 on success.
static int
command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char a[LINE_MAX_BYTES] = "";
    char b[LINE_MAX_BYTES] = "";
    char c[LINE_MAX_BYTES] = "";
    char cmd[32] = "";
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int n = sscanf(line, "%31s %511s %511s %511s", cmd, a, b, c);
    if (n >= 3 && strcmp(cmd, "rtt") == 0) {
        return rd_kafka_mock_broker_set_rtt(mc, atoi(a), atoi(b)) == 0 ? 0 : -1;
    }
    if (n >= 4 && strcmp(cmd, "errors") == 0 && parse_err(c, &err) == 0) {
        size_t count = (size_t)atol(b);
        rd_kafka_resp_err_t errs[64];
        count = count > 64 ? 64 : count;
        for (size_t i = 0; i < count; i++) {
            errs[i] = err;
        }
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(a), count, errs);
        return 0;
    }
    if (n >= 3 && strcmp(cmd, "topic_error") == 0 && parse_err(b, &err) == 0) {
        rd_kafka_mock_topic_set_error(mc, a, err);
        return 0;
    }
    if (n >= 3 && strcmp(cmd, "create") == 0) {
        return topic_create(mc, a, atoi(b));
    }
    if (n >= 2 && strcmp(cmd, "down") == 0) {
        return rd_kafka_mock_broker_set_down(mc, atoi(a)) == 0 ? 0 : -1;
    }
    if (n >= 2 && strcmp(cmd, "up") == 0) {
        return rd_kafka_mock_broker_set_up(mc, atoi(a)) == 0 ? 0 : -1;
    }
    return -1;
}

// Reads and runs the commands that are complete in the stdin buffer. Returns -1 at EOF.
static int
serve_stdin(rd_kafka_mock_cluster_t *mc, char *buf, size_t *len)
{
    ssize_t got = read(STDIN_FILENO, buf + *len, LINE_MAX_BYTES - 1 - *len);
    if (got <= 0) {
        return got == 0 || errno != EINTR ? -1 : 0;
    }
    *len += (size_t)got;
    buf[*len] = '\0';
    char *nl = NULL;
    // At most one command per byte: bounded by the buffer.
    while ((nl = strchr(buf, '\n')) != NULL) {
        *nl = '\0';
        if (buf[0] != '\0') {
            int rc = command(mc, buf);
            printf(rc == 0 ? "ok %s\n" : "error %s\n", buf);
            fflush(stdout);
        }
        size_t used = (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, *len - used + 1);
        *len -= used;
    }
    if (*len == LINE_MAX_BYTES - 1) {
        *len = 0; // a line too long: dropped
    }
    return 0;
}

static void
usage(FILE *out)
{
    fprintf(
        out,
        "usage: kafka_mock [-b BROKERS] [-t TOPIC:PARTITIONS]... [-r RTT_MS]\n"
        "                  [-e COUNT:ERR] [-E TOPIC:ERR]\n"
        "Hosts librdkafka's mock Kafka cluster on loopback for tests and demos. Prints the\n"
        "bootstrap servers on stdout's first line, then runs until SIGTERM or SIGINT.\n"
        "  -b, --brokers N       brokers in the cluster (1..%d, default 1)\n"
        "  -t, --topic T:P       create topic T with P partitions (repeatable)\n"
        "  -r, --rtt MS          add MS of round-trip latency to every broker\n"
        "  -e, --produce-errors COUNT:ERR\n"
        "                        fail the next COUNT produce requests with ERR (code or name)\n"
        "  -E, --topic-error T:ERR  make topic T answer with ERR\n"
        "  -h, --help            this text\n"
        "While running, stdin takes commands, one per line, each answered \"ok\" or \"error\":\n"
        "  rtt BROKER MS | errors APIKEY COUNT ERR | topic_error TOPIC ERR |\n"
        "  create TOPIC PARTITIONS | down BROKER | up BROKER   (BROKER -1: all)\n",
        BROKERS_MAX);
}

static const struct option long_options[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"rtt", required_argument, NULL, 'r'},
                                             {"produce-errors", required_argument, NULL, 'e'},
                                             {"topic-error", required_argument, NULL, 'E'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};

static int
apply_flag(rd_kafka_mock_cluster_t *mc, int opt, char *arg)
{
    char *colon = strrchr(arg, ':');
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (opt == 'r') {
        return rd_kafka_mock_broker_set_rtt(mc, -1, atoi(arg)) == 0 ? 0 : -1;
    }
    if (colon == NULL) {
        return -1;
    }
    *colon = '\0';
    if (opt == 't') {
        return topic_create(mc, arg, atoi(colon + 1));
    }
    if (opt == 'e' && parse_err(colon + 1, &err) == 0) {
        char line[LINE_MAX_BYTES];
        snprintf(line, sizeof(line), "errors %d %s %d", API_PRODUCE, arg, (int)err);
        return command(mc, line);
    }
    if (opt == 'E' && parse_err(colon + 1, &err) == 0) {
        rd_kafka_mock_topic_set_error(mc, arg, err);
        return 0;
    }
    return -1;
}

int
main(int argc, char **argv)
{
    int brokers = 1;
    int opt;
    // Broker count first: the cluster must exist before topics and faults are applied.
    while ((opt = getopt_long(argc, argv, "b:t:r:e:E:h", long_options, NULL)) != -1) {
        if (opt == 'b') {
            brokers = atoi(optarg);
        } else if (opt == 'h' || opt == '?') {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kafka_mock: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (brokers < 1 || brokers > BROKERS_MAX) {
        fprintf(stderr, "kafka_mock: --brokers wants 1..%d\n", BROKERS_MAX);
        return 2;
    }
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kafka_mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (mc == NULL) {
        fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    optind = 1;
    int rc = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "b:t:r:e:E:h", long_options, NULL)) != -1) {
        if (opt != 'b' && apply_flag(mc, opt, optarg) != 0) {
            fprintf(stderr, "kafka_mock: bad -%c %s\n", opt, optarg);
            rc = 2;
        }
    }
    if (rc == 0) {
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        signal(SIGPIPE, SIG_IGN);
        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);
        char buf[LINE_MAX_BYTES];
        size_t len = 0;
        bool stdin_open = true;
        // Runs until a signal; stdin at EOF is simply no longer read.
        while (!stop_flag) {
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            if (stdin_open && poll(&p, 1, TICK_MS) > 0 && serve_stdin(mc, buf, &len) != 0) {
                stdin_open = false;
            } else if (!stdin_open) {
                poll(NULL, 0, TICK_MS);
            }
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
