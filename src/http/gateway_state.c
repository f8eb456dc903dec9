/* The gateway's state in SQLite: idempotency records and the status
 * projection, two tables in one file.
 *
 * One connection serves the process; a mutex serialises its use, because a
 * prepared statement belongs to one thread at a time. Several processes may
 * share the file (WAL); a claim is one IMMEDIATE transaction, so two
 * processes never both claim a key.
 */
#include "sluice/gateway.h"

#include "http/gateway_state.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_IDEMPOTENCY_TTL_MS (24ull * 3600 * 1000)
#define DEFAULT_STATUS_TTL_MS (7ull * 24 * 3600 * 1000)
/* Expired rows are purged every this many writes. */
#define PURGE_EVERY 4096
#define ID_MAX 256

/* Record states. */
enum { IDEM_CLAIMED = 1, IDEM_DONE = 2, IDEM_OPEN = 3 };

enum {
    Q_IDEM_GET,
    Q_IDEM_PUT,
    Q_IDEM_RECLAIM,
    Q_IDEM_FINISH,
    Q_IDEM_RELEASE,
    Q_IDEM_FORGET,
    Q_IDEM_PURGE,
    Q_STATUS_SET,
    Q_STATUS_PENDING,
    Q_STATUS_GET,
    Q_STATUS_PURGE,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_COUNT_
};

static const char *const sql[Q_COUNT_] = {
    [Q_IDEM_GET] = "SELECT fp1, fp2, state, event_id, http_status, body, "
                   "created_at, claimed_at FROM gateway_idempotency "
                   "WHERE key = ?1",
    [Q_IDEM_PUT] = "INSERT OR REPLACE INTO gateway_idempotency(key, fp1, "
                   "fp2, state, event_id, http_status, body, created_at, "
                   "claimed_at) VALUES(?1, ?2, ?3, 1, ?4, NULL, NULL, ?5, "
                   "?5)",
    [Q_IDEM_RECLAIM] = "UPDATE gateway_idempotency SET state = 1, "
                       "claimed_at = ?2 WHERE key = ?1",
    [Q_IDEM_FINISH] = "UPDATE gateway_idempotency SET state = 2, "
                      "http_status = ?2, body = ?3 WHERE key = ?1",
    [Q_IDEM_RELEASE] = "UPDATE gateway_idempotency SET state = 3 "
                       "WHERE key = ?1 AND state = 1",
    [Q_IDEM_FORGET] = "DELETE FROM gateway_idempotency "
                      "WHERE key = ?1 AND state = 1",
    [Q_IDEM_PURGE] = "DELETE FROM gateway_idempotency WHERE created_at < ?1",
    [Q_STATUS_SET] = "INSERT OR REPLACE INTO gateway_status(id, status, "
                     "detail, updated_at) VALUES(?1, ?2, ?3, ?4)",
    [Q_STATUS_PENDING] = "INSERT OR IGNORE INTO gateway_status(id, status, "
                         "detail, updated_at) VALUES(?1, 'pending', NULL, "
                         "?2)",
    [Q_STATUS_GET] = "SELECT status, detail, updated_at FROM gateway_status "
                     "WHERE id = ?1",
    [Q_STATUS_PURGE] = "DELETE FROM gateway_status WHERE updated_at < ?1",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

struct sl_gateway_state {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT_];
    pthread_mutex_t mu;
    uint64_t idem_ttl_ms;
    uint64_t status_ttl_ms;
    const sl_clock *clock;
    uint64_t since_purge; /* writes; guarded by mu */
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA busy_timeout=5000;"
    "CREATE TABLE IF NOT EXISTS gateway_idempotency("
    "  key TEXT PRIMARY KEY, fp1 INTEGER NOT NULL, fp2 INTEGER NOT NULL,"
    "  state INTEGER NOT NULL, event_id TEXT NOT NULL,"
    "  http_status INTEGER, body TEXT,"
    "  created_at INTEGER NOT NULL, claimed_at INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS gateway_idempotency_at"
    "  ON gateway_idempotency(created_at);"
    "CREATE TABLE IF NOT EXISTS gateway_status("
    "  id TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT,"
    "  updated_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS gateway_status_at"
    "  ON gateway_status(updated_at);";

sl_status sl_gateway_state_open(const char *path,
                                const sl_gateway_state_opts *opts,
                                sl_gateway_state **out, sl_diag *diag)
{
    if (path == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "NULL argument");
    }
    sl_gateway_state_opts o = opts ? *opts : (sl_gateway_state_opts){0};
    sl_gateway_state *gs = sl_calloc(1, sizeof *gs);
    if (gs == NULL) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    pthread_mutex_init(&gs->mu, NULL);
    gs->idem_ttl_ms = o.idempotency_ttl_ms ? o.idempotency_ttl_ms
                                           : DEFAULT_IDEMPOTENCY_TTL_MS;
    gs->status_ttl_ms =
        o.status_ttl_ms ? o.status_ttl_ms : DEFAULT_STATUS_TTL_MS;
    gs->clock = o.clock;
    int rc = sqlite3_open_v2(
        path, &gs->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(gs->db, schema, NULL, NULL, NULL);
    }
    for (int i = 0; rc == SQLITE_OK && i < Q_COUNT_; i++) {
        rc = sqlite3_prepare_v2(gs->db, sql[i], -1, &gs->q[i], NULL);
    }
    if (rc != SQLITE_OK) {
        sl_status st = sl_diag_set(
            diag, rc == SQLITE_NOMEM ? SL_NOMEM : SL_IO, "gateway state %s: %s",
            path, gs->db ? sqlite3_errmsg(gs->db) : "cannot open");
        sl_gateway_state_close(gs);
        return st;
    }
    *out = gs;
    return SL_OK;
}

void sl_gateway_state_close(sl_gateway_state *gs)
{
    if (gs == NULL) {
        return;
    }
    for (int i = 0; i < Q_COUNT_; i++) {
        sqlite3_finalize(gs->q[i]);
    }
    sqlite3_close(gs->db);
    pthread_mutex_destroy(&gs->mu);
    sl_free(gs);
}

static uint64_t now_ms(const sl_gateway_state *gs)
{
    return sl_clock_now_ms(gs->clock);
}

/* Run a statement that returns no rows, then reset it. mu held. */
static int step_done(sl_gateway_state *gs, int q)
{
    int rc = sqlite3_step(gs->q[q]);
    sqlite3_reset(gs->q[q]);
    sqlite3_clear_bindings(gs->q[q]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static sl_status io_error(sl_gateway_state *gs, const char *what)
{
    sl_logf(SL_LOG_ERROR, "gateway", "state %s: %s", what,
            sqlite3_errmsg(gs->db));
    return SL_IO;
}

/* Count a write; purge expired rows now and then. mu held, outside a
 * transaction. */
static void maybe_purge(sl_gateway_state *gs, uint64_t now, uint64_t writes)
{
    gs->since_purge += writes;
    if (gs->since_purge < PURGE_EVERY) {
        return;
    }
    gs->since_purge = 0;
    if (now > gs->idem_ttl_ms) {
        sqlite3_bind_int64(gs->q[Q_IDEM_PURGE], 1,
                           (sqlite3_int64)(now - gs->idem_ttl_ms));
        step_done(gs, Q_IDEM_PURGE);
    }
    if (now > gs->status_ttl_ms) {
        sqlite3_bind_int64(gs->q[Q_STATUS_PURGE], 1,
                           (sqlite3_int64)(now - gs->status_ttl_ms));
        step_done(gs, Q_STATUS_PURGE);
    }
}

static bool status_is_valid(const char *status)
{
    return status != NULL &&
           (strcmp(status, SL_GATEWAY_STATUS_PENDING) == 0 ||
            strcmp(status, SL_GATEWAY_STATUS_PROCESSING) == 0 ||
            strcmp(status, SL_GATEWAY_STATUS_COMPLETED) == 0 ||
            strcmp(status, SL_GATEWAY_STATUS_FAILED) == 0);
}

static bool id_is_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= ID_MAX;
}

sl_status sl_gateway_status_set(sl_gateway_state *gs, const char *id,
                                const char *status, const char *detail)
{
    if (gs == NULL || !id_is_valid(id) || !status_is_valid(status)) {
        return SL_INVALID;
    }
    pthread_mutex_lock(&gs->mu);
    uint64_t now = now_ms(gs);
    sqlite3_stmt *s = gs->q[Q_STATUS_SET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
    if (detail != NULL) {
        sqlite3_bind_text(s, 3, detail, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 3);
    }
    sqlite3_bind_int64(s, 4, (sqlite3_int64)now);
    sl_status st = step_done(gs, Q_STATUS_SET) == SQLITE_OK
                       ? SL_OK
                       : io_error(gs, "status");
    if (st == SL_OK) {
        maybe_purge(gs, now, 1);
    }
    pthread_mutex_unlock(&gs->mu);
    return st;
}

sl_status sl_gateway_status_get(sl_gateway_state *gs, const char *id,
                                sl_gateway_status_row *out)
{
    if (gs == NULL || out == NULL || !id_is_valid(id)) {
        return id_is_valid(id) ? SL_INVALID : SL_NOT_FOUND;
    }
    pthread_mutex_lock(&gs->mu);
    sqlite3_stmt *s = gs->q[Q_STATUS_GET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sl_status st = SL_OK;
    if (rc == SQLITE_ROW) {
        const char *status = (const char *)sqlite3_column_text(s, 0);
        const char *detail = (const char *)sqlite3_column_text(s, 1);
        snprintf(out->status, sizeof out->status, "%s", status ? status : "");
        snprintf(out->detail, sizeof out->detail, "%s", detail ? detail : "");
        out->updated_ms = (uint64_t)sqlite3_column_int64(s, 2);
    } else {
        st = rc == SQLITE_DONE ? SL_NOT_FOUND : io_error(gs, "status read");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&gs->mu);
    return st;
}

sl_status sl__gw_status_pending(sl_gateway_state *gs, const char *const *ids,
                                size_t n)
{
    pthread_mutex_lock(&gs->mu);
    uint64_t now = now_ms(gs);
    bool tx = n > 1;
    int rc = tx ? step_done(gs, Q_BEGIN) : SQLITE_OK;
    sqlite3_stmt *s = gs->q[Q_STATUS_PENDING];
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)now);
        rc = step_done(gs, Q_STATUS_PENDING);
    }
    if (tx) {
        rc = rc == SQLITE_OK ? step_done(gs, Q_COMMIT) : rc;
        if (rc != SQLITE_OK) {
            step_done(gs, Q_ROLLBACK);
        }
    }
    sl_status st = rc == SQLITE_OK ? SL_OK : io_error(gs, "pending");
    if (st == SL_OK) {
        maybe_purge(gs, now, n);
    }
    pthread_mutex_unlock(&gs->mu);
    return st;
}

/* ---- idempotency records ---------------------------------------------- */

sl_status sl__gw_idem_claim(sl_gateway_state *gs, const char *key,
                            const uint64_t fp[2], const char *new_event_id,
                            uint64_t lease_ms, sl_gw_idem *out)
{
    sl_status st = SL_OK;
    *out = (sl_gw_idem){0};
    pthread_mutex_lock(&gs->mu);
    uint64_t now = now_ms(gs);
    if (step_done(gs, Q_BEGIN) != SQLITE_OK) {
        st = io_error(gs, "begin");
        goto unlock;
    }
    sqlite3_stmt *g = gs->q[Q_IDEM_GET];
    sqlite3_bind_text(g, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(g);
    bool found = false;
    if (rc == SQLITE_ROW) {
        uint64_t created = (uint64_t)sqlite3_column_int64(g, 6);
        found = created + gs->idem_ttl_ms > now;
    } else if (rc != SQLITE_DONE) {
        st = io_error(gs, "claim");
    }
    if (found) {
        uint64_t fp1 = (uint64_t)sqlite3_column_int64(g, 0);
        uint64_t fp2 = (uint64_t)sqlite3_column_int64(g, 1);
        int state = sqlite3_column_int(g, 2);
        const char *eid = (const char *)sqlite3_column_text(g, 3);
        uint64_t claimed = (uint64_t)sqlite3_column_int64(g, 7);
        snprintf(out->event_id, sizeof out->event_id, "%s", eid ? eid : "");
        if (fp1 != fp[0] || fp2 != fp[1]) {
            out->outcome = SL_GW_IDEM_MISMATCH;
        } else if (state == IDEM_DONE) {
            out->outcome = SL_GW_IDEM_REPLAY;
            out->http_status = sqlite3_column_int(g, 4);
            const char *body = (const char *)sqlite3_column_text(g, 5);
            out->body_len = (size_t)sqlite3_column_bytes(g, 5);
            out->body = sl_strndup(body ? body : "", out->body_len);
            if (out->body == NULL) {
                st = SL_NOMEM;
            }
        } else if (state == IDEM_CLAIMED && claimed + lease_ms > now) {
            out->outcome = SL_GW_IDEM_IN_PROGRESS;
        } else {
            out->outcome = SL_GW_IDEM_CLAIMED;
        }
    }
    sqlite3_reset(g);
    sqlite3_clear_bindings(g);
    if (st == SL_OK && !found) {
        sqlite3_stmt *p = gs->q[Q_IDEM_PUT];
        sqlite3_bind_text(p, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(p, 2, (sqlite3_int64)fp[0]);
        sqlite3_bind_int64(p, 3, (sqlite3_int64)fp[1]);
        sqlite3_bind_text(p, 4, new_event_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(p, 5, (sqlite3_int64)now);
        if (step_done(gs, Q_IDEM_PUT) != SQLITE_OK) {
            st = io_error(gs, "claim insert");
        }
        out->outcome = SL_GW_IDEM_CLAIMED;
        snprintf(out->event_id, sizeof out->event_id, "%s", new_event_id);
    } else if (st == SL_OK && out->outcome == SL_GW_IDEM_CLAIMED) {
        sqlite3_stmt *r = gs->q[Q_IDEM_RECLAIM];
        sqlite3_bind_text(r, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(r, 2, (sqlite3_int64)now);
        if (step_done(gs, Q_IDEM_RECLAIM) != SQLITE_OK) {
            st = io_error(gs, "reclaim");
        }
    }
    if (st == SL_OK && step_done(gs, Q_COMMIT) != SQLITE_OK) {
        st = io_error(gs, "commit");
    }
    if (st != SL_OK) {
        step_done(gs, Q_ROLLBACK);
        sl_free(out->body);
        *out = (sl_gw_idem){0};
    } else if (!found) {
        maybe_purge(gs, now, 1);
    }
unlock:
    pthread_mutex_unlock(&gs->mu);
    return st;
}

sl_status sl__gw_idem_finish(sl_gateway_state *gs, const char *key,
                             int http_status, const char *body, size_t len)
{
    pthread_mutex_lock(&gs->mu);
    sqlite3_stmt *s = gs->q[Q_IDEM_FINISH];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, http_status);
    sqlite3_bind_text(s, 3, body, (int)len, SQLITE_STATIC);
    sl_status st = step_done(gs, Q_IDEM_FINISH) == SQLITE_OK
                       ? SL_OK
                       : io_error(gs, "finish");
    pthread_mutex_unlock(&gs->mu);
    return st;
}

sl_status sl__gw_idem_release(sl_gateway_state *gs, const char *key)
{
    pthread_mutex_lock(&gs->mu);
    sqlite3_bind_text(gs->q[Q_IDEM_RELEASE], 1, key, -1, SQLITE_STATIC);
    sl_status st = step_done(gs, Q_IDEM_RELEASE) == SQLITE_OK
                       ? SL_OK
                       : io_error(gs, "release");
    pthread_mutex_unlock(&gs->mu);
    return st;
}

sl_status sl__gw_idem_forget(sl_gateway_state *gs, const char *key)
{
    pthread_mutex_lock(&gs->mu);
    sqlite3_bind_text(gs->q[Q_IDEM_FORGET], 1, key, -1, SQLITE_STATIC);
    sl_status st = step_done(gs, Q_IDEM_FORGET) == SQLITE_OK
                       ? SL_OK
                       : io_error(gs, "forget");
    pthread_mutex_unlock(&gs->mu);
    return st;
}
