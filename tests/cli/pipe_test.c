// `sluice pipe` across processes: a producer -> sluiced -> `sluice pipe` (a slow operator) ->
// sluiced pipeline. The producer is slowed to the pipeline's rate (backpressure crosses two
// processes and the broker's backlog bound) and nothing is lost; the pipeline killed with SIGKILL
// mid-stream and restarted keeps at-least-once: every record reaches the output topic, with
// duplicates within the bound docs/pipelines.md gives. Needs $SL_SLUICED and $SL_SLUICE.
// ctest-labels: serial
// ctest-timeout: 240
#include "support/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/client.h>
#include <sluice/error.h>

#include "core/util.h"
#include "support/broker_proc.h"

#define PIPE_RECORDS  3000u
#define PIPE_DELAY_MS "2"
#define PIPE_BACKLOG  (64u * 1024u)
#define PIPE_WAIT_MS  90000
// Duplicates a crash may cause (docs/pipelines.md, "Delivery guarantees"): records in flight
// (prefetch 32 + three queues of 16 + the sink's unacked window) plus what was committed within
// the last offset save interval (200 ms at about 500 records/s), with a wide margin.
#define PIPE_DUPLICATES_MAX 1000u

typedef struct out_reader {
    sl_consumer *c;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint distinct;
    atomic_uint total;
    uint16_t seen[PIPE_RECORDS];
} out_reader;

static void *
out_reader_main(void *arg)
{
    out_reader *r = arg;
    sl_consumed recs[256];
    while (!atomic_load(&r->stop)) {
        size_t n = 0;
        int err = sl_consumer_poll(r->c, recs, 256, sl_deadline_after_ms(100), &n);
        if (err != SL_OK) {
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            char text[32] = "";
            memcpy(text, recs[i].record.value, SL_MIN(recs[i].record.value_size, 31u));
            unsigned long long seq = strtoull(text, NULL, 10);
            assert_true(seq < PIPE_RECORDS);
            if (r->seen[seq]++ == 0) {
                atomic_fetch_add(&r->distinct, 1);
            }
            atomic_fetch_add(&r->total, 1);
        }
    }
    return NULL;
}

typedef struct producer_run {
    sl_producer *p;
    pthread_t thread;
    atomic_uint sent;
    atomic_uint acked;
    atomic_int err;
} producer_run;

static void
on_report(const sl_delivery_report *r, void *user)
{
    producer_run *pr = user;
    if (r->err == SL_OK) {
        atomic_fetch_add(&pr->acked, r->record_count);
    } else {
        atomic_store(&pr->err, r->err);
    }
}

static void *
producer_main(void *arg)
{
    producer_run *pr = arg;
    for (uint32_t i = 0; i < PIPE_RECORDS; i++) {
        char value[128];
        int n = snprintf(value, sizeof(value), "%u {\"filler\": \"%064u\"}", i, i);
        sl_record rec = {.value = value, .value_size = (uint32_t)n, .timestamp_us = 1};
        int err = sl_producer_send(pr->p, &rec, sl_deadline_after_ms(PIPE_WAIT_MS), NULL);
        if (err != SL_OK) {
            atomic_store(&pr->err, err);
            return NULL;
        }
        atomic_fetch_add(&pr->sent, 1);
    }
    int err = sl_producer_flush(pr->p, sl_deadline_after_ms(PIPE_WAIT_MS));
    if (err != SL_OK) {
        atomic_store(&pr->err, err);
    }
    return NULL;
}

static pid_t
spawn_pipe(const char *file, const char *log)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *bin = getenv("SL_SLUICE");
        execl(bin, "sluice", "pipe", "--explain", "0", "--admin", "127.0.0.1:0", file,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void
create_topic(const char *broker, const char *topic, uint64_t backlog)
{
    sl_admin *a = NULL;
    assert_int_equal(sl_admin_open(broker, sl_deadline_after_ms(PIPE_WAIT_MS), &a), SL_OK);
    sl_proto_topic_config tc = {.partition_count = 1, .max_backlog_bytes = backlog};
    assert_int_equal(sl_admin_create_topic(a, topic, &tc, sl_deadline_after_ms(PIPE_WAIT_MS)),
                     SL_OK);
    sl_admin_close(a);
}

static void
write_pipe_file(const char *path, const sl_test_broker *b, const char *dir)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[pipeline]\nname = pipe-test\n\n"
            "[source in]\nuri = sluice://127.0.0.1:%u/in?partition=0\n"
            "offsets = %s/in.offsets\nprefetch = 32\nqueue_records = 16\n\n"
            "[operator slow]\ntype = delay\nms = %s\nqueue_records = 16\n\n"
            "[sink out]\nuri = sluice://127.0.0.1:%u/out\nacks = log\nqueue_records = 16\n\n"
            "[edges]\nin -> slow -> out\n",
            (unsigned)b->port, dir, PIPE_DELAY_MS, (unsigned)b->port);
    assert_int_equal(fclose(f), 0);
}

// Waits until cond(arg) or the deadline; returns cond's last value.
static bool
wait_distinct(out_reader *r, uint32_t n)
{
    int64_t deadline = sl_test_now_ns() + (int64_t)PIPE_WAIT_MS * 1000000;
    while (atomic_load(&r->distinct) < n && sl_test_now_ns() < deadline) {
        usleep(20000);
    }
    return atomic_load(&r->distinct) >= n;
}

static void
dump_log(const char *log)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", log);
    (void)!system(cmd);
}

// The admin port of the last started pipeline, from its "admin on http://127.0.0.1:PORT" line.
static uint16_t
admin_port(const char *log)
{
    unsigned port = 0;
    for (int i = 0; i < 200 && port == 0; i++) {
        FILE *f = fopen(log, "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            const char *at = strstr(line, "admin on http://127.0.0.1:");
            if (at != NULL) {
                port = (unsigned)atoi(at + strlen("admin on http://127.0.0.1:"));
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        if (port == 0) {
            usleep(20000);
        }
    }
    return (uint16_t)port;
}

// GETs path from 127.0.0.1:port into body (NUL-terminated). Returns the bytes read or -1.
static int
http_get(uint16_t port, const char *path, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    char req[128];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    size_t len = 0;
    for (int i = 0; i < 10000 && len + 1 < cap; i++) {
        ssize_t got = recv(fd, body + len, cap - 1 - len, 0);
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    body[len] = '\0';
    close(fd);
    return (int)len;
}

static void
check_admin(const char *log)
{
    uint16_t port = admin_port(log);
    assert_true(port > 0);
    static char body[1 << 20];
    assert_true(http_get(port, "/metrics", body, sizeof(body)) > 0);
    assert_non_null(strstr(body, "200 OK"));
    assert_non_null(strstr(body, "stage=\"slow\""));
    assert_true(http_get(port, "/stats", body, sizeof(body)) > 0);
    assert_non_null(strstr(body, "\"pipeline\":\"pipe-test\""));
    assert_true(http_get(port, "/nope", body, sizeof(body)) > 0);
    assert_non_null(strstr(body, "404"));
}

static void
test_pipe_slow_pipeline_slows_producer_and_survives_sigkill(void **state)
{
    (void)state;
    const char *sluiced = getenv("SL_SLUICED");
    const char *sluice = getenv("SL_SLUICE");
    if (sluiced == NULL || sluice == NULL || access(sluice, X_OK) != 0) {
        skip();
    }
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", (unsigned)b.port);
    create_topic(broker, "in", PIPE_BACKLOG);
    create_topic(broker, "out", 0);
    char file[320], log[320];
    snprintf(file, sizeof(file), "%s/test.pipe", dir);
    snprintf(log, sizeof(log), "%s/pipe.log", dir);
    write_pipe_file(file, &b, dir);

    out_reader *r = calloc(1, sizeof(*r));
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = broker;
    cc.topic = "out";
    assert_int_equal(sl_consumer_new(&cc, &r->c), SL_OK);
    assert_int_equal(pthread_create(&r->thread, NULL, out_reader_main, r), 0);

    pid_t pid = spawn_pipe(file, log);
    producer_run *pr = calloc(1, sizeof(*pr));
    sl_producer_config pc;
    sl_producer_config_init(&pc);
    pc.broker = broker;
    pc.topic = "in";
    pc.partition = 0;
    pc.buffer_bytes = 64u * 1024u;
    pc.delivery_cb = on_report;
    pc.delivery_user = pr;
    assert_int_equal(sl_producer_new(&pc, &pr->p), SL_OK);
    assert_int_equal(pthread_create(&pr->thread, NULL, producer_main, pr), 0);

    // The producer's progress follows the pipeline's, not its own speed (it could send all
    // records in a few milliseconds): between two points, it gains about what the output gained.
    assert_true(wait_distinct(r, 500));
    uint32_t acked0 = atomic_load(&pr->acked);
    uint32_t out0 = atomic_load(&r->distinct);
    assert_true(wait_distinct(r, 1000));
    uint32_t acked1 = atomic_load(&pr->acked);
    uint32_t out1 = atomic_load(&r->distinct);
    print_message("producer +%u while output +%u\n", acked1 - acked0, out1 - out0);
    assert_true(acked1 < PIPE_RECORDS);
    assert_true(acked1 - acked0 <= 2 * (out1 - out0) + 200);
    check_admin(log);

    // Crash mid-stream, restart with the same offset file.
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = spawn_pipe(file, log);
    pthread_join(pr->thread, NULL);
    assert_int_equal(atomic_load(&pr->err), SL_OK);
    if (!wait_distinct(r, PIPE_RECORDS)) {
        dump_log(log);
        fail_msg("only %u of %u records reached the output", atomic_load(&r->distinct),
                 PIPE_RECORDS);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        dump_log(log);
        fail_msg("sluice pipe exited with status %d", status);
    }
    usleep(300000); // late duplicates, if any, arrive
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    uint32_t dups = atomic_load(&r->total) - PIPE_RECORDS;
    print_message("duplicates after SIGKILL: %u\n", dups);
    assert_true(dups <= PIPE_DUPLICATES_MAX);

    sl_producer_free(pr->p);
    sl_consumer_free(r->c);
    free(pr);
    free(r);
    sl_test_broker_stop(&b);
    sl_test_broker_cleanup(&b);
    sl_test_rmtree(dir);
}

// ---- two processes, one consumer group ------------------------------------------------------

#define GROUP_PARTITIONS 4u

static void
on_group(const char *group, const char *topic, uint32_t generation, uint32_t member_count,
         uint32_t partition_count, void *user)
{
    if (strcmp(group, "shared") == 0) {
        uint32_t *most = user;
        *most = SL_MAX(*most, member_count);
    }
}

// Members the group "shared" has now (0 when unknown).
static uint32_t
group_members(const char *broker)
{
    sl_admin *a = NULL;
    uint32_t members = 0;
    if (sl_admin_open(broker, sl_deadline_after_ms(PIPE_WAIT_MS), &a) == SL_OK) {
        if (sl_admin_list_groups(a, sl_deadline_after_ms(PIPE_WAIT_MS), on_group, &members) !=
            SL_OK) {
            members = 0;
        }
        sl_admin_close(a);
    }
    return members;
}

static void
write_group_pipe_file(const char *path, const sl_test_broker *b)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[pipeline]\nname = group-test\n\n"
            "[source in]\nuri = sluice://127.0.0.1:%u/gin?group=shared\nprefetch = 32\n"
            "queue_records = 16\n\n"
            "[operator slow]\ntype = delay\nms = 1\nqueue_records = 16\n\n"
            "[sink out]\nuri = sluice://127.0.0.1:%u/out\nacks = log\nqueue_records = 16\n\n"
            "[edges]\nin -> slow -> out\n",
            (unsigned)b->port, (unsigned)b->port);
    assert_int_equal(fclose(f), 0);
}

// Two `sluice pipe` processes read one topic as consumer group "shared"; one is SIGKILLed half
// way: the other takes its partitions over and every record reaches the output at least once.
static void
test_pipe_two_processes_share_a_topic_as_a_group(void **state)
{
    (void)state;
    const char *sluice = getenv("SL_SLUICE");
    if (getenv("SL_SLUICED") == NULL || sluice == NULL || access(sluice, X_OK) != 0) {
        skip();
    }
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    sl_test_broker b = {0};
    assert_int_equal(sl_test_broker_start(&b, NULL), 0);
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", (unsigned)b.port);
    sl_admin *a = NULL;
    assert_int_equal(sl_admin_open(broker, sl_deadline_after_ms(PIPE_WAIT_MS), &a), SL_OK);
    sl_proto_topic_config tc = {.partition_count = GROUP_PARTITIONS};
    assert_int_equal(sl_admin_create_topic(a, "gin", &tc, sl_deadline_after_ms(PIPE_WAIT_MS)),
                     SL_OK);
    sl_admin_close(a);
    create_topic(broker, "out", 0);
    char file[320], log[2][320];
    snprintf(file, sizeof(file), "%s/group.pipe", dir);
    write_group_pipe_file(file, &b);

    out_reader *r = calloc(1, sizeof(*r));
    sl_consumer_config cc;
    sl_consumer_config_init(&cc);
    cc.broker = broker;
    cc.topic = "out";
    assert_int_equal(sl_consumer_new(&cc, &r->c), SL_OK);
    assert_int_equal(pthread_create(&r->thread, NULL, out_reader_main, r), 0);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        snprintf(log[i], sizeof(log[i]), "%s/pipe%d.log", dir, i);
        pids[i] = spawn_pipe(file, log[i]);
    }
    producer_run *pr = calloc(1, sizeof(*pr));
    sl_producer_config pc;
    sl_producer_config_init(&pc);
    pc.broker = broker;
    pc.topic = "gin";
    pc.partition = SL_PROTO_PARTITION_ANY;
    pc.delivery_cb = on_report;
    pc.delivery_user = pr;
    assert_int_equal(sl_producer_new(&pc, &pr->p), SL_OK);
    assert_int_equal(pthread_create(&pr->thread, NULL, producer_main, pr), 0);

    uint32_t members = 0;
    for (int i = 0; i < 200 && members < 2; i++) { // bounded: 200 x 50 ms
        members = group_members(broker);
        usleep(50000);
    }
    assert_int_equal(members, 2);
    assert_true(wait_distinct(r, PIPE_RECORDS / 3));
    kill(pids[0], SIGKILL);
    int status = 0;
    waitpid(pids[0], &status, 0);
    pthread_join(pr->thread, NULL);
    assert_int_equal(atomic_load(&pr->err), SL_OK);
    if (!wait_distinct(r, PIPE_RECORDS)) {
        dump_log(log[1]);
        fail_msg("only %u of %u records reached the output", atomic_load(&r->distinct),
                 PIPE_RECORDS);
    }
    kill(pids[1], SIGTERM);
    waitpid(pids[1], &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    usleep(300000); // late duplicates, if any, arrive
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    uint32_t dups = atomic_load(&r->total) - PIPE_RECORDS;
    print_message("two members, one SIGKILLed: %u duplicates\n", dups);
    assert_true(dups <= PIPE_DUPLICATES_MAX);

    sl_producer_free(pr->p);
    sl_consumer_free(r->c);
    free(pr);
    free(r);
    sl_test_broker_stop(&b);
    sl_test_broker_cleanup(&b);
    sl_test_rmtree(dir);
}

static void
test_pipe_check_reports_file_and_line(void **state)
{
    (void)state;
    const char *sluice = getenv("SL_SLUICE");
    if (sluice == NULL || access(sluice, X_OK) != 0) {
        skip();
    }
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char file[320], cmd[1024];
    snprintf(file, sizeof(file), "%s/bad.pipe", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "[source a]\nuri = -\n[operator x]\ntype = json_filter\nfield = a\nop = near\n"
               "value = 1\n[sink b]\nuri = -\n[edges]\na -> x -> b\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s pipe --check %s 2>&1", sluice, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    assert_int_equal(WEXITSTATUS(status), 2);
    if (strstr(out, "bad.pipe:6:") == NULL || strstr(out, "op wants") == NULL) {
        fail_msg("unexpected message: %s", out);
    }
    sl_test_rmtree(dir);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_check_reports_file_and_line),
        cmocka_unit_test(test_pipe_slow_pipeline_slows_producer_and_survives_sigkill),
        cmocka_unit_test(test_pipe_two_processes_share_a_topic_as_a_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
