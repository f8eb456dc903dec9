/* A configuration's handlers: plugins loaded here, the built-in kinds
 * (runtime/handler_kinds.h) and HTTP push handlers made from their keys;
 * every error names the handler's key and its place in the file. */
#include "host/handlers.h"

#include "runtime/http_handler.h"
#include "sluice/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* A file the append handler opens for writing: writable if it exists,
 * else its directory is, so that a check creates nothing. */
static bool can_append(const char *file)
{
    if (access(file, F_OK) == 0) {
        return access(file, W_OK) == 0;
    }
    const char *slash = strrchr(file, '/');
    if (slash == NULL) {
        return access(".", W_OK | X_OK) == 0;
    }
    char dir[4096];
    size_t n = slash == file ? 1 : (size_t)(slash - file);
    if (n >= sizeof dir) {
        return false;
    }
    memcpy(dir, file, n);
    dir[n] = '\0';
    return access(dir, W_OK | X_OK) == 0;
}

/* ---- plugin ------------------------------------------------------------- */

/* A plugin's entry points, resolved but not initialised. */
typedef struct plugin_syms {
    void *dl;
    void *fn;
    sl_plugin_init_fn init;
    sl_plugin_fini_fn fini;
    const char *init_name;
} plugin_syms;

/* Load the plugin and find its functions: every way a plugin can be
 * wrong before its init function runs. */
static sl_status plugin_resolve(const sl_config *cfg,
                                const sl_config_handler *hc, const char *key,
                                plugin_syms *out, sl_diag *diag)
{
    char sub[80];
    snprintf(sub, sizeof sub, "%s.path", key);
    void *dl = dlopen(hc->path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        return sl_config_fail(cfg, &hc->path, hc->pos, sub, SL_CONFIG, diag,
                              "%s", dlerror());
    }
    int (*abi)(void) = NULL;
    const char *symbol = hc->symbol ? hc->symbol : "sluice_handle";
    *(void **)&abi = dlsym(dl, "sluice_plugin_abi");
    plugin_syms ps = {.dl = dl,
                      .fn = dlsym(dl, symbol),
                      .init_name = hc->init ? hc->init : "sluice_handler_init"};
    if (abi == NULL || abi() != SLUICE_PLUGIN_ABI) {
        dlclose(dl);
        return sl_config_fail(cfg, &hc->path, hc->pos, sub, SL_CONFIG, diag,
                              "%s was not built for plugin ABI %d (missing "
                              "or different sluice_plugin_abi; use "
                              "SLUICE_PLUGIN_DECLARE())",
                              hc->path, SLUICE_PLUGIN_ABI);
    }
    if (ps.fn == NULL) {
        dlclose(dl);
        snprintf(sub, sizeof sub, "%s.symbol", key);
        return sl_config_fail(cfg, &hc->symbol, hc->pos, sub, SL_CONFIG, diag,
                              "%s has no function '%s'", hc->path, symbol);
    }
    *(void **)&ps.init = dlsym(dl, ps.init_name);
    *(void **)&ps.fini = dlsym(dl, "sluice_handler_fini");
    if (hc->init != NULL && ps.init == NULL) {
        dlclose(dl);
        snprintf(sub, sizeof sub, "%s.init", key);
        return sl_config_fail(cfg, &hc->init, hc->pos, sub, SL_CONFIG, diag,
                              "%s has no function '%s'", hc->path, hc->init);
    }
    *out = ps;
    return SL_OK;
}

static sl_status bind_plugin(const sl_config *cfg, const sl_config_handler *hc,
                             const char *key, sl_bound_handler *out,
                             sl_diag *diag)
{
    plugin_syms ps;
    sl_status st = plugin_resolve(cfg, hc, key, &ps, diag);
    if (st != SL_OK) {
        return st;
    }
    void *user = NULL;
    if (ps.init != NULL && (st = ps.init(hc->config, &user)) != SL_OK) {
        dlclose(ps.dl);
        return sl_config_fail(cfg, &hc->config, hc->pos, key, SL_CONFIG, diag,
                              "%s: %s() failed: %s", hc->path, ps.init_name,
                              sl_status_str(st));
    }
    *(void **)&out->fn = ps.fn;
    out->user = user;
    out->fini = ps.fini;
    out->dl = ps.dl;
    return SL_OK;
}

/* ---- checks and binding ------------------------------------------------- */

/* Errors name the handler as the config does: consumers[N].handler. */
static void handler_key(const sl_config *cfg, const sl_config_consumer *cc,
                        char *key, size_t size)
{
    snprintf(key, size, "consumers[%zu].handler",
             (size_t)(cc - cfg->consumers));
}

/* What binding a handler of a built-in kind would refuse, without its
 * side effects (the append file is not created). */
static sl_status check_builtin(const sl_config *cfg,
                               const sl_config_consumer *cc, const char *key,
                               sl_diag *diag)
{
    const sl_config_handler *hc = &cc->handler;
    const char *kind = hc->kind ? hc->kind : "";
    char sub[80];
    if (strcmp(kind, "append") == 0 && !can_append(hc->file)) {
        snprintf(sub, sizeof sub, "%s.file", key);
        return sl_config_fail(cfg, &hc->file, hc->pos, sub, SL_CONFIG, diag,
                              "%s: %s", hc->file, strerror(errno));
    }
    if (strcmp(kind, "record") == 0 && !cc->idempotency) {
        snprintf(sub, sizeof sub, "%s.kind", key);
        return sl_config_fail(cfg, &hc->kind, hc->pos, sub, SL_CONFIG, diag,
                              "'record' writes in the idempotency inbox: set "
                              "idempotency: true");
    }
    if (strcmp(kind, "http") == 0) {
        sl_http_handler_opts ho;
        http_opts_from_config(cfg, hc, &ho);
        sl_diag d = {0};
        if (sl__http_handler_check(&ho, &d) != SL_OK) {
            snprintf(sub, sizeof sub, "%s.url", key);
            return sl_config_fail(cfg, &hc->url, hc->pos, sub, SL_CONFIG, diag,
                                  "%s", d.msg);
        }
        return SL_OK;
    }
    static const char *const kinds[] = {"forward", "append", "record", "fail"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(kind, kinds[i]) == 0) {
            return SL_OK;
        }
    }
    snprintf(sub, sizeof sub, "%s.kind", key);
    return sl_config_fail(cfg, &hc->kind, hc->pos, sub, SL_CONFIG, diag,
                          "unknown kind '%s' (plugin, forward, append, "
                          "record, fail, http)",
                          kind);
}

sl_status sl__handler_check(const sl_config *cfg, const sl_config_consumer *cc,
                            sl_diag *diag)
{
    char key[48];
    handler_key(cfg, cc, key, sizeof key);
    if (cc->handler.kind != NULL && strcmp(cc->handler.kind, "plugin") == 0) {
        plugin_syms ps;
        sl_status st = plugin_resolve(cfg, &cc->handler, key, &ps, diag);
        if (st == SL_OK) {
            dlclose(ps.dl);
        }
        return st;
    }
    return check_builtin(cfg, cc, key, diag);
}

sl_status sl__handler_bind(const sl_config *cfg, const sl_config_consumer *cc,
                           sl_bound_handler *out, sl_diag *diag)
{
    const sl_config_handler *hc = &cc->handler;
    const char *kind = hc->kind ? hc->kind : "";
    sl_bound_handler h = {0};
    char key[48];
    handler_key(cfg, cc, key, sizeof key);
    if (strcmp(kind, "plugin") == 0) {
        sl_status st = bind_plugin(cfg, hc, key, &h, diag);
        if (st == SL_OK) {
            *out = h;
        }
        return st;
    }
    sl_status st = check_builtin(cfg, cc, key, diag);
    if (st != SL_OK) {
        return st;
    }
    if (strcmp(kind, "forward") == 0) {
        st = sl__handler_forward(hc->to, &h);
    } else if (strcmp(kind, "append") == 0) {
        st = sl__handler_append(hc->file, &h);
        if (st == SL_IO) {
            char sub[80];
            snprintf(sub, sizeof sub, "%s.file", key);
            return sl_config_fail(cfg, &hc->file, hc->pos, sub, SL_CONFIG, diag,
                                  "%s: %s", hc->file, strerror(errno));
        }
    } else if (strcmp(kind, "record") == 0) {
        sl__handler_record(&h);
    } else if (strcmp(kind, "fail") == 0) {
        sl__handler_fail(&h);
    } else if (strcmp(kind, "http") == 0) {
        sl_http_handler_opts ho;
        http_opts_from_config(cfg, hc, &ho);
        sl_diag d = {0};
        st = sl__http_handler_bind(&ho, &h, &d);
        if (st != SL_OK) {
            char sub[80];
            snprintf(sub, sizeof sub, "%s.url", key);
            return sl_config_fail(cfg, &hc->url, hc->pos, sub,
                                  st == SL_INVALID ? SL_CONFIG : st, diag, "%s",
                                  d.msg);
        }
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
