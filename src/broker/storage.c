// The storage thread: takes PRODUCE requests from the event loop, appends their batches to the
// partition logs, and hands them back. Group commit: the thread takes every request queued while
// it was busy as one group, appends them all, posts the ones that asked only for acks=log, then
// flushes each partition the group touched once and posts the rest. One fdatasync thus covers every
// batch that arrived during the previous one. The queues are linked lists whose entries were
// reserved from the topic budgets before they were queued (law 1): the lists cannot outgrow them.
#include "broker/broker.h"

#include <sys/uio.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "core/util.h"

// Batches appended with one writev: bounded so the iovec array lives on the stack.
#define STORAGE_IOV_MAX 64u
// Partitions one group may flush; more are flushed in further passes of the same group.
#define STORAGE_FLUSH_SET_MAX 64u

static void
queue_push(sl_store_req **head, sl_store_req **tail, sl_store_req *r)
{
    r->next = NULL;
    if (*tail == NULL) {
        *head = r;
    } else {
        (*tail)->next = r;
    }
    *tail = r;
}

static void
storage_post(sl_storage *s, sl_store_req *first, sl_store_req *last)
{
    if (first == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mutex);
    if (s->out_tail == NULL) {
        s->out_head = first;
    } else {
        s->out_tail->next = first;
    }
    s->out_tail = last;
    pthread_mutex_unlock(&s->mutex);
    uv_async_send(s->wake_loop);
}

static void
storage_append(sl_storage *s, sl_store_req *r)
{
    struct iovec iov[STORAGE_IOV_MAX];
    size_t pos = 0;
    bool first = true;
    r->status = SL_OK;
    // Bounded by batch_count: each pass appends up to STORAGE_IOV_MAX batches.
    while (pos < r->size && r->status == SL_OK) {
        size_t n = 0;
        uint64_t records = 0;
        while (n < STORAGE_IOV_MAX && pos < r->size) {
            sl_batch_header h;
            // The loop thread validated every batch; decoding again only reads the length.
            int err = sl_batch_header_decode(r->data + pos, r->size - pos, &h);
            SL_ASSERT(err == SL_OK);
            iov[n].iov_base = r->data + pos;
            iov[n].iov_len = h.length;
            records += h.record_count;
            pos += h.length;
            n++;
        }
        uint64_t base = 0;
        size_t appended = 0;
        r->status = sl_log_appendv(r->part->log, iov, n, &base, &appended);
        if (appended > 0 && first) {
            r->base_offset = base;
            first = false;
        }
        if (r->status == SL_OK) {
            r->end_offset = base + records;
        }
    }
    s->appends++;
}

static void
ewma_update(_Atomic int64_t *avg, int64_t sample_ns)
{
    int64_t old = atomic_load_explicit(avg, memory_order_relaxed);
    // 1/8 weight: follows a change of disk speed within a few dozen groups.
    atomic_store_explicit(avg, old == 0 ? sample_ns : old + (sample_ns - old) / 8,
                          memory_order_relaxed);
}

static void *
storage_main(void *arg)
{
    sl_storage *s = arg;
    pthread_mutex_lock(&s->mutex);
    // Runs until sl_storage_stop; each pass handles one group.
    for (;;) {
        while (s->in_head == NULL && !s->stopping) {
            pthread_cond_wait(&s->cond, &s->mutex);
        }
        if (s->in_head == NULL && s->stopping) {
            break;
        }
        sl_store_req *group = s->in_head;
        s->in_head = NULL;
        s->in_tail = NULL;
        pthread_mutex_unlock(&s->mutex);

        sl_store_req *early_head = NULL;
        sl_store_req *early_tail = NULL;
        sl_store_req *late_head = NULL;
        sl_store_req *late_tail = NULL;
        sl_partition *flush_set[STORAGE_FLUSH_SET_MAX];
        size_t flush_count = 0;
        int64_t group_start = sl_now_ns();
        for (sl_store_req *r = group, *next; r != NULL; r = next) {
            next = r->next;
            storage_append(s, r);
            bool wants_fsync = r->status == SL_OK &&
                               (r->acks == SL_ACKS_FSYNC || s->fsync_policy == SL_FSYNC_ALWAYS);
            if (!wants_fsync) {
                queue_push(&early_head, &early_tail, r);
                continue;
            }
            queue_push(&late_head, &late_tail, r);
            bool known = false;
            for (size_t i = 0; i < flush_count && !known; i++) {
                known = flush_set[i] == r->part;
            }
            if (!known && flush_count < STORAGE_FLUSH_SET_MAX) {
                flush_set[flush_count++] = r->part;
            } else if (!known) {
                // More partitions than the set holds: flush this one now.
                int err = sl_log_flush(r->part->log);
                if (err != SL_OK) {
                    r->status = err;
                }
                r->flushed = err == SL_OK;
                s->flushes++;
            }
        }
        storage_post(s, early_head, early_tail);
        ewma_update(&s->append_ns_avg, sl_now_ns() - group_start);
        for (size_t i = 0; i < flush_count; i++) {
            int64_t flush_start = sl_now_ns();
            int err = sl_log_flush(flush_set[i]->log);
            ewma_update(&s->flush_ns_avg, sl_now_ns() - flush_start);
            s->flushes++;
            for (sl_store_req *r = late_head; r != NULL; r = r->next) {
                if (r->part == flush_set[i]) {
                    r->flushed = err == SL_OK;
                    if (err != SL_OK) {
                        r->status = err;
                    }
                }
            }
        }
        storage_post(s, late_head, late_tail);
        pthread_mutex_lock(&s->mutex);
    }
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

int
sl_storage_start(sl_storage *s, sl_fsync_policy policy, uv_async_t *wake_loop)
{
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->initialized = true;
    s->fsync_policy = policy;
    s->wake_loop = wake_loop;
    s->stopping = false;
    if (pthread_create(&s->thread, NULL, storage_main, s) != 0) {
        return SL_ENOMEM;
    }
    s->started = true;
    return SL_OK;
}

void
sl_storage_submit(sl_storage *s, sl_store_req *r)
{
    pthread_mutex_lock(&s->mutex);
    queue_push(&s->in_head, &s->in_tail, r);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mutex);
}

int64_t
sl_storage_oldest_queued_ns(sl_storage *s, uint64_t *queued_out)
{
    *queued_out = 0;
    if (!s->initialized) {
        return 0;
    }
    pthread_mutex_lock(&s->mutex);
    int64_t oldest = s->in_head != NULL ? s->in_head->submitted_ns : 0;
    uint64_t n = 0;
    // Bounded by SL_STORAGE_QUEUE_COUNT_MAX (the queue itself by the memory budget).
    for (sl_store_req *r = s->in_head; r != NULL && n < SL_STORAGE_QUEUE_COUNT_MAX; r = r->next) {
        n++;
    }
    pthread_mutex_unlock(&s->mutex);
    *queued_out = n;
    return oldest;
}

sl_store_req *
sl_storage_take_done(sl_storage *s)
{
    if (!s->initialized) {
        return NULL;
    }
    pthread_mutex_lock(&s->mutex);
    sl_store_req *head = s->out_head;
    s->out_head = NULL;
    s->out_tail = NULL;
    pthread_mutex_unlock(&s->mutex);
    return head;
}

void
sl_storage_stop(sl_storage *s)
{
    if (!s->started) {
        return;
    }
    pthread_mutex_lock(&s->mutex);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mutex);
    pthread_join(s->thread, NULL);
    s->started = false;
}

void
sl_storage_fini(sl_storage *s)
{
    SL_ASSERT(!s->started);
    if (s->initialized) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mutex);
        s->initialized = false;
    }
}
