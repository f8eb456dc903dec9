/* The idempotency inbox: ids of events a group has processed, in SQLite.
 *
 * An id is recorded only after the handler's ACK and is kept for a TTL.
 * Several consumers of one process share an inbox; a mutex serialises them
 * because one SQLite connection is used by one thread at a time.
 */
#ifndef SLUICE_RUNTIME_INBOX_H
#define SLUICE_RUNTIME_INBOX_H

#include "sluice/status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_inbox sl_inbox;

/** Open (or share an already open) inbox at @p path. Reference-counted by
 * path within the process; the first opener's @p ttl_ms applies to all who
 * share it (one table, one purge). */
sl_status sl__inbox_open(const char *path, uint64_t ttl_ms, sl_inbox **out,
                         sl_diag *diag);
void sl__inbox_close(sl_inbox *in);

/** True if (group, id) is recorded and not older than the TTL. */
bool sl__inbox_seen(sl_inbox *in, const char *group, const char *id,
                    uint64_t now_ms);

/** Record (group, id) and commit. */
sl_status sl__inbox_record(sl_inbox *in, const char *group, const char *id,
                           uint64_t now_ms);

/* A transaction that holds the inbox for the duration of a handler:
 * begin → seen_in_tx → (handler writes through db) → commit_record or
 * rollback. */
sl_status sl__inbox_begin(sl_inbox *in);
void *sl__inbox_db(sl_inbox *in); /* sqlite3 * */
bool sl__inbox_seen_in_tx(sl_inbox *in, const char *group, const char *id,
                          uint64_t now_ms);
sl_status sl__inbox_commit_record(sl_inbox *in, const char *group,
                                  const char *id, uint64_t now_ms);
void sl__inbox_rollback(sl_inbox *in);

#endif
