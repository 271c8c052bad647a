// End-to-end benchmark: one producer and one consumer (the client library) through a real sluiced
// on loopback, 100-byte messages, for acks=memory and acks=fsync. Prints msgs/s, MB/s, latency
// (send call to consumer poll, time blocked by backpressure included) and the broker's peak RSS,
// against a baseline measured in the same run: the same bytes pushed through one loopback TCP
// connection by two threads (the ceiling any broker on this machine shares).
//   build/bench_e2e [--count N] [--size BYTES] [--quick]
#include <errno.h>
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
#include <time.h>
#include <unistd.h>

#include <sluice/client.h>
#include <sluice/error.h>
#include <sluice/histogram.h>

#define PAYLOAD_MIN 16u

typedef struct run_result {
    const char *name;
    double produce_s; // first send to last ack
    double e2e_s;     // first send to last consume
    uint64_t consumed;
    sl_histogram_summary latency; // ns
    long broker_rss_kb;
    uint64_t producer_blocked_ms;
    uint64_t throttles;
} run_result;

typedef struct consumer_arg {
    const char *broker;
    uint64_t count;
    int64_t start_ns;
    int64_t last_ns;
    uint64_t consumed;
    sl_histogram *latency;
} consumer_arg;

static char self_dir[4096];

// Delivery reports go to a callback (on the client's I/O thread) so that records leave the
// producer's buffer as soon as they are acked, whatever the sending thread is doing.
static _Atomic uint64_t acked_records;
static _Atomic uint64_t failed_records;

static void
on_delivery(const sl_delivery_report *r, void *user)
{
    (void)user;
    if (r->err == SL_OK) {
        atomic_fetch_add(&acked_records, r->record_count);
    } else {
        atomic_fetch_add(&failed_records, r->record_count);
    }
}

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pid_t
broker_start(const char *dir, const char *fsync, uint16_t *port)
{
    char bin[4200];
    snprintf(bin, sizeof(bin), "%s/sluiced", self_dir);
    int out[2];
    if (pipe(out) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(bin, bin, "--listen", "127.0.0.1:0", "--admin", "off", "--data", dir,
              "--memory-budget", "512MiB", "--fsync", fsync, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[512] = "";
    size_t len = 0;
    // Bounded: the broker prints one line at start; EOF ends the loop otherwise.
    while (len < sizeof(line) - 1) {
        ssize_t r = read(out[0], line + len, sizeof(line) - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
        line[len] = '\0';
        if (strchr(line, '\n') != NULL) {
            break;
        }
    }
    close(out[0]);
    const char *at = strstr(line, "listening on 127.0.0.1:");
    if (at == NULL) {
        fprintf(stderr, "bench_e2e: sluiced did not start (%s)\n", bin);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    *port = (uint16_t)atoi(at + strlen("listening on 127.0.0.1:"));
    return pid;
}

static long
peak_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    char line[256];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

static void *
consumer_main(void *p)
{
    consumer_arg *a = p;
    sl_consumer_config cfg;
    sl_consumer_config_init(&cfg);
    cfg.broker = a->broker;
    cfg.topic = "bench";
    cfg.prefetch_records = 200000;
    cfg.prefetch_bytes = 64u << 20;
    sl_consumer *c = NULL;
    if (sl_consumer_new(&cfg, &c) != SL_OK) {
        return NULL;
    }
    static sl_consumed recs[4096];
    int64_t deadline = mono_ns() + 300LL * 1000000000;
    // Bounded by count and a 300 s deadline.
    while (a->consumed < a->count && mono_ns() < deadline) {
        size_t n = 0;
        int rc = sl_consumer_poll(c, recs, 4096, sl_deadline_after_ms(1000), &n);
        if (rc != SL_OK && rc != SL_ETIMEDOUT) {
            break;
        }
        int64_t now = mono_ns();
        for (size_t i = 0; i < n; i++) {
            int64_t sent = 0;
            memcpy(&sent, (const uint8_t *)recs[i].record.value + 8, sizeof(sent));
            sl_histogram_record(a->latency, (uint64_t)(now - sent));
        }
        a->consumed += n;
        if (n > 0) {
            a->last_ns = now;
        }
    }
    sl_consumer_free(c);
    return NULL;
}

static int
run_one(const char *name, const char *fsync, sl_acks acks, uint64_t count, uint32_t size,
        run_result *res)
{
    char dir[] = "/tmp/sluice-bench-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    uint16_t port = 0;
    pid_t pid = broker_start(dir, fsync, &port);
    if (pid < 0) {
        return -1;
    }
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", port);
    sl_admin *admin = NULL;
    sl_proto_topic_config tc = {.partition_count = 1};
    if (sl_admin_open(broker, sl_deadline_after_ms(5000), &admin) != SL_OK ||
        sl_admin_create_topic(admin, "bench", &tc, sl_deadline_after_ms(5000)) != SL_OK) {
        fprintf(stderr, "bench_e2e: cannot create the topic\n");
        return -1;
    }
    sl_admin_close(admin);

    consumer_arg ca = {.broker = broker, .count = count};
    if (sl_histogram_new(&ca.latency) != SL_OK) {
        return -1;
    }
    sl_producer_config pc;
    sl_producer_config_init(&pc);
    pc.broker = broker;
    pc.topic = "bench";
    pc.partition = 0;
    pc.acks = acks;
    pc.buffer_bytes = 16u << 20;
    pc.batch_bytes = 256u << 10;
    pc.linger_ms = 1;
    pc.delivery_cb = on_delivery;
    atomic_store(&acked_records, 0);
    atomic_store(&failed_records, 0);
    sl_producer *p = NULL;
    if (sl_producer_new(&pc, &p) != SL_OK) {
        return -1;
    }
    pthread_t ct;
    int64_t start = mono_ns();
    ca.start_ns = start;
    pthread_create(&ct, NULL, consumer_main, &ca);
    uint8_t value[4096];
    memset(value, 'x', sizeof(value));
    for (uint64_t i = 0; i < count; i++) {
        int64_t t = mono_ns(); // stamped before the call: time blocked by backpressure counts
        memcpy(value, &i, 8);
        memcpy(value + 8, &t, 8);
        sl_record r = {.value = value, .value_size = size};
        if (sl_producer_send(p, &r, SL_DEADLINE_NEVER, NULL) != SL_OK) {
            fprintf(stderr, "bench_e2e: send failed\n");
            break;
        }
    }
    int frc = sl_producer_flush(p, sl_deadline_after_ms(120000));
    int64_t produced = mono_ns();
    sl_producer_stats ps;
    sl_producer_stats_get(p, &ps);
    pthread_join(ct, NULL);
    res->name = name;
    res->produce_s = (double)(produced - start) / 1e9;
    res->e2e_s = (double)(ca.last_ns - start) / 1e9;
    res->consumed = ca.consumed;
    sl_histogram_summary_get(ca.latency, &res->latency);
    res->broker_rss_kb = peak_rss_kb(pid);
    res->producer_blocked_ms = (uint64_t)(ps.blocked_ns_total / 1000000);
    res->throttles = ps.client.throttles_total;
    sl_producer_free(p);
    sl_histogram_free(ca.latency);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_e2e: could not remove %s\n", dir);
    }
    return frc == SL_OK && ca.consumed == count && atomic_load(&acked_records) == count ? 0 : -1;
}

// ---- baseline: the same bytes through one loopback TCP connection ------------------------------

typedef struct tcp_arg {
    int fd;
    uint64_t bytes;
} tcp_arg;

static void *
tcp_reader(void *p)
{
    tcp_arg *a = p;
    static uint8_t buf[1 << 20];
    uint64_t got = 0;
    while (got < a->bytes) {
        ssize_t n = read(a->fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        got += (uint64_t)n;
    }
    return NULL;
}

static double
tcp_baseline_s(uint64_t bytes)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        return -1;
    }
    int wfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(wfd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        return -1;
    }
    tcp_arg ta = {.fd = accept(ls, NULL, NULL), .bytes = bytes};
    pthread_t t;
    int64_t start = mono_ns();
    pthread_create(&t, NULL, tcp_reader, &ta);
    static uint8_t buf[256 << 10];
    memset(buf, 'x', sizeof(buf));
    uint64_t sent = 0;
    while (sent < bytes) {
        size_t chunk = bytes - sent < sizeof(buf) ? (size_t)(bytes - sent) : sizeof(buf);
        ssize_t w = write(wfd, buf, chunk);
        if (w <= 0) {
            break;
        }
        sent += (uint64_t)w;
    }
    pthread_join(t, NULL);
    double s = (double)(mono_ns() - start) / 1e9;
    close(wfd);
    close(ta.fd);
    close(ls);
    return s;
}

int
main(int argc, char **argv)
{
    uint64_t count = 1000000;
    uint32_t size = 100;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--quick") == 0) {
            count = 200000;
        } else {
            fprintf(stderr, "usage: bench_e2e [--count N] [--size BYTES] [--quick]\n");
            return 2;
        }
    }
    if (size < PAYLOAD_MIN || size > 4096) {
        fprintf(stderr, "bench_e2e: --size must be %u..4096\n", PAYLOAD_MIN);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(self_dir, sizeof(self_dir), "%s", argv[0]);
    char *slash = strrchr(self_dir, '/');
    if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(self_dir, sizeof(self_dir), ".");
    }
    run_result runs[2];
    memset(runs, 0, sizeof(runs));
    int ok =
        run_one("acks=memory (fsync interval)", "interval", SL_ACKS_MEMORY, count, size, &runs[0]);
    ok |= run_one("acks=fsync (fsync always)", "always", SL_ACKS_FSYNC, count, size, &runs[1]);
    // Per record on the wire: the value, the 28-byte record header, and the batch header shared.
    uint64_t wire_bytes = count * (uint64_t)(size + 28);
    double tcp_s = tcp_baseline_s(wire_bytes);
    printf("bench_e2e: %llu messages of %u bytes, 1 producer, 1 consumer, loopback\n\n",
           (unsigned long long)count, size);
    printf("| run | e2e msgs/s | MB/s (payload) | produce msgs/s | lat p50 / p99 / max (ms) | "
           "broker peak RSS | producer blocked | of loopback TCP ceiling |\n");
    printf("|---|---:|---:|---:|---|---:|---:|---:|\n");
    for (int i = 0; i < 2; i++) {
        run_result *r = &runs[i];
        double rate = r->e2e_s > 0 ? (double)r->consumed / r->e2e_s : 0;
        printf("| %s | %.0f | %.1f | %.0f | %.1f / %.1f / %.1f | %.1f MiB | %llu ms | %.2f |\n",
               r->name, rate, rate * size / 1e6,
               r->produce_s > 0 ? (double)count / r->produce_s : 0, (double)r->latency.p50 / 1e6,
               (double)r->latency.p99 / 1e6, (double)r->latency.max / 1e6,
               (double)r->broker_rss_kb / 1024.0, (unsigned long long)r->producer_blocked_ms,
               tcp_s > 0 && r->e2e_s > 0 ? tcp_s / r->e2e_s : 0);
    }
    printf("| baseline: raw loopback TCP, same bytes | %.0f | %.1f | | | | | 1.00 |\n",
           (double)count / tcp_s, (double)count * size / tcp_s / 1e6);
    return ok == 0 ? 0 : 1;
}
