/* The NATS engine's codec (nats_int.h): events to messages and back,
 * in CloudEvents binary mode ("ce-" headers) or, for a message of a
 * producer that knows nothing of sluice, from its subject, Nats-Msg-Id
 * and place in the stream. Pure: no connection and no engine, so that
 * unit tests and a fuzzer drive it with messages built in memory.
 */
#include "engine/nats/nats_int.h"

#include "core/event_internal.h"
#include "sluice/alloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NATS header values cannot hold CR or LF: '%', control bytes and DEL are
 * percent-encoded, as the CloudEvents HTTP binding does. */
static bool needs_pct(unsigned char c)
{
    return c == '%' || c < 0x20 || c == 0x7f;
}

static char *pct_encode(const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        n += needs_pct(*p) ? 3 : 1;
    }
    char *out = sl_malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (needs_pct(*p)) {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 0x0f];
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)tolower((unsigned char)c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static char *pct_decode(const char *v)
{
    char *out = sl_malloc(strlen(v) + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (const char *p = v; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* Whether @p v holds a byte that needs_pct: eight bytes at a time (a
 * header value is scanned once per publish, and byte by byte this was a
 * tenth of the engine's own instructions per event). The classic bit
 * tricks: a byte below 0x20, or equal to '%' or DEL, sets the high bit
 * of its lane; bytes of 0x80 and above never do. */
static bool any_needs_pct(const char *v)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    size_t n = strlen(v), i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, sizeof w);
        uint64_t pct = w ^ (ones * '%'), del = w ^ (ones * 0x7f);
        uint64_t hit = ((w - ones * 0x20) & ~w) | ((pct - ones) & ~pct) |
                       ((del - ones) & ~del);
        if (hit & highs) {
            return true;
        }
    }
    for (; i < n; i++) {
        if (needs_pct((unsigned char)v[i])) {
            return true;
        }
    }
    return false;
}

/* Most values need no encoding and go to nats.c (which copies them) as
 * they are; only the others cost an encoded copy. */
static sl_status add_header(const char *name, const char *value, void *ctx)
{
    if (!any_needs_pct(value)) {
        return sl__nats_status(natsMsgHeader_Set((natsMsg *)ctx, name, value));
    }
    char *enc = pct_encode(value);
    if (enc == NULL) {
        return SL_NOMEM;
    }
    natsStatus s = natsMsgHeader_Set((natsMsg *)ctx, name, enc);
    sl_free(enc);
    return sl__nats_status(s);
}

sl_status sl__nats_event_to_msg(const sl_event *ev, const char *subject,
                                bool dedup, natsMsg **out)
{
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s != NATS_OK) {
        return sl__nats_status(s);
    }
    sl_status st = sl_ce_to_headers(ev, CE_PREFIX, add_header, m);
    if (st == SL_OK && dedup) {
        st = sl__nats_status(
            natsMsgHeader_Set(m, "Nats-Msg-Id", sl_event_id(ev)));
    }
    if (st != SL_OK) {
        natsMsg_Destroy(m);
        return st;
    }
    *out = m;
    return SL_OK;
}

/* True for a "ce-" header, in any case. */
static bool is_ce_header(const char *k)
{
    return (k[0] | 0x20) == 'c' && (k[1] | 0x20) == 'e' && k[2] == '-';
}

/* The ce- headers of a delivery, read before its event is made so that
 * the event is sized for them. More than an event can hold (its
 * attributes, time, deadline and SL_EVENT_MAX_EXTENSIONS) make it
 * unreadable. */
#define CE_HEADERS_MAX (SL_ATTR_COUNT_ + 2 + SL_EVENT_MAX_EXTENSIONS)

typedef struct ce_headers {
    const char **keys; /* from nats.c; free() */
    const char *key[CE_HEADERS_MAX];
    const char *value[CE_HEADERS_MAX];
    size_t value_len[CE_HEADERS_MAX];
    size_t n;
    bool too_many;
    size_t bytes; /* the names and values, each with a NUL */
} ce_headers;

static void ce_headers_read(natsMsg *m, ce_headers *h)
{
    int nkeys = 0;
    h->keys = NULL;
    h->n = 0;
    h->too_many = false;
    h->bytes = 0;
    if (natsMsgHeader_Keys(m, &h->keys, &nkeys) != NATS_OK) {
        h->keys = NULL; /* no headers */
        return;
    }
    for (int i = 0; i < nkeys; i++) {
        const char *v = NULL;
        if (!is_ce_header(h->keys[i]) ||
            natsMsgHeader_Get(m, h->keys[i], &v) != NATS_OK) {
            continue;
        }
        if (h->n == CE_HEADERS_MAX) {
            h->too_many = true;
            return;
        }
        v = v ? v : "";
        size_t len = strlen(v);
        h->key[h->n] = h->keys[i];
        h->value[h->n] = v;
        h->value_len[h->n++] = len;
        h->bytes += strlen(h->keys[i]) + len + 2;
    }
}

/* The attributes of @p h into @p ev. A value without '%' (the usual case)
 * is read in place. */
static sl_status ce_headers_apply(const ce_headers *h, sl_event *ev)
{
    for (size_t i = 0; i < h->n; i++) {
        const char *v = h->value[i];
        size_t len = h->value_len[i];
        char *dec = NULL;
        if (memchr(v, '%', len) != NULL) {
            if ((v = dec = pct_decode(v)) == NULL) {
                return SL_NOMEM;
            }
            len = strlen(dec);
        }
        sl_status st =
            sl__ce_from_header_n(ev, strlen(CE_PREFIX), h->key[i], v, len);
        sl_free(dec);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

/* The id of a message that carries none (no ce-id, no Nats-Msg-Id): its
 * place in the stream, "<stream>-<stream created, ns since the
 * epoch>-<sequence>". Every delivery of the message carries the same id, so an
 * inbox recognises a redelivery. A sequence is never reused within a stream,
 * but a stream deleted and declared again starts over at 1 while an inbox
 * remembers ids for a day: the creation time keeps the two streams' ids apart.
 */
static void plain_id(char *buf, size_t size, const char *stream,
                     uint64_t created_ns, uint64_t seq)
{
    snprintf(buf, size, "%s-%" PRIu64 "-%" PRIu64, stream, created_ns, seq);
}

/* A stream's creation time, nanoseconds since the epoch (0 if unknown). */
uint64_t sl__nats_created_ns(const jsStreamInfo *si)
{
    return si->Created > 0 ? (uint64_t)si->Created : 0;
}

/* An event from a delivered message: CloudEvents binary mode, or a plain
 * message (id from Nats-Msg-Id or plain_id(), type "nats.message",
 * source the subject). A CloudEvent whose producer left out ce-id gets
 * plain_id() too. The event is sized for its data and attributes: one
 * allocation. */
sl_status sl__nats_msg_to_event(natsMsg *m, const char *stream,
                                uint64_t created_ns, uint64_t seq,
                                sl_event **out)
{
    ce_headers h;
    ce_headers_read(m, &h);
    size_t data_len = (size_t)natsMsg_GetDataLength(m);
    /* The plain-message attributes, when there is no ce- header. */
    size_t plain = h.n == 0 ? 320 : 0;
    sl_event *ev = NULL;
    sl_status st =
        h.too_many ? SL_FULL
                   : sl__event_create_sized(data_len + h.bytes + plain, &ev);
    if (st == SL_OK) {
        st = ce_headers_apply(&h, ev);
    }
    free((void *)h.keys); /* allocated by nats.c with malloc */
    char idbuf[320];
    if (st == SL_OK && h.n == 0) {
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK || id == NULL ||
            id[0] == '\0') {
            plain_id(idbuf, sizeof idbuf, stream, created_ns, seq);
            id = idbuf;
        }
        if ((st = sl_event_set(ev, SL_ATTR_ID, id)) == SL_OK &&
            (st = sl_event_set(ev, SL_ATTR_TYPE, "nats.message")) == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SOURCE, natsMsg_GetSubject(m));
        }
        if (st == SL_OK) {
            st =
                sl_ce_from_header(ev, CE_PREFIX, "ce-specversion", "1.0", NULL);
        }
    } else if (st == SL_OK && sl_event_id(ev) == NULL) {
        plain_id(idbuf, sizeof idbuf, stream, created_ns, seq);
        st = sl_event_set(ev, SL_ATTR_ID, idbuf);
    }
    if (st == SL_OK) {
        st = sl_event_set_data(ev, natsMsg_GetData(m), data_len);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}
