// The admin HTTP port of `sluice pipe` (pipe_admin.c): /metrics, /stats, /explain.
#ifndef SLUICE_CLI_PIPE_ADMIN_H
#define SLUICE_CLI_PIPE_ADMIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/metrics.h>
#include <sluice/pipeline.h>

typedef struct sl_cli_pipe_admin {
    sl_pipeline *pipeline;         // borrowed: set before start, outlives the server
    sl_metrics_registry *registry; // borrowed
    const char *name;              // borrowed
    int listen_fd;
    uint16_t port; // bound port (after start)
    pthread_t thread;
    atomic_bool stop;
} sl_cli_pipe_admin;

// Binds address (HOST:PORT, port 0 for an ephemeral one) and starts serving. err gets a message.
int sl_cli_pipe_admin_start(sl_cli_pipe_admin *a, const char *address, char *err, size_t err_size);
void sl_cli_pipe_admin_stop(sl_cli_pipe_admin *a);

#endif
