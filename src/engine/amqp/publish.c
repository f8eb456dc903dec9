/* The RabbitMQ engine's publish path: the caller's side (room checks,
 * the pending window, synchronous publishes) and the I/O thread's (send,
 * confirms, returns). */
#include "engine/amqp/amqp_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"

#include <string.h>

uint64_t sl__amqp_next_uid(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    /* xorshift64*: unique enough to tell a queue's messages apart. */
    uint64_t x = e->uid_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->uid_state = x;
    pthread_mutex_unlock(&e->mu);
    return x * 2685821657736338717ULL;
}

void sl__amqp_confirm_one(amqp_engine *e, apub *p, sl_status st)
{
    if (st == SL_OK && p->returned) {
        st = SL_NOT_FOUND; /* unroutable: no group bound */
    }
    if (st == SL_OK && p->chan != NULL && p->dedup_id != NULL) {
        pthread_mutex_lock(&e->mu);
        sl__dedup_add(e->dedup, p->chan, p->dedup_id,
                      sl_clock_now_ms(e->clock));
        pthread_mutex_unlock(&e->mu);
    }
    if (p->cb != NULL) {
        p->cb(st, p->ctx);
    }
    sl__amqp_pub_free(p);
    pthread_mutex_lock(&e->mu);
    e->npending--;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void sl__amqp_confirm_tags(amqp_engine *e, uint64_t tag, bool multiple,
                           sl_status st)
{
    apub **pp = &e->unconf_head;
    apub *prev = NULL;
    while (*pp != NULL) {
        apub *p = *pp;
        if (p->tag > tag) {
            break;
        }
        if (multiple || p->tag == tag) {
            *pp = p->next;
            if (e->unconf_tail == p) {
                e->unconf_tail = prev;
            }
            sl__amqp_confirm_one(e, p, st);
            if (!multiple) {
                break;
            }
            continue;
        }
        prev = p;
        pp = &p->next;
    }
}

void sl__amqp_fail_unconfirmed(amqp_engine *e, sl_status st)
{
    apub *p = e->unconf_head;
    e->unconf_head = e->unconf_tail = NULL;
    while (p != NULL) {
        apub *next = p->next;
        sl__amqp_confirm_one(e, p, st);
        p = next;
    }
}

sl_status sl__amqp_open_publish_channel(amqp_engine *e)
{
    sl_status st = sl__amqp_open_channel(e, PUB_CH);
    if (st != SL_OK) {
        return st;
    }
    amqp_confirm_select(e->conn, PUB_CH);
    uint16_t code;
    st = sl__amqp_from_reply(amqp_get_rpc_reply(e->conn), &code);
    e->next_tag = 1;
    return st;
}

void sl__amqp_send_publish(amqp_engine *e, apub *p)
{
    amqp_table_entry_t entries[PUB_MAX_HEADERS];
    amqp_basic_properties_t props;
    sl__amqp_pub_properties(p, &props, entries);
    amqp_bytes_t body = {.len = p->body_len, .bytes = p->body};
    int rc = amqp_basic_publish(
        e->conn, PUB_CH, amqp_cstring_bytes(p->exchange),
        amqp_cstring_bytes(p->rkey), p->mandatory, 0, &props, body);
    if (rc != AMQP_STATUS_OK) {
        sl__amqp_confirm_one(e, p, SL_UNAVAILABLE);
        return;
    }
    p->tag = e->next_tag++;
    p->next = NULL;
    if (e->unconf_tail) {
        e->unconf_tail->next = p;
    } else {
        e->unconf_head = p;
    }
    e->unconf_tail = p;
}

void sl__amqp_on_return(amqp_engine *e)
{
    amqp_message_t m;
    amqp_rpc_reply_t r = amqp_read_message(e->conn, PUB_CH, &m, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        return;
    }
    uint64_t uid;
    uint32_t dc, base;
    sl__amqp_read_counts(&m, &uid, &dc, &base);
    amqp_destroy_message(&m);
    for (apub *p = e->unconf_head; p; p = p->next) {
        if (p->uid == uid && !p->returned) {
            p->returned = true;
            break;
        }
    }
}

void sl__amqp_note_return(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->last_return_ms = sl_time_mono_ms();
    pthread_mutex_unlock(&e->mu);
}

static sl_status check_exchange(amqp_engine *e, const char *channel,
                                achan **out)
{
    pthread_mutex_lock(&e->mu);
    achan *c = sl__amqp_chan_find_locked(e, channel);
    pthread_mutex_unlock(&e->mu);
    if (c != NULL) {
        *out = c;
        return SL_OK;
    }
    char *x = sl__amqp_exchange_name(e, channel);
    if (x == NULL) {
        return SL_NOMEM;
    }
    declare_args a = {.exchange = x, .passive = true};
    sl_status st = sl__amqp_io_call(e, sl__amqp_do_declare_exchange, &a);
    sl_free(x);
    if (st != SL_OK) {
        return st;
    }
    c = sl__amqp_chan_remember(e, channel, 0, 0, false);
    if (c == NULL) {
        return SL_NOMEM;
    }
    *out = c;
    return SL_OK;
}

typedef struct room_args {
    const char *channel;
    uint64_t max_length;
} room_args;

/* SL_FULL when a group of the channel (known to this engine) holds
 * max_length events: ready at the broker plus what this engine holds. */
static sl_status do_check_room(amqp_engine *e, void *arg)
{
    room_args *a = arg;
    sl__amqp_await_returns(e);
    char *queues[64];
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (agroup *g = e->groups; g && n < 64; g = g->next) {
        if (strcmp(g->channel, a->channel) == 0) {
            queues[n++] = sl_strdup(g->queue);
        }
    }
    pthread_mutex_unlock(&e->mu);
    sl_status st = SL_OK;
    for (size_t i = 0; i < n; i++) {
        if (queues[i] == NULL) {
            continue;
        }
        declare_args qa = {.queue = queues[i], .passive = true};
        if (st == SL_OK && sl__amqp_do_declare_queue(e, &qa) == SL_OK) {
            uint64_t held = qa.message_count;
            uint64_t key = sl__amqp_fnv1a(queues[i]);
            pthread_mutex_lock(&e->mu);
            for (asub *s = e->subs; s; s = s->next) {
                if (s->qkey == key) {
                    pthread_mutex_lock(&s->mu);
                    held += s->buf.n + s->flight.n;
                    pthread_mutex_unlock(&s->mu);
                }
            }
            pthread_mutex_unlock(&e->mu);
            if (held >= a->max_length) {
                st = SL_FULL;
            }
        }
        sl_free(queues[i]);
    }
    return st;
}

/* Hand @p p to the I/O thread. On failure @p p is freed and cb not
 * called. */
static sl_status submit(amqp_engine *e, apub *p)
{
    pthread_mutex_lock(&e->mu);
    if (e->dead || e->stopping) {
        sl_status why = e->dead ? SL_UNAVAILABLE : SL_CLOSED;
        pthread_mutex_unlock(&e->mu);
        sl__amqp_pub_free(p);
        return why;
    }
    if (e->blocked || e->npending >= PUB_MAX_PENDING) {
        pthread_mutex_unlock(&e->mu);
        sl__amqp_pub_free(p);
        return SL_FULL;
    }
    e->npending++;
    pthread_mutex_unlock(&e->mu);
    sl_status st = sl__amqp_push_req(e, &p->req);
    if (st != SL_OK) {
        sl__amqp_pub_free(p);
        pthread_mutex_lock(&e->mu);
        e->npending--;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        return st == SL_FULL ? SL_FULL : SL_CLOSED;
    }
    return SL_OK;
}

/* Publish and wait for the confirm on the calling thread. */
sl_status sl__amqp_submit_sync(amqp_engine *e, apub *p)
{
    sl_waiter *w = NULL;
    if (sl__waiter_create(&w) != SL_OK) {
        sl__amqp_pub_free(p);
        return SL_NOMEM;
    }
    p->cb = sl__waiter_signal;
    p->ctx = w;
    sl_status st = submit(e, p);
    if (st != SL_OK) {
        sl__waiter_destroy(w);
        return st;
    }
    return sl__waiter_wait(w, API_WAIT_MS);
}

sl_status sl__amqp_publish(sl_engine *base, const char *channel, sl_event *ev,
                           unsigned flags, unsigned hints, sl_publish_cb cb,
                           void *ctx)
{
    (void)hints; /* confirms are always called on the I/O thread */
    amqp_engine *e = (amqp_engine *)base;
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    achan *c = NULL;
    if ((st = check_exchange(e, channel, &c)) != SL_OK) {
        return st;
    }
    bool dedup = !(flags & SL_PUBLISH_NO_DEDUP);
    if (dedup) {
        pthread_mutex_lock(&e->mu);
        bool dup = sl__dedup_contains(e->dedup, c, sl_event_id(ev),
                                      sl_clock_now_ms(e->clock));
        pthread_mutex_unlock(&e->mu);
        if (dup) {
            if (cb != NULL) {
                cb(SL_OK, ctx);
            }
            return SL_OK;
        }
    }
    apub *p = NULL;
    if ((st = sl__amqp_pub_build(ev, c->exchange, channel, sl__amqp_next_uid(e),
                                 0, dedup ? sl_event_id(ev) : NULL, &p)) !=
        SL_OK) {
        return st;
    }
    if (dedup) {
        p->chan = c;
    }
    if (c->max_length == 0 && c->max_bytes == 0) {
        p->cb = cb;
        p->ctx = ctx;
        return submit(e, p);
    }
    /* A bounded channel publishes synchronously, so that a reject-publish
     * nack is this call's SL_FULL, as the API promises. A quorum queue
     * applies reject-publish one event late and asynchronously, so the
     * engine checks the room of the groups it knows first; AMQP 0-9-1
     * tells a queue's message count but not its bytes, so max_bytes has
     * only the broker's check (one event late). */
    if (c->max_length != 0) {
        room_args ra = {.channel = channel, .max_length = c->max_length};
        if ((st = sl__amqp_io_call(e, do_check_room, &ra)) != SL_OK) {
            sl__amqp_pub_free(p);
            return st;
        }
    }
    st = sl__amqp_submit_sync(e, p);
    if (st == SL_TIMEOUT || st == SL_OK) {
        if (cb != NULL) {
            cb(st, ctx);
        }
        return SL_OK;
    }
    return st;
}
