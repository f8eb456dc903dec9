/* A bounded memory of deliveries a broker engine gave back.
 *
 * Brokers count every delivery, a release (graceful give-back) included,
 * while the semantics say a release is not an attempt. A broker driver
 * remembers what it released (and, for NATS, what it nak'ed and until
 * when) here and subtracts it. The memory is per process and bounded: past
 * SL_TRACK_MAX the least recently touched slot is reused. Not locked: the
 * driver holds its own lock around every call.
 */
#ifndef SLUICE_ENGINE_TRACK_H
#define SLUICE_ENGINE_TRACK_H

#include <stdbool.h>
#include <stdint.h>

#define SL_TRACK_MAX 4096

typedef struct sl_track {
    uint64_t key;      /* which queue or consumer; 0 = free slot */
    uint64_t id;       /* which message in it (sequence, uid) */
    uint32_t released; /* releases: deliveries that were not attempts */
    bool nakked;       /* given back and not fetched again (NATS) */
    uint64_t due_ms;   /* wall time it is deliverable again (NATS) */
    uint64_t touched;  /* for eviction */
} sl_track;

typedef struct sl_track_table {
    sl_track slots[SL_TRACK_MAX];
    uint32_t used; /* slots in use: lookups skip an empty table */
    uint64_t clock;
} sl_track_table;

/** The slot of (@p key, @p id), created (possibly evicting the least
 * recently touched) if @p create; NULL when absent and not created. */
sl_track *sl__track_find(sl_track_table *tt, uint64_t key, uint64_t id,
                         bool create);

/** Free a slot. */
void sl__track_drop(sl_track_table *tt, sl_track *t);

#endif
