/* Recently published event ids, for dropping republished duplicates.
 *
 * Bounded twice: an id is forgotten after `window_ms`, and the oldest ids are
 * forgotten first once `max_ids` are held, so memory never grows with the
 * publish rate beyond max_ids. Not thread-safe: the embedded engine calls it
 * under its lock.
 */
#ifndef SLUICE_ENGINE_DEDUP_H
#define SLUICE_ENGINE_DEDUP_H

#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_dedup sl_dedup;

sl_status sl__dedup_create(size_t max_ids, uint64_t window_ms, sl_dedup **out);
void sl__dedup_destroy(sl_dedup *dd);

/** True if (@p scope, @p id) was recorded within the window. */
bool sl__dedup_contains(sl_dedup *dd, const void *scope, const char *id,
                        uint64_t now_ms);

/** Record (@p scope, @p id); call only once the event was accepted, so that
 * a refused publish can be retried with the same id. Never allocates: when
 * max_ids are held the oldest id is forgotten (a duplicate slipping through
 * is absorbed by the consumer inbox). */
void sl__dedup_add(sl_dedup *dd, const void *scope, const char *id,
                   uint64_t now_ms);

/** Number of ids held. */
size_t sl__dedup_size(const sl_dedup *dd);

#endif
