/* The NATS engine's publish path (nats_int.h): synchronous publishes
 * for bounded channels, asynchronous ones with their pending table, the
 * PubAck handler and the confirm thread that calls what publishers did
 * not.
 */
#include "engine/nats/nats_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"

#include <string.h>
#include <time.h>

/* A publish refused by the server: discard-new at max_msgs is "full". */
sl_status sl__nats_pub_error(natsStatus s, jsErrCode code, const char *txt)
{
    if (code == JSStreamStoreFailedErr ||
        (txt != NULL && (strstr(txt, "maximum messages") != NULL ||
                         strstr(txt, "maximum bytes") != NULL))) {
        return SL_FULL;
    }
    if (s == NATS_NO_RESPONDERS || code == JSStreamNotFoundErr) {
        return SL_NOT_FOUND;
    }
    return sl__nats_status(s == NATS_OK ? NATS_ERR : s);
}

/* ---- publishing ---------------------------------------------------------- */

/* The pending table: open addressing with linear probing, at most half
 * full (ntable <= PUB_MAX_PENDING = PUB_SLOTS / 2), so a probe always
 * meets a free slot. Callers hold pub_mu. */
static uint32_t pub_home(const natsMsg *m)
{
    /* Fibonacci hashing of the address: the low bits of malloc'ed
     * addresses carry little. */
    return (uint32_t)(((uint64_t)(uintptr_t)m * 0x9E3779B97F4A7C15ULL) >>
                      (64 - PUB_SLOT_BITS));
}

static void pub_insert(nats_engine *e, natsMsg *m, sl_publish_cb cb, void *ctx,
                       uint64_t deadline_ms, bool cb_any_thread)
{
    uint32_t i = pub_home(m);
    while (e->pubs[i].msg != NULL) {
        i = (i + 1) & (PUB_SLOTS - 1);
    }
    e->pubs[i] = (npub){.msg = m,
                        .cb = cb,
                        .ctx = ctx,
                        .deadline_ms = deadline_ms,
                        .cb_any_thread = cb_any_thread};
    e->ntable++;
}

/* The slot of @p m, or PUB_SLOTS. */
static uint32_t pub_find(nats_engine *e, const natsMsg *m)
{
    for (uint32_t i = pub_home(m);; i = (i + 1) & (PUB_SLOTS - 1)) {
        if (e->pubs[i].msg == m) {
            return i;
        }
        if (e->pubs[i].msg == NULL) {
            return PUB_SLOTS;
        }
    }
}

/* Free slot @p i, moving later entries of its probe run back so that
 * every entry stays reachable from its home slot (no tombstones). */
static void pub_remove_at(nats_engine *e, uint32_t i)
{
    e->ntable--;
    if (e->pubs[i].deadline_ms == 0) {
        e->nexpired--;
    }
    uint32_t j = i;
    for (;;) {
        e->pubs[i].msg = NULL;
        uint32_t home;
        do {
            j = (j + 1) & (PUB_SLOTS - 1);
            if (e->pubs[j].msg == NULL) {
                return;
            }
            home = pub_home(e->pubs[j].msg);
            /* An entry whose home lies cyclically in (i, j] stays. */
        } while (i <= j ? (i < home && home <= j) : (i < home || home <= j));
        e->pubs[i] = e->pubs[j];
        i = j;
    }
}

sl_status sl__nats_pubs_init(nats_engine *e)
{
    e->pubs = sl_calloc(PUB_SLOTS, sizeof *e->pubs);
    e->outcomes = sl_calloc(OUT_SLOTS, sizeof *e->outcomes);
    if (e->pubs == NULL || e->outcomes == NULL) {
        sl_free(e->pubs);
        sl_free(e->outcomes);
        return SL_NOMEM;
    }
    pthread_mutex_init(&e->pub_mu, NULL);
    sl__cond_init_mono(&e->confirm_cv);
    e->pubs_ready = true;
    return SL_OK;
}

/* Refuse new publishes and let the confirm thread finish what is queued. */
void sl__nats_pubs_close(nats_engine *e)
{
    if (!e->pubs_ready) {
        return;
    }
    pthread_mutex_lock(&e->pub_mu);
    e->pub_closing = true;
    pthread_cond_broadcast(&e->confirm_cv);
    pthread_mutex_unlock(&e->pub_mu);
}

/* Queue an outcome for its callback (pub_mu held). */
static void outcome_put(nats_engine *e, sl_publish_cb cb, void *ctx,
                        sl_status st)
{
    e->outcomes[(e->out_head + e->nout) & (OUT_SLOTS - 1)] =
        (nconfirm){.cb = cb, .ctx = ctx, .st = st};
    e->nout++;
}

/* Take up to CONFIRM_BATCH outcomes, in order (pub_mu held). They stop
 * counting against the window before their callbacks run, so a producer
 * whose window a callback opens finds room in the engine too. */
static uint32_t outcomes_take(nats_engine *e, nconfirm *out)
{
    uint32_t n = e->nout < CONFIRM_BATCH ? e->nout : CONFIRM_BATCH;
    for (uint32_t i = 0; i < n; i++) {
        out[i] = e->outcomes[(e->out_head + i) & (OUT_SLOTS - 1)];
    }
    e->out_head = (e->out_head + n) & (OUT_SLOTS - 1);
    e->nout -= n;
    return n;
}

/* Set while a thread runs publish callbacks: a publish from inside one
 * neither takes more outcomes (no recursion) nor counts as a thread that
 * will. */
static _Thread_local bool tl_in_callbacks;

static void outcomes_call(const nconfirm *batch, uint32_t n)
{
    bool was = tl_in_callbacks;
    tl_in_callbacks = true;
    for (uint32_t i = 0; i < n; i++) {
        batch[i].cb(batch[i].st, batch[i].ctx);
    }
    tl_in_callbacks = was;
}

/* After the confirm thread and nats.c are gone: call what is left, the
 * outcomes that came back and then, as SL_TIMEOUT (unknown), the
 * publishes whose PubAck never came and that were not reported yet. */
void sl__nats_pubs_fini(nats_engine *e)
{
    if (!e->pubs_ready) {
        return;
    }
    nconfirm batch[CONFIRM_BATCH];
    uint32_t n;
    while ((n = outcomes_take(e, batch)) > 0) {
        outcomes_call(batch, n);
    }
    for (uint32_t i = 0; i < PUB_SLOTS; i++) {
        if (e->pubs[i].msg != NULL && e->pubs[i].deadline_ms != 0 &&
            e->pubs[i].cb != NULL) {
            e->pubs[i].cb(SL_TIMEOUT, e->pubs[i].ctx);
        }
    }
    sl_free(e->pubs);
    sl_free(e->outcomes);
    pthread_cond_destroy(&e->confirm_cv);
    pthread_mutex_destroy(&e->pub_mu);
}

/* nats.c's thread: move the outcome from the table to the ring. The
 * confirm thread is woken only when it sleeps and no publishing thread
 * will take the outcome. A callback that is sluice's own (the producer's
 * bookkeeping when its caller gave none) runs here, without the lock. */
void sl__nats_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa,
                         jsPubAckErr *pae, void *closure)
{
    (void)js;
    nats_engine *e = closure;
    sl_status st = pa != NULL ? SL_OK
                              : sl__nats_pub_error(pae ? pae->Err : NATS_ERR,
                                                   pae ? pae->ErrCode : 0,
                                                   pae ? pae->ErrText : NULL);
    bool wake = false;
    npub direct = {0};
    pthread_mutex_lock(&e->pub_mu);
    uint32_t i = pub_find(e, msg);
    if (i < PUB_SLOTS) {
        npub p = e->pubs[i];
        pub_remove_at(e, i);
        /* An expired publish was reported already: its late PubAck only
         * frees the slot. */
        if (p.cb != NULL && p.deadline_ms != 0 && p.cb_any_thread) {
            direct = p;
        } else if (p.cb != NULL && p.deadline_ms != 0) {
            outcome_put(e, p.cb, p.ctx, st);
            wake =
                e->confirm_waiting &&
                atomic_load_explicit(&e->publishing, memory_order_relaxed) == 0;
            if (wake) {
                e->confirm_waiting = false;
            }
        }
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (wake) {
        pthread_cond_signal(&e->confirm_cv);
    }
    if (direct.cb != NULL) {
        direct.cb(st, direct.ctx);
    }
    natsMsg_Destroy(msg);
}

/* Report as SL_TIMEOUT the publishes of up to EXPIRY_SCAN_SLOTS slots
 * whose PubAck is overdue (pub_mu held); their slots stay while nats.c
 * holds the message. A scan in slices lets publishes through between
 * them; an entry that a removal moves past the scan is found the next
 * time. Returns whether the whole table was scanned. */
static bool expiry_scan(nats_engine *e, uint64_t now_ms)
{
    uint32_t end = e->scan_next + EXPIRY_SCAN_SLOTS;
    for (uint32_t i = e->scan_next; i < end; i++) {
        npub *p = &e->pubs[i];
        if (p->msg != NULL && p->deadline_ms != 0 && p->deadline_ms <= now_ms) {
            if (p->cb != NULL) {
                outcome_put(e, p->cb, p->ctx, SL_TIMEOUT);
            }
            p->deadline_ms = 0;
            e->nexpired++;
        }
    }
    e->scan_next = end & (PUB_SLOTS - 1);
    return e->scan_next == 0;
}

/* Take back from nats.c the messages of expired publishes once they are
 * all it holds (pub_mu held): their PubAcks are lost (a reconnect), and
 * nats.c would keep them until the engine closes. *out gets the messages
 * to destroy. */
static void expired_reclaim(nats_engine *e, natsMsgList *out)
{
    if (e->nexpired == 0 || e->nexpired != e->ntable ||
        js_PublishAsyncGetPendingList(out, e->js) != NATS_OK) {
        return;
    }
    for (int k = 0; k < out->Count; k++) {
        uint32_t i = pub_find(e, out->Msgs[k]);
        if (i < PUB_SLOTS) {
            pub_remove_at(e, i);
        }
    }
}

/* Calls the outcomes no publishing thread took, in PubAck order, and
 * every EXPIRY_SCAN_MS while publishes are outstanding looks for those
 * whose PubAck is overdue. */
void *sl__nats_confirm_main(void *arg)
{
    nats_engine *e = arg;
    nconfirm batch[CONFIRM_BATCH];
    uint64_t scan_at = 0; /* mono ms; 0: no scan under way */
    pthread_mutex_lock(&e->pub_mu);
    for (;;) {
        uint32_t n = outcomes_take(e, batch);
        if (n > 0) {
            pthread_mutex_unlock(&e->pub_mu);
            outcomes_call(batch, n);
            pthread_mutex_lock(&e->pub_mu);
            continue;
        }
        if (e->pub_closing) {
            break;
        }
        uint64_t now = sl_time_mono_ms();
        if (e->ntable > e->nexpired && scan_at == 0) {
            scan_at = now + EXPIRY_SCAN_MS;
        }
        if (scan_at != 0 && now >= scan_at) {
            natsMsgList lost = {0};
            if (expiry_scan(e, now)) {
                expired_reclaim(e, &lost);
                scan_at = 0;
            }
            /* Between slices, publishes and PubAcks get the lock. */
            pthread_mutex_unlock(&e->pub_mu);
            natsMsgList_Destroy(&lost);
            pthread_mutex_lock(&e->pub_mu);
            continue;
        }
        uint64_t wait = CONFIRM_WAIT_MS;
        if (scan_at != 0 && scan_at - now < wait) {
            wait = scan_at - now;
        }
        struct timespec ts;
        sl__deadline_after(&ts, wait);
        e->confirm_waiting = true;
        pthread_cond_timedwait(&e->confirm_cv, &e->pub_mu, &ts);
        e->confirm_waiting = false;
    }
    pthread_mutex_unlock(&e->pub_mu);
    return NULL;
}

/* A bounded channel publishes synchronously, so that a discard-new
 * refusal is the publish call's SL_FULL, as the API promises. */
static sl_status publish_sync(nats_engine *e, natsMsg *m, sl_publish_cb cb,
                              void *ctx)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = API_WAIT_MS;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&pa, e->js, m, &po, &jerr);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        sl_status st = sl__nats_pub_error(s, jerr, nats_GetLastError(NULL));
        if (st == SL_TIMEOUT && cb != NULL) {
            cb(SL_TIMEOUT, ctx); /* the outcome is unknown */
            return SL_OK;
        }
        return st;
    }
    if (cb != NULL) {
        cb(SL_OK, ctx);
    }
    return SL_OK;
}

/* The tail of every publish from outside a callback: leave, taking up to
 * a batch of the outcomes that came back meanwhile, and call them here. If
 * outcomes are left for nobody, wake the confirm thread. */
static void publish_leave(nats_engine *e)
{
    nconfirm batch[CONFIRM_BATCH];
    pthread_mutex_lock(&e->pub_mu);
    uint32_t left = atomic_fetch_sub(&e->publishing, 1) - 1;
    uint32_t n = outcomes_take(e, batch);
    bool wake = e->nout > 0 && left == 0 && e->confirm_waiting;
    if (wake) {
        e->confirm_waiting = false;
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (wake) {
        pthread_cond_signal(&e->confirm_cv);
    }
    outcomes_call(batch, n);
}

static sl_status publish_one(nats_engine *e, const char *channel, sl_event *ev,
                             unsigned flags, unsigned hints, sl_publish_cb cb,
                             void *ctx)
{
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    nchan *c = NULL;
    if ((st = sl__nats_chan_get(e, channel, &c)) != SL_OK) {
        return st;
    }
    natsMsg *m = NULL;
    st = sl__nats_event_to_msg(ev, c->subject, !(flags & SL_PUBLISH_NO_DEDUP),
                               &m);
    if (st != SL_OK) {
        return st;
    }
    if (atomic_load_explicit(&c->bounded, memory_order_relaxed)) {
        return publish_sync(e, m, cb, ctx);
    }
    uint64_t deadline = sl_time_mono_ms() + PUB_ACK_WAIT_MS;
    pthread_mutex_lock(&e->pub_mu);
    st = e->pub_closing                           ? SL_CLOSED
         : e->ntable + e->nout >= PUB_MAX_PENDING ? SL_FULL
                                                  : SL_OK;
    if (st == SL_OK) {
        pub_insert(e, m, cb, ctx, deadline,
                   (hints & SL__PUBLISH_HINT_CB_ANY_THREAD) != 0);
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (st != SL_OK) {
        natsMsg_Destroy(m);
        return st;
    }

    /* No MaxWait: nats.c would allocate a record per publish and walk its
     * timer over every one of them later, acknowledged or not (5 s after,
     * about 0.5 us of CPU per event, and its allocations interleaved with
     * the publisher's cost 1 us more). The engine reports overdue
     * PubAcks itself (expiry_scan). */
    natsMsg *send = m;
    natsStatus s = js_PublishMsgAsync(e->js, &send, NULL);
    if (s != NATS_OK) {
        /* Not sent: nats.c left the message to us and will not call the
         * handler; take the entry back unless it ran all the same. One
         * already reported as timed out keeps that outcome. */
        bool reported = false;
        pthread_mutex_lock(&e->pub_mu);
        uint32_t i = pub_find(e, m);
        if (i < PUB_SLOTS) {
            reported = e->pubs[i].deadline_ms == 0;
            pub_remove_at(e, i);
        }
        pthread_mutex_unlock(&e->pub_mu);
        if (i < PUB_SLOTS) {
            natsMsg_Destroy(send);
            st = reported ? SL_OK : sl__nats_status(s);
        }
    }
    return st;
}

sl_status sl__nats_publish(sl_engine *base, const char *channel, sl_event *ev,
                           unsigned flags, unsigned hints, sl_publish_cb cb,
                           void *ctx)
{
    nats_engine *e = (nats_engine *)base;
    if (tl_in_callbacks) {
        return publish_one(e, channel, ev, flags, hints, cb, ctx);
    }
    atomic_fetch_add(&e->publishing, 1);
    sl_status st = publish_one(e, channel, ev, flags, hints, cb, ctx);
    publish_leave(e);
    return st;
}
