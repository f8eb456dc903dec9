/* Validation rules on JSON bodies (the gateway's per-route fields).
 *
 * A rule names a member by a dotted path ("customer.id"), a type, and
 * constraints: required, numeric bounds, length bounds, an enum. Messages
 * name the field and the rule ("`qty` must be an integer >= 1") so that a
 * client can fix its request without reading the configuration.
 */
#ifndef SLUICE_HTTP_VALIDATE_H
#define SLUICE_HTTP_VALIDATE_H

#include "sluice/gateway.h"

#include <jansson.h>
#include <stddef.h>

/** One failed rule. */
typedef struct sl_gw_violation {
    char field[128]; /* the rule's name; "" for the body itself */
    char detail[256];
} sl_gw_violation;

/** Check @p n rules for consistency (for sl_gateway_opts_check): names
 * well formed and unique, bounds ordered, constraints on types that have
 * them. @return SL_OK or SL_CONFIG with detail ("field 'qty': ..."). */
sl_status sl__gw_fields_check(const sl_gateway_field *fields, size_t n,
                              sl_diag *diag);

/**
 * Validate @p root against @p n rules. With at least one rule the body must
 * be an object. Every rule is checked; the first @p cap violations are
 * written to @p out.
 * @return the number of violations (0: valid), which may exceed @p cap.
 */
size_t sl__gw_validate(const sl_gateway_field *fields, size_t n,
                       const json_t *root, sl_gw_violation *out, size_t cap);

/**
 * Parse @p len bytes as JSON (any value; duplicate members refused) and
 * validate them as sl__gw_validate does.
 * @param[out] nv the number of violations (0: valid); written on SL_OK.
 * @return SL_OK; SL_INVALID when the bytes are not JSON, with jansson's
 *         message and position in @p diag ("... at line 2, column 9
 *         (byte 17)").
 */
sl_status sl__gw_validate_text(const sl_gateway_field *fields, size_t n,
                               const void *data, size_t len,
                               sl_gw_violation *out, size_t cap, size_t *nv,
                               sl_diag *diag);

#endif
