#include "engine/embedded/store.h"

#include "core/sqlite_util.h"
#include "sluice/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct emb_store {
    sqlite3 *db;
    sqlite3 *reader; /* second connection: reads while the writer
                        writes (WAL) */
    sqlite3_stmt *body_read;
    int lock_fd;
    sqlite3_stmt *msg_insert;
    sqlite3_stmt *msg_delete;
    sqlite3_stmt *entry_insert;
    sqlite3_stmt *entry_update;
    sqlite3_stmt *entry_delete;
};

/* entries is keyed (seq, gid) so that recovery reads messages and entries in
 * one merge by seq. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS channels("
    "  name TEXT PRIMARY KEY, max_length INTEGER NOT NULL,"
    "  max_bytes INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS groups("
    "  gid INTEGER PRIMARY KEY, channel TEXT NOT NULL, name TEXT NOT NULL,"
    "  max_attempts INTEGER NOT NULL, UNIQUE(channel, name));"
    "CREATE TABLE IF NOT EXISTS messages("
    "  seq INTEGER PRIMARY KEY, channel TEXT NOT NULL, body BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS entries("
    "  seq INTEGER NOT NULL, gid INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL, visible_at INTEGER NOT NULL,"
    "  PRIMARY KEY(seq, gid)) WITHOUT ROWID;";

static sl_status db_fail(emb_store *st, sl_diag *diag, const char *what)
{
    return sl_diag_set(diag, SL_IO, "embedded store: %s: %s", what,
                       st->db ? sqlite3_errmsg(st->db) : "no database");
}

static sl_status mkdir_p(const char *dir, sl_diag *diag)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return sl_diag_set(diag, SL_INVALID, "path too long: %s", dir);
    }
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                return sl_diag_set(diag, SL_IO, "mkdir %s: %s", path,
                                   strerror(errno));
            }
            *p = '/';
        }
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        return sl_diag_set(diag, SL_IO, "mkdir %s: %s", path, strerror(errno));
    }
    return SL_OK;
}

/* A store written before channels had max_bytes gets the column, 0 for
 * every channel it has (unbounded, as they were). */
static sl_status add_max_bytes_column(emb_store *st, sl_diag *diag)
{
    sqlite3_stmt *s = NULL;
    bool has = false;
    if (sqlite3_prepare_v2(st->db, "PRAGMA table_info(channels)", -1, &s,
                           NULL) != SQLITE_OK) {
        return db_fail(st, diag, "schema");
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *col = (const char *)sqlite3_column_text(s, 1);
        has = has || (col != NULL && strcmp(col, "max_bytes") == 0);
    }
    sqlite3_finalize(s);
    if (!has && sqlite3_exec(st->db,
                             "ALTER TABLE channels ADD COLUMN max_bytes "
                             "INTEGER NOT NULL DEFAULT 0",
                             NULL, NULL, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "adding channels.max_bytes");
    }
    return SL_OK;
}

static sl_status prepare(emb_store *st, const char *sql, sqlite3_stmt **out,
                         sl_diag *diag)
{
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
                           NULL) != SQLITE_OK) {
        return db_fail(st, diag, "prepare");
    }
    return SL_OK;
}

sl_status sl__emb_store_open(const char *dir, sl_sync_mode sync,
                             emb_store **out, sl_diag *diag)
{
    sl_status rc = mkdir_p(dir, diag);
    if (rc != SL_OK) {
        return rc;
    }
    emb_store *st = sl_calloc(1, sizeof *st);
    if (st == NULL) {
        return SL_NOMEM;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        rc = sl_diag_set(diag, SL_IO, "open %s: %s", path, strerror(errno));
        goto fail;
    }
    /* One process owns an embedded store; a second one would keep its own
     * view of the queues in memory and both would deliver the same events. */
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = sl_diag_set(diag, SL_EXISTS,
                         "embedded store %s is in use by another process", dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/sluice.db", dir);
    /* The store is written behind and read only at recovery: a small page
     * cache keeps memory from growing with the backlog, which is held in
     * memory by the engine anyway. */
    sl_sqlite_opts so = {.sync = emb_sqlite_sync(sync),
                         .cache_kib = 128,
                         .what = "embedded store"};
    if ((rc = sl__sqlite_open(path, &so, &st->db, diag)) != SL_OK) {
        goto fail;
    }
    if (sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        (rc = add_max_bytes_column(st, diag)) != SL_OK) {
        if (rc == SL_OK) {
            rc = db_fail(st, diag, "schema");
        }
        goto fail;
    }
    if ((rc = prepare(st,
                      "INSERT INTO messages(seq, channel, body) "
                      "VALUES(?1, ?2, ?3)",
                      &st->msg_insert, diag)) != SL_OK ||
        (rc = prepare(st, "DELETE FROM messages WHERE seq = ?1",
                      &st->msg_delete, diag)) != SL_OK ||
        (rc = prepare(st,
                      "INSERT INTO entries(seq, gid, attempts, visible_at)"
                      " VALUES(?1, ?2, ?3, ?4)",
                      &st->entry_insert, diag)) != SL_OK ||
        (rc = prepare(st,
                      "UPDATE entries SET attempts = ?3, visible_at = ?4 "
                      "WHERE seq = ?1 AND gid = ?2",
                      &st->entry_update, diag)) != SL_OK ||
        (rc = prepare(st, "DELETE FROM entries WHERE seq = ?1 AND gid = ?2",
                      &st->entry_delete, diag)) != SL_OK) {
        goto fail;
    }
    /* Point reads of recent rows: the OS page cache has them. */
    sl_sqlite_opts ro = {
        .read_only = true, .cache_kib = 64, .what = "embedded store reader"};
    if ((rc = sl__sqlite_open(path, &ro, &st->reader, diag)) != SL_OK) {
        goto fail;
    }
    if (sqlite3_prepare_v3(
            st->reader, "SELECT body FROM messages WHERE seq = ?1", -1,
            SQLITE_PREPARE_PERSISTENT, &st->body_read, NULL) != SQLITE_OK) {
        rc = sl_diag_set(diag, SL_IO, "embedded store: reader: %s",
                         sqlite3_errmsg(st->reader));
        goto fail;
    }
    *out = st;
    return SL_OK;
fail:
    sl__emb_store_close(st);
    return rc;
}

sl_status sl__emb_store_read_body(emb_store *st, int64_t seq, uint8_t **body,
                                  size_t *len)
{
    sl_status rc = SL_NOT_FOUND;
    sqlite3_bind_int64(st->body_read, 1, seq);
    int r = sqlite3_step(st->body_read);
    if (r == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st->body_read, 0);
        uint8_t *b = sl_malloc(n);
        if (b == NULL) {
            rc = SL_NOMEM;
        } else {
            memcpy(b, sqlite3_column_blob(st->body_read, 0), n);
            *body = b;
            *len = n;
            rc = SL_OK;
        }
    } else if (r != SQLITE_DONE) {
        rc = SL_IO;
    }
    sqlite3_reset(st->body_read);
    return rc;
}

void sl__emb_store_close(emb_store *st)
{
    if (st == NULL) {
        return;
    }
    sqlite3_finalize(st->msg_insert);
    sqlite3_finalize(st->msg_delete);
    sqlite3_finalize(st->entry_insert);
    sqlite3_finalize(st->entry_update);
    sqlite3_finalize(st->entry_delete);
    sqlite3_finalize(st->body_read);
    sqlite3_close(st->reader);
    sqlite3_close(st->db);
    if (st->lock_fd >= 0) {
        close(st->lock_fd); /* releases the flock */
    }
    sl_free(st);
}

sl_status sl__emb_store_put_channel(emb_store *st, const char *name,
                                    uint64_t max_length, uint64_t max_bytes,
                                    sl_diag *diag)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO channels(name, max_length, max_bytes) "
                           "VALUES(?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET "
                           "max_length = excluded.max_length, "
                           "max_bytes = excluded.max_bytes",
                           -1, &s, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "declare channel");
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max_length);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)max_bytes);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? SL_OK : db_fail(st, diag, "declare channel");
}

sl_status sl__emb_store_put_group(emb_store *st, const char *channel,
                                  const char *name, uint32_t max_attempts,
                                  int64_t *gid, sl_diag *diag)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO groups(channel, name, max_attempts) "
                           "VALUES(?1, ?2, ?3) ON CONFLICT(channel, name) DO "
                           "UPDATE SET max_attempts = excluded.max_attempts "
                           "RETURNING gid",
                           -1, &s, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "declare group");
    }
    sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, max_attempts);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *gid = sqlite3_column_int64(s, 0);
        r = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? SL_OK : db_fail(st, diag, "declare group");
}

static int run(sqlite3_stmt *s)
{
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? SQLITE_OK : r;
}

sl_status sl__emb_store_apply(emb_store *st, const emb_op *ops, size_t n,
                              sl_diag *diag)
{
    if (sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "begin");
    }
    for (size_t i = 0; i < n; i++) {
        const emb_op *op = &ops[i];
        sqlite3_stmt *s = NULL;
        switch (op->kind) {
        case EMB_MSG_INSERT:
            s = st->msg_insert;
            sqlite3_bind_int64(s, 1, op->seq);
            sqlite3_bind_text(s, 2, op->channel, -1, SQLITE_STATIC);
            sqlite3_bind_blob(s, 3, op->body, (int)op->len, SQLITE_STATIC);
            break;
        case EMB_MSG_DELETE:
            s = st->msg_delete;
            sqlite3_bind_int64(s, 1, op->seq);
            break;
        case EMB_ENTRY_INSERT:
        case EMB_ENTRY_UPDATE:
            s = op->kind == EMB_ENTRY_INSERT ? st->entry_insert
                                             : st->entry_update;
            sqlite3_bind_int64(s, 1, op->seq);
            sqlite3_bind_int64(s, 2, op->gid);
            sqlite3_bind_int64(s, 3, op->attempts);
            sqlite3_bind_int64(s, 4, (sqlite3_int64)op->visible_at);
            break;
        case EMB_ENTRY_DELETE:
            s = st->entry_delete;
            sqlite3_bind_int64(s, 1, op->seq);
            sqlite3_bind_int64(s, 2, op->gid);
            break;
        }
        if (run(s) != SQLITE_OK) {
            sl_status rc = db_fail(st, diag, "write");
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sl_status rc = db_fail(st, diag, "commit");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return SL_OK;
}

sl_status sl__emb_store_load(emb_store *st, const emb_store_visitor *v,
                             void *ctx, int64_t *max_seq, sl_diag *diag)
{
    sl_status rc = SL_OK;
    sqlite3_stmt *s = NULL;
    sqlite3_stmt *e = NULL;
    *max_seq = 0;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT name, max_length, max_bytes FROM channels",
                           -1, &s, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "load channels");
    }
    while (rc == SL_OK && sqlite3_step(s) == SQLITE_ROW) {
        rc = v->channel((const char *)sqlite3_column_text(s, 0),
                        (uint64_t)sqlite3_column_int64(s, 1),
                        (uint64_t)sqlite3_column_int64(s, 2), ctx);
    }
    sqlite3_finalize(s);
    s = NULL;
    if (rc != SL_OK) {
        return sl_diag_set(diag, rc, "embedded store: loading channels");
    }

    if (sqlite3_prepare_v2(st->db,
                           "SELECT channel, name, gid, max_attempts FROM "
                           "groups ORDER BY gid",
                           -1, &s, NULL) != SQLITE_OK) {
        return db_fail(st, diag, "load groups");
    }
    while (rc == SL_OK && sqlite3_step(s) == SQLITE_ROW) {
        rc = v->group((const char *)sqlite3_column_text(s, 0),
                      (const char *)sqlite3_column_text(s, 1),
                      sqlite3_column_int64(s, 2),
                      (uint32_t)sqlite3_column_int64(s, 3), ctx);
    }
    sqlite3_finalize(s);
    s = NULL;
    if (rc != SL_OK) {
        return sl_diag_set(diag, rc, "embedded store: loading groups");
    }

    if (sqlite3_prepare_v2(st->db,
                           "SELECT seq, channel, body FROM messages "
                           "ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "SELECT seq, gid, attempts, visible_at FROM "
                           "entries ORDER BY seq, gid",
                           -1, &e, NULL) != SQLITE_OK) {
        rc = db_fail(st, diag, "load messages");
        goto done;
    }
    int er = sqlite3_step(e);
    while (rc == SL_OK && sqlite3_step(s) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        *max_seq = seq;
        rc = v->message(seq, (const char *)sqlite3_column_text(s, 1),
                        sqlite3_column_blob(s, 2),
                        (size_t)sqlite3_column_bytes(s, 2), ctx);
        /* Entries of earlier (missing) messages are orphans: skip them. */
        while (rc == SL_OK && er == SQLITE_ROW &&
               sqlite3_column_int64(e, 0) <= seq) {
            if (sqlite3_column_int64(e, 0) == seq) {
                rc = v->entry(seq, sqlite3_column_int64(e, 1),
                              (uint32_t)sqlite3_column_int64(e, 2),
                              (uint64_t)sqlite3_column_int64(e, 3), ctx);
            }
            er = sqlite3_step(e);
        }
    }
    if (rc != SL_OK) {
        sl_diag_set(diag, rc, "embedded store: loading messages");
    }
done:
    sqlite3_finalize(s);
    sqlite3_finalize(e);
    return rc;
}
