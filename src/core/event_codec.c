/* sluice — CloudEvents binary mode: the one attribute <-> header mapping.
 *
 * Every protocol binding (HTTP and NATS "ce-", Kafka "ce_", AMQP
 * "cloudEvents:") goes through these two functions, so an attribute means
 * the same thing on every engine. Escaping that a protocol needs on top
 * (HTTP percent-encoding of non-ASCII values) belongs to that binding.
 */
#include "sluice/event.h"

#include "core/event_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Longest header name we build: a binding prefix plus an attribute name of
 * at most 20 characters. */
#define HEADER_NAME_MAX 128u
#define ATTR_NAME_MAX 20u

/* ASCII only, so that a Turkish locale cannot turn "I" into a dotless i. */
static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool has_prefix_nocase(const char *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || ascii_lower(s[i]) != ascii_lower(prefix[i])) {
            return false;
        }
    }
    return true;
}

static sl_status emit(sl_ce_header_fn fn, void *ctx, char *name,
                      size_t prefix_len, const char *attr, const char *value)
{
    size_t n = strlen(attr);
    memcpy(name + prefix_len, attr, n + 1);
    return fn(name, value, ctx);
}

sl_status sl_ce_to_headers(const sl_event *ev, const char *prefix,
                           sl_ce_header_fn fn, void *ctx)
{
    char name[HEADER_NAME_MAX];
    sl_status st;

    if (ev == NULL || prefix == NULL || fn == NULL) {
        return SL_INVALID;
    }
    size_t plen = strlen(prefix);
    if (plen > HEADER_NAME_MAX - ATTR_NAME_MAX - 1) {
        return SL_INVALID;
    }
    memcpy(name, prefix, plen);

    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        const char *v = sl_event_get(ev, (sl_attr)i);
        if (v != NULL) {
            st = emit(fn, ctx, name, plen, sl_attr_name((sl_attr)i), v);
            if (st != SL_OK) {
                return st;
            }
        }
    }
    uint64_t time_ms = sl_event_time_ms(ev);
    if (time_ms != 0) {
        char buf[32];
        sl_time_format_rfc3339(time_ms, buf);
        if ((st = emit(fn, ctx, name, plen, "time", buf)) != SL_OK) {
            return st;
        }
    }
    uint64_t deadline_ms = sl_event_deadline_ms(ev);
    if (deadline_ms != 0) {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRIu64, deadline_ms);
        if ((st = emit(fn, ctx, name, plen, "deadline", buf)) != SL_OK) {
            return st;
        }
    }
    size_t n_ext = sl_event_ext_count(ev);
    for (size_t i = 0; i < n_ext; i++) {
        const char *ext_name;
        const char *ext_value;
        sl_event_ext_at(ev, i, &ext_name, &ext_value);
        if ((st = emit(fn, ctx, name, plen, ext_name, ext_value)) != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

/* The attribute of header @p name (whose prefix ends at @p rest) =
 * @p value, of @p value_len bytes. */
static sl_status from_header(sl_event *ev, const char *name, const char *rest,
                             const char *value, size_t value_len, sl_diag *diag)
{
    char attr[ATTR_NAME_MAX + 1];

    /* Attribute names are lower-case; header names are not, on any of the
     * bindings' wire formats we receive from. */
    size_t n = 0;
    for (; rest[n] != '\0'; n++) {
        if (n == ATTR_NAME_MAX) {
            break;
        }
        attr[n] = ascii_lower(rest[n]);
    }
    if (n == 0 || rest[n] != '\0') {
        return sl_diag_set(diag, SL_INVALID,
                           "header '%s' does not name an attribute", name);
    }
    attr[n] = '\0';

    if (n == 11 && memcmp(attr, "specversion", 11) == 0 &&
        (value_len != 3 || memcmp(value, "1.0", 3) != 0)) {
        return sl_diag_set(diag, SL_INVALID,
                           "header '%s': specversion '%s' is not 1.0", name,
                           value);
    }
    sl_status st = sl__event_set_attr(ev, attr, n, value, value_len);
    switch (st) {
    case SL_OK:
        return SL_OK;
    case SL_FULL:
        return sl_diag_set(diag, st, "header '%s': more than %d extensions",
                           name, SL_EVENT_MAX_EXTENSIONS);
    case SL_INVALID:
        if (strcmp(attr, "time") == 0) {
            return sl_diag_set(diag, st,
                               "header '%s': '%s' is not an RFC 3339 time",
                               name, value);
        }
        if (strcmp(attr, "deadline") == 0) {
            return sl_diag_set(diag, st,
                               "header '%s': '%s' is not a deadline in ms",
                               name, value);
        }
        return sl_diag_set(diag, st,
                           "header '%s': invalid attribute name, or the "
                           "event is shared",
                           name);
    default:
        return sl_diag_set(diag, st, "header '%s': %s", name,
                           sl_status_str(st));
    }
}

sl_status sl_ce_from_header(sl_event *ev, const char *prefix, const char *name,
                            const char *value, sl_diag *diag)
{
    if (ev == NULL || prefix == NULL || name == NULL) {
        return sl_diag_set(diag, SL_INVALID, "NULL argument");
    }
    size_t plen = strlen(prefix);
    if (!has_prefix_nocase(name, prefix, plen)) {
        return SL_NOT_FOUND;
    }
    if (value == NULL) {
        return sl_diag_set(diag, SL_INVALID, "header '%s' has no value", name);
    }
    return from_header(ev, name, name + plen, value, strlen(value), diag);
}

sl_status sl__ce_from_header_n(sl_event *ev, size_t prefix_len,
                               const char *name, const char *value,
                               size_t value_len)
{
    return from_header(ev, name, name + prefix_len, value, value_len, NULL);
}
