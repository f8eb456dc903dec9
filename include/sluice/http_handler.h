/* sluice — HTTP push handlers: a service in any language as a handler.
 *
 * An HTTP handler POSTs each delivery to a URL in CloudEvents binary mode:
 * the attributes as `ce-` headers, datacontenttype as Content-Type, the data
 * as the body, plus `traceparent` / `tracestate` (W3C) and
 * `Idempotency-Key: <event id>`. The request times out at the sooner of
 * `timeout_ms` and the delivery's remaining time. The answer decides the
 * outcome:
 *
 *   2xx                          ACK
 *   408, 429, 503                RETRY, after Retry-After when the target
 *                                sent one (seconds or an HTTP date)
 *   other 4xx                    REJECT, with the status and the start of
 *                                the body as the error text
 *   5xx, other statuses,         RETRY, with the error text
 *   timeouts, connection errors
 *
 * Each handler (one target URL) has a circuit breaker — while it is open,
 * deliveries RETRY after the breaker's remaining open time without a
 * request — and a concurrency limit, fixed or adaptive: a worker waits up to
 * `slot_wait_ms` for a free slot, then RETRYs after `busy_retry_ms`.
 *
 * Requests are made with libcurl's multi interface on one I/O thread per
 * handler: workers hand their request over through a bounded queue and wait
 * for its completion, so connections are kept alive and shared by every
 * worker of the group.
 *
 * Thread safety: create/destroy from one controlling thread;
 * sl_http_handler_handle and sl_http_handler_get_stats from any thread.
 */
#ifndef SLUICE_HTTP_HANDLER_H
#define SLUICE_HTTP_HANDLER_H

#include "sluice/breaker.h"
#include "sluice/consumer.h"
#include "sluice/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Options of an HTTP handler; zero is default, copied at creation (the
 * strings and the header array too). */
typedef struct sl_http_handler_opts {
    const char *url;             /* required: http:// or https:// */
    uint64_t timeout_ms;         /* per request; 0 selects 30000; capped by
                                    the delivery's remaining time */
    uint64_t connect_timeout_ms; /* 0 selects 5000; capped as above */
    uint32_t max_concurrency;    /* requests in flight; 0 selects 100. The
                                    fixed limit, or the adaptive limit's
                                    upper bound */
    bool adaptive;               /* AIMD limit within [1, max_concurrency],
                                    starting at min(10, max_concurrency) */
    uint64_t slot_wait_ms;       /* wait for a free slot; 0 selects 1000;
                                    capped by the remaining time */
    uint64_t busy_retry_ms;      /* RETRY delay when no slot came free;
                                    0 selects 100 */
    uint32_t breaker_failures;   /* consecutive failures that open the
                                    breaker; 0 selects 5 */
    uint64_t breaker_open_ms;    /* open before a probe; 0 selects 30000 */
    /* Extra request headers, "Name: value" each (an API key, say). */
    const char *const *headers;
    size_t headers_len;
    const char *service; /* for logs and the User-Agent; NULL = "sluice" */
    /* Request-reply: on a 2xx answer, publish its body (up to 64 KiB) as a
     * child of the delivered event to this channel, before the ACK. A
     * failed publish is a RETRY, and the target sees the same
     * Idempotency-Key again. NULL = no reply. */
    const char *reply_to;
    const char *reply_type; /* CloudEvents type of replies; NULL =
                               "http.response" */
} sl_http_handler_opts;

/** Counters of an HTTP handler, for metrics. */
typedef struct sl_http_handler_stats {
    uint64_t requests;        /* requests sent */
    uint64_t acked;           /* 2xx answers */
    uint64_t retried;         /* RETRY outcomes, whatever the cause */
    uint64_t rejected;        /* REJECT outcomes (4xx) */
    uint64_t timeouts;        /* requests that timed out */
    uint64_t conn_errors;     /* requests that got no answer otherwise */
    uint64_t breaker_refused; /* deliveries refused by the open breaker */
    uint64_t no_slot;         /* deliveries that found no free slot */
    uint32_t in_flight;       /* requests in flight now */
    uint32_t limit;           /* the concurrency limit now */
    sl_breaker_state breaker; /* the breaker's state now */
} sl_http_handler_stats;

/** An HTTP push handler (opaque). */
typedef struct sl_http_handler sl_http_handler;

/**
 * Create a handler and start its I/O thread.
 *
 * @param[in]  opts options; url is required; copied.
 * @param[out] out  the new handler, owned by the caller
 *                  (sl_http_handler_destroy); written only on SL_OK.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for a missing or non-HTTP url or a malformed
 *         header; SL_NOMEM; SL_INTERNAL when libcurl or the thread cannot
 *         be set up.
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_http_handler_create(const sl_http_handler_opts *opts,
                                        sl_http_handler **out, sl_diag *diag);

/**
 * The handler function: pass it as sl_consumer_opts.handler with the
 * sl_http_handler as handler_ctx. Runs on the consumer's worker threads,
 * concurrently; blocks until the request completes or times out. @p user
 * is the sl_http_handler, borrowed. Returns the outcome (no status: a
 * failure is a RETRY or REJECT with its error text set on @p ctx).
 */
SL_API sl_outcome sl_http_handler_handle(sl_handler_ctx *ctx, void *user);

/** Read the counters. Thread-safety: any thread. */
SL_API void sl_http_handler_get_stats(sl_http_handler *hh,
                                      sl_http_handler_stats *out);

/**
 * Stop the I/O thread and free. Requests still in flight are abandoned and
 * their workers answered with RETRY; no handler call may start afterwards.
 * NULL is a no-op. The controlling thread, after the consumer that uses
 * the handler has stopped.
 */
SL_API void sl_http_handler_destroy(sl_http_handler *hh);

#ifdef __cplusplus
}
#endif
#endif
