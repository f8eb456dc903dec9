/* The gateway's state store, internal side: idempotency records and the
 * queued writes of the status projection.
 *
 * A record binds an Idempotency-Key to the request's fingerprint and to the
 * event id chosen for it, and, once the request succeeded, to the answer.
 * A record moves NEW → claimed (one request works on it) → done (answer
 * stored) or open (the attempt failed; a retry claims it again and
 * republishes with the same event id, which the engine deduplicates).
 */
#ifndef SLUICE_HTTP_GATEWAY_STATE_H
#define SLUICE_HTTP_GATEWAY_STATE_H

#include "sluice/gateway.h"

#include <stddef.h>
#include <stdint.h>

/** What sl__gw_idem_claim found. */
typedef enum sl_gw_idem_outcome {
    SL_GW_IDEM_CLAIMED,     /* go ahead; use event_id (new or earlier) */
    SL_GW_IDEM_REPLAY,      /* answer http_status + body */
    SL_GW_IDEM_IN_PROGRESS, /* another request holds the key */
    SL_GW_IDEM_MISMATCH,    /* the key was used with another request */
} sl_gw_idem_outcome;

typedef struct sl_gw_idem {
    sl_gw_idem_outcome outcome;
    char event_id[64]; /* CLAIMED, REPLAY: the event id of the key */
    int http_status;   /* REPLAY */
    char *body;        /* REPLAY: sl_malloc'd, NUL-terminated */
    size_t body_len;
} sl_gw_idem;

/**
 * Look up @p key and claim it when nobody else holds it. A claim older
 * than @p lease_ms counts as abandoned (a crashed request) and may be
 * claimed again. An expired record (past the TTL) is replaced.
 * @param[in] new_event_id the id to record when the key is new
 * @return SL_OK with @p out filled; SL_IO; SL_NOMEM.
 */
sl_status sl__gw_idem_claim(sl_gateway_state *gs, const char *key,
                            const uint64_t fp[2], const char *new_event_id,
                            uint64_t lease_ms, sl_gw_idem *out);

/** Store the answer of a claimed key (state done). */
sl_status sl__gw_idem_finish(sl_gateway_state *gs, const char *key,
                             int http_status, const char *body, size_t len);

/** Give up a claim without an answer (state open): a retry with the same
 * request claims it again with the same event id. */
sl_status sl__gw_idem_release(sl_gateway_state *gs, const char *key);

/** Delete a claimed record (the request was refused as it stands; the
 * client may fix it and reuse the key). */
sl_status sl__gw_idem_forget(sl_gateway_state *gs, const char *key);

/** Queue "pending" for each of @p n ids (copied): a writer thread inserts
 * queued ids, unless a status exists, one transaction per batch. Until then
 * sl_gateway_status_get answers them "pending" from the queue; close
 * commits what is queued. Waits (up to 1 s) only when 65 536 ids are
 * queued.
 * @return SL_OK; SL_TIMEOUT (queue full); SL_CLOSED; SL_NOMEM. */
sl_status sl__gw_status_pending(sl_gateway_state *gs, const char *const *ids,
                                size_t n);

/**
 * sl_gateway_status_set through the same queue: the status (last write
 * wins) is written in the writer's next batch, in queue order with the
 * "pending" rows, instead of in a transaction of its own. This handle's
 * sl_gateway_status_get sees it at once; another handle on the file, once
 * its batch commits (within a few milliseconds; at close at the latest).
 * For the consumers of the service that owns the handle, which report
 * every event they handle. Not to be mixed with sl_gateway_status_set for
 * one id on one handle: a queued write committed later wins.
 * @return SL_OK; SL_INVALID (as sl_gateway_status_set); SL_TIMEOUT (queue
 *         full for 1 s); SL_CLOSED; SL_NOMEM.
 * Thread safety: any thread.
 */
sl_status sl__gw_status_queue(sl_gateway_state *gs, const char *id,
                              const char *status, const char *detail);

#endif
