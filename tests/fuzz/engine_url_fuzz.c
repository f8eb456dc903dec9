/* libFuzzer target for the engine URL parsers, through sl_engine_check_url.
 *
 * The check parses a URL the way sl_engine_open would (scheme, path or
 * host, query parameters through each engine's parameter table) without
 * opening anything: no connection, and no file or directory is created
 * (an embedded store's directory is only looked at). That makes it safe to
 * run on arbitrary input.
 *
 * Each input is checked as it is, then behind every scheme this build
 * serves, so that mutations of one engine's seeds reach every parser.
 * Whatever it answers, a refusal other than SL_NOMEM must say why.
 */
#include "sluice/engine.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const schemes[] = {
    "",        "embedded:", "embedded::memory:", "memory://",
    "nats://", "tls://",    "amqp://",           "amqps://",
};

static void check(const char *url)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_check_url(url, &diag);
    if (st != SL_OK && st != SL_NOMEM && diag.msg[0] == '\0') {
        abort(); /* a refusal without a reason */
    }
    if (memchr(diag.msg, '\0', sizeof diag.msg) == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) {
        size = MAX_INPUT;
    }
    char url[32 + MAX_INPUT + 1];
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        memcpy(url, schemes[i], n);
        memcpy(url + n, data, size);
        url[n + size] = '\0'; /* a NUL in the input ends the URL early */
        check(url);
    }
    return 0;
}
