// Key-hash routing's one dependency on the client layer: the same FNV-1a partitioner producers
// use (sl_partition_for_key), so a key lands on instance hash mod n like on a partition. Kept
// apart because sluice/client.h (through proto.h) and sluice/channel.h both define
// sl_full_policy and cannot be included together.
#include <sluice/client.h>

#include "pipeline/keyhash.h"

uint32_t
sl__pipe_key_route(const void *key, size_t key_size, uint32_t instance_count)
{
    return sl_partition_for_key(key, key_size, instance_count);
}
