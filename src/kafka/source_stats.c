// The Kafka source's metrics and its sizing thread. The thread samples, once a second, the
// topic's input rate (growth of every partition's high watermark, all partitions, not only the
// assigned ones) and this instance's true rate (records per second of non-idle time), and turns
// them into the DS2 recommendation: how many pipeline processes the group needs.
#include "kafka/source_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sluice/error.h>

#include "core/util.h"

// The topic's partition count is re-read this often (partitions can be added).
#define METADATA_REFRESH_MS 30000
// Rates are measured over this many samples (one per SL_KAFKA_RATE_INTERVAL_MS): long enough to
// smooth the burst that follows a resume or a join, short enough to follow a change.
#define RATE_WINDOW_SAMPLES 5u
// The useful-time share is floored at this, so a nearly idle instance does not produce a huge
// true rate from a handful of records.
#define USEFUL_SHARE_MIN 0.05

static void lag_refresh(sl__kafka_source *s);

typedef struct rate_point {
    int64_t t_ns;     // 0: empty slot
    int64_t high_sum; // -1: unknown
    uint64_t records;
    uint64_t idle_ns;
} rate_point;

typedef struct rate_state {
    rate_point points[RATE_WINDOW_SAMPLES]; // ring; rates span the oldest to the newest
    uint32_t next;
    int partitions;
    int64_t metadata_ns;
} rate_state;

static int
topic_partitions(sl__kafka_source *s)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(s->rk, s->cfg.topic, NULL);
    if (t == NULL) {
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(s->rk, 0, t, &md, SL_KAFKA_QUERY_TIMEOUT_MS) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            n = md->topics[0].partition_cnt;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return n;
}

// Sum of the high watermarks of every partition of the topic; -1 if any query failed.
static int64_t
high_sum(sl__kafka_source *s, int partitions)
{
    int64_t sum = 0;
    for (int p = 0; p < partitions && p < (int)SL_KAFKA_PARTITIONS_MAX; p++) {
        int64_t lo = 0;
        int64_t hi = 0;
        if (rd_kafka_query_watermark_offsets(s->rk, s->cfg.topic, p, &lo, &hi,
                                             SL_KAFKA_QUERY_TIMEOUT_MS) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            return -1;
        }
        sum += hi;
    }
    return sum;
}

static void
rate_publish(sl__kafka_source *s, const rate_point *old, const rate_point *now)
{
    double dt = (double)(now->t_ns - old->t_ns) / 1e9;
    if (old->t_ns == 0 || dt <= 0) {
        return;
    }
    double done = (double)(now->records - old->records);
    double useful = dt - (double)(now->idle_ns - old->idle_ns) / 1e9;
    useful = useful < dt * USEFUL_SHARE_MIN ? dt * USEFUL_SHARE_MIN : useful;
    double true_per_s = done / useful;
    sl_gauge_set(&s->m.emit_per_s_milli, (int64_t)(done / dt * 1000));
    if (done > 0) {
        sl_gauge_set(&s->m.true_per_s_milli, (int64_t)(true_per_s * 1000));
    }
    double input_per_s = -1;
    if (old->high_sum >= 0 && now->high_sum >= old->high_sum) {
        input_per_s = (double)(now->high_sum - old->high_sum) / dt;
        sl_gauge_set(&s->m.input_per_s_milli, (int64_t)(input_per_s * 1000));
    }
    // One process runs instance_count source instances (each a group member) like this one.
    uint32_t need = 0;
    if (done > 0 && input_per_s >= 0) {
        need = sl_kafka_processes_needed(input_per_s, true_per_s * s->instance_count, 1.0);
    }
    if (need > 0) {
        sl_gauge_set(&s->m.processes_needed, need);
    }
}

static void
rate_sample(sl__kafka_source *s, rate_state *r)
{
    int64_t now = sl_now_ns();
    if (r->partitions <= 0 || now - r->metadata_ns > (int64_t)METADATA_REFRESH_MS * 1000000) {
        r->partitions = topic_partitions(s);
        r->metadata_ns = now;
    }
    rate_point *p = &r->points[r->next];
    p->high_sum = r->partitions > 0 ? high_sum(s, r->partitions) : -1;
    p->records = sl_counter_get(&s->m.records);
    p->idle_ns = atomic_load(&s->m.idle_ns);
    p->t_ns = sl_now_ns();
    r->next = (r->next + 1) % RATE_WINDOW_SAMPLES;
    // The slot after the newest is the oldest (or still empty while the window fills).
    const rate_point *old = &r->points[r->next];
    if (old->t_ns == 0) {
        old = &r->points[0];
    }
    rate_publish(s, old, p);
}

static void *
rate_main(void *arg)
{
    sl__kafka_source *s = arg;
    rate_state r;
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&s->rate_mutex);
    // Runs until rate_stop; each round waits SL_KAFKA_RATE_INTERVAL_MS.
    while (!s->rate_stop) {
        pthread_mutex_unlock(&s->rate_mutex);
        rate_sample(s, &r);
        lag_refresh(s);
        pthread_mutex_lock(&s->rate_mutex);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += SL_KAFKA_RATE_INTERVAL_MS / 1000;
        until.tv_nsec += (long)(SL_KAFKA_RATE_INTERVAL_MS % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (!s->rate_stop) {
            (void)pthread_cond_timedwait(&s->rate_cond, &s->rate_mutex, &until);
        }
    }
    pthread_mutex_unlock(&s->rate_mutex);
    return NULL;
}

int
sl__kafka_rate_start(sl__kafka_source *s)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_destroy(&s->rate_cond);
    pthread_cond_init(&s->rate_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&s->rate_thread, NULL, rate_main, s) != 0) {
        return SL_ENOMEM;
    }
    s->rate_started = true;
    return SL_OK;
}

void
sl__kafka_rate_stop(sl__kafka_source *s)
{
    if (!s->rate_started) {
        return;
    }
    pthread_mutex_lock(&s->rate_mutex);
    s->rate_stop = true;
    pthread_cond_signal(&s->rate_cond);
    pthread_mutex_unlock(&s->rate_mutex);
    pthread_join(s->rate_thread, NULL);
    s->rate_started = false;
}

static void
scalars_add(sl__kafka_source *s)
{
    sl__kafka_source_metrics *m = &s->m;
    const sl__kafka_metric defs[SL__KAFKA_SOURCE_SCALARS] = {
        {"sluice_kafka_source_buffered_records", "Records in the source's local buffer", NULL,
         &m->buffered_records, 0},
        {"sluice_kafka_source_buffered_bytes", "Bytes in the source's local buffer", NULL,
         &m->buffered_bytes, 0},
        {"sluice_kafka_source_buffered_records_max", "Most records ever buffered", NULL,
         &m->buffered_records_max, 0},
        {"sluice_kafka_source_buffer_capacity_records", "Local buffer bound", NULL,
         &m->buffer_capacity, 0},
        {"sluice_kafka_source_low_watermark_records", "Resume at or below (effective)", NULL,
         &m->low_watermark, 0},
        {"sluice_kafka_source_paused_partitions", "Partitions paused by backpressure", NULL,
         &m->paused_partitions, 0},
        {"sluice_kafka_source_assigned_partitions", "Partitions assigned", NULL,
         &m->assigned_partitions, 0},
        {"sluice_kafka_topic_input_per_second", "Records/s produced to the topic", NULL,
         &m->input_per_s_milli, 0.001},
        {"sluice_kafka_source_true_per_second", "Records per non-idle second", NULL,
         &m->true_per_s_milli, 0.001},
        {"sluice_kafka_source_emit_per_second", "Records/s emitted", NULL, &m->emit_per_s_milli,
         0.001},
        {"sluice_kafka_processes_needed", "DS2: pipeline processes the group needs", NULL,
         &m->processes_needed, 0},
        {"sluice_kafka_source_pauses_total", "Pauses (buffer above high)", &m->pauses, NULL, 0},
        {"sluice_kafka_source_resumes_total", "Resumes (buffer at low)", &m->resumes, NULL, 0},
        {"sluice_kafka_source_pauses_reapplied_total", "Partitions paused as they were assigned",
         &m->pauses_reapplied, NULL, 0},
        {"sluice_kafka_source_assigns_total", "Assignments received", &m->assigns, NULL, 0},
        {"sluice_kafka_source_revokes_total", "Revocations received", &m->revokes, NULL, 0},
        {"sluice_kafka_source_lost_total", "Assignments lost", &m->lost, NULL, 0},
        {"sluice_kafka_source_commits_total", "Offset commits", &m->commits, NULL, 0},
        {"sluice_kafka_source_commit_failures_total", "Failed commits", &m->commit_failures, NULL,
         0},
        {"sluice_kafka_source_late_commits_ignored_total", "Commits for lanes not owned",
         &m->late_commits_ignored, NULL, 0},
        {"sluice_kafka_source_records_total", "Records emitted", &m->records, NULL, 0},
        {"sluice_kafka_source_refetches_total", "Records handed back at full buffer", &m->refetches,
         NULL, 0},
        {"sluice_kafka_source_dropped_revoked_total", "Buffered records of revoked partitions",
         &m->dropped_revoked, NULL, 0},
        {"sluice_kafka_source_errors_total", "Consumer errors", &m->errors, NULL, 0},
    };
    sl__kafka_metrics_add(s->scalars_registry, s->stage, s->instance, defs, SL_ARRAY_LEN(defs),
                          s->series);
}

static void
lag_series_sync(sl__kafka_source *s, uint64_t family)
{
    for (uint32_t p = 0; p < s->lanes_seen; p++) {
        sl__kafka_lane *lane = &s->lanes[p];
        int64_t lo = 0;
        int64_t hi = RD_KAFKA_OFFSET_INVALID;
        if (lane->assigned) {
            (void)rd_kafka_get_watermark_offsets(s->rk, s->cfg.topic, (int32_t)p, &lo, &hi);
            int64_t base = lane->committed >= 0 ? lane->committed : lane->first_seen;
            if (hi >= 0 && base >= 0) {
                sl_gauge_set(&lane->lag, hi > base ? hi - base : 0);
            }
        }
        if (lane->assigned && lane->lag_series == 0 && family != 0 && s->registry != NULL) {
            char part[16];
            snprintf(part, sizeof(part), "%" PRIu32, p);
            const char *values[] = {s->stage, s->cfg.topic, part};
            sl_metric_source src = {.gauge = &lane->lag};
            if (sl_metrics_series_add(s->registry, family, values, &src, &lane->lag_series) !=
                SL_OK) {
                lane->lag_series = 0; // a full registry or a twin instance: skip the series
            }
        } else if (!lane->assigned && lane->lag_series != 0) {
            sl__kafka_metrics_remove(s->registry, &lane->lag_series, 1);
        }
    }
}

// Updates the per-partition lag gauges and adds or removes their series as partitions come and
// go. Called by the sizing thread every second (so lag stays live even if stats is called only
// once) and by stats. Lock order: the source's mutex, then the registry's.
static void
lag_refresh(sl__kafka_source *s)
{
    static const char *const labels[] = {"stage", "topic", "partition"};
    sl_metric_family_desc desc = {
        .name = "sluice_kafka_consumer_lag_records",
        .help = "High watermark minus committed offset, per assigned partition",
        .type = SL_METRIC_GAUGE,
        .label_names = labels,
        .label_count = 3,
    };
    pthread_mutex_lock(&s->mutex);
    uint64_t family = 0;
    if (s->registry != NULL && sl__kafka_family(s->registry, &desc, &family) != SL_OK) {
        family = 0;
    }
    lag_series_sync(s, family);
    pthread_mutex_unlock(&s->mutex);
}

void
sl__kafka_source_stats(void *state, sl_metrics_registry *registry, const char *stage_name)
{
    sl__kafka_source *s = state;
    if (registry == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mutex);
    bool first = s->registry == NULL;
    bool other = s->registry != NULL && s->registry != registry;
    if (first) {
        sl__strlcpy(s->stage, stage_name != NULL ? stage_name : "kafka", sizeof(s->stage));
    }
    pthread_mutex_unlock(&s->mutex);
    if (other) {
        return; // one registry per source instance
    }
    if (first) {
        s->scalars_registry = registry;
        scalars_add(s);
        pthread_mutex_lock(&s->mutex);
        s->registry = registry; // from now on the sizing thread keeps the lag series in sync
        pthread_mutex_unlock(&s->mutex);
    }
    lag_refresh(s);
}

void
sl__kafka_source_stats_fini(sl__kafka_source *s)
{
    // The sizing thread is stopped: nothing else touches the series.
    if (s->scalars_registry != NULL) {
        sl__kafka_metrics_remove(s->scalars_registry, s->series, SL__KAFKA_SOURCE_SCALARS);
    }
    pthread_mutex_lock(&s->mutex);
    for (uint32_t p = 0; p < s->lanes_seen && s->registry != NULL; p++) {
        sl__kafka_metrics_remove(s->registry, &s->lanes[p].lag_series, 1);
    }
    pthread_mutex_unlock(&s->mutex);
}
