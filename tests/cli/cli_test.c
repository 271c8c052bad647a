// The sluice command in-process: --help and exit codes, option errors, the kcat-style --format,
// generated values, and an audit round trip (produce --count --ack-log, then consume --format)
// against a small fake broker that keeps one in-memory log.
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

#include <sluice/client.h>
#include <sluice/error.h>

#include "cli/cli.h"
#include "core/util.h"

#define FAKE_FRAME   (1024u * 1024u)
#define FAKE_LOG_MAX 4096u
#define VALUE_MAX    128u

typedef struct fake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    uint64_t count; // records in the log
    char value[FAKE_LOG_MAX][VALUE_MAX];
    uint32_t value_size[FAKE_LOG_MAX];
    uint32_t expected_seq;
    atomic_ullong committed;
} fake;

typedef struct fconn {
    int fd;
    uint32_t stream;
    uint64_t cursor;
    uint64_t demand;
    uint8_t out[FAKE_FRAME];
    uint8_t batch[FAKE_FRAME / 2];
} fconn;

static int
fsend(fconn *c, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < 10000 && off < len; i++) {
        ssize_t n = send(c->fd, c->out + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

static void
fake_append(fake *f, const sl_proto_produce *p, uint64_t *first, uint32_t *added)
{
    sl_proto_cursor cur;
    sl_proto_batches_init(&cur, &p->batches);
    const uint8_t *data = NULL;
    sl_batch_header h;
    *first = f->count;
    *added = 0;
    for (int b = 0; b < 1024 && sl_proto_batches_next(&cur, &data, &h) == SL_OK; b++) {
        sl_batch_iter it;
        assert_int_equal(sl_batch_validate(data, h.length, &h), SL_OK);
        assert_int_equal(sl_batch_iter_init(&it, data, h.length), SL_OK);
        for (uint32_t i = 0; i < h.record_count; i++) {
            sl_record r;
            uint64_t off;
            assert_int_equal(sl_batch_iter_next(&it, &r, &off), SL_OK);
            if (h.producer_seq + i != f->expected_seq || f->count >= FAKE_LOG_MAX) {
                continue; // duplicate (or gap): not appended
            }
            uint32_t n = SL_MIN(r.value_size, VALUE_MAX);
            memcpy(f->value[f->count], r.value, n);
            f->value_size[f->count++] = n;
            f->expected_seq++;
            (*added)++;
        }
    }
}

static int
fake_deliver(fake *f, fconn *c)
{
    for (int round = 0; round < 1000 && c->stream != 0 && c->demand > 0 && c->cursor < f->count;
         round++) {
        sl_batch_builder b;
        sl_batch_builder_init(&b, c->batch, sizeof(c->batch));
        uint64_t n = SL_MIN(SL_MIN(c->demand, f->count - c->cursor), 100);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t o = c->cursor + i;
            sl_record r = {
                .value = f->value[o], .value_size = f->value_size[o], .timestamp_us = 5000};
            assert_int_equal(sl_batch_builder_add(&b, &r), SL_OK);
        }
        size_t blen = 0;
        assert_int_equal(sl_batch_builder_finish(&b, &blen), SL_OK);
        sl_batch_set_base_offset(c->batch, c->cursor);
        sl_proto_deliver d = {.first_offset = c->cursor,
                              .end_offset = c->cursor + n,
                              .log_end_offset = f->count,
                              .batches = {.data = c->batch, .size_bytes = blen, .batch_count = 1}};
        size_t len = 0;
        assert_int_equal(sl_proto_encode_deliver(c->out, sizeof(c->out), c->stream, &d, &len),
                         SL_OK);
        if (fsend(c, len) != 0) {
            return -1;
        }
        c->cursor += n;
        c->demand -= n;
    }
    return 0;
}

static int
fake_produce(fake *f, fconn *c, const sl_frame *fr)
{
    uint64_t first = 0;
    uint32_t added = 0;
    fake_append(f, &fr->u.produce, &first, &added);
    size_t len = 0;
    sl_proto_ack a = {.seq_end = f->expected_seq,
                      .acks = fr->u.produce.acks,
                      .base_offset = first,
                      .last_offset = first + added - 1};
    if (added > 0) {
        assert_int_equal(sl_proto_encode_ack(c->out, sizeof(c->out), c->stream, &a, &len), SL_OK);
        return fsend(c, len);
    }
    return 0;
}

static int
fake_frame(fake *f, fconn *c, const sl_frame *fr)
{
    size_t len = 0;
    size_t cap = sizeof(c->out);
    int err = SL_OK;
    switch (fr->header.type) {
    case SL_FRAME_HELLO: {
        sl_proto_hello_ok ok = {
            .version = 1, .max_frame_bytes = FAKE_FRAME, .heartbeat_ms = 5000, .max_streams = 4};
        err = sl_proto_encode_hello_ok(c->out, cap, &ok, &len);
        break;
    }
    case SL_FRAME_PING: {
        sl_proto_ping p = {.nonce = fr->u.ping.nonce};
        err = sl_proto_encode_ping(c->out, cap, true, &p, &len);
        break;
    }
    case SL_FRAME_OPEN_PRODUCE: {
        c->stream = fr->header.stream_id;
        sl_proto_stream_ok ok = {.kind = SL_STREAM_PRODUCE,
                                 .producer_id = 7,
                                 .next_seq = f->expected_seq,
                                 .max_batch_bytes = FAKE_FRAME / 2};
        assert_int_equal(sl_proto_encode_stream_ok(c->out, cap, c->stream, &ok, &len), SL_OK);
        if (fsend(c, len) != 0) {
            return -1;
        }
        sl_proto_credit cr = {.granted_total_bytes = 1u << 30};
        err = sl_proto_encode_credit(c->out, cap, c->stream, &cr, &len);
        break;
    }
    case SL_FRAME_PRODUCE:
        return fake_produce(f, c, fr);
    case SL_FRAME_OPEN_CONSUME: {
        c->stream = fr->header.stream_id;
        c->cursor =
            fr->u.open_consume.start_mode == SL_START_OFFSET ? fr->u.open_consume.start_offset : 0;
        sl_proto_stream_ok ok = {.kind = SL_STREAM_CONSUME,
                                 .start_offset = c->cursor,
                                 .max_batch_bytes = FAKE_FRAME / 2};
        err = sl_proto_encode_stream_ok(c->out, cap, c->stream, &ok, &len);
        break;
    }
    case SL_FRAME_REQUEST:
        c->demand += fr->u.request.records;
        return 0;
    case SL_FRAME_COMMIT:
        atomic_store(&f->committed, fr->u.commit.offset);
        return 0;
    case SL_FRAME_CREATE_TOPIC: {
        sl_proto_admin_result r = {.correlation_id = fr->u.create_topic.correlation_id};
        err = sl_proto_encode_admin_result(c->out, cap, &r, &len);
        break;
    }
    case SL_FRAME_STATS: {
        sl_proto_stat s[1] = {{{"records_total", 13}, 0}};
        s[0].value = f->count;
        sl_proto_stats_result r = {
            .correlation_id = fr->u.topic_request.correlation_id, .entry_count = 1, .entries = s};
        err = sl_proto_encode_stats_result(c->out, cap, &r, &len);
        break;
    }
    default:
        return 0;
    }
    assert_int_equal(err, SL_OK);
    return fsend(c, len);
}

static void
fake_serve(fake *f, int fd)
{
    fconn *c = calloc(1, sizeof(*c));
    uint8_t *buf = malloc(FAKE_FRAME);
    size_t have = 0;
    c->fd = fd;
    while (!atomic_load(&f->stop) && fake_deliver(f, c) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + have, FAKE_FRAME - have, 0);
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
        size_t pos = 0;
        int rc = 0;
        for (int i = 0; i < 100000 && rc == 0; i++) {
            sl_frame fr;
            size_t used = 0;
            if (sl_proto_decode(buf + pos, have - pos, FAKE_FRAME, &fr, &used, NULL) != SL_OK) {
                break;
            }
            rc = fake_frame(f, c, &fr);
            pos += used;
        }
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
        if (poll(&p, 1, 20) > 0) {
            int fd = accept(f->lfd, NULL, NULL);
            if (fd >= 0) {
                fake_serve(f, fd);
            }
        }
    }
    return NULL;
}

static fake *
fake_start(void)
{
    fake *f = calloc(1, sizeof(*f));
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    socklen_t alen = sizeof(a);
    getsockname(f->lfd, (struct sockaddr *)&a, &alen);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

static void
fake_stop(fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    free(f);
}

// Runs `sluice ARGS...` in-process; captures stdout and stderr into *out_text / *err_text
// (caller frees).
static int
run(char **out_text, char **err_text, int argc, const char **argv)
{
    size_t out_size = 0;
    size_t err_size = 0;
    FILE *out = open_memstream(out_text, &out_size);
    FILE *err = open_memstream(err_text, &err_size);
    int code = sl_cli_main(argc, (char **)argv, out, err);
    fclose(out);
    fclose(err);
    return code;
}

static int
run_quiet(int argc, const char **argv)
{
    char *o = NULL;
    char *e = NULL;
    int code = run(&o, &e, argc, argv);
    free(o);
    free(e);
    return code;
}

static void
test_cli_help_and_usage_errors(void **state)
{
    (void)state;
    const char *help[] = {"sluice", "--help"};
    assert_int_equal(run_quiet(2, help), SL_CLI_EXIT_OK);
    const char *none[] = {"sluice"};
    assert_int_equal(run_quiet(1, none), SL_CLI_EXIT_USAGE);
    const char *unknown[] = {"sluice", "frobnicate"};
    assert_int_equal(run_quiet(2, unknown), SL_CLI_EXIT_USAGE);
    const char *cmds[] = {"topic", "produce", "consume", "stats"};
    for (int i = 0; i < 4; i++) {
        const char *argv[] = {"sluice", cmds[i], "--help"};
        char *o = NULL;
        char *e = NULL;
        assert_int_equal(run(&o, &e, 3, argv), SL_CLI_EXIT_OK);
        assert_non_null(strstr(o, "usage: sluice"));
        free(o);
        free(e);
    }
    const char *no_topic[] = {"sluice", "produce", "--count", "3"};
    assert_int_equal(run_quiet(4, no_topic), SL_CLI_EXIT_USAGE);
    const char *bad_acks[] = {"sluice", "produce", "--topic", "t", "--acks", "maybe"};
    char *o = NULL;
    char *e = NULL;
    assert_int_equal(run(&o, &e, 6, bad_acks), SL_CLI_EXIT_USAGE);
    assert_non_null(strstr(e, "--acks wants none, memory, log or fsync"));
    free(o);
    free(e);
    const char *bad_size[] = {"sluice", "produce", "--topic", "t", "--size", "12parsecs"};
    assert_int_equal(run_quiet(6, bad_size), SL_CLI_EXIT_USAGE);
    const char *bad_name[] = {"sluice", "topic", "create", "no/slash"};
    assert_int_equal(run_quiet(4, bad_name), SL_CLI_EXIT_USAGE);
    const char *group_from[] = {"sluice", "consume", "--topic", "t", "--from", "group"};
    assert_int_equal(run_quiet(6, group_from), SL_CLI_EXIT_USAGE);
    const char *unreached[] = {"sluice",      "topic",     "list", "--broker",
                               "127.0.0.1:1", "--timeout", "2s"};
    assert_int_equal(run_quiet(7, unreached), SL_CLI_EXIT_UNREACHED);
}

static void
test_cli_format_follows_kcat(void **state)
{
    (void)state;
    sl_consumed rec = {.offset = 42,
                       .partition = 3,
                       .record = {.key = "k1",
                                  .key_size = 2,
                                  .value = "hello",
                                  .value_size = 5,
                                  .timestamp_us = 1700000000123456}};
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    sl_cli_format(out, "%t/%p@%o %k=%s %T %K %S 100%%\\n", "events", &rec);
    sl_cli_format(out, "%s\\t%z\\n", "events", &rec);
    rec.record.key = NULL;
    rec.record.key_size = 0;
    sl_cli_format(out, "[%k] %K\\n", "events", &rec);
    fclose(out);
    assert_string_equal(text, "events/3@42 k1=hello 1700000000123 2 5 100%\n"
                              "hello\t%z\n"
                              "[] -1\n");
    free(text);
}

static void
test_cli_generated_values_start_with_sequence(void **state)
{
    (void)state;
    char buf[256];
    size_t n = sl_cli_gen_value(1234, 100, buf, sizeof(buf));
    assert_int_equal(n, 100);
    assert_memory_equal(buf, "1234 ", 5);
    n = sl_cli_gen_value(987654321, 3, buf, sizeof(buf)); // never shorter than "SEQ "
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "987654321 ", 10);
}

static void
test_cli_produce_then_consume_audit(void **state)
{
    (void)state;
    fake *f = fake_start();
    char broker[64];
    snprintf(broker, sizeof(broker), "127.0.0.1:%u", f->port);
    char dir[256];
    sl_test_tmpdir(dir, sizeof(dir));
    char ack_log[300];
    snprintf(ack_log, sizeof(ack_log), "%s/acks", dir);

    const char *create[] = {"sluice",       "topic", "create",   "audit",
                            "--partitions", "1",     "--broker", broker};
    assert_int_equal(run_quiet(8, create), SL_CLI_EXIT_OK);
    const char *produce[] = {"sluice",    "produce", "--topic",  "audit",  "--count",
                             "1000",      "--size",  "40",       "--rate", "20000",
                             "--ack-log", ack_log,   "--broker", broker};
    char *o = NULL;
    char *e = NULL;
    assert_int_equal(run(&o, &e, 14, produce), SL_CLI_EXIT_OK);
    assert_non_null(strstr(e, "sent 1000, acked 1000, failed 0"));
    free(o);
    free(e);

    // Every acknowledged message: one line SEQ PARTITION OFFSET, each sequence once.
    FILE *acks = fopen(ack_log, "r");
    assert_non_null(acks);
    static bool seen[1000];
    memset(seen, 0, sizeof(seen));
    unsigned long long seq = 0;
    unsigned part = 0;
    unsigned long long off = 0;
    int lines = 0;
    while (fscanf(acks, "%llu %u %llu", &seq, &part, &off) == 3) {
        assert_true(seq < 1000);
        assert_false(seen[seq]);
        seen[seq] = true;
        assert_int_equal(off, seq); // a single producer on an empty log
        lines++;
    }
    fclose(acks);
    assert_int_equal(lines, 1000);

    const char *consume[] = {"sluice", "consume",  "--topic",  "audit",    "--count",
                             "1000",   "--format", "%o %s\\n", "--broker", broker};
    assert_int_equal(run(&o, &e, 10, consume), SL_CLI_EXIT_OK);
    char *line = o;
    for (unsigned long long i = 0; i < 1000; i++) {
        unsigned long long got_off = 0;
        unsigned long long got_seq = 0;
        assert_int_equal(sscanf(line, "%llu %llu ", &got_off, &got_seq), 2);
        assert_int_equal(got_off, i);
        assert_int_equal(got_seq, i); // the value starts with its sequence number
        line = strchr(line, '\n');
        assert_non_null(line);
        line++;
    }
    assert_int_equal(*line, '\0');
    free(o);
    free(e);
    for (int i = 0; i < 2000 && atomic_load(&f->committed) != 1000; i++) {
        usleep(5000); // the fake reads the last COMMIT on its own thread
    }
    assert_int_equal(atomic_load(&f->committed), 1000); // auto ack committed what was printed

    const char *stats[] = {"sluice", "stats", "--raw", "--broker", broker};
    assert_int_equal(run(&o, &e, 5, stats), SL_CLI_EXIT_OK);
    assert_string_equal(o, "records_total 1000\n");
    free(o);
    free(e);
    fake_stop(f);
    sl_test_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_help_and_usage_errors),
        cmocka_unit_test(test_cli_format_follows_kcat),
        cmocka_unit_test(test_cli_generated_values_start_with_sequence),
        cmocka_unit_test(test_cli_produce_then_consume_audit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
