// Log-linear histograms (include/sluice/histogram.h): the latency record of every stage, channel
// and produce/consume path. Buckets 0..255 hold one value each; above that, each power of two
// 2^e (e >= 8) is cut into 128 equal buckets of width 2^(e-7). The record path touches one
// bucket counter, the sum, and max/min only when they move, all with relaxed atomics.
#include <sluice/histogram.h>

#include <math.h>
#include <stdatomic.h>

#include "core/util.h"

// Values below this are exact (bucket width 1); it is where the first log-linear octave starts.
#define HISTOGRAM_LINEAR_LIMIT (2u * SL_HISTOGRAM_SUB_BUCKETS)
#define HISTOGRAM_SUB_LOG2     7u // log2(SL_HISTOGRAM_SUB_BUCKETS)
#define HISTOGRAM_TOP_INDEX    (SL_HISTOGRAM_BUCKET_COUNT - 1u)
#define HISTOGRAM_RANGE_LIMIT  (UINT64_C(1) << SL_HISTOGRAM_RANGE_LOG2)

_Static_assert(SL_HISTOGRAM_SUB_BUCKETS == (1u << HISTOGRAM_SUB_LOG2), "sub-buckets: 2^7");
_Static_assert(SL_HISTOGRAM_RANGE_LOG2 > 8 && SL_HISTOGRAM_RANGE_LOG2 < 63, "range in 2^9..2^62");

struct sl_histogram {
    _Atomic uint64_t sum; // wraps past 2^64 (584 years of nanoseconds)
    _Atomic uint64_t min; // UINT64_MAX while empty
    _Atomic uint64_t max; // 0 while empty
    _Atomic uint64_t counts[SL_HISTOGRAM_BUCKET_COUNT];
};

uint32_t
sl_histogram_bucket_index(uint64_t value)
{
    if (value < HISTOGRAM_LINEAR_LIMIT) {
        return (uint32_t)value;
    }
    if (value >= HISTOGRAM_RANGE_LIMIT) {
        return HISTOGRAM_TOP_INDEX;
    }
    uint32_t exponent = 63u - (uint32_t)__builtin_clzll(value); // 8 .. RANGE_LOG2 - 1
    uint32_t shift = exponent - HISTOGRAM_SUB_LOG2;
    // value >> shift lies in [128, 256), so each octave maps onto 128 consecutive indexes.
    return shift * SL_HISTOGRAM_SUB_BUCKETS + (uint32_t)(value >> shift);
}

uint64_t
sl_histogram_bucket_low(uint32_t bucket_index)
{
    SL_ASSERT(bucket_index < SL_HISTOGRAM_BUCKET_COUNT);
    if (bucket_index < HISTOGRAM_LINEAR_LIMIT) {
        return bucket_index;
    }
    uint32_t shift = bucket_index / SL_HISTOGRAM_SUB_BUCKETS - 1u;
    uint64_t sub = bucket_index % SL_HISTOGRAM_SUB_BUCKETS + SL_HISTOGRAM_SUB_BUCKETS;
    return sub << shift;
}

uint64_t
sl_histogram_bucket_high(uint32_t bucket_index)
{
    SL_ASSERT(bucket_index < SL_HISTOGRAM_BUCKET_COUNT);
    if (bucket_index < HISTOGRAM_LINEAR_LIMIT) {
        return bucket_index;
    }
    uint32_t shift = bucket_index / SL_HISTOGRAM_SUB_BUCKETS - 1u;
    return sl_histogram_bucket_low(bucket_index) + ((UINT64_C(1) << shift) - 1u);
}

static void
histogram_clear(sl_histogram *h)
{
    atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
    atomic_store_explicit(&h->min, UINT64_MAX, memory_order_relaxed);
    atomic_store_explicit(&h->max, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < SL_HISTOGRAM_BUCKET_COUNT; i++) {
        atomic_store_explicit(&h->counts[i], 0, memory_order_relaxed);
    }
}

int
sl_histogram_new(sl_histogram **histogram_out)
{
    SL_ASSERT(histogram_out != NULL);
    sl_histogram *h = sl_alloc(sizeof(*h));
    if (h == NULL) {
        return SL_ENOMEM;
    }
    histogram_clear(h);
    *histogram_out = h;
    return SL_OK;
}

void
sl_histogram_free(sl_histogram *histogram)
{
    sl_free(histogram, sizeof(*histogram));
}

// Raises *slot to at least value; a plain load first keeps the common case a read of a shared
// line, not a write. The loop ends once the slot is >= value, which a competing writer only helps.
static void
atomic_raise(_Atomic uint64_t *slot, uint64_t value)
{
    uint64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
    while (seen < value && !atomic_compare_exchange_weak_explicit(
                               slot, &seen, value, memory_order_relaxed, memory_order_relaxed)) {
    }
}

static void
atomic_lower(_Atomic uint64_t *slot, uint64_t value)
{
    uint64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
    while (seen > value && !atomic_compare_exchange_weak_explicit(
                               slot, &seen, value, memory_order_relaxed, memory_order_relaxed)) {
    }
}

void
sl_histogram_record_n(sl_histogram *histogram, uint64_t value, uint64_t count)
{
    SL_ASSERT(histogram != NULL);
    if (count == 0) {
        return;
    }
    uint32_t index = sl_histogram_bucket_index(value);
    atomic_fetch_add_explicit(&histogram->counts[index], count, memory_order_relaxed);
    // The sum wraps only past 2^64 ns (584 years of latency); summary_get reports it as is.
    atomic_fetch_add_explicit(&histogram->sum, value * count, memory_order_relaxed);
    atomic_raise(&histogram->max, value);
    atomic_lower(&histogram->min, value);
}

void
sl_histogram_record(sl_histogram *histogram, uint64_t value)
{
    sl_histogram_record_n(histogram, value, 1);
}

void
sl_histogram_merge(sl_histogram *dst, const sl_histogram *src)
{
    SL_ASSERT(dst != NULL);
    SL_ASSERT(src != NULL);
    SL_ASSERT(dst != src);
    uint64_t added = 0;
    for (uint32_t i = 0; i < SL_HISTOGRAM_BUCKET_COUNT; i++) {
        uint64_t n = atomic_load_explicit(&src->counts[i], memory_order_relaxed);
        if (n != 0) {
            atomic_fetch_add_explicit(&dst->counts[i], n, memory_order_relaxed);
            added += n;
        }
    }
    if (added == 0) {
        return;
    }
    atomic_fetch_add_explicit(&dst->sum, atomic_load_explicit(&src->sum, memory_order_relaxed),
                              memory_order_relaxed);
    atomic_raise(&dst->max, atomic_load_explicit(&src->max, memory_order_relaxed));
    atomic_lower(&dst->min, atomic_load_explicit(&src->min, memory_order_relaxed));
}

void
sl_histogram_reset(sl_histogram *histogram)
{
    SL_ASSERT(histogram != NULL);
    histogram_clear(histogram);
}

uint64_t
sl_histogram_count(const sl_histogram *histogram)
{
    SL_ASSERT(histogram != NULL);
    uint64_t total = 0;
    for (uint32_t i = 0; i < SL_HISTOGRAM_BUCKET_COUNT; i++) {
        total += atomic_load_explicit(&histogram->counts[i], memory_order_relaxed);
    }
    return total;
}

// The 1-based rank of quantile q among count values: ceil(q * count), at least 1.
static uint64_t
quantile_rank(double q, uint64_t count)
{
    double rank = ceil(q * (double)count);
    if (rank < 1.0) {
        return 1;
    }
    if (rank >= (double)count) {
        return count;
    }
    return (uint64_t)rank;
}

// The representative value of a bucket: its middle, clamped to the exact [min, max] seen. The
// top bucket also holds everything past the range, so its only trustworthy value is max.
static uint64_t
bucket_value(uint32_t index, uint64_t min, uint64_t max)
{
    if (index == HISTOGRAM_TOP_INDEX) {
        return max;
    }
    uint64_t low = sl_histogram_bucket_low(index);
    uint64_t high = sl_histogram_bucket_high(index);
    uint64_t mid = low + (high - low + 1) / 2;
    if (min > max) {
        // A racing first record has counted but not yet set min/max: nothing to clamp to.
        return mid;
    }
    return SL_MAX(min, SL_MIN(max, mid));
}

// Walks the buckets once and fills values_out[i] for each rank (ascending). Counts only grow
// during a walk (no reset), so a rank not reached means values arrived after the count was taken:
// those ranks get max.
static void
histogram_values_at_ranks(const sl_histogram *h, const uint64_t *ranks, uint64_t *values_out,
                          uint32_t rank_count, uint64_t min, uint64_t max)
{
    uint64_t seen = 0;
    uint32_t next = 0;
    for (uint32_t i = 0; i < SL_HISTOGRAM_BUCKET_COUNT && next < rank_count; i++) {
        seen += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        while (next < rank_count && seen >= ranks[next]) {
            values_out[next] = bucket_value(i, min, max);
            next++;
        }
    }
    for (; next < rank_count; next++) {
        values_out[next] = max;
    }
}

uint64_t
sl_histogram_quantile(const sl_histogram *histogram, double q)
{
    SL_ASSERT(histogram != NULL);
    uint64_t count = sl_histogram_count(histogram);
    if (count == 0) {
        return 0;
    }
    uint64_t min = atomic_load_explicit(&histogram->min, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&histogram->max, memory_order_relaxed);
    if (!(q > 0.0)) {
        return min;
    }
    if (q >= 1.0) {
        return max;
    }
    uint64_t rank = quantile_rank(q, count);
    uint64_t value = 0;
    histogram_values_at_ranks(histogram, &rank, &value, 1, min, max);
    return value;
}

void
sl_histogram_summary_get(const sl_histogram *histogram, sl_histogram_summary *summary_out)
{
    SL_ASSERT(histogram != NULL);
    SL_ASSERT(summary_out != NULL);
    *summary_out = (sl_histogram_summary){0};
    uint64_t count = sl_histogram_count(histogram);
    if (count == 0) {
        return;
    }
    summary_out->count = count;
    summary_out->sum = atomic_load_explicit(&histogram->sum, memory_order_relaxed);
    summary_out->min = atomic_load_explicit(&histogram->min, memory_order_relaxed);
    summary_out->max = atomic_load_explicit(&histogram->max, memory_order_relaxed);
    static const double quantiles[] = {0.5, 0.9, 0.99, 0.999};
    uint64_t ranks[SL_ARRAY_LEN(quantiles)];
    uint64_t values[SL_ARRAY_LEN(quantiles)];
    for (uint32_t i = 0; i < SL_ARRAY_LEN(quantiles); i++) {
        ranks[i] = quantile_rank(quantiles[i], count);
    }
    histogram_values_at_ranks(histogram, ranks, values, SL_ARRAY_LEN(quantiles), summary_out->min,
                              summary_out->max);
    summary_out->p50 = values[0];
    summary_out->p90 = values[1];
    summary_out->p99 = values[2];
    summary_out->p999 = values[3];
    if (summary_out->min > summary_out->max) {
        summary_out->min = summary_out->max; // a racing first record; see bucket_value
    }
}
