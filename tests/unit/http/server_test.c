#include "http/server.h"

#include "sluice/alloc.h"
#include "sluice/clock.h"
#include "support.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#define T0 1700000000000ull

/* What the handler saw on its latest call; written by a server thread,
 * read by the test after curl returned (the response is sent after the
 * handler returns, so the write happens before). */
typedef struct seen {
    pthread_mutex_t mu;
    int calls;
    char method[16];
    char path[128];
    char body[256];
    size_t body_len;
    char header[64];
    char query[64];
    char remote[64];
} seen;

static seen g_seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "(null)");
}

/* Records the request; answers according to the path. */
static void handler(const sl_http_request *req, sl_http_response *resp,
                    void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g_seen.mu);
    g_seen.calls++;
    copy_str(g_seen.method, sizeof g_seen.method, req->method);
    copy_str(g_seen.path, sizeof g_seen.path, req->path);
    g_seen.body_len = req->body_len;
    size_t n = req->body_len < sizeof g_seen.body - 1 ? req->body_len
                                                      : sizeof g_seen.body - 1;
    if (n > 0) {
        memcpy(g_seen.body, req->body, n);
    }
    g_seen.body[n] = '\0';
    copy_str(g_seen.header, sizeof g_seen.header,
             sl__http_header(req, "x-sluice-test"));
    copy_str(g_seen.query, sizeof g_seen.query, sl__http_query(req, "q"));
    copy_str(g_seen.remote, sizeof g_seen.remote, req->remote_addr);
    pthread_mutex_unlock(&g_seen.mu);

    if (strcmp(req->path, "/problem") == 0) {
        sl__http_problem(resp, 422, "Unprocessable \"Content\"",
                         "qty must be >= 1\n");
    } else if (strcmp(req->path, "/nothing") == 0) {
        /* Leaves the response untouched: the server answers 500. */
    } else if (strcmp(req->path, "/headers") == 0) {
        sl__http_set_header(resp, "Retry-After", "7");
        sl__http_set_header(resp, "X-Other", "yes");
        sl__http_set_body(resp, 429, "text/plain", "slow down", 9);
    } else {
        char out[512];
        int len = snprintf(out, sizeof out, "%s %s %zu", req->method, req->path,
                           req->body_len);
        sl__http_set_body(resp, 200, "text/plain", out, (size_t)len);
    }
}

static void reset_seen(void)
{
    pthread_mutex_lock(&g_seen.mu);
    g_seen.calls = 0;
    pthread_mutex_unlock(&g_seen.mu);
}

static int seen_calls(void)
{
    pthread_mutex_lock(&g_seen.mu);
    int n = g_seen.calls;
    pthread_mutex_unlock(&g_seen.mu);
    return n;
}

static sl_http_server *start(const char *listen, size_t max_body)
{
    sl_http_server *srv = NULL;
    sl_diag diag = {0};
    sl_http_server_opts opts = {.listen = listen,
                                .max_body = max_body,
                                .threads = 2,
                                .handler = handler};
    sl_status st = sl__http_server_start(&opts, &srv, &diag);
    if (st != SL_OK) {
        fail_msg("start %s: %s", listen, diag.msg);
    }
    assert_non_null(srv);
    assert_true(sl__http_server_port(srv) != 0);
    reset_seen();
    return srv;
}

/* A response collected by curl. */
typedef struct reply {
    long status;
    char body[4096];
    size_t len;
    char content_type[128];
    char retry_after[32];
    char other[32];
} reply;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    reply *r = ud;
    size_t n = size * nmemb;
    size_t room = sizeof r->body - 1 - r->len;
    size_t take = n < room ? n : room;
    memcpy(r->body + r->len, data, take);
    r->len += take;
    r->body[r->len] = '\0';
    return n;
}

static void header_value(const char *line, size_t n, const char *name,
                         char *dst, size_t size)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0) {
        return;
    }
    const char *v = line + nl;
    size_t vn = n - nl;
    while (vn > 0 && (*v == ' ')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == '\r' || v[vn - 1] == '\n')) {
        vn--;
    }
    snprintf(dst, size, "%.*s", (int)vn, v);
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    reply *r = ud;
    size_t n = size * nmemb;
    header_value(line, n, "content-type:", r->content_type,
                 sizeof r->content_type);
    header_value(line, n, "retry-after:", r->retry_after,
                 sizeof r->retry_after);
    header_value(line, n, "x-other:", r->other, sizeof r->other);
    return n;
}

/* One request with a fresh easy handle. @p chunked sends the body without a
 * Content-Length. */
static reply request(const char *url, const char *method, const char *body,
                     size_t body_len, bool chunked, const char *header)
{
    reply r = {0};
    CURL *h = curl_easy_init();
    assert_non_null(h);
    struct curl_slist *hdrs = NULL;
    if (header != NULL) {
        hdrs = curl_slist_append(hdrs, header);
    }
    if (chunked) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        if (!chunked) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)body_len);
        }
    }
    if (method != NULL) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fail_msg("%s: %s", url, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return r;
}

static void url_for(char *buf, size_t size, const sl_http_server *srv,
                    const char *host, const char *path)
{
    snprintf(buf, size, "http://%s:%u%s", host,
             (unsigned)sl__http_server_port(srv), path);
}

static void server_get_round_trip_reaches_handler(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/hello/world");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /hello/world 0");
    assert_string_equal(r.content_type, "text/plain");
    assert_int_equal(seen_calls(), 1);
    assert_string_equal(g_seen.remote, "127.0.0.1");
    sl__http_server_stop(srv);
}

/* The handler sees the client's address in dotted-quad form, whatever
 * its digits (the client binds a loopback address of its choice). */
static void server_remote_address_is_the_clients(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    const char *froms[] = {"127.100.20.3", "127.0.9.255", "127.10.0.1"};
    for (size_t i = 0; i < sizeof froms / sizeof froms[0]; i++) {
        char url[128];
        url_for(url, sizeof url, srv, "127.0.0.1", "/who");
        CURL *h = curl_easy_init();
        assert_non_null(h);
        reply r = {0};
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(h, CURLOPT_INTERFACE, froms[i]);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        assert_int_equal(curl_easy_perform(h), CURLE_OK);
        curl_easy_cleanup(h);
        pthread_mutex_lock(&g_seen.mu);
        char remote[64];
        snprintf(remote, sizeof remote, "%s", g_seen.remote);
        pthread_mutex_unlock(&g_seen.mu);
        assert_string_equal(remote, froms[i]);
    }
    sl__http_server_stop(srv);
}

static void server_post_body_reaches_handler_whole(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/orders");
    const char *body = "{\"sku\":\"A-1\",\"qty\":2}";
    reply r = request(url, NULL, body, strlen(body), false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /orders 21");
    assert_string_equal(g_seen.method, "POST");
    assert_string_equal(g_seen.body, body);
    sl__http_server_stop(srv);
}

static void server_large_body_within_limit_arrives_intact(void **state)
{
    (void)state;
    /* Larger than one socket read and than curl's Expect threshold. */
    size_t len = 300000;
    char *body = sl_malloc(len + 1);
    assert_non_null(body);
    for (size_t i = 0; i < len; i++) {
        body[i] = (char)('a' + i % 26);
    }
    body[len] = '\0';
    sl_http_server *srv = start("127.0.0.1:0", len);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/big");
    reply r = request(url, NULL, body, len, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /big 300000");
    assert_memory_equal(g_seen.body, body, sizeof g_seen.body - 1);
    sl__http_server_stop(srv);
    sl_free(body);
}

static void check_problem(const reply *r, int status, const char *title)
{
    assert_int_equal(r->status, status);
    assert_string_equal(r->content_type, "application/problem+json");
    json_error_t err;
    json_t *doc = json_loads(r->body, 0, &err);
    if (doc == NULL) {
        fail_msg("not JSON: %s (%s)", r->body, err.text);
    }
    assert_string_equal(json_string_value(json_object_get(doc, "type")),
                        "about:blank");
    assert_string_equal(json_string_value(json_object_get(doc, "title")),
                        title);
    assert_int_equal(json_integer_value(json_object_get(doc, "status")),
                     status);
    assert_true(json_is_string(json_object_get(doc, "detail")));
    json_decref(doc);
}

static void server_oversized_body_gets_413_without_calling_handler(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 100);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/orders");
    char body[101];
    memset(body, 'x', sizeof body);
    reply r = request(url, NULL, body, sizeof body, false, NULL);
    check_problem(&r, 413, "Payload Too Large");
    assert_int_equal(seen_calls(), 0);
    sl__http_server_stop(srv);
}

static void
server_oversized_chunked_body_gets_413_without_calling_handler(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 100);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/orders");
    char body[1001];
    memset(body, 'y', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    reply r = request(url, NULL, body, sizeof body - 1, true, NULL);
    check_problem(&r, 413, "Payload Too Large");
    assert_int_equal(seen_calls(), 0);
    sl__http_server_stop(srv);
}

static void server_body_exactly_at_limit_is_accepted(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 100);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/orders");
    char body[100];
    memset(body, 'z', sizeof body);
    reply r = request(url, NULL, body, sizeof body, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /orders 100");
    sl__http_server_stop(srv);
}

static void server_header_lookup_is_case_insensitive(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/h");
    reply r = request(url, NULL, NULL, 0, false, "X-Sluice-Test: v1 v2");
    assert_int_equal(r.status, 200);
    assert_string_equal(g_seen.header, "v1 v2");
    r = request(url, NULL, NULL, 0, false, NULL);
    assert_string_equal(g_seen.header, "(null)");
    sl__http_server_stop(srv);
}

/* Request headers of 12 KiB in all are read; 20 KiB get 431 without the
 * handler (the connection's memory is 16 KiB). */
static void server_headers_up_to_12k_are_read_larger_get_431(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/h");
    static char header[20 * 1024 + 32];
    size_t n = (size_t)snprintf(header, sizeof header, "X-Pad: ");
    memset(header + n, 'a', 12 * 1024);
    header[n + 12 * 1024] = '\0';
    reply r = request(url, NULL, NULL, 0, false, header);
    assert_int_equal(r.status, 200);
    assert_int_equal(seen_calls(), 1);
    memset(header + n, 'a', 20 * 1024);
    header[n + 20 * 1024] = '\0';
    r = request(url, NULL, NULL, 0, false, header);
    assert_int_equal(r.status, 431);
    assert_int_equal(seen_calls(), 1);
    sl__http_server_stop(srv);
}

static void server_query_args_are_decoded_and_path_excludes_them(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/scale?group=g1&q=a%20b%26c");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(g_seen.path, "/scale");
    assert_string_equal(g_seen.query, "a b&c");
    url_for(url, sizeof url, srv, "127.0.0.1", "/scale");
    r = request(url, NULL, NULL, 0, false, NULL);
    assert_string_equal(g_seen.query, "(null)");
    sl__http_server_stop(srv);
}

static void server_response_headers_and_status_are_sent(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/headers");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "7");
    assert_string_equal(r.other, "yes");
    assert_string_equal(r.body, "slow down");
    sl__http_server_stop(srv);
}

static void server_problem_is_rfc9457_json_with_escaping(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/problem");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    check_problem(&r, 422, "Unprocessable \"Content\"");
    json_t *doc = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "detail")),
                        "qty must be >= 1\n");
    json_decref(doc);
    sl__http_server_stop(srv);
}

static void server_untouched_response_answers_500(void **state)
{
    (void)state;
    sl_http_server *srv = start("127.0.0.1:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "127.0.0.1", "/nothing");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.len, 0);
    sl__http_server_stop(srv);
}

static void server_port_zero_binds_a_free_port(void **state)
{
    (void)state;
    sl_http_server *a = start("127.0.0.1:0", 0);
    sl_http_server *b = start("127.0.0.1:0", 0);
    assert_int_not_equal(sl__http_server_port(a), sl__http_server_port(b));
    char url[128];
    url_for(url, sizeof url, b, "127.0.0.1", "/b");
    assert_int_equal(request(url, NULL, NULL, 0, false, NULL).status, 200);
    sl__http_server_stop(a);
    sl__http_server_stop(b);
}

static void server_port_in_use_is_an_io_error(void **state)
{
    (void)state;
    sl_http_server *a = start("127.0.0.1:0", 0);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u",
             (unsigned)sl__http_server_port(a));
    sl_http_server *b = NULL;
    sl_diag diag = {0};
    sl_http_server_opts opts = {.listen = listen, .handler = handler};
    assert_int_equal(sl__http_server_start(&opts, &b, &diag), SL_IO);
    assert_null(b);
    assert_non_null(strstr(diag.msg, listen));
    sl__http_server_stop(a);
}

static void server_listens_on_ipv6_loopback(void **state)
{
    (void)state;
    sl_http_server *srv = start("[::1]:0", 0);
    char url[128];
    url_for(url, sizeof url, srv, "[::1]", "/six");
    reply r = request(url, NULL, NULL, 0, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(g_seen.remote, "::1");
    sl__http_server_stop(srv);
}

static void server_bad_listen_addresses_are_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",        "127.0.0.1", "127.0.0.1:",  "1.2.3.4:x", "127.0.0.1:70000",
        "[::1:80", "::1:80",    "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_http_server *srv = NULL;
        sl_diag diag = {0};
        sl_http_server_opts opts = {.listen = bad[i], .handler = handler};
        assert_int_equal(sl__http_server_start(&opts, &srv, &diag), SL_INVALID);
        assert_null(srv);
        assert_true(diag.msg[0] != '\0');
    }
    sl_http_server *srv = NULL;
    sl_http_server_opts no_handler = {.listen = "127.0.0.1:0"};
    assert_int_equal(sl__http_server_start(&no_handler, &srv, NULL),
                     SL_INVALID);
}

static void server_stop_null_is_a_noop(void **state)
{
    (void)state;
    sl__http_server_stop(NULL);
    assert_int_equal(sl__http_server_port(NULL), 0);
}

/* ---- deferred answers ---------------------------------------------------- */

/* A handler that defers: "/now" resumes before returning (the race with the
 * suspension), "/later" hands the token to a thread that resumes after
 * 50 ms, "/never" keeps it in g_kept until the test gives it back. */
typedef struct deferred {
    pthread_mutex_t mu;
    int fills;
    int cancelled;
    sl_http_pending *kept;
} deferred;

static deferred g_def = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void fill(void *ctx, sl_http_response *resp, bool cancelled)
{
    const char *what = ctx;
    pthread_mutex_lock(&g_def.mu);
    g_def.fills++;
    g_def.cancelled += cancelled;
    pthread_mutex_unlock(&g_def.mu);
    if (cancelled) {
        sl__http_problem(resp, 503, "Service Unavailable", "stopping");
        return;
    }
    sl__http_set_body(resp, 202, "text/plain", what, strlen(what));
}

static bool one_kept(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_def.mu);
    bool kept = g_def.kept != NULL;
    pthread_mutex_unlock(&g_def.mu);
    return kept;
}

static void *resume_later(void *arg)
{
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    sl__http_resume(arg);
    return NULL;
}

static void deferring_handler(const sl_http_request *req,
                              sl_http_response *resp, void *ctx)
{
    (void)ctx;
    /* The handler's own response is ignored once it deferred. */
    sl__http_set_body(resp, 500, "text/plain", "ignored", 7);
    if (strcmp(req->path, "/now") == 0) {
        sl_http_pending *p = sl__http_defer(req, fill, "now");
        assert_non_null(p);
        assert_null(sl__http_defer(req, fill, "twice"));
        sl__http_resume(p);
    } else if (strcmp(req->path, "/later") == 0) {
        sl_http_pending *p = sl__http_defer(req, fill, "later");
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, resume_later, p), 0);
        pthread_detach(t);
    } else if (strcmp(req->path, "/never") == 0) {
        sl_http_pending *p = sl__http_defer(req, fill, "never");
        pthread_mutex_lock(&g_def.mu);
        g_def.kept = p;
        pthread_mutex_unlock(&g_def.mu);
    } else {
        handler(req, resp, ctx);
    }
}

static sl_http_server *start_deferring(uint64_t stop_grace_ms,
                                       const sl_clock *clock)
{
    sl_http_server *srv = NULL;
    sl_http_server_opts opts = {.listen = "127.0.0.1:0",
                                .threads = 2,
                                .handler = deferring_handler,
                                .stop_grace_ms = stop_grace_ms,
                                .clock = clock};
    assert_int_equal(sl__http_server_start(&opts, &srv, NULL), SL_OK);
    pthread_mutex_lock(&g_def.mu);
    g_def.fills = g_def.cancelled = 0;
    g_def.kept = NULL;
    pthread_mutex_unlock(&g_def.mu);
    return srv;
}

static void server_deferred_answer_resumed_before_suspension(void **state)
{
    (void)state;
    sl_http_server *srv = start_deferring(0, NULL);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/now",
             (unsigned)sl__http_server_port(srv));
    for (int i = 0; i < 20; i++) {
        reply r = request(url, "POST", "x", 1, false, NULL);
        assert_int_equal(r.status, 202);
        assert_string_equal(r.body, "now");
    }
    sl__http_server_stop(srv);
    assert_int_equal(g_def.fills, 20);
    assert_int_equal(g_def.cancelled, 0);
}

static void server_deferred_answer_resumed_from_another_thread(void **state)
{
    (void)state;
    sl_http_server *srv = start_deferring(0, NULL);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/later",
             (unsigned)sl__http_server_port(srv));
    /* More requests than threads: a suspended request holds none. */
    for (int i = 0; i < 5; i++) {
        reply r = request(url, "GET", NULL, 0, false, NULL);
        assert_int_equal(r.status, 202);
        assert_string_equal(r.body, "later");
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%u/plain",
             (unsigned)sl__http_server_port(srv));
    reply r = request(url, "GET", NULL, 0, false, NULL);
    assert_int_equal(r.status, 200);
    sl__http_server_stop(srv);
    assert_int_equal(g_def.fills, 5);
}

typedef struct bg_request {
    char url[64];
    reply r;
} bg_request;

static void *request_in_background(void *arg)
{
    bg_request *bg = arg;
    bg->r = request(bg->url, "GET", NULL, 0, false, NULL);
    return NULL;
}

/* Stops a server on its own thread, noting its clock when it returned. */
typedef struct stopper {
    sl_http_server *srv;
    sl_manual_clock *mc;
    uint64_t stopped_at;
} stopper;

static void *stop_server(void *arg)
{
    stopper *st = arg;
    sl__http_server_stop(st->srv);
    st->stopped_at = atomic_load(&st->mc->now_ms);
    return NULL;
}

static void server_stop_cancels_suspended_requests_with_503(void **state)
{
    (void)state;
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_http_server *srv = start_deferring(200, &mc.clock);
    bg_request bg[2];
    pthread_t t[2];
    sl_http_pending *late = NULL;
    for (int i = 0; i < 2; i++) {
        snprintf(bg[i].url, sizeof bg[i].url, "http://127.0.0.1:%u/never",
                 (unsigned)sl__http_server_port(srv));
        assert_int_equal(
            pthread_create(&t[i], NULL, request_in_background, &bg[i]), 0);
        /* One at a time, so that g_def.kept is each one's in turn. */
        assert_true(ts_wait_until(one_kept, NULL, TS_WAIT_MS));
        pthread_mutex_lock(&g_def.mu);
        sl_http_pending *p = g_def.kept;
        g_def.kept = NULL;
        pthread_mutex_unlock(&g_def.mu);
        assert_non_null(p);
        if (i == 0) {
            /* The owner gives its token back late: after stop. */
            late = p;
        } else {
            sl__http_resume(p); /* answered normally */
        }
    }
    pthread_join(t[1], NULL);
    assert_int_equal(bg[1].r.status, 202);
    /* The grace passes on the server's clock, one millisecond short
     * first: stop returns at 200 ms, not before. */
    stopper st = {.srv = srv, .mc = &mc};
    pthread_t ts;
    assert_int_equal(pthread_create(&ts, NULL, stop_server, &st), 0);
    assert_true(ts_clock_advance_when_waiting(&mc, 1, 199));
    sl_manual_clock_advance(&mc, 1);
    pthread_join(ts, NULL);
    assert_true(st.stopped_at >= T0 + 200);
    pthread_join(t[0], NULL);
    assert_int_equal(bg[0].r.status, 503);
    assert_string_equal(bg[0].r.content_type, "application/problem+json");
    assert_int_equal(g_def.fills, 2);
    assert_int_equal(g_def.cancelled, 1);
    sl__http_resume(late); /* only frees now */
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_get_round_trip_reaches_handler),
        cmocka_unit_test(server_remote_address_is_the_clients),
        cmocka_unit_test(server_post_body_reaches_handler_whole),
        cmocka_unit_test(server_large_body_within_limit_arrives_intact),
        cmocka_unit_test(
            server_oversized_body_gets_413_without_calling_handler),
        cmocka_unit_test(
            server_oversized_chunked_body_gets_413_without_calling_handler),
        cmocka_unit_test(server_body_exactly_at_limit_is_accepted),
        cmocka_unit_test(server_header_lookup_is_case_insensitive),
        cmocka_unit_test(server_headers_up_to_12k_are_read_larger_get_431),
        cmocka_unit_test(server_query_args_are_decoded_and_path_excludes_them),
        cmocka_unit_test(server_response_headers_and_status_are_sent),
        cmocka_unit_test(server_problem_is_rfc9457_json_with_escaping),
        cmocka_unit_test(server_untouched_response_answers_500),
        cmocka_unit_test(server_port_zero_binds_a_free_port),
        cmocka_unit_test(server_port_in_use_is_an_io_error),
        cmocka_unit_test(server_listens_on_ipv6_loopback),
        cmocka_unit_test(server_bad_listen_addresses_are_invalid),
        cmocka_unit_test(server_stop_null_is_a_noop),
        cmocka_unit_test(server_deferred_answer_resumed_before_suspension),
        cmocka_unit_test(server_deferred_answer_resumed_from_another_thread),
        cmocka_unit_test(server_stop_cancels_suspended_requests_with_503),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
