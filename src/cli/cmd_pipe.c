// `sluice pipe FILE`: builds the pipeline a file describes (pipe_config.c), runs it until its
// sources end or SIGINT/SIGTERM (then drains: records in flight reach the sinks and are
// committed), optionally printing the bottleneck report every N seconds (--explain) and serving
// /metrics, /stats and /explain on an admin port (--admin). Format: docs/pipelines.md.
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/error.h>
#include <sluice/metrics.h>
#include <sluice/pipeline.h>
#ifdef SL_HAVE_KAFKA
#include <sluice/kafka.h>
#endif

#include "cli/pipe_admin.h"
#include "cli/pipe_config.h"
#include "cli/pipe_ops.h"
#include "core/util.h"

// How often the run loop wakes to notice signals and print --explain.
#define PIPE_WAIT_SLICE_MS 100
// Default time a stop gives records in flight to reach the sinks.
#define PIPE_DRAIN_MS_DEFAULT 10000
// Bottleneck report size.
#define PIPE_EXPLAIN_BYTES 8192u

static const char pipe_usage[] =
    "usage: sluice pipe FILE [options]\n"
    "Runs the pipeline FILE describes (format: docs/pipelines.md) until its sources end or\n"
    "Ctrl-C / SIGTERM, then drains what is in flight and commits it.\n"
    "  --explain SECONDS      print the bottleneck report to stderr every SECONDS (0: only\n"
    "                         at the end)\n"
    "  --admin HOST:PORT      serve /metrics, /stats and /explain over HTTP (port 0: any)\n"
    "  --drain DURATION       how long a stop waits for records in flight (default 10s)\n"
    "  --check                parse and build the pipeline, then exit without running it\n";

typedef struct pipe_opts {
    const char *file;
    int64_t explain_s; // -1: off
    const char *admin;
    int64_t drain_ms;
    bool check;
} pipe_opts;

static int
pipe_opt(void *user, int c, FILE *err)
{
    pipe_opts *o = user;
    uint64_t v = 0;
    switch (c) {
    case 'e':
        if (sl_cli_parse_u64(err, "pipe", "--explain", optarg, &v) != SL_OK) {
            return SL_EINVAL;
        }
        o->explain_s = (int64_t)SL_MIN(v, 86400u);
        return SL_OK;
    case 'a':
        o->admin = optarg;
        return SL_OK;
    case 'd':
        return sl_cli_parse_ms(err, "pipe", "--drain", optarg, &o->drain_ms);
    case 'c':
        o->check = true;
        return SL_OK;
    default:
        sl_cli_fail(err, "pipe", 0, "unknown or incomplete option (see --help)");
        return SL_EINVAL;
    }
}

// The scheme of an endpoint URI: "-" and plain paths are files.
static void
uri_scheme(const char *uri, char *out, size_t cap)
{
    const char *colon = strchr(uri, ':');
    if (strcmp(uri, "-") == 0 || colon == NULL || strchr(uri, '/') < colon) {
        sl__strlcpy(out, "file", cap);
        return;
    }
    size_t n = SL_MIN((size_t)(colon - uri), cap - 1);
    memcpy(out, uri, n);
    out[n] = '\0';
}

static void
stage_cfg(const sl_pipe_config_stage *st, sl_pipe_stage_config *cfg)
{
    sl_pipe_stage_config_init(cfg);
    cfg->parallelism = st->parallelism ? st->parallelism : cfg->parallelism;
    cfg->parallelism_min = st->parallelism_min ? st->parallelism_min : cfg->parallelism;
    cfg->parallelism_max = st->parallelism_max ? st->parallelism_max : cfg->parallelism;
    cfg->parallelism_max = SL_MAX(cfg->parallelism_max, cfg->parallelism);
    cfg->parallelism_min = SL_MIN(cfg->parallelism_min, cfg->parallelism);
    cfg->queue_records = st->queue_records ? st->queue_records : cfg->queue_records;
    cfg->queue_bytes = st->queue_bytes ? st->queue_bytes : cfg->queue_bytes;
}

static int
add_endpoint(sl_pipeline *p, const sl_pipe_config *c, const sl_pipe_config_stage *st,
             const char *file, char *err, size_t err_size)
{
    char scheme[32];
    uri_scheme(st->uri, scheme, sizeof(scheme));
    sl_pipe_stage_config cfg;
    stage_cfg(st, &cfg);
    sl_pipe_endpoint ep = {
        .uri = st->uri, .options = st->options, .option_count = st->option_count};
    int r = SL_OK;
    if (st->kind == SL_PIPE_CONFIG_SOURCE) {
        const sl_pipe_source_ops *ops = sl_pipe_find_source(scheme);
        r = ops == NULL ? SL_ENOENT : sl_pipeline_add_source(p, st->name, ops, &ep, &cfg, NULL);
    } else {
        const sl_pipe_sink_ops *ops = sl_pipe_find_sink(scheme);
        r = ops == NULL ? SL_ENOENT : sl_pipeline_add_sink(p, st->name, ops, &ep, &cfg, NULL);
    }
    SL_UNUSED(c);
    if (r == SL_ENOENT) {
        snprintf(err, err_size,
                 "%s:%d: [%s] no %s endpoint for scheme '%s' (built in: file, tcp, "
                 "sluice, gen)",
                 file, st->line, st->name, st->kind == SL_PIPE_CONFIG_SOURCE ? "source" : "sink",
                 scheme);
    } else if (r != SL_OK) {
        snprintf(err, err_size, "%s:%d: [%s] %s", file, st->line, st->name, sl_strerror(r));
    }
    return r;
}

static int
add_edges(sl_pipeline *p, const sl_pipe_config *c, const char *file, char *err, size_t err_size)
{
    for (uint32_t i = 0; i < c->edge_count; i++) {
        const sl_pipe_config_edge *e = &c->edges[i];
        const sl_pipe_config_stage *to = &c->stages[e->to];
        sl_pipe_route route = e->route;
        if (!e->route_set) {
            bool keyed = to->kind == SL_PIPE_CONFIG_OPERATOR && sl_cli_pipe_op_wants_key(to->type);
            route = keyed ? SL_ROUTE_KEY_HASH : SL_ROUTE_ROUND_ROBIN;
        }
        int r = sl_pipeline_connect(p, sl_pipeline_stage(p, c->stages[e->from].name),
                                    sl_pipeline_stage(p, to->name), route);
        if (r != SL_OK) {
            snprintf(err, err_size, "%s:%d: edge %s -> %s: %s", file, e->line,
                     c->stages[e->from].name, to->name, sl_strerror(r));
            return r;
        }
    }
    return SL_OK;
}

static void
pipeline_cfg(const sl_pipe_config *c, sl_metrics_registry *reg, sl_pipeline_config *cfg)
{
    sl_pipeline_config_init(cfg);
    cfg->name = c->name != NULL ? c->name : cfg->name;
    cfg->memory_budget_bytes =
        c->memory_budget_bytes ? c->memory_budget_bytes : cfg->memory_budget_bytes;
    cfg->autoscale.enabled = c->autoscale;
    if (c->autoscale_interval_ms > 0) {
        cfg->autoscale.interval_ms = (uint32_t)SL_MIN(c->autoscale_interval_ms, UINT32_MAX);
    }
    if (c->autoscale_cooldown_ms > 0) {
        cfg->autoscale.cooldown_ms = (uint32_t)SL_MIN(c->autoscale_cooldown_ms, UINT32_MAX);
    }
    if (c->autoscale_target_utilization > 0) {
        cfg->autoscale.target_utilization = c->autoscale_target_utilization;
    }
    if (c->autoscale_tolerance > 0) {
        cfg->autoscale.tolerance = c->autoscale_tolerance;
    }
    cfg->registry = reg;
}

static void
on_decision(const sl_pipe_scale_decision *d, void *user)
{
    fprintf(user, "sluice pipe: autoscale %s %u -> %u (offered %.0f/s, %.0f/s per instance): %s\n",
            d->stage, d->from, d->to, d->offered_per_s, d->true_rate_per_instance, d->reason);
}

// Builds the pipeline of c into p (created here). err gets file:line messages.
static int
pipe_build(const sl_pipe_config *c, const char *file, sl_metrics_registry *reg,
           sl_cli_pipe_ops *ops, FILE *errf, sl_pipeline **out, char *err, size_t err_size)
{
    sl_pipeline_config cfg;
    pipeline_cfg(c, reg, &cfg);
    cfg.decision_cb = on_decision;
    cfg.decision_user = errf;
    sl_pipeline *p = NULL;
    int r = sl_pipeline_new(&cfg, &p);
    if (r != SL_OK) {
        snprintf(err, err_size, "%s: %s", file, sl_strerror(r));
        return r;
    }
    for (uint32_t i = 0; i < c->stage_count && r == SL_OK; i++) {
        const sl_pipe_config_stage *st = &c->stages[i];
        if (st->kind == SL_PIPE_CONFIG_OPERATOR) {
            sl_pipe_stage_config sc;
            stage_cfg(st, &sc);
            r = sl_cli_pipe_add_operator(ops, p, st, &sc, file, err, err_size);
        } else {
            r = add_endpoint(p, c, st, file, err, err_size);
        }
    }
    if (r == SL_OK) {
        r = add_edges(p, c, file, err, err_size);
    }
    if (r != SL_OK) {
        sl_pipeline_free(p);
        return r;
    }
    *out = p;
    return SL_OK;
}

static void
print_explain(sl_pipeline *p, FILE *err)
{
    char report[PIPE_EXPLAIN_BYTES];
    (void)sl_pipeline_explain(p, report, sizeof(report));
    fprintf(err, "sluice pipe: --- bottleneck report ---\n%s\n", report);
    fflush(err);
}

// Runs p until its sources end, it fails, or a signal; then drains. Returns the pipeline status.
static int
pipe_run(sl_pipeline *p, const pipe_opts *o, FILE *err)
{
    int64_t next_explain = o->explain_s > 0 ? sl_now_ns() + o->explain_s * 1000000000LL : INT64_MAX;
    int r = SL_ETIMEDOUT;
    for (;;) { // until the pipeline ends or a signal: each round waits one slice
        r = sl_pipeline_wait(p, sl_deadline_after_ms(PIPE_WAIT_SLICE_MS));
        if (r != SL_ETIMEDOUT) {
            break;
        }
        if (sl_cli_interrupted) {
            fprintf(err, "sluice pipe: stopping, draining records in flight\n");
            int64_t deadline = sl_deadline_after_ms(o->drain_ms);
            sl_pipeline_stop(p, true, deadline);
            r = sl_pipeline_wait(p, deadline);
            r = r == SL_ECLOSED || r == SL_ECANCELED ? SL_OK : r;
            break;
        }
        if (sl_now_ns() >= next_explain) {
            print_explain(p, err);
            next_explain = sl_now_ns() + o->explain_s * 1000000000LL;
        }
    }
    return r;
}

static int
pipe_parse(int argc, char **argv, FILE *out, FILE *err, pipe_opts *o)
{
    static const struct option longs[] = {
        {"explain", required_argument, NULL, 'e'}, {"admin", required_argument, NULL, 'a'},
        {"drain", required_argument, NULL, 'd'},   {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    *o = (pipe_opts){.explain_s = -1, .drain_ms = PIPE_DRAIN_MS_DEFAULT};
    int code = sl_cli_getopt(argc, argv, "h", longs, pipe_usage, out, err, pipe_opt, o);
    if (code != SL_CLI_EXIT_OK) {
        return code;
    }
    if (optind != argc - 1) {
        return sl_cli_fail(err, "pipe", SL_CLI_EXIT_USAGE, "want exactly one pipeline FILE");
    }
    o->file = argv[optind];
    return SL_CLI_EXIT_OK;
}

// Starts the admin port (if asked), runs, stops it. Returns the pipeline status.
static int
pipe_serve(sl_pipeline *p, const sl_pipe_config *c, sl_metrics_registry *reg, const pipe_opts *o,
           FILE *err)
{
    char msg[512] = "";
    sl_cli_pipe_admin admin = {
        .pipeline = p, .registry = reg, .name = c->name ? c->name : "pipeline"};
    if (o->admin != NULL) {
        int r = sl_cli_pipe_admin_start(&admin, o->admin, msg, sizeof(msg));
        if (r != SL_OK) {
            sl_cli_fail(err, "pipe", 0, "%s", msg);
            return r;
        }
        fprintf(err, "sluice pipe: admin on http://127.0.0.1:%u (/metrics /stats /explain)\n",
                (unsigned)admin.port);
        fflush(err);
    }
    int r = pipe_run(p, o, err);
    if (o->explain_s >= 0) {
        print_explain(p, err);
    }
    if (o->admin != NULL) {
        sl_cli_pipe_admin_stop(&admin);
    }
    return r;
}

int
sl_cli_pipe(int argc, char **argv, FILE *out, FILE *err)
{
    pipe_opts o;
    int code = pipe_parse(argc, argv, out, err, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    char msg[512] = "";
#ifdef SL_HAVE_KAFKA
    // kafka:// endpoints (docs/kafka.md); sluice_kafka is linked when librdkafka was found.
    if (sl_kafka_register() != SL_OK) {
        return sl_cli_fail(err, "pipe", SL_CLI_EXIT_FAILED,
                           "kafka:// is taken by another endpoint");
    }
#endif
    sl_pipe_config *c = NULL;
    if (sl_pipe_config_load(o.file, &c, msg, sizeof(msg)) != SL_OK) {
        return sl_cli_fail(err, "pipe", SL_CLI_EXIT_USAGE, "%s", msg);
    }
    sl_metrics_registry *reg = NULL;
    sl_cli_pipe_ops ops;
    sl_cli_pipe_ops_init(&ops);
    sl_pipeline *p = NULL;
    int r = sl_metrics_registry_new(NULL, &reg);
    if (r == SL_OK) {
        r = pipe_build(c, o.file, reg, &ops, err, &p, msg, sizeof(msg));
    }
    if (r == SL_OK && !o.check) {
        r = sl_pipeline_start(p, msg, sizeof(msg));
        if (r != SL_OK && msg[0] == '\0') {
            snprintf(msg, sizeof(msg), "%s: cannot start: %s", o.file, sl_strerror(r));
        }
        code = r != SL_OK ? SL_CLI_EXIT_USAGE : SL_CLI_EXIT_OK;
        if (r == SL_OK) {
            r = pipe_serve(p, c, reg, &o, err);
            snprintf(msg, sizeof(msg), "the pipeline stopped: %s", sl_strerror(r));
            code = r == SL_OK ? SL_CLI_EXIT_OK : SL_CLI_EXIT_FAILED;
        }
    } else if (r != SL_OK) {
        code = SL_CLI_EXIT_USAGE;
    }
    if (r != SL_OK) {
        sl_cli_fail(err, "pipe", 0, "%s", msg[0] ? msg : sl_strerror(r));
    }
    if (p != NULL) {
        sl_pipeline_free(p);
    }
    sl_cli_pipe_ops_fini(&ops);
    if (reg != NULL) {
        sl_metrics_registry_free(reg);
    }
    sl_pipe_config_free(c);
    return code;
}
