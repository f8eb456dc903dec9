/* Opening an SQLite database the way every sluice store does.
 *
 * The embedded engine's store and ingress, the idempotency inbox and the
 * gateway's state are all SQLite files in WAL mode (readers never wait for
 * the writer), with a durability level and a busy timeout, so that another
 * process writing the same file (a client publishing into an ingress)
 * makes a statement wait instead of fail. One function sets them up, so
 * they cannot drift apart. Internal: not part of the public API.
 */
#ifndef SLUICE_CORE_SQLITE_UTIL_H
#define SLUICE_CORE_SQLITE_UTIL_H

#include "sluice/status.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

/** How often SQLite makes a commit durable (PRAGMA synchronous). */
typedef enum sl_sqlite_sync {
    SL_SQLITE_SYNC_NORMAL, /* fsync at checkpoints: survives a process crash */
    SL_SQLITE_SYNC_FULL,   /* fsync at every commit: survives a power cut */
    SL_SQLITE_SYNC_OFF,    /* no fsync at all */
} sl_sqlite_sync;

/** Options of sl__sqlite_open; all-zero opens read-write, creating the
 * file, for one thread at a time, synchronous=NORMAL, 5 s busy timeout. */
typedef struct sl_sqlite_opts {
    /* Open read-only: the journal mode and durability are the writer's
     * business, so only the busy timeout and the cache size apply. */
    bool read_only;
    /* The connection is used from several threads: SQLite serialises them
     * (SQLITE_OPEN_FULLMUTEX). Otherwise the caller does (NOMUTEX). */
    bool shared;
    sl_sqlite_sync sync;
    uint32_t busy_timeout_ms; /* 0 selects 5000 */
    uint32_t cache_kib;       /* page cache bound; 0 keeps SQLite's default */
    /* Names the database in error messages ("idempotency inbox"). */
    const char *what;
} sl_sqlite_opts;

/**
 * Open @p path and set it up: WAL (unless read-only), the durability level,
 * the busy timeout and the cache bound.
 *
 * @param[in]  opts  NULL selects the defaults above.
 * @param[out] out   the connection, closed with sqlite3_close(); written
 *                   only on SL_OK.
 * @return SL_OK; SL_NOMEM; SL_IO (cannot open, or a pragma failed), with
 *         "<what> <path>: <SQLite's message>" in @p diag.
 */
sl_status sl__sqlite_open(const char *path, const sl_sqlite_opts *opts,
                          sqlite3 **out, sl_diag *diag);

#endif
