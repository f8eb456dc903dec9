/* HTTP push handlers on libcurl's multi interface.
 *
 * One I/O thread per handler owns a curl multi handle. A worker that runs
 * the handler passes the breaker and the concurrency limiter, builds a job
 * (headers, a reference to the event whose data is the body), pushes it on
 * a bounded queue, wakes the I/O thread and waits on the job's condition
 * variable. The I/O thread adds the job's easy handle to the multi handle,
 * drives every transfer, and on completion fills in the answer and signals
 * the worker. Connections live in the multi handle's cache, so they are
 * reused by every worker; easy handles are recycled through a small pool.
 *
 * A job has two owners, the worker and the I/O thread: whichever lets go
 * last frees it, so a worker that stops waiting (it never should: the I/O
 * thread enforces the timeout) leaves nothing dangling.
 */
#include "runtime/http_handler.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/clock.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/queue.h"

#include <curl/curl.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_MAX_CONCURRENCY 100
#define ADAPTIVE_START 10
#define DEFAULT_SLOT_WAIT_MS 1000
#define DEFAULT_BUSY_RETRY_MS 100
/* How much of an error answer's body goes into the error text. */
#define SNIPPET_MAX 200
/* Largest answer body kept for a reply event. */
#define REPLY_MAX (64 * 1024)
/* A worker waits this much beyond the request timeout before it gives up
 * on the I/O thread (which enforces the timeout itself). */
#define WAIT_GRACE_MS 5000
/* Easy handles kept for reuse. */
#define EASY_POOL_MAX 64
/* Jobs the I/O thread takes from the queue per wake-up. */
#define POP_BATCH 32
/* The I/O thread's longest sleep when nothing happens. */
#define IDLE_POLL_MS 1000
/* Retry-After values beyond this are capped. */
#define RETRY_AFTER_CAP_MS (3600ull * 1000)

typedef struct job job;

struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* the worker and, once queued, the I/O thread */
    bool done;
    job *prev, *next; /* the I/O thread's list of running jobs */

    /* The request (read by the I/O thread). */
    sl_event *ev; /* own reference: the body is its data */
    struct curl_slist *headers;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    CURL *easy;

    /* The answer (written by the I/O thread before done). */
    CURLcode rc;
    bool aborted; /* the handler was destroyed first */
    long status;
    bool has_retry_after;
    char retry_after[64];
    char *body; /* sl_malloc'd as it arrives, at most body_max bytes */
    size_t body_len, body_cap, body_max;
    bool body_cut; /* the answer was longer than body_max */
    char curl_error[CURL_ERROR_SIZE];
};

struct sl_http_handler {
    char *url;
    char *reply_to; /* NULL = no reply */
    char *reply_type;
    char *service;  /* for logs */
    char *agent;    /* User-Agent */
    char **headers; /* extra "Name: value" lines */
    size_t headers_len;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t slot_wait_ms;
    uint64_t busy_retry_ms;

    sl_breaker *brk;
    sl_limiter *lim;
    pthread_mutex_t slot_mu; /* pairs with slot_cv: a slot came free */
    pthread_cond_t slot_cv;

    sl_queue *q; /* jobs for the I/O thread */
    CURLM *multi;
    pthread_t io;
    bool io_started;
    atomic_bool stopping;

    /* The I/O thread's own state. */
    job *running;
    CURL *pool[EASY_POOL_MAX];
    size_t npool;

    _Atomic uint64_t requests, acked, retried, rejected, timeouts, conn_errors,
        breaker_refused, no_slot;
};

/* ---- Retry-After ----------------------------------------------------------
 */

sl_status sl__http_retry_after_parse(const char *value, uint64_t now_wall_ms,
                                     uint64_t *out_ms)
{
    if (value == NULL) {
        return SL_INVALID;
    }
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        return SL_INVALID;
    }
    size_t digits = strspn(value, "0123456789");
    if (digits == n) {
        /* delta-seconds; anything over the cap is the cap, so long digit
         * strings cannot overflow. */
        uint64_t s = 0;
        for (size_t i = 0; i < n; i++) {
            s = s * 10 + (uint64_t)(value[i] - '0');
            if (s * 1000 >= RETRY_AFTER_CAP_MS) {
                *out_ms = RETRY_AFTER_CAP_MS;
                return SL_OK;
            }
        }
        *out_ms = s * 1000;
        return SL_OK;
    }
    /* An HTTP date (IMF-fixdate, or the obsolete forms curl also reads). */
    char buf[64];
    if (n >= sizeof buf) {
        return SL_INVALID;
    }
    memcpy(buf, value, n);
    buf[n] = '\0';
    time_t t = curl_getdate(buf, NULL);
    if (t < 0) {
        return SL_INVALID;
    }
    uint64_t at = (uint64_t)t * 1000;
    uint64_t ms = at > now_wall_ms ? at - now_wall_ms : 0;
    *out_ms = ms < RETRY_AFTER_CAP_MS ? ms : RETRY_AFTER_CAP_MS;
    return SL_OK;
}

/* ---- headers --------------------------------------------------------------
 */

/* Builds the request's header list. */
typedef struct header_builder {
    struct curl_slist *list;
    char *buf;
    size_t cap;
} header_builder;

static bool hb_reserve(header_builder *hb, size_t need)
{
    if (need <= hb->cap) {
        return true;
    }
    size_t cap = hb->cap ? hb->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *buf = sl_realloc(hb->buf, cap);
    if (buf == NULL) {
        return false;
    }
    hb->buf = buf;
    hb->cap = cap;
    return true;
}

/* Append a complete header line as it is. */
static sl_status hb_line(header_builder *hb, const char *line)
{
    struct curl_slist *l = curl_slist_append(hb->list, line);
    if (l == NULL) {
        return SL_NOMEM;
    }
    hb->list = l;
    return SL_OK;
}

/* Append "name: value". With @p ce_escape, the value is percent-encoded as
 * the CloudEvents HTTP binding asks (space, '"', '%' and every byte outside
 * printable ASCII); otherwise only control bytes are, so that no value can
 * end the header early. */
static sl_status hb_add(header_builder *hb, const char *name, const char *value,
                        bool ce_escape)
{
    size_t nlen = strlen(name);
    size_t vlen = strlen(value);
    if (!hb_reserve(hb, nlen + 2 + 3 * vlen + 1)) {
        return SL_NOMEM;
    }
    static const char hex[] = "0123456789ABCDEF";
    char *p = hb->buf;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        bool escape = ce_escape
                          ? (c <= 0x20 || c >= 0x7f || c == '"' || c == '%')
                          : (c < 0x20 || c == 0x7f);
        if (escape) {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        } else {
            *p++ = (char)c;
        }
    }
    *p = '\0';
    return hb_line(hb, hb->buf);
}

static sl_status add_ce_header(const char *name, const char *value, void *ctx)
{
    /* HTTP carries datacontenttype as Content-Type, and only there. */
    if (strcmp(name, "ce-datacontenttype") == 0) {
        return SL_OK;
    }
    return hb_add(ctx, name, value, true);
}

static sl_status build_headers(const sl_http_handler *hh, const sl_event *ev,
                               struct curl_slist **out)
{
    header_builder hb = {0};
    sl_status st = sl_ce_to_headers(ev, "ce-", add_ce_header, &hb);
    const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    const char *tp = sl_event_get(ev, SL_ATTR_TRACEPARENT);
    const char *ts = sl_event_get(ev, SL_ATTR_TRACESTATE);
    const char *id = sl_event_id(ev);
    if (st == SL_OK) {
        /* "Content-Type:" with no value stops curl sending its form
         * default: an event without datacontenttype has no Content-Type. */
        st = ct != NULL ? hb_add(&hb, "Content-Type", ct, false)
                        : hb_line(&hb, "Content-Type:");
    }
    if (st == SL_OK && tp != NULL) {
        st = hb_add(&hb, "traceparent", tp, false);
    }
    if (st == SL_OK && ts != NULL) {
        st = hb_add(&hb, "tracestate", ts, false);
    }
    if (st == SL_OK && id != NULL) {
        st = hb_add(&hb, "Idempotency-Key", id, true);
    }
    /* No "Expect: 100-continue" round trip before larger bodies. */
    if (st == SL_OK) {
        st = hb_line(&hb, "Expect:");
    }
    for (size_t i = 0; st == SL_OK && i < hh->headers_len; i++) {
        st = hb_line(&hb, hh->headers[i]);
    }
    sl_free(hb.buf);
    if (st != SL_OK) {
        curl_slist_free_all(hb.list);
        return st;
    }
    *out = hb.list;
    return SL_OK;
}

/* ---- jobs ------------------------------------------------------------------
 */

static void job_free(job *j)
{
    sl_free(j->body);
    curl_slist_free_all(j->headers);
    sl_event_unref(j->ev);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    sl_free(j);
}

/* Drop one owner's hold; the last one frees. */
static void job_put(job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        job_free(j);
    }
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    job *j = user;
    size_t n = size * nmemb;
    size_t room = j->body_max - j->body_len;
    size_t take = n < room ? n : room;
    j->body_cut |= take < n;
    if (take > 0 && j->body_len + take + 1 > j->body_cap) {
        size_t cap = j->body_cap ? j->body_cap : 256;
        while (cap < j->body_len + take + 1) {
            cap *= 2;
        }
        char *b = sl_realloc(j->body, cap);
        if (b == NULL) {
            return 0; /* curl reports a write error: RETRY */
        }
        j->body = b;
        j->body_cap = cap;
    }
    if (take > 0) {
        memcpy(j->body + j->body_len, data, take);
        j->body_len += take;
        j->body[j->body_len] = '\0';
    }
    /* The rest is read and dropped: memory stays bounded. */
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    job *j = user;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after an interim one): forget the old headers. */
        j->has_retry_after = false;
    } else if (n > sizeof name - 1 &&
               strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        size_t vlen = n - (sizeof name - 1);
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                            v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
            vlen--;
        }
        if (vlen < sizeof j->retry_after) {
            memcpy(j->retry_after, v, vlen);
            j->retry_after[vlen] = '\0';
            j->has_retry_after = true;
        }
    }
    return n;
}

/* ---- the I/O thread ----------------------------------------------------- */

static void running_add(sl_http_handler *hh, job *j)
{
    j->prev = NULL;
    j->next = hh->running;
    if (hh->running != NULL) {
        hh->running->prev = j;
    }
    hh->running = j;
}

static void running_remove(sl_http_handler *hh, job *j)
{
    if (j->prev != NULL) {
        j->prev->next = j->next;
    } else {
        hh->running = j->next;
    }
    if (j->next != NULL) {
        j->next->prev = j->prev;
    }
    j->prev = j->next = NULL;
}

static void easy_recycle(sl_http_handler *hh, CURL *easy)
{
    if (easy == NULL) {
        return;
    }
    if (hh->npool < EASY_POOL_MAX) {
        curl_easy_reset(easy);
        hh->pool[hh->npool++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

/* Hand the answer to the worker and let go of the job. */
static void job_finish(sl_http_handler *hh, job *j, CURLcode rc, bool aborted)
{
    if (j->easy != NULL) {
        if (!aborted) {
            curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
        }
        curl_multi_remove_handle(hh->multi, j->easy);
        easy_recycle(hh, j->easy);
        j->easy = NULL;
    }
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->aborted = aborted;
    j->done = true;
    pthread_cond_signal(&j->cv);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        job_free(j);
    }
}

static void job_start(sl_http_handler *hh, job *j)
{
    CURL *e = hh->npool > 0 ? hh->pool[--hh->npool] : curl_easy_init();
    if (e == NULL) {
        snprintf(j->curl_error, sizeof j->curl_error,
                 "cannot create a curl handle");
        job_finish(hh, j, CURLE_OUT_OF_MEMORY, false);
        return;
    }
    size_t len = 0;
    const void *data = sl_event_data(j->ev, &len);
    j->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, hh->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, data != NULL ? data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)j->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->curl_error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_USERAGENT, hh->agent);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                     (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    CURLMcode mc = curl_multi_add_handle(hh->multi, e);
    if (mc != CURLM_OK) {
        snprintf(j->curl_error, sizeof j->curl_error, "%s",
                 curl_multi_strerror(mc));
        easy_recycle(hh, e);
        j->easy = NULL;
        job_finish(hh, j, CURLE_FAILED_INIT, false);
        return;
    }
    running_add(hh, j);
}

static void *io_main(void *arg)
{
    sl_http_handler *hh = arg;
    void *items[POP_BATCH];
    while (!atomic_load(&hh->stopping)) {
        size_t n;
        while ((n = sl_queue_pop_many(hh->q, items, POP_BATCH, 0)) > 0) {
            for (size_t i = 0; i < n; i++) {
                job_start(hh, items[i]);
            }
        }
        int still = 0;
        curl_multi_perform(hh->multi, &still);
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(hh->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            job *j = (job *)priv;
            CURLcode rc = msg->data.result;
            running_remove(hh, j);
            job_finish(hh, j, rc, false);
        }
        /* Sleeps until a socket is ready, a curl timer is due, or a worker
         * calls curl_multi_wakeup(); a wake-up that comes while not
         * polling makes the next poll return at once. */
        curl_multi_poll(hh->multi, NULL, 0, IDLE_POLL_MS, NULL);
    }
    /* Stopping: answer whatever is still running or queued. */
    while (hh->running != NULL) {
        job *j = hh->running;
        running_remove(hh, j);
        job_finish(hh, j, CURLE_ABORTED_BY_CALLBACK, true);
    }
    void *item;
    while (sl_queue_pop(hh->q, &item, 0) == SL_OK) {
        job_finish(hh, item, CURLE_ABORTED_BY_CALLBACK, true);
    }
    return NULL;
}

/* ---- slots --------------------------------------------------------------- */

/* Take a limiter slot, waiting up to @p wait_ms for one to come free. */
static bool slot_acquire(sl_http_handler *hh, uint64_t wait_ms)
{
    pthread_mutex_lock(&hh->slot_mu);
    bool ok = sl_limiter_try_acquire(hh->lim);
    if (!ok && wait_ms > 0) {
        struct timespec until;
        sl__deadline_after(&until, wait_ms);
        while (!ok && !atomic_load(&hh->stopping)) {
            int rc = pthread_cond_timedwait(&hh->slot_cv, &hh->slot_mu, &until);
            ok = sl_limiter_try_acquire(hh->lim);
            if (rc == ETIMEDOUT) {
                break;
            }
        }
    }
    pthread_mutex_unlock(&hh->slot_mu);
    return ok;
}

static void slot_release(sl_http_handler *hh, sl_limiter_outcome outcome,
                         uint64_t rtt_ms, uint64_t now_ms)
{
    pthread_mutex_lock(&hh->slot_mu);
    sl_limiter_release(hh->lim, outcome, rtt_ms, now_ms);
    /* The limit may have grown as well: wake every waiter to look. */
    pthread_cond_broadcast(&hh->slot_cv);
    pthread_mutex_unlock(&hh->slot_mu);
}

/* ---- one call --------------------------------------------------------------
 */

/* Printable, one-line copy of a body's start for the error text. */
static void snippet(const char *body, size_t len, char *out, size_t size)
{
    while (len > 0 &&
           (*body == ' ' || *body == '\r' || *body == '\n' || *body == '\t')) {
        body++;
        len--;
    }
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < size; i++) {
        unsigned char c = (unsigned char)body[i];
        out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
}

static void set_retry(sl__http_result *res, uint64_t delay_ms)
{
    res->outcome = SL_OUTCOME_RETRY;
    res->has_retry_after = true;
    res->retry_after_ms = delay_ms;
}

/* Turn a finished job into an outcome; decide what the breaker and the
 * limiter learn from it. */
static void judge(sl_http_handler *hh, job *j, uint64_t took_ms,
                  sl__http_result *res, bool *breaker_ok,
                  sl_limiter_outcome *lim_outcome)
{
    res->status = (int)j->status;
    if (j->aborted) {
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error,
                 "POST %s: handler shutting down", hh->url);
        *breaker_ok = true;
        *lim_outcome = SL_LIMITER_IGNORE;
        return;
    }
    if (j->rc == CURLE_OPERATION_TIMEDOUT) {
        atomic_fetch_add(&hh->timeouts, 1);
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error,
                 "POST %s: timed out after %" PRIu64 " ms", hh->url, took_ms);
        *breaker_ok = false;
        *lim_outcome = SL_LIMITER_DROPPED;
        return;
    }
    if (j->rc != CURLE_OK) {
        atomic_fetch_add(&hh->conn_errors, 1);
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error, "POST %s: %s", hh->url,
                 j->curl_error[0] ? j->curl_error : curl_easy_strerror(j->rc));
        *breaker_ok = false;
        *lim_outcome = SL_LIMITER_IGNORE;
        return;
    }
    long s = j->status;
    if (s >= 200 && s <= 299) {
        res->outcome = SL_OUTCOME_ACK;
        *breaker_ok = true;
        *lim_outcome = SL_LIMITER_SUCCESS;
        if (hh->reply_to != NULL && !j->body_cut) {
            /* Hand the answer to the caller, who publishes the reply. */
            res->reply = j->body;
            res->reply_len = j->body_len;
            j->body = NULL;
            j->body_len = j->body_cap = 0;
        } else if (hh->reply_to != NULL) {
            res->outcome = SL_OUTCOME_REJECT;
            snprintf(res->error, sizeof res->error,
                     "POST %s: answer longer than %d bytes: no reply", hh->url,
                     REPLY_MAX);
        }
        return;
    }
    char text[SNIPPET_MAX + 1];
    snippet(j->body, j->body_len, text, sizeof text);
    snprintf(res->error, sizeof res->error, "POST %s: HTTP %ld%s%s", hh->url, s,
             text[0] ? ": " : "", text);
    if (s == 408 || s == 429 || s == 503) {
        /* The target is alive and asks to come back later. 429 is about
         * the caller's rate, not the target's health: it does not count
         * against the breaker. */
        res->outcome = SL_OUTCOME_RETRY;
        uint64_t ms;
        if (j->has_retry_after &&
            sl__http_retry_after_parse(j->retry_after, sl_time_wall_ms(),
                                       &ms) == SL_OK) {
            set_retry(res, ms);
        }
        *breaker_ok = s == 429;
        *lim_outcome = SL_LIMITER_DROPPED;
    } else if (s >= 400 && s <= 499) {
        res->outcome = SL_OUTCOME_REJECT;
        *breaker_ok = true;
        *lim_outcome = SL_LIMITER_SUCCESS;
    } else {
        /* 5xx, and statuses a push target should not send (1xx, 3xx). */
        res->outcome = SL_OUTCOME_RETRY;
        *breaker_ok = false;
        *lim_outcome =
            s == 502 || s == 504 ? SL_LIMITER_DROPPED : SL_LIMITER_IGNORE;
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

void sl__http_handler_call(sl_http_handler *hh, const sl_event *ev,
                           uint64_t remaining_ms, sl__http_result *res)
{
    memset(res, 0, sizeof *res);
    uint64_t start = sl_time_mono_ms();
    uint64_t until = start + remaining_ms;

    if (remaining_ms == 0) {
        atomic_fetch_add(&hh->retried, 1);
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error,
                 "POST %s: no time left before the deadline", hh->url);
        return;
    }
    /* Fail fast while the breaker is open, before waiting for a slot. */
    if (sl_breaker_state_at(hh->brk, start) == SL_BREAKER_STATE_OPEN) {
        goto breaker_open;
    }
    if (!slot_acquire(hh, min_u64(hh->slot_wait_ms, remaining_ms))) {
        atomic_fetch_add(&hh->no_slot, 1);
        atomic_fetch_add(&hh->retried, 1);
        set_retry(res, hh->busy_retry_ms);
        snprintf(res->error, sizeof res->error,
                 "POST %s: concurrency limit %" PRIu32 " reached", hh->url,
                 sl_limiter_limit(hh->lim));
        return;
    }
    uint64_t now = sl_time_mono_ms();
    if (!sl_breaker_allow(hh->brk, now)) {
        slot_release(hh, SL_LIMITER_IGNORE, 0, now);
        goto breaker_open;
    }
    if (now >= until) {
        sl_breaker_cancel(hh->brk, now);
        slot_release(hh, SL_LIMITER_IGNORE, 0, now);
        atomic_fetch_add(&hh->retried, 1);
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error,
                 "POST %s: no time left before the deadline", hh->url);
        return;
    }

    sl_status st = SL_NOMEM;
    job *j = sl_calloc(1, sizeof *j);
    if (j != NULL) {
        pthread_mutex_init(&j->mu, NULL);
        sl__cond_init_mono(&j->cv);
        j->refs = 1;
        j->body_max = hh->reply_to != NULL ? REPLY_MAX : SNIPPET_MAX;
        j->ev = sl_event_ref((sl_event *)ev);
        j->timeout_ms = min_u64(hh->timeout_ms, until - now);
        j->connect_timeout_ms = min_u64(hh->connect_timeout_ms, j->timeout_ms);
        st = build_headers(hh, ev, &j->headers);
    }
    if (st == SL_OK) {
        j->refs = 2;
        st = sl_queue_push(hh->q, j, 0);
        if (st == SL_OK) {
            curl_multi_wakeup(hh->multi);
        } else {
            j->refs = 1;
        }
    }
    if (st != SL_OK) {
        if (j != NULL) {
            job_put(j);
        }
        sl_breaker_cancel(hh->brk, now);
        slot_release(hh, SL_LIMITER_IGNORE, 0, now);
        atomic_fetch_add(&hh->retried, 1);
        set_retry(res, hh->busy_retry_ms);
        snprintf(res->error, sizeof res->error, "POST %s: %s", hh->url,
                 sl_status_str(st));
        return;
    }
    atomic_fetch_add(&hh->requests, 1);
    res->sent = true;

    /* The I/O thread answers by the timeout; the grace only covers a
     * wedged I/O thread, so that this wait is bounded too. */
    struct timespec deadline;
    sl__deadline_after(&deadline, j->timeout_ms + WAIT_GRACE_MS);
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->cv, &j->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    bool done = j->done;
    pthread_mutex_unlock(&j->mu);

    uint64_t end = sl_time_mono_ms();
    uint64_t took = end - now;
    bool breaker_ok = false;
    sl_limiter_outcome lim_outcome = SL_LIMITER_DROPPED;
    if (done) {
        judge(hh, j, took, res, &breaker_ok, &lim_outcome);
    } else {
        atomic_fetch_add(&hh->timeouts, 1);
        res->outcome = SL_OUTCOME_RETRY;
        snprintf(res->error, sizeof res->error,
                 "POST %s: timed out after %" PRIu64 " ms (no answer from "
                 "the I/O thread)",
                 hh->url, took);
    }
    job_put(j);
    sl_breaker_record(hh->brk, breaker_ok, took, end);
    slot_release(hh, lim_outcome, took, end);
    switch (res->outcome) {
    case SL_OUTCOME_ACK:
        atomic_fetch_add(&hh->acked, 1);
        break;
    case SL_OUTCOME_RETRY:
        atomic_fetch_add(&hh->retried, 1);
        break;
    case SL_OUTCOME_REJECT:
        atomic_fetch_add(&hh->rejected, 1);
        break;
    }
    return;

breaker_open:
    atomic_fetch_add(&hh->breaker_refused, 1);
    atomic_fetch_add(&hh->retried, 1);
    now = sl_time_mono_ms();
    uint64_t wait = sl_breaker_retry_after_ms(hh->brk, now);
    /* Half-open with its probes out: come back shortly. */
    set_retry(res, wait > 0 ? wait : hh->busy_retry_ms);
    snprintf(res->error, sizeof res->error, "POST %s: circuit breaker open",
             hh->url);
}

/* Publish the target's answer as a child of the delivered event. */
static sl_outcome publish_reply(sl_http_handler *hh, sl_handler_ctx *ctx,
                                sl__http_result *res)
{
    sl_event *ev = NULL;
    sl_status st = sl_event_create_new(hh->url, hh->reply_type, &ev);
    if (st == SL_OK) {
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/json");
        if (res->reply_len > 0) {
            st = sl_event_set_data(ev, res->reply, res->reply_len);
        }
    }
    sl_diag diag = {0};
    if (st == SL_OK) {
        st = sl_handler_publish(ctx, hh->reply_to, ev, &diag);
    }
    sl_event_unref(ev);
    if (st != SL_OK) {
        sl_handler_set_error(ctx, "publishing the reply to %s: %s",
                             hh->reply_to,
                             diag.msg[0] ? diag.msg : sl_status_str(st));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

sl_outcome sl_http_handler_handle(sl_handler_ctx *ctx, void *user)
{
    sl_http_handler *hh = user;
    sl__http_result res;
    sl__http_handler_call(hh, sl_handler_event(ctx),
                          sl_handler_remaining_ms(ctx), &res);
    if (res.outcome == SL_OUTCOME_ACK && hh->reply_to != NULL) {
        sl_outcome o = publish_reply(hh, ctx, &res);
        sl_free(res.reply);
        return o;
    }
    sl_free(res.reply);
    if (res.error[0] != '\0') {
        sl_handler_set_error(ctx, "%s", res.error);
    }
    if (res.outcome == SL_OUTCOME_RETRY && res.has_retry_after) {
        sl_handler_retry_after(ctx, res.retry_after_ms);
    }
    return res.outcome;
}

/* ---- lifecycle ------------------------------------------------------------
 */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void on_breaker_change(sl_breaker_state from, sl_breaker_state to,
                              void *ctx)
{
    sl_http_handler *hh = ctx;
    sl_log_field f[] = {
        {"service", hh->service},
        {"url", hh->url},
        {"from", sl_breaker_state_str(from)},
        {"to", sl_breaker_state_str(to)},
    };
    sl_log_fields(to == SL_BREAKER_STATE_OPEN ? SL_LOG_WARN : SL_LOG_INFO,
                  "handler.http", "circuit breaker changed state", f,
                  sizeof f / sizeof f[0]);
}

static bool is_http_url(const char *url)
{
    return url != NULL && (strncasecmp(url, "http://", 7) == 0 ||
                           strncasecmp(url, "https://", 8) == 0);
}

sl_status sl__http_handler_check(const sl_http_handler_opts *opts,
                                 sl_diag *diag)
{
    if (opts == NULL) {
        return sl_diag_set(diag, SL_INVALID, "http handler: NULL argument");
    }
    if (!is_http_url(opts->url)) {
        return sl_diag_set(diag, SL_INVALID,
                           "http handler: url '%s' is not an http:// or "
                           "https:// URL",
                           opts->url ? opts->url : "");
    }
    for (size_t i = 0; i < opts->headers_len; i++) {
        const char *h = opts->headers[i];
        const char *colon = h != NULL ? strchr(h, ':') : NULL;
        if (colon == NULL || colon == h || strpbrk(h, "\r\n") != NULL) {
            return sl_diag_set(diag, SL_INVALID,
                               "http handler: header %zu is not one "
                               "'Name: value' line",
                               i);
        }
    }
    return SL_OK;
}

sl_status sl_http_handler_create(const sl_http_handler_opts *opts,
                                 sl_http_handler **out, sl_diag *diag)
{
    if (opts == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "http handler: NULL argument");
    }
    sl_status st = sl__http_handler_check(opts, diag);
    if (st != SL_OK) {
        return st;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        return sl_diag_set(diag, SL_INTERNAL, "http handler: libcurl: %s",
                           curl_easy_strerror(curl_init_rc));
    }

    sl_http_handler *hh = sl_calloc(1, sizeof *hh);
    if (hh == NULL) {
        return SL_NOMEM;
    }
    st = SL_NOMEM;
    pthread_mutex_init(&hh->slot_mu, NULL);
    sl__cond_init_mono(&hh->slot_cv);
    hh->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    hh->connect_timeout_ms = opts->connect_timeout_ms
                                 ? opts->connect_timeout_ms
                                 : DEFAULT_CONNECT_TIMEOUT_MS;
    hh->slot_wait_ms =
        opts->slot_wait_ms ? opts->slot_wait_ms : DEFAULT_SLOT_WAIT_MS;
    hh->busy_retry_ms =
        opts->busy_retry_ms ? opts->busy_retry_ms : DEFAULT_BUSY_RETRY_MS;
    hh->url = sl_strdup(opts->url);
    if (opts->reply_to != NULL) {
        hh->reply_to = sl_strdup(opts->reply_to);
        hh->reply_type =
            sl_strdup(opts->reply_type ? opts->reply_type : "http.response");
        if (hh->reply_to == NULL || hh->reply_type == NULL) {
            goto fail;
        }
    }
    hh->service = sl_strdup(opts->service ? opts->service : "sluice");
    char agent[160];
    if (opts->service != NULL) {
        snprintf(agent, sizeof agent, "%.100s (sluice)", opts->service);
    } else {
        snprintf(agent, sizeof agent, "sluice");
    }
    hh->agent = sl_strdup(agent);
    if (hh->url == NULL || hh->service == NULL || hh->agent == NULL) {
        goto fail;
    }
    if (opts->headers_len > 0) {
        hh->headers = sl_calloc(opts->headers_len, sizeof *hh->headers);
        if (hh->headers == NULL) {
            goto fail;
        }
        for (size_t i = 0; i < opts->headers_len; i++) {
            if ((hh->headers[i] = sl_strdup(opts->headers[i])) == NULL) {
                goto fail;
            }
            hh->headers_len++;
        }
    }

    uint32_t max =
        opts->max_concurrency ? opts->max_concurrency : DEFAULT_MAX_CONCURRENCY;
    sl_limiter_opts lo = {.kind = SL_LIMITER_FIXED, .limit = max};
    if (opts->adaptive) {
        lo = (sl_limiter_opts){.kind = SL_LIMITER_ADAPTIVE,
                               .limit = min_u64(ADAPTIVE_START, max),
                               .min_limit = 1,
                               .max_limit = max};
    }
    if ((st = sl_limiter_create(&lo, &hh->lim)) != SL_OK) {
        sl_diag_set(diag, st, "http handler: bad concurrency options");
        goto fail;
    }
    sl_breaker_opts bo = {.failure_threshold = opts->breaker_failures,
                          .open_ms = opts->breaker_open_ms,
                          .on_change = on_breaker_change,
                          .on_change_ctx = hh};
    if ((st = sl_breaker_create(&bo, &hh->brk)) != SL_OK) {
        goto fail;
    }
    /* Every queued job holds a slot, so the queue never fills. */
    sl_queue_opts qo = {.capacity = max, .overflow = SL_QUEUE_REJECT};
    if ((st = sl_queue_create(&qo, &hh->q)) != SL_OK) {
        goto fail;
    }
    st = SL_INTERNAL;
    if ((hh->multi = curl_multi_init()) == NULL) {
        sl_diag_set(diag, st, "http handler: curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(hh->multi, CURLMOPT_MAXCONNECTS, (long)max);
    if (pthread_create(&hh->io, NULL, io_main, hh) != 0) {
        sl_diag_set(diag, st, "http handler: cannot start the I/O thread");
        goto fail;
    }
    hh->io_started = true;
    *out = hh;
    return SL_OK;
fail:
    sl_http_handler_destroy(hh);
    return st;
}

void sl_http_handler_get_stats(sl_http_handler *hh, sl_http_handler_stats *out)
{
    uint64_t now = sl_time_mono_ms();
    *out = (sl_http_handler_stats){
        .requests = atomic_load(&hh->requests),
        .acked = atomic_load(&hh->acked),
        .retried = atomic_load(&hh->retried),
        .rejected = atomic_load(&hh->rejected),
        .timeouts = atomic_load(&hh->timeouts),
        .conn_errors = atomic_load(&hh->conn_errors),
        .breaker_refused = atomic_load(&hh->breaker_refused),
        .no_slot = atomic_load(&hh->no_slot),
        .in_flight = sl_limiter_in_flight(hh->lim),
        .limit = sl_limiter_limit(hh->lim),
        .breaker = sl_breaker_state_at(hh->brk, now),
    };
}

void sl_http_handler_destroy(sl_http_handler *hh)
{
    if (hh == NULL) {
        return;
    }
    atomic_store(&hh->stopping, true);
    pthread_mutex_lock(&hh->slot_mu);
    pthread_cond_broadcast(&hh->slot_cv);
    pthread_mutex_unlock(&hh->slot_mu);
    sl_queue_close(hh->q);
    if (hh->io_started) {
        curl_multi_wakeup(hh->multi);
        pthread_join(hh->io, NULL);
    }
    for (size_t i = 0; i < hh->npool; i++) {
        curl_easy_cleanup(hh->pool[i]);
    }
    if (hh->multi != NULL) {
        curl_multi_cleanup(hh->multi);
    }
    sl_queue_destroy(hh->q);
    sl_breaker_destroy(hh->brk);
    sl_limiter_destroy(hh->lim);
    for (size_t i = 0; i < hh->headers_len; i++) {
        sl_free(hh->headers[i]);
    }
    sl_free(hh->headers);
    sl_free(hh->url);
    sl_free(hh->reply_to);
    sl_free(hh->reply_type);
    sl_free(hh->service);
    sl_free(hh->agent);
    pthread_cond_destroy(&hh->slot_cv);
    pthread_mutex_destroy(&hh->slot_mu);
    sl_free(hh);
}

/* ---- the handler kind "http" ------------------------------------------ */

static void bound_fini(void *user)
{
    sl_http_handler_destroy(user);
}

sl_status sl__http_handler_bind(const sl_http_handler_opts *opts,
                                sl_bound_handler *out, sl_diag *diag)
{
    sl_http_handler *hh = NULL;
    sl_status st = sl_http_handler_create(opts, &hh, diag);
    if (st != SL_OK) {
        return st;
    }
    *out = (sl_bound_handler){
        .fn = sl_http_handler_handle, .user = hh, .fini = bound_fini};
    return SL_OK;
}
