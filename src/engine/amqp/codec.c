/* The RabbitMQ engine's codec: an AMQP message (properties, headers,
 * body) to an sl_event and an event to the message's parts. Pure: it
 * reads and writes rabbitmq-c's structs and sluice events, never the
 * engine, the connection or the clock beyond a fresh id's time. */
#include "engine/amqp/amqp_int.h"

#include "sluice/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

char *sl__amqp_dup_bytes(amqp_bytes_t b)
{
    return sl_strndup(b.bytes ? (const char *)b.bytes : "", b.len);
}

/* @p b as a C string: in @p buf when it fits, else allocated (NULL when
 * out of memory). Free with cstr_free(). */
static char *bytes_cstr(amqp_bytes_t b, char *buf, size_t size)
{
    if (b.len >= size) {
        return sl__amqp_dup_bytes(b);
    }
    if (b.len > 0) {
        memcpy(buf, b.bytes, b.len);
    }
    buf[b.len] = '\0';
    return buf;
}

static void cstr_free(char *s, const char *buf)
{
    if (s != buf) {
        sl_free(s);
    }
}

void sl__amqp_pub_free(apub *p)
{
    sl_free(p); /* everything is in one allocation: see pub_build */
}

/* The CloudEvents headers of an event, collected before the record is
 * allocated: "name\0value\0" pairs in a buffer that starts on the stack. */
typedef struct hdr_scratch {
    char *buf;
    size_t len, cap;
    size_t n;
    bool heap;
    char stack[2048];
} hdr_scratch;

static sl_status add_hdr(const char *name, const char *value, void *ctx)
{
    hdr_scratch *hs = ctx;
    size_t ln = strlen(name) + 1, lv = strlen(value) + 1;
    if (hs->len + ln + lv > hs->cap) {
        size_t cap = (hs->cap + ln + lv) * 2;
        char *b = hs->heap ? sl_realloc(hs->buf, cap) : sl_malloc(cap);
        if (b == NULL) {
            return SL_NOMEM;
        }
        if (!hs->heap) {
            memcpy(b, hs->buf, hs->len);
        }
        hs->buf = b;
        hs->cap = cap;
        hs->heap = true;
    }
    memcpy(hs->buf + hs->len, name, ln);
    memcpy(hs->buf + hs->len + ln, value, lv);
    hs->len += ln + lv;
    hs->n++;
    return SL_OK;
}

/* Bytes a string takes in the record (0 for NULL). */
static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copy @p s to *@p at and advance it; NULL stays NULL. */
static char *put_str(char **at, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = memcpy(*at, s, n);
    *at += n;
    return d;
}

/* Build the message of @p ev for @p exchange / @p rkey; @p dedup_id (may
 * be NULL) is recorded on confirm. One allocation holds the record, its
 * I/O request, the headers, the strings and the body: at tens of
 * thousands of publishes a second the thirty-odd small allocations this
 * used to make showed in the profile. */
sl_status sl__amqp_pub_build(const sl_event *ev, const char *exchange,
                             const char *rkey, uint64_t uid, uint32_t attempts,
                             const char *dedup_id, apub **out)
{
    hdr_scratch hs = {.len = 0, .n = 0, .heap = false};
    hs.buf = hs.stack;
    hs.cap = sizeof hs.stack;
    sl_status st = sl_ce_to_headers(ev, CE_PREFIX, add_hdr, &hs);
    if (st != SL_OK) {
        goto done;
    }
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    const char *id = sl_event_id(ev);
    const char *type = sl_event_type(ev);
    const char *src = sl_event_get(ev, SL_ATTR_SOURCE);
    const char *corr = sl_event_get(ev, SL_ATTR_CORRELATIONID);
    size_t size = sizeof(apub) + hs.n * sizeof(hdr) + hs.len +
                  str_size(exchange) + str_size(rkey) + str_size(ct) +
                  str_size(id) + str_size(type) + str_size(src) +
                  str_size(corr) + str_size(dedup_id) + len;
    apub *p = sl_malloc(size);
    if (p == NULL) {
        st = SL_NOMEM;
        goto done;
    }
    memset(p, 0, sizeof *p);
    p->hdrs = (hdr *)(void *)(p + 1);
    p->nhdrs = hs.n;
    char *at = (char *)(p->hdrs + hs.n);
    memcpy(at, hs.buf, hs.len);
    for (size_t i = 0; i < hs.n; i++) {
        p->hdrs[i].name = at;
        at += strlen(at) + 1;
        p->hdrs[i].value = at;
        at += strlen(at) + 1;
    }
    p->exchange = put_str(&at, exchange);
    p->rkey = put_str(&at, rkey);
    p->content_type = put_str(&at, ct);
    p->message_id = put_str(&at, id);
    p->type = put_str(&at, type);
    p->app_id = put_str(&at, src);
    p->correlation_id = put_str(&at, corr);
    p->dedup_id = put_str(&at, dedup_id);
    p->body = at;
    if (len) {
        memcpy(p->body, data, len);
    }
    p->body_len = len;
    p->uid = uid;
    p->attempts = attempts;
    p->mandatory = true;
    p->timestamp_s = sl_event_time_ms(ev) / 1000;
    p->req.kind = REQ_PUBLISH;
    p->req.pub = p;
    *out = p;
done:
    if (hs.heap) {
        sl_free(hs.buf);
    }
    return st;
}

/* The properties of @p p's message: its event's CloudEvents headers (at
 * most PUB_MAX_HEADERS - 4 of them) and the engine's uid and attempts in
 * @p entries, the plain AMQP properties an AMQP consumer reads, persistent
 * delivery. @p props points into @p p and @p entries: it lives as long as
 * they do. */
void sl__amqp_pub_properties(const apub *p, amqp_basic_properties_t *props,
                             amqp_table_entry_t entries[PUB_MAX_HEADERS])
{
    int n = 0;
    for (size_t i = 0; i < p->nhdrs && n < PUB_MAX_HEADERS - 4; i++) {
        entries[n].key = amqp_cstring_bytes(p->hdrs[i].name);
        entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[n].value.value.bytes = amqp_cstring_bytes(p->hdrs[i].value);
        n++;
    }
    entries[n].key = amqp_cstring_bytes(H_UID);
    entries[n].value.kind = AMQP_FIELD_KIND_I64;
    entries[n].value.value.i64 = (int64_t)p->uid;
    n++;
    if (p->attempts > 0) {
        entries[n].key = amqp_cstring_bytes(H_ATTEMPTS);
        entries[n].value.kind = AMQP_FIELD_KIND_I32;
        entries[n].value.value.i32 = (int32_t)p->attempts;
        n++;
    }
    memset(props, 0, sizeof *props);
    props->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props->delivery_mode = 2;
    props->headers.num_entries = n;
    props->headers.entries = entries;
#define PROP(field, flag)                                                      \
    if (p->field != NULL) {                                                    \
        props->_flags |= flag;                                                 \
        props->field = amqp_cstring_bytes(p->field);                           \
    }
    PROP(content_type, AMQP_BASIC_CONTENT_TYPE_FLAG)
    PROP(message_id, AMQP_BASIC_MESSAGE_ID_FLAG)
    PROP(type, AMQP_BASIC_TYPE_FLAG)
    PROP(app_id, AMQP_BASIC_APP_ID_FLAG)
    PROP(correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG)
#undef PROP
    if (p->timestamp_s) {
        props->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        props->timestamp = p->timestamp_s;
    }
}

static int64_t table_int(const amqp_table_t *t, const char *key, bool *found)
{
    *found = false;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *en = &t->entries[i];
        if (en->key.len != strlen(key) ||
            memcmp(en->key.bytes, key, en->key.len) != 0) {
            continue;
        }
        *found = true;
        switch (en->value.kind) {
        case AMQP_FIELD_KIND_I8:
            return en->value.value.i8;
        case AMQP_FIELD_KIND_U8:
            return en->value.value.u8;
        case AMQP_FIELD_KIND_I16:
            return en->value.value.i16;
        case AMQP_FIELD_KIND_U16:
            return en->value.value.u16;
        case AMQP_FIELD_KIND_I32:
            return en->value.value.i32;
        case AMQP_FIELD_KIND_U32:
            return en->value.value.u32;
        case AMQP_FIELD_KIND_I64:
            return en->value.value.i64;
        case AMQP_FIELD_KIND_U64:
            return (int64_t)en->value.value.u64;
        default:
            *found = false;
            return 0;
        }
    }
    return 0;
}

/* An event from a message: CloudEvents binary mode, or a plain AMQP
 * message mapped from its properties.
 *
 * A message with no id (no cloudEvents:id, no message_id: what most AMQP
 * producers send) gets a new UUIDv7. A quorum queue gives a message no
 * identity of its own that survives a redelivery (delivery tags restart at
 * 1 on every AMQP channel and connection, and nothing else is stable), so
 * whatever an id were derived from, distinct messages could share it and
 * an inbox would skip all but one of them. A fresh id per delivery never
 * collides; the price is that an inbox cannot recognise a broker
 * redelivery (a crash, a closed subscription) of such a message. A retry
 * republishes the event, id included, so retries keep it. */
sl_status sl__amqp_message_to_event(const amqp_message_t *m,
                                    const char *fallback_source, sl_event **out)
{
    sl_event *ev = NULL;
    sl_status st = sl_event_create(&ev);
    if (st != SL_OK) {
        return st;
    }
    const amqp_basic_properties_t *pr = &m->properties;
    bool has_ce = false;
    if (pr->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < pr->headers.num_entries && st == SL_OK; i++) {
            const amqp_table_entry_t *en = &pr->headers.entries[i];
            if (en->key.len <= strlen(CE_PREFIX) ||
                strncasecmp(en->key.bytes, CE_PREFIX, strlen(CE_PREFIX)) != 0) {
                continue;
            }
            /* Most names and values fit on the stack: no allocation per
             * header (a delivery carries a dozen). */
            char kbuf[128], vbuf[512];
            char *k = bytes_cstr(en->key, kbuf, sizeof kbuf);
            char *v = NULL;
            char num[32];
            if (en->value.kind == AMQP_FIELD_KIND_UTF8 ||
                en->value.kind == AMQP_FIELD_KIND_BYTES) {
                v = bytes_cstr(en->value.value.bytes, vbuf, sizeof vbuf);
            } else {
                bool f = false;
                amqp_table_t one = {.num_entries = 1,
                                    .entries = (amqp_table_entry_t *)en};
                char kz[64];
                snprintf(kz, sizeof kz, "%.*s", (int)en->key.len,
                         (const char *)en->key.bytes);
                int64_t x = table_int(&one, kz, &f);
                if (!f) {
                    cstr_free(k, kbuf);
                    continue;
                }
                snprintf(num, sizeof num, "%" PRId64, x);
                v = num;
            }
            if (k == NULL || v == NULL) {
                st = SL_NOMEM;
            } else {
                sl_status hs = sl_ce_from_header(ev, CE_PREFIX, k, v, NULL);
                if (hs == SL_NOMEM) {
                    st = hs;
                }
                has_ce = true;
            }
            cstr_free(k, kbuf);
            if (v != num) {
                cstr_free(v, vbuf);
            }
        }
    }
    char fresh_id[37];
    if (st == SL_OK && !has_ce) {
        char *id = NULL;
        if (pr->_flags & AMQP_BASIC_MESSAGE_ID_FLAG && pr->message_id.len > 0) {
            id = sl__amqp_dup_bytes(pr->message_id);
        } else {
            sl_uuid7(fresh_id, sl_time_wall_ms());
            id = sl_strdup(fresh_id);
        }
        char *type = (pr->_flags & AMQP_BASIC_TYPE_FLAG && pr->type.len)
                         ? sl__amqp_dup_bytes(pr->type)
                         : sl_strdup("amqp.message");
        char *src = (pr->_flags & AMQP_BASIC_APP_ID_FLAG && pr->app_id.len)
                        ? sl__amqp_dup_bytes(pr->app_id)
                        : sl_strdup(fallback_source);
        if (id == NULL || type == NULL || src == NULL) {
            st = SL_NOMEM;
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_ID, id);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_TYPE, type);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SOURCE, src);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SPECVERSION, "1.0");
        }
        if (st == SL_OK && pr->_flags & AMQP_BASIC_TIMESTAMP_FLAG) {
            st = sl_event_set_time_ms(ev, pr->timestamp * 1000);
        }
        if (st == SL_OK && pr->_flags & AMQP_BASIC_CORRELATION_ID_FLAG &&
            pr->correlation_id.len) {
            char *c = sl__amqp_dup_bytes(pr->correlation_id);
            st = c ? sl_event_set(ev, SL_ATTR_CORRELATIONID, c) : SL_NOMEM;
            sl_free(c);
        }
        sl_free(id);
        sl_free(type);
        sl_free(src);
    } else if (st == SL_OK) {
        /* cloudEvents: headers that leave out a required attribute get
         * what a plain message would: the event stays valid. */
        if (sl_event_id(ev) == NULL) {
            sl_uuid7(fresh_id, sl_time_wall_ms());
            st = sl_event_set(ev, SL_ATTR_ID, fresh_id);
        }
        if (st == SL_OK && sl_event_get(ev, SL_ATTR_TYPE) == NULL) {
            st = sl_event_set(ev, SL_ATTR_TYPE, "amqp.message");
        }
        if (st == SL_OK && sl_event_get(ev, SL_ATTR_SOURCE) == NULL) {
            st = sl_event_set(ev, SL_ATTR_SOURCE, fallback_source);
        }
        if (st == SL_OK && sl_event_get(ev, SL_ATTR_SPECVERSION) == NULL) {
            st = sl_event_set(ev, SL_ATTR_SPECVERSION, "1.0");
        }
    }
    if (st == SL_OK && pr->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG &&
        pr->content_type.len &&
        sl_event_get(ev, SL_ATTR_DATACONTENTTYPE) == NULL) {
        char *c = sl__amqp_dup_bytes(pr->content_type);
        st = c ? sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, c) : SL_NOMEM;
        sl_free(c);
    }
    if (st == SL_OK) {
        st = sl_event_set_data(ev, m->body.bytes, m->body.len);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}

void sl__amqp_read_counts(const amqp_message_t *m, uint64_t *uid,
                          uint32_t *delivery_count, uint32_t *base)
{
    *uid = 0;
    *delivery_count = 0;
    *base = 0;
    if (!(m->properties._flags & AMQP_BASIC_HEADERS_FLAG)) {
        return;
    }
    bool f = false;
    int64_t v = table_int(&m->properties.headers, H_UID, &f);
    *uid = f ? (uint64_t)v : 0;
    v = table_int(&m->properties.headers, H_DELIVERY_COUNT, &f);
    *delivery_count = f && v > 0 ? (uint32_t)v : 0;
    v = table_int(&m->properties.headers, H_ATTEMPTS, &f);
    *base = f && v > 0 ? (uint32_t)v : 0;
}
