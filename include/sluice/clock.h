/* sluice — time.
 *
 * Time is a parameter: every primitive that depends on time takes `now_ms`
 * as an argument. Components that need to read the time themselves hold an
 * sl_clock, which tests replace with a manual one.
 *
 * Thread safety: every function may be called from any thread. A clock is
 * borrowed by whoever holds it and must outlive them.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include "sluice/export.h"

#include <stdatomic.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Milliseconds since the Unix epoch (wall clock; deadlines use it). */
SL_API uint64_t sl_time_wall_ms(void);

/** Milliseconds of a monotonic clock (intervals, timeouts). */
SL_API uint64_t sl_time_mono_ms(void);

/** Nanoseconds of a monotonic clock (latency measurement). */
SL_API uint64_t sl_time_mono_ns(void);

/** A source of time. `now_ms` returns wall-clock milliseconds. */
typedef struct sl_clock {
    uint64_t (*now_ms)(void *ctx);
    void *ctx;
} sl_clock;

/** The system wall clock: static, never NULL. */
SL_API const sl_clock *sl_clock_system(void);

/** Read a clock; NULL reads the system clock. */
SL_API uint64_t sl_clock_now_ms(const sl_clock *clk);

/** A clock that only moves when told; for tests. An embedded struct: the
 * caller owns it and initialises it with sl_manual_clock_init; nothing to
 * free. */
typedef struct sl_manual_clock {
    sl_clock clock;          /* pass &mc.clock where an sl_clock is wanted */
    _Atomic uint64_t now_ms; /* set or advance it from any thread */
} sl_manual_clock;

/** Initialise @p mc (caller-owned) at @p start_ms. Call before sharing it;
 * afterwards any thread may store or add to mc->now_ms. */
SL_API void sl_manual_clock_init(sl_manual_clock *mc, uint64_t start_ms);

/** Move a manual clock forward by @p ms and wake every wait of the library
 * that measures its deadline on a manual clock, so that it looks at the
 * time again (a plain store to `now_ms` is seen only when such a wait next
 * wakes on its own). Any thread. */
SL_API void sl_manual_clock_advance(sl_manual_clock *mc, uint64_t ms);

#ifdef __cplusplus
}
#endif
#endif
