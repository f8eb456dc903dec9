/* A consumer group's handler, bound from the configuration's keys.
 *
 *   plugin   a shared object with the ABI of sluice/plugin.h
 *   forward, append, record, fail
 *            the built-in kinds (runtime/handler_kinds.h)
 *   http     POST the event (CloudEvents binary mode) to a URL; the answer
 *            decides the outcome (sluice/http_handler.h)
 */
#ifndef SLUICE_HOST_HANDLERS_H
#define SLUICE_HOST_HANDLERS_H

#include "runtime/handler_kinds.h"
#include "sluice/config.h"

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
