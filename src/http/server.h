/* A small HTTP server on libmicrohttpd, shared by the gateway and the admin
 * listener.
 *
 * The server reads the whole request body (refusing one larger than
 * max_body with 413 before the handler runs), then calls the handler on one
 * of its worker threads; the handler fills a response. Handlers may block,
 * and `threads` bounds how many run at once; a handler that would wait for
 * something (a publish confirm) can instead defer its answer: it calls
 * sl__http_defer and returns, the connection is suspended without holding
 * a thread, and sl__http_resume, from any thread, has the server call the
 * deferred answer's fill function on one of its threads.
 */
#ifndef SLUICE_HTTP_SERVER_H
#define SLUICE_HTTP_SERVER_H

#include "sluice/clock.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_http_server sl_http_server;

/** One request; every pointer is valid only during the handler call. */
typedef struct sl_http_request {
    const char *method;  /* "GET", "POST", ... */
    const char *path;    /* without the query string */
    const uint8_t *body; /* NULL when empty */
    size_t body_len;
    const char *remote_addr; /* "127.0.0.1" or "::1" */
    void *impl;              /* the server's; for the lookups below */
    void *state;             /* the server's; for sl__http_defer */
} sl_http_request;

/** Request header by name, case-insensitive; NULL if absent. */
const char *sl__http_header(const sl_http_request *req, const char *name);

/** Query argument by name (decoded); NULL if absent. */
const char *sl__http_query(const sl_http_request *req, const char *name);

#define SL_HTTP_MAX_RESPONSE_HEADERS 8

/** What the handler answers. Zero-initialised by the server. */
typedef struct sl_http_response {
    int status;               /* 0 = 500 */
    const char *content_type; /* static or literal string; NULL = none */
    char *body;               /* sl_malloc'd; the server frees it */
    size_t body_len;
    struct {
        char name[64];
        char value[256];
    } headers[SL_HTTP_MAX_RESPONSE_HEADERS];
    size_t nheaders;
} sl_http_response;

/** Add a response header (ignored beyond SL_HTTP_MAX_RESPONSE_HEADERS). */
void sl__http_set_header(sl_http_response *resp, const char *name,
                         const char *value);

/** Set a body by copying @p body (a JSON or text literal, say). */
sl_status sl__http_set_body(sl_http_response *resp, int status,
                            const char *content_type, const char *body,
                            size_t len);

/** An RFC 9457 application/problem+json answer. */
sl_status sl__http_problem(sl_http_response *resp, int status,
                           const char *title, const char *detail);

/** Called on a server worker thread, concurrently up to `threads`. */
typedef void (*sl_http_handler_fn)(const sl_http_request *req,
                                   sl_http_response *resp, void *ctx);

/* ---- deferred answers ----------------------------------------------------
 *
 * A handler calls sl__http_defer and returns (its response is then
 * ignored). The connection is suspended until its owner calls
 * sl__http_resume; then, on a server thread, the server calls @p fill to
 * write the answer and sends it. If sl__http_resume came before the handler
 * returned, fill runs at once on the handler's thread, without suspending.
 *
 * fill is called exactly once per deferred request, before
 * sl__http_server_stop returns. @p cancelled is true when the server is
 * stopping and the request was not resumed within the stop grace: fill
 * should answer 503 then (and @p resp may be discarded when the
 * connection is already closed).
 */
typedef struct sl_http_pending sl_http_pending;

typedef void (*sl_http_fill_fn)(void *ctx, sl_http_response *resp,
                                bool cancelled);

/** From a handler, on its thread: answer later. @return the token, which
 * the caller owns until it passes it to sl__http_resume; NULL when out of
 * memory (answer synchronously then). */
sl_http_pending *sl__http_defer(const sl_http_request *req,
                                sl_http_fill_fn fill, void *ctx);

/** Any thread, never blocks: the answer can be written. Exactly once per
 * token, also after a cancellation (it then only frees); the token is the
 * server's again after the call. */
void sl__http_resume(sl_http_pending *p);

typedef struct sl_http_server_opts {
    const char *listen; /* "127.0.0.1:8080"; port 0 = any free port */
    size_t max_body;    /* bytes; 0 = 1 MiB; larger bodies get 413 */
    unsigned threads;   /* worker threads; 0 = 4 */
    unsigned max_conns; /* 0 = 1024; beyond it connections are refused */
    sl_http_handler_fn handler;
    void *ctx;
    /* Longest wait at stop for the requests already read (deferred ones
     * included) to be answered; 0 = 5000 ms. */
    uint64_t stop_grace_ms;
    /* Measures the stop grace; NULL = the monotonic clock. Borrowed. */
    const sl_clock *clock;
} sl_http_server_opts;

sl_status sl__http_server_start(const sl_http_server_opts *opts,
                                sl_http_server **out, sl_diag *diag);

/** Check a listen address as sl__http_server_start reads it ("host:port",
 * "[v6]:port", ":port"; port 0..65535; the host resolves), without
 * binding. SL_INVALID with the reason in @p diag. */
sl_status sl__http_listen_check(const char *listen, sl_diag *diag);

/** The port actually bound (useful with port 0). */
uint16_t sl__http_server_port(const sl_http_server *srv);

/** Stop accepting, let the requests already read be answered within the
 * stop grace (deferred ones still unresumed then are cancelled: their fill
 * answers 503), free. NULL is a no-op. */
void sl__http_server_stop(sl_http_server *srv);

#endif
