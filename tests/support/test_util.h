// Helpers shared by the unit tests: temp dirs, bounded waits, cmocka includes in the right order.
#ifndef SLUICE_TEST_UTIL_H
#define SLUICE_TEST_UTIL_H

// cmocka needs these before its header.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

// Creates a fresh directory under $TMPDIR (or /tmp) and writes its path to out (size >= 256).
// Fails the test if it cannot.
void sl_test_tmpdir(char *out, size_t out_size);

// Removes a directory tree made by sl_test_tmpdir (bounded depth; ignores errors).
void sl_test_rmtree(const char *path);

// A seed for pseudo-random tests: $SL_TEST_SEED if set, else the time; printed so a failure can
// be replayed.
uint64_t sl_test_seed(void);

// xorshift64*: small, fast, deterministic for a given seed.
uint64_t sl_test_rand(uint64_t *state);

#endif
