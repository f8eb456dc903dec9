/* The RabbitMQ engine's inspection: depth and browse. */
#include "engine/amqp/amqp_int.h"

#include "sluice/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct depth_args {
    const char *queue;
    uint64_t qkey;
    uint64_t delays[16];
    size_t ndelays;
    sl_depth out;
} depth_args;

static void barrier_queue(amqp_engine *e, uint64_t qkey)
{
    asub *list[256];
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s && n < 256; s = s->next) {
        if (s->qkey == qkey) {
            list[n++] = s;
        }
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        sl__amqp_barrier(e, list[i]);
    }
}

/* A quorum queue applies a return (nack with requeue) once its Raft log
 * entry is written, after the channel answered: counts read right after a
 * return may not show it yet. Let the last return settle first. */
void sl__amqp_await_returns(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    uint64_t last = e->last_return_ms;
    pthread_mutex_unlock(&e->mu);
    uint64_t now = sl_time_mono_ms();
    if (last != 0 && now < last + RETURN_SETTLE_MS) {
        uint64_t ms = last + RETURN_SETTLE_MS - now;
        struct timespec ts = {(time_t)(ms / 1000),
                              (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The broker's ready count of @p a's queue plus what this engine's
 * subscriptions buffer, and what they have handed out. */
static sl_status sample_depth(amqp_engine *e, depth_args *a, uint64_t *ready,
                              uint64_t *in_flight)
{
    /* The channels have handled the acks and nacks sent before; then the
     * broker's count; then a second round trip, so that deliveries the
     * queue handed our subscriptions before it counted are in their
     * buffers. */
    barrier_queue(e, a->qkey);
    declare_args qa = {.queue = a->queue, .passive = true};
    sl_status st = sl__amqp_do_declare_queue(e, &qa);
    if (st != SL_OK) {
        return st;
    }
    barrier_queue(e, a->qkey);
    *ready = qa.message_count;
    *in_flight = 0;
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        if (s->qkey == a->qkey) {
            pthread_mutex_lock(&s->mu);
            *ready += s->buf.n;
            *in_flight += s->flight.n;
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

static sl_status do_depth(amqp_engine *e, void *arg)
{
    depth_args *a = arg;
    sl__amqp_await_returns(e);
    /* A quorum queue applies acks through its Raft log, after the channel
     * answered: a count taken before an ack is applied, plus deliveries
     * the queue checked out to us once it was, counts those twice. Two
     * samples that agree are consistent; a few tries, then the last. */
    uint64_t ready = 0, in_flight = 0, delayed = 0;
    sl_status st = sample_depth(e, a, &ready, &in_flight);
    for (int i = 0; i < DEPTH_TRIES && st == SL_OK; i++) {
        uint64_t r2 = 0, f2 = 0;
        st = sample_depth(e, a, &r2, &f2);
        bool same = r2 == ready && f2 == in_flight;
        ready = r2;
        in_flight = f2;
        if (same) {
            break;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st != SL_OK) {
        return st;
    }
    for (size_t i = 0; i < a->ndelays; i++) {
        char ms[32];
        snprintf(ms, sizeof ms, "%" PRIu64, a->delays[i]);
        char *rq = sl__amqp_cat4(a->queue, "/retry/", ms, "");
        if (rq == NULL) {
            return SL_NOMEM;
        }
        declare_args ra = {.queue = rq, .passive = true};
        if (sl__amqp_do_declare_queue(e, &ra) == SL_OK) {
            delayed += ra.message_count;
        }
        sl_free(rq);
    }
    a->out =
        (sl_depth){.ready = ready, .delayed = delayed, .in_flight = in_flight};
    return SL_OK;
}

sl_status sl__amqp_depth(sl_engine *base, const char *channel,
                         const char *group, sl_depth *out)
{
    amqp_engine *e = (amqp_engine *)base;
    char *q = sl__amqp_queue_name(e, channel, group);
    if (q == NULL) {
        return SL_NOMEM;
    }
    depth_args a = {.queue = q, .qkey = sl__amqp_fnv1a(q)};
    pthread_mutex_lock(&e->mu);
    agroup *g = sl__amqp_group_find_locked(e, q);
    if (g != NULL) {
        a.ndelays = g->ndelays;
        memcpy(a.delays, g->delays, sizeof a.delays);
    }
    pthread_mutex_unlock(&e->mu);
    sl_status st = sl__amqp_io_call(e, do_depth, &a);
    sl_free(q);
    if (st == SL_OK) {
        *out = a.out;
    }
    return st;
}

typedef struct browse_args {
    const char *queue;
    size_t max;
    sl_event **evs;
    size_t n;
} browse_args;

static sl_status do_browse(amqp_engine *e, void *arg)
{
    browse_args *a = arg;
    pthread_mutex_lock(&e->mu);
    if (e->next_ch == 0) {
        e->next_ch = FIRST_SUB_CH;
    }
    uint16_t ch = e->next_ch++;
    pthread_mutex_unlock(&e->mu);
    sl_status st = sl__amqp_open_channel(e, ch);
    if (st != SL_OK) {
        return st;
    }
    while (a->max == 0 || a->n < a->max) {
        amqp_rpc_reply_t r =
            amqp_basic_get(e->conn, ch, amqp_cstring_bytes(a->queue), 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            uint16_t code;
            st = sl__amqp_from_reply(r, &code);
            if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                amqp_channel_close_ok_t ok = {0};
                amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD,
                                 &ok);
                sl__amqp_drain_enqueued(e);
                return st;
            }
            break;
        }
        if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
            break; /* get-empty */
        }
        amqp_message_t m;
        r = amqp_read_message(e->conn, ch, &m, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            st = SL_UNAVAILABLE;
            break;
        }
        sl_event *ev = NULL;
        if (sl__amqp_message_to_event(&m, a->queue, &ev) == SL_OK) {
            sl_event **grown = sl_realloc(a->evs, (a->n + 1) * sizeof *grown);
            if (grown == NULL) {
                sl_event_unref(ev);
                amqp_destroy_message(&m);
                st = SL_NOMEM;
                break;
            }
            a->evs = grown;
            a->evs[a->n++] = ev;
        }
        amqp_destroy_message(&m);
    }
    /* Give everything back, and wait until the broker has it. */
    amqp_basic_nack(e->conn, ch, 0, 1, 1);
    sl__amqp_note_return(e);
    amqp_basic_qos(e->conn, ch, 0, 1, 0);
    sl__amqp_check_rpc(e, ch);
    amqp_channel_close(e->conn, ch, AMQP_REPLY_SUCCESS);
    sl__amqp_drain_enqueued(e);
    return st;
}

sl_status sl__amqp_browse(sl_engine *base, const char *channel,
                          const char *group, size_t max, sl_browse_fn fn,
                          void *ctx)
{
    amqp_engine *e = (amqp_engine *)base;
    char *q = sl__amqp_queue_name(e, channel, group);
    if (q == NULL) {
        return SL_NOMEM;
    }
    browse_args a = {.queue = q, .max = max};
    sl_status st = sl__amqp_io_call(e, do_browse, &a);
    for (size_t i = 0; i < a.n; i++) {
        if (st == SL_OK && !fn(a.evs[i], 0, ctx)) {
            st = SL_EMPTY; /* stopped by the callback */
        }
        sl_event_unref(a.evs[i]);
    }
    sl_free(a.evs);
    sl_free(q);
    return st == SL_EMPTY ? SL_OK : st;
}

bool sl__amqp_is_ready(const sl_engine *base)
{
    amqp_engine *e = (amqp_engine *)base;
    pthread_mutex_lock(&e->mu);
    bool ok = !e->dead && !e->stopping;
    pthread_mutex_unlock(&e->mu);
    return ok;
}
