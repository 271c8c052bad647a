// Load client for NATS JetStream (libnats): js_PublishAsync with the library's in-flight limit
// (4096) and a PubAck handler (a PubAck is the ack, an error such as 10077 "maximum bytes
// exceeded" a rejection, not retried), and a durable pull consumer (Fetch 1000, explicit ack per
// message). Setup creates stream bench0 (file storage; with --bounded max_bytes 64 MiB and
// discard new). Options (--opt): max_pending=N.
#include "common.h"

#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#define STREAM        "bench0"
#define DURABLE       "g"
#define MAX_PENDING   4096
#define BOUND_BYTES   (64ll << 20)
#define FETCH_WAIT_MS 100
#define COMPLETE_WAIT 60000

typedef struct prod_ctx {
    pb_run *run;
    uint32_t p;
} prod_ctx;

static natsConnection *
connect_addr(const char *addr)
{
    char url[300];
    snprintf(url, sizeof(url), "nats://%s", addr);
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s != NATS_OK) {
        fprintf(stderr, "nats: connect %s: %s\n", url, natsStatus_GetText(s));
        return NULL;
    }
    return nc;
}

static int
nats_setup(pb_run *run)
{
    natsConnection *nc = connect_addr(run->addr);
    jsCtx *js = NULL;
    if (nc == NULL || natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        natsConnection_Destroy(nc);
        return -1;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {STREAM};
    cfg.Name = STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    if (run->bounded) {
        cfg.MaxBytes = BOUND_BYTES;
        cfg.Discard = js_DiscardNew;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "nats: add stream: %s (%d)\n", natsStatus_GetText(s), (int)jerr);
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return s == NATS_OK ? 0 : -1;
}

static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    prod_ctx *ctx = closure;
    uint64_t seq = pb_payload_seq(natsMsg_GetData(msg));
    if (pa != NULL) {
        pb_prod_acked(ctx->run, ctx->p, seq);
    } else {
        char reason[PB_REASON_BYTES];
        snprintf(reason, sizeof(reason), "%d %s", pae != NULL ? (int)pae->ErrCode : 0,
                 pae != NULL && pae->ErrText != NULL ? pae->ErrText : "error");
        pb_prod_rejected(ctx->run, ctx->p, seq, reason);
    }
    natsMsg_Destroy(msg);
}

static void
produce_loop(pb_run *run, uint32_t p, jsCtx *js)
{
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
        natsStatus s = js_PublishAsync(js, STREAM, buf, PB_PAYLOAD_BYTES, NULL);
        if (s == NATS_OK) {
            pb_prod_sent(run, p, first_try, pb_now_ns());
            pending = false;
        } else if (s != NATS_TIMEOUT || pb_prod_window_over(run, p)) {
            pb_prod_waited(run, p, first_try, pb_now_ns());
            if (s != NATS_TIMEOUT) {
                pb_prod_note(run, p, natsStatus_GetText(s));
            }
            break;
        }
    }
    pb_prod_window_end(run, p);
}

static int
nats_produce(pb_run *run, uint32_t p)
{
    natsConnection *nc = connect_addr(run->addr);
    if (nc == NULL) {
        return -1;
    }
    prod_ctx ctx = {.run = run, .p = p};
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = (int64_t)pb_opt_u64(run, "max_pending", MAX_PENDING);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &ctx;
    jsCtx *js = NULL;
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
        natsConnection_Destroy(nc);
        return -1;
    }
    produce_loop(run, p, js);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = COMPLETE_WAIT;
    (void)js_PublishAsyncComplete(js, &po);
    pb_prod_finished(run, p);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

static int64_t
consumer_queued(natsSubscription *sub)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    if (natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr) != NATS_OK || ci == NULL) {
        return -1;
    }
    int64_t q = (int64_t)ci->NumPending + ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return q;
}

static int
nats_consume(pb_run *run, uint32_t c)
{
    natsConnection *nc = connect_addr(run->addr);
    jsCtx *js = NULL;
    if (nc == NULL || natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        natsConnection_Destroy(nc);
        return -1;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    if (js_PullSubscribe(&sub, js, STREAM, DURABLE, NULL, &so, &jerr) != NATS_OK) {
        fprintf(stderr, "nats: pull subscribe failed (%d)\n", (int)jerr);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        return -1;
    }
    pb_consumer *k = pb_cons_new(run, c);
    for (uint64_t iter = 0; k != NULL && iter < UINT32_MAX && !pb_cons_should_stop(k); iter++) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, PB_BATCH, FETCH_WAIT_MS, &jerr);
        if (s != NATS_OK) {
            if (s != NATS_TIMEOUT) {
                pb_cons_recv_error(k);
            }
            continue;
        }
        pb_cons_batch_begin(k);
        for (int i = 0; i < list.Count; i++) {
            pb_cons_msg(k, natsMsg_GetData(list.Msgs[i]),
                        (size_t)natsMsg_GetDataLength(list.Msgs[i]));
        }
        pb_cons_batch_end(k);
        for (int i = 0; i < list.Count; i++) {
            (void)natsMsg_Ack(list.Msgs[i], NULL);
        }
        natsMsgList_Destroy(&list);
    }
    if (k != NULL) {
        pb_cons_set_queued(k, consumer_queued(sub));
        pb_cons_free(k);
    }
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

int
main(int argc, char **argv)
{
    static const pb_system sys = {
        .name = "nats", .setup = nats_setup, .produce = nats_produce, .consume = nats_consume};
    return pb_main(&sys, argc, argv);
}
