/* A handler plugin for the NATS integration tests (nats_*_test.sh).
 *
 * handler.config: "FILE[,SLEEP_MS]". Each delivery appends the line
 * "S <id> <pid>" to FILE, sleeps SLEEP_MS (default 0), appends
 * "D <id> <pid>" and acks; one write(2) per line with O_APPEND, so that
 * several processes share FILE. An event whose id starts with "poison"
 * kills the whole process with SIGKILL when its handler starts (a crash
 * that leaves no chance to settle anything: the crash-loop case).
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

SLUICE_PLUGIN_DECLARE()

typedef struct sink {
    int fd;
    long sleep_ms;
} sink;

sl_status sluice_handler_init(const char *config, void **user);
sl_outcome sluice_handle(sl_handler_ctx *ctx, void *user);
void sluice_handler_fini(void *user);

sl_status sluice_handler_init(const char *config, void **user)
{
    if (config == NULL) {
        return SL_CONFIG;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s", config);
    sink *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    char *comma = strchr(path, ',');
    if (comma != NULL) {
        *comma = '\0';
        s->sleep_ms = strtol(comma + 1, NULL, 10);
    }
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        free(s);
        return SL_IO;
    }
    *user = s;
    return SL_OK;
}

static bool put_line(sink *s, char tag, const char *id)
{
    char line[600];
    int n = snprintf(line, sizeof line, "%c %s %ld\n", tag, id,
                     (long)getpid());
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
    if (s->sleep_ms > 0) {
        struct timespec ts = {s->sleep_ms / 1000,
                              (s->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (!put_line(s, 'D', id)) {
        sl_handler_set_error(ctx, "write: %s", strerror(errno));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

void sluice_handler_fini(void *user)
{
    sink *s = user;
    if (s != NULL) {
        close(s->fd);
        free(s);
    }
}
