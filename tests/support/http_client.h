// A tiny blocking HTTP/1.0 GET client for tests that read a real process's HTTP endpoint (the
// broker's admin port, a Prometheus server): loopback only, bounded in time and size.
#ifndef SLUICE_TEST_HTTP_CLIENT_H
#define SLUICE_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

// Largest response read; more is cut (and the call fails).
#define SL_TEST_HTTP_RESPONSE_MAX (16u * 1024u * 1024u)

// GETs path from 127.0.0.1:port within timeout_ms. On success returns 0 with *status_out (the HTTP
// status) and *body_out (malloc'ed, NUL-terminated; the caller frees it). -1 when the connection
// failed or no complete answer came in time.
int sl_test_http_get(uint16_t port, const char *path, int timeout_ms, int *status_out,
                     char **body_out);

// The value of the first Prometheus sample whose line starts with prefix and contains every one of
// the NULL-terminated extra strings, in *value_out. Returns 0, or -1 when there is none.
int sl_test_prom_sample(const char *text, const char *prefix, const char *const *extra,
                        double *value_out);

#endif
