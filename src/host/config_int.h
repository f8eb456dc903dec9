/* The configuration's private interface, shared by its four parts:
 *
 *   config_options.c    the option tables, and how a type and range read
 *   config_load.c       the YAML loader: the generic walker, scalar parsing,
 *                       positions of values, sl_config_destroy
 *   config_check.c      checks across options and derived defaults, once
 *                       the walk is done
 *   config_reference.c  the Markdown reference, from the same tables
 *
 * Not part of the public API.
 */
#ifndef SLUICE_HOST_CONFIG_INT_H
#define SLUICE_HOST_CONFIG_INT_H

#include "sluice/config.h"

#include <yaml.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Longest channel, group or service name: names end up inside derived names
 * ("<channel>.<group>.dlq") and broker identifiers, which have limits. */
#define NAME_MAX_LEN 200

/* Longest key path or value quoted in a message. */
#define PATH_MAX_LEN 256
#define QUOTE_MAX_LEN 60

typedef enum opt_type {
    OPT_STRING,        /* char *, owned */
    OPT_UINT32,        /* uint32_t */
    OPT_UINT64,        /* uint64_t */
    OPT_DOUBLE,        /* double; bounds are min..max as whole numbers */
    OPT_BOOL,          /* bool */
    OPT_DURATION,      /* uint64_t milliseconds */
    OPT_SIZE,          /* uint64_t bytes */
    OPT_ENUM,          /* int-sized enum, values from `choices` */
    OPT_DURATION_LIST, /* uint64_t * at offset, size_t at count_offset */
    OPT_SECTION,       /* mapping applied with `sub` to base + offset */
    OPT_LIST,          /* list of mappings: element array at offset,
                          size_t count at count_offset, elements `sub` */
    OPT_NUMBER,        /* double, any finite value, no default; bool at
                          count_offset says whether it was given */
    OPT_STRING_LIST,   /* char ** at offset, size_t at count_offset */
} opt_type;

enum {
    OPT_REQUIRED = 1u << 0,      /* a missing key is an error */
    OPT_NAME = 1u << 1,          /* string of [A-Za-z0-9._-], at most
                                    NAME_MAX_LEN */
    OPT_KIND_REQUIRED = 1u << 2, /* handler: required when the handler's
                                    kind is `kind` */
};

typedef struct opt_choice {
    const char *name;
    int value;
} opt_choice;

struct opt_table;

/* One option. Unset fields are zero, so rows list only what applies. */
typedef struct opt_desc {
    const char *key;
    opt_type type;
    unsigned flags;
    size_t offset;
    size_t count_offset; /* OPT_DURATION_LIST, OPT_LIST */
    const char *def;     /* default, written as in the file; parsed by the
                            same code as the file's value. NULL: none. */
    const char *def_doc; /* reference text for a computed default */
    uint64_t min;        /* numbers, durations (ms), sizes (bytes) */
    uint64_t max;
    size_t max_items;            /* lists */
    const opt_choice *choices;   /* OPT_ENUM, or allowed strings; ends
                                    with {NULL, 0} */
    const struct opt_table *sub; /* OPT_SECTION, OPT_LIST */
    const char *kind;            /* handler option: the kind it serves */
    const char *doc;             /* one line for the reference */
} opt_desc;

#define NO_POS SIZE_MAX

typedef struct opt_table {
    const char *path; /* "consumers[].handler"; "" is the top level */
    const char *doc;  /* paragraph for the reference */
    const opt_desc *opts;
    size_t nopts;
    size_t elem_size;  /* element size when used by an OPT_LIST */
    size_t pos_offset; /* sl_config_pos of the mapping, or NO_POS */
} opt_table;

#define HOUR_MS UINT64_C(3600000)

/* The top-level table, and the handler's, which the checks walk by kind. */
extern const opt_table sl__config_root_table;
extern const opt_table sl__config_handler_table;

/* ---- small text helpers -------------------------------------------------- */

/* A fixed buffer that truncates instead of overflowing. */
typedef struct textbuf {
    char *buf;
    size_t cap;
    size_t len;
} textbuf;

__attribute__((format(printf, 2, 3))) static inline void
tb_add(textbuf *tb, const char *fmt, ...)
{
    if (tb->len + 1 >= tb->cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tb->buf + tb->len, tb->cap - tb->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        tb->len += (size_t)n;
        if (tb->len >= tb->cap) {
            tb->len = tb->cap - 1;
        }
    }
}

static inline textbuf tb_init(char *buf, size_t cap)
{
    buf[0] = '\0';
    return (textbuf){buf, cap, 0};
}

static inline void *field_at(void *base, size_t offset)
{
    return (char *)base + offset;
}

/* The accepted range of a numeric option: "1..100000", ">= 1ms". */
void sl__config_format_range(textbuf *tb, const opt_desc *o);

/* The names of @p choices, separated by ", ", each within @p quote. */
void sl__config_format_choices(textbuf *tb, const opt_choice *choices,
                               const char *quote);

/* What a value of option @p o must look like, for "expected ..." in
 * messages. @p syntax: the value did not parse at all, so show examples
 * rather than bounds. */
void sl__config_describe_expected(textbuf *tb, const opt_desc *o, bool syntax);

/* ---- the loader's state, which the checks read --------------------------- */

/* Where each value read from the file came from, keyed by the address of
 * the field it was stored in, so that checks after the walk can cite the
 * exact value. List arrays are allocated once at their final size, so the
 * addresses stay valid. */
struct sl_config_value_pos {
    const void *field;
    sl_config_pos pos;
};
typedef struct sl_config_value_pos value_pos;

typedef struct parse_ctx {
    const char *name; /* the file, for messages */
    yaml_document_t *doc;
    sl_diag *diag;
    sl_config_pos root_pos;
    value_pos *pos;
    size_t npos;
    size_t pos_cap;
} parse_ctx;

/* Fail with SL_CONFIG: "FILE:LINE:COL: PATH: message" (no PATH when
 * @p path is NULL or empty). Returns SL_CONFIG. */
__attribute__((format(printf, 4, 5))) sl_status
sl__config_fail_at(parse_ctx *ctx, sl_config_pos at, const char *path,
                   const char *fmt, ...);

/* Fail with SL_NOMEM, naming the file. */
sl_status sl__config_fail_nomem(parse_ctx *ctx);

/* Position of the value stored at @p field, or @p fallback when it was not
 * read from the file. */
sl_config_pos sl__config_pos_in(const parse_ctx *ctx, const void *field,
                                sl_config_pos fallback);

/* The value stored at @p field was read from the file (not a default). */
bool sl__config_from_file(const parse_ctx *ctx, const void *field);

/* Checks that relate several options (declared channels, unique groups,
 * handler kinds), then the defaults computed from others (burst, inbox and
 * gateway state paths). Runs once the walk is done. */
sl_status sl__config_finish(parse_ctx *ctx, sl_config *cfg);

#endif
