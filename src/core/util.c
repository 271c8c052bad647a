// Assertion failure, the accounted allocator and the monotonic clock.
#include "util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int64_t alloc_in_use_bytes;
static _Atomic int64_t alloc_fail_countdown; // 0: disarmed; n: the nth allocation fails

void
sl__assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "sluice: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}

static int
alloc_should_fail(void)
{
    int64_t left = atomic_load_explicit(&alloc_fail_countdown, memory_order_relaxed);
    while (left > 0) {
        if (atomic_compare_exchange_weak(&alloc_fail_countdown, &left, left - 1)) {
            return left == 1;
        }
    }
    return 0;
}

void *
sl_alloc(size_t size_bytes)
{
    if (size_bytes == 0 || alloc_should_fail()) {
        return NULL;
    }
    void *ptr = malloc(size_bytes);
    if (ptr != NULL) {
        atomic_fetch_add_explicit(&alloc_in_use_bytes, (int64_t)size_bytes, memory_order_relaxed);
    }
    return ptr;
}

void *
sl_calloc(size_t count, size_t size_bytes)
{
    if (count == 0 || size_bytes == 0 || count > SIZE_MAX / size_bytes || alloc_should_fail()) {
        return NULL;
    }
    void *ptr = calloc(count, size_bytes);
    if (ptr != NULL) {
        atomic_fetch_add_explicit(&alloc_in_use_bytes, (int64_t)(count * size_bytes),
                                  memory_order_relaxed);
    }
    return ptr;
}

void
sl_free(void *ptr, size_t size_bytes)
{
    if (ptr == NULL) {
        return;
    }
    atomic_fetch_sub_explicit(&alloc_in_use_bytes, (int64_t)size_bytes, memory_order_relaxed);
    free(ptr);
}

int64_t
sl__alloc_bytes_in_use(void)
{
    return atomic_load_explicit(&alloc_in_use_bytes, memory_order_relaxed);
}

void
sl__alloc_fail_after(int64_t n)
{
    atomic_store(&alloc_fail_countdown, n < 0 ? 0 : n);
}

void
sl__strlcpy(char *dst, const char *src, size_t dst_size)
{
    SL_ASSERT(dst != NULL);
    SL_ASSERT(dst_size > 0);
    size_t len = src == NULL ? 0 : strnlen(src, dst_size - 1);
    if (len > 0) {
        memcpy(dst, src, len);
    }
    dst[len] = '\0';
}

int64_t
sl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
sl_deadline_after_ms(int64_t timeout_ms)
{
    if (timeout_ms < 0) {
        return SL_DEADLINE_NEVER;
    }
    int64_t now = sl_now_ns();
    if (timeout_ms > (SL_DEADLINE_NEVER - now) / 1000000) {
        return SL_DEADLINE_NEVER;
    }
    return now + timeout_ms * 1000000;
}
