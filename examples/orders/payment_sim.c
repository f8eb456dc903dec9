/* payment-sim — a small payment provider for the orders example and its
 * tests.
 *
 *   payment-sim --listen 127.0.0.1:8090 --latency-ms 20 --failure-rate 0.05
 *               --seed 1
 *
 *   POST /charges   Idempotency-Key: <key>, body {"order_id": "...",
 *                   "amount": <number>}. After the latency it fails with
 *                   503 + Retry-After: 1 at the failure rate (nothing is
 *                   charged), else charges once and answers 201
 *                   {"charge_id", "order_id", "amount"}. The same key again
 *                   returns the same charge (201, Idempotent-Replayed: true)
 *                   without charging; the same key with another order or
 *                   amount is 422. No key, bad JSON or wrong types: 400.
 *   GET /stats      {"charges", "duplicates_absorbed", "keys",
 *                   "max_charges_per_key", "max_charges_per_order",
 *                   "failures_injected", "requests"}: "none charged twice"
 *                   is max_charges_per_order <= 1 (a key is charged once by
 *                   construction; an order charged under two keys is what
 *                   a client bug would look like).
 *
 * Port 0 picks a free port; the first line on stdout names the address.
 * SIGTERM or SIGINT stops it with exit status 0. With --exit-with-parent
 * it stops when the process that started it exits (examples/orders/run.sh
 * starts it, then becomes `sluice run`), and leaves SIGINT to that process:
 * a Ctrl-C drains sluice while the simulator still answers. Failures are
 * drawn from a PRNG seeded with --seed, so a run is reproducible for a
 * given order of requests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (64 * 1024)
#define BUCKETS (1u << 16)
#define MAX_CONNECTIONS 1000

typedef struct charge {
    struct charge *next;
    char *key;
    char *order_id;
    double amount;
    char charge_id[32];
    unsigned charges; /* times this key was charged: must stay 1 */
} charge;

/* Charges per order, whatever the key: catches a second key for one order. */
typedef struct order_count {
    struct order_count *next;
    char *order_id;
    unsigned charges;
} order_count;

typedef struct sim {
    uint64_t latency_ms;
    double failure_rate;
    double decline_rate; /* permanent 402s, decided per order */
    uint64_t seed;
    uint64_t max_keys;
    pthread_mutex_t mu;
    uint64_t rng; /* splitmix64 state */
    charge *buckets[BUCKETS];
    uint64_t charges, duplicates, keys, failures, requests, declines;
    unsigned max_charges_per_key;
    unsigned max_charges_per_order;
    order_count *orders[BUCKETS];
} sim;

typedef struct request {
    char *body;
    size_t len;
    bool too_large;
} request;

/* ---- helpers ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
                              const char *json, const char *retry_after,
                              bool replayed)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (retry_after != NULL) {
        MHD_add_response_header(resp, "Retry-After", retry_after);
    }
    if (replayed) {
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    }
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result error(struct MHD_Connection *conn, unsigned status,
                             const char *msg)
{
    char *json = NULL;
    json_t *o = json_pack("{s:s}", "error", msg);
    if (o != NULL) {
        json = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    enum MHD_Result r = answer(conn, status, json ? json : "{}", NULL, false);
    free(json);
    return r;
}

static enum MHD_Result charge_answer(struct MHD_Connection *conn,
                                     const charge *ch, bool replayed)
{
    json_t *o = json_pack("{s:s, s:s, s:f}", "charge_id", ch->charge_id,
                          "order_id", ch->order_id, "amount", ch->amount);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (json == NULL) {
        return error(conn, 500, "out of memory");
    }
    enum MHD_Result r = answer(conn, 201, json, NULL, replayed);
    free(json);
    return r;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- routes ------------------------------------------------------------- */

static enum MHD_Result post_charge(sim *s, struct MHD_Connection *conn,
                                   const request *rq)
{
    const char *key =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    if (rq->too_large) {
        return error(conn, 413, "body too large");
    }
    if (key == NULL || key[0] == '\0' || strlen(key) > 255) {
        return error(conn, 400, "an Idempotency-Key header is required");
    }
    json_error_t jerr;
    json_t *body = json_loadb(rq->body ? rq->body : "", rq->len, 0, &jerr);
    json_t *order = json_object_get(body, "order_id");
    json_t *amount = json_object_get(body, "amount");
    if (!json_is_object(body) || !json_is_string(order) ||
        json_string_length(order) == 0 || !json_is_number(amount) ||
        json_number_value(amount) < 0) {
        json_decref(body);
        return error(conn, 400,
                     "the body must be {\"order_id\": string, \"amount\": "
                     "number >= 0}");
    }
    const char *order_id = json_string_value(order);
    double value = json_number_value(amount);

    sleep_ms(s->latency_ms);

    /* A decline is a property of the order (the card), not of the attempt:
     * the same order is declined every time. */
    uint64_t oh = (uint64_t)hash(order_id) ^ (s->seed * 0x9e3779b97f4a7c15ull);
    double order_draw = (double)(splitmix64(&oh) >> 11) * 0x1.0p-53;
    if (order_draw < s->decline_rate) {
        pthread_mutex_lock(&s->mu);
        s->requests++;
        s->declines++;
        pthread_mutex_unlock(&s->mu);
        json_decref(body);
        return answer(conn, 402, "{\"error\":\"card declined\"}", NULL, false);
    }

    pthread_mutex_lock(&s->mu);
    s->requests++;
    double draw = (double)(splitmix64(&s->rng) >> 11) * 0x1.0p-53;
    if (draw < s->failure_rate) {
        s->failures++;
        pthread_mutex_unlock(&s->mu);
        json_decref(body);
        return answer(conn, 503,
                      "{\"error\":\"provider temporarily unavailable\"}", "1",
                      false);
    }
    uint32_t b = hash(key) & (BUCKETS - 1);
    charge *ch = s->buckets[b];
    while (ch != NULL && strcmp(ch->key, key) != 0) {
        ch = ch->next;
    }
    if (ch != NULL) {
        bool same = strcmp(ch->order_id, order_id) == 0 && ch->amount == value;
        enum MHD_Result r;
        if (same) {
            s->duplicates++;
            charge copy = *ch;
            pthread_mutex_unlock(&s->mu);
            r = charge_answer(conn, &copy, true);
        } else {
            pthread_mutex_unlock(&s->mu);
            r = error(conn, 422,
                      "Idempotency-Key reused with a different request");
        }
        json_decref(body);
        return r;
    }
    if (s->keys >= s->max_keys) {
        pthread_mutex_unlock(&s->mu);
        json_decref(body);
        return error(conn, 507, "too many idempotency keys");
    }
    ch = calloc(1, sizeof *ch);
    if (ch == NULL || (ch->key = strdup(key)) == NULL ||
        (ch->order_id = strdup(order_id)) == NULL) {
        if (ch != NULL) {
            free(ch->key);
        }
        free(ch);
        pthread_mutex_unlock(&s->mu);
        json_decref(body);
        return error(conn, 500, "out of memory");
    }
    ch->amount = value;
    snprintf(ch->charge_id, sizeof ch->charge_id, "ch_%08" PRIu64,
             s->charges + 1);
    ch->charges = 1;
    ch->next = s->buckets[b];
    s->buckets[b] = ch;
    s->charges++;
    s->keys++;
    if (ch->charges > s->max_charges_per_key) {
        s->max_charges_per_key = ch->charges;
    }
    uint32_t ob = hash(order_id) & (BUCKETS - 1);
    order_count *oc = s->orders[ob];
    while (oc != NULL && strcmp(oc->order_id, order_id) != 0) {
        oc = oc->next;
    }
    if (oc == NULL && (oc = calloc(1, sizeof *oc)) != NULL &&
        (oc->order_id = strdup(order_id)) != NULL) {
        oc->next = s->orders[ob];
        s->orders[ob] = oc;
    }
    if (oc != NULL && oc->order_id != NULL &&
        ++oc->charges > s->max_charges_per_order) {
        s->max_charges_per_order = oc->charges;
    }
    charge copy = *ch;
    pthread_mutex_unlock(&s->mu);
    json_decref(body);
    return charge_answer(conn, &copy, false);
}

static enum MHD_Result get_stats(sim *s, struct MHD_Connection *conn)
{
    pthread_mutex_lock(&s->mu);
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "max_charges_per_order",
        (json_int_t)s->max_charges_per_order, "declines",
        (json_int_t)s->declines, "charges", (json_int_t)s->charges,
        "duplicates_absorbed", (json_int_t)s->duplicates, "keys",
        (json_int_t)s->keys, "max_charges_per_key",
        (json_int_t)s->max_charges_per_key, "failures_injected",
        (json_int_t)s->failures, "requests", (json_int_t)s->requests);
    pthread_mutex_unlock(&s->mu);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (json == NULL) {
        return error(conn, 500, "out of memory");
    }
    enum MHD_Result r = answer(conn, 200, json, NULL, false);
    free(json);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    sim *s = cls;
    request *rq = *con_cls;
    if (rq == NULL) {
        rq = calloc(1, sizeof *rq);
        if (rq == NULL) {
            return MHD_NO;
        }
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        if (rq->len + n > MAX_BODY) {
            rq->too_large = true;
        } else {
            char *p = realloc(rq->body, rq->len + n + 1);
            if (p == NULL) {
                return MHD_NO;
            }
            memcpy(p + rq->len, upload_data, n);
            rq->body = p;
            rq->len += n;
            rq->body[rq->len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/charges") == 0) {
        if (strcmp(method, "POST") != 0) {
            return error(conn, 405, "use POST");
        }
        return post_charge(s, conn, rq);
    }
    if (strcmp(url, "/stats") == 0) {
        if (strcmp(method, "GET") != 0) {
            return error(conn, 405, "use GET");
        }
        return get_stats(s, conn);
    }
    if (strcmp(url, "/healthz") == 0) {
        return answer(conn, 200, "{\"status\":\"ok\"}", NULL, false);
    }
    return error(conn, 404, "no such route");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request *rq = *con_cls;
    if (rq != NULL) {
        free(rq->body);
        free(rq);
    }
    *con_cls = NULL;
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: payment-sim [--listen HOST:PORT] [--latency-ms N]\n"
            "                   [--failure-rate F] [--decline-rate D] "
            "[--seed S] [--max-keys N]\n"
            "                   [--exit-with-parent]\n"
            "\n"
            "A payment provider simulator: POST /charges with an\n"
            "Idempotency-Key and {\"order_id\", \"amount\"}; GET /stats.\n"
            "  --listen        address to bind (default 127.0.0.1:8090;\n"
            "                  port 0 picks one and prints it)\n"
            "  --latency-ms    delay before every charge answer (default 0)\n"
            "  --failure-rate  share of charges answered 503 (default 0)\n"
            "  --decline-rate  share of orders declined with 402, every\n"
            "                  time they are tried (default 0)\n"
            "  --seed          PRNG seed for the failures (default 1)\n"
            "  --max-keys      idempotency keys kept (default 1000000)\n"
            "  --exit-with-parent  stop when the parent process exits;\n"
            "                  SIGINT is left to the parent\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_listen(const char *s, struct sockaddr_in *sa)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    uint64_t port;
    if (colon == NULL || (size_t)(colon - s) >= sizeof host ||
        !parse_u64(colon + 1, &port) || port > 65535) {
        return false;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) == 1;
}

int main(int argc, char **argv)
{
    static sim s;
    const char *listen = "127.0.0.1:8090";
    uint64_t seed = 1;
    bool with_parent = false;
    s.max_keys = 1000000;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--exit-with-parent") == 0) {
            with_parent = true;
            i--; /* takes no value */
            ok = true;
        } else if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--latency-ms") == 0) {
            ok = ok && parse_u64(v, &s.latency_ms) && s.latency_ms <= 600000;
        } else if (strcmp(a, "--seed") == 0) {
            ok = ok && parse_u64(v, &seed);
        } else if (strcmp(a, "--max-keys") == 0) {
            ok = ok && parse_u64(v, &s.max_keys);
        } else if (strcmp(a, "--decline-rate") == 0) {
            char *end = NULL;
            s.decline_rate = ok ? strtod(v, &end) : 0;
            ok = ok && end != v && *end == '\0' && s.decline_rate >= 0 &&
                 s.decline_rate <= 1;
        } else if (strcmp(a, "--failure-rate") == 0) {
            char *end = NULL;
            s.failure_rate = ok ? strtod(v, &end) : 0;
            ok = ok && end != v && *end == '\0' && s.failure_rate >= 0 &&
                 s.failure_rate <= 1;
        } else {
            fprintf(stderr, "payment-sim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "payment-sim: bad or missing value for %s\n", a);
            return 2;
        }
    }
    struct sockaddr_in sa;
    if (!parse_listen(listen, &sa)) {
        fprintf(stderr, "payment-sim: --listen wants IPv4:PORT, not '%s'\n",
                listen);
        return 2;
    }
    pthread_mutex_init(&s.mu, NULL);
    s.rng = seed;
    s.seed = seed;

    /* Signals are taken by sigwait below; every thread started from here
     * on inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    if (with_parent) {
        /* A Ctrl-C reaches the whole foreground process group: the parent
         * drains on it and needs the simulator until it exits. Its exit
         * sends SIGTERM here; one that exits before the prctl took effect
         * shows as a changed parent. */
        pid_t parent = getppid();
        signal(SIGINT, SIG_IGN);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
            fprintf(stderr, "payment-sim: the parent process is gone\n");
            return 1;
        }
    } else {
        sigaddset(&sigs, SIGINT);
    }
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
        NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "payment-sim: cannot listen on %s\n", listen);
        return 1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    printf("payment-sim listening on %s:%u\n", host,
           (unsigned)(info ? info->port : ntohs(sa.sin_port)));
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    MHD_stop_daemon(d);
    fprintf(stderr,
            "payment-sim: stopped: %" PRIu64 " charges, %" PRIu64
            " duplicates absorbed, %" PRIu64 " failures injected\n",
            s.charges, s.duplicates, s.failures);
    for (size_t b = 0; b < BUCKETS; b++) {
        for (charge *ch = s.buckets[b], *next; ch != NULL; ch = next) {
            next = ch->next;
            free(ch->key);
            free(ch->order_id);
            free(ch);
        }
        for (order_count *oc = s.orders[b], *next; oc != NULL; oc = next) {
            next = oc->next;
            free(oc->order_id);
            free(oc);
        }
    }
    pthread_mutex_destroy(&s.mu);
    return 0;
}
