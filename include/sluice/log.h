// The partition log: a directory of segment files holding record batches (sluice/batch.h) in
// offset order, each with a sparse offset index. Appends are batched and assigned dense offsets;
// a flusher thread makes them durable (group commit) and publishes the durable offset that acks
// wait for; recovery on open truncates a torn tail; retention deletes whole segments but, in
// lossless mode, never past the owner's low watermark. On-disk layout: docs/storage.md.
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <sys/uio.h>

#include <sluice/budget.h>
#include <sluice/defs.h>

typedef struct sl_log sl_log;
typedef struct sl_log_segment sl_log_segment; // opaque; held by a read lease (sl_log_range)

// Default roll size: 128 MiB, large enough that a roll (two file creates, one directory fsync) is
// rare, small enough that retention frees disk in useful steps.
#define SL_LOG_SEGMENT_BYTES_DEFAULT (128u * 1024u * 1024u)
// Smallest roll size accepted (tests use tiny segments); a bigger batch still gets a segment alone.
#define SL_LOG_SEGMENT_BYTES_MIN 1024u
// Largest roll size: 1 GiB keeps every file position (segment bytes plus one oversized batch) in
// the index's u32 with room to spare. Hard ceiling 4 GiB minus SL_BATCH_SIZE_MAX.
#define SL_LOG_SEGMENT_BYTES_MAX (1024u * 1024u * 1024u)
// Default spacing of sparse index entries: a read scans at most this much (plus one batch) past
// the entry it finds. 4 KiB is one page: one pread covers the scan.
#define SL_LOG_INDEX_INTERVAL_BYTES_DEFAULT 4096u
// Most segments one log holds; the segment table never grows past it (SL_ETOOBIG on open, SL_EFULL
// on roll). At the default size this is 12 TiB per partition.
#define SL_LOG_SEGMENTS_MAX 100000u
// Default flush period of SL_LOG_FSYNC_INTERVAL.
#define SL_LOG_FSYNC_INTERVAL_MS_DEFAULT 100u

typedef enum sl_log_fsync {
    SL_LOG_FSYNC_ALWAYS = 0,   // group commit: the flusher thread syncs as soon as data is pending
    SL_LOG_FSYNC_INTERVAL = 1, // the flusher syncs every fsync_interval_ms
    SL_LOG_FSYNC_NEVER = 2,    // only sl_log_flush (and a clean close) syncs
} sl_log_fsync;

// Called for each notable event (recovery truncation, rebuilt index, I/O failure) with one line
// of text (no newline). Runs on the thread that saw the event; must not call into the log.
typedef void (*sl_log_message_cb)(const char *line, void *user);

typedef struct sl_log_config {
    const char *dir_path;   // borrowed, copied; the partition's directory (created if absent)
    uint64_t segment_bytes; // roll size; 0 picks SL_LOG_SEGMENT_BYTES_DEFAULT
    int64_t segment_ms;     // roll age (wall clock since the segment's creation); 0: never
    uint32_t index_interval_bytes; // sparse index spacing; 0 picks the default
    sl_log_fsync fsync_policy;
    uint32_t fsync_interval_ms;   // SL_LOG_FSYNC_INTERVAL only; 0 picks the default
    uint64_t retention_bytes;     // delete old segments past this total; 0: no size limit
    int64_t retention_ms;         // delete segments whose newest record is older; 0: no limit
    bool lossless;                // retention never passes the low watermark
    sl_budget *disk_budget;       // borrowed, optional: charged per appended byte
    sl_budget *memory_budget;     // borrowed, optional: index arrays, segment table, scratch
    sl_log_message_cb message_cb; // optional; NULL prints to stderr
    void *message_user;
} sl_log_config;

// What recovery found and did when the log was opened.
typedef struct sl_log_recovery_report {
    uint32_t segment_count;          // segments after recovery
    uint32_t segments_scanned;       // tail segments whose every batch's CRC was verified
    uint32_t indexes_rebuilt;        // missing or damaged index files rewritten
    uint32_t segments_removed;       // empty tail segments dropped (names past the end)
    uint64_t start_offset;           // first offset held
    uint64_t end_offset;             // next offset to assign
    uint64_t scanned_bytes;          // bytes CRC-verified
    uint64_t truncated_bytes;        // torn or corrupt tail bytes cut off (0: clean)
    uint64_t truncated_offset_first; // first offset lost (== end_offset) when truncated_bytes > 0
    uint64_t truncated_offset_end;   // best-effort end of what was lost, from readable headers
    uint32_t gap_count;              // segment boundaries whose offsets do not meet (logged)
} sl_log_recovery_report;

// Counters, consistent snapshot.
typedef struct sl_log_stats {
    uint64_t start_offset;
    uint64_t end_offset;
    uint64_t durable_offset;
    uint64_t low_watermark;
    uint64_t size_bytes; // bytes of all segment files
    uint32_t segment_count;
    uint64_t appended_batches;
    uint64_t appended_bytes;
    uint64_t full_total;   // appends refused with SL_EFULL (budget or ENOSPC)
    uint64_t enospc_total; // of those, refused by the filesystem
    uint64_t fsync_total;  // fdatasync calls on segment files
    uint64_t rolled_total;
    uint64_t deleted_segments;
    uint64_t corrupt_reads; // reads answered SL_ECORRUPT
} sl_log_stats;

// A byte range of a segment file for sendfile(2): length bytes of whole batches at file_pos in
// fd, the first starting at base_offset. Each range holds a lease on its segment: the fd stays
// open (the file stays readable even if retention deletes it) until sl_log_ranges_release.
typedef struct sl_log_range {
    int fd;
    uint64_t file_pos;
    uint64_t length;
    uint64_t base_offset;
    uint64_t end_offset;   // one past the last record covered
    sl_log_segment *lease; // owned by the range until released
} sl_log_range;

// sl_log_read_ranges flags.
#define SL_LOG_RANGES_NO_VERIFY 1u // skip the CRC pass (framing and offsets are still checked)

// Opens (creating if needed) the log in cfg->dir_path and recovers it: scans the tail, verifies
// CRCs, truncates a torn tail, rebuilds damaged indexes; report_out (optional) says what was done.
// Starts the flusher thread for ALWAYS and INTERVAL. On success the caller owns *log_out (close it
// with sl_log_close). Errors: SL_EINVAL (config), SL_EIO, SL_ENOMEM, SL_EFULL (memory budget),
// SL_ETOOBIG (more than SL_LOG_SEGMENTS_MAX segments). The directory must not be open twice.
SL_API SL_MUST_USE int sl_log_open(const sl_log_config *cfg, sl_log **log_out,
                                   sl_log_recovery_report *report_out);

// Syncs (unless fsync_policy is NEVER), stops the flusher, wakes every waiter with SL_ECLOSED
// and frees the log. Ranges still leased stay valid until released (release before close is
// required: asserted). NULL is a no-op.
SL_API void sl_log_close(sl_log *log);

// Validates one encoded batch (header, CRC, framing; len must equal its length), writes its base
// offset in place (the caller's buffer is modified), appends it and returns the offset of its first
// record in *base_offset_out. Never blocks on fsync. Returns SL_OK; SL_ECORRUPT or SL_EINVAL for
// a bad batch; SL_EFULL when the disk budget (partition or global) or the filesystem is full
// (backpressure: nothing was written, the log stays consistent, retry after retention or when
// space returns); SL_EIO after an I/O failure (fsync failures are sticky: reopen the log).
// One appender thread at a time (appends are serialized by a mutex).
SL_API SL_MUST_USE int sl_log_append(sl_log *log, void *batch, size_t len,
                                     uint64_t *base_offset_out);

// Appends count batches (iov_base/iov_len each one whole batch) with as few writes as possible.
// All batches are validated before any is written. On return *appended_out (optional) says how
// many leading batches were appended, also on failure; *base_offset_out is the first one's offset.
SL_API SL_MUST_USE int sl_log_appendv(sl_log *log, const struct iovec *batches, size_t count,
                                      uint64_t *base_offset_out, size_t *appended_out);

// Copies whole batches starting with the one that holds offset into buf (capacity cap), up to
// max_bytes in total, from one segment, each CRC-verified; *len_out is the byte count. The first
// batch is returned even when it is larger than max_bytes, so a big batch never stalls a reader;
// if it exceeds cap, returns SL_ETOOBIG with its length in *len_out. The first batch may start
// before offset (skip those records). Returns SL_OK (len 0 at the end offset), SL_ERANGE (offset
// below the start or past the end), SL_ECORRUPT (the batch at offset fails its checks: never
// returned as data; later batches in the same read are cut before a bad one). Thread-safe.
SL_API SL_MUST_USE int sl_log_read(sl_log *log, uint64_t offset, size_t max_bytes, void *buf,
                                   size_t cap, size_t *len_out);

// As sl_log_read, but returns up to n file ranges (across segments) for sendfile instead of
// copying. Each range must be handed back with sl_log_ranges_release. Unless flags has
// SL_LOG_RANGES_NO_VERIFY, every batch's CRC is checked by reading it once (page cache).
SL_API SL_MUST_USE int sl_log_read_ranges(sl_log *log, uint64_t offset, size_t max_bytes,
                                          unsigned flags, sl_log_range *ranges, size_t n,
                                          size_t *count_out);

// Releases the leases of count ranges filled by sl_log_read_ranges.
SL_API void sl_log_ranges_release(sl_log *log, sl_log_range *ranges, size_t count);

// First offset held (advances when retention deletes segments).
SL_API uint64_t sl_log_start_offset(sl_log *log);

// Next offset to assign; every offset below it is readable.
SL_API uint64_t sl_log_end_offset(sl_log *log);

// Every offset below this is on stable storage (fdatasync returned).
SL_API uint64_t sl_log_durable_offset(sl_log *log);

// Blocks until the durable offset reaches offset (pass base + record_count to wait for a batch) or
// deadline_ns passes. Returns SL_OK, SL_ETIMEDOUT, SL_ECLOSED (log closing), SL_EIO (fsync failed)
// or SL_ERANGE (offset past the end offset: it could never become durable). Under ALWAYS a waiter
// that finds no sync running runs the fdatasync itself (group-commit leader), so it may overrun
// deadline_ns by one fdatasync; SL_DEADLINE_NOW never syncs.
SL_API SL_MUST_USE int sl_log_wait_durable(sl_log *log, uint64_t offset, int64_t deadline_ns);

// Syncs everything appended so far on the calling thread and advances the durable offset.
// Blocks for the fdatasync. Returns SL_OK or SL_EIO.
SL_API SL_MUST_USE int sl_log_flush(sl_log *log);

// Sets the low watermark (the slowest consumer group's committed offset): in lossless mode
// retention never deletes a segment holding an offset >= it. It only moves forward.
SL_API void sl_log_set_low_watermark(sl_log *log, uint64_t offset);

// Deletes whole closed segments past retention_bytes or older than retention_ms at now_us (wall
// clock, microseconds since the epoch; compared with record timestamps), never the active segment
// and, in lossless mode, never past the low watermark. Releases their disk budget. Returns the
// number of segments deleted or a negative SL_E* code. Thread-safe with appends and reads.
SL_API SL_MUST_USE int sl_log_retention_run(sl_log *log, int64_t now_us);

// Copies a snapshot of the counters.
SL_API void sl_log_stats_get(sl_log *log, sl_log_stats *stats_out);

#endif
