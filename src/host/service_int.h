/* The service host's internal interface, for tests that reach behind
 * sluice/service.h. Not part of the public API.
 */
#ifndef SLUICE_HOST_SERVICE_INT_H
#define SLUICE_HOST_SERVICE_INT_H

#include "http/admin.h"
#include "runtime/drain_rate.h"
#include "sluice/service.h"

/** The service's sampler (NULL before sl_service_start), for tests that
 * move its clock. */
sl_drain *sl__service_drain(sl_service *svc);

/** Fill @p out's registry and callbacks (readiness, groups, depth, drain
 * rate) with @p svc's, as sl_service_start does for its own admin
 * listener; the other fields are left as they are. @p svc must outlive
 * the admin listener started with them. */
void sl__service_admin_opts(sl_service *svc, sl_admin_opts *out);

#endif
