/* The NATS engine's topology (nats_int.h): stream and consumer names,
 * channels (streams) and groups (durable consumers), and what a group
 * holds (depth, browse).
 */
#include "engine/nats/nats_int.h"

#include "core/hash.h"
#include "sluice/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---- names --------------------------------------------------------------- */

uint64_t sl__nats_hash(const char *a, const char *b)
{
    /* Inbox subjects of durable consumers are made from this digest: the
     * seed, the separator and the order of the strings never change. */
    uint64_t h = sl__hash_fnv1a_str(a, SL_HASH_FNV1A_SEED);
    h = sl__hash_fnv1a_byte('/', h);
    h = sl__hash_fnv1a_str(b, h);
    return h ? h : 1;
}

/* Stream and consumer names allow [A-Za-z0-9_-]; channel names also have
 * '.'. '-' escapes: "--" is '-', "-u" is '_', and '_' stands for '.', so
 * distinct channels never share a stream. */
char *sl__nats_escape_name(const char *ns, const char *name)
{
    size_t n = (ns ? strlen(ns) + 1 : 0) + strlen(name);
    char *out = sl_malloc(2 * n + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (int part = 0; part < 2; part++) {
        const char *s = part == 0 ? ns : name;
        if (s == NULL) {
            continue;
        }
        for (const char *p = s; *p; p++) {
            if (*p == '-') {
                *o++ = '-';
                *o++ = '-';
            } else if (*p == '_') {
                *o++ = '-';
                *o++ = 'u';
            } else if (*p == '.') {
                *o++ = '_';
            } else {
                *o++ = *p;
            }
        }
        if (part == 0) {
            *o++ = '_';
        }
    }
    *o = '\0';
    return out;
}

static char *subject_of(nats_engine *e, const char *channel)
{
    size_t n = strlen(SUBJECT_ROOT) + (e->ns ? strlen(e->ns) + 1 : 0) +
               strlen(channel) + 1;
    char *s = sl_malloc(n);
    if (s != NULL) {
        snprintf(s, n, "%s%s%s%s", SUBJECT_ROOT, e->ns ? e->ns : "",
                 e->ns ? "." : "", channel);
    }
    return s;
}

/* The stream of @p channel and the durable consumer of @p group on it
 * (heap, both or neither). */
static sl_status group_names(const nats_engine *e, const char *channel,
                             const char *group, char **stream, char **durable)
{
    *stream = sl__nats_escape_name(e->ns, channel);
    *durable = sl__nats_escape_name(NULL, group);
    if (*stream == NULL || *durable == NULL) {
        sl_free(*stream);
        sl_free(*durable);
        *stream = *durable = NULL;
        return SL_NOMEM;
    }
    return SL_OK;
}

/* ---- channels ------------------------------------------------------------ */

/* Any thread, no lock: entries are immutable once in the list but for
 * bounded, and the list only grows until the engine closes. */
static nchan *chan_find(nats_engine *e, const char *name)
{
    for (nchan *c = atomic_load_explicit(&e->chans, memory_order_acquire); c;
         c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

static sl_status chan_remember(nats_engine *e, const char *name, bool bounded)
{
    pthread_mutex_lock(&e->mu); /* one writer at a time */
    nchan *c = chan_find(e, name);
    if (c != NULL) {
        atomic_store_explicit(&c->bounded, bounded, memory_order_relaxed);
        pthread_mutex_unlock(&e->mu);
        return SL_OK;
    }
    c = sl_calloc(1, sizeof *c);
    if (c == NULL || (c->name = sl_strdup(name)) == NULL ||
        (c->stream = sl__nats_escape_name(e->ns, name)) == NULL ||
        (c->subject = subject_of(e, name)) == NULL) {
        if (c != NULL) {
            sl_free(c->name);
            sl_free(c->stream);
            sl_free(c);
        }
        pthread_mutex_unlock(&e->mu);
        return SL_NOMEM;
    }
    atomic_init(&c->bounded, bounded);
    c->next = atomic_load_explicit(&e->chans, memory_order_relaxed);
    atomic_store_explicit(&e->chans, c, memory_order_release);
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

/* The channel @p name, looking its stream up on the server when another
 * process declared it. *out lives as long as the engine. */
sl_status sl__nats_chan_get(nats_engine *e, const char *name, nchan **out)
{
    nchan *c = chan_find(e, name);
    if (c != NULL) {
        *out = c;
        return SL_OK;
    }
    char *stream = sl__nats_escape_name(e->ns, name);
    if (stream == NULL) {
        return SL_NOMEM;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, e->js, stream, NULL, &jerr);
    sl_free(stream);
    if (s != NATS_OK) {
        return (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
                   ? SL_NOT_FOUND
                   : sl__nats_status(s);
    }
    bool bounded = si->Config->MaxMsgs > 0 || si->Config->MaxBytes > 0;
    jsStreamInfo_Destroy(si);
    sl_status st = chan_remember(e, name, bounded);
    if (st != SL_OK) {
        return st;
    }
    *out = chan_find(e, name);
    return SL_OK;
}

/* A copy of what publishing needs to know about @p name. */
sl_status sl__nats_chan_lookup(nats_engine *e, const char *name, char **subject)
{
    nchan *c = NULL;
    sl_status st = sl__nats_chan_get(e, name, &c);
    if (st != SL_OK) {
        return st;
    }
    if ((*subject = sl_strdup(c->subject)) == NULL) {
        return SL_NOMEM;
    }
    return SL_OK;
}

static sl_status put_stream(nats_engine *e, const char *name,
                            uint64_t max_length, uint64_t max_bytes,
                            sl_diag *diag)
{
    char *stream = sl__nats_escape_name(e->ns, name);
    char *subject = subject_of(e, name);
    if (stream == NULL || subject == NULL) {
        sl_free(stream);
        sl_free(subject);
        return SL_NOMEM;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subject};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_InterestPolicy;
    cfg.Discard = js_DiscardNew;
    cfg.MaxMsgs = max_length ? (int64_t)max_length : -1;
    cfg.MaxBytes = max_bytes ? (int64_t)max_bytes : -1;
    cfg.Storage = e->memory ? js_MemoryStorage : js_FileStorage;
    cfg.Replicas = e->replicas;
    cfg.Duplicates =
        (int64_t)(e->opts.dedup_window_ms ? e->opts.dedup_window_ms
                                          : DEFAULT_DEDUP_WINDOW_MS) *
        1000000;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(NULL, e->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        s = js_UpdateStream(NULL, e->js, &cfg, NULL, &jerr);
    }
    sl_status st = SL_OK;
    if (s != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(s),
                         "declaring stream %s for channel '%s': %s (%d)",
                         stream, name, nats_GetLastError(NULL), (int)jerr);
    }
    sl_free(stream);
    sl_free(subject);
    if (st == SL_OK) {
        st = chan_remember(e, name, max_length != 0 || max_bytes != 0);
    }
    return st;
}

sl_status sl__nats_declare_channel(sl_engine *base, const sl_channel_opts *opts,
                                   sl_diag *diag)
{
    return put_stream((nats_engine *)base, opts->name, opts->max_length,
                      opts->max_bytes, diag);
}

/* The server's delivery limit for a group with @p max_attempts: the
 * URL's max_deliver, else a backstop above the engine's own count (which
 * does not count releases): 2 x max_attempts + 20, as the RabbitMQ
 * engine's x-delivery-limit. -1 (none) for a dead-letter channel's
 * keeper. */
static int64_t max_deliver_of(const nats_engine *e, uint32_t max_attempts)
{
    if (max_attempts == UINT32_MAX) {
        return -1;
    }
    if (e->max_deliver > 0) {
        return e->max_deliver;
    }
    return (int64_t)max_attempts * 2 + 20;
}

static sl_status put_consumer(nats_engine *e, const char *channel,
                              const char *group, uint32_t max_attempts,
                              const uint64_t *backoff_ms, size_t backoff_len,
                              sl_diag *diag)
{
    char *stream = NULL, *durable = NULL;
    if (group_names(e, channel, group, &stream, &durable) != SL_OK) {
        return SL_NOMEM;
    }
    char desc[64];
    snprintf(desc, sizeof desc, "sluice max_attempts=%" PRIu32, max_attempts);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.Description = desc;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = e->ack_wait_ms * 1000000;
    /* Attempts are counted and enforced by the engine at fetch (a release
     * is not an attempt, and an event past its attempts must reach the
     * dead-letter channel). MaxDeliver is the server's backstop above
     * that; an event it stops delivering is dead-lettered by the
     * max-deliveries advisory listener (reason max_deliveries). */
    cc.MaxDeliver = max_deliver_of(e, max_attempts);
    /* BackOff: after a delivery whose holder died (no ack, no +WPI), the
     * server redelivers after the group's retry delay for that attempt,
     * never sooner than AckWait (a live holder's heartbeats assume
     * AckWait). Set only where it differs from AckWait alone; the server
     * wants fewer entries than MaxDeliver (the last one repeats). */
    int64_t backoff[32];
    size_t nb = 0;
    bool differs = false;
    if (cc.MaxDeliver > 1) {
        size_t cap =
            (size_t)(cc.MaxDeliver - 1) < 32 ? (size_t)(cc.MaxDeliver - 1) : 32;
        for (; nb < backoff_len && nb < cap; nb++) {
            uint64_t ms = backoff_ms[nb] > (uint64_t)e->ack_wait_ms
                              ? backoff_ms[nb]
                              : (uint64_t)e->ack_wait_ms;
            differs = differs || ms != (uint64_t)e->ack_wait_ms;
            backoff[nb] = (int64_t)ms * 1000000;
        }
    }
    if (differs) {
        cc.BackOff = backoff;
        cc.BackOffLen = (int)nb;
    }
    cc.MaxAckPending = e->max_ack_pending;
    cc.DeliverPolicy = js_DeliverNew;
    cc.MaxWaiting = 512;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(NULL, e->js, stream, &cc, NULL, &jerr);
    if (s != NATS_OK &&
        (jerr == JSConsumerNameExistErr ||
         jerr == JSConsumerExistingActiveErr || jerr == JSConsumerCreateErr)) {
        s = js_UpdateConsumer(NULL, e->js, stream, &cc, NULL, &jerr);
    }
    sl_status st = SL_OK;
    if (s != NATS_OK) {
        bool missing = jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND;
        st = missing
                 ? sl_diag_set(diag, SL_NOT_FOUND,
                               "channel '%s' is not declared", channel)
                 : sl_diag_set(diag, sl__nats_status(s),
                               "declaring consumer %s on %s: %s (%d)", durable,
                               stream, nats_GetLastError(NULL), (int)jerr);
    }
    sl_free(stream);
    sl_free(durable);
    return st;
}

sl_status sl__nats_declare_group(sl_engine *base, const sl_group_opts *opts,
                                 sl_diag *diag)
{
    nats_engine *e = (nats_engine *)base;
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    bool keeper = sl__is_dlq_channel(opts->channel);
    sl_status st = put_consumer(
        e, opts->channel, opts->name, keeper ? UINT32_MAX : max_attempts,
        keeper ? NULL : opts->backoff_ms, keeper ? 0 : opts->backoff_len, diag);
    if (st != SL_OK || keeper) {
        return st;
    }
    char dlq[512];
    if (sl__dlq_channel_name(opts->channel, opts->name, dlq, sizeof dlq) !=
        SL_OK) {
        return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
    }
    if ((st = put_stream(e, dlq, 0, 0, diag)) != SL_OK) {
        return st;
    }
    return put_consumer(e, dlq, SL_DLQ_GROUP, UINT32_MAX, NULL, 0, diag);
}

/* ---- for the idempotency store on JetStream KV (kv.c) ------------------ */

/* The per-group bucket's name, "inbox-<stream>-g<consumer>"
 * (sl__nats_escape_name never writes "-g", so distinct groups never share one),
 * or a named bucket with the namespace in front. */
char *sl__nats_bucket_name(const nats_engine *e, const char *name,
                           const char *channel, const char *group)
{
    if (name != NULL) {
        size_t n = (e->ns ? strlen(e->ns) + 1 : 0) + strlen(name) + 1;
        char *b = sl_malloc(n);
        if (b != NULL) {
            snprintf(b, n, "%s%s%s", e->ns ? e->ns : "", e->ns ? "_" : "",
                     name);
        }
        return b;
    }
    char *stream = NULL, *durable = NULL;
    char *b = NULL;
    if (group_names(e, channel, group, &stream, &durable) == SL_OK) {
        size_t n = strlen("inbox--g") + strlen(stream) + strlen(durable) + 1;
        if ((b = sl_malloc(n < 40 ? 40 : n)) != NULL) {
            if (n <= 200) {
                snprintf(b, n, "inbox-%s-g%s", stream, durable);
            } else {
                /* Too long for a stream name: a digest instead. */
                snprintf(b, 40, "inbox-h%016" PRIx64,
                         sl__nats_hash(stream, durable));
            }
        }
    }
    sl_free(stream);
    sl_free(durable);
    return b;
}

/* ---- inspection ---------------------------------------------------------- */

sl_status sl__nats_depth(sl_engine *base, const char *channel,
                         const char *group, sl_depth *out)
{
    nats_engine *e = (nats_engine *)base;
    sl__nats_acks_settle_wait(e);
    char *stream = NULL, *durable = NULL;
    if (group_names(e, channel, group, &stream, &durable) != SL_OK) {
        return SL_NOMEM;
    }
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, stream, durable, NULL, &jerr);
    uint64_t key = sl__nats_hash(stream, durable);
    sl_free(stream);
    sl_free(durable);
    if (ns != NATS_OK) {
        return (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
                jerr == JSStreamNotFoundErr)
                   ? SL_NOT_FOUND
                   : sl__nats_status(ns);
    }
    uint64_t pending = ci->NumPending;
    uint64_t floor = ci->AckFloor.Stream;
    uint64_t ack_pending =
        ci->NumAckPending > 0 ? (uint64_t)ci->NumAckPending : 0;
    jsConsumerInfo_Destroy(ci);
    /* The server counts a delivery given back (nak'ed, maybe with a delay)
     * as ack-pending until it goes out again; what this engine gave back
     * is split out as ready or delayed. */
    uint64_t now = sl_clock_now_ms(e->clock), waiting = 0, delayed = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < SL_TRACK_MAX; i++) {
        track *t = &e->tracks.slots[i];
        if (t->key != key || !t->nakked) {
            continue;
        }
        if (t->id <= floor) {
            sl__track_drop(&e->tracks, t); /* acked since, wherever it went */
        } else if (t->due_ms > now) {
            delayed++;
        } else {
            waiting++;
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (waiting + delayed > ack_pending) {
        uint64_t over = waiting + delayed - ack_pending;
        waiting = waiting > over ? waiting - over : 0;
        if (waiting + delayed > ack_pending) {
            delayed = ack_pending - waiting;
        }
    }
    out->ready = pending + waiting;
    out->delayed = delayed;
    out->in_flight = ack_pending - waiting - delayed;
    return SL_OK;
}

sl_status sl__nats_browse(sl_engine *base, const char *channel,
                          const char *group, size_t max, sl_browse_fn fn,
                          void *ctx)
{
    nats_engine *e = (nats_engine *)base;
    sl__nats_acks_settle_wait(e);
    char *stream = NULL, *durable = NULL;
    if (group_names(e, channel, group, &stream, &durable) != SL_OK) {
        return SL_NOMEM;
    }
    sl_status st = SL_OK;
    jsConsumerInfo *ci = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, stream, durable, NULL, &jerr);
    if (ns == NATS_OK) {
        ns = js_GetStreamInfo(&si, e->js, stream, NULL, &jerr);
    }
    if (ns != NATS_OK) {
        st = (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
              jerr == JSStreamNotFoundErr)
                 ? SL_NOT_FOUND
                 : sl__nats_status(ns);
        goto done;
    }
    /* The group's events are the stream's messages past its ack floor that
     * it has not acked: read them without delivering (stream get). */
    uint64_t from = ci->AckFloor.Stream + 1;
    if (from < si->State.FirstSeq) {
        from = si->State.FirstSeq;
    }
    uint64_t last = si->State.LastSeq;
    size_t seen = 0;
    for (uint64_t seq = from; seq <= last && (max == 0 || seen < max); seq++) {
        natsMsg *m = NULL;
        ns = js_GetMsg(&m, e->js, stream, seq, NULL, &jerr);
        if (ns != NATS_OK) {
            continue; /* deleted (acked by every group) */
        }
        sl_event *ev = NULL;
        if (sl__nats_msg_to_event(m, stream, sl__nats_created_ns(si), seq,
                                  &ev) == SL_OK) {
            seen++;
            bool go = fn(ev, 0, ctx);
            sl_event_unref(ev);
            if (!go) {
                natsMsg_Destroy(m);
                break;
            }
        }
        natsMsg_Destroy(m);
    }
done:
    jsConsumerInfo_Destroy(ci);
    jsStreamInfo_Destroy(si);
    sl_free(stream);
    sl_free(durable);
    return st;
}
