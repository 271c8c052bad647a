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

static sl_drop_entry *
newest(sl_ops *o)
{
    if (o->ledger_count == 0) {
        return NULL;
    }
    uint32_t i = (o->ledger_head + o->ledger_count - 1) % SL_DROPS_LEDGER_ENTRIES;
    return &o->ledger[i];
}

// True when the entry's range can absorb [first, end) of the same partition and reason: they
// touch or overlap (a second consumer skipping the same range must not count it twice).
static bool
entry_extends(const sl_drop_entry *e, const sl_partition *p, sl_drop_reason reason, uint64_t first,
              uint64_t end)
{
    return e->partition == p->index && e->reason == reason &&
           strcmp(e->topic, p->topic->name) == 0 && first <= e->end_offset &&
           end >= e->first_offset;
}

void
sl_drops_record(sl_broker *b, sl_partition *p, sl_drop_reason reason, uint64_t first_offset,
                uint64_t end_offset)
{
    sl_ops *o = b->ops;
    if (o == NULL || end_offset <= first_offset || (uint32_t)reason >= SL_DROP_REASON_COUNT) {
        return;
    }
    int64_t now = sl_now_ns();
    sl_drop_entry *e = newest(o);
    if (e != NULL && entry_extends(e, p, reason, first_offset, end_offset)) {
        // Only the part not yet in the entry is new.
        uint64_t added = 0;
        if (first_offset < e->first_offset) {
            added += e->first_offset - first_offset;
            e->first_offset = first_offset;
        }
        if (end_offset > e->end_offset) {
            added += end_offset - e->end_offset;
            e->end_offset = end_offset;
        }
        o->drops_total[reason] += added;
        e->last_ns = now;
        e->wall_ms = wall_ms();
        return;
    }
    if (o->ledger_count == SL_DROPS_LEDGER_ENTRIES) {
        o->ledger_head = (o->ledger_head + 1) % SL_DROPS_LEDGER_ENTRIES;
        o->ledger_count--;
        o->ledger_overwritten++;
    }
    uint32_t slot = (o->ledger_head + o->ledger_count) % SL_DROPS_LEDGER_ENTRIES;
    e = &o->ledger[slot];
    memset(e, 0, sizeof(*e));
    snprintf(e->topic, sizeof(e->topic), "%s", p->topic->name);
    e->partition = p->index;
    e->reason = reason;
    e->first_offset = first_offset;
    e->end_offset = end_offset;
    e->first_ns = now;
    e->last_ns = now;
    e->wall_ms = wall_ms();
    o->ledger_count++;
    o->drops_total[reason] += end_offset - first_offset;
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
