// CRC32C: hardware (SSE4.2) and portable slicing-by-8, chosen once at first use.
#include "log/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;
static atomic_int crc_hw_state; // 0 unknown, 1 absent, 2 present

static void
crc_table_build(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
        }
    }
}

uint32_t
sl__crc32c_portable(uint32_t crc, const void *data, size_t size)
{
    pthread_once(&crc_table_once, crc_table_build);
    const uint8_t *p = data;
    crc = ~crc;
    while (size >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc_table[7][word & 0xFF] ^ crc_table[6][(word >> 8) & 0xFF] ^
              crc_table[5][(word >> 16) & 0xFF] ^ crc_table[4][(word >> 24) & 0xFF] ^
              crc_table[3][(word >> 32) & 0xFF] ^ crc_table[2][(word >> 40) & 0xFF] ^
              crc_table[1][(word >> 48) & 0xFF] ^ crc_table[0][word >> 56];
        p += 8;
        size -= 8;
    }
    while (size-- > 0) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    }
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t
sl__crc32c_hw(uint32_t crc, const void *data, size_t size)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (size >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        size -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (size-- > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return ~c32;
}

int
sl__crc32c_hw_available(void)
{
    int state = atomic_load_explicit(&crc_hw_state, memory_order_relaxed);
    if (state == 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        atomic_store_explicit(&crc_hw_state, state, memory_order_relaxed);
    }
    return state == 2;
}
#else
uint32_t
sl__crc32c_hw(uint32_t crc, const void *data, size_t size)
{
    return sl__crc32c_portable(crc, data, size);
}

int
sl__crc32c_hw_available(void)
{
    return 0;
}
#endif

uint32_t
sl_crc32c(uint32_t crc, const void *data, size_t size)
{
    if (sl__crc32c_hw_available()) {
        return sl__crc32c_hw(crc, data, size);
    }
    return sl__crc32c_portable(crc, data, size);
}
