/* sluice — the service configuration file (YAML).
 *
 * One file describes a service: engine, producer, channels, consumer groups
 * with their handlers, drain timeout. One declarative option table per
 * section drives parsing, defaults, validation (errors cite
 * file:line:column and the key) and the reference documentation
 * (sl_config_write_reference).
 *
 * Ownership: a loaded sl_config is owned by the caller and freed with
 * sl_config_destroy, which frees every string and array in it.
 *
 * Thread safety: loading and writing the reference are reentrant (any
 * thread); a loaded configuration is read-only and may be read from any
 * thread.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include "sluice/engine.h"
#include "sluice/export.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Where a value came from, for later error messages. */
typedef struct sl_config_pos {
    int line;   /* 1-based; 0 = not from the file (a default) */
    int column; /* 1-based */
} sl_config_pos;

/** Private: the position of one value read from the file. */
typedef struct sl_config_value_pos sl_config_value_pos;

/** A consumer group's handler. `kind` selects which other fields apply;
 * the fields of other kinds are NULL. */
typedef struct sl_config_handler {
    char *kind;          /* "plugin", "forward", "append", "record", "fail" */
    char *path;          /* plugin: shared object */
    char *symbol;        /* plugin: handler function; default "sluice_handle" */
    char *init;          /* plugin: optional init function; default
                            "sluice_handler_init" if present in the object */
    char *config;        /* plugin: string handed to the init function */
    char *to;            /* forward: target channel */
    char *file;          /* append: file that receives one event id per line */
    char *url;           /* http: where each event is POSTed (binary mode) */
    uint64_t timeout_ms; /* http: request timeout, capped by the
                            event's remaining deadline; default 30 s */
    uint32_t max_concurrency;  /* http: requests in flight; default 16 */
    bool adaptive;             /* http: adaptive concurrency limit */
    uint32_t breaker_failures; /* http: breaker threshold; default 5 */
    uint64_t breaker_open_ms;  /* http: open period; default 30 s */
    char *reply_to;            /* http: channel for the 2xx answer */
    char *reply_type;          /* http: its CloudEvents type */
    sl_config_pos pos;
} sl_config_handler;

/** One validation rule of a gateway route: a field of the JSON body. */
typedef struct sl_config_field {
    char *name; /* top-level key, or a dotted path "customer.id" */
    char *type; /* string, integer, number, boolean, object,
                   array */
    bool required;
    double minimum; /* numbers: when has_minimum */
    bool has_minimum;
    double maximum; /* numbers: when has_maximum */
    bool has_maximum;
    uint64_t min_length; /* strings and arrays */
    uint64_t max_length; /* 0 = no limit */
    char **enum_values;  /* strings: the allowed values */
    size_t nenum;
    sl_config_pos pos;
} sl_config_field;

/** A gateway route: requests to method + path become events on channel. */
typedef struct sl_config_route {
    char *method;  /* default POST */
    char *path;    /* "/orders" */
    char *channel; /* a declared channel */
    char *type;    /* CloudEvents type of JSON bodies */
    char *source;  /* CloudEvents source; default "/gateway" */
    sl_config_field *fields;
    size_t nfields;
    uint64_t deadline_ms;       /* deadline of accepted events; 30 s */
    uint64_t max_queue_wait_ms; /* 0 = the deadline alone */
    bool admit_by_wait;         /* default true */
    sl_config_pos pos;
} sl_config_route;

typedef struct sl_config_channel {
    char *name;
    uint64_t max_length; /* 0 = unbounded */
    uint64_t max_bytes;  /* 0 = unbounded */
    sl_config_pos pos;
} sl_config_channel;

typedef struct sl_config_consumer {
    char *channel;
    char *group;
    uint32_t prefetch;           /* default 10, 1..100000 */
    uint32_t concurrency;        /* default = prefetch, <= prefetch */
    uint64_t handler_timeout_ms; /* default 30000 */
    uint32_t max_attempts;       /* default 5 */
    uint64_t *backoff_ms;        /* default 1000, 5000, 10000 */
    size_t backoff_len;
    bool idempotency;            /* default false */
    uint64_t idempotency_ttl_ms; /* default 24 h */
    sl_config_handler handler;
    /* Status projection (GET /status/{id} of the gateway): what this group
     * reports for the request that caused an event (its correlationid, or
     * its id). NULL = nothing. */
    char *status_start; /* status.start: when a handler starts */
    char *status_ack;   /* status.ack: after the handler's ACK */
    char *status_dead;  /* status.dead_letter: when dead-lettered */
    sl_config_pos pos;
} sl_config_consumer;

typedef struct sl_config {
    char *path;         /* the file, as given */
    char *service_name; /* service.name; default "sluice" */
    /* engine: */
    char *engine_url;            /* default "embedded:./data" */
    sl_sync_mode sync;           /* engine.sync: full | normal | off */
    uint64_t dedup_window_ms;    /* engine.dedup_window; default 2 min */
    uint64_t max_event_size;     /* engine.max_event_size; default 1 MiB */
    uint64_t memory_budget;      /* engine.memory_budget; default 256 KiB */
    uint64_t commit_interval_ms; /* engine.commit_interval; default 0 */
    /* producer: */
    uint32_t max_in_flight;      /* default 1000 */
    uint64_t publish_timeout_ms; /* default 5000 */
    double rate_per_s;           /* producer.rate; 0 = no limit */
    uint32_t burst;              /* producer.burst; default 2 x rate,
                                    rounded up (0 while rate is 0) */
    uint32_t breaker_failures;   /* producer.breaker.failure_threshold; 0 =
                                    no breaker */
    uint64_t breaker_open_ms;    /* producer.breaker.open; default 30 s */
    /* topology: */
    sl_config_channel *channels;
    size_t nchannels;
    sl_config_consumer *consumers;
    size_t nconsumers;
    /* gateway (HTTP ingest), present when gateway.routes is non-empty: */
    char *gateway_listen;         /* default 127.0.0.1:8080 */
    uint64_t gateway_max_body;    /* default 1 MiB */
    uint32_t gateway_threads;     /* default 8 */
    double gateway_client_rate;   /* per client, events/s; 0 = off */
    double gateway_client_burst;  /* default 2 x rate */
    char *gateway_client_header;  /* client key header; default X-API-Key,
                                     else the remote address */
    uint32_t gateway_max_clients; /* keyed bucket bound; default 10000 */
    uint64_t gateway_idempotency_ttl_ms; /* default 24 h */
    char *gateway_state;                 /* idempotency keys and statuses;
                                            default next to the inbox */
    sl_config_route *routes;
    size_t nroutes;
    /* admin listener (metrics, health, scaling): */
    bool admin_enabled;    /* default true */
    char *admin_listen;    /* default 127.0.0.1:9090 */
    uint64_t scale_target; /* ready events per replica; 5000 */
    uint32_t scale_min;    /* default 2 */
    uint32_t scale_max;    /* default 20 */
    /* lifecycle: */
    uint64_t drain_timeout_ms; /* default 25 s */
    char *inbox_path;          /* idempotency store; never NULL. Default
                                  "DIR/inbox.db" for "embedded:DIR",
                                  ":memory:" for "memory://",
                                  "./sluice-inbox.db" otherwise */
    /* private: where each value read from the file came from, keyed by
     * the address of the field that holds it (sl_config_pos_of). */
    sl_config_value_pos *value_pos;
    size_t nvalue_pos;
} sl_config;

/**
 * Parse and validate a YAML file and fill in every default.
 *
 * On error @p diag says "FILE:LINE:COL: KEY: problem" (LINE and COL
 * 1-based; KEY such as "consumers[1].prefetch"). Errors that belong to no
 * key (YAML syntax, an empty file, a top level that is not a mapping) read
 * "FILE:LINE:COL: problem".
 *
 * @param[in]  path the file; also copied into the result's `path`.
 * @param[out] out  the configuration, owned by the caller
 *                  (sl_config_destroy); written only on SL_OK.
 * @param[out] diag optional detail.
 * @return SL_OK; SL_CONFIG for an invalid file; SL_IO when it cannot be
 *         read; SL_NOMEM; SL_INVALID for NULL arguments.
 *
 * Thread-safety: callable from any thread.
 */
SL_API sl_status sl_config_load_file(const char *path, sl_config **out,
                                     sl_diag *diag);

/** Same from memory (@p yaml need not be NUL-terminated; borrowed for the
 * call); @p name stands for the file in messages and in the result's `path`
 * (NULL: "<string>"). Returns as sl_config_load_file, without SL_IO. Any
 * thread. */
SL_API sl_status sl_config_load_string(const char *yaml, size_t len,
                                       const char *name, sl_config **out,
                                       sl_diag *diag);

/** Free a configuration and everything in it. NULL is a no-op. No other
 * thread may be reading it. */
SL_API void sl_config_destroy(sl_config *cfg);

/**
 * Where the value stored at @p field came from.
 *
 * @param[in] cfg   a loaded configuration.
 * @param[in] field the address of a field of @p cfg or of one of its list
 *                  elements (`&cfg->gateway_listen`,
 *                  `&cfg->consumers[0].handler.path`).
 * @return its position in the file; {0, 0} for a default or an unknown
 *         address. Any thread.
 */
SL_API sl_config_pos sl_config_pos_of(const sl_config *cfg, const void *field);

/**
 * Report a problem with one configuration value found after loading (when
 * the service is built): sets @p diag to "FILE:LINE:COL: KEY: message",
 * the position being the value's (sl_config_pos_of), else @p fallback,
 * else "FILE: KEY: message" for a default value.
 *
 * @return @p st, so that call sites read `return sl_config_fail(...);`.
 *         Any thread.
 */
SL_API sl_status sl_config_fail(const sl_config *cfg, const void *field,
                                sl_config_pos fallback, const char *key,
                                sl_status st, sl_diag *diag, const char *fmt,
                                ...) __attribute__((format(printf, 7, 8)));

/**
 * "Did you mean": the declared channel closest to @p name, for a user who
 * typed a channel that @p cfg does not declare.
 *
 * @return a channel name of @p cfg (borrowed, valid as long as @p cfg)
 *         within two edits of @p name; NULL when none is, when @p name is
 *         declared itself, or when an argument is NULL.
 *
 * Thread-safety: any thread.
 */
SL_API const char *sl_config_suggest_channel(const sl_config *cfg,
                                             const char *name);

/**
 * Same for a consumer group: the group of @p channel in @p cfg closest to
 * @p group, or NULL (also when @p group is one of them).
 */
SL_API const char *sl_config_suggest_group(const sl_config *cfg,
                                           const char *channel,
                                           const char *group);

/** Write the reference of every option (key, type, default, bounds, doc) as
 * Markdown, generated from the option tables (docs/configuration.md embeds
 * it) to @p out (borrowed). NULL is a no-op. Any thread. */
SL_API void sl_config_write_reference(FILE *out);

#ifdef __cplusplus
}
#endif
#endif
