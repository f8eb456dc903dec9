/* HTTP push handlers against a real HTTP server on loopback: the outcome of
 * each answer, the headers that arrive, Retry-After, timeouts, refused
 * connections, the breaker, the concurrency limit, connection reuse, and
 * one run through a consumer on the embedded engine.
 *
 * The server is a small libmicrohttpd daemon (a thread per connection) that
 * answers what the test scripts and records what it saw.
 */
#include "runtime/http_handler.h"

#include "host/handlers.h"

#include "core/waiter.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000 /* generous: sanitizer builds are slow */
#define CH "orders.paid"
#define GROUP "notifier"
#define DLQ CH "." GROUP ".dlq"

/* ---- the scripted server ---------------------------------------------- */

typedef struct server {
    struct MHD_Daemon *d;
    uint16_t port;
    char url[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* The script. */
    int status;            /* 0 = 200 */
    char retry_after[64];  /* sent when not empty */
    const char *body;      /* answer body */
    uint64_t delay_ms;     /* before answering */
    bool hold;             /* answer only once hold is cleared */
    const char *reject_id; /* ce-id prefix answered 404 */
    bool release;          /* teardown: stop every delay now */
    /* What it saw. */
    int requests;
    int concurrent;
    int max_concurrent;
    int connections;
    char method[16];
    char ce_id[64], ce_source[64], ce_type[64], ce_specversion[16];
    char ce_subject[64], ce_time[64], ce_datacontenttype[64];
    char content_type[64], traceparent[64], idempotency_key[64];
    char api_key[64];
    char body_seen[256];
} server;

typedef struct request_body {
    char data[4096];
    size_t len;
} request_body;

static void copy_header(struct MHD_Connection *conn, const char *name,
                        char *out, size_t size)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(out, size, "%s", v ? v : "");
}

/* Wait on the server's condition for up to @p ms, or until released. */
static void server_delay(server *s, uint64_t ms)
{
    struct timespec until;
    sl__deadline_after(&until, ms);
    while (!s->release) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
            break;
        }
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)url;
    (void)version;
    server *s = cls;
    request_body *rb = *con_cls;
    if (rb == NULL) {
        rb = calloc(1, sizeof *rb);
        if (rb == NULL) {
            return MHD_NO;
        }
        *con_cls = rb;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t room = sizeof rb->data - 1 - rb->len;
        size_t n = *upload_data_size < room ? *upload_data_size : room;
        memcpy(rb->data + rb->len, upload_data, n);
        rb->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }

    char ce_id[64];
    copy_header(conn, "ce-id", ce_id, sizeof ce_id);
    pthread_mutex_lock(&s->mu);
    s->requests++;
    s->concurrent++;
    if (s->concurrent > s->max_concurrent) {
        s->max_concurrent = s->concurrent;
    }
    snprintf(s->method, sizeof s->method, "%s", method);
    snprintf(s->ce_id, sizeof s->ce_id, "%s", ce_id);
    copy_header(conn, "ce-source", s->ce_source, sizeof s->ce_source);
    copy_header(conn, "ce-type", s->ce_type, sizeof s->ce_type);
    copy_header(conn, "ce-specversion", s->ce_specversion,
                sizeof s->ce_specversion);
    copy_header(conn, "ce-subject", s->ce_subject, sizeof s->ce_subject);
    copy_header(conn, "ce-time", s->ce_time, sizeof s->ce_time);
    copy_header(conn, "ce-datacontenttype", s->ce_datacontenttype,
                sizeof s->ce_datacontenttype);
    copy_header(conn, "Content-Type", s->content_type, sizeof s->content_type);
    copy_header(conn, "traceparent", s->traceparent, sizeof s->traceparent);
    copy_header(conn, "Idempotency-Key", s->idempotency_key,
                sizeof s->idempotency_key);
    copy_header(conn, "X-Api-Key", s->api_key, sizeof s->api_key);
    snprintf(s->body_seen, sizeof s->body_seen, "%.*s", (int)rb->len, rb->data);
    pthread_cond_broadcast(&s->cv);
    if (s->delay_ms > 0) {
        server_delay(s, s->delay_ms);
    }
    while (s->hold && !s->release) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    int status = s->status ? s->status : 200;
    const char *body = s->body ? s->body : "";
    if (s->reject_id != NULL &&
        strncmp(ce_id, s->reject_id, strlen(s->reject_id)) == 0) {
        status = 404;
        body = "no such order";
    }
    char retry_after[64];
    snprintf(retry_after, sizeof retry_after, "%s", s->retry_after);
    s->concurrent--;
    pthread_mutex_unlock(&s->mu);

    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    if (retry_after[0] != '\0') {
        MHD_add_response_header(resp, "Retry-After", retry_after);
    }
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_context;
    server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&s->mu);
        s->connections++;
        pthread_mutex_unlock(&s->mu);
    }
}

static int server_start(server *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    sl__cond_init_mono(&s->cv);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
        NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (s->d == NULL) {
        return -1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info->port;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u/events",
             (unsigned)s->port);
    return 0;
}

static void server_stop(server *s)
{
    pthread_mutex_lock(&s->mu);
    s->release = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static int server_get(server *s, const int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Wait until the server is inside @p n requests at once. */
static bool server_wait_concurrent(server *s, int n, uint64_t timeout_ms)
{
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (s->concurrent < n && rc == 0) {
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    bool ok = s->concurrent >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void server_set_hold(server *s, bool hold)
{
    pthread_mutex_lock(&s->mu);
    s->hold = hold;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- fixture -------------------------------------------------------- */

typedef struct fx {
    server srv;
    sl_http_handler *hh;
    sl_event *ev;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL || server_start(&f->srv) != 0) {
        free(f);
        return -1;
    }
    if (sl_event_create_new("/shop", "order.placed", &f->ev) != SL_OK ||
        sl_event_set(f->ev, SL_ATTR_ID, "ord-1") != SL_OK ||
        sl_event_set(f->ev, SL_ATTR_DATACONTENTTYPE, "application/json") !=
            SL_OK ||
        sl_event_set_data(f->ev, "{\"qty\":2}", 9) != SL_OK) {
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_http_handler_destroy(f->hh);
    server_stop(&f->srv);
    sl_event_unref(f->ev);
    free(f);
    return 0;
}

static void create(fx *f, sl_http_handler_opts *o)
{
    if (o->url == NULL) {
        o->url = f->srv.url;
    }
    sl_diag diag = {0};
    sl_status st = sl_http_handler_create(o, &f->hh, &diag);
    if (st != SL_OK) {
        fail_msg("http handler: %s (%s)", sl_status_str(st), diag.msg);
    }
}

static sl__http_result call(fx *f, uint64_t remaining_ms)
{
    sl__http_result res;
    sl__http_handler_call(f->hh, f->ev, remaining_ms, &res);
    return res;
}

static void script(fx *f, int status, const char *retry_after, const char *body)
{
    pthread_mutex_lock(&f->srv.mu);
    f->srv.status = status;
    snprintf(f->srv.retry_after, sizeof f->srv.retry_after, "%s",
             retry_after ? retry_after : "");
    f->srv.body = body;
    pthread_mutex_unlock(&f->srv.mu);
}

static void set_delay(fx *f, uint64_t ms)
{
    pthread_mutex_lock(&f->srv.mu);
    f->srv.delay_ms = ms;
    pthread_mutex_unlock(&f->srv.mu);
}

/* A copy of what the server saw, taken under its lock. */
static server seen(fx *f)
{
    server snap;
    pthread_mutex_lock(&f->srv.mu);
    snap = f->srv;
    pthread_mutex_unlock(&f->srv.mu);
    return snap;
}

/* ---- outcomes ---------------------------------------------------------- */

static void answer_200_acks(void **state)
{
    fx *f = *state;
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_ACK);
    assert_int_equal(res.status, 200);
    assert_true(res.sent);
    assert_string_equal(res.error, "");
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 1);
}

static void answer_201_acks(void **state)
{
    fx *f = *state;
    script(f, 201, NULL, "{\"ok\":true}");
    create(f, &(sl_http_handler_opts){0});
    assert_int_equal(call(f, WAIT_MS).outcome, SL_OUTCOME_ACK);
}

static void answer_503_retries_after_its_retry_after_seconds(void **state)
{
    fx *f = *state;
    script(f, 503, "2", "busy");
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_true(res.has_retry_after);
    assert_int_equal(res.retry_after_ms, 2000);
    assert_non_null(strstr(res.error, "HTTP 503"));
}

static void answer_429_retries_after_its_retry_after_date(void **state)
{
    fx *f = *state;
    char date[64];
    time_t at = time(NULL) + 10;
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    script(f, 429, date, NULL);
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_true(res.has_retry_after);
    /* Whole seconds on the wire, so up to a second less; the call itself
     * takes a little, too. */
    assert_in_range(res.retry_after_ms, 7000, 10000);
}

static void answer_503_without_retry_after_leaves_the_backoff(void **state)
{
    fx *f = *state;
    script(f, 503, NULL, NULL);
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_false(res.has_retry_after);
}

static void answer_404_rejects_with_status_and_body(void **state)
{
    fx *f = *state;
    script(f, 404, NULL, "{\"error\":\"no such order\"}\n");
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_REJECT);
    assert_int_equal(res.status, 404);
    assert_non_null(strstr(res.error, "HTTP 404"));
    assert_non_null(strstr(res.error, "no such order"));
    assert_null(strchr(res.error, '\n'));
}

static void answer_500_retries(void **state)
{
    fx *f = *state;
    script(f, 500, "5", "boom");
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    /* Retry-After is honoured only on 429 and 503. */
    assert_false(res.has_retry_after);
    assert_non_null(strstr(res.error, "HTTP 500: boom"));
}

static void long_error_body_is_cut_short(void **state)
{
    fx *f = *state;
    static char big[3000];
    memset(big, 'x', sizeof big - 1);
    script(f, 400, NULL, big);
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_REJECT);
    assert_true(strlen(res.error) < 300);
}

static void slow_answer_times_out_and_retries(void **state)
{
    fx *f = *state;
    set_delay(f, 5000);
    create(f, &(sl_http_handler_opts){0});
    uint64_t t0 = sl_time_mono_ms();
    sl__http_result res = call(f, 300);
    uint64_t took = sl_time_mono_ms() - t0;
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_non_null(strstr(res.error, "timed out"));
    assert_true(took < 3000);
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_int_equal(stats.timeouts, 1);
}

static void request_timeout_option_caps_a_long_deadline(void **state)
{
    fx *f = *state;
    set_delay(f, 5000);
    create(f, &(sl_http_handler_opts){.timeout_ms = 200});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_non_null(strstr(res.error, "timed out"));
}

static void refused_connection_retries(void **state)
{
    fx *f = *state;
    /* A port nobody listens on: bind one, then close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/x",
             (unsigned)ntohs(sa.sin_port));
    create(f, &(sl_http_handler_opts){.url = url});
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.error, url));
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_int_equal(stats.conn_errors, 1);
}

static void no_time_left_retries_without_a_request(void **state)
{
    fx *f = *state;
    create(f, &(sl_http_handler_opts){0});
    sl__http_result res = call(f, 0);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_false(res.sent);
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 0);
}

/* ---- what the target receives ------------------------------------------ */

static void cloudevents_headers_and_idempotency_key_arrive(void **state)
{
    fx *f = *state;
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_int_equal(sl_event_set(f->ev, SL_ATTR_TRACEPARENT, tp), SL_OK);
    assert_int_equal(sl_event_set(f->ev, SL_ATTR_SUBJECT, "order 7 \"x\""),
                     SL_OK);
    const char *extra[] = {"X-Api-Key: k1"};
    create(f, &(sl_http_handler_opts){.headers = extra, .headers_len = 1});
    assert_int_equal(call(f, WAIT_MS).outcome, SL_OUTCOME_ACK);
    server snap = seen(f);
    const server *s = &snap;
    assert_string_equal(s->method, "POST");
    assert_string_equal(s->ce_id, "ord-1");
    assert_string_equal(s->ce_source, "/shop");
    assert_string_equal(s->ce_type, "order.placed");
    assert_string_equal(s->ce_specversion, "1.0");
    assert_true(s->ce_time[0] != '\0');
    /* The binding's percent-encoding. */
    assert_string_equal(s->ce_subject, "order%207%20%22x%22");
    /* datacontenttype travels as Content-Type only. */
    assert_string_equal(s->content_type, "application/json");
    assert_string_equal(s->ce_datacontenttype, "");
    assert_string_equal(s->traceparent, tp);
    assert_string_equal(s->idempotency_key, "ord-1");
    assert_string_equal(s->api_key, "k1");
    assert_string_equal(s->body_seen, "{\"qty\":2}");
}

static void event_without_content_type_sends_none(void **state)
{
    fx *f = *state;
    assert_int_equal(sl_event_set(f->ev, SL_ATTR_DATACONTENTTYPE, NULL), SL_OK);
    create(f, &(sl_http_handler_opts){0});
    assert_int_equal(call(f, WAIT_MS).outcome, SL_OUTCOME_ACK);
    server snap = seen(f);
    assert_string_equal(snap.content_type, "");
    assert_string_equal(snap.body_seen, "{\"qty\":2}");
}

/* ---- breaker --------------------------------------------------------- */

static void breaker_opens_and_stops_calling_the_target(void **state)
{
    fx *f = *state;
    script(f, 500, NULL, NULL);
    create(f, &(sl_http_handler_opts){.breaker_failures = 3,
                                      .breaker_open_ms = 60000});
    for (int i = 0; i < 3; i++) {
        sl__http_result res = call(f, WAIT_MS);
        assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
        assert_true(res.sent);
    }
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 3);
    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_false(res.sent);
    assert_non_null(strstr(res.error, "circuit breaker open"));
    assert_true(res.has_retry_after);
    assert_in_range(res.retry_after_ms, 50000, 60000);
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 3);
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_int_equal(stats.breaker, SL_BREAKER_STATE_OPEN);
    assert_int_equal(stats.breaker_refused, 1);
}

static void rejects_do_not_open_the_breaker(void **state)
{
    fx *f = *state;
    script(f, 422, NULL, NULL);
    create(f, &(sl_http_handler_opts){.breaker_failures = 2});
    for (int i = 0; i < 4; i++) {
        assert_int_equal(call(f, WAIT_MS).outcome, SL_OUTCOME_REJECT);
    }
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 4);
}

static void breaker_probe_closes_it_again(void **state)
{
    fx *f = *state;
    script(f, 503, NULL, NULL);
    create(f, &(sl_http_handler_opts){.breaker_failures = 1,
                                      .breaker_open_ms = 50});
    assert_true(call(f, WAIT_MS).sent);
    assert_false(call(f, WAIT_MS).sent);
    script(f, 200, NULL, NULL);
    /* The breaker's time passes; then one probe goes through and closes
     * it. */
    uint64_t until = sl_time_mono_ms() + WAIT_MS;
    sl__http_result res;
    do {
        res = call(f, WAIT_MS);
    } while (!res.sent && sl_time_mono_ms() < until);
    assert_int_equal(res.outcome, SL_OUTCOME_ACK);
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_int_equal(stats.breaker, SL_BREAKER_STATE_CLOSED);
}

/* ---- concurrency ------------------------------------------------------ */

typedef struct worker_arg {
    fx *f;
    int calls;
    int acked;
} worker_arg;

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    for (int i = 0; i < w->calls; i++) {
        sl__http_result res;
        sl__http_handler_call(w->f->hh, w->f->ev, WAIT_MS, &res);
        w->acked += res.outcome == SL_OUTCOME_ACK;
    }
    return NULL;
}

static void run_workers(fx *f, int nthreads, int calls, int *acked)
{
    pthread_t t[16];
    worker_arg w[16];
    for (int i = 0; i < nthreads; i++) {
        w[i] = (worker_arg){.f = f, .calls = calls};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    *acked = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        *acked += w[i].acked;
    }
}

static void concurrency_limit_is_never_exceeded(void **state)
{
    fx *f = *state;
    set_delay(f, 30);
    create(f, &(sl_http_handler_opts){.max_concurrency = 3,
                                      .slot_wait_ms = WAIT_MS});
    int acked;
    run_workers(f, 8, 5, &acked);
    /* Workers waited for slots instead of failing. */
    assert_int_equal(acked, 40);
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 40);
    assert_int_equal(server_get(&f->srv, &f->srv.max_concurrent), 3);
    /* Three connections at most, reused by eight workers. */
    assert_in_range(server_get(&f->srv, &f->srv.connections), 1, 3);
}

static void adaptive_limit_stays_within_its_bound(void **state)
{
    fx *f = *state;
    set_delay(f, 20);
    create(f, &(sl_http_handler_opts){.max_concurrency = 2,
                                      .adaptive = true,
                                      .slot_wait_ms = WAIT_MS});
    int acked;
    run_workers(f, 6, 4, &acked);
    assert_int_equal(acked, 24);
    assert_in_range(server_get(&f->srv, &f->srv.max_concurrent), 1, 2);
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_in_range(stats.limit, 1, 2);
}

static void no_free_slot_retries_shortly_without_a_request(void **state)
{
    fx *f = *state;
    server_set_hold(&f->srv, true);
    create(f, &(sl_http_handler_opts){.max_concurrency = 1,
                                      .slot_wait_ms = 20,
                                      .busy_retry_ms = 250});
    pthread_t t;
    worker_arg w = {.f = f, .calls = 1};
    assert_int_equal(pthread_create(&t, NULL, worker_main, &w), 0);
    assert_true(server_wait_concurrent(&f->srv, 1, WAIT_MS));

    sl__http_result res = call(f, WAIT_MS);
    assert_int_equal(res.outcome, SL_OUTCOME_RETRY);
    assert_false(res.sent);
    assert_true(res.has_retry_after);
    assert_int_equal(res.retry_after_ms, 250);
    assert_non_null(strstr(res.error, "concurrency limit 1"));
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 1);

    server_set_hold(&f->srv, false);
    pthread_join(t, NULL);
    assert_int_equal(w.acked, 1);
    sl_http_handler_stats stats;
    sl_http_handler_get_stats(f->hh, &stats);
    assert_int_equal(stats.no_slot, 1);
    assert_int_equal(stats.in_flight, 0);
}

static void connections_are_reused_across_workers(void **state)
{
    fx *f = *state;
    create(f, &(sl_http_handler_opts){0});
    for (int i = 0; i < 5; i++) {
        assert_int_equal(call(f, WAIT_MS).outcome, SL_OUTCOME_ACK);
    }
    int acked;
    run_workers(f, 1, 5, &acked); /* another thread, one after the other */
    assert_int_equal(acked, 5);
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 10);
    assert_int_equal(server_get(&f->srv, &f->srv.connections), 1);
}

/* ---- options and parsing ---------------------------------------------- */

static void options_are_checked(void **state)
{
    (void)state;
    sl_http_handler *hh = NULL;
    sl_diag diag = {0};
    assert_int_equal(
        sl_http_handler_create(&(sl_http_handler_opts){0}, &hh, &diag),
        SL_INVALID);
    assert_int_equal(
        sl_http_handler_create(&(sl_http_handler_opts){.url = "ftp://x/"}, &hh,
                               &diag),
        SL_INVALID);
    assert_non_null(strstr(diag.msg, "ftp://x/"));
    const char *bad[] = {"X-Api-Key k1"};
    assert_int_equal(sl_http_handler_create(
                         &(sl_http_handler_opts){.url = "http://127.0.0.1:1/",
                                                 .headers = bad,
                                                 .headers_len = 1},
                         &hh, &diag),
                     SL_INVALID);
    const char *injected[] = {"X-A: 1\r\nX-B: 2"};
    assert_int_equal(sl_http_handler_create(
                         &(sl_http_handler_opts){.url = "http://127.0.0.1:1/",
                                                 .headers = injected,
                                                 .headers_len = 1},
                         &hh, &diag),
                     SL_INVALID);
    assert_null(hh);
    sl_http_handler_destroy(NULL);
}

static void retry_after_parses_seconds_and_dates(void **state)
{
    (void)state;
    uint64_t ms = 0;
    uint64_t now = 1700000000000ull; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_int_equal(sl__http_retry_after_parse("2", now, &ms), SL_OK);
    assert_int_equal(ms, 2000);
    assert_int_equal(sl__http_retry_after_parse(" 120 ", now, &ms), SL_OK);
    assert_int_equal(ms, 120000);
    assert_int_equal(sl__http_retry_after_parse("0", now, &ms), SL_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(
        sl__http_retry_after_parse("Tue, 14 Nov 2023 22:13:25 GMT", now, &ms),
        SL_OK);
    assert_int_equal(ms, 5000);
    /* A date in the past: now. */
    assert_int_equal(
        sl__http_retry_after_parse("Tue, 14 Nov 2023 22:13:00 GMT", now, &ms),
        SL_OK);
    assert_int_equal(ms, 0);
    /* Absurd values are capped at an hour. */
    assert_int_equal(
        sl__http_retry_after_parse("99999999999999999999999", now, &ms), SL_OK);
    assert_int_equal(ms, 3600000);
    ms = 7;
    assert_int_equal(sl__http_retry_after_parse("soon", now, &ms), SL_INVALID);
    assert_int_equal(sl__http_retry_after_parse("-1", now, &ms), SL_INVALID);
    assert_int_equal(sl__http_retry_after_parse("", now, &ms), SL_INVALID);
    assert_int_equal(ms, 7);
}

/* ---- through a consumer ------------------------------------------------- */

typedef struct dead_letter {
    int count;
    char id[64];
    char reason[32];
    char error[600];
} dead_letter;

static bool collect_dead(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    dead_letter *dl = ctx;
    const char *v;
    dl->count++;
    snprintf(dl->id, sizeof dl->id, "%s", sl_event_id(ev));
    v = sl_event_get_ext(ev, "dlqreason");
    snprintf(dl->reason, sizeof dl->reason, "%s", v ? v : "");
    v = sl_event_get_ext(ev, "dlqerror");
    snprintf(dl->error, sizeof dl->error, "%s", v ? v : "");
    return true;
}

typedef struct e2e {
    sl_engine *eng;
    sl_consumer *c;
} e2e;

static bool settled(void *arg)
{
    e2e *e = arg;
    sl_consumer_stats stats;
    sl_consumer_get_stats(e->c, &stats);
    dead_letter dl = {0};
    return stats.acked == 1 && stats.rejected == 1 &&
           sl_engine_browse(e->eng, DLQ, "dlq", 0, collect_dead, &dl) ==
               SL_OK &&
           dl.count == 1;
}

static bool acked_one(void *arg)
{
    e2e *e = arg;
    sl_consumer_stats stats;
    sl_consumer_get_stats(e->c, &stats);
    return stats.acked == 1;
}

static void publish(sl_engine *eng, const char *id)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/shop", "order.paid", &ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_ID, id), SL_OK);
    assert_int_equal(sl_engine_publish(eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);
}

static void consumer_acks_200_and_dead_letters_a_404(void **state)
{
    fx *f = *state;
    pthread_mutex_lock(&f->srv.mu);
    f->srv.reject_id = "bad";
    pthread_mutex_unlock(&f->srv.mu);
    /* The handler kind "http", bound as a service would bind it. */
    sl_config_consumer cc = {.channel = CH, .group = GROUP};
    cc.handler.kind = "http";
    cc.handler.url = f->srv.url;
    sl_config cfg = {.consumers = &cc, .nconsumers = 1};
    sl_bound_handler h = {0};
    sl_diag diag = {0};
    sl_status st = sl__handler_bind(&cfg, &cc, &h, &diag);
    if (st != SL_OK) {
        fail_msg("bind: %s (%s)", sl_status_str(st), diag.msg);
    }

    e2e e = {0};
    assert_int_equal(sl_engine_open("embedded::memory:", NULL, &e.eng, NULL),
                     SL_OK);
    sl_channel_opts cho = {.name = CH};
    assert_int_equal(sl_engine_declare_channel(e.eng, &cho, NULL), SL_OK);
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 4,
                           .handler = h.fn,
                           .handler_ctx = h.user};
    assert_int_equal(sl_consumer_create(e.eng, &co, &e.c, &diag), SL_OK);
    assert_int_equal(sl_consumer_start(e.c), SL_OK);
    publish(e.eng, "good-1");
    publish(e.eng, "bad-1");

    assert_true(ts_wait_until(settled, &e, WAIT_MS));
    dead_letter dl = {0};
    assert_int_equal(sl_engine_browse(e.eng, DLQ, "dlq", 0, collect_dead, &dl),
                     SL_OK);
    assert_string_equal(dl.id, "bad-1");
    assert_string_equal(dl.reason, "rejected");
    assert_non_null(strstr(dl.error, "HTTP 404: no such order"));
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(e.eng, CH, GROUP, &d), SL_OK);
    assert_int_equal(d.ready + d.delayed + d.in_flight, 0);
    assert_int_equal(server_get(&f->srv, &f->srv.requests), 2);

    assert_int_equal(sl_consumer_stop(e.c, WAIT_MS), SL_OK);
    sl_consumer_destroy(e.c);
    sl__handler_unbind(&h);
    sl_engine_close(e.eng);
}

static void answer_is_published_as_a_child_with_reply_to(void **state)
{
    fx *f = *state;
    script(f, 201, NULL, "{\"charge_id\":\"c-1\"}");
    sl_config_consumer cc = {.channel = CH, .group = GROUP};
    cc.handler.kind = "http";
    cc.handler.url = f->srv.url;
    cc.handler.reply_to = "replies";
    cc.handler.reply_type = "charge.created";
    sl_config cfg = {.consumers = &cc, .nconsumers = 1};
    sl_bound_handler h = {0};
    assert_int_equal(sl__handler_bind(&cfg, &cc, &h, NULL), SL_OK);

    e2e e = {0};
    assert_int_equal(sl_engine_open("embedded::memory:", NULL, &e.eng, NULL),
                     SL_OK);
    sl_channel_opts cho = {.name = CH};
    sl_channel_opts rch = {.name = "replies"};
    sl_group_opts rg = {.channel = "replies", .name = "sink"};
    assert_int_equal(sl_engine_declare_channel(e.eng, &cho, NULL), SL_OK);
    assert_int_equal(sl_engine_declare_channel(e.eng, &rch, NULL), SL_OK);
    assert_int_equal(sl_engine_declare_group(e.eng, &rg, NULL), SL_OK);
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_create(e.eng, NULL, &p), SL_OK);
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 2,
                           .handler = h.fn,
                           .handler_ctx = h.user,
                           .producer = p};
    assert_int_equal(sl_consumer_create(e.eng, &co, &e.c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(e.c), SL_OK);
    publish(e.eng, "order-7");
    assert_true(ts_wait_until(acked_one, &e, WAIT_MS));

    sl_subscription *sub = NULL;
    sl_subscribe_opts so = {.prefetch = 1};
    assert_int_equal(
        sl_engine_subscribe(e.eng, "replies", "sink", &so, &sub, NULL), SL_OK);
    sl_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, &d, 1, WAIT_MS, &n), SL_OK);
    const sl_event *reply = sl_delivery_event(d);
    assert_string_equal(sl_event_type(reply), "charge.created");
    assert_string_equal(sl_event_get(reply, SL_ATTR_CAUSATIONID), "order-7");
    assert_string_equal(sl_event_get(reply, SL_ATTR_CORRELATIONID), "order-7");
    size_t len = 0;
    const char *data = sl_event_data(reply, &len);
    assert_int_equal(len, strlen("{\"charge_id\":\"c-1\"}"));
    assert_memory_equal(data, "{\"charge_id\":\"c-1\"}", len);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);

    assert_int_equal(sl_consumer_stop(e.c, WAIT_MS), SL_OK);
    sl_consumer_destroy(e.c);
    sl_producer_destroy(p);
    sl__handler_unbind(&h);
    sl_engine_close(e.eng);
}

static void kind_http_without_a_url_is_a_config_error(void **state)
{
    (void)state;
    sl_config_consumer cc = {.channel = CH, .group = GROUP};
    cc.handler.kind = "http";
    cc.handler.pos.line = 7;
    cc.handler.pos.column = 5;
    sl_config cfg = {.path = "svc.yaml", .consumers = &cc, .nconsumers = 1};
    sl_bound_handler h = {0};
    sl_diag diag = {0};
    assert_int_equal(sl__handler_bind(&cfg, &cc, &h, &diag), SL_CONFIG);
    assert_non_null(strstr(diag.msg, "svc.yaml:7:5: consumers[0].handler"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(answer_200_acks),
        T(answer_201_acks),
        T(answer_503_retries_after_its_retry_after_seconds),
        T(answer_429_retries_after_its_retry_after_date),
        T(answer_503_without_retry_after_leaves_the_backoff),
        T(answer_404_rejects_with_status_and_body),
        T(answer_500_retries),
        T(long_error_body_is_cut_short),
        T(slow_answer_times_out_and_retries),
        T(request_timeout_option_caps_a_long_deadline),
        T(refused_connection_retries),
        T(no_time_left_retries_without_a_request),
        T(cloudevents_headers_and_idempotency_key_arrive),
        T(event_without_content_type_sends_none),
        T(breaker_opens_and_stops_calling_the_target),
        T(rejects_do_not_open_the_breaker),
        T(breaker_probe_closes_it_again),
        T(concurrency_limit_is_never_exceeded),
        T(adaptive_limit_stays_within_its_bound),
        T(no_free_slot_retries_shortly_without_a_request),
        T(connections_are_reused_across_workers),
        cmocka_unit_test(options_are_checked),
        cmocka_unit_test(retry_after_parses_seconds_and_dates),
        T(consumer_acks_200_and_dead_letters_a_404),
        T(answer_is_published_as_a_child_with_reply_to),
        cmocka_unit_test(kind_http_without_a_url_is_a_config_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#undef T
}
