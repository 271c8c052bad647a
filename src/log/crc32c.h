// CRC32C (Castagnoli), the checksum of record batches and index entries. Uses the SSE4.2 crc32
// instruction when the CPU has it, a slicing-by-8 table otherwise; both give the same result.
#ifndef SLUICE_LOG_CRC32C_H
#define SLUICE_LOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// Extends crc (0 to start) over data[0..size).
uint32_t sl_crc32c(uint32_t crc, const void *data, size_t size);

// The two implementations, exposed for tests and benchmarks.
uint32_t sl__crc32c_portable(uint32_t crc, const void *data, size_t size);
uint32_t sl__crc32c_hw(uint32_t crc, const void *data, size_t size); // only if the CPU has it
int sl__crc32c_hw_available(void);

#endif
