#include "http/validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
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

/* A member's value as the rules see it, from either parser below. */
typedef enum val_kind {
    VAL_ABSENT, /* absent or null: the same to the rules */
    VAL_STRING,
    VAL_INTEGER,
    VAL_REAL,
    VAL_BOOLEAN,
    VAL_OBJECT,
    VAL_ARRAY,
} val_kind;

typedef struct val {
    val_kind kind;
    double num;      /* integers and reals */
    uint64_t length; /* characters of a string, items of an array */
    const char *str; /* a string's bytes (not NUL-terminated) */
    size_t str_len;
} val;

static val val_of_json(const json_t *v)
{
    val out = {VAL_ABSENT, 0, 0, NULL, 0};
    if (v == NULL || json_is_null(v)) {
        return out;
    }
    if (json_is_string(v)) {
        out.kind = VAL_STRING;
        out.str = json_string_value(v);
        out.str_len = json_string_length(v);
        out.length = utf8_length(out.str, out.str_len);
    } else if (json_is_integer(v) || json_is_real(v)) {
        out.kind = json_is_integer(v) ? VAL_INTEGER : VAL_REAL;
        out.num = json_number_value(v);
    } else if (json_is_boolean(v)) {
        out.kind = VAL_BOOLEAN;
    } else if (json_is_object(v)) {
        out.kind = VAL_OBJECT;
    } else {
        out.kind = VAL_ARRAY;
        out.length = (uint64_t)json_array_size(v);
    }
    return out;
}

static bool type_matches(sl_json_type type, const val *v)
{
    switch (type) {
    case SL_JSON_ANY:
        return true;
    case SL_JSON_STRING:
        return v->kind == VAL_STRING;
    case SL_JSON_INTEGER:
        return v->kind == VAL_INTEGER;
    case SL_JSON_NUMBER:
        return v->kind == VAL_INTEGER || v->kind == VAL_REAL;
    case SL_JSON_BOOLEAN:
        return v->kind == VAL_BOOLEAN;
    case SL_JSON_OBJECT:
        return v->kind == VAL_OBJECT;
    case SL_JSON_ARRAY:
        return v->kind == VAL_ARRAY;
    }
    return false;
}

static void check_enum(collector *c, const sl_gateway_field *f, const val *v)
{
    for (size_t k = 0; k < f->nenum; k++) {
        if (strlen(f->enum_values[k]) == v->str_len &&
            memcmp(f->enum_values[k], v->str, v->str_len) == 0) {
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

/* Check one rule against the member's value; @p blocked names the prefix
 * of a dotted name that is not an object ("" when none). */
static void check_field(collector *c, const sl_gateway_field *f,
                        const char *blocked, const val *v)
{
    if (blocked[0] != '\0') {
        violate(c, f->name, "`%s` must be an object (for `%s`)", blocked,
                f->name);
        return;
    }
    if (v->kind == VAL_ABSENT) {
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
        double x = v->num;
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
        const char *unit = str ? "characters" : "items";
        if (f->min_length > 0 && v->length < f->min_length) {
            violate(c, f->name, "`%s` must be %s of at least %llu %s", f->name,
                    what, (unsigned long long)f->min_length, unit);
            return;
        }
        if (f->max_length > 0 && v->length > f->max_length) {
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
        char blocked[FIELD_NAME_MAX + 1];
        val v = val_of_json(lookup(root, fields[i].name, blocked));
        check_field(&c, &fields[i], blocked, &v);
    }
    return c.n;
}

/* ---- the fast path ---------------------------------------------------------
 *
 * Most bodies are one flat object of short ASCII strings, plain numbers and
 * literals ({"sku":"A-1","qty":1,"amount":9.5,"customer":"c7"}), and
 * jansson builds a tree of them (an allocation per value, a hash table,
 * the duplicate check) only for the rules to read four members. flat_parse
 * reads exactly that shape without allocating, and says "not sure"
 * (false) at anything outside it — an escape, a byte outside printable
 * ASCII, an exponent, more than 15 digits, a nested value, more than
 * FLAT_MAX members, a duplicate name, or anything malformed — and then
 * jansson decides, and its answer and error messages are the reference.
 * Inside the shape both parsers accept the same texts and read the same
 * values (integers of at most 15 digits and decimals of at most 15
 * significant digits convert exactly as jansson's strtod-based reading
 * does), and the rules run through the same check_field.
 */
#define FLAT_MAX 32
#define FLAT_DIGITS 15

typedef struct flat_member {
    const char *name;
    size_t name_len;
    val v;
} flat_member;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* A string of printable ASCII without escapes; p at the opening quote.
 * Returns past the closing quote, or NULL. */
static const char *flat_string(const char *p, const char *end, const char **s,
                               size_t *len)
{
    const char *q = ++p;
    while (q < end && *q != '"') {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x20 || ch > 0x7E || ch == '\\') {
            return NULL;
        }
        q++;
    }
    if (q == end) {
        return NULL;
    }
    *s = p;
    *len = (size_t)(q - p);
    return q + 1;
}

/* A number: -?(0|[1-9][0-9]*)(\.[0-9]+)? followed by a delimiter, at most
 * FLAT_DIGITS digits. Returns past it, or NULL. Its digits make an integer
 * N below 10^15 and the value is N / 10^k (k fraction digits): both are
 * exact doubles, so the quotient is the correctly rounded value of the
 * decimal, as strtod (which jansson uses) gives, with no locale involved. */
static const char *flat_number(const char *p, const char *end, val *v)
{
    static const double pow10[FLAT_DIGITS + 1] = {
        1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
        1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *q = p;
    bool neg = false;
    uint64_t mant = 0;
    size_t digits = 0, frac = 0;
    if (q < end && *q == '-') {
        neg = true;
        q++;
    }
    if (q < end && *q == '0') {
        q++;
        digits++;
    } else if (q < end && *q >= '1' && *q <= '9') {
        while (q < end && *q >= '0' && *q <= '9' && digits <= FLAT_DIGITS) {
            mant = mant * 10 + (uint64_t)(*q - '0');
            q++;
            digits++;
        }
    } else {
        return NULL;
    }
    bool real = q < end && *q == '.';
    if (real) {
        q++;
        while (q < end && *q >= '0' && *q <= '9' && digits <= FLAT_DIGITS) {
            mant = mant * 10 + (uint64_t)(*q - '0');
            q++;
            digits++;
            frac++;
        }
        if (frac == 0) {
            return NULL;
        }
    }
    if (digits > FLAT_DIGITS || q == end ||
        !(*q == ',' || *q == '}' || *q == ' ' || *q == '\t' || *q == '\n' ||
          *q == '\r')) {
        return NULL; /* an exponent, too long, or malformed */
    }
    double x = (double)mant / pow10[frac];
    v->kind = real ? VAL_REAL : VAL_INTEGER;
    /* -0 is the integer 0 to jansson; -0.0 a negative zero. */
    v->num = neg && (real || mant != 0) ? -x : x;
    return q;
}

static const char *flat_literal(const char *p, const char *end,
                                const char *word, val_kind kind, val *v)
{
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) {
        return NULL;
    }
    v->kind = kind;
    return p + n;
}

/* Parse a flat object into @p m; false when not sure (see above). */
static bool flat_parse(const char *p, size_t len, flat_member *m, size_t *nm)
{
    const char *end = p + len;
    size_t n = 0;
    p = skip_ws(p, end);
    if (p == end || *p != '{') {
        return false;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (n == FLAT_MAX || p == end || *p != '"') {
                return false;
            }
            flat_member *fm = &m[n];
            p = flat_string(p, end, &fm->name, &fm->name_len);
            if (p == NULL) {
                return false;
            }
            for (size_t i = 0; i < n; i++) {
                if (m[i].name_len == fm->name_len &&
                    memcmp(m[i].name, fm->name, fm->name_len) == 0) {
                    return false; /* a duplicate: jansson's error */
                }
            }
            p = skip_ws(p, end);
            if (p == end || *p != ':') {
                return false;
            }
            p = skip_ws(p + 1, end);
            if (p == end) {
                return false;
            }
            val *v = &fm->v;
            *v = (val){VAL_ABSENT, 0, 0, NULL, 0};
            if (*p == '"') {
                p = flat_string(p, end, &v->str, &v->str_len);
                v->kind = VAL_STRING;
                v->length = v->str_len; /* ASCII: a byte per character */
            } else if (*p == 't') {
                p = flat_literal(p, end, "true", VAL_BOOLEAN, v);
            } else if (*p == 'f') {
                p = flat_literal(p, end, "false", VAL_BOOLEAN, v);
            } else if (*p == 'n') {
                p = flat_literal(p, end, "null", VAL_ABSENT, v);
            } else {
                p = flat_number(p, end, v);
            }
            if (p == NULL) {
                return false;
            }
            n++;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            return false;
        }
    }
    if (skip_ws(p, end) != end) {
        return false;
    }
    *nm = n;
    return true;
}

/* Validate through the fast path; false when it is not sure. */
static bool flat_validate(const sl_gateway_field *fields, size_t n,
                          const void *data, size_t len, collector *c)
{
    flat_member m[FLAT_MAX];
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr(fields[i].name, '.') != NULL) {
            return false; /* dotted names walk nested objects */
        }
    }
    if (data == NULL || !flat_parse(data, len, m, &nm)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const sl_gateway_field *f = &fields[i];
        size_t fl = strlen(f->name);
        val absent = {VAL_ABSENT, 0, 0, NULL, 0};
        const val *v = &absent;
        for (size_t k = 0; k < nm; k++) {
            if (m[k].name_len == fl && memcmp(m[k].name, f->name, fl) == 0) {
                v = &m[k].v;
                break;
            }
        }
        check_field(c, f, "", v);
    }
    return true;
}

sl_status sl__gw_validate_text(const sl_gateway_field *fields, size_t n,
                               const void *data, size_t len,
                               sl_gw_violation *out, size_t cap, size_t *nv,
                               sl_diag *diag)
{
    collector c = {out, out ? cap : 0, 0};
    if (flat_validate(fields, n, data, len, &c)) {
        *nv = c.n;
        return SL_OK;
    }
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
