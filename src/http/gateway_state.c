/* The gateway's state in SQLite: idempotency records and the status
 * projection, two tables in one file.
 *
 * One connection serves the process; a mutex serialises its use, because a
 * prepared statement belongs to one thread at a time. Several processes may
 * share the file (WAL); a claim is one IMMEDIATE transaction, so two
 * processes never both claim a key.
 *
 * The "pending" rows the gateway writes for every accepted event, and the
 * statuses the service's consumers report (sl__gw_status_queue), are group
 * committed: they are queued and a writer thread writes whatever has
 * queued in one transaction, in queue order, then the next batch (at most
 * one per PENDING_BATCH_MS). One transaction per write (its file locks and
 * WAL append) was the largest cost of an accepted request. Until its batch
 * commits, sl_gateway_status_get applies the queued writes to what the
 * table holds, so the gateway's own GET /status/{id} shows "pending" right
 * after the 202; the writer commits a batch and drops it from the queue
 * under the connection's mutex, so a reader sees a write in one place or
 * the other, never in neither. sl_gateway_status_set, the public call,
 * still writes at once, for callers that need the row in the file when it
 * returns.
 */
#include "sluice/gateway.h"

#include "core/sqlite_util.h"
#include "core/waiter.h"
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
/* Pending ids queued for the writer at most; a full queue makes callers
 * wait (at most PENDING_WAIT_MS) rather than grow memory. */
#define PENDING_MAX 65536
#define PENDING_WAIT_MS 1000
/* The writer commits at most once per PENDING_BATCH_MS, or sooner once
 * PENDING_BATCH_IDS have queued: at 20 000 requests/s that is about 100
 * rows per transaction instead of a handful, and one wake-up of the writer
 * per batch instead of one per few requests. */
#define PENDING_BATCH_MS 5
#define PENDING_BATCH_IDS 1024

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

/* A queued status write: the gateway's "pending" (inserted unless the id
 * has a status) or a consumer's status (replacing, last write wins). */
typedef struct queued_status {
    char *id;           /* sl_malloc'd */
    const char *status; /* one of the SL_GATEWAY_STATUS_ constants */
    char *detail;       /* sl_malloc'd; NULL when none */
    uint64_t at_ms;     /* when it was queued: the row's updated_at */
    bool replace;
} queued_status;

typedef struct pending_buf {
    queued_status *q;
    size_t n;
    size_t cap;
} pending_buf;

struct sl_gateway_state {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT_];
    pthread_mutex_t mu; /* the connection; taken before pmu */
    uint64_t idem_ttl_ms;
    uint64_t status_ttl_ms;
    const sl_clock *clock;
    uint64_t since_purge; /* writes; guarded by mu */

    /* The pending queue, guarded by pmu. Callers append to *fill; the
     * writer swaps it with the other buffer and commits that one (flush,
     * NULL between batches), emptying it with mu held. */
    pthread_mutex_t pmu;
    pthread_cond_t work; /* the first id queued, a full batch, or stop */
    pthread_cond_t room; /* the queue took a batch */
    pending_buf buf[2];
    pending_buf *fill;
    pending_buf *flush;
    bool writer_started; /* started at the first pending id */
    bool stop;
    pthread_t writer;
};

static const char schema[] =
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
    pthread_mutex_init(&gs->pmu, NULL);
    sl__cond_init_mono(&gs->work);
    sl__cond_init_mono(&gs->room);
    gs->fill = &gs->buf[0];
    gs->idem_ttl_ms = o.idempotency_ttl_ms ? o.idempotency_ttl_ms
                                           : DEFAULT_IDEMPOTENCY_TTL_MS;
    gs->status_ttl_ms =
        o.status_ttl_ms ? o.status_ttl_ms : DEFAULT_STATUS_TTL_MS;
    gs->clock = o.clock;
    sl_sqlite_opts so = {.what = "gateway state"};
    sl_status st = sl__sqlite_open(path, &so, &gs->db, diag);
    if (st != SL_OK) {
        sl_gateway_state_close(gs);
        return st;
    }
    int rc = sqlite3_exec(gs->db, schema, NULL, NULL, NULL);
    for (int i = 0; rc == SQLITE_OK && i < Q_COUNT_; i++) {
        rc = sqlite3_prepare_v2(gs->db, sql[i], -1, &gs->q[i], NULL);
    }
    if (rc != SQLITE_OK) {
        st = sl_diag_set(diag, rc == SQLITE_NOMEM ? SL_NOMEM : SL_IO,
                         "gateway state %s: %s", path, sqlite3_errmsg(gs->db));
        sl_gateway_state_close(gs);
        return st;
    }
    *out = gs;
    return SL_OK;
}

static void pending_clear(pending_buf *b)
{
    for (size_t i = 0; i < b->n; i++) {
        sl_free(b->q[i].id);
        sl_free(b->q[i].detail);
    }
    b->n = 0;
}

void sl_gateway_state_close(sl_gateway_state *gs)
{
    if (gs == NULL) {
        return;
    }
    /* The writer commits what is queued before it ends. */
    pthread_mutex_lock(&gs->pmu);
    gs->stop = true;
    bool started = gs->writer_started;
    pthread_cond_signal(&gs->work);
    pthread_mutex_unlock(&gs->pmu);
    if (started) {
        pthread_join(gs->writer, NULL);
    }
    for (int b = 0; b < 2; b++) {
        pending_clear(&gs->buf[b]);
        sl_free(gs->buf[b].q);
    }
    pthread_cond_destroy(&gs->work);
    pthread_cond_destroy(&gs->room);
    pthread_mutex_destroy(&gs->pmu);
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

/* Apply the queued writes for @p id, oldest first, to the row read from
 * the table (*found says whether there was one). mu held, so the writer is
 * not between committing a batch and dropping it from the queue: every
 * write is in the table or here, never in neither. A linear scan: the
 * queue holds a few milliseconds' worth of writes, and reads of the
 * projection are rare next to writes. */
static void queued_apply(sl_gateway_state *gs, const char *id, bool *found,
                         sl_gateway_status_row *out)
{
    pthread_mutex_lock(&gs->pmu);
    const pending_buf *bufs[2] = {gs->flush, gs->fill};
    for (int b = 0; b < 2; b++) {
        for (size_t i = 0; bufs[b] != NULL && i < bufs[b]->n; i++) {
            const queued_status *qs = &bufs[b]->q[i];
            if (strcmp(qs->id, id) != 0 || (!qs->replace && *found)) {
                continue;
            }
            snprintf(out->status, sizeof out->status, "%s", qs->status);
            snprintf(out->detail, sizeof out->detail, "%s",
                     qs->detail ? qs->detail : "");
            out->updated_ms = qs->at_ms;
            *found = true;
        }
    }
    pthread_mutex_unlock(&gs->pmu);
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
    /* Queued writes not committed yet come after the table's row. */
    if (st == SL_OK || st == SL_NOT_FOUND) {
        bool found = st == SL_OK;
        queued_apply(gs, id, &found, out);
        st = found ? SL_OK : SL_NOT_FOUND;
    }
    pthread_mutex_unlock(&gs->mu);
    return st;
}

/* Write the batch in one transaction, in queue order. mu held. */
static void pending_commit(sl_gateway_state *gs, const pending_buf *b)
{
    int rc = step_done(gs, Q_BEGIN);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n; i++) {
        const queued_status *qs = &b->q[i];
        if (qs->replace) {
            sqlite3_stmt *s = gs->q[Q_STATUS_SET];
            sqlite3_bind_text(s, 1, qs->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, qs->status, -1, SQLITE_STATIC);
            if (qs->detail != NULL) {
                sqlite3_bind_text(s, 3, qs->detail, -1, SQLITE_STATIC);
            } else {
                sqlite3_bind_null(s, 3);
            }
            sqlite3_bind_int64(s, 4, (sqlite3_int64)qs->at_ms);
            rc = step_done(gs, Q_STATUS_SET);
        } else {
            sqlite3_stmt *s = gs->q[Q_STATUS_PENDING];
            sqlite3_bind_text(s, 1, qs->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)qs->at_ms);
            rc = step_done(gs, Q_STATUS_PENDING);
        }
    }
    rc = rc == SQLITE_OK ? step_done(gs, Q_COMMIT) : rc;
    if (rc != SQLITE_OK) {
        /* The events are out: a lost batch costs only the projection's
         * first rows (consumers write the next ones), as a failed write
         * did when each request wrote its own. */
        io_error(gs, "pending");
        step_done(gs, Q_ROLLBACK);
        return;
    }
    maybe_purge(gs, now_ms(gs), b->n);
}

/* The writer: commit what has queued, one transaction per batch, until
 * stopped with the queue empty. A batch gathers for PENDING_BATCH_MS after
 * the previous commit (a lone request after a quiet spell is committed at
 * once). That window is measured on the monotonic clock, not on the
 * state's: it only groups writes (a throughput knob, invisible in what is
 * written), and on a manual clock no status row would be written until a
 * test moved time. */
static void *pending_writer(void *arg)
{
    sl_gateway_state *gs = arg;
    uint64_t last_ms = 0;
    pthread_mutex_lock(&gs->pmu);
    for (;;) {
        while (gs->fill->n == 0 && !gs->stop) {
            pthread_cond_wait(&gs->work, &gs->pmu);
        }
        if (gs->fill->n == 0) {
            break; /* stopped, nothing left */
        }
        uint64_t now = sl_time_mono_ms();
        if (!gs->stop && now < last_ms + PENDING_BATCH_MS) {
            struct timespec until;
            sl__deadline_after(&until, last_ms + PENDING_BATCH_MS - now);
            while (!gs->stop && gs->fill->n < PENDING_BATCH_IDS &&
                   pthread_cond_timedwait(&gs->work, &gs->pmu, &until) == 0) {
            }
        }
        gs->flush = gs->fill;
        gs->fill = gs->flush == &gs->buf[0] ? &gs->buf[1] : &gs->buf[0];
        pthread_cond_broadcast(&gs->room);
        pthread_mutex_unlock(&gs->pmu);

        pthread_mutex_lock(&gs->mu);
        pending_commit(gs, gs->flush);
        pthread_mutex_lock(&gs->pmu);
        pending_clear(gs->flush);
        gs->flush = NULL;
        pthread_mutex_unlock(&gs->mu);
        last_ms = sl_time_mono_ms();
    }
    pthread_mutex_unlock(&gs->pmu);
    return NULL;
}

static bool pending_reserve(pending_buf *b, size_t n)
{
    if (b->n + n <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) {
        cap *= 2;
    }
    queued_status *q = sl_realloc(b->q, cap * sizeof *q);
    if (q == NULL) {
        return false;
    }
    b->q = q;
    b->cap = cap;
    return true;
}

/* Queue @p n writes of @p status (a constant) for @p ids, with @p detail
 * (copied; may be NULL); @p replace for a consumer's status. */
static sl_status enqueue(sl_gateway_state *gs, const char *const *ids, size_t n,
                         const char *status, const char *detail, bool replace)
{
    sl_status st = SL_OK;
    pthread_mutex_lock(&gs->pmu);
    if (!gs->writer_started && !gs->stop) {
        if (pthread_create(&gs->writer, NULL, pending_writer, gs) != 0) {
            pthread_mutex_unlock(&gs->pmu);
            sl_logf(SL_LOG_ERROR, "gateway",
                    "state: cannot start the status writer");
            return SL_NOMEM;
        }
        gs->writer_started = true;
    }
    /* Bounded: wait for the writer to take a batch rather than grow. */
    struct timespec deadline;
    sl__deadline_after(&deadline, PENDING_WAIT_MS);
    while (gs->fill->n + n > PENDING_MAX && gs->fill->n > 0 && !gs->stop) {
        if (pthread_cond_timedwait(&gs->room, &gs->pmu, &deadline) != 0) {
            st = SL_TIMEOUT;
            break;
        }
    }
    if (st == SL_OK && (gs->stop || !pending_reserve(gs->fill, n))) {
        st = gs->stop ? SL_CLOSED : SL_NOMEM;
    }
    uint64_t now = st == SL_OK ? now_ms(gs) : 0;
    size_t before = gs->fill->n;
    for (size_t i = 0; st == SL_OK && i < n; i++) {
        queued_status qs = {
            .id = sl_strdup(ids[i]),
            .status = status,
            .detail = detail != NULL ? sl_strdup(detail) : NULL,
            .at_ms = now,
            .replace = replace,
        };
        if (qs.id == NULL || (detail != NULL && qs.detail == NULL)) {
            sl_free(qs.id);
            sl_free(qs.detail);
            st = SL_NOMEM;
            break;
        }
        gs->fill->q[gs->fill->n++] = qs;
    }
    /* The writer waits for the first write, or gathers until its batch
     * time or a full batch: only those wake it. */
    if (before == 0 ||
        (before < PENDING_BATCH_IDS && gs->fill->n >= PENDING_BATCH_IDS)) {
        pthread_cond_signal(&gs->work);
    }
    pthread_mutex_unlock(&gs->pmu);
    if (st != SL_OK) {
        sl_logf(SL_LOG_WARN, "gateway", "state: %s status not queued: %s",
                status, sl_status_str(st));
    }
    return st;
}

sl_status sl__gw_status_pending(sl_gateway_state *gs, const char *const *ids,
                                size_t n)
{
    return enqueue(gs, ids, n, SL_GATEWAY_STATUS_PENDING, NULL, false);
}

/* The constant for a valid status, so that a queued write need not copy
 * it; NULL for anything else. */
static const char *status_constant(const char *status)
{
    static const char *const all[] = {
        SL_GATEWAY_STATUS_PENDING, SL_GATEWAY_STATUS_PROCESSING,
        SL_GATEWAY_STATUS_COMPLETED, SL_GATEWAY_STATUS_FAILED};
    for (size_t i = 0; status != NULL && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(status, all[i]) == 0) {
            return all[i];
        }
    }
    return NULL;
}

sl_status sl__gw_status_queue(sl_gateway_state *gs, const char *id,
                              const char *status, const char *detail)
{
    const char *constant = status_constant(status);
    if (gs == NULL || !id_is_valid(id) || constant == NULL) {
        return SL_INVALID;
    }
    return enqueue(gs, &id, 1, constant, detail, true);
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
