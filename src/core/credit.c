// Credit accounting (include/sluice/credit.h): the request(n) side of every stream. Demand is
// kept as what remains (not as two cumulative totals) so that saturation at INT64_MAX is a plain
// saturating add and unbounded demand is never decremented. Cancel is folded into the record
// demand (-1) so that a spend and a cancel are ordered by one atomic word.
#include <sluice/credit.h>

#include <sluice/error.h>

#include "core/util.h"

// Record demand after cancel. Any spend or request that loads it stops.
#define CREDIT_CANCELED ((int64_t)-1)

static int64_t
sat_add(int64_t a, int64_t b)
{
    SL_ASSERT(a >= 0);
    SL_ASSERT(b >= 0);
    return a > SL_CREDIT_UNBOUNDED - b ? SL_CREDIT_UNBOUNDED : a + b;
}

static void
counter_sat_add(_Atomic uint64_t *counter, int64_t n)
{
    uint64_t old = atomic_load_explicit(counter, memory_order_relaxed);
    uint64_t next;
    do {
        next = (uint64_t)sat_add((int64_t)old, n);
    } while (!atomic_compare_exchange_weak_explicit(counter, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void
sl_credit_init(sl_credit *c, bool limit_bytes)
{
    SL_ASSERT(c != NULL);
    atomic_init(&c->records, 0);
    atomic_init(&c->bytes, limit_bytes ? 0 : SL_CREDIT_UNBOUNDED);
    atomic_init(&c->records_requested_total, 0);
    atomic_init(&c->bytes_requested_total, 0);
    atomic_init(&c->records_delivered_total, 0);
    atomic_init(&c->bytes_delivered_total, 0);
    atomic_init(&c->bytes_overshoot_total, 0);
    atomic_init(&c->refused_total, 0);
    atomic_init(&c->invalid_total, 0);
}

// Adds n (>= 0) to the byte demand unless it is unbounded already.
static void
credit_add_bytes(sl_credit *c, int64_t n)
{
    int64_t old = atomic_load_explicit(&c->bytes, memory_order_relaxed);
    int64_t next;
    do {
        next = sat_add(old, n);
    } while (!atomic_compare_exchange_weak_explicit(&c->bytes, &old, next, memory_order_release,
                                                    memory_order_relaxed));
    counter_sat_add(&c->bytes_requested_total, n);
}

int
sl_credit_request(sl_credit *c, int64_t records, int64_t bytes)
{
    SL_ASSERT(c != NULL);
    // Reactive Streams 3.6: after cancel every request is a no-op, even an invalid one.
    int64_t old = atomic_load_explicit(&c->records, memory_order_relaxed);
    if (old == CREDIT_CANCELED) {
        return SL_ECANCELED;
    }
    if (records <= 0 || bytes < 0) {
        atomic_fetch_add_explicit(&c->invalid_total, 1, memory_order_relaxed);
        return SL_EINVAL;
    }
    // Bytes first: a spender that sees the new records must not find the bytes missing.
    if (bytes > 0) {
        credit_add_bytes(c, bytes);
    }
    int64_t next;
    do {
        if (old == CREDIT_CANCELED) {
            return SL_ECANCELED;
        }
        next = sat_add(old, records);
    } while (!atomic_compare_exchange_weak_explicit(&c->records, &old, next, memory_order_release,
                                                    memory_order_relaxed));
    counter_sat_add(&c->records_requested_total, records);
    return SL_OK;
}

int
sl_credit_request_bytes(sl_credit *c, int64_t bytes)
{
    SL_ASSERT(c != NULL);
    if (atomic_load_explicit(&c->records, memory_order_relaxed) == CREDIT_CANCELED) {
        return SL_ECANCELED;
    }
    if (bytes <= 0) {
        atomic_fetch_add_explicit(&c->invalid_total, 1, memory_order_relaxed);
        return SL_EINVAL;
    }
    credit_add_bytes(c, bytes);
    return SL_OK;
}

int
sl_credit_top_up(sl_credit *c, int64_t records_target, int64_t bytes_target)
{
    SL_ASSERT(c != NULL);
    int64_t records = 0;
    int64_t bytes = 0;
    sl_credit_available(c, &records, &bytes);
    if (sl_credit_canceled(c)) {
        return SL_ECANCELED;
    }
    int64_t records_add = records_target > records ? records_target - records : 0;
    int64_t bytes_add = bytes_target > bytes ? bytes_target - bytes : 0;
    if (records_add > 0) {
        return sl_credit_request(c, records_add, bytes_add);
    }
    if (bytes_add > 0) {
        return sl_credit_request_bytes(c, bytes_add);
    }
    return SL_OK;
}

// Takes `records` from the record demand. Returns SL_OK, SL_EFULL or SL_ECANCELED; *took_out says
// whether anything was subtracted (an unbounded demand is left as it is).
static int
credit_take_records(sl_credit *c, int64_t records, bool *took_out)
{
    int64_t old = atomic_load_explicit(&c->records, memory_order_acquire);
    int64_t next;
    do {
        if (old == CREDIT_CANCELED) {
            return SL_ECANCELED;
        }
        if (old == SL_CREDIT_UNBOUNDED) {
            *took_out = false;
            return SL_OK;
        }
        if (old < records) {
            return SL_EFULL;
        }
        next = old - records;
    } while (!atomic_compare_exchange_weak_explicit(&c->records, &old, next, memory_order_acquire,
                                                    memory_order_acquire));
    *took_out = true;
    return SL_OK;
}

// Gives back records taken by credit_take_records when the bytes were refused. After a cancel the
// demand stays canceled; a request that raced in may have saturated it meanwhile.
static void
credit_return_records(sl_credit *c, int64_t records)
{
    int64_t old = atomic_load_explicit(&c->records, memory_order_relaxed);
    int64_t next;
    do {
        if (old == CREDIT_CANCELED) {
            return;
        }
        next = sat_add(old, records);
    } while (!atomic_compare_exchange_weak_explicit(&c->records, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

// Takes bytes from the byte demand under the one-record rule (see sl_credit_spend). Returns
// SL_OK or SL_EFULL; *overshoot_out gets the bytes delivered beyond the demand.
static int
credit_take_bytes(sl_credit *c, int64_t bytes, bool single_record, int64_t *overshoot_out)
{
    int64_t old = atomic_load_explicit(&c->bytes, memory_order_acquire);
    int64_t next;
    do {
        *overshoot_out = 0;
        if (old == SL_CREDIT_UNBOUNDED) {
            return SL_OK;
        }
        if (old >= bytes) {
            next = old - bytes;
        } else if (old > 0 && single_record) {
            next = 0;
            *overshoot_out = bytes - old;
        } else {
            return SL_EFULL;
        }
    } while (!atomic_compare_exchange_weak_explicit(&c->bytes, &old, next, memory_order_acquire,
                                                    memory_order_acquire));
    return SL_OK;
}

int
sl_credit_spend(sl_credit *c, uint64_t records, uint64_t bytes)
{
    SL_ASSERT(c != NULL);
    SL_ASSERT(records >= 1);
    SL_ASSERT(records <= (uint64_t)SL_CREDIT_UNBOUNDED);
    // A delivery larger than the whole demand space can never be granted; it is refused, not
    // truncated, so the caller can split it.
    if (bytes > (uint64_t)SL_CREDIT_UNBOUNDED - 1) {
        atomic_fetch_add_explicit(&c->refused_total, 1, memory_order_relaxed);
        return SL_EFULL;
    }
    bool took = false;
    int err = credit_take_records(c, (int64_t)records, &took);
    if (err == SL_OK) {
        int64_t overshoot = 0;
        err = credit_take_bytes(c, (int64_t)bytes, records == 1, &overshoot);
        if (err != SL_OK && took) {
            credit_return_records(c, (int64_t)records);
        }
        if (err == SL_OK) {
            atomic_fetch_add_explicit(&c->records_delivered_total, records, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->bytes_delivered_total, bytes, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->bytes_overshoot_total, (uint64_t)overshoot,
                                      memory_order_relaxed);
        }
    }
    if (err == SL_EFULL) {
        atomic_fetch_add_explicit(&c->refused_total, 1, memory_order_relaxed);
    }
    return err;
}

void
sl_credit_available(const sl_credit *c, int64_t *records_out, int64_t *bytes_out)
{
    SL_ASSERT(c != NULL);
    sl_credit *mut = (sl_credit *)c;
    int64_t records = atomic_load_explicit(&mut->records, memory_order_acquire);
    bool canceled = records == CREDIT_CANCELED;
    if (records_out != NULL) {
        *records_out = canceled ? 0 : records;
    }
    if (bytes_out != NULL) {
        *bytes_out = canceled ? 0 : atomic_load_explicit(&mut->bytes, memory_order_acquire);
    }
}

void
sl_credit_cancel(sl_credit *c)
{
    SL_ASSERT(c != NULL);
    atomic_store_explicit(&c->records, CREDIT_CANCELED, memory_order_release);
}

bool
sl_credit_canceled(const sl_credit *c)
{
    SL_ASSERT(c != NULL);
    sl_credit *mut = (sl_credit *)c;
    return atomic_load_explicit(&mut->records, memory_order_acquire) == CREDIT_CANCELED;
}

void
sl_credit_stats_get(const sl_credit *c, sl_credit_stats *out)
{
    SL_ASSERT(c != NULL);
    SL_ASSERT(out != NULL);
    sl_credit *mut = (sl_credit *)c;
    sl_credit_available(c, &out->records_available, &out->bytes_available);
    out->canceled = sl_credit_canceled(c);
    out->records_requested_total = atomic_load(&mut->records_requested_total);
    out->bytes_requested_total = atomic_load(&mut->bytes_requested_total);
    out->records_delivered_total = atomic_load(&mut->records_delivered_total);
    out->bytes_delivered_total = atomic_load(&mut->bytes_delivered_total);
    out->bytes_overshoot_total = atomic_load(&mut->bytes_overshoot_total);
    out->refused_total = atomic_load(&mut->refused_total);
    out->invalid_total = atomic_load(&mut->invalid_total);
}
