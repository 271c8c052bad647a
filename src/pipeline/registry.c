// Endpoint registry: source and sink operations found by URI scheme. A bounded table filled
// with the built-ins (gen, callback) and by sl_pipe_register_* (file, tcp, sluice, kafka), meant
// to be filled once at start-up before pipelines are built; lookups and registration are
// serialized by one mutex so late registration is still safe.
#include <pthread.h>
#include <string.h>

#include "core/util.h"
#include "pipeline/endpoint_util.h"
#include "pipeline/pipeline_internal.h"

// Schemes of each kind: built-ins plus a handful of registered ones.
#define REGISTRY_ENTRIES_MAX 32u

static pthread_mutex_t g_registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static const sl_pipe_source_ops *g_sources[REGISTRY_ENTRIES_MAX] = {
    &sl__pipe_gen_source_ops, &sl__pipe_source_file, &sl__pipe_source_tcp, &sl__pipe_source_topic};
static uint32_t g_source_count = 4;
static const sl_pipe_sink_ops *g_sinks[REGISTRY_ENTRIES_MAX] = {
    &sl__pipe_callback_sink_ops, &sl__pipe_sink_file, &sl__pipe_sink_tcp, &sl__pipe_sink_topic};
static uint32_t g_sink_count = 4;

int
sl_pipe_register_source(const sl_pipe_source_ops *ops)
{
    if (ops == NULL || ops->scheme == NULL || ops->create == NULL || ops->poll == NULL) {
        return SL_EINVAL;
    }
    pthread_mutex_lock(&g_registry_mutex);
    int err = SL_OK;
    for (uint32_t i = 0; i < g_source_count && err == SL_OK; i++) {
        if (strcmp(g_sources[i]->scheme, ops->scheme) == 0) {
            err = SL_EEXIST;
        }
    }
    if (err == SL_OK && g_source_count >= REGISTRY_ENTRIES_MAX) {
        err = SL_EFULL;
    }
    if (err == SL_OK) {
        g_sources[g_source_count++] = ops;
    }
    pthread_mutex_unlock(&g_registry_mutex);
    return err;
}

int
sl_pipe_register_sink(const sl_pipe_sink_ops *ops)
{
    if (ops == NULL || ops->scheme == NULL || ops->create == NULL || ops->write == NULL) {
        return SL_EINVAL;
    }
    pthread_mutex_lock(&g_registry_mutex);
    int err = SL_OK;
    for (uint32_t i = 0; i < g_sink_count && err == SL_OK; i++) {
        if (strcmp(g_sinks[i]->scheme, ops->scheme) == 0) {
            err = SL_EEXIST;
        }
    }
    if (err == SL_OK && g_sink_count >= REGISTRY_ENTRIES_MAX) {
        err = SL_EFULL;
    }
    if (err == SL_OK) {
        g_sinks[g_sink_count++] = ops;
    }
    pthread_mutex_unlock(&g_registry_mutex);
    return err;
}

const sl_pipe_source_ops *
sl_pipe_find_source(const char *scheme)
{
    const sl_pipe_source_ops *found = NULL;
    pthread_mutex_lock(&g_registry_mutex);
    for (uint32_t i = 0; i < g_source_count && scheme != NULL && found == NULL; i++) {
        if (strcmp(g_sources[i]->scheme, scheme) == 0) {
            found = g_sources[i];
        }
    }
    pthread_mutex_unlock(&g_registry_mutex);
    return found;
}

const sl_pipe_sink_ops *
sl_pipe_find_sink(const char *scheme)
{
    const sl_pipe_sink_ops *found = NULL;
    pthread_mutex_lock(&g_registry_mutex);
    for (uint32_t i = 0; i < g_sink_count && scheme != NULL && found == NULL; i++) {
        if (strcmp(g_sinks[i]->scheme, scheme) == 0) {
            found = g_sinks[i];
        }
    }
    pthread_mutex_unlock(&g_registry_mutex);
    return found;
}
