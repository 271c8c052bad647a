// The common core of the overload load clients: workload schedules, the token-bucket consumer
// model, acked/consumed bitmaps, latency histograms (sl_histogram) and the driver that forks
// producer and consumer processes, samples RSS and counters every 100 ms and writes the results
// (driver.c holds the driver; this file the producer and consumer sides).
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000ll

int64_t
pb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

void
pb_sleep_ns(int64_t ns)
{
    if (ns <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = ns / NS_PER_S, .tv_nsec = ns % NS_PER_S};
    // Bounded: EINTR restarts with the remainder, which only shrinks.
    while (nanosleep(&ts, &ts) != 0) {
    }
}

const char *
pb_opt(const pb_run *run, const char *key, const char *def)
{
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < run->opt_count; i++) {
        if (strncmp(run->opt[i], key, klen) == 0 && run->opt[i][klen] == '=') {
            return run->opt[i] + klen + 1;
        }
    }
    return def;
}

uint64_t
pb_opt_u64(const pb_run *run, const char *key, uint64_t def)
{
    const char *v = pb_opt(run, key, NULL);
    return v != NULL ? strtoull(v, NULL, 10) : def;
}

static void
atomic_max_i64(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    // Bounded in practice: each retry means another thread raised the value.
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

static bool
bit_test_set(uint64_t *bits, uint64_t seq)
{
    _Atomic uint64_t *w = (_Atomic uint64_t *)&bits[seq / 64];
    uint64_t m = 1ull << (seq % 64);
    return (atomic_fetch_or(w, m) & m) != 0;
}

// ---- producer ------------------------------------------------------------------------------

uint64_t
pb_payload_seq(const void *payload)
{
    uint64_t seq;
    memcpy(&seq, payload, sizeof(seq));
    return seq;
}

static void
payload_fill(uint8_t *buf, uint64_t seq, int64_t stamp, uint32_t p)
{
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &stamp, 8);
    memcpy(buf + 16, &p, 4);
    memset(buf + 20, 'x', PB_PAYLOAD_BYTES - 20);
}

// When message seq of producer p may be sent (W3 bursts and W5 rates), or 0 for "now".
static int64_t
scheduled_ns(const pb_run *run, const pb_prod_state *ps, uint64_t seq, int64_t start)
{
    if (run->workload == PB_W3) {
        return start + (int64_t)(seq / run->burst_size) * run->burst_every_ns;
    }
    if (ps->rate > 0) {
        return start + (int64_t)((double)seq * (double)NS_PER_S / (double)ps->rate);
    }
    return 0;
}

pb_next
pb_prod_next(pb_run *run, uint32_t p, uint8_t *buf, uint64_t *seq, int64_t *wait_ns)
{
    pb_prod_state *ps = &run->sh->prod[p];
    int64_t now = pb_now_ns();
    int64_t start = atomic_load(&ps->start_ns);
    if (start == 0) {
        start = now;
        atomic_store(&ps->start_ns, now);
    }
    uint64_t next = atomic_load(&ps->sent);
    bool over = next >= PB_MAX_SEQ - 1;
    if (run->workload == PB_W1) {
        over = over || next >= run->count;
    } else if (run->workload == PB_W3) {
        over = over || next >= run->burst_size * run->bursts;
    } else {
        over = over || now - start >= run->duration_ns;
    }
    if (over) {
        return PB_NEXT_DONE;
    }
    int64_t at = scheduled_ns(run, ps, next, start);
    if (at > now) {
        *wait_ns = at - now < PB_SEND_SLICE_NS ? at - now : PB_SEND_SLICE_NS;
        return PB_NEXT_WAIT;
    }
    payload_fill(buf, next, now, p);
    *seq = next;
    return PB_NEXT_SEND;
}

void
pb_prod_waited(pb_run *run, uint32_t p, int64_t t_start, int64_t t_end)
{
    pb_prod_state *ps = &run->sh->prod[p];
    int64_t d = t_end - t_start;
    atomic_fetch_add(&ps->in_send_ns, d);
    if (d > PB_STALL_NS) {
        atomic_fetch_add(&ps->stalls, 1);
    }
    atomic_max_i64(&ps->max_send_ns, d);
}

void
pb_prod_sent(pb_run *run, uint32_t p, int64_t t_start, int64_t t_end)
{
    pb_prod_waited(run, p, t_start, t_end);
    atomic_fetch_add(&run->sh->prod[p].sent, 1);
}

void
pb_prod_acked(pb_run *run, uint32_t p, uint64_t seq)
{
    if (seq >= PB_MAX_SEQ) {
        return;
    }
    if (!bit_test_set(run->acked_bits[p], seq)) {
        atomic_fetch_add(&run->sh->prod[p].acked, 1);
    }
}

void
pb_prod_rejected(pb_run *run, uint32_t p, uint64_t seq, const char *reason)
{
    (void)seq;
    pb_prod_state *ps = &run->sh->prod[p];
    if (atomic_fetch_add(&ps->rejected, 1) == 0 && reason != NULL) {
        snprintf(ps->reason, sizeof(ps->reason), "%s", reason);
    }
}

void
pb_prod_note(pb_run *run, uint32_t p, const char *note)
{
    snprintf(run->sh->prod[p].note, sizeof(run->sh->prod[p].note), "%s", note);
}

bool
pb_prod_window_over(const pb_run *run, uint32_t p)
{
    if (run->workload == PB_W1 || run->workload == PB_W3) {
        return false;
    }
    int64_t start = atomic_load(&run->sh->prod[p].start_ns);
    return start > 0 && pb_now_ns() - start >= run->duration_ns;
}

void
pb_prod_window_end(pb_run *run, uint32_t p)
{
    atomic_store(&run->sh->prod[p].window_end_ns, pb_now_ns());
}

void
pb_prod_finished(pb_run *run, uint32_t p)
{
    pb_prod_state *ps = &run->sh->prod[p];
    if (atomic_load(&ps->done)) {
        return;
    }
    if (atomic_load(&ps->window_end_ns) == 0) {
        pb_prod_window_end(run, p);
    }
    atomic_store(&ps->end_ns, pb_now_ns());
    atomic_store(&ps->done, 1);
}

bool
pb_prod_settled(const pb_run *run, uint32_t p)
{
    const pb_prod_state *ps = &run->sh->prod[p];
    return atomic_load(&ps->acked) + atomic_load(&ps->rejected) >= atomic_load(&ps->sent);
}

// ---- consumer ------------------------------------------------------------------------------

struct pb_consumer {
    pb_run *run;
    uint32_t c;
    pb_cons_state *cs;
    sl_histogram *all;
    sl_histogram *slot_hist;
    int64_t slot;
    double tokens; // token bucket (rate > 0)
    int64_t refill_ns;
    int64_t batch_ns;
    uint32_t in_batch;
    int64_t last_recv_ns;
    uint32_t errors_in_row;
};

pb_consumer *
pb_cons_new(pb_run *run, uint32_t c)
{
    pb_consumer *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return NULL;
    }
    k->run = run;
    k->c = c;
    k->cs = &run->sh->cons[c];
    if (sl_histogram_new(&k->all) != 0 || sl_histogram_new(&k->slot_hist) != 0) {
        sl_histogram_free(k->all);
        free(k);
        return NULL;
    }
    k->tokens = PB_BATCH;
    k->refill_ns = pb_now_ns();
    k->last_recv_ns = k->refill_ns;
    k->slot = -1;
    atomic_store(&k->cs->ready, 1);
    return k;
}

static void
slot_flush(pb_consumer *k)
{
    if (k->slot >= 0 && k->slot < (int64_t)PB_MAX_SLOTS && sl_histogram_count(k->slot_hist) > 0) {
        uint64_t p99 = sl_histogram_quantile(k->slot_hist, 0.99);
        k->cs->slot_p99_us[k->slot] = (uint32_t)(p99 / 1000 > UINT32_MAX ? UINT32_MAX : p99 / 1000);
    }
    sl_histogram_reset(k->slot_hist);
}

void
pb_cons_batch_begin(pb_consumer *k)
{
    int64_t now = pb_now_ns();
    k->batch_ns = now;
    k->in_batch = 0;
    k->last_recv_ns = now;
    k->errors_in_row = 0;
    uint64_t rate = k->cs->rate;
    if (rate > 0) {
        k->tokens += (double)(now - k->refill_ns) * (double)rate / (double)NS_PER_S;
        if (k->tokens > PB_BATCH) {
            k->tokens = PB_BATCH;
        }
        k->refill_ns = now;
    }
    int64_t slot = (now - k->run->sh->t0_ns) / PB_SLOT_NS;
    if (slot != k->slot) {
        slot_flush(k);
        k->slot = slot;
    }
}

void
pb_cons_msg(pb_consumer *k, const void *payload, size_t len)
{
    if (len < 20) {
        return;
    }
    const uint8_t *b = payload;
    uint64_t seq;
    int64_t stamp;
    uint32_t p;
    memcpy(&seq, b, 8);
    memcpy(&stamp, b + 8, 8);
    memcpy(&p, b + 16, 4);
    if (p >= PB_MAX_PRODUCERS || seq >= PB_MAX_SEQ) {
        return;
    }
    // Message i of a batch is processed once i + 1 tokens exist (the capacity model).
    int64_t at = k->batch_ns;
    uint64_t rate = k->cs->rate;
    k->in_batch++;
    if (rate > 0 && (double)k->in_batch > k->tokens) {
        at += (int64_t)(((double)k->in_batch - k->tokens) * (double)NS_PER_S / (double)rate);
    }
    if (bit_test_set(k->run->consumed_bits[p], seq)) {
        atomic_fetch_add(&k->cs->dups, 1);
        return;
    }
    atomic_fetch_add(&k->cs->consumed, 1);
    atomic_fetch_add(&k->cs->per_producer[p], 1);
    atomic_max_i64(&k->cs->last_ns, at);
    uint64_t lat = at > stamp ? (uint64_t)(at - stamp) : 0;
    sl_histogram_record(k->all, lat);
    sl_histogram_record(k->slot_hist, lat);
    if (k->run->workload == PB_W3 && p == 0) {
        uint64_t b_idx = seq / k->run->burst_size;
        if (b_idx < PB_MAX_BURSTS) {
            atomic_max_i64(&k->cs->burst_last_ns[b_idx], at);
        }
    }
}

void
pb_cons_batch_end(pb_consumer *k)
{
    uint64_t rate = k->cs->rate;
    if (rate == 0) {
        return;
    }
    k->tokens -= k->in_batch;
    if (k->tokens < 0) {
        // Sleep until the bucket is no longer negative; only then does the caller ack.
        int64_t until = k->batch_ns + (int64_t)(-k->tokens * (double)NS_PER_S / (double)rate);
        pb_sleep_ns(until - pb_now_ns());
    }
}

void
pb_cons_recv_error(pb_consumer *k)
{
    k->errors_in_row++;
}

static bool
producers_done(const pb_run *run, uint32_t c, int64_t *window_end, uint64_t *acked)
{
    *window_end = 0;
    *acked = 0;
    for (uint32_t p = 0; p < run->producers; p++) {
        const pb_prod_state *ps = &run->sh->prod[p];
        if (ps->topic != c) {
            continue;
        }
        if (!atomic_load(&ps->done)) {
            return false;
        }
        int64_t we = atomic_load(&ps->window_end_ns);
        *window_end = we > *window_end ? we : *window_end;
        *acked += atomic_load(&ps->acked);
    }
    return true;
}

bool
pb_cons_should_stop(pb_consumer *k)
{
    if (k->errors_in_row >= PB_RECV_ERRORS_MAX) {
        k->cs->stop = PB_STOP_RECV_ERROR;
        return true;
    }
    int64_t window_end;
    uint64_t acked;
    if (!producers_done(k->run, k->c, &window_end, &acked)) {
        return false;
    }
    int64_t now = pb_now_ns();
    if (atomic_load(&k->cs->consumed) >= acked) {
        k->cs->stop = PB_STOP_COMPLETE;
    } else if (now - window_end > k->run->drain_ns) {
        k->cs->stop = PB_STOP_DRAIN_TIMEOUT;
    } else if (now - k->last_recv_ns > k->run->idle_ns && now - window_end > k->run->idle_ns) {
        k->cs->stop = PB_STOP_IDLE;
    }
    return k->cs->stop != PB_STOP_NONE;
}

void
pb_cons_set_queued(pb_consumer *k, int64_t queued)
{
    k->cs->still_queued = queued;
}

void
pb_cons_free(pb_consumer *k)
{
    if (k == NULL) {
        return;
    }
    slot_flush(k);
    sl_histogram_summary_get(k->all, &k->cs->latency);
    sl_histogram_free(k->all);
    sl_histogram_free(k->slot_hist);
    atomic_store(&k->cs->done, 1);
    free(k);
}
