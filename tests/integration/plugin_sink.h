/* What the test handler plugins share (included once by each): a sink
 * file and a cost per event, from handler.config "FILE[,SLEEP_MS]", and the
 * plugin's init and fini. FILE is opened with O_APPEND so that each line,
 * written with one write(2), stays whole even when processes share it. */
#ifndef SLUICE_TESTS_PLUGIN_SINK_H
#define SLUICE_TESTS_PLUGIN_SINK_H

#include "sluice/plugin.h"

#include <fcntl.h>
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

void sluice_handler_fini(void *user)
{
    sink *s = user;
    if (s != NULL) {
        close(s->fd);
        free(s);
    }
}

/* The event's cost: SLEEP_MS of doing nothing. */
static void sink_sleep(const sink *s)
{
    if (s->sleep_ms > 0) {
        struct timespec ts = {s->sleep_ms / 1000,
                              (s->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

#endif
