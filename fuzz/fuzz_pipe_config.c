// libFuzzer target for the pipeline file parser of `sluice pipe` (src/cli/pipe_config.c). Any
// input must either parse into a consistent description (every edge between existing stages,
// every stage complete) or fail with a "file:line:" message; crashes and sanitizer reports are
// bugs. The parser lives in the CLI, which fuzz targets do not link, so its file is compiled in.
#include <stdint.h>
#include <string.h>

#include <sluice/error.h>

#include "cli/pipe_config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok) {
        __builtin_trap();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_pipe_config *c = NULL;
    char err[256];
    err[0] = '\0';
    int r = sl_pipe_config_parse((const char *)data, size, "fuzz", &c, err, sizeof(err));
    if (r != SL_OK) {
        check(c == NULL);
        check(r == SL_ENOMEM || strncmp(err, "fuzz:", 5) == 0);
        return 0;
    }
    check(c->stage_count > 0 && c->stage_count <= SL_PIPE_CONFIG_STAGES_MAX);
    for (uint32_t i = 0; i < c->edge_count; i++) {
        check(c->edges[i].from < c->stage_count && c->edges[i].to < c->stage_count);
        check(c->stages[c->edges[i].from].kind != SL_PIPE_CONFIG_SINK);
        check(c->stages[c->edges[i].to].kind != SL_PIPE_CONFIG_SOURCE);
    }
    for (uint32_t i = 0; i < c->stage_count; i++) {
        const sl_pipe_config_stage *s = &c->stages[i];
        check(s->kind == SL_PIPE_CONFIG_OPERATOR ? s->type != NULL : s->uri != NULL);
        check(sl_pipe_config_find(c, s->name) == (int)i);
    }
    sl_pipe_config_free(c);
    return 0;
}
