// Parser of pipeline files (pipe_config.h): one pass over a private copy of the text, split into
// lines in place; every string of the result points into that copy. Errors name file:line.
#include "cli/pipe_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sluice/error.h>

#include "core/parse.h"
#include "core/util.h"

// Lines a file may have (bounds the parse loop; a 1 MiB file of blank lines has fewer).
#define PIPE_CONFIG_LINES_MAX (SL_PIPE_CONFIG_BYTES_MAX + 1u)
// Hops in one edge line "a -> b -> c".
#define PIPE_CONFIG_CHAIN_MAX 32u

typedef enum section {
    SECTION_NONE = 0,
    SECTION_PIPELINE,
    SECTION_STAGE,
    SECTION_EDGES,
} section;

typedef struct parser {
    sl_pipe_config *c;
    const char *file;
    int line;
    section sec;
    sl_pipe_config_stage *stage; // with SECTION_STAGE
    char *err;
    size_t err_size;
} parser;

static int perr(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
perr(parser *p, const char *fmt, ...)
{
    if (p->err != NULL && p->err_size > 0) {
        int n = snprintf(p->err, p->err_size, "%s:%d: ", p->file, p->line);
        if (n >= 0 && (size_t)n < p->err_size) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return SL_EINVAL;
}

static char *
trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

// Cuts a comment: '#' or ';' at the start, or after whitespace (so "a#b" keeps its '#').
static void
strip_comment(char *s)
{
    for (char *q = s; *q != '\0'; q++) {
        if ((*q == '#' || *q == ';') && (q == s || q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            return;
        }
    }
}

static bool
name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SL_PIPE_CONFIG_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!isalnum((unsigned char)ch) && ch != '_' && ch != '-' && ch != '.') {
            return false;
        }
    }
    return true;
}

int
sl_pipe_config_find(const sl_pipe_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->stage_count; i++) {
        if (strcmp(c->stages[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *
sl_pipe_config_opt(const sl_pipe_config_stage *s, const char *key)
{
    for (size_t i = 0; i < s->option_count; i++) {
        if (strcmp(s->options[i].key, key) == 0) {
            return s->options[i].value;
        }
    }
    return NULL;
}

// "[kind NAME]" or "[pipeline]" / "[edges]".
static int
parse_section(parser *p, char *s)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != ']') {
        return perr(p, "section header must end with ']'");
    }
    s[n - 1] = '\0';
    char *body = trim(s + 1);
    char *sp = strpbrk(body, " \t");
    char *name = NULL;
    if (sp != NULL) {
        *sp = '\0';
        name = trim(sp + 1);
    }
    p->stage = NULL;
    if (strcmp(body, "pipeline") == 0 || strcmp(body, "edges") == 0) {
        if (name != NULL) {
            return perr(p, "[%s] takes no name", body);
        }
        p->sec = body[0] == 'p' ? SECTION_PIPELINE : SECTION_EDGES;
        return SL_OK;
    }
    sl_pipe_config_kind kind;
    if (strcmp(body, "source") == 0) {
        kind = SL_PIPE_CONFIG_SOURCE;
    } else if (strcmp(body, "operator") == 0) {
        kind = SL_PIPE_CONFIG_OPERATOR;
    } else if (strcmp(body, "sink") == 0) {
        kind = SL_PIPE_CONFIG_SINK;
    } else {
        return perr(p, "unknown section [%s] (want pipeline, source, operator, sink, edges)", body);
    }
    if (name == NULL || !name_valid(name)) {
        return perr(p, "[%s NAME]: a name of 1..%u letters, digits, '_', '-' or '.'", body,
                    SL_PIPE_CONFIG_NAME_MAX);
    }
    if (sl_pipe_config_find(p->c, name) >= 0) {
        return perr(p, "a stage named '%s' already exists", name);
    }
    if (p->c->stage_count == SL_PIPE_CONFIG_STAGES_MAX) {
        return perr(p, "more than %u stages", SL_PIPE_CONFIG_STAGES_MAX);
    }
    p->stage = &p->c->stages[p->c->stage_count++];
    *p->stage = (sl_pipe_config_stage){.kind = kind, .name = name, .line = p->line};
    p->sec = SECTION_STAGE;
    return SL_OK;
}

static int
parse_u32(parser *p, const char *key, const char *v, uint32_t min, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno != 0 || n < min || n > UINT32_MAX) {
        return perr(p, "%s wants an integer >= %u, got '%s'", key, min, v);
    }
    *out = (uint32_t)n;
    return SL_OK;
}

static int
parse_size(parser *p, const char *key, const char *v, uint64_t *out)
{
    char why[128];
    if (sl_parse_size(v, out, why, sizeof(why)) != SL_OK) {
        return perr(p, "%s: %s", key, why);
    }
    return SL_OK;
}

static int
parse_ms(parser *p, const char *key, const char *v, int64_t *out)
{
    char why[128];
    if (sl_parse_duration_ms(v, out, why, sizeof(why)) != SL_OK) {
        return perr(p, "%s: %s", key, why);
    }
    return SL_OK;
}

static int
parse_fraction(parser *p, const char *key, const char *v, double *out)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d > 0.0 && d <= 1.0)) {
        return perr(p, "%s wants a number in (0, 1], got '%s'", key, v);
    }
    *out = d;
    return SL_OK;
}

static int
parse_bool(parser *p, const char *key, const char *v, bool *out)
{
    if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0) {
        *out = true;
    } else if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0 ||
               strcasecmp(v, "no") == 0) {
        *out = false;
    } else {
        return perr(p, "%s wants on or off, got '%s'", key, v);
    }
    return SL_OK;
}

static int
pipeline_key(parser *p, const char *k, const char *v)
{
    sl_pipe_config *c = p->c;
    if (strcmp(k, "name") == 0) {
        c->name = v;
        return SL_OK;
    }
    if (strcmp(k, "memory_budget") == 0) {
        return parse_size(p, k, v, &c->memory_budget_bytes);
    }
    if (strcmp(k, "autoscale") == 0) {
        return parse_bool(p, k, v, &c->autoscale);
    }
    if (strcmp(k, "autoscale_interval") == 0) {
        return parse_ms(p, k, v, &c->autoscale_interval_ms);
    }
    if (strcmp(k, "autoscale_cooldown") == 0) {
        return parse_ms(p, k, v, &c->autoscale_cooldown_ms);
    }
    if (strcmp(k, "autoscale_target_utilization") == 0) {
        return parse_fraction(p, k, v, &c->autoscale_target_utilization);
    }
    if (strcmp(k, "autoscale_tolerance") == 0) {
        return parse_fraction(p, k, v, &c->autoscale_tolerance);
    }
    return perr(p, "unknown [pipeline] key '%s'", k);
}

// Keys every stage has; false when k is not one of them (then it is an option).
static bool
stage_common_key(parser *p, const char *k, const char *v, int *r)
{
    sl_pipe_config_stage *s = p->stage;
    bool endpoint = s->kind != SL_PIPE_CONFIG_OPERATOR;
    if (strcmp(k, endpoint ? "uri" : "type") == 0) {
        *(endpoint ? &s->uri : &s->type) = v;
        *r = v[0] != '\0' ? SL_OK : perr(p, "%s must not be empty", k);
    } else if (strcmp(k, "parallelism") == 0) {
        *r = parse_u32(p, k, v, 1, &s->parallelism);
    } else if (strcmp(k, "parallelism_min") == 0) {
        *r = parse_u32(p, k, v, 1, &s->parallelism_min);
    } else if (strcmp(k, "parallelism_max") == 0) {
        *r = parse_u32(p, k, v, 1, &s->parallelism_max);
    } else if (strcmp(k, "queue_records") == 0) {
        *r = parse_u32(p, k, v, 1, &s->queue_records);
    } else if (strcmp(k, "queue_bytes") == 0) {
        *r = parse_size(p, k, v, &s->queue_bytes);
    } else {
        return false;
    }
    return true;
}

static int
stage_key(parser *p, const char *k, const char *v)
{
    sl_pipe_config_stage *s = p->stage;
    if (strcmp(k, s->kind == SL_PIPE_CONFIG_OPERATOR ? "uri" : "type") == 0) {
        return perr(p, "%s takes no '%s' (sources and sinks have uri, operators type)", s->name, k);
    }
    int r = SL_OK;
    if (stage_common_key(p, k, v, &r)) {
        return r;
    }
    if (sl_pipe_config_opt(s, k) != NULL) {
        return perr(p, "'%s' is set twice in [%s]", k, s->name);
    }
    if (s->option_count == SL_PIPE_CONFIG_OPTIONS_MAX) {
        return perr(p, "more than %u options in [%s]", SL_PIPE_CONFIG_OPTIONS_MAX, s->name);
    }
    s->options[s->option_count] = (sl_pipe_option){.key = k, .value = v};
    s->option_lines[s->option_count++] = p->line;
    return SL_OK;
}

static int
parse_route(parser *p, const char *text, sl_pipe_route *out)
{
    static const char *const names[] = {"forward", "round_robin", "broadcast", "key_hash"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (sl_pipe_route)i;
            return SL_OK;
        }
    }
    return perr(p, "unknown route '%s' (want forward, round_robin, broadcast or key_hash)", text);
}

static int
edge_stage(parser *p, char *name, bool from, uint32_t *idx)
{
    name = trim(name);
    int i = sl_pipe_config_find(p->c, name);
    if (i < 0) {
        return perr(p, "no stage named '%s' (stages must be declared above [edges])", name);
    }
    sl_pipe_config_kind k = p->c->stages[i].kind;
    if (from && k == SL_PIPE_CONFIG_SINK) {
        return perr(p, "'%s' is a sink: nothing flows out of it", name);
    }
    if (!from && k == SL_PIPE_CONFIG_SOURCE) {
        return perr(p, "'%s' is a source: nothing flows into it", name);
    }
    *idx = (uint32_t)i;
    return SL_OK;
}

// "a -> b [-> c ...] [: route]"
static int
parse_edge_line(parser *p, char *s)
{
    sl_pipe_route route = SL_ROUTE_ROUND_ROBIN;
    char *colon = strchr(s, ':');
    bool route_set = colon != NULL;
    if (colon != NULL) {
        *colon = '\0';
        int r = parse_route(p, trim(colon + 1), &route);
        if (r != SL_OK) {
            return r;
        }
    }
    char *names[PIPE_CONFIG_CHAIN_MAX];
    uint32_t n = 0;
    char *cur = s;
    for (char *arrow = strstr(cur, "->"); n < PIPE_CONFIG_CHAIN_MAX; arrow = strstr(cur, "->")) {
        names[n++] = cur;
        if (arrow == NULL) {
            break;
        }
        *arrow = '\0';
        cur = arrow + 2;
    }
    if (n < 2 || strstr(cur, "->") != NULL) {
        return perr(p, "an edge line is 'from -> to [-> ...] [: route]' with 2..%u stages",
                    PIPE_CONFIG_CHAIN_MAX);
    }
    for (uint32_t i = 0; i + 1 < n; i++) {
        sl_pipe_config_edge e = {.route = route, .route_set = route_set, .line = p->line};
        int r = edge_stage(p, names[i], true, &e.from);
        if (r == SL_OK) {
            r = edge_stage(p, names[i + 1], false, &e.to);
        }
        if (r != SL_OK) {
            return r;
        }
        for (uint32_t j = 0; j < p->c->edge_count; j++) {
            if (p->c->edges[j].from == e.from && p->c->edges[j].to == e.to) {
                return perr(p, "edge %s -> %s is declared twice", p->c->stages[e.from].name,
                            p->c->stages[e.to].name);
            }
        }
        if (p->c->edge_count == SL_PIPE_CONFIG_EDGES_MAX) {
            return perr(p, "more than %u edges", SL_PIPE_CONFIG_EDGES_MAX);
        }
        p->c->edges[p->c->edge_count++] = e;
    }
    return SL_OK;
}

static int
parse_line(parser *p, char *s)
{
    strip_comment(s);
    s = trim(s);
    if (s[0] == '\0') {
        return SL_OK;
    }
    if (s[0] == '[') {
        return parse_section(p, s);
    }
    if (p->sec == SECTION_EDGES) {
        return parse_edge_line(p, s);
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        return perr(p, "expected 'key = value', a [section] or a comment");
    }
    *eq = '\0';
    char *k = trim(s);
    char *v = trim(eq + 1);
    if (k[0] == '\0') {
        return perr(p, "missing key before '='");
    }
    switch (p->sec) {
    case SECTION_PIPELINE:
        return pipeline_key(p, k, v);
    case SECTION_STAGE:
        return stage_key(p, k, v);
    default:
        return perr(p, "'%s' outside a section (start with [pipeline], [source NAME]...)", k);
    }
}

// Every stage must be complete and on a path from a source to a sink; edges must not loop.
static int
check_stage(parser *p, uint32_t i, const uint32_t *in, const uint32_t *out)
{
    sl_pipe_config_stage *s = &p->c->stages[i];
    p->line = s->line;
    if (s->kind != SL_PIPE_CONFIG_OPERATOR && s->uri == NULL) {
        return perr(p, "[%s] needs uri = ...", s->name);
    }
    if (s->kind == SL_PIPE_CONFIG_OPERATOR && s->type == NULL) {
        return perr(p, "[%s] needs type = ...", s->name);
    }
    if (s->parallelism_min > 0 && s->parallelism_max > 0 &&
        s->parallelism_min > s->parallelism_max) {
        return perr(p, "[%s]: parallelism_min is above parallelism_max", s->name);
    }
    if (s->kind != SL_PIPE_CONFIG_SOURCE && in[i] == 0) {
        return perr(p, "[%s] has no input edge (add it under [edges])", s->name);
    }
    if (s->kind != SL_PIPE_CONFIG_SINK && out[i] == 0) {
        return perr(p, "[%s] has no output edge (add it under [edges])", s->name);
    }
    return SL_OK;
}

// Kahn's algorithm: a stage left with inputs after peeling every source-reachable level is on a
// cycle.
static int
check_acyclic(parser *p, uint32_t *in)
{
    uint32_t queue[SL_PIPE_CONFIG_STAGES_MAX];
    uint32_t head = 0;
    uint32_t tail = 0;
    for (uint32_t i = 0; i < p->c->stage_count; i++) {
        if (in[i] == 0) {
            queue[tail++] = i;
        }
    }
    while (head < tail) { // each stage enters the queue once
        uint32_t s = queue[head++];
        for (uint32_t e = 0; e < p->c->edge_count; e++) {
            if (p->c->edges[e].from == s && --in[p->c->edges[e].to] == 0) {
                queue[tail++] = p->c->edges[e].to;
            }
        }
    }
    if (tail < p->c->stage_count) {
        for (uint32_t e = 0; e < p->c->edge_count; e++) {
            if (in[p->c->edges[e].to] > 0) {
                p->line = p->c->edges[e].line;
                break;
            }
        }
        return perr(p, "the edges form a cycle (a pipeline is a DAG)");
    }
    return SL_OK;
}

static int
check_graph(parser *p)
{
    uint32_t in[SL_PIPE_CONFIG_STAGES_MAX] = {0};
    uint32_t out[SL_PIPE_CONFIG_STAGES_MAX] = {0};
    bool source = false;
    bool sink = false;
    for (uint32_t e = 0; e < p->c->edge_count; e++) {
        in[p->c->edges[e].to]++;
        out[p->c->edges[e].from]++;
    }
    for (uint32_t i = 0; i < p->c->stage_count; i++) {
        int r = check_stage(p, i, in, out);
        if (r != SL_OK) {
            return r;
        }
        source = source || p->c->stages[i].kind == SL_PIPE_CONFIG_SOURCE;
        sink = sink || p->c->stages[i].kind == SL_PIPE_CONFIG_SINK;
    }
    if (!source || !sink) {
        return perr(p, "a pipeline needs at least one [source NAME] and one [sink NAME]");
    }
    return check_acyclic(p, in);
}

static int
parse_all(parser *p, char *text)
{
    char *line = text;
    for (uint32_t n = 0; n < PIPE_CONFIG_LINES_MAX && line != NULL; n++) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        p->line++;
        int r = parse_line(p, line);
        if (r != SL_OK) {
            return r;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    return check_graph(p);
}

int
sl_pipe_config_parse(const char *text, size_t size, const char *file, sl_pipe_config **out,
                     char *err, size_t err_size)
{
    parser p = {.file = file != NULL ? file : "<pipeline>", .err = err, .err_size = err_size};
    if (size > SL_PIPE_CONFIG_BYTES_MAX) {
        perr(&p, "file larger than %u bytes", SL_PIPE_CONFIG_BYTES_MAX);
        return SL_ETOOBIG;
    }
    if (memchr(text, '\0', size) != NULL) {
        perr(&p, "the file contains a NUL byte");
        return SL_EINVAL;
    }
    sl_pipe_config *c = sl_calloc(1, sizeof(*c));
    char *copy = sl_alloc(size + 1);
    if (c == NULL || copy == NULL) {
        sl_free(c, c ? sizeof(*c) : 0);
        sl_free(copy, copy ? size + 1 : 0);
        return SL_ENOMEM;
    }
    memcpy(copy, text, size);
    copy[size] = '\0';
    c->text = copy;
    c->text_size = size + 1;
    p.c = c;
    int r = parse_all(&p, copy);
    if (r != SL_OK) {
        sl_pipe_config_free(c);
        return r;
    }
    *out = c;
    return SL_OK;
}

int
sl_pipe_config_load(const char *path, sl_pipe_config **out, char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT ? SL_ENOENT : SL_EIO;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return code;
    }
    char *buf = sl_alloc(SL_PIPE_CONFIG_BYTES_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    size_t len = 0;
    ssize_t n = 1;
    for (int i = 0; i < 1024 && n > 0 && len <= SL_PIPE_CONFIG_BYTES_MAX; i++) {
        n = read(fd, buf + len, SL_PIPE_CONFIG_BYTES_MAX + 1 - len);
        len += n > 0 ? (size_t)n : 0;
    }
    close(fd);
    int r = SL_EIO;
    if (n < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
    } else {
        r = sl_pipe_config_parse(buf, len, path, out, err, err_size);
    }
    sl_free(buf, SL_PIPE_CONFIG_BYTES_MAX + 1);
    return r;
}

void
sl_pipe_config_free(sl_pipe_config *c)
{
    if (c == NULL) {
        return;
    }
    sl_free(c->text, c->text_size);
    sl_free(c, sizeof(*c));
}
