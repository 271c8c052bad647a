// Durable group state and dead letters. Committed offsets live in one small file per group and
// topic, <data>/groups/<group>/<topic>.offsets, rewritten whole and atomically (temp file, fsync,
// rename, directory fsync) at most every SL_GROUP_PERSIST_INTERVAL_MS, so a kill -9 loses at most
// that much progress and never a torn file. Dead letters go to <topic>.dlq through the storage
// thread like any produced batch. Layout: docs/storage.md, "Group offsets".
//
//   0 u32 magic "SLGO" | 4 u32 version 1 | 8 u32 partition_count | 12 u32 reserved |
//   16 partition_count x (u64 committed, u8 has_commit, 7 reserved) | u32 crc32c of all before
#include "broker/group.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "core/util.h"
#include "log/crc32c.h"

#define OFFSETS_MAGIC       0x4F474C53u // "SLGO"
#define OFFSETS_VERSION     1u
#define OFFSETS_HEAD_BYTES  16u
#define OFFSETS_ENTRY_BYTES 16u
#define OFFSETS_SUFFIX      ".offsets"
#define OFFSETS_FILE_MAX    (OFFSETS_HEAD_BYTES + SL_PROTO_PARTITIONS_MAX * OFFSETS_ENTRY_BYTES + 4u)
// Paths under the data dir: <data>/groups, then + "/" + group, then + "/" + file name, + ".tmp".
#define STORE_ROOT_BYTES (SL_CONFIG_PATH_MAX + 16u)
#define STORE_DIR_BYTES  (STORE_ROOT_BYTES + SL_PROTO_GROUP_NAME_MAX + 2u)
#define STORE_PATH_BYTES (STORE_DIR_BYTES + 256u + 2u)
#define STORE_TMP_BYTES  (STORE_PATH_BYTES + 8u)
// Groups directories scanned at startup (bounds the walk whatever is on disk).
#define STORE_ENTRIES_MAX (4u * SL_GROUPS_MAX)

static void
put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static uint32_t
get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static int
fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return SL_EIO;
    }
    int rc = fsync(fd) == 0 ? SL_OK : SL_EIO;
    close(fd);
    return rc;
}

static int
write_all(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    // Bounded by len: each pass writes at least one byte or fails.
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return SL_EIO;
        }
        done += (size_t)n;
    }
    return SL_OK;
}

int
sl_group_store_write(sl_broker *b, sl_group *g)
{
    static uint8_t buf[OFFSETS_FILE_MAX]; // loop thread only
    size_t len = OFFSETS_HEAD_BYTES + (size_t)g->partition_count * OFFSETS_ENTRY_BYTES;
    memset(buf, 0, len + 4);
    put32(buf, OFFSETS_MAGIC);
    put32(buf + 4, OFFSETS_VERSION);
    put32(buf + 8, g->partition_count);
    for (uint32_t i = 0; i < g->partition_count; i++) {
        uint8_t *e = buf + OFFSETS_HEAD_BYTES + (size_t)i * OFFSETS_ENTRY_BYTES;
        memcpy(e, &g->parts[i].committed, 8);
        e[8] = g->parts[i].has_commit ? 1 : 0;
    }
    put32(buf + len, sl_crc32c(0, buf, len));
    len += 4;
    char dir[STORE_DIR_BYTES];
    char path[STORE_PATH_BYTES];
    char tmp[STORE_TMP_BYTES];
    snprintf(dir, sizeof(dir), "%s/groups/%s", b->config.data_dir, g->name);
    snprintf(path, sizeof(path), "%s/%s" OFFSETS_SUFFIX, dir, g->topic);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        sl_broker_log(b, 0, "cannot create %s: %s", dir, strerror(errno));
        return SL_EIO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        sl_broker_log(b, 0, "cannot write %s: %s", tmp, strerror(errno));
        return SL_EIO;
    }
    int rc = write_all(fd, buf, len);
    if (rc == SL_OK && fdatasync(fd) != 0) {
        rc = SL_EIO;
    }
    close(fd);
    if (rc == SL_OK && rename(tmp, path) != 0) {
        rc = SL_EIO;
    }
    if (rc == SL_OK) {
        rc = fsync_dir(dir);
    }
    if (rc != SL_OK) {
        sl_broker_log(b, 0, "group %s: cannot store committed offsets in %s", g->name, path);
    }
    return rc;
}

// Reads one offsets file into a new group. Returns SL_OK, or SL_ECORRUPT / SL_EIO (skipped).
static int
load_file(sl_broker *b, const char *group, const char *topic, const char *path)
{
    static uint8_t buf[OFFSETS_FILE_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return SL_EIO;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < (ssize_t)(OFFSETS_HEAD_BYTES + 4) || get32(buf) != OFFSETS_MAGIC ||
        get32(buf + 4) != OFFSETS_VERSION) {
        return SL_ECORRUPT;
    }
    uint32_t count = get32(buf + 8);
    size_t len = OFFSETS_HEAD_BYTES + (size_t)count * OFFSETS_ENTRY_BYTES;
    if (count == 0 || count > SL_PROTO_PARTITIONS_MAX || (size_t)n != len + 4 ||
        get32(buf + len) != sl_crc32c(0, buf, len)) {
        return SL_ECORRUPT;
    }
    sl_topic *t = sl_topic_find(b, topic, strlen(topic));
    if (t == NULL || t->config.partition_count != count) {
        return SL_ENOENT; // the topic is gone or was recreated: its old offsets mean nothing
    }
    sl_group *g = NULL;
    int rc = sl_group_new(b, group, topic, count, &g);
    for (uint32_t i = 0; rc == SL_OK && i < count; i++) {
        const uint8_t *e = buf + OFFSETS_HEAD_BYTES + (size_t)i * OFFSETS_ENTRY_BYTES;
        memcpy(&g->parts[i].committed, e, 8);
        g->parts[i].commit_req = g->parts[i].committed;
        g->parts[i].has_commit = e[8] == 1;
    }
    return rc;
}

static void
load_group_dir(sl_broker *b, const char *root, const char *group)
{
    char dir[STORE_DIR_BYTES];
    snprintf(dir, sizeof(dir), "%s/%s", root, group);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    size_t suffix = strlen(OFFSETS_SUFFIX);
    for (uint32_t k = 0; k < STORE_ENTRIES_MAX && (e = readdir(d)) != NULL; k++) {
        size_t len = strlen(e->d_name);
        if (len <= suffix || strcmp(e->d_name + len - suffix, OFFSETS_SUFFIX) != 0 ||
            !sl_proto_topic_name_valid(e->d_name, len - suffix)) {
            continue;
        }
        char topic[SL_PROTO_TOPIC_NAME_MAX + 1];
        memcpy(topic, e->d_name, len - suffix);
        topic[len - suffix] = '\0';
        char path[STORE_PATH_BYTES];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        int rc = load_file(b, group, topic, path);
        if (rc != SL_OK) {
            sl_broker_log(b, 1, "group %s on %s: committed offsets in %s not loaded: %s", group,
                          topic, path, sl_strerror(rc));
        }
    }
    closedir(d);
}

int
sl_group_store_load(sl_broker *b, char *err, size_t err_size)
{
    char root[STORE_ROOT_BYTES];
    snprintf(root, sizeof(root), "%s/groups", b->config.data_dir);
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "cannot create %s: %s", root, strerror(errno));
        return SL_EIO;
    }
    DIR *d = opendir(root);
    if (d == NULL) {
        snprintf(err, err_size, "cannot read %s: %s", root, strerror(errno));
        return SL_EIO;
    }
    struct dirent *e;
    for (uint32_t k = 0; k < STORE_ENTRIES_MAX && (e = readdir(d)) != NULL; k++) {
        if (e->d_name[0] != '.' && sl_proto_topic_name_valid(e->d_name, strlen(e->d_name))) {
            load_group_dir(b, root, e->d_name);
        }
    }
    closedir(d);
    return SL_OK;
}

// ---- dead letters ------------------------------------------------------------------------------

static sl_topic *
dlq_topic(sl_broker *b, const char *topic, bool create)
{
    char name[SL_PROTO_TOPIC_NAME_MAX + 8];
    int n = snprintf(name, sizeof(name), "%s" SL_GROUP_DLQ_SUFFIX, topic);
    if (n <= 0 || (size_t)n > SL_PROTO_TOPIC_NAME_MAX) {
        return NULL;
    }
    sl_topic *t = sl_topic_find(b, name, (size_t)n);
    if (t != NULL || !create) {
        return t;
    }
    sl_proto_topic_config cfg = {.partition_count = 1,
                                 .max_backlog_bytes = b->config.topic.max_backlog_bytes,
                                 .full_policy = SL_FULL_BLOCK};
    char err[256];
    if (sl_topic_create(b, name, (size_t)n, &cfg, &t, err, sizeof(err)) != SL_OK) {
        sl_broker_log(b, 0, "cannot create dead-letter topic %s: %s", name, err);
        return NULL;
    }
    return t;
}

// Builds the dead letter of record r: the same record with a "sluice-dlq" header naming where it
// came from. Returns the batch length in out, or 0.
static size_t
build_from_record(sl_record r, const char *origin, uint64_t producer_id, uint32_t seq, uint8_t *out,
                  size_t cap)
{
    sl_header hs[SL_GROUP_DLQ_HEADERS_MAX + 1];
    sl_header_cursor cur = {0};
    uint16_t n = 0;
    while (n < SL_GROUP_DLQ_HEADERS_MAX && sl_record_header_next(&r, &cur, &hs[n]) == SL_OK) {
        n++;
    }
    hs[n++] = (sl_header){.name = "sluice-dlq",
                          .name_size = 10,
                          .value = origin,
                          .value_size = (uint32_t)strlen(origin)};
    r.headers = hs;
    r.header_count = n;
    r.raw_headers = NULL;
    r.raw_headers_size = 0;
    sl_batch_builder bb;
    sl_batch_builder_init(&bb, out, cap);
    sl_batch_builder_set_producer(&bb, producer_id, seq);
    size_t blen = 0;
    if (sl_batch_builder_add(&bb, &r) != SL_OK || sl_batch_builder_finish(&bb, &blen) != SL_OK) {
        return 0;
    }
    return blen;
}

// Finds the record at offset in one batch (decompressed first if need be) and builds its dead
// letter into out. Returns the batch length or 0.
static size_t
dead_letter_of_batch(const uint8_t *batch, const sl_batch_header *h, uint64_t offset,
                     const char *origin, uint64_t producer_id, uint32_t seq, uint8_t *out,
                     size_t cap)
{
    size_t plain_len = h->length;
    if (sl_batch_decompressed_length(h, &plain_len) != SL_OK) {
        return 0;
    }
    uint8_t *plain = sl_alloc(plain_len);
    if (plain == NULL ||
        sl_batch_decompress(batch, h->length, plain, plain_len, &plain_len) != SL_OK) {
        sl_free(plain, plain != NULL ? plain_len : 0);
        return 0;
    }
    size_t blen = 0;
    sl_batch_iter it;
    sl_record r;
    uint64_t off = 0;
    if (sl_batch_iter_init(&it, plain, plain_len) == SL_OK) {
        // Bounded by the batch's record count.
        while (blen == 0 && sl_batch_iter_next(&it, &r, &off) == SL_OK) {
            if (off == offset) {
                blen = build_from_record(r, origin, producer_id, seq, out, cap);
                break;
            }
        }
    }
    sl_free(plain, plain_len);
    return blen;
}

// Finds the batch holding offset in buf[0..len) and builds the record's dead letter into out.
static size_t
build_dead_letter(const uint8_t *buf, size_t len, uint64_t offset, const char *origin,
                  uint64_t producer_id, uint32_t seq, uint8_t *out, size_t cap)
{
    size_t used = 0;
    // Bounded by len: each pass consumes one batch.
    while (used < len) {
        sl_batch_header h;
        if (sl_batch_header_decode(buf + used, len - used, &h) != SL_OK) {
            return 0;
        }
        const uint8_t *batch = buf + used;
        used += h.length;
        if (offset >= h.base_offset && offset < h.base_offset + h.record_count) {
            return dead_letter_of_batch(batch, &h, offset, origin, producer_id, seq, out, cap);
        }
    }
    return 0;
}

int
sl_group_dead_letter(sl_broker *b, sl_group *g, uint32_t partition, uint64_t offset)
{
    sl_topic *src = sl_topic_find(b, g->topic, strlen(g->topic));
    sl_topic *dt = src != NULL ? dlq_topic(b, g->topic, true) : NULL;
    if (dt == NULL) {
        return SL_ENOENT;
    }
    sl_partition *sp = &src->partitions[partition];
    size_t len = 0;
    int rc =
        sl_log_read(sp->log, offset, b->scratch_size / 2, b->scratch, b->scratch_size / 2, &len);
    if (rc != SL_OK) {
        return rc;
    }
    if (g->dlq_producer_id == 0) {
        g->dlq_producer_id = ++b->next_producer_id;
    }
    sl_partition *dp = &dt->partitions[0];
    sl_producer_slot *slot = sl_partition_producer(dp, g->dlq_producer_id, true);
    char origin[SL_PROTO_TOPIC_NAME_MAX * 2 + 64];
    snprintf(origin, sizeof(origin), "%s/%" PRIu32 "/%" PRIu64 " group %s", g->topic, partition,
             offset, g->name);
    uint8_t *out = b->scratch + b->scratch_size / 2;
    size_t blen = build_dead_letter(b->scratch, len, offset, origin, g->dlq_producer_id,
                                    slot->next_seq, out, b->scratch_size / 2);
    if (blen == 0) {
        sl_broker_log(b, 1, "group %s: record %s cannot be dead-lettered (unreadable or too big)",
                      g->name, origin);
        return SL_ENOTSUP;
    }
    size_t need = sizeof(sl_store_req) + blen;
    if (sl_budget_reserve(dt->memory, need, 0) != SL_OK) {
        return SL_EFULL; // retried at the next round
    }
    sl_store_req *r = sl_calloc(1, need);
    if (r == NULL) {
        sl_budget_release(dt->memory, need, 0);
        return SL_ENOMEM;
    }
    memcpy(r->data, out, blen);
    r->size = blen;
    r->part = dp;
    r->producer_id = g->dlq_producer_id;
    r->first_seq = slot->next_seq;
    r->record_count = 1;
    r->acks = SL_ACKS_LOG;
    r->charged = need;
    r->batch_count = 1;
    slot->next_seq++;
    dt->refs++;
    dt->stats.records_in++;
    dt->stats.bytes_in += blen;
    dt->stats.batches_in++;
    g->parts[partition].dlq_hold = offset;
    g->parts[partition].dlq_seq_end = slot->next_seq;
    sl_storage_submit(&b->storage, r);
    sl_broker_log(b, 1, "group %s: record %s went to the dead-letter topic %s after %u deliveries",
                  g->name, origin, dt->name, (unsigned)g->max_redeliveries + 1u);
    return SL_OK;
}

bool
sl_group_dead_letter_done(sl_broker *b, sl_group *g, sl_group_part *gp)
{
    sl_topic *dt = dlq_topic(b, g->topic, false);
    sl_producer_slot *slot =
        dt != NULL ? sl_partition_producer(&dt->partitions[0], g->dlq_producer_id, false) : NULL;
    if (slot == NULL) {
        return true; // the topic or the identity is gone: nothing left to wait for
    }
    return (int32_t)(slot->stored_seq - gp->dlq_seq_end) >= 0;
}
