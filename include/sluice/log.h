/* sluice — logging through an installable sink.
 *
 * The library never prints. It hands each record to the installed sink; the
 * default sink discards everything below WARN and writes the rest as JSON
 * lines to stderr. sl_log_json_sink writes JSON lines to any FILE.
 *
 * Thread safety: the logging functions may be called from any thread,
 * concurrently, and call the sink on the logging thread. sl_log_set_sink
 * is not synchronised with them: install the sink before starting
 * anything that logs (and restore the default after stopping it).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "sluice/export.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_log_level {
    SL_LOG_DEBUG,
    SL_LOG_INFO,
    SL_LOG_WARN,
    SL_LOG_ERROR,
} sl_log_level;

/** A key/value pair attached to a record (trace_id, event id, ...). */
typedef struct sl_log_field {
    const char *key;
    const char *value;
} sl_log_field;

/** One log record; every pointer is valid only during the sink call. */
typedef struct sl_log_record {
    sl_log_level level;
    uint64_t time_ms;      /* wall clock */
    const char *component; /* "engine.embedded", "consumer", ... */
    const char *msg;
    const sl_log_field *fields;
    size_t nfields;
} sl_log_record;

/** Called on the logging thread, possibly concurrently: must be
 * thread-safe. */
typedef void (*sl_log_sink_fn)(const sl_log_record *rec, void *ctx);

/** Install a sink with a minimum level (NULL restores the default). @p ctx
 * is borrowed until another sink is installed. Not thread-safe: see the
 * top of this file. */
SL_API void sl_log_set_sink(sl_log_sink_fn fn, void *ctx,
                            sl_log_level min_level);

/** Non-zero when a record at @p level would reach the sink (to skip
 * building costly records). */
SL_API int sl_log_enabled(sl_log_level level);

/** Log a formatted message without fields; the strings are borrowed for
 * the call. No status: logging never fails the caller. */
SL_API void sl_logf(sl_log_level level, const char *component, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

/** Log a message with fields; everything is borrowed for the call. */
SL_API void sl_log_fields(sl_log_level level, const char *component,
                          const char *msg, const sl_log_field *fields,
                          size_t nfields);

/** A sink writing one JSON object per line to the FILE * in @p ctx, stderr
 * when NULL (keys: ts, level, component, msg, then the fields). Each line
 * is written with one stdio call, so concurrent records do not
 * interleave. */
SL_API void sl_log_json_sink(const sl_log_record *rec, void *ctx);

/** Lower-case name of a level ("warn"); static text. */
SL_API const char *sl_log_level_str(sl_log_level level);

/**
 * Copy @p url into @p buf with its credentials hidden, for log lines and
 * messages: "amqp://user:pass@host/" reads "amqp://user:***@host/", a token
 * ("nats://token@host") reads "***", and query parameters named password,
 * pass, passwd, token or secret read "***" unless they name a secret's
 * source (env:NAME, file:PATH). Text without "://" is copied unchanged.
 *
 * @param[in]  url  the URL (not modified)
 * @param[out] buf  receives the copy, always NUL-terminated, truncated to
 *                  fit
 * @param[in]  size bytes at @p buf, at least 1
 * @return @p buf.
 *
 * Thread-safety: any thread.
 */
SL_API char *sl_log_redact_url(const char *url, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
