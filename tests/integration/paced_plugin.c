/* A handler plugin of fixed cost, for admission tests and the overload
 * benchmark: it takes SLEEP_MS per event (so one worker drains about
 * 1000 / SLEEP_MS events/s) and records, for each event it handled, when
 * the event was accepted, its deadline and when the handler finished.
 *
 * handler.config: "FILE,SLEEP_MS" (plugin_sink.h). Each event appends
 * the line
 *
 *   <time_ms> <deadline_ms> <done_ms>
 *
 * (wall clock, ms since the epoch; time is the event's `time`, which the
 * gateway sets when it accepts a JSON body; deadline 0 when none) to FILE
 * with one write(2), so that a reader never sees half a line.
 */
#include "plugin_sink.h"
#include "sluice/clock.h"

#include <errno.h>

sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user)
{
    sink *s = user;
    const sl_event *ev = sl_handler_event(ctx);
    sink_sleep(s);
    char line[96];
    int n = snprintf(line, sizeof line, "%llu %llu %llu\n",
                     (unsigned long long)sl_event_time_ms(ev),
                     (unsigned long long)sl_event_deadline_ms(ev),
                     (unsigned long long)sl_time_wall_ms());
    if (n <= 0 || write(s->fd, line, (size_t)n) != n) {
        sl_handler_set_error(ctx, "write: %s", strerror(errno));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}
