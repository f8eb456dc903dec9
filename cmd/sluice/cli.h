/* Shared pieces of the sluice command-line tool. */
#ifndef SLUICE_CMD_CLI_H
#define SLUICE_CMD_CLI_H

#include "sluice/config.h"
#include "sluice/engine.h"

#include <stdbool.h>
#include <stdint.h>

/* Exit codes, documented in `sluice --help` and the man page. */
enum {
    CLI_OK = 0,
    CLI_ERROR = 1,   /* runtime failure */
    CLI_USAGE = 2,   /* bad arguments or configuration */
    CLI_FULL = 3,    /* backpressure: the engine said "full" */
    CLI_TIMEOUT = 4, /* no confirm in time: outcome unknown */
};

int cmd_run(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_config(int argc, char **argv);

/* True when an argument before "--" is -h or --help: every command and
 * subcommand answers it with its usage, whatever else is given. */
bool cli_wants_help(int argc, char **argv);

/* Print "sluice: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Engine URL from --engine, else from --config's engine.url, else the
 * default "embedded:./data". *cfg_out (may be NULL) receives the loaded
 * config, which the caller frees. Returns CLI_OK or an exit code. */
int cli_engine_url(const char *engine, const char *config_path,
                   const char **url_out, sl_config **cfg_out);

/* Open the engine; prints the error. */
int cli_open_engine(const char *url, sl_engine **out);

/* Parse a duration ("5s") or a rate ("100", "2.5"); prints the error naming
 * the option. */
int cli_duration(const char *opt, const char *text, uint64_t *out_ms);
int cli_number(const char *opt, const char *text, double min, double max,
               double *out);

/* Sleep on the monotonic clock until @p until_ns. */
void cli_sleep_until_ns(uint64_t until_ns);

#endif
