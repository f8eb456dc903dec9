/* The one internal interface every engine implements.
 *
 * Everything above it (producer, consumer, gateway, pipelines) sees only the
 * public sl_engine API in sluice/engine.h, which dispatches through this
 * table. An engine allocates its own engine, subscription and delivery
 * structs with the common headers below as their first member.
 */
#ifndef SLUICE_ENGINE_DRIVER_H
#define SLUICE_ENGINE_DRIVER_H

#include "engine/inbox_store.h"
#include "sluice/engine.h"

#include <stdint.h>

typedef struct sl_driver sl_driver;

/** The version of sl_driver's layout, first in every driver table and
 * checked by engine.c before it uses a driver. Bump it when a member is
 * added, removed, reordered or changes meaning or signature, so that a
 * driver built against another layout is refused, not called through the
 * wrong slots. */
#define SL_DRIVER_ABI_VERSION 1u

/** Common head of every engine's engine struct. */
struct sl_engine {
    const sl_driver *drv;
};

/** Common head of every engine's subscription struct. */
struct sl_subscription {
    const sl_driver *drv;
};

/** Common head of every engine's delivery struct. The fields are read by the
 * accessors in engine.c; the engine owns them. */
struct sl_delivery {
    const sl_driver *drv;
    sl_event *ev;
    uint32_t attempt;
    const char *channel;
    const char *group;
};

/** Publish hints: what sluice's own code tells an engine about a publish,
 * apart from the public SL_PUBLISH_* flags (sluice/engine.h), which carry
 * only what users may set. Engines that do not look at a hint lose
 * nothing. */
enum {
    /* The callback is sluice's, short and never blocking, so an engine may
     * call it on any thread, a client library's private threads included.
     * The producer gives it when the caller gave no callback of its own. */
    SL__PUBLISH_HINT_CB_ANY_THREAD = 1u << 0,
};

/** sl_engine_publish_async with internal @p hints (SL__PUBLISH_HINT_*). */
sl_status sl__engine_publish_async_ex(sl_engine *eng, const char *channel,
                                      sl_event *ev, unsigned flags,
                                      unsigned hints, sl_publish_cb cb,
                                      void *ctx);

/** How a delivery is settled. */
typedef enum sl_settle_op {
    SL_SETTLE_ACK,
    SL_SETTLE_RETRY,
    SL_SETTLE_DEAD,
    SL_SETTLE_RELEASE,
} sl_settle_op;

struct sl_driver {
    /* SL_DRIVER_ABI_VERSION, first so that it is read at the same place
     * in every layout. */
    uint32_t abi_version;
    const char *name;
    /* URL prefix this driver serves ("embedded:"). */
    const char *scheme;
    /* Optional second prefix it serves ("memory://"). */
    const char *alias;
    /* Optional: reject what open() would reject in @p url (syntax,
     * parameters, files it names) without opening anything. */
    sl_status (*check_url)(const char *url, sl_diag *diag);
    sl_status (*open)(const char *url, const sl_engine_opts *opts,
                      sl_engine **out, sl_diag *diag);
    void (*close)(sl_engine *eng);
    bool (*is_ready)(const sl_engine *eng);
    sl_status (*declare_channel)(sl_engine *eng, const sl_channel_opts *opts,
                                 sl_diag *diag);
    sl_status (*declare_group)(sl_engine *eng, const sl_group_opts *opts,
                               sl_diag *diag);
    /* @p flags are the public SL_PUBLISH_* flags, @p hints the internal
     * SL__PUBLISH_HINT_* ones. */
    sl_status (*publish)(sl_engine *eng, const char *channel, sl_event *ev,
                         unsigned flags, unsigned hints, sl_publish_cb cb,
                         void *ctx);
    sl_status (*subscribe)(sl_engine *eng, const char *channel,
                           const char *group, const sl_subscribe_opts *opts,
                           sl_subscription **out, sl_diag *diag);
    sl_status (*fetch)(sl_subscription *sub, sl_delivery **out, size_t max,
                       uint64_t timeout_ms, size_t *n);
    void (*interrupt)(sl_subscription *sub);
    uint32_t (*in_flight)(const sl_subscription *sub);
    void (*unsubscribe)(sl_subscription *sub);
    sl_status (*settle)(sl_delivery *d, sl_settle_op op, uint64_t delay_ms,
                        sl_dead_reason reason, const char *error);
    /* Optional: ack several deliveries of one subscription at once. */
    sl_status (*ack_many)(sl_delivery **ds, size_t n);
    sl_status (*depth)(sl_engine *eng, const char *channel, const char *group,
                       sl_depth *out);
    sl_status (*browse)(sl_engine *eng, const char *channel, const char *group,
                        size_t max, sl_browse_fn fn, void *ctx);
    /* Optional: the inbox store of kind @p kind this engine offers
     * (engine/inbox_store.h), or NULL. With @p eng NULL: whether engines
     * of this driver offer the kind at all. */
    const sl_inbox_store_ops *(*inbox_store)(sl_engine *eng, const char *kind);
};

/** SL_OK when engine.c can use @p drv (its abi_version is this build's
 * SL_DRIVER_ABI_VERSION); SL_INTERNAL with a message naming it otherwise. */
sl_status sl__driver_check(const sl_driver *drv, sl_diag *diag);

extern const sl_driver sl__embedded_driver;
#ifdef SLUICE_HAVE_NATS
extern const sl_driver sl__nats_driver;
extern const sl_driver sl__nats_tls_driver; /* "tls://" */
#endif
#ifdef SLUICE_HAVE_AMQP
extern const sl_driver sl__amqp_driver;
#endif

/** Build the dead-letter copy of @p ev: a clone carrying the dlq*
 * extensions. Shared by every engine so dead letters look alike. */
sl_status sl__dead_letter_event(const sl_event *ev, sl_dead_reason reason,
                                uint32_t attempts, const char *error,
                                const char *channel, const char *group,
                                uint64_t now_ms, sl_event **out);

/** "<channel>.<group>.dlq" into @p buf; SL_TOO_LARGE if it does not fit. */
sl_status sl__dlq_channel_name(const char *channel, const char *group,
                               char *buf, size_t size);

/** A dead-letter channel's name (what sl__dlq_channel_name makes: it ends
 * in ".dlq" after at least one character). Its group is the keeper
 * (SL_DLQ_GROUP), never dead-lettered itself. */
bool sl__is_dlq_channel(const char *name);

/** Give back unprocessed like sl_delivery_release (not an attempt), to
 * be redelivered after @p delay_ms where the engine can delay a release
 * (NATS); others redeliver at once. Takes *d and sets it to NULL. */
sl_status sl__delivery_release_after(sl_delivery **d, uint64_t delay_ms);

/** Valid channel or group name: [A-Za-z0-9._-]{1,200}. */
bool sl__name_is_valid(const char *name);

#endif
