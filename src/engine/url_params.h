/* Engine URL parameters, described by a table and parsed in one place.
 *
 * Each engine lists the query parameters its URL takes ("?sync=full",
 * "?heartbeat=30&verify=peer") as a table of sl_url_param: a name, a kind
 * with its accepted values, where the parsed value goes and a line of
 * documentation. sl__url_params_parse splits the query, percent-decodes
 * names and values, and answers every mistake the same way for every
 * engine: an unknown parameter with the closest name ("did you mean"), a
 * bad value with what is accepted (the range, the choices), a parameter
 * given twice. Internal: not part of the public API.
 *
 * An engine keeps its parsed parameters in a struct, fills in defaults,
 * and points the table at its fields:
 *
 *     typedef struct my_params {
 *         uint64_t heartbeat_s;
 *         int verify;
 *         char *cacert;            // sl_malloc'd; the engine frees it
 *     } my_params;
 *
 *     static const sl_url_enum verify_values[] = {
 *         {"full", VERIFY_FULL}, {"peer", VERIFY_PEER}, {"none", VERIFY_NONE},
 *         {NULL, 0}};
 *
 *     static const sl_url_param my_url_params[] = {
 *         SL_URL_UINT("heartbeat", my_params, heartbeat_s, 0, 65535,
 *                     "heartbeat interval in seconds (0: none)"),
 *         SL_URL_ENUM("verify", my_params, verify, verify_values,
 *                     "TLS verification: full, peer or none"),
 *         SL_URL_CUSTOM("cacert", SL_URL_PARAM_STRING, set_cacert,
 *                       "CA bundle file (must be readable)"),
 *     };
 *
 *     my_params p = {.heartbeat_s = 60, .verify = VERIFY_FULL};
 *     st = sl__url_params_parse(my_url_params, SL_URL_PARAMS_COUNT(
 *                                   my_url_params), query, &p,
 *                               "engine URL", diag);
 *
 * A setter (SL_URL_CUSTOM) receives the value checked for its kind and
 * does what a plain store cannot: validate further (a file exists, a
 * secret reference), set several fields, remember that the parameter was
 * given.
 */
#ifndef SLUICE_ENGINE_URL_PARAMS_H
#define SLUICE_ENGINE_URL_PARAMS_H

#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What a parameter's value is. */
typedef enum sl_url_param_kind {
    /* A whole decimal number in [min, max], stored in an unsigned integer
     * field of 1, 2, 4 or 8 bytes. */
    SL_URL_PARAM_UINT,
    /* true/false, 1/0, yes/no, on/off; a bare name ("?tls") is true.
     * Stored in a bool. */
    SL_URL_PARAM_BOOL,
    /* A duration as sl_duration_parse_ms reads it ("250ms", "5s", "2m";
     * a plain number is milliseconds), in [min, max] ms, stored in an
     * unsigned integer field like SL_URL_PARAM_UINT. */
    SL_URL_PARAM_DURATION,
    /* Any text, stored as a sl_malloc'd copy in a char * field (a value
     * given before is freed). */
    SL_URL_PARAM_STRING,
    /* One of the names of @c values, stored as its value in an integer (or
     * enum) field. */
    SL_URL_PARAM_ENUM,
} sl_url_param_kind;

/** One accepted value of an SL_URL_PARAM_ENUM; a table ends with
 * {NULL, 0}. */
typedef struct sl_url_enum {
    const char *name;
    int value;
} sl_url_enum;

/** A checked value, as a setter receives it. */
typedef union sl_url_value {
    uint64_t u;    /* UINT, DURATION (ms) */
    bool b;        /* BOOL */
    int e;         /* ENUM: the sl_url_enum value */
    const char *s; /* STRING: decoded; valid during the call only */
} sl_url_value;

typedef struct sl_url_param sl_url_param;

/** Apply a parameter's checked value to @p dst. Return SL_OK, or a status
 * with the reason in @p diag (a message naming the parameter). */
typedef sl_status (*sl_url_param_set_fn)(void *dst, const sl_url_param *param,
                                         const sl_url_value *value,
                                         sl_diag *diag);

/** One parameter of an engine URL. Build with the SL_URL_* macros. */
struct sl_url_param {
    const char *name;
    sl_url_param_kind kind;
    size_t offset; /* of the field in the destination struct (no setter) */
    size_t size;   /* of that field, in bytes */
    uint64_t min;  /* UINT, DURATION: smallest accepted value */
    uint64_t max;  /* UINT, DURATION: largest accepted value */
    const sl_url_enum *values; /* ENUM: the accepted names */
    sl_url_param_set_fn set;   /* optional: called instead of storing */
    bool secret;               /* never repeat the value in a message */
    bool not_empty;            /* STRING: an empty value is refused */
    const char *doc;           /* one line for reference documentation */
};

#define SL_URL_FIELD_(type, field)                                             \
    .offset = offsetof(type, field), .size = sizeof(((type *)0)->field)

/** A whole number in [lo, hi] into @p field of struct @p type. */
#define SL_URL_UINT(name_, type, field, lo, hi, doc_)                          \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_UINT,                            \
        SL_URL_FIELD_(type, field), .min = (lo), .max = (hi), .doc = (doc_)    \
    }

/** A bool into @p field. */
#define SL_URL_BOOL(name_, type, field, doc_)                                  \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_BOOL,                            \
        SL_URL_FIELD_(type, field), .doc = (doc_)                              \
    }

/** A duration in [lo_ms, hi_ms] into @p field, in milliseconds. */
#define SL_URL_DURATION(name_, type, field, lo_ms, hi_ms, doc_)                \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_DURATION,                        \
        SL_URL_FIELD_(type, field), .min = (lo_ms), .max = (hi_ms),            \
        .doc = (doc_)                                                          \
    }

/** A non-empty string into the char * @p field (sl_malloc'd). */
#define SL_URL_STRING(name_, type, field, doc_)                                \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_STRING,                          \
        SL_URL_FIELD_(type, field), .not_empty = true, .doc = (doc_)           \
    }

/** One of @p values (an sl_url_enum table) into the integer @p field. */
#define SL_URL_ENUM(name_, type, field, values_, doc_)                         \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_ENUM,                            \
        SL_URL_FIELD_(type, field), .values = (values_), .doc = (doc_)         \
    }

/** A value of @p kind_, checked, handed to @p set_ (UINT and DURATION:
 * any value; SL_URL_CUSTOM_RANGE bounds them). */
#define SL_URL_CUSTOM(name_, kind_, set_, doc_)                                \
    SL_URL_CUSTOM_RANGE(name_, kind_, 0, UINT64_MAX, set_, doc_)

/** A UINT or DURATION in [lo, hi], handed to @p set_. */
#define SL_URL_CUSTOM_RANGE(name_, kind_, lo, hi, set_, doc_)                  \
    {                                                                          \
        .name = (name_), .kind = (kind_), .set = (set_), .min = (lo),          \
        .max = (hi), .doc = (doc_)                                             \
    }

/** A string handed to @p set_ and never repeated in a message (a
 * password reference, a token). */
#define SL_URL_CUSTOM_SECRET(name_, set_, doc_)                                \
    {                                                                          \
        .name = (name_), .kind = SL_URL_PARAM_STRING, .set = (set_),           \
        .secret = true, .doc = (doc_)                                          \
    }

/** Entries of a table defined as an array. */
#define SL_URL_PARAMS_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/** The most parameters a table may have. */
#define SL_URL_PARAMS_MAX 64

/**
 * Parse a URL query against a table of parameters.
 *
 * @param[in]  params   the engine's table (at most SL_URL_PARAMS_MAX).
 * @param[in]  n        its entries.
 * @param[in]  query    what follows '?' (not the '?' itself); "name=value"
 *                      pairs separated by '&', empty pairs ignored; NULL or
 *                      "" is an empty query. Names and values are
 *                      percent-decoded ("%2F"; '+' stays a '+').
 * @param[in,out] dst   the struct the table's offsets point into; fields of
 *                      parameters absent from @p query are left alone, so
 *                      the caller sets defaults first.
 * @param[in]  context  starts every message, as "<context>: ..." (say
 *                      "engine URL", or the URL with credentials redacted);
 *                      NULL selects "engine URL".
 * @param[out] diag     the reason of a failure, naming the parameter.
 * @return SL_OK; SL_INVALID for an unknown parameter (with the closest
 *         name, if one is close), a bad value (with the accepted range or
 *         choices), a parameter given twice or bad percent-encoding;
 *         SL_NOMEM; what a setter returned. On failure @p dst may hold the
 *         parameters before the bad one (strings included: free them).
 *         SL_INTERNAL for a table longer than SL_URL_PARAMS_MAX.
 *
 * Pure: reads and writes only its arguments; any thread.
 */
sl_status sl__url_params_parse(const sl_url_param *params, size_t n,
                               const char *query, void *dst,
                               const char *context, sl_diag *diag);

#endif
