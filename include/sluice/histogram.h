// Log-linear latency histograms (HdrHistogram-like): 128 linear sub-buckets per power of two, so
// any quantile is read back within 0.4% of the recorded value (bound: 1/256 relative). Recording
// is lock-free (one relaxed atomic increment, one add for the sum, and a rarely taken max/min
// update); memory is fixed at creation (SL_HISTOGRAM_BUCKET_COUNT counters, about 36 KiB).
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include <sluice/defs.h>

// Linear sub-buckets per power of two: bucket width / bucket start <= 1 / 128, and readout
// reports the middle of a bucket, so the relative error is at most 1 / 256 (0.39%).
#define SL_HISTOGRAM_SUB_BUCKETS 128u

// Values from 0 up to 2^42 - 1 (in nanoseconds: 73 minutes) get their own bucket; larger values
// are counted in the top bucket, but max (and sum) stay exact. 42 keeps the table at 36 KiB.
#define SL_HISTOGRAM_RANGE_LOG2 42u

// 2 * 128 exact buckets for 0..255, then 128 per power of two from 2^8 to 2^41.
#define SL_HISTOGRAM_BUCKET_COUNT \
    (2u * SL_HISTOGRAM_SUB_BUCKETS + (SL_HISTOGRAM_RANGE_LOG2 - 8u) * SL_HISTOGRAM_SUB_BUCKETS)

typedef struct sl_histogram sl_histogram;

// A readout: exact count, sum, min and max; quantiles within the bound above, clamped to
// [min, max]. All zero for an empty histogram.
typedef struct sl_histogram_summary {
    uint64_t count;
    uint64_t sum; // wraps past 2^64 (584 years in nanoseconds)
    uint64_t min;
    uint64_t max;
    uint64_t p50;
    uint64_t p90;
    uint64_t p99;
    uint64_t p999;
} sl_histogram_summary;

// Creates an empty histogram. Returns SL_ENOMEM.
SL_API SL_MUST_USE int sl_histogram_new(sl_histogram **histogram_out);

// Frees a histogram (NULL is ignored). No thread may be recording into it.
SL_API void sl_histogram_free(sl_histogram *histogram);

// Records one value. Lock-free and thread-safe; never blocks or allocates.
SL_API void sl_histogram_record(sl_histogram *histogram, uint64_t value);

// Records value count times (count 0 does nothing). Lock-free and thread-safe.
SL_API void sl_histogram_record_n(sl_histogram *histogram, uint64_t value, uint64_t count);

// Adds every count of src into dst, as if dst had recorded src's values. Both may be recorded
// into concurrently (the merge then sees some of the concurrent values). dst != src.
SL_API void sl_histogram_merge(sl_histogram *dst, const sl_histogram *src);

// Empties the histogram. Values recorded concurrently with a reset may be partly kept.
SL_API void sl_histogram_reset(sl_histogram *histogram);

// Total number of recorded values (a pass over the buckets).
SL_API uint64_t sl_histogram_count(const sl_histogram *histogram);

// The value at quantile q (0 <= q <= 1): the smallest recorded value v such that at least
// ceil(q * count) values are <= v, within the relative error bound; q = 1 returns the exact max
// and q = 0 the exact min. Returns 0 for an empty histogram. Thread-safe; for several quantiles
// of one consistent state, copy into a private histogram first (sl_histogram_merge into an empty
// one) or use sl_histogram_summary_get.
SL_API uint64_t sl_histogram_quantile(const sl_histogram *histogram, double q);

// Reads count, sum, min, max and p50/p90/p99/p99.9 in two passes. Thread-safe; under concurrent
// recording the figures are each valid for some moment during the call.
SL_API void sl_histogram_summary_get(const sl_histogram *histogram,
                                     sl_histogram_summary *summary_out);

// Bucket geometry, for encoders and tests: the index a value lands in, and the smallest and
// largest value of a bucket index (< SL_HISTOGRAM_BUCKET_COUNT).
SL_API uint32_t sl_histogram_bucket_index(uint64_t value);
SL_API uint64_t sl_histogram_bucket_low(uint32_t bucket_index);
SL_API uint64_t sl_histogram_bucket_high(uint32_t bucket_index);

#endif
