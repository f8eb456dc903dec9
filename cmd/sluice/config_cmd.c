/* sluice config check|reference. */
#include "cli.h"

#include "sluice/log.h"
#include "sluice/service.h"

#include <stdio.h>
#include <string.h>

static const char config_usage[] =
    "usage: sluice config check FILE | sluice config reference\n"
    "\n"
    "  check FILE   parse and validate FILE as 'sluice run' would: options,\n"
    "               engine URL (scheme, parameters, the files it names),\n"
    "               listen addresses, plugins and their functions, handler\n"
    "               URLs and files. Errors name FILE:LINE:COLUMN and the\n"
    "               key. Nothing is opened or created.\n"
    "  reference    print every option (Markdown) from the option tables\n"
    "\n"
    "  -h, --help   this text\n";

static int check(const char *path)
{
    sl_config *cfg = NULL;
    sl_diag diag = {0};
    if (sl_config_load_file(path, &cfg, &diag) != SL_OK ||
        sl_service_check(cfg, &diag) != SL_OK) {
        cli_error("%s", diag.msg);
        sl_config_destroy(cfg);
        return CLI_USAGE;
    }
    char shown[256]; /* the URL may hold credentials */
    sl_log_redact_url(cfg->engine_url, shown, sizeof shown);
    printf("%s: ok (%zu channel(s), %zu consumer group(s), engine %s)\n", path,
           cfg->nchannels, cfg->nconsumers, shown);
    sl_config_destroy(cfg);
    return CLI_OK;
}

int cmd_config(int argc, char **argv)
{
    /* "config check --help" must not look for a file called "--help". */
    if (cli_wants_help(argc, argv)) {
        fputs(config_usage, stdout);
        return CLI_OK;
    }
    if (argc == 2 && strcmp(argv[1], "reference") == 0) {
        sl_config_write_reference(stdout);
        return CLI_OK;
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        return check(argv[2]);
    }
    if (argc >= 2 && strcmp(argv[1], "check") != 0 &&
        strcmp(argv[1], "reference") != 0) {
        cli_error("config: unknown subcommand '%s' (check, reference)",
                  argv[1]);
        return CLI_USAGE;
    }
    fputs(config_usage, stderr);
    return CLI_USAGE;
}
