/* The NATS engine's consuming side (nats_int.h): subscribe, the
 * engine's own pull requests, fetch and unsubscribe.
 */
#include "engine/nats/nats_int.h"

#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What subscribe made of @p s (NULL fields are skipped). */
static void sub_free(nats_sub *s)
{
    natsSubscription_Destroy(s->ns);
    sl_free(s->next_subject);
    sl_free(s->channel);
    sl_free(s->group);
    sl_free(s->stream);
    sl_free(s->durable);
    pthread_mutex_destroy(&s->mu);
    sl_free(s);
}

sl_status sl__nats_subscribe(sl_engine *base, const char *channel,
                             const char *group, const sl_subscribe_opts *opts,
                             sl_subscription **out, sl_diag *diag)
{
    nats_engine *e = (nats_engine *)base;
    nats_sub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    s->base.drv = &sl__nats_driver;
    s->eng = e;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    pthread_mutex_init(&s->mu, NULL);
    sl_status st = SL_NOMEM;
    if ((s->channel = sl_strdup(channel)) == NULL ||
        (s->group = sl_strdup(group)) == NULL ||
        (s->stream = sl__nats_escape_name(e->ns, channel)) == NULL ||
        (s->durable = sl__nats_escape_name(NULL, group)) == NULL) {
        goto fail;
    }
    s->key = sl__nats_hash(s->stream, s->durable);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, s->stream, s->durable, NULL, &jerr);
    if (ns != NATS_OK) {
        st = (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
              jerr == JSStreamNotFoundErr)
                 ? sl_diag_set(diag, SL_NOT_FOUND,
                               "group '%s' on channel '%s' is not declared",
                               group, channel)
                 : sl_diag_set(diag, sl__nats_status(ns), "consumer info: %s",
                               nats_GetLastError(NULL));
        goto fail;
    }
    unsigned long ma = 0;
    const char *d = ci->Config ? ci->Config->Description : NULL;
    if (d != NULL && sscanf(d, "sluice max_attempts=%lu", &ma) == 1 && ma) {
        s->max_attempts = ma > UINT32_MAX ? UINT32_MAX : (uint32_t)ma;
    } else {
        s->max_attempts = DEFAULT_MAX_ATTEMPTS;
    }
    jsConsumerInfo_Destroy(ci);
    /* The stream's creation time goes into the ids of messages that carry
     * none (plain_id). */
    jsStreamInfo *si = NULL;
    ns = js_GetStreamInfo(&si, e->js, s->stream, NULL, &jerr);
    if (ns != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(ns), "stream info %s: %s",
                         s->stream, nats_GetLastError(NULL));
        goto fail;
    }
    s->stream_created_ns = sl__nats_created_ns(si);
    jsStreamInfo_Destroy(si);
    /* Pull requests are sent by sl__nats_fetch itself rather than through
     * natsSubscription_Fetch (see there): a plain subscription receives
     * their answers. */
    size_t nlen = strlen(e->api) + strlen("CONSUMER.MSG.NEXT..") +
                  strlen(s->stream) + strlen(s->durable) + 1;
    natsInbox *inbox = NULL;
    if ((s->next_subject = sl_malloc(nlen)) == NULL) {
        goto fail;
    }
    snprintf(s->next_subject, nlen, "%sCONSUMER.MSG.NEXT.%s.%s", e->api,
             s->stream, s->durable);
    ns = natsInbox_Create(&inbox);
    if (ns == NATS_OK) {
        char wild[sizeof s->inbox + 2];
        snprintf(s->inbox, sizeof s->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(wild, sizeof wild, "%s.*", s->inbox);
        ns = natsConnection_SubscribeSync(&s->ns, e->nc, wild);
    }
    if (ns == NATS_OK) {
        /* Bounded by the prefetch anyway; no slow-consumer drops. */
        ns = natsSubscription_SetPendingLimits(s->ns, -1, -1);
    }
    if (ns != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(ns), "subscribe %s/%s: %s",
                         s->stream, s->durable, natsStatus_GetText(ns));
        goto fail;
    }
    sl__nats_adv_listen(e, s);
    pthread_mutex_lock(&e->mu);
    s->next = e->subs;
    e->subs = s;
    pthread_mutex_unlock(&e->mu);
    *out = &s->base;
    return SL_OK;
fail:
    sub_free(s);
    return st;
}

/* A decimal token ending in '.': its value; false when it is not one
 * (strtoull's work without its locale and bases: this runs for every
 * delivery). */
static bool dec_token(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return p != start && *p == '.';
}

/* The stream sequence and delivery count of a delivery, from its ack
 * subject: "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.
 * <pending>", or the form with domain and account hash after "ACK" (11 or
 * 12 tokens). */
static bool parse_ack_reply(const char *reply, uint64_t *seq,
                            uint64_t *delivered)
{
    if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0) {
        return false;
    }
    const char *tok[13];
    int n = 0;
    for (const char *p = reply; p != NULL && n < 13;) {
        tok[n++] = p;
        p = strchr(p, '.');
        p = p ? p + 1 : NULL;
    }
    if (n < 9) {
        return false;
    }
    int at = n == 9 ? 4 : 6; /* the delivery count; the sequence follows */
    return dec_token(tok[at], delivered) && dec_token(tok[at + 1], seq);
}

/* Ask the consumer for up to @p batch deliveries, answered on
 * "<inbox>.<id>". Fetching thread only. */
static sl_status pull_request(nats_engine *e, nats_sub *s, uint32_t batch,
                              bool no_wait)
{
    uint64_t expires_ms = no_wait ? PULL_NOWAIT_MS : PULL_EXPIRES_MS;
    uint64_t id = ++s->req_seq;
    char reply[sizeof s->inbox + 24];
    char body[128];
    snprintf(reply, sizeof reply, "%s.%" PRIu64, s->inbox, id);
    int len = snprintf(
        body, sizeof body, "{\"batch\":%" PRIu32 ",\"expires\":%" PRIu64 "%s}",
        batch, expires_ms * 1000000, no_wait ? ",\"no_wait\":true" : "");
    natsStatus ns =
        natsConnection_PublishRequest(e->nc, s->next_subject, reply, body, len);
    if (ns != NATS_OK) {
        return sl__nats_status(ns);
    }
    /* Send it now, with the acks buffered before it. Left to nats.c's
     * flusher thread it would wait a millisecond for more to write (its
     * write coalescing), and the server, with nothing asked of it, would
     * wait too: a millisecond of every batch. The flush is a PING whose
     * PONG comes once the server has read all of it, about when the first
     * answer comes; its error, if any, the answer's wait reports. */
    if (natsConnection_Status(e->nc) == NATS_CONN_STATUS_CONNECTED) {
        natsConnection_FlushTimeout(e->nc, PULL_FLUSH_MS);
    }
    s->req_id = id;
    s->req_nowait = no_wait;
    s->req_left = batch;
    s->req_until = sl_time_mono_ms() + expires_ms + PULL_GRACE_MS;
    return SL_OK;
}

/* True when messages wait in @p s's subscription, unread. */
static bool queued(nats_sub *s)
{
    int msgs = 0, bytes = 0;
    return natsSubscription_GetPending(s->ns, &msgs, &bytes) == NATS_OK &&
           msgs > 0;
}

/* The id of the request @p m answers (its subject "<inbox>.<id>"). */
static uint64_t request_of(const natsMsg *m)
{
    const char *subj = natsMsg_GetSubject((natsMsg *)m);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    return dot ? strtoull(dot + 1, NULL, 10) : 0;
}

/* A status message of the pull protocol ("NATS/1.0 404 No Messages",
 * 408 Request Timeout, 409 ..., 100 Idle Heartbeat): its code, or 0 for a
 * delivery. */
static int status_of(natsMsg *m)
{
    const char *v = NULL;
    if (natsMsg_GetDataLength(m) > 0 ||
        natsMsgHeader_Get(m, "Status", &v) != NATS_OK || v == NULL) {
        return 0;
    }
    return (int)strtol(v, NULL, 10);
}

/* Turn one delivered message into a delivery in out[*got], or settle it
 * here: an unreadable event is terminated, an expired one or one past its
 * attempts is dead-lettered, one beyond the prefetch is given back.
 * Takes @p m. */
static void take_message(nats_engine *e, nats_sub *s, natsMsg *m,
                         sl_delivery **out, size_t *got)
{
    uint64_t seq = 0, delivered = 0;
    if (!parse_ack_reply(natsMsg_GetReply(m), &seq, &delivered)) {
        natsMsg_Destroy(m);
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool room = s->flight.n < s->prefetch;
    pthread_mutex_unlock(&s->mu);
    if (!room) {
        /* Only a late answer to an earlier request can bring more than
         * the credit asked for: give it back, not counted. */
        sl__nats_track_nak(e, s->key, seq, true, 0);
        natsConnection_PublishString(e->nc, natsMsg_GetReply(m), "-NAK");
        natsMsg_Destroy(m);
        return;
    }
    uint32_t released = 0;
    pthread_mutex_lock(&e->mu);
    track *t = sl__track_find(&e->tracks, s->key, seq, false);
    if (t != NULL) {
        released = t->released;
        t->nakked = false;
    }
    pthread_mutex_unlock(&e->mu);
    uint32_t attempt =
        delivered > released ? (uint32_t)(delivered - released) : 1;
    sl_event *ev = NULL;
    sl_status st =
        sl__nats_msg_to_event(m, s->stream, s->stream_created_ns, seq, &ev);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "message %" PRIu64 " on %s is not a readable event "
                "(%s): terminated",
                seq, s->stream, sl_status_str(st));
        sl__nats_settle_sync(e, m, "+TERM");
        natsMsg_Destroy(m);
        return;
    }
    uint64_t deadline = sl_event_deadline_ms(ev);
    if (deadline != 0 && deadline <= sl_clock_now_ms(e->clock)) {
        sl__nats_dead_letter(e, s, m, ev, seq, SL_DEAD_EXPIRED, attempt - 1,
                             "deadline passed before delivery");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    if (attempt > s->max_attempts) {
        sl__nats_dead_letter(e, s, m, ev, seq, SL_DEAD_MAX_ATTEMPTS,
                             s->max_attempts,
                             "delivery limit reached: the handler crashed or "
                             "timed out on every attempt");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    ndelivery *d = sl_calloc(1, sizeof *d);
    if (d == NULL) {
        sl__nats_settle_sync(e, m, "-NAK");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    d->base.drv = &sl__nats_driver;
    d->base.ev = ev;
    d->base.attempt = attempt;
    d->base.channel = s->channel;
    d->base.group = s->group;
    d->msg = m;
    d->sub = s;
    d->seq = seq;
    d->held_since = sl_time_mono_ms();
    pthread_mutex_lock(&s->mu);
    sl__list_push_head(&s->flight, &d->link);
    pthread_mutex_unlock(&s->mu);
    out[(*got)++] = &d->base;
}

/* Fetch with pull requests of our own, one outstanding at a time, rather
 * than natsSubscription_Fetch: in nats.c 3.4 that function compares its
 * count with a batch it has just lowered, so when messages of an earlier
 * request are already queued it can collect more than the batch and write
 * past its array (heap corruption; seen as a crash in the cluster chaos
 * test). Here a request asks for no more than the free credit, it stays
 * outstanding across calls until answered in full, ended by a status or
 * past its expiry, and a message beyond the credit (a late answer) is
 * given back. */
sl_status sl__nats_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                         uint64_t timeout_ms, size_t *n)
{
    nats_sub *s = (nats_sub *)base;
    nats_engine *e = s->eng;
    uint64_t until = sl_time_mono_ms() + timeout_ms;
    size_t got = 0;
    bool asked = false;
    sl_status st = SL_OK;
    for (;;) {
        if (atomic_load(&s->interrupted)) {
            st = SL_CLOSED;
            break;
        }
        uint64_t now = sl_time_mono_ms();
        if (s->req_id != 0 &&
            (s->req_left == 0 || (now >= s->req_until && !queued(s)))) {
            /* Over: answered in full, or past its expiry with nothing of
             * its answer still queued here (read that first: a process
             * short of CPU must not take its own answer for a late one
             * and give it back). */
            s->req_id = 0;
        }
        if (s->req_id == 0) {
            if (got > 0) {
                break;
            }
            if (asked && now >= until) {
                st = SL_EMPTY;
                break;
            }
            pthread_mutex_lock(&s->mu);
            size_t credit =
                s->prefetch > s->flight.n ? s->prefetch - s->flight.n : 0;
            pthread_mutex_unlock(&s->mu);
            size_t want = max < credit ? max : credit;
            if (want == 0) {
                st = SL_FULL;
                break;
            }
            /* First ask for what is there now (no_wait: what there is
             * comes at once, then a 404/408 ends the request), so that a
             * backlog comes in one call; then, when there was nothing,
             * wait for what comes next. */
            bool no_wait = !asked || until <= now || until - now < 10;
            if ((st = pull_request(e, s, (uint32_t)want, no_wait)) != SL_OK) {
                break;
            }
            asked = true;
        }
        /* A no-wait request is read until it is answered in full or
         * ended; from a waiting one, once something is in hand, take
         * only what already arrived. */
        uint64_t wait = 0;
        if (got == 0 || s->req_nowait) {
            wait = until > now ? until - now : 0;
            if (s->req_nowait) {
                wait = s->req_until > now ? s->req_until - now : 0;
            }
            if (wait > FETCH_SLICE_MS) {
                wait = FETCH_SLICE_MS;
            }
            if (s->req_until <= now) {
                wait = 0; /* only what is queued (see above) */
            } else if (s->req_until - now < wait) {
                wait = s->req_until - now;
            }
        }
        natsMsg *m = NULL;
        natsStatus ns = natsSubscription_NextMsg(&m, s->ns, (int64_t)wait);
        if (ns == NATS_TIMEOUT) {
            if (got > 0 && !s->req_nowait) {
                break;
            }
            if (sl_time_mono_ms() >= until &&
                !(s->req_id != 0 && s->req_nowait)) {
                st = SL_EMPTY;
                break;
            }
            continue;
        }
        if (ns == NATS_NO_RESPONDERS) {
            /* No JetStream to answer (a cluster without a leader). */
            s->req_id = 0;
            st = SL_UNAVAILABLE;
            break;
        }
        if (ns == NATS_SLOW_CONSUMER) {
            continue; /* reported once; nothing was dropped (no limit) */
        }
        if (ns != NATS_OK) {
            st = e->closing ? SL_CLOSED : sl__nats_status(ns);
            break;
        }
        int code = status_of(m);
        if (code != 0) {
            /* 404 / 408 / 409 end the request they answer (a status
             * arrives on the request's reply subject); 100 is an idle
             * heartbeat. */
            if (code != 100 && request_of(m) == s->req_id) {
                s->req_id = 0;
            }
            natsMsg_Destroy(m);
            continue;
        }
        /* A delivery keeps the subject it was published to: counted
         * against the live request (a late one from an earlier request
         * only ends the live one sooner; take_message keeps the bound). */
        if (s->req_id != 0 && s->req_left > 0) {
            s->req_left--;
        }
        take_message(e, s, m, out, &got);
        if (got == max) {
            break;
        }
    }
    if (got > 0) {
        *n = got;
        return SL_OK;
    }
    return st;
}

void sl__nats_interrupt(sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    atomic_store(&s->interrupted, true);
}

uint32_t sl__nats_in_flight(const sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    pthread_mutex_lock(&s->mu);
    uint32_t n = (uint32_t)s->flight.n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sl__nats_unsubscribe(sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    nats_engine *e = s->eng;
    pthread_mutex_lock(&e->mu);
    for (nats_sub **pp = &e->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    /* Like a consumer that died: its deliveries go to the others at once
     * (not after AckWait), and the attempts they used stay counted. */
    pthread_mutex_lock(&s->mu);
    sl_list fl = s->flight;
    s->flight = (sl_list){0};
    pthread_mutex_unlock(&s->mu);
    SL_LIST_FOREACH_SAFE(&fl, node, next)
    {
        ndelivery *d = SL_LIST_ENTRY(node, ndelivery, link);
        sl__nats_track_nak(e, s->key, d->seq, false, 0);
        sl__nats_settle_sync(e, d->msg, "-NAK");
        sl__nats_delivery_free(d);
    }
    /* Deliveries that arrived but were never fetched, and what the
     * outstanding pull request still brings until it expires (at most
     * PULL_EXPIRES_MS): given back unstarted, not counted here, rather
     * than left to wait out AckWait. */
    for (;;) {
        uint64_t now = sl_time_mono_ms();
        bool live = s->req_id != 0 && s->req_left > 0 && now < s->req_until;
        uint64_t wait = live ? s->req_until - now : 0;
        natsMsg *m = NULL;
        if (wait > FETCH_SLICE_MS) {
            wait = FETCH_SLICE_MS;
        }
        natsStatus ns = natsSubscription_NextMsg(&m, s->ns, (int64_t)wait);
        if (ns == NATS_TIMEOUT && live) {
            continue;
        }
        if (ns != NATS_OK) {
            break;
        }
        uint64_t seq = 0, delivered = 0;
        if (status_of(m) != 0) {
            if (request_of(m) == s->req_id) {
                s->req_id = 0;
            }
        } else if (parse_ack_reply(natsMsg_GetReply(m), &seq, &delivered)) {
            if (s->req_left > 0) {
                s->req_left--;
            }
            sl__nats_track_nak(e, s->key, seq, true, 0);
            natsConnection_PublishString(e->nc, natsMsg_GetReply(m), "-NAK");
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(s->ns);
    sub_free(s);
}
