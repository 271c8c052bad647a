// Internals of the producer shared by producer.c (streams, routing, reports) and
// producer_batch.c (batch buffers, run tables, re-encoding and splitting of batches).
#ifndef SLUICE_CLIENT_PRODUCER_INTERNAL_H
#define SLUICE_CLIENT_PRODUCER_INTERNAL_H

#include <sluice/batch.h>
#include <sluice/client.h>

// Runs of consecutive send sequences a batch tracks for its reports (a routed batch interleaves
// with other partitions'). A batch whose run table is full is sealed: caps the table at 16 KiB.
#define PRODUCER_RUNS_INITIAL 4u
#define PRODUCER_RUNS_MAX     1024u

_Static_assert(PRODUCER_RUNS_INITIAL <= PRODUCER_RUNS_MAX, "run table sizes");

// Records seq .. seq + count - 1 (send sequences) sit next to each other in a batch.
typedef struct prun {
    uint64_t seq;
    uint32_t count;
} prun;

typedef struct pbatch {
    struct pbatch *next;
    uint8_t *buf; // the batch (finished once sealed); freed when acked, charge kept till reported
    size_t cap;
    size_t len;
    sl_batch_builder builder; // while open
    uint64_t pseq;            // stream sequence of the first record (slot-local, contiguous)
    uint32_t record_count;
    uint64_t charge_bytes; // reserved on the buffer budget for these records
    uint64_t built_pid;    // producer id and wire sequence written into the header
    uint32_t built_wire_seq;
    uint32_t acked_count;
    uint64_t offset; // of the first record, from the first ACK that covered it
    bool offsets_known;
    int err;
    uint32_t partition; // set when retired
    prun *runs;         // send sequences of the records, in batch order; run_count >= 1 if sealed
    uint32_t run_count;
    uint32_t run_cap;
    uint32_t runs_reported;    // reports handed out so far (one per run)
    uint32_t records_reported; // records those reports covered
} pbatch;

// One partition's produce stream and the batches bound for it. Under io.mutex.
typedef struct pslot {
    uint32_t partition;    // asked for in OPEN_PRODUCE (SL_PROTO_PARTITION_ANY: broker picks)
    uint32_t resolved;     // partition of the stream (STREAM_OK), reported with each batch
    pbatch *open;          // receiving records; NULL when none
    int64_t open_since_ns; // when open got its first record
    pbatch *head;          // sealed, oldest first: [head, unsent) sent and unacked
    pbatch *tail;
    pbatch *unsent;     // first batch not yet sent on the current stream
    uint64_t next_pseq; // stream sequence of the next record routed here
    uint64_t pid;       // broker-assigned producer id; 0 before the first STREAM_OK
    uint32_t wire_base; // wire sequence = (uint32_t)(stream sequence + wire_base)
    uint32_t stream_id;
    bool stream_open;       // OPEN_PRODUCE sent
    bool stream_ready;      // STREAM_OK received
    uint32_t seal_bytes;    // the open batch is sealed at this size (adapts to credit)
    uint64_t credit_window; // most credit seen available at once on the current stream
    uint64_t granted_bytes; // cumulative credit of the current stream
    uint64_t sent_bytes;    // cumulative PRODUCE bytes of the current stream
    bool credit_waiting;
    int64_t paused_until_ns; // THROTTLE or reopen delay of this stream only
} pslot;

// Wire sequence of stream sequence pseq on the slot's current stream.
static inline uint32_t
sl__pslot_wire_seq(const pslot *s, uint64_t pseq)
{
    return (uint32_t)(pseq + s->wire_base);
}

void sl__pbatch_free(pbatch *b);
pbatch *sl__pbatch_new(size_t cap);
// Makes room for one more run: SL_OK, SL_ENOMEM, or SL_EFULL at PRODUCER_RUNS_MAX (seal it).
int sl__pbatch_runs_grow(pbatch *b);
bool sl__pbatch_run_extends(const pbatch *b, uint64_t seq);
// Drops the first n records from a batch's runs (they were moved elsewhere).
void sl__pbatch_runs_skip(pbatch *b, uint32_t n);
// Doubles an open batch's buffer (at least to fit need more bytes), up to limit.
int sl__pbatch_grow(pbatch *b, size_t need, size_t limit);
// Fills r with the next report of a retired batch; true once its last run is reported.
bool sl__pbatch_report_next(pbatch *b, sl_delivery_report *r);
// Decodes a read record's headers into a temporary array (the builder takes sl_header views);
// the caller frees *hs_out (*size_out bytes) when it is not NULL.
int sl__record_headers_view(sl_record *r, sl_header **hs_out, size_t *size_out);
// Finishes a batch, compressed with the configured codec when there is one. The codec writes to
// a scratch buffer first (the builder keeps the smaller form); without memory for it, or when
// compression does not pay, the batch is stored uncompressed, which every reader accepts.
int sl__pbatch_finish(sl_compression compression, sl_batch_builder *b, size_t *len_out);
// The uncompressed form of a batch: src itself, or a decompressed copy in *tmp (caller frees
// *tmp_cap bytes when *tmp is not NULL).
int sl__pbatch_plain(const pbatch *src, const uint8_t **plain, size_t *plain_len, uint8_t **tmp,
                     size_t *tmp_cap);
// Re-encodes a batch whose header carries a stale producer id or sequence (built before the
// broker assigned them, or before it forgot this producer).
int sl__pbatch_rebuild(sl_compression compression, const pslot *s, pbatch *b);
// Splits an unsent, unacked batch in two halves (the second follows it in the queue), for a
// batch larger than the credit window the broker offers. The buffer charge is split exactly.
int sl__pbatch_split(sl_compression compression, pslot *s, pbatch *b);

#endif
