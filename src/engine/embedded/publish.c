/* The embedded engine: publishing, and the end of an entry's life.
 *
 * Messages are freed here: at once in memory mode (through the
 * graveyard), by the writer in store mode once their rows are deleted.
 */
#include "engine/embedded/embedded_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <string.h>

/* ---- freeing ------------------------------------------------------------ */

/* Entries live inside their message's allocation: one malloc per published
 * event however many groups it goes to, and no per-entry free. */
void sl__emb_msg_free(emb_msg *m)
{
    sl_event_unref(m->ev);
    sl_free(m->body);
    sl_free(m);
}

/* Free a list of messages linked through dirty_next. */
void sl__emb_free_msgs(emb_msg *m)
{
    while (m != NULL) {
        emb_msg *next = m->dirty_next;
        sl__emb_msg_free(m);
        m = next;
    }
}

/* Memory mode: a message nobody references any more. Consumers free what
 * producers allocated; done on the consumer's thread, every free would take
 * the producer's malloc arena lock against the producer's own mallocs. So
 * the message waits in a graveyard that the next publish frees on its own
 * thread. The graveyard is bounded: past GRAVEYARD_MAX the caller gets the
 * whole list to free itself (after the lock). */
#define GRAVEYARD_MAX 4096

static emb_msg *bury(emb_engine *e, emb_msg *m)
{
    m->dirty_next = e->graveyard;
    e->graveyard = m;
    if (++e->ngraveyard < GRAVEYARD_MAX) {
        return NULL;
    }
    emb_msg *all = e->graveyard;
    e->graveyard = NULL;
    e->ngraveyard = 0;
    return all;
}

/* An entry leaves its group for good. Returns a list of messages to free
 * once the lock is released (memory mode), else NULL. */
emb_msg *sl__emb_entry_done_deferred(emb_engine *e, emb_entry *en)
{
    en->where = AT_DONE;
    emb_msg *m = en->m;
    en->g->bytes -= m->size;
    m->refs--;
    if (e->store != NULL) {
        mark_entry(e, en);
        if (m->refs == 0) {
            mark_msg(e, m);
        }
        return NULL;
    }
    return m->refs == 0 ? bury(e, m) : NULL;
}

void sl__emb_entry_done(emb_engine *e, emb_entry *en)
{
    sl__emb_free_msgs(sl__emb_entry_done_deferred(e, en));
}
/* ---- publishing ------------------------------------------------------------
 */

/* Enqueue an event into every group of @p ch. Lock held. On success the
 * message owns a reference to @p ev and, in store mode, @p body. */
sl_status sl__emb_enqueue_locked(emb_engine *e, emb_channel *ch, sl_event *ev,
                                 uint8_t **body, size_t body_len,
                                 sl_publish_cb cb, void *cb_ctx)
{
    /* The size counted against max_bytes: what the store writes, or in
     * memory mode the same measure, taken only for a bounded channel. */
    uint64_t size = body != NULL && *body != NULL ? body_len
                    : ch->max_bytes != 0          ? sl_event_encoded_size(ev)
                                                  : 0;
    for (size_t i = 0; i < ch->ngroups; i++) {
        const emb_group *g = ch->groups[i];
        if ((ch->max_length != 0 && group_count(g) >= ch->max_length) ||
            (ch->max_bytes != 0 && g->bytes + size > ch->max_bytes)) {
            return SL_FULL;
        }
    }
    emb_msg *m = sl_calloc(1, sizeof *m + ch->ngroups * sizeof(emb_entry));
    if (m == NULL) {
        return SL_NOMEM;
    }
    m->nslots = (uint32_t)ch->ngroups;
    m->ev = sl_event_ref(ev);
    m->ch = ch;
    m->seq = e->next_seq++;
    m->refs = (uint32_t)ch->ngroups;
    m->cb = cb;
    m->cb_ctx = cb_ctx;
    m->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
    if (body != NULL) {
        m->body = *body;
        m->body_len = body_len;
        *body = NULL;
        m->ev_bytes = (uint32_t)body_len;
        e->resident += body_len;
    }
    for (size_t i = 0; i < ch->ngroups; i++) {
        emb_group *g = ch->groups[i];
        emb_entry *en = &m->entries[i];
        en->base.drv = &sl__embedded_driver;
        en->base.ev = m->ev;
        en->base.channel = ch->name;
        en->base.group = g->name;
        en->m = m;
        en->g = g;
        en->where = AT_READY;
        sl__list_push_tail(&g->ready, &en->link);
        g->bytes += m->size;
        mark_entry(e, en);
        pthread_cond_signal(&g->cv);
    }
    if (e->store != NULL) {
        mark_msg(e, m);
    } else if (m->refs == 0) {
        sl__emb_msg_free(m); /* no group: nobody will ever read it */
    }
    return SL_OK;
}

sl_status sl__emb_publish(sl_engine *base, const char *channel, sl_event *ev,
                          unsigned flags, unsigned hints, sl_publish_cb cb,
                          void *ctx)
{
    (void)hints; /* the callback runs on the committing thread anyway */
    emb_engine *e = (emb_engine *)base;
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    sl_event *stored = NULL;
    if (e->store != NULL) {
        /* The store keeps its own copy, decoded from the bytes it writes:
         * one exact-size block, so a queued event costs what it carries and
         * not the publisher's build buffers. */
        if ((st = sl_event_encode(ev, &body, &body_len)) != SL_OK) {
            return st;
        }
        if ((st = sl_event_decode(body, body_len, &stored, NULL)) != SL_OK) {
            sl_free(body);
            return st;
        }
        ev = stored;
    }
    bool confirm_now = false;
    uint64_t now = now_ms(e);
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = sl__emb_find_channel(e, channel);
    if (e->closing) {
        st = SL_CLOSED;
    } else if (e->store_err != SL_OK) {
        st = SL_UNAVAILABLE;
    } else if (ch == NULL) {
        st = SL_NOT_FOUND;
    } else if (!(flags & SL_PUBLISH_NO_DEDUP) &&
               sl__dedup_contains(e->dedup, ch, sl_event_id(ev), now)) {
        /* Already accepted: confirm again without enqueueing. */
        confirm_now = true;
    } else {
        st = sl__emb_enqueue_locked(e, ch, ev, &body, body_len,
                                    e->store ? cb : NULL, ctx);
        if (st == SL_OK) {
            sl__dedup_add(e->dedup, ch, sl_event_id(ev), now);
        }
        confirm_now = st == SL_OK && e->store == NULL;
    }
    emb_msg *graveyard = e->graveyard;
    e->graveyard = NULL;
    e->ngraveyard = 0;
    pthread_mutex_unlock(&e->mu);
    sl__emb_free_msgs(graveyard);
    sl_free(body);
    sl_event_unref(stored);
    if (confirm_now && cb != NULL) {
        cb(SL_OK, ctx);
    }
    return st;
}
