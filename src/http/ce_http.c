#include "http/ce_http.h"

#include "sluice/alloc.h"

#include <stdio.h>
#include <string.h>

#define CE_PREFIX "ce-"
#define CE_PREFIX_LEN 3
/* More ce- headers than attributes and extensions can use is an error. */
#define MAX_CE_HEADERS 48
/* "ce-" + the longest attribute name CloudEvents allows (20) + NUL. */
#define CE_NAME_MAX 24

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

void sl__gw_media_type(const char *content_type, char *out, size_t size)
{
    size_t n = 0;
    if (size == 0) {
        return;
    }
    const char *p = content_type ? content_type : "";
    while (is_space(*p)) {
        p++;
    }
    for (; *p && *p != ';' && n + 1 < size; p++) {
        if (!is_space(*p)) {
            out[n++] = ascii_lower(*p);
        }
    }
    out[n] = '\0';
}

bool sl__gw_media_is_json(const char *media_type)
{
    size_t n = strlen(media_type);
    return strcmp(media_type, "application/json") == 0 ||
           (n > 5 && strcmp(media_type + n - 5, "+json") == 0);
}

sl_gw_body_kind sl__gw_body_kind(const char *media_type,
                                 bool has_ce_specversion)
{
    if (strcmp(media_type, "application/cloudevents+json") == 0) {
        return SL_GW_BODY_STRUCTURED;
    }
    if (strcmp(media_type, "application/cloudevents-batch+json") == 0) {
        return SL_GW_BODY_BATCH;
    }
    if (has_ce_specversion) {
        return SL_GW_BODY_BINARY;
    }
    if (media_type[0] == '\0') {
        return SL_GW_BODY_MISSING;
    }
    /* Other CloudEvents formats (cloudevents+avro, ...) are not JSON. */
    if (strncmp(media_type, "application/cloudevents", 23) != 0 &&
        sl__gw_media_is_json(media_type)) {
        return SL_GW_BODY_JSON;
    }
    return SL_GW_BODY_UNSUPPORTED;
}

/* ---- percent-decoding ------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Valid UTF-8 without overlongs, surrogates or code points past 10FFFF. */
static bool utf8_is_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

/* Decode %XX escapes into a new string. A '%' not followed by two hex
 * digits stays as it is (lenient, as most binding implementations are);
 * %00 and results that are not UTF-8 are refused. */
static sl_status percent_decode(const char *in, char **out)
{
    size_t len = strlen(in);
    char *buf = sl_malloc(len + 1);
    if (buf == NULL) {
        return SL_NOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < len && (hi = hex_value(in[i + 1])) >= 0 &&
            (lo = hex_value(in[i + 2])) >= 0) {
            buf[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            buf[n++] = in[i];
        }
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n) != NULL ||
        !utf8_is_valid((const unsigned char *)buf, n)) {
        sl_free(buf);
        return SL_INVALID;
    }
    *out = buf;
    return SL_OK;
}

/* ---- binary mode ------------------------------------------------------ */

typedef struct binary_ctx {
    sl_event *ev;
    sl_diag *diag;
    sl_status st;
    char seen[MAX_CE_HEADERS][CE_NAME_MAX];
    size_t nseen;
} binary_ctx;

static bool has_ce_prefix(const char *name)
{
    return ascii_lower(name[0]) == 'c' && ascii_lower(name[1]) == 'e' &&
           name[2] == '-';
}

static bool apply_header(const char *name, const char *value, void *ctx)
{
    binary_ctx *bc = ctx;
    if (!has_ce_prefix(name)) {
        return true;
    }
    size_t len = strlen(name);
    if (len >= CE_NAME_MAX || len == CE_PREFIX_LEN) {
        bc->st = sl_diag_set(bc->diag, SL_INVALID,
                             "header '%.64s' does not name a CloudEvents "
                             "attribute",
                             name);
        return false;
    }
    char lower[CE_NAME_MAX];
    for (size_t i = 0; i <= len; i++) {
        lower[i] = ascii_lower(name[i]);
    }
    for (size_t i = 0; i < bc->nseen; i++) {
        if (strcmp(bc->seen[i], lower) == 0) {
            bc->st = sl_diag_set(bc->diag, SL_INVALID,
                                 "header '%s' is given twice", lower);
            return false;
        }
    }
    if (bc->nseen == MAX_CE_HEADERS) {
        bc->st = sl_diag_set(bc->diag, SL_INVALID, "more than %d ce- headers",
                             MAX_CE_HEADERS);
        return false;
    }
    memcpy(bc->seen[bc->nseen++], lower, len + 1);

    char *decoded = NULL;
    sl_status st = percent_decode(value ? value : "", &decoded);
    if (st != SL_OK) {
        bc->st = st == SL_NOMEM
                     ? sl_diag_set(bc->diag, st, "out of memory")
                     : sl_diag_set(bc->diag, st,
                                   "header '%s': the value is not UTF-8 "
                                   "once percent-decoded",
                                   lower);
        return false;
    }
    st = sl_ce_from_header(bc->ev, CE_PREFIX, lower, decoded, bc->diag);
    sl_free(decoded);
    if (st != SL_OK) {
        bc->st = st;
        return false;
    }
    return true;
}

sl_status sl__gw_event_from_binary(sl_gw_header_each each, const void *src,
                                   const char *content_type,
                                   const uint8_t *body, size_t len,
                                   sl_event **out, sl_diag *diag)
{
    static const char *const required[] = {"specversion", "id", "source",
                                           "type"};
    sl_event *ev = NULL;
    binary_ctx *bc = NULL;
    sl_status st = sl_event_create(&ev);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "out of memory");
    }
    /* An event made with sl_event_create already says specversion 1.0;
     * clear it so that a request without ce-specversion is caught. */
    st = sl_event_set(ev, SL_ATTR_SPECVERSION, NULL);
    if (st == SL_OK && (bc = sl_calloc(1, sizeof *bc)) == NULL) {
        st = SL_NOMEM;
    }
    if (st != SL_OK) {
        sl_diag_set(diag, st, "out of memory");
        goto fail;
    }
    bc->ev = ev;
    bc->diag = diag;
    each(src, apply_header, bc);
    st = bc->st;
    if (st != SL_OK) {
        goto fail;
    }
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        sl_attr attr;
        sl_attr_from_name(required[i], &attr);
        const char *v = sl_event_get(ev, attr);
        if (v == NULL || v[0] == '\0') {
            st = sl_diag_set(diag, SL_INVALID, "header 'ce-%s' is required",
                             required[i]);
            goto fail;
        }
    }
    if (content_type != NULL && content_type[0] != '\0' &&
        (st = sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, content_type)) !=
            SL_OK) {
        sl_diag_set(diag, st, "out of memory");
        goto fail;
    }
    if (len > 0 && (st = sl_event_set_data(ev, body, len)) != SL_OK) {
        sl_diag_set(diag, st, "out of memory");
        goto fail;
    }
    sl_free(bc);
    *out = ev;
    return SL_OK;
fail:
    sl_free(bc);
    sl_event_unref(ev);
    return st;
}

/* ---- fingerprints ----------------------------------------------------- */

/* Two independent 64-bit lanes in the style of MurmurHash3's body and
 * finaliser: not cryptographic, but any accidental collision needs both
 * lanes to collide (about 2^-128). A client can only collide with its own
 * idempotency keys, so an adversary gains nothing. */
static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

void sl__gw_fingerprint(uint64_t fp[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h1 = fp[0] ^ 0x9e3779b97f4a7c15ULL;
    uint64_t h2 = fp[1] ^ 0xc2b2ae3d27d4eb4fULL;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t k;
        memcpy(&k, p + i, 8);
        uint64_t k1 =
            rotl64(k * 0x87c37b91114253d5ULL, 31) * 0x4cf5ad432745937fULL;
        uint64_t k2 =
            rotl64(k * 0x4cf5ad432745937fULL, 33) * 0x87c37b91114253d5ULL;
        h1 = rotl64(h1 ^ k1, 27) * 5 + 0x52dce729;
        h2 = rotl64(h2 ^ k2, 31) * 5 + 0x38495ab5;
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < len; k++) {
        tail |= (uint64_t)p[i + k] << (8 * k);
    }
    h1 ^= rotl64(tail * 0x87c37b91114253d5ULL, 31);
    h2 ^= rotl64(tail * 0x4cf5ad432745937fULL, 33);
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 = fmix64(h1 + h2);
    h2 = fmix64(h2 + h1);
    fp[0] = h1;
    fp[1] = h2;
}

static bool fold_header(const char *name, const char *value, void *ctx)
{
    uint64_t *acc = ctx;
    if (!has_ce_prefix(name)) {
        return true;
    }
    char lower[CE_NAME_MAX];
    size_t len = strlen(name);
    if (len >= CE_NAME_MAX) {
        len = CE_NAME_MAX - 1;
    }
    for (size_t i = 0; i < len; i++) {
        lower[i] = ascii_lower(name[i]);
    }
    lower[len] = '\0';
    if (strcmp(lower, "ce-traceparent") == 0 ||
        strcmp(lower, "ce-tracestate") == 0) {
        return true;
    }
    uint64_t h[2] = {0, 0};
    sl__gw_fingerprint(h, lower, len); /* names are case-insensitive */
    sl__gw_fingerprint(h, value ? value : "", value ? strlen(value) : 0);
    /* Addition is commutative: the order of the headers does not count. */
    acc[0] += h[0];
    acc[1] += h[1];
    return true;
}

void sl__gw_fingerprint_headers(sl_gw_header_each each, const void *src,
                                uint64_t fp[2])
{
    uint64_t acc[2] = {0, 0};
    each(src, fold_header, acc);
    sl__gw_fingerprint(fp, acc, sizeof acc);
}

bool sl__gw_url_encode(const char *in, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
                    *p == '_' || *p == '~';
        size_t need = keep ? 1 : 3;
        if (n + need >= size) {
            return false;
        }
        if (keep) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (size == 0) {
        return false;
    }
    out[n] = '\0';
    return true;
}
