/* The embedded engine: channels, groups and deliveries in one process.
 *
 * All state lives in memory under one mutex. With a store ("embedded:DIR")
 * every change is also written behind by a writer thread, one SQLite
 * transaction per batch (group commit): whatever accumulated while the last
 * commit ran goes into the next. Publish confirms fire after the batch that
 * holds the event commits. A fetch returns only after the batch holding the
 * incremented attempt counts commits, so a delivery that crashes the process
 * is counted and a poison event cannot loop forever.
 *
 * "embedded::memory:" runs without a store: confirms fire at once.
 *
 * This file: the engine URL, open and close, declaring channels and groups
 * and looking them up. embedded_int.h lists the others, the structs and
 * the locking rules.
 */
#include "engine/embedded/embedded_int.h"

#include "core/waiter.h"
#include "engine/url_params.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- lookup (lock held) ------------------------------------------------- */

emb_channel *sl__emb_find_channel(emb_engine *e, const char *name)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        if (strcmp(e->channels[i]->name, name) == 0) {
            return e->channels[i];
        }
    }
    return NULL;
}

emb_group *sl__emb_find_group(emb_channel *ch, const char *name)
{
    for (size_t i = 0; i < ch->ngroups; i++) {
        if (strcmp(ch->groups[i]->name, name) == 0) {
            return ch->groups[i];
        }
    }
    return NULL;
}

emb_group *sl__emb_find_gid(emb_engine *e, int64_t gid)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            if (ch->groups[j]->gid == gid) {
                return ch->groups[j];
            }
        }
    }
    return NULL;
}
/* ---- declaring ------------------------------------------------------------
 */

sl_status sl__emb_add_channel(emb_engine *e, const char *name,
                              uint64_t max_length, uint64_t max_bytes,
                              emb_channel **out)
{
    emb_channel *ch = sl__emb_find_channel(e, name);
    if (ch != NULL) {
        ch->max_length = max_length;
        ch->max_bytes = max_bytes;
        *out = ch;
        return SL_OK;
    }
    emb_channel **arr =
        sl_realloc(e->channels, (e->nchannels + 1) * sizeof *arr);
    if (arr == NULL) {
        return SL_NOMEM;
    }
    e->channels = arr;
    ch = sl_calloc(1, sizeof *ch);
    if (ch == NULL || (ch->name = sl_strdup(name)) == NULL) {
        sl_free(ch);
        return SL_NOMEM;
    }
    ch->max_length = max_length;
    ch->max_bytes = max_bytes;
    e->channels[e->nchannels++] = ch;
    *out = ch;
    return SL_OK;
}

sl_status sl__emb_add_group(emb_engine *e, emb_channel *ch, const char *name,
                            int64_t gid, uint32_t max_attempts, emb_group **out)
{
    emb_group *g = sl__emb_find_group(ch, name);
    if (g != NULL) {
        g->max_attempts = max_attempts;
        g->gid = gid;
        *out = g;
        return SL_OK;
    }
    emb_group **arr = sl_realloc(ch->groups, (ch->ngroups + 1) * sizeof *arr);
    if (arr == NULL) {
        return SL_NOMEM;
    }
    ch->groups = arr;
    g = sl_calloc(1, sizeof *g);
    if (g == NULL || (g->name = sl_strdup(name)) == NULL) {
        sl_free(g);
        return SL_NOMEM;
    }
    g->ch = ch;
    g->gid = gid;
    g->max_attempts = max_attempts;
    sl__cond_init_mono(&g->cv);
    ch->groups[ch->ngroups++] = g;
    *out = g;
    return SL_OK;
}

static sl_status emb_declare_channel(sl_engine *base,
                                     const sl_channel_opts *opts, sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = NULL;
    sl_status st = sl__emb_add_channel(e, opts->name, opts->max_length,
                                       opts->max_bytes, &ch);
    if (st == SL_OK && e->store != NULL) {
        st = sl__emb_store_put_channel(e->store, opts->name, opts->max_length,
                                       opts->max_bytes, diag);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* A group and, unless it is itself the keeper of a dead-letter channel, its
 * dead-letter channel with the keeper group. Called with the lock held. */
static sl_status declare_group_locked(emb_engine *e, const char *channel,
                                      const char *name, uint32_t max_attempts,
                                      bool with_dlq, emb_group **out,
                                      sl_diag *diag)
{
    emb_channel *ch = sl__emb_find_channel(e, channel);
    if (ch == NULL) {
        return sl_diag_set(diag, SL_NOT_FOUND, "channel '%s' is not declared",
                           channel);
    }
    int64_t gid = 0;
    emb_group *existing = sl__emb_find_group(ch, name);
    if (e->store != NULL) {
        sl_status st = sl__emb_store_put_group(e->store, channel, name,
                                               max_attempts, &gid, diag);
        if (st != SL_OK) {
            return st;
        }
    } else {
        gid = existing ? existing->gid : e->next_gid++;
    }
    emb_group *g = NULL;
    sl_status st = sl__emb_add_group(e, ch, name, gid, max_attempts, &g);
    if (st != SL_OK) {
        return st;
    }
    if (with_dlq && g->dlq == NULL) {
        char dlq_name[512];
        if (sl__dlq_channel_name(channel, name, dlq_name, sizeof dlq_name) !=
            SL_OK) {
            return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
        }
        emb_channel *dlq = NULL;
        if ((st = sl__emb_add_channel(e, dlq_name, 0, 0, &dlq)) != SL_OK) {
            return st;
        }
        if (e->store != NULL &&
            (st = sl__emb_store_put_channel(e->store, dlq_name, 0, 0, diag)) !=
                SL_OK) {
            return st;
        }
        emb_group *keeper = NULL;
        if ((st = declare_group_locked(e, dlq_name, SL_DLQ_GROUP, UINT32_MAX,
                                       false, &keeper, diag)) != SL_OK) {
            return st;
        }
        g->dlq = dlq;
    }
    *out = g;
    return SL_OK;
}

static sl_status emb_declare_group(sl_engine *base, const sl_group_opts *opts,
                                   sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    pthread_mutex_lock(&e->mu);
    emb_group *g = NULL;
    sl_status st =
        declare_group_locked(e, opts->channel, opts->name, max_attempts,
                             !sl__is_dlq_channel(opts->channel), &g, diag);
    pthread_mutex_unlock(&e->mu);
    return st;
}
static bool emb_is_ready(const sl_engine *base)
{
    const emb_engine *e = (const emb_engine *)base;
    return !e->closing && e->store_err == SL_OK;
}
/* ---- open / close
 * ------------------------------------------------------------ */

static void emb_close(sl_engine *base);

/* The in-memory engine's two spellings. "memory://" is the one YAML takes
 * unquoted ("embedded::memory:" ends with a colon, which YAML reads as a
 * mapping), and it cannot be mistaken for a directory: "embedded:DIR" is
 * always a path. */
#define MEMORY_SCHEME "memory://"
#define MEMORY_PATH ":memory:"

/* What the URL's query sets. */
typedef struct emb_url_params {
    sl_sync_mode sync;
} emb_url_params;

static const sl_url_enum sync_values[] = {
    {"full", SL_SYNC_FULL},
    {"normal", SL_SYNC_NORMAL},
    {"off", SL_SYNC_OFF},
    {NULL, 0},
};

/* The parameters of an embedded URL (docs/embedded-engine.md). */
static const sl_url_param emb_url_params_table[] = {
    SL_URL_ENUM("sync", emb_url_params, sync, sync_values,
                "when a commit is durable: full (fsync at every commit), "
                "normal (at checkpoints; the default) or off"),
};

/* "embedded:DIR[?sync=...]", "embedded::memory:[?...]" or
 * "memory://[?...]". *dir is NULL for the in-memory engine; *sync is
 * written only when the URL sets it. */
static sl_status parse_url(const char *url, sl_sync_mode *sync, char **dir,
                           sl_diag *diag)
{
    bool memory = strncmp(url, MEMORY_SCHEME, strlen(MEMORY_SCHEME)) == 0;
    const char *rest =
        url + (memory ? strlen(MEMORY_SCHEME) : strlen("embedded:"));
    const char *q = strchr(rest, '?');
    size_t path_len = q ? (size_t)(q - rest) : strlen(rest);
    if (q != NULL) {
        char context[400];
        snprintf(context, sizeof context, "engine URL '%s'", url);
        emb_url_params params = {.sync = *sync};
        sl_status st = sl__url_params_parse(
            emb_url_params_table, SL_URL_PARAMS_COUNT(emb_url_params_table),
            q + 1, &params, context, diag);
        if (st != SL_OK) {
            return st;
        }
        *sync = params.sync;
    }
    if (memory) {
        if (path_len != 0) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL '%s': memory:// takes no path "
                               "(for a store on disk: embedded:DIR)",
                               url);
        }
        *dir = NULL;
        return SL_OK;
    }
    if (path_len == strlen(MEMORY_PATH) &&
        strncmp(rest, MEMORY_PATH, path_len) == 0) {
        *dir = NULL;
        return SL_OK;
    }
    if (path_len == 0) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL '%s' has no path (embedded:./data, or "
                           "memory:// for no store)",
                           url);
    }
    *dir = sl_strndup(rest, path_len);
    return *dir ? SL_OK : SL_NOMEM;
}

/* The store directory can be used: it is a writable directory, or the
 * closest directory above it that exists is writable (open creates the
 * rest). Checked without creating anything. */
static sl_status check_store_dir(const char *url, const char *dir,
                                 sl_diag *diag)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return sl_diag_set(diag, SL_INVALID, "engine URL '%s': path too long",
                           url);
    }
    for (;;) {
        struct stat sb;
        if (stat(path, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "engine URL '%s': %s is not a directory",
                                   url, path);
            }
            if (access(path, W_OK | X_OK) != 0) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "engine URL '%s': directory %s: %s", url,
                                   path, strerror(errno));
            }
            return SL_OK;
        }
        if (errno != ENOENT) {
            return sl_diag_set(diag, SL_CONFIG, "engine URL '%s': %s: %s", url,
                               path, strerror(errno));
        }
        char *slash = strrchr(path, '/');
        while (slash != NULL && slash > path && slash[1] == '\0') {
            *slash = '\0'; /* a trailing slash */
            slash = strrchr(path, '/');
        }
        if (slash == NULL) {
            snprintf(path, sizeof path, ".");
        } else if (slash == path) {
            snprintf(path, sizeof path, "/");
        } else {
            *slash = '\0';
        }
    }
}

/* Parse-only check of an engine URL (sl_engine_check_url). */
static sl_status emb_check_url(const char *url, sl_diag *diag)
{
    sl_sync_mode sync = SL_SYNC_NORMAL;
    char *dir = NULL;
    sl_status st = parse_url(url, &sync, &dir, diag);
    if (st == SL_OK && dir != NULL) {
        st = check_store_dir(url, dir, diag);
    }
    sl_free(dir);
    return st;
}

/* A store exists in @p dir: its database file is there. */
static bool store_exists(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sluice.db", dir);
    return access(path, F_OK) == 0;
}

static sl_status emb_open(const char *url, const sl_engine_opts *opts,
                          sl_engine **out, sl_diag *diag)
{
    emb_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__embedded_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->next_seq = 1;
    e->next_gid = 1;
    e->budget = opts->memory_budget ? opts->memory_budget : 256 * 1024;
    e->batch_next = 1; /* batch 0 is "nothing yet", already done */
    e->dirty_msgs_tail = &e->dirty_msgs;
    e->dirty_entries_tail = &e->dirty_entries;
    /* Critical sections are short and contended by producer and consumer
     * threads: spin briefly before sleeping in the kernel. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&e->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&e->writer_cv, NULL);
    pthread_cond_init(&e->commit_cv, NULL);
    sl__cond_init_mono(&e->ingress_cv); /* timed waits use CLOCK_MONOTONIC */
    sl__cond_init_mono(&e->commit_wait_cv);

    char *dir = NULL;
    sl_status st = parse_url(url, &e->opts.sync, &dir, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if (dir != NULL && opts->open_existing && !store_exists(dir)) {
        st = sl_diag_set(diag, SL_NOT_FOUND,
                         "no embedded store in %s (nothing was created)", dir);
        goto fail;
    }
    st = sl__dedup_create(DEFAULT_DEDUP_MAX_IDS,
                          opts->dedup_window_ms ? opts->dedup_window_ms
                                                : DEFAULT_DEDUP_WINDOW_MS,
                          &e->dedup);
    if (st != SL_OK) {
        goto fail;
    }
    if (dir != NULL) {
        st = sl__emb_store_open(dir, e->opts.sync, &e->store, diag);
        if (st == SL_EXISTS) {
            /* Another process owns the store: publish through its ingress
             * and read what it committed. */
            sl_engine_opts co = e->opts;
            emb_close(&e->base);
            st = sl__embedded_client_open(dir, &co, out, diag);
            sl_free(dir);
            return st;
        }
        if (st != SL_OK) {
            goto fail;
        }
        if ((st = sl__emb_recover(e, dir, diag)) != SL_OK) {
            goto fail;
        }
        if (pthread_create(&e->writer, NULL, sl__emb_writer_main, e) != 0) {
            st = sl_diag_set(diag, SL_INTERNAL, "cannot start writer thread");
            goto fail;
        }
        e->writer_started = true;
        if ((st = sl__emb_ingress_open(dir, &e->ingress, diag)) != SL_OK) {
            goto fail;
        }
        if (pthread_create(&e->ingress_thread, NULL, sl__emb_ingress_main, e) !=
            0) {
            st = sl_diag_set(diag, SL_INTERNAL, "cannot start ingress thread");
            goto fail;
        }
        e->ingress_started = true;
    }
    sl_free(dir);
    *out = &e->base;
    return SL_OK;
fail:
    sl_free(dir);
    emb_close(&e->base);
    return st;
}

static void free_group(emb_engine *e, emb_group *g)
{
    (void)e;
    /* Safe iteration: freeing a message frees the node it holds. */
    SL_LIST_FOREACH_SAFE(&g->ready, node, next)
    {
        emb_entry *en = entry_of(node);
        if (--en->m->refs == 0) {
            sl__emb_msg_free(en->m);
        }
    }
    for (size_t i = 0; i < g->heap_n; i++) {
        emb_entry *en = g->heap[i];
        if (--en->m->refs == 0) {
            sl__emb_msg_free(en->m);
        }
    }
    sl_free(g->heap);
    pthread_cond_destroy(&g->cv);
    sl_free(g->name);
    sl_free(g);
}

static void emb_close(sl_engine *base)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->writer_cv);
    for (size_t i = 0; i < e->nchannels; i++) {
        for (size_t j = 0; j < e->channels[i]->ngroups; j++) {
            pthread_cond_broadcast(&e->channels[i]->groups[j]->cv);
        }
    }
    pthread_cond_broadcast(&e->ingress_cv);
    pthread_cond_broadcast(&e->commit_wait_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->ingress_started) {
        pthread_join(e->ingress_thread, NULL);
    }
    sl__emb_ingress_close(e->ingress);
    if (e->writer_started) {
        pthread_join(e->writer, NULL); /* writes what is left */
    }
    /* Anything still on the dirty lists (the store failed) is only memory. */
    for (emb_entry *en = e->dirty_entries, *next; en; en = next) {
        next = en->dirty_next;
        en->dirty = false;
    }
    for (emb_msg *m = e->dirty_msgs, *next; m; m = next) {
        next = m->dirty_next;
        m->dirty = false;
        if (m->cb != NULL) {
            m->cb(SL_CLOSED, m->cb_ctx);
            m->cb = NULL;
        }
        if (m->refs == 0) {
            sl__emb_msg_free(m);
        }
    }
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            free_group(e, ch->groups[j]);
        }
        sl_free(ch->groups);
        sl_free(ch->name);
        sl_free(ch);
    }
    sl_free(e->channels);
    sl__emb_free_msgs(e->graveyard);
    sl__dedup_destroy(e->dedup);
    sl__emb_store_close(e->store);
    pthread_cond_destroy(&e->writer_cv);
    pthread_cond_destroy(&e->commit_cv);
    pthread_cond_destroy(&e->ingress_cv);
    pthread_cond_destroy(&e->commit_wait_cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

size_t sl__embedded_resident_bytes(sl_engine *base)
{
    if (base->drv != &sl__embedded_driver) {
        return 0;
    }
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    size_t n = e->resident;
    pthread_mutex_unlock(&e->mu);
    return n;
}

const sl_driver sl__embedded_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "embedded",
    .scheme = "embedded:",
    .alias = MEMORY_SCHEME,
    .check_url = emb_check_url,
    .open = emb_open,
    .close = emb_close,
    .is_ready = emb_is_ready,
    .declare_channel = emb_declare_channel,
    .declare_group = emb_declare_group,
    .publish = sl__emb_publish,
    .subscribe = sl__emb_subscribe,
    .fetch = sl__emb_fetch,
    .interrupt = sl__emb_interrupt,
    .in_flight = sl__emb_in_flight,
    .unsubscribe = sl__emb_unsubscribe,
    .settle = sl__emb_settle,
    .ack_many = sl__emb_ack_many,
    .depth = sl__emb_depth,
    .browse = sl__emb_browse,
};
