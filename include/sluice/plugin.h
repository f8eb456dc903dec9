/* sluice — the ABI of handler plugins (shared objects).
 *
 * A consumer group with `handler: {kind: plugin, path: libx.so}` loads the
 * object with dlopen and looks up:
 *
 *   sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user);   required
 *   int        sluice_plugin_abi(void);                          required,
 *              returns SLUICE_PLUGIN_ABI of the headers it was built with
 *   sl_status  sluice_handler_init(const char *config, void **user);
 *              optional; called once per consumer group with the group's
 *              `handler.config` string (NULL if absent); *user is passed
 *              to every sluice_handle call of that group
 *   void       sluice_handler_fini(void *user);                 optional
 *
 * The symbol names of handle and init can be changed per group
 * (`handler.symbol`, `handler.init`). sluice_handle runs on the consumer's
 * worker threads, concurrently when the group's concurrency is above 1, and
 * uses the handler API of sluice/consumer.h (sl_handler_event, ...). The
 * object links against libsluice. A plugin built with -fvisibility=hidden
 * marks the functions above SL_API (sluice/export.h) so that dlsym finds
 * them; SLUICE_PLUGIN_DECLARE does so for sluice_plugin_abi.
 */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include "sluice/consumer.h"

/** Bumped when a change to the handler API breaks compiled plugins. */
#define SLUICE_PLUGIN_ABI 1

/** Put this once in a plugin to export sluice_plugin_abi(). */
#define SLUICE_PLUGIN_DECLARE()                                                \
    SL_API int sluice_plugin_abi(void);                                        \
    SL_API int sluice_plugin_abi(void)                                         \
    {                                                                          \
        return SLUICE_PLUGIN_ABI;                                              \
    }

typedef sl_status (*sl_plugin_init_fn)(const char *config, void **user);
typedef void (*sl_plugin_fini_fn)(void *user);

#endif
