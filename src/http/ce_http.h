/* CloudEvents over HTTP (binding 1.0): content types and binary mode.
 *
 * The gateway tells the four kinds of request body apart by Content-Type
 * and the ce-specversion header, and builds an event from binary-mode
 * headers. Everything here is pure (no I/O), so the fuzz target drives it
 * directly.
 */
#ifndef SLUICE_HTTP_CE_HTTP_H
#define SLUICE_HTTP_CE_HTTP_H

#include "sluice/event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What a request body is. */
typedef enum sl_gw_body_kind {
    SL_GW_BODY_JSON,       /* application/json (or +json): a new event */
    SL_GW_BODY_BINARY,     /* ce-* headers, any Content-Type: one event */
    SL_GW_BODY_STRUCTURED, /* application/cloudevents+json: one event */
    SL_GW_BODY_BATCH,      /* application/cloudevents-batch+json */
    SL_GW_BODY_MISSING,    /* no Content-Type (and no ce-specversion) */
    SL_GW_BODY_UNSUPPORTED /* any other Content-Type */
} sl_gw_body_kind;

/** Copy the media type of a Content-Type value, lower-cased, without
 * parameters or whitespace ("Application/JSON; charset=utf-8" →
 * "application/json"). "" when @p content_type is NULL or empty. */
void sl__gw_media_type(const char *content_type, char *out, size_t size);

/** True for application/json and any "+json" suffix type. */
bool sl__gw_media_is_json(const char *media_type);

/** Classify a request: binary mode when @p has_ce_specversion (the
 * binding's rule: structured types win over ce- headers), else by
 * @p media_type as returned by sl__gw_media_type. */
sl_gw_body_kind sl__gw_body_kind(const char *media_type,
                                 bool has_ce_specversion);

/** Visit one request header; return false to stop. */
typedef bool (*sl_gw_header_fn)(const char *name, const char *value, void *ctx);

/** Call @p fn on every request header of @p src, in order. */
typedef void (*sl_gw_header_each)(const void *src, sl_gw_header_fn fn,
                                  void *ctx);

/**
 * Build an event from binary-mode headers: every "ce-" header is applied
 * (values percent-decoded, as the binding requires); Content-Type becomes
 * datacontenttype; @p body is the data. ce-id, ce-source, ce-type and
 * ce-specversion are required; a ce- header given twice is an error.
 * @return SL_OK; SL_INVALID (or SL_FULL for too many extensions) with
 *         detail naming the header; SL_NOMEM.
 */
sl_status sl__gw_event_from_binary(sl_gw_header_each each, const void *src,
                                   const char *content_type,
                                   const uint8_t *body, size_t len,
                                   sl_event **out, sl_diag *diag);

/** Fold the ce- headers of @p src into a 128-bit fingerprint (order
 * independent; ce-traceparent and ce-tracestate are left out, they may
 * differ between retries of one request). */
void sl__gw_fingerprint_headers(sl_gw_header_each each, const void *src,
                                uint64_t fp[2]);

/** Fold @p len bytes into a 128-bit fingerprint (order dependent). */
void sl__gw_fingerprint(uint64_t fp[2], const void *data, size_t len);

/** Percent-encode @p in for a URL path segment (unreserved characters
 * kept). Returns false when @p out is too small. */
bool sl__gw_url_encode(const char *in, char *out, size_t size);

#endif
