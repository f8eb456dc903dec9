/* sluice config check|reference. */
#include "cli.h"

#include "core/secret.h"

#include <stdio.h>
#include <string.h>

static const char config_usage[] =
    "usage: sluice config check FILE | sluice config reference\n"
    "\n"
    "  check FILE   parse and validate FILE; errors name FILE:LINE:COLUMN\n"
    "               and the key\n"
    "  reference    print every option (Markdown) from the option tables\n";

int cmd_config(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "reference") == 0) {
        sl_config_write_reference(stdout);
        return CLI_OK;
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        sl_config *cfg = NULL;
        sl_diag diag = {0};
        if (sl_config_load_file(argv[2], &cfg, &diag) != SL_OK) {
            cli_error("%s", diag.msg);
            return CLI_USAGE;
        }
        char shown[256]; /* the URL may hold credentials */
        sl__secret_redact_url(cfg->engine_url, shown, sizeof shown);
        printf("%s: ok (%zu channel(s), %zu consumer group(s), engine %s)\n",
               argv[2], cfg->nchannels, cfg->nconsumers, shown);
        sl_config_free(cfg);
        return CLI_OK;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        fputs(config_usage, stdout);
        return CLI_OK;
    }
    fputs(config_usage, stderr);
    return CLI_USAGE;
}
