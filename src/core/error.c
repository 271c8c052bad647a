// The error table's two lookups and the errno mapping (see include/sluice/error.h).
#include <errno.h>

#include <sluice/error.h>

const char *
sl_strerror(int err)
{
    switch (err) {
#define SL__ERR_MSG(name, value, msg) \
    case (value):                     \
        return msg;
        SL_ERRNO_MAP(SL__ERR_MSG)
#undef SL__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *
sl_errname(int err)
{
    switch (err) {
#define SL__ERR_NAME(name, value, msg) \
    case (value):                      \
        return "SL_" #name;
        SL_ERRNO_MAP(SL__ERR_NAME)
#undef SL__ERR_NAME
    default:
        return "SL_UNKNOWN";
    }
}

int
sl_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return SL_OK;
    case EINVAL:
        return SL_EINVAL;
    case ENOMEM:
        return SL_ENOMEM;
    case EAGAIN:
        return SL_EAGAIN;
    case ETIMEDOUT:
        return SL_ETIMEDOUT;
    case ENOSPC:
    case EDQUOT:
        return SL_ENOSPC;
    case ENOENT:
        return SL_ENOENT;
    case EEXIST:
        return SL_EEXIST;
    case ERANGE:
        return SL_ERANGE;
    case ENOTSUP:
        return SL_ENOTSUP;
    case EBUSY:
        return SL_EBUSY;
    case ECONNREFUSED:
        return SL_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE:
        return SL_ECONNRESET;
    case ECANCELED:
        return SL_ECANCELED;
    case EOVERFLOW:
        return SL_EOVERFLOW;
    default:
        return SL_EIO;
    }
}
