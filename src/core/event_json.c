/* sluice — CloudEvents structured mode (JSON event format 1.0) via jansson.
 *
 * Data is written as a JSON value ("data") when the content type is JSON (or
 * absent) and the bytes parse as JSON, and as base64 ("data_base64")
 * otherwise. JSON data is spliced into the output verbatim, so a payload's
 * bytes survive to_json unchanged; from_json re-serialises a JSON "data"
 * value compactly, because jansson does not expose the input's bytes.
 */
#include "sluice/event.h"

#include "sluice/alloc.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- base64 (RFC 4648, standard alphabet, padded) ------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static void b64_encode(const uint8_t *src, size_t n, char *dst)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v =
            (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *dst++ = b64_alphabet[v >> 18];
        *dst++ = b64_alphabet[(v >> 12) & 63];
        *dst++ = b64_alphabet[(v >> 6) & 63];
        *dst++ = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)src[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)src[i + 1] << 8;
        }
        *dst++ = b64_alphabet[v >> 18];
        *dst++ = b64_alphabet[(v >> 12) & 63];
        *dst++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *dst++ = '=';
    }
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Decode into @p dst (room for n / 4 * 3 + 3 bytes). Padding is optional,
 * but where present it must be at the end; whitespace is not allowed. */
static bool b64_decode(const char *src, size_t n, uint8_t *dst, size_t *out)
{
    size_t pad = 0;
    while (pad < 2 && n > pad && src[n - 1 - pad] == '=') {
        pad++;
    }
    if (pad > 0 && n % 4 != 0) {
        return false;
    }
    n -= pad;
    if (n % 4 == 1) {
        return false; /* one leftover character carries under 8 bits */
    }

    size_t len = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(src[i]);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[len++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = len;
    return true;
}

/* ---- helpers ------------------------------------------------------------- */

/* "application/json", "text/json", "application/cloudevents+json"; the
 * parameters after ';' do not matter, and media types are case-insensitive. */
static bool is_json_type(const char *ct)
{
    const char *end = strchr(ct, ';');
    size_t n = end != NULL ? (size_t)(end - ct) : strlen(ct);
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    const char *slash = memchr(ct, '/', n);
    if (slash == NULL) {
        return false;
    }
    const char *sub = slash + 1;
    size_t sub_n = n - (size_t)(sub - ct);
    static const char json[] = "json";
    if (sub_n < 4) {
        return false;
    }
    for (size_t i = 0; i < 4; i++) {
        char c = sub[sub_n - 4 + i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != json[i]) {
            return false;
        }
    }
    return sub_n == 4 || sub[sub_n - 5] == '+';
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF): jansson
 * refuses anything else, and we want to say so rather than blame memory. */
static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < k) {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) {
                return false;
            }
            c = (c << 6) | (p[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
            return false;
        }
        i += k + 1;
    }
    return true;
}

static sl_status put_string(json_t *obj, const char *key, const char *value)
{
    size_t n = strlen(value);
    if (!utf8_valid(value, n)) {
        return SL_INVALID;
    }
    json_t *s = json_stringn(value, n);
    if (s == NULL || json_object_set_new(obj, key, s) != 0) {
        return SL_NOMEM; /* set_new releases s on failure */
    }
    return SL_OK;
}

static sl_status build_object(const sl_event *ev, json_t *obj)
{
    sl_status st;

    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        const char *v = sl_event_get(ev, (sl_attr)i);
        if (v != NULL &&
            (st = put_string(obj, sl_attr_name((sl_attr)i), v)) != SL_OK) {
            return st;
        }
    }
    uint64_t time_ms = sl_event_time_ms(ev);
    if (time_ms != 0) {
        char buf[32];
        sl_time_format_rfc3339(time_ms, buf);
        if ((st = put_string(obj, "time", buf)) != SL_OK) {
            return st;
        }
    }
    /* deadline is an Integer attribute, so a JSON number; beyond int64 it
     * can only be text. */
    uint64_t deadline_ms = sl_event_deadline_ms(ev);
    if (deadline_ms != 0) {
        json_t *d;
        if (deadline_ms <= INT64_MAX) {
            d = json_integer((json_int_t)deadline_ms);
        } else {
            char buf[24];
            snprintf(buf, sizeof buf, "%" PRIu64, deadline_ms);
            d = json_string(buf);
        }
        if (d == NULL || json_object_set_new(obj, "deadline", d) != 0) {
            return SL_NOMEM;
        }
    }
    size_t n_ext = sl_event_ext_count(ev);
    for (size_t i = 0; i < n_ext; i++) {
        const char *name;
        const char *value;
        sl_event_ext_at(ev, i, &name, &value);
        if ((st = put_string(obj, name, value)) != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

static bool data_is_json(const sl_event *ev, const void *data, size_t len)
{
    const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    if (ct != NULL && !is_json_type(ct)) {
        return false;
    }
    json_error_t err;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY, &err);
    if (v == NULL) {
        return false;
    }
    json_decref(v);
    return true;
}

sl_status sl_event_to_json(const sl_event *ev, char **out)
{
    static const char json_key[] = "\"data\":";
    static const char b64_key[] = "\"data_base64\":\"";
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    json_t *obj = NULL;
    char *buf = NULL;
    size_t data_len;
    sl_status st;

    if (ev == NULL || out == NULL) {
        return SL_INVALID;
    }
    obj = json_object();
    if (obj == NULL) {
        return SL_NOMEM;
    }
    if ((st = build_object(ev, obj)) != SL_OK) {
        goto cleanup_obj;
    }

    /* The data member is spliced in after jansson has written the envelope:
     * JSON data goes in verbatim (it parsed as one value), and base64 needs
     * no escaping, so neither is worth a trip through jansson's escaper. */
    const uint8_t *data = sl_event_data(ev, &data_len);
    bool as_json = data_len > 0 && data_is_json(ev, data, data_len);
    size_t extra = 0;
    if (as_json) {
        extra = 1 + sizeof json_key - 1 + data_len;
    } else if (data_len > 0) {
        extra = 1 + sizeof b64_key - 1 + b64_encoded_len(data_len) + 1;
    }

    /* Dump straight into an sl_malloc buffer, so that the caller frees it
     * with sl_free whatever allocator jansson uses. */
    size_t n = json_dumpb(obj, NULL, 0, flags);
    if (n < 2) {
        st = SL_NOMEM;
        goto cleanup_obj;
    }
    buf = sl_malloc(n + extra + 1);
    if (buf == NULL) {
        st = SL_NOMEM;
        goto cleanup_obj;
    }
    if (json_dumpb(obj, buf, n, flags) != n) {
        st = SL_INTERNAL;
        goto cleanup_buf;
    }
    char *p = buf + n;
    if (data_len > 0) {
        /* Reopen the object: overwrite its closing brace, with a comma
         * unless the envelope was empty ("{}"). */
        p = buf + n - 1;
        if (n > 2) {
            *p++ = ',';
        }
        if (as_json) {
            memcpy(p, json_key, sizeof json_key - 1);
            p += sizeof json_key - 1;
            memcpy(p, data, data_len);
            p += data_len;
        } else {
            memcpy(p, b64_key, sizeof b64_key - 1);
            p += sizeof b64_key - 1;
            b64_encode(data, data_len, p);
            p += b64_encoded_len(data_len);
            *p++ = '"';
        }
        *p++ = '}';
    }
    *p = '\0';
    *out = buf;
    buf = NULL;
    st = SL_OK;

cleanup_buf:
    sl_free(buf);
cleanup_obj:
    json_decref(obj);
    return st;
}

/* ---- from JSON ----------------------------------------------------------- */

/* The text of a scalar member: strings as they are, numbers and booleans as
 * their JSON text. Sets *text to NULL for null. */
static sl_status scalar_text(const json_t *v, char *buf, size_t size,
                             const char **text)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        /* A NUL inside cannot be stored in a C-string attribute. */
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            return SL_INVALID;
        }
        *text = json_string_value(v);
        return SL_OK;
    case JSON_INTEGER:
    case JSON_REAL: {
        size_t n = json_dumpb(v, buf, size - 1, JSON_ENCODE_ANY);
        if (n == 0 || n >= size) {
            return SL_INVALID;
        }
        buf[n] = '\0';
        *text = buf;
        return SL_OK;
    }
    case JSON_TRUE:
        *text = "true";
        return SL_OK;
    case JSON_FALSE:
        *text = "false";
        return SL_OK;
    case JSON_NULL:
        *text = NULL;
        return SL_OK;
    default:
        return SL_INVALID;
    }
}

static sl_status apply_member(sl_event *ev, const char *key, const json_t *v,
                              sl_diag *diag)
{
    char numbuf[64];
    const char *text;
    sl_status st;

    if (strcmp(key, "deadline") == 0 && json_is_integer(v)) {
        json_int_t d = json_integer_value(v);
        if (d < 0) {
            return sl_diag_set(diag, SL_INVALID, "negative deadline");
        }
        return sl_event_set_deadline_ms(ev, (uint64_t)d);
    }
    /* The format spells context attributes (and time) as JSON strings;
     * only extensions may carry numbers or booleans. */
    sl_attr attr;
    if ((strcmp(key, "time") == 0 || sl_attr_from_name(key, &attr) == SL_OK) &&
        !json_is_string(v) && !json_is_null(v)) {
        return sl_diag_set(diag, SL_INVALID, "member '%s' must be a string",
                           key);
    }
    if (scalar_text(v, numbuf, sizeof numbuf, &text) != SL_OK) {
        return sl_diag_set(diag, SL_INVALID,
                           "member '%s' must be a string, number or boolean",
                           key);
    }
    if (text == NULL) {
        if (strcmp(key, "specversion") == 0) {
            return sl_diag_set(diag, SL_INVALID, "specversion is null");
        }
        return SL_OK; /* null: the attribute is absent */
    }
    if (strcmp(key, "specversion") == 0 && strcmp(text, "1.0") != 0) {
        return sl_diag_set(diag, SL_INVALID, "specversion '%s' is not 1.0",
                           text);
    }
    st = sl_event_set_ext(ev, key, text);
    switch (st) {
    case SL_OK:
        return SL_OK;
    case SL_FULL:
        return sl_diag_set(diag, st, "more than %d extensions",
                           SL_EVENT_MAX_EXTENSIONS);
    case SL_INVALID:
        return sl_diag_set(diag, st, "member '%s': bad name or value", key);
    default:
        return sl_diag_set(diag, st, "member '%s': %s", key, sl_status_str(st));
    }
}

static sl_status apply_data(sl_event *ev, const json_t *data,
                            const json_t *data_b64, sl_diag *diag)
{
    sl_status st;

    if (data != NULL && data_b64 != NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "both data and data_base64 are present");
    }
    if (data_b64 != NULL) {
        if (!json_is_string(data_b64)) {
            return sl_diag_set(diag, SL_INVALID,
                               "data_base64 must be a string");
        }
        const char *s = json_string_value(data_b64);
        size_t n = json_string_length(data_b64);
        uint8_t *bytes = sl_malloc(n / 4 * 3 + 3);
        size_t len;
        if (bytes == NULL) {
            return sl_diag_set(diag, SL_NOMEM, "out of memory");
        }
        if (!b64_decode(s, n, bytes, &len)) {
            sl_free(bytes);
            return sl_diag_set(diag, SL_INVALID, "data_base64 is not base64");
        }
        st = sl_event_set_data(ev, bytes, len);
        sl_free(bytes);
        return st;
    }
    if (data == NULL || json_is_null(data)) {
        return SL_OK;
    }
    /* A string under a non-JSON content type is the payload itself (text);
     * anything else is a JSON value whose text is the payload. */
    const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    if (json_is_string(data) && ct != NULL && !is_json_type(ct)) {
        return sl_event_set_data(ev, json_string_value(data),
                                 json_string_length(data));
    }
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER;
    size_t n = json_dumpb(data, NULL, 0, flags);
    if (n == 0) {
        return sl_diag_set(diag, SL_NOMEM, "cannot serialise data");
    }
    char *text = sl_malloc(n);
    if (text == NULL) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    json_dumpb(data, text, n, flags);
    st = sl_event_set_data(ev, text, n);
    sl_free(text);
    return st;
}

sl_status sl_event_from_json(const char *json, size_t len, sl_event **out,
                             sl_diag *diag)
{
    json_error_t err;
    json_t *root = NULL;
    sl_event *ev = NULL;
    const json_t *data = NULL;
    const json_t *data_b64 = NULL;
    bool has_specversion = false;
    sl_status st;

    if (json == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "NULL argument");
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        return sl_diag_set(diag, SL_INVALID, "JSON: %s at line %d column %d",
                           err.text, err.line, err.column);
    }
    if (!json_is_object(root)) {
        st = sl_diag_set(diag, SL_INVALID, "not a JSON object");
        goto cleanup_root;
    }
    if ((st = sl_event_create(&ev)) != SL_OK) {
        sl_diag_set(diag, st, "out of memory");
        goto cleanup_root;
    }

    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(root, key, key_len, v)
    {
        if (strlen(key) != key_len) {
            st = sl_diag_set(diag, SL_INVALID, "NUL in a member name");
            goto cleanup_event;
        }
        if (strcmp(key, "data") == 0) {
            data = v;
        } else if (strcmp(key, "data_base64") == 0) {
            data_b64 = v;
        } else {
            has_specversion |= strcmp(key, "specversion") == 0;
            if ((st = apply_member(ev, key, v, diag)) != SL_OK) {
                goto cleanup_event;
            }
        }
    }
    if (!has_specversion) {
        st = sl_diag_set(diag, SL_INVALID, "specversion is missing");
        goto cleanup_event;
    }
    /* After the loop: how "data" reads depends on datacontenttype, which
     * may come later in the object. */
    if ((st = apply_data(ev, data, data_b64, diag)) != SL_OK) {
        goto cleanup_event;
    }
    *out = ev;
    ev = NULL;

cleanup_event:
    sl_event_unref(ev);
cleanup_root:
    json_decref(root);
    return st;
}
