// Frame header, the generic decoder, and the connection and stream frames of the wire protocol.
// Pure functions over caller buffers: the broker and client own the sockets. Each frame type has
// one check function used by both its encoder (SL_EINVAL) and its decoder (SL_EPROTO), so neither
// side accepts what the other refuses. Layouts (offset, size, meaning): docs/protocol.md.
//
//   header: 0 u32 length | 4 u8 type | 5 u8 flags | 6 u16 reserved | 8 u32 stream id | 12 payload
#include "proto/proto_internal.h"

_Static_assert(SL_PROTO_FRAME_SIZE_MIN <= SL_PROTO_FRAME_SIZE_DEFAULT, "min <= default frame");
_Static_assert(SL_PROTO_FRAME_SIZE_DEFAULT <= SL_PROTO_FRAME_SIZE_CEILING, "default <= ceiling");
_Static_assert(SL_PROTO_FRAME_SIZE_DEFAULT <= SL_BATCH_SIZE_MAX, "frame default <= batch max");
// One largest batch fits in one PRODUCE or DELIVER frame at the ceiling.
_Static_assert(SL_BATCH_SIZE_MAX + SL_PROTO_FRAME_HEADER_BYTES + 64u <= SL_PROTO_FRAME_SIZE_CEILING,
               "a largest batch fits one frame");
// Every control frame with its longest strings fits the pre-negotiation frame size.
_Static_assert(SL_PROTO_FRAME_HEADER_BYTES + 64u + 2u * SL_PROTO_TOPIC_NAME_MAX +
                       SL_PROTO_MESSAGE_MAX + SL_PROTO_CLIENT_ID_MAX <=
                   SL_PROTO_FRAME_SIZE_MIN,
               "control frames fit the minimum frame");
_Static_assert(SL_PROTO_TOPIC_NAME_MAX <= UINT16_MAX && SL_PROTO_MESSAGE_MAX <= UINT16_MAX,
               "strings have u16 lengths");
_Static_assert(SL_PROTO_BATCHES_PER_FRAME_MAX <= UINT16_MAX, "batch count is a u16");
_Static_assert(SL_PROTO_LIST_ENTRIES_MAX <= UINT16_MAX, "entry counts are u16");
_Static_assert(SL_PROTO_HEARTBEAT_MS_MIN < SL_PROTO_HEARTBEAT_MS_DEFAULT &&
                   SL_PROTO_HEARTBEAT_MS_DEFAULT < SL_PROTO_HEARTBEAT_MS_MAX,
               "heartbeat bounds are ordered");

enum { SCOPE_C = 1, SCOPE_S = 2, SCOPE_E = 3 };

// ---- header ------------------------------------------------------------------------------------

static int
frame_scope(uint8_t type)
{
    switch (type) {
#define SL__FRAME_SCOPE(name, code, scope) \
    case (code):                           \
        return SCOPE_##scope;
        SL_PROTO_FRAME_MAP(SL__FRAME_SCOPE)
#undef SL__FRAME_SCOPE
    default:
        return 0;
    }
}

const char *
sl_proto_frame_name(uint8_t type)
{
    switch (type) {
#define SL__FRAME_NAME(name, code, scope) \
    case (code):                          \
        return #name;
        SL_PROTO_FRAME_MAP(SL__FRAME_NAME)
#undef SL__FRAME_NAME
    default:
        return NULL;
    }
}

static bool
stream_id_fits_scope(int scope, uint32_t stream_id)
{
    return scope == SCOPE_E || (scope == SCOPE_C) == (stream_id == 0);
}

// The header check behind sl_frame_header_decode; why gets a static sentence on SL_EPROTO.
static int
header_decode(const uint8_t *b, size_t len, uint32_t max_frame, sl_frame_header *h,
              const char **why)
{
    if (len < SL_PROTO_FRAME_HEADER_BYTES) {
        return SL_EAGAIN;
    }
    uint16_t reserved;
    memcpy(&h->length, b, sizeof(h->length));
    h->type = b[4];
    h->flags = b[5];
    memcpy(&reserved, b + 6, sizeof(reserved));
    memcpy(&h->stream_id, b + 8, sizeof(h->stream_id));
    // The length is checked against the limit before anything waits for or reads the payload.
    if (h->length > max_frame - SL_PROTO_FRAME_HEADER_BYTES) {
        *why = "frame longer than the negotiated maximum";
        return SL_EPROTO;
    }
    int scope = frame_scope(h->type);
    if (scope == 0) {
        *why = h->type >= SL_PROTO_GROUP_TYPES_FIRST && h->type <= SL_PROTO_GROUP_TYPES_LAST
                   ? "frame type reserved for consumer groups (not defined in version 2)"
                   : "unknown frame type";
        return SL_EPROTO;
    }
    if (h->flags != 0 || reserved != 0) {
        *why = "flags or reserved header bits set (none defined in version 1)";
        return SL_EPROTO;
    }
    if (!stream_id_fits_scope(scope, h->stream_id)) {
        *why = scope == SCOPE_C ? "connection-level frame with a stream id"
                                : "stream frame without a stream id";
        return SL_EPROTO;
    }
    return SL_OK;
}

int
sl_frame_header_decode(const void *buf, size_t len, uint32_t max_frame, sl_frame_header *out)
{
    SL_ASSERT(buf != NULL || len == 0);
    SL_ASSERT(out != NULL);
    SL_ASSERT(max_frame >= SL_PROTO_FRAME_SIZE_MIN && max_frame <= SL_PROTO_FRAME_SIZE_CEILING);
    const char *why = NULL;
    return header_decode(buf, len, max_frame, out, &why);
}

void
sl__wr_begin(sl__wr *w, void *buf, size_t cap, uint8_t type, uint32_t stream_id)
{
    SL_ASSERT(buf != NULL || cap == 0);
    SL_DEBUG_ASSERT(stream_id_fits_scope(frame_scope(type), stream_id));
    w->buf = buf;
    w->cap = cap;
    w->pos = 0;
    w->full = false;
    sl__wr_u32(w, 0); // length, patched by sl__wr_finish
    sl__wr_u8(w, type);
    sl__wr_u8(w, 0);
    sl__wr_u16(w, 0);
    sl__wr_u32(w, stream_id);
}

int
sl__wr_finish(sl__wr *w, size_t *len_out, size_t trailing_bytes)
{
    SL_ASSERT(len_out != NULL);
    if (w->full) {
        return SL_EFULL;
    }
    // Encoders bound their inputs, so a frame past the ceiling is a bug, not bad input.
    SL_ASSERT(trailing_bytes <= SL_PROTO_FRAME_SIZE_CEILING &&
              w->pos + trailing_bytes <= SL_PROTO_FRAME_SIZE_CEILING);
    uint32_t length = (uint32_t)(w->pos + trailing_bytes - SL_PROTO_FRAME_HEADER_BYTES);
    memcpy(w->buf, &length, sizeof(length));
    *len_out = w->pos;
    return SL_OK;
}

// ---- shared field checks -----------------------------------------------------------------------

bool
sl_proto_topic_name_valid(const char *name, size_t size)
{
    if (name == NULL || size == 0 || size > SL_PROTO_TOPIC_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool
sl__str_ok(sl_proto_str s, size_t min, size_t max)
{
    return s.size >= min && s.size <= max && (s.data != NULL || s.size == 0);
}

bool
sl__name_ok(sl_proto_str s)
{
    return sl_proto_topic_name_valid(s.data, s.size);
}

uint16_t
sl_proto_code_from_status(int status)
{
    return status < 0 && status > -(int)UINT16_MAX ? (uint16_t)-status : 0;
}

int
sl_proto_status_from_code(uint16_t code)
{
    if (code == 0) {
        return SL_OK;
    }
    const char *name = sl_errname(-(int)code);
    return strcmp(name, "SL_UNKNOWN") == 0 ? SL_EPROTO : -(int)code;
}

uint64_t
sl_proto_demand_add(uint64_t outstanding, uint64_t increment)
{
    return increment > UINT64_MAX - outstanding ? UINT64_MAX : outstanding + increment;
}

// ---- connection frames -------------------------------------------------------------------------

static const char *
check_hello(const sl_proto_hello *h)
{
    if (h->version_min == 0 || h->version_min > h->version_max) {
        return "HELLO version range empty";
    }
    if (h->max_frame_bytes < SL_PROTO_FRAME_SIZE_MIN ||
        h->max_frame_bytes > SL_PROTO_FRAME_SIZE_CEILING) {
        return "HELLO max frame size out of range";
    }
    if (h->heartbeat_ms < SL_PROTO_HEARTBEAT_MS_MIN ||
        h->heartbeat_ms > SL_PROTO_HEARTBEAT_MS_MAX) {
        return "HELLO heartbeat interval out of range";
    }
    return sl__str_ok(h->client_id, 0, SL_PROTO_CLIENT_ID_MAX) ? NULL : "HELLO client id too long";
}

int
sl_proto_encode_hello(void *buf, size_t cap, const sl_proto_hello *in, size_t *len_out)
{
    if (check_hello(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_HELLO, 0);
    sl__wr_u32(&w, SL_PROTO_HELLO_MAGIC);
    sl__wr_u16(&w, in->version_min);
    sl__wr_u16(&w, in->version_max);
    sl__wr_u32(&w, in->max_frame_bytes);
    sl__wr_u32(&w, in->heartbeat_ms);
    sl__wr_str(&w, in->client_id);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_hello(sl__rd *r, sl_proto_hello *out)
{
    if (sl__rd_u32(r) != SL_PROTO_HELLO_MAGIC) {
        sl__rd_fail(r, "HELLO magic is not SLUI: not a sluice client");
    }
    out->version_min = sl__rd_u16(r);
    out->version_max = sl__rd_u16(r);
    out->max_frame_bytes = sl__rd_u32(r);
    out->heartbeat_ms = sl__rd_u32(r);
    out->client_id = sl__rd_str(r, SL_PROTO_CLIENT_ID_MAX);
    sl__rd_check(r, r->why == NULL ? check_hello(out) : NULL);
}

static const char *
check_hello_ok(const sl_proto_hello_ok *h)
{
    if (h->version < SL_PROTO_VERSION_MIN || h->version > SL_PROTO_VERSION_MAX) {
        return "HELLO_OK version not supported";
    }
    if (h->max_frame_bytes < SL_PROTO_FRAME_SIZE_MIN ||
        h->max_frame_bytes > SL_PROTO_FRAME_SIZE_CEILING) {
        return "HELLO_OK max frame size out of range";
    }
    if (h->heartbeat_ms < SL_PROTO_HEARTBEAT_MS_MIN ||
        h->heartbeat_ms > SL_PROTO_HEARTBEAT_MS_MAX) {
        return "HELLO_OK heartbeat interval out of range";
    }
    if (h->max_streams == 0 || h->max_streams > SL_PROTO_STREAMS_MAX) {
        return "HELLO_OK max streams out of range";
    }
    return sl__str_ok(h->broker_id, 0, SL_PROTO_CLIENT_ID_MAX) ? NULL
                                                               : "HELLO_OK broker id too long";
}

int
sl_proto_encode_hello_ok(void *buf, size_t cap, const sl_proto_hello_ok *in, size_t *len_out)
{
    if (check_hello_ok(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_HELLO_OK, 0);
    sl__wr_u16(&w, in->version);
    sl__wr_u16(&w, 0);
    sl__wr_u32(&w, in->max_frame_bytes);
    sl__wr_u32(&w, in->heartbeat_ms);
    sl__wr_u32(&w, in->max_streams);
    sl__wr_str(&w, in->broker_id);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_hello_ok(sl__rd *r, sl_proto_hello_ok *out)
{
    out->version = sl__rd_u16(r);
    sl__rd_zero(r, 2);
    out->max_frame_bytes = sl__rd_u32(r);
    out->heartbeat_ms = sl__rd_u32(r);
    out->max_streams = sl__rd_u32(r);
    out->broker_id = sl__rd_str(r, SL_PROTO_CLIENT_ID_MAX);
    sl__rd_check(r, r->why == NULL ? check_hello_ok(out) : NULL);
}

int
sl_proto_encode_ping(void *buf, size_t cap, bool pong, const sl_proto_ping *in, size_t *len_out)
{
    sl__wr w;
    sl__wr_begin(&w, buf, cap, pong ? SL_FRAME_PONG : SL_FRAME_PING, 0);
    sl__wr_u64(&w, in->nonce);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_ping(sl__rd *r, sl_proto_ping *out)
{
    out->nonce = sl__rd_u64(r);
}

// ERROR, STREAM_CLOSE and the status part of ADMIN_RESULT share one layout:
// 0 u16 code | 2 u8 reason | 3 u8 reserved | 4 u32 retry_after_ms | 8 str message.
static const char *
check_status(const sl_proto_error *e, bool code_required)
{
    if (code_required && e->code == 0) {
        return "ERROR with code 0";
    }
    if (e->reason > SL_THROTTLE_QUOTA) {
        return "unknown throttle reason";
    }
    if (e->retry_after_ms > SL_PROTO_RETRY_AFTER_MS_MAX) {
        return "retry-after longer than its limit";
    }
    return sl__str_ok(e->message, 0, SL_PROTO_MESSAGE_MAX) ? NULL : "message longer than its limit";
}

static void
wr_status(sl__wr *w, const sl_proto_error *e)
{
    sl__wr_u16(w, e->code);
    sl__wr_u8(w, e->reason);
    sl__wr_u8(w, 0);
    sl__wr_u32(w, e->retry_after_ms);
    sl__wr_str(w, e->message);
}

static void
rd_status(sl__rd *r, sl_proto_error *out, bool code_required)
{
    out->code = sl__rd_u16(r);
    out->reason = sl__rd_u8(r);
    sl__rd_zero(r, 1);
    out->retry_after_ms = sl__rd_u32(r);
    out->message = sl__rd_str(r, SL_PROTO_MESSAGE_MAX);
    sl__rd_check(r, r->why == NULL ? check_status(out, code_required) : NULL);
}

int
sl_proto_encode_error(void *buf, size_t cap, uint32_t stream_id, const sl_proto_error *in,
                      size_t *len_out)
{
    if (check_status(in, true) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_ERROR, stream_id);
    wr_status(&w, in);
    return sl__wr_finish(&w, len_out, 0);
}

int
sl_proto_encode_stream_close(void *buf, size_t cap, uint32_t stream_id, const sl_proto_error *in,
                             size_t *len_out)
{
    if (stream_id == 0 || check_status(in, false) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_STREAM_CLOSE, stream_id);
    wr_status(&w, in);
    return sl__wr_finish(&w, len_out, 0);
}

static const char *
check_goaway(const sl_proto_goaway *g)
{
    if (g->retry_after_ms > SL_PROTO_RETRY_AFTER_MS_MAX) {
        return "retry-after longer than its limit";
    }
    return sl__str_ok(g->message, 0, SL_PROTO_MESSAGE_MAX) ? NULL : "message longer than its limit";
}

int
sl_proto_encode_goaway(void *buf, size_t cap, const sl_proto_goaway *in, size_t *len_out)
{
    if (check_goaway(in) != NULL) {
        return SL_EINVAL;
    }
    sl__wr w;
    sl__wr_begin(&w, buf, cap, SL_FRAME_GOAWAY, 0);
    sl__wr_u16(&w, in->code);
    sl__wr_u16(&w, 0);
    sl__wr_u32(&w, in->last_stream_id);
    sl__wr_u32(&w, in->retry_after_ms);
    sl__wr_str(&w, in->message);
    return sl__wr_finish(&w, len_out, 0);
}

static void
rd_goaway(sl__rd *r, sl_proto_goaway *out)
{
    out->code = sl__rd_u16(r);
    sl__rd_zero(r, 2);
    out->last_stream_id = sl__rd_u32(r);
    out->retry_after_ms = sl__rd_u32(r);
    out->message = sl__rd_str(r, SL_PROTO_MESSAGE_MAX);
    sl__rd_check(r, r->why == NULL ? check_goaway(out) : NULL);
}

// ---- generic decode ----------------------------------------------------------------------------

static int
decode_payload(uint8_t type, sl__rd *r, sl_frame *out)
{
    switch (type) {
    case SL_FRAME_HELLO:
        rd_hello(r, &out->u.hello);
        return SL_OK;
    case SL_FRAME_HELLO_OK:
        rd_hello_ok(r, &out->u.hello_ok);
        return SL_OK;
    case SL_FRAME_PING:
    case SL_FRAME_PONG:
        rd_ping(r, &out->u.ping);
        return SL_OK;
    case SL_FRAME_ERROR:
        rd_status(r, &out->u.error, true);
        return SL_OK;
    case SL_FRAME_STREAM_CLOSE:
        rd_status(r, &out->u.error, false);
        return SL_OK;
    case SL_FRAME_GOAWAY:
        rd_goaway(r, &out->u.goaway);
        return SL_OK;
    default:
        break;
    }
    int err = sl__proto_decode_stream(type, r, out);
    if (err == SL_ENOENT) {
        err = sl__proto_decode_admin(type, r, out);
    }
    return err != SL_ENOENT ? err : sl__proto_decode_group(type, r, out);
}

int
sl_proto_decode(const void *buf, size_t len, uint32_t max_frame, sl_frame *out, size_t *consumed,
                const char **why_out)
{
    SL_ASSERT(buf != NULL || len == 0);
    SL_ASSERT(out != NULL && consumed != NULL);
    SL_ASSERT(max_frame >= SL_PROTO_FRAME_SIZE_MIN && max_frame <= SL_PROTO_FRAME_SIZE_CEILING);
    const char *why = NULL;
    memset(out, 0, sizeof(*out));
    int err = header_decode(buf, len, max_frame, &out->header, &why);
    if (err == SL_OK && len - SL_PROTO_FRAME_HEADER_BYTES < out->header.length) {
        err = SL_EAGAIN;
    }
    if (err == SL_OK) {
        sl__rd r;
        sl__rd_init(&r, (const uint8_t *)buf + SL_PROTO_FRAME_HEADER_BYTES, out->header.length);
        err = decode_payload(out->header.type, &r, out);
        SL_ASSERT(err == SL_OK); // the header check admitted only types with a decoder
        err = sl__rd_end(&r);
        why = r.why;
    }
    if (why_out != NULL) {
        *why_out = err == SL_EPROTO ? why : NULL;
    }
    if (err == SL_OK) {
        *consumed = SL_PROTO_FRAME_HEADER_BYTES + out->header.length;
    }
    return err;
}

// ERROR needs a code; STREAM_CLOSE may carry SL_OK (a clean close).
static void
rd_error(sl__rd *r, sl_proto_error *out)
{
    rd_status(r, out, true);
}

static void
rd_stream_close(sl__rd *r, sl_proto_error *out)
{
    rd_status(r, out, false);
}

SL__PROTO_DECODER(hello, sl_proto_hello)
SL__PROTO_DECODER(hello_ok, sl_proto_hello_ok)
SL__PROTO_DECODER(ping, sl_proto_ping)
SL__PROTO_DECODER(error, sl_proto_error)
SL__PROTO_DECODER(stream_close, sl_proto_error)
SL__PROTO_DECODER(goaway, sl_proto_goaway)

void
sl__rd_status(sl__rd *r, sl_proto_error *out, bool code_required)
{
    rd_status(r, out, code_required);
}

void
sl__wr_status(sl__wr *w, const sl_proto_error *e)
{
    wr_status(w, e);
}

const char *
sl__check_status(const sl_proto_error *e, bool code_required)
{
    return check_status(e, code_required);
}
