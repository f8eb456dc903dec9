/* libFuzzer target for the configuration loader (YAML + validation).
 *
 * Built and smoke-run by `make test` (build-fuzz, clang); run longer with
 *   build-fuzz/tests/fuzz/config_fuzz -max_total_time=600 \
 *       tests/fuzz/corpus/config
 *
 * Any input either loads into a config whose every string is readable, or
 * fails with a message that cites a position; nothing leaks either way.
 */
#include "sluice/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_config *cfg = NULL;
    sl_diag diag = {0};
    if (sl_config_load_string((const char *)data, size, "fuzz.yaml", &cfg,
                              &diag) == SL_OK) {
        size_t n = strlen(cfg->engine_url);
        for (size_t i = 0; i < cfg->nconsumers; i++) {
            n += strlen(cfg->consumers[i].channel);
            n += strlen(cfg->consumers[i].handler.kind);
        }
        (void)n;
        sl_config_destroy(cfg);
    } else if (strncmp(diag.msg, "fuzz.yaml", 9) != 0) {
        __builtin_trap(); /* every error names the file */
    }
    return 0;
}
