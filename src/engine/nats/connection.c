/* The NATS engine's connection (nats_int.h): the URL, TLS and
 * credentials, connect and reconnect options, open and close, the
 * asynchronous subscriptions whose handlers close waits out, and the
 * driver tables, the only part of the engine the library sees.
 */
#include "engine/nats/nats_int.h"

#include "core/secret.h"
#include "core/waiter.h"
#include "engine/url_params.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* nats.c's library state (its timer and garbage-collector threads) lives
 * while at least one engine is open: the last close tears it down, so a
 * process without open engines has no hidden threads (fork stays safe). */
static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned lib_users;

static natsStatus lib_ref(void)
{
    pthread_mutex_lock(&lib_mu);
    natsStatus s = NATS_OK;
    if (lib_users == 0) {
        s = nats_Open(-1);
    }
    if (s == NATS_OK) {
        lib_users++;
    }
    pthread_mutex_unlock(&lib_mu);
    return s;
}

static void lib_unref(void)
{
    pthread_mutex_lock(&lib_mu);
    if (lib_users > 0 && --lib_users == 0) {
        nats_CloseAndWait(2000);
    }
    pthread_mutex_unlock(&lib_mu);
}

sl_status sl__nats_status(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return SL_OK;
    case NATS_TIMEOUT:
        return SL_TIMEOUT;
    case NATS_NOT_FOUND:
        return SL_NOT_FOUND;
    case NATS_NO_MEMORY:
        return SL_NOMEM;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
        return SL_UNAVAILABLE;
    case NATS_INVALID_ARG:
        return SL_INVALID;
    default:
        return SL_IO;
    }
}

/* ---- asynchronous subscriptions ---------------------------------------- */

/* nats.c's thread: the handler of an asynchronous subscription has
 * returned for the last time. */
static void on_async_complete(void *closure)
{
    nats_engine *e = closure;
    pthread_mutex_lock(&e->mu);
    e->async_live--;
    pthread_cond_broadcast(&e->async_cv);
    pthread_mutex_unlock(&e->mu);
}

/* Subscribe @p cb (in queue group @p queue, or none) so that close can
 * wait until it no longer runs: nats.c may call a handler once more after
 * natsSubscription_Unsubscribe returns. */
natsStatus sl__nats_async_subscribe(nats_engine *e, natsSubscription **out,
                                    const char *subject, const char *queue,
                                    natsMsgHandler cb, void *closure)
{
    natsSubscription *sub = NULL;
    natsStatus s =
        queue ? natsConnection_QueueSubscribe(&sub, e->nc, subject, queue, cb,
                                              closure)
              : natsConnection_Subscribe(&sub, e->nc, subject, cb, closure);
    if (s == NATS_OK) {
        s = natsSubscription_SetOnCompleteCB(sub, on_async_complete, e);
        if (s != NATS_OK) {
            natsSubscription_Unsubscribe(sub);
            natsSubscription_Destroy(sub);
            return s;
        }
        pthread_mutex_lock(&e->mu);
        e->async_live++;
        pthread_mutex_unlock(&e->mu);
        *out = sub;
    }
    return s;
}

static bool nats_is_ready(const sl_engine *base)
{
    const nats_engine *e = (const nats_engine *)base;
    return !e->closing &&
           natsConnection_Status(e->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* ---- open / close -------------------------------------------------------- */

static void nats_close(sl_engine *base);

/* ---- credentials and TLS ----------------------------------------------- */

/* What the URL's query says: the engine's own settings, moved to it once
 * the whole query is checked, and the connection's TLS and credentials.
 * Paths and references, never secrets: a secret is read from its
 * reference at connect time and wiped afterwards. */
typedef struct conn_opts {
    char *ns;                       /* namespace, or NULL */
    char domain[JS_DOMAIN_MAX + 1]; /* JetStream domain, or "" */
    uint64_t ack_wait_ms;           /* the engine's value when absent */
    uint64_t max_ack_pending;       /* ... */
    uint64_t replicas;              /* ... */
    uint64_t max_deliver;           /* ... */
    bool memory;                    /* storage=memory */
    bool tls;                       /* tls:// or ?tls=true */
    char *tls_ca;       /* PEM file of the CAs that sign the server */
    char *tls_cert;     /* client certificate chain (PEM) ... */
    char *tls_key;      /* ... and its key, for servers that verify clients */
    char *tls_hostname; /* name expected in the server certificate */
    char *user;         /* with password */
    char *password;     /* env:NAME or file:PATH */
    char *token;        /* env:NAME or file:PATH */
    char *creds;        /* a credentials file (user JWT and nkey seed) */
    char *nkey;         /* a user's public nkey (U...) ... */
    char *nkey_seed;    /* ... and the file of its seed */
} conn_opts;

static void conn_opts_fini(conn_opts *co)
{
    sl_free(co->ns);
    sl_free(co->tls_ca);
    sl_free(co->tls_cert);
    sl_free(co->tls_key);
    sl_free(co->tls_hostname);
    sl_free(co->user);
    sl_free(co->password);
    sl_free(co->token);
    sl_free(co->creds);
    sl_free(co->nkey);
    sl_free(co->nkey_seed);
    memset(co, 0, sizeof *co);
}

/* A secret from its reference (core/secret.h), with the parameter it is
 * for in the message: "engine URL: token: environment variable X is not
 * set". The message names the variable or the file, never the secret. */
static sl_status read_secret(const char *what, const char *ref, char **out,
                             sl_diag *diag)
{
    sl_diag d = {0};
    sl_status st = sl__secret_read(ref, out, &d);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "engine URL: %s: %s", what, d.msg);
    }
    return SL_OK;
}

/* @p url for messages, its credentials hidden (core/secret.h). */
static const char *redact_url(const char *url, char *buf, size_t size)
{
    return sl__secret_redact_url(url, buf, size);
}

/* nats.c's last error without its "(file.c:123): " prefix, or NULL when
 * it says no more than @p s. */
static const char *last_error(natsStatus s)
{
    const char *t = nats_GetLastError(NULL);
    if (t != NULL && t[0] == '(') {
        const char *close = strstr(t, "): ");
        if (close != NULL) {
            t = close + 3;
        }
    }
    if (t == NULL || t[0] == '\0' || strcmp(t, natsStatus_GetText(s)) == 0) {
        return NULL;
    }
    return t;
}

/* ---- URL parameters ------------------------------------------------------ */

/* True when @p s is made of [A-Za-z0-9_-] only. */
static bool is_name(const char *s)
{
    for (const char *c = s; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
            return false;
        }
    }
    return true;
}

/* Store a string parameter in the char * field its table entry points at. */
static sl_status store_string(void *dst, const sl_url_param *param,
                              const char *val)
{
    char **field = (char **)(void *)((char *)dst + param->offset);
    char *copy = sl_strdup(val);
    if (copy == NULL) {
        return SL_NOMEM;
    }
    sl_free(*field);
    *field = copy;
    return SL_OK;
}

/* ns: the prefix of every stream and subject the engine makes (the table
 * refuses an empty one). */
static sl_status set_ns(void *dst, const sl_url_param *param,
                        const sl_url_value *v, sl_diag *diag)
{
    if (!is_name(v->s)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: ns must be [A-Za-z0-9_-]");
    }
    return store_string(dst, param, v->s);
}

/* domain: a JetStream domain, part of every API subject. */
static sl_status set_domain(void *dst, const sl_url_param *param,
                            const sl_url_value *v, sl_diag *diag)
{
    conn_opts *co = dst;
    (void)param;
    size_t n = strlen(v->s);
    if (n == 0 || n > JS_DOMAIN_MAX || !is_name(v->s)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: domain must be 1-%d of "
                           "[A-Za-z0-9_-]",
                           JS_DOMAIN_MAX);
    }
    memcpy(co->domain, v->s, n + 1);
    return SL_OK;
}

/* tls_ca, tls_cert, tls_key, tls_hostname: each one turns TLS on. */
static sl_status set_tls_string(void *dst, const sl_url_param *param,
                                const sl_url_value *v, sl_diag *diag)
{
    (void)diag;
    ((conn_opts *)dst)->tls = true;
    return store_string(dst, param, v->s);
}

/* password, token: never a literal here, a query string is easily
 * logged. The message names the parameter only: its value is the
 * secret. */
static sl_status set_secret_ref(void *dst, const sl_url_param *param,
                                const sl_url_value *v, sl_diag *diag)
{
    if (!sl__secret_is_ref(v->s)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: %s must be a reference, env:NAME or "
                           "file:PATH (a secret in the URL would be logged)",
                           param->name);
    }
    return store_string(dst, param, v->s);
}

/* A string into the conn_opts field @p field, handed to @p set_ (which
 * stores it with store_string); @p secret_: never shown in a message. */
#define NATS_URL_STRING(name_, field, set_, secret_, doc_)                     \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_STRING,                          \
        .offset = offsetof(conn_opts, field),                                  \
        .size = sizeof(((conn_opts *)0)->field), .set = (set_),                \
        .secret = (secret_), .not_empty = true, .doc = (doc_)                  \
    }

static const sl_url_enum storage_values[] = {
    {"file", 0}, {"memory", 1}, {NULL, 0}};

/* "nats://host:port?ns=x&ack_wait_ms=N&...&tls_ca=PATH&token=env:NAME":
 * docs/engines/nats.md lists the parameters. */
static const sl_url_param nats_url_params[] = {
    NATS_URL_STRING("ns", ns, set_ns, false,
                    "prefix of every stream and subject ([A-Za-z0-9_-])"),
    SL_URL_CUSTOM("domain", SL_URL_PARAM_STRING, set_domain,
                  "JetStream domain (1-64 of [A-Za-z0-9_-])"),
    SL_URL_UINT("ack_wait_ms", conn_opts, ack_wait_ms, 1, INT64_MAX,
                "milliseconds before an unsettled delivery is redelivered"),
    SL_URL_UINT("max_ack_pending", conn_opts, max_ack_pending, 1, INT64_MAX,
                "most unsettled deliveries of a group"),
    SL_URL_UINT("max_deliver", conn_opts, max_deliver, 1, 100000,
                "server's delivery limit (default 2 x max_attempts + 20)"),
    SL_URL_UINT("replicas", conn_opts, replicas, 1, 5,
                "replicas of every stream"),
    SL_URL_ENUM("storage", conn_opts, memory, storage_values,
                "stream storage: file or memory"),
    SL_URL_BOOL("tls", conn_opts, tls, "TLS (also tls:// or any tls_*)"),
    NATS_URL_STRING("tls_ca", tls_ca, set_tls_string, false,
                    "CA file (PEM) that signs the server's certificate"),
    NATS_URL_STRING("tls_cert", tls_cert, set_tls_string, false,
                    "client certificate chain (PEM), with tls_key="),
    NATS_URL_STRING("tls_key", tls_key, set_tls_string, false,
                    "client certificate's private key (PEM)"),
    NATS_URL_STRING("tls_hostname", tls_hostname, set_tls_string, false,
                    "name expected in the server's certificate"),
    SL_URL_STRING("user", conn_opts, user, "user name, with password="),
    NATS_URL_STRING("password", password, set_secret_ref, true,
                    "password as env:NAME or file:PATH"),
    NATS_URL_STRING("token", token, set_secret_ref, true,
                    "token as env:NAME or file:PATH"),
    SL_URL_STRING("creds", conn_opts, creds,
                  "credentials file (user JWT and nkey seed)"),
    SL_URL_STRING("nkey", conn_opts, nkey,
                  "public nkey of a user (with nkey_seed)"),
    SL_URL_STRING("nkey_seed", conn_opts, nkey_seed, "file of the nkey's seed"),
};

/* "nats://host:port?ns=x&...": the server URL (without the query) goes to
 * nats.c, the engine's settings to @p e (whose defaults are kept for what
 * the query leaves out), TLS and credentials to @p co. */
static sl_status parse_url(nats_engine *e, const char *url, char **server,
                           conn_opts *co, sl_diag *diag)
{
    const char *q = strchr(url, '?');
    *server = q ? sl_strndup(url, (size_t)(q - url)) : sl_strdup(url);
    if (*server == NULL) {
        return SL_NOMEM;
    }
    co->tls = strncmp(url, "tls://", 6) == 0;
    co->ack_wait_ms = (uint64_t)e->ack_wait_ms;
    co->max_ack_pending = (uint64_t)e->max_ack_pending;
    co->replicas = (uint64_t)e->replicas;
    co->max_deliver = (uint64_t)e->max_deliver;
    co->memory = e->memory;
    sl_status st = sl__url_params_parse(
        nats_url_params, SL_URL_PARAMS_COUNT(nats_url_params), q ? q + 1 : NULL,
        co, "engine URL", diag);
    if (st != SL_OK) {
        return st;
    }
    if ((co->tls_cert == NULL) != (co->tls_key == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: tls_cert and tls_key go together");
    }
    if ((co->nkey == NULL) != (co->nkey_seed == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: nkey (the public key) and nkey_seed "
                           "(its seed file) go together");
    }
    if ((co->user == NULL) != (co->password == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: user and password go together");
    }
    int kinds = (co->user != NULL) + (co->token != NULL) + (co->creds != NULL) +
                (co->nkey != NULL);
    if (kinds > 1) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: give one of user/password, token, "
                           "creds, nkey/nkey_seed");
    }
    /* The whole query is good: the engine takes its settings. */
    sl_free(e->ns);
    e->ns = co->ns;
    co->ns = NULL;
    memcpy(e->domain, co->domain, sizeof e->domain);
    e->ack_wait_ms = (int64_t)co->ack_wait_ms;
    e->max_ack_pending = (int64_t)co->max_ack_pending;
    e->replicas = (int64_t)co->replicas;
    e->max_deliver = (int64_t)co->max_deliver;
    e->memory = co->memory;
    return SL_OK;
}

/* Parse-only check of an engine URL (sl_engine_check_url): what
 * nats_open rejects before connecting, and the files the URL names, which
 * must be readable. nats.c itself is not started for a check. */
static sl_status nats_check_url(const char *url, sl_diag *diag)
{
    nats_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    char *server = NULL;
    conn_opts co = {0};
    sl_status st = parse_url(e, url, &server, &co, diag);
    const char *const keys[] = {"tls_ca", "tls_cert", "tls_key", "creds",
                                "nkey_seed"};
    const char *const files[] = {co.tls_ca, co.tls_cert, co.tls_key, co.creds,
                                 co.nkey_seed};
    for (size_t i = 0; st == SL_OK && i < sizeof keys / sizeof keys[0]; i++) {
        if (files[i] != NULL && access(files[i], R_OK) != 0) {
            st = sl_diag_set(diag, SL_CONFIG, "engine URL: %s file %s: %s",
                             keys[i], files[i], strerror(errno));
        }
    }
    conn_opts_fini(&co);
    sl_free(server);
    sl_free(e->ns);
    sl_free(e);
    return st;
}

/* TLS and credentials to nats.c. The secrets read here are wiped at
 * once: nats.c keeps its own copies. */
static sl_status apply_conn_opts(natsOptions *no, const conn_opts *co,
                                 sl_diag *diag)
{
    natsStatus s = NATS_OK;
    const char *step = "";
    if (co->tls) {
        step = "TLS";
        s = natsOptions_SetSecure(no, true);
    }
    if (s == NATS_OK && co->tls_ca != NULL) {
        step = "tls_ca";
        s = natsOptions_LoadCATrustedCertificates(no, co->tls_ca);
    }
    if (s == NATS_OK && co->tls_cert != NULL) {
        step = "tls_cert/tls_key";
        s = natsOptions_LoadCertificatesChain(no, co->tls_cert, co->tls_key);
    }
    if (s == NATS_OK && co->tls_hostname != NULL) {
        step = "tls_hostname";
        s = natsOptions_SetExpectedHostname(no, co->tls_hostname);
    }
    if (s == NATS_OK && co->creds != NULL) {
        step = "creds";
        s = natsOptions_SetUserCredentialsFromFiles(no, co->creds, NULL);
    }
    if (s == NATS_OK && co->nkey != NULL) {
        step = "nkey_seed";
        s = natsOptions_SetNKeyFromSeed(no, co->nkey, co->nkey_seed);
    }
    if (s != NATS_OK) {
        /* nats.c's text names files and what is wrong with them. */
        const char *why = last_error(s);
        return sl_diag_set(diag, SL_INVALID, "engine URL: %s: %s%s%s", step,
                           natsStatus_GetText(s), why ? ": " : "",
                           why ? why : "");
    }
    sl_status st = SL_OK;
    char *secret = NULL;
    if (co->password != NULL) {
        if ((st = read_secret("password", co->password, &secret, diag)) ==
            SL_OK) {
            s = natsOptions_SetUserInfo(no, co->user, secret);
        }
    } else if (co->token != NULL) {
        if ((st = read_secret("token", co->token, &secret, diag)) == SL_OK) {
            s = natsOptions_SetToken(no, secret);
        }
    }
    sl__secret_free(secret);
    if (st == SL_OK && s != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(s),
                         "engine URL: credentials: %s", natsStatus_GetText(s));
    }
    return st;
}

/* "nats://h1:p1,h2:p2,..." (a cluster): every server to nats.c, which
 * connects to one and reconnects to another when it goes away. Hosts
 * after the first may omit the scheme. */
static natsStatus set_servers(natsOptions *no, const char *server)
{
    if (strchr(server, ',') == NULL) {
        return natsOptions_SetURL(no, server);
    }
    const char *servers[16];
    char *urls[16] = {0};
    int n = 0;
    natsStatus s = NATS_OK;
    for (const char *p = server; *p && s == NATS_OK;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 16) {
            s = NATS_INVALID_ARG;
            break;
        }
        const char *sep = strstr(p, "://");
        bool scheme = sep != NULL && (size_t)(sep - p) < len;
        /* A host without a scheme takes the first URL's (tls:// too). */
        const char *dflt =
            strncmp(server, "tls://", 6) == 0 ? "tls://" : "nats://";
        size_t size = len + (scheme ? 0 : strlen(dflt)) + 1;
        if ((urls[n] = sl_malloc(size)) == NULL) {
            s = NATS_NO_MEMORY;
            break;
        }
        snprintf(urls[n], size, "%s%.*s", scheme ? "" : dflt, (int)len, p);
        servers[n] = urls[n];
        n++;
        p += len + (comma ? 1 : 0);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetServers(no, servers, n);
    }
    for (int i = 0; i < n; i++) {
        sl_free(urls[i]);
    }
    return s;
}

static sl_status nats_open(const char *url, const sl_engine_opts *opts,
                           sl_engine **out, sl_diag *diag)
{
    nats_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__nats_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->ack_wait_ms = DEFAULT_ACK_WAIT_MS;
    e->max_ack_pending = DEFAULT_MAX_ACK_PENDING;
    e->replicas = 1;
    pthread_mutex_init(&e->mu, NULL);
    sl__cond_init_mono(&e->hb_cv);
    sl__cond_init_mono(&e->ack_cv);
    sl__cond_init_mono(&e->async_cv);
    char *server = NULL;
    natsOptions *no = NULL;
    conn_opts co = {0};
    sl_status st = parse_url(e, url, &server, &co, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if (e->domain[0] != '\0') {
        snprintf(e->api, sizeof e->api, "$JS.%s.API.", e->domain);
    } else {
        snprintf(e->api, sizeof e->api, "%s", JS_API_PREFIX);
    }
    if ((st = sl__nats_pubs_init(e)) != SL_OK) {
        goto fail;
    }
    natsStatus s = lib_ref();
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start nats.c: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    e->lib_held = true;
    s = natsOptions_Create(&no);
    if (s == NATS_OK) {
        s = set_servers(no, server);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(no, "sluice");
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(no, 2000);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(no, -1); /* reconnect forever */
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(no, 250);
    }
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_INVALID, "engine URL: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    if ((st = apply_conn_opts(no, &co, diag)) != SL_OK) {
        goto fail;
    }
    if ((s = natsConnection_Connect(&e->nc, no)) != NATS_OK) {
        /* The URL may carry credentials: name the servers without them.
         * nats.c's last error says why (a TLS verification failure, an
         * authorization violation); it holds no secret of ours. */
        char shown[512];
        const char *why = last_error(s);
        bool tls_fail = why != NULL && (strstr(why, "SSL") != NULL ||
                                        strstr(why, "certificate") != NULL);
        st = sl_diag_set(
            diag, SL_UNAVAILABLE, "cannot connect to NATS at %s: %s%s%s%s",
            redact_url(server, shown, sizeof shown), natsStatus_GetText(s),
            why ? " (" : "", why ? why : "", why ? ")" : "");
        const char *hint = NULL;
        if (tls_fail) {
            hint = "; check tls_ca (the CA that signed the server's "
                   "certificate) and tls_hostname";
        } else if (co.tls && co.tls_cert == NULL && s == NATS_PROTOCOL_ERROR) {
            /* The server closed the connection after the handshake. */
            hint = "; the server may want a client certificate (tls_cert, "
                   "tls_key)";
        }
        size_t n = strlen(diag ? diag->msg : "");
        if (hint != NULL && diag != NULL && n + 1 < sizeof diag->msg) {
            snprintf(diag->msg + n, sizeof diag->msg - n, "%s", hint);
        }
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = API_WAIT_MS;
    if (e->domain[0] != '\0') {
        jo.Domain = e->domain;
    }
    jo.PublishAsync.MaxPending = PUB_MAX_PENDING;
    jo.PublishAsync.AckHandler = sl__nats_on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = e;
    if ((s = natsConnection_JetStream(&e->js, e->nc, &jo)) != NATS_OK) {
        st = sl_diag_set(diag, SL_UNAVAILABLE, "JetStream context: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    jsAccountInfo *ai = NULL;
    jsErrCode jerr = 0;
    if ((s = js_GetAccountInfo(&ai, e->js, NULL, &jerr)) != NATS_OK) {
        st = e->domain[0] != '\0'
                 ? sl_diag_set(diag, SL_UNAVAILABLE,
                               "no JetStream answers in domain '%s' "
                               "(%sINFO): %s",
                               e->domain, e->api, natsStatus_GetText(s))
                 : sl_diag_set(diag, SL_UNAVAILABLE,
                               "the NATS server has no JetStream: %s",
                               natsStatus_GetText(s));
        goto fail;
    }
    jsAccountInfo_Destroy(ai);
    natsInbox *inbox = NULL;
    if ((s = natsInbox_Create(&inbox)) == NATS_OK) {
        snprintf(e->ack_inbox, sizeof e->ack_inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        char wild[128];
        snprintf(wild, sizeof wild, "%s.*", e->ack_inbox);
        s = sl__nats_async_subscribe(e, &e->ack_sub, wild, NULL,
                                     sl__nats_on_ack_reply, e);
    }
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_UNAVAILABLE, "ack inbox: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    if (pthread_create(&e->confirm_thread, NULL, sl__nats_confirm_main, e) !=
        0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start confirm thread");
        goto fail;
    }
    e->confirm_started = true;
    if (pthread_create(&e->hb_thread, NULL, sl__nats_hb_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start heartbeat thread");
        goto fail;
    }
    e->hb_started = true;
    conn_opts_fini(&co);
    natsOptions_Destroy(no);
    sl_free(server);
    *out = &e->base;
    return SL_OK;
fail:
    conn_opts_fini(&co);
    natsOptions_Destroy(no);
    sl_free(server);
    nats_close(&e->base);
    return st;
}

static void nats_close(sl_engine *base)
{
    nats_engine *e = (nats_engine *)base;
    if (e->js != NULL) {
        /* Publishers wait for outstanding confirms. */
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = API_WAIT_MS;
        js_PublishAsyncComplete(e->js, &po);
    }
    if (e->ack_sub != NULL) {
        /* Another process opened next sees this one's acks applied. */
        sl__nats_acks_settle_wait(e);
    }
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->hb_cv);
    pthread_mutex_unlock(&e->mu);
    sl__nats_pubs_close(e); /* wakes the confirm thread */
    if (e->hb_started) {
        pthread_join(e->hb_thread, NULL);
    }
    if (e->confirm_started) {
        pthread_join(e->confirm_thread, NULL); /* calls what is queued */
    }
    /* Close the asynchronous subscriptions and wait until their handlers
     * returned for good (they use e): at most the requests an advisory
     * handler may be in (3 x API_WAIT_MS). */
    if (e->ack_sub != NULL) {
        natsSubscription_Unsubscribe(e->ack_sub);
    }
    for (nadv *a = e->advs; a; a = a->next) {
        if (a->sub != NULL) {
            natsSubscription_Unsubscribe(a->sub);
        }
    }
    struct timespec until;
    sl__deadline_after(&until, 3 * API_WAIT_MS + 1000);
    pthread_mutex_lock(&e->mu);
    while (e->async_live > 0 &&
           pthread_cond_timedwait(&e->async_cv, &e->mu, &until) == 0) {
    }
    bool quiet = e->async_live == 0;
    pthread_mutex_unlock(&e->mu);
    natsSubscription_Destroy(e->ack_sub);
    sl__nats_ack_marks_free(e);
    for (nadv *a = e->advs, *next; a; a = next) {
        next = a->next;
        natsSubscription_Destroy(a->sub);
        sl_free(a->channel);
        sl_free(a->group);
        sl_free(a->stream);
        sl_free(a->durable);
        sl_free(a);
    }
    e->advs = NULL;
    if (e->js != NULL) {
        jsCtx_Destroy(e->js);
    }
    if (e->nc != NULL) {
        natsConnection_Close(e->nc);
        natsConnection_Destroy(e->nc);
    }
    sl__nats_pubs_fini(e); /* what came back, then unknown outcomes */
    for (nchan *c = e->chans, *next; c; c = next) {
        next = c->next;
        sl_free(c->name);
        sl_free(c->stream);
        sl_free(c->subject);
        sl_free(c);
    }
    sl_free(e->ns);
    if (!quiet) {
        /* A handler still running would use freed memory: keep it (and
         * nats.c's library state). */
        sl_logf(SL_LOG_ERROR, LOG,
                "closing: a subscription handler did not "
                "return; engine state leaked");
        return;
    }
    if (e->lib_held) {
        lib_unref();
    }
    pthread_cond_destroy(&e->hb_cv);
    pthread_cond_destroy(&e->ack_cv);
    pthread_cond_destroy(&e->async_cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

#define NATS_DRIVER_OPS                                                        \
    .check_url = nats_check_url, .open = nats_open, .close = nats_close,       \
    .is_ready = nats_is_ready, .declare_channel = sl__nats_declare_channel,    \
    .declare_group = sl__nats_declare_group, .publish = sl__nats_publish,      \
    .subscribe = sl__nats_subscribe, .fetch = sl__nats_fetch,                  \
    .interrupt = sl__nats_interrupt, .in_flight = sl__nats_in_flight,          \
    .unsubscribe = sl__nats_unsubscribe, .settle = sl__nats_settle,            \
    .ack_many = sl__nats_ack_many, .depth = sl__nats_depth,                    \
    .browse = sl__nats_browse, .inbox_store = sl__nats_inbox_store

/* "tls://..." opens the same engine with TLS on (its engine, subscriptions
 * and deliveries then use sl__nats_driver). */
const sl_driver sl__nats_tls_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "nats",
    .scheme = "tls://",
    NATS_DRIVER_OPS,
};

const sl_driver sl__nats_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "nats",
    .scheme = "nats://",
    .check_url = nats_check_url,
    .open = nats_open,
    .close = nats_close,
    .is_ready = nats_is_ready,
    .declare_channel = sl__nats_declare_channel,
    .declare_group = sl__nats_declare_group,
    .publish = sl__nats_publish,
    .subscribe = sl__nats_subscribe,
    .fetch = sl__nats_fetch,
    .interrupt = sl__nats_interrupt,
    .in_flight = sl__nats_in_flight,
    .unsubscribe = sl__nats_unsubscribe,
    .settle = sl__nats_settle,
    .ack_many = sl__nats_ack_many,
    .depth = sl__nats_depth,
    .browse = sl__nats_browse,
    .inbox_store = sl__nats_inbox_store,
};
