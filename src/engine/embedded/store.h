/* The embedded engine's SQLite store: schema, recovery and batched writes.
 *
 * The engine keeps all state in memory and writes changes behind, one
 * transaction per batch (group commit). This file only speaks SQL; what to
 * write is decided in writer.c. One thread at a time uses a store.
 */
#ifndef SLUICE_ENGINE_EMBEDDED_STORE_H
#define SLUICE_ENGINE_EMBEDDED_STORE_H

#include "core/sqlite_util.h"
#include "sluice/engine.h"

typedef struct emb_store emb_store;

/** The SQLite durability level of an engine's sync mode. */
static inline sl_sqlite_sync emb_sqlite_sync(sl_sync_mode sync)
{
    return sync == SL_SYNC_FULL  ? SL_SQLITE_SYNC_FULL
           : sync == SL_SYNC_OFF ? SL_SQLITE_SYNC_OFF
                                 : SL_SQLITE_SYNC_NORMAL;
}

/** Open (creating) "<dir>/sluice.db" and take "<dir>/LOCK" exclusively. */
sl_status sl__emb_store_open(const char *dir, sl_sync_mode sync,
                             emb_store **out, sl_diag *diag);
void sl__emb_store_close(emb_store *st);

sl_status sl__emb_store_put_channel(emb_store *st, const char *name,
                                    uint64_t max_length, uint64_t max_bytes,
                                    sl_diag *diag);
sl_status sl__emb_store_put_group(emb_store *st, const char *channel,
                                  const char *name, uint32_t max_attempts,
                                  int64_t *gid, sl_diag *diag);

typedef enum emb_op_kind {
    EMB_MSG_INSERT,
    EMB_MSG_DELETE,
    EMB_ENTRY_INSERT,
    EMB_ENTRY_UPDATE,
    EMB_ENTRY_DELETE,
} emb_op_kind;

/** One row change; pointers stay valid until sl__emb_store_apply returns. */
typedef struct emb_op {
    emb_op_kind kind;
    int64_t seq;
    int64_t gid;
    uint32_t attempts;
    uint64_t visible_at;
    const char *channel;
    const uint8_t *body;
    size_t len;
} emb_op;

/** Read a committed message's body (a reader connection, for spilled
 * events). *body is sl_malloc'd. SL_NOT_FOUND if absent. */
sl_status sl__emb_store_read_body(emb_store *st, int64_t seq, uint8_t **body,
                                  size_t *len);

/** Apply @p ops in one transaction. */
sl_status sl__emb_store_apply(emb_store *st, const emb_op *ops, size_t n,
                              sl_diag *diag);

/** Callbacks for recovery, in this order: channels, groups, then messages
 * and entries interleaved in increasing seq (a message before its
 * entries). */
typedef struct emb_store_visitor {
    sl_status (*channel)(const char *name, uint64_t max_length,
                         uint64_t max_bytes, void *ctx);
    sl_status (*group)(const char *channel, const char *name, int64_t gid,
                       uint32_t max_attempts, void *ctx);
    sl_status (*message)(int64_t seq, const char *channel, const uint8_t *body,
                         size_t len, void *ctx);
    sl_status (*entry)(int64_t seq, int64_t gid, uint32_t attempts,
                       uint64_t visible_at, void *ctx);
} emb_store_visitor;

sl_status sl__emb_store_load(emb_store *st, const emb_store_visitor *v,
                             void *ctx, int64_t *max_seq, sl_diag *diag);

#endif
