// Internals of bounded channels shared with their tests: the consistency checker and the switch
// between asymmetric (membarrier) and plain fences.
#ifndef SLUICE_CORE_CHANNEL_INTERNAL_H
#define SLUICE_CORE_CHANNEL_INTERNAL_H

#include <stdbool.h>

#include <sluice/channel.h>

// True when the channel's indices and byte counters are consistent: 0 <= depth <= capacity, bytes
// out <= bytes in, queued bytes <= capacity_bytes. O(1) and lock-free, so it may run from any
// thread while others push and pop; run after each mutation through SL_DEBUG_ASSERT.
bool sl__channel_check(const sl_channel *ch);

// Channels created after this call use asymmetric fences when enabled and the kernel offers
// membarrier (the default), else plain seq_cst fences on both sides. For tests of both protocols.
void sl__channel_set_asym_fences(bool enabled);

// Whether ch uses asymmetric fences.
bool sl__channel_asym_fences(const sl_channel *ch);

#endif
