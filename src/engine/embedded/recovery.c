/* The embedded engine's recovery: loading a store at open.
 *
 * Channels, groups, then messages with their entries in sequence order,
 * through store.c's visitor. Runs before the engine's threads start, so
 * without the lock.
 */
#include "engine/embedded/embedded_int.h"

#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>

/* ---- recovery
 * ----------------------------------------------------------------- */

typedef struct load_ctx {
    emb_engine *e;
    emb_msg *cur; /* message whose entries come next */
    uint64_t loaded;
} load_ctx;

static sl_status load_channel(const char *name, uint64_t max_length,
                              uint64_t max_bytes, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = NULL;
    return sl__emb_add_channel(lc->e, name, max_length, max_bytes, &ch);
}

static sl_status load_group(const char *channel, const char *name, int64_t gid,
                            uint32_t max_attempts, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = sl__emb_find_channel(lc->e, channel);
    if (ch == NULL) {
        return SL_OK; /* orphan row */
    }
    emb_group *g = NULL;
    return sl__emb_add_group(lc->e, ch, name, gid, max_attempts, &g);
}

static void link_dlqs(emb_engine *e)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            char name[512];
            if (sl__dlq_channel_name(ch->name, ch->groups[j]->name, name,
                                     sizeof name) == SL_OK) {
                ch->groups[j]->dlq = sl__emb_find_channel(e, name);
            }
        }
    }
}

static sl_status load_message(int64_t seq, const char *channel,
                              const uint8_t *body, size_t len, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = sl__emb_find_channel(lc->e, channel);
    sl_event *ev = NULL;
    lc->cur = NULL;
    if (ch == NULL || sl_event_decode(body, len, &ev, NULL) != SL_OK) {
        sl_logf(SL_LOG_WARN, "engine.embedded",
                "skipping unreadable stored message %" PRId64, seq);
        return SL_OK;
    }
    emb_msg *m = sl_calloc(1, sizeof *m + ch->ngroups * sizeof(emb_entry));
    if (m == NULL) {
        sl_event_unref(ev);
        return SL_NOMEM;
    }
    m->nslots = (uint32_t)ch->ngroups;
    m->ev = ev;
    m->ev_bytes = (uint32_t)len;
    m->size = (uint32_t)len;
    lc->e->resident += len;
    m->ch = ch;
    m->seq = seq;
    m->in_db = true;
    lc->cur = m;
    /* Recovered ids are known ids: a producer retrying an unknown outcome
     * after the crash is deduplicated. */
    sl__dedup_add(lc->e->dedup, ch, sl_event_id(ev), now_ms(lc->e));
    return SL_OK;
}

static sl_status load_entry(int64_t seq, int64_t gid, uint32_t attempts,
                            uint64_t visible_at, void *ctx)
{
    load_ctx *lc = ctx;
    emb_msg *m = lc->cur;
    emb_group *g = sl__emb_find_gid(lc->e, gid);
    if (m == NULL || m->seq != seq || g == NULL || g->ch != m->ch ||
        m->refs == m->nslots) {
        return SL_OK;
    }
    emb_entry *en = &m->entries[m->refs];
    en->base.drv = &sl__embedded_driver;
    en->base.ev = m->ev;
    en->base.channel = m->ch->name;
    en->base.group = g->name;
    en->m = m;
    en->g = g;
    en->attempts = attempts;
    en->in_db = true;
    m->refs++;
    g->bytes += m->size;
    lc->loaded++;
    if (visible_at > now_ms(lc->e)) {
        en->where = AT_DELAYED;
        en->visible_at = visible_at;
        return sl__emb_heap_push(g, en);
    }
    en->where = AT_READY;
    sl__list_push_tail(&g->ready, &en->link);
    return SL_OK;
}

/* Messages whose every entry is gone are dropped (a crash between the entry
 * delete and the message delete). */
static void drop_unreferenced(emb_engine *e, emb_msg *m)
{
    if (m != NULL && m->refs == 0) {
        mark_msg(e, m);
    }
}

/* Message callback that first retires the previous message if unused. */
static sl_status load_message_chain(int64_t seq, const char *channel,
                                    const uint8_t *body, size_t len, void *ctx)
{
    load_ctx *lc = ctx;
    drop_unreferenced(lc->e, lc->cur);
    return load_message(seq, channel, body, len, ctx);
}

sl_status sl__emb_recover(emb_engine *e, const char *dir, sl_diag *diag)
{
    load_ctx lc = {e, NULL, 0};
    emb_store_visitor v = {load_channel, load_group, load_message_chain,
                           load_entry};
    int64_t max_seq = 0;
    sl_status st = sl__emb_store_load(e->store, &v, &lc, &max_seq, diag);
    if (st != SL_OK) {
        return st;
    }
    drop_unreferenced(e, lc.cur);
    link_dlqs(e);
    e->next_seq = max_seq + 1;
    if (lc.loaded > 0) {
        sl_logf(SL_LOG_INFO, "engine.embedded",
                "recovered %" PRIu64 " pending deliveries from %s", lc.loaded,
                dir);
    }
    return SL_OK;
}
