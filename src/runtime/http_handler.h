/* HTTP push handlers, the internal side: the call without a consumer (for
 * tests and other callers that have no sl_handler_ctx), the Retry-After
 * parser, and the binding used by the handler kind "http".
 */
#ifndef SLUICE_RUNTIME_HTTP_HANDLER_H
#define SLUICE_RUNTIME_HTTP_HANDLER_H

#include "runtime/handler_kinds.h"
#include "sluice/http_handler.h"

/* Longest error text a call reports (the consumer keeps 512 bytes). */
#define SL_HTTP_HANDLER_ERROR_MAX 512

/** What one call decided. */
typedef struct sl__http_result {
    sl_outcome outcome;
    bool has_retry_after; /* retry_after_ms is the target's (or the
                             breaker's, or the limiter's) wish */
    uint64_t retry_after_ms;
    int status; /* HTTP status; 0 when there was no answer */
    bool sent;  /* a request went out */
    char error[SL_HTTP_HANDLER_ERROR_MAX]; /* empty on ACK */
    char *reply; /* ACK with reply_to: the answer's body, sl_malloc'd;
                    the caller frees it (NULL otherwise) */
    size_t reply_len;
} sl__http_result;

/**
 * Deliver @p ev to the handler's target with @p remaining_ms to spare and
 * fill @p res. Blocks; any thread.
 */
void sl__http_handler_call(sl_http_handler *hh, const sl_event *ev,
                           uint64_t remaining_ms, sl__http_result *res);

/**
 * Parse a Retry-After value — delta-seconds or an HTTP date — relative to
 * @p now_wall_ms. A date in the past gives 0. Values are capped at one hour.
 * @return SL_OK; SL_INVALID when it is neither.
 */
sl_status sl__http_retry_after_parse(const char *value, uint64_t now_wall_ms,
                                     uint64_t *out_ms);

/** Create a handler from @p opts and fill @p out for a consumer. */
/** What sl_http_handler_create refuses in @p opts (the URL, the header
 * lines), without creating anything. SL_INVALID with the reason. */
sl_status sl__http_handler_check(const sl_http_handler_opts *opts,
                                 sl_diag *diag);

sl_status sl__http_handler_bind(const sl_http_handler_opts *opts,
                                sl_bound_handler *out, sl_diag *diag);

#endif
