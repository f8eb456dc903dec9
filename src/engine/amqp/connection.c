/* The RabbitMQ engine's connection: the I/O thread and the requests it
 * serves, connect and login (TLS, credentials), reconnect with backoff and
 * the heartbeat watchdog. */
#include "engine/amqp/amqp_int.h"

#include "core/secret.h"
#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void handle_frame(amqp_engine *e, amqp_frame_t *f);

void sl__amqp_wake_io(amqp_engine *e)
{
    char c = 1;
    ssize_t r = write(e->wake[1], &c, 1);
    (void)r; /* a full pipe already wakes the thread */
}

sl_status sl__amqp_from_reply(amqp_rpc_reply_t r, uint16_t *code)
{
    *code = 0;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return SL_OK;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            *code = ((amqp_channel_close_t *)r.reply.decoded)->reply_code;
            if (*code == AMQP_NOT_FOUND) {
                return SL_NOT_FOUND;
            }
            if (*code == AMQP_PRECONDITION_FAILED) {
                return SL_CONFIG;
            }
            return SL_IO;
        }
        return SL_UNAVAILABLE;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return r.library_error == AMQP_STATUS_TIMEOUT ? SL_TIMEOUT
                                                      : SL_UNAVAILABLE;
    default:
        return SL_IO;
    }
}

/* Queue @p r for the I/O thread. The pipe is written only when the
 * thread sleeps (or is about to): a write per publish cost a system call
 * and, worse, woke the thread for each one. io_sleeping is set before the
 * thread's last look at the queue and read after the push, both ordered
 * by the queue's mutex: either the thread sees the request or we see it
 * asleep. */
sl_status sl__amqp_push_req(amqp_engine *e, areq *r)
{
    sl_status st = sl_queue_push(e->reqs, r, API_WAIT_MS);
    if (st == SL_OK && atomic_load(&e->io_sleeping)) {
        sl__amqp_wake_io(e);
    }
    return st;
}

/* Run @p fn on the I/O thread and wait for it. Unless @p always, fails
 * with SL_UNAVAILABLE while disconnected. */
sl_status sl__amqp_io_call_ex(amqp_engine *e,
                              sl_status (*fn)(amqp_engine *, void *), void *arg,
                              bool always)
{
    acall c = {.fn = fn, .arg = arg, .st = SL_OK, .always = always};
    areq *r = sl_calloc(1, sizeof *r);
    if (r == NULL) {
        return SL_NOMEM;
    }
    r->kind = REQ_CALL;
    r->call = &c;
    pthread_mutex_lock(&e->mu);
    bool dead = e->io_exited || (e->dead && !always);
    pthread_mutex_unlock(&e->mu);
    if (dead) {
        sl_free(r);
        return SL_UNAVAILABLE;
    }
    sl_status st = sl__amqp_push_req(e, r);
    if (st != SL_OK) {
        sl_free(r);
        return st == SL_FULL ? SL_TIMEOUT : SL_UNAVAILABLE;
    }
    pthread_mutex_lock(&e->mu);
    while (!c.done) {
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return c.st;
}

sl_status sl__amqp_io_call(amqp_engine *e,
                           sl_status (*fn)(amqp_engine *, void *), void *arg)
{
    return sl__amqp_io_call_ex(e, fn, arg, false);
}

/* Deal with frames rabbitmq-c queued while it waited for an RPC reply. */
void sl__amqp_drain_enqueued(amqp_engine *e)
{
    while (amqp_frames_enqueued(e->conn)) {
        amqp_frame_t f;
        struct timeval tv = {0, 0};
        if (amqp_simple_wait_frame_noblock(e->conn, &f, &tv) !=
            AMQP_STATUS_OK) {
            break;
        }
        handle_frame(e, &f);
    }
}

sl_status sl__amqp_open_channel(amqp_engine *e, uint16_t ch)
{
    amqp_channel_open(e->conn, ch);
    uint16_t code;
    return sl__amqp_from_reply(amqp_get_rpc_reply(e->conn), &code);
}

/* Check an RPC's reply; a channel the broker closed is acknowledged and,
 * for the admin channel, reopened. */
sl_status sl__amqp_check_rpc(amqp_engine *e, uint16_t ch)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(e->conn);
    uint16_t code = 0;
    sl_status st = sl__amqp_from_reply(r, &code);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (ch == ADMIN_CH) {
            sl__amqp_open_channel(e, ADMIN_CH);
        } else if (ch >= FIRST_SUB_CH) {
            sl__amqp_mark_sub_dead(e, ch);
        }
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ||
               r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        if (st == SL_UNAVAILABLE) {
            pthread_mutex_lock(&e->mu);
            e->dead = true;
            pthread_mutex_unlock(&e->mu);
        }
    }
    sl__amqp_drain_enqueued(e);
    return st;
}

static void handle_frame(amqp_engine *e, amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD) {
        return; /* stray content of a message we skipped */
    }
    uint16_t ch = f->channel;
    void *dec = f->payload.method.decoded;
    switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = dec;
        sl__amqp_confirm_tags(e, a->delivery_tag, a->multiple, SL_OK);
        break;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *a = dec;
        sl__amqp_confirm_tags(e, a->delivery_tag, a->multiple, SL_FULL);
        break;
    }
    case AMQP_BASIC_RETURN_METHOD:
        sl__amqp_on_return(e);
        break;
    case AMQP_BASIC_DELIVER_METHOD:
        sl__amqp_on_deliver(e, ch, dec);
        break;
    case AMQP_BASIC_CANCEL_METHOD:
        sl__amqp_on_broker_cancel(e, ch);
        break;
    case AMQP_CONNECTION_BLOCKED_METHOD:
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        pthread_mutex_lock(&e->mu);
        e->blocked = f->payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD;
        pthread_mutex_unlock(&e->mu);
        break;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *c = dec;
        sl_logf(SL_LOG_WARN, LOG, "broker closed channel %u: %u %.*s",
                (unsigned)ch, (unsigned)c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes);
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (ch == PUB_CH) {
            sl__amqp_fail_unconfirmed(
                e, c->reply_code == AMQP_NOT_FOUND ? SL_NOT_FOUND : SL_TIMEOUT);
            sl__amqp_open_publish_channel(e);
        } else if (ch == ADMIN_CH) {
            sl__amqp_open_channel(e, ADMIN_CH);
        } else {
            sl__amqp_mark_sub_dead(e, ch);
        }
        break;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(e->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        pthread_mutex_lock(&e->mu);
        e->dead = true;
        pthread_mutex_unlock(&e->mu);
        break;
    }
    default:
        break;
    }
}

/* A write that may wait for the socket (the watchdog watches it). RPCs
 * are not marked: rabbitmq-c waits for their replies with the heartbeat
 * deadline itself. */
static void send_begin(amqp_engine *e)
{
    atomic_store_explicit(&e->send_since, sl_time_mono_ms(),
                          memory_order_relaxed);
}

static void send_end(amqp_engine *e)
{
    atomic_store_explicit(&e->send_since, 0, memory_order_relaxed);
}

/* True when the deliveries an ack or nack names are of the channel's
 * current generation: one queued before the broker cancelled the consumer
 * would name tags the reopened channel never gave (a channel error). */
static bool settle_current(amqp_engine *e, const areq *r)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sl__amqp_sub_by_channel_locked(e, r->ch);
    pthread_mutex_unlock(&e->mu);
    if (s == NULL) {
        return true; /* browse and unsubscribe channels */
    }
    pthread_mutex_lock(&s->mu);
    bool ok = s->gen == r->gen && !s->down && !s->dead;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void handle_req(amqp_engine *e, areq *r)
{
    if ((r->kind == REQ_ACK || r->kind == REQ_ACK_MULTIPLE ||
         r->kind == REQ_NACK) &&
        !settle_current(e, r)) {
        sl_free(r); /* the broker returned those with the old channel */
        return;
    }
    /* The I/O loop marks its batches of requests as writes; an RPC is not
     * one (rabbitmq-c waits for its reply with the heartbeat deadline). */
    bool rpc = r->kind == REQ_CALL || r->kind == REQ_CANCEL;
    bool marked =
        rpc && atomic_load_explicit(&e->send_since, memory_order_relaxed) != 0;
    if (marked) {
        send_end(e);
    }
    switch (r->kind) {
    case REQ_PUBLISH:
        /* r is part of the publish: it belongs to confirm_one now. */
        sl__amqp_send_publish(e, r->pub);
        return;
    case REQ_ACK:
        amqp_basic_ack(e->conn, r->ch, r->tag, 0);
        break;
    case REQ_ACK_MULTIPLE:
        amqp_basic_ack(e->conn, r->ch, r->tag, 1);
        break;
    case REQ_NACK:
        amqp_basic_nack(e->conn, r->ch, r->tag, 0, 1);
        sl__amqp_note_return(e);
        break;
    case REQ_CANCEL:
        sl__amqp_cancel_consumer(e, r->ch);
        break;
    case REQ_CALL:
        r->call->st = r->call->fn(e, r->call->arg);
        pthread_mutex_lock(&e->mu);
        r->call->done = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        break;
    }
    if (marked) {
        send_begin(e);
    }
    sl_free(r);
}

/* Requests after the connection died: publishes and calls fail. */
void sl__amqp_fail_req(amqp_engine *e, areq *r)
{
    switch (r->kind) {
    case REQ_PUBLISH:
        sl__amqp_confirm_one(e, r->pub,
                             SL_UNAVAILABLE); /* frees r: part of it */
        return;
    case REQ_CALL:
        pthread_mutex_lock(&e->mu);
        r->call->st = SL_UNAVAILABLE;
        r->call->done = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        break;
    default:
        break;
    }
    sl_free(r);
}

static bool run_connected(amqp_engine *e)
{
    void *items[64];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool stop = e->stopping &&
                    (e->npending == 0 || sl_time_mono_ms() >= e->stop_by_ms);
        bool dead = e->dead;
        pthread_mutex_unlock(&e->mu);
        if (dead) {
            return false;
        }
        size_t n = sl_queue_pop_many(e->reqs, items, 64, 0);
        if (n > 0) {
            send_begin(e);
            for (size_t i = 0; i < n; i++) {
                handle_req(e, items[i]);
            }
            send_end(e);
            sl__amqp_wake_fetchers(e); /* RPCs may have buffered deliveries */
        }
        sl__amqp_drain_enqueued(e);
        /* Read whatever the socket already has, without waiting. Not a
         * zero timeout: rabbitmq-c then never compares its deadline with
         * the broker's heartbeat (a zero deadline always comes first), so
         * a silent broker would go unnoticed; with 1 us it does, and
         * sends our heartbeats when due. */
        bool got = false;
        /* Reading never waits here, but rabbitmq-c may send a heartbeat,
         * which waits like any write. */
        send_begin(e);
        for (int k = 0; k < 256; k++) {
            amqp_frame_t f;
            struct timeval tv = {0, 1};
            int rc = amqp_simple_wait_frame_noblock(e->conn, &f, &tv);
            if (rc == AMQP_STATUS_TIMEOUT) {
                break;
            }
            if (rc == AMQP_STATUS_HEARTBEAT_TIMEOUT) {
                sl_logf(SL_LOG_WARN, LOG,
                        "RabbitMQ at %s sent nothing for two heartbeat "
                        "intervals (%u s each)",
                        e->host, (unsigned)amqp_get_heartbeat(e->conn));
            }
            if (rc != AMQP_STATUS_OK) {
                pthread_mutex_lock(&e->mu);
                e->dead = true;
                pthread_mutex_unlock(&e->mu);
                break;
            }
            handle_frame(e, &f);
            got = true;
        }
        send_end(e);
        sl__amqp_wake_fetchers(e);
        if (e->nrebind > 0 && !e->dead) {
            sl__amqp_rebind_due(e);
        }
        if (!amqp_frames_enqueued(e->conn) && !amqp_data_in_buffer(e->conn)) {
            amqp_maybe_release_buffers(e->conn);
        }
        if (stop) {
            return true;
        }
        if (n > 0 || got) {
            continue;
        }
        struct pollfd pfd[2] = {
            {.fd = amqp_get_sockfd(e->conn), .events = POLLIN},
            {.fd = e->wake[0], .events = POLLIN},
        };
        atomic_store(&e->io_sleeping, true);
        if (sl_queue_len(e->reqs) == 0) {
            poll(pfd, 2, 100);
        }
        atomic_store(&e->io_sleeping, false);
        if (pfd[1].revents & POLLIN) {
            char buf[256];
            while (read(e->wake[0], buf, sizeof buf) > 0) {
            }
        }
    }
}

/* Every subscription loses its channel: buffered deliveries (never handed
 * out; the broker requeues them, so their return is a release) are
 * dropped; handed-out ones stay with their holders, whose settle is
 * refused (their generation is gone). */
static void subs_down(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    asub *list = e->subs;
    for (asub *s = list; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->down = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        s->ch_closed = true; /* I/O thread only */
    }
    pthread_mutex_unlock(&e->mu);
    /* Only this thread adds or removes subscriptions while it runs. */
    for (asub *s = list; s; s = s->next) {
        sl__amqp_release_buffered(e, s);
    }
}

/* The connection is lost: what is unconfirmed has an unknown outcome. */
static void go_down(amqp_engine *e)
{
    sl_logf(SL_LOG_WARN, LOG,
            "connection to RabbitMQ at %s lost; "
            "reconnecting",
            e->host);
    pthread_mutex_lock(&e->mu);
    e->dead = true;
    e->blocked = false;
    pthread_mutex_unlock(&e->mu);
    sl__amqp_fail_unconfirmed(e, SL_TIMEOUT);
    subs_down(e);
    if (e->conn != NULL) {
        sl__amqp_destroy_conn(e, e->conn);
        e->conn = NULL;
    }
}

/* Requests while disconnected: calls marked "always" run (they cope with
 * down subscriptions), the rest fail. Returns false once the engine
 * stops, true after @p ms. */
static bool down_wait(amqp_engine *e, uint64_t ms)
{
    uint64_t until = sl_time_mono_ms() + ms;
    void *items[64];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool stop = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stop) {
            return false;
        }
        size_t n = sl_queue_pop_many(e->reqs, items, 64, 0);
        for (size_t i = 0; i < n; i++) {
            areq *r = items[i];
            if (r->kind == REQ_CALL && r->call->always) {
                handle_req(e, r);
            } else {
                sl__amqp_fail_req(e, r);
            }
        }
        uint64_t now = sl_time_mono_ms();
        if (now >= until) {
            return true;
        }
        if (n == 0) {
            struct pollfd pfd = {.fd = e->wake[0], .events = POLLIN};
            uint64_t left = until - now;
            atomic_store(&e->io_sleeping, true);
            if (sl_queue_len(e->reqs) == 0) {
                poll(&pfd, 1, left > 100 ? 100 : (int)left);
            }
            atomic_store(&e->io_sleeping, false);
            if (pfd.revents & POLLIN) {
                char buf[256];
                while (read(e->wake[0], buf, sizeof buf) > 0) {
                }
            }
        }
    }
}

/* Reconnect with jittered exponential backoff until connected (true) or
 * the engine stops (false). */
bool sl__amqp_reconnect(amqp_engine *e)
{
    uint64_t delay = RECONNECT_MIN_MS;
    for (uint32_t attempt = 1;; attempt++) {
        e->rng ^= e->rng << 13;
        e->rng ^= e->rng >> 7;
        e->rng ^= e->rng << 17;
        /* Half the delay plus a random part of the other half, so that
         * many clients do not come back in step. */
        uint64_t wait = delay / 2 + e->rng % (delay / 2 + 1);
        if (!down_wait(e, wait)) {
            return false;
        }
        sl_diag diag = {0};
        sl_status st = sl__amqp_connect_once(e, &diag);
        if (st == SL_OK && (st = sl__amqp_redeclare(e, &diag)) != SL_OK) {
            char why[sizeof diag.msg];
            snprintf(why, sizeof why, "%s",
                     diag.msg[0] ? diag.msg : sl_status_str(st));
            sl_diag_set(&diag, st, "declaring the topology again: %s", why);
        }
        if (st == SL_OK && (st = sl__amqp_resubscribe(e)) != SL_OK) {
            sl_diag_set(&diag, st, "subscribing again: %s", sl_status_str(st));
        }
        if (st == SL_OK) {
            pthread_mutex_lock(&e->mu);
            e->dead = false;
            pthread_mutex_unlock(&e->mu);
            sl_logf(SL_LOG_INFO, LOG,
                    "reconnected to RabbitMQ at %s (attempt %" PRIu32 ")",
                    e->host, attempt);
            return true;
        }
        sl_logf(attempt == 1 ? SL_LOG_WARN : SL_LOG_DEBUG, LOG,
                "reconnect attempt %" PRIu32 " to %s failed: %s; next in "
                "about %" PRIu64 " ms",
                attempt, e->host, diag.msg[0] ? diag.msg : sl_status_str(st),
                delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2);
        subs_down(e);
        if (e->conn != NULL) {
            sl__amqp_destroy_conn(e, e->conn);
            e->conn = NULL;
        }
        delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
    }
}

void *sl__amqp_io_main(void *arg)
{
    amqp_engine *e = arg;
    while (!run_connected(e)) {
        go_down(e);
        if (!sl__amqp_reconnect(e)) {
            break;
        }
    }
    /* The engine closes: nothing more will be confirmed; what is
     * unconfirmed has an unknown outcome. */
    pthread_mutex_lock(&e->mu);
    e->dead = true;
    pthread_mutex_unlock(&e->mu);
    sl__amqp_fail_unconfirmed(e, SL_TIMEOUT);
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->dead = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&e->mu);
    void *item;
    while (sl_queue_pop(e->reqs, &item, 0) == SL_OK) {
        sl__amqp_fail_req(e, item);
    }
    pthread_mutex_lock(&e->mu);
    e->io_exited = true;
    pthread_mutex_unlock(&e->mu);
    /* A call pushed just before io_exited was set is failed by close. */
    return NULL;
}

/* Where amqps:// looks for trusted CAs without cacert=: the system bundle
 * (Debian and Ubuntu, then Fedora and RHEL). */
static const char *const system_ca_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
};

/* TLS parameters fit the scheme; a client certificate has its key. */
sl_status sl__amqp_check_tls_params(amqp_engine *e, sl_diag *diag)
{
    if (!e->tls) {
        if (e->cacert || e->cert || e->key || e->verify_set) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL: cacert, cert, key and verify "
                               "need amqps://");
        }
        return SL_OK;
    }
    if ((e->cert == NULL) != (e->key == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: a client certificate needs both "
                           "cert= and key=");
    }
    if (e->cacert == NULL && e->verify != VERIFY_NONE) {
        for (size_t i = 0;
             i < sizeof system_ca_bundles / sizeof system_ca_bundles[0]; i++) {
            if (access(system_ca_bundles[i], R_OK) == 0) {
                e->cacert = sl_strdup(system_ca_bundles[i]);
                return e->cacert ? SL_OK : SL_NOMEM;
            }
        }
        return sl_diag_set(diag, SL_CONFIG,
                           "amqps://: no system CA bundle found; name the "
                           "CA with cacert=PATH");
    }
    return SL_OK;
}

/* The user and password of the next login: the URL's, or the user= and
 * password= references read now (a rotated secret file is picked up at
 * the next reconnect). Free both with sl__secret_free(). */
static sl_status credentials(amqp_engine *e,
                             const struct amqp_connection_info *ci, char **user,
                             char **password, sl_diag *diag)
{
    *user = *password = NULL;
    sl_status st = SL_OK;
    if (e->user_ref != NULL && sl__secret_is_ref(e->user_ref)) {
        st = sl__secret_read(e->user_ref, user, diag);
    } else {
        *user = sl_strdup(e->user_ref ? e->user_ref : ci->user);
        st = *user ? SL_OK : SL_NOMEM;
    }
    if (st == SL_OK && e->password_ref != NULL) {
        st = sl__secret_read(e->password_ref, password, diag);
        if (st != SL_OK) {
            char why[sizeof diag->msg];
            snprintf(why, sizeof why, "%s", diag ? diag->msg : "");
            sl_diag_set(diag, st, "RabbitMQ password (%s): %s", e->password_ref,
                        why);
        }
    } else if (st == SL_OK) {
        *password = sl_strdup(ci->password);
        st = *password ? SL_OK : SL_NOMEM;
    }
    if (st != SL_OK) {
        sl__secret_free(*user);
        sl__secret_free(*password);
        *user = *password = NULL;
    }
    return st;
}

/* A TLS socket set up as the URL says; NULL with @p diag on failure. */
static amqp_socket_t *tls_socket(amqp_engine *e, amqp_connection_state_t conn,
                                 sl_diag *diag)
{
    amqp_socket_t *sock = amqp_ssl_socket_new(conn);
    if (sock == NULL) {
        sl_diag_set(diag, SL_NOMEM, "cannot create a TLS socket");
        return NULL;
    }
    amqp_ssl_socket_set_verify_peer(sock, e->verify != VERIFY_NONE);
    amqp_ssl_socket_set_verify_hostname(sock, e->verify == VERIFY_FULL);
    int rc;
    if (e->cacert != NULL &&
        (rc = amqp_ssl_socket_set_cacert(sock, e->cacert)) != AMQP_STATUS_OK) {
        sl_diag_set(diag, SL_CONFIG, "cacert %s: %s", e->cacert,
                    amqp_error_string2(rc));
        return NULL;
    }
    if (e->cert != NULL && (rc = amqp_ssl_socket_set_key(
                                sock, e->cert, e->key)) != AMQP_STATUS_OK) {
        sl_diag_set(diag, SL_CONFIG, "client certificate %s / key %s: %s",
                    e->cert, e->key, amqp_error_string2(rc));
        return NULL;
    }
    return sock;
}

static void set_io_fd(amqp_engine *e, int fd)
{
    pthread_mutex_lock(&e->mu);
    e->io_fd = fd;
    pthread_mutex_unlock(&e->mu);
}

/* Drop @p conn (the engine's, or one being set up), after the watchdog
 * forgot its socket. */
void sl__amqp_destroy_conn(amqp_engine *e, amqp_connection_state_t conn)
{
    set_io_fd(e, -1);
    amqp_destroy_connection(conn);
}

/* The text of a server exception (connection.close or channel.close). */
const char *sl__amqp_reply_text(const amqp_rpc_reply_t *r, char *buf,
                                size_t size)
{
    amqp_bytes_t t = {0};
    if (r->reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        t = ((amqp_connection_close_t *)r->reply.decoded)->reply_text;
    } else if (r->reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        t = ((amqp_channel_close_t *)r->reply.decoded)->reply_text;
    }
    snprintf(buf, size, "%.*s", (int)t.len,
             t.bytes ? (const char *)t.bytes : "server exception");
    return buf;
}

/* Connect, log in and open the publish and admin channels; the new
 * connection becomes e->conn with the next generation. Never puts the
 * credentials in a message. */
sl_status sl__amqp_connect_once(amqp_engine *e, sl_diag *diag)
{
    char *url = sl_strdup(e->server);
    if (url == NULL) {
        return SL_NOMEM;
    }
    sl_status st = SL_OK;
    char *user = NULL, *password = NULL;
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    amqp_connection_state_t conn = NULL;
    if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK) {
        st = sl_diag_set(diag, SL_INVALID, "bad AMQP URL");
        goto fail;
    }
    if ((st = credentials(e, &ci, &user, &password, diag)) != SL_OK) {
        goto fail;
    }
    conn = amqp_new_connection();
    if (conn == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    amqp_socket_t *sock =
        e->tls ? tls_socket(e, conn, diag) : amqp_tcp_socket_new(conn);
    if (sock == NULL) {
        st = diag && diag->msg[0] ? diag->status : SL_NOMEM;
        goto fail;
    }
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    amqp_set_handshake_timeout(conn, &tv);
    int rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        st = sl_diag_set(
            diag, SL_UNAVAILABLE, "cannot connect to RabbitMQ at %s:%d%s: %s%s",
            ci.host, ci.port, e->tls ? " (TLS)" : "", amqp_error_string2(rc),
            rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED
                ? " (the server certificate must name the URL's host; "
                  "rabbitmq-c matches DNS names only, so an IP address "
                  "needs verify=peer)"
            : rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED
                ? " (the server certificate is not signed by cacert)"
                : "");
        goto fail;
    }
    fcntl(amqp_get_sockfd(conn), F_SETFD, FD_CLOEXEC);
    set_io_fd(e, amqp_get_sockfd(conn));
    /* rabbitmq-c announces only authentication_failure_close and
     * exchange_exchange_bindings; without these the broker neither tells
     * a consumer that its queue went away (basic.cancel) nor that it
     * blocks publishers (connection.blocked). rabbitmq-c merges them with
     * its own. */
    amqp_table_entry_t caps[4];
    const char *const cap_names[] = {"consumer_cancel_notify",
                                     "connection.blocked", "basic.nack",
                                     "publisher_confirms"};
    for (int i = 0; i < 4; i++) {
        caps[i].key = amqp_cstring_bytes(cap_names[i]);
        caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        caps[i].value.value.boolean = 1;
    }
    amqp_table_entry_t props_en[2];
    props_en[0].key = amqp_cstring_bytes("capabilities");
    props_en[0].value.kind = AMQP_FIELD_KIND_TABLE;
    props_en[0].value.value.table =
        (amqp_table_t){.num_entries = 4, .entries = caps};
    props_en[1].key = amqp_cstring_bytes("connection_name");
    props_en[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props_en[1].value.value.bytes = amqp_cstring_bytes("sluice");
    amqp_table_t props = {.num_entries = 2, .entries = props_en};
    amqp_rpc_reply_t r = amqp_login_with_properties(
        conn, ci.vhost, 0, FRAME_MAX, e->heartbeat_s, &props,
        AMQP_SASL_METHOD_PLAIN, user, password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char why[256];
        st = sl_diag_set(
            diag, SL_UNAVAILABLE,
            "RabbitMQ at %s:%d refused the login of user '%s' (vhost "
            "'%s'): %s%s",
            ci.host, ci.port, user, ci.vhost,
            r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                ? amqp_error_string2(r.library_error)
                : sl__amqp_reply_text(&r, why, sizeof why),
            e->tls && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                    r.library_error == AMQP_STATUS_SSL_ERROR
                ? " (TLS: the broker may have refused the client "
                  "certificate)"
                : "");
        goto fail;
    }
    pthread_mutex_lock(&e->mu);
    e->hb_now_s = (uint16_t)amqp_get_heartbeat(conn);
    pthread_mutex_unlock(&e->mu);
    e->conn = conn;
    if ((st = sl__amqp_open_publish_channel(e)) != SL_OK ||
        (st = sl__amqp_open_channel(e, ADMIN_CH)) != SL_OK) {
        e->conn = NULL;
        st = sl_diag_set(diag, st, "cannot open AMQP channels");
        goto fail;
    }
    pthread_mutex_lock(&e->mu);
    e->gen++;
    pthread_mutex_unlock(&e->mu);
    sl__secret_free(user);
    sl__secret_free(password);
    sl_free(url);
    return SL_OK;
fail:
    if (conn != NULL) {
        sl__amqp_destroy_conn(e, conn);
    }
    sl__secret_free(user);
    sl__secret_free(password);
    sl_free(url);
    return st;
}

/* The watchdog: see amqp_engine.send_since. A write to a broker that
 * stopped reading (frozen, or a network that drops everything) waits in
 * rabbitmq-c without a deadline; after a heartbeat interval without
 * progress and without anything new to read from the broker (which sends
 * a heartbeat every half interval, also while it holds us back for flow
 * control), the socket is shut down, which ends the write with an error: the
 * connection is lost and reconnected. Also bounds close(): a write still stuck
 * when the confirms' deadline passed is cut short. */
void *sl__amqp_watchdog_main(void *arg)
{
    amqp_engine *e = arg;
    uint64_t since_seen = 0;
    int last_unread = -1;
    pthread_mutex_lock(&e->mu);
    while (!e->wd_stop) {
        struct timespec until;
        sl__deadline_after(&until, WATCHDOG_TICK_MS);
        pthread_cond_timedwait(&e->wd_cv, &e->mu, &until);
        uint64_t since =
            atomic_load_explicit(&e->send_since, memory_order_relaxed);
        if (e->wd_stop || since == 0 || e->io_fd < 0) {
            since_seen = 0;
            continue;
        }
        int unread = 0;
        if (ioctl(e->io_fd, FIONREAD, &unread) != 0) {
            unread = -1;
        }
        if (since != since_seen || unread != last_unread) {
            /* A new write, or the broker sent something: alive. */
            since_seen = since;
            last_unread = unread;
            e->wd_progress_ms = sl_time_mono_ms();
            continue;
        }
        uint64_t now = sl_time_mono_ms();
        /* RabbitMQ sends a heartbeat every half interval: one interval
         * without a byte from it is two missed heartbeats, its own rule
         * for a dead peer. */
        uint64_t limit = (uint64_t)e->hb_now_s * 1000;
        bool stuck =
            e->hb_now_s > 0 && !e->blocked && now - e->wd_progress_ms >= limit;
        bool closing = e->stopping && now >= e->stop_by_ms;
        if (stuck || closing) {
            sl_logf(SL_LOG_WARN, LOG,
                    "writing to RabbitMQ at %s made no progress for %" PRIu64
                    " ms%s; dropping the connection",
                    e->host, now - e->wd_progress_ms,
                    closing ? " (closing)" : "");
            shutdown(e->io_fd, SHUT_RDWR);
            e->io_fd = -1; /* once per connection */
            since_seen = 0;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
