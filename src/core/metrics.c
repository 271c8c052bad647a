// The metrics registry (include/sluice/metrics.h): a bounded catalogue of families (name, help,
// type, label names) and their series (label values + the object to read at scrape time).
// Registration and scrapes share one mutex; recording into counters, gauges, histograms and time
// accounts never sees it. Encoders live in prom.c and json.c; the structures in metrics_internal.h.
#include <sluice/metrics.h>

#include <math.h>
#include <string.h>

#include "core/metrics_internal.h"
#include "core/strbuf.h"
#include "core/util.h"

// Rounds series_add takes to link a series whose family's index must grow meanwhile (each round
// allocates the bigger index outside the lock); only concurrent adders to one family need more
// than two.
#define SL_METRICS_LINK_ROUNDS 8

static void
registry_check(const sl_metrics_registry *r)
{
    SL_ASSERT(r->series_count <= r->series_max);
    SL_ASSERT(r->family_count <= r->families_max);
}

const char *
sl__metric_type_name(sl_metric_type type)
{
    switch (type) {
    case SL_METRIC_COUNTER:
        return "counter";
    case SL_METRIC_GAUGE:
        return "gauge";
    case SL_METRIC_SUMMARY:
        return "summary";
    case SL_METRIC_TIME:
        return "time";
    default:
        return "untyped";
    }
}

int
sl_metrics_registry_new(const sl_metrics_registry_config *config,
                        sl_metrics_registry **registry_out)
{
    SL_ASSERT(registry_out != NULL);
    sl_metrics_registry_config cfg = {0};
    if (config != NULL) {
        cfg = *config;
    }
    if (cfg.series_max == 0) {
        cfg.series_max = SL_METRICS_SERIES_DEFAULT;
    }
    if (cfg.families_max == 0) {
        cfg.families_max = SL_METRICS_FAMILIES_DEFAULT;
    }
    if (cfg.series_max > SL_METRICS_SERIES_MAX || cfg.families_max > SL_METRICS_FAMILIES_MAX) {
        return SL_EINVAL;
    }
    sl_metrics_registry *r = sl_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SL_ENOMEM;
    }
    r->families = sl_calloc(cfg.families_max, sizeof(*r->families));
    if (r->families == NULL) {
        sl_free(r, sizeof(*r));
        return SL_ENOMEM;
    }
    pthread_mutex_init(&r->mutex, NULL);
    r->series_max = cfg.series_max;
    r->families_max = cfg.families_max;
    r->next_id = 1;
    *registry_out = r;
    return SL_OK;
}

static void
family_free(sl__metric_family *family)
{
    sl__metric_series *s = family->head;
    for (uint32_t i = 0; i < family->series_count; i++) {
        SL_ASSERT(s != NULL);
        sl__metric_series *next = s->next;
        sl_free(s, s->alloc_bytes);
        s = next;
    }
    SL_ASSERT(s == NULL);
    sl_free(family->buckets, family->bucket_count * sizeof(*family->buckets));
    sl_free(family, sizeof(*family));
}

void
sl_metrics_registry_free(sl_metrics_registry *registry)
{
    if (registry == NULL) {
        return;
    }
    for (uint32_t i = 0; i < registry->family_count; i++) {
        family_free(registry->families[i]);
    }
    pthread_mutex_destroy(&registry->mutex);
    sl_free(registry->families, registry->families_max * sizeof(*registry->families));
    sl_free(registry, sizeof(*registry));
}

// ---- validation ---------------------------------------------------------------------------------

static bool
is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

// Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, shorter than SL_NAME_MAX - extra_bytes.
static bool
metric_name_valid(const char *name, size_t extra_bytes)
{
    size_t length = strnlen(name, SL_NAME_MAX);
    if (length == 0 || length + extra_bytes >= SL_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        if (!(is_alpha_(c) || c == ':' || (i > 0 && is_digit(c)))) {
            return false;
        }
    }
    return true;
}

// Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*, not reserved (__*), and not a label the
// exposition adds itself (quantile and le always, state for time families).
static bool
label_name_valid(const char *name, sl_metric_type type)
{
    size_t length = strnlen(name, SL_NAME_MAX);
    if (length == 0 || length >= SL_NAME_MAX || strncmp(name, "__", 2) == 0) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        if (!(is_alpha_(name[i]) || (i > 0 && is_digit(name[i])))) {
            return false;
        }
    }
    if (strcmp(name, "quantile") == 0 || strcmp(name, "le") == 0) {
        return false;
    }
    return !(type == SL_METRIC_TIME && strcmp(name, "state") == 0);
}

static bool
ends_with(const char *text, const char *suffix)
{
    size_t text_length = strlen(text);
    size_t suffix_length = strlen(suffix);
    return text_length >= suffix_length &&
           memcmp(text + text_length - suffix_length, suffix, suffix_length) == 0;
}

static bool
family_desc_valid(const sl_metric_family_desc *d)
{
    if (d->name == NULL || (uint32_t)d->type > SL_METRIC_TIME) {
        return false;
    }
    size_t extra = d->type == SL_METRIC_TIME ? strlen(SL__TIME_RATE_SUFFIX) : 0;
    if (!metric_name_valid(d->name, extra)) {
        return false;
    }
    if (d->type == SL_METRIC_COUNTER && !ends_with(d->name, "_total")) {
        return false;
    }
    if (d->help != NULL) {
        size_t help_length = strnlen(d->help, SL_METRIC_HELP_MAX);
        if (help_length >= SL_METRIC_HELP_MAX || !sl__utf8_valid(d->help, help_length)) {
            return false;
        }
    }
    if (!(d->scale >= 0.0 && isfinite(d->scale))) {
        return false;
    }
    if (d->label_count > SL_METRIC_LABELS_MAX || (d->label_count > 0 && d->label_names == NULL)) {
        return false;
    }
    for (uint32_t i = 0; i < d->label_count; i++) {
        if (d->label_names[i] == NULL || !label_name_valid(d->label_names[i], d->type)) {
            return false;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(d->label_names[i], d->label_names[j]) == 0) {
                return false;
            }
        }
    }
    return true;
}

static int
family_find_index(const sl_metrics_registry *r, uint64_t family_id, uint32_t *index_out)
{
    for (uint32_t i = 0; i < r->family_count; i++) {
        if (r->families[i]->id == family_id) {
            *index_out = i;
            return SL_OK;
        }
    }
    return SL_ENOENT;
}

static bool
family_name_taken(const sl_metrics_registry *r, const char *name)
{
    for (uint32_t i = 0; i < r->family_count; i++) {
        if (strcmp(r->families[i]->name, name) == 0) {
            return true;
        }
    }
    return false;
}

// ---- families -----------------------------------------------------------------------------------

static sl__metric_family *
family_make(const sl_metric_family_desc *d)
{
    sl__metric_family *f = sl_calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->type = d->type;
    f->scale = d->scale == 0.0 ? 1.0 : d->scale;
    double inverse = round(1.0 / f->scale);
    if (f->scale < 1.0 && fabs(inverse * f->scale - 1.0) < 1e-12) {
        f->divisor = inverse;
    }
    f->label_count = d->label_count;
    sl__strlcpy(f->name, d->name, sizeof(f->name));
    sl__strlcpy(f->help, d->help == NULL ? "" : d->help, sizeof(f->help));
    for (uint32_t i = 0; i < d->label_count; i++) {
        sl__strlcpy(f->label_names[i], d->label_names[i], sizeof(f->label_names[i]));
    }
    return f;
}

int
sl_metrics_family_register(sl_metrics_registry *registry, const sl_metric_family_desc *desc,
                           uint64_t *family_id_out)
{
    SL_ASSERT(registry != NULL);
    SL_ASSERT(desc != NULL);
    SL_ASSERT(family_id_out != NULL);
    if (!family_desc_valid(desc)) {
        return SL_EINVAL;
    }
    // Allocated outside the lock so scrapes never wait on the allocator.
    sl__metric_family *f = family_make(desc);
    if (f == NULL) {
        return SL_ENOMEM;
    }
    int err = SL_OK;
    pthread_mutex_lock(&registry->mutex);
    if (family_name_taken(registry, f->name)) {
        err = SL_EEXIST;
    } else if (registry->family_count == registry->families_max) {
        err = SL_EFULL;
    } else {
        f->id = registry->next_id++;
        registry->families[registry->family_count++] = f;
        *family_id_out = f->id;
    }
    registry_check(registry);
    pthread_mutex_unlock(&registry->mutex);
    if (err != SL_OK) {
        sl_free(f, sizeof(*f));
    }
    return err;
}

int
sl_metrics_family_unregister(sl_metrics_registry *registry, uint64_t family_id)
{
    SL_ASSERT(registry != NULL);
    pthread_mutex_lock(&registry->mutex);
    uint32_t index = 0;
    int err = family_find_index(registry, family_id, &index);
    sl__metric_family *f = NULL;
    if (err == SL_OK) {
        f = registry->families[index];
        // Keep registration order for the survivors: output order is stable across scrapes.
        memmove(&registry->families[index], &registry->families[index + 1],
                (registry->family_count - index - 1) * sizeof(*registry->families));
        registry->family_count--;
        registry->series_count -= f->series_count;
    }
    registry_check(registry);
    pthread_mutex_unlock(&registry->mutex);
    if (f != NULL) {
        family_free(f);
    }
    return err;
}

// ---- series -------------------------------------------------------------------------------------

static bool
source_matches(sl_metric_type type, const sl_metric_source *s)
{
    uint32_t set = (s->counter != NULL) + (s->gauge != NULL) + (s->histogram != NULL) +
                   (s->timeacct != NULL) + (s->read_cb != NULL);
    if (set != 1) {
        return false;
    }
    switch (type) {
    case SL_METRIC_COUNTER:
        return s->counter != NULL || s->read_cb != NULL;
    case SL_METRIC_GAUGE:
        return s->gauge != NULL || s->read_cb != NULL;
    case SL_METRIC_SUMMARY:
        return s->histogram != NULL;
    case SL_METRIC_TIME:
        return s->timeacct != NULL;
    default:
        return false;
    }
}

static bool
label_values_valid(const char *const *values, uint32_t count, size_t *storage_bytes_out)
{
    if (count > 0 && values == NULL) {
        return false;
    }
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (values[i] == NULL) {
            return false;
        }
        size_t length = strnlen(values[i], SL_METRIC_LABEL_VALUE_MAX);
        if (length >= SL_METRIC_LABEL_VALUE_MAX || !sl__utf8_valid(values[i], length)) {
            return false;
        }
        total += length + 1;
    }
    *storage_bytes_out = total;
    return true;
}

static sl__metric_series *
series_make(const char *const *values, uint32_t count, size_t storage_bytes,
            const sl_metric_source *source)
{
    size_t alloc_bytes = sizeof(sl__metric_series) + storage_bytes;
    sl__metric_series *s = sl_calloc(1, alloc_bytes);
    if (s == NULL) {
        return NULL;
    }
    s->alloc_bytes = alloc_bytes;
    s->source = *source;
    char *at = s->storage;
    for (uint32_t i = 0; i < count; i++) {
        size_t length = strlen(values[i]);
        memcpy(at, values[i], length + 1);
        s->label_values[i] = at;
        at += length + 1;
    }
    SL_ASSERT(at == s->storage + storage_bytes);
    return s;
}

static bool
series_labels_equal(const sl__metric_series *s, const sl__metric_series *t, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(s->label_values[i], t->label_values[i]) != 0) {
            return false;
        }
    }
    return true;
}

// FNV-1a over the label values, each followed by a byte no UTF-8 text holds (0xff), so
// ("ab", "c") and ("a", "bc") differ.
static uint64_t
label_hash(const char *const *values, uint32_t count)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (uint32_t i = 0; i < count; i++) {
        for (const unsigned char *c = (const unsigned char *)values[i]; *c != '\0'; c++) {
            h = (h ^ *c) * UINT64_C(1099511628211);
        }
        h = (h ^ 0xffu) * UINT64_C(1099511628211);
    }
    return h;
}

static bool
family_has_labels(const sl__metric_family *f, const sl__metric_series *candidate)
{
    if (f->bucket_count == 0) {
        return false;
    }
    const sl__metric_series *s = f->buckets[candidate->label_hash & (f->bucket_count - 1)];
    // Bounded by the family's series: each is in exactly one chain.
    for (; s != NULL; s = s->hash_next) {
        if (s->label_hash == candidate->label_hash &&
            series_labels_equal(s, candidate, f->label_count)) {
            return true;
        }
    }
    return false;
}

static void
bucket_insert(sl__metric_family *f, sl__metric_series *s)
{
    sl__metric_series **head = &f->buckets[s->label_hash & (f->bucket_count - 1)];
    s->hash_next = *head;
    *head = s;
}

static void
bucket_remove(sl__metric_family *f, sl__metric_series *s)
{
    sl__metric_series **link = &f->buckets[s->label_hash & (f->bucket_count - 1)];
    // Bounded by the chain's length.
    while (*link != NULL && *link != s) {
        link = &(*link)->hash_next;
    }
    SL_ASSERT(*link == s);
    *link = s->hash_next;
}

// The bucket count a family needs to take one more series: doubled from 16 while the series
// would outnumber the buckets (load factor <= 1), bounded by the registry's series_max.
static uint32_t
buckets_wanted(const sl__metric_family *f)
{
    if (f->bucket_count != 0 && f->series_count < f->bucket_count) {
        return f->bucket_count;
    }
    return f->bucket_count == 0 ? 16u : f->bucket_count * 2;
}

// Moves the family's index to buckets (count entries, zeroed, a power of two); the old array is
// returned through old_out (with its size) to be freed outside the lock.
static void
buckets_replace(sl__metric_family *f, sl__metric_series **buckets, uint32_t count,
                sl__metric_series ***old_out, uint32_t *old_count_out)
{
    *old_out = f->buckets;
    *old_count_out = f->bucket_count;
    f->buckets = buckets;
    f->bucket_count = count;
    sl__metric_series *s = f->head;
    for (uint32_t i = 0; i < f->series_count; i++) {
        bucket_insert(f, s);
        s = s->next;
    }
}

// Links a prepared series into its family, or says why not. Called with the mutex held. spare is
// a zeroed bucket array of spare_count entries allocated outside the lock (or NULL): it replaces
// the family's index when that is full; *unused_out returns whichever array is left to free.
static int
series_link(sl_metrics_registry *r, uint64_t family_id, sl__metric_series *s,
            sl__metric_series **spare, uint32_t spare_count, sl__metric_series ***unused_out,
            uint32_t *unused_count_out)
{
    *unused_out = spare;
    *unused_count_out = spare_count;
    uint32_t index = 0;
    if (family_find_index(r, family_id, &index) != SL_OK) {
        return SL_ENOENT;
    }
    sl__metric_family *f = r->families[index];
    if (!source_matches(f->type, &s->source)) {
        return SL_EINVAL;
    }
    if (family_has_labels(f, s)) {
        return SL_EEXIST;
    }
    if (r->series_count == r->series_max) {
        return SL_EFULL;
    }
    uint32_t wanted = buckets_wanted(f);
    if (wanted != f->bucket_count) {
        if (spare == NULL || spare_count != wanted) {
            return SL_EAGAIN; // the caller allocates the size wanted and tries again
        }
        buckets_replace(f, spare, spare_count, unused_out, unused_count_out);
    }
    s->id = r->next_id++;
    if (f->tail == NULL) {
        f->head = s;
    } else {
        f->tail->next = s;
    }
    f->tail = s;
    bucket_insert(f, s);
    f->series_count++;
    r->series_count++;
    return SL_OK;
}

int
sl_metrics_series_add(sl_metrics_registry *registry, uint64_t family_id,
                      const char *const *label_values, const sl_metric_source *source,
                      uint64_t *series_id_out)
{
    SL_ASSERT(registry != NULL);
    SL_ASSERT(source != NULL);
    SL_ASSERT(series_id_out != NULL);
    // The label count is the family's; read it under the lock, then validate and allocate
    // outside it. A family unregistered in between is caught again by series_link.
    pthread_mutex_lock(&registry->mutex);
    uint32_t index = 0;
    int err = family_find_index(registry, family_id, &index);
    uint32_t label_count = err == SL_OK ? registry->families[index]->label_count : 0;
    pthread_mutex_unlock(&registry->mutex);
    if (err != SL_OK) {
        return err;
    }
    size_t storage_bytes = 0;
    if (!label_values_valid(label_values, label_count, &storage_bytes)) {
        return SL_EINVAL;
    }
    sl__metric_series *s = series_make(label_values, label_count, storage_bytes, source);
    if (s == NULL) {
        return SL_ENOMEM;
    }
    s->label_hash = label_hash(label_values, label_count);
    // The index grows by doubling; its array is allocated outside the lock (so scrapes never wait
    // on the allocator), which takes a second round when the family filled up meanwhile. Two
    // rounds are enough unless other threads keep adding to the same family: bounded anyway.
    sl__metric_series **spare = NULL;
    uint32_t spare_count = 0;
    err = SL_EAGAIN;
    for (int round = 0; round < SL_METRICS_LINK_ROUNDS && err == SL_EAGAIN; round++) {
        sl__metric_series **unused = NULL;
        uint32_t unused_count = 0;
        uint32_t wanted = 0;
        pthread_mutex_lock(&registry->mutex);
        err = series_link(registry, family_id, s, spare, spare_count, &unused, &unused_count);
        if (err == SL_OK) {
            *series_id_out = s->id;
        } else if (err == SL_EAGAIN && family_find_index(registry, family_id, &index) == SL_OK) {
            wanted = buckets_wanted(registry->families[index]);
        }
        registry_check(registry);
        pthread_mutex_unlock(&registry->mutex);
        sl_free(unused, unused_count * sizeof(*unused));
        spare = NULL;
        spare_count = 0;
        if (err == SL_EAGAIN) {
            spare = sl_calloc(wanted, sizeof(*spare));
            spare_count = spare != NULL ? wanted : 0;
            err = spare != NULL ? SL_EAGAIN : SL_ENOMEM;
        }
    }
    sl_free(spare, spare_count * sizeof(*spare));
    if (err != SL_OK) {
        sl_free(s, s->alloc_bytes);
    }
    return err == SL_EAGAIN ? SL_EBUSY : err;
}

// Unlinks the series with this id from whichever family holds it; NULL when none does.
static sl__metric_series *
series_unlink(sl_metrics_registry *r, uint64_t series_id)
{
    for (uint32_t i = 0; i < r->family_count; i++) {
        sl__metric_family *f = r->families[i];
        sl__metric_series *prev = NULL;
        sl__metric_series *s = f->head;
        for (uint32_t j = 0; j < f->series_count; j++) {
            if (s->id == series_id) {
                if (prev == NULL) {
                    f->head = s->next;
                } else {
                    prev->next = s->next;
                }
                if (f->tail == s) {
                    f->tail = prev;
                }
                bucket_remove(f, s);
                f->series_count--;
                r->series_count--;
                return s;
            }
            prev = s;
            s = s->next;
        }
    }
    return NULL;
}

int
sl_metrics_series_remove(sl_metrics_registry *registry, uint64_t series_id)
{
    SL_ASSERT(registry != NULL);
    pthread_mutex_lock(&registry->mutex);
    sl__metric_series *s = series_unlink(registry, series_id);
    registry_check(registry);
    pthread_mutex_unlock(&registry->mutex);
    if (s == NULL) {
        return SL_ENOENT;
    }
    sl_free(s, s->alloc_bytes);
    return SL_OK;
}

uint32_t
sl_metrics_series_count(sl_metrics_registry *registry)
{
    SL_ASSERT(registry != NULL);
    pthread_mutex_lock(&registry->mutex);
    uint32_t count = registry->series_count;
    pthread_mutex_unlock(&registry->mutex);
    return count;
}

static void
number_encode(sl_strbuf *sb, double value, bool json)
{
    if (json && !isfinite(value)) {
        sl__strbuf_puts(sb, "null");
        return;
    }
    sl__strbuf_double(sb, value);
}

static double
scale_apply(const sl__metric_family *f, double raw)
{
    return f->divisor != 0.0 ? raw / f->divisor : raw * f->scale;
}

void
sl__metric_scaled_encode(sl_strbuf *sb, const sl__metric_family *family, uint64_t raw, bool json)
{
    if (family->scale == 1.0) {
        sl__strbuf_u64(sb, raw);
        return;
    }
    number_encode(sb, scale_apply(family, (double)raw), json);
}

void
sl__metric_value_encode(sl_strbuf *sb, const sl__metric_family *family,
                        const sl__metric_series *series, bool json)
{
    const sl_metric_source *src = &series->source;
    if (src->counter != NULL) {
        sl__metric_scaled_encode(sb, family, sl_counter_get(src->counter), json);
    } else if (src->gauge != NULL && family->scale == 1.0) {
        sl__strbuf_i64(sb, sl_gauge_get(src->gauge));
    } else if (src->gauge != NULL) {
        number_encode(sb, scale_apply(family, (double)sl_gauge_get(src->gauge)), json);
    } else {
        SL_ASSERT(src->read_cb != NULL);
        number_encode(sb, scale_apply(family, src->read_cb(src->read_user)), json);
    }
}
