/* sluice — status codes and human-readable diagnostics.
 *
 * Every fallible call in libsluice returns an sl_status. Out-parameters are
 * written only when the call returns SL_OK. Callers that want detail pass an
 * optional, caller-owned sl_diag.
 *
 * Thread safety: every function here may be called from any thread; an
 * sl_diag belongs to the one call it is passed to.
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include "sluice/export.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, text, retryable). Appending is allowed; reordering is not, because
 * the numeric values are part of the ABI. */
#define SL_STATUS_TABLE(X)                                                     \
    X(OK, "ok", false)                                                         \
    X(INVALID, "invalid argument", false)                                      \
    X(NOMEM, "out of memory", true)                                            \
    X(FULL, "full: window, queue or channel at capacity", true)                \
    X(TIMEOUT, "timed out; the outcome is unknown", true)                      \
    X(EMPTY, "nothing available", true)                                        \
    X(NOT_FOUND, "not found", false)                                           \
    X(EXISTS, "already exists", false)                                         \
    X(DUPLICATE, "duplicate event id", false)                                  \
    X(CLOSED, "closed or shutting down", false)                                \
    X(IO, "input/output error", true)                                          \
    X(CONFIG, "invalid configuration", false)                                  \
    X(TOO_LARGE, "too large", false)                                           \
    X(EXPIRED, "deadline passed", false)                                       \
    X(BREAKER_OPEN, "circuit breaker open", true)                              \
    X(RATE_LIMITED, "rate limited", true)                                      \
    X(UNAVAILABLE, "engine unavailable", true)                                 \
    X(UNSUPPORTED, "not supported", false)                                     \
    X(INTERNAL, "internal error", false)

typedef enum sl_status {
#define SL__STATUS_ENUM(name, text, retryable) SL_##name,
    SL_STATUS_TABLE(SL__STATUS_ENUM)
#undef SL__STATUS_ENUM
        SL_STATUS_COUNT_
} sl_status;

/** Static text for a status; never NULL ("unknown status" if out of range). */
SL_API const char *sl_status_str(sl_status st);

/** Static upper-case name ("FULL"); never NULL. */
SL_API const char *sl_status_name(sl_status st);

/** True when repeating the same call later may succeed. */
SL_API bool sl_status_is_retryable(sl_status st);

/** Caller-owned detail for a failed call. Zero-initialise before use. */
typedef struct sl_diag {
    sl_status status; /* status of the last sl_diag_set() */
    char msg[512];    /* NUL-terminated human-readable detail */
} sl_diag;

/**
 * Record a failure in @p diag (which may be NULL) and return @p st, so that
 * call sites read `return sl_diag_set(diag, SL_CONFIG, "...", ...);`.
 */
SL_API sl_status sl_diag_set(sl_diag *diag, sl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
