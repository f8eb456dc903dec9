#include "runtime/handlers.h"

#include "runtime/http_handler.h"
#include "sluice/alloc.h"
#include "sluice/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- forward ------------------------------------------------------------ */

static sl_outcome forward_handle(sl_handler_ctx *ctx, void *user)
{
    const char *to = user;
    sl_event *copy = NULL;
    sl_status st = sl_event_clone(sl_handler_event(ctx), &copy);
    if (st != SL_OK) {
        sl_handler_set_error(ctx, "forward: %s", sl_status_str(st));
        return SL_OUTCOME_RETRY;
    }
    sl_diag diag = {0};
    st = sl_handler_publish(ctx, to, copy, &diag);
    sl_event_unref(copy);
    if (st != SL_OK) {
        sl_handler_set_error(ctx, "forward to %s: %s", to, diag.msg);
        return sl_status_is_retryable(st) ? SL_OUTCOME_RETRY
                                          : SL_OUTCOME_REJECT;
    }
    return SL_OUTCOME_ACK;
}

/* ---- append ------------------------------------------------------------- */

typedef struct append_sink {
    int fd;
} append_sink;

static sl_outcome append_handle(sl_handler_ctx *ctx, void *user)
{
    append_sink *s = user;
    char line[512];
    int n = snprintf(line, sizeof line, "%s\n",
                     sl_event_id(sl_handler_event(ctx)));
    if (n < 0 || (size_t)n >= sizeof line) {
        sl_handler_set_error(ctx, "append: id too long");
        return SL_OUTCOME_REJECT;
    }
    /* One write(2) with O_APPEND: lines from concurrent workers never
     * interleave. */
    if (write(s->fd, line, (size_t)n) != n) {
        sl_handler_set_error(ctx, "append: %s", strerror(errno));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

static void append_fini(void *user)
{
    append_sink *s = user;
    if (s != NULL) {
        close(s->fd);
        sl_free(s);
    }
}

/* ---- record ------------------------------------------------------------- */

static sl_outcome record_handle(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    sqlite3 *db = sl_handler_db(ctx);
    if (db == NULL) {
        sl_handler_set_error(ctx, "record: needs idempotency on");
        return SL_OUTCOME_REJECT;
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS processed("
                          "  grp TEXT NOT NULL, id TEXT NOT NULL,"
                          "  attempt INTEGER NOT NULL, at INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO processed(grp, id, attempt, at) "
                                "VALUES(?1, ?2, ?3, ?4)",
                                -1, &s, NULL);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, sl_handler_group(ctx), -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, sl_event_id(sl_handler_event(ctx)), -1,
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, sl_handler_attempt(ctx));
        sqlite3_bind_int64(s, 4, (sqlite3_int64)sl_time_wall_ms());
        rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        sl_handler_set_error(ctx, "record: %s", sqlite3_errmsg(db));
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

/* ---- fail --------------------------------------------------------------- */

static sl_outcome fail_handle(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    sl_handler_set_error(ctx, "handler configured to fail");
    return SL_OUTCOME_RETRY;
}

/* ---- http --------------------------------------------------------------- */

/* The options of kind "http": the handler's keys of the configuration;
 * the fields it has no key for (connection timeout, slot wait, extra
 * headers) keep their defaults. */
static void http_opts_from_config(const sl_config *cfg,
                                  const sl_config_handler *hc,
                                  sl_http_handler_opts *ho)
{
    *ho = (sl_http_handler_opts){
        .url = hc->url,
        .timeout_ms = hc->timeout_ms,
        .max_concurrency = hc->max_concurrency,
        .adaptive = hc->adaptive,
        .breaker_failures = hc->breaker_failures,
        .breaker_open_ms = hc->breaker_open_ms,
        .service = cfg->service_name,
        .reply_to = hc->reply_to,
        .reply_type = hc->reply_type,
    };
}

static sl_status bind_http(const sl_config *cfg, const sl_config_handler *hc,
                           const char *key, sl_bound_handler *out,
                           sl_diag *diag)
{
    const char *where = cfg->path ? cfg->path : "config";
    sl_http_handler_opts ho;
    http_opts_from_config(cfg, hc, &ho);
    sl_diag d = {0};
    sl_status st = sl__http_handler_bind(&ho, out, &d);
    if (st == SL_INVALID) {
        return sl_diag_set(diag, SL_CONFIG, "%s:%d:%d: %s: %s", where,
                           hc->pos.line, hc->pos.column, key, d.msg);
    }
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "%s: %s", key, d.msg);
    }
    return SL_OK;
}

/* ---- plugin ------------------------------------------------------------- */

static sl_status bind_plugin(const sl_config *cfg,
                             const sl_config_handler *hc, const char *key,
                             sl_bound_handler *out, sl_diag *diag)
{
    const char *where = cfg->path ? cfg->path : "config";
    void *dl = dlopen(hc->path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        return sl_diag_set(diag, SL_CONFIG, "%s:%d:%d: %s.path: %s",
                           where, hc->pos.line, hc->pos.column, key, dlerror());
    }
    int (*abi)(void) = NULL;
    const char *symbol = hc->symbol ? hc->symbol : "sluice_handle";
    const char *init_name = hc->init ? hc->init : "sluice_handler_init";
    *(void **)&abi = dlsym(dl, "sluice_plugin_abi");
    void *fn = dlsym(dl, symbol);
    if (abi == NULL || abi() != SLUICE_PLUGIN_ABI) {
        dlclose(dl);
        return sl_diag_set(diag, SL_CONFIG,
                           "%s:%d:%d: %s.path: %s was not built for "
                           "plugin ABI %d (missing or different "
                           "sluice_plugin_abi; use SLUICE_PLUGIN_DECLARE())",
                           where, hc->pos.line, hc->pos.column, key, hc->path,
                           SLUICE_PLUGIN_ABI);
    }
    if (fn == NULL) {
        dlclose(dl);
        return sl_diag_set(diag, SL_CONFIG,
                           "%s:%d:%d: %s.symbol: %s has no function '%s'",
                           where, hc->pos.line, hc->pos.column, key, hc->path,
                           symbol);
    }
    sl_plugin_init_fn init = NULL;
    sl_plugin_fini_fn fini = NULL;
    *(void **)&init = dlsym(dl, init_name);
    *(void **)&fini = dlsym(dl, "sluice_handler_fini");
    if (hc->init != NULL && init == NULL) {
        dlclose(dl);
        return sl_diag_set(diag, SL_CONFIG,
                           "%s:%d:%d: %s.init: %s has no function '%s'",
                           where, hc->pos.line, hc->pos.column, key, hc->path,
                           hc->init);
    }
    void *user = NULL;
    if (init != NULL) {
        sl_status st = init(hc->config, &user);
        if (st != SL_OK) {
            dlclose(dl);
            return sl_diag_set(diag, SL_CONFIG,
                               "%s:%d:%d: %s: %s: %s() failed: %s",
                               where, hc->pos.line, hc->pos.column, key, hc->path,
                               init_name, sl_status_str(st));
        }
    }
    *(void **)&out->fn = fn;
    out->user = user;
    out->fini = fini;
    out->dl = dl;
    return SL_OK;
}

sl_status sl__handler_bind(const sl_config *cfg, const sl_config_consumer *cc,
                           sl_bound_handler *out, sl_diag *diag)
{
    const sl_config_handler *hc = &cc->handler;
    const char *where = cfg->path ? cfg->path : "config";
    const char *kind = hc->kind ? hc->kind : "";
    sl_bound_handler h = {0};
    sl_status st = SL_OK;
    /* Errors name the handler as the config does: consumers[N].handler,
     * at the position of its mapping. */
    char key[48];
    snprintf(key, sizeof key, "consumers[%zu].handler",
             (size_t)(cc - cfg->consumers));
    if (strcmp(kind, "plugin") == 0) {
        st = bind_plugin(cfg, hc, key, &h, diag);
    } else if (strcmp(kind, "forward") == 0) {
        h.fn = forward_handle;
        h.user = sl_strdup(hc->to);
        h.fini = sl_free;
        st = h.user ? SL_OK : SL_NOMEM;
    } else if (strcmp(kind, "append") == 0) {
        append_sink *s = sl_calloc(1, sizeof *s);
        if (s == NULL) {
            return SL_NOMEM;
        }
        s->fd = open(hc->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                     0644);
        if (s->fd < 0) {
            sl_free(s);
            return sl_diag_set(diag, SL_CONFIG, "%s:%d:%d: %s.file: %s: %s",
                               where, hc->pos.line, hc->pos.column, key, hc->file,
                               strerror(errno));
        }
        h.fn = append_handle;
        h.user = s;
        h.fini = append_fini;
    } else if (strcmp(kind, "record") == 0) {
        if (!cc->idempotency) {
            return sl_diag_set(diag, SL_CONFIG,
                               "%s:%d:%d: %s.kind: 'record' writes in "
                               "the idempotency inbox: set idempotency: true",
                               where, hc->pos.line, hc->pos.column, key);
        }
        h.fn = record_handle;
        h.transactional = true;
    } else if (strcmp(kind, "fail") == 0) {
        h.fn = fail_handle;
    } else if (strcmp(kind, "http") == 0) {
        st = bind_http(cfg, hc, key, &h, diag);
    } else {
        return sl_diag_set(diag, SL_CONFIG,
                           "%s:%d:%d: %s.kind: unknown kind '%s' "
                           "(plugin, forward, append, record, fail, http)",
                           where, hc->pos.line, hc->pos.column, key, kind);
    }
    if (st == SL_OK) {
        *out = h;
    }
    return st;
}

void sl__handler_unbind(sl_bound_handler *h)
{
    if (h->fini != NULL) {
        h->fini(h->user);
    }
    if (h->dl != NULL) {
        dlclose(h->dl);
    }
    *h = (sl_bound_handler){0};
}
