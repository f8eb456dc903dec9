#include "runtime/inbox.h"

#include "core/sqlite_util.h"
#include "engine/inbox_store.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

/* Purge expired ids every this many records. */
#define PURGE_EVERY 4096
/* Longer than this before a ':', a spec names a file, not a store kind. */
#define KIND_MAX 64

static const sl_inbox_store_ops sqlite_store;

/* An inbox is its store's table and handle. The SQLite store's handle is
 * the inbox itself (its fields below, shared by path); an engine's store
 * has a handle of its own, and none of the SQLite fields are used. */
struct sl_inbox {
    const sl_inbox_store_ops *ops;
    sl_inbox_store *store;
    sl_inbox *next; /* open inboxes of this process */
    char *path;
    int refs;
    uint64_t ttl_ms;
    sqlite3 *db;
    sqlite3_stmt *seen;
    sqlite3_stmt *record;
    sqlite3_stmt *purge;
    pthread_mutex_t mu; /* held from begin to commit/rollback */
    uint64_t since_purge;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_inbox *registry;

static void inbox_free(sl_inbox *in)
{
    sqlite3_finalize(in->seen);
    sqlite3_finalize(in->record);
    sqlite3_finalize(in->purge);
    sqlite3_close(in->db);
    pthread_mutex_destroy(&in->mu);
    sl_free(in->path);
    sl_free(in);
}

sl_status sl__inbox_open(const char *path, uint64_t ttl_ms, sl_inbox **out,
                         sl_diag *diag)
{
    pthread_mutex_lock(&registry_mu);
    for (sl_inbox *in = registry; in; in = in->next) {
        if (strcmp(in->path, path) == 0 && strcmp(path, ":memory:") != 0) {
            in->refs++;
            pthread_mutex_unlock(&registry_mu);
            *out = in;
            return SL_OK;
        }
    }
    sl_status st = SL_OK;
    sl_inbox *in = sl_calloc(1, sizeof *in);
    if (in == NULL || (in->path = sl_strdup(path)) == NULL) {
        sl_free(in);
        pthread_mutex_unlock(&registry_mu);
        return SL_NOMEM;
    }
    pthread_mutex_init(&in->mu, NULL);
    in->ops = &sqlite_store;
    in->store = (sl_inbox_store *)in;
    in->refs = 1;
    in->ttl_ms = ttl_ms;
    sl_sqlite_opts so = {.shared = true, .what = "idempotency inbox"};
    if ((st = sl__sqlite_open(path, &so, &in->db, diag)) != SL_OK) {
        inbox_free(in);
        pthread_mutex_unlock(&registry_mu);
        return st;
    }
    if (sqlite3_exec(in->db,
                     "CREATE TABLE IF NOT EXISTS inbox("
                     "  grp TEXT NOT NULL, id TEXT NOT NULL,"
                     "  at INTEGER NOT NULL, PRIMARY KEY(grp, id))"
                     "  WITHOUT ROWID;"
                     "CREATE INDEX IF NOT EXISTS inbox_at ON inbox(at);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(in->db,
                           "SELECT at FROM inbox WHERE grp = ?1 AND id = ?2",
                           -1, &in->seen, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(in->db,
                           "INSERT OR REPLACE INTO inbox(grp, id, at) "
                           "VALUES(?1, ?2, ?3)",
                           -1, &in->record, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(in->db, "DELETE FROM inbox WHERE at < ?1", -1,
                           &in->purge, NULL) != SQLITE_OK) {
        st = sl_diag_set(diag, SL_IO, "idempotency inbox %s: %s", path,
                         in->db ? sqlite3_errmsg(in->db) : "cannot open");
        inbox_free(in);
        pthread_mutex_unlock(&registry_mu);
        return st;
    }
    in->next = registry;
    registry = in;
    pthread_mutex_unlock(&registry_mu);
    *out = in;
    return SL_OK;
}

void sl__inbox_close(sl_inbox *in)
{
    if (in == NULL) {
        return;
    }
    if (in->ops != &sqlite_store) {
        in->ops->close(in->store);
        sl_free(in);
        return;
    }
    pthread_mutex_lock(&registry_mu);
    if (--in->refs == 0) {
        for (sl_inbox **pp = &registry; *pp; pp = &(*pp)->next) {
            if (*pp == in) {
                *pp = in->next;
                break;
            }
        }
        inbox_free(in);
    }
    pthread_mutex_unlock(&registry_mu);
}

static bool seen_locked(sl_inbox *in, const char *group, const char *id,
                        uint64_t now_ms)
{
    sqlite3_bind_text(in->seen, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(in->seen, 2, id, -1, SQLITE_STATIC);
    bool seen = false;
    if (sqlite3_step(in->seen) == SQLITE_ROW) {
        uint64_t at = (uint64_t)sqlite3_column_int64(in->seen, 0);
        seen = at + in->ttl_ms > now_ms;
    }
    sqlite3_reset(in->seen);
    return seen;
}

static sl_status record_locked(sl_inbox *in, const char *group, const char *id,
                               uint64_t now_ms)
{
    sqlite3_bind_text(in->record, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(in->record, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(in->record, 3, (sqlite3_int64)now_ms);
    int r = sqlite3_step(in->record);
    sqlite3_reset(in->record);
    if (r != SQLITE_DONE) {
        sl_logf(SL_LOG_ERROR, "inbox", "record %s: %s", id,
                sqlite3_errmsg(in->db));
        return SL_IO;
    }
    if (++in->since_purge >= PURGE_EVERY && now_ms > in->ttl_ms) {
        in->since_purge = 0;
        sqlite3_bind_int64(in->purge, 1, (sqlite3_int64)(now_ms - in->ttl_ms));
        sqlite3_step(in->purge);
        sqlite3_reset(in->purge);
    }
    return SL_OK;
}

bool sl__inbox_seen(sl_inbox *in, const char *group, const char *id,
                    uint64_t now_ms)
{
    pthread_mutex_lock(&in->mu);
    bool seen = seen_locked(in, group, id, now_ms);
    pthread_mutex_unlock(&in->mu);
    return seen;
}

sl_status sl__inbox_record(sl_inbox *in, const char *group, const char *id,
                           uint64_t now_ms)
{
    pthread_mutex_lock(&in->mu);
    sl_status st = record_locked(in, group, id, now_ms);
    pthread_mutex_unlock(&in->mu);
    return st;
}

sl_status sl__inbox_begin(sl_inbox *in)
{
    pthread_mutex_lock(&in->mu);
    if (sqlite3_exec(in->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
        SQLITE_OK) {
        sl_logf(SL_LOG_ERROR, "inbox", "begin: %s", sqlite3_errmsg(in->db));
        pthread_mutex_unlock(&in->mu);
        return SL_IO;
    }
    return SL_OK;
}

void *sl__inbox_db(sl_inbox *in)
{
    return in->db;
}

bool sl__inbox_seen_in_tx(sl_inbox *in, const char *group, const char *id,
                          uint64_t now_ms)
{
    return seen_locked(in, group, id, now_ms);
}

sl_status sl__inbox_commit_record(sl_inbox *in, const char *group,
                                  const char *id, uint64_t now_ms)
{
    sl_status st = record_locked(in, group, id, now_ms);
    if (st == SL_OK &&
        sqlite3_exec(in->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sl_logf(SL_LOG_ERROR, "inbox", "commit: %s", sqlite3_errmsg(in->db));
        st = SL_IO;
    }
    if (st != SL_OK) {
        sqlite3_exec(in->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&in->mu);
    return st;
}

void sl__inbox_rollback(sl_inbox *in)
{
    sqlite3_exec(in->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&in->mu);
}

/* ---- the SQLite store's table ------------------------------------------ */

static sl_status sqlite_open(sl_engine *eng, const char *path,
                             const char *channel, const char *group,
                             uint64_t ttl_ms, sl_inbox_store **out,
                             sl_diag *diag)
{
    (void)eng;
    (void)channel;
    (void)group;
    sl_inbox *in = NULL;
    sl_status st = sl__inbox_open(path, ttl_ms, &in, diag);
    if (st == SL_OK) {
        *out = in->store;
    }
    return st;
}

static void sqlite_close(sl_inbox_store *st)
{
    sl__inbox_close((sl_inbox *)st);
}

/* A local store claims nothing: one process handles each of its ids. */
static sl_status sqlite_claim(sl_inbox_store *st, const char *group,
                              const char *id, uint64_t lease_ms,
                              uint64_t now_ms, sl_inbox_claim *out,
                              uint64_t *token, uint64_t *retry_ms)
{
    (void)lease_ms;
    (void)token;
    (void)retry_ms;
    *out = sl__inbox_seen((sl_inbox *)st, group, id, now_ms) ? SL_INBOX_DONE
                                                             : SL_INBOX_NEW;
    return SL_OK;
}

static sl_status sqlite_record(sl_inbox_store *st, const char *group,
                               const char *id, uint64_t token, uint64_t now_ms)
{
    (void)token;
    return sl__inbox_record((sl_inbox *)st, group, id, now_ms);
}

static const sl_inbox_store_ops sqlite_store = {
    .kind = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .claim = sqlite_claim,
    .record = sqlite_record,
    .release = NULL, /* nothing was claimed */
};

/* ---- the store chosen by spec ------------------------------------------- */

/* The store @p spec names for @p eng: a kind the engine offers ("KIND" or
 * "KIND:ARG", *arg then ARG or NULL), else an SQLite file (*arg the path).
 * A kind that another engine offers is an error, not a file name. */
static sl_status store_of(sl_engine *eng, const char *spec,
                          const sl_inbox_store_ops **ops, const char **arg,
                          sl_diag *diag)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    *ops = &sqlite_store;
    *arg = spec;
    if (n == 0 || n >= KIND_MAX) {
        return SL_OK;
    }
    char kind[KIND_MAX];
    memcpy(kind, spec, n);
    kind[n] = '\0';
    const sl_inbox_store_ops *offered = sl__engine_inbox_store(eng, kind);
    if (offered != NULL) {
        *ops = offered;
        *arg = colon != NULL ? colon + 1 : NULL;
        return SL_OK;
    }
    const char *owner = sl__engine_inbox_store_owner(kind);
    if (owner != NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "inbox %s needs the %s engine, not %s", spec, owner,
                           eng != NULL ? sl_engine_name(eng) : "none");
    }
    return SL_OK;
}

sl_status sl__inbox_open_for(sl_engine *eng, const char *spec,
                             const char *channel, const char *group,
                             uint64_t ttl_ms, sl_inbox **out, sl_diag *diag)
{
    const sl_inbox_store_ops *ops = NULL;
    const char *arg = NULL;
    sl_status st = store_of(eng, spec, &ops, &arg, diag);
    sl_inbox_store *store = NULL;
    if (st != SL_OK || (st = ops->open(eng, arg, channel, group, ttl_ms, &store,
                                       diag)) != SL_OK) {
        return st;
    }
    if (ops == &sqlite_store) {
        *out = (sl_inbox *)store;
        return SL_OK;
    }
    sl_inbox *in = sl_calloc(1, sizeof *in);
    if (in == NULL) {
        ops->close(store);
        return SL_NOMEM;
    }
    in->ops = ops;
    in->store = store;
    in->refs = 1;
    in->ttl_ms = ttl_ms;
    *out = in;
    return SL_OK;
}

bool sl__inbox_has_db(const sl_inbox *in)
{
    return in != NULL && in->db != NULL;
}

sl_status sl__inbox_claim(sl_inbox *in, const char *group, const char *id,
                          uint64_t lease_ms, uint64_t now_ms,
                          sl_inbox_claim *out, uint64_t *token,
                          uint64_t *retry_ms)
{
    *token = 0;
    *retry_ms = 0;
    return in->ops->claim(in->store, group, id, lease_ms, now_ms, out, token,
                          retry_ms);
}

sl_status sl__inbox_finish(sl_inbox *in, const char *group, const char *id,
                           uint64_t token, bool done, uint64_t now_ms)
{
    if (done) {
        return in->ops->record(in->store, group, id, token, now_ms);
    }
    return in->ops->release != NULL
               ? in->ops->release(in->store, group, id, token)
               : SL_OK;
}
