/* The RabbitMQ engine's consuming side: subscriptions, deliveries from
 * the I/O thread into their buffers, fetch, settle (ack, nack, retry, dead
 * letter), the memory of released deliveries, and binding subscriptions
 * again after a reconnect or a broker cancel. */
#include "engine/amqp/amqp_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <string.h>

/* ---- the memory of released deliveries -------------------------------------
 */

static track *track_find(amqp_engine *e, uint64_t key, uint64_t uid,
                         bool create)
{
    return sl__track_find(&e->tracks, key, uid, create);
}

static void track_release(amqp_engine *e, uint64_t key, uint64_t uid)
{
    if (uid == 0) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    track_find(e, key, uid, true)->released++;
    pthread_mutex_unlock(&e->mu);
}

static void track_forget(amqp_engine *e, uint64_t key, uint64_t uid)
{
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, key, uid, false);
    if (t != NULL) {
        sl__track_drop(&e->tracks, t);
    }
    pthread_mutex_unlock(&e->mu);
}

static uint32_t track_released(amqp_engine *e, uint64_t key, uint64_t uid)
{
    pthread_mutex_lock(&e->mu);
    track *t = uid ? track_find(e, key, uid, false) : NULL;
    uint32_t n = t ? t->released : 0;
    pthread_mutex_unlock(&e->mu);
    return n;
}

asub *sl__amqp_sub_by_channel_locked(amqp_engine *e, uint16_t ch)
{
    for (asub *s = e->subs; s; s = s->next) {
        if (s->ch == ch) {
            return s;
        }
    }
    return NULL;
}

void sl__amqp_on_deliver(amqp_engine *e, uint16_t ch,
                         const amqp_basic_deliver_t *dv)
{
    uint64_t tag = dv->delivery_tag;
    amqp_message_t m;
    amqp_rpc_reply_t r = amqp_read_message(e->conn, ch, &m, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        pthread_mutex_lock(&e->mu);
        e->dead = true;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    pthread_mutex_lock(&e->mu);
    asub *s = sl__amqp_sub_by_channel_locked(e, ch);
    pthread_mutex_unlock(&e->mu);
    if (s == NULL) {
        amqp_destroy_message(&m);
        return; /* the channel is closing: the broker requeues it */
    }
    adelivery *d = sl_calloc(1, sizeof *d);
    sl_event *ev = NULL;
    sl_status st = d ? sl__amqp_message_to_event(&m, s->queue, &ev) : SL_NOMEM;
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "message %" PRIu64 " on %s is not a readable event (%s): "
                "dropped",
                tag, s->queue, sl_status_str(st));
        sl_free(d);
        amqp_basic_reject(e->conn, ch, tag, 0);
        amqp_destroy_message(&m);
        return;
    }
    sl__amqp_read_counts(&m, &d->uid, &d->delivery_count, &d->base_attempts);
    amqp_destroy_message(&m);
    d->base.drv = NULL; /* set at fetch */
    d->base.ev = ev;
    d->sub = s;
    d->ch = ch;
    d->tag = tag;
    pthread_mutex_lock(&s->mu);
    d->gen = s->gen;
    sl__list_push_tail(&s->buf, &d->link);
    s->arrived = true; /* fetch is woken by sl__amqp_wake_fetchers() */
    pthread_mutex_unlock(&s->mu);
}

/* Wake the fetches of subscriptions that received deliveries. Called once
 * the I/O thread has read what the socket had, so that a fetch woken by a
 * burst finds all of it buffered rather than its first delivery. */
void sl__amqp_wake_fetchers(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        if (s->arrived) {
            s->arrived = false;
            pthread_cond_broadcast(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&e->mu);
}

void sl__amqp_mark_sub_dead(amqp_engine *e, uint16_t ch)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sl__amqp_sub_by_channel_locked(e, ch);
    pthread_mutex_unlock(&e->mu);
    if (s != NULL) {
        pthread_mutex_lock(&s->mu);
        s->dead = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static void set_rebind(amqp_engine *e, asub *s, uint32_t delay_ms)
{
    if (!s->rebind) {
        s->rebind = true;
        s->rebind_warned = false;
        e->nrebind++;
    }
    s->rebind_delay_ms = delay_ms;
    s->rebind_at_ms = sl_time_mono_ms() + delay_ms;
}

static void clear_rebind(amqp_engine *e, asub *s)
{
    if (s->rebind) {
        s->rebind = false;
        e->nrebind--;
    }
}

/* The broker cancelled the consumer on @p ch (basic.cancel, announced by
 * consumer_cancel_notify): its queue was deleted, or the queue could not
 * keep it. The subscription is down (fetch waits, settling its deliveries
 * is refused) until sl__amqp_rebind_due() subscribes again. Only flags here:
 * this may run inside another call's RPC. */
void sl__amqp_on_broker_cancel(amqp_engine *e, uint16_t ch)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sl__amqp_sub_by_channel_locked(e, ch);
    bool stopping = s != NULL && (atomic_load(&s->interrupted) ||
                                  atomic_load(&s->cancel_asked));
    if (s != NULL && stopping) {
        s->cancelled = true; /* no consumer left to cancel */
    }
    pthread_mutex_unlock(&e->mu);
    if (s == NULL || stopping) {
        return;
    }
    sl_logf(SL_LOG_WARN, LOG,
            "RabbitMQ cancelled the consumer of group '%s' on channel '%s' "
            "(queue %s deleted or unavailable); subscribing again",
            s->group, s->channel, s->queue);
    pthread_mutex_lock(&s->mu);
    s->down = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    set_rebind(e, s, 0);
}

/* Stop the consumer of the subscription on @p ch (basic.cancel), once.
 *
 * Called when the subscription is interrupted, before its deliveries are
 * settled: while the consumer lives, every ack or release frees prefetch
 * credit and the queue checks out more messages to it; a quorum queue
 * returns those still travelling to a cancelled consumer itself (their
 * x-delivery-count rises) without the engine ever seeing them, so they
 * would count as an attempt. Cancelled first, nothing more is checked out.
 * Deliveries that arrive before cancel-ok are buffered (released at
 * unsubscribe). */
void sl__amqp_cancel_consumer(amqp_engine *e, uint16_t ch)
{
    char ctag[256];
    bool go = false;
    pthread_mutex_lock(&e->mu);
    asub *s = e->dead ? NULL : sl__amqp_sub_by_channel_locked(e, ch);
    /* s->dead and s->cancelled are written only by this thread. */
    if (s != NULL && !s->dead && !s->down && !s->cancelled && s->ctag != NULL &&
        strlen(s->ctag) < sizeof ctag) {
        memcpy(ctag, s->ctag, strlen(s->ctag) + 1);
        s->cancelled = true;
        go = true;
    }
    pthread_mutex_unlock(&e->mu);
    if (go) {
        amqp_basic_cancel(e->conn, ch, amqp_cstring_bytes(ctag));
        sl__amqp_check_rpc(e, ch);
    }
}

typedef struct sub_args {
    asub *s;
    sl_diag *diag;
} sub_args;

static sl_status do_subscribe(amqp_engine *e, void *arg)
{
    sub_args *a = arg;
    asub *s = a->s;
    sl_status st = sl__amqp_open_channel(e, s->ch);
    if (st != SL_OK) {
        return sl_diag_set(a->diag, st, "cannot open an AMQP channel");
    }
    amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
    if ((st = sl__amqp_check_rpc(e, s->ch)) != SL_OK) {
        return st;
    }
    pthread_mutex_lock(&e->mu);
    s->gen = e->gen;
    s->next = e->subs;
    e->subs = s;
    pthread_mutex_unlock(&e->mu);
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(e->conn, s->ch, amqp_cstring_bytes(s->queue),
                           amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (ok != NULL &&
        (s->ctag = sl__amqp_dup_bytes(ok->consumer_tag)) == NULL) {
        return SL_NOMEM;
    }
    st = sl__amqp_check_rpc(e, s->ch);
    if (st != SL_OK) {
        pthread_mutex_lock(&e->mu);
        for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->mu);
        if (st == SL_NOT_FOUND) {
            return sl_diag_set(a->diag, SL_NOT_FOUND,
                               "group '%s' on channel '%s' is not declared",
                               s->group, s->channel);
        }
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        sl__amqp_drain_enqueued(e);
        return sl_diag_set(a->diag, st, "basic.consume on %s: %s", s->queue,
                           sl_status_str(st));
    }
    return SL_OK;
}

static void sub_free(asub *s)
{
    sl_free(s->channel);
    sl_free(s->group);
    sl_free(s->queue);
    sl_free(s->ctag);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sl_free(s);
}

sl_status sl__amqp_subscribe(sl_engine *base, const char *channel,
                             const char *group, const sl_subscribe_opts *opts,
                             sl_subscription **out, sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    asub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    s->base.drv = &sl__amqp_driver;
    s->eng = e;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    if (s->prefetch > 65535) {
        s->prefetch = 65535;
    }
    pthread_mutex_init(&s->mu, NULL);
    sl__cond_init_mono(&s->cv);
    if ((s->channel = sl_strdup(channel)) == NULL ||
        (s->group = sl_strdup(group)) == NULL ||
        (s->queue = sl__amqp_queue_name(e, channel, group)) == NULL) {
        sub_free(s);
        return SL_NOMEM;
    }
    s->qkey = sl__amqp_fnv1a(s->queue);
    pthread_mutex_lock(&e->mu);
    agroup *g = sl__amqp_group_find_locked(e, s->queue);
    s->max_attempts =
        g ? g->max_attempts
          : (sl__is_dlq_channel(channel) ? UINT32_MAX : DEFAULT_MAX_ATTEMPTS);
    if (e->next_ch == 0) {
        e->next_ch = FIRST_SUB_CH; /* wrapped: channel numbers are reused */
    }
    s->ch = e->next_ch++;
    pthread_mutex_unlock(&e->mu);
    sub_args a = {.s = s, .diag = diag};
    sl_status st = sl__amqp_io_call(e, do_subscribe, &a);
    if (st != SL_OK) {
        sub_free(s);
        return st;
    }
    *out = &s->base;
    return SL_OK;
}

/* A delivery that left the buffer or the flight list had its ack or nack
 * sent (or queued): multiple acks are possible again once none is left. */
static void limbo_done(asub *s)
{
    pthread_mutex_lock(&s->mu);
    s->nlimbo--;
    pthread_mutex_unlock(&s->mu);
}

static void delivery_free(adelivery *d)
{
    sl_event_unref(d->base.ev);
    sl_free(d);
}

static sl_status send_settle(amqp_engine *e, adelivery *d, bool ack)
{
    pthread_mutex_lock(&d->sub->mu);
    /* A delivery of a lost connection is never settled on the new one. */
    bool dead = d->sub->dead || d->sub->down || d->gen != d->sub->gen;
    pthread_mutex_unlock(&d->sub->mu);
    if (dead) {
        return SL_CLOSED; /* the broker requeued it with the channel */
    }
    areq *r = sl_calloc(1, sizeof *r);
    if (r == NULL) {
        return SL_NOMEM;
    }
    r->kind = ack ? REQ_ACK : REQ_NACK;
    r->ch = d->ch;
    r->tag = d->tag;
    r->gen = d->gen;
    sl_status st = sl__amqp_push_req(e, r);
    if (st != SL_OK) {
        sl_free(r);
        return SL_CLOSED;
    }
    return SL_OK;
}

/* Publish the dead letter of @p d to the group's dead-letter channel and
 * wait for its confirm, then ack @p d. */
static sl_status dead_letter(amqp_engine *e, adelivery *d,
                             sl_dead_reason reason, uint32_t attempts,
                             const char *error)
{
    asub *s = d->sub;
    char dlq[512];
    sl_status st = sl__dlq_channel_name(s->channel, s->group, dlq, sizeof dlq);
    sl_event *dead = NULL;
    apub *p = NULL;
    char *x = sl__amqp_exchange_name(e, dlq);
    if (st == SL_OK && x == NULL) {
        st = SL_NOMEM;
    }
    if (st == SL_OK) {
        st = sl__dead_letter_event(d->base.ev, reason, attempts, error,
                                   s->channel, s->group,
                                   sl_clock_now_ms(e->clock), &dead);
    }
    if (st == SL_OK) {
        st =
            sl__amqp_pub_build(dead, x, dlq, sl__amqp_next_uid(e), 0, NULL, &p);
    }
    if (st == SL_OK) {
        st = sl__amqp_submit_sync(e, p);
    }
    sl_event_unref(dead);
    sl_free(x);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "dead-lettering %s from %s/%s failed: %s; requeued",
                sl_event_id(d->base.ev), s->channel, s->group,
                sl_status_str(st));
        send_settle(e, d, false);
        return st;
    }
    track_forget(e, s->qkey, d->uid);
    return send_settle(e, d, true);
}

sl_status sl__amqp_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                         uint64_t timeout_ms, size_t *n)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    size_t got = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load(&s->interrupted) || s->dead) {
            pthread_mutex_unlock(&s->mu);
            return SL_CLOSED;
        }
        if (s->down) {
            /* Reconnecting: the subscription comes back by itself. */
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0 &&
                s->down) {
                pthread_mutex_unlock(&s->mu);
                return SL_UNAVAILABLE;
            }
            continue;
        }
        size_t credit =
            s->prefetch > s->flight.n ? s->prefetch - s->flight.n : 0;
        if (credit == 0) {
            pthread_mutex_unlock(&s->mu);
            return SL_FULL;
        }
        size_t want = max < credit ? max : credit;
        if (sl__list_is_empty(&s->buf)) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
                if (sl__list_is_empty(&s->buf)) {
                    pthread_mutex_unlock(&s->mu);
                    return SL_EMPTY;
                }
            }
            /* The broker sends a burst of deliveries back to back: when
             * the first woke us, give the rest a moment to arrive. */
            if (s->buf.n < want) {
                struct timespec linger;
                sl__deadline_after(&linger, FETCH_LINGER_MS);
                while (s->buf.n < want && !s->dead &&
                       pthread_cond_timedwait(&s->cv, &s->mu, &linger) == 0) {
                }
            }
            continue;
        }
        adelivery *taken[64];
        size_t k = 0;
        while (k < want && k < 64 && !sl__list_is_empty(&s->buf)) {
            taken[k++] =
                SL_LIST_ENTRY(sl__list_pop_head(&s->buf), adelivery, link);
        }
        s->nlimbo += (uint32_t)k; /* until in flight or dead-lettered */
        pthread_mutex_unlock(&s->mu);
        uint64_t now = sl_clock_now_ms(e->clock);
        for (size_t i = 0; i < k; i++) {
            adelivery *d = taken[i];
            uint32_t released = track_released(e, s->qkey, d->uid);
            uint32_t raw = d->base_attempts + d->delivery_count;
            uint32_t attempt = raw >= released ? raw - released + 1 : 1;
            d->base.drv = &sl__amqp_driver;
            d->base.attempt = attempt;
            d->base.channel = s->channel;
            d->base.group = s->group;
            uint64_t deadline = sl_event_deadline_ms(d->base.ev);
            if (deadline != 0 && deadline <= now) {
                dead_letter(e, d, SL_DEAD_EXPIRED, attempt - 1,
                            "deadline passed before delivery");
                delivery_free(d);
                limbo_done(s);
                continue;
            }
            if (attempt > s->max_attempts) {
                dead_letter(e, d, SL_DEAD_MAX_ATTEMPTS, s->max_attempts,
                            "delivery limit reached: the handler crashed or "
                            "timed out on every attempt");
                delivery_free(d);
                limbo_done(s);
                continue;
            }
            pthread_mutex_lock(&s->mu);
            s->nlimbo--;
            sl__list_push_head(&s->flight, &d->link);
            pthread_mutex_unlock(&s->mu);
            out[got++] = &d->base;
        }
        if (got > 0) {
            *n = got;
            return SL_OK;
        }
        pthread_mutex_lock(&s->mu);
    }
}

void sl__amqp_interrupt(sl_subscription *base)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    /* Cancel the consumer before anything is settled (cancel_consumer).
     * Never waits: if the request queue is full, unsubscribe cancels. The
     * request goes first, so releases that follow the interrupt reach the
     * broker after the cancel. */
    if (!atomic_exchange(&s->cancel_asked, true)) {
        areq *r = sl_calloc(1, sizeof *r);
        if (r != NULL) {
            r->kind = REQ_CANCEL;
            r->ch = s->ch;
            if (sl_queue_push(e->reqs, r, 0) == SL_OK) {
                sl__amqp_wake_io(e);
            } else {
                sl_free(r);
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->interrupted, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

uint32_t sl__amqp_in_flight(const sl_subscription *base)
{
    asub *s = (asub *)base;
    pthread_mutex_lock(&s->mu);
    uint32_t n = (uint32_t)s->flight.n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* A round trip on @p ch: the broker has handled every ack and nack sent
 * on it before (basic.qos is answered in order). */
void sl__amqp_barrier(amqp_engine *e, asub *s)
{
    pthread_mutex_lock(&s->mu);
    bool dead = s->dead || s->down;
    pthread_mutex_unlock(&s->mu);
    if (!dead) {
        amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
        sl__amqp_check_rpc(e, s->ch);
    }
}

/* Take the buffered deliveries of @p s: they were never handed out, so
 * their return is a release, not an attempt. */
void sl__amqp_release_buffered(amqp_engine *e, asub *s)
{
    pthread_mutex_lock(&s->mu);
    sl_list b = s->buf;
    s->buf = (sl_list){0};
    pthread_mutex_unlock(&s->mu);
    SL_LIST_FOREACH_SAFE(&b, node, next)
    {
        adelivery *d = SL_LIST_ENTRY(node, adelivery, link);
        track_release(e, s->qkey, d->uid);
        delivery_free(d);
    }
}

static sl_status do_unsubscribe(amqp_engine *e, void *arg)
{
    asub *s = arg;
    if (s->rebind) {
        /* Cancelled by the broker, not subscribed again yet: its channel
         * may still be open. */
        if (e->conn != NULL && !e->dead && !s->ch_closed) {
            amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
            sl__amqp_drain_enqueued(e);
        }
        s->ch_closed = true;
        clear_rebind(e, s);
    }
    pthread_mutex_lock(&s->mu);
    bool dead = s->dead || s->down; /* down: runs while disconnected */
    sl_list fl = s->flight;
    s->flight = (sl_list){0};
    pthread_mutex_unlock(&s->mu);
    /* Unsettled deliveries count, as after a crash. */
    SL_LIST_FOREACH_SAFE(&fl, node, next)
    {
        delivery_free(SL_LIST_ENTRY(node, adelivery, link));
    }
    if (!dead) {
        /* Stop deliveries, unless the interrupt did; those sent before
         * cancel-ok are read into the buffer. */
        sl__amqp_cancel_consumer(e, s->ch);
        pthread_mutex_lock(&s->mu);
        dead = s->dead || s->down;
        pthread_mutex_unlock(&s->mu);
    }
    if (!dead) {
        sl__amqp_release_buffered(e, s);
        /* Everything unacked goes back now, and the round trip makes sure
         * the channel handled it before we report done. A quorum queue may
         * still hand over a delivery or two after cancel-ok: the sub stays
         * registered until the channel is closed so they are seen. */
        amqp_basic_nack(e->conn, s->ch, 0, 1, 1);
        sl__amqp_note_return(e);
        amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
        sl__amqp_check_rpc(e, s->ch);
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        sl__amqp_drain_enqueued(e);
    }
    pthread_mutex_lock(&e->mu);
    for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    sl__amqp_release_buffered(e, s);
    return SL_OK;
}

void sl__amqp_unsubscribe(sl_subscription *base)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    /* Unlinking runs on the I/O thread (also while it reconnects), which
     * walks the list unlocked; only once it is gone may this thread. */
    sl_status st;
    while ((st = sl__amqp_io_call_ex(e, do_unsubscribe, s, true)) != SL_OK) {
        pthread_mutex_lock(&e->mu);
        bool gone = e->io_exited;
        pthread_mutex_unlock(&e->mu);
        if (gone) {
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st != SL_OK) {
        /* The I/O thread is gone: the broker requeued everything. */
        pthread_mutex_lock(&e->mu);
        for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->mu);
        SL_LIST_FOREACH_SAFE(&s->buf, node, next)
        {
            delivery_free(SL_LIST_ENTRY(node, adelivery, link));
        }
        SL_LIST_FOREACH_SAFE(&s->flight, node, next)
        {
            delivery_free(SL_LIST_ENTRY(node, adelivery, link));
        }
    }
    sub_free(s);
}

/* Republish @p d's event to wait @p delay_ms (or at once to the tail of
 * the group's queue), carrying its attempts; then ack the original. */
static sl_status retry_later(amqp_engine *e, adelivery *d, uint64_t delay_ms)
{
    asub *s = d->sub;
    const char *rkey = s->queue;
    retry_args ra = {.queue = s->queue, .delay_ms = delay_ms};
    sl_status st = SL_OK;
    if (delay_ms > 0) {
        st = sl__amqp_io_call(e, sl__amqp_do_declare_retry, &ra);
        if (st == SL_OK) {
            rkey = ra.name;
            pthread_mutex_lock(&e->mu);
            agroup *g = sl__amqp_group_find_locked(e, s->queue);
            if (g != NULL) {
                bool known = false;
                for (size_t i = 0; i < g->ndelays; i++) {
                    known = known || g->delays[i] == delay_ms;
                }
                if (!known && g->ndelays < 16) {
                    g->delays[g->ndelays++] = delay_ms;
                }
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    apub *p = NULL;
    if (st == SL_OK) {
        st = sl__amqp_pub_build(d->base.ev, "", rkey,
                                d->uid ? d->uid : sl__amqp_next_uid(e),
                                d->base.attempt, NULL, &p);
    }
    if (st == SL_OK) {
        st = sl__amqp_submit_sync(e, p);
    }
    sl_free(ra.name);
    if (st != SL_OK) {
        /* Not republished: give it back now rather than lose it. */
        send_settle(e, d, false);
        return st;
    }
    track_forget(e, s->qkey, d->uid);
    return send_settle(e, d, true);
}

sl_status sl__amqp_settle(sl_delivery *base, sl_settle_op op, uint64_t delay_ms,
                          sl_dead_reason reason, const char *error)
{
    adelivery *d = (adelivery *)base;
    asub *s = d->sub;
    amqp_engine *e = s->eng;
    pthread_mutex_lock(&s->mu);
    sl__list_remove(&s->flight, &d->link);
    s->nlimbo++;
    pthread_mutex_unlock(&s->mu);
    sl_status st = SL_OK;
    switch (op) {
    case SL_SETTLE_ACK:
        track_forget(e, s->qkey, d->uid);
        st = send_settle(e, d, true);
        break;
    case SL_SETTLE_RELEASE:
        track_release(e, s->qkey, d->uid);
        st = send_settle(e, d, false);
        break;
    case SL_SETTLE_RETRY:
        st = retry_later(e, d, delay_ms);
        break;
    case SL_SETTLE_DEAD:
        st = dead_letter(e, d, reason, d->base.attempt, error);
        break;
    }
    delivery_free(d);
    limbo_done(s);
    return st == SL_UNAVAILABLE || st == SL_TIMEOUT ? SL_CLOSED : st;
}

/* Ack several deliveries: one basic.ack with multiple per subscription
 * when no other delivery of its channel with a lower tag is still
 * unsettled (the deliveries of one channel carry increasing tags, and a
 * multiple ack settles every unacked one up to its tag); otherwise one
 * basic.ack each. Deliveries of a lost connection are refused (SL_CLOSED)
 * as in settle. */
sl_status sl__amqp_ack_many(sl_delivery **ds, size_t n)
{
    sl_status first = SL_OK;
    size_t i = 0;
    while (i < n) {
        adelivery *d0 = (adelivery *)ds[i];
        asub *s = d0->sub;
        amqp_engine *e = s->eng;
        /* The run of deliveries of the same subscription and connection. */
        size_t j = i + 1;
        while (j < n && ((adelivery *)ds[j])->sub == s &&
               ((adelivery *)ds[j])->gen == d0->gen) {
            j++;
        }
        uint64_t top = 0;
        pthread_mutex_lock(&s->mu);
        for (size_t k = i; k < j; k++) {
            adelivery *d = (adelivery *)ds[k];
            sl__list_remove(&s->flight, &d->link);
            top = d->tag > top ? d->tag : top;
        }
        bool dead = s->dead || s->down || d0->gen != s->gen;
        bool contiguous = s->nlimbo == 0;
        SL_LIST_FOREACH(&s->flight, node)
        {
            const adelivery *o = SL_LIST_ENTRY(node, adelivery, link);
            if (o->gen == d0->gen && o->tag < top) {
                contiguous = false;
                break;
            }
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t k = i; k < j; k++) {
            track_forget(e, s->qkey, ((adelivery *)ds[k])->uid);
        }
        sl_status st = SL_OK;
        if (dead) {
            st = SL_CLOSED; /* the broker requeued them with the channel */
        } else if (contiguous && j - i > 1) {
            areq *r = sl_calloc(1, sizeof *r);
            if (r == NULL) {
                st = SL_NOMEM;
            } else {
                r->kind = REQ_ACK_MULTIPLE;
                r->ch = d0->ch;
                r->tag = top;
                r->gen = d0->gen;
                if (sl__amqp_push_req(e, r) != SL_OK) {
                    sl_free(r);
                    st = SL_CLOSED;
                }
            }
        } else {
            for (size_t k = i; k < j; k++) {
                sl_status one = send_settle(e, (adelivery *)ds[k], true);
                st = st == SL_OK ? one : st;
            }
        }
        for (size_t k = i; k < j; k++) {
            delivery_free((adelivery *)ds[k]);
        }
        if (first == SL_OK) {
            first = st;
        }
        i = j;
    }
    return first;
}

/* The reply of an RPC on @p s's channel. Unlike check_rpc, a channel the
 * broker closes (a missing queue: SL_NOT_FOUND) leaves the subscription
 * alive, without a channel, for the caller to try again. */
static sl_status check_sub_rpc(amqp_engine *e, asub *s)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(e->conn);
    uint16_t code = 0;
    sl_status st = sl__amqp_from_reply(r, &code);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, s->ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        s->ch_closed = true;
    } else if (st != SL_OK) {
        pthread_mutex_lock(&e->mu);
        e->dead = true; /* the connection is gone */
        pthread_mutex_unlock(&e->mu);
        st = SL_UNAVAILABLE;
    }
    sl__amqp_drain_enqueued(e);
    return st;
}

/* Open @p s's channel, set its prefetch and consume from its queue; its
 * deliveries belong to generation @p gen. On failure the subscription
 * stays down. */
static sl_status bind_sub(amqp_engine *e, asub *s, uint32_t gen)
{
    sl_status st = SL_OK;
    if (s->ch_closed) {
        if ((st = sl__amqp_open_channel(e, s->ch)) != SL_OK) {
            return st;
        }
        s->ch_closed = false;
    }
    amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
    if ((st = check_sub_rpc(e, s)) != SL_OK) {
        return st;
    }
    /* Deliveries may follow consume-ok at once: they belong to the new
     * generation. */
    pthread_mutex_lock(&s->mu);
    s->gen = gen;
    s->down = false;
    s->cancelled = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(e->conn, s->ch, amqp_cstring_bytes(s->queue),
                           amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (ok != NULL) {
        char *tag = sl__amqp_dup_bytes(ok->consumer_tag);
        if (tag == NULL) {
            return SL_NOMEM;
        }
        pthread_mutex_lock(&e->mu);
        sl_free(s->ctag);
        s->ctag = tag;
        pthread_mutex_unlock(&e->mu);
    }
    if ((st = check_sub_rpc(e, s)) != SL_OK) {
        pthread_mutex_lock(&s->mu);
        s->down = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return st;
}

/* Consume again on every live subscription (not interrupted, not closed
 * by the broker). A subscription whose queue is missing (deleted, and not
 * declared by this engine, so not declared again) does not fail the
 * reconnect: it waits for its queue (rebind). */
sl_status sl__amqp_resubscribe(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    asub *list = e->subs;
    uint32_t gen = e->gen;
    pthread_mutex_unlock(&e->mu);
    for (asub *s = list; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        bool skip = s->dead || atomic_load(&s->interrupted) ||
                    atomic_load(&s->cancel_asked);
        pthread_mutex_unlock(&s->mu);
        if (skip) {
            continue;
        }
        sl_status st = bind_sub(e, s, gen);
        if (st == SL_OK) {
            clear_rebind(e, s);
        } else if (st == SL_NOT_FOUND && !e->dead) {
            set_rebind(e, s, RECONNECT_MIN_MS);
        } else {
            return st;
        }
    }
    return SL_OK;
}

/* Declare @p s's queue again if this engine declared it (with its
 * exchange and binding): after basic.cancel it may have been deleted. */
static sl_status redeclare_queue_of(amqp_engine *e, asub *s)
{
    declare_args a = {0};
    bool known = false;
    pthread_mutex_lock(&e->mu);
    for (aqueue *q = e->queues; q && !known; q = q->next) {
        if (strcmp(q->queue, s->queue) == 0) {
            a = (declare_args){.exchange = q->exchange,
                               .queue = q->queue,
                               .dlx = q->dlx,
                               .max_length = q->max_length,
                               .max_bytes = q->max_bytes,
                               .delivery_limit = q->delivery_limit};
            known = true;
        }
    }
    achan *c = sl__amqp_chan_find_locked(e, s->channel);
    bool mine = c != NULL && c->declared_here;
    pthread_mutex_unlock(&e->mu);
    if (!known) {
        return SL_OK; /* not ours to create: consume says if it exists */
    }
    sl_status st = SL_OK;
    if (mine) {
        declare_args x = {.exchange = c->exchange};
        st = sl__amqp_do_declare_exchange(e, &x);
    }
    return st == SL_OK ? sl__amqp_do_declare_queue(e, &a) : st;
}

/* Subscribe again, on a fresh channel, where the broker cancelled the
 * consumer (on_broker_cancel): close the old channel (the broker returns
 * what it held, buffered deliveries count as releases, handed-out ones
 * can no longer be settled: their generation is gone), declare the queue
 * again if this engine declared it, consume. On failure try again with
 * backoff (100 ms doubling to 10 s), logging the first failure. */
static void rebind_one(amqp_engine *e, asub *s)
{
    if (!s->ch_closed) {
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        s->ch_closed = true;
        sl__amqp_drain_enqueued(e);
        pthread_mutex_lock(&e->mu);
        bool dead = e->dead;
        pthread_mutex_unlock(&e->mu);
        if (dead) {
            return;
        }
    }
    sl__amqp_release_buffered(e, s);
    sl_status st = redeclare_queue_of(e, s);
    if (st == SL_OK) {
        pthread_mutex_lock(&e->mu);
        uint32_t gen = ++e->gen;
        pthread_mutex_unlock(&e->mu);
        st = bind_sub(e, s, gen);
    }
    if (st == SL_OK) {
        clear_rebind(e, s);
        sl_logf(SL_LOG_INFO, LOG, "subscribed again to queue %s (group '%s')",
                s->queue, s->group);
        return;
    }
    if (e->dead || st == SL_UNAVAILABLE) {
        return; /* the reconnect subscribes again */
    }
    uint32_t delay =
        s->rebind_delay_ms ? s->rebind_delay_ms * 2 : RECONNECT_MIN_MS;
    delay = delay > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay;
    if (!s->rebind_warned) {
        sl_logf(SL_LOG_WARN, LOG,
                "cannot subscribe again to queue %s (group '%s'): %s; "
                "trying again with backoff",
                s->queue, s->group,
                st == SL_NOT_FOUND ? "it does not exist and this process "
                                     "did not declare it"
                                   : sl_status_str(st));
    }
    set_rebind(e, s, delay);
    s->rebind_warned = true;
}

/* Subscriptions whose consumer the broker cancelled, when due. */
void sl__amqp_rebind_due(amqp_engine *e)
{
    asub *due[64];
    size_t n = 0;
    uint64_t now = sl_time_mono_ms();
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s && n < 64; s = s->next) {
        if (s->rebind && now >= s->rebind_at_ms) {
            due[n++] = s;
        }
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n && !e->dead; i++) {
        pthread_mutex_lock(&due[i]->mu);
        bool gone = due[i]->dead || atomic_load(&due[i]->interrupted) ||
                    atomic_load(&due[i]->cancel_asked);
        pthread_mutex_unlock(&due[i]->mu);
        if (gone) {
            clear_rebind(e, due[i]); /* unsubscribe closes its channel */
        } else {
            rebind_one(e, due[i]);
        }
    }
}
