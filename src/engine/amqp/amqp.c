/* The RabbitMQ engine ("amqp://user:pass@host:port/vhost"), on
 * rabbitmq-c: its URL, open and close, and the driver table, the only
 * thing the rest of the library sees. amqp_int.h describes the mapping,
 * the threads and the locks. */
#include "engine/amqp/amqp_int.h"

#include "core/secret.h"
#include "core/waiter.h"
#include "sluice/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static void amqp_close(sl_engine *base);

/* A URL parameter's numeric value in [0, max]. */
static sl_status param_uint(const char *key, const char *val, uint64_t max,
                            uint64_t *out, sl_diag *diag)
{
    char *endp = NULL;
    errno = 0;
    unsigned long long v = strtoull(val, &endp, 10);
    if (val[0] == '\0' || val[0] == '-' || *endp != '\0' || errno != 0 ||
        v > max) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: %s must be a whole number from 0 to "
                           "%" PRIu64,
                           key, max);
    }
    *out = v;
    return SL_OK;
}

/* A file the engine reads (a certificate or a key) must be readable at
 * open, so that a wrong path fails start-up with its name. */
static sl_status param_file(const char *key, const char *val, char **out,
                            sl_diag *diag)
{
    if (val[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID, "engine URL: %s names no file",
                           key);
    }
    if (access(val, R_OK) != 0) {
        return sl_diag_set(diag, SL_CONFIG, "engine URL: %s file %s: %s", key,
                           val, strerror(errno));
    }
    sl_free(*out);
    return (*out = sl_strdup(val)) ? SL_OK : SL_NOMEM;
}

/* "amqp[s]://user:pass@host:port/vhost?ns=x&heartbeat=S&...":
 * docs/engines/rabbitmq.md lists the parameters. */
static sl_status parse_query(amqp_engine *e, const char *q, sl_diag *diag)
{
    const char *p = q;
    while (p != NULL && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        char kv[1024];
        if (len >= sizeof kv) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL parameter too long");
        }
        memcpy(kv, p, len);
        kv[len] = '\0';
        char *eq = strchr(kv, '=');
        const char *val = eq ? eq + 1 : "";
        if (eq) {
            *eq = '\0';
        }
        sl_status st = SL_OK;
        uint64_t n = 0;
        if (strcmp(kv, "ns") == 0 && val[0] != '\0') {
            for (const char *c = val; *c; c++) {
                if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
                    return sl_diag_set(diag, SL_INVALID,
                                       "engine URL: ns must be "
                                       "[A-Za-z0-9_-]");
                }
            }
            sl_free(e->ns);
            if ((e->ns = sl_strdup(val)) == NULL) {
                return SL_NOMEM;
            }
        } else if (strcmp(kv, "heartbeat") == 0) {
            st = param_uint(kv, val, 65535, &n, diag);
            e->heartbeat_s = (uint16_t)n;
        } else if (strcmp(kv, "user") == 0 && val[0] != '\0') {
            sl_free(e->user_ref);
            st = (e->user_ref = sl_strdup(val)) ? SL_OK : SL_NOMEM;
        } else if (strcmp(kv, "password") == 0) {
            /* Never a literal here: a query string is easily logged. */
            if (!sl__secret_is_ref(val)) {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: password takes env:NAME or "
                                   "file:PATH (a literal password goes in "
                                   "the URL's user info)");
            }
            sl_free(e->password_ref);
            st = (e->password_ref = sl_strdup(val)) ? SL_OK : SL_NOMEM;
        } else if (strcmp(kv, "cacert") == 0) {
            st = param_file(kv, val, &e->cacert, diag);
        } else if (strcmp(kv, "cert") == 0) {
            st = param_file(kv, val, &e->cert, diag);
        } else if (strcmp(kv, "key") == 0) {
            st = param_file(kv, val, &e->key, diag);
        } else if (strcmp(kv, "verify") == 0) {
            if (strcmp(val, "full") == 0) {
                e->verify = VERIFY_FULL;
            } else if (strcmp(val, "peer") == 0) {
                e->verify = VERIFY_PEER;
            } else if (strcmp(val, "none") == 0) {
                e->verify = VERIFY_NONE;
            } else {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: verify must be full, peer "
                                   "or none");
            }
            e->verify_set = true;
        } else {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL: unknown parameter '%s' "
                               "(expected ns, heartbeat, user, password, "
                               "cacert, cert, key or verify)",
                               kv);
        }
        if (st != SL_OK) {
            return st;
        }
        p += len + (amp ? 1 : 0);
    }
    return SL_OK;
}

/* True when the user info of @p server ("scheme://user:pass@...") has a
 * password. */
static bool url_has_password(const char *server)
{
    const char *auth = strstr(server, "://");
    const char *at = strrchr(server, '@');
    if (auth == NULL || at == NULL || at < auth) {
        return false;
    }
    const char *colon = strchr(auth + 3, ':');
    return colon != NULL && colon < at;
}

/* Everything amqp_open reads from the URL (parameters, host, TLS files),
 * without connecting: shared by amqp_open and the parse-only check. The
 * URL without its query goes to *server_out. */
static sl_status parse_engine_url(amqp_engine *e, const char *url,
                                  char **server_out, sl_diag *diag)
{
    sl_status st = SL_NOMEM;
    const char *q = strchr(url, '?');
    char *server = q ? sl_strndup(url, (size_t)(q - url)) : sl_strdup(url);
    if (server == NULL) {
        goto fail;
    }
    if ((st = parse_query(e, q ? q + 1 : NULL, diag)) != SL_OK) {
        goto fail;
    }
    /* amqp_parse_url cuts its argument up: parse a copy. */
    char *parsed = sl_strdup(server);
    if (parsed == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(parsed, &ci) != AMQP_STATUS_OK) {
        st = sl_diag_set(diag, SL_INVALID,
                         "bad AMQP URL (expected "
                         "amqp[s]://user:pass@host:port/vhost)");
        sl_free(parsed);
        goto fail;
    }
    e->tls = ci.ssl;
    if (e->password_ref != NULL && url_has_password(server)) {
        st = sl_diag_set(diag, SL_INVALID,
                         "engine URL: a password in the user info and "
                         "password= both given");
        sl_free(parsed);
        goto fail;
    }
    e->host = sl_strdup(ci.host);
    sl_free(parsed);
    if (e->host == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    if ((st = sl__amqp_check_tls_params(e, diag)) != SL_OK) {
        goto fail;
    }
    *server_out = server;
    return SL_OK;
fail:
    sl_free(server);
    return st;
}

/* Parse-only check of an engine URL (sl_engine_check_url). */
static sl_status amqp_check_url(const char *url, sl_diag *diag)
{
    amqp_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->wake[0] = e->wake[1] = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    sl__cond_init_mono(&e->wd_cv);
    char *server = NULL;
    sl_status st = parse_engine_url(e, url, &server, diag);
    sl_free(server);
    amqp_close(&e->base);
    return st;
}

static sl_status amqp_open(const char *url, const sl_engine_opts *opts,
                           sl_engine **out, sl_diag *diag)
{
    amqp_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__amqp_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->wake[0] = e->wake[1] = -1;
    e->io_fd = -1;
    e->heartbeat_s = DEFAULT_HEARTBEAT_S;
    e->next_ch = FIRST_SUB_CH;
    /* Message uids tell apart the messages of a queue that every process
     * publishes to: seeded from the kernel, not from values (time, pid)
     * that two containers started together share. */
    if (getrandom(&e->uid_state, sizeof e->uid_state, 0) !=
        (ssize_t)sizeof e->uid_state) {
        e->uid_state = (sl_time_mono_ms() << 20) ^ ((uint64_t)getpid() << 1) ^
                       (uint64_t)(uintptr_t)e ^ sl_time_wall_ms();
    }
    if (e->uid_state == 0) {
        e->uid_state = 88172645463325252ULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    sl__cond_init_mono(&e->wd_cv);
    char *server = NULL;
    sl_status st = parse_engine_url(e, url, &server, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if ((st = sl__dedup_create(DEDUP_MAX_IDS,
                               opts->dedup_window_ms ? opts->dedup_window_ms
                                                     : DEFAULT_DEDUP_WINDOW_MS,
                               &e->dedup)) != SL_OK) {
        goto fail;
    }
    sl_queue_opts qo = {.capacity = REQ_CAPACITY, .overflow = SL_QUEUE_BLOCK};
    if ((st = sl_queue_create(&qo, &e->reqs)) != SL_OK) {
        goto fail;
    }
    if (pipe(e->wake) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(e->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(e->wake[1], F_SETFL, O_NONBLOCK);
    fcntl(e->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(e->wake[1], F_SETFD, FD_CLOEXEC);
    e->server = server;
    server = NULL;
    e->rng = e->uid_state | 1;
    if ((st = sl__amqp_connect_once(e, diag)) != SL_OK) {
        goto fail;
    }
    if (pthread_create(&e->wd_thread, NULL, sl__amqp_watchdog_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start the watchdog");
        goto fail;
    }
    e->wd_started = true;
    if (pthread_create(&e->io_thread, NULL, sl__amqp_io_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start the I/O thread");
        goto fail;
    }
    e->io_started = true;
    *out = &e->base;
    return SL_OK;
fail:
    sl_free(server);
    amqp_close(&e->base);
    return st;
}

static void amqp_close(sl_engine *base)
{
    amqp_engine *e = (amqp_engine *)base;
    if (e->io_started) {
        /* Publishers wait for outstanding confirms (bounded). */
        pthread_mutex_lock(&e->mu);
        e->stop_by_ms = sl_time_mono_ms() + API_WAIT_MS;
        e->stopping = true;
        pthread_mutex_unlock(&e->mu);
        sl__amqp_wake_io(e);
        pthread_join(e->io_thread, NULL);
    }
    if (e->wd_started) {
        pthread_mutex_lock(&e->mu);
        e->wd_stop = true;
        pthread_cond_broadcast(&e->wd_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->wd_thread, NULL);
    }
    if (e->conn != NULL) {
        /* Still connected (the I/O thread drops a lost connection). */
        amqp_connection_close(e->conn, AMQP_REPLY_SUCCESS);
        sl__amqp_destroy_conn(e, e->conn);
        e->conn = NULL;
    }
    if (e->reqs != NULL) {
        void *item;
        while (sl_queue_pop(e->reqs, &item, 0) == SL_OK) {
            sl__amqp_fail_req(e, item);
        }
        sl_queue_destroy(e->reqs);
    }
    if (e->wake[0] >= 0) {
        close(e->wake[0]);
        close(e->wake[1]);
    }
    for (achan *c = e->chans, *next; c; c = next) {
        next = c->next;
        sl_free(c->name);
        sl_free(c->exchange);
        sl_free(c);
    }
    for (agroup *g = e->groups, *next; g; g = next) {
        next = g->next;
        sl_free(g->queue);
        sl_free(g->channel);
        sl_free(g);
    }
    for (aqueue *q = e->queues, *next; q; q = next) {
        next = q->next;
        sl_free(q->queue);
        sl_free(q->exchange);
        sl_free(q->dlx);
        sl_free(q);
    }
    sl__dedup_destroy(e->dedup);
    sl_free(e->ns);
    sl_free(e->host);
    sl_free(e->server);
    sl_free(e->user_ref);
    sl_free(e->password_ref);
    sl_free(e->cacert);
    sl_free(e->cert);
    sl_free(e->key);
    pthread_cond_destroy(&e->wd_cv);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

const sl_driver sl__amqp_driver = {
    .name = "rabbitmq",
    .scheme = "amqp", /* amqp:// and amqps:// */
    .check_url = amqp_check_url,
    .open = amqp_open,
    .close = amqp_close,
    .is_ready = sl__amqp_is_ready,
    .declare_channel = sl__amqp_declare_channel,
    .declare_group = sl__amqp_declare_group,
    .publish = sl__amqp_publish,
    .subscribe = sl__amqp_subscribe,
    .fetch = sl__amqp_fetch,
    .interrupt = sl__amqp_interrupt,
    .in_flight = sl__amqp_in_flight,
    .unsubscribe = sl__amqp_unsubscribe,
    .settle = sl__amqp_settle,
    .ack_many = sl__amqp_ack_many,
    .depth = sl__amqp_depth,
    .browse = sl__amqp_browse,
};
