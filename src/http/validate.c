#include "http/validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Longest rule name and deepest path; names are written into violations
 * and error messages, so both stay small. */
#define FIELD_NAME_MAX 127
#define PATH_DEPTH_MAX 16

static const struct {
    sl_json_type type;
    const char *name;
    const char *article; /* for messages: "an integer" */
} types[] = {
    {SL_JSON_ANY, "any", "a value"},
    {SL_JSON_STRING, "string", "a string"},
    {SL_JSON_INTEGER, "integer", "an integer"},
    {SL_JSON_NUMBER, "number", "a number"},
    {SL_JSON_BOOLEAN, "boolean", "a boolean"},
    {SL_JSON_OBJECT, "object", "an object"},
    {SL_JSON_ARRAY, "array", "an array"},
};

#define NTYPES (sizeof types / sizeof types[0])

const char *sl_json_type_name(sl_json_type type)
{
    return (size_t)type < NTYPES ? types[type].name : "unknown";
}

static const char *type_article(sl_json_type type)
{
    return (size_t)type < NTYPES ? types[type].article : "a value";
}

sl_status sl_json_type_from_name(const char *name, sl_json_type *out)
{
    if (name == NULL || out == NULL) {
        return SL_NOT_FOUND;
    }
    for (size_t i = 0; i < NTYPES; i++) {
        if (strcmp(types[i].name, name) == 0) {
            *out = types[i].type;
            return SL_OK;
        }
    }
    return SL_NOT_FOUND;
}

static bool is_numeric(sl_json_type t)
{
    return t == SL_JSON_INTEGER || t == SL_JSON_NUMBER;
}

static bool has_length(sl_json_type t)
{
    return t == SL_JSON_STRING || t == SL_JSON_ARRAY;
}

/* A name is one or more dot-separated segments, none empty. */
static bool name_is_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > FIELD_NAME_MAX || name[0] == '.' ||
        name[len - 1] == '.' || strstr(name, "..") != NULL) {
        return false;
    }
    size_t depth = 1;
    for (const char *p = name; *p; p++) {
        depth += *p == '.';
    }
    return depth <= PATH_DEPTH_MAX;
}

sl_status sl__gw_fields_check(const sl_gateway_field *fields, size_t n,
                              sl_diag *diag)
{
    if (n > 0 && fields == NULL) {
        return sl_diag_set(diag, SL_CONFIG, "%zu fields but no rules", n);
    }
    for (size_t i = 0; i < n; i++) {
        const sl_gateway_field *f = &fields[i];
        const char *nm = f->name ? f->name : "";
        if (!name_is_valid(f->name)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "field '%s': a name is one or more "
                               "dot-separated members, at most %d "
                               "characters",
                               nm, FIELD_NAME_MAX);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(fields[j].name, f->name) == 0) {
                return sl_diag_set(diag, SL_CONFIG, "field '%s' has two rules",
                                   nm);
            }
        }
        if ((size_t)f->type >= NTYPES) {
            return sl_diag_set(diag, SL_CONFIG, "field '%s': unknown type", nm);
        }
        if ((f->has_min || f->has_max) && !is_numeric(f->type)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "field '%s': min/max need type integer or "
                               "number",
                               nm);
        }
        if ((f->has_min && !isfinite(f->min)) ||
            (f->has_max && !isfinite(f->max))) {
            return sl_diag_set(diag, SL_CONFIG,
                               "field '%s': min/max must be finite", nm);
        }
        if (f->has_min && f->has_max && f->min > f->max) {
            return sl_diag_set(diag, SL_CONFIG, "field '%s': min > max", nm);
        }
        if ((f->min_length > 0 || f->max_length > 0) && !has_length(f->type)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "field '%s': min_length/max_length need type "
                               "string or array",
                               nm);
        }
        if (f->max_length > 0 && f->min_length > f->max_length) {
            return sl_diag_set(diag, SL_CONFIG,
                               "field '%s': min_length > max_length", nm);
        }
        if (f->nenum > 0) {
            if (f->type != SL_JSON_STRING) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "field '%s': enum needs type string", nm);
            }
            if (f->enum_values == NULL) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "field '%s': enum without values", nm);
            }
            for (size_t k = 0; k < f->nenum; k++) {
                if (f->enum_values[k] == NULL) {
                    return sl_diag_set(diag, SL_CONFIG,
                                       "field '%s': enum value %zu is null", nm,
                                       k);
                }
            }
        }
    }
    return SL_OK;
}

/* Collects violations: counts all, keeps the first cap. */
typedef struct collector {
    sl_gw_violation *out;
    size_t cap;
    size_t n;
} collector;

static void violate(collector *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void violate(collector *c, const char *field, const char *fmt, ...)
{
    if (c->n < c->cap) {
        sl_gw_violation *v = &c->out[c->n];
        snprintf(v->field, sizeof v->field, "%s", field);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->detail, sizeof v->detail, fmt, ap);
        va_end(ap);
    }
    c->n++;
}

/* A bound as a person writes it: "1", "0.5", "1e+20". */
static void format_number(double x, char buf[32])
{
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, 32, "%.0f", x);
    } else {
        snprintf(buf, 32, "%.15g", x);
    }
}

/* Characters of a UTF-8 string (jansson guarantees valid UTF-8). */
static uint64_t utf8_length(const char *s, size_t bytes)
{
    uint64_t n = 0;
    for (size_t i = 0; i < bytes; i++) {
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    }
    return n;
}

/* Walk a dotted path. Returns the value, or NULL when a member along the
 * way is absent or null; *blocked names the prefix that is not an object
 * (then NULL is returned too). */
static const json_t *lookup(const json_t *root, const char *path,
                            char blocked[FIELD_NAME_MAX + 1])
{
    const json_t *cur = root;
    const char *seg = path;
    blocked[0] = '\0';
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(cur)) {
            size_t plen = (size_t)(seg - path) - 1;
            snprintf(blocked, FIELD_NAME_MAX + 1, "%.*s", (int)plen, path);
            return NULL;
        }
        cur = json_object_getn(cur, seg, len);
        if (cur == NULL || json_is_null(cur) || dot == NULL) {
            return json_is_null(cur) ? NULL : cur;
        }
        seg = dot + 1;
    }
}

static bool type_matches(sl_json_type type, const json_t *v)
{
    switch (type) {
    case SL_JSON_ANY:
        return true;
    case SL_JSON_STRING:
        return json_is_string(v);
    case SL_JSON_INTEGER:
        return json_is_integer(v);
    case SL_JSON_NUMBER:
        return json_is_number(v);
    case SL_JSON_BOOLEAN:
        return json_is_boolean(v);
    case SL_JSON_OBJECT:
        return json_is_object(v);
    case SL_JSON_ARRAY:
        return json_is_array(v);
    }
    return false;
}

static void check_enum(collector *c, const sl_gateway_field *f, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    for (size_t k = 0; k < f->nenum; k++) {
        if (strlen(f->enum_values[k]) == len &&
            memcmp(f->enum_values[k], s, len) == 0) {
            return;
        }
    }
    /* List the values while they fit, keeping room for ", ..." */
    char list[192];
    size_t used = 0;
    list[0] = '\0';
    for (size_t k = 0; k < f->nenum; k++) {
        size_t room = sizeof list - used - 6;
        int w = snprintf(list + used, room, "%s\"%s\"", k ? ", " : "",
                         f->enum_values[k]);
        if (w < 0 || (size_t)w >= room) {
            memcpy(list + used, ", ...", 6);
            break;
        }
        used += (size_t)w;
    }
    violate(c, f->name, "`%s` must be one of %s", f->name, list);
}

static void check_field(collector *c, const sl_gateway_field *f,
                        const json_t *root)
{
    char blocked[FIELD_NAME_MAX + 1];
    const json_t *v = lookup(root, f->name, blocked);
    if (blocked[0] != '\0') {
        violate(c, f->name, "`%s` must be an object (for `%s`)", blocked,
                f->name);
        return;
    }
    if (v == NULL) {
        if (f->required) {
            violate(c, f->name, "`%s` is required", f->name);
        }
        return;
    }
    const char *what = type_article(f->type);
    if (!type_matches(f->type, v)) {
        violate(c, f->name, "`%s` must be %s", f->name, what);
        return;
    }
    char bound[32];
    if (is_numeric(f->type)) {
        double x = json_number_value(v);
        if (f->has_min && x < f->min) {
            format_number(f->min, bound);
            violate(c, f->name, "`%s` must be %s >= %s", f->name, what, bound);
        } else if (f->has_max && x > f->max) {
            format_number(f->max, bound);
            violate(c, f->name, "`%s` must be %s <= %s", f->name, what, bound);
        }
        return;
    }
    if (has_length(f->type)) {
        bool str = f->type == SL_JSON_STRING;
        uint64_t len =
            str ? utf8_length(json_string_value(v), json_string_length(v))
                : (uint64_t)json_array_size(v);
        const char *unit = str ? "characters" : "items";
        if (f->min_length > 0 && len < f->min_length) {
            violate(c, f->name, "`%s` must be %s of at least %llu %s", f->name,
                    what, (unsigned long long)f->min_length, unit);
            return;
        }
        if (f->max_length > 0 && len > f->max_length) {
            violate(c, f->name, "`%s` must be %s of at most %llu %s", f->name,
                    what, (unsigned long long)f->max_length, unit);
            return;
        }
    }
    if (f->nenum > 0) {
        check_enum(c, f, v);
    }
}

size_t sl__gw_validate(const sl_gateway_field *fields, size_t n,
                       const json_t *root, sl_gw_violation *out, size_t cap)
{
    collector c = {out, out ? cap : 0, 0};
    if (n == 0) {
        return 0;
    }
    if (!json_is_object(root)) {
        violate(&c, "", "the body must be a JSON object");
        return c.n;
    }
    for (size_t i = 0; i < n; i++) {
        check_field(&c, &fields[i], root);
    }
    return c.n;
}

sl_status sl__gw_validate_text(const sl_gateway_field *fields, size_t n,
                               const void *data, size_t len,
                               sl_gw_violation *out, size_t cap, size_t *nv,
                               sl_diag *diag)
{
    json_error_t err;
    json_t *root = json_loadb(data ? data : "", len,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "%s at line %d, column %d (byte %d)", err.text,
                           err.line, err.column, err.position);
    }
    *nv = sl__gw_validate(fields, n, root, out, cap);
    json_decref(root);
    return SL_OK;
}
