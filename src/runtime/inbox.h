/* The idempotency inbox: ids of events a group has processed.
 *
 * An id is recorded only after the handler's ACK and is kept for a TTL.
 * A store is a table of operations (engine/inbox_store.h); the spec picks
 * it:
 *
 *  - SQLite (a file path, or ":memory:"): local to the process. Several
 *    consumers of one process share an inbox; a mutex serialises them
 *    because one SQLite connection is used by one thread at a time. A
 *    transactional handler writes in the inbox's transaction.
 *  - a store an engine offers through its driver ("KIND" or
 *    "KIND:ARG"; the NATS engine's JetStream KV, "nats-kv" and
 *    "nats-kv:BUCKET"): shared by every process of a group. A delivery
 *    claims its id before the handler runs (create-only, so of two
 *    deliveries of one id racing in two processes exactly one runs its
 *    handler); no transactions.
 */
#ifndef SLUICE_RUNTIME_INBOX_H
#define SLUICE_RUNTIME_INBOX_H

#include "engine/inbox_store.h"
#include "sluice/engine.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_inbox sl_inbox;

/**
 * Open the inbox @p spec names for group @p group on @p channel: a store
 * of a kind @p eng offers (@p eng then outlives the inbox), or an SQLite
 * file as sl__inbox_open.
 * @return SL_OK; SL_INVALID (a kind only another engine offers, a bad
 *         bucket name, a TTL that differs from a shared bucket's);
 *         SL_UNAVAILABLE; SL_IO; SL_NOMEM.
 */
sl_status sl__inbox_open_for(sl_engine *eng, const char *spec,
                             const char *channel, const char *group,
                             uint64_t ttl_ms, sl_inbox **out, sl_diag *diag);

/** True when the inbox has an SQLite database (transactions). */
bool sl__inbox_has_db(const sl_inbox *in);

/**
 * Before the handler: is (group, id) recorded? A shared store also claims
 * the id for this delivery until @p lease_ms from @p now_ms.
 * @param[out] token    pass to sl__inbox_finish
 * @param[out] retry_ms with SL_INBOX_BUSY: when to look again
 * @return SL_OK; an error status when the store did not answer.
 */
sl_status sl__inbox_claim(sl_inbox *in, const char *group, const char *id,
                          uint64_t lease_ms, uint64_t now_ms,
                          sl_inbox_claim *out, uint64_t *token,
                          uint64_t *retry_ms);

/**
 * After the handler of a claimed delivery: @p done (ACK) records the id;
 * otherwise the claim is given back (nothing to do for SQLite).
 * @return SL_OK; an error status when the record could not be written.
 */
sl_status sl__inbox_finish(sl_inbox *in, const char *group, const char *id,
                           uint64_t token, bool done, uint64_t now_ms);

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
