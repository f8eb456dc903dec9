/* A handler plugin for the NATS integration tests (nats_*_test.sh).
 *
 * handler.config: "FILE[,SLEEP_MS]". Each delivery appends the line
 * "S <id> <pid>" to FILE, sleeps SLEEP_MS (default 0), appends
 * "D <id> <pid>" and acks; one write(2) per line with O_APPEND, so that
 * several processes share FILE. An event whose id starts with "poison"
 * kills the whole process with SIGKILL when its handler starts (a crash
 * that leaves no chance to settle anything: the crash-loop case).
 */
#include "plugin_sink.h"

#include <errno.h>
#include <signal.h>

static bool put_line(sink *s, char tag, const char *id)
{
    char line[600];
    int n = snprintf(line, sizeof line, "%c %s %ld\n", tag, id, (long)getpid());
    return n > 0 && (size_t)n < sizeof line &&
           write(s->fd, line, (size_t)n) == n;
}

sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user)
{
    sink *s = user;
    const char *id = sl_event_id(sl_handler_event(ctx));
    if (strncmp(id, "poison", 6) == 0) {
        raise(SIGKILL);
    }
    if (!put_line(s, 'S', id)) {
        sl_handler_set_error(ctx, "write: %s", strerror(errno));
        return SL_OUTCOME_RETRY;
    }
    sink_sleep(s);
    if (!put_line(s, 'D', id)) {
        sl_handler_set_error(ctx, "write: %s", strerror(errno));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}
