/* A store of the idempotency inbox, as a table of operations.
 *
 * The inbox (src/runtime/inbox.c) remembers which event ids a consumer
 * group has handled. Its SQLite store lives in the runtime; a store kept
 * by a broker (JetStream KV; Redis or Kafka could follow) is offered by
 * its engine through the driver table (sl_driver.inbox_store), so that the
 * runtime asks the engine for a store by kind and never includes an
 * engine's private headers.
 *
 * An inbox spec names a store by kind, "KIND" or "KIND:ARG" ("nats-kv",
 * "nats-kv:orders"); what is not a kind an engine offers is an SQLite
 * file path.
 *
 * A delivery goes through claim, then (after its handler) record when the
 * handler acknowledged or release otherwise. A store shared by several
 * processes claims the id for the delivery (create-only) so that of two
 * deliveries of one id racing in two processes exactly one handles it.
 */
#ifndef SLUICE_ENGINE_INBOX_STORE_H
#define SLUICE_ENGINE_INBOX_STORE_H

#include "sluice/engine.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stdint.h>

/** One open store; what it holds is the store's own. */
typedef struct sl_inbox_store sl_inbox_store;

/** What a claim found. */
typedef enum sl_inbox_claim {
    SL_INBOX_NEW,  /* not handled yet: this delivery handles it */
    SL_INBOX_DONE, /* recorded already: a duplicate */
    SL_INBOX_BUSY, /* another delivery of the id is being handled now */
} sl_inbox_claim;

typedef struct sl_inbox_store_ops {
    /** The kind an inbox spec names ("nats-kv"). */
    const char *kind;
    /**
     * Open the store of group @p group on @p channel, keeping records for
     * @p ttl_ms. @p arg is what follows "KIND:" in the spec, or NULL.
     * @p eng is the engine that offered the table and outlives the store.
     * @return SL_OK; SL_INVALID (a bad @p arg, a TTL the store cannot
     *         take); SL_UNAVAILABLE; SL_IO; SL_NOMEM. Thread: any.
     */
    sl_status (*open)(sl_engine *eng, const char *arg, const char *channel,
                      const char *group, uint64_t ttl_ms, sl_inbox_store **out,
                      sl_diag *diag);
    /** Release everything the store holds; NULL is a no-op. */
    void (*close)(sl_inbox_store *st);
    /**
     * Before the handler: is (group, id) recorded? A shared store also
     * claims the id for this delivery until @p lease_ms from @p now_ms.
     * @param[out] token    the claim, for record or release
     * @param[out] retry_ms with SL_INBOX_BUSY: when to look again
     * @return SL_OK; an error status when the store did not answer
     *         (nothing is claimed). Thread: any.
     */
    sl_status (*claim)(sl_inbox_store *st, const char *group, const char *id,
                       uint64_t lease_ms, uint64_t now_ms, sl_inbox_claim *out,
                       uint64_t *token, uint64_t *retry_ms);
    /**
     * After an acknowledged handler: record (group, id) as handled at
     * @p now_ms, whatever became of claim @p token meanwhile.
     * @return SL_OK; an error status when the record was not written.
     */
    sl_status (*record)(sl_inbox_store *st, const char *group, const char *id,
                        uint64_t token, uint64_t now_ms);
    /**
     * After a handler that did not acknowledge: give claim @p token back
     * if it is still this delivery's. Optional (NULL: nothing to give
     * back).
     * @return SL_OK; an error status when the store did not answer.
     */
    sl_status (*release)(sl_inbox_store *st, const char *group, const char *id,
                         uint64_t token);
} sl_inbox_store_ops;

/**
 * The store of kind @p kind that @p eng offers, or NULL when its engine
 * offers none of that kind. Thread: any.
 */
const sl_inbox_store_ops *sl__engine_inbox_store(sl_engine *eng,
                                                 const char *kind);

/**
 * The name of an engine built into this library that offers stores of
 * kind @p kind ("nats"), or NULL when none does: to say which engine an
 * inbox spec needs. Thread: any.
 */
const char *sl__engine_inbox_store_owner(const char *kind);

#endif
