// The drop ledger (law 2: loss is never silent): every record a lossy policy drops is counted by
// reason and remembered with its topic, partition and offset range in a ring of
// SL_DROPS_LEDGER_ENTRIES entries, adjacent ranges merged. Served as JSON on /drops and printed by
// `sluice drops`. Loop thread only.
#include "broker/ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/util.h"

const char *
sl_drop_reason_name(sl_drop_reason reason)
{
    switch (reason) {
    case SL_DROP_EVICTED:
        return "evicted";
    default:
        return "unknown";
    }
}

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// The newest entry of p for reason, searching back from the newest (bounded by the ring).
static sl_drop_entry *
latest_for(sl_ops *o, const sl_partition *p, sl_drop_reason reason, bool *is_newest_out)
{
    for (uint32_t k = 0; k < o->ledger_count; k++) {
        uint32_t i = (o->ledger_head + o->ledger_count - 1 - k) % SL_DROPS_LEDGER_ENTRIES;
        sl_drop_entry *e = &o->ledger[i];
        if (e->partition == p->index && e->reason == reason &&
            strcmp(e->topic, p->topic->name) == 0) {
            *is_newest_out = k == 0;
            return e;
        }
    }
    return NULL;
}

static sl_drop_entry *
entry_append(sl_ops *o)
{
    if (o->ledger_count == SL_DROPS_LEDGER_ENTRIES) {
        o->ledger_head = (o->ledger_head + 1) % SL_DROPS_LEDGER_ENTRIES;
        o->ledger_count--;
        o->ledger_overwritten++;
    }
    uint32_t slot = (o->ledger_head + o->ledger_count) % SL_DROPS_LEDGER_ENTRIES;
    o->ledger_count++;
    sl_drop_entry *e = &o->ledger[slot];
    memset(e, 0, sizeof(*e));
    return e;
}

void
sl_drops_record(sl_broker *b, sl_partition *p, sl_drop_reason reason, uint64_t first_offset,
                uint64_t end_offset)
{
    sl_ops *o = b->ops;
    if (o == NULL || (uint32_t)reason >= SL_DROP_REASON_COUNT) {
        return;
    }
    int64_t now = sl_now_ns();
    bool is_newest = false;
    sl_drop_entry *e = latest_for(o, p, reason, &is_newest);
    // Drops of a partition only move forward (retention cuts the head of the log): what the
    // ledger already holds is not counted again when a second consumer skips the same range.
    if (e != NULL) {
        first_offset = SL_MAX(first_offset, e->end_offset);
    }
    if (end_offset <= first_offset) {
        return;
    }
    o->drops_total[reason] += end_offset - first_offset;
    if (e != NULL && is_newest && first_offset == e->end_offset) {
        e->end_offset = end_offset;
        e->last_ns = now;
        e->wall_ms = wall_ms();
        return;
    }
    e = entry_append(o);
    snprintf(e->topic, sizeof(e->topic), "%s", p->topic->name);
    e->partition = p->index;
    e->reason = reason;
    e->first_offset = first_offset;
    e->end_offset = end_offset;
    e->first_ns = now;
    e->last_ns = now;
    e->wall_ms = wall_ms();
}

void
sl_drops_scan(sl_broker *b)
{
    // Bounded by the topics and their partitions.
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        if (t->config.full_policy != SL_FULL_DROP_OLDEST) {
            continue;
        }
        for (uint32_t i = 0; i < t->config.partition_count; i++) {
            sl_partition *p = &t->partitions[i];
            uint64_t start = sl_log_start_offset(p->log);
            if (start > p->low_position) {
                sl_drops_record(b, p, SL_DROP_EVICTED, p->low_position, start);
            }
        }
    }
}

uint64_t
sl_drops_total(const sl_broker *b)
{
    uint64_t total = 0;
    for (uint32_t i = 0; b->ops != NULL && i < SL_DROP_REASON_COUNT; i++) {
        total += b->ops->drops_total[i];
    }
    return total;
}

// Topic names are validated by the protocol (no quotes or control bytes); escape anyway.
static void
json_string(sl_strbuf *sb, const char *text)
{
    sl__strbuf_putc(sb, '"');
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\') {
            sl__strbuf_putc(sb, '\\');
            sl__strbuf_putc(sb, *c);
        } else if ((unsigned char)*c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*c);
            sl__strbuf_puts(sb, esc);
        } else {
            sl__strbuf_putc(sb, *c);
        }
    }
    sl__strbuf_putc(sb, '"');
}

static void
entry_render(sl_strbuf *sb, const sl_drop_entry *e, int64_t now)
{
    sl__strbuf_puts(sb, "{\"topic\":");
    json_string(sb, e->topic);
    sl__strbuf_puts(sb, ",\"partition\":");
    sl__strbuf_u64(sb, e->partition);
    sl__strbuf_puts(sb, ",\"reason\":\"");
    sl__strbuf_puts(sb, sl_drop_reason_name(e->reason));
    sl__strbuf_puts(sb, "\",\"first_offset\":");
    sl__strbuf_u64(sb, e->first_offset);
    sl__strbuf_puts(sb, ",\"end_offset\":");
    sl__strbuf_u64(sb, e->end_offset);
    sl__strbuf_puts(sb, ",\"records\":");
    sl__strbuf_u64(sb, e->end_offset - e->first_offset);
    sl__strbuf_puts(sb, ",\"last_seconds_ago\":");
    sl__strbuf_double(sb, (double)(now - e->last_ns) / 1e9);
    sl__strbuf_puts(sb, ",\"last_unix_ms\":");
    sl__strbuf_i64(sb, e->wall_ms);
    sl__strbuf_putc(sb, '}');
}

void
sl_drops_render(sl_broker *b, const char *topic, sl_strbuf *sb)
{
    sl_ops *o = b->ops;
    int64_t now = sl_now_ns();
    bool all = topic == NULL || topic[0] == '\0';
    sl__strbuf_puts(sb, "{\"ledger_entries_max\":");
    sl__strbuf_u64(sb, SL_DROPS_LEDGER_ENTRIES);
    sl__strbuf_puts(sb, ",\"entries_overwritten\":");
    sl__strbuf_u64(sb, o->ledger_overwritten);
    sl__strbuf_puts(sb, ",\"totals\":[");
    bool first = true;
    // Totals per topic from the topic's own counter, which survives the ring's overwrites.
    for (sl_topic *t = b->topics; t != NULL; t = t->next) {
        if ((!all && strcmp(t->name, topic) != 0) || t->config.full_policy != SL_FULL_DROP_OLDEST) {
            continue;
        }
        sl__strbuf_puts(sb, first ? "{\"topic\":" : ",{\"topic\":");
        first = false;
        json_string(sb, t->name);
        sl__strbuf_puts(sb, ",\"reason\":\"evicted\",\"records\":");
        sl__strbuf_u64(sb, t->stats.records_dropped);
        sl__strbuf_putc(sb, '}');
    }
    sl__strbuf_puts(sb, "],\"entries\":[");
    first = true;
    for (uint32_t i = 0; i < o->ledger_count; i++) {
        const sl_drop_entry *e = &o->ledger[(o->ledger_head + i) % SL_DROPS_LEDGER_ENTRIES];
        if (!all && strcmp(e->topic, topic) != 0) {
            continue;
        }
        if (!first) {
            sl__strbuf_putc(sb, ',');
        }
        first = false;
        entry_render(sb, e, now);
    }
    sl__strbuf_puts(sb, "]}\n");
}
