// Structures the log's files share: the log, its segments, the batch scanner and the sparse
// index. log.c appends and reads, segment.c owns files and the scanner, index.c the index,
// recovery.c opening, flush.c durability, retention.c deletion. Layout: docs/storage.md.
#ifndef SLUICE_LOG_INTERNAL_H
#define SLUICE_LOG_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include <sluice/batch.h>
#include <sluice/log.h>

// Bytes of one index entry on disk: {u32 relative offset, u32 file position}, little-endian.
#define SL__INDEX_ENTRY_BYTES 8u
// Smallest possible batch: header plus one empty record. Bounds index entries per segment.
#define SL__BATCH_BYTES_MIN (SL_BATCH_HEADER_BYTES + SL_RECORD_HEADER_BYTES)
// Bytes the scanner reads per pread: a page holds the headers of every batch one index interval
// spans at the default spacing, so a lookup costs one index probe plus usually one pread.
#define SL__SCAN_CHUNK_BYTES 4096u
// Scratch for CRC verification of batches read through the scanner (recovery, ranges): larger
// batches are checked in pieces. Drawn from the memory budget.
#define SL__VERIFY_CHUNK_BYTES (64u * 1024u)
// Longest file name: 20 digits, a dot, "index", ".tmp", NUL.
#define SL__FILE_NAME_MAX 40u
// Dirty segments one sync pass covers; more (many tiny rolls) take more passes.
#define SL__SYNC_SEGMENTS_MAX 32u
// Longest message line handed to message_cb.
#define SL__MESSAGE_BYTES_MAX 512u

_Static_assert(SL_LOG_SEGMENT_BYTES_MAX + (uint64_t)SL_BATCH_SIZE_MAX < UINT32_MAX,
               "file positions must fit the index's u32");
_Static_assert(SL__SCAN_CHUNK_BYTES >= SL_BATCH_HEADER_BYTES, "a chunk holds a header");

typedef struct sl__index_entry {
    uint32_t relative_offset; // record offset minus the segment's base offset
    uint32_t file_pos;        // position of the batch holding that offset
} sl__index_entry;

// A segment: one .log file and its .index. Fields marked (log) are guarded by the log's mutex;
// (appender) are touched only under the append mutex; the rest are fixed at creation.
struct sl_log_segment {
    uint64_t base_offset;
    int fd;                   // .log, read-write
    int index_fd;             // .index, read-write
    uint32_t refs;            // (log) the log's own reference plus read leases
    bool deleted;             // (log) unlinked by retention; freed at the last release
    uint64_t size;            // (log) published bytes: whole valid batches only
    uint64_t end_offset;      // (log) one past the last record published
    uint64_t synced_size;     // (log) bytes known to be on stable storage
    int64_t max_timestamp_us; // (log) newest record timestamp seen (retention by age)
    int64_t created_ms;       // wall clock at creation or open (roll by age)
    uint64_t charged_bytes;   // (log) bytes reserved on the disk budget, released at deletion
    // Sparse index. Active segment: entries live in memory too (index != NULL), read under the
    // log mutex. Closed: lookups pread the file. index_count entries are in the file.
    sl__index_entry *index; // (log) NULL once closed
    uint32_t index_capacity;
    uint32_t index_count;    // (log)
    uint64_t index_last_pos; // (appender) file position of the newest entry (0: none)
    uint64_t hint_offset;    // (log) a read ended here ...
    uint64_t hint_pos;       // (log) ... at this file position (sequential readers skip the index)
    bool index_missing;      // the .index file did not exist at open
};

struct sl_log {
    sl_log_config cfg; // dir_path points at dir below
    char dir[PATH_MAX];
    int dir_fd;
    uint64_t index_capacity; // entries an active segment can need

    pthread_mutex_t append_mutex; // serializes appends, rolls and retention's unlinks
    pthread_mutex_t mutex;        // guards the (log) fields and everything below
    pthread_cond_t flush_cond;    // the flusher waits for data (CLOCK_MONOTONIC)
    pthread_cond_t durable_cond;  // waiters wait for the durable offset (CLOCK_MONOTONIC)
    sl_log_segment **segments;    // sorted by base offset; the last is active
    uint32_t segment_count;
    uint32_t segment_capacity;
    uint64_t end_offset;
    uint64_t durable_offset;
    uint64_t low_watermark;
    uint64_t size_bytes;      // sum of segment sizes
    bool dir_dirty;           // a file was created since the last directory fsync
    bool sync_running;        // a sync pass is between its capture and its publish
    uint32_t durable_waiters; // threads in sl_log_wait_durable (under ALWAYS they lead)
    bool closing;
    int failed; // SL_OK, or the sticky error after a failed fsync
    bool flusher_running;
    pthread_t flusher;
    sl_log_stats stats; // counters (start/end/durable filled at snapshot)
};

// ---- segment.c ----------------------------------------------------------------------------------

// Writes "<20-digit base>.<ext>" into name (SL__FILE_NAME_MAX).
void sl__segment_name(uint64_t base_offset, const char *ext, char *name);

// Opens (create: truncating a new one) the segment files of base_offset. Charges the struct
// to the memory budget. On failure nothing stays open.
int sl__segment_open(sl_log *log, uint64_t base_offset, bool create, sl_log_segment **seg_out);

// Gives the segment an in-memory index of the log's capacity (it becomes appendable).
int sl__segment_make_active(sl_log *log, sl_log_segment *seg);

// Frees the in-memory index (the segment was rolled); the file keeps the entries.
void sl__segment_make_closed(sl_log *log, sl_log_segment *seg);

// Drops a reference; the last one closes the files and frees the segment.
void sl__segment_unref(sl_log *log, sl_log_segment *seg);

// Reads exactly size bytes at pos: SL_OK, SL_EAGAIN (end of file first) or SL_EIO.
int sl__pread_full(int fd, void *buf, size_t size, uint64_t pos);

// Writes all iov bytes at pos (bounded retries on short writes): SL_OK, SL_ENOSPC or SL_EIO.
int sl__pwritev_full(int fd, struct iovec *iov, int iov_count, uint64_t pos);

// Walks batches by header from a file position, optionally verifying each one's CRC.
typedef struct sl__scan {
    int fd;
    uint64_t pos;         // file position of the next batch
    uint64_t limit;       // end of the bytes to scan
    uint64_t next_offset; // base offset the next batch must have
    uint8_t *verify_buf;  // NULL: headers only; else SL__VERIFY_CHUNK_BYTES of scratch
    uint8_t *window;      // bytes read ahead: verify_buf when verifying, else chunk
    uint32_t window_cap;
    uint64_t window_pos; // file position of window[0]
    uint32_t window_len; // valid bytes in window
    uint8_t chunk[SL__SCAN_CHUNK_BYTES];
} sl__scan;

void sl__scan_init(sl__scan *s, int fd, uint64_t pos, uint64_t limit, uint64_t next_offset,
                   uint8_t *verify_buf);

// Decodes the batch at s->pos into *h and steps past it. SL_OK; SL_ENOENT at the limit; SL_EAGAIN
// for a batch cut by the limit (torn); SL_ECORRUPT for a bad header, CRC or offset; SL_EIO.
int sl__scan_next(sl__scan *s, sl_batch_header *h);

// ---- index.c ------------------------------------------------------------------------------------

// Reads entry i of a segment's index (memory when active, else the file).
int sl__index_entry_at(const sl_log_segment *seg, uint32_t i, sl__index_entry *entry_out);

// Finds the file position and offset to start scanning for offset: the newest entry at or below
// it, checked against the batch header it points to (a bad entry falls back to position 0).
// Call with the log mutex held for an active segment's in-memory index.
int sl__index_lookup(sl_log_segment *seg, uint32_t count, uint64_t offset, uint64_t *pos_out,
                     uint64_t *start_offset_out);

// Adds an entry for the batch at pos (appender; when the interval says so). Write failures only
// make the index sparser (the file is cut back to whole entries).
void sl__index_maybe_add(sl_log *log, sl_log_segment *seg, uint64_t batch_offset, uint64_t pos);

// Checks the index file against the segment's size; on damage (or absence) rebuilds it by
// scanning headers. Loads the entries into memory when the segment is active.
int sl__index_load(sl_log *log, sl_log_segment *seg, uint64_t file_size, bool *rebuilt_out);

// Drops entries at or past file_size (after a truncation), in memory and in the file.
int sl__index_truncate(sl_log_segment *seg, uint64_t file_size);

// ---- log.c / flush.c / retention.c -------------------------------------------------------------

// Formats a line and hands it to message_cb (or stderr).
void sl__log_message(sl_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int sl__log_mem_reserve(sl_log *log, size_t bytes);
void sl__log_mem_release(sl_log *log, size_t bytes);

// Inserts seg at the end of the segment table (mutex held). SL_EFULL at SL_LOG_SEGMENTS_MAX.
int sl__log_segments_push(sl_log *log, sl_log_segment *seg);

// Starts and stops the flusher thread.
int sl__flush_start(sl_log *log);
void sl__flush_stop(sl_log *log);

// One group commit: syncs every segment with unsynced bytes and the directory when dirty, then
// publishes the durable offset. SL_OK, SL_EIO (sticky), or SL_EAGAIN when another pass is
// running (its publish wakes durable_cond; wait there).
int sl__flush_pass(sl_log *log);

// Wakes the flusher (mutex held) after an append.
void sl__flush_notify(sl_log *log);

// Recovery on open (recovery.c): loads segments, scans the tail, fills the report.
int sl__recovery_run(sl_log *log, sl_log_recovery_report *report);

// Consistency check of the segment table (mutex held), for SL_DEBUG_ASSERT.
bool sl__log_check(const sl_log *log);

#endif
