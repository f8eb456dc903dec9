/* Handler kinds a configuration can name: C plugins and the built-ins.
 *
 *   plugin   a shared object with the ABI of sluice/plugin.h
 *   forward  republish the event (same id, as a child) to `to`
 *   append   append the event id and a newline to `file`
 *   record   insert (group, id, attempt) into the table `processed` of the
 *            idempotency inbox, inside its transaction: exactly-once effects
 *   fail     always RETRY (to exercise retries and dead letters)
 *   http     POST the event (CloudEvents binary mode) to a URL; the answer
 *            decides the outcome (sluice/http_handler.h)
 */
#ifndef SLUICE_RUNTIME_HANDLERS_H
#define SLUICE_RUNTIME_HANDLERS_H

#include "sluice/config.h"
#include "sluice/consumer.h"

typedef struct sl_bound_handler {
    sl_handler_fn fn;
    void *user;
    void (*fini)(void *user);
    void *dl; /* dlopen handle, plugins only */
    bool transactional;
} sl_bound_handler;

sl_status sl__handler_bind(const sl_config *cfg, const sl_config_consumer *cc,
                           sl_bound_handler *out, sl_diag *diag);

/* Every error sl__handler_bind would raise before running the handler's
 * own code: the plugin loads and has its functions, the append file can
 * be written, the http URL is one. Nothing is created and no plugin init
 * runs. Errors cite FILE:LINE:COL and the key, as the loader's do. */
sl_status sl__handler_check(const sl_config *cfg, const sl_config_consumer *cc,
                            sl_diag *diag);
void sl__handler_unbind(sl_bound_handler *h);

#endif
