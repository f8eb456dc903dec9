/* What the gateway shows of itself to the library's tests. */
#ifndef SLUICE_HTTP_GATEWAY_INT_H
#define SLUICE_HTTP_GATEWAY_INT_H

#include "sluice/gateway.h"

#include <stddef.h>

/** Requests deferred until their engine confirms (or their confirm
 * deadline on the gateway's clock), now. Any thread. */
size_t sl__gateway_confirms_awaited(sl_gateway *gw);

#endif
