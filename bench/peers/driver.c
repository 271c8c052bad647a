// The driver of every load client: parses the workload, forks one process per consumer (then,
// once they subscribed, one per producer), samples counters and RSS (VmRSS/VmHWM from /proc)
// every 100 ms, and writes summary.txt (key=value) and series.csv into --out.
#include "common.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS_PER_S      1000000000ll
#define READY_WAIT_NS (15 * NS_PER_S) // consumers must subscribe within this
#define HARD_LIMIT_NS ((int64_t)PB_MAX_SLOTS * PB_SLOT_NS)
#define RATE_WINDOW   10u // series rates are over the last 10 slots (1 s)
#define MAX_CHILDREN  (PB_MAX_PRODUCERS + PB_MAX_CONSUMERS)
#define NFTW_FDS      16

typedef struct sample {
    uint64_t sent[PB_MAX_PRODUCERS];
    uint64_t acked[PB_MAX_PRODUCERS];
    uint64_t rejected[PB_MAX_PRODUCERS];
    uint64_t consumed[PB_MAX_CONSUMERS];
    long rss_kb;
} sample;

typedef struct driver {
    pb_run *run;
    pid_t pid[MAX_CHILDREN]; // consumers first, then producers
    bool live[MAX_CHILDREN];
    uint32_t children;
    long hwm_kb[MAX_CHILDREN];
    long broker_hwm_kb;
    double disk_mb;
    bool disk_done;
    bool killed;
    sample *s;
    uint32_t slots;
} driver;

static void
workload_defaults(pb_run *run, const char *name)
{
    bool q = run->quick;
    run->producers = 1;
    run->consumers = 1;
    run->drain_ns = (q ? 20 : 60) * NS_PER_S;
    run->idle_ns = 5 * NS_PER_S;
    run->duration_ns = (q ? 5 : 20) * NS_PER_S;
    run->count = q ? 200000 : 1000000;
    run->bursts = q ? 3 : 6;
    run->burst_size = q ? 50000 : 200000;
    run->burst_every_ns = (q ? 2 : 5) * NS_PER_S;
    pb_shared *sh = run->sh;
    for (uint32_t i = 0; i < PB_MAX_CONSUMERS; i++) {
        sh->cons[i].still_queued = -1;
    }
    if (run->workload == PB_W2) {
        sh->cons[0].rate = 20000;
    } else if (run->workload == PB_W3) {
        sh->cons[0].rate = 50000;
    } else if (run->workload == PB_W4) {
        // Two topics; the slow one's consumer runs at 1 % of the fast one's capacity.
        bool alone = strstr(name, "alone") != NULL;
        run->producers = alone ? 1 : 2;
        run->consumers = alone ? 1 : 2;
        sh->cons[0].rate = 100000;
        sh->cons[1].rate = 1000;
        sh->prod[1].topic = 1;
        run->drain_ns = 10 * NS_PER_S;
    } else if (run->workload == PB_W5) {
        // Three producers into one topic, one offering 10x the others; the consumer is the
        // bottleneck (60k/s offered against 20k/s).
        run->producers = 3;
        sh->prod[0].rate = 5000;
        sh->prod[1].rate = 5000;
        sh->prod[2].rate = 50000;
        sh->cons[0].rate = 20000;
    }
}

static int
parse_workload(const char *w, pb_run *run)
{
    static const struct {
        const char *name;
        pb_workload w;
        bool bounded;
    } table[] = {{"w1", PB_W1, false}, {"w2", PB_W2, false}, {"w2b", PB_W2, true},
                 {"w3", PB_W3, false}, {"w4", PB_W4, true},  {"w4-alone", PB_W4, true},
                 {"w5", PB_W5, true}};
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(w, table[i].name) == 0) {
            run->workload = table[i].w;
            run->bounded = run->bounded || table[i].bounded;
            return 0;
        }
    }
    return -1;
}

static void
usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --workload w1|w2|w2b|w3|w4|w4-alone|w5 --addr HOST:PORT --out DIR\n"
            "          [--label NAME] [--broker-pid PID] [--data-dir DIR] [--bounded] [--quick]\n"
            "          [--count N] [--rate MSGS_PER_S] [--opt KEY=VALUE]...\n",
            prog);
}

static int
parse_args(pb_run *run, int argc, char **argv)
{
    static const struct option opts[] = {
        {"workload", required_argument, NULL, 'w'},   {"addr", required_argument, NULL, 'a'},
        {"out", required_argument, NULL, 'o'},        {"label", required_argument, NULL, 'l'},
        {"broker-pid", required_argument, NULL, 'b'}, {"data-dir", required_argument, NULL, 'd'},
        {"bounded", no_argument, NULL, 'B'},          {"quick", no_argument, NULL, 'q'},
        {"count", required_argument, NULL, 'n'},      {"rate", required_argument, NULL, 'r'},
        {"opt", required_argument, NULL, 'O'},        {NULL, 0, NULL, 0}};
    const char *wname = NULL;
    uint64_t count = 0;
    uint64_t rate = UINT64_MAX;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'w':
            wname = optarg;
            break;
        case 'a':
            run->addr = optarg;
            break;
        case 'o':
            run->out_dir = optarg;
            break;
        case 'l':
            run->label = optarg;
            break;
        case 'b':
            run->broker_pid = atoi(optarg);
            break;
        case 'd':
            run->data_dir = optarg;
            break;
        case 'B':
            run->bounded = true;
            break;
        case 'q':
            run->quick = true;
            break;
        case 'n':
            count = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtoull(optarg, NULL, 10);
            break;
        case 'O':
            if (run->opt_count < sizeof(run->opt) / sizeof(run->opt[0])) {
                run->opt[run->opt_count++] = optarg;
            }
            break;
        default:
            return -1;
        }
    }
    if (wname == NULL || run->out_dir == NULL || parse_workload(wname, run) != 0) {
        return -1;
    }
    workload_defaults(run, wname);
    if (count > 0) {
        run->count = count;
    }
    if (rate != UINT64_MAX) {
        run->sh->cons[0].rate = rate;
    }
    return 0;
}

static long
proc_status_kb(int pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long v = -1;
    size_t klen = strlen(key);
    for (int i = 0; i < 128 && fgets(line, sizeof(line), f) != NULL; i++) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static double disk_bytes;

static int
disk_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F) {
        disk_bytes += (double)st->st_blocks * 512.0;
    }
    return 0;
}

static double
disk_mb(const char *dir)
{
    disk_bytes = 0;
    if (dir == NULL || nftw(dir, disk_visit, NFTW_FDS, FTW_PHYS) != 0) {
        return -1;
    }
    return disk_bytes / 1e6;
}

static pid_t
spawn(const pb_system *sys, pb_run *run, bool producer, uint32_t idx)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = producer ? sys->produce(run, idx) : sys->consume(run, idx);
        if (producer) {
            pb_prod_finished(run, idx);
        } else {
            atomic_store(&run->sh->cons[idx].done, 1);
        }
        fflush(NULL);
        _exit(rc == 0 ? 0 : 1);
    }
    return pid;
}

static bool
all_producers_done(const pb_run *run)
{
    for (uint32_t p = 0; p < run->producers; p++) {
        if (!atomic_load(&run->sh->prod[p].done)) {
            return false;
        }
    }
    return true;
}

static void
take_sample(driver *d, sample *s)
{
    pb_run *run = d->run;
    for (uint32_t p = 0; p < run->producers; p++) {
        s->sent[p] = atomic_load(&run->sh->prod[p].sent);
        s->acked[p] = atomic_load(&run->sh->prod[p].acked);
        s->rejected[p] = atomic_load(&run->sh->prod[p].rejected);
    }
    for (uint32_t c = 0; c < run->consumers; c++) {
        s->consumed[c] = atomic_load(&run->sh->cons[c].consumed);
    }
    s->rss_kb = run->broker_pid > 0 ? proc_status_kb(run->broker_pid, "VmRSS") : 0;
    if (run->broker_pid > 0) {
        long h = proc_status_kb(run->broker_pid, "VmHWM");
        d->broker_hwm_kb = h > d->broker_hwm_kb ? h : d->broker_hwm_kb;
    }
    for (uint32_t i = 0; i < d->children; i++) {
        long h = d->live[i] ? proc_status_kb(d->pid[i], "VmHWM") : -1;
        d->hwm_kb[i] = h > d->hwm_kb[i] ? h : d->hwm_kb[i];
    }
    if (!d->disk_done && all_producers_done(run)) {
        d->disk_mb = disk_mb(run->data_dir);
        d->disk_done = true;
    }
}

static uint32_t
reap(driver *d)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < d->children; i++) {
        if (d->live[i]) {
            int st;
            pid_t r = waitpid(d->pid[i], &st, WNOHANG);
            if (r == d->pid[i] || (r < 0 && errno == ECHILD)) {
                d->live[i] = false;
            } else {
                live++;
            }
        }
    }
    return live;
}

// Samples every 100 ms until every child exited (or the hard limit, which kills them).
static void
sample_loop(driver *d)
{
    pb_run *run = d->run;
    int64_t t0 = run->sh->t0_ns;
    for (uint32_t slot = 0; slot < PB_MAX_SLOTS; slot++) {
        take_sample(d, &d->s[slot]);
        d->slots = slot + 1;
        if (reap(d) == 0) {
            return;
        }
        pb_sleep_ns(t0 + (int64_t)(slot + 1) * PB_SLOT_NS - pb_now_ns());
    }
    d->killed = true;
    for (uint32_t i = 0; i < d->children; i++) {
        if (d->live[i]) {
            kill(d->pid[i], SIGKILL);
            waitpid(d->pid[i], NULL, 0);
            d->live[i] = false;
        }
    }
}

// Setup runs in a child process too, so that no client library (libnats starts threads) is
// initialised in the driver before it forks the producers and consumers.
static int
run_setup(const pb_system *sys, pb_run *run)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = sys->setup(run);
        fflush(NULL);
        _exit(rc == 0 ? 0 : 1);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) {
        return -1;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int
start_children(const pb_system *sys, driver *d)
{
    pb_run *run = d->run;
    for (uint32_t c = 0; c < run->consumers; c++) {
        d->pid[d->children] = spawn(sys, run, false, c);
        d->live[d->children++] = true;
    }
    int64_t limit = pb_now_ns() + READY_WAIT_NS;
    for (uint32_t c = 0; c < run->consumers; c++) {
        while (!atomic_load(&run->sh->cons[c].ready) && !atomic_load(&run->sh->cons[c].done) &&
               pb_now_ns() < limit) {
            pb_sleep_ns(PB_SLOT_NS / 10);
        }
        if (!atomic_load(&run->sh->cons[c].ready)) {
            fprintf(stderr, "%s: consumer %u did not subscribe\n", sys->name, c);
            return -1;
        }
    }
    for (uint32_t p = 0; p < run->producers; p++) {
        d->pid[d->children] = spawn(sys, run, true, p);
        d->live[d->children++] = true;
    }
    return 0;
}

// ---- results ---------------------------------------------------------------------------------

static const char *
stop_name(int stop)
{
    static const char *names[] = {"running", "complete", "recv-error", "drain-timeout", "idle"};
    return stop >= 0 && stop <= PB_STOP_IDLE ? names[stop] : "?";
}

static uint64_t
lost_count(const pb_run *run, uint32_t p)
{
    uint64_t sent = atomic_load(&run->sh->prod[p].sent);
    uint64_t words = (sent + 63) / 64;
    uint64_t lost = 0;
    for (uint64_t i = 0; i < words && i < PB_MAX_SEQ / 64; i++) {
        lost += (uint64_t)__builtin_popcountll(run->acked_bits[p][i] & ~run->consumed_bits[p][i]);
    }
    return lost;
}

static double
secs(int64_t ns)
{
    return (double)ns / 1e9;
}

static uint32_t
slot_of(const driver *d, int64_t t)
{
    int64_t s = (t - d->run->sh->t0_ns) / PB_SLOT_NS;
    if (s < 0) {
        return 0;
    }
    return s >= (int64_t)d->slots ? d->slots - 1 : (uint32_t)s;
}

// Accepted msgs/s of producers of topic 0 from 5 s after their start to the window end.
static double
accepted_steady(const driver *d, int64_t start, int64_t window_end)
{
    uint32_t a = slot_of(d, start + 5 * NS_PER_S);
    uint32_t b = slot_of(d, window_end);
    if (b <= a) {
        return -1;
    }
    uint64_t acked_a = 0;
    uint64_t acked_b = 0;
    for (uint32_t p = 0; p < d->run->producers; p++) {
        if (d->run->sh->prod[p].topic == 0) {
            acked_a += d->s[a].acked[p];
            acked_b += d->s[b].acked[p];
        }
    }
    return (double)(acked_b - acked_a) / ((double)(b - a) * secs(PB_SLOT_NS));
}

static void
write_producers(FILE *f, const driver *d, int64_t *start_out, int64_t *wend_out)
{
    const pb_run *run = d->run;
    uint64_t sent = 0, acked = 0, rej = 0, stalls = 0, lost = 0;
    uint32_t lane0 = 0; // producers of topic 0
    int64_t start = INT64_MAX, wend = 0, end = 0, in_send = 0, max_send = 0;
    for (uint32_t p = 0; p < run->producers; p++) {
        const pb_prod_state *ps = &run->sh->prod[p];
        uint64_t pl = lost_count(run, p);
        int64_t s0 = atomic_load(&ps->start_ns);
        int64_t we = atomic_load(&ps->window_end_ns);
        int64_t e = atomic_load(&ps->end_ns);
        fprintf(f, "p%u_sent=%lu\np%u_acked=%lu\np%u_rejected=%lu\np%u_lost=%lu\n", p,
                (unsigned long)ps->sent, p, (unsigned long)ps->acked, p,
                (unsigned long)ps->rejected, p, (unsigned long)pl);
        fprintf(f, "p%u_offered=%.0f\np%u_accepted=%.0f\np%u_intended=%lu\n", p,
                we > s0 ? (double)ps->sent / secs(we - s0) : 0.0, p,
                e > s0 ? (double)ps->acked / secs(e - s0) : 0.0, p, (unsigned long)ps->rate);
        if (ps->topic != 0) {
            continue;
        }
        lane0++;
        sent += ps->sent;
        acked += ps->acked;
        rej += ps->rejected;
        stalls += ps->stalls;
        lost += pl;
        in_send += ps->in_send_ns;
        max_send = ps->max_send_ns > max_send ? ps->max_send_ns : max_send;
        start = s0 > 0 && s0 < start ? s0 : start;
        wend = we > wend ? we : wend;
        end = e > end ? e : end;
    }
    const pb_prod_state *p0 = &run->sh->prod[0];
    double window = wend > start ? secs(wend - start) : 0;
    fprintf(f, "sent=%lu\nacked=%lu\nrejected=%lu\nlost=%lu\nstalls=%lu\n", (unsigned long)sent,
            (unsigned long)acked, (unsigned long)rej, (unsigned long)lost, (unsigned long)stalls);
    fprintf(f, "offered=%.0f\naccepted=%.0f\naccepted_steady=%.0f\n",
            window > 0 ? (double)sent / window : 0,
            end > start ? (double)acked / secs(end - start) : 0, accepted_steady(d, start, wend));
    fprintf(f, "in_send_pct=%.1f\nmax_send_ms=%.1f\nreject_reason=%s\nnote=%s\n",
            window > 0 && lane0 > 0 ? 100.0 * secs(in_send) / window / (double)lane0 : 0,
            (double)max_send / 1e6, p0->reason, p0->note);
    fprintf(f, "window_s=%.2f\n", window);
    *start_out = start;
    *wend_out = wend;
}

static void
write_consumers(FILE *f, const driver *d, int64_t start, int64_t wend)
{
    const pb_run *run = d->run;
    for (uint32_t c = 0; c < run->consumers; c++) {
        const pb_cons_state *cs = &run->sh->cons[c];
        int64_t last = atomic_load(&cs->last_ns);
        double span = last > start ? secs(last - start) : 0;
        const char *pre = c == 0 ? "" : "c1_";
        fprintf(f, "%sconsumed=%lu\n%sdups=%lu\n%sgoodput=%.0f\n%squeued=%ld\n", pre,
                (unsigned long)cs->consumed, pre, (unsigned long)cs->dups, pre,
                span > 0 ? (double)cs->consumed / span : 0, pre, (long)cs->still_queued);
        fprintf(f, "%sp50_ms=%.1f\n%sp99_ms=%.1f\n%smax_ms=%.1f\n%sstop=%s\n%scapacity=%lu\n", pre,
                (double)cs->latency.p50 / 1e6, pre, (double)cs->latency.p99 / 1e6, pre,
                (double)cs->latency.max / 1e6, pre, stop_name(cs->stop), pre,
                (unsigned long)cs->rate);
        if (c == 0) {
            fprintf(f, "drain_s=%.2f\n", last > 0 ? secs(last - wend) : -1.0);
        }
    }
    for (uint32_t p = 0; p < run->producers; p++) {
        fprintf(f, "p%u_consumed=%lu\n", p,
                (unsigned long)run->sh->cons[run->sh->prod[p].topic].per_producer[p]);
    }
    if (run->workload == PB_W3) {
        double worst = 0, sum = 0;
        for (uint32_t b = 0; b < run->bursts && b < PB_MAX_BURSTS; b++) {
            int64_t done = atomic_load(&run->sh->cons[0].burst_last_ns[b]);
            double t = done > 0 ? secs(done - (start + (int64_t)b * run->burst_every_ns)) : -1;
            fprintf(f, "burst%u_s=%.2f\n", b, t);
            worst = t > worst ? t : worst;
            sum += t;
        }
        fprintf(f, "burst_max_s=%.2f\nburst_mean_s=%.2f\n", worst, sum / run->bursts);
    }
}

static void
write_summary(const driver *d)
{
    const pb_run *run = d->run;
    char path[4096];
    snprintf(path, sizeof(path), "%s/summary.txt", run->out_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return;
    }
    fprintf(f, "system=%s\nlabel=%s\nworkload=%d\nbounded=%d\nquick=%d\nproducers=%u\n",
            run->system, run->label, (int)run->workload, run->bounded, run->quick, run->producers);
    int64_t start = 0, wend = 0;
    write_producers(f, d, &start, &wend);
    write_consumers(f, d, start, wend);
    long p_hwm = 0, c_hwm = 0;
    for (uint32_t i = 0; i < d->children; i++) {
        long *t = i < run->consumers ? &c_hwm : &p_hwm;
        *t = d->hwm_kb[i] > *t ? d->hwm_kb[i] : *t;
    }
    fprintf(f, "rss_b_mb=%.1f\nrss_p_mb=%.1f\nrss_c_mb=%.1f\ndisk_mb=%.1f\nkilled=%d\n",
            run->broker_pid > 0 ? (double)d->broker_hwm_kb / 1024.0 : -1.0, (double)p_hwm / 1024.0,
            (double)c_hwm / 1024.0, d->disk_mb, d->killed);
    fclose(f);
}

static double
rate_at(const driver *d, uint32_t slot, const uint64_t *now, const uint64_t *then)
{
    uint32_t back = slot < RATE_WINDOW ? slot : RATE_WINDOW;
    (void)d;
    return back == 0 ? 0 : (double)(*now - *then) / ((double)back * secs(PB_SLOT_NS));
}

static void
write_series(const driver *d)
{
    const pb_run *run = d->run;
    char path[4096];
    snprintf(path, sizeof(path), "%s/series.csv", run->out_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return;
    }
    fprintf(f, "t,rss_mb,offered,accepted,rejected,consumed,backlog,p99_ms,"
               "acc_p0,acc_p1,acc_p2,cons_c0,cons_c1,p99_c1\n");
    for (uint32_t s = 0; s < d->slots; s++) {
        uint32_t b = s < RATE_WINDOW ? 0 : s - RATE_WINDOW;
        const sample *x = &d->s[s];
        const sample *y = &d->s[b];
        uint64_t sent[2] = {0, 0}, acked[2] = {0, 0}, rej[2] = {0, 0};
        for (uint32_t p = 0; p < run->producers; p++) {
            if (run->sh->prod[p].topic == 0) {
                sent[0] += x->sent[p], sent[1] += y->sent[p];
                acked[0] += x->acked[p], acked[1] += y->acked[p];
                rej[0] += x->rejected[p], rej[1] += y->rejected[p];
            }
        }
        fprintf(f, "%.1f,%.1f,%.0f,%.0f,%.0f,%.0f,%ld,%.1f", secs((int64_t)s * PB_SLOT_NS),
                (double)x->rss_kb / 1024.0, rate_at(d, s, &sent[0], &sent[1]),
                rate_at(d, s, &acked[0], &acked[1]), rate_at(d, s, &rej[0], &rej[1]),
                rate_at(d, s, &x->consumed[0], &y->consumed[0]),
                (long)acked[0] - (long)x->consumed[0], run->sh->cons[0].slot_p99_us[s] / 1e3);
        for (uint32_t p = 0; p < PB_MAX_PRODUCERS; p++) {
            fprintf(f, ",%.0f", rate_at(d, s, &x->acked[p], &y->acked[p]));
        }
        for (uint32_t c = 0; c < PB_MAX_CONSUMERS; c++) {
            fprintf(f, ",%.0f", rate_at(d, s, &x->consumed[c], &y->consumed[c]));
        }
        fprintf(f, ",%.1f\n", run->sh->cons[1].slot_p99_us[s] / 1e3);
    }
    fclose(f);
}

static void
write_results(const driver *d)
{
    write_summary(d);
    write_series(d);
}

int
pb_main(const pb_system *sys, int argc, char **argv)
{
    size_t bits = PB_MAX_SEQ / 8;
    size_t size = sizeof(pb_shared) + 2 * PB_MAX_PRODUCERS * bits;
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pb_run run = {.system = sys->name, .label = sys->name, .addr = "127.0.0.1", .sh = map};
    for (uint32_t p = 0; p < PB_MAX_PRODUCERS; p++) {
        run.acked_bits[p] = (uint64_t *)((char *)map + sizeof(pb_shared) + 2 * p * bits);
        run.consumed_bits[p] = (uint64_t *)((char *)map + sizeof(pb_shared) + (2 * p + 1) * bits);
    }
    if (parse_args(&run, argc, argv) != 0) {
        usage(argv[0]);
        return 2;
    }
    if (sys->setup != NULL && run_setup(sys, &run) != 0) {
        fprintf(stderr, "%s: setup failed\n", sys->name);
        return 1;
    }
    static sample samples[PB_MAX_SLOTS];
    driver d = {.run = &run, .s = samples, .disk_mb = -1};
    run.sh->t0_ns = pb_now_ns();
    int rc = start_children(sys, &d);
    sample_loop(&d);
    if (!d.disk_done) {
        d.disk_mb = disk_mb(run.data_dir);
    }
    write_results(&d);
    return rc == 0 && !d.killed ? 0 : 1;
}
