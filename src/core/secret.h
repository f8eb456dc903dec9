/* Secrets for engine connections: read a credential from the environment or
 * a file, and keep credentials out of anything printed.
 *
 * Engine-neutral (the RabbitMQ engine uses it for its password; the NATS
 * engine may for tokens and credentials). Internal: not part of the public
 * API.
 */
#ifndef SLUICE_CORE_SECRET_H
#define SLUICE_CORE_SECRET_H

#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>

/** The largest secret sl__secret_read() accepts from a file, in bytes. */
#define SL_SECRET_MAX_FILE 65536

/**
 * True when @p ref names a secret source: "env:NAME" or "file:PATH".
 */
bool sl__secret_is_ref(const char *ref);

/**
 * Read the secret @p ref names.
 *
 * "env:NAME" reads environment variable NAME; "file:PATH" reads the file
 * (at most SL_SECRET_MAX_FILE bytes), without its trailing line breaks
 * ("\n", "\r\n"). An empty secret is an error: a forgotten variable or an
 * empty file should not become an empty password.
 *
 * The messages in @p diag name the variable or the file, never the secret.
 *
 * @param[in]  ref   "env:NAME" or "file:PATH"
 * @param[out] out   the secret, NUL-terminated; free with sl__secret_free()
 * @param[out] diag  optional detail
 * @return SL_OK; SL_INVALID (not a reference, empty name, empty secret, a
 *         NUL byte in the file); SL_NOT_FOUND (variable unset, file
 *         missing); SL_IO (file unreadable); SL_TOO_LARGE; SL_NOMEM.
 * Thread: any (getenv is read, never written).
 */
sl_status sl__secret_read(const char *ref, char **out, sl_diag *diag);

/** Overwrite @p secret with zeros and free it. NULL is a no-op. */
void sl__secret_free(char *secret);

/**
 * Copy @p url into @p buf (@p size bytes, always NUL-terminated, truncated
 * if needed) with its credentials hidden, for logs and error messages:
 *
 *   scheme://user:pass@host:5672/v  ->  user:pass becomes user:***
 *   scheme://token@host:4222        ->  token becomes ***
 *   scheme://a:b@h1,c:d@h2          ->  a:***@h1,c:***@h2
 *   ...?password=hunter2&ns=x       ->  ...?password=***&ns=x
 *
 * A user info without ':' may be a token (NATS), so it is hidden whole.
 * Query parameters named password, pass, passwd, token or secret are
 * hidden unless their value is a reference (env:..., file:...), which is
 * not secret. Text without "://" is copied unchanged.
 *
 * @return @p buf. Thread: any.
 */
char *sl__secret_redact_url(const char *url, char *buf, size_t size);

#endif
