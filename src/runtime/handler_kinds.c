/* The built-in handler kinds: forward, append, record, fail. */
#include "runtime/handler_kinds.h"

#include "sluice/alloc.h"

#include <errno.h>
#include <fcntl.h>
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
    int n =
        snprintf(line, sizeof line, "%s\n", sl_event_id(sl_handler_event(ctx)));
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

/* ---- constructors ------------------------------------------------------ */

sl_status sl__handler_forward(const char *to, sl_bound_handler *out)
{
    char *copy = sl_strdup(to);
    if (copy == NULL) {
        return SL_NOMEM;
    }
    *out =
        (sl_bound_handler){.fn = forward_handle, .user = copy, .fini = sl_free};
    return SL_OK;
}

sl_status sl__handler_append(const char *file, sl_bound_handler *out)
{
    append_sink *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    s->fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        int err = errno;
        sl_free(s);
        errno = err; /* the caller reports why */
        return SL_IO;
    }
    *out =
        (sl_bound_handler){.fn = append_handle, .user = s, .fini = append_fini};
    return SL_OK;
}

void sl__handler_record(sl_bound_handler *out)
{
    *out = (sl_bound_handler){.fn = record_handle, .transactional = true};
}

void sl__handler_fail(sl_bound_handler *out)
{
    *out = (sl_bound_handler){.fn = fail_handle};
}
