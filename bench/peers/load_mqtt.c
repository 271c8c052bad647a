// Load client for MQTT QoS 1 (libmosquitto against mosquitto): the producer publishes with a
// window of 1000 un-PUBACKed messages (a PUBACK is the ack); the consumer holds a persistent
// session (clean_session false) subscribed at QoS 1 and is slowed inside on_message, so the
// broker queues for it. Options (--opt): window=N.
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#define TOPIC          "bench0"
#define WINDOW_DEFAULT 1000u
#define MID_SPACE      65536u
#define KEEPALIVE_S    30
#define WAIT_SLICE_NS  100000000ll
#define SETTLE_NS      (60ll * 1000000000ll)
#define ERROR_LIMIT_NS (5ll * 1000000000ll)
#define CONS_BATCH     100u
#define LOOP_MS        100

typedef struct prod_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint16_t acked_mids[MID_SPACE]; // PUBACKed mids not yet matched to a sequence number
    uint32_t head, tail;
    uint64_t seq_by_mid[MID_SPACE];
} prod_ctx;

static int
split_addr(const char *addr, char *host, size_t size)
{
    snprintf(host, size, "%s", addr);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        return 1883;
    }
    *colon = '\0';
    return atoi(colon + 1);
}

static void
on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    prod_ctx *ctx = obj;
    pthread_mutex_lock(&ctx->mu);
    ctx->acked_mids[ctx->tail++ % MID_SPACE] = (uint16_t)mid;
    pthread_cond_signal(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
}

// Matches PUBACKed mids to sequence numbers (on the producer thread, after the mapping of every
// returned publish is stored). Returns how many were matched.
static uint32_t
drain_acks(pb_run *run, uint32_t p, prod_ctx *ctx)
{
    uint32_t n = 0;
    pthread_mutex_lock(&ctx->mu);
    for (; ctx->head != ctx->tail && n < MID_SPACE; n++) {
        uint16_t mid = ctx->acked_mids[ctx->head++ % MID_SPACE];
        pb_prod_acked(run, p, ctx->seq_by_mid[mid]);
    }
    pthread_mutex_unlock(&ctx->mu);
    return n;
}

static void
wait_acks(prod_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_SLICE_NS;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_mutex_lock(&ctx->mu);
    if (ctx->head == ctx->tail) {
        pthread_cond_timedwait(&ctx->cv, &ctx->mu, &ts);
    }
    pthread_mutex_unlock(&ctx->mu);
}

static void
produce_loop(pb_run *run, uint32_t p, struct mosquitto *m, prod_ctx *ctx)
{
    uint64_t window = pb_opt_u64(run, "window", WINDOW_DEFAULT);
    uint64_t published = 0, matched = 0;
    int64_t first_error = 0;
    uint8_t buf[PB_PAYLOAD_BYTES];
    for (uint64_t iter = 0; iter < PB_MAX_SEQ * 4; iter++) {
        matched += drain_acks(run, p, ctx);
        int64_t t0 = pb_now_ns();
        if (published - matched >= window) {
            wait_acks(ctx);
            pb_prod_waited(run, p, t0, pb_now_ns());
            continue;
        }
        uint64_t seq = 0;
        int64_t wait_ns = 0;
        pb_next n = pb_prod_next(run, p, buf, &seq, &wait_ns);
        if (n == PB_NEXT_DONE) {
            break;
        }
        if (n == PB_NEXT_WAIT) {
            pb_sleep_ns(wait_ns);
            continue;
        }
        int mid = 0;
        int rc = mosquitto_publish(m, &mid, TOPIC, PB_PAYLOAD_BYTES, buf, 1, false);
        pb_prod_sent(run, p, t0, pb_now_ns());
        if (rc != MOSQ_ERR_SUCCESS) {
            pb_prod_rejected(run, p, seq, mosquitto_strerror(rc));
            first_error = first_error == 0 ? pb_now_ns() : first_error;
            if (pb_now_ns() - first_error > ERROR_LIMIT_NS) {
                break;
            }
            continue;
        }
        pthread_mutex_lock(&ctx->mu);
        ctx->seq_by_mid[(uint16_t)mid] = seq;
        pthread_mutex_unlock(&ctx->mu);
        published++;
    }
    pb_prod_window_end(run, p);
    int64_t until = pb_now_ns() + SETTLE_NS;
    for (uint64_t i = 0; matched < published && pb_now_ns() < until && i < UINT32_MAX; i++) {
        wait_acks(ctx);
        matched += drain_acks(run, p, ctx);
    }
}

static int
mqtt_produce(pb_run *run, uint32_t p)
{
    mosquitto_lib_init();
    static prod_ctx ctx;
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cv, NULL);
    char id[32], host[256];
    snprintf(id, sizeof(id), "pbprod%u", p);
    int port = split_addr(run->addr, host, sizeof(host));
    struct mosquitto *m = mosquitto_new(id, true, &ctx);
    if (m == NULL) {
        return -1;
    }
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, (int)pb_opt_u64(run, "window", WINDOW_DEFAULT));
    mosquitto_publish_callback_set(m, on_publish);
    if (mosquitto_connect(m, host, port, KEEPALIVE_S) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return -1;
    }
    produce_loop(run, p, m, &ctx);
    pb_prod_finished(run, p);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}

typedef struct cons_ctx {
    pb_consumer *k;
    uint32_t in_batch;
    bool subscribed;
} cons_ctx;

static void
on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count, const int *granted)
{
    (void)m, (void)mid, (void)qos_count, (void)granted;
    ((cons_ctx *)obj)->subscribed = true;
}

// The capacity model per batch of up to CONS_BATCH messages: sleeping here stalls the client's
// loop, so the broker keeps the rest queued for this session.
static void
on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    cons_ctx *cc = obj;
    if (cc->k == NULL) {
        return;
    }
    if (cc->in_batch == 0) {
        pb_cons_batch_begin(cc->k);
    }
    pb_cons_msg(cc->k, msg->payload, (size_t)msg->payloadlen);
    if (++cc->in_batch == CONS_BATCH) {
        pb_cons_batch_end(cc->k);
        cc->in_batch = 0;
    }
}

static int
mqtt_consume(pb_run *run, uint32_t c)
{
    mosquitto_lib_init();
    cons_ctx cc = {0};
    char host[256];
    int port = split_addr(run->addr, host, sizeof(host));
    struct mosquitto *m = mosquitto_new("pbcons", false, &cc);
    if (m == NULL) {
        return -1;
    }
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, host, port, KEEPALIVE_S) != MOSQ_ERR_SUCCESS ||
        mosquitto_subscribe(m, NULL, TOPIC, 1) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return -1;
    }
    for (int i = 0; i < 100 && !cc.subscribed; i++) {
        mosquitto_loop(m, LOOP_MS, 1);
    }
    cc.k = pb_cons_new(run, c);
    for (uint64_t iter = 0; cc.k != NULL && iter < UINT32_MAX && !pb_cons_should_stop(cc.k);
         iter++) {
        int rc = mosquitto_loop(m, LOOP_MS, 1);
        if (cc.in_batch > 0) {
            pb_cons_batch_end(cc.k);
            cc.in_batch = 0;
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            pb_cons_recv_error(cc.k);
            mosquitto_reconnect(m);
        }
    }
    pb_cons_free(cc.k);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}

int
main(int argc, char **argv)
{
    static const pb_system sys = {
        .name = "mqtt", .setup = NULL, .produce = mqtt_produce, .consume = mqtt_consume};
    return pb_main(&sys, argc, argv);
}
