/* The NATS engine's settlements (nats_int.h): ack, retry, release and
 * dead-letter one delivery, acks in batches and their confirmation,
 * +WPI heartbeats for deliveries held long, the memory of given-back
 * deliveries, and the server's max-deliveries advisory.
 */
#include "engine/nats/nats_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <jansson.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- the memory of given-back deliveries --------------------------------- */

void sl__nats_track_forget(nats_engine *e, uint64_t key, uint64_t seq)
{
    pthread_mutex_lock(&e->mu);
    track *t = sl__track_find(&e->tracks, key, seq, false);
    if (t != NULL) {
        sl__track_drop(&e->tracks, t);
    }
    pthread_mutex_unlock(&e->mu);
}

void sl__nats_track_nak(nats_engine *e, uint64_t key, uint64_t seq,
                        bool release, uint64_t delay_ms)
{
    pthread_mutex_lock(&e->mu);
    track *t = sl__track_find(&e->tracks, key, seq, true);
    t->released += release ? 1 : 0;
    t->nakked = true;
    t->due_ms = sl_clock_now_ms(e->clock) + delay_ms;
    pthread_mutex_unlock(&e->mu);
}

/* Settle on the server and wait for its answer (the "ack of the ack"), so
 * that depth read right after sees it. */
sl_status sl__nats_settle_sync(nats_engine *e, natsMsg *m, const char *body)
{
    const char *reply = natsMsg_GetReply(m);
    if (reply == NULL) {
        return SL_INVALID;
    }
    natsMsg *resp = NULL;
    natsStatus s = natsConnection_Request(&resp, e->nc, reply, body,
                                          (int)strlen(body), API_WAIT_MS);
    natsMsg_Destroy(resp);
    return sl__nats_status(s);
}

void sl__nats_delivery_free(ndelivery *d)
{
    sl_event_unref(d->base.ev);
    natsMsg_Destroy(d->msg);
    sl_free(d);
}

/* Publish the dead letter of @p ev (from group @p group on @p channel) and
 * wait for its PubAck. @p msg_id, when set, is its Nats-Msg-Id, so that a
 * repeated attempt within the duplicate window adds nothing. */
static sl_status publish_dead_letter(nats_engine *e, const char *channel,
                                     const char *group, const sl_event *ev,
                                     sl_dead_reason reason, uint32_t attempts,
                                     const char *error, const char *msg_id)
{
    char dlq[512];
    sl_status st = sl__dlq_channel_name(channel, group, dlq, sizeof dlq);
    sl_event *dead = NULL;
    char *subject = NULL;
    natsMsg *out = NULL;
    if (st == SL_OK) {
        st = sl__dead_letter_event(ev, reason, attempts, error, channel, group,
                                   sl_clock_now_ms(e->clock), &dead);
    }
    if (st == SL_OK) {
        st = sl__nats_chan_lookup(e, dlq, &subject);
    }
    if (st == SL_OK) {
        st = sl__nats_event_to_msg(dead, subject, false, &out);
    }
    if (st == SL_OK && msg_id != NULL) {
        st = sl__nats_status(natsMsgHeader_Set(out, "Nats-Msg-Id", msg_id));
    }
    if (st == SL_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = API_WAIT_MS;
        jsErrCode jerr = 0;
        natsStatus ns = js_PublishMsg(NULL, e->js, out, &po, &jerr);
        st = ns == NATS_OK
                 ? SL_OK
                 : sl__nats_pub_error(ns, jerr, nats_GetLastError(NULL));
    }
    natsMsg_Destroy(out);
    sl_free(subject);
    sl_event_unref(dead);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG, "dead-lettering %s from %s/%s failed: %s",
                sl_event_id(ev), channel, group, sl_status_str(st));
    }
    return st;
}

/* Publish the dead letter of @p ev and terminate @p m. */
sl_status sl__nats_dead_letter(nats_engine *e, nats_sub *s, natsMsg *m,
                               const sl_event *ev, uint64_t seq,
                               sl_dead_reason reason, uint32_t attempts,
                               const char *error)
{
    sl_status st = publish_dead_letter(e, s->channel, s->group, ev, reason,
                                       attempts, error, NULL);
    if (st != SL_OK) {
        /* Keep the event: it comes back after AckWait rather than being
         * lost without a dead letter. */
        return st;
    }
    sl__nats_track_forget(e, s->key, seq);
    return sl__nats_settle_sync(e, m, "+TERM");
}
sl_status sl__nats_settle(sl_delivery *base, sl_settle_op op, uint64_t delay_ms,
                          sl_dead_reason reason, const char *error)
{
    ndelivery *d = (ndelivery *)base;
    nats_sub *s = d->sub;
    nats_engine *e = s->eng;
    pthread_mutex_lock(&s->mu);
    sl__list_remove(&s->flight, &d->link);
    pthread_mutex_unlock(&s->mu);
    sl_status st = SL_OK;
    switch (op) {
    case SL_SETTLE_ACK:
        sl__nats_track_forget(e, s->key, d->seq);
        st = sl__nats_settle_sync(e, d->msg, "+ACK");
        break;
    case SL_SETTLE_DEAD:
        st = sl__nats_dead_letter(e, s, d->msg, d->base.ev, d->seq, reason,
                                  d->base.attempt, error);
        break;
    case SL_SETTLE_RELEASE:
    case SL_SETTLE_RETRY: {
        /* A release is not an attempt; a delayed one (an id another
         * process is handling, kv.c) waits like a retry. */
        sl__nats_track_nak(e, s->key, d->seq, op == SL_SETTLE_RELEASE,
                           delay_ms);
        char body[64];
        if (delay_ms == 0) {
            snprintf(body, sizeof body, "-NAK");
        } else {
            snprintf(body, sizeof body, "-NAK {\"delay\": %" PRIu64 "}",
                     delay_ms * 1000000);
        }
        st = sl__nats_settle_sync(e, d->msg, body);
        break;
    }
    }
    sl__nats_delivery_free(d);
    return st == SL_UNAVAILABLE || st == SL_TIMEOUT ? SL_CLOSED : st;
}

/* nats.c's thread: the server's answer to an ack sent by ack_many. */
void sl__nats_on_ack_reply(natsConnection *nc, natsSubscription *sub,
                           natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nats_engine *e = closure;
    pthread_mutex_lock(&e->mu);
    if (e->acks_unconfirmed > 0) {
        e->acks_unconfirmed--;
    }
    pthread_cond_broadcast(&e->ack_cv);
    pthread_mutex_unlock(&e->mu);
    natsMsg_Destroy(msg);
}

/* Remember @p reply as the last ack sent for group @p key. */
static void ack_mark_set(nats_engine *e, uint64_t key, const char *reply)
{
    size_t len = strlen(reply) + 1;
    pthread_mutex_lock(&e->mu);
    ack_mark *a = e->ack_marks;
    while (a != NULL && a->key != key) {
        a = a->next;
    }
    if (a == NULL && (a = sl_calloc(1, sizeof *a)) != NULL) {
        a->key = key;
        a->next = e->ack_marks;
        e->ack_marks = a;
    }
    if (a != NULL && len > a->cap) {
        char *grown = sl_realloc(a->reply, len);
        if (grown != NULL) {
            a->reply = grown;
            a->cap = len;
        }
    }
    if (a != NULL && len <= a->cap) {
        memcpy(a->reply, reply, len);
        a->dirty = true;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Ack again the last ack of every group that sent some since, asking for
 * the server's answer on ack_sub. Called with e->mu held; drops it while
 * publishing. */
static void ack_marks_confirm(nats_engine *e)
{
    for (ack_mark *a = e->ack_marks; a != NULL; a = a->next) {
        if (!a->dirty) {
            continue;
        }
        a->dirty = false;
        char inbox[128];
        snprintf(inbox, sizeof inbox, "%s.%" PRIu64, e->ack_inbox,
                 ++e->ack_seq);
        e->acks_unconfirmed++;
        e->ack_last_sent_ms = sl_time_mono_ms();
        /* The mark stays in the list until close, but ack_mark_set may
         * rewrite its subject once e->mu is dropped: publish a copy. */
        size_t len = strlen(a->reply) + 1;
        char *subject = sl_malloc(len);
        if (subject != NULL) {
            memcpy(subject, a->reply, len);
        }
        pthread_mutex_unlock(&e->mu);
        natsStatus s = subject != NULL ? natsConnection_PublishRequestString(
                                             e->nc, subject, inbox, "+ACK")
                                       : NATS_NO_MEMORY;
        sl_free(subject);
        pthread_mutex_lock(&e->mu);
        if (s != NATS_OK && e->acks_unconfirmed > 0) {
            e->acks_unconfirmed--;
        }
    }
}

/* Wait until the server applied every ack ack_many sent, so that what is
 * read next (depth, browse, another process after close) includes them.
 * An answer lost with a connection is given up on API_WAIT_MS after the
 * last confirmation was sent. */
void sl__nats_acks_settle_wait(nats_engine *e)
{
    pthread_mutex_lock(&e->mu);
    ack_marks_confirm(e);
    while (e->acks_unconfirmed > 0) {
        uint64_t now = sl_time_mono_ms();
        uint64_t until = e->ack_last_sent_ms + API_WAIT_MS;
        if (now >= until) {
            e->acks_unconfirmed = 0; /* lost: the server redelivers */
            break;
        }
        struct timespec ts;
        sl__deadline_after(&ts, until - now);
        pthread_cond_timedwait(&e->ack_cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
}

void sl__nats_ack_marks_free(nats_engine *e)
{
    while (e->ack_marks != NULL) {
        ack_mark *a = e->ack_marks;
        e->ack_marks = a->next;
        sl_free(a->reply);
        sl_free(a);
    }
}

/* True if the delivery after ds[i] (skipping NULLs) is of another
 * subscription, or there is none. */
static bool last_of_sub(sl_delivery **ds, size_t n, size_t i)
{
    const nats_sub *s = ((ndelivery *)ds[i])->sub;
    for (size_t j = i + 1; j < n; j++) {
        if (ds[j] != NULL) {
            return ((ndelivery *)ds[j])->sub != s;
        }
    }
    return true;
}

sl_status sl__nats_ack_many(sl_delivery **ds, size_t n)
{
    /* Plain acks, without waiting for the server: the worker goes on to
     * its next fetch at once. The last one of each group is remembered,
     * to be confirmed by the next depth, browse or close. */
    sl_status first = SL_OK;
    /* Out of flight first, one lock for each subscription's run. */
    nats_sub *locked = NULL;
    for (size_t i = 0; i < n; i++) {
        ndelivery *d = (ndelivery *)ds[i];
        if (d == NULL) {
            continue;
        }
        if (d->sub != locked) {
            if (locked != NULL) {
                pthread_mutex_unlock(&locked->mu);
            }
            locked = d->sub;
            pthread_mutex_lock(&locked->mu);
        }
        sl__list_remove(&d->sub->flight, &d->link);
    }
    if (locked != NULL) {
        pthread_mutex_unlock(&locked->mu);
    }
    /* The acks in one burst, so that they leave in few writes (the
     * server reads fewer, larger packets). */
    nats_engine *e = NULL;
    for (size_t i = 0; i < n; i++) {
        ndelivery *d = (ndelivery *)ds[i];
        if (d == NULL) {
            continue;
        }
        e = d->sub->eng;
        const char *reply = natsMsg_GetReply(d->msg);
        sl_status st = reply == NULL
                           ? SL_INVALID
                           : sl__nats_status(natsConnection_PublishString(
                                 e->nc, reply, "+ACK"));
        if (st == SL_OK && last_of_sub(ds, n, i)) {
            ack_mark_set(e, d->sub->key, reply);
        }
        if (first == SL_OK && st != SL_OK) {
            first = st;
        }
    }
    /* Then what is remembered of them goes (one lock: a consumer's batch
     * is of one engine), and the deliveries. */
    if (e != NULL) {
        pthread_mutex_lock(&e->mu);
        for (size_t i = 0; i < n; i++) {
            ndelivery *d = (ndelivery *)ds[i];
            if (d == NULL) {
                continue;
            }
            if (d->sub->eng != e) {
                pthread_mutex_unlock(&e->mu);
                e = d->sub->eng;
                pthread_mutex_lock(&e->mu);
            }
            track *t = sl__track_find(&e->tracks, d->sub->key, d->seq, false);
            if (t != NULL) {
                sl__track_drop(&e->tracks, t);
            }
        }
        pthread_mutex_unlock(&e->mu);
    }
    for (size_t i = 0; i < n; i++) {
        if (ds[i] != NULL) {
            sl__nats_delivery_free((ndelivery *)ds[i]);
        }
    }
    return first;
}

/* ---- heartbeat: +WPI for long-held deliveries ---------------------------- */

void *sl__nats_hb_main(void *arg)
{
    nats_engine *e = arg;
    uint64_t period = (uint64_t)e->ack_wait_ms / 3;
    if (period < 10) {
        period = 10;
    }
    pthread_mutex_lock(&e->mu);
    while (!e->closing) {
        struct timespec ts;
        sl__deadline_after(&ts, period);
        pthread_cond_timedwait(&e->hb_cv, &e->mu, &ts);
        if (e->closing) {
            break;
        }
        uint64_t now = sl_time_mono_ms();
        for (nats_sub *s = e->subs; s; s = s->next) {
            pthread_mutex_lock(&s->mu);
            SL_LIST_FOREACH(&s->flight, node)
            {
                ndelivery *d = SL_LIST_ENTRY(node, ndelivery, link);
                if (now - d->held_since >= period) {
                    natsConnection_PublishString(
                        e->nc, natsMsg_GetReply(d->msg), "+WPI");
                    d->held_since = now;
                }
            }
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the max-deliveries advisory --------------------------------------- */

/* Dead-letter stream message @p seq of @p a's group, which the server
 * stopped delivering after @p deliveries, and make it leave the stream for
 * this group. */
static void dead_letter_undeliverable(nats_engine *e, nadv *a, uint64_t seq,
                                      uint64_t deliveries)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_GetMsg(&m, e->js, a->stream, seq, NULL, &jerr);
    if (ns != NATS_OK) {
        if (ns == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
            return; /* gone already: every group is done with it */
        }
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: reading message %" PRIu64 " of %s: %s", seq,
                a->stream, natsStatus_GetText(ns));
        return;
    }
    uint32_t released = 0;
    pthread_mutex_lock(&e->mu);
    track *t = sl__track_find(&e->tracks, a->key, seq, false);
    if (t != NULL) {
        released = t->released;
    }
    pthread_mutex_unlock(&e->mu);
    uint32_t attempts = deliveries > released
                            ? (uint32_t)(deliveries - released > UINT32_MAX
                                             ? UINT32_MAX
                                             : deliveries - released)
                            : 0;
    sl_event *ev = NULL;
    sl_status st =
        sl__nats_msg_to_event(m, a->stream, a->stream_created_ns, seq, &ev);
    natsMsg_Destroy(m);
    if (st == SL_OK) {
        char error[160];
        char msg_id[320];
        snprintf(error, sizeof error,
                 "the server stopped delivering it after %" PRIu64
                 " deliveries (MaxDeliver): its handler crashed or timed "
                 "out every time",
                 deliveries);
        snprintf(msg_id, sizeof msg_id,
                 "sluice-max-deliveries-%s-%" PRIu64 "-%s-%" PRIu64, a->stream,
                 a->stream_created_ns, a->durable, seq);
        st = publish_dead_letter(e, a->channel, a->group, ev,
                                 SL_DEAD_MAX_DELIVERIES, attempts, error,
                                 msg_id);
        if (st == SL_OK) {
            sl_logf(SL_LOG_WARN, LOG,
                    "event %s of %s/%s reached the server's delivery limit "
                    "(%" PRIu64 " deliveries): dead-lettered",
                    sl_event_id(ev), a->channel, a->group, deliveries);
        }
        sl_event_unref(ev);
    } else {
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: message %" PRIu64 " on %s is not a readable "
                "event (%s): terminated without a dead letter",
                seq, a->stream, sl_status_str(st));
        st = SL_OK;
    }
    if (st != SL_OK) {
        return; /* stays in the stream, undelivered: logged above */
    }
    /* The delivery itself is gone with the advisory: acknowledge the
     * sequence for this consumer on its ack subject (the server keys acks
     * by stream sequence), so that interest retention lets it go. */
    char ack[512];
    snprintf(ack, sizeof ack, "$JS.ACK.%s.%s.1.%" PRIu64 ".0.0.0", a->stream,
             a->durable, seq);
    natsMsg *resp = NULL;
    ns = natsConnection_RequestString(&resp, e->nc, ack, "+TERM", API_WAIT_MS);
    natsMsg_Destroy(resp);
    if (ns != NATS_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: terminating message %" PRIu64 " of %s/%s: %s",
                seq, a->channel, a->group, natsStatus_GetText(ns));
    }
    sl__nats_track_forget(e, a->key, seq);
}

/* nats.c's thread (this subscription's own): the server stopped delivering
 * a message of a group this process consumes, at the consumer's
 * MaxDeliver. It does so only when it would deliver it once more, so some
 * process of the group is fetching; the queue group gives each advisory
 * to one of them. The work here is the engine's own (stream get, publish,
 * ack), not a user callback. */
static void on_max_deliveries(natsConnection *nc, natsSubscription *sub,
                              natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nadv *a = closure;
    nats_engine *e = a->eng;
    json_error_t jerr;
    json_t *root = json_loadb(natsMsg_GetData(msg),
                              (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
    natsMsg_Destroy(msg);
    json_t *jseq = json_object_get(root, "stream_seq");
    json_t *jdel = json_object_get(root, "deliveries");
    uint64_t seq =
        json_is_integer(jseq) ? (uint64_t)json_integer_value(jseq) : 0;
    uint64_t deliveries =
        json_is_integer(jdel) ? (uint64_t)json_integer_value(jdel) : 0;
    json_decref(root);
    pthread_mutex_lock(&e->mu);
    bool closing = e->closing;
    pthread_mutex_unlock(&e->mu);
    if (seq == 0 || closing) {
        return;
    }
    dead_letter_undeliverable(e, a, seq, deliveries);
}

/* Listen to the max-deliveries advisory of @p s's group, once per group
 * and process. A failure is logged, not fatal: the fetch-side count still
 * dead-letters crash loops. */
void sl__nats_adv_listen(nats_engine *e, const nats_sub *s)
{
    pthread_mutex_lock(&e->mu);
    for (nadv *a = e->advs; a; a = a->next) {
        if (a->key == s->key && strcmp(a->stream, s->stream) == 0 &&
            strcmp(a->durable, s->durable) == 0) {
            pthread_mutex_unlock(&e->mu);
            return;
        }
    }
    nadv *a = sl_calloc(1, sizeof *a);
    if (a == NULL || (a->channel = sl_strdup(s->channel)) == NULL ||
        (a->group = sl_strdup(s->group)) == NULL ||
        (a->stream = sl_strdup(s->stream)) == NULL ||
        (a->durable = sl_strdup(s->durable)) == NULL) {
        if (a != NULL) {
            sl_free(a->channel);
            sl_free(a->group);
            sl_free(a->stream);
            sl_free(a);
        }
        pthread_mutex_unlock(&e->mu);
        return;
    }
    a->eng = e;
    a->key = s->key;
    a->stream_created_ns = s->stream_created_ns;
    a->next = e->advs;
    e->advs = a;
    pthread_mutex_unlock(&e->mu);
    char subject[600];
    snprintf(subject, sizeof subject,
             "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", a->stream,
             a->durable);
    natsStatus ns = sl__nats_async_subscribe(
        e, &a->sub, subject, "sluice-max-deliveries", on_max_deliveries, a);
    if (ns != NATS_OK) {
        sl_logf(SL_LOG_WARN, LOG,
                "cannot listen to the max-deliveries advisory of %s/%s: %s",
                a->channel, a->group, natsStatus_GetText(ns));
    }
}
