#include "engine/embedded/ingress.h"

#include "core/sqlite_util.h"
#include "core/waiter.h"
#include "engine/driver.h"
#include "engine/embedded/embedded_int.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static const char ingress_schema[] =
    "CREATE TABLE IF NOT EXISTS ingress("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
    "  body BLOB NOT NULL, flags INTEGER NOT NULL DEFAULT 0);";

static sl_status open_ingress_db(const char *dir, sl_sync_mode sync,
                                 sqlite3 **out, sl_diag *diag)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/ingress.db", dir);
    sqlite3 *db = NULL;
    sl_sqlite_opts so = {
        .shared = true, .sync = emb_sqlite_sync(sync), .what = "ingress"};
    sl_status st = sl__sqlite_open(path, &so, &db, diag);
    if (st != SL_OK) {
        return st;
    }
    if (sqlite3_exec(db, ingress_schema, NULL, NULL, NULL) != SQLITE_OK) {
        st = sl_diag_set(diag, SL_IO, "ingress %s: %s", path,
                         sqlite3_errmsg(db));
        sqlite3_close(db);
        return st;
    }
    *out = db;
    return SL_OK;
}

/* ---- owner side ------------------------------------------------------- */

struct emb_ingress {
    sqlite3 *db;
    sqlite3_stmt *read;
    sqlite3_stmt *del;
};

sl_status sl__emb_ingress_open(const char *dir, emb_ingress **out,
                               sl_diag *diag)
{
    emb_ingress *in = sl_calloc(1, sizeof *in);
    if (in == NULL) {
        return SL_NOMEM;
    }
    sl_status st = open_ingress_db(dir, SL_SYNC_NORMAL, &in->db, diag);
    if (st == SL_OK &&
        (sqlite3_prepare_v2(in->db,
                            "SELECT seq, channel, body, flags FROM ingress "
                            "ORDER BY seq LIMIT ?1",
                            -1, &in->read, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(in->db, "DELETE FROM ingress WHERE seq <= ?1", -1,
                            &in->del, NULL) != SQLITE_OK)) {
        st = sl_diag_set(diag, SL_IO, "ingress: %s", sqlite3_errmsg(in->db));
    }
    if (st != SL_OK) {
        sl__emb_ingress_close(in);
        return st;
    }
    *out = in;
    return SL_OK;
}

sl_status sl__emb_ingress_read(emb_ingress *in, emb_ingress_row *rows,
                               size_t max, size_t *n)
{
    size_t got = 0;
    sqlite3_bind_int64(in->read, 1, (sqlite3_int64)max);
    int r;
    while (got < max && (r = sqlite3_step(in->read)) == SQLITE_ROW) {
        emb_ingress_row *row = &rows[got];
        size_t len = (size_t)sqlite3_column_bytes(in->read, 2);
        row->seq = sqlite3_column_int64(in->read, 0);
        row->channel =
            sl_strdup((const char *)sqlite3_column_text(in->read, 1));
        row->body = sl_malloc(len);
        row->len = len;
        row->flags = (unsigned)sqlite3_column_int64(in->read, 3);
        if (row->channel == NULL || row->body == NULL) {
            sl_free(row->channel);
            sl_free(row->body);
            break;
        }
        memcpy(row->body, sqlite3_column_blob(in->read, 2), len);
        got++;
    }
    sqlite3_reset(in->read);
    *n = got;
    return SL_OK;
}

void sl__emb_ingress_rows_free(emb_ingress_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_free(rows[i].channel);
        sl_free(rows[i].body);
    }
}

sl_status sl__emb_ingress_delete_upto(emb_ingress *in, int64_t seq)
{
    sqlite3_bind_int64(in->del, 1, seq);
    int r = sqlite3_step(in->del);
    sqlite3_reset(in->del);
    return r == SQLITE_DONE ? SL_OK : SL_IO;
}

void sl__emb_ingress_close(emb_ingress *in)
{
    if (in != NULL) {
        sqlite3_finalize(in->read);
        sqlite3_finalize(in->del);
        sqlite3_close(in->db);
        sl_free(in);
    }
}

/* ---- owner side: the drain thread ---------------------------------------- */

#define INGRESS_BATCH 256
#define INGRESS_IDLE_MS 20

/* Confirms of one ingress batch. */
typedef struct ingress_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    bool failed;
} ingress_wait;

static void ingress_confirm(sl_status st, void *ctx)
{
    ingress_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->pending--;
    w->failed |= st != SL_OK;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Move events from the ingress into the channels, oldest first. A row is
 * deleted only after the store committed its event; a crash in between
 * re-ingests it, and the dedup window (recovered ids included) drops it. */
void *sl__emb_ingress_main(void *arg)
{
    emb_engine *e = arg;
    emb_ingress_row rows[INGRESS_BATCH];
    ingress_wait w = {.pending = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool closing = e->closing;
        pthread_mutex_unlock(&e->mu);
        if (closing) {
            break;
        }
        size_t n = 0;
        sl__emb_ingress_read(e->ingress, rows, INGRESS_BATCH, &n);
        size_t done = 0;
        bool full = false;
        for (; done < n; done++) {
            sl_event *ev = NULL;
            sl_diag diag = {0};
            if (sl_event_decode(rows[done].body, rows[done].len, &ev, &diag) !=
                SL_OK) {
                sl_logf(SL_LOG_ERROR, "engine.embedded",
                        "ingress row %" PRId64 " unreadable (%s): dropped",
                        rows[done].seq, diag.msg);
                continue;
            }
            pthread_mutex_lock(&w.mu);
            w.pending++;
            pthread_mutex_unlock(&w.mu);
            sl_status st =
                sl__emb_publish(&e->base, rows[done].channel, ev,
                                rows[done].flags, 0, ingress_confirm, &w);
            sl_event_unref(ev);
            if (st != SL_OK) {
                pthread_mutex_lock(&w.mu);
                w.pending--;
                pthread_mutex_unlock(&w.mu);
            }
            if (st == SL_FULL || st == SL_CLOSED || st == SL_UNAVAILABLE) {
                full = true; /* leave it for later, in order */
                break;
            }
            if (st != SL_OK) {
                sl_logf(SL_LOG_ERROR, "engine.embedded",
                        "ingress event for %s refused: %s; dropped",
                        rows[done].channel, sl_status_str(st));
            }
        }
        pthread_mutex_lock(&w.mu);
        while (w.pending > 0) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        bool failed = w.failed;
        w.failed = false;
        pthread_mutex_unlock(&w.mu);
        if (done > 0 && !failed) {
            sl__emb_ingress_delete_upto(e->ingress, rows[done - 1].seq);
        }
        sl__emb_ingress_rows_free(rows, n);
        if (n < INGRESS_BATCH || full || failed) {
            struct timespec ts;
            sl__deadline_after(&ts, INGRESS_IDLE_MS);
            pthread_mutex_lock(&e->mu);
            if (!e->closing) {
                pthread_cond_timedwait(&e->ingress_cv, &e->mu, &ts);
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return NULL;
}

/* ---- client side ------------------------------------------------------ */

typedef struct client {
    sl_engine base;
    sl_engine_opts opts;
    pthread_mutex_t mu; /* one SQLite connection pair, one user at a time */
    sqlite3 *ingress;
    sqlite3 *store; /* read-only */
} client;

sl_status sl__embedded_client_open(const char *dir, const sl_engine_opts *opts,
                                   sl_engine **out, sl_diag *diag)
{
    client *c = sl_calloc(1, sizeof *c);
    if (c == NULL) {
        return SL_NOMEM;
    }
    c->base.drv = &sl__embedded_client_driver;
    c->opts = *opts;
    pthread_mutex_init(&c->mu, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/sluice.db", dir);
    sl_status st = open_ingress_db(dir, opts->sync, &c->ingress, diag);
    if (st == SL_OK) {
        sl_sqlite_opts so = {
            .read_only = true, .shared = true, .what = "embedded store"};
        st = sl__sqlite_open(path, &so, &c->store, diag);
    }
    if (st != SL_OK) {
        sqlite3_close(c->ingress);
        sqlite3_close(c->store);
        pthread_mutex_destroy(&c->mu);
        sl_free(c);
        return st;
    }
    *out = &c->base;
    return SL_OK;
}

static void client_close(sl_engine *base)
{
    client *c = (client *)base;
    sqlite3_close(c->ingress);
    sqlite3_close(c->store);
    pthread_mutex_destroy(&c->mu);
    sl_free(c);
}

static bool client_is_ready(const sl_engine *base)
{
    (void)base;
    return true;
}

/* Look up a group id; 0 if absent. */
static int64_t group_id(client *c, const char *channel, const char *group)
{
    sqlite3_stmt *s = NULL;
    int64_t gid = 0;
    if (sqlite3_prepare_v2(c->store,
                           "SELECT gid FROM groups WHERE channel = ?1 AND "
                           "name = ?2",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, group, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) {
            gid = sqlite3_column_int64(s, 0);
        }
    }
    sqlite3_finalize(s);
    return gid;
}

static bool channel_exists(client *c, const char *channel)
{
    sqlite3_stmt *s = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(c->store, "SELECT 1 FROM channels WHERE name = ?1",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
        found = sqlite3_step(s) == SQLITE_ROW;
    }
    sqlite3_finalize(s);
    return found;
}

static sl_status client_declare_channel(sl_engine *base,
                                        const sl_channel_opts *opts,
                                        sl_diag *diag)
{
    client *c = (client *)base;
    pthread_mutex_lock(&c->mu);
    bool ok = channel_exists(c, opts->name);
    pthread_mutex_unlock(&c->mu);
    return ok ? SL_OK
              : sl_diag_set(diag, SL_UNAVAILABLE,
                            "channel '%s' is not declared, and the store is "
                            "owned by a running service: declare it there",
                            opts->name);
}

static sl_status client_declare_group(sl_engine *base,
                                      const sl_group_opts *opts, sl_diag *diag)
{
    client *c = (client *)base;
    pthread_mutex_lock(&c->mu);
    bool ok = group_id(c, opts->channel, opts->name) != 0;
    pthread_mutex_unlock(&c->mu);
    return ok ? SL_OK
              : sl_diag_set(diag, SL_UNAVAILABLE,
                            "group '%s' is not declared, and the store is "
                            "owned by a running service: declare it there",
                            opts->name);
}

static sl_status client_publish(sl_engine *base, const char *channel,
                                sl_event *ev, unsigned flags, unsigned hints,
                                sl_publish_cb cb, void *ctx)
{
    (void)hints; /* no hint changes how a client publishes */
    client *c = (client *)base;
    sl_status st = sl_event_validate(ev, c->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    uint8_t *body = NULL;
    size_t len = 0;
    if ((st = sl_event_encode(ev, &body, &len)) != SL_OK) {
        return st;
    }
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = NULL;
    if (!channel_exists(c, channel)) {
        st = SL_NOT_FOUND;
        goto done;
    }
    /* The ingress is bounded: the owner drains it as its channels have room,
     * and a backlog at the limit means the owner is not keeping up. */
    if (sqlite3_prepare_v2(c->ingress, "SELECT count(*) FROM ingress", -1, &s,
                           NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        st = SL_IO;
        goto done;
    }
    if (sqlite3_column_int64(s, 0) >= SL_INGRESS_MAX) {
        st = SL_FULL;
        goto done;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(c->ingress,
                           "INSERT INTO ingress(channel, body, flags) "
                           "VALUES(?1, ?2, ?3)",
                           -1, &s, NULL) != SQLITE_OK) {
        st = SL_IO;
        goto done;
    }
    sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, body, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, flags);
    st = sqlite3_step(s) == SQLITE_DONE ? SL_OK : SL_IO;
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    sl_free(body);
    if (st == SL_OK && cb != NULL) {
        cb(SL_OK, ctx);
    }
    return st;
}

static sl_status client_subscribe(sl_engine *base, const char *channel,
                                  const char *group,
                                  const sl_subscribe_opts *opts,
                                  sl_subscription **out, sl_diag *diag)
{
    (void)base;
    (void)opts;
    (void)out;
    return sl_diag_set(diag, SL_UNSUPPORTED,
                       "cannot consume %s/%s: the embedded store is in use "
                       "by another process (stop it first)",
                       channel, group);
}

static sl_status client_depth(sl_engine *base, const char *channel,
                              const char *group, sl_depth *out)
{
    client *c = (client *)base;
    pthread_mutex_lock(&c->mu);
    int64_t gid = group_id(c, channel, group);
    sl_status st = gid ? SL_OK : SL_NOT_FOUND;
    sqlite3_stmt *s = NULL;
    if (gid && sqlite3_prepare_v2(c->store,
                                  "SELECT count(*) FROM entries WHERE gid = ?1",
                                  -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, gid);
        if (sqlite3_step(s) == SQLITE_ROW) {
            /* The store is written behind: this is what it last committed,
             * without the split between ready and in flight. */
            *out = (sl_depth){.ready = (uint64_t)sqlite3_column_int64(s, 0)};
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}

static sl_status client_browse(sl_engine *base, const char *channel,
                               const char *group, size_t max, sl_browse_fn fn,
                               void *ctx)
{
    client *c = (client *)base;
    pthread_mutex_lock(&c->mu);
    int64_t gid = group_id(c, channel, group);
    if (gid == 0) {
        pthread_mutex_unlock(&c->mu);
        return SL_NOT_FOUND;
    }
    sqlite3_stmt *s = NULL;
    sl_status st = SL_OK;
    if (sqlite3_prepare_v2(c->store,
                           "SELECT m.body, e.attempts FROM entries e JOIN "
                           "messages m ON m.seq = e.seq WHERE e.gid = ?1 "
                           "ORDER BY e.seq LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK) {
        st = SL_IO;
    } else {
        sqlite3_bind_int64(s, 1, gid);
        sqlite3_bind_int64(s, 2, max ? (sqlite3_int64)max : -1);
        while (sqlite3_step(s) == SQLITE_ROW) {
            sl_event *ev = NULL;
            if (sl_event_decode(sqlite3_column_blob(s, 0),
                                (size_t)sqlite3_column_bytes(s, 0), &ev,
                                NULL) != SL_OK) {
                continue;
            }
            bool go = fn(ev, (uint32_t)sqlite3_column_int64(s, 1), ctx);
            sl_event_unref(ev);
            if (!go) {
                break;
            }
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}

const sl_driver sl__embedded_client_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "embedded-client",
    .scheme = "embedded:",
    .close = client_close,
    .is_ready = client_is_ready,
    .declare_channel = client_declare_channel,
    .declare_group = client_declare_group,
    .publish = client_publish,
    .subscribe = client_subscribe,
    .depth = client_depth,
    .browse = client_browse,
};
