// Key-hash routing (keyhash.c): the instance of instance_count that key belongs to.
#ifndef SLUICE_PIPELINE_KEYHASH_H
#define SLUICE_PIPELINE_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t sl__pipe_key_route(const void *key, size_t key_size, uint32_t instance_count);

#endif
