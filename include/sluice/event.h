/* sluice — the event envelope (CloudEvents 1.0).
 *
 * An sl_event holds the CloudEvents context attributes, sluice's extensions
 * and the data bytes. Events are reference-counted: engines share one copy
 * between the groups of a channel. An event with more than one reference must
 * not be modified (sl_event_set_* return SL_INVALID on a shared event).
 *
 * Ownership: a function that creates an event (sl_event_create*,
 * sl_event_clone, sl_event_decode, sl_event_from_json) gives the caller one
 * reference, which it drops with sl_event_unref. Functions that take a
 * `const sl_event *` or `sl_event *` borrow it for the call. Strings
 * passed in are copied; strings returned are borrowed from the event and
 * valid while it lives and the attribute is not set again.
 *
 * Thread safety: ref/unref are atomic and callable from any thread;
 * concurrent reads of one event are safe; a write (sl_event_set*) needs
 * the caller's synchronisation for that event, which is why shared events
 * refuse writes. Functions on different events never conflict.
 *
 * Statuses shared by the setters: SL_INVALID for a NULL event, a shared
 * event (more than one reference) or a bad value; SL_TOO_LARGE for a value
 * longer than 4 GiB (sl_event_validate enforces the event's size limit);
 * SL_NOMEM.
 */
#ifndef SLUICE_EVENT_H
#define SLUICE_EVENT_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Default and hard limit of an encoded event's size: 1 MiB. */
#define SL_EVENT_MAX_SIZE_DEFAULT (1024u * 1024u)

/** Maximum number of extension attributes beyond the known ones. */
#define SL_EVENT_MAX_EXTENSIONS 16

/** The string attributes an envelope knows by name. `deadline` and `time`
 * are numbers (ms since the epoch) with their own accessors. */
typedef enum sl_attr {
    SL_ATTR_ID,
    SL_ATTR_SOURCE,
    SL_ATTR_TYPE,
    SL_ATTR_SPECVERSION,
    SL_ATTR_SUBJECT,
    SL_ATTR_DATACONTENTTYPE,
    SL_ATTR_DATASCHEMA,
    SL_ATTR_TRACEPARENT,
    SL_ATTR_TRACESTATE,
    SL_ATTR_PARTITIONKEY,
    SL_ATTR_CORRELATIONID,
    SL_ATTR_CAUSATIONID,
    SL_ATTR_COUNT_
} sl_attr;

typedef struct sl_event sl_event;

/**
 * Create an empty event with specversion "1.0" and refcount 1.
 *
 * @param[out] out the event; the caller owns its reference
 *                 (sl_event_unref); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL; SL_NOMEM.
 */
SL_API sl_status sl_event_create(sl_event **out);

/**
 * Create an event with a fresh UUIDv7 id, the given source and type
 * (copied), and time = now (wall clock).
 *
 * @param[out] out the event; the caller owns its reference; written only on
 *                 SL_OK.
 * @return SL_OK; SL_INVALID for a NULL argument; SL_TOO_LARGE; SL_NOMEM.
 */
SL_API sl_status sl_event_create_new(const char *source, const char *type,
                                     sl_event **out);

/** Take a reference (atomic; any thread). The caller owns the new
 * reference. @return @p ev. */
SL_API sl_event *sl_event_ref(sl_event *ev);

/** Drop a reference (atomic; any thread); the last one frees the event.
 * NULL is a no-op. */
SL_API void sl_event_unref(sl_event *ev);

/**
 * A deep copy with refcount 1, modifiable even when @p ev is shared.
 *
 * @param[out] out the copy; the caller owns its reference.
 * @return SL_OK; SL_INVALID for a NULL argument; SL_NOMEM.
 */
SL_API sl_status sl_event_clone(const sl_event *ev, sl_event **out);

/**
 * Set a string attribute; @p value is copied, NULL removes the attribute.
 * sl_event_setn takes @p len bytes of @p value (no NUL needed).
 *
 * @return SL_OK; SL_INVALID for a NULL or shared event or an unknown
 *         @p attr; SL_TOO_LARGE; SL_NOMEM.
 */
SL_API sl_status sl_event_set(sl_event *ev, sl_attr attr, const char *value);
SL_API sl_status sl_event_setn(sl_event *ev, sl_attr attr, const char *value,
                               size_t len);

/** A string attribute, or NULL when absent; borrowed from the event, valid
 * while it lives and the attribute is not set again. */
SL_API const char *sl_event_get(const sl_event *ev, sl_attr attr);

/** Lower-case CloudEvents name of an attribute ("datacontenttype"); static
 * text; NULL out of range. Any thread. */
SL_API const char *sl_attr_name(sl_attr attr);

/** Attribute by CloudEvents name. Any thread.
 * @return SL_OK; SL_NOT_FOUND if not a known one; SL_INVALID for NULL. */
SL_API sl_status sl_attr_from_name(const char *name, sl_attr *out);

static inline const char *sl_event_id(const sl_event *ev)
{
    return sl_event_get(ev, SL_ATTR_ID);
}
static inline const char *sl_event_type(const sl_event *ev)
{
    return sl_event_get(ev, SL_ATTR_TYPE);
}

/** Event time in ms since the epoch; 0 = absent. The setter returns SL_OK
 * or SL_INVALID (NULL or shared event). */
SL_API uint64_t sl_event_time_ms(const sl_event *ev);
SL_API sl_status sl_event_set_time_ms(sl_event *ev, uint64_t time_ms);

/** Absolute deadline in ms since the epoch; 0 = none. The setter returns
 * SL_OK or SL_INVALID (NULL or shared event). */
SL_API uint64_t sl_event_deadline_ms(const sl_event *ev);
SL_API sl_status sl_event_set_deadline_ms(sl_event *ev, uint64_t deadline_ms);

/**
 * The data bytes. The setter copies @p len bytes of @p data (NULL with 0
 * clears) and returns SL_OK, SL_INVALID (NULL or shared event, NULL data
 * with a length), SL_TOO_LARGE or SL_NOMEM. The getter returns them
 * borrowed from the event (NULL when empty) and their length in *len.
 */
SL_API sl_status sl_event_set_data(sl_event *ev, const void *data, size_t len);
SL_API const void *sl_event_data(const sl_event *ev, size_t *len);

/**
 * Other extension attributes (lower-case a-z0-9, at most 20 characters, as
 * CloudEvents requires). Known names are routed to their slots. The value
 * is copied; NULL removes.
 *
 * @return SL_OK; SL_INVALID for a bad name, "data", or a NULL or shared
 *         event; SL_FULL beyond SL_EVENT_MAX_EXTENSIONS; SL_TOO_LARGE;
 *         SL_NOMEM. The getter returns the value borrowed from the event,
 *         or NULL when absent.
 */
SL_API sl_status sl_event_set_ext(sl_event *ev, const char *name,
                                  const char *value);
SL_API const char *sl_event_get_ext(const sl_event *ev, const char *name);
SL_API size_t sl_event_ext_count(const sl_event *ev);
/** The i-th extension (0 <= i < sl_event_ext_count); *name and *value are
 * borrowed from the event, valid while it lives. */
SL_API void sl_event_ext_at(const sl_event *ev, size_t i, const char **name,
                            const char **value);

/**
 * Check that id, source, type and specversion are present and well-formed
 * and that the encoded size is within @p max_size (0 = default).
 *
 * @return SL_OK; SL_INVALID naming the attribute in @p diag; SL_TOO_LARGE.
 *         Any thread (reads only).
 */
SL_API sl_status sl_event_validate(const sl_event *ev, size_t max_size,
                                   sl_diag *diag);

/**
 * Make @p child a child of @p parent: inherit traceparent (new span id,
 * same trace), tracestate, deadline and correlationid; causationid = parent
 * id. @p parent is borrowed (read only); @p child is written.
 *
 * @return SL_OK; SL_INVALID for NULL arguments or a shared @p child;
 *         SL_NOMEM.
 */
SL_API sl_status sl_event_derive(sl_event *child, const sl_event *parent);

/* ---- wire encoding --------------------------------------------------- */

/**
 * Encode to sluice's compact binary form (what the embedded engine stores).
 *
 * @param[out] out the bytes, owned by the caller, freed with sl_free;
 *                 written only on SL_OK.
 * @param[out] len their length.
 * @return SL_OK; SL_INVALID for NULL arguments; SL_NOMEM. Any thread.
 */
SL_API sl_status sl_event_encode(const sl_event *ev, uint8_t **out,
                                 size_t *len);

/**
 * Decode the compact binary form. @p buf is borrowed for the call.
 *
 * @param[out] out the event; the caller owns its reference.
 * @return SL_OK; SL_INVALID for truncated or malformed input (where, in
 *         @p diag); SL_UNSUPPORTED for a newer format version; SL_NOMEM.
 *         Any thread.
 */
SL_API sl_status sl_event_decode(const uint8_t *buf, size_t len, sl_event **out,
                                 sl_diag *diag);

/** Encoded size without encoding (0 for NULL). Any thread. */
SL_API size_t sl_event_encoded_size(const sl_event *ev);

/* ---- CloudEvents binary mode: one mapping for every protocol ---------- */

/** Called once per header, on the calling thread; name and value are
 * borrowed for the call. A non-OK return stops the walk and is returned. */
typedef sl_status (*sl_ce_header_fn)(const char *name, const char *value,
                                     void *ctx);

/**
 * Emit every attribute except data as binding headers: "<prefix><attr>"
 * ("ce-id", "ce_id", "cloudEvents:id"). `time` is RFC 3339, `deadline` an
 * integer. datacontenttype goes out as "ce-datacontenttype" too; HTTP maps
 * it to Content-Type itself.
 *
 * @return SL_OK; SL_INVALID for NULL arguments; the first non-OK status
 *         of @p fn. Any thread.
 */
SL_API sl_status sl_ce_to_headers(const sl_event *ev, const char *prefix,
                                  sl_ce_header_fn fn, void *ctx);

/**
 * Apply one header to @p ev if its name starts with @p prefix
 * (case-insensitive); other headers return SL_NOT_FOUND and leave @p ev
 * alone. Bad values (an unparsable time) return SL_INVALID with detail.
 * @p value is copied.
 *
 * @return SL_OK; SL_NOT_FOUND for another header; SL_INVALID (also for a
 *         shared @p ev); SL_FULL; SL_TOO_LARGE; SL_NOMEM.
 */
SL_API sl_status sl_ce_from_header(sl_event *ev, const char *prefix,
                                   const char *name, const char *value,
                                   sl_diag *diag);

/* ---- CloudEvents structured mode (JSON) ------------------------------ */

/**
 * Encode as a CloudEvents JSON object ("data" as JSON when the content type
 * is JSON and the bytes parse, else "data_base64").
 *
 * @param[out] out NUL-terminated text, owned by the caller, freed with
 *                 sl_free; written only on SL_OK.
 * @return SL_OK; SL_INVALID for NULL arguments; SL_NOMEM. Any thread.
 */
SL_API sl_status sl_event_to_json(const sl_event *ev, char **out);

/**
 * Decode a CloudEvents JSON object (@p json need not be NUL-terminated;
 * borrowed for the call).
 *
 * @param[out] out the event; the caller owns its reference.
 * @return SL_OK; SL_INVALID for malformed JSON or attributes (where, in
 *         @p diag); SL_NOMEM. Any thread.
 */
SL_API sl_status sl_event_from_json(const char *json, size_t len,
                                    sl_event **out, sl_diag *diag);

/* ---- ids and times -----------------------------------------------------
 *
 * Pure functions on caller-owned buffers, callable from any thread. */

/** Write a UUIDv7 (RFC 9562) for @p now_ms into @p buf (37 bytes). */
SL_API void sl_uuid7(char buf[37], uint64_t now_ms);

/** Format ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-27T12:00:00.123Z"); buf of 32 bytes. */
SL_API void sl_time_format_rfc3339(uint64_t ms, char buf[32]);

/** Parse RFC 3339 (any offset, optional fraction) to ms since the epoch.
 * @return SL_OK; SL_INVALID for NULL, malformed text or a time before the
 *         epoch. */
SL_API sl_status sl_time_parse_rfc3339(const char *s, uint64_t *out_ms);

/** W3C traceparent: a new root ("00-<32 hex>-<16 hex>-01"); buf of 56. */
SL_API void sl_traceparent_new(char buf[56]);

/** Validate a traceparent and copy its trace id (33 bytes with NUL) and
 * span id (17 bytes with NUL).
 * @return SL_OK; SL_INVALID for NULL or a malformed traceparent. */
SL_API sl_status sl_traceparent_parse(const char *tp, char trace_id[33],
                                      char span_id[17]);

#ifdef __cplusplus
}
#endif
#endif
