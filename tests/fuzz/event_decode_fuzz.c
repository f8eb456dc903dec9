/* libFuzzer target for sl_event_decode (the embedded engine's stored form).
 *
 * Build (not wired into CMake):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 \
 *     -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude \
 *     tests/fuzz/event_decode_fuzz.c src/core/event.c src/core/ids.c \
 *     src/core/alloc.c src/core/status.c src/core/clock.c \
 *     -o event_decode_fuzz
 *   ./event_decode_fuzz -max_total_time=60 tests/fuzz/corpus/event_decode
 *
 * Whatever decodes must be a usable event: it re-encodes to a buffer that
 * decodes to an event with the same encoding, and it survives clone,
 * validate and a setter.
 */
#include "sluice/event.h"

#include "sluice/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_event *ev = NULL;
    sl_event *again = NULL;
    sl_event *cp = NULL;
    uint8_t *enc = NULL;
    uint8_t *enc2 = NULL;
    size_t len = 0;
    size_t len2 = 0;
    sl_diag diag = {0};

    if (sl_event_decode(data, size, &ev, &diag) != SL_OK) {
        return 0;
    }
    if (sl_event_encode(ev, &enc, &len) != SL_OK ||
        len != sl_event_encoded_size(ev) ||
        sl_event_decode(enc, len, &again, NULL) != SL_OK ||
        sl_event_encode(again, &enc2, &len2) != SL_OK || len2 != len ||
        memcmp(enc, enc2, len) != 0) {
        abort();
    }
    (void)sl_event_validate(ev, 0, &diag);
    if (sl_event_clone(ev, &cp) != SL_OK) {
        abort();
    }
    (void)sl_event_set(cp, SL_ATTR_SUBJECT, "fuzz");
    (void)sl_event_set_ext(cp, "fuzz", "1");

    sl_event_unref(cp);
    sl_free(enc2);
    sl_event_unref(again);
    sl_free(enc);
    sl_event_unref(ev);
    return 0;
}
