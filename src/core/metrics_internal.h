// The metrics registry's structures, shared by metrics.c (registration) and the encoders prom.c
// and json.c, which walk the registry under its mutex. Internal to the library.
#ifndef SLUICE_CORE_METRICS_INTERNAL_H
#define SLUICE_CORE_METRICS_INTERNAL_H

#include <pthread.h>

#include <sluice/metrics.h>

#include "core/strbuf.h"

// Suffixes of the two exposed families of an SL_METRIC_TIME family.
#define SL__TIME_RATE_SUFFIX  "_ms_per_second"
#define SL__TIME_TOTAL_SUFFIX "_seconds_total"

typedef struct sl__metric_series sl__metric_series;

struct sl__metric_series {
    uint64_t id;
    sl__metric_series *next;      // in the family, in insertion order
    sl__metric_series *hash_next; // in the family's bucket chain
    uint64_t label_hash;          // of the label values (label_hash in metrics.c)
    sl_metric_source source;
    const char *label_values[SL_METRIC_LABELS_MAX]; // point into storage
    size_t alloc_bytes;                             // of this struct with its storage
    char storage[];                                 // the label values, NUL-terminated
};

typedef struct sl__metric_family {
    uint64_t id;
    sl_metric_type type;
    double scale;   // > 0 and finite
    double divisor; // round(1 / scale) when that is a whole number (1e-9 -> 1e9), else 0
    uint32_t label_count;
    uint32_t series_count;
    sl__metric_series *head;
    sl__metric_series *tail;
    // Index of the series by label values, so a duplicate check costs O(1) instead of a walk of
    // the family: a scrape of 200 topics x 8 partitions adds tens of thousands of series.
    // bucket_count is 0 or a power of two, doubled while series_count > bucket_count.
    sl__metric_series **buckets;
    uint32_t bucket_count;
    char name[SL_NAME_MAX];
    char help[SL_METRIC_HELP_MAX];
    char label_names[SL_METRIC_LABELS_MAX][SL_NAME_MAX];
} sl__metric_family;

struct sl_metrics_registry {
    pthread_mutex_t mutex; // guards everything below; never taken on a record path
    uint32_t series_max;
    uint32_t families_max;
    uint32_t series_count;        // invariant: <= series_max
    uint32_t family_count;        // invariant: <= families_max
    uint64_t next_id;             // ids of families and series, never reused
    sl__metric_family **families; // [families_max], the first family_count in registration order
};

// Writes the value of a counter or gauge series, scaled: exact integers when the source is an
// integer and the scale is 1. json: non-finite values become null (else NaN / +Inf / -Inf).
// Call with the registry mutex held (it may run a read callback).
void sl__metric_value_encode(sl_strbuf *sb, const sl__metric_family *family,
                             const sl__metric_series *series, bool json);

// Writes raw scaled by the family's scale: the exact integer when the scale is 1, else a double
// as above. Scales like 1e-9 divide by the exact 1e9, so 899678208 ns prints as 0.899678208.
void sl__metric_scaled_encode(sl_strbuf *sb, const sl__metric_family *family, uint64_t raw,
                              bool json);

// The name of the Prometheus / JSON type of a family ("counter", "gauge", "summary", "time").
const char *sl__metric_type_name(sl_metric_type type);

#endif
