/* A small HTTP server on libmicrohttpd, shared by the gateway and the admin
 * listener.
 *
 * The server reads the whole request body (refusing one larger than
 * max_body with 413 before the handler runs), then calls the handler on one
 * of its worker threads; the handler fills a response. Handlers may block
 * (e.g. waiting for a publish confirm): `threads` bounds how many run at
 * once.
 */
#ifndef SLUICE_HTTP_SERVER_H
#define SLUICE_HTTP_SERVER_H

#include "sluice/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_http_server sl_http_server;

/** One request; every pointer is valid only during the handler call. */
typedef struct sl_http_request {
    const char *method;      /* "GET", "POST", ... */
    const char *path;        /* without the query string */
    const uint8_t *body;     /* NULL when empty */
    size_t body_len;
    const char *remote_addr; /* "127.0.0.1" or "::1" */
    void *impl;              /* the server's; for the lookups below */
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

typedef struct sl_http_server_opts {
    const char *listen;    /* "127.0.0.1:8080"; port 0 = any free port */
    size_t max_body;       /* bytes; 0 = 1 MiB; larger bodies get 413 */
    unsigned threads;      /* worker threads; 0 = 4 */
    unsigned max_conns;    /* 0 = 1024; beyond it connections are refused */
    sl_http_handler_fn handler;
    void *ctx;
} sl_http_server_opts;

sl_status sl__http_server_start(const sl_http_server_opts *opts,
                                sl_http_server **out, sl_diag *diag);

/** The port actually bound (useful with port 0). */
uint16_t sl__http_server_port(const sl_http_server *srv);

/** Stop accepting, finish running handlers, free. NULL is a no-op. */
void sl__http_server_stop(sl_http_server *srv);

#endif
