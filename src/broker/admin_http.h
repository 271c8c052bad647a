// sluiced's admin HTTP endpoint (libmicrohttpd): /metrics (Prometheus text), /stats (JSON),
// /healthz. The HTTP thread never reads broker state: it hands each request to the event loop,
// which renders it from a registry built fresh for that scrape (metrics.c), and waits for the
// answer with a timeout. Metric names: docs/metrics.md, "Broker".
#ifndef SLUICE_BROKER_ADMIN_HTTP_H
#define SLUICE_BROKER_ADMIN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/metrics.h>

typedef struct sl_broker sl_broker;

// How long the HTTP thread waits for the loop to take and render a request before it answers 503.
#define SL_ADMIN_RENDER_TIMEOUT_MS 2000
// Connections the HTTP server holds at once; more are refused by the server.
#define SL_ADMIN_CONNECTIONS_MAX 16u
// An idle or slow admin connection is closed after this many seconds.
#define SL_ADMIN_CONNECTION_TIMEOUT_S 5u
// Memory one admin connection may use for its request (headers included): bigger requests are
// answered with an error by the server and never reach the broker.
#define SL_ADMIN_CONNECTION_MEMORY_BYTES (32u * 1024u)
// The response buffer starts at this size and grows up to SL_ADMIN_RESPONSE_BYTES_MAX; a
// response that does not fit the cap is a 500 that says so.
#define SL_ADMIN_RESPONSE_BYTES_INITIAL (64u * 1024u)
#define SL_ADMIN_RESPONSE_BYTES_MAX     (8u * 1024u * 1024u)
// Series one scrape's registry may hold; beyond it series are left out and counted in
// sluice_admin_series_dropped.
#define SL_ADMIN_SERIES_MAX 32768u

typedef enum sl_admin_page {
    SL_ADMIN_PAGE_METRICS = 1,
    SL_ADMIN_PAGE_STATS = 2,
    SL_ADMIN_PAGE_HEALTHZ = 3,
    SL_ADMIN_PAGE_WHY = 4,    // /why?topic=T[&group=G] (why.c)
    SL_ADMIN_PAGE_DROPS = 5,  // /drops[?topic=T] (drops.c)
    SL_ADMIN_PAGE_INJECT = 6, // /debug/inject?kind=K, only with SLUICED_TEST_HOOKS=1 (tests)
} sl_admin_page;

// Longest query argument kept (a topic name, a group name, a resync kind).
#define SL_ADMIN_ARG_BYTES 256u
// The environment variable that enables /debug/inject (tests break an invariant through it).
#define SL_ADMIN_TEST_HOOKS_ENV "SLUICED_TEST_HOOKS"

// Starts the endpoint when config.admin_enabled (otherwise does nothing and returns SL_OK).
// Called on the loop thread after b->loop exists. Returns SL_OK, or SL_EIO with a message when the
// address cannot be bound, SL_ENOMEM.
int sl_admin_open(sl_broker *b, char *err, size_t err_size);

// Stops the HTTP server (waiting requests get 503) and closes the loop handle; the rest is freed
// by the close callback, which the caller's next uv_run runs. Safe when never opened.
void sl_admin_close(sl_broker *b);

// The bound admin port (0 when the endpoint is off).
uint16_t sl_admin_port(const sl_broker *b);

// ---- metrics.c (loop thread only)

// Counters of the admin endpoint itself, exported with the broker's metrics.
typedef struct sl_admin_counters {
    uint64_t scrapes;        // /metrics and /stats renders
    uint64_t timeouts;       // requests answered 503 because the loop did not answer in time
    uint64_t too_large;      // responses refused because they exceeded the cap
    uint64_t series_dropped; // series left out of the last scrape (SL_ADMIN_SERIES_MAX)
} sl_admin_counters;

// Builds a registry holding every broker metric as of now: fresh per scrape, so topics and
// connections that come and go need no registration hooks. values (value_cap doubles, caller's)
// hold the numbers the series' read callbacks return; they must outlive the registry's use.
// Returns SL_OK, SL_ENOMEM. Series beyond the registry's limit are counted, not an error.
int sl_broker_metrics_build(sl_broker *b, const sl_admin_counters *counters, double *values,
                            size_t value_cap, sl_metrics_registry **registry_out,
                            uint64_t *series_dropped_out);

#endif
