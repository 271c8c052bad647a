// The broker's operator state (ops.h): its lifecycle and tick, the per-topic histograms of held
// ACKs and end-to-end latency that flow.c feeds through two hooks, and the predictions (time
// until a budget is full, time to drain, consumers needed) computed from the smoothed rates the
// tick already keeps. Loop thread only.
#include "broker/ops.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "broker/broker.h"
#include "core/util.h"

int
sl_ops_open(sl_broker *b)
{
    b->ops = sl_calloc(1, sizeof(*b->ops));
    return b->ops != NULL ? SL_OK : SL_ENOMEM;
}

void
sl_ops_close(sl_broker *b)
{
    sl_ops *o = b->ops;
    if (o == NULL) {
        return;
    }
    for (uint32_t i = 0; i < SL_OPS_TOPIC_HISTOGRAMS_MAX; i++) {
        sl_histogram_free(o->hist[i].ack_delay);
        sl_histogram_free(o->hist[i].latency);
    }
    sl_free(o, sizeof(*o));
    b->ops = NULL;
}

// Frees the histograms of topics that are gone, so their slots serve new topics.
static void
hist_sweep(sl_broker *b)
{
    sl_ops *o = b->ops;
    for (uint32_t i = 0; i < SL_OPS_TOPIC_HISTOGRAMS_MAX; i++) {
        sl_ops_topic_hist *h = &o->hist[i];
        if (h->name[0] == '\0' || sl_topic_find(b, h->name, strlen(h->name)) != NULL) {
            continue;
        }
        sl_histogram_free(h->ack_delay);
        sl_histogram_free(h->latency);
        memset(h, 0, sizeof(*h));
    }
}

void
sl_ops_tick(sl_broker *b, int64_t now_ns)
{
    sl_ops *o = b->ops;
    if (o == NULL) {
        return;
    }
    if (now_ns - o->last_check_ns < (int64_t)SL_INVARIANTS_PERIOD_MS * 1000000) {
        return;
    }
    o->last_check_ns = now_ns;
    sl_drops_scan(b);
    sl_invariants_check(b);
    hist_sweep(b);
}

// The histogram slot of a topic; with create, takes a free slot (NULL when none is left).
static sl_ops_topic_hist *
hist_slot(sl_broker *b, const sl_topic *t, bool create)
{
    sl_ops *o = b->ops;
    if (o == NULL) {
        return NULL;
    }
    sl_ops_topic_hist *free_slot = NULL;
    for (uint32_t i = 0; i < SL_OPS_TOPIC_HISTOGRAMS_MAX; i++) {
        sl_ops_topic_hist *h = &o->hist[i];
        if (strcmp(h->name, t->name) == 0) {
            return h;
        }
        if (free_slot == NULL && h->name[0] == '\0') {
            free_slot = h;
        }
    }
    if (!create || free_slot == NULL) {
        return NULL;
    }
    if (sl_histogram_new(&free_slot->ack_delay) != SL_OK) {
        return NULL;
    }
    if (sl_histogram_new(&free_slot->latency) != SL_OK) {
        sl_histogram_free(free_slot->ack_delay);
        free_slot->ack_delay = NULL;
        return NULL;
    }
    snprintf(free_slot->name, sizeof(free_slot->name), "%s", t->name);
    return free_slot;
}

sl_histogram *
sl_ops_ack_delay_histogram(sl_broker *b, const sl_topic *t)
{
    sl_ops_topic_hist *h = hist_slot(b, t, false);
    return h != NULL ? h->ack_delay : NULL;
}

sl_histogram *
sl_ops_latency_histogram(sl_broker *b, const sl_topic *t)
{
    sl_ops_topic_hist *h = hist_slot(b, t, false);
    return h != NULL ? h->latency : NULL;
}

void
sl_ops_ack_delayed(sl_stream *s, int64_t delay_ns)
{
    sl_ops_topic_hist *h = hist_slot(s->topic->broker, s->topic, true);
    if (h != NULL) {
        sl_histogram_record(h->ack_delay, (uint64_t)delay_ns);
    }
}

static int64_t
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
sl_ops_delivered(sl_stream *s, const uint8_t *batches, size_t size, uint64_t first_offset,
                 uint64_t end_offset)
{
    sl_ops_topic_hist *h = hist_slot(s->topic->broker, s->topic, true);
    if (h == NULL) {
        return;
    }
    int64_t now_us = wall_us();
    size_t used = 0;
    // Bounded by size: every pass consumes one batch. The latency of a batch's records is taken
    // at the middle of its timestamps (producer wall clock; a skewed clock reads as 0).
    while (used < size) {
        sl_batch_header hd;
        if (sl_batch_header_decode(batches + used, size - used, &hd) != SL_OK) {
            return;
        }
        used += hd.length;
        uint64_t from = SL_MAX(first_offset, hd.base_offset);
        uint64_t to = SL_MIN(end_offset, hd.base_offset + hd.record_count);
        if (to <= from || hd.first_timestamp_us <= 0) {
            continue; // nothing of the range, or a producer that does not stamp its records
        }
        int64_t stamp_us = hd.first_timestamp_us / 2 + hd.last_timestamp_us / 2;
        int64_t age_us = SL_MAX(now_us - stamp_us, (int64_t)0);
        sl_histogram_record_n(h->latency, (uint64_t)age_us * 1000, to - from);
    }
}

// ---- predictions --------------------------------------------------------------------------------

// Seconds until used reaches capacity at net_rate (units per second): 0 when already there,
// +Inf when it does not grow or there is no capacity.
static double
seconds_until(double used, double capacity, double net_rate)
{
    if (capacity <= 0) {
        return INFINITY;
    }
    if (used >= capacity) {
        return 0.0;
    }
    return net_rate > 1e-9 ? (capacity - used) / net_rate : INFINITY;
}

void
sl_ops_predict_topic(sl_broker *b, sl_topic *t, sl_ops_predict *out)
{
    (void)b;
    memset(out, 0, sizeof(*out));
    double in_bytes = 0;
    double out_bytes = 0;
    double backlog_bytes = 0;
    double stored_bytes = 0;
    double stored_records = 0;
    for (uint32_t i = 0; i < t->config.partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        out->in_records_per_s += p->in_records.per_s;
        in_bytes += p->in_bytes.per_s;
        out_bytes += p->out_bytes.per_s;
        backlog_bytes += (double)sl_partition_backlog_bytes(p);
        out->backlog_records +=
            (double)(p->end_offset > p->low_position ? p->end_offset - p->low_position : 0);
        stored_bytes += (double)p->stored_bytes_total;
        stored_records += (double)p->stored_records_total;
        for (sl_stream *s = p->consumers; s != NULL; s = s->part_next) {
            out->consumers++;
        }
    }
    double record_bytes = stored_records > 0 ? SL_MAX(1.0, stored_bytes / stored_records) : 128.0;
    out->out_records_per_s = out_bytes / record_bytes;
    double net_records = out->out_records_per_s - out->in_records_per_s;
    out->drain_seconds = out->backlog_records <= 0 ? 0.0
                         : net_records > 1e-9      ? out->backlog_records / net_records
                                                   : INFINITY;
    sl_budget_stats st;
    sl_budget_stats_get(t->memory, &st);
    // Memory holds only granted credit and appends in flight: it does not grow with the input
    // rate (credit shrinks as it fills), so it is either full now (0) or not filling (+Inf).
    out->memory_full_seconds = seconds_until((double)st.used_bytes, (double)st.capacity_bytes, 0.0);
    out->backlog_full_seconds =
        seconds_until(backlog_bytes, (double)t->config.max_backlog_bytes, in_bytes - out_bytes);
    sl_budget_stats_get(t->disk, &st);
    out->disk_full_seconds =
        seconds_until((double)st.used_bytes, (double)st.capacity_bytes, in_bytes);
    if (out->consumers > 0 && out->out_records_per_s > 1e-9) {
        out->per_consumer_records_per_s = out->out_records_per_s / out->consumers;
    }
    if (out->in_records_per_s > 1e-9 && out->per_consumer_records_per_s > 1e-9) {
        out->consumers_recommended =
            (uint32_t)ceil(out->in_records_per_s / out->per_consumer_records_per_s - 1e-9);
    } else {
        out->consumers_recommended = out->consumers;
    }
    if (out->in_records_per_s > 1e-9 && out->consumers_recommended == 0) {
        out->consumers_recommended = 1;
    }
}
