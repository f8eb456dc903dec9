/* sluice — internal event calls for the bindings that decode events.
 *
 * A binding decoding a message knows what sl_event_create and
 * sl_event_set_ext would find out again: the sizes of what it will set, and
 * the lengths of names and values. These take them, so that decoding an
 * event costs one allocation and no second pass over its strings.
 */
#ifndef SLUICE_CORE_EVENT_INTERNAL_H
#define SLUICE_CORE_EVENT_INTERNAL_H

#include "sluice/event.h"

#include <stddef.h>

/* sl_event_create, with an arena of @p arena_bytes: the strings (each
 * with its NUL) and data the caller will set, so that they cost no
 * allocation of their own; what does not fit gets one, as with
 * sl_event_create. Sized exactly, a small event stays within the sizes
 * malloc serves from its per-thread cache. @return SL_OK, SL_NOMEM,
 * SL_INVALID (out NULL). Any thread. */
sl_status sl__event_create_sized(size_t arena_bytes, sl_event **out);

/* sl_event_set_ext with the lengths given: @p name (lower case, not
 * NUL-terminated necessarily) of @p name_len bytes; @p value with
 * @p value_len = strlen(@p value), or NULL to remove. Same results as
 * sl_event_set_ext. */
sl_status sl__event_set_attr(sl_event *ev, const char *name, size_t name_len,
                             const char *value, size_t value_len);

/* sl_ce_from_header for a binding that has checked the header's prefix
 * (@p prefix_len bytes of @p name) and measured the value: @p value_len
 * is strlen(@p value). Same results, no diagnostic. */
sl_status sl__ce_from_header_n(sl_event *ev, size_t prefix_len,
                               const char *name, const char *value,
                               size_t value_len);

#endif
