// Definitions every public header shares: visibility, attributes and the deadline convention.
#ifndef SLUICE_DEFS_H
#define SLUICE_DEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SL_API      __attribute__((visibility("default")))
#define SL_MUST_USE __attribute__((warn_unused_result))
#else
#define SL_API
#define SL_MUST_USE
#endif

// Deadlines are absolute CLOCK_MONOTONIC times in nanoseconds. A blocking call takes one:
// SL_DEADLINE_NOW never waits (a "try"), SL_DEADLINE_NEVER waits until the operation can complete
// or the object is closed.
#define SL_DEADLINE_NOW   ((int64_t)0)
#define SL_DEADLINE_NEVER INT64_MAX

// Returns CLOCK_MONOTONIC in nanoseconds.
SL_API int64_t sl_now_ns(void);

// Returns the deadline timeout_ms milliseconds from now (SL_DEADLINE_NEVER for a negative value).
SL_API int64_t sl_deadline_after_ms(int64_t timeout_ms);

#endif
