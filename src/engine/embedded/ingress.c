#include "engine/embedded/ingress.h"

#include "engine/driver.h"
#include "sluice/alloc.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static const char ingress_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA busy_timeout=5000;"
    "CREATE TABLE IF NOT EXISTS ingress("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
    "  body BLOB NOT NULL, flags INTEGER NOT NULL DEFAULT 0);";

static sl_status open_ingress_db(const char *dir, sl_sync_mode sync,
                                 sqlite3 **out, sl_diag *diag)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/ingress.db", dir);
    sqlite3 *db = NULL;
    const char *sync_sql = sync == SL_SYNC_FULL  ? "PRAGMA synchronous=FULL;"
                           : sync == SL_SYNC_OFF ? "PRAGMA synchronous=OFF;"
                                                 : "PRAGMA synchronous=NORMAL;";
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_exec(db, ingress_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, sync_sql, NULL, NULL, NULL) != SQLITE_OK) {
        sl_status st = sl_diag_set(diag, SL_IO, "ingress %s: %s", path,
                                   db ? sqlite3_errmsg(db) : "cannot open");
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

sl_status emb_ingress_open(const char *dir, emb_ingress **out, sl_diag *diag)
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
        emb_ingress_close(in);
        return st;
    }
    *out = in;
    return SL_OK;
}

sl_status emb_ingress_read(emb_ingress *in, emb_ingress_row *rows, size_t max,
                           size_t *n)
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

void emb_ingress_rows_free(emb_ingress_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_free(rows[i].channel);
        sl_free(rows[i].body);
    }
}

sl_status emb_ingress_delete_upto(emb_ingress *in, int64_t seq)
{
    sqlite3_bind_int64(in->del, 1, seq);
    int r = sqlite3_step(in->del);
    sqlite3_reset(in->del);
    return r == SQLITE_DONE ? SL_OK : SL_IO;
}

void emb_ingress_close(emb_ingress *in)
{
    if (in != NULL) {
        sqlite3_finalize(in->read);
        sqlite3_finalize(in->del);
        sqlite3_close(in->db);
        sl_free(in);
    }
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
    if (st == SL_OK &&
        sqlite3_open_v2(path, &c->store,
                        SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        st = sl_diag_set(diag, SL_IO, "%s: %s", path,
                         sqlite3_errmsg(c->store));
    }
    if (st == SL_OK) {
        sqlite3_busy_timeout(c->store, 5000);
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
                                sl_event *ev, unsigned flags, sl_publish_cb cb,
                                void *ctx)
{
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
    if (gid &&
        sqlite3_prepare_v2(c->store,
                           "SELECT count(*) FROM entries WHERE gid = ?1", -1,
                           &s, NULL) == SQLITE_OK) {
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
