/* Dispatch from the public engine API to the driver table. */
#include "sluice/engine.h"

#include "core/secret.h"
#include "core/waiter.h"
#include "engine/driver.h"
#include "sluice/alloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const sl_driver *const drivers[] = {
    &sl__embedded_driver,
#ifdef SLUICE_HAVE_NATS
    &sl__nats_driver,
    &sl__nats_tls_driver,
#endif
#ifdef SLUICE_HAVE_AMQP
    &sl__amqp_driver,
#endif
};

static bool has_prefix(const char *s, const char *prefix)
{
    return prefix != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

static const sl_driver *find_driver(const char *url)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
        if (has_prefix(url, drivers[i]->scheme) ||
            has_prefix(url, drivers[i]->alias)) {
            return drivers[i];
        }
    }
    return NULL;
}

sl_status sl__driver_check(const sl_driver *drv, sl_diag *diag)
{
    if (drv->abi_version != SL_DRIVER_ABI_VERSION) {
        return sl_diag_set(diag, SL_INTERNAL,
                           "engine driver %s has table version %" PRIu32
                           ", this library %u: rebuild it against this "
                           "library",
                           drv->name ? drv->name : "(unnamed)",
                           drv->abi_version, SL_DRIVER_ABI_VERSION);
    }
    return SL_OK;
}

static sl_status unknown_engine(const char *url, sl_diag *diag)
{
    char shown[256]; /* the URL may hold credentials */
    sl__secret_redact_url(url, shown, sizeof shown);
    return sl_diag_set(diag, SL_INVALID,
                       "unknown engine URL '%s' (expected embedded:PATH, "
                       "memory://"
#ifdef SLUICE_HAVE_NATS
                       ", nats://HOST:PORT, tls://HOST:PORT"
#endif
#ifdef SLUICE_HAVE_AMQP
                       ", amqp[s]://USER:PASS@HOST:PORT/VHOST"
#endif
                       ")",
                       shown);
}

sl_status sl_engine_check_url(const char *url, sl_diag *diag)
{
    if (url == NULL) {
        return sl_diag_set(diag, SL_INVALID, "engine URL is required");
    }
    const sl_driver *drv = find_driver(url);
    if (drv == NULL) {
        return unknown_engine(url, diag);
    }
    sl_status st = sl__driver_check(drv, diag);
    if (st != SL_OK) {
        return st;
    }
    return drv->check_url != NULL ? drv->check_url(url, diag) : SL_OK;
}

sl_status sl_engine_open(const char *url, const sl_engine_opts *opts,
                         sl_engine **out, sl_diag *diag)
{
    if (url == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "engine URL is required");
    }
    sl_engine_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    const sl_driver *drv = find_driver(url);
    if (drv == NULL) {
        return unknown_engine(url, diag);
    }
    sl_status st = sl__driver_check(drv, diag);
    if (st != SL_OK) {
        return st;
    }
    return drv->open(url, opts, out, diag);
}

void sl_engine_close(sl_engine *eng)
{
    if (eng != NULL) {
        eng->drv->close(eng);
    }
}

const char *sl_engine_name(const sl_engine *eng)
{
    return eng->drv->name;
}

bool sl_engine_is_ready(const sl_engine *eng)
{
    return eng->drv->is_ready(eng);
}

sl_status sl_engine_declare_channel(sl_engine *eng, const sl_channel_opts *opts,
                                    sl_diag *diag)
{
    if (opts == NULL || !sl__name_is_valid(opts->name)) {
        return sl_diag_set(diag, SL_INVALID, "invalid channel name '%s'",
                           opts && opts->name ? opts->name : "");
    }
    return eng->drv->declare_channel(eng, opts, diag);
}

sl_status sl_engine_declare_group(sl_engine *eng, const sl_group_opts *opts,
                                  sl_diag *diag)
{
    if (opts == NULL || !sl__name_is_valid(opts->channel) ||
        !sl__name_is_valid(opts->name)) {
        return sl_diag_set(diag, SL_INVALID, "invalid group '%s' on '%s'",
                           opts && opts->name ? opts->name : "",
                           opts && opts->channel ? opts->channel : "");
    }
    return eng->drv->declare_group(eng, opts, diag);
}

sl_status sl_engine_publish_async(sl_engine *eng, const char *channel,
                                  sl_event *ev, unsigned flags,
                                  sl_publish_cb cb, void *ctx)
{
    return sl__engine_publish_async_ex(eng, channel, ev, flags, 0, cb, ctx);
}

sl_status sl__engine_publish_async_ex(sl_engine *eng, const char *channel,
                                      sl_event *ev, unsigned flags,
                                      unsigned hints, sl_publish_cb cb,
                                      void *ctx)
{
    if (channel == NULL || ev == NULL) {
        return SL_INVALID;
    }
    return eng->drv->publish(eng, channel, ev, flags, hints, cb, ctx);
}

sl_status sl_engine_publish(sl_engine *eng, const char *channel, sl_event *ev,
                            unsigned flags, uint64_t timeout_ms, sl_diag *diag)
{
    sl_waiter *w = NULL;
    if (sl__waiter_create(&w) != SL_OK) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    sl_status st =
        sl_engine_publish_async(eng, channel, ev, flags, sl__waiter_signal, w);
    if (st != SL_OK) {
        sl__waiter_destroy(w);
        return sl_diag_set(diag, st, "publish to '%s' refused: %s", channel,
                           sl_status_str(st));
    }
    st = sl__waiter_wait(w, timeout_ms);
    if (st == SL_TIMEOUT) {
        return sl_diag_set(diag, SL_TIMEOUT,
                           "no confirm from the engine within %" PRIu64
                           " ms; the outcome is unknown",
                           timeout_ms);
    }
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "publish to '%s' failed: %s", channel,
                           sl_status_str(st));
    }
    return SL_OK;
}

sl_status sl_engine_subscribe(sl_engine *eng, const char *channel,
                              const char *group, const sl_subscribe_opts *opts,
                              sl_subscription **out, sl_diag *diag)
{
    sl_subscribe_opts defaults = {0};
    if (channel == NULL || group == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "channel and group are required");
    }
    return eng->drv->subscribe(eng, channel, group, opts ? opts : &defaults,
                               out, diag);
}

sl_status sl_subscription_fetch(sl_subscription *sub, sl_delivery **out,
                                size_t max, uint64_t timeout_ms, size_t *n)
{
    if (max == 0 || out == NULL || n == NULL) {
        return SL_INVALID;
    }
    return sub->drv->fetch(sub, out, max, timeout_ms, n);
}

void sl_subscription_interrupt(sl_subscription *sub)
{
    sub->drv->interrupt(sub);
}

uint32_t sl_subscription_in_flight(const sl_subscription *sub)
{
    return sub->drv->in_flight(sub);
}

void sl_subscription_close(sl_subscription *sub)
{
    if (sub != NULL) {
        sub->drv->unsubscribe(sub);
    }
}

const char *sl_dead_reason_str(sl_dead_reason reason)
{
    switch (reason) {
    case SL_DEAD_REJECTED:
        return "rejected";
    case SL_DEAD_MAX_ATTEMPTS:
        return "max_attempts";
    case SL_DEAD_EXPIRED:
        return "expired";
    case SL_DEAD_MAX_DELIVERIES:
        return "max_deliveries";
    }
    return "unknown";
}

const sl_event *sl_delivery_event(const sl_delivery *d)
{
    return d->ev;
}

uint32_t sl_delivery_attempt(const sl_delivery *d)
{
    return d->attempt;
}

const char *sl_delivery_channel(const sl_delivery *d)
{
    return d->channel;
}

const char *sl_delivery_group(const sl_delivery *d)
{
    return d->group;
}

static sl_status settle(sl_delivery **d, sl_settle_op op, uint64_t delay_ms,
                        sl_dead_reason reason, const char *error)
{
    if (d == NULL || *d == NULL) {
        return SL_INVALID;
    }
    sl_delivery *dv = *d;
    *d = NULL;
    return dv->drv->settle(dv, op, delay_ms, reason, error);
}

sl_status sl_delivery_ack(sl_delivery **d)
{
    return settle(d, SL_SETTLE_ACK, 0, SL_DEAD_REJECTED, NULL);
}

sl_status sl_delivery_ack_many(sl_delivery **ds, size_t n)
{
    if (n == 0) {
        return SL_OK;
    }
    if (ds == NULL || ds[0] == NULL) {
        return SL_INVALID;
    }
    const sl_driver *drv = ds[0]->drv;
    if (drv->ack_many != NULL) {
        sl_status st = drv->ack_many(ds, n);
        for (size_t i = 0; i < n; i++) {
            ds[i] = NULL;
        }
        return st;
    }
    sl_status first = SL_OK;
    for (size_t i = 0; i < n; i++) {
        sl_status st = sl_delivery_ack(&ds[i]);
        if (first == SL_OK) {
            first = st;
        }
    }
    return first;
}

sl_status sl_delivery_retry(sl_delivery **d, uint64_t delay_ms,
                            const char *error)
{
    return settle(d, SL_SETTLE_RETRY, delay_ms, SL_DEAD_REJECTED, error);
}

sl_status sl_delivery_dead_letter(sl_delivery **d, sl_dead_reason reason,
                                  const char *error)
{
    return settle(d, SL_SETTLE_DEAD, 0, reason, error);
}

sl_status sl_delivery_release(sl_delivery **d)
{
    return settle(d, SL_SETTLE_RELEASE, 0, SL_DEAD_REJECTED, NULL);
}

sl_status sl__delivery_release_after(sl_delivery **d, uint64_t delay_ms)
{
    return settle(d, SL_SETTLE_RELEASE, delay_ms, SL_DEAD_REJECTED, NULL);
}

sl_status sl_engine_depth(sl_engine *eng, const char *channel,
                          const char *group, sl_depth *out)
{
    if (channel == NULL || group == NULL || out == NULL) {
        return SL_INVALID;
    }
    return eng->drv->depth(eng, channel, group, out);
}

sl_status sl_engine_browse(sl_engine *eng, const char *channel,
                           const char *group, size_t max, sl_browse_fn fn,
                           void *ctx)
{
    if (channel == NULL || group == NULL || fn == NULL) {
        return SL_INVALID;
    }
    return eng->drv->browse(eng, channel, group, max, fn, ctx);
}

/* ---- helpers shared by the drivers ------------------------------------- */

bool sl__name_is_valid(const char *name)
{
    if (name == NULL || name[0] == '\0') {
        return false;
    }
    size_t len = 0;
    for (const char *p = name; *p != '\0'; p++, len++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok || len >= 200) {
            return false;
        }
    }
    return true;
}

sl_status sl__dlq_channel_name(const char *channel, const char *group,
                               char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s.%s.dlq", channel, group);
    return (n < 0 || (size_t)n >= size) ? SL_TOO_LARGE : SL_OK;
}

bool sl__is_dlq_channel(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".dlq") == 0;
}

sl_status sl_dlq_channel_name(const char *channel, const char *group, char *buf,
                              size_t size)
{
    return sl__dlq_channel_name(channel, group, buf, size);
}

sl_status sl__dead_letter_event(const sl_event *ev, sl_dead_reason reason,
                                uint32_t attempts, const char *error,
                                const char *channel, const char *group,
                                uint64_t now_ms, sl_event **out)
{
    sl_event *dead = NULL;
    sl_status st = sl_event_clone(ev, &dead);
    if (st != SL_OK) {
        return st;
    }
    char num[24];
    char when[32];
    snprintf(num, sizeof num, "%" PRIu32, attempts);
    sl_time_format_rfc3339(now_ms, when);
    /* Keep the error text bounded: it travels in a header on every engine. */
    char err[512];
    snprintf(err, sizeof err, "%s", error != NULL ? error : "");
    /* Its own id: dead letters keep their event's id, and one event can
     * be dead-lettered more than once (republished past the dedup window,
     * replayed and failing again), so tools that pick or skip one dead
     * letter (sluice dlq replay --id) need something no other shares. */
    char dlqid[37];
    sl_uuid7(dlqid, now_ms);
    if ((st = sl_event_set_ext(dead, "dlqid", dlqid)) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqreason",
                               sl_dead_reason_str(reason))) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqattempts", num)) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqerror", err)) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqchannel", channel)) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqgroup", group)) != SL_OK ||
        (st = sl_event_set_ext(dead, "dlqtime", when)) != SL_OK) {
        sl_event_unref(dead);
        return st;
    }
    /* A dead letter must stay inspectable: its deadline no longer applies. */
    sl_event_set_deadline_ms(dead, 0);
    *out = dead;
    return SL_OK;
}

/* ---- inbox stores offered by engines (engine/inbox_store.h) ------------- */

const sl_inbox_store_ops *sl__engine_inbox_store(sl_engine *eng,
                                                 const char *kind)
{
    if (eng == NULL || kind == NULL || eng->drv->inbox_store == NULL) {
        return NULL;
    }
    return eng->drv->inbox_store(eng, kind);
}

const char *sl__engine_inbox_store_owner(const char *kind)
{
    for (size_t i = 0; kind != NULL && i < sizeof drivers / sizeof drivers[0];
         i++) {
        if (drivers[i]->inbox_store != NULL &&
            drivers[i]->inbox_store(NULL, kind) != NULL) {
            return drivers[i]->name;
        }
    }
    return NULL;
}
