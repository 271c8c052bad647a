// Batches of the producer: buffers that grow as records arrive, the table of send-sequence runs a
// batch reports by, and re-encoding a batch for a new producer identity or in two halves when it
// is larger than the credit window the broker offers.
#include <string.h>

#include <sluice/budget.h>
#include <sluice/error.h>

#include "client/producer_internal.h"
#include "core/util.h"

void
sl__pbatch_free(pbatch *b)
{
    if (b->buf != NULL) {
        sl_free(b->buf, b->cap);
    }
    if (b->runs != NULL) {
        sl_free(b->runs, (size_t)b->run_cap * sizeof(*b->runs));
    }
    sl_free(b, sizeof(*b));
}

pbatch *
sl__pbatch_new(size_t cap)
{
    pbatch *b = sl_calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->buf = sl_alloc(cap);
    b->runs = sl_alloc(PRODUCER_RUNS_INITIAL * sizeof(*b->runs));
    if (b->buf == NULL || b->runs == NULL) {
        if (b->buf != NULL) {
            sl_free(b->buf, cap);
        }
        if (b->runs != NULL) {
            sl_free(b->runs, PRODUCER_RUNS_INITIAL * sizeof(*b->runs));
        }
        sl_free(b, sizeof(*b));
        return NULL;
    }
    b->cap = cap;
    b->run_cap = PRODUCER_RUNS_INITIAL;
    b->offset = SL_OFFSET_NONE;
    sl_batch_builder_init(&b->builder, b->buf, cap);
    return b;
}

// Makes room for one more run: SL_OK, SL_ENOMEM, or SL_EFULL at PRODUCER_RUNS_MAX (seal it).
int
sl__pbatch_runs_grow(pbatch *b)
{
    if (b->run_count < b->run_cap) {
        return SL_OK;
    }
    if (b->run_cap >= PRODUCER_RUNS_MAX) {
        return SL_EFULL;
    }
    uint32_t cap = SL_MIN(b->run_cap * 2, PRODUCER_RUNS_MAX);
    prun *runs = sl_alloc((size_t)cap * sizeof(*runs));
    if (runs == NULL) {
        return SL_ENOMEM;
    }
    memcpy(runs, b->runs, (size_t)b->run_count * sizeof(*runs));
    sl_free(b->runs, (size_t)b->run_cap * sizeof(*b->runs));
    b->runs = runs;
    b->run_cap = cap;
    return SL_OK;
}

bool
sl__pbatch_run_extends(const pbatch *b, uint64_t seq)
{
    const prun *last = b->run_count > 0 ? &b->runs[b->run_count - 1] : NULL;
    return last != NULL && last->seq + last->count == seq;
}

// Drops the first n records from a batch's runs (they were moved elsewhere).
void
sl__pbatch_runs_skip(pbatch *b, uint32_t n)
{
    uint32_t k = 0;
    for (; k < b->run_count && n >= b->runs[k].count; k++) { // bounded by run_count
        n -= b->runs[k].count;
    }
    memmove(b->runs, b->runs + k, (size_t)(b->run_count - k) * sizeof(*b->runs));
    b->run_count -= k;
    if (n > 0) {
        SL_ASSERT(b->run_count > 0);
        b->runs[0].seq += n;
        b->runs[0].count -= n;
    }
}

// Doubles an open batch's buffer (at least to fit need more bytes), up to limit.
int
sl__pbatch_grow(pbatch *b, size_t need, size_t limit)
{
    size_t cap = SL_MIN(SL_MAX(b->cap * 2, b->builder.used + need), SL_MAX(limit, b->cap));
    if (cap <= b->cap) {
        return SL_EFULL;
    }
    uint8_t *buf = sl_alloc(cap);
    if (buf == NULL) {
        return SL_ENOMEM;
    }
    memcpy(buf, b->buf, b->builder.used);
    sl_free(b->buf, b->cap);
    b->buf = buf;
    b->cap = cap;
    b->builder.buf = buf;
    b->builder.capacity = cap;
    return SL_OK;
}

// Fills r with the next report of a retired batch; true once its last run is reported.
bool
sl__pbatch_report_next(pbatch *b, sl_delivery_report *r)
{
    SL_ASSERT(b->runs_reported < b->run_count);
    const prun *run = &b->runs[b->runs_reported];
    *r = (sl_delivery_report){
        .seq = run->seq,
        .record_count = run->count,
        .partition = b->partition,
        .offset = b->offset == SL_OFFSET_NONE ? SL_OFFSET_NONE : b->offset + b->records_reported,
        .err = b->err};
    b->records_reported += run->count;
    b->runs_reported++;
    return b->runs_reported == b->run_count;
}

// Decodes a read record's headers into a temporary array (the builder takes sl_header views);
// the caller frees *hs_out (*size_out bytes) when it is not NULL.
int
sl__record_headers_view(sl_record *r, sl_header **hs_out, size_t *size_out)
{
    sl_header *hs = NULL;
    size_t hs_size = (size_t)r->header_count * sizeof(*hs);
    if (r->header_count > 0 && (hs = sl_alloc(hs_size)) == NULL) {
        return SL_ENOMEM;
    }
    int err = SL_OK;
    sl_header_cursor cur = {0};
    for (uint16_t h = 0; h < r->header_count && err == SL_OK; h++) {
        err = sl_record_header_next(r, &cur, &hs[h]);
    }
    r->headers = hs;
    *hs_out = hs;
    *size_out = hs_size;
    return err;
}

// Adds a record read from a batch to another batch, headers included. *cost grows by its
// buffer cost.
static int
record_copy(sl_batch_builder *nb, sl_record *r, uint64_t *cost)
{
    sl_header *hs = NULL;
    size_t hs_size = 0;
    int err = sl__record_headers_view(r, &hs, &hs_size);
    if (err == SL_OK) {
        *cost += sl_budget_record_cost(sl_record_encoded_size(r));
        err = sl_batch_builder_add(nb, r);
    }
    if (hs != NULL) {
        sl_free(hs, hs_size);
    }
    return err;
}

// Finishes a batch, compressed with the configured codec when there is one. The codec writes to
// a scratch buffer first (the builder keeps the smaller form); without memory for it, or when
// compression does not pay, the batch is stored uncompressed, which every reader accepts.
int
sl__pbatch_finish(sl_compression compression, sl_batch_builder *b, size_t *len_out)
{
    if (compression == SL_COMPRESSION_NONE) {
        return sl_batch_builder_finish(b, len_out);
    }
    size_t scratch_cap = b->used - SL_BATCH_HEADER_BYTES;
    uint8_t *scratch = sl_alloc(scratch_cap);
    int err = scratch == NULL ? SL_ENOMEM
                              : sl_batch_builder_finish_compressed(b, compression, scratch,
                                                                   scratch_cap, len_out);
    if (scratch != NULL) {
        sl_free(scratch, scratch_cap);
    }
    return err == SL_OK ? SL_OK : sl_batch_builder_finish(b, len_out);
}

// The uncompressed form of a batch: src itself, or a decompressed copy in *tmp (caller frees
// *tmp_cap bytes when *tmp is not NULL).
int
sl__pbatch_plain(const pbatch *src, const uint8_t **plain, size_t *plain_len, uint8_t **tmp,
                 size_t *tmp_cap)
{
    sl_batch_header h;
    *tmp = NULL;
    *plain = src->buf;
    *plain_len = src->len;
    int err = sl_batch_header_decode(src->buf, src->len, &h);
    if (err != SL_OK || (h.flags & 7u) == SL_COMPRESSION_NONE) {
        return err;
    }
    err = sl_batch_decompressed_length(&h, tmp_cap);
    if (err == SL_OK && (*tmp = sl_alloc(*tmp_cap)) == NULL) {
        err = SL_ENOMEM;
    }
    if (err == SL_OK) {
        err = sl_batch_decompress(src->buf, src->len, *tmp, *tmp_cap, plain_len);
        *plain = *tmp;
    }
    if (err != SL_OK && *tmp != NULL) {
        sl_free(*tmp, *tmp_cap);
        *tmp = NULL;
    }
    return err;
}

// Encodes records [from, from + count) of batch src into a new batch of the slot's current
// producer identity starting at stream sequence pseq. *cost_out gets their buffer cost.
static int
batch_encode_range(sl_compression compression, const pslot *s, const pbatch *src, uint32_t from,
                   uint32_t count, uint64_t pseq, uint8_t **buf_out, size_t *cap_out,
                   size_t *len_out, uint64_t *cost_out)
{
    const uint8_t *plain = NULL;
    size_t plain_len = 0;
    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    int err = sl__pbatch_plain(src, &plain, &plain_len, &tmp, &tmp_cap);
    if (err != SL_OK) {
        return err;
    }
    size_t cap = plain_len; // a subset never takes more room than the whole
    uint8_t *buf = sl_alloc(cap);
    err = buf == NULL ? SL_ENOMEM : SL_OK;
    sl_batch_builder nb;
    sl_batch_iter it;
    uint64_t cost = 0;
    if (err == SL_OK) {
        sl_batch_builder_init(&nb, buf, cap);
        sl_batch_builder_set_producer(&nb, s->pid, sl__pslot_wire_seq(s, pseq));
        err = sl_batch_iter_init(&it, plain, plain_len);
    }
    for (uint32_t i = 0; i < from + count && err == SL_OK; i++) {
        sl_record r;
        uint64_t off;
        err = sl_batch_iter_next(&it, &r, &off);
        if (err == SL_OK && i >= from) {
            err = record_copy(&nb, &r, &cost);
        }
    }
    if (err == SL_OK) {
        err = sl__pbatch_finish(compression, &nb, len_out);
    }
    if (tmp != NULL) {
        sl_free(tmp, tmp_cap);
    }
    if (err != SL_OK) {
        sl_free(buf, buf == NULL ? 0 : cap);
        return err;
    }
    *buf_out = buf;
    *cap_out = cap;
    *cost_out = cost;
    return SL_OK;
}

// Re-encodes a batch whose header carries a stale producer id or sequence (built before the
// broker assigned them, or before it forgot this producer).
int
sl__pbatch_rebuild(sl_compression compression, const pslot *s, pbatch *b)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    uint64_t cost = 0;
    int err =
        batch_encode_range(compression, s, b, 0, b->record_count, b->pseq, &buf, &cap, &len, &cost);
    if (err != SL_OK) {
        return err;
    }
    sl_free(b->buf, b->cap);
    b->buf = buf;
    b->cap = cap;
    b->len = len;
    b->built_pid = s->pid;
    b->built_wire_seq = sl__pslot_wire_seq(s, b->pseq);
    return SL_OK;
}

// The runs of records [half, record_count) of b, as a new table for the second half of a split.
static int
batch_runs_tail(const pbatch *b, uint32_t half, prun **runs_out, uint32_t *count_out)
{
    uint32_t k = 0;
    uint32_t before = 0;
    for (; k < b->run_count && before + b->runs[k].count <= half; k++) { // bounded: run_count
        before += b->runs[k].count;
    }
    SL_ASSERT(k < b->run_count);
    uint32_t n = b->run_count - k;
    prun *runs = sl_alloc((size_t)n * sizeof(*runs));
    if (runs == NULL) {
        return SL_ENOMEM;
    }
    memcpy(runs, b->runs + k, (size_t)n * sizeof(*runs));
    runs[0].seq += half - before;
    runs[0].count -= half - before;
    *runs_out = runs;
    *count_out = n;
    return SL_OK;
}

// Splits an unsent, unacked batch in two halves (the second follows it in the queue), for a
// batch larger than the credit window the broker offers. The buffer charge is split exactly.
int
sl__pbatch_split(sl_compression compression, pslot *s, pbatch *b)
{
    SL_ASSERT(b->record_count > 1 && b->acked_count == 0);
    uint32_t half = b->record_count / 2;
    pbatch *nb = sl_calloc(1, sizeof(*nb));
    if (nb == NULL) {
        return SL_ENOMEM;
    }
    int err = batch_runs_tail(b, half, &nb->runs, &nb->run_count);
    nb->run_cap = nb->run_count;
    uint8_t *a_buf = NULL;
    size_t a_cap = 0;
    size_t a_len = 0;
    uint64_t a_cost = 0;
    if (err == SL_OK) {
        err = batch_encode_range(compression, s, b, 0, half, b->pseq, &a_buf, &a_cap, &a_len,
                                 &a_cost);
    }
    if (err == SL_OK) {
        err = batch_encode_range(compression, s, b, half, b->record_count - half, b->pseq + half,
                                 &nb->buf, &nb->cap, &nb->len, &nb->charge_bytes);
        if (err != SL_OK) {
            sl_free(a_buf, a_cap);
        }
    }
    if (err != SL_OK) {
        sl__pbatch_free(nb);
        return err;
    }
    // What the records cost when sent stays as charged; the remainder goes with the first half.
    nb->charge_bytes = SL_MIN(nb->charge_bytes, b->charge_bytes);
    nb->pseq = b->pseq + half;
    nb->record_count = b->record_count - half;
    nb->offset = SL_OFFSET_NONE;
    nb->built_pid = s->pid;
    nb->built_wire_seq = sl__pslot_wire_seq(s, nb->pseq);
    nb->next = b->next;
    sl_free(b->buf, b->cap);
    b->buf = a_buf;
    b->cap = a_cap;
    b->len = a_len;
    b->record_count = half;
    // The first half keeps the runs before the cut (and the front part of a cut run).
    uint32_t keep = b->run_count - nb->run_count;
    bool cut_inside = nb->runs[0].seq != b->runs[keep].seq;
    if (cut_inside) {
        b->runs[keep].count -= nb->runs[0].count;
        keep++;
    }
    b->run_count = keep;
    b->charge_bytes -= nb->charge_bytes;
    b->built_pid = s->pid;
    b->built_wire_seq = sl__pslot_wire_seq(s, b->pseq);
    b->next = nb;
    if (s->tail == b) {
        s->tail = nb;
    }
    SL_UNUSED(a_cost);
    return SL_OK;
}
