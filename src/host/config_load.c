/* The configuration loader: the YAML file through the option tables.
 *
 * One generic walker applies a table (config_options.c) to a YAML mapping
 * (types, bounds, unknown and duplicate keys, required keys, defaults); the
 * same tables free the result. Checks that relate several options run once
 * the walk is done (config_check.c).
 *
 * The file is loaded with libyaml's document API because its nodes keep
 * their start marks: every error names FILE:LINE:COLUMN and the key path.
 */
#include "sluice/config.h"

#include "core/suggest.h"
#include "host/config_int.h"
#include "sluice/alloc.h"
#include "sluice/duration.h"

#include <yaml.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A configuration file is small; refusing huge ones keeps the loader
 * bounded when it is pointed at the wrong file. */
#define FILE_MAX_SIZE (16u * 1024u * 1024u)

/* ---- names --------------------------------------------------------------- */

static const char *opt_key_at(const void *items, size_t i)
{
    return ((const opt_desc *)items)[i].key;
}

static const char *choice_at(const void *items, size_t i)
{
    return ((const opt_choice *)items)[i].name;
}

static size_t choice_count(const opt_choice *choices)
{
    size_t n = 0;
    while (choices[n].name != NULL) {
        n++;
    }
    return n;
}

static bool is_name(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return n >= 1 && n <= NAME_MAX_LEN;
}

/* ---- scalar parsing, shared by file values and built-in defaults --------- */

typedef enum parse_result {
    PARSE_OK,
    PARSE_SYNTAX, /* not of the option's type at all */
    PARSE_RANGE,  /* of the type, out of bounds */
    PARSE_NOMEM,
} parse_result;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal digits only; a sign or blank is a syntax error. */
static parse_result parse_u64(const char *text, const char **end, uint64_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    if (!is_digit(*p)) {
        return PARSE_SYNTAX;
    }
    bool overflow = false;
    for (; is_digit(*p); p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            overflow = true;
        } else {
            v = v * 10 + digit;
        }
    }
    *end = p;
    *out = v;
    return overflow ? PARSE_RANGE : PARSE_OK;
}

static parse_result parse_size(const char *text, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t scale;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", UINT64_C(1) << 10},
        {"MiB", UINT64_C(1) << 20},
        {"GiB", UINT64_C(1) << 30},
    };
    const char *p = NULL;
    uint64_t n = 0;
    parse_result res = parse_u64(text, &p, &n);
    if (res == PARSE_SYNTAX) {
        return res;
    }
    while (*p == ' ') {
        p++;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (res != PARSE_OK || n > UINT64_MAX / units[i].scale) {
                return PARSE_RANGE;
            }
            *out = n * units[i].scale;
            return PARSE_OK;
        }
    }
    return PARSE_SYNTAX;
}

static parse_result parse_duration(const opt_desc *o, const char *text,
                                   uint64_t *out)
{
    uint64_t ms = 0;
    if (sl_duration_parse_ms(text, &ms) != SL_OK) {
        /* The shared parser refuses overflow and bad syntax alike; a long
         * run of digits is almost surely the former. */
        const char *end = NULL;
        uint64_t ignored = 0;
        return parse_u64(text, &end, &ignored) == PARSE_RANGE ? PARSE_RANGE
                                                              : PARSE_SYNTAX;
    }
    if (ms < o->min || ms > o->max) {
        return PARSE_RANGE;
    }
    *out = ms;
    return PARSE_OK;
}

static parse_result parse_bool(const char *text, bool *out)
{
    /* YAML 1.1 spellings, which is what libyaml users expect. */
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return PARSE_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return PARSE_OK;
        }
    }
    return PARSE_SYNTAX;
}

static parse_result parse_double(const opt_desc *o, const char *text,
                                 double *out)
{
    /* strtod also takes "inf", "nan" and hex floats; none is a rate. */
    if (text[0] == '\0' || strspn(text, "0123456789.eE+-") != strlen(text)) {
        return PARSE_SYNTAX;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0') {
        return PARSE_SYNTAX;
    }
    if (errno == ERANGE || !isfinite(v) || v < (double)o->min ||
        v > (double)o->max) {
        return PARSE_RANGE;
    }
    *out = v;
    return PARSE_OK;
}

static const opt_choice *find_choice(const opt_choice *choices,
                                     const char *text)
{
    for (const opt_choice *c = choices; c->name != NULL; c++) {
        if (strcmp(c->name, text) == 0) {
            return c;
        }
    }
    return NULL;
}

/* Parse @p text as option @p o and store it at @p field. Strings are
 * copied; the previous string (if any) is freed. */
static parse_result parse_scalar(const opt_desc *o, const char *text,
                                 void *field)
{
    uint64_t u = 0;
    const char *end = NULL;
    parse_result res = PARSE_OK;

    switch (o->type) {
    case OPT_STRING: {
        if (o->choices != NULL && find_choice(o->choices, text) == NULL) {
            return PARSE_SYNTAX;
        }
        if ((o->flags & OPT_NAME) && !is_name(text)) {
            return PARSE_SYNTAX;
        }
        char *copy = sl_strdup(text);
        if (copy == NULL) {
            return PARSE_NOMEM;
        }
        sl_free(*(char **)field);
        *(char **)field = copy;
        return PARSE_OK;
    }
    case OPT_UINT32:
    case OPT_UINT64:
        res = parse_u64(text, &end, &u);
        if (res == PARSE_OK && *end != '\0') {
            return PARSE_SYNTAX;
        }
        if (res != PARSE_OK) {
            return res;
        }
        if (u < o->min || u > o->max) {
            return PARSE_RANGE;
        }
        if (o->type == OPT_UINT32) {
            *(uint32_t *)field = (uint32_t)u;
        } else {
            *(uint64_t *)field = u;
        }
        return PARSE_OK;
    case OPT_DOUBLE:
        return parse_double(o, text, (double *)field);
    case OPT_BOOL:
        return parse_bool(text, (bool *)field);
    case OPT_DURATION:
        return parse_duration(o, text, (uint64_t *)field);
    case OPT_SIZE:
        res = parse_size(text, &u);
        if (res != PARSE_OK) {
            return res;
        }
        if (u < o->min || u > o->max) {
            return PARSE_RANGE;
        }
        *(uint64_t *)field = u;
        return PARSE_OK;
    case OPT_ENUM: {
        const opt_choice *c = find_choice(o->choices, text);
        if (c == NULL) {
            return PARSE_SYNTAX;
        }
        memcpy(field, &c->value, sizeof c->value);
        return PARSE_OK;
    }
    case OPT_NUMBER: {
        /* Like OPT_DOUBLE but signed and unbounded (validation limits). */
        if (text[0] == '\0' ||
            strspn(text, "0123456789.eE+-") != strlen(text)) {
            return PARSE_SYNTAX;
        }
        char *e = NULL;
        errno = 0;
        double v = strtod(text, &e);
        if (e == text || *e != '\0') {
            return PARSE_SYNTAX;
        }
        if (errno == ERANGE || !isfinite(v)) {
            return PARSE_RANGE;
        }
        *(double *)field = v;
        return PARSE_OK;
    }
    case OPT_DURATION_LIST:
    case OPT_SECTION:
    case OPT_LIST:
    case OPT_STRING_LIST:
        break;
    }
    return PARSE_SYNTAX;
}

/* A built-in duration list default ("1s, 5s, 10s"). */
static parse_result parse_default_list(const opt_desc *o, void *base)
{
    size_t n = 1;
    for (const char *p = o->def; *p != '\0'; p++) {
        n += *p == ',';
    }
    uint64_t *arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return PARSE_NOMEM;
    }
    const char *p = o->def;
    for (size_t i = 0; i < n; i++) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len >= sizeof item) {
            sl_free(arr);
            return PARSE_SYNTAX;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        parse_result res = parse_duration(o, item, &arr[i]);
        if (res != PARSE_OK) {
            sl_free(arr);
            return res;
        }
        p += len + (p[len] == ',');
    }
    uint64_t **slot = field_at(base, o->offset);
    sl_free(*slot);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    return PARSE_OK;
}

/* ---- the walker ---------------------------------------------------------- */

static sl_config_pos node_pos(const yaml_node_t *node)
{
    sl_config_pos pos = {(int)node->start_mark.line + 1,
                         (int)node->start_mark.column + 1};
    return pos;
}

sl_status sl__config_fail_at(parse_ctx *ctx, sl_config_pos at, const char *path,
                             const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path != NULL && path[0] != '\0') {
        return sl_diag_set(ctx->diag, SL_CONFIG, "%s:%d:%d: %s: %s", ctx->name,
                           at.line, at.column, path, msg);
    }
    return sl_diag_set(ctx->diag, SL_CONFIG, "%s:%d:%d: %s", ctx->name, at.line,
                       at.column, msg);
}

sl_status sl__config_fail_nomem(parse_ctx *ctx)
{
    return sl_diag_set(ctx->diag, SL_NOMEM, "%s: out of memory", ctx->name);
}

static sl_status remember_pos(parse_ctx *ctx, const void *field,
                              sl_config_pos pos)
{
    if (ctx->npos == ctx->pos_cap) {
        size_t cap = ctx->pos_cap ? 2 * ctx->pos_cap : 64;
        value_pos *grown = sl_realloc(ctx->pos, cap * sizeof *grown);
        if (grown == NULL) {
            return sl__config_fail_nomem(ctx);
        }
        ctx->pos = grown;
        ctx->pos_cap = cap;
    }
    ctx->pos[ctx->npos++] = (value_pos){field, pos};
    return SL_OK;
}

sl_config_pos sl__config_pos_in(const parse_ctx *ctx, const void *field,
                                sl_config_pos fallback)
{
    for (size_t i = 0; i < ctx->npos; i++) {
        if (ctx->pos[i].field == field) {
            return ctx->pos[i].pos;
        }
    }
    return fallback;
}

bool sl__config_from_file(const parse_ctx *ctx, const void *field)
{
    sl_config_pos none = {0, 0};
    return sl__config_pos_in(ctx, field, none).line != 0;
}

static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 ||
           strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* What was found, for "got ..." in messages. */
static void describe_got(textbuf *tb, const yaml_node_t *node)
{
    if (node->type == YAML_MAPPING_NODE) {
        tb_add(tb, "a mapping");
    } else if (node->type == YAML_SEQUENCE_NODE) {
        tb_add(tb, "a list");
    } else if (is_null(node)) {
        tb_add(tb, "nothing");
    } else {
        const char *v = (const char *)node->data.scalar.value;
        size_t len = strlen(v);
        tb_add(tb, "\"");
        for (size_t i = 0; i < len && i < QUOTE_MAX_LEN; i++) {
            unsigned char c = (unsigned char)v[i];
            tb_add(tb, "%c", c < 0x20 || c == 0x7f ? '?' : (char)c);
        }
        tb_add(tb, "%s\"", len > QUOTE_MAX_LEN ? "..." : "");
    }
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static void join_key(textbuf *tb, const char *path, const char *key)
{
    tb_add(tb, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
}

static sl_status fail_expected(parse_ctx *ctx, const opt_desc *o,
                               const yaml_node_t *node, const char *path,
                               bool syntax)
{
    char want[200];
    char got[100];
    textbuf tw = tb_init(want, sizeof want);
    textbuf tg = tb_init(got, sizeof got);
    sl__config_describe_expected(&tw, o, syntax);
    describe_got(&tg, node);
    const char *hint = NULL;
    if (syntax && o->choices != NULL && node->type == YAML_SCALAR_NODE) {
        hint = sl__closest_name(scalar_text(node), o->choices,
                                choice_count(o->choices), choice_at);
    }
    if (hint != NULL) {
        return sl__config_fail_at(ctx, node_pos(node), path,
                                  "expected %s, got %s (did you mean \"%s\"?)",
                                  want, got, hint);
    }
    return sl__config_fail_at(ctx, node_pos(node), path, "expected %s, got %s",
                              want, got);
}

static const yaml_node_pair_t *find_pair(parse_ctx *ctx, const yaml_node_t *map,
                                         const char *key)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp(scalar_text(k), key) == 0) {
            return p;
        }
    }
    return NULL;
}

static sl_status walk_table(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, sl_config_pos where,
                            void *base, const char *path);

static sl_status apply_list(parse_ctx *ctx, const opt_desc *o,
                            const yaml_node_t *val, void *base,
                            const char *path)
{
    if (is_null(val)) {
        return SL_OK; /* "channels:" with nothing under it: no channels */
    }
    if (val->type != YAML_SEQUENCE_NODE) {
        return fail_expected(ctx, o, val, path, true);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n > o->max_items) {
        return sl__config_fail_at(ctx, node_pos(val), path,
                                  "expected at most %zu entries, got %zu",
                                  o->max_items, n);
    }
    if (n == 0) {
        return SL_OK;
    }
    void *arr = sl_calloc(n, o->sub->elem_size);
    if (arr == NULL) {
        return sl__config_fail_nomem(ctx);
    }
    /* The array is handed to the config at once, so that sl_config_destroy
     * cleans up whatever a failure below leaves half-filled. */
    memcpy(field_at(base, o->offset), &arr, sizeof arr);
    *(size_t *)field_at(base, o->count_offset) = n;

    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s[%zu]", path, i);
        if (item->type != YAML_MAPPING_NODE) {
            char got[100];
            textbuf tg = tb_init(got, sizeof got);
            describe_got(&tg, item);
            return sl__config_fail_at(ctx, node_pos(item), sub,
                                      "expected a mapping, got %s", got);
        }
        void *elem = (char *)arr + i * o->sub->elem_size;
        sl_status st = walk_table(ctx, o->sub, item, node_pos(item), elem, sub);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

static sl_status apply_duration_list(parse_ctx *ctx, const opt_desc *o,
                                     const yaml_node_t *val, void *base,
                                     const char *path)
{
    if (val->type != YAML_SEQUENCE_NODE) {
        char got[100];
        textbuf tg = tb_init(got, sizeof got);
        describe_got(&tg, val);
        return sl__config_fail_at(
            ctx, node_pos(val), path,
            "expected a list of durations such as [1s, 5s, 10s], "
            "got %s",
            got);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0) {
        return sl__config_fail_at(
            ctx, node_pos(val), path,
            "expected at least one duration, got an empty list");
    }
    if (n > o->max_items) {
        return sl__config_fail_at(ctx, node_pos(val), path,
                                  "expected at most %zu durations, got %zu",
                                  o->max_items, n);
    }
    uint64_t *arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return sl__config_fail_nomem(ctx);
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s[%zu]", path, i);
        parse_result res = PARSE_SYNTAX;
        if (item->type == YAML_SCALAR_NODE && !is_null(item)) {
            res = parse_duration(o, scalar_text(item), &arr[i]);
        }
        if (res != PARSE_OK) {
            sl_free(arr);
            return fail_expected(ctx, o, item, sub, res == PARSE_SYNTAX);
        }
    }
    uint64_t **slot = field_at(base, o->offset);
    sl_free(*slot);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    return remember_pos(ctx, slot, node_pos(val));
}

static sl_status apply_string_list(parse_ctx *ctx, const opt_desc *o,
                                   const yaml_node_t *val, void *base,
                                   const char *path)
{
    if (val->type != YAML_SEQUENCE_NODE) {
        return fail_expected(ctx, o, val, path, true);
    }
    const yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0 || n > o->max_items) {
        return sl__config_fail_at(ctx, node_pos(val), path,
                                  "expected 1 to %zu strings, got %zu",
                                  o->max_items, n);
    }
    char **arr = sl_calloc(n, sizeof *arr);
    if (arr == NULL) {
        return sl__config_fail_nomem(ctx);
    }
    /* Handed over at once: sl_config_destroy cleans up a half-filled list. */
    char ***slot = field_at(base, o->offset);
    *slot = arr;
    *(size_t *)field_at(base, o->count_offset) = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        if (item->type != YAML_SCALAR_NODE || is_null(item)) {
            char sub[PATH_MAX_LEN];
            textbuf ts = tb_init(sub, sizeof sub);
            tb_add(&ts, "%s[%zu]", path, i);
            return fail_expected(ctx, o, item, sub, true);
        }
        if ((arr[i] = sl_strdup(scalar_text(item))) == NULL) {
            return sl__config_fail_nomem(ctx);
        }
    }
    return remember_pos(ctx, slot, node_pos(val));
}

/* Apply one value from the file. */
static sl_status apply_value(parse_ctx *ctx, const opt_desc *o,
                             const yaml_node_t *val, void *base,
                             const char *path)
{
    void *field = field_at(base, o->offset);
    switch (o->type) {
    case OPT_SECTION:
        if (is_null(val)) {
            return walk_table(ctx, o->sub, NULL, node_pos(val), field, path);
        }
        if (val->type != YAML_MAPPING_NODE) {
            return fail_expected(ctx, o, val, path, true);
        }
        return walk_table(ctx, o->sub, val, node_pos(val), field, path);
    case OPT_LIST:
        return apply_list(ctx, o, val, base, path);
    case OPT_DURATION_LIST:
        return apply_duration_list(ctx, o, val, base, path);
    case OPT_STRING_LIST:
        return apply_string_list(ctx, o, val, base, path);
    case OPT_NUMBER:
        *(bool *)field_at(base, o->count_offset) = true;
        break;
    default:
        break;
    }

    if (val->type != YAML_SCALAR_NODE || is_null(val)) {
        return fail_expected(ctx, o, val, path, true);
    }
    if (strlen(scalar_text(val)) != val->data.scalar.length) {
        return sl__config_fail_at(ctx, node_pos(val), path,
                                  "contains a NUL character");
    }
    switch (parse_scalar(o, scalar_text(val), field)) {
    case PARSE_OK:
        return remember_pos(ctx, field, node_pos(val));
    case PARSE_SYNTAX:
        return fail_expected(ctx, o, val, path, true);
    case PARSE_RANGE:
        return fail_expected(ctx, o, val, path, false);
    case PARSE_NOMEM:
        break;
    }
    return sl__config_fail_nomem(ctx);
}

/* Apply the default of an option absent from the file. */
static sl_status apply_default(parse_ctx *ctx, const opt_desc *o, void *base,
                               const char *path, sl_config_pos where)
{
    void *field = field_at(base, o->offset);
    parse_result res = PARSE_OK;
    if (o->type == OPT_SECTION) {
        return walk_table(ctx, o->sub, NULL, where, field, path);
    }
    if (o->def == NULL) {
        return SL_OK; /* zero, NULL, or computed in sl__config_finish() */
    }
    if (o->type == OPT_DURATION_LIST) {
        res = parse_default_list(o, base);
    } else {
        res = parse_scalar(o, o->def, field);
    }
    if (res == PARSE_NOMEM) {
        return sl__config_fail_nomem(ctx);
    }
    if (res != PARSE_OK) {
        /* A table bug; the unit tests load every default. */
        return sl_diag_set(ctx->diag, SL_INTERNAL,
                           "%s: built-in default \"%s\" does not parse", path,
                           o->def);
    }
    return SL_OK;
}

static const opt_desc *find_opt(const opt_table *tab, const char *key)
{
    for (size_t i = 0; i < tab->nopts; i++) {
        if (strcmp(tab->opts[i].key, key) == 0) {
            return &tab->opts[i];
        }
    }
    return NULL;
}

/* Apply one key of a mapping: refuse non-scalar, duplicate and unknown
 * keys, then apply the value. */
static sl_status apply_pair(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, const yaml_node_pair_t *p,
                            void *base, const char *path)
{
    yaml_node_t *key = yaml_document_get_node(ctx->doc, p->key);
    if (key->type != YAML_SCALAR_NODE) {
        char got[100];
        textbuf tg = tb_init(got, sizeof got);
        describe_got(&tg, key);
        return sl__config_fail_at(ctx, node_pos(key), path,
                                  "expected a key, got %s", got);
    }
    const char *name = scalar_text(key);
    char sub[PATH_MAX_LEN];
    textbuf ts = tb_init(sub, sizeof sub);
    join_key(&ts, path, name);

    const yaml_node_pair_t *first = find_pair(ctx, map, name);
    if (first != p) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, first->key);
        sl_config_pos at = node_pos(k);
        return sl__config_fail_at(ctx, node_pos(key), sub,
                                  "duplicate key (first at %d:%d)", at.line,
                                  at.column);
    }
    const opt_desc *o = find_opt(tab, name);
    if (o == NULL) {
        const char *hint =
            sl__closest_name(name, tab->opts, tab->nopts, opt_key_at);
        if (hint != NULL) {
            return sl__config_fail_at(ctx, node_pos(key), sub,
                                      "unknown key (did you mean \"%s\"?)",
                                      hint);
        }
        return sl__config_fail_at(ctx, node_pos(key), sub, "unknown key");
    }
    yaml_node_t *val = yaml_document_get_node(ctx->doc, p->value);
    return apply_value(ctx, o, val, base, sub);
}

/* Apply @p tab to the mapping @p map (NULL: the section is absent, so only
 * defaults apply and missing required keys are cited at @p where). Keys are
 * applied in file order, so the first error reported is the first in the
 * file; then defaults fill what the file left out. */
static sl_status walk_table(parse_ctx *ctx, const opt_table *tab,
                            const yaml_node_t *map, sl_config_pos where,
                            void *base, const char *path)
{
    sl_status st = SL_OK;
    if (tab->pos_offset != NO_POS) {
        *(sl_config_pos *)field_at(base, tab->pos_offset) = where;
    }
    if (map != NULL) {
        for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
             p < map->data.mapping.pairs.top; p++) {
            st = apply_pair(ctx, tab, map, p, base, path);
            if (st != SL_OK) {
                return st;
            }
        }
    }
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        if (map != NULL && find_pair(ctx, map, o->key) != NULL) {
            continue;
        }
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        join_key(&ts, path, o->key);
        if (o->flags & OPT_REQUIRED) {
            return sl__config_fail_at(ctx, where, sub, "missing required key");
        }
        st = apply_default(ctx, o, base, sub, where);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

/* ---- loading ------------------------------------------------------------- */

static sl_config_pos offset_pos(const char *text, size_t len, size_t offset)
{
    sl_config_pos pos = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            pos.line++;
            pos.column = 1;
        } else {
            pos.column++;
        }
    }
    return pos;
}

/* The line of @p text around byte @p offset contains @p word. */
static bool line_has(const char *text, size_t len, size_t offset,
                     const char *word)
{
    if (offset > len) {
        return false;
    }
    size_t start = offset;
    while (start > 0 && text[start - 1] != '\n') {
        start--;
    }
    size_t end = offset;
    while (end < len && text[end] != '\n') {
        end++;
    }
    size_t n = strlen(word);
    for (size_t i = start; i + n <= end; i++) {
        if (memcmp(text + i, word, n) == 0) {
            return true;
        }
    }
    return false;
}

static sl_status parser_failure(parse_ctx *ctx, const yaml_parser_t *parser,
                                const char *text, size_t len)
{
    sl_config_pos at = {(int)parser->problem_mark.line + 1,
                        (int)parser->problem_mark.column + 1};
    const char *problem = parser->problem ? parser->problem : "unknown error";
    switch (parser->error) {
    case YAML_MEMORY_ERROR:
        return sl__config_fail_nomem(ctx);
    case YAML_READER_ERROR:
        /* Reader errors carry a byte offset, not a mark. */
        return sl__config_fail_at(ctx,
                                  offset_pos(text, len, parser->problem_offset),
                                  NULL, "invalid input: %s", problem);
    default:
        break;
    }
    if (parser->context != NULL) {
        return sl__config_fail_at(
            ctx, at, NULL, "syntax error: %s (%s at %d:%d)", problem,
            parser->context, (int)parser->context_mark.line + 1,
            (int)parser->context_mark.column + 1);
    }
    if (line_has(text, len, parser->problem_mark.index, "embedded::memory:")) {
        /* The old spelling of the in-memory engine ends with a colon. */
        return sl__config_fail_at(
            ctx, at, NULL,
            "syntax error: %s (an unquoted embedded::memory: reads "
            "as a mapping: write memory://, or quote it)",
            problem);
    }
    return sl__config_fail_at(ctx, at, NULL, "syntax error: %s", problem);
}

static sl_status check_single_document(parse_ctx *ctx, yaml_parser_t *parser,
                                       const char *text, size_t len)
{
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) {
        return parser_failure(ctx, parser, text, len);
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    sl_status st = SL_OK;
    if (root != NULL) {
        st = sl__config_fail_at(ctx, node_pos(root), NULL,
                                "expected one YAML document, found another");
    }
    yaml_document_delete(&next);
    return st;
}

static const char *node_kind(const yaml_node_t *node)
{
    return node->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

sl_status sl_config_load_string(const char *yaml, size_t len, const char *name,
                                sl_config **out, sl_diag *diag)
{
    if ((yaml == NULL && len != 0) || out == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "sl_config_load_string: NULL argument");
    }
    if (yaml == NULL) {
        yaml = "";
    }
    parse_ctx ctx = {.name = name != NULL ? name : "<string>", .diag = diag};
    yaml_parser_t parser;
    yaml_document_t doc;
    sl_config *cfg = NULL;
    sl_status st = SL_OK;

    if (!yaml_parser_initialize(&parser)) {
        return sl__config_fail_nomem(&ctx);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = parser_failure(&ctx, &parser, yaml, len);
        goto cleanup_parser;
    }
    ctx.doc = &doc;

    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        sl_config_pos start = {1, 1};
        st = sl__config_fail_at(
            &ctx, start, NULL,
            "empty configuration (expected a mapping with keys such as "
            "engine, channels and consumers)");
        goto cleanup_doc;
    }
    ctx.root_pos = node_pos(root);
    if (root->type != YAML_MAPPING_NODE) {
        st = sl__config_fail_at(&ctx, ctx.root_pos, NULL,
                                "expected a mapping at the top level, got %s",
                                node_kind(root));
        goto cleanup_doc;
    }
    st = check_single_document(&ctx, &parser, yaml, len);
    if (st != SL_OK) {
        goto cleanup_doc;
    }

    cfg = sl_calloc(1, sizeof *cfg);
    if (cfg == NULL || (cfg->path = sl_strdup(ctx.name)) == NULL) {
        st = sl__config_fail_nomem(&ctx);
        goto cleanup_cfg;
    }
    st = walk_table(&ctx, &sl__config_root_table, root, ctx.root_pos, cfg, "");
    if (st == SL_OK) {
        st = sl__config_finish(&ctx, cfg);
    }
    if (st == SL_OK) {
        /* The positions stay with the configuration: checks made when the
         * service is built (engine URL, listen addresses, plugins) cite the
         * value too. */
        cfg->value_pos = ctx.pos;
        cfg->nvalue_pos = ctx.npos;
        ctx.pos = NULL;
        *out = cfg;
        cfg = NULL;
    }

cleanup_cfg:
    sl_config_destroy(cfg);
    sl_free(ctx.pos);
cleanup_doc:
    yaml_document_delete(&doc);
cleanup_parser:
    yaml_parser_delete(&parser);
    return st;
}

sl_status sl_config_load_file(const char *path, sl_config **out, sl_diag *diag)
{
    if (path == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "sl_config_load_file: NULL argument");
    }
    sl_status st = SL_OK;
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return sl_diag_set(diag, SL_IO, "%s: cannot open: %s", path,
                           strerror(errno));
    }
    for (;;) {
        if (len == cap) {
            if (cap >= FILE_MAX_SIZE) {
                st = sl_diag_set(diag, SL_CONFIG,
                                 "%s: larger than %u bytes; not a "
                                 "configuration file?",
                                 path, FILE_MAX_SIZE);
                goto cleanup_text;
            }
            cap = cap ? 2 * cap : 4096;
            char *grown = sl_realloc(text, cap);
            if (grown == NULL) {
                st = sl_diag_set(diag, SL_NOMEM, "%s: out of memory", path);
                goto cleanup_text;
            }
            text = grown;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        st = sl_diag_set(diag, SL_IO, "%s: cannot read: %s", path,
                         strerror(errno));
        goto cleanup_text;
    }
    st = sl_config_load_string(text, len, path, out, diag);

cleanup_text:
    sl_free(text);
    fclose(f);
    return st;
}

static void free_table(const opt_table *tab, void *base)
{
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        void *field = field_at(base, o->offset);
        switch (o->type) {
        case OPT_STRING:
            sl_free(*(char **)field);
            break;
        case OPT_DURATION_LIST:
            sl_free(*(uint64_t **)field);
            break;
        case OPT_STRING_LIST: {
            char **arr = *(char ***)field;
            size_t n = *(size_t *)field_at(base, o->count_offset);
            for (size_t j = 0; arr != NULL && j < n; j++) {
                sl_free(arr[j]);
            }
            sl_free(arr);
            break;
        }
        case OPT_SECTION:
            free_table(o->sub, field);
            break;
        case OPT_LIST: {
            void *arr = NULL;
            memcpy(&arr, field, sizeof arr);
            size_t n = *(size_t *)field_at(base, o->count_offset);
            for (size_t j = 0; j < n; j++) {
                free_table(o->sub, (char *)arr + j * o->sub->elem_size);
            }
            sl_free(arr);
            break;
        }
        default:
            break;
        }
    }
}

void sl_config_destroy(sl_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free_table(&sl__config_root_table, cfg);
    sl_free(cfg->path);
    sl_free(cfg->value_pos);
    sl_free(cfg);
}

sl_config_pos sl_config_pos_of(const sl_config *cfg, const void *field)
{
    sl_config_pos none = {0, 0};
    if (cfg == NULL) {
        return none;
    }
    for (size_t i = 0; i < cfg->nvalue_pos; i++) {
        if (cfg->value_pos[i].field == field) {
            return cfg->value_pos[i].pos;
        }
    }
    return none;
}

sl_status sl_config_fail(const sl_config *cfg, const void *field,
                         sl_config_pos fallback, const char *key, sl_status st,
                         sl_diag *diag, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *file = cfg != NULL && cfg->path != NULL ? cfg->path : "config";
    sl_config_pos at = sl_config_pos_of(cfg, field);
    if (at.line == 0) {
        at = fallback;
    }
    if (at.line == 0) {
        /* A default value: there is no line to point at, only the key. */
        return sl_diag_set(diag, st, "%s: %s: %s", file, key, msg);
    }
    return sl_diag_set(diag, st, "%s:%d:%d: %s: %s", file, at.line, at.column,
                       key, msg);
}
