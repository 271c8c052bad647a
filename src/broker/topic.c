// Topics and partitions: the registry, their directories under <data>/topics/<name>/ (a topic.conf
// plus one log directory per partition), the data directory lock, and the per-partition table of
// producer sequences that makes resends after a reconnect idempotent.
#include "broker/broker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/batch.h>
#include <sluice/error.h>

#include "core/util.h"

#define TOPIC_CONF_NAME "topic.conf"
#define PATH_BYTES      (SL_CONFIG_PATH_MAX + 512)

static int fail(char *err, size_t err_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t err_size, int code, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int
mkdir_p(const char *path)
{
    char tmp[PATH_BYTES];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

int
sl_topics_lock_data_dir(sl_broker *b, char *err, size_t err_size)
{
    const char *dir = b->config.data_dir;
    if (mkdir_p(dir) != 0) {
        return fail(err, err_size, SL_EIO, "cannot create data directory %s: %s", dir,
                    strerror(errno));
    }
    char path[PATH_BYTES];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return fail(err, err_size, SL_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return fail(err, err_size, SL_EBUSY,
                    "data directory %s is in use by another sluiced (pid %s); stop it or pass "
                    "another --data",
                    dir, holder[0] != '\0' ? holder : "unknown");
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        close(fd);
        return fail(err, err_size, SL_EIO, "cannot write %s", path);
    }
    b->lock_fd = fd;
    snprintf(path, sizeof(path), "%s/topics", dir);
    if (mkdir_p(path) != 0) {
        return fail(err, err_size, SL_EIO, "cannot create %s: %s", path, strerror(errno));
    }
    return SL_OK;
}

sl_topic *
sl_topic_find(sl_broker *b, const char *name, size_t name_size)
{
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        if (!t->deleted && strlen(t->name) == name_size && memcmp(t->name, name, name_size) == 0) {
            return t;
        }
    }
    return NULL;
}

static sl_log_fsync
log_fsync_policy(const sl_broker_config *c)
{
    switch (c->fsync_policy) {
    case SL_FSYNC_ALWAYS:
        return SL_LOG_FSYNC_NEVER; // the storage thread flushes once per group
    case SL_FSYNC_INTERVAL:
        return SL_LOG_FSYNC_INTERVAL;
    case SL_FSYNC_NEVER:
        break;
    }
    return SL_LOG_FSYNC_NEVER;
}

static void
log_message(const char *line, void *user)
{
    sl_topic *t = user;
    sl_broker_log(t->broker, 1, "topic %s: %s", t->name, line);
}

static int
topic_write_conf(sl_broker *b, const sl_topic *t)
{
    char path[PATH_BYTES];
    char tmp[PATH_BYTES + 8];
    snprintf(path, sizeof(path), "%s/topics/%s/" TOPIC_CONF_NAME, b->config.data_dir, t->name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return SL_EIO;
    }
    const sl_proto_topic_config *c = &t->config;
    fprintf(f,
            "partitions = %" PRIu32 "\nmax_backlog_bytes = %" PRIu64 "\nmax_lag_ms = %" PRIu32
            "\nfull_policy = %u\nretention_bytes = %" PRIu64 "\nretention_ms = %" PRIu64 "\n",
            c->partition_count, c->max_backlog_bytes, c->max_lag_ms, (unsigned)c->full_policy,
            c->retention_bytes, c->retention_ms);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        return SL_EIO;
    }
    return SL_OK;
}

static int
topic_read_conf(const char *path, sl_proto_topic_config *c)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return SL_ENOENT;
    }
    char key[64];
    unsigned long long v = 0;
    int seen = 0;
    // One key per line; bounded by the file.
    while (fscanf(f, " %63[a-z_] = %llu", key, &v) == 2) {
        if (strcmp(key, "partitions") == 0) {
            c->partition_count = (uint32_t)v;
            seen = 1;
        } else if (strcmp(key, "max_backlog_bytes") == 0) {
            c->max_backlog_bytes = v;
        } else if (strcmp(key, "max_lag_ms") == 0) {
            c->max_lag_ms = (uint32_t)v;
        } else if (strcmp(key, "full_policy") == 0) {
            c->full_policy = (uint8_t)v;
        } else if (strcmp(key, "retention_bytes") == 0) {
            c->retention_bytes = v;
        } else if (strcmp(key, "retention_ms") == 0) {
            c->retention_ms = v;
        }
    }
    fclose(f);
    if (!seen || c->partition_count == 0 || c->partition_count > SL_PROTO_PARTITIONS_MAX ||
        c->full_policy > SL_FULL_DROP_OLDEST) {
        return SL_ECORRUPT;
    }
    return SL_OK;
}

static void
topic_free(sl_topic *t)
{
    if (t->partitions != NULL) {
        for (uint32_t i = 0; i < t->config.partition_count; i++) {
            sl_log_close(t->partitions[i].log);
        }
        sl_free(t->partitions, sizeof(*t->partitions) * t->config.partition_count);
    }
    sl_budget_free(t->memory);
    sl_budget_free(t->disk);
    sl_free(t, sizeof(*t));
}

// Records scanned at the tail of each partition on open to rebuild the producer table.
#define PRODUCER_SCAN_RECORDS 65536u
// Bytes read per step of that scan.
#define PRODUCER_SCAN_CHUNK (1u << 20)

// Rebuilds the producer identities (id, next sequence, last offset) from the batches at the tail
// of the log, so a producer resending after a broker crash is recognised instead of duplicated.
// Identities older than the scanned window are forgotten (documented in docs/design/broker.md).
static void
partition_scan_producers(sl_broker *b, sl_partition *p)
{
    uint64_t start = sl_log_start_offset(p->log);
    uint64_t end = p->end_offset;
    uint64_t pos = end > start + PRODUCER_SCAN_RECORDS ? end - PRODUCER_SCAN_RECORDS : start;
    uint8_t *buf = sl_alloc(PRODUCER_SCAN_CHUNK);
    if (buf == NULL) {
        return;
    }
    // Bounded by the window: every pass advances pos by at least one batch, or stops.
    while (pos < end) {
        size_t len = 0;
        if (sl_log_read(p->log, pos, PRODUCER_SCAN_CHUNK, buf, PRODUCER_SCAN_CHUNK, &len) !=
                SL_OK ||
            len == 0) {
            break;
        }
        size_t used = 0;
        uint64_t next = pos;
        while (used < len) {
            sl_batch_header h;
            if (sl_batch_header_decode(buf + used, len - used, &h) != SL_OK) {
                break;
            }
            if (h.producer_id != 0) {
                sl_producer_slot *slot = sl_partition_producer(p, h.producer_id, true);
                slot->next_seq = h.producer_seq + h.record_count;
                slot->stored_seq = slot->next_seq;
                slot->last_offset = h.base_offset + h.record_count - 1;
                slot->last_used_tick = h.base_offset; // later batches are more recently used
                b->next_producer_id = SL_MAX(b->next_producer_id, h.producer_id);
            }
            next = h.base_offset + h.record_count;
            used += h.length;
        }
        if (next <= pos) {
            break;
        }
        pos = next;
    }
    for (uint32_t i = 0; i < SL_BROKER_PRODUCERS_PER_PARTITION; i++) {
        p->producers[i].last_used_tick = 0;
    }
    sl_free(buf, PRODUCER_SCAN_CHUNK);
}

// Opens (creating if needed) the topic's partitions; the topic directory must exist.
static int
topic_open(sl_broker *b, const char *name, const sl_proto_topic_config *config,
           sl_topic **topic_out, char *err, size_t err_size)
{
    sl_topic *t = sl_calloc(1, sizeof(*t));
    if (t == NULL) {
        return SL_ENOMEM;
    }
    sl__strlcpy(t->name, name, sizeof(t->name));
    t->config = *config;
    t->broker = b;
    uint64_t mem_cap = SL_MAX(b->config.memory_budget_bytes / 2, (uint64_t)1 << 20);
    sl_budget_config mem = {.name = name, .capacity_bytes = mem_cap};
    sl_budget_config disk = {.name = name, .capacity_bytes = b->config.disk_budget_bytes};
    int rc = sl_budget_new(&mem, b->memory, &t->memory);
    if (rc == SL_OK) {
        rc = sl_budget_new(&disk, b->disk, &t->disk);
    }
    if (rc == SL_OK) {
        t->partitions = sl_calloc(config->partition_count, sizeof(*t->partitions));
        rc = t->partitions == NULL ? SL_ENOMEM : SL_OK;
    }
    for (uint32_t i = 0; rc == SL_OK && i < config->partition_count; i++) {
        sl_partition *p = &t->partitions[i];
        char dir[PATH_BYTES];
        snprintf(dir, sizeof(dir), "%s/topics/%s/%" PRIu32, b->config.data_dir, name, i);
        sl_log_config lc = {
            .dir_path = dir,
            .segment_bytes = b->config.topic.segment_bytes,
            .fsync_policy = log_fsync_policy(&b->config),
            .fsync_interval_ms = (uint32_t)SL_MIN(b->config.fsync_interval_ms, 3600000),
            .retention_bytes = config->retention_bytes,
            .retention_ms = (int64_t)config->retention_ms,
            .lossless = config->full_policy != SL_FULL_DROP_OLDEST,
            .disk_budget = t->disk,
            .memory_budget = NULL,
            .message_cb = log_message,
            .message_user = t,
        };
        if (config->full_policy == SL_FULL_DROP_OLDEST && config->max_backlog_bytes > 0) {
            // Lossy by choice: the backlog bound is enforced by deleting the oldest segments, so
            // segments must be small enough for that to be a fine-grained cut.
            uint64_t share = config->max_backlog_bytes / config->partition_count;
            lc.retention_bytes =
                lc.retention_bytes == 0 ? share : SL_MIN(lc.retention_bytes, share);
            lc.segment_bytes =
                SL_MAX(SL_MIN(lc.segment_bytes, share / 4), (uint64_t)SL_LOG_SEGMENT_BYTES_MIN);
        }
        sl_log_recovery_report report;
        p->topic = t;
        p->index = i;
        rc = sl_log_open(&lc, &p->log, &report);
        if (rc != SL_OK) {
            fail(err, err_size, rc, "cannot open partition log %s: %s", dir, sl_strerror(rc));
            break;
        }
        p->end_offset = report.end_offset;
        p->durable_offset = sl_log_durable_offset(p->log);
        p->low_position = report.start_offset;
        p->low_committed = report.start_offset;
        partition_scan_producers(b, p);
        if (report.truncated_bytes > 0) {
            sl_broker_log(b, 1,
                          "topic %s partition %" PRIu32 ": recovery truncated %" PRIu64
                          " torn bytes at offset %" PRIu64,
                          name, i, report.truncated_bytes, report.truncated_offset_first);
        }
    }
    if (rc != SL_OK) {
        topic_free(t);
        return rc;
    }
    t->next = b->topics;
    b->topics = t;
    b->topic_count++;
    *topic_out = t;
    return SL_OK;
}

int
sl_topic_create(sl_broker *b, const char *name, size_t name_size,
                const sl_proto_topic_config *config, sl_topic **topic_out, char *err,
                size_t err_size)
{
    if (!sl_proto_topic_name_valid(name, name_size)) {
        return fail(err, err_size, SL_EINVAL,
                    "invalid topic name: use 1..249 characters of A-Z a-z 0-9 . _ -");
    }
    if (sl_topic_find(b, name, name_size) != NULL) {
        return fail(err, err_size, SL_EEXIST, "topic '%.*s' already exists", (int)name_size, name);
    }
    if (config->partition_count == 0 || config->partition_count > SL_PROTO_PARTITIONS_MAX) {
        return fail(err, err_size, SL_EINVAL, "partitions must be 1..%u", SL_PROTO_PARTITIONS_MAX);
    }
    if (config->full_policy > SL_FULL_DROP_OLDEST) {
        return fail(err, err_size, SL_EINVAL, "unknown full policy %u", config->full_policy);
    }
    if (b->topic_count >= SL_BROKER_TOPICS_MAX) {
        return fail(err, err_size, SL_EFULL, "the broker holds its maximum of %u topics",
                    SL_BROKER_TOPICS_MAX);
    }
    char name_z[SL_PROTO_TOPIC_NAME_MAX + 1];
    memcpy(name_z, name, name_size);
    name_z[name_size] = '\0';
    char dir[PATH_BYTES];
    snprintf(dir, sizeof(dir), "%s/topics/%s", b->config.data_dir, name_z);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return fail(err, err_size, SL_EIO, "cannot create %s: %s", dir, strerror(errno));
    }
    int rc = topic_open(b, name_z, config, topic_out, err, err_size);
    if (rc != SL_OK) {
        return rc;
    }
    rc = topic_write_conf(b, *topic_out);
    if (rc != SL_OK) {
        return fail(err, err_size, rc, "cannot write the configuration of topic %s", name_z);
    }
    sl_broker_log(b, 2, "created topic %s with %" PRIu32 " partitions", name_z,
                  config->partition_count);
    return SL_OK;
}

int
sl_topics_load(sl_broker *b, char *err, size_t err_size)
{
    char dir[PATH_BYTES];
    snprintf(dir, sizeof(dir), "%s/topics", b->config.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return fail(err, err_size, SL_EIO, "cannot read %s: %s", dir, strerror(errno));
    }
    struct dirent *e;
    int rc = SL_OK;
    while (rc == SL_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !sl_proto_topic_name_valid(e->d_name, strlen(e->d_name))) {
            continue;
        }
        if (b->topic_count >= SL_BROKER_TOPICS_MAX) {
            sl_broker_log(b, 0, "more than %u topics in %s; the rest are not loaded",
                          SL_BROKER_TOPICS_MAX, dir);
            break;
        }
        char path[PATH_BYTES + 300];
        snprintf(path, sizeof(path), "%s/%s/" TOPIC_CONF_NAME, dir, e->d_name);
        sl_proto_topic_config c = {0};
        if (topic_read_conf(path, &c) != SL_OK) {
            sl_broker_log(b, 1, "skipping %s/%s: missing or damaged " TOPIC_CONF_NAME, dir,
                          e->d_name);
            continue;
        }
        sl_topic *t = NULL;
        rc = topic_open(b, e->d_name, &c, &t, err, err_size);
    }
    closedir(d);
    return rc;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
sl_topic_unref(sl_topic *t)
{
    SL_ASSERT(t->refs > 0);
    t->refs--;
    if (t->refs == 0 && t->deleted) {
        topic_free(t);
    }
}

int
sl_topic_delete(sl_broker *b, sl_topic *t, char *err, size_t err_size)
{
    if (t->producer_count > 0 || t->refs > 0) {
        return fail(err, err_size, SL_EBUSY,
                    "topic %s has open streams or pending writes; close them first", t->name);
    }
    sl_topic **link = &b->topics;
    while (*link != t) {
        link = &(*link)->next;
    }
    *link = t->next;
    b->topic_count--;
    char dir[PATH_BYTES];
    snprintf(dir, sizeof(dir), "%s/topics/%s", b->config.data_dir, t->name);
    sl_broker_log(b, 2, "deleted topic %s", t->name);
    topic_free(t);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return SL_OK;
}

void
sl_topics_close(sl_broker *b)
{
    sl_topic *t = b->topics;
    while (t != NULL) {
        sl_topic *next = t->next;
        topic_free(t);
        t = next;
    }
    b->topics = NULL;
    b->topic_count = 0;
}

uint64_t
sl_partition_backlog_bytes(const sl_partition *p)
{
    if (p->end_offset <= p->low_position) {
        return 0;
    }
    return (p->end_offset - p->low_position) * sl_partition_record_bytes(p);
}

uint64_t
sl_partition_unacked_bytes(const sl_partition *p)
{
    uint64_t from = SL_MIN(p->low_committed, p->low_position);
    if (p->end_offset <= from) {
        return 0;
    }
    return (p->end_offset - from) * sl_partition_record_bytes(p);
}

uint64_t
sl_partition_record_bytes(const sl_partition *p)
{
    // From what this broker appended; a fresh broker assumes 128.
    uint64_t per =
        p->stored_records_total > 0 ? p->stored_bytes_total / p->stored_records_total : 128;
    return SL_MAX(per, 1);
}

sl_producer_slot *
sl_partition_producer(sl_partition *p, uint64_t producer_id, bool create)
{
    sl_producer_slot *oldest = &p->producers[0];
    for (uint32_t i = 0; i < SL_BROKER_PRODUCERS_PER_PARTITION; i++) {
        sl_producer_slot *s = &p->producers[i];
        if (s->producer_id == producer_id) {
            return s;
        }
        if (s->last_used_tick < oldest->last_used_tick) {
            oldest = s;
        }
    }
    if (!create) {
        return NULL;
    }
    // Evicting the least recently used identity: a resend from it after a reconnect can no longer
    // be recognised (documented in docs/protocol.md, "Idempotent producers").
    memset(oldest, 0, sizeof(*oldest));
    oldest->producer_id = producer_id;
    return oldest;
}
