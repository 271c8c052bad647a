// The generator source's record layout, for tests, benchmarks and `sluice pipe` demos: a
// generated value starts with the record's sequence number and its send time (monotonic ns),
// both little-endian 64-bit, then zero padding up to the configured value_size.
#ifndef SLUICE_PIPELINE_GEN_H
#define SLUICE_PIPELINE_GEN_H

#include <sluice/pipeline.h>

// Smallest generated value: sequence + send time.
#define SL__GEN_VALUE_MIN 16u

// Reads the sequence and send time of a generated record (0 for a value that is too short).
// sent_ns_out may be NULL.
void sl__gen_decode(const sl_pipe_record *rec, uint64_t *seq_out, int64_t *sent_ns_out);

#endif
