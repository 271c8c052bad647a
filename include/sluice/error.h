// One error enum for the whole library. The table below generates the enum, sl_strerror() and
// sl_errname(), so they cannot drift; docs/errors.md is produced from the same table.
// SL_OK is 0 and every error is negative, so an int can carry "count or error".
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

#include <sluice/defs.h>

// X(name, value, message). Backpressure outcomes (EFULL, EAGAIN, ETHROTTLED) are expected
// results with a documented meaning, never a generic failure.
#define SL_ERRNO_MAP(X)                                                            \
    X(OK, 0, "success")                                                            \
    X(EINVAL, -1, "invalid argument")                                              \
    X(ENOMEM, -2, "out of memory")                                                 \
    X(EFULL, -3, "full: budget or capacity exhausted (backpressure, retry later)") \
    X(EAGAIN, -4, "would block: try again when told there is room or data")        \
    X(ETIMEDOUT, -5, "deadline passed before the operation could complete")        \
    X(ECLOSED, -6, "closed")                                                       \
    X(ECANCELED, -7, "canceled")                                                   \
    X(ECORRUPT, -8, "corrupt data (checksum, length or format check failed)")      \
    X(EPROTO, -9, "protocol violation")                                            \
    X(EIO, -10, "input/output error")                                              \
    X(ENOSPC, -11, "no space left on device")                                      \
    X(ENOENT, -12, "not found")                                                    \
    X(EEXIST, -13, "already exists")                                               \
    X(ERANGE, -14, "value out of range")                                           \
    X(ENOTSUP, -15, "not supported")                                               \
    X(EBUSY, -16, "resource busy or locked")                                       \
    X(ETHROTTLED, -17, "throttled: retry after the indicated delay")               \
    X(ECONNREFUSED, -18, "connection refused")                                     \
    X(ECONNRESET, -19, "connection reset by peer")                                 \
    X(ETOOBIG, -20, "item larger than the configured maximum")                     \
    X(EEMPTY, -21, "empty: nothing to take")                                       \
    X(EOVERFLOW, -22, "counter or size overflow")

typedef enum sl_status {
#define SL__ERR_ENUM(name, value, msg) SL_##name = (value),
    SL_ERRNO_MAP(SL__ERR_ENUM)
#undef SL__ERR_ENUM
} sl_status;

// Returns a static, human-readable message for an error code; never NULL.
SL_API const char *sl_strerror(int err);

// Returns the symbolic name ("SL_EFULL") of an error code; "SL_UNKNOWN" for unknown codes.
SL_API const char *sl_errname(int err);

// Converts a positive errno value into the closest SL_E* code.
SL_API int sl_from_errno(int errnum);

#endif
