// Shared test helpers (see test_util.h).
#include "support/test_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void
sl_test_tmpdir(char *out, size_t out_size)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    int n = snprintf(out, out_size, "%s/sluice-test-XXXXXX", base);
    assert_true(n > 0 && (size_t)n < out_size);
    assert_non_null(mkdtemp(out));
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
sl_test_rmtree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t
sl_test_seed(void)
{
    const char *env = getenv("SL_TEST_SEED");
    uint64_t seed =
        env != NULL ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    if (seed == 0) {
        seed = 0x9e3779b97f4a7c15ull;
    }
    fprintf(stderr, "SL_TEST_SEED=%llu\n", (unsigned long long)seed);
    return seed;
}

uint64_t
sl_test_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}
