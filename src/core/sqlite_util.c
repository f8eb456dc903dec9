/* Opening an SQLite database the way every sluice store does. */
#include "core/sqlite_util.h"

#include <stdio.h>

static const char *const sync_pragma[] = {
    [SL_SQLITE_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL;",
    [SL_SQLITE_SYNC_FULL] = "PRAGMA synchronous=FULL;",
    [SL_SQLITE_SYNC_OFF] = "PRAGMA synchronous=OFF;",
};

sl_status sl__sqlite_open(const char *path, const sl_sqlite_opts *opts,
                          sqlite3 **out, sl_diag *diag)
{
    sl_sqlite_opts o = opts != NULL ? *opts : (sl_sqlite_opts){0};
    int flags = o.read_only ? SQLITE_OPEN_READONLY
                            : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    flags |= o.shared ? SQLITE_OPEN_FULLMUTEX : SQLITE_OPEN_NOMUTEX;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_busy_timeout(db, o.busy_timeout_ms ? (int)o.busy_timeout_ms
                                                        : 5000);
    }
    if (rc == SQLITE_OK && !o.read_only) {
        const char *sync =
            (unsigned)o.sync < sizeof sync_pragma / sizeof sync_pragma[0]
                ? sync_pragma[o.sync]
                : sync_pragma[SL_SQLITE_SYNC_NORMAL];
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(db, sync, NULL, NULL, NULL);
        }
    }
    if (rc == SQLITE_OK && o.cache_kib != 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA cache_size=-%u;",
                 (unsigned)o.cache_kib);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        sl_status st =
            sl_diag_set(diag, rc == SQLITE_NOMEM ? SL_NOMEM : SL_IO,
                        "%s %s: %s", o.what ? o.what : "database", path,
                        db != NULL ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return st;
    }
    *out = db;
    return SL_OK;
}
