// The operators of `sluice pipe` (pipe_ops.h). JSON operators parse each record's value with
// jansson; a value that is not JSON (or lacks the field) never passes a filter and is passed on
// unchanged by projection and re-keying, counted in invalid_total. Parameters are checked when
// the pipeline is built, with the file and line of the offending key.
#include "cli/pipe_ops.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <sluice/error.h>
#include <sluice/ratelimit.h>

#include "core/parse.h"
#include "core/util.h"
#include "pipeline/builtin_ops.h"

// Components of a dotted field path ("user.address.city"), and of a projection list.
#define PIPE_OPS_PATH_DEPTH_MAX 8u
#define PIPE_OPS_FIELDS_MAX     32u
#define PIPE_OPS_TEXT_MAX       256u

const char sl_cli_pipe_ops_help[] =
    "operator types: json_filter (field, op=eq|ne|gt|lt|exists, value), json_project (fields),\n"
    "  json_key (field), window_count (size), window_sum (size, field), identity (alias map),\n"
    "  delay (ms), sample (keep_one_in), ratelimit (rate, burst)\n";

typedef struct json_path {
    char text[PIPE_OPS_TEXT_MAX];
    const char *parts[PIPE_OPS_PATH_DEPTH_MAX];
    uint32_t depth;
} json_path;

typedef enum filter_op {
    FILTER_EQ = 0,
    FILTER_NE,
    FILTER_GT,
    FILTER_LT,
    FILTER_EXISTS,
} filter_op;

typedef struct json_op {
    json_path path; // json_filter, json_key, window_sum
    filter_op op;
    char value[PIPE_OPS_TEXT_MAX];
    double value_num;
    bool value_is_num;
    json_path fields[PIPE_OPS_FIELDS_MAX]; // json_project
    uint32_t field_count;
    atomic_ullong invalid_total;
} json_op;

typedef struct op_build {
    const sl_pipe_config_stage *st;
    const char *file;
    char *err;
    size_t err_size;
} op_build;

static int op_fail(const op_build *b, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Reports at the line of key (or of the section when key is NULL or absent).
static int
op_fail(const op_build *b, const char *key, const char *fmt, ...)
{
    int line = b->st->line;
    for (size_t i = 0; key != NULL && i < b->st->option_count; i++) {
        if (strcmp(b->st->options[i].key, key) == 0) {
            line = b->st->option_lines[i];
        }
    }
    int n = snprintf(b->err, b->err_size, "%s:%d: [%s] ", b->file, line, b->st->name);
    if (n >= 0 && (size_t)n < b->err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err + n, b->err_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return SL_EINVAL;
}

void
sl_cli_pipe_ops_init(sl_cli_pipe_ops *ops)
{
    memset(ops, 0, sizeof(*ops));
}

static void
json_op_free(void *state)
{
    sl_free(state, sizeof(json_op));
}

void
sl_cli_pipe_ops_fini(sl_cli_pipe_ops *ops)
{
    for (size_t i = 0; i < ops->count; i++) {
        ops->frees[i](ops->states[i]);
    }
    ops->count = 0;
}

static int
path_parse(json_path *p, const char *text)
{
    if (text == NULL || text[0] == '\0' || strlen(text) >= sizeof(p->text)) {
        return SL_EINVAL;
    }
    sl__strlcpy(p->text, text, sizeof(p->text));
    p->depth = 0;
    char *save = NULL;
    for (char *t = strtok_r(p->text, ".", &save); t != NULL; t = strtok_r(NULL, ".", &save)) {
        if (p->depth == PIPE_OPS_PATH_DEPTH_MAX) {
            return SL_EINVAL;
        }
        p->parts[p->depth++] = t;
    }
    return p->depth > 0 ? SL_OK : SL_EINVAL;
}

static json_t *
path_get(json_t *root, const json_path *p)
{
    json_t *cur = root;
    for (uint32_t i = 0; i < p->depth && cur != NULL; i++) {
        cur = json_is_object(cur) ? json_object_get(cur, p->parts[i]) : NULL;
    }
    return cur;
}

static json_t *
json_parse_record(const sl_pipe_record *in)
{
    return json_loadb(in->value, in->value_size, JSON_DECODE_ANY, NULL);
}

// ---- json_filter -------------------------------------------------------------------------------

static bool
filter_compare(const json_op *op, json_t *v)
{
    if (op->op == FILTER_EXISTS) {
        return v != NULL;
    }
    if (v == NULL) {
        return false;
    }
    int cmp = 0;
    if (json_is_number(v) && op->value_is_num) {
        double d = json_number_value(v);
        cmp = d < op->value_num ? -1 : (d > op->value_num ? 1 : 0);
    } else if (json_is_string(v)) {
        cmp = strcmp(json_string_value(v), op->value);
    } else if (json_is_boolean(v) || json_is_null(v)) {
        cmp = strcmp(json_is_null(v) ? "null" : (json_is_true(v) ? "true" : "false"), op->value);
    } else {
        return op->op == FILTER_NE; // objects and arrays equal no scalar
    }
    switch (op->op) {
    case FILTER_EQ:
        return cmp == 0;
    case FILTER_NE:
        return cmp != 0;
    case FILTER_GT:
        return cmp > 0;
    default:
        return cmp < 0;
    }
}

static bool
json_filter_fn(const sl_pipe_record *in, void *state)
{
    json_op *op = state;
    json_t *root = json_parse_record(in);
    if (root == NULL) {
        atomic_fetch_add_explicit(&op->invalid_total, 1, memory_order_relaxed);
        return false;
    }
    bool pass = filter_compare(op, path_get(root, &op->path));
    json_decref(root);
    return pass;
}

static int
build_filter(const op_build *b, json_op *op)
{
    static const char *const names[] = {"eq", "ne", "gt", "lt", "exists"};
    const char *field = sl_pipe_config_opt(b->st, "field");
    const char *o = sl_pipe_config_opt(b->st, "op");
    const char *value = sl_pipe_config_opt(b->st, "value");
    if (path_parse(&op->path, field) != SL_OK) {
        return op_fail(b, "field", "field wants a dotted path (a.b.c, at most %u levels)",
                       PIPE_OPS_PATH_DEPTH_MAX);
    }
    op->op = FILTER_EQ;
    bool known = o == NULL;
    for (int i = 0; o != NULL && i < 5; i++) {
        if (strcmp(o, names[i]) == 0) {
            op->op = (filter_op)i;
            known = true;
        }
    }
    if (!known) {
        return op_fail(b, "op", "op wants eq, ne, gt, lt or exists, got '%s'", o);
    }
    if (op->op != FILTER_EXISTS && (value == NULL || strlen(value) >= sizeof(op->value))) {
        return op_fail(b, "value", "needs value = ... (shorter than %u bytes)", PIPE_OPS_TEXT_MAX);
    }
    if (value != NULL) {
        sl__strlcpy(op->value, value, sizeof(op->value));
        char *end = NULL;
        op->value_num = strtod(value, &end);
        op->value_is_num = end != value && *end == '\0';
    }
    return SL_OK;
}

// ---- json_project, json_key ----------------------------------------------------------------

// Emits value as compact JSON with in's key (or key) and timestamp.
static int
emit_json(sl_pipe_ctx *ctx, const sl_pipe_record *in, json_t *value, const void *key,
          uint32_t key_size)
{
    size_t need = json_dumpb(value, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (need == 0 || need > SL_PIPE_RECORD_BYTES_MAX) {
        return SL_ETOOBIG;
    }
    char *buf = sl_alloc(need);
    if (buf == NULL) {
        return SL_ENOMEM;
    }
    size_t len = json_dumpb(value, buf, need, JSON_COMPACT | JSON_ENCODE_ANY);
    sl_pipe_record out = {.key = key,
                          .key_size = key_size,
                          .value = buf,
                          .value_size = (uint32_t)len,
                          .timestamp_ns = in->timestamp_ns};
    int r = sl_pipe_emit(ctx, &out);
    sl_free(buf, need);
    return r;
}

// Sets path in obj to v (creating the objects on the way), taking a reference to v.
static void
path_set(json_t *obj, const json_path *p, json_t *v)
{
    json_t *cur = obj;
    for (uint32_t i = 0; i + 1 < p->depth; i++) {
        json_t *next = json_object_get(cur, p->parts[i]);
        if (!json_is_object(next)) {
            next = json_object();
            json_object_set_new(cur, p->parts[i], next);
        }
        cur = next;
    }
    json_object_set(cur, p->parts[p->depth - 1], v);
}

static int
json_project_fn(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    json_op *op = state;
    json_t *root = json_parse_record(in);
    if (root == NULL) {
        atomic_fetch_add_explicit(&op->invalid_total, 1, memory_order_relaxed);
        return sl_pipe_emit(ctx, in);
    }
    json_t *out = json_object();
    for (uint32_t i = 0; i < op->field_count && out != NULL; i++) {
        json_t *v = path_get(root, &op->fields[i]);
        if (v != NULL) {
            path_set(out, &op->fields[i], v);
        }
    }
    int r = out != NULL ? emit_json(ctx, in, out, in->key, in->key_size) : SL_ENOMEM;
    json_decref(out);
    json_decref(root);
    return r;
}

static int
build_project(const op_build *b, json_op *op)
{
    const char *fields = sl_pipe_config_opt(b->st, "fields");
    char list[PIPE_OPS_TEXT_MAX * 4];
    if (fields == NULL || strlen(fields) >= sizeof(list)) {
        return op_fail(b, "fields", "needs fields = a,b.c (at most %zu bytes)", sizeof(list) - 1);
    }
    sl__strlcpy(list, fields, sizeof(list));
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        if (op->field_count == PIPE_OPS_FIELDS_MAX ||
            path_parse(&op->fields[op->field_count++], t) != SL_OK) {
            return op_fail(b, "fields", "bad field '%s' (at most %u fields, %u levels)", t,
                           PIPE_OPS_FIELDS_MAX, PIPE_OPS_PATH_DEPTH_MAX);
        }
    }
    return op->field_count > 0 ? SL_OK : op_fail(b, "fields", "names no field");
}

static int
json_key_fn(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    json_op *op = state;
    json_t *root = json_parse_record(in);
    json_t *v = root != NULL ? path_get(root, &op->path) : NULL;
    if (v == NULL) {
        atomic_fetch_add_explicit(&op->invalid_total, 1, memory_order_relaxed);
        json_decref(root);
        return sl_pipe_emit(ctx, in);
    }
    char text[PIPE_OPS_TEXT_MAX];
    const char *key = text;
    size_t len = 0;
    if (json_is_string(v)) {
        key = json_string_value(v);
        len = json_string_length(v);
    } else {
        len = json_dumpb(v, text, sizeof(text), JSON_COMPACT | JSON_ENCODE_ANY);
        len = SL_MIN(len, sizeof(text));
    }
    sl_pipe_record out = *in;
    out.key = key;
    out.key_size = (uint32_t)SL_MIN(len, (size_t)UINT32_MAX);
    int r = sl_pipe_emit(ctx, &out);
    json_decref(root);
    return r;
}

static int
build_path_op(const op_build *b, json_op *op)
{
    if (path_parse(&op->path, sl_pipe_config_opt(b->st, "field")) != SL_OK) {
        return op_fail(b, "field", "needs field = a dotted path (at most %u levels)",
                       PIPE_OPS_PATH_DEPTH_MAX);
    }
    return SL_OK;
}

// ---- windows, identity ---------------------------------------------------------------------

static double
json_sum_value(const sl_pipe_record *in, void *user)
{
    json_op *op = user;
    json_t *root = json_parse_record(in);
    json_t *v = root != NULL ? path_get(root, &op->path) : NULL;
    double d = json_is_number(v) ? json_number_value(v) : 0.0;
    if (!json_is_number(v)) {
        atomic_fetch_add_explicit(&op->invalid_total, 1, memory_order_relaxed);
    }
    json_decref(root);
    return d;
}

static int
identity_fn(sl_pipe_ctx *ctx, const sl_pipe_record *in, void *state)
{
    SL_UNUSED(state);
    return sl_pipe_emit(ctx, in);
}

static int
window_size(const op_build *b, uint32_t *size_ms)
{
    const char *text = sl_pipe_config_opt(b->st, "size");
    int64_t ms = 0;
    char why[128];
    if (text == NULL || sl_parse_duration_ms(text, &ms, why, sizeof(why)) != SL_OK || ms <= 0 ||
        ms > UINT32_MAX) {
        return op_fail(b, "size", "needs size = a duration (5s, 250ms)");
    }
    *size_ms = (uint32_t)ms;
    return SL_OK;
}

bool
sl_cli_pipe_op_wants_key(const char *type)
{
    return type != NULL && strncmp(type, "window_", 7) == 0;
}

// ---- the runtime's built-in operators ------------------------------------------------------

typedef union builtin_config {
    sl_pipe_delay_config delay;
    sl_pipe_sample_config sample;
    sl_pipe_ratelimit_config ratelimit;
} builtin_config;

static void
builtin_free(void *state)
{
    sl_free(state, sizeof(builtin_config));
}

// A positive integer parameter (absent: def; def 0 means required).
static int
builtin_u64(const op_build *b, const char *key, uint64_t def, uint64_t max, uint64_t *out)
{
    const char *v = sl_pipe_config_opt(b->st, key);
    if (v == NULL && def > 0) {
        *out = def;
        return SL_OK;
    }
    char *end = NULL;
    unsigned long long n = v != NULL ? strtoull(v, &end, 10) : 0;
    if (v == NULL || v[0] < '0' || v[0] > '9' || *end != '\0' || n == 0 || n > max) {
        return op_fail(b, key, "%s wants an integer in 1..%llu", key, (unsigned long long)max);
    }
    *out = n;
    return SL_OK;
}

static int
build_builtin(const op_build *b, builtin_config *bc, sl_pipe_stage_config *cfg,
              sl_pipe_process_fn *fn)
{
    const char *type = b->st->type;
    if (strcmp(type, "delay") == 0) {
        const char *ms = sl_pipe_config_opt(b->st, "ms");
        char *end = NULL;
        double d = ms != NULL ? strtod(ms, &end) : -1.0;
        if (ms == NULL || end == ms || *end != '\0' || !(d >= 0.0 && d <= 60000.0)) {
            return op_fail(b, "ms", "delay needs ms = milliseconds per record (0..60000)");
        }
        bc->delay.per_record_ns = (uint64_t)(d * 1e6);
        *fn = sl_pipe_op_delay;
        return SL_OK;
    }
    uint64_t v = 0;
    if (strcmp(type, "sample") == 0) {
        int r = builtin_u64(b, "keep_one_in", 0, UINT32_MAX, &v);
        bc->sample.keep_one_in = (uint32_t)v;
        cfg->init = sl_pipe_op_sample_init;
        cfg->fini = sl_pipe_op_sample_fini;
        *fn = sl_pipe_op_sample;
        return r;
    }
    int r = builtin_u64(b, "rate", 0, SL_TOKEN_BUCKET_RATE_MAX, &bc->ratelimit.rate_per_s);
    if (r == SL_OK && sl_pipe_config_opt(b->st, "burst") != NULL) {
        r = builtin_u64(b, "burst", 0, SL_TOKEN_BUCKET_BURST_MAX, &bc->ratelimit.burst);
    }
    cfg->init = sl_pipe_op_ratelimit_init;
    cfg->fini = sl_pipe_op_ratelimit_fini;
    *fn = sl_pipe_op_ratelimit;
    return r;
}

// delay, sample and ratelimit come from the runtime (src/pipeline/builtin_ops.h); their config
// is the stage's user pointer, owned by ops.
static int
sl_cli_pipe_add_builtin(sl_cli_pipe_ops *ops, sl_pipeline *p, const op_build *b,
                        const sl_pipe_stage_config *cfg)
{
    builtin_config *bc = sl_calloc(1, sizeof(*bc));
    if (bc == NULL) {
        return SL_ENOMEM;
    }
    sl_pipe_stage_config sc = *cfg;
    sl_pipe_process_fn fn = NULL;
    int r = build_builtin(b, bc, &sc, &fn);
    if (r == SL_OK) {
        r = sl_pipeline_add_process(p, b->st->name, fn, bc, &sc, NULL);
        if (r != SL_OK) {
            op_fail(b, NULL, "cannot add the operator: %s", sl_strerror(r));
        }
    }
    if (r != SL_OK) {
        builtin_free(bc);
        return r;
    }
    ops->states[ops->count] = bc;
    ops->frees[ops->count++] = builtin_free;
    return SL_OK;
}

// ---- building ------------------------------------------------------------------------------

typedef struct op_type {
    const char *name;
    const char *params[4]; // the keys it takes (NULL-terminated)
} op_type;

static const op_type op_types[] = {
    {"json_filter", {"field", "op", "value", NULL}},
    {"json_project", {"fields", NULL}},
    {"json_key", {"field", NULL}},
    {"window_count", {"size", NULL}},
    {"window_sum", {"size", "field", NULL}},
    {"identity", {NULL}},
    {"map", {NULL}},
    {"delay", {"ms", NULL}},
    {"sample", {"keep_one_in", NULL}},
    {"ratelimit", {"rate", "burst", NULL}},
};

static int
check_params(const op_build *b, const op_type **type_out)
{
    const op_type *t = NULL;
    for (size_t i = 0; i < SL_ARRAY_LEN(op_types) && t == NULL; i++) {
        t = strcmp(b->st->type, op_types[i].name) == 0 ? &op_types[i] : NULL;
    }
    if (t == NULL) {
        return op_fail(b, "type", "unknown operator type '%s'; %s", b->st->type,
                       sl_cli_pipe_ops_help);
    }
    for (size_t i = 0; i < b->st->option_count; i++) {
        bool ok = false;
        for (size_t k = 0; t->params[k] != NULL && !ok; k++) {
            ok = strcmp(b->st->options[i].key, t->params[k]) == 0;
        }
        if (!ok) {
            return op_fail(b, b->st->options[i].key, "%s takes no parameter '%s'", t->name,
                           b->st->options[i].key);
        }
    }
    *type_out = t;
    return SL_OK;
}

// Adds a JSON or window operator with its state op (owned by ops on success).
static int
add_json_op(sl_pipeline *p, const op_build *b, json_op *op, const sl_pipe_stage_config *cfg)
{
    const char *type = b->st->type;
    const char *name = b->st->name;
    uint32_t size_ms = 0;
    int r = SL_OK;
    if (strcmp(type, "json_filter") == 0) {
        r = build_filter(b, op);
        return r != SL_OK ? r : sl_pipeline_add_filter(p, name, json_filter_fn, op, cfg, NULL);
    }
    if (strcmp(type, "json_project") == 0) {
        r = build_project(b, op);
        return r != SL_OK ? r : sl_pipeline_add_process(p, name, json_project_fn, op, cfg, NULL);
    }
    if (strcmp(type, "json_key") == 0) {
        r = build_path_op(b, op);
        return r != SL_OK ? r : sl_pipeline_add_process(p, name, json_key_fn, op, cfg, NULL);
    }
    if (strcmp(type, "window_count") == 0) {
        r = window_size(b, &size_ms);
        return r != SL_OK ? r
                          : sl_pipeline_add_window(p, name, SL_WINDOW_COUNT, size_ms, NULL, NULL,
                                                   cfg, NULL);
    }
    if (strcmp(type, "window_sum") == 0) {
        r = window_size(b, &size_ms);
        r = r != SL_OK ? r : build_path_op(b, op);
        return r != SL_OK ? r
                          : sl_pipeline_add_window(p, name, SL_WINDOW_SUM, size_ms, json_sum_value,
                                                   op, cfg, NULL);
    }
    return sl_pipeline_add_process(p, name, identity_fn, op, cfg, NULL);
}

int
sl_cli_pipe_add_operator(sl_cli_pipe_ops *ops, sl_pipeline *p, const sl_pipe_config_stage *st,
                         const sl_pipe_stage_config *cfg, const char *file, char *err,
                         size_t err_size)
{
    op_build b = {.st = st, .file = file, .err = err, .err_size = err_size};
    const op_type *t = NULL;
    int r = check_params(&b, &t);
    if (r != SL_OK) {
        return r;
    }
    if (ops->count == SL_CLI_PIPE_OPS_MAX) {
        return op_fail(&b, NULL, "more than %u operators", SL_CLI_PIPE_OPS_MAX);
    }
    if (strcmp(t->name, "delay") == 0 || strcmp(t->name, "sample") == 0 ||
        strcmp(t->name, "ratelimit") == 0) {
        return sl_cli_pipe_add_builtin(ops, p, &b, cfg);
    }
    json_op *op = sl_calloc(1, sizeof(*op));
    if (op == NULL) {
        return SL_ENOMEM;
    }
    r = add_json_op(p, &b, op, cfg);
    if (r != SL_OK) {
        if (err != NULL && err[0] == '\0') {
            op_fail(&b, NULL, "cannot add the operator: %s", sl_strerror(r));
        }
        json_op_free(op);
        return r;
    }
    ops->states[ops->count] = op;
    ops->frees[ops->count++] = json_op_free;
    return SL_OK;
}
