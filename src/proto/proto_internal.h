// Shared by the protocol codec files: a bounds-checked little-endian reader and writer, and the
// decoders the generic dispatcher calls. Not installed. Layouts: docs/protocol.md.
#ifndef SLUICE_PROTO_INTERNAL_H
#define SLUICE_PROTO_INTERNAL_H

#include <string.h>

#include <sluice/error.h>
#include <sluice/proto.h>

#include "core/util.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

// A reader over one payload. Every read checks the bytes left first; the first failure records a
// static reason in why and makes every later read fail too, so decoders check once at the end.
typedef struct sl__rd {
    const uint8_t *p;
    size_t left;
    const char *why; // NULL while everything read so far was valid
} sl__rd;

static inline void
sl__rd_init(sl__rd *r, const void *payload, size_t len)
{
    r->p = payload;
    r->left = len;
    r->why = NULL;
}

// Records the first failure only: the earliest problem is the one worth reporting.
static inline bool
sl__rd_fail(sl__rd *r, const char *why)
{
    if (r->why == NULL) {
        r->why = why;
    }
    r->left = 0;
    return false;
}

static inline const uint8_t *
sl__rd_take(sl__rd *r, size_t n)
{
    if (r->why != NULL || r->left < n) {
        sl__rd_fail(r, "payload shorter than its fields");
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static inline uint8_t
sl__rd_u8(sl__rd *r)
{
    const uint8_t *at = sl__rd_take(r, 1);
    return at != NULL ? at[0] : 0;
}

static inline uint16_t
sl__rd_u16(sl__rd *r)
{
    uint16_t v = 0;
    const uint8_t *at = sl__rd_take(r, sizeof(v));
    if (at != NULL) {
        memcpy(&v, at, sizeof(v));
    }
    return v;
}

static inline uint32_t
sl__rd_u32(sl__rd *r)
{
    uint32_t v = 0;
    const uint8_t *at = sl__rd_take(r, sizeof(v));
    if (at != NULL) {
        memcpy(&v, at, sizeof(v));
    }
    return v;
}

static inline uint64_t
sl__rd_u64(sl__rd *r)
{
    uint64_t v = 0;
    const uint8_t *at = sl__rd_take(r, sizeof(v));
    if (at != NULL) {
        memcpy(&v, at, sizeof(v));
    }
    return v;
}

// Reserved fields must be zero so a later version can give them a meaning.
static inline void
sl__rd_zero(sl__rd *r, size_t n)
{
    const uint8_t *at = sl__rd_take(r, n);
    for (size_t i = 0; at != NULL && i < n; i++) {
        if (at[i] != 0) {
            sl__rd_fail(r, "reserved field is not zero");
            return;
        }
    }
}

// A u16-length string of at most max bytes; the length is checked against max and against the
// bytes left before the view is made.
static inline sl_proto_str
sl__rd_str(sl__rd *r, size_t max)
{
    sl_proto_str s = {.data = NULL, .size = 0};
    uint16_t size = sl__rd_u16(r);
    if (size > max) {
        sl__rd_fail(r, "string longer than its limit");
        return s;
    }
    const uint8_t *at = sl__rd_take(r, size);
    if (at != NULL) {
        s.data = (const char *)at;
        s.size = size;
    }
    return s;
}

// Ends a decode: SL_OK only if nothing failed and every payload byte was used.
static inline int
sl__rd_end(sl__rd *r)
{
    if (r->why == NULL && r->left != 0) {
        sl__rd_fail(r, "trailing bytes after the last field");
    }
    return r->why == NULL ? SL_OK : SL_EPROTO;
}

// The head of a paged list answer (TOPIC_LIST, GROUP_LIST): u32 correlation_id, u8 more (0/1),
// u8 reserved, u16 entry_count (at most SL_PROTO_LIST_ENTRIES_MAX); what names the frame.
static inline void
sl__rd_list_head(sl__rd *r, const char *what, uint32_t *correlation_out, bool *more_out,
                 uint16_t *count_out)
{
    *correlation_out = sl__rd_u32(r);
    uint8_t more = sl__rd_u8(r);
    sl__rd_zero(r, 1);
    *count_out = sl__rd_u16(r);
    *more_out = more == 1;
    if (more > 1 || *count_out > SL_PROTO_LIST_ENTRIES_MAX) {
        sl__rd_fail(r, what);
    }
}

// A public per-type decoder (one payload, one form) wrapping the file's reader rd_<name>: grep
// for "SL__PROTO_DECODER(name" to find one.
#define SL__PROTO_DECODER(name, type)                                      \
    int sl_proto_decode_##name(const void *payload, size_t len, type *out) \
    {                                                                      \
        SL_ASSERT(out != NULL);                                            \
        sl__rd r;                                                          \
        sl__rd_init(&r, payload, len);                                     \
        rd_##name(&r, out);                                                \
        return sl__rd_end(&r);                                             \
    }

// A cursor's next function over entries a decode already validated, read with reader: SL_ENOENT
// past the last, SL_ECORRUPT only for a list that was not decoded by this library.
#define SL__PROTO_CURSOR_NEXT(fn, type, reader)             \
    int fn(sl_proto_cursor *c, type *out)                   \
    {                                                       \
        if (c->left == 0) {                                 \
            return SL_ENOENT;                               \
        }                                                   \
        sl__rd r;                                           \
        sl__rd_init(&r, c->pos, (size_t)(c->end - c->pos)); \
        reader(&r, out);                                    \
        if (r.why != NULL) {                                \
            return SL_ECORRUPT;                             \
        }                                                   \
        c->pos = r.p;                                       \
        c->left--;                                          \
        return SL_OK;                                       \
    }

// A writer into the caller's buffer. Writes past cap set full instead of writing, so encoders
// write every field unconditionally and check once in sl__wr_finish.
typedef struct sl__wr {
    uint8_t *buf;
    size_t cap;
    size_t pos;
    bool full;
} sl__wr;

static inline uint8_t *
sl__wr_take(sl__wr *w, size_t n)
{
    if (w->full || w->cap - w->pos < n) {
        w->full = true;
        return NULL;
    }
    uint8_t *at = w->buf + w->pos;
    w->pos += n;
    return at;
}

static inline void
sl__wr_bytes(sl__wr *w, const void *src, size_t n)
{
    uint8_t *at = sl__wr_take(w, n);
    if (at != NULL && n > 0) {
        memcpy(at, src, n);
    }
}

static inline void
sl__wr_u8(sl__wr *w, uint8_t v)
{
    sl__wr_bytes(w, &v, sizeof(v));
}

static inline void
sl__wr_u16(sl__wr *w, uint16_t v)
{
    sl__wr_bytes(w, &v, sizeof(v));
}

static inline void
sl__wr_u32(sl__wr *w, uint32_t v)
{
    sl__wr_bytes(w, &v, sizeof(v));
}

static inline void
sl__wr_u64(sl__wr *w, uint64_t v)
{
    sl__wr_bytes(w, &v, sizeof(v));
}

static inline void
sl__wr_zero(sl__wr *w, size_t n)
{
    uint8_t *at = sl__wr_take(w, n);
    if (at != NULL) {
        memset(at, 0, n);
    }
}

// The caller has checked s.size against the field's limit.
static inline void
sl__wr_str(sl__wr *w, sl_proto_str s)
{
    sl__wr_u16(w, s.size);
    sl__wr_bytes(w, s.data, s.size);
}

// Starts a frame: the header, with the length filled in by sl__wr_finish.
void sl__wr_begin(sl__wr *w, void *buf, size_t cap, uint8_t type, uint32_t stream_id);

// Completes the frame: SL_EFULL if anything did not fit, else the length field and *len_out (the
// bytes written). trailing_bytes: payload the caller sends after them (prefix encoders), else 0.
int sl__wr_finish(sl__wr *w, size_t *len_out, size_t trailing_bytes);

// Field checks shared by encoders and decoders, so neither side accepts what the other refuses.
bool sl__str_ok(sl_proto_str s, size_t min, size_t max);
bool sl__name_ok(sl_proto_str s);
bool sl__topic_config_ok(const sl_proto_topic_config *c);
void sl__rd_topic_config(sl__rd *r, sl_proto_topic_config *c);
void sl__wr_topic_config(sl__wr *w, const sl_proto_topic_config *c);

// The status layout shared by ERROR, STREAM_CLOSE and ADMIN_RESULT (frame.c).
const char *sl__check_status(const sl_proto_error *e, bool code_required);
void sl__rd_status(sl__rd *r, sl_proto_error *out, bool code_required);
void sl__wr_status(sl__wr *w, const sl_proto_error *e);

// Decoders the generic dispatcher calls for the stream frames (stream.c) and the admin frames
// (admin.c) and the group frames (group.c): SL_OK once the payload is read into out (r->why says if
// it was bad), SL_ENOENT for a type the file does not own.
int sl__proto_decode_stream(uint8_t type, sl__rd *r, sl_frame *out);
int sl__proto_decode_admin(uint8_t type, sl__rd *r, sl_frame *out);
int sl__proto_decode_group(uint8_t type, sl__rd *r, sl_frame *out);

// Records why (a static sentence) as the reader's failure if why is not NULL and nothing failed
// before: the check functions run only on fields that were all read.
static inline void
sl__rd_check(sl__rd *r, const char *why)
{
    if (why != NULL) {
        sl__rd_fail(r, why);
    }
}

#endif
