/* Engine URL parameters, described by a table and parsed in one place. */
#include "engine/url_params.h"

#include "core/suggest.h"
#include "sluice/alloc.h"
#include "sluice/duration.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decode @p len bytes at @p s into @p out (room for len + 1).
 * False for a '%' without two hex digits after it, or one that decodes to
 * NUL (it would cut the value short without a word). */
static bool percent_decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len) {
            return false;
        }
        int hi = hex_digit(s[i + 1]);
        int lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return false;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return true;
}

static const char *param_name_at(const void *items, size_t i)
{
    return ((const sl_url_param *)items)[i].name;
}

/* Largest value a field of @p size bytes holds. */
static uint64_t field_max(size_t size)
{
    return size >= sizeof(uint64_t) ? UINT64_MAX
                                    : (UINT64_C(1) << (size * 8)) - 1;
}

static void store_uint(void *field, size_t size, uint64_t v)
{
    switch (size) {
    case 1: {
        uint8_t x = (uint8_t)v;
        memcpy(field, &x, 1);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(field, &x, 2);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, 4);
        break;
    }
    default:
        memcpy(field, &v, sizeof v);
        break;
    }
}

/* "full, normal or off" into @p buf. */
static void list_names(const char *const *names, size_t n, char *buf,
                       size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + o, size - o, "%s%s", sep, names[i]);
        if (w < 0) {
            return;
        }
        o += (size_t)w;
    }
}

static void list_enum(const sl_url_enum *values, char *buf, size_t size)
{
    const char *names[SL_URL_PARAMS_MAX] = {0};
    size_t n = 0;
    for (; values != NULL && values[n].name != NULL && n < SL_URL_PARAMS_MAX;
         n++) {
        names[n] = values[n].name;
    }
    list_names(names, n, buf, size);
}

static void list_params(const sl_url_param *params, size_t n, char *buf,
                        size_t size)
{
    const char *names[SL_URL_PARAMS_MAX] = {0};
    for (size_t i = 0; i < n; i++) {
        names[i] = params[i].name;
    }
    list_names(names, n, buf, size);
}

/* "name=value", or "name" alone for a secret, for messages. */
static const char *shown(const sl_url_param *p, const char *val, char *buf,
                         size_t size)
{
    if (p->secret) {
        return p->name;
    }
    snprintf(buf, size, "%s=%s", p->name, val);
    return buf;
}

static sl_status bad_value(const sl_url_param *p, const char *val,
                           const char *context, const char *expected,
                           sl_diag *diag)
{
    char what[160];
    return sl_diag_set(diag, SL_INVALID, "%s: %s: expected %s", context,
                       shown(p, val, what, sizeof what), expected);
}

static bool parse_bool(const char *val, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(val, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(val, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* A whole decimal number, digits only (no sign, no blanks). */
static bool parse_uint(const char *val, uint64_t *out)
{
    uint64_t v = 0;
    if (val[0] == '\0') {
        return false;
    }
    for (const char *c = val; *c != '\0'; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
        unsigned d = (unsigned)(*c - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Check @p val against @p p's kind into @p v. */
static sl_status check_value(const sl_url_param *p, const char *val,
                             bool has_value, const char *context,
                             sl_url_value *v, sl_diag *diag)
{
    char expected[256];
    uint64_t max = p->max;
    if (p->set == NULL && p->kind != SL_URL_PARAM_STRING &&
        p->kind != SL_URL_PARAM_BOOL && p->kind != SL_URL_PARAM_ENUM &&
        field_max(p->size) < max) {
        max = field_max(p->size);
    }
    switch (p->kind) {
    case SL_URL_PARAM_UINT:
        if (!parse_uint(val, &v->u) || v->u < p->min || v->u > max) {
            snprintf(expected, sizeof expected,
                     "a whole number from %" PRIu64 " to %" PRIu64, p->min,
                     max);
            return bad_value(p, val, context, expected, diag);
        }
        return SL_OK;
    case SL_URL_PARAM_DURATION:
        if (sl_duration_parse_ms(val, &v->u) != SL_OK || v->u < p->min ||
            v->u > max) {
            snprintf(expected, sizeof expected,
                     "a duration from %" PRIu64 "ms to %" PRIu64
                     "ms (like 250ms, 5s or 2m)",
                     p->min, max);
            return bad_value(p, val, context, expected, diag);
        }
        return SL_OK;
    case SL_URL_PARAM_BOOL:
        if (!has_value) {
            v->b = true;
            return SL_OK;
        }
        if (!parse_bool(val, &v->b)) {
            return bad_value(p, val, context,
                             "true or false (or 1/0, yes/no, on/off)", diag);
        }
        return SL_OK;
    case SL_URL_PARAM_ENUM:
        for (const sl_url_enum *e = p->values; e && e->name; e++) {
            if (strcmp(val, e->name) == 0) {
                v->e = e->value;
                return SL_OK;
            }
        }
        list_enum(p->values, expected, sizeof expected);
        return bad_value(p, val, context, expected, diag);
    case SL_URL_PARAM_STRING:
        if (p->not_empty && val[0] == '\0') {
            return sl_diag_set(diag, SL_INVALID, "%s: %s needs a value",
                               context, p->name);
        }
        v->s = val;
        return SL_OK;
    }
    return sl_diag_set(diag, SL_INTERNAL, "%s: %s: unknown parameter kind",
                       context, p->name);
}

static sl_status apply(const sl_url_param *p, const sl_url_value *v, void *dst,
                       sl_diag *diag)
{
    if (p->set != NULL) {
        return p->set(dst, p, v, diag);
    }
    char *field = (char *)dst + p->offset;
    switch (p->kind) {
    case SL_URL_PARAM_UINT:
    case SL_URL_PARAM_DURATION:
        store_uint(field, p->size, v->u);
        break;
    case SL_URL_PARAM_BOOL:
        memcpy(field, &v->b, sizeof v->b);
        break;
    case SL_URL_PARAM_ENUM:
        store_uint(field, p->size, (uint64_t)(int64_t)v->e);
        break;
    case SL_URL_PARAM_STRING: {
        char *copy = sl_strdup(v->s);
        if (copy == NULL) {
            return SL_NOMEM;
        }
        char *old = NULL;
        memcpy(&old, field, sizeof old);
        sl_free(old);
        memcpy(field, &copy, sizeof copy);
        break;
    }
    }
    return SL_OK;
}

/* One "name[=value]" of @p len bytes at @p pair. */
static sl_status parse_pair(const sl_url_param *params, size_t n,
                            const char *pair, size_t len, void *dst,
                            const char *context, uint64_t *seen, sl_diag *diag)
{
    const char *eq = memchr(pair, '=', len);
    size_t name_len = eq ? (size_t)(eq - pair) : len;
    char *buf = sl_malloc(len + 2);
    if (buf == NULL) {
        return SL_NOMEM;
    }
    char *name = buf;
    char *val = buf + name_len + 1;
    sl_status st = SL_OK;
    if (!percent_decode(pair, name_len, name) ||
        (eq != NULL && !percent_decode(eq + 1, len - name_len - 1, val))) {
        st = sl_diag_set(diag, SL_INVALID,
                         "%s: bad percent-encoding in parameter '%.*s' "
                         "(expected %%XX with two hex digits, not %%00)",
                         context, (int)(name_len > 64 ? 64 : name_len), pair);
        goto done;
    }
    if (eq == NULL) {
        val[0] = '\0';
    }
    size_t i = 0;
    while (i < n && strcmp(params[i].name, name) != 0) {
        i++;
    }
    if (i == n) {
        const char *hint = sl__closest_name(name, params, n, param_name_at);
        char known[256];
        list_params(params, n, known, sizeof known);
        if (hint != NULL) {
            st = sl_diag_set(diag, SL_INVALID,
                             "%s: unknown parameter '%.64s' (did you mean "
                             "'%s'?)",
                             context, name, hint);
        } else if (n == 0) {
            st = sl_diag_set(diag, SL_INVALID,
                             "%s: unknown parameter '%.64s' (this engine "
                             "takes none)",
                             context, name);
        } else {
            st = sl_diag_set(diag, SL_INVALID,
                             "%s: unknown parameter '%.64s' (expected %s)",
                             context, name, known);
        }
        goto done;
    }
    const sl_url_param *p = &params[i];
    if (*seen & (UINT64_C(1) << i)) {
        st = sl_diag_set(diag, SL_INVALID, "%s: parameter '%s' given twice",
                         context, p->name);
        goto done;
    }
    *seen |= UINT64_C(1) << i;
    if (eq == NULL && p->kind != SL_URL_PARAM_BOOL) {
        st = sl_diag_set(diag, SL_INVALID,
                         "%s: parameter '%s' needs a value "
                         "(%s=...)",
                         context, p->name, p->name);
        goto done;
    }
    sl_url_value v = {0};
    if ((st = check_value(p, val, eq != NULL, context, &v, diag)) == SL_OK) {
        st = apply(p, &v, dst, diag);
    }
done:
    sl_free(buf);
    return st;
}

sl_status sl__url_params_parse(const sl_url_param *params, size_t n,
                               const char *query, void *dst,
                               const char *context, sl_diag *diag)
{
    if (context == NULL) {
        context = "engine URL";
    }
    if (n > SL_URL_PARAMS_MAX) {
        return sl_diag_set(diag, SL_INTERNAL,
                           "%s: more than %d parameters in the table", context,
                           SL_URL_PARAMS_MAX);
    }
    uint64_t seen = 0;
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            sl_status st =
                parse_pair(params, n, p, len, dst, context, &seen, diag);
            if (st != SL_OK) {
                return st;
            }
        }
        p = amp ? amp + 1 : p + len;
    }
    return SL_OK;
}
