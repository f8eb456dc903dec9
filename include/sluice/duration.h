/* sluice — durations written for humans ("250ms", "5s", "1m", "1.5h").
 *
 * The configuration loader and the retry ladder parser share this one
 * grammar, so a duration means the same thing everywhere it is written.
 */
#ifndef SLUICE_DURATION_H
#define SLUICE_DURATION_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Parse a duration into milliseconds.
 *
 * Grammar: optional blanks, a non-negative decimal number (digits, optionally
 * followed by '.' and up to 9 fraction digits), optional blanks, an optional
 * lower-case unit `ms`, `s`, `m` or `h`, optional blanks. A number without a
 * unit is milliseconds. Examples: "250ms", "250", "2s", "1.5s", "1m", "24h".
 * The value must be a whole number of milliseconds ("0.5ms" is refused) and
 * must fit in a uint64_t.
 *
 * @param[in]  text NUL-terminated text; NULL is refused.
 * @param[out] out  the duration in ms; written only on SL_OK.
 * @return SL_OK, or SL_INVALID when @p text or @p out is NULL, the text does
 *         not match the grammar, or the value overflows.
 *
 * Thread-safety: pure function, callable from any thread.
 */
SL_API sl_status sl_duration_parse_ms(const char *text, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
