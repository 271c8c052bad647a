// Byte and record budgets (include/sluice/budget.h): the reservation every buffer makes before it
// grows. A reservation locks the chain leaf -> root (a total order by depth, so no deadlock),
// checks every level, then commits every level: a reservation is all or nothing, and a refused
// one leaves no trace that could flap a watermark. Waiting (reserve_wait, room fds) goes through
// the root, which every release passes.
#include <sluice/budget.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/util.h"

// Deepest chain supported (global -> topic -> connection -> stream, with room to spare).
#define BUDGET_DEPTH_MAX 8

struct sl_budget {
    char name[SL_NAME_MAX];
    sl_budget *parent; // NULL for a root
    sl_budget *root;   // self for a root
    uint32_t depth;    // 0 for a root
    _Atomic uint32_t child_count;

    pthread_mutex_t mutex; // guards everything below up to the wait section
    uint64_t capacity_bytes;
    uint64_t capacity_records; // 0: unlimited records
    uint64_t high_bytes;       // pressured from here (inclusive)
    uint64_t low_bytes;        // not pressured again at or below here
    uint64_t high_records;
    uint64_t low_records;
    uint64_t used_bytes;   // invariant: <= capacity_bytes
    uint64_t used_records; // invariant: <= capacity_records when capped
    uint64_t peak_bytes;
    uint64_t reserve_total;
    uint64_t full_total;
    uint64_t pressured_total;
    bool pressured;
    sl_budget_watermark_cb watermark_cb;
    void *watermark_user;
    int room_fd; // eventfd, created on first request; -1 before

    // Wait section, used on the root only (guarded by wait_mutex).
    pthread_mutex_t wait_mutex;
    pthread_cond_t wait_cond; // CLOCK_MONOTONIC
    uint64_t release_generation;
    _Atomic uint32_t waiter_count;  // threads inside sl_budget_reserve_wait on this tree
    _Atomic uint32_t wanting_count; // budgets in the wanting list
    sl_budget *wanting_head;        // budgets whose room fd waits for a release
    sl_budget *wanting_next;        // link in the root's list (guarded by root's wait_mutex)
    bool wanting;
};

// A watermark crossing seen under the locks, fired after they are dropped.
typedef struct budget_event {
    sl_budget *budget;
    bool pressured;
} budget_event;

static void
budget_check(const sl_budget *b)
{
    SL_ASSERT(b->used_bytes <= b->capacity_bytes);
    SL_ASSERT(b->capacity_records == 0 || b->used_records <= b->capacity_records);
    SL_ASSERT(b->low_bytes < b->high_bytes || b->high_bytes == 0);
    SL_ASSERT(b->peak_bytes >= b->used_bytes);
}

static uint64_t
pct_of(uint64_t capacity, uint32_t pct)
{
    // Capacities are far below 2^57 in practice; divide first when they are not.
    if (capacity > UINT64_MAX / 100) {
        return capacity / 100 * pct;
    }
    return capacity * pct / 100;
}

int
sl_budget_new(const sl_budget_config *config, sl_budget *parent, sl_budget **budget_out)
{
    SL_ASSERT(config != NULL);
    SL_ASSERT(budget_out != NULL);
    uint32_t high =
        config->high_watermark_pct ? config->high_watermark_pct : SL_WATERMARK_HIGH_PCT_DEFAULT;
    uint32_t low =
        config->low_watermark_pct ? config->low_watermark_pct : SL_WATERMARK_LOW_PCT_DEFAULT;
    if (config->capacity_bytes == 0 || high > 100 || low >= high) {
        return SL_EINVAL;
    }
    if (parent != NULL && parent->depth + 1 >= BUDGET_DEPTH_MAX) {
        return SL_ERANGE;
    }
    sl_budget *b = sl_calloc(1, sizeof(*b));
    if (b == NULL) {
        return SL_ENOMEM;
    }
    sl__strlcpy(b->name, config->name != NULL ? config->name : "budget", sizeof(b->name));
    b->parent = parent;
    b->root = parent != NULL ? parent->root : b;
    b->depth = parent != NULL ? parent->depth + 1 : 0;
    b->capacity_bytes = config->capacity_bytes;
    b->capacity_records = config->capacity_records;
    b->high_bytes = SL_MAX(pct_of(b->capacity_bytes, high), 1);
    b->low_bytes = SL_MIN(pct_of(b->capacity_bytes, low), b->high_bytes - 1);
    b->high_records = SL_MAX(pct_of(b->capacity_records, high), 1);
    b->low_records = SL_MIN(pct_of(b->capacity_records, low), b->high_records - 1);
    b->room_fd = -1;
    pthread_mutex_init(&b->mutex, NULL);
    pthread_mutex_init(&b->wait_mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->wait_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (parent != NULL) {
        atomic_fetch_add(&parent->child_count, 1);
    }
    budget_check(b);
    *budget_out = b;
    return SL_OK;
}

void
sl_budget_free(sl_budget *b)
{
    if (b == NULL) {
        return;
    }
    SL_ASSERT(b->used_bytes == 0);
    SL_ASSERT(b->used_records == 0);
    SL_ASSERT(atomic_load(&b->child_count) == 0);
    sl_budget *root = b->root;
    if (root != b) {
        pthread_mutex_lock(&root->wait_mutex);
        sl_budget **link = &root->wanting_head;
        while (*link != NULL && *link != b) {
            link = &(*link)->wanting_next;
        }
        if (*link == b) {
            *link = b->wanting_next;
            atomic_fetch_sub(&root->wanting_count, 1);
        }
        pthread_mutex_unlock(&root->wait_mutex);
        atomic_fetch_sub(&b->parent->child_count, 1);
    }
    if (b->room_fd >= 0) {
        close(b->room_fd);
    }
    pthread_cond_destroy(&b->wait_cond);
    pthread_mutex_destroy(&b->wait_mutex);
    pthread_mutex_destroy(&b->mutex);
    sl_free(b, sizeof(*b));
}

// Fills chain[] leaf first; returns its length.
static uint32_t
budget_chain(sl_budget *b, sl_budget **chain)
{
    uint32_t n = 0;
    for (sl_budget *it = b; it != NULL; it = it->parent) {
        SL_ASSERT(n < BUDGET_DEPTH_MAX);
        chain[n++] = it;
    }
    return n;
}

static bool
budget_has_room(const sl_budget *b, uint64_t bytes, uint64_t records)
{
    if (bytes > b->capacity_bytes - b->used_bytes) {
        return false;
    }
    if (b->capacity_records != 0 && records > b->capacity_records - b->used_records) {
        return false;
    }
    return true;
}

static bool
budget_fits_ever(const sl_budget *b, uint64_t bytes, uint64_t records)
{
    return bytes <= b->capacity_bytes &&
           (b->capacity_records == 0 || records <= b->capacity_records);
}

// Re-evaluates the watermark state after used_* changed; records a crossing in *event.
static void
budget_update_pressure(sl_budget *b, budget_event *event, uint32_t *event_count)
{
    bool above_high = b->used_bytes >= b->high_bytes ||
                      (b->capacity_records != 0 && b->used_records >= b->high_records);
    bool below_low = b->used_bytes <= b->low_bytes &&
                     (b->capacity_records == 0 || b->used_records <= b->low_records);
    bool next = b->pressured;
    if (!b->pressured && above_high) {
        next = true;
        b->pressured_total++;
    } else if (b->pressured && below_low) {
        next = false;
    }
    if (next != b->pressured) {
        b->pressured = next;
        event[*event_count].budget = b;
        event[*event_count].pressured = next;
        (*event_count)++;
    }
}

static void
budget_fire(const budget_event *events, uint32_t event_count)
{
    for (uint32_t i = 0; i < event_count; i++) {
        sl_budget *b = events[i].budget;
        pthread_mutex_lock(&b->mutex);
        sl_budget_watermark_cb cb = b->watermark_cb;
        void *user = b->watermark_user;
        pthread_mutex_unlock(&b->mutex);
        if (cb != NULL) {
            cb(b, events[i].pressured, user);
        }
    }
}

// Remembers that b was refused, so that the next release anywhere in the tree signals its fd.
static void
budget_want_room(sl_budget *b)
{
    sl_budget *root = b->root;
    pthread_mutex_lock(&root->wait_mutex);
    if (!b->wanting) {
        b->wanting = true;
        b->wanting_next = root->wanting_head;
        root->wanting_head = b;
        atomic_fetch_add(&root->wanting_count, 1);
    }
    pthread_mutex_unlock(&root->wait_mutex);
}

static void
fd_signal(int fd)
{
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: the fd is readable already.
    ssize_t n = write(fd, &one, sizeof(one));
    SL_UNUSED(n);
}

// After a release: wake reserve_wait callers and signal the room fds of refused budgets.
static void
budget_wake(sl_budget *root)
{
    if (atomic_load(&root->waiter_count) == 0 && atomic_load(&root->wanting_count) == 0) {
        return;
    }
    pthread_mutex_lock(&root->wait_mutex);
    root->release_generation++;
    pthread_cond_broadcast(&root->wait_cond);
    sl_budget *it = root->wanting_head;
    root->wanting_head = NULL;
    atomic_store(&root->wanting_count, 0);
    while (it != NULL) {
        sl_budget *next = it->wanting_next;
        it->wanting = false;
        it->wanting_next = NULL;
        pthread_mutex_lock(&it->mutex);
        if (it->room_fd >= 0) {
            fd_signal(it->room_fd);
        }
        pthread_mutex_unlock(&it->mutex);
        it = next;
    }
    pthread_mutex_unlock(&root->wait_mutex);
}

int
sl_budget_reserve(sl_budget *b, uint64_t bytes, uint64_t records)
{
    SL_ASSERT(b != NULL);
    sl_budget *chain[BUDGET_DEPTH_MAX];
    uint32_t n = budget_chain(b, chain);
    for (uint32_t i = 0; i < n; i++) {
        pthread_mutex_lock(&chain[i]->mutex);
    }
    uint32_t refused_at = n;
    for (uint32_t i = 0; i < n && refused_at == n; i++) {
        if (!budget_has_room(chain[i], bytes, records)) {
            refused_at = i;
        }
    }
    budget_event events[BUDGET_DEPTH_MAX];
    uint32_t event_count = 0;
    if (refused_at == n) {
        for (uint32_t i = 0; i < n; i++) {
            sl_budget *it = chain[i];
            it->used_bytes += bytes;
            it->used_records += records;
            it->peak_bytes = SL_MAX(it->peak_bytes, it->used_bytes);
            it->reserve_total++;
            budget_update_pressure(it, events, &event_count);
            SL_DEBUG_ASSERT((budget_check(it), true));
        }
    } else {
        for (uint32_t i = 0; i <= refused_at; i++) {
            chain[i]->full_total++;
        }
    }
    for (uint32_t i = n; i > 0; i--) {
        pthread_mutex_unlock(&chain[i - 1]->mutex);
    }
    budget_fire(events, event_count);
    if (refused_at != n) {
        budget_want_room(b);
        return SL_EFULL;
    }
    return SL_OK;
}

void
sl_budget_release(sl_budget *b, uint64_t bytes, uint64_t records)
{
    SL_ASSERT(b != NULL);
    if (bytes == 0 && records == 0) {
        return;
    }
    sl_budget *chain[BUDGET_DEPTH_MAX];
    uint32_t n = budget_chain(b, chain);
    budget_event events[BUDGET_DEPTH_MAX];
    uint32_t event_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        pthread_mutex_lock(&chain[i]->mutex);
    }
    for (uint32_t i = 0; i < n; i++) {
        sl_budget *it = chain[i];
        // Releasing more than was reserved is a bug in the caller's pairing.
        SL_ASSERT(it->used_bytes >= bytes);
        SL_ASSERT(it->used_records >= records);
        it->used_bytes -= bytes;
        it->used_records -= records;
        budget_update_pressure(it, events, &event_count);
    }
    for (uint32_t i = n; i > 0; i--) {
        pthread_mutex_unlock(&chain[i - 1]->mutex);
    }
    budget_fire(events, event_count);
    budget_wake(b->root);
}

int
sl_budget_reserve_wait(sl_budget *b, uint64_t bytes, uint64_t records, int64_t deadline_ns,
                       int64_t *waited_ns_out)
{
    SL_ASSERT(b != NULL);
    for (sl_budget *it = b; it != NULL; it = it->parent) {
        if (!budget_fits_ever(it, bytes, records)) {
            return SL_ETOOBIG;
        }
    }
    sl_budget *root = b->root;
    int64_t start_ns = 0;
    int err = SL_OK;
    atomic_fetch_add(&root->waiter_count, 1);
    // Bounded by the deadline: each pass either reserves, times out, or waits for a release.
    for (;;) {
        pthread_mutex_lock(&root->wait_mutex);
        uint64_t generation = root->release_generation;
        pthread_mutex_unlock(&root->wait_mutex);
        err = sl_budget_reserve(b, bytes, records);
        if (err != SL_EFULL) {
            break;
        }
        int64_t now = sl_now_ns();
        if (start_ns == 0) {
            start_ns = now;
        }
        if (now >= deadline_ns) {
            err = SL_ETIMEDOUT;
            break;
        }
        pthread_mutex_lock(&root->wait_mutex);
        while (root->release_generation == generation && sl_now_ns() < deadline_ns) {
            if (deadline_ns == SL_DEADLINE_NEVER) {
                pthread_cond_wait(&root->wait_cond, &root->wait_mutex);
            } else {
                struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                                      .tv_nsec = deadline_ns % 1000000000};
                pthread_cond_timedwait(&root->wait_cond, &root->wait_mutex, &ts);
            }
        }
        pthread_mutex_unlock(&root->wait_mutex);
    }
    atomic_fetch_sub(&root->waiter_count, 1);
    if (waited_ns_out != NULL && start_ns != 0) {
        *waited_ns_out += sl_now_ns() - start_ns;
    }
    return err;
}

bool
sl_budget_pressured(const sl_budget *b)
{
    sl_budget *mut = (sl_budget *)b;
    pthread_mutex_lock(&mut->mutex);
    bool pressured = b->pressured;
    pthread_mutex_unlock(&mut->mutex);
    return pressured;
}

void
sl_budget_set_watermark_cb(sl_budget *b, sl_budget_watermark_cb cb, void *user)
{
    pthread_mutex_lock(&b->mutex);
    b->watermark_cb = cb;
    b->watermark_user = user;
    pthread_mutex_unlock(&b->mutex);
}

int
sl_budget_room_fd(sl_budget *b)
{
    pthread_mutex_lock(&b->mutex);
    if (b->room_fd < 0) {
        b->room_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    int fd = b->room_fd;
    pthread_mutex_unlock(&b->mutex);
    return fd;
}

void
sl_budget_stats_get(const sl_budget *b, sl_budget_stats *out)
{
    sl_budget *mut = (sl_budget *)b;
    pthread_mutex_lock(&mut->mutex);
    out->capacity_bytes = b->capacity_bytes;
    out->capacity_records = b->capacity_records;
    out->used_bytes = b->used_bytes;
    out->used_records = b->used_records;
    out->peak_bytes = b->peak_bytes;
    out->reserve_total = b->reserve_total;
    out->full_total = b->full_total;
    out->pressured_total = b->pressured_total;
    out->pressured = b->pressured;
    double fill = (double)b->used_bytes / (double)b->capacity_bytes;
    if (b->capacity_records != 0) {
        fill = SL_MAX(fill, (double)b->used_records / (double)b->capacity_records);
    }
    out->fill_ratio = fill;
    pthread_mutex_unlock(&mut->mutex);
}

const char *
sl_budget_name(const sl_budget *b)
{
    return b->name;
}
