/* The RabbitMQ engine's topology: exchanges for channels, quorum queues
 * for groups, retry queues, what the engine remembers to declare again
 * after a reconnect, and the broker's "inequivalent arg" refusals in
 * sluice's terms (pure: tested without a broker). */
#include "engine/amqp/amqp_int.h"

#include "core/hash.h"

#include "sluice/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* A cursor over the refusal text. */
typedef struct cur {
    const char *p;
    const char *end;
} cur;

static bool eat(cur *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) {
        return false;
    }
    c->p += n;
    return true;
}

/* Up to (not including) @p stop; the span goes to @p s / @p n. */
static bool until(cur *c, const char *stop, const char **s, size_t *n)
{
    size_t k = strlen(stop);
    for (const char *q = c->p; q + k <= c->end; q++) {
        if (memcmp(q, stop, k) == 0) {
            *s = c->p;
            *n = (size_t)(q - c->p);
            c->p = q;
            return true;
        }
    }
    return false;
}

/* A value: "none", "the value 'X' of type 'T'" or "'X'", ending where
 * @p after begins (or at the end when @p after is NULL). A NULL *s means
 * none. */
static bool value(cur *c, const char *after, const char **s, size_t *n)
{
    if (eat(c, "none")) {
        *s = NULL;
        *n = 0;
        return true;
    }
    if (eat(c, "the value '")) {
        const char *t;
        size_t tn;
        return until(c, "' of type '", s, n) && eat(c, "' of type '") &&
               until(c, "'", &t, &tn) && eat(c, "'");
    }
    if (!eat(c, "'")) {
        return false;
    }
    if (after == NULL) {
        /* The rest up to its closing quote (the last one). */
        const char *q = c->end;
        while (q > c->p && q[-1] != '\'') {
            q--;
        }
        if (q == c->p) {
            return false;
        }
        *s = c->p;
        *n = (size_t)(q - 1 - c->p);
        c->p = q;
        return true;
    }
    char stop[64];
    snprintf(stop, sizeof stop, "'%s", after);
    return until(c, stop, s, n) && eat(c, "'");
}

/* What a RabbitMQ argument is in sluice's configuration. */
static const char *meaning(const char *key, size_t n)
{
    static const struct {
        const char *key;
        const char *what;
    } known[] = {
        {"x-max-length", "the channel's max_length"},
        {"x-max-length-bytes", "the channel's max_bytes"},
        {"x-overflow",
         "reject-publish, with the channel's max_length or max_bytes"},
        {"x-delivery-limit", "2 x the group's max_attempts + 20"},
        {"x-dead-letter-exchange", "the group's dead-letter channel"},
        {"x-dead-letter-routing-key", "a retry queue's group"},
        {"x-message-ttl", "a retry queue's delay"},
        {"x-queue-type", "sluice's groups are quorum queues"},
        {"type", "sluice's channels are topic exchanges"},
        {"durable", "sluice declares everything durable"},
        {"auto_delete", "sluice never declares auto-delete"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].key) == n && memcmp(known[i].key, key, n) == 0) {
            return known[i].what;
        }
    }
    return NULL;
}

bool sl__amqp_describe_difference(const char *text, size_t len, char *out,
                                  size_t size)
{
    if (text == NULL || out == NULL || size == 0) {
        return false;
    }
    cur c = {text, text + len};
    const char *key, *kind, *name, *got, *cur_v;
    size_t keyn, kindn, namen, gotn, curn;
    /* "... - inequivalent arg 'K' for KIND 'NAME' in vhost 'V': received
     * VALUE but current is VALUE" */
    const char *tag = "inequivalent arg '";
    const char *hit = NULL;
    for (const char *q = text; q + strlen(tag) <= c.end; q++) {
        if (memcmp(q, tag, strlen(tag)) == 0) {
            hit = q;
            break;
        }
    }
    if (hit == NULL) {
        return false;
    }
    c.p = hit + strlen(tag);
    const char *vh;
    size_t vhn;
    if (!until(&c, "' for ", &key, &keyn) || !eat(&c, "' for ") ||
        !until(&c, " '", &kind, &kindn) || !eat(&c, " '") ||
        !until(&c, "' in vhost '", &name, &namen) || !eat(&c, "' in vhost '") ||
        !until(&c, "': received ", &vh, &vhn) || !eat(&c, "': received ") ||
        !value(&c, " but current is ", &got, &gotn) ||
        !eat(&c, " but current is ") || !value(&c, NULL, &cur_v, &curn)) {
        return false;
    }
    const char *what = meaning(key, keyn);
    char broker[128], wanted[128];
    if (cur_v == NULL) {
        snprintf(broker, sizeof broker, "not set on the broker");
    } else {
        snprintf(broker, sizeof broker, "%.*s on the broker", (int)curn, cur_v);
    }
    if (got == NULL) {
        snprintf(wanted, sizeof wanted, "the configuration wants it unset");
    } else {
        snprintf(wanted, sizeof wanted, "the configuration wants %.*s",
                 (int)gotn, got);
    }
    snprintf(out, size,
             "%.*s '%.*s': %.*s%s%s%s is %s, %s; RabbitMQ cannot change an "
             "existing %.*s: delete it (its messages too) or change the "
             "configuration",
             (int)kindn, kind, (int)namen, name, (int)keyn, key,
             what ? " (" : "", what ? what : "", what ? ")" : "", broker,
             wanted, (int)kindn, kind);
    return true;
}

/* ---- small helpers ----------------------------------------------------------
 */

uint64_t sl__amqp_fnv1a(const char *s)
{
    uint64_t h = sl__hash_fnv1a_str(s, SL_HASH_FNV1A_SEED);
    return h ? h : 1; /* 0 means "no key" to the track table */
}

/* a + b + c + d, freshly allocated. */
char *sl__amqp_cat4(const char *a, const char *b, const char *c, const char *d)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c), ld = strlen(d);
    char *s = sl_malloc(la + lb + lc + ld + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc);
        memcpy(s + la + lb + lc, d, ld);
        s[la + lb + lc + ld] = '\0';
    }
    return s;
}

char *sl__amqp_exchange_name(amqp_engine *e, const char *channel)
{
    return sl__amqp_cat4(ROOT "/", e->ns ? e->ns : "", e->ns ? "/" : "",
                         channel);
}

char *sl__amqp_queue_name(amqp_engine *e, const char *channel,
                          const char *group)
{
    char *x = sl__amqp_exchange_name(e, channel);
    if (x == NULL) {
        return NULL;
    }
    char *q = sl__amqp_cat4(x, "/", group, "");
    sl_free(x);
    return q;
}

achan *sl__amqp_chan_find_locked(amqp_engine *e, const char *name)
{
    for (achan *c = e->chans; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

achan *sl__amqp_chan_remember(amqp_engine *e, const char *name,
                              uint64_t max_length, uint64_t max_bytes,
                              bool declared)
{
    pthread_mutex_lock(&e->mu);
    achan *c = sl__amqp_chan_find_locked(e, name);
    if (c == NULL) {
        c = sl_calloc(1, sizeof *c);
        if (c == NULL || (c->name = sl_strdup(name)) == NULL ||
            (c->exchange = sl__amqp_exchange_name(e, name)) == NULL) {
            if (c) {
                sl_free(c->name);
                sl_free(c);
            }
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        c->next = e->chans;
        e->chans = c;
    }
    if (declared) {
        c->max_length = max_length;
        c->max_bytes = max_bytes;
        c->declared_here = true;
    }
    pthread_mutex_unlock(&e->mu);
    return c;
}

agroup *sl__amqp_group_find_locked(amqp_engine *e, const char *queue)
{
    for (agroup *g = e->groups; g; g = g->next) {
        if (strcmp(g->queue, queue) == 0) {
            return g;
        }
    }
    return NULL;
}

static void group_remember(amqp_engine *e, const char *channel,
                           const char *queue, uint32_t max_attempts)
{
    pthread_mutex_lock(&e->mu);
    agroup *g = sl__amqp_group_find_locked(e, queue);
    if (g == NULL && (g = sl_calloc(1, sizeof *g)) != NULL) {
        if ((g->queue = sl_strdup(queue)) == NULL ||
            (g->channel = sl_strdup(channel)) == NULL) {
            sl_free(g->queue);
            sl_free(g);
            g = NULL;
        } else {
            g->next = e->groups;
            e->groups = g;
        }
    }
    if (g != NULL) {
        g->max_attempts = max_attempts;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Why the broker refused to declare @p kind @p name, into @p diag: an
 * existing entity with other arguments in sluice's terms (which argument,
 * both values: sl__amqp_describe_difference), else the broker's text. */
static void declare_refusal(amqp_rpc_reply_t r, const char *kind,
                            const char *name, sl_diag *diag)
{
    if (diag == NULL || r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION ||
        r.reply.id != AMQP_CHANNEL_CLOSE_METHOD) {
        return;
    }
    amqp_channel_close_t *c = r.reply.decoded;
    const char *text = c->reply_text.bytes ? c->reply_text.bytes : "";
    char msg[sizeof diag->msg];
    uint16_t code = 0;
    sl_status st = sl__amqp_from_reply(r, &code);
    if (c->reply_code == AMQP_PRECONDITION_FAILED &&
        sl__amqp_describe_difference(text, c->reply_text.len, msg,
                                     sizeof msg)) {
        sl_diag_set(diag, st, "%s", msg);
    } else {
        sl_diag_set(diag, st, "%s '%s': %.*s", kind, name,
                    (int)c->reply_text.len, text);
    }
}

sl_status sl__amqp_do_declare_exchange(amqp_engine *e, void *arg)
{
    declare_args *a = arg;
    amqp_exchange_declare(e->conn, ADMIN_CH, amqp_cstring_bytes(a->exchange),
                          amqp_cstring_bytes("topic"), a->passive, 1, 0, 0,
                          amqp_empty_table);
    declare_refusal(amqp_get_rpc_reply(e->conn), "exchange", a->exchange,
                    a->diag);
    return sl__amqp_check_rpc(e, ADMIN_CH);
}

sl_status sl__amqp_do_declare_queue(amqp_engine *e, void *arg)
{
    declare_args *a = arg;
    amqp_table_entry_t en[9];
    int n = 0;
    if (a->ttl_ms == 0) {
        en[n].key = amqp_cstring_bytes("x-queue-type");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = amqp_cstring_bytes("quorum");
        n++;
    }
    if (a->delivery_limit) {
        en[n].key = amqp_cstring_bytes("x-delivery-limit");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = a->delivery_limit;
        n++;
    }
    if (a->max_length) {
        en[n].key = amqp_cstring_bytes("x-max-length");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->max_length;
        n++;
    }
    if (a->max_bytes) {
        /* RabbitMQ counts the bodies: the event's data. */
        en[n].key = amqp_cstring_bytes("x-max-length-bytes");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->max_bytes;
        n++;
    }
    if (a->max_length || a->max_bytes) {
        en[n].key = amqp_cstring_bytes("x-overflow");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = amqp_cstring_bytes("reject-publish");
        n++;
    }
    if (a->dlx) {
        en[n].key = amqp_cstring_bytes("x-dead-letter-exchange");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = amqp_cstring_bytes(a->dlx);
        n++;
    }
    if (a->dl_rkey) {
        en[n].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = amqp_cstring_bytes(a->dl_rkey);
        n++;
    }
    if (a->ttl_ms) {
        en[n].key = amqp_cstring_bytes("x-message-ttl");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->ttl_ms;
        n++;
    }
    amqp_table_t args = {.num_entries = a->passive ? 0 : n, .entries = en};
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(e->conn, ADMIN_CH, amqp_cstring_bytes(a->queue),
                           a->passive, 1, 0, 0, args);
    if (ok != NULL) {
        a->message_count = ok->message_count;
    }
    declare_refusal(amqp_get_rpc_reply(e->conn), "queue", a->queue, a->diag);
    sl_status st = sl__amqp_check_rpc(e, ADMIN_CH);
    if (st != SL_OK || a->passive || a->exchange == NULL) {
        return st;
    }
    amqp_queue_bind(e->conn, ADMIN_CH, amqp_cstring_bytes(a->queue),
                    amqp_cstring_bytes(a->exchange), amqp_cstring_bytes("#"),
                    amqp_empty_table);
    return sl__amqp_check_rpc(e, ADMIN_CH);
}

sl_status sl__amqp_declare_channel(sl_engine *base, const sl_channel_opts *opts,
                                   sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    achan *c = sl__amqp_chan_remember(e, opts->name, opts->max_length,
                                      opts->max_bytes, true);
    if (c == NULL) {
        return SL_NOMEM;
    }
    if (strlen(c->exchange) > 255) {
        return sl_diag_set(diag, SL_TOO_LARGE, "exchange name too long");
    }
    declare_args a = {.exchange = c->exchange, .diag = diag};
    sl_status st = sl__amqp_io_call(e, sl__amqp_do_declare_exchange, &a);
    if (st != SL_OK && diag != NULL && diag->msg[0] != '\0') {
        return st;
    }
    if (st != SL_OK) {
        return sl_diag_set(diag, st,
                           "declaring exchange %s for channel "
                           "'%s': %s",
                           c->exchange, opts->name, sl_status_str(st));
    }
    return SL_OK;
}

/* Remember a declared queue so that a reconnect declares it again. Nodes
 * are only prepended (under e->mu) and never change, so the I/O thread
 * may walk the list from a head read under the lock. */
static sl_status queue_remember(amqp_engine *e, const declare_args *a)
{
    pthread_mutex_lock(&e->mu);
    for (aqueue *q = e->queues; q; q = q->next) {
        if (strcmp(q->queue, a->queue) == 0) {
            pthread_mutex_unlock(&e->mu);
            return SL_OK;
        }
    }
    pthread_mutex_unlock(&e->mu);
    aqueue *q = sl_calloc(1, sizeof *q);
    if (q == NULL || (q->queue = sl_strdup(a->queue)) == NULL ||
        (q->exchange = sl_strdup(a->exchange)) == NULL ||
        (a->dlx != NULL && (q->dlx = sl_strdup(a->dlx)) == NULL)) {
        if (q != NULL) {
            sl_free(q->queue);
            sl_free(q->exchange);
            sl_free(q);
        }
        return SL_NOMEM;
    }
    q->delivery_limit = a->delivery_limit;
    q->max_length = a->max_length;
    q->max_bytes = a->max_bytes;
    pthread_mutex_lock(&e->mu);
    q->next = e->queues;
    e->queues = q;
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

/* Declare @p group's queue on @p channel, bound to the channel's exchange;
 * @p dlq_exchange receives what x-delivery-limit drops. */
static sl_status put_queue(amqp_engine *e, const char *channel,
                           const char *group, uint32_t delivery_limit,
                           const char *dlq_exchange, sl_diag *diag)
{
    pthread_mutex_lock(&e->mu);
    achan *c = sl__amqp_chan_find_locked(e, channel);
    uint64_t max_length = c && c->declared_here ? c->max_length : 0;
    uint64_t max_bytes = c && c->declared_here ? c->max_bytes : 0;
    pthread_mutex_unlock(&e->mu);
    char *x = sl__amqp_exchange_name(e, channel);
    char *q = sl__amqp_queue_name(e, channel, group);
    sl_status st = SL_NOMEM;
    if (x == NULL || q == NULL) {
        goto done;
    }
    if (strlen(q) > 255) {
        st = sl_diag_set(diag, SL_TOO_LARGE, "queue name too long");
        goto done;
    }
    declare_args a = {.exchange = x, .passive = true};
    if ((st = sl__amqp_io_call(e, sl__amqp_do_declare_exchange, &a)) != SL_OK) {
        st = st == SL_NOT_FOUND
                 ? sl_diag_set(diag, SL_NOT_FOUND,
                               "channel '%s' is not declared", channel)
                 : sl_diag_set(diag, st, "exchange %s: %s", x,
                               sl_status_str(st));
        goto done;
    }
    declare_args qa = {.exchange = x,
                       .queue = q,
                       .dlx = dlq_exchange,
                       .max_length = max_length,
                       .max_bytes = max_bytes,
                       .delivery_limit = delivery_limit,
                       .diag = diag};
    st = sl__amqp_io_call(e, sl__amqp_do_declare_queue, &qa);
    if (st != SL_OK && (diag == NULL || diag->msg[0] == '\0')) {
        sl_diag_set(diag, st, "declaring queue %s: %s", q, sl_status_str(st));
    }
    if (st == SL_OK) {
        st = queue_remember(e, &qa);
    }
done:
    sl_free(x);
    sl_free(q);
    return st;
}

sl_status sl__amqp_declare_group(sl_engine *base, const sl_group_opts *opts,
                                 sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    if (sl__is_dlq_channel(opts->channel)) {
        return put_queue(e, opts->channel, opts->name, 0, NULL, diag);
    }
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    char dlq[512];
    if (sl__dlq_channel_name(opts->channel, opts->name, dlq, sizeof dlq) !=
        SL_OK) {
        return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
    }
    sl_channel_opts dco = {.name = dlq};
    sl_status st = sl__amqp_declare_channel(base, &dco, diag);
    if (st == SL_OK) {
        st = put_queue(e, dlq, SL_DLQ_GROUP, 0, NULL, diag);
    }
    char *dlx = sl__amqp_exchange_name(e, dlq);
    char *q = sl__amqp_queue_name(e, opts->channel, opts->name);
    if (dlx == NULL || q == NULL) {
        st = SL_NOMEM;
    }
    /* The broker's backstop sits above max_attempts: releases count there
     * too (docs/engines/rabbitmq.md). */
    uint32_t limit =
        max_attempts > UINT32_MAX / 2 ? UINT32_MAX : max_attempts * 2 + 20;
    if (st == SL_OK) {
        st = put_queue(e, opts->channel, opts->name, limit, dlx, diag);
    }
    if (st == SL_OK) {
        group_remember(e, opts->channel, q, max_attempts);
    }
    sl_free(dlx);
    sl_free(q);
    return st;
}

sl_status sl__amqp_do_declare_retry(amqp_engine *e, void *arg)
{
    retry_args *a = arg;
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRIu64, a->delay_ms);
    a->name = sl__amqp_cat4(a->queue, "/retry/", ms, "");
    if (a->name == NULL) {
        return SL_NOMEM;
    }
    declare_args qa = {.queue = a->name,
                       .dlx = "",
                       .dl_rkey = a->queue,
                       .ttl_ms = a->delay_ms};
    return sl__amqp_do_declare_queue(e, &qa);
}

/* Declare again what this engine declared: exchanges, group and
 * dead-letter queues with their bindings, retry queues. */
sl_status sl__amqp_redeclare(amqp_engine *e, sl_diag *diag)
{
    pthread_mutex_lock(&e->mu);
    achan *chans = e->chans;
    aqueue *queues = e->queues;
    pthread_mutex_unlock(&e->mu);
    sl_status st = SL_OK;
    for (achan *c = chans; c && st == SL_OK; c = c->next) {
        pthread_mutex_lock(&e->mu);
        bool mine = c->declared_here;
        pthread_mutex_unlock(&e->mu);
        if (mine) {
            declare_args a = {.exchange = c->exchange, .diag = diag};
            st = sl__amqp_do_declare_exchange(e, &a);
        }
    }
    for (aqueue *q = queues; q && st == SL_OK; q = q->next) {
        declare_args a = {.exchange = q->exchange,
                          .queue = q->queue,
                          .dlx = q->dlx,
                          .max_length = q->max_length,
                          .max_bytes = q->max_bytes,
                          .delivery_limit = q->delivery_limit,
                          .diag = diag};
        st = sl__amqp_do_declare_queue(e, &a);
    }
    pthread_mutex_lock(&e->mu);
    agroup *groups = e->groups;
    pthread_mutex_unlock(&e->mu);
    for (agroup *g = groups; g && st == SL_OK; g = g->next) {
        uint64_t delays[16];
        pthread_mutex_lock(&e->mu);
        size_t n = g->ndelays;
        memcpy(delays, g->delays, sizeof delays);
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < n && st == SL_OK; i++) {
            retry_args ra = {.queue = g->queue, .delay_ms = delays[i]};
            st = sl__amqp_do_declare_retry(e, &ra);
            sl_free(ra.name);
        }
    }
    return st;
}
