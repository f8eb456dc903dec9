/* libFuzzer target for sl_event_from_json (structured mode input) and, for
 * the events it accepts, sl_event_to_json and the binary-mode headers.
 *
 * Build (not wired into CMake):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 \
 *     -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude \
 *     tests/fuzz/event_json_fuzz.c src/core/event.c src/core/event_json.c \
 *     src/core/event_codec.c src/core/ids.c src/core/alloc.c \
 *     src/core/status.c src/core/clock.c -ljansson -o event_json_fuzz
 *   ./event_json_fuzz -max_total_time=60 tests/fuzz/corpus/event_json
 */
#include "sluice/event.h"

#include "sluice/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_status apply(const char *name, const char *value, void *ctx)
{
    return sl_ce_from_header(ctx, "ce_", name, value, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_event *ev = NULL;
    sl_event *back = NULL;
    sl_event *hdr = NULL;
    char *json = NULL;

    if (sl_event_from_json((const char *)data, size, &ev, NULL) != SL_OK) {
        return 0;
    }
    /* An accepted event must serialise and read back; to_json may refuse
     * only bytes that are not UTF-8. */
    sl_status st = sl_event_to_json(ev, &json);
    if (st == SL_OK) {
        if (sl_event_from_json(json, strlen(json), &back, NULL) != SL_OK) {
            abort();
        }
    } else if (st != SL_INVALID) {
        abort();
    }
    if (sl_event_create(&hdr) == SL_OK) {
        (void)sl_ce_to_headers(ev, "ce_", apply, hdr);
    }
    sl_event_unref(hdr);
    sl_event_unref(back);
    sl_free(json);
    sl_event_unref(ev);
    return 0;
}
