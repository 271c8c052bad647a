// The generator source ("gen:"): synthetic records at a configured rate, optionally in bursts,
// for demos, tests and benchmarks. Each record's key is "k<seq mod keys>" and its value starts
// with the little-endian sequence number and send time (sl__pipe_gen_decode); lane = instance,
// token = sequence, so commits are easy to check. Options: rate, burst, burst_every_ms, count,
// keys, value_size (docs/pipelines.md).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/ratelimit.h>

#include "core/util.h"
#include "pipeline/gen.h"
#include "pipeline/pipeline_internal.h"

// Largest value a generated record may carry (bytes).
#define GEN_VALUE_MAX (1u << 20)
// Largest key space (keys are "k0".."k<keys-1>").
#define GEN_KEYS_MAX 1000000u
#define GEN_KEY_MAX  16u

typedef struct gen_state {
    uint64_t rate_per_s; // this instance's share; 0: unlimited
    uint64_t burst;      // records per burst (or bucket size)
    uint64_t burst_every_ns;
    uint64_t count; // this instance's share of count; 0: forever
    uint64_t keys;
    uint32_t value_size;
    uint64_t next_seq;
    sl_token_bucket bucket;
    bool limited;
    int64_t period_start_ns; // bursts: start of the current period
    uint64_t period_sent;
    unsigned char *value; // value_size bytes, sequence and time rewritten per record
} gen_state;

static int
opt_u64(const sl_pipe_option *o, uint64_t max, uint64_t *out, char *err, size_t err_size)
{
    char *end = NULL;
    unsigned long long v = strtoull(o->value, &end, 10);
    if (o->value[0] == '\0' || o->value[0] == '-' || end == NULL || *end != '\0' || v > max) {
        snprintf(err, err_size, "gen: option %s: '%s' is not an integer in 0..%llu", o->key,
                 o->value, (unsigned long long)max);
        return SL_EINVAL;
    }
    *out = v;
    return SL_OK;
}

static int
gen_options(const sl_pipe_endpoint *ep, uint64_t v[6], char *err, size_t err_size)
{
    static const char *const names[6] = {"rate",  "burst", "burst_every_ms",
                                         "count", "keys",  "value_size"};
    static const uint64_t max[6] = {SL_TOKEN_BUCKET_RATE_MAX,
                                    SL_TOKEN_BUCKET_BURST_MAX,
                                    3600000,
                                    UINT64_MAX / 2,
                                    GEN_KEYS_MAX,
                                    GEN_VALUE_MAX};
    for (size_t i = 0; i < ep->option_count; i++) {
        const sl_pipe_option *o = &ep->options[i];
        size_t k = 0;
        while (k < 6 && strcmp(o->key, names[k]) != 0) {
            k++;
        }
        if (k == 6) {
            snprintf(err, err_size, "gen: unknown option %s", o->key);
            return SL_EINVAL;
        }
        int rc = opt_u64(o, max[k], &v[k], err, err_size);
        if (rc != SL_OK) {
            return rc;
        }
    }
    if (v[4] == 0) {
        snprintf(err, err_size, "gen: option keys must be at least 1");
        return SL_EINVAL;
    }
    return SL_OK;
}

static uint64_t
share(uint64_t total, uint32_t instance, uint32_t n)
{
    return total / n + (instance < total % n ? 1 : 0);
}

static int
gen_create(const sl_pipe_endpoint *ep, uint32_t instance, uint32_t n, void **state_out, char *err,
           size_t err_size)
{
    // rate, burst, burst_every_ms, count, keys, value_size
    uint64_t v[6] = {0, 0, 0, 0, 16, SL__GEN_VALUE_MIN};
    int rc = gen_options(ep, v, err, err_size);
    if (rc != SL_OK) {
        return rc;
    }
    gen_state *g = sl_calloc(1, sizeof(*g));
    uint32_t value_size = (uint32_t)SL_MAX(v[5], (uint64_t)SL__GEN_VALUE_MIN);
    unsigned char *value = sl_calloc(1, value_size);
    if (g == NULL || value == NULL) {
        sl_free(g, sizeof(*g));
        sl_free(value, value_size);
        return SL_ENOMEM;
    }
    g->value = value;
    g->value_size = value_size;
    g->rate_per_s = v[0] == 0 ? 0 : SL_MAX(share(v[0], instance, n), 1);
    g->burst = v[1];
    g->burst_every_ns = v[2] * 1000000;
    g->count = v[3] == 0 ? 0 : share(v[3], instance, n);
    g->keys = v[4];
    if (v[3] != 0 && g->count == 0) {
        g->count = UINT64_MAX; // marker: this instance has nothing to send
    }
    if (g->rate_per_s > 0 && g->burst_every_ns == 0) {
        uint64_t bucket = g->burst > 0 ? g->burst : SL_MAX(g->rate_per_s / 100, 1);
        rc = sl_token_bucket_init(&g->bucket, g->rate_per_s, bucket);
        SL_ASSERT(rc == SL_OK);
        g->limited = true;
    }
    if (g->burst_every_ns > 0 && g->burst == 0) {
        g->burst = 1;
    }
    *state_out = g;
    return SL_OK;
}

static int64_t
realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// How many records may go now (at most want); *wait_ns_out: until more may, when 0.
static uint64_t
gen_allowed(gen_state *g, uint64_t want, int64_t now, int64_t *wait_ns_out)
{
    *wait_ns_out = 0;
    if (g->burst_every_ns > 0) {
        if (g->period_start_ns == 0 || now - g->period_start_ns >= (int64_t)g->burst_every_ns) {
            g->period_start_ns = now;
            g->period_sent = 0;
        }
        uint64_t left = g->burst - g->period_sent;
        if (left == 0) {
            *wait_ns_out = g->period_start_ns + (int64_t)g->burst_every_ns - now;
        }
        return SL_MIN(left, want);
    }
    if (!g->limited) {
        return want;
    }
    uint64_t avail = sl_token_bucket_available(&g->bucket, now);
    uint64_t n = SL_MIN(avail, want);
    if (n == 0) {
        int rc = sl_token_bucket_acquire(&g->bucket, 1, now, wait_ns_out);
        SL_ASSERT(rc == SL_EAGAIN || rc == SL_OK);
        if (rc == SL_OK) {
            return 1; // a token appeared between the two calls: already taken
        }
        return 0;
    }
    int rc = sl_token_bucket_acquire(&g->bucket, n, now, NULL);
    SL_ASSERT(rc == SL_OK);
    return n;
}

static int
gen_emit_one(gen_state *g, sl_pipe_ctx *ctx, uint32_t instance)
{
    char key[GEN_KEY_MAX];
    uint64_t seq = g->next_seq;
    int key_len = snprintf(key, sizeof(key), "k%llu", (unsigned long long)(seq % g->keys));
    int64_t sent = sl_now_ns();
    memcpy(g->value, &seq, sizeof(seq));
    memcpy(g->value + sizeof(seq), &sent, sizeof(sent));
    sl_pipe_record rec = {
        .key = key,
        .key_size = (uint32_t)key_len,
        .value = g->value,
        .value_size = g->value_size,
        .timestamp_ns = realtime_ns(),
    };
    sl_pipe_origin origin = {.lane = instance, .token = seq};
    int rc = sl_pipe_source_emit(ctx, &rec, origin);
    if (rc == SL_OK) {
        g->next_seq++;
        g->period_sent++;
    }
    return rc;
}

static int
gen_poll(void *state, sl_pipe_ctx *ctx, uint32_t max_records, int64_t deadline_ns)
{
    gen_state *g = state;
    if (g->count == UINT64_MAX || (g->count > 0 && g->next_seq >= g->count)) {
        return SL_ECLOSED;
    }
    if (max_records == 0) {
        return 0;
    }
    uint64_t want = max_records;
    if (g->count > 0) {
        want = SL_MIN(want, g->count - g->next_seq);
    }
    int64_t now = sl_now_ns();
    int64_t wait_ns = 0;
    uint64_t n = gen_allowed(g, want, now, &wait_ns);
    if (n == 0) {
        int64_t until = SL_MIN(deadline_ns, now + wait_ns);
        if (until > now) {
            sl__pipe_sleep_ns(until - now);
        }
        return SL_EAGAIN;
    }
    uint32_t instance = sl__pipe_ctx_instance(ctx);
    for (uint64_t i = 0; i < n; i++) {
        int rc = gen_emit_one(g, ctx, instance);
        if (rc != SL_OK) {
            return rc;
        }
    }
    return (int)n;
}

static void
gen_destroy(void *state)
{
    gen_state *g = state;
    sl_free(g->value, g->value_size);
    sl_free(g, sizeof(*g));
}

double
sl__pipe_gen_offered_rate(void *state)
{
    const gen_state *g = state;
    if (g->burst_every_ns > 0) {
        return (double)g->burst * 1e9 / (double)g->burst_every_ns;
    }
    return (double)g->rate_per_s;
}

void
sl__gen_decode(const sl_pipe_record *rec, uint64_t *seq_out, int64_t *sent_ns_out)
{
    uint64_t seq = 0;
    int64_t sent = 0;
    if (rec->value_size >= SL__GEN_VALUE_MIN) {
        memcpy(&seq, rec->value, sizeof(seq));
        memcpy(&sent, (const unsigned char *)rec->value + sizeof(seq), sizeof(sent));
    }
    *seq_out = seq;
    if (sent_ns_out != NULL) {
        *sent_ns_out = sent;
    }
}

const sl_pipe_source_ops sl__pipe_gen_source_ops = {
    .scheme = "gen",
    .create = gen_create,
    .poll = gen_poll,
    .commit = NULL,
    .stats = NULL,
    .destroy = gen_destroy,
};
