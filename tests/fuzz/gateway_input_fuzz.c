/* libFuzzer target for what the gateway parses from a request: the
 * Content-Type, CloudEvents binary-mode headers (percent-decoding, ce-
 * attribute and extension names, duplicates, specversion, time), the
 * idempotency fingerprint, and JSON bodies against validation rules
 * (types, bounds, lengths, enums, dotted paths).
 *
 * Input: header lines "Name: value" up to an empty line, then the body.
 *
 * Built by CMake with -DSLUICE_FUZZ=ON (clang):
 *   make build-fuzz && ./build-fuzz/tests/fuzz/gateway_input_fuzz \
 *       -max_total_time=60 tests/fuzz/corpus/gateway_input
 */
#include "http/ce_http.h"
#include "http/validate.h"

#include "sluice/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEADERS 64

typedef struct headers {
    char *name[MAX_HEADERS];
    char *value[MAX_HEADERS];
    size_t n;
} headers;

static void each_header(const void *src, sl_gw_header_fn fn, void *ctx)
{
    const headers *h = src;
    for (size_t i = 0; i < h->n; i++) {
        if (!fn(h->name[i], h->value[i], ctx)) {
            return;
        }
    }
}

static const char *find(const headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], name) == 0) {
            return h->value[i];
        }
    }
    return NULL;
}

static const char *const currencies[] = {"EUR", "USD", "GBP"};

static const sl_gateway_field rules[] = {
    {.name = "qty",
     .type = SL_JSON_INTEGER,
     .required = true,
     .has_min = true,
     .min = 1,
     .has_max = true,
     .max = 1000},
    {.name = "sku", .type = SL_JSON_STRING, .min_length = 1, .max_length = 16},
    {.name = "price", .type = SL_JSON_NUMBER, .has_min = true, .min = 0.5},
    {.name = "currency",
     .type = SL_JSON_STRING,
     .enum_values = currencies,
     .nenum = 3},
    {.name = "customer.address.zip", .type = SL_JSON_STRING},
    {.name = "items", .type = SL_JSON_ARRAY, .max_length = 3},
    {.name = "gift", .type = SL_JSON_BOOLEAN},
    {.name = "meta", .type = SL_JSON_OBJECT},
    {.name = "any", .type = SL_JSON_ANY, .required = true},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = sl_malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    /* Split "Name: value" lines (NULs end the header block early, as they
     * would end a C string in the server). */
    headers h = {0};
    char *p = text;
    const char *body = "";
    size_t body_len = 0;
    for (;;) {
        char *nl = memchr(p, '\n', size - (size_t)(p - text));
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        if (p == nl) {
            body = nl + 1;
            body_len = size - (size_t)(body - text);
            break;
        }
        char *colon = strchr(p, ':');
        if (colon != NULL && h.n < MAX_HEADERS) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ') {
                v++;
            }
            h.name[h.n] = p;
            h.value[h.n] = v;
            h.n++;
        }
        p = nl + 1;
    }

    const char *ct = find(&h, "content-type");
    char mt[128];
    sl__gw_media_type(ct, mt, sizeof mt);
    sl_gw_body_kind kind =
        sl__gw_body_kind(mt, find(&h, "ce-specversion") != NULL);

    uint64_t fp[2] = {0, 0};
    sl__gw_fingerprint(fp, body, body_len);
    sl__gw_fingerprint_headers(each_header, &h, fp);

    if (kind == SL_GW_BODY_BINARY) {
        sl_event *ev = NULL;
        sl_diag diag = {0};
        if (sl__gw_event_from_binary(each_header, &h, ct, (const uint8_t *)body,
                                     body_len, &ev, &diag) == SL_OK) {
            char enc[3 * 256 + 1];
            const char *id = sl_event_id(ev);
            if (id == NULL || id[0] == '\0') {
                abort(); /* binary mode requires ce-id */
            }
            sl__gw_url_encode(id, enc, sizeof enc);
            sl_event_validate(ev, 0, NULL);
            sl_event_unref(ev);
        }
    }
    sl_gw_violation v[4];
    size_t nv = 0;
    sl_diag diag = {0};
    if (sl__gw_validate_text(rules, sizeof rules / sizeof rules[0], body,
                             body_len, v, 4, &nv, &diag) == SL_OK) {
        for (size_t i = 0; i < nv && i < 4; i++) {
            if (v[i].detail[0] == '\0') {
                abort(); /* every violation says what is wrong */
            }
        }
    }
    sl_free(text);
    return 0;
}
