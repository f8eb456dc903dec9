/* The embedded engine: subscriptions, fetch and settle, the delayed heap,
 * spilling past the memory budget, and inspection (depth, browse).
 */
#include "engine/embedded/embedded_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- delayed heap ------------------------------------------------------- */

static void heap_swap(emb_group *g, size_t a, size_t b)
{
    emb_entry *t = g->heap[a];
    g->heap[a] = g->heap[b];
    g->heap[b] = t;
    g->heap[a]->heap_idx = a;
    g->heap[b]->heap_idx = b;
}

static void heap_up(emb_group *g, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (g->heap[p]->visible_at <= g->heap[i]->visible_at) {
            break;
        }
        heap_swap(g, i, p);
        i = p;
    }
}

static void heap_down(emb_group *g, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->heap_n && g->heap[l]->visible_at < g->heap[m]->visible_at) {
            m = l;
        }
        if (r < g->heap_n && g->heap[r]->visible_at < g->heap[m]->visible_at) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(g, i, m);
        i = m;
    }
}

sl_status sl__emb_heap_push(emb_group *g, emb_entry *e)
{
    if (g->heap_n == g->heap_cap) {
        size_t cap = g->heap_cap ? g->heap_cap * 2 : 64;
        emb_entry **h = sl_realloc(g->heap, cap * sizeof *h);
        if (h == NULL) {
            return SL_NOMEM;
        }
        g->heap = h;
        g->heap_cap = cap;
    }
    e->heap_idx = g->heap_n;
    g->heap[g->heap_n++] = e;
    heap_up(g, e->heap_idx);
    return SL_OK;
}

static emb_entry *heap_pop(emb_group *g)
{
    emb_entry *top = g->heap[0];
    g->heap_n--;
    if (g->heap_n > 0) {
        g->heap[0] = g->heap[g->heap_n];
        g->heap[0]->heap_idx = 0;
        heap_down(g, 0);
    }
    return top;
}
/* ---- consuming --------------------------------------------------------------
 */

sl_status sl__emb_subscribe(sl_engine *base, const char *channel,
                            const char *group, const sl_subscribe_opts *opts,
                            sl_subscription **out, sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    emb_sub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = sl__emb_find_channel(e, channel);
    emb_group *g = ch ? sl__emb_find_group(ch, group) : NULL;
    pthread_mutex_unlock(&e->mu);
    if (g == NULL) {
        sl_free(s);
        return sl_diag_set(diag, SL_NOT_FOUND,
                           "group '%s' on channel '%s' is not declared", group,
                           channel);
    }
    s->base.drv = &sl__embedded_driver;
    s->eng = e;
    s->g = g;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    *out = &s->base;
    return SL_OK;
}

/* ---- spilling (store mode) ------------------------------------------------
 *
 * Past the memory budget, a committed message whose entries are all waiting
 * (none in flight) drops its event and keeps only what ordering and
 * accounting need; the event is read back from the store when one of its
 * entries is delivered, browsed or dead-lettered. */

static void set_event(emb_msg *m, sl_event *ev)
{
    m->ev = ev;
    for (uint32_t i = 0; i < m->nslots; i++) {
        m->entries[i].base.ev = ev;
    }
}

bool sl__emb_spillable(const emb_msg *m)
{
    if (m->ev == NULL || !m->in_db || m->refs == 0 || m->dirty) {
        return false;
    }
    for (uint32_t i = 0; i < m->nslots; i++) {
        if (m->entries[i].where == AT_FLIGHT) {
            return false; /* a handler may be reading it */
        }
    }
    return true;
}

void sl__emb_spill(emb_engine *e, emb_msg *m)
{
    e->resident -= m->ev_bytes;
    sl_event_unref(m->ev);
    set_event(m, NULL);
}

/* Make @p m's event resident. Lock held. */
static sl_status ensure_loaded(emb_engine *e, emb_msg *m)
{
    if (m->ev != NULL) {
        return SL_OK;
    }
    uint8_t *body = NULL;
    size_t len = 0;
    sl_event *ev = NULL;
    sl_status st = sl__emb_store_read_body(e->store, m->seq, &body, &len);
    if (st == SL_OK) {
        st = sl_event_decode(body, len, &ev, NULL);
    }
    sl_free(body);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, "engine.embedded",
                "reading stored event %" PRId64 " back: %s", m->seq,
                sl_status_str(st));
        return st;
    }
    set_event(m, ev);
    m->ev_bytes = (uint32_t)len;
    e->resident += len;
    return SL_OK;
}

/* Move a settled-by-engine entry to the dead-letter channel. Lock held. */
static void dead_letter_locked(emb_engine *e, emb_entry *en,
                               sl_dead_reason reason, const char *error)
{
    emb_group *g = en->g;
    if (g->dlq != NULL && ensure_loaded(e, en->m) == SL_OK) {
        sl_event *dead = NULL;
        uint8_t *body = NULL;
        size_t len = 0;
        sl_status st =
            sl__dead_letter_event(en->m->ev, reason, en->attempts, error,
                                  g->ch->name, g->name, now_ms(e), &dead);
        if (st == SL_OK && e->store != NULL) {
            st = sl_event_encode(dead, &body, &len);
        }
        if (st == SL_OK) {
            st =
                sl__emb_enqueue_locked(e, g->dlq, dead, &body, len, NULL, NULL);
        }
        if (st != SL_OK) {
            sl_logf(SL_LOG_ERROR, "engine.embedded",
                    "dead-lettering %s from %s/%s failed: %s; dropped",
                    sl_event_id(en->m->ev), g->ch->name, g->name,
                    sl_status_str(st));
        }
        sl_free(body);
        sl_event_unref(dead);
    }
    sl__emb_entry_done(e, en);
}

static void promote_due(emb_engine *e, emb_group *g, uint64_t now)
{
    while (g->heap_n > 0 && g->heap[0]->visible_at <= now) {
        emb_entry *en = heap_pop(g);
        en->where = AT_READY;
        sl__list_push_tail(&g->ready, &en->link);
    }
    (void)e;
}

sl_status sl__emb_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                        uint64_t timeout_ms, size_t *n)
{
    emb_sub *s = (emb_sub *)base;
    emb_engine *e = s->eng;
    emb_group *g = s->g;
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    size_t got = 0;
    sl_status st = SL_OK;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (s->interrupted || e->closing) {
            st = SL_CLOSED;
            break;
        }
        if (e->store_err != SL_OK) {
            st = SL_UNAVAILABLE;
            break;
        }
        size_t credit =
            s->prefetch > s->flight.n ? s->prefetch - s->flight.n : 0;
        if (credit == 0) {
            st = SL_FULL;
            break;
        }
        uint64_t now = now_ms(e);
        promote_due(e, g, now);
        while (got < max && got < credit && !sl__list_is_empty(&g->ready)) {
            emb_entry *en = entry_of(sl__list_pop_head(&g->ready));
            if (ensure_loaded(e, en->m) != SL_OK) {
                sl__emb_entry_done(e, en); /* unreadable: logged, dropped */
                continue;
            }
            uint64_t deadline = sl_event_deadline_ms(en->m->ev);
            if (deadline != 0 && deadline <= now) {
                dead_letter_locked(e, en, SL_DEAD_EXPIRED,
                                   "deadline passed before delivery");
                continue;
            }
            if (en->attempts >= g->max_attempts) {
                dead_letter_locked(e, en, SL_DEAD_MAX_ATTEMPTS,
                                   "delivery limit reached: the handler "
                                   "crashed or timed out on every attempt");
                continue;
            }
            en->attempts++;
            en->base.attempt = en->attempts;
            en->where = AT_FLIGHT;
            en->sub = s;
            g->in_flight++;
            sl__list_push_tail(&s->flight, &en->link);
            mark_entry(e, en);
            out[got++] = &en->base;
        }
        if (got > 0) {
            break;
        }
        /* Wait for a publish, a retry coming due, or the timeout. */
        struct timespec wake = until;
        if (g->heap_n > 0) {
            uint64_t due = g->heap[0]->visible_at;
            uint64_t in = due > now ? due - now : 0;
            struct timespec t;
            sl__deadline_after(&t, in);
            if (t.tv_sec < wake.tv_sec ||
                (t.tv_sec == wake.tv_sec && t.tv_nsec < wake.tv_nsec)) {
                wake = t;
            }
        }
        int rc = pthread_cond_timedwait(&g->cv, &e->mu, &wake);
        if (rc == ETIMEDOUT) {
            struct timespec cur;
            clock_gettime(CLOCK_MONOTONIC, &cur);
            if (cur.tv_sec > until.tv_sec ||
                (cur.tv_sec == until.tv_sec && cur.tv_nsec >= until.tv_nsec)) {
                promote_due(e, g, now_ms(e));
                if (sl__list_is_empty(&g->ready)) {
                    st = SL_EMPTY;
                    break;
                }
            }
        }
    }
    if (got > 0 && e->store != NULL) {
        /* The attempt counts must be durable before any handler runs. */
        uint64_t need = e->batch_next;
        while (e->batch_done < need && e->store_err == SL_OK) {
            pthread_cond_wait(&e->commit_cv, &e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (got > 0) {
        *n = got;
        return SL_OK;
    }
    return st;
}

void sl__emb_interrupt(sl_subscription *base)
{
    emb_sub *s = (emb_sub *)base;
    pthread_mutex_lock(&s->eng->mu);
    s->interrupted = true;
    pthread_cond_broadcast(&s->g->cv);
    pthread_mutex_unlock(&s->eng->mu);
}

uint32_t sl__emb_in_flight(const sl_subscription *base)
{
    const emb_sub *s = (const emb_sub *)base;
    pthread_mutex_lock(&s->eng->mu);
    uint32_t n = (uint32_t)s->flight.n;
    pthread_mutex_unlock(&s->eng->mu);
    return n;
}

/* Put an in-flight entry back at the head of its group's ready list. */
static void requeue_locked(emb_engine *e, emb_entry *en)
{
    emb_group *g = en->g;
    sl__list_remove(&en->sub->flight, &en->link);
    en->sub = NULL;
    g->in_flight--;
    en->where = AT_READY;
    sl__list_push_head(&g->ready, &en->link);
    mark_entry(e, en);
    pthread_cond_signal(&g->cv);
}

void sl__emb_unsubscribe(sl_subscription *base)
{
    emb_sub *s = (emb_sub *)base;
    emb_engine *e = s->eng;
    pthread_mutex_lock(&e->mu);
    /* Like a consumer that died: its deliveries go to the others, and the
     * attempts they used stay counted. */
    while (!sl__list_is_empty(&s->flight)) {
        requeue_locked(e, entry_of(s->flight.tail));
    }
    pthread_mutex_unlock(&e->mu);
    sl_free(s);
}

sl_status sl__emb_settle(sl_delivery *d, sl_settle_op op, uint64_t delay_ms,
                         sl_dead_reason reason, const char *error)
{
    emb_entry *en = (emb_entry *)d;
    emb_sub *s = en->sub;
    if (en->where != AT_FLIGHT || s == NULL) {
        return SL_INVALID;
    }
    emb_engine *e = s->eng;
    emb_group *g = en->g;
    sl_status st = SL_OK;
    emb_msg *gone = NULL;
    pthread_mutex_lock(&e->mu);
    switch (op) {
    case SL_SETTLE_ACK:
        sl__list_remove(&s->flight, &en->link);
        g->in_flight--;
        gone = sl__emb_entry_done_deferred(e, en);
        break;
    case SL_SETTLE_DEAD:
        sl__list_remove(&s->flight, &en->link);
        g->in_flight--;
        dead_letter_locked(e, en, reason, error);
        break;
    case SL_SETTLE_RELEASE:
        en->attempts--; /* never started: not an attempt */
        requeue_locked(e, en);
        break;
    case SL_SETTLE_RETRY:
        if (delay_ms == 0) {
            requeue_locked(e, en);
            /* A retry goes behind what is already waiting. */
            sl__list_remove(&g->ready, &en->link);
            sl__list_push_tail(&g->ready, &en->link);
            break;
        }
        sl__list_remove(&s->flight, &en->link);
        en->sub = NULL;
        g->in_flight--;
        en->where = AT_DELAYED;
        en->visible_at = now_ms(e) + delay_ms;
        st = sl__emb_heap_push(g, en);
        if (st != SL_OK) {
            en->where = AT_READY;
            sl__list_push_tail(&g->ready, &en->link);
            st = SL_OK;
        }
        mark_entry(e, en);
        /* Waiters may need to wake earlier than they planned. */
        pthread_cond_broadcast(&g->cv);
        break;
    }
    pthread_mutex_unlock(&e->mu);
    sl__emb_free_msgs(gone);
    return st;
}

sl_status sl__emb_ack_many(sl_delivery **ds, size_t n)
{
    emb_entry *first = (emb_entry *)ds[0];
    if (first->sub == NULL) {
        return SL_INVALID;
    }
    emb_engine *e = first->sub->eng;
    sl_status st = SL_OK;
    /* Messages are freed after the lock is released, in chunks, to keep the
     * critical section to list operations. */
    enum { CHUNK = 64 };
    emb_msg *gone[CHUNK];
    for (size_t i = 0; i < n;) {
        size_t ngone = 0;
        pthread_mutex_lock(&e->mu);
        for (; i < n && ngone < CHUNK; i++) {
            emb_entry *en = (emb_entry *)ds[i];
            if (en == NULL || en->where != AT_FLIGHT || en->sub == NULL) {
                st = SL_INVALID;
                continue;
            }
            sl__list_remove(&en->sub->flight, &en->link);
            en->g->in_flight--;
            emb_msg *m = sl__emb_entry_done_deferred(e, en);
            if (m != NULL) {
                gone[ngone++] = m;
            }
        }
        pthread_mutex_unlock(&e->mu);
        for (size_t j = 0; j < ngone; j++) {
            sl__emb_free_msgs(gone[j]);
        }
    }
    return st;
}

/* ---- inspection -------------------------------------------------------------
 */

sl_status sl__emb_depth(sl_engine *base, const char *channel, const char *group,
                        sl_depth *out)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = sl__emb_find_channel(e, channel);
    emb_group *g = ch ? sl__emb_find_group(ch, group) : NULL;
    if (g != NULL) {
        promote_due(e, g, now_ms(e));
        out->ready = g->ready.n;
        out->delayed = g->heap_n;
        out->in_flight = g->in_flight;
    }
    pthread_mutex_unlock(&e->mu);
    return g ? SL_OK : SL_NOT_FOUND;
}

static int by_due_time(const void *a, const void *b)
{
    const emb_entry *x = *(emb_entry *const *)a;
    const emb_entry *y = *(emb_entry *const *)b;
    if (x->visible_at != y->visible_at) {
        return x->visible_at < y->visible_at ? -1 : 1;
    }
    return x->m->seq < y->m->seq ? -1 : x->m->seq > y->m->seq;
}

sl_status sl__emb_browse(sl_engine *base, const char *channel,
                         const char *group, size_t max, sl_browse_fn fn,
                         void *ctx)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = sl__emb_find_channel(e, channel);
    emb_group *g = ch ? sl__emb_find_group(ch, group) : NULL;
    if (g == NULL) {
        pthread_mutex_unlock(&e->mu);
        return SL_NOT_FOUND;
    }
    /* Take references so the callback runs without the lock. */
    size_t cap = g->ready.n + g->heap_n;
    if (max != 0 && cap > max) {
        cap = max;
    }
    sl_event **evs = sl_calloc(cap ? cap : 1, sizeof *evs);
    uint32_t *att = sl_calloc(cap ? cap : 1, sizeof *att);
    size_t n = 0;
    if (evs != NULL && att != NULL) {
        SL_LIST_FOREACH(&g->ready, node)
        {
            emb_entry *en = entry_of(node);
            if (n == cap) {
                break;
            }
            if (ensure_loaded(e, en->m) == SL_OK) {
                att[n] = en->attempts;
                evs[n++] = sl_event_ref(en->m->ev);
            }
        }
        /* Delayed retries in the order they come due (the heap array is
         * not in order). */
        emb_entry **due = sl_calloc(g->heap_n ? g->heap_n : 1, sizeof *due);
        if (due != NULL && g->heap_n > 0) {
            memcpy(due, g->heap, g->heap_n * sizeof *due);
            qsort(due, g->heap_n, sizeof *due, by_due_time);
        }
        for (size_t i = 0; due != NULL && i < g->heap_n && n < cap; i++) {
            if (ensure_loaded(e, due[i]->m) == SL_OK) {
                att[n] = due[i]->attempts;
                evs[n++] = sl_event_ref(due[i]->m->ev);
            }
        }
        sl_free(due);
    }
    pthread_mutex_unlock(&e->mu);
    if (evs == NULL || att == NULL) {
        sl_free(evs);
        sl_free(att);
        return SL_NOMEM;
    }
    bool go = true;
    for (size_t i = 0; i < n; i++) {
        if (go) {
            go = fn(evs[i], att[i], ctx);
        }
        sl_event_unref(evs[i]);
    }
    sl_free(evs);
    sl_free(att);
    return SL_OK;
}
