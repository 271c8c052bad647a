// Load client for Redis Streams (hiredis): pipelined XADD (an entry ID reply is the ack, an
// error such as OOM a rejection, not retried) and a consumer group read with XREADGROUP COUNT
// 1000 + XACK. With --bounded, setup sets maxmemory 64mb / noeviction. Options (--opt):
// pipeline=N (XADDs in flight, default 1000), xdel=1 (XDEL after XACK), maxlen=N (XADD MAXLEN ~).
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#define STREAM        "bench0"
#define GROUP         "g"
#define PIPELINE_MAX  10000u
#define BLOCK_MS      "100"
#define BOUND_MAXMEM  "64mb"
#define REPLY_TIMEOUT 30

static redisContext *
connect_addr(const char *addr)
{
    char host[256];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    int port = 6379;
    if (colon != NULL) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis: connect %s: %s\n", addr, c != NULL ? c->errstr : "no memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static int
command_ok(redisContext *c, const char *what, redisReply *r)
{
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (!ok) {
        fprintf(stderr, "redis: %s: %s\n", what, r != NULL ? r->str : c->errstr);
    }
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int
redis_setup(pb_run *run)
{
    redisContext *c = connect_addr(run->addr);
    if (c == NULL) {
        return -1;
    }
    int rc = command_ok(c, "DEL", redisCommand(c, "DEL " STREAM));
    rc = rc != 0 ? rc
                 : command_ok(c, "XGROUP",
                              redisCommand(c, "XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM"));
    if (rc == 0 && run->bounded && pb_opt(run, "maxlen", NULL) == NULL) {
        rc = command_ok(c, "CONFIG", redisCommand(c, "CONFIG SET maxmemory " BOUND_MAXMEM));
        rc = rc != 0 ? rc
                     : command_ok(c, "CONFIG",
                                  redisCommand(c, "CONFIG SET maxmemory-policy noeviction"));
    }
    redisFree(c);
    return rc;
}

// Collects the replies of the n pipelined XADDs whose sequence numbers are in seqs.
static int
collect(pb_run *run, uint32_t p, redisContext *c, const uint64_t *seqs, uint32_t n)
{
    int64_t t0 = pb_now_ns();
    for (uint32_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
            pb_prod_note(run, p, c->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_STRING) {
            pb_prod_acked(run, p, seqs[i]);
        } else {
            char reason[PB_REASON_BYTES];
            snprintf(reason, sizeof(reason), "%.*s", (int)strcspn(r->str ? r->str : "?", " "),
                     r->str ? r->str : "?");
            pb_prod_rejected(run, p, seqs[i], reason);
        }
        freeReplyObject(r);
    }
    pb_prod_waited(run, p, t0, pb_now_ns());
    return 0;
}

static int
redis_produce(pb_run *run, uint32_t p)
{
    redisContext *c = connect_addr(run->addr);
    if (c == NULL) {
        return -1;
    }
    uint32_t depth = (uint32_t)pb_opt_u64(run, "pipeline", 1000);
    depth = depth == 0 || depth > PIPELINE_MAX ? PIPELINE_MAX : depth;
    const char *maxlen = pb_opt(run, "maxlen", NULL);
    static uint64_t seqs[PIPELINE_MAX];
    uint8_t buf[PB_PAYLOAD_BYTES];
    int rc = 0;
    bool done = false;
    for (uint64_t round = 0; round < PB_MAX_SEQ && !done && rc == 0; round++) {
        uint32_t n = 0;
        while (n < depth) {
            int64_t wait_ns = 0;
            pb_next next = pb_prod_next(run, p, buf, &seqs[n], &wait_ns);
            if (next == PB_NEXT_DONE) {
                done = true;
                break;
            }
            if (next == PB_NEXT_WAIT) {
                if (n > 0) {
                    break; // send what we have before waiting
                }
                pb_sleep_ns(wait_ns);
                continue;
            }
            int64_t t = pb_now_ns();
            if (maxlen != NULL) {
                redisAppendCommand(c, "XADD " STREAM " MAXLEN ~ %s * d %b", maxlen, buf,
                                   (size_t)PB_PAYLOAD_BYTES);
            } else {
                redisAppendCommand(c, "XADD " STREAM " * d %b", buf, (size_t)PB_PAYLOAD_BYTES);
            }
            pb_prod_sent(run, p, t, pb_now_ns());
            n++;
        }
        rc = collect(run, p, c, seqs, n);
    }
    pb_prod_window_end(run, p);
    pb_prod_finished(run, p);
    redisFree(c);
    return rc;
}

// Handles one XREADGROUP reply: [[stream, [[id, [field, value]], ...]]]. Acks (and with xdel
// deletes) the IDs after the capacity model's sleep.
static void
handle_batch(pb_consumer *k, redisContext *c, redisReply *r, bool xdel)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        return;
    }
    redisReply *entries = r->element[0]->element[1];
    size_t n = entries->elements;
    const char **argv = malloc((n + 3) * sizeof(*argv));
    size_t *lens = malloc((n + 3) * sizeof(*lens));
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return;
    }
    pb_cons_batch_begin(k);
    for (size_t i = 0; i < n; i++) {
        redisReply *e = entries->element[i];
        redisReply *fields = e->element[1];
        if (fields->type == REDIS_REPLY_ARRAY && fields->elements >= 2) {
            pb_cons_msg(k, fields->element[1]->str, fields->element[1]->len);
        }
        argv[i + 3] = e->element[0]->str;
        lens[i + 3] = e->element[0]->len;
    }
    pb_cons_batch_end(k);
    argv[0] = "XACK", lens[0] = 4;
    argv[1] = STREAM, lens[1] = strlen(STREAM);
    argv[2] = GROUP, lens[2] = strlen(GROUP);
    freeReplyObject(redisCommandArgv(c, (int)n + 3, argv, lens));
    if (xdel) {
        argv[1] = "XDEL", lens[1] = 4;
        argv[2] = STREAM, lens[2] = strlen(STREAM);
        freeReplyObject(redisCommandArgv(c, (int)n + 2, argv + 1, lens + 1));
    }
    free(argv);
    free(lens);
}

// The group's lag: entries the group has not read yet (Redis 7: XINFO GROUPS "lag").
static int64_t
group_lag(redisContext *c)
{
    redisReply *r = redisCommand(c, "XINFO GROUPS " STREAM);
    int64_t lag = -1;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        redisReply *g = r->element[0];
        for (size_t i = 0; i + 1 < g->elements; i += 2) {
            if (g->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(g->element[i]->str, "lag") == 0 &&
                g->element[i + 1]->type == REDIS_REPLY_INTEGER) {
                lag = g->element[i + 1]->integer;
            }
        }
    }
    freeReplyObject(r);
    return lag;
}

static int
redis_consume(pb_run *run, uint32_t c_idx)
{
    redisContext *c = connect_addr(run->addr);
    if (c == NULL) {
        return -1;
    }
    bool xdel = pb_opt_u64(run, "xdel", 0) != 0;
    pb_consumer *k = pb_cons_new(run, c_idx);
    for (uint64_t iter = 0; k != NULL && iter < UINT32_MAX && !pb_cons_should_stop(k); iter++) {
        redisReply *r = redisCommand(
            c, "XREADGROUP GROUP " GROUP " c1 COUNT %u BLOCK " BLOCK_MS " STREAMS " STREAM " >",
            PB_BATCH);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            pb_cons_recv_error(k);
        } else {
            handle_batch(k, c, r, xdel);
        }
        freeReplyObject(r);
        if (c->err) {
            break;
        }
    }
    if (k != NULL) {
        pb_cons_set_queued(k, group_lag(c));
        pb_cons_free(k);
    }
    redisFree(c);
    return 0;
}

int
main(int argc, char **argv)
{
    static const pb_system sys = {
        .name = "redis", .setup = redis_setup, .produce = redis_produce, .consume = redis_consume};
    return pb_main(&sys, argc, argv);
}
