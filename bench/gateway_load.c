/* Gateway benchmark helpers, driven by bench/gateway_bench.sh.
 *
 *   gateway_load paced --url URL --rate R --seconds S [--warmup S]
 *                      [--connections N] [--client epoll|curl]
 *   gateway_load raw [--seconds S]
 *
 * paced: an open-loop HTTP load generator (not the gateway's code). It
 * POSTs a valid order (the body of bench/wrk_orders.lua, a different
 * customer each time) at R requests/s on an absolute schedule: request i
 * is due at start + i / R, and a request that cannot go out on time (every
 * connection busy) goes out as soon as one frees, still timed from its due
 * time. Latency = answer received − due time, so a stalled server counts
 * against the figure instead of slowing the offered load down (no
 * coordinated omission; wrk cannot do this, wrk2 is not in Debian).
 * Answers in the first --warmup seconds are not counted. Prints one line
 * of key=value pairs: offered and answered counts, and p50/p99/max in
 * microseconds for accepted (2xx) answers and for refusals (429 and 503)
 * separately, and the generator's own CPU time per request (cpu_us_per_req).
 *
 * Two clients, the same schedule and measurement. epoll (the default): kept-
 * alive HTTP/1.1 connections on one epoll set, each request written whole
 * with one send and its answer read by Content-Length, like wrk; about
 * 8 us of CPU per request. curl: libcurl's multi interface, one easy handle
 * per connection; about 30 us per request, which at 20 000 requests/s is a
 * third of one of this machine's two cores taken from the service under
 * test.
 *
 * raw: the engine alone, for the gateway's overhead ratio. The same engine
 * as the gateway under test (embedded, SQLite sync=normal, in a temporary
 * directory), the same channel settings and consumer (prefetch 1000,
 * concurrency 1, ACK), and events shaped like the gateway's (the route's
 * source and type, datacontenttype, a traceparent, the same order JSON as
 * data), published with sl_producer_publish_async for S seconds. Prints
 * confirmed publishes per second (confirmed / (last confirm − first
 * publish)), which is what a 202 stands for.
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define ORDER_FMT                                                              \
    "{\"sku\":\"A-1\",\"qty\":1,\"amount\":9.5,\"customer\":\"c%llu\"}"
#define MAX_CONNECTIONS 1024
/* Shortest sleep of the paced loop; see run_paced. */
#define WAKE_GRAIN_NS 200000ull

static void usage(void)
{
    fprintf(stderr, "usage: gateway_load paced --url URL --rate R --seconds S "
                    "[--warmup S] [--connections N] [--client epoll|curl]\n"
                    "       gateway_load raw [--seconds S]\n");
    exit(2);
}

/* ---- paced ----------------------------------------------------------------
 */

/* Latencies of one class of answers, in ns. */
typedef struct lat_set {
    uint64_t *v;
    size_t n;
    size_t cap;
} lat_set;

static void lat_add(lat_set *s, uint64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            bench_die("out of memory");
        }
    }
    s->v[s->n++] = ns;
}

static void lat_print(const char *name, lat_set *s)
{
    qsort(s->v, s->n, sizeof *s->v, bench_cmp_u64);
    printf(" %s_n=%zu %s_p50_us=%.0f %s_p99_us=%.0f %s_max_us=%.0f", name, s->n,
           name, bench_percentile(s->v, s->n, 50) / 1e3, name,
           bench_percentile(s->v, s->n, 99) / 1e3, name,
           s->n ? s->v[s->n - 1] / 1e3 : 0.0);
}

/* The generator's own CPU time, user and system, in microseconds. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* What a paced run prints. */
typedef struct paced_result {
    double rate, seconds;
    uint64_t sent, answered, failed, late;
    lat_set *ok, *rej, *other;
} paced_result;

static double g_cpu_start_us;

static void print_result(const paced_result *r)
{
    /* Rates over the scheduled window: answers that arrived during the
     * drain belong to requests due within it. */
    double counted_s = r->seconds;
    double cpu = cpu_us() - g_cpu_start_us;
    printf("offered_per_s=%.0f sent=%llu answered=%llu errors=%llu "
           "late_1ms=%llu ok_per_s=%.0f rej_per_s=%.0f other=%zu "
           "cpu_us_per_req=%.1f",
           r->rate, (unsigned long long)r->sent,
           (unsigned long long)r->answered, (unsigned long long)r->failed,
           (unsigned long long)r->late, (double)r->ok->n / counted_s,
           (double)r->rej->n / counted_s, r->other->n,
           r->sent ? cpu / (double)r->sent : 0.0);
    lat_print("ok", r->ok);
    lat_print("rej", r->rej);
    printf("\n");
}

/* Record an answer received at @p t for a request due at @p due. */
static void record_answer(lat_set *ok, lat_set *rej, lat_set *other,
                          uint64_t count_from, uint64_t due, uint64_t t,
                          long code)
{
    if (due < count_from) {
        return;
    }
    uint64_t lat = t - due;
    if (code >= 200 && code < 300) {
        lat_add(ok, lat);
    } else if (code == 429 || code == 503) {
        lat_add(rej, lat);
    } else {
        lat_add(other, lat);
    }
}

typedef struct conn {
    CURL *easy;
    char body[160];
    uint64_t due_ns;
} conn;

/* Arm timerfd @p tfd (CLOCK_MONOTONIC, absolute) for @p due_ns, but at
 * least WAKE_GRAIN_NS from now. False, unarmed, when it is due already. */
static bool arm_due_timer(int tfd, uint64_t due_ns)
{
    uint64_t now = sl_time_mono_ns();
    if (due_ns <= now) {
        return false;
    }
    if (due_ns < now + WAKE_GRAIN_NS) {
        due_ns = now + WAKE_GRAIN_NS;
    }
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(due_ns / BENCH_NS_PER_S),
                     .tv_nsec = (long)(due_ns % BENCH_NS_PER_S)}};
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    return true;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *user)
{
    (void)ptr;
    (void)user;
    return size * nmemb;
}

static int run_paced_curl(const char *url, double rate, double seconds,
                          double warmup, unsigned nconn)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        bench_die("curl_global_init");
    }
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nconn);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)nconn);
    struct curl_slist *hdrs =
        curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");

    conn *conns = calloc(nconn, sizeof *conns);
    conn **idle = calloc(nconn, sizeof *idle);
    if (conns == NULL || idle == NULL) {
        bench_die("out of memory");
    }
    size_t nidle = 0;
    for (unsigned i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        c->easy = curl_easy_init();
        curl_easy_setopt(c->easy, CURLOPT_URL, url);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 30000L);
        idle[nidle++] = c;
    }

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        bench_die("timerfd_create: %s", strerror(errno));
    }
    double interval_ns = 1e9 / rate;
    uint64_t total = (uint64_t)((seconds + warmup) * rate);
    uint64_t start = sl_time_mono_ns() + 10000000ull;
    uint64_t count_from = start + (uint64_t)(warmup * 1e9);
    uint64_t next = 0; /* index of the next request due */
    uint64_t sent = 0, answered = 0, failed = 0, late = 0;
    lat_set ok = {0}, rej = {0}, other = {0};
    int running = 0;

    while (next < total || running > 0) {
        uint64_t now = sl_time_mono_ns();
        /* Start every request that is due, while connections are free. */
        while (next < total && nidle > 0) {
            uint64_t due = start + (uint64_t)((double)next * interval_ns);
            if (due > now) {
                break;
            }
            if (now - due > 1000000ull) {
                late++; /* went out more than 1 ms after its due time */
            }
            conn *c = idle[--nidle];
            c->due_ns = due;
            snprintf(c->body, sizeof c->body, ORDER_FMT,
                     (unsigned long long)next);
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
            curl_multi_add_handle(multi, c->easy);
            next++;
            sent++;
        }
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            uint64_t t = sl_time_mono_ns();
            conn *c = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            CURLcode res = m->data.result;
            curl_multi_remove_handle(multi, m->easy_handle);
            idle[nidle++] = c;
            answered++;
            if (res != CURLE_OK) {
                failed++;
                continue;
            }
            record_answer(&ok, &rej, &other, count_from, c->due_ns, t, code);
        }
        /* Sleep until the next due time (a timerfd: microsecond precision,
         * curl's own timeouts are in milliseconds) or socket activity, but
         * at least WAKE_GRAIN_NS: at high rates one wake-up sends the few
         * requests that fell due meanwhile instead of costing a timer and
         * a poll per request. The wait counts against the latency (which
         * is measured from the due time), so it can only make the figures
         * worse, by at most the grain. */
        struct curl_waitfd wfd = {.fd = tfd, .events = CURL_WAIT_POLLIN};
        unsigned nwfd = 0;
        int timeout_ms = 100;
        if (next < total && nidle > 0) {
            if (!arm_due_timer(
                    tfd, start + (uint64_t)((double)next * interval_ns))) {
                continue;
            }
            nwfd = 1;
        }
        curl_multi_poll(multi, nwfd ? &wfd : NULL, nwfd, timeout_ms, NULL);
        if (nwfd) {
            uint64_t expirations;
            ssize_t rd = read(tfd, &expirations, sizeof expirations);
            (void)rd;
        }
    }
    paced_result res = {
        .rate = rate,
        .seconds = seconds,
        .sent = sent,
        .answered = answered,
        .failed = failed,
        .late = late,
        .ok = &ok,
        .rej = &rej,
        .other = &other,
    };
    print_result(&res);

    for (unsigned i = 0; i < nconn; i++) {
        curl_easy_cleanup(conns[i].easy);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    close(tfd);
    free(conns);
    free(idle);
    free(ok.v);
    free(rej.v);
    free(other.v);
    return 0;
}

/* ---- paced, epoll client --------------------------------------------------
 *
 * Kept-alive HTTP/1.1 connections, one epoll set, level-triggered. A
 * request is formatted into its connection's buffer and sent with one
 * send(); the answer is read until its headers and Content-Length bytes of
 * body have arrived (the server under test always sends Content-Length).
 * A connection the server closes (or that fails) is reopened; a request
 * that was on it counts as an error. */

#define EP_BUF 16384
/* How long the run waits for the last answers after the schedule. */
#define EP_DRAIN_NS (30 * BENCH_NS_PER_S)

typedef struct ep_conn {
    int fd;
    bool busy;
    uint64_t due_ns;
    char out[512];
    size_t out_len, out_off;
    char in[EP_BUF];
    size_t in_len;
    long code;        /* of the answer being read; 0 until its headers */
    size_t body_need; /* bytes of body still to come */
    bool close_after; /* Connection: close */
} ep_conn;

typedef struct ep_target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[256];
    char path[512];
} ep_target;

static void ep_parse_url(const char *url, ep_target *t)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        bench_die("--url: only http:// URLs");
    }
    p += 7;
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof t->host) {
        bench_die("--url: bad host");
    }
    memcpy(t->host, p, hl);
    t->host[hl] = '\0';
    snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
    char host[256];
    const char *port = "80";
    snprintf(host, sizeof host, "%s", t->host);
    char *colon = strrchr(host, ':');
    if (colon != NULL && strchr(host, ']') < colon) {
        *colon = '\0';
        port = colon + 1;
    }
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(h, port, &hints, &res) != 0 || res == NULL) {
        bench_die("--url: cannot resolve %s", t->host);
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
}

static void ep_open(int ep, const ep_target *t, ep_conn *c)
{
    c->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        bench_die("socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A blocking connect: loopback, before the schedule starts (or after a
     * close, rarely). */
    if (connect(c->fd, (const struct sockaddr *)&t->addr, t->addr_len) != 0) {
        bench_die("connect %s: %s", t->host, strerror(errno));
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        bench_die("epoll_ctl: %s", strerror(errno));
    }
    c->busy = false;
    c->in_len = 0;
    c->code = 0;
    c->close_after = false;
}

static void ep_close(ep_conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
}

/* Send what is left of the request; false when the connection failed. */
static bool ep_send(int ep, ep_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                     .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return true;
        }
        if (w <= 0) {
            return false;
        }
        c->out_off += (size_t)w;
    }
    return true;
}

/* A header's value in [h, end), case-insensitive name; NULL if absent. */
static const char *ep_header(const char *h, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = h; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) {
            break;
        }
        if ((size_t)(eol - line) > n && strncasecmp(line, name, n) == 0 &&
            line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') {
                v++;
            }
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

/* The end of the headers (past the blank line) in @p buf, or NULL. */
static char *ep_headers_end(char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
            buf[i - 3] == '\r') {
            return buf + i + 1;
        }
    }
    return NULL;
}

/* Consume what arrived. Returns 1 when the answer is complete (code set),
 * 0 when more is needed, -1 when the connection failed or closed. */
static int ep_read(ep_conn *c)
{
    for (;;) {
        if (c->in_len == sizeof c->in) {
            if (c->code == 0) {
                return -1; /* headers larger than the buffer */
            }
            /* Body bytes past the buffer: only their count matters. */
            c->in_len = 0;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (r < 0 && errno == EAGAIN) {
            return 0;
        }
        if (r <= 0) {
            return -1;
        }
        size_t got = (size_t)r;
        c->in_len += got;
        if (c->code == 0) {
            char *end = ep_headers_end(c->in, c->in_len);
            if (end == NULL) {
                continue;
            }
            if (c->in_len < 12 || strncmp(c->in, "HTTP/1.", 7) != 0) {
                return -1;
            }
            c->code = strtol(c->in + 9, NULL, 10);
            const char *cl = ep_header(c->in, end, "Content-Length");
            const char *cn = ep_header(c->in, end, "Connection");
            c->close_after = cn != NULL && strncasecmp(cn, "close", 5) == 0;
            size_t need = cl ? (size_t)strtoull(cl, NULL, 10) : 0;
            size_t have = c->in_len - (size_t)(end - c->in);
            c->body_need = need > have ? need - have : 0;
            c->in_len = 0; /* one answer per request: nothing follows */
        } else {
            c->body_need = got < c->body_need ? c->body_need - got : 0;
            c->in_len = 0;
        }
        if (c->code != 0 && c->body_need == 0) {
            return 1;
        }
    }
}

static int run_paced_epoll(const char *url, double rate, double seconds,
                           double warmup, unsigned nconn)
{
    ep_target tgt;
    ep_parse_url(url, &tgt);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) {
        bench_die("epoll/timerfd: %s", strerror(errno));
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    ep_conn *conns = calloc(nconn, sizeof *conns);
    ep_conn **idle = calloc(nconn, sizeof *idle);
    struct epoll_event *evs = calloc(nconn + 1, sizeof *evs);
    if (conns == NULL || idle == NULL || evs == NULL) {
        bench_die("out of memory");
    }
    size_t nidle = 0;
    for (unsigned i = 0; i < nconn; i++) {
        ep_open(ep, &tgt, &conns[i]);
        idle[nidle++] = &conns[i];
    }

    double interval_ns = 1e9 / rate;
    uint64_t total = (uint64_t)((seconds + warmup) * rate);
    uint64_t start = sl_time_mono_ns() + 10000000ull;
    uint64_t count_from = start + (uint64_t)(warmup * 1e9);
    uint64_t give_up =
        start + (uint64_t)((seconds + warmup) * 1e9) + EP_DRAIN_NS;
    uint64_t next = 0;
    uint64_t sent = 0, answered = 0, failed = 0, late = 0;
    size_t running = 0;
    lat_set ok = {0}, rej = {0}, other = {0};
    char body[160];

    while (next < total || running > 0) {
        uint64_t now = sl_time_mono_ns();
        if (now > give_up) {
            failed += running; /* never answered */
            break;
        }
        while (next < total && nidle > 0) {
            uint64_t due = start + (uint64_t)((double)next * interval_ns);
            if (due > now) {
                break;
            }
            if (now - due > 1000000ull) {
                late++;
            }
            ep_conn *c = idle[--nidle];
            if (c->fd < 0) {
                ep_open(ep, &tgt, c);
            }
            int blen = snprintf(body, sizeof body, ORDER_FMT,
                                (unsigned long long)next);
            int olen = snprintf(c->out, sizeof c->out,
                                "POST %s HTTP/1.1\r\nHost: %s\r\n"
                                "Accept: */*\r\n"
                                "Content-Type: application/json\r\n"
                                "Content-Length: %d\r\n\r\n%s",
                                tgt.path, tgt.host, blen, body);
            c->out_len = (size_t)olen;
            c->out_off = 0;
            c->due_ns = due;
            c->busy = true;
            c->code = 0;
            c->in_len = 0;
            next++;
            sent++;
            running++;
            if (!ep_send(ep, c)) {
                ep_close(c);
                c->busy = false;
                running--;
                answered++;
                failed++;
                idle[nidle++] = c;
            }
        }
        /* Sleep until the next due time (timerfd, microsecond precision)
         * or socket activity, at least WAKE_GRAIN_NS, as the curl client
         * does. */
        int timeout_ms = 100;
        if (next < total && nidle > 0) {
            if (!arm_due_timer(
                    tfd, start + (uint64_t)((double)next * interval_ns))) {
                continue;
            }
            timeout_ms = -1;
        }
        int n = epoll_wait(ep, evs, (int)nconn + 1, timeout_ms);
        uint64_t t = sl_time_mono_ns();
        for (int i = 0; i < n; i++) {
            ep_conn *c = evs[i].data.ptr;
            if (c == NULL) {
                uint64_t expirations;
                ssize_t rd = read(tfd, &expirations, sizeof expirations);
                (void)rd;
                continue;
            }
            if (c->fd < 0) {
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && c->busy) {
                if (!ep_send(ep, c)) {
                    goto broken;
                }
                if (c->out_off == c->out_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                continue;
            }
            if (!c->busy) {
                /* The server closed an idle connection: reopen later. */
                ep_close(c);
                continue;
            }
            int rc = ep_read(c);
            if (rc == 0) {
                continue;
            }
            if (rc < 0) {
                goto broken;
            }
            record_answer(&ok, &rej, &other, count_from, c->due_ns, t, c->code);
            answered++;
            running--;
            c->busy = false;
            if (c->close_after) {
                ep_close(c);
            }
            idle[nidle++] = c;
            continue;
        broken:
            ep_close(c);
            c->busy = false;
            answered++;
            failed++;
            running--;
            idle[nidle++] = c;
        }
    }
    paced_result res = {
        .rate = rate,
        .seconds = seconds,
        .sent = sent,
        .answered = answered,
        .failed = failed,
        .late = late,
        .ok = &ok,
        .rej = &rej,
        .other = &other,
    };
    print_result(&res);
    for (unsigned i = 0; i < nconn; i++) {
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
        }
    }
    close(tfd);
    close(ep);
    free(conns);
    free(idle);
    free(evs);
    free(ok.v);
    free(rej.v);
    free(other.v);
    return 0;
}

/* ---- raw --------------------------------------------------------------------
 */

typedef struct raw_run {
    _Atomic uint64_t confirmed;
    _Atomic uint64_t last_confirm_ns;
    _Atomic uint64_t handled;
} raw_run;

static sl_outcome raw_handler(sl_handler_ctx *ctx, void *user)
{
    raw_run *run = user;
    (void)ctx;
    atomic_fetch_add_explicit(&run->handled, 1, memory_order_relaxed);
    return SL_OUTCOME_ACK;
}

static void raw_confirm(sl_status st, void *ctx)
{
    raw_run *run = ctx;
    if (st == SL_OK) {
        atomic_fetch_add_explicit(&run->confirmed, 1, memory_order_relaxed);
        atomic_store_explicit(&run->last_confirm_ns, sl_time_mono_ns(),
                              memory_order_relaxed);
    }
}

static int run_raw(double seconds)
{
    char dir[512], url[600];
    sl_diag diag = {0};
    bench_tmpdir_make(dir, sizeof dir);
    snprintf(url, sizeof url, "embedded:%s?sync=normal", dir);
    sl_engine *eng = NULL;
    bench_check(sl_engine_open(url, NULL, &eng, &diag), url, &diag);
    sl_channel_opts co = {.name = "orders.created", .max_length = 1000000};
    bench_check(sl_engine_declare_channel(eng, &co, &diag), "declare", &diag);
    raw_run run = {0};
    sl_consumer_opts cons = {
        .channel = "orders.created",
        .group = "sink",
        .prefetch = 1000,
        .concurrency = 1,
        .handler = raw_handler,
        .handler_ctx = &run,
        .service = "bench",
    };
    sl_consumer *c = NULL;
    bench_check(sl_consumer_create(eng, &cons, &c, &diag), "consumer", &diag);
    sl_producer_opts po = {.max_in_flight = 10000};
    sl_producer *prod = NULL;
    bench_check(sl_producer_create(eng, &po, &prod), "producer", NULL);
    bench_check(sl_consumer_start(c), "start consumer", NULL);

    uint64_t first = sl_time_mono_ns();
    uint64_t stop = first + (uint64_t)(seconds * 1e9);
    uint64_t refused = 0;
    for (uint64_t i = 0;; i++) {
        if ((i & 255) == 0 && sl_time_mono_ns() >= stop) {
            break;
        }
        char body[160], tp[56];
        int len = snprintf(body, sizeof body, ORDER_FMT, (unsigned long long)i);
        sl_event *ev = NULL;
        bench_check(sl_event_create_new("/orders", "order.created", &ev),
                    "event", NULL);
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/json");
        sl_traceparent_new(tp);
        sl_event_set(ev, SL_ATTR_TRACEPARENT, tp);
        sl_event_set_data(ev, body, (size_t)len);
        if (sl_producer_publish_async(prod, "orders.created", ev, raw_confirm,
                                      &run) != SL_OK) {
            refused++;
        }
        sl_event_unref(ev);
    }
    sl_producer_flush(prod, 30000);
    uint64_t n = atomic_load(&run.confirmed);
    uint64_t last = atomic_load(&run.last_confirm_ns);
    printf("raw_confirmed_per_s=%.0f raw_confirmed=%llu raw_refused=%llu\n",
           last > first ? (double)n / ((double)(last - first) / 1e9) : 0.0,
           (unsigned long long)n, (unsigned long long)refused);
    sl_consumer_stop(c, 5000);
    sl_consumer_destroy(c);
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    bench_tmpdir_remove(dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    const char *url = NULL;
    double rate = 0, seconds = 2, warmup = 0;
    unsigned nconn = 64;
    const char *client = "epoll";
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
        }
        if (strcmp(a, "--url") == 0) {
            url = v;
        } else if (strcmp(a, "--rate") == 0) {
            rate = atof(v);
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = atof(v);
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = atof(v);
        } else if (strcmp(a, "--connections") == 0) {
            nconn = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--client") == 0) {
            client = v;
        } else {
            usage();
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "paced") == 0) {
        if (url == NULL || rate <= 0 || seconds <= 0 || nconn == 0 ||
            nconn > MAX_CONNECTIONS) {
            usage();
        }
        g_cpu_start_us = cpu_us();
        if (strcmp(client, "curl") == 0) {
            return run_paced_curl(url, rate, seconds, warmup, nconn);
        }
        if (strcmp(client, "epoll") == 0) {
            return run_paced_epoll(url, rate, seconds, warmup, nconn);
        }
        usage();
    }
    if (strcmp(argv[1], "raw") == 0 && seconds > 0) {
        return run_raw(seconds);
    }
    usage();
}
