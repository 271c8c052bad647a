// Limits that shape memory and the wire. Each caps one thing; the comment says why this value and
// what the hard ceiling is. Relations between them are checked with _Static_assert where used.
#ifndef SLUICE_LIMITS_H
#define SLUICE_LIMITS_H

// Bookkeeping a budget charges per record on top of its payload: slot, pointer, lengths,
// timestamps and allocator rounding, measured on the channel and batch structures (64-bit).
// Charging it makes a byte budget a real cap on memory, not on payload alone.
#define SL_RECORD_OVERHEAD_BYTES 64u

// Default watermarks, in percent of a budget's capacity: push back from HIGH, stop at LOW.
// The gap is the hysteresis that keeps signals from flapping.
#define SL_WATERMARK_HIGH_PCT_DEFAULT 80u
#define SL_WATERMARK_LOW_PCT_DEFAULT  60u

// Largest single record (key + value + headers) the library accepts: 64 MiB. Anything larger is
// refused with SL_ETOOBIG before a byte is buffered.
#define SL_RECORD_SIZE_MAX (64u * 1024u * 1024u)

// Largest channel capacity in records; rings are allocated at init and never grow.
#define SL_CHANNEL_RECORDS_MAX (1u << 24)

// Longest metric, budget or channel name, including the terminating NUL.
#define SL_NAME_MAX 64u

#endif
