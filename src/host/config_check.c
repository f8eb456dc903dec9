/* The configuration's checks across options, once the walk is done:
 * the engine URL's scheme, declared channels, unique groups and routes,
 * handler keys by kind, the inbox; then the defaults computed from other
 * options (burst, inbox and gateway state paths).
 *
 * What only the service can tell (the engine accepts its URL, a plugin
 * loads, a listen address parses) is checked by sl_service_check.
 */
#include "sluice/config.h"

#include "core/secret.h"
#include "core/suggest.h"
#include "host/config_int.h"
#include "sluice/alloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

/* Engine URL schemes the engines understand (docs/configuration.md). */
static const char *const url_schemes[] = {
    "embedded:", "memory://", "amqp://", "amqps://", "nats://", "tls://",
};

static const char *channel_name_at(const void *items, size_t i)
{
    return ((const sl_config_channel *)items)[i].name;
}

/* ---- checks across options ----------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The directory part of "embedded:DIR?query"; length 0 when absent. */
static const char *embedded_dir(const char *url, size_t *len)
{
    const char *dir = url + strlen("embedded:");
    *len = strcspn(dir, "?");
    return dir;
}

static sl_status check_engine(parse_ctx *ctx, sl_config *cfg)
{
    sl_config_pos at = sl__config_pos_in(ctx, &cfg->engine_url, ctx->root_pos);
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(url_schemes) && !known; i++) {
        known = has_prefix(cfg->engine_url, url_schemes[i]);
    }
    if (!known) {
        char shown[256]; /* the URL may hold credentials */
        sl__secret_redact_url(cfg->engine_url, shown, sizeof shown);
        return sl__config_fail_at(
            ctx, at, "engine.url",
            "unknown engine \"%s\" (expected embedded:DIR, "
            "memory://, amqp://, amqps://, nats:// or tls://)",
            shown);
    }
    size_t len = 1;
    if (has_prefix(cfg->engine_url, "embedded:")) {
        embedded_dir(cfg->engine_url, &len);
    }
    if (len == 0) {
        return sl__config_fail_at(
            ctx, at, "engine.url",
            "\"%s\" names no directory (expected embedded:DIR or "
            "memory://)",
            cfg->engine_url);
    }
    return SL_OK;
}

static sl_status check_channels(parse_ctx *ctx, sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nchannels; i++) {
        const sl_config_channel *ch = &cfg->channels[i];
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->channels[j].name, ch->name) != 0) {
                continue;
            }
            char path[PATH_MAX_LEN];
            textbuf tp = tb_init(path, sizeof path);
            tb_add(&tp, "channels[%zu].name", i);
            sl_config_pos first = sl__config_pos_in(ctx, &cfg->channels[j].name,
                                                    cfg->channels[j].pos);
            return sl__config_fail_at(
                ctx, sl__config_pos_in(ctx, &ch->name, ch->pos), path,
                "duplicate channel \"%s\" (first declared at %d:%d)", ch->name,
                first.line, first.column);
        }
    }
    return SL_OK;
}

static const sl_config_channel *find_channel(const sl_config *cfg,
                                             const char *name)
{
    for (size_t i = 0; i < cfg->nchannels; i++) {
        if (strcmp(cfg->channels[i].name, name) == 0) {
            return &cfg->channels[i];
        }
    }
    return NULL;
}

static sl_status fail_undeclared(parse_ctx *ctx, const sl_config *cfg,
                                 sl_config_pos at, const char *path,
                                 const char *name)
{
    const char *hint =
        sl__closest_name(name, cfg->channels, cfg->nchannels, channel_name_at);
    if (hint != NULL) {
        return sl__config_fail_at(
            ctx, at, path,
            "channel \"%s\" is not declared in channels (did you "
            "mean \"%s\"?)",
            name, hint);
    }
    return sl__config_fail_at(
        ctx, at, path, "channel \"%s\" is not declared in channels", name);
}

static sl_status check_handler(parse_ctx *ctx, const sl_config *cfg,
                               sl_config_consumer *c, const char *path)
{
    sl_config_handler *h = &c->handler;
    for (size_t i = 0; i < sl__config_handler_table.nopts; i++) {
        const opt_desc *o = &sl__config_handler_table.opts[i];
        if (o->kind == NULL) {
            continue;
        }
        void *field = field_at(h, o->offset);
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.%s", path, o->key);
        if (strcmp(o->kind, h->kind) != 0) {
            if (sl__config_from_file(ctx, field)) {
                return sl__config_fail_at(
                    ctx, sl__config_pos_in(ctx, field, h->pos), sub,
                    "not used by kind %s (only by kind %s)", h->kind, o->kind);
            }
            /* Defaults of other kinds ("symbol") would only mislead. */
            if (o->type == OPT_STRING) {
                sl_free(*(char **)field);
                *(char **)field = NULL;
            }
        } else if ((o->flags & OPT_KIND_REQUIRED) && o->type == OPT_STRING &&
                   *(char **)field == NULL) {
            return sl__config_fail_at(ctx, h->pos, sub,
                                      "missing required key (kind %s needs it)",
                                      h->kind);
        }
    }
    if (strcmp(h->kind, "http") == 0 && h->reply_to != NULL &&
        find_channel(cfg, h->reply_to) == NULL) {
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.reply_to", path);
        return fail_undeclared(ctx, cfg,
                               sl__config_pos_in(ctx, &h->reply_to, h->pos),
                               sub, h->reply_to);
    }
    if (strcmp(h->kind, "forward") == 0) {
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.handler.to", path);
        sl_config_pos at = sl__config_pos_in(ctx, &h->to, h->pos);
        if (find_channel(cfg, h->to) == NULL) {
            return fail_undeclared(ctx, cfg, at, sub, h->to);
        }
        if (strcmp(h->to, c->channel) == 0) {
            return sl__config_fail_at(
                ctx, at, sub,
                "forwarding to the consumed channel \"%s\" would "
                "loop forever",
                h->to);
        }
    }
    return SL_OK;
}

static sl_status check_consumer(parse_ctx *ctx, sl_config *cfg, size_t i)
{
    sl_config_consumer *c = &cfg->consumers[i];
    char path[PATH_MAX_LEN];
    char sub[PATH_MAX_LEN];
    textbuf tp = tb_init(path, sizeof path);
    tb_add(&tp, "consumers[%zu]", i);

    if (find_channel(cfg, c->channel) == NULL) {
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.channel", path);
        return fail_undeclared(ctx, cfg,
                               sl__config_pos_in(ctx, &c->channel, c->pos), sub,
                               c->channel);
    }
    for (size_t j = 0; j < i; j++) {
        const sl_config_consumer *prev = &cfg->consumers[j];
        if (strcmp(prev->channel, c->channel) != 0 ||
            strcmp(prev->group, c->group) != 0) {
            continue;
        }
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.group", path);
        sl_config_pos first = sl__config_pos_in(ctx, &prev->group, prev->pos);
        return sl__config_fail_at(
            ctx, sl__config_pos_in(ctx, &c->group, c->pos), sub,
            "duplicate group \"%s\" on channel \"%s\" (first at "
            "consumers[%zu], %d:%d)",
            c->group, c->channel, j, first.line, first.column);
    }
    if (c->concurrency == 0) {
        c->concurrency = c->prefetch;
    } else if (c->concurrency > c->prefetch) {
        /* More handlers than held deliveries could never all be busy. */
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "%s.concurrency", path);
        return sl__config_fail_at(
            ctx, sl__config_pos_in(ctx, &c->concurrency, c->pos), sub,
            "%" PRIu32 " exceeds prefetch %" PRIu32
            " (concurrency must be <= prefetch)",
            c->concurrency, c->prefetch);
    }
    return check_handler(ctx, cfg, c, path);
}

/* inbox: "nats-kv" / "nats-kv:BUCKET" (JetStream KV, shared by every
 * process of a group) needs the NATS engine, and cannot hold a
 * transactional handler's effects (SQLite only). */
static sl_status check_inbox(parse_ctx *ctx, sl_config *cfg)
{
    const char *in = cfg->inbox_path;
    if (in == NULL || !has_prefix(in, "nats-kv") ||
        (in[7] != '\0' && in[7] != ':')) {
        return SL_OK;
    }
    sl_config_pos at = sl__config_pos_in(ctx, &cfg->inbox_path, ctx->root_pos);
    if (!has_prefix(cfg->engine_url, "nats://") &&
        !has_prefix(cfg->engine_url, "tls://")) {
        return sl__config_fail_at(
            ctx, at, "inbox",
            "\"%s\" keeps idempotency records in JetStream KV: it "
            "needs the NATS engine (engine.url nats:// or tls://)",
            in);
    }
    if (in[7] == ':') {
        const char *b = in + 8;
        bool ok = *b != '\0';
        for (const char *c = b; *c && ok; c++) {
            ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
        }
        if (!ok) {
            return sl__config_fail_at(ctx, at, "inbox",
                                      "\"%s\": a bucket name is [A-Za-z0-9_-]+ "
                                      "(nats-kv:NAME)",
                                      in);
        }
    }
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const sl_config_consumer *c = &cfg->consumers[i];
        if (!c->idempotency || c->handler.kind == NULL ||
            strcmp(c->handler.kind, "record") != 0) {
            continue;
        }
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "consumers[%zu].handler.kind", i);
        return sl__config_fail_at(
            ctx, sl__config_pos_in(ctx, &c->handler.kind, c->handler.pos), sub,
            "'record' commits its effects with the inbox record in "
            "one SQLite transaction, which cannot work with inbox: "
            "%s (JetStream KV); use an SQLite inbox file for this "
            "service, or another handler kind",
            in);
    }
    return SL_OK;
}

static sl_status derive_inbox(parse_ctx *ctx, sl_config *cfg)
{
    if (cfg->inbox_path != NULL) {
        return SL_OK;
    }
    char *inbox = NULL;
    if (has_prefix(cfg->engine_url, "memory://")) {
        inbox = sl_strdup(":memory:");
    } else if (has_prefix(cfg->engine_url, "embedded:")) {
        size_t len = 0;
        const char *dir = embedded_dir(cfg->engine_url, &len);
        if (len == strlen(":memory:") && has_prefix(dir, ":memory:")) {
            /* No directory to put it in, and idempotency still needs a
             * store: keep it in memory like the engine. */
            inbox = sl_strdup(":memory:");
        } else {
            const char *sep = dir[len - 1] == '/' ? "" : "/";
            size_t size = len + strlen(sep) + strlen("inbox.db") + 1;
            inbox = sl_malloc(size);
            if (inbox != NULL) {
                snprintf(inbox, size, "%.*s%sinbox.db", (int)len, dir, sep);
            }
        }
    } else {
        inbox = sl_strdup("./sluice-inbox.db");
    }
    if (inbox == NULL) {
        return sl__config_fail_nomem(ctx);
    }
    cfg->inbox_path = inbox;
    return SL_OK;
}

static sl_status check_routes(parse_ctx *ctx, sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        sl_config_route *r = &cfg->routes[i];
        char sub[PATH_MAX_LEN];
        textbuf ts = tb_init(sub, sizeof sub);
        tb_add(&ts, "gateway.routes[%zu].path", i);
        if (r->path[0] != '/') {
            return sl__config_fail_at(
                ctx, sl__config_pos_in(ctx, &r->path, r->pos), sub,
                "a path starts with '/', got \"%s\"", r->path);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].path, r->path) == 0 &&
                strcmp(cfg->routes[j].method, r->method) == 0) {
                return sl__config_fail_at(
                    ctx, sl__config_pos_in(ctx, &r->path, r->pos), sub,
                    "duplicate route %s %s (first at "
                    "gateway.routes[%zu])",
                    r->method, r->path, j);
            }
        }
        if (find_channel(cfg, r->channel) == NULL) {
            textbuf tc = tb_init(sub, sizeof sub);
            tb_add(&tc, "gateway.routes[%zu].channel", i);
            return fail_undeclared(ctx, cfg,
                                   sl__config_pos_in(ctx, &r->channel, r->pos),
                                   sub, r->channel);
        }
        for (size_t k = 0; k < r->nfields; k++) {
            sl_config_field *f = &r->fields[k];
            if (f->has_minimum && f->has_maximum && f->minimum > f->maximum) {
                textbuf tf = tb_init(sub, sizeof sub);
                tb_add(&tf, "gateway.routes[%zu].fields[%zu].maximum", i, k);
                return sl__config_fail_at(
                    ctx, sl__config_pos_in(ctx, &f->maximum, f->pos), sub,
                    "maximum %g is below minimum %g", f->maximum, f->minimum);
            }
        }
    }
    if (cfg->scale_min > cfg->scale_max) {
        return sl__config_fail_at(
            ctx, sl__config_pos_in(ctx, &cfg->scale_min, (sl_config_pos){0, 0}),
            "admin.scale_min", "%" PRIu32 " is above scale_max %" PRIu32,
            cfg->scale_min, cfg->scale_max);
    }
    return SL_OK;
}

/* The gateway's SQLite state goes next to the inbox. */
static sl_status derive_gateway_state(parse_ctx *ctx, sl_config *cfg)
{
    if (cfg->gateway_state != NULL) {
        return SL_OK;
    }
    const char *inbox = cfg->inbox_path;
    const char *slash = strrchr(inbox, '/');
    char *state = NULL;
    if (strcmp(inbox, ":memory:") == 0) {
        state = sl_strdup(":memory:");
    } else if (slash != NULL) {
        size_t dir = (size_t)(slash - inbox) + 1;
        size_t size = dir + strlen("gateway.db") + 1;
        if ((state = sl_malloc(size)) != NULL) {
            snprintf(state, size, "%.*sgateway.db", (int)dir, inbox);
        }
    } else {
        state = sl_strdup("./sluice-gateway.db");
    }
    if (state == NULL) {
        return sl__config_fail_nomem(ctx);
    }
    cfg->gateway_state = state;
    return SL_OK;
}

sl_status sl__config_finish(parse_ctx *ctx, sl_config *cfg)
{
    sl_status st = check_engine(ctx, cfg);
    if (st == SL_OK) {
        st = check_channels(ctx, cfg);
    }
    for (size_t i = 0; i < cfg->nconsumers && st == SL_OK; i++) {
        st = check_consumer(ctx, cfg, i);
    }
    if (st == SL_OK) {
        st = check_routes(ctx, cfg);
    }
    if (st == SL_OK) {
        st = check_inbox(ctx, cfg);
    }
    if (st != SL_OK) {
        return st;
    }
    if (cfg->burst == 0 && cfg->rate_per_s > 0) {
        /* rate <= 1e9, so 2 x rate fits in 32 bits. */
        cfg->burst = (uint32_t)ceil(2.0 * cfg->rate_per_s);
    }
    if (cfg->gateway_client_burst == 0) {
        cfg->gateway_client_burst = 2.0 * cfg->gateway_client_rate;
    }
    if ((st = derive_inbox(ctx, cfg)) != SL_OK) {
        return st;
    }
    return derive_gateway_state(ctx, cfg);
}

/* ---- suggestions for other tools ----------------------------------------- */

const char *sl_config_suggest_channel(const sl_config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL || find_channel(cfg, name) != NULL) {
        return NULL;
    }
    return sl__closest_name(name, cfg->channels, cfg->nchannels,
                            channel_name_at);
}

/* The groups of one channel: the consumers whose channel is not it read
 * as NULL, which sl__closest_name skips. */
typedef struct groups_of {
    const sl_config *cfg;
    const char *channel;
} groups_of;

static const char *group_at(const void *items, size_t i)
{
    const groups_of *g = items;
    const sl_config_consumer *c = &g->cfg->consumers[i];
    return strcmp(c->channel, g->channel) == 0 ? c->group : NULL;
}

const char *sl_config_suggest_group(const sl_config *cfg, const char *channel,
                                    const char *group)
{
    if (cfg == NULL || channel == NULL || group == NULL) {
        return NULL;
    }
    groups_of g = {cfg, channel};
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const char *name = group_at(&g, i);
        if (name != NULL && strcmp(name, group) == 0) {
            return NULL;
        }
    }
    return sl__closest_name(group, &g, cfg->nconsumers, group_at);
}
