/* Built-in handler kinds, and what a consumer holds of any handler.
 *
 *   forward  republish the event (same id, as a child) to a channel
 *   append   append the event id and a newline to a file
 *   record   insert (group, id, attempt) into the table `processed` of the
 *            idempotency inbox, inside its transaction: exactly-once effects
 *   fail     always RETRY (to exercise retries and dead letters)
 *
 * Plugins and the configuration's handler keys are bound by the service
 * host (src/host/handlers.h); HTTP push handlers live in http_handler.h.
 */
#ifndef SLUICE_RUNTIME_HANDLER_KINDS_H
#define SLUICE_RUNTIME_HANDLER_KINDS_H

#include "sluice/consumer.h"

#include <stdbool.h>

/** A handler ready for a consumer: its function and what it owns. */
typedef struct sl_bound_handler {
    sl_handler_fn fn;
    void *user;
    void (*fini)(void *user); /* frees `user`; NULL when nothing to free */
    void *dl;                 /* dlopen handle, plugins only */
    bool transactional;       /* runs inside the inbox's transaction */
} sl_bound_handler;

/** forward: publish each event to @p to (copied).
 * @return SL_OK; SL_NOMEM. */
sl_status sl__handler_forward(const char *to, sl_bound_handler *out);

/** append: open @p file for appending (created if missing).
 * @return SL_OK; SL_IO when it cannot be opened (errno says why); SL_NOMEM.
 */
sl_status sl__handler_append(const char *file, sl_bound_handler *out);

/** record: the inbox's exactly-once table (needs idempotency on). */
void sl__handler_record(sl_bound_handler *out);

/** fail: every delivery is retried. */
void sl__handler_fail(sl_bound_handler *out);

#endif
