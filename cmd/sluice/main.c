/* sluice — the command-line tool and daemon. */
#include "cli.h"

#include "sluice/duration.h"
#include "sluice/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: sluice COMMAND [OPTIONS]\n"
    "\n"
    "Resilient event-driven services with backpressure from end to end.\n"
    "\n"
    "commands:\n"
    "  run CONFIG        host the service CONFIG declares until "
    "SIGTERM/SIGINT\n"
    "  publish           publish events to a channel\n"
    "  dlq list|show|replay\n"
    "                    inspect and replay a group's dead letters\n"
    "  config check|reference\n"
    "                    validate a config file, or print every option\n"
    "\n"
    "Run 'sluice COMMAND --help' for a command's options.\n"
    "\n"
    "exit status: 0 ok, 1 runtime error, 2 usage or configuration error,\n"
    "3 the engine said full (backpressure), 4 no confirm in time (outcome\n"
    "unknown).\n";

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return true;
        }
    }
    return false;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_engine_url(const char *engine, const char *config_path,
                   const char **url_out, sl_config **cfg_out)
{
    if (cfg_out != NULL) {
        *cfg_out = NULL;
    }
    if (config_path != NULL) {
        sl_config *cfg = NULL;
        sl_diag diag = {0};
        if (sl_config_load_file(config_path, &cfg, &diag) != SL_OK) {
            cli_error("%s", diag.msg);
            return CLI_USAGE;
        }
        *url_out = engine ? engine : cfg->engine_url;
        if (cfg_out != NULL) {
            *cfg_out = cfg;
        } else if (engine == NULL) {
            /* The URL points into cfg: keep it alive for the process. */
            return CLI_OK;
        } else {
            sl_config_destroy(cfg);
        }
        return CLI_OK;
    }
    *url_out = engine ? engine : "embedded:./data";
    return CLI_OK;
}

int cli_open_engine(const char *url, sl_engine **out)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_open(url, NULL, out, &diag);
    if (st != SL_OK) {
        cli_error("%s", diag.msg);
        return st == SL_INVALID ? CLI_USAGE : CLI_ERROR;
    }
    return CLI_OK;
}

int cli_duration(const char *opt, const char *text, uint64_t *out_ms)
{
    if (sl_duration_parse_ms(text, out_ms) != SL_OK) {
        cli_error("%s: '%s' is not a duration (e.g. 250ms, 5s, 1m)", opt, text);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_number(const char *opt, const char *text, double min, double max,
               double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || v < min || v > max) {
        cli_error("%s: '%s' is not a number in [%g, %g]", opt, text, min, max);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

void cli_sleep_until_ns(uint64_t until_ns)
{
    struct timespec ts = {(time_t)(until_ns / 1000000000u),
                          (long)(until_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

int main(int argc, char **argv)
{
    /* Library logs go to stderr as JSON lines; SLUICE_LOG=debug|info|... */
    const char *lvl = getenv("SLUICE_LOG");
    sl_log_level level = SL_LOG_INFO;
    if (lvl != NULL) {
        level = strcmp(lvl, "debug") == 0   ? SL_LOG_DEBUG
                : strcmp(lvl, "warn") == 0  ? SL_LOG_WARN
                : strcmp(lvl, "error") == 0 ? SL_LOG_ERROR
                                            : SL_LOG_INFO;
    }
    sl_log_set_sink(sl_log_json_sink, stderr, level);

    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("sluice 0.1.0");
        return CLI_OK;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "publish") == 0) {
        return cmd_publish(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "dlq") == 0) {
        return cmd_dlq(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "config") == 0) {
        return cmd_config(argc - 1, argv + 1);
    }
    cli_error("unknown command '%s' (run 'sluice --help')", cmd);
    return CLI_USAGE;
}
