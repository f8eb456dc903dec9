/* sluice — the HTTP gateway: HTTP requests in, confirmed events out.
 *
 * The gateway serves routes ("POST /orders" → channel "orders.created").
 * A request body becomes an event — a JSON body becomes a new event of the
 * route's type; CloudEvents over HTTP (binary mode, structured mode, batch)
 * keeps the client's envelope — and the gateway answers 202 only after the
 * producer confirmed the publish. Admission is bounded everywhere: a keyed
 * token bucket per client (429), the predicted wait against the request's
 * deadline (503), the producer's window and the channel's max_length
 * (503), the producer's breaker (503), draining (503); each
 * refusal carries a computed Retry-After. An Idempotency-Key makes a retried
 * request get the first answer. `GET /status/{id}` reads a status projection
 * that consumers write with sl_gateway_status_set().
 *
 * Nothing is published for any 4xx answer. docs/gateway.md has the status
 * code table and the Retry-After rules.
 *
 * Lifecycle: sl_gateway_create checks the options, binds the address and
 * starts serving; sl_gateway_destroy stops serving and frees. There is no
 * separate start: a gateway that exists but does not listen would be one
 * more state with no use (sl_http_handler_create starts its thread the
 * same way).
 *
 * Ownership: options are copied (routes and rules too); the producer,
 * engine, state, metrics registry and clock they point to are borrowed and
 * must outlive the gateway.
 *
 * Thread safety: sl_gateway_create/destroy from one controlling thread; the
 * state functions, sl_gateway_port and sl_gateway_get_state from any
 * thread. The callbacks of sl_gateway_opts run on server threads,
 * concurrently.
 */
#ifndef SLUICE_GATEWAY_H
#define SLUICE_GATEWAY_H

#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/export.h"
#include "sluice/metrics.h"
#include "sluice/producer.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- validation rules ---------------------------------------------------- */

/** The JSON type a field must have. SL_JSON_ANY checks presence only. */
typedef enum sl_json_type {
    SL_JSON_ANY,     /* any value but null */
    SL_JSON_STRING,  /* a string */
    SL_JSON_INTEGER, /* a number without fraction or exponent ("3", not
                        "3.0") */
    SL_JSON_NUMBER,  /* any number, integer or not */
    SL_JSON_BOOLEAN, /* true or false */
    SL_JSON_OBJECT,  /* an object */
    SL_JSON_ARRAY,   /* an array */
} sl_json_type;

/** Lower-case name of a type ("integer"; "any" for SL_JSON_ANY); static
 * text. Any thread. */
SL_API const char *sl_json_type_name(sl_json_type type);

/** Type by name ("string", "integer", "number", "boolean", "object",
 * "array", "any"). Any thread.
 * @return SL_OK; SL_NOT_FOUND for another name; SL_INVALID for NULL. */
SL_API sl_status sl_json_type_from_name(const char *name, sl_json_type *out);

/**
 * One validation rule on a field of a JSON body. A field that is absent or
 * null passes unless `required`. Every string is borrowed until
 * sl_gateway_create() returns (the gateway copies the rules).
 */
typedef struct sl_gateway_field {
    const char *name;    /* top-level member, or a dotted path into nested
                            objects ("customer.id") */
    sl_json_type type;   /* 0 = SL_JSON_ANY */
    bool required;       /* absent or null is an error */
    bool has_min;        /* integer/number: value >= min */
    bool has_max;        /* integer/number: value <= max */
    double min, max;     /* bounds, inclusive */
    uint64_t min_length; /* string: characters (UTF-8 code points);
                            array: items; 0 = no minimum */
    uint64_t max_length; /* as min_length; 0 = no maximum */
    const char *const *enum_values; /* string: one of these; NULL = any */
    size_t nenum;
} sl_gateway_field;

/* ---- routes -------------------------------------------------------------- */

/** One route: requests to method + path become events on a channel. */
typedef struct sl_gateway_route {
    const char *method;  /* NULL = "POST" */
    const char *path;    /* exact match, "/orders"; must start with '/';
                            "/status/..." is reserved */
    const char *channel; /* target channel (declared by the caller) */
    const char *type;    /* CloudEvents type of events made from plain
                            JSON bodies; NULL = the channel name */
    const char *source;  /* their source; NULL = "/gateway" + path */
    const sl_gateway_field *fields; /* rules on the data (JSON data only) */
    size_t nfields;
    uint64_t deadline_ms;       /* every accepted event carries the `deadline`
                                   extension: acceptance + this (wall clock);
                                   a client's earlier deadline is kept;
                                   0 = 30000 */
    uint64_t max_queue_wait_ms; /* refuse (503) when the predicted wait is
                                   longer, even within the deadline;
                                   0 = the deadline alone bounds it */
    bool no_wait_admission;     /* admit whatever the predicted wait (the
                                   channel's max_length still bounds) */
} sl_gateway_route;

/* ---- observation --------------------------------------------------------- */

/** What the gateway reports after each answer (for metrics and logs). */
typedef struct sl_gateway_request_info {
    const char *route;    /* the route's path, "/status" for status reads,
                             "" for unmatched requests */
    const char *method;   /* the request's method */
    int status;           /* HTTP status answered */
    uint64_t duration_ns; /* from the handler's start to the answer */
    size_t events;        /* events published by this request (0 unless
                             2xx; the batch size for batches) */
    const char *reason;   /* short machine word for refusals: "rate_limited",
                             "full", "queue_wait", "breaker_open",
                             "draining", "timeout", "invalid", ...; NULL
                             for 2xx */
} sl_gateway_request_info;

/** Called on a server thread after each answer; must be thread-safe and
 * short. Pointers are valid only during the call. */
typedef void (*sl_gateway_observe_fn)(const sl_gateway_request_info *info,
                                      void *ctx);

/* ---- state: idempotency keys and the status projection ------------------ */

/** The gateway's SQLite state: idempotency records and the status
 * projection (opaque). One file may be shared by processes (WAL). */
typedef struct sl_gateway_state sl_gateway_state;

/** Options of a state store; zero is default. Copied. */
typedef struct sl_gateway_state_opts {
    uint64_t idempotency_ttl_ms; /* records kept; 0 = 24 h */
    uint64_t status_ttl_ms;      /* status rows kept after their last
                                    update; 0 = 7 days */
    const sl_clock *clock;       /* NULL = system (wall clock); borrowed */
} sl_gateway_state_opts;

/**
 * Open (creating tables as needed) the state at @p path, a SQLite file or
 * ":memory:" (private to this handle).
 * @param[in]  opts options, NULL for the defaults; copied (the clock is
 *                  borrowed and must outlive the state).
 * @param[out] out  the state, owned by the caller (sl_gateway_state_close);
 *                  written only on SL_OK.
 * @return SL_OK; SL_INVALID for a NULL argument; SL_IO when the file cannot
 *         be opened or is not a database; SL_NOMEM.
 *
 * Thread safety: any thread; the handle is then usable from any thread.
 */
SL_API sl_status sl_gateway_state_open(const char *path,
                                       const sl_gateway_state_opts *opts,
                                       sl_gateway_state **out, sl_diag *diag);

/** Close and free. No call may be using @p gs, and no gateway that
 * borrows it may still run. NULL is a no-op. */
SL_API void sl_gateway_state_close(sl_gateway_state *gs);

/** The statuses a projection row may hold. */
#define SL_GATEWAY_STATUS_PENDING "pending"
#define SL_GATEWAY_STATUS_PROCESSING "processing"
#define SL_GATEWAY_STATUS_COMPLETED "completed"
#define SL_GATEWAY_STATUS_FAILED "failed"

/**
 * Write the status of event @p id (last write wins; updated_at = now).
 * Consumers call it as an event moves on; the gateway writes "pending"
 * when it accepts an event, without overwriting a status a fast consumer
 * already wrote.
 * @param[in] status one of pending, processing, completed, failed
 * @param[in] detail optional text for humans ("payment declined"); NULL
 * @return SL_OK; SL_INVALID for another status or an empty or overlong
 *         (> 256 bytes) id; SL_IO.
 * Thread safety: any thread.
 */
SL_API sl_status sl_gateway_status_set(sl_gateway_state *gs, const char *id,
                                       const char *status, const char *detail);

/** A status row, as read by sl_gateway_status_get. */
typedef struct sl_gateway_status_row {
    char status[16];
    char detail[512];    /* "" when none */
    uint64_t updated_ms; /* wall clock */
} sl_gateway_status_row;

/** Read the status of event @p id into @p out (caller-owned).
 * @return SL_OK; SL_NOT_FOUND; SL_INVALID for NULL arguments; SL_IO.
 * Thread safety: any thread. */
SL_API sl_status sl_gateway_status_get(sl_gateway_state *gs, const char *id,
                                       sl_gateway_status_row *out);

/* ---- the gateway ------------------------------------------------------- */

typedef struct sl_gateway sl_gateway;

/** Options of a gateway; zero is default. Copied (routes and rules too). */
typedef struct sl_gateway_opts {
    const char *listen; /* "host:port", port 0 = any free port;
                           NULL = "127.0.0.1:8080" */
    size_t max_body;    /* bytes; 0 = 1 MiB; larger bodies get 413 */
    unsigned threads;   /* server worker threads; 0 = 4. Each holds one
                           request while its publish is confirmed. */
    unsigned max_conns; /* 0 = 1024 */
    const sl_gateway_route *routes; /* at least one */
    size_t nroutes;

    sl_producer *producer; /* borrowed, required; must outlive the gateway */
    sl_engine *eng;        /* borrowed, optional: when set, 503 while
                              !sl_engine_is_ready() */

    /* Keyed token bucket per client; 0 rate = off. */
    double client_rate_per_s;  /* requests per second per client */
    double client_burst;       /* 0 = 2 x rate */
    const char *client_header; /* client = this header's value (e.g.
                                  "X-API-Key"); NULL, or a request without
                                  it: the remote address */
    size_t max_clients;        /* clients tracked (LRU); 0 = 10000 */

    /* Idempotency keys and the status projection. */
    sl_gateway_state *state; /* borrowed; NULL = open state_path */
    const char *state_path;  /* used when state is NULL; NULL = ":memory:" */
    uint64_t idempotency_ttl_ms; /* for state_path; 0 = 24 h */

    size_t max_batch;            /* events per batch request; 0 = 1000 */
    uint64_t confirm_timeout_ms; /* wait for a confirm; 0 = 5000; then 504 */

    /* Draining: 503 to every new event while it returns true. */
    bool (*is_draining)(void *ctx);
    void *draining_ctx;
    uint64_t draining_retry_after_ms; /* 0 = 1000 */

    /* Retry-After for a full channel or window. NULL = the gateway's own
     * estimate (docs/gateway.md); the service may know better (depth and
     * drain rate of the channel's groups). Return 0 for "don't know". */
    uint64_t (*full_retry_after_ms)(const char *channel, void *ctx);
    void *full_retry_after_ctx;
    uint64_t max_retry_after_ms; /* cap on every Retry-After; 0 = 60000 */

    /* Admission by predicted wait (docs/gateway.md): the time until every
     * consumer group of @p channel has handled @p ahead more events (those
     * of the request and those still being published) after the work it
     * already has. Returns false when it cannot tell (no drain rate
     * measured yet): the request is admitted. A request whose remaining
     * deadline (or the route's max_queue_wait) is shorter than the
     * prediction is answered 503 before anything is published. NULL = no
     * admission by wait. Called on server threads; must be thread-safe. */
    bool (*predict_wait_ms)(const char *channel, uint64_t ahead,
                            uint64_t *wait_ms, void *ctx);
    void *predict_wait_ctx;

    sl_gateway_observe_fn observe; /* NULL = none */
    void *observe_ctx;
    sl_metrics *metrics; /* borrowed, optional: sluice_http_requests_total
                            and sluice_http_request_duration_seconds with
                            server="gateway", route = the route's path,
                            "/status" or "unmatched"; 429s count in
                            sluice_rate_limited_total{limiter=
                            "gateway_client"} */

    const sl_clock *clock; /* NULL = system; for buckets, TTLs, times */
} sl_gateway_opts;

/**
 * Check options without starting anything (for `sluice config check`):
 * routes present, paths and methods valid and unique, channels named,
 * rules consistent (min <= max, enums only on strings, ...).
 * @return SL_OK or SL_CONFIG with the offending route and field in @p diag;
 *         SL_INVALID for NULL options.
 *
 * Thread safety: any thread; nothing is changed.
 */
SL_API sl_status sl_gateway_opts_check(const sl_gateway_opts *opts,
                                       sl_diag *diag);

/**
 * Create a gateway: check the options, open the state if the gateway owns
 * it, bind the listen address and start serving. The producer's channels
 * must be declared by the caller.
 *
 * @param[in]  opts options; copied (what they point to is borrowed, see
 *                  sl_gateway_opts).
 * @param[out] out  the gateway, owned by the caller (sl_gateway_destroy);
 *                  written only on SL_OK.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_CONFIG (see sl_gateway_opts_check); SL_INVALID for a
 *         NULL producer or out; SL_IO when the address cannot be bound or
 *         the state cannot be opened; SL_NOMEM.
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_gateway_create(const sl_gateway_opts *opts,
                                   sl_gateway **out, sl_diag *diag);

/** The port actually bound (useful with port 0). Any thread. */
SL_API uint16_t sl_gateway_port(const sl_gateway *gw);

/** The state the gateway uses (its own or the borrowed one), for
 * sl_gateway_status_set; borrowed, valid until sl_gateway_destroy. Any
 * thread. */
SL_API sl_gateway_state *sl_gateway_get_state(sl_gateway *gw);

/** Stop accepting, wait for running requests, free (closing the state if
 * the gateway opened it). NULL is a no-op. The controlling thread, once no
 * other call on @p gw runs. */
SL_API void sl_gateway_destroy(sl_gateway *gw);

#ifdef __cplusplus
}
#endif
#endif
