#include "http/server.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/clock.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define DEFAULT_THREADS 4
#define DEFAULT_MAX_CONNS 1024
/* Idle connections are closed after this long, so that a client that opens
 * connections and sends nothing cannot hold the connection limit. */
#define IDLE_TIMEOUT_S 30
/* libmicrohttpd's memory per connection: the request line and headers,
 * its read buffer and the answer's headers. It zeroes the whole of it
 * after every request on a kept-alive connection, which at its default
 * (32 KiB) was the largest single cost of a request in instructions and
 * evicted the L1 cache each time. 16 KiB admits about 15 KiB of request
 * headers (Node.js's limit is 16 KiB); beyond, the answer is 431. Bodies
 * are not held there (they stream into request_state). */
#define CONNECTION_MEMORY ((size_t)16 << 10)
/* First allocation for a body of unknown length. */
#define BODY_INITIAL_CAP 4096

/* Longest wait at stop for requests already read to be answered. */
#define STOP_GRACE_MS 5000
/* After the grace, how long the cancelled deferred requests get for their
 * 503 to be sent. */
#define STOP_FLUSH_MS 1000

/* A deferred answer. Two references: the owner's (given back by
 * sl__http_resume) and the connection's (given back when the request
 * completes). The flags are guarded by mu; the list links by the server's
 * mu. */
struct sl_http_pending {
    pthread_mutex_t mu;
    atomic_int refs;
    sl_http_server *srv;
    struct MHD_Connection *conn;
    sl_http_fill_fn fill;
    void *ctx;
    bool resumed;   /* the owner called sl__http_resume */
    bool suspended; /* the connection is suspended (and not yet resumed) */
    bool cancelled; /* the server stopped waiting for the owner */
    bool filled;    /* fill was called */
    bool listed;    /* in the server's list */
    sl_http_pending *prev, *next;
};

struct sl_http_server {
    struct MHD_Daemon *daemon;
    sl_http_handler_fn handler;
    void *ctx;
    size_t max_body;
    uint64_t stop_grace_ms;
    uint16_t port;
    atomic_int active; /* requests read and not yet fully answered */
    /* sl__http_resume calls between taking a suspension and
     * MHD_resume_connection returning; stop waits for none to be left. */
    atomic_int resuming;
    /* Deferred requests that were suspended, until they complete; and
     * whether stop has cancelled them (no more suspensions then). */
    pthread_mutex_t mu;
    sl_http_pending *deferred;
    bool cancelling;
    /* Stop waits on idle_cv for `active` and `resuming` to drop; they
     * broadcast it only once `stopping` is set, so that a completed
     * request costs no lock until then (both sides are sequentially
     * consistent: a drop that misses `stopping` is seen by stop's check).
     * `resuming` drops under idle_mu (see sl__http_resume). */
    const sl_clock *clock;
    atomic_bool stopping;
    pthread_mutex_t idle_mu;
    pthread_cond_t idle_cv;
};

/* Per-request state, from the first access-handler call to the completion
 * notification. */
typedef struct request_state {
    sl_http_server *srv;
    uint8_t *body;
    size_t len;
    size_t cap;
    bool too_large;        /* the body passed max_body; the rest is discarded */
    sl_http_pending *pend; /* set by sl__http_defer */
} request_state;

const char *sl__http_header(const sl_http_request *req, const char *name)
{
    if (req == NULL || req->impl == NULL || name == NULL) {
        return NULL;
    }
    return MHD_lookup_connection_value((struct MHD_Connection *)req->impl,
                                       MHD_HEADER_KIND, name);
}

const char *sl__http_query(const sl_http_request *req, const char *name)
{
    if (req == NULL || req->impl == NULL || name == NULL) {
        return NULL;
    }
    return MHD_lookup_connection_value((struct MHD_Connection *)req->impl,
                                       MHD_GET_ARGUMENT_KIND, name);
}

/* Copy @p src into @p dst of @p size bytes, cut to fit, NUL-terminated. */
static void copy_cut(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void sl__http_set_header(sl_http_response *resp, const char *name,
                         const char *value)
{
    if (resp->nheaders >= SL_HTTP_MAX_RESPONSE_HEADERS) {
        return;
    }
    size_t i = resp->nheaders++;
    copy_cut(resp->headers[i].name, sizeof resp->headers[i].name, name);
    copy_cut(resp->headers[i].value, sizeof resp->headers[i].value, value);
}

sl_status sl__http_set_body(sl_http_response *resp, int status,
                            const char *content_type, const char *body,
                            size_t len)
{
    /* One extra byte keeps the body NUL-terminated for handlers and tests
     * that read it as a string; it is not sent. */
    char *copy = sl_malloc(len + 1);
    if (copy == NULL) {
        return SL_NOMEM;
    }
    if (len > 0) {
        memcpy(copy, body, len);
    }
    copy[len] = '\0';
    sl_free(resp->body);
    resp->body = copy;
    resp->body_len = len;
    resp->status = status;
    resp->content_type = content_type;
    return SL_OK;
}

sl_status sl__http_problem(sl_http_response *resp, int status,
                           const char *title, const char *detail)
{
    json_t *obj = json_object();
    if (obj == NULL) {
        return SL_NOMEM;
    }
    int bad = json_object_set_new(obj, "type", json_string("about:blank"));
    bad |= json_object_set_new(obj, "title",
                               json_string(title != NULL ? title : ""));
    bad |= json_object_set_new(obj, "status", json_integer(status));
    if (detail != NULL) {
        /* Detail text may come from anywhere (a diag, an engine): keep it
         * valid JSON even when it is not valid UTF-8. */
        json_t *d = json_string(detail);
        if (d == NULL) {
            d = json_string("(detail is not valid UTF-8)");
        }
        bad |= json_object_set_new(obj, "detail", d);
    }
    char *text = bad == 0 ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL) {
        return SL_NOMEM;
    }
    sl_status st = sl__http_set_body(resp, status, "application/problem+json",
                                     text, strlen(text));
    free(text); /* jansson's allocator */
    return st;
}

/* Parse "host:port", "[v6]:port" or ":port" (all interfaces) into a socket
 * address. Hosts are resolved (numeric or names such as "localhost"). */
static sl_status parse_listen(const char *listen, struct sockaddr_storage *out,
                              socklen_t *out_len, sl_diag *diag)
{
    char host[256];
    const char *port;
    if (listen == NULL || listen[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID, "listen address is empty");
    }
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':') {
            return sl_diag_set(diag, SL_INVALID,
                               "listen address '%s': expected [v6]:port",
                               listen);
        }
        size_t n = (size_t)(close - listen - 1);
        if (n == 0 || n >= sizeof host) {
            return sl_diag_set(diag, SL_INVALID,
                               "listen address '%s': bad host", listen);
        }
        memcpy(host, listen + 1, n);
        host[n] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (colon == NULL || strchr(listen, ':') != colon) {
            return sl_diag_set(diag, SL_INVALID,
                               "listen address '%s': expected host:port",
                               listen);
        }
        size_t n = (size_t)(colon - listen);
        if (n >= sizeof host) {
            return sl_diag_set(diag, SL_INVALID,
                               "listen address '%s': bad host", listen);
        }
        memcpy(host, listen, n);
        host[n] = '\0';
        port = colon + 1;
    }
    char *end = NULL;
    unsigned long pnum = strtoul(port, &end, 10);
    if (port[0] == '\0' || port[0] == '-' || port[0] == '+' || *end != '\0' ||
        pnum > 65535) {
        return sl_diag_set(diag, SL_INVALID,
                           "listen address '%s': bad port '%s' (expected "
                           "0..65535)",
                           listen, port);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        return sl_diag_set(diag, SL_INVALID, "listen address '%s': %s", listen,
                           gai_strerror(rc));
    }
    /* With no host, AI_PASSIVE may list "::" first; the documented meaning
     * of ":port" is every IPv4 interface, the portable choice. */
    const struct addrinfo *pick = res;
    if (host[0] == '\0') {
        for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET) {
                pick = ai;
                break;
            }
        }
    }
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    *out_len = (socklen_t)pick->ai_addrlen;
    freeaddrinfo(res);
    return SL_OK;
}

static void free_body(void *body)
{
    sl_free(body);
}

static enum MHD_Result send_response(struct MHD_Connection *conn,
                                     sl_http_response *resp)
{
    int status = resp->status != 0 ? resp->status : 500;
    struct MHD_Response *r;
    if (resp->body != NULL) {
        r = MHD_create_response_from_buffer_with_free_callback(
            resp->body_len, resp->body, free_body);
        if (r == NULL) {
            sl_free(resp->body);
        }
        resp->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (r == NULL) {
        return MHD_NO;
    }
    if (resp->content_type != NULL) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                resp->content_type);
    }
    for (size_t i = 0; i < resp->nheaders; i++) {
        MHD_add_response_header(r, resp->headers[i].name,
                                resp->headers[i].value);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_too_large(struct MHD_Connection *conn,
                                      size_t max_body)
{
    sl_http_response resp = {0};
    char detail[96];
    snprintf(detail, sizeof detail, "the request body exceeds %zu bytes",
             max_body);
    if (sl__http_problem(&resp, 413, "Payload Too Large", detail) != SL_OK) {
        return MHD_NO;
    }
    sl__http_set_header(&resp, "Connection", "close");
    return send_response(conn, &resp);
}

/* Append an upload chunk, growing geometrically up to max_body. */
static bool append_body(request_state *rs, const char *data, size_t len,
                        size_t max_body)
{
    if (len > max_body - rs->len) {
        rs->too_large = true;
        return true;
    }
    if (rs->len + len > rs->cap) {
        size_t cap = rs->cap != 0 ? rs->cap : BODY_INITIAL_CAP;
        while (cap < rs->len + len) {
            cap = cap > max_body / 2 ? max_body : cap * 2;
        }
        uint8_t *grown = sl_realloc(rs->body, cap);
        if (grown == NULL) {
            return false;
        }
        rs->body = grown;
        rs->cap = cap;
    }
    memcpy(rs->body + rs->len, data, len);
    rs->len += len;
    return true;
}

static void remote_address(struct MHD_Connection *conn, char *buf, size_t size)
{
    buf[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) {
        return;
    }
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET && size >= INET_ADDRSTRLEN) {
        /* Dotted quad by hand: inet_ntop goes through sprintf, a few
         * per cent of a request's instructions. */
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        const uint8_t *b = (const uint8_t *)&in->sin_addr.s_addr;
        char *p = buf;
        for (int i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100) {
                *p++ = (char)('0' + v / 100);
            }
            if (v >= 10) {
                *p++ = (char)('0' + v / 10 % 10);
            }
            *p++ = (char)('0' + v % 10);
            *p++ = i < 3 ? '.' : '\0';
        }
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
    }
}

static void pending_unref(sl_http_pending *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1) {
        pthread_mutex_destroy(&p->mu);
        sl_free(p);
    }
}

sl_http_pending *sl__http_defer(const sl_http_request *req,
                                sl_http_fill_fn fill, void *ctx)
{
    request_state *rs = req != NULL ? req->state : NULL;
    if (rs == NULL || rs->pend != NULL || fill == NULL) {
        return NULL;
    }
    sl_http_pending *p = sl_calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    atomic_init(&p->refs, 2);
    p->srv = rs->srv;
    p->conn = req->impl;
    p->fill = fill;
    p->ctx = ctx;
    rs->pend = p;
    return p;
}

/* After `active` dropped (on a daemon thread): wake stop if it waits. */
static void wake_stop(sl_http_server *srv)
{
    if (atomic_load(&srv->stopping)) {
        pthread_mutex_lock(&srv->idle_mu);
        pthread_cond_broadcast(&srv->idle_cv);
        pthread_mutex_unlock(&srv->idle_mu);
    }
}

void sl__http_resume(sl_http_pending *p)
{
    sl_http_server *srv = p->srv;
    pthread_mutex_lock(&p->mu);
    p->resumed = true;
    /* Taking the suspension under mu orders this after suspend(); the
     * resume itself comes after unlocking: the server thread it wakes
     * takes mu at once (answer_deferred), and finding it still held here
     * would put that thread straight back to sleep, two context switches
     * per request for nothing. */
    bool wake = p->suspended;
    if (wake) {
        p->suspended = false;
        atomic_fetch_add(&srv->resuming, 1);
    }
    pthread_mutex_unlock(&p->mu);
    if (wake) {
        /* Thread-safe with ITC (MHD_ALLOW_SUSPEND_RESUME implies it). The
         * daemon outlives the call: stop waits for `resuming` to drop. */
        MHD_resume_connection(p->conn);
        /* Under idle_mu, unlike `active` (whose drops run on the daemon's
         * threads, which stop joins): once `resuming` drops, stop may free
         * the server, so nothing here touches it after the unlock. */
        pthread_mutex_lock(&srv->idle_mu);
        atomic_fetch_sub(&srv->resuming, 1);
        if (atomic_load(&srv->stopping)) {
            pthread_cond_broadcast(&srv->idle_cv);
        }
        pthread_mutex_unlock(&srv->idle_mu);
    }
    pending_unref(p);
}

/* Have the owner fill the deferred answer, and send it. */
static enum MHD_Result answer_deferred(struct MHD_Connection *conn,
                                       sl_http_pending *p)
{
    pthread_mutex_lock(&p->mu);
    bool cancelled = p->cancelled;
    bool again = p->filled;
    p->filled = true;
    pthread_mutex_unlock(&p->mu);
    if (again) {
        return MHD_NO;
    }
    sl_http_response resp = {0};
    p->fill(p->ctx, &resp, cancelled);
    return send_response(conn, &resp);
}

/* After the handler deferred: suspend the connection, unless the owner
 * resumed already (answer now) or the server is stopping (cancel). */
static enum MHD_Result suspend(sl_http_server *srv, struct MHD_Connection *conn,
                               sl_http_pending *p)
{
    pthread_mutex_lock(&srv->mu);
    pthread_mutex_lock(&p->mu);
    if (!p->resumed && !srv->cancelling) {
        MHD_suspend_connection(conn);
        p->suspended = true;
        p->listed = true;
        p->next = srv->deferred;
        if (p->next != NULL) {
            p->next->prev = p;
        }
        srv->deferred = p;
        pthread_mutex_unlock(&p->mu);
        pthread_mutex_unlock(&srv->mu);
        return MHD_YES;
    }
    if (!p->resumed) {
        p->cancelled = true;
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&srv->mu);
    return answer_deferred(conn, p);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    sl_http_server *srv = cls;
    request_state *rs = *con_cls;

    if (rs == NULL) {
        /* First call: headers only. A declared length over the limit is
         * refused before a byte of the body is read (and before curl's
         * "Expect: 100-continue" is answered). */
        const char *cl = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL) {
            char *end = NULL;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end != cl && n > srv->max_body) {
                return send_too_large(conn, srv->max_body);
            }
        }
        rs = sl_calloc(1, sizeof *rs);
        if (rs == NULL) {
            return MHD_NO;
        }
        rs->srv = srv;
        *con_cls = rs;
        atomic_fetch_add(&srv->active, 1);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rs->too_large &&
            !append_body(rs, upload_data, *upload_data_size, srv->max_body)) {
            return MHD_NO; /* out of memory: drop the connection */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rs->too_large) {
        return send_too_large(conn, srv->max_body);
    }
    if (rs->pend != NULL) {
        return answer_deferred(conn, rs->pend); /* resumed */
    }

    char remote[INET6_ADDRSTRLEN];
    remote_address(conn, remote, sizeof remote);
    sl_http_request req = {
        .method = method,
        .path = url,
        .body = rs->len > 0 ? rs->body : NULL,
        .body_len = rs->len,
        .remote_addr = remote,
        .impl = conn,
        .state = rs,
    };
    sl_http_response resp = {0};
    srv->handler(&req, &resp, srv->ctx);
    if (rs->pend == NULL) {
        return send_response(conn, &resp);
    }
    sl_free(resp.body);
    return suspend(srv, conn, rs->pend);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sl_http_server *srv = cls;
    request_state *rs = *con_cls;
    if (rs != NULL) {
        sl_http_pending *p = rs->pend;
        if (p != NULL) {
            pthread_mutex_lock(&srv->mu);
            if (p->listed) {
                if (p->prev != NULL) {
                    p->prev->next = p->next;
                } else {
                    srv->deferred = p->next;
                }
                if (p->next != NULL) {
                    p->next->prev = p->prev;
                }
                p->listed = false;
            }
            pthread_mutex_unlock(&srv->mu);
            /* Closed before it was answered (the client left, or stop):
             * the owner still gets its one fill call. */
            pthread_mutex_lock(&p->mu);
            bool unfilled = !p->filled;
            p->filled = true;
            pthread_mutex_unlock(&p->mu);
            if (unfilled) {
                sl_http_response resp = {0};
                p->fill(p->ctx, &resp, true);
                sl_free(resp.body);
            }
            pending_unref(p);
        }
        sl_free(rs->body);
        sl_free(rs);
        *con_cls = NULL;
        atomic_fetch_sub(&srv->active, 1);
        wake_stop(srv);
    }
}

sl_status sl__http_listen_check(const char *listen, sl_diag *diag)
{
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    return parse_listen(listen, &addr, &addr_len, diag);
}

sl_status sl__http_server_start(const sl_http_server_opts *opts,
                                sl_http_server **out, sl_diag *diag)
{
    if (opts == NULL || opts->handler == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "HTTP server needs a handler");
    }
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    sl_status st = parse_listen(opts->listen, &addr, &addr_len, diag);
    if (st != SL_OK) {
        return st;
    }
    sl_http_server *srv = sl_calloc(1, sizeof *srv);
    if (srv == NULL) {
        return SL_NOMEM;
    }
    srv->handler = opts->handler;
    srv->ctx = opts->ctx;
    srv->max_body = opts->max_body != 0 ? opts->max_body : DEFAULT_MAX_BODY;
    srv->stop_grace_ms =
        opts->stop_grace_ms != 0 ? opts->stop_grace_ms : STOP_GRACE_MS;
    srv->clock = opts->clock;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->idle_mu, NULL);
    sl__cond_init_mono(&srv->idle_cv);
    unsigned threads = opts->threads != 0 ? opts->threads : DEFAULT_THREADS;
    unsigned max_conns =
        opts->max_conns != 0 ? opts->max_conns : DEFAULT_MAX_CONNS;

    /* epoll where libmicrohttpd has it, otherwise its default (select).
     * MHD_OPTION_LISTENING_ADDRESS_REUSE is left unset: its default is
     * SO_REUSEADDR (quick restarts), while setting it would add
     * SO_REUSEPORT and let a second server share a port silently. */
    /* ITC: so that the listening socket can be quiesced at stop, and
     * connections resumed from any thread (deferred answers). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES) {
        flags |= MHD_USE_EPOLL;
    }
    if (addr.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        pthread_mutex_destroy(&srv->mu);
        pthread_mutex_destroy(&srv->idle_mu);
        pthread_cond_destroy(&srv->idle_cv);
        sl_free(srv);
        return sl_diag_set(diag, SL_IO,
                           "cannot listen on %s (address in use or not "
                           "available)",
                           opts->listen);
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di != NULL ? di->port : 0;
    *out = srv;
    return SL_OK;
}

uint16_t sl__http_server_port(const sl_http_server *srv)
{
    return srv != NULL ? srv->port : 0;
}

/* Wait up to @p ms on the server's clock for every request read to be
 * answered. */
static void wait_idle(sl_http_server *srv, uint64_t ms)
{
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &srv->idle_cv, &srv->idle_mu, srv->clock);
    pthread_mutex_lock(&srv->idle_mu);
    uint64_t until = sl__clock_or_mono_ms(srv->clock) + ms;
    while (atomic_load(&srv->active) > 0 && !sl__clock_wait(&cw, until)) {
    }
    pthread_mutex_unlock(&srv->idle_mu);
    sl__clock_wait_end(&cw);
}

void sl__http_server_stop(sl_http_server *srv)
{
    if (srv == NULL) {
        return;
    }
    /* MHD_stop_daemon closes every connection, even one whose response is
     * queued: a client would lose the 202 of an event already published.
     * So refuse new connections first, let the requests already read be
     * answered and flushed (bounded), then stop. */
    /* The listening socket is shut down now (new connections are refused)
     * but closed only after the daemon stopped: its worker threads remove
     * it from their epoll sets after the quiesce, and libmicrohttpd aborts
     * when that finds it closed. */
    atomic_store(&srv->stopping, true);
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);
    if (lfd != MHD_INVALID_SOCKET) {
        shutdown(lfd, SHUT_RDWR);
    }
    wait_idle(srv, srv->stop_grace_ms);
    /* Deferred requests still waiting are answered 503 now: their fill is
     * told they are cancelled. libmicrohttpd must not be stopped with a
     * connection suspended, and none is suspended after this. */
    pthread_mutex_lock(&srv->mu);
    srv->cancelling = true;
    for (sl_http_pending *p = srv->deferred; p != NULL; p = p->next) {
        pthread_mutex_lock(&p->mu);
        if (p->suspended) {
            p->suspended = false;
            p->cancelled = true;
            MHD_resume_connection(p->conn);
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    /* No suspension is left to take, so `resuming` only drops now; the
     * calls in progress return within microseconds. */
    pthread_mutex_lock(&srv->idle_mu);
    while (atomic_load(&srv->resuming) > 0) {
        pthread_cond_wait(&srv->idle_cv, &srv->idle_mu);
    }
    pthread_mutex_unlock(&srv->idle_mu);
    wait_idle(srv, STOP_FLUSH_MS);
    MHD_stop_daemon(srv->daemon);
    if (lfd != MHD_INVALID_SOCKET) {
        close(lfd);
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_mutex_destroy(&srv->idle_mu);
    pthread_cond_destroy(&srv->idle_cv);
    sl_free(srv);
}
