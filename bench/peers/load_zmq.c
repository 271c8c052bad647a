// Load client for ZeroMQ PUSH/PULL over loopback TCP (no broker). The consumer binds a PULL
// socket on --addr, the producer connects a PUSH socket; zmq_send returning is the "ack" (the
// message is in the local queue). Options (--opt): hwm=N (SNDHWM = RCVHWM, default 1000; with
// --bounded 335544, 64 MiB of payload across both queues), linger_ms=N (default 60000).
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#define HWM_DEFAULT    1000
#define HWM_BOUNDED    335544
#define TIMEOUT_MS     100
#define LINGER_DEFAULT 60000

static int
socket_setup(const pb_run *run, void *sock, int type)
{
    int hwm = (int)pb_opt_u64(run, "hwm", run->bounded ? HWM_BOUNDED : HWM_DEFAULT);
    int timeout = TIMEOUT_MS;
    int linger = (int)pb_opt_u64(run, "linger_ms", LINGER_DEFAULT);
    int opt = type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM;
    int topt = type == ZMQ_PUSH ? ZMQ_SNDTIMEO : ZMQ_RCVTIMEO;
    if (zmq_setsockopt(sock, opt, &hwm, sizeof(hwm)) != 0 ||
        zmq_setsockopt(sock, topt, &timeout, sizeof(timeout)) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0) {
        return -1;
    }
    char ep[300];
    snprintf(ep, sizeof(ep), "tcp://%s", run->addr);
    int rc = type == ZMQ_PUSH ? zmq_connect(sock, ep) : zmq_bind(sock, ep);
    if (rc != 0) {
        fprintf(stderr, "zmq: %s %s: %s\n", type == ZMQ_PUSH ? "connect" : "bind", ep,
                zmq_strerror(errno));
    }
    return rc;
}

// A send blocked past its timeout is retried with the same payload (stamped at its first try).
static int
zmq_produce(pb_run *run, uint32_t p)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_PUSH);
    if (sock == NULL || socket_setup(run, sock, ZMQ_PUSH) != 0) {
        zmq_ctx_term(ctx);
        return -1;
    }
    uint8_t buf[PB_PAYLOAD_BYTES];
    uint64_t seq = 0;
    bool pending = false;
    int64_t first_try = 0;
    for (uint64_t iter = 0; iter < PB_MAX_SEQ * 4; iter++) {
        if (!pending) {
            int64_t wait_ns = 0;
            pb_next n = pb_prod_next(run, p, buf, &seq, &wait_ns);
            if (n == PB_NEXT_DONE) {
                break;
            }
            if (n == PB_NEXT_WAIT) {
                pb_sleep_ns(wait_ns);
                continue;
            }
            pending = true;
            first_try = pb_now_ns();
        }
        if (zmq_send(sock, buf, PB_PAYLOAD_BYTES, 0) == PB_PAYLOAD_BYTES) {
            pb_prod_sent(run, p, first_try, pb_now_ns());
            pb_prod_acked(run, p, seq);
            pending = false;
        } else if (errno != EAGAIN || pb_prod_window_over(run, p)) {
            pb_prod_waited(run, p, first_try, pb_now_ns());
            break;
        }
    }
    pb_prod_finished(run, p);
    zmq_close(sock); // lingers up to linger_ms to deliver what is queued
    zmq_ctx_term(ctx);
    return 0;
}

static int
zmq_consume(pb_run *run, uint32_t c)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_PULL);
    if (sock == NULL || socket_setup(run, sock, ZMQ_PULL) != 0) {
        zmq_ctx_term(ctx);
        return -1;
    }
    pb_consumer *k = pb_cons_new(run, c);
    static uint8_t msgs[PB_BATCH][PB_PAYLOAD_BYTES];
    for (uint64_t iter = 0; k != NULL && iter < UINT32_MAX && !pb_cons_should_stop(k); iter++) {
        int n = 0;
        int got = zmq_recv(sock, msgs[0], PB_PAYLOAD_BYTES, 0);
        if (got < 0) {
            if (errno != EAGAIN) {
                pb_cons_recv_error(k);
            }
            continue;
        }
        for (n = 1; n < (int)PB_BATCH; n++) {
            if (zmq_recv(sock, msgs[n], PB_PAYLOAD_BYTES, ZMQ_DONTWAIT) < 0) {
                break;
            }
        }
        pb_cons_batch_begin(k);
        for (int i = 0; i < n; i++) {
            pb_cons_msg(k, msgs[i], PB_PAYLOAD_BYTES);
        }
        pb_cons_batch_end(k);
    }
    pb_cons_free(k);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}

int
main(int argc, char **argv)
{
    static const pb_system sys = {
        .name = "zmq", .setup = NULL, .produce = zmq_produce, .consume = zmq_consume};
    return pb_main(&sys, argc, argv);
}
