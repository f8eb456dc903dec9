/* The RabbitMQ engine ("amqp://user:pass@host:port/vhost"), on
 * rabbitmq-c: its URL, open and close, and the driver table, the only
 * thing the rest of the library sees. amqp_int.h describes the mapping,
 * the threads and the locks. */
#include "engine/amqp/amqp_int.h"

#include "core/secret.h"
#include "core/waiter.h"
#include "engine/url_params.h"
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

/* A file the engine reads (a certificate or a key) must be readable at
 * open, so that a wrong path fails start-up with its name. */
static sl_status set_file(char **field, const sl_url_param *param,
                          const char *val, sl_diag *diag)
{
    if (val[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID, "engine URL: %s names no file",
                           param->name);
    }
    if (access(val, R_OK) != 0) {
        return sl_diag_set(diag, SL_CONFIG, "engine URL: %s file %s: %s",
                           param->name, val, strerror(errno));
    }
    sl_free(*field);
    return (*field = sl_strdup(val)) ? SL_OK : SL_NOMEM;
}

static sl_status set_cacert(void *dst, const sl_url_param *param,
                            const sl_url_value *v, sl_diag *diag)
{
    return set_file(&((amqp_engine *)dst)->cacert, param, v->s, diag);
}

static sl_status set_cert(void *dst, const sl_url_param *param,
                          const sl_url_value *v, sl_diag *diag)
{
    return set_file(&((amqp_engine *)dst)->cert, param, v->s, diag);
}

static sl_status set_key(void *dst, const sl_url_param *param,
                         const sl_url_value *v, sl_diag *diag)
{
    return set_file(&((amqp_engine *)dst)->key, param, v->s, diag);
}

/* ns: the prefix of every exchange and queue name; empty is none. */
static sl_status set_ns(void *dst, const sl_url_param *param,
                        const sl_url_value *v, sl_diag *diag)
{
    amqp_engine *e = dst;
    (void)param;
    if (v->s[0] == '\0') {
        return SL_OK;
    }
    for (const char *c = v->s; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL: ns must be [A-Za-z0-9_-]");
        }
    }
    sl_free(e->ns);
    return (e->ns = sl_strdup(v->s)) ? SL_OK : SL_NOMEM;
}

static sl_status set_heartbeat(void *dst, const sl_url_param *param,
                               const sl_url_value *v, sl_diag *diag)
{
    (void)param;
    (void)diag;
    ((amqp_engine *)dst)->heartbeat_s = (uint16_t)v->u;
    return SL_OK;
}

/* user: a secret reference (env:NAME, file:PATH) or a name; empty is
 * none. */
static sl_status set_user(void *dst, const sl_url_param *param,
                          const sl_url_value *v, sl_diag *diag)
{
    amqp_engine *e = dst;
    (void)param;
    (void)diag;
    if (v->s[0] == '\0') {
        return SL_OK;
    }
    sl_free(e->user_ref);
    return (e->user_ref = sl_strdup(v->s)) ? SL_OK : SL_NOMEM;
}

/* password: never a literal here, a query string is easily logged. */
static sl_status set_password(void *dst, const sl_url_param *param,
                              const sl_url_value *v, sl_diag *diag)
{
    amqp_engine *e = dst;
    (void)param;
    if (!sl__secret_is_ref(v->s)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: password takes env:NAME or "
                           "file:PATH (a literal password goes in the URL's "
                           "user info)");
    }
    sl_free(e->password_ref);
    return (e->password_ref = sl_strdup(v->s)) ? SL_OK : SL_NOMEM;
}

static const sl_url_enum verify_values[] = {{"full", VERIFY_FULL},
                                            {"peer", VERIFY_PEER},
                                            {"none", VERIFY_NONE},
                                            {NULL, 0}};

static sl_status set_verify(void *dst, const sl_url_param *param,
                            const sl_url_value *v, sl_diag *diag)
{
    amqp_engine *e = dst;
    (void)param;
    (void)diag;
    e->verify = v->e;
    e->verify_set = true;
    return SL_OK;
}

/* "amqp[s]://user:pass@host:port/vhost?ns=x&heartbeat=S&...":
 * docs/engines/rabbitmq.md lists the parameters. */
static const sl_url_param amqp_url_params[] = {
    SL_URL_CUSTOM("ns", SL_URL_PARAM_STRING, set_ns,
                  "prefix of every exchange and queue name ([A-Za-z0-9_-])"),
    SL_URL_CUSTOM_RANGE("heartbeat", SL_URL_PARAM_UINT, 0, 65535, set_heartbeat,
                        "AMQP heartbeat in seconds (0: none; default 10)"),
    SL_URL_CUSTOM("user", SL_URL_PARAM_STRING, set_user,
                  "user name, or env:NAME / file:PATH"),
    SL_URL_CUSTOM_SECRET("password", set_password,
                         "password as env:NAME or file:PATH"),
    SL_URL_CUSTOM("cacert", SL_URL_PARAM_STRING, set_cacert,
                  "CA bundle (PEM) that signs the broker's certificate"),
    SL_URL_CUSTOM("cert", SL_URL_PARAM_STRING, set_cert,
                  "client certificate (PEM), with key="),
    SL_URL_CUSTOM("key", SL_URL_PARAM_STRING, set_key,
                  "client certificate's private key (PEM)"),
    {.name = "verify",
     .kind = SL_URL_PARAM_ENUM,
     .values = verify_values,
     .set = set_verify,
     .doc = "TLS verification: full, peer or none"},
};

static sl_status parse_query(amqp_engine *e, const char *q, sl_diag *diag)
{
    return sl__url_params_parse(amqp_url_params,
                                SL_URL_PARAMS_COUNT(amqp_url_params), q, e,
                                "engine URL", diag);
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
    .abi_version = SL_DRIVER_ABI_VERSION,
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
