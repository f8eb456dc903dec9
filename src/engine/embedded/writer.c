/* The embedded engine's writer thread (store mode): group commit.
 *
 * Whatever changed while the last commit ran goes into the next one: the
 * dirty lists are turned into row operations under the lock, written to
 * SQLite outside it, and the confirms of the batch's messages are called
 * once it committed.
 */
#include "engine/embedded/embedded_int.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <string.h>
#include <time.h>

/* ---- the writer (store mode) ----------------------------------------------
 */

typedef struct batch {
    emb_op *ops;
    size_t n, cap;
    emb_msg **msgs; /* snapshot of dirty messages */
    size_t nmsgs, msgs_cap;
    emb_entry **entries;
    size_t nentries, entries_cap;
} batch;

static sl_status grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return SL_OK;
    }
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        c *= 2;
    }
    void *p = sl_realloc(*arr, c * elem);
    if (p == NULL) {
        return SL_NOMEM;
    }
    *arr = p;
    *cap = c;
    return SL_OK;
}

/* Turn the dirty lists into row operations. Lock held. Messages go first so
 * that an entry's message row exists before the entry row. */
static sl_status snapshot(emb_engine *e, batch *b)
{
    b->n = b->nmsgs = b->nentries = 0;
    size_t nm = 0, ne = 0;
    for (emb_msg *m = e->dirty_msgs; m; m = m->dirty_next) {
        nm++;
    }
    for (emb_entry *en = e->dirty_entries; en; en = en->dirty_next) {
        ne++;
    }
    if (grow((void **)&b->ops, &b->cap, nm + ne, sizeof *b->ops) != SL_OK ||
        grow((void **)&b->msgs, &b->msgs_cap, nm, sizeof *b->msgs) != SL_OK ||
        grow((void **)&b->entries, &b->entries_cap, ne, sizeof *b->entries) !=
            SL_OK) {
        return SL_NOMEM;
    }
    for (emb_msg *m = e->dirty_msgs; m; m = m->dirty_next) {
        m->dirty = false;
        b->msgs[b->nmsgs++] = m;
        /* in_db changes here, not after the commit: changes made while the
         * commit runs must already see the row as written. A failed commit
         * makes the store unusable (store_err), so this never lies for
         * long. */
        if (m->refs > 0 && !m->in_db) {
            b->ops[b->n++] = (emb_op){.kind = EMB_MSG_INSERT,
                                      .seq = m->seq,
                                      .channel = m->ch->name,
                                      .body = m->body,
                                      .len = m->body_len};
            m->in_db = true;
        } else if (m->refs == 0 && m->in_db) {
            b->ops[b->n++] = (emb_op){.kind = EMB_MSG_DELETE, .seq = m->seq};
            m->in_db = false;
        }
    }
    for (emb_entry *en = e->dirty_entries; en; en = en->dirty_next) {
        en->dirty = false;
        b->entries[b->nentries++] = en;
        emb_op op = {.seq = en->m->seq,
                     .gid = en->g->gid,
                     .attempts = en->attempts,
                     .visible_at =
                         en->where == AT_DELAYED ? en->visible_at : 0};
        if (en->where == AT_DONE) {
            if (!en->in_db) {
                continue;
            }
            op.kind = EMB_ENTRY_DELETE;
            en->in_db = false;
        } else {
            op.kind = en->in_db ? EMB_ENTRY_UPDATE : EMB_ENTRY_INSERT;
            en->in_db = true;
        }
        b->ops[b->n++] = op;
    }
    e->dirty_msgs = NULL;
    e->dirty_msgs_tail = &e->dirty_msgs;
    e->dirty_entries = NULL;
    e->dirty_entries_tail = &e->dirty_entries;
    return SL_OK;
}

/* After the commit: drop bodies now in the database. Lock held. Settled
 * entries go with their message, which the caller frees once unreferenced
 * and after it took the confirms. */
static void settle_batch(batch *b)
{
    for (size_t i = 0; i < b->nmsgs; i++) {
        emb_msg *m = b->msgs[i];
        if (m->in_db) {
            sl_free(m->body);
            m->body = NULL;
        }
    }
}

void *sl__emb_writer_main(void *arg)
{
    emb_engine *e = arg;
    batch b = {0};
    typedef struct confirm {
        sl_publish_cb cb;
        void *ctx;
    } confirm;
    confirm *confirms = NULL;
    size_t confirms_cap = 0;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (e->dirty_msgs == NULL && e->dirty_entries == NULL &&
               !e->closing) {
            pthread_cond_wait(&e->writer_cv, &e->mu);
        }
        if (e->dirty_msgs == NULL && e->dirty_entries == NULL) {
            break; /* closing, nothing left to write */
        }
        if (e->opts.commit_interval_ms > 0 && !e->closing) {
            /* Trade latency for fewer, larger commits (fsyncs). */
            struct timespec ts;
            sl__deadline_after(&ts, e->opts.commit_interval_ms);
            pthread_cond_timedwait(&e->commit_wait_cv, &e->mu, &ts);
        }
        uint64_t this_batch = e->batch_next++;
        sl_status st = snapshot(e, &b);
        pthread_mutex_unlock(&e->mu);

        sl_diag diag = {0};
        if (st == SL_OK) {
            st = sl__emb_store_apply(e->store, b.ops, b.n, &diag);
        }
        if (st != SL_OK) {
            sl_logf(SL_LOG_ERROR, "engine.embedded", "store write failed: %s",
                    diag.msg[0] ? diag.msg : sl_status_str(st));
        }

        pthread_mutex_lock(&e->mu);
        /* Collect confirms before freeing anything. */
        size_t nconf = 0;
        if (grow((void **)&confirms, &confirms_cap, b.nmsgs + 1,
                 sizeof *confirms) == SL_OK) {
            for (size_t i = 0; i < b.nmsgs; i++) {
                if (b.msgs[i]->cb != NULL) {
                    confirms[nconf++] =
                        (confirm){b.msgs[i]->cb, b.msgs[i]->cb_ctx};
                    b.msgs[i]->cb = NULL;
                }
            }
        }
        settle_batch(&b);
        /* Free messages no entry references and no dirty list holds; past
         * the budget, spill the newest committed ones. */
        for (size_t i = b.nmsgs; i-- > 0;) {
            emb_msg *m = b.msgs[i];
            if (m->refs == 0 && !m->dirty) {
                if (m->ev != NULL) {
                    e->resident -= m->ev_bytes;
                }
                sl__emb_msg_free(m);
            } else if (st == SL_OK && e->resident > e->budget &&
                       sl__emb_spillable(m)) {
                sl__emb_spill(e, m);
            }
        }
        if (st != SL_OK) {
            e->store_err = st;
        }
        e->batch_done = this_batch;
        pthread_cond_broadcast(&e->commit_cv);
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < nconf; i++) {
            confirms[i].cb(st == SL_OK ? SL_OK : SL_IO, confirms[i].ctx);
        }
        pthread_mutex_lock(&e->mu);
        if (st != SL_OK) {
            /* Wake every fetcher so they see the failure. */
            for (size_t i = 0; i < e->nchannels; i++) {
                for (size_t j = 0; j < e->channels[i]->ngroups; j++) {
                    pthread_cond_broadcast(&e->channels[i]->groups[j]->cv);
                }
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    sl_free(b.ops);
    sl_free(b.msgs);
    sl_free(b.entries);
    sl_free(confirms);
    return NULL;
}
