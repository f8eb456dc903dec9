/* What the unit tests share: temporary directories, waits with deadlines
 * and a manual clock that the library's waits see move.
 *
 * A test waits on a condition, never for a fixed time: ts_wait_until for an
 * effect of another thread or of real I/O, ts_clock_advance_when_waiting to
 * move time once the component under test sleeps on its clock.
 */
#ifndef SLUICE_TESTS_SUPPORT_H
#define SLUICE_TESTS_SUPPORT_H

#include "sluice/clock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a test waits for something that should happen at once; long,
 * so that a slow machine (sanitizers, a loaded CI runner) never fails a
 * test that is right, short enough that a wrong one fails. */
#define TS_WAIT_MS 10000

/* ---- temporary directories ---------------------------------------------- */

/** Create a fresh directory $TMPDIR/sluice-@p name.XXXXXX (TMPDIR defaults
 * to /tmp) and write its path into @p out. @return false when it could not
 * be created. */
bool ts_tempdir(char *out, size_t size, const char *name);

/** Remove @p path and everything below it; a missing path is no error. */
void ts_rm_rf(const char *path);

/* ---- waits with deadlines ----------------------------------------------- */

/** Wait until @p pred(@p arg) holds, looking again every millisecond, for
 * at most @p timeout_ms of real time. @return whether it held. */
bool ts_wait_until(bool (*pred)(void *arg), void *arg, uint64_t timeout_ms);

/* ---- the manual clock ---------------------------------------------------- */

/** Wait until at least @p n of the library's waits sleep on a manual clock
 * (their deadlines are read, so an advance now moves them), for at most
 * @p timeout_ms of real time. @return whether they did. */
bool ts_clock_waiting(size_t n, uint64_t timeout_ms);

/** Once @p n waits sleep on a manual clock (ts_clock_waiting, TS_WAIT_MS),
 * advance @p mc by @p ms; the waits look at the clock again. @return false
 * when they never slept (the clock was not moved). */
bool ts_clock_advance_when_waiting(sl_manual_clock *mc, size_t n, uint64_t ms);

#endif
