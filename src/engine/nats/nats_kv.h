/* The idempotency store on JetStream KV, shared by every process of a
 * consumer group (docs/engines/nats.md, "Idempotency store on JetStream
 * KV"). Internal; compiled only with the NATS engine (SLUICE_HAVE_NATS).
 *
 * A key per (channel, group, event id) holds one of
 *
 *   "claim <until_ms> <owner>"  a delivery of the id is being handled, by
 *                               process <owner>, until <until_ms> at the
 *                               latest (the lease; wall clock)
 *   "done <at_ms>"              handled and acknowledged
 *   "free"                      given back unhandled (RETRY, REJECT)
 *
 * A claim is taken with kvStore_Create (create-only: of two processes
 * racing on one id exactly one succeeds) or, over an expired claim or a
 * "free", with kvStore_Update at the revision read (compare and set).
 * Records expire with the bucket's TTL (the group's idempotency_ttl).
 */
#ifndef SLUICE_ENGINE_NATS_NATS_KV_H
#define SLUICE_ENGINE_NATS_NATS_KV_H

#include "sluice/engine.h"

#include <nats/nats.h>

#include <stdbool.h>
#include <stdint.h>

/** What a claim found. */
typedef enum sl_kv_claim {
    SL_KV_CLAIMED, /* the id is this delivery's to handle */
    SL_KV_DONE,    /* already handled: a duplicate */
    SL_KV_BUSY,    /* another delivery of the id is being handled now */
} sl_kv_claim;

typedef struct sl_kv_inbox sl_kv_inbox;

/**
 * Bind (creating it if needed) the bucket of group @p group on @p channel:
 * @p bucket, or NULL for the group's own bucket. The group's own bucket
 * takes @p ttl_ms as its TTL (and is updated to it); a named bucket shared
 * with other groups must already have that TTL if it exists.
 * @p eng must be a NATS engine and outlive the inbox.
 * @return SL_OK; SL_INVALID (not a NATS engine, bad bucket name, a TTL
 *         that differs from the shared bucket's); SL_UNAVAILABLE; SL_NOMEM.
 * Thread: any.
 */
sl_status sl__kv_inbox_open(sl_engine *eng, const char *bucket,
                            const char *channel, const char *group,
                            uint64_t ttl_ms, sl_kv_inbox **out,
                            sl_diag *diag);

/** NULL is a no-op. */
void sl__kv_inbox_close(sl_kv_inbox *kv);

/**
 * Claim event id @p id for a delivery whose handler may run until
 * @p lease_ms from @p now_ms (wall clock).
 * @param[out] claim    what was found
 * @param[out] token    the claim's revision, for sl__kv_inbox_finish
 * @param[out] retry_ms with SL_KV_BUSY: when the other claim ends
 * @return SL_OK; SL_UNAVAILABLE / SL_IO / SL_TIMEOUT when JetStream did not
 *         answer (nothing is claimed). Thread: any.
 */
sl_status sl__kv_inbox_claim(sl_kv_inbox *kv, const char *id,
                             uint64_t lease_ms, uint64_t now_ms,
                             sl_kv_claim *claim, uint64_t *token,
                             uint64_t *retry_ms);

/**
 * End a claim: @p done records the id as handled ("done", whatever became
 * of the claim meanwhile); otherwise the claim of revision @p token is
 * given back ("free") if it is still this one.
 * @return SL_OK; an error status when "done" could not be written.
 */
sl_status sl__kv_inbox_finish(sl_kv_inbox *kv, const char *id,
                              uint64_t token, bool done, uint64_t now_ms);

/* From the NATS engine (connection.c, topology.c). */
sl_status sl__nats_status(natsStatus s); /* nats.c's status in sluice's */
bool sl__nats_is(const sl_engine *eng);
jsCtx *sl__nats_js(sl_engine *eng);
char *sl__nats_bucket_name(const sl_engine *eng, const char *name,
                           const char *channel, const char *group);
int sl__nats_replicas(const sl_engine *eng);
bool sl__nats_memory_storage(const sl_engine *eng);

#endif
