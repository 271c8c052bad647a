// Internal helpers every layer shares: assertions, the accounted allocator, small macros.
// Not installed; users see only include/sluice/.
#ifndef SLUICE_CORE_UTIL_H
#define SLUICE_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/defs.h>
#include <sluice/error.h>

// Aborts with file, line and expression. Always compiled in: asserts are for bugs, never for bad
// input from the network or disk (that gets SL_EPROTO / SL_ECORRUPT).
#define SL_ASSERT(expr)                                           \
    do {                                                          \
        if (__builtin_expect(!(expr), 0)) {                       \
            sl__assert_fail(#expr, __FILE__, __LINE__, __func__); \
        }                                                         \
    } while (0)

// O(n) checks for debug and test builds (NDEBUG turns them off).
#ifdef NDEBUG
#define SL_DEBUG_ASSERT(expr) ((void)0)
#else
#define SL_DEBUG_ASSERT(expr) SL_ASSERT(expr)
#endif

#define SL_MIN(a, b)       ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b)       ((a) > (b) ? (a) : (b))
#define SL_ARRAY_LEN(a)    (sizeof(a) / sizeof((a)[0]))
#define SL_UNUSED(x)       ((void)(x))
#define SL_CACHELINE_BYTES 64

_Noreturn void sl__assert_fail(const char *expr, const char *file, int line, const char *func);

// The accounted allocator: every byte the library allocates goes through here so that the total
// is known (sl__alloc_bytes_in_use) and tests can fail the Nth allocation. sl_free takes the size
// that was allocated. sl_alloc returns NULL on failure; it never aborts.
void *sl_alloc(size_t size_bytes);
void *sl_calloc(size_t count, size_t size_bytes);
void sl_free(void *ptr, size_t size_bytes);

// Bytes currently allocated through sl_alloc/sl_calloc and not freed.
int64_t sl__alloc_bytes_in_use(void);

// Fault injection for tests: the Nth allocation from now (1 = the next) fails, and every later one
// succeeds again. 0 disarms.
void sl__alloc_fail_after(int64_t n);

// Copies src into dst (capacity dst_size > 0), truncating; always NUL-terminates.
void sl__strlcpy(char *dst, const char *src, size_t dst_size);

#endif
