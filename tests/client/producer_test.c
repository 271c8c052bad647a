// Producer against a fake broker thread on 127.0.0.1: credit exhaustion, THROTTLE with
// retry-after, connections cut mid-stream (resend without duplicates), SL_EAGAIN with the room fd
// and callback, blocking sends with a deadline, and reports of what close abandons.
// ctest-labels: concurrent
#include "support/test_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/budget.h>
#include <sluice/client.h>
#include <sluice/error.h>

#include "core/util.h"

#define FAKE_LOG_MAX   20000u
#define FAKE_RBUF      (SL__FAKE_FRAME + 4096u)
#define SL__FAKE_FRAME (1024u * 1024u)
#define TEST_WAIT_MS   20000

typedef struct fake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    // Scenario (set before start, or under mu).
    uint32_t credit_step; // bytes granted at open and after each ACK
    bool credit_hold;     // grant nothing until cleared
    int throttle_at;      // the Nth PRODUCE frame gets a THROTTLE (0: never)
    uint32_t throttle_ms;
    uint8_t throttle_reason; // TOPIC_FULL refuses the frame; other reasons are advice
    int cut_at;              // the Nth PRODUCE frame is appended, not acked, then the link is cut
    int drop_at;             // the Nth PRODUCE frame is dropped and the link is cut
    // State under mu.
    uint64_t pid;
    uint32_t expected_seq;
    uint64_t log_count;
    uint64_t log_value[FAKE_LOG_MAX]; // leading number of each appended record's value
    int produce_frames;
    int connections;
    uint64_t dups_skipped;
    bool credit_violation;
    bool bad_batch;
    int pings;
    uint64_t compressed_batches;
    uint8_t plain[SL__FAKE_FRAME]; // a batch decompressed for reading
} fake;

static int
fake_send(int fd, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < 10000 && off < len; i++) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

typedef struct fconn {
    int fd;
    uint32_t stream;
    uint64_t granted;
    uint64_t sent;
    uint8_t out[65536];
} fconn;

static int
fake_credit(fake *f, fconn *c)
{
    if (f->credit_hold) {
        return 0;
    }
    c->granted = c->sent + f->credit_step;
    sl_proto_credit m = {.granted_total_bytes = c->granted};
    size_t len = 0;
    assert_int_equal(sl_proto_encode_credit(c->out, sizeof(c->out), c->stream, &m, &len), SL_OK);
    return fake_send(c->fd, c->out, len);
}

// Appends the records of one PRODUCE frame, deduplicating by sequence. Returns records appended
// and the first new offset.
static uint32_t
fake_append(fake *f, const sl_proto_produce *p, uint64_t *first_offset)
{
    sl_proto_cursor cur;
    sl_proto_batches_init(&cur, &p->batches);
    const uint8_t *data = NULL;
    sl_batch_header h;
    uint32_t appended = 0;
    *first_offset = f->log_count;
    for (int b = 0; b < 1024 && sl_proto_batches_next(&cur, &data, &h) == SL_OK; b++) {
        sl_batch_header vh;
        sl_batch_iter it;
        size_t plain_len = 0;
        if (sl_batch_validate(data, h.length, &vh) != SL_OK || vh.producer_id != f->pid ||
            sl_batch_decompress(data, h.length, f->plain, sizeof(f->plain), &plain_len) != SL_OK ||
            sl_batch_iter_init(&it, f->plain, plain_len) != SL_OK) {
            f->bad_batch = true;
            return appended;
        }
        f->compressed_batches += (vh.flags & 7u) != SL_COMPRESSION_NONE;
        for (uint32_t i = 0; i < vh.record_count; i++) {
            sl_record r;
            uint64_t off;
            assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_OK);
            uint32_t seq = vh.producer_seq + i;
            if ((int32_t)(seq - f->expected_seq) < 0) {
                f->dups_skipped++;
                continue;
            }
            if (seq != f->expected_seq || f->log_count >= FAKE_LOG_MAX) {
                return appended; // a gap: refused, the producer resends
            }
            char text[32] = {0};
            memcpy(text, r.value, SL_MIN(r.value_size, sizeof(text) - 1));
            f->log_value[f->log_count++] = strtoull(text, NULL, 10);
            f->expected_seq++;
            appended++;
        }
    }
    return appended;
}

// Handles one frame; returns -1 to cut the connection.
static int
fake_frame(fake *f, fconn *c, const sl_frame *fr, size_t frame_len)
{
    size_t len = 0;
    uint8_t *out = c->out;
    size_t cap = sizeof(c->out);
    switch (fr->header.type) {
    case SL_FRAME_HELLO: {
        sl_proto_hello_ok ok = {.version = 1,
                                .max_frame_bytes = SL__FAKE_FRAME,
                                .heartbeat_ms = fr->u.hello.heartbeat_ms,
                                .max_streams = 16,
                                .broker_id = {"fake", 4}};
        assert_int_equal(sl_proto_encode_hello_ok(out, cap, &ok, &len), SL_OK);
        return fake_send(c->fd, out, len);
    }
    case SL_FRAME_PING: {
        f->pings++;
        sl_proto_ping p = {.nonce = fr->u.ping.nonce};
        assert_int_equal(sl_proto_encode_ping(out, cap, true, &p, &len), SL_OK);
        return fake_send(c->fd, out, len);
    }
    case SL_FRAME_OPEN_PRODUCE: {
        c->stream = fr->header.stream_id;
        c->granted = c->sent = 0;
        if (fr->u.open_produce.topic.size == 7 &&
            memcmp(fr->u.open_produce.topic.data, "missing", 7) == 0) {
            sl_proto_error e = {.code = sl_proto_code_from_status(SL_ENOENT),
                                .message = {"no such topic", 13}};
            assert_int_equal(sl_proto_encode_stream_close(out, cap, c->stream, &e, &len), SL_OK);
            return fake_send(c->fd, out, len);
        }
        if (fr->u.open_produce.producer_id == 0 || fr->u.open_produce.producer_id != f->pid) {
            f->pid = f->pid + 100; // a new identity
            f->expected_seq = 0;
        }
        sl_proto_stream_ok ok = {.kind = SL_STREAM_PRODUCE,
                                 .partition = 0,
                                 .producer_id = f->pid,
                                 .next_seq = f->expected_seq,
                                 .max_batch_bytes = 1u << 20};
        assert_int_equal(sl_proto_encode_stream_ok(out, cap, c->stream, &ok, &len), SL_OK);
        return fake_send(c->fd, out, len) == 0 ? fake_credit(f, c) : -1;
    }
    case SL_FRAME_PRODUCE: {
        c->sent += frame_len;
        if (c->sent > c->granted) {
            f->credit_violation = true;
        }
        int n = ++f->produce_frames;
        if (n == f->drop_at) {
            return -1;
        }
        if (n == f->throttle_at) {
            sl_proto_throttle t = {.reason = f->throttle_reason,
                                   .retry_after_ms = f->throttle_ms,
                                   .message = {"slow", 4}};
            assert_int_equal(sl_proto_encode_throttle(out, cap, c->stream, &t, &len), SL_OK);
            if (fake_send(c->fd, out, len) != 0) {
                return -1;
            }
            if (f->throttle_reason == SL_THROTTLE_TOPIC_FULL) {
                return 0; // refused: later frames show a gap and are refused until resent
            }
        }
        uint64_t first = 0;
        uint32_t added = fake_append(f, &fr->u.produce, &first);
        if (n == f->cut_at) {
            return -1;
        }
        if (added > 0) {
            sl_proto_ack a = {.seq_end = f->expected_seq,
                              .acks = fr->u.produce.acks,
                              .base_offset = first,
                              .last_offset = first + added - 1};
            assert_int_equal(sl_proto_encode_ack(out, cap, c->stream, &a, &len), SL_OK);
            if (fake_send(c->fd, out, len) != 0) {
                return -1;
            }
        }
        return fake_credit(f, c);
    }
    default:
        return 0;
    }
}

static void
fake_serve(fake *f, int fd)
{
    fconn *c = calloc(1, sizeof(*c));
    uint8_t *buf = malloc(FAKE_RBUF);
    size_t have = 0;
    c->fd = fd;
    bool held = false;
    while (!atomic_load(&f->stop)) {
        pthread_mutex_lock(&f->mu);
        if (held && !f->credit_hold && c->stream != 0 && fake_credit(f, c) != 0) {
            pthread_mutex_unlock(&f->mu);
            break;
        }
        held = f->credit_hold;
        pthread_mutex_unlock(&f->mu);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + have, FAKE_RBUF - have, 0);
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
        size_t pos = 0;
        int rc = 0;
        pthread_mutex_lock(&f->mu);
        for (int i = 0; i < 100000 && rc == 0; i++) {
            sl_frame fr;
            size_t used = 0;
            int err = sl_proto_decode(buf + pos, have - pos, SL__FAKE_FRAME, &fr, &used, NULL);
            if (err == SL_EAGAIN) {
                break;
            }
            assert_int_equal(err, SL_OK);
            rc = fake_frame(f, c, &fr, used);
            pos += used;
        }
        pthread_mutex_unlock(&f->mu);
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        if (rc != 0) {
            break;
        }
    }
    close(fd);
    free(buf);
    free(c);
}

static void *
fake_main(void *arg)
{
    fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        pthread_mutex_lock(&f->mu);
        f->connections++;
        pthread_mutex_unlock(&f->mu);
        fake_serve(f, fd);
    }
    return NULL;
}

static fake *
fake_start(uint32_t credit_step)
{
    fake *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->credit_step = credit_step;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    socklen_t alen = sizeof(a);
    getsockname(f->lfd, (struct sockaddr *)&a, &alen);
    f->port = ntohs(a.sin_port);
    return f;
}

static void
fake_run(fake *f)
{
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_stop(fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void
producer_cfg(sl_producer_config *cfg, const fake *f, char *broker, size_t size)
{
    sl_producer_config_init(cfg);
    snprintf(broker, size, "127.0.0.1:%u", f->port);
    cfg->broker = broker;
    cfg->topic = "events";
    cfg->batch_bytes = 4096;
    cfg->linger_ms = 2;
    cfg->heartbeat_ms = 1000;
    cfg->reconnect_backoff_max_ms = 200;
}

static void
send_numbered(sl_producer *p, uint64_t from, uint64_t count)
{
    for (uint64_t i = from; i < from + count; i++) {
        char value[64];
        int n = snprintf(value, sizeof(value), "%llu payload-%llu", (unsigned long long)i,
                         (unsigned long long)i * 7);
        sl_record r = {.value = value, .value_size = (uint32_t)n, .timestamp_us = 1};
        uint64_t seq = 0;
        assert_int_equal(sl_producer_send(p, &r, sl_deadline_after_ms(TEST_WAIT_MS), &seq), SL_OK);
        assert_int_equal(seq, i);
    }
}

// Polls reports until count records are reported; checks each is OK and counts those with offsets.
static uint64_t
collect_reports_from(sl_producer *p, uint64_t first_seq, uint64_t count, uint64_t *with_offset)
{
    uint64_t seen = 0;
    uint64_t next_seq = first_seq;
    *with_offset = 0;
    int64_t deadline = sl_deadline_after_ms(TEST_WAIT_MS);
    while (seen < count && sl_now_ns() < deadline) {
        sl_delivery_report r[16];
        size_t n = 0;
        assert_int_equal(sl_producer_poll_reports(p, r, 16, sl_deadline_after_ms(200), &n), SL_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(r[i].err, SL_OK);
            assert_int_equal(r[i].seq, next_seq); // reports come in sequence order
            next_seq += r[i].record_count;
            seen += r[i].record_count;
            if (r[i].offset != SL_OFFSET_NONE) {
                *with_offset += r[i].record_count;
            }
        }
    }
    return seen;
}

static uint64_t
collect_reports(sl_producer *p, uint64_t count, uint64_t *with_offset)
{
    return collect_reports_from(p, 0, count, with_offset);
}

static void
assert_log_exact(fake *f, uint64_t count)
{
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->log_count, count);
    for (uint64_t i = 0; i < count; i++) {
        assert_int_equal(f->log_value[i], i); // each once, in order: no loss, no duplicate
    }
    assert_false(f->credit_violation);
    assert_false(f->bad_batch);
    pthread_mutex_unlock(&f->mu);
}

static void
test_producer_delivers_within_credit(void **state)
{
    (void)state;
    fake *f = fake_start(9000); // about two 4 KiB batches per grant: credit runs out constantly
    fake_run(f);
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    send_numbered(p, 0, 3000);
    uint64_t with_offset = 0;
    assert_int_equal(collect_reports(p, 3000, &with_offset), 3000);
    assert_int_equal(with_offset, 3000);
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(TEST_WAIT_MS)), SL_OK);
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_int_equal(st.records_acked_total, 3000);
    assert_true(st.client.credit_waits_total > 0);
    assert_int_equal(st.buffer_used_bytes, 0);
    sl_producer_free(p);
    assert_log_exact(f, 3000);
    fake_stop(f);
}

// Sends 100 records, waits for their reports, sends 100 more: the second half can only go after
// the retry-after of the THROTTLE the first frame got.
static void
throttle_case(uint8_t reason, bool expect_resend)
{
    fake *f = fake_start(1u << 20);
    f->throttle_at = 1;
    f->throttle_ms = 300;
    f->throttle_reason = reason;
    fake_run(f);
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    int64_t start = sl_now_ns();
    uint64_t with_offset = 0;
    send_numbered(p, 0, 100);
    if (!expect_resend) {
        assert_int_equal(collect_reports(p, 100, &with_offset), 100);
    }
    send_numbered(p, 100, 100);
    uint64_t left = expect_resend ? 200 : 100;
    assert_int_equal(collect_reports_from(p, 200 - left, left, &with_offset), left);
    int64_t elapsed_ms = (sl_now_ns() - start) / 1000000;
    assert_true(elapsed_ms >= 300 * 8 / 10); // waited out the hint (-20 % jitter at most)
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_int_equal(st.client.throttles_total, 1);
    assert_int_equal(st.client.throttles_by_reason[reason], 1);
    assert_true(st.client.throttled_ms_total >= 240 && st.client.throttled_ms_total <= 360);
    // Advice resends nothing; a refusal (topic full) resends what was refused.
    assert_true(expect_resend ? st.batches_resent_total >= 1 : st.batches_resent_total == 0);
    sl_producer_free(p);
    assert_log_exact(f, 200);
    fake_stop(f);
}

static void
test_producer_throttle_advice_pauses_without_resend(void **state)
{
    (void)state;
    throttle_case(SL_THROTTLE_MEMORY_BUDGET, false);
}

static void
test_producer_throttle_topic_full_resends_after_pause(void **state)
{
    (void)state;
    throttle_case(SL_THROTTLE_TOPIC_FULL, true);
}

static void
test_producer_reconnects_without_duplicates(void **state)
{
    (void)state;
    fake *f = fake_start(1u << 20);
    f->cut_at = 3;  // appended, ack lost: the handshake must tell the producer
    f->drop_at = 7; // lost before the broker saw it: must be resent
    fake_run(f);
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    send_numbered(p, 0, 2000);
    uint64_t with_offset = 0;
    assert_int_equal(collect_reports(p, 2000, &with_offset), 2000);
    assert_true(with_offset < 2000); // the batch whose ACK was lost has no offset
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_true(st.client.connects_total >= 3);
    assert_true(st.client.disconnects_total >= 2);
    sl_producer_free(p);
    assert_log_exact(f, 2000);
    fake_stop(f);
}

typedef struct cb_state {
    atomic_int room_calls;
    atomic_ullong reported;
    atomic_ullong failed;
} cb_state;

static void
on_report(const sl_delivery_report *r, void *user)
{
    cb_state *s = user;
    if (r->err == SL_OK) {
        atomic_fetch_add(&s->reported, r->record_count);
    } else {
        atomic_fetch_add(&s->failed, r->record_count);
    }
}

static void
on_room(void *user)
{
    cb_state *s = user;
    atomic_fetch_add(&s->room_calls, 1);
}

static void
test_producer_eagain_then_room_fd_and_callback(void **state)
{
    (void)state;
    fake *f = fake_start(1u << 20);
    f->credit_hold = true;
    fake_run(f);
    cb_state cs = {0};
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.buffer_bytes = 16 * 1024;
    cfg.delivery_cb = on_report;
    cfg.delivery_user = &cs;
    cfg.room_cb = on_room;
    cfg.room_user = &cs;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    char value[200];
    memset(value, 'x', sizeof(value));
    sl_record r = {.value = value, .value_size = sizeof(value)};
    int err = SL_OK;
    uint64_t accepted = 0;
    for (int i = 0; i < 1000 && err == SL_OK; i++) {
        int64_t t0 = sl_now_ns();
        err = sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL);
        assert_true(sl_now_ns() - t0 < 1000000000); // a non-blocking call never blocks
        accepted += err == SL_OK;
    }
    assert_int_equal(err, SL_EAGAIN);
    assert_true(accepted > 10 && accepted < 100);
    struct pollfd pfd = {.fd = sl_producer_room_fd(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 100), 0); // no room while the broker grants nothing
    pthread_mutex_lock(&f->mu);
    f->credit_hold = false;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(poll(&pfd, 1, TEST_WAIT_MS), 1);
    assert_int_equal(sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL), SL_OK);
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(TEST_WAIT_MS)), SL_OK);
    for (int i = 0; i < 2000 && atomic_load(&cs.room_calls) == 0; i++) {
        usleep(5000); // the callback runs just after the fd is signalled
    }
    assert_true(atomic_load(&cs.room_calls) >= 1);
    assert_int_equal(atomic_load(&cs.reported), accepted + 1);
    sl_producer_free(p);
    fake_stop(f);
}

static void
test_producer_blocking_send_times_out_and_close_reports(void **state)
{
    (void)state;
    fake *f = fake_start(1u << 20);
    f->credit_hold = true;
    fake_run(f);
    cb_state cs = {0};
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.buffer_bytes = 8 * 1024;
    cfg.delivery_cb = on_report;
    cfg.delivery_user = &cs;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    char value[500] = {0};
    sl_record r = {.value = value, .value_size = sizeof(value)};
    uint64_t accepted = 0;
    int err = SL_OK;
    for (int i = 0; i < 100 && err == SL_OK; i++) {
        err = sl_producer_send(p, &r, sl_deadline_after_ms(100), NULL);
        accepted += err == SL_OK;
    }
    assert_int_equal(err, SL_ETIMEDOUT);
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_true(st.blocked_ns_total >= 50 * 1000000LL);
    assert_true(st.buffer_full_total >= 1);
    assert_int_equal(sl_producer_flush(p, sl_deadline_after_ms(50)), SL_ETIMEDOUT);
    sl_producer_free(p); // nothing was acked: every record is reported as not delivered
    assert_int_equal(atomic_load(&cs.failed), accepted);
    assert_int_equal(atomic_load(&cs.reported), 0);
    fake_stop(f);
}

static void
test_producer_unknown_topic_fails_records_and_sends(void **state)
{
    (void)state;
    fake *f = fake_start(1u << 20);
    fake_run(f);
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.topic = "missing";
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    char value[8] = "x";
    sl_record r = {.value = value, .value_size = 1};
    int err = SL_OK;
    uint64_t accepted = 0;
    int64_t deadline = sl_deadline_after_ms(TEST_WAIT_MS);
    while (err == SL_OK && sl_now_ns() < deadline) { // until the refusal reaches send
        err = sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL);
        accepted += err == SL_OK;
        usleep(1000);
    }
    assert_int_equal(err, SL_ENOENT); // a refusal that can never clear is not retried forever
    uint64_t failed = 0;
    while (failed < accepted && sl_now_ns() < deadline) {
        sl_delivery_report rep[8];
        size_t n = 0;
        assert_int_equal(sl_producer_poll_reports(p, rep, 8, sl_deadline_after_ms(100), &n), SL_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(rep[i].err, SL_ENOENT);
            assert_int_equal(rep[i].offset, SL_OFFSET_NONE);
            failed += rep[i].record_count;
        }
    }
    assert_int_equal(failed, accepted);
    sl_producer_free(p);
    fake_stop(f);
}

// Fails each allocation of sl_producer_new and of a send in turn: every failure is SL_ENOMEM and
// leaves no allocation behind (the producer is closed before nothing listens, so its I/O thread
// only retries connecting).
static void
test_producer_alloc_failures_leave_nothing_behind(void **state)
{
    (void)state;
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = "127.0.0.1:1";
    cfg.topic = "t";
    int64_t baseline = sl__alloc_bytes_in_use();
    int ok_at = 0;
    for (int n = 1; n <= 8 && ok_at == 0; n++) {
        sl_producer *p = NULL;
        sl__alloc_fail_after(n);
        int err = sl_producer_new(&cfg, &p);
        sl__alloc_fail_after(0);
        if (err == SL_OK) {
            ok_at = n;
            sl_producer_free(p);
        } else {
            assert_int_equal(err, SL_ENOMEM);
        }
        assert_int_equal(sl__alloc_bytes_in_use(), baseline);
    }
    assert_true(ok_at > 1); // at least one allocation was failed and survived
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    sl_record r = {.value = "v", .value_size = 1};
    sl__alloc_fail_after(1); // the send's batch allocation (or its buffer) fails
    int err = sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL);
    sl__alloc_fail_after(0);
    assert_true(err == SL_ENOMEM || err == SL_OK); // the I/O thread may have taken the failure
    sl_producer_stats st;
    sl_producer_stats_get(p, &st);
    assert_int_equal(st.buffer_used_bytes,
                     err == SL_OK ? sl_budget_record_cost(sl_record_encoded_size(&r)) : 0);
    sl_producer_free(p);
    assert_int_equal(sl__alloc_bytes_in_use(), baseline);
}

static void
test_producer_compresses_batches(void **state)
{
    (void)state;
    if (!sl_batch_compression_available(SL_COMPRESSION_LZ4)) {
        skip();
    }
    fake *f = fake_start(9000); // small windows: compressed batches are split and resent too
    f->cut_at = 4;
    fake_run(f);
    sl_producer_config cfg;
    char broker[64];
    producer_cfg(&cfg, f, broker, sizeof(broker));
    cfg.compression = SL_COMPRESSION_LZ4;
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    send_numbered(p, 0, 3000);
    uint64_t with_offset = 0;
    assert_int_equal(collect_reports(p, 3000, &with_offset), 3000);
    sl_producer_free(p);
    assert_log_exact(f, 3000);
    assert_true(f->compressed_batches > 0);
    fake_stop(f);
}

static void
test_producer_rejects_bad_config(void **state)
{
    (void)state;
    sl_producer_config cfg;
    sl_producer_config_init(&cfg);
    cfg.broker = "127.0.0.1:1";
    sl_producer *p = NULL;
    cfg.topic = "bad/name";
    assert_int_equal(sl_producer_new(&cfg, &p), SL_EINVAL);
    cfg.topic = "ok";
    cfg.compression = (sl_compression)7;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_EINVAL);
    cfg.compression = SL_COMPRESSION_NONE;
    cfg.broker = "no-port";
    assert_int_equal(sl_producer_new(&cfg, &p), SL_EINVAL);
    // A record that can never fit the buffer is refused before anything is buffered.
    cfg.broker = "127.0.0.1:1";
    cfg.buffer_bytes = 1024;
    assert_int_equal(sl_producer_new(&cfg, &p), SL_OK);
    char big[2048] = {0};
    sl_record r = {.value = big, .value_size = sizeof(big)};
    assert_int_equal(sl_producer_send(p, &r, SL_DEADLINE_NOW, NULL), SL_ETOOBIG);
    sl_producer_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producer_delivers_within_credit),
        cmocka_unit_test(test_producer_throttle_advice_pauses_without_resend),
        cmocka_unit_test(test_producer_throttle_topic_full_resends_after_pause),
        cmocka_unit_test(test_producer_reconnects_without_duplicates),
        cmocka_unit_test(test_producer_eagain_then_room_fd_and_callback),
        cmocka_unit_test(test_producer_blocking_send_times_out_and_close_reports),
        cmocka_unit_test(test_producer_unknown_topic_fails_records_and_sends),
        cmocka_unit_test(test_producer_alloc_failures_leave_nothing_behind),
        cmocka_unit_test(test_producer_compresses_batches),
        cmocka_unit_test(test_producer_rejects_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
