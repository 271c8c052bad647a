// Operators `sluice pipe` builds from a pipeline file's [operator NAME] sections: JSON filter,
// projection and re-keying (jansson), windows, identity, and the runtime's built-in delay,
// sample and ratelimit. Each keeps its configuration in a state owned by a sl_cli_pipe_ops, which
// must outlive the pipeline.
#ifndef SLUICE_CLI_PIPE_OPS_H
#define SLUICE_CLI_PIPE_OPS_H

#include <stddef.h>

#include <sluice/pipeline.h>

#include "cli/pipe_config.h"

// Operators a pipeline file may declare, at most (as many as stages).
#define SL_CLI_PIPE_OPS_MAX SL_PIPE_CONFIG_STAGES_MAX

typedef struct sl_cli_pipe_ops {
    void *states[SL_CLI_PIPE_OPS_MAX];
    void (*frees[SL_CLI_PIPE_OPS_MAX])(void *state);
    size_t count;
} sl_cli_pipe_ops;

void sl_cli_pipe_ops_init(sl_cli_pipe_ops *ops);
// Frees every operator state (after sl_pipeline_free).
void sl_cli_pipe_ops_fini(sl_cli_pipe_ops *ops);

// Adds the operator stage st (type and parameters from the file) to p with cfg. err gets
// "file:line: why" for a bad type or parameter (SL_EINVAL).
int sl_cli_pipe_add_operator(sl_cli_pipe_ops *ops, sl_pipeline *p, const sl_pipe_config_stage *st,
                             const sl_pipe_stage_config *cfg, const char *file, char *err,
                             size_t err_size);

// True when records routed into an operator of this type should go by key (windows).
bool sl_cli_pipe_op_wants_key(const char *type);

// A line of --help listing the operator types.
extern const char sl_cli_pipe_ops_help[];

#endif
