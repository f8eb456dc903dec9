/* Publishing to a sluice channel as a producer that knows nothing of
 * sluice: no event id, no CloudEvents attributes, only a body — what most
 * producers send. Each engine's most common producer is used:
 *
 *   amqp://   rabbitmq-c's basic.publish to the channel's exchange with
 *             only delivery_mode 2 and content_type (pika's usual call);
 *   nats://   a JetStream publish of the bare payload to the channel's
 *             subject, no headers;
 *   embedded  an event built the way the gateway and `sluice publish`
 *             build one for a body that came without an id
 *             (sl_event_create_new): the embedded engine has no foreign
 *             clients of its own.
 */
#ifndef SLUICE_TEST_FOREIGN_PRODUCER_H
#define SLUICE_TEST_FOREIGN_PRODUCER_H

#include "sluice/engine.h"

#include <stddef.h>

/* Publish @p bodies[0..n-1] to @p channel of the engine at @p url (the
 * suite's URL, with its ns= parameter; @p eng is that engine, open).
 * Returns SL_OK once every message is with the broker; on failure writes
 * what went wrong to @p err. */
sl_status foreign_publish(sl_engine *eng, const char *url, const char *channel,
                          const char *const *bodies, size_t n, char *err,
                          size_t err_size);

#endif
