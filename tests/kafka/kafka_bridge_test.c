// The bridge examples end to end: a real sluiced and a mock Kafka cluster, the two
// examples/pipelines/kafka_bridge_*.pipe files (addresses filled in) run by `sluice pipe` in
// their own processes: a sluice topic goes to Kafka and back into another sluice topic, and
// every record arrives.
// ctest-labels: serial
// ctest-timeout: 180
#include <time.h>

#include "kafka/kafka_test_util.h"
#include "support/broker_proc.h"

#define RECORDS  3000u
#define WAIT_MS  90000
#define FILE_MAX 8192u
#define OUT_MAX  (1u << 20)
#define PIPES    2

// Runs a shell command line and returns its stdout (malloc'd, NUL-terminated).
static char *
run(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char *out = calloc(1, OUT_MAX);
    assert_non_null(out);
    size_t len = fread(out, 1, OUT_MAX - 1, f);
    out[len] = '\0';
    pclose(f);
    return out;
}

// Replaces every occurrence of from by to in buf (capacity cap).
static void
replace_all(char *buf, size_t cap, const char *from, const char *to)
{
    char tmp[FILE_MAX];
    size_t out = 0;
    const char *p = buf;
    // Bounded by the text's length.
    for (const char *hit = strstr(p, from); hit != NULL; hit = strstr(p, from)) {
        size_t n = (size_t)(hit - p);
        assert_true(out + n + strlen(to) < sizeof(tmp));
        memcpy(tmp + out, p, n);
        memcpy(tmp + out + n, to, strlen(to));
        out += n + strlen(to);
        p = hit + strlen(from);
    }
    assert_true(out + strlen(p) < sizeof(tmp) && out + strlen(p) < cap);
    memcpy(tmp + out, p, strlen(p) + 1);
    memcpy(buf, tmp, out + strlen(p) + 1);
}

// Copies examples/pipelines/NAME into dir with the test's addresses and mock-friendly timeouts.
static void
example_copy(const char *name, const char *dir, const char *sluice_addr, const char *kafka_addr,
             char *path_out, size_t path_size)
{
    char src[512];
    snprintf(src, sizeof(src), "%s/examples/pipelines/%s", getenv("SL_SOURCE_DIR"), name);
    FILE *f = fopen(src, "r");
    assert_non_null(f);
    char text[FILE_MAX];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    replace_all(text, sizeof(text), "127.0.0.1:7420", sluice_addr);
    replace_all(text, sizeof(text), "127.0.0.1:9092", kafka_addr);
    // The mock's rebalance waits session.timeout.ms minus 1 s: keep it short here.
    replace_all(text, sizeof(text), "session.timeout.ms = 45000", "session.timeout.ms = 6000");
    snprintf(path_out, path_size, "%s/%s", dir, name);
    f = fopen(path_out, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static pid_t
pipe_start(const char *dir, const char *file, const char *log_name)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (chdir(dir) != 0) {
            _exit(126);
        }
        int fd = open(log_name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execl(getenv("SL_SLUICE"), "sluice", "pipe", file, (char *)NULL);
        _exit(127);
    }
    return pid;
}

// Records in a sluice topic: the sum of log_end over its partitions ("sluice topic describe").
static uint64_t
topic_records(const char *sluice, const char *addr, const char *topic)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s topic describe %s --broker %s 2>/dev/null", sluice, topic, addr);
    char *out = run(cmd);
    uint64_t total = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned part = 0;
        unsigned long long start = 0;
        unsigned long long end = 0;
        if (sscanf(line, "%u %llu %llu", &part, &start, &end) == 3) {
            total += end - start;
        }
    }
    free(out);
    return total;
}

static void
test_sluice_to_kafka_and_back_through_the_examples(void **unused)
{
    const char *sluice = getenv("SL_SLUICE");
    assert_non_null(sluice);
    assert_non_null(getenv("SL_SOURCE_DIR"));
    sl_test_broker broker;
    memset(&broker, 0, sizeof(broker));
    assert_int_equal(sl_test_broker_start(&broker, NULL), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", broker.port);
    const char *flags[] = {"-b", "1", "-t", "orders:3", NULL};
    kt_mock mock;
    kt_mock_start(&mock, flags);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s topic create orders --broker %s >/dev/null 2>&1; "
             "%s topic create orders-from-kafka --partitions 2 --broker %s >/dev/null 2>&1; "
             "%s produce --topic orders --partition 0 --count %u --size 64 --broker %s 2>&1",
             sluice, addr, sluice, addr, sluice, RECORDS, addr);
    free(run(cmd));
    assert_int_equal(topic_records(sluice, addr, "orders"), RECORDS);

    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char out_file[512];
    char in_file[512];
    example_copy("kafka_bridge_out.pipe", dir, addr, mock.bootstrap, out_file, sizeof(out_file));
    example_copy("kafka_bridge_in.pipe", dir, addr, mock.bootstrap, in_file, sizeof(in_file));
    pid_t pids[PIPES] = {pipe_start(dir, out_file, "out.log"), pipe_start(dir, in_file, "in.log")};

    int64_t end = sl_now_ns() + (int64_t)WAIT_MS * 1000000;
    uint64_t back = 0;
    // Bounded by WAIT_MS.
    while (back < RECORDS && sl_now_ns() < end) {
        struct timespec ts = {0, 500 * 1000000};
        nanosleep(&ts, NULL);
        back = topic_records(sluice, addr, "orders-from-kafka");
    }
    int status[PIPES];
    for (int i = 0; i < PIPES; i++) {
        kill(pids[i], SIGINT); // drains, commits, exits 0
        waitpid(pids[i], &status[i], 0);
    }
    printf("sluice 'orders' %u records -> Kafka -> sluice 'orders-from-kafka' %" PRIu64 "\n",
           RECORDS, back);
    // At-least-once: every record made it; duplicates are possible only across restarts.
    assert_true(back >= RECORDS);
    for (int i = 0; i < PIPES; i++) {
        assert_true(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0);
    }
    kt_mock_stop(&mock);
    sl_test_broker_stop(&broker);
    sl_test_broker_cleanup(&broker);
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sluice_to_kafka_and_back_through_the_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
